//! File drops: accounting files a centre leaves somewhere (sacct `-P` dumps, SWF traces),
//! imported when new or changed — each one transaction with its bookkeeping (the file's
//! fingerprint, its `pulls` row, its rejected lines). A file that cannot be read is recorded
//! as a failed pull of the feed, so feed health and the quality report see it.

use crate::config::{CentreConfig, Config, FileKind, SourceConfig};
use crate::sources::{read_file_with, FileFormat, InputError, LineError, ParsedRef, SourceContext};
use crate::store::{IngestStats, PullRecord, Store, StoreError};
use std::path::{Path, PathBuf};

/// Failure of an import as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input cannot be read or interpreted (exit code 2).
    #[error(transparent)]
    Input(#[from] InputError),
    /// The store failed (exit code 1).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Outcome of importing one file.
#[derive(Debug)]
pub struct FileImport {
    /// The file.
    pub path: PathBuf,
    /// Counts.
    pub stats: IngestStats,
    /// First rejected lines (all are counted in `stats.rejected`).
    pub rejections: Vec<LineError>,
}

impl FileImport {
    /// Log what the import did (a line), each kept rejection, and records of clusters the
    /// centre does not list.
    pub fn log(&self, centre: &str) {
        let s = &self.stats;
        tracing::info!(
            centre,
            file = %self.path.display(),
            records = s.records,
            inserted = s.inserted,
            replaced = s.replaced,
            unchanged = s.unchanged,
            rejected = s.rejected,
            "imported"
        );
        super::log_doubts(centre, &self.rejections, s);
    }
}

/// Import one accounting file for a centre, in one transaction with its bookkeeping.
pub fn import_file(
    store: &mut Store,
    centre: &CentreConfig,
    path: &Path,
    kind: FileKind,
    fields: Option<&str>,
    now: i64,
) -> Result<FileImport, ImportError> {
    let format = match kind {
        FileKind::Sacct => FileFormat::Sacct { fields: fields.map(str::to_string) },
        FileKind::Swf => FileFormat::Swf,
    };
    let (size, mtime_ns) = fingerprint(path)?;
    // A running job without Elapsed is charged up to when the file was written.
    let observed_at = mtime_ns / 1_000_000_000;
    let ctx = SourceContext {
        tz: centre.tz.clone(),
        default_cluster: centre.clusters[0].clone(),
        observed_at: if observed_at > 0 { observed_at } else { now },
    };
    let mut ingest = store.begin_ingest(&centre.id, &centre.tz)?;
    let mut failure: Option<StoreError> = None;
    read_file_with(path, &format, &ctx, |item| {
        if failure.is_some() {
            return;
        }
        match item {
            Ok(ParsedRef::Job(job)) => {
                if !centre.clusters.contains(&job.cluster) {
                    ingest.unknown_cluster(&job.cluster);
                }
                if let Err(e) = ingest.upsert(job) {
                    failure = Some(e);
                }
            }
            Ok(ParsedRef::Step) => ingest.skip(true),
            Ok(ParsedRef::NotStarted) => ingest.skip(false),
            Err(e) => ingest.reject(e),
        }
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    let rejections = ingest.rejections().to_vec();
    let display = path.display().to_string();
    let pull = PullRecord {
        centre: centre.id.clone(),
        source: format!("file:{display}"),
        started_at: now,
        window: None,
        watermark: None,
        deep_scan: false,
        file: Some((display, size, mtime_ns)),
    };
    let stats = ingest.commit(&pull, now)?;
    Ok(FileImport { path: path.to_path_buf(), stats, rejections })
}

/// Import every configured file-drop file, of every centre, that is new or changed since its
/// last import. Returns one result per file looked at; a failing file does not stop the others.
pub fn import_all(
    store: &mut Store,
    config: &Config,
    now: i64,
) -> Vec<(String, PathBuf, Result<Option<FileImport>, ImportError>)> {
    let mut out = Vec::new();
    for centre in config.centres.values() {
        out.extend(import_new_files(store, centre, now).into_iter().map(|(path, r)| (centre.id.clone(), path, r)));
    }
    out
}

/// Import one centre's file-drop files that are new or changed (each centre is pulled on its
/// own schedule). One result per file looked at.
pub(crate) fn import_new_files(
    store: &mut Store,
    centre: &CentreConfig,
    now: i64,
) -> Vec<(PathBuf, Result<Option<FileImport>, ImportError>)> {
    let mut out = Vec::new();
    for source in &centre.sources {
        let SourceConfig::Files { paths, format, fields } = source else { continue };
        for path in expand(paths) {
            let result = (|| {
                if store.imported_file(&centre.id, &path.display().to_string())? == Some(fingerprint(&path)?) {
                    return Ok(None);
                }
                import_file(store, centre, &path, *format, fields.as_deref(), now).map(Some)
            })();
            if let Err(e) = &result {
                // A file that cannot be read is a failed pull of the feed: recorded, so feed
                // health (stale_feed) and the quality report's pull success rate see it.
                let file = path.display().to_string();
                let pull = PullRecord { centre: centre.id.clone(), source: format!("file:{file}"), started_at: now, window: None, watermark: None, deep_scan: false, file: None };
                if let Err(se) = store.record_failed_pull(&pull, &e.to_string(), now) {
                    tracing::error!(centre = %centre.id, %file, "recording the failed pull: {se}");
                }
            }
            out.push((path, result));
        }
    }
    out
}

/// A file's fingerprint: (size, modification time in ns since the epoch; 0 when unknown).
/// An unchanged fingerprint means the file was imported as it is.
fn fingerprint(path: &Path) -> Result<(i64, i64), InputError> {
    let meta = std::fs::metadata(path).map_err(|source| InputError::Io { file: path.display().to_string(), source })?;
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    Ok((meta.len() as i64, mtime_ns))
}

/// Whether the paths of a file-drop source are there and readable (`allocwatch doctor`): a
/// file must open, a directory must list, and every file an import would read (as
/// [`expand`] finds them) must open. Nothing is read further, nothing imported. `Err` names
/// every path at fault.
pub(crate) fn probe_files(paths: &[PathBuf]) -> Result<String, String> {
    let mut problems = Vec::new();
    let (mut dirs, mut files) = (0usize, 0usize);
    for p in paths {
        match std::fs::metadata(p) {
            Err(e) => problems.push(format!("{}: {e}", p.display())),
            Ok(m) if m.is_dir() => match std::fs::read_dir(p) {
                Ok(_) => dirs += 1,
                Err(e) => problems.push(format!("{}: cannot list: {e}", p.display())),
            },
            Ok(_) => {}
        }
    }
    for f in expand(paths).iter().filter(|f| f.exists()) {
        match std::fs::File::open(f) {
            Ok(_) => files += 1,
            Err(e) => problems.push(format!("{}: cannot open: {e}", f.display())),
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let s = |n: usize| if n == 1 { "" } else { "s" };
    Ok(format!("{} path{} present: {files} readable file{} ({dirs} director{} listed); nothing imported", paths.len(), s(paths.len()), s(files), if dirs == 1 { "y" } else { "ies" }))
}

/// Files named by a source: files as they are, directories as their regular files (sorted).
fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|f| f.is_file() && !f.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    out
}
