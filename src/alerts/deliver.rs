//! Delivery of the notification outbox: SMTP (lettre), webhooks and Alertmanager (reqwest).
//!
//! A message is deleted from nothing: it is marked sent after the receiver accepted it, and
//! retried with exponential backoff and jitter otherwise, forever (nothing owed is dropped).
//! Each message carries a stable id (the e-mail's Message-ID, the webhook's Idempotency-Key)
//! so a receiver can discard the rare duplicate left by a crash between "accepted" and
//! "marked sent".

use super::settings::{AlertSettings, AlertmanagerSettings, Channel, EmailSettings, SmtpTls, WebhookSettings};
use crate::domain::retry::backoff;
use crate::domain::time::rfc3339;
use crate::store::alerts::Pending;
use crate::store::Store;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
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

/// The HTTP client of webhook and Alertmanager deliveries (and of their probes).
fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder().timeout(timeout).build().map_err(|e| format!("HTTP client: {e}"))
}

fn message_id(p: &Pending, from: &str) -> String {
    let domain = from.rsplit('@').next().unwrap_or("allocwatch");
    format!("<allocwatch.notification.{}@{}>", p.id, domain)
}

/// The MIME body: text and HTML alternatives; when the message shows parts inline (a digest's
/// pictures), the HTML alternative is a `multipart/related` of the HTML and those parts, each
/// with the Content-ID the HTML names (`<img src="cid:…">`).
fn body(p: &Pending) -> Result<MultiPart, String> {
    if p.inline.is_empty() {
        return Ok(MultiPart::alternative_plain_html(p.text.clone(), p.html.clone()));
    }
    let mut related = MultiPart::related().singlepart(SinglePart::html(p.html.clone()));
    for part in &p.inline {
        let ct = ContentType::parse(&part.content_type).map_err(|x| format!("inline part {}: content type {:?}: {x}", part.content_id, part.content_type))?;
        related = related.singlepart(Attachment::new_inline(part.content_id.clone()).body(part.bytes.clone(), ct));
    }
    Ok(MultiPart::alternative().singlepart(SinglePart::plain(p.text.clone())).multipart(related))
}

async fn send_email(t: &AsyncSmtpTransport<Tokio1Executor>, e: &EmailSettings, p: &Pending) -> Result<(), String> {
    let from: Mailbox = e.from.parse().map_err(|x| format!("alerts.email.from: {x}"))?;
    let to: Mailbox = p.recipient.parse().map_err(|x| format!("recipient {}: {x}", p.recipient))?;
    let msg = Message::builder()
        .from(from)
        .to(to)
        .subject(p.subject.clone())
        .message_id(Some(message_id(p, &e.from)))
        .multipart(body(p)?)
        .map_err(|x| format!("building the message: {x}"))?;
    t.send(msg).await.map(|_| ()).map_err(|x| {
        // lettre's errors never contain the password; the password is scrubbed anyway.
        let text = format!("SMTP {}:{}: {x}{}", e.host, e.port, no_auth_offered(e, &x));
        match &e.password {
            Some(p) => p.scrub(&text),
            None => text,
        }
    })
}

/// lettre's "internal client error: No compatible authentication mechanism was found" means
/// the server's EHLO listed no AUTH mechanism lettre uses (PLAIN, LOGIN), so it never sent
/// AUTH: said in the operator's terms, with the usual cause when there is no TLS (servers such
/// as Postfix with `smtpd_tls_auth_only = yes` offer AUTH only after STARTTLS).
fn no_auth_offered(e: &EmailSettings, x: &lettre::transport::smtp::Error) -> &'static str {
    if !(x.is_client() && x.to_string().contains("No compatible authentication mechanism")) {
        return "";
    }
    match e.tls {
        SmtpTls::None => " (the server offers no AUTH PLAIN or LOGIN on this unencrypted connection, so allocwatch did not log in and sent no credentials; a relay that accepts logins only over TLS offers AUTH after STARTTLS: set alerts.email.tls = \"starttls\" or \"tls\")",
        _ => " (the server offers no AUTH PLAIN or LOGIN, so allocwatch did not log in and sent no credentials)",
    }
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
    let timeout = s.delivery.timeout();
    let client = http_client(timeout)?;
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
                Some(w) => {
                    let what = format!("webhook {}", webhook_target(w).map(|t| t.0).unwrap_or_default());
                    post_json(&client, w.url.expose(), &p.payload, &idem, what.trim_end()).await.map_err(|e| w.url.scrub(&e))
                }
                None => Err("the webhook is no longer configured ([alerts.webhook])".into()),
            },
            "alertmanager" => match &s.alertmanager {
                Some(a) => match stamp_alertmanager(&p.payload, jiff::Timestamp::now().as_second()) {
                    Ok(body) => post_json(&client, &format!("{}/api/v2/alerts", a.url), &body, &idem, &format!("Alertmanager {}", a.url)).await,
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

/// One configured channel as `allocwatch doctor` checked it.
#[derive(Debug)]
pub(crate) struct ChannelProbe {
    /// Which channel.
    pub channel: Channel,
    /// Where it delivers, with no secret (a webhook's path and query are left out).
    pub target: String,
    /// What works, or what does not and why.
    pub result: Result<String, String>,
}

/// Check every configured channel the way delivery would reach it, sending no message
/// (`allocwatch doctor`): SMTP connects with the configured TLS mode and logs in with the
/// configured credentials (the delivery transport's own connection test: EHLO, TLS, AUTH,
/// NOOP, QUIT); Alertmanager answers `GET /-/ready`; a webhook cannot be checked without
/// posting to it, so only a TCP connection to its host is opened. Each within the delivery
/// timeout.
pub(crate) async fn probe_channels(s: &AlertSettings) -> Vec<ChannelProbe> {
    let timeout = s.delivery.timeout();
    let mut out = Vec::new();
    if let Some(e) = &s.email {
        out.push(ChannelProbe { channel: Channel::Email, target: format!("{}:{}", e.host, e.port), result: probe_email(e, timeout).await });
    }
    if let Some(w) = &s.webhook {
        let (target, result) = probe_webhook(w, timeout).await;
        out.push(ChannelProbe { channel: Channel::Webhook, target, result });
    }
    if let Some(a) = &s.alertmanager {
        out.push(ChannelProbe { channel: Channel::Alertmanager, target: a.url.clone(), result: probe_alertmanager(a, timeout).await });
    }
    out
}

async fn probe_email(e: &EmailSettings, timeout: Duration) -> Result<String, String> {
    let transport = smtp_transport(e, timeout)?;
    let tls = match e.tls {
        SmtpTls::None => "no TLS",
        SmtpTls::Starttls => "STARTTLS",
        SmtpTls::Tls => "TLS",
    };
    let scrub = |text: String| match &e.password {
        Some(p) => p.scrub(&text),
        None => text,
    };
    // lettre's async transport bounds only the TCP connection by its timeout: the whole
    // exchange gets the delivery timeout, the bound of one delivery attempt.
    let tested = tokio::time::timeout(timeout, transport.test_connection())
        .await
        .map_err(|_| format!("no complete answer (connection, {tls}, login) within {} s", timeout.as_secs_f64()))?;
    match tested {
        Ok(true) => Ok(match &e.username {
            Some(u) => format!("connected ({tls}), login as {u:?} accepted; no mail sent"),
            None => format!("connected ({tls}), no login configured; no mail sent"),
        }),
        Ok(false) => Err(format!("connected ({tls}) but the server did not answer NOOP")),
        // 535 (RFC 4954): the credentials were refused.
        Err(x) if x.status().is_some_and(|c| c.to_string() == "535") => {
            Err(scrub(format!("login as {:?} refused: {x}", e.username.as_deref().unwrap_or(""))))
        }
        Err(x) if x.is_timeout() => Err(format!("no answer within {} s: {x}", timeout.as_secs_f64())),
        Err(x) => Err(scrub(format!("connection ({tls}) failed: {x}{}", no_auth_offered(e, &x)))),
    }
}

async fn probe_alertmanager(a: &AlertmanagerSettings, timeout: Duration) -> Result<String, String> {
    let url = format!("{}/-/ready", a.url);
    let resp = http_client(timeout)?
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("not reachable: GET /-/ready: {}", crate::domain::errors::error_chain(&e.without_url())))?;
    let status = resp.status();
    let text: String = resp.text().await.unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ").chars().take(200).collect();
    if status.is_success() {
        Ok(format!("ready (GET /-/ready answered {status})"))
    } else {
        Err(format!("not ready: GET /-/ready answered {status}: {text}"))
    }
}

/// Where the webhook delivers, as messages may name it: `scheme://host:port`, then the host
/// and port (never its path or query, which may carry a key).
fn webhook_target(w: &WebhookSettings) -> Result<(String, String, u16), String> {
    let url = reqwest::Url::parse(w.url.expose()).map_err(|e| w.url.scrub(&format!("alerts.webhook.url is not a URL: {e}")))?;
    let (Some(host), Some(port)) = (url.host_str().map(str::to_string), url.port_or_known_default()) else {
        return Err("alerts.webhook.url names no host".into());
    };
    Ok((format!("{}://{host}:{port}", url.scheme()), host, port))
}

/// The webhook's scheme, host and port, and a TCP connection to them.
async fn probe_webhook(w: &WebhookSettings, timeout: Duration) -> (String, Result<String, String>) {
    let (target, host, port) = match webhook_target(w) {
        Ok(t) => t,
        Err(e) => return ("webhook".into(), Err(e)),
    };
    let https = w.url.expose().starts_with("https:");
    let connected = tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port))).await;
    let result = match connected {
        Ok(Ok(_)) => Ok(format!(
            "TCP connection to {host}:{port} accepted; no request sent (a webhook cannot be checked without posting to it{})",
            if https { ", so neither TLS nor the path were checked" } else { ", so the path was not checked" }
        )),
        Ok(Err(e)) => Err(format!("not reachable: TCP connection to {host}:{port}: {e}")),
        Err(_) => Err(format!("not reachable: no TCP connection to {host}:{port} within {} s", timeout.as_secs_f64())),
    };
    (target, result)
}
