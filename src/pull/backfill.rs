//! `allocwatch backfill`: pull a past window of a centre's live source in chunks.
//!
//! Each chunk is one pull ([`super::pull_source`], its own transaction; a backfill never moves
//! the watermark back), then the backfill's progress (`backfills.done_until`) moves in a second
//! transaction. Interrupted anywhere, the same command resumes at `done_until`: a chunk stored
//! but not yet marked is pulled again, which changes nothing (records are upserted).

use crate::config::CentreConfig;
use crate::domain::time::{rfc3339, utc_date};
use crate::shutdown::Shutdown;
use crate::sources::LiveSource;
use crate::store::{Store, StoreError};

/// The chunks `[a, b)` covering `[from, to)`, each `chunk_s` long (the last one shorter).
pub fn chunks(from: i64, to: i64, chunk_s: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut a = from;
    while a < to {
        let b = a.saturating_add(chunk_s.max(1)).min(to);
        out.push((a, b));
        a = b;
    }
    out
}

/// The live sources of a centre a backfill may use: the one named, or all of them.
pub(crate) fn live_sources<'c>(centre: &'c CentreConfig, name: Option<&str>) -> Result<Vec<&'c dyn LiveSource>, String> {
    let all: Vec<&dyn LiveSource> = centre.live_sources().collect();
    if all.is_empty() {
        return Err(format!(
            "centre {} has no live source (kind = \"sacct\" or \"slurmrestd\"): file drops are imported with `allocwatch import`",
            centre.id
        ));
    }
    match name {
        None => Ok(all),
        Some(n) => {
            let names: Vec<&str> = all.iter().map(|l| l.settings().name.as_str()).collect();
            all.into_iter()
                .find(|l| l.settings().name == n)
                .map(|s| vec![s])
                .ok_or_else(|| format!("centre {} has no live source named {n:?} (it has: {})", centre.id, names.join(", ")))
        }
    }
}

/// What one backfill run did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Chunks pulled by this run.
    pub chunks_pulled: usize,
    /// Chunks in the whole window.
    pub chunks_total: usize,
    /// Records stored by this run.
    pub records: i64,
    /// Where this run resumed, when an earlier one had stopped.
    pub resumed_at: Option<i64>,
    /// It was already complete (nothing pulled).
    pub already_done: bool,
    /// SIGINT/SIGTERM stopped it after the chunk in flight.
    pub interrupted: bool,
    /// The pull that failed, if one did (the backfill stops there).
    pub failed: Option<String>,
}

/// Pull `[from, to)` of one live source in chunks of `chunk_s`, resuming a stored backfill of
/// the same window (from scratch with `restart`), with a progress bar on a terminal (a line per
/// chunk on stderr otherwise). Stops after the chunk in flight once `shutdown` is stopping.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn drive(
    store: &mut Store,
    centre: &CentreConfig,
    source: &dyn LiveSource,
    from: i64,
    to: i64,
    chunk_s: i64,
    restart: bool,
    shutdown: &Shutdown,
) -> Result<Outcome, StoreError> {
    let name = source.settings().name.clone();
    let now = || jiff::Timestamp::now().as_second();
    let mut out = Outcome::default();
    let stored = if restart { None } else { store.backfill_progress(&centre.id, &name, from, to)? };
    let (start, chunk_s) = match stored {
        Some(p) if p.finished_at.is_some() => {
            out.already_done = true;
            out.chunks_total = chunks(from, to, p.chunk_s).len();
            return Ok(out);
        }
        // Resume with the chunk length it started with, so chunks line up.
        Some(p) => {
            out.resumed_at = Some(p.done_until);
            (p.done_until, p.chunk_s)
        }
        None => {
            store.begin_backfill(&centre.id, &name, from, to, chunk_s, now())?;
            (from, chunk_s)
        }
    };
    let all = chunks(from, to, chunk_s);
    out.chunks_total = all.len();
    let todo: Vec<(i64, i64)> = all.iter().copied().filter(|(_, b)| *b > start).map(|(a, b)| (a.max(start), b)).collect();
    let bar = indicatif::ProgressBar::new(all.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:40} [{bar:30}] {pos}/{len} chunks · {elapsed} · eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_position((all.len() - todo.len()) as u64);
    for (i, (a, b)) in todo.iter().copied().enumerate() {
        if shutdown.is_stopping() {
            out.interrupted = true;
            break;
        }
        bar.set_message(format!("{}/{name} {}", centre.id, utc_date(a)));
        match super::pull_source(store, centre, source, super::Reach::Window(a, b), now()).await {
            Ok(p) => {
                let n = p.stats.records as i64;
                store.advance_backfill(&centre.id, &name, from, to, b, n, now())?;
                out.records += n;
                out.chunks_pulled += 1;
                if bar.is_hidden() {
                    eprintln!("{}/{name} [{}, {}): {n} records ({} of {} chunks)", centre.id, rfc3339(a), rfc3339(b), all.len() - todo.len() + i + 1, all.len());
                }
                bar.inc(1);
            }
            Err(super::PullError::Store(e)) => return Err(e),
            Err(e) => {
                out.failed = Some(e.to_string());
                break;
            }
        }
    }
    if shutdown.is_stopping() && out.chunks_pulled < todo.len() {
        out.interrupted = true;
    }
    bar.finish_and_clear();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_window_exactly() {
        assert_eq!(chunks(0, 250, 100), vec![(0, 100), (100, 200), (200, 250)]);
        assert_eq!(chunks(0, 200, 100), vec![(0, 100), (100, 200)]);
        assert!(chunks(5, 5, 100).is_empty());
        assert_eq!(chunks(0, 3, 0), vec![(0, 1), (1, 2), (2, 3)]);
    }
}
