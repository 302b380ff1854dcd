//! `allocwatch export`: the reconciliation in other tools' formats. `export ood` writes an Open
//! OnDemand balance file (version 1) of one kind of hours: the remaining hours of each project,
//! once per Slurm user who ran on its accounts (see [`crate::domain::balance`]), to stdout or
//! atomically to `--out`. It reads the store as it is (no pull) and records nothing.

use super::{open_store, Failure, Globals};
use crate::domain::time::parse_instant;
use crate::sinks::ood::{self, BalanceUnit, DEFAULT_PROJECT_TYPE};
use std::path::PathBuf;

/// `export`'s formats.
#[derive(clap::Subcommand)]
pub enum Command {
    /// An Open OnDemand balance file (the dashboard's `OOD_BALANCE_PATH`).
    Ood(OodArgs),
}

/// `export ood`'s options.
#[derive(clap::Args)]
pub struct OodArgs {
    /// Which hours: core-hours or GPU-hours allocations (billing-hours allocations are neither).
    #[arg(long, value_enum)]
    unit: BalanceUnit,
    /// Write this file atomically (temporary file, fsync, rename) instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Reconciliation instant (RFC 3339 or YYYY-MM-DD); default: the configured pin, else now.
    #[arg(long)]
    at: Option<String>,
}

pub fn run(g: &Globals, command: Command) -> Result<(), Failure> {
    let Command::Ood(a) = command;
    let (config, grants) = g.load()?;
    let at = match &a.at {
        Some(s) => parse_instant(s, &jiff::tz::TimeZone::UTC).map_err(|e| Failure::usage(format!("--at: {e}")))?,
        None => config.at.unwrap_or_else(jiff::Timestamp::now),
    };
    // The project type of the configured file of this unit, so that a file written by hand
    // looks like the daemon's.
    let project_type = config.ood.balances.iter().find(|b| b.unit == a.unit).map(|b| b.project_type.as_str()).unwrap_or(DEFAULT_PROJECT_TYPE);
    let mut store = open_store(&config)?;
    let rec = crate::reconcile::reconcile_all(&config, &grants, &mut store, at.as_second())?;
    let balances = ood::balances(&mut store, &rec, &[a.unit])?.remove(0);
    let doc = ood::document(a.unit, project_type, rec.at, &balances);
    match &a.out {
        None => print!("{doc}"),
        Some(path) => {
            ood::write_atomically(path, doc.as_bytes()).map_err(|e| Failure::runtime(format!("--out {}: {e}", path.display())))?;
            eprintln!("{}: {} balances ({}, {} users)", path.display(), balances.len(), a.unit.as_str(), distinct_users(&balances));
        }
    }
    Ok(())
}

/// Distinct users among the balances.
fn distinct_users(balances: &[crate::domain::balance::Balance]) -> usize {
    balances.iter().map(|b| b.user.as_str()).collect::<std::collections::BTreeSet<_>>().len()
}
