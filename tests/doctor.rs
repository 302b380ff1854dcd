//! `allocwatch doctor` against the REAL servers of the suite (`tests/run.sh` starts them and
//! exports their variables: `tests/infra/servers` for InfluxDB v2 proxy, SMTP with AUTH and
//! Alertmanager; `tests/infra/slurm` for Slurm 22.05 with slurmdbd and slurmrestd): one working
//! deployment where every line is `ok` and the exit code 0, then each component broken in the
//! way operators break it, each line saying `FAIL` and why, and the exit code 1. A bad
//! configuration is exit code 2. Without the servers these tests say SKIPPED; under CI=true
//! their absence is a failure. Nothing here waits on a clock.

mod common;
use common::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;

const SERVER_VARS: &[&str] = &[
    "AW_INFLUX_PROXY_URL",
    "AW_INFLUX_TOKEN",
    "AW_INFLUX_ORG",
    "AW_INFLUX_BUCKET",
    "AW_INFLUX1_URL",
    "AW_SMTP_AUTH_PORT",
    "AW_SMTP_AUTH_USER",
    "AW_SMTP_AUTH_PASSWORD",
    "AW_SMTP_AUTH_MAILDIR",
    "AW_SMTP_AUTH_CA_CERT",
    "AW_AM_URL",
];

const LAB_VARS: &[&str] = &["SLURM_CONF", "SLURMRESTD_URL", "SLURMRESTD_SOCKET", "SLURM_LAB_TOKEN_CMD"];

/// One centre of the Slurm lab's cluster, with `sources` (TOML) as its sources.
fn centre(sources: &str) -> String {
    format!("[[centre]]\nid = \"lab\"\ntimezone = \"Europe/Paris\"\nclusters = [\"jeanzay\"]\n{sources}\n")
}

/// Run `allocwatch --config CONFIG doctor [extra]`.
fn doctor(config: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--config", config.to_str().unwrap(), "doctor"];
    args.extend_from_slice(extra);
    aw(&args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

/// The line of the check named `label` (`centre lab source sacct`), whatever its status.
fn line<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(&format!("{label}: "))))
        .unwrap_or_else(|| panic!("no line for {label:?} in:\n{text}"))
}

/// Assert the check `label` failed, saying each of `why`; the run exited 1 with `failed` failures.
fn assert_fail(out: &Output, label: &str, why: &[&str]) {
    let text = stdout(out);
    let l = line(&text, label);
    assert!(l.starts_with("FAIL  "), "{label} should have failed:\n{text}");
    for w in why {
        assert!(l.contains(w), "{label}: {w:?} missing from\n{l}");
    }
    assert_eq!(out.status.code(), Some(1), "exit code, stdout:\n{text}\nstderr:\n{}", stderr(out));
    assert!(stderr(out).contains("doctor: ") && stderr(out).contains("checks failed"), "{}", stderr(out));
}

/// Assert the check `label` passed, saying each of `what`.
fn assert_ok(text: &str, label: &str, what: &[&str]) {
    let l = line(text, label);
    assert!(l.starts_with("ok    "), "{label} should have passed:\n{text}");
    for w in what {
        assert!(l.contains(w), "{label}: {w:?} missing from\n{l}");
    }
}

fn summary(text: &str) -> &str {
    text.lines().last().unwrap_or("")
}

/// A file holding `secret` (tokens and passwords are never written in the configuration).
fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{secret}\n")).unwrap();
    p
}

/// The e-mail, webhook and Alertmanager sections (`hook` is the webhook's URL).
fn channels(env: &std::collections::HashMap<String, String>, password_file: &Path, from: &str, hook: &str, am: &str) -> String {
    format!(
        r#"
[alerts.email]
host = "localhost"
port = {port}
tls = "starttls"
username = "{user}"
password_file = "{pw}"
ca_file = "{ca}"
from = "{from}"
[alerts.operations]
emails = ["ops@doctor.example"]
[alerts.webhook]
url = "{hook}"
[alerts.alertmanager]
url = "{am}"
[alerts.delivery]
timeout_seconds = 10
"#,
        port = env["AW_SMTP_AUTH_PORT"],
        user = env["AW_SMTP_AUTH_USER"],
        pw = password_file.display(),
        ca = env["AW_SMTP_AUTH_CA_CERT"],
    )
}

fn influx(env: &std::collections::HashMap<String, String>, url: &str, token_file: &Path) -> String {
    format!(
        "[influxdb]\nurl = \"{url}\"\norg = \"{}\"\nbucket = \"{}\"\ntoken_file = \"{}\"\ntimeout_seconds = 10\n",
        env["AW_INFLUX_ORG"],
        env["AW_INFLUX_BUCKET"],
        token_file.display()
    )
}

/// Points of measurement `allocwatch_doctor` stored at or after `since` (epoch seconds), read
/// back from the influxd behind the v2 proxy.
fn probe_points_since(influx1: &str, db: &str, since: i64) -> u64 {
    let q = format!("SELECT count(probe) FROM allocwatch_doctor WHERE time >= {since}s");
    let url = format!("{influx1}/query?db={db}&q={}", q.replace(' ', "%20").replace('>', "%3E").replace('=', "%3D"));
    let body = http_get(&url);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["results"][0]["series"][0]["values"][0][1].as_u64().unwrap_or(0)
}

fn http_get(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host).unwrap();
    use std::io::Write;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The schema version this binary writes: that of the store it just created for `config`.
fn current_schema(config: &Path, store: &Path) -> i64 {
    ok(&["--config", config.to_str().unwrap(), "usage"]);
    rusqlite::Connection::open(store).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()
}

#[test]
fn a_working_deployment_is_all_ok_and_sends_nothing() {
    let Some(env) = server_env("doctor_all_ok", SERVER_VARS) else { return };
    let Some(lab) = server_env("doctor_all_ok", LAB_VARS) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("drops")).unwrap();
    std::fs::write(d.join("drops/2026-11-20.txt"), "JobIDRaw|State\n").unwrap();
    let token = secret_file(d, "influx.token", &env["AW_INFLUX_TOKEN"]);
    let password = secret_file(d, "smtp.password", &env["AW_SMTP_AUTH_PASSWORD"]);
    // The webhook's receiver is this test: it sees whether anything was sent.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_url = format!("http://127.0.0.1:{}/hooks/secret-key-42", hook.local_addr().unwrap().port());
    let from = format!("doctor-{}@ops.example", std::process::id());
    let sources = format!(
        r#"
[[centre.source]]
kind = "sacct"
[[centre.source]]
kind = "sacct"
name = "sacct-json"
output = "json"
[[centre.source]]
kind = "slurmrestd"
url = "{url}"
user = "root"
token_command = ["{tok}", "root", "600"]
[[centre.source]]
kind = "slurmrestd"
name = "rest-unix"
socket = "{sock}"
[[centre.source]]
kind = "files"
paths = ["drops"]
format = "sacct"
"#,
        url = lab["SLURMRESTD_URL"],
        tok = lab["SLURM_LAB_TOKEN_CMD"],
        sock = lab["SLURMRESTD_SOCKET"]
    );
    let config = write_config(
        d,
        &format!("{}{}{}", centre(&sources), influx(&env, &env["AW_INFLUX_PROXY_URL"], &token), channels(&env, &password, &from, &hook_url, &env["AW_AM_URL"])),
    );
    // An existing store, at the schema this binary writes.
    let store = d.join("store.sqlite");
    let schema = current_schema(&config, &store);
    let since = now();
    let out = doctor(&config, &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "doctor failed ({}):\n{text}\n{}", out.status, stderr(&out));
    assert_ok(&text, &format!("store {}", store.display()), &[&format!("writable, schema {schema} (current)")]);
    assert_ok(&text, "centre lab source sacct", &["`sacct` ran over the last minute", "its header has the 14 columns allocwatch reads"]);
    assert_ok(&text, "centre lab source sacct-json", &["`sacct --json` ran over the last minute", "its job JSON decodes"]);
    assert_ok(&text, "centre lab source slurmrestd", &["answers at v0.0.38 (discovered from /openapi), Slurm 22.05", "token of user \"root\" accepted (token from command"]);
    assert_ok(&text, "centre lab source rest-unix", &["answers at v0.0.38", "local authentication accepted"]);
    assert_ok(&text, "centre lab source files (source[4])", &["1 path present: 1 readable file (1 directory listed); nothing imported"]);
    assert_ok(
        &text,
        &format!("sink influxdb {} bucket {}", env["AW_INFLUX_PROXY_URL"], env["AW_INFLUX_BUCKET"]),
        &["accepted one point of measurement allocwatch_doctor", &format!("token from file {}", token.display())],
    );
    assert_ok(&text, &format!("channel email localhost:{}", env["AW_SMTP_AUTH_PORT"]), &["connected (STARTTLS)", &format!("login as \"{}\" accepted; no mail sent", env["AW_SMTP_AUTH_USER"])]);
    let hook_port = hook.local_addr().unwrap().port();
    assert_ok(&text, &format!("channel webhook http://127.0.0.1:{hook_port}"), &["TCP connection to 127.0.0.1", "no request sent"]);
    assert_ok(&text, &format!("channel alertmanager {}", env["AW_AM_URL"]), &["ready (GET /-/ready answered 200 OK)"]);
    assert_eq!(summary(&text), "doctor: 10 ok, 0 failed", "{text}");
    assert_eq!(text.lines().count(), 11, "one line per check and the summary:\n{text}");
    // Secrets are never printed; the webhook's path (which may hold its key) is not either.
    for secret in [env["AW_INFLUX_TOKEN"].as_str(), env["AW_SMTP_AUTH_PASSWORD"].as_str(), "secret-key-42"] {
        assert!(!text.contains(secret) && !stderr(&out).contains(secret), "secret shown:\n{text}");
    }
    // What was sent: the one probe point, into influxd behind the proxy...
    assert!(probe_points_since(&env["AW_INFLUX1_URL"], &env["AW_INFLUX_BUCKET"], since) >= 1, "the probe point is not in influxd");
    // ...a TCP connection to the webhook with not one byte on it (doctor has exited)...
    let (mut conn, _) = hook.accept().expect("the webhook probe connected");
    let mut got = Vec::new();
    conn.read_to_end(&mut got).unwrap();
    assert!(got.is_empty(), "the webhook probe sent a request: {}", String::from_utf8_lossy(&got));
    // ...and no mail.
    let mails = std::fs::read_dir(Path::new(&env["AW_SMTP_AUTH_MAILDIR"]).join("new")).unwrap();
    for m in mails.flatten() {
        let body = std::fs::read_to_string(m.path()).unwrap_or_default();
        assert!(!body.contains(&from), "doctor sent a mail: {}", m.path().display());
    }
    // The same checks as one JSON array.
    let out = doctor(&config, &["--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&stdout(&out)).expect("doctor --format json is one array");
    assert_eq!(rows.len(), 10);
    assert!(rows.iter().all(|r| r["ok"] == true && r["detail"].is_string()), "{rows:#?}");
    let components: Vec<&str> = rows.iter().map(|r| r["component"].as_str().unwrap()).collect();
    assert_eq!(components, ["store", "centre", "centre", "centre", "centre", "centre", "sink", "channel", "channel", "channel"]);
    assert_eq!(rows[1]["name"], "lab source sacct");
}

#[test]
fn a_store_written_by_a_newer_allocwatch_or_that_cannot_be_created_fails() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = write_config(d, "");
    // A store that does not exist yet is fine: the first run creates it. Doctor does not.
    let out = doctor(&config, &[]);
    let text = stdout(&out);
    let store = d.join("store.sqlite");
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert_ok(&text, &format!("store {}", store.display()), &["does not exist yet: the first run creates it (schema "]);
    assert!(!store.exists(), "doctor created the store");
    assert_eq!(summary(&text), "doctor: 1 ok, 0 failed");
    // Stamped by a newer allocwatch: both versions named.
    let schema = current_schema(&config, &store);
    assert!(text.contains(&format!("creates it (schema {schema})")), "{text}");
    rusqlite::Connection::open(&store).unwrap().pragma_update(None, "user_version", schema + 1).unwrap();
    let out = doctor(&config, &[]);
    assert_fail(
        &out,
        &format!("store {}", store.display()),
        &[&format!("schema version {} is newer than this allocwatch knows ({schema}); upgrade allocwatch", schema + 1)],
    );
    assert_eq!(summary(&stdout(&out)), "doctor: 0 ok, 1 failed");
    // Its directory is a regular file (root is not stopped by permissions, this stops anyone).
    let blocked = d.join("allocwatch.toml").join("store.sqlite");
    let out = aw(&["--config", config.to_str().unwrap(), "--store", blocked.to_str().unwrap(), "doctor"]);
    assert_fail(&out, &format!("store {}", blocked.display()), &["cannot be created", &format!("{} is not a directory", d.join("allocwatch.toml").display())]);
    // Not a database at all.
    let junk = d.join("junk.sqlite");
    std::fs::write(&junk, "this is not SQLite\n".repeat(100)).unwrap();
    let out = aw(&["--config", config.to_str().unwrap(), "--store", junk.to_str().unwrap(), "doctor"]);
    assert_fail(&out, &format!("store {}", junk.display()), &["not a database"]);
}

#[test]
fn a_file_drop_whose_path_is_missing_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("drops")).unwrap();
    let config = write_config(d, &centre("[[centre.source]]\nkind = \"files\"\npaths = [\"drops\", \"missing/sacct.txt\"]\nformat = \"sacct\"\n"));
    let out = doctor(&config, &[]);
    assert_fail(&out, "centre lab source files (source[0])", &[&format!("{}: No such file or directory", d.join("missing/sacct.txt").display())]);
    assert_eq!(summary(&stdout(&out)), "doctor: 1 ok, 1 failed");
}

#[test]
fn a_bad_configuration_is_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[influxdb]\nurl = \"http://127.0.0.1:1\"\norg = \"o\"\nbucket = \"b\"\ntoken = \"inline\"\n");
    let out = doctor(&config, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("influxdb.token: a token is never written"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

#[test]
fn sacct_failing_behind_its_prefix_or_printing_other_columns_fails() {
    let Some(lab) = server_env("doctor_sacct", LAB_VARS) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The prefix runs sacct against a slurm.conf whose slurmdbd port nothing listens on.
    let conf = std::fs::read_to_string(&lab["SLURM_CONF"]).unwrap();
    let bad: String = conf
        .lines()
        .map(|l| if l.starts_with("AccountingStoragePort=") { format!("AccountingStoragePort={}\n", free_port()) } else { format!("{l}\n") })
        .collect();
    let bad_conf = d.join("slurm.conf");
    std::fs::write(&bad_conf, bad).unwrap();
    let config = write_config(
        d,
        &centre(&format!(
            r#"
[[centre.source]]
kind = "sacct"
command_prefix = ["env", "SLURM_CONF={}"]
timeout_seconds = 60
[[centre.source]]
kind = "sacct"
name = "sacct-nouser"
command_prefix = ["runuser", "-u", "allocwatch-no-such-user", "--"]
[[centre.source]]
kind = "sacct"
name = "sacct-delimiter"
extra_args = ["--delimiter=;"]
"#,
            bad_conf.display()
        )),
    );
    let out = doctor(&config, &[]);
    assert_fail(&out, "centre lab source sacct", &["sacct -a -D -X -P", "exited with status 1: sacct: error:", "Problem talking to the database"]);
    assert_fail(&out, "centre lab source sacct-nouser", &["`runuser -u allocwatch-no-such-user -- env SLURM_TIME_FORMAT=%s TZ=UTC sacct", "exited with status 1: runuser:"]);
    assert_fail(&out, "centre lab source sacct-delimiter", &["unexpected columns `JobIDRaw;JobID;", "allocwatch asked for `JobIDRaw|JobID|"]);
    assert_eq!(summary(&stdout(&out)), "doctor: 1 ok, 3 failed");
}

#[test]
fn slurmrestd_refusing_the_token_not_serving_the_version_or_not_listening_fails() {
    let Some(lab) = server_env("doctor_slurmrestd", LAB_VARS) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let wrong = secret_file(d, "wrong.jwt", "not-the-lab-token-xyz");
    let config = write_config(
        d,
        &centre(&format!(
            r#"
[[centre.source]]
kind = "slurmrestd"
url = "{url}"
user = "root"
token_file = "{wrong}"
[[centre.source]]
kind = "slurmrestd"
name = "rest-no-token"
url = "{url}"
[[centre.source]]
kind = "slurmrestd"
name = "rest-v0.0.44"
url = "{url}"
api_version = "v0.0.44"
user = "root"
token_command = ["{tok}", "root", "600"]
[[centre.source]]
kind = "slurmrestd"
name = "rest-nothing-there"
url = "http://127.0.0.1:{free}"
user = "root"
token_command = ["{tok}", "root", "600"]
"#,
            url = lab["SLURMRESTD_URL"],
            wrong = wrong.display(),
            tok = lab["SLURM_LAB_TOKEN_CMD"],
            free = free_port()
        )),
    );
    let out = doctor(&config, &[]);
    // A wrong JWT: HTTP 200 with Slurm error 1007 from slurmdbd.
    assert_fail(
        &out,
        "centre lab source slurmrestd",
        &["token refused: ", "Slurm error 1007", "token for user \"root\" was refused", &format!("token from file {}", wrong.display())],
    );
    assert_fail(&out, "centre lab source rest-no-token", &["token refused: ", "(401 Unauthorized)", "no token is configured"]);
    assert_fail(&out, "centre lab source rest-v0.0.44", &["version not served: ", "does not serve api_version v0.0.44 (it serves v0.0.38)"]);
    assert_fail(&out, "centre lab source rest-nothing-there", &["not reachable: GET http://127.0.0.1:", "Connection refused"]);
    assert!(!stdout(&out).contains("not-the-lab-token-xyz"), "token shown:\n{}", stdout(&out));
    assert_eq!(summary(&stdout(&out)), "doctor: 1 ok, 4 failed");
}

#[test]
fn influxdb_refusing_the_token_or_not_listening_fails() {
    let Some(env) = server_env("doctor_influxdb", SERVER_VARS) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let wrong = secret_file(d, "wrong.token", "awtok-wrong-token-xyz");
    let config = write_config(d, &influx(&env, &env["AW_INFLUX_PROXY_URL"], &wrong));
    let out = doctor(&config, &[]);
    let label = format!("sink influxdb {} bucket {}", env["AW_INFLUX_PROXY_URL"], env["AW_INFLUX_BUCKET"]);
    assert_fail(&out, &label, &["HTTP 401", "unauthorized access", "check the token", &format!("token from file {}", wrong.display())]);
    assert!(!stdout(&out).contains("awtok-wrong-token-xyz"));
    let right = secret_file(d, "right.token", &env["AW_INFLUX_TOKEN"]);
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let config = write_config(d, &influx(&env, &nowhere, &right));
    let out = doctor(&config, &[]);
    assert_fail(&out, &format!("sink influxdb {nowhere} bucket {}", env["AW_INFLUX_BUCKET"]), &["write refused or failed: request failed", "Connection refused"]);
}

#[test]
fn smtp_refusing_the_password_fails_and_never_shows_it() {
    let Some(env) = server_env("doctor_smtp", SERVER_VARS) else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let wrong = secret_file(d, "wrong.password", "not-the-password-xyz");
    let section = format!(
        "[alerts.email]\nhost = \"localhost\"\nport = {}\ntls = \"starttls\"\nusername = \"{}\"\npassword_file = \"{}\"\nca_file = \"{}\"\nfrom = \"doctor@ops.example\"\n",
        env["AW_SMTP_AUTH_PORT"],
        env["AW_SMTP_AUTH_USER"],
        wrong.display(),
        env["AW_SMTP_AUTH_CA_CERT"]
    );
    let config = write_config(d, &section);
    let out = doctor(&config, &[]);
    assert_fail(
        &out,
        &format!("channel email localhost:{}", env["AW_SMTP_AUTH_PORT"]),
        &[&format!("login as \"{}\" refused", env["AW_SMTP_AUTH_USER"]), "535"],
    );
    assert!(!stdout(&out).contains("not-the-password-xyz") && !stderr(&out).contains("not-the-password-xyz"));
    // STARTTLS without the relay's CA: the certificate is refused before any login.
    let config = write_config(d, &section.replace(&format!("ca_file = \"{}\"\n", env["AW_SMTP_AUTH_CA_CERT"]), ""));
    let out = doctor(&config, &[]);
    assert_fail(&out, &format!("channel email localhost:{}", env["AW_SMTP_AUTH_PORT"]), &["STARTTLS"]);
}

#[test]
fn alertmanager_on_a_wrong_port_and_a_webhook_with_nothing_listening_fail() {
    let Some(env) = server_env("doctor_alertmanager", SERVER_VARS) else { return };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!("[alerts.alertmanager]\nurl = \"http://127.0.0.1:{port}\"\n[alerts.webhook]\nurl = \"https://127.0.0.1:{port}/hooks/key-in-path-123\"\n"),
    );
    let out = doctor(&config, &[]);
    assert_fail(&out, &format!("channel alertmanager http://127.0.0.1:{port}"), &["not reachable: GET /-/ready", "Connection refused"]);
    assert_fail(&out, &format!("channel webhook https://127.0.0.1:{port}"), &[&format!("not reachable: TCP connection to 127.0.0.1:{port}"), "Connection refused"]);
    assert!(!stdout(&out).contains("key-in-path-123"), "{}", stdout(&out));
    // Something else than Alertmanager on that URL: answers, but not ready.
    let config = write_config(dir.path(), &format!("[alerts.alertmanager]\nurl = \"{}/api\"\n", env["AW_AM_URL"]));
    let out = doctor(&config, &[]);
    assert_fail(&out, &format!("channel alertmanager {}/api", env["AW_AM_URL"]), &["not ready: GET /-/ready answered 404"]);
}
