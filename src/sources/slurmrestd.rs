//! slurmrestd as a live source: `GET /slurmdb/v0.0.NN/jobs?start_time=…&end_time=…` over
//! HTTP (JWT in `X-SLURM-USER-NAME` / `X-SLURM-USER-TOKEN`) or over slurmrestd's unix socket
//! (local authentication, no token). The API version is configured or discovered from the
//! server's OpenAPI document; the job JSON is read by [`super::slurm_json`].
//!
//! Window bounds are sent as `uts<epoch>`, Slurm's time-zone-free syntax (a civil time would
//! be read in slurmrestd's own zone). Tokens are read afresh for every pull (a rotated token
//! file is picked up) or minted by `token_command`; they never appear in messages.

use super::sacct_cmd::run_command;
use super::slurm_json::{self, jobs_endpoints, version_key, SUPPORTED_VERSIONS};
use super::{Fetched, LineError, LiveSource, Parsed, PullKeys, PullSettings, SourceContext, PROBE_WINDOW_S};
use crate::domain::errors::error_chain as chain;
use crate::secret::SecretSource;
use base64::Engine;
use reqwest_unix as reqwest;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Where slurmrestd listens.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// `http://host:port[/prefix]`.
    Http(Url),
    /// slurmrestd's unix socket (`rest_auth/local`).
    Socket(PathBuf),
}

/// Where the JWT comes from (read at every pull; never logged).
#[derive(Debug, Clone, PartialEq)]
pub enum RestToken {
    /// An environment variable or a file (e.g. written by a cron job running `scontrol token`).
    Stored(SecretSource),
    /// A command printing a fresh token (`SLURM_JWT=` prefix accepted), run at every pull.
    Command(Vec<String>),
}

/// A configured slurmrestd source, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RestSource {
    /// Source id, window and timeout.
    pub settings: PullSettings,
    /// URL or unix socket.
    pub endpoint: Endpoint,
    /// `v0.0.38`…`v0.0.45`, or `None` to discover it from `/openapi`.
    pub api_version: Option<String>,
    /// `X-SLURM-USER-NAME`.
    pub user: Option<String>,
    /// `X-SLURM-USER-TOKEN`; none over a unix socket with local authentication.
    pub token: Option<RestToken>,
    /// `cluster=` filter; empty: slurmrestd's default.
    pub clusters: Vec<String>,
}

/// The `[[centre.source]] kind = "slurmrestd"` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRestSource {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    socket: Option<PathBuf>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default)]
    token_command: Option<Vec<String>>,
    #[serde(default = "default_timeout")]
    timeout_seconds: u64,
    #[serde(default = "super::default_overlap_hours")]
    overlap_hours: u64,
    #[serde(default = "super::default_recent_overlap_minutes")]
    recent_overlap_minutes: u64,
    #[serde(default = "super::default_rescan_hours")]
    rescan_hours: u64,
    #[serde(default = "super::default_first_pull_days")]
    first_pull_days: u64,
    #[serde(default)]
    clusters: Vec<String>,
}

fn default_timeout() -> u64 {
    120
}

impl RawRestSource {
    /// The window keys, for [`PullSettings::new`].
    fn pull_keys(&self) -> PullKeys {
        PullKeys {
            timeout_seconds: self.timeout_seconds,
            overlap_hours: self.overlap_hours,
            recent_overlap_minutes: self.recent_overlap_minutes,
            rescan_hours: self.rescan_hours,
            first_pull_days: self.first_pull_days,
        }
    }

    /// Validate; `at` names the table in errors, `resolve` makes relative paths absolute.
    pub fn validate(self, at: &str, resolve: &dyn Fn(&Path) -> PathBuf) -> Result<RestSource, String> {
        let keys = self.pull_keys();
        let settings = PullSettings::new(at, self.name, "slurmrestd", keys)?;
        let endpoint = match (self.url, self.socket) {
            (Some(_), Some(_)) => return Err(format!("{at}: give either url or socket, not both")),
            (None, None) => return Err(format!("{at}.url: required (or socket = \"/path/to/slurmrestd.socket\")")),
            (None, Some(p)) => Endpoint::Socket(resolve(&p)),
            (Some(u), None) => {
                let url = Url::parse(&u).map_err(|e| format!("{at}.url: {u:?} is not a URL: {e}"))?;
                match url.scheme() {
                    "http" => {}
                    "https" => {
                        return Err(format!(
                            "{at}.url: https is not supported by this build (slurmrestd serves plain HTTP); \
                             reach it on loopback, through its unix socket (socket = …) or an SSH tunnel"
                        ))
                    }
                    s => return Err(format!("{at}.url: scheme {s:?} is not http")),
                }
                if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
                    return Err(format!("{at}.url: give only scheme, host, port and an optional path prefix"));
                }
                Endpoint::Http(url)
            }
        };
        let api_version = match self.api_version.as_deref() {
            None | Some("auto") => None,
            Some(v) if SUPPORTED_VERSIONS.contains(&v) => Some(v.to_string()),
            Some(v) => {
                return Err(format!("{at}.api_version: {v:?} is not supported; use \"auto\" or one of {}", SUPPORTED_VERSIONS.join(", ")))
            }
        };
        let token = match (self.token_env, self.token_file, self.token_command) {
            (None, None, None) => None,
            (Some(v), None, None) if !v.is_empty() => Some(RestToken::Stored(SecretSource::Env(v))),
            (None, Some(f), None) => Some(RestToken::Stored(SecretSource::File(resolve(&f)))),
            (None, None, Some(c)) if !c.is_empty() && c.iter().all(|a| !a.is_empty()) => Some(RestToken::Command(c)),
            (Some(_), None, None) => return Err(format!("{at}.token_env: name an environment variable")),
            (None, None, Some(_)) => return Err(format!("{at}.token_command: give the command as a non-empty argv list")),
            _ => return Err(format!("{at}: give at most one of token_env, token_file, token_command")),
        };
        if token.is_some() && self.user.as_deref().is_none_or(str::is_empty) {
            return Err(format!("{at}.user: required with a token (sent as X-SLURM-USER-NAME)"));
        }
        if let Some(i) = self.clusters.iter().position(|c| c.is_empty() || c.contains(',')) {
            return Err(format!("{at}.clusters[{i}]: one cluster name per element"));
        }
        Ok(RestSource { settings, endpoint, api_version, user: self.user, token, clusters: self.clusters })
    }
}

/// Why a request to slurmrestd failed, told apart for `allocwatch doctor` (a pull records only
/// the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    /// No answer: connection refused, timeout, unknown host, no socket.
    Unreachable,
    /// The token could not be read, minted or used before sending (missing, empty, expired).
    NoToken,
    /// The token (or the local credentials) was refused.
    Refused,
    /// The API version is not served there.
    VersionNotServed,
    /// Anything else (an answer that is not job JSON, slurmdbd down behind slurmrestd).
    Other,
}

impl Problem {
    /// How `allocwatch doctor` names it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Problem::Unreachable => "not reachable",
            Problem::NoToken => "no usable token",
            Problem::Refused => "token refused",
            Problem::VersionNotServed => "version not served",
            Problem::Other => "failed",
        }
    }
}

/// A failed request: its kind, and the message a pull records (never a token).
#[derive(Debug)]
pub(crate) struct RestError {
    /// What kind of failure.
    pub problem: Problem,
    /// What failed, naming the server.
    pub message: String,
}

impl RestError {
    fn new(problem: Problem, message: String) -> RestError {
        RestError { problem, message }
    }
}

impl From<String> for RestError {
    fn from(message: String) -> RestError {
        RestError { problem: Problem::Other, message }
    }
}

/// What one pull of slurmrestd returned.
#[derive(Debug)]
pub struct RestFetch {
    /// Jobs, or errors naming the job.
    pub items: Vec<Result<Parsed, LineError>>,
    /// API version used.
    pub api_version: String,
    /// Slurm release, when the server says.
    pub release: Option<String>,
}

impl RestSource {
    /// Where the server is, for messages (`http://…` or `unix:/path`).
    pub fn describe(&self) -> String {
        match &self.endpoint {
            Endpoint::Http(u) => u.as_str().trim_end_matches('/').to_string(),
            Endpoint::Socket(p) => format!("unix:{}", p.display()),
        }
    }

    fn url(&self, path: &str) -> Result<Url, String> {
        let base = match &self.endpoint {
            Endpoint::Http(u) => u.as_str().trim_end_matches('/').to_string(),
            // Over a unix socket the host is not used for routing.
            Endpoint::Socket(_) => "http://localhost".to_string(),
        };
        Url::parse(&format!("{base}{path}")).map_err(|e| format!("bad URL {base}{path}: {e}"))
    }

    fn client(&self) -> Result<reqwest::Client, String> {
        let mut b = reqwest::Client::builder().timeout(self.settings.timeout).no_proxy();
        if let Endpoint::Socket(p) = &self.endpoint {
            b = b.unix_socket(p.as_path());
        }
        b.build().map_err(|e| format!("cannot build the HTTP client: {}", chain(&e)))
    }

    /// Where the token comes from (for messages; never the token).
    pub(crate) fn token_origin(&self) -> String {
        match &self.token {
            None => "no token configured".into(),
            Some(RestToken::Stored(s)) => format!("token from {}", s.describe()),
            Some(RestToken::Command(c)) => format!("token from command `{}`", c.join(" ")),
        }
    }

    /// The current token, read now. Errors never include it.
    async fn token(&self, now: i64) -> Result<Option<String>, String> {
        let raw = match &self.token {
            None => return Ok(None),
            Some(RestToken::Stored(source)) => source.read_as("slurmrestd", "token")?.expose().to_string(),
            Some(RestToken::Command(argv)) => {
                let out = run_command(argv, &[], self.settings.timeout).await.map_err(|e| format!("token_command: {e}"))?;
                String::from_utf8(out).map_err(|_| "token_command: printed something that is not UTF-8".to_string())?
            }
        };
        let token = raw.trim();
        let token = token.strip_prefix("SLURM_JWT=").unwrap_or(token).to_string();
        if token.is_empty() {
            return Err(format!("{} is empty", self.token_origin()));
        }
        if let Some(exp) = jwt_expiry(&token) {
            if exp <= now {
                let when = crate::domain::time::rfc3339(exp);
                return Err(format!(
                    "the {} expired at {when}; renew it (e.g. `scontrol token username=… lifespan=…`) or use token_command",
                    self.token_origin()
                ));
            }
        }
        Ok(Some(token))
    }

    fn headers(&self, token: Option<&str>) -> Result<HeaderMap, String> {
        let mut h = HeaderMap::new();
        if let Some(t) = token {
            let user = self.user.as_deref().unwrap_or("");
            h.insert("X-SLURM-USER-NAME", HeaderValue::from_str(user).map_err(|_| format!("user {user:?} is not a valid header value"))?);
            let mut v = HeaderValue::from_str(t).map_err(|_| format!("the {} is not a valid header value", self.token_origin()))?;
            v.set_sensitive(true);
            h.insert("X-SLURM-USER-TOKEN", v);
        }
        Ok(h)
    }

    /// GET a path; returns the status and body of the answer, or a message that says why
    /// there was none.
    async fn get(&self, client: &reqwest::Client, url: Url, headers: &HeaderMap) -> Result<(StatusCode, Vec<u8>), RestError> {
        let shown = url.to_string();
        let resp = client.get(url).headers(headers.clone()).send().await.map_err(|e| {
            RestError::new(
                Problem::Unreachable,
                if e.is_timeout() {
                    format!("GET {shown}: no answer within {} s", self.settings.timeout.as_secs())
                } else {
                    format!("GET {shown}: {}", chain(&e))
                },
            )
        })?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| RestError::new(Problem::Unreachable, format!("GET {shown}: reading the answer: {}", chain(&e))))?;
        Ok((status, body.to_vec()))
    }

    /// Authentication refused: say which credentials were sent and where they came from
    /// (never the token itself).
    fn auth_refused(&self, how: &str, what: &str, said: &str) -> RestError {
        let why = match (&self.token, &self.endpoint) {
            (None, Endpoint::Http(_)) => "no token is configured (set user and token_env, token_file or token_command)".to_string(),
            (None, Endpoint::Socket(_)) => {
                "slurmrestd refused this process's local credentials (rest_auth/local accepts root and its own user)".to_string()
            }
            _ => format!(
                "the token for user {:?} was refused: missing, expired or wrong ({})",
                self.user.as_deref().unwrap_or(""),
                self.token_origin()
            ),
        };
        RestError::new(Problem::Refused, format!("slurmrestd {} refused authentication ({how}) to {what}: {why}; server said: {said}", self.describe()))
    }

    fn refusal(&self, status: StatusCode, body: &[u8], what: &str) -> RestError {
        let snippet = body_snippet(body);
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => self.auth_refused(&format!("{status}"), what, &snippet),
            StatusCode::NOT_FOUND => RestError::new(
                Problem::VersionNotServed,
                format!(
                    "slurmrestd {} has no {what} (HTTP 404): that API version is not served there (set api_version = \"auto\", \
                     or load its openapi/dbv0.0.NN plugin); server said: {snippet}",
                    self.describe()
                ),
            ),
            _ => {
                let detail = serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|d| slurm_json::decode_jobs(&d, "", "", 0).err())
                    .map(|e| e.trim_start_matches(": ").to_string())
                    .unwrap_or(snippet);
                RestError::new(Problem::Other, format!("slurmrestd {} answered {status} to {what}: {detail}", self.describe()))
            }
        }
    }

    /// The jobs path and its accepted query parameters: configured version (parameters from
    /// `/openapi` when it answers), or the newest supported version the server lists.
    async fn discover(&self, client: &reqwest::Client, headers: &HeaderMap) -> Result<(String, String, Vec<String>), RestError> {
        let mut listed: Option<Vec<(String, String, Vec<String>)>> = None;
        let mut failure = None;
        for path in ["/openapi/v3", "/openapi"] {
            let (status, body) = match self.get(client, self.url(path)?, headers).await {
                Ok(x) => x,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            if status == StatusCode::NOT_FOUND {
                continue;
            }
            if !status.is_success() {
                failure = Some(self.refusal(status, &body, &format!("GET {path}")));
                break;
            }
            let doc: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| format!("slurmrestd {}: invalid JSON from {path}: {e}", self.describe()))?;
            listed = Some(jobs_endpoints(&doc));
            break;
        }
        match (&self.api_version, listed) {
            (Some(v), Some(list)) if !list.is_empty() => list.iter().find(|(lv, _, _)| lv == v).cloned().ok_or_else(|| {
                RestError::new(
                    Problem::VersionNotServed,
                    format!(
                        "slurmrestd {} does not serve api_version {v} (it serves {}); set api_version = \"auto\" or one of those",
                        self.describe(),
                        list.iter().map(|(lv, _, _)| lv.as_str()).collect::<Vec<_>>().join(", ")
                    ),
                )
            }),
            (Some(v), Some(_)) => Ok((v.clone(), format!("/slurmdb/{v}/jobs"), Vec::new())),
            // The configured version is tried even when /openapi is not served.
            (Some(v), None) => Ok((v.clone(), format!("/slurmdb/{v}/jobs"), Vec::new())),
            (None, Some(list)) => {
                let served: Vec<&str> = list.iter().map(|(v, _, _)| v.as_str()).collect();
                list.iter()
                    .filter(|(v, _, _)| SUPPORTED_VERSIONS.contains(&v.as_str()))
                    .max_by_key(|(v, _, _)| version_key(v))
                    .cloned()
                    .ok_or_else(|| {
                        RestError::new(
                            Problem::VersionNotServed,
                            format!(
                                "slurmrestd {} serves no accounting jobs API this allocwatch reads (served: {}; supported: {})",
                                self.describe(),
                                if served.is_empty() { "none".to_string() } else { served.join(", ") },
                                SUPPORTED_VERSIONS.join(", ")
                            ),
                        )
                    })
            }
            (None, None) => Err(failure.unwrap_or_else(|| {
                RestError::new(
                    Problem::VersionNotServed,
                    format!("slurmrestd {}: no OpenAPI document at /openapi/v3 or /openapi to discover the API version (set api_version)", self.describe()),
                )
            })),
        }
    }

    /// Fetch the jobs of `[from, to)` (epoch seconds).
    pub async fn jobs(&self, from: i64, to: i64, ctx: &SourceContext) -> Result<RestFetch, String> {
        self.query(from, to, ctx).await.map_err(|e| e.message)
    }

    /// Since Slurm 23.11, slurmrestd answers a token slurmdbd refuses with HTTP 502 and error
    /// 7000 ("Unable to connect to database"), as it answers slurmdbd being down. 24.11 adds
    /// "authentication error" to the error's description; 26.05 does not, so then ask
    /// slurmctld's ping with the same token, which names an authentication error when the
    /// token is at fault. Returns how the refusal was told apart; `None` when the token is
    /// not the cause or nothing can tell.
    async fn token_refused_behind(&self, client: &reqwest::Client, headers: &HeaderMap, version: &str, body: &[u8]) -> Option<String> {
        self.token.as_ref()?;
        let doc: serde_json::Value = serde_json::from_slice(body).ok()?;
        let said = slurm_json::find_error(&doc, slurm_json::DB_CONNECTION_ERROR)?;
        if said.to_ascii_lowercase().contains("authentication") {
            return Some(format!("error {}: {said}", slurm_json::DB_CONNECTION_ERROR));
        }
        let (status, ping) = self.get(client, self.url(&format!("/slurm/{version}/ping/")).ok()?, headers).await.ok()?;
        if !status.is_success() {
            return None;
        }
        let ping = slurm_json::ping_refused_credentials(&serde_json::from_slice(&ping).ok()?)?;
        Some(format!("and slurmctld's ping with the same token said \"{ping}\""))
    }

    /// [`RestSource::jobs`], with the kind of failure kept.
    async fn query(&self, from: i64, to: i64, ctx: &SourceContext) -> Result<RestFetch, RestError> {
        let token = self.token(ctx.observed_at).await.map_err(|m| RestError::new(Problem::NoToken, m))?;
        let headers = self.headers(token.as_deref())?;
        let client = self.client()?;
        let (version, path, params) = self.discover(&client, &headers).await?;
        let mut url = self.url(&path)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("start_time", &format!("uts{from}"));
            q.append_pair("end_time", &format!("uts{to}"));
            if !self.clusters.is_empty() {
                q.append_pair("cluster", &self.clusters.join(","));
            }
            // Steps are not charged; every run of a requeued job is (sacct -D).
            if params.iter().any(|p| p == "skip_steps") {
                q.append_pair("skip_steps", "true");
            }
            if params.iter().any(|p| p == "show_duplicates") {
                q.append_pair("show_duplicates", "true");
            }
        }
        let (status, body) = self.get(&client, url, &headers).await?;
        if !status.is_success() {
            let refused = self.refusal(status, &body, &format!("GET {path}"));
            return Err(match self.token_refused_behind(&client, &headers, &version, &body).await {
                Some(why) => self.auth_refused(&format!("{status}, {why}"), &format!("GET {path}"), &refused.message),
                None => refused,
            });
        }
        let decoded = self.read_jobs(&body, &path, ctx)?;
        Ok(RestFetch { items: decoded.items, api_version: version, release: decoded.release })
    }

    /// Read the body of a 2xx answer to the jobs query.
    fn read_jobs(&self, body: &[u8], path: &str, ctx: &SourceContext) -> Result<slurm_json::JobsDocument, RestError> {
        let name = format!("slurmrestd {} {path}", self.describe());
        let doc: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("{name}: invalid JSON: {e}; answer starts with: {}", body_snippet(body)))?;
        // A wrong or expired JWT is not refused by slurmrestd itself (HTTP 200) but by
        // slurmdbd, which it asks on the token's behalf.
        if let Some(e) = slurm_json::find_error(&doc, slurm_json::AUTHENTICATION_ERROR) {
            return Err(self.auth_refused(
                &format!("401 Unauthorized, reported as Slurm error {}", slurm_json::AUTHENTICATION_ERROR),
                &format!("GET {path}"),
                &e,
            ));
        }
        Ok(slurm_json::decode_jobs(&doc, &name, &ctx.default_cluster, ctx.observed_at)?)
    }

    /// [`LiveSource::probe`]: the jobs query of a pull over the last minute, with the
    /// configured endpoint, version, token and timeout; a failure is named by its kind.
    async fn probe_now(&self, ctx: &SourceContext) -> Result<String, String> {
        let now = ctx.observed_at;
        let f = self.query(now - PROBE_WINDOW_S, now, ctx).await.map_err(|e| format!("{}: {}", e.problem.as_str(), e.message))?;
        let version = match &self.api_version {
            Some(_) => format!("{} (configured)", f.api_version),
            None => format!("{} (discovered from /openapi)", f.api_version),
        };
        let release = f.release.map(|r| format!(", Slurm {r}")).unwrap_or_default();
        let auth = match (&self.token, &self.endpoint) {
            (Some(_), _) => format!("token of user {:?} accepted ({})", self.user.as_deref().unwrap_or(""), self.token_origin()),
            (None, Endpoint::Socket(_)) => "local authentication accepted".to_string(),
            (None, Endpoint::Http(_)) => "no token needed".to_string(),
        };
        Ok(format!("answers at {version}{release}, {auth}; {} in the last minute", super::probe_summary(&f.items)))
    }
}

impl LiveSource for RestSource {
    fn settings(&self) -> &PullSettings {
        &self.settings
    }

    fn describe(&self) -> String {
        RestSource::describe(self)
    }

    fn plan(&self, _now: i64, _tz: &jiff::tz::TimeZone) -> String {
        format!("GET {} /slurmdb/{}/jobs, {}", RestSource::describe(self), self.api_version.as_deref().unwrap_or("(version from /openapi)"), self.token_origin())
    }

    fn fetch<'a>(&'a self, from: i64, to: i64, ctx: &'a SourceContext) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Fetched, String>> + Send + 'a>> {
        Box::pin(async move {
            let f = self.jobs(from, to, ctx).await?;
            let release = f.release.map(|r| format!(", Slurm {r}")).unwrap_or_default();
            Ok(Fetched { items: f.items, origin: format!("{} {}{release}", RestSource::describe(self), f.api_version) })
        })
    }

    fn probe<'a>(&'a self, ctx: &'a SourceContext) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + 'a>> {
        Box::pin(self.probe_now(ctx))
    }
}

/// The `exp` claim of a JWT (epoch seconds), if it is one. Read only to give a clear message
/// before sending an expired token; the signature is slurmrestd's business.
pub(crate) fn jwt_expiry(token: &str) -> Option<i64> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_i64()
}

/// The first 300 characters of an answer, on one line.
fn body_snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.is_empty() {
        return "(empty answer)".into();
    }
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(p: &Path) -> PathBuf {
        Path::new("/etc/aw").join(p)
    }

    fn parse(s: &str) -> Result<RestSource, String> {
        toml::from_str::<RawRestSource>(s).map_err(|e| e.to_string())?.validate("centre[0].source[0]", &resolve)
    }

    #[test]
    fn config_forms_and_errors_name_the_key() {
        let s = parse("url = \"http://127.0.0.1:6820/\"\nuser = \"root\"\ntoken_file = \"jwt\"").unwrap();
        assert_eq!(s.token, Some(RestToken::Stored(SecretSource::File(PathBuf::from("/etc/aw/jwt")))));
        assert_eq!(s.describe(), "http://127.0.0.1:6820");
        assert_eq!(s.url("/slurmdb/v0.0.38/jobs").unwrap().as_str(), "http://127.0.0.1:6820/slurmdb/v0.0.38/jobs");
        let s = parse("url = \"http://gw.example/slurm\"\napi_version = \"v0.0.41\"").unwrap();
        assert_eq!(s.url("/openapi").unwrap().as_str(), "http://gw.example/slurm/openapi");
        assert_eq!(s.api_version.as_deref(), Some("v0.0.41"));
        let s = parse("socket = \"run/rest.sock\"").unwrap();
        assert_eq!(s.describe(), "unix:/etc/aw/run/rest.sock");
        assert_eq!(parse("user = \"x\"").unwrap_err(), "centre[0].source[0].url: required (or socket = \"/path/to/slurmrestd.socket\")");
        assert!(parse("url = \"https://x\"").unwrap_err().starts_with("centre[0].source[0].url: https is not supported"));
        assert!(parse("url = \"http://x\"\napi_version = \"v0.0.39\"").unwrap_err().contains("api_version: \"v0.0.39\" is not supported"));
        assert_eq!(parse("url = \"http://x\"\ntoken_env = \"T\"").unwrap_err(), "centre[0].source[0].user: required with a token (sent as X-SLURM-USER-NAME)");
        assert!(parse("url = \"http://x\"\nuser = \"u\"\ntoken_env = \"T\"\ntoken_file = \"f\"").unwrap_err().contains("at most one of"));
        assert!(parse("url = \"http://x\"\nsocket = \"s\"").unwrap_err().contains("either url or socket"));
        assert!(parse("url = \"http://x\"\ntimeout_seconds = 0").unwrap_err().contains("timeout_seconds"));
        assert!(parse("url = \"http://x\"\ntoken = \"secret\"").unwrap_err().contains("unknown field `token`"));
    }

    #[test]
    fn answers_that_are_not_job_json_or_refuse_the_token_are_explained() {
        let s = parse("url = \"http://127.0.0.1:6820\"\nuser = \"root\"\ntoken_env = \"T\"").unwrap();
        let ctx = SourceContext { tz: jiff::tz::TimeZone::UTC, default_cluster: "c".into(), observed_at: 0 };
        let e = s.read_jobs(b"<html>502 Bad Gateway</html>", "/slurmdb/v0.0.38/jobs", &ctx).unwrap_err().message;
        assert!(e.starts_with("slurmrestd http://127.0.0.1:6820 /slurmdb/v0.0.38/jobs: invalid JSON: expected value"), "{e}");
        assert!(e.contains("answer starts with: <html>502 Bad Gateway</html>"), "{e}");
        let refused = br#"{"errors": [{"error_number": 1007, "error": "Protocol authentication error"}], "jobs": []}"#;
        let e = s.read_jobs(refused, "/slurmdb/v0.0.38/jobs", &ctx).unwrap_err();
        assert_eq!(e.problem, Problem::Refused);
        let e = e.message;
        assert!(e.contains("refused authentication (401 Unauthorized, reported as Slurm error 1007)"), "{e}");
        assert!(e.contains("token for user \"root\" was refused") && e.contains("environment variable T"), "{e}");
        let down = br#"{"errors": [{"error_number": 7000, "error": "Unable to connect to database", "description": "Failed connecting to slurmdbd"}], "jobs": []}"#;
        let e = s.read_jobs(down, "/slurmdb/v0.0.38/jobs", &ctx).unwrap_err().message;
        assert!(e.contains("Failed connecting to slurmdbd (Unable to connect to database)"), "{e}");
        let e = s.refusal(StatusCode::NOT_FOUND, b"Unable find requested URL.", "GET /slurmdb/v0.0.44/jobs");
        assert_eq!(e.problem, Problem::VersionNotServed);
        let e = e.message;
        assert!(e.contains("has no GET /slurmdb/v0.0.44/jobs (HTTP 404): that API version is not served there"), "{e}");
    }

    #[test]
    fn jwt_expiry_is_read_from_the_payload() {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let t = format!("{}.{}.sig", b64(r#"{"alg":"HS256","typ":"JWT"}"#), b64(r#"{"exp":1795257000,"iat":1795253400,"sun":"root"}"#));
        assert_eq!(jwt_expiry(&t), Some(1795257000));
        assert_eq!(jwt_expiry("opaque-token"), None);
        assert_eq!(jwt_expiry("a.b.c"), None);
    }

    #[test]
    fn expired_or_missing_tokens_are_named_but_never_shown() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let secret = format!("{}.{}.SECRETSIG", b64("{}"), b64(r#"{"exp":1000}"#));
        std::fs::write(dir.path().join("jwt"), format!("SLURM_JWT={secret}\n")).unwrap();
        let s = parse(&format!("url = \"http://x\"\nuser = \"root\"\ntoken_file = \"{}\"", dir.path().join("jwt").display())).unwrap();
        let e = rt.block_on(s.token(2000)).unwrap_err();
        assert!(e.contains("expired at 1970-01-01T00:16:40Z") && e.contains("token from file"), "{e}");
        assert!(!e.contains("SECRETSIG"));
        assert_eq!(rt.block_on(s.token(500)).unwrap().as_deref(), Some(secret.as_str()));
        let s = parse("url = \"http://x\"\nuser = \"root\"\ntoken_env = \"ALLOCWATCH_TEST_SURELY_UNSET\"").unwrap();
        assert!(rt.block_on(s.token(0)).unwrap_err().contains("ALLOCWATCH_TEST_SURELY_UNSET is not set"));
        let s = parse("url = \"http://x\"\nuser = \"root\"\ntoken_command = [\"echo\", \"SLURM_JWT=abc\"]").unwrap();
        assert_eq!(rt.block_on(s.token(0)).unwrap().as_deref(), Some("abc"));
    }
}
