//! The durable outbox of indicator points: lines appended in the transaction of whatever owes
//! them (a cycle, a quality run), read oldest first, deleted only once a sink answered 2xx,
//! moved aside when the server refuses one; and the writer's state (last attempt, last error,
//! totals). The policy (batches, backoff, bisection) is the sink's: `crate::sinks::outbox`.

use super::{Store, StoreError, Tx};
use rusqlite::{params, Connection, OptionalExtension};

/// The outbox tables (migration 3).
pub(super) const SCHEMA: &str = r#"

    CREATE TABLE outbox_points (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        measurement  TEXT NOT NULL,
        timestamp_ns INTEGER NOT NULL,
        line         TEXT NOT NULL,
        enqueued_at  INTEGER NOT NULL
    );
    CREATE TABLE outbox_rejected (
        id           INTEGER PRIMARY KEY,
        measurement  TEXT NOT NULL,
        timestamp_ns INTEGER NOT NULL,
        line         TEXT NOT NULL,
        error        TEXT NOT NULL,
        rejected_at  INTEGER NOT NULL
    );
    CREATE TABLE outbox_state (
        sink                 TEXT PRIMARY KEY,
        last_attempt_at      INTEGER,
        last_success_at      INTEGER,
        last_error           TEXT,
        last_error_at        INTEGER,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        sent_total           INTEGER NOT NULL DEFAULT 0,
        dropped_total        INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO outbox_state (sink) VALUES ('influxdb');
    "#;

/// Name of the sink in `outbox_state` (one sink today).
const SINK: &str = "influxdb";

/// A point rendered for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QueuedLine {
    /// Measurement (kept beside the line for `outbox status` and the rejected table).
    pub measurement: String,
    /// The point's own timestamp, nanoseconds.
    pub timestamp_ns: i64,
    /// The line-protocol line.
    pub line: String,
}

/// What appending to a bounded outbox did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Appended {
    /// Lines appended.
    pub queued: u64,
    /// Oldest lines dropped to respect the bound.
    pub dropped_oldest: u64,
    /// Lines waiting after the append.
    pub depth: u64,
    /// When the oldest dropped line was enqueued and its own timestamp (ns), if some were.
    pub oldest_dropped: Option<(i64, i64)>,
}

/// The outbox as stored: depth, oldest waiting point, the writer's last attempts and totals.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct OutboxState {
    /// Lines waiting.
    pub depth: u64,
    /// The oldest waiting line: when it was enqueued and its own timestamp (ns).
    pub oldest: Option<(i64, i64)>,
    /// Last write attempt.
    pub last_attempt_at: Option<i64>,
    /// Last successful write.
    pub last_success_at: Option<i64>,
    /// Last error.
    pub last_error: Option<String>,
    /// When the last error happened.
    pub last_error_at: Option<i64>,
    /// Failed attempts since the last success.
    pub consecutive_failures: i64,
    /// Points delivered, all time.
    pub sent_total: i64,
    /// Points dropped because the outbox was full, all time.
    pub dropped_total: i64,
    /// Points the server refused, kept in `outbox_rejected`.
    pub rejected: u64,
}

fn count(conn: &Connection, table: &str) -> rusqlite::Result<u64> {
    conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get::<_, i64>(0)).map(|n| n as u64)
}

impl Tx<'_> {
    /// Append lines (enqueued at `now`), then drop the oldest beyond `max_points`.
    pub(crate) fn append_points(&self, lines: &[QueuedLine], now: i64, max_points: u64) -> Result<Appended, StoreError> {
        let e = self.err();
        let mut out = Appended::default();
        {
            let mut insert = self
                .conn
                .prepare_cached("INSERT INTO outbox_points (measurement, timestamp_ns, line, enqueued_at) VALUES (?1, ?2, ?3, ?4)")
                .map_err(&e)?;
            for l in lines {
                insert.execute(params![l.measurement, l.timestamp_ns, l.line, now]).map_err(&e)?;
                out.queued += 1;
            }
        }
        let depth = count(self.conn, "outbox_points").map_err(&e)?;
        if depth > max_points {
            let n = depth - max_points;
            let oldest: (i64, i64) = self
                .conn
                .query_row("SELECT enqueued_at, timestamp_ns FROM outbox_points ORDER BY id LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(&e)?;
            self.conn
                .execute("DELETE FROM outbox_points WHERE id IN (SELECT id FROM outbox_points ORDER BY id LIMIT ?1)", [n as i64])
                .map_err(&e)?;
            self.conn
                .execute("UPDATE outbox_state SET dropped_total = dropped_total + ?1 WHERE sink = ?2", params![n as i64, SINK])
                .map_err(&e)?;
            out.dropped_oldest = n;
            out.oldest_dropped = Some(oldest);
        }
        out.depth = depth.min(max_points);
        Ok(out)
    }
}

impl Store {
    /// Lines waiting.
    pub fn outbox_depth(&self) -> Result<u64, StoreError> {
        count(&self.conn, "outbox_points").map_err(self.err())
    }

    /// The oldest `limit` waiting lines, with their outbox ids, in order.
    pub fn outbox_peek(&self, limit: usize) -> Result<Vec<(i64, String)>, StoreError> {
        let e = self.err();
        let mut stmt = self.conn.prepare_cached("SELECT id, line FROM outbox_points ORDER BY id LIMIT ?1").map_err(&e)?;
        let rows = stmt.query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?))).map_err(&e)?;
        rows.collect::<Result<_, _>>().map_err(&e)
    }

    /// Lines `first..=last` (`n` of them) were delivered at `now`: delete them, count them.
    pub(crate) fn outbox_delivered(&mut self, first: i64, last: i64, n: u64, now: i64) -> Result<(), StoreError> {
        self.transaction(|tx| {
            let e = tx.err();
            tx.conn.execute("DELETE FROM outbox_points WHERE id BETWEEN ?1 AND ?2", params![first, last]).map_err(&e)?;
            tx.conn
                .execute(
                    "UPDATE outbox_state SET last_attempt_at = ?1, last_success_at = ?1, consecutive_failures = 0,
                            sent_total = sent_total + ?2 WHERE sink = ?3",
                    params![now, n as i64, SINK],
                )
                .map_err(&e)?;
            Ok(())
        })
    }

    /// A write attempt failed at `now` (the lines stay queued).
    pub(crate) fn outbox_failed(&mut self, error: &str, now: i64) -> Result<(), StoreError> {
        self.transaction(|tx| {
            tx.conn
                .execute(
                    "UPDATE outbox_state SET last_attempt_at = ?1, last_error = ?2, last_error_at = ?1,
                            consecutive_failures = consecutive_failures + 1 WHERE sink = ?3",
                    params![now, error, SINK],
                )
                .map_err(tx.err())?;
            Ok(())
        })
    }

    /// The server refused line `id` alone: move it to `outbox_rejected` with the server's words.
    pub(crate) fn outbox_quarantine(&mut self, id: i64, error: &str, now: i64) -> Result<(), StoreError> {
        self.transaction(|tx| {
            let e = tx.err();
            tx.conn
                .execute(
                    "INSERT OR REPLACE INTO outbox_rejected (id, measurement, timestamp_ns, line, error, rejected_at)
                     SELECT id, measurement, timestamp_ns, line, ?2, ?3 FROM outbox_points WHERE id = ?1",
                    params![id, error, now],
                )
                .map_err(&e)?;
            tx.conn.execute("DELETE FROM outbox_points WHERE id = ?1", [id]).map_err(&e)?;
            tx.conn
                .execute(
                    "UPDATE outbox_state SET last_attempt_at = ?1, last_error = ?2, last_error_at = ?1 WHERE sink = ?3",
                    params![now, error, SINK],
                )
                .map_err(&e)?;
            Ok(())
        })
    }

    /// The lines the server refused, with its message, in order (for tests; operators read
    /// the table, counted by `outbox status`).
    #[cfg(test)]
    pub(crate) fn outbox_rejected(&self) -> Result<Vec<(String, String)>, StoreError> {
        let e = self.err();
        let mut stmt = self.conn.prepare("SELECT line, error FROM outbox_rejected ORDER BY id").map_err(&e)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(&e)?;
        rows.collect::<Result<_, _>>().map_err(&e)
    }

    /// The outbox and the writer's state.
    pub(crate) fn outbox_state(&self) -> Result<OutboxState, StoreError> {
        let e = self.err();
        let depth = count(&self.conn, "outbox_points").map_err(&e)?;
        let rejected = count(&self.conn, "outbox_rejected").map_err(&e)?;
        let oldest: Option<(i64, i64)> = self
            .conn
            .query_row("SELECT enqueued_at, timestamp_ns FROM outbox_points ORDER BY id LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(&e)?;
        let s = self
            .conn
            .query_row(
                "SELECT last_attempt_at, last_success_at, last_error, last_error_at, consecutive_failures, sent_total, dropped_total
                 FROM outbox_state WHERE sink = ?1",
                [SINK],
                |r| {
                    Ok(OutboxState {
                        depth,
                        oldest,
                        last_attempt_at: r.get(0)?,
                        last_success_at: r.get(1)?,
                        last_error: r.get(2)?,
                        last_error_at: r.get(3)?,
                        consecutive_failures: r.get(4)?,
                        sent_total: r.get(5)?,
                        dropped_total: r.get(6)?,
                        rejected,
                    })
                },
            )
            .map_err(&e)?;
        Ok(s)
    }
}
