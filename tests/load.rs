//! The HTTP API under load from a second process (wrk, from Debian) on loopback, bounded in
//! time, on a ledger with 5,000 allocations: no errors, no non-2xx answers, bounded memory;
//! also the access rules of the token (missing, wrong, right). Figures are printed and written
//! to `target/test-artifacts/load.txt` (never asserted: performance is measured, not tested).

mod common;
use common::*;
use std::process::{Command, Stdio};

fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl").args(["-s", "-o", "-", "-w", "\n%{http_code}"]).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn rss_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// (requests/s, p99 latency text, non-2xx count, socket errors text) from wrk's output.
fn parse_wrk(out: &str) -> (f64, String, u64, String) {
    let rps = out.lines().find_map(|l| l.strip_prefix("Requests/sec:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0);
    let p99 = out.lines().find(|l| l.trim_start().starts_with("99%")).map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string()).unwrap_or_default();
    let non2xx = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let socket = out.lines().find(|l| l.contains("Socket errors")).unwrap_or("").trim().to_string();
    (rps, p99, non2xx, socket)
}

#[test]
fn http_api_under_load_with_5000_allocations() {
    if Command::new("wrk").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but wrk is not installed: tests/run.sh installs it");
        }
        eprintln!("SKIPPED http_api_under_load: wrk not installed (apt-get install wrk)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bench_bin())
        .args(["gen", "--jobs", "300000", "--seed", "11", "--accounts", "3000", "--max-allocations", "5000", "--out"])
        .arg(dir.path().join("dump.log"))
        .arg("--config")
        .arg(dir.path().join("base.toml"))
        .arg("--allocations")
        .arg(dir.path().join("alloc.csv"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let allocations = std::fs::read_to_string(dir.path().join("alloc.csv")).unwrap().lines().count() - 1;
    let port = free_port();
    let base = std::fs::read_to_string(dir.path().join("base.toml")).unwrap();
    let cfg = dir.path().join("allocwatch.toml");
    std::fs::write(
        &cfg,
        base.replace("path = \"bench.sqlite\"", "path = \"store.sqlite\"")
            + &format!(
                "\n[[centre.source]]\nkind = \"files\"\nformat = \"sacct\"\nfields = \"xdmod\"\npaths = [\"dump.log\"]\n\
                 [reconcile]\nat = \"2024-03-01T00:00:00Z\"\n\
                 [daemon]\nschedule = \"0 0 0 1 1 *\"\njitter_seconds = 0\nquality_report = \"\"\n\
                 [http]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"AW_LOAD_TOKEN\"\n"
            ),
    )
    .unwrap();
    let token = "load-test-token-1234567890";
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_allocwatch"))
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .env("AW_LOAD_TOKEN", token)
        .env("ALLOCWATCH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    wait_for(120, "the daemon's first cycle (/readyz 200)", || (curl(&[&format!("{url}/readyz")]).0 == 200).then_some(()));
    // Access: missing and wrong tokens are refused, the right one is served.
    let api = format!("{url}/api/v1/allocations");
    assert_eq!(curl(&[&api]).0, 401);
    assert_eq!(curl(&["-H", "Authorization: Bearer wrong-token", &api]).0, 401);
    assert_eq!(curl(&["-H", &format!("Authorization: Bearer {token}x"), &api]).0, 401);
    let (code, body) = curl(&["-H", &format!("Authorization: Bearer {token}"), &api]);
    assert_eq!(code, 200);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(rows.len(), allocations);
    assert_eq!(allocations, 5000, "the ledger should hold 5,000 allocations");
    let first = &rows[0];
    let one = format!(
        "{url}/api/v1/allocations/{}/{}/{}",
        first["centre"].as_str().unwrap(),
        first["project"].as_str().unwrap(),
        first["resource"].as_str().unwrap()
    );
    let rss_before = rss_kb(daemon.id(), "VmRSS:");
    let build = if cfg!(debug_assertions) { "debug" } else { "release" };
    let mut report = format!("HTTP load, {allocations} allocations, wrk -t2 -c8 -d10s, loopback, {build} build\n");
    for (name, target) in [("healthz", format!("{url}/healthz")), ("allocation", one), ("allocations (all)", api.clone()), ("status page", format!("{url}/"))] {
        let out = Command::new("wrk")
            .args(["-t2", "-c8", "-d10s", "--timeout", "10s", "--latency", "-H", &format!("Authorization: Bearer {token}"), &target])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "wrk failed: {text}{}", stderr(&out));
        let (rps, p99, non2xx, socket) = parse_wrk(&text);
        assert_eq!(non2xx, 0, "{name}: non-2xx answers under load:\n{text}");
        assert!(socket.is_empty(), "{name}: {socket}\n{text}");
        assert!(rps > 0.0, "{name}: no request completed:\n{text}");
        report.push_str(&format!("{name:20} {rps:>10.1} req/s   p99 {p99}\n"));
    }
    let rss_after = rss_kb(daemon.id(), "VmRSS:");
    let hwm = rss_kb(daemon.id(), "VmHWM:");
    report.push_str(&format!("daemon RSS {} MB before, {} MB after, peak {} MB\n", rss_before / 1024, rss_after / 1024, hwm / 1024));
    assert!(hwm < 512 * 1024, "memory must stay bounded: peak {} MB", hwm / 1024);
    // Still healthy afterwards; then a clean stop.
    assert_eq!(curl(&[&format!("{url}/healthz")]).0, 200);
    let _ = Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status();
    let status = wait_for(60, "the daemon to stop on SIGTERM", || daemon.try_wait().ok().flatten());
    assert!(status.success(), "{status}");
    println!("{report}");
    let art = root().join("target/test-artifacts");
    std::fs::create_dir_all(&art).unwrap();
    std::fs::write(art.join("load.txt"), &report).unwrap();
}
