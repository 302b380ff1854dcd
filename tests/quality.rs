//! Quality report end to end, on a store built through the real binary over a simulated
//! quarter: allocations and adjustments, cumulative sacct dumps dropped before each cycle,
//! `check --at` cycles with alerts delivered to a real aiosmtpd (and to a port where nothing
//! listens, for retried and failed deliveries), a centre whose dump goes missing (failed pulls).
//!
//! Pulls and deliveries are stamped with the wall clock, so each cycle runs under libfaketime
//! (`faketime -f`, a frozen clock at the cycle's instant; monotonic time left alone): the
//! store then looks exactly as if the daemon had run on those days. `tests/run.sh` installs
//! faketime; without it (or without aiosmtpd) the test fails under CI=true and is skipped
//! elsewhere.
//!
//! Every expected figure below is worked out by hand in the comments of `quarter_figures`.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

const HEADER: &str = "JobID|JobIDRaw|Cluster|Partition|Account|User|Start|End|ElapsedRaw|AllocCPUS|AllocTRES|State\n";

fn ts(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>().unwrap().as_second()
}

/// A job: 1 hour at 01:00 UTC on its day, `cpus` CPUs (so `cpus` core-hours).
#[derive(Clone)]
struct Job {
    centre: &'static str,
    partition: &'static str,
    account: &'static str,
    start: i64,
    cpus: u32,
}

/// One job a day from `from` (inclusive) to `to` (exclusive), dates `YYYY-MM-DD`.
fn daily(centre: &'static str, partition: &'static str, account: &'static str, from: &str, to: &str, cpus: u32) -> Vec<Job> {
    let (a, b) = (ts(&format!("{from}T01:00:00Z")), ts(&format!("{to}T01:00:00Z")));
    (0..).map(|d| a + d * 86400).take_while(|&s| s < b).map(|start| Job { centre, partition, account, start, cpus }).collect()
}

fn jobs() -> Vec<Job> {
    let mut v = Vec::new();
    v.extend(daily("idris", "cpu_p1", "aaa", "2026-07-01", "2026-10-01", 20)); // P1
    v.extend(daily("idris", "cpu_p1", "bbb", "2026-07-01", "2026-10-01", 10)); // P2
    v.extend(daily("tgcc", "skl", "ccc", "2026-07-01", "2026-10-01", 2)); // P3
    v.extend(daily("tgcc", "skl", "ddd", "2026-01-01", "2026-10-03", 10)); // P4
    v.extend(daily("idris", "cpu_p1", "eee", "2026-04-01", "2026-08-01", 5)); // P5
    v.extend(daily("tgcc", "skl", "fff", "2026-08-20", "2026-08-21", 480)); // P6: one burst
    v.extend(daily("idris", "cpu_p1", "ggg", "2026-08-20", "2026-09-06", 30)); // P7
    v.extend(daily("idris", "cpu_p1", "zzz", "2026-07-01", "2026-08-01", 3)); // no allocation: orphan
    v.extend(daily("idris", "visu", "aaa", "2026-07-01", "2026-07-15", 4)); // no billing rule: unmapped
    v
}

const ALLOCATIONS: &str = "project,centre,resource,period_start,period_end,granted_hours,accounts,pi,members,committee,profile
P1,idris,cpu,2026-07-01,2026-10-01,920,aaa,pi1@TAG.example,,CT1,
P2,idris,cpu,2026-07-01,2026-10-01,1000,bbb,pi2@TAG.example,,CT2,
P3,tgcc,cpu,2026-07-01,2026-10-01,920,ccc,pi3@TAG.example,,CT1,
P4,tgcc,cpu,2026-01-01,2027-01-01,3650,ddd,pi4@TAG.example,,CT2,
P5,idris,cpu,2026-04-01,2026-08-01,1220,eee,pi5@TAG.example,,,
P6,tgcc,cpu,2026-07-01,2026-10-01,460,fff,pi6@TAG.example,,CT1,
P7,idris,cpu,2026-07-01,2026-10-01,400,ggg,pi7@TAG.example,,CT2,
";

const ADJUSTMENTS: &str = "date,project,centre,resource,hours,kind,reason
2026-08-01,P4,tgcc,cpu,365,topup,mid-year top-up
2026-09-01,P3,tgcc,cpu,-200,withdrawal,take-back for under-use
";

fn config_body(smtp_port: u16, tag: &str) -> String {
    format!(
        r#"[store]
path = "store.sqlite"

[allocations]
files = ["alloc.csv"]
adjustments = ["adj.csv"]

[[centre]]
id = "idris"
timezone = "UTC"
clusters = ["jeanzay"]
[[centre.billing]]
resource = "cpu"
partitions = ["cpu_p1"]
unit = "cpu"
[[centre.source]]
kind = "files"
format = "sacct"
paths = ["idris.txt"]

[[centre]]
id = "tgcc"
timezone = "UTC"
clusters = ["irene"]
[[centre.billing]]
resource = "cpu"
partitions = ["skl"]
unit = "cpu"
[[centre.source]]
kind = "files"
format = "sacct"
paths = ["tgcc.txt"]

[alerts]
[alerts.rules.threshold]
thresholds_pct = [75]
renotify_days = 0
notify_resolved = false
[alerts.rules.over_pace]
renotify_days = 7
notify_resolved = true
[alerts.rules.under_pace]
renotify_days = 0
notify_resolved = false
[alerts.rules.exhausted]
renotify_days = 7
notify_resolved = true
[alerts.rules.orphan_usage]
min_hours = 1.0
renotify_days = 0
notify_resolved = true
[alerts.rules.stale_feed]
max_age_hours = 250
max_consecutive_failures = 2
renotify_days = 1
notify_resolved = true
# This quarter's alert figures are worked by hand for the rules above; the forecast rules fire
# on simulated futures and are tested against the SMTP server in tests/alerts.rs. The forecasts
# themselves are scored below (forecast_coverage_pct).
[alerts.rules.forecast_exhaustion]
enabled = false
[alerts.rules.forecast_unused]
enabled = false
[alerts.operations]
emails = ["ops@{tag}.example"]
digest = true
[alerts.email]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
from = "allocwatch@ops.example"
[alerts.delivery]
retry_initial_seconds = 0
retry_max_seconds = 0
timeout_seconds = 5
"#
    )
}


/// faketime and aiosmtpd, or why the test cannot run.
fn tools(test: &str) -> bool {
    let faketime = Command::new("faketime").arg("--version").output().is_ok_and(|o| o.status.success());
    let aiosmtpd = Command::new("/usr/bin/python3").args(["-c", "import aiosmtpd"]).output().is_ok_and(|o| o.status.success());
    if faketime && aiosmtpd {
        return true;
    }
    let why = format!("faketime: {faketime}, aiosmtpd: {aiosmtpd} (tests/run.sh installs both)");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: CI=true but a tool is missing: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

struct Quarter {
    dir: tempfile::TempDir,
    live: PathBuf,
    dead: PathBuf,
    smtp: Child,
    maildir: PathBuf,
}

impl Drop for Quarter {
    fn drop(&mut self) {
        let _ = self.smtp.kill();
        let _ = self.smtp.wait();
    }
}

impl Quarter {
    fn new() -> Quarter {
        let dir = tempfile::tempdir().unwrap();
        let tag = format!("q{}", std::process::id());
        std::fs::write(dir.path().join("alloc.csv"), ALLOCATIONS.replace("TAG", &tag)).unwrap();
        std::fs::write(dir.path().join("adj.csv"), ADJUSTMENTS).unwrap();
        let (live_port, dead_port) = (free_port(), free_port());
        let live = dir.path().join("live.toml");
        let dead = dir.path().join("dead.toml");
        std::fs::write(&live, config_body(live_port, &tag)).unwrap();
        std::fs::write(&dead, config_body(dead_port, &tag)).unwrap();
        let maildir = dir.path().join("mail");
        let smtp = private_smtp(live_port, &maildir);
        Quarter { dir, live, dead, smtp, maildir }
    }

    /// The centres drop cumulative dumps of every job finished by `at` (tgcc's missing if
    /// `tgcc_missing`; one malformed idris line if `bad_line`), then a cycle runs at `at` with
    /// the wall clock frozen there.
    fn cycle(&self, at: &str, smtp_up: bool, tgcc_missing: bool, bad_line: bool) {
        let t = ts(at);
        for centre in ["idris", "tgcc"] {
            let path = self.dir.path().join(format!("{centre}.txt"));
            if centre == "tgcc" && tgcc_missing {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let mut text = HEADER.to_string();
            for (id, j) in jobs().iter().enumerate().filter(|(_, j)| j.centre == centre && j.start + 3600 <= t) {
                let cluster = if centre == "idris" { "jeanzay" } else { "irene" };
                text.push_str(&format!(
                    "{id}|{id}|{cluster}|{}|{}|user{}|{}|{}|3600|{}|cpu={}|COMPLETED\n",
                    j.partition, j.account, id % 3, j.start, j.start + 3600, j.cpus, j.cpus
                ));
            }
            if centre == "idris" && bad_line {
                text.push_str("999999|999999|jeanzay|cpu_p1|aaa|user0|yesterday|1788000000|3600|4|cpu=4|COMPLETED\n");
            }
            std::fs::write(&path, text).unwrap();
        }
        let config = if smtp_up { &self.live } else { &self.dead };
        let clock = at.trim_end_matches('Z').replace('T', " ");
        let out = Command::new("faketime")
            .args(["-f", &clock, env!("CARGO_BIN_EXE_allocwatch"), "--config", config.to_str().unwrap(), "check", "--at", at, "--format", "csv"])
            .env("TZ", "UTC")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env("ALLOCWATCH_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "check --at {at}: {}", stderr(&out));
    }

    fn report(&self, args: &[&str]) -> Output {
        let mut a = vec!["--config", self.live.to_str().unwrap(), "report", "quality"];
        a.extend_from_slice(args);
        aw(&a)
    }

    fn report_ok(&self, args: &[&str]) -> String {
        let out = self.report(args);
        assert!(out.status.success(), "report quality {args:?}: {}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    fn figures(&self, args: &[&str]) -> BTreeMap<(String, String), Option<f64>> {
        let mut a = vec!["--format", "json"];
        a.extend_from_slice(args);
        let v: serde_json::Value = serde_json::from_str(&self.report_ok(&a)).unwrap();
        v["figures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| ((f["scope_id"].as_str().unwrap().to_string(), f["indicator"].as_str().unwrap().to_string()), f["value"].as_f64()))
            .collect()
    }
}

/// Build the quarter: cycles every 10 days from 30 June to 2 October at noon. The SMTP server
/// is unreachable for the 9 August, 19 August, 28 September and 2 October cycles; tgcc's dump is
/// missing for the 9 and 19 August ones; idris's 20 July dump has one malformed line.
fn build() -> Quarter {
    let q = Quarter::new();
    let cycles: &[(&str, bool, bool, bool)] = &[
        ("2026-06-30T12:00:00Z", true, false, false), // C0, before the quarter
        ("2026-07-10T12:00:00Z", true, false, false), // C1
        ("2026-07-20T12:00:00Z", true, false, true),  // C2
        ("2026-07-30T12:00:00Z", true, false, false), // C3
        ("2026-08-09T12:00:00Z", false, true, false), // C4
        ("2026-08-19T12:00:00Z", false, true, false), // C5
        ("2026-08-29T12:00:00Z", true, false, false), // C6
        ("2026-09-08T12:00:00Z", true, false, false), // C7
        ("2026-09-18T12:00:00Z", true, false, false), // C8
        ("2026-09-28T12:00:00Z", false, false, false), // C9
        ("2026-10-02T12:00:00Z", false, false, false), // C10, after the quarter
    ];
    for (at, smtp_up, tgcc_missing, bad_line) in cycles {
        q.cycle(at, *smtp_up, *tgcc_missing, *bad_line);
    }
    q
}

#[test]
fn quarter_report_every_figure_hand_checked_reproducible_and_explained() {
    if !tools("quarter_report") {
        return;
    }
    let q = build();
    // To explore the scenario with the CLI afterwards: AW_KEEP_SCENARIO=DIR keeps a copy.
    if let Ok(keep) = std::env::var("AW_KEEP_SCENARIO") {
        std::fs::create_dir_all(&keep).unwrap();
        for e in std::fs::read_dir(q.dir.path()).unwrap().flatten().filter(|e| e.path().is_file()) {
            std::fs::copy(e.path(), Path::new(&keep).join(e.file_name())).unwrap();
        }
    }
    let figures = q.figures(&["--period", "2026-Q3"]);
    // Hand-worked figures (day d = days since 1 July; cycles at noon of d = 9, 19, …, 89):
    //
    // Hours. Pro rata of each grant held on 30 September: P1 920; P2 1000; P3 920 − 200 = 720;
    // P4 (a year) 4015 × 92/365 = 1012; P5 (1 Apr – 31 Jul) 1220 × 31/122 = 310; P6 460;
    // P7 400 → 4822. Consumed in the quarter: P1 20×92 = 1840, P2 920, P3 184, P4 920,
    // P5 5×31 = 155, P6 480, P7 30×17 = 510 → 5009. Adjustments dated in it: +365, −200.
    //
    // Standing on 1 October 00:00: P1 exhausted (1840/920), P2 on track (−8 pp), P3 under
    // (184/720, −74 pp), P4 on track (2730 vs 4015×273/365 = 3003: −6.8 pp), P5 ended under
    // (610/1220, −50 pp), P6 exhausted (+4.35 pp: within ±10), P7 exhausted (+27.5 pp).
    // End of July: P1 over (620 vs 310), P2 on track, P3, P6, P7 under (−27, −33.7, −33.7),
    // P4 on track (2120 vs 4015×212/365, −5.3), P5 ended under. End of August: P1, P6
    // exhausted, P7 over (360 vs 269.6: +22.6), P3 under, P2 and P4 on track.
    //
    // Alerts (threshold 75 % only; reminders every 7 days for over_pace and exhausted):
    // C1 P1 over_pace, orphan zzz, unmapped visu; C3 under_pace P3, P6, P7; C4 P1 threshold;
    // C5 P1 exhausted, tgcc stale_feed (2 failed pulls); C6 P6 exhausted + threshold +
    // over_pace, P7 threshold (300/400) + over_pace (+10.3 pp); C7 P7 exhausted; C8 P2
    // threshold → 16. Reminders: P1 over_pace C2–C9 (8) and exhausted C6–C9 (4), P6 over_pace
    // C7–C8 (2; it resolves at C9, +7.1 pp) and exhausted C7–C9 (3), P7 over_pace C7–C9 (3)
    // and exhausted C8–C9 (2) → 22. P5's under_pace fired on 30 June: not in the quarter.
    // Exhausted: P1 (warned 40 days ahead by over_pace), P6 (warned the same cycle: 0), P7
    // (10 days) → 2 of 3 ahead, leads 0, 10, 40: median 10, p10 0.
    //
    // Messages (one per allocation per cycle to its PI, one operations digest per cycle):
    // C1 2, C2 2, C3 5, C4 2, C5 2, C6 4, C7 4, C8 5, C9 4 → 30. C4's and C5's (SMTP down)
    // went out at C6 after a failure or being held back → 4 retried; C9's are still queued → 4.
    //
    // Feeds: idris pulled at C1–C9 (9 ok), tgcc 7 ok + 2 failed (C4, C5). Longest stretch
    // without a successful pull: idris 240 h (10 days), tgcc 720 h (30 July → 29 August).
    // Usage in core-hours: idris 1840 + 920 + 155 + 510 + 93 (zzz) + 56 (visu) = 3574, tgcc
    // 184 + 920 + 480 = 1584; orphan 93, unmapped 56.
    //
    // Forecasts scored: P1, P2, P3, P6, P7 end on 1 October (the window end; they ended with
    // 1840, 920, 184, 480, 510), P4 runs into 2027, P5 ended on 1 August with no forecast at its
    // end. Month ends with a forecast: 1 August (31 days of history) and 1 September; none on
    // 1 October, their period end. On 1 September P1 and P6 had run out: not scored. So 5 + 3 = 8
    // (idris P1 P2 P7 + P2 P7 = 5, tgcc P3 P6 + P3 = 3; CT1 P1 P3 P6 + P3 = 4, CT2 4, (none) 0).
    // Every band holds its outcome: levels of σ = 1 make them wide (a path's future hours are
    // its regime's × a factor whose P10 is 0.28 and P90 3.6). The closest calls: P6 and P7 had
    // used nothing by 1 August, so the futures that follow their history add nothing (P10 = 0),
    // and P7's P90 (the plan's 400 × 61/92 = 265 h × e^1.0 ≈ 730) is above 510; on 1 September
    // P7 had used 360 h in 12 days, and 10 of the 22 seven-day blocks of its last 28 days are
    // empty (P10 = 360 ≤ 510). → 100 % in every scope that has one.
    let expected: &[(&str, &str, Option<f64>)] = &[
        ("all", "allocations", Some(7.0)),
        ("all", "granted_hours.core", Some(4822.0)),
        ("all", "consumed_hours.core", Some(5009.0)),
        ("all", "utilisation_pct.core", Some(103.88)),
        ("all", "added_hours.core", Some(365.0)),
        ("all", "taken_back_hours.core", Some(200.0)),
        ("all", "adjustments", Some(2.0)),
        ("idris", "allocations", Some(4.0)),
        ("idris", "granted_hours.core", Some(2630.0)),
        ("idris", "consumed_hours.core", Some(3425.0)),
        ("idris", "utilisation_pct.core", Some(130.23)),
        ("tgcc", "granted_hours.core", Some(2192.0)),
        ("tgcc", "consumed_hours.core", Some(1584.0)),
        ("tgcc", "utilisation_pct.core", Some(72.26)),
        ("tgcc", "added_hours.core", Some(365.0)),
        ("tgcc", "taken_back_hours.core", Some(200.0)),
        ("CT1", "granted_hours.core", Some(2100.0)),
        ("CT1", "consumed_hours.core", Some(2504.0)),
        ("CT1", "utilisation_pct.core", Some(119.24)),
        ("CT1", "taken_back_hours.core", Some(200.0)),
        ("CT2", "granted_hours.core", Some(2412.0)),
        ("CT2", "utilisation_pct.core", Some(97.43)),
        ("CT2", "added_hours.core", Some(365.0)),
        ("(none)", "granted_hours.core", Some(310.0)),
        ("(none)", "consumed_hours.core", Some(155.0)),
        ("(none)", "utilisation_pct.core", Some(50.0)),
        ("all", "status_on_track", Some(2.0)),
        ("all", "status_over_pace", Some(0.0)),
        ("all", "status_under_pace", Some(2.0)),
        ("all", "status_exhausted", Some(3.0)),
        ("all", "status_exhausted_pct", Some(42.86)),
        ("all", "status_on_track_pct", Some(28.57)),
        ("all", "within_10pp_pct", Some(42.86)),
        ("idris", "status_exhausted", Some(2.0)),
        ("idris", "within_10pp_pct", Some(25.0)),
        ("tgcc", "within_10pp_pct", Some(66.67)),
        ("all", "status_on_track@2026-07", Some(2.0)),
        ("all", "status_over_pace@2026-07", Some(1.0)),
        ("all", "status_under_pace@2026-07", Some(4.0)),
        ("all", "status_exhausted@2026-07", Some(0.0)),
        ("all", "within_10pp_pct@2026-07", Some(28.57)),
        ("all", "status_on_track@2026-08", Some(2.0)),
        ("all", "status_over_pace@2026-08", Some(1.0)),
        ("all", "status_under_pace@2026-08", Some(1.0)),
        ("all", "status_exhausted@2026-08", Some(2.0)),
        ("all", "within_10pp_pct@2026-08", Some(33.33)),
        ("all", "status_exhausted@2026-09", Some(3.0)),
        ("all", "status_under_pace@2026-09", Some(1.0)),
        ("all", "within_10pp_pct@2026-09", Some(50.0)),
        ("all", "alerts_fired", Some(16.0)),
        ("all", "alerts_fired.threshold", Some(4.0)),
        ("all", "alerts_fired.over_pace", Some(3.0)),
        ("all", "alerts_fired.under_pace", Some(3.0)),
        ("all", "alerts_fired.checkpoint", Some(0.0)),
        ("all", "alerts_fired.exhausted", Some(3.0)),
        ("all", "alerts_fired.orphan_usage", Some(2.0)),
        ("all", "alerts_fired.stale_feed", Some(1.0)),
        ("idris", "alerts_fired", Some(10.0)),
        ("tgcc", "alerts_fired", Some(6.0)),
        ("tgcc", "alerts_fired.stale_feed", Some(1.0)),
        ("CT1", "alerts_fired", Some(8.0)),
        ("CT2", "alerts_fired", Some(5.0)),
        ("CT2", "alerts_fired.orphan_usage", None),
        ("(none)", "alerts_fired", Some(0.0)),
        ("all", "reminders", Some(22.0)),
        ("idris", "reminders", Some(17.0)),
        ("tgcc", "reminders", Some(5.0)),
        ("all", "exhausted_allocations", Some(3.0)),
        ("all", "warned_ahead_pct", Some(66.67)),
        ("all", "lead_time_median_days", Some(10.0)),
        ("all", "lead_time_p10_days", Some(0.0)),
        ("idris", "warned_ahead_pct", Some(100.0)),
        ("idris", "lead_time_median_days", Some(10.0)),
        ("tgcc", "warned_ahead_pct", Some(0.0)),
        ("CT1", "warned_ahead_pct", Some(50.0)),
        ("CT1", "lead_time_median_days", Some(0.0)),
        ("(none)", "warned_ahead_pct", None),
        ("all", "forecasts_scored", Some(8.0)),
        ("all", "forecast_coverage_pct", Some(100.0)),
        ("idris", "forecasts_scored", Some(5.0)),
        ("tgcc", "forecasts_scored", Some(3.0)),
        ("tgcc", "forecast_coverage_pct", Some(100.0)),
        ("CT1", "forecasts_scored", Some(4.0)),
        ("CT2", "forecasts_scored", Some(4.0)),
        ("(none)", "forecasts_scored", Some(0.0)),
        ("(none)", "forecast_coverage_pct", None),
        ("all", "notifications", Some(30.0)),
        ("all", "deliveries_retried", Some(4.0)),
        ("all", "deliveries_failed", Some(4.0)),
        ("idris", "notifications", Some(24.0)),
        ("tgcc", "notifications", Some(12.0)),
        ("tgcc", "deliveries_retried", Some(1.0)),
        ("tgcc", "deliveries_failed", Some(2.0)),
        ("CT1", "notifications", Some(24.0)),
        ("CT2", "notifications", Some(11.0)),
        ("CT2", "deliveries_failed", Some(2.0)),
        ("all", "pulls", Some(18.0)),
        ("all", "pulls_ok", Some(16.0)),
        ("all", "pull_success_pct", Some(88.89)),
        ("idris", "pull_success_pct", Some(100.0)),
        ("tgcc", "pulls", Some(9.0)),
        ("tgcc", "pull_success_pct", Some(77.78)),
        ("all", "longest_gap_hours", Some(720.0)),
        ("idris", "longest_gap_hours", Some(240.0)),
        ("tgcc", "longest_gap_hours", Some(720.0)),
        ("all", "rejected_lines", Some(1.0)),
        ("tgcc", "rejected_lines", Some(0.0)),
        ("all", "consumption_core_hours", Some(5158.0)),
        ("idris", "consumption_core_hours", Some(3574.0)),
        ("tgcc", "consumption_core_hours", Some(1584.0)),
        ("all", "orphan_core_hours", Some(93.0)),
        ("all", "unmapped_core_hours", Some(56.0)),
        ("all", "orphan_pct", Some(1.80)),
        ("all", "unmapped_pct", Some(1.09)),
        ("idris", "orphan_pct", Some(2.60)),
        ("idris", "unmapped_pct", Some(1.57)),
        ("tgcc", "orphan_pct", Some(0.0)),
    ];
    let mut wrong = Vec::new();
    for (scope, ind, want) in expected {
        let got = figures.get(&(scope.to_string(), ind.to_string())).unwrap_or_else(|| panic!("no figure {ind} for {scope}"));
        if got != want {
            wrong.push(format!("{scope} {ind}: got {got:?}, want {want:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The Markdown report renders, and the same store and period give the same bytes.
    let md = q.report_ok(&["--period", "2026-Q3"]);
    std::fs::write(q.dir.path().join("report-2026-Q3.md"), &md).unwrap();
    for needle in [
        "# Quality indicators — 2026-Q3",
        "- Data: complete",
        "| overall | core-hours | 7 | 4822.00 | 5009.00 | 103.88 | 365.00 | 200.00 | 2 |",
        "| overall | 2 (28.57 %) | 0 (0.00 %) | 2 (28.57 %) | 3 (42.86 %) | 42.86 |",
        "| 2026-08 | overall | 2 (33.33 %) | 1 (16.67 %) | 1 (16.67 %) | 2 (33.33 %) | 33.33 |",
        "| overall | 4 | 3 | 3 | 0 | 3 | 2 | 1 | 0 | 0 | 16 | 22 |",
        "| overall | 3 | 66.67 | 10.00 | 0.00 | 30 | 4 | 4 |",
        "| centre tgcc | 9 | 7 | 77.78 | 720.00 | 0 | 1584.00 | 0.00 | 0.00 | 0.00 | 0.00 |",
        "| committee CT2 | core-hours | 3 |",
        "| overall | 8 | 100.00 |",
        "| committee (none) | 0 | - |",
    ] {
        assert!(md.contains(needle), "missing {needle:?} in:\n{md}");
    }
    // The example in docs is this very report: a store built again from scratch gives the same
    // bytes (AW_UPDATE_EXAMPLE=1 rewrites it after a deliberate change of format).
    let example = root().join("docs/quality-report-example.md");
    if std::env::var("AW_UPDATE_EXAMPLE").is_ok_and(|v| v == "1") {
        std::fs::write(&example, &md).unwrap();
    }
    assert_eq!(std::fs::read_to_string(&example).unwrap(), md, "docs/quality-report-example.md differs from the report of this scenario");
    for format in ["md", "csv", "json"] {
        let a = q.report_ok(&["--period", "2026-Q3", "--format", format]);
        let b = q.report_ok(&["--period", "2026-Q3", "--format", format]);
        assert_eq!(a, b, "{format} differs between two runs");
    }
    let csv = q.report_ok(&["--period", "2026-Q3", "--format", "csv"]);
    assert!(csv.starts_with("period,scope,scope_id,indicator,value,unit\n"), "{csv}");
    assert!(csv.contains("2026-Q3,centre,tgcc,longest_gap_hours,720.00,hours\n"), "{csv}");
    assert!(csv.contains("2026-Q3,committee,CT2,alerts_fired.stale_feed,,count\n"), "{csv}");

    // --explain lists what is behind a figure.
    let explain = |ind: &str| -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(&q.report_ok(&["--period", "2026-Q3", "--explain", ind, "--format", "json"])).unwrap();
        v["rows"].as_array().unwrap().clone()
    };
    let retried = explain("deliveries_retried");
    assert_eq!(retried.len(), 4, "{retried:#?}");
    assert!(retried.iter().all(|r| r["state"] == "sent" && (r["attempts"] != "1" || r["deferrals"] != "0")), "{retried:#?}");
    let failed = explain("deliveries_failed");
    assert_eq!(failed.len(), 4, "{failed:#?}");
    assert!(failed.iter().all(|r| r["state"] == "pending" && r["at"] == "2026-09-28T12:00:00Z"), "{failed:#?}");
    let pulls = explain("pull_success_pct");
    assert_eq!(pulls.len(), 18);
    let bad: Vec<_> = pulls.iter().filter(|p| p["ok"] == "no").collect();
    assert_eq!(bad.len(), 2);
    assert!(bad.iter().all(|p| p["centre"] == "tgcc" && p["error"].as_str().unwrap().contains("tgcc.txt")), "{bad:#?}");
    let leads = explain("lead_time_median_days");
    let lead = |p: &str| leads.iter().find(|r| r["subject"] == format!("{p}/cpu/2026-07-01")).map(|r| r["lead_days"].clone());
    assert_eq!(lead("idris/P1"), Some("40.00".into()), "{leads:#?}");
    assert_eq!(lead("tgcc/P6"), Some("0.00".into()), "{leads:#?}");
    assert_eq!(lead("idris/P7"), Some("10.00".into()), "{leads:#?}");
    let july = explain("status_under_pace@2026-07");
    let mut projects: Vec<&str> = july.iter().map(|r| r["project"].as_str().unwrap()).collect();
    projects.sort();
    assert_eq!(projects, ["P3", "P5", "P6", "P7"]);
    let orphan = explain("orphan_pct");
    assert_eq!(orphan.len(), 1);
    assert_eq!((orphan[0]["account"].as_str(), orphan[0]["core_hours"].as_str()), (Some("zzz"), Some("93.00")));
    // The forecasts scored, each with its band, the outcome and whether the band held it.
    let scored = explain("forecast_coverage_pct");
    let field = |r: &serde_json::Value, k: &str| r[k].as_str().unwrap().to_string();
    let rows: Vec<(String, String, String, String)> =
        scored.iter().map(|r| (field(r, "snapshot"), field(r, "project"), field(r, "end_consumed_hours"), field(r, "covered"))).collect();
    let want: Vec<(String, String, String, String)> = [
        ("2026-07", "P1", "1840.00"),
        ("2026-07", "P2", "920.00"),
        ("2026-07", "P3", "184.00"),
        ("2026-07", "P6", "480.00"),
        ("2026-07", "P7", "510.00"),
        ("2026-08", "P2", "920.00"),
        ("2026-08", "P3", "184.00"),
        ("2026-08", "P7", "510.00"),
    ]
    .iter()
    .map(|(m, p, h)| (m.to_string(), p.to_string(), h.to_string(), "yes".to_string()))
    .collect();
    assert_eq!(rows, want, "{scored:#?}");
    let num = |r: &serde_json::Value, k: &str| field(r, k).parse::<f64>().unwrap();
    assert!(scored.iter().all(|r| num(r, "p10_end_hours") <= num(r, "end_consumed_hours") && num(r, "end_consumed_hours") <= num(r, "p90_end_hours")), "{scored:#?}");
    let p10 = |m: &str, p: &str| scored.iter().find(|r| r["snapshot"] == m && r["project"] == p).map(|r| field(r, "p10_end_hours"));
    assert_eq!((p10("2026-07", "P6"), p10("2026-07", "P7"), p10("2026-08", "P7")), (Some("0.00".into()), Some("0.00".into()), Some("360.00".into())));
    // The bands are the forecasts `check` makes at those instants (the cycles' streaming
    // reconciliation, not the report's preloaded view).
    {
        let config = allocwatch::config::Config::load(&q.live).unwrap();
        let grants = allocwatch::domain::grants::Grants::load(&config).unwrap();
        let mut store = allocwatch::store::Store::open(&config.store_path).unwrap();
        for (month, at) in [("2026-07", "2026-08-01T00:00:00Z"), ("2026-08", "2026-09-01T00:00:00Z")] {
            let rec = allocwatch::reconcile::reconcile_all(&config, &grants, &mut store, ts(at)).unwrap();
            for r in scored.iter().filter(|r| r["snapshot"] == month) {
                let a = rec.allocations.iter().find(|a| a.project == field(r, "project")).unwrap();
                let f = a.forecast.as_ref().unwrap_or_else(|| panic!("no forecast for {} at {at}", a.project));
                let fixed = allocwatch::domain::quality::fixed;
                assert_eq!((fixed(f.end_consumed.at(0.1)), fixed(f.end_consumed.at(0.9))), (field(r, "p10_end_hours"), field(r, "p90_end_hours")), "{} at {at}", a.project);
            }
        }
    }
    let md = q.report_ok(&["--period", "2026-Q3", "--explain", "rejected_lines"]);
    assert!(md.contains("# rejected_lines — 2026-Q3") && md.contains("| 1 |"), "{md}");

    // A month, and one centre.
    let aug = q.figures(&["--period", "2026-08"]);
    let g = |s: &str, i: &str| aug.get(&(s.to_string(), i.to_string())).cloned().flatten();
    assert_eq!(g("tgcc", "pulls"), Some(3.0));
    assert_eq!(g("tgcc", "pulls_ok"), Some(1.0));
    // 1 August 00:00 → 29 August 12:00.
    assert_eq!(g("tgcc", "longest_gap_hours"), Some(684.0));
    assert_eq!(g("all", "alerts_fired"), Some(8.0));
    assert_eq!(g("all", "status_exhausted"), Some(2.0));
    // No allocation's period ends in August: no forecast to score.
    assert_eq!((g("all", "forecasts_scored"), g("all", "forecast_coverage_pct")), (Some(0.0), None));
    let tgcc = q.figures(&["--period", "2026-Q3", "--centre", "tgcc"]);
    assert!(!tgcc.contains_key(&("all".to_string(), "allocations".to_string())), "no overall scope with --centre");
    assert_eq!(tgcc.get(&("CT1".to_string(), "consumed_hours.core".to_string())), Some(&Some(664.0)));

    // Bad requests exit 2 with a reason.
    for (args, why) in [
        (vec!["--period", "2026-Q5"], "not a period"),
        (vec!["--period", "2027-Q1"], "starts after the store's latest data"),
        (vec!["--period", "2026-Q3", "--explain", "nonsense"], "unknown indicator"),
        (vec!["--period", "2026-Q3", "--centre", "nowhere"], "nowhere"),
    ] {
        let out = q.report(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
    }
    // Mail actually went through the real server, and the retried ones arrived once.
    let delivered = std::fs::read_dir(q.maildir.join("new")).unwrap().count();
    // C0 2 + (C1 … C8 except nothing lost) 30 − 4 still queued.
    assert_eq!(delivered, 2 + 30 - 4);
}

#[test]
fn monthly_run_queues_quality_points_once_and_they_reach_victoriametrics() {
    if !tools("monthly_run") {
        return;
    }
    let q = build();
    // The same store with an [influxdb] section: VictoriaMetrics when tests/run.sh started
    // it, else a port where nothing listens (the points then wait in the outbox).
    let vm = std::env::var("AW_VM_URL").ok();
    if vm.is_none() && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("monthly_run: CI=true but AW_VM_URL is not set: run tests/run.sh");
    }
    let url = vm.clone().unwrap_or_else(|| format!("http://127.0.0.1:{}", free_port()));
    let cfg = q.dir.path().join("influx.toml");
    let base = std::fs::read_to_string(&q.live).unwrap();
    std::fs::write(&cfg, format!("{base}\n[influxdb]\nurl = \"{url}\"\norg = \"allocwatch\"\nbucket = \"quality\"\ntoken_env = \"AW_TEST_TOKEN\"\ntimeout_seconds = 5\n")).unwrap();
    std::env::set_var("AW_TEST_TOKEN", "x");
    let config = allocwatch::config::Config::load(&cfg).unwrap();
    let grants = allocwatch::domain::grants::Grants::load(&config).unwrap();
    let mut store = allocwatch::store::Store::open(&config.store_path).unwrap();
    let now = ts("2026-10-02T13:00:00Z");
    let before = store.outbox_depth().unwrap() as i64;
    let first = allocwatch::quality::run_scheduled(&config, &grants, &mut store, now).unwrap();
    let allocwatch::quality::Scheduled::Queued { period, points } = first else { panic!("{first:?}") };
    assert_eq!(period, "2026-09");
    let lines: Vec<String> = store.outbox_peek(usize::MAX / 2).unwrap().into_iter().map(|(_, l)| l).filter(|l| l.starts_with("quality,")).collect();
    assert_eq!(lines.len() as u64, points);
    let after = store.outbox_depth().unwrap() as i64;
    assert_eq!(after - before, points as i64);
    // 1 October 2026 00:00 UTC, the period end.
    let end_ns = ts("2026-10-01T00:00:00Z") * 1_000_000_000;
    // September: P1 20 × 30 + P2 10 × 30 + P7 30 × 5 = 1050 h at idris.
    let want = format!("quality,indicator=consumed_hours.core,period=2026-09,scope=centre,scope_id=idris value=1050 {end_ns}");
    assert!(lines.contains(&want), "{want} not in {lines:#?}");
    assert!(lines.iter().any(|l| l.starts_with("quality,indicator=pulls,period=2026-09,scope=overall,scope_id=all value=")), "{lines:#?}");
    // Figures without a meaning are not written.
    assert!(!lines.iter().any(|l| l.contains("indicator=alerts_fired.stale_feed,period=2026-09,scope=committee")), "{lines:#?}");
    // The month is queued once, however often the daemon calls.
    let again = allocwatch::quality::run_scheduled(&config, &grants, &mut store, now + 3600).unwrap();
    assert_eq!(again, allocwatch::quality::Scheduled::AlreadyQueued { period: "2026-09".into() });
    drop(store);
    // The same figures as the printed report.
    let out = aw(&["--config", q.live.to_str().unwrap(), "report", "quality", "--period", "2026-09", "--format", "csv"]);
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(csv.contains("2026-09,centre,idris,consumed_hours.core,1050.00,core-hours\n"), "{csv}");

    let Some(vm) = vm else {
        eprintln!("SKIPPED the VictoriaMetrics half of monthly_run: AW_VM_URL not set");
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_allocwatch"))
        .args(["--config", cfg.to_str().unwrap(), "outbox", "flush"])
        .env("AW_TEST_TOKEN", "x")
        .env("ALLOCWATCH_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "outbox flush: {}", stderr(&out));
    let query = "quality_value{period=\"2026-09\",scope=\"centre\",scope_id=\"idris\",indicator=\"consumed_hours.core\"}";
    let got = wait_for(30, "the quality point in VictoriaMetrics", || {
        let _ = Command::new("curl").args(["-sS", "--max-time", "10", &format!("{vm}/internal/force_flush")]).output();
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-G", &format!("{vm}/api/v1/export"), "--data-urlencode", &format!("match[]={query}")])
            .output()
            .ok()?;
        let body = String::from_utf8(out.stdout).ok()?;
        let line = body.lines().find(|l| !l.trim().is_empty())?;
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        Some((v["values"][0].as_f64()?, v["timestamps"][0].as_i64()?))
    });
    assert_eq!(got, (1050.0, ts("2026-10-01T00:00:00Z") * 1000));
}

#[test]
fn periods_are_each_centres_local_days() {
    // A Paris centre: September is 31 August 22:00 UTC → 30 September 22:00 UTC.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("alloc.csv"),
        "project,centre,resource,period_start,period_end,granted_hours,accounts\nP1,idris,cpu,2026-09-01,2026-10-01,600,aaa\n",
    )
    .unwrap();
    let line = |id: u32, start: &str, end: &str, cpus: u32| {
        let (s, e) = (ts(start), ts(end));
        format!("{id}|{id}|jeanzay|cpu_p1|aaa|u|{s}|{e}|{}|{cpus}|cpu={cpus}|COMPLETED\n", e - s)
    };
    let dump = format!(
        "{HEADER}{}{}{}",
        // 31 August 23:00–23:30 Paris: August (no allocation then: orphan).
        line(1, "2026-08-31T21:00:00Z", "2026-08-31T21:30:00Z", 10),
        // 1 September 00:30–01:30 Paris: September.
        line(2, "2026-08-31T22:30:00Z", "2026-08-31T23:30:00Z", 10),
        // 30 September 23:30 → 1 October 00:30 Paris: half in each month.
        line(3, "2026-09-30T21:30:00Z", "2026-09-30T22:30:00Z", 10),
    );
    std::fs::write(dir.path().join("dump.txt"), dump).unwrap();
    let cfg = write_config(
        dir.path(),
        "[allocations]\nfiles = [\"alloc.csv\"]\n[[centre]]\nid = \"idris\"\ntimezone = \"Europe/Paris\"\nclusters = [\"jeanzay\"]\n\
         [[centre.billing]]\nresource = \"cpu\"\npartitions = [\"cpu_p1\"]\nunit = \"cpu\"\n",
    );
    let c = cfg.to_str().unwrap();
    ok(&["--config", c, "import", "--centre", "idris", "--format", "sacct", dir.path().join("dump.txt").to_str().unwrap()]);
    ok(&["--config", c, "check", "--at", "2026-10-05T00:00:00Z", "--no-pull"]);
    let report = |period: &str, complete: bool| -> BTreeMap<String, Option<f64>> {
        let v: serde_json::Value = serde_json::from_str(&ok(&["--config", c, "report", "quality", "--period", period, "--format", "json"])).unwrap();
        assert_eq!(v["complete"], complete, "{v}");
        if !complete {
            assert_eq!(v["as_of"], "2026-10-05T00:00:00Z", "the latest reconciliation: {v}");
        }
        v["figures"].as_array().unwrap().iter().filter(|f| f["scope"] == "overall").map(|f| (f["indicator"].as_str().unwrap().to_string(), f["value"].as_f64())).collect()
    };
    let sep = report("2026-09", true);
    assert_eq!(sep["consumed_hours.core"], Some(15.0), "10 h on 1 September + 5 h of the last evening");
    assert_eq!(sep["consumption_core_hours"], Some(15.0));
    assert_eq!(sep["orphan_core_hours"], Some(0.0));
    assert_eq!(sep["granted_hours.core"], Some(600.0));
    assert_eq!(sep["utilisation_pct.core"], Some(2.5));
    // Ended with 2.5 % used: under pace.
    assert_eq!(sep["status_under_pace"], Some(1.0));
    let aug = report("2026-08", true);
    assert_eq!(aug["allocations"], Some(0.0));
    assert_eq!(aug["consumption_core_hours"], Some(5.0));
    assert_eq!(aug["orphan_pct"], Some(100.0));
    // October is not over: figures up to the latest reconciliation.
    let oct = report("2026-10", false);
    assert_eq!(oct["orphan_core_hours"], Some(5.0), "the last half hour is October's");
}

/// Measurement for README ("Quality indicators"): report time on the CEA Curie trace (312,826
/// jobs) with 129 allocations and 37 weekly cycles of alerts. Needs `../shared`.
/// `cargo test --release --test quality -- --ignored --nocapture report_speed`
#[test]
#[ignore = "measurement: cargo test --release --test quality -- --ignored --nocapture report_speed"]
fn report_speed_on_the_curie_trace() {
    let Some(data) = shared_data("report_speed") else { return };
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(root().join("tests/fixtures/curie.toml")).unwrap().replace("path = \"curie.sqlite\"", "path = \"store.sqlite\"");
    let cfg = dir.path().join("curie.toml");
    std::fs::write(&cfg, &base).unwrap();
    let c = cfg.to_str().unwrap();
    let trace = data.join("traces/CEA-Curie-2011-2.1-cln.swf.gz");
    ok(&["--config", c, "import", "--centre", "tgcc", "--format", "swf", trace.to_str().unwrap()]);
    // Allocations as in the replay test: each group's thin-node use × 0.6 … 1.5.
    let rows: Vec<serde_json::Value> = serde_json::from_str(&ok(&["--config", c, "usage", "--from", "2012-02-01", "--to", "2012-10-18", "--format", "json"])).unwrap();
    let mut per: BTreeMap<u64, f64> = BTreeMap::new();
    for r in rows.iter().filter(|r| r["resource"] == "cpu-thin") {
        *per.entry(r["account"].as_str().unwrap().parse().unwrap()).or_default() += r["charged_hours"].as_f64().unwrap();
    }
    let factors = [0.6, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5];
    let mut csv = String::from("project,centre,resource,period_start,period_end,granted_hours,accounts,pi,members,committee,profile\n");
    for (i, (group, hours)) in per.iter().filter(|(_, h)| **h >= 1000.0).enumerate() {
        csv.push_str(&format!("CURIE-G{group},tgcc,cpu-thin,2012-02-01,2012-10-18,{:.0},{group},pi-{group}@curie.example,,CT{},\n", hours * factors[i % factors.len()], i % 5));
    }
    std::fs::write(dir.path().join("alloc.csv"), csv).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "{base}\n[allocations]\nfiles = [\"alloc.csv\"]\n[alerts.email]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             from = \"allocwatch@tgcc.example\"\n[alerts.operations]\nemails = [\"ops@tgcc.example\"]\ndigest = true\n",
            free_port()
        ),
    )
    .unwrap();
    let start = ts("2012-02-03T12:00:00Z");
    for week in 0..37 {
        let at = jiff::Timestamp::from_second(start + week * 7 * 86400).unwrap().to_string();
        ok(&["--config", c, "check", "--at", &at, "--no-pull", "--format", "csv"]);
    }
    for period in ["2012-Q2", "2012"] {
        let mut best = f64::MAX;
        let mut first = None;
        for _ in 0..3 {
            let t0 = std::time::Instant::now();
            let md = ok(&["--config", c, "report", "quality", "--period", period]);
            best = best.min(t0.elapsed().as_secs_f64());
            assert_eq!(first.get_or_insert_with(|| md.clone()), &md, "same store, same bytes");
        }
        let v: serde_json::Value = serde_json::from_str(&ok(&["--config", c, "report", "quality", "--period", period, "--format", "json"])).unwrap();
        let fig = |i: &str| v["figures"].as_array().unwrap().iter().find(|f| f["scope"] == "overall" && f["indicator"] == i).map(|f| f["value"].clone());
        println!(
            "report quality --period {period}: best of 3 {best:.2} s (process start included); {} allocations, {} alerts, {} notifications, {} exhausted, warned ahead {}",
            fig("allocations").unwrap(),
            fig("alerts_fired").unwrap(),
            fig("notifications").unwrap(),
            fig("exhausted_allocations").unwrap(),
            fig("warned_ahead_pct").unwrap()
        );
    }
}
