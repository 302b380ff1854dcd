//! Pulls: a centre's accounting into the ledger. One function pulls a whole centre —
//! [`pull_centre`], called by `check`, `pull`-less cycles and every tick of the daemon — through
//! the live sources' one trait ([`LiveSource`]) and the file drops ([`files`]).
//!
//! A live pull fetches a window, then stores its records, the pull's bookkeeping and the
//! source's new watermark in ONE store transaction. A pull covers `[watermark − recent overlap,
//! now)` (an hour by default: jobs slurmdbd records a little late; running jobs are in every
//! window), and once a day a deep re-scan covers `[watermark − overlap, now)` (48 h: records
//! corrected late) — see [`next_window`] — or, for a source never pulled, the last
//! `first_pull_days`; what is seen again is upserted (never double-counted). A failed
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
    /// Whether it was a deep re-scan (the full overlap, or a first pull).
    pub deep: bool,
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
            deep = self.deep,
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

/// Which window a pull asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// The next window of the source ([`next_window`]).
    Next,
    /// A deep re-scan now, whenever the last one was (`allocwatch pull --deep`).
    Deep,
    /// An explicit window (`pull --from/--to`, a backfill chunk); never counts as a re-scan.
    Window(i64, i64),
}

/// The window of a source's next pull at `now`, and whether it is a deep re-scan: a source
/// never pulled reaches back `first_pull_days`; otherwise the pull starts `overlap_hours`
/// before the watermark when the last deep re-scan is `rescan_hours` old (or unknown, or
/// `deep` is asked), else `recent_overlap_minutes` before it. So slurmdbd sends each finished
/// job a few times instead of once per pull for two days, and a record corrected within the
/// overlap is still read again within a day.
pub(crate) fn next_window(settings: &PullSettings, watermark: Option<i64>, last_deep: Option<i64>, deep: bool, now: i64) -> ((i64, i64), bool) {
    let (from, deep) = match watermark {
        None => (now - settings.first_pull_s, true),
        Some(w) => {
            let due = deep || settings.rescan_s == 0 || last_deep.is_none_or(|d| now - d >= settings.rescan_s);
            (w - if due { settings.overlap_s } else { settings.recent_overlap_s }, due)
        }
    };
    ((from.min(now), now), deep)
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

/// Pull one live source of a centre over the window `reach` says, at `now`.
pub(crate) async fn pull_source(store: &mut Store, centre: &CentreConfig, source: &dyn LiveSource, reach: Reach, now: i64) -> Result<LivePull, PullError> {
    let settings = source.settings();
    let old = store.watermark(&centre.id, &settings.name)?;
    let ((from, to), deep) = match reach {
        Reach::Window(from, to) => ((from, to), false),
        Reach::Next | Reach::Deep => {
            let last_deep = store.last_deep_scan(&centre.id, &settings.name)?;
            next_window(settings, old, last_deep, reach == Reach::Deep, now)
        }
    };
    let fetched = source.fetch(from, to, &context(centre, now)).await;
    let pull = PullRecord {
        centre: centre.id.clone(),
        source: settings.name.clone(),
        started_at: now,
        window: Some((from, to)),
        // A backfill of an older window never moves the watermark back.
        watermark: Some(old.map_or(to, |w| w.max(to))),
        deep_scan: deep,
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
    Ok(LivePull { centre: centre.id.clone(), source: settings.name.clone(), window: (from, to), deep, watermark, stats, rejections, origin: fetched.origin })
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
        out.live.push(pull_source(store, centre, source, Reach::Next, now).await);
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

    fn settings(overlap_hours: u64, recent_overlap_minutes: u64, rescan_hours: u64) -> PullSettings {
        let keys = crate::sources::PullKeys { timeout_seconds: 10, overlap_hours, recent_overlap_minutes, rescan_hours, first_pull_days: 30 };
        PullSettings::new("s", None, "sacct", keys).unwrap()
    }

    #[test]
    fn window_overlaps_the_watermark_or_reaches_back_on_first_pull() {
        const H: i64 = 3600;
        let s = settings(48, 60, 24);
        let (w, now) = (1_000_000, 1_000_900);
        // (watermark, last deep re-scan, --deep, now) -> (window, deep)
        let cases: &[(Option<i64>, Option<i64>, bool, i64, (i64, i64), bool)] = &[
            // never pulled: the first-pull reach, which counts as a re-scan
            (None, None, false, 100 * 86_400, (70 * 86_400, 100 * 86_400), true),
            // no re-scan recorded (a store older than re-scans): a deep one
            (Some(w), None, false, now, (w - 48 * H, now), true),
            // re-scanned an hour ago: the recent overlap only
            (Some(w), Some(now - H), false, now, (w - H, now), false),
            // just under a day: still recent; a day exactly: deep
            (Some(w), Some(now - 24 * H + 1), false, now, (w - H, now), false),
            (Some(w), Some(now - 24 * H), false, now, (w - 48 * H, now), true),
            // asked for (`pull --deep`)
            (Some(w), Some(now - H), true, now, (w - 48 * H, now), true),
            // a watermark in the future (clock stepped back) never gives an inverted window
            (Some(now + 5000), Some(now), false, now, (now, now), false),
        ];
        for &(wm, last, ask, at, window, deep) in cases {
            assert_eq!(next_window(&s, wm, last, ask, at), (window, deep), "{wm:?} {last:?} {ask} {at}");
        }
        // rescan_hours = 0: every pull is deep (the behaviour before re-scans); the recent
        // overlap is never longer than the deep one.
        assert_eq!(next_window(&settings(48, 60, 0), Some(w), Some(now), false, now), ((w - 48 * H, now), true));
        assert_eq!(next_window(&settings(0, 60, 24), Some(w), Some(now), false, now), ((w, now), false));
        assert_eq!(settings(2, 600, 24).recent_overlap_s, 2 * H);
    }

    /// How often a finished job is fetched, before and after re-scans: with 15-minute pulls,
    /// a job is in the window of the pull after its end and of every pull for 48 h more
    /// (1 + 192 = 193) when every pull overlaps 48 h; with a 1 h recent overlap and a daily
    /// 48 h re-scan, in the 5 pulls of the next 75 minutes and 2 re-scans: 7.
    #[test]
    fn rescans_read_each_finished_job_a_few_times_not_once_per_pull_for_two_days() {
        let count = |s: &PullSettings| {
            let (end, step) = (10 * 86_400 + 7 * 60, 15 * 60); // a job ending between two pulls
            let (mut wm, mut last_deep, mut seen) = (None, None, 0);
            let mut now = 8 * 86_400;
            while now < 14 * 86_400 {
                let ((from, to), deep) = next_window(s, wm, last_deep, false, now);
                if from <= end && end < to {
                    seen += 1;
                }
                wm = Some(to);
                if deep {
                    last_deep = Some(now);
                }
                now += step;
            }
            seen
        };
        assert_eq!(count(&settings(48, 60, 0)), 193);
        assert_eq!(count(&settings(48, 60, 24)), 7);
    }
}
