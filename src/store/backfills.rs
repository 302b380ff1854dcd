//! Backfills: a past window of a live source pulled chunk by chunk. `done_until` moves in a
//! transaction after each stored chunk, so an interrupted backfill resumes there.

use super::{Store, StoreError};
use rusqlite::{params, OptionalExtension};

/// The `backfills` table (migration 6). `IF NOT EXISTS`: [`Store::backfill_progress`] also runs
/// it, for stores that passed number 6 while it was still reserved.
pub(super) const SCHEMA: &str = r#"
    CREATE TABLE IF NOT EXISTS backfills (
        centre        TEXT NOT NULL,
        source        TEXT NOT NULL,
        window_start  INTEGER NOT NULL,
        window_end    INTEGER NOT NULL,
        chunk_seconds INTEGER NOT NULL,
        done_until    INTEGER NOT NULL,
        records       INTEGER NOT NULL DEFAULT 0,
        started_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        finished_at   INTEGER,
        PRIMARY KEY (centre, source, window_start, window_end)
    );
    "#;

/// Progress of a backfill, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Everything before this instant is pulled.
    pub done_until: i64,
    /// Records stored so far.
    pub records: i64,
    /// When it finished, if it did.
    pub finished_at: Option<i64>,
    /// Chunk length it was started with.
    pub chunk_s: i64,
}

impl Store {
    /// The stored progress of the backfill of `(centre, source, [from, to))`, if any.
    pub(crate) fn backfill_progress(&self, centre: &str, source: &str, from: i64, to: i64) -> Result<Option<Progress>, StoreError> {
        self.conn.execute_batch(SCHEMA).map_err(self.err())?;
        self.conn
            .query_row(
                "SELECT done_until, records, finished_at, chunk_seconds FROM backfills
                 WHERE centre = ?1 AND source = ?2 AND window_start = ?3 AND window_end = ?4",
                params![centre, source, from, to],
                |r| Ok(Progress { done_until: r.get(0)?, records: r.get(1)?, finished_at: r.get(2)?, chunk_s: r.get(3)? }),
            )
            .optional()
            .map_err(self.err())
    }

    /// Start (or restart from scratch) the backfill record.
    pub(crate) fn begin_backfill(&mut self, centre: &str, source: &str, from: i64, to: i64, chunk_s: i64, now: i64) -> Result<(), StoreError> {
        self.transaction(|tx| {
            tx.conn
                .execute(
                    "INSERT OR REPLACE INTO backfills (centre, source, window_start, window_end, chunk_seconds, done_until, records, started_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?3, 0, ?6, ?6)",
                    params![centre, source, from, to, chunk_s, now],
                )
                .map_err(tx.err())?;
            Ok(())
        })
    }

    /// Mark `[.., done_until)` pulled, with `records` more stored; finished when it reaches the end.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn advance_backfill(&mut self, centre: &str, source: &str, from: i64, to: i64, done_until: i64, records: i64, now: i64) -> Result<(), StoreError> {
        self.transaction(|tx| {
            tx.conn
                .execute(
                    "UPDATE backfills SET done_until = ?5, records = records + ?6, updated_at = ?7,
                            finished_at = CASE WHEN ?5 >= window_end THEN ?7 ELSE NULL END
                     WHERE centre = ?1 AND source = ?2 AND window_start = ?3 AND window_end = ?4",
                    params![centre, source, from, to, done_until, records, now],
                )
                .map_err(tx.err())?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_stored_and_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        assert_eq!(store.backfill_progress("c", "sacct", 0, 300).unwrap(), None);
        store.begin_backfill("c", "sacct", 0, 300, 100, 7).unwrap();
        store.advance_backfill("c", "sacct", 0, 300, 100, 5, 8).unwrap();
        assert_eq!(store.backfill_progress("c", "sacct", 0, 300).unwrap(), Some(Progress { done_until: 100, records: 5, finished_at: None, chunk_s: 100 }));
        store.advance_backfill("c", "sacct", 0, 300, 300, 2, 9).unwrap();
        assert_eq!(store.backfill_progress("c", "sacct", 0, 300).unwrap().unwrap().finished_at, Some(9));
        // Another window is another backfill.
        assert_eq!(store.backfill_progress("c", "sacct", 0, 200).unwrap(), None);
    }
}
