//! Slurm's accounting job JSON, as served by slurmrestd (`GET /slurmdb/v0.0.NN/jobs`) and
//! printed by `sacct --json`: data parser v0.0.38 (Slurm 22.05) and v0.0.40 to v0.0.45
//! (Slurm 24.05 to 26.05; v0.0.40 and v0.0.45 checked on live 24.11 and 26.05 labs).
//!
//! This module is the only place that knows that JSON. The versions differ in shape, not in
//! meaning: v0.0.38 writes plain numbers and strings (`null` when unset), later versions wrap
//! numbers in `{"set", "infinite", "number"}` and states in arrays. The decoder accepts both
//! forms wherever either may appear, so one decoder serves every version.

use super::{LineError, Parsed};
use crate::domain::job::{JobRecord, Units};
use serde_json::Value;

/// API versions whose job JSON this decoder reads, oldest first.
pub(crate) const SUPPORTED_VERSIONS: &[&str] = &["v0.0.38", "v0.0.40", "v0.0.41", "v0.0.42", "v0.0.43", "v0.0.44", "v0.0.45"];

/// Slurm's `ESLURM_REST_EMPTY_RESULT`: the query matched no job.
const NOTHING_FOUND: i64 = 9003;

/// A decoded `jobs` document.
#[derive(Debug, Default)]
pub struct JobsDocument {
    /// One entry per element of `jobs`, in order; bad jobs as [`LineError`]s (their `line`
    /// is the 1-based position of the job in the array).
    pub items: Vec<Result<Parsed, LineError>>,
    /// Slurm release that produced it (`22.05.8`), when the document says.
    pub release: Option<String>,
    /// `warnings[].description`: informative (e.g. "found nothing").
    pub warnings: Vec<String>,
}

/// Decode a jobs document. A document carrying `errors` (Slurm could not answer: slurmdbd
/// down, bad query) is refused as a whole, so that a partial answer never counts as a pull.
/// `source` names the input in messages; `default_cluster` is used when a job names none;
/// `observed_at` (epoch seconds) ends the charged window of a running job that gives no
/// elapsed time.
pub fn decode_jobs(doc: &Value, source: &str, default_cluster: &str, observed_at: i64) -> Result<JobsDocument, String> {
    let Some(obj) = doc.as_object() else {
        return Err(format!("{source}: expected a JSON object with a `jobs` array, got {}", kind(doc)));
    };
    let mut warnings: Vec<String> = obj.get("warnings").and_then(Value::as_array).map(|a| a.iter().map(describe).collect()).unwrap_or_default();
    let mut errors = Vec::new();
    for e in obj.get("errors").and_then(Value::as_array).into_iter().flatten() {
        // Slurm 22.05 reports an empty result as error 9003 "Nothing found" (later versions
        // as a warning): an empty window is not a failure.
        if e.get("error_number").and_then(Value::as_i64) == Some(NOTHING_FOUND) {
            warnings.push(describe(e));
        } else {
            errors.push(describe(e));
        }
    }
    if !errors.is_empty() {
        return Err(format!("{source}: Slurm reported errors: {}", errors.join("; ")));
    }
    let meta = obj.get("meta");
    let release = meta
        .and_then(|m| m.get("Slurm").or_else(|| m.get("slurm")))
        .and_then(|s| s.get("release"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let Some(jobs) = obj.get("jobs") else {
        return Err(format!("{source}: the document has no `jobs` array"));
    };
    let Some(jobs) = jobs.as_array() else {
        return Err(format!("{source}: `jobs` is {}, expected an array", kind(jobs)));
    };
    let items = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| {
            decode_job(j, default_cluster, observed_at).map_err(|(field, reason)| LineError {
                file: source.to_string(),
                line: i as u64 + 1,
                field: Some(format!("jobs[{i}]{}{field}", if field.is_empty() { "" } else { "." })),
                reason: match j.get("job_id").and_then(Value::as_u64) {
                    Some(id) => format!("job {id}: {reason}"),
                    None => reason,
                },
            })
        })
        .collect();
    Ok(JobsDocument { items, release, warnings })
}

/// Slurm's `SLURM_PROTOCOL_AUTHENTICATION_ERROR`: slurmdbd refused the credentials
/// slurmrestd passed on (a wrong or expired JWT yields HTTP 200 with this error).
pub(crate) const AUTHENTICATION_ERROR: i64 = 1007;

/// Slurm's `ESLURM_DB_CONNECTION`: slurmrestd could not open its slurmdbd connection. Since
/// 23.11 slurmrestd says so (HTTP 502) both when slurmdbd is down and when slurmdbd refused
/// the token it was given.
pub(crate) const DB_CONNECTION_ERROR: i64 = 7000;

/// Whether a slurmctld `ping` answer (`GET /slurm/v0.0.NN/ping/`) says the credentials were
/// refused: `pings[].status` is "Protocol authentication error" for a token slurmctld rejects.
pub(crate) fn ping_refused_credentials(doc: &Value) -> Option<String> {
    doc.get("pings")?
        .as_array()?
        .iter()
        .filter_map(|p| p.get("status").and_then(Value::as_str))
        .find(|s| s.to_ascii_lowercase().contains("authentication"))
        .map(str::to_string)
}

/// The first error of a document with this Slurm error number, as text.
pub(crate) fn find_error(doc: &Value, number: i64) -> Option<String> {
    doc.get("errors")?
        .as_array()?
        .iter()
        .find(|e| e.get("error_number").and_then(Value::as_i64) == Some(number))
        .map(describe)
}

/// One Slurm error or warning object as text.
fn describe(e: &Value) -> String {
    let s = |k: &str| e.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let Some(main) = s("description").or(s("error")) else { return e.to_string() };
    let extra: Vec<&str> = [s("error").filter(|&x| x != main), s("source")].into_iter().flatten().collect();
    if extra.is_empty() {
        main.to_string()
    } else {
        format!("{main} ({})", extra.join(", "))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

type FieldError = (String, String);

/// An integer in either form: a number, `null` (unset), or v0.0.40+'s
/// `{"set": bool, "infinite": bool, "number": n}` (unset or infinite → `None`).
fn int(v: Option<&Value>, field: &str) -> Result<Option<i64>, FieldError> {
    let bad = |v: &Value| (field.to_string(), format!("expected an integer, got {}", kind(v)));
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| (field.to_string(), format!("`{n}` is not an integer"))),
        Some(o @ Value::Object(m)) => {
            let set = m.get("set").and_then(Value::as_bool).unwrap_or(true);
            let infinite = m.get("infinite").and_then(Value::as_bool).unwrap_or(false);
            if !set || infinite {
                return Ok(None);
            }
            match m.get("number") {
                Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| (field.to_string(), format!("`{n}` is not an integer"))),
                _ => Err(bad(o)),
            }
        }
        Some(other) => Err(bad(other)),
    }
}

fn text<'a>(j: &'a Value, key: &str) -> &'a str {
    j.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `state.current` as one upper-case word: a string (v0.0.38) or an array of flags whose
/// first element is the base state (v0.0.41+). A run that was requeued is `REQUEUED`, as
/// sacct's text prints it: Slurm 24.11 and 26.05 give it as `["PENDING", "REQUEUED"]` (the
/// job went back to pending), though that run did start, end and consume.
fn state(j: &Value) -> String {
    let cur = j.get("state").and_then(|s| s.get("current"));
    let s = match cur {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.iter().any(|f| f.as_str().is_some_and(|f| f.eq_ignore_ascii_case("REQUEUED"))) => "REQUEUED".to_string(),
        Some(Value::Array(a)) => a.first().and_then(Value::as_str).unwrap_or("").to_string(),
        _ => j.get("state").and_then(Value::as_str).unwrap_or("").to_string(),
    };
    s.to_ascii_uppercase()
}

fn decode_job(j: &Value, default_cluster: &str, observed_at: i64) -> Result<Parsed, FieldError> {
    if !j.is_object() {
        return Err((String::new(), format!("expected a job object, got {}", kind(j))));
    }
    let raw = int(j.get("job_id"), "job_id")?.ok_or_else(|| ("job_id".to_string(), "missing".to_string()))?;
    let job_id_raw = u64::try_from(raw).map_err(|_| ("job_id".to_string(), format!("`{raw}` is not a Slurm job id")))?;
    let state = state(j);
    let time = j.get("time");
    // A start of 0 or Slurm's raw NO_VAL (26.05's `sacct --json` for a job cancelled while
    // pending) is no start.
    let start = int(time.and_then(|t| t.get("start")), "time.start")?.filter(|&s| s > 0 && s < RAW_NO_VAL);
    // Pending jobs may carry a planned start (v0.0.41+): they have consumed nothing yet.
    let Some(start_s) = start.filter(|_| !state.starts_with("PENDING")) else {
        return Ok(Parsed::NotStarted);
    };
    let end = int(time.and_then(|t| t.get("end")), "time.end")?.filter(|&e| e > 0);
    let elapsed = int(time.and_then(|t| t.get("elapsed")), "time.elapsed")?;
    if matches!(elapsed, Some(e) if e < 0) {
        return Err(("time.elapsed".into(), "negative elapsed time".into()));
    }
    // Same rules as the sacct text parser, so that both sources give identical ledgers.
    let running = state.starts_with("RUNNING") || state.starts_with("SUSPENDED") || state.starts_with("COMPLETING");
    // Slurm 26.05's slurmrestd, asked for duplicates, gives a job cancelled while pending its
    // end as its start; what shows that it never ran is that it was allocated nothing and
    // lasted nothing (sacct prints its start as `None`).
    let allocated_nothing = j.get("tres").and_then(|t| t.get("allocated")).and_then(Value::as_array).is_some_and(Vec::is_empty);
    if !running && allocated_nothing && elapsed == Some(0) {
        return Ok(Parsed::NotStarted);
    }
    let (end_s, elapsed_s, provisional) = match end {
        Some(e) if !running || e > start_s => {
            if e < start_s {
                return Err(("time.end".into(), "end is before start".into()));
            }
            (e, elapsed.unwrap_or(e - start_s).min(e - start_s), running)
        }
        _ => {
            let upto = match elapsed {
                Some(e) => start_s + e,
                None => observed_at.max(start_s),
            };
            (upto, upto - start_s, true)
        }
    };
    let mut cpus = None;
    let mut nodes = None;
    let mut billing = None;
    let mut gpu_untyped = None;
    let mut gpu_typed = 0u64;
    let allocated = j.get("tres").and_then(|t| t.get("allocated"));
    match allocated {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, t) in items.iter().enumerate() {
                let ty = text(t, "type");
                let name = text(t, "name");
                let slot = match (ty, name) {
                    ("cpu", _) => Slot::Cpu,
                    ("node", _) => Slot::Node,
                    ("billing", _) => Slot::Billing,
                    ("gres", "gpu") => Slot::GpuUntyped,
                    ("gres", n) if n.starts_with("gpu:") => Slot::GpuTyped,
                    _ => continue, // mem, energy, licenses…: not charged
                };
                let field = format!("tres.allocated[{i}].count");
                let count = int(t.get("count"), &field)?.ok_or_else(|| (field.clone(), format!("no count for {ty} {name}")))?;
                let count = u64::try_from(count).map_err(|_| (field.clone(), format!("negative count {count}")))?;
                match slot {
                    Slot::Cpu => cpus = Some(count),
                    Slot::Node => nodes = Some(count),
                    Slot::Billing => billing = Some(count),
                    Slot::GpuUntyped => gpu_untyped = Some(count),
                    Slot::GpuTyped => gpu_typed += count,
                }
            }
        }
        Some(other) => return Err(("tres.allocated".into(), format!("expected an array, got {}", kind(other)))),
    }
    let cpus = cpus.unwrap_or(0);
    let nodes = match nodes {
        Some(n) => n,
        None => int(j.get("allocation_nodes"), "allocation_nodes")?.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
    };
    // As in sacct text: the untyped GPU count when given (it then also lists typed ones).
    let units = Units { cpus, gpus: gpu_untyped.unwrap_or(gpu_typed), billing: billing.unwrap_or(cpus), nodes };
    let array_job = int(j.get("array").and_then(|a| a.get("job_id")), "array.job_id")?.unwrap_or(0);
    let array_task = int(j.get("array").and_then(|a| a.get("task_id")), "array.task_id")?;
    let het_job = int(j.get("het").and_then(|h| h.get("job_id")), "het.job_id")?.unwrap_or(0);
    let het_offset = int(j.get("het").and_then(|h| h.get("job_offset")), "het.job_offset")?;
    let job_id = match (array_task, het_offset) {
        (Some(t), _) if array_job > 0 => format!("{array_job}_{t}"),
        (_, Some(o)) if het_job > 0 => format!("{het_job}+{o}"),
        _ => job_id_raw.to_string(),
    };
    let time_limit_s = time_limit(time.and_then(|t| t.get("limit")))?;
    let cluster = text(j, "cluster");
    Ok(Parsed::Job(JobRecord {
        cluster: if cluster.is_empty() { default_cluster.to_string() } else { cluster.to_string() },
        job_id_raw,
        job_id,
        account: text(j, "account").to_lowercase(),
        partition: text(j, "partition").to_string(),
        user: text(j, "user").to_string(),
        start_s,
        end_s,
        elapsed_s,
        units,
        provisional,
        time_limit_s,
    }))
}

/// Slurm's `INFINITE` and `NO_VAL` as raw 32-bit values (`0xfffffffe` and up), should a
/// version write them unwrapped: no time limit, no start.
const RAW_NO_VAL: i64 = 0xffff_fffe;

/// `time.limit` in seconds: minutes as a number (v0.0.38, `null` when infinite) or wrapped
/// (v0.0.40+: infinite or unset → `None`). Zero is no limit (`--time=0`), as sacct reads it.
fn time_limit(v: Option<&Value>) -> Result<Option<i64>, FieldError> {
    match int(v, "time.limit")? {
        None => Ok(None),
        Some(m) if m < 0 => Err(("time.limit".into(), format!("negative time limit {m}"))),
        Some(m) if m == 0 || m >= RAW_NO_VAL => Ok(None),
        Some(m) => Ok(Some(m * 60)),
    }
}

enum Slot {
    Cpu,
    Node,
    Billing,
    GpuUntyped,
    GpuTyped,
}

/// The API versions a slurmrestd OpenAPI document serves accounting jobs under, oldest
/// first: (version, exact path, accepted query parameters), e.g.
/// `("v0.0.41", "/slurmdb/v0.0.41/jobs/", ["start_time", …])`.
pub fn jobs_endpoints(openapi: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<(String, String, Vec<String>)> = Vec::new();
    let Some(paths) = openapi.get("paths").and_then(Value::as_object) else { return out };
    for (path, item) in paths {
        let Some(rest) = path.strip_prefix("/slurmdb/") else { continue };
        let mut parts = rest.split('/');
        let (Some(version), Some("jobs")) = (parts.next(), parts.next()) else { continue };
        if parts.any(|p| !p.is_empty()) {
            continue; // /jobs/{id}…
        }
        let params = item
            .get("get")
            .and_then(|g| g.get("parameters"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_string)).collect())
            .unwrap_or_default();
        out.push((version.to_string(), path.clone(), params));
    }
    out.sort_by_key(|e| version_key(&e.0));
    out
}

/// Sort key of `v0.0.NN` (unknown forms sort first).
pub(crate) fn version_key(v: &str) -> (u32, u32, u32) {
    let mut it = v.trim_start_matches('v').split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0), it.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(j: Value) -> Result<Parsed, LineError> {
        let doc = json!({"meta": {"Slurm": {"release": "22.05.8"}}, "errors": [], "jobs": [j]});
        let mut d = decode_jobs(&doc, "test", "dflt", 5000).unwrap();
        assert_eq!(d.release.as_deref(), Some("22.05.8"));
        d.items.remove(0)
    }

    fn job(j: Value) -> JobRecord {
        match one(j).unwrap() {
            Parsed::Job(r) => r,
            other => panic!("expected a job, got {other:?}"),
        }
    }

    fn tres(items: &[(&str, Value, i64)]) -> Value {
        Value::Array(items.iter().map(|(t, n, c)| json!({"type": t, "name": n, "count": c})).collect())
    }

    #[test]
    fn v0038_finished_gpu_job() {
        let j = job(json!({
            "job_id": 3, "account": "A0160701234", "partition": "gpu_p13", "user": "alice", "cluster": "jeanzay",
            "array": {"job_id": 0, "task_id": null}, "het": {"job_id": 0, "job_offset": null},
            "state": {"current": "COMPLETED"},
            "time": {"elapsed": 2, "start": 1000, "end": 1002},
            "tres": {"allocated": tres(&[("cpu", Value::Null, 1), ("mem", Value::Null, 256), ("node", Value::Null, 1), ("billing", Value::Null, 8), ("gres", json!("gpu"), 2)])}
        }));
        assert_eq!(j.account, "a0160701234");
        assert_eq!((j.start_s, j.end_s, j.elapsed_s, j.provisional), (1000, 1002, 2, false));
        assert_eq!(j.units, Units { cpus: 1, gpus: 2, billing: 8, nodes: 1 });
        assert_eq!(j.job_id, "3");
    }

    #[test]
    fn v0041_wrapped_numbers_array_task_and_typed_gpus() {
        let set = |n: i64| json!({"set": true, "infinite": false, "number": n});
        let j = job(json!({
            "job_id": 128, "account": "bio", "partition": "gpu", "user": "u", "cluster": "",
            "array": {"job_id": 120, "task_id": set(8)}, "het": {"job_id": 0, "job_offset": {"set": false, "infinite": false, "number": 0}},
            "state": {"current": ["COMPLETED"]},
            "time": {"elapsed": 30, "start": 100, "end": 130},
            "tres": {"allocated": tres(&[("cpu", json!(""), 4), ("gres", json!("gpu:a100"), 2), ("gres", json!("gpu:v100"), 1), ("energy", json!(""), -2)])}
        }));
        assert_eq!((j.job_id.as_str(), j.job_id_raw, j.cluster.as_str()), ("120_8", 128, "dflt"));
        assert_eq!(j.units, Units { cpus: 4, gpus: 3, billing: 4, nodes: 0 });
    }

    #[test]
    fn a_ping_names_refused_credentials() {
        // Slurm 26.05's slurmctld ping with a wrong JWT, then with a good one (forky lab).
        let refused = json!({"pings": [{"hostname": "vm", "responding": false, "primary": true, "status": "Protocol authentication error"}]});
        assert_eq!(ping_refused_credentials(&refused).as_deref(), Some("Protocol authentication error"));
        let fine = json!({"pings": [{"hostname": "vm", "responding": true, "primary": true, "status": "No error"}]});
        assert_eq!(ping_refused_credentials(&fine), None);
        assert_eq!(ping_refused_credentials(&json!({"pings": [{"ping": "UP"}]})), None);
        assert_eq!(ping_refused_credentials(&json!({})), None);
    }

    #[test]
    fn het_component_running_pending_and_never_started() {
        let j = job(json!({
            "job_id": 201, "account": "a", "het": {"job_id": 200, "job_offset": 1}, "array": {"job_id": 0},
            "state": {"current": "RUNNING"}, "time": {"elapsed": 88, "start": 1000, "end": 0},
            "tres": {"allocated": tres(&[("cpu", Value::Null, 2)])}
        }));
        assert_eq!(j.job_id, "200+1");
        assert_eq!((j.end_s, j.elapsed_s, j.provisional), (1088, 88, true));
        // No elapsed: charged up to the observation instant.
        let j = job(json!({"job_id": 5, "account": "a", "state": {"current": ["RUNNING"]}, "time": {"start": 4000, "end": 0}}));
        assert_eq!((j.end_s, j.provisional), (5000, true));
        // A planned start on a pending job is not a start.
        let p = one(json!({"job_id": 6, "account": "a", "state": {"current": ["PENDING"]}, "time": {"start": 4000, "end": 0, "elapsed": 1}}));
        assert_eq!(p.unwrap(), Parsed::NotStarted);
        let c = one(json!({"job_id": 9, "account": "a", "state": {"current": "CANCELLED"}, "time": {"start": null, "end": 1795253735, "elapsed": 0}}));
        assert_eq!(c.unwrap(), Parsed::NotStarted);
        // A job cancelled while pending, as Slurm 26.05 gives it (read off the forky lab):
        // `sacct --json` with a raw NO_VAL start, slurmrestd with show_duplicates with its end
        // as its start and nothing allocated.
        let c = one(json!({"job_id": 13, "account": "abc", "state": {"current": ["CANCELLED"]},
                           "time": {"start": 4294967294u32, "end": 1796327691, "elapsed": 0}, "tres": {"allocated": []}}));
        assert_eq!(c.unwrap(), Parsed::NotStarted);
        let c = one(json!({"job_id": 13, "account": "abc", "state": {"current": ["CANCELLED"]},
                           "time": {"start": 1796327691, "end": 1796327691, "elapsed": 0}, "tres": {"allocated": []}}));
        assert_eq!(c.unwrap(), Parsed::NotStarted);
        // A job that ran for less than a second is still a run (allocated, zero elapsed).
        let j = job(json!({"job_id": 14, "account": "abc", "state": {"current": ["COMPLETED"]},
                           "time": {"start": 1796327691, "end": 1796327691, "elapsed": 0}, "tres": {"allocated": tres(&[("cpu", Value::Null, 1)])}}));
        assert_eq!((j.start_s, j.elapsed_s), (1796327691, 0));
        // The first run of a requeued job, as Slurm 26.05's data_parser v0.0.45 gives it (read
        // off the forky lab): pending again, flagged REQUEUED, but it ran 1 s and is charged.
        let j = job(json!({"job_id": 4, "account": "abc", "state": {"current": ["PENDING", "REQUEUED"], "reason": "None"},
                           "time": {"start": 1796229369, "end": 1796229370, "elapsed": 1}, "tres": {"allocated": tres(&[("cpu", Value::Null, 1)])}}));
        assert_eq!((j.start_s, j.end_s, j.elapsed_s, j.provisional), (1796229369, 1796229370, 1, false));
    }

    #[test]
    fn time_limit_plain_minutes_and_wrapped() {
        let running = |limit: Value| {
            job(json!({"job_id": 649722, "account": "a", "state": {"current": ["RUNNING"]},
                       "time": {"elapsed": 88, "start": 1747754478, "end": 0, "limit": limit},
                       "tres": {"allocated": tres(&[("cpu", json!(""), 4)])}}))
        };
        // (time.limit as a version writes it, seconds)
        let cases = [
            (json!(5), Some(300)),                                                   // v0.0.38
            (Value::Null, None),                                                     // v0.0.38, infinite
            (json!({"set": true, "infinite": false, "number": 2}), Some(120)),       // v0.0.41+
            (json!({"set": true, "infinite": true, "number": 0}), None),
            (json!({"set": false, "infinite": false, "number": 0}), None),
            (json!({"set": true, "infinite": false, "number": 0}), None),            // --time=0
            (json!(4294967294u32), None),                                            // INFINITE, raw
            (json!(4294967295u32), None),                                            // NO_VAL, raw
        ];
        for (limit, want) in cases {
            let j = running(limit.clone());
            assert_eq!((j.time_limit_s, j.provisional), (want, true), "{limit}");
        }
        let j = running(json!(5));
        assert_eq!(j.committed_unit_seconds(j.end_s).cpu, 4 * (300 - 88));
        // No `limit` at all: none.
        assert_eq!(job(json!({"job_id": 1, "account": "a", "state": {"current": "COMPLETED"}, "time": {"start": 1, "end": 2}})).time_limit_s, None);
        for (bad, reason) in [(json!(-1), "negative"), (json!("1:00:00"), "expected an integer"), (json!({"set": true, "number": "x"}), "expected an integer")] {
            let e = one(json!({"job_id": 2, "account": "a", "state": {"current": "RUNNING"}, "time": {"start": 1, "end": 0, "limit": bad}})).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("jobs[0].time.limit"), "{bad}");
            assert!(e.reason.contains(reason), "{bad}: {}", e.reason);
        }
    }

    #[test]
    fn bad_jobs_are_named_and_the_rest_kept() {
        let doc = json!({"errors": [], "jobs": [
            {"job_id": "x"},
            {"job_id": 7, "account": "a", "state": {"current": "COMPLETED"}, "time": {"start": 10, "end": 5}},
            {"job_id": 8, "account": "a", "state": {"current": "COMPLETED"}, "time": {"start": 10, "end": 20}, "tres": {"allocated": [{"type": "cpu", "count": null}]}},
            {"job_id": 9, "account": "a", "state": {"current": "COMPLETED"}, "time": {"start": 10, "end": 20, "elapsed": 10}}
        ]});
        let d = decode_jobs(&doc, "rest", "c", 0).unwrap();
        let e0 = d.items[0].as_ref().unwrap_err();
        assert_eq!((e0.line, e0.field.as_deref()), (1, Some("jobs[0].job_id")));
        let e1 = d.items[1].as_ref().unwrap_err();
        assert_eq!(e1.field.as_deref(), Some("jobs[1].time.end"));
        assert!(e1.reason.starts_with("job 7:"), "{}", e1.reason);
        let e2 = d.items[2].as_ref().unwrap_err();
        assert_eq!(e2.field.as_deref(), Some("jobs[2].tres.allocated[0].count"));
        assert!(d.items[3].is_ok());
        assert_eq!(e2.to_string(), "rest:3: field jobs[2].tres.allocated[0].count: job 8: no count for cpu ");
    }

    #[test]
    fn documents_with_errors_or_without_jobs_are_refused() {
        let e = decode_jobs(&json!({"errors": [{"description": "Unable to parse time format", "error": "Query empty or not RFC7320 compliant", "source": "start_time"}]}), "rest", "c", 0).unwrap_err();
        assert!(e.contains("Unable to parse time format") && e.contains("start_time"), "{e}");
        assert!(decode_jobs(&json!([1]), "rest", "c", 0).unwrap_err().contains("expected a JSON object"));
        let auth = json!({"errors": [{"error_number": 1007, "error": "Protocol authentication error", "description": "", "source": "slurmdb_jobs_get"}], "jobs": []});
        assert_eq!(find_error(&auth, AUTHENTICATION_ERROR).as_deref(), Some("Protocol authentication error (slurmdb_jobs_get)"));
        assert!(decode_jobs(&auth, "rest", "c", 0).is_err());
        assert!(decode_jobs(&json!({"errors": []}), "rest", "c", 0).unwrap_err().contains("no `jobs`"));
        assert!(decode_jobs(&json!({"jobs": {}}), "rest", "c", 0).unwrap_err().contains("expected an array"));
        let d = decode_jobs(&json!({"jobs": [], "warnings": [{"description": "slurmdb_jobs_get() found nothing", "source": "_dump_jobs"}]}), "rest", "c", 0).unwrap();
        assert_eq!(d.warnings, vec!["slurmdb_jobs_get() found nothing (_dump_jobs)".to_string()]);
        // 22.05's way of saying the same.
        let empty = json!({"errors": [{"description": "Nothing found", "error_number": 9003, "error": "Nothing found with query", "source": "slurmdb_jobs_get"}], "jobs": []});
        let d = decode_jobs(&empty, "rest", "c", 0).unwrap();
        assert!(d.items.is_empty());
        assert_eq!(d.warnings, vec!["Nothing found (Nothing found with query, slurmdb_jobs_get)".to_string()]);
    }

    #[test]
    fn openapi_paths_give_versions_and_parameters() {
        let doc = json!({"paths": {
            "/slurmdb/v0.0.38/jobs": {"get": {"parameters": [{"name": "start_time"}, {"name": "skip_steps"}]}},
            "/slurmdb/v0.0.38/job/{job_id}": {"get": {}},
            "/slurmdb/v0.0.41/jobs/": {"get": {"parameters": [{"name": "show_duplicates"}]}},
            "/slurm/v0.0.41/jobs/": {"get": {}}
        }});
        let eps = jobs_endpoints(&doc);
        assert_eq!(eps.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), vec!["v0.0.38", "v0.0.41"]);
        assert_eq!(eps[0].2, vec!["start_time", "skip_steps"]);
        assert_eq!(eps[1].1, "/slurmdb/v0.0.41/jobs/");
        assert!(version_key("v0.0.44") > version_key("v0.0.41"));
    }
}
