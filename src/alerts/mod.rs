//! Alerts: the rules of [`crate::domain::rules`] evaluated after every reconciliation, the
//! firing → resolved life cycle of [`crate::domain::lifecycle`], routing to researchers (their
//! own project only) and the operations team, and a durable notification outbox delivered
//! with retries.
//!
//! - this module: [`Alerting::evaluate_in_tx`] — rules → life cycle → messages, written in the
//!   cycle's transaction — and [`AlertBook`], the same in memory (replays, benchmarks);
//! - [`settings`]: the `[alerts]` section;
//! - [`render`]: message templates (English and French, overridable);
//! - [`deliver`]: SMTP, webhook and Alertmanager delivery from the outbox;
//! - [`digest`]: researchers' weekly or monthly digests, with [`chart`]'s burn-down pictures.

mod chart;
pub mod deliver;
pub(crate) mod digest;
mod render;
pub mod settings;

use crate::domain::centre::Centre;
use crate::domain::charge::{Charge, Charging};
use crate::domain::grants::Grants;
use crate::domain::job::{prorate_window, UnitSeconds};
use crate::domain::lifecycle::{plan, FiringAlert, Transition};
use crate::domain::reconciliation::Reconciliation;
use crate::domain::rules::{self, Rule};
use crate::domain::time::{day_start, local_day, rfc3339, DAY_S};
use crate::store::alerts::{Notification, StoredFiring};
use crate::store::{StoreError, Tx};
use render::Templates;
use serde_json::json;
use settings::{AlertSettings, Audience, Channel, Lang};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Alert evaluation and message composition for one configuration.
pub struct Alerting {
    /// Settings.
    pub settings: AlertSettings,
    templates: Templates,
    /// Signed links to the project's page, carried by every researcher e-mail when configured.
    links: Option<crate::links::LinkMaker>,
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
pub(crate) struct Drivers {
    /// (user, charged hours), largest first.
    pub users: Vec<(String, f64)>,
    /// (partition, charged hours), largest first.
    pub partitions: Vec<(String, f64)>,
}

/// Days over which alerts name the users and partitions that drove consumption.
pub(crate) const DRIVER_WINDOW_DAYS: i64 = 14;

impl Alerting {
    /// Build from validated settings (and the link maker, `Config::link_maker`); loads and
    /// checks the templates.
    pub fn new(settings: AlertSettings, links: Option<crate::links::LinkMaker>) -> Result<Alerting, String> {
        let templates = Templates::load(settings.templates_dir.as_deref())?;
        Ok(Alerting { settings, templates, links })
    }

    /// The signed link to a project's page made at `now`, as the templates see it
    /// (`link.url`, `link.expires`); null without `[links]`.
    pub(crate) fn link_context(&self, project: &str, now: i64) -> serde_json::Value {
        match (&self.links, project.is_empty()) {
            (Some(l), false) => {
                let link = l.link(project, now, None);
                json!({ "url": link.url, "expires": rfc3339(link.expires_s) })
            }
            _ => serde_json::Value::Null,
        }
    }

    /// The language of every mail to researchers (alerts and digests).
    pub(crate) fn researchers_language(&self) -> Lang {
        self.settings.researchers_language
    }

    fn evaluated_rules(&self, with_feeds: bool) -> HashSet<Rule> {
        Rule::ALL
            .into_iter()
            .filter(|r| self.settings.rules.common(*r).enabled && (with_feeds || *r != Rule::StaleFeed))
            .collect()
    }

    /// Evaluate after a reconciliation, inside the cycle's transaction: update alert states,
    /// write the audit trail and queue every message owed.
    pub(crate) fn evaluate_in_tx(
        &self,
        tx: &Tx<'_>,
        centres: &[&Centre],
        grants: &Grants,
        rec: &Reconciliation,
        cycle_id: i64,
        now: i64,
    ) -> Result<EvalSummary, StoreError> {
        let feeds = tx.centre_feeds()?;
        let stored = tx.load_firing()?;
        let firing: Vec<FiringAlert> = stored.iter().map(|s| s.alert.clone()).collect();
        let conditions = rules::evaluate(&self.settings.rules, &self.settings.checkpoints, grants, rec, Some(&feeds));
        let transitions = plan(conditions, &firing, rec.at, &self.settings.rules, &self.evaluated_rules(true), &quiet_subjects(rec));
        let ids = tx.apply_transitions(cycle_id, rec.at, &transitions)?;
        let needing: HashSet<usize> = transitions
            .iter()
            .filter_map(|t| match t {
                Transition::Fire(c) | Transition::Renotify(_, c) => c.allocation,
                _ => None,
            })
            .collect();
        let drivers = drivers(tx, centres, grants, &needing, rec.at)?;
        let stored_by_id: HashMap<i64, &StoredFiring> = stored.iter().map(|s| (s.alert.id, s)).collect();
        let out = self.compose(grants, rec, &transitions, &ids, &stored_by_id, &drivers, now).map_err(|e| tx.fail(format!("alerts: {e}")))?;
        tx.enqueue_notifications(cycle_id, rec.at, now, &out)?;
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
        now: i64,
    ) -> Result<Vec<Notification>, String> {
        let at_text = rfc3339(rec.at);
        let by_subject: HashMap<String, usize> = rec.allocations.iter().enumerate().map(|(i, a)| (a.subject(), i)).collect();
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
            // Researchers get the signed link to their own project's page (never another's).
            let link = if audience == Audience::Researchers { self.link_context(&project, now) } else { serde_json::Value::Null };
            let ctx = json!({
                "audience": match audience { Audience::Researchers => "researchers", Audience::Operations => "operations" },
                "project": project, "centre": centre, "resource": resource, "at": at_text, "items": chosen, "link": link,
            });
            self.templates.render(lang, &ctx)
        };
        let msg = |channel: Channel, audience: Audience, recipient: String, chosen: &[(usize, &serde_json::Value)], r: render::Rendered, payload: serde_json::Value| Notification {
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
            let rendered = render(Audience::Researchers, self.researchers_language(), &refs, Some(*a))?;
            for r in researchers(alloc, true) {
                out.push(msg(Channel::Email, Audience::Researchers, r, chosen, rendered.clone(), json!(null)));
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

/// The researchers e-mailed about an allocation: its PI, and its members when `members`, each
/// once (addresses compared without case). Alert mails and digests both go to these, so a
/// researcher only ever hears about the allocations that name them.
pub(crate) fn researchers(alloc: &crate::domain::grants::Allocation, members: bool) -> Vec<String> {
    let mut seen = HashSet::new();
    let listed = if members { alloc.members.as_slice() } else { &[] };
    std::iter::once(&alloc.pi).chain(listed.iter()).filter(|r| !r.is_empty() && seen.insert(r.to_lowercase())).cloned().collect()
}

/// Subjects whose alerts resolve without a message: allocations that ended, or vanished.
fn quiet_subjects(rec: &Reconciliation) -> HashSet<String> {
    rec.allocations.iter().filter(|a| !a.is_running()).map(|a| a.subject()).collect()
}

/// Top users and partitions of the given allocations over the last [`DRIVER_WINDOW_DAYS`]:
/// one pass over each centre's recent jobs, each local day of a job charged by the one
/// charging rule (usage of a day outside an allocation's period drives nothing of it).
fn drivers(tx: &Tx<'_>, centres: &[&Centre], grants: &Grants, allocations: &HashSet<usize>, at: i64) -> Result<HashMap<usize, Drivers>, StoreError> {
    drivers_from(|c, from, to| tx.jobs_overlapping(c, from, to), centres, grants, allocations, at)
}

/// The top users and partitions of each allocation over the [`DRIVER_WINDOW_DAYS`] before
/// `at`, each job's hours placed by the one charging rule; `jobs` reads a centre's jobs
/// overlapping a window (from the cycle's transaction, or from a store for the project page).
pub(crate) fn drivers_from(
    mut jobs: impl FnMut(&str, i64, i64) -> Result<Vec<crate::domain::job::JobRecord>, StoreError>,
    centres: &[&Centre],
    grants: &Grants,
    allocations: &HashSet<usize>,
    at: i64,
) -> Result<HashMap<usize, Drivers>, StoreError> {
    let mut by_centre: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &i in allocations {
        by_centre.entry(grants.allocations[i].centre.as_str()).or_default().push(i);
    }
    let from = at - DRIVER_WINDOW_DAYS * DAY_S;
    let mut out = HashMap::new();
    for (centre_id, list) in by_centre {
        let Some(centre) = centres.iter().find(|c| c.id == centre_id) else { continue };
        let charging = Charging::new(centre, grants);
        let wanted: HashSet<usize> = list.iter().copied().collect();
        let mut users: HashMap<usize, HashMap<String, f64>> = HashMap::new();
        let mut parts: HashMap<usize, HashMap<String, f64>> = HashMap::new();
        for job in jobs(&centre.id, from, at)? {
            let placement = charging.place(&job.cluster, &job.account, &job.partition);
            let Some(rule) = placement.rule() else { continue };
            // The job's unit-seconds inside the window, per allocation its days charge.
            let (a, b) = (job.start_s.max(from), job.end_s.min(at));
            let mut charged: Vec<(usize, UnitSeconds)> = Vec::new();
            let mut day = local_day(a, &centre.tz);
            let mut seg = a;
            while seg < b {
                let next = day_start(day + 1, &centre.tz).min(b);
                if let Charge::Allocation { allocation, .. } = placement.charge(day) {
                    if wanted.contains(&allocation) {
                        let us = prorate_window(&job, seg, next);
                        match charged.iter_mut().find(|(i, _)| *i == allocation) {
                            Some((_, sum)) => sum.add(&us),
                            None => charged.push((allocation, us)),
                        }
                    }
                }
                seg = next;
                day += 1;
            }
            for (i, us) in charged {
                let h = charging.rule(rule).hours(&us);
                if h <= 0.0 {
                    continue;
                }
                *users.entry(i).or_default().entry(job.user.clone()).or_default() += h;
                *parts.entry(i).or_default().entry(job.partition.clone()).or_default() += h;
            }
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
        let conditions = rules::evaluate(&alerting.settings.rules, &alerting.settings.checkpoints, grants, rec, None);
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
