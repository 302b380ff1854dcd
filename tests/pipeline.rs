//! End-to-end: accounting dumps → ledger → reconciliation, through the real binary, on a
//! hand-checked scenario with exact expected numbers.

mod common;
use common::*;
use std::path::Path;

const CONFIG: &str = r#"
[allocations]
files = ["alloc.csv"]
adjustments = ["adj.csv"]

[[centre]]
id = "idris"
timezone = "UTC"
clusters = ["jeanzay"]
[[centre.billing]]
resource = "cpu-skl"
partitions = ["cpu_p1"]
unit = "cpu"
[[centre.billing]]
resource = "gpu-v100"
partitions = ["gpu_p13"]
unit = "gpu"
[[centre.billing]]
resource = "cpu-bill"
partitions = ["cpu_bill"]
unit = "billing"
[[centre.billing]]
resource = "cpu-rome"
partitions = ["rome"]
unit = "node"
cores_per_node = 128
multiplier = 0.5
"#;

// Period 2026-01-01 .. 2026-04-11 is exactly 100 days.
const ALLOC: &str = "project,centre,resource,period_start,period_end,granted_hours,accounts,pi,members,committee,profile
A0150612345,idris,cpu-skl,2026-01-01,2026-04-11,1000,ABC;a0150612345,pi@lab.fr,m1@lab.fr;m2@lab.fr,CT1,
A0160701234,idris,cpu-bill,2026-01-01,2026-04-11,500,def,pi2@lab.fr,,CT2,
A0160701234,idris,cpu-rome,2026-01-01,2026-04-11,5000,def,pi2@lab.fr,,CT2,
";

const ADJ: &str = "date,project,centre,resource,hours,kind,reason
2026-01-15,A0150612345,idris,cpu-skl,200,topup,mid-term review
2026-02-01,A0150612345,idris,cpu-skl,-100,withdrawal,checkpoint
";

fn t(s: &str) -> i64 {
    s.parse::<jiff::Timestamp>().unwrap().as_second()
}

/// The first dump: every kind of record the issue lists, plus two malformed lines.
fn dump1() -> String {
    let h = "JobID|JobIDRaw|Cluster|Partition|Account|User|Start|End|ElapsedRaw|AllocCPUS|AllocTRES|State\n";
    let d10 = t("2026-01-10T00:00:00Z");
    let mut s = String::from(h);
    #[allow(clippy::too_many_arguments)]
    fn row(id: &str, raw: u64, part: &str, acc: &str, start: i64, end: Option<i64>, el: i64, cpus: u64, tres: &str, state: &str) -> String {
        let e = end.map(|e| e.to_string()).unwrap_or_else(|| "Unknown".into());
        format!("{id}|{raw}|jeanzay|{part}|{acc}|alice|{start}|{e}|{el}|{cpus}|{tres}|{state}\n")
    }
    // 4 CPUs × 10 h = 40 h
    s += &row("10", 10, "cpu_p1", "abc", d10, Some(d10 + 36000), 36000, 4, "billing=4,cpu=4,mem=1G,node=1", "COMPLETED");
    // array tasks: 2 × (2 CPUs × 5 h) = 20 h
    s += &row("11_1", 12, "cpu_p1", "abc", d10, Some(d10 + 18000), 18000, 2, "cpu=2,node=1", "COMPLETED");
    s += &row("11_2", 13, "cpu_p1", "abc", d10, Some(d10 + 18000), 18000, 2, "cpu=2,node=1", "COMPLETED");
    // heterogeneous job components: 2 × (1 CPU × 10 h) = 20 h
    s += &row("20+0", 20, "cpu_p1", "A0150612345", d10, Some(d10 + 36000), 36000, 1, "cpu=1,node=1", "COMPLETED");
    s += &row("20+1", 21, "cpu_p1", "A0150612345", d10, Some(d10 + 36000), 36000, 1, "cpu=1,node=1", "COMPLETED");
    // requeued: two runs of the same JobIDRaw, 4 CPUs × 2 h each = 16 h
    let d11 = t("2026-01-11T00:00:00Z");
    s += &row("30", 30, "cpu_p1", "abc", d11, Some(d11 + 7200), 7200, 4, "cpu=4,node=1", "REQUEUED");
    s += &row("30", 30, "cpu_p1", "abc", d11 + 10800, Some(d11 + 18000), 7200, 4, "cpu=4,node=1", "COMPLETED");
    // crosses the period start: 8 h × 4 CPUs, half of it (16 h) in the period
    let ny = t("2026-01-01T00:00:00Z");
    s += &row("40", 40, "cpu_p1", "abc", ny - 14400, Some(ny + 14400), 28800, 4, "cpu=4,node=1", "COMPLETED");
    // never started, zero elapsed, a step
    s.push_str("50|50|jeanzay|cpu_p1|abc|alice|Unknown|Unknown|0|4||PENDING\n");
    s += &row("51", 51, "cpu_p1", "abc", d10, Some(d10), 0, 4, "cpu=4,node=1", "FAILED");
    s.push_str(&format!("10.batch|10.batch|jeanzay||abc||{d10}|{}|36000|4|cpu=4|COMPLETED\n", d10 + 36000));
    // running: 2 CPUs, 5 h so far = 10 h provisional
    let d20 = t("2026-01-20T00:00:00Z");
    s += &row("60", 60, "cpu_p1", "abc", d20, None, 18000, 2, "cpu=2,node=1", "RUNNING");
    // orphan (no allocation for zzz), unmapped partition, GPU on an account without GPU hours
    s += &row("70", 70, "cpu_p1", "zzz", t("2026-01-15T00:00:00Z"), Some(t("2026-01-16T00:00:00Z")), 86400, 1, "cpu=1", "COMPLETED");
    s += &row("71", 71, "visu", "abc", d10, Some(d10 + 10800), 10800, 1, "cpu=1", "COMPLETED");
    s += &row("72", 72, "gpu_p13", "abc", d10, Some(d10 + 3600), 3600, 1, "cpu=10,gres/gpu=2,gres/gpu:v100=2", "COMPLETED");
    // billing unit: 2 CPUs billed 6 × 10 h = 60 h; node unit: 2 nodes × 1 h × 128 × 0.5 = 128 h
    s += &row("80", 80, "cpu_bill", "def", d10, Some(d10 + 36000), 36000, 2, "billing=6,cpu=2,node=1", "COMPLETED");
    s += &row("81", 81, "rome", "def", d10, Some(d10 + 3600), 3600, 256, "billing=256,cpu=256,node=2", "COMPLETED");
    // malformed
    s.push_str("this is not sacct output\n");
    s.push_str("90|90|jeanzay|cpu_p1|abc|alice|yesterday|Unknown|0|1||RUNNING\n");
    s
}

/// The second dump: the running job has ended (8 h), job 10 seen again unchanged.
fn dump2() -> String {
    let d10 = t("2026-01-10T00:00:00Z");
    let d20 = t("2026-01-20T00:00:00Z");
    format!(
        "JobID|JobIDRaw|Cluster|Partition|Account|User|Start|End|ElapsedRaw|AllocCPUS|AllocTRES|State\n\
         10|10|jeanzay|cpu_p1|abc|alice|{d10}|{}|36000|4|billing=4,cpu=4,mem=1G,node=1|COMPLETED\n\
         60|60|jeanzay|cpu_p1|abc|alice|{d20}|{}|28800|2|cpu=2,node=1|COMPLETED\n",
        d10 + 36000,
        d20 + 28800
    )
}

fn setup(dir: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("alloc.csv"), ALLOC).unwrap();
    std::fs::write(dir.join("adj.csv"), ADJ).unwrap();
    std::fs::write(dir.join("dump1.txt"), dump1()).unwrap();
    std::fs::write(dir.join("dump2.txt"), dump2()).unwrap();
    write_config(dir, CONFIG)
}

fn import(cfg: &Path, file: &Path) -> std::process::Output {
    aw(&["--config", cfg.to_str().unwrap(), "import", "--centre", "idris", "--format", "sacct", file.to_str().unwrap()])
}

#[test]
fn scenario_exact_figures_through_two_dumps() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path());
    let out = import(&cfg, &dir.path().join("dump1.txt"));
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let err = stderr(&out);
    assert!(stdout.contains("15 records (15 new, 0 replaced, 0 unchanged), 2 rejected lines, 1 steps skipped, 1 never started"), "{stdout}");
    assert!(err.contains("dump1.txt:19: expected 12 fields, found 1"), "{err}");
    assert!(err.contains("dump1.txt:20: field Start: `yesterday` is not a time"), "{err}");

    // After the first dump, the running job counts 10 provisional hours.
    let rows = check_json(&cfg, &["--at", "2026-01-21T00:00:00Z"]);
    let a = find(&rows, "A0150612345", "cpu-skl");
    assert_eq!(f(a, "consumed_hours"), 40.0 + 20.0 + 20.0 + 16.0 + 16.0 + 10.0);

    let out = import(&cfg, &dir.path().join("dump2.txt"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 records (0 new, 1 replaced, 1 unchanged)"), "{}", String::from_utf8_lossy(&out.stdout));
    // Re-importing the first dump changes nothing: its provisional record of job 60 must not
    // undo the final one, and every other record is identical.
    let out = import(&cfg, &dir.path().join("dump1.txt"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("15 records (0 new, 0 replaced, 15 unchanged)"), "{}", String::from_utf8_lossy(&out.stdout));

    let rows = check_json(&cfg, &["--at", "2026-01-21T00:00:00Z"]);
    assert_eq!(rows.len(), 3);
    let a = find(&rows, "A0150612345", "cpu-skl");
    assert_eq!(a["centre"], "idris");
    assert_eq!(a["period_start"], "2026-01-01");
    assert_eq!(a["period_end"], "2026-04-11");
    assert_eq!(f(a, "granted_hours"), 1200.0); // top-up dated 01-15 applies, withdrawal of 02-01 not yet
    assert_eq!(f(a, "consumed_hours"), 128.0);
    assert_eq!(f(a, "expected_hours"), 240.0); // 20 of 100 days × 1200
    assert_eq!(f(a, "remaining_hours"), 1072.0);
    assert!((f(a, "consumed_pct") - 128.0 / 12.0).abs() < 1e-9);
    assert!((f(a, "drift_pp") - (128.0 - 240.0) / 12.0).abs() < 1e-9);
    assert_eq!(f(a, "burn_rate_hours_per_day"), 112.0 / 14.0); // job 40's Jan 1 share is outside the window
    assert!(a["projected_exhaustion"].is_null());
    assert_eq!(f(a, "projected_unused_hours"), 1072.0 - 8.0 * 80.0);
    assert_eq!(a["status"], "on_track"); // −9.3 pp, and only 20 % of the period elapsed

    let b = find(&rows, "A0160701234", "cpu-bill");
    assert_eq!(f(b, "consumed_hours"), 60.0);
    let r = find(&rows, "A0160701234", "cpu-rome");
    assert_eq!(f(r, "consumed_hours"), 128.0);

    // After the withdrawal date the grant is 1100.
    let rows = check_json(&cfg, &["--at", "2026-02-05T00:00:00Z"]);
    assert_eq!(f(find(&rows, "A0150612345", "cpu-skl"), "granted_hours"), 1100.0);
    // Before the period: not started; after it: ended.
    let rows = check_json(&cfg, &["--at", "2025-12-31T23:00:00Z"]);
    assert_eq!(find(&rows, "A0150612345", "cpu-skl")["status"], "not_started");
    let rows = check_json(&cfg, &["--at", "2026-05-01T00:00:00Z"]);
    assert_eq!(find(&rows, "A0150612345", "cpu-skl")["status"], "ended");
    // Mid-day instant: the partial day counts exactly (job 10 runs 00:00–10:00 on Jan 10).
    let rows = check_json(&cfg, &["--at", "2026-01-10T05:00:00Z"]);
    let mid = f(find(&rows, "A0150612345", "cpu-skl"), "consumed_hours");
    // job 40's 16 h + job 10 (4 CPU × 5 h) + arrays (2 × 2 × 5 h) + het (2 × 1 × 5 h)
    assert_eq!(mid, 16.0 + 20.0 + 20.0 + 10.0);

    // The table shows orphan and unmapped usage.
    let table = ok(&["--config", cfg.to_str().unwrap(), "check", "--at", "2026-01-21T00:00:00Z"]);
    assert!(table.contains("Orphan usage"), "{table}");
    let orphan = table.lines().find(|l| l.contains(" zzz ")).expect("orphan row for zzz");
    assert!(orphan.contains("cpu-skl") && orphan.trim_end().ends_with("24.0"), "{orphan}");
    let gpu = table.lines().find(|l| l.contains("gpu_p13")).expect("orphan GPU row");
    assert!(gpu.trim_end().ends_with("2.0"), "{gpu}");
    let unmapped = table.lines().find(|l| l.contains("visu")).expect("unmapped row");
    assert!(unmapped.trim_end().ends_with("3.0"), "{unmapped}");
}

#[test]
fn usage_apportions_to_the_window_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path());
    assert!(import(&cfg, &dir.path().join("dump1.txt")).status.success());
    let c = cfg.to_str().unwrap();
    // Only the 2026-01-01 part of job 40: 4 CPUs × 4 h.
    let out = ok(&["--config", c, "usage", "--from", "2026-01-01", "--to", "2026-01-02", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["account"], "abc");
    assert_eq!(rows[0]["jobs"], 1);
    assert_eq!(rows[0]["cpu_seconds"], 4 * 4 * 3600);
    assert_eq!(rows[0]["charged_hours"], 16.0);
    assert_eq!(rows[0]["resource"], "cpu-skl");
    // By day over the whole of December 31 and January 1: two rows for job 40.
    let out = ok(&["--config", c, "usage", "--from", "2025-12-31", "--to", "2026-01-02", "--group-by", "day,user", "--format", "csv"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "centre,cluster,account,partition,user,day,jobs,cpu_seconds,gpu_seconds,billing_seconds,resource,charged_hours");
    assert_eq!(lines[1], "idris,jeanzay,abc,cpu_p1,alice,2025-12-31,1,57600,0,57600,cpu-skl,16");
    assert_eq!(lines[2], "idris,jeanzay,abc,cpu_p1,alice,2026-01-01,1,57600,0,57600,cpu-skl,16");
    // GPU seconds come from gres/gpu (the untyped count, not doubled by the typed one).
    let out = ok(&["--config", c, "usage", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let gpu = rows.iter().find(|r| r["partition"] == "gpu_p13").unwrap();
    assert_eq!(gpu["gpu_seconds"], 2 * 3600);
    assert_eq!(gpu["cpu_seconds"], 10 * 3600);
    let visu = rows.iter().find(|r| r["partition"] == "visu").unwrap();
    assert!(visu["resource"].is_null() && visu["charged_hours"].is_null());
}

#[test]
fn bad_inputs_exit_2_naming_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path());
    let c = cfg.to_str().unwrap();
    // Header-less dump without --fields.
    let nohdr = dir.path().join("nohdr.txt");
    std::fs::write(&nohdr, "1|1|jeanzay|cpu_p1|abc\n").unwrap();
    let out = import(&cfg, &nohdr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nohdr.txt:1: the first line is not a sacct header"), "{}", stderr(&out));
    // Header lacking needed columns.
    std::fs::write(&nohdr, "JobID|JobName|Start\n1|x|0\n").unwrap();
    let out = import(&cfg, &nohdr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("sacct columns lack End, Account"), "{}", stderr(&out));
    // Missing file.
    let out = import(&cfg, &dir.path().join("absent.txt"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("absent.txt"), "{}", stderr(&out));
    // Unknown centre.
    let out = aw(&["--config", c, "import", "--centre", "nowhere", "--format", "sacct", nohdr.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no centre \"nowhere\" (known: idris)"), "{}", stderr(&out));
    // A bad allocation line names file, line and column.
    std::fs::write(dir.path().join("alloc.csv"), ALLOC.replace("2026-04-11,500", "2026-04-31,500")).unwrap();
    let out = aw(&["--config", c, "config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("alloc.csv:3: column period_end: `2026-04-31` is not a date"), "{}", stderr(&out));
    // Overlapping allocations of one account on one resource are refused.
    std::fs::write(
        dir.path().join("alloc.csv"),
        format!("{ALLOC}A0999,idris,cpu-skl,2026-03-01,2026-06-01,10,abc,p@x.fr,,CT1,\n"),
    )
    .unwrap();
    let out = aw(&["--config", c, "config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("overlaps A0150612345"), "{}", stderr(&out));
    // An adjustment for no allocation.
    std::fs::write(dir.path().join("alloc.csv"), ALLOC).unwrap();
    std::fs::write(dir.path().join("adj.csv"), format!("{ADJ}2027-01-01,A0150612345,idris,cpu-skl,5,topup,late\n")).unwrap();
    let out = aw(&["--config", c, "config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("adj.csv:4: column date: no allocation of A0150612345 on idris/cpu-skl whose period contains 2027-01-01"), "{}", stderr(&out));
    // A config error names the key.
    std::fs::write(&cfg, "[store]\npath = 3\n").unwrap();
    let out = aw(&["--config", c, "config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("allocwatch.toml") && stderr(&out).contains("path"), "{}", stderr(&out));
    // --at that is not an instant.
    let cfg = setup(dir.path());
    let out = aw(&["--config", cfg.to_str().unwrap(), "check", "--at", "soon"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn config_check_reports_counts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path());
    let out = ok(&["--config", cfg.to_str().unwrap(), "config", "check"]);
    assert!(out.contains("OK — 1 centres, 3 allocations, 2 adjustments"), "{out}");
}

#[test]
fn check_pulls_configured_file_sources_once() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let cfg = write_config(
        dir.path(),
        &CONFIG.replace(
            "clusters = [\"jeanzay\"]",
            "clusters = [\"jeanzay\"]\n[[centre.source]]\nkind = \"files\"\nformat = \"sacct\"\npaths = [\"dump1.txt\", \"dump2.txt\"]",
        ),
    );
    let rows = check_json(&cfg, &["--at", "2026-01-21T00:00:00Z"]);
    assert_eq!(f(find(&rows, "A0150612345", "cpu-skl"), "consumed_hours"), 128.0);
    // Second run: files unchanged, nothing re-imported, same figures.
    let rows2 = check_json(&cfg, &["--at", "2026-01-21T00:00:00Z"]);
    assert_eq!(rows, rows2);
}

#[test]
fn demo_shows_every_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("demo.sqlite");
    let cfg = root().join("config/demo.toml");
    let out = ok(&["--config", cfg.to_str().unwrap(), "--store", store.to_str().unwrap(), "check", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert!(rows.len() >= 30, "a few dozen allocations: {}", rows.len());
    let centres: std::collections::BTreeSet<_> = rows.iter().map(|r| r["centre"].as_str().unwrap().to_string()).collect();
    assert_eq!(centres.len(), 3);
    for status in ["on_track", "over_pace", "under_pace", "exhausted", "not_started", "ended"] {
        assert!(rows.iter().any(|r| r["status"] == status), "demo lacks a {status} allocation");
    }
    let gpu = rows.iter().any(|r| r["resource"].as_str().unwrap().starts_with("gpu"));
    let cpu = rows.iter().any(|r| r["resource"].as_str().unwrap().starts_with("cpu"));
    assert!(gpu && cpu);
    // The pinned instant makes the demo the same whatever day it runs.
    assert!(rows.iter().all(|r| r["at"] == "2026-11-15T12:00:00Z"));
}

/// The daemon's streaming reconciliation and the replay's preloaded view are two paths to the
/// same figures: they must agree at any instant (midnights and mid-day).
#[test]
fn streaming_and_replay_reconciliations_agree() {
    use allocwatch::reconcile::view::{reconcile_view, LedgerView};
    use allocwatch::reconcile::{partial_day, reconcile_all};
    let dir = tempfile::tempdir().unwrap();
    let mut config = allocwatch::config::Config::load(&root().join("config/demo.toml")).unwrap();
    config.store_path = dir.path().join("demo.sqlite");
    let grants = allocwatch::domain::grants::Grants::load(&config).unwrap();
    let mut store = allocwatch::store::Store::open(&config.store_path).unwrap();
    for (_, _, r) in allocwatch::pull::files::import_all(&mut store, &config, 0) {
        r.unwrap();
    }
    let instants = ["2026-05-20T00:00:00Z", "2026-08-15T13:17:00Z", "2026-10-31T23:00:00Z", "2026-11-15T12:00:00Z", "2027-06-01T00:00:00Z"];
    let first = instants[0].parse::<jiff::Timestamp>().unwrap().as_second();
    let last = instants[instants.len() - 1].parse::<jiff::Timestamp>().unwrap().as_second();
    let view = LedgerView::load(&config, &grants, &mut store, first, last).unwrap();
    for at in instants {
        let at = at.parse::<jiff::Timestamp>().unwrap().as_second();
        let a = reconcile_all(&config, &grants, &mut store, at).unwrap();
        let partial = partial_day(&config, &mut store, at).unwrap();
        let b = reconcile_view(&config, &grants, &view, &partial, at);
        assert_eq!(a.allocations.len(), b.allocations.len());
        for (x, y) in a.allocations.iter().zip(&b.allocations) {
            assert_eq!((x.project.as_str(), x.resource.as_str(), x.status), (y.project.as_str(), y.resource.as_str(), y.status), "at {at}");
            for (n, p, q) in [
                ("consumed", x.consumed_hours.value(), y.consumed_hours.value()),
                ("burn", x.burn_rate_hours_per_day, y.burn_rate_hours_per_day),
                ("unused", x.projected_unused_hours.value(), y.projected_unused_hours.value()),
            ] {
                assert!((p - q).abs() <= 1e-9 * p.abs().max(1.0), "{n} of {} at {at}: {p} vs {q}", x.project);
            }
        }
        let keys = |o: &[allocwatch::domain::reconciliation::OrphanUsage]| o.iter().map(|o| (o.account.clone(), o.partition.clone(), (o.hours.value() * 1e6).round() as i64)).collect::<Vec<_>>();
        assert_eq!(keys(&a.orphans), keys(&b.orphans), "orphans at {at}");
        assert_eq!(keys(&a.unmapped), keys(&b.unmapped), "unmapped at {at}");
    }
}

/// Copy the demo (configuration, allocations, accounting) into `dir`, with its `[reconcile]`
/// thresholds replaced; returns the configuration's path.
fn demo_with_thresholds(dir: &std::path::Path, over_pp: f64, warning_days: u32, under_pp: f64, min_elapsed_pct: f64) -> std::path::PathBuf {
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.path().is_file() {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    };
    copy(&root().join("config/demo"), &dir.join("demo"));
    copy(&root().join("config/demo/accounting"), &dir.join("demo/accounting"));
    let mut text = std::fs::read_to_string(root().join("config/demo.toml")).unwrap();
    for (key, value) in [
        ("over_pace_drift_pp", over_pp.to_string()),
        ("exhaustion_warning_days", warning_days.to_string()),
        ("under_pace_drift_pp", under_pp.to_string()),
        ("under_pace_min_elapsed_pct", min_elapsed_pct.to_string()),
    ] {
        let line = text.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("demo.toml sets {key}")).to_string();
        text = text.replace(&line, &format!("{key} = {value}"));
    }
    let cfg = dir.join("demo.toml");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

/// The issue's reproduction, in both directions: whatever the `[reconcile]` thresholds, every
/// firing over_pace alert names an allocation whose status is over_pace (or exhausted while
/// still ahead of pace), every under_pace alert one whose status is under_pace, and every
/// allocation over or under pace has its alert — the rules fire on the status.
#[test]
fn pace_alerts_agree_with_the_status_whatever_the_thresholds() {
    // (over pp, warning days, under pp, min elapsed %): the defaults, looser, stricter.
    for (over, warn, under, elapsed) in [(10.0, 30, -20.0, 25.0), (30.0, 365, -35.0, 25.0), (4.0, 5, -5.0, 10.0)] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = demo_with_thresholds(dir.path(), over, warn, under, elapsed);
        let c = cfg.to_str().unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_str(&ok(&["--config", c, "check", "--format", "json"])).unwrap();
        let alerts: Vec<serde_json::Value> = serde_json::from_str(&ok(&["--config", c, "alerts", "list", "--format", "json"])).unwrap();
        let status: std::collections::HashMap<String, String> = rows
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap().to_string();
                (format!("{}/{}/{}/{}", s("centre"), s("project"), s("resource"), s("period_start")), s("status"))
            })
            .collect();
        let firing = |rule: &str| -> std::collections::BTreeSet<String> {
            alerts.iter().filter(|a| a["rule"] == rule && a["state"] == "firing").map(|a| a["subject"].as_str().unwrap().to_string()).collect()
        };
        let (over_alerts, under_alerts) = (firing("over_pace"), firing("under_pace"));
        let label = format!("thresholds over {over} pp, warning {warn} d, under {under} pp after {elapsed} %");
        let disagree: Vec<String> = over_alerts
            .iter()
            .filter(|s| !matches!(status[*s].as_str(), "over_pace" | "exhausted"))
            .map(|s| format!("over_pace alert on {s}, status {}", status[s]))
            .chain(under_alerts.iter().filter(|s| status[*s] != "under_pace").map(|s| format!("under_pace alert on {s}, status {}", status[s])))
            .collect();
        assert!(disagree.is_empty(), "{label}: {} pace alerts disagree with the status:\n{}", disagree.len(), disagree.join("\n"));
        for (subject, st) in &status {
            match st.as_str() {
                "over_pace" => assert!(over_alerts.contains(subject), "{label}: {subject} is over_pace without its alert"),
                "under_pace" => assert!(under_alerts.contains(subject), "{label}: {subject} is under_pace without its alert"),
                _ => {}
            }
        }
        // The thresholds really moved the picture: each setting has pace alerts of both kinds or none.
        eprintln!("{label}: {} over_pace, {} under_pace alerts", over_alerts.len(), under_alerts.len());
    }
}

/// A pace threshold left under `[alerts.rules]` is refused by name, saying where it lives now.
#[test]
fn a_pace_threshold_under_alert_rules_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for (table, key, now) in [
        ("over_pace", "drift_pp = 30", "[reconcile] over_pace_drift_pp"),
        ("over_pace", "exhaustion_days_before_end = 60", "[reconcile] exhaustion_warning_days"),
        ("under_pace", "drift_pp = -35", "[reconcile] under_pace_drift_pp"),
        ("under_pace", "min_elapsed_pct = 30", "[reconcile] under_pace_min_elapsed_pct"),
    ] {
        let cfg = write_config(dir.path(), &format!("[alerts.rules.{table}]\n{key}\n"));
        let out = aw(&["--config", cfg.to_str().unwrap(), "config", "check"]);
        assert_eq!(out.status.code(), Some(2), "{key}");
        let e = stderr(&out);
        let name = format!("alerts.rules.{table}.{}", key.split(' ').next().unwrap());
        assert!(e.contains(&name) && e.contains(now), "{key}: {e}");
    }
}

#[test]
fn the_same_job_id_and_start_on_two_clusters_of_a_centre_are_two_jobs_and_a_transfer_moves_hours() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("alloc.csv"),
        "project,centre,resource,period_start,period_end,granted_hours,accounts,pi,members,committee,profile\n\
         A0190000010,idris,cpu,2026-01-01,2026-04-11,1000,abc,pi@lab.fr,,CT1,\n\
         A0190000011,idris,cpu,2026-01-01,2026-04-11,1000,xyz,pi@lab.fr,,CT1,\n",
    )
    .unwrap();
    // A transfer takes 300 h from one allocation and gives them to the other, on one date.
    std::fs::write(
        dir.path().join("adj.csv"),
        "date,project,centre,resource,hours,kind,reason\n\
         2026-01-15,A0190000010,idris,cpu,-300,transfer,to A0190000011\n\
         2026-01-15,A0190000011,idris,cpu,300,transfer,from A0190000010\n",
    )
    .unwrap();
    let d10 = t("2026-01-10T00:00:00Z");
    // Job 77 started at the same second on both clusters: JobIDRaw is unique per cluster only.
    std::fs::write(
        dir.path().join("dump.txt"),
        format!(
            "JobID|JobIDRaw|Cluster|Partition|Account|User|Start|End|ElapsedRaw|AllocCPUS|AllocTRES|State\n\
             77|77|jeanzay|cpu_p1|abc|alice|{d10}|{}|3600|4|cpu=4|COMPLETED\n\
             77|77|jeanzay2|cpu_p1|abc|bob|{d10}|{}|3600|6|cpu=6|COMPLETED\n",
            d10 + 3600,
            d10 + 3600
        ),
    )
    .unwrap();
    let cfg = write_config(
        dir.path(),
        "[allocations]\nfiles = [\"alloc.csv\"]\nadjustments = [\"adj.csv\"]\n[[centre]]\nid = \"idris\"\ntimezone = \"UTC\"\nclusters = [\"jeanzay\", \"jeanzay2\"]\n\
         [[centre.billing]]\nresource = \"cpu\"\npartitions = [\"cpu_p1\"]\nunit = \"cpu\"\n",
    );
    let out = import(&cfg, &dir.path().join("dump.txt"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 records (2 new, 0 replaced, 0 unchanged)"), "{}", String::from_utf8_lossy(&out.stdout));
    let out = import(&cfg, &dir.path().join("dump.txt"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 records (0 new, 0 replaced, 2 unchanged)"));
    let c = cfg.to_str().unwrap();
    let usage: Vec<serde_json::Value> = serde_json::from_str(&ok(&["--config", c, "usage", "--format", "json"])).unwrap();
    let by_cluster: std::collections::BTreeMap<String, i64> = usage.iter().map(|r| (r["cluster"].as_str().unwrap().to_string(), r["cpu_seconds"].as_i64().unwrap())).collect();
    assert_eq!(by_cluster, [("jeanzay".to_string(), 4 * 3600), ("jeanzay2".to_string(), 6 * 3600)].into());
    // Both runs charge A0190000010: 10 h. Before the transfer date, both grants are whole; after
    // it, 700 h and 1,300 h, and the total granted is unchanged.
    let granted = |at: &str| -> Vec<(f64, f64)> {
        let rows: Vec<serde_json::Value> = serde_json::from_str(&ok(&["--config", c, "check", "--no-pull", "--at", at, "--format", "json"])).unwrap();
        rows.iter().map(|r| (r["granted_hours"].as_f64().unwrap(), r["consumed_hours"].as_f64().unwrap())).collect()
    };
    assert_eq!(granted("2026-01-14T00:00:00Z"), vec![(1000.0, 10.0), (1000.0, 0.0)]);
    assert_eq!(granted("2026-01-16T00:00:00Z"), vec![(700.0, 10.0), (1300.0, 0.0)]);
}

#[test]
fn a_25_hour_autumn_day_and_civil_times_in_its_repeated_hour() {
    let dir = tempfile::tempdir().unwrap();
    // sacct's default civil times, read in Paris: on 2026-10-25 the clock goes back at 03:00.
    std::fs::write(
        dir.path().join("dump.txt"),
        "JobID|JobIDRaw|Cluster|Partition|Account|User|Start|End|Elapsed|AllocCPUS|AllocTRES|State\n\
         1|1|jz|p|wholeday|u|2026-10-25T00:00:00|2026-10-26T00:00:00|1-01:00:00|1|cpu=1|COMPLETED\n\
         2|2|jz|p|fold|u|2026-10-25T02:10:00|2026-10-25T02:05:00|00:55:00|1|cpu=1|COMPLETED\n",
    )
    .unwrap();
    let cfg = write_config(
        dir.path(),
        "[[centre]]\nid = \"idris\"\ntimezone = \"Europe/Paris\"\nclusters = [\"jz\"]\n[[centre.billing]]\nresource = \"cpu\"\npartitions = [\"p\"]\nunit = \"cpu\"\n",
    );
    let out = import(&cfg, &dir.path().join("dump.txt"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 records (2 new, 0 replaced, 0 unchanged), 0 rejected lines"), "{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&ok(&["--config", cfg.to_str().unwrap(), "usage", "--group-by", "day", "--format", "json"])).unwrap();
    let got: Vec<(String, String, i64)> =
        rows.iter().map(|r| (r["account"].as_str().unwrap().to_string(), r["day"].as_str().unwrap().to_string(), r["cpu_seconds"].as_i64().unwrap())).collect();
    assert_eq!(got, vec![("fold".into(), "2026-10-25".into(), 55 * 60), ("wholeday".into(), "2026-10-25".into(), 25 * 3600)]);
}

/// The daemon's reconciler keeps what it read of the ledger between cycles and then reads only
/// the changes the ingests logged: after any sequence of ingests (new jobs, corrected records,
/// running jobs updated and then final, records arriving months late, hours moved to another
/// account, usage on accounts and partitions nothing maps), at instants moving on day by day
/// and sometimes back, and across a change of an allocation's accounts, its figures are those
/// of a reconciliation read afresh — to the last bit (both are printed with `{:?}`).
#[test]
fn a_kept_reconciliation_equals_one_read_afresh_after_random_ingests() {
    use allocwatch::domain::job::{JobRecord, Units};
    use allocwatch::reconcile::{reconcile_all, Reconciler};
    use allocwatch::store::PullRecord;
    let dir = tempfile::tempdir().unwrap();
    let mut config = allocwatch::config::Config::load(&root().join("config/demo.toml")).unwrap();
    config.store_path = dir.path().join("demo.sqlite");
    let mut grants = allocwatch::domain::grants::Grants::load(&config).unwrap();
    let mut store = allocwatch::store::Store::open(&config.store_path).unwrap();
    for (_, _, r) in allocwatch::pull::files::import_all(&mut store, &config, 0) {
        r.unwrap();
    }
    let day = 86_400i64;
    let mut at = t("2026-05-20T00:00:00Z");
    // Each centre's keys as the demo has them, and one unknown account and one unmapped partition.
    let mut keys: Vec<(String, String, String, String)> = Vec::new();
    for id in config.centres.keys() {
        let rows = store.daily_usage(id, 0, i32::MAX as _).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for r in rows {
            seen.insert((r.cluster, r.account, r.partition));
        }
        let (cl, acc, part) = seen.iter().next().cloned().expect("demo usage at every centre");
        keys.push((id.clone(), cl.clone(), "nobody42".into(), part));
        keys.push((id.clone(), cl, acc, "nowhere".into()));
        keys.extend(seen.into_iter().map(|(c, a, p)| (id.clone(), c, a, p)));
    }
    let mut rng = fastrand::Rng::with_seed(20261203);
    let mut jobs: Vec<(String, JobRecord)> = Vec::new();
    let mut kept = Reconciler::default();
    let mut next_id = 9_000_000u64;
    let mut back = 0;
    for step in 0..60 {
        // The instant: on by up to three days, one step in eight back by up to ten.
        let was = at;
        at += if rng.u32(0..8) == 0 { -rng.i64(0..10 * day) } else { rng.i64(0..3 * day) };
        back += usize::from(at < was);
        if step == 30 {
            // An allocation starts listing the unknown account: its usage is charged from now on.
            let a = grants.allocations.iter_mut().find(|a| keys.iter().any(|k| k.0 == a.centre && k.2 == "nobody42")).unwrap();
            a.accounts.push("nobody42".into());
        }
        for _ in 0..rng.usize(1..4) {
            let centre = keys[rng.usize(0..keys.len())].0.clone();
            let tz = config.centres[&centre].tz.clone();
            let mut ingest = store.begin_ingest(&centre, &tz).unwrap();
            for _ in 0..rng.usize(1..40) {
                let mine: Vec<usize> = (0..jobs.len()).filter(|&i| jobs[i].0 == centre).collect();
                let job = if mine.is_empty() || rng.u32(0..3) > 0 {
                    let k = loop {
                        let k = &keys[rng.usize(0..keys.len())];
                        if k.0 == centre {
                            break k.clone();
                        }
                    };
                    next_id += 1;
                    // Mostly recent, one in six months late.
                    let back = if rng.u32(0..6) == 0 { rng.i64(40 * day..300 * day) } else { rng.i64(0..40 * day) };
                    let start = at - back;
                    let cpus = rng.u64(1..512);
                    let mut j = JobRecord {
                        cluster: k.1,
                        job_id_raw: next_id,
                        job_id: next_id.to_string(),
                        account: k.2,
                        partition: k.3,
                        user: "u".into(),
                        start_s: start,
                        end_s: start + rng.i64(60..3 * day),
                        elapsed_s: 0,
                        units: Units { cpus, gpus: rng.u64(0..5), billing: cpus, nodes: rng.u64(1..4) },
                        provisional: false,
                        time_limit_s: Some(4 * day),
                    };
                    if j.end_s > at {
                        (j.end_s, j.provisional) = (at.max(j.start_s), true);
                    }
                    j.elapsed_s = j.end_s - j.start_s;
                    j
                } else {
                    // A record of a run already stored: final, corrected, or moved to another account.
                    let i = mine[rng.usize(0..mine.len())];
                    let mut j = jobs[i].1.clone();
                    match rng.u32(0..3) {
                        0 => j.provisional = false,
                        1 => j.units.cpus = rng.u64(1..512),
                        _ => j.account = keys.iter().filter(|k| k.0 == centre).nth(rng.usize(0..3)).unwrap().2.clone(),
                    }
                    if rng.bool() {
                        j.end_s += rng.i64(0..day);
                        j.elapsed_s = j.end_s - j.start_s;
                    }
                    j
                };
                ingest.upsert(&job).unwrap();
                jobs.retain(|(_, o)| !(o.cluster == job.cluster && o.job_id_raw == job.job_id_raw && o.start_s == job.start_s));
                jobs.push((centre.clone(), job));
            }
            let pull = PullRecord {
                centre: centre.clone(),
                source: "test".into(),
                started_at: at,
                window: None,
                watermark: None,
                deep_scan: false,
                file: None,
            };
            ingest.commit(&pull, at).unwrap();
        }
        let a = kept.reconcile(&config, &grants, &mut store, at).unwrap();
        let b = reconcile_all(&config, &grants, &mut store, at).unwrap();
        let (a, b) = (format!("{a:?}"), format!("{b:?}"));
        if a != b {
            let line = a.split(", ").zip(b.split(", ")).find(|(x, y)| x != y).unwrap();
            panic!("step {step}, at {at}: the kept reconciliation differs from one read afresh: {} vs {}", line.0, line.1);
        }
    }
    // Read afresh only at the first cycle, when the instant went back, and when the charging
    // changed (step 30): every other cycle applied the logged changes.
    let centres = config.centres.len();
    assert!(kept.fresh_reads() <= centres * (2 + back), "{} fresh reads, {back} steps back", kept.fresh_reads());
    assert!(kept.fresh_reads() > centres, "{} fresh reads", kept.fresh_reads());
    assert!(jobs.iter().any(|(_, j)| j.account == "nobody42") && jobs.iter().any(|(_, j)| j.partition == "nowhere"));
}
