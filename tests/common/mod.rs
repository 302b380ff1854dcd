//! Helpers shared by the integration tests: run the real binary on scratch stores, and find
//! `../shared` (required under CI=true, skipped with a message elsewhere).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run `allocwatch` with arguments; returns the output (never panics on exit status).
pub fn aw(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_allocwatch"))
        .args(args)
        .env("ALLOCWATCH_LOG", "warn")
        .env_remove("ALLOCWATCH_CONFIG")
        .output()
        .expect("run allocwatch")
}

/// Run and require success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = aw(args);
    assert!(
        out.status.success(),
        "allocwatch {:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        args,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The shared data folder (`../shared/data` or `$ALLOCWATCH_SHARED/data`). Under CI=true its
/// absence is a failure; elsewhere the calling test prints why it is skipped.
pub fn shared_data(test: &str) -> Option<PathBuf> {
    let base = std::env::var_os("ALLOCWATCH_SHARED").map(PathBuf::from).unwrap_or_else(|| root().join("../shared"));
    let data = base.join("data");
    if data.is_dir() {
        return Some(data);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: CI=true but the shared data folder {} is missing", data.display());
    }
    eprintln!("SKIPPED {test}: shared data not found at {} (set ALLOCWATCH_SHARED)", data.display());
    None
}

/// Write a config into `dir` (with `store.path` inside it) and return its path.
pub fn write_config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("allocwatch.toml");
    std::fs::write(&p, format!("[store]\npath = \"store.sqlite\"\n{body}")).unwrap();
    p
}

/// Parse `check --format json` output.
pub fn check_json(config: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["--config", config.to_str().unwrap(), "check", "--format", "json"];
    args.extend_from_slice(extra);
    let out = ok(&args);
    serde_json::from_str::<Vec<serde_json::Value>>(&out).expect("check json is an array")
}

/// Find the allocation object of a project/resource in `check` JSON.
pub fn find<'a>(rows: &'a [serde_json::Value], project: &str, resource: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["project"] == project && r["resource"] == resource)
        .unwrap_or_else(|| panic!("no allocation {project}/{resource} in {rows:#?}"))
}

/// A float field.
pub fn f(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

/// Values of environment variables set by `tests/run.sh` for the real servers. Under CI=true a
/// missing one is a failure; elsewhere the calling test prints why it is skipped.
pub fn server_env(test: &str, vars: &[&str]) -> Option<std::collections::HashMap<String, String>> {
    let mut out = std::collections::HashMap::new();
    for v in vars {
        match std::env::var(v) {
            Ok(x) if !x.is_empty() => {
                out.insert(v.to_string(), x);
            }
            _ => {
                if std::env::var("CI").is_ok_and(|c| c == "true") {
                    panic!("{test}: CI=true but {v} is not set: run the suite with `bash tests/run.sh`, which starts the servers");
                }
                eprintln!("SKIPPED {test}: {v} not set (run `bash tests/run.sh`, which starts the test servers)");
                return None;
            }
        }
    }
    Some(out)
}

/// Percent-encode everything but RFC 3986's unreserved characters (a query value, or a
/// secret as it would appear in a URL).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A secret as it could leak: itself, percent-encoded (as in a URL), and in base64 (standard
/// and URL-safe) at each of the three alignments it can have inside a longer encoded text (the
/// part of the encoding that does not depend on its neighbours).
pub fn encoded_forms(secret: &str) -> Vec<String> {
    use base64::Engine;
    let mut out = vec![secret.to_string(), urlencode(secret)];
    let bytes = secret.as_bytes();
    for engine in [&base64::engine::general_purpose::STANDARD, &base64::engine::general_purpose::URL_SAFE] {
        for k in 0..3usize {
            let mut padded = vec![0u8; k];
            padded.extend_from_slice(bytes);
            let enc = engine.encode(&padded);
            let (skip, first) = if k == 0 { (0, 0) } else { (4, 3 - k) };
            let groups = (bytes.len() - first) / 3;
            out.push(enc[skip..skip + groups * 4].to_string());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Fails naming `what` if `haystack` holds `secret` in any of its [`encoded_forms`].
pub fn assert_secret_absent(secret: &str, what: &str, haystack: &[u8]) {
    for form in encoded_forms(secret) {
        assert!(!haystack.windows(form.len()).any(|w| w == form.as_bytes()), "the secret is in {what} (as {form:?})");
    }
}

/// How long a command may run before it counts as hung: far beyond any sink timeout here
/// (seconds), and still a bound.
pub const HUNG_AFTER_S: u64 = 90;

/// Run `cmd` to its end, its output captured (in files: no pipe to fill), or kill it and fail
/// once `secs` have passed.
pub fn output_within(mut cmd: Command, secs: u64, what: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let (o, e) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .spawn()
        .unwrap_or_else(|x| panic!("{what}: {x}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {secs} s: hung\nstderr so far:\n{}", std::fs::read_to_string(&e).unwrap_or_default());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    std::process::Output { status, stdout: std::fs::read(&o).unwrap(), stderr: std::fs::read(&e).unwrap() }
}

/// One HTTP request: (request line and headers, body).
pub fn read_http(stream: &mut std::net::TcpStream) -> (String, String) {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let n = stream.read(&mut tmp).unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let headers = String::from_utf8_lossy(&buf[..pos]).to_string();
            let len = headers
                .lines()
                .find_map(|l| l.to_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                .unwrap_or(0);
            while buf.len() < pos + 4 + len {
                let n = stream.read(&mut tmp).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            return (headers, String::from_utf8_lossy(&buf[pos + 4..]).to_string());
        }
    }
    (String::new(), String::new())
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Poll `f` until it returns Some, or panic after `secs` seconds with `what`.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out after {secs} s waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Start a private aiosmtpd (the real server, Maildir handler) on `port`, for tests that stop,
/// freeze or restart their SMTP server without disturbing the shared one.
pub fn private_smtp(port: u16, maildir: &Path) -> std::process::Child {
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(maildir.join(d)).unwrap();
    }
    let child = Command::new("/usr/bin/python3")
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox", maildir.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start aiosmtpd");
    wait_for(20, "private aiosmtpd to listen", || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
    child
}

/// The benchmark tool (its own crate of the workspace, `crates/bench`), built beside this
/// test's `allocwatch` binary if it is not there yet.
pub fn bench_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_allocwatch")).with_file_name("allocwatch-bench");
    if !bin.exists() {
        let release = bin.components().any(|c| c.as_os_str() == "release");
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.args(["build", "--quiet", "-p", "allocwatch-bench"]).current_dir(root());
        if release {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("run cargo to build allocwatch-bench");
        assert!(status.success() && bin.exists(), "could not build {} (cargo build -p allocwatch-bench)", bin.display());
    }
    bin
}
