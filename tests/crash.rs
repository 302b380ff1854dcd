//! Crash consistency: run an import and reconciliation cycles (pull → ledger → reconcile →
//! outboxes → delivery to a real SMTP server), SIGKILL the running process at a random instant
//! (seeded), restart from the interrupted step, finish, and compare with a clean run: ledger
//! totals, allocation figures, alerts, owed indicator points and delivered mails must be the
//! same — nothing lost; nothing recorded twice; a mail is re-sent (same Message-ID) only when
//! the kill fell between the SMTP server's acceptance and our record of it.
//!
//! `AW_CRASH_TRIALS` (default 50) and `AW_CRASH_SEED` (default 20261121) make a run reproducible
//! in its kill instants.

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
    alerts: BTreeSet<(String, String, String, String, i64, i64)>,
    owed_points: BTreeSet<String>,
    mails: usize,
    distinct_message_ids: usize,
}

fn outcome(cfg: &Path, store: &Path, maildir: &Path, tag: &str, last_check: String) -> Outcome {
    let usage = ok(&["--config", cfg.to_str().unwrap(), "usage", "--format", "json"]);
    let list = ok(&["--config", cfg.to_str().unwrap(), "alerts", "list", "--all", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    let alerts = rows
        .iter()
        .map(|r| {
            (
                r["rule"].as_str().unwrap().to_string(),
                r["subject"].as_str().unwrap().to_string(),
                r["discriminator"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
                r["sent"].as_i64().unwrap(),
                r["pending"].as_i64().unwrap(),
            )
        })
        .collect();
    let conn = rusqlite::Connection::open(store).unwrap();
    let mut stmt = conn.prepare("SELECT line FROM outbox_points").unwrap();
    // `centre_feed` describes the pulls themselves (ages, durations, how many pulls ran): a
    // restarted import is one more pull, legitimately. What must not be lost is the point.
    let owed_points = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .map(|line| {
            if line.starts_with("centre_feed,") {
                let mut parts = line.split(' ');
                let series = parts.next().unwrap_or("").to_string();
                let ts = parts.last().unwrap_or("").to_string();
                format!("{series} {ts}")
            } else {
                line
            }
        })
        .collect();
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
