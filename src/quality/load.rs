//! Loading the facts of a quality report: allocations and adjustments (from their files),
//! reconciliations at the window start, month ends and window end (from the ledger, through
//! [`crate::reconcile::view::LedgerView`]), alerts, reminders, notifications and pulls (from the
//! store), and the CPU usage of the window by class (allocated, orphan, unmapped), each class
//! decided by the one charging rule.

use super::QualityError;
use crate::config::{CentreConfig, Config};
use crate::domain::charge::{Charge, Charging};
use crate::domain::grants::{Allocation, Grants};
use crate::domain::hours::HoursKind;
use crate::domain::quality::*;
use crate::domain::reconciliation::AllocationReport;
use crate::domain::rules::Rule;
use crate::domain::time::{date_start, day_date, day_start, local_day, rfc3339};
use crate::reconcile::view::{reconcile_view, LedgerView};
use crate::reconcile::{at_midnight_everywhere, partial_day, PartialDay};
use crate::store::{Store, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Up to when the figures may look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// The store's latest reconciliation instant (else its latest pull): the same store gives
    /// the same report, whenever it is made.
    Store,
    /// A given instant (the scheduled run: now, after the period).
    At(i64),
}

/// The latest instant the store knows of: its latest reconciliation, else its latest pull.
pub(crate) fn store_as_of(store: &Store) -> Result<Option<i64>, StoreError> {
    match store.latest_cycle_at()? {
        Some(t) => Ok(Some(t)),
        None => store.latest_pull_at(),
    }
}

/// Load the facts of `period` (restricted to one centre if asked).
pub fn load(
    config: &Config,
    grants: &Grants,
    store: &mut Store,
    period: &Period,
    centre: Option<&str>,
    min_lead_days: f64,
    as_of: AsOf,
) -> Result<Inputs, QualityError> {
    if let Some(c) = centre {
        config.centre(c).map_err(|e| QualityError::Usage(e.to_string()))?;
    }
    let as_of = match as_of {
        AsOf::At(t) => t,
        AsOf::Store => store_as_of(store)?.ok_or_else(|| {
            QualityError::Usage(format!("store {}: no reconciliation or pull recorded yet: nothing to report (run `allocwatch check` first)", store.path().display()))
        })?,
    };
    let centres: Vec<&CentreConfig> = config.centres.values().filter(|c| centre.is_none_or(|x| x == c.id)).collect();
    let windows: Vec<CentreWindow> = centres
        .iter()
        .map(|c| {
            let start_s = date_start(period.start, &c.tz);
            let period_end_s = date_start(period.end, &c.tz);
            CentreWindow { centre: c.id.clone(), start_s, end_s: period_end_s.min(as_of).max(start_s), period_end_s }
        })
        .collect();
    if windows.iter().all(|w| w.end_s <= w.start_s) {
        return Err(QualityError::Usage(format!(
            "period {} starts after the store's latest data ({}): nothing to report yet",
            period.label,
            rfc3339(as_of)
        )));
    }
    let window_of: HashMap<&str, &CentreWindow> = windows.iter().map(|w| (w.centre.as_str(), w)).collect();

    // Month-end instants per centre: the month's local end, or as_of when earlier.
    let months: Vec<Period> = period.months().into_iter().filter(|m| centres.iter().any(|c| date_start(m.start, &c.tz) < as_of)).collect();
    let month_instants = |c: &CentreConfig, m: &Period| -> Option<(i64, i64)> {
        let s = date_start(m.start, &c.tz);
        (s < as_of).then(|| (s, date_start(m.end, &c.tz).min(as_of)))
    };

    // Reconcile once per distinct instant needed: window starts and ends, month ends.
    let mut instants: BTreeSet<i64> = BTreeSet::new();
    for c in &centres {
        let w = window_of[c.id.as_str()];
        instants.insert(w.start_s);
        instants.insert(w.end_s);
        for m in &months {
            if let Some((_, t)) = month_instants(c, m) {
                instants.insert(t);
            }
        }
    }
    let from = *instants.first().expect("at least one centre");
    let until = *instants.last().expect("at least one centre");
    let view = LedgerView::load(config, grants, store, from, until)?;
    let mut recs: HashMap<i64, HashMap<usize, AllocationReport>> = HashMap::new();
    for &t in &instants {
        let partial = if at_midnight_everywhere(config, t) { PartialDay::new() } else { partial_day(config, store, t)? };
        let rec = reconcile_view(config, grants, &view, &partial, t);
        recs.insert(t, rec.allocations.into_iter().map(|a| (a.index, a)).collect());
    }
    let at = |t: i64, i: usize| recs.get(&t).and_then(|m| m.get(&i));

    // Allocations overlapping their centre's window, in file order.
    let th = &config.thresholds;
    let mut allocations = Vec::new();
    let mut fact_of_index: HashMap<usize, usize> = HashMap::new();
    let mut committee_of_subject: HashMap<String, String> = HashMap::new();
    for (i, a) in grants.allocations.iter().enumerate() {
        let Some(c) = config.centres.get(&a.centre) else { continue };
        let committee = committee_of(a);
        let subject = a.subject();
        committee_of_subject.insert(subject.clone(), committee.clone());
        let Some(w) = window_of.get(a.centre.as_str()) else { continue };
        let start_s = date_start(a.period_start, &c.tz);
        let end_s = date_start(a.period_end, &c.tz);
        let overlap = (start_s.max(w.start_s), end_s.min(w.end_s));
        if overlap.1 <= overlap.0 {
            continue;
        }
        let last_day = day_date(local_day(overlap.1 - 1, &c.tz));
        let consumed = |t: i64| at(t, i).map(|r| r.consumed_hours.value()).unwrap_or(0.0);
        fact_of_index.insert(i, allocations.len());
        allocations.push(AllocationFacts {
            centre: a.centre.clone(),
            project: a.project.clone(),
            resource: a.resource.clone(),
            kind: c.kind_of(&a.resource).unwrap_or(HoursKind::CoreHours),
            committee,
            subject,
            origin: a.origin.clone(),
            start_s,
            end_s,
            granted_at_end_hours: grants.granted_on(i, last_day),
            consumed_before_hours: consumed(w.start_s),
            consumed_at_end_hours: consumed(w.end_s),
            // Charging stops at the period end, so an allocation that ended by the window end
            // has its final hours in the window end's reconciliation (one at its period end
            // would read the same ledger rows: the same hours, for one more reconciliation).
            final_consumed_hours: if end_s <= w.end_s { at(w.end_s, i).map(|r| r.consumed_hours.value()) } else { None },
            overlap,
        });
    }

    // Standings: at the window end (allocations overlapping the window), and at each month end
    // (allocations overlapping that month).
    let mut standings = Vec::new();
    let add_standing = |snapshot: &str, t: i64, i: usize, standings: &mut Vec<Standing>| {
        let (Some(&k), Some(r)) = (fact_of_index.get(&i), at(t, i)) else { return };
        if let Some((status, drift_pp)) = standing(r, th) {
            let end_consumed_band = r.forecast.as_ref().map(|f| (f.end_consumed.at(0.1), f.end_consumed.at(0.9)));
            standings.push(Standing { snapshot: snapshot.to_string(), allocation: k, at_s: t, status, drift_pp, consumed_pct: r.consumed_pct, end_consumed_band });
        }
    };
    for (i, a) in grants.allocations.iter().enumerate() {
        let (Some(c), Some(w)) = (config.centres.get(&a.centre), window_of.get(a.centre.as_str())) else { continue };
        if !fact_of_index.contains_key(&i) {
            continue;
        }
        add_standing("end", w.end_s, i, &mut standings);
        let start_s = date_start(a.period_start, &c.tz);
        let end_s = date_start(a.period_end, &c.tz);
        for m in &months {
            if let Some((ms, me)) = month_instants(c, m) {
                if start_s < me && end_s > ms {
                    add_standing(&m.label, me, i, &mut standings);
                }
            }
        }
    }
    // Month snapshots in month order, each in file order.
    let month_rank: HashMap<&str, usize> = months.iter().enumerate().map(|(k, m)| (m.label.as_str(), k + 1)).collect();
    standings.sort_by_key(|s| (month_rank.get(s.snapshot.as_str()).copied().unwrap_or(0), s.allocation));

    let adjustments = adjustment_facts(config, grants, &window_of);

    let in_scope = |c: &str| window_of.contains_key(c);
    // Alerts: all of them (a warning may predate the period), of the report's centres.
    let alerts: Vec<AlertFacts> = store
        .alert_facts()?
        .into_iter()
        .filter(|a| in_scope(&a.centre))
        .map(|a| {
            let about_allocation = Rule::parse(&a.rule).is_some_and(|r| r.concerns_allocation());
            let committee = if about_allocation { committee_of_subject.get(&a.subject).cloned() } else { None };
            AlertFacts { id: a.id, rule: a.rule, subject: a.subject, discriminator: a.discriminator, centre: a.centre, committee, fired_at: a.fired_at }
        })
        .collect();
    let reminders = store.reminder_facts(from, until)?;
    let notifications = store.notification_facts(from, until)?;
    let pulls: Vec<PullFacts> = store.pull_facts(from, until)?.into_iter().filter(|p| in_scope(&p.centre)).collect();

    let usage = usage_by_class(config, grants, store, &centres, &window_of)?;

    Ok(Inputs {
        period: period.clone(),
        as_of,
        min_lead_days,
        centre_filter: centre.map(str::to_string),
        centres: windows,
        months: months.iter().map(|m| m.label.clone()).collect(),
        allocations,
        standings,
        adjustments,
        alerts,
        reminders,
        notifications,
        pulls,
        usage,
    })
}

/// The committee an allocation reports under ([`NO_COMMITTEE`] when it names none).
fn committee_of(a: &Allocation) -> String {
    if a.committee.is_empty() {
        NO_COMMITTEE.to_string()
    } else {
        a.committee.clone()
    }
}

/// The adjustments of the allocations of the report's centres (every date: the figures keep
/// those of the window).
fn adjustment_facts(config: &Config, grants: &Grants, window_of: &HashMap<&str, &CentreWindow>) -> Vec<AdjustmentFacts> {
    grants
        .adjustments
        .iter()
        .filter_map(|x| {
            let a = &grants.allocations[x.allocation];
            let c = config.centres.get(&a.centre)?;
            window_of.get(a.centre.as_str())?;
            Some(AdjustmentFacts {
                centre: a.centre.clone(),
                committee: committee_of(a),
                project: a.project.clone(),
                resource: a.resource.clone(),
                hours_kind: c.kind_of(&a.resource).unwrap_or(HoursKind::CoreHours),
                date: x.date.to_string(),
                effective_s: date_start(x.date, &c.tz),
                hours: x.hours,
                kind: x.kind.as_str().to_string(),
                reason: x.reason.clone(),
                origin: x.origin.clone(),
            })
        })
        .collect()
}

/// CPU usage of each centre's window by class (allocated, orphan, unmapped, as the one charging
/// rule decides): whole days from the daily buckets, a partial last day from the jobs.
fn usage_by_class(
    config: &Config,
    grants: &Grants,
    store: &mut Store,
    centres: &[&CentreConfig],
    window_of: &HashMap<&str, &CentreWindow>,
) -> Result<Vec<UsageFacts>, StoreError> {
    let mut usage = Vec::new();
    for c in centres {
        let w = window_of[c.id.as_str()];
        if w.end_s <= w.start_s {
            continue;
        }
        let charging = Charging::new(c, grants);
        let classify = |cluster: &str, account: &str, partition: &str, day: i32| match charging.charge(cluster, account, partition, day) {
            Charge::Unmapped => UsageClass::Unmapped,
            Charge::Allocation { .. } => UsageClass::Allocated,
            Charge::Orphan { .. } => UsageClass::Orphan,
        };
        let mut sums: BTreeMap<(String, String, String, UsageClass), i64> = BTreeMap::new();
        let end_day = local_day(w.end_s, &c.tz);
        for row in store.daily_usage(&c.id, local_day(w.start_s, &c.tz), end_day)? {
            let class = classify(&row.cluster, &row.account, &row.partition, row.day);
            *sums.entry((row.cluster, row.account, row.partition, class)).or_default() += row.usage.cpu;
        }
        if day_start(end_day, &c.tz) < w.end_s {
            let partial = partial_day(config, store, w.end_s)?;
            for ((cluster, account, partition), us) in partial.get(&c.id).into_iter().flatten() {
                let class = classify(cluster, account, partition, end_day);
                *sums.entry((cluster.clone(), account.clone(), partition.clone(), class)).or_default() += us.cpu;
            }
        }
        for ((cluster, account, partition, class), cpu_seconds) in sums {
            if cpu_seconds != 0 {
                usage.push(UsageFacts { centre: c.id.clone(), cluster, account, partition, class, cpu_seconds });
            }
        }
    }
    Ok(usage)
}
