//! Indicators to InfluxDB 2 through the durable outbox, against REAL servers started by
//! `tests/run.sh` (VictoriaMetrics, and influxd 1.6 behind the v2-write proxy): every series read
//! back equals `check --format json`; an outage loses nothing and keeps the order; a `kill -9`
//! of the daemon with points waiting loses nothing.
//!
//! Servers come from the environment `tests/infra/servers/start.sh` writes (`AW_VM_URL`…).
//! Without it these tests fail under CI=true and are skipped with a message elsewhere. Tests
//! that stop servers start their own set in a private directory.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

// ---- servers ------------------------------------------------------------------------------

/// Test servers: the shared ones of `tests/run.sh`, or a private set this test stops on drop.
struct Servers {
    env: BTreeMap<String, String>,
    private_dir: Option<tempfile::TempDir>,
}

impl Servers {
    fn var(&self, k: &str) -> &str {
        self.env.get(k).unwrap_or_else(|| panic!("{k} missing from the servers' environment"))
    }

    fn script(name: &str) -> PathBuf {
        root().join("tests/infra/servers").join(name)
    }

    /// Stop (`stop.sh`) or start (`start.sh`) some of a private set, on the same ports.
    fn control(&self, script: &str, only: &str) {
        let dir = self.private_dir.as_ref().expect("only private servers are stopped").path();
        let out = Command::new("bash").arg(Self::script(script)).arg(dir).args(["--only", only]).output().unwrap();
        assert!(out.status.success(), "{script} {only}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        if let Some(dir) = &self.private_dir {
            let _ = Command::new("bash").arg(Self::script("stop.sh")).arg(dir.path()).output();
        }
    }
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The servers `tests/run.sh` started, if it did.
fn shared_servers(test: &str) -> Option<Servers> {
    let keys = ["AW_SERVERS_DIR", "AW_VM_URL", "AW_INFLUX1_URL", "AW_INFLUX_PROXY_URL", "AW_INFLUX_TOKEN", "AW_INFLUX_BUCKET"];
    let env: BTreeMap<String, String> = keys.iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))).collect();
    if env.len() == keys.len() {
        return Some(Servers { env, private_dir: None });
    }
    if ci() {
        panic!("{test}: CI=true but the test servers' environment ({}) is missing: run tests/run.sh", keys.join(", "));
    }
    eprintln!("SKIPPED {test}: no test servers (run tests/run.sh, or source DIR/env.sh from tests/infra/servers/start.sh)");
    None
}

/// A private set of servers (`--only`), for tests that stop them. Started only where the
/// shared ones exist (their packages are then installed).
fn private_servers(test: &str, only: &str) -> Option<Servers> {
    shared_servers(test)?;
    let dir = tempfile::Builder::new().prefix("aw-servers-").tempdir().unwrap();
    let out = Command::new("bash").arg(Servers::script("start.sh")).arg(dir.path()).args(["--only", only]).output().unwrap();
    assert!(out.status.success(), "{test}: start.sh --only {only}: {}", String::from_utf8_lossy(&out.stderr));
    let list = std::fs::read_to_string(dir.path().join("env.list")).unwrap();
    let env = list
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').trim_matches('\'').to_string()))
        .collect();
    Some(Servers { env, private_dir: Some(dir) })
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl").args(["-sS", "--max-time", "10"]).args(args).output().expect("curl");
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A TCP listener that never accepts: the kernel completes every connection (backlog), and
/// nothing ever reads a byte or answers. It models a server that is up but too slow, and
/// invents no answer. Kept open as long as the value lives.
fn silent_listener() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    (l, url)
}

/// One exported VictoriaMetrics series.
#[derive(Debug, Clone)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    values: Vec<f64>,
    timestamps_ms: Vec<i64>,
}

fn vm_export(url: &str, selector: &str) -> Vec<Series> {
    curl(&[&format!("{url}/internal/force_flush")]);
    let body = curl(&["-G", &format!("{url}/api/v1/export"), "--data-urlencode", &format!("match[]={selector}")]);
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let mut labels: BTreeMap<String, String> =
                v["metric"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
            let name = labels.remove("__name__").unwrap();
            let values = v["values"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            let timestamps_ms = v["timestamps"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
            Series { name, labels, values, timestamps_ms }
        })
        .collect()
}

/// Poll VictoriaMetrics (flush + export) until `done` holds; reads lag writes. Returns the last
/// export either way, so the caller's assertions show what was there.
fn vm_poll(url: &str, selector: &str, done: impl Fn(&[Series]) -> bool) -> Vec<Series> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = vm_export(url, selector);
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `SELECT * FROM measurement WHERE centre = …` on influxd 1.6: one map per row (time in s).
fn influx_rows(url: &str, db: &str, measurement: &str, centre: &str) -> Vec<BTreeMap<String, Value>> {
    let q = format!("SELECT * FROM \"{measurement}\" WHERE centre = '{centre}'");
    let body = curl(&["-G", &format!("{url}/query"), "--data-urlencode", &format!("db={db}"), "--data-urlencode", &format!("q={q}"), "--data-urlencode", "epoch=s"]);
    let v: Value = serde_json::from_str(&body).unwrap();
    let Some(series) = v["results"][0]["series"].as_array() else { return Vec::new() };
    let mut rows = Vec::new();
    for s in series {
        let cols: Vec<String> = s["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
        for r in s["values"].as_array().unwrap() {
            rows.push(cols.iter().cloned().zip(r.as_array().unwrap().iter().cloned()).filter(|(_, v)| !v.is_null()).collect());
        }
    }
    rows
}

/// A fresh, empty database (tests run again against the same servers start clean).
fn influx_create_db(url: &str, db: &str) {
    for q in [format!("DROP DATABASE \"{db}\""), format!("CREATE DATABASE \"{db}\"")] {
        let out = curl(&["-XPOST", &format!("{url}/query"), "--data-urlencode", &format!("q={q}")]);
        assert!(!out.contains("error"), "{out}");
    }
}

/// A centre id no earlier run against the same VictoriaMetrics has used (it keeps everything).
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{prefix}{}x{nanos}", std::process::id())
}

// ---- fixture -------------------------------------------------------------------------------

/// Period 2026-01-01..2026-04-11 (100 days). The committee needs every escape of line protocol;
/// P2 has no grant (no consumed_pct/drift_pp) and no committee (no tag); P1 has an ended
/// allocation of the same project and resource (told apart by period_start); P3 not started.
fn allocations(centre: &str) -> String {
    format!(
        "project,centre,resource,period_start,period_end,granted_hours,accounts,pi,members,committee,profile
P1,{centre},cpu,2026-01-01,2026-04-11,1000,acc1,pi@lab.fr,,\"CT 5, physique=théorique\",
P2,{centre},gpu,2026-01-01,2026-04-11,0,acc2,pi@lab.fr,,,
P3,{centre},cpu,2026-03-01,2026-06-01,500,acc3,pi@lab.fr,,CT1,
P1,{centre},cpu,2025-01-01,2026-01-01,800,acc1,pi@lab.fr,,\"CT 5, physique=théorique\",
"
    )
}

fn t(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>().unwrap().as_second()
}

/// 7 job records on two clusters, one malformed line.
fn dump(extra_hours: i64) -> String {
    let d10 = t("2026-01-10T00:00:00Z");
    let mut s = String::from("JobID|JobIDRaw|Cluster|Partition|Account|User|Start|End|ElapsedRaw|AllocCPUS|AllocTRES|State\n");
    let mut row = |id: u32, cl: &str, part: &str, acc: &str, start: i64, secs: i64, cpus: u32, tres: &str| {
        s.push_str(&format!("{id}|{id}|{cl}|{part}|{acc}|u|{start}|{}|{secs}|{cpus}|{tres}|COMPLETED\n", start + secs));
    };
    row(1, "c1", "cpu", "acc1", d10, 30 * 3600, 10, "cpu=10"); // 300 h
    row(2, "c2", "cpu", "acc1", d10, 30 * 3600, 10, "cpu=10"); // 300 h
    row(3, "c1", "gpu", "acc2", d10, 5 * 3600, 8, "cpu=8,gres/gpu=2"); // 10 GPU-h
    row(4, "c1", "cpu", "zz", d10, 2 * 3600, 1, "cpu=1"); // orphan 2 h
    row(5, "c2", "cpu", "zz", d10, 3 * 3600, 1, "cpu=1"); // orphan 3 h on another cluster
    row(6, "c1", "visu", "acc1", d10, 3600, 4, "cpu=4"); // unmapped 4 core-h
    row(7, "c1", "cpu", "acc1", t("2025-06-01T00:00:00Z"), 10 * 3600, 5, "cpu=5"); // 50 h, 2025
    if extra_hours > 0 {
        row(8, "c1", "cpu", "acc1", t("2026-01-12T00:00:00Z"), extra_hours * 3600, 1, "cpu=1");
    }
    s.push_str("not|a|job\n");
    s
}

struct Fixture {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Fixture {
    /// Fixture files for `centre`, with `influx` (an `[influxdb]` body) if given.
    fn new(centre: &str, influx: Option<&str>, extra: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("alloc.csv"), allocations(centre)).unwrap();
        std::fs::write(dir.path().join("dump.txt"), dump(0)).unwrap();
        let mut body = format!(
            "[allocations]\nfiles = [\"alloc.csv\"]\n{extra}\n[[centre]]\nid = \"{centre}\"\ntimezone = \"UTC\"\nclusters = [\"c1\", \"c2\"]\n\
             [[centre.billing]]\nresource = \"cpu\"\npartitions = [\"cpu\"]\nunit = \"cpu\"\n\
             [[centre.billing]]\nresource = \"gpu\"\npartitions = [\"gpu\"]\nunit = \"gpu\"\n\
             [[centre.source]]\nkind = \"files\"\nformat = \"sacct\"\npaths = [\"dump.txt\"]\n"
        );
        if let Some(i) = influx {
            body.push_str(&format!("\n[influxdb]\n{i}\n"));
        }
        let config = write_config(dir.path(), &body);
        Fixture { dir, config }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cfg(&self) -> &str {
        self.config.to_str().unwrap()
    }

    /// `check --format json --at AT` (with the servers' token in the environment).
    fn check(&self, at: &str, token: &str) -> (Vec<Value>, String) {
        let out = self.run(&["check", "--format", "json", "--at", at], token);
        assert!(out.status.success(), "check --at {at}: {}", stderr(&out));
        (serde_json::from_slice(&out.stdout).unwrap(), stderr(&out))
    }

    /// Run allocwatch with this fixture's configuration and the token in the environment; a
    /// run that has not ended after [`HUNG_AFTER_S`] is killed and fails the test (a sink that
    /// never answers must not hang a command).
    fn run(&self, args: &[&str], token: &str) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_allocwatch"));
        cmd.args(["--config", self.cfg()]).args(args).env("ALLOCWATCH_LOG", "warn").env("AW_TEST_TOKEN", token);
        output_within(cmd, HUNG_AFTER_S, &format!("allocwatch {args:?}"))
    }

    fn outbox_status(&self) -> Value {
        let out = ok(&["--config", self.cfg(), "outbox", "status", "--format", "json"]);
        serde_json::from_str(&out).unwrap()
    }
}

fn influx_section(url: &str, bucket: &str, more: &str) -> String {
    format!("url = \"{url}\"\norg = \"allocwatch\"\nbucket = \"{bucket}\"\ntoken_env = \"AW_TEST_TOKEN\"\ntimeout_seconds = 5\n{more}")
}

const ALLOCATION_FIELDS: &[&str] = &[
    "granted_hours",
    "consumed_hours",
    "expected_hours",
    "remaining_hours",
    "consumed_pct",
    "drift_pp",
    "burn_rate_hours_per_day",
    "projected_exhaustion_days",
    "projected_unused_hours",
    "committed_hours",
    "at_risk_hours",
];

/// The documented status codes.
fn status_code(status: &str) -> i64 {
    ["on_track", "over_pace", "under_pace", "exhausted", "not_started", "ended"]
        .iter()
        .position(|s| *s == status)
        .unwrap_or_else(|| panic!("unknown status {status}")) as i64
}

/// Every (tags, field, value) the `allocation` measurement must hold for a `check` output.
fn expected_allocation_points(rows: &[Value]) -> BTreeMap<(BTreeMap<String, String>, String), f64> {
    let mut out = BTreeMap::new();
    for r in rows {
        let mut tags = BTreeMap::new();
        for k in ["centre", "project", "resource", "committee", "period_start"] {
            let v = r[k].as_str().unwrap();
            if !v.is_empty() {
                tags.insert(k.to_string(), v.to_string());
            }
        }
        // The forecast's band: exhaustion quantiles in days from the instant (absent when not
        // within the period), end-of-period hours.
        let instant = |v: &Value| v.as_str().map(|s| s.parse::<jiff::Timestamp>().unwrap().as_second());
        let at = instant(&r["at"]).unwrap();
        for p in ["p10", "p50", "p90"] {
            if let Some(t) = instant(&r["forecast"][format!("exhaustion_{p}")]) {
                out.insert((tags.clone(), format!("forecast_exhaustion_{p}_days")), (t - at) as f64 / 86400.0);
            }
            if let Some(h) = r["forecast"][format!("end_consumed_hours_{p}")].as_f64() {
                out.insert((tags.clone(), format!("forecast_end_consumed_hours_{p}")), h);
            }
        }
        for f in ALLOCATION_FIELDS {
            if let Some(v) = r[*f].as_f64() {
                out.insert((tags.clone(), f.to_string()), v);
            }
        }
        out.insert((tags, "status_code".into()), status_code(r["status"].as_str().unwrap()) as f64);
    }
    out
}

/// VictoriaMetrics keeps about 12 significant digits: compare floats relatively.
fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-10 * a.abs().max(b.abs())
}

/// Check VictoriaMetrics holds exactly the allocation points of `rows` at `at_s`.
fn assert_vm_allocations(series: &[Series], rows: &[Value], at_s: i64) {
    let want = expected_allocation_points(rows);
    let mut got = BTreeMap::new();
    for s in series.iter().filter(|s| s.name.starts_with("allocation_")) {
        let field = s.name.trim_start_matches("allocation_").to_string();
        for (v, ts) in s.values.iter().zip(&s.timestamps_ms) {
            if *ts == at_s * 1000 {
                got.insert((s.labels.clone(), field.clone()), *v);
            }
        }
    }
    let only_got: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let only_want: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(only_got.is_empty() && only_want.is_empty(), "series (tags, field) differ: only in VictoriaMetrics {only_got:?}; only in check {only_want:?}");
    for (k, w) in &want {
        assert!(close(got[k], *w), "{k:?}: VictoriaMetrics has {}, check printed {w}", got[k]);
    }
}

// ---- tests ---------------------------------------------------------------------------------

#[test]
fn every_series_in_victoriametrics_equals_check_json() {
    let Some(sv) = shared_servers("every_series_in_victoriametrics_equals_check_json") else { return };
    let vm = sv.var("AW_VM_URL");
    let centre = &unique("e2evm");
    let fx = Fixture::new(centre, Some(&influx_section(vm, "ignored-by-vm", "gzip = true")), "");
    let at = "2026-01-21T00:00:00Z";
    let (rows, err) = fx.check(at, sv.var("AW_INFLUX_TOKEN"));
    assert!(!err.contains("warning"), "{err}");
    assert_eq!(rows.len(), 4);
    // The fixture exercises what it means to: an omitted field, a missing tag, an exhaustion.
    assert!(rows.iter().any(|r| r["consumed_pct"].is_null()) && rows.iter().any(|r| !r["projected_exhaustion_days"].is_null()));
    let st = fx.outbox_status();
    assert_eq!((st["depth"].as_u64(), st["consecutive_failures"].as_i64()), (Some(0), Some(0)), "{st}");

    let want = expected_allocation_points(&rows);
    let selector = format!("{{__name__=~\"allocation_.*|orphan_usage_.*|centre_feed_.*\",centre=\"{centre}\"}}");
    let series = vm_poll(vm, &selector, |s| s.iter().filter(|x| x.name.starts_with("allocation_")).count() >= want.len() && s.len() >= want.len() + 2 + 6);
    assert_vm_allocations(&series, &rows, t(at));

    // Orphan usage: the two clusters' hours of `zz` add up; the unmapped partition has no
    // resource tag and counts core-hours.
    let orphans: Vec<&Series> = series.iter().filter(|s| s.name == "orphan_usage_hours").collect();
    assert_eq!(orphans.len(), 2, "{orphans:?}");
    let zz = orphans.iter().find(|s| s.labels["account"] == "zz").unwrap();
    assert_eq!((zz.labels["resource"].as_str(), zz.labels["partition"].as_str(), zz.values.as_slice()), ("cpu", "cpu", &[5.0][..]));
    let visu = orphans.iter().find(|s| s.labels["account"] == "acc1").unwrap();
    assert_eq!((visu.labels.get("resource"), visu.labels["partition"].as_str(), visu.values.as_slice()), (None, "visu", &[4.0][..]));
    assert!(orphans.iter().all(|s| s.timestamps_ms == vec![t(at) * 1000]));

    // The feed: one pull of 7 records and 1 rejected line in this cycle.
    let feed = |f: &str| -> f64 {
        let s = series.iter().find(|s| s.name == format!("centre_feed_{f}")).unwrap_or_else(|| panic!("no centre_feed_{f}"));
        assert_eq!(s.labels.get("source").map(String::as_str), Some("file"));
        assert_eq!(s.timestamps_ms, vec![t(at) * 1000]);
        s.values[0]
    };
    assert_eq!((feed("records_ingested"), feed("rejected_lines"), feed("pulls"), feed("pull_failures")), (7.0, 1.0, 1.0, 0.0));
    assert!((0.0..120.0).contains(&feed("seconds_since_last_success")));
    // Whole seconds (pulls are recorded at second resolution), and less than the whole test.
    let d = feed("pull_duration_seconds");
    assert!((0.0..60.0).contains(&d) && d.fract() == 0.0, "pull_duration_seconds {d}");
    assert_eq!(series.len(), want.len() + 2 + 6, "no other series");
}

#[test]
fn demo_on_victoriametrics_equals_check_json() {
    let Some(sv) = shared_servers("demo_on_victoriametrics_equals_check_json") else { return };
    let vm = sv.var("AW_VM_URL");
    let dir = tempfile::tempdir().unwrap();
    // The demo configuration as shipped, its paths made absolute, plus a sink.
    let demo = std::fs::read_to_string(root().join("config/demo.toml")).unwrap();
    let demo = demo
        .replace("\"demo/", &format!("\"{}/config/demo/", root().display()))
        .replace("../target/demo/allocwatch.sqlite", &dir.path().join("demo.sqlite").display().to_string());
    let cfg = dir.path().join("demo.toml");
    std::fs::write(&cfg, format!("{demo}\n[influxdb]\n{}", influx_section(vm, "b", "batch_size = 100"))).unwrap();
    // An instant of its own, so other tests' points on these centres cannot mix in.
    let at = "2026-11-03T06:00:00Z";
    let out = Command::new(env!("CARGO_BIN_EXE_allocwatch"))
        .args(["--config", cfg.to_str().unwrap(), "check", "--format", "json", "--at", at])
        .env("ALLOCWATCH_LOG", "warn")
        .env("AW_TEST_TOKEN", "x")
        .output()
        .unwrap();
    assert!(out.status.success() && !stderr(&out).contains("warning"), "{}", stderr(&out));
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(rows.len() >= 30);
    let want = expected_allocation_points(&rows).len();
    let at_ms = t(at) * 1000;
    let selector = "{__name__=~\"allocation_.*\",centre=~\"idris|tgcc|cines\"}";
    let series = vm_poll(vm, selector, |s| s.iter().filter(|x| x.timestamps_ms.contains(&at_ms)).count() >= want);
    assert_vm_allocations(&series, &rows, t(at));
}

#[test]
fn strict_influxdb_reads_back_exactly_what_check_printed() {
    let Some(sv) = shared_servers("strict_influxdb_reads_back_exactly_what_check_printed") else { return };
    let (proxy, influx1) = (sv.var("AW_INFLUX_PROXY_URL"), sv.var("AW_INFLUX1_URL"));
    let db = "aw_strict_e2e";
    influx_create_db(influx1, db);
    let centre = "e2eflux";
    let fx = Fixture::new(centre, Some(&influx_section(proxy, db, "gzip = false\nbatch_size = 3")), "");
    let at = "2026-01-21T00:00:00Z";
    let (rows, err) = fx.check(at, sv.var("AW_INFLUX_TOKEN"));
    assert!(!err.contains("warning"), "{err}");
    let st = fx.outbox_status();
    assert_eq!((st["depth"].as_u64(), st["rejected"].as_u64()), (Some(0), Some(0)), "{st}");

    // Exact float equality here: influxd keeps float64 as sent.
    let want = expected_allocation_points(&rows);
    let mut got = BTreeMap::new();
    for r in influx_rows(influx1, db, "allocation", centre) {
        assert_eq!(r["time"].as_i64(), Some(t(at)));
        let tags: BTreeMap<String, String> = ["centre", "project", "resource", "committee", "period_start"]
            .iter()
            .filter_map(|k| r.get(*k).map(|v| (k.to_string(), v.as_str().unwrap().to_string())))
            .collect();
        for (k, v) in &r {
            if k != "time" && !tags.contains_key(k) {
                got.insert((tags.clone(), k.clone()), v.as_f64().unwrap());
            }
        }
    }
    assert_eq!(got, want);
    // Field types are stable: status_code and counts integers, the rest floats.
    let body = curl(&["-G", &format!("{influx1}/query"), "--data-urlencode", &format!("db={db}"), "--data-urlencode", "q=SHOW FIELD KEYS"]);
    let v: Value = serde_json::from_str(&body).unwrap();
    let mut types = BTreeMap::new();
    for s in v["results"][0]["series"].as_array().unwrap() {
        for kv in s["values"].as_array().unwrap() {
            types.insert(format!("{}.{}", s["name"].as_str().unwrap(), kv[0].as_str().unwrap()), kv[1].as_str().unwrap().to_string());
        }
    }
    assert_eq!(types["allocation.status_code"], "integer");
    assert_eq!(types["allocation.drift_pp"], "float");
    assert_eq!(types["centre_feed.records_ingested"], "integer");
    assert_eq!(types["centre_feed.seconds_since_last_success"], "float");
    assert_eq!(types["orphan_usage.hours"], "float");
    let orphans = influx_rows(influx1, db, "orphan_usage", centre);
    let hours: BTreeMap<String, f64> = orphans.iter().map(|r| (r["account"].as_str().unwrap().to_string(), r["hours"].as_f64().unwrap())).collect();
    assert_eq!(hours, BTreeMap::from([("acc1".into(), 4.0), ("zz".into(), 5.0)]));
}

#[test]
fn a_point_the_strict_parser_refuses_is_isolated_and_kept_and_the_rest_lands() {
    let Some(sv) = shared_servers("a_point_the_strict_parser_refuses_is_isolated_and_kept_and_the_rest_lands") else { return };
    let (proxy, influx1) = (sv.var("AW_INFLUX_PROXY_URL"), sv.var("AW_INFLUX1_URL"));
    let db = "aw_refused_e2e";
    influx_create_db(influx1, db);
    let centre = "e2erefused";
    let at = "2026-01-21T00:00:00Z";
    // Someone wrote `forecast_exhaustion_p90_days` as a string into this shard: influxd's own
    // parser now refuses, with a field type conflict, the one line of ours that carries it (P2's:
    // the only allocation whose P90 runs out within its period).
    let seed = format!("allocation,centre=elsewhere forecast_exhaustion_p90_days=\"soon\" {}", t(at) * 1_000_000_000);
    let out = curl(&["-XPOST", &format!("{influx1}/write?db={db}"), "--data-binary", &seed]);
    assert!(out.trim().is_empty(), "{out}");
    let fx = Fixture::new(centre, Some(&influx_section(proxy, db, "gzip = false\nbatch_size = 50")), "");
    let (rows, _) = fx.check(at, sv.var("AW_INFLUX_TOKEN"));
    let st = fx.outbox_status();
    assert_eq!((st["depth"].as_u64(), st["rejected"].as_u64()), (Some(0), Some(1)), "one point refused, none left waiting: {st}");
    // The refused line is kept with influxd's own words; every other point landed exactly.
    let c = rusqlite::Connection::open(fx.path().join("store.sqlite")).unwrap();
    let (line, error): (String, String) = c.query_row("SELECT line, error FROM outbox_rejected", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert!(line.starts_with("allocation,") && line.contains("project=P2") && line.contains("forecast_exhaustion_p90_days="), "{line}");
    assert!(error.contains("field type conflict") && error.contains("400"), "influxd's status and message, passed through: {error}");
    let mut want = expected_allocation_points(&rows);
    want.retain(|(tags, _), _| tags.get("project").map(String::as_str) != Some("P2"));
    assert_eq!(influx_allocation_at(influx1, db, centre, t(at)), want);
    assert_eq!(influx_rows(influx1, db, "orphan_usage", centre).len(), 2);
    assert!(!influx_rows(influx1, db, "centre_feed", centre).is_empty());
}

/// Allocation values of cycle `at` in influxd, as (tags, field) → value.
fn influx_allocation_at(influx1: &str, db: &str, centre: &str, at_s: i64) -> BTreeMap<(BTreeMap<String, String>, String), f64> {
    let mut got = BTreeMap::new();
    for r in influx_rows(influx1, db, "allocation", centre).into_iter().filter(|r| r["time"].as_i64() == Some(at_s)) {
        let tags: BTreeMap<String, String> = ["centre", "project", "resource", "committee", "period_start"]
            .iter()
            .filter_map(|k| r.get(*k).map(|v| (k.to_string(), v.as_str().unwrap().to_string())))
            .collect();
        for (k, v) in &r {
            if k != "time" && !tags.contains_key(k) {
                got.insert((tags.clone(), k.clone()), v.as_f64().unwrap());
            }
        }
    }
    got
}

/// How InfluxDB is down.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// influxd stopped behind the v2 proxy: the proxy's own answer, 503 `unavailable`, passes
    /// through (a private server set, stopped and started again on the same port).
    InfluxdStopped,
    /// Nothing listening at all (a free port: connection refused); back when the
    /// configuration points at the live proxy.
    NothingListening,
}

#[test]
fn outage_then_replay_delivers_every_cycle_in_order() {
    outage_then_replay("outage_then_replay_delivers_every_cycle_in_order", Outage::InfluxdStopped);
}

#[test]
fn nothing_listening_then_replay_delivers_every_cycle_in_order() {
    outage_then_replay("nothing_listening_then_replay_delivers_every_cycle_in_order", Outage::NothingListening);
}

/// Several cycles while InfluxDB is down (`outage`), a re-run of the last instant, then the
/// server is back: one flush delivers every owed point, in order, once.
fn outage_then_replay(test: &str, outage: Outage) {
    let sv = match outage {
        Outage::InfluxdStopped => private_servers(test, "influx1"),
        Outage::NothingListening => shared_servers(test),
    };
    let Some(sv) = sv else { return };
    let (proxy, influx1, token) = (sv.var("AW_INFLUX_PROXY_URL"), sv.var("AW_INFLUX1_URL"), sv.var("AW_INFLUX_TOKEN"));
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (db, url, said): (&str, &str, &[&str]) = match outage {
        // The proxy's answer, passed through: InfluxDB 2's shape, code `unavailable`.
        Outage::InfluxdStopped => (sv.var("AW_INFLUX_DB"), proxy, &["HTTP 503", "\"code\": \"unavailable\"", "upstream influxdb unreachable"]),
        Outage::NothingListening => {
            influx_create_db(influx1, "aw_nothing_listening");
            ("aw_nothing_listening", &dead, &["request failed", "Connection refused"])
        }
    };
    let centre = "outage";
    // Small batches, so the cycles span many requests and their order matters.
    let fx = Fixture::new(centre, Some(&influx_section(url, db, "gzip = false\nbatch_size = 4")), "");
    if let Outage::InfluxdStopped = outage {
        sv.control("stop.sh", "influxd"); // the proxy answers 503 while influxd is down
    }

    let instants = ["2026-01-15T00:00:00Z", "2026-01-18T00:00:00Z", "2026-01-21T00:00:00Z"];
    let mut outputs = Vec::new();
    let mut queued = 0;
    for at in instants {
        let (rows, err) = fx.check(at, token);
        assert!(err.contains("warning: indicators not delivered"), "{err}");
        let st = fx.outbox_status();
        assert!(st["depth"].as_u64().unwrap() > queued, "{st}");
        queued = st["depth"].as_u64().unwrap();
        let last_error = st["last_error"].as_str().unwrap();
        for s in said {
            assert!(last_error.contains(s) && err.contains(s), "{outage:?}: the error must say {s:?}: {st}\n{err}");
        }
        outputs.push(rows);
    }
    // New accounting arrives, and the last instant is reconciled again: same series and
    // timestamp, new values. In-order delivery means the later cycle's values win.
    std::fs::write(fx.path().join("dump.txt"), dump(40)).unwrap();
    let (rerun, _) = fx.check(instants[2], token);
    assert_ne!(expected_allocation_points(&rerun), expected_allocation_points(&outputs[2]), "the re-run must change something");
    let st = fx.outbox_status();
    assert!(st["depth"].as_u64().unwrap() > queued);
    assert_eq!(st["consecutive_failures"].as_i64(), Some(4));

    match outage {
        Outage::InfluxdStopped => sv.control("start.sh", "influxd"),
        Outage::NothingListening => repoint(&fx, &dead, proxy),
    }
    let depth = st["depth"].as_u64().unwrap();
    flush_all(&fx, token, depth);
    assert_eq!(fx.outbox_status()["sent_total"].as_u64(), Some(depth), "each owed point sent once");

    for (at, rows) in instants.iter().zip([&outputs[0], &outputs[1], &rerun]) {
        assert_eq!(influx_allocation_at(influx1, db, centre, t(at)), expected_allocation_points(rows), "cycle at {at}");
    }
    // The feed of each cycle: 7 records in the first, none until the re-run pulled 8.
    let feeds: BTreeMap<i64, i64> = influx_rows(influx1, db, "centre_feed", centre)
        .iter()
        .map(|r| (r["time"].as_i64().unwrap(), r["records_ingested"].as_i64().unwrap()))
        .collect();
    assert_eq!(feeds, BTreeMap::from([(t(instants[0]), 7), (t(instants[1]), 0), (t(instants[2]), 8)]));
}

#[test]
fn kill_9_with_points_waiting_loses_nothing() {
    let Some(sv) = private_servers("kill_9_with_points_waiting_loses_nothing", "vm") else { return };
    let vm = sv.var("AW_VM_URL").to_string();
    let centre = &unique("killed");
    let influx = influx_section(&vm, "b", "backoff_initial_seconds = 3600\nbackoff_max_seconds = 3600");
    let first = "2026-01-21T00:00:00Z";
    let second = "2026-01-22T00:00:00Z";
    let fx = Fixture::new(centre, Some(&influx), &format!("[reconcile]\nat = \"{first}\""));
    // What each cycle owes, computed on a scratch store with no sink.
    let expected = |at: &str| {
        let plain = Fixture::new(centre, None, "");
        plain.check(at, "").0
    };
    let (want1, want2) = (expected(first), expected(second));
    sv.control("stop.sh", "vm");

    let daemon = |config: &Path, log: &str| {
        Command::new(env!("CARGO_BIN_EXE_allocwatch"))
            .args(["--config", config.to_str().unwrap(), "run"])
            .env("ALLOCWATCH_LOG", "info")
            .env("AW_TEST_TOKEN", "x")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(fx.path().join(log)).unwrap())
            .spawn()
            .unwrap()
    };
    let mut d = daemon(&fx.config, "run1.log");
    // Wait until the cycle is committed and the first write failed: the writer now sleeps in
    // a backoff of at least half an hour.
    let deadline = Instant::now() + Duration::from_secs(60);
    let depth = loop {
        let st = fx.outbox_status();
        if st["consecutive_failures"].as_i64() >= Some(1) && st["depth"].as_u64() > Some(0) {
            break st["depth"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "daemon never queued and failed: {st}\n{}", std::fs::read_to_string(fx.path().join("run1.log")).unwrap());
        std::thread::sleep(Duration::from_millis(100));
    };
    d.kill().unwrap(); // SIGKILL
    d.wait().unwrap();
    assert_eq!(fx.outbox_status()["depth"].as_u64(), Some(depth), "kill -9 changed the outbox");

    // Server back; the daemon restarts (reconciling a later instant) and replays the outbox.
    sv.control("start.sh", "vm");
    let cfg_text = std::fs::read_to_string(&fx.config).unwrap().replace(first, second);
    std::fs::write(&fx.config, cfg_text).unwrap();
    let mut d = daemon(&fx.config, "run2.log");
    let n1 = expected_allocation_points(&want1).len();
    let n2 = expected_allocation_points(&want2).len();
    let (ms1, ms2) = (t(first) * 1000, t(second) * 1000);
    let selector = format!("{{__name__=~\"allocation_.*\",centre=\"{centre}\"}}");
    let series = vm_poll(&vm, &selector, |s| {
        s.iter().filter(|x| x.timestamps_ms.contains(&ms1)).count() >= n1 && s.iter().filter(|x| x.timestamps_ms.contains(&ms2)).count() >= n2
    });
    let _ = Command::new("kill").args(["-TERM", &d.id().to_string()]).status();
    let status = d.wait().unwrap();
    let log = std::fs::read_to_string(fx.path().join("run2.log")).unwrap();
    assert!(status.success(), "daemon exit {status}:\n{log}");
    assert_vm_allocations(&series, &want1, t(first));
    assert_vm_allocations(&series, &want2, t(second));
    assert_eq!(fx.outbox_status()["depth"].as_u64(), Some(0), "{log}");
}

/// Point the fixture's `[influxdb] url` somewhere else (the server is back, elsewhere).
fn repoint(fx: &Fixture, from: &str, to: &str) {
    let text = std::fs::read_to_string(&fx.config).unwrap();
    assert!(text.contains(&format!("url = \"{from}\"")), "{text}");
    std::fs::write(&fx.config, text.replace(&format!("url = \"{from}\""), &format!("url = \"{to}\""))).unwrap();
}

/// `outbox flush`, which must send everything waiting (`depth` points) and leave nothing.
fn flush_all(fx: &Fixture, token: &str, depth: u64) {
    let out = fx.run(&["outbox", "flush"], token);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("sent {depth} points")) && text.ends_with("0 waiting\n"), "{text}");
    let st = fx.outbox_status();
    assert_eq!((st["depth"].as_u64(), st["rejected"].as_u64(), st["consecutive_failures"].as_i64()), (Some(0), Some(0), Some(0)), "{st}");
}

#[test]
fn a_slow_influxdb_times_out_keeps_the_points_and_every_point_lands_once_later() {
    let Some(sv) = shared_servers("a_slow_influxdb_times_out_keeps_the_points_and_every_point_lands_once_later") else { return };
    let vm = sv.var("AW_VM_URL");
    let centre = &unique("slow");
    // Up, but never answers: every write waits out `timeout_seconds` (2 s here).
    let (silent, slow) = silent_listener();
    let influx = influx_section(&slow, "b", "gzip = false\nbatch_size = 4").replace("timeout_seconds = 5", "timeout_seconds = 2");
    let fx = Fixture::new(centre, Some(&influx), "");
    let instants = ["2026-01-15T00:00:00Z", "2026-01-21T00:00:00Z"];
    let mut outputs = Vec::new();
    let mut depth = 0;
    for (i, at) in instants.iter().enumerate() {
        // `run` fails the test if the command hangs instead of giving up at the timeout.
        let (rows, err) = fx.check(at, "x");
        assert!(err.contains("warning: indicators not delivered") && err.contains("points stay queued"), "{err}");
        assert!(err.contains(&format!("{slow} bucket b: no answer within 2 s")), "the log names the sink and the timeout: {err}");
        let st = fx.outbox_status();
        assert!(st["depth"].as_u64().unwrap() > depth, "this cycle's points are owed too: {st}");
        depth = st["depth"].as_u64().unwrap();
        assert_eq!(st["last_error"].as_str(), Some("no answer within 2 s"), "{st}");
        assert_eq!((st["consecutive_failures"].as_i64(), st["sent_total"].as_i64()), (Some(i as i64 + 1), Some(0)), "{st}");
        outputs.push(rows);
    }
    // Each cycle did reach the slow server (a connection waits in its backlog), and was never
    // answered: nothing was written anywhere.
    silent.set_nonblocking(true).unwrap();
    let reached = std::iter::from_fn(|| silent.accept().ok()).count();
    assert!(reached >= instants.len(), "{reached} connections to the slow server");
    drop(silent);

    // The server answers again (the configuration points at a live one): every owed point is
    // sent once, oldest first.
    repoint(&fx, &slow, vm);
    flush_all(&fx, "x", depth);
    assert_eq!(fx.outbox_status()["sent_total"].as_u64(), Some(depth));
    let n = expected_allocation_points(&outputs[0]).len();
    let ms: Vec<i64> = instants.iter().map(|at| t(at) * 1000).collect();
    let selector = format!("{{__name__=~\"allocation_.*|orphan_usage_.*|centre_feed_.*\",centre=\"{centre}\"}}");
    let series = vm_poll(vm, &selector, |s| ms.iter().all(|m| s.iter().filter(|x| x.name.starts_with("allocation_") && x.timestamps_ms.contains(m)).count() >= n));
    for (at, rows) in instants.iter().zip(&outputs) {
        assert_vm_allocations(&series, rows, t(at));
    }
    // Exactly once: VictoriaMetrics keeps a sample written twice twice; every series has one
    // sample per cycle, and feeds of both cycles are there.
    for s in &series {
        let mut ts = s.timestamps_ms.clone();
        ts.dedup();
        assert_eq!(ts, s.timestamps_ms, "{} {:?}: a point written more than once", s.name, s.labels);
        assert!(s.timestamps_ms.iter().all(|t| ms.contains(t)), "{s:?}");
    }
    let feed = series.iter().find(|s| s.name == "centre_feed_records_ingested").expect("feed series");
    assert_eq!((feed.timestamps_ms.clone(), feed.values.clone()), (ms.clone(), vec![7.0, 0.0]), "{feed:?}");
}

#[test]
fn metrics_render_after_a_cycle() {
    use allocwatch::{config::Config, domain::grants::Grants, store::Store};
    let fx = Fixture::new("metrics", None, "");
    let config = Config::load(&fx.config).unwrap();
    let grants = Grants::load(&config).unwrap();
    let mut store = Store::open(&config.store_path).unwrap();
    for (_, _, r) in allocwatch::pull::files::import_all(&mut store, &config, t("2026-01-21T00:00:00Z")) {
        r.unwrap();
    }
    let cycle = allocwatch::cycle::run_cycle(&mut allocwatch::reconcile::Reconciler::default(), &config, &grants, &mut store, t("2026-01-21T00:00:00Z"), "test", None).unwrap();
    let metrics = allocwatch::daemon::metrics::Metrics::new();
    metrics.observe_cycle(&cycle.reconciliation, &cycle.indicators, cycle.recorded_at);
    metrics.observe_delivery(&allocwatch::alerts::deliver::DeliveryReport { sent: 1, sent_by_channel: [("email".to_string(), 1)].into(), ..Default::default() });
    let text = metrics.render();
    let line = |prefix: &str| text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{text}")).to_string();
    assert_eq!(
        line("allocwatch_allocation_granted_hours{centre=\"metrics\",project=\"P1\",resource=\"cpu\",committee=\"CT 5, physique=théorique\",period_start=\"2026-01-01\"}"),
        "allocwatch_allocation_granted_hours{centre=\"metrics\",project=\"P1\",resource=\"cpu\",committee=\"CT 5, physique=théorique\",period_start=\"2026-01-01\"} 1000.0"
    );
    assert!(line("allocwatch_allocation_status_code{centre=\"metrics\",project=\"P3\"").ends_with(" 4.0"), "{text}");
    assert!(line("allocwatch_pulls_total{centre=\"metrics\",source=\"file\"}").ends_with(" 1"));
    assert!(line("allocwatch_records_ingested_total{centre=\"metrics\",source=\"file\"}").ends_with(" 7"));
    assert!(line("allocwatch_rejected_lines_total{centre=\"metrics\",source=\"file\"}").ends_with(" 1"));
    assert!(line("allocwatch_orphan_usage_hours{centre=\"metrics\",account=\"zz\"").ends_with(" 5.0"));
    assert!(line("allocwatch_alerts_sent_total{channel=\"email\"}").ends_with(" 1"));
    for family in ["allocwatch_outbox_depth_points", "allocwatch_points_sent_total", "allocwatch_points_dropped_total", "allocwatch_cycles_total"] {
        assert!(text.contains(&format!("\n{family} ")), "no {family} in\n{text}");
    }
    assert!(text.ends_with("# EOF\n"));
    // Prometheus's own linter reads it as Prometheus would (Debian's `prometheus` package;
    // tests/run.sh installs it).
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    match promtool {
        Ok(mut child) => {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            // It parses (a parse error is a line of its own), and lints only two things, both
            // by design: hours and days of allocations are resource-hours, not durations (and
            // the names are the InfluxDB fields'); a counter's HELP is on its family name, as
            // OpenMetrics writes it (promtool reads the older text format).
            let mut lints = 0;
            for l in said.lines().filter(|l| !l.trim().is_empty()) {
                let unit = l.ends_with("use base unit \"seconds\" instead of \"hours\"") || l.ends_with("use base unit \"seconds\" instead of \"days\"");
                let counter_help = l.strip_suffix("_total no help text").is_some_and(|family| text.contains(&format!("# HELP {family} ")));
                assert!(unit || counter_help, "promtool check metrics: {l}\nin:\n{said}\non:\n{text}");
                lints += 1;
            }
            assert!(lints > 0 || out.status.success(), "{said}");
        }
        Err(e) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but promtool is not installed (tests/run.sh installs it): {e}");
            eprintln!("SKIPPED promtool check: {e}");
        }
    }
}

/// Write throughput to the local servers, by hand (needs the servers' environment):
/// `cargo test --release --test influx -- --ignored --nocapture write_throughput`
#[test]
#[ignore = "a measurement, run by hand; see README"]
fn write_throughput() {
    use allocwatch::sinks::{influxdb, outbox, Point};
    use allocwatch::store::Store;
    let Some(sv) = shared_servers("write_throughput") else { return };
    influx_create_db(sv.var("AW_INFLUX1_URL"), "aw_bench");
    let n: i64 = std::env::var("AW_BENCH_POINTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for (name, url, bucket) in [("VictoriaMetrics", sv.var("AW_VM_URL"), "b"), ("influxd 1.6 via proxy", sv.var("AW_INFLUX_PROXY_URL"), "aw_bench")] {
        for gzip in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let cfg_path = dir.path().join("c.toml");
            std::fs::write(&cfg_path, format!("[store]\npath = \"s.sqlite\"\n[influxdb]\n{}", influx_section(url, bucket, &format!("gzip = {gzip}")))).unwrap();
            std::env::set_var("AW_TEST_TOKEN", sv.var("AW_INFLUX_TOKEN"));
            let config = allocwatch::config::Config::load(&cfg_path).unwrap();
            let influx = config.influxdb.clone().unwrap();
            let mut store = Store::open(&config.store_path).unwrap();
            // Allocation-shaped points: 1,000 series × n/1,000 instants.
            let points: Vec<Point> = (0..n)
                .map(|i| {
                    Point::at_second("bench_allocation", 1_760_000_000 + (i / 1000) * 900)
                        .tag("centre", "idris")
                        .tag("project", &format!("A01{:08}", i % 1000))
                        .tag("resource", "gpu-a100")
                        .tag("committee", "CT5 physique")
                        .float("granted_hours", 50_000.0)
                        .float("consumed_hours", 1234.5678 + i as f64)
                        .float("drift_pp", -3.25)
                        .integer("status_code", 1)
                })
                .collect();
            let started = Instant::now();
            store.transaction(|tx| outbox::enqueue_bounded(tx, n as u64, &points, 0)).unwrap();
            let enqueue_s = started.elapsed().as_secs_f64();
            let sink = influxdb::InfluxSink::new(&influx).unwrap();
            let started = Instant::now();
            let r = rt.block_on(outbox::drain(&mut store, &sink, influx.batch_size)).unwrap();
            let secs = started.elapsed().as_secs_f64();
            assert!(r.error.is_none() && r.sent == n as u64, "{r:?}");
            println!(
                "{name:24} gzip={gzip:5} batch={}: {n} points sent in {secs:.2} s = {:.0} points/s (enqueue {:.0} points/s)",
                influx.batch_size,
                n as f64 / secs,
                n as f64 / enqueue_s
            );
        }
    }
}
