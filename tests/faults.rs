//! Faults of the outside world, through the real binary: accounting sources that hang, fail,
//! print garbage or other columns, slurmrestd answers that are errors or not JSON, and a store
//! that is locked, full or corrupted. Each time the failure is named (centre, source, file),
//! nothing is half-written, the watermark does not move, the other centres go on, and the
//! `stale_feed` rule eventually fires.
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
