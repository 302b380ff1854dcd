//! Researchers' digests end to end, against the real aiosmtpd started by `tests/run.sh`: the
//! mails are received, decoded (mail-parser), their burn-down pictures decoded (png), and
//! their figures compared with `check --format json` at the same instant. Scenarios are small
//! ledgers written here (two centres, a project with three allocations of two kinds of hours);
//! the expectations are derived from the binary's own outputs.

mod common;
use common::*;
use mail_parser::MimeHeaders;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const HEADER: &str = "JobID|JobIDRaw|Cluster|Partition|Account|User|Start|End|ElapsedRaw|AllocCPUS|AllocTRES|State\n";

/// One one-hour job a day from day `from` to `to` exclusive (day 0 = 2026-01-01), with `cpus`
/// CPUs and `gpus` GPUs.
#[allow(clippy::too_many_arguments)]
fn jobs(cluster: &str, partition: &str, account: &str, from: i64, to: i64, cpus: u32, gpus: u32, first_id: u64) -> String {
    let base = "2026-01-01T00:00:00Z".parse::<jiff::Timestamp>().unwrap().as_second();
    let mut s = String::new();
    for d in from..to {
        let start = base + d * 86400 + 3600;
        let id = first_id + d as u64;
        let tres = if gpus > 0 { format!("cpu={cpus},gres/gpu={gpus}") } else { format!("cpu={cpus}") };
        s.push_str(&format!("{id}|{id}|{cluster}|{partition}|{account}|user{}|{start}|{}|3600|{cpus}|{tres}|COMPLETED\n", d % 2, start + 3600));
    }
    s
}

const P1: &str = "A0150612345";
const P2: &str = "A0160700001";
const LINK_KEY: &str = "digest-test-link-key-0123456789abcdef0123456789";

struct Scenario {
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl Scenario {
    /// P1 holds three allocations (idris cpu and gpu, tgcc skylake), P2 one (idris cpu);
    /// `both@` is a member of both projects, `g1@` of P1's GPU allocation only. `digest` is
    /// the `[alerts.digest]` table's body.
    fn new(tag: &str, port: &str, language: &str, digest: &str) -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        let p = |who: &str| format!("{who}@{tag}.example");
        let allocations = format!(
            "project,centre,resource,period_start,period_end,granted_hours,accounts,pi,members,committee,profile\n\
             {P1},idris,cpu,2026-01-01,2026-05-01,10000,abc,{pi1},{m1};{both},CT1,\n\
             {P1},idris,gpu,2026-01-01,2026-05-01,1000,abc,{pi1},{m1};{g1},CT1,\n\
             {P1},tgcc,skylake,2026-01-01,2026-05-01,8000,a0150612345,{pi1},{m1},CT1,\n\
             {P2},idris,cpu,2026-01-01,2026-05-01,5000,xyz,{pi2},{both},CT2,\n",
            pi1 = p("pi1"),
            m1 = p("m1"),
            both = p("both"),
            g1 = p("g1"),
            pi2 = p("pi2"),
        );
        std::fs::write(dir.path().join("alloc.csv"), allocations).unwrap();
        std::fs::write(dir.path().join("adj.csv"), format!("date,project,centre,resource,hours,kind,reason\n2026-02-01,{P1},idris,gpu,200,topup,more GPUs\n")).unwrap();
        let idris = format!("{HEADER}{}{}{}", jobs("jeanzay", "cpu_p1", "abc", 0, 75, 40, 0, 1000), jobs("jeanzay", "gpu_p13", "abc", 0, 75, 40, 4, 2000), jobs("jeanzay", "cpu_p1", "xyz", 10, 75, 20, 0, 3000));
        std::fs::write(dir.path().join("idris.txt"), idris).unwrap();
        std::fs::write(dir.path().join("tgcc.txt"), format!("{HEADER}{}", jobs("irene", "skylake", "a0150612345", 0, 75, 96, 0, 4000))).unwrap();
        std::fs::write(dir.path().join("link.key"), LINK_KEY).unwrap();
        let http_port = free_port();
        let config = write_config(
            dir.path(),
            &format!(
                r#"
[allocations]
files = ["alloc.csv"]
adjustments = ["adj.csv"]

[[centre]]
id = "idris"
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
[[centre.source]]
kind = "files"
format = "sacct"
paths = ["idris.txt"]

[[centre]]
id = "tgcc"
timezone = "Europe/Paris"
clusters = ["irene"]
[[centre.billing]]
resource = "skylake"
partitions = ["skylake"]
unit = "cpu"
[[centre.source]]
kind = "files"
format = "sacct"
paths = ["tgcc.txt"]

[http]
listen = "127.0.0.1:{http_port}"
public_url = "https://allocwatch.{tag}.example"

[links]
keys = [{{ id = "k1", key_file = "link.key" }}]

[alerts]
language = "{language}"
[alerts.email]
host = "127.0.0.1"
port = {port}
tls = "none"
from = "allocwatch@ops.example"
[alerts.delivery]
retry_initial_seconds = 0
retry_max_seconds = 0
timeout_seconds = 5
[alerts.digest]
{digest}
"#
            ),
        );
        Scenario { _dir: dir, config }
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut a = vec!["--config", self.config.to_str().unwrap()];
        a.extend_from_slice(args);
        aw(&a)
    }

    fn cli_ok(&self, args: &[&str]) -> (String, String) {
        let out = self.cli(args);
        assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
        let err = stderr(&out);
        (String::from_utf8(out.stdout).unwrap(), err)
    }

    /// `check --format json` at `at`, without pulling again.
    fn check(&self, at: &str) -> Vec<serde_json::Value> {
        check_json(&self.config, &["--at", at])
    }
}

/// A received digest, decoded.
#[derive(Debug)]
struct Digest {
    to: String,
    subject: String,
    message_id: String,
    text: String,
    html: String,
    /// (Content-ID, bytes) of the inline `image/png` parts.
    pngs: Vec<(String, Vec<u8>)>,
}

/// The digests in the Maildir for `*@<tag>.example` (alert mails left out), oldest first.
fn digests(maildir: &Path, tag: &str, subject_has: &str) -> Vec<Digest> {
    let Ok(rd) = std::fs::read_dir(maildir.join("new")) else { return Vec::new() };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = rd.flatten().map(|e| (e.metadata().unwrap().modified().unwrap(), e.path())).collect();
    files.sort();
    let mut out = Vec::new();
    for (_, f) in files {
        let raw = std::fs::read(&f).unwrap();
        let Some(m) = mail_parser::MessageParser::default().parse(&raw) else { continue };
        let to = m.to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or_default().to_string();
        let subject = m.subject().unwrap_or_default().to_string();
        if !to.ends_with(&format!("@{tag}.example")) || !subject.contains(subject_has) {
            continue;
        }
        let pngs = m
            .parts
            .iter()
            .filter(|p| p.content_type().is_some_and(|c| c.ctype() == "image" && c.subtype() == Some("png")))
            .map(|p| (p.content_id().unwrap_or_default().to_string(), p.contents().to_vec()))
            .collect();
        out.push(Digest {
            to,
            subject,
            message_id: m.message_id().unwrap_or_default().to_string(),
            text: m.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
            html: m.body_html(0).map(|t| t.into_owned()).unwrap_or_default(),
            pngs,
        });
    }
    out
}

/// Hours as the English digest prints them: thousands with commas, no decimals from 100.
fn hours_en(h: f64) -> String {
    let s = if h.abs() >= 100.0 { format!("{:.0}", h.abs()) } else { format!("{:.1}", h.abs()) };
    let (int, frac) = s.split_once('.').map(|(i, f)| (i.to_string(), format!(".{f}"))).unwrap_or((s.clone(), String::new()));
    let mut g = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            g.push(',');
        }
        g.push(c);
    }
    format!("{}{g}{frac}", if h < 0.0 { "-" } else { "" })
}

/// The same in French: narrow no-break spaces between thousands, a decimal comma.
fn hours_fr(h: f64) -> String {
    hours_en(h).replace(',', "\u{202f}").replace('.', ",")
}

fn unit_en(resource: &str) -> &'static str {
    if resource == "gpu" {
        "GPU-hours"
    } else {
        "core-hours"
    }
}

fn unit_fr(resource: &str) -> &'static str {
    if resource == "gpu" {
        "heures GPU"
    } else {
        "heures-cœur"
    }
}

fn status_en(s: &str) -> &'static str {
    match s {
        "on_track" => "on track",
        "over_pace" => "consuming faster than planned",
        "under_pace" => "consuming slower than planned",
        "exhausted" => "granted hours exhausted",
        other => panic!("status {other} is not a running allocation's"),
    }
}

/// The allocations of `check --format json` a digest lists: running at the instant.
fn running<'a>(rows: &'a [serde_json::Value], project: &str) -> Vec<&'a serde_json::Value> {
    rows.iter().filter(|r| r["project"] == project && !["not_started", "ended"].contains(&r["status"].as_str().unwrap())).collect()
}

/// The lines an English digest prints for an allocation of `check --format json`.
fn lines_en(a: &serde_json::Value) -> Vec<String> {
    let u = unit_en(a["resource"].as_str().unwrap());
    let mut l = vec![
        format!("{} / {}: {}", a["centre"].as_str().unwrap(), a["resource"].as_str().unwrap(), status_en(a["status"].as_str().unwrap())),
        format!("  Period           {} to {} (exclusive), {:.1} % elapsed", a["period_start"].as_str().unwrap(), a["period_end"].as_str().unwrap(), f(a, "elapsed_pct")),
        format!("  Granted          {} {u}", hours_en(f(a, "granted_hours"))),
        format!("  Consumed         {} {u} ({:.1} % of granted)", hours_en(f(a, "consumed_hours")), f(a, "consumed_pct")),
        format!("  Remaining        {} {u}", hours_en(f(a, "remaining_hours"))),
        format!("  Expected by now  {} {u} (drift {:+.1} points)", hours_en(f(a, "expected_hours")), f(a, "drift_pp")),
        format!("  Burn rate        {} {u}/day lately", hours_en(f(a, "burn_rate_hours_per_day"))),
    ];
    l.push(match a["projected_exhaustion"].as_str() {
        Some(t) => format!("  Projection       hours run out on {} at this rate", &t[..10]),
        None => format!("  Projection       {} {u} left unused at period end at this rate", hours_en(f(a, "projected_unused_hours"))),
    });
    l
}

/// The "Totals" line of a kind of hours over these allocations (all of that kind).
fn total_en(of_kind: &[&serde_json::Value]) -> String {
    let sum = |k: &str| of_kind.iter().map(|a| f(a, k)).sum::<f64>();
    let (g, c) = (sum("granted_hours"), sum("consumed_hours"));
    let n = of_kind.len();
    format!(
        "  {} over {n} allocation{}: granted {}, consumed {} ({:.1} %), remaining {}, expected by now {}",
        unit_en(of_kind[0]["resource"].as_str().unwrap()),
        if n == 1 { "" } else { "s" },
        hours_en(g),
        hours_en(c),
        c / g * 100.0,
        hours_en(sum("remaining_hours")),
        hours_en(sum("expected_hours"))
    )
}

/// Every PNG part decodes to a 480 × 160 picture and is referenced from the HTML by its CID.
fn check_pictures(d: &Digest, allocations: usize) {
    assert_eq!(d.pngs.len(), allocations, "one picture per allocation in {}: {:?}", d.to, d.pngs.iter().map(|p| &p.0).collect::<Vec<_>>());
    for (cid, bytes) in &d.pngs {
        let reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().unwrap_or_else(|e| panic!("{cid} of {}: not a PNG: {e}", d.to));
        let info = reader.info();
        assert_eq!((info.width, info.height), (480, 160), "{cid}");
        assert!(!cid.is_empty() && d.html.contains(&format!("src=\"cid:{cid}\"")), "{cid} not referenced in:\n{}", d.html);
    }
}

/// Text parts as `--dry-run` prints them: `To:` and `Subject:` lines, a blank line, the text.
fn dry_run_texts(stdout: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for block in stdout.split("To: ").skip(1) {
        let (to, rest) = block.split_once('\n').unwrap();
        let (_, text) = rest.split_once("\n\n").unwrap();
        out.insert(to.to_string(), text.trim_end().to_string());
    }
    out
}

fn normalise(text: &str) -> String {
    text.replace("\r\n", "\n").lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim_end().to_string()
}

/// A tag unique to this run: the shared test SMTP server keeps every mail it received.
fn unique_tag(base: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{base}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

const SMTP_VARS: &[&str] = &["AW_SMTP_PORT", "AW_SMTP_MAILDIR"];

#[test]
fn weekly_digests_in_english_carry_the_check_figures_a_picture_per_allocation_and_the_link_once_per_week() {
    let Some(env) = server_env("weekly_digests_in_english", SMTP_VARS) else { return };
    let tag = &unique_tag("dg-en");
    let maildir = PathBuf::from(&env["AW_SMTP_MAILDIR"]);
    let s = Scenario::new(tag, &env["AW_SMTP_PORT"], "en", "every = \"week\"\nmembers = true");
    let at = "2026-03-02T12:00:00Z";
    let rows = s.check(at);
    let addr = |who: &str| format!("{who}@{tag}.example");

    // A dry run prints what would go, and queues nothing: the real run after it queues it all.
    let (dry, err) = s.cli_ok(&["alerts", "digest", "--at", at, "--dry-run"]);
    assert!(err.contains("dry run: nothing queued"), "{err}");
    let dry = dry_run_texts(&dry);
    let (_, err) = s.cli_ok(&["alerts", "digest", "--at", at]);
    assert!(err.contains("digests of 2026-W10: 2 queued") && err.contains("0 already queued"), "{err}");
    let got = digests(&maildir, tag, "weekly summary");
    let to: Vec<&str> = got.iter().map(|d| d.to.as_str()).collect();
    // P1: pi1, m1, both, g1; P2: pi2, both. `both` gets two digests, one per project.
    let mut sorted = to.clone();
    sorted.sort();
    let mut want = [addr("both"), addr("both"), addr("g1"), addr("m1"), addr("pi1"), addr("pi2")];
    want.sort();
    assert_eq!(sorted, want.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(dry.len(), 5, "dry run: one text per distinct recipient shown: {:?}", dry.keys());

    for d in &got {
        let project = if d.subject.contains(P1) { P1 } else { P2 };
        let other = if project == P1 { P2 } else { P1 };
        assert_eq!(d.subject, format!("[allocwatch] {project}: weekly summary, week 2026-W10"));
        assert!(d.message_id.starts_with("allocwatch.notification.") && d.message_id.ends_with("@ops.example"), "{}", d.message_id);
        // Only their own project, anywhere in the mail.
        for part in [&d.subject, &d.text, &d.html] {
            assert!(!part.contains(other), "{} got {other} in:\n{part}", d.to);
        }
        // The allocations that name them: g1 only GPU's, `both` only cpu's on each project.
        let mine: Vec<&serde_json::Value> = running(&rows, project)
            .into_iter()
            .filter(|a| match d.to.split('@').next().unwrap() {
                "g1" => a["resource"] == "gpu",
                "both" => a["resource"] == "cpu",
                _ => true,
            })
            .collect();
        assert!(!mine.is_empty());
        for a in &mine {
            for line in lines_en(a) {
                assert!(d.text.contains(&line), "{}: missing {line:?} in:\n{}", d.to, d.text);
            }
        }
        let listed = d.text.lines().filter(|l| l.starts_with("  Granted ")).count();
        assert_eq!(listed, mine.len(), "{}: {}", d.to, d.text);
        // Totals per kind, never across kinds.
        for kind in ["core-hours", "GPU-hours"] {
            let of_kind: Vec<&serde_json::Value> = mine.iter().copied().filter(|a| unit_en(a["resource"].as_str().unwrap()) == kind).collect();
            if of_kind.is_empty() {
                assert!(!d.text.contains(&format!("  {kind} over")), "{}", d.text);
            } else {
                let line = total_en(&of_kind);
                assert!(d.text.contains(&line), "{}: missing {line:?} in:\n{}", d.to, d.text);
            }
        }
        check_pictures(d, mine.len());
        // The signed link of their project, in both parts, with its expiry.
        let url_prefix = format!("https://allocwatch.{tag}.example/projects/{project}?key=v1.");
        let url = d.text.lines().find(|l| l.starts_with(&url_prefix)).unwrap_or_else(|| panic!("no link in:\n{}", d.text)).to_string();
        assert!(d.html.replace("&#x2f;", "/").contains(&format!("href=\"{url}\"")), "{}", d.html);
        assert!(d.text.contains("valid until 20"), "{}", d.text);
        let before = jiff::Timestamp::now().strftime("%F").to_string();
        let (made, _) = s.cli_ok(&["link", "--project", project]);
        if jiff::Timestamp::now().strftime("%F").to_string() == before {
            assert_eq!(made.trim(), url, "the digest carries the link `allocwatch link` makes today");
        }
        // What the dry run printed is what was received (the link of the same day aside).
        let shown = dry.get(&d.to).unwrap_or_else(|| panic!("{} not in the dry run", d.to));
        if d.to != addr("both") {
            assert_eq!(normalise(shown), normalise(&d.text), "{}", d.to);
        }
    }
    let ids: std::collections::BTreeSet<&str> = got.iter().map(|d| d.message_id.as_str()).collect();
    assert_eq!(ids.len(), got.len(), "one Message-ID per mail");

    // The same week again, later: nothing more is queued or sent.
    let (_, err) = s.cli_ok(&["alerts", "digest", "--at", "2026-03-05T09:00:00Z"]);
    assert!(err.contains("digests of 2026-W10: 0 queued (0 mails), 2 already queued"), "{err}");
    let (dry, err) = s.cli_ok(&["alerts", "digest", "--at", at, "--dry-run"]);
    assert!(dry.is_empty() && err.contains("2 already queued"), "{dry}\n{err}");
    assert_eq!(digests(&maildir, tag, "weekly summary").len(), got.len());
    // The next week: a new digest for each project.
    let (_, err) = s.cli_ok(&["alerts", "digest", "--at", "2026-03-09T06:00:00Z"]);
    assert!(err.contains("digests of 2026-W11: 2 queued (6 mails)"), "{err}");
    let week11 = digests(&maildir, tag, "week 2026-W11");
    assert_eq!(week11.len(), 6);
    let rows11 = s.check("2026-03-09T06:00:00Z");
    let pi1 = week11.iter().find(|d| d.to == addr("pi1")).unwrap();
    for a in running(&rows11, P1) {
        for line in lines_en(a) {
            assert!(pi1.text.contains(&line), "missing {line:?} in:\n{}", pi1.text);
        }
    }
}

#[test]
fn monthly_digests_in_french_go_to_pis_only_once_per_month() {
    let Some(env) = server_env("monthly_digests_in_french", SMTP_VARS) else { return };
    let tag = &unique_tag("dg-fr");
    let maildir = PathBuf::from(&env["AW_SMTP_MAILDIR"]);
    let s = Scenario::new(tag, &env["AW_SMTP_PORT"], "fr", "every = \"month\"");
    let at = "2026-03-01T06:00:00Z";
    let rows = s.check(at);
    let (_, err) = s.cli_ok(&["alerts", "digest", "--at", at]);
    assert!(err.contains("digests of 2026-03: 2 queued (2 mails)"), "{err}");
    let got = digests(&maildir, tag, "synthèse mensuelle");
    let mut to: Vec<&str> = got.iter().map(|d| d.to.as_str()).collect();
    to.sort();
    assert_eq!(to, vec![format!("pi1@{tag}.example"), format!("pi2@{tag}.example")], "PIs only by default");
    let pi1 = got.iter().find(|d| d.to.starts_with("pi1@")).unwrap();
    assert_eq!(pi1.subject, format!("[allocwatch] {P1} : synthèse mensuelle, 2026-03"));
    assert!(pi1.text.starts_with("Bonjour,"), "{}", pi1.text);
    let mine = running(&rows, P1);
    assert_eq!(mine.len(), 3);
    for a in &mine {
        let u = unit_fr(a["resource"].as_str().unwrap());
        for line in [
            format!("  Attribuées           {} {u}", hours_fr(f(a, "granted_hours"))),
            format!("  Consommées           {} {u} ({} % de l'attribution)", hours_fr(f(a, "consumed_hours")), format!("{:.1}", f(a, "consumed_pct")).replace('.', ",")),
            format!("  Restantes            {} {u}", hours_fr(f(a, "remaining_hours"))),
            format!("  Attendues à ce jour  {} {u} (écart {} points)", hours_fr(f(a, "expected_hours")), format!("{:+.1}", f(a, "drift_pp")).replace('.', ",")),
        ] {
            assert!(pi1.text.contains(&line), "missing {line:?} in:\n{}", pi1.text);
        }
    }
    // Thousands are grouped the French way in at least one figure (10 000 h granted).
    assert!(pi1.text.contains("10\u{202f}000 heures-cœur"), "{}", pi1.text);
    assert!(pi1.text.contains("valable jusqu'au 20") && pi1.html.contains("Courbe de consommation"), "{}", pi1.text);
    check_pictures(pi1, 3);
    // A later day of the same month queues nothing; the next month does.
    let (_, err) = s.cli_ok(&["alerts", "digest", "--at", "2026-03-20T06:00:00Z"]);
    assert!(err.contains("digests of 2026-03: 0 queued (0 mails), 2 already queued"), "{err}");
    assert_eq!(digests(&maildir, tag, "synthèse mensuelle").len(), 2);
    let (_, err) = s.cli_ok(&["alerts", "digest", "--at", "2026-04-01T06:00:00Z"]);
    assert!(err.contains("digests of 2026-04: 2 queued"), "{err}");
}

#[test]
fn the_daemon_sends_each_digest_once_on_its_schedule_after_the_first_cycle() {
    let Some(env) = server_env("the_daemon_sends_each_digest_once", SMTP_VARS) else { return };
    let tag = &unique_tag("dg-run");
    let maildir = PathBuf::from(&env["AW_SMTP_MAILDIR"]);
    // Every second: many ticks in the same week, one digest per project.
    let s = Scenario::new(tag, &env["AW_SMTP_PORT"], "en", "every = \"week\"\nschedule = \"* * * * * *\"");
    let body = std::fs::read_to_string(&s.config).unwrap().replace("[allocations]", "[reconcile]\nat = \"2026-03-02T12:00:00Z\"\n\n[allocations]");
    std::fs::write(&s.config, body).unwrap();
    let log = s.config.with_file_name("daemon.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_allocwatch"))
        .args(["--config", s.config.to_str().unwrap(), "run"])
        .env("ALLOCWATCH_LOG", "info")
        .env_remove("ALLOCWATCH_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    // The first tick after the first cycle queues both projects' digests; later ticks find
    // them queued.
    wait_for(60, "the digest job to queue, then find the digests queued", || {
        let l = read();
        (l.contains("digest: 2026-W10") && l.contains("2 projects' digests queued") && l.contains("0 projects' digests queued (0 mails), 2 already queued")).then_some(())
    });
    wait_for(30, "the PIs' digests", || Some(digests(&maildir, tag, "weekly summary")).filter(|d| d.len() == 2));
    assert!(std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    assert!(child.wait().unwrap().success(), "{}", read());
    let got = digests(&maildir, tag, "weekly summary");
    let mut to: Vec<&str> = got.iter().map(|d| d.to.as_str()).collect();
    to.sort();
    assert_eq!(to, vec![format!("pi1@{tag}.example"), format!("pi2@{tag}.example")], "{}", read());
    check_pictures(got.iter().find(|d| d.to.starts_with("pi1@")).unwrap(), 3);
}

#[test]
fn digest_settings_name_their_key_when_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[allocations]\nfiles = []\n[alerts]\n";
    let email = "[alerts.email]\nhost = \"127.0.0.1\"\nport = 25\ntls = \"none\"\nfrom = \"a@b.example\"\n";
    for (body, key) in [
        (format!("{base}{email}[alerts.digest]\nevery = \"daily\"\n"), "every"),
        (format!("{base}{email}[alerts.digest]\nschedule = \"every monday\"\n"), "alerts.digest.schedule"),
        (format!("{base}{email}[alerts.digest]\nmembers = \"yes\"\n"), "members"),
        (format!("{base}[alerts.digest]\n"), "alerts.digest"),
    ] {
        let config = write_config(dir.path(), &body);
        let out = aw(&["--config", config.to_str().unwrap(), "config", "check"]);
        assert_eq!(out.status.code(), Some(2), "{body}\n{}", stderr(&out));
        assert!(stderr(&out).contains(key), "{key} not named for\n{body}\n{}", stderr(&out));
    }
}
