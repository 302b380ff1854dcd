//! `allocwatch` command line. Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad
//! configuration/input file (the message names the file, line and field).

use allocwatch::alerts::{store as alert_store, Alerting};
use allocwatch::allocations::Grants;
use allocwatch::cli_time::{parse_date, parse_instant};
use allocwatch::config::{Config, FileKind};
use allocwatch::engine::{self, ImportError, UsageBound, UsageGrouping};
use allocwatch::ledger::Store;
use allocwatch::report::{self, Format};
use allocwatch::sinks::outbox;
use allocwatch::sources::InputError;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "allocwatch", version, about = "Reconcile granted compute hours against Slurm accounting")]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "ALLOCWATCH_CONFIG", default_value = "/etc/allocwatch/allocwatch.toml")]
    config: PathBuf,
    /// Store file, overriding the configured one (e.g. a scratch store).
    #[arg(long, global = true)]
    store: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "human")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Pull configured sources, then reconcile every allocation and print the indicators.
    Check {
        /// Reconciliation instant (RFC 3339 or YYYY-MM-DD); default: the configured pin, else now.
        #[arg(long)]
        at: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Do not pull the configured sources first.
        #[arg(long)]
        no_pull: bool,
    },
    /// Import accounting files into the ledger (idempotent: re-importing changes nothing).
    Import {
        /// Centre the files come from.
        #[arg(long)]
        centre: String,
        /// File format.
        #[arg(long, value_enum)]
        format: FileKind,
        /// Columns of a header-less sacct dump (sacct --format list), or `xdmod`.
        #[arg(long)]
        fields: Option<String>,
        /// Files (`.gz` is decompressed).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Pull the live sources (sacct, slurmrestd) now, over their next window or an explicit one.
    Pull {
        /// Only this centre.
        #[arg(long)]
        centre: Option<String>,
        /// Only this source (its `name`, default its kind).
        #[arg(long)]
        source: Option<String>,
        /// Window start (RFC 3339, or YYYY-MM-DD at the centre's midnight); default: the
        /// watermark less the overlap.
        #[arg(long)]
        from: Option<String>,
        /// Window end (same forms); default: now.
        #[arg(long)]
        to: Option<String>,
    },
    /// Raw ledger usage, whatever the allocations say.
    Usage {
        /// Start, inclusive: a day (centre-local midnight) or an RFC 3339 instant.
        #[arg(long)]
        from: Option<String>,
        /// End, exclusive: a day (centre-local midnight) or an RFC 3339 instant.
        #[arg(long)]
        to: Option<String>,
        /// Only this centre.
        #[arg(long)]
        centre: Option<String>,
        /// Extra grouping: any of account, partition, user, day (centre, cluster, account and
        /// partition are always columns).
        #[arg(long, value_delimiter = ',')]
        group_by: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Alerts: list them with their delivery history, acknowledge, deliver the outbox.
    Alerts {
        #[command(subcommand)]
        command: AlertsCommand,
    },
    /// Evaluate the alert rules at every step over past data, sending nothing, and print which
    /// alerts would have fired, when and for whom, then how early exhausted allocations were warned.
    Replay {
        /// First instant (RFC 3339 or YYYY-MM-DD, UTC midnight for a date).
        #[arg(long)]
        from: String,
        /// End (exclusive).
        #[arg(long)]
        to: String,
        /// Step: `1d`, `12h`, `30m`.
        #[arg(long, default_value = "1d")]
        step: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Pull a past window of a centre's live source in chunks, with a progress bar; run it
    /// again after an interruption and it resumes where it stopped.
    Backfill {
        /// Centre.
        #[arg(long)]
        centre: String,
        /// Only this live source (its `name`); default: every live source of the centre.
        #[arg(long)]
        source: Option<String>,
        /// Window start (RFC 3339, or YYYY-MM-DD at the centre's midnight).
        #[arg(long)]
        from: String,
        /// Window end, exclusive (same forms).
        #[arg(long)]
        to: String,
        /// Chunk length: `1d`, `12h`, `30m`.
        #[arg(long, default_value = "1d")]
        chunk: String,
        /// Start again from the beginning even if this window was backfilled before.
        #[arg(long)]
        restart: bool,
    },
    /// Run as a daemon: pull each centre on its schedule, reconcile after each pull, serve
    /// HTTP; SIGHUP reloads the configuration, SIGTERM/SIGINT stop cleanly.
    Run,
    /// The indicator outbox (points waiting for InfluxDB).
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Periodic reports.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Quality indicators of a period (docs/quality-indicators.md): the same store and period
    /// give the same bytes.
    Quality {
        /// A year (2026), a quarter (2026-Q3) or a month (2026-09).
        #[arg(long)]
        period: String,
        /// Only this centre (and the committees of its allocations).
        #[arg(long)]
        centre: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "md")]
        format: allocwatch::quality::render::QualityFormat,
        /// List the allocations, alerts, notifications, pulls or usage behind one indicator.
        #[arg(long, value_name = "INDICATOR")]
        explain: Option<String>,
        /// Minimum lead, in days, for an exhausted allocation to count as warned ahead.
        #[arg(long, default_value_t = allocwatch::quality::DEFAULT_LEAD_DAYS)]
        lead_days: f64,
        /// Also queue the figures as `quality` points for InfluxDB (again: they overwrite).
        #[arg(long)]
        enqueue: bool,
    },
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// Points waiting, oldest, last attempt, last error.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Send every waiting point now (exit 1 if some remain).
    Flush,
}

#[derive(Subcommand)]
enum AlertsCommand {
    /// Alerts with their state and delivery history (firing only, unless --all).
    List {
        /// Include resolved alerts.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Acknowledge a firing alert: no more reminders (resolution is still told).
    Ack {
        /// Alert id (from `alerts list`).
        id: i64,
        /// Who acknowledges (recorded in the audit trail).
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Deliver queued notifications now.
    Deliver {
        /// Also those waiting for their retry time.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and the allocation and adjustment files it names.
    Check,
}

/// An error with the exit code it deserves.
struct Failure {
    code: u8,
    message: String,
}

fn usage_err(e: impl std::fmt::Display) -> Failure {
    Failure { code: 2, message: e.to_string() }
}

fn runtime_err(e: impl std::fmt::Display) -> Failure {
    Failure { code: 1, message: e.to_string() }
}

fn import_err(e: ImportError) -> Failure {
    match e {
        ImportError::Input(InputError::Format(_)) | ImportError::Input(InputError::Io { .. }) => usage_err(e),
        ImportError::Store(_) => runtime_err(e),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ALLOCWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Human => b.with_target(false).init(),
        LogFormat::Json => b.json().init(),
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn load(cli: &Cli) -> Result<(Config, Grants), Failure> {
    let mut config = Config::load(&cli.config).map_err(usage_err)?;
    if let Some(s) = &cli.store {
        config.store_path = s.clone();
    }
    let grants = Grants::load(&config).map_err(usage_err)?;
    Ok((config, grants))
}

/// The single-threaded runtime that drives pulls (child processes, HTTP) and the daemon.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(runtime_err)
}

fn open_store(config: &Config) -> Result<Store, Failure> {
    Store::open(&config.store_path).map_err(runtime_err)
}

/// Pull every configured source (new or changed files, then live sources over their next
/// window), logging each outcome. Returns whether all worked.
async fn pull(config: &Config, store: &mut Store) -> bool {
    let mut ok = true;
    for centre in config.centres.values() {
        for source in centre.sources.iter().filter(|s| s.live().is_some()) {
            ok &= log_live_pull(allocwatch::pull::pull_source(store, centre, source, None, now()).await);
        }
    }
    for (centre, path, result) in engine::pull_file_sources(store, config, now()) {
        match result {
            Ok(None) => tracing::debug!(centre, file = %path.display(), "unchanged since last import"),
            Ok(Some(imp)) => imp.log(&centre),
            Err(e) => {
                ok = false;
                tracing::error!(centre, file = %path.display(), "import failed: {e}");
            }
        }
    }
    ok
}

/// Log a live pull's outcome; returns whether it worked.
fn log_live_pull(result: Result<allocwatch::pull::LivePull, allocwatch::pull::PullError>) -> bool {
    match result {
        Ok(p) => {
            p.log();
            true
        }
        Err(e) => {
            tracing::error!("pull failed: {e}");
            false
        }
    }
}

fn instant(s: i64) -> String {
    jiff::Timestamp::from_second(s).map(|t| t.to_string()).unwrap_or_else(|_| s.to_string())
}

/// A `usage` bound: an RFC 3339 instant, or a date (centre-local midnight).
fn usage_bound(s: &str) -> Result<UsageBound, String> {
    if let Ok(t) = s.trim().parse::<jiff::Timestamp>() {
        return Ok(UsageBound::Instant(t.as_second()));
    }
    parse_date(s)
        .map(UsageBound::Day)
        .map_err(|_| format!("`{s}` is neither a date (YYYY-MM-DD) nor an RFC 3339 instant (2026-11-21T09:00:00Z)"))
}


fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Config { command: ConfigCommand::Check } => {
            let (config, grants) = load(&cli)?;
            println!(
                "{}: OK — {} centres, {} allocations, {} adjustments; store {}",
                config.path.display(),
                config.centres.len(),
                grants.allocations.len(),
                grants.adjustments.len(),
                config.store_path.display()
            );
            if let Some(i) = &config.influxdb {
                i.token.read().map_err(usage_err)?;
                println!("indicators to {} (org {}, bucket {}), token from {}", i.url, i.org, i.bucket, i.token.describe());
            }
            let d = &config.daemon;
            println!(
                "run: pulls on {} (UTC) after up to {} s of jitter; quality report {}",
                d.pull_schedule.as_str(),
                d.jitter.as_secs(),
                d.quality_report.as_ref().map(|q| q.as_str()).unwrap_or("off")
            );
            if let Some(h) = &config.http {
                let token = match &h.token {
                    Some(t) => t.read().map(|_| format!("token from {}", t.describe())).map_err(usage_err)?,
                    None => "no token: the API and the page are closed unless opened".into(),
                };
                println!("HTTP on {}, {token}", h.listen);
            }
            // Live sources, as they will be run (tokens are named by origin, never shown).
            for c in config.centres.values() {
                for src in &c.sources {
                    let line = match src {
                        allocwatch::config::SourceConfig::Files { .. } => continue,
                        allocwatch::config::SourceConfig::Sacct(s) => {
                            let t = now();
                            format!("runs `{}`", s.command_line(t - s.settings.overlap_s, t, &c.tz))
                        }
                        allocwatch::config::SourceConfig::Slurmrestd(r) => format!(
                            "GET {} /slurmdb/{}/jobs, {}",
                            r.describe(),
                            r.api_version.as_deref().unwrap_or("(version from /openapi)"),
                            r.token_origin()
                        ),
                    };
                    let l = src.live().expect("live source");
                    println!(
                        "  {}/{}: {line}; overlap {} h, first pull {} days back, timeout {} s",
                        c.id,
                        l.name,
                        l.overlap_s / 3600,
                        l.first_pull_s / 86_400,
                        l.timeout.as_secs()
                    );
                }
            }
            Ok(())
        }
        Command::Import { centre, format, fields, files } => {
            let (config, _) = load(&cli)?;
            let c = config.centre(centre).map_err(usage_err)?;
            let mut store = open_store(&config)?;
            let mut rejected_total = 0;
            for f in files {
                let started = std::time::Instant::now();
                let imp = engine::import_file(&mut store, c, f, *format, fields.as_deref(), now()).map_err(import_err)?;
                let s = &imp.stats;
                rejected_total += s.rejected;
                for r in &imp.rejections {
                    eprintln!("rejected: {r}");
                }
                if s.rejected as usize > imp.rejections.len() {
                    eprintln!("… and {} more rejected lines", s.rejected as usize - imp.rejections.len());
                }
                for (cluster, n) in &s.unknown_clusters {
                    eprintln!("warning: {n} records of cluster {cluster:?}, which centre {centre} does not list (charged to it anyway)");
                }
                let secs = started.elapsed().as_secs_f64();
                println!(
                    "{}: {} records ({} new, {} replaced, {} unchanged), {} rejected lines, {} steps skipped, {} never started; {:.2} s ({:.0} records/s)",
                    f.display(),
                    s.records,
                    s.inserted,
                    s.replaced,
                    s.unchanged,
                    s.rejected,
                    s.steps,
                    s.not_started,
                    secs,
                    s.records as f64 / secs.max(1e-9)
                );
            }
            if rejected_total > 0 {
                eprintln!("{rejected_total} lines rejected in all; the rest was imported");
            }
            Ok(())
        }
        Command::Check { at, format, no_pull } => {
            let (config, grants) = load(&cli)?;
            let at = match at {
                Some(s) => parse_instant(s, &jiff::tz::TimeZone::UTC).map_err(|e| usage_err(format!("--at: {e}")))?,
                None => config.at.unwrap_or_else(jiff::Timestamp::now),
            };
            let mut store = open_store(&config)?;
            if !*no_pull && !runtime()?.block_on(pull(&config, &mut store)) {
                eprintln!("warning: some sources failed (see above); reconciling with what the ledger has");
            }
            let alerting = alerting(&config)?;
            let cycle = allocwatch::cycle::run_cycle(&config, &grants, &mut store, at.as_second(), "check", alerting.as_ref())
                .map_err(runtime_err)?;
            print!("{}", report::check(&cycle.reconciliation, *format));
            // Deliver what this and earlier cycles owe; a failure leaves the points queued.
            match outbox::flush_now(&config, &mut store) {
                Ok(Some(r)) if r.error.is_some() => eprintln!("warning: indicators not delivered; {} points stay queued (allocwatch outbox status)", r.remaining),
                Ok(_) => {}
                Err(e) => eprintln!("warning: indicators not delivered: {e}; points stay queued"),
            }
            if let Some(a) = &alerting {
                if let Some(s) = &cycle.alerts {
                    eprintln!(
                        "alerts: {} fired, {} reminders, {} resolved, {} still firing; {} messages queued",
                        s.fired, s.reminded, s.resolved, s.held, s.queued
                    );
                }
                deliver(&mut store, &a.settings, false)?;
            }
            Ok(())
        }
        Command::Usage { from, to, centre, group_by, format } => {
            let (config, _) = load(&cli)?;
            if let Some(c) = centre {
                config.centre(c).map_err(usage_err)?;
            }
            let mut grouping = UsageGrouping::default();
            for g in group_by {
                match g.trim() {
                    "user" => grouping.user = true,
                    "day" => grouping.day = true,
                    "account" | "partition" | "" => {}
                    other => return Err(usage_err(format!("--group-by: unknown grouping {other:?} (account, partition, user, day)"))),
                }
            }
            let from = from.as_deref().map(usage_bound).transpose().map_err(|e| usage_err(format!("--from: {e}")))?;
            let to = to.as_deref().map(usage_bound).transpose().map_err(|e| usage_err(format!("--to: {e}")))?;
            let mut store = open_store(&config)?;
            let rows = engine::usage(&config, &mut store, centre.as_deref(), from, to, grouping).map_err(runtime_err)?;
            print!("{}", report::usage(&rows, *format));
            Ok(())
        }
        Command::Pull { centre, source, from, to } => {
            let (config, _) = load(&cli)?;
            let centres: Vec<&allocwatch::config::Centre> = match centre {
                Some(c) => vec![config.centre(c).map_err(usage_err)?],
                None => config.centres.values().collect(),
            };
            let mut chosen = Vec::new();
            for c in &centres {
                for s in c.sources.iter().filter(|s| s.live().is_some_and(|l| source.as_ref().is_none_or(|n| &l.name == n))) {
                    chosen.push((*c, s));
                }
            }
            if chosen.is_empty() {
                return Err(usage_err(match source {
                    Some(n) => format!("no live source named {n:?} (sacct or slurmrestd) in the selected centres"),
                    None => "no live source (kind = \"sacct\" or \"slurmrestd\") is configured for the selected centres".to_string(),
                }));
            }
            let mut store = open_store(&config)?;
            let rt = runtime()?;
            let mut failed = 0;
            for (c, s) in chosen {
                let bound = |v: &Option<String>, flag: &str| -> Result<Option<i64>, Failure> {
                    v.as_deref()
                        .map(|t| parse_instant(t, &c.tz).map(|t| t.as_second()))
                        .transpose()
                        .map_err(|e| usage_err(format!("{flag}: {e}")))
                };
                let (from_s, to_s) = (bound(from, "--from")?, bound(to, "--to")?);
                let t = now();
                let window = match (from_s, to_s) {
                    (None, None) => None,
                    (f, to) => {
                        let settings = s.live().expect("filtered on live sources");
                        let wm = store.watermark(&c.id, &settings.name).map_err(runtime_err)?;
                        let (next_from, _) = allocwatch::pull::next_window(settings, wm, t);
                        let w = (f.unwrap_or(next_from), to.unwrap_or(t));
                        if w.0 >= w.1 {
                            return Err(usage_err(format!("--from {} is not before --to {}", instant(w.0), instant(w.1))));
                        }
                        Some(w)
                    }
                };
                match rt.block_on(allocwatch::pull::pull_source(&mut store, c, s, window, t)) {
                    Ok(p) => {
                        let st = &p.stats;
                        for r in &p.rejections {
                            eprintln!("rejected: {r}");
                        }
                        if st.rejected as usize > p.rejections.len() {
                            eprintln!("… and {} more rejected records", st.rejected as usize - p.rejections.len());
                        }
                        println!(
                            "{}/{}: [{}, {}) from {}: {} records ({} new, {} replaced, {} unchanged), {} rejected, {} never started; watermark {}",
                            p.centre,
                            p.source,
                            instant(p.window.0),
                            instant(p.window.1),
                            p.origin,
                            st.records,
                            st.inserted,
                            st.replaced,
                            st.unchanged,
                            st.rejected,
                            st.not_started,
                            instant(p.watermark)
                        );
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("error: {e}");
                    }
                }
            }
            if failed > 0 {
                return Err(runtime_err(format!("{failed} pull(s) failed; watermarks unchanged, the next pull catches up")));
            }
            Ok(())
        }
        Command::Backfill { centre, source, from, to, chunk, restart } => {
            let (config, _) = load(&cli)?;
            let c = config.centre(centre).map_err(usage_err)?;
            let sources = allocwatch::backfill::live_sources(c, source.as_deref()).map_err(usage_err)?;
            let from = parse_instant(from, &c.tz).map_err(|e| usage_err(format!("--from: {e}")))?.as_second();
            let to = parse_instant(to, &c.tz).map_err(|e| usage_err(format!("--to: {e}")))?.as_second();
            if to <= from {
                return Err(usage_err("--to must be after --from"));
            }
            let chunk_s = parse_step(chunk).map_err(|e| usage_err(format!("--chunk: {e}")))?;
            let mut store = open_store(&config)?;
            let rt = runtime()?;
            for s in sources {
                let name = s.live().map(|l| l.name.clone()).unwrap_or_default();
                let o = rt.block_on(allocwatch::backfill::drive(&mut store, c, s, from, to, chunk_s, *restart)).map_err(runtime_err)?;
                if o.already_done {
                    println!("{centre}/{name}: [{}, {}) already backfilled ({} chunks); --restart pulls it again", instant(from), instant(to), o.chunks_total);
                    continue;
                }
                if let Some(r) = o.resumed_at {
                    println!("{centre}/{name}: resumed at {}", instant(r));
                }
                println!("{centre}/{name}: {} of {} chunks pulled, {} records", o.chunks_pulled, o.chunks_total, o.records);
                if let Some(e) = o.failed {
                    return Err(runtime_err(format!("{e}; progress is kept: run the same command to resume")));
                }
                if o.interrupted {
                    return Err(runtime_err("interrupted after the chunk in flight; progress is kept: run the same command to resume"));
                }
            }
            Ok(())
        }
        Command::Run => allocwatch::daemon::run(allocwatch::daemon::RunOptions {
            config_path: cli.config.clone(),
            store_override: cli.store.clone(),
        })
        .map_err(|e| Failure { code: e.exit_code(), message: e.to_string() }),
        Command::Alerts { command } => {
            let (config, _) = load(&cli)?;
            let mut store = open_store(&config)?;
            match command {
                AlertsCommand::List { all, format } => {
                    let rows = alert_store::list(store.connection(), *all).map_err(runtime_err)?;
                    print!("{}", report::alerts(&rows, *format));
                    Ok(())
                }
                AlertsCommand::Ack { id, by } => {
                    let now = now();
                    if !alert_store::exists(store.connection(), *id).map_err(runtime_err)? {
                        return Err(usage_err(format!("no alert {id} (see `allocwatch alerts list --all`)")));
                    }
                    let path = store.path().to_path_buf();
                    if store.with_transaction(|tx| alert_store::ack(tx, *id, by, now).map_err(allocwatch::ledger::sq(&path))).map_err(runtime_err)? {
                        println!("alert {id} acknowledged by {by}: no more reminders");
                        Ok(())
                    } else {
                        Err(usage_err(format!("alert {id} is not firing")))
                    }
                }
                AlertsCommand::Deliver { force } => {
                    let Some(s) = &config.alerts else {
                        return Err(usage_err(format!("{}: no [alerts] section: nothing to deliver", config.path.display())));
                    };
                    deliver(&mut store, s, *force)
                }
            }
        }
        Command::Replay { from, to, step, format } => {
            let (config, grants) = load(&cli)?;
            let Some(alerting) = alerting(&config)? else {
                return Err(usage_err(format!("{}: no [alerts] section: nothing to replay", config.path.display())));
            };
            let utc = jiff::tz::TimeZone::UTC;
            let from = parse_instant(from, &utc).map_err(|e| usage_err(format!("--from: {e}")))?.as_second();
            let to = parse_instant(to, &utc).map_err(|e| usage_err(format!("--to: {e}")))?.as_second();
            let step = parse_step(step).map_err(|e| usage_err(format!("--step: {e}")))?;
            if to <= from {
                return Err(usage_err("--to must be after --from"));
            }
            let mut store = open_store(&config)?;
            let (events, leads) =
                allocwatch::alerts::replay(&alerting, &config, &grants, &mut store, from, to, step).map_err(runtime_err)?;
            print!("{}", report::replay(&events, &leads, *format));
            Ok(())
        }
        Command::Report { command: ReportCommand::Quality { period, centre, format, explain, lead_days, enqueue } } => {
            use allocwatch::quality;
            let (config, grants) = load(&cli)?;
            let period = quality::Period::parse(period).map_err(|e| usage_err(format!("--period: {e}")))?;
            if !(lead_days.is_finite() && *lead_days >= 0.0) {
                return Err(usage_err("--lead-days must be a number of days ≥ 0"));
            }
            let mut store = open_store(&config)?;
            let qerr = |e: quality::QualityError| Failure { code: e.exit_code(), message: e.to_string() };
            let inputs = quality::load(&config, &grants, &mut store, &period, centre.as_deref(), *lead_days, quality::AsOf::Store).map_err(qerr)?;
            match explain {
                Some(ind) => {
                    let ev = quality::explain(&inputs, ind).map_err(usage_err)?;
                    print!("{}", quality::render::evidence(&ev, &period.label, *format));
                }
                None => print!("{}", quality::render::report(&quality::compute(&inputs), *format)),
            }
            if *enqueue {
                if config.influxdb.is_none() {
                    return Err(usage_err(format!("{}: no [influxdb] section: nothing to queue for", config.path.display())));
                }
                if centre.is_some() {
                    return Err(usage_err("--enqueue sends the whole report: leave out --centre"));
                }
                let r = quality::compute(&inputs);
                if let quality::Scheduled::Queued { points, .. } = quality::enqueue(&config, &mut store, &r, "cli").map_err(qerr)? {
                    eprintln!("queued {points} quality points for InfluxDB (allocwatch outbox status)");
                }
            }
            Ok(())
        }
        Command::Outbox { command } => {
            let (config, _) = load(&cli)?;
            let mut store = open_store(&config)?;
            match command {
                OutboxCommand::Status { format } => {
                    let st = outbox::status(store.connection()).map_err(runtime_err)?;
                    match format {
                        Format::Json => println!("{}", serde_json::to_string_pretty(&st).map_err(runtime_err)?),
                        _ => print!("{st}"),
                    }
                    Ok(())
                }
                OutboxCommand::Flush => {
                    let setup = |e: outbox::SetupError| Failure { code: e.exit_code(), message: e.to_string() };
                    let Some(r) = outbox::flush_now(&config, &mut store).map_err(setup)? else {
                        return Err(usage_err(format!("{}: no [influxdb] section: nothing to flush to", config.path.display())));
                    };
                    println!("sent {} points in {} requests; {} refused (kept in outbox_rejected); {} waiting", r.sent, r.batches, r.rejected, r.remaining);
                    match r.error {
                        Some(e) => Err(runtime_err(format!("{e}; {} points stay queued", r.remaining))),
                        None => Ok(()),
                    }
                }
            }
        }
    }
}

/// Parse a replay step: `1d`, `12h`, `30m`, `3600s`.
fn parse_step(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n.parse().map_err(|_| format!("`{s}` is not a step like 1d, 12h, 30m"))?;
    let secs = match unit {
        "d" => n * 86400,
        "h" => n * 3600,
        "m" => n * 60,
        "s" | "" => n,
        _ => return Err(format!("`{s}`: unit must be d, h, m or s")),
    };
    if secs <= 0 {
        return Err("must be positive".into());
    }
    Ok(secs)
}

fn alerting(config: &Config) -> Result<Option<Alerting>, Failure> {
    match &config.alerts {
        Some(s) => Alerting::new(s.clone()).map(Some).map_err(|e| usage_err(format!("{}: alerts: {e}", config.path.display()))),
        None => Ok(None),
    }
}

/// One delivery pass of the notification outbox, reported on stderr. Failures leave the
/// messages queued (exit code 0: nothing is lost; the next run retries).
fn deliver(store: &mut Store, s: &allocwatch::alerts::settings::AlertSettings, force: bool) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(runtime_err)?;
    let r = rt.block_on(allocwatch::alerts::deliver::deliver_pending(store, s, force)).map_err(runtime_err)?;
    if r.sent + r.failed > 0 || r.pending > 0 {
        eprintln!("notifications: {} sent, {} failed attempts, {} queued", r.sent, r.failed, r.pending);
    }
    Ok(())
}
