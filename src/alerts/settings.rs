//! The `[alerts]` configuration section: which rules tell what and when, take-back
//! checkpoints, routing, channels and delivery policy. Every default is documented in
//! `config/allocwatch.example.toml` and README.md. The pace thresholds are not here: they are
//! the status's (`[reconcile]`), and the pace rules fire on the status.

use crate::domain::rules::{Checkpoint, Rule, RuleCommon, RuleSettings};
use crate::secret::{Secret, SecretSource};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Language of messages (templates ship in both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// English.
    #[default]
    En,
    /// French.
    Fr,
}

impl Lang {
    /// Directory name of the templates.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }
}

/// Who is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Audience {
    /// The allocation's PI and members, about their own project only.
    Researchers,
    /// The operations team: everything.
    Operations,
}

/// How a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// SMTP e-mail.
    Email,
    /// Generic webhook (JSON or Mattermost/Slack `{"text": …}`).
    Webhook,
    /// Prometheus Alertmanager.
    Alertmanager,
}

impl Channel {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
            Channel::Alertmanager => "alertmanager",
        }
    }
}

/// One routing line: these rules go to this audience over these channels.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Rules routed.
    pub rules: Vec<Rule>,
    /// Audience.
    pub audience: Audience,
    /// Channels.
    pub channels: Vec<Channel>,
}

/// TLS mode of the SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (loopback relays only).
    None,
    /// STARTTLS upgrade, required.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// SMTP settings.
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// Relay host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS mode.
    pub tls: SmtpTls,
    /// Login, if the relay wants one.
    pub username: Option<String>,
    /// Password, read from the environment or a file at start (never logged).
    pub password: Option<Secret>,
    /// Sender address.
    pub from: String,
    /// Extra CA certificate (PEM) to trust, e.g. an internal relay's.
    pub ca_file: Option<PathBuf>,
}

/// Webhook body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The alert as a JSON document.
    Json,
    /// Mattermost/Slack incoming webhook: `{"text": "…"}`.
    Slack,
}

/// Webhook settings.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Endpoint (its query may hold a secret: never logged whole).
    pub url: Secret,
    /// Body format.
    pub format: WebhookFormat,
}

/// Alertmanager settings.
#[derive(Debug, Clone)]
pub struct AlertmanagerSettings {
    /// Base URL, e.g. `http://127.0.0.1:9093`.
    pub url: String,
    /// Firing alerts are sent with `endsAt` this far ahead and refreshed every cycle.
    pub hold_minutes: f64,
}

/// Retry policy of the notification outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliverySettings {
    /// First retry delay, seconds (doubles each attempt, with jitter).
    pub retry_initial_seconds: f64,
    /// Longest retry delay, seconds. Delivery is retried forever: nothing owed is dropped.
    pub retry_max_seconds: f64,
    /// Timeout of one delivery attempt, seconds.
    pub timeout_seconds: f64,
}

impl DeliverySettings {
    /// The timeout of one delivery attempt (and of a channel's probe).
    pub(crate) fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs_f64(self.timeout_seconds)
    }
}

/// How often researchers get a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestEvery {
    /// Once per ISO week (UTC), by default on Monday at 06:00 UTC.
    Week,
    /// Once per calendar month (UTC), by default on the 1st at 06:00 UTC.
    Month,
}

impl DigestEvery {
    /// The name in the configuration and the templates (`week`, `month`).
    pub fn as_str(self) -> &'static str {
        match self {
            DigestEvery::Week => "week",
            DigestEvery::Month => "month",
        }
    }

    /// The default schedule (six-field cron, UTC).
    pub fn default_schedule(self) -> &'static str {
        match self {
            DigestEvery::Week => "0 0 6 * * Mon",
            DigestEvery::Month => "0 0 6 1 * *",
        }
    }
}

/// `[alerts.digest]`: a summary mail to each project's researchers once per period, whether
/// or not an alert fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestSettings {
    /// The period: one digest per project and week, or month.
    pub every: DigestEvery,
    /// When the daemon sends it (six-field cron, UTC; checked as `[daemon] schedule` is).
    pub schedule: String,
    /// Members get it too, not only the PI.
    pub members: bool,
}

/// The whole `[alerts]` section, validated.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// Rules.
    pub rules: RuleSettings,
    /// Take-back checkpoints.
    pub checkpoints: Vec<Checkpoint>,
    /// Routing.
    pub routes: Vec<Route>,
    /// Operations team addresses.
    pub operations_emails: Vec<String>,
    /// One message per alert, or one digest per cycle, for operations e-mail.
    pub operations_digest: bool,
    /// Language of researchers' messages.
    pub researchers_language: Lang,
    /// Language of operations messages.
    pub operations_language: Lang,
    /// Directory of templates overriding the bundled ones.
    pub templates_dir: Option<PathBuf>,
    /// SMTP, if configured.
    pub email: Option<EmailSettings>,
    /// Webhook, if configured.
    pub webhook: Option<WebhookSettings>,
    /// Alertmanager, if configured.
    pub alertmanager: Option<AlertmanagerSettings>,
    /// Retry policy.
    pub delivery: DeliverySettings,
    /// Researchers' digests, if configured.
    pub digest: Option<DigestSettings>,
}

// ---- raw shapes -----------------------------------------------------------------------------

macro_rules! rule_struct {
    ($name:ident, $renotify:expr, $resolved:expr; { $($field:ident : $ty:ty = $default:expr),* }) => {
        #[derive(Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub(crate) struct $name {
            enabled: bool,
            renotify_days: f64,
            notify_resolved: Option<bool>,
            $($field: Option<$ty>,)*
        }
        impl Default for $name {
            fn default() -> Self {
                $name { enabled: true, renotify_days: $renotify, notify_resolved: None, $($field: None,)* }
            }
        }
        impl $name {
            fn common(&self) -> RuleCommon {
                RuleCommon { enabled: self.enabled, renotify_days: self.renotify_days, notify_resolved: self.notify_resolved.unwrap_or($resolved) }
            }
            $(fn $field(&self) -> $ty { self.$field.clone().unwrap_or_else(|| $default) })*
        }
    };
}

rule_struct!(RawThreshold, 0.0, false; { thresholds_pct: Vec<f64> = vec![50.0, 75.0, 90.0] });
/// A pace rule's table. Its old thresholds are read only to be refused by name (`moved_key`):
/// they are the status's now.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawPaceRule {
    enabled: bool,
    renotify_days: f64,
    notify_resolved: Option<bool>,
    drift_pp: Option<toml::Value>,
    exhaustion_days_before_end: Option<toml::Value>,
    min_elapsed_pct: Option<toml::Value>,
}

impl Default for RawPaceRule {
    fn default() -> Self {
        RawPaceRule { enabled: true, renotify_days: 7.0, notify_resolved: None, drift_pp: None, exhaustion_days_before_end: None, min_elapsed_pct: None }
    }
}

impl RawPaceRule {
    fn common(&self) -> RuleCommon {
        RuleCommon { enabled: self.enabled, renotify_days: self.renotify_days, notify_resolved: self.notify_resolved.unwrap_or(true) }
    }
}
rule_struct!(RawCheckpointRule, 7.0, false; {});
rule_struct!(RawExhausted, 7.0, true; { counts_committed: bool = false });
rule_struct!(RawOrphan, 7.0, true; { min_hours: f64 = 1.0 });
rule_struct!(RawStale, 1.0, true; { max_age_hours: f64 = 6.0, max_consecutive_failures: u32 = 3 });
rule_struct!(RawForecastExhaustion, 7.0, true; { days_before_end: f64 = 30.0, probability: f64 = 0.8 });
rule_struct!(RawForecastUnused, 7.0, false; { unused_pct: f64 = 10.0, probability: f64 = 0.8 });

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRules {
    #[serde(default)]
    threshold: RawThreshold,
    #[serde(default)]
    over_pace: RawPaceRule,
    #[serde(default)]
    under_pace: RawPaceRule,
    #[serde(default)]
    checkpoint: RawCheckpointRule,
    #[serde(default)]
    exhausted: RawExhausted,
    #[serde(default)]
    orphan_usage: RawOrphan,
    #[serde(default)]
    stale_feed: RawStale,
    #[serde(default)]
    forecast_exhaustion: RawForecastExhaustion,
    #[serde(default)]
    forecast_unused: RawForecastUnused,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCheckpoint {
    date: String,
    min_consumed_pct: f64,
    takeback_pct: f64,
    #[serde(default = "thirty")]
    warn_days: f64,
    #[serde(default)]
    centres: Vec<String>,
    #[serde(default)]
    committees: Vec<String>,
}

fn thirty() -> f64 {
    30.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    rules: Vec<String>,
    audience: Audience,
    channels: Vec<Channel>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOperations {
    #[serde(default)]
    emails: Vec<String>,
    #[serde(default)]
    digest: bool,
    #[serde(default)]
    language: Option<Lang>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEmail {
    host: String,
    #[serde(default)]
    port: Option<u16>,
    tls: SmtpTls,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    from: String,
    #[serde(default)]
    ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    url_env: Option<String>,
    #[serde(default = "json_format")]
    format: WebhookFormat,
}

fn json_format() -> WebhookFormat {
    WebhookFormat::Json
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAlertmanager {
    url: String,
    #[serde(default = "hold")]
    hold_minutes: f64,
}

fn hold() -> f64 {
    120.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawDelivery {
    retry_initial_seconds: f64,
    retry_max_seconds: f64,
    timeout_seconds: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDigest {
    #[serde(default = "weekly")]
    every: DigestEvery,
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default)]
    members: bool,
}

fn weekly() -> DigestEvery {
    DigestEvery::Week
}

impl Default for RawDelivery {
    fn default() -> Self {
        RawDelivery { retry_initial_seconds: 30.0, retry_max_seconds: 3600.0, timeout_seconds: 20.0 }
    }
}

/// The raw `[alerts]` table as written in the configuration file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    #[serde(default)]
    rules: RawRules,
    #[serde(default, rename = "checkpoint")]
    checkpoints: Vec<RawCheckpoint>,
    #[serde(default, rename = "route")]
    routes: Option<Vec<RawRoute>>,
    #[serde(default)]
    operations: RawOperations,
    #[serde(default)]
    language: Lang,
    #[serde(default)]
    templates_dir: Option<PathBuf>,
    #[serde(default)]
    email: Option<RawEmail>,
    #[serde(default)]
    webhook: Option<RawWebhook>,
    #[serde(default)]
    alertmanager: Option<RawAlertmanager>,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    digest: Option<RawDigest>,
}

/// A pace threshold set under `[alerts.rules]`: where it lives now (status and alerts share one).
fn moved_key(key: &str, set: bool, now: &str) -> Result<(), String> {
    if set {
        return Err(format!(
            "alerts.rules.{key}: pace thresholds are no longer set per alert rule; the over_pace and under_pace alerts fire on the \
             allocation's status, whose thresholds are [reconcile] {now}: move the value there (and remove it here)"
        ));
    }
    Ok(())
}

impl RawAlerts {
    /// Validate; relative paths are resolved against `base`. Errors name the key.
    pub fn validate(self, base: &Path) -> Result<AlertSettings, String> {
        let resolve = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };
        let r = &self.rules;
        moved_key("over_pace.drift_pp", r.over_pace.drift_pp.is_some(), "over_pace_drift_pp")?;
        moved_key("over_pace.exhaustion_days_before_end", r.over_pace.exhaustion_days_before_end.is_some(), "exhaustion_warning_days")?;
        moved_key("over_pace.min_elapsed_pct", r.over_pace.min_elapsed_pct.is_some(), "under_pace_min_elapsed_pct")?;
        moved_key("under_pace.drift_pp", r.under_pace.drift_pp.is_some(), "under_pace_drift_pp")?;
        moved_key("under_pace.exhaustion_days_before_end", r.under_pace.exhaustion_days_before_end.is_some(), "exhaustion_warning_days")?;
        moved_key("under_pace.min_elapsed_pct", r.under_pace.min_elapsed_pct.is_some(), "under_pace_min_elapsed_pct")?;
        let rules = RuleSettings {
            threshold: r.threshold.common(),
            thresholds_pct: r.threshold.thresholds_pct(),
            over_pace: r.over_pace.common(),
            under_pace: r.under_pace.common(),
            checkpoint: r.checkpoint.common(),
            exhausted: r.exhausted.common(),
            exhausted_counts_committed: r.exhausted.counts_committed(),
            orphan_usage: r.orphan_usage.common(),
            orphan_min_hours: r.orphan_usage.min_hours(),
            stale_feed: r.stale_feed.common(),
            stale_max_age_hours: r.stale_feed.max_age_hours(),
            stale_max_failures: r.stale_feed.max_consecutive_failures(),
            forecast_exhaustion: r.forecast_exhaustion.common(),
            forecast_exhaustion_days: r.forecast_exhaustion.days_before_end(),
            forecast_exhaustion_probability: r.forecast_exhaustion.probability(),
            forecast_unused: r.forecast_unused.common(),
            forecast_unused_pct: r.forecast_unused.unused_pct(),
            forecast_unused_probability: r.forecast_unused.probability(),
        };
        if !(rules.forecast_exhaustion_days.is_finite() && rules.forecast_exhaustion_days >= 0.0) {
            return Err("alerts.rules.forecast_exhaustion.days_before_end: must be ≥ 0".into());
        }
        if !(0.0..=100.0).contains(&rules.forecast_unused_pct) || rules.forecast_unused_pct == 0.0 {
            return Err("alerts.rules.forecast_unused.unused_pct: must be a percentage above 0 and at most 100".into());
        }
        for (name, p) in [("forecast_exhaustion", rules.forecast_exhaustion_probability), ("forecast_unused", rules.forecast_unused_probability)] {
            if !(p > 0.0 && p <= 1.0) {
                return Err(format!("alerts.rules.{name}.probability: must be above 0 and at most 1 (e.g. 0.8)"));
            }
        }
        for t in &rules.thresholds_pct {
            if !(t.is_finite() && *t > 0.0) {
                return Err(format!("alerts.rules.threshold.thresholds_pct: {t} is not a positive percentage"));
            }
        }
        for (name, c) in [
            ("threshold", &rules.threshold),
            ("over_pace", &rules.over_pace),
            ("under_pace", &rules.under_pace),
            ("checkpoint", &rules.checkpoint),
            ("exhausted", &rules.exhausted),
            ("orphan_usage", &rules.orphan_usage),
            ("stale_feed", &rules.stale_feed),
            ("forecast_exhaustion", &rules.forecast_exhaustion),
            ("forecast_unused", &rules.forecast_unused),
        ] {
            if !(c.renotify_days.is_finite() && c.renotify_days >= 0.0) {
                return Err(format!("alerts.rules.{name}.renotify_days: must be ≥ 0 (0 = never)"));
            }
        }
        let mut checkpoints = Vec::new();
        for (i, c) in self.checkpoints.into_iter().enumerate() {
            let at = format!("alerts.checkpoint[{i}]");
            let date = c.date.parse().map_err(|_| format!("{at}.date: `{}` is not a date (YYYY-MM-DD)", c.date))?;
            if !(0.0..=100.0).contains(&c.min_consumed_pct) {
                return Err(format!("{at}.min_consumed_pct: must be between 0 and 100"));
            }
            if !(0.0..=100.0).contains(&c.takeback_pct) {
                return Err(format!("{at}.takeback_pct: must be between 0 and 100"));
            }
            if !(c.warn_days >= 0.0) {
                return Err(format!("{at}.warn_days: must be ≥ 0"));
            }
            checkpoints.push(Checkpoint {
                date,
                min_consumed_pct: c.min_consumed_pct,
                takeback_pct: c.takeback_pct,
                warn_days: c.warn_days,
                centres: c.centres,
                committees: c.committees,
            });
        }
        let email = match self.email {
            None => None,
            Some(e) => {
                // Read once, at start: a relay password does not rotate under a running daemon
                // (a reload reads it again).
                let password = SecretSource::from_keys("alerts.email", "password", e.password_env.clone(), e.password_file.as_deref().map(resolve))?
                    .map(|s| s.read_as("alerts.email", "password"))
                    .transpose()?;
                if password.is_some() && e.username.is_none() {
                    return Err("alerts.email.username: required when a password is given".into());
                }
                if !e.from.contains('@') {
                    return Err(format!("alerts.email.from: `{}` is not an e-mail address", e.from));
                }
                let port = e.port.unwrap_or(match e.tls {
                    SmtpTls::None => 25,
                    SmtpTls::Starttls => 587,
                    SmtpTls::Tls => 465,
                });
                Some(EmailSettings { host: e.host, port, tls: e.tls, username: e.username, password, from: e.from, ca_file: e.ca_file.map(|p| resolve(&p)) })
            }
        };
        let webhook = match self.webhook {
            None => None,
            Some(w) => {
                let url = match (w.url, w.url_env) {
                    (Some(u), None) => Secret::new(u),
                    (None, Some(var)) => Secret::from_env(&var).map_err(|m| format!("alerts.webhook.url_env: {m}"))?,
                    _ => return Err("alerts.webhook: give exactly one of url or url_env".into()),
                };
                if !(url.expose().starts_with("http://") || url.expose().starts_with("https://")) {
                    return Err("alerts.webhook.url: must be an http:// or https:// URL".into());
                }
                Some(WebhookSettings { url, format: w.format })
            }
        };
        let alertmanager = match self.alertmanager {
            None => None,
            Some(a) => {
                if !(a.url.starts_with("http://") || a.url.starts_with("https://")) {
                    return Err("alerts.alertmanager.url: must be an http:// or https:// URL".into());
                }
                if !(a.hold_minutes > 0.0) {
                    return Err("alerts.alertmanager.hold_minutes: must be > 0".into());
                }
                Some(AlertmanagerSettings { url: a.url.trim_end_matches('/').to_string(), hold_minutes: a.hold_minutes })
            }
        };
        for e in &self.operations.emails {
            if !e.contains('@') {
                return Err(format!("alerts.operations.emails: `{e}` is not an e-mail address"));
            }
        }
        let routes = match self.routes {
            Some(list) => {
                let mut out = Vec::new();
                for (i, r) in list.into_iter().enumerate() {
                    let at = format!("alerts.route[{i}]");
                    let mut rules_v = Vec::new();
                    for name in &r.rules {
                        let rule = if name == "*" {
                            rules_v.extend(Rule::ALL);
                            continue;
                        } else {
                            Rule::parse(name).ok_or_else(|| format!("{at}.rules: unknown rule {name:?} (threshold, over_pace, under_pace, checkpoint, exhausted, orphan_usage, stale_feed, forecast_exhaustion, forecast_unused, or *)"))?
                        };
                        rules_v.push(rule);
                    }
                    if r.audience == Audience::Researchers {
                        if let Some(bad) = rules_v.iter().find(|x| !x.concerns_allocation()) {
                            return Err(format!("{at}.rules: {} is for operations only", bad.as_str()));
                        }
                        if r.channels.iter().any(|c| *c != Channel::Email) {
                            return Err(format!("{at}.channels: researchers are only reached by e-mail (webhooks and Alertmanager are shared channels)"));
                        }
                    }
                    for c in &r.channels {
                        let configured = match c {
                            Channel::Email => email.is_some(),
                            Channel::Webhook => webhook.is_some(),
                            Channel::Alertmanager => alertmanager.is_some(),
                        };
                        if !configured {
                            return Err(format!("{at}.channels: {} is not configured ([alerts.{}])", c.as_str(), c.as_str()));
                        }
                    }
                    if r.audience == Audience::Operations && r.channels.contains(&Channel::Email) && self.operations.emails.is_empty() {
                        return Err(format!("{at}: operations e-mail needs alerts.operations.emails"));
                    }
                    out.push(Route { rules: rules_v, audience: r.audience, channels: r.channels });
                }
                out
            }
            None => default_routes(email.is_some(), webhook.is_some(), alertmanager.is_some(), !self.operations.emails.is_empty()),
        };
        let digest = match self.digest {
            None => None,
            Some(d) => {
                if email.is_none() {
                    return Err("alerts.digest: digests are e-mails: configure [alerts.email]".into());
                }
                let schedule = match d.schedule.as_deref().map(str::trim) {
                    Some("") => return Err("alerts.digest.schedule: empty; leave it out for the default of `every`".into()),
                    Some(s) => s.to_string(),
                    None => d.every.default_schedule().to_string(),
                };
                Some(DigestSettings { every: d.every, schedule, members: d.members })
            }
        };
        let d = self.delivery;
        if !(d.retry_initial_seconds >= 0.0 && d.retry_max_seconds >= d.retry_initial_seconds && d.timeout_seconds > 0.0) {
            return Err("alerts.delivery: need 0 ≤ retry_initial_seconds ≤ retry_max_seconds and timeout_seconds > 0".into());
        }
        Ok(AlertSettings {
            rules,
            checkpoints,
            routes,
            operations_emails: self.operations.emails,
            operations_digest: self.operations.digest,
            researchers_language: self.language,
            operations_language: self.operations.language.unwrap_or(self.language),
            templates_dir: self.templates_dir.map(|p| resolve(&p)),
            email,
            webhook,
            alertmanager,
            delivery: DeliverySettings {
                retry_initial_seconds: d.retry_initial_seconds,
                retry_max_seconds: d.retry_max_seconds,
                timeout_seconds: d.timeout_seconds,
            },
            digest,
        })
    }
}

/// Routing when the configuration gives none: researchers get e-mail about their allocations;
/// operations get everything on every configured channel.
fn default_routes(email: bool, webhook: bool, am: bool, ops_emails: bool) -> Vec<Route> {
    let mut routes = Vec::new();
    if email {
        routes.push(Route {
            rules: Rule::ALL.iter().copied().filter(|r| r.for_researchers_by_default()).collect(),
            audience: Audience::Researchers,
            channels: vec![Channel::Email],
        });
    }
    let mut ops = Vec::new();
    if email && ops_emails {
        ops.push(Channel::Email);
    }
    if webhook {
        ops.push(Channel::Webhook);
    }
    if am {
        ops.push(Channel::Alertmanager);
    }
    if !ops.is_empty() {
        routes.push(Route { rules: Rule::ALL.to_vec(), audience: Audience::Operations, channels: ops });
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMAIL: &str = "[email]\nhost = \"127.0.0.1\"\ntls = \"none\"\nfrom = \"allocwatch@ops.example\"\n";

    fn validate(text: &str) -> Result<AlertSettings, String> {
        let raw: RawAlerts = toml::from_str(text).map_err(|e| e.to_string())?;
        raw.validate(Path::new("/etc/allocwatch"))
    }

    #[test]
    fn digests_default_to_their_period_schedule_and_need_email() {
        let d = validate(&format!("{EMAIL}[digest]\n")).unwrap().digest.unwrap();
        assert_eq!((d.every, d.schedule.as_str(), d.members), (DigestEvery::Week, "0 0 6 * * Mon", false));
        let d = validate(&format!("{EMAIL}[digest]\nevery = \"month\"\nmembers = true\n")).unwrap().digest.unwrap();
        assert_eq!((d.every, d.schedule.as_str(), d.members), (DigestEvery::Month, "0 0 6 1 * *", true));
        let d = validate(&format!("{EMAIL}[digest]\nschedule = \"0 30 7 * * Fri\"\n")).unwrap().digest.unwrap();
        assert_eq!(d.schedule, "0 30 7 * * Fri");
        assert!(validate(EMAIL).unwrap().digest.is_none(), "off unless configured");
        assert!(validate("[digest]\n").unwrap_err().contains("alerts.digest: digests are e-mails"));
        assert!(validate(&format!("{EMAIL}[digest]\nschedule = \" \"\n")).unwrap_err().contains("alerts.digest.schedule"));
        assert!(validate(&format!("{EMAIL}[digest]\nevery = \"day\"\n")).unwrap_err().contains("expected `week` or `month`"));
    }

    #[test]
    fn the_example_digest_section_parses() {
        // config/allocwatch.example.toml documents [alerts.digest] commented out: uncommented,
        // it is valid.
        let example = include_str!("../../config/allocwatch.example.toml");
        let block: String = example
            .lines()
            .skip_while(|l| l.trim() != "# [alerts.digest]")
            .map_while(|l| l.strip_prefix("# ").filter(|l| l.starts_with('[') || l.contains(" = ")))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(block.contains("members = false"), "no commented [alerts.digest] block in the example:\n{block}");
        let d = validate(&format!("{EMAIL}{}", block.replace("[alerts.digest]", "[digest]"))).unwrap().digest.unwrap();
        assert_eq!((d.every, d.schedule.as_str(), d.members), (DigestEvery::Week, DigestEvery::Week.default_schedule(), false));
    }
}
