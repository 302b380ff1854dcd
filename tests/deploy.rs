//! `deploy/` read by machine (Docker cannot run here): every JSON and YAML file parses; the
//! Grafana dashboard's Flux queries name only measurements, fields and tags that allocwatch
//! really writes (taken from the outbox of a real `check` on the demo); the datasource, the
//! Compose file, the container configuration, the Dockerfile and the systemd unit agree with
//! each other and with allocwatch's configuration.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn deploy() -> PathBuf {
    root().join("deploy")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn parse(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap();
    match p.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", p.display())),
        _ => serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", p.display())),
    }
}

#[test]
fn every_json_and_yaml_file_in_deploy_parses() {
    let mut all = Vec::new();
    files(&deploy(), &mut all);
    let structured: Vec<&PathBuf> = all.iter().filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("json" | "yaml" | "yml"))).collect();
    for p in &structured {
        let v = parse(p);
        assert!(v.is_object(), "{}: expected a mapping at the top", p.display());
    }
    let names: BTreeSet<String> = structured.iter().map(|p| p.strip_prefix(deploy()).unwrap().display().to_string()).collect();
    for want in [
        "container/compose.yaml",
        "grafana/dashboards/allocwatch.json",
        "grafana/provisioning/dashboards/allocwatch.yaml",
        "grafana/provisioning/datasources/influxdb.yaml",
    ] {
        assert!(names.contains(want), "{want} missing from deploy/: {names:?}");
    }
}

/// Measurement → (tag keys, field keys) of what allocwatch writes, read back from the outbox
/// of a real `check` on the demo (orphan and unmapped usage and three feeds included).
fn written_schema() -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let dir = tempfile::tempdir().unwrap();
    let demo = std::fs::read_to_string(root().join("config/demo.toml")).unwrap();
    let text = demo
        .replace("path = \"../target/demo/allocwatch.sqlite\"", "path = \"store.sqlite\"")
        .replace("\"demo/", &format!("\"{}/config/demo/", root().display()));
    // No server: the points stay queued, which is what this test reads.
    let cfg = dir.path().join("allocwatch.toml");
    std::fs::write(&cfg, format!("{text}\n[influxdb]\nurl = \"http://127.0.0.1:9\"\norg = \"o\"\nbucket = \"b\"\ntoken_env = \"AW_DEPLOY_TEST_TOKEN\"\ntimeout_seconds = 1\n")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_allocwatch"))
        .args(["--config", cfg.to_str().unwrap(), "check"])
        .env("AW_DEPLOY_TEST_TOKEN", "x")
        .env("ALLOCWATCH_LOG", "error")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let conn = rusqlite::Connection::open(dir.path().join("store.sqlite")).unwrap();
    let mut stmt = conn.prepare("SELECT line FROM outbox_points").unwrap();
    let lines: Vec<String> = stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    assert!(lines.len() > 31, "{} points", lines.len());
    let mut schema: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for line in &lines {
        let (series, rest) = split_unescaped(line, ' ');
        let (fields, _ts) = split_unescaped(rest, ' ');
        let mut parts = series.split(',');
        let m = parts.next().unwrap().to_string();
        let e = schema.entry(m).or_default();
        for t in parts {
            e.0.insert(t.split('=').next().unwrap().to_string());
        }
        for f in fields.split(',') {
            e.1.insert(f.split('=').next().unwrap().to_string());
        }
    }
    schema
}

/// Split at the first `sep` not escaped by a backslash.
fn split_unescaped(s: &str, sep: char) -> (&str, &str) {
    let mut prev = ' ';
    for (i, c) in s.char_indices() {
        if c == sep && prev != '\\' {
            return (&s[..i], &s[i + 1..]);
        }
        prev = c;
    }
    (s, "")
}

fn quoted_after(q: &str, pattern: &str) -> Vec<String> {
    // Every "VALUE" that follows `pattern` (spaces allowed around `==`).
    let mut out = Vec::new();
    let mut rest = q;
    while let Some(i) = rest.find(pattern) {
        rest = &rest[i + pattern.len()..];
        let t = rest.trim_start();
        let t = t.strip_prefix("==").unwrap_or(t).trim_start();
        if let Some(t) = t.strip_prefix('"') {
            if let Some(end) = t.find('"') {
                out.push(t[..end].to_string());
            }
        }
    }
    out
}

/// Names listed in `name: [ "a", "b" ]` arguments.
fn list_arg(q: &str, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = q;
    while let Some(i) = rest.find(&format!("{name}: [")) {
        rest = &rest[i + name.len() + 3..];
        let end = rest.find(']').unwrap();
        out.extend(rest[..end].split(',').map(|s| s.trim().trim_matches('"').to_string()).filter(|s| !s.is_empty()));
    }
    out
}

/// Every `r.NAME` referenced.
fn record_refs(q: &str) -> BTreeSet<String> {
    let b = q.as_bytes();
    let mut out = BTreeSet::new();
    for (i, _) in q.match_indices("r.") {
        if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
            continue;
        }
        let name: String = q[i + 2..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "query" {
                    if let Some(s) = x.as_str() {
                        out.push(s.to_string());
                    }
                }
                queries(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| queries(x, out)),
        _ => {}
    }
}

const FLUX_COLUMNS: &[&str] = &["_measurement", "_field", "_value", "_time", "_start", "_stop"];

#[test]
fn dashboard_queries_use_only_what_allocwatch_writes() {
    let schema = written_schema();
    assert_eq!(schema.keys().cloned().collect::<Vec<_>>(), ["allocation", "centre_feed", "orphan_usage"]);
    let dash = parse(&deploy().join("grafana/dashboards/allocwatch.json"));
    let mut qs = Vec::new();
    queries(&dash, &mut qs);
    assert!(qs.len() >= 15, "{} queries", qs.len());
    let mut used_measurements = BTreeSet::new();
    let mut used_fields = BTreeSet::new();
    for q in &qs {
        let ms = quoted_after(q, "r._measurement");
        assert!(!ms.is_empty(), "a query names no measurement:\n{q}");
        for m in &ms {
            assert!(schema.contains_key(m), "unknown measurement {m:?} in\n{q}");
            used_measurements.insert(m.clone());
        }
        let tags: BTreeSet<&String> = ms.iter().flat_map(|m| &schema[m].0).collect();
        let fields: BTreeSet<&String> = ms.iter().flat_map(|m| &schema[m].1).collect();
        for f in quoted_after(q, "r._field") {
            assert!(fields.contains(&f), "field {f:?} is not written to {ms:?} (fields: {fields:?}) in\n{q}");
            used_fields.insert(f);
        }
        let known = |n: &String| tags.contains(n) || fields.contains(n) || FLUX_COLUMNS.contains(&n.as_str());
        for r in record_refs(q) {
            assert!(known(&r), "r.{r} is no tag or field of {ms:?} in\n{q}");
        }
        for t in quoted_after(q, "tag:") {
            assert!(tags.contains(&t), "tag {t:?} is not a tag of {ms:?}");
        }
        for c in list_arg(q, "keep(columns").into_iter().chain(list_arg(q, "rowKey")) {
            assert!(known(&c), "column {c:?} is no tag or field of {ms:?} in\n{q}");
        }
    }
    // The three views the issue asks for: overview (status), burn-down, feed health.
    for f in ["status_code", "consumed_hours", "expected_hours", "granted_hours", "seconds_since_last_success", "pull_failures", "hours"] {
        assert!(used_fields.contains(f), "no panel shows {f}");
    }
    assert_eq!(used_measurements.len(), 3);
    // Every panel queries the provisioned datasource.
    let ds = parse(&deploy().join("grafana/provisioning/datasources/influxdb.yaml"));
    let d = &ds["datasources"][0];
    assert_eq!((d["type"].as_str(), d["jsonData"]["version"].as_str()), (Some("influxdb"), Some("Flux")));
    let uid = d["uid"].as_str().unwrap();
    for p in dash["panels"].as_array().unwrap().iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"].as_str(), Some(uid), "panel {}", p["title"]);
    }
    assert!(d["secureJsonData"]["token"].as_str().unwrap().starts_with("${"), "the token must come from the environment");
}

#[test]
fn compose_container_config_dockerfile_and_unit_agree() {
    let dir = deploy().join("container");
    let compose = parse(&dir.join("compose.yaml"));
    let services = compose["services"].as_object().unwrap();
    for s in ["allocwatch", "influxdb", "grafana"] {
        assert!(services.contains_key(s), "service {s} missing");
    }
    // Every bind-mounted path exists in the repository.
    for (name, s) in services {
        for v in s["volumes"].as_array().into_iter().flatten() {
            let src = v.as_str().unwrap().split(':').next().unwrap();
            if src.starts_with('.') {
                assert!(dir.join(src).exists(), "service {name}: {src} does not exist");
            }
        }
    }
    let aw = &services["allocwatch"];
    let ctx = dir.join(aw["build"]["context"].as_str().unwrap());
    assert!(ctx.join(aw["build"]["dockerfile"].as_str().unwrap()).is_file());
    assert_eq!(aw["depends_on"]["influxdb"]["condition"], "service_healthy");

    // The container's configuration is valid and points at the stack.
    let cfg_path = dir.join("allocwatch.toml");
    let config = allocwatch::config::Config::parse(&std::fs::read_to_string(&cfg_path).unwrap(), &cfg_path).unwrap_or_else(|e| panic!("{e}"));
    let influx = config.influxdb.as_ref().expect("[influxdb]");
    assert_eq!(influx.url, "http://influxdb:8086");
    let env = aw["environment"].as_object().unwrap();
    let allocwatch::secret::SecretSource::Env(var) = &influx.token else { panic!("token from the environment") };
    assert!(env.contains_key(var), "{var} not set for the allocwatch service");
    let http = config.http.as_ref().expect("[http]");
    let Some(allocwatch::secret::SecretSource::Env(var)) = &http.token else { panic!("API token from the environment") };
    assert!(env.contains_key(var), "{var} not set for the allocwatch service");
    let port = http.listen.port().to_string();
    assert!(aw["ports"].as_array().unwrap().iter().any(|p| p.as_str().unwrap().ends_with(&format!(":{port}"))), "port {port} not published");
    assert!(http.listen.ip().is_unspecified(), "inside a container the listener must not be loopback");
    let influxdb = &services["influxdb"]["environment"];
    assert_eq!(influxdb["DOCKER_INFLUXDB_INIT_ORG"].as_str(), Some(influx.org.as_str()));
    assert_eq!(influxdb["DOCKER_INFLUXDB_INIT_BUCKET"].as_str(), Some(influx.bucket.as_str()));
    let grafana = &services["grafana"]["environment"];
    assert_eq!(grafana["INFLUX_BUCKET"].as_str(), Some(influx.bucket.as_str()));

    // Dockerfile: multi-stage, runs as a non-root user.
    let docker = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
    let stages = docker.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "not multi-stage");
    let last = &docker[docker.rfind("\nFROM ").unwrap()..];
    let user = last.lines().find_map(|l| l.strip_prefix("USER ")).expect("USER in the final stage");
    assert!(!user.starts_with("root") && !user.starts_with("0"), "runs as {user}");
    assert!(last.contains("ENTRYPOINT [\"/usr/local/bin/allocwatch\"]"));

    // systemd unit.
    let unit = std::fs::read_to_string(deploy().join("systemd/allocwatch.service")).unwrap();
    let kv: BTreeMap<&str, Vec<&str>> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .fold(BTreeMap::new(), |mut m, (k, v)| {
            m.entry(k.trim()).or_default().push(v.trim());
            m
        });
    let one = |k: &str| kv.get(k).and_then(|v| v.first().copied()).unwrap_or_else(|| panic!("{k}= missing"));
    assert_eq!(one("Type"), "notify");
    assert!(one("WatchdogSec").ends_with('s'));
    assert_eq!(one("User"), "allocwatch");
    assert_eq!(one("StateDirectory"), "allocwatch");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert!(one("ExecReload").contains("-HUP"));
    assert!(one("ExecStart").ends_with(" run"));
    // The env file example names the secrets the example configuration reads from the environment.
    let example = std::fs::read_to_string(root().join("config/allocwatch.example.toml")).unwrap();
    let env_example = std::fs::read_to_string(deploy().join("systemd/allocwatch.env.example")).unwrap();
    for line in example.lines() {
        let l = line.trim_start_matches('#').trim();
        if let Some(v) = l.split_once('=').filter(|(k, _)| k.trim().ends_with("_env")).map(|(_, v)| v.trim().trim_matches('"')) {
            let v = v.split('"').next().unwrap();
            if v.starts_with("ALLOCWATCH_") {
                assert!(env_example.contains(&format!("{v}=")), "{v} (named in the example config) missing from allocwatch.env.example");
            }
        }
    }
}
