//! Alerts: rules evaluated after every reconciliation, a firing → resolved life cycle with
//! reminders and acknowledgement, routing to researchers (their own project only) and the
//! operations team, and a durable notification outbox delivered with retries.
//!
//! - [`rules`] (pure): which conditions hold at an instant;
//! - [`lifecycle`] (pure): what fires, reminds, resolves;
//! - [`render`]: message templates (English and French, overridable);
//! - [`store`]: alerts, audit trail and outbox in the store, written in the cycle transaction;
//! - [`deliver`]: SMTP, webhook and Alertmanager delivery from the outbox.

pub mod deliver;
pub mod lifecycle;
pub mod render;
pub mod rules;
pub mod settings;
pub mod store;

use crate::allocations::Grants;
use crate::config::Config;
use crate::engine::Reconciliation;
use crate::model::{prorate_window, JobRecord, Units};
use lifecycle::{plan, FiringAlert, Transition};
use render::Templates;
use rules::{allocation_subject, Rule};
use serde_json::json;
use settings::{AlertSettings, Audience, Channel, Lang};
use std::collections::{BTreeMap, HashMap, HashSet};
use store::{Outgoing, StoredFiring};

/// Alert evaluation and message composition for one configuration.
pub struct Alerting {
    /// Settings.
    pub settings: AlertSettings,
    templates: Templates,
}

/// What an evaluation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvalSummary {
    /// Alerts that fired.
    pub fired: usize,
    /// Reminders.
    pub reminded: usize,
    /// Resolved.
    pub resolved: usize,
    /// Still firing, nothing sent.
    pub held: usize,
    /// Messages queued.
    pub queued: usize,
}

/// Top users and partitions of an allocation over the trailing window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Drivers {
    /// (user, charged hours), largest first.
    pub users: Vec<(String, f64)>,
    /// (partition, charged hours), largest first.
    pub partitions: Vec<(String, f64)>,
}

/// Days over which alerts name the users and partitions that drove consumption.
pub const DRIVER_WINDOW_DAYS: i64 = 14;

impl Alerting {
    /// Build from validated settings; loads and checks the templates.
    pub fn new(settings: AlertSettings) -> Result<Alerting, String> {
        let templates = Templates::load(settings.templates_dir.as_deref())?;
        Ok(Alerting { settings, templates })
    }

    fn evaluated_rules(&self, with_feeds: bool) -> HashSet<Rule> {
        Rule::ALL
            .into_iter()
            .filter(|r| self.settings.rules.common(*r).enabled && (with_feeds || *r != Rule::StaleFeed))
            .collect()
    }

    /// Evaluate after a reconciliation, inside the cycle's transaction: update alert states,
    /// write the audit trail and queue every message owed.
    pub fn evaluate_in_tx(
        &self,
        conn: &rusqlite::Connection,
        config: &Config,
        grants: &Grants,
        rec: &Reconciliation,
        cycle_id: i64,
        now: i64,
    ) -> Result<EvalSummary, String> {
        let sql = |e: rusqlite::Error| format!("alerts: {e}");
        let feeds = store::centre_feeds(conn).map_err(sql)?;
        let stored = store::load_firing(conn).map_err(sql)?;
        let firing: Vec<FiringAlert> = stored.iter().map(|s| s.alert.clone()).collect();
        let conditions = rules::evaluate(&self.settings, grants, rec, Some(&feeds));
        let transitions = plan(conditions, &firing, rec.at, &self.settings.rules, &self.evaluated_rules(true), &quiet_subjects(rec));
        let ids = store::apply(conn, cycle_id, rec.at, &transitions).map_err(sql)?;
        let needing: HashSet<usize> = transitions
            .iter()
            .filter_map(|t| match t {
                Transition::Fire(c) | Transition::Renotify(_, c) => c.allocation,
                _ => None,
            })
            .collect();
        let drivers = drivers(conn, config, grants, &needing, rec.at).map_err(sql)?;
        let stored_by_id: HashMap<i64, &StoredFiring> = stored.iter().map(|s| (s.alert.id, s)).collect();
        let out = self.compose(grants, rec, &transitions, &ids, &stored_by_id, &drivers)?;
        store::enqueue(conn, cycle_id, rec.at, now, &out).map_err(sql)?;
        let mut s = EvalSummary { queued: out.len(), ..Default::default() };
        for t in &transitions {
            match t {
                Transition::Fire(_) => s.fired += 1,
                Transition::Renotify(..) => s.reminded += 1,
                Transition::Hold(..) => s.held += 1,
                Transition::Resolve { .. } => s.resolved += 1,
            }
        }
        for t in &transitions {
            if t.notifies() {
                tracing::debug!(rule = t.key().rule.as_str(), subject = %t.key().subject, kind = t.kind(), "alert");
            }
        }
        Ok(s)
    }

    /// The messages owed for these transitions.
    fn compose(
        &self,
        grants: &Grants,
        rec: &Reconciliation,
        transitions: &[Transition],
        ids: &[i64],
        stored: &HashMap<i64, &StoredFiring>,
        drivers: &HashMap<usize, Drivers>,
    ) -> Result<Vec<Outgoing>, String> {
        let at_text = jiff::Timestamp::from_second(rec.at).map(|t| t.to_string()).unwrap_or_default();
        let by_subject: HashMap<String, usize> =
            rec.allocations.iter().enumerate().map(|(i, a)| (allocation_subject(a), i)).collect();
        // One item per transition, with the figures and drivers that explain it.
        let mut items: Vec<(usize, serde_json::Value, Option<usize>)> = Vec::new(); // (transition, item, report index)
        for (n, t) in transitions.iter().enumerate() {
            let report = by_subject.get(&t.key().subject).copied();
            let (facts, title, severity, alloc) = match t {
                Transition::Fire(c) | Transition::Renotify(_, c) | Transition::Hold(_, c) => {
                    (c.facts.clone(), c.title.clone(), c.severity.as_str().to_string(), c.allocation)
                }
                Transition::Resolve { id, .. } => {
                    let s = stored.get(id);
                    let mut facts = s.map(|s| s.facts.clone()).unwrap_or(json!({}));
                    // Show today's figures (e.g. after a top-up), keeping the rule's own keys.
                    if let Some(r) = report {
                        let now = serde_json::to_value(&rec.allocations[r]).unwrap_or(json!({}));
                        if let (Some(f), Some(o)) = (facts.as_object_mut(), now.as_object()) {
                            for (k, v) in o {
                                f.insert(k.clone(), v.clone());
                            }
                        }
                    }
                    (
                        facts,
                        s.map(|s| s.title.clone()).unwrap_or_default(),
                        s.map(|s| s.severity.clone()).unwrap_or_else(|| "info".into()),
                        report.map(|r| rec.allocations[r].index),
                    )
                }
            };
            let d = alloc.and_then(|a| drivers.get(&a));
            let item = json!({
                "kind": t.kind(), "rule": t.key().rule.as_str(), "severity": severity, "title": title,
                "alert_id": ids[n], "subject": t.key().subject, "discriminator": t.key().discriminator, "facts": facts,
                "drivers": d.map(|d| json!({
                    "users": d.users.iter().map(|(n, h)| json!({"name": n, "hours": h})).collect::<Vec<_>>(),
                    "partitions": d.partitions.iter().map(|(n, h)| json!({"name": n, "hours": h})).collect::<Vec<_>>(),
                })),
            });
            items.push((n, item, alloc));
        }
        let routes_for = |rule: Rule| self.settings.routes.iter().filter(move |r| r.rules.contains(&rule));
        let mut out = Vec::new();
        let render = |audience: Audience, lang: Lang, chosen: &[&serde_json::Value], alloc: Option<usize>| {
            let (project, centre, resource) = match alloc {
                Some(i) => {
                    let a = &grants.allocations[i];
                    (a.project.clone(), a.centre.clone(), a.resource.clone())
                }
                None => Default::default(),
            };
            let ctx = json!({
                "audience": match audience { Audience::Researchers => "researchers", Audience::Operations => "operations" },
                "project": project, "centre": centre, "resource": resource, "at": at_text, "items": chosen,
            });
            self.templates.render(lang, &ctx)
        };
        let msg = |channel: Channel, audience: Audience, recipient: String, chosen: &[(usize, &serde_json::Value)], r: render::Rendered, payload: serde_json::Value| Outgoing {
            channel: channel.as_str().into(),
            audience: match audience { Audience::Researchers => "researchers".into(), Audience::Operations => "operations".into() },
            recipient,
            alert_ids: chosen.iter().map(|(n, _)| ids[*n]).collect(),
            kinds: chosen.iter().map(|(n, _)| transitions[*n].kind().to_string()).collect(),
            subject: r.subject,
            text: r.text,
            html: r.html,
            payload,
        };
        // Researchers: one e-mail per recipient and allocation per cycle, about that allocation only.
        let mut per_alloc: BTreeMap<usize, Vec<(usize, &serde_json::Value)>> = BTreeMap::new();
        for (n, item, alloc) in &items {
            let t = &transitions[*n];
            if !t.notifies() || !t.key().rule.concerns_allocation() {
                continue;
            }
            let Some(a) = alloc else { continue };
            if routes_for(t.key().rule).any(|r| r.audience == Audience::Researchers && r.channels.contains(&Channel::Email)) {
                per_alloc.entry(*a).or_default().push((*n, item));
            }
        }
        for (a, chosen) in &per_alloc {
            let alloc = &grants.allocations[*a];
            let refs: Vec<&serde_json::Value> = chosen.iter().map(|(_, i)| *i).collect();
            let rendered = render(Audience::Researchers, self.settings.researchers_language, &refs, Some(*a))?;
            let mut seen = HashSet::new();
            for r in std::iter::once(&alloc.pi).chain(alloc.members.iter()).filter(|r| !r.is_empty()) {
                if seen.insert(r.to_lowercase()) {
                    out.push(msg(Channel::Email, Audience::Researchers, r.clone(), chosen, rendered.clone(), json!(null)));
                }
            }
        }
        // Operations.
        let ops: Vec<(usize, &serde_json::Value, Option<usize>)> = items.iter().map(|(n, i, a)| (*n, i, *a)).collect();
        let notifying = |channel: Channel| -> Vec<(usize, &serde_json::Value, Option<usize>)> {
            ops.iter()
                .copied()
                .filter(|(n, _, _)| {
                    let t = &transitions[*n];
                    t.notifies() && routes_for(t.key().rule).any(|r| r.audience == Audience::Operations && r.channels.contains(&channel))
                })
                .collect()
        };
        let lang = self.settings.operations_language;
        let email_items = notifying(Channel::Email);
        if !email_items.is_empty() {
            let groups: Vec<Vec<(usize, &serde_json::Value, Option<usize>)>> = if self.settings.operations_digest {
                vec![email_items.clone()]
            } else {
                email_items.iter().map(|x| vec![*x]).collect()
            };
            for g in groups {
                let refs: Vec<&serde_json::Value> = g.iter().map(|(_, i, _)| *i).collect();
                let alloc = if g.len() == 1 { g[0].2 } else { None };
                let rendered = render(Audience::Operations, lang, &refs, alloc)?;
                let chosen: Vec<(usize, &serde_json::Value)> = g.iter().map(|(n, i, _)| (*n, *i)).collect();
                for r in &self.settings.operations_emails {
                    out.push(msg(Channel::Email, Audience::Operations, r.clone(), &chosen, rendered.clone(), json!(null)));
                }
            }
        }
        if let Some(w) = &self.settings.webhook {
            for (n, item, alloc) in notifying(Channel::Webhook) {
                let rendered = render(Audience::Operations, lang, &[item], alloc)?;
                let payload = match w.format {
                    settings::WebhookFormat::Slack => json!({ "text": format!("{}\n{}", rendered.subject, rendered.text) }),
                    settings::WebhookFormat::Json => json!({ "source": "allocwatch", "at": at_text, "alert": item }),
                };
                out.push(msg(Channel::Webhook, Audience::Operations, "webhook".into(), &[(n, item)], rendered, payload));
            }
        }
        if let Some(am) = &self.settings.alertmanager {
            // Alertmanager keeps state from what it is sent: every cycle, send every alert routed
            // there that is firing and those resolved now. Its clock is the wall clock, so
            // `endsAt` is set at delivery: now + hold for firing ones, now for resolved ones.
            let mut alerts = Vec::new();
            let mut chosen = Vec::new();
            for (n, item, _) in &ops {
                let t = &transitions[*n];
                if !routes_for(t.key().rule).any(|r| r.audience == Audience::Operations && r.channels.contains(&Channel::Alertmanager)) {
                    continue;
                }
                let resolved = matches!(t, Transition::Resolve { .. });
                alerts.push(alertmanager_alert(item, resolved, am.hold_minutes));
                chosen.push((*n, *item));
            }
            if !alerts.is_empty() {
                let r = render::Rendered { subject: format!("{} alerts", alerts.len()), text: String::new(), html: String::new() };
                out.push(msg(Channel::Alertmanager, Audience::Operations, "alertmanager".into(), &chosen, r, json!(alerts)));
            }
        }
        Ok(out)
    }
}

/// RFC 3339 (UTC) of epoch seconds.
pub fn rfc3339(s: i64) -> String {
    jiff::Timestamp::from_second(s).map(|t| t.to_string()).unwrap_or_default()
}

/// One Alertmanager v2 alert from a rendered item; `endsAt` is filled in at delivery
/// ([`deliver::stamp_alertmanager`]) from `allocwatch_resolved` and `allocwatch_hold_minutes`.
fn alertmanager_alert(item: &serde_json::Value, resolved: bool, hold_minutes: f64) -> serde_json::Value {
    let f = &item["facts"];
    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), item["rule"].clone());
    labels.insert("severity".into(), item["severity"].clone());
    for key in ["centre", "project", "resource", "account", "partition"] {
        if let Some(v) = f[key].as_str() {
            if !v.is_empty() {
                labels.insert(key.into(), json!(v));
            }
        }
    }
    if let Some(d) = item["discriminator"].as_str() {
        if !d.is_empty() {
            labels.insert("key".into(), json!(d));
        }
    }
    labels.insert("source".into(), json!("allocwatch"));
    json!({
        "labels": labels,
        "annotations": { "summary": item["title"], "alert_id": item["alert_id"].to_string() },
        "allocwatch_resolved": resolved,
        "allocwatch_hold_minutes": hold_minutes,
    })
}

/// Subjects whose alerts resolve without a message: allocations that ended, or vanished.
fn quiet_subjects(rec: &Reconciliation) -> HashSet<String> {
    rec.allocations
        .iter()
        .filter(|a| matches!(a.status, crate::reconcile::Status::Ended | crate::reconcile::Status::NotStarted))
        .map(allocation_subject)
        .collect()
}

/// Top users and partitions of the given allocations over the last [`DRIVER_WINDOW_DAYS`]:
/// one pass over each centre's recent jobs.
pub fn drivers(
    conn: &rusqlite::Connection,
    config: &Config,
    grants: &Grants,
    allocations: &HashSet<usize>,
    at: i64,
) -> rusqlite::Result<HashMap<usize, Drivers>> {
    let mut by_centre: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &i in allocations {
        by_centre.entry(grants.allocations[i].centre.as_str()).or_default().push(i);
    }
    let from = at - DRIVER_WINDOW_DAYS * 86400;
    let mut out = HashMap::new();
    for (centre_id, list) in by_centre {
        let Some(centre) = config.centres.get(centre_id) else { continue };
        let mut index: HashMap<(&str, &str), usize> = HashMap::new();
        for &i in &list {
            let a = &grants.allocations[i];
            for acc in &a.accounts {
                index.insert((acc.as_str(), a.resource.as_str()), i);
            }
        }
        let mut users: HashMap<usize, HashMap<String, f64>> = HashMap::new();
        let mut parts: HashMap<usize, HashMap<String, f64>> = HashMap::new();
        let mut stmt = conn.prepare_cached(
            "SELECT cl.name, a.name, p.name, u.name, j.start, j.end, j.elapsed, j.cpus, j.gpus, j.billing, j.nodes
             FROM jobs j JOIN names c ON c.id = j.centre JOIN names cl ON cl.id = j.cluster JOIN names a ON a.id = j.account
                  JOIN names p ON p.id = j.partition JOIN names u ON u.id = j.user
             WHERE c.name = ?1 AND j.centre = c.id
               AND j.start >= ?2 - (SELECT COALESCE(MAX(max_wall_s), 0) FROM centre_stats s WHERE s.centre = c.id)
               AND j.start < ?3 AND j.end > ?2",
        )?;
        let rows = stmt.query_map(rusqlite::params![centre_id, from, at], |r| {
            Ok(JobRecord {
                cluster: r.get(0)?,
                account: r.get(1)?,
                partition: r.get(2)?,
                user: r.get(3)?,
                job_id_raw: 0,
                job_id: String::new(),
                start_s: r.get(4)?,
                end_s: r.get(5)?,
                elapsed_s: r.get(6)?,
                units: Units {
                    cpus: r.get::<_, i64>(7)? as u64,
                    gpus: r.get::<_, i64>(8)? as u64,
                    billing: r.get::<_, i64>(9)? as u64,
                    nodes: r.get::<_, i64>(10)? as u64,
                },
                provisional: false,
            })
        })?;
        for job in rows {
            let job = job?;
            let Some(rule) = centre.rule_for(&job.cluster, &job.partition) else { continue };
            let Some(&i) = index.get(&(job.account.as_str(), rule.resource.as_str())) else { continue };
            let h = rule.hours(&prorate_window(&job, from, at));
            if h <= 0.0 {
                continue;
            }
            *users.entry(i).or_default().entry(job.user.clone()).or_default() += h;
            *parts.entry(i).or_default().entry(job.partition.clone()).or_default() += h;
        }
        for &i in &list {
            let top = |m: Option<HashMap<String, f64>>| {
                let mut v: Vec<(String, f64)> = m.unwrap_or_default().into_iter().collect();
                v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                v.truncate(5);
                v
            };
            out.insert(i, Drivers { users: top(users.remove(&i)), partitions: top(parts.remove(&i)) });
        }
    }
    Ok(out)
}

/// One replayed alert event.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplayEvent {
    /// Instant (RFC 3339).
    pub at: String,
    /// `firing`, `reminder`, `resolved`.
    pub kind: String,
    /// Rule.
    pub rule: String,
    /// Subject.
    pub subject: String,
    /// Threshold/checkpoint.
    pub discriminator: String,
    /// Who would have been told.
    pub recipients: Vec<String>,
    /// One line.
    pub title: String,
}

/// How early an allocation that ran out of hours was warned.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LeadTime {
    /// Allocation subject.
    pub subject: String,
    /// When it was first found exhausted.
    pub exhausted_at: String,
    /// First warning to its researchers (over_pace, checkpoint, threshold ≥ 75 %), if any.
    pub first_warned_at: Option<String>,
    /// Days between them.
    pub lead_days: Option<f64>,
}

/// Alert state kept in memory (replays and benchmarks): the same rules and life cycle as the
/// store-backed evaluation, without writing or sending anything.
#[derive(Debug, Default)]
pub struct AlertBook {
    firing: Vec<FiringAlert>,
    titles: HashMap<i64, String>,
    next_id: i64,
}

impl AlertBook {
    /// Evaluate the rules on a reconciliation (feed health not known: `stale_feed` is skipped)
    /// and apply the transitions; returns them with each alert's one-line title.
    pub fn observe(&mut self, alerting: &Alerting, grants: &Grants, rec: &Reconciliation) -> Vec<(Transition, String)> {
        let conditions = rules::evaluate(&alerting.settings, grants, rec, None);
        let transitions = plan(conditions, &self.firing, rec.at, &alerting.settings.rules, &alerting.evaluated_rules(false), &quiet_subjects(rec));
        let mut out = Vec::with_capacity(transitions.len());
        for t in transitions {
            let title = match &t {
                Transition::Fire(c) => {
                    self.next_id += 1;
                    let f = FiringAlert { id: self.next_id, key: c.key.clone(), fired_at: rec.at, last_notified_at: rec.at, acked: false };
                    self.firing.push(f);
                    self.titles.insert(self.next_id, c.title.clone());
                    c.title.clone()
                }
                Transition::Renotify(id, c) => {
                    if let Some(f) = self.firing.iter_mut().find(|f| f.id == *id) {
                        f.last_notified_at = rec.at;
                    }
                    c.title.clone()
                }
                Transition::Hold(_, c) => c.title.clone(),
                Transition::Resolve { id, .. } => {
                    self.firing.retain(|f| f.id != *id);
                    self.titles.remove(id).unwrap_or_default()
                }
            };
            out.push((t, title));
        }
        out
    }

    /// Alerts firing now.
    pub fn firing(&self) -> usize {
        self.firing.len()
    }
}

/// Replay: evaluate the rules at every step of `[from, to)` over the ledger, without sending or
/// storing anything. Feed health is not replayed (`stale_feed` is skipped).
pub fn replay(
    alerting: &Alerting,
    config: &Config,
    grants: &Grants,
    store: &mut crate::ledger::Store,
    from: i64,
    to: i64,
    step_s: i64,
) -> Result<(Vec<ReplayEvent>, Vec<LeadTime>), crate::ledger::StoreError> {
    let view = crate::engine::LedgerView::load(config, grants, store, from, to)?;
    let mut book = AlertBook::default();
    let mut events = Vec::new();
    let mut first_warning: HashMap<String, i64> = HashMap::new();
    let mut exhausted: BTreeMap<String, i64> = BTreeMap::new();
    let mut at = from;
    let no_partial = crate::engine::PartialDay::new();
    while at < to {
        // Steps that are not local midnights need the partial day from the jobs.
        let partial = if config.centres.values().all(|c| crate::model::day_start(crate::model::local_day(at, &c.tz), &c.tz) == at) {
            None
        } else {
            Some(crate::engine::partial_day(config, store, at)?)
        };
        let rec = crate::engine::reconcile_view(config, grants, &view, partial.as_ref().unwrap_or(&no_partial), at);
        let transitions = book.observe(alerting, grants, &rec);
        let by_subject: HashMap<String, usize> = rec.allocations.iter().map(|a| (allocation_subject(a), a.index)).collect();
        for (t, title) in &transitions {
            let key = t.key().clone();
            if matches!(t, Transition::Hold(..)) {
                continue;
            }
            if key.rule == Rule::Exhausted && matches!(t, Transition::Fire(_)) {
                exhausted.entry(key.subject.clone()).or_insert(at);
            }
            // A warning of coming exhaustion: over pace, a checkpoint, or a threshold ≥ 75 %.
            let warns = matches!(key.rule, Rule::OverPace | Rule::Checkpoint)
                || (key.rule == Rule::Threshold && key.discriminator.parse::<f64>().is_ok_and(|p| p >= 75.0));
            if matches!(t, Transition::Fire(_)) && warns {
                first_warning.entry(key.subject.clone()).or_insert(at);
            }
            if !t.notifies() {
                continue;
            }
            let mut recipients = Vec::new();
            for r in alerting.settings.routes.iter().filter(|r| r.rules.contains(&key.rule)) {
                match r.audience {
                    Audience::Researchers => {
                        if let Some(&i) = by_subject.get(&key.subject) {
                            let a = &grants.allocations[i];
                            for m in std::iter::once(&a.pi).chain(a.members.iter()).filter(|m| !m.is_empty()) {
                                if !recipients.contains(m) {
                                    recipients.push(m.clone());
                                }
                            }
                        }
                    }
                    Audience::Operations => {
                        for c in &r.channels {
                            let who = format!("operations:{}", c.as_str());
                            if !recipients.contains(&who) {
                                recipients.push(who);
                            }
                        }
                    }
                }
            }
            events.push(ReplayEvent {
                at: rfc3339(at),
                kind: t.kind().into(),
                rule: key.rule.as_str().into(),
                subject: key.subject.clone(),
                discriminator: key.discriminator.clone(),
                recipients,
                title: title.clone(),
            });
        }
        at += step_s;
    }
    let leads = exhausted
        .into_iter()
        .map(|(subject, ex)| {
            let warned = first_warning.get(&subject).copied().filter(|w| *w <= ex);
            LeadTime {
                exhausted_at: rfc3339(ex),
                first_warned_at: warned.map(rfc3339),
                lead_days: warned.map(|w| (ex - w) as f64 / 86400.0),
                subject,
            }
        })
        .collect();
    Ok((events, leads))
}
