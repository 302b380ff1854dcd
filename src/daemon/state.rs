//! What the daemon's tasks share: the configuration in force (swapped whole on reload), the
//! last cycle (served by the API and the status page), the jobs' status, the metrics, and the
//! shutdown signal.

use super::metrics::Metrics;
use crate::alerts::Alerting;
use crate::config::Config;
use crate::domain::grants::Grants;
use crate::domain::reconciliation::Reconciliation;
use crate::secret::Secret;
use crate::shutdown::Shutdown;
use crate::store::Store;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// One loaded configuration with everything derived from it; replaced whole on reload, so a
/// task that took it sees one consistent version.
pub(crate) struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Allocations and adjustments.
    pub grants: Grants,
    /// Alert evaluation, when `[alerts]` is configured.
    pub alerting: Option<Alerting>,
    /// The HTTP API token, read from its environment variable or file.
    pub http_token: Option<Secret>,
    /// Signed project links (`[links]`): made for mails, verified on the project routes.
    pub links: Option<crate::links::LinkMaker>,
}

impl Loaded {
    /// Load and validate the configuration, its allocation files and the HTTP token. The error
    /// names the file, line or key (a bad configuration: exit code 2 at start, rejected on reload).
    pub fn load(path: &Path, store_override: Option<&Path>) -> Result<Loaded, String> {
        let mut config = Config::load(path).map_err(|e| e.to_string())?;
        if let Some(s) = store_override {
            config.store_path = crate::config::store_location(s).map_err(|e| format!("--store: {e}"))?;
        }
        let grants = Grants::load(&config).map_err(|e| e.to_string())?;
        let links = config.link_maker().map_err(|e| format!("{}: {e}", config.path.display()))?;
        let alerting = match &config.alerts {
            Some(s) => Some(Alerting::new(s.clone(), links.clone()).map_err(|e| format!("{}: alerts: {e}", config.path.display()))?),
            None => None,
        };
        let http_token = match config.http.as_ref().and_then(|h| h.token.as_ref()) {
            Some(t) => Some(t.read_as("http", "token").map_err(|e| format!("{}: {e}", config.path.display()))?),
            None => None,
        };
        Ok(Loaded { config, grants, alerting, http_token, links })
    }
}

/// The last recorded cycle.
pub(crate) struct CycleSnapshot {
    /// Cycle id in the store.
    pub id: i64,
    /// What it reconciled (the `check --format json` objects).
    pub reconciliation: Reconciliation,
    /// Wall clock when it committed, epoch seconds.
    pub finished_at_s: i64,
    /// The configuration it ran with (the API explains its figures with the same grants).
    pub loaded: Arc<Loaded>,
}

/// What the feeds API tells about one scheduled job.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct JobStatus {
    /// Cron expression in force.
    pub schedule: String,
    /// Runs started.
    pub runs: u64,
    /// Ticks skipped because the previous run was still going.
    pub skipped_ticks: u64,
    /// Last run start, epoch seconds.
    pub last_started_at: Option<i64>,
    /// Last run end, epoch seconds.
    pub last_finished_at: Option<i64>,
    /// Whether the last run succeeded.
    pub last_ok: Option<bool>,
    /// Its error, if it failed.
    pub last_error: Option<String>,
}

/// Failed sign-ins allowed per client address within [`LOGIN_WINDOW_S`].
pub(crate) const LOGIN_MAX_FAILURES: u32 = 5;
/// The window the failures are counted over, seconds.
pub(crate) const LOGIN_WINDOW_S: i64 = 15 * 60;
/// How long sign-in stays locked after the last of too many failures, seconds.
pub(crate) const LOGIN_LOCKOUT_S: i64 = 15 * 60;

/// Failed sign-ins at `/login` per client address (behind a reverse proxy, that is the proxy's:
/// the limit then holds for everyone, which still stops guessing). In memory: a restart
/// forgets it.
#[derive(Default)]
pub(crate) struct LoginLimiter {
    failures: Mutex<HashMap<std::net::IpAddr, Vec<i64>>>,
}

impl LoginLimiter {
    fn recent(v: &mut Vec<i64>, now: i64) {
        v.retain(|&t| now - t < LOGIN_WINDOW_S.max(LOGIN_LOCKOUT_S));
    }

    /// When sign-in from `ip` is locked (the limit reached within one window before its last
    /// failure, and the lockout since that failure not over), until when.
    pub fn locked_until(&self, ip: std::net::IpAddr, now: i64) -> Option<i64> {
        let m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let v = m.get(&ip)?;
        let last = *v.last()?;
        let burst = v.iter().filter(|&&t| last - t < LOGIN_WINDOW_S).count() as u32;
        (burst >= LOGIN_MAX_FAILURES && now < last + LOGIN_LOCKOUT_S).then_some(last + LOGIN_LOCKOUT_S)
    }

    /// Record a failure; returns the attempts left before the lockout (0: locked now).
    pub fn failed(&self, ip: std::net::IpAddr, now: i64) -> u32 {
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let v = m.entry(ip).or_default();
        Self::recent(v, now);
        v.push(now);
        let in_window = v.iter().filter(|&&t| now - t < LOGIN_WINDOW_S).count() as u32;
        LOGIN_MAX_FAILURES.saturating_sub(in_window)
    }

    /// A successful sign-in clears the address's failures.
    pub fn succeeded(&self, ip: std::net::IpAddr) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&ip);
    }
}

/// State shared by the scheduler's jobs, the reconciler, the delivery tasks and HTTP.
pub(crate) struct Shared {
    loaded: RwLock<Arc<Loaded>>,
    last_cycle: RwLock<Option<Arc<CycleSnapshot>>>,
    /// The store file of this process (a reload cannot move it).
    pub store_path: PathBuf,
    /// Where the configuration is read from on reload.
    pub config_path: PathBuf,
    /// `--store`, re-applied on reload.
    pub store_override: Option<PathBuf>,
    /// A connection for the HTTP API's reads (behind a lock: one request at a time uses it).
    pub api_store: Mutex<Store>,
    /// The daemon's metrics.
    pub metrics: Metrics,
    /// The shutdown signal (its owner is `serve`).
    pub shutdown: Shutdown,
    reconcile: Mutex<Option<tokio::sync::mpsc::UnboundedSender<String>>>,
    guards: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    jobs: Mutex<BTreeMap<String, JobStatus>>,
    /// Wakes the notifier after a cycle (a wake-up is kept until it waits again).
    pub notifier_wake: tokio::sync::Notify,
    writer: Mutex<Option<crate::sinks::outbox::Writer>>,
    /// Failed sign-ins per client address.
    pub login_limiter: LoginLimiter,
}

impl Shared {
    /// New shared state; `reconcile` is the reconciler's request channel.
    pub fn new(
        loaded: Loaded,
        config_path: PathBuf,
        store_override: Option<PathBuf>,
        api_store: Store,
        reconcile: tokio::sync::mpsc::UnboundedSender<String>,
        shutdown: Shutdown,
    ) -> Shared {
        Shared {
            store_path: loaded.config.store_path.clone(),
            loaded: RwLock::new(Arc::new(loaded)),
            last_cycle: RwLock::new(None),
            config_path,
            store_override,
            api_store: Mutex::new(api_store),
            metrics: Metrics::new(),
            shutdown,
            reconcile: Mutex::new(Some(reconcile)),
            guards: Mutex::new(HashMap::new()),
            jobs: Mutex::new(BTreeMap::new()),
            notifier_wake: tokio::sync::Notify::new(),
            writer: Mutex::new(None),
            login_limiter: LoginLimiter::default(),
        }
    }

    /// The configuration in force.
    pub(crate) fn loaded(&self) -> Arc<Loaded> {
        self.loaded.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Put a new configuration in force (tasks that hold the old one finish with it).
    pub(crate) fn replace_loaded(&self, new: Loaded) {
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
    }

    /// The last cycle, if one ran.
    pub(crate) fn last_cycle(&self) -> Option<Arc<CycleSnapshot>> {
        self.last_cycle.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Publish a cycle that committed.
    pub(crate) fn publish_cycle(&self, s: CycleSnapshot) {
        *self.last_cycle.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(s));
        self.notifier_wake.notify_one();
        self.wake_writer();
    }

    /// New points are waiting in the outbox: wake the writer.
    pub(crate) fn wake_writer(&self) {
        if let Some(w) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            w.wake();
        }
    }

    /// Install the indicator writer, returning the one it replaces (to be stopped).
    pub(crate) fn set_writer(&self, w: Option<crate::sinks::outbox::Writer>) -> Option<crate::sinks::outbox::Writer> {
        std::mem::replace(&mut *self.writer.lock().unwrap_or_else(|p| p.into_inner()), w)
    }

    /// Whether the daemon is stopping.
    pub(crate) fn is_stopping(&self) -> bool {
        self.shutdown.is_stopping()
    }

    /// Ask for a reconciliation (after a pull, a reload); requests that arrive while a cycle
    /// runs are served together by the next one.
    pub(crate) fn request_reconciliation(&self, reason: &str) {
        if let Some(tx) = self.reconcile.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = tx.send(reason.to_string());
        }
    }

    /// Close the reconciler's request channel (shutdown): it ends after its cycle in flight.
    pub(crate) fn close_reconciliation(&self) {
        self.reconcile.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// The guard that keeps a job from overlapping itself (one per job name, kept across
    /// reloads so an old run and a new tick of the same job never overlap either).
    pub(crate) fn guard(&self, job: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.guards.lock().unwrap_or_else(|p| p.into_inner()).entry(job.to_string()).or_default().clone()
    }

    /// Every job guard (shutdown waits for all of them).
    pub(crate) fn all_guards(&self) -> Vec<Arc<tokio::sync::Mutex<()>>> {
        self.guards.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Update a job's status.
    pub(crate) fn with_job<T>(&self, job: &str, f: impl FnOnce(&mut JobStatus) -> T) -> T {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        f(jobs.entry(job.to_string()).or_default())
    }

    /// Every job's status, by name.
    pub fn jobs(&self) -> BTreeMap<String, JobStatus> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
