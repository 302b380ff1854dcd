//! Quality indicators of the allocation process, for its ISO 9001 pilots: per period (month,
//! quarter, year), overall, per centre and per committee — hours granted and consumed, where
//! allocations stand, how well alerts warned ahead and were delivered, and how healthy the
//! accounting feeds were. Every figure is defined in `docs/quality-indicators.md`.
//!
//! - [`crate::domain::quality`] (pure): loaded facts → figures, and the facts behind any
//!   figure (`--explain`);
//! - [`load`]: the facts, from the store (ledger, pulls, alerts, notifications), the allocation
//!   and adjustment files, and reconciliations at the period's month ends;
//! - [`render`]: Markdown for people, CSV and JSON for spreadsheets; byte-for-byte reproducible;
//! - [`run_scheduled`]: the monthly run that queues the `quality` points for InfluxDB once.

mod load;
pub(crate) mod render;

use crate::config::Config;
use crate::domain::grants::Grants;
use crate::domain::time::{date_start, day_start, day_number};
use crate::sinks::outbox::Enqueued;
use crate::sinks::Point;
use crate::store::{Store, StoreError};

pub use crate::domain::quality::{compute, explain, Evidence, Inputs, Period, QualityReport};
pub(crate) use crate::domain::quality::round2;
pub use load::{load, AsOf};

/// Default minimum warning lead for `warned_ahead_pct`, in days (`--lead-days`).
pub(crate) const DEFAULT_LEAD_DAYS: f64 = 7.0;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum QualityError {
    /// Bad request or nothing to report on (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The store failed (exit code 1).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Measurement name of the quality points.
pub(crate) const MEASUREMENT: &str = "quality";

/// The `quality` points of a report: one per figure that has a value, tagged `period`, `scope`,
/// `scope_id`, `indicator`, field `value` (float, rounded as printed), stamped with the period
/// end (UTC midnight) so that sending a period again overwrites its points.
pub fn points(report: &QualityReport) -> Vec<Point> {
    let ts = date_start(report.period.end, &jiff::tz::TimeZone::UTC);
    report
        .figures
        .iter()
        .filter_map(|f| {
            let v = f.value?;
            Some(
                Point::at_second(MEASUREMENT, ts)
                    .tag("period", &report.period.label)
                    .tag("scope", f.scope.kind.as_str())
                    .tag("scope_id", &f.scope.id)
                    .tag("indicator", &f.indicator)
                    .float("value", round2(v)),
            )
        })
        .collect()
}

/// What [`run_scheduled`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheduled {
    /// No `[influxdb]` section: nothing to send, nothing computed.
    NotConfigured,
    /// The period's points were queued by an earlier run.
    AlreadyQueued {
        /// Period label.
        period: String,
    },
    /// Points queued in the outbox.
    Queued {
        /// Period label.
        period: String,
        /// Points queued.
        points: u64,
    },
}

/// What a queued run enqueued (for the daemon's metrics), beside what it did.
pub(crate) type Enqueue = (Scheduled, Enqueued);

/// The latest calendar month that has ended at `now` in every configured centre's zone.
pub(crate) fn last_finished_month(config: &Config, now: i64) -> Period {
    let utc = crate::domain::time::local_date(now, &jiff::tz::TimeZone::UTC);
    let mut m = Period::month(utc.year(), utc.month());
    loop {
        let prev = m.start.yesterday().expect("after 1970");
        m = Period::month(prev.year(), prev.month());
        let ended = config.centres.values().all(|c| day_start(day_number(m.end), &c.tz) <= now);
        if ended {
            return m;
        }
    }
}

/// The daemon's monthly call: compute the last finished month's report (up to its end) and
/// queue its `quality` points in the outbox, once per period (recorded in `quality_runs`, in the
/// same transaction). Call it any time after a month has ended; calling again is a no-op.
pub fn run_scheduled(config: &Config, grants: &Grants, store: &mut Store, now: i64) -> Result<Scheduled, QualityError> {
    run_scheduled_counted(config, grants, store, now).map(|(s, _)| s)
}

/// [`run_scheduled`], also returning what went into the outbox (the daemon's metrics).
pub(crate) fn run_scheduled_counted(config: &Config, grants: &Grants, store: &mut Store, now: i64) -> Result<Enqueue, QualityError> {
    if config.influxdb.is_none() {
        return Ok((Scheduled::NotConfigured, Enqueued::default()));
    }
    let period = last_finished_month(config, now);
    if store.quality_queued(&period.label)? {
        return Ok((Scheduled::AlreadyQueued { period: period.label }, Enqueued::default()));
    }
    let inputs = load(config, grants, store, &period, None, DEFAULT_LEAD_DAYS, AsOf::At(now))?;
    let report = compute(&inputs);
    enqueue(config, store, &report, "schedule")
}

/// Queue a report's points (again, if asked: same series and timestamps overwrite) and record
/// the run, in one transaction.
pub fn enqueue(config: &Config, store: &mut Store, report: &QualityReport, trigger: &str) -> Result<Enqueue, QualityError> {
    let pts = points(report);
    let label = report.period.label.clone();
    let now = jiff::Timestamp::now().as_second();
    let queued = store.transaction(|tx| {
        let e = crate::sinks::outbox::enqueue(tx, config.influxdb.as_ref(), &pts, now)?;
        tx.record_quality_run(&label, now, e.queued, trigger)?;
        Ok::<_, StoreError>(e)
    })?;
    Ok((Scheduled::Queued { period: label, points: queued.queued }, queued))
}

#[cfg(test)]
mod tests {
    use super::*;

    use jiff::civil::Date;

    #[test]
    fn periods_parse_to_calendar_bounds() {
        let cases = [
            ("2026", "2026", (2026, 1, 1), (2027, 1, 1), 12),
            ("2026-Q3", "2026-Q3", (2026, 7, 1), (2026, 10, 1), 3),
            ("2026-q4", "2026-Q4", (2026, 10, 1), (2027, 1, 1), 3),
            ("2026-09", "2026-09", (2026, 9, 1), (2026, 10, 1), 1),
            ("2026-12", "2026-12", (2026, 12, 1), (2027, 1, 1), 1),
        ];
        for (text, label, s, e, months) in cases {
            let p = Period::parse(text).unwrap();
            assert_eq!(p.label, label);
            assert_eq!(p.start, Date::constant(s.0, s.1, s.2), "{text}");
            assert_eq!(p.end, Date::constant(e.0, e.1, e.2), "{text}");
            assert_eq!(p.months().len(), months, "{text}");
        }
        assert_eq!(Period::parse("2026-Q3").unwrap().months().iter().map(|m| m.label.as_str()).collect::<Vec<_>>(), ["2026-07", "2026-08", "2026-09"]);
        for bad in ["", "26", "2026-Q5", "2026-Q0", "2026-13", "2026-00", "2026-9", "2026-S1", "2026-09-01", "x026"] {
            let e = Period::parse(bad).unwrap_err();
            assert!(e.contains("not a period"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_monthly_run_takes_the_last_month_ended_in_every_zone() {
        let toml = |zones: &[&str]| {
            let mut t = String::from("[store]\npath = \"s.sqlite\"\n");
            for (i, z) in zones.iter().enumerate() {
                t.push_str(&format!("[[centre]]\nid = \"c{i}\"\ntimezone = \"{z}\"\nclusters = [\"x{i}\"]\n"));
            }
            Config::parse(&t, std::path::Path::new("test.toml")).unwrap()
        };
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_second();
        let cases = [
            (vec!["Europe/Paris"], "2026-10-01T00:30:00Z", "2026-09"),
            (vec!["UTC"], "2026-09-30T23:59:59Z", "2026-08"),
            (vec!["UTC"], "2026-10-01T00:00:00Z", "2026-09"),
            // New York's September ends at 04:00 UTC on 1 October.
            (vec!["Europe/Paris", "America/New_York"], "2026-10-01T00:30:00Z", "2026-08"),
            (vec!["Europe/Paris", "America/New_York"], "2026-10-01T04:00:00Z", "2026-09"),
            (vec!["UTC"], "2027-01-15T00:00:00Z", "2026-12"),
        ];
        for (zones, now, want) in cases {
            assert_eq!(last_finished_month(&toml(&zones), at(now)).label, want, "{zones:?} at {now}");
        }
    }
}
