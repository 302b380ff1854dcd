//! Synthetic Slurm accounting for benchmarks: a deterministic generator whose job sizes,
//! durations, waits, daily volumes and account popularity follow distributions fitted to the
//! CEA Curie trace (`benches/curie-fit.json`, written by `benches/fit_curie.py`).
//!
//! It writes Open XDMoD's 26-field sacct dumps (import them with `--fields xdmod`) or SWF, for
//! several clusters and partitions, CPU and GPU jobs, array tasks, requeued runs, jobs still
//! running or pending at the dump instant, and a few hundred accounts.
//!
//! Determinism: the PRNG is an in-tree xoshiro256** seeded by SplitMix64, and every draw is
//! integer arithmetic on the fitted histograms (no floats), so the same seed gives the same
//! bytes on any machine and across crate upgrades (a PRNG crate's streams and sampling
//! methods may change with its major versions).

use allocwatch::domain::civil::{format_civil, LocalClock};
use jiff::tz::TimeZone;
use serde::Deserialize;
use std::fmt::Write as _;
use std::io::{self, Write};

/// The fitted parameters, committed with the code (the trace itself is not).
pub const CURIE_FIT_JSON: &str = include_str!("../../../benches/curie-fit.json");

/// An integer histogram: bin `i` covers `[edges[i], edges[i+1])` with weight `counts[i]`.
#[derive(Debug, Clone, Deserialize)]
pub struct Histogram {
    /// Bin edges, increasing.
    pub edges: Vec<u64>,
    /// Weight of each bin.
    pub counts: Vec<u64>,
}

/// Distributions of one kind of node (thin CPU, large-memory CPU, GPU) in the trace.
#[derive(Debug, Clone, Deserialize)]
pub struct KindFit {
    /// Jobs of that kind in the trace.
    pub jobs: u64,
    /// The most frequent allocated-processor counts, with their job counts.
    pub size_top: Vec<(u64, u64)>,
    /// The other sizes, log-binned.
    pub size_tail: Histogram,
    /// Run times, seconds.
    pub runtime_s: Histogram,
}

/// Parameters fitted to the trace.
#[derive(Debug, Clone, Deserialize)]
pub struct CurieFit {
    /// Daily volume relative to the mean (percent, weight).
    pub daily_volume_pct: Vec<(u64, u64)>,
    /// Submissions per local hour of the day.
    pub submit_hour: Vec<u64>,
    /// Wait times, seconds.
    pub wait_s: Histogram,
    /// Job outcomes.
    pub status: StatusFit,
    /// Per node kind.
    pub kinds: std::collections::BTreeMap<String, KindFit>,
    /// Jobs per group, most active first (the popularity curve of accounts).
    pub group_jobs_by_rank: Vec<u64>,
    /// Users per group (users, groups).
    pub users_per_group: Vec<(u64, u64)>,
    /// Most requested time limits (seconds, jobs).
    pub timelimit_top: Vec<(u64, u64)>,
}

/// Job outcomes in the trace.
#[derive(Debug, Clone, Deserialize)]
pub struct StatusFit {
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
}

impl CurieFit {
    /// The committed fit.
    pub fn load() -> CurieFit {
        serde_json::from_str(CURIE_FIT_JSON).expect("benches/curie-fit.json is valid (checked by a unit test)")
    }
}

/// xoshiro256** (Blackman & Vigna), seeded with SplitMix64: small, fast and fixed forever.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator for `seed`; distinct `stream`s give independent sequences.
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut x = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng { s: [next(), next(), next(), next()] }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let r = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        r
    }

    /// Uniform in `[0, n)` (multiply-high; `n = 0` gives 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// Sampling from integer weights by cumulative sums.
#[derive(Debug, Clone)]
struct Weighted {
    cumulative: Vec<u64>,
}

impl Weighted {
    fn new(weights: impl IntoIterator<Item = u64>) -> Weighted {
        let mut total = 0;
        let cumulative = weights
            .into_iter()
            .map(|w| {
                total += w;
                total
            })
            .collect();
        Weighted { cumulative }
    }
    fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }
    fn sample(&self, rng: &mut Rng) -> usize {
        let x = rng.below(self.total());
        self.cumulative.partition_point(|&c| c <= x)
    }
}

/// A histogram ready to sample: a bin by weight, then uniformly inside it.
#[derive(Debug, Clone)]
struct Binned {
    edges: Vec<u64>,
    bins: Weighted,
}

impl Binned {
    fn new(h: &Histogram) -> Binned {
        Binned { edges: h.edges.clone(), bins: Weighted::new(h.counts.iter().copied()) }
    }
    fn sample(&self, rng: &mut Rng) -> u64 {
        let i = self.bins.sample(rng);
        let (lo, hi) = (self.edges[i], self.edges[i + 1]);
        lo + rng.below(hi - lo)
    }
}

/// Sizes: one of the frequent exact values, or a log-binned rarer one.
#[derive(Debug, Clone)]
struct SizeDist {
    top: Vec<u64>,
    choice: Weighted,
    tail: Binned,
}

impl SizeDist {
    fn new(k: &KindFit) -> SizeDist {
        let tail_total: u64 = k.size_tail.counts.iter().sum();
        SizeDist {
            top: k.size_top.iter().map(|p| p.0).collect(),
            choice: Weighted::new(k.size_top.iter().map(|p| p.1).chain([tail_total])),
            tail: Binned::new(&k.size_tail),
        }
    }
    fn sample(&self, rng: &mut Rng) -> u64 {
        let i = self.choice.sample(rng);
        if i < self.top.len() {
            self.top[i]
        } else {
            self.tail.sample(rng).max(1)
        }
    }
}

/// One partition of the synthetic centre (the layout is declared, not fitted: Curie's trace
/// has one cluster; its node kinds give each partition its size and run-time distributions).
#[derive(Debug, Clone, Copy)]
pub struct PartitionShape {
    /// Cluster name.
    pub cluster: &'static str,
    /// Partition name.
    pub partition: &'static str,
    /// Curie node kind whose distributions it follows: `thin`, `large` or `gpu`.
    pub kind: &'static str,
    /// Cores per node.
    pub cores_per_node: u64,
    /// GPUs per node (0 for CPU partitions).
    pub gpus_per_node: u64,
    /// Relative weight among the partitions of the same kind.
    pub weight: u64,
    /// Node name prefix.
    pub node_prefix: &'static str,
}

/// The synthetic centre: three clusters with thin, large-memory and GPU partitions.
pub const LAYOUT: [PartitionShape; 8] = [
    PartitionShape { cluster: "irene", partition: "skylake", kind: "thin", cores_per_node: 48, gpus_per_node: 0, weight: 4, node_prefix: "irene" },
    PartitionShape { cluster: "irene", partition: "xlarge", kind: "large", cores_per_node: 112, gpus_per_node: 0, weight: 3, node_prefix: "irenex" },
    PartitionShape { cluster: "irene", partition: "v100", kind: "gpu", cores_per_node: 40, gpus_per_node: 4, weight: 3, node_prefix: "irenev" },
    PartitionShape { cluster: "jeanzay", partition: "cpu_p1", kind: "thin", cores_per_node: 40, gpus_per_node: 0, weight: 3, node_prefix: "r" },
    PartitionShape { cluster: "jeanzay", partition: "gpu_p5", kind: "gpu", cores_per_node: 64, gpus_per_node: 8, weight: 4, node_prefix: "jzxh" },
    PartitionShape { cluster: "adastra", partition: "genoa", kind: "thin", cores_per_node: 192, gpus_per_node: 0, weight: 3, node_prefix: "c" },
    PartitionShape { cluster: "adastra", partition: "hpda", kind: "large", cores_per_node: 96, gpus_per_node: 0, weight: 1, node_prefix: "h" },
    PartitionShape { cluster: "adastra", partition: "mi250", kind: "gpu", cores_per_node: 64, gpus_per_node: 8, weight: 3, node_prefix: "g" },
];

/// Output format of the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenFormat {
    /// Open XDMoD's 26-field sacct `-P` dump, no header, centre-local civil times.
    Sacct,
    /// Standard Workload Format with a header.
    Swf,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Records (lines) to write.
    pub jobs: u64,
    /// Seed.
    pub seed: u64,
    /// Accounts (projects).
    pub accounts: u64,
    /// Records per day on average (the Curie rate × 3 clusters by default).
    pub jobs_per_day: u64,
    /// First day, as local day number (days since 1970-01-01).
    pub first_day: i32,
    /// Zone of the centre (sacct civil times, day boundaries).
    pub tz: TimeZone,
    /// Format.
    pub format: GenFormat,
}

impl GenOptions {
    /// Defaults: 300 accounts, Curie's daily rate on each of the three clusters, from
    /// 2024-01-01 in Europe/Paris.
    pub fn new(jobs: u64, seed: u64, format: GenFormat) -> GenOptions {
        GenOptions {
            jobs,
            seed,
            accounts: 300,
            jobs_per_day: 3 * 1232,
            first_day: allocwatch::domain::time::day_number(jiff::civil::Date::constant(2024, 1, 1)),
            tz: TimeZone::get("Europe/Paris").unwrap_or(TimeZone::UTC),
            format,
        }
    }
}

/// What a generation produced, for the caller's summary and for building allocations.
#[derive(Debug, Clone, Default)]
pub struct GenSummary {
    /// Records written.
    pub records: u64,
    /// Of which still running at the dump instant.
    pub running: u64,
    /// Of which never started by then (pending or cancelled before start).
    pub not_started: u64,
    /// Array tasks.
    pub array_tasks: u64,
    /// Requeued runs (first runs of requeued jobs).
    pub requeued: u64,
    /// The dump instant (epoch seconds): the end of the last simulated day.
    pub dump_at: i64,
    /// First and last local day with submissions.
    pub days: (i32, i32),
    /// Account names, index = account id.
    pub accounts: Vec<String>,
    /// Charged unit-seconds per (account, partition index in [`LAYOUT`], year) of finished
    /// and running runs, in the partition's billing unit (CPU- or GPU-seconds).
    pub usage: std::collections::BTreeMap<(usize, usize, i16), u64>,
}

struct Account {
    name: String,
    gid: u64,
    users: Vec<(String, u64)>,
    partitions: Vec<usize>,
    partition_pick: Weighted,
}

struct Run {
    start: i64,
    end: i64,
    state: &'static str,
    exit: &'static str,
}

/// Generate `opts.jobs` records into `out`.
pub fn generate(opts: &GenOptions, out: &mut impl Write) -> io::Result<GenSummary> {
    let fit = CurieFit::load();
    let mut rng = Rng::new(opts.seed, 1);
    let mut clock = LocalClock::new(&opts.tz);
    let kinds: Vec<(&str, SizeDist, Binned, u64)> = ["thin", "large", "gpu"]
        .iter()
        .map(|k| {
            let f = &fit.kinds[*k];
            (*k, SizeDist::new(f), Binned::new(&f.runtime_s), f.jobs)
        })
        .collect();
    let wait = Binned::new(&fit.wait_s);
    let hours = Weighted::new(fit.submit_hour.iter().copied());
    let volume = Weighted::new(fit.daily_volume_pct.iter().map(|p| p.1));
    let status = Weighted::new([fit.status.completed, fit.status.failed, fit.status.cancelled]);
    let limits: Vec<u64> = fit.timelimit_top.iter().map(|p| p.0).collect();
    let limit_pick = Weighted::new(fit.timelimit_top.iter().map(|p| p.1));
    let users_pick = Weighted::new(fit.users_per_group.iter().map(|p| p.1));

    // Accounts: popularity follows the trace's groups by rank, stretched to the count asked.
    let n_acc = opts.accounts.max(1);
    let curve = &fit.group_jobs_by_rank;
    let mut acc_rng = Rng::new(opts.seed, 2);
    let kind_weight = |k: &str| kinds.iter().find(|x| x.0 == k).map(|x| x.3).unwrap_or(1);
    let mut accounts = Vec::with_capacity(n_acc as usize);
    let mut next_uid = 20_000u64;
    for i in 0..n_acc {
        let n_users = fit.users_per_group[users_pick.sample(&mut acc_rng)].0.max(1);
        let users = (0..n_users)
            .map(|_| {
                next_uid += 1 + acc_rng.below(7);
                (format!("u{next_uid}"), next_uid)
            })
            .collect();
        // Each project runs on one to three partitions (its allocations' resources).
        let mut partitions = Vec::new();
        let want = 1 + acc_rng.below(3) as usize;
        let layout_pick = Weighted::new(LAYOUT.iter().map(|p| p.weight * kind_weight(p.kind) / 1000 + 1));
        while partitions.len() < want {
            let p = layout_pick.sample(&mut acc_rng);
            if !partitions.contains(&p) {
                partitions.push(p);
            }
        }
        let partition_pick = Weighted::new(partitions.iter().map(|&p| LAYOUT[p].weight * kind_weight(LAYOUT[p].kind)));
        accounts.push(Account { name: format!("gen{:04}", 1000 + i), gid: 100_000 + i, users, partitions, partition_pick });
    }
    let acc_pick = Weighted::new((0..n_acc).map(|r| curve[(r * curve.len() as u64 / n_acc) as usize]));

    // Daily volumes, from their own stream so that the dump instant is known up front.
    let mut vol_rng = Rng::new(opts.seed, 3);
    let mut per_day = Vec::new();
    let mut total = 0u64;
    while total < opts.jobs {
        let pct = fit.daily_volume_pct[volume.sample(&mut vol_rng)].0;
        let n = (opts.jobs_per_day * pct / 100).min(opts.jobs - total);
        per_day.push(n);
        total += n;
    }
    let last_day = opts.first_day + per_day.len() as i32 - 1;
    let dump_at = clock.day_start(last_day + 1);
    let mut summary = GenSummary {
        dump_at,
        days: (opts.first_day, last_day),
        accounts: accounts.iter().map(|a| a.name.clone()).collect(),
        ..Default::default()
    };

    if opts.format == GenFormat::Swf {
        writeln!(out, "; Version: 2.2\n; Computer: allocwatch synthetic centre (fitted to CEA Curie)")?;
        writeln!(out, "; UnixStartTime: {}\n; TimeZoneString: {}", clock.day_start(opts.first_day), opts.tz.iana_name().unwrap_or("UTC"))?;
        for (i, p) in LAYOUT.iter().enumerate() {
            writeln!(out, "; Partition: {} {}", i + 1, p.partition)?;
        }
    }
    let origin = clock.day_start(opts.first_day);
    let mut next_id = 1_000_000u64;
    let mut line = String::with_capacity(512);
    let mut submits: Vec<i64> = Vec::new();
    for (d, &n) in per_day.iter().enumerate() {
        let day = opts.first_day + d as i32;
        let day_s = clock.day_start(day);
        submits.clear();
        submits.extend((0..n).map(|_| day_s + hours.sample(&mut rng) as i64 * 3600 + rng.below(3600) as i64));
        submits.sort_unstable();
        let mut i = 0usize;
        while i < submits.len() {
            let acc_i = acc_pick.sample(&mut rng);
            let acc = &accounts[acc_i];
            let (user, uid) = acc.users[rng.below(acc.users.len() as u64) as usize].clone();
            let p_i = acc.partitions[acc.partition_pick.sample(&mut rng)];
            let shape = &LAYOUT[p_i];
            let k = kinds.iter().find(|x| x.0 == shape.kind).expect("layout kinds are fitted");
            let cpus = k.1.sample(&mut rng);
            let nodes = cpus.div_ceil(shape.cores_per_node).max(1);
            let gpus = if shape.gpus_per_node > 0 { (cpus * shape.gpus_per_node).div_ceil(shape.cores_per_node).max(1) } else { 0 };
            // Every record takes one of the day's slots: array tasks and requeued runs included.
            let slots = (submits.len() - i) as u64;
            let submit = submits[i];
            // Arrays: 1 % of submissions, 2 to 32 tasks submitted together.
            let tasks = if rng.chance(10) { (2 + rng.below(31)).min(slots) } else { 1 };
            let mut used = 0u64;
            let base = next_id;
            let limit = limits[limit_pick.sample(&mut rng)];
            let jobname = {
                let mut s = String::with_capacity(64);
                for _ in 0..4 {
                    let _ = write!(s, "{:016x}", rng.next_u64());
                }
                s
            };
            for t in 0..tasks {
                let raw = next_id;
                next_id += 1;
                let job_id = if tasks > 1 { format!("{base}_{t}") } else { raw.to_string() };
                let runtime = k.2.sample(&mut rng);
                let start = submit + wait.sample(&mut rng) as i64;
                let outcome = status.sample(&mut rng);
                // A third of cancellations happen before the job starts.
                let never_started = outcome == 2 && rng.chance(333);
                let mut runs: Vec<Run> = Vec::with_capacity(2);
                // Requeues: 0.5 % of jobs lose a first run to a node failure (sacct -D shows both).
                if !never_started && rng.chance(5) && runtime > 60 && used + (tasks - t) < slots {
                    let first_end = start + 1 + rng.below(runtime / 2) as i64;
                    runs.push(Run { start, end: first_end, state: "REQUEUED", exit: "0:0" });
                    let restart = first_end + 60 + rng.below(3600) as i64;
                    runs.push(Run { start: restart, end: restart + runtime as i64, state: "", exit: "" });
                } else {
                    runs.push(Run { start, end: start + runtime as i64, state: "", exit: "" });
                }
                // sacct prints local civil times: one in the hour a DST change repeats reads back
                // as its first occurrence (and can put End before Start). Real dumps have that
                // flaw; benchmark data must not, so such runs move an hour later.
                for run in &mut runs {
                    let shift = readable(&mut clock, run.start) - run.start;
                    run.start += shift;
                    run.end = readable(&mut clock, run.end + shift);
                }
                let last = runs.len() - 1;
                let (state, exit) = if runtime >= limit {
                    ("TIMEOUT", "0:1")
                } else {
                    match outcome {
                        0 => ("COMPLETED", "0:0"),
                        1 => ("FAILED", "1:0"),
                        _ => ("CANCELLED", "0:15"),
                    }
                };
                runs[last].state = state;
                runs[last].exit = exit;
                for (r_i, run) in runs.iter().enumerate() {
                    used += 1;
                    let pending = never_started || run.start >= dump_at;
                    let running = !pending && run.end > dump_at;
                    let end = run.end.min(dump_at);
                    let state = if never_started {
                        "CANCELLED"
                    } else if pending {
                        "PENDING"
                    } else if running {
                        "RUNNING"
                    } else {
                        run.state
                    };
                    summary.records += 1;
                    summary.running += running as u64;
                    summary.not_started += pending as u64;
                    summary.array_tasks += (tasks > 1) as u64;
                    summary.requeued += (r_i < last) as u64;
                    if !pending {
                        let year = allocwatch::domain::time::day_date(clock.local_day(run.start)).year();
                        let units = if shape.gpus_per_node > 0 { gpus } else { cpus };
                        *summary.usage.entry((acc_i, p_i, year)).or_default() += units * (end - run.start) as u64;
                    }
                    line.clear();
                    match opts.format {
                        GenFormat::Sacct => {
                            let cancelled_by;
                            let state = if state == "CANCELLED" {
                                cancelled_by = format!("CANCELLED by {uid}");
                                cancelled_by.as_str()
                            } else {
                                state
                            };
                            let _ = write!(line, "{job_id}|{raw}|{}|{}|normal|{}|{}|{}|{user}|{uid}|", shape.cluster, shape.partition, acc.name, acc.name, acc.gid);
                            let sub_local = clock.local_seconds(submit);
                            format_civil(sub_local, &mut line);
                            line.push('|');
                            format_civil(sub_local, &mut line);
                            line.push('|');
                            if pending {
                                line.push_str("Unknown|");
                                if never_started {
                                    format_civil(clock.local_seconds(run.start.min(dump_at)), &mut line);
                                } else {
                                    line.push_str("Unknown");
                                }
                                line.push_str("|00:00:00|");
                            } else {
                                format_civil(clock.local_seconds(run.start), &mut line);
                                line.push('|');
                                if running {
                                    line.push_str("Unknown");
                                } else {
                                    format_civil(clock.local_seconds(end), &mut line);
                                }
                                line.push('|');
                                push_duration(&mut line, (end - run.start) as u64);
                                line.push('|');
                            }
                            let mem = 3800 * cpus.min(nodes * shape.cores_per_node);
                            let gres = if gpus > 0 { format!(",gres/gpu={gpus}") } else { String::new() };
                            let billing = if gpus > 0 { gpus * shape.cores_per_node / shape.gpus_per_node } else { cpus };
                            let _ = write!(line, "{}|{state}|{nodes}|{cpus}|{cpus}|3800Mc|billing={billing},cpu={cpus}{gres},mem={mem}M,node={nodes}|", if pending || running { "0:0" } else { run.exit });
                            if !pending {
                                let _ = write!(line, "billing={billing},cpu={cpus}{gres},mem={mem}M,node={nodes}");
                            }
                            line.push('|');
                            push_duration(&mut line, limit);
                            line.push('|');
                            if pending {
                                line.push_str("None assigned");
                            } else {
                                let first = (raw * 7919) % 4000;
                                if nodes == 1 {
                                    let _ = write!(line, "{}{first:04}", shape.node_prefix);
                                } else {
                                    let _ = write!(line, "{}[{first:04}-{:04}]", shape.node_prefix, first + nodes - 1);
                                }
                            }
                            line.push('|');
                            line.push_str(&jobname);
                            line.push('\n');
                        }
                        GenFormat::Swf => {
                            let status = match state {
                                "COMPLETED" => 1,
                                "FAILED" | "TIMEOUT" => 0,
                                "CANCELLED" => 5,
                                "REQUEUED" => 2,
                                _ => -1,
                            };
                            let (wait_s, run_s) = if pending { (-1, -1) } else { (run.start - submit, end - run.start) };
                            let _ = writeln!(
                                line,
                                "{raw} {} {wait_s} {run_s} {cpus} -1 -1 {cpus} {limit} -1 {status} {uid} {} -1 1 {} -1 -1",
                                submit - origin,
                                acc.gid,
                                p_i + 1
                            );
                        }
                    }
                    out.write_all(line.as_bytes())?;
                }
            }
            i += used as usize;
        }
    }
    Ok(summary)
}

/// `t`, or an hour later when `t` falls in the second pass of an hour a DST change repeats (its
/// civil time would read back as the first pass).
fn readable(clock: &mut LocalClock, t: i64) -> i64 {
    let local = clock.local_seconds(t);
    if clock.instant_of_local(local) == Some(t) {
        t
    } else {
        t + 3600
    }
}

/// sacct's `[D-]HH:MM:SS`.
fn push_duration(out: &mut String, s: u64) {
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        let _ = write!(out, "{d}-{h:02}:{m:02}:{sec:02}");
    } else {
        let _ = write!(out, "{h:02}:{m:02}:{sec:02}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allocwatch::sources::{read_stream, FileFormat, Parsed, SourceContext};

    fn gen(format: GenFormat, seed: u64) -> (Vec<u8>, GenSummary) {
        let mut opts = GenOptions::new(3000, seed, format);
        opts.jobs_per_day = 400; // a week: some jobs still run or wait at the dump instant
        // Across the autumn DST change, whose repeated hour must not produce End before Start.
        opts.first_day = allocwatch::domain::time::day_number(jiff::civil::Date::constant(2024, 10, 24));
        let mut out = Vec::new();
        let s = generate(&opts, &mut out).unwrap();
        (out, s)
    }

    fn parse(bytes: &[u8], format: FileFormat) -> (u64, u64, u64, Vec<String>) {
        let ctx = SourceContext {
            tz: TimeZone::get("Europe/Paris").unwrap(),
            default_cluster: "irene".into(),
            observed_at: 0,
        };
        let (mut jobs, mut provisional, mut not_started, mut errors) = (0, 0, 0, Vec::new());
        read_stream(bytes, "gen", &format, &ctx, |r| match r {
            Ok(Parsed::Job(j)) => {
                jobs += 1;
                provisional += j.provisional as u64;
            }
            Ok(Parsed::NotStarted) => not_started += 1,
            Ok(Parsed::Step) => {}
            Err(e) => errors.push(e.to_string()),
        })
        .unwrap();
        (jobs, provisional, not_started, errors)
    }

    #[test]
    fn same_seed_same_bytes_and_every_record_parses() {
        let (a, sa) = gen(GenFormat::Sacct, 7);
        let (b, _) = gen(GenFormat::Sacct, 7);
        assert_eq!(a, b, "same seed, same bytes");
        assert_ne!(a, gen(GenFormat::Sacct, 8).0, "another seed, other bytes");
        assert_eq!(sa.records, 3000);
        assert_eq!(a.iter().filter(|&&c| c == b'\n').count(), 3000);
        let (jobs, provisional, not_started, errors) = parse(&a, FileFormat::Sacct { fields: Some("xdmod".into()) });
        assert!(errors.is_empty(), "rejected: {errors:?}");
        assert_eq!((jobs + not_started, provisional, not_started), (3000, sa.running, sa.not_started));
        assert!(sa.running > 0 && sa.not_started > 0 && sa.array_tasks > 0, "{sa:?}");
        let text = String::from_utf8(a).unwrap();
        for cluster in ["irene", "jeanzay", "adastra"] {
            assert!(text.contains(&format!("|{cluster}|")), "no {cluster} jobs");
        }
        assert!(text.contains("gres/gpu="), "no GPU jobs");

        let (s, ss) = gen(GenFormat::Swf, 7);
        assert_eq!(s, gen(GenFormat::Swf, 7).0);
        let (jobs, _, not_started, errors) = parse(&s, FileFormat::Swf);
        assert!(errors.is_empty(), "rejected: {errors:?}");
        assert_eq!(jobs + not_started, ss.records);
    }

    #[test]
    fn sizes_and_runtimes_follow_the_fit() {
        let fit = CurieFit::load();
        let thin = &fit.kinds["thin"];
        let (sizes, runtimes) = (SizeDist::new(thin), Binned::new(&thin.runtime_s));
        let mut rng = Rng::new(1, 1);
        let n = 20_000u64;
        let one_core = (0..n).filter(|_| sizes.sample(&mut rng) == 1).count() as u64;
        let want = thin.size_top.iter().find(|p| p.0 == 1).map(|p| p.1).unwrap_or(0) * n / thin.jobs;
        assert!(one_core.abs_diff(want) < n / 50, "1-core jobs {one_core}, fitted {want}");
        let mut r: Vec<u64> = (0..n).map(|_| runtimes.sample(&mut rng)).collect();
        r.sort_unstable();
        // Median of the fitted histogram, within a bin or so.
        let total: u64 = thin.runtime_s.counts.iter().sum();
        let mut acc = 0;
        let bin = thin.runtime_s.counts.iter().position(|&c| {
            acc += c;
            acc * 2 >= total
        });
        let (lo, hi) = bin.map(|b| (thin.runtime_s.edges[b], thin.runtime_s.edges[b + 1])).unwrap();
        let median = r[r.len() / 2];
        assert!(median * 2 >= lo && median <= hi * 2, "median {median} outside [{lo}, {hi})");
    }
}
