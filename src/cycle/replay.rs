//! Replay: evaluate the alert rules at every step of a past window over the ledger, sending
//! and storing nothing, and tell how early allocations that ran out were warned.

use crate::alerts::settings::Audience;
use crate::alerts::{AlertBook, Alerting};
use crate::config::Config;
use crate::domain::calibration::{Calibration, CalibrationTable};
use crate::domain::grants::Grants;
use crate::domain::reconciliation::Reconciliation;
use crate::domain::lifecycle::Transition;
use crate::domain::time::{serialize_rfc3339, serialize_rfc3339_opt};
use crate::reconcile::view::{reconcile_view, LedgerView};
use crate::reconcile::{at_midnight_everywhere, partial_day, PartialDay};
use crate::store::{Store, StoreError};
use std::collections::{BTreeMap, HashMap};

/// One replayed alert event.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ReplayEvent {
    /// Instant (RFC 3339).
    #[serde(serialize_with = "serialize_rfc3339")]
    pub at: i64,
    /// `firing`, `reminder`, `resolved`.
    pub kind: String,
    /// Rule.
    pub rule: String,
    /// Subject.
    pub subject: String,
    /// Threshold/checkpoint.
    pub discriminator: String,
    /// Who would have been told.
    pub recipients: Vec<String>,
    /// One line.
    pub title: String,
}

/// How early an allocation that ran out of hours was warned.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct LeadTime {
    /// Allocation subject.
    pub subject: String,
    /// When it was first found exhausted.
    #[serde(serialize_with = "serialize_rfc3339")]
    pub exhausted_at: i64,
    /// First warning to its researchers (over_pace, checkpoint, threshold ≥ 75 %), if any.
    #[serde(serialize_with = "serialize_rfc3339_opt")]
    pub first_warned_at: Option<i64>,
    /// Days between them.
    pub lead_days: Option<f64>,
}

/// Drive the rules over every step of `[from, to)` of the ledger, sending and storing nothing:
/// `each` gets each step's reconciliation and the transitions it caused (with their titles).
fn each_step(
    alerting: &Alerting,
    config: &Config,
    grants: &Grants,
    store: &mut Store,
    (from, to, step_s): (i64, i64, i64),
    mut each: impl FnMut(&Reconciliation, &[(Transition, String)]),
) -> Result<(), StoreError> {
    let view = LedgerView::load(config, grants, store, from, to)?;
    let mut book = AlertBook::default();
    let no_partial = PartialDay::new();
    let mut at = from;
    while at < to {
        // Steps that are not local midnights need the partial day from the jobs.
        let partial = if at_midnight_everywhere(config, at) { None } else { Some(partial_day(config, store, at)?) };
        let rec = reconcile_view(config, grants, &view, partial.as_ref().unwrap_or(&no_partial), at);
        let transitions = book.observe(alerting, grants, &rec);
        each(&rec, &transitions);
        at += step_s;
    }
    Ok(())
}

/// Replay: evaluate the rules at every step of `[from, to)` over the ledger, without sending or
/// storing anything. Feed health is not replayed (`stale_feed` is skipped).
pub fn replay(
    alerting: &Alerting,
    config: &Config,
    grants: &Grants,
    store: &mut Store,
    from: i64,
    to: i64,
    step_s: i64,
) -> Result<(Vec<ReplayEvent>, Vec<LeadTime>), StoreError> {
    let mut events = Vec::new();
    let mut first_warning: HashMap<String, i64> = HashMap::new();
    let mut exhausted: BTreeMap<String, i64> = BTreeMap::new();
    each_step(alerting, config, grants, store, (from, to, step_s), |rec, transitions| {
        let at = rec.at;
        let by_subject: HashMap<String, usize> = rec.allocations.iter().map(|a| (a.subject(), a.index)).collect();
        for (t, title) in transitions {
            let key = t.key().clone();
            if matches!(t, Transition::Hold(..)) {
                continue;
            }
            if key.rule.marks_exhaustion(&key.discriminator) && matches!(t, Transition::Fire(_)) {
                exhausted.entry(key.subject.clone()).or_insert(at);
            }
            if matches!(t, Transition::Fire(_)) && key.rule.warns_of_exhaustion(&key.discriminator) {
                first_warning.entry(key.subject.clone()).or_insert(at);
            }
            if !t.notifies() {
                continue;
            }
            let mut recipients = Vec::new();
            for r in alerting.settings.routes.iter().filter(|r| r.rules.contains(&key.rule)) {
                match r.audience {
                    Audience::Researchers => {
                        if let Some(&i) = by_subject.get(&key.subject) {
                            let a = &grants.allocations[i];
                            for m in std::iter::once(&a.pi).chain(a.members.iter()).filter(|m| !m.is_empty()) {
                                if !recipients.contains(m) {
                                    recipients.push(m.clone());
                                }
                            }
                        }
                    }
                    Audience::Operations => {
                        for c in &r.channels {
                            let who = format!("operations:{}", c.as_str());
                            if !recipients.contains(&who) {
                                recipients.push(who);
                            }
                        }
                    }
                }
            }
            events.push(ReplayEvent {
                at,
                kind: t.kind().into(),
                rule: key.rule.as_str().into(),
                subject: key.subject.clone(),
                discriminator: key.discriminator.clone(),
                recipients,
                title: title.clone(),
            });
        }
    })?;
    let leads = exhausted
        .into_iter()
        .map(|(subject, ex)| {
            let warned = first_warning.get(&subject).copied().filter(|w| *w <= ex);
            LeadTime {
                exhausted_at: ex,
                first_warned_at: warned,
                lead_days: warned.map(|w| (ex - w) as f64 / 86400.0),
                subject,
            }
        })
        .collect();
    Ok((events, leads))
}

/// The forecasts' calibration over `[from, to)`: the rules and forecasts at every step (the
/// lead times), forecasts scored at every `snapshot_every`-th step (weekly with daily steps).
pub fn calibrate(
    alerting: &Alerting,
    config: &Config,
    grants: &Grants,
    store: &mut Store,
    (from, to, step_s): (i64, i64, i64),
    snapshot_every: u32,
) -> Result<CalibrationTable, StoreError> {
    let mut cal = Calibration::default();
    let mut n = 0u32;
    each_step(alerting, config, grants, store, (from, to, step_s), |rec, transitions| {
        cal.observe(rec, transitions.iter().map(|(t, _)| t), n % snapshot_every.max(1) == 0);
        n += 1;
    })?;
    Ok(cal.finish())
}
