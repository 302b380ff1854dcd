//! The facts of a quality report that live in the store — every alert, the reminders, the
//! notifications and the pulls of a window — and which periods' `quality` points were queued.

use super::{Store, StoreError, Tx};
use crate::domain::quality::{NotificationFacts, PullFacts, ReminderFacts};
use rusqlite::{params, OptionalExtension};

/// Which periods' `quality` points were queued (migration 7).
pub(super) const RUNS: &str = r#"
    CREATE TABLE quality_runs (
        period      TEXT PRIMARY KEY,
        enqueued_at INTEGER NOT NULL,
        points      INTEGER NOT NULL,
        trigger     TEXT NOT NULL
    );
    "#;

/// An alert as the quality report counts it (its committee is resolved by the caller).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AlertFact {
    /// Id.
    pub id: i64,
    /// Rule name.
    pub rule: String,
    /// Subject.
    pub subject: String,
    /// Threshold or checkpoint.
    pub discriminator: String,
    /// Centre.
    pub centre: String,
    /// When it fired (reconciliation instant).
    pub fired_at: i64,
}

impl Store {
    /// Every alert, oldest first.
    pub(crate) fn alert_facts(&self) -> Result<Vec<AlertFact>, StoreError> {
        let e = self.err();
        let mut stmt = self.conn.prepare("SELECT id, rule, subject, discriminator, centre, fired_at FROM alerts ORDER BY id").map_err(&e)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(AlertFact { id: r.get(0)?, rule: r.get(1)?, subject: r.get(2)?, discriminator: r.get(3)?, centre: r.get(4)?, fired_at: r.get(5)? })
            })
            .map_err(&e)?;
        rows.collect::<Result<_, _>>().map_err(&e)
    }

    /// Reminders (re-notifications) at instants in `[from, until)`.
    pub(crate) fn reminder_facts(&self, from: i64, until: i64) -> Result<Vec<ReminderFacts>, StoreError> {
        let e = self.err();
        let mut stmt = self
            .conn
            .prepare("SELECT id, alert_id, at FROM alert_events WHERE event = 'reminder' AND at >= ?1 AND at < ?2 ORDER BY id")
            .map_err(&e)?;
        let rows = stmt.query_map(params![from, until], |r| Ok(ReminderFacts { event_id: r.get(0)?, alert_id: r.get(1)?, at: r.get(2)? })).map_err(&e)?;
        rows.collect::<Result<_, _>>().map_err(&e)
    }

    /// Notifications queued by cycles at instants in `[from, until)`.
    pub(crate) fn notification_facts(&self, from: i64, until: i64) -> Result<Vec<NotificationFacts>, StoreError> {
        let e = self.err();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, at, channel, audience, recipient, state, attempts, deferrals, last_error, alert_ids FROM notifications
                 WHERE at >= ?1 AND at < ?2 ORDER BY id",
            )
            .map_err(&e)?;
        let rows = stmt
            .query_map(params![from, until], |r| {
                let ids: String = r.get(9)?;
                Ok(NotificationFacts {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    channel: r.get(2)?,
                    audience: r.get(3)?,
                    recipient: r.get(4)?,
                    state: r.get(5)?,
                    attempts: r.get(6)?,
                    deferrals: r.get(7)?,
                    last_error: r.get(8)?,
                    alert_ids: ids.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
                })
            })
            .map_err(&e)?;
        rows.collect::<Result<_, _>>().map_err(&e)
    }

    /// Pulls and imports started in `[from, until)`.
    pub(crate) fn pull_facts(&self, from: i64, until: i64) -> Result<Vec<PullFacts>, StoreError> {
        let e = self.err();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, centre, source, started_at, finished_at, ok, records, rejected, error FROM pulls
                 WHERE started_at >= ?1 AND started_at < ?2 ORDER BY id",
            )
            .map_err(&e)?;
        let rows = stmt
            .query_map(params![from, until], |r| {
                Ok(PullFacts {
                    id: r.get(0)?,
                    centre: r.get(1)?,
                    source: r.get(2)?,
                    started_at: r.get(3)?,
                    finished_at: r.get(4)?,
                    ok: r.get::<_, i64>(5)? != 0,
                    records: r.get(6)?,
                    rejected: r.get(7)?,
                    error: r.get(8)?,
                })
            })
            .map_err(&e)?;
        rows.collect::<Result<_, _>>().map_err(&e)
    }

    /// Whether a period's `quality` points were already queued.
    pub(crate) fn quality_queued(&self, period: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT 1 FROM quality_runs WHERE period = ?1", [period], |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
            .map_err(self.err())
    }
}

impl Tx<'_> {
    /// Record that a period's points were queued (again: the latest run wins).
    pub(crate) fn record_quality_run(&self, period: &str, now: i64, points: u64, trigger: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO quality_runs (period, enqueued_at, points, trigger) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (period) DO UPDATE SET enqueued_at = excluded.enqueued_at, points = excluded.points, trigger = excluded.trigger",
                params![period, now, points as i64, trigger],
            )
            .map_err(self.err())?;
        Ok(())
    }
}
