//! The daemon's one HTTP listener (axum): health, readiness, Prometheus metrics, the JSON API
//! and the status page.
//!
//! The API and the page need the bearer token of `[http]` (`Authorization: Bearer …`, or the
//! cookie the page's sign-in form sets), compared in constant time; health, metrics and the page
//! may be left open by configuration. Without a token configured, what is not open is refused.

use super::page::{self, FeedView, TableQuery};
use super::state::{CycleSnapshot, Shared};
use crate::domain::burndown::BurnDown;
use crate::domain::hours::{HoursByKind, HoursKind, ResourceHours};
use crate::domain::reconciliation::AllocationReport;
use crate::domain::time::rfc3339;
use crate::store::alerts::AlertRow;
use axum::extract::{ConnectInfo, Form, Path, Query, Request, State};
use axum::middleware::Next;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

/// Name of the cookie the sign-in form sets.
const COOKIE: &str = "allocwatch_token";

/// The router over the shared state.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/", get(index))
        .route("/allocations/{centre}/{project}/{resource}", get(allocation_page))
        .route("/login", get(login_form).post(login))
        .route("/api/v1/allocations", get(api_allocations))
        .route("/api/v1/allocations/{centre}/{project}/{resource}", get(api_allocation))
        .route("/api/v1/alerts", get(api_alerts))
        .route("/api/v1/feeds", get(api_feeds))
        .route("/projects/{project}", get(project_page))
        .route("/projects/{project}/daily.csv", get(project_csv))
        .route("/api/v1/projects/{project}", get(api_project))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), links_open_only_their_project))
        .with_state(shared)
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// What a route needs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Health,
    Metrics,
    Page,
    Api,
}

/// The token presented: bearer header first, then the page's cookie.
fn presented(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some(t) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            return Some(t.trim().to_string());
        }
    }
    for v in headers.get_all(header::COOKIE) {
        for part in v.to_str().unwrap_or("").split(';') {
            if let Some((k, val)) = part.trim().split_once('=') {
                if k == COOKIE {
                    return Some(percent_decode(val));
                }
            }
        }
    }
    None
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = ((b[i + 1] as char).to_digit(16), (b[i + 2] as char).to_digit(16)) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Constant-time comparison of the presented token with the configured one.
fn token_matches(presented: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    // Lengths are compared in the open (a token's length is no secret worth the complexity).
    presented.len() == expected.len() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

/// Check access; `Err` is the response to send (401 with a reason, or a redirect to sign in).
fn authorize(shared: &Shared, headers: &HeaderMap, access: Access) -> Result<(), Response> {
    let loaded = shared.loaded();
    let Some(http) = &loaded.config.http else { return Ok(()) };
    let open = match access {
        Access::Health => http.open_health,
        Access::Metrics => http.open_metrics,
        Access::Page => http.open_status_page,
        Access::Api => false,
    };
    if open {
        return Ok(());
    }
    let reason = match (&loaded.http_token, presented(headers)) {
        (None, _) => "no API token is configured ([http] token_env or token_file): this endpoint is closed",
        (Some(_), None) => "a bearer token is required (Authorization: Bearer …)",
        (Some(t), Some(p)) if token_matches(&p, t.expose()) => return Ok(()),
        (Some(_), Some(_)) => "wrong token",
    };
    if access == Access::Page {
        return Err(Redirect::to("/login").into_response());
    }
    let mut r = (StatusCode::UNAUTHORIZED, Json(json!({ "error": reason }))).into_response();
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"allocwatch\""));
    Err(r)
}

macro_rules! guard {
    ($shared:expr, $headers:expr, $access:expr) => {
        if let Err(r) = authorize(&$shared, &$headers, $access) {
            return r;
        }
    };
}

fn no_cycle() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "no reconciliation cycle yet; retry shortly" }))).into_response()
}

async fn healthz(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    guard!(shared, headers, Access::Health);
    Json(json!({ "status": "ok", "stopping": shared.is_stopping() })).into_response()
}

async fn readyz(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    guard!(shared, headers, Access::Health);
    let max_age = shared.loaded().config.daemon.ready_max_cycle_age.as_secs_f64();
    let s = shared.clone();
    let store_ok = tokio::task::spawn_blocking(move || {
        let store = s.api_store.lock().unwrap_or_else(|p| p.into_inner());
        store.ping().map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let last = shared.last_cycle();
    let age = last.as_ref().map(|c| (now() - c.finished_at_s) as f64);
    let problem = if shared.is_stopping() {
        Some("stopping".to_string())
    } else if let Err(e) = &store_ok {
        Some(format!("store: {e}"))
    } else {
        match age {
            None => Some("no cycle yet".into()),
            Some(a) if a > max_age => Some(format!("last cycle finished {a:.0} s ago (limit {max_age:.0} s)")),
            Some(_) => None,
        }
    };
    let body = json!({
        "ready": problem.is_none(),
        "reason": problem,
        "last_cycle": last.as_ref().map(|c| json!({ "id": c.id, "at": rfc3339(c.reconciliation.at), "finished_at": rfc3339(c.finished_at_s) })),
        "last_cycle_age_seconds": age,
    });
    let code = if problem.is_none() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    guard!(shared, headers, Access::Metrics);
    ([(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], shared.metrics.render()).into_response()
}

async fn api_allocations(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    guard!(shared, headers, Access::Api);
    match shared.last_cycle() {
        // Exactly the objects of `check --format json`.
        Some(c) => Json(&c.reconciliation.allocations).into_response(),
        None => no_cycle(),
    }
}

/// Optional `period_start` when a project has several periods of the same resource.
#[derive(serde::Deserialize, Default)]
struct PeriodQuery {
    #[serde(default)]
    period_start: Option<String>,
}

/// The allocation of the last cycle: the one of `period_start`, else the one whose period
/// holds the instant, else the latest.
fn find<'c>(c: &'c CycleSnapshot, centre: &str, project: &str, resource: &str, period: Option<&str>) -> Option<&'c AllocationReport> {
    let mut matching: Vec<&AllocationReport> =
        c.reconciliation.allocations.iter().filter(|a| a.centre == centre && a.project == project && a.resource == resource).collect();
    if let Some(p) = period.filter(|p| !p.is_empty()) {
        return matching.into_iter().find(|a| a.period_start.to_string() == p);
    }
    matching.sort_by_key(|a| a.period_start);
    let at = c.reconciliation.at;
    matching.iter().find(|a| a.start_s <= at && at < a.end_s).copied().or(matching.last().copied())
}

async fn load_burndown(shared: &Arc<Shared>, c: &Arc<CycleSnapshot>, report: &AllocationReport) -> Result<BurnDown, String> {
    let (s, c2, r) = (shared.clone(), c.clone(), report.clone());
    tokio::task::spawn_blocking(move || {
        let mut store = s.api_store.lock().unwrap_or_else(|p| p.into_inner());
        crate::reconcile::burndown::load(&mut store, &c2.loaded.config, &c2.loaded.grants, &r, c2.reconciliation.at).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()))
}

fn not_found(what: String) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": what }))).into_response()
}

fn server_error(e: String) -> Response {
    tracing::error!("HTTP: {e}");
    (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": e }))).into_response()
}

async fn api_allocation(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((centre, project, resource)): Path<(String, String, String)>,
    Query(q): Query<PeriodQuery>,
) -> Response {
    guard!(shared, headers, Access::Api);
    let Some(c) = shared.last_cycle() else { return no_cycle() };
    let Some(report) = find(&c, &centre, &project, &resource, q.period_start.as_deref()) else {
        return not_found(format!("no allocation {project} on {resource} at {centre} in the last cycle"));
    };
    match load_burndown(&shared, &c, report).await {
        Ok(b) => Json(b).into_response(),
        Err(e) => server_error(e),
    }
}

/// `?all=true` includes resolved alerts.
#[derive(serde::Deserialize, Default)]
struct AlertsQuery {
    #[serde(default)]
    all: bool,
}

async fn alerts(shared: &Arc<Shared>, all: bool) -> Result<Vec<AlertRow>, String> {
    let s = shared.clone();
    tokio::task::spawn_blocking(move || {
        let store = s.api_store.lock().unwrap_or_else(|p| p.into_inner());
        store.alerts(all).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()))
}

async fn api_alerts(State(shared): State<Arc<Shared>>, headers: HeaderMap, Query(q): Query<AlertsQuery>) -> Response {
    guard!(shared, headers, Access::Api);
    match alerts(&shared, q.all).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => server_error(e),
    }
}

/// Feeds: per centre, its schedule and job status, and the pull history per source.
async fn feeds(shared: &Arc<Shared>) -> Result<serde_json::Value, String> {
    let s = shared.clone();
    let (health, sources) = tokio::task::spawn_blocking(move || {
        let store = s.api_store.lock().unwrap_or_else(|p| p.into_inner());
        let health = store.centre_feeds().map_err(|e| e.to_string())?;
        let sources = store.feeds().map_err(|e| e.to_string())?;
        Ok::<_, String>((health, sources))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()))?;
    let loaded = shared.loaded();
    let jobs = shared.jobs();
    let t = now();
    let mut out = Vec::new();
    for centre in loaded.config.centres.values() {
        let h = health.iter().find(|h| h.centre == centre.id);
        let job = jobs.get(&super::jobs::pull_job(&centre.id)).cloned().unwrap_or_default();
        let last_success = h.and_then(|h| h.last_success);
        out.push(json!({
            "centre": centre.id,
            "schedule": centre.schedule.as_ref().unwrap_or(&loaded.config.daemon.pull_schedule).as_str(),
            "last_success": last_success.map(rfc3339),
            "seconds_since_last_success": last_success.map(|s| t - s),
            "consecutive_failures": h.map(|h| h.consecutive_failures).unwrap_or(0),
            "last_error": h.and_then(|h| h.last_error.clone()),
            "job": {
                "runs": job.runs,
                "skipped_ticks": job.skipped_ticks,
                "last_started_at": job.last_started_at.map(rfc3339),
                "last_finished_at": job.last_finished_at.map(rfc3339),
                "last_ok": job.last_ok,
                "last_error": job.last_error,
            },
            "sources": sources.iter().filter(|f| f.centre == centre.id).map(|f| json!({
                "source": f.source,
                "last_success": f.last_success.map(rfc3339),
                "last_attempt": f.last_attempt.map(rfc3339),
                "failures": f.failures,
                "records": f.records,
                "rejected": f.rejected,
            })).collect::<Vec<_>>(),
        }));
    }
    Ok(serde_json::Value::Array(out))
}

async fn api_feeds(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    guard!(shared, headers, Access::Api);
    match feeds(&shared).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => server_error(e),
    }
}

fn html(body: String) -> Response {
    let mut r = Html(body).into_response();
    // The page embeds no third-party resource and frames nothing; say so to the browser.
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'"),
    );
    r.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r
}

async fn index(State(shared): State<Arc<Shared>>, headers: HeaderMap, Query(q): Query<TableQuery>) -> Response {
    guard!(shared, headers, Access::Page);
    let Some(c) = shared.last_cycle() else { return html(page::waiting()) };
    let (feeds_json, firing) = match (feeds(&shared).await, alerts(&shared, false).await) {
        (Ok(f), Ok(a)) => (f, a.len()),
        (Err(e), _) | (_, Err(e)) => return server_error(e),
    };
    let feeds: Vec<FeedView> = feeds_json
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| FeedView {
                    centre: f["centre"].as_str().unwrap_or("").to_string(),
                    schedule: f["schedule"].as_str().unwrap_or("").to_string(),
                    last_success: f["seconds_since_last_success"].as_i64().map(|s| now() - s),
                    consecutive_failures: f["consecutive_failures"].as_u64().unwrap_or(0) as u32,
                    last_error: f["last_error"].as_str().map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default();
    html(page::index(&c.reconciliation, c.id, c.finished_at_s, now(), &feeds, firing, &q))
}

async fn allocation_page(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((centre, project, resource)): Path<(String, String, String)>,
    Query(q): Query<PeriodQuery>,
) -> Response {
    guard!(shared, headers, Access::Page);
    let Some(c) = shared.last_cycle() else { return html(page::waiting()) };
    let Some(report) = find(&c, &centre, &project, &resource, q.period_start.as_deref()) else {
        return (StatusCode::NOT_FOUND, Html(format!("<!DOCTYPE html><p>No allocation {} on {} at {}. <a href=\"/\">All allocations</a></p>", page::esc(&project), page::esc(&resource), page::esc(&centre)))).into_response();
    };
    let b = match load_burndown(&shared, &c, report).await {
        Ok(b) => b,
        Err(e) => return server_error(e),
    };
    let subject = report.subject();
    let alerts: Vec<_> = match alerts(&shared, true).await {
        Ok(a) => a.into_iter().filter(|r| r.subject == subject).collect(),
        Err(e) => return server_error(e),
    };
    let adjustments: Vec<(String, f64, String, String)> = c
        .loaded
        .grants
        .adjustments
        .iter()
        .filter(|x| x.allocation == report.index)
        .map(|x| (x.date.to_string(), x.hours, x.kind.as_str().to_string(), x.reason.clone()))
        .collect();
    html(page::allocation(&b, &adjustments, &alerts, c.finished_at_s, now()))
}

async fn login_form() -> Response {
    html(page::login(None))
}

#[derive(serde::Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(shared): State<Arc<Shared>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, Form(f): Form<LoginForm>) -> Response {
    let loaded = shared.loaded();
    let t = now();
    // Failed sign-ins are counted per client address; past the limit, even the right token is
    // refused until the lockout ends (the bearer header keeps working for scripts).
    if let Some(until) = shared.login_limiter.locked_until(peer.ip(), t) {
        let msg = format!(
            "Too many failed sign-ins from your address: signing in is locked until {} ({} minutes after the last failure). The token is in the service's environment file.",
            crate::domain::time::rfc3339(until),
            super::state::LOGIN_LOCKOUT_S / 60
        );
        let mut r = (StatusCode::TOO_MANY_REQUESTS, html(page::login(Some(&msg)))).into_response();
        if let Ok(v) = HeaderValue::from_str(&(until - t).max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    match &loaded.http_token {
        Some(tok) if token_matches(f.token.trim(), tok.expose()) => {
            shared.login_limiter.succeeded(peer.ip());
            // `Secure` when people reach us over https (the public address says so).
            let secure = loaded.config.http.as_ref().and_then(|h| h.public_url.as_deref()).is_some_and(|u| u.starts_with("https://"));
            let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict{}", page::path_segment(f.token.trim()), if secure { "; Secure" } else { "" });
            let mut r = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Some(_) => {
            let left = shared.login_limiter.failed(peer.ip(), t);
            tracing::warn!(client = %peer.ip(), attempts_left = left, "HTTP: failed sign-in");
            let msg = if left == 0 {
                format!("Wrong token. Signing in from your address is now locked for {} minutes.", super::state::LOGIN_LOCKOUT_S / 60)
            } else {
                format!("Wrong token ({left} attempt{} left before a {}-minute lockout).", if left == 1 { "" } else { "s" }, super::state::LOGIN_LOCKOUT_S / 60)
            };
            (StatusCode::UNAUTHORIZED, html(page::login(Some(&msg)))).into_response()
        }
        None => (StatusCode::FORBIDDEN, html(page::login(Some("No API token is configured ([http] token_env or token_file).")))).into_response(),
    }
}

// ---- signed project links --------------------------------------------------------------------

/// The `key=` of a signed link: from the query string, or a bearer token that is one.
fn link_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    for pair in query.unwrap_or("").split('&') {
        if let Some(v) = pair.strip_prefix("key=") {
            return Some(percent_decode(v));
        }
    }
    presented(headers).filter(|t| t.starts_with("v1."))
}

/// The project a path belongs to: `/projects/{p}`, `/projects/{p}/daily.csv`, `/api/v1/projects/{p}`.
fn project_of_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/api/v1/projects/").or_else(|| path.strip_prefix("/projects/"))?;
    let seg = rest.strip_suffix("/daily.csv").unwrap_or(rest);
    (!seg.is_empty() && !seg.contains('/')).then(|| percent_decode(seg))
}

/// Whether the request carries the operations token.
fn operations(shared: &Shared, headers: &HeaderMap) -> bool {
    match (&shared.loaded().http_token, presented(headers)) {
        (Some(t), Some(p)) => token_matches(&p, t.expose()),
        _ => false,
    }
}

/// A refusal: the page (HTML) or `{"error", "reason"}` (JSON, CSV), 403, no data.
fn refused(path: &str, why: &str, code: &str) -> Response {
    refused_with(path, why, code, None)
}

/// A refusal of a valid link on a route that is not its project's, with the way to its own
/// project's page (`href`: path and query, the link's own key).
fn refused_with(path: &str, why: &str, code: &str, href: Option<&str>) -> Response {
    if path.starts_with("/api/") {
        (StatusCode::FORBIDDEN, Json(json!({ "error": why, "reason": code, "project_page": href }))).into_response()
    } else {
        let mut r = html(page::forbidden(why, href));
        *r.status_mut() = StatusCode::FORBIDDEN;
        r.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        r
    }
}

/// The path of a link's own project page.
fn own_page(project: &str, token: &str) -> String {
    format!("/projects/{}?key={}", page::path_segment(project), page::path_segment(token))
}

/// A signed link opens its own project's routes and nothing else: on any other route it gets
/// 403 saying which project it is for (or why it is not valid), whatever that route's
/// openness, unless the operations token comes with it.
async fn links_open_only_their_project(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if let Some(token) = link_token(req.headers(), req.uri().query()) {
        if project_of_path(req.uri().path()).is_none() && !operations(&shared, req.headers()) {
            let loaded = shared.loaded();
            let refusal = match &loaded.links {
                None => crate::links::Refusal::Malformed,
                Some(l) => match l.keyring.granted(&token, now()) {
                    Ok(granted) => crate::links::Refusal::OtherProject { granted },
                    Err(r) => r,
                },
            };
            let href = match &refusal {
                crate::links::Refusal::OtherProject { granted } => Some(own_page(granted, &token)),
                _ => None,
            };
            return refused_with(req.uri().path(), &refusal.explain(), refusal.code(), href.as_deref());
        }
    }
    next.run(req).await
}

/// Who may see a project's routes: the operations token (or an open status page, for the
/// page and CSV), else a valid link for that project. `Ok(Some(key))`: through a link.
fn project_access(shared: &Shared, headers: &HeaderMap, key: Option<&str>, project: &str, path: &str, json_api: bool) -> Result<Option<String>, Response> {
    let loaded = shared.loaded();
    let open_page = !json_api && loaded.config.http.as_ref().is_some_and(|h| h.open_status_page);
    if loaded.config.http.is_none() || operations(shared, headers) || (open_page && key.is_none()) {
        return Ok(None);
    }
    let token = key.map(str::to_string).or_else(|| presented(headers).filter(|t| t.starts_with("v1.")));
    match (token, &loaded.links) {
        (Some(t), Some(l)) => match l.keyring.verify(&t, project, now()) {
            Ok(_) => Ok(Some(t)),
            Err(crate::links::Refusal::OtherProject { granted }) => {
                let r = crate::links::Refusal::OtherProject { granted: granted.clone() };
                Err(refused_with(path, &r.explain(), r.code(), Some(&own_page(&granted, &t))))
            }
            Err(r) => Err(refused(path, &r.explain(), r.code())),
        },
        (Some(_), None) => Err(refused(path, "Signed links are not enabled on this server ([links] is not configured).", "links_disabled")),
        (None, _) => authorize(shared, headers, if json_api { Access::Api } else { Access::Page }).map(|()| None),
    }
}

#[derive(serde::Deserialize, Default)]
struct KeyQuery {
    #[serde(default)]
    key: Option<String>,
}

/// One allocation of a project with what its page shows.
struct ProjectItem {
    burndown: BurnDown,
    alerts: Vec<AlertRow>,
    drivers: crate::alerts::Drivers,
}

/// Every allocation of `project` in the last cycle (centre, resource, period order), each with
/// its burn-down, alerts and drivers (top users and partitions, placed by the one charging rule).
async fn project_items(shared: &Arc<Shared>, c: &Arc<CycleSnapshot>, project: &str) -> Result<Vec<ProjectItem>, String> {
    let mut reports: Vec<AllocationReport> = c.reconciliation.allocations.iter().filter(|a| a.project == project).cloned().collect();
    reports.sort_by(|a, b| (&a.centre, &a.resource, a.period_start).cmp(&(&b.centre, &b.resource, b.period_start)));
    let (s, c2) = (shared.clone(), c.clone());
    tokio::task::spawn_blocking(move || {
        let mut store = s.api_store.lock().unwrap_or_else(|p| p.into_inner());
        let (config, grants, at) = (&c2.loaded.config, &c2.loaded.grants, c2.reconciliation.at);
        let centres: Vec<&crate::domain::centre::Centre> = config.centres.values().map(|c| &c.centre).collect();
        let wanted: std::collections::HashSet<usize> = reports.iter().map(|r| r.index).collect();
        let mut drivers = crate::alerts::drivers_from(|centre, from, to| store.jobs_overlapping(centre, from, to), &centres, grants, &wanted, at).map_err(|e| e.to_string())?;
        let subjects: std::collections::HashSet<String> = reports.iter().map(AllocationReport::subject).collect();
        let mut alerts: Vec<AlertRow> = store.alerts(true).map_err(|e| e.to_string())?.into_iter().filter(|a| subjects.contains(&a.subject)).collect();
        alerts.sort_by_key(|a| (a.state != "firing", std::cmp::Reverse(a.fired_at)));
        let mut out = Vec::new();
        for r in reports {
            let burndown = crate::reconcile::burndown::load(&mut store, config, grants, &r, at).map_err(|e| e.to_string())?;
            let subject = r.subject();
            out.push(ProjectItem {
                alerts: alerts.iter().filter(|a| a.subject == subject).cloned().collect(),
                drivers: drivers.remove(&r.index).unwrap_or_default(),
                burndown,
            });
        }
        Ok(out)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()))
}

/// The project summary: per kind of hours (never added across kinds), over the allocations in
/// effect at the instant: (kind, granted, consumed, remaining, allocations).
fn project_totals(items: &[ProjectItem]) -> Vec<(HoursKind, ResourceHours, ResourceHours, ResourceHours, usize)> {
    let running: Vec<&AllocationReport> = items.iter().map(|i| &i.burndown.allocation).filter(|a| a.is_running()).collect();
    let sum = |f: fn(&AllocationReport) -> ResourceHours| running.iter().map(|a| f(a)).collect::<HoursByKind>();
    let (g, c, r) = (sum(|a| a.granted_hours), sum(|a| a.consumed_hours), sum(|a| a.remaining_hours));
    HoursKind::ALL
        .into_iter()
        .filter_map(|k| {
            let n = running.iter().filter(|a| a.granted_hours.kind() == k).count();
            (n > 0).then(|| (k, g.of(k), c.of(k), r.of(k), n))
        })
        .collect()
}

/// The alert as a researcher sees it: rule, state, severity, title, when (no recipients, no
/// delivery errors).
fn public_alert(a: &AlertRow) -> serde_json::Value {
    json!({ "rule": a.rule, "state": a.state, "severity": a.severity, "title": a.title, "fired_at": rfc3339(a.fired_at), "resolved_at": a.resolved_at.map(rfc3339) })
}

fn no_project(project: &str, path: &str) -> Response {
    let what = format!("no allocation of project {project} in the last cycle");
    if path.starts_with("/api/") {
        not_found(what)
    } else {
        (StatusCode::NOT_FOUND, html(page::forbidden(&what, None))).into_response()
    }
}

/// What every project route does first: check access, take the last cycle, load the project's
/// allocations. `Err` is the response to send (refusal, no cycle yet, no such project).
async fn project_request(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    project: &str,
    key: Option<&str>,
    path: &str,
    json_api: bool,
) -> Result<(Option<String>, Arc<CycleSnapshot>, Vec<ProjectItem>), Response> {
    let key = project_access(shared, headers, key, project, path, json_api)?;
    let Some(c) = shared.last_cycle() else {
        return Err(if path.ends_with(".csv") || json_api { no_cycle() } else { html(page::waiting()) });
    };
    match project_items(shared, &c, project).await {
        Ok(i) if i.is_empty() => Err(no_project(project, path)),
        Ok(i) => Ok((key, c, i)),
        Err(e) => Err(server_error(e)),
    }
}

async fn project_page(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(project): Path<String>, Query(q): Query<KeyQuery>) -> Response {
    let (key, c, items) = match project_request(&shared, &headers, &project, q.key.as_deref(), &format!("/projects/{project}"), false).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let expires = key.as_deref().and_then(crate::links::expiry_of);
    let views: Vec<page::ProjectAllocation<'_>> = items
        .iter()
        .map(|i| page::ProjectAllocation { burndown: &i.burndown, alerts: i.alerts.iter().collect(), users: &i.drivers.users, partitions: &i.drivers.partitions })
        .collect();
    let mut r = html(page::project(&project, &project_totals(&items), &views, c.reconciliation.at, c.finished_at_s, now(), key.as_deref(), expires));
    // A page opened through a link must not leak it through the Referer of the links it has.
    r.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    r
}

async fn api_project(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(project): Path<String>, Query(q): Query<KeyQuery>) -> Response {
    let (_, c, items) = match project_request(&shared, &headers, &project, q.key.as_deref(), &format!("/api/v1/projects/{project}"), true).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let summary: Vec<serde_json::Value> = project_totals(&items)
        .into_iter()
        .map(|(k, g, c, r, n)| json!({ "kind": k.as_str(), "allocations": n, "granted_hours": g.value(), "consumed_hours": c.value(), "remaining_hours": r.value() }))
        .collect();
    let allocations: Vec<serde_json::Value> = items
        .iter()
        .map(|i| {
            let mut v = serde_json::to_value(&i.burndown).unwrap_or_else(|_| json!({}));
            v["kind"] = json!(i.burndown.allocation.granted_hours.kind().as_str());
            v["alerts"] = json!(i.alerts.iter().map(public_alert).collect::<Vec<_>>());
            v["drivers"] = json!({
                "window_days": crate::alerts::DRIVER_WINDOW_DAYS,
                "users": i.drivers.users.iter().map(|(n, h)| json!({ "name": n, "hours": h })).collect::<Vec<_>>(),
                "partitions": i.drivers.partitions.iter().map(|(n, h)| json!({ "name": n, "hours": h })).collect::<Vec<_>>(),
            });
            v
        })
        .collect();
    Json(json!({ "project": project, "at": rfc3339(c.reconciliation.at), "summary": summary, "allocations": allocations })).into_response()
}

/// Daily charged hours per allocation of the project, one row per allocation and local day.
async fn project_csv(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(project): Path<String>, Query(q): Query<KeyQuery>) -> Response {
    let (_, _, items) = match project_request(&shared, &headers, &project, q.key.as_deref(), &format!("/projects/{project}/daily.csv"), false).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(["centre", "project", "resource", "period_start", "unit", "date", "charged_hours", "cumulative_hours"]);
    for i in &items {
        let a = &i.burndown.allocation;
        for d in &i.burndown.daily {
            let _ = w.write_record([
                a.centre.as_str(),
                a.project.as_str(),
                a.resource.as_str(),
                &a.period_start.to_string(),
                a.granted_hours.kind().as_str(),
                &d.date.to_string(),
                &format!("{:.6}", d.hours),
                &format!("{:.6}", d.cumulative_hours),
            ]);
        }
    }
    let body = w.into_inner().unwrap_or_default();
    let name = format!("attachment; filename=\"{}-daily.csv\"", project.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c)).collect::<String>());
    let mut r = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response();
    if let Ok(v) = HeaderValue::from_str(&name) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_header_or_cookie_compared_exactly() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert(header::COOKIE, HeaderValue::from_static("a=b; allocwatch_token=s3cr%2Ft"));
        assert_eq!(presented(&h).as_deref(), Some("s3cr/t"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer  tok "));
        assert_eq!(presented(&h).as_deref(), Some("tok"));
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc") && !token_matches("ab", "abc") && !token_matches("", "abc"));
    }
}
