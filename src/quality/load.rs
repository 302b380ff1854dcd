//! Loading the facts of a quality report: allocations and adjustments (from their files),
//! reconciliations at the window start, month ends and window end (from the ledger, through
//! [`crate::engine::LedgerView`]), alerts, reminders, notifications and pulls (from the store),
//! and the CPU usage of the window by class (allocated, orphan, unmapped).

use super::compute::*;
use super::{Period, QualityError};
use crate::alerts::rules::Rule;
use crate::allocations::Grants;
use crate::config::Config;
use crate::engine::{self, AllocationReport, LedgerView, PartialDay};
use crate::ledger::{sq, Store, StoreError};
use crate::model::{day_number, day_start, local_day};
use rusqlite::params;
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
pub fn store_as_of(store: &Store) -> Result<Option<i64>, StoreError> {
    let conn = store.connection();
    let e = sq(store.path());
    let cycle: Option<i64> = conn.query_row("SELECT MAX(at) FROM cycles", [], |r| r.get(0)).map_err(&e)?;
    if cycle.is_some() {
        return Ok(cycle);
    }
    conn.query_row("SELECT MAX(finished_at) FROM pulls", [], |r| r.get(0)).map_err(&e)
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
    let centres: Vec<&crate::config::Centre> = config.centres.values().filter(|c| centre.map_or(true, |x| x == c.id)).collect();
    let windows: Vec<CentreWindow> = centres
        .iter()
        .map(|c| {
            let start_s = day_start(day_number(period.start), &c.tz);
            let period_end_s = day_start(day_number(period.end), &c.tz);
            CentreWindow { centre: c.id.clone(), start_s, end_s: period_end_s.min(as_of).max(start_s), period_end_s }
        })
        .collect();
    if windows.iter().all(|w| w.end_s <= w.start_s) {
        return Err(QualityError::Usage(format!(
            "period {} starts after the store's latest data ({}): nothing to report yet",
            period.label,
            jiff::Timestamp::from_second(as_of).map(|t| t.to_string()).unwrap_or_default()
        )));
    }
    let window_of: HashMap<&str, &CentreWindow> = windows.iter().map(|w| (w.centre.as_str(), w)).collect();

    // Month-end instants per centre: the month's local end, or as_of when earlier.
    let months: Vec<Period> = period.months().into_iter().filter(|m| centres.iter().any(|c| day_start(day_number(m.start), &c.tz) < as_of)).collect();
    let month_instants = |c: &crate::config::Centre, m: &Period| -> Option<(i64, i64)> {
        let s = day_start(day_number(m.start), &c.tz);
        (s < as_of).then(|| (s, day_start(day_number(m.end), &c.tz).min(as_of)))
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
        let partial = if centres.iter().all(|c| day_start(local_day(t, &c.tz), &c.tz) == t) {
            PartialDay::new()
        } else {
            engine::partial_day(config, store, t)?
        };
        let rec = engine::reconcile_view(config, grants, &view, &partial, t);
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
        let committee = if a.committee.is_empty() { NO_COMMITTEE.to_string() } else { a.committee.clone() };
        let subject = format!("{}/{}/{}/{}", a.centre, a.project, a.resource, a.period_start);
        committee_of_subject.insert(subject.clone(), committee.clone());
        let Some(w) = window_of.get(a.centre.as_str()) else { continue };
        let start_s = day_start(day_number(a.period_start), &c.tz);
        let end_s = day_start(day_number(a.period_end), &c.tz);
        let overlap = (start_s.max(w.start_s), end_s.min(w.end_s));
        if overlap.1 <= overlap.0 {
            continue;
        }
        let last_day = crate::model::day_date(local_day(overlap.1 - 1, &c.tz));
        let consumed = |t: i64| at(t, i).map(|r| r.consumed_hours).unwrap_or(0.0);
        fact_of_index.insert(i, allocations.len());
        allocations.push(AllocationFacts {
            centre: a.centre.clone(),
            project: a.project.clone(),
            resource: a.resource.clone(),
            committee,
            subject,
            origin: a.origin.clone(),
            start_s,
            end_s,
            granted_at_end_hours: grants.granted_on(i, last_day),
            consumed_before_hours: consumed(w.start_s),
            consumed_at_end_hours: consumed(w.end_s),
            overlap,
        });
    }

    // Standings: at the window end (allocations overlapping the window), and at each month end
    // (allocations overlapping that month).
    let mut standings = Vec::new();
    let add_standing = |snapshot: &str, t: i64, i: usize, standings: &mut Vec<Standing>| {
        let (Some(&k), Some(r)) = (fact_of_index.get(&i), at(t, i)) else { return };
        if let Some((status, drift_pp)) = standing(&r.indicators, th) {
            standings.push(Standing { snapshot: snapshot.to_string(), allocation: k, at_s: t, status, drift_pp, consumed_pct: r.consumed_pct });
        }
    };
    for (i, a) in grants.allocations.iter().enumerate() {
        let (Some(c), Some(w)) = (config.centres.get(&a.centre), window_of.get(a.centre.as_str())) else { continue };
        if !fact_of_index.contains_key(&i) {
            continue;
        }
        add_standing("end", w.end_s, i, &mut standings);
        let start_s = day_start(day_number(a.period_start), &c.tz);
        let end_s = day_start(day_number(a.period_end), &c.tz);
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

    let adjustments = grants
        .adjustments
        .iter()
        .filter_map(|x| {
            let a = &grants.allocations[x.allocation];
            let c = config.centres.get(&a.centre)?;
            window_of.get(a.centre.as_str())?;
            Some(AdjustmentFacts {
                centre: a.centre.clone(),
                committee: if a.committee.is_empty() { NO_COMMITTEE.to_string() } else { a.committee.clone() },
                project: a.project.clone(),
                resource: a.resource.clone(),
                date: x.date.to_string(),
                effective_s: day_start(day_number(x.date), &c.tz),
                hours: x.hours,
                kind: format!("{:?}", x.kind).to_lowercase(),
                reason: x.reason.clone(),
                origin: x.origin.clone(),
            })
        })
        .collect();

    let path = store.path().to_path_buf();
    let e = sq(&path);
    let conn = store.connection();
    let in_scope = |c: &str| window_of.contains_key(c);
    // Alerts: all of them (a warning may predate the period), of the report's centres.
    let mut alerts = Vec::new();
    {
        let mut stmt = conn.prepare("SELECT id, rule, subject, discriminator, centre, fired_at FROM alerts ORDER BY id").map_err(&e)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, String>(4)?, r.get::<_, i64>(5)?)))
            .map_err(&e)?;
        for row in rows {
            let (id, rule, subject, discriminator, centre, fired_at) = row.map_err(&e)?;
            if !in_scope(&centre) {
                continue;
            }
            let about_allocation = Rule::parse(&rule).is_some_and(|r| r.concerns_allocation());
            let committee = if about_allocation { committee_of_subject.get(&subject).cloned() } else { None };
            alerts.push(AlertFacts { id, rule, subject, discriminator, centre, committee, fired_at });
        }
    }
    let mut reminders = Vec::new();
    {
        let mut stmt = conn
            .prepare("SELECT id, alert_id, at FROM alert_events WHERE event = 'reminder' AND at >= ?1 AND at < ?2 ORDER BY id")
            .map_err(&e)?;
        let rows = stmt.query_map(params![from, until], |r| Ok(ReminderFacts { event_id: r.get(0)?, alert_id: r.get(1)?, at: r.get(2)? })).map_err(&e)?;
        for row in rows {
            reminders.push(row.map_err(&e)?);
        }
    }
    let mut notifications = Vec::new();
    {
        let mut stmt = conn
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
        for row in rows {
            notifications.push(row.map_err(&e)?);
        }
    }
    let mut pulls = Vec::new();
    {
        let mut stmt = conn
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
        for row in rows {
            let p = row.map_err(&e)?;
            if in_scope(&p.centre) {
                pulls.push(p);
            }
        }
    }

    // CPU usage of each window by class: whole days from the daily buckets, a partial last day
    // from the jobs.
    let mut usage = Vec::new();
    for c in &centres {
        let w = window_of[c.id.as_str()];
        if w.end_s <= w.start_s {
            continue;
        }
        let by_account = engine::allocations_by_account(grants, &c.id);
        let classify = |cluster: &str, account: &str, partition: &str, day: i32| match c.rule_for(cluster, partition) {
            None => UsageClass::Unmapped,
            Some(rule) => match engine::target_allocation(grants, &by_account, account, &rule.resource, day) {
                Some(_) => UsageClass::Allocated,
                None => UsageClass::Orphan,
            },
        };
        let mut sums: BTreeMap<(String, String, String, UsageClass), i64> = BTreeMap::new();
        let end_day = local_day(w.end_s, &c.tz);
        for row in store.daily_usage(&c.id, local_day(w.start_s, &c.tz), end_day)? {
            let class = classify(&row.cluster, &row.account, &row.partition, row.day);
            *sums.entry((row.cluster, row.account, row.partition, class)).or_default() += row.usage.cpu;
        }
        if day_start(end_day, &c.tz) < w.end_s {
            let partial = engine::partial_day(config, store, w.end_s)?;
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
