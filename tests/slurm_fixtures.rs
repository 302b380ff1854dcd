//! The job JSON decoder on real answers from `../shared`: slurmrestd v0.0.41 (Slurm 24.05) and
//! v0.0.44 (Slurm 25.11) captured by the Slurm-web project, and v0.0.38 (Slurm 22.05) from the
//! reference lab — where the same jobs were also dumped with `sacct -P`, so both readers must
//! give the very same records. Under CI=true these must run; elsewhere they are skipped,
//! saying so, when the data is absent.

mod common;
use allocwatch::domain::job::{JobRecord, Units};
use allocwatch::sources::slurm_json::decode_jobs;
use allocwatch::sources::{read_stream, FileFormat, Parsed, SourceContext};
use common::*;
use std::path::Path;

fn decode(path: &Path) -> allocwatch::sources::slurm_json::JobsDocument {
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    decode_jobs(&doc, &path.display().to_string(), "dflt", 2_000_000_000).unwrap_or_else(|e| panic!("{e}"))
}

fn jobs(path: &Path) -> Vec<Parsed> {
    decode(path).items.into_iter().map(|i| i.unwrap_or_else(|e| panic!("{e}"))).collect()
}

fn job(path: &Path) -> JobRecord {
    match jobs(path).as_slice() {
        [Parsed::Job(j)] => j.clone(),
        other => panic!("{}: expected one job, got {other:?}", path.display()),
    }
}

/// v0.0.40 (Slurm 24.11.5) and v0.0.45 (Slurm 26.05.5), the versions those releases add at
/// each end of the range: the same five job runs read off the Debian-root labs
/// (tests/infra/slurm/root.sh; `GET /slurmdb/vX/jobs?start_time=uts…` on slurmrestd's socket).
/// The first run of the requeued job 4 comes as `["PENDING", "REQUEUED"]` and is charged.
#[test]
fn lab_answers_v0040_and_v0045_decode_every_run_the_requeued_one_charged() {
    let dir = root().join("tests/fixtures/slurmrestd");
    for (file, release, t0) in [("jobs-v0.0.40-slurm-24.11.5.json", "24.11.5", 1796229543), ("jobs-v0.0.45-slurm-26.05.5.json", "26.05.5", 1796229369)] {
        let d = decode(&dir.join(file));
        assert!(d.release.as_deref().is_some_and(|r| r.contains(release)), "{file}: {:?}", d.release);
        let runs: Vec<(u64, String, String, i64, i64, Units)> = d
            .items
            .into_iter()
            .map(|i| match i {
                Ok(Parsed::Job(j)) => (j.job_id_raw, j.account, j.partition, j.start_s - t0, j.elapsed_s, j.units),
                other => panic!("{file}: {other:?}"),
            })
            .collect();
        let u = |cpus, gpus, billing| Units { cpus, gpus, billing, nodes: 1 };
        let second = if release.starts_with("24") { (12, 3) } else { (14, 2) };
        assert_eq!(
            runs,
            vec![
                (4, "abc".into(), "cpu_p1".into(), 0, 1, u(1, 0, 1)),
                (1, "abc".into(), "cpu_p1".into(), 0, 3, u(2, 0, 2)),
                (2, "a0150612345".into(), "gpu_p13".into(), 0, 3, u(1, 2, 8)),
                (3, "a0160701234".into(), "cpu_bill".into(), 0, 2, u(2, 0, 4)),
                (4, "abc".into(), "cpu_p1".into(), second.0, second.1, u(1, 0, 1)),
            ],
            "{file}"
        );
    }
}

#[test]
fn slurm_web_answers_v0041_and_v0044_decode_without_a_rejected_job() {
    let Some(data) = shared_data("slurm_web_answers") else { return };
    let base = data.join("fixtures/slurm-web");
    let mut files = 0;
    for version in ["24.05_0.0.41", "25.11_0.0.44"] {
        for entry in std::fs::read_dir(base.join(version)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !name.starts_with("slurmdb-") {
                continue; // slurm-jobs.json is slurmctld's live queue, not accounting
            }
            let d = decode(&path);
            assert!(d.items.iter().all(Result::is_ok), "{name}: {:?}", d.items);
            assert!(d.release.as_deref().is_some_and(|r| r.starts_with(&version[..5])), "{name}: {:?}", d.release);
            files += 1;
        }
    }
    assert_eq!(files, 36);

    // v0.0.44: finished, 4 CPUs, 30 s.
    let j = job(&base.join("25.11_0.0.44/slurmdb-job-completed.json"));
    assert_eq!((j.job_id_raw, j.cluster.as_str(), j.account.as_str(), j.partition.as_str()), (5749, "hpc", "biology", "normal"));
    assert_eq!((j.end_s - j.start_s, j.elapsed_s, j.provisional), (30, 30, false));
    assert_eq!(j.units, Units { cpus: 4, gpus: 0, billing: 4, nodes: 1 });
    // Running (end 0): provisional, charged for the elapsed time the server reported; its
    // limit (2 minutes) commits the rest.
    let j = job(&base.join("24.05_0.0.41/slurmdb-job-running.json"));
    assert_eq!((j.job_id_raw, j.start_s, j.end_s, j.elapsed_s, j.provisional), (649722, 1747754478, 1747754478 + 88, 88, true));
    assert_eq!(j.time_limit_s, Some(120));
    assert_eq!(j.committed_unit_seconds(j.end_s).cpu, j.units.cpus as i64 * (120 - 88));
    let j = job(&base.join("25.11_0.0.44/slurmdb-job-gpus-multi-nodes.json"));
    assert_eq!((j.units.nodes, j.units.cpus, j.provisional), (2, 2, true));
    // A timed-out job is charged like a finished one.
    let j = job(&base.join("25.11_0.0.44/slurmdb-job-timeout.json"));
    assert_eq!((j.elapsed_s, j.provisional), (82, false));
    // Pending, even with a planned start: nothing consumed.
    for f in ["25.11_0.0.44/slurmdb-job-pending.json", "24.05_0.0.41/slurmdb-job-gpus-multi-types.json", "24.05_0.0.41/slurmdb-job-pending.json"] {
        assert_eq!(jobs(&base.join(f)), vec![Parsed::NotStarted], "{f}");
    }
    // No job: an empty answer with a warning, not a failure.
    let d = decode(&base.join("24.05_0.0.41/slurmdb-job-unfound.json"));
    assert!(d.items.is_empty() && d.warnings[0].contains("found nothing"), "{:?}", d.warnings);
}

#[test]
fn lab_v0038_rest_sacct_json_and_sacct_text_give_the_same_records() {
    let Some(data) = shared_data("lab_v0038_answers") else { return };
    let base = data.join("fixtures/slurm-lab-22.05");
    let only_jobs = |items: Vec<Parsed>| -> Vec<JobRecord> {
        items.into_iter().filter_map(|p| if let Parsed::Job(j) = p { Some(j) } else { None }).collect()
    };
    let mut rest = only_jobs(jobs(&base.join("rest_slurmdb_v0.0.38_jobs.json")));
    rest.sort_by_key(|j| j.job_id_raw);
    assert_eq!(rest.len(), 7);
    let mut unix = only_jobs(jobs(&base.join("rest_local_unix_slurmdb_jobs.json")));
    unix.sort_by_key(|j| j.job_id_raw);
    let mut sacct_json = only_jobs(jobs(&base.join("sacct.json")));
    sacct_json.sort_by_key(|j| j.job_id_raw);
    assert_eq!(unix, rest);
    assert_eq!(sacct_json, rest);
    // The same cluster's `sacct -P` (civil times, in the lab's UTC).
    let ctx = SourceContext { tz: jiff::tz::TimeZone::UTC, default_cluster: "dflt".into(), observed_at: 2_000_000_000 };
    let text = std::fs::read(base.join("sacct_X_P.txt")).unwrap();
    let mut items = Vec::new();
    read_stream(&text[..], "sacct_X_P.txt", &FileFormat::Sacct { fields: None }, &ctx, |i| items.push(i.unwrap())).unwrap();
    let mut text_jobs = only_jobs(items);
    text_jobs.sort_by_key(|j| j.job_id_raw);
    // The JSON carries each job's time limit (`time.limit`: 5 minutes for job 7, `null` for the
    // others, which ran in partitions with MaxTime=INFINITE); that dump has no Timelimit column.
    let limits: Vec<Option<i64>> = rest.iter().map(|j| j.time_limit_s).collect();
    assert_eq!(limits, vec![None, None, None, None, None, None, Some(300)]);
    let without_limits: Vec<JobRecord> = rest.iter().map(|j| JobRecord { time_limit_s: None, ..j.clone() }).collect();
    assert_eq!(text_jobs, without_limits, "sacct -P and slurmrestd disagree on the same jobs");
    let gpu4 = rest.iter().find(|j| j.job_id_raw == 4).unwrap();
    assert_eq!((gpu4.user.as_str(), gpu4.units), ("bob", Units { cpus: 2, gpus: 4, billing: 16, nodes: 1 }));
    // The REST filter by account returns a subset of the same records.
    let sub = only_jobs(jobs(&base.join("rest_slurmdb_v0.0.38_jobs_account.json")));
    assert_eq!(sub.len(), 2);
    assert!(sub.iter().all(|j| rest.contains(j)));
}
