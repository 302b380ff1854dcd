//! Quality indicators of the allocation process, for its ISO 9001 pilots: per period (month,
//! quarter, year), overall, per centre and per committee — hours granted and consumed, where
//! allocations stand, how well alerts warned ahead and were delivered, and how healthy the
//! accounting feeds were. Every figure is defined in `docs/quality-indicators.md`.
//!
//! - [`compute`] (pure): loaded facts → figures, and the facts behind any figure (`--explain`);
//! - [`load`]: the facts, from the store (ledger, pulls, alerts, notifications), the allocation
//!   and adjustment files, and reconciliations at the period's month ends;
//! - [`render`]: Markdown for people, CSV and JSON for spreadsheets; byte-for-byte reproducible;
//! - [`run_scheduled`]: the monthly run that queues the `quality` points for InfluxDB once.

pub mod compute;
pub mod load;
pub mod render;

use crate::allocations::Grants;
use crate::config::Config;
use crate::ledger::{sq, Store, StoreError};
use crate::sinks::Point;
use jiff::civil::Date;
use rusqlite::{params, OptionalExtension};

pub use compute::{compute, explain, Evidence, Inputs, QualityReport};
pub use load::{load, AsOf};

/// Default minimum warning lead for `warned_ahead_pct`, in days (`--lead-days`).
pub const DEFAULT_LEAD_DAYS: f64 = 7.0;

/// A reporting period: a calendar month, quarter or year, in each centre's local days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// As given and as tagged: `2026-09`, `2026-Q3`, `2026`.
    pub label: String,
    /// First day.
    pub start: Date,
    /// Day after the last day (exclusive).
    pub end: Date,
}

impl Period {
    /// Parse `YYYY`, `YYYY-Qn` or `YYYY-MM`.
    pub fn parse(s: &str) -> Result<Period, String> {
        let s = s.trim();
        let bad = || format!("`{s}` is not a period: use a year (2026), a quarter (2026-Q3) or a month (2026-09)");
        let (y, rest) = match s.split_once('-') {
            Some((y, r)) => (y, Some(r)),
            None => (s, None),
        };
        if y.len() != 4 || !y.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let year: i16 = y.parse().map_err(|_| bad())?;
        if !(1970..=9998).contains(&year) {
            return Err(bad());
        }
        match rest {
            None => Ok(Period { label: format!("{year:04}"), start: Date::constant(year, 1, 1), end: Date::constant(year + 1, 1, 1) }),
            Some(r) if r.len() == 2 && (r.starts_with('Q') || r.starts_with('q')) => {
                let q: i8 = r[1..].parse().map_err(|_| bad())?;
                if !(1..=4).contains(&q) {
                    return Err(bad());
                }
                let start = Date::new(year, 3 * q - 2, 1).map_err(|_| bad())?;
                let end = if q == 4 { Date::new(year + 1, 1, 1) } else { Date::new(year, 3 * q + 1, 1) }.map_err(|_| bad())?;
                Ok(Period { label: format!("{year:04}-Q{q}"), start, end })
            }
            Some(r) if r.len() == 2 && r.bytes().all(|b| b.is_ascii_digit()) => {
                let m: i8 = r.parse().map_err(|_| bad())?;
                if !(1..=12).contains(&m) {
                    return Err(bad());
                }
                Ok(Period::month(year, m))
            }
            Some(_) => Err(bad()),
        }
    }

    /// The calendar month `month` of `year`.
    pub fn month(year: i16, month: i8) -> Period {
        let start = Date::new(year, month, 1).expect("valid month");
        let end = if month == 12 { Date::new(year + 1, 1, 1) } else { Date::new(year, month + 1, 1) }.expect("valid month");
        Period { label: format!("{year:04}-{month:02}"), start, end }
    }

    /// The calendar months of the period, in order.
    pub fn months(&self) -> Vec<Period> {
        let mut out = Vec::new();
        let mut d = self.start;
        while d < self.end {
            let m = Period::month(d.year(), d.month());
            d = m.end;
            out.push(m);
        }
        out
    }
}

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

impl QualityError {
    /// The documented exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            QualityError::Usage(_) => 2,
            QualityError::Store(_) => 1,
        }
    }
}

/// Measurement name of the quality points.
pub const MEASUREMENT: &str = "quality";

/// The `quality` points of a report: one per figure that has a value, tagged `period`, `scope`,
/// `scope_id`, `indicator`, field `value` (float, rounded as printed), stamped with the period
/// end (UTC midnight) so that sending a period again overwrites its points.
pub fn points(report: &QualityReport) -> Vec<Point> {
    let ts = report.period.end.to_zoned(jiff::tz::TimeZone::UTC).expect("valid date").timestamp().as_second();
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
                    .float("value", render::round2(v)),
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

/// The latest calendar month that has ended at `now` in every configured centre's zone.
pub fn last_finished_month(config: &Config, now: i64) -> Period {
    let utc = jiff::Timestamp::from_second(now).expect("valid instant").to_zoned(jiff::tz::TimeZone::UTC).date();
    let mut m = Period::month(utc.year(), utc.month());
    loop {
        let prev = m.start.yesterday().expect("after 1970");
        m = Period::month(prev.year(), prev.month());
        let ended = config.centres.values().all(|c| {
            crate::model::day_start(crate::model::day_number(m.end), &c.tz) <= now
        });
        if ended {
            return m;
        }
    }
}

/// The daemon's monthly call: compute the last finished month's report (up to its end) and
/// queue its `quality` points in the outbox, once per period (recorded in `quality_runs`, in the
/// same transaction). Call it any time after a month has ended; calling again is a no-op.
pub fn run_scheduled(config: &Config, grants: &Grants, store: &mut Store, now: i64) -> Result<Scheduled, QualityError> {
    if config.influxdb.is_none() {
        return Ok(Scheduled::NotConfigured);
    }
    let period = last_finished_month(config, now);
    if queued_before(store, &period.label)? {
        return Ok(Scheduled::AlreadyQueued { period: period.label });
    }
    let inputs = load(config, grants, store, &period, None, DEFAULT_LEAD_DAYS, AsOf::At(now))?;
    let report = compute(&inputs);
    enqueue(config, store, &report, "schedule")
}

/// Whether a period's points were already queued.
pub fn queued_before(store: &Store, period: &str) -> Result<bool, StoreError> {
    store
        .connection()
        .query_row("SELECT 1 FROM quality_runs WHERE period = ?1", [period], |_| Ok(()))
        .optional()
        .map(|o| o.is_some())
        .map_err(sq(store.path()))
}

/// Queue a report's points (again, if asked: same series and timestamps overwrite) and record
/// the run, in one transaction.
pub fn enqueue(config: &Config, store: &mut Store, report: &QualityReport, trigger: &str) -> Result<Scheduled, QualityError> {
    let pts = points(report);
    let path = store.path().to_path_buf();
    let label = report.period.label.clone();
    let now = jiff::Timestamp::now().as_second();
    let queued = store.with_transaction(|tx| {
        let e = crate::sinks::outbox::enqueue(tx, config, &pts)?;
        tx.execute(
            "INSERT INTO quality_runs (period, enqueued_at, points, trigger) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (period) DO UPDATE SET enqueued_at = excluded.enqueued_at, points = excluded.points, trigger = excluded.trigger",
            params![label, now, e.queued as i64, trigger],
        )
        .map_err(sq(&path))?;
        Ok(e)
    })?;
    crate::metrics::observe_enqueued(&queued);
    Ok(Scheduled::Queued { period: label, points: queued.queued })
}

#[cfg(test)]
mod tests {
    use super::*;

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
