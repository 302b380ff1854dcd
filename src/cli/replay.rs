//! `allocwatch replay`: the alert rules at every step of a past window, sending nothing.

use super::output::{self, Format};
use super::{open_store, parse_step, Failure, Globals};
use crate::domain::time::parse_instant;

/// `replay`'s options.
#[derive(clap::Args)]
pub struct Args {
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
}

pub fn run(g: &Globals, a: Args) -> Result<(), Failure> {
    let (config, grants) = g.load()?;
    let Some(alerting) = super::alerts::alerting(&config)? else {
        return Err(Failure::usage(format!("{}: no [alerts] section: nothing to replay", config.path.display())));
    };
    let utc = jiff::tz::TimeZone::UTC;
    let from = parse_instant(&a.from, &utc).map_err(|e| Failure::usage(format!("--from: {e}")))?.as_second();
    let to = parse_instant(&a.to, &utc).map_err(|e| Failure::usage(format!("--to: {e}")))?.as_second();
    let step = parse_step(&a.step).map_err(|e| Failure::usage(format!("--step: {e}")))?;
    if to <= from {
        return Err(Failure::usage("--to must be after --from"));
    }
    let mut store = open_store(&config)?;
    let (events, leads) = crate::cycle::replay::replay(&alerting, &config, &grants, &mut store, from, to, step)?;
    print!("{}", output::replay(&events, &leads, a.format));
    Ok(())
}
