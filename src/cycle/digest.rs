//! Researchers' digests (`[alerts.digest]`) from a reconciliation: one per project and period
//! (ISO week or month, UTC), queued in the notification outbox — each mail with its burn-down
//! pictures — in one transaction with the record that the project's digest of that period was
//! queued, so a later run in the same period queues nothing. Delivery is the outbox's (at least
//! once, the same Message-ID on a re-send).
//!
//! The figures are the reconciliation's reports (the daemon passes its last cycle's, the
//! command line reconciles at `--at`), the pictures the same burn-down series as the status
//! page ([`crate::reconcile::burndown::load`]); composing is [`crate::alerts::digest`]'s.

use crate::alerts::digest::period_of;
use crate::alerts::Alerting;
use crate::config::Config;
use crate::domain::grants::Grants;
use crate::domain::reconciliation::{AllocationReport, Reconciliation};
use crate::store::{Store, StoreError};
use std::collections::BTreeMap;

/// One digest mail as composed (what `--dry-run` prints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestPreview {
    /// The project.
    pub project: String,
    /// The researcher it goes to.
    pub recipient: String,
    /// Subject.
    pub subject: String,
    /// The text part.
    pub text: String,
}

/// What a digest run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestRun {
    /// The period (`2026-W47`, `2026-11`).
    pub period: String,
    /// Projects whose digest was queued by this run, with the number of mails.
    pub queued: Vec<(String, usize)>,
    /// Projects whose digest of the period had been queued already: nothing more queued.
    pub already: Vec<String>,
    /// The mails composed now (queued, or only shown in a dry run).
    pub mails: Vec<DigestPreview>,
}

/// Why a digest run failed.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// Digests are not configured, or cannot be composed (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The store failed (exit code 1).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Queue the digest of every project with an allocation running at the reconciliation's
/// instant, for the period that instant falls in, unless already queued; `cycle_id` is the
/// recorded cycle `rec` comes from (0: reconciled on demand). `now` (the wall clock) dates the
/// messages and their signed links. A dry run composes the same mails and queues nothing.
#[allow(clippy::too_many_arguments)]
pub fn run(
    config: &Config,
    grants: &Grants,
    alerting: &Alerting,
    store: &mut Store,
    rec: &Reconciliation,
    cycle_id: i64,
    now: i64,
    trigger: &str,
    dry_run: bool,
) -> Result<DigestRun, DigestError> {
    let Some(settings) = alerting.digest_settings() else {
        return Err(DigestError::Usage(format!("{}: no [alerts.digest] section: digests are off", config.path.display())));
    };
    let period = period_of(rec.at, settings.every);
    // A project's running allocations, on every centre and resource: one digest for all.
    let mut by_project: BTreeMap<&str, Vec<&AllocationReport>> = BTreeMap::new();
    for a in rec.allocations.iter().filter(|a| a.is_running()) {
        by_project.entry(a.project.as_str()).or_default().push(a);
    }
    let mut run = DigestRun { period: period.clone(), ..Default::default() };
    for (project, reports) in by_project {
        if store.digest_queued(project, &period)? {
            run.already.push(project.to_string());
            continue;
        }
        let mut burndowns = Vec::with_capacity(reports.len());
        for r in reports {
            burndowns.push(crate::reconcile::burndown::load(store, config, grants, r, rec.at)?);
        }
        let mails = alerting.compose_digest(grants, project, &burndowns, &period, rec.at, now).map_err(|e| DigestError::Usage(format!("digest of {project}: {e}")))?;
        let previews: Vec<DigestPreview> = mails
            .iter()
            .map(|(n, _)| DigestPreview { project: project.to_string(), recipient: n.recipient.clone(), subject: n.subject.clone(), text: n.text.clone() })
            .collect();
        if dry_run {
            run.mails.extend(previews);
            continue;
        }
        // Decided again inside the transaction: a run at the same time queues it once.
        if store.transaction(|tx| tx.enqueue_digest(project, &period, cycle_id, rec.at, now, trigger, &mails))? {
            run.queued.push((project.to_string(), mails.len()));
            run.mails.extend(previews);
        } else {
            run.already.push(project.to_string());
        }
    }
    Ok(run)
}
