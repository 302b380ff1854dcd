//! `allocwatch run` end to end: the real binary on the demo data with a schedule of every
//! second, its HTTP endpoints, systemd notifications on a real datagram socket, SIGHUP with a
//! broken then a fixed configuration or adjustment file, SIGTERM (in time, and past the grace
//! period with a pull in flight), and the status page in a real headless Chromium.
//! Indicators go to the real VictoriaMetrics and alerts to the real SMTP server that
//! `tests/run.sh` starts.

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The demo configuration with absolute paths, its store in `dir`, and `extra` appended.
fn demo_config(dir: &Path, allocations: Option<&Path>, extra: &str) -> PathBuf {
    let root = root();
    let demo = std::fs::read_to_string(root.join("config/demo.toml")).unwrap();
    let mut text = demo
        .replace("path = \"../target/demo/allocwatch.sqlite\"", &format!("path = \"{}\"", dir.join("store.sqlite").display()))
        .replace("\"demo/", &format!("\"{}/config/demo/", root.display()));
    if let Some(a) = allocations {
        text = text.replace(&format!("\"{}/config/demo/allocations.csv\"", root.display()), &format!("\"{}\"", a.display()));
    }
    assert!(text.contains(&dir.join("store.sqlite").display().to_string()), "demo.toml changed shape");
    let p = dir.join("allocwatch.toml");
    std::fs::write(&p, format!("{text}\n{extra}")).unwrap();
    p
}

/// A running daemon; killed on drop if still running.
struct Daemon {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Daemon {
    fn start(config: &Path, port: u16, env: &[(&str, &str)]) -> Daemon {
        let log = config.with_file_name(format!("daemon-{}.log", std::process::id()));
        // As systemd does, WATCHDOG_PID names the daemon's own PID: `exec` keeps the shell's.
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "export WATCHDOG_PID=$$; exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_allocwatch")])
            .args(["--config", config.to_str().unwrap(), "run"])
            .env("ALLOCWATCH_LOG", "info")
            .env_remove("ALLOCWATCH_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let d = Daemon { child: cmd.spawn().expect("start allocwatch run"), log, port };
        wait_for(60, "the daemon's listener", || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        assert!(Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status().unwrap().success());
    }

    fn get(&self, path: &str, token: Option<&str>) -> Response {
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        request(self.port, &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"))
    }

    fn json(&self, path: &str, token: Option<&str>) -> Value {
        let r = self.get(path, token);
        assert_eq!(r.status, 200, "GET {path}: {}\n{}", r.body, self.log());
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {}", r.body))
    }

    /// A sample of `/metrics` (0 when absent).
    fn metric(&self, series: &str) -> f64 {
        let m = self.get("/metrics", None);
        m.body
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.trim().parse::<f64>().unwrap()))
            .unwrap_or(0.0)
    }

    /// One allocation's `allocwatch_allocation_<field>` sample in `/metrics`, if present.
    fn allocation_metric(&self, field: &str, (centre, project, resource): (&str, &str, &str)) -> Option<f64> {
        let m = self.get("/metrics", None);
        let (series, labels) = (format!("allocwatch_allocation_{field}{{"), [format!("centre=\"{centre}\""), format!("project=\"{project}\""), format!("resource=\"{resource}\"")]);
        let line = m.body.lines().find(|l| l.starts_with(&series) && labels.iter().all(|x| l.contains(x.as_str())))?;
        Some(line.rsplit(' ').next()?.trim().parse().unwrap())
    }

    fn wait_cycles(&self, at_least: f64) -> f64 {
        wait_for(90, &format!("{at_least} cycles"), || Some(self.metric("allocwatch_cycles_total")).filter(|n| *n >= at_least))
    }

    fn wait_exit(&mut self, secs: u64) -> std::process::ExitStatus {
        wait_for(secs, "the daemon to exit", || self.child.try_wait().unwrap())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 exchange over a fresh connection (the server closes it).
fn request(port: u16, raw: &str) -> Response {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Response { status, headers, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// systemd's side of `Type=notify`: a datagram socket collecting what the daemon sends.
struct NotifySocket {
    path: PathBuf,
    messages: Arc<Mutex<Vec<String>>>,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let m = messages.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => m.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        if Arc::strong_count(&m) == 1 {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
        NotifySocket { path, messages }
    }

    fn count(&self, line: &str) -> usize {
        self.messages.lock().unwrap().iter().filter(|m| m.lines().any(|l| l == line)).count()
    }
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn check_json_of(config: &Path) -> Value {
    let out = ok(&["--config", config.to_str().unwrap(), "check", "--format", "json"]);
    serde_json::from_str(&out).unwrap()
}

/// An `[http]` section on `port` whose API token is read from a file in `dir`, and the token.
fn http_with_token(dir: &Path, port: u16) -> (String, &'static str) {
    const TOKEN: &str = "token-T-0123456789";
    let file = dir.join("http.token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    (format!("[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_file = \"{}\"\n", file.display()), TOKEN)
}

/// A store, opened read-only (the daemon may still hold it).
fn store_ro(store: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

fn count(store: &Path, sql: &str) -> i64 {
    store_ro(store).query_row(sql, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The ledger, per centre name: its jobs (count, CPU·s, GPU·s), then its daily usage (jobs,
/// CPU·s, GPU·s, billing·s, node·s).
fn ledger(store: &Path) -> std::collections::BTreeMap<String, Vec<i64>> {
    let c = store_ro(store);
    let mut out = std::collections::BTreeMap::<String, Vec<i64>>::new();
    for sql in [
        "SELECT c.name, COUNT(*), SUM(j.elapsed * j.cpus), SUM(j.elapsed * j.gpus) FROM jobs j JOIN names c ON c.id = j.centre GROUP BY c.name",
        "SELECT c.name, SUM(u.jobs), SUM(u.cpu_s), SUM(u.gpu_s), SUM(u.billing_s), SUM(u.node_s) FROM usage_daily u JOIN names c ON c.id = u.centre GROUP BY c.name",
    ] {
        let mut st = c.prepare(sql).unwrap();
        let n = st.column_count();
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, (1..n).map(|i| r.get::<_, i64>(i)).collect::<Result<Vec<_>, _>>()?))).unwrap();
        for row in rows {
            let (centre, v) = row.unwrap();
            out.entry(centre).or_default().extend(v);
        }
    }
    out
}

fn integrity(store: &Path) -> String {
    store_ro(store).query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap()
}

#[test]
fn run_serves_every_endpoint_reloads_on_sighup_and_stops_cleanly_on_sigterm() {
    let Some(env) = server_env("daemon_life_cycle", &["AW_VM_URL", "AW_SMTP_PORT", "AW_SMTP_MAILDIR"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    // What `check --format json` prints on the same data, from a scratch store.
    let reference_dir = tempfile::tempdir().unwrap();
    let expected = check_json_of(&demo_config(reference_dir.path(), None, ""));
    assert_eq!(expected.as_array().unwrap().len(), 38);

    let tag = format!("daemon-{}-{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000);
    let token_file = dir.path().join("http.token");
    std::fs::write(&token_file, "token-A-0123456789\n").unwrap();
    let port = free_port();
    let sections = |schedule: &str| {
        format!(
            r#"
[daemon]
schedule = "{schedule}"
jitter_seconds = 0
quality_report = "*/2 * * * * *"
shutdown_grace_seconds = 20
ready_max_cycle_age_seconds = 60

[http]
listen = "127.0.0.1:{port}"
token_file = "{token}"

[influxdb]
url = "{vm}"
org = "allocwatch"
bucket = "daemon"
token_env = "AW_TEST_INFLUX_TOKEN"
timeout_seconds = 5

[alerts.email]
host = "127.0.0.1"
port = {smtp}
tls = "none"
from = "allocwatch@ops.example"
[alerts.operations]
emails = ["ops@{tag}.example"]
digest = true
[alerts.delivery]
retry_initial_seconds = 1
retry_max_seconds = 5
timeout_seconds = 5

# A centre whose sacct sits behind a login node that times out after 3 s: slow and failing.
[[centre]]
id = "slowc"
timezone = "UTC"
clusters = ["slowcluster"]
schedule = "* * * * * *"
[[centre.source]]
kind = "sacct"
command_prefix = ["sh", "-c", "sleep 3; echo 'ssh: connect to host login.slowc.example port 22: Connection timed out' >&2; exit 255", "sh"]
"#,
            token = token_file.display(),
            vm = env["AW_VM_URL"],
            smtp = env["AW_SMTP_PORT"],
        )
    };
    let config = demo_config(dir.path(), None, &sections("* * * * * *"));
    let notify = NotifySocket::bind(dir.path());
    let mut d = Daemon::start(
        &config,
        port,
        &[("AW_TEST_INFLUX_TOKEN", "x"), ("NOTIFY_SOCKET", notify.path.to_str().unwrap()), ("WATCHDOG_USEC", "1000000")],
    );

    // Two cycles on the every-second schedule.
    d.wait_cycles(2.0);

    // The slow centre's ticks are skipped while its pull runs, and counted; the others go on.
    wait_for(30, "skipped ticks of the slow centre", || (d.metric("allocwatch_job_ticks_skipped_total{job=\"pull:slowc\"}") >= 2.0).then_some(()));
    let runs = |job: &str, outcome: &str| d.metric(&format!("allocwatch_job_runs_total{{job=\"{job}\",outcome=\"{outcome}\"}}"));
    wait_for(30, "a failed run of the slow centre", || (runs("pull:slowc", "failed") >= 1.0).then_some(()));
    // A slow centre delays no other: idris pulls on (a wait, not a count at an instant, so a
    // loaded machine cannot fail it; a blocked idris would never get ahead).
    wait_for(60, "idris pulling more often than the slow centre fails", || {
        let (slow, fast) = (runs("pull:slowc", "failed"), runs("pull:idris", "ok"));
        (fast >= slow + 2.0).then_some(())
    });
    assert_eq!(runs("pull:slowc", "ok"), 0.0);
    wait_for(10, "READY=1 and watchdog pings", || (notify.count("READY=1") >= 1 && notify.count("WATCHDOG=1") >= 2).then_some(()));
    let token = Some("token-A-0123456789");

    // Health and metrics are open by default; readiness has a recent cycle.
    let h = d.get("/healthz", None);
    assert_eq!((h.status, h.body.contains("\"ok\"")), (200, true), "{h:?}");
    let r = d.json("/readyz", None);
    assert_eq!(r["ready"], true, "{r}");
    let m = d.get("/metrics", None);
    assert_eq!(m.status, 200);
    assert_eq!(m.header("content-type"), Some(allocwatch::daemon::metrics::CONTENT_TYPE));
    assert!(m.body.contains("allocwatch_job_runs_total{job=\"pull:idris\",outcome=\"ok\"}"), "{}", m.body);
    assert!(m.body.contains("allocwatch_allocation_consumed_hours{centre=\"idris\",project=\"A0170978492\""), "{}", m.body);

    // The API needs the token: none, wrong, right.
    let none = d.get("/api/v1/allocations", None);
    assert_eq!(none.status, 401, "{none:?}");
    assert_eq!(none.header("www-authenticate"), Some("Bearer realm=\"allocwatch\""));
    assert!(!none.body.contains("token-A"), "{none:?}");
    assert_eq!(d.get("/api/v1/allocations", Some("token-A-0123456788")).status, 401);
    assert_eq!(d.get("/api/v1/allocations", Some("token-A")).status, 401);
    // Exactly the `check --format json` objects.
    let got = d.json("/api/v1/allocations", token);
    assert_eq!(got, expected);

    // One allocation: its daily series adds up to what the cycle reconciled.
    let one = d.json("/api/v1/allocations/idris/A0170978492/gpu-v100", token);
    let want = expected.as_array().unwrap().iter().find(|a| a["project"] == "A0170978492").unwrap();
    assert_eq!(&one["allocation"], want);
    let daily = one["daily"].as_array().unwrap();
    let sum: f64 = daily.iter().map(|x| f(x, "hours")).sum();
    let consumed = f(want, "consumed_hours");
    assert!((sum - consumed).abs() < 1e-6 * consumed.max(1.0), "daily sum {sum} vs consumed {consumed}");
    assert!((f(daily.last().unwrap(), "cumulative_hours") - consumed).abs() < 1e-6 * consumed.max(1.0));
    assert_eq!(daily.first().unwrap()["date"], "2026-05-01");
    assert_eq!(daily.last().unwrap()["date"], "2026-11-15");
    assert_eq!(one["curve"].as_array().unwrap().len(), 366, "a local midnight per day of 2026-05-01..2027-05-01, end included");
    let proj = one["projection"].as_array().unwrap();
    assert_eq!(proj.len(), 2);
    assert_eq!(f(&proj[0], "hours"), consumed);
    assert_eq!(proj[1]["at"], "2027-04-30T22:00:00Z");
    // The forecast's band: from the consumed hours at the instant to the forecast's end
    // quantiles at the period end, P10 ≤ P50 ≤ P90 all along.
    let band = one["band"].as_array().unwrap();
    assert!(band.len() >= 2 && band.len() <= 14, "{band:?}");
    assert_eq!(band[0]["at"], proj[0]["at"]);
    assert_eq!((f(&band[0], "p10_hours"), f(&band[0], "p50_hours"), f(&band[0], "p90_hours")), (consumed, consumed, consumed));
    let last = band.last().unwrap();
    assert_eq!(last["at"], "2027-04-30T22:00:00Z");
    for p in ["p10", "p50", "p90"] {
        assert_eq!(f(last, &format!("{p}_hours")), f(&want["forecast"], &format!("end_consumed_hours_{p}")), "{p}");
    }
    assert!(band.iter().all(|p| f(p, "p10_hours") <= f(p, "p50_hours") && f(p, "p50_hours") <= f(p, "p90_hours")), "{band:?}");
    assert_eq!(d.get("/api/v1/allocations/idris/NOPE/gpu-v100", token).status, 404);
    assert_eq!(d.get("/api/v1/allocations/idris/A0170978492/gpu-v100", None).status, 401);

    // Alerts (the demo has exhausted allocations) and feeds.
    let alerts = wait_for(30, "exhausted alerts in the API", || {
        let a = d.json("/api/v1/alerts", token);
        a.as_array().unwrap().iter().any(|x| x["rule"] == "exhausted").then_some(a)
    });
    assert!(alerts.as_array().unwrap().iter().all(|x| x["state"] == "firing"), "{alerts}");
    let feeds = d.json("/api/v1/feeds", token);
    let feeds = feeds.as_array().unwrap();
    assert_eq!(feeds.iter().map(|f| f["centre"].as_str().unwrap()).collect::<Vec<_>>(), ["cines", "idris", "slowc", "tgcc"]);
    let slowc = &feeds[2];
    assert!(slowc["consecutive_failures"].as_u64() >= Some(1), "{slowc}");
    assert!(slowc["last_error"].as_str().unwrap_or("").contains("Connection timed out"), "{slowc}");
    assert!(slowc["job"]["skipped_ticks"].as_u64() >= Some(2) && slowc["job"]["last_ok"] == false, "{slowc}");
    for fd in feeds.iter().filter(|f| f["centre"] != "slowc") {
        assert_eq!(fd["schedule"], "* * * * * *", "{fd}");
        assert_eq!(fd["consecutive_failures"], 0, "{fd}");
        assert!(fd["job"]["runs"].as_u64() >= Some(1) && fd["job"]["last_ok"] == true, "{fd}");
        assert_eq!(fd["sources"].as_array().unwrap().len(), 2, "the demo's two files per centre: {fd}");
    }
    assert_eq!(d.get("/api/v1/alerts", None).status, 401);
    assert_eq!(d.get("/api/v1/feeds", None).status, 401);

    // The page: closed without the token (sign-in), open with it or its cookie.
    let page = d.get("/", None);
    assert_eq!((page.status, page.header("location")), (303, Some("/login")), "{page:?}");
    let page = d.get("/", token);
    assert_eq!(page.status, 200);
    assert_eq!(page.body.matches("<tr data-centre=").count(), 38);
    let bad = request(port, "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\nConnection: close\r\n\r\ntoken=wrong");
    assert_eq!(bad.status, 401);
    let body = "token=token-A-0123456789";
    let login = request(
        port,
        &format!("POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
    );
    assert_eq!(login.status, 303, "{login:?}");
    let cookie = login.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    assert!(login.header("set-cookie").unwrap().contains("HttpOnly"));
    let with_cookie = request(port, &format!("GET /allocations/idris/A0170978492/gpu-v100 HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"));
    assert_eq!(with_cookie.status, 200);
    assert!(with_cookie.body.contains("<path class=\"consumed\" d=\"M"), "{}", with_cookie.body);

    // SIGHUP with a broken configuration: refused, named, and the old one keeps running.
    let good_text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, good_text.replacen("schedule = \"* * * * * *\"", "schedule = \"every second\"", 1)).unwrap();
    d.signal("HUP");
    wait_for(30, "the rejected reload", || (d.metric("allocwatch_config_reloads_total{outcome=\"rejected\"}") == 1.0).then_some(()));
    let log = d.log();
    assert!(log.contains("configuration reload REJECTED") && log.contains("daemon.schedule: \"every second\""), "{log}");
    let before = d.metric("allocwatch_cycles_total");
    d.wait_cycles(before + 2.0);
    assert_eq!(d.json("/api/v1/allocations", token).as_array().unwrap().len(), 38);
    assert_eq!(d.get("/readyz", None).status, 200);

    // SIGHUP with a fixed configuration: fewer allocations and a new token take effect.
    let csv = std::fs::read_to_string(root().join("config/demo/allocations.csv")).unwrap();
    let kept: Vec<&str> = csv.lines().take(csv.lines().count() - 3).collect();
    let fewer = dir.path().join("allocations.csv");
    std::fs::write(&fewer, kept.join("\n") + "\n").unwrap();
    std::fs::write(&token_file, "token-B-9876543210\n").unwrap();
    let fixed = demo_config(dir.path(), Some(&fewer), &sections("* * * * * *"));
    assert_eq!(fixed, config);
    d.signal("HUP");
    wait_for(30, "the applied reload", || (d.metric("allocwatch_config_reloads_total{outcome=\"applied\"}") == 1.0).then_some(()));
    let new_token = Some("token-B-9876543210");
    wait_for(30, "35 allocations after the reload", || {
        let r = d.get("/api/v1/allocations", new_token);
        (r.status == 200 && serde_json::from_str::<Value>(&r.body).ok()?.as_array()?.len() == 35).then_some(())
    });
    assert_eq!(d.get("/api/v1/allocations", token).status, 401, "the old token must no longer work");
    assert!(notify.count("RELOADING=1") >= 2, "{:?}", notify.messages.lock().unwrap());
    let cycles_before_stop = d.wait_cycles(d.metric("allocwatch_cycles_total") + 1.0);
    // The quality report ran on its own schedule (once per month: later ticks are no-ops).
    wait_for(60, "a quality report run", || (runs("quality_report", "ok") >= 2.0).then_some(()));

    // SIGTERM: exit 0, both outboxes flushed.
    d.signal("TERM");
    let status = d.wait_exit(60);
    let log = d.log();
    assert!(status.success(), "exit {status}:\n{log}");
    assert!(log.contains("SIGTERM: stopping") && log.contains("allocwatch stopped"), "{log}");
    assert!(notify.count("STOPPING=1") >= 1);
    let st: Value = serde_json::from_str(&ok(&["--config", config.to_str().unwrap(), "outbox", "status", "--format", "json"])).unwrap();
    assert_eq!(st["depth"], 0, "indicator outbox not flushed: {st}\n{log}");
    assert!(st["sent_total"].as_i64().unwrap() >= 30 * cycles_before_stop as i64, "{st}");
    let conn = rusqlite::Connection::open(dir.path().join("store.sqlite")).unwrap();
    let pending: i64 = conn.query_row("SELECT COUNT(*) FROM notifications WHERE state = 'pending'", [], |r| r.get(0)).unwrap();
    let sent: i64 = conn.query_row("SELECT COUNT(*) FROM notifications WHERE state = 'sent'", [], |r| r.get(0)).unwrap();
    assert_eq!(pending, 0, "notification outbox not flushed\n{log}");
    let (period, trigger, points): (String, String, i64) =
        conn.query_row("SELECT period, trigger, points FROM quality_runs", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
    assert_eq!(trigger, "schedule");
    assert!(points > 0 && period.len() == 7, "{period} {points}");
    assert!(log.contains(&format!("{period} already queued")), "{log}");
    assert!(sent > 0);
    // The operations digest really reached the SMTP server.
    let maildir = PathBuf::from(&env["AW_SMTP_MAILDIR"]).join("new");
    let ours = std::fs::read_dir(&maildir).unwrap().flatten().filter(|e| std::fs::read_to_string(e.path()).unwrap_or_default().contains(&format!("ops@{tag}.example"))).count();
    assert!(ours >= 1, "no mail to ops@{tag}.example in {}", maildir.display());
}

/// The Chromium binary, if installed.
fn chromium() -> Option<PathBuf> {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(c).output() {
            if out.status.success() {
                return Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
            }
        }
    }
    None
}

/// Run headless Chromium on a URL with extra arguments; returns stdout.
fn chromium_run(bin: &Path, profile: &Path, args: &[&str], url: &str) -> String {
    // Under a timeout: a Chromium that hangs fails this test in two minutes.
    let out = Command::new("timeout")
        .args(["--kill-after=10", "120"])
        .arg(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-quic",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.display()),
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert_ne!(out.status.code(), Some(124), "chromium {args:?} {url}: timed out after 120 s");
    assert!(out.status.success(), "chromium {args:?} {url}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where the Chromium tests save their screenshots: `ALLOCWATCH_SCREENSHOT_DIR` when set, else
/// `target/test-artifacts` (created).
fn screenshot_dir() -> PathBuf {
    let out = std::env::var_os("ALLOCWATCH_SCREENSHOT_DIR").filter(|d| !d.is_empty()).map(PathBuf::from).unwrap_or_else(|| root().join("target/test-artifacts"));
    std::fs::create_dir_all(&out).unwrap();
    out
}

fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    (u32::from_be_bytes(b[16..20].try_into().unwrap()), u32::from_be_bytes(b[20..24].try_into().unwrap()))
}

#[test]
fn status_page_renders_in_headless_chromium() {
    let Some(bin) = chromium() else {
        if ci() {
            panic!("CI=true but chromium is not installed (tests/run.sh installs it)");
        }
        eprintln!("SKIPPED status_page_renders_in_headless_chromium: chromium not installed (tests/run.sh installs it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A committee name that would run a script if the page interpolated it raw.
    let csv = std::fs::read_to_string(root().join("config/demo/allocations.csv")).unwrap();
    let hostile = "CT9-<img src=x onerror=alert(1)>";
    let csv = csv.replacen("CT4-astrophysics", hostile, 1);
    let allocations = dir.path().join("allocations.csv");
    std::fs::write(&allocations, csv).unwrap();
    let port = free_port();
    let config = demo_config(
        dir.path(),
        Some(&allocations),
        &format!("[daemon]\nschedule = \"*/5 * * * * *\"\njitter_seconds = 0\n[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"AW_TEST_HTTP_TOKEN\"\nopen_status_page = true\n"),
    );
    let expected = check_json_of(&config);
    let rows = expected.as_array().unwrap();
    let d = Daemon::start(&config, port, &[("AW_TEST_HTTP_TOKEN", "page-token-0123")]);
    d.wait_cycles(1.0);
    let base = format!("http://127.0.0.1:{port}");
    let profile = tempfile::tempdir().unwrap();

    // The table, as the browser built it.
    let dom = chromium_run(&bin, profile.path(), &["--dump-dom"], &format!("{base}/"));
    assert_eq!(dom.matches("<tr data-centre=").count(), rows.len(), "{dom}");
    for (status, _) in allocwatch::daemon::page::STATUSES {
        let n = rows.iter().filter(|r| r["status"] == *status).count();
        assert!(dom.contains(&format!("id=\"count-{status}\">{n}</div>")), "count of {status} should be {n}");
    }
    for r in rows {
        assert!(dom.contains(&format!(">{}</a></td>", r["project"].as_str().unwrap())), "row {} missing", r["project"]);
    }
    // (Attribute values may be serialised with a raw `<`: look at markup outside them.)
    let mut outside = String::new();
    for (i, part) in dom.split('"').enumerate() {
        if i % 2 == 0 {
            outside.push_str(part);
        }
    }
    assert!(!outside.contains("<img"), "the hostile committee name became markup");
    assert!(dom.contains("CT9-&lt;img src=x onerror=alert(1)&gt;"), "the hostile committee name is not shown escaped");

    // Filtered by centre and status: only those rows.
    let over_cines = rows.iter().filter(|r| r["centre"] == "cines" && r["status"] == "over_pace").count();
    assert!(over_cines > 0);
    let dom_f = chromium_run(&bin, profile.path(), &["--dump-dom"], &format!("{base}/?centre=cines&status=over_pace&sort=drift&dir=desc"));
    assert_eq!(dom_f.matches("<tr data-centre=\"cines\"").count(), over_cines);
    assert_eq!(dom_f.matches("<tr data-centre=").count(), over_cines);
    assert_eq!(dom_f.matches("data-status=\"over_pace\"").count(), over_cines);
    assert!(dom_f.contains("aria-sort=\"descending\""));

    // One allocation's chart: every series drawn.
    let detail = format!("{base}/allocations/cines/A0190632744/gpu-mi250");
    let dom_a = chromium_run(&bin, profile.path(), &["--dump-dom"], &detail);
    for class in ["granted", "expected", "consumed", "consumed-area", "projection", "band", "band-median"] {
        let marker = format!("<path class=\"{class}\" d=\"M");
        let at = dom_a.find(&marker).unwrap_or_else(|| panic!("no {class} path in\n{dom_a}"));
        let d_attr = &dom_a[at + marker.len() - 1..];
        let d_attr = &d_attr[..d_attr.find('"').unwrap()];
        assert!(d_attr.matches(['L', 'H', 'V']).count() >= 1, "{class} path is empty: {d_attr}");
    }
    assert!(dom_a.matches("<path class=\"consumed\"").count() == 1 && dom_a.contains("now · 2026-11-15"));
    // The forecast's band, under the lines, in the legend and in the figures.
    assert!(dom_a.find("<path class=\"band\"").unwrap() < dom_a.find("<path class=\"granted\"").unwrap(), "the band is drawn over the lines");
    assert!(dom_a.contains("80 % band (P10–P90)</span>"), "{dom_a}");
    let band = rows.iter().find(|r| r["project"] == "A0190632744").unwrap()["forecast"].clone();
    let date = |k: &str| band[k].as_str().map(|s| s[..10].to_string()).unwrap_or_else(|| "not within the period".into());
    let want = format!("Forecast exhaustion (P10–P50–P90)</div><div class=\"v\">{} – {} – {}</div>", date("exhaustion_p10"), date("exhaustion_p50"), date("exhaustion_p90"));
    assert!(dom_a.contains(&want), "no {want} in\n{dom_a}");
    assert!(dom_a.contains("Forecast at period end (P10–P50–P90)</div><div class=\"v\">"), "{dom_a}");

    // Screenshots for people to look at.
    let out = screenshot_dir();
    let page_png = out.join("status-page.png");
    let alloc_png = out.join("allocation-page.png");
    chromium_run(&bin, profile.path(), &["--window-size=1440,1500", &format!("--screenshot={}", page_png.display())], &format!("{base}/"));
    chromium_run(&bin, profile.path(), &["--window-size=1440,1250", &format!("--screenshot={}", alloc_png.display())], &detail);
    assert_eq!(png_size(&page_png), (1440, 1500));
    assert_eq!(png_size(&alloc_png), (1440, 1250));
    assert!(std::fs::metadata(&page_png).unwrap().len() > 50_000, "the screenshot looks blank");
    eprintln!("screenshots: {} {}", page_png.display(), alloc_png.display());
}

/// The Slurm lab `tests/run.sh` starts (its `env.sh` exported), if any.
fn slurm_lab(test: &str) -> Option<(PathBuf, PathBuf)> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (var("SLURM_LAB_DIR"), var("SLURM_LAB_JOBS")) {
        (Some(dir), Some(jobs)) if Path::new(&dir).join("env.sh").is_file() => Some((dir.into(), jobs.into())),
        _ => {
            if ci() {
                panic!("{test}: CI=true but no Slurm lab is up (SLURM_LAB_DIR…): tests/run.sh starts one");
            }
            eprintln!("SKIPPED {test}: no Slurm lab (run tests/run.sh)");
            None
        }
    }
}

#[test]
fn backfill_pulls_a_past_window_in_chunks_and_resumes_after_an_interruption() {
    let Some((lab, jobs_sh)) = slurm_lab("backfill") else { return };
    let jobs = |args: &[&str]| {
        let out = Command::new("bash").arg(&jobs_sh).arg(&lab).args(args).output().unwrap();
        assert!(out.status.success(), "jobs.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let ids = [jobs(&["cpu", "abc", "1", "2"]), jobs(&["cpu", "orphanacct", "2", "1"])];
    jobs(&["wait-idle", "240"]);
    let dir = tempfile::tempdir().unwrap();
    // sacct behind a slow wrapper (as an ssh prefix would be), so that chunks take a moment.
    let config = write_config(
        dir.path(),
        r#"
[[centre]]
id = "lab"
timezone = "Europe/Paris"
clusters = ["jeanzay"]
[[centre.billing]]
resource = "cpu"
partitions = ["cpu_p1"]
unit = "cpu"
[[centre.source]]
kind = "sacct"
command_prefix = ["sh", "-c", "sleep 1; exec \"$@\"", "sh"]
"#,
    );
    let now = jiff::Timestamp::now();
    let from = (now - jiff::SignedDuration::from_hours(72)).to_string();
    let to = (now + jiff::SignedDuration::from_secs(120)).to_string();
    let args = ["--config", config.to_str().unwrap(), "backfill", "--centre", "lab", "--from", &from, "--to", &to, "--chunk", "1d"];
    let store = dir.path().join("store.sqlite");
    let done_until = || -> Option<(i64, i64, i64)> {
        let c = rusqlite::Connection::open(&store).ok()?;
        c.query_row("SELECT done_until, window_start, records FROM backfills", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).ok()
    };

    // First run: interrupted (SIGINT) once a chunk is stored; it finishes the chunk in flight.
    let mut child = Command::new(env!("CARGO_BIN_EXE_allocwatch")).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for(60, "a first chunk stored", || done_until().filter(|(d, s, _)| d > s));
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = wait_for(60, "the interrupted backfill to exit", || child.try_wait().unwrap());
    let mut stdout = String::new();
    let mut stderr = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(out.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("interrupted after the chunk in flight") && stderr.contains("(1 of 4 chunks)"), "{stderr}");
    let (stopped_at, start, _) = done_until().unwrap();
    assert!(stopped_at > start && stopped_at < start + 4 * 86400, "{stopped_at}");

    // Second run: resumes there and finishes.
    let out = aw(&args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", common::stderr(&out));
    assert!(text.contains("lab/sacct: resumed at") && text.contains("of 4 chunks pulled"), "{text}");
    let (end, _, records) = done_until().unwrap();
    assert_eq!(end, to.parse::<jiff::Timestamp>().unwrap().as_second());
    let c = rusqlite::Connection::open(&store).unwrap();
    for id in &ids {
        let n: i64 = c.query_row("SELECT COUNT(*) FROM jobs WHERE job_id_raw = ?1", [id.parse::<i64>().unwrap()], |r| r.get(0)).unwrap();
        assert_eq!(n, 1, "job {id} stored once");
    }
    assert!(records >= 2, "{records}");

    // Third run: nothing left to do.
    let text = ok(&args);
    assert!(text.contains("already backfilled (4 chunks)"), "{text}");
}

// ---- researchers: signed links to one project's page ------------------------------------------

const LINK_KEY_NEW: &str = "link-key-2026-12-0123456789abcdef0123456789";
const LINK_KEY_OLD: &str = "link-key-2026-06-0123456789abcdef0123456789";
const LINK_KEY_GONE: &str = "link-key-2025-12-0123456789abcdef0123456789";
/// A project holding allocations on the three centres (CPU, billing-unit CPU, GPU).
const MULTI: &str = "A0170513003";

/// `[http]` with a public address and `[links]` with two keys (the new one signs).
fn links_section(port: u16, keys: &str) -> String {
    format!(
        "[daemon]\nschedule = \"*/5 * * * * *\"\njitter_seconds = 0\n[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"AW_TEST_HTTP_TOKEN\"\npublic_url = \"http://127.0.0.1:{port}\"\n[links]\nkeys = [{keys}]\n"
    )
}

const BOTH_KEYS: &str = "{ id = \"2026-12\", key_env = \"AW_TEST_LINK_NEW\" }, { id = \"2026-06\", key_env = \"AW_TEST_LINK_OLD\" }";

fn link_env() -> Vec<(&'static str, &'static str)> {
    vec![("AW_TEST_HTTP_TOKEN", "ops-token-0123456789"), ("AW_TEST_LINK_NEW", LINK_KEY_NEW), ("AW_TEST_LINK_OLD", LINK_KEY_OLD), ("AW_TEST_LINK_GONE", LINK_KEY_GONE)]
}

/// `allocwatch link` with the test keys (optionally under faketime): the URL it prints.
fn make_link(config: &Path, project: &str, faketime: Option<&str>) -> String {
    let mut cmd = match faketime {
        Some(f) => {
            let mut c = Command::new("faketime");
            c.args(["-f", f, env!("CARGO_BIN_EXE_allocwatch")]);
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_allocwatch")),
    };
    cmd.args(["--config", config.to_str().unwrap(), "link", "--project", project]).env("ALLOCWATCH_LOG", "warn");
    for (k, v) in link_env() {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run allocwatch link");
    assert!(out.status.success(), "link: {}", stderr(&out));
    assert!(stderr(&out).contains("valid until"), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The path and query of a link printed for `port`.
fn path_of(url: &str, port: u16) -> String {
    url.strip_prefix(&format!("http://127.0.0.1:{port}")).unwrap_or_else(|| panic!("{url} is not on port {port}")).to_string()
}

fn post_login(port: u16, token: &str) -> Response {
    let body = format!("token={token}");
    request(
        port,
        &format!("POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
    )
}

#[test]
fn a_signed_link_opens_only_its_project_on_every_route_and_says_why_when_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = demo_config(dir.path(), None, &links_section(port, BOTH_KEYS));
    let plain = tempfile::tempdir().unwrap();
    let expected = check_json_of(&demo_config(plain.path(), None, ""));
    let rows = expected.as_array().unwrap();
    let mine: Vec<&Value> = rows.iter().filter(|r| r["project"] == MULTI).collect();
    assert_eq!(mine.iter().map(|r| r["centre"].as_str().unwrap()).collect::<std::collections::BTreeSet<_>>().len(), 3, "{MULTI} holds hours on three centres");
    let others: std::collections::BTreeSet<&str> = rows.iter().map(|r| r["project"].as_str().unwrap()).filter(|p| *p != MULTI).collect();
    let other = rows.iter().find(|r| r["project"] != MULTI).unwrap();
    let (oc, op, or) = (other["centre"].as_str().unwrap(), other["project"].as_str().unwrap(), other["resource"].as_str().unwrap());
    let env = link_env();
    let d = Daemon::start(&config, port, &env);
    d.wait_cycles(1.0);

    let link = make_link(&config, MULTI, None);
    assert!(link.starts_with(&format!("http://127.0.0.1:{port}/projects/{MULTI}?key=v1.")), "{link}");
    let key = link.split("key=").nth(1).unwrap().to_string();
    let no_other_project = |body: &str, what: &str| {
        for p in &others {
            assert!(!body.contains(p), "{what}: another project's id {p} in the answer:\n{body}");
        }
    };

    // Each centre is pulled on its own thread and a cycle follows each pull: wait for the cycle
    // that saw every centre's files.
    let api = wait_for(60, "a cycle after every centre's first pull", || {
        let api = d.json(&format!("/api/v1/projects/{MULTI}?key={key}"), None);
        let all = api["allocations"].as_array().unwrap().iter().all(|a| mine.iter().any(|r| **r == a["allocation"]));
        all.then_some(api)
    });
    // Its own page, JSON and CSV.
    let page = d.get(&path_of(&link, port), None);
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    for r in &mine {
        assert!(page.body.contains(&format!("{} on {}", r["resource"].as_str().unwrap(), r["centre"].as_str().unwrap())), "{}", r["resource"]);
    }
    for kind in ["core-hours", "GPU-hours", "billing-hours"] {
        assert!(page.body.contains(&format!("<tr><td>{kind}</td>")), "summary row for {kind}");
    }
    assert!(!page.body.contains("All allocations"), "a link holder is not sent to the overview");
    no_other_project(&page.body, "project page");
    let allocs = api["allocations"].as_array().unwrap();
    assert_eq!(allocs.len(), mine.len());
    for a in allocs {
        let r = mine.iter().find(|r| r["centre"] == a["allocation"]["centre"] && r["resource"] == a["allocation"]["resource"]).unwrap();
        assert_eq!(a["allocation"], **r, "the API's allocation object is check's");
        let last = a["daily"].as_array().unwrap().last().unwrap();
        assert!((last["cumulative_hours"].as_f64().unwrap() - r["consumed_hours"].as_f64().unwrap()).abs() < 0.01);
        assert!(a["drivers"]["users"].as_array().is_some_and(|u| !u.is_empty()), "drivers: {}", a["drivers"]);
    }
    for s in api["summary"].as_array().unwrap() {
        let of_kind: Vec<&Value> = allocs.iter().filter(|a| a["kind"] == s["kind"]).map(|a| &a["allocation"]).collect();
        let granted: f64 = of_kind.iter().map(|a| a["granted_hours"].as_f64().unwrap()).sum();
        assert!((s["granted_hours"].as_f64().unwrap() - granted).abs() < 1e-6, "summary {s} vs {granted}");
    }
    no_other_project(&serde_json::to_string(&api).unwrap(), "project JSON");
    let by_bearer = d.get(&format!("/api/v1/projects/{MULTI}"), Some(&key));
    assert_eq!(by_bearer.status, 200, "the link's key works as a bearer token on its own project");
    let csv = d.get(&format!("/projects/{MULTI}/daily.csv?key={key}"), None);
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines[0], "centre,project,resource,period_start,unit,date,charged_hours,cumulative_hours");
    for r in &mine {
        let last = lines.iter().rev().find(|l| l.starts_with(&format!("{},{MULTI},{},", r["centre"].as_str().unwrap(), r["resource"].as_str().unwrap()))).unwrap();
        let cum: f64 = last.rsplit(',').next().unwrap().parse().unwrap();
        assert!((cum - r["consumed_hours"].as_f64().unwrap()).abs() < 0.01, "{last}");
    }
    no_other_project(&csv.body, "CSV");

    // Every other route, with the key in the query or as a bearer token: 403, no data.
    let routes = [
        "/".to_string(),
        "/api/v1/allocations".into(),
        format!("/api/v1/allocations/{}/{MULTI}/{}", mine[0]["centre"].as_str().unwrap(), mine[0]["resource"].as_str().unwrap()),
        format!("/api/v1/allocations/{oc}/{op}/{or}"),
        "/api/v1/alerts".into(),
        "/api/v1/alerts?all=true".into(),
        "/api/v1/feeds".into(),
        format!("/allocations/{}/{MULTI}/{}", mine[0]["centre"].as_str().unwrap(), mine[0]["resource"].as_str().unwrap()),
        format!("/allocations/{oc}/{op}/{or}"),
        format!("/projects/{op}"),
        format!("/projects/{op}/daily.csv"),
        format!("/api/v1/projects/{op}"),
        "/metrics".into(),
        "/healthz".into(),
        "/readyz".into(),
        "/login".into(),
    ];
    for route in &routes {
        let sep = if route.contains('?') { '&' } else { '?' };
        for (how, r) in [("query", d.get(&format!("{route}{sep}key={key}"), None)), ("bearer", d.get(route, Some(&key)))] {
            assert_eq!(r.status, 403, "{route} with the link's key as {how}: {} {}", r.status, r.body);
            assert!(r.body.contains(&format!("opens project {MULTI} only")), "{route} ({how}) says which project the link is for: {}", r.body);
            assert!(r.body.contains(&format!("/projects/{MULTI}?key=")), "{route} ({how}) shows the way to the link's own page: {}", r.body);
            no_other_project(&r.body, route);
        }
    }

    // Refusals that say why: altered, expired, signed with a key no longer accepted; a key being
    // rotated out still works.
    let mut tampered = key.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let r = d.get(&format!("/projects/{MULTI}?key={tampered}"), None);
    assert_eq!(r.status, 403);
    assert!(r.body.contains("has been altered") && r.body.contains("Access refused"), "{}", r.body);
    let expired = make_link(&config, MULTI, Some("-40d"));
    let r = d.get(&path_of(&expired, port), None);
    assert_eq!(r.status, 403);
    assert!(r.body.contains(&format!("This link to project {MULTI} expired on")), "{}", r.body);
    let old_only = dir.path().join("old-key.toml");
    std::fs::write(&old_only, std::fs::read_to_string(&config).unwrap().replace(BOTH_KEYS, "{ id = \"2026-06\", key_env = \"AW_TEST_LINK_OLD\" }")).unwrap();
    let old = make_link(&old_only, MULTI, None);
    assert!(old.contains(".2026-06."), "{old}");
    assert_eq!(d.get(&path_of(&old, port), None).status, 200, "a link signed with the previous key still opens");
    let gone = dir.path().join("gone-key.toml");
    std::fs::write(&gone, std::fs::read_to_string(&config).unwrap().replace(BOTH_KEYS, "{ id = \"2025-12\", key_env = \"AW_TEST_LINK_GONE\" }")).unwrap();
    let r = d.get(&path_of(&make_link(&gone, MULTI, None), port), None);
    assert_eq!(r.status, 403);
    assert!(r.body.contains("2025-12&quot;, which this server no longer accepts"), "{}", r.body);
    let r = d.get(&format!("/api/v1/projects/{MULTI}?key=v1.garbage"), None);
    assert_eq!((r.status, r.body.contains("\"reason\":\"malformed\"")), (403, true), "{}", r.body);

    // The operations token sees every project; nothing at all gets the sign-in or a 401.
    let ops = d.get(&format!("/projects/{op}"), Some("ops-token-0123456789"));
    assert_eq!(ops.status, 200);
    assert!(ops.body.contains("All allocations"));
    assert_eq!(d.get(&format!("/projects/{MULTI}"), None).status, 303);
    assert_eq!(d.get(&format!("/api/v1/projects/{MULTI}"), None).status, 401);
    assert_eq!(d.get("/projects/NO-SUCH-PROJECT", Some("ops-token-0123456789")).status, 404);

    // Sign-in: the cookie's flags, then a lockout after five failures (the right token too).
    let ok = post_login(port, "ops-token-0123456789");
    assert_eq!(ok.status, 303);
    let cookie = ok.header("set-cookie").unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && !cookie.contains("Secure"), "{cookie} (http public_url: not Secure)");
    for left in (0..5).rev() {
        let r = post_login(port, "wrong");
        assert_eq!(r.status, 401);
        if left == 0 {
            assert!(r.body.contains("now locked for 15 minutes"), "{}", r.body);
        } else {
            assert!(r.body.contains(&format!("({left} attempt")), "{}", r.body);
        }
    }
    let locked = post_login(port, "ops-token-0123456789");
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert!(locked.body.contains("Too many failed sign-ins") && locked.header("retry-after").is_some());
    assert_eq!(d.get("/api/v1/allocations", Some("ops-token-0123456789")).status, 200, "the bearer token is not locked out");
}

/// A mail in a Maildir: (to, text part).
fn maildir_mails(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir.join("new")).into_iter().flatten().flatten() {
        let raw = std::fs::read(e.path()).unwrap();
        if let Some(m) = mail_parser::MessageParser::default().parse(&raw) {
            let to = m.to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or_default().to_string();
            out.push((to, m.body_text(0).map(|t| t.into_owned()).unwrap_or_default()));
        }
    }
    out
}

#[test]
fn the_link_in_a_researcher_mail_opens_the_project_page_in_chromium_and_no_other() {
    let Some(bin) = chromium() else {
        if ci() {
            panic!("CI=true but chromium is not installed (tests/run.sh installs it)");
        }
        eprintln!("SKIPPED the_link_in_a_researcher_mail_opens_the_project_page_in_chromium_and_no_other: chromium not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("mail");
    let smtp_port = free_port();
    let mut smtp = private_smtp(smtp_port, &maildir);
    let port = free_port();
    let alerts = format!(
        "[alerts.email]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\nfrom = \"allocwatch@ops.example\"\n[alerts.operations]\nemails = [\"ops@ops.example\"]\ndigest = true\n[alerts.delivery]\nretry_initial_seconds = 0\nretry_max_seconds = 0\ntimeout_seconds = 5\n"
    );
    let config = demo_config(dir.path(), None, &format!("{}{alerts}", links_section(port, BOTH_KEYS)));
    let d = Daemon::start(&config, port, &link_env());
    d.wait_cycles(1.0);
    // The PI of the three-centre project hears about its over-pace GPU allocation.
    let pi = "paula.pi@lab5.example.fr";
    let text = wait_for(60, "the PI's mail", || maildir_mails(&maildir).into_iter().find(|(to, _)| to == pi).map(|(_, t)| t));
    let url = text.lines().map(str::trim).find(|l| l.starts_with(&format!("http://127.0.0.1:{port}/projects/{MULTI}?key="))).unwrap_or_else(|| panic!("no link in:\n{text}")).to_string();
    assert!(text.contains("please do not forward it"), "{text}");
    // Researchers' mails carry their own project's link only; operations mails none.
    for (to, t) in maildir_mails(&maildir) {
        if to == "ops@ops.example" {
            assert!(!t.contains("?key=v1."), "an operations mail carries a researcher link:\n{t}");
        } else if let Some(l) = t.lines().find(|l| l.contains("/projects/")) {
            assert!(l.trim().starts_with(&format!("http://127.0.0.1:{port}/projects/")), "{l}");
        }
    }

    let profile = tempfile::tempdir().unwrap();
    let dom = chromium_run(&bin, profile.path(), &["--dump-dom"], &url);
    assert!(dom.contains(&format!("Project {MULTI}")), "{dom}");
    for class in ["granted", "expected", "consumed"] {
        assert_eq!(dom.matches(&format!("<path class=\"{class}\"")).count(), 3, "a {class} curve per allocation");
    }
    let plain = tempfile::tempdir().unwrap();
    let other = check_json_of(&demo_config(plain.path(), None, "")).as_array().unwrap().iter().map(|r| r["project"].as_str().unwrap().to_string()).find(|p| p != MULTI).unwrap();
    let elsewhere = url.replacen(&format!("/projects/{MULTI}?"), &format!("/projects/{other}?"), 1);
    let refused = chromium_run(&bin, profile.path(), &["--dump-dom"], &elsewhere);
    assert!(refused.contains("Access refused") && refused.contains(&format!("opens project {MULTI} only")), "{refused}");
    assert!(!refused.contains("<svg") && !refused.contains("<table"), "no data on the refusal page:\n{refused}");

    let out = screenshot_dir();
    let (page_png, refused_png) = (out.join("project-page.png"), out.join("project-link-refused.png"));
    chromium_run(&bin, profile.path(), &["--window-size=1440,2400", &format!("--screenshot={}", page_png.display())], &url);
    chromium_run(&bin, profile.path(), &["--window-size=1000,500", &format!("--screenshot={}", refused_png.display())], &elsewhere);
    assert_eq!(png_size(&page_png), (1440, 2400));
    assert_eq!(png_size(&refused_png), (1000, 500));
    eprintln!("screenshots: {} {}", page_png.display(), refused_png.display());
    smtp.kill().ok();
    smtp.wait().ok();
}

#[test]
fn the_sign_in_cookie_is_secure_when_people_reach_the_page_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = demo_config(
        dir.path(),
        None,
        &format!("[daemon]\nschedule = \"0 0 * * * *\"\njitter_seconds = 0\n[http]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"AW_TEST_HTTP_TOKEN\"\npublic_url = \"https://allocwatch.example.org/\"\n"),
    );
    let d = Daemon::start(&config, port, &[("AW_TEST_HTTP_TOKEN", "ops-token-0123456789")]);
    let ok = post_login(port, "ops-token-0123456789");
    assert_eq!(ok.status, 303, "{}", d.log());
    let cookie = ok.header("set-cookie").unwrap();
    assert!(cookie.ends_with("; Secure") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
}

#[test]
fn closed_health_and_metrics_need_the_token_and_readiness_turns_503_when_cycles_are_late() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = demo_config(
        dir.path(),
        None,
        &format!(
            "[daemon]\nschedule = \"*/4 * * * * *\"\njitter_seconds = 0\nready_max_cycle_age_seconds = 1\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"AW_TEST_HTTP_TOKEN\"\nopen_health = false\nopen_metrics = false\n"
        ),
    );
    let d = Daemon::start(&config, port, &[("AW_TEST_HTTP_TOKEN", "ops-token-0123456789")]);
    let token = Some("ops-token-0123456789");
    for path in ["/healthz", "/readyz", "/metrics"] {
        for presented in [None, Some("ops-token-0123456788")] {
            let r = d.get(path, presented);
            assert_eq!(r.status, 401, "{path} with {presented:?}: {r:?}");
            assert!(!r.body.contains("ops-token"), "{r:?}");
        }
    }
    assert_eq!(d.get("/healthz", token).status, 200);
    let cycles = || {
        let m = d.get("/metrics", token);
        assert_eq!(m.status, 200, "{m:?}");
        m.body.lines().find_map(|l| l.strip_prefix("allocwatch_cycles_total ").map(|v| v.trim().parse::<f64>().unwrap())).unwrap_or(0.0)
    };
    wait_for(60, "a first cycle", || (cycles() >= 1.0).then_some(()));
    // Ready just after a cycle; 503, saying why, once the last one is older than its limit (a
    // cycle every 4 s, a limit of 1 s): a balancer or systemd sees a daemon that stopped cycling.
    wait_for(30, "ready after a cycle", || (d.get("/readyz", token).status == 200).then_some(()));
    let late = wait_for(30, "not ready between cycles", || Some(d.get("/readyz", token)).filter(|r| r.status == 503));
    let v: Value = serde_json::from_str(&late.body).unwrap();
    assert_eq!(v["ready"], false, "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(reason.starts_with("last cycle finished ") && reason.ends_with("s ago (limit 1 s)"), "{reason}");
    assert!(v["last_cycle"]["id"].as_i64().is_some(), "{v}");
}

/// What the slow centre's `sacct` prints (three jobs of project A0199999999's account).
const SLOWC_SACCT: &str = "JobIDRaw|JobID|Cluster|Partition|Account|User|Start|End|ElapsedRaw|AllocCPUS|AllocNodes|AllocTRES|State|TimelimitRaw
9001|9001|slowcluster|cpu|slow01|ursula|1790812800|1790827200|14400|32|1|billing=32,cpu=32,mem=64G,node=1|COMPLETED|480
9002|9002|slowcluster|cpu|slow01|ursula|1791158400|1791165600|7200|64|2|billing=64,cpu=64,mem=128G,node=2|COMPLETED|240
9003|9003|slowcluster|cpu|slow01|victor|1793577600|1793581200|3600|16|1|billing=16,cpu=16,mem=32G,node=1|FAILED|60
";

/// The slow centre: its `sacct` behind a wrapper (`dir/sacct-wrapper`, standing in for
/// `ssh login.slowc`; it ignores the command line it is given). The wrapper prints
/// [`SLOWC_SACCT`] at once; while `dir/slow` exists it first writes its PID to `dir/slow.pid`
/// (the daemon makes each command it runs a process-group leader: that is its group too), prints
/// the header and the first job, sleeps 30 s, then prints the rest.
fn slowc_centre(dir: &Path) -> String {
    let out = dir.join("slowc.sacct");
    std::fs::write(&out, SLOWC_SACCT).unwrap();
    let script = dir.join("sacct-wrapper");
    let (slow, pid) = (dir.join("slow"), dir.join("slow.pid"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ -e '{slow}' ]; then\n    echo $$ > '{pid}.tmp' && mv '{pid}.tmp' '{pid}'\n    head -n 2 '{out}'\n    sleep 30\n    tail -n +3 '{out}'\nelse\n    cat '{out}'\nfi\n",
            slow = slow.display(),
            pid = pid.display(),
            out = out.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!(
        "\n[[centre]]\nid = \"slowc\"\ntimezone = \"UTC\"\nclusters = [\"slowcluster\"]\n[[centre.billing]]\nresource = \"cpu\"\npartitions = [\"cpu\"]\nunit = \"cpu\"\n\
         [[centre.source]]\nkind = \"sacct\"\ncommand_prefix = [\"{}\"]\ntimeout_seconds = 120\n",
        script.display()
    )
}

/// Whether a process runs (a zombie does not: it only waits to be reaped).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
}

/// The running processes of a process group.
fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // After the command name's `)`: state, ppid, pgrp, ...
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2].parse() == Ok(pgid) {
            out.push(pid);
        }
    }
    out
}

/// SIGKILLs the process group whose leader's PID is in a file, when the test ends however it ends.
struct KillGroup(PathBuf);

impl KillGroup {
    fn kill(&self) {
        if let Some(pgid) = std::fs::read_to_string(&self.0).ok().and_then(|s| s.trim().parse::<i32>().ok()) {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).stderr(Stdio::null()).status();
        }
    }
}

impl Drop for KillGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn sigterm_past_the_grace_period_abandons_the_slow_pull_and_a_restart_completes_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let d0 = dir.path();
    let mut csv = std::fs::read_to_string(root().join("config/demo/allocations.csv")).unwrap();
    csv.push_str("A0199999999,slowc,cpu,2026-05-01,2027-05-01,100000,slow01,sam.pi@lab9.example.fr,,CT9-test,\n");
    let allocations = d0.join("allocations.csv");
    std::fs::write(&allocations, csv).unwrap();
    // A clean single run (`check`, the fast stand-in, a scratch store): what the ledger and the
    // reconciliation must be in the end.
    let reference = tempfile::tempdir().unwrap();
    let expected = check_json_of(&demo_config(reference.path(), Some(&allocations), &slowc_centre(d0)));
    assert_eq!(expected.as_array().unwrap().len(), 39);
    let slowc_row = |v: &Value| v.as_array().unwrap().iter().find(|a| a["centre"] == "slowc").cloned().unwrap();
    let demo_rows = |v: &Value| v.as_array().unwrap().iter().filter(|a| a["centre"] != "slowc").cloned().collect::<Vec<_>>();
    assert_eq!(f(&slowc_row(&expected), "consumed_hours"), (32 * 4 + 64 * 2 + 16) as f64, "the reference charges slowc's three jobs");
    let want = ledger(&reference.path().join("store.sqlite"));
    assert_eq!(want.keys().collect::<Vec<_>>(), ["cines", "idris", "slowc", "tgcc"]);
    assert_eq!(want["slowc"][0], 3);

    // A schedule that never comes during the test: the start-up pulls are the only ones.
    let sections = |port: u16| {
        let (http, _) = http_with_token(d0, port);
        format!("[daemon]\nschedule = \"0 0 0 1 1 *\"\njitter_seconds = 0\nshutdown_grace_seconds = 1\n{http}{}", slowc_centre(d0))
    };
    let port = free_port();
    let config = demo_config(d0, Some(&allocations), &sections(port));
    let token = Some(http_with_token(d0, port).1);
    std::fs::write(d0.join("slow"), "").unwrap();
    let pidfile = d0.join("slow.pid");
    let group = KillGroup(pidfile.clone());
    let mut d = Daemon::start(&config, port, &[]);

    // slowc's pull is in flight (its stand-in started, half its output written, asleep) while
    // the three demo centres' pulls are committed and reconciled.
    let pgid: i32 = wait_for(60, "the slow stand-in to start", || std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok());
    let first = wait_for(60, "a cycle with the demo centres' pulls", || {
        let r = d.get("/api/v1/allocations", token);
        let v: Value = serde_json::from_str(&r.body).ok().filter(|_| r.status == 200)?;
        (demo_rows(&v) == demo_rows(&expected)).then_some(v)
    });
    assert_eq!(f(&slowc_row(&first), "consumed_hours"), 0.0, "{}", slowc_row(&first));
    let feeds = d.json("/api/v1/feeds", token);
    let job = &feeds.as_array().unwrap().iter().find(|x| x["centre"] == "slowc").unwrap()["job"];
    assert!(job["runs"] == 1 && job["last_started_at"].is_string() && job["last_finished_at"].is_null(), "slowc's pull is not in flight: {job}");
    assert!(running(pgid), "the stand-in is not running");

    // SIGTERM: the grace period (1 s) runs out long before the stand-in's 30 s sleep.
    d.signal("TERM");
    let asked = std::time::Instant::now();
    let status = d.wait_exit(60);
    let took = asked.elapsed();
    let log = d.log();
    // The daemon exited on its own (a process killed by a signal has no exit code), with the
    // code the README documents for a SIGTERM, abandoned work or not: 0.
    assert_eq!(status.code(), Some(0), "exit {status}:\n{log}");
    // Not a timing measurement: a daemon that waited for the pull would need the stand-in's 30 s.
    assert!(took < Duration::from_secs(25), "the daemon took {took:?} to stop: it waited for the abandoned pull\n{log}");
    let at = |needle: &str| log.find(needle).unwrap_or_else(|| panic!("the log lacks {needle:?}:\n{log}"));
    assert!(at("SIGTERM: stopping") < at("shutdown grace period over: abandoning the pulls or cycle still running (nothing of them is committed)"));
    // The pull's own line comes from its thread once the shutdown drains: after the daemon's
    // line, and before the process exits (the runtime waits for its blocking threads), but not
    // necessarily before "allocwatch stopped".
    assert!(at("shutdown grace period over: abandoning") < at("shutdown grace period over: pull of slowc abandoned, nothing of it stored"));
    at("allocwatch stopped");
    assert!(!log.contains("pull failed") && !log.contains("panicked") && !log.contains("ERROR"), "{log}");

    // Nothing of the abandoned pull is in the store, not even a failure; the rest is intact.
    let store = d0.join("store.sqlite");
    assert_eq!(integrity(&store), "ok");
    assert_eq!(count(&store, "SELECT COUNT(*) FROM pulls WHERE centre = 'slowc'"), 0, "a pulls row of the abandoned pull");
    assert_eq!(count(&store, "SELECT COUNT(*) FROM watermarks WHERE centre = 'slowc'"), 0, "slowc's watermark moved");
    let stopped = ledger(&store);
    assert_eq!(stopped.keys().collect::<Vec<_>>(), ["cines", "idris", "tgcc"], "slowc has jobs or usage in the ledger: {stopped:?}");
    for c in ["cines", "idris", "tgcc"] {
        assert_eq!(stopped[c], want[c], "{c}'s ledger differs from a clean run's");
    }
    assert_eq!(count(&store, "SELECT COUNT(*) FROM pulls WHERE ok = 1"), 6, "the demo centres' two files each");

    // The command the daemon ran is killed when its pull is abandoned (reaped once the daemon
    // is gone). Its own children are not: the daemon kills the whole process group only when a
    // command times out (`sources::sacct_cmd::run_command`), so the stand-in's `sleep` would
    // outlive the daemon for the rest of its 30 s. The test kills the group itself, and checks
    // nothing of it is left.
    wait_for(10, "the stand-in the daemon ran to be killed", || (!running(pgid)).then_some(()));
    group.kill();
    wait_for(10, "the stand-in's process group to be gone", || group_members(pgid).is_empty().then_some(()));

    // A restart (the stand-in fast now) completes slowc's pull, exactly once.
    std::fs::remove_file(d0.join("slow")).unwrap();
    let port = free_port();
    assert_eq!(demo_config(d0, Some(&allocations), &sections(port)), config);
    let mut d = Daemon::start(&config, port, &[]);
    wait_for(60, "a cycle with slowc's pull", || {
        let r = d.get("/api/v1/allocations", token);
        let v: Value = serde_json::from_str(&r.body).ok().filter(|_| r.status == 200)?;
        (v == expected).then_some(())
    });
    d.signal("TERM");
    let status = d.wait_exit(60);
    let log = d.log();
    assert_eq!(status.code(), Some(0), "exit {status}:\n{log}");
    assert!(!log.contains("abandon") && !log.contains("ERROR"), "{log}");
    assert_eq!(integrity(&store), "ok");
    let pulls: (i64, i64, i64, i64) = store_ro(&store)
        .query_row("SELECT COUNT(*), SUM(ok), SUM(records), SUM(inserted) FROM pulls WHERE centre = 'slowc'", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap();
    assert_eq!(pulls, (1, 1, 3, 3), "slowc: one successful pull of its three jobs");
    assert_eq!(count(&store, "SELECT COUNT(*) FROM watermarks WHERE centre = 'slowc'"), 1);
    assert_eq!(ledger(&store), want, "the ledger differs from a clean single run's");
}

#[test]
fn sighup_applies_a_changed_adjustment_file_refuses_a_broken_one_and_keeps_the_last_good_grants() {
    let dir = tempfile::tempdir().unwrap();
    let d0 = dir.path();
    // The demo's adjustments, copied: the test changes them under the running daemon.
    let demo_adjustments = root().join("config/demo/adjustments.csv");
    let original = std::fs::read_to_string(&demo_adjustments).unwrap();
    let adjustments = d0.join("adjustments.csv");
    std::fs::write(&adjustments, &original).unwrap();
    let port = free_port();
    let (http, token) = http_with_token(d0, port);
    let token = Some(token);
    // Pulls (and so cycles) every 2 s: cycles keep running between the reloads.
    let config = demo_config(d0, None, &format!("[daemon]\nschedule = \"*/2 * * * * *\"\njitter_seconds = 0\n{http}"));
    let text = std::fs::read_to_string(&config).unwrap();
    let demo_list = format!("adjustments = [\"{}\"]", demo_adjustments.display());
    assert!(text.contains(&demo_list), "demo.toml changed shape");
    std::fs::write(&config, text.replace(&demo_list, &format!("adjustments = [\"{}\"]", adjustments.display()))).unwrap();

    let d = Daemon::start(&config, port, &[]);
    // An exhausted allocation (10085 of 10000 h consumed at the demo's instant).
    let key = ("idris", "A0170978492", "gpu-v100");
    let subject = "idris/A0170978492/gpu-v100/2026-05-01";
    let is_key = |a: &Value| a["centre"] == key.0 && a["project"] == key.1 && a["resource"] == key.2;
    let allocations = || d.json("/api/v1/allocations", token);
    let ours = |v: &Value| v.as_array().unwrap().iter().find(|a| is_key(a)).cloned().unwrap();
    let others = |v: &Value| v.as_array().unwrap().iter().filter(|a| !is_key(a)).map(|a| (a["centre"].clone(), a["project"].clone(), a["resource"].clone(), a["granted_hours"].clone())).collect::<Vec<_>>();
    let granted_now = || f(&ours(&allocations()), "granted_hours");
    let exhausted = |state: &str| {
        let all = d.json("/api/v1/alerts?all=true", token);
        all.as_array().unwrap().iter().filter(|a| a["rule"] == "exhausted" && a["subject"] == subject && a["state"] == state).map(|a| a["id"].as_i64().unwrap()).collect::<Vec<_>>()
    };
    // (A first cycle may come before idris's first pull.)
    let start = wait_for(60, "a cycle after idris's pull", || {
        let r = d.get("/api/v1/allocations", token);
        serde_json::from_str::<Value>(&r.body).ok().filter(|v| r.status == 200 && ours(v)["status"] == "exhausted")
    });
    let a0 = ours(&start);
    let g0 = f(&a0, "granted_hours");
    assert_eq!(g0, 10000.0, "{a0}");
    assert_eq!(d.allocation_metric("granted_hours", key), Some(g0));
    let fired = wait_for(30, "the exhausted alert", || Some(exhausted("firing")).filter(|v| v.len() == 1));
    let reloads = |outcome: &str| d.metric(&format!("allocwatch_config_reloads_total{{outcome=\"{outcome}\"}}"));

    // A top-up: in force after SIGHUP, by exactly its hours; the exhausted alert resolves.
    let topup = "2026-11-01,A0170978492,idris,gpu-v100,2000,topup,mid-term review top-up\n";
    std::fs::write(&adjustments, format!("{original}{topup}")).unwrap();
    d.signal("HUP");
    wait_for(30, "the applied reload", || (reloads("applied") == 1.0).then_some(()));
    let a1 = wait_for(60, "a cycle with the top-up", || Some(ours(&allocations())).filter(|a| f(a, "granted_hours") != g0));
    assert_eq!(f(&a1, "granted_hours"), g0 + 2000.0, "{a1}");
    assert_eq!(a1["consumed_hours"], a0["consumed_hours"]);
    assert_ne!(a1["status"], "exhausted", "{a1}");
    assert_eq!(others(&allocations()), others(&start), "only the adjusted allocation's grant changes");
    assert_eq!(d.allocation_metric("granted_hours", key), Some(g0 + 2000.0));
    wait_for(30, "the exhausted alert to resolve", || (exhausted("resolved") == fired && exhausted("firing").is_empty()).then_some(()));

    // A broken file: refused, naming file, line and column; the last good grants stay in force
    // through the cycles that follow.
    let broken = format!("{original}{topup}2026-11-10,A0170978492,idris,gpu-v100,500,bonus,typo\n");
    std::fs::write(&adjustments, &broken).unwrap();
    d.signal("HUP");
    wait_for(30, "the rejected reload", || (reloads("rejected") == 1.0).then_some(()));
    let log = d.log();
    let line = broken.lines().count();
    assert_eq!(line, 5);
    let why = format!("{}:{line}: column kind: `bonus` is not topup, withdrawal or transfer", adjustments.display());
    assert!(log.lines().any(|l| l.contains("configuration reload REJECTED, the running configuration stays in force") && l.contains(&why)), "no {why:?} in:\n{log}");
    d.wait_cycles(d.metric("allocwatch_cycles_total") + 2.0);
    assert_eq!(granted_now(), g0 + 2000.0);
    assert_eq!(d.allocation_metric("granted_hours", key), Some(g0 + 2000.0));
    assert_eq!(reloads("applied"), 1.0);
    assert_eq!(d.get("/readyz", None).status, 200);

    // Fixed (the line is now a withdrawal that takes more than the top-up gave): in force; the
    // allocation is exhausted again, and a new alert says so.
    let withdrawal = "2026-11-10,A0170978492,idris,gpu-v100,-2500,withdrawal,take-back after review\n";
    std::fs::write(&adjustments, format!("{original}{topup}{withdrawal}")).unwrap();
    d.signal("HUP");
    wait_for(30, "the second applied reload", || (reloads("applied") == 2.0).then_some(()));
    let a3 = wait_for(60, "a cycle with the withdrawal", || Some(ours(&allocations())).filter(|a| f(a, "granted_hours") != g0 + 2000.0));
    assert_eq!(f(&a3, "granted_hours"), g0 + 2000.0 - 2500.0, "{a3}");
    assert_eq!(a3["status"], "exhausted", "{a3}");
    assert_eq!(others(&allocations()), others(&start));
    assert_eq!(d.allocation_metric("granted_hours", key), Some(g0 - 500.0));
    let refired = wait_for(30, "a new exhausted alert", || Some(exhausted("firing")).filter(|v| v.len() == 1));
    assert_ne!(refired, fired, "the resolved alert is not reopened: a new one fires");
    assert_eq!(exhausted("resolved"), fired);
    // The allocation's granted curve steps on each adjustment's date.
    let one = d.json("/api/v1/allocations/idris/A0170978492/gpu-v100", token);
    let curve = one["curve"].as_array().unwrap();
    let on = |date: &str| f(curve.iter().find(|p| p["date"] == date).unwrap_or_else(|| panic!("no {date} in the curve")), "granted_hours");
    assert_eq!([on("2026-10-31"), on("2026-11-01"), on("2026-11-09"), on("2026-11-10"), on("2027-04-30")], [g0, g0 + 2000.0, g0 + 2000.0, g0 - 500.0, g0 - 500.0]);
}
