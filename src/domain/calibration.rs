//! Calibration of the forecasts, measured: fed the reconciliations (and alert transitions) of a
//! replay step by step, it compares each forecast made at a snapshot instant with what then
//! happened in the ledger. Pure; `allocwatch replay --forecast-calibration` drives it.
//!
//! - **Coverage**: the share of snapshots whose outcome fell inside the forecast's P10–P90
//!   band (target 80 %), for the hours consumed by the period end and for the exhaustion instant
//!   ("never within the period" is a value too: a band whose P90 is "never" covers an allocation
//!   that did not run out).
//! - **Error**: for allocations that ran out, the mean absolute error in days of the P50
//!   exhaustion instant against the actual one, beside the same error of the point projection
//!   (the burn rate extended); "not within the period" counts as the period end for both.
//! - **Lead time**: for allocations that ran out, how long before it `forecast_exhaustion`
//!   first fired, against the first warning of the other rules ([`Rule::warns_of_exhaustion`]).
//!
//! The actual exhaustion instant is interpolated between the two steps around it (consumption
//! taken as linear within a step); snapshots are taken only while an allocation is running and
//! has not run out.

use super::forecast::{band_holds, Quantiles};
use super::lifecycle::Transition;
use super::quality::percentile;
use super::reconcile::Status;
use super::reconciliation::Reconciliation;
use super::rules::Rule;
use super::time::DAY_S;
use serde::Serialize;
use std::collections::BTreeMap;

/// One forecast, kept until its outcome is known.
#[derive(Debug, Clone)]
struct Snapshot {
    exhaustion: Quantiles,
    end_consumed: Quantiles,
    point_exhaustion: Option<i64>,
}

/// What is followed of one allocation.
#[derive(Debug, Clone, Default)]
struct Track {
    end_s: i64,
    granted: f64,
    last: Option<(i64, f64)>,
    exhausted_at: Option<f64>,
    end_consumed: Option<f64>,
    snapshots: Vec<Snapshot>,
    forecast_warned: Option<i64>,
    other_warned: Option<i64>,
}

/// Lead times of one kind of warning over the allocations that ran out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Leads {
    /// Allocations that ran out and were warned beforehand.
    pub warned: usize,
    /// Median lead, days.
    pub median_days: Option<f64>,
    /// 10th percentile of the lead, days.
    pub p10_days: Option<f64>,
}

/// The calibration table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationTable {
    /// Allocations followed.
    pub allocations: usize,
    /// …of which ran out within their period.
    pub exhausted: usize,
    /// …whose period ended within the replay (their end-of-period outcome is known).
    pub ended: usize,
    /// Snapshots with a forecast.
    pub forecasts: usize,
    /// Share of forecasts (of allocations whose period ended) whose end-of-period consumption
    /// fell inside P10–P90, %.
    pub end_coverage_pct: Option<f64>,
    /// Forecasts counted for it.
    pub end_forecasts: usize,
    /// Share of forecasts whose exhaustion instant (or "never") fell inside P10–P90, %.
    pub exhaustion_coverage_pct: Option<f64>,
    /// Forecasts counted for it.
    pub exhaustion_forecasts: usize,
    /// Mean absolute error of the P50 exhaustion, days (allocations that ran out).
    pub p50_exhaustion_mae_days: Option<f64>,
    /// Mean absolute error of the point projection, same snapshots, days.
    pub point_exhaustion_mae_days: Option<f64>,
    /// Lead time of `forecast_exhaustion`.
    pub forecast_exhaustion_lead: Leads,
    /// Lead time of the other warnings of exhaustion.
    pub other_rules_lead: Leads,
}

/// The calibration being measured.
#[derive(Debug, Default)]
pub struct Calibration {
    tracks: BTreeMap<String, Track>,
}

impl Calibration {
    /// Observe one step: its reconciliation, the alert transitions it caused, and whether it is
    /// a snapshot instant (forecasts are scored there).
    pub fn observe<'t>(&mut self, rec: &Reconciliation, transitions: impl IntoIterator<Item = &'t Transition>, snapshot: bool) {
        let at = rec.at;
        for a in &rec.allocations {
            if a.status == Status::NotStarted {
                continue;
            }
            let t = self.tracks.entry(a.subject()).or_default();
            t.end_s = a.end_s;
            let consumed = a.consumed_hours.value();
            if a.status == Status::Ended {
                t.end_consumed.get_or_insert(consumed);
                continue;
            }
            t.granted = a.granted_hours.value();
            if t.exhausted_at.is_none() && a.status == Status::Exhausted {
                // Interpolated between the previous step and this one.
                t.exhausted_at = Some(match t.last {
                    Some((t0, c0)) if consumed > c0 && t.granted > c0 => t0 as f64 + (at - t0) as f64 * (t.granted - c0) / (consumed - c0),
                    _ => at as f64,
                });
            }
            t.last = Some((at, consumed));
            if snapshot && t.exhausted_at.is_none() {
                if let Some(f) = &a.forecast {
                    t.snapshots.push(Snapshot { exhaustion: f.exhaustion, end_consumed: f.end_consumed, point_exhaustion: a.projected_exhaustion.as_ref().map(|l| l.s) });
                }
            }
        }
        for tr in transitions {
            let Transition::Fire(c) = tr else { continue };
            if !c.key.rule.warns_of_exhaustion(&c.key.discriminator) {
                continue;
            }
            let Some(t) = self.tracks.get_mut(&c.key.subject) else { continue };
            if t.exhausted_at.is_some_and(|e| (at as f64) > e) {
                continue;
            }
            let slot = if c.key.rule == Rule::ForecastExhaustion { &mut t.forecast_warned } else { &mut t.other_warned };
            slot.get_or_insert(at);
        }
    }

    /// The table.
    pub fn finish(&self) -> CalibrationTable {
        let mut end_in = (0usize, 0usize);
        let mut exh_in = (0usize, 0usize);
        let (mut err50, mut err_point, mut nerr) = (0.0, 0.0, 0usize);
        let (mut fleads, mut oleads) = (Vec::new(), Vec::new());
        let mut forecasts = 0;
        for t in self.tracks.values() {
            forecasts += t.snapshots.len();
            let actual = t.exhausted_at.unwrap_or(f64::INFINITY);
            for s in &t.snapshots {
                if let Some(end) = t.end_consumed {
                    end_in.1 += 1;
                    if band_holds(s.end_consumed.at(0.1), s.end_consumed.at(0.9), end) {
                        end_in.0 += 1;
                    }
                }
                // Whether the exhaustion outcome is known: it happened, or the period ended.
                if t.exhausted_at.is_some() || t.end_consumed.is_some() {
                    exh_in.1 += 1;
                    if s.exhaustion.at(0.1) <= actual && actual <= s.exhaustion.at(0.9) {
                        exh_in.0 += 1;
                    }
                }
                if let Some(e) = t.exhausted_at {
                    let capped = |x: f64| x.min(t.end_s as f64);
                    err50 += (capped(s.exhaustion.at(0.5)) - e).abs() / DAY_S as f64;
                    err_point += (s.point_exhaustion.map(|p| p as f64).unwrap_or(t.end_s as f64) - e).abs() / DAY_S as f64;
                    nerr += 1;
                }
            }
            if let Some(e) = t.exhausted_at {
                if let Some(w) = t.forecast_warned {
                    fleads.push((e - w as f64) / DAY_S as f64);
                }
                if let Some(w) = t.other_warned {
                    oleads.push((e - w as f64) / DAY_S as f64);
                }
            }
        }
        let pct = |(k, n): (usize, usize)| (n > 0).then(|| 100.0 * k as f64 / n as f64);
        CalibrationTable {
            allocations: self.tracks.len(),
            exhausted: self.tracks.values().filter(|t| t.exhausted_at.is_some()).count(),
            ended: self.tracks.values().filter(|t| t.end_consumed.is_some()).count(),
            forecasts,
            end_coverage_pct: pct(end_in),
            end_forecasts: end_in.1,
            exhaustion_coverage_pct: pct(exh_in),
            exhaustion_forecasts: exh_in.1,
            p50_exhaustion_mae_days: (nerr > 0).then(|| err50 / nerr as f64),
            point_exhaustion_mae_days: (nerr > 0).then(|| err_point / nerr as f64),
            forecast_exhaustion_lead: leads(fleads),
            other_rules_lead: leads(oleads),
        }
    }
}

/// Median and 10th percentile (nearest rank, as the replay's) of lead times.
fn leads(v: Vec<f64>) -> Leads {
    Leads { warned: v.len(), median_days: percentile(&v, 50.0), p10_days: percentile(&v, 10.0) }
}
