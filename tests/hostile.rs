//! Hostile names and secrets: names from the outside are data (never interpolated into
//! commands, SQL or HTML), and secrets never appear in logs, `config check` or errors.

mod common;
use common::*;
use std::path::Path;

const NASTY: [&str; 5] = ["a;rm -rf /", "<script>alert(1)</script>", "' OR 1=1 --", "zürich-日本-🚀", "\"quoted\" & <b>bold</b>"];

fn long_name() -> String {
    "x".repeat(10 * 1024)
}

#[test]
fn hostile_names_are_stored_reported_and_escaped_as_data() {
    let Some(env) = server_env("hostile_names", &["AW_SMTP_PORT", "AW_SMTP_MAILDIR"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let long = long_name();
    let mut names: Vec<String> = NASTY.iter().map(|s| s.to_string()).collect();
    names.push(long.clone());
    // One job per name, as account, partition and user.
    let mut dump = String::from("JobID|JobIDRaw|Cluster|Partition|Account|User|Start|End|ElapsedRaw|AllocCPUS|AllocTRES|State\n");
    for (i, n) in names.iter().enumerate() {
        let start = 1767225600 + i as i64 * 3600;
        dump.push_str(&format!("{i}|{i}|c|{n}|{n}|{n}|{start}|{}|3600|2|cpu=2|COMPLETED\n", start + 3600));
        // And once on the mapped partition, to make it orphan usage with an alert.
        dump.push_str(&format!("{}|{}|c|cpu|{n}|{n}|{start}|{}|3600|2|cpu=2|COMPLETED\n", 100 + i, 100 + i, start + 3600));
    }
    std::fs::write(dir.path().join("dump.txt"), &dump).unwrap();
    let tag = format!("hostile{}", std::process::id());
    std::fs::write(
        dir.path().join("alloc.csv"),
        format!(
            "project,centre,resource,period_start,period_end,granted_hours,accounts,pi\n\
             \"<img src=x onerror=alert(1)>\",c,cpu,2026-01-01,2026-02-01,1,\"' OR 1=1 --\",pi@{tag}.example\n"
        ),
    )
    .unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[allocations]\nfiles = [\"alloc.csv\"]\n[[centre]]\nid = \"c\"\ntimezone = \"UTC\"\nclusters = [\"c\"]\n\
             [[centre.billing]]\nresource = \"cpu\"\npartitions = [\"cpu\"]\nunit = \"cpu\"\n\
             [alerts]\n[alerts.email]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"aw@x.example\"\n\
             [alerts.operations]\nemails = [\"ops@{tag}.example\"]\ndigest = true\n",
            env["AW_SMTP_PORT"]
        ),
    );
    let c = cfg.to_str().unwrap();
    let out = ok(&["--config", c, "import", "--centre", "c", "--format", "sacct", dir.path().join("dump.txt").to_str().unwrap()]);
    assert!(out.contains("12 records (12 new") && out.contains("0 rejected lines"), "{out}");
    // Stored and reported exactly (accounts lower-cased as Slurm does), each its own row:
    // nothing was interpreted as SQL.
    let usage: Vec<serde_json::Value> = serde_json::from_str(&ok(&["--config", c, "usage", "--group-by", "user", "--format", "json"])).unwrap();
    for n in &names {
        let acc = n.to_lowercase();
        let rows: Vec<&serde_json::Value> = usage.iter().filter(|r| r["account"] == acc.as_str()).collect();
        assert_eq!(rows.len(), 2, "account {:?}: {rows:#?}", &acc[..acc.len().min(40)]);
        assert!(rows.iter().any(|r| r["partition"] == n.as_str() && r["user"] == n.as_str()));
    }
    // The allocation's account is the SQL-looking one: exactly its own job is charged.
    let rows = check_json(&cfg, &["--at", "2026-01-02T00:00:00Z"]);
    assert_eq!(f(&rows[0], "consumed_hours"), 2.0);
    // The table renders (10 KB names included) and the alert mails escape HTML.
    let table = ok(&["--config", c, "check", "--at", "2026-01-02T00:00:00Z"]);
    assert!(table.contains("<script>alert(1)</script>"), "plain text output shows names as they are");
    let maildir = Path::new(&env["AW_SMTP_MAILDIR"]);
    let mails = wait_for(10, "alert mails", || {
        let found: Vec<Vec<u8>> = std::fs::read_dir(maildir.join("new"))
            .ok()?
            .flatten()
            .map(|e| std::fs::read(e.path()).unwrap())
            .filter(|raw| String::from_utf8_lossy(raw).contains(&format!("@{tag}.example")))
            .collect();
        (found.len() >= 2).then_some(found)
    });
    for raw in &mails {
        let m = mail_parser::MessageParser::default().parse(raw).unwrap();
        let html = m.body_html(0).map(|h| h.into_owned()).unwrap_or_default();
        for bad in ["<script>", "<img src=x", "<b>bold</b>"] {
            assert!(!html.contains(bad), "unescaped {bad:?} in HTML mail:\n{html}");
        }
    }
    let text_all: String = mails.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect();
    assert!(text_all.contains("&lt;script&gt;") || text_all.contains("&lt;img"), "the HTML parts carry the escaped names");
}

#[test]
fn secrets_never_appear_in_logs_config_check_or_errors() {
    let Some(env) = server_env("secrets", &["AW_SMTP_AUTH_PORT", "AW_SMTP_AUTH_USER", "AW_SMTP_AUTH_CA_CERT"]) else { return };
    let dir = tempfile::tempdir().unwrap();
    let influx_token = "influx-SECRET-token-8f3a9c";
    let smtp_password = "smtp-SECRET-password-77e1";
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.JWT-SECRET-sig";
    let hook = "http://127.0.0.1:9/hooks/WEBHOOK-SECRET-key";
    std::fs::write(dir.path().join("smtp.pw"), format!("{smtp_password}\n")).unwrap();
    std::fs::write(dir.path().join("slurm.jwt"), format!("{jwt}\n")).unwrap();
    std::fs::write(dir.path().join("link.key"), "LINK-SECRET-key-0123456789abcdef0123456789\n").unwrap();
    // A slurmrestd stand-in that refuses the token.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut b = [0u8; 8192];
            let _ = s.read(&mut b);
            let _ = s.write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    std::fs::write(dir.path().join("acct.txt"), "JobID|JobIDRaw|Cluster|Partition|Account|User|Start|End|ElapsedRaw|AllocCPUS|AllocTRES|State\n1|1|c|cpu|a|u|1767225600|1767229200|3600|200|cpu=200|COMPLETED\n").unwrap();
    std::fs::write(dir.path().join("alloc.csv"), "project,centre,resource,period_start,period_end,granted_hours,accounts,pi\nP,c,cpu,2026-01-01,2026-02-01,10,a,pi@secret.example\n").unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
[allocations]
files = ["alloc.csv"]
[http]
public_url = "https://allocwatch.secret.example"
[links]
keys = [{{ id = "k1", key_file = "link.key" }}]
[influxdb]
url = "http://127.0.0.1:9"
org = "o"
bucket = "b"
token_env = "AW_TEST_INFLUX_TOKEN"
timeout_seconds = 1
[[centre]]
id = "c"
timezone = "UTC"
clusters = ["c"]
[[centre.billing]]
resource = "cpu"
partitions = ["cpu"]
unit = "cpu"
[[centre.source]]
kind = "files"
format = "sacct"
paths = ["acct.txt"]
[[centre.source]]
kind = "slurmrestd"
url = "http://127.0.0.1:{port}"
api_version = "v0.0.38"
user = "allocwatch"
token_file = "slurm.jwt"
timeout_seconds = 2
[alerts]
[alerts.email]
host = "localhost"
port = {}
tls = "starttls"
username = "{}"
password_file = "smtp.pw"
ca_file = "{}"
from = "aw@x.example"
[alerts.webhook]
url_env = "AW_TEST_HOOK"
[alerts.operations]
emails = ["ops@secret.example"]
[alerts.delivery]
retry_initial_seconds = 0
retry_max_seconds = 0
timeout_seconds = 3
"#,
            env["AW_SMTP_AUTH_PORT"], env["AW_SMTP_AUTH_USER"], env["AW_SMTP_AUTH_CA_CERT"]
        ),
    );
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_allocwatch"))
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .env("AW_TEST_INFLUX_TOKEN", influx_token)
            .env("AW_TEST_HOOK", hook)
            .env("ALLOCWATCH_LOG", "trace")
            .output()
            .unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    let mut captured = String::new();
    captured += &run(&["config", "check"]);
    captured += &run(&["check", "--at", "2026-01-10T00:00:00Z"]);
    captured += &run(&["--log-format", "json", "check", "--at", "2026-01-11T00:00:00Z"]);
    captured += &run(&["alerts", "list", "--all"]);
    captured += &run(&["alerts", "deliver", "--force"]);
    captured += &run(&["outbox", "status"]);
    captured += &run(&["outbox", "flush"]);
    captured += &run(&["doctor"]);
    captured += &run(&["doctor", "--format", "json"]);
    captured += &run(&["link", "--project", "P"]);
    // Errors happened (401 from slurmrestd, InfluxDB down, SMTP refused our password): they are
    // in the output, the secrets are not.
    assert!(captured.contains("refused authentication (401 Unauthorized"), "{captured}");
    assert!(captured.contains("https://allocwatch.secret.example/projects/P?key=v1."), "the link was made: {captured}");
    let mut searched = 0;
    for secret in [influx_token, smtp_password, jwt, "JWT-SECRET-sig", "WEBHOOK-SECRET-key", "LINK-SECRET-key"] {
        for form in encoded_forms(secret) {
            assert!(!captured.contains(&form), "secret {secret:?} leaked (as {form:?}) in:\n{captured}");
            searched += 1;
        }
    }
    assert!(searched >= 6 * 4, "{searched} forms searched"); // itself and three base64 alignments at least
    // The store holds no secret either (errors recorded there are shown by `alerts list`).
    let store = std::fs::read(dir.path().join("store.sqlite")).unwrap();
    let wal = std::fs::read(dir.path().join("store.sqlite-wal")).unwrap_or_default();
    for secret in [influx_token, smtp_password, "JWT-SECRET-sig", "WEBHOOK-SECRET-key", "LINK-SECRET-key"] {
        for form in encoded_forms(secret) {
            let s = form.as_bytes();
            assert!(!store.windows(s.len()).any(|w| w == s) && !wal.windows(s.len()).any(|w| w == s), "secret {secret:?} stored (as {form:?})");
        }
    }
}

/// A store given as a URL is refused by name (its scheme only: a URL may carry a password),
/// from `--store` and from `[store] path`, by every command and the daemon; nothing is created.
#[test]
fn a_store_url_is_refused_naming_its_scheme_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("allocwatch.toml");
    std::fs::write(&cfg, "[store]\npath = \"store.sqlite\"\n").unwrap();
    for (args, shown) in [
        (vec!["--store", "postgresql://aw:s3cret-pw@db.example/aw", "check"], "`postgresql://…` is a PostgreSQL URL"),
        (vec!["--store", "postgres://aw:s3cret-pw@db.example/aw", "run"], "`postgres://…` is a PostgreSQL URL"),
        (vec!["--store", "mysql://aw:s3cret-pw@db.example/aw", "usage"], "`mysql://…` is a URL"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_allocwatch"))
            .current_dir(dir.path())
            .arg("--config")
            .arg(&cfg)
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(shown) && err.contains("--store"), "{args:?}: {err}");
        assert!(!err.contains("s3cret-pw") && !err.contains("db.example"), "the URL is not echoed: {err}");
    }
    std::fs::write(&cfg, "[store]\npath = \"postgresql://aw:s3cret-pw@db.example/aw\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_allocwatch")).current_dir(dir.path()).arg("--config").arg(&cfg).arg("check").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("store.path: `postgresql://…` is a PostgreSQL URL") && !err.contains("s3cret-pw"), "{err}");
    let left: Vec<String> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(left, vec!["allocwatch.toml".to_string()], "nothing created beside the configuration");
}

#[test]
fn a_file_of_nothing_but_rejected_lines_is_a_failed_import_and_a_few_bad_lines_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "[[centre]]\nid = \"c\"\ntimezone = \"UTC\"\nclusters = [\"c\"]\n[[centre.billing]]\nresource = \"cpu\"\npartitions = [\"cpu\"]\nunit = \"cpu\"\n",
    );
    let c = cfg.to_str().unwrap();
    let header = "JobID|JobIDRaw|Cluster|Partition|Account|User|Start|End|ElapsedRaw|AllocCPUS|AllocTRES|State\n";
    let good = "1|1|c|cpu|a|u|1767225600|1767229200|3600|2|cpu=2|COMPLETED\n";
    // Bytes that are no text at all, then a header followed by lines that are all wrong.
    let random: Vec<u8> = (0..600u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(dir.path().join("random.sacct"), &random).unwrap();
    std::fs::write(dir.path().join("bad.sacct"), format!("{header}x|x|c|cpu|a|u|start|end|e|n|t|COMPLETED\n2|2|c|cpu|a|u|1|2|3\n")).unwrap();
    std::fs::write(dir.path().join("mixed.sacct"), format!("{header}{good}2|2|c|cpu|a|u|nope|1767229200|3600|2|cpu=2|COMPLETED\n")).unwrap();
    for f in ["random.sacct", "bad.sacct"] {
        let out = aw(&["--config", c, "import", "--centre", "c", "--format", "sacct", dir.path().join(f).to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{f}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(&format!("{f}: no line could be read")) && err.contains("nothing imported"), "{f}: {err}");
    }
    let out = aw(&["--config", c, "import", "--centre", "c", "--format", "sacct", dir.path().join("mixed.sacct").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(text.contains("1 records (1 new") && text.contains("1 rejected lines") && text.contains("mixed.sacct:3"), "{text}");
}
