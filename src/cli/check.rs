//! `allocwatch check`: pull every configured source, reconcile every allocation at an instant
//! (a recorded cycle, with its alerts and owed points), print the indicators, then try once to
//! deliver what the outboxes hold.

use super::output::{self, Format};
use super::{open_store, runtime, Failure, Globals};
use crate::domain::time::parse_instant;
use crate::sinks::outbox;

/// `check`'s options.
#[derive(clap::Args)]
pub struct Args {
    /// Reconciliation instant (RFC 3339 or YYYY-MM-DD); default: the configured pin, else now.
    #[arg(long)]
    at: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Do not pull the configured sources first.
    #[arg(long)]
    no_pull: bool,
}

pub fn run(g: &Globals, a: Args) -> Result<(), Failure> {
    let (config, grants) = g.load()?;
    let at = match &a.at {
        Some(s) => parse_instant(s, &jiff::tz::TimeZone::UTC).map_err(|e| Failure::usage(format!("--at: {e}")))?,
        None => config.at.unwrap_or_else(jiff::Timestamp::now),
    };
    let mut store = open_store(&config)?;
    if !a.no_pull {
        let rt = runtime()?;
        let mut failed = false;
        for centre in config.centres.values() {
            let pulled = rt.block_on(crate::pull::pull_centre(&mut store, centre, super::now()));
            failed |= !pulled.log(&centre.id).is_empty();
        }
        if failed {
            eprintln!("warning: some sources failed (see above); reconciling with what the ledger has");
        }
    }
    let alerting = super::alerts::alerting(&config)?;
    let cycle = crate::cycle::run_cycle(&mut crate::reconcile::Reconciler::default(), &config, &grants, &mut store, at.as_second(), "check", alerting.as_ref())?;
    print!("{}", output::check(&cycle.reconciliation, a.format));
    // Deliver what this and earlier cycles owe; a failure leaves the points queued.
    match outbox::flush_now(config.influxdb.as_ref(), &mut store) {
        Ok(Some(r)) if r.error.is_some() => eprintln!("warning: indicators not delivered; {} points stay queued (allocwatch outbox status)", r.remaining),
        Ok(_) => {}
        Err(e) => eprintln!("warning: indicators not delivered: {e}; points stay queued"),
    }
    if let Some(al) = &alerting {
        if let Some(s) = &cycle.alerts {
            eprintln!("alerts: {} fired, {} reminders, {} resolved, {} still firing; {} messages queued", s.fired, s.reminded, s.resolved, s.held, s.queued);
        }
        super::alerts::deliver(&mut store, &al.settings, false)?;
    }
    Ok(())
}
