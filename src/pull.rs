//! Pulls of live sources (sacct, slurmrestd): fetch a window, then store its records, the
//! pull's bookkeeping and the source's new watermark in ONE store transaction.
//!
//! Each pull covers `[watermark − overlap, now)` — or, for a source never pulled, the last
//! `first_pull_days` — so jobs recorded late, corrected, or still running are seen again and
//! upserted (never double-counted). A failed fetch is recorded in `pulls` with its error and
//! moves nothing: the next pull starts from the same watermark and catches up.

use crate::config::{Centre, SourceConfig};
use crate::ledger::{IngestStats, PullRecord, Store, StoreError};
use crate::sources::{LineError, Parsed, PullSettings, SourceContext};

/// A live pull that was stored.
#[derive(Debug)]
pub struct LivePull {
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
            from = %crate::alerts::rfc3339(self.window.0),
            to = %crate::alerts::rfc3339(self.window.1),
            records = s.records,
            inserted = s.inserted,
            replaced = s.replaced,
            unchanged = s.unchanged,
            rejected = s.rejected,
            origin = self.origin,
            "pulled"
        );
        for r in &self.rejections {
            tracing::warn!(centre = self.centre, source = self.source, "rejected {r}");
        }
        for (cluster, n) in &s.unknown_clusters {
            tracing::warn!(centre = self.centre, cluster, records = n, "records of a cluster this centre does not list (charged anyway)");
        }
    }
}

/// A pull that failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
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
pub fn next_window(settings: &PullSettings, watermark: Option<i64>, now: i64) -> (i64, i64) {
    let from = match watermark {
        Some(w) => w - settings.overlap_s,
        None => now - settings.first_pull_s,
    };
    (from.min(now), now)
}

/// Pull one live source of a centre over `window` (default: [`next_window`]) at `now`.
pub async fn pull_source(
    store: &mut Store,
    centre: &Centre,
    source: &SourceConfig,
    window: Option<(i64, i64)>,
    now: i64,
) -> Result<LivePull, PullError> {
    let Some(settings) = source.live() else {
        return Err(PullError::Source {
            centre: centre.id.clone(),
            source_id: "files".into(),
            message: "file drops are imported, not pulled over a window".into(),
        });
    };
    let old = store.watermark(&centre.id, &settings.name)?;
    let (from, to) = window.unwrap_or_else(|| next_window(settings, old, now));
    let ctx = SourceContext { tz: centre.tz.clone(), default_cluster: centre.clusters[0].clone(), observed_at: now };
    let fetched = match source {
        SourceConfig::Sacct(s) => s.fetch(from, to, &ctx).await.map(|items| (items, s.describe())),
        SourceConfig::Slurmrestd(r) => r.fetch(from, to, &ctx).await.map(|f| {
            let release = f.release.map(|r| format!(", Slurm {r}")).unwrap_or_default();
            (f.items, format!("{} {}{release}", r.describe(), f.api_version))
        }),
        SourceConfig::Files { .. } => Err("file drops are imported, not pulled over a window".to_string()),
    };
    let pull = PullRecord {
        centre: centre.id.clone(),
        source: settings.name.clone(),
        started_at: now,
        window: Some((from, to)),
        // A backfill of an older window never moves the watermark back.
        watermark: Some(old.map_or(to, |w| w.max(to))),
        file: None,
    };
    let (items, origin) = match fetched {
        Ok(x) => x,
        Err(message) => {
            store.record_failed_pull(&PullRecord { watermark: None, ..pull }, &message, finished(now))?;
            return Err(PullError::Source { centre: centre.id.clone(), source_id: settings.name.clone(), message });
        }
    };
    let mut ingest = store.begin_ingest(&centre.id, &centre.tz)?;
    for item in items {
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
    Ok(LivePull { centre: centre.id.clone(), source: settings.name.clone(), window: (from, to), watermark, stats, rejections, origin })
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
