//! `allocwatch report quality`: the quality indicators of a period (and the facts behind one).

use super::{open_store, Failure, Globals};
use crate::quality::{self, render::QualityFormat, AsOf, Period, Scheduled};

/// `report`'s subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
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
        format: QualityFormat,
        /// List the allocations, alerts, notifications, pulls or usage behind one indicator.
        #[arg(long, value_name = "INDICATOR")]
        explain: Option<String>,
        /// Minimum lead, in days, for an exhausted allocation to count as warned ahead.
        #[arg(long, default_value_t = quality::DEFAULT_LEAD_DAYS)]
        lead_days: f64,
        /// Also queue the figures as `quality` points for InfluxDB (again: they overwrite).
        #[arg(long)]
        enqueue: bool,
    },
}

pub fn run(g: &Globals, command: Command) -> Result<(), Failure> {
    let Command::Quality { period, centre, format, explain, lead_days, enqueue } = command;
    let (config, grants) = g.load()?;
    let period = Period::parse(&period).map_err(|e| Failure::usage(format!("--period: {e}")))?;
    if !(lead_days.is_finite() && lead_days >= 0.0) {
        return Err(Failure::usage("--lead-days must be a number of days ≥ 0"));
    }
    let mut store = open_store(&config)?;
    let inputs = quality::load(&config, &grants, &mut store, &period, centre.as_deref(), lead_days, AsOf::Store)?;
    match &explain {
        Some(ind) => {
            let ev = quality::explain(&inputs, ind).map_err(Failure::usage)?;
            print!("{}", quality::render::evidence(&ev, &period.label, format));
        }
        None => print!("{}", quality::render::report(&quality::compute(&inputs), format)),
    }
    if enqueue {
        if config.influxdb.is_none() {
            return Err(Failure::usage(format!("{}: no [influxdb] section: nothing to queue for", config.path.display())));
        }
        if centre.is_some() {
            return Err(Failure::usage("--enqueue sends the whole report: leave out --centre"));
        }
        let r = quality::compute(&inputs);
        if let (Scheduled::Queued { points, .. }, _) = quality::enqueue(&config, &mut store, &r, "cli")? {
            eprintln!("queued {points} quality points for InfluxDB (allocwatch outbox status)");
        }
    }
    Ok(())
}
