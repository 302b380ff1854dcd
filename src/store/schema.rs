//! Schema versions: the migrations of every concern, in the order they were released.
//! `PRAGMA user_version` is the number applied; migrations only append (a store written by an
//! older allocwatch is migrated in place, one written by a newer one is refused).

use super::{alerts, backfills, cycles, digests, ledger, outbox, pulls, quality, sq, StoreError};
use rusqlite::Connection;
use std::path::Path;

/// Migrations, applied in order; each is one or more statements of the concerns it touched,
/// run in one transaction.
const MIGRATIONS: &[&[&str]] = &[
    // 1: the ledger and its bookkeeping.
    &[ledger::SCHEMA, pulls::SCHEMA],
    // 2: reconciliation cycles; sinks and notifiers enqueue what a cycle owes them in the same
    // transaction as its row, so a crash never loses or doubles it.
    &[cycles::SCHEMA],
    // 3: the indicator outbox, and which pulls each cycle accounted for.
    &[outbox::SCHEMA, cycles::PULLS_SEEN],
    // 4: alerts, their life cycle and audit trail, and the notification outbox.
    &[alerts::SCHEMA],
    // 5: taken by another branch; kept aligned here.
    &["-- reserved"],
    // 6: backfills.
    &[backfills::SCHEMA],
    // 7: quality indicators: delivery passes that held a message back, and which periods'
    // `quality` points were queued.
    &[alerts::DEFERRALS, quality::RUNS],
    // 8: researchers' digests: the parts an e-mail shows inline (its burn-down pictures), and
    // which (project, period) digests were queued.
    &[alerts::INLINE_PARTS, digests::SCHEMA],
    // 9: each job's time limit, so that running jobs' committed unit-seconds can be read.
    &[ledger::TIME_LIMITS],
    // 10: when each live source was last re-scanned over its whole overlap.
    &[pulls::DEEP_SCANS],
    // 11: the logs of changes to the daily usage and to the job runs, which long-lived
    // reconcilers follow.
    &[ledger::LOGS],
];

/// The schema version this allocwatch brings a store to.
pub(super) const CURRENT: i64 = MIGRATIONS.len() as i64;

/// The schema version of an open store (`PRAGMA user_version`).
pub(super) fn version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sq(path))
}

/// Refuse a store written by a newer allocwatch (on open, and in `allocwatch doctor`).
pub(super) fn refuse_newer(version: i64, path: &Path) -> Result<(), StoreError> {
    if version > CURRENT {
        return Err(StoreError::Incompatible {
            path: path.display().to_string(),
            message: format!("schema version {version} is newer than this allocwatch knows ({CURRENT}); upgrade allocwatch"),
        });
    }
    Ok(())
}

/// Bring the store's schema to the latest version.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let version = version(conn, path)?;
    refuse_newer(version, path)?;
    for (i, parts) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        // IMMEDIATE takes the write lock first, and the version is read again under it: two
        // processes opening a new or older store at once (the daemon starting while `outbox
        // status` runs) migrate it once, not twice.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sq(path))?;
        let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sq(path))?;
        if now > i as i64 {
            continue;
        }
        for sql in *parts {
            tx.execute_batch(sql).map_err(sq(path))?;
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64).map_err(sq(path))?;
        tx.commit().map_err(sq(path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_8_store_gains_time_limits_and_keeps_its_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        for parts in &MIGRATIONS[..8] {
            for sql in *parts {
                conn.execute_batch(sql).unwrap();
            }
        }
        conn.pragma_update(None, "user_version", 8).unwrap();
        conn.execute_batch(
            "INSERT INTO names (id, name) VALUES (1, 'c'), (2, 'x');
             INSERT INTO jobs VALUES (1, 1, 42, 1000, 2, 2, 2, 2000, 1000, 4, 0, 4, 1, 1);",
        )
        .unwrap();
        migrate(&mut conn, &path).unwrap();
        assert_eq!(version(&conn, &path).unwrap(), CURRENT);
        let row: (i64, Option<i64>) = conn.query_row("SELECT job_id_raw, time_limit_s FROM jobs", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!(row, (42, None));
        // Opening it again migrates nothing.
        migrate(&mut conn, &path).unwrap();
        drop(conn);
        let mut store = super::super::Store::open(&path).unwrap();
        assert!(store.committed_usage("c", 1500).unwrap().is_empty());
    }
}
