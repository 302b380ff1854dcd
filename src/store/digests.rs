//! Researchers' digests: which (project, period) digests were queued, so that a period's digest
//! goes out once however often the job runs. The digest's messages go to the notification
//! outbox ([`super::alerts`]) in the same transaction as this record.

use super::alerts::{InlinePart, Notification};
use super::{Store, StoreError, Tx};
use rusqlite::{params, OptionalExtension};

/// Digests queued, one row per project and period (migration 8).
pub(super) const SCHEMA: &str = r#"
    CREATE TABLE digests (
        project    TEXT NOT NULL,
        period     TEXT NOT NULL,
        at         INTEGER NOT NULL,
        cycle_id   INTEGER NOT NULL,
        queued_at  INTEGER NOT NULL,
        messages   INTEGER NOT NULL,
        trigger    TEXT NOT NULL,
        PRIMARY KEY (project, period)
    );
    "#;

impl Store {
    /// Whether a project's digest of `period` was queued.
    pub(crate) fn digest_queued(&self, project: &str, period: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT 1 FROM digests WHERE project = ?1 AND period = ?2", params![project, period], |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
            .map_err(self.err())
    }
}

impl Tx<'_> {
    /// Queue a project's digest of `period` — its messages with their inline parts — and record
    /// it, unless it was queued already (then nothing is written and `false` is returned). Call
    /// it inside the transaction that decides, so two runs at once queue it once.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn enqueue_digest(
        &self,
        project: &str,
        period: &str,
        cycle_id: i64,
        at: i64,
        now: i64,
        trigger: &str,
        mails: &[(Notification, Vec<InlinePart>)],
    ) -> Result<bool, StoreError> {
        let e = self.err();
        let added = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO digests (project, period, at, cycle_id, queued_at, messages, trigger) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![project, period, at, cycle_id, now, mails.len() as i64, trigger],
            )
            .map_err(&e)?;
        if added == 0 {
            return Ok(false);
        }
        for (n, parts) in mails {
            let id = self.insert_notification(cycle_id, at, now, n)?;
            self.insert_inline_parts(id, parts)?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(to: &str) -> Notification {
        Notification {
            channel: "email".into(),
            audience: "researchers".into(),
            recipient: to.into(),
            alert_ids: Vec::new(),
            kinds: vec!["digest".into()],
            subject: "s".into(),
            text: "t".into(),
            html: "<img src=\"cid:a\">".into(),
            payload: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_period_is_queued_once_with_its_inline_parts_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let part = |cid: &str, b: u8| InlinePart { content_id: cid.into(), content_type: "image/png".into(), bytes: vec![b, 0, 255] };
        let mails = vec![(mail("pi@x.example"), vec![part("a", 1), part("b", 2)]), (mail("m@x.example"), vec![part("a", 1)])];
        assert!(!store.digest_queued("P1", "2026-W10").unwrap());
        assert!(store.transaction(|tx| tx.enqueue_digest("P1", "2026-W10", 3, 100, 200, "cli", &mails)).unwrap());
        assert!(store.digest_queued("P1", "2026-W10").unwrap());
        assert!(!store.digest_queued("P1", "2026-W11").unwrap() && !store.digest_queued("P2", "2026-W10").unwrap());
        // Again: nothing written.
        assert!(!store.transaction(|tx| tx.enqueue_digest("P1", "2026-W10", 4, 101, 201, "schedule", &mails)).unwrap());
        let due = store.due_notifications(1_000, false, 100).unwrap();
        assert_eq!(due.iter().map(|p| p.recipient.as_str()).collect::<Vec<_>>(), vec!["pi@x.example", "m@x.example"]);
        assert_eq!(due[0].inline, vec![part("a", 1), part("b", 2)]);
        assert_eq!(due[1].inline, vec![part("a", 1)]);
    }
}
