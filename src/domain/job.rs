//! Job records as the sources produce them, the units they allocate, and the uniform
//! proration of a job's unit-seconds over the local days (or any window) it covers.

use super::time::{day_start, local_day, DayNumber};
use jiff::tz::TimeZone;
use serde::Serialize;
use std::fmt;

/// One allocation (or one run of a requeued allocation) as a centre's accounting reports it,
/// already decoded from the source's format. Nothing after the sources knows that format.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// Cluster name as the centre reports it (the centre's default cluster when absent).
    pub cluster: String,
    /// Slurm's `JobIDRaw`: unique per cluster for every array task and het component.
    pub job_id_raw: u64,
    /// The display id (`123_4`, `123+0`), kept for messages only.
    pub job_id: String,
    /// Centre-side account, lower-cased (Slurm stores accounts lower-cased).
    pub account: String,
    /// Partition; empty when the centre did not record one.
    pub partition: String,
    /// Unix user name; empty when unknown.
    pub user: String,
    /// Start of the run, in epoch seconds; part of the record's identity (requeues).
    pub start_s: i64,
    /// End of the charged window in epoch seconds: the real end, or the observation instant
    /// for a job still running (then `provisional` is set).
    pub end_s: i64,
    /// Seconds actually charged (Slurm's Elapsed); usually `end_s - start_s`, less when a job
    /// was suspended. Spread uniformly over `[start_s, end_s)`.
    pub elapsed_s: i64,
    /// Allocated units that the billing rules may charge.
    pub units: Units,
    /// The job was still running when observed: its charge is provisional and will be
    /// replaced by a later record with the same identity.
    pub provisional: bool,
    /// The job's time limit in seconds (Slurm's `TimelimitRaw`, SWF's requested time); `None`
    /// when the source gives none or the job may run without limit.
    pub time_limit_s: Option<i64>,
}

impl JobRecord {
    /// The job's whole charge in unit-seconds: each allocated unit × Elapsed.
    pub fn unit_seconds(&self) -> UnitSeconds {
        let e = self.elapsed_s;
        UnitSeconds {
            cpu: (self.units.cpus as i64).saturating_mul(e),
            gpu: (self.units.gpus as i64).saturating_mul(e),
            billing: (self.units.billing as i64).saturating_mul(e),
            node: (self.units.nodes as i64).saturating_mul(e),
        }
    }

    /// A blank record, to be filled by a parser that reuses it line after line.
    pub fn empty() -> JobRecord {
        JobRecord {
            cluster: String::new(),
            job_id_raw: 0,
            job_id: String::new(),
            account: String::new(),
            partition: String::new(),
            user: String::new(),
            start_s: 0,
            end_s: 0,
            elapsed_s: 0,
            units: Units::default(),
            provisional: false,
            time_limit_s: None,
        }
    }

    /// What a still-running job may charge beyond its provisional charge, if it runs to its
    /// time limit: units × (`start_s + limit − end_s`) seconds, `end_s` being the observation
    /// its charge goes up to (so charged + committed is units × limit). Zero for a finished
    /// job, a job without limit, or a record that cannot describe a job running at `at`
    /// (`at` before its start, or its limit reached by `at`: it has ended, and its final
    /// record will replace this one).
    pub fn committed_unit_seconds(&self, at: i64) -> UnitSeconds {
        let Some(limit) = self.time_limit_s.filter(|_| self.provisional) else { return UnitSeconds::default() };
        let limit_end = self.start_s.saturating_add(limit);
        if at < self.start_s || at >= limit_end {
            return UnitSeconds::default();
        }
        let s = (limit_end - self.end_s).max(0);
        UnitSeconds {
            cpu: (self.units.cpus as i64).saturating_mul(s),
            gpu: (self.units.gpus as i64).saturating_mul(s),
            billing: (self.units.billing as i64).saturating_mul(s),
            node: (self.units.nodes as i64).saturating_mul(s),
        }
    }
}

/// A rejected input line: where, which field, and why. Rejected lines are counted and skipped;
/// the rest of the input is still ingested.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    /// File (or source description) the line came from.
    pub file: String,
    /// 1-based line number.
    pub line: u64,
    /// The field at fault, when one is.
    pub field: Option<String>,
    /// What was wrong, and what was expected.
    pub reason: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}:{}: field {}: {}", self.file, self.line, field, self.reason),
            None => write!(f, "{}:{}: {}", self.file, self.line, self.reason),
        }
    }
}

/// Allocated trackable resources of one job, as counts (not seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Units {
    /// Allocated CPUs (`cpu=` in AllocTRES, else AllocCPUS).
    pub cpus: u64,
    /// Allocated GPUs (`gres/gpu=`, else the sum of `gres/gpu:<type>=`).
    pub gpus: u64,
    /// Slurm's `billing=` TRES (falls back to CPUs when the centre does not record it).
    pub billing: u64,
    /// Allocated nodes.
    pub nodes: u64,
}

/// Unit-seconds of one job or of an aggregate (units × seconds), kept as integers so that
/// adding and removing a job from a total is exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UnitSeconds {
    /// CPU-seconds.
    pub cpu: i64,
    /// GPU-seconds.
    pub gpu: i64,
    /// Billing-seconds.
    pub billing: i64,
    /// Node-seconds.
    pub node: i64,
}

impl UnitSeconds {
    /// Component-wise sum.
    pub fn add(&mut self, o: &UnitSeconds) {
        self.cpu += o.cpu;
        self.gpu += o.gpu;
        self.billing += o.billing;
        self.node += o.node;
    }
    /// Component-wise difference.
    pub fn sub(&mut self, o: &UnitSeconds) {
        self.cpu -= o.cpu;
        self.gpu -= o.gpu;
        self.billing -= o.billing;
        self.node -= o.node;
    }
    /// Whether every component is zero.
    pub fn is_zero(&self) -> bool {
        *self == UnitSeconds::default()
    }
}

/// Split the unit-seconds of a job over the local days its `[start, end)` window touches.
///
/// The charge (units × elapsed seconds) is spread uniformly over the wall-clock window, and
/// each day receives its share rounded so that the shares add up exactly to the total
/// (cumulative rounding): re-summing days never drifts from the job's own charge.
pub fn prorate_daily(job: &JobRecord, tz: &TimeZone) -> Vec<(DayNumber, UnitSeconds)> {
    let mut out = Vec::new();
    for_each_daily_share(job, tz, |day, us| out.push((day, us)));
    out
}

/// As [`prorate_daily`], handing each day's share to `f` instead of collecting them (the
/// import path books millions of jobs).
pub(crate) fn for_each_daily_share(job: &JobRecord, tz: &TimeZone, mut f: impl FnMut(DayNumber, UnitSeconds)) {
    let total = job.unit_seconds();
    let wall = job.end_s - job.start_s;
    if wall <= 0 {
        // Zero-length window: the whole (normally zero) charge goes to the start day.
        f(local_day(job.start_s, tz), total);
        return;
    }
    let mut day = local_day(job.start_s, tz);
    let mut covered: i64 = 0;
    let mut given = UnitSeconds::default();
    let mut seg_start_day = day_start(day, tz);
    loop {
        let next = day_start(day + 1, tz);
        let seg_end = next.min(job.end_s);
        let seg_start = seg_start_day.max(job.start_s);
        covered += seg_end - seg_start;
        let cum = UnitSeconds {
            cpu: share(total.cpu, covered, wall),
            gpu: share(total.gpu, covered, wall),
            billing: share(total.billing, covered, wall),
            node: share(total.node, covered, wall),
        };
        let mut part = cum;
        part.sub(&given);
        given = cum;
        f(day, part);
        if seg_end >= job.end_s {
            break;
        }
        day += 1;
        seg_start_day = next;
    }
}

/// `total × covered / wall`, rounded half up, exact in 128-bit arithmetic.
fn share(total: i64, covered: i64, wall: i64) -> i64 {
    if covered >= wall {
        return total;
    }
    if total == 0 {
        return 0;
    }
    let num = total as i128 * covered as i128;
    ((num * 2 + wall as i128) / (2 * wall as i128)) as i64
}

/// Unit-seconds of `job` that fall inside the window `[from, to)`, with the same uniform
/// spreading as [`prorate_daily`] (used for partial days and arbitrary `usage` windows).
pub fn prorate_window(job: &JobRecord, from: i64, to: i64) -> UnitSeconds {
    let total = job.unit_seconds();
    let wall = job.end_s - job.start_s;
    if wall <= 0 {
        return if job.start_s >= from && job.start_s < to { total } else { UnitSeconds::default() };
    }
    let a = job.start_s.max(from);
    let b = job.end_s.min(to);
    if b <= a {
        return UnitSeconds::default();
    }
    let before = a - job.start_s;
    let upto = b - job.start_s;
    let f = |t: i64| share(t, upto, wall) - share(t, before, wall);
    UnitSeconds { cpu: f(total.cpu), gpu: f(total.gpu), billing: f(total.billing), node: f(total.node) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::time::day_number;
    use jiff::{civil::Date, Timestamp};

    fn job(start: &str, end: &str, cpus: u64) -> JobRecord {
        let s: Timestamp = start.parse().unwrap();
        let e: Timestamp = end.parse().unwrap();
        JobRecord {
            cluster: "c".into(),
            job_id_raw: 1,
            job_id: "1".into(),
            account: "a".into(),
            partition: "p".into(),
            user: "u".into(),
            start_s: s.as_second(),
            end_s: e.as_second(),
            elapsed_s: e.as_second() - s.as_second(),
            units: Units { cpus, gpus: 0, billing: cpus, nodes: 1 },
            provisional: false,
            time_limit_s: None,
        }
    }

    #[test]
    fn a_job_crossing_local_midnight_is_split_by_local_day() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        // 22:00 to 02:00 Paris time (UTC+1 in January): 2 h on each local day.
        let j = job("2026-01-10T21:00:00Z", "2026-01-11T01:00:00Z", 4);
        let days = prorate_daily(&j, &paris);
        assert_eq!(days.len(), 2);
        assert_eq!(days[0].0, day_number(Date::constant(2026, 1, 10)));
        assert_eq!(days[0].1.cpu, 4 * 7200);
        assert_eq!(days[1].0, day_number(Date::constant(2026, 1, 11)));
        assert_eq!(days[1].1.cpu, 4 * 7200);
        // In UTC the same job sits on one day.
        let days = prorate_daily(&j, &TimeZone::UTC);
        assert_eq!(days.len(), 2);
        assert_eq!(days[0].1.cpu, 4 * 3 * 3600);
        assert_eq!(days[1].1.cpu, 4 * 3600);
    }

    #[test]
    fn dst_day_has_23_hours_and_shares_still_add_up() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        // 2026-03-29 is 23 h long in Paris. Job from 28th 12:00 local to 30th 12:00 local.
        let j = job("2026-03-28T11:00:00Z", "2026-03-30T10:00:00Z", 1);
        let days = prorate_daily(&j, &paris);
        let secs: Vec<i64> = days.iter().map(|d| d.1.cpu).collect();
        assert_eq!(secs, vec![12 * 3600, 23 * 3600, 12 * 3600]);
        assert_eq!(secs.iter().sum::<i64>(), j.elapsed_s);
    }

    #[test]
    fn suspended_job_spreads_its_elapsed_with_exact_rounding() {
        let mut j = job("2026-01-01T12:00:00Z", "2026-01-03T12:00:00Z", 3);
        j.elapsed_s = 1001; // charged seconds less than the wall window
        let days = prorate_daily(&j, &TimeZone::UTC);
        let total: i64 = days.iter().map(|d| d.1.cpu).sum();
        assert_eq!(total, 3 * 1001);
        assert_eq!(days.iter().map(|d| d.1.cpu).collect::<Vec<_>>(), vec![751, 1501, 751]);
    }

    #[test]
    fn window_proration_matches_daily_buckets() {
        let j = job("2026-01-01T18:00:00Z", "2026-01-02T06:00:00Z", 2);
        let days = prorate_daily(&j, &TimeZone::UTC);
        let d1: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let w = prorate_window(&j, 0, d1.as_second());
        assert_eq!(w.cpu, days[0].1.cpu);
        assert_eq!(w.cpu, 2 * 6 * 3600);
        let hour = prorate_window(&j, d1.as_second() + 3600, d1.as_second() + 7200);
        assert_eq!(hour.cpu, 2 * 3600);
    }

    #[test]
    fn committed_unit_seconds_is_the_limit_not_yet_charged() {
        let base = JobRecord {
            start_s: 1000,
            end_s: 1600, // observed 600 s after its start
            elapsed_s: 600,
            units: Units { cpus: 4, gpus: 2, billing: 8, nodes: 1 },
            provisional: true,
            time_limit_s: Some(3600),
            ..JobRecord::empty()
        };
        let us = |s: i64| UnitSeconds { cpu: 4 * s, gpu: 2 * s, billing: 8 * s, node: s };
        // (what differs from `base`, at, committed seconds per unit)
        type Case = (&'static str, fn(&mut JobRecord), i64, i64);
        let cases: [Case; 11] = [
            ("at the observation", |_| {}, 1600, 3000),
            ("later: still relative to what was charged", |_| {}, 4000, 3000),
            ("before the observation (a replay)", |_| {}, 1200, 3000),
            ("at its start", |_| {}, 1000, 3000),
            ("before its start: not running then", |_| {}, 999, 0),
            ("limit reached by `at`: it has ended", |_| {}, 4600, 0),
            ("observed past its limit (OverTimeLimit)", |j| j.end_s = 4700, 4650, 0),
            ("suspended: elapsed below the window", |j| j.elapsed_s = 100, 1600, 3000),
            ("finished", |j| j.provisional = false, 1600, 0),
            ("no limit", |j| j.time_limit_s = None, 1600, 0),
            ("zero units", |j| j.units = Units::default(), 1600, 0),
        ];
        for (what, change, at, secs) in cases {
            let mut j = base.clone();
            change(&mut j);
            let want = if j.units == Units::default() { UnitSeconds::default() } else { us(secs) };
            assert_eq!(j.committed_unit_seconds(at), want, "{what}");
        }
        // Charged plus committed is the whole limit's worth.
        let mut total = base.unit_seconds();
        total.add(&base.committed_unit_seconds(1600));
        assert_eq!(total, us(3600));
        // No overflow on absurd limits.
        let huge = JobRecord { time_limit_s: Some(i64::MAX), ..base };
        assert_eq!(huge.committed_unit_seconds(1600).cpu, i64::MAX);
    }

    #[test]
    fn zero_length_job_charges_nothing_on_its_start_day() {
        let j = job("2026-01-01T18:00:00Z", "2026-01-01T18:00:00Z", 2);
        let days = prorate_daily(&j, &TimeZone::UTC);
        assert_eq!(days.len(), 1);
        assert!(days[0].1.is_zero());
    }
}
