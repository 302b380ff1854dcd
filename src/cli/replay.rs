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
    /// Instead of the events, measure the forecasts: each forecast made at every 7th step
    /// (weekly with the default step) against what then happened, and the lead time of
    /// `forecast_exhaustion` against the other warnings.
    #[arg(long)]
    forecast_calibration: bool,
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
    if a.forecast_calibration {
        let table = crate::cycle::replay::calibrate(&alerting, &config, &grants, &mut store, (from, to, step), 7)?;
        print!("{}", output::calibration(&table, from, to, &a.step, a.format));
        return Ok(());
    }
    let (events, leads) = crate::cycle::replay::replay(&alerting, &config, &grants, &mut store, from, to, step)?;
    print!("{}", output::replay(&events, &leads, a.format));
    Ok(())
}
