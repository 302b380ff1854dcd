//! Property tests (proptest): parsers never panic and name what they reject; proration is
//! exact; the ledger's incrementally maintained daily totals always equal a recomputation from
//! its jobs, whatever sequence of inserts, repeats and corrections it saw.

use allocwatch::store::{PullRecord, Store};
use allocwatch::domain::job::{prorate_daily, prorate_window, JobRecord, UnitSeconds, Units};
use allocwatch::domain::time::day_start;
use allocwatch::sources::{read_stream, FileFormat, Parsed, SourceContext};
use jiff::tz::TimeZone;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

fn ctx() -> SourceContext {
    SourceContext { tz: TimeZone::get("Europe/Paris").unwrap(), default_cluster: "c".into(), observed_at: 1_800_000_000 }
}

fn parse_all(text: &str, format: &FileFormat) -> (Vec<JobRecord>, Vec<allocwatch::sources::LineError>, Result<(), String>) {
    let mut jobs = Vec::new();
    let mut errs = Vec::new();
    let r = read_stream(text.as_bytes(), "input.txt", format, &ctx(), |item| match item {
        Ok(Parsed::Job(j)) => jobs.push(j),
        Ok(_) => {}
        Err(e) => errs.push(e),
    })
    .map_err(|e| e.to_string());
    (jobs, errs, r)
}

const HEADER: &str = "JobID|JobIDRaw|Cluster|Partition|Account|User|Start|End|ElapsedRaw|AllocCPUS|AllocTRES|State";

fn job_strategy() -> impl Strategy<Value = JobRecord> {
    (
        1u64..5_000_000,
        prop::sample::select(vec!["cpu_p1", "gpu_p13", "visu"]),
        "[a-z][a-z0-9@._-]{0,12}",
        1_700_000_000i64..1_800_000_000,
        0i64..(40 * 86400),
        0u32..100,
        0u64..512,
        0u64..9,
        any::<bool>(),
    )
        .prop_map(|(raw, part, acc, start, wall, elapsed_pct, cpus, gpus, running)| {
            let elapsed = wall * elapsed_pct as i64 / 100;
            JobRecord {
                cluster: "c".into(),
                job_id_raw: raw,
                job_id: raw.to_string(),
                account: acc,
                partition: part.into(),
                user: "u".into(),
                start_s: start,
                end_s: start + wall,
                elapsed_s: if running { wall } else { elapsed },
                units: Units { cpus, gpus, billing: cpus * 2, nodes: 1 + cpus / 64 },
                provisional: running,
                time_limit_s: None,
            }
        })
}

fn sacct_line(j: &JobRecord) -> String {
    let end = if j.provisional { "Unknown".to_string() } else { j.end_s.to_string() };
    let state = if j.provisional { "RUNNING" } else { "COMPLETED" };
    format!(
        "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|billing={},cpu={},gres/gpu={},node={}|{}",
        j.job_id, j.job_id_raw, j.cluster, j.partition, j.account, j.user, j.start_s, end, j.elapsed_s, j.units.cpus,
        j.units.billing, j.units.cpus, j.units.gpus, j.units.nodes, state
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Any text: no panic; every rejection names the input and a line that exists.
    #[test]
    fn sacct_parser_never_panics(body in "(?s).{0,2000}", lines in prop::collection::vec("[^\n]{0,300}", 0..30)) {
        let text = format!("{HEADER}\n{body}\n{}", lines.join("\n"));
        let n = text.lines().count() as u64;
        let (_, errs, r) = parse_all(&text, &FileFormat::Sacct { fields: None });
        prop_assert!(r.is_ok());
        for e in errs {
            prop_assert_eq!(e.file.as_str(), "input.txt");
            prop_assert!(e.line >= 2 && e.line <= n.max(2) + 1, "line {} of {}", e.line, n);
            prop_assert!(!e.reason.is_empty());
        }
        // Header-less, with --fields: same.
        let (_, _, r) = parse_all(&lines.join("\n"), &FileFormat::Sacct { fields: Some("xdmod".into()) });
        prop_assert!(r.is_ok());
    }

    /// Records written as sacct would write them read back identically.
    #[test]
    fn sacct_round_trip(jobs in prop::collection::vec(job_strategy(), 1..40)) {
        let text = std::iter::once(HEADER.to_string()).chain(jobs.iter().map(sacct_line)).collect::<Vec<_>>().join("\n");
        let (got, errs, r) = parse_all(&text, &FileFormat::Sacct { fields: None });
        prop_assert!(r.is_ok());
        prop_assert!(errs.is_empty(), "{:?}", errs);
        prop_assert_eq!(got.len(), jobs.len());
        for (g, j) in got.iter().zip(&jobs) {
            prop_assert_eq!(g.job_id_raw, j.job_id_raw);
            prop_assert_eq!(g.start_s, j.start_s);
            prop_assert_eq!(g.units, j.units);
            prop_assert_eq!(g.provisional, j.provisional);
            prop_assert_eq!(g.elapsed_s, j.elapsed_s);
            prop_assert_eq!(g.end_s, if j.provisional { j.start_s + j.elapsed_s } else { j.end_s });
        }
    }

    /// SWF: any text, no panic, rejections name the line.
    #[test]
    fn swf_parser_never_panics(lines in prop::collection::vec("[ 0-9a-z;:.-]{0,120}", 0..40)) {
        let text = format!("; UnixStartTime: 1296571124\n{}", lines.join("\n"));
        let (_, errs, r) = parse_all(&text, &FileFormat::Swf);
        prop_assert!(r.is_ok());
        for e in errs {
            prop_assert!(e.line >= 2);
        }
    }

    /// A job's daily shares add up exactly to its charge, in a zone with DST changes, and any
    /// partition of time into windows does too.
    #[test]
    fn proration_is_exact(j in job_strategy(), cuts in prop::collection::vec(0i64..(40 * 86400), 0..6)) {
        let tz = TimeZone::get("Europe/Paris").unwrap();
        let mut total = UnitSeconds::default();
        let days = prorate_daily(&j, &tz);
        for (k, (day, us)) in days.iter().enumerate() {
            prop_assert!(us.cpu >= 0 && us.gpu >= 0);
            total.add(us);
            // Each share is the job's part of that local day, whose bounds are Paris midnights
            // (23, 24 or 25 hours apart): the same as the window of exactly that day.
            let (from, to) = (day_start(*day, &tz), day_start(*day + 1, &tz));
            prop_assert!([23, 24, 25].contains(&((to - from) / 3600)) && (to - from) % 3600 == 0, "day {day}: {from}..{to}");
            prop_assert_eq!(*us, prorate_window(&j, from, to), "day {}", day);
            prop_assert!(k == 0 || *day == days[k - 1].0 + 1, "days follow each other");
        }
        if let (Some(first), Some(last)) = (days.first(), days.last()) {
            prop_assert!(day_start(first.0, &tz) <= j.start_s && j.start_s < day_start(first.0 + 1, &tz));
            prop_assert!(day_start(last.0, &tz) <= j.end_s.max(j.start_s) && j.end_s.max(j.start_s) <= day_start(last.0 + 1, &tz));
        }
        let want = UnitSeconds {
            cpu: j.units.cpus as i64 * j.elapsed_s,
            gpu: j.units.gpus as i64 * j.elapsed_s,
            billing: j.units.billing as i64 * j.elapsed_s,
            node: j.units.nodes as i64 * j.elapsed_s,
        };
        prop_assert_eq!(total, want);
        let mut bounds: Vec<i64> = cuts.iter().map(|c| j.start_s + c).collect();
        bounds.push(i64::MIN / 4);
        bounds.push(i64::MAX / 4);
        bounds.sort();
        let mut sum = UnitSeconds::default();
        for w in bounds.windows(2) {
            sum.add(&prorate_window(&j, w[0], w[1]));
        }
        prop_assert_eq!(sum, want);
    }

    /// Config and allocation files: any text, no panic.
    #[test]
    fn config_and_allocations_never_panic(text in "(?s).{0,1500}") {
        let _ = allocwatch::config::Config::parse(&text, Path::new("fuzz.toml"));
        let cfg = allocwatch::config::Config::parse(
            "[store]\npath = \"x\"\n[[centre]]\nid = \"c\"\ntimezone = \"UTC\"\nclusters = [\"c\"]\n[[centre.billing]]\nresource = \"cpu\"\npartitions = [\"p\"]\nunit = \"cpu\"\n",
            Path::new("c.toml"),
        ).unwrap();
        let header = "project,centre,resource,period_start,period_end,granted_hours,accounts\n";
        for name in ["a.csv", "a.toml"] {
            let _ = allocwatch::domain::grants::Grants::parse(&cfg, &[(name.to_string(), text.clone())], &[]);
            let _ = allocwatch::domain::grants::Grants::parse(&cfg, &[(name.to_string(), format!("{header}{text}"))], &[]);
        }
        let _ = allocwatch::domain::grants::Grants::parse(&cfg, &[], &[("adj.csv".to_string(), format!("date,project,centre,resource,hours,kind\n{text}"))]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Whatever sequence of ingests (new runs, repeats, corrections, running jobs finishing,
    /// time limits changed, stale provisional records), the daily totals the ledger maintains incrementally equal
    /// those recomputed from the jobs it holds, and each run is held once.
    #[test]
    fn ledger_daily_totals_always_match_its_jobs(
        base in prop::collection::vec(job_strategy(), 1..25),
        ops in prop::collection::vec((0usize..25, 0u8..5, 1u64..64, 0i64..86400), 0..40),
        batches in 1usize..4,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let tz = TimeZone::get("Europe/Paris").unwrap();
        // Each run (raw id, start) must be unique in `base` for the final-state model below.
        let mut model: BTreeMap<(u64, i64), JobRecord> = BTreeMap::new();
        let mut stream: Vec<JobRecord> = base.clone();
        for (i, kind, cpus, extra) in ops {
            let mut j = base[i % base.len()].clone();
            match kind {
                0 => {}                                    // seen again, identical
                1 => j.units.cpus = cpus,                 // corrected
                2 => { j.provisional = false; j.end_s += extra; j.elapsed_s = j.end_s - j.start_s; } // running job ended
                3 => j.time_limit_s = Some(60 + extra),   // time limit changed, nothing else
                _ => { j.provisional = true; }             // stale provisional record
            }
            stream.push(j);
        }
        let chunk = stream.len().div_ceil(batches);
        for part in stream.chunks(chunk.max(1)) {
            let mut ingest = store.begin_ingest("idris", &tz).unwrap();
            for j in part {
                ingest.upsert(j).unwrap();
                let key = (j.job_id_raw, j.start_s);
                let keep_old = model.get(&key).is_some_and(|old| !old.provisional && j.provisional);
                if !keep_old {
                    model.insert(key, j.clone());
                }
            }
            let pull = PullRecord { centre: "idris".into(), source: "test".into(), started_at: 0, window: None, watermark: None, deep_scan: false, file: None };
            ingest.commit(&pull, 0).unwrap();
        }
        prop_assert_eq!(store.job_count().unwrap() as usize, model.len());
        let mut want: BTreeMap<(i32, String, String), UnitSeconds> = BTreeMap::new();
        for j in model.values() {
            for (d, us) in prorate_daily(j, &tz) {
                want.entry((d, j.account.clone(), j.partition.clone())).or_default().add(&us);
            }
        }
        want.retain(|_, us| !us.is_zero());
        let mut got: BTreeMap<(i32, String, String), UnitSeconds> = BTreeMap::new();
        for r in store.daily_usage("idris", i32::MIN, i32::MAX).unwrap() {
            got.entry((r.day, r.account, r.partition)).or_default().add(&r.usage);
        }
        got.retain(|_, us| !us.is_zero());
        prop_assert_eq!(got, want);
    }
}
