//! The typed result of a reconciliation — one [`AllocationReport`] per allocation, the usage no
//! allocation covers ([`OrphanUsage`]) — and the pure assembly of it from a centre's charged
//! buckets ([`CentreBooks`]). The shells that read the ledger (streaming for cycles, a
//! preloaded view for replays) only feed these books.

use super::centre::{unmapped_core_hours, Centre};
use super::charge::{Charge, Charging};
use super::grants::Grants;
use super::hours::{HoursKind, ResourceHours};
use super::forecast::{forecast, seed_of, Forecast, ForecastSettings};
use super::job::UnitSeconds;
use super::reconcile::{reconcile, AllocationWindow, Bucket, Pace, Profile, Status, Thresholds};
use super::time::{date_start, day_start, local_date, local_day, serialize_rfc3339, DayNumber, LocalInstant, DAY_S};
use jiff::civil::Date;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// One allocation's reconciliation, as printed by `check` and served by the API.
#[derive(Debug, Clone, Serialize)]
pub struct AllocationReport {
    /// Centre id.
    pub centre: String,
    /// Project id.
    pub project: String,
    /// Resource.
    pub resource: String,
    /// Committee.
    pub committee: String,
    /// Centre-side accounts.
    pub accounts: Vec<String>,
    /// First day of the period.
    pub period_start: Date,
    /// Day after the last day (exclusive).
    pub period_end: Date,
    /// Initial grant.
    pub initial_granted_hours: ResourceHours,
    /// Granted at the instant (initial + adjustments to date).
    pub granted_hours: ResourceHours,
    /// Charged hours in the period to date.
    pub consumed_hours: ResourceHours,
    /// Expected by the profile.
    pub expected_hours: ResourceHours,
    /// Granted − consumed.
    pub remaining_hours: ResourceHours,
    /// Consumed / granted, %.
    pub consumed_pct: Option<f64>,
    /// Drift, percentage points of the grant.
    pub drift_pp: Option<f64>,
    /// Share of the period elapsed, %.
    pub elapsed_pct: f64,
    /// Trailing burn rate, hours of the resource's kind per day.
    pub burn_rate_hours_per_day: f64,
    /// Projected exhaustion, in the centre's zone (RFC 3339 with its offset), or null.
    pub projected_exhaustion: Option<LocalInstant>,
    /// Projected exhaustion in days from the instant, or null.
    pub projected_exhaustion_days: Option<f64>,
    /// Hours projected unused at period end.
    pub projected_unused_hours: ResourceHours,
    /// Hours the jobs running now may still charge: each one's units × the part of its time
    /// limit not yet charged (zero in replays of past instants).
    pub committed_hours: ResourceHours,
    /// Consumed + committed: what the allocation stands to have used once the running jobs
    /// reach their limits.
    pub at_risk_hours: ResourceHours,
    /// The forecast's band (P10, P50, P90), or null with too little history or outside the
    /// period.
    #[serde(rename = "forecast")]
    pub forecast_band: Option<ForecastBand>,
    /// Status.
    pub status: Status,
    /// Reconciliation instant (RFC 3339 UTC).
    #[serde(serialize_with = "serialize_rfc3339")]
    pub at: i64,
    /// Where the allocation was declared.
    #[serde(skip)]
    pub origin: String,
    /// Index into the grants.
    #[serde(skip)]
    pub index: usize,
    /// The pace behind the status (an exhausted allocation keeps one).
    #[serde(skip)]
    pub pace: Pace,
    /// The kind of hours of the resource.
    #[serde(skip)]
    pub kind: HoursKind,
    /// Period start, epoch seconds (the centre's local midnight).
    #[serde(skip)]
    pub start_s: i64,
    /// Period end (exclusive), epoch seconds.
    #[serde(skip)]
    pub end_s: i64,
    /// The whole forecast (quantiles and band), for the rules and the burn-down.
    #[serde(skip)]
    pub forecast: Option<Forecast>,
}

/// A forecast as printed by `check` and served by the API: P10, P50 and P90 of the exhaustion
/// instant and of the hours consumed by the period end.
#[derive(Debug, Clone, Serialize)]
pub struct ForecastBand {
    /// Days of history the forecast was made from.
    pub history_days: u32,
    /// Exhaustion by the 10 % quantile (early), in the centre's zone; null: not within the period.
    pub exhaustion_p10: Option<LocalInstant>,
    /// Exhaustion, median.
    pub exhaustion_p50: Option<LocalInstant>,
    /// Exhaustion by the 90 % quantile (late).
    pub exhaustion_p90: Option<LocalInstant>,
    /// Hours consumed by the period end, 10 % quantile.
    pub end_consumed_hours_p10: ResourceHours,
    /// …median.
    pub end_consumed_hours_p50: ResourceHours,
    /// …90 % quantile.
    pub end_consumed_hours_p90: ResourceHours,
}

impl ForecastBand {
    /// The printed band of forecast `f` of an allocation of `kind` in zone `tz`.
    pub(crate) fn of(f: &Forecast, kind: HoursKind, tz: &jiff::tz::TimeZone) -> ForecastBand {
        let when = |p: f64| f.exhaustion_at(p).map(|s| LocalInstant { s, tz: tz.clone() });
        let h = |p: f64| ResourceHours::new(kind, f.end_consumed.at(p));
        ForecastBand {
            history_days: f.history_days,
            exhaustion_p10: when(0.1),
            exhaustion_p50: when(0.5),
            exhaustion_p90: when(0.9),
            end_consumed_hours_p10: h(0.1),
            end_consumed_hours_p50: h(0.5),
            end_consumed_hours_p90: h(0.9),
        }
    }
}

impl AllocationReport {
    /// The allocation's alert subject (see [`crate::domain::grants::Allocation::subject`]).
    pub fn subject(&self) -> String {
        format!("{}/{}/{}/{}", self.centre, self.project, self.resource, self.period_start)
    }

    /// The committed hours and the forecast as numbers, for the indicator sinks (InfluxDB
    /// fields and `/metrics` gauges, same names): exhaustion quantiles in days from the instant
    /// (none when not within the period), end-of-period quantiles in hours; none without a
    /// forecast.
    pub(crate) fn forecast_figures(&self) -> [(&'static str, Option<f64>); 8] {
        let f = self.forecast.as_ref();
        let days = |p: f64| f.and_then(|f| f.exhaustion_at(p)).map(|s| (s - self.at) as f64 / 86400.0);
        let end = |p: f64| f.map(|f| f.end_consumed.at(p));
        [
            ("committed_hours", Some(self.committed_hours.value())),
            ("at_risk_hours", Some(self.at_risk_hours.value())),
            ("forecast_exhaustion_p10_days", days(0.1)),
            ("forecast_exhaustion_p50_days", days(0.5)),
            ("forecast_exhaustion_p90_days", days(0.9)),
            ("forecast_end_consumed_hours_p10", end(0.1)),
            ("forecast_end_consumed_hours_p50", end(0.5)),
            ("forecast_end_consumed_hours_p90", end(0.9)),
        ]
    }

    /// Whether the instant lies in the allocation's period (it neither starts later nor ended).
    pub(crate) fn is_running(&self) -> bool {
        !matches!(self.status, Status::NotStarted | Status::Ended)
    }
}

#[cfg(test)]
impl AllocationReport {
    /// A core-hours allocation `c/p/cpu` of 2026-01-01..2026-01-11 for tests: `granted`,
    /// `consumed` and `status` as given, expected = granted, everything else zero.
    pub(crate) fn example(granted: f64, consumed: f64, status: Status) -> AllocationReport {
        let h = |v: f64| ResourceHours::new(HoursKind::CoreHours, v);
        AllocationReport {
            centre: "c".into(),
            project: "p".into(),
            resource: "cpu".into(),
            committee: String::new(),
            accounts: vec!["a".into()],
            period_start: Date::constant(2026, 1, 1),
            period_end: Date::constant(2026, 1, 11),
            initial_granted_hours: h(granted),
            granted_hours: h(granted),
            consumed_hours: h(consumed),
            expected_hours: h(granted),
            remaining_hours: h(granted - consumed),
            consumed_pct: None,
            drift_pp: None,
            elapsed_pct: 0.0,
            burn_rate_hours_per_day: 0.0,
            projected_exhaustion: None,
            projected_exhaustion_days: None,
            projected_unused_hours: h(0.0),
            committed_hours: h(0.0),
            at_risk_hours: h(consumed),
            forecast_band: None,
            status,
            at: 0,
            origin: String::new(),
            index: 0,
            pace: Pace::OnPace,
            kind: HoursKind::CoreHours,
            start_s: 0,
            end_s: 0,
            forecast: None,
        }
    }
}

/// Usage that no active allocation covers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OrphanUsage {
    /// Centre.
    pub centre: String,
    /// Cluster.
    pub cluster: String,
    /// Account.
    pub account: String,
    /// Partition.
    pub partition: String,
    /// Resource the partition is charged to, or none when no billing rule maps it.
    pub resource: Option<String>,
    /// Jobs with usage in the window.
    pub jobs: i64,
    /// Charged hours (core-hours when the partition is unmapped).
    pub hours: ResourceHours,
}

/// Everything `check` reports at one instant.
#[derive(Debug, Clone)]
pub struct Reconciliation {
    /// The instant, epoch seconds.
    pub at: i64,
    /// One entry per allocation, in file order.
    pub allocations: Vec<AllocationReport>,
    /// Usage on accounts with no active allocation for that resource (mapped partitions),
    /// over the trailing orphan window.
    pub orphans: Vec<OrphanUsage>,
    /// Usage on partitions no billing rule maps, over the same window.
    pub unmapped: Vec<OrphanUsage>,
    /// The orphan window, days.
    pub orphan_window_days: u32,
}

/// What a reconciliation is made from, besides the ledger: every figure of a cycle is decided
/// with these.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Terms<'a> {
    /// Allocations and adjustments.
    pub grants: &'a Grants,
    /// Status thresholds and windows.
    pub thresholds: &'a Thresholds,
    /// Named expected-consumption profiles (linear when an allocation names none).
    pub profiles: &'a BTreeMap<String, Profile>,
    /// How forecasts are made.
    pub forecast: &'a ForecastSettings,
}

impl<'a> Terms<'a> {
    /// The expected-consumption profile of an allocation (linear when it names none).
    pub fn profile(&self, a: &super::grants::Allocation) -> &'a Profile {
        a.profile.as_ref().and_then(|p| self.profiles.get(p)).unwrap_or(Profile::linear_ref())
    }
}

/// Usage not charged to an allocation, by (cluster, account, partition): its resource (none
/// when unmapped) and hours (core-hours when unmapped).
pub(crate) type Strays = BTreeMap<(String, String, String), (Option<String>, f64)>;

/// Unit-seconds of a centre's current (partial) day up to the instant, by (cluster, account,
/// partition), read from the jobs themselves.
pub(crate) type PartialUsage = HashMap<(String, String, String), UnitSeconds>;

/// The days of a centre's reconciliation at an instant: which local day it is, where the burn
/// window and the orphan window start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Days {
    /// The instant's local day (partial: it comes from the jobs).
    pub today: DayNumber,
    /// First day of the orphan window.
    pub orphan_from: DayNumber,
    /// First day of the burn window: days before it only count towards consumption.
    pub burn_from: DayNumber,
}

impl Days {
    /// The days of `centre` at `at`.
    pub fn of(centre: &Centre, at: i64, th: &Thresholds) -> Days {
        let today = local_day(at, &centre.tz);
        Days {
            today,
            orphan_from: today - th.orphan_window_days as DayNumber,
            burn_from: local_day(at - th.burn_window_days as i64 * DAY_S, &centre.tz),
        }
    }
}

/// One centre's books at an instant: each allocation's charged buckets, and the usage charged
/// to none. Filled by a shell (from the ledger), then closed into reports by [`Self::finish`].
pub(crate) struct CentreBooks<'a> {
    charging: &'a Charging<'a>,
    at: i64,
    days: Days,
    buckets: HashMap<usize, Vec<Bucket>>,
    committed: HashMap<usize, f64>,
    strays: Strays,
}

impl<'a> CentreBooks<'a> {
    /// Empty books of a centre at `at`.
    pub fn new(charging: &'a Charging<'a>, at: i64, days: Days) -> CentreBooks<'a> {
        CentreBooks { charging, at, days, buckets: HashMap::new(), committed: HashMap::new(), strays: Strays::new() }
    }

    /// Book hours charged to allocation `i` over `[start_s, end_s)`.
    pub fn bucket(&mut self, i: usize, start_s: i64, end_s: i64, hours: f64) {
        self.buckets.entry(i).or_default().push(Bucket { start_s, end_s, hours });
    }

    /// Book usage charged to no allocation (inside the orphan window): `resource` none when the
    /// partition is unmapped, `hours` then in core-hours.
    pub(crate) fn stray(&mut self, key: (String, String, String), resource: Option<String>, hours: f64) {
        self.strays.entry(key).or_insert((resource, 0.0)).1 += hours;
    }

    /// Whether some usage was charged to no allocation (job counts are then needed).
    pub(crate) fn has_strays(&self) -> bool {
        !self.strays.is_empty()
    }

    /// Book the current day's usage up to the instant (`partial`, from the jobs), each key
    /// charged by the one charging rule.
    pub fn partial_day(&mut self, partial: &PartialUsage) {
        let centre = self.charging.centre();
        let today_start = day_start(self.days.today, &centre.tz);
        for ((cl, acc, part), us) in partial {
            let key = (cl.clone(), acc.clone(), part.clone());
            match self.charging.charge(cl, acc, part, self.days.today) {
                Charge::Unmapped => {
                    if self.days.today >= self.days.orphan_from {
                        self.stray(key, None, unmapped_core_hours(us));
                    }
                }
                Charge::Allocation { allocation, rule } => {
                    let hours = self.charging.rule(rule).hours(us);
                    self.bucket(allocation, today_start, self.at.max(today_start + 1), hours);
                }
                Charge::Orphan { rule } => {
                    let r = self.charging.rule(rule);
                    self.stray(key, Some(r.resource.clone()), r.hours(us));
                }
            }
        }
    }

    /// Book the unit-seconds the running jobs may still charge (`committed`, by key), each key
    /// charged by the one charging rule as the current day is: to the allocation its account
    /// charges today (usage no allocation covers commits nothing).
    pub fn committed(&mut self, committed: &PartialUsage) {
        for ((cl, acc, part), us) in committed {
            if let Charge::Allocation { allocation, rule } = self.charging.charge(cl, acc, part, self.days.today) {
                *self.committed.entry(allocation).or_default() += self.charging.rule(rule).hours(us);
            }
        }
    }

    /// Close the books: a report per allocation of the centre (into `reports`, by grant
    /// index) and the orphan and unmapped rows, with their job counts (`counts`).
    pub fn finish(
        self,
        terms: &Terms<'_>,
        counts: &HashMap<(String, String, String), i64>,
        reports: &mut [Option<AllocationReport>],
        orphans: &mut Vec<OrphanUsage>,
        unmapped: &mut Vec<OrphanUsage>,
    ) {
        let centre = self.charging.centre();
        for ((cluster, account, partition), (resource, hours)) in self.strays {
            let jobs = counts.get(&(cluster.clone(), account.clone(), partition.clone())).copied().unwrap_or(0);
            let kind = resource.as_deref().and_then(|r| centre.kind_of(r)).unwrap_or(HoursKind::CoreHours);
            let o = OrphanUsage {
                centre: centre.id.clone(),
                cluster,
                account,
                partition,
                resource: resource.clone(),
                jobs,
                hours: ResourceHours::new(kind, hours),
            };
            if resource.is_some() {
                orphans.push(o);
            } else {
                unmapped.push(o);
            }
        }
        for (i, a) in terms.grants.allocations.iter().enumerate().filter(|(_, a)| a.centre == centre.id) {
            let buckets = self.buckets.get(&i).map(Vec::as_slice).unwrap_or(&[]);
            let committed = self.committed.get(&i).copied().unwrap_or(0.0);
            reports[i] = Some(allocation_report(centre, terms, i, buckets, committed, self.at, terms.profile(a)));
        }
    }
}

/// Reconcile allocation `i` of `centre` from its buckets and describe it for output.
fn allocation_report(centre: &Centre, terms: &Terms<'_>, i: usize, buckets: &[Bucket], committed: f64, at: i64, profile: &Profile) -> AllocationReport {
    let a = &terms.grants.allocations[i];
    let tz = &centre.tz;
    let w = AllocationWindow {
        start_s: date_start(a.period_start, tz),
        end_s: date_start(a.period_end, tz),
        granted_hours: terms.grants.granted_on(i, local_date(at, tz)),
        profile,
    };
    let ind = reconcile(&w, buckets, at, terms.thresholds);
    let kind = centre.kind_of(&a.resource).unwrap_or(HoursKind::CoreHours);
    let fc = forecast(&w, buckets, ind.consumed_hours, at, terms.forecast, seed_of(&a.subject(), at, terms.forecast.seed));
    let h = |v: f64| ResourceHours::new(kind, v);
    AllocationReport {
        centre: a.centre.clone(),
        project: a.project.clone(),
        resource: a.resource.clone(),
        committee: a.committee.clone(),
        accounts: a.accounts.clone(),
        period_start: a.period_start,
        period_end: a.period_end,
        initial_granted_hours: h(a.granted_hours),
        granted_hours: h(ind.granted_hours),
        consumed_hours: h(ind.consumed_hours),
        expected_hours: h(ind.expected_hours),
        remaining_hours: h(ind.remaining_hours),
        consumed_pct: ind.consumed_pct,
        drift_pp: ind.drift_pp,
        elapsed_pct: ind.elapsed_pct,
        burn_rate_hours_per_day: ind.burn_rate_hours_per_day,
        projected_exhaustion: ind.projected_exhaustion_s.map(|s| LocalInstant { s, tz: tz.clone() }),
        projected_exhaustion_days: ind.projected_exhaustion_s.map(|s| (s - at) as f64 / 86400.0),
        projected_unused_hours: h(ind.projected_unused_hours),
        committed_hours: h(committed),
        at_risk_hours: h(ind.consumed_hours + committed),
        forecast_band: fc.as_ref().map(|f| ForecastBand::of(f, kind, tz)),
        status: ind.status,
        at,
        origin: a.origin.clone(),
        index: i,
        pace: ind.pace,
        kind,
        start_s: w.start_s,
        end_s: w.end_s,
        forecast: fc,
    }
}

/// Put the reports of every centre together, in file order.
pub(crate) fn assemble(at: i64, reports: Vec<Option<AllocationReport>>, orphans: Vec<OrphanUsage>, unmapped: Vec<OrphanUsage>, th: &Thresholds) -> Reconciliation {
    Reconciliation { at, allocations: reports.into_iter().flatten().collect(), orphans, unmapped, orphan_window_days: th.orphan_window_days }
}
