//! Researchers' digests (`[alerts.digest]`): once a week or a month, whether or not an alert
//! fired, each project's researchers get one e-mail with the figures of its allocations — the
//! reconciliation's own [`AllocationReport`]s, as the API serves them — a summary per kind of
//! hours (never added across kinds), a burn-down picture per allocation ([`super::chart`], PNG
//! shown inline by its Content-ID) and the signed link to the project's page.
//!
//! Routing is the alert mails': a researcher is e-mailed about the allocations that name them
//! ([`super::researchers`]), in the researchers' language. Which projects, which period and the
//! queueing are the caller's (`crate::cycle::digest`).

use super::chart;
use super::settings::{DigestEvery, DigestSettings};
use super::{researchers, Alerting};
use crate::domain::burndown::BurnDown;
use crate::domain::grants::Grants;
use crate::domain::hours::{HoursByKind, HoursKind};
use crate::domain::time::{rfc3339, utc_date};
use crate::store::alerts::{InlinePart, Notification};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The period a digest at `at` belongs to, in UTC: its ISO week (`2026-W47`) or its month
/// (`2026-11`). One digest per project and period.
pub(crate) fn period_of(at: i64, every: DigestEvery) -> String {
    let d = utc_date(at);
    match every {
        DigestEvery::Week => {
            let w = d.iso_week_date();
            format!("{:04}-W{:02}", w.year(), w.week())
        }
        DigestEvery::Month => format!("{:04}-{:02}", d.year(), d.month()),
    }
}

/// A digest e-mail to one researcher, with the pictures it shows inline.
pub(crate) type DigestMail = (Notification, Vec<InlinePart>);

/// A Content-ID's local part from free text: letters, digits, `-` and `.` kept, the rest `_`.
fn cid_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
}

impl Alerting {
    /// `[alerts.digest]`, if configured.
    pub(crate) fn digest_settings(&self) -> Option<&DigestSettings> {
        self.settings.digest.as_ref()
    }

    /// The digest of one project at the reconciliation instant `at`, for `period`: one mail
    /// per researcher named on its allocations (the PI, and members when configured), about
    /// the allocations that name them; `burndowns` are the project's allocations', built from
    /// the reconciliation's reports. The signed link is made at `now` (the wall clock).
    pub(crate) fn compose_digest(&self, grants: &Grants, project: &str, burndowns: &[BurnDown], period: &str, at: i64, now: i64) -> Result<Vec<DigestMail>, String> {
        let Some(settings) = self.digest_settings() else { return Ok(Vec::new()) };
        // Recipient → the allocations that name them; recipients with the same allocations
        // share one rendering.
        let mut named: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, b) in burndowns.iter().enumerate() {
            for r in researchers(&grants.allocations[b.allocation.index], settings.members) {
                match named.iter_mut().find(|(x, _)| x.to_lowercase() == r.to_lowercase()) {
                    Some((_, list)) => list.push(i),
                    None => named.push((r, vec![i])),
                }
            }
        }
        let mut groups: BTreeMap<Vec<usize>, Vec<String>> = BTreeMap::new();
        for (r, list) in named {
            groups.entry(list).or_default().push(r);
        }
        let pictures: Vec<Vec<u8>> = burndowns.iter().map(chart::burndown_png).collect();
        let link = self.link_context(project, now);
        let mut out = Vec::new();
        for (list, recipients) in groups {
            let chosen: Vec<&BurnDown> = list.iter().map(|&i| &burndowns[i]).collect();
            let cids: Vec<String> = (1..=chosen.len()).map(|k| format!("burndown{k}.{}.{}@allocwatch", cid_safe(period), cid_safe(project))).collect();
            let ctx = context(project, settings.every, period, at, &chosen, &cids, &link)?;
            let r = self.templates.render_digest(self.researchers_language(), &ctx)?;
            let parts: Vec<InlinePart> = list
                .iter()
                .zip(&cids)
                .map(|(&i, cid)| InlinePart { content_id: cid.clone(), content_type: "image/png".into(), bytes: pictures[i].clone() })
                .collect();
            for recipient in recipients {
                let n = Notification {
                    channel: "email".into(),
                    audience: "researchers".into(),
                    recipient,
                    alert_ids: Vec::new(),
                    kinds: vec!["digest".into()],
                    subject: r.subject.clone(),
                    text: r.text.clone(),
                    html: r.html.clone(),
                    payload: Value::Null,
                };
                out.push((n, parts.clone()));
            }
        }
        Ok(out)
    }
}

/// What the digest templates see: the project, the period, each allocation's report (the
/// `check --format json` object) with its kind of hours and picture, the totals per kind, the
/// link.
fn context(project: &str, every: DigestEvery, period: &str, at: i64, chosen: &[&BurnDown], cids: &[String], link: &Value) -> Result<Value, String> {
    let mut allocations = Vec::new();
    for (b, cid) in chosen.iter().zip(cids) {
        let mut v = serde_json::to_value(&b.allocation).map_err(|e| format!("digest of {project}: {e}"))?;
        v["kind"] = json!(b.allocation.kind.id());
        v["chart"] = json!(cid);
        allocations.push(v);
    }
    let mut totals = Vec::new();
    for kind in HoursKind::ALL {
        let of_kind: Vec<&&BurnDown> = chosen.iter().filter(|b| b.allocation.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let sum = |f: fn(&BurnDown) -> crate::domain::hours::ResourceHours| of_kind.iter().map(|b| f(b)).collect::<HoursByKind>().of(kind).value();
        let granted = sum(|b| b.allocation.granted_hours);
        let consumed = sum(|b| b.allocation.consumed_hours);
        totals.push(json!({
            "kind": kind.id(),
            "allocations": of_kind.len(),
            "granted_hours": granted,
            "consumed_hours": consumed,
            "remaining_hours": sum(|b| b.allocation.remaining_hours),
            "expected_hours": sum(|b| b.allocation.expected_hours),
            "consumed_pct": if granted > 0.0 { Some(consumed / granted * 100.0) } else { None },
        }));
    }
    Ok(json!({
        "project": project,
        "every": every.as_str(),
        "period": period,
        "at": rfc3339(at),
        "date": utc_date(at).to_string(),
        "allocations": allocations,
        "totals": totals,
        "link": link,
        "chart_width": chart::WIDTH,
        "chart_height": chart::HEIGHT,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_iso_weeks_and_months_in_utc() {
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_second();
        assert_eq!(period_of(t("2026-03-02T06:00:00Z"), DigestEvery::Week), "2026-W10");
        assert_eq!(period_of(t("2026-03-08T23:59:59Z"), DigestEvery::Week), "2026-W10");
        assert_eq!(period_of(t("2026-03-09T00:00:00Z"), DigestEvery::Week), "2026-W11");
        // ISO weeks belong to the year of their Thursday.
        assert_eq!(period_of(t("2027-01-01T12:00:00Z"), DigestEvery::Week), "2026-W53");
        assert_eq!(period_of(t("2026-03-31T23:00:00Z"), DigestEvery::Month), "2026-03");
        assert_eq!(period_of(t("2026-04-01T00:00:00Z"), DigestEvery::Month), "2026-04");
    }

    #[test]
    fn content_ids_keep_only_safe_characters() {
        assert_eq!(cid_safe("A0 1/é.x-y"), "A0_1__.x-y");
    }
}
