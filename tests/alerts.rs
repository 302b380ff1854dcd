//! Alerts end to end against real servers started by `tests/run.sh`: aiosmtpd (plain and with
//! AUTH + STARTTLS), Prometheus Alertmanager, and a webhook receiver in the test. Scenarios are
//! replayed over simulated time with `check --at`.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One job per day for `account`: `hours` CPUs for one hour, from `from` (day index from
/// 2026-01-01) to `to` exclusive.
fn jobs(account: &str, from: i64, to: i64, hours: u32, first_id: u64) -> String {
    let base = "2026-01-01T00:00:00Z".parse::<jiff::Timestamp>().unwrap().as_second();
    let mut s = String::new();
    for d in from..to {
        let start = base + d * 86400 + 3600;
        let id = first_id + d as u64;
        s.push_str(&format!("{id}|{id}|jeanzay|cpu_p1|{account}|user{}|{start}|{}|3600|{hours}|cpu={hours}|COMPLETED\n", d % 3, start + 3600));
    }
    s
}

const HEADER: &str = "JobID|JobIDRaw|Cluster|Partition|Account|User|Start|End|ElapsedRaw|AllocCPUS|AllocTRES|State\n";

struct Scenario {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Scenario {
    /// A store, allocations (100-day periods from 2026-01-01) and accounting; `alerts` is the
    /// `[alerts]` section (its tables) to append.
    fn new(tag: &str, allocations: &str, adjustments: &str, accounting: &str, alerts: &str) -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("alloc.csv"), format!("project,centre,resource,period_start,period_end,granted_hours,accounts,pi,members,committee,profile\n{allocations}")).unwrap();
        std::fs::write(dir.path().join("adj.csv"), format!("date,project,centre,resource,hours,kind,reason\n{adjustments}")).unwrap();
        std::fs::write(dir.path().join("acct.txt"), format!("{HEADER}{accounting}")).unwrap();
        let config = write_config(
            dir.path(),
            &format!(
                r#"
[allocations]
files = ["alloc.csv"]
adjustments = ["adj.csv"]

[[centre]]
id = "idris"
timezone = "UTC"
clusters = ["jeanzay"]
[[centre.billing]]
resource = "cpu"
partitions = ["cpu_p1"]
unit = "cpu"
[[centre.source]]
kind = "files"
format = "sacct"
paths = ["acct.txt"]

[alerts]
{alerts}
"#
            ),
        );
        let _ = tag;
        Scenario { dir, config }
    }

    fn check(&self, at: &str) -> std::process::Output {
        aw(&["--config", self.config.to_str().unwrap(), "check", "--at", at, "--format", "json"])
    }

    fn check_ok(&self, at: &str) -> String {
        let out = self.check(at);
        assert!(out.status.success(), "check --at {at} failed: {}", stderr(&out));
        stderr(&out)
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut a = vec!["--config", self.config.to_str().unwrap()];
        a.extend_from_slice(args);
        aw(&a)
    }
}

fn smtp_section(port: &str, tag: &str) -> String {
    format!(
        r#"[alerts.email]
host = "127.0.0.1"
port = {port}
tls = "none"
from = "allocwatch@ops.example"
[alerts.operations]
emails = ["ops@{tag}.example"]
digest = true
[alerts.delivery]
retry_initial_seconds = 0
retry_max_seconds = 0
timeout_seconds = 5
"#
    )
}

/// A received e-mail, decoded.
#[derive(Debug)]
struct Mail {
    to: String,
    subject: String,
    text: String,
    html: String,
    message_id: String,
}

/// Mails in a Maildir addressed to `*@<tag>.example`.
fn mails(maildir: &Path, tag: &str) -> Vec<Mail> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(maildir.join("new")) else { return out };
    let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    // Maildir names are `SECONDS.M<micros>P<pid>Q<n>.host` with unpadded micros: sort numerically.
    let order = |p: &PathBuf| -> (u64, u64, u64) {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let mut it = name.split('.');
        let secs = it.next().and_then(|x| x.parse().ok()).unwrap_or(0);
        let rest = it.next().unwrap_or("");
        let num = |tag: char| rest.split(tag).nth(1).map(|x| x.chars().take_while(|c| c.is_ascii_digit()).collect::<String>()).and_then(|x| x.parse().ok()).unwrap_or(0);
        (secs, num('M'), num('Q'))
    };
    files.sort_by_key(order);
    for f in files {
        let raw = std::fs::read(&f).unwrap();
        let Some(m) = mail_parser::MessageParser::default().parse(&raw) else { continue };
        let to = m.to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or_default().to_string();
        if !to.ends_with(&format!("@{tag}.example")) {
            continue;
        }
        out.push(Mail {
            to,
            subject: m.subject().unwrap_or_default().to_string(),
            text: m.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
            html: m.body_html(0).map(|t| t.into_owned()).unwrap_or_default(),
            message_id: m.message_id().unwrap_or_default().to_string(),
        });
    }
    out
}

/// Whether some process holds an established TCP connection to 127.0.0.1:`port` (from
/// /proc/net/tcp: a client's remote address is the server's).
fn connected_to(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp").unwrap_or_default().lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[2] == want && f[3] == "01"
    })
}

fn to_count(ms: &[Mail], who: &str) -> usize {
    ms.iter().filter(|m| m.to == who).count()
}


/// A tag unique to this run: the shared test SMTP server keeps every mail it received.
fn unique_tag(base: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{base}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

const SMTP_VARS: &[&str] = &["AW_SMTP_PORT", "AW_SMTP_MAILDIR"];

#[test]
fn thresholds_pace_exhaustion_and_reminders_reach_researchers_and_operations() {
    let Some(env) = server_env("thresholds_pace_exhaustion", SMTP_VARS) else { return };
    let tag = &unique_tag("t1");
    // P1 burns 20 h/day of a 1000 h grant over 100 days: ahead of pace from the start, and
    // exhausted on day 50.
    let s = Scenario::new(
        tag,
        &format!("A0150612345,idris,cpu,2026-01-01,2026-04-11,1000,abc,pi@{tag}.example,m1@{tag}.example;m2@{tag}.example,CT1,\n"),
        "",
        &jobs("abc", 0, 60, 20, 1000),
        &smtp_section(&env["AW_SMTP_PORT"], tag),
    );
    let maildir = PathBuf::from(&env["AW_SMTP_MAILDIR"]);
    // Day 10: 200 h of 1000, exhaustion projected on day 50, 50 days before the end → over pace.
    let err = s.check_ok("2026-01-11");
    assert!(err.contains("alerts: 1 fired"), "{err}");
    let m = wait_for(10, "day-10 mails", || Some(mails(&maildir, tag)).filter(|m| m.len() == 4));
    for who in ["pi", "m1", "m2", "ops"] {
        assert_eq!(to_count(&m, &format!("{who}@{tag}.example")), 1, "{who}: {m:#?}");
    }
    let pi = m.iter().find(|x| x.to == format!("pi@{tag}.example")).unwrap();
    assert_eq!(pi.subject, "[allocwatch] A0150612345 idris/cpu: consuming faster than planned");
    for figure in ["Granted          1,000 h", "Consumed         200 h (20.0 % of granted)", "Expected by now  100 h (drift +10.0 points)", "Burn rate        20.0 h/day", "hours run out on 2026-02-20"] {
        assert!(pi.text.contains(figure), "missing {figure:?} in:\n{}", pi.text);
    }
    assert!(pi.text.contains("Top users (14 days)") && pi.text.contains("user0") && pi.text.contains("cpu_p1"), "{}", pi.text);
    assert!(pi.html.contains("<b>A0150612345</b>"));
    // The same instant again: nothing new.
    let err = s.check_ok("2026-01-11");
    assert!(err.contains("alerts: 0 fired, 0 reminders, 0 resolved, 1 still firing; 0 messages queued"), "{err}");
    // Day 26: 50 % crossed, and the over-pace reminder is due (7 days): one mail with both.
    s.check_ok("2026-01-27");
    let m = wait_for(10, "day-26 mails", || Some(mails(&maildir, tag)).filter(|m| m.len() == 8));
    let latest = m.iter().filter(|x| x.to == format!("pi@{tag}.example")).last().unwrap();
    assert_eq!(latest.subject, "[allocwatch] A0150612345 idris/cpu: 50 % of granted hours used; consuming faster than planned (reminder)");
    // Days 38 and 46: 75 % then 90 %; day 51: exhausted (1,020 h).
    s.check_ok("2026-02-08");
    s.check_ok("2026-02-16");
    s.check_ok("2026-02-21");
    let m = wait_for(10, "mails up to exhaustion", || Some(mails(&maildir, tag)).filter(|m| m.len() == 20));
    let subjects: Vec<&str> = m.iter().filter(|x| x.to == format!("m2@{tag}.example")).map(|x| x.subject.as_str()).collect();
    assert_eq!(
        subjects,
        vec![
            "[allocwatch] A0150612345 idris/cpu: consuming faster than planned",
            "[allocwatch] A0150612345 idris/cpu: 50 % of granted hours used; consuming faster than planned (reminder)",
            "[allocwatch] A0150612345 idris/cpu: 75 % of granted hours used; consuming faster than planned (reminder)",
            // By day 46 nearly every simulated future runs out more than 30 days before the end.
            "[allocwatch] A0150612345 idris/cpu: 90 % of granted hours used; consuming faster than planned (reminder); forecast to run out 30 days or more before the period end",
            "[allocwatch] A0150612345 idris/cpu: granted hours exhausted",
        ]
    );
    let ex = m.iter().filter(|x| x.to == format!("m2@{tag}.example")).last().unwrap();
    assert!(ex.text.contains("Consumed         1,020 h (102.0 % of granted)"), "{}", ex.text);
    // Every message has its own stable Message-ID.
    let ids: std::collections::HashSet<&str> = m.iter().map(|x| x.message_id.as_str()).collect();
    assert_eq!(ids.len(), m.len());
    // The audit trail: who was told what.
    let out = s.cli(&["alerts", "list", "--all", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let over = rows.iter().find(|r| r["rule"] == "over_pace").unwrap();
    assert_eq!(over["state"], "firing");
    assert_eq!(over["pending"], 0);
    assert_eq!(over["sent"], 5 * 4 - 4); // in every mail but the last one's 4 (exhausted only)
}

#[test]
fn under_pace_and_take_back_checkpoint_warn_with_hours_at_stake_in_french() {
    let Some(env) = server_env("under_pace_checkpoint", SMTP_VARS) else { return };
    let tag = &unique_tag("t2");
    // 2 h/day of 1000 h: at day 37, 74 h consumed (7.4 %), 8 days before a 2026-02-15
    // checkpoint requiring 20 %: projected 90 h → 227.5 h at stake (25 % of 910 h unused).
    let s = Scenario::new(
        tag,
        &format!("A0160701234,idris,cpu,2026-01-01,2026-04-11,1000,def,pi@{tag}.example,,CT2,\n"),
        "",
        &jobs("def", 0, 100, 2, 5000),
        &format!(
            "language = \"fr\"\n{}\n[[alerts.checkpoint]]\ndate = \"2026-02-15\"\nmin_consumed_pct = 20\ntakeback_pct = 25\nwarn_days = 10\n",
            smtp_section(&env["AW_SMTP_PORT"], tag)
        ),
    );
    let maildir = PathBuf::from(&env["AW_SMTP_MAILDIR"]);
    s.check_ok("2026-01-20"); // 19 % elapsed: too early for under pace, too early for the checkpoint
    assert!(mails(&maildir, tag).is_empty());
    let err = s.check_ok("2026-02-07"); // day 37
    assert!(err.contains("alerts: 2 fired"), "{err}");
    let m = wait_for(10, "under-pace mails", || Some(mails(&maildir, tag)).filter(|m| m.len() == 2));
    let pi = m.iter().find(|x| x.to == format!("pi@{tag}.example")).unwrap();
    assert!(pi.subject.contains("consommation plus lente que prévu") && pi.subject.contains("point de contrôle du 2026-02-15"), "{}", pi.subject);
    assert!(pi.text.contains("Bonjour"), "{}", pi.text);
    assert!(pi.text.contains("228 h en jeu"), "{}", pi.text);
    assert!(pi.text.contains("Projection : 9,0 %"), "{}", pi.text);
    // After the checkpoint date the warning resolves quietly; under pace keeps firing (and its
    // weekly reminder is the only new message).
    s.check_ok("2026-02-16");
    let out = s.cli(&["alerts", "list", "--all", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let cp = rows.iter().find(|r| r["rule"] == "checkpoint").unwrap();
    assert_eq!((cp["state"].as_str(), cp["discriminator"].as_str()), (Some("resolved"), Some("2026-02-15")));
    let m = wait_for(10, "reminders", || Some(mails(&maildir, tag)).filter(|m| m.len() == 4));
    let last = m.iter().filter(|x| x.to == format!("pi@{tag}.example")).last().unwrap();
    assert_eq!(last.subject, "[allocwatch] A0160701234 idris/cpu : consommation plus lente que prévu : heures menacées (rappel)");
}

#[test]
fn a_top_up_resolves_alerts_and_rearms_thresholds() {
    let Some(env) = server_env("top_up_resolves", SMTP_VARS) else { return };
    let tag = &unique_tag("t3");
    // 10 h/day of 300 h: at day 20, 200 h (67 %), drift +47 pp → over pace and 50 % threshold.
    // A top-up of 700 h on day 21 brings it to 21 % of 1000 h: both clear.
    let s = Scenario::new(
        tag,
        &format!("A0170000001,idris,cpu,2026-01-01,2026-04-11,300,ghi,pi@{tag}.example,,CT3,\n"),
        "2026-01-22,A0170000001,idris,cpu,700,topup,mid-term review\n",
        &jobs("ghi", 0, 100, 10, 9000),
        &smtp_section(&env["AW_SMTP_PORT"], tag),
    );
    let maildir = PathBuf::from(&env["AW_SMTP_MAILDIR"]);
    s.check_ok("2026-01-21");
    wait_for(10, "first mails", || Some(mails(&maildir, tag)).filter(|m| m.len() == 2));
    let err = s.check_ok("2026-01-23");
    assert!(err.contains("0 fired, 0 reminders, 2 resolved"), "{err}");
    let m = wait_for(10, "resolution mails", || Some(mails(&maildir, tag)).filter(|m| m.len() == 4));
    let last = m.iter().filter(|x| x.to == format!("pi@{tag}.example")).last().unwrap();
    // The threshold re-arms silently; the over-pace resolution is told with today's figures.
    assert_eq!(last.subject, "[allocwatch] A0170000001 idris/cpu: back on the expected pace");
    assert!(last.text.contains("Granted          1,000 h"), "{}", last.text);
    // Consumption catches up with the new grant: the 50 % threshold fires again later.
    let err = s.check_ok("2026-02-20"); // 500 h of 1000
    assert!(err.contains("1 fired"), "{err}");
}

#[test]
fn a_researcher_only_ever_receives_their_own_project() {
    let Some(env) = server_env("researcher_privacy", SMTP_VARS) else { return };
    let tag = &unique_tag("t4");
    // Two projects share a member; a third does not. All three are over pace at once.
    let s = Scenario::new(
        tag,
        &format!(
            "PROJ-AAA,idris,cpu,2026-01-01,2026-04-11,1000,aaa,pia@{tag}.example,shared@{tag}.example,CT1,\n\
             PROJ-BBB,idris,cpu,2026-01-01,2026-04-11,1000,bbb,pib@{tag}.example,shared@{tag}.example;SHARED@{tag}.example,CT1,\n\
             PROJ-CCC,idris,cpu,2026-01-01,2026-04-11,1000,ccc,pic@{tag}.example,,CT1,\n"
        ),
        "",
        &format!("{}{}{}", jobs("aaa", 0, 20, 30, 100), jobs("bbb", 0, 20, 30, 300), jobs("ccc", 0, 20, 30, 500)),
        &smtp_section(&env["AW_SMTP_PORT"], tag).replace("digest = true", "digest = false"),
    );
    let maildir = PathBuf::from(&env["AW_SMTP_MAILDIR"]);
    s.check_ok("2026-01-15");
    // pia, pib, pic: 1 each; shared: 2 (one per project, address case folded); ops: one per alert.
    let m = wait_for(10, "privacy mails", || Some(mails(&maildir, tag)).filter(|m| m.len() == 8));
    let projects = ["PROJ-AAA", "PROJ-BBB", "PROJ-CCC"];
    for mail in m.iter().filter(|x| !x.to.starts_with("ops@")) {
        let own: Vec<&&str> = projects.iter().filter(|p| mail.text.contains(**p) || mail.subject.contains(**p) || mail.html.contains(**p)).collect();
        assert_eq!(own.len(), 1, "{} got a mail naming {:?}:\n{}", mail.to, own, mail.text);
    }
    assert_eq!(to_count(&m, &format!("shared@{tag}.example")), 2);
    let shared: Vec<&Mail> = m.iter().filter(|x| x.to == format!("shared@{tag}.example")).collect();
    assert!(shared.iter().any(|x| x.subject.contains("PROJ-AAA")) && shared.iter().any(|x| x.subject.contains("PROJ-BBB")));
    for (who, project) in [("pia", "PROJ-AAA"), ("pib", "PROJ-BBB"), ("pic", "PROJ-CCC")] {
        let mine: Vec<&Mail> = m.iter().filter(|x| x.to == format!("{who}@{tag}.example")).collect();
        assert_eq!(mine.len(), 1, "{who}");
        assert!(mine[0].subject.contains(project));
    }
}

#[test]
fn smtp_down_for_several_cycles_then_every_owed_mail_arrives_once() {
    if server_env("smtp_outage", SMTP_VARS).is_none() {
        return;
    }
    let tag = &unique_tag("t5");
    let port = free_port();
    let maildir = tempfile::tempdir().unwrap();
    let s = Scenario::new(
        tag,
        &format!("A0180000001,idris,cpu,2026-01-01,2026-04-11,1000,jkl,pi@{tag}.example,,CT1,\n"),
        "",
        &jobs("jkl", 0, 60, 20, 20000),
        &smtp_section(&port.to_string(), tag),
    );
    // SMTP is down: three cycles queue their mails and fail to deliver, cleanly.
    for at in ["2026-01-11", "2026-01-27", "2026-02-08"] {
        let out = s.check(at);
        assert!(out.status.success(), "a delivery failure is not a failed check: {}", stderr(&out));
        assert!(stderr(&out).contains("failed attempts"), "{}", stderr(&out));
    }
    let out = s.cli(&["alerts", "list", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(rows.iter().all(|r| r["sent"] == 0), "{rows:#?}");
    assert!(rows.iter().any(|r| r["last_error"].as_str().is_some_and(|e| e.contains("SMTP 127.0.0.1"))), "{rows:#?}");
    // Back up: one delivery pass sends every owed mail, in order, once.
    let mut smtp = private_smtp(port, maildir.path());
    let out = s.cli(&["alerts", "deliver"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m = mails(maildir.path(), tag);
    assert_eq!(m.len(), 6, "3 cycles × (pi + ops digest): {m:#?}");
    let pi: Vec<&str> = m.iter().filter(|x| x.to == format!("pi@{tag}.example")).map(|x| x.subject.as_str()).collect();
    assert_eq!(pi.len(), 3);
    assert!(pi[0].ends_with("consuming faster than planned"));
    assert!(pi[1].contains("50 %") && pi[2].contains("75 %"), "{pi:?}");
    // Nothing is sent twice.
    let out = s.cli(&["alerts", "deliver", "--force"]);
    assert!(out.status.success());
    assert_eq!(mails(maildir.path(), tag).len(), 6);
    smtp.kill().ok();
    smtp.wait().ok();
}

#[test]
fn killed_with_sigkill_during_delivery_nothing_lost_nothing_doubled() {
    if server_env("kill_during_delivery", SMTP_VARS).is_none() {
        return;
    }
    let tag = &unique_tag("t6");
    let port = free_port();
    let maildir = tempfile::tempdir().unwrap();
    let mut smtp = private_smtp(port, maildir.path());
    let s = Scenario::new(
        tag,
        &format!("A0190000001,idris,cpu,2026-01-01,2026-04-11,1000,mno,pi@{tag}.example,m@{tag}.example,CT1,\n"),
        "",
        &jobs("mno", 0, 60, 20, 30000),
        &format!(
            "{}\n[reconcile]\nat = \"2026-01-11T00:00:00Z\"\n",
            smtp_section(&port.to_string(), tag).replace("timeout_seconds = 5", "timeout_seconds = 60")
        ),
    );
    // Freeze the SMTP server: the daemon evaluates, commits, then hangs in its first delivery.
    let pid = smtp.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_allocwatch"))
        .args(["--config", s.config.to_str().unwrap(), "run"])
        .env("ALLOCWATCH_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the cycle's notifications are in the outbox, then kill -9 mid-delivery.
    let store = s.dir.path().join("store.sqlite");
    wait_for(60, "queued notifications", || {
        let c = rusqlite::Connection::open(&store).ok()?;
        let n: i64 = c.query_row("SELECT COUNT(*) FROM notifications", [], |r| r.get(0)).ok()?;
        (n > 0).then_some(())
    });
    // A delivery is in flight: the daemon's connection to the (frozen) server is established
    // (the kernel completes the handshake for a stopped listener), and nothing was sent yet.
    wait_for(60, "the daemon connected to the SMTP server", || connected_to(port).then_some(()));
    assert!(mails(maildir.path(), tag).is_empty());
    daemon.kill().unwrap(); // SIGKILL
    daemon.wait().unwrap();
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    // Restart: deliver what is owed. The pinned config has no `at`, so use the same store.
    let out = s.cli(&["alerts", "deliver", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // `deliver` returns once the server accepted each message (aiosmtpd writes it before its
    // 250), and nothing else is running: what is on disk now is everything.
    let m2 = mails(maildir.path(), tag);
    assert_eq!(m2.len(), 3, "{m2:#?}");
    for who in ["pi", "m", "ops"] {
        assert_eq!(to_count(&m2, &format!("{who}@{tag}.example")), 1, "{who} must get exactly one: {m2:#?}");
    }
    smtp.kill().ok();
    smtp.wait().ok();
}

#[test]
fn smtp_auth_with_starttls_and_no_secret_in_output() {
    let Some(env) = server_env(
        "smtp_auth",
        &["AW_SMTP_AUTH_PORT", "AW_SMTP_AUTH_USER", "AW_SMTP_AUTH_PASSWORD", "AW_SMTP_AUTH_MAILDIR", "AW_SMTP_AUTH_CA_CERT"],
    ) else {
        return;
    };
    let tag = &unique_tag("t7");
    let pw_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pw_file.path(), format!("{}\n", env["AW_SMTP_AUTH_PASSWORD"])).unwrap();
    let section = format!(
        r#"[alerts.email]
host = "localhost"
port = {}
tls = "starttls"
username = "{}"
password_file = "{}"
ca_file = "{}"
from = "allocwatch@ops.example"
[alerts.delivery]
retry_initial_seconds = 0
retry_max_seconds = 0
"#,
        env["AW_SMTP_AUTH_PORT"],
        env["AW_SMTP_AUTH_USER"],
        pw_file.path().display(),
        env["AW_SMTP_AUTH_CA_CERT"]
    );
    let s = Scenario::new(
        tag,
        &format!("A0200000001,idris,cpu,2026-01-01,2026-04-11,1000,pqr,pi@{tag}.example,,CT1,\n"),
        "",
        &jobs("pqr", 0, 30, 20, 40000),
        &section,
    );
    let out = s.check("2026-01-11");
    assert!(out.status.success(), "{}", stderr(&out));
    let m = wait_for(10, "authenticated mail", || Some(mails(Path::new(&env["AW_SMTP_AUTH_MAILDIR"]), tag)).filter(|m| !m.is_empty()));
    assert_eq!(m[0].to, format!("pi@{tag}.example"));
    // A wrong password: the error is clear and never shows the password.
    std::fs::write(pw_file.path(), "not-the-password-xyz\n").unwrap();
    let out = s.check("2026-01-27");
    let err = stderr(&out);
    let list = s.cli(&["alerts", "list", "--format", "json"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    // The reason, as the server gave it: 535, authentication refused.
    assert!(listed.contains("535") && listed.contains("Authentication credentials invalid"), "{listed}");
    for text in [&err, &listed.to_string(), &String::from_utf8_lossy(&s.cli(&["config", "check"]).stdout).to_string()] {
        assert!(!text.contains("not-the-password-xyz") && !text.contains(&env["AW_SMTP_AUTH_PASSWORD"]), "secret leaked: {text}");
    }
}

/// `[alerts.email]` for one of the AUTH servers (`smtpauth`, `smtps`, `smtpstrict`: same account):
/// `tls` mode, the password read from `pw_file`, the relay's CA if given.
fn auth_section(port: &str, tls: &str, user: &str, pw_file: &Path, ca_file: Option<&Path>) -> String {
    format!(
        "[alerts.email]\nhost = \"localhost\"\nport = {port}\ntls = \"{tls}\"\nusername = \"{user}\"\npassword_file = \"{}\"\n{}\
         from = \"allocwatch@ops.example\"\n[alerts.delivery]\nretry_initial_seconds = 0\nretry_max_seconds = 0\ntimeout_seconds = 5\n",
        pw_file.display(),
        ca_file.map(|c| format!("ca_file = \"{}\"\n", c.display())).unwrap_or_default()
    )
}

/// The e-mail outbox of a store, oldest first: (state, attempts, last error).
fn email_outbox(store: &Path) -> Vec<(String, i64, Option<String>)> {
    let c = rusqlite::Connection::open(store).unwrap();
    let mut q = c.prepare("SELECT state, attempts, last_error FROM notifications WHERE channel = 'email' ORDER BY id").unwrap();
    let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
    rows.map(|r| r.unwrap()).collect()
}

/// A store's bytes, its WAL included.
fn store_bytes(store: &Path) -> Vec<u8> {
    let mut b = std::fs::read(store).unwrap();
    b.extend(std::fs::read(store.with_extension("sqlite-wal")).unwrap_or_default());
    b
}

/// `tls = "tls"` (implicit TLS, SMTPS) against the `smtps` server (aiosmtpd behind a TLS
/// listener, AUTH required): without the relay's CA, then with another CA of the very same name,
/// the delivery fails on the certificate, nothing is marked sent; with `ca_file` it is delivered
/// once.
#[test]
fn smtps_implicit_tls_trusts_only_the_configured_ca_and_delivers_once() {
    let Some(env) = server_env("smtps", &["AW_SMTP_TLS_PORT", "AW_SMTP_AUTH_USER", "AW_SMTP_AUTH_PASSWORD", "AW_SMTP_AUTH_MAILDIR", "AW_SMTP_AUTH_CA_CERT"]) else {
        return;
    };
    let tag = &unique_tag("t11");
    let password = &env["AW_SMTP_AUTH_PASSWORD"];
    let pw_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pw_file.path(), format!("{password}\n")).unwrap();
    // Another CA under the test CA's very name (another key): a name match is not trust.
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("other-ca.pem");
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=allocwatch test CA", "-keyout"])
        .arg(other.path().join("other-ca.key"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .expect("openssl (start.sh installs it for the SMTP servers)");
    assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
    let section = |ca: Option<&Path>| auth_section(&env["AW_SMTP_TLS_PORT"], "tls", &env["AW_SMTP_AUTH_USER"], pw_file.path(), ca);
    let s = Scenario::new(
        tag,
        &format!("A0240000001,idris,cpu,2026-01-01,2026-04-11,1000,smt,pi@{tag}.example,,CT1,\n"),
        "",
        &jobs("smt", 0, 30, 20, 90000),
        &section(None),
    );
    let store = s.dir.path().join("store.sqlite");
    let maildir = Path::new(&env["AW_SMTP_AUTH_MAILDIR"]);
    let set_email = |ca: Option<&Path>| {
        let cfg = std::fs::read_to_string(&s.config).unwrap();
        let (head, _) = cfg.split_once("[alerts.email]").unwrap();
        std::fs::write(&s.config, format!("{head}{}", section(ca))).unwrap();
    };
    let mut captured = Vec::new();
    // 1. No ca_file: the throw-away CA is in no default root store.
    let out = s.check("2026-01-11");
    let err = stderr(&out);
    assert!(out.status.success(), "a failed delivery stays queued, the cycle succeeds: {err}");
    assert!(err.contains("alerts: 1 fired") && err.contains("notifications: 0 sent, 1 failed attempts, 1 queued"), "{err}");
    let tls_error = format!("SMTP localhost:{}: Connection error: Connection error: invalid peer certificate: UnknownIssuer", env["AW_SMTP_TLS_PORT"]);
    assert!(err.contains(&format!("delivery failed: {tls_error}")), "{err}");
    assert_eq!(email_outbox(&store), vec![("pending".to_string(), 1, Some(tls_error.clone()))]);
    let listed = s.cli(&["alerts", "list", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!((rows[0]["sent"].as_i64(), rows[0]["pending"].as_i64(), rows[0]["last_error"].as_str()), (Some(0), Some(1), Some(tls_error.as_str())), "{rows:#?}");
    captured.extend(out.stdout.iter().chain(out.stderr.iter()).chain(listed.stdout.iter()));
    // 2. Another CA of the same name: the signature does not verify.
    set_email(Some(&other_ca));
    let out = s.cli(&["alerts", "deliver"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let bad_sig = format!("SMTP localhost:{}: Connection error: Connection error: invalid peer certificate: BadSignature", env["AW_SMTP_TLS_PORT"]);
    assert!(err.contains(&bad_sig) && err.contains("notifications: 0 sent, 1 failed attempts, 1 queued"), "{err}");
    assert_eq!(email_outbox(&store), vec![("pending".to_string(), 2, Some(bad_sig))]);
    assert!(mails(maildir, tag).is_empty(), "nothing may arrive over an untrusted connection");
    captured.extend(out.stdout.iter().chain(out.stderr.iter()));
    // 3. The relay's CA: delivered, once; a second pass owes nothing.
    set_email(Some(Path::new(&env["AW_SMTP_AUTH_CA_CERT"])));
    let out = s.cli(&["alerts", "deliver"]);
    let err = stderr(&out);
    assert!(out.status.success() && err.contains("notifications: 1 sent, 0 failed attempts, 0 queued"), "{err}");
    captured.extend(out.stdout.iter().chain(out.stderr.iter()));
    let out = s.cli(&["alerts", "deliver", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m = mails(maildir, tag);
    assert_eq!(m.iter().map(|x| x.to.as_str()).collect::<Vec<_>>(), vec![format!("pi@{tag}.example")], "{m:#?}");
    assert_eq!(m[0].subject, "[allocwatch] A0240000001 idris/cpu: consuming faster than planned");
    assert_eq!(email_outbox(&store), vec![("sent".to_string(), 3, None)]);
    assert_secret_absent(password, "allocwatch's output", &captured);
    assert_secret_absent(password, "the store", &store_bytes(&store));
}

/// A relay that, like Postfix with `smtpd_tls_auth_only = yes`, accepts AUTH only after
/// STARTTLS (`smtpstrict`: aiosmtpd with `auth_require_tls=True`, which lists no AUTH in its
/// plain EHLO and answers an AUTH command with 538). With `tls = "none"` and a login, allocwatch
/// does not log in, says why, sends no credentials (the server's log of every AUTH command shows
/// none), keeps the message; with `tls = "starttls"` it logs in over TLS and delivers, once.
#[test]
fn smtp_auth_only_after_starttls_no_credentials_in_clear() {
    let Some(env) = server_env(
        "smtp_strict",
        &["AW_SERVERS_DIR", "AW_SMTP_STRICT_PORT", "AW_SMTP_AUTH_USER", "AW_SMTP_AUTH_PASSWORD", "AW_SMTP_AUTH_MAILDIR", "AW_SMTP_AUTH_CA_CERT"],
    ) else {
        return;
    };
    let tag = &unique_tag("t12");
    let (port, password) = (&env["AW_SMTP_STRICT_PORT"], &env["AW_SMTP_AUTH_PASSWORD"]);
    let pw_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(pw_file.path(), format!("{password}\n")).unwrap();
    let s = Scenario::new(
        tag,
        &format!("A0250000001,idris,cpu,2026-01-01,2026-04-11,1000,sst,pi@{tag}.example,,CT1,\n"),
        "",
        &jobs("sst", 0, 30, 20, 95000),
        &auth_section(port, "none", &env["AW_SMTP_AUTH_USER"], pw_file.path(), None),
    );
    let store = s.dir.path().join("store.sqlite");
    let maildir = Path::new(&env["AW_SMTP_AUTH_MAILDIR"]);
    // smtp_auth_server.py logs every AUTH command it receives (mechanism, peer, tls=yes|no) and
    // every login's verdict; only this test uses this server, so its new lines are ours.
    let log_path = Path::new(&env["AW_SERVERS_DIR"]).join("logs/smtpstrict.log");
    let log_len = || std::fs::metadata(&log_path).map(|m| m.len() as usize).unwrap_or(0);
    let log_since = |from: usize| String::from_utf8_lossy(&std::fs::read(&log_path).unwrap_or_default()[from..]).into_owned();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_allocwatch"))
            .args(["--config", s.config.to_str().unwrap()])
            .args(args)
            .env("ALLOCWATCH_LOG", "trace")
            .output()
            .unwrap()
    };
    let log0 = log_len();
    let out = run(&["check", "--at", "2026-01-11"]);
    let err = stderr(&out);
    assert!(out.status.success(), "a failed delivery stays queued, the cycle succeeds: {err}");
    let refusal = format!(
        "SMTP localhost:{port}: internal client error: No compatible authentication mechanism was found (the server offers no AUTH PLAIN or LOGIN on this unencrypted connection, so allocwatch did not log in and sent no credentials; a relay that accepts logins only over TLS offers AUTH after STARTTLS: set alerts.email.tls = \"starttls\" or \"tls\")"
    );
    assert!(err.contains(&format!("delivery failed: {refusal}")) && err.contains("notifications: 0 sent, 1 failed attempts, 1 queued"), "{err}");
    assert_eq!(email_outbox(&store), vec![("pending".to_string(), 1, Some(refusal.clone()))]);
    let listed = s.cli(&["alerts", "list", "--format", "json"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&serde_json::to_string(&refusal).unwrap()), "{}", String::from_utf8_lossy(&listed.stdout));
    assert!(mails(maildir, tag).is_empty());
    // The server saw no AUTH command at all on this plain connection (no 538 either: allocwatch
    // never tried), and the password is nowhere in what allocwatch printed, logged or stored.
    let seen = log_since(log0);
    assert!(!seen.contains("AUTH"), "AUTH sent without TLS:\n{seen}");
    let mut captured: Vec<u8> = [&out.stdout[..], &out.stderr[..], &listed.stdout[..]].concat();
    // The same through `doctor`: the probe explains it too.
    let doctor = run(&["doctor"]);
    let said = format!("{}{}", String::from_utf8_lossy(&doctor.stdout), stderr(&doctor));
    assert!(said.contains("connection (no TLS) failed: internal client error: No compatible authentication mechanism was found (the server offers no AUTH PLAIN or LOGIN on this unencrypted connection"), "{said}");
    assert!(!log_since(log0).contains("AUTH"), "doctor sent AUTH without TLS:\n{}", log_since(log0));
    captured.extend_from_slice(said.as_bytes());
    // STARTTLS: AUTH over TLS, accepted; the mail is delivered once.
    let cfg = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, cfg.replace("tls = \"none\"\n", &format!("tls = \"starttls\"\nca_file = \"{}\"\n", env["AW_SMTP_AUTH_CA_CERT"]))).unwrap();
    let log1 = log_len();
    let out = run(&["alerts", "deliver"]);
    let err = stderr(&out);
    assert!(out.status.success() && err.contains("notifications: 1 sent, 0 failed attempts, 0 queued"), "{err}");
    captured.extend_from_slice(&[&out.stdout[..], &out.stderr[..]].concat());
    let seen = log_since(log1);
    let auth_lines: Vec<&str> = seen.lines().filter(|l| l.starts_with("AUTH")).collect();
    assert!(
        auth_lines.len() == 2
            && auth_lines[0].starts_with("AUTH command PLAIN listener=smtpstrict peer=127.0.0.1:")
            && auth_lines[0].ends_with(" tls=yes")
            && auth_lines[1] == format!("AUTH PLAIN listener=smtpstrict tls=yes user=b'{}' -> ok", env["AW_SMTP_AUTH_USER"]),
        "one AUTH, over TLS, accepted:\n{seen}"
    );
    let m = mails(maildir, tag);
    assert_eq!(m.iter().map(|x| x.to.as_str()).collect::<Vec<_>>(), vec![format!("pi@{tag}.example")], "{m:#?}");
    assert_eq!(email_outbox(&store), vec![("sent".to_string(), 2, None)]);
    assert_secret_absent(password, "allocwatch's output and log", &captured);
    assert_secret_absent(password, "the store", &store_bytes(&store));
}

#[test]
fn alertmanager_and_webhook_receive_operations_alerts() {
    let Some(env) = server_env("alertmanager_webhook", &["AW_AM_URL"]) else { return };
    let tag = &unique_tag("t8");
    // A webhook receiver inside the test (it is the receiver, not the system under test).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = format!("http://127.0.0.1:{}/hooks/secret-key-123", listener.local_addr().unwrap().port());
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let r2 = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let (headers, body) = read_http(&mut stream);
            r2.lock().unwrap().push((headers, body));
            use std::io::Write;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    let s = Scenario::new(
        tag,
        &format!("A0210000001,idris,cpu,2026-01-01,2026-04-11,1000,stu,pi@{tag}.example,,CT8,\n"),
        "2026-01-22,A0210000001,idris,cpu,2000,topup,more hours\n",
        &format!("{}{}", jobs("stu", 0, 40, 20, 50000), jobs("orph8", 15, 20, 5, 60000)),
        &format!(
            "[alerts.webhook]\nurl_env = \"AW_TEST_HOOK_URL\"\nformat = \"json\"\n[alerts.alertmanager]\nurl = \"{}\"\n",
            env["AW_AM_URL"]
        ),
    );
    let run = |at: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_allocwatch"))
            .args(["--config", s.config.to_str().unwrap(), "check", "--at", at])
            .env("AW_TEST_HOOK_URL", &hook)
            .env("ALLOCWATCH_LOG", "debug")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(!stderr(&out).contains("secret-key-123"), "webhook URL leaked: {}", stderr(&out));
        out
    };
    run("2026-01-21");
    // Alertmanager: over pace and orphan usage, with the documented labels.
    let am = &env["AW_AM_URL"];
    let active = |filter: &str| -> Vec<serde_json::Value> {
        let url = format!("{am}/api/v2/alerts?filter={}", urlencode(filter));
        let body = http_get(&url);
        serde_json::from_str(&body).unwrap()
    };
    let over = wait_for(10, "over_pace in Alertmanager", || {
        let v = active("project=\"A0210000001\"");
        v.into_iter().find(|a| a["labels"]["alertname"] == "over_pace")
    });
    for (k, v) in [("centre", "idris"), ("project", "A0210000001"), ("resource", "cpu"), ("severity", "warning")] {
        assert_eq!(over["labels"][k], v, "{over:#}");
    }
    let orphan = active("account=\"orph8\"");
    assert!(orphan.iter().any(|a| a["labels"]["alertname"] == "orphan_usage"), "{orphan:#?}");
    // Webhook: one JSON document per alert change, with an idempotency key.
    let got = wait_for(10, "webhook posts", || Some(received.lock().unwrap().clone()).filter(|v| v.len() >= 2));
    let bodies: Vec<serde_json::Value> = got.iter().map(|(_, b)| serde_json::from_str(b).unwrap()).collect();
    assert!(bodies.iter().any(|b| b["alert"]["rule"] == "over_pace" && b["alert"]["facts"]["project"] == "A0210000001"));
    assert!(got.iter().all(|(h, _)| h.to_lowercase().contains("idempotency-key: allocwatch-notification-")));
    // The top-up resolves over pace: Alertmanager no longer shows it active.
    run("2026-01-23");
    wait_for(10, "over_pace resolved in Alertmanager", || {
        let v = active("project=\"A0210000001\"");
        (!v.iter().any(|a| a["labels"]["alertname"] == "over_pace" && a["status"]["state"] == "active")).then_some(())
    });
}


fn http_get(url: &str) -> String {
    let out = Command::new("curl").args(["-sf", url]).output().expect("curl");
    assert!(out.status.success(), "GET {url} failed");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn stale_feed_fires_for_operations_only() {
    let Some(env) = server_env("stale_feed", SMTP_VARS) else { return };
    let tag = &unique_tag("t9");
    let s = Scenario::new(
        tag,
        &format!("A0220000001,idris,cpu,2026-01-01,2026-04-11,1000,vwx,pi@{tag}.example,,CT1,\n"),
        "",
        &jobs("vwx", 0, 5, 10, 70000),
        &smtp_section(&env["AW_SMTP_PORT"], tag),
    );
    // The file is imported now (the pull's time); 7 hours later nothing new has arrived.
    let now = jiff::Timestamp::now();
    s.check_ok(&now.to_string());
    let later = (now + jiff::SignedDuration::from_hours(7)).to_string();
    let err = s.check_ok(&later);
    assert!(err.contains("1 fired"), "{err}");
    let m = wait_for(10, "stale feed mail", || Some(mails(Path::new(&env["AW_SMTP_MAILDIR"]), tag)).filter(|m| !m.is_empty()));
    assert_eq!(m.len(), 1, "operations only: {m:#?}");
    assert_eq!(m[0].to, format!("ops@{tag}.example"));
    assert!(m[0].text.contains("accounting data no longer arriving") || m[0].text.to_uppercase().contains("ACCOUNTING DATA NO LONGER ARRIVING"), "{}", m[0].text);
}

#[test]
fn acknowledged_alerts_are_not_reminded() {
    let Some(env) = server_env("ack", SMTP_VARS) else { return };
    let tag = &unique_tag("t10");
    let s = Scenario::new(
        tag,
        &format!("A0230000001,idris,cpu,2026-01-01,2026-04-11,1000,yza,pi@{tag}.example,,CT1,\n"),
        "",
        &jobs("yza", 0, 40, 20, 80000),
        &smtp_section(&env["AW_SMTP_PORT"], tag).replace("[alerts.email]", "[alerts.rules.threshold]\nenabled = false\n[alerts.email]"),
    );
    s.check_ok("2026-01-11");
    let out = s.cli(&["alerts", "list", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let id = rows[0]["id"].as_i64().unwrap().to_string();
    let out = s.cli(&["alerts", "ack", &id, "--by", "ops-alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = s.check_ok("2026-01-25"); // 14 days later: a reminder would be due
    assert!(err.contains("0 reminders"), "{err}");
    assert_eq!(mails(Path::new(&env["AW_SMTP_MAILDIR"]), tag).len(), 2);
    let out = s.cli(&["alerts", "ack", "999999"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn forecast_rules_warn_researchers_and_the_allocator_with_the_band_in_english_and_french() {
    let Some(env) = server_env("forecast_rules", SMTP_VARS) else { return };
    let tag = &unique_tag("t9");
    // FAST burns 40 h/day of 1000 h over 100 days: at day 20, 800 h; 200 h more in the 50 days
    // that end 30 days before the period end take 4 h/day, which nearly every simulated future
    // (history at 40 h/day, or the plan at 10 h/day, each at an uncertain level) exceeds.
    // SLOW burns 1 h/day: the plan alone would leave hours unused.
    let s = Scenario::new(
        tag,
        &format!(
            "A0190000001,idris,cpu,2026-01-01,2026-04-11,1000,fast,pi-fast@{tag}.example,,CT1,\n\
             A0190000002,idris,cpu,2026-01-01,2026-04-11,1000,slow,pi-slow@{tag}.example,,CT1,\n"
        ),
        "",
        &format!("{}{}", jobs("fast", 0, 20, 40, 20_000), jobs("slow", 0, 100, 1, 30_000)),
        &format!(
            "[alerts.rules.threshold]\nenabled = false\n[alerts.rules.over_pace]\nenabled = false\n[alerts.rules.under_pace]\nenabled = false\n{}",
            smtp_section(&env["AW_SMTP_PORT"], tag)
        ),
    );
    let maildir = PathBuf::from(&env["AW_SMTP_MAILDIR"]);
    let err = s.check_ok("2026-01-21");
    assert!(err.contains("alerts: 1 fired"), "{err}");
    let m = wait_for(10, "forecast_exhaustion mails", || Some(mails(&maildir, tag)).filter(|m| m.len() == 2));
    let pi = m.iter().find(|x| x.to == format!("pi-fast@{tag}.example")).expect("the PI is told");
    assert_eq!(pi.subject, "[allocwatch] A0190000001 idris/cpu: forecast to run out 30 days or more before the period end");
    for figure in ["Forecast (80 %)  hours run out between 2026-01-", "consumed by the period end (median", "of the futures simulated from the last 20 days' usage (and the plan) run out at least", "(80 % is the alert's threshold)", "Top users (14 days)"] {
        assert!(pi.text.contains(figure), "missing {figure:?} in:\n{}", pi.text);
    }
    assert!(pi.html.contains("<td>Forecast (80 %)</td>") && pi.html.contains("<td>Why</td>"), "{}", pi.html);
    assert!(!m.iter().any(|x| x.to == format!("pi-slow@{tag}.example")), "SLOW's PI hears nothing: forecast_unused is the allocator's");
    // The rule's figures, as the audit trail keeps them.
    let out = s.cli(&["alerts", "list", "--format", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let fe = rows.iter().find(|r| r["rule"] == "forecast_exhaustion").expect("forecast_exhaustion firing");
    assert!(fe["title"].as_str().unwrap().contains("likely to run out 30 days or more before the period end"), "{fe}");

    // SLOW, at day 50 and in French for the operations team (the allocator): at 1 h/day, or
    // even on the plan at 10 h/day, 10 % of the grant or more stays unused at the end.
    let fr = std::fs::read_to_string(&s.config).unwrap().replace("[alerts]\n", "[alerts]\nlanguage = \"fr\"\n");
    std::fs::write(&s.config, fr).unwrap();
    let err = s.check_ok("2026-02-20");
    assert!(err.contains("1 fired"), "{err}");
    let m = wait_for(10, "forecast_unused mail", || Some(mails(&maildir, tag)).filter(|m| m.iter().any(|x| x.text.contains("[forecast_unused"))));
    let ops = m.iter().find(|x| x.to == format!("ops@{tag}.example") && x.text.contains("[forecast_unused")).unwrap();
    assert!(ops.subject.contains("changements d'alerte"), "{}", ops.subject);
    assert!(ops.text.contains("A0190000002 idris/cpu: ") && ops.text.contains("likely to leave 10 % or more of its grant unused at the period end"), "{}", ops.text);
    // FAST idled since day 20: its forecast no longer runs out early, and that is told too.
    assert!(ops.text.contains("la prévision n'annonce plus d'épuisement précoce [forecast_exhaustion"), "{}", ops.text);
    for figure in ["heures non consommées prévues en fin de période", "Prévision (80 %)", "des évolutions simulées consomment", "laissant 10 % ou plus de l'attribution", "h en jeu (seuil de l'alerte : 80 %)"] {
        assert!(ops.text.contains(figure), "missing {figure:?} in:\n{}", ops.text);
    }
    assert!(!m.iter().any(|x| x.to == format!("pi-slow@{tag}.example")), "researchers are not routed forecast_unused by default");
}

#[test]
fn running_jobs_commit_their_time_limits_and_may_warn_of_exhaustion() {
    let Some(env) = server_env("committed_hours", SMTP_VARS) else { return };
    let tag = &unique_tag("t10");
    // 40 h/day for 20 days: 800 h of 1000. Then a 100-CPU job with a 10-hour limit, running for
    // an hour when observed: 100 h charged, 900 h committed, 1,800 h at risk.
    let s = Scenario::new(
        tag,
        &format!("A0190000003,idris,cpu,2026-01-01,2026-04-11,1000,run,pi-run@{tag}.example,,CT1,\n"),
        "",
        "",
        &format!(
            "[alerts.rules.exhausted]\ncounts_committed = true\n[alerts.rules.threshold]\nenabled = false\n[alerts.rules.over_pace]\nenabled = false\n\
             [alerts.rules.forecast_exhaustion]\nenabled = false\n{}",
            smtp_section(&env["AW_SMTP_PORT"], tag)
        ),
    );
    let start = "2026-01-21T00:00:00Z".parse::<jiff::Timestamp>().unwrap().as_second();
    let mut acct = format!("{}|TimelimitRaw\n", HEADER.trim_end());
    for line in jobs("run", 0, 20, 40, 40_000).lines() {
        acct.push_str(&format!("{line}|60\n"));
    }
    acct.push_str(&format!("41000|41000|jeanzay|cpu_p1|run|user0|{start}|Unknown|3600|100|cpu=100|RUNNING|600\n"));
    std::fs::write(s.dir.path().join("acct.txt"), acct).unwrap();
    let out = s.check("2026-01-21T01:00:00Z");
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let a = &rows[0];
    assert_eq!((a["consumed_hours"].as_f64(), a["committed_hours"].as_f64(), a["at_risk_hours"].as_f64()), (Some(900.0), Some(900.0), Some(1800.0)), "{a}");
    assert_eq!(a["status"], "over_pace", "ahead, but the hours have not run out yet: {a}");
    let maildir = PathBuf::from(&env["AW_SMTP_MAILDIR"]);
    let m = wait_for(10, "committed warning", || Some(mails(&maildir, tag)).filter(|m| m.iter().any(|x| x.to == format!("pi-run@{tag}.example"))));
    let pi = m.iter().find(|x| x.to == format!("pi-run@{tag}.example")).unwrap();
    assert_eq!(pi.subject, "[allocwatch] A0190000003 idris/cpu: running jobs may exhaust the granted hours");
    assert!(pi.text.contains("Running jobs     may still use 900 h to their time limits (1,800 h at risk in all)"), "{}", pi.text);
    // The job ended after 2 hours: nothing committed any more, 1,000 h consumed: exhausted.
    let mut acct = std::fs::read_to_string(s.dir.path().join("acct.txt")).unwrap();
    acct = acct.replace(&format!("{start}|Unknown|3600|100|cpu=100|RUNNING|600"), &format!("{start}|{}|7200|100|cpu=100|COMPLETED|600", start + 7200));
    std::fs::write(s.dir.path().join("acct.txt"), acct).unwrap();
    let out = s.check("2026-01-21T03:00:00Z");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((rows[0]["committed_hours"].as_f64(), rows[0]["status"].as_str()), (Some(0.0), Some("exhausted")), "{}", rows[0]);
}
