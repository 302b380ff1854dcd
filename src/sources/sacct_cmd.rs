//! The `sacct` command as a live source: run as an argv (never through a shell), locally or
//! behind a command prefix such as `ssh -o BatchMode=yes ops@login`, with a timeout that
//! kills it, over an explicit window. Its output is read by the [`super::sacct`] text parser
//! (or, with `output = "json"`, by the [`super::slurm_json`] decoder).
//!
//! Times are made unambiguous: the window is passed as `uts<epoch>` (Slurm's own epoch
//! syntax, independent of any time zone), and sacct prints epoch seconds because it runs with
//! `SLURM_TIME_FORMAT=%s` — set in its environment locally, or through `env` after the prefix.
//! When a prefix cannot run `env` (`remote_env = false`), sacct prints civil times, which are
//! read in the centre's configured time zone.

use super::sacct::{Columns, DEFAULT_FIELDS};
use jiff::tz::TimeZone;
use super::{read_stream, slurm_json, Fetched, FileFormat, LineError, LiveSource, Parsed, PullKeys, PullSettings, SourceContext, PROBE_WINDOW_S};
use serde::Deserialize;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// What sacct is asked to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SacctOutput {
    /// `-P` text with `--format` = [`DEFAULT_FIELDS`] (the default).
    Parsable,
    /// `--json`: the same job JSON as slurmrestd (Slurm ≥ 21.08).
    Json,
}

/// A configured sacct source, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SacctSource {
    /// Source id, window and timeout.
    pub settings: PullSettings,
    /// Command prefix (argv), e.g. `["ssh", "-o", "BatchMode=yes", "ops@login"]`; empty: local.
    pub command_prefix: Vec<String>,
    /// The sacct program (path or name looked up in PATH, on the far side of the prefix).
    pub sacct: String,
    /// Extra arguments appended to the command line (e.g. `["--qos=normal"]`).
    pub extra_args: Vec<String>,
    /// Clusters passed as `-M`; empty: sacct's default (the local cluster).
    pub clusters: Vec<String>,
    /// Whether the prefix can run `env VAR=… sacct` (ssh, sudo can); else civil times are read
    /// in the centre's zone.
    pub remote_env: bool,
    /// Text or JSON.
    pub output: SacctOutput,
}

/// The `[[centre.source]] kind = "sacct"` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSacctSource {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    command_prefix: Vec<String>,
    #[serde(default = "default_sacct")]
    sacct: String,
    #[serde(default = "default_timeout")]
    timeout_seconds: u64,
    #[serde(default = "super::default_overlap_hours")]
    overlap_hours: u64,
    #[serde(default = "super::default_recent_overlap_minutes")]
    recent_overlap_minutes: u64,
    #[serde(default = "super::default_rescan_hours")]
    rescan_hours: u64,
    #[serde(default = "super::default_first_pull_days")]
    first_pull_days: u64,
    #[serde(default)]
    extra_args: Vec<String>,
    #[serde(default)]
    clusters: Vec<String>,
    #[serde(default = "yes")]
    remote_env: bool,
    #[serde(default = "parsable")]
    output: SacctOutput,
}

fn default_sacct() -> String {
    "sacct".into()
}
fn default_timeout() -> u64 {
    300
}
fn yes() -> bool {
    true
}
fn parsable() -> SacctOutput {
    SacctOutput::Parsable
}

impl RawSacctSource {
    /// The window keys, for [`PullSettings::new`].
    fn pull_keys(&self) -> PullKeys {
        PullKeys {
            timeout_seconds: self.timeout_seconds,
            overlap_hours: self.overlap_hours,
            recent_overlap_minutes: self.recent_overlap_minutes,
            rescan_hours: self.rescan_hours,
            first_pull_days: self.first_pull_days,
        }
    }

    /// Validate; `at` names the table in errors (`centre[0] (id = "x").source[1]`).
    pub fn validate(self, at: &str) -> Result<SacctSource, String> {
        let keys = self.pull_keys();
        let settings = PullSettings::new(at, self.name, "sacct", keys)?;
        if self.sacct.trim().is_empty() {
            return Err(format!("{at}.sacct: must name the sacct program"));
        }
        if let Some(i) = self.command_prefix.iter().position(|a| a.is_empty()) {
            return Err(format!("{at}.command_prefix[{i}]: empty argument"));
        }
        for (i, a) in self.extra_args.iter().enumerate() {
            let lower = a.to_ascii_lowercase();
            // These would change the columns or the window allocwatch relies on.
            let owned = ["-o", "--format", "-n", "--noheader", "-S", "--starttime", "-E", "--endtime", "-p", "--parsable", "--json", "--yaml"];
            if owned.iter().any(|o| lower == *o || (o.starts_with("--") && lower.starts_with(&format!("{o}=")))) {
                return Err(format!("{at}.extra_args[{i}]: `{a}` is set by allocwatch itself (columns, header and window)"));
            }
        }
        if let Some(i) = self.clusters.iter().position(|c| c.is_empty() || c.contains(',')) {
            return Err(format!("{at}.clusters[{i}]: one cluster name per element"));
        }
        Ok(SacctSource {
            settings,
            command_prefix: self.command_prefix,
            sacct: self.sacct,
            extra_args: self.extra_args,
            clusters: self.clusters,
            remote_env: self.remote_env,
            output: self.output,
        })
    }
}

impl SacctSource {
    /// The argv that fetches `[from, to)` (epoch seconds), and the environment set on the
    /// local process; `tz` is the centre's zone. Pure, so that the exact command line is tested.
    pub fn command(&self, from: i64, to: i64, tz: &TimeZone) -> (Vec<String>, Vec<(String, String)>) {
        let mut argv = self.command_prefix.clone();
        // Text: epoch output. JSON (epoch anyway): UTC for the civil window bounds it needs;
        // 22.05's `sacct --json` re-parses its own -S/-E printed with SLURM_TIME_FORMAT, so
        // `%s` there makes it refuse the window.
        let vars: &[(&str, &str)] = match self.output {
            SacctOutput::Parsable => &[("SLURM_TIME_FORMAT", "%s"), ("TZ", "UTC")],
            SacctOutput::Json => &[("TZ", "UTC")],
        };
        let mut env = Vec::new();
        let zone_known = self.command_prefix.is_empty() || self.remote_env;
        if self.command_prefix.is_empty() {
            env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        } else if self.remote_env {
            argv.push("env".to_string());
            argv.extend(vars.iter().map(|(k, v)| format!("{k}={v}")));
        }
        argv.push(self.sacct.clone());
        // -a all users, -D every run of a requeued job, -S/-E the window (uts: epoch seconds).
        argv.extend(["-a", "-D"].map(String::from));
        match self.output {
            // -X allocations only, -P parsable, --noconvert raw counts.
            SacctOutput::Parsable => {
                argv.extend(["-X", "-P", "--noconvert"].map(String::from));
                argv.push(format!("--format={DEFAULT_FIELDS}"));
            }
            // --json ignores -X (steps are nested in each job, and skipped).
            SacctOutput::Json => argv.push("--json".into()),
        }
        match self.output {
            SacctOutput::Parsable => argv.extend(["-S".to_string(), format!("uts{from}"), "-E".to_string(), format!("uts{to}")]),
            // 22.05's `sacct --json` refuses `uts…`: civil times, in UTC when sacct runs with
            // TZ=UTC, else in the centre's zone (assumed to be the far side's).
            SacctOutput::Json => {
                let zone = if zone_known { TimeZone::UTC } else { tz.clone() };
                argv.extend(["-S".to_string(), civil(from, &zone), "-E".to_string(), civil(to, &zone)]);
            }
        }
        if !self.clusters.is_empty() {
            argv.extend(["-M".to_string(), self.clusters.join(",")]);
        }
        argv.extend(self.extra_args.iter().cloned());
        (argv, env)
    }

    /// The command that would run for `[from, to)`, as one line (for `config check` and logs).
    pub(crate) fn command_line(&self, from: i64, to: i64, tz: &TimeZone) -> String {
        self.command(from, to, tz).0.join(" ")
    }

    /// A short description for messages and the `pulls` table.
    pub fn describe(&self) -> String {
        let mut s = self.command_prefix.join(" ");
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(&self.sacct);
        s
    }

    /// Run sacct over `[from, to)` and parse what it prints.
    pub async fn run(&self, from: i64, to: i64, ctx: &SourceContext) -> Result<Vec<Result<Parsed, LineError>>, String> {
        let (argv, env) = self.command(from, to, &ctx.tz);
        let out = run_command(&argv, &env, self.settings.timeout).await?;
        let name = format!("sacct output ({})", self.describe());
        match self.output {
            SacctOutput::Parsable => parse_parsable(&out, &name, ctx),
            SacctOutput::Json => {
                let doc: serde_json::Value = serde_json::from_slice(&out).map_err(|e| format!("{name}: invalid JSON: {e}"))?;
                Ok(slurm_json::decode_jobs(&doc, &name, &ctx.default_cluster, ctx.observed_at)?.items)
            }
        }
    }
}

impl LiveSource for SacctSource {
    fn settings(&self) -> &PullSettings {
        &self.settings
    }

    fn describe(&self) -> String {
        SacctSource::describe(self)
    }

    fn plan(&self, now: i64, tz: &TimeZone) -> String {
        format!("runs `{}`", self.command_line(now - self.settings.overlap_s, now, tz))
    }

    fn fetch<'a>(&'a self, from: i64, to: i64, ctx: &'a SourceContext) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Fetched, String>> + Send + 'a>> {
        Box::pin(async move { Ok(Fetched { items: self.run(from, to, ctx).await?, origin: SacctSource::describe(self) }) })
    }

    /// The pull's own command line (prefix, environment, timeout) over the last minute; its
    /// output read by the pull's own reader, so the header check is the one pulls make.
    fn probe<'a>(&'a self, ctx: &'a SourceContext) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + 'a>> {
        Box::pin(async move {
            let now = ctx.observed_at;
            let items = self.run(now - PROBE_WINDOW_S, now, ctx).await?;
            let (how, read) = match self.output {
                SacctOutput::Parsable => ("", format!("its header has the {} columns allocwatch reads", DEFAULT_FIELDS.split(',').count())),
                SacctOutput::Json => (" --json", "its job JSON decodes".to_string()),
            };
            Ok(format!("`{}{how}` ran over the last minute: {read}; {}", SacctSource::describe(self), super::probe_summary(&items)))
        })
    }
}

/// Read `sacct -P --format=DEFAULT_FIELDS` output: the header must list exactly the columns
/// asked for (anything else means the command line or the site's sacct is not what allocwatch
/// expects, and guessing would mis-charge); records go through the shared sacct parser, bad
/// lines are returned as errors with their line numbers and the rest is kept.
pub(crate) fn parse_parsable(out: &[u8], name: &str, ctx: &SourceContext) -> Result<Vec<Result<Parsed, LineError>>, String> {
    let text = std::str::from_utf8(out).map_err(|e| format!("{name}: not UTF-8 at byte {}", e.valid_up_to()))?;
    let Some(header) = text.lines().find(|l| !l.trim().is_empty()) else {
        return Err(format!("{name}: sacct printed nothing, not even its header line"));
    };
    let want: Vec<String> = DEFAULT_FIELDS.split(',').map(|s| s.to_ascii_lowercase()).collect();
    let got: Vec<String> = header.split('|').map(|s| s.trim().to_ascii_lowercase()).collect();
    if got != want {
        return Err(format!(
            "{name}: unexpected columns `{}`; allocwatch asked for `{}` (check extra_args and the site's sacct)",
            truncate(header, 300),
            DEFAULT_FIELDS.replace(',', "|")
        ));
    }
    // sacct ends every line with a newline: output that stops mid-line was cut short (a
    // dropped connection behind the prefix, a killed process). Storing what came would move
    // the watermark past records never seen: refuse the whole pull instead.
    if !text.ends_with('\n') {
        let last = text.rsplit('\n').next().unwrap_or("");
        return Err(format!(
            "{name}: output truncated: line {} stops mid-record (`{}`); nothing stored, the next pull retries",
            text.lines().count(),
            truncate(last, 80)
        ));
    }
    // The header is already known to be one the parser understands.
    debug_assert!(Columns::from_names(header).is_ok());
    let mut items = Vec::new();
    read_stream(out, name, &FileFormat::Sacct { fields: None }, ctx, |item| items.push(item)).map_err(|e| e.to_string())?;
    Ok(items)
}

/// `YYYY-MM-DDTHH:MM:SS` of an instant in a zone (sacct's civil input format).
fn civil(s: i64, tz: &TimeZone) -> String {
    match jiff::Timestamp::from_second(s) {
        Ok(t) => t.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S").to_string(),
        Err(_) => format!("uts{s}"),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Longest stderr quoted in an error message.
const STDERR_QUOTED_CHARS: usize = 2000;

/// Run an argv (never a shell) with extra environment variables, no stdin, and a timeout.
/// Returns stdout on exit status 0; otherwise an error quoting stderr. On timeout the whole
/// process group is killed (a prefix such as `ssh` or a wrapper script may have children); so
/// it is when the returned future is dropped before the command ended (a pull abandoned at
/// shutdown), or `kill_on_drop` would reach the direct child only.
pub(crate) async fn run_command(argv: &[String], env: &[(String, String)], timeout: Duration) -> Result<Vec<u8>, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let shown = argv.join(" ");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| format!("cannot run `{program}`: {e}"))?;
    let pid = child.id();
    let mut group = GroupGuard(pid);
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let result = tokio::time::timeout(timeout, async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let read_out = async {
            match stdout.as_mut() {
                Some(s) => s.read_to_end(&mut out).await.map(|_| ()),
                None => Ok(()),
            }
        };
        let read_err = async {
            match stderr.as_mut() {
                Some(s) => s.read_to_end(&mut err).await.map(|_| ()),
                None => Ok(()),
            }
        };
        let (r1, r2, status) = tokio::join!(read_out, read_err, child.wait());
        r1.and(r2).map_err(|e| format!("reading the output of `{shown}`: {e}"))?;
        Ok::<_, String>((status.map_err(|e| format!("waiting for `{shown}`: {e}"))?, out, err))
    })
    .await;
    if result.is_ok() {
        group.0 = None; // the leader was waited for: nothing of ours is left to kill
    }
    match result {
        Err(_elapsed) => {
            drop(group); // kills the group
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(format!("`{shown}` timed out after {} s (killed)", timeout.as_secs()))
        }
        Ok(Err(e)) => Err(e),
        Ok(Ok((status, out, err))) => {
            if status.success() {
                return Ok(out);
            }
            // One line, for logs and the `pulls` table.
            let err = String::from_utf8_lossy(&err);
            let err = err.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
            let tail: String = if err.chars().count() > STDERR_QUOTED_CHARS {
                let skip = err.chars().count() - STDERR_QUOTED_CHARS;
                format!("…{}", err.chars().skip(skip).collect::<String>())
            } else {
                err.to_string()
            };
            let how = match status.code() {
                Some(c) => format!("exited with status {c}"),
                None => format!("was killed ({status})"),
            };
            Err(if tail.is_empty() { format!("`{shown}` {how} (nothing on stderr)") } else { format!("`{shown}` {how}: {tail}") })
        }
    }
}

/// Kills the child's process group when dropped, unless disarmed (`.0 = None`) once the
/// child has been waited for.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            kill_group(pid);
        }
    }
}

/// SIGKILL a process group we created (`process_group(0)` makes the child its leader).
fn kill_group(pid: u32) {
    if let Ok(pgid) = i32::try_from(pid) {
        if pgid > 0 {
            // SAFETY: kill(2) with a negative pid signals exactly that process group, which is
            // the one our child leads; no memory is involved.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(prefix: &[&str], remote_env: bool) -> SacctSource {
        let raw: RawSacctSource = toml::from_str(&format!(
            "command_prefix = {:?}\nremote_env = {remote_env}\nclusters = [\"jz\"]\nextra_args = [\"--qos=normal\"]",
            prefix
        ))
        .unwrap();
        raw.validate("s").unwrap()
    }

    fn ctx() -> SourceContext {
        SourceContext { tz: TimeZone::get("Europe/Paris").unwrap(), default_cluster: "jz".into(), observed_at: 2_000_000_000 }
    }

    #[test]
    fn local_command_sets_epoch_times_in_the_environment() {
        let (argv, env) = source(&[], true).command(100, 200, &TimeZone::UTC);
        assert_eq!(
            argv.join(" "),
            format!("sacct -a -D -X -P --noconvert --format={DEFAULT_FIELDS} -S uts100 -E uts200 -M jz --qos=normal")
        );
        assert_eq!(env, vec![("SLURM_TIME_FORMAT".to_string(), "%s".to_string()), ("TZ".to_string(), "UTC".to_string())]);
    }

    #[test]
    fn prefixed_command_passes_the_environment_through_env_or_not_at_all() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        let (argv, env) = source(&["ssh", "-o", "BatchMode=yes", "ops@login"], true).command(1, 2, &paris);
        assert!(argv.join(" ").starts_with("ssh -o BatchMode=yes ops@login env SLURM_TIME_FORMAT=%s TZ=UTC sacct -a "), "{argv:?}");
        assert!(env.is_empty());
        let (argv, _) = source(&["sudo", "-u", "slurm"], false).command(1, 2, &paris);
        assert!(argv.join(" ").starts_with("sudo -u slurm sacct -a "), "{argv:?}");
        // sacct --json wants civil window bounds: UTC when TZ is passed, else the centre's zone.
        let mut json = source(&[], true);
        json.output = SacctOutput::Json;
        let t = 1795253728; // 2026-11-21T09:35:28Z
        assert!(json.command_line(t, t + 60, &paris).contains("--json -S 2026-11-21T09:35:28 -E 2026-11-21T09:36:28 -M jz"));
        assert_eq!(json.command(t, t + 60, &paris).1, vec![("TZ".to_string(), "UTC".to_string())]);
        json.command_prefix = vec!["sudo".into()];
        json.remote_env = false;
        assert!(json.command_line(t, t + 60, &paris).contains("--json -S 2026-11-21T10:35:28 -E 2026-11-21T10:36:28"));
    }

    #[test]
    fn config_errors_name_the_key() {
        let bad = |s: &str| toml::from_str::<RawSacctSource>(s).unwrap().validate("centre[0].source[1]").unwrap_err();
        assert_eq!(bad("timeout_seconds = 0"), "centre[0].source[1].timeout_seconds: must be at least 1");
        assert!(bad("extra_args = [\"--format=JobID\"]").starts_with("centre[0].source[1].extra_args[0]: `--format=JobID`"));
        assert!(bad("extra_args = [\"-n\"]").contains("extra_args[0]"));
        assert!(bad("command_prefix = [\"ssh\", \"\"]").contains("command_prefix[1]"));
        assert!(bad("clusters = [\"a,b\"]").contains("clusters[0]"));
        assert!(toml::from_str::<RawSacctSource>("sacct_path = \"x\"").unwrap_err().to_string().contains("sacct_path"));
    }

    #[test]
    fn parsable_output_epoch_and_civil_with_bad_lines_counted() {
        let out = format!(
            "{}\n1|1|jz|cpu_p1|ABC|alice|1795253728|1795253731|3|2|1|billing=2,cpu=2,mem=512M,node=1|COMPLETED|60\n\
             2|2|jz|cpu_p1|abc|alice|2026-11-21T10:35:28|2026-11-21T10:35:31|3|2|1|cpu=2|COMPLETED|UNLIMITED\n\
             oops|x\n\
             9|9|jz|lab_hold|abc|alice|None|1795253735|0|1|0||CANCELLED by 0|60\n",
            DEFAULT_FIELDS.replace(',', "|")
        );
        let items = parse_parsable(out.as_bytes(), "out", &ctx()).unwrap();
        assert_eq!(items.len(), 4);
        let Ok(Parsed::Job(a)) = &items[0] else { panic!("{:?}", items[0]) };
        let Ok(Parsed::Job(b)) = &items[1] else { panic!("{:?}", items[1]) };
        // Civil times are read in the centre's zone (Paris is UTC+1 in November).
        assert_eq!((a.start_s, b.start_s, a.account.as_str()), (1795253728, 1795253728, "abc"));
        assert_eq!((a.time_limit_s, b.time_limit_s), (Some(3600), None));
        let e = items[2].as_ref().unwrap_err();
        assert_eq!(e.line, 4);
        assert_eq!(items[3], Ok(Parsed::NotStarted));
    }

    #[test]
    fn unexpected_or_missing_header_is_refused() {
        let e = parse_parsable(b"JobID|State\n1|COMPLETED\n", "out", &ctx()).unwrap_err();
        assert!(e.contains("unexpected columns `JobID|State`"), "{e}");
        let e = parse_parsable(b"1|1|jz|p|a|u|1|2|1|1|1|cpu=1|COMPLETED\n", "out", &ctx()).unwrap_err();
        assert!(e.contains("unexpected columns"), "{e}");
        assert!(parse_parsable(b"", "out", &ctx()).unwrap_err().contains("printed nothing"));
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn command_failure_quotes_stderr_and_timeout_kills_the_group() {
        let rt = rt();
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let e = rt
            .block_on(run_command(&argv(&["sh", "-c", "echo 'sacct: error: Problem talking to the database' >&2; exit 1"]), &[], Duration::from_secs(5)))
            .unwrap_err();
        assert!(e.contains("exited with status 1: sacct: error: Problem talking to the database"), "{e}");
        let e = rt.block_on(run_command(&argv(&["/nonexistent/sacct"]), &[], Duration::from_secs(5))).unwrap_err();
        assert!(e.contains("cannot run `/nonexistent/sacct`"), "{e}");
        let out = rt
            .block_on(run_command(&argv(&["sh", "-c", "printf %s \"$SLURM_TIME_FORMAT\""]), &[("SLURM_TIME_FORMAT".into(), "%s".into())], Duration::from_secs(5)))
            .unwrap();
        assert_eq!(out, b"%s");
        // A wrapper whose child keeps running: both must be gone after the timeout.
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let started = std::time::Instant::now();
        let e = rt.block_on(run_command(&argv(&["sh", "-c", &script]), &[], Duration::from_secs(1))).unwrap_err();
        assert!(e.contains("timed out after 1 s (killed)"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_gone(&pidfile, "the timeout");
    }

    /// The process whose pid a script wrote to `pidfile` ends (a zombie counts as ended).
    fn assert_gone(pidfile: &std::path::Path, after: &str) {
        let grandchild: i32 = std::fs::read_to_string(pidfile).unwrap().trim().parse().unwrap();
        // SIGKILL is delivered at once, but the zombie may linger until its parent is reaped:
        // poll /proc with a deadline rather than sleeping.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).ok();
            let alive = state.as_deref().is_some_and(|s| !s.rsplit(") ").next().unwrap_or("").starts_with('Z'));
            if !alive {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the wrapper's child {grandchild} survived {after}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A pull abandoned at shutdown drops the command's future: the wrapper's children go too.
    #[test]
    fn dropping_a_running_command_kills_its_whole_group() {
        let rt = rt();
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 300 & echo $! > {}.tmp && mv {0}.tmp {0}; wait", pidfile.display());
        let argv: Vec<String> = ["sh", "-c", &script].iter().map(|s| s.to_string()).collect();
        rt.block_on(async {
            let run = run_command(&argv, &[], Duration::from_secs(600));
            tokio::pin!(run);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while !pidfile.exists() {
                assert!(tokio::time::Instant::now() < deadline, "the wrapper never started its child");
                tokio::select! {
                    r = &mut run => panic!("the command ended on its own: {r:?}"),
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        }); // `run` is dropped here, mid-command
        assert_gone(&pidfile, "its command being dropped");
    }
}
