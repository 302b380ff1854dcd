//! Alert rules: pure functions from a reconciliation (and feed health) at an instant to the
//! set of conditions that hold. No I/O; the life cycle decides what to notify.

use super::settings::{AlertSettings, Checkpoint};
use crate::allocations::Grants;
use crate::engine::{AllocationReport, Reconciliation};
use crate::reconcile::Status;
use serde::Serialize;
use serde_json::json;

/// The rules allocwatch evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Consumed crossed a percentage of the grant.
    Threshold,
    /// Ahead of the expected pace.
    OverPace,
    /// Behind the expected pace.
    UnderPace,
    /// About to miss a take-back checkpoint.
    Checkpoint,
    /// Consumed ≥ granted.
    Exhausted,
    /// Usage no active allocation covers (operations only).
    OrphanUsage,
    /// A centre's accounting stopped arriving (operations only).
    StaleFeed,
}

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 7] =
        [Rule::Threshold, Rule::OverPace, Rule::UnderPace, Rule::Checkpoint, Rule::Exhausted, Rule::OrphanUsage, Rule::StaleFeed];

    /// Stable name (configuration, storage, Alertmanager `alertname`).
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Threshold => "threshold",
            Rule::OverPace => "over_pace",
            Rule::UnderPace => "under_pace",
            Rule::Checkpoint => "checkpoint",
            Rule::Exhausted => "exhausted",
            Rule::OrphanUsage => "orphan_usage",
            Rule::StaleFeed => "stale_feed",
        }
    }

    /// Parse a stable name.
    pub fn parse(s: &str) -> Option<Rule> {
        Rule::ALL.iter().copied().find(|r| r.as_str() == s)
    }

    /// Whether the rule is about one allocation (and so may go to its researchers).
    pub fn concerns_allocation(self) -> bool {
        !matches!(self, Rule::OrphanUsage | Rule::StaleFeed)
    }
}

/// Identity of an alert: (rule, allocation or centre, threshold/checkpoint).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct AlertKey {
    /// Rule.
    pub rule: Rule,
    /// `centre/project/resource/period_start`, `centre`, or `centre/cluster/account/partition`.
    pub subject: String,
    /// Threshold percentage, checkpoint date, or empty.
    pub discriminator: String,
}

/// Severity, as Alertmanager and humans understand it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For information.
    Info,
    /// Needs attention.
    Warning,
    /// Needs action now.
    Critical,
}

impl Severity {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A condition that holds at the instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Condition {
    /// Identity.
    pub key: AlertKey,
    /// Severity.
    pub severity: Severity,
    /// Index of the allocation in the grants, for allocation rules.
    #[serde(skip)]
    pub allocation: Option<usize>,
    /// Centre.
    pub centre: String,
    /// Project, for allocation rules.
    pub project: Option<String>,
    /// Resource, for allocation rules.
    pub resource: Option<String>,
    /// One line for logs and lists (English).
    pub title: String,
    /// The figures that explain it (rendered by templates).
    pub facts: serde_json::Value,
}

/// Health of one centre's accounting feed at the instant.
#[derive(Debug, Clone, PartialEq)]
pub struct CentreFeed {
    /// Centre.
    pub centre: String,
    /// Last successful pull (epoch seconds).
    pub last_success: Option<i64>,
    /// Failed pulls since the last success.
    pub consecutive_failures: u32,
    /// Last error message.
    pub last_error: Option<String>,
}

/// Subject of an allocation alert: a new period is a new subject (thresholds re-arm).
pub fn allocation_subject(a: &AllocationReport) -> String {
    format!("{}/{}/{}/{}", a.centre, a.project, a.resource, a.period_start)
}

fn figures(a: &AllocationReport) -> serde_json::Value {
    json!({
        "centre": a.centre, "project": a.project, "resource": a.resource, "committee": a.committee,
        "period_start": a.period_start, "period_end": a.period_end,
        "granted_hours": a.granted_hours, "consumed_hours": a.consumed_hours, "expected_hours": a.expected_hours,
        "remaining_hours": a.remaining_hours, "consumed_pct": a.consumed_pct, "drift_pp": a.drift_pp,
        "elapsed_pct": a.elapsed_pct, "burn_rate_hours_per_day": a.burn_rate_hours_per_day,
        "projected_exhaustion": a.projected_exhaustion, "projected_unused_hours": a.projected_unused_hours,
        "status": a.status.as_str(),
    })
}

fn with(mut v: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    v
}

/// Evaluate every enabled rule. `feeds` is `None` when feed health is not known (a replay),
/// and then `stale_feed` is not evaluated.
pub fn evaluate(s: &AlertSettings, grants: &Grants, rec: &Reconciliation, feeds: Option<&[CentreFeed]>) -> Vec<Condition> {
    let r = &s.rules;
    let at = rec.at;
    let mut out = Vec::new();
    for a in &rec.allocations {
        if matches!(a.status, Status::NotStarted | Status::Ended) {
            continue;
        }
        let subject = allocation_subject(a);
        let base = figures(a);
        let cond = |rule: Rule, disc: String, severity: Severity, title: String, facts: serde_json::Value| Condition {
            key: AlertKey { rule, subject: subject.clone(), discriminator: disc },
            severity,
            allocation: Some(a.index),
            centre: a.centre.clone(),
            project: Some(a.project.clone()),
            resource: Some(a.resource.clone()),
            title,
            facts,
        };
        let name = format!("{} {}/{}", a.project, a.centre, a.resource);
        if r.threshold.enabled {
            if let Some(pct) = a.consumed_pct {
                for &t in &r.thresholds_pct {
                    if pct >= t {
                        let sev = if t >= 100.0 { Severity::Critical } else if t >= 90.0 { Severity::Warning } else { Severity::Info };
                        out.push(cond(
                            Rule::Threshold,
                            format!("{t}"),
                            sev,
                            format!("{name}: {pct:.1} % of granted hours used (threshold {t} %)"),
                            with(base.clone(), json!({ "threshold_pct": t })),
                        ));
                    }
                }
            }
        }
        if r.exhausted.enabled && a.status == Status::Exhausted {
            out.push(cond(
                Rule::Exhausted,
                String::new(),
                Severity::Critical,
                format!("{name}: granted hours exhausted ({:.0} of {:.0} h)", a.consumed_hours, a.granted_hours),
                base.clone(),
            ));
        }
        let drift = a.drift_pp.unwrap_or(0.0);
        // Over pace stays firing once exhausted (it would otherwise "resolve" with a misleading
        // "back on pace"): the exhausted alert adds to it.
        if r.over_pace.enabled {
            let early_exhaustion = match a.projected_exhaustion_days {
                Some(days) => {
                    let days_left = (100.0 - a.elapsed_pct) / 100.0 * period_days(a);
                    days_left - days > r.over_pace_exhaustion_days
                }
                None => false,
            };
            if a.drift_pp.is_some() && (drift > r.over_pace_drift_pp || early_exhaustion) {
                out.push(cond(
                    Rule::OverPace,
                    String::new(),
                    Severity::Warning,
                    format!("{name}: over pace, drift {drift:+.1} pp{}", a.projected_exhaustion.as_deref().map(|d| format!(", exhaustion projected {}", &d[..10])).unwrap_or_default()),
                    base.clone(),
                ));
            }
        }
        if r.under_pace.enabled && a.drift_pp.is_some() && drift < r.under_pace_drift_pp && a.elapsed_pct >= r.under_pace_min_elapsed_pct {
            out.push(cond(
                Rule::UnderPace,
                String::new(),
                Severity::Warning,
                format!("{name}: under pace, drift {drift:+.1} pp, {:.0} h projected unused", a.projected_unused_hours),
                base.clone(),
            ));
        }
        if r.checkpoint.enabled {
            for c in &s.checkpoints {
                if let Some(f) = checkpoint_miss(c, a, grants, at) {
                    out.push(cond(
                        Rule::Checkpoint,
                        c.date.to_string(),
                        Severity::Warning,
                        format!(
                            "{name}: on course to miss the {} checkpoint ({:.1} % projected, {} % required): {:.0} h at stake",
                            c.date, f.projected_pct, c.min_consumed_pct, f.hours_at_stake
                        ),
                        with(base.clone(), json!({
                            "checkpoint_date": c.date.to_string(), "checkpoint_min_consumed_pct": c.min_consumed_pct,
                            "checkpoint_takeback_pct": c.takeback_pct, "checkpoint_projected_pct": f.projected_pct,
                            "checkpoint_projected_hours": f.projected_hours, "checkpoint_hours_at_stake": f.hours_at_stake,
                            "checkpoint_days_left": f.days_left,
                        })),
                    ));
                }
            }
        }
    }
    if r.orphan_usage.enabled {
        for o in rec.orphans.iter().chain(rec.unmapped.iter()) {
            if o.hours < r.orphan_min_hours {
                continue;
            }
            let what = match &o.resource {
                Some(res) => format!("no active allocation of account {} on {}", o.account, res),
                None => format!("partition {} has no billing rule", if o.partition.is_empty() { "(none)" } else { &o.partition }),
            };
            out.push(Condition {
                key: AlertKey {
                    rule: Rule::OrphanUsage,
                    subject: format!("{}/{}/{}/{}", o.centre, o.cluster, o.account, o.partition),
                    discriminator: o.resource.clone().unwrap_or_else(|| "unmapped".into()),
                },
                severity: Severity::Warning,
                allocation: None,
                centre: o.centre.clone(),
                project: None,
                resource: o.resource.clone(),
                title: format!("{}: {:.1} h in the last {} days with {what}", o.centre, o.hours, rec.orphan_window_days),
                facts: json!({
                    "centre": o.centre, "cluster": o.cluster, "account": o.account, "partition": o.partition,
                    "resource": o.resource, "jobs": o.jobs, "hours": o.hours, "window_days": rec.orphan_window_days,
                }),
            });
        }
    }
    if r.stale_feed.enabled {
        for f in feeds.unwrap_or(&[]) {
            let age_h = f.last_success.map(|t| (at - t) as f64 / 3600.0);
            let stale_age = age_h.is_some_and(|h| h > r.stale_max_age_hours);
            let failing = f.consecutive_failures >= r.stale_max_failures;
            if stale_age || failing {
                out.push(Condition {
                    key: AlertKey { rule: Rule::StaleFeed, subject: f.centre.clone(), discriminator: String::new() },
                    severity: Severity::Critical,
                    allocation: None,
                    centre: f.centre.clone(),
                    project: None,
                    resource: None,
                    title: format!(
                        "{}: accounting feed stale ({}; {} failed pulls in a row)",
                        f.centre,
                        age_h.map(|h| format!("last success {h:.1} h ago")).unwrap_or_else(|| "never succeeded".into()),
                        f.consecutive_failures
                    ),
                    facts: json!({
                        "centre": f.centre, "last_success_age_hours": age_h, "consecutive_failures": f.consecutive_failures,
                        "last_error": f.last_error, "max_age_hours": r.stale_max_age_hours,
                    }),
                });
            }
        }
    }
    out
}

fn period_days(a: &AllocationReport) -> f64 {
    let s = jiff::civil::Date::strptime("%Y-%m-%d", &a.period_start);
    let e = jiff::civil::Date::strptime("%Y-%m-%d", &a.period_end);
    match (s, e) {
        (Ok(s), Ok(e)) => (e - s).get_days() as f64,
        _ => 0.0,
    }
}

/// Projection at a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointMiss {
    /// Consumed hours projected at the checkpoint date.
    pub projected_hours: f64,
    /// …as a share of the grant, %.
    pub projected_pct: f64,
    /// Hours that would be taken back.
    pub hours_at_stake: f64,
    /// Days until the checkpoint.
    pub days_left: f64,
}

/// Whether allocation `a` is on course to miss checkpoint `c`, warned `c.warn_days` before it:
/// projected consumption at the date (consumed + burn rate × days left) under the required share.
pub fn checkpoint_miss(c: &Checkpoint, a: &AllocationReport, grants: &Grants, at: i64) -> Option<CheckpointMiss> {
    if !c.centres.is_empty() && !c.centres.contains(&a.centre) {
        return None;
    }
    if !c.committees.is_empty() && !c.committees.contains(&a.committee) {
        return None;
    }
    let alloc = &grants.allocations[a.index];
    if !(alloc.period_start <= c.date && c.date < alloc.period_end) || a.granted_hours <= 0.0 {
        return None;
    }
    // The checkpoint applies at the centre's local midnight; days are close enough in UTC
    // for a warning window counted in days.
    let cp = c.date.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp().as_second();
    let days_left = (cp - at) as f64 / 86400.0;
    if days_left <= 0.0 || days_left > c.warn_days {
        return None;
    }
    let projected = a.consumed_hours + a.burn_rate_hours_per_day * days_left;
    let pct = 100.0 * projected / a.granted_hours;
    if pct >= c.min_consumed_pct {
        return None;
    }
    let at_stake = c.takeback_pct / 100.0 * (a.granted_hours - projected).max(0.0);
    Some(CheckpointMiss { projected_hours: projected, projected_pct: pct, hours_at_stake: at_stake, days_left })
}
