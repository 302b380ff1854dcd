//! An allocation's burn-down read from the ledger: its accounts' daily rows, each day charged
//! by the one charging rule (so a day outside the period, or a partition of another resource,
//! charges nothing here), and the exact partial day from the jobs; built by
//! [`crate::domain::burndown::build`]. The running total at the instant is the reconciled
//! `consumed_hours`.

use crate::config::Config;
use crate::domain::burndown::{build, BurnDown};
use crate::domain::charge::{Charge, Charging};
use crate::domain::grants::Grants;
use crate::domain::job::{prorate_window, UnitSeconds};
use crate::domain::reconciliation::AllocationReport;
use crate::domain::time::{day_number, day_start, local_day, DayNumber};
use crate::store::{Store, StoreError};
use std::collections::BTreeMap;

/// Load an allocation's charged hours from the store and build its burn-down at `at`.
pub fn load(store: &mut Store, config: &Config, grants: &Grants, report: &AllocationReport, at: i64) -> Result<BurnDown, StoreError> {
    let a = &grants.allocations[report.index];
    let centre = config.centres.get(&a.centre).ok_or_else(|| StoreError::Cycle {
        path: store.path().display().to_string(),
        message: format!("centre {} is no longer configured", a.centre),
    })?;
    let tz = &centre.tz;
    let charging = Charging::new(centre, grants);
    let (start_day, end_day) = (day_number(a.period_start), day_number(a.period_end));
    let today = local_day(at, tz);
    // The rule of the usage when it charges this allocation.
    let rule_if_mine = |cluster: &str, account: &str, partition: &str, day: DayNumber| match charging.charge(cluster, account, partition, day) {
        Charge::Allocation { allocation, rule } if allocation == report.index => Some(rule),
        _ => None,
    };
    let mut daily_hours: BTreeMap<DayNumber, f64> = BTreeMap::new();
    for row in store.daily_usage_of_accounts(&centre.id, &a.accounts, start_day, today.min(end_day))? {
        if let Some(rule) = rule_if_mine(&row.cluster, &row.account, &row.partition, row.day) {
            *daily_hours.entry(row.day).or_default() += charging.rule(rule).hours(&row.usage);
        }
    }
    let mut partial = 0.0;
    let today_start = day_start(today, tz);
    if today >= start_day && today < end_day && today_start < at {
        let mut by_rule: BTreeMap<usize, UnitSeconds> = BTreeMap::new();
        for job in store.jobs_overlapping(&centre.id, today_start, at)? {
            if let Some(rule) = rule_if_mine(&job.cluster, &job.account, &job.partition, today) {
                by_rule.entry(rule).or_default().add(&prorate_window(&job, today_start, at));
            }
        }
        for (rule, us) in by_rule {
            partial += charging.rule(rule).hours(&us);
        }
    }
    let profile = config.terms(grants).profile(a);
    Ok(build(report, |d| grants.granted_on(report.index, d), profile, tz, &daily_hours, partial, at, (a.period_start, a.period_end)))
}
