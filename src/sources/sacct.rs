//! `sacct --parsable2` text (`-P`), with a header line or with an explicit `--format` list.
//!
//! This module is the only place that knows sacct's columns, time formats and TRES strings.
//! Times may be epoch seconds (`SLURM_TIME_FORMAT=%s`, unambiguous) or sacct's default
//! `YYYY-MM-DDTHH:MM:SS`, which is local time of the centre and is read in its time zone.

use super::{LineError, LineKind};
#[cfg(test)]
use super::Parsed;
use crate::domain::job::{JobRecord, Units};
use jiff::{civil::DateTime, tz::TimeZone};

/// Which position holds each field the ledger needs.
#[derive(Debug, Clone, Default)]
pub struct Columns {
    names: Vec<String>,
    job_id: Option<usize>,
    job_id_raw: Option<usize>,
    cluster: Option<usize>,
    partition: Option<usize>,
    account: Option<usize>,
    user: Option<usize>,
    start: Option<usize>,
    end: Option<usize>,
    elapsed: Option<usize>,
    elapsed_raw: Option<usize>,
    alloc_cpus: Option<usize>,
    alloc_nodes: Option<usize>,
    alloc_tres: Option<usize>,
    state: Option<usize>,
    time_limit_raw: Option<usize>,
    time_limit: Option<usize>,
    /// Index of a trailing free-text column (JobName, Comment…) that may itself contain `|`.
    free_text_last: bool,
}

/// The 26 columns Open XDMoD asks sacct for; its dumps carry no header line.
pub(crate) const XDMOD_FIELDS: &str = "jobid,jobidraw,cluster,partition,qos,account,group,gid,user,uid,\
submit,eligible,start,end,elapsed,exitcode,state,nnodes,ncpus,reqcpus,reqmem,reqtres,alloctres,\
timelimit,nodelist,jobname";

/// The columns allocwatch itself asks sacct for (see the sacct source of the pull issue).
pub(crate) const DEFAULT_FIELDS: &str =
    "JobIDRaw,JobID,Cluster,Partition,Account,User,Start,End,ElapsedRaw,AllocCPUS,AllocNodes,AllocTRES,State,TimelimitRaw";

impl Columns {
    /// Map a list of sacct field names (header line or `--format` list, `|` or `,` separated).
    /// Fails when a field the ledger cannot do without is missing.
    pub(crate) fn from_names(list: &str) -> Result<Columns, String> {
        let sep = if list.contains('|') { '|' } else { ',' };
        let names: Vec<String> = list.split(sep).map(|s| s.trim().to_string()).collect();
        let mut c = Columns { names: names.clone(), ..Default::default() };
        for (i, n) in names.iter().enumerate() {
            // sacct accepts `Field%width`; the width is irrelevant to parsable output.
            let key = n.split('%').next().unwrap_or("").to_ascii_lowercase();
            let slot = match key.as_str() {
                "jobid" => &mut c.job_id,
                "jobidraw" => &mut c.job_id_raw,
                "cluster" => &mut c.cluster,
                "partition" => &mut c.partition,
                "account" => &mut c.account,
                "user" => &mut c.user,
                "start" => &mut c.start,
                "end" => &mut c.end,
                "elapsed" => &mut c.elapsed,
                "elapsedraw" => &mut c.elapsed_raw,
                "alloccpus" | "ncpus" => &mut c.alloc_cpus,
                "allocnodes" | "nnodes" => &mut c.alloc_nodes,
                "alloctres" => &mut c.alloc_tres,
                "state" => &mut c.state,
                "timelimitraw" => &mut c.time_limit_raw,
                "timelimit" => &mut c.time_limit,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(i);
            }
        }
        let last = names.last().map(|s| s.to_ascii_lowercase()).unwrap_or_default();
        c.free_text_last = matches!(last.as_str(), "jobname" | "comment" | "submitline" | "workdir" | "constraints");
        let mut missing = Vec::new();
        if c.job_id_raw.is_none() && c.job_id.is_none() {
            missing.push("JobIDRaw (or JobID)");
        }
        if c.start.is_none() {
            missing.push("Start");
        }
        if c.end.is_none() {
            missing.push("End");
        }
        if c.account.is_none() {
            missing.push("Account");
        }
        if c.alloc_tres.is_none() && c.alloc_cpus.is_none() {
            missing.push("AllocTRES (or AllocCPUS/NCPUS)");
        }
        if !missing.is_empty() {
            return Err(format!("sacct columns lack {}: got `{}`", missing.join(", "), names.join("|")));
        }
        Ok(c)
    }

    /// Whether a line looks like a header of these columns rather than a record.
    pub(crate) fn is_header(line: &str) -> bool {
        // Records start with their job id; checked first, it spares every record the rest.
        if line.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            return false;
        }
        let first = line.split('|').next().unwrap_or("").trim().to_ascii_lowercase();
        first == "jobid" || first == "jobidraw" || (line.to_ascii_lowercase().contains("|start|") && !line.starts_with(|c: char| c.is_ascii_digit()))
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no columns.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Parses sacct `-P` lines for one centre.
#[derive(Debug, Clone)]
pub(crate) struct SacctParser {
    /// Column positions.
    pub columns: Columns,
    /// Time zone for sacct's civil (non-epoch) timestamps.
    pub tz: TimeZone,
    /// Cluster to use when the dump has no Cluster column.
    pub default_cluster: String,
    /// Instant (epoch seconds) at which the data was observed: the end of the charged window
    /// of a running job when sacct gives no Elapsed for it.
    pub observed_at: i64,
}

impl SacctParser {
    /// Parse one data line (1-based `line` number for errors).
    #[cfg(test)]
    pub(crate) fn parse_line(&self, file: &str, line: u64, text: &str) -> Result<Parsed, LineError> {
        let mut rec = JobRecord::empty();
        Ok(match self.parse_line_into(file, line, text, &mut rec)? {
            LineKind::Job => Parsed::Job(rec),
            LineKind::Step => Parsed::Step,
            LineKind::NotStarted => Parsed::NotStarted,
        })
    }

    /// As [`SacctParser::parse_line`], writing a job into `rec` (reusing its strings' memory:
    /// the import path parses millions of lines). `rec` is fully overwritten when the line is a
    /// job, and left in an unspecified state otherwise.
    pub(crate) fn parse_line_into(&self, file: &str, line: u64, text: &str, rec: &mut JobRecord) -> Result<LineKind, LineError> {
        let err = |field: Option<&str>, reason: String| LineError {
            file: file.to_string(),
            line,
            field: field.map(str::to_string),
            reason,
        };
        let n = self.columns.len();
        let mut on_stack = [""; 32];
        let mut on_heap;
        let fields: &mut [&str] = if n <= on_stack.len() {
            &mut on_stack[..n]
        } else {
            on_heap = vec![""; n];
            &mut on_heap
        };
        split_fields(text, self.columns.free_text_last, fields)
            .map_err(|found| err(None, format!("expected {n} fields, found {found}")))?;
        let fields = &*fields;
        let get = |i: Option<usize>| i.map(|i| trim(fields[i])).unwrap_or("");
        let c = &self.columns;
        let job_id = get(c.job_id);
        let raw = get(c.job_id_raw);
        let shown = if job_id.is_empty() { raw } else { job_id };
        // Job steps (`123.batch`, `123.0`, `123.extern`) are not allocations; `-X` omits them.
        if shown.as_bytes().contains(&b'.') {
            return Ok(LineKind::Step);
        }
        let (raw_field, raw_text) = if !raw.is_empty() { ("JobIDRaw", raw) } else { ("JobID", job_id) };
        let job_id_raw = parse_job_id(raw_text).ok_or_else(|| {
            err(Some(raw_field), format!("`{}` is not a Slurm job id", truncate(raw_text)))
        })?;
        let start = parse_time(get(c.start), &self.tz).map_err(|r| err(Some("Start"), r))?;
        let Some(mut start_s) = start else {
            // Never started (pending, cancelled before start): nothing was consumed.
            return Ok(LineKind::NotStarted);
        };
        let end = parse_time(get(c.end), &self.tz).map_err(|r| err(Some("End"), r))?;
        let state = get(c.state);
        let elapsed = if c.elapsed_raw.is_some() && !get(c.elapsed_raw).is_empty() {
            Some(get(c.elapsed_raw).parse::<i64>().map_err(|_| {
                err(Some("ElapsedRaw"), format!("`{}` is not a number of seconds", truncate(get(c.elapsed_raw))))
            })?)
        } else if c.elapsed.is_some() && !get(c.elapsed).is_empty() {
            Some(parse_elapsed(get(c.elapsed)).map_err(|r| err(Some("Elapsed"), r))?)
        } else {
            None
        };
        if matches!(elapsed, Some(e) if e < 0) {
            return Err(err(Some("Elapsed"), "negative elapsed time".into()));
        }
        let mut end = end;
        // Civil times in the hour a clock change repeats name two instants each: when the first
        // reading cannot be the job (it ends before it starts, or lasts less than it ran), the
        // pair of readings that fits the elapsed time is the job.
        if let Some(e) = end {
            if e < start_s || elapsed.is_some_and(|el| el > e - start_s) {
                if let Some((s2, e2)) = fit_in_fold(get(c.start), get(c.end), elapsed, &self.tz) {
                    (start_s, end) = (s2, Some(e2));
                }
            }
        }
        let running = ["RUNNING", "SUSPENDED", "COMPLETING"]
            .iter()
            .any(|p| state.len() >= p.len() && state.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes()));
        let (end_s, elapsed_s, provisional) = match end {
            Some(e) if !running || e > start_s => {
                if e < start_s {
                    return Err(err(Some("End"), "End is before Start".into()));
                }
                (e, elapsed.unwrap_or(e - start_s).min(e - start_s), running)
            }
            _ => {
                // Still running: charge up to when it was observed. sacct's Elapsed for a
                // running job is "now - start" at dump time, which is that observation.
                let upto = match elapsed {
                    Some(e) => start_s + e,
                    None => self.observed_at.max(start_s),
                };
                (upto, upto - start_s, true)
            }
        };
        let tres = get(c.alloc_tres);
        let t = parse_tres(tres).map_err(|r| err(Some("AllocTRES"), r))?;
        let num = |idx: Option<usize>, name: &str| -> Result<Option<u64>, LineError> {
            let v = get(idx);
            if v.is_empty() {
                return Ok(None);
            }
            v.parse::<u64>().map(Some).map_err(|_| err(Some(name), format!("`{}` is not a count", truncate(v))))
        };
        let cpus = match t.cpu {
            Some(v) => v,
            None => num(c.alloc_cpus, "AllocCPUS")?.unwrap_or(0),
        };
        let nodes = match t.node {
            Some(v) => v,
            None => num(c.alloc_nodes, "AllocNodes")?.unwrap_or(0),
        };
        // TimelimitRaw (minutes) when both are given: no format to guess.
        let time_limit_s = if c.time_limit_raw.is_some() {
            parse_time_limit_raw(get(c.time_limit_raw)).map_err(|r| err(Some("TimelimitRaw"), r))?
        } else {
            parse_time_limit(get(c.time_limit)).map_err(|r| err(Some("Timelimit"), r))?
        };
        let cluster = get(c.cluster);
        set(&mut rec.cluster, if cluster.is_empty() { &self.default_cluster } else { cluster });
        rec.job_id_raw = job_id_raw;
        set(&mut rec.job_id, shown);
        let account = get(c.account);
        if account.is_ascii() {
            rec.account.clear();
            rec.account.extend(account.bytes().map(|b| b.to_ascii_lowercase() as char));
        } else {
            rec.account = account.to_lowercase();
        }
        set(&mut rec.partition, get(c.partition));
        set(&mut rec.user, get(c.user));
        rec.start_s = start_s;
        rec.end_s = end_s;
        rec.elapsed_s = elapsed_s;
        rec.units = Units { cpus, gpus: t.gpus(), billing: t.billing.unwrap_or(cpus), nodes };
        rec.provisional = provisional;
        rec.time_limit_s = time_limit_s;
        Ok(LineKind::Job)
    }
}

/// `str::trim`, answering at once for the usual field with no surrounding space.
fn trim(s: &str) -> &str {
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(b)) if *a > b' ' && *a < 0x80 && *b > b' ' && *b < 0x80 => s,
        _ => s.trim(),
    }
}

/// Replace a string's contents, keeping its memory.
fn set(s: &mut String, v: &str) {
    s.clear();
    s.push_str(v);
}

/// Split a `-P` line into exactly `out.len()` fields; a trailing free-text column keeps any
/// surplus `|`. On a count mismatch, returns the number of fields found.
fn split_fields<'t>(text: &'t str, free_text_last: bool, out: &mut [&'t str]) -> Result<(), usize> {
    let n = out.len();
    let mut k = 0;
    let mut start = 0;
    let mut extra = 0;
    for_each_pipe(text.as_bytes(), |p| {
        if k + 1 < n {
            out[k] = &text[start..p];
            start = p + 1;
            k += 1;
        } else {
            extra += 1;
        }
    });
    if k + 1 < n || (extra > 0 && !free_text_last) {
        return Err(k + 1 + extra);
    }
    // Separators are ASCII, so `start` is on a character boundary.
    out[n - 1] = &text[start..];
    Ok(())
}

/// Call `f` with the position of every `|`, scanning 8 bytes at a time (exact per-byte
/// matching: no false positives), since a line holds a separator every dozen bytes.
fn for_each_pipe(b: &[u8], mut f: impl FnMut(usize)) {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const PIPES: u64 = 0x7c7c_7c7c_7c7c_7c7c;
    let mut chunks = b.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        let x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ PIPES;
        // High bit of a byte set iff that byte of x is zero, i.e. the input byte is `|`.
        let mut m = !(((x & LOW7) + LOW7) | x | LOW7);
        while m != 0 {
            f(base + (m.trailing_zeros() / 8) as usize);
            m &= m - 1;
        }
        base += 8;
    }
    for (i, &c) in chunks.remainder().iter().enumerate() {
        if c == b'|' {
            f(base + i);
        }
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Job ids: `123`, or for a JobID column without JobIDRaw, `123_4` / `123+1` (the numeric
/// prefix is not unique then, so those forms are only accepted as JobIDRaw-less fallbacks
/// when they are plain numbers).
fn parse_job_id(s: &str) -> Option<u64> {
    s.parse::<u64>().ok()
}

/// `Unknown`, `None` and empty mean "no time"; digits are epoch seconds; otherwise sacct's
/// `YYYY-MM-DDTHH:MM:SS` in the centre's zone.
pub(crate) fn parse_time(s: &str, tz: &TimeZone) -> Result<Option<i64>, String> {
    if s.is_empty() || s.eq_ignore_ascii_case("unknown") || s.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().map(Some).map_err(|_| format!("`{}` is not an epoch time", truncate(s)));
    }
    // The usual shape, without jiff's general parser (same answer; see `civil`).
    if let Some(local) = crate::domain::civil::parse_civil(s) {
        if let Some(t) = crate::domain::civil::with_clock(tz, |c| c.instant_of_local(local)) {
            return Ok(Some(t));
        }
    }
    let dt: DateTime = s.parse().map_err(|_| format!("`{}` is not a time (want YYYY-MM-DDTHH:MM:SS or epoch seconds)", truncate(s)))?;
    let z = dt.to_zoned(tz.clone()).map_err(|e| format!("`{s}`: {e}"))?;
    Ok(Some(z.timestamp().as_second()))
}

/// Both instants a time names in `tz`, (earlier, later): the same unless it is a civil time in
/// the hour a clock change repeats (epoch seconds name one).
fn occurrences(s: &str, tz: &TimeZone) -> Option<(i64, i64)> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let t = s.parse().ok()?;
        return Some((t, t));
    }
    let dt: DateTime = s.parse().ok()?;
    let amb = tz.to_ambiguous_timestamp(dt);
    Some((amb.earlier().ok()?.as_second(), amb.later().ok()?.as_second()))
}

/// The (start, end) readings of civil `start` and `end` that make a job of `elapsed` seconds
/// (at least that long, the closest): none when no reading does.
fn fit_in_fold(start: &str, end: &str, elapsed: Option<i64>, tz: &TimeZone) -> Option<(i64, i64)> {
    let ((s0, s1), (e0, e1)) = (occurrences(start, tz)?, occurrences(end, tz)?);
    let need = elapsed.unwrap_or(0);
    [(s0, e0), (s0, e1), (s1, e0), (s1, e1)].into_iter().filter(|(s, e)| e - s >= need).min_by_key(|(s, e)| (e - s - need, *s))
}

/// sacct's elapsed format: `[D-]HH:MM:SS`, `MM:SS`, or `MM:SS.mmm`.
pub(crate) fn parse_elapsed(s: &str) -> Result<i64, String> {
    let bad = || format!("`{}` is not an elapsed time ([D-]HH:MM:SS)", truncate(s));
    let (days, rest) = match split_once_byte(s, b'-') {
        Some((d, r)) => (d.parse::<i64>().map_err(|_| bad())?, r),
        None => (0, s),
    };
    let mut parts = [""; 3];
    let mut count = 0;
    for p in ByteSplit::new(rest, b':') {
        if count == parts.len() {
            return Err(bad());
        }
        parts[count] = p;
        count += 1;
    }
    let num = |p: &str| -> Result<i64, String> {
        let p = split_once_byte(p, b'.').map(|x| x.0).unwrap_or(p);
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 9 {
            return Err(bad());
        }
        Ok(p.bytes().fold(0i64, |v, b| v * 10 + (b - b'0') as i64))
    };
    let secs = match &parts[..count] {
        [h, m, sec] => num(h)? * 3600 + num(m)? * 60 + num(sec)?,
        [m, sec] => num(m)? * 60 + num(sec)?,
        _ => return Err(bad()),
    };
    days.checked_mul(86400).and_then(|d| d.checked_add(secs)).ok_or_else(bad)
}

/// `s.split_once(sep)` for an ASCII separator, by a plain byte scan (short fields: cheaper
/// than the general searcher).
fn split_once_byte(s: &str, sep: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|b| b == sep)?;
    // `sep` is ASCII, so `i` and `i + 1` are character boundaries.
    Some((&s[..i], &s[i + 1..]))
}

/// `s.split(sep)` for an ASCII separator, by a plain byte scan.
struct ByteSplit<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> ByteSplit<'a> {
    fn new(s: &'a str, sep: u8) -> ByteSplit<'a> {
        ByteSplit { rest: Some(s), sep }
    }
}

impl<'a> Iterator for ByteSplit<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        match split_once_byte(s, self.sep) {
            Some((head, tail)) => {
                self.rest = Some(tail);
                Some(head)
            }
            None => {
                self.rest = None;
                Some(s)
            }
        }
    }
}

/// Whether sacct wrote a time limit that is not a duration: `UNLIMITED` (INFINITE),
/// `Partition_Limit` (none set on the job: the partition's applies), or nothing (a zero limit,
/// which Slurm reads as none: `--time=0`). A zero duration is read as none too.
fn no_time_limit(s: &str) -> bool {
    s.is_empty() || s.eq_ignore_ascii_case("unlimited") || s.eq_ignore_ascii_case("partition_limit")
}

/// sacct's `TimelimitRaw`: whole minutes, in seconds; `None` for no limit (see [`no_time_limit`]).
pub(crate) fn parse_time_limit_raw(s: &str) -> Result<Option<i64>, String> {
    if no_time_limit(s) {
        return Ok(None);
    }
    match s.parse::<i64>() {
        Ok(m) if (0..=i64::MAX / 60).contains(&m) => Ok(Some(m * 60).filter(|&s| s > 0)),
        _ => Err(format!("`{}` is not a number of minutes (or UNLIMITED, Partition_Limit)", truncate(s))),
    }
}

/// sacct's `Timelimit`: `[D-]HH:MM:SS` or `MM:SS`, in seconds; `None` for no limit (see
/// [`no_time_limit`]).
pub(crate) fn parse_time_limit(s: &str) -> Result<Option<i64>, String> {
    if no_time_limit(s) {
        return Ok(None);
    }
    parse_elapsed(s)
        .map(|t| Some(t).filter(|&t| t > 0))
        .map_err(|_| format!("`{}` is not a time limit ([D-]HH:MM:SS, UNLIMITED or Partition_Limit)", truncate(s)))
}

/// The TRES counts allocwatch charges by.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Tres {
    /// `cpu=`.
    pub cpu: Option<u64>,
    /// `node=`.
    pub node: Option<u64>,
    /// `billing=`.
    pub billing: Option<u64>,
    /// `gres/gpu=`.
    pub gpu_untyped: Option<u64>,
    /// Sum of `gres/gpu:<type>=`.
    pub gpu_typed: u64,
}

impl Tres {
    /// GPUs: the untyped count when Slurm gives it (it then also lists typed ones), else the
    /// sum of the typed counts.
    pub fn gpus(&self) -> u64 {
        self.gpu_untyped.unwrap_or(self.gpu_typed)
    }
}

/// Parse `billing=12,cpu=12,gres/gpu:a100=2,mem=31000M,node=1`.
pub(crate) fn parse_tres(s: &str) -> Result<Tres, String> {
    let mut t = Tres::default();
    if s.is_empty() {
        return Ok(t);
    }
    for item in ByteSplit::new(s, b',') {
        let Some((k, v)) = split_once_byte(item, b'=') else {
            return Err(format!("`{}` is not key=value", truncate(item)));
        };
        let count = || v.parse::<u64>().map_err(|_| format!("{k}=`{}` is not a count", truncate(v)));
        match k {
            "cpu" => t.cpu = Some(count()?),
            "node" => t.node = Some(count()?),
            "billing" => t.billing = Some(count()?),
            "gres/gpu" => t.gpu_untyped = Some(count()?),
            _ if k.starts_with("gres/gpu:") => t.gpu_typed += count()?,
            _ => {} // mem, energy, licenses…: not charged
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser(fields: &str) -> SacctParser {
        SacctParser {
            columns: Columns::from_names(fields).unwrap(),
            tz: TimeZone::UTC,
            default_cluster: "dflt".into(),
            observed_at: 1_000_000,
        }
    }

    #[test]
    fn civil_times_in_the_repeated_autumn_hour_are_read_by_the_elapsed_time() {
        // 2026-10-25 in Paris: 02:00–03:00 happens twice (CEST, then CET).
        let p = SacctParser { tz: TimeZone::get("Europe/Paris").unwrap(), ..parser("JobIDRaw|Cluster|Partition|Account|Start|End|Elapsed|AllocCPUS|State") };
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_second();
        // (line, start, end, elapsed): ends "before" it starts, civilly; starts before the fold
        // and ends in its second pass; wholly in the first pass; a job with no fold at all.
        let cases = [
            ("1|jz|p|a|2026-10-25T02:10:00|2026-10-25T02:05:00|00:55:00|1|COMPLETED", "2026-10-25T00:10:00Z", "2026-10-25T01:05:00Z", 55 * 60),
            ("2|jz|p|a|2026-10-25T01:50:00|2026-10-25T02:20:00|01:30:00|1|COMPLETED", "2026-10-24T23:50:00Z", "2026-10-25T01:20:00Z", 90 * 60),
            ("3|jz|p|a|2026-10-25T02:10:00|2026-10-25T02:40:00|00:30:00|1|COMPLETED", "2026-10-25T00:10:00Z", "2026-10-25T00:40:00Z", 30 * 60),
            ("4|jz|p|a|2026-10-24T10:00:00|2026-10-24T11:00:00|01:00:00|1|COMPLETED", "2026-10-24T08:00:00Z", "2026-10-24T09:00:00Z", 3600),
        ];
        for (line, start, end, elapsed) in cases {
            let j = job(&p, line);
            assert_eq!((j.start_s, j.end_s, j.elapsed_s), (at(start), at(end), elapsed), "{line}");
        }
        // No reading fits: still refused, naming the field.
        let e = p.parse_line("f", 2, "5|jz|p|a|2026-10-25T04:10:00|2026-10-25T04:05:00|00:55:00|1|COMPLETED").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("End"));
    }

    fn job(p: &SacctParser, line: &str) -> JobRecord {
        match p.parse_line("f", 1, line).unwrap() {
            Parsed::Job(j) => j,
            other => panic!("expected a job, got {other:?}"),
        }
    }

    #[test]
    fn tres_gpu_typed_and_untyped() {
        assert_eq!(parse_tres("cpu=4,gres/gpu=2,gres/gpu:a100=2").unwrap().gpus(), 2);
        assert_eq!(parse_tres("cpu=4,gres/gpu:a100=2,gres/gpu:v100=1").unwrap().gpus(), 3);
        assert_eq!(parse_tres("billing=7,cpu=4").unwrap().billing, Some(7));
        assert!(parse_tres("cpu=x").is_err());
        assert!(parse_tres("cpu").is_err());
    }

    #[test]
    fn elapsed_formats() {
        assert_eq!(parse_elapsed("10-13:27:06").unwrap(), 10 * 86400 + 13 * 3600 + 27 * 60 + 6);
        assert_eq!(parse_elapsed("00:00:24").unwrap(), 24);
        assert_eq!(parse_elapsed("05:07").unwrap(), 307);
        assert_eq!(parse_elapsed("00:15.057").unwrap(), 15);
        assert!(parse_elapsed("abc").is_err());
        assert!(parse_elapsed("1:2:3:4").is_err());
    }

    #[test]
    fn xdmod_line_is_read_with_its_26_fields() {
        let p = parser(XDMOD_FIELDS);
        let j = job(&p, "163485|163485|phillips|focaccia|chestnut|chaff|chaff|45789|noror|380693|2016-12-22T07:15:12|2016-12-22T07:15:12|2016-12-22T07:15:13|2017-01-01T20:42:19|10-13:27:06|0:0|CANCELLED by 380693|1|12|12|31000Mn|cpu=12,node=1|billing=12,cpu=12,gres/gpu=2,mem=31000M,node=1|37-14:00:00|cpn-f11-31|290d");
        assert_eq!(j.cluster, "phillips");
        assert_eq!(j.account, "chaff");
        assert_eq!(j.user, "noror");
        assert_eq!(j.elapsed_s, 10 * 86400 + 13 * 3600 + 27 * 60 + 6);
        assert_eq!(j.end_s - j.start_s, j.elapsed_s);
        assert_eq!(j.units, Units { cpus: 12, gpus: 2, billing: 12, nodes: 1 });
        assert!(!j.provisional);
        assert_eq!(j.time_limit_s, Some((37 * 24 + 14) * 3600));
    }

    #[test]
    fn time_limits_raw_and_formatted() {
        // (sacct's text, seconds) for TimelimitRaw (minutes) and Timelimit.
        for (raw, want) in [("60", Some(3600)), ("2880", Some(172_800)), ("0", None), ("UNLIMITED", None), ("Partition_Limit", None), ("", None)] {
            assert_eq!(parse_time_limit_raw(raw), Ok(want), "{raw:?}");
        }
        for bad in ["1:00:00", "-5", "1.5", "unlimitedd", "153722867280912931"] {
            assert!(parse_time_limit_raw(bad).is_err(), "{bad:?}");
        }
        let cases = [
            ("01:00:00", Some(3600)),
            ("3-00:00:00", Some(259_200)),
            ("365-00:00:00", Some(365 * 86400)),
            ("30:00", Some(1800)),
            ("00:00:00", None),
            ("UNLIMITED", None),
            ("Partition_Limit", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_time_limit(text), Ok(want), "{text:?}");
        }
        for bad in ["60", "1-", "x-01:00:00", "106751991167301-00:00:00", "1:2:3:4"] {
            assert!(parse_time_limit(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_default_fields_carry_the_time_limit_of_a_running_job() {
        // What `sacct -a -D -X -P --noconvert --format=DEFAULT_FIELDS` prints (epoch times).
        let p = parser(&DEFAULT_FIELDS.replace(',', "|"));
        let r = job(&p, "4242|4242|jz|cpu_p1|abc|alice|1795253728|Unknown|600|8|1|billing=8,cpu=8,mem=2G,node=1|RUNNING|120");
        assert_eq!((r.provisional, r.elapsed_s, r.time_limit_s), (true, 600, Some(7200)));
        assert_eq!(r.committed_unit_seconds(r.end_s).cpu, 8 * (7200 - 600));
        let r = job(&p, "4243|4243|jz|cpu_p1|abc|alice|1795253728|1795253788|60|8|1|cpu=8|COMPLETED|UNLIMITED");
        assert_eq!(r.time_limit_s, None);
        let r = job(&p, "4244|4244|jz|cpu_p1|abc|alice|1795253728|Unknown|60|8|1|cpu=8|RUNNING|Partition_Limit");
        assert_eq!((r.provisional, r.time_limit_s), (true, None));
        let e = p.parse_line("dump.txt", 3, "4245|4245|jz|cpu_p1|abc|alice|1795253728|Unknown|60|8|1|cpu=8|RUNNING|2:00:00").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (3, Some("TimelimitRaw")));
        assert!(e.reason.contains("`2:00:00` is not a number of minutes"), "{}", e.reason);
        // Both columns: TimelimitRaw wins; a step's empty limit is never read.
        let both = parser("JobID|Account|Start|End|ElapsedRaw|AllocCPUS|State|Timelimit|TimelimitRaw");
        assert_eq!(job(&both, "9|a|100|200|100|1|COMPLETED|01:00:00|90").time_limit_s, Some(5400));
        assert!(matches!(both.parse_line("f", 1, "9.batch|a|100|200|100|1|COMPLETED||").unwrap(), Parsed::Step));
        let e = parser("JobID|Account|Start|End|AllocCPUS|State|Timelimit").parse_line("f", 1, "9|a|100|200|1|COMPLETED|soon").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("Timelimit"));
    }

    #[test]
    fn pipe_in_job_name_is_kept_in_the_last_column() {
        let p = parser(XDMOD_FIELDS);
        let j = job(&p, "1|1|c|p|q|acc|g|1|u|1|2016-12-22T07:15:12|2016-12-22T07:15:12|2016-12-22T07:15:13|2016-12-22T08:15:13|01:00:00|0:0|COMPLETED|1|2|2|1Mn|||1:00:00|n1|a|b|c");
        assert_eq!(j.units.cpus, 2);
    }

    #[test]
    fn header_names_steps_pending_and_running() {
        let p = parser("JobID|JobIDRaw|Account|Partition|Start|End|ElapsedRaw|AllocCPUS|AllocTRES|State|Cluster");
        assert!(matches!(p.parse_line("f", 2, "5.batch|5.batch|a|p|100|200|100|1||COMPLETED|c").unwrap(), Parsed::Step));
        assert!(matches!(p.parse_line("f", 3, "6|6|a|p|Unknown|Unknown|0|1||PENDING|c").unwrap(), Parsed::NotStarted));
        let r = job(&p, "7|7|A|p|1000|Unknown|500|4|cpu=4,node=1|RUNNING|c");
        assert!(r.provisional);
        assert_eq!((r.end_s, r.elapsed_s), (1500, 500));
        assert_eq!(r.account, "a");
        // No elapsed: charged up to the observation instant.
        let p2 = parser("JobIDRaw|Account|Partition|Start|End|AllocCPUS|State");
        let r = job(&p2, "8|a|p|999000|Unknown|2|RUNNING");
        assert_eq!((r.end_s, r.provisional, r.cluster.as_str()), (1_000_000, true, "dflt"));
    }

    #[test]
    fn array_and_het_ids_come_from_jobidraw() {
        let p = parser("JobID|JobIDRaw|Account|Partition|Start|End|ElapsedRaw|AllocCPUS|AllocTRES|State");
        let a = job(&p, "123_4|127|a|p|100|200|100|1||COMPLETED");
        assert_eq!((a.job_id.as_str(), a.job_id_raw), ("123_4", 127));
        let h = job(&p, "200+1|201|a|p|100|200|100|1||COMPLETED");
        assert_eq!((h.job_id.as_str(), h.job_id_raw), ("200+1", 201));
    }

    #[test]
    fn errors_name_the_field() {
        let p = parser("JobIDRaw|Account|Partition|Start|End|AllocCPUS|AllocTRES|State");
        let e = p.parse_line("dump.txt", 9, "x|a|p|1|2|1||COMPLETED").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (9, Some("JobIDRaw")));
        let e = p.parse_line("dump.txt", 9, "1|a|p|yesterday|2|1||COMPLETED").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("Start"));
        let e = p.parse_line("dump.txt", 9, "1|a|p|5|2|1||COMPLETED").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("End"));
        let e = p.parse_line("dump.txt", 9, "1|a|p|1|2|1|cpu=q|COMPLETED").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("AllocTRES"));
        let e = p.parse_line("dump.txt", 9, "1|a|p|1|2").unwrap_err();
        assert!(e.reason.contains("expected 8 fields, found 5"), "{}", e.reason);
        assert!(Columns::from_names("JobID|State").is_err());
    }

    #[test]
    fn civil_times_are_read_in_the_centre_zone() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        assert_eq!(parse_time("2026-01-01T01:00:00", &paris).unwrap(), Some(1767225600));
        assert_eq!(parse_time("1767225600", &paris).unwrap(), Some(1767225600));
        assert_eq!(parse_time("Unknown", &paris).unwrap(), None);
    }
}
