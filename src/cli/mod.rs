//! The command line: one module per command, one mapping from error to exit code
//! ([`Failure`]), logging set up once. Exit codes: 0 success, 1 runtime failure, 2 bad usage
//! or bad configuration/input file (the message names the file, line and field).

mod alerts;
mod backfill;
mod check;
mod config;
mod doctor;
mod error;
mod export;
mod generate;
mod import;
mod link;
mod logging;
mod outbox;
mod output;
mod pull;
mod replay;
mod report;
mod usage;

use crate::config::Config;
use crate::domain::grants::Grants;
use crate::store::Store;
use clap::{Parser, Subcommand};
use logging::LogFormat;
pub(crate) use error::Failure;
use std::path::PathBuf;
use std::process::ExitCode;

/// `allocwatch --version`: the release and the commit it was built from (build.rs).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("ALLOCWATCH_COMMIT"), ")");

#[derive(Parser)]
#[command(name = "allocwatch", version = VERSION, about = "Reconcile granted compute hours against Slurm accounting")]
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

#[derive(Subcommand)]
enum Command {
    /// Pull configured sources, then reconcile every allocation and print the indicators.
    Check(check::Args),
    /// Import accounting files into the ledger (idempotent: re-importing changes nothing).
    Import(import::Args),
    /// Pull the live sources (sacct, slurmrestd) now, over their next window or an explicit one.
    Pull(pull::Args),
    /// Raw ledger usage, whatever the allocations say.
    Usage(usage::Args),
    /// Connect to the store and every configured source, sink and channel with the configured
    /// credentials, and say what works and what does not, one line each.
    ///
    /// Sends no mail and no alert, stores nothing; writes one point of measurement
    /// `allocwatch_doctor` to InfluxDB. Exit code 0 only when everything works, 1 when a check
    /// failed, 2 for a bad configuration.
    Doctor(doctor::Args),
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: config::Command,
    },
    /// Alerts: list them with their delivery history, acknowledge, deliver the outbox.
    Alerts {
        #[command(subcommand)]
        command: alerts::Command,
    },
    /// Evaluate the alert rules at every step over past data, sending nothing, and print which
    /// alerts would have fired, when and for whom, then how early exhausted allocations were warned.
    Replay(replay::Args),
    /// Pull a past window of a centre's live source in chunks, with a progress bar; run it
    /// again after an interruption and it resumes where it stopped.
    Backfill(backfill::Args),
    /// Run as a daemon: pull each centre on its schedule, reconcile after each pull, serve
    /// HTTP; SIGHUP reloads the configuration, SIGTERM/SIGINT stop cleanly.
    Run,
    /// The indicator outbox (points waiting for InfluxDB).
    Outbox {
        #[command(subcommand)]
        command: outbox::Command,
    },
    /// Print a signed, read-only link to one project's page (what researcher e-mails carry).
    Link(link::Args),
    /// Periodic reports.
    Report {
        #[command(subcommand)]
        command: report::Command,
    },
    /// The reconciliation in other tools' formats (Open OnDemand balance files).
    Export {
        #[command(subcommand)]
        command: export::Command,
    },
    /// Manual pages and shell completions, from these definitions (for packagers).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        command: generate::Command,
    },
}

/// What every command is given: the global options.
struct Globals {
    config: PathBuf,
    store: Option<PathBuf>,
}

impl Globals {
    /// The configuration (with `--store` applied) and the allocation files it names, both
    /// validated (every command refuses a bad one, naming file, line and field).
    fn load(&self) -> Result<(Config, Grants), Failure> {
        let mut config = Config::load(&self.config)?;
        if let Some(s) = &self.store {
            config.store_path = crate::config::store_location(s).map_err(|e| Failure::usage(format!("--store: {e}")))?;
        }
        let grants = Grants::load(&config)?;
        Ok((config, grants))
    }
}

/// Open the configured store.
fn open_store(config: &Config) -> Result<Store, Failure> {
    Ok(Store::open(&config.store_path)?)
}

/// The single-threaded runtime that drives pulls (child processes, HTTP) and deliveries.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Failure::runtime)
}

/// The wall clock, epoch seconds.
fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Parse a step or chunk length: `1d`, `12h`, `30m`, `3600s`.
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

/// The program: parse the command line, run the command, map its failure to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let g = Globals { config: cli.config, store: cli.store };
    let result = match cli.command {
        Command::Check(a) => check::run(&g, a),
        Command::Import(a) => import::run(&g, a),
        Command::Pull(a) => pull::run(&g, a),
        Command::Usage(a) => usage::run(&g, a),
        Command::Config { command } => config::run(&g, command),
        Command::Doctor(a) => doctor::run(&g, a),
        Command::Alerts { command } => alerts::run(&g, command),
        Command::Replay(a) => replay::run(&g, a),
        Command::Backfill(a) => backfill::run(&g, a),
        Command::Run => crate::daemon::run(crate::daemon::RunOptions { config_path: g.config.clone(), store_override: g.store.clone() }).map_err(Failure::from),
        Command::Outbox { command } => outbox::run(&g, command),
        Command::Link(a) => link::run(&g, a),
        Command::Report { command } => report::run(&g, command),
        Command::Export { command } => export::run(&g, command),
        Command::Generate { command } => generate::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message());
            ExitCode::from(f.code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_step;

    #[test]
    fn steps() {
        assert_eq!(parse_step("1d"), Ok(86400));
        assert_eq!(parse_step("12h"), Ok(43200));
        assert_eq!(parse_step("90"), Ok(90));
        assert!(parse_step("0d").is_err() && parse_step("1w").is_err() && parse_step("x").is_err());
    }
}
