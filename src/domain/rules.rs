//! Alert rules: pure functions from a reconciliation (and feed health) at an instant to the
//! set of conditions that hold. No I/O; the life cycle decides what to notify.
//!
//! The pace rules read the reconciliation's pace and status: whether an allocation is over or
//! under pace is decided once, in [`super::reconcile`], from `[reconcile]`'s thresholds. What the
//! rules' own settings hold is about notifying (which rules, thresholds of consumption to
//! announce, checkpoints, reminders, resolution notices).

use super::grants::Grants;
use super::reconcile::{is_exhausted, Pace, Status};
use super::reconciliation::{AllocationReport, Reconciliation};
use super::time::{date_start, DAY_S};
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
    /// The forecast gives the allocation a high chance of running out well before its period
    /// ends.
    ForecastExhaustion,
    /// The forecast gives the allocation a high chance of leaving a share of its grant unused at
    /// the period end or at the next take-back checkpoint (for the allocator).
    ForecastUnused,
}

impl Rule {
    /// Every rule.
    pub(crate) const ALL: [Rule; 9] = [
        Rule::Threshold,
        Rule::OverPace,
        Rule::UnderPace,
        Rule::Checkpoint,
        Rule::Exhausted,
        Rule::OrphanUsage,
        Rule::StaleFeed,
        Rule::ForecastExhaustion,
        Rule::ForecastUnused,
    ];

    /// Stable name (configuration, storage, Alertmanager `alertname`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Rule::Threshold => "threshold",
            Rule::OverPace => "over_pace",
            Rule::UnderPace => "under_pace",
            Rule::Checkpoint => "checkpoint",
            Rule::Exhausted => "exhausted",
            Rule::OrphanUsage => "orphan_usage",
            Rule::StaleFeed => "stale_feed",
            Rule::ForecastExhaustion => "forecast_exhaustion",
            Rule::ForecastUnused => "forecast_unused",
        }
    }

    /// Parse a stable name.
    pub fn parse(s: &str) -> Option<Rule> {
        Rule::ALL.iter().copied().find(|r| r.as_str() == s)
    }

    /// Whether the rule is about one allocation (and so may go to its researchers).
    pub(crate) fn concerns_allocation(self) -> bool {
        !matches!(self, Rule::OrphanUsage | Rule::StaleFeed)
    }

    /// Whether researchers hear of the rule when the configuration routes nothing itself: every
    /// rule about their allocation but `forecast_unused`, which is the allocator's.
    pub(crate) fn for_researchers_by_default(self) -> bool {
        self.concerns_allocation() && self != Rule::ForecastUnused
    }

    /// Whether an alert of this rule (with this discriminator) says the hours ran out (the
    /// `exhausted` alert, not its warning that running jobs may exhaust them).
    pub(crate) fn marks_exhaustion(self, discriminator: &str) -> bool {
        self == Rule::Exhausted && discriminator != EXHAUSTED_COMMITTED
    }

    /// Whether an alert of this rule (with this discriminator) warns of a coming exhaustion:
    /// over pace, a checkpoint, a consumption threshold of 75 % or more, or the forecast's
    /// exhaustion. The replay's lead times and the quality report's `warned_ahead_pct` both count
    /// these.
    pub(crate) fn warns_of_exhaustion(self, discriminator: &str) -> bool {
        matches!(self, Rule::OverPace | Rule::Checkpoint | Rule::ForecastExhaustion)
            || (self == Rule::Exhausted && discriminator == EXHAUSTED_COMMITTED)
            || (self == Rule::Threshold && discriminator.parse::<f64>().is_ok_and(|p| p >= 75.0))
    }
}

/// Settings common to every rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleCommon {
    /// Evaluate this rule.
    pub enabled: bool,
    /// Re-notify while firing at most every this many days (0: never).
    pub renotify_days: f64,
    /// Notify when the alert resolves.
    pub notify_resolved: bool,
}

/// All rule settings: what each rule tells, and when (never a pace threshold: those are the
/// status's, in [`super::reconcile::Thresholds`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSettings {
    /// `threshold`: consumed crossed these percentages of the grant.
    pub threshold: RuleCommon,
    /// Percentages for `threshold`.
    pub thresholds_pct: Vec<f64>,
    /// `over_pace`: the allocation's pace is ahead (status `over_pace`, or `exhausted` ahead).
    pub over_pace: RuleCommon,
    /// `under_pace`: the allocation's status is `under_pace`.
    pub under_pace: RuleCommon,
    /// `checkpoint`: take-back checkpoints about to be missed.
    pub checkpoint: RuleCommon,
    /// `exhausted`.
    pub exhausted: RuleCommon,
    /// `exhausted` also fires, before the hours run out, when consumed + committed (the jobs
    /// running now, to their time limits) reach the grant (discriminator `committed`).
    pub exhausted_counts_committed: bool,
    /// `orphan_usage`.
    pub orphan_usage: RuleCommon,
    /// Hours of orphan usage in the window before it alerts.
    pub orphan_min_hours: f64,
    /// `stale_feed`.
    pub stale_feed: RuleCommon,
    /// A centre's last successful pull older than this is stale, hours.
    pub stale_max_age_hours: f64,
    /// …or this many consecutive failed pulls.
    pub stale_max_failures: u32,
    /// `forecast_exhaustion`.
    pub forecast_exhaustion: RuleCommon,
    /// It fires when the forecast runs out at least this many days before the period end…
    pub forecast_exhaustion_days: f64,
    /// …with at least this probability (0–1).
    pub forecast_exhaustion_probability: f64,
    /// `forecast_unused`.
    pub forecast_unused: RuleCommon,
    /// It fires when at least this share of the grant is left unused, % …
    pub forecast_unused_pct: f64,
    /// …with at least this probability (0–1).
    pub forecast_unused_probability: f64,
}

/// The discriminator of the `exhausted` alert that warns the running jobs may exhaust the grant.
pub(crate) const EXHAUSTED_COMMITTED: &str = "committed";

/// How far below its probability a forecast rule's alert, once firing, keeps firing: a forecast
/// that hovers around the probability would otherwise fire and resolve cycle after cycle.
pub(crate) const FORECAST_HYSTERESIS: f64 = 0.1;

impl RuleSettings {
    /// Common settings of a rule.
    pub fn common(&self, rule: Rule) -> &RuleCommon {
        match rule {
            Rule::Threshold => &self.threshold,
            Rule::OverPace => &self.over_pace,
            Rule::UnderPace => &self.under_pace,
            Rule::Checkpoint => &self.checkpoint,
            Rule::Exhausted => &self.exhausted,
            Rule::OrphanUsage => &self.orphan_usage,
            Rule::StaleFeed => &self.stale_feed,
            Rule::ForecastExhaustion => &self.forecast_exhaustion,
            Rule::ForecastUnused => &self.forecast_unused,
        }
    }
}

/// A dated take-back checkpoint declared by the allocator.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// When it is applied (centre-local midnight).
    pub date: jiff::civil::Date,
    /// Allocations under this share of their grant at the date lose part of their balance, %.
    pub min_consumed_pct: f64,
    /// Share of the unused balance taken back, %.
    pub takeback_pct: f64,
    /// Warn this many days before.
    pub warn_days: f64,
    /// Only these centres (empty: all).
    pub centres: Vec<String>,
    /// Only these committees (empty: all).
    pub committees: Vec<String>,
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
    /// Holds only as far as keeping an alert that fires already firing (hysteresis); it does
    /// not fire a new one.
    #[serde(skip)]
    pub sustains_only: bool,
}

/// Health of one centre's accounting feed at the instant.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CentreFeed {
    /// Centre.
    pub centre: String,
    /// Last successful pull (epoch seconds).
    pub last_success: Option<i64>,
    /// Failed pulls since the last success.
    pub consecutive_failures: u32,
    /// Last error message.
    pub last_error: Option<String>,
}

fn figures(a: &AllocationReport) -> serde_json::Value {
    json!({
        "centre": a.centre, "project": a.project, "resource": a.resource, "committee": a.committee,
        "period_start": a.period_start.to_string(), "period_end": a.period_end.to_string(),
        "granted_hours": a.granted_hours, "consumed_hours": a.consumed_hours, "expected_hours": a.expected_hours,
        "remaining_hours": a.remaining_hours, "consumed_pct": a.consumed_pct, "drift_pp": a.drift_pp,
        "elapsed_pct": a.elapsed_pct, "burn_rate_hours_per_day": a.burn_rate_hours_per_day,
        "projected_exhaustion": a.projected_exhaustion, "projected_unused_hours": a.projected_unused_hours,
        "committed_hours": a.committed_hours, "at_risk_hours": a.at_risk_hours, "forecast": a.forecast_band, "status": a.status.as_str(),
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
pub(crate) fn evaluate(r: &RuleSettings, checkpoints: &[Checkpoint], grants: &Grants, rec: &Reconciliation, feeds: Option<&[CentreFeed]>) -> Vec<Condition> {
    let at = rec.at;
    let mut out = Vec::new();
    for a in &rec.allocations {
        if !a.is_running() {
            continue;
        }
        let subject = a.subject();
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
            sustains_only: false,
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
                format!("{name}: granted hours exhausted ({:.0} of {:.0} h)", a.consumed_hours.value(), a.granted_hours.value()),
                base.clone(),
            ));
        }
        if r.exhausted.enabled
            && r.exhausted_counts_committed
            && a.status != Status::Exhausted
            && a.committed_hours.value() > 0.0
            && is_exhausted(a.granted_hours.value(), a.at_risk_hours.value())
        {
            out.push(cond(
                Rule::Exhausted,
                EXHAUSTED_COMMITTED.into(),
                Severity::Warning,
                format!(
                    "{name}: the jobs running now may exhaust the granted hours ({:.0} consumed + {:.0} committed of {:.0} h)",
                    a.consumed_hours.value(),
                    a.committed_hours.value(),
                    a.granted_hours.value()
                ),
                base.clone(),
            ));
        }
        let drift = a.drift_pp.unwrap_or(0.0);
        // Over pace stays firing once exhausted (it would otherwise "resolve" with a misleading
        // "back on pace"): the exhausted alert adds to it.
        if r.over_pace.enabled && a.pace == Pace::Ahead {
            out.push(cond(
                Rule::OverPace,
                String::new(),
                Severity::Warning,
                format!("{name}: over pace, drift {drift:+.1} pp{}", a.projected_exhaustion.as_ref().map(|d| format!(", exhaustion projected {}", d.date())).unwrap_or_default()),
                base.clone(),
            ));
        }
        if r.under_pace.enabled && a.status == Status::UnderPace {
            out.push(cond(
                Rule::UnderPace,
                String::new(),
                Severity::Warning,
                format!("{name}: under pace, drift {drift:+.1} pp, {:.0} h projected unused", a.projected_unused_hours.value()),
                base.clone(),
            ));
        }
        if r.checkpoint.enabled {
            for c in checkpoints {
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
        for f in forecast_conditions(r, checkpoints, grants, a, at) {
            let sev = Severity::Warning;
            out.push(Condition { sustains_only: f.sustains_only, ..cond(f.rule, f.discriminator, sev, format!("{name}: {}", f.title), with(base.clone(), f.facts)) });
        }
    }
    if r.orphan_usage.enabled {
        for o in rec.orphans.iter().chain(rec.unmapped.iter()) {
            if o.hours.value() < r.orphan_min_hours {
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
                sustains_only: false,
                title: format!("{}: {:.1} h in the last {} days with {what}", o.centre, o.hours.value(), rec.orphan_window_days),
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
                    sustains_only: false,
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

/// A forecast rule that holds for an allocation.
struct ForecastHolds {
    rule: Rule,
    discriminator: String,
    title: String,
    facts: serde_json::Value,
    sustains_only: bool,
}

/// The forecast rules of allocation `a` at `at`: `forecast_exhaustion` when P(exhaustion at
/// least `forecast_exhaustion_days` before the period end) reaches its probability;
/// `forecast_unused` when P(at least `forecast_unused_pct` % of the grant unused) does, at the
/// period end (discriminator `end`) or at the next take-back checkpoint that applies to it (its
/// date). Within [`FORECAST_HYSTERESIS`] below the probability they hold only to keep firing.
fn forecast_conditions(r: &RuleSettings, checkpoints: &[Checkpoint], grants: &Grants, a: &AllocationReport, at: i64) -> Vec<ForecastHolds> {
    let mut out = Vec::new();
    let Some(f) = &a.forecast else { return out };
    let band = json!({ "forecast_history_days": f.history_days });
    let (granted, consumed) = (a.granted_hours.value(), a.consumed_hours.value());
    let level = |p: f64, prob: f64| (p >= prob).then_some(false).or((p >= prob - FORECAST_HYSTERESIS).then_some(true));
    if r.forecast_exhaustion.enabled {
        let by = a.end_s - (r.forecast_exhaustion_days * DAY_S as f64) as i64;
        let p = f.prob_exhausted_by(by);
        // Once the hours ran out, a firing alert keeps firing (as over pace does): "no longer
        // forecast to run out" would be the wrong news; it resolves with a top-up.
        let held = if a.status == Status::Exhausted { Some(p < r.forecast_exhaustion_probability) } else { None };
        if let Some(sustains_only) = level(p, r.forecast_exhaustion_probability).or(held) {
            let printed = a.forecast_band.as_ref();
            let d = |e: Option<&Option<super::time::LocalInstant>>| e.and_then(Option::as_ref).map(|t| t.date().to_string()).unwrap_or_else(|| "after the period end".into());
            out.push(ForecastHolds {
                rule: Rule::ForecastExhaustion,
                discriminator: String::new(),
                title: format!(
                    "{:.0} % likely to run out {} days or more before the period end (80 % band {} to {})",
                    100.0 * p,
                    r.forecast_exhaustion_days,
                    d(printed.map(|b| &b.exhaustion_p10)),
                    d(printed.map(|b| &b.exhaustion_p90))
                ),
                facts: with(band.clone(), json!({
                    "forecast_probability_pct": 100.0 * p, "forecast_days_before_end": r.forecast_exhaustion_days,
                    "forecast_required_probability_pct": 100.0 * r.forecast_exhaustion_probability,
                })),
                sustains_only,
            });
        }
    }
    if r.forecast_unused.enabled && granted > 0.0 {
        let prob = r.forecast_unused_probability;
        // (discriminator, instant, quantiles of consumption then, the consumption at or under
        // which hours are lost there, share of the unused hours lost, %, what is at risk)
        let mut horizons = vec![(
            "end".to_string(),
            a.end_s,
            f.end_consumed,
            granted * (1.0 - r.forecast_unused_pct / 100.0),
            100.0,
            format!("to leave {} % or more of its grant unused at the period end", r.forecast_unused_pct),
        )];
        let alloc = &grants.allocations[a.index];
        if let Some(c) = checkpoints
            .iter()
            .filter(|c| applies(c, a) && alloc.period_start <= c.date && c.date < alloc.period_end && checkpoint_instant(c) > at)
            .min_by_key(|c| c.date)
        {
            let t = checkpoint_instant(c);
            let what = format!("to have consumed less than the {} % the {} checkpoint requires", c.min_consumed_pct, c.date);
            horizons.push((c.date.to_string(), t, f.consumed_at(t, consumed), granted * c.min_consumed_pct / 100.0, c.takeback_pct, what));
        }
        for (disc, t, q, most, takeback_pct, what) in horizons {
            let p = q.cdf(most);
            let Some(sustains_only) = level(p, prob) else { continue };
            // Unused hours exceeded with the rule's probability.
            let unused = (granted - q.at(prob)).max(0.0);
            let at_stake = takeback_pct / 100.0 * unused;
            out.push(ForecastHolds {
                rule: Rule::ForecastUnused,
                title: format!("{:.0} % likely {what}: {:.0} h at stake", 100.0 * p, at_stake),
                facts: with(band.clone(), json!({
                    "forecast_probability_pct": 100.0 * p, "forecast_unused_pct": r.forecast_unused_pct,
                    "forecast_required_probability_pct": 100.0 * prob, "forecast_horizon": disc,
                    "forecast_horizon_at": super::time::rfc3339(t), "forecast_unused_hours": unused,
                    "forecast_lost_below_hours": most, "forecast_takeback_pct": takeback_pct,
                    "forecast_hours_at_stake": at_stake,
                    "forecast_consumed_hours_p10": q.at(0.1), "forecast_consumed_hours_p50": q.at(0.5),
                    "forecast_consumed_hours_p90": q.at(0.9),
                })),
                discriminator: disc,
                sustains_only,
            });
        }
    }
    out
}

/// Whether checkpoint `c` applies to allocation `a` (its centres and committees; empty: all).
fn applies(c: &Checkpoint, a: &AllocationReport) -> bool {
    (c.centres.is_empty() || c.centres.contains(&a.centre)) && (c.committees.is_empty() || c.committees.contains(&a.committee))
}

/// The instant a checkpoint applies at. The checkpoint applies at the centre's local midnight;
/// days are close enough in UTC for warning windows counted in days.
fn checkpoint_instant(c: &Checkpoint) -> i64 {
    date_start(c.date, &jiff::tz::TimeZone::UTC)
}

/// Projection at a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CheckpointMiss {
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
pub(crate) fn checkpoint_miss(c: &Checkpoint, a: &AllocationReport, grants: &Grants, at: i64) -> Option<CheckpointMiss> {
    if !applies(c, a) {
        return None;
    }
    let alloc = &grants.allocations[a.index];
    let (granted, consumed) = (a.granted_hours.value(), a.consumed_hours.value());
    if !(alloc.period_start <= c.date && c.date < alloc.period_end) || granted <= 0.0 {
        return None;
    }
    let cp = checkpoint_instant(c);
    let days_left = (cp - at) as f64 / DAY_S as f64;
    if days_left <= 0.0 || days_left > c.warn_days {
        return None;
    }
    let projected = consumed + a.burn_rate_hours_per_day * days_left;
    let pct = 100.0 * projected / granted;
    if pct >= c.min_consumed_pct {
        return None;
    }
    let at_stake = c.takeback_pct / 100.0 * (granted - projected).max(0.0);
    Some(CheckpointMiss { projected_hours: projected, projected_pct: pct, hours_at_stake: at_stake, days_left })
}
