//! `allocwatch-bench`: the benchmark suite's own tool (driven by `benches/run.sh`).
//!
//! - `gen`: deterministic synthetic accounting fitted to the CEA Curie trace (sacct or SWF),
//!   plus a matching configuration and allocation file;
//! - `parse`: read a dump through the sacct/SWF parsers without a store (the parse bench);
//! - `reconcile`: full reconciliations over an existing ledger, then incremental cycles (import
//!   a small dump, reconcile) — timed in-process, since the targets are in milliseconds;
//! - `replay`: replay a whole SWF trace day by day (daily pulls, one reconciliation per day).
//!
//! A separate binary rather than an `allocwatch bench` subcommand: the daemon's command line
//! stays about operating allocations, and nothing here runs in a deployment.

mod workload;

use allocwatch::config::{Config, FileKind};
use allocwatch::domain::grants::{Allocation, Grants};
use allocwatch::domain::job::JobRecord;
use allocwatch::domain::reconciliation::Reconciliation;
use allocwatch::domain::time::{day_date, day_number, day_start, local_day};
use allocwatch::pull::files::import_file;
use allocwatch::reconcile::{reconcile_all, Reconciler};
use allocwatch::sources::{read_file, read_file_with, FileFormat, Parsed, ParsedRef, SourceContext};
use allocwatch::store::{PullRecord, Store};
use workload::{generate, GenFormat, GenOptions, Rng, LAYOUT};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(name = "allocwatch-bench", about = "allocwatch's benchmark tool (see benches/README.md)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write synthetic accounting (fitted to the CEA Curie trace) and, optionally, a matching
    /// configuration and allocation file.
    Gen {
        /// Records (lines) to write.
        #[arg(long)]
        jobs: u64,
        /// Seed: the same seed writes the same bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output format.
        #[arg(long, value_enum, default_value = "sacct")]
        format: OutFormat,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Accounts (projects).
        #[arg(long, default_value_t = 300)]
        accounts: u64,
        /// Records per day on average (default: Curie's rate on each of 3 clusters).
        #[arg(long, default_value_t = 3 * 1232)]
        jobs_per_day: u64,
        /// Also write a configuration for centre `bench` (store, billing rules, allocations).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Allocation file to write (one allocation per account, resource and calendar year
        /// with usage, granted 0.6–1.6 × that usage); needs --config.
        #[arg(long, requires = "config")]
        allocations: Option<PathBuf>,
        /// At most this many allocations (the most used).
        #[arg(long, default_value_t = 5000)]
        max_allocations: usize,
    },
    /// Parse a dump without a store; prints counts.
    Parse {
        /// sacct (`--fields` as for `allocwatch import`) or swf.
        #[arg(long, value_enum, default_value = "sacct")]
        format: FileKind,
        /// Columns of a header-less sacct dump, or `xdmod`.
        #[arg(long)]
        fields: Option<String>,
        /// Files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Time full reconciliations of every allocation, then incremental cycles.
    Reconcile {
        /// Configuration (as written by `gen --config`).
        #[arg(long)]
        config: PathBuf,
        /// Store (overrides the configuration's).
        #[arg(long)]
        store: Option<PathBuf>,
        /// Instant (epoch seconds).
        #[arg(long)]
        at: i64,
        /// Full reconciliations to time.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Dumps of new jobs (`--fields xdmod`): each is imported, then everything reconciled.
        incremental: Vec<PathBuf>,
    },
    /// Replay an SWF trace day by day: a pull of the jobs that ended (and the ones running,
    /// provisional) and a reconciliation per simulated day.
    Replay {
        /// The trace.
        trace: PathBuf,
        /// Scratch directory for the store.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OutFormat {
    Sacct,
    Swf,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Gen { jobs, seed, format, out, accounts, jobs_per_day, config, allocations, max_allocations } => {
            let mut opts = GenOptions::new(
                jobs,
                seed,
                match format {
                    OutFormat::Sacct => GenFormat::Sacct,
                    OutFormat::Swf => GenFormat::Swf,
                },
            );
            opts.accounts = accounts;
            opts.jobs_per_day = jobs_per_day.max(1);
            let started = Instant::now();
            let summary = match &out {
                Some(p) => {
                    let f = std::fs::File::create(p).with_context(|| format!("create {}", p.display()))?;
                    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                    let s = generate(&opts, &mut w)?;
                    w.flush()?;
                    s
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
                    let s = generate(&opts, &mut w)?;
                    w.flush()?;
                    s
                }
            };
            if let Some(cfg) = &config {
                write_bench_config(cfg, allocations.as_deref(), &summary, seed, max_allocations)?;
            }
            eprintln!(
                "generated {} records ({} running, {} not started, {} array tasks, {} requeued runs) over days {}..{}, dump at {} ({}), in {:.2} s",
                summary.records,
                summary.running,
                summary.not_started,
                summary.array_tasks,
                summary.requeued,
                day_date(summary.days.0),
                day_date(summary.days.1),
                summary.dump_at,
                jiff::Timestamp::from_second(summary.dump_at)?,
                started.elapsed().as_secs_f64()
            );
            // The dump instant on stdout's last line when writing to a file, for scripts.
            if out.is_some() {
                println!("dump_at={}", summary.dump_at);
            }
            Ok(())
        }
        Command::Parse { format, fields, files } => {
            let format = match format {
                FileKind::Sacct => FileFormat::Sacct { fields },
                FileKind::Swf => FileFormat::Swf,
            };
            let ctx = SourceContext {
                tz: jiff::tz::TimeZone::get("Europe/Paris")?,
                default_cluster: "irene".into(),
                observed_at: jiff::Timestamp::now().as_second(),
            };
            let started = Instant::now();
            let (mut jobs, mut steps, mut not_started, mut rejected, mut unit_seconds) = (0u64, 0u64, 0u64, 0u64, 0i64);
            for f in &files {
                read_file_with(f, &format, &ctx, |r| match r {
                    Ok(ParsedRef::Job(j)) => {
                        jobs += 1;
                        // Use the record, so the parse cannot be optimised away.
                        unit_seconds = unit_seconds.wrapping_add(j.units.cpus as i64 * j.elapsed_s);
                    }
                    Ok(ParsedRef::Step) => steps += 1,
                    Ok(ParsedRef::NotStarted) => not_started += 1,
                    Err(e) => {
                        if rejected < 10 {
                            eprintln!("rejected: {e}");
                        }
                        rejected += 1;
                    }
                })?;
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{jobs} jobs, {not_started} never started, {steps} steps, {rejected} rejected; {:.0} CPU-hours; {secs:.3} s ({:.0} records/s)",
                unit_seconds as f64 / 3600.0,
                (jobs + not_started + steps) as f64 / secs
            );
            if rejected > 0 {
                bail!("{rejected} lines rejected");
            }
            Ok(())
        }
        Command::Reconcile { config, store, at, runs, incremental } => {
            let mut config = Config::load(&config)?;
            if let Some(s) = store {
                config.store_path = s;
            }
            let grants = Grants::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut store = Store::open(&config.store_path)?;
            let jobs = store.job_count()?;
            let mut times = Vec::new();
            let mut last = None;
            for _ in 0..runs.max(1) {
                let t = Instant::now();
                let rec = reconcile_all(&config, &grants, &mut store, at)?;
                times.push(t.elapsed().as_secs_f64());
                last = Some(rec);
            }
            let rec = last.expect("at least one run");
            println!(
                "{{\"bench\":\"reconcile_full\",\"jobs\":{jobs},\"allocations\":{},\"seconds\":{}{}}}",
                rec.allocations.len(),
                json_list(&times),
                status_counts(&rec)
            );
            let centre = config.centres.values().next().context("the configuration has no centre")?.clone();
            // The daemon's reconciler: it keeps what it read (one full read here, untimed) and
            // then follows the ingests' usage log.
            let mut reconciler = Reconciler::default();
            reconciler.reconcile(&config, &grants, &mut store, at)?;
            for f in &incremental {
                let t = Instant::now();
                let imp = import_file(&mut store, &centre, f, FileKind::Sacct, Some("xdmod"), at)?;
                let import_s = t.elapsed().as_secs_f64();
                let reads = reconciler.fresh_reads();
                let t = Instant::now();
                let rec = reconciler.reconcile(&config, &grants, &mut store, at)?;
                let reconcile_s = t.elapsed().as_secs_f64();
                // Untimed: the same figures as a reconciliation read afresh, and no fresh read.
                let full = reconcile_all(&config, &grants, &mut store, at)?;
                if format!("{:?}", rec.allocations) != format!("{:?}", full.allocations) || reconciler.fresh_reads() != reads {
                    bail!("the incremental reconciliation after {} differs from a full one (or read the ledger afresh)", f.display());
                }
                println!(
                    "{{\"bench\":\"reconcile_incremental\",\"new_records\":{},\"inserted\":{},\"import_seconds\":{import_s},\"reconcile_seconds\":{reconcile_s},\"allocations\":{}}}",
                    imp.stats.records,
                    imp.stats.inserted,
                    rec.allocations.len()
                );
            }
            Ok(())
        }
        Command::Replay { trace, dir } => replay(&trace, &dir),
    }
}

fn json_list(v: &[f64]) -> String {
    format!("[{}]", v.iter().map(|x| format!("{x:.6}")).collect::<Vec<_>>().join(","))
}

fn status_counts(rec: &Reconciliation) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for a in &rec.allocations {
        *counts.entry(a.status.as_str()).or_default() += 1;
    }
    format!(",\"statuses\":{}", serde_json::to_string(&counts).unwrap_or_default())
}

/// The resource a generated partition is charged to.
fn resource_of(p: &workload::PartitionShape) -> String {
    format!("{}-{}", p.cluster, p.partition)
}

/// Write a configuration for centre `bench` (and its allocation file) matching the generator's
/// layout and accounts.
fn write_bench_config(cfg: &Path, allocations: Option<&Path>, summary: &workload::GenSummary, seed: u64, max: usize) -> Result<()> {
    let mut toml = String::from(
        "# Written by `allocwatch-bench gen`: the synthetic centre of the benchmarks.\n[store]\npath = \"bench.sqlite\"\n",
    );
    if let Some(a) = allocations {
        toml += &format!("\n[allocations]\nfiles = [{:?}]\n", a.display().to_string());
    }
    toml += "\n[[centre]]\nid = \"bench\"\ntimezone = \"Europe/Paris\"\nclusters = [\"irene\", \"jeanzay\", \"adastra\"]\n";
    for p in LAYOUT.iter() {
        let unit = if p.gpus_per_node > 0 { "gpu" } else { "cpu" };
        toml += &format!(
            "[[centre.billing]]\nresource = {:?}\ncluster = {:?}\npartitions = [{:?}]\nunit = \"{unit}\"\n",
            resource_of(p),
            p.cluster,
            p.partition
        );
    }
    std::fs::write(cfg, toml).with_context(|| format!("write {}", cfg.display()))?;
    let Some(path) = allocations else { return Ok(()) };
    // The most used (account, resource, year) triples get an allocation.
    let mut used: Vec<(&(usize, usize, i16), &u64)> = summary.usage.iter().collect();
    used.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    used.truncate(max);
    used.sort_by_key(|x| (x.0 .2, x.0 .0, x.0 .1));
    let mut rng = Rng::new(seed, 9);
    let mut out = String::from("project,centre,resource,period_start,period_end,granted_hours,accounts,committee\n");
    // Grants are sized for a whole year of the usage seen (the data may cover part of it).
    let covered = |year: i16| -> f64 {
        let first = day_number(jiff::civil::Date::new(year, 1, 1).unwrap_or_default()).max(summary.days.0);
        let last = (day_number(jiff::civil::Date::new(year, 12, 31).unwrap_or_default())).min(summary.days.1);
        ((last - first + 1).max(1) as f64 / 365.0).min(1.0)
    };
    for ((acc, part, year), unit_seconds) in used {
        let hours = *unit_seconds as f64 / 3600.0 / covered(*year);
        let factor = 60 + rng.below(101); // 0.6–1.6 × actual: under, on and over pace
        out += &format!(
            "A{:04}{:02}{:04},bench,{},{year}-01-01,{}-01-01,{:.0},{},CT{}\n",
            year % 10_000,
            part,
            acc,
            resource_of(&LAYOUT[*part]),
            year + 1,
            (hours * factor as f64 / 100.0).max(1.0),
            summary.accounts[*acc],
            1 + acc % 10
        );
    }
    std::fs::write(path, out).with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// Alert evaluation of the replay, after every simulated day's reconciliation: the default
/// rules and life cycle, in memory (nothing is stored or sent). Tallies statuses and
/// notifications.
fn evaluate_alerts(
    alerting: &allocwatch::alerts::Alerting,
    book: &mut allocwatch::alerts::AlertBook,
    grants: &Grants,
    rec: &Reconciliation,
    statuses: &mut BTreeMap<&'static str, u64>,
) -> u64 {
    for a in &rec.allocations {
        *statuses.entry(a.status.as_str()).or_default() += 1;
    }
    book.observe(alerting, grants, rec).iter().filter(|(t, _)| t.notifies()).count() as u64
}

/// Replay a trace: day after day, pull what sacct would show at midnight (jobs that ended that
/// day, final; jobs still running, provisional up to midnight) and reconcile every allocation.
fn replay(trace: &Path, dir: &Path) -> Result<()> {
    const CONFIG: &str = r#"
[store]
path = "replay.sqlite"
[[centre]]
id = "tgcc"
timezone = "Europe/Paris"
clusters = ["curie"]
[[centre.billing]]
resource = "cpu-thin"
partitions = ["standard", "parallel", "test", "batch", "test,batch", "BCS", "TestIB", "Unitaire"]
unit = "cpu"
[[centre.billing]]
resource = "cpu-large"
partitions = ["large", "xlarge"]
unit = "cpu"
[[centre.billing]]
resource = "gpu-hybrid"
partitions = ["hybrid"]
unit = "cpu"
"#;
    let started = Instant::now();
    std::fs::create_dir_all(dir)?;
    let cfg_path = dir.join("replay.toml");
    let store_path = dir.join("replay.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", store_path.display()));
    }
    let mut config = Config::parse(CONFIG, &cfg_path)?;
    config.store_path = store_path;
    let centre = config.centres["tgcc"].clone();
    let tz = centre.tz.clone();

    // The trace, in memory (312,826 jobs: ~40 MB), in order of end.
    let ctx = SourceContext { tz: tz.clone(), default_cluster: "curie".into(), observed_at: 0 };
    let mut jobs: Vec<JobRecord> = Vec::new();
    let mut not_started = 0u64;
    read_file(trace, &FileFormat::Swf, &ctx, |r| match r {
        Ok(Parsed::Job(j)) => jobs.push(j),
        Ok(_) => not_started += 1,
        Err(e) => eprintln!("rejected: {e}"),
    })?;
    if jobs.is_empty() {
        bail!("{}: no jobs", trace.display());
    }
    jobs.sort_by_key(|j| (j.end_s, j.start_s, j.job_id_raw));
    let read_s = started.elapsed().as_secs_f64();

    // One allocation per group and resource over the whole trace, granted 0.6–1.6 × what the
    // group actually used, so that statuses vary (and move) along the replay.
    let first_day = local_day(jobs.iter().map(|j| j.start_s).min().unwrap_or(0), &tz);
    let last_day = local_day(jobs.last().map(|j| j.end_s).unwrap_or(0), &tz);
    let mut used: BTreeMap<(String, String), f64> = BTreeMap::new();
    for j in &jobs {
        if let Some(rule) = centre.rule_for(&j.cluster, &j.partition) {
            *used.entry((j.account.clone(), rule.resource.clone())).or_default() += j.units.cpus as f64 * j.elapsed_s as f64 / 3600.0;
        }
    }
    let mut rng = Rng::new(2012, 9);
    let mut grants = Grants::default();
    for ((account, resource), hours) in used {
        grants.allocations.push(Allocation {
            project: format!("P{account}-{resource}"),
            centre: "tgcc".into(),
            resource,
            period_start: day_date(first_day),
            period_end: day_date(last_day + 1),
            granted_hours: (hours * (60 + rng.below(101)) as f64 / 100.0).max(1.0),
            accounts: vec![account],
            pi: String::new(),
            members: Vec::new(),
            committee: String::new(),
            profile: None,
            origin: "replay".into(),
        });
    }

    let mut store = Store::open(&config.store_path)?;
    let (mut import_s, mut reconcile_s) = (0.0, 0.0);
    let (mut next, mut records) = (0usize, 0u64);
    let mut statuses = BTreeMap::new();
    // The default alert rules (no channel: evaluation only).
    let raw: allocwatch::alerts::settings::RawAlerts = toml::from_str("")?;
    let alerting = allocwatch::alerts::Alerting::new(raw.validate(dir).map_err(|e| anyhow::anyhow!("{e}"))?, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut book = allocwatch::alerts::AlertBook::default();
    let mut notifications = 0u64;
    // Jobs that started but had not ended by a midnight: running then.
    let mut by_start: Vec<usize> = (0..jobs.len()).collect();
    by_start.sort_by_key(|&i| jobs[i].start_s);
    let mut started_upto = 0usize;
    let mut running: Vec<usize> = Vec::new();
    // As the daemon reconciles: one reconciler following the pulls' usage log.
    let mut reconciler = Reconciler::default();
    let mut verify_s = 0.0;
    for day in first_day..=last_day {
        let midnight = day_start(day + 1, &tz);
        let t = Instant::now();
        let mut ingest = store.begin_ingest("tgcc", &tz)?;
        while next < jobs.len() && jobs[next].end_s <= midnight {
            ingest.upsert(&jobs[next])?;
            next += 1;
        }
        while started_upto < by_start.len() && jobs[by_start[started_upto]].start_s < midnight {
            running.push(by_start[started_upto]);
            started_upto += 1;
        }
        running.retain(|&i| jobs[i].end_s > midnight);
        for &i in &running {
            let j = &jobs[i];
            let wall = j.end_s - j.start_s;
            let so_far = midnight - j.start_s;
            let provisional = JobRecord {
                end_s: midnight,
                elapsed_s: if wall > 0 { j.elapsed_s * so_far / wall } else { 0 },
                provisional: true,
                ..j.clone()
            };
            ingest.upsert(&provisional)?;
        }
        records += ingest.stats().records;
        let pull = PullRecord {
            centre: "tgcc".into(),
            source: "replay".into(),
            started_at: midnight,
            window: Some((day_start(day, &tz), midnight)),
            watermark: Some(midnight),
            deep_scan: false,
            file: None,
        };
        ingest.commit(&pull, midnight)?;
        import_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let rec = reconciler.reconcile(&config, &grants, &mut store, midnight)?;
        notifications += evaluate_alerts(&alerting, &mut book, &grants, &rec, &mut statuses);
        reconcile_s += t.elapsed().as_secs_f64();
        // Untimed: the daemon's kept reconciliation is the one read afresh, day after day.
        let t = Instant::now();
        let fresh = reconcile_all(&config, &grants, &mut store, midnight)?;
        if format!("{rec:?}") != format!("{fresh:?}") {
            bail!("day {day}: the kept reconciliation differs from one read afresh");
        }
        verify_s += t.elapsed().as_secs_f64();
    }
    let total = started.elapsed().as_secs_f64() - verify_s;
    let days = (last_day - first_day + 1) as u64;
    println!(
        "{{\"bench\":\"replay\",\"jobs\":{},\"not_started\":{not_started},\"days\":{days},\"allocations\":{},\"records_pulled\":{records},\"read_seconds\":{read_s:.3},\"import_seconds\":{import_s:.3},\"reconcile_seconds\":{reconcile_s:.3},\"total_seconds\":{total:.3},\"fresh_reads\":{},\"alert_notifications\":{notifications},\"alerts_firing_at_end\":{},\"allocation_days_by_status\":{}}}",
        jobs.len(),
        grants.allocations.len(),
        reconciler.fresh_reads(),
        book.firing(),
        serde_json::to_string(&statuses)?
    );
    Ok(())
}
