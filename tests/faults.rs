//! Faults of the outside world, through the real binary: accounting sources that hang, fail,
//! print garbage or other columns, slurmrestd answers that are errors or not JSON, and a store
//! that is locked, full or corrupted. Each time the failure is named (centre, source, file),
//! nothing is half-written, the watermark does not move, the other centres go on, and the
//! `stale_feed` rule eventually fires. Alert channels (Alertmanager, a webhook) that refuse
//! connections or never answer: nothing owed is lost, each command ends, and once the receiver
//! is back every message arrives once. InfluxDB down long enough to fill the indicator outbox:
//! the oldest points are dropped loudly and exactly the newest arrive, once.
//!
//! The misbehaving `sacct` is a script standing in for the command (that is the fault being
//! injected); the misbehaving slurmrestd is a listener in the test, for the same reason: the
//! real ones do not fail on demand. Real-server behaviour is tested in `slurm_live.rs`.

mod common;
use common::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

const HEALTHY: &str = "JobID|JobIDRaw|Cluster|Partition|Account|User|Start|End|ElapsedRaw|AllocCPUS|AllocTRES|State\n\
1|1|beta|cpu|acc|u|1767225600|1767229200|3600|4|cpu=4|COMPLETED\n";

/// Two centres: `alpha` pulls through `sacct` (the stand-in at `sacct_path`), `beta` reads a
/// healthy file drop.
fn config(dir: &Path, alpha_source: &str) -> PathBuf {
    std::fs::write(dir.join("beta.txt"), HEALTHY).unwrap();
    std::fs::write(
        dir.join("alloc.csv"),
        "project,centre,resource,period_start,period_end,granted_hours,accounts\nP1,beta,cpu,2026-01-01,2027-01-01,100,acc\n",
    )
    .unwrap();
    write_config(
        dir,
        &format!(
            r#"
[allocations]
files = ["alloc.csv"]
[[centre]]
id = "alpha"
timezone = "UTC"
clusters = ["alpha"]
[[centre.billing]]
resource = "cpu"
partitions = ["cpu"]
unit = "cpu"
{alpha_source}
[[centre]]
id = "beta"
timezone = "UTC"
clusters = ["beta"]
[[centre.billing]]
resource = "cpu"
partitions = ["cpu"]
unit = "cpu"
[[centre.source]]
kind = "files"
format = "sacct"
paths = ["beta.txt"]
[alerts.rules.stale_feed]
max_consecutive_failures = 3
"#
        ),
    )
}

fn sacct_stand_in(dir: &Path, body: &str) -> String {
    let p = dir.join("sacct");
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("[[centre.source]]\nkind = \"sacct\"\nsacct = \"{}\"\ntimeout_seconds = 2\n", p.display())
}

fn store_rows(store: &Path, sql: &str) -> Vec<Vec<String>> {
    let c = rusqlite::Connection::open(store).unwrap();
    let mut stmt = c.prepare(sql).unwrap();
    let n = stmt.column_count();
    stmt.query_map([], |r| Ok((0..n).map(|i| r.get::<_, rusqlite::types::Value>(i).map(|v| format!("{v:?}")).unwrap()).collect()))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_failing_sacct_fails_its_centre_cleanly_while_the_others_go_on() {
    // (mode, stand-in script, what the error must say)
    let cases = [
        ("exits non-zero", "echo 'sacct: error: Problem talking to the database: Connection refused' >&2; exit 1", "Connection refused"),
        ("prints garbage", "echo 'this is not sacct output'; echo '<<<>>>'", "unexpected columns `this is not sacct output`"),
        ("prints other columns", "echo 'JobID|State'; echo '1|COMPLETED'", "unexpected columns `JobID|State`"),
        ("hangs", "sleep 30", "timed out"),
        ("truncated output", "printf 'JobIDRaw|JobID|Cluster|Partition|Account|User|Start|End|ElapsedRaw|AllocCPUS|AllocNodes|AllocTRES|State|TimelimitRaw\\n17|17|alp'", "truncated"),
    ];
    for (mode, script, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), &sacct_stand_in(dir.path(), script));
        let c = cfg.to_str().unwrap();
        let t = std::time::Instant::now();
        let out = aw(&["--config", c, "check", "--at", "2026-01-10T00:00:00Z", "--format", "json"]);
        assert!(out.status.success(), "{mode}: a failing centre must not fail the check: {}", stderr(&out));
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "{mode}: the hang was not bounded");
        let err = stderr(&out);
        assert!(err.contains(needle) && err.contains("alpha"), "{mode}: the error must name the centre and say why:\n{err}");
        // beta went on: its job is in the ledger and charged to P1.
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rows[0]["consumed_hours"], 4.0, "{mode}");
        let store = dir.path().join("store.sqlite");
        // No watermark moved for alpha; the failure is recorded with its reason.
        assert!(store_rows(&store, "SELECT * FROM watermarks WHERE centre = 'alpha'").is_empty(), "{mode}");
        let failed = store_rows(&store, "SELECT error FROM pulls WHERE centre = 'alpha' AND ok = 0");
        assert_eq!(failed.len(), 1, "{mode}: {failed:?}");
        // For the malformed outputs, a partially parsed pull must store nothing.
        assert!(store_rows(&store, "SELECT 1 FROM jobs j JOIN names c ON c.id = j.centre WHERE c.name = 'alpha'").is_empty(), "{mode}");
    }
}

#[test]
fn repeated_failures_raise_stale_feed_for_operations() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sacct_stand_in(dir.path(), "echo 'sacct: error: slurmdbd down' >&2; exit 1"));
    let c = cfg.to_str().unwrap();
    for (i, at) in ["2026-01-10T00:00:00Z", "2026-01-10T00:15:00Z", "2026-01-10T00:30:00Z"].iter().enumerate() {
        let out = aw(&["--config", c, "check", "--at", at]);
        assert!(out.status.success());
        let list = ok(&["--config", c, "alerts", "list", "--format", "json"]);
        let rows: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
        let stale = rows.iter().any(|r| r["rule"] == "stale_feed" && r["subject"] == "alpha");
        assert_eq!(stale, i == 2, "after {} failed pulls: {rows:#?}", i + 1);
    }
}

/// A listener that answers every request with `response` (after `delay`).
fn bad_restd(response: &'static [u8], delay: std::time::Duration) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 8192];
            let _ = s.read(&mut buf);
            std::thread::sleep(delay);
            let _ = s.write_all(response);
        }
    });
    port
}

#[test]
fn slurmrestd_errors_are_named_and_move_nothing() {
    use std::time::Duration;
    let cases: [(&str, &'static [u8], Duration, &str); 5] = [
        ("500", b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\nconnection: close\r\n\r\noops!", Duration::ZERO, "500"),
        ("403", b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", Duration::ZERO, "403"),
        ("invalid JSON", b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 9\r\nconnection: close\r\n\r\n{\"jobs\": [", Duration::ZERO, "JSON"),
        ("not job JSON", b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 14\r\nconnection: close\r\n\r\n{\"hello\": 42 }", Duration::ZERO, "jobs"),
        ("timeout", b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", Duration::from_secs(8), "time"),
    ];
    for (mode, resp, delay, needle) in cases {
        let port = bad_restd(resp, delay);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("jwt"), "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln\n").unwrap();
        let cfg = config(
            dir.path(),
            &format!(
                "[[centre.source]]\nkind = \"slurmrestd\"\nurl = \"http://127.0.0.1:{port}\"\napi_version = \"v0.0.38\"\nuser = \"allocwatch\"\ntoken_file = \"jwt\"\ntimeout_seconds = 2\n"
            ),
        );
        let out = aw(&["--config", cfg.to_str().unwrap(), "check", "--at", "2026-01-10T00:00:00Z", "--format", "json"]);
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("alpha") && err.to_lowercase().contains(&needle.to_lowercase()), "{mode}: {err}");
        assert!(!err.contains("c2ln"), "{mode}: the token leaked: {err}");
        let store = dir.path().join("store.sqlite");
        assert!(store_rows(&store, "SELECT * FROM watermarks WHERE centre = 'alpha'").is_empty(), "{mode}");
        assert_eq!(store_rows(&store, "SELECT 1 FROM pulls WHERE centre = 'alpha' AND ok = 0").len(), 1, "{mode}");
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(rows[0]["consumed_hours"], 4.0, "{mode}: beta must go on");
    }
}

fn dump(n: usize) -> String {
    let mut s = String::from("JobID|JobIDRaw|Cluster|Partition|Account|User|Start|End|ElapsedRaw|AllocCPUS|AllocTRES|State\n");
    for i in 0..n {
        let start = 1767225600 + i as i64 * 60;
        s.push_str(&format!("{i}|{i}|beta|cpu|acc{}|user{}|{start}|{}|3600|4|cpu=4|COMPLETED\n", i % 97, i % 13, start + 3600));
    }
    s
}

#[test]
fn a_locked_store_is_named_and_the_import_goes_through_once_free() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let c = cfg.to_str().unwrap();
    std::fs::write(dir.path().join("d.txt"), dump(100)).unwrap();
    let d = dir.path().join("d.txt");
    ok(&["--config", c, "config", "check"]);
    ok(&["--config", c, "import", "--centre", "beta", "--format", "sacct", d.to_str().unwrap()]);
    // Another process holds the write lock for longer than allocwatch waits (10 s).
    let store = dir.path().join("store.sqlite");
    let mut holder = std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(14)",
            store.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = [0u8; 6];
    holder.stdout.as_mut().unwrap().read_exact(&mut line).unwrap();
    std::fs::write(dir.path().join("d2.txt"), dump(200)).unwrap();
    let d2 = dir.path().join("d2.txt");
    let out = aw(&["--config", c, "import", "--centre", "beta", "--format", "sacct", d2.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("store.sqlite") && stderr(&out).contains("locked"), "{}", stderr(&out));
    holder.kill().ok();
    holder.wait().ok();
    let out = ok(&["--config", c, "import", "--centre", "beta", "--format", "sacct", d2.to_str().unwrap()]);
    assert!(out.contains("200 records (100 new, 0 replaced, 100 unchanged)"), "{out}");
}

#[test]
fn a_corrupted_store_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let c = cfg.to_str().unwrap();
    ok(&["--config", c, "check", "--at", "2026-01-10T00:00:00Z"]);
    let store = dir.path().join("store.sqlite");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", store.display()));
    }
    std::fs::write(&store, b"this is certainly not an SQLite database, but it is long enough to look like one......").unwrap();
    let out = aw(&["--config", c, "check", "--at", "2026-01-10T00:00:00Z"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("store.sqlite") && err.contains("not a database"), "{err}");
}

#[test]
fn a_full_disk_fails_the_import_whole_and_the_store_stays_usable() {
    // A small tmpfs: needs root (the test machines run as root); elsewhere, say so.
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&mnt).status();
    if !mounted.is_ok_and(|s| s.success()) {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("cannot mount a tmpfs to fill (root is needed)");
        }
        eprintln!("SKIPPED a_full_disk: cannot mount a tmpfs here (root is needed)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let cfg = config(dir.path(), "");
    let c = cfg.to_str().unwrap();
    let store = mnt.join("store.sqlite");
    let s = store.to_str().unwrap();
    std::fs::write(dir.path().join("small.txt"), dump(50)).unwrap();
    std::fs::write(dir.path().join("big.txt"), dump(60_000)).unwrap();
    ok(&["--config", c, "--store", s, "import", "--centre", "beta", "--format", "sacct", dir.path().join("small.txt").to_str().unwrap()]);
    let out = aw(&["--config", c, "--store", s, "import", "--centre", "beta", "--format", "sacct", dir.path().join("big.txt").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("store.sqlite") && err.to_lowercase().contains("full"), "{err}");
    // Nothing of the failed import is in the ledger; the earlier one is intact.
    let usage = ok(&["--config", c, "--store", s, "usage", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&usage).unwrap();
    let jobs: i64 = rows.iter().map(|r| r["jobs"].as_i64().unwrap()).sum();
    assert_eq!(jobs, 50, "{rows:#?}");
}

// ---- alert channels and the indicator outbox: receivers down or slow ----------------------
//
// "Down" is a free port (nothing listening: the connection is refused); "slow" is a listener
// that never accepts: the kernel completes the connection (backlog), nothing reads a byte or
// answers, so only allocwatch's own timeout ends the attempt. Afterwards the messages go to the
// real Alertmanager (`AW_AM_URL`), to a webhook receiver in the test (it is the webhook's
// endpoint, not a stand-in for a third-party server), and the points to the real
// VictoriaMetrics (`AW_VM_URL`).

use std::time::{Duration, Instant};

/// Run allocwatch with `config` to its end, or kill it and fail once [`HUNG_AFTER_S`] have
/// passed (far beyond any timeout configured here, 2 to 5 s).
fn aw_within(config: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_allocwatch"));
    cmd.arg("--config").arg(config).args(args).env("ALLOCWATCH_LOG", "warn").env_remove("ALLOCWATCH_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    output_within(cmd, HUNG_AFTER_S, &format!("allocwatch {args:?}"))
}

/// Like [`aw_within`], and require success; returns stderr.
fn aw_within_ok(config: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = aw_within(config, args, env);
    assert!(out.status.success(), "allocwatch {args:?} failed ({}):\n{}", out.status, stderr(&out));
    stderr(&out)
}

/// A listener that never accepts (see above); kept open as long as the value lives.
fn silent_listener() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

/// The connections the kernel completed for a silent listener, and the first bytes each
/// carried (what the client sent before giving up).
fn backlog(l: &std::net::TcpListener) -> Vec<String> {
    l.set_nonblocking(true).unwrap();
    let mut out = Vec::new();
    while let Ok((mut s, _)) = l.accept() {
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap_or(0);
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Nothing listening.
    Down,
    /// Connected, never answered.
    Slow,
}

impl Fault {
    /// An endpoint with this fault (the listener, for `Slow`, must stay alive meanwhile).
    fn endpoint(self) -> (Option<std::net::TcpListener>, String) {
        match self {
            Fault::Down => (None, format!("http://127.0.0.1:{}", free_port())),
            Fault::Slow => {
                let (l, url) = silent_listener();
                (Some(l), url)
            }
        }
    }

    /// What the failed attempt must say: reqwest's words for the connection refused by the
    /// kernel, and for its own timeout (the configured `timeout_seconds`).
    fn reason(self) -> &'static str {
        match self {
            Fault::Down => "error sending request: error trying to connect: tcp connect error: Connection refused",
            Fault::Slow => "error sending request: operation timed out",
        }
    }
}

/// A name no earlier run against the same long-lived servers has used.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}{}x{nanos}", std::process::id())
}

/// The instant at which the alert fixture's one alert (over pace) fires.
const FIRES_AT: &str = "2026-01-11T00:00:00Z";

/// Retry at once (the test decides when), bound each attempt to 2 s.
const DELIVERY: &str = "[alerts.delivery]\nretry_initial_seconds = 0\nretry_max_seconds = 0\ntimeout_seconds = 2\n";

/// One allocation, `project`, burning 20 h/day of a 1000 h grant over 100 days from
/// 2026-01-01: over pace at [`FIRES_AT`], nothing else fires. `alerts` is the body of its
/// `[alerts]` tables (channels only: operations alerts).
struct AlertFixture {
    dir: tempfile::TempDir,
}

impl AlertFixture {
    fn new(project: &str) -> AlertFixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("alloc.csv"),
            format!("project,centre,resource,period_start,period_end,granted_hours,accounts,pi,members,committee,profile\n{project},idris,cpu,2026-01-01,2026-04-11,1000,abc,pi@faults.example,,CT1,\n"),
        )
        .unwrap();
        let base = 1767225600; // 2026-01-01T00:00:00Z
        let mut acct = String::from("JobID|JobIDRaw|Cluster|Partition|Account|User|Start|End|ElapsedRaw|AllocCPUS|AllocTRES|State\n");
        for d in 0..20 {
            let (id, start) = (1000 + d, base + d * 86400 + 3600);
            acct.push_str(&format!("{id}|{id}|jeanzay|cpu_p1|abc|user{}|{start}|{}|3600|20|cpu=20|COMPLETED\n", d % 3, start + 3600));
        }
        std::fs::write(dir.path().join("acct.txt"), acct).unwrap();
        AlertFixture { dir }
    }

    /// (Re)write the configuration with these `[alerts]` tables.
    fn config(&self, alerts: &str) -> PathBuf {
        write_config(
            self.dir.path(),
            &format!(
                "[allocations]\nfiles = [\"alloc.csv\"]\n[[centre]]\nid = \"idris\"\ntimezone = \"UTC\"\nclusters = [\"jeanzay\"]\n\
                 [[centre.billing]]\nresource = \"cpu\"\npartitions = [\"cpu_p1\"]\nunit = \"cpu\"\n\
                 [[centre.source]]\nkind = \"files\"\nformat = \"sacct\"\npaths = [\"acct.txt\"]\n{alerts}{DELIVERY}"
            ),
        )
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("store.sqlite")
    }
}

/// A notification as the outbox holds it.
#[derive(Debug, Clone, PartialEq)]
struct Queued {
    id: i64,
    channel: String,
    state: String,
    attempts: i64,
    last_error: Option<String>,
    sent_at: Option<i64>,
}

fn notifications(store: &Path) -> Vec<Queued> {
    let c = rusqlite::Connection::open(store).unwrap();
    let mut stmt = c.prepare("SELECT id, channel, state, attempts, last_error, sent_at FROM notifications ORDER BY id").unwrap();
    stmt.query_map([], |r| Ok(Queued { id: r.get(0)?, channel: r.get(1)?, state: r.get(2)?, attempts: r.get(3)?, last_error: r.get(4)?, sent_at: r.get(5)? }))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// `alerts list --format json`.
fn alert_list(config: &Path) -> Vec<serde_json::Value> {
    let out = ok(&["--config", config.to_str().unwrap(), "alerts", "list", "--format", "json"]);
    serde_json::from_str(&out).unwrap()
}

/// The fault's attempt: `check` fires the alert, tries once, fails with the fault's reason,
/// and keeps the one message queued (nothing lost). Returns it.
fn check_under_fault(fx: &AlertFixture, config: &Path, channel: &str, what: &str, fault: Fault) -> Queued {
    let err = aw_within_ok(config, &["check", "--at", FIRES_AT], &[]);
    assert!(err.contains("alerts: 1 fired, 0 reminders, 0 resolved, 0 still firing; 1 messages queued"), "{fault:?}: {err}");
    assert!(err.contains("notifications: 0 sent, 1 failed attempts, 1 queued"), "{fault:?}: the attempt must fail and the message stay queued:\n{err}");
    let want = format!("{what}: {}", fault.reason());
    assert!(err.contains(&format!("delivery failed: {want}")), "{fault:?}: the log must say why ({want:?}):\n{err}");
    let q = notifications(&fx.store());
    assert_eq!(q.len(), 1, "{fault:?}: one message owed: {q:#?}");
    let n = q[0].clone();
    assert_eq!((n.channel.as_str(), n.state.as_str(), n.attempts, n.sent_at), (channel, "pending", 1, None), "{fault:?}: {n:#?}");
    let e = n.last_error.clone().unwrap_or_default();
    assert!(e.starts_with(&want), "{fault:?}: last_error must be the reason {want:?}, is {e:?}");
    // `alerts list` tells the operator the same.
    let alerts = alert_list(config);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!((a["rule"].as_str(), a["sent"].as_i64(), a["pending"].as_i64(), a["last_error"].as_str()), (Some("over_pace"), Some(0), Some(1), Some(e.as_str())), "{a:#}");
    n
}

/// For a slow receiver: the kernel took at least one connection, and the request was sent on
/// it (`first_line`) before the timeout gave up.
fn assert_reached(l: &std::net::TcpListener, first_line: &str) {
    let conns = backlog(l);
    assert!(!conns.is_empty(), "the slow server was never connected to");
    assert!(conns.iter().any(|c| c.starts_with(first_line)), "no connection carried {first_line:?}: {conns:#?}");
}

/// Delivery once the receiver is back: one message sent, recorded sent after 2 attempts; a
/// second pass sends nothing and changes nothing.
fn deliver_after_recovery(config: &Path, fx: &AlertFixture, failed: &Queued) -> Queued {
    let err = aw_within_ok(config, &["alerts", "deliver"], &[]);
    assert!(err.contains("notifications: 1 sent, 0 failed attempts, 0 queued"), "{err}");
    let q = notifications(&fx.store());
    assert_eq!(q.len(), 1, "{q:#?}");
    let sent = q[0].clone();
    assert_eq!((sent.id, sent.state.as_str(), sent.attempts, sent.last_error.as_deref()), (failed.id, "sent", 2, None), "{sent:#?}");
    assert!(sent.sent_at.is_some());
    let err = aw_within_ok(config, &["alerts", "deliver"], &[]);
    assert!(!err.contains("notifications:"), "a second pass must have nothing to do: {err}");
    assert_eq!(notifications(&fx.store()), vec![sent.clone()], "the second pass changed the outbox");
    sent
}

/// The Alertmanager alerts (any state) whose `project` label is `project`.
fn am_alerts(am: &str, project: &str) -> Vec<serde_json::Value> {
    let url = format!("{am}/api/v2/alerts?filter={}", urlencode(&format!("project=\"{project}\"")));
    let out = std::process::Command::new("curl").args(["-sfS", "--max-time", "10", &url]).output().expect("curl");
    assert!(out.status.success(), "GET {url}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn alertmanager_down_or_slow(test: &str, fault: Fault) {
    let Some(env) = server_env(test, &["AW_AM_URL"]) else { return };
    let am = &env["AW_AM_URL"];
    let project = unique("FAM");
    let fx = AlertFixture::new(&project);
    let (slow, url) = fault.endpoint();
    let config = fx.config(&format!("[alerts]\n[alerts.alertmanager]\nurl = \"{url}\"\n"));
    let failed = check_under_fault(&fx, &config, "alertmanager", &format!("Alertmanager {url}"), fault);
    if let Some(l) = &slow {
        assert_reached(l, "POST /api/v2/alerts HTTP/1.1");
    }
    assert!(am_alerts(am, &project).is_empty(), "nothing may reach the real Alertmanager before it is configured");

    // The real Alertmanager: delivered once, visible with the documented labels.
    let config = fx.config(&format!("[alerts]\n[alerts.alertmanager]\nurl = \"{am}\"\n"));
    deliver_after_recovery(&config, &fx, &failed);
    let got = wait_for(30, "the alert in Alertmanager", || Some(am_alerts(am, &project)).filter(|v| !v.is_empty()));
    assert_eq!(got.len(), 1, "one alert: {got:#?}");
    let a = &got[0];
    for (k, v) in [("alertname", "over_pace"), ("centre", "idris"), ("project", project.as_str()), ("resource", "cpu"), ("severity", "warning"), ("source", "allocwatch")] {
        assert_eq!(a["labels"][k].as_str(), Some(v), "label {k}: {a:#}");
    }
    assert_eq!(a["status"]["state"], "active", "{a:#}");
    let alert_id = alert_list(&config)[0]["id"].as_i64().unwrap();
    assert_eq!(a["annotations"]["alert_id"].as_str(), Some(alert_id.to_string().as_str()), "{a:#}");
}

#[test]
fn alertmanager_down_keeps_the_alert_queued_until_the_real_alertmanager_takes_it_once() {
    alertmanager_down_or_slow("alertmanager_down", Fault::Down);
}

#[test]
fn alertmanager_slow_times_out_without_hanging_and_the_alert_is_delivered_once_later() {
    alertmanager_down_or_slow("alertmanager_slow", Fault::Slow);
}

/// The webhook's endpoint: records each request's headers and body, answers 200.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

fn webhook_receiver() -> (String, Received) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/k-41", l.local_addr().unwrap());
    let got: Received = Default::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let req = read_http(&mut s);
            // Recorded before answering: once allocwatch has its 200, the request is here.
            g.lock().unwrap().push(req);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}


fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
}

fn webhook_down_or_slow(fault: Fault) {
    let project = unique("FWH");
    let fx = AlertFixture::new(&project);
    let (receiver, received) = webhook_receiver();
    let (slow, url) = fault.endpoint();
    let config = fx.config(&format!("[alerts]\n[alerts.webhook]\nurl = \"{url}/hooks/k-41\"\nformat = \"json\"\n"));
    // The error names the webhook's scheme, host and port, never its path (it may be a key).
    let failed = check_under_fault(&fx, &config, "webhook", &format!("webhook {url}"), fault);
    assert!(!failed.last_error.as_deref().unwrap_or_default().contains("k-41"), "{failed:#?}");
    if let Some(l) = &slow {
        assert_reached(l, "POST /hooks/k-41 HTTP/1.1");
    }
    assert!(received.lock().unwrap().is_empty(), "no delivery may happen during the fault");

    let config = fx.config(&format!("[alerts]\n[alerts.webhook]\nurl = \"{receiver}\"\nformat = \"json\"\n"));
    let sent = deliver_after_recovery(&config, &fx, &failed);
    // Exactly one request for the one alert, after recovery, with the message's stable key.
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "one delivery for one alert: {got:#?}");
    let (headers, body) = &got[0];
    assert!(headers.starts_with("POST /hooks/k-41 HTTP/1.1"), "{headers}");
    assert_eq!(header(headers, "idempotency-key"), Some(format!("allocwatch-notification-{}", sent.id).as_str()), "{headers}");
    assert_eq!(header(headers, "content-type"), Some("application/json"), "{headers}");
    let b: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("webhook body is not JSON ({e}): {body}"));
    let alert_id = alert_list(&config)[0]["id"].as_i64().unwrap();
    assert_eq!(b["source"], "allocwatch", "{b:#}");
    assert_eq!((b["alert"]["rule"].as_str(), b["alert"]["facts"]["project"].as_str(), b["alert"]["alert_id"].as_i64()), (Some("over_pace"), Some(project.as_str()), Some(alert_id)), "{b:#}");
}

#[test]
fn webhook_down_keeps_the_alert_queued_and_it_is_posted_once_with_its_idempotency_key() {
    webhook_down_or_slow(Fault::Down);
}

#[test]
fn webhook_slow_times_out_without_hanging_and_the_alert_is_posted_once_later() {
    webhook_down_or_slow(Fault::Slow);
}

/// The exact text of the outbox's overflow error (src/sinks/outbox.rs).
const OUTBOX_FULL: &str = "OUTBOX FULL: dropped the oldest indicator points; the sink has been unreachable too long (see `allocwatch outbox status`)";

/// The cycles of the overflow test, one simulated day apart.
const CYCLES: [&str; 4] = ["2026-01-11T00:00:00Z", "2026-01-12T00:00:00Z", "2026-01-13T00:00:00Z", "2026-01-14T00:00:00Z"];

/// Three allocations on `centre` (a point each per cycle, plus the centre's feed point), and
/// `[influxdb]` at `url` bounded to `max_points` (batches of 3, so a flush takes several
/// requests that do not follow the cycles' boundaries).
fn outbox_fixture(dir: &Path, centre: &str, url: &str, max_points: u64, extra: &str) -> PathBuf {
    let mut alloc = String::from("project,centre,resource,period_start,period_end,granted_hours,accounts,pi,members,committee,profile\n");
    let mut acct = String::from("JobID|JobIDRaw|Cluster|Partition|Account|User|Start|End|ElapsedRaw|AllocCPUS|AllocTRES|State\n");
    for (k, cpus) in [(1, 20), (2, 5), (3, 9)] {
        alloc.push_str(&format!("OB{k},{centre},cpu,2026-01-01,2026-04-11,1000,ob{k},pi@faults.example,,CT1,\n"));
        for d in 0..20 {
            let (id, start) = (k * 1000 + d, 1767225600 + d * 86400 + 3600);
            acct.push_str(&format!("{id}|{id}|c1|cpu|ob{k}|u|{start}|{}|3600|{cpus}|cpu={cpus}|COMPLETED\n", start + 3600));
        }
    }
    std::fs::write(dir.join("alloc.csv"), alloc).unwrap();
    std::fs::write(dir.join("acct.txt"), acct).unwrap();
    write_config(
        dir,
        &format!(
            "[allocations]\nfiles = [\"alloc.csv\"]\n[[centre]]\nid = \"{centre}\"\ntimezone = \"UTC\"\nclusters = [\"c1\"]\n\
             [[centre.billing]]\nresource = \"cpu\"\npartitions = [\"cpu\"]\nunit = \"cpu\"\n\
             [[centre.source]]\nkind = \"files\"\nformat = \"sacct\"\npaths = [\"acct.txt\"]\n\
             [influxdb]\nurl = \"{url}\"\norg = \"allocwatch\"\nbucket = \"allocwatch\"\ntoken_env = \"AW_TEST_TOKEN\"\ntimeout_seconds = 5\n\
             batch_size = 3\nmax_outbox_points = {max_points}\n{extra}"
        ),
    )
}

const TOKEN: (&str, &str) = ("AW_TEST_TOKEN", "faults-token");

fn outbox_status(config: &Path) -> serde_json::Value {
    serde_json::from_str(&aw_within_ok_stdout(config, &["outbox", "status", "--format", "json"])).unwrap()
}

fn aw_within_ok_stdout(config: &Path, args: &[&str]) -> String {
    let out = aw_within(config, args, &[TOKEN]);
    assert!(out.status.success(), "allocwatch {args:?} failed ({}):\n{}", out.status, stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The queued lines, oldest first.
fn queued_lines(store: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(store).unwrap();
    let mut stmt = c.prepare("SELECT line FROM outbox_points ORDER BY id").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

/// One sample as VictoriaMetrics stores a line-protocol field: (`measurement_field`, tags,
/// timestamp in ms).
type SampleKey = (String, std::collections::BTreeMap<String, String>, i64);

/// The samples of a line (no escapes in this fixture's tags and fields: checked).
fn line_samples(line: &str) -> Vec<(SampleKey, f64)> {
    let parts: Vec<&str> = line.split(' ').collect();
    assert!(parts.len() == 3 && !line.contains('\\') && !line.contains('"'), "unexpected line shape: {line}");
    let mut head = parts[0].split(',');
    let measurement = head.next().unwrap();
    let tags = head.map(|t| t.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).unwrap()).collect::<std::collections::BTreeMap<_, _>>();
    let ts_ms = parts[2].parse::<i64>().unwrap() / 1_000_000;
    parts[1]
        .split(',')
        .map(|f| {
            let (k, v) = f.split_once('=').unwrap();
            ((format!("{measurement}_{k}"), tags.clone(), ts_ms), v.trim_end_matches('i').parse::<f64>().unwrap())
        })
        .collect()
}

/// Every sample VictoriaMetrics holds for series with `centre` (after a flush of its buffers).
fn vm_samples(vm: &str, centre: &str) -> Vec<(SampleKey, f64)> {
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl").args(["-sfS", "--max-time", "10"]).args(args).output().expect("curl");
        assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    curl(&[&format!("{vm}/internal/force_flush")]);
    let body = curl(&["-G", &format!("{vm}/api/v1/export"), "--data-urlencode", &format!("match[]={{centre=\"{centre}\"}}")]);
    let mut out = Vec::new();
    for l in body.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let mut labels: std::collections::BTreeMap<String, String> = v["metric"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
        let name = labels.remove("__name__").unwrap();
        for (x, ts) in v["values"].as_array().unwrap().iter().zip(v["timestamps"].as_array().unwrap()) {
            out.push(((name.clone(), labels.clone(), ts.as_i64().unwrap()), x.as_f64().unwrap()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn at_ms(at: &str) -> i64 {
    at.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

#[test]
fn a_full_outbox_drops_the_oldest_points_loudly_and_exactly_the_newest_reach_victoriametrics_once() {
    let Some(env) = server_env("outbox_full", &["AW_VM_URL"]) else { return };
    let vm = &env["AW_VM_URL"];
    let centre = unique("ofull");
    let down = format!("http://127.0.0.1:{}", free_port());

    // How many points each cycle owes: the same cycles on an unbounded outbox.
    let reference = tempfile::tempdir().unwrap();
    let rc = outbox_fixture(reference.path(), &centre, &down, 1_000_000, "");
    let mut per_cycle = Vec::new();
    for at in CYCLES {
        aw_within_ok(&rc, &["check", "--at", at], &[TOKEN]);
        let depth = outbox_status(&rc)["depth"].as_u64().unwrap();
        per_cycle.push(depth - per_cycle.iter().sum::<u64>());
    }
    assert!(per_cycle.iter().all(|&n| n == 4), "3 allocations + 1 feed point per cycle: {per_cycle:?}");
    // Room for the two newest cycles.
    let max = per_cycle[2] + per_cycle[3];

    let dir = tempfile::tempdir().unwrap();
    let config = outbox_fixture(dir.path(), &centre, &down, max, "");
    let mut produced = 0;
    let mut dropped = 0;
    for at in CYCLES {
        let i = CYCLES.iter().position(|c| *c == at).unwrap();
        let err = aw_within_ok(&config, &["check", "--at", at], &[TOKEN]);
        produced += per_cycle[i];
        let now_dropped = produced.saturating_sub(max) - dropped;
        dropped += now_dropped;
        assert!(err.contains("Connection refused"), "cycle {at}: InfluxDB is down, the flush must say so:\n{err}");
        if now_dropped > 0 {
            assert!(err.contains(OUTBOX_FULL), "cycle {at}: {now_dropped} points over the bound, the log must say {OUTBOX_FULL:?}:\n{err}");
            assert!(err.contains(&format!("dropped={now_dropped}")) && err.contains(&format!("max_outbox_points={max}")), "cycle {at}: {err}");
        } else {
            assert!(!err.contains("OUTBOX FULL"), "cycle {at}: nothing over the bound yet:\n{err}");
        }
        let st = outbox_status(&config);
        assert_eq!((st["depth"].as_u64(), st["dropped_total"].as_u64(), st["sent_total"].as_u64()), (Some(produced.min(max)), Some(dropped), Some(0)), "cycle {at}: {st:#}");
        assert!(st["last_error"].as_str().is_some_and(|e| e.contains("Connection refused")), "{st:#}");
    }
    assert_eq!(dropped, produced - max);
    assert_eq!(dropped, per_cycle[0] + per_cycle[1], "the two oldest cycles are what was dropped");

    // What is left is exactly the two newest cycles, in order.
    let lines = queued_lines(&dir.path().join("store.sqlite"));
    let want_ts: Vec<i64> = CYCLES[2..].iter().flat_map(|at| std::iter::repeat_n(at_ms(at), 4)).collect();
    let got_ts: Vec<i64> = lines.iter().map(|l| l.rsplit(' ').next().unwrap().parse::<i64>().unwrap() / 1_000_000).collect();
    assert_eq!(got_ts, want_ts, "{lines:#?}");

    // The real VictoriaMetrics: one flush sends the `max` newest points, once.
    let config = outbox_fixture(dir.path(), &centre, vm, max, "");
    let out = aw_within_ok_stdout(&config, &["outbox", "flush"]);
    let requests = max.div_ceil(3);
    assert_eq!(out.trim(), format!("sent {max} points in {requests} requests; 0 refused (kept in outbox_rejected); 0 waiting"));
    let st = outbox_status(&config);
    assert_eq!((st["depth"].as_u64(), st["sent_total"].as_u64(), st["dropped_total"].as_u64(), st["consecutive_failures"].as_i64()), (Some(0), Some(max), Some(dropped), Some(0)), "{st:#}");
    let mut want: Vec<(SampleKey, f64)> = lines.iter().flat_map(|l| line_samples(l)).collect();
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(want.iter().all(|(k, _)| k.1.get("centre") == Some(&centre)));
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let got = vm_samples(vm, &centre);
        if got.len() >= want.len() || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let keys = |v: &[(SampleKey, f64)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    let oldest: Vec<&SampleKey> = got.iter().map(|(k, _)| k).filter(|k| k.2 == at_ms(CYCLES[0]) || k.2 == at_ms(CYCLES[1])).collect();
    assert!(oldest.is_empty(), "dropped points reached VictoriaMetrics: {oldest:#?}");
    let (gk, wk) = (keys(&got), keys(&want));
    let dup: Vec<&SampleKey> = gk.windows(2).filter(|w| w[0] == w[1]).map(|w| &w[0]).collect();
    assert!(dup.is_empty(), "samples stored twice: {dup:#?}");
    assert_eq!(gk, wk, "VictoriaMetrics must hold exactly the queued points' samples");
    for ((k, g), (_, w)) in got.iter().zip(&want) {
        assert!(*g == *w || (g - w).abs() <= 1e-10 * g.abs().max(w.abs()), "{k:?}: VictoriaMetrics has {g}, the outbox held {w}");
    }
    // Nothing left to send: a second flush sends nothing.
    let out = aw_within_ok_stdout(&config, &["outbox", "flush"]);
    assert_eq!(out.trim(), "sent 0 points in 0 requests; 0 refused (kept in outbox_rejected); 0 waiting");
}

/// `GET path` on the daemon's listener: (status, body).
fn http_get_local(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A sample of the daemon's `/metrics` (None when absent).
fn metric(port: u16, series: &str) -> Option<f64> {
    let (status, body) = http_get_local(port, "/metrics");
    assert_eq!(status, 200, "/metrics: {body}");
    body.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.trim().parse::<f64>().unwrap()))
}

#[test]
fn the_daemon_counts_points_dropped_from_a_full_outbox_in_its_metrics() {
    // No server: InfluxDB is down throughout.
    let dir = tempfile::tempdir().unwrap();
    let centre = unique("ofulld");
    let down = format!("http://127.0.0.1:{}", free_port());
    // Full already: four cycles of 4 points in an outbox of 8.
    let config = outbox_fixture(dir.path(), &centre, &down, 8, "");
    for at in CYCLES {
        aw_within_ok(&config, &["check", "--at", at], &[TOKEN]);
    }
    assert_eq!(outbox_status(&config)["dropped_total"].as_u64(), Some(8));
    // The daemon: its start-up pull and one cycle at the pinned instant, then nothing (the
    // pull and quality schedules never come during the test).
    let port = free_port();
    let config = outbox_fixture(
        dir.path(),
        &centre,
        &down,
        8,
        &format!(
            "[reconcile]\nat = \"2026-01-15T00:00:00Z\"\n[daemon]\nschedule = \"0 0 0 1 1 *\"\nquality_report = \"0 0 0 1 1 *\"\njitter_seconds = 0\nshutdown_grace_seconds = 1\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"AW_TEST_HTTP_TOKEN\"\n"
        ),
    );
    let log = dir.path().join("daemon.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_allocwatch"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("ALLOCWATCH_LOG", "info")
        .env_remove("ALLOCWATCH_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env(TOKEN.0, TOKEN.1)
        .env("AW_TEST_HTTP_TOKEN", "faults-http-token")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start allocwatch run");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = Kill(&mut child);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for(60, "the daemon's listener", || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
    // Its one cycle dropped that cycle's 4 points (the outbox was full).
    let dropped = wait_for(60, "allocwatch_points_dropped_total > 0", || metric(port, "allocwatch_points_dropped_total").filter(|v| *v > 0.0));
    assert_eq!(dropped, 4.0, "one cycle's points:\n{}", read_log());
    assert_eq!(metric(port, "allocwatch_cycles_total"), Some(1.0), "{}", read_log());
    assert!(read_log().contains(OUTBOX_FULL), "the daemon's log must say {OUTBOX_FULL:?}:\n{}", read_log());
    let st = outbox_status(&config);
    assert_eq!((st["depth"].as_u64(), st["dropped_total"].as_u64()), (Some(8), Some(12)), "{st:#}");
    drop(guard);
}
