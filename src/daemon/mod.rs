//! `allocwatch run`: the daemon operators install.
//!
//! - **Schedule** (tokio-cron-scheduler, UTC): each centre's sources are pulled on the centre's
//!   `schedule` (default `[daemon] schedule`), after a random jitter; a job never overlaps
//!   itself (the tick is skipped and counted); each centre's pull runs on its own blocking
//!   thread with its own store connection, so one centre's slowness or failure delays no other.
//!   Every pull is followed by a reconciliation ([`jobs::reconciler`]: requests that arrive
//!   while a cycle runs are served by the next one). The quality report
//!   ([`crate::quality::run_scheduled`]) has its own schedule.
//! - **Life cycle**: one [`ShutdownSignal`] reaches every task. SIGTERM/SIGINT move it to
//!   *stopping* (no new work; pulls and the cycle in flight finish within
//!   `shutdown_grace_seconds` — what does not is abandoned: its transaction never commits), then
//!   to *draining* (a last delivery pass of both outboxes, the listener closes), and exit 0. SIGHUP reloads the
//!   configuration and allocation files; a bad one is refused, logged, and the old one keeps
//!   running. systemd `Type=notify` readiness, reload and stop notices, and watchdog.
//! - **HTTP** ([`http`]): health, readiness, metrics, JSON API and the status page ([`page`]).
//!
//! Never here: business logic (reconciliation, alert rules): this module schedules and serves.

mod http;
mod jobs;
pub mod metrics;
pub mod page;
mod state;
mod systemd;

use crate::shutdown::{Shutdown, ShutdownSignal};
use crate::sinks::outbox::{PassObserver, Writer};
use crate::store::Store;
use jobs::Trigger;
use state::{Loaded, Shared};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_cron_scheduler::{Job, JobScheduler};
use uuid::Uuid;

/// What `run` is given.
pub struct RunOptions {
    /// Configuration file (re-read on SIGHUP).
    pub config_path: PathBuf,
    /// `--store`, overriding the configured store.
    pub store_override: Option<PathBuf>,
}

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad configuration, allocation file or secret (the command line exits with 2).
    #[error("{0}")]
    Config(String),
    /// Runtime failure: store, listener, scheduler (exit code 1).
    #[error("{0}")]
    Runtime(String),
}

fn runtime(e: impl std::fmt::Display) -> RunError {
    RunError::Runtime(e.to_string())
}

/// Run the daemon until SIGTERM/SIGINT (then `Ok`: exit 0).
pub fn run(opts: RunOptions) -> Result<(), RunError> {
    let loaded = Loaded::load(&opts.config_path, opts.store_override.as_deref()).map_err(RunError::Config)?;
    // Two workers: HTTP and the scheduler stay responsive while store work runs on blocking
    // threads (one per pull in flight, one for the cycle).
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("allocwatch").enable_all().build().map_err(runtime)?;
    let result = rt.block_on(serve(opts, loaded));
    // Blocking work still running past the grace period is abandoned here: a pull or cycle
    // cut off this way never commits its transaction, so the store holds no half of it.
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Install one job per centre (and the quality report, and the researchers' digest); returns
/// their ids.
async fn install_jobs(sched: &JobScheduler, shared: &Arc<Shared>) -> Result<Vec<Uuid>, String> {
    let loaded = shared.loaded();
    let config = &loaded.config;
    let mut ids = Vec::new();
    for centre in config.centres.values() {
        let expr = centre.schedule.as_ref().unwrap_or(&config.daemon.pull_schedule).as_str().to_string();
        let (s, id) = (shared.clone(), centre.id.clone());
        let job = Job::new_async(expr.as_str(), move |_, _| {
            let (s, id) = (s.clone(), id.clone());
            Box::pin(async move { jobs::centre_tick(s, id, Trigger::Schedule).await })
        })
        .map_err(|e| format!("centre {}: schedule {expr:?}: {e}", centre.id))?;
        shared.with_job(&jobs::pull_job(&centre.id), |j| j.schedule = expr.clone());
        ids.push(sched.add(job).await.map_err(|e| e.to_string())?);
    }
    if let Some(expr) = &config.daemon.quality_report {
        let s = shared.clone();
        let job = Job::new_async(expr.as_str(), move |_, _| {
            let s = s.clone();
            Box::pin(async move { jobs::quality_tick(s).await })
        })
        .map_err(|e| format!("daemon.quality_report {:?}: {e}", expr.as_str()))?;
        shared.with_job(jobs::QUALITY_JOB, |j| j.schedule = expr.as_str().to_string());
        ids.push(sched.add(job).await.map_err(|e| e.to_string())?);
    }
    if let Some(d) = config.alerts.as_ref().and_then(|a| a.digest.as_ref()) {
        let s = shared.clone();
        let job = Job::new_async(d.schedule.as_str(), move |_, _| {
            let s = s.clone();
            Box::pin(async move { jobs::digest_tick(s).await })
        })
        .map_err(|e| format!("alerts.digest.schedule {:?}: {e}", d.schedule))?;
        shared.with_job(jobs::DIGEST_JOB, |j| j.schedule = d.schedule.clone());
        ids.push(sched.add(job).await.map_err(|e| e.to_string())?);
    }
    Ok(ids)
}

/// The writer's passes, counted in the daemon's metrics.
fn observe_passes(shared: &Arc<Shared>) -> PassObserver {
    let s = Arc::downgrade(shared);
    Arc::new(move |r| {
        if let Some(s) = s.upgrade() {
            s.metrics.observe_drain(r);
        }
    })
}

async fn serve(opts: RunOptions, loaded: Loaded) -> Result<(), RunError> {
    use tokio::signal::unix::{signal, SignalKind};
    // Signals first: a SIGTERM during start-up is not lost.
    let mut term = signal(SignalKind::terminate()).map_err(runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(runtime)?;
    let mut hup = signal(SignalKind::hangup()).map_err(runtime)?;
    let signal_ = ShutdownSignal::new();
    let shutdown: Shutdown = signal_.subscribe();

    let store_path = loaded.config.store_path.clone();
    let open = || Store::open(&store_path).map_err(runtime);
    let (api_store, cycle_store, notifier_store) = (open()?, open()?, open()?);
    let http_settings = loaded.config.http.clone();
    let influx = loaded.config.influxdb.clone();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let shared = Arc::new(Shared::new(loaded, opts.config_path.clone(), opts.store_override.clone(), api_store, tx, shutdown.clone()));
    let writer = Writer::spawn(influx.as_ref(), &store_path, &shutdown, observe_passes(&shared)).map_err(|e| match e {
        crate::sinks::outbox::SetupError::Config(m) => RunError::Config(m),
        crate::sinks::outbox::SetupError::Store(s) => RunError::Runtime(s.to_string()),
    })?;
    shared.set_writer(writer);
    let reconciler = tokio::spawn(jobs::reconciler(shared.clone(), rx, cycle_store));
    let notifier = jobs::Notifier::spawn(shared.clone(), notifier_store);

    // The listener: bound before readiness is announced.
    let http_task = match &http_settings {
        Some(h) => {
            let listener = tokio::net::TcpListener::bind(h.listen).await.map_err(|e| runtime(format!("http.listen: cannot listen on {}: {e}", h.listen)))?;
            let addr = listener.local_addr().map_err(runtime)?;
            if !addr.ip().is_loopback() && shared.loaded().http_token.is_none() {
                tracing::warn!(%addr, "listening beyond loopback without an API token: the API and the page are closed, health and metrics as configured");
            }
            tracing::info!(%addr, "HTTP listening");
            let app = http::router(shared.clone());
            let closing = shutdown.clone();
            Some(tokio::spawn(async move {
                let r = axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).with_graceful_shutdown(async move { closing.draining().await });
                if let Err(e) = r.await {
                    tracing::error!("HTTP server: {e}");
                }
            }))
        }
        None => None,
    };

    let mut sched = JobScheduler::new().await.map_err(runtime)?;
    let mut job_ids = install_jobs(&sched, &shared).await.map_err(runtime)?;
    sched.start().await.map_err(runtime)?;
    // A first pull of every centre now, so the first cycle does not wait for the schedule.
    for id in shared.loaded().config.centres.keys() {
        tokio::spawn(jobs::centre_tick(shared.clone(), id.clone(), Trigger::Startup));
    }
    let watchdog = systemd::spawn_watchdog(shutdown.clone());
    {
        let l = shared.loaded();
        tracing::info!(
            centres = l.config.centres.len(),
            allocations = l.grants.allocations.len(),
            schedule = l.config.daemon.pull_schedule.as_str(),
            store = %shared.store_path.display(),
            "allocwatch running"
        );
    }
    systemd::ready("running");

    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                systemd::reloading();
                reload(&shared, &sched, &mut job_ids).await;
                systemd::ready("running");
            }
        }
    }

    // ---- Shutdown: no new work, in-flight work finishes (or is abandoned), outboxes drain.
    systemd::stopping();
    let deadline = Instant::now() + shared.loaded().config.daemon.shutdown_grace;
    signal_.stop();
    if let Err(e) = sched.shutdown().await {
        tracing::warn!("scheduler shutdown: {e}");
    }
    let in_flight = async {
        for g in shared.all_guards() {
            let _held = g.lock().await;
        }
        shared.close_reconciliation();
        let _ = reconciler.await;
    };
    if tokio::time::timeout_at(deadline.into(), in_flight).await.is_err() {
        tracing::warn!("shutdown grace period over: abandoning the pulls or cycle still running (nothing of them is committed)");
    }
    signal_.drain();
    let flush = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(5));
    let writer = shared.set_writer(None);
    tokio::join!(
        async {
            if let Some(w) = writer {
                w.stop().await;
            }
        },
        notifier.finished(flush)
    );
    for t in [http_task, watchdog].into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    tracing::info!("allocwatch stopped");
    Ok(())
}

/// SIGHUP: load the configuration again; put it in force if valid, else keep the old one.
async fn reload(shared: &Arc<Shared>, sched: &JobScheduler, job_ids: &mut Vec<Uuid>) {
    let mut new = match Loaded::load(&shared.config_path, shared.store_override.as_deref()) {
        Ok(l) => l,
        Err(e) => {
            shared.metrics.record_config_reload(false);
            tracing::error!("configuration reload REJECTED, the running configuration stays in force: {e}");
            return;
        }
    };
    let old = shared.loaded();
    if new.config.store_path != shared.store_path {
        tracing::warn!(running = %shared.store_path.display(), configured = %new.config.store_path.display(), "store.path changes take effect at restart");
        new.config.store_path = shared.store_path.clone();
    }
    if new.config.http.as_ref().map(|h| h.listen) != old.config.http.as_ref().map(|h| h.listen) {
        tracing::warn!("http.listen changes (and adding or removing [http]) take effect at restart");
    }
    let influx_changed = new.config.influxdb != old.config.influxdb;
    let writer = if influx_changed {
        match Writer::spawn(new.config.influxdb.as_ref(), &shared.store_path, &shared.shutdown, observe_passes(shared)) {
            Ok(w) => Some(w),
            Err(e) => {
                shared.metrics.record_config_reload(false);
                tracing::error!("configuration reload REJECTED, the running configuration stays in force: {e}");
                return;
            }
        }
    } else {
        None
    };
    let (centres, allocations) = (new.config.centres.len(), new.grants.allocations.len());
    shared.replace_loaded(new);
    if influx_changed {
        if let Some(old_writer) = shared.set_writer(writer.flatten()) {
            old_writer.stop().await;
        }
        tracing::info!("[influxdb] changed: indicator writer restarted");
    }
    for id in job_ids.drain(..) {
        if let Err(e) = sched.remove(&id).await {
            tracing::warn!("removing a job of the old schedule: {e}");
        }
    }
    match install_jobs(sched, shared).await {
        Ok(ids) => *job_ids = ids,
        Err(e) => tracing::error!("installing the new schedule: {e}"),
    }
    shared.metrics.record_config_reload(true);
    tracing::info!(centres, allocations, "configuration reloaded");
    shared.request_reconciliation("reload");
}
