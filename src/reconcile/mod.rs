//! Reconciliation, the shell around the pure core: reads the ledger and hands each centre's
//! charged usage to [`crate::domain::reconciliation::CentreBooks`], which decides everything.
//!
//! - [`reconcile_all`] streams each centre's daily rows once per instant (cycles): days before
//!   the burn window and the forecast's history (whichever starts first) are summed into one
//!   bucket per allocation and rule, so memory stays bounded whatever the ledger's history;
//! - [`view`] loads a range of rows once and reconciles at many instants (replays, quality);
//! - [`usage`] and [`burndown`] are the other reads of charged usage.

pub(crate) mod burndown;
pub(crate) mod usage;
pub mod view;

use crate::config::{CentreConfig, Config};
use crate::domain::charge::{Charge, Charging, Placement};
use crate::domain::fxhash::FastMap;
use crate::domain::grants::Grants;
use crate::domain::job::{prorate_window, UnitSeconds};
use crate::domain::reconciliation::{assemble, CentreBooks, Days, PartialUsage, Reconciliation};
use crate::domain::time::{day_number, day_start, local_day, DayNumber, DAY_S};
use crate::domain::centre::unmapped_core_hours;
use crate::store::{Store, StoreError};
use std::collections::HashMap;

/// An allocation's charged unit-seconds: summed per rule before the burn window, per day and
/// rule within it.
#[derive(Default)]
struct Charged {
    /// Rule → (first day, last day, unit-seconds).
    before_window: FastMap<usize, (DayNumber, DayNumber, UnitSeconds)>,
    /// (day, rule, unit-seconds), days increasing.
    daily: Vec<(DayNumber, usize, UnitSeconds)>,
}

impl Charged {
    fn add(&mut self, day: DayNumber, rule: usize, us: &UnitSeconds, window_day: DayNumber) {
        if day < window_day {
            let e = self.before_window.entry(rule).or_insert((day, day, UnitSeconds::default()));
            e.0 = e.0.min(day);
            e.1 = e.1.max(day);
            e.2.add(us);
            return;
        }
        match self.daily.last_mut() {
            Some((d, r, sum)) if *d == day && *r == rule => sum.add(us),
            _ => self.daily.push((day, rule, *us)),
        }
    }
}

/// The first day of a centre's ledger a reconciliation at `days` needs: the earliest period
/// start of its allocations, or the orphan window if earlier.
fn earliest_day(centre: &CentreConfig, grants: &Grants, orphan_from: DayNumber) -> DayNumber {
    grants.allocations.iter().filter(|a| a.centre == centre.id).map(|a| day_number(a.period_start)).min().unwrap_or(orphan_from).min(orphan_from)
}

/// Reconcile every allocation at `at` (epoch seconds).
pub fn reconcile_all(config: &Config, grants: &Grants, store: &mut Store, at: i64) -> Result<Reconciliation, StoreError> {
    let terms = config.terms(grants);
    let th = &config.thresholds;
    let mut reports = vec![None; grants.allocations.len()];
    let (mut orphans, mut unmapped) = (Vec::new(), Vec::new());
    for centre in config.centres.values() {
        let tz = &centre.tz;
        let charging = Charging::new(centre, grants);
        let days = Days::of(centre, at, th);
        // Days of the burn window and of the forecast's history stay daily; older ones are summed.
        let daily_from = days.burn_from.min(local_day(at - (terms.forecast.history_days as i64 + 1) * DAY_S, tz));
        let names = store.names()?;
        let name = |id: i64| names.get(&id).map(String::as_str).unwrap_or("");
        let mut placements: FastMap<(i64, i64, i64), Placement> = FastMap::default();
        let mut charged: FastMap<usize, Charged> = FastMap::default();
        let mut stray_ids: FastMap<(i64, i64, i64), (Option<usize>, f64)> = FastMap::default();
        store.for_each_daily_usage(&centre.id, earliest_day(centre, grants, days.orphan_from), days.today, |row| {
            let key = (row.cluster, row.account, row.partition);
            let placement = placements.entry(key).or_insert_with(|| charging.place(name(row.cluster), name(row.account), name(row.partition)));
            match placement.charge(row.day) {
                Charge::Allocation { allocation, rule } => charged.entry(allocation).or_default().add(row.day, rule, &row.usage, daily_from),
                _ if row.day < days.orphan_from => {}
                Charge::Orphan { rule } => stray_ids.entry(key).or_insert((Some(rule), 0.0)).1 += charging.rule(rule).hours(&row.usage),
                Charge::Unmapped => stray_ids.entry(key).or_insert((None, 0.0)).1 += unmapped_core_hours(&row.usage),
            }
        })?;
        let mut books = CentreBooks::new(&charging, at, days);
        let mut day_starts: HashMap<DayNumber, i64> = HashMap::new();
        let mut start_of = |d: DayNumber| *day_starts.entry(d).or_insert_with(|| day_start(d, tz));
        for (i, c) in charged {
            for (rule, (from, to, us)) in c.before_window {
                books.bucket(i, start_of(from), start_of(to + 1), charging.rule(rule).hours(&us));
            }
            for (day, rule, us) in c.daily {
                books.bucket(i, start_of(day), start_of(day + 1), charging.rule(rule).hours(&us));
            }
        }
        for ((cl, acc, part), (rule, hours)) in stray_ids {
            let resource = rule.map(|r| charging.rule(r).resource.clone());
            books.stray((name(cl).to_string(), name(acc).to_string(), name(part).to_string()), resource, hours);
        }
        books.partial_day(&partial_of_centre(centre, store, at)?);
        books.committed(&store.committed_usage(&centre.id, at)?);
        let counts = if books.has_strays() { store.job_counts(&centre.id, day_start(days.orphan_from, tz), at)? } else { HashMap::new() };
        books.finish(&terms, &counts, &mut reports, &mut orphans, &mut unmapped);
    }
    Ok(assemble(at, reports, orphans, unmapped, th))
}

/// Unit-seconds of the current (partial) day per centre and (cluster, account, partition).
pub(crate) type PartialDay = HashMap<String, PartialUsage>;

/// The exact usage of each centre's current local day up to `at`, from the jobs themselves.
pub fn partial_day(config: &Config, store: &mut Store, at: i64) -> Result<PartialDay, StoreError> {
    let mut out = PartialDay::new();
    for centre in config.centres.values() {
        out.insert(centre.id.clone(), partial_of_centre(centre, store, at)?);
    }
    Ok(out)
}

/// Whether `at` is a local midnight in every centre (a reconciliation then needs no partial
/// day: the ledger's daily rows are the whole of it).
pub(crate) fn at_midnight_everywhere(config: &Config, at: i64) -> bool {
    config.centres.values().all(|c| day_start(local_day(at, &c.tz), &c.tz) == at)
}

/// One centre's usage of its current local day up to `at` (empty at a local midnight).
fn partial_of_centre(centre: &CentreConfig, store: &mut Store, at: i64) -> Result<PartialUsage, StoreError> {
    let today_start = day_start(local_day(at, &centre.tz), &centre.tz);
    let mut partial = PartialUsage::new();
    if today_start == at {
        return Ok(partial);
    }
    for job in store.jobs_overlapping(&centre.id, today_start, at)? {
        let us = prorate_window(&job, today_start, at);
        partial.entry((job.cluster.clone(), job.account.clone(), job.partition.clone())).or_default().add(&us);
    }
    Ok(partial)
}
