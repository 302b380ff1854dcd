//! Accounting sources: each module turns one kind of centre data into [`JobRecord`]s.
//! Nothing outside this folder knows a source's format.
//!
//! - [`sacct`]: `sacct -P` text (files dropped by the centre, or the command's output);
//! - [`swf`]: Standard Workload Format traces, for replaying public workloads;
//! - [`slurm_json`]: Slurm's accounting job JSON (slurmrestd, `sacct --json`);
//! - [`sacct_cmd`] and [`slurmrestd`]: live sources pulled over a window, both behind the one
//!   [`LiveSource`] trait (the driver that stores what they return is `crate::pull`): a new
//!   kind of live source is one module implementing it and one configuration variant.

pub mod sacct;
pub mod sacct_cmd;
pub mod slurm_json;
pub mod slurmrestd;
pub mod swf;

pub use crate::domain::job::LineError;
use crate::domain::job::JobRecord;
use flate2::read::MultiGzDecoder;
use jiff::tz::TimeZone;
use std::future::Future;
use std::pin::Pin;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// What one input line turned out to be.
// Unboxed: each job is moved once to its consumer, and the import path borrows ([`ParsedRef`]).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// An allocation to charge.
    Job(JobRecord),
    /// A job step (`.batch`, `.extern`, `.0`): not an allocation, not charged.
    Step,
    /// A job that never started: nothing consumed.
    NotStarted,
}

/// What one input line turned out to be, when the record is written into a reused
/// [`JobRecord`] rather than returned (the import path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineKind {
    /// An allocation to charge (the record holds it).
    Job,
    /// A job step: not charged.
    Step,
    /// A job that never started.
    NotStarted,
}

/// As [`Parsed`], borrowing the job from the reader, which reuses it for the next line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParsedRef<'a> {
    /// An allocation to charge.
    Job(&'a JobRecord),
    /// A job step: not charged.
    Step,
    /// A job that never started.
    NotStarted,
}

/// A failure that stops reading a whole input (unreadable file, no usable header).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file could not be opened or read.
    #[error("{file}: {source}")]
    Io {
        /// File name.
        file: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The input cannot be interpreted at all (e.g. no header and no `--fields`).
    #[error("{0}")]
    Format(String),
}

/// The format of an accounting file.
#[derive(Debug, Clone)]
pub enum FileFormat {
    /// sacct `-P` text; `fields` is the `--format` list of a header-less dump.
    Sacct {
        /// Column list (sacct `--format` syntax) or `xdmod`; `None` means "first line is a header".
        fields: Option<String>,
    },
    /// Standard Workload Format.
    Swf,
}

/// Per-input facts the parsers need.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// Zone of the centre (civil times in sacct dumps are local).
    pub tz: TimeZone,
    /// Cluster assumed when the data names none.
    pub default_cluster: String,
    /// Observation instant (epoch seconds) for running jobs without Elapsed.
    pub observed_at: i64,
}

/// Settings every live source shares: its id, its window and its timeout.
#[derive(Debug, Clone, PartialEq)]
pub struct PullSettings {
    /// Source id in the `pulls` and `watermarks` tables (`sacct`, `slurmrestd`, or `name`).
    pub name: String,
    /// Longest a pull may take before it is abandoned (the command killed).
    pub timeout: std::time::Duration,
    /// A deep re-scan starts this long before the watermark, so that records corrected late
    /// (a runaway job fixed, an AllocTRES changed) are seen again.
    pub overlap_s: i64,
    /// Every other pull starts this long before the watermark (never more than `overlap_s`),
    /// so that jobs slurmdbd records a little late are seen; running jobs are in every window.
    pub recent_overlap_s: i64,
    /// A pull is a deep re-scan when the last one is this old (0: every pull is one).
    pub rescan_s: i64,
    /// How far back the first pull of a source goes (no watermark yet).
    pub first_pull_s: i64,
}

/// What one fetch of a live source returned.
#[derive(Debug)]
pub struct Fetched {
    /// Jobs (steps and jobs that never started included, to be counted), or errors naming the
    /// line or job at fault.
    pub items: Vec<Result<Parsed, LineError>>,
    /// Where the data came from (command, URL, API version, Slurm release), for the logs.
    pub origin: String,
}

/// A source of accounting pulled over a window: the seam between the pull driver and every
/// kind of live source.
pub trait LiveSource: Send + Sync {
    /// Its id, window and timeout.
    fn settings(&self) -> &PullSettings;
    /// Where it reads, for messages (never a secret).
    fn describe(&self) -> String;
    /// What a pull at `now` would do, in one line, for `config check` (tokens named by where
    /// they come from, never shown).
    fn plan(&self, now: i64, tz: &TimeZone) -> String;
    /// Fetch the jobs of `[from, to)` (epoch seconds). `Err` says what failed, naming the
    /// source; nothing is stored then.
    fn fetch<'a>(&'a self, from: i64, to: i64, ctx: &'a SourceContext) -> Pin<Box<dyn Future<Output = Result<Fetched, String>> + Send + 'a>>;
    /// Check, harmlessly, that a pull would work now (`allocwatch doctor`): the same request
    /// as a pull, with the configured command or endpoint, credentials and timeout, over the
    /// last minute before `ctx.observed_at`, reading what comes back as a pull would and
    /// storing nothing. `Ok` says in one line what works, `Err` what does not and why; neither
    /// shows a secret.
    fn probe<'a>(&'a self, ctx: &'a SourceContext) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;
}

/// The window a [`LiveSource::probe`] asks for: the last minute, so that it reads (almost)
/// nothing.
pub(crate) const PROBE_WINDOW_S: i64 = 60;

/// What a probe read, in words: records, and the lines or jobs a pull would reject.
pub(crate) fn probe_summary(items: &[Result<Parsed, LineError>]) -> String {
    let jobs = items.iter().filter(|i| matches!(i, Ok(Parsed::Job(_)))).count();
    let rejected: Vec<&LineError> = items.iter().filter_map(|i| i.as_ref().err()).collect();
    let mut s = format!("{jobs} job{}", if jobs == 1 { "" } else { "s" });
    if let Some(first) = rejected.first() {
        s.push_str(&format!(", {} record{} a pull would reject (first: {first})", rejected.len(), if rejected.len() == 1 { "" } else { "s" }));
    }
    s
}

/// Default reach of a deep re-scan: 2 days.
pub(crate) fn default_overlap_hours() -> u64 {
    48
}

/// Default overlap of the frequent pulls: 1 hour.
pub(crate) fn default_recent_overlap_minutes() -> u64 {
    60
}

/// Default interval between deep re-scans: 1 day.
pub(crate) fn default_rescan_hours() -> u64 {
    24
}

/// The window keys every live source table shares, as written (`timeout_seconds`,
/// `overlap_hours`, `recent_overlap_minutes`, `rescan_hours`, `first_pull_days`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PullKeys {
    pub timeout_seconds: u64,
    pub overlap_hours: u64,
    pub recent_overlap_minutes: u64,
    pub rescan_hours: u64,
    pub first_pull_days: u64,
}

/// Default reach of a first pull: 30 days.
pub(crate) fn default_first_pull_days() -> u64 {
    30
}

impl PullSettings {
    /// Validate the shared keys of a live source table (`at` names it in errors).
    pub(crate) fn new(at: &str, name: Option<String>, kind: &str, keys: PullKeys) -> Result<PullSettings, String> {
        let PullKeys { timeout_seconds, overlap_hours, recent_overlap_minutes, rescan_hours, first_pull_days } = keys;
        let name = name.unwrap_or_else(|| kind.to_string());
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
            return Err(format!("{at}.name: use letters, digits, `-`, `_`, `.` or `:`"));
        }
        if timeout_seconds == 0 {
            return Err(format!("{at}.timeout_seconds: must be at least 1"));
        }
        if timeout_seconds > 86_400 {
            return Err(format!("{at}.timeout_seconds: at most 86400 (one day)"));
        }
        if overlap_hours > 24 * 366 {
            return Err(format!("{at}.overlap_hours: at most one year ({} hours)", 24 * 366));
        }
        if recent_overlap_minutes > 60 * 24 * 366 {
            return Err(format!("{at}.recent_overlap_minutes: at most one year ({} minutes)", 60 * 24 * 366));
        }
        if rescan_hours > 24 * 366 {
            return Err(format!("{at}.rescan_hours: at most one year ({} hours); 0 makes every pull a deep re-scan", 24 * 366));
        }
        if first_pull_days == 0 || first_pull_days > 3660 {
            return Err(format!("{at}.first_pull_days: between 1 and 3660"));
        }
        Ok(PullSettings {
            name,
            timeout: std::time::Duration::from_secs(timeout_seconds),
            overlap_s: overlap_hours as i64 * 3600,
            recent_overlap_s: (recent_overlap_minutes as i64 * 60).min(overlap_hours as i64 * 3600),
            rescan_s: rescan_hours as i64 * 3600,
            first_pull_s: first_pull_days as i64 * 86_400,
        })
    }
}

/// Longest line accepted; longer ones are rejected without being held in memory.
pub(crate) const MAX_LINE_BYTES: usize = 1 << 20;

/// Open a file, transparently decompressing `.gz`.
fn open(path: &Path) -> Result<Box<dyn BufRead>, InputError> {
    let file = File::open(path).map_err(|source| InputError::Io { file: path.display().to_string(), source })?;
    let gz = path.extension().is_some_and(|e| e == "gz");
    Ok(if gz {
        Box::new(BufReader::with_capacity(1 << 16, MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::with_capacity(1 << 16, file))
    })
}

/// Read lines of bounded length; calls `f(line_number, Ok(text) | Err(reason))`.
///
/// Lines are handed out straight from the reader's buffer when they fit in it (no copy); a
/// line spanning two buffer fills is assembled in a side buffer, and one longer than
/// [`MAX_LINE_BYTES`] is skipped without being held in memory.
fn for_each_line<F>(mut r: impl BufRead, file: &str, mut f: F) -> Result<(), InputError>
where
    F: FnMut(u64, Result<&str, String>) -> Result<(), InputError>,
{
    let io = |source| InputError::Io { file: file.into(), source };
    let too_long = || Err(format!("line longer than {MAX_LINE_BYTES} bytes"));
    let mut carry: Vec<u8> = Vec::new();
    let mut skipping = false;
    let mut n = 0u64;
    loop {
        let chunk = r.fill_buf().map_err(io)?;
        if chunk.is_empty() {
            // A last line without its newline.
            if skipping {
                deliver(&mut f, n + 1, too_long())?;
            } else if !carry.is_empty() {
                deliver(&mut f, n + 1, Ok(&carry))?;
            }
            return Ok(());
        }
        let len = chunk.len();
        let mut pos = 0;
        while let Some(i) = memchr::memchr(b'\n', &chunk[pos..]) {
            let line = &chunk[pos..pos + i];
            pos += i + 1;
            n += 1;
            if skipping {
                skipping = false;
                deliver(&mut f, n, too_long())?;
            } else if carry.is_empty() {
                deliver(&mut f, n, if line.len() > MAX_LINE_BYTES { too_long() } else { Ok(line) })?;
            } else {
                carry.extend_from_slice(line);
                deliver(&mut f, n, if carry.len() > MAX_LINE_BYTES { too_long() } else { Ok(&carry) })?;
                carry.clear();
            }
        }
        if !skipping {
            carry.extend_from_slice(&chunk[pos..]);
            if carry.len() > MAX_LINE_BYTES {
                skipping = true;
                carry = Vec::new();
            }
        }
        r.consume(len);
    }
}

/// One line to the callback of [`for_each_line`]: trailing `\r` removed, UTF-8 checked.
fn deliver<F>(f: &mut F, n: u64, line: Result<&[u8], String>) -> Result<(), InputError>
where
    F: FnMut(u64, Result<&str, String>) -> Result<(), InputError>,
{
    match line {
        Err(reason) => f(n, Err(reason)),
        Ok(mut bytes) => {
            while let [rest @ .., b'\r'] = bytes {
                bytes = rest;
            }
            match std::str::from_utf8(bytes) {
                Ok(s) => f(n, Ok(s)),
                Err(e) => f(n, Err(format!("not valid UTF-8 at byte {}", e.valid_up_to()))),
            }
        }
    }
}

/// Resolve a `--fields` value: a column list, or `xdmod` for Open XDMoD's 26-field dumps.
pub(crate) fn resolve_fields(fields: &str) -> &str {
    if fields.eq_ignore_ascii_case("xdmod") {
        sacct::XDMOD_FIELDS
    } else {
        fields
    }
}

/// Stream every record of an accounting file to `sink`. Malformed lines reach `sink` as
/// `Err(LineError)`; only failures that make the whole input unreadable are returned.
pub fn read_file(
    path: &Path,
    format: &FileFormat,
    ctx: &SourceContext,
    mut sink: impl FnMut(Result<Parsed, LineError>),
) -> Result<(), InputError> {
    read_file_with(path, format, ctx, |r| sink(r.map(ParsedRef::to_owned)))
}

/// As [`read_file`], lending each record instead of allocating one per line (the import path).
pub fn read_file_with(
    path: &Path,
    format: &FileFormat,
    ctx: &SourceContext,
    sink: impl FnMut(Result<ParsedRef<'_>, LineError>),
) -> Result<(), InputError> {
    let name = path.display().to_string();
    let reader = open(path)?;
    read_stream_with(reader, &name, format, ctx, sink)
}

/// As [`read_file`], over any reader (`name` appears in messages).
pub fn read_stream(
    reader: impl BufRead,
    name: &str,
    format: &FileFormat,
    ctx: &SourceContext,
    mut sink: impl FnMut(Result<Parsed, LineError>),
) -> Result<(), InputError> {
    read_stream_with(reader, name, format, ctx, |r| sink(r.map(ParsedRef::to_owned)))
}

impl ParsedRef<'_> {
    /// The owned form.
    pub(crate) fn to_owned(self) -> Parsed {
        match self {
            ParsedRef::Job(j) => Parsed::Job(j.clone()),
            ParsedRef::Step => Parsed::Step,
            ParsedRef::NotStarted => Parsed::NotStarted,
        }
    }
}

fn lend(kind: LineKind, rec: &JobRecord) -> ParsedRef<'_> {
    match kind {
        LineKind::Job => ParsedRef::Job(rec),
        LineKind::Step => ParsedRef::Step,
        LineKind::NotStarted => ParsedRef::NotStarted,
    }
}

/// As [`read_file_with`], over any reader (`name` appears in messages).
pub(crate) fn read_stream_with(
    reader: impl BufRead,
    name: &str,
    format: &FileFormat,
    ctx: &SourceContext,
    mut sink: impl FnMut(Result<ParsedRef<'_>, LineError>),
) -> Result<(), InputError> {
    let mut rec = JobRecord::empty();
    match format {
        FileFormat::Sacct { fields } => {
            let mut parser: Option<sacct::SacctParser> = match fields {
                Some(list) => Some(sacct::SacctParser {
                    columns: sacct::Columns::from_names(resolve_fields(list))
                        .map_err(|e| InputError::Format(format!("--fields: {e}")))?,
                    tz: ctx.tz.clone(),
                    default_cluster: ctx.default_cluster.clone(),
                    observed_at: ctx.observed_at,
                }),
                None => None,
            };
            for_each_line(reader, name, |n, line| {
                let text = match line {
                    Ok(t) => t,
                    Err(reason) => {
                        sink(Err(LineError { file: name.into(), line: n, field: None, reason }));
                        return Ok(());
                    }
                };
                if text.trim().is_empty() {
                    return Ok(());
                }
                match &parser {
                    Some(p) => {
                        // A dump may repeat its header (concatenated dumps): skip it.
                        if sacct::Columns::is_header(text) {
                            return Ok(());
                        }
                        match p.parse_line_into(name, n, text, &mut rec) {
                            Ok(kind) => sink(Ok(lend(kind, &rec))),
                            Err(e) => sink(Err(e)),
                        }
                    }
                    None => {
                        if !sacct::Columns::is_header(text) {
                            let hint = if text.contains(',') && !text.contains('|') {
                                " (it looks comma-separated: allocwatch reads `sacct -P` output, which is |-separated)"
                            } else {
                                ""
                            };
                            return Err(InputError::Format(format!(
                                "{name}:{n}: the first line is not a sacct header (JobID|…){hint}; \
                                 give the dump's columns with --fields (or --fields xdmod for Open XDMoD's 26-field dumps)"
                            )));
                        }
                        let columns = sacct::Columns::from_names(text)
                            .map_err(|e| InputError::Format(format!("{name}:{n}: header: {e}")))?;
                        parser = Some(sacct::SacctParser {
                            columns,
                            tz: ctx.tz.clone(),
                            default_cluster: ctx.default_cluster.clone(),
                            observed_at: ctx.observed_at,
                        });
                    }
                }
                Ok(())
            })
        }
        FileFormat::Swf => {
            let mut header = swf::SwfHeader::default();
            for_each_line(reader, name, |n, line| {
                match line {
                    Err(reason) => sink(Err(LineError { file: name.into(), line: n, field: None, reason })),
                    Ok(t) if t.trim_start().starts_with(';') => header.absorb(t),
                    Ok(t) if t.trim().is_empty() => {}
                    Ok(t) => match swf::parse_line_into(&header, &ctx.default_cluster, name, n, t, &mut rec) {
                        Ok(kind) => sink(Ok(lend(kind, &rec))),
                        Err(e) => sink(Err(e)),
                    },
                }
                Ok(())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], capacity: usize) -> Vec<(u64, Result<String, String>)> {
        let mut out = Vec::new();
        for_each_line(BufReader::with_capacity(capacity, input), "f", |n, l| {
            out.push((n, l.map(str::to_string)));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn lines_across_buffer_fills_crlf_overlong_and_unterminated() {
        let mut input = b"ab|c\r\n\nxyz-123456789\n".to_vec();
        input.extend(std::iter::repeat(b'x').take(MAX_LINE_BYTES + 1));
        input.extend(b"\nok\n\xff\nlast");
        for capacity in [3, 7, 64, 1 << 16] {
            let got = lines(&input, capacity);
            let want: Vec<(u64, Result<String, String>)> = vec![
                (1, Ok("ab|c".into())),
                (2, Ok("".into())),
                (3, Ok("xyz-123456789".into())),
                (4, Err(format!("line longer than {MAX_LINE_BYTES} bytes"))),
                (5, Ok("ok".into())),
                (6, Err("not valid UTF-8 at byte 0".into())),
                (7, Ok("last".into())),
            ];
            assert_eq!(got, want, "buffer of {capacity} bytes");
        }
        // A line of exactly the limit is kept.
        let exact = vec![b'y'; MAX_LINE_BYTES];
        assert_eq!(lines(&exact, 1 << 16).len(), 1);
        assert!(lines(&exact, 1 << 16)[0].1.is_ok());
    }
}
