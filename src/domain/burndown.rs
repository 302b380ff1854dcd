//! The burn-down of one allocation over its period: hours charged per local day and their
//! running total up to the instant, the granted and expected hours at every local midnight of
//! the period, the projection at the current burn rate, and the forecast's band (P10, P50, P90
//! of the consumed hours, [`super::forecast`]) from the instant to the period end. Served by
//! `/api/v1/allocations/{centre}/{project}/{resource}` and drawn by the status page and the
//! digest's picture.
//!
//! [`build`] is pure; the shell that reads the ledger (`crate::reconcile::burndown`) charges the
//! days the way reconciliation does (daily buckets before the instant's day, the exact partial
//! day from the jobs), so the running total at the instant equals the reconciled
//! `consumed_hours`.

use super::reconcile::Profile;
use super::reconciliation::AllocationReport;
use super::time::{day_date, day_number, day_start, local_day, serialize_rfc3339, DayNumber};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Serialize;
use std::collections::BTreeMap;

/// Hours charged on one local day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayUsage {
    /// Local date.
    pub date: Date,
    /// Hours charged that day (up to the instant for the instant's own day).
    pub hours: f64,
    /// Hours charged in the period up to the end of that day (or the instant).
    pub cumulative_hours: f64,
    /// End of the interval, epoch seconds (midnight after, or the instant).
    #[serde(skip)]
    pub end_s: i64,
}

/// Granted and expected hours at one local midnight of the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurvePoint {
    /// Local date starting at that midnight (the period end for the last point).
    pub date: Date,
    /// Granted hours then (initial grant + adjustments dated ≤ that date).
    pub granted_hours: f64,
    /// Hours the profile expects consumed by then.
    pub expected_hours: f64,
    /// The midnight, epoch seconds.
    #[serde(skip)]
    pub t: i64,
}

/// One point of the projection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectionPoint {
    /// The instant (epoch seconds; RFC 3339 in JSON, as `at`).
    #[serde(rename = "at", serialize_with = "serialize_rfc3339")]
    pub t: i64,
    /// Hours consumed by then at the current burn rate.
    pub hours: f64,
}

/// One point of the forecast's band: the consumed hours' quantiles at an instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BandPoint {
    /// The instant (epoch seconds; RFC 3339 in JSON, as `at`).
    #[serde(rename = "at", serialize_with = "serialize_rfc3339")]
    pub t: i64,
    /// Hours consumed by then, 10 % quantile.
    pub p10_hours: f64,
    /// …median.
    pub p50_hours: f64,
    /// …90 % quantile.
    pub p90_hours: f64,
}

/// An allocation's burn-down at an instant.
#[derive(Debug, Clone, Serialize)]
pub struct BurnDown {
    /// The allocation's indicators (the `check --format json` object).
    pub allocation: AllocationReport,
    /// Period start, epoch seconds.
    #[serde(skip)]
    pub start_s: i64,
    /// Period end (exclusive), epoch seconds.
    #[serde(skip)]
    pub end_s: i64,
    /// The instant, epoch seconds.
    #[serde(skip)]
    pub at_s: i64,
    /// Daily consumption from the period start to the instant.
    pub daily: Vec<DayUsage>,
    /// Granted and expected hours at every local midnight of the period, end included.
    pub curve: Vec<CurvePoint>,
    /// From the instant to the period end at the current burn rate (empty outside the period).
    pub projection: Vec<ProjectionPoint>,
    /// The forecast's band from the instant (the consumed hours, all three equal) to the period
    /// end, one point per instant of the forecast's fan (empty without a forecast).
    pub band: Vec<BandPoint>,
}

/// Build the burn-down from an allocation's daily charged hours (`daily_hours`, days before the
/// instant's local day) and the hours of the instant's own day up to the instant.
pub fn build(
    report: &AllocationReport,
    granted_on: impl Fn(Date) -> f64,
    profile: &Profile,
    tz: &TimeZone,
    daily_hours: &BTreeMap<DayNumber, f64>,
    partial_today_hours: f64,
    at: i64,
    period: (Date, Date),
) -> BurnDown {
    let (start_day, end_day) = (day_number(period.0), day_number(period.1));
    let (start_s, end_s) = (day_start(start_day, tz), day_start(end_day, tz));
    let today = local_day(at, tz);
    let mut daily = Vec::new();
    let mut total = 0.0;
    let mut d = start_day;
    while d < end_day && d <= today && day_start(d, tz) < at {
        let (hours, end) = if d < today { (daily_hours.get(&d).copied().unwrap_or(0.0), day_start(d + 1, tz)) } else { (partial_today_hours, at) };
        total += hours;
        daily.push(DayUsage { date: day_date(d), hours, cumulative_hours: total, end_s: end });
        d += 1;
    }
    let span = (end_s - start_s).max(1) as f64;
    let curve = (start_day..=end_day)
        .map(|d| {
            let t = day_start(d, tz);
            // The period end is the midnight after its last day: grants as of that last day.
            let granted = granted_on(day_date(d.min(end_day - 1)));
            CurvePoint {
                date: day_date(d),
                granted_hours: granted,
                expected_hours: granted * profile.at((t - start_s) as f64 / span),
                t,
            }
        })
        .collect();
    let projection = if at >= start_s && at < end_s {
        let burn = report.burn_rate_hours_per_day;
        vec![
            ProjectionPoint { t: at, hours: report.consumed_hours.value() },
            ProjectionPoint { t: end_s, hours: report.consumed_hours.value() + burn * (end_s - at) as f64 / 86400.0 },
        ]
    } else {
        Vec::new()
    };
    let band = match &report.forecast {
        Some(f) => {
            let now = report.consumed_hours.value();
            let first = BandPoint { t: at, p10_hours: now, p50_hours: now, p90_hours: now };
            std::iter::once(first)
                .chain(f.fan.iter().map(|p| BandPoint { t: p.t, p10_hours: p.consumed.at(0.1), p50_hours: p.consumed.at(0.5), p90_hours: p.consumed.at(0.9) }))
                .collect()
        }
        None => Vec::new(),
    };
    BurnDown { allocation: report.clone(), start_s, end_s, at_s: at, daily, curve, projection, band }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::forecast::{FanPoint, Forecast, Quantiles, LEVELS};
    use crate::domain::reconcile::Status;
    use crate::domain::time::rfc3339;

    fn report(consumed: f64, burn: f64) -> AllocationReport {
        AllocationReport { burn_rate_hours_per_day: burn, ..AllocationReport::example(100.0, consumed, Status::OnTrack) }
    }

    #[test]
    fn days_run_to_the_instant_and_curves_span_the_period() {
        let tz = TimeZone::UTC;
        let d = |s: &str| s.parse::<jiff::civil::Date>().unwrap();
        let start = day_start(day_number(d("2026-01-01")), &tz);
        // At 12:00 on the 4th: three full days, then half a day.
        let at = start + 3 * 86400 + 43200;
        let daily: BTreeMap<DayNumber, f64> = [(day_number(d("2026-01-01")), 10.0), (day_number(d("2026-01-03")), 5.0)].into();
        // A top-up of 50 h dated the 6th.
        let granted = |x: jiff::civil::Date| if x >= d("2026-01-06") { 150.0 } else { 100.0 };
        let b = build(&report(17.0, 4.0), granted, &Profile::linear(), &tz, &daily, 2.0, at, (d("2026-01-01"), d("2026-01-11")));
        let days: Vec<(String, f64, f64)> = b.daily.iter().map(|x| (x.date.to_string(), x.hours, x.cumulative_hours)).collect();
        assert_eq!(days, vec![("2026-01-01".into(), 10.0, 10.0), ("2026-01-02".into(), 0.0, 10.0), ("2026-01-03".into(), 5.0, 15.0), ("2026-01-04".into(), 2.0, 17.0)]);
        assert_eq!(b.daily.last().unwrap().end_s, at);
        assert_eq!(b.curve.len(), 11);
        assert_eq!((b.curve[0].granted_hours, b.curve[0].expected_hours), (100.0, 0.0));
        assert_eq!((b.curve[5].date.to_string().as_str(), b.curve[5].granted_hours, b.curve[5].expected_hours), ("2026-01-06", 150.0, 75.0));
        assert_eq!((b.curve[10].date.to_string().as_str(), b.curve[10].expected_hours), ("2026-01-11", 150.0));
        // 6.5 days left at 4 h/day.
        assert_eq!(b.projection.len(), 2);
        assert_eq!((b.projection[0].hours, b.projection[1].hours), (17.0, 17.0 + 26.0));
        assert_eq!(rfc3339(b.projection[1].t), "2026-01-11T00:00:00Z");
    }

    #[test]
    fn before_the_period_nothing_is_consumed_or_projected() {
        let tz = TimeZone::UTC;
        let d = |s: &str| s.parse::<jiff::civil::Date>().unwrap();
        let at = day_start(day_number(d("2025-12-20")), &tz);
        let b = build(&report(0.0, 0.0), |_| 100.0, &Profile::linear(), &tz, &BTreeMap::new(), 0.0, at, (d("2026-01-01"), d("2026-01-11")));
        assert!(b.daily.is_empty() && b.projection.is_empty() && b.band.is_empty());
        assert_eq!(b.curve.len(), 11);
    }

    /// Quantiles rising by `step` a level from `base`: P10 = base + 2 step, P50 = base + 10
    /// step, P90 = base + 18 step.
    fn quantiles(base: f64, step: f64) -> Quantiles {
        Quantiles(std::array::from_fn(|l| base + l as f64 * step))
    }

    #[test]
    fn the_band_runs_from_the_consumed_hours_at_the_instant_through_the_fan() {
        let tz = TimeZone::UTC;
        let d = |s: &str| s.parse::<jiff::civil::Date>().unwrap();
        let start = day_start(day_number(d("2026-01-01")), &tz);
        let (at, end) = (start + 4 * 86400, start + 10 * 86400);
        let fan = |points: &[(i64, f64, f64)]| points.iter().map(|&(t, base, step)| FanPoint { t, consumed: quantiles(base, step) }).collect::<Vec<_>>();
        let forecast = |points: &[(i64, f64, f64)]| Forecast {
            at,
            history_days: 4,
            history_weight: 1.0,
            exhaustion: Quantiles([f64::INFINITY; LEVELS]),
            end_consumed: points.last().map(|p| quantiles(p.1, p.2)).unwrap_or(Quantiles([0.0; LEVELS])),
            fan: fan(points),
        };
        // (forecast, band as (instant, P10, P50, P90))
        let table: Vec<(Option<Forecast>, Vec<(i64, f64, f64, f64)>)> = vec![
            (None, vec![]),
            // One fan point, the period end: the instant, then the end.
            (Some(forecast(&[(end, 60.0, 1.0)])), vec![(at, 60.0, 60.0, 60.0), (end, 62.0, 70.0, 78.0)]),
            // Three: every one, in order, the last at the end.
            (
                Some(forecast(&[(at + 2 * 86400, 70.0, 0.5), (at + 4 * 86400, 80.0, 2.0), (end, 90.0, 5.0)])),
                vec![(at, 60.0, 60.0, 60.0), (at + 2 * 86400, 71.0, 75.0, 79.0), (at + 4 * 86400, 84.0, 100.0, 116.0), (end, 100.0, 140.0, 180.0)],
            ),
            // Steady usage: a band of no width, still drawn.
            (Some(forecast(&[(end, 120.0, 0.0)])), vec![(at, 60.0, 60.0, 60.0), (end, 120.0, 120.0, 120.0)]),
        ];
        for (f, want) in table {
            let r = AllocationReport { forecast: f.clone(), ..report(60.0, 10.0) };
            let b = build(&r, |_| 100.0, &Profile::linear(), &tz, &BTreeMap::new(), 0.0, at, (d("2026-01-01"), d("2026-01-11")));
            let got: Vec<(i64, f64, f64, f64)> = b.band.iter().map(|p| (p.t, p.p10_hours, p.p50_hours, p.p90_hours)).collect();
            assert_eq!(got, want, "{f:?}");
        }
    }

    #[test]
    fn the_band_is_served_with_rfc3339_instants() {
        let tz = TimeZone::UTC;
        let d = |s: &str| s.parse::<jiff::civil::Date>().unwrap();
        let at = day_start(day_number(d("2026-01-05")), &tz);
        let end = day_start(day_number(d("2026-01-11")), &tz);
        let f = Forecast {
            at,
            history_days: 4,
            history_weight: 1.0,
            exhaustion: Quantiles([f64::INFINITY; LEVELS]),
            end_consumed: quantiles(60.0, 1.0),
            fan: vec![FanPoint { t: end, consumed: quantiles(60.0, 1.0) }],
        };
        let r = AllocationReport { forecast: Some(f), ..report(60.0, 10.0) };
        let b = build(&r, |_| 100.0, &Profile::linear(), &tz, &BTreeMap::new(), 0.0, at, (d("2026-01-01"), d("2026-01-11")));
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(
            json["band"],
            serde_json::json!([
                { "at": "2026-01-05T00:00:00Z", "p10_hours": 60.0, "p50_hours": 60.0, "p90_hours": 60.0 },
                { "at": "2026-01-11T00:00:00Z", "p10_hours": 62.0, "p50_hours": 70.0, "p90_hours": 78.0 },
            ])
        );
    }
}
