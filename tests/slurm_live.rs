//! Live accounting from a REAL single-node Slurm cluster with slurmdbd and slurmrestd
//! (`tests/infra/slurm`, started by `tests/run.sh`, which exports its `env.sh`): the sacct and
//! slurmrestd sources through the real binary, incremental pulls, idempotence, slurmdbd
//! downtime, authentication errors, and agreement with `sreport` to the second.
//!
//! The same tests run on every lab `tests/run.sh` starts: Slurm 22.05 on the host's packages
//! and Slurm 26.05 (and, with `--slurm-matrix`, 24.11) chrooted in a Debian root. Nothing here
//! names a release: Slurm commands go through the lab's `SLURM_LAB_INROOT`, the sacct sources
//! of a root lab read through `command_prefix`, and slurmrestd is read at every data-parser
//! version the lab serves (`SLURM_LAB_REST_VERSIONS`).
//!
//! Without the lab these tests say SKIPPED; under CI=true its absence is a failure. They share
//! one cluster, so they run one at a time (`LAB_LOCK`) and leave it idle.

mod common;
use common::*;
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static LAB_LOCK: Mutex<()> = Mutex::new(());

/// The running lab, from the variables of its `env.sh`.
struct Lab {
    dir: PathBuf,
    jobs: PathBuf,
    token_cmd: PathBuf,
    url: String,
    socket: PathBuf,
    /// `DIR/inroot.sh`: runs one of this lab's programs (chrooted in its root, if it has one).
    inroot: PathBuf,
    /// The lab's Debian root; `None` for a lab on the host's packages.
    root: Option<String>,
    /// The data-parser versions its slurmrestd serves, oldest first.
    rest_versions: Vec<String>,
}

fn lab(test: &str) -> Option<Lab> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (var("SLURM_LAB_DIR"), var("SLURM_LAB_JOBS"), var("SLURM_LAB_TOKEN_CMD"), var("SLURMRESTD_URL"), var("SLURMRESTD_SOCKET")) {
        (Some(dir), Some(jobs), Some(token), Some(url), Some(socket)) if Path::new(&dir).join("env.sh").is_file() => Some(Lab {
            jobs: jobs.into(),
            token_cmd: token.into(),
            url,
            socket: socket.into(),
            inroot: var("SLURM_LAB_INROOT").map(PathBuf::from).unwrap_or_else(|| Path::new(&dir).join("inroot.sh")),
            root: var("SLURM_LAB_ROOT"),
            rest_versions: var("SLURM_LAB_REST_VERSIONS").unwrap_or_default().split_whitespace().map(String::from).collect(),
            dir: dir.into(),
        }),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: CI=true but no Slurm lab is up (SLURM_LAB_DIR…): tests/run.sh starts one");
            }
            eprintln!("SKIPPED {test}: no Slurm lab (run tests/run.sh, or tests/infra/slurm/start.sh DIR and source DIR/env.sh)");
            None
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Lab {
    /// One of the lab's own programs (`sacct`, `squeue`, `sreport`, `mariadb`): the host's
    /// 22.05 clients cannot talk to a 24.11 or 26.05 slurmdbd.
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(&self.inroot);
        c.arg(program);
        c
    }

    /// The `command_prefix` line of a sacct source for this lab: `inroot.sh` on a root lab
    /// (see [`all_sources`]), none on the host's.
    fn sacct_prefix(&self) -> String {
        match &self.root {
            Some(_) => format!("command_prefix = [\"{}\"]\n", self.inroot.display()),
            None => String::new(),
        }
    }

    /// The versions slurmrestd serves, checked to be there (a lab that served none would
    /// make the REST tests prove nothing).
    fn rest_versions(&self) -> &[String] {
        assert!(!self.rest_versions.is_empty(), "SLURM_LAB_REST_VERSIONS is empty: the lab's slurmrestd served no versioned path");
        &self.rest_versions
    }

    /// `jobs.sh DIR ARGS…`; returns its stdout (a job id for submissions).
    fn jobs(&self, args: &[&str]) -> String {
        let out = run(Command::new("bash").arg(&self.jobs).arg(&self.dir).args(args));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn wait_idle(&self) {
        self.jobs(&["wait-idle", "240"]);
    }

    fn token(&self, user: &str) -> String {
        let out = run(Command::new(&self.token_cmd).args([user, "600"]));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Stop or start slurmdbd with the lab's own helpers (by its recorded PID).
    fn slurmdbd(&self, action: &str) {
        let f = if action == "stop" { "stop_one slurmdbd" } else { "start_slurmdbd" };
        let lib = root().join("tests/infra/slurm/lib.sh");
        let script = format!("source '{}'; lab_init \"$1\"; cd \"$LAB\"; source \"$LAB/env.sh\"; {f}", lib.display());
        run(Command::new("bash").args(["-c", &script, "slurmdbd"]).arg(&self.dir));
    }

    /// Poll windowed sacct (what the sources see) until `id` shows in `state`.
    fn wait_visible(&self, id: &str, state: &str, since: i64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = run(self.cmd("sacct").args(["-a", "-X", "-n", "-P", "-o", "JobIDRaw,State", "-S", &format!("uts{since}"), "-E", "now"]));
            if String::from_utf8_lossy(&out.stdout).lines().any(|l| l == format!("{id}|{state}")) {
                return;
            }
            assert!(Instant::now() < deadline, "job {id} never showed as {state} in windowed sacct");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Poll squeue until job `id` has left it.
    fn wait_gone(&self, id: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let out = run(self.cmd("squeue").args(["-h", "-o", "%A"]));
            if !String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == id) {
                return;
            }
            assert!(Instant::now() < deadline, "job {id} still queued after {within:?}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A configuration for centre `lab` (zone Europe/Paris, so local days differ from UTC) with
/// one allocation per kind of charge, a project whose centre-side account (`abc`) differs
/// from its id, and `sources` appended. Grants are tiny so that seconds-long jobs show.
fn write_lab_config(dir: &Path, sources: &str) -> PathBuf {
    let today = jiff::Zoned::now().date();
    let start = today.checked_sub(jiff::Span::new().days(30)).unwrap();
    let end = today.checked_add(jiff::Span::new().days(335)).unwrap();
    std::fs::write(
        dir.join("alloc.csv"),
        format!(
            "project,centre,resource,period_start,period_end,granted_hours,accounts\n\
             A0150612345,lab,cpu,{start},{end},0.01,a0150612345\n\
             A0150612345,lab,gpu,{start},{end},0.005,A0150612345\n\
             A0160701234,lab,bill,{start},{end},0.002,a0160701234\n\
             A0999000001,lab,cpu,{start},{end},1,abc\n"
        ),
    )
    .unwrap();
    write_config(
        dir,
        &format!(
            r#"
[allocations]
files = ["alloc.csv"]
[[centre]]
id = "lab"
timezone = "Europe/Paris"
clusters = ["jeanzay"]
[[centre.billing]]
resource = "cpu"
partitions = ["cpu_p1"]
unit = "cpu"
[[centre.billing]]
resource = "gpu"
partitions = ["gpu_p13"]
unit = "gpu"
[[centre.billing]]
resource = "bill"
partitions = ["cpu_bill"]
unit = "billing"
{sources}
"#
        ),
    )
}

/// Every way to read the lab: sacct text, sacct --json, slurmrestd with a JWT minted by
/// `token_command` (the version it discovers, then each version it serves, pinned), and
/// slurmrestd on its unix socket. On a root lab the sacct sources run the root's `sacct`
/// through `command_prefix = [inroot.sh]`, as a centre reads a cluster whose clients live in
/// a chroot or a container. Not `["chroot", ROOT]` on its own: a bare chroot would not see
/// the lab's directory (slurm.conf, the munge socket), which `inroot.sh` binds into a private
/// mount namespace and names in `SLURM_CONF`.
fn all_sources(lab: &Lab) -> (String, Vec<String>) {
    let prefix = lab.sacct_prefix();
    let mut toml = format!(
        r#"
[[centre.source]]
kind = "sacct"
{prefix}
[[centre.source]]
kind = "sacct"
name = "sacct-json"
output = "json"
{prefix}
[[centre.source]]
kind = "slurmrestd"
url = "{url}"
user = "root"
token_command = ["{tok}", "root", "600"]
[[centre.source]]
kind = "slurmrestd"
name = "rest-unix"
socket = "{sock}"
"#,
        url = lab.url,
        tok = lab.token_cmd.display(),
        sock = lab.socket.display()
    );
    let mut names: Vec<String> = ["sacct", "sacct-json", "slurmrestd", "rest-unix"].map(String::from).into();
    for v in lab.rest_versions() {
        toml += &format!(
            "[[centre.source]]\nkind = \"slurmrestd\"\nname = \"rest-{v}\"\nurl = \"{url}\"\napi_version = \"{v}\"\nuser = \"root\"\ntoken_command = [\"{tok}\", \"root\", \"600\"]\n",
            url = lab.url,
            tok = lab.token_cmd.display()
        );
        names.push(format!("rest-{v}"));
    }
    (toml, names)
}

fn store_of(dir: &Path, source: &str) -> PathBuf {
    dir.join(format!("{source}.sqlite"))
}

fn pull(config: &Path, store: &Path, source: &str) -> String {
    ok(&["--config", config.to_str().unwrap(), "--store", store.to_str().unwrap(), "pull", "--source", source])
}

/// One stored job run: (account, partition, job id raw, start, end, elapsed, cpus, gpus,
/// billing, nodes, provisional).
type Row = (String, String, i64, i64, i64, i64, i64, i64, i64, i64, bool);

fn rows(store: &Path, since: i64) -> Vec<Row> {
    let c = Connection::open(store).unwrap();
    let mut st = c
        .prepare(
            "SELECT a.name, p.name, j.job_id_raw, j.start, j.end, j.elapsed, j.cpus, j.gpus, j.billing, j.nodes, j.provisional
             FROM jobs j JOIN names a ON a.id = j.account JOIN names p ON p.id = j.partition
             WHERE j.start >= ?1 ORDER BY j.job_id_raw, j.start",
        )
        .unwrap();
    st.query_map([since], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get::<_, i64>(10)? != 0))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// (ok, records, inserted, replaced, unchanged, error) of the last pull of a source.
fn last_pull(store: &Path, source: &str) -> (bool, i64, i64, i64, i64, Option<String>) {
    let c = Connection::open(store).unwrap();
    c.query_row(
        "SELECT ok, records, inserted, replaced, unchanged, error FROM pulls WHERE source = ?1 ORDER BY id DESC LIMIT 1",
        [source],
        |r| Ok((r.get::<_, i64>(0)? != 0, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
    )
    .unwrap()
}

fn watermark(store: &Path, source: &str) -> Option<i64> {
    let c = Connection::open(store).unwrap();
    c.query_row("SELECT watermark FROM watermarks WHERE source = ?1", [source], |r| r.get(0)).ok()
}

/// Per-account (cpu, gres/gpu, billing) seconds from `usage --format json` over [from, to).
fn usage_by_account(config: &Path, store: &Path, from: i64, to: i64) -> BTreeMap<String, [i64; 3]> {
    let ts = |s: i64| jiff::Timestamp::from_second(s).unwrap().to_string();
    let out = ok(&[
        "--config", config.to_str().unwrap(), "--store", store.to_str().unwrap(), "usage",
        "--from", &ts(from), "--to", &ts(to), "--format", "json",
    ]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).expect("usage json");
    let mut m: BTreeMap<String, [i64; 3]> = BTreeMap::new();
    for r in rows {
        let e = m.entry(r["account"].as_str().unwrap().to_string()).or_default();
        e[0] += r["cpu_seconds"].as_i64().unwrap();
        e[1] += r["gpu_seconds"].as_i64().unwrap();
        e[2] += r["billing_seconds"].as_i64().unwrap();
    }
    m.retain(|_, v| *v != [0, 0, 0]);
    m
}

/// Per-account (cpu, gres/gpu, billing) seconds from sreport over [from, to) (whole hours).
fn sreport_by_account(lab: &Lab, from: i64, to: i64) -> BTreeMap<String, [i64; 3]> {
    let local = |s: i64| jiff::Timestamp::from_second(s).unwrap().to_zoned(jiff::tz::TimeZone::system()).strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let out = run(lab.cmd("sreport").args([
        "-t", "seconds", "-n", "-P", "cluster", "AccountUtilizationByUser", "--tres=cpu,gres/gpu,billing",
        &format!("start={}", local(from)), &format!("end={}", local(to)),
    ]));
    let mut m: BTreeMap<String, [i64; 3]> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // Cluster|Account|Login|Proper Name|TRES Name|Used — account rows have no login.
        let f: Vec<&str> = line.split('|').collect();
        if f.len() != 6 || f[1] == "root" || !f[2].is_empty() {
            continue;
        }
        let used: i64 = f[5].parse().unwrap_or_else(|_| panic!("sreport line {line:?}"));
        let slot = match f[4] {
            "cpu" => 0,
            "gres/gpu" => 1,
            "billing" => 2,
            other => panic!("unexpected TRES {other} in {line:?}"),
        };
        m.entry(f[1].to_string()).or_default()[slot] += used;
    }
    m.retain(|_, v| *v != [0, 0, 0]);
    m
}

#[test]
fn live_pulls_of_every_kind_of_job_agree_across_sources_and_with_sreport() {
    let Some(lab) = lab("live_pulls_of_every_kind_of_job_agree_across_sources_and_with_sreport") else { return };
    let _guard = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (sources, names) = all_sources(&lab);
    let cfg = write_lab_config(dir.path(), &sources);
    lab.wait_idle();
    let t0 = now();

    // Every kind of job, all short; `long` is still running at the first pull.
    lab.jobs(&["cpu", "abc", "2", "3"]);
    lab.jobs(&["cpu", "A0150612345", "4", "2", "bob"]);
    lab.jobs(&["gpu", "a0150612345", "2", "3"]);
    lab.jobs(&["bill", "a0160701234", "2", "2"]);
    lab.jobs(&["array", "abc", "0-2", "2"]);
    let requeued = lab.jobs(&["requeue", "abc", "2"]);
    lab.jobs(&["fail", "orphanacct"]);
    lab.jobs(&["pending-cancel", "abc"]);
    lab.jobs(&["eligible-cancel", "abc"]);
    lab.wait_idle();
    let long = lab.jobs(&["long", "abc", "25"]);
    lab.wait_visible(&long, "RUNNING", t0);

    // First pull, each source into its own store.
    for s in names.iter().map(String::as_str) {
        pull(&cfg, &store_of(dir.path(), s), s);
    }
    let expected_runs = 2 + 1 + 1 + 3 + 2 + 1 + 1; // cpu×2, gpu, bill, array×3, requeue×2, fail, long
    for s in names.iter().map(String::as_str) {
        let r = rows(&store_of(dir.path(), s), t0);
        assert_eq!(r.len(), expected_runs, "{s}: {r:#?}");
        let provisional: Vec<&Row> = r.iter().filter(|x| x.10).collect();
        assert_eq!(provisional.len(), 1, "{s}: only the running job is provisional: {r:#?}");
        assert_eq!(provisional[0].2.to_string(), long, "{s}");
        assert!(provisional[0].5 < 25, "{s}: a running job is charged up to the pull: {:?}", provisional[0]);
        let (okp, _, _, _, _, _) = last_pull(&store_of(dir.path(), s), s);
        assert!(okp);
    }
    let r = rows(&store_of(dir.path(), "sacct"), t0);
    // Requeued: two runs of one job id, each charged.
    let runs: Vec<&Row> = r.iter().filter(|x| x.2.to_string() == requeued).collect();
    assert_eq!(runs.len(), 2, "{r:#?}");
    assert!(runs[0].3 < runs[1].3);
    // GPU job: gres/gpu=2 and billing floor(0.25 + 4×2) = 8; cpu_bill: billing = 2 × CPUs.
    let gpu = r.iter().find(|x| x.1 == "gpu_p13").unwrap();
    assert_eq!((gpu.0.as_str(), gpu.6, gpu.7, gpu.8), ("a0150612345", 1, 2, 8));
    let bill = r.iter().find(|x| x.1 == "cpu_bill").unwrap();
    assert_eq!((bill.6, bill.8), (2, 4));
    // The account given in upper case is stored lower-cased; array tasks are separate runs.
    assert_eq!(r.iter().filter(|x| x.0 == "a0150612345" && x.1 == "cpu_p1").count(), 1);
    assert_eq!(r.iter().filter(|x| x.0 == "abc" && x.1 == "cpu_p1" && x.6 == 1).count(), 3 + 2 + 1);
    // Cancelled before start (held, or eligible then cancelled): never charged.
    assert!(r.iter().all(|x| x.1 != "lab_hold"));

    // The running job ends; the second pull replaces its provisional record, nothing else.
    lab.wait_gone(&long, Duration::from_secs(120));
    lab.wait_idle();
    for s in names.iter().map(String::as_str) {
        let store = store_of(dir.path(), s);
        let before = watermark(&store, s).unwrap();
        pull(&cfg, &store, s);
        let (okp, records, inserted, replaced, _, _) = last_pull(&store, s);
        assert!(okp && records > 0);
        assert_eq!((inserted, replaced), (0, 1), "{s}: only the formerly running job changes");
        assert!(watermark(&store, s).unwrap() > before);
        let r = rows(&store, t0);
        assert_eq!(r.len(), expected_runs, "{s}");
        let l = r.iter().find(|x| x.2.to_string() == long).unwrap();
        assert!(!l.10 && l.5 >= 24, "{s}: the ended job is final with its whole elapsed time: {l:?}");
    }

    // More jobs, then a third pull: only they are new; nothing is counted twice.
    let t1 = now();
    lab.jobs(&["cpu", "abc", "1", "2"]);
    lab.jobs(&["gpu", "abc", "1", "2", "bob"]);
    lab.wait_idle();
    for s in names.iter().map(String::as_str) {
        let store = store_of(dir.path(), s);
        pull(&cfg, &store, s);
        let (_, _, inserted, replaced, _, _) = last_pull(&store, s);
        assert_eq!((inserted, replaced), (2, 0), "{s}");
        assert_eq!(rows(&store, t0).len(), expected_runs + 2, "{s}");
        assert_eq!(rows(&store, t1).len(), 2, "{s}");
    }

    // Every source gives the same ledger: every run, and the usage report.
    let reference = rows(&store_of(dir.path(), "sacct"), 0);
    let usage_ref = ok(&["--config", cfg.to_str().unwrap(), "--store", store_of(dir.path(), "sacct").to_str().unwrap(), "usage", "--group-by", "user,day", "--format", "json"]);
    for s in &names[1..] {
        assert_eq!(rows(&store_of(dir.path(), s), 0), reference, "{s} differs from sacct");
        let u = ok(&["--config", cfg.to_str().unwrap(), "--store", store_of(dir.path(), s).to_str().unwrap(), "usage", "--group-by", "user,day", "--format", "json"]);
        assert_eq!(u, usage_ref, "{s}: usage differs from sacct's");
    }

    // `check` pulls the live sources itself (all of them into one store, idempotently).
    let check_store = dir.path().join("check.sqlite");
    let table = ok(&["--config", cfg.to_str().unwrap(), "--store", check_store.to_str().unwrap(), "check"]);
    assert_eq!(rows(&check_store, 0), reference, "check pulled the same runs");
    assert!(table.contains("A0999000001") && table.contains("orphanacct"), "{table}");
    let rows_json: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&["--config", cfg.to_str().unwrap(), "--store", check_store.to_str().unwrap(), "check", "--no-pull", "--format", "json"])).unwrap();
    let abc_hours = f(find(&rows_json, "A0999000001", "cpu"), "consumed_hours");
    let abc = usage_by_account(&cfg, &check_store, 0, now() + 60)["abc"];
    let abc_cpu_p1_s: i64 = reference.iter().filter(|x| x.0 == "abc" && x.1 == "cpu_p1").map(|x| x.6 * x.5).sum();
    assert!(abc[0] >= abc_cpu_p1_s && (abc_hours - abc_cpu_p1_s as f64 / 3600.0).abs() < 1e-9, "{abc_hours} h vs {abc_cpu_p1_s} s");
    let _ = std::fs::create_dir_all(root().join("target"));
    std::fs::write(root().join("target/slurm-live-check.txt"), &table).unwrap();
    println!("check table from the live cluster:\n{table}");

    // sreport, once slurmdbd has rolled the hours up, agrees to the second per account.
    let out = lab.jobs(&["rollup"]);
    let mut it = out.split_whitespace();
    let civil = |s: &str| s.parse::<jiff::civil::DateTime>().unwrap().to_zoned(jiff::tz::TimeZone::system()).unwrap().timestamp().as_second();
    let (from, to) = (civil(it.next().unwrap()), civil(it.next().unwrap()));
    let sacct_store = store_of(dir.path(), "sacct");
    pull(&cfg, &sacct_store, "sacct");
    let mut compared = 0;
    for h in (from..to).step_by(3600) {
        let ours = usage_by_account(&cfg, &sacct_store, h, h + 3600);
        let theirs = sreport_by_account(&lab, h, h + 3600);
        assert_eq!(ours, theirs, "hour starting {}: allocwatch (left) vs sreport (right)", jiff::Timestamp::from_second(h).unwrap());
        compared += theirs.values().filter(|v| v[0] > 0).count();
    }
    assert!(compared >= 3, "sreport compared on too few accounts ({compared}): the test would prove nothing");
    let whole = usage_by_account(&cfg, &sacct_store, from, to);
    assert!(whole["abc"][0] > 0 && whole["a0150612345"][1] > 0 && whole["a0160701234"][2] > 0, "{whole:?}");
}

#[test]
fn a_pull_during_slurmdbd_downtime_fails_cleanly_and_the_next_catches_up() {
    let Some(lab) = lab("a_pull_during_slurmdbd_downtime_fails_cleanly_and_the_next_catches_up") else { return };
    let _guard = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_lab_config(dir.path(), &all_sources(&lab).0);
    lab.wait_idle();
    let sources = ["sacct", "slurmrestd"];
    for s in sources {
        pull(&cfg, &store_of(dir.path(), s), s);
    }
    let marks: Vec<i64> = sources.iter().map(|s| watermark(&store_of(dir.path(), s), s).unwrap()).collect();
    let t0 = now();

    lab.slurmdbd("stop");
    // Jobs keep running; slurmctld queues their records for slurmdbd.
    let id = lab.jobs(&["cpu", "abc", "1", "2"]);
    let failures = [("sacct", "Problem talking to the database"), ("slurmrestd", "Unable to connect to database")];
    let outcome = std::panic::catch_unwind(|| {
        for (s, why) in failures {
            let store = store_of(dir.path(), s);
            let out = aw(&["--config", cfg.to_str().unwrap(), "--store", store.to_str().unwrap(), "pull", "--source", s]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{s}: {err}");
            assert!(err.contains(&format!("centre lab, source {s}")) && err.contains(why), "{s}: {err}");
            let (okp, records, ..) = last_pull(&store, s);
            let error = last_pull(&store, s).5.unwrap_or_default();
            assert!(!okp && records == 0 && error.contains(why), "{s}: the failure is recorded: {error}");
        }
    });
    lab.slurmdbd("start");
    if let Err(p) = outcome {
        std::panic::resume_unwind(p);
    }
    for (s, mark) in sources.iter().zip(&marks) {
        assert_eq!(watermark(&store_of(dir.path(), s), s), Some(*mark), "{s}: a failed pull moves no watermark");
    }

    lab.wait_gone(&id, Duration::from_secs(60));
    lab.wait_idle();
    for s in sources {
        let store = store_of(dir.path(), s);
        pull(&cfg, &store, s);
        let r = rows(&store, t0);
        assert_eq!(r.len(), 1, "{s}: the job run during the outage is caught up: {r:?}");
        assert_eq!((r[0].2.to_string(), r[0].0.as_str(), r[0].6, r[0].10), (id.clone(), "abc", 1, false), "{s}");
    }
    assert_eq!(rows(&store_of(dir.path(), "sacct"), 0), rows(&store_of(dir.path(), "slurmrestd"), 0));
}

#[test]
fn a_missing_or_wrong_slurmrestd_token_is_refused_by_name_naming_the_centre() {
    let Some(lab) = lab("a_missing_or_wrong_slurmrestd_token_is_refused_by_name_naming_the_centre") else { return };
    let _guard = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let good = lab.token("root");
    // The same token with its signature altered: slurmdbd refuses it.
    let wrong = format!("{}{}", &good[..good.len() - 2], if good.ends_with("AA") { "BB" } else { "AA" });
    std::fs::write(dir.path().join("good.jwt"), format!("{good}\n")).unwrap();
    std::fs::write(dir.path().join("wrong.jwt"), &wrong).unwrap();
    let cfg = write_lab_config(
        dir.path(),
        &format!(
            r#"
[[centre.source]]
kind = "slurmrestd"
name = "no-token"
url = "{url}"
[[centre.source]]
kind = "slurmrestd"
name = "wrong-token"
url = "{url}"
user = "root"
token_file = "wrong.jwt"
[[centre.source]]
kind = "slurmrestd"
name = "good-token"
url = "{url}"
user = "root"
token_file = "good.jwt"
"#,
            url = lab.url
        ),
    );
    let store = dir.path().join("s.sqlite");
    for (name, why) in [("no-token", "no token is configured"), ("wrong-token", "the token for user \"root\" was refused")] {
        let out = aw(&["--config", cfg.to_str().unwrap(), "--store", store.to_str().unwrap(), "pull", "--source", name]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        // 22.05 refuses with 401 (or error 1007 in a 200); 24.11 and 26.05 answer a token
        // slurmdbd refuses as slurmdbd being down (502, error 7000), and slurmctld's ping
        // with the same token tells which.
        assert!(err.contains(&format!("centre lab, source {name}")) && err.contains("refused authentication (") && err.contains(why), "{name}: {err}");
        assert!(!err.contains(&good[20..]) && !err.contains(&wrong[20..]), "the token must never be shown: {err}");
        let (okp, _, _, _, _, error) = last_pull(&store, name);
        let error = error.unwrap_or_default();
        assert!(!okp && error.contains("refused authentication") && !error.contains(&wrong[20..]), "{error}");
        assert_eq!(watermark(&store, name), None);
    }
    // The control: the right token works.
    pull(&cfg, &store, "good-token");
    assert!(last_pull(&store, "good-token").0);
}

#[test]
fn an_api_version_or_path_the_server_does_not_serve_is_named() {
    let Some(lab) = lab("an_api_version_or_path_the_server_does_not_serve_is_named") else { return };
    let _guard = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.jwt"), lab.token("root")).unwrap();
    let source = |name: &str, url: &str, version: &str| {
        format!("[[centre.source]]\nkind = \"slurmrestd\"\nname = \"{name}\"\nurl = \"{url}\"\napi_version = \"{version}\"\nuser = \"root\"\ntoken_file = \"good.jwt\"\n")
    };
    let bad_prefix = format!("{}/not-slurm", lab.url);
    let served = lab.rest_versions();
    // A version allocwatch reads that this release does not serve (22.05 serves only v0.0.38,
    // 24.11 neither, 26.05 v0.0.42 to v0.0.45).
    let unserved = ["v0.0.44", "v0.0.38"].into_iter().find(|v| !served.iter().any(|s| s == v)).unwrap();
    let newest = served.last().unwrap();
    let cfg = write_lab_config(
        dir.path(),
        &[source("unserved", &lab.url, unserved), source("no-openapi", &bad_prefix, "auto"), source("no-jobs", &bad_prefix, newest)].concat(),
    );
    for (name, want) in [
        ("unserved", format!("does not serve api_version {unserved} (it serves {})", served.join(", "))),
        ("no-openapi", "no OpenAPI document at /openapi/v3 or /openapi".to_string()),
        ("no-jobs", format!("has no GET /slurmdb/{newest}/jobs (HTTP 404)")),
    ] {
        let out = aw(&["--config", cfg.to_str().unwrap(), "pull", "--source", name]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(&format!("centre lab, source {name}: ")) && err.contains(&want), "{name}: {err}");
    }
}

#[test]
fn a_sacct_that_hangs_is_killed_at_its_timeout_and_the_failure_recorded() {
    // No cluster needed: the prefix never gets as far as running sacct.
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_lab_config(
        dir.path(),
        r#"
[[centre.source]]
kind = "sacct"
command_prefix = ["sh", "-c", "sleep 120; exec \"$@\"", "sh"]
timeout_seconds = 2
"#,
    );
    let started = Instant::now();
    let out = aw(&["--config", cfg.to_str().unwrap(), "pull"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("centre lab, source sacct") && err.contains("timed out after 2 s (killed)"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    let store = dir.path().join("store.sqlite");
    let (okp, _, _, _, _, error) = last_pull(&store, "sacct");
    assert!(!okp && error.unwrap_or_default().contains("timed out"));
    assert_eq!(watermark(&store, "sacct"), None);
}

/// Gentle pulls: after a source's first pull (a deep one), pulls reach back only
/// `recent_overlap_minutes` before the watermark, so a finished job is not fetched again and
/// again; a record slurmdbd corrects later than that (here its time limit, changed in
/// slurmdbd's own tables as an administrator's fix would be) is read again by the next deep
/// re-scan — `pull --deep` here, once a day by default — and replaces the stored one.
#[test]
fn a_record_corrected_after_the_recent_overlap_is_read_again_by_the_deep_rescan() {
    let Some(lab) = lab("a_record_corrected_after_the_recent_overlap_is_read_again_by_the_deep_rescan") else { return };
    let _guard = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let socket = std::env::var("SLURM_LAB_MYSQL_SOCKET").expect("SLURM_LAB_MYSQL_SOCKET (the lab's env.sh)");
    let cluster = std::env::var("SLURM_LAB_CLUSTER").unwrap_or_else(|_| "jeanzay".into());
    let dir = tempfile::tempdir().unwrap();
    // recent_overlap_minutes = 0: a pull after the first starts at the watermark, after the
    // job ended (with the default hour the job would be seen again for an hour).
    let cfg = write_lab_config(dir.path(), &format!("[[centre.source]]\nkind = \"sacct\"\nrecent_overlap_minutes = 0\n{}", lab.sacct_prefix()));
    let store = dir.path().join("store.sqlite");
    lab.wait_idle();
    let id = lab.jobs(&["cpu", "abc", "1", "1"]);
    lab.wait_idle();
    // The first pull must come after the job's last second (a window includes the jobs that
    // end in its first second): wait for slurmdbd's end time to be in the past.
    let end = wait_for(60, "the job's end in slurmdbd", || {
        let out = run(lab.cmd("sacct").env("SLURM_TIME_FORMAT", "%s").args(["-j", &id, "-X", "-n", "-P", "-o", "End"]));
        String::from_utf8_lossy(&out.stdout).trim().parse::<i64>().ok()
    });
    wait_for(10, "a second after the job's end", || (now() > end + 1).then_some(()));
    let limit = |store: &Path| -> Option<i64> {
        Connection::open(store).unwrap().query_row("SELECT time_limit_s FROM jobs WHERE job_id_raw = ?1", [id.parse::<i64>().unwrap()], |r| r.get(0)).unwrap()
    };
    let pull_text = |extra: &[&str]| ok(&[&["--config", cfg.to_str().unwrap(), "pull"], extra].concat());
    // The first pull reaches back first_pull_days: deep.
    let first = pull_text(&[]);
    assert!(first.contains("(deep re-scan)"), "{first}");
    let stored = limit(&store).expect("the job's time limit is stored");
    // An administrator's correction in slurmdbd, after the job ended and after that pull.
    let sql = format!("UPDATE {cluster}_job_table SET timelimit = timelimit + 7 WHERE id_job = {id}");
    run(lab.cmd("mariadb").args(["--no-defaults", "-S", &socket, "-uroot", "slurm_acct_db", "-e", &sql]));
    // A frequent pull starts at the watermark: the job ended before it, it is not fetched.
    let recent = pull_text(&[]);
    assert!(!recent.contains("deep re-scan"), "{recent}");
    assert_eq!(limit(&store), Some(stored), "a recent pull does not reach the corrected job");
    let (okp, _, _, replaced, _, _) = last_pull(&store, "sacct");
    assert!(okp && replaced == 0, "{recent}");
    // The deep re-scan reads it again: replaced, with the corrected limit.
    let deep = pull_text(&["--deep"]);
    assert!(deep.contains("(deep re-scan)"), "{deep}");
    let (okp, _, _, replaced, _, _) = last_pull(&store, "sacct");
    assert!(okp && replaced == 1, "the corrected record replaces the stored one: {deep}");
    assert_eq!(limit(&store), Some(stored + 7 * 60), "{deep}");
    // The re-scan is recorded: the next pull is a recent one again.
    let next = pull_text(&[]);
    assert!(!next.contains("deep re-scan"), "{next}");
}
