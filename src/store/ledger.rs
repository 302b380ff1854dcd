//! The ledger: charged usage, exactly.
//!
//! - `jobs` holds one row per job run, keyed by (centre, cluster, JobIDRaw, start): seeing a
//!   record again replaces it, so nothing is ever counted twice. Each run keeps its time
//!   limit, so that what running jobs have committed beyond their charge can be read
//!   ([`Store::committed_usage`], from an index of the running jobs alone).
//! - `usage_daily` holds unit-seconds per centre-local day × cluster × account × partition.
//!   It is maintained incrementally in the same transaction as `jobs`: replacing a job
//!   subtracts its old daily shares and adds the new ones (exact integer arithmetic).
//! - An ingest commits its records with its pull's bookkeeping ([`super::pulls`]) in one
//!   transaction, so a crash leaves either all of an import or none of it.
//!
//! Billing rules are applied when reading (unit-seconds are stored), so a corrected rule
//! re-charges history without re-importing.

use super::pulls::{PullCounts, PullRecord};
use super::{sq, Store, StoreError, Tx};
use crate::domain::balance::AccountUser;
use crate::domain::fxhash::FastMap;
use crate::domain::job::{for_each_daily_share, JobRecord, LineError, UnitSeconds, Units};
use crate::domain::time::DayNumber;
use jiff::tz::TimeZone;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The ledger's tables (migration 1).
pub(super) const SCHEMA: &str = r#"
    CREATE TABLE names (
        id   INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE jobs (
        centre      INTEGER NOT NULL,
        cluster     INTEGER NOT NULL,
        job_id_raw  INTEGER NOT NULL,
        start       INTEGER NOT NULL,
        account     INTEGER NOT NULL,
        partition   INTEGER NOT NULL,
        user        INTEGER NOT NULL,
        end         INTEGER NOT NULL,
        elapsed     INTEGER NOT NULL,
        cpus        INTEGER NOT NULL,
        gpus        INTEGER NOT NULL,
        billing     INTEGER NOT NULL,
        nodes       INTEGER NOT NULL,
        provisional INTEGER NOT NULL,
        PRIMARY KEY (centre, cluster, job_id_raw, start)
    ) WITHOUT ROWID;
    -- Window queries scan start ∈ [from − longest job, to): see `centre_stats`.
    CREATE INDEX jobs_by_start ON jobs (centre, start);
    -- Longest wall-clock window of any stored job per centre, so that "jobs overlapping
    -- [from, to)" is a bounded range scan on (centre, start) rather than a scan of every job
    -- that ended after `from`.
    CREATE TABLE centre_stats (
        centre     INTEGER PRIMARY KEY,
        max_wall_s INTEGER NOT NULL
    );
    CREATE TABLE usage_daily (
        centre    INTEGER NOT NULL,
        day       INTEGER NOT NULL,
        cluster   INTEGER NOT NULL,
        account   INTEGER NOT NULL,
        partition INTEGER NOT NULL,
        jobs      INTEGER NOT NULL,
        cpu_s     INTEGER NOT NULL,
        gpu_s     INTEGER NOT NULL,
        billing_s INTEGER NOT NULL,
        node_s    INTEGER NOT NULL,
        PRIMARY KEY (centre, day, cluster, account, partition)
    ) WITHOUT ROWID;
    "#;

/// Each job's time limit (`NULL`: none known), and an index of the running (provisional) jobs,
/// a small part of the ledger, for what they have committed (migration 9).
pub(super) const TIME_LIMITS: &str = r#"
    ALTER TABLE jobs ADD COLUMN time_limit_s INTEGER;
    CREATE INDEX jobs_running ON jobs (centre) WHERE provisional = 1;
    "#;

/// The logs long-lived readers follow instead of re-reading the ledger (migration 11): every
/// change an ingest makes to `usage_daily` (`usage_log`: signed deltas per day and key), and
/// every job run it adds, takes away or moves (`job_log`: +1 for a run as stored now, −1 for the
/// version it replaced, with key, start and end; a correction that moves neither is not
/// logged), in commit order, in the ingest's own transaction. The daemon's
/// [`crate::reconcile::Reconciler`] applies them to what it kept. Only the last [`LOG_KEPT`]
/// entries of each are kept, and an ingest that would write more clears the log instead; `logs_pruned.through` is the last `seq` removed, so that a reader
/// further behind knows it must read afresh. `AUTOINCREMENT`: a `seq` is never given twice.
pub(super) const LOGS: &str = r#"
    CREATE TABLE usage_log (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        centre    INTEGER NOT NULL,
        day       INTEGER NOT NULL,
        cluster   INTEGER NOT NULL,
        account   INTEGER NOT NULL,
        partition INTEGER NOT NULL,
        jobs      INTEGER NOT NULL,
        cpu_s     INTEGER NOT NULL,
        gpu_s     INTEGER NOT NULL,
        billing_s INTEGER NOT NULL,
        node_s    INTEGER NOT NULL
    );
    CREATE TABLE job_log (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        centre    INTEGER NOT NULL,
        cluster   INTEGER NOT NULL,
        account   INTEGER NOT NULL,
        partition INTEGER NOT NULL,
        start     INTEGER NOT NULL,
        end       INTEGER NOT NULL,
        sign      INTEGER NOT NULL
    );
    CREATE TABLE logs_pruned (
        log     TEXT PRIMARY KEY,
        through INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO logs_pruned (log, through) VALUES ('usage_log', 0), ('job_log', 0);
    "#;

/// Entries kept in each log (≈ 50 bytes each), and the most one ingest writes: a daemon's
/// cycles follow their pulls within minutes, and a quarter of an hour of a national centre's
/// jobs is far fewer than this; a reader further behind (after a large import, say) reads
/// afresh once.
pub(crate) const LOG_KEPT: i64 = 50_000;

/// The two logs of [`LOGS`].
#[derive(Debug, Clone, Copy)]
enum Log {
    Usage,
    Jobs,
}

impl Log {
    fn table(self) -> &'static str {
        match self {
            Log::Usage => "usage_log",
            Log::Jobs => "job_log",
        }
    }
}

/// A job run as [`Store::follow_job_counts`] hands it: key ids, start and end, and +1 or −1
/// (a logged change) or +1 (a run starting in the window's new part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JobSpan {
    /// (cluster, account, partition) name ids.
    pub key: (i64, i64, i64),
    /// Start, epoch seconds.
    pub start: i64,
    /// End, epoch seconds.
    pub end: i64,
    /// +1: the run counts; −1: a version of it that no longer does.
    pub sign: i64,
}

/// Whether a run `[start, end)` counts as overlapping `[from, to)` (zero-length runs starting
/// in it included): the one rule of [`Store::job_counts`] and of what follows it.
pub(crate) fn overlaps(start: i64, end: i64, from: i64, to: i64) -> bool {
    end >= from && start < to && (end > from || end == start)
}

/// Rejected lines kept per pull (all are counted; the first ones are kept for inspection).
pub(crate) const KEPT_REJECTIONS: usize = 100;

/// What an ingest did with its records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Job records offered.
    pub records: u64,
    /// Newly stored.
    pub inserted: u64,
    /// Replaced an earlier record of the same run (corrected, or a running job updated).
    pub replaced: u64,
    /// Identical to what was stored: nothing to do.
    pub unchanged: u64,
    /// Rejected lines.
    pub rejected: u64,
    /// Job steps skipped.
    pub steps: u64,
    /// Jobs that never started (nothing to charge).
    pub not_started: u64,
    /// Records of clusters the centre does not list, by cluster.
    pub unknown_clusters: std::collections::BTreeMap<String, u64>,
}

impl Store {
    /// Look up an interned name without creating it.
    fn name_id(&mut self, name: &str) -> Result<Option<i64>, StoreError> {
        if let Some(&id) = self.names.get(name) {
            return Ok(Some(id));
        }
        let path = self.path.clone();
        let id: Option<i64> = self
            .conn
            .query_row("SELECT id FROM names WHERE name = ?1", [name], |r| r.get(0))
            .optional()
            .map_err(sq(&path))?;
        if let Some(id) = id {
            self.names.insert(name.to_string(), id);
        }
        Ok(id)
    }

    /// All interned names by id.
    fn names_by_id(&self) -> Result<HashMap<i64, String>, StoreError> {
        names_of(&self.conn).map_err(self.err())
    }

    /// Begin an ingest for a centre: everything it stores, and its bookkeeping, commits
    /// together in [`Ingest::commit`] or not at all.
    pub fn begin_ingest(&mut self, centre: &str, tz: &TimeZone) -> Result<Ingest<'_>, StoreError> {
        let Store { conn, path, names } = self;
        let conn: &Connection = conn;
        let e = sq(path);
        // The transaction is opened here and closed by `commit` (or rolled back on drop), so
        // that the prepared statements of the whole ingest can live beside it. IMMEDIATE: take
        // the write lock first (waiting up to the busy timeout for another writer); a deferred
        // BEGIN that read first would fail at once on its first write instead of waiting.
        conn.execute_batch("BEGIN IMMEDIATE").map_err(&e)?;
        let open = OpenTransaction { conn };
        let statements = (|| {
            Ok::<_, rusqlite::Error>(IngestStatements {
                insert_new: conn.prepare(
                    "INSERT INTO jobs (centre, cluster, job_id_raw, start, account, partition, user, end, elapsed,
                                       cpus, gpus, billing, nodes, provisional, time_limit_s)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
                     ON CONFLICT DO NOTHING",
                )?,
                select_old: conn.prepare(
                    "SELECT account, partition, user, end, elapsed, cpus, gpus, billing, nodes, provisional, time_limit_s FROM jobs
                     WHERE centre = ?1 AND cluster = ?2 AND job_id_raw = ?3 AND start = ?4",
                )?,
                replace: conn.prepare(
                    "INSERT OR REPLACE INTO jobs (centre, cluster, job_id_raw, start, account, partition, user, end, elapsed,
                                                  cpus, gpus, billing, nodes, provisional, time_limit_s)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                )?,
                add_daily: conn.prepare(
                    "INSERT INTO usage_daily (centre, day, cluster, account, partition, jobs, cpu_s, gpu_s, billing_s, node_s)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (centre, day, cluster, account, partition) DO UPDATE SET
                        jobs = jobs + excluded.jobs, cpu_s = cpu_s + excluded.cpu_s, gpu_s = gpu_s + excluded.gpu_s,
                        billing_s = billing_s + excluded.billing_s, node_s = node_s + excluded.node_s",
                )?,
                drop_empty_daily: conn.prepare(
                    "DELETE FROM usage_daily WHERE centre = ?1 AND day = ?2 AND cluster = ?3 AND account = ?4 AND partition = ?5
                       AND jobs = 0 AND cpu_s = 0 AND gpu_s = 0 AND billing_s = 0 AND node_s = 0",
                )?,
                log_change: conn.prepare(
                    "INSERT INTO usage_log (centre, day, cluster, account, partition, jobs, cpu_s, gpu_s, billing_s, node_s)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?,
                log_job: conn.prepare(
                    "INSERT INTO job_log (centre, cluster, account, partition, start, end, sign) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?,
                find_name: conn.prepare("SELECT id FROM names WHERE name = ?1")?,
                add_name: conn.prepare("INSERT INTO names (name) VALUES (?1)")?,
            })
        })()
        .map_err(&e)?;
        let mut ingest = Ingest {
            statements,
            open,
            path: path.clone(),
            tz: tz.clone(),
            centre_id: 0,
            names,
            new_names: FastMap::default(),
            recent: Default::default(),
            deltas: FastMap::default(),
            stats: IngestStats::default(),
            rejections: Vec::new(),
            max_wall_s: 0,
            usage_log: Some(Vec::new()),
            job_log: Some(Vec::new()),
        };
        ingest.centre_id = ingest.intern(centre)?;
        Ok(ingest)
    }

    /// Unit-seconds per (day, cluster, account, partition) for a centre over days
    /// `[from_day, to_day)`.
    pub fn daily_usage(&mut self, centre: &str, from_day: DayNumber, to_day: DayNumber) -> Result<Vec<DailyRow>, StoreError> {
        let names = self.names_by_id()?;
        let name = |id: i64| names.get(&id).cloned().unwrap_or_default();
        let mut out = Vec::new();
        self.for_each_daily_usage(centre, from_day, to_day, |r| {
            out.push(DailyRow { day: r.day, cluster: name(r.cluster), account: name(r.account), partition: name(r.partition), jobs: r.jobs, usage: r.usage })
        })?;
        Ok(out)
    }

    /// Daily usage rows of some accounts of a centre over days `[from_day, to_day)` (one
    /// allocation's burn-down): only those accounts' rows are read and named.
    pub(crate) fn daily_usage_of_accounts(
        &mut self,
        centre: &str,
        accounts: &[String],
        from_day: DayNumber,
        to_day: DayNumber,
    ) -> Result<Vec<DailyRow>, StoreError> {
        let Some(cid) = self.name_id(centre)? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        let mut names: HashMap<i64, String> = HashMap::new();
        for account in accounts {
            let Some(aid) = self.name_id(account)? else { continue };
            let path = self.path.clone();
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT day, cluster, partition, jobs, cpu_s, gpu_s, billing_s, node_s FROM usage_daily
                     WHERE centre = ?1 AND day >= ?2 AND day < ?3 AND account = ?4",
                )
                .map_err(sq(&path))?;
            let rows: Vec<(i32, i64, i64, i64, UnitSeconds)> = stmt
                .query_map(params![cid, from_day, to_day, aid], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, UnitSeconds { cpu: r.get(4)?, gpu: r.get(5)?, billing: r.get(6)?, node: r.get(7)? }))
                })
                .map_err(sq(&path))?
                .collect::<Result<_, _>>()
                .map_err(sq(&path))?;
            for (day, cl, part, jobs, usage) in rows {
                for id in [cl, part] {
                    if let std::collections::hash_map::Entry::Vacant(e) = names.entry(id) {
                        let n: String = self.conn.query_row("SELECT name FROM names WHERE id = ?1", [id], |r| r.get(0)).map_err(sq(&path))?;
                        e.insert(n);
                    }
                }
                out.push(DailyRow { day, cluster: names[&cl].clone(), account: account.clone(), partition: names[&part].clone(), jobs, usage });
            }
        }
        out.sort_by_key(|r| r.day);
        Ok(out)
    }

    /// Daily usage rows of a centre over days `[from_day, to_day)`, in key order, by interned
    /// name ids (see [`Store::names`]), handed to `f` one by one: a reconciliation reads
    /// millions of them, so no row is allocated.
    pub(crate) fn for_each_daily_usage(
        &mut self,
        centre: &str,
        from_day: DayNumber,
        to_day: DayNumber,
        mut f: impl FnMut(DailyIds),
    ) -> Result<(), StoreError> {
        let Some(cid) = self.name_id(centre)? else { return Ok(()) };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT day, cluster, account, partition, jobs, cpu_s, gpu_s, billing_s, node_s FROM usage_daily
                 WHERE centre = ?1 AND day >= ?2 AND day < ?3",
            )
            .map_err(sq(&self.path))?;
        let mut rows = stmt.query(params![cid, from_day, to_day]).map_err(sq(&self.path))?;
        while let Some(r) = rows.next().map_err(sq(&self.path))? {
            f(daily_ids(r).map_err(sq(&self.path))?);
        }
        Ok(())
    }

    /// Daily usage rows of a centre from `from_day` on (later days included), in key order, and
    /// the position of the usage log they include (every change with a larger `seq` is not in
    /// them): both read in one snapshot, so that applying the log's later changes to these rows
    /// neither misses nor doubles one.
    pub(crate) fn for_each_daily_usage_since(&mut self, centre: &str, from_day: DayNumber, mut f: impl FnMut(DailyIds)) -> Result<i64, StoreError> {
        let cid = self.name_id(centre)?;
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(sq(&path))?;
        let head = log_head(&tx, Log::Usage).map_err(sq(&path))?;
        if let Some(cid) = cid {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT day, cluster, account, partition, jobs, cpu_s, gpu_s, billing_s, node_s FROM usage_daily
                     WHERE centre = ?1 AND day >= ?2",
                )
                .map_err(sq(&path))?;
            let mut rows = stmt.query(params![cid, from_day]).map_err(sq(&path))?;
            while let Some(r) = rows.next().map_err(sq(&path))? {
                f(daily_ids(r).map_err(sq(&path))?);
            }
        }
        Ok(head)
    }

    /// The changes of a centre's daily rows logged after position `after`, in order (`jobs`
    /// and unit-seconds are signed deltas), and the log's new position; `None` when changes
    /// after `after` have been pruned (the caller re-reads the rows).
    pub(crate) fn usage_changes(&mut self, centre: &str, after: i64, mut f: impl FnMut(DailyIds)) -> Result<Option<i64>, StoreError> {
        let cid = self.name_id(centre)?;
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(sq(&path))?;
        if after < log_pruned_through(&tx, Log::Usage).map_err(sq(&path))? {
            return Ok(None);
        }
        let head = log_head(&tx, Log::Usage).map_err(sq(&path))?;
        if let (Some(cid), true) = (cid, head > after) {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT day, cluster, account, partition, jobs, cpu_s, gpu_s, billing_s, node_s FROM usage_log
                     WHERE seq > ?1 AND seq <= ?2 AND centre = ?3 ORDER BY seq",
                )
                .map_err(sq(&path))?;
            let mut rows = stmt.query(params![after, head, cid]).map_err(sq(&path))?;
            while let Some(r) = rows.next().map_err(sq(&path))? {
                f(daily_ids(r).map_err(sq(&path))?);
            }
        }
        Ok(Some(head))
    }

    /// Every interned name by id (clusters, accounts, partitions, users, centres).
    pub fn names(&self) -> Result<HashMap<i64, String>, StoreError> {
        self.names_by_id()
    }

    /// Jobs of a centre whose window overlaps `[from, to)` (zero-length jobs starting in it
    /// included).
    pub(crate) fn jobs_overlapping(&mut self, centre: &str, from: i64, to: i64) -> Result<Vec<JobRecord>, StoreError> {
        let Some(cid) = self.name_id(centre)? else { return Ok(Vec::new()) };
        overlapping(&self.conn, &self.path, cid, from, to)
    }

    /// What a centre's running jobs have committed beyond their charge at `at`, per (cluster,
    /// account, partition): the sum of [`JobRecord::committed_unit_seconds`] over its current
    /// provisional records with a time limit. A provisional run followed by a later run of the
    /// same job (a requeue: a new start, so a new row) is over and does not count. Reads the
    /// `jobs_running` index of provisional rows only.
    pub(crate) fn committed_usage(&mut self, centre: &str, at: i64) -> Result<HashMap<(String, String, String), UnitSeconds>, StoreError> {
        let Some(cid) = self.name_id(centre)? else { return Ok(HashMap::new()) };
        let names = self.names_by_id()?;
        let path = self.path.clone();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT j.cluster, j.account, j.partition, j.start, j.end, j.elapsed, j.cpus, j.gpus, j.billing, j.nodes, j.time_limit_s
                 FROM jobs j INDEXED BY jobs_running
                 WHERE j.centre = ?1 AND j.provisional = 1 AND j.time_limit_s IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.centre = j.centre AND k.cluster = j.cluster
                                   AND k.job_id_raw = j.job_id_raw AND k.start > j.start)",
            )
            .map_err(sq(&path))?;
        let mut sums: FastMap<(i64, i64, i64), UnitSeconds> = FastMap::default();
        let mut rows = stmt.query(params![cid]).map_err(sq(&path))?;
        while let Some(r) = rows.next().map_err(sq(&path))? {
            let get = |i| r.get::<_, i64>(i).map_err(sq(&path));
            let job = JobRecord {
                start_s: get(3)?,
                end_s: get(4)?,
                elapsed_s: get(5)?,
                units: Units { cpus: get(6)? as u64, gpus: get(7)? as u64, billing: get(8)? as u64, nodes: get(9)? as u64 },
                provisional: true,
                time_limit_s: Some(get(10)?),
                ..JobRecord::empty()
            };
            let committed = job.committed_unit_seconds(at);
            if !committed.is_zero() {
                sums.entry((get(0)?, get(1)?, get(2)?)).or_default().add(&committed);
            }
        }
        let name = |id: i64| names.get(&id).cloned().unwrap_or_default();
        Ok(sums.into_iter().map(|((c, a, p), us)| ((name(c), name(a), name(p)), us)).collect())
    }

    /// Job runs per (cluster, account, partition) of a centre whose window overlaps `[from,
    /// to)` ([`overlaps`]), by interned name ids, and the job log's position they include (both
    /// read in one snapshot).
    pub(crate) fn job_counts_by_ids(&mut self, centre: &str, from: i64, to: i64) -> Result<(FastMap<(i64, i64, i64), i64>, i64), StoreError> {
        let cid = self.name_id(centre)?;
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(sq(&path))?;
        let head = log_head(&tx, Log::Jobs).map_err(sq(&path))?;
        let mut counts: FastMap<(i64, i64, i64), i64> = FastMap::default();
        let Some(cid) = cid else { return Ok((counts, head)) };
        // Every job that may overlap the window started at or after `from − longest job`. The
        // (centre, start) index carries each job's key (cluster, job id), so the lowest job id
        // per cluster comes from the index alone; the table is then read in key order from
        // there (sequential pages) rather than looked up once per job (one random B-tree
        // descent each: most of a reconciliation's time on a large ledger).
        let lowest = lowest_job_ids(&tx, &path, cid, from, to)?;
        let mut stmt = tx
            .prepare_cached("SELECT account, partition, start, end FROM jobs WHERE centre = ?1 AND cluster = ?2 AND job_id_raw >= ?3")
            .map_err(sq(&path))?;
        for (cluster, low) in lowest {
            let mut rows = stmt.query(params![cid, cluster, low]).map_err(sq(&path))?;
            while let Some(r) = rows.next().map_err(sq(&path))? {
                let get = |i| r.get::<_, i64>(i).map_err(sq(&path));
                let (account, partition, start, end) = (get(0)?, get(1)?, get(2)?, get(3)?);
                if overlaps(start, end, from, to) {
                    *counts.entry((cluster, account, partition)).or_default() += 1;
                }
            }
        }
        drop(stmt);
        Ok((counts, head))
    }

    /// What brings job counts read at job-log position `after` over a window ending at
    /// `after_to` up to date, read in one snapshot: the runs logged since (`changed`: +1 as
    /// stored now, −1 for what they replaced) and the runs starting in `[after_to, to)`
    /// (`starting`); returns the log's new position, or `None` when entries after `after` have
    /// been pruned (the caller counts afresh).
    pub(crate) fn follow_job_counts(
        &mut self,
        centre: &str,
        after: i64,
        (after_to, to): (i64, i64),
        mut changed: impl FnMut(JobSpan),
        mut starting: impl FnMut(JobSpan),
    ) -> Result<Option<i64>, StoreError> {
        let cid = self.name_id(centre)?;
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(sq(&path))?;
        if after < log_pruned_through(&tx, Log::Jobs).map_err(sq(&path))? {
            return Ok(None);
        }
        let head = log_head(&tx, Log::Jobs).map_err(sq(&path))?;
        let Some(cid) = cid else { return Ok(Some(head)) };
        let span = |r: &rusqlite::Row<'_>, sign: i64| -> rusqlite::Result<JobSpan> {
            Ok(JobSpan { key: (r.get(0)?, r.get(1)?, r.get(2)?), start: r.get(3)?, end: r.get(4)?, sign })
        };
        if head > after {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT cluster, account, partition, start, end, sign FROM job_log WHERE seq > ?1 AND seq <= ?2 AND centre = ?3 ORDER BY seq",
                )
                .map_err(sq(&path))?;
            let mut rows = stmt.query(params![after, head, cid]).map_err(sq(&path))?;
            while let Some(r) = rows.next().map_err(sq(&path))? {
                let sign: i64 = r.get(5).map_err(sq(&path))?;
                changed(span(r, sign).map_err(sq(&path))?);
            }
        }
        if to > after_to {
            let mut stmt = tx
                .prepare_cached("SELECT cluster, account, partition, start, end FROM jobs WHERE centre = ?1 AND start >= ?2 AND start < ?3")
                .map_err(sq(&path))?;
            let mut rows = stmt.query(params![cid, after_to, to]).map_err(sq(&path))?;
            while let Some(r) = rows.next().map_err(sq(&path))? {
                starting(span(r, 1).map_err(sq(&path))?);
            }
        }
        Ok(Some(head))
    }

    /// Number of stored job runs (all centres).
    pub fn job_count(&self) -> Result<i64, StoreError> {
        self.conn.query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get(0)).map_err(self.err())
    }

    /// Who ran on which account of a centre (Open OnDemand balances): per (account, user), the
    /// latest start and end of their jobs that started before `to` and ended at or after
    /// `from`. Sorted by account, then user.
    pub(crate) fn account_users(&mut self, centre: &str, from: i64, to: i64) -> Result<Vec<AccountUser>, StoreError> {
        let Some(cid) = self.name_id(centre)? else { return Ok(Vec::new()) };
        let names = self.names_by_id()?;
        let path = self.path.clone();
        // As `job_counts`: a bounded scan of the (centre, start) index finds the lowest job id
        // per cluster of the window, then the table is read in key order from there (a balance's
        // window is a whole allocation period, most of the ledger: one lookup per job through
        // the index costs twice as much) and folded in memory (cheaper than SQL's GROUP BY).
        let lowest = lowest_job_ids(&self.conn, &path, cid, from, to)?;
        let mut last: FastMap<(i64, i64), (i64, i64)> = FastMap::default();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT account, user, start, end FROM jobs WHERE centre = ?1 AND cluster = ?2 AND job_id_raw >= ?3")
            .map_err(sq(&path))?;
        for (cluster, low) in lowest {
            let mut rows = stmt.query(params![cid, cluster, low]).map_err(sq(&path))?;
            while let Some(r) = rows.next().map_err(sq(&path))? {
                let get = |i| r.get::<_, i64>(i).map_err(sq(&path));
                let (account, user, start, end) = (get(0)?, get(1)?, get(2)?, get(3)?);
                if start < to && end >= from {
                    let e = last.entry((account, user)).or_insert((start, end));
                    *e = (e.0.max(start), e.1.max(end));
                }
            }
        }
        let name = |id: i64| names.get(&id).cloned().unwrap_or_default();
        let mut out: Vec<AccountUser> = last
            .into_iter()
            .map(|((a, u), (s, e))| AccountUser { centre: centre.to_string(), account: name(a), user: name(u), last_start_s: s, last_end_s: e })
            .collect();
        out.sort_by(|a, b| (&a.account, &a.user).cmp(&(&b.account, &b.user)));
        Ok(out)
    }
}

impl Tx<'_> {
    /// [`Store::jobs_overlapping`], inside the transaction.
    pub(crate) fn jobs_overlapping(&self, centre: &str, from: i64, to: i64) -> Result<Vec<JobRecord>, StoreError> {
        let cid: Option<i64> =
            self.conn.query_row("SELECT id FROM names WHERE name = ?1", [centre], |r| r.get(0)).optional().map_err(self.err())?;
        match cid {
            Some(cid) => overlapping(self.conn, self.path, cid, from, to),
            None => Ok(Vec::new()),
        }
    }
}

/// A row `day, cluster, account, partition, jobs, cpu_s, gpu_s, billing_s, node_s` of
/// `usage_daily` or `usage_log`.
fn daily_ids(r: &rusqlite::Row<'_>) -> rusqlite::Result<DailyIds> {
    Ok(DailyIds {
        day: r.get(0)?,
        cluster: r.get(1)?,
        account: r.get(2)?,
        partition: r.get(3)?,
        jobs: r.get(4)?,
        usage: UnitSeconds { cpu: r.get(5)?, gpu: r.get(6)?, billing: r.get(7)?, node: r.get(8)? },
    })
}

/// A log's position: the last `seq` given (0 before any), whether or not it was pruned since.
fn log_head(conn: &Connection, log: Log) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = ?1), 0)", [log.table()], |r| r.get(0))
}

/// The last `seq` pruned from a log (0: none).
fn log_pruned_through(conn: &Connection, log: Log) -> rusqlite::Result<i64> {
    conn.query_row("SELECT through FROM logs_pruned WHERE log = ?1", [log.table()], |r| r.get(0))
}

/// Empty a log and mark it pruned past every reader's position: the sequence moves on by one
/// (no entry takes that `seq`), so a reader that was up to date reads afresh too.
fn clear_log(conn: &Connection, log: Log) -> rusqlite::Result<()> {
    if conn.execute("UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = ?1", [log.table()])? == 0 {
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?1, 1)", [log.table()])?;
    }
    prune_log(conn, log, 0)?;
    let head = log_head(conn, log)?;
    conn.execute("UPDATE logs_pruned SET through = MAX(through, ?1) WHERE log = ?2", params![head, log.table()])?;
    Ok(())
}

/// Remove all but the last `keep` entries of a log (all of them: `keep` 0), and say up to which
/// `seq`.
fn prune_log(conn: &Connection, log: Log, keep: i64) -> rusqlite::Result<()> {
    let cut = log_head(conn, log)? - keep;
    if cut > 0 && conn.execute(&format!("DELETE FROM {} WHERE seq <= ?1", log.table()), [cut])? > 0 {
        conn.execute("UPDATE logs_pruned SET through = MAX(through, ?1) WHERE log = ?2", params![cut, log.table()])?;
    }
    Ok(())
}

/// Every interned name by id.
fn names_of(conn: &Connection) -> rusqlite::Result<HashMap<i64, String>> {
    let mut stmt = conn.prepare_cached("SELECT id, name FROM names")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// The jobs of centre `cid` overlapping `[from, to)`: a bounded scan of the (centre, start)
/// index from `from − longest job`.
/// The lowest job id per cluster among a centre's jobs that may overlap `[from, to)` (started
/// at or after `from − longest job`), from the (centre, start) index alone: the table can then
/// be read in key order from there (sequential pages) instead of once per job.
fn lowest_job_ids(conn: &Connection, path: &Path, cid: i64, from: i64, to: i64) -> Result<FastMap<i64, i64>, StoreError> {
    let max_wall = max_wall(conn, cid).map_err(sq(path))?;
    let mut lowest: FastMap<i64, i64> = FastMap::default();
    let mut stmt = conn.prepare_cached("SELECT cluster, job_id_raw FROM jobs WHERE centre = ?1 AND start >= ?2 - ?4 AND start < ?3").map_err(sq(path))?;
    let mut rows = stmt.query(params![cid, from, to, max_wall]).map_err(sq(path))?;
    while let Some(r) = rows.next().map_err(sq(path))? {
        let (cluster, id): (i64, i64) = (r.get(0).map_err(sq(path))?, r.get(1).map_err(sq(path))?);
        lowest.entry(cluster).and_modify(|low| *low = (*low).min(id)).or_insert(id);
    }
    Ok(lowest)
}

fn overlapping(conn: &Connection, path: &std::path::Path, cid: i64, from: i64, to: i64) -> Result<Vec<JobRecord>, StoreError> {
    let names = names_of(conn).map_err(sq(path))?;
    let max_wall = max_wall(conn, cid).map_err(sq(path))?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT cluster, job_id_raw, start, account, partition, user, end, elapsed, cpus, gpus, billing, nodes, provisional,
                    time_limit_s
             FROM jobs WHERE centre = ?1 AND start >= ?2 - ?4 AND start < ?3 AND end >= ?2",
        )
        .map_err(sq(path))?;
    let name = |id: i64| names.get(&id).cloned().unwrap_or_default();
    let rows = stmt
        .query_map(params![cid, from, to, max_wall], |r| {
            Ok(JobRecord {
                cluster: name(r.get(0)?),
                job_id_raw: r.get::<_, i64>(1)? as u64,
                job_id: r.get::<_, i64>(1)?.to_string(),
                start_s: r.get(2)?,
                account: name(r.get(3)?),
                partition: name(r.get(4)?),
                user: name(r.get(5)?),
                end_s: r.get(6)?,
                elapsed_s: r.get(7)?,
                units: Units {
                    cpus: r.get::<_, i64>(8)? as u64,
                    gpus: r.get::<_, i64>(9)? as u64,
                    billing: r.get::<_, i64>(10)? as u64,
                    nodes: r.get::<_, i64>(11)? as u64,
                },
                provisional: r.get::<_, i64>(12)? != 0,
                time_limit_s: r.get(13)?,
            })
        })
        .map_err(sq(path))?;
    let mut out = Vec::new();
    for j in rows {
        let j = j.map_err(sq(path))?;
        if j.end_s > from || (j.end_s == j.start_s && j.start_s >= from) {
            out.push(j);
        }
    }
    Ok(out)
}

/// Longest wall-clock window of the centre's stored jobs (0 when none), for bounded scans.
fn max_wall(conn: &Connection, centre_id: i64) -> rusqlite::Result<i64> {
    conn.query_row("SELECT max_wall_s FROM centre_stats WHERE centre = ?1", [centre_id], |r| r.get(0))
        .optional()
        .map(|v| v.unwrap_or(0))
}

/// One row of the daily usage table, with names resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyRow {
    /// Centre-local day.
    pub day: DayNumber,
    /// Cluster.
    pub cluster: String,
    /// Account.
    pub account: String,
    /// Partition.
    pub partition: String,
    /// Jobs with a share on that day.
    pub jobs: i64,
    /// Unit-seconds booked on that day.
    pub usage: UnitSeconds,
}

/// One row of the daily usage table, by interned name ids.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DailyIds {
    /// Centre-local day.
    pub day: DayNumber,
    /// Cluster name id.
    pub cluster: i64,
    /// Account name id.
    pub account: i64,
    /// Partition name id.
    pub partition: i64,
    /// Jobs with a share on that day.
    pub jobs: i64,
    /// Unit-seconds booked on that day.
    pub usage: UnitSeconds,
}

type DeltaKey = (DayNumber, i64, i64, i64);

/// Daily deltas held in memory before they are written to `usage_daily` (still inside the
/// ingest's transaction): bounds an import's memory whatever its size.
const MAX_HELD_DELTAS: usize = 50_000;

/// The statements an ingest runs for every record, prepared once.
struct IngestStatements<'s> {
    insert_new: rusqlite::Statement<'s>,
    select_old: rusqlite::Statement<'s>,
    replace: rusqlite::Statement<'s>,
    add_daily: rusqlite::Statement<'s>,
    drop_empty_daily: rusqlite::Statement<'s>,
    log_change: rusqlite::Statement<'s>,
    log_job: rusqlite::Statement<'s>,
    find_name: rusqlite::Statement<'s>,
    add_name: rusqlite::Statement<'s>,
}

/// A `BEGIN` not yet committed: rolled back when dropped (an ingest abandoned on error).
struct OpenTransaction<'s> {
    conn: &'s Connection,
}

impl Drop for OpenTransaction<'_> {
    fn drop(&mut self) {
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// An ingest in progress: one SQLite transaction.
pub struct Ingest<'s> {
    // Field order matters: statements are finalised before the transaction is rolled back.
    statements: IngestStatements<'s>,
    open: OpenTransaction<'s>,
    path: PathBuf,
    tz: TimeZone,
    centre_id: i64,
    names: &'s mut FastMap<String, i64>,
    /// Names created in this transaction: only published to the cache on commit.
    new_names: FastMap<String, i64>,
    /// Last name and id seen per field (cluster, account, partition, user): consecutive
    /// records often share them.
    recent: [(String, i64); 4],
    deltas: FastMap<DeltaKey, (i64, UnitSeconds)>,
    stats: IngestStats,
    rejections: Vec<LineError>,
    max_wall_s: i64,
    /// What this ingest owes the usage log, written at commit: past [`LOG_KEPT`] entries it is
    /// dropped, and the log cleared at commit instead (its readers then read afresh, as they
    /// would after the pruning), so a large import writes nothing it would delete at once.
    usage_log: Option<Vec<[i64; 9]>>,
    /// The same for the job log: (cluster, account, partition, start, end, sign).
    job_log: Option<Vec<[i64; 6]>>,
}

/// Add an entry to an ingest's held log, or drop the log once it is too long for its readers.
fn hold<const N: usize>(log: &mut Option<Vec<[i64; N]>>, entry: [i64; N]) {
    if let Some(v) = log {
        if v.len() as i64 >= LOG_KEPT {
            *log = None;
        } else {
            v.push(entry);
        }
    }
}

impl<'s> Ingest<'s> {
    fn intern(&mut self, name: &str) -> Result<i64, StoreError> {
        if let Some(&id) = self.names.get(name).or_else(|| self.new_names.get(name)) {
            return Ok(id);
        }
        let id: Option<i64> =
            self.statements.find_name.query_row([name], |r| r.get(0)).optional().map_err(sq(&self.path))?;
        let id = match id {
            Some(id) => {
                self.names.insert(name.to_string(), id);
                id
            }
            None => {
                self.statements.add_name.execute([name]).map_err(sq(&self.path))?;
                let id = self.open.conn.last_insert_rowid();
                self.new_names.insert(name.to_string(), id);
                id
            }
        };
        Ok(id)
    }

    /// [`Ingest::intern`] with a one-entry memory per field.
    fn intern_field(&mut self, field: usize, name: &str) -> Result<i64, StoreError> {
        if self.recent[field].0 == name && self.recent[field].1 != 0 {
            return Ok(self.recent[field].1);
        }
        let id = self.intern(name)?;
        self.recent[field].0.clear();
        self.recent[field].0.push_str(name);
        self.recent[field].1 = id;
        Ok(id)
    }

    fn book(&mut self, job: &JobRecord, cluster: i64, account: i64, partition: i64, sign: i64) -> Result<(), StoreError> {
        let deltas = &mut self.deltas;
        for_each_daily_share(job, &self.tz, |day, us| {
            let e = deltas.entry((day, cluster, account, partition)).or_default();
            e.0 += sign;
            if sign > 0 {
                e.1.add(&us);
            } else {
                e.1.sub(&us);
            }
        });
        if self.deltas.len() >= MAX_HELD_DELTAS {
            self.flush_deltas()?;
        }
        Ok(())
    }

    /// Add the held daily deltas to `usage_daily` (in key order, which keeps the B-tree writes
    /// local), drop the rows they empty, and log each change (`usage_log`).
    fn flush_deltas(&mut self) -> Result<(), StoreError> {
        let mut keys: Vec<_> = self.deltas.drain().filter(|(_, (n, us))| *n != 0 || !us.is_zero()).collect();
        keys.sort_unstable_by_key(|(k, _)| *k);
        let c = self.centre_id;
        for ((day, cl, acc, part), (n, us)) in keys {
            let change = params![c, day, cl, acc, part, n, us.cpu, us.gpu, us.billing, us.node];
            self.statements.add_daily.execute(change).map_err(sq(&self.path))?;
            hold(&mut self.usage_log, [day as i64, cl, acc, part, n, us.cpu, us.gpu, us.billing, us.node]);
            // Only a job taken away can leave a day with nothing on it.
            if n < 0 {
                self.statements.drop_empty_daily.execute(params![c, day, cl, acc, part]).map_err(sq(&self.path))?;
            }
        }
        Ok(())
    }

    /// Count a rejected line (the first [`KEPT_REJECTIONS`] are kept).
    pub fn reject(&mut self, e: LineError) {
        self.stats.rejected += 1;
        if self.rejections.len() < KEPT_REJECTIONS {
            self.rejections.push(e);
        }
    }

    /// Count a job step or a never-started job.
    pub fn skip(&mut self, step: bool) {
        if step {
            self.stats.steps += 1;
        } else {
            self.stats.not_started += 1;
        }
    }

    /// Note a record from a cluster the centre does not list (it is still charged).
    pub(crate) fn unknown_cluster(&mut self, cluster: &str) {
        *self.stats.unknown_clusters.entry(cluster.to_string()).or_default() += 1;
    }

    /// Store a job record, replacing an earlier record of the same run.
    pub fn upsert(&mut self, job: &JobRecord) -> Result<(), StoreError> {
        self.stats.records += 1;
        let cluster = self.intern_field(0, &job.cluster)?;
        let account = self.intern_field(1, &job.account)?;
        let partition = self.intern_field(2, &job.partition)?;
        let user = self.intern_field(3, &job.user)?;
        let raw = i64::try_from(job.job_id_raw).unwrap_or(i64::MAX);
        let units = [job.units.cpus as i64, job.units.gpus as i64, job.units.billing as i64, job.units.nodes as i64];
        let centre = self.centre_id;
        let row = params![
            centre, cluster, raw, job.start_s, account, partition, user, job.end_s, job.elapsed_s,
            units[0], units[1], units[2], units[3], job.provisional as i64, job.time_limit_s
        ];
        // Most records are new: one insert that stops at the key if the run is already there
        // (then, and only then, the stored record is read and compared).
        let inserted = self.statements.insert_new.execute(row).map_err(sq(&self.path))?;
        self.max_wall_s = self.max_wall_s.max(job.end_s - job.start_s);
        if inserted == 1 {
            self.stats.inserted += 1;
            hold(&mut self.job_log, [cluster, account, partition, job.start_s, job.end_s, 1]);
            return self.book(job, cluster, account, partition, 1);
        }
        let old = self
            .statements
            .select_old
            .query_row(params![self.centre_id, cluster, raw, job.start_s], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    [r.get::<_, i64>(5)?, r.get(6)?, r.get(7)?, r.get(8)?],
                    r.get::<_, i64>(9)?,
                    r.get::<_, Option<i64>>(10)?,
                ))
            })
            .map_err(sq(&self.path))?;
        let (oacc, opart, ouser, oend, oelapsed, ounits, oprov, olimit) = old;
        // Every stored field counts, the time limit too (`scontrol update TimeLimit` on a
        // running job): a record seen again unchanged is "unchanged", anything else replaces.
        let now = (account, partition, user, job.end_s, job.elapsed_s, units, job.provisional as i64, job.time_limit_s);
        if (oacc, opart, ouser, oend, oelapsed, ounits, oprov, olimit) == now {
            self.stats.unchanged += 1;
            return Ok(());
        }
        // A finished run never becomes running again: a stale provisional record (an old
        // dump re-imported, an overlapping window seen late) must not undo the final one.
        if oprov == 0 && job.provisional {
            self.stats.unchanged += 1;
            return Ok(());
        }
        let previous = JobRecord {
            end_s: oend,
            elapsed_s: oelapsed,
            units: Units { cpus: ounits[0] as u64, gpus: ounits[1] as u64, billing: ounits[2] as u64, nodes: ounits[3] as u64 },
            time_limit_s: olimit,
            ..job.clone()
        };
        self.book(&previous, cluster, oacc, opart, -1)?;
        if (oacc, opart, oend) != (account, partition, job.end_s) {
            hold(&mut self.job_log, [cluster, oacc, opart, job.start_s, oend, -1]);
            hold(&mut self.job_log, [cluster, account, partition, job.start_s, job.end_s, 1]);
        }
        self.stats.replaced += 1;
        self.book(job, cluster, account, partition, 1)?;
        self.statements.replace.execute(row).map_err(sq(&self.path))?;
        Ok(())
    }

    /// Statistics so far.
    pub fn stats(&self) -> &IngestStats {
        &self.stats
    }

    /// Write the daily deltas and the bookkeeping, and commit everything at once.
    #[track_caller]
    pub fn commit(mut self, pull: &PullRecord, now: i64) -> Result<IngestStats, StoreError> {
        let site = std::panic::Location::caller();
        let path = self.path.clone();
        self.flush_deltas()?;
        let conn = self.open.conn;
        conn.execute(
            "INSERT INTO centre_stats (centre, max_wall_s) VALUES (?1, ?2)
             ON CONFLICT (centre) DO UPDATE SET max_wall_s = MAX(max_wall_s, excluded.max_wall_s)",
            params![self.centre_id, self.max_wall_s],
        )
        .map_err(sq(&path))?;
        let c = self.centre_id;
        match self.usage_log.take() {
            Some(held) => {
                for e in held {
                    self.statements.log_change.execute(params![c, e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7], e[8]]).map_err(sq(&path))?;
                }
                prune_log(conn, Log::Usage, LOG_KEPT).map_err(sq(&path))?;
            }
            None => clear_log(conn, Log::Usage).map_err(sq(&path))?,
        }
        match self.job_log.take() {
            Some(held) => {
                for e in held {
                    self.statements.log_job.execute(params![c, e[0], e[1], e[2], e[3], e[4], e[5]]).map_err(sq(&path))?;
                }
                prune_log(conn, Log::Jobs, LOG_KEPT).map_err(sq(&path))?;
            }
            None => clear_log(conn, Log::Jobs).map_err(sq(&path))?,
        }
        let s = &self.stats;
        let counts = PullCounts { records: s.records, inserted: s.inserted, replaced: s.replaced, unchanged: s.unchanged, rejected: s.rejected };
        super::pulls::record_ingest(conn, &path, pull, counts, &self.rejections, now)?;
        super::crashpoint::commit(site, || conn.execute_batch("COMMIT")).map_err(sq(&path))?;
        self.names.extend(self.new_names.drain());
        Ok(std::mem::take(&mut self.stats))
    }

    /// Rejected lines kept so far.
    pub fn rejections(&self) -> &[LineError] {
        &self.rejections
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64: a few lines of deterministic randomness for the test.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (z ^ (z >> 31)) % n
        }
        fn chance(&mut self, per_mille: u64) -> bool {
            self.below(1000) < per_mille
        }
    }

    fn job(cluster: &str, id: u64, account: &str, start: i64, end: i64) -> JobRecord {
        JobRecord {
            cluster: cluster.into(),
            job_id_raw: id,
            job_id: id.to_string(),
            account: account.into(),
            partition: ["p1", "p2"][(id % 2) as usize].into(),
            user: "u".into(),
            start_s: start,
            end_s: end,
            elapsed_s: end - start,
            units: Units { cpus: 1, gpus: 0, billing: 1, nodes: 1 },
            provisional: false,
            time_limit_s: None,
        }
    }

    /// The usage log: the rows read at a position plus the changes logged after it are the
    /// rows of `usage_daily` (jobs replaced, moved and taken away included); once changes after a
    /// position are pruned, reading from it says so instead of handing back a part.
    #[test]
    fn rows_at_a_position_plus_the_logged_changes_are_the_daily_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let pull = PullRecord { centre: "c".into(), source: "t".into(), started_at: 0, window: None, watermark: None, deep_scan: false, file: None };
        let mut rng = Rng(3);
        let snapshot = |store: &mut Store| {
            let mut rows = std::collections::BTreeMap::new();
            let seq = store
                .for_each_daily_usage_since("c", 0, |r| {
                    rows.insert((r.day, r.cluster, r.account, r.partition), (r.jobs, r.usage));
                })
                .unwrap();
            (seq, rows)
        };
        let (mut seq, mut rows) = snapshot(&mut store);
        assert_eq!((seq, rows.len()), (0, 0));
        for round in 0..6 {
            let mut ingest = store.begin_ingest("c", &TimeZone::UTC).unwrap();
            for _ in 0..300 {
                let id = rng.below(400);
                let start = id as i64 * 3600;
                // Same run seen again: longer, or on another account.
                let j = job(["a", "b"][rng.below(2) as usize], id, &format!("acc{}", rng.below(3)), start, start + 1 + rng.below(300_000) as i64);
                ingest.upsert(&j).unwrap();
            }
            ingest.commit(&pull, 0).unwrap();
            let mut changes = Vec::new();
            seq = store.usage_changes("c", seq, |r| changes.push(r)).unwrap().expect("nothing pruned yet");
            for r in changes {
                let k = (r.day, r.cluster, r.account, r.partition);
                let e = rows.entry(k).or_insert((0, UnitSeconds::default()));
                e.0 += r.jobs;
                e.1.add(&r.usage);
                if e.0 == 0 && e.1.is_zero() {
                    rows.remove(&k);
                }
            }
            let (now, fresh) = snapshot(&mut store);
            assert_eq!(now, seq, "round {round}");
            assert_eq!(rows, fresh, "round {round}: rows read at a position plus the changes since");
        }
        assert_eq!(store.usage_changes("c", seq, |_| panic!("no change after the head")).unwrap(), Some(seq));
        prune_log(&store.conn, Log::Usage, 10).unwrap();
        assert_eq!(store.usage_changes("c", seq - 10, |_| {}).unwrap(), Some(seq), "the last 10 are kept");
        assert_eq!(store.usage_changes("c", seq - 11, |_| {}).unwrap(), None, "older ones are gone, and that is said");
        assert_eq!(store.usage_changes("c", 0, |_| {}).unwrap(), None);

        // An ingest past what the logs keep writes none of it and clears both logs: a reader
        // that was up to date learns that it must read afresh, and reads on from there.
        let (before, _) = snapshot(&mut store);
        let (_, jobs_before) = store.job_counts_by_ids("c", 0, 1).unwrap();
        let mut ingest = store.begin_ingest("c", &TimeZone::UTC).unwrap();
        for i in 0..=LOG_KEPT {
            ingest.upsert(&job("a", 1_000_000 + i as u64, "big", 2_000_000_000 + i * 86_400, 2_000_000_001 + i * 86_400)).unwrap();
        }
        ingest.commit(&pull, 0).unwrap();
        assert_eq!(store.usage_changes("c", before, |_| {}).unwrap(), None);
        assert_eq!(store.follow_job_counts("c", jobs_before, (0, 0), |_| {}, |_| {}).unwrap(), None);
        let logged: i64 = store.conn.query_row("SELECT (SELECT COUNT(*) FROM usage_log) + (SELECT COUNT(*) FROM job_log)", [], |r| r.get(0)).unwrap();
        assert_eq!(logged, 0, "nothing of the large ingest is left in the logs");
        let (now, fresh) = snapshot(&mut store);
        assert_eq!(fresh.len() as i64, rows.len() as i64 + LOG_KEPT + 1);
        assert_eq!(store.usage_changes("c", now, |_| panic!("nothing since")).unwrap(), Some(now));
        let (_, jobs_now) = store.job_counts_by_ids("c", 0, 1).unwrap();
        assert_eq!(store.follow_job_counts("c", jobs_now, (0, 0), |_| panic!("nothing since"), |_| {}).unwrap(), Some(jobs_now));
    }

    #[test]
    fn job_counts_equal_the_plain_grouped_count() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let mut rng = Rng(5);
        let mut ingest = store.begin_ingest("c", &TimeZone::UTC).unwrap();
        for id in 0..3000u64 {
            // Ids roughly follow time, with long waits and long jobs out of order.
            let start = id as i64 * 600 + rng.below(200_000) as i64;
            let end = start + if rng.chance(100) { 0 } else { rng.below(400_000) as i64 };
            let cluster = ["a", "b", "c"][rng.below(3) as usize];
            ingest.upsert(&job(cluster, id, &format!("acc{}", rng.below(7)), start, end)).unwrap();
        }
        let pull = PullRecord { centre: "c".into(), source: "t".into(), started_at: 0, window: None, watermark: None, deep_scan: false, file: None };
        ingest.commit(&pull, 0).unwrap();
        let cid = store.name_id("c").unwrap().unwrap();
        let names = store.names_by_id().unwrap();
        for (from, to) in [(0, 100), (300_000, 900_000), (1_000_000, 1_000_001), (1_500_000, 3_000_000), (0, i64::MAX / 4)] {
            let mut stmt = store
                .conn
                .prepare(
                    "SELECT cluster, account, partition, COUNT(*) FROM jobs
                     WHERE centre = ?1 AND end >= ?2 AND start < ?3 AND (end > ?2 OR end = start)
                     GROUP BY cluster, account, partition",
                )
                .unwrap();
            let want: HashMap<(String, String, String), i64> = stmt
                .query_map(params![cid, from, to], |r| {
                    let n = |i| names[&r.get::<_, i64>(i).unwrap()].clone();
                    Ok(((n(0), n(1), n(2)), r.get(3)?))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            drop(stmt);
            let (got, _) = store.job_counts_by_ids("c", from, to).unwrap();
            let got: HashMap<(String, String, String), i64> =
                got.into_iter().map(|((c, a, p), n)| ((names[&c].clone(), names[&a].clone(), names[&p].clone()), n)).collect();
            assert_eq!(got, want, "window [{from}, {to})");
        }
    }

    #[test]
    fn account_users_equal_a_full_scan() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let mut rng = Rng(11);
        let mut all = Vec::new();
        let mut ingest = store.begin_ingest("c", &TimeZone::UTC).unwrap();
        for id in 0..2000u64 {
            let start = id as i64 * 600 + rng.below(200_000) as i64;
            let end = start + if rng.chance(100) { 0 } else { rng.below(400_000) as i64 };
            let mut j = job(["a", "b", "c"][rng.below(3) as usize], id, &format!("acc{}", rng.below(5)), start, end);
            j.user = format!("user{}", rng.below(9));
            ingest.upsert(&j).unwrap();
            all.push(j);
        }
        let pull = PullRecord { centre: "c".into(), source: "t".into(), started_at: 0, window: None, watermark: None, deep_scan: false, file: None };
        ingest.commit(&pull, 0).unwrap();
        for (from, to) in [(0, 100), (300_000, 900_000), (1_000_000, 1_000_001), (0, i64::MAX / 4)] {
            let mut want: std::collections::BTreeMap<(String, String), (i64, i64)> = Default::default();
            for j in all.iter().filter(|j| j.start_s < to && j.end_s >= from) {
                let e = want.entry((j.account.clone(), j.user.clone())).or_insert((i64::MIN, i64::MIN));
                *e = (e.0.max(j.start_s), e.1.max(j.end_s));
            }
            let got: Vec<_> = store.account_users("c", from, to).unwrap().into_iter().map(|u| ((u.account, u.user), (u.last_start_s, u.last_end_s))).collect();
            assert_eq!(got, want.into_iter().collect::<Vec<_>>(), "window [{from}, {to})");
        }
        assert_eq!(store.account_users("unknown", 0, 1).unwrap(), vec![]);
    }

    #[test]
    fn committed_usage_sums_the_current_running_jobs_with_a_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let running = |cluster: &str, id: u64, account: &str, start: i64, seen: i64, limit: Option<i64>| JobRecord {
            provisional: true,
            time_limit_s: limit,
            ..job(cluster, id, account, start, seen)
        };
        let a = running("a", 1, "x", 1000, 10_000, Some(36_000));
        let no_limit = running("a", 3, "x", 5000, 10_000, None);
        let finished = JobRecord { time_limit_s: Some(36_000), ..job("a", 5, "x", 1000, 9000) };
        let mut d = running("b", 2, "y", 9000, 10_000, Some(7200));
        d.units = Units { cpus: 4, gpus: 1, billing: 6, nodes: 1 };
        // Job 7 ran, was requeued and runs again: its first run's provisional record stays in
        // the ledger (its charge is real), but only the second run is still running.
        let requeued = running("a", 7, "x", 2000, 3000, Some(36_000));
        let again = running("a", 7, "x", 4000, 10_000, Some(36_000));
        let pull = |at| PullRecord { centre: "c".into(), source: "t".into(), started_at: at, window: None, watermark: None, deep_scan: false, file: None };
        let first = [a.clone(), no_limit, finished, d.clone(), requeued, again];
        let mut ingest = store.begin_ingest("c", &TimeZone::UTC).unwrap();
        for j in &first {
            ingest.upsert(j).unwrap();
        }
        ingest.commit(&pull(10_000), 10_000).unwrap();
        let mut other = store.begin_ingest("other", &TimeZone::UTC).unwrap();
        other.upsert(&running("a", 1, "x", 1000, 10_000, Some(36_000))).unwrap();
        other.commit(&PullRecord { centre: "other".into(), ..pull(10_000) }, 10_000).unwrap();

        let key = |c: &str, a: &str, p: &str| (c.to_string(), a.to_string(), p.to_string());
        let us = |units: Units, s: i64| UnitSeconds { cpu: units.cpus as i64 * s, gpu: units.gpus as i64 * s, billing: units.billing as i64 * s, node: units.nodes as i64 * s };
        let one = Units { cpus: 1, gpus: 0, billing: 1, nodes: 1 };
        let got = store.committed_usage("c", 10_000).unwrap();
        let want = HashMap::from([
            // Job 1: (1000 + 36000) − 10000; job 7's second run: (4000 + 36000) − 10000.
            (key("a", "x", "p2"), us(one, 27_000 + 30_000)),
            // Job 2: (9000 + 7200) − 10000, 4 CPUs, 1 GPU, 6 billing.
            (key("b", "y", "p1"), us(d.units, 6200)),
        ]);
        assert_eq!(got, want);

        // The same records again (a re-imported file): unchanged. Then job 1 ends and job 2's
        // limit is raised while it runs (`scontrol update TimeLimit`): both replace.
        let mut ingest = store.begin_ingest("c", &TimeZone::UTC).unwrap();
        for j in &first {
            ingest.upsert(j).unwrap();
        }
        assert_eq!((ingest.stats().unchanged, ingest.stats().replaced), (first.len() as u64, 0));
        ingest.upsert(&JobRecord { time_limit_s: Some(36_000), ..job("a", 1, "x", 1000, 11_000) }).unwrap();
        ingest.upsert(&JobRecord { time_limit_s: Some(14_400), ..d.clone() }).unwrap();
        assert_eq!(ingest.stats().replaced, 2);
        ingest.commit(&pull(12_000), 12_000).unwrap();
        let got = store.committed_usage("c", 12_000).unwrap();
        assert_eq!(got, HashMap::from([(key("a", "x", "p2"), us(one, 30_000)), (key("b", "y", "p1"), us(d.units, 13_400))]));
        // Once job 2's limit is reached it has ended, whatever the ledger last saw of it.
        let got = store.committed_usage("c", 9000 + 14_400).unwrap();
        assert_eq!(got, HashMap::from([(key("a", "x", "p2"), us(one, 30_000))]));
        assert!(store.committed_usage("c", 4000 + 36_000).unwrap().is_empty());
        assert!(store.committed_usage("unknown", 10_000).unwrap().is_empty());

        // Records read back carry their limit.
        let back = store.jobs_overlapping("c", 0, 20_000).unwrap();
        let limit_of = |id: u64, start: i64| back.iter().find(|j| j.job_id_raw == id && j.start_s == start).unwrap().time_limit_s;
        assert_eq!((limit_of(1, 1000), limit_of(2, 9000), limit_of(3, 5000)), (Some(36_000), Some(14_400), None));
        let in_tx = store.transaction(|tx| tx.jobs_overlapping("c", 0, 20_000)).unwrap();
        assert_eq!(in_tx, back);
    }
}
