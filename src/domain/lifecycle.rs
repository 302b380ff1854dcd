//! Alert life cycle, pure: given the alerts currently firing and the conditions that hold now,
//! decide what fires, what is re-notified, what resolves. States: firing → resolved.

use super::rules::{AlertKey, Condition, Rule, RuleSettings};
use std::collections::{HashMap, HashSet};

/// An alert currently firing, as remembered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FiringAlert {
    /// Store id (or a replay's counter).
    pub id: i64,
    /// Identity.
    pub key: AlertKey,
    /// When it fired (reconciliation instant, epoch seconds).
    pub fired_at: i64,
    /// When its last notification was planned (reconciliation instant).
    pub last_notified_at: i64,
    /// Acknowledged: no more re-notifications.
    pub acked: bool,
}

/// What happens to one alert in this evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// A new alert: notify.
    Fire(Condition),
    /// Still firing and due for a reminder: notify again.
    Renotify(i64, Condition),
    /// Still firing, nothing to send (its figures are refreshed).
    Hold(i64, Condition),
    /// No longer holds. `notify` says whether to tell people.
    Resolve {
        /// Alert id.
        id: i64,
        /// Identity.
        key: AlertKey,
        /// Whether a resolution message is owed.
        notify: bool,
    },
}

impl Transition {
    /// Whether the transition owes a notification.
    pub fn notifies(&self) -> bool {
        matches!(self, Transition::Fire(_) | Transition::Renotify(..) | Transition::Resolve { notify: true, .. })
    }

    /// The alert identity.
    pub fn key(&self) -> &AlertKey {
        match self {
            Transition::Fire(c) | Transition::Renotify(_, c) | Transition::Hold(_, c) => &c.key,
            Transition::Resolve { key, .. } => key,
        }
    }

    /// Stable name of the kind of transition.
    pub fn kind(&self) -> &'static str {
        match self {
            Transition::Fire(_) => "firing",
            Transition::Renotify(..) => "reminder",
            Transition::Hold(..) => "hold",
            Transition::Resolve { .. } => "resolved",
        }
    }
}

/// Plan the transitions at instant `at`.
///
/// - `evaluated`: rules evaluated this time; firing alerts of other rules are left alone
///   (a replay does not evaluate `stale_feed`, so it must not resolve those).
/// - `quiet_subjects`: subjects whose resolutions are not worth telling (the allocation's period
///   ended or it was removed: the condition stopped holding for a reason that is not good news).
pub(crate) fn plan(
    conditions: Vec<Condition>,
    firing: &[FiringAlert],
    at: i64,
    rules: &RuleSettings,
    evaluated: &HashSet<Rule>,
    quiet_subjects: &HashSet<String>,
) -> Vec<Transition> {
    let by_key: HashMap<&AlertKey, &FiringAlert> = firing.iter().map(|f| (&f.key, f)).collect();
    let mut holding: HashSet<AlertKey> = HashSet::new();
    let mut out = Vec::new();
    for c in conditions {
        if !holding.insert(c.key.clone()) {
            continue; // the same identity twice: keep the first
        }
        match by_key.get(&c.key) {
            None if c.sustains_only => {}
            None => out.push(Transition::Fire(c)),
            Some(f) => {
                let every = rules.common(c.key.rule).renotify_days;
                let due = every > 0.0 && !f.acked && (at - f.last_notified_at) as f64 >= every * 86400.0;
                out.push(if due { Transition::Renotify(f.id, c) } else { Transition::Hold(f.id, c) });
            }
        }
    }
    for f in firing {
        if holding.contains(&f.key) || !evaluated.contains(&f.key.rule) {
            continue;
        }
        let notify = rules.common(f.key.rule).notify_resolved && !quiet_subjects.contains(&f.key.subject);
        out.push(Transition::Resolve { id: f.id, key: f.key.clone(), notify });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::rules::Severity;
    use super::*;

    fn settings() -> RuleSettings {
        use super::super::rules::RuleCommon;
        let c = |renotify_days: f64, notify_resolved: bool| RuleCommon { enabled: true, renotify_days, notify_resolved };
        RuleSettings {
            threshold: c(0.0, false),
            thresholds_pct: vec![50.0, 75.0, 90.0],
            over_pace: c(7.0, true),
            under_pace: c(7.0, true),
            checkpoint: c(7.0, false),
            exhausted: c(7.0, true),
            exhausted_counts_committed: false,
            orphan_usage: c(7.0, true),
            orphan_min_hours: 1.0,
            stale_feed: c(1.0, true),
            stale_max_age_hours: 6.0,
            stale_max_failures: 3,
            forecast_exhaustion: c(7.0, true),
            forecast_exhaustion_days: 30.0,
            forecast_exhaustion_probability: 0.8,
            forecast_unused: c(7.0, true),
            forecast_unused_pct: 10.0,
            forecast_unused_probability: 0.8,
        }
    }

    fn cond(rule: Rule, subject: &str, disc: &str) -> Condition {
        Condition {
            key: AlertKey { rule, subject: subject.into(), discriminator: disc.into() },
            severity: Severity::Warning,
            allocation: Some(0),
            centre: "c".into(),
            project: Some("p".into()),
            resource: Some("r".into()),
            title: String::new(),
            facts: serde_json::Value::Null,
            sustains_only: false,
        }
    }

    fn firing(id: i64, rule: Rule, subject: &str, disc: &str, last: i64, acked: bool) -> FiringAlert {
        FiringAlert { id, key: AlertKey { rule, subject: subject.into(), discriminator: disc.into() }, fired_at: 0, last_notified_at: last, acked }
    }

    const DAY: i64 = 86400;

    #[test]
    fn table() {
        let all: HashSet<Rule> = Rule::ALL.into_iter().collect();
        let none = HashSet::new();
        let s = settings();
        // (case, conditions, firing, at, expected kinds)
        let cases: Vec<(&str, Vec<Condition>, Vec<FiringAlert>, i64, Vec<&str>)> = vec![
            ("new condition fires", vec![cond(Rule::OverPace, "a", "")], vec![], 0, vec!["firing"]),
            ("still holding, not due", vec![cond(Rule::OverPace, "a", "")], vec![firing(1, Rule::OverPace, "a", "", 0, false)], 6 * DAY, vec!["hold"]),
            ("reminder after 7 days", vec![cond(Rule::OverPace, "a", "")], vec![firing(1, Rule::OverPace, "a", "", 0, false)], 7 * DAY, vec!["reminder"]),
            ("acknowledged: no reminder", vec![cond(Rule::OverPace, "a", "")], vec![firing(1, Rule::OverPace, "a", "", 0, true)], 30 * DAY, vec!["hold"]),
            ("thresholds never remind", vec![cond(Rule::Threshold, "a", "50")], vec![firing(1, Rule::Threshold, "a", "50", 0, false)], 300 * DAY, vec!["hold"]),
            ("cleared: resolved", vec![], vec![firing(1, Rule::OverPace, "a", "", 0, false)], DAY, vec!["resolved"]),
            ("next threshold fires beside the held one", vec![cond(Rule::Threshold, "a", "50"), cond(Rule::Threshold, "a", "75")], vec![firing(1, Rule::Threshold, "a", "50", 0, false)], DAY, vec!["hold", "firing"]),
        ];
        for (name, conds, f, at, want) in cases {
            let got = plan(conds, &f, at, &s, &all, &none);
            assert_eq!(got.iter().map(Transition::kind).collect::<Vec<_>>(), want, "{name}");
        }
    }

    #[test]
    fn resolution_notifications() {
        let s = settings();
        let all: HashSet<Rule> = Rule::ALL.into_iter().collect();
        // A threshold re-armed by a top-up resolves silently; an over-pace resolution is told.
        let got = plan(vec![], &[firing(1, Rule::Threshold, "a", "90", 0, false), firing(2, Rule::OverPace, "a", "", 0, false)], DAY, &s, &all, &HashSet::new());
        assert_eq!(got.iter().map(Transition::notifies).collect::<Vec<_>>(), vec![false, true]);
        // A period that ended: quiet.
        let quiet: HashSet<String> = ["a".to_string()].into();
        let got = plan(vec![], &[firing(2, Rule::OverPace, "a", "", 0, false)], DAY, &s, &all, &quiet);
        assert!(!got[0].notifies());
        // Rules not evaluated (replay without feeds) are left alone.
        let only: HashSet<Rule> = [Rule::OverPace].into();
        let got = plan(vec![], &[firing(3, Rule::StaleFeed, "idris", "", 0, false)], DAY, &s, &only, &HashSet::new());
        assert!(got.is_empty());
    }
}
