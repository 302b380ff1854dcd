//! `allocwatch pull`: the live sources (sacct, slurmrestd) now, over their next window or an
//! explicit one (a backfill of a window never moves a watermark back).

use super::{now, open_store, runtime, Failure, Globals};
use crate::domain::time::{parse_instant, rfc3339};
use crate::pull::{next_window, pull_source, Reach};

/// `pull`'s options.
#[derive(clap::Args)]
pub struct Args {
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
    /// A deep re-scan now: from the watermark less `overlap_hours` (default: only when the
    /// last one is `rescan_hours` old), to read again records corrected since.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    deep: bool,
}

pub fn run(g: &Globals, a: Args) -> Result<(), Failure> {
    let (config, _) = g.load()?;
    let centres: Vec<&crate::config::CentreConfig> = match &a.centre {
        Some(c) => vec![config.centre(c)?],
        None => config.centres.values().collect(),
    };
    let mut chosen = Vec::new();
    for c in &centres {
        for s in c.live_sources().filter(|l| a.source.as_ref().is_none_or(|n| &l.settings().name == n)) {
            chosen.push((*c, s));
        }
    }
    if chosen.is_empty() {
        return Err(Failure::usage(match &a.source {
            Some(n) => format!("no live source named {n:?} (sacct or slurmrestd) in the selected centres"),
            None => "no live source (kind = \"sacct\" or \"slurmrestd\") is configured for the selected centres".to_string(),
        }));
    }
    let mut store = open_store(&config)?;
    let rt = runtime()?;
    let mut failed = 0;
    for (c, s) in chosen {
        let bound = |v: &Option<String>, flag: &str| -> Result<Option<i64>, Failure> {
            v.as_deref().map(|t| parse_instant(t, &c.tz).map(|t| t.as_second())).transpose().map_err(|e| Failure::usage(format!("{flag}: {e}")))
        };
        let (from_s, to_s) = (bound(&a.from, "--from")?, bound(&a.to, "--to")?);
        let t = now();
        let reach = match (from_s, to_s) {
            (None, None) if a.deep => Reach::Deep,
            (None, None) => Reach::Next,
            (f, to) => {
                let name = &s.settings().name;
                let (wm, last_deep) = (store.watermark(&c.id, name)?, store.last_deep_scan(&c.id, name)?);
                let ((next_from, _), _) = next_window(s.settings(), wm, last_deep, false, t);
                let w = (f.unwrap_or(next_from), to.unwrap_or(t));
                if w.0 >= w.1 {
                    return Err(Failure::usage(format!("--from {} is not before --to {}", rfc3339(w.0), rfc3339(w.1))));
                }
                Reach::Window(w.0, w.1)
            }
        };
        match rt.block_on(pull_source(&mut store, c, s, reach, t)) {
            Ok(p) => {
                let st = &p.stats;
                for r in &p.rejections {
                    eprintln!("rejected: {r}");
                }
                if st.rejected as usize > p.rejections.len() {
                    eprintln!("… and {} more rejected records", st.rejected as usize - p.rejections.len());
                }
                println!(
                    "{}/{}: [{}, {}){} from {}: {} records ({} new, {} replaced, {} unchanged), {} rejected, {} never started; watermark {}",
                    p.centre,
                    p.source,
                    rfc3339(p.window.0),
                    rfc3339(p.window.1),
                    if p.deep { " (deep re-scan)" } else { "" },
                    p.origin,
                    st.records,
                    st.inserted,
                    st.replaced,
                    st.unchanged,
                    st.rejected,
                    st.not_started,
                    rfc3339(p.watermark)
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    if failed > 0 {
        return Err(Failure::runtime(format!("{failed} pull(s) failed; watermarks unchanged, the next pull catches up")));
    }
    Ok(())
}
