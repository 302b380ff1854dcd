//! The daemon's work: one pull job per centre (on its own schedule, never overlapping itself),
//! the reconciler (one cycle after pulls, requests coalesced), the notifier (alert delivery
//! from the outbox), the quality-report job and the researchers' digest job.
//!
//! Store work is synchronous (SQLite): it runs on blocking threads, each job with its own
//! connection, so one centre's slow or failing pull never holds up another centre or HTTP.

use super::state::{CycleSnapshot, Shared};
use crate::domain::time::rfc3339;
use crate::shutdown::Shutdown;
use crate::store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// Once at start, without jitter, so the first cycle does not wait for the schedule.
    Startup,
    /// A tick of its cron schedule.
    Schedule,
}

/// Name of a centre's pull job (metrics label, feeds API, overlap guard).
pub(crate) fn pull_job(centre: &str) -> String {
    format!("pull:{centre}")
}

/// Name of the quality-report job.
pub(crate) const QUALITY_JOB: &str = "quality_report";

/// Name of the researchers' digest job.
pub(crate) const DIGEST_JOB: &str = "digest";

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Take the job's guard, or count the tick as skipped: a job never overlaps itself.
fn enter(shared: &Shared, job: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
    match shared.guard(job).try_lock_owned() {
        Ok(g) => Some(g),
        Err(_) => {
            shared.with_job(job, |j| j.skipped_ticks += 1);
            shared.metrics.record_tick_skipped(job);
            tracing::warn!(job, "tick skipped: the previous run is still going");
            None
        }
    }
}

/// Wait the jitter delay; `false` when the daemon started stopping meanwhile.
async fn jitter(shared: &Shared, max: Duration) -> bool {
    if max.is_zero() {
        return true;
    }
    let d = max.mul_f64(fastrand::f64());
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shared.shutdown.stopping() => false,
    }
}

/// One run of a centre's pull job: pull its sources, then ask for a reconciliation.
pub(crate) async fn centre_tick(shared: Arc<Shared>, centre_id: String, trigger: Trigger) {
    let job = pull_job(&centre_id);
    let Some(_guard) = enter(&shared, &job) else { return };
    if shared.is_stopping() {
        return;
    }
    if trigger == Trigger::Schedule && !jitter(&shared, shared.loaded().config.daemon.jitter).await {
        return;
    }
    let loaded = shared.loaded();
    let Some(centre) = loaded.config.centres.get(&centre_id).cloned() else {
        return; // removed by a reload since the tick was scheduled
    };
    let started_at = now();
    shared.with_job(&job, |j| {
        j.runs += 1;
        j.last_started_at = Some(started_at);
    });
    let clock = Instant::now();
    let store_path = shared.store_path.clone();
    let handle = tokio::runtime::Handle::current();
    let shutdown = shared.shutdown.clone();
    let result = tokio::task::spawn_blocking(move || pull_centre(&handle, &store_path, &centre, started_at, &shutdown))
        .await
        .unwrap_or_else(|e| Err(format!("the pull panicked: {e}")));
    let secs = clock.elapsed().as_secs_f64();
    shared.metrics.record_job_run(&job, result.is_ok(), secs);
    shared.with_job(&job, |j| {
        j.last_finished_at = Some(now());
        j.last_ok = Some(result.is_ok());
        j.last_error = result.as_ref().err().cloned();
    });
    match &result {
        Ok(()) => tracing::debug!(centre = %centre_id, seconds = secs, "pull finished"),
        Err(e) if e == ABANDONED => {}
        Err(e) => tracing::error!(centre = %centre_id, seconds = secs, "pull failed: {e}"),
    }
    // A failed pull is reconciled too: the cycle's feed indicators and the stale-feed rule
    // must see the failure.
    shared.request_reconciliation(&centre_id);
}

/// Pull one centre's sources into the store (on a blocking thread; live sources' I/O is driven
/// by the runtime through `handle`) with the one function `check` uses too. `Err` names what
/// failed; what was stored is kept (each file import and each live pull is its own transaction).
///
/// A pull still running when the shutdown drains (its grace period over) is abandoned: its
/// future is dropped at once — the command it runs is killed, what it had not committed is
/// rolled back — so it records nothing, not even a failure (it would otherwise fail on the
/// runtime's shutdown and record that as the feed's error).
fn pull_centre(
    handle: &tokio::runtime::Handle,
    store_path: &std::path::Path,
    centre: &crate::config::CentreConfig,
    now: i64,
    shutdown: &Shutdown,
) -> Result<(), String> {
    let mut store = Store::open(store_path).map_err(|e| e.to_string())?;
    let pulled = handle.block_on(async {
        tokio::select! {
            biased;
            p = crate::pull::pull_centre(&mut store, centre, now) => Some(p),
            _ = shutdown.draining() => None,
        }
    });
    let Some(pulled) = pulled else {
        tracing::warn!(centre = %centre.id, "shutdown grace period over: pull of {} abandoned, nothing of it stored", centre.id);
        return Err(ABANDONED.to_string());
    };
    let mut failures = pulled.log(&centre.id);
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        n => Err(format!("{n} sources failed; first: {}", failures[0])),
    }
}

/// What [`pull_centre`] returns for a pull abandoned at shutdown (logged there, not as a failure).
const ABANDONED: &str = "abandoned at shutdown";

/// How long the reconciler waits after a request for others to join it.
const COALESCE: Duration = Duration::from_millis(300);

/// The reconciler: one cycle per batch of requests, on its own store connection, published to
/// the shared state. Ends when the request channel closes or the daemon stops; a cycle in
/// flight always finishes (it is one transaction).
pub(crate) async fn reconciler(shared: Arc<Shared>, mut requests: tokio::sync::mpsc::UnboundedReceiver<String>, store: Store) {
    // The store connection and what the reconciler keeps of its ledger between cycles (each
    // cycle then reads only the changes the pulls logged since the last one).
    let mut store = Some((store, crate::reconcile::Reconciler::default()));
    while let Some(first) = requests.recv().await {
        if shared.is_stopping() {
            break;
        }
        // Pulls that end together (start-up, a shared schedule) are served by one cycle.
        tokio::time::sleep(COALESCE).await;
        let mut reasons = vec![first];
        while let Ok(r) = requests.try_recv() {
            reasons.push(r);
        }
        reasons.sort();
        reasons.dedup();
        let loaded = shared.loaded();
        let at = loaded.config.at.map(|t| t.as_second()).unwrap_or_else(now);
        let Some((mut st, mut reconciler)) = store.take() else { break };
        let (l, sh) = (loaded.clone(), shared.clone());
        let clock = Instant::now();
        let joined = tokio::task::spawn_blocking(move || {
            let r = crate::cycle::run_cycle(&mut reconciler, &l.config, &l.grants, &mut st, at, "schedule", l.alerting.as_ref());
            if let Ok(cycle) = &r {
                write_ood_files(&sh, &l.config.ood, &mut st, cycle);
            }
            ((st, reconciler), r)
        })
        .await;
        let secs = clock.elapsed().as_secs_f64();
        match joined {
            Ok((st, Ok(cycle))) => {
                store = Some(st);
                let rec = cycle.reconciliation;
                let mut counts = std::collections::BTreeMap::new();
                for a in &rec.allocations {
                    *counts.entry(a.status.as_str()).or_insert(0) += 1;
                }
                tracing::info!(
                    cycle = cycle.id,
                    after = reasons.join(","),
                    allocations = rec.allocations.len(),
                    orphans = rec.orphans.len(),
                    unmapped = rec.unmapped.len(),
                    statuses = ?counts,
                    seconds = secs,
                    "reconciled"
                );
                if let Some(s) = &cycle.alerts {
                    if s.fired + s.reminded + s.resolved > 0 {
                        tracing::info!(fired = s.fired, reminders = s.reminded, resolved = s.resolved, firing = s.held, queued = s.queued, "alerts");
                    }
                }
                shared.metrics.observe_cycle(&rec, &cycle.indicators, cycle.recorded_at);
                shared.metrics.record_job_run("reconcile", true, secs);
                super::systemd::status(&format!("cycle {} at {}: {} allocations", cycle.id, rfc3339(at), rec.allocations.len()));
                shared.publish_cycle(CycleSnapshot { id: cycle.id, reconciliation: rec, finished_at_s: now(), loaded });
            }
            Ok((st, Err(e))) => {
                store = Some(st);
                shared.metrics.record_job_run("reconcile", false, secs);
                tracing::error!("reconciliation failed (nothing recorded; the next pull retries): {e}");
            }
            Err(e) => {
                shared.metrics.record_job_run("reconcile", false, secs);
                tracing::error!("reconciliation panicked: {e}");
                match Store::open(&shared.store_path) {
                    // What the reconciler kept went with the panicked cycle: the next reads afresh.
                    Ok(s) => store = Some((s, crate::reconcile::Reconciler::default())),
                    Err(e) => {
                        tracing::error!("cannot reopen the store: {e}");
                        break;
                    }
                }
            }
        }
    }
}

/// Name of the step that rewrites the Open OnDemand balance files (metrics label).
const OOD_JOB: &str = "ood_balances";

/// After a committed cycle, on its blocking thread: rewrite every `[[ood.balance]]` file from
/// its reconciliation. A file that cannot be written is logged with the error and counted
/// (`allocwatch_job_runs_total{job="ood_balances",outcome="failed"}`); the others are still
/// written, the previous version of that one stays in place, and the daemon goes on.
fn write_ood_files(shared: &Shared, settings: &crate::sinks::ood::OodSettings, store: &mut Store, cycle: &crate::cycle::CycleOutcome) {
    if settings.balances.is_empty() {
        return;
    }
    let clock = Instant::now();
    let outcomes = crate::sinks::ood::write_files(settings, store, &cycle.reconciliation);
    let mut ok = true;
    for o in &outcomes {
        match &o.result {
            Ok(entries) => tracing::debug!(cycle = cycle.id, file = %o.file.display(), entries, "OOD balance file written"),
            Err(e) => {
                ok = false;
                tracing::error!(cycle = cycle.id, file = %o.file.display(), "OOD balance file not written (the previous one stays): {e}");
            }
        }
    }
    shared.metrics.record_job_run(OOD_JOB, ok, clock.elapsed().as_secs_f64());
}

/// The notifier: delivers the notification outbox after each cycle (and every 30 s for
/// retries that come due), with the alert settings in force; once the shutdown drains, one
/// last pass delivers what the last cycles queued, and it returns.
pub(crate) struct Notifier {
    task: tokio::task::JoinHandle<()>,
}

/// How often the notifier looks for retries that came due without a cycle.
const NOTIFIER_POLL: Duration = Duration::from_secs(30);

impl Notifier {
    /// Start on its own store connection.
    pub fn spawn(shared: Arc<Shared>, store: Store) -> Notifier {
        let shutdown = shared.shutdown.clone();
        Notifier { task: tokio::spawn(notifier_loop(shared, store, shutdown)) }
    }

    /// Wait for the last delivery pass (bounded by `deadline`) once the shutdown drains; what is
    /// not delivered stays queued for the next start.
    pub async fn finished(self, deadline: Duration) {
        let mut task = self.task;
        if tokio::time::timeout(deadline, &mut task).await.is_err() {
            tracing::warn!("alert delivery did not finish its last pass in time; the rest stays queued");
            task.abort();
        }
    }
}

async fn notifier_loop(shared: Arc<Shared>, mut store: Store, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = shared.notifier_wake.notified() => {}
            _ = tokio::time::sleep(NOTIFIER_POLL) => {}
            _ = shutdown.draining() => {}
        }
        // Draining: this pass is the last one, after the last cycle committed. It also tries
        // the messages still waiting for their retry time (once each): the next chance may be
        // a long stop away, and what fails again stays queued as before.
        let last = shutdown.phase() == crate::shutdown::Phase::Draining;
        let loaded = shared.loaded();
        if let Some(a) = &loaded.alerting {
            match crate::alerts::deliver::deliver_pending(&mut store, &a.settings, last).await {
                Ok(r) => {
                    shared.metrics.observe_delivery(&r);
                    if r.sent + r.failed > 0 || last {
                        tracing::info!(sent = r.sent, failed = r.failed, queued = r.pending, "notifications")
                    }
                }
                Err(e) => tracing::error!("notification delivery: {e}"),
            }
        }
        if last {
            return;
        }
    }
}

/// One run of the quality-report job: the last finished month's figures, queued once as
/// `quality` points ([`crate::quality::run_scheduled`]; a later tick of the same month is a
/// no-op).
pub(crate) async fn quality_tick(shared: Arc<Shared>) {
    let Some(_guard) = enter(&shared, QUALITY_JOB) else { return };
    if shared.is_stopping() {
        return;
    }
    let loaded = shared.loaded();
    let started_at = now();
    shared.with_job(QUALITY_JOB, |j| {
        j.runs += 1;
        j.last_started_at = Some(started_at);
    });
    let clock = Instant::now();
    let store_path = shared.store_path.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut store = Store::open(&store_path).map_err(|e| e.to_string())?;
        use crate::quality::Scheduled;
        let (done, enqueued) = crate::quality::run_scheduled_counted(&loaded.config, &loaded.grants, &mut store, started_at).map_err(|e| e.to_string())?;
        let summary = match done {
            Scheduled::NotConfigured => "no [influxdb] section: nothing to queue".to_string(),
            Scheduled::AlreadyQueued { period } => format!("{period} already queued"),
            Scheduled::Queued { period, points } => format!("{period}: {points} quality points queued"),
        };
        Ok((summary, enqueued))
    })
    .await
    .unwrap_or_else(|e| Err(format!("the quality report panicked: {e}")));
    shared.metrics.record_job_run(QUALITY_JOB, result.is_ok(), clock.elapsed().as_secs_f64());
    shared.with_job(QUALITY_JOB, |j| {
        j.last_finished_at = Some(now());
        j.last_ok = Some(result.is_ok());
        j.last_error = result.as_ref().err().cloned();
    });
    match result {
        Ok((summary, enqueued)) => {
            shared.metrics.observe_enqueued(&enqueued);
            tracing::info!("quality report: {summary}");
            shared.wake_writer();
        }
        Err(e) => tracing::error!("quality report failed: {e}"),
    }
}

/// One run of the digest job: the digests of the last cycle's reconciliation, queued once per
/// project and period ([`crate::cycle::digest::run`]; a later tick in the same period queues
/// nothing), then delivered by the notifier. Right after start-up it waits for the first cycle.
pub(crate) async fn digest_tick(shared: Arc<Shared>) {
    let Some(_guard) = enter(&shared, DIGEST_JOB) else { return };
    let cycle = loop {
        if shared.is_stopping() {
            return;
        }
        if let Some(c) = shared.last_cycle() {
            break c;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shared.shutdown.stopping() => return,
        }
    };
    let started_at = now();
    shared.with_job(DIGEST_JOB, |j| {
        j.runs += 1;
        j.last_started_at = Some(started_at);
    });
    let clock = Instant::now();
    let store_path = shared.store_path.clone();
    let result = tokio::task::spawn_blocking(move || {
        // The cycle's own configuration: its grants are the ones its reports index.
        let l = &cycle.loaded;
        let Some(alerting) = &l.alerting else { return Ok("no [alerts] section".to_string()) };
        let mut store = Store::open(&store_path).map_err(|e| e.to_string())?;
        let r = crate::cycle::digest::run(&l.config, &l.grants, alerting, &mut store, &cycle.reconciliation, cycle.id, started_at, "schedule", false)
            .map_err(|e| e.to_string())?;
        let mails: usize = r.queued.iter().map(|(_, n)| n).sum();
        Ok(format!("{} (cycle {}): {} projects' digests queued ({mails} mails), {} already queued", r.period, cycle.id, r.queued.len(), r.already.len()))
    })
    .await
    .unwrap_or_else(|e| Err(format!("the digest panicked: {e}")));
    shared.metrics.record_job_run(DIGEST_JOB, result.is_ok(), clock.elapsed().as_secs_f64());
    shared.with_job(DIGEST_JOB, |j| {
        j.last_finished_at = Some(now());
        j.last_ok = Some(result.is_ok());
        j.last_error = result.as_ref().err().cloned();
    });
    match result {
        Ok(summary) => {
            tracing::info!("digest: {summary}");
            shared.notifier_wake.notify_one();
        }
        Err(e) => tracing::error!("digest failed: {e}"),
    }
}
