//! `allocwatch usage`: the raw ledger apportioned to a window, whatever the allocations say.

use super::output::{self, Format};
use super::{open_store, Failure, Globals};
use crate::domain::time::parse_date;
use crate::domain::usage::{UsageBound, UsageGrouping};

/// `usage`'s options.
#[derive(clap::Args)]
pub struct Args {
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
}

/// A `usage` bound: an RFC 3339 instant, or a date (centre-local midnight).
fn usage_bound(s: &str) -> Result<UsageBound, String> {
    if let Ok(t) = s.trim().parse::<jiff::Timestamp>() {
        return Ok(UsageBound::Instant(t.as_second()));
    }
    parse_date(s).map(UsageBound::Day).map_err(|_| format!("`{s}` is neither a date (YYYY-MM-DD) nor an RFC 3339 instant (2026-11-21T09:00:00Z)"))
}

pub fn run(g: &Globals, a: Args) -> Result<(), Failure> {
    let (config, _) = g.load()?;
    if let Some(c) = &a.centre {
        config.centre(c)?;
    }
    let mut grouping = UsageGrouping::default();
    for gr in &a.group_by {
        match gr.trim() {
            "user" => grouping.user = true,
            "day" => grouping.day = true,
            "account" | "partition" | "" => {}
            other => return Err(Failure::usage(format!("--group-by: unknown grouping {other:?} (account, partition, user, day)"))),
        }
    }
    let from = a.from.as_deref().map(usage_bound).transpose().map_err(|e| Failure::usage(format!("--from: {e}")))?;
    let to = a.to.as_deref().map(usage_bound).transpose().map_err(|e| Failure::usage(format!("--to: {e}")))?;
    let mut store = open_store(&config)?;
    let rows = crate::reconcile::usage::usage(&config, &mut store, a.centre.as_deref(), from, to, grouping)?;
    print!("{}", output::usage(&rows, a.format));
    Ok(())
}
