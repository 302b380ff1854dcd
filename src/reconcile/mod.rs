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
use std::collections::{BTreeMap, HashMap};

/// An allocation's charged unit-seconds: summed per rule before the burn window, per day and
/// rule within it.
#[derive(Default)]
struct Charged {
    /// Rule → (first day, last day, unit-seconds), by rule.
    before_window: BTreeMap<usize, (DayNumber, DayNumber, UnitSeconds)>,
    /// (day, rule, unit-seconds), days increasing.
    daily: Vec<(DayNumber, usize, UnitSeconds)>,
}

impl Charged {
    fn add(&mut self, day: DayNumber, rule: usize, us: &UnitSeconds, window_day: DayNumber) {
        if day < window_day {
            self.add_before(rule, day, day, us);
            return;
        }
        match self.daily.last_mut() {
            Some((d, r, sum)) if *d == day && *r == rule => sum.add(us),
            _ => self.daily.push((day, rule, *us)),
        }
    }

    fn add_before(&mut self, rule: usize, first: DayNumber, last: DayNumber, us: &UnitSeconds) {
        widen(self.before_window.entry(rule).or_insert((first, last, UnitSeconds::default())), first, last, us);
    }
}

/// Days `first..=last` with unit-seconds `us` added to a summed span of days.
fn widen(span: &mut (DayNumber, DayNumber, UnitSeconds), first: DayNumber, last: DayNumber, us: &UnitSeconds) {
    span.0 = span.0.min(first);
    span.1 = span.1.max(last);
    span.2.add(us);
}

/// The first day of a centre's ledger a reconciliation at `days` needs: the earliest period
/// start of its allocations, or the orphan window if earlier.
fn earliest_day(centre: &CentreConfig, grants: &Grants, orphan_from: DayNumber) -> DayNumber {
    grants.allocations.iter().filter(|a| a.centre == centre.id).map(|a| day_number(a.period_start)).min().unwrap_or(orphan_from).min(orphan_from)
}

/// Reconcile every allocation at `at` (epoch seconds), reading what it needs of the ledger
/// (a [`Reconciler`] used once).
pub fn reconcile_all(config: &Config, grants: &Grants, store: &mut Store, at: i64) -> Result<Reconciliation, StoreError> {
    Reconciler::default().reconcile(config, grants, store, at)
}

/// (cluster, account, partition) by interned name ids.
type KeyIds = (i64, i64, i64);

/// Reconciles every allocation at an instant, and keeps between calls what it read of each
/// centre's daily usage, so that the next call reads only the changes since (the store's
/// usage log, written by each ingest in its own transaction) instead of the ledger's history:
/// the daemon keeps one for its cycles. What it keeps is unit-seconds (exact integers), so a
/// kept state and one read afresh give the same figures (`tests/pipeline.rs` replays random
/// ingests and checks it). It reads afresh when the centre's charging changes (billing rules,
/// allocations, their accounts or periods), when an instant goes back past what it kept, or
/// when the log no longer holds every change since its position. One per store.
#[derive(Default)]
pub struct Reconciler {
    /// The store the kept state was read from.
    store: Option<std::path::PathBuf>,
    /// Interned names by id (a name's id never changes once written).
    names: HashMap<i64, String>,
    centres: HashMap<String, Kept>,
    /// How many times a centre's usage was read afresh.
    fresh_reads: usize,
}

/// One centre's daily usage as of a position of the usage log.
struct Kept {
    /// What its charging depends on ([`charging_fingerprint`]).
    fingerprint: u64,
    /// Usage-log position included.
    seq: i64,
    /// Days before this one never charge an allocation nor fall in the orphan window.
    earliest: DayNumber,
    /// First day kept per key (`recent`); earlier days are summed per allocation in `before`.
    recent_from: DayNumber,
    placements: FastMap<KeyIds, Placement>,
    /// (allocation, rule) → (first day, last day, unit-seconds) of the days before `recent_from`.
    before: FastMap<(usize, usize), (DayNumber, DayNumber, UnitSeconds)>,
    /// (day, cluster, account, partition) → (jobs, unit-seconds) from `recent_from` on, later
    /// days included (they count once the instant reaches them): what `usage_daily` holds there.
    recent: BTreeMap<(DayNumber, i64, i64, i64), (i64, UnitSeconds)>,
    /// Job runs per key overlapping the orphan window, when strays needed them.
    counts: Option<KeptCounts>,
}

/// Job runs per key overlapping `[from, to)`, as of a position of the job log.
struct KeptCounts {
    from: i64,
    to: i64,
    seq: i64,
    by_key: FastMap<KeyIds, i64>,
}

impl Kept {
    /// Job runs per key overlapping `[from, to)`: the kept counts brought up to date (the job
    /// log's entries since, and the runs starting in the window's new part), or counted afresh
    /// when the window's start moved, its end went back, or the log no longer reaches back.
    fn job_counts(&mut self, store: &mut Store, centre: &str, from: i64, to: i64) -> Result<&FastMap<KeyIds, i64>, StoreError> {
        let mut fresh = true;
        if let Some(c) = self.counts.as_mut().filter(|c| c.from == from && c.to <= to) {
            let (old_to, by_key) = (c.to, &mut c.by_key);
            let mut add = |j: crate::store::ledger::JobSpan, window_to: i64| {
                if crate::store::ledger::overlaps(j.start, j.end, from, window_to) {
                    *by_key.entry(j.key).or_default() += j.sign;
                }
            };
            // Changes count against the window the kept counts are for; the runs starting in its
            // new part are the ones it gains (they could not overlap it before).
            let changed = |j| add(j, old_to);
            let mut gained = Vec::new();
            if let Some(seq) = store.follow_job_counts(centre, c.seq, (old_to, to), changed, |j| gained.push(j))? {
                for j in gained {
                    if crate::store::ledger::overlaps(j.start, j.end, from, to) {
                        *c.by_key.entry(j.key).or_default() += 1;
                    }
                }
                c.by_key.retain(|_, n| *n != 0);
                (c.seq, c.to) = (seq, to);
                fresh = false;
            }
        }
        if fresh {
            let (by_key, seq) = store.job_counts_by_ids(centre, from, to)?;
            self.counts = Some(KeptCounts { from, to, seq, by_key });
        }
        Ok(&self.counts.as_ref().expect("kept above").by_key)
    }


    fn placement<'k>(placements: &'k mut FastMap<KeyIds, Placement>, key: KeyIds, charging: &Charging<'_>, names: &HashMap<i64, String>) -> &'k Placement {
        let name = |id: i64| names.get(&id).map(String::as_str).unwrap_or("");
        placements.entry(key).or_insert_with(|| charging.place(name(key.0), name(key.1), name(key.2)))
    }

    /// Add a row of `usage_daily`, or a logged change of one (signed).
    fn apply(&mut self, row: &crate::store::ledger::DailyIds, charging: &Charging<'_>, names: &HashMap<i64, String>) {
        if row.day < self.earliest {
            return;
        }
        let key = (row.cluster, row.account, row.partition);
        if row.day >= self.recent_from {
            let e = self.recent.entry((row.day, key.0, key.1, key.2)).or_default();
            e.0 += row.jobs;
            e.1.add(&row.usage);
            if e.0 == 0 && e.1.is_zero() {
                self.recent.remove(&(row.day, key.0, key.1, key.2));
            }
        } else {
            self.add_before(key, row.day, &row.usage, charging, names);
        }
    }

    fn add_before(&mut self, key: KeyIds, day: DayNumber, us: &UnitSeconds, charging: &Charging<'_>, names: &HashMap<i64, String>) {
        // Only an allocation's charge counts before the orphan window: strays there are dropped.
        if let Charge::Allocation { allocation, rule } = Self::placement(&mut self.placements, key, charging, names).charge(day) {
            widen(self.before.entry((allocation, rule)).or_insert((day, day, UnitSeconds::default())), day, day, us);
        }
    }

    /// Move the days before `recent_from` (later than the kept one) into `before`.
    fn advance(&mut self, recent_from: DayNumber, charging: &Charging<'_>, names: &HashMap<i64, String>) {
        if recent_from <= self.recent_from {
            return;
        }
        let keep = self.recent.split_off(&(recent_from, i64::MIN, i64::MIN, i64::MIN));
        let old = std::mem::replace(&mut self.recent, keep);
        self.recent_from = recent_from;
        for ((day, cl, acc, part), (_, us)) in old {
            self.add_before((cl, acc, part), day, &us, charging, names);
        }
    }
}

/// What a centre's charging depends on, hashed: its configuration (billing rules, clusters,
/// zone) and, for each of its allocations, its index, resource, accounts and period.
fn charging_fingerprint(centre: &CentreConfig, grants: &Grants) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{:?}", centre.centre).hash(&mut h);
    for (i, a) in grants.allocations.iter().enumerate().filter(|(_, a)| a.centre == centre.id) {
        (i, &a.resource, &a.accounts, day_number(a.period_start), day_number(a.period_end)).hash(&mut h);
    }
    h.finish()
}

impl Reconciler {
    /// How many times a centre's daily usage was read afresh rather than followed through the
    /// usage log.
    pub fn fresh_reads(&self) -> usize {
        self.fresh_reads
    }

    /// Reconcile every allocation at `at` (epoch seconds).
    pub fn reconcile(&mut self, config: &Config, grants: &Grants, store: &mut Store, at: i64) -> Result<Reconciliation, StoreError> {
        if self.store.as_deref() != Some(store.path()) {
            *self = Reconciler { store: Some(store.path().to_path_buf()), ..Reconciler::default() };
        }
        self.centres.retain(|id, _| config.centres.contains_key(id));
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
            let earliest = earliest_day(centre, grants, days.orphan_from);
            let kept = follow(store, &mut self.names, &mut self.centres, &mut self.fresh_reads, (centre, grants, &charging), earliest, daily_from.min(days.orphan_from))?;
            let names = &self.names;
            let name = |id: i64| names.get(&id).map(String::as_str).unwrap_or("");
            let mut charged: FastMap<usize, Charged> = FastMap::default();
            for (&(i, rule), (from, to, us)) in &kept.before {
                charged.entry(i).or_default().add_before(rule, *from, *to, us);
            }
            let mut stray_ids: FastMap<KeyIds, (Option<usize>, f64)> = FastMap::default();
            for (&(day, cl, acc, part), (_, us)) in kept.recent.range(..(days.today, i64::MIN, i64::MIN, i64::MIN)) {
                let key = (cl, acc, part);
                match Kept::placement(&mut kept.placements, key, &charging, names).charge(day) {
                    Charge::Allocation { allocation, rule } => charged.entry(allocation).or_default().add(day, rule, us, daily_from),
                    _ if day < days.orphan_from => {}
                    Charge::Orphan { rule } => stray_ids.entry(key).or_insert((Some(rule), 0.0)).1 += charging.rule(rule).hours(us),
                    Charge::Unmapped => stray_ids.entry(key).or_insert((None, 0.0)).1 += unmapped_core_hours(us),
                }
            }
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
            for (&(cl, acc, part), (rule, hours)) in &stray_ids {
                let resource = rule.map(|r| charging.rule(r).resource.clone());
                books.stray((name(cl).to_string(), name(acc).to_string(), name(part).to_string()), resource, *hours);
            }
            let partial = partial_of_centre(centre, store, at)?;
            books.partial_day(&partial);
            books.committed(&store.committed_usage(&centre.id, at)?);
            let mut counts = HashMap::new();
            if books.has_strays() {
                // Only the strays' counts are shown: those keys, and today's (the partial day's).
                let today: std::collections::HashSet<(&str, &str, &str)> = partial.keys().map(|(c, a, p)| (c.as_str(), a.as_str(), p.as_str())).collect();
                for (&(cl, acc, part), &n) in kept.job_counts(store, &centre.id, day_start(days.orphan_from, tz), at)? {
                    let key = (name(cl), name(acc), name(part));
                    if stray_ids.contains_key(&(cl, acc, part)) || today.contains(&key) {
                        counts.insert((key.0.to_string(), key.1.to_string(), key.2.to_string()), n);
                    }
                }
            }
            books.finish(&terms, &counts, &mut reports, &mut orphans, &mut unmapped);
        }
        Ok(assemble(at, reports, orphans, unmapped, th))
    }

}

/// The centre's kept usage brought up to date: the usage log's changes since it was read
/// applied, or read afresh from `earliest` when that is not possible (see [`Reconciler`]).
fn follow<'k>(
    store: &mut Store,
    names: &mut HashMap<i64, String>,
    centres: &'k mut HashMap<String, Kept>,
    fresh_reads: &mut usize,
    (centre, grants, charging): (&CentreConfig, &Grants, &Charging<'_>),
    earliest: DayNumber,
    recent_from: DayNumber,
) -> Result<&'k mut Kept, StoreError> {
    let fingerprint = charging_fingerprint(centre, grants);
    let mut fresh = true;
    if let Some(kept) = centres.get_mut(&centre.id).filter(|k| k.fingerprint == fingerprint && k.earliest <= earliest && k.recent_from <= recent_from) {
        let mut changes = Vec::new();
        if let Some(seq) = store.usage_changes(&centre.id, kept.seq, |row| changes.push(row))? {
            if changes.iter().any(|r| !known(names, r)) {
                *names = store.names()?;
            }
            for row in &changes {
                kept.apply(row, charging, names);
            }
            kept.seq = seq;
            kept.advance(recent_from, charging, names);
            fresh = false;
        }
    }
    if fresh {
        *fresh_reads += 1;
        if names.is_empty() {
            *names = store.names()?;
        }
        let mut kept = Kept {
            fingerprint,
            seq: 0,
            earliest,
            recent_from,
            placements: FastMap::default(),
            before: FastMap::default(),
            recent: BTreeMap::new(),
            counts: None,
        };
        // Rows are applied as they stream (millions of them); the few naming what was interned
        // after the names were read wait for a second read of the names.
        let mut late = Vec::new();
        kept.seq = store.for_each_daily_usage_since(&centre.id, earliest, |row| {
            if known(names, &row) {
                kept.apply(&row, charging, names);
            } else {
                late.push(row);
            }
        })?;
        if !late.is_empty() {
            *names = store.names()?;
            for row in &late {
                kept.apply(row, charging, names);
            }
        }
        centres.insert(centre.id.clone(), kept);
    }
    Ok(centres.get_mut(&centre.id).expect("kept above"))
}

/// Whether the names of a row's key are known.
fn known(names: &HashMap<i64, String>, row: &crate::store::ledger::DailyIds) -> bool {
    names.contains_key(&row.cluster) && names.contains_key(&row.account) && names.contains_key(&row.partition)
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
