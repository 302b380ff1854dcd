//! Open OnDemand balance files end to end: `export ood` and `allocwatch run` on the demo, each
//! file read back with the rules of OOD's own reader (`tests/fixtures/ood_balance.py`, a Python
//! re-implementation of `balance.rb`'s parsing), every value checked against `check --format
//! json` and every user against `usage --group-by user`. Nothing about the demo is hard-coded:
//! the expectations come from the binary's own outputs and the demo's billing rules.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const UNITS: [(&str, &str, &str); 2] = [("core-hours", "core", "core-hours"), ("gpu-hours", "gpu", "GPU-hours")];

fn demo() -> String {
    root().join("config/demo.toml").display().to_string()
}

/// Kind of hours (`core`, `gpu`, `billing`) of each (centre, resource), from the demo's
/// billing rules: `cpu` and `node` rules charge core-hours, `gpu` GPU-hours, `billing` neither.
fn kinds() -> HashMap<(String, String), &'static str> {
    let demo: toml::Value = toml::from_str(&std::fs::read_to_string(demo()).unwrap()).unwrap();
    let mut out = HashMap::new();
    for c in demo["centre"].as_array().unwrap() {
        for r in c.get("billing").and_then(|b| b.as_array()).into_iter().flatten() {
            let kind = match r["unit"].as_str().unwrap() {
                "cpu" | "node" => "core",
                "gpu" => "gpu",
                "billing" => "billing",
                other => panic!("unit {other}"),
            };
            out.insert((c["id"].as_str().unwrap().to_string(), r["resource"].as_str().unwrap().to_string()), kind);
        }
    }
    out
}

/// What OOD's dashboard would show each of `users` from `file` (see the script's docstring).
fn ood_read(file: &Path, users: &BTreeSet<String>, threshold: &str) -> BTreeMap<String, Value> {
    let out = Command::new("python3")
        .arg(root().join("tests/fixtures/ood_balance.py"))
        .arg(file)
        .args(users)
        .env("OOD_BALANCE_THRESHOLD", threshold)
        .output()
        .expect("run python3");
    assert!(out.status.success(), "ood_balance.py: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The reference: from `check --format json` rows and `usage`, the (user, project) → value the
/// file of kind `kind` must hold at `at`.
fn expected(store: &str, rows: &[Value], kind: &str, at: &str) -> BTreeMap<(String, String), i64> {
    let kinds = kinds();
    let running = |r: &&Value| !matches!(r["status"].as_str().unwrap(), "not_started" | "ended");
    let of_kind = |r: &&Value| kinds[&(r["centre"].as_str().unwrap().to_string(), r["resource"].as_str().unwrap().to_string())] == kind;
    let mut left: BTreeMap<String, f64> = BTreeMap::new();
    let mut users: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut usage_cache: HashMap<(String, String), Vec<Value>> = HashMap::new();
    for r in rows.iter().filter(running).filter(of_kind) {
        let project = r["project"].as_str().unwrap().to_string();
        // An overdrawn allocation counts 0: its debt does not cancel another centre's hours.
        *left.entry(project.clone()).or_default() += f(r, "remaining_hours").max(0.0);
        let (centre, start) = (r["centre"].as_str().unwrap().to_string(), r["period_start"].as_str().unwrap().to_string());
        let usage = usage_cache.entry((centre.clone(), start.clone())).or_insert_with(|| {
            let out = ok(&["--config", &demo(), "--store", store, "usage", "--centre", &centre, "--from", &start, "--to", at, "--group-by", "user", "--format", "json"]);
            serde_json::from_str(&out).unwrap()
        });
        let accounts: Vec<&str> = r["accounts"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        let entry = users.entry(project).or_default();
        for u in usage.iter().filter(|u| accounts.contains(&u["account"].as_str().unwrap())) {
            assert!(u["jobs"].as_i64().unwrap() > 0, "{u}");
            entry.insert(u["user"].as_str().unwrap().to_string());
        }
    }
    let mut out = BTreeMap::new();
    for (project, us) in users {
        for u in us {
            out.insert((u, project.clone()), left[&project].floor() as i64);
        }
    }
    out
}

/// Every Slurm user in the ledger (candidates for OOD's logged-in user), plus one unknown.
fn all_users(store: &str) -> BTreeSet<String> {
    let out = ok(&["--config", &demo(), "--store", store, "usage", "--group-by", "user", "--format", "json"]);
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    let mut users: BTreeSet<String> = rows.iter().map(|r| r["user"].as_str().unwrap().to_string()).collect();
    users.insert("nobody-at-all".into());
    users
}

/// Read `file` as OOD does for every candidate user and compare with the reference.
fn assert_file(file: &Path, store: &str, rows: &[Value], kind: &str, unit_label: &str, at: &str) -> usize {
    let at_s = at.parse::<jiff::Timestamp>().unwrap().as_second();
    let want = expected(store, rows, kind, at);
    let users = all_users(store);
    let seen = ood_read(file, &users, "0");
    let mut got = BTreeMap::new();
    for (user, r) in &seen {
        assert!(r["error"].is_null(), "OOD would drop {} for {user}: {}", file.display(), r["error"]);
        for b in r["balances"].as_array().unwrap() {
            assert_eq!(b["unit"], unit_label);
            assert_eq!(b["project_type"], "project");
            assert_eq!(b["updated_at"].as_i64(), Some(at_s), "timestamp is the reconciliation instant");
            let value = b["value"].as_i64().unwrap();
            assert_eq!(b["insufficient"].as_bool(), Some(value <= 0), "OOD's default threshold 0 warns at 0 and below");
            assert!(got.insert((user.clone(), b["project"].as_str().unwrap().to_string()), value).is_none(), "one entry per user and project");
        }
    }
    assert!(!want.is_empty(), "the demo has {kind} allocations in effect at {at} with users");
    assert_eq!(got, want, "{}: balances as OOD reads them vs check + usage", file.display());
    // The raw file: version 1, entries sorted by (project, user).
    let raw: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert_eq!(raw["version"], 1);
    let keys: Vec<(String, String)> = raw["balances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["project"].as_str().unwrap().to_string(), b["user"].as_str().unwrap().to_string()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    // A threshold above a value flags it, as OOD_BALANCE_THRESHOLD does.
    let (user, project) = got.keys().next().unwrap().clone();
    let high = (got[&(user.clone(), project.clone())] + 1).to_string();
    let flagged = ood_read(file, &[user.clone()].into(), &high);
    assert!(flagged[&user]["balances"].as_array().unwrap().iter().all(|b| b["insufficient"] == true));
    got.len()
}

#[test]
fn export_ood_matches_check_and_usage() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite").display().to_string();
    let rows = check_json(Path::new(&demo()), &["--store", &store]);
    let at = rows[0]["at"].as_str().unwrap().to_string();
    for (unit, kind, label) in UNITS {
        let file = dir.path().join(format!("{unit}.json"));
        let out = aw(&["--config", &demo(), "--store", &store, "export", "ood", "--unit", unit, "--out", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let n = assert_file(&file, &store, &rows, kind, label, &at);
        eprintln!("{unit}: {n} balances as OOD reads them");
        // stdout holds the same bytes.
        let stdout = ok(&["--config", &demo(), "--store", &store, "export", "ood", "--unit", unit]);
        assert_eq!(stdout, std::fs::read_to_string(&file).unwrap());
    }
    // Another instant: the values follow `check --at`, the users the periods up to it.
    let at = "2026-09-01T00:00:00Z";
    let rows = check_json(Path::new(&demo()), &["--store", &store, "--no-pull", "--at", at]);
    for (unit, kind, label) in UNITS {
        let file = dir.path().join(format!("{unit}-sept.json"));
        ok(&["--config", &demo(), "--store", &store, "export", "ood", "--unit", unit, "--at", at, "--out", file.to_str().unwrap()]);
        assert_file(&file, &store, &rows, kind, label, at);
    }
}

#[test]
fn export_ood_refuses_billing_hours_and_an_unwritable_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite").display().to_string();
    let out = aw(&["--config", &demo(), "--store", &store, "export", "ood", "--unit", "billing-hours"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let missing = dir.path().join("no/such/dir/core.json");
    let out = aw(&["--config", &demo(), "--store", &store, "export", "ood", "--unit", "core-hours", "--out", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&missing.display().to_string()), "{}", stderr(&out));
}

/// The body of a GET on loopback (the server closes the connection).
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The demo configuration with absolute paths and `extra` appended, written into `dir`.
fn demo_config(dir: &Path, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(demo()).unwrap().replace("\"demo/", &format!("\"{}/config/demo/", root().display()));
    let p = dir.join("allocwatch.toml");
    std::fs::write(&p, format!("{text}\n{extra}")).unwrap();
    p
}

#[test]
fn the_daemon_rewrites_the_files_after_each_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let ood = dir.path().join("ood");
    std::fs::create_dir(&ood).unwrap();
    let missing = dir.path().join("missing/core-hours.json");
    let port = free_port();
    let config = demo_config(
        dir.path(),
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [[ood.balance]]\nunit = \"core-hours\"\nfile = \"{}\"\n\
             [[ood.balance]]\nunit = \"gpu-hours\"\nfile = \"{}\"\nproject_type = \"allocation\"\n\
             [[ood.balance]]\nunit = \"core-hours\"\nfile = \"{}\"\n",
            ood.join("core-hours.json").display(),
            ood.join("gpu-hours.json").display(),
            missing.display()
        ),
    );
    let (config, store) = (config.display().to_string(), dir.path().join("store.sqlite").display().to_string());
    let log = dir.path().join("daemon.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_allocwatch"))
        .args(["--config", &config, "--store", &store, "run"])
        .env("ALLOCWATCH_LOG", "info")
        .env_remove("ALLOCWATCH_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start allocwatch run");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    // The startup pulls each ask for a cycle; every cycle rewrites the files, so each ends up
    // equal to what `export ood` computes from the same store at the same (pinned) instant.
    for (unit, file, project_type) in [("core-hours", "core-hours.json", "project"), ("gpu-hours", "gpu-hours.json", "allocation")] {
        let file = ood.join(file);
        wait_for(90, &format!("{} to match `export ood --unit {unit}`", file.display()), || {
            assert!(child.try_wait().unwrap().is_none(), "the daemon exited:\n{}", log_text());
            let written = std::fs::read_to_string(&file).ok()?;
            let exported = ok(&["--config", &config, "--store", &store, "export", "ood", "--unit", unit]);
            (written == exported).then_some(())
        });
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(doc["config"]["project_type"], project_type);
        assert!(!doc["balances"].as_array().unwrap().is_empty());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o644, "readable by every OOD user");
    }
    // The file that cannot be written is logged with its name and the error; the daemon goes on.
    let logged = wait_for(30, "the unwritable file to be logged", || {
        log_text().lines().find(|l| l.contains("OOD balance file not written") && l.contains(&missing.display().to_string())).map(str::to_string)
    });
    assert!(logged.contains("No such file or directory"), "{logged}");
    assert!(child.try_wait().unwrap().is_none(), "the daemon must not stop over a balance file:\n{}", log_text());
    let metrics = http_get(port, "/metrics");
    let failed = metrics.lines().find_map(|l| l.strip_prefix("allocwatch_job_runs_total{job=\"ood_balances\",outcome=\"failed\"} "));
    assert!(failed.is_some_and(|n| n.trim().parse::<f64>().unwrap() >= 1.0), "the failure is counted:\n{metrics}");
    let rows: Vec<Value> = {
        let out = ok(&["--config", &config, "--store", &store, "check", "--no-pull", "--format", "json"]);
        serde_json::from_str(&out).unwrap()
    };
    let at = rows[0]["at"].as_str().unwrap().to_string();
    // Read back as OOD does (the reference uses demo.toml: same centres and rules).
    assert_file(&ood.join("core-hours.json"), &store, &rows, "core", "core-hours", &at);
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = wait_for(60, "the daemon to stop", || child.try_wait().unwrap());
    assert!(status.success(), "{status}\n{}", log_text());
}
