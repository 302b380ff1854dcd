//! Pulls: a centre's accounting into the ledger. One function pulls a whole centre —
//! [`pull_centre`], called by `check`, `pull`-less cycles and every tick of the daemon — through
//! the live sources' one trait ([`LiveSource`]) and the file drops ([`files`]).
//!
//! A live pull fetches a window, then stores its records, the pull's bookkeeping and the
//! source's new watermark in ONE store transaction. Each pull covers `[watermark − overlap,
//! now)` — or, for a source never pulled, the last `first_pull_days` — so jobs recorded late,
//! corrected, or still running are seen again and upserted (never double-counted). A failed
//! fetch is recorded in `pulls` with its error and moves nothing: the next pull starts from the
//! same watermark and catches up. [`backfill`] pulls a past window chunk by chunk.

pub(crate) mod backfill;
pub mod files;

use crate::config::CentreConfig;
use crate::domain::time::rfc3339;
use crate::sources::{LineError, LiveSource, Parsed, PullSettings, SourceContext};
use crate::store::{IngestStats, PullRecord, Store, StoreError};
use files::{FileImport, ImportError};
use std::path::PathBuf;

/// A live pull that was stored.
#[derive(Debug)]
pub(crate) struct LivePull {
    /// Centre id.
    pub centre: String,
    /// Source id.
    pub source: String,
    /// Window pulled, epoch seconds `[from, to)`.
    pub window: (i64, i64),
    /// The watermark after the pull.
    pub watermark: i64,
    /// What the ingest did.
    pub stats: IngestStats,
    /// First rejected records (all are counted in `stats.rejected`).
    pub rejections: Vec<LineError>,
    /// Where the data came from (command, URL, API version, Slurm release).
    pub origin: String,
}

impl LivePull {
    /// Log what the pull did (a line), each kept rejection, and records of clusters the centre
    /// does not list.
    pub fn log(&self) {
        let s = &self.stats;
        tracing::info!(
            centre = self.centre,
            source = self.source,
            from = %rfc3339(self.window.0),
            to = %rfc3339(self.window.1),
            records = s.records,
            inserted = s.inserted,
            replaced = s.replaced,
            unchanged = s.unchanged,
            rejected = s.rejected,
            origin = self.origin,
            "pulled"
        );
        log_doubts(&self.centre, &self.rejections, s);
    }
}

/// Log an ingest's kept rejections and its records of clusters the centre does not list (they
/// are charged anyway).
pub(crate) fn log_doubts(centre: &str, rejections: &[LineError], s: &IngestStats) {
    for r in rejections {
        tracing::warn!(centre, "rejected {r}");
    }
    for (cluster, n) in &s.unknown_clusters {
        tracing::warn!(centre, cluster, records = n, "records of a cluster this centre does not list (charged anyway)");
    }
}

/// A pull that failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PullError {
    /// The source could not be read; recorded in `pulls`, watermark unchanged.
    #[error("centre {centre}, source {source_id}: {message}")]
    Source {
        /// Centre id.
        centre: String,
        /// Source id.
        source_id: String,
        /// What went wrong.
        message: String,
    },
    /// The store failed; nothing of the pull was written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The window of the next pull of a source at `now`: from the watermark less the overlap (or
/// the first-pull reach), to `now`.
pub(crate) fn next_window(settings: &PullSettings, watermark: Option<i64>, now: i64) -> (i64, i64) {
    let from = match watermark {
        Some(w) => w - settings.overlap_s,
        None => now - settings.first_pull_s,
    };
    (from.min(now), now)
}

/// What a live source of `centre` is given to read what it observes at `now`.
fn context(centre: &CentreConfig, now: i64) -> SourceContext {
    SourceContext { tz: centre.tz.clone(), default_cluster: centre.clusters[0].clone(), observed_at: now }
}

/// Probe one live source of a centre at `now` (`allocwatch doctor`): [`LiveSource::probe`]
/// with the context a pull gives it; nothing is stored.
pub(crate) async fn probe_source(centre: &CentreConfig, source: &dyn LiveSource, now: i64) -> Result<String, String> {
    source.probe(&context(centre, now)).await
}

/// Pull one live source of a centre over `window` (default: [`next_window`]) at `now`.
pub(crate) async fn pull_source(
    store: &mut Store,
    centre: &CentreConfig,
    source: &dyn LiveSource,
    window: Option<(i64, i64)>,
    now: i64,
) -> Result<LivePull, PullError> {
    let settings = source.settings();
    let old = store.watermark(&centre.id, &settings.name)?;
    let (from, to) = window.unwrap_or_else(|| next_window(settings, old, now));
    let fetched = source.fetch(from, to, &context(centre, now)).await;
    let pull = PullRecord {
        centre: centre.id.clone(),
        source: settings.name.clone(),
        started_at: now,
        window: Some((from, to)),
        // A backfill of an older window never moves the watermark back.
        watermark: Some(old.map_or(to, |w| w.max(to))),
        file: None,
    };
    let fetched = match fetched {
        Ok(f) => f,
        Err(message) => {
            store.record_failed_pull(&PullRecord { watermark: None, ..pull }, &message, finished(now))?;
            return Err(PullError::Source { centre: centre.id.clone(), source_id: settings.name.clone(), message });
        }
    };
    let mut ingest = store.begin_ingest(&centre.id, &centre.tz)?;
    for item in fetched.items {
        match item {
            Ok(Parsed::Job(job)) => {
                if !centre.clusters.contains(&job.cluster) {
                    ingest.unknown_cluster(&job.cluster);
                }
                ingest.upsert(&job)?;
            }
            Ok(Parsed::Step) => ingest.skip(true),
            Ok(Parsed::NotStarted) => ingest.skip(false),
            Err(e) => ingest.reject(e),
        }
    }
    let rejections = ingest.rejections().to_vec();
    let watermark = pull.watermark.unwrap_or(to);
    let stats = ingest.commit(&pull, finished(now))?;
    Ok(LivePull { centre: centre.id.clone(), source: settings.name.clone(), window: (from, to), watermark, stats, rejections, origin: fetched.origin })
}

/// What pulling a whole centre did: each live source's pull, then each file looked at.
#[derive(Debug, Default)]
pub(crate) struct CentrePull {
    /// Live sources, in configuration order.
    pub live: Vec<Result<LivePull, PullError>>,
    /// File drops: (file, `None` when unchanged since its last import).
    pub files: Vec<(PathBuf, Result<Option<FileImport>, ImportError>)>,
}

impl CentrePull {
    /// Log every outcome (a line per pull or import, its rejections, errors) and return the
    /// failures' messages (empty when everything worked).
    pub fn log(&self, centre: &str) -> Vec<String> {
        let mut failures = Vec::new();
        for r in &self.live {
            match r {
                Ok(p) => p.log(),
                Err(e) => {
                    tracing::error!(centre, "pull failed: {e}");
                    failures.push(e.to_string());
                }
            }
        }
        for (path, r) in &self.files {
            match r {
                Ok(None) => tracing::debug!(centre, file = %path.display(), "unchanged since last import"),
                Ok(Some(imp)) => imp.log(centre),
                Err(e) => {
                    tracing::error!(centre, file = %path.display(), "import failed: {e}");
                    failures.push(e.to_string());
                }
            }
        }
        failures
    }
}

/// Pull one centre: every live source over its next window, then every file drop that is new
/// or changed. One failing source stops none of the others; what each stored is kept (each is
/// its own transaction). Only a store failure of a live pull is returned as such inside.
pub(crate) async fn pull_centre(store: &mut Store, centre: &CentreConfig, now: i64) -> CentrePull {
    let mut out = CentrePull::default();
    for source in centre.live_sources() {
        out.live.push(pull_source(store, centre, source, None, now).await);
    }
    out.files = files::import_new_files(store, centre, now);
    out
}

/// When a pull that started at `now` finished (never before it, whatever the clock does).
fn finished(now: i64) -> i64 {
    jiff::Timestamp::now().as_second().max(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_overlaps_the_watermark_or_reaches_back_on_first_pull() {
        let s = PullSettings::new("s", None, "sacct", 10, 48, 30).unwrap();
        assert_eq!(next_window(&s, None, 100 * 86_400), (70 * 86_400, 100 * 86_400));
        assert_eq!(next_window(&s, Some(1_000_000), 1_000_900), (1_000_000 - 48 * 3600, 1_000_900));
        // A watermark in the future (clock stepped back) never gives an inverted window.
        assert_eq!(next_window(&PullSettings { overlap_s: 0, ..s }, Some(2000), 1000), (1000, 1000));
    }
}
