//! The imperative shell around the pure core: imports files into the ledger, and assembles
//! allocations + ledger totals into a [`Reconciliation`] at an instant.

use crate::allocations::Grants;
use crate::cli_time::rfc3339_in;
use crate::config::{Centre, Config, FileKind, SourceConfig};
use crate::ledger::{DailyRow, FastMap, IngestStats, PullRecord, Store, StoreError};
use crate::model::{day_date, day_start, local_day, prorate_daily, prorate_window, UnitSeconds};
use crate::reconcile::{reconcile, AllocationWindow, Bucket, Indicators, Profile, Status};
use crate::sources::{read_file_with, FileFormat, InputError, LineError, ParsedRef, SourceContext};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Failure of an import as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input cannot be read or interpreted (exit code 2).
    #[error(transparent)]
    Input(#[from] InputError),
    /// The store failed (exit code 1).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Outcome of importing one file.
#[derive(Debug)]
pub struct FileImport {
    /// The file.
    pub path: PathBuf,
    /// Counts.
    pub stats: IngestStats,
    /// First rejected lines (all are counted in `stats.rejected`).
    pub rejections: Vec<LineError>,
}

impl FileImport {
    /// Log what the import did (a line), each kept rejection, and records of clusters the
    /// centre does not list.
    pub fn log(&self, centre: &str) {
        let s = &self.stats;
        tracing::info!(
            centre,
            file = %self.path.display(),
            records = s.records,
            inserted = s.inserted,
            replaced = s.replaced,
            unchanged = s.unchanged,
            rejected = s.rejected,
            "imported"
        );
        for r in &self.rejections {
            tracing::warn!(centre, "rejected {r}");
        }
        for (cluster, n) in &s.unknown_clusters {
            tracing::warn!(centre, cluster, records = n, "records of a cluster this centre does not list (charged anyway)");
        }
    }
}

/// Import one accounting file for a centre, in one transaction with its bookkeeping.
pub fn import_file(
    store: &mut Store,
    centre: &Centre,
    path: &Path,
    kind: FileKind,
    fields: Option<&str>,
    now: i64,
) -> Result<FileImport, ImportError> {
    let format = match kind {
        FileKind::Sacct => FileFormat::Sacct { fields: fields.map(str::to_string) },
        FileKind::Swf => FileFormat::Swf,
    };
    let meta = std::fs::metadata(path).map_err(|source| InputError::Io { file: path.display().to_string(), source })?;
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    // A running job without Elapsed is charged up to when the file was written.
    let observed_at = mtime_ns / 1_000_000_000;
    let ctx = SourceContext {
        tz: centre.tz.clone(),
        default_cluster: centre.clusters[0].clone(),
        observed_at: if observed_at > 0 { observed_at } else { now },
    };
    let mut ingest = store.begin_ingest(&centre.id, &centre.tz)?;
    let mut failure: Option<StoreError> = None;
    read_file_with(path, &format, &ctx, |item| {
        if failure.is_some() {
            return;
        }
        match item {
            Ok(ParsedRef::Job(job)) => {
                if !centre.clusters.contains(&job.cluster) {
                    ingest.unknown_cluster(&job.cluster);
                }
                if let Err(e) = ingest.upsert(job) {
                    failure = Some(e);
                }
            }
            Ok(ParsedRef::Step) => ingest.skip(true),
            Ok(ParsedRef::NotStarted) => ingest.skip(false),
            Err(e) => ingest.reject(e),
        }
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    let rejections = ingest.rejections().to_vec();
    let display = path.display().to_string();
    let pull = PullRecord {
        centre: centre.id.clone(),
        source: format!("file:{display}"),
        started_at: now,
        window: None,
        watermark: None,
        file: Some((display, meta.len() as i64, mtime_ns)),
    };
    let stats = ingest.commit(&pull, now)?;
    Ok(FileImport { path: path.to_path_buf(), stats, rejections })
}

/// Import every configured file-drop file that is new or changed since its last import.
/// Returns one result per file looked at; a failing file does not stop the others.
pub fn pull_file_sources(
    store: &mut Store,
    config: &Config,
    now: i64,
) -> Vec<(String, PathBuf, Result<Option<FileImport>, ImportError>)> {
    let mut out = Vec::new();
    for centre in config.centres.values() {
        out.extend(pull_centre_files(store, centre, now).into_iter().map(|(path, r)| (centre.id.clone(), path, r)));
    }
    out
}

/// Import one centre's file-drop files that are new or changed (the daemon pulls each centre
/// on its own schedule). One result per file looked at.
pub fn pull_centre_files(
    store: &mut Store,
    centre: &Centre,
    now: i64,
) -> Vec<(PathBuf, Result<Option<FileImport>, ImportError>)> {
    let mut out = Vec::new();
    {
        for source in &centre.sources {
            let SourceConfig::Files { paths, format, fields } = source else { continue };
            for path in expand(paths) {
                let result = (|| {
                    let meta = std::fs::metadata(&path)
                        .map_err(|source| InputError::Io { file: path.display().to_string(), source })?;
                    let mtime = meta
                        .modified()
                        .ok()
                        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_nanos() as i64)
                        .unwrap_or(0);
                    if store.imported_file(&centre.id, &path.display().to_string())? == Some((meta.len() as i64, mtime)) {
                        return Ok(None);
                    }
                    import_file(store, centre, &path, *format, fields.as_deref(), now).map(Some)
                })();
                if let Err(e) = &result {
                    // A file that cannot be read is a failed pull of the feed: recorded, so feed
                    // health (stale_feed) and the quality report's pull success rate see it.
                    let file = path.display().to_string();
                    let pull = PullRecord {
                        centre: centre.id.clone(),
                        source: format!("file:{file}"),
                        started_at: now,
                        window: None,
                        watermark: None,
                        file: None,
                    };
                    if let Err(se) = store.record_failed_pull(&pull, &e.to_string(), now) {
                        tracing::error!(centre = %centre.id, %file, "recording the failed pull: {se}");
                    }
                }
                out.push((path, result));
            }
        }
    }
    out
}

/// Files named by a source: files as they are, directories as their regular files (sorted).
fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.is_file() && !f.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    out
}

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
    pub period_start: String,
    /// Day after the last day (exclusive).
    pub period_end: String,
    /// Initial grant.
    pub initial_granted_hours: f64,
    /// Granted at the instant (initial + adjustments to date).
    pub granted_hours: f64,
    /// Charged hours in the period to date.
    pub consumed_hours: f64,
    /// Expected by the profile.
    pub expected_hours: f64,
    /// Granted − consumed.
    pub remaining_hours: f64,
    /// Consumed / granted, %.
    pub consumed_pct: Option<f64>,
    /// Drift, percentage points of the grant.
    pub drift_pp: Option<f64>,
    /// Share of the period elapsed, %.
    pub elapsed_pct: f64,
    /// Trailing burn rate.
    pub burn_rate_hours_per_day: f64,
    /// Projected exhaustion (RFC 3339, centre offset) or null.
    pub projected_exhaustion: Option<String>,
    /// Projected exhaustion in days from the instant, or null.
    pub projected_exhaustion_days: Option<f64>,
    /// Hours projected unused at period end.
    pub projected_unused_hours: f64,
    /// Status.
    pub status: Status,
    /// Reconciliation instant (RFC 3339 UTC).
    pub at: String,
    /// Where the allocation was declared.
    #[serde(skip)]
    pub origin: String,
    /// Index into the grants.
    #[serde(skip)]
    pub index: usize,
    /// Raw indicators.
    #[serde(skip)]
    pub indicators: Indicators,
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
    pub hours: f64,
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
    /// Start of the orphan window per centre (epoch seconds).
    pub orphan_window_days: u32,
}

/// Daily ledger rows of every centre over a range of days, loaded once and resolved against
/// the billing rules and allocations: `reconcile_all` loads one per instant; a replay loads one
/// for its whole range and reuses it at every step (each step is then a linear scan).
pub struct LedgerView {
    centres: HashMap<String, CentreView>,
}

/// One centre's rows, sorted by day, with everything a step needs precomputed.
struct CentreView {
    rows: Vec<ViewRow>,
    /// (cluster, account, partition, resource) of `ViewRow::key`.
    keys: Vec<(String, String, String, Option<String>)>,
}

struct ViewRow {
    day: i32,
    start_s: i64,
    end_s: i64,
    key: usize,
    /// Charged hours under the partition's rule (0 when unmapped).
    hours: f64,
    /// Core-hours (for unmapped partitions).
    cpu_hours: f64,
    /// The allocation these hours charge, if any.
    target: Option<usize>,
}

/// The allocation that `(account, resource)` usage on `day` charges.
pub fn target_allocation(grants: &Grants, by_account: &HashMap<(&str, &str), Vec<usize>>, account: &str, resource: &str, day: i32) -> Option<usize> {
    let date = day_date(day);
    by_account.get(&(account, resource)).and_then(|list| {
        list.iter().copied().find(|&i| {
            let a = &grants.allocations[i];
            a.period_start <= date && date < a.period_end
        })
    })
}

/// Which allocations of a centre each (account, resource) may charge.
pub fn allocations_by_account<'g>(grants: &'g Grants, centre: &str) -> HashMap<(&'g str, &'g str), Vec<usize>> {
    let mut by_account: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, a) in grants.allocations.iter().enumerate().filter(|(_, a)| a.centre == centre) {
        for acc in &a.accounts {
            by_account.entry((acc.as_str(), a.resource.as_str())).or_default().push(i);
        }
    }
    by_account
}

impl LedgerView {
    /// Load the rows needed to reconcile at any instant in `[from_at, until_at]`: from the
    /// earliest allocation period start (or the orphan window before `from_at`) to the day
    /// before `until_at`'s day (that day itself is partial and comes from the jobs).
    pub fn load(config: &Config, grants: &Grants, store: &mut Store, from_at: i64, until_at: i64) -> Result<LedgerView, StoreError> {
        let mut centres = HashMap::new();
        for centre in config.centres.values() {
            let tz = &centre.tz;
            let orphan_from = local_day(from_at, tz) - config.thresholds.orphan_window_days as i32;
            let earliest = grants
                .allocations
                .iter()
                .filter(|a| a.centre == centre.id)
                .map(|a| crate::model::day_number(a.period_start))
                .min()
                .unwrap_or(orphan_from)
                .min(orphan_from);
            let mut raw: Vec<DailyRow> = store.daily_usage(&centre.id, earliest, local_day(until_at, tz))?;
            raw.sort_by_key(|row| row.day);
            let by_account = allocations_by_account(grants, &centre.id);
            let mut key_index: HashMap<(String, String, String), usize> = HashMap::new();
            let mut keys = Vec::new();
            let mut day_bounds: HashMap<i32, (i64, i64)> = HashMap::new();
            let mut rows = Vec::with_capacity(raw.len());
            for r in raw {
                let rule = centre.rule_for(&r.cluster, &r.partition);
                let resource = rule.map(|x| x.resource.clone());
                let k = (r.cluster, r.account, r.partition);
                let key = match key_index.get(&k) {
                    Some(&i) => i,
                    None => {
                        keys.push((k.0.clone(), k.1.clone(), k.2.clone(), resource.clone()));
                        key_index.insert(k.clone(), keys.len() - 1);
                        keys.len() - 1
                    }
                };
                let (start_s, end_s) = *day_bounds.entry(r.day).or_insert_with(|| (day_start(r.day, tz), day_start(r.day + 1, tz)));
                let target = rule.and_then(|x| target_allocation(grants, &by_account, &k.1, &x.resource, r.day));
                rows.push(ViewRow {
                    day: r.day,
                    start_s,
                    end_s,
                    key,
                    hours: rule.map(|x| x.hours(&r.usage)).unwrap_or(0.0),
                    cpu_hours: r.usage.cpu as f64 / 3600.0,
                    target,
                });
            }
            centres.insert(centre.id.clone(), CentreView { rows, keys });
        }
        Ok(LedgerView { centres })
    }
}

/// Unit-seconds of the current (partial) day per centre and (cluster, account, partition).
pub type PartialDay = HashMap<String, HashMap<(String, String, String), UnitSeconds>>;

/// The exact usage of each centre's current local day up to `at`, from the jobs themselves.
pub fn partial_day(config: &Config, store: &mut Store, at: i64) -> Result<PartialDay, StoreError> {
    let mut out = PartialDay::new();
    for centre in config.centres.values() {
        out.insert(centre.id.clone(), partial_of_centre(centre, store, at)?);
    }
    Ok(out)
}

/// One centre's usage of its current local day up to `at` (empty at a local midnight).
fn partial_of_centre(centre: &Centre, store: &mut Store, at: i64) -> Result<HashMap<(String, String, String), UnitSeconds>, StoreError> {
    let today_start = day_start(local_day(at, &centre.tz), &centre.tz);
    let mut partial: HashMap<(String, String, String), UnitSeconds> = HashMap::new();
    if today_start == at {
        return Ok(partial);
    }
    for job in store.jobs_overlapping(&centre.id, today_start, at)? {
        let us = prorate_window(&job, today_start, at);
        partial.entry((job.cluster.clone(), job.account.clone(), job.partition.clone())).or_default().add(&us);
    }
    Ok(partial)
}

/// Usage not charged to an allocation, by (cluster, account, partition): its resource (none
/// when unmapped) and hours (core-hours when unmapped).
type Strays = BTreeMap<(String, String, String), (Option<String>, f64)>;

/// Place the partial current day of a centre: into its allocations' buckets, or as strays.
#[allow(clippy::too_many_arguments)]
fn place_partial(
    centre: &Centre,
    grants: &Grants,
    by_account: &HashMap<(&str, &str), Vec<usize>>,
    partial: &PartialDay,
    today: i32,
    at: i64,
    orphan_from_day: i32,
    buckets: &mut HashMap<usize, Vec<Bucket>>,
    stray: &mut Strays,
) {
    let today_start = day_start(today, &centre.tz);
    let Some(p) = partial.get(&centre.id) else { return };
    for ((cl, acc, part), us) in p {
        let key = (cl.clone(), acc.clone(), part.clone());
        match centre.rule_for(cl, part) {
            None => {
                if today >= orphan_from_day {
                    stray.entry(key).or_insert((None, 0.0)).1 += us.cpu as f64 / 3600.0;
                }
            }
            Some(rule) => {
                let hours = rule.hours(us);
                match target_allocation(grants, by_account, acc, &rule.resource, today) {
                    Some(i) => buckets.entry(i).or_default().push(Bucket { start_s: today_start, end_s: at.max(today_start + 1), hours }),
                    None => stray.entry(key).or_insert((Some(rule.resource.clone()), 0.0)).1 += hours,
                }
            }
        }
    }
}

/// Turn strays into orphan (mapped) and unmapped usage rows, with their job counts.
fn push_strays(centre: &str, stray: Strays, counts: &HashMap<(String, String, String), i64>, orphans: &mut Vec<OrphanUsage>, unmapped: &mut Vec<OrphanUsage>) {
    for ((cluster, account, partition), (resource, hours)) in stray {
        let jobs = counts.get(&(cluster.clone(), account.clone(), partition.clone())).copied().unwrap_or(0);
        let o = OrphanUsage { centre: centre.to_string(), cluster, account, partition, resource: resource.clone(), jobs, hours };
        if resource.is_some() {
            orphans.push(o);
        } else {
            unmapped.push(o);
        }
    }
}

/// Reconcile allocation `i` from its buckets and describe it for output.
fn allocation_report(config: &Config, grants: &Grants, tz: &jiff::tz::TimeZone, i: usize, buckets: &[Bucket], at: i64, linear: &Profile) -> AllocationReport {
    let a = &grants.allocations[i];
    let at_date = jiff::Timestamp::from_second(at).expect("valid instant").to_zoned(tz.clone()).date();
    let profile = a.profile.as_ref().and_then(|p| config.profiles.get(p)).unwrap_or(linear);
    let w = AllocationWindow {
        start_s: day_start(crate::model::day_number(a.period_start), tz),
        end_s: day_start(crate::model::day_number(a.period_end), tz),
        granted_hours: grants.granted_on(i, at_date),
        profile,
    };
    let ind = reconcile(&w, buckets, at, &config.thresholds);
    AllocationReport {
        centre: a.centre.clone(),
        project: a.project.clone(),
        resource: a.resource.clone(),
        committee: a.committee.clone(),
        accounts: a.accounts.clone(),
        period_start: a.period_start.to_string(),
        period_end: a.period_end.to_string(),
        initial_granted_hours: a.granted_hours,
        granted_hours: ind.granted_hours,
        consumed_hours: ind.consumed_hours,
        expected_hours: ind.expected_hours,
        remaining_hours: ind.remaining_hours,
        consumed_pct: ind.consumed_pct,
        drift_pp: ind.drift_pp,
        elapsed_pct: ind.elapsed_pct,
        burn_rate_hours_per_day: ind.burn_rate_hours_per_day,
        projected_exhaustion: ind.projected_exhaustion_s.map(|s| rfc3339_in(s, tz)),
        projected_exhaustion_days: ind.projected_exhaustion_s.map(|s| (s - at) as f64 / 86400.0),
        projected_unused_hours: ind.projected_unused_hours,
        status: ind.status,
        at: jiff::Timestamp::from_second(at).expect("valid instant").to_string(),
        origin: a.origin.clone(),
        index: i,
        indicators: ind,
    }
}

/// Where the usage of one (cluster, account, partition) goes: the billing rule that charges
/// it (none: unmapped) and the allocations that may take it.
struct Placement {
    rule: Option<usize>,
    allocations: Vec<usize>,
}

/// An allocation's charged unit-seconds: summed per rule before the burn window, per day and
/// rule within it.
#[derive(Default)]
struct Charged {
    /// Rule → (first day, last day, unit-seconds).
    before_window: FastMap<usize, (i32, i32, UnitSeconds)>,
    /// (day, rule, unit-seconds), days increasing.
    daily: Vec<(i32, usize, UnitSeconds)>,
}

impl Charged {
    fn add(&mut self, day: i32, rule: usize, us: &UnitSeconds, window_day: i32) {
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

/// Reconcile every allocation at `at` (epoch seconds).
pub fn reconcile_all(config: &Config, grants: &Grants, store: &mut Store, at: i64) -> Result<Reconciliation, StoreError> {
    let linear = Profile::linear();
    let th = &config.thresholds;
    let mut reports: Vec<Option<AllocationReport>> = vec![None; grants.allocations.len()];
    let mut orphans = Vec::new();
    let mut unmapped = Vec::new();
    for centre in config.centres.values() {
        let tz = &centre.tz;
        let today = local_day(at, tz);
        let orphan_from_day = today - th.orphan_window_days as i32;
        let mine: Vec<usize> = (0..grants.allocations.len()).filter(|&i| grants.allocations[i].centre == centre.id).collect();
        let earliest = mine
            .iter()
            .map(|&i| crate::model::day_number(grants.allocations[i].period_start))
            .min()
            .unwrap_or(orphan_from_day)
            .min(orphan_from_day);
        let by_account = allocations_by_account(grants, &centre.id);
        let period_days: FastMap<usize, (i32, i32)> = mine
            .iter()
            .map(|&i| {
                let a = &grants.allocations[i];
                (i, (crate::model::day_number(a.period_start), crate::model::day_number(a.period_end)))
            })
            .collect();
        // Days before the burn window only count towards consumption: they are summed into one
        // bucket per allocation and rule (exact integers, then hours once), the later ones
        // kept day by day. Memory stays bounded whatever the ledger's history.
        let window_day = local_day(at - th.burn_window_days as i64 * 86_400, tz);
        let names = store.names()?;
        let name = |id: i64| names.get(&id).map(String::as_str).unwrap_or("");
        let mut placements: FastMap<(i64, i64, i64), Placement> = FastMap::default();
        let mut charged: FastMap<usize, Charged> = FastMap::default();
        let mut stray_ids: FastMap<(i64, i64, i64), (Option<usize>, f64)> = FastMap::default();
        store.for_each_daily_usage(&centre.id, earliest, today, |row| {
            let key = (row.cluster, row.account, row.partition);
            let placement = placements.entry(key).or_insert_with(|| {
                let (cluster, account, partition) = (name(row.cluster), name(row.account), name(row.partition));
                let rule = centre.rule_for(cluster, partition).and_then(|r| centre.rules.iter().position(|x| std::ptr::eq(x, r)));
                match rule {
                    Some(rule) => Placement {
                        rule: Some(rule),
                        allocations: by_account.get(&(account, centre.rules[rule].resource.as_str())).cloned().unwrap_or_default(),
                    },
                    None => Placement { rule: None, allocations: Vec::new() },
                }
            });
            let Some(rule) = placement.rule else {
                if row.day >= orphan_from_day {
                    stray_ids.entry(key).or_insert((None, 0.0)).1 += row.usage.cpu as f64 / 3600.0;
                }
                return;
            };
            let target = placement.allocations.iter().copied().find(|i| {
                let (from, to) = period_days[i];
                from <= row.day && row.day < to
            });
            match target {
                Some(i) => charged.entry(i).or_default().add(row.day, rule, &row.usage, window_day),
                None if row.day >= orphan_from_day => {
                    stray_ids.entry(key).or_insert((Some(rule), 0.0)).1 += centre.rules[rule].hours(&row.usage);
                }
                None => {}
            }
        })?;
        let mut buckets: HashMap<usize, Vec<Bucket>> = HashMap::new();
        let mut day_starts: HashMap<i32, i64> = HashMap::new();
        let mut start_of = |d: i32| *day_starts.entry(d).or_insert_with(|| day_start(d, tz));
        for (i, c) in charged {
            let out = buckets.entry(i).or_default();
            for (rule, (from, to, us)) in c.before_window {
                out.push(Bucket { start_s: start_of(from), end_s: start_of(to + 1), hours: centre.rules[rule].hours(&us) });
            }
            for (day, rule, us) in c.daily {
                out.push(Bucket { start_s: start_of(day), end_s: start_of(day + 1), hours: centre.rules[rule].hours(&us) });
            }
        }
        let mut stray = Strays::new();
        for ((cl, acc, part), (rule, hours)) in stray_ids {
            let e = stray
                .entry((name(cl).to_string(), name(acc).to_string(), name(part).to_string()))
                .or_insert((rule.map(|r| centre.rules[r].resource.clone()), 0.0));
            e.1 += hours;
        }
        let mut partial = PartialDay::new();
        partial.insert(centre.id.clone(), partial_of_centre(centre, store, at)?);
        place_partial(centre, grants, &by_account, &partial, today, at, orphan_from_day, &mut buckets, &mut stray);
        let counts = if stray.is_empty() { HashMap::new() } else { store.job_counts(&centre.id, day_start(orphan_from_day, tz), at)? };
        push_strays(&centre.id, stray, &counts, &mut orphans, &mut unmapped);
        for &i in &mine {
            reports[i] = Some(allocation_report(config, grants, tz, i, buckets.get(&i).map(Vec::as_slice).unwrap_or(&[]), at, &linear));
        }
    }
    Ok(Reconciliation {
        at,
        allocations: reports.into_iter().flatten().collect(),
        orphans,
        unmapped,
        orphan_window_days: th.orphan_window_days,
    })
}

/// Reconcile every allocation at `at` from a loaded view (rows of days before `at`'s local day)
/// and the partial current day. Pure apart from reading its arguments. Orphan and unmapped rows
/// come with `jobs = 0` (the view has no job identities; `reconcile_all` fills them in).
pub fn reconcile_view(config: &Config, grants: &Grants, view: &LedgerView, partial: &PartialDay, at: i64) -> Reconciliation {
    let linear = Profile::linear();
    let th = &config.thresholds;
    let mut reports: Vec<Option<AllocationReport>> = vec![None; grants.allocations.len()];
    let mut orphans = Vec::new();
    let mut unmapped = Vec::new();
    for centre in config.centres.values() {
        let tz = &centre.tz;
        let today = local_day(at, tz);
        let orphan_from_day = today - th.orphan_window_days as i32;
        let mine: Vec<usize> = (0..grants.allocations.len()).filter(|&i| grants.allocations[i].centre == centre.id).collect();
        let mut buckets: HashMap<usize, Vec<Bucket>> = HashMap::new();
        let mut stray = Strays::new();
        if let Some(v) = view.centres.get(&centre.id) {
            // Rows are sorted by day: stop at the current day (partial, from the jobs).
            let upto = v.rows.partition_point(|r| r.day < today);
            let mut stray_by_key: HashMap<usize, f64> = HashMap::new();
            for row in &v.rows[..upto] {
                match row.target {
                    Some(i) => buckets.entry(i).or_default().push(Bucket { start_s: row.start_s, end_s: row.end_s, hours: row.hours }),
                    None if row.day >= orphan_from_day => {
                        let mapped = v.keys[row.key].3.is_some();
                        *stray_by_key.entry(row.key).or_default() += if mapped { row.hours } else { row.cpu_hours };
                    }
                    None => {}
                }
            }
            for (k, h) in stray_by_key {
                let (cl, acc, part, res) = &v.keys[k];
                stray.insert((cl.clone(), acc.clone(), part.clone()), (res.clone(), h));
            }
        }
        let by_account = allocations_by_account(grants, &centre.id);
        place_partial(centre, grants, &by_account, partial, today, at, orphan_from_day, &mut buckets, &mut stray);
        push_strays(&centre.id, stray, &HashMap::new(), &mut orphans, &mut unmapped);
        for &i in &mine {
            reports[i] = Some(allocation_report(config, grants, tz, i, buckets.get(&i).map(Vec::as_slice).unwrap_or(&[]), at, &linear));
        }
    }
    Reconciliation {
        at,
        allocations: reports.into_iter().flatten().collect(),
        orphans,
        unmapped,
        orphan_window_days: th.orphan_window_days,
    }
}

/// Grouping of `usage` rows beyond centre, cluster, account and partition.
#[derive(Debug, Clone, Copy, Default)]
pub struct UsageGrouping {
    /// Split by user.
    pub user: bool,
    /// Split by centre-local day.
    pub day: bool,
}

/// One row of `usage`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UsageRow {
    /// Centre.
    pub centre: String,
    /// Cluster.
    pub cluster: String,
    /// Account.
    pub account: String,
    /// Partition.
    pub partition: String,
    /// User (when grouped by user).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Day (when grouped by day).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    /// Jobs with usage in the window (group).
    pub jobs: i64,
    /// CPU-seconds in the window.
    pub cpu_seconds: i64,
    /// GPU-seconds.
    pub gpu_seconds: i64,
    /// Billing-seconds.
    pub billing_seconds: i64,
    /// Resource the partition is charged to, if a billing rule maps it.
    pub resource: Option<String>,
    /// Charged hours under that rule.
    pub charged_hours: Option<f64>,
}

/// A bound of a `usage` window: a centre-local day (its midnight in each centre's zone) or an
/// exact instant (e.g. an hour that `sreport` rolled up).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UsageBound {
    /// Midnight starting this local day.
    Day(jiff::civil::Date),
    /// This instant, epoch seconds.
    Instant(i64),
}

impl UsageBound {
    /// The bound in epoch seconds for a centre in zone `tz`.
    pub fn epoch_seconds(&self, tz: &jiff::tz::TimeZone) -> i64 {
        match self {
            UsageBound::Day(d) => day_start(crate::model::day_number(*d), tz),
            UsageBound::Instant(s) => *s,
        }
    }
}

/// Raw ledger usage apportioned to `[from, to)` (local dates of each centre or instants; open
/// ends allowed).
pub fn usage(
    config: &Config,
    store: &mut Store,
    centre_filter: Option<&str>,
    from: Option<UsageBound>,
    to: Option<UsageBound>,
    grouping: UsageGrouping,
) -> Result<Vec<UsageRow>, StoreError> {
    type Key = (String, String, String, String, Option<String>, Option<i32>);
    let mut out = Vec::new();
    for centre in config.centres.values() {
        if centre_filter.is_some_and(|c| c != centre.id) {
            continue;
        }
        let tz = &centre.tz;
        let from_s = from.map(|b| b.epoch_seconds(tz)).unwrap_or(i64::MIN / 4);
        let to_s = to.map(|b| b.epoch_seconds(tz)).unwrap_or(i64::MAX / 4);
        let mut groups: BTreeMap<Key, (i64, UnitSeconds)> = BTreeMap::new();
        for job in store.jobs_overlapping(&centre.id, from_s, to_s)? {
            let user = grouping.user.then(|| job.user.clone());
            let base = (centre.id.clone(), job.cluster.clone(), job.account.clone(), job.partition.clone(), user);
            if grouping.day {
                for (day, us) in prorate_daily(&job, tz) {
                    let (ds, de) = (day_start(day, tz), day_start(day + 1, tz));
                    if de <= from_s || ds >= to_s {
                        continue;
                    }
                    // A day cut by an instant bound keeps only its part inside the window.
                    let us = if ds >= from_s && de <= to_s { us } else { prorate_window(&job, ds.max(from_s), de.min(to_s)) };
                    let e = groups.entry((base.0.clone(), base.1.clone(), base.2.clone(), base.3.clone(), base.4.clone(), Some(day))).or_default();
                    e.0 += 1;
                    e.1.add(&us);
                }
            } else {
                let us = prorate_window(&job, from_s, to_s);
                let e = groups.entry((base.0, base.1, base.2, base.3, base.4, None)).or_default();
                e.0 += 1;
                e.1.add(&us);
            }
        }
        for ((c, cluster, account, partition, user, day), (jobs, us)) in groups {
            let rule = centre.rule_for(&cluster, &partition);
            out.push(UsageRow {
                centre: c,
                cluster,
                account,
                partition,
                user,
                day: day.map(|d| day_date(d).to_string()),
                jobs,
                cpu_seconds: us.cpu,
                gpu_seconds: us.gpu,
                billing_seconds: us.billing,
                resource: rule.map(|r| r.resource.clone()),
                charged_hours: rule.map(|r| r.hours(&us)),
            });
        }
    }
    Ok(out)
}
