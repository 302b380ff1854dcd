//! Pull bookkeeping: every pull and import (`pulls`, with its rejected lines), the files
//! already imported (`imported_files`), the live sources' watermarks, and what the feeds did
//! between cycles. Written in the ingest's transaction, so a crash never leaves a pull recorded
//! without its records or the other way round.

use super::{sq, Store, StoreError, Tx};
use crate::domain::job::LineError;
use crate::domain::rules::CentreFeed;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

/// The bookkeeping tables (migration 1).
pub(super) const SCHEMA: &str = r#"
    CREATE TABLE pulls (
        id           INTEGER PRIMARY KEY,
        centre       TEXT NOT NULL,
        source       TEXT NOT NULL,
        started_at   INTEGER NOT NULL,
        finished_at  INTEGER NOT NULL,
        ok           INTEGER NOT NULL,
        window_start INTEGER,
        window_end   INTEGER,
        records      INTEGER NOT NULL DEFAULT 0,
        inserted     INTEGER NOT NULL DEFAULT 0,
        replaced     INTEGER NOT NULL DEFAULT 0,
        unchanged    INTEGER NOT NULL DEFAULT 0,
        rejected     INTEGER NOT NULL DEFAULT 0,
        error        TEXT
    );
    CREATE INDEX pulls_by_centre ON pulls (centre, started_at);
    CREATE TABLE rejections (
        pull_id INTEGER NOT NULL REFERENCES pulls(id),
        file    TEXT NOT NULL,
        line    INTEGER NOT NULL,
        field   TEXT,
        reason  TEXT NOT NULL
    );
    CREATE TABLE imported_files (
        centre      TEXT NOT NULL,
        path        TEXT NOT NULL,
        size        INTEGER NOT NULL,
        mtime_ns    INTEGER NOT NULL,
        pull_id     INTEGER NOT NULL REFERENCES pulls(id),
        PRIMARY KEY (centre, path)
    );
    CREATE TABLE watermarks (
        centre       TEXT NOT NULL,
        source       TEXT NOT NULL,
        watermark    INTEGER NOT NULL,
        last_success INTEGER NOT NULL,
        PRIMARY KEY (centre, source)
    );
    "#;

/// When each live source's last deep re-scan started (migration 10).
pub(super) const DEEP_SCANS: &str = "ALTER TABLE watermarks ADD COLUMN deep_scan_at INTEGER;";

/// Bookkeeping written with an ingest's records, in the same transaction.
#[derive(Debug, Clone)]
pub struct PullRecord {
    /// Centre id.
    pub centre: String,
    /// Source description (`import:<file>`, `files:<path>`, `sacct`, …).
    pub source: String,
    /// Start of the pull, epoch seconds.
    pub started_at: i64,
    /// Window pulled, if the source has one.
    pub window: Option<(i64, i64)>,
    /// New watermark of the source, if it keeps one.
    pub watermark: Option<i64>,
    /// Whether this pull was a deep re-scan of its source (recorded with the watermark).
    pub deep_scan: bool,
    /// Imported file fingerprint (path, size, mtime ns) for file drops.
    pub file: Option<(String, i64, i64)>,
}

/// Pull history of one feed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FeedState {
    /// Centre id.
    pub centre: String,
    /// Source description.
    pub source: String,
    /// Last successful pull, epoch seconds.
    pub last_success: Option<i64>,
    /// Last attempt.
    pub last_attempt: Option<i64>,
    /// Failed pulls.
    pub failures: i64,
    /// Records ingested over all pulls.
    pub records: i64,
    /// Rejected lines over all pulls.
    pub rejected: i64,
}

/// Pull activity of one feed (a centre's source kind) since the previous cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedActivity {
    /// Centre id.
    pub centre: String,
    /// Source kind: the ledger's source name up to its first `:` (`file`, `sacct`…), so a
    /// file drop counts as one feed, not one per file.
    pub source: String,
    /// Pulls attempted since the previous cycle.
    pub pulls: i64,
    /// Failed pulls since the previous cycle.
    pub failures: i64,
    /// Records ingested by the successful ones.
    pub records: i64,
    /// Lines they rejected.
    pub rejected: i64,
    /// Seconds spent pulling since the previous cycle (the ledger keeps whole seconds).
    pub pull_duration_seconds: f64,
    /// Seconds from the last successful pull (ever) to the cycle; none if there never was one.
    pub seconds_since_last_success: Option<f64>,
    /// Epoch second of the last successful pull, if any.
    pub last_success_s: Option<i64>,
}

/// What a successful pull stored, as the `pulls` row keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PullCounts {
    /// Records offered.
    pub records: u64,
    /// Newly stored.
    pub inserted: u64,
    /// Replacing an earlier record of the same run.
    pub replaced: u64,
    /// Identical to what was stored.
    pub unchanged: u64,
    /// Rejected lines.
    pub rejected: u64,
}

/// Record a successful ingest's pull, its kept rejections, the file's fingerprint and the
/// source's new watermark (inside the ingest's open transaction).
pub(super) fn record_ingest(conn: &Connection, path: &Path, pull: &PullRecord, s: PullCounts, rejections: &[LineError], now: i64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO pulls (centre, source, started_at, finished_at, ok, window_start, window_end,
                            records, inserted, replaced, unchanged, rejected)
         VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            pull.centre, pull.source, pull.started_at, now, pull.window.map(|w| w.0), pull.window.map(|w| w.1),
            s.records as i64, s.inserted as i64, s.replaced as i64, s.unchanged as i64, s.rejected as i64
        ],
    )
    .map_err(sq(path))?;
    let pull_id = conn.last_insert_rowid();
    for r in rejections {
        conn.execute(
            "INSERT INTO rejections (pull_id, file, line, field, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![pull_id, r.file, r.line as i64, r.field, r.reason],
        )
        .map_err(sq(path))?;
    }
    if let Some((file, size, mtime)) = &pull.file {
        conn.execute(
            "INSERT OR REPLACE INTO imported_files (centre, path, size, mtime_ns, pull_id) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![pull.centre, file, size, mtime, pull_id],
        )
        .map_err(sq(path))?;
    }
    if let Some(w) = pull.watermark {
        conn.execute(
            "INSERT INTO watermarks (centre, source, watermark, last_success, deep_scan_at)
             VALUES (?1, ?2, ?3, ?4, CASE WHEN ?6 THEN ?5 END)
             ON CONFLICT (centre, source) DO UPDATE SET watermark = excluded.watermark, last_success = excluded.last_success,
                 deep_scan_at = CASE WHEN ?6 THEN ?5 ELSE watermarks.deep_scan_at END",
            params![pull.centre, pull.source, w, now, pull.started_at, pull.deep_scan],
        )
        .map_err(sq(path))?;
    }
    Ok(())
}

impl Store {
    /// Fingerprint under which a file was last imported for a centre.
    pub(crate) fn imported_file(&self, centre: &str, path: &str) -> Result<Option<(i64, i64)>, StoreError> {
        self.conn
            .query_row(
                "SELECT size, mtime_ns FROM imported_files WHERE centre = ?1 AND path = ?2",
                params![centre, path],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.err())
    }

    /// Watermark of a live source: the end of the last window it stored, epoch seconds.
    pub fn watermark(&self, centre: &str, source: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT watermark FROM watermarks WHERE centre = ?1 AND source = ?2",
                params![centre, source],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }

    /// When a live source's last deep re-scan started (epoch seconds); none before the first
    /// one (a store older than re-scans, or only backfills so far).
    pub(crate) fn last_deep_scan(&self, centre: &str, source: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT deep_scan_at FROM watermarks WHERE centre = ?1 AND source = ?2",
                params![centre, source],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(self.err())
    }

    /// Record a failed pull (nothing else is written; watermarks do not move).
    #[track_caller]
    pub(crate) fn record_failed_pull(&mut self, pull: &PullRecord, error: &str, now: i64) -> Result<(), StoreError> {
        super::crashpoint::commit(std::panic::Location::caller(), || {
            self.conn.execute(
                "INSERT INTO pulls (centre, source, started_at, finished_at, ok, window_start, window_end, error)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7)",
                params![pull.centre, pull.source, pull.started_at, now, pull.window.map(|w| w.0), pull.window.map(|w| w.1), error],
            )
        })
        .map_err(self.err())?;
        Ok(())
    }

    /// Last successful pull per (centre, source) and the latest pull outcome.
    pub fn feeds(&self) -> Result<Vec<FeedState>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT centre, source,
                        MAX(CASE WHEN ok = 1 THEN finished_at END),
                        MAX(finished_at),
                        SUM(CASE WHEN ok = 0 THEN 1 ELSE 0 END),
                        SUM(records), SUM(rejected)
                 FROM pulls GROUP BY centre, source ORDER BY centre, source",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(FeedState {
                    centre: r.get(0)?,
                    source: r.get(1)?,
                    last_success: r.get(2)?,
                    last_attempt: r.get(3)?,
                    failures: r.get(4)?,
                    records: r.get(5)?,
                    rejected: r.get(6)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }
    /// Health of every centre's feed from the pull history: last success, failures since.
    pub(crate) fn centre_feeds(&self) -> Result<Vec<CentreFeed>, StoreError> {
        self.reader().centre_feeds()
    }

    /// The latest pull's end, if any pull was recorded.
    pub(crate) fn latest_pull_at(&self) -> Result<Option<i64>, StoreError> {
        self.conn.query_row("SELECT MAX(finished_at) FROM pulls", [], |r| r.get(0)).map_err(self.err())
    }
}

impl Tx<'_> {
    /// Health of every centre's feed from the pull history: last success, failures since.
    pub(crate) fn centre_feeds(&self) -> Result<Vec<CentreFeed>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT p.centre,
                        MAX(CASE WHEN p.ok = 1 THEN p.finished_at END) AS last_ok,
                        (SELECT COUNT(*) FROM pulls f WHERE f.centre = p.centre AND f.ok = 0
                           AND f.id > COALESCE((SELECT MAX(id) FROM pulls s WHERE s.centre = p.centre AND s.ok = 1), 0)),
                        (SELECT error FROM pulls e WHERE e.centre = p.centre AND e.ok = 0 ORDER BY e.id DESC LIMIT 1)
                 FROM pulls p GROUP BY p.centre ORDER BY p.centre",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                Ok(CentreFeed {
                    centre: r.get(0)?,
                    last_success: r.get(1)?,
                    consecutive_failures: r.get::<_, i64>(2)? as u32,
                    last_error: r.get(3)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Pull activity per (centre, source kind) since the previous cycle, and mark the pulls seen
    /// by this one (`cycle_pulls`), so the next cycle counts only newer pulls.
    pub(crate) fn feed_activity(&self, cycle_id: i64, now: i64) -> Result<Vec<FeedActivity>, StoreError> {
        let tx = self.conn;
        let e = self.err();
        let prev: i64 = tx
            .query_row("SELECT COALESCE(MAX(last_pull_id), 0) FROM cycle_pulls", [], |r| r.get(0))
            .map_err(&e)?;
        let last: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) FROM pulls", [], |r| r.get(0)).map_err(&e)?;
        tx.execute("INSERT INTO cycle_pulls (cycle_id, last_pull_id) VALUES (?1, ?2)", params![cycle_id, last])
            .map_err(&e)?;
        let mut stmt = tx
            .prepare(
                "SELECT centre, kind,
                        MAX(CASE WHEN ok = 1 THEN finished_at END),
                        SUM(id > ?1),
                        SUM(id > ?1 AND ok = 0),
                        SUM(CASE WHEN id > ?1 AND ok = 1 THEN records ELSE 0 END),
                        SUM(CASE WHEN id > ?1 AND ok = 1 THEN rejected ELSE 0 END),
                        SUM(CASE WHEN id > ?1 THEN MAX(finished_at - started_at, 0) ELSE 0 END)
                 FROM (SELECT *, CASE WHEN instr(source, ':') > 0 THEN substr(source, 1, instr(source, ':') - 1)
                                      ELSE source END AS kind
                       FROM pulls WHERE id <= ?2)
                 GROUP BY centre, kind ORDER BY centre, kind",
            )
            .map_err(&e)?;
        let rows = stmt
            .query_map(params![prev, last], |r| {
                let last_success: Option<i64> = r.get(2)?;
                Ok(FeedActivity {
                    centre: r.get(0)?,
                    source: r.get(1)?,
                    last_success_s: last_success,
                    seconds_since_last_success: last_success.map(|s| (now - s).max(0) as f64),
                    pulls: r.get(3)?,
                    failures: r.get(4)?,
                    records: r.get(5)?,
                    rejected: r.get(6)?,
                    pull_duration_seconds: r.get::<_, i64>(7)? as f64,
                })
            })
            .map_err(&e)?;
        rows.collect::<Result<_, _>>().map_err(&e)
    }
}
