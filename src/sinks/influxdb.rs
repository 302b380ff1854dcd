//! The InfluxDB 2 sink: the `influxdb2` crate behind [`IndicatorSink`], and its `[influxdb]`
//! configuration section.
//!
//! The crate (0.5.2) has no timeout, retry or batching: every write here is wrapped in a
//! timeout, and retries and batching belong to the outbox writer. Its line-protocol writer
//! would emit NaN and inf and leave backslashes in string fields unescaped: we render lines
//! ourselves ([`crate::sinks::Point::line_protocol`]) and hand it finished text.
//!
//! TLS is rustls with both the bundled Mozilla roots (InfluxDB Cloud) and the system's
//! certificate store (a centre's internal CA in `/etc/ssl/certs`).

use super::{IndicatorSink, SinkError, SinkErrorKind};
use crate::domain::errors::error_chain;
use crate::secret::SecretSource;
use influxdb2::api::write::TimestampPrecision;
use influxdb2::models::WriteDataPoint;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default outbox bound: 7 days of 15-minute cycles (672) at about 1,500 points per cycle
/// (about 1,400 allocations plus feeds and orphan rows), roughly 250 MB of store.
pub(crate) const DEFAULT_MAX_OUTBOX_POINTS: u64 = 1_000_000;

/// The `[influxdb]` section as written (validated into [`InfluxConfig`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInfluxConfig {
    url: String,
    org: String,
    bucket: String,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    token_file: Option<PathBuf>,
    /// Accepted only to be refused without echoing it (an unknown-field error would quote the
    /// line, token included).
    #[serde(default)]
    token: Option<serde::de::IgnoredAny>,
    #[serde(default = "default_timeout")]
    timeout_seconds: f64,
    #[serde(default = "default_batch")]
    batch_size: usize,
    #[serde(default = "default_max_points")]
    max_outbox_points: u64,
    #[serde(default = "default_true")]
    gzip: bool,
    #[serde(default = "default_backoff_initial")]
    backoff_initial_seconds: f64,
    #[serde(default = "default_backoff_max")]
    backoff_max_seconds: f64,
}

fn default_timeout() -> f64 {
    10.0
}
fn default_batch() -> usize {
    5000
}
fn default_max_points() -> u64 {
    DEFAULT_MAX_OUTBOX_POINTS
}
fn default_true() -> bool {
    true
}
fn default_backoff_initial() -> f64 {
    1.0
}
fn default_backoff_max() -> f64 {
    300.0
}

/// The validated `[influxdb]` section. Its absence disables the sink (and the outbox).
#[derive(Debug, Clone, PartialEq)]
pub struct InfluxConfig {
    /// Server root URL (`https://…`, no path).
    pub url: String,
    /// Organisation.
    pub org: String,
    /// Bucket.
    pub bucket: String,
    /// Where the token comes from.
    pub token: SecretSource,
    /// Bound on one write request, connection included.
    pub timeout: Duration,
    /// Points per request.
    pub batch_size: usize,
    /// Outbox bound: beyond it the oldest points are dropped, loudly.
    pub max_outbox_points: u64,
    /// Compress request bodies.
    pub gzip: bool,
    /// First retry delay after a failure.
    pub backoff_initial: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

impl RawInfluxConfig {
    /// Validate; `resolve` makes a relative `token_file` relative to the configuration file.
    /// Errors name the key.
    pub fn validate(self, resolve: impl Fn(&Path) -> PathBuf) -> Result<InfluxConfig, String> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| format!("influxdb.url: {:?} is not a URL: {e}", self.url))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err("influxdb.url: use http://HOST[:PORT] or https://HOST[:PORT]".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            // URLs end up in logs; credentials belong in token_env or token_file.
            return Err("influxdb.url: must not carry credentials; use token_env or token_file".into());
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            // The client replaces the path with /api/v2/write: a prefix would be silently lost.
            return Err("influxdb.url: give the server root only (no path, query or fragment)".into());
        }
        if self.org.is_empty() {
            return Err("influxdb.org: must not be empty".into());
        }
        if self.bucket.is_empty() {
            return Err("influxdb.bucket: must not be empty".into());
        }
        if self.token.is_some() {
            return Err("influxdb.token: a token is never written in the configuration; put it in the \
                        environment (token_env) or a file readable only by allocwatch (token_file)"
                .into());
        }
        let Some(token) = SecretSource::from_keys("influxdb", "token", self.token_env, self.token_file.map(|p| resolve(&p)))? else {
            return Err("influxdb.token_env: name the environment variable holding the API token (or set token_file); \
                        a token is never written in the configuration"
                .into());
        };
        let positive = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 && v <= 86_400.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(format!("influxdb.{key}: must be a number of seconds in (0, 86400]"))
            }
        };
        let timeout = positive("timeout_seconds", self.timeout_seconds)?;
        let backoff_initial = positive("backoff_initial_seconds", self.backoff_initial_seconds)?;
        let backoff_max = positive("backoff_max_seconds", self.backoff_max_seconds)?;
        if backoff_max < backoff_initial {
            return Err("influxdb.backoff_max_seconds: must be at least backoff_initial_seconds".into());
        }
        if !(1..=100_000).contains(&self.batch_size) {
            return Err("influxdb.batch_size: must be between 1 and 100000 points".into());
        }
        if self.max_outbox_points < self.batch_size as u64 {
            return Err("influxdb.max_outbox_points: must be at least batch_size".into());
        }
        Ok(InfluxConfig {
            url: url.as_str().trim_end_matches('/').to_string(),
            org: self.org,
            bucket: self.bucket,
            token,
            timeout,
            batch_size: self.batch_size,
            max_outbox_points: self.max_outbox_points,
            gzip: self.gzip,
            backoff_initial,
            backoff_max,
        })
    }
}

/// Writes to InfluxDB 2's `/api/v2/write` through the `influxdb2` client.
#[derive(Debug)]
pub struct InfluxSink {
    client: influxdb2::Client,
    org: String,
    bucket: String,
    timeout: Duration,
    gzip: bool,
    target: String,
}

/// A whole batch as one "data point" for the crate's streaming (gzip) write path: it writes
/// our already rendered lines verbatim.
struct Body(String);

impl WriteDataPoint for Body {
    fn write_data_point_to<W: std::io::Write>(&self, mut w: W) -> std::io::Result<()> {
        w.write_all(self.0.as_bytes())
    }
}

impl InfluxSink {
    /// Build the client (reads the token now; errors name the key, never the token).
    pub fn new(cfg: &InfluxConfig) -> Result<InfluxSink, String> {
        let token = cfg.token.read_as("influxdb", "token")?.expose().to_string();
        let http = reqwest::Client::builder().connect_timeout(cfg.timeout).timeout(cfg.timeout);
        let mut builder = influxdb2::ClientBuilder::with_builder(http, cfg.url.clone(), cfg.org.clone(), token);
        if cfg.gzip {
            // The crate turns gzip on whatever the argument: only call it when wanted.
            builder = builder.gzip(true);
        }
        let client = builder.build().map_err(|e| format!("influxdb: cannot build the HTTP client: {e}"))?;
        Ok(InfluxSink {
            client,
            org: cfg.org.clone(),
            bucket: cfg.bucket.clone(),
            timeout: cfg.timeout,
            gzip: cfg.gzip,
            target: format!("{} bucket {}", cfg.url, cfg.bucket),
        })
    }
}

/// Map the crate's error to a retry policy.
fn classify(e: influxdb2::RequestError) -> Result<(), SinkError> {
    use influxdb2::RequestError as E;
    let (kind, message) = match e {
        E::Http { status, text } => {
            let code = status.as_u16();
            if status.is_success() {
                // The crate wants exactly 204; any 2xx means the server took the points.
                return Ok(());
            }
            let kind = match code {
                400 | 413 | 422 => SinkErrorKind::Rejected,
                _ => SinkErrorKind::Transient,
            };
            let hint = match code {
                401 | 403 => " (check the token and its write permission on the bucket)",
                404 => " (check influxdb.org and influxdb.bucket)",
                _ => "",
            };
            let text: String = text.trim().chars().take(500).collect();
            (kind, format!("HTTP {code}: {text}{hint}"))
        }
        E::ReqwestProcessing { source } => (SinkErrorKind::Transient, format!("request failed: {}", error_chain(&source))),
        other => (SinkErrorKind::Transient, other.to_string()),
    };
    Err(SinkError { kind, message })
}

impl IndicatorSink for InfluxSink {
    async fn write_lines(&self, lines: &[String]) -> Result<(), SinkError> {
        let mut body = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines {
            body.push_str(l);
            body.push('\n');
        }
        let precision = TimestampPrecision::Nanoseconds;
        let timed_out = || SinkError {
            kind: SinkErrorKind::Transient,
            message: format!("no answer within {} s", self.timeout.as_secs_f64()),
        };
        let result = if self.gzip {
            // Only the crate's stream path compresses; our whole batch is one item of it.
            let stream = futures_util::stream::iter(vec![Body(body)]);
            tokio::time::timeout(self.timeout, self.client.write_with_precision(&self.bucket, stream, precision))
                .await
                .map_err(|_| timed_out())?
        } else {
            tokio::time::timeout(
                self.timeout,
                self.client.write_line_protocol_with_precision(&self.org, &self.bucket, body, precision),
            )
            .await
            .map_err(|_| timed_out())?
        };
        match result {
            Ok(()) => Ok(()),
            // The HTTP client's own timeout is the same bound and may fire in the same instant
            // as ours: one timeout, one message, whichever timer won.
            Err(influxdb2::RequestError::ReqwestProcessing { source }) if source.is_timeout() => Err(timed_out()),
            Err(e) => classify(e),
        }
    }

    fn target(&self) -> String {
        self.target.clone()
    }
}

/// The measurement `allocwatch doctor` writes its one probe point to (named in README.md and
/// the example configuration): never one of the indicators' measurements.
pub(crate) const PROBE_MEASUREMENT: &str = "allocwatch_doctor";

/// The probe point at `now` (epoch seconds): tag `version`, field `probe=1i`.
fn probe_point(now: i64) -> super::Point {
    super::Point::at_second(PROBE_MEASUREMENT, now).tag("version", env!("CARGO_PKG_VERSION")).integer("probe", 1)
}

/// Whether the bucket accepts a write (`allocwatch doctor`): one point of
/// [`PROBE_MEASUREMENT`], sent straight through the client the outbox writer uses (same
/// token source, gzip setting and timeout), never through the outbox. `Err` says why, naming
/// where the token comes from, never the token.
pub(crate) async fn probe(cfg: &InfluxConfig, now: i64) -> Result<String, String> {
    let sink = InfluxSink::new(cfg)?;
    let line = probe_point(now).line_protocol().line.ok_or("the probe point rendered empty")?;
    sink.write_lines(&[line]).await.map_err(|e| format!("write refused or failed: {} (token from {})", e.message, cfg.token.describe()))?;
    Ok(format!("accepted one point of measurement {PROBE_MEASUREMENT} (org {}, token from {})", cfg.org, cfg.token.describe()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<InfluxConfig, String> {
        let raw: RawInfluxConfig = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        raw.validate(|p| Path::new("/etc/aw").join(p))
    }

    const OK: &str = "url = \"https://eu.example.org/\"\norg = \"ops\"\nbucket = \"aw\"\ntoken_env = \"AW_TOKEN\"\n";

    #[test]
    fn defaults_and_validation() {
        let c = parse(OK).unwrap();
        assert_eq!(c.url, "https://eu.example.org");
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!((c.batch_size, c.max_outbox_points, c.gzip), (5000, DEFAULT_MAX_OUTBOX_POINTS, true));
        assert_eq!(c.token, SecretSource::Env("AW_TOKEN".into()));
        let c = parse(&OK.replace("token_env = \"AW_TOKEN\"", "token_file = \"tok\"")).unwrap();
        assert_eq!(c.token, SecretSource::File("/etc/aw/tok".into()));
        for (bad, key) in [
            (OK.replace("https://eu.example.org/", "https://u:p@eu.example.org"), "influxdb.url"),
            (OK.replace("https://eu.example.org/", "https://eu.example.org/influx"), "influxdb.url"),
            (OK.replace("https://eu.example.org/", "ftp://x"), "influxdb.url"),
            (OK.replace("token_env = \"AW_TOKEN\"\n", ""), "influxdb.token_env"),
            (format!("{OK}token_file = \"t\"\n"), "not both"),
            (format!("{OK}timeout_seconds = 0\n"), "influxdb.timeout_seconds"),
            (format!("{OK}batch_size = 0\n"), "influxdb.batch_size"),
            (format!("{OK}batch_size = 10\nmax_outbox_points = 5\n"), "influxdb.max_outbox_points"),
            (format!("{OK}backoff_initial_seconds = 10\nbackoff_max_seconds = 5\n"), "backoff_max_seconds"),
            (format!("{OK}token = \"s3cret\"\n"), "influxdb.token: a token is never written"),
            (format!("{OK}tokn = 1\n"), "unknown field `tokn`"),
        ] {
            let e = parse(&bad).unwrap_err();
            assert!(e.contains(key), "{bad}: {e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn token_errors_never_show_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "  sekrit-token\n").unwrap();
        assert_eq!(SecretSource::File(f.clone()).read_as("influxdb", "token").unwrap().expose(), "sekrit-token");
        std::fs::write(&f, " \n").unwrap();
        let e = SecretSource::File(f).read_as("influxdb", "token").unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = SecretSource::Env("AW_SURELY_UNSET_VARIABLE_4".into()).read_as("influxdb", "token").unwrap_err();
        assert!(e.contains("influxdb.token_env") && e.contains("AW_SURELY_UNSET_VARIABLE_4"), "{e}");
    }

    #[test]
    fn the_probe_point_is_one_line_of_its_own_measurement() {
        let line = probe_point(1_795_253_728).line_protocol().line.unwrap();
        assert_eq!(line, format!("allocwatch_doctor,version={} probe=1i 1795253728000000000", env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn status_classes() {
        let http = |code: u16| {
            classify(influxdb2::RequestError::Http { status: reqwest::StatusCode::from_u16(code).unwrap(), text: "x".into() })
        };
        assert_eq!(http(200), Ok(()));
        assert_eq!(http(204), Ok(()));
        for c in [400, 413, 422] {
            assert_eq!(http(c).unwrap_err().kind, SinkErrorKind::Rejected, "{c}");
        }
        for c in [401, 403, 404, 429, 500, 503] {
            assert_eq!(http(c).unwrap_err().kind, SinkErrorKind::Transient, "{c}");
        }
        assert!(http(401).unwrap_err().message.contains("token"));
    }
}
