//! Persistence of alerts, their events (the audit trail) and the notification outbox, in the
//! ledger's SQLite file. Writes happen inside the cycle's transaction.

use super::lifecycle::{FiringAlert, Transition};
use super::rules::{AlertKey, Rule};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// A firing alert as stored, with its last figures.
#[derive(Debug, Clone)]
pub struct StoredFiring {
    /// Life-cycle view.
    pub alert: FiringAlert,
    /// Figures at the last evaluation.
    pub facts: serde_json::Value,
    /// One-line description.
    pub title: String,
    /// Severity.
    pub severity: String,
    /// Centre.
    pub centre: String,
    /// Project.
    pub project: Option<String>,
    /// Resource.
    pub resource: Option<String>,
}

/// Alerts currently firing.
pub fn load_firing(conn: &Connection) -> rusqlite::Result<Vec<StoredFiring>> {
    let mut stmt = conn.prepare(
        "SELECT id, rule, subject, discriminator, fired_at, last_notified_at, acked_at, facts, title, severity, centre, project, resource
         FROM alerts WHERE state = 'firing' ORDER BY id",
    )?;
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
                centre: r.get(10)?,
                project: r.get(11)?,
                resource: r.get(12)?,
            },
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (rule, mut f) = row?;
        // An unknown rule name can only come from a newer allocwatch: leave such alerts alone.
        if let Some(rule) = Rule::parse(&rule) {
            f.alert.key.rule = rule;
            out.push(f);
        }
    }
    Ok(out)
}

/// Write the transitions; returns the alert id of each transition (new ids for `Fire`).
pub fn apply(conn: &Connection, cycle_id: i64, at: i64, transitions: &[Transition]) -> rusqlite::Result<Vec<i64>> {
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
                )?;
                conn.last_insert_rowid()
            }
            Transition::Renotify(id, c) => {
                conn.execute(
                    "UPDATE alerts SET last_notified_at = ?2, last_seen_at = ?2, facts = ?3, title = ?4, severity = ?5 WHERE id = ?1",
                    params![id, at, c.facts.to_string(), c.title, c.severity.as_str()],
                )?;
                *id
            }
            Transition::Hold(id, c) => {
                conn.execute(
                    "UPDATE alerts SET last_seen_at = ?2, facts = ?3, title = ?4, severity = ?5 WHERE id = ?1",
                    params![id, at, c.facts.to_string(), c.title, c.severity.as_str()],
                )?;
                *id
            }
            Transition::Resolve { id, .. } => {
                conn.execute("UPDATE alerts SET state = 'resolved', resolved_at = ?2 WHERE id = ?1", params![id, at])?;
                *id
            }
        };
        if !matches!(t, Transition::Hold(..)) {
            conn.execute(
                "INSERT INTO alert_events (alert_id, cycle_id, at, event, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, cycle_id, at, t.kind(), if t.notifies() { "notify" } else { "silent" }],
            )?;
        }
        ids.push(id);
    }
    Ok(ids)
}

/// A message owed to one recipient over one channel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outgoing {
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

/// Append messages to the outbox (same transaction as the evaluation that produced them).
pub fn enqueue(conn: &Connection, cycle_id: i64, at: i64, now: i64, out: &[Outgoing]) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO notifications (cycle_id, created_at, at, channel, audience, recipient, alert_ids, kinds, subject, body_text,
                                    body_html, payload, state, next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'pending', ?2)",
    )?;
    for o in out {
        let ids = o.alert_ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        stmt.execute(params![
            cycle_id, now, at, o.channel, o.audience, o.recipient, ids, o.kinds.join(","), o.subject, o.text, o.html,
            o.payload.to_string()
        ])?;
    }
    Ok(())
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
}

/// Pending notifications due at `now` (all of them with `force`), oldest first.
pub fn due(conn: &Connection, now: i64, force: bool, limit: i64) -> rusqlite::Result<Vec<Pending>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, channel, recipient, subject, body_text, body_html, payload, attempts FROM notifications
         WHERE state = 'pending' AND (?2 OR next_attempt_at <= ?1) ORDER BY id LIMIT ?3",
    )?;
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
        })
    })?;
    rows.collect()
}

/// Record a successful delivery.
pub fn mark_sent(conn: &Connection, id: i64, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE notifications SET state = 'sent', sent_at = ?2, attempts = attempts + 1, last_error = NULL WHERE id = ?1 AND state = 'pending'",
        params![id, now],
    )?;
    Ok(())
}

/// Record a failed attempt and when to retry.
pub fn mark_failed(conn: &Connection, id: i64, error: &str, next_attempt_at: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE notifications SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3 WHERE id = ?1",
        params![id, error, next_attempt_at],
    )?;
    Ok(())
}

/// Record that a delivery pass held a message back without trying it, because its channel
/// had just failed (the quality report counts it as a delivery that needed retries).
pub fn mark_deferred(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.execute("UPDATE notifications SET deferrals = deferrals + 1 WHERE id = ?1 AND state = 'pending'", [id])?;
    Ok(())
}

/// Outbox depth.
pub fn pending_count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COUNT(*) FROM notifications WHERE state = 'pending'", [], |r| r.get(0))
}

/// Acknowledge an alert: no more reminders. Returns false when no such firing alert exists.
pub fn ack(conn: &Connection, id: i64, by: &str, now: i64) -> rusqlite::Result<bool> {
    let n = conn.execute("UPDATE alerts SET acked_at = ?2, acked_by = ?3 WHERE id = ?1 AND state = 'firing'", params![id, now, by])?;
    if n > 0 {
        conn.execute(
            "INSERT INTO alert_events (alert_id, cycle_id, at, event, detail) VALUES (?1, NULL, ?2, 'acked', ?3)",
            params![id, now, by],
        )?;
    }
    Ok(n > 0)
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

/// Alerts, newest first (`all` includes resolved ones).
pub fn list(conn: &Connection, all: bool) -> rusqlite::Result<Vec<AlertRow>> {
    let mut stmt = conn.prepare(
        "SELECT id, rule, subject, discriminator, severity, state, title, fired_at, resolved_at, acked_at, acked_by
         FROM alerts WHERE ?1 OR state = 'firing' ORDER BY id DESC",
    )?;
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
        })?
        .collect::<Result<_, _>>()?;
    let mut hist = conn.prepare_cached(
        "SELECT state, recipient, last_error FROM notifications
         WHERE ',' || alert_ids || ',' LIKE '%,' || ?1 || ',%' ORDER BY id",
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for mut a in rows {
        let h = hist.query_map([a.id.to_string()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?)))?;
        for row in h {
            let (state, recipient, err) = row?;
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
pub fn exists(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    conn.query_row("SELECT 1 FROM alerts WHERE id = ?1", [id], |_| Ok(())).optional().map(|o| o.is_some())
}

/// Health of every centre's feed from the pull history: last success, failures since.
pub fn centre_feeds(conn: &Connection) -> rusqlite::Result<Vec<super::rules::CentreFeed>> {
    let mut stmt = conn.prepare(
        "SELECT p.centre,
                MAX(CASE WHEN p.ok = 1 THEN p.finished_at END) AS last_ok,
                (SELECT COUNT(*) FROM pulls f WHERE f.centre = p.centre AND f.ok = 0
                   AND f.id > COALESCE((SELECT MAX(id) FROM pulls s WHERE s.centre = p.centre AND s.ok = 1), 0)),
                (SELECT error FROM pulls e WHERE e.centre = p.centre AND e.ok = 0 ORDER BY e.id DESC LIMIT 1)
         FROM pulls p GROUP BY p.centre ORDER BY p.centre",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(super::rules::CentreFeed {
            centre: r.get(0)?,
            last_success: r.get(1)?,
            consecutive_failures: r.get::<_, i64>(2)? as u32,
            last_error: r.get(3)?,
        })
    })?;
    rows.collect()
}
