//! `allocwatch backfill`: a past window of a centre's live sources in chunks, with a progress
//! bar, resumable; SIGINT/SIGTERM stop it after the chunk in flight.

use super::{open_store, parse_step, runtime, Failure, Globals};
use crate::domain::time::{parse_instant, rfc3339};
use crate::pull::backfill::{drive, live_sources};
use crate::shutdown::ShutdownSignal;
use std::sync::Arc;

/// `backfill`'s options.
#[derive(clap::Args)]
pub struct Args {
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
}

pub fn run(g: &Globals, a: Args) -> Result<(), Failure> {
    let (config, _) = g.load()?;
    let c = config.centre(&a.centre)?;
    let sources = live_sources(c, a.source.as_deref()).map_err(Failure::usage)?;
    let from = parse_instant(&a.from, &c.tz).map_err(|e| Failure::usage(format!("--from: {e}")))?.as_second();
    let to = parse_instant(&a.to, &c.tz).map_err(|e| Failure::usage(format!("--to: {e}")))?.as_second();
    if to <= from {
        return Err(Failure::usage("--to must be after --from"));
    }
    let chunk_s = parse_step(&a.chunk).map_err(|e| Failure::usage(format!("--chunk: {e}")))?;
    let mut store = open_store(&config)?;
    let rt = runtime()?;
    let signal = Arc::new(ShutdownSignal::new());
    rt.block_on(async { signal.stop_on_signals() }).map_err(Failure::runtime)?;
    let shutdown = signal.subscribe();
    let centre = &a.centre;
    for s in sources {
        let name = s.settings().name.clone();
        let o = rt.block_on(drive(&mut store, c, s, from, to, chunk_s, a.restart, &shutdown))?;
        if o.already_done {
            println!("{centre}/{name}: [{}, {}) already backfilled ({} chunks); --restart pulls it again", rfc3339(from), rfc3339(to), o.chunks_total);
            continue;
        }
        if let Some(r) = o.resumed_at {
            println!("{centre}/{name}: resumed at {}", rfc3339(r));
        }
        println!("{centre}/{name}: {} of {} chunks pulled, {} records", o.chunks_pulled, o.chunks_total, o.records);
        if let Some(e) = o.failed {
            return Err(Failure::runtime(format!("{e}; progress is kept: run the same command to resume")));
        }
        if o.interrupted {
            return Err(Failure::runtime("interrupted after the chunk in flight; progress is kept: run the same command to resume"));
        }
    }
    Ok(())
}
