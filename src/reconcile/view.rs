//! A ledger view for reconciling at many instants: the daily rows of every centre over a range
//! of days, loaded once and charged once (through the one charging rule); each reconciliation
//! at an instant of the range is then a scan of the rows before the instant's day, plus the
//! partial day from the jobs. Replays and quality reports use it; cycles stream instead
//! ([`super::reconcile_all`]) — a test keeps the two equal.

use super::{earliest_day, PartialDay};
use crate::config::Config;
use crate::domain::centre::unmapped_core_hours;
use crate::domain::charge::{Charge, Charging};
use crate::domain::grants::Grants;
use crate::domain::reconciliation::{assemble, CentreBooks, Days, Reconciliation};
use crate::domain::time::{day_start, local_day, DayNumber};
use crate::store::{DailyRow, Store, StoreError};
use std::collections::HashMap;

/// Daily ledger rows of every centre over a range of days, charged.
pub struct LedgerView {
    centres: HashMap<String, CentreView>,
}

/// One centre's rows, sorted by day, with everything a step needs precomputed.
struct CentreView {
    rows: Vec<ViewRow>,
    /// (cluster, account, partition) of `ViewRow::key`.
    keys: Vec<(String, String, String)>,
}

struct ViewRow {
    day: DayNumber,
    start_s: i64,
    end_s: i64,
    key: usize,
    charge: Charge,
    /// Charged hours under the partition's rule (core-hours when unmapped).
    hours: f64,
}

impl LedgerView {
    /// Load the rows needed to reconcile at any instant in `[from_at, until_at]`: from the
    /// earliest allocation period start (or the orphan window before `from_at`) to the day
    /// before `until_at`'s day (that day itself is partial and comes from the jobs).
    pub fn load(config: &Config, grants: &Grants, store: &mut Store, from_at: i64, until_at: i64) -> Result<LedgerView, StoreError> {
        let mut centres = HashMap::new();
        for centre in config.centres.values() {
            let tz = &centre.tz;
            let charging = Charging::new(centre, grants);
            let orphan_from = Days::of(centre, from_at, &config.thresholds).orphan_from;
            let mut raw: Vec<DailyRow> = store.daily_usage(&centre.id, earliest_day(centre, grants, orphan_from), local_day(until_at, tz))?;
            raw.sort_by_key(|row| row.day);
            let mut key_index: HashMap<(String, String, String), usize> = HashMap::new();
            let mut keys = Vec::new();
            let mut day_bounds: HashMap<DayNumber, (i64, i64)> = HashMap::new();
            let mut rows = Vec::with_capacity(raw.len());
            for r in raw {
                let charge = charging.charge(&r.cluster, &r.account, &r.partition, r.day);
                let hours = match charge {
                    Charge::Allocation { rule, .. } | Charge::Orphan { rule } => charging.rule(rule).hours(&r.usage),
                    Charge::Unmapped => unmapped_core_hours(&r.usage),
                };
                let k = (r.cluster, r.account, r.partition);
                let key = match key_index.get(&k) {
                    Some(&i) => i,
                    None => {
                        keys.push(k.clone());
                        key_index.insert(k, keys.len() - 1);
                        keys.len() - 1
                    }
                };
                let (start_s, end_s) = *day_bounds.entry(r.day).or_insert_with(|| (day_start(r.day, tz), day_start(r.day + 1, tz)));
                rows.push(ViewRow { day: r.day, start_s, end_s, key, charge, hours });
            }
            centres.insert(centre.id.clone(), CentreView { rows, keys });
        }
        Ok(LedgerView { centres })
    }
}

/// Reconcile every allocation at `at` from a loaded view (rows of days before `at`'s local day)
/// and the partial current day. Pure apart from reading its arguments. Orphan and unmapped rows
/// come with `jobs = 0` (the view has no job identities; `reconcile_all` fills them in).
pub fn reconcile_view(config: &Config, grants: &Grants, view: &LedgerView, partial: &PartialDay, at: i64) -> Reconciliation {
    let terms = config.terms(grants);
    let th = &config.thresholds;
    let mut reports = vec![None; grants.allocations.len()];
    let (mut orphans, mut unmapped) = (Vec::new(), Vec::new());
    for centre in config.centres.values() {
        let charging = Charging::new(centre, grants);
        let days = Days::of(centre, at, th);
        let mut books = CentreBooks::new(&charging, at, days);
        if let Some(v) = view.centres.get(&centre.id) {
            // Rows are sorted by day: stop at the current day (partial, from the jobs).
            let upto = v.rows.partition_point(|r| r.day < days.today);
            let mut stray_by_key: HashMap<usize, (Option<String>, f64)> = HashMap::new();
            for row in &v.rows[..upto] {
                match row.charge {
                    Charge::Allocation { allocation, .. } => books.bucket(allocation, row.start_s, row.end_s, row.hours),
                    _ if row.day < days.orphan_from => {}
                    Charge::Orphan { rule } => {
                        stray_by_key.entry(row.key).or_insert_with(|| (Some(charging.rule(rule).resource.clone()), 0.0)).1 += row.hours;
                    }
                    Charge::Unmapped => stray_by_key.entry(row.key).or_insert((None, 0.0)).1 += row.hours,
                }
            }
            for (k, (resource, h)) in stray_by_key {
                books.stray(v.keys[k].clone(), resource, h);
            }
        }
        if let Some(p) = partial.get(&centre.id) {
            books.partial_day(p);
        }
        books.finish(&terms, &HashMap::new(), &mut reports, &mut orphans, &mut unmapped);
    }
    assemble(at, reports, orphans, unmapped, th)
}
