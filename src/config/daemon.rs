//! The daemon's configuration: the `[daemon]` section (pull and quality-report schedules,
//! jitter, shutdown deadline, readiness), the `[http]` section (listener, API token, what is
//! left open) and the per-centre `schedule` key. Documented in
//! `config/allocwatch.example.toml`; every error names the key.

use crate::secret::SecretSource;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default pull schedule of a centre: every 15 minutes, at second 0.
pub(crate) const DEFAULT_PULL_SCHEDULE: &str = "0 */15 * * * *";
/// Default quality-report schedule: 06:00 UTC on the first day of every month.
pub(crate) const DEFAULT_QUALITY_SCHEDULE: &str = "0 0 6 1 * *";

/// A validated cron expression with seconds (`sec min hour day-of-month month day-of-week`),
/// evaluated in UTC by the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule(String);

impl CronSchedule {
    /// Parse with the scheduler's own rules (seconds required, day-of-month AND day-of-week).
    pub fn parse(expr: &str) -> Result<CronSchedule, String> {
        let expr = expr.trim();
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(expr)
            .map_err(|e| format!("{expr:?} is not a cron expression with seconds (sec min hour day month weekday, e.g. \"0 */15 * * * *\"): {e}"))?;
        Ok(CronSchedule(expr.to_string()))
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The `[daemon]` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawDaemon {
    schedule: String,
    jitter_seconds: f64,
    quality_report: String,
    shutdown_grace_seconds: f64,
    ready_max_cycle_age_seconds: f64,
}

impl Default for RawDaemon {
    fn default() -> Self {
        RawDaemon {
            schedule: DEFAULT_PULL_SCHEDULE.into(),
            jitter_seconds: 60.0,
            quality_report: DEFAULT_QUALITY_SCHEDULE.into(),
            shutdown_grace_seconds: 30.0,
            ready_max_cycle_age_seconds: 3600.0,
        }
    }
}

/// The validated `[daemon]` section (defaults when it is absent).
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSettings {
    /// Pull schedule of centres that name none.
    pub pull_schedule: CronSchedule,
    /// Each scheduled pull waits a random delay in `[0, jitter)` first, so centres are not all
    /// hit at :00.
    pub jitter: Duration,
    /// Schedule of the quality report; `None` when disabled (`quality_report = ""`).
    pub quality_report: Option<CronSchedule>,
    /// On SIGTERM: how long pulls and the cycle in flight, then the last flush, may take.
    pub shutdown_grace: Duration,
    /// `/readyz` fails when the last cycle finished longer ago than this.
    pub ready_max_cycle_age: Duration,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        RawDaemon::default().validate().expect("defaults are valid")
    }
}

fn seconds(key: &str, v: f64, min: f64) -> Result<Duration, String> {
    if !(v.is_finite() && v >= min && v < 1e9) {
        return Err(format!("{key}: must be a number of seconds ≥ {min}"));
    }
    Ok(Duration::from_secs_f64(v))
}

impl RawDaemon {
    /// Validate; errors name the key.
    pub fn validate(self) -> Result<DaemonSettings, String> {
        let pull_schedule = CronSchedule::parse(&self.schedule).map_err(|e| format!("daemon.schedule: {e}"))?;
        let quality_report = match self.quality_report.trim() {
            "" | "off" => None,
            s => Some(CronSchedule::parse(s).map_err(|e| format!("daemon.quality_report: {e}"))?),
        };
        Ok(DaemonSettings {
            pull_schedule,
            jitter: seconds("daemon.jitter_seconds", self.jitter_seconds, 0.0)?,
            quality_report,
            shutdown_grace: seconds("daemon.shutdown_grace_seconds", self.shutdown_grace_seconds, 1.0)?,
            ready_max_cycle_age: seconds("daemon.ready_max_cycle_age_seconds", self.ready_max_cycle_age_seconds, 1.0)?,
        })
    }
}

/// The `[http]` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHttp {
    #[serde(default = "default_listen")]
    listen: String,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    token_file: Option<PathBuf>,
    /// Accepted only to be refused without echoing it.
    #[serde(default)]
    token: Option<serde::de::IgnoredAny>,
    #[serde(default = "yes")]
    open_health: bool,
    #[serde(default = "yes")]
    open_metrics: bool,
    #[serde(default)]
    open_status_page: bool,
    #[serde(default)]
    public_url: Option<String>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn yes() -> bool {
    true
}

/// The validated `[http]` section; without it the daemon opens no listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Address of the one listener (loopback by default).
    pub listen: SocketAddr,
    /// The bearer token of the API and the status page; without one, they are closed unless
    /// opened below.
    pub token: Option<SecretSource>,
    /// `/healthz` and `/readyz` without a token.
    pub open_health: bool,
    /// `/metrics` without a token.
    pub open_metrics: bool,
    /// The status page (`/`, `/allocations/…`) without a token.
    pub open_status_page: bool,
    /// The address people open the page at (a reverse proxy's), `http(s)://host[:port][/prefix]`
    /// without a trailing slash: the base of signed links; `https` makes the sign-in cookie
    /// `Secure`.
    pub public_url: Option<String>,
}

impl RawHttp {
    /// Validate; `resolve` makes a relative `token_file` relative to the configuration file.
    pub fn validate(self, resolve: impl Fn(&Path) -> PathBuf) -> Result<HttpSettings, String> {
        if self.token.is_some() {
            return Err("http.token: a token never goes in the configuration file; use token_env or token_file".into());
        }
        let listen: SocketAddr = self
            .listen
            .trim()
            .parse()
            .map_err(|_| format!("http.listen: {:?} is not an address like 127.0.0.1:8080 or [::1]:8080", self.listen))?;
        let token = SecretSource::from_keys("http", "token", self.token_env, self.token_file.map(|f| resolve(&f)))?;
        let public_url = self.public_url.map(|u| public_url(&u)).transpose()?;
        Ok(HttpSettings {
            listen,
            token,
            open_health: self.open_health,
            open_metrics: self.open_metrics,
            open_status_page: self.open_status_page,
            public_url,
        })
    }
}

/// `[http] public_url`: an http(s) URL with a host, no query, fragment or credentials; the
/// trailing slash is dropped.
fn public_url(u: &str) -> Result<String, String> {
    let bad = |why: &str| format!("http.public_url: {u:?} {why} (e.g. \"https://allocwatch.example.org\")");
    let u = u.trim();
    let rest = u.strip_prefix("https://").or_else(|| u.strip_prefix("http://")).ok_or_else(|| bad("is not an http:// or https:// URL"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    if host.contains('@') {
        return Err(bad("must not carry credentials"));
    }
    if u.contains('?') || u.contains('#') || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("must not have a query, a fragment or spaces"));
    }
    Ok(u.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_expressions_need_seconds_and_name_the_problem() {
        assert_eq!(CronSchedule::parse(" 0 */15 * * * * ").unwrap().as_str(), "0 */15 * * * *");
        assert!(CronSchedule::parse("* * * * * *").is_ok());
        let e = CronSchedule::parse("*/15 * * * *").unwrap_err();
        assert!(e.contains("\"*/15 * * * *\" is not a cron expression with seconds"), "{e}");
        assert!(CronSchedule::parse("0 61 * * * *").is_err());
    }

    #[test]
    fn daemon_defaults_and_errors_name_the_key() {
        let d = DaemonSettings::default();
        assert_eq!(d.pull_schedule.as_str(), DEFAULT_PULL_SCHEDULE);
        assert_eq!(d.quality_report.as_ref().map(CronSchedule::as_str), Some(DEFAULT_QUALITY_SCHEDULE));
        assert_eq!(d.jitter, Duration::from_secs(60));
        let raw: RawDaemon = toml::from_str("quality_report = \"\"\njitter_seconds = 0").unwrap();
        let d = raw.validate().unwrap();
        assert_eq!((d.quality_report, d.jitter), (None, Duration::ZERO));
        let raw: RawDaemon = toml::from_str("schedule = \"every minute\"").unwrap();
        assert!(raw.validate().unwrap_err().starts_with("daemon.schedule: \"every minute\""));
        let raw: RawDaemon = toml::from_str("shutdown_grace_seconds = 0").unwrap();
        assert_eq!(raw.validate().unwrap_err(), "daemon.shutdown_grace_seconds: must be a number of seconds ≥ 1");
    }

    #[test]
    fn http_section_listen_and_token_sources() {
        let v = |t: &str| toml::from_str::<RawHttp>(t).unwrap().validate(|p| Path::new("/etc/aw").join(p));
        let h = v("").unwrap();
        assert_eq!(h.listen.to_string(), "127.0.0.1:8080");
        assert_eq!((h.token, h.open_health, h.open_metrics, h.open_status_page), (None, true, true, false));
        assert_eq!(v("token_file = \"tok\"").unwrap().token, Some(SecretSource::File("/etc/aw/tok".into())));
        assert_eq!(v("listen = \"[::1]:9\"\ntoken_env = \"T\"").unwrap().token, Some(SecretSource::Env("T".into())));
        assert!(v("listen = \"localhost\"").unwrap_err().starts_with("http.listen:"));
        let e = v("token = \"hunter2-secret\"").unwrap_err();
        assert!(e.starts_with("http.token:") && !e.contains("hunter2"), "{e}");
        assert!(v("token_env = \"A\"\ntoken_file = \"b\"").unwrap_err().contains("not both"));
    }
}
