//! Delivery of the notification outbox: SMTP (lettre), webhooks and Alertmanager (reqwest).
//!
//! A message is deleted from nothing: it is marked sent after the receiver accepted it, and
//! retried with exponential backoff and jitter otherwise, forever (nothing owed is dropped).
//! Each message carries a stable id (the e-mail's Message-ID, the webhook's Idempotency-Key)
//! so a receiver can discard the rare duplicate left by a crash between "accepted" and
//! "marked sent".

use super::settings::{AlertSettings, EmailSettings, SmtpTls};
use crate::domain::retry::backoff;
use crate::domain::time::rfc3339;
use crate::store::alerts::Pending;
use crate::store::Store;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::collections::HashMap;
use std::time::Duration;

/// What a delivery pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Messages accepted by their receiver.
    pub sent: usize,
    /// Attempts that failed (the messages stay queued).
    pub failed: usize,
    /// Messages still queued after the pass.
    pub pending: i64,
    /// Messages accepted, by channel (`email`, `webhook`, `alertmanager`).
    pub sent_by_channel: std::collections::BTreeMap<String, u64>,
}

fn smtp_transport(e: &EmailSettings, timeout: Duration) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let params = || -> Result<TlsParameters, String> {
        let mut b = TlsParameters::builder(e.host.clone());
        if let Some(ca) = &e.ca_file {
            let pem = std::fs::read(ca).map_err(|x| format!("alerts.email.ca_file {}: {x}", ca.display()))?;
            let cert = Certificate::from_pem(&pem).map_err(|x| format!("alerts.email.ca_file {}: {x}", ca.display()))?;
            b = b.add_root_certificate(cert);
        }
        b.build_rustls().map_err(|x| format!("SMTP TLS parameters: {x}"))
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(e.host.clone()).port(e.port).timeout(Some(timeout));
    b = match e.tls {
        SmtpTls::None => b.tls(Tls::None),
        SmtpTls::Starttls => b.tls(Tls::Required(params()?)),
        SmtpTls::Tls => b.tls(Tls::Wrapper(params()?)),
    };
    if let (Some(user), Some(pass)) = (&e.username, &e.password) {
        b = b.credentials(Credentials::new(user.clone(), pass.expose().to_string()));
    }
    Ok(b.build())
}

fn message_id(p: &Pending, from: &str) -> String {
    let domain = from.rsplit('@').next().unwrap_or("allocwatch");
    format!("<allocwatch.notification.{}@{}>", p.id, domain)
}

async fn send_email(t: &AsyncSmtpTransport<Tokio1Executor>, e: &EmailSettings, p: &Pending) -> Result<(), String> {
    let from: Mailbox = e.from.parse().map_err(|x| format!("alerts.email.from: {x}"))?;
    let to: Mailbox = p.recipient.parse().map_err(|x| format!("recipient {}: {x}", p.recipient))?;
    let msg = Message::builder()
        .from(from)
        .to(to)
        .subject(p.subject.clone())
        .message_id(Some(message_id(p, &e.from)))
        .multipart(MultiPart::alternative_plain_html(p.text.clone(), p.html.clone()))
        .map_err(|x| format!("building the message: {x}"))?;
    t.send(msg).await.map(|_| ()).map_err(|x| {
        // lettre's errors never contain the password; the password is scrubbed anyway.
        let text = format!("SMTP {}:{}: {x}", e.host, e.port);
        match &e.password {
            Some(p) => p.scrub(&text),
            None => text,
        }
    })
}

async fn post_json(client: &reqwest::Client, url: &str, body: &str, idempotency: &str, what: &str) -> Result<(), String> {
    let resp = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", idempotency)
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("{what}: {}", e.without_url()))?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        let text = resp.text().await.unwrap_or_default();
        Err(format!("{what}: HTTP {status}: {}", text.chars().take(300).collect::<String>()))
    }
}

/// Turn a queued Alertmanager batch into the request body: `endsAt` from the wall clock at
/// delivery (now + hold while firing, now once resolved), so a batch delayed by an outage
/// never arrives already expired, and a later batch corrects an earlier one.
pub(crate) fn stamp_alertmanager(payload: &str, now: i64) -> Result<String, String> {
    let mut v: serde_json::Value = serde_json::from_str(payload).map_err(|e| format!("queued Alertmanager batch: {e}"))?;
    for a in v.as_array_mut().into_iter().flatten() {
        let resolved = a["allocwatch_resolved"].as_bool().unwrap_or(false);
        let hold = a["allocwatch_hold_minutes"].as_f64().unwrap_or(120.0);
        let ends = if resolved { now } else { now + (hold * 60.0) as i64 };
        if let Some(o) = a.as_object_mut() {
            o.remove("allocwatch_resolved");
            o.remove("allocwatch_hold_minutes");
            o.insert("endsAt".into(), serde_json::json!(rfc3339(ends)));
        }
    }
    Ok(v.to_string())
}

/// Deliver every due message once (`force`: also those waiting for their retry time).
/// A channel that fails is not retried again within the same pass.
pub(crate) async fn deliver_pending(store: &mut Store, s: &AlertSettings, force: bool) -> Result<DeliveryReport, String> {
    let sql = |e: crate::store::StoreError| format!("notification outbox: {e}");
    let now = jiff::Timestamp::now().as_second();
    let due = store.due_notifications(now, force, 10_000).map_err(sql)?;
    let mut report = DeliveryReport::default();
    if due.is_empty() {
        report.pending = store.pending_notifications().map_err(sql)?;
        return Ok(report);
    }
    let timeout = Duration::from_secs_f64(s.delivery.timeout_seconds);
    let client = reqwest::Client::builder().timeout(timeout).build().map_err(|e| format!("HTTP client: {e}"))?;
    let smtp = match &s.email {
        Some(e) => Some(smtp_transport(e, timeout)?),
        None => None,
    };
    let mut down: HashMap<String, String> = HashMap::new();
    let mut deferred: Vec<i64> = Vec::new();
    for p in due {
        if down.contains_key(&p.channel) {
            // Stays pending; retried at its next attempt time. Counted, so the wait shows.
            deferred.push(p.id);
            continue;
        }
        let idem = format!("allocwatch-notification-{}", p.id);
        let result = match p.channel.as_str() {
            "email" => match (&smtp, &s.email) {
                (Some(t), Some(e)) => send_email(t, e, &p).await,
                _ => Err("e-mail is no longer configured ([alerts.email])".into()),
            },
            "webhook" => match &s.webhook {
                Some(w) => post_json(&client, w.url.expose(), &p.payload, &idem, "webhook").await.map_err(|e| w.url.scrub(&e)),
                None => Err("the webhook is no longer configured ([alerts.webhook])".into()),
            },
            "alertmanager" => match &s.alertmanager {
                Some(a) => match stamp_alertmanager(&p.payload, jiff::Timestamp::now().as_second()) {
                    Ok(body) => post_json(&client, &format!("{}/api/v2/alerts", a.url), &body, &idem, "Alertmanager").await,
                    Err(e) => Err(e),
                },
                None => Err("Alertmanager is no longer configured ([alerts.alertmanager])".into()),
            },
            other => Err(format!("unknown channel {other}")),
        };
        let now = jiff::Timestamp::now().as_second();
        match result {
            Ok(()) => {
                store.notification_sent(p.id, now).map_err(sql)?;
                *report.sent_by_channel.entry(p.channel.clone()).or_default() += 1;
                report.sent += 1;
            }
            Err(e) => {
                let delay = backoff(
                    (p.attempts + 1).clamp(1, u32::MAX as i64) as u32,
                    Duration::from_secs_f64(s.delivery.retry_initial_seconds),
                    Duration::from_secs_f64(s.delivery.retry_max_seconds),
                    fastrand::f64(),
                )
                .as_secs_f64();
                store.notification_failed(p.id, &e, now + delay.ceil() as i64).map_err(sql)?;
                tracing::warn!(channel = %p.channel, notification = p.id, attempts = p.attempts + 1, retry_in_s = delay.ceil(), "delivery failed: {e}");
                report.failed += 1;
                down.insert(p.channel.clone(), e);
            }
        }
    }
    if !deferred.is_empty() {
        store.notifications_deferred(&deferred).map_err(sql)?;
    }
    report.pending = store.pending_notifications().map_err(sql)?;
    Ok(report)
}
