//! Reconciliation cycles: one row per cycle, and which pulls each cycle accounted for (so the
//! next cycle's feed figures count only newer pulls). A cycle's row is written in the same
//! transaction as everything it owes downstream.

use super::{Store, StoreError, Tx};
use rusqlite::params;

/// The `cycles` table (migration 2).
pub(super) const SCHEMA: &str = r#"
    CREATE TABLE cycles (
        id          INTEGER PRIMARY KEY,
        at          INTEGER NOT NULL,
        started_at  INTEGER NOT NULL,
        allocations INTEGER NOT NULL,
        trigger     TEXT NOT NULL
    );
    "#;

/// Which pulls each cycle accounted for (migration 3).
pub(super) const PULLS_SEEN: &str = r#"
    CREATE TABLE cycle_pulls (
        cycle_id     INTEGER PRIMARY KEY REFERENCES cycles(id),
        last_pull_id INTEGER NOT NULL
    );
    "#;

impl Tx<'_> {
    /// Record a cycle reconciled at `at` (started on the wall clock at `started_at`); returns its id.
    pub(crate) fn insert_cycle(&self, at: i64, started_at: i64, allocations: usize, trigger: &str) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO cycles (at, started_at, allocations, trigger) VALUES (?1, ?2, ?3, ?4)",
                params![at, started_at, allocations as i64, trigger],
            )
            .map_err(self.err())?;
        Ok(self.conn.last_insert_rowid())
    }
}

impl Store {
    /// The latest reconciliation instant recorded, if any.
    pub(crate) fn latest_cycle_at(&self) -> Result<Option<i64>, StoreError> {
        self.conn.query_row("SELECT MAX(at) FROM cycles", [], |r| r.get(0)).map_err(self.err())
    }
}
