//! `usage`: the raw ledger apportioned to a window, whatever the allocations say — each
//! (centre, cluster, account, partition[, user][, day]) with its unit-seconds, and the hours
//! its billing rule charges. How a researcher's "why was I charged this?" is answered.

use super::centre::Centre;
use super::hours::ResourceHours;
use super::job::{prorate_daily, prorate_window, JobRecord, UnitSeconds};
use super::time::{day_date, day_number, day_start, DayNumber};
use serde::Serialize;
use std::collections::BTreeMap;

/// Grouping of `usage` rows beyond centre, cluster, account and partition.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct UsageGrouping {
    /// Split by user.
    pub user: bool,
    /// Split by centre-local day.
    pub day: bool,
}

/// One row of `usage`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct UsageRow {
    /// Centre.
    pub centre: String,
    /// Cluster.
    pub cluster: String,
    /// Account.
    pub account: String,
    /// Partition.
    pub partition: String,
    /// User (when grouped by user).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Day (when grouped by day).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<jiff::civil::Date>,
    /// Jobs with usage in the window (group).
    pub jobs: i64,
    /// CPU-seconds in the window.
    pub cpu_seconds: i64,
    /// GPU-seconds.
    pub gpu_seconds: i64,
    /// Billing-seconds.
    pub billing_seconds: i64,
    /// Resource the partition is charged to, if a billing rule maps it.
    pub resource: Option<String>,
    /// Charged hours under that rule.
    pub charged_hours: Option<ResourceHours>,
}

/// A bound of a `usage` window: a centre-local day (its midnight in each centre's zone) or an
/// exact instant (e.g. an hour that `sreport` rolled up).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum UsageBound {
    /// Midnight starting this local day.
    Day(jiff::civil::Date),
    /// This instant, epoch seconds.
    Instant(i64),
}

impl UsageBound {
    /// The bound in epoch seconds for a centre in zone `tz`.
    pub(crate) fn epoch_seconds(&self, tz: &jiff::tz::TimeZone) -> i64 {
        match self {
            UsageBound::Day(d) => day_start(day_number(*d), tz),
            UsageBound::Instant(s) => *s,
        }
    }
}

type Key = (String, String, String, Option<String>, Option<DayNumber>);

/// The usage rows of one centre's jobs (those overlapping the window) apportioned to
/// `[from_s, to_s)`.
pub(crate) fn usage_rows(centre: &Centre, jobs: &[JobRecord], from_s: i64, to_s: i64, grouping: UsageGrouping) -> Vec<UsageRow> {
    let tz = &centre.tz;
    let mut groups: BTreeMap<Key, (i64, UnitSeconds)> = BTreeMap::new();
    for job in jobs {
        let user = grouping.user.then(|| job.user.clone());
        let base = (job.cluster.clone(), job.account.clone(), job.partition.clone(), user);
        if grouping.day {
            for (day, us) in prorate_daily(job, tz) {
                let (ds, de) = (day_start(day, tz), day_start(day + 1, tz));
                if de <= from_s || ds >= to_s {
                    continue;
                }
                // A day cut by an instant bound keeps only its part inside the window.
                let us = if ds >= from_s && de <= to_s { us } else { prorate_window(job, ds.max(from_s), de.min(to_s)) };
                let e = groups.entry((base.0.clone(), base.1.clone(), base.2.clone(), base.3.clone(), Some(day))).or_default();
                e.0 += 1;
                e.1.add(&us);
            }
        } else {
            let us = prorate_window(job, from_s, to_s);
            let e = groups.entry((base.0, base.1, base.2, base.3, None)).or_default();
            e.0 += 1;
            e.1.add(&us);
        }
    }
    groups
        .into_iter()
        .map(|((cluster, account, partition, user, day), (jobs, us))| {
            let rule = centre.rule_for(&cluster, &partition);
            UsageRow {
                centre: centre.id.clone(),
                cluster,
                account,
                partition,
                user,
                day: day.map(day_date),
                jobs,
                cpu_seconds: us.cpu,
                gpu_seconds: us.gpu,
                billing_seconds: us.billing,
                resource: rule.map(|r| r.resource.clone()),
                charged_hours: rule.map(|r| r.charged(&us)),
            }
        })
        .collect()
}
