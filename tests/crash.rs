//! Crash consistency, in two harnesses.
//!
//! **CLI steps** (`sigkill_at_random_points_loses_nothing`): run an import and reconciliation
//! cycles (pull → ledger → reconcile → outboxes → delivery to a real SMTP server), SIGKILL the
//! running command at a random instant (seeded), restart from the interrupted step, finish, and
//! compare with a clean run: ledger totals, allocation figures, alerts, owed indicator points
//! and delivered mails must be the same — nothing lost; nothing recorded twice; a mail is
//! re-sent (same Message-ID) only when the kill fell between the SMTP server's acceptance and
//! the record of it. `AW_CRASH_TRIALS` (default 50) and `AW_CRASH_SEED` (default 20261121).
//!
//! **The daemon** (`sigkill_the_daemon_at_commits_and_instants_loses_nothing`): a centre with
//! a files source (the accounting of `allocwatch-bench gen` in four parts) and a live `sacct`
//! source on the Slurm lab; the steps are `allocwatch backfill` of the live source (the 3 h
//! before the frozen instant, in 1 h chunks: not beyond it, where the lab goes on), then
//! `allocwatch run` (a schedule of every second; a SIGHUP after its first cycle; once it is
//! quiescent a SIGTERM, then a SIGHUP while it stops, which must not kill it), its indicators
//! delivered to the real VictoriaMetrics through a recording pass-through (so the
//! delete-after-2xx path runs, in batches of 8), its mails to a private aiosmtpd, its
//! webhook messages to a receiver in the test. Every process runs on a frozen wall clock
//! (libfaketime; monotonic time runs), so that every cycle of every run reconciles at the same
//! instant and owes the same points. A clean run's commit trace (`ALLOCWATCH_CRASH_TRACE`)
//! gives the kill points: two trials in three die just before or after a commit
//! (`ALLOCWATCH_CRASH_AT`), round-robin over the call sites that commit, one in three at a
//! seeded random instant of a step. Right after each kill, before anything runs again, the
//! store must hold each step wholly or not at all ([`check_whole_or_nothing`]: ledger rows vs
//! daily buckets vs pulls, files and watermarks, backfill chunks, cycles vs outboxes, alerts
//! and messages); then the step is restarted, the trial finished and compared with the clean
//! run ([`compare_with_clean`]): ledger, alerts, delivered points as a multiset, mails by
//! recipient, subject and body, webhook messages by idempotency key; the documented
//! at-least-once re-sends are counted and bounded there. `AW_CRASH_DAEMON_TRIALS` (default 50)
//! and `AW_CRASH_SEED`. Without the Slurm lab (outside CI) the centre has its files source only.

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// SplitMix64: the kill instants of a seed are the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const INSTANTS: [&str; 4] = ["2024-01-03T12:00:00Z", "2024-01-05T00:00:00Z", "2024-01-07T00:00:00Z", "2024-01-10T00:00:00Z"];

/// The generated accounting, allocations and configuration shared by every trial.
struct Fixture {
    dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bench_bin())
        .args(["gen", "--jobs", "12000", "--seed", "7", "--accounts", "30", "--out"])
        .arg(dir.path().join("dump.log"))
        .arg("--config")
        .arg(dir.path().join("base.toml"))
        .arg("--allocations")
        .arg(dir.path().join("alloc.csv"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    Fixture { dir }
}

/// A trial's directory: its own store, configuration (operations mail to `ops@<tag>.example`
/// on the given SMTP port, indicators for an InfluxDB that is down so they stay owed).
fn trial_dir(f: &Fixture, tag: &str, smtp_port: u16) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(f.dir.path().join("base.toml")).unwrap();
    let alloc = f.dir.path().join("alloc.csv");
    let cfg = base.replace("path = \"bench.sqlite\"", "path = \"store.sqlite\"").replace(
        "files = [\"alloc.csv\"]",
        &format!("files = [\"{}\"]", alloc.display()),
    );
    let cfg = format!(
        "{cfg}\n[influxdb]\nurl = \"http://127.0.0.1:9\"\norg = \"o\"\nbucket = \"b\"\ntoken_env = \"AW_CRASH_TOKEN\"\ntimeout_seconds = 2\n\
         \n[alerts]\n[alerts.email]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\nfrom = \"allocwatch@crash.example\"\n\
         [alerts.operations]\nemails = [\"ops@{tag}.example\"]\ndigest = true\n\
         [alerts.delivery]\nretry_initial_seconds = 0\nretry_max_seconds = 0\ntimeout_seconds = 10\n"
    );
    let path = dir.path().join("allocwatch.toml");
    std::fs::write(&path, cfg).unwrap();
    (dir, path)
}

fn steps(f: &Fixture) -> Vec<Vec<String>> {
    let mut s = vec![vec![
        "import".into(),
        "--centre".into(),
        "bench".into(),
        "--format".into(),
        "sacct".into(),
        "--fields".into(),
        "xdmod".into(),
        f.dir.path().join("dump.log").display().to_string(),
    ]];
    for at in INSTANTS {
        s.push(vec!["check".into(), "--no-pull".into(), "--format".into(), "json".into(), "--at".into(), at.into()]);
    }
    s
}

fn spawn(cfg: &Path, args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_allocwatch"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env("AW_CRASH_TOKEN", "t0ken")
        .env("ALLOCWATCH_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Run the steps from `from`; with `kill_after`, SIGKILL whatever runs at that instant.
/// Returns the step interrupted (if any) and the stdout of the last step.
fn run(cfg: &Path, steps: &[Vec<String>], from: usize, kill_after: Option<Duration>) -> (Option<usize>, String) {
    let t0 = Instant::now();
    let mut last = String::new();
    for (i, args) in steps.iter().enumerate().skip(from) {
        let mut child = spawn(cfg, args);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut out = String::new();
                use std::io::Read;
                child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
                assert!(status.success(), "step {i} {args:?} failed: {status}");
                last = out;
                break;
            }
            if kill_after.is_some_and(|k| t0.elapsed() >= k) {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                return (Some(i), String::new());
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    (None, last)
}

/// What must be identical between a clean run and a crashed-then-finished one.
#[derive(Debug, PartialEq)]
struct Outcome {
    usage: String,
    last_check: String,
    alerts: BTreeSet<AlertRow>,
    owed_points: BTreeSet<String>,
    mails: usize,
    distinct_message_ids: usize,
}

/// An alert as `alerts list --all --format json` shows it: rule, subject, discriminator,
/// state, messages sent and pending.
type AlertRow = (String, String, String, String, i64, i64);

fn alert_rows(list_json: &str) -> BTreeSet<AlertRow> {
    let rows: Vec<serde_json::Value> = serde_json::from_str(list_json).unwrap();
    rows.iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap().to_string();
            (text("rule"), text("subject"), text("discriminator"), text("state"), r["sent"].as_i64().unwrap(), r["pending"].as_i64().unwrap())
        })
        .collect()
}

fn outcome(cfg: &Path, store: &Path, maildir: &Path, tag: &str, last_check: String) -> Outcome {
    let usage = ok(&["--config", cfg.to_str().unwrap(), "usage", "--format", "json"]);
    let list = ok(&["--config", cfg.to_str().unwrap(), "alerts", "list", "--all", "--format", "json"]);
    let alerts = alert_rows(&list);
    let conn = rusqlite::Connection::open(store).unwrap();
    let mut stmt = conn.prepare("SELECT line FROM outbox_points").unwrap();
    // A restarted import is one more pull, legitimately (see `normalise_line`).
    let owed_points = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().map(|line| normalise_line(&line.unwrap())).collect();
    let mut ids = Vec::new();
    for e in std::fs::read_dir(maildir.join("new")).unwrap().flatten() {
        let raw = std::fs::read(e.path()).unwrap();
        let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
        let to = m.to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or_default().to_string();
        if to == format!("ops@{tag}.example") {
            ids.push(m.message_id().unwrap_or_default().to_string());
        }
    }
    let distinct: BTreeSet<&String> = ids.iter().collect();
    Outcome { usage, last_check, alerts, owed_points, mails: ids.len(), distinct_message_ids: distinct.len() }
}


#[test]
fn sigkill_at_random_points_loses_nothing() {
    if server_env("crash_consistency", &["AW_SMTP_PORT"]).is_none() {
        return; // needs the SMTP server package that tests/run.sh installs
    }
    let trials: usize = std::env::var("AW_CRASH_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let seed: u64 = std::env::var("AW_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20261121);
    let f = fixture();
    let steps = steps(&f);
    let port = free_port();
    let maildir = tempfile::tempdir().unwrap();
    let mut smtp = private_smtp(port, maildir.path());

    // The clean run, and how long it takes (kills are drawn over that span).
    let (clean_dir, clean_cfg) = trial_dir(&f, "clean", port);
    let t = Instant::now();
    let (_, last) = run(&clean_cfg, &steps, 0, None);
    let span = t.elapsed();
    let clean = outcome(&clean_cfg, &clean_dir.path().join("store.sqlite"), maildir.path(), "clean", last);
    assert!(clean.mails > 0 && !clean.alerts.is_empty() && !clean.owed_points.is_empty(), "the scenario must owe mail, alerts and points: {clean:?}");
    assert_eq!(clean.mails, clean.distinct_message_ids);

    let mut rng = Rng(seed);
    let mut interrupted: BTreeMap<String, usize> = BTreeMap::new();
    let mut duplicates = 0usize;
    for trial in 0..trials {
        let tag = format!("trial{trial}-{seed}");
        let (dir, cfg) = trial_dir(&f, &tag, port);
        let kill = span.mul_f64(rng.unit());
        let (stopped, mut last) = run(&cfg, &steps, 0, Some(kill));
        let where_ = match stopped {
            Some(i) => {
                let (_, out) = run(&cfg, &steps, i, None);
                last = out;
                steps[i][0].clone()
            }
            None => "after the end".into(),
        };
        *interrupted.entry(where_.clone()).or_default() += 1;
        let got = outcome(&cfg, &dir.path().join("store.sqlite"), maildir.path(), &tag, last);
        assert_eq!(got.usage, clean.usage, "trial {trial} (killed at {kill:?} in {where_}): ledger differs");
        assert_eq!(got.last_check, clean.last_check, "trial {trial} ({where_}): allocation figures differ");
        assert_eq!(got.alerts, clean.alerts, "trial {trial} ({where_}): alerts or their deliveries differ");
        let lost: Vec<&String> = clean.owed_points.difference(&got.owed_points).collect();
        let extra: Vec<&String> = got.owed_points.difference(&clean.owed_points).collect();
        assert!(lost.is_empty() && extra.is_empty(), "trial {trial} ({where_}): owed indicator points differ: lost {lost:#?}, unexpected {extra:#?}");
        // Every owed mail arrived (as many distinct messages as in the clean run). SMTP has no
        // idempotency: a kill in the millisecond between the server's acceptance and our
        // recording it makes the restart send that message again — with the same Message-ID,
        // so the receiver can discard it. Only that can make a duplicate: count them.
        assert_eq!(got.distinct_message_ids, clean.distinct_message_ids, "trial {trial} ({where_}): mails lost");
        let dup = got.mails - got.distinct_message_ids;
        assert!(dup == 0 || (dup == 1 && where_ == "check"), "trial {trial} ({where_}): {dup} duplicate mails");
        duplicates += dup;
    }
    println!(
        "crash trials: {trials} (seed {seed}), clean run {span:?}; SIGKILL landed in: {interrupted:?}; \
         ledger, figures, alerts and owed points identical to the clean run; no mail lost; \
         {duplicates} mail(s) re-sent with the same Message-ID after a kill between SMTP acceptance and its record"
    );
    smtp.kill().ok();
    smtp.wait().ok();
}

// ---- Second generation: SIGKILL the daemon ---------------------------------------------------

/// Jobs of the daemon harness's fixture, split into `PARTS` files dropped in its files source.
const DAEMON_JOBS: &str = "4000";
const PARTS: usize = 4;
/// Points per InfluxDB request: a cycle's points take several requests, so a kill can fall
/// between two of them.
const BATCH: usize = 8;

/// An HTTP/1.1 request as a test server read it.
struct Request {
    head: String,
    body: Vec<u8>,
}

impl Request {
    fn path(&self) -> &str {
        self.head.split_whitespace().nth(1).unwrap_or("")
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).filter_map(|l| l.split_once(':')).find(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
    }
}

/// Read one request (`Content-Length` or chunked body); `None` when the peer closed first.
fn read_request(s: &mut std::net::TcpStream) -> Option<Request> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut body = buf[end..].to_vec();
    let req = Request { head, body: Vec::new() };
    if let Some(len) = req.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while body.len() < len {
            let n = s.read(&mut chunk).ok().filter(|n| *n > 0)?;
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(len);
    } else if req.header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        while !body.ends_with(b"0\r\n\r\n") {
            let n = s.read(&mut chunk).ok().filter(|n| *n > 0)?;
            body.extend_from_slice(&chunk[..n]);
        }
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..i]).trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[i + 2..i + 2 + size]);
            rest = &rest[i + 4 + size..];
        }
        body = out;
    }
    Some(Request { body, ..req })
}

/// A loopback server in a thread, one thread per connection, stopped on drop.
struct TestServer {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    fn start(handle: impl Fn(std::net::TcpStream) + Send + Sync + 'static) -> TestServer {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (stop2, handle) = (stop.clone(), std::sync::Arc::new(handle));
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                        let h = handle.clone();
                        std::thread::spawn(move || h(s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TestServer { port, stop, thread: Some(thread) }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Every line the InfluxDB pass-through forwarded, per bucket (one bucket per trial), and
/// whether the real server answered that request 2xx.
type Forwarded = std::sync::Arc<std::sync::Mutex<BTreeMap<String, Vec<(String, bool)>>>>;

/// A recording pass-through in front of the real VictoriaMetrics: every request is forwarded
/// as is, and VictoriaMetrics' own answer (status, headers, body) is returned; nothing is
/// invented. Writes (`/api/v2/write?…&bucket=B`) are recorded line by line under B.
fn influx_pass_through(upstream: &str) -> (TestServer, Forwarded) {
    let hostport = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
    let seen: Forwarded = Default::default();
    let record = seen.clone();
    let server = TestServer::start(move |mut client| {
        use std::io::{Read, Write};
        while let Some(req) = read_request(&mut client) {
            let mut up = std::net::TcpStream::connect(&hostport).expect("VictoriaMetrics is down");
            let mut head = String::new();
            for (i, line) in req.head.trim_end().lines().enumerate() {
                let lower = line.to_ascii_lowercase();
                if i > 0 && ["host:", "connection:", "content-length:", "transfer-encoding:", "keep-alive:"].iter().any(|h| lower.starts_with(h)) {
                    continue;
                }
                head.push_str(line);
                head.push_str("\r\n");
            }
            head.push_str(&format!("Host: {hostport}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", req.body.len()));
            up.write_all(head.as_bytes()).unwrap();
            up.write_all(&req.body).unwrap();
            let mut answer = Vec::new();
            up.read_to_end(&mut answer).unwrap();
            let status: u16 = String::from_utf8_lossy(&answer).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            if let Some(q) = req.path().strip_prefix("/api/v2/write?") {
                let bucket = q.split('&').find_map(|kv| kv.strip_prefix("bucket=")).unwrap_or("").to_string();
                let text = String::from_utf8_lossy(&req.body).into_owned();
                let mut m = record.lock().unwrap();
                let lines = m.entry(bucket).or_default();
                lines.extend(text.lines().filter(|l| !l.is_empty()).map(|l| (l.to_string(), (200..300).contains(&status))));
            }
            // The answer as VictoriaMetrics gave it (it closes: so do we, after it).
            if client.write_all(&answer).is_err() {
                return;
            }
            return;
        }
    });
    (server, seen)
}

/// Every webhook request received, per trial (the URL's path): idempotency key and body.
type Hooks = std::sync::Arc<std::sync::Mutex<BTreeMap<String, Vec<(String, String)>>>>;

/// The webhook's receiver: records each request and answers 200 (what a receiver does).
fn webhook_receiver() -> (TestServer, Hooks) {
    let seen: Hooks = Default::default();
    let record = seen.clone();
    let server = TestServer::start(move |mut client| {
        use std::io::Write;
        while let Some(req) = read_request(&mut client) {
            let tag = req.path().trim_start_matches('/').to_string();
            let key = req.header("idempotency-key").unwrap_or("").to_string();
            record.lock().unwrap().entry(tag).or_default().push((key, String::from_utf8_lossy(&req.body).into_owned()));
            if client.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").is_err() {
                return;
            }
        }
    });
    (server, seen)
}

/// The fixture of the daemon harness: the accounting in `PARTS` files, allocations, the
/// centre's configuration, and the instant every process of the test runs at.
struct DaemonFixture {
    dir: tempfile::TempDir,
    /// The frozen wall clock of every process (libfaketime; monotonic time runs): each cycle
    /// reconciles at this instant, so a clean run and a crashed one owe the same points.
    t0: i64,
    /// The Slurm lab, when up: the centre also has a live `sacct` source on it.
    lab: bool,
}

/// libfaketime, preloaded into allocwatch (not through `faketime`, which would stand between
/// the test and the process it signals).
fn libfaketime() -> Option<PathBuf> {
    ["/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1", "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketimeMT.so.1"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn daemon_fixture(lab: Option<(PathBuf, PathBuf)>) -> DaemonFixture {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = Command::new(bench_bin())
        .args(["gen", "--jobs", DAEMON_JOBS, "--seed", "11", "--accounts", "8", "--out"])
        .arg(d.join("dump.log"))
        .arg("--config")
        .arg(d.join("base.toml"))
        .arg("--allocations")
        .arg(d.join("alloc.csv"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // The generator writes 2024; this year's allocations are in force now, 2026's.
    let shift = |s: String| s.replace("2025-", "2027-").replace("2024-", "2026-");
    let dump = shift(std::fs::read_to_string(d.join("dump.log")).unwrap());
    let lines: Vec<&str> = dump.lines().collect();
    let per = lines.len().div_ceil(PARTS);
    std::fs::create_dir(d.join("drop")).unwrap();
    for (i, part) in lines.chunks(per).enumerate() {
        std::fs::write(d.join("drop").join(format!("part{i}.log")), part.join("\n") + "\n").unwrap();
    }
    let alloc = shift(std::fs::read_to_string(d.join("alloc.csv")).unwrap());
    std::fs::write(d.join("alloc.csv"), alloc).unwrap();
    if let Some((labdir, jobs_sh)) = &lab {
        // Two short jobs of the lab's accounts, finished before the frozen instant.
        for (acct, cpus) in [("a0150612345", "2"), ("abc", "1")] {
            let out = Command::new("bash").arg(jobs_sh).arg(labdir).args(["cpu", acct, cpus, "1"]).output().unwrap();
            assert!(out.status.success(), "jobs.sh: {}", stderr(&out));
        }
        let out = Command::new("bash").arg(jobs_sh).arg(labdir).args(["wait-idle", "240"]).output().unwrap();
        assert!(out.status.success(), "jobs.sh wait-idle: {}", stderr(&out));
    }
    let t0 = jiff::Timestamp::now().as_second();
    if lab.is_some() {
        // Other tests use the lab too: wait until what it says of the runs finished before t0
        // (what the harness pulls) no longer changes, so every run of the test sees the same.
        let view = || {
            let out = Command::new("sacct")
                .args(["-a", "-X", "-D", "-n", "-P", "-o", "JobIDRaw,State,End,Elapsed", "--state=COMPLETED"])
                .args(["-S", &format!("uts{}", t0 - 50 * 3600), "-E", &format!("uts{t0}")])
                .output()
                .unwrap();
            assert!(out.status.success(), "sacct: {}", stderr(&out));
            out.stdout
        };
        let mut last = view();
        wait_for(60, "the lab's accounting before the frozen instant to settle", || {
            std::thread::sleep(Duration::from_secs(1));
            let now = view();
            let same = now == last;
            last = now;
            same.then_some(())
        });
    }
    DaemonFixture { dir, t0, lab: lab.is_some() }
}

/// The frozen clock as libfaketime reads it (absolute: a stopped clock).
fn faketime_spec(t0: i64) -> String {
    jiff::Timestamp::from_second(t0).unwrap().strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// A daemon trial's directory: its store and configuration: the files source (the four
/// parts), the live sacct source on the lab, InfluxDB through the pass-through (bucket = tag),
/// SMTP (operations' address `ops@<tag>.example`, each allocation's PI
/// `pi.<project>@<tag>.example`) and the webhook receiver (path = tag).
fn daemon_trial_dir(f: &DaemonFixture, tag: &str, ports: (u16, u16, u16)) -> (tempfile::TempDir, PathBuf) {
    let (smtp, influx, hook) = ports;
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(f.dir.path().join("base.toml")).unwrap();
    // The allocations with a PI each, at the trial's domain: researchers' mails too.
    let shared_alloc = f.dir.path().join("alloc.csv");
    let mut alloc = String::new();
    for (i, line) in std::fs::read_to_string(&shared_alloc).unwrap().lines().enumerate() {
        let pi = if i == 0 { "pi".to_string() } else { format!("pi.{}@{tag}.example", line.split(',').next().unwrap().to_lowercase()) };
        alloc.push_str(&format!("{line},{pi}\n"));
    }
    let alloc_path = dir.path().join("alloc.csv");
    std::fs::write(&alloc_path, alloc).unwrap();
    let mut cfg = base
        .replace("path = \"bench.sqlite\"", "path = \"store.sqlite\"")
        .replace(&format!("\"{}\"", shared_alloc.display()), &format!("\"{}\"", alloc_path.display()));
    assert!(cfg.contains(&alloc_path.display().to_string()), "base.toml changed shape");
    // The centre's sources: the drop directory, and the lab's sacct.
    let sources_at = cfg.len();
    let end = cfg.len();
    let mut sources = format!(
        "[[centre.source]]\nkind = \"files\"\nformat = \"sacct\"\nfields = \"xdmod\"\npaths = [\"{}\"]\n",
        f.dir.path().join("drop").display()
    );
    if f.lab {
        // The sacct child must see the real clock: Slurm's own, not the frozen one.
        sources.push_str(
            "[[centre.source]]\nkind = \"sacct\"\ncommand_prefix = [\"env\", \"-u\", \"LD_PRELOAD\", \"-u\", \"FAKETIME\"]\n\
             extra_args = [\"--state=COMPLETED\"]\noverlap_hours = 48\nfirst_pull_days = 1\n",
        );
    }
    // (The lab's cluster, jeanzay, and its partition cpu_p1 are among the centre's.)
    cfg.replace_range(sources_at..end, &sources);
    cfg.push_str(&format!(
        "\n[daemon]\nschedule = \"* * * * * *\"\njitter_seconds = 0\nquality_report = \"\"\nshutdown_grace_seconds = 60\n\
         \n[influxdb]\nurl = \"http://127.0.0.1:{influx}\"\norg = \"allocwatch\"\nbucket = \"{tag}\"\ntoken_env = \"AW_CRASH_TOKEN\"\n\
         timeout_seconds = 20\nbatch_size = {BATCH}\ngzip = false\nbackoff_initial_seconds = 1\nbackoff_max_seconds = 2\n\
         \n[alerts]\n[alerts.email]\nhost = \"127.0.0.1\"\nport = {smtp}\ntls = \"none\"\nfrom = \"allocwatch@crash.example\"\n\
         [alerts.webhook]\nurl = \"http://127.0.0.1:{hook}/{tag}\"\n\
         [alerts.operations]\nemails = [\"ops@{tag}.example\"]\ndigest = true\n\
         [alerts.delivery]\nretry_initial_seconds = 0\nretry_max_seconds = 0\ntimeout_seconds = 20\n"
    ));
    let path = dir.path().join("allocwatch.toml");
    std::fs::write(&path, cfg).unwrap();
    (dir, path)
}

/// A process of the daemon harness, SIGKILLed on drop if still running.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn start(f: &DaemonFixture, cfg: &Path, args: &[String], env: &[(String, String)], log: PathBuf) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_allocwatch"));
        cmd.arg("--config").arg(cfg).args(args);
        for (k, v) in faketime_env(f) {
            cmd.env(k, v);
        }
        cmd.env("AW_CRASH_TOKEN", "t0ken")
            .env("ALLOCWATCH_LOG", "info")
            .env_remove("ALLOCWATCH_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("ALLOCWATCH_CRASH_AT")
            .env_remove("ALLOCWATCH_CRASH_TRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc { child: cmd.spawn().expect("start allocwatch"), log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child, which we have not reaped yet.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        forget_faketime_ipc(self.child.id());
    }
}

/// libfaketime (0.9.10) preloaded without its wrapper makes a semaphore and a shared-memory
/// segment named by the process's pid and removes them at exit; a SIGKILLed process leaves
/// them. Left, they break a later `faketime` wrapper that gets the same pid ("sem_open: File
/// exists": tests/quality.rs and tests/daemon.rs use the wrapper), so each killed process's
/// pair is removed once it is reaped.
fn forget_faketime_ipc(pid: u32) {
    for name in [format!("/dev/shm/sem.faketime_sem_{pid}"), format!("/dev/shm/faketime_shm_{pid}")] {
        let _ = std::fs::remove_file(name);
    }
}

fn faketime_env(f: &DaemonFixture) -> Vec<(&'static str, String)> {
    vec![
        ("LD_PRELOAD", libfaketime().unwrap().display().to_string()),
        ("FAKETIME", faketime_spec(f.t0)),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
        ("TZ", "UTC".into()),
    ]
}

/// A CLI command under the frozen clock; its stdout.
fn aw_at(f: &DaemonFixture, cfg: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_allocwatch"));
    cmd.arg("--config").arg(cfg).args(args).env("ALLOCWATCH_LOG", "warn").env_remove("ALLOCWATCH_CONFIG");
    for (k, v) in faketime_env(f) {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "allocwatch {args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// One figure of a store (0 while the store does not exist yet).
fn figure(store: &Path, sql: &str) -> i64 {
    if !store.exists() {
        return 0;
    }
    let c = rusqlite::Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    c.busy_timeout(Duration::from_secs(30)).unwrap();
    match c.query_row(sql, [], |r| r.get::<_, Option<i64>>(0)) {
        Ok(v) => v.unwrap_or(0),
        // No row yet (`sqlite_sequence` before the first point), or a store killed before its
        // schema was created.
        Err(rusqlite::Error::QueryReturnedNoRows) => 0,
        Err(e) if e.to_string().contains("no such table") => 0,
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// The steps of a daemon trial: a backfill of the live source (when there is one), then the
/// daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Backfill,
    Run,
}

/// Where a trial's first run is killed: just before or after its process's Nth commit, or
/// at an instant after the step's start.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    Commit { step: Step, before: bool, n: u64 },
    Instant { step: Step, after: Duration },
}

impl KillAt {
    fn step(&self) -> Step {
        match *self {
            KillAt::Commit { step, .. } | KillAt::Instant { step, .. } => step,
        }
    }
}

/// How a step ended.
#[derive(Debug, PartialEq)]
enum Ended {
    Finished,
    Killed,
}

fn steps_of(f: &DaemonFixture) -> Vec<Step> {
    if f.lab {
        vec![Step::Backfill, Step::Run]
    } else {
        vec![Step::Run]
    }
}

/// Run a step; with `kill`, SIGKILL it there (commit boundaries through `ALLOCWATCH_CRASH_AT`,
/// instants from here); with `trace`, record its commits. The daemon gets a SIGHUP after its
/// first cycle when `hup`, and a SIGTERM once quiescent: every part imported, the live source
/// pulled, a cycle after the last pull, both outboxes empty.
fn run_step(f: &DaemonFixture, cfg: &Path, step: Step, kill: Option<KillAt>, trace: Option<&Path>, hup: bool) -> Ended {
    let store = cfg.with_file_name("store.sqlite");
    let mut env = Vec::new();
    if let Some(KillAt::Commit { before, n, .. }) = kill {
        env.push(("ALLOCWATCH_CRASH_AT".to_string(), format!("{}:{n}", if before { "before" } else { "after" })));
    }
    if let Some(t) = trace {
        env.push(("ALLOCWATCH_CRASH_TRACE".to_string(), t.display().to_string()));
    }
    let kill_after = match kill {
        Some(KillAt::Instant { after, .. }) => Some(after),
        _ => None,
    };
    let log = cfg.with_file_name("allocwatch.log");
    let args: Vec<String> = match step {
        Step::Backfill => {
            let at = |s: i64| jiff::Timestamp::from_second(s).unwrap().to_string();
            ["backfill", "--centre", "bench", "--source", "sacct", "--from", &at(f.t0 - 3 * 3600), "--to", &at(f.t0), "--chunk", "1h"]
                .map(String::from)
                .to_vec()
        }
        Step::Run => vec!["run".into()],
    };
    let (c0, s0) = (figure(&store, "SELECT COUNT(*) FROM cycles"), figure(&store, "SELECT COUNT(*) FROM pulls WHERE source = 'sacct' AND ok = 1"));
    let t = Instant::now();
    let mut p = Proc::start(f, cfg, &args, &env, log);
    let deadline = Duration::from_secs(180);
    // The daemon's progress: 0 before its first cycle, 1 reloading, 2 waiting for quiescence,
    // 3 stopping (SIGTERM sent), 4 stopping and SIGHUP sent.
    let mut phase = if step == Step::Run && hup { 0 } else { 2 };
    let mut c_hup = 0;
    let mut marks = Vec::new();
    loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            use std::os::unix::process::ExitStatusExt;
            if status.signal() == Some(libc::SIGKILL) && kill.is_some() {
                return Ended::Killed;
            }
            assert!(status.success(), "{step:?} exited with {status} (phase {phase}):\n{}", p.log());
            assert!(step == Step::Backfill || phase >= 3, "the daemon stopped on its own:\n{}", p.log());
            if std::env::var_os("AW_CRASH_VERBOSE").is_some() {
                println!("{step:?} finished in {:?} (phases at {marks:?}):\n{}", t.elapsed(), p.log());
            }
            return Ended::Finished;
        }
        if kill_after.is_some_and(|k| t.elapsed() >= k) {
            p.child.kill().unwrap();
            let status = p.child.wait().unwrap();
            use std::os::unix::process::ExitStatusExt;
            return if status.signal() == Some(libc::SIGKILL) { Ended::Killed } else { Ended::Finished };
        }
        assert!(t.elapsed() < deadline, "{step:?} still running after {deadline:?} (phase {phase}):\n{}", p.log());
        if step == Step::Run {
            let cycles = figure(&store, "SELECT COUNT(*) FROM cycles");
            if phase == 0 && cycles > c0 {
                c_hup = cycles;
                p.signal(libc::SIGHUP);
                phase = 1;
                marks.push(t.elapsed());
            } else if phase == 1 && p.log().contains("configuration reloaded") && cycles > c_hup {
                phase = 2;
            } else if phase == 2 && cycles > c0 && quiescent(f, &store, s0) {
                p.signal(libc::SIGTERM);
                phase = 3;
                marks.push(t.elapsed());
            } else if phase == 3 && hup && p.log().contains("SIGTERM: stopping") {
                // A SIGHUP while it stops (a reload by a careless operator) must not kill it.
                p.signal(libc::SIGHUP);
                phase = 4;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Nothing left to do: every part imported, the live source pulled by this process, the last
/// cycle after the last pull, no point and no message waiting.
fn quiescent(f: &DaemonFixture, store: &Path, sacct_pulls_before: i64) -> bool {
    figure(store, "SELECT COUNT(*) FROM imported_files") == PARTS as i64
        && (!f.lab || figure(store, "SELECT COUNT(*) FROM pulls WHERE source = 'sacct' AND ok = 1") > sacct_pulls_before)
        && figure(store, "SELECT last_pull_id FROM cycle_pulls ORDER BY cycle_id DESC LIMIT 1") == figure(store, "SELECT MAX(id) FROM pulls")
        && figure(store, "SELECT COUNT(*) FROM outbox_points") == 0
        && figure(store, "SELECT COUNT(*) FROM notifications WHERE state = 'pending'") == 0
}

/// What a clean run of the daemon harness leaves, for the checks after each kill and the
/// comparison after each finished trial.
#[derive(Debug)]
struct DaemonOutcome {
    usage: String,
    alerts: BTreeSet<AlertRow>,
    /// Cycles recorded.
    cycles: i64,
    /// Messages queued (alerts' mails and webhook messages).
    notifications: i64,
    /// Delivered indicator lines (VictoriaMetrics answered 2xx), normalised, with their counts.
    delivered: BTreeMap<String, usize>,
    /// Mails received: (recipients, subject, text body), the trial's tag replaced by `TAG`, with
    /// how many times each came; and the Message-IDs of the extra copies.
    mails: BTreeMap<(String, String, String), usize>,
    mail_ids: BTreeMap<(String, String, String), BTreeSet<String>>,
    /// Webhook bodies by idempotency key (tag replaced), and how many requests came.
    hooks: BTreeMap<String, String>,
    hook_requests: usize,
}

/// `centre_feed` describes the pulls themselves (how many ran, how long they took): a
/// restarted daemon pulls once more, legitimately. What must not be lost is the series at the
/// cycle's instant.
fn normalise_line(line: &str) -> String {
    if line.starts_with("centre_feed,") {
        let mut parts = line.split(' ');
        let series = parts.next().unwrap_or("").to_string();
        let ts = parts.last().unwrap_or("").to_string();
        format!("{series} {ts}")
    } else {
        line.to_string()
    }
}

/// The store right after a SIGKILL, before anything runs again: each step is there wholly or
/// not at all. `Err` names the first inconsistency.
fn check_whole_or_nothing(store: &Path, clean: &DaemonOutcome, points_per_cycle: i64) -> Result<(), String> {
    let fig = |sql: &str| figure(store, sql);
    let integrity: String = rusqlite::Connection::open(store).unwrap().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    if integrity != "ok" {
        return Err(format!("integrity_check: {integrity}"));
    }
    // Ledger rows vs daily buckets: every job's unit-seconds are in the buckets, exactly.
    for (unit, bucket) in [("cpus", "cpu_s"), ("gpus", "gpu_s"), ("billing", "billing_s"), ("nodes", "node_s")] {
        let (jobs, days) = (fig(&format!("SELECT SUM(elapsed * {unit}) FROM jobs")), fig(&format!("SELECT SUM({bucket}) FROM usage_daily")));
        if jobs != days {
            return Err(format!("Σ jobs.elapsed × {unit} = {jobs} but Σ usage_daily.{bucket} = {days}"));
        }
    }
    // Ledger rows vs pulls: each stored job was counted by the pull that stored it.
    let (jobs, inserted) = (fig("SELECT COUNT(*) FROM jobs"), fig("SELECT SUM(inserted) FROM pulls WHERE ok = 1"));
    if jobs != inserted {
        return Err(format!("{jobs} jobs but the pulls inserted {inserted}"));
    }
    // Imported files and watermarks only with their successful pull.
    let orphan_files = fig("SELECT COUNT(*) FROM imported_files i LEFT JOIN pulls p ON p.id = i.pull_id WHERE p.ok IS NOT 1");
    let orphan_marks = fig("SELECT COUNT(*) FROM watermarks w WHERE NOT EXISTS (SELECT 1 FROM pulls p WHERE p.centre = w.centre AND p.source = w.source AND p.ok = 1)");
    if orphan_files + orphan_marks != 0 {
        return Err(format!("{orphan_files} imported file(s), {orphan_marks} watermark(s) without their pull"));
    }
    // A backfill stops at a chunk boundary (or its end).
    let bad = fig(
        "SELECT COUNT(*) FROM backfills WHERE done_until < window_start OR done_until > window_end
            OR (done_until <> window_end AND (done_until - window_start) % chunk_seconds <> 0)",
    );
    if bad != 0 {
        return Err(format!("{bad} backfill(s) stopped between chunk boundaries"));
    }
    // Cycles vs outboxes: each cycle with all its points and the pulls it saw; every point
    // enqueued is still owed, delivered (counted), dropped or rejected.
    let cycles = fig("SELECT COUNT(*) FROM cycles");
    if fig("SELECT COUNT(*) FROM cycle_pulls") != cycles {
        return Err(format!("{cycles} cycles but {} cycle_pulls rows", fig("SELECT COUNT(*) FROM cycle_pulls")));
    }
    let enqueued = fig("SELECT seq FROM sqlite_sequence WHERE name = 'outbox_points'");
    let accounted = fig("SELECT COUNT(*) FROM outbox_points")
        + fig("SELECT sent_total + dropped_total FROM outbox_state")
        + fig("SELECT COUNT(*) FROM outbox_rejected");
    if enqueued != accounted || enqueued != cycles * points_per_cycle {
        return Err(format!("{cycles} cycle(s) of {points_per_cycle} points, {enqueued} enqueued, {accounted} owed + delivered + dropped + rejected"));
    }
    // Alerts and messages come with the first cycle (the clock is frozen: later cycles see the
    // same), all or none; each message of a recorded cycle.
    let (alerts, messages) = (fig("SELECT COUNT(*) FROM alerts"), fig("SELECT COUNT(*) FROM notifications"));
    let want = if cycles > 0 { (clean.alerts.len() as i64, clean.notifications) } else { (0, 0) };
    if (alerts, messages) != want {
        return Err(format!("{cycles} cycle(s): {alerts} alerts and {messages} messages, expected {want:?}"));
    }
    let stray = fig("SELECT COUNT(*) FROM notifications n WHERE NOT EXISTS (SELECT 1 FROM cycles c WHERE c.id = n.cycle_id)");
    if stray != 0 {
        return Err(format!("{stray} message(s) of no recorded cycle"));
    }
    Ok(())
}

/// What a finished trial left: the store, and what the servers received for its tag.
fn daemon_outcome(
    f: &DaemonFixture,
    cfg: &Path,
    tag: &str,
    forwarded: &Forwarded,
    hooks: &Hooks,
    mails: &mut MailBox,
) -> DaemonOutcome {
    let store = cfg.with_file_name("store.sqlite");
    let usage = aw_at(f, cfg, &["usage", "--format", "json"]);
    let list = aw_at(f, cfg, &["alerts", "list", "--all", "--format", "json"]);
    let alerts = alert_rows(&list);
    let mut delivered = BTreeMap::new();
    for (line, ok) in forwarded.lock().unwrap().get(tag).cloned().unwrap_or_default() {
        if ok {
            *delivered.entry(normalise_line(&line)).or_default() += 1;
        }
    }
    let untag = |s: &str| s.replace(tag, "TAG");
    let received = mails.take(tag);
    let mut m: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let mut ids: BTreeMap<(String, String, String), BTreeSet<String>> = BTreeMap::new();
    for (to, subject, body, id) in received {
        let k = (untag(&to), untag(&subject), untag(&body));
        *m.entry(k.clone()).or_default() += 1;
        ids.entry(k).or_default().insert(id);
    }
    let requests = hooks.lock().unwrap().get(tag).cloned().unwrap_or_default();
    let mut h = BTreeMap::new();
    for (key, body) in &requests {
        let body = untag(body);
        if let Some(old) = h.insert(key.clone(), body.clone()) {
            assert_eq!(old, body, "{tag}: two webhook bodies under the idempotency key {key}");
        }
    }
    DaemonOutcome {
        usage,
        alerts,
        cycles: figure(&store, "SELECT COUNT(*) FROM cycles"),
        notifications: figure(&store, "SELECT COUNT(*) FROM notifications"),
        delivered,
        mails: m,
        mail_ids: ids,
        hooks: h,
        hook_requests: requests.len(),
    }
}

/// The private SMTP server's Maildir, read incrementally: each mail is read once and filed
/// under the trial whose tag its recipients carry.
struct MailBox {
    dir: PathBuf,
    seen: BTreeSet<std::ffi::OsString>,
    by_tag: BTreeMap<String, Vec<(String, String, String, String)>>,
}

impl MailBox {
    fn take(&mut self, tag: &str) -> Vec<(String, String, String, String)> {
        for e in std::fs::read_dir(self.dir.join("new")).unwrap().flatten() {
            if !self.seen.insert(e.file_name()) {
                continue;
            }
            let raw = std::fs::read(e.path()).unwrap();
            let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
            let to: Vec<String> = m.to().map(|a| a.iter().filter_map(|x| x.address()).map(str::to_string).collect()).unwrap_or_default();
            let to = to.join(",");
            let owner = to.split(['@', '.', ',']).find(|p| p.starts_with("d") && p.contains('-')).unwrap_or("").to_string();
            let entry = (to, m.subject().unwrap_or("").to_string(), m.body_text(0).map(|b| b.into_owned()).unwrap_or_default(), m.message_id().unwrap_or("").to_string());
            self.by_tag.entry(owner).or_default().push(entry);
        }
        self.by_tag.remove(tag).unwrap_or_default()
    }
}

/// The call site of each commit of a step, in order (commit N at index N − 1), from its trace.
fn trace_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| l.split_once(' ').map(|(_, site)| site.to_string())).collect()
}

/// Where a trace says the process killed itself (`FILE:LINE`), if it did.
fn crash_site(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| l.strip_prefix("crashpoint: SIGKILL ").map(|r| r.rsplit(' ').next().unwrap_or("").to_string()))
}

/// Compare a finished trial with the clean run; `Err` says how it differs. The bounds:
/// - each distinct indicator line is delivered once per cycle that owed it, plus at most once
///   more: the at-least-once re-send of the one batch the kill left between VictoriaMetrics'
///   2xx and our deleting it (so at most `BATCH` lines re-sent in all);
/// - each mail (recipients, subject, body) arrives as often as in the clean run, one of them at
///   most once more, with the same Message-ID (the kill fell between the SMTP server's
///   acceptance and our record of it); the same for the webhook by idempotency key.
fn compare_with_clean(got: &DaemonOutcome, clean: &DaemonOutcome) -> Result<(usize, usize), String> {
    if got.usage != clean.usage {
        let (a, b): (Vec<&str>, Vec<&str>) = (got.usage.lines().collect(), clean.usage.lines().collect());
        let at = a.iter().zip(&b).position(|(x, y)| x != y).unwrap_or(a.len().min(b.len()));
        return Err(format!("the ledger (usage) differs from line {at}: {:?} vs the clean run's {:?}", &a[at.min(a.len())..(at + 6).min(a.len())], &b[at.min(b.len())..(at + 6).min(b.len())]));
    }
    if got.alerts != clean.alerts {
        return Err(format!("alerts or their deliveries differ: {:#?} vs {:#?}", got.alerts, clean.alerts));
    }
    let lines: BTreeSet<&String> = got.delivered.keys().collect();
    let want: BTreeSet<&String> = clean.delivered.keys().collect();
    if lines != want {
        let lost: Vec<_> = want.difference(&lines).take(5).collect();
        let extra: Vec<_> = lines.difference(&want).take(5).collect();
        return Err(format!("delivered points differ: lost {lost:#?}, unexpected {extra:#?}"));
    }
    let c = got.cycles as usize;
    let mut resent = 0;
    for (line, n) in &got.delivered {
        if *n < c || *n > c + 1 {
            return Err(format!("{line:?} delivered {n} times over {c} cycles"));
        }
        resent += n - c;
    }
    if resent > BATCH {
        return Err(format!("{resent} lines re-sent: more than one batch"));
    }
    let mut mails_resent = 0;
    let keys: BTreeSet<_> = got.mails.keys().chain(clean.mails.keys()).collect();
    for k in keys {
        let (n, want) = (got.mails.get(k).copied().unwrap_or(0), clean.mails.get(k).copied().unwrap_or(0));
        if n < want {
            return Err(format!("mail lost: {k:?} ({n} of {want})"));
        }
        if n > want && got.mail_ids[k].len() > clean.mail_ids[k].len() {
            return Err(format!("mail {k:?} sent {n} times with distinct Message-IDs {:?}", got.mail_ids[k]));
        }
        mails_resent += n - want;
    }
    if got.hooks != clean.hooks {
        return Err(format!("webhook messages differ: {} keys vs {}", got.hooks.len(), clean.hooks.len()));
    }
    let hooks_resent = got.hook_requests - got.hooks.len();
    if mails_resent + hooks_resent > 1 {
        return Err(format!("{mails_resent} mail(s) and {hooks_resent} webhook message(s) re-sent after one kill"));
    }
    Ok((resent, mails_resent + hooks_resent))
}

#[test]
fn sigkill_the_daemon_at_commits_and_instants_loses_nothing() {
    let Some(env) = server_env("crash_daemon", &["AW_VM_URL"]) else { return };
    if libfaketime().is_none() {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "crash_daemon: CI=true but libfaketime is missing (tests/run.sh installs faketime)");
        eprintln!("SKIPPED crash_daemon: libfaketime not installed");
        return;
    }
    let lab = match (std::env::var("SLURM_LAB_DIR"), std::env::var("SLURM_LAB_JOBS")) {
        (Ok(d), Ok(j)) if Path::new(&d).join("env.sh").is_file() => Some((PathBuf::from(d), PathBuf::from(j))),
        _ => {
            assert!(std::env::var("CI").map_or(true, |v| v != "true"), "crash_daemon: CI=true but no Slurm lab is up (SLURM_LAB_DIR…)");
            eprintln!("crash_daemon: no Slurm lab: files source only, no live sacct, no backfill");
            None
        }
    };
    let trials: usize = std::env::var("AW_CRASH_DAEMON_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let seed: u64 = std::env::var("AW_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20261121);
    let f = daemon_fixture(lab);
    let smtp_port = free_port();
    let maildir = tempfile::tempdir().unwrap();
    let _smtp = Reaped(private_smtp(smtp_port, maildir.path()));
    let mut mails = MailBox { dir: maildir.path().to_path_buf(), seen: BTreeSet::new(), by_tag: BTreeMap::new() };
    let (influx, forwarded) = influx_pass_through(&env["AW_VM_URL"]);
    let (hook, hooks) = webhook_receiver();
    let ports = (smtp_port, influx.port, hook.port);
    let steps = steps_of(&f);

    // The clean run: its commits (per step) and durations.
    let tag = format!("dclean-{seed}");
    let (clean_dir, clean_cfg) = daemon_trial_dir(&f, &tag, ports);
    let mut commits: Vec<(Step, Vec<String>)> = Vec::new();
    let mut spans: Vec<(Step, Duration)> = Vec::new();
    for &s in &steps {
        let trace = clean_dir.path().join(format!("trace-{s:?}"));
        let t = Instant::now();
        assert_eq!(run_step(&f, &clean_cfg, s, None, Some(&trace), true), Ended::Finished);
        spans.push((s, t.elapsed()));
        commits.push((s, trace_of(&trace)));
    }
    let clean_store = clean_dir.path().join("store.sqlite");
    let clean = daemon_outcome(&f, &clean_cfg, &tag, &forwarded, &hooks, &mut mails);
    let enqueued = figure(&clean_store, "SELECT seq FROM sqlite_sequence WHERE name = 'outbox_points'");
    assert!(clean.cycles >= 2 && enqueued > 0 && enqueued % clean.cycles == 0, "clean run: {} cycles, {enqueued} points", clean.cycles);
    let per_cycle = enqueued / clean.cycles;
    assert!(clean.delivered.values().all(|n| *n == clean.cycles as usize), "clean run: a line not delivered once per cycle: {:?}", clean.delivered.iter().find(|(_, n)| **n != clean.cycles as usize));
    assert!(!clean.alerts.is_empty() && !clean.mails.is_empty() && !clean.hooks.is_empty(), "the scenario must owe alerts, mails and webhook messages: {clean:?}");
    assert!(clean.mails.values().all(|n| *n == 1) && clean.hook_requests == clean.hooks.len());
    assert_eq!(figure(&clean_store, "SELECT COUNT(*) FROM notifications WHERE cycle_id <> (SELECT MIN(id) FROM cycles)"), 0, "clean run: messages after the first cycle");
    check_whole_or_nothing(&clean_store, &clean, per_cycle).unwrap_or_else(|e| panic!("clean run: {e}"));
    // Commit numbers per (step, call site), in the order of the clean run.
    let mut sites: Vec<((Step, String), Vec<u64>)> = Vec::new();
    for (step, trace) in &commits {
        for (i, site) in trace.iter().enumerate() {
            match sites.iter_mut().find(|(k, _)| k.0 == *step && k.1 == *site) {
                Some((_, ns)) => ns.push(i as u64 + 1),
                None => sites.push(((*step, site.clone()), vec![i as u64 + 1])),
            }
        }
    }
    let site_names: Vec<String> = sites.iter().map(|((s, site), ns)| format!("{s:?} {site} ×{}", ns.len())).collect();
    let sites: Vec<(Step, Vec<u64>)> = sites.into_iter().map(|((s, _), ns)| (s, ns)).collect();
    println!(
        "crash_daemon: clean run {spans:?}, commits {:?} at {} call sites {site_names:#?}, {} cycles × {per_cycle} points, {} alerts, {} mails, {} webhook messages",
        commits.iter().map(|(s, c)| (s, c.len())).collect::<Vec<_>>(),
        sites.len(),
        clean.cycles,
        clean.alerts.len(),
        clean.mails.len(),
        clean.hooks.len()
    );

    // The kills: two trials in three at a commit boundary (spread evenly over the clean run's
    // commits, before or after), one in three at a random instant of a step.
    let mut rng = Rng(seed);
    let at_commits = trials * 2 / 3;
    let mut landed: BTreeMap<String, usize> = BTreeMap::new();
    let (mut points_resent, mut messages_resent, mut unkilled) = (0usize, 0usize, 0usize);
    for trial in 0..trials {
        let kill = if trial < at_commits {
            // Round-robin over the call sites (a pull's commit, a cycle's, a delivery's, the
            // backfill's chunks…), a random occurrence of the site each time.
            let (step, ref ns) = sites[trial % sites.len()].clone();
            let n = ns[(rng.next() % ns.len() as u64) as usize];
            KillAt::Commit { step, before: rng.next() % 2 == 0, n }
        } else {
            let total: Duration = spans.iter().map(|(_, d)| *d).sum();
            let mut at = total.mul_f64(rng.unit());
            let mut step = spans[0].0;
            for (s, d) in &spans {
                step = *s;
                if at < *d {
                    break;
                }
                at -= *d;
            }
            KillAt::Instant { step, after: at }
        };
        let tag = format!("d{trial}-{seed}");
        let (dir, cfg) = daemon_trial_dir(&f, &tag, ports);
        let store = dir.path().join("store.sqlite");
        let trace = dir.path().join("trace");
        let mut killed = None;
        for &s in &steps {
            let k = (s == kill.step()).then_some(kill);
            if killed.is_some() || run_step(&f, &cfg, s, k, k.map(|_| trace.as_path()), true) == Ended::Killed {
                if killed.is_none() {
                    killed = Some(s);
                    // Right after the kill, before anything runs again.
                    check_whole_or_nothing(&store, &clean, per_cycle).unwrap_or_else(|e| panic!("trial {trial} ({kill:?}), right after the kill: {e}"));
                }
                assert_eq!(run_step(&f, &cfg, s, None, None, false), Ended::Finished);
            }
        }
        let place = match (killed, &kill) {
            (None, _) => {
                unkilled += 1;
                "not killed (the run ended first)".to_string()
            }
            (Some(s), KillAt::Commit { before, .. }) => format!("{s:?} {} {}", if *before { "before" } else { "after" }, crash_site(&trace).unwrap_or_default()),
            (Some(s), KillAt::Instant { .. }) => format!("{s:?} at an instant"),
        };
        *landed.entry(place.clone()).or_default() += 1;
        if std::env::var_os("AW_CRASH_VERBOSE").is_some() {
            println!("trial {trial}: {kill:?} → {place}");
        }
        let got = daemon_outcome(&f, &cfg, &tag, &forwarded, &hooks, &mut mails);
        let (p, m) = compare_with_clean(&got, &clean).unwrap_or_else(|e| panic!("trial {trial} ({kill:?}, {place}): {e}"));
        points_resent += p;
        messages_resent += m;
    }
    println!(
        "crash_daemon: {trials} trials (seed {seed}), {at_commits} at commit boundaries; landed: {landed:#?}\n\
         {unkilled} ran to the end before their kill; store whole after every kill; ledger, alerts, delivered points, mails and webhook messages \
         as in the clean run; re-sent: {points_resent} indicator line(s), {messages_resent} message(s) (same Message-ID / idempotency key)"
    );
}

/// A child killed and reaped when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
