//! Imports of real accounting data from `../shared` (Open XDMoD's reference dumps and shredder
//! edge cases, slurm2sql's CSVs, the lab cluster's sacct output, the CEA Curie SWF trace).
//! Under CI=true these must run; elsewhere they are skipped, saying so, when the data is absent.

mod common;
use common::*;
use std::path::Path;

fn import(cfg: &Path, store: &Path, centre: &str, format: &str, fields: Option<&str>, file: &Path) -> std::process::Output {
    let mut args = vec![
        "--config", cfg.to_str().unwrap(), "--store", store.to_str().unwrap(), "import", "--centre", centre, "--format", format,
    ];
    if let Some(f) = fields {
        args.extend(["--fields", f]);
    }
    args.push(file.to_str().unwrap());
    aw(&args)
}

fn summary(out: &std::process::Output) -> String {
    assert!(out.status.success(), "import failed: {}", stderr(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn xdmod_reference_dumps_import_and_reimport_is_a_no_op() {
    let Some(data) = shared_data("xdmod_reference_dumps") else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s.sqlite");
    let cfg = root().join("tests/fixtures/xdmod.toml");
    for (name, n) in [("phillips", 4285), ("pozidriv", 11704)] {
        let file = data.join(format!("fixtures/xdmod/artifacts__xdmod__referencedata__{name}.log"));
        let s = summary(&import(&cfg, &store, "ccr", "sacct", Some("xdmod"), &file));
        println!("{s}");
        assert!(s.contains(&format!("{n} records ({n} new, 0 replaced, 0 unchanged), 0 rejected lines")), "{s}");
        let before = ok(&["--config", cfg.to_str().unwrap(), "--store", store.to_str().unwrap(), "usage", "--format", "csv"]);
        let s = summary(&import(&cfg, &store, "ccr", "sacct", Some("xdmod"), &file));
        assert!(s.contains(&format!("{n} records (0 new, 0 replaced, {n} unchanged)")), "{s}");
        let after = ok(&["--config", cfg.to_str().unwrap(), "--store", store.to_str().unwrap(), "usage", "--format", "csv"]);
        assert_eq!(before, after, "re-import changed the ledger");
    }
}

#[test]
fn xdmod_shredder_cases_match_its_expected_output() {
    let Some(data) = shared_data("xdmod_shredder_cases") else { return };
    let dir = tempfile::tempdir().unwrap();
    // XDMoD's shredder tests read times as UTC.
    let cfg = write_config(
        dir.path(),
        "[[centre]]\nid = \"ccr\"\ntimezone = \"UTC\"\nclusters = [\"ub-hpc\", \"phillips\"]\n\
         [[centre.billing]]\nresource = \"cpu\"\npartitions = [\"general-compute\"]\nunit = \"cpu\"\n",
    );
    let store = dir.path().join("store.sqlite");
    let x = data.join("fixtures/xdmod");
    let s = summary(&import(&cfg, &store, "ccr", "sacct", Some("xdmod"), &x.join("artifacts__xdmod__unit__shredder__slurm__input__accounting-logs.log")));
    assert!(s.contains("4 records (4 new"), "{s}");
    // Totals per account equal Σ ncpus × elapsed (and ngpus × elapsed) of the shredder's output.
    let expected: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(x.join("artifacts__xdmod__unit__shredder__slurm__output__accounting-logs.json")).unwrap(),
    )
    .unwrap();
    let out = ok(&["--config", cfg.to_str().unwrap(), "usage", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    for job in &expected {
        let acc = job["account_name"].as_str().unwrap();
        let ncpus: i64 = job["ncpus"].as_str().unwrap().parse().unwrap();
        let elapsed = job["elapsed"].as_i64().unwrap();
        let ngpus = job["ngpus"].as_i64().unwrap();
        let row = rows.iter().find(|r| r["account"] == acc).unwrap_or_else(|| panic!("no usage for {acc}"));
        assert_eq!(row["cpu_seconds"].as_i64().unwrap(), ncpus * elapsed, "{acc}");
        assert_eq!(row["gpu_seconds"].as_i64().unwrap(), ngpus * elapsed, "{acc}");
        // Start and end as XDMoD reads them: the job's first and last seconds hold one second
        // of its CPUs each, the seconds just outside it nothing (the accounts are the jobs').
        let (start, end) = (job["start_time"].as_i64().unwrap(), job["end_time"].as_i64().unwrap());
        if elapsed > 0 {
            let cpu_in = |from: i64, to: i64| {
                let t = |s: i64| jiff::Timestamp::from_second(s).unwrap().to_string();
                let out = ok(&["--config", cfg.to_str().unwrap(), "usage", "--from", &t(from), "--to", &t(to), "--format", "json"]);
                let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
                rows.iter().filter(|r| r["account"] == acc).map(|r| r["cpu_seconds"].as_i64().unwrap()).sum::<i64>()
            };
            assert_eq!((cpu_in(start - 1, start), cpu_in(start, start + 1)), (0, ncpus), "{acc}: its first second");
            assert_eq!((cpu_in(end - 1, end), cpu_in(end, end + 1)), (ncpus, 0), "{acc}: its last second");
        }
    }
    // Job-array lines, running/pending jobs, unknown states, UTF-8 job names: all read.
    let s = summary(&import(&cfg, &store, "ccr", "sacct", Some("xdmod"), &x.join("artifacts__xdmod__unit__shredder__slurm__input__non-ended-job-state.log")));
    assert!(s.contains("1 records (1 new") && s.contains("1 never started"), "{s}");
    let s = summary(&import(&cfg, &store, "ccr", "sacct", Some("xdmod"), &x.join("artifacts__xdmod__unit__shredder__slurm__input__unknown-job-state.log")));
    assert!(s.contains("0 rejected lines"), "{s}");
    let s = summary(&import(&cfg, &store, "ccr", "sacct", Some("xdmod"), &x.join("artifacts__xdmod__unit__shredder__slurm__input__utf8-multibyte-chars.log")));
    assert!(s.contains("1 records") && s.contains("0 rejected lines"), "{s}");
    // Six summary lines of one array (same JobIDRaw and start) are one run: stored once.
    let s = summary(&import(&cfg, &store, "ccr", "sacct", Some("xdmod"), &x.join("artifacts__xdmod__unit__shredder__slurm__input__accounting-logs-with-job-arrays.log")));
    assert!(s.contains("6 records (0 new, 1 replaced, 5 unchanged)") || s.contains("6 records (1 new, 0 replaced, 5 unchanged)"), "{s}");
}

#[test]
fn slurm2sql_and_lab_dumps_with_headers() {
    let Some(data) = shared_data("slurm2sql_and_lab_dumps") else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[[centre]]\nid = \"aalto\"\ntimezone = \"Europe/Helsinki\"\nclusters = [\"triton\"]\n\
         [[centre]]\nid = \"idris\"\ntimezone = \"UTC\"\nclusters = [\"jeanzay\"]\n\
         [[centre.billing]]\nresource = \"gpu-v100\"\npartitions = [\"gpu_p13\"]\nunit = \"gpu\"\n\
         [[centre.billing]]\nresource = \"cpu\"\npartitions = [\"cpu_p1\"]\nunit = \"billing\"\n",
    );
    let store = dir.path().join("store.sqlite");
    for f in ["test-data1.csv", "test-data2.csv"] {
        let s = summary(&import(&cfg, &store, "aalto", "sacct", None, &data.join("fixtures/slurm2sql").join(f)));
        assert!(s.contains("steps skipped") && s.contains("0 rejected lines"), "{f}: {s}");
        assert!(!s.contains(" 0 steps skipped"), "{f}: job steps must be seen and skipped: {s}");
    }
    // A comma-separated file is refused as a whole, with the reason.
    let out = import(&cfg, &store, "aalto", "sacct", None, &data.join("fixtures/slurm2sql/test-data3.csv"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("test-data3.csv:1: the first line is not a sacct header (JobID|…) (it looks comma-separated"), "{}", stderr(&out));
    // The lab cluster's real `sacct -X -P` output: 7 jobs, accounts lower-cased by Slurm.
    let s = summary(&import(&cfg, &store, "idris", "sacct", None, &data.join("fixtures/slurm-lab-22.05/sacct_X_P.txt")));
    assert!(s.contains("7 records (7 new") && s.contains("0 rejected lines"), "{s}");
    let out = ok(&["--config", cfg.to_str().unwrap(), "usage", "--centre", "idris", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let gpu: i64 = rows.iter().filter(|r| r["partition"] == "gpu_p13").map(|r| r["gpu_seconds"].as_i64().unwrap()).sum();
    assert_eq!(gpu, 2 * 2 + 4 * 2 + 1); // jobs 3, 4, 5: 2 GPUs × 2 s, 4 × 2 s, 1 × 1 s
    assert!(rows.iter().any(|r| r["account"] == "abc@v100"));
}

#[test]
fn curie_swf_trace_imports_end_to_end() {
    let Some(data) = shared_data("curie_swf_trace") else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("curie.sqlite");
    let cfg = root().join("tests/fixtures/curie.toml");
    let trace = data.join("traces/CEA-Curie-2011-2.1-cln.swf.gz");
    let s = summary(&import(&cfg, &store, "tgcc", "swf", None, &trace));
    println!("{s}");
    assert!(s.contains("312826 records (312826 new, 0 replaced, 0 unchanged), 0 rejected lines"), "{s}");
    let s = summary(&import(&cfg, &store, "tgcc", "swf", None, &trace));
    assert!(s.contains("312826 records (0 new, 0 replaced, 312826 unchanged)"), "{s}");
    // The busiest month of the trace is charged on the mapped partitions.
    let out = ok(&["--config", cfg.to_str().unwrap(), "--store", store.to_str().unwrap(), "usage", "--from", "2012-06-01", "--to", "2012-07-01", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let charged: f64 = rows.iter().filter_map(|r| r["charged_hours"].as_f64()).sum();
    let cpu_h: f64 = rows.iter().map(|r| r["cpu_seconds"].as_f64().unwrap()).sum::<f64>() / 3600.0;
    assert!(charged > 1e6 && charged <= cpu_h + 1e-6, "charged {charged} of {cpu_h} core-hours");
}

#[test]
fn curie_replay_warns_exhausted_allocations_before_they_run_out() {
    let Some(data) = shared_data("curie_replay") else { return };
    let dir = tempfile::tempdir().unwrap();
    let trace = data.join("traces/CEA-Curie-2011-2.1-cln.swf.gz");
    let base = std::fs::read_to_string(root().join("tests/fixtures/curie.toml")).unwrap().replace("path = \"curie.sqlite\"", "path = \"store.sqlite\"");
    let cfg = dir.path().join("curie.toml");
    std::fs::write(&cfg, &base).unwrap();
    let c = cfg.to_str().unwrap();
    summary(&import(&cfg, &dir.path().join("store.sqlite"), "tgcc", "swf", None, &trace));
    // Allocations = each group's actual thin-node consumption over the trace × a spread of
    // factors (0.6 … 1.5): those under 1.0 run out before the end.
    let out = ok(&["--config", c, "usage", "--from", "2012-02-01", "--to", "2012-10-18", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let mut per: std::collections::BTreeMap<u64, f64> = Default::default();
    for r in rows.iter().filter(|r| r["resource"] == "cpu-thin") {
        *per.entry(r["account"].as_str().unwrap().parse().unwrap()).or_default() += r["charged_hours"].as_f64().unwrap();
    }
    let factors = [0.6, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5];
    let mut csv = String::from("project,centre,resource,period_start,period_end,granted_hours,accounts,pi,members,committee,profile\n");
    let big: Vec<(&u64, &f64)> = per.iter().filter(|(_, h)| **h >= 1000.0).collect();
    for (i, (group, hours)) in big.iter().enumerate() {
        csv.push_str(&format!(
            "CURIE-G{group},tgcc,cpu-thin,2012-02-01,2012-10-18,{:.0},{group},pi-{group}@curie.example,,CT{},\n",
            *hours * factors[i % factors.len()],
            i % 5
        ));
    }
    std::fs::write(dir.path().join("alloc.csv"), csv).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "{base}\n[allocations]\nfiles = [\"alloc.csv\"]\n[alerts.email]\nhost = \"127.0.0.1\"\nport = 1\ntls = \"none\"\n\
             from = \"allocwatch@tgcc.example\"\n[alerts.operations]\nemails = [\"ops@tgcc.example\"]\ndigest = true\n"
        ),
    )
    .unwrap();
    let out = ok(&["--config", c, "replay", "--from", "2012-02-01", "--to", "2012-10-18", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let leads = v["exhausted"].as_array().unwrap();
    let events = v["events"].as_array().unwrap();
    // Nothing was sent: replay writes no alert and queues no message.
    let list = ok(&["--config", c, "alerts", "list", "--all", "--format", "json"]);
    assert_eq!(list.trim(), "[]");
    let warned: Vec<f64> = leads.iter().filter_map(|l| l["lead_days"].as_f64()).collect();
    let mut sorted = warned.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "curie replay: {} allocations, {} events, {} exhausted, {} warned beforehand; lead days median {:?}, p10 {:?}",
        big.len(),
        events.len(),
        leads.len(),
        warned.len(),
        sorted.get(sorted.len() / 2),
        sorted.get(sorted.len() / 10)
    );
    let under = (0..big.len()).filter(|i| factors[i % factors.len()] < 1.0).count();
    assert!(leads.len() >= under * 9 / 10, "{} exhausted of {under} under-granted", leads.len());
    // What README says of this replay: every allocation that ran out was warned before, with a
    // median lead of 7 days or more.
    assert_eq!(warned.len(), leads.len(), "every exhausted allocation is warned before it runs out");
    assert!(sorted[sorted.len() / 2] >= 7.0, "median lead {} days", sorted[sorted.len() / 2]);
    // Researchers of each exhausted allocation were among the recipients.
    let first = &leads[0]["subject"];
    assert!(events.iter().any(|e| e["subject"] == *first && e["recipients"].as_array().unwrap().iter().any(|r| r.as_str().unwrap().starts_with("pi-"))));
}
