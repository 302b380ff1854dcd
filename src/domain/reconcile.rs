//! Reconciliation: pure functions from an allocation, its grant history and its charged
//! usage at an instant to indicators, a pace and a status. No I/O here; table-driven tests
//! below. The status (and the pace behind it) is decided here only, from [`Thresholds`]: the
//! alert rules fire on it.

use super::time::DAY_S;
use serde::Serialize;

/// Expected cumulative consumption over a period: piecewise-linear points
/// (fraction of period elapsed, fraction of grant consumed), from (0,0) to (1,1).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    points: Vec<(f64, f64)>,
}

impl Profile {
    /// Linear consumption: x% of the period, x% of the grant.
    pub(crate) fn linear() -> Profile {
        Profile { points: vec![(0.0, 0.0), (1.0, 1.0)] }
    }

    /// The linear profile, shared (allocations that name no profile).
    pub(crate) fn linear_ref() -> &'static Profile {
        static LINEAR: std::sync::LazyLock<Profile> = std::sync::LazyLock::new(Profile::linear);
        &LINEAR
    }

    /// Validate points: start at (0,0), end at (1,1), time strictly increasing, cumulative
    /// fraction never decreasing.
    pub fn new(points: Vec<(f64, f64)>) -> Result<Profile, String> {
        if points.len() < 2 {
            return Err("need at least two points, from [0, 0] to [1, 1]".into());
        }
        if points[0] != (0.0, 0.0) || *points.last().expect("len ≥ 2") != (1.0, 1.0) {
            return Err("must start at [0, 0] and end at [1, 1]".into());
        }
        for w in points.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            if !(x1 > x0) {
                return Err(format!("elapsed fractions must increase ({x0} then {x1})"));
            }
            if !(y1 >= y0) || !(0.0..=1.0).contains(&y1) {
                return Err(format!("consumed fractions must not decrease and stay in [0, 1] ({y0} then {y1})"));
            }
        }
        Ok(Profile { points })
    }

    /// Expected fraction of the grant consumed once `f` of the period has elapsed.
    pub fn at(&self, f: f64) -> f64 {
        let f = f.clamp(0.0, 1.0);
        for w in self.points.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            if f <= x1 {
                return y0 + (y1 - y0) * (f - x0) / (x1 - x0);
            }
        }
        1.0
    }
}

/// Thresholds and windows that turn indicators into a status (documented defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Trailing window of the burn rate, days (default 14).
    pub burn_window_days: u32,
    /// Drift above which an allocation is over pace, in percentage points (default +10).
    pub over_pace_drift_pp: f64,
    /// Drift below which an allocation is under pace, in percentage points (default −20)…
    pub under_pace_drift_pp: f64,
    /// …once this share of the period has elapsed, in % (default 25).
    pub under_pace_min_elapsed_pct: f64,
    /// Over pace too when exhaustion is projected more than this many days before the period
    /// ends (default 30).
    pub exhaustion_warning_days: u32,
    /// Trailing window over which orphan and unmapped usage is reported, days (default 30).
    pub orphan_window_days: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            burn_window_days: 14,
            over_pace_drift_pp: 10.0,
            under_pace_drift_pp: -20.0,
            under_pace_min_elapsed_pct: 25.0,
            exhaustion_warning_days: 30,
            orphan_window_days: 30,
        }
    }
}

/// Where an allocation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Consumption within the thresholds of the expected pace.
    OnTrack,
    /// Ahead of pace: drift above the threshold or exhaustion projected well before the end.
    OverPace,
    /// Behind pace: hours at risk of being taken back.
    UnderPace,
    /// Consumed at least the granted hours.
    Exhausted,
    /// The period has not begun.
    NotStarted,
    /// The period is over.
    Ended,
}

impl Status {
    /// Stable name used in output and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::OnTrack => "on_track",
            Status::OverPace => "over_pace",
            Status::UnderPace => "under_pace",
            Status::Exhausted => "exhausted",
            Status::NotStarted => "not_started",
            Status::Ended => "ended",
        }
    }

    /// Documented integer code (for metrics and InfluxDB).
    pub fn code(self) -> i64 {
        match self {
            Status::OnTrack => 0,
            Status::OverPace => 1,
            Status::UnderPace => 2,
            Status::Exhausted => 3,
            Status::NotStarted => 4,
            Status::Ended => 5,
        }
    }
}

/// Where consumption stands against the expected pace (the part of a status that the over- and
/// under-pace thresholds decide). An exhausted allocation still has a pace: over pace stays
/// true of it once it ran out, so its over-pace alert does not "resolve".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pace {
    /// Within the thresholds.
    OnPace,
    /// Drift above `over_pace_drift_pp`, or exhaustion projected more than
    /// `exhaustion_warning_days` before the period ends.
    Ahead,
    /// Drift below `under_pace_drift_pp` once `under_pace_min_elapsed_pct` of the period has
    /// elapsed.
    Behind,
}

/// Whether `consumed` hours exhaust a grant of `granted` hours (anything consumed exhausts a
/// grant of nothing).
pub(crate) fn is_exhausted(granted: f64, consumed: f64) -> bool {
    if granted > 0.0 {
        consumed >= granted
    } else {
        consumed > 0.0
    }
}

/// The pace of an allocation from its drift, the share of its period elapsed (`elapsed`, 0–1),
/// its projected exhaustion and its period end (epoch seconds).
pub fn pace(drift_pp: Option<f64>, elapsed: f64, projected_exhaustion_s: Option<i64>, end_s: i64, th: &Thresholds) -> Pace {
    if drift_pp.is_some_and(|d| d > th.over_pace_drift_pp)
        || projected_exhaustion_s.is_some_and(|t| t < end_s - th.exhaustion_warning_days as i64 * DAY_S)
    {
        Pace::Ahead
    } else if drift_pp.is_some_and(|d| d < th.under_pace_drift_pp) && 100.0 * elapsed >= th.under_pace_min_elapsed_pct {
        Pace::Behind
    } else {
        Pace::OnPace
    }
}

/// Charged hours booked in one interval (a local day, or the part of today before `at`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Interval start, epoch seconds.
    pub start_s: i64,
    /// Interval end (exclusive), epoch seconds.
    pub end_s: i64,
    /// Charged hours in the interval.
    pub hours: f64,
}

/// What reconciliation needs to know about one allocation, already resolved to instants.
#[derive(Debug, Clone)]
pub struct AllocationWindow<'a> {
    /// Period start, epoch seconds (local midnight of the first day).
    pub start_s: i64,
    /// Period end, exclusive, epoch seconds.
    pub end_s: i64,
    /// Granted hours at the instant (initial grant + adjustments dated ≤ instant).
    pub granted_hours: f64,
    /// Expected-consumption profile.
    pub profile: &'a Profile,
}

/// Indicators of one allocation at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Indicators {
    /// Granted hours at the instant.
    pub granted_hours: f64,
    /// Charged hours within the period up to the instant.
    pub consumed_hours: f64,
    /// Hours the profile expects consumed by now.
    pub expected_hours: f64,
    /// Granted − consumed (negative when over-consumed).
    pub remaining_hours: f64,
    /// Consumed / granted, % (none when nothing is granted).
    pub consumed_pct: Option<f64>,
    /// (consumed − expected) / granted, percentage points (none when nothing is granted).
    pub drift_pp: Option<f64>,
    /// Share of the period elapsed, %.
    pub elapsed_pct: f64,
    /// Charged hours per day over the trailing burn window.
    pub burn_rate_hours_per_day: f64,
    /// When the remaining hours run out at the burn rate, if before the period ends.
    pub projected_exhaustion_s: Option<i64>,
    /// Hours left unused at period end at the burn rate.
    pub projected_unused_hours: f64,
    /// Pace against the expected profile.
    pub pace: Pace,
    /// Status.
    pub status: Status,
}

/// Reconcile one allocation at instant `at` (epoch seconds), given its charged buckets.
/// Buckets outside the period or at/after `at` are ignored; a bucket straddling a bound is
/// counted pro rata (the ledger supplies day-aligned buckets plus an exact partial one).
pub fn reconcile(w: &AllocationWindow, buckets: &[Bucket], at: i64, th: &Thresholds) -> Indicators {
    let upto = at.min(w.end_s);
    let consumed = sum_overlap(buckets, w.start_s, upto);
    let granted = w.granted_hours;
    let period = (w.end_s - w.start_s).max(1) as f64;
    let f = ((at - w.start_s) as f64 / period).clamp(0.0, 1.0);
    let expected = granted * w.profile.at(f);
    let remaining = granted - consumed;
    let (consumed_pct, drift_pp) = if granted > 0.0 {
        (Some(100.0 * consumed / granted), Some(100.0 * (consumed - expected) / granted))
    } else {
        (None, None)
    };
    let window_start = (at - th.burn_window_days as i64 * DAY_S).max(w.start_s);
    let burn = if upto > window_start {
        sum_overlap(buckets, window_start, upto) / ((upto - window_start) as f64 / 86400.0)
    } else {
        0.0
    };
    let active = at >= w.start_s && at < w.end_s;
    let projected_exhaustion_s = if active && burn > 0.0 && remaining > 0.0 {
        let t = at as f64 + remaining / burn * 86400.0;
        (t < w.end_s as f64).then_some(t.round() as i64)
    } else {
        None
    };
    let days_left = if active { (w.end_s - at) as f64 / 86400.0 } else { 0.0 };
    let projected_unused = if at < w.start_s {
        granted
    } else {
        (remaining - burn * days_left).max(0.0)
    };
    let pace = pace(drift_pp, f, projected_exhaustion_s, w.end_s, th);
    let status = if at < w.start_s {
        Status::NotStarted
    } else if at >= w.end_s {
        Status::Ended
    } else if is_exhausted(granted, consumed) {
        Status::Exhausted
    } else {
        match pace {
            Pace::Ahead => Status::OverPace,
            Pace::Behind => Status::UnderPace,
            Pace::OnPace => Status::OnTrack,
        }
    };
    Indicators {
        granted_hours: granted,
        consumed_hours: consumed,
        expected_hours: expected,
        remaining_hours: remaining,
        consumed_pct,
        drift_pp,
        elapsed_pct: 100.0 * f,
        burn_rate_hours_per_day: burn,
        projected_exhaustion_s,
        projected_unused_hours: projected_unused,
        pace,
        status,
    }
}

/// Hours of `buckets` inside `[from, to)`, each bucket counted by its overlap share.
pub(crate) fn sum_overlap(buckets: &[Bucket], from: i64, to: i64) -> f64 {
    let mut total = 0.0;
    for b in buckets {
        let a = b.start_s.max(from);
        let e = b.end_s.min(to);
        if e <= a {
            continue;
        }
        let len = b.end_s - b.start_s;
        total += if len <= 0 || (a == b.start_s && e == b.end_s) {
            b.hours
        } else {
            b.hours * (e - a) as f64 / len as f64
        };
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86400;

    /// A 100-day period starting at 0, granted 1000 h, with `per_day` hours booked on each
    /// of the first `days` days.
    fn run(per_day: &[(i64, f64)], at_day: f64, granted: f64, profile: &Profile) -> Indicators {
        let w = AllocationWindow { start_s: 0, end_s: 100 * DAY, granted_hours: granted, profile };
        let buckets: Vec<Bucket> =
            per_day.iter().map(|&(d, h)| Bucket { start_s: d * DAY, end_s: (d + 1) * DAY, hours: h }).collect();
        reconcile(&w, &buckets, (at_day * DAY as f64) as i64, &Thresholds::default())
    }

    fn flat(days: i64, h: f64) -> Vec<(i64, f64)> {
        (0..days).map(|d| (d, h)).collect()
    }

    #[test]
    fn statuses_table() {
        let lin = Profile::linear();
        // (case, bookings, at day, granted, expected status)
        let cases: Vec<(&str, Vec<(i64, f64)>, f64, f64, Status)> = vec![
            ("on pace", flat(50, 10.0), 50.0, 1000.0, Status::OnTrack),
            ("9pp ahead is still on track", flat(50, 11.8), 50.0, 1000.0, Status::OnTrack),
            ("over pace by drift", flat(50, 13.0), 50.0, 1000.0, Status::OverPace),
            ("under pace after 25%", flat(50, 5.0), 50.0, 1000.0, Status::UnderPace),
            ("behind but too early to say", flat(20, 0.0), 20.0, 1000.0, Status::OnTrack),
            ("exhausted", flat(50, 20.0), 50.0, 1000.0, Status::Exhausted),
            ("not started", vec![], -1.0, 1000.0, Status::NotStarted),
            ("ended", flat(100, 10.0), 100.0, 1000.0, Status::Ended),
            ("no grant but usage", flat(5, 1.0), 5.0, 0.0, Status::Exhausted),
            // Drift only +5 pp, but 30 h/day over the last fortnight exhausts the remaining
            // 450 h by day 65, more than 30 days before the end: over pace.
            ("projected exhaustion early", [flat(26, 5.0), (36..50).map(|d| (d, 30.0)).collect()].concat(), 50.0, 1000.0, Status::OverPace),
        ];
        for (name, bookings, at, granted, want) in cases {
            let got = run(&bookings, at, granted, &lin);
            assert_eq!(got.status, want, "{name}: {got:?}");
        }
    }

    #[test]
    fn exact_indicators_at_mid_period() {
        let lin = Profile::linear();
        // 6 h/day for 50 days, then at day 50: consumed 300, expected 500.
        let i = run(&flat(50, 6.0), 50.0, 1000.0, &lin);
        assert_eq!(i.consumed_hours, 300.0);
        assert_eq!(i.expected_hours, 500.0);
        assert_eq!(i.remaining_hours, 700.0);
        assert_eq!(i.consumed_pct, Some(30.0));
        assert_eq!(i.drift_pp, Some(-20.0));
        assert_eq!(i.elapsed_pct, 50.0);
        assert_eq!(i.burn_rate_hours_per_day, 6.0);
        assert_eq!(i.projected_exhaustion_s, None); // 700/6 = 116 days > 50 left
        assert_eq!(i.projected_unused_hours, 400.0); // 700 − 6 × 50
        assert_eq!(i.status, Status::OnTrack); // −20 is not below −20
    }

    #[test]
    fn projection_and_partial_buckets() {
        let lin = Profile::linear();
        // 20 h/day for 40 days = 800; at day 40 remaining 200 → exhausted 10 days later.
        let i = run(&flat(40, 20.0), 40.0, 1000.0, &lin);
        assert_eq!(i.projected_exhaustion_s, Some(50 * DAY));
        assert_eq!(i.projected_unused_hours, 0.0);
        // Halfway through day 10, a whole-day bucket counts for half.
        let i = run(&flat(11, 10.0), 10.5, 1000.0, &lin);
        assert_eq!(i.consumed_hours, 105.0);
        assert!((i.burn_rate_hours_per_day - 10.0).abs() < 1e-9);
    }

    #[test]
    fn usage_outside_the_period_is_not_consumed() {
        let lin = Profile::linear();
        let i = run(&[(-3, 50.0), (2, 10.0), (120, 99.0)], 100.0, 1000.0, &lin);
        assert_eq!(i.consumed_hours, 10.0);
    }

    #[test]
    fn profiles() {
        let q = Profile::new(vec![(0.0, 0.0), (0.5, 0.2), (1.0, 1.0)]).unwrap();
        assert_eq!(q.at(0.25), 0.1);
        assert!((q.at(0.75) - 0.6).abs() < 1e-12);
        assert_eq!(q.at(2.0), 1.0);
        // Back-loaded profile: 150 h at mid-period is on track (expected 200 of 1000).
        let i = run(&flat(50, 3.0), 50.0, 1000.0, &q);
        assert_eq!(i.expected_hours, 200.0);
        assert_eq!(i.status, Status::OnTrack);
        assert!(Profile::new(vec![(0.0, 0.0), (0.5, 0.6), (0.4, 0.7), (1.0, 1.0)]).is_err());
        assert!(Profile::new(vec![(0.0, 0.0), (0.5, 0.6), (1.0, 0.9)]).is_err());
        assert!(Profile::new(vec![(0.0, 0.0), (0.5, 0.6), (0.7, 0.5), (1.0, 1.0)]).is_err());
    }

    #[test]
    fn burn_window_shorter_at_period_start() {
        let lin = Profile::linear();
        // 3 days into the period at 30 h/day: the rate is over 3 days, not 14.
        let i = run(&flat(3, 30.0), 3.0, 1000.0, &lin);
        assert_eq!(i.burn_rate_hours_per_day, 30.0);
    }
}
