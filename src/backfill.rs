//! `allocwatch backfill`: pull a past window of a centre's live source in chunks.
//!
//! Each chunk is one pull ([`crate::pull::pull_source`], its own transaction; a backfill never
//! moves the watermark back), then the backfill's progress (`backfills.done_until`) moves in a
//! second transaction. Interrupted anywhere, the same command resumes at `done_until`: a chunk
//! stored but not yet marked is pulled again, which changes nothing (records are upserted).

use crate::config::{Centre, SourceConfig};
use crate::ledger::{sq, Store, StoreError};
use rusqlite::{params, OptionalExtension};

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

/// Progress of a backfill, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Everything before this instant is pulled.
    pub done_until: i64,
    /// Records stored so far.
    pub records: i64,
    /// When it finished, if it did.
    pub finished_at: Option<i64>,
    /// Chunk length it was started with.
    pub chunk_s: i64,
}

/// The stored progress of the backfill of `(centre, source, [from, to))`, if any.
pub fn progress(store: &Store, centre: &str, source: &str, from: i64, to: i64) -> Result<Option<Progress>, StoreError> {
    store.connection().execute_batch(crate::ledger::BACKFILLS_TABLE).map_err(sq(store.path()))?;
    store
        .connection()
        .query_row(
            "SELECT done_until, records, finished_at, chunk_seconds FROM backfills
             WHERE centre = ?1 AND source = ?2 AND window_start = ?3 AND window_end = ?4",
            params![centre, source, from, to],
            |r| Ok(Progress { done_until: r.get(0)?, records: r.get(1)?, finished_at: r.get(2)?, chunk_s: r.get(3)? }),
        )
        .optional()
        .map_err(sq(store.path()))
}

/// Start (or restart from scratch) the backfill record.
pub fn begin(store: &mut Store, centre: &str, source: &str, from: i64, to: i64, chunk_s: i64, now: i64) -> Result<(), StoreError> {
    let path = store.path().to_path_buf();
    store.with_transaction(|tx| {
        tx.execute(
            "INSERT OR REPLACE INTO backfills (centre, source, window_start, window_end, chunk_seconds, done_until, records, started_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?3, 0, ?6, ?6)",
            params![centre, source, from, to, chunk_s, now],
        )
        .map_err(sq(&path))?;
        Ok(())
    })
}

/// Mark `[.., done_until)` pulled, with `records` more stored; finished when it reaches the end.
pub fn advance(store: &mut Store, centre: &str, source: &str, from: i64, to: i64, done_until: i64, records: i64, now: i64) -> Result<(), StoreError> {
    let path = store.path().to_path_buf();
    store.with_transaction(|tx| {
        tx.execute(
            "UPDATE backfills SET done_until = ?5, records = records + ?6, updated_at = ?7,
                    finished_at = CASE WHEN ?5 >= window_end THEN ?7 ELSE NULL END
             WHERE centre = ?1 AND source = ?2 AND window_start = ?3 AND window_end = ?4",
            params![centre, source, from, to, done_until, records, now],
        )
        .map_err(sq(&path))?;
        Ok(())
    })
}

/// The live sources of a centre a backfill may use: the one named, or all of them.
pub fn live_sources<'c>(centre: &'c Centre, name: Option<&str>) -> Result<Vec<&'c SourceConfig>, String> {
    let all: Vec<&SourceConfig> = centre.sources.iter().filter(|s| s.live().is_some()).collect();
    if all.is_empty() {
        return Err(format!(
            "centre {} has no live source (kind = \"sacct\" or \"slurmrestd\"): file drops are imported with `allocwatch import`",
            centre.id
        ));
    }
    match name {
        None => Ok(all),
        Some(n) => {
            let names: Vec<&str> = all.iter().filter_map(|s| s.live()).map(|l| l.name.as_str()).collect();
            all.into_iter()
                .find(|s| s.live().is_some_and(|l| l.name == n))
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

fn rfc3339(s: i64) -> String {
    crate::alerts::rfc3339(s)
}

/// Pull `[from, to)` of one live source in chunks of `chunk_s`, resuming a stored backfill of
/// the same window (from scratch with `restart`), with a progress bar on a terminal (a line per
/// chunk on stderr otherwise). Stops after the chunk in flight on SIGINT/SIGTERM.
pub async fn drive(
    store: &mut Store,
    centre: &Centre,
    source: &SourceConfig,
    from: i64,
    to: i64,
    chunk_s: i64,
    restart: bool,
) -> Result<Outcome, StoreError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let name = source.live().map(|l| l.name.clone()).unwrap_or_default();
    let now = || jiff::Timestamp::now().as_second();
    let mut out = Outcome::default();
    let stored = if restart { None } else { progress(store, &centre.id, &name, from, to)? };
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
            begin(store, &centre.id, &name, from, to, chunk_s, now())?;
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
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else { return };
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            stop.store(true, Ordering::SeqCst);
        })
    };
    for (i, (a, b)) in todo.iter().copied().enumerate() {
        if stop.load(Ordering::SeqCst) {
            out.interrupted = true;
            break;
        }
        bar.set_message(format!("{}/{name} {}", centre.id, &rfc3339(a)[..10]));
        match crate::pull::pull_source(store, centre, source, Some((a, b)), now()).await {
            Ok(p) => {
                let n = p.stats.records as i64;
                advance(store, &centre.id, &name, from, to, b, n, now())?;
                out.records += n;
                out.chunks_pulled += 1;
                if bar.is_hidden() {
                    eprintln!("{}/{name} [{}, {}): {n} records ({} of {} chunks)", centre.id, rfc3339(a), rfc3339(b), all.len() - todo.len() + i + 1, all.len());
                }
                bar.inc(1);
            }
            Err(crate::pull::PullError::Store(e)) => return Err(e),
            Err(e) => {
                out.failed = Some(e.to_string());
                break;
            }
        }
    }
    watcher.abort();
    if stop.load(Ordering::SeqCst) && out.chunks_pulled < todo.len() {
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

    #[test]
    fn progress_is_stored_and_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        assert_eq!(progress(&store, "c", "sacct", 0, 300).unwrap(), None);
        begin(&mut store, "c", "sacct", 0, 300, 100, 7).unwrap();
        advance(&mut store, "c", "sacct", 0, 300, 100, 5, 8).unwrap();
        assert_eq!(progress(&store, "c", "sacct", 0, 300).unwrap(), Some(Progress { done_until: 100, records: 5, finished_at: None, chunk_s: 100 }));
        advance(&mut store, "c", "sacct", 0, 300, 300, 2, 9).unwrap();
        assert_eq!(progress(&store, "c", "sacct", 0, 300).unwrap().unwrap().finished_at, Some(9));
        // Another window is another backfill.
        assert_eq!(progress(&store, "c", "sacct", 0, 200).unwrap(), None);
    }
}
