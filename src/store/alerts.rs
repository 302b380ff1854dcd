//! Alerts, their events (the audit trail) and the notification outbox. Alerts and the messages
//! they owe are written inside the cycle's transaction; messages are marked sent only once
//! their receiver accepted them.

use super::{Store, StoreError, Tx};
use crate::domain::lifecycle::{FiringAlert, Transition};
use crate::domain::rules::{AlertKey, Rule};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

/// Alerts, audit trail and notification outbox (migration 4).
pub(super) const SCHEMA: &str = r#"

    CREATE TABLE alerts (
        id               INTEGER PRIMARY KEY,
        rule             TEXT NOT NULL,
        subject          TEXT NOT NULL,
        discriminator    TEXT NOT NULL,
        centre           TEXT NOT NULL,
        project          TEXT,
        resource         TEXT,
        severity         TEXT NOT NULL,
        state            TEXT NOT NULL CHECK (state IN ('firing', 'resolved')),
        title            TEXT NOT NULL,
        facts            TEXT NOT NULL,
        fired_at         INTEGER NOT NULL,
        last_notified_at INTEGER NOT NULL,
        last_seen_at     INTEGER NOT NULL,
        resolved_at      INTEGER,
        acked_at         INTEGER,
        acked_by         TEXT
    );
    CREATE UNIQUE INDEX alerts_one_firing ON alerts (rule, subject, discriminator) WHERE state = 'firing';
    CREATE TABLE alert_events (
        id       INTEGER PRIMARY KEY,
        alert_id INTEGER NOT NULL REFERENCES alerts(id),
        cycle_id INTEGER,
        at       INTEGER NOT NULL,
        event    TEXT NOT NULL,
        detail   TEXT
    );
    CREATE INDEX alert_events_by_alert ON alert_events (alert_id);
    CREATE TABLE notifications (
        id              INTEGER PRIMARY KEY,
        cycle_id        INTEGER NOT NULL,
        created_at      INTEGER NOT NULL,
        at              INTEGER NOT NULL,
        channel         TEXT NOT NULL,
        audience        TEXT NOT NULL,
        recipient       TEXT NOT NULL,
        alert_ids       TEXT NOT NULL,
        kinds           TEXT NOT NULL,
        subject         TEXT NOT NULL,
        body_text       TEXT NOT NULL,
        body_html       TEXT NOT NULL,
        payload         TEXT NOT NULL,
        state           TEXT NOT NULL CHECK (state IN ('pending', 'sent')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error      TEXT,
        sent_at         INTEGER
    );
    CREATE INDEX notifications_pending ON notifications (state, next_attempt_at);
    "#;

/// Delivery passes that held a message back (migration 7).
pub(super) const DEFERRALS: &str = r#"

    ALTER TABLE notifications ADD COLUMN deferrals INTEGER NOT NULL DEFAULT 0;
    "#;

/// Parts an e-mail shows inline (a digest's burn-down pictures), referenced by their
/// Content-ID from its HTML (migration 8).
pub(super) const INLINE_PARTS: &str = r#"
    CREATE TABLE notification_parts (
        notification_id INTEGER NOT NULL REFERENCES notifications(id),
        position        INTEGER NOT NULL,
        content_id      TEXT NOT NULL,
        content_type    TEXT NOT NULL,
        bytes           BLOB NOT NULL,
        PRIMARY KEY (notification_id, position)
    );
    "#;

/// A firing alert as stored, with its last figures.
#[derive(Debug, Clone)]
pub(crate) struct StoredFiring {
    /// Life-cycle view.
    pub alert: FiringAlert,
    /// Figures at the last evaluation.
    pub facts: serde_json::Value,
    /// One-line description.
    pub title: String,
    /// Severity.
    pub severity: String,
}

impl Tx<'_> {
/// Alerts currently firing.
pub(crate) fn load_firing(&self) -> Result<Vec<StoredFiring>, StoreError> {
    let e = self.err();
    let mut stmt = self.conn.prepare(
        "SELECT id, rule, subject, discriminator, fired_at, last_notified_at, acked_at, facts, title, severity
         FROM alerts WHERE state = 'firing' ORDER BY id",
    ).map_err(&e)?;
    let rows = stmt.query_map([], |r| {
        let rule: String = r.get(1)?;
        let facts: String = r.get(7)?;
        Ok((
            rule,
            StoredFiring {
                alert: FiringAlert {
                    id: r.get(0)?,
                    key: AlertKey { rule: Rule::Threshold, subject: r.get(2)?, discriminator: r.get(3)? },
                    fired_at: r.get(4)?,
                    last_notified_at: r.get(5)?,
                    acked: r.get::<_, Option<i64>>(6)?.is_some(),
                },
                facts: serde_json::from_str(&facts).unwrap_or(serde_json::Value::Null),
                title: r.get(8)?,
                severity: r.get(9)?,
            },
        ))
    }).map_err(&e)?;
    let mut out = Vec::new();
    for row in rows {
        let (rule, mut f) = row.map_err(&e)?;
        // An unknown rule name can only come from a newer allocwatch: leave such alerts alone.
        if let Some(rule) = Rule::parse(&rule) {
            f.alert.key.rule = rule;
            out.push(f);
        }
    }
    Ok(out)
}

/// Write the transitions; returns the alert id of each transition (new ids for `Fire`).
pub(crate) fn apply_transitions(&self, cycle_id: i64, at: i64, transitions: &[Transition]) -> Result<Vec<i64>, StoreError> {
    let conn = self.conn;
    let e = self.err();
    let mut ids = Vec::with_capacity(transitions.len());
    for t in transitions {
        let id = match t {
            Transition::Fire(c) => {
                conn.execute(
                    "INSERT INTO alerts (rule, subject, discriminator, centre, project, resource, severity, state, title, facts,
                                         fired_at, last_notified_at, last_seen_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'firing', ?8, ?9, ?10, ?10, ?10)",
                    params![
                        c.key.rule.as_str(), c.key.subject, c.key.discriminator, c.centre, c.project, c.resource,
                        c.severity.as_str(), c.title, c.facts.to_string(), at
                    ],
                ).map_err(&e)?;
                conn.last_insert_rowid()
            }
            Transition::Renotify(id, c) => {
                conn.execute(
                    "UPDATE alerts SET last_notified_at = ?2, last_seen_at = ?2, facts = ?3, title = ?4, severity = ?5 WHERE id = ?1",
                    params![id, at, c.facts.to_string(), c.title, c.severity.as_str()],
                ).map_err(&e)?;
                *id
            }
            Transition::Hold(id, c) => {
                conn.execute(
                    "UPDATE alerts SET last_seen_at = ?2, facts = ?3, title = ?4, severity = ?5 WHERE id = ?1",
                    params![id, at, c.facts.to_string(), c.title, c.severity.as_str()],
                ).map_err(&e)?;
                *id
            }
            Transition::Resolve { id, .. } => {
                conn.execute("UPDATE alerts SET state = 'resolved', resolved_at = ?2 WHERE id = ?1", params![id, at]).map_err(&e)?;
                *id
            }
        };
        if !matches!(t, Transition::Hold(..)) {
            conn.execute(
                "INSERT INTO alert_events (alert_id, cycle_id, at, event, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, cycle_id, at, t.kind(), if t.notifies() { "notify" } else { "silent" }],
            ).map_err(&e)?;
        }
        ids.push(id);
    }
    Ok(ids)
}
}

/// A message owed to one recipient over one channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Notification {
    /// `email`, `webhook`, `alertmanager`.
    pub channel: String,
    /// `researchers` or `operations`.
    pub audience: String,
    /// E-mail address, or the channel name for shared channels.
    pub recipient: String,
    /// Alerts it is about.
    pub alert_ids: Vec<i64>,
    /// Transition kinds, parallel to `alert_ids`.
    pub kinds: Vec<String>,
    /// Subject (e-mail).
    pub subject: String,
    /// Plain text.
    pub text: String,
    /// HTML (e-mail).
    pub html: String,
    /// Channel payload (webhook body, Alertmanager alerts).
    pub payload: serde_json::Value,
}

/// A part an e-mail shows inline, e.g. `image/png` referenced as `cid:<content_id>` by its HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlinePart {
    /// Content-ID, without angle brackets.
    pub content_id: String,
    /// MIME type.
    pub content_type: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl Tx<'_> {
/// Append messages to the outbox (same transaction as the evaluation that produced them).
pub(crate) fn enqueue_notifications(&self, cycle_id: i64, at: i64, now: i64, out: &[Notification]) -> Result<(), StoreError> {
    for o in out {
        self.insert_notification(cycle_id, at, now, o)?;
    }
    Ok(())
}

/// Append one message to the outbox; returns its id.
pub(super) fn insert_notification(&self, cycle_id: i64, at: i64, now: i64, o: &Notification) -> Result<i64, StoreError> {
    let e = self.err();
    let mut stmt = self.conn.prepare_cached(
        "INSERT INTO notifications (cycle_id, created_at, at, channel, audience, recipient, alert_ids, kinds, subject, body_text,
                                    body_html, payload, state, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'pending', ?2)",
    ).map_err(&e)?;
    let ids = o.alert_ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    stmt.execute(params![
        cycle_id, now, at, o.channel, o.audience, o.recipient, ids, o.kinds.join(","), o.subject, o.text, o.html,
        o.payload.to_string()
    ]).map_err(&e)?;
    Ok(self.conn.last_insert_rowid())
}

/// Attach the parts a queued e-mail shows inline, in order.
pub(super) fn insert_inline_parts(&self, notification_id: i64, parts: &[InlinePart]) -> Result<(), StoreError> {
    let e = self.err();
    let mut stmt = self.conn.prepare_cached(
        "INSERT INTO notification_parts (notification_id, position, content_id, content_type, bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
    ).map_err(&e)?;
    for (i, p) in parts.iter().enumerate() {
        stmt.execute(params![notification_id, i as i64, p.content_id, p.content_type, p.bytes]).map_err(&e)?;
    }
    Ok(())
}
}

/// A pending notification, due for an attempt.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Outbox id (stable: used as the message's idempotency key).
    pub id: i64,
    /// Channel.
    pub channel: String,
    /// Recipient.
    pub recipient: String,
    /// Subject.
    pub subject: String,
    /// Text.
    pub text: String,
    /// HTML.
    pub html: String,
    /// Payload.
    pub payload: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Parts shown inline (e-mail), in order; empty for most messages.
    pub inline: Vec<InlinePart>,
}

impl Store {
/// Pending notifications due at `now` (all of them with `force`), oldest first.
pub(crate) fn due_notifications(&self, now: i64, force: bool, limit: i64) -> Result<Vec<Pending>, StoreError> {
    let e = self.err();
    let mut stmt = self.conn.prepare_cached(
        "SELECT id, channel, recipient, subject, body_text, body_html, payload, attempts FROM notifications
         WHERE state = 'pending' AND (?2 OR next_attempt_at <= ?1) ORDER BY id LIMIT ?3",
    ).map_err(&e)?;
    let rows = stmt.query_map(params![now, force, limit], |r| {
        Ok(Pending {
            id: r.get(0)?,
            channel: r.get(1)?,
            recipient: r.get(2)?,
            subject: r.get(3)?,
            text: r.get(4)?,
            html: r.get(5)?,
            payload: r.get(6)?,
            attempts: r.get(7)?,
            inline: Vec::new(),
        })
    }).map_err(&e)?;
    let mut due: Vec<Pending> = rows.collect::<Result<_, _>>().map_err(&e)?;
    let mut parts = self.conn.prepare_cached(
        "SELECT content_id, content_type, bytes FROM notification_parts WHERE notification_id = ?1 ORDER BY position",
    ).map_err(&e)?;
    for p in &mut due {
        let rows = parts.query_map([p.id], |r| Ok(InlinePart { content_id: r.get(0)?, content_type: r.get(1)?, bytes: r.get(2)? })).map_err(&e)?;
        p.inline = rows.collect::<Result<_, _>>().map_err(&e)?;
    }
    Ok(due)
}

/// Record a successful delivery.
#[track_caller]
pub(crate) fn notification_sent(&self, id: i64, now: i64) -> Result<(), StoreError> {
    super::crashpoint::commit(std::panic::Location::caller(), || self.conn.execute(
        "UPDATE notifications SET state = 'sent', sent_at = ?2, attempts = attempts + 1, last_error = NULL WHERE id = ?1 AND state = 'pending'",
        params![id, now],
    )).map_err(self.err())?;
    Ok(())
}

/// Record a failed attempt and when to retry.
#[track_caller]
pub(crate) fn notification_failed(&self, id: i64, error: &str, next_attempt_at: i64) -> Result<(), StoreError> {
    super::crashpoint::commit(std::panic::Location::caller(), || self.conn.execute(
        "UPDATE notifications SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3 WHERE id = ?1",
        params![id, error, next_attempt_at],
    )).map_err(self.err())?;
    Ok(())
}

/// Record, in one transaction, that a delivery pass held these messages back without trying
/// them, because their channel had just failed (the quality report counts each as a delivery
/// that needed retries).
pub(crate) fn notifications_deferred(&mut self, ids: &[i64]) -> Result<(), StoreError> {
    self.transaction(|tx| {
        for id in ids {
            tx.conn
                .execute("UPDATE notifications SET deferrals = deferrals + 1 WHERE id = ?1 AND state = 'pending'", [id])
                .map_err(tx.err())?;
        }
        Ok(())
    })
}

/// Outbox depth.
pub(crate) fn pending_notifications(&self) -> Result<i64, StoreError> {
    self.conn.query_row("SELECT COUNT(*) FROM notifications WHERE state = 'pending'", [], |r| r.get(0)).map_err(self.err())
}

/// Acknowledge a firing alert at `now` (no more reminders), with the audit event, in one
/// transaction. Returns false when no such firing alert exists.
pub(crate) fn ack_alert(&mut self, id: i64, by: &str, now: i64) -> Result<bool, StoreError> {
    self.transaction(|tx| {
        let e = tx.err();
        let n = tx
            .conn
            .execute("UPDATE alerts SET acked_at = ?2, acked_by = ?3 WHERE id = ?1 AND state = 'firing'", params![id, now, by])
            .map_err(&e)?;
        if n > 0 {
            tx.conn
                .execute(
                    "INSERT INTO alert_events (alert_id, cycle_id, at, event, detail) VALUES (?1, NULL, ?2, 'acked', ?3)",
                    params![id, now, by],
                )
                .map_err(&e)?;
        }
        Ok(n > 0)
    })
}

}

/// One alert with its delivery history, for `alerts list` and the API.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRow {
    /// Id.
    pub id: i64,
    /// Rule.
    pub rule: String,
    /// Subject.
    pub subject: String,
    /// Threshold/checkpoint.
    pub discriminator: String,
    /// Severity.
    pub severity: String,
    /// `firing` or `resolved`.
    pub state: String,
    /// One line.
    pub title: String,
    /// Fired (reconciliation instant).
    pub fired_at: i64,
    /// Resolved.
    pub resolved_at: Option<i64>,
    /// Acknowledged at (wall clock) and by whom.
    pub acked: Option<(i64, String)>,
    /// Messages sent.
    pub sent: i64,
    /// Messages waiting (or retrying).
    pub pending: i64,
    /// Last delivery error.
    pub last_error: Option<String>,
    /// Recipients told (deduplicated).
    pub recipients: Vec<String>,
}

impl Store {
/// Alerts, newest first (`all` includes resolved ones).
pub fn alerts(&self, all: bool) -> Result<Vec<AlertRow>, StoreError> {
    let e = self.err();
    let conn = &self.conn;
    let mut stmt = conn.prepare(
        "SELECT id, rule, subject, discriminator, severity, state, title, fired_at, resolved_at, acked_at, acked_by
         FROM alerts WHERE ?1 OR state = 'firing' ORDER BY id DESC",
    ).map_err(&e)?;
    let rows: Vec<AlertRow> = stmt
        .query_map([all], |r| {
            let acked_at: Option<i64> = r.get(9)?;
            let by: Option<String> = r.get(10)?;
            Ok(AlertRow {
                id: r.get(0)?,
                rule: r.get(1)?,
                subject: r.get(2)?,
                discriminator: r.get(3)?,
                severity: r.get(4)?,
                state: r.get(5)?,
                title: r.get(6)?,
                fired_at: r.get(7)?,
                resolved_at: r.get(8)?,
                acked: acked_at.map(|a| (a, by.unwrap_or_default())),
                sent: 0,
                pending: 0,
                last_error: None,
                recipients: Vec::new(),
            })
        }).map_err(&e)?
        .collect::<Result<_, _>>().map_err(&e)?;
    let mut hist = conn.prepare_cached(
        "SELECT state, recipient, last_error FROM notifications
         WHERE ',' || alert_ids || ',' LIKE '%,' || ?1 || ',%' ORDER BY id",
    ).map_err(&e)?;
    let mut out = Vec::with_capacity(rows.len());
    for mut a in rows {
        let h = hist.query_map([a.id.to_string()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?))).map_err(&e)?;
        for row in h {
            let (state, recipient, err) = row.map_err(&e)?;
            if state == "sent" {
                a.sent += 1;
                if !a.recipients.contains(&recipient) {
                    a.recipients.push(recipient);
                }
            } else {
                a.pending += 1;
                if err.is_some() {
                    a.last_error = err;
                }
            }
        }
        out.push(a);
    }
    Ok(out)
}

/// Whether an alert id exists at all.
pub(crate) fn alert_exists(&self, id: i64) -> Result<bool, StoreError> {
    self.conn.query_row("SELECT 1 FROM alerts WHERE id = ?1", [id], |_| Ok(())).optional().map(|o| o.is_some()).map_err(self.err())
}
}
