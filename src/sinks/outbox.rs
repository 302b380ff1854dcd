//! The durable outbox of indicator points, in the SQLite store.
//!
//! Policy (also in README.md):
//! - Points are rendered to line protocol and appended in the same transaction as the cycle
//!   that produced them: a crash leaves both or neither.
//! - A writer sends them oldest first, in batches of `batch_size`, and deletes a batch only
//!   after the server answered 2xx. A restarted process replays whatever is left, in order.
//!   Re-sending is harmless: same measurement, tags and timestamp overwrite in InfluxDB.
//! - A transient failure (network, timeout, 5xx, 429, 401/403/404) keeps the batch and retries
//!   it after an exponential backoff with jitter (`backoff_initial_seconds` doubling up to
//!   `backoff_max_seconds`, each delay drawn in [d/2, d]).
//! - A refused batch (400, 413, 422) is retried in halves until the line at fault is alone;
//!   that line is moved to `outbox_rejected` with the server's message (kept, never silently
//!   lost), and batches grow back by doubling.
//! - The outbox is bounded (`max_outbox_points`): beyond it the oldest points are dropped, with
//!   an error in the log and `allocwatch_points_dropped_total`.

use super::influxdb::{InfluxConfig, InfluxSink};
use super::{IndicatorSink, Point, SinkError, SinkErrorKind};
use crate::domain::retry::backoff;
use crate::domain::time::rfc3339;
use crate::shutdown::{Shutdown, ShutdownSignal};
use crate::store::outbox::QueuedLine;
use crate::store::{Store, StoreError, Tx};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long an idle writer waits before looking at the outbox again without being woken
/// (points enqueued by another process, e.g. a manual `check`).
const IDLE_POLL: Duration = Duration::from_secs(30);

/// What an enqueue did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enqueued {
    /// Points appended.
    pub queued: u64,
    /// Non-finite fields left out (each logged).
    pub non_finite_fields: u64,
    /// Points not queued because no field was left.
    pub empty_points: u64,
    /// Oldest points dropped to respect the bound.
    pub dropped_oldest: u64,
    /// Points waiting after the enqueue.
    pub depth: u64,
}

/// Append points to the outbox in the caller's transaction, when a sink is configured
/// (otherwise nothing is kept). This is the entry point for anything that owes indicators
/// (cycles, quality runs); `now` is when they are enqueued.
pub fn enqueue(tx: &Tx<'_>, influx: Option<&InfluxConfig>, points: &[Point], now: i64) -> Result<Enqueued, StoreError> {
    match influx {
        Some(influx) => enqueue_bounded(tx, influx.max_outbox_points, points, now),
        None => Ok(Enqueued::default()),
    }
}

/// Render points, append them, then drop the oldest beyond `max_points` (loudly).
pub fn enqueue_bounded(tx: &Tx<'_>, max_points: u64, points: &[Point], now: i64) -> Result<Enqueued, StoreError> {
    let mut out = Enqueued::default();
    let mut lines = Vec::with_capacity(points.len());
    for p in points {
        let r = p.line_protocol();
        if !r.non_finite.is_empty() {
            out.non_finite_fields += r.non_finite.len() as u64;
            tracing::warn!(measurement = %p.measurement, tags = ?p.tags, fields = ?r.non_finite, "non-finite values left out: InfluxDB refuses NaN and infinities");
        }
        match r.line {
            Some(line) => lines.push(QueuedLine { measurement: p.measurement.clone(), timestamp_ns: p.timestamp_ns, line }),
            None => {
                out.empty_points += 1;
                tracing::warn!(measurement = %p.measurement, tags = ?p.tags, "point without a finite field not written");
            }
        }
    }
    let appended = tx.append_points(&lines, now, max_points)?;
    if let Some((oldest_at, oldest_ts)) = appended.oldest_dropped {
        tracing::error!(
            dropped = appended.dropped_oldest,
            max_outbox_points = max_points,
            oldest_enqueued_at = %rfc3339(oldest_at),
            oldest_point_at = %rfc3339(oldest_ts.div_euclid(1_000_000_000)),
            "OUTBOX FULL: dropped the oldest indicator points; the sink has been unreachable too long (see `allocwatch outbox status`)"
        );
    }
    out.queued = appended.queued;
    out.dropped_oldest = appended.dropped_oldest;
    out.depth = appended.depth;
    Ok(out)
}

/// The outbox as `allocwatch outbox status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutboxStatus {
    /// Points waiting.
    pub depth: u64,
    /// Oldest waiting point: when it was enqueued (RFC 3339).
    pub oldest_enqueued_at: Option<String>,
    /// Oldest waiting point: its own timestamp (RFC 3339).
    pub oldest_point_at: Option<String>,
    /// Last write attempt.
    pub last_attempt_at: Option<String>,
    /// Last successful write.
    pub last_success_at: Option<String>,
    /// Last error and when it happened.
    pub last_error: Option<String>,
    /// When the last error happened.
    pub last_error_at: Option<String>,
    /// Failed attempts since the last success.
    pub consecutive_failures: i64,
    /// Points delivered, all time.
    pub sent_total: i64,
    /// Points dropped because the outbox was full, all time.
    pub dropped_total: i64,
    /// Points the server refused, kept in `outbox_rejected`.
    pub rejected: u64,
}

/// Read the outbox status.
pub fn status(store: &Store) -> Result<OutboxStatus, StoreError> {
    let s = store.outbox_state()?;
    Ok(OutboxStatus {
        depth: s.depth,
        oldest_enqueued_at: s.oldest.map(|o| rfc3339(o.0)),
        oldest_point_at: s.oldest.map(|o| rfc3339(o.1.div_euclid(1_000_000_000))),
        last_attempt_at: s.last_attempt_at.map(rfc3339),
        last_success_at: s.last_success_at.map(rfc3339),
        last_error: s.last_error,
        last_error_at: s.last_error_at.map(rfc3339),
        consecutive_failures: s.consecutive_failures,
        sent_total: s.sent_total,
        dropped_total: s.dropped_total,
        rejected: s.rejected,
    })
}

impl std::fmt::Display for OutboxStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        writeln!(f, "points waiting        {}", self.depth)?;
        writeln!(f, "oldest enqueued at    {}", o(&self.oldest_enqueued_at))?;
        writeln!(f, "oldest point at       {}", o(&self.oldest_point_at))?;
        writeln!(f, "last attempt          {}", o(&self.last_attempt_at))?;
        writeln!(f, "last success          {}", o(&self.last_success_at))?;
        writeln!(f, "failures since        {}", self.consecutive_failures)?;
        writeln!(f, "last error            {} {}", o(&self.last_error_at), o(&self.last_error))?;
        writeln!(f, "sent (all time)       {}", self.sent_total)?;
        writeln!(f, "dropped, outbox full  {}", self.dropped_total)?;
        writeln!(f, "refused by server     {} (table outbox_rejected)", self.rejected)
    }
}

/// What one pass of [`drain`] did.
#[derive(Debug, Clone, Default)]
pub struct DrainReport {
    /// Points delivered.
    pub sent: u64,
    /// Requests that succeeded.
    pub batches: u64,
    /// Outbox id ranges delivered, in the order sent.
    pub sent_ranges: Vec<(i64, i64)>,
    /// Points the server refused, moved to `outbox_rejected`.
    pub rejected: u64,
    /// Points still waiting.
    pub remaining: u64,
    /// The transient failure that ended the pass, if any (the batch stays queued).
    pub error: Option<SinkError>,
}

/// Send the outbox oldest first until it is empty or a transient failure stops the pass
/// (no waiting here: the caller decides when to try again).
pub async fn drain<S: IndicatorSink>(store: &mut Store, sink: &S, batch_size: usize) -> Result<DrainReport, StoreError> {
    let mut report = DrainReport::default();
    let batch_size = batch_size.max(1);
    let mut limit = batch_size;
    loop {
        let batch = store.outbox_peek(limit)?;
        let (Some(&(first, _)), Some(&(last, _))) = (batch.first(), batch.last()) else { break };
        let lines: Vec<String> = batch.into_iter().map(|(_, l)| l).collect();
        let n = lines.len() as u64;
        let result = sink.write_lines(&lines).await;
        let now = jiff::Timestamp::now().as_second();
        match result {
            Ok(()) => {
                store.outbox_delivered(first, last, n, now)?;
                report.sent += n;
                report.batches += 1;
                report.sent_ranges.push((first, last));
                tracing::debug!(points = n, first, last, "sent to {}", sink.target());
                limit = (limit * 2).min(batch_size);
            }
            Err(e) if e.kind == SinkErrorKind::Rejected && n > 1 => {
                tracing::warn!(points = n, "{} refused a batch ({}); retrying in halves to find the line at fault", sink.target(), e.message);
                limit = (n as usize / 2).max(1);
            }
            Err(e) if e.kind == SinkErrorKind::Rejected => {
                tracing::error!(outbox_id = first, line = %lines[0], "{} refused this point ({}); kept in outbox_rejected", sink.target(), e.message);
                store.outbox_quarantine(first, &e.message, now)?;
                report.rejected += 1;
            }
            Err(e) => {
                store.outbox_failed(&e.message, now)?;
                report.error = Some(e);
                break;
            }
        }
    }
    report.remaining = store.outbox_depth()?;
    Ok(report)
}

/// Setting up delivery failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    /// The `[influxdb]` section cannot be used (token missing…): a configuration problem.
    #[error("{0}")]
    Config(String),
    /// The store cannot be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One pass over the outbox now, on a private runtime (for `check` and `outbox flush`).
/// `None` when no sink is configured.
pub(crate) fn flush_now(influx: Option<&InfluxConfig>, store: &mut Store) -> Result<Option<DrainReport>, SetupError> {
    let Some(influx) = influx else { return Ok(None) };
    let sink = InfluxSink::new(influx).map_err(SetupError::Config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| SetupError::Config(format!("cannot start the async runtime: {e}")))?;
    let report = rt.block_on(drain(store, &sink, influx.batch_size))?;
    if let Some(e) = &report.error {
        tracing::warn!(remaining = report.remaining, "{}: {}; points stay queued", sink.target(), e.message);
    }
    Ok(Some(report))
}

/// What the writer tells its owner after each pass (the daemon counts it in its metrics).
pub(crate) type PassObserver = Arc<dyn Fn(&DrainReport) + Send + Sync>;

/// The daemon's writer task: started by [`Writer::spawn`], woken after each cycle, stopped
/// (after a last pass) when its shutdown drains.
pub(crate) struct Writer {
    wake: Arc<tokio::sync::Notify>,
    stop: ShutdownSignal,
    task: tokio::task::JoinHandle<()>,
    grace: Duration,
}

impl Writer {
    /// Start the writer on the current tokio runtime with its own store connection; `None`
    /// when no sink is configured. It follows `shutdown` (a last pass once it drains), and
    /// [`Writer::stop`] stops it alone (a reload that replaces it).
    pub fn spawn(influx: Option<&InfluxConfig>, store_path: &Path, shutdown: &Shutdown, observe: PassObserver) -> Result<Option<Writer>, SetupError> {
        let Some(influx) = influx.cloned() else { return Ok(None) };
        let sink = InfluxSink::new(&influx).map_err(SetupError::Config)?;
        let store = Store::open(store_path)?;
        observe(&DrainReport { remaining: store.outbox_depth()?, ..Default::default() });
        let wake = Arc::new(tokio::sync::Notify::new());
        let stop = ShutdownSignal::child(shutdown);
        tracing::info!(target_sink = %sink.target(), batch_size = influx.batch_size, "indicator writer started");
        let grace = influx.timeout * 3;
        let task = tokio::spawn(writer_loop(store, sink, influx, wake.clone(), stop.subscribe(), observe));
        Ok(Some(Writer { wake, stop, task, grace }))
    }

    /// New points are waiting: send them now (a wake-up is never lost).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Wait for the writer's last pass (bounded), after its shutdown drained or after stopping
    /// it alone; what it could not send stays queued for the next start.
    pub async fn stop(self) {
        self.stop.drain();
        let mut task = self.task;
        if tokio::time::timeout(self.grace, &mut task).await.is_err() {
            tracing::warn!("indicator writer did not finish its last pass in time; the rest stays queued");
            task.abort();
        }
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("grace", &self.grace).finish_non_exhaustive()
    }
}

async fn writer_loop(
    mut store: Store,
    sink: InfluxSink,
    cfg: InfluxConfig,
    wake: Arc<tokio::sync::Notify>,
    shutdown: Shutdown,
    observe: PassObserver,
) {
    let mut failures: u32 = 0;
    loop {
        let delay = match drain(&mut store, &sink, cfg.batch_size).await {
            Ok(r) => {
                observe(&r);
                if r.sent > 0 || r.rejected > 0 {
                    tracing::info!(sent = r.sent, batches = r.batches, refused = r.rejected, remaining = r.remaining, "indicators delivered to {}", sink.target());
                }
                match r.error {
                    None => {
                        if failures > 0 {
                            tracing::info!(after_failures = failures, "{} reachable again", sink.target());
                        }
                        failures = 0;
                        None
                    }
                    Some(e) => {
                        failures += 1;
                        let d = backoff(failures, cfg.backoff_initial, cfg.backoff_max, fastrand::f64());
                        tracing::warn!(remaining = r.remaining, failures, retry_in_seconds = d.as_secs_f64(), "{}: {}", sink.target(), e.message);
                        Some(d)
                    }
                }
            }
            Err(e) => {
                failures += 1;
                let d = backoff(failures, cfg.backoff_initial, cfg.backoff_max, fastrand::f64());
                tracing::error!(retry_in_seconds = d.as_secs_f64(), "outbox: {e}");
                Some(d)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(delay.unwrap_or(IDLE_POLL)) => {}
            // While backing off, new points wait for the retry; otherwise they go at once.
            _ = wake.notified(), if delay.is_none() => {}
            _ = shutdown.draining() => {}
        }
        if shutdown.phase() == crate::shutdown::Phase::Draining {
            match drain(&mut store, &sink, cfg.batch_size).await {
                Ok(r) => {
                    observe(&r);
                    if r.error.is_none() {
                        tracing::info!(sent = r.sent, "indicator writer stopped; outbox empty")
                    } else {
                        tracing::warn!(remaining = r.remaining, "indicator writer stopped; points stay queued for the next start")
                    }
                }
                Err(e) => tracing::error!("indicator writer stopped: {e}"),
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(i: i64) -> Point {
        Point::at_second("m", i).tag("k", "v").float("f", i as f64)
    }

    #[test]
    fn enqueue_is_ordered_bounded_and_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let points: Vec<Point> = (1..=5).map(pt).collect();
        let r = store.transaction(|tx| enqueue_bounded(tx, 8, &points, 0)).unwrap();
        assert_eq!((r.queued, r.depth, r.dropped_oldest), (5, 5, 0));
        let mut more: Vec<Point> = (6..=10).map(pt).collect();
        more.push(Point::at_second("m", 11).float("nan", f64::NAN));
        more[0] = more[0].clone().float("inf", f64::INFINITY);
        let r = store.transaction(|tx| enqueue_bounded(tx, 8, &more, 0)).unwrap();
        assert_eq!(r, Enqueued { queued: 5, non_finite_fields: 2, empty_points: 1, dropped_oldest: 2, depth: 8 });
        let lines: Vec<String> = store.outbox_peek(100).unwrap().into_iter().map(|(_, l)| l).collect();
        let want: Vec<String> = (3..=10).map(|i| format!("m,k=v f={i} {i}000000000")).collect();
        assert_eq!(lines, want);
        let st = status(&store).unwrap();
        assert_eq!((st.depth, st.dropped_total, st.rejected), (8, 2, 0));
        assert_eq!(st.oldest_point_at.as_deref(), Some("1970-01-01T00:00:03Z"));
    }

    /// A sink that refuses lines containing "bad" and fails transiently when told to: pure
    /// logic of the drain loop, no network.
    struct Picky {
        down: std::sync::atomic::AtomicBool,
        seen: std::sync::Mutex<Vec<Vec<String>>>,
    }

    impl IndicatorSink for Picky {
        async fn write_lines(&self, lines: &[String]) -> Result<(), SinkError> {
            self.seen.lock().unwrap().push(lines.to_vec());
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(SinkError { kind: SinkErrorKind::Transient, message: "down".into() });
            }
            if lines.iter().any(|l| l.contains("bad")) {
                return Err(SinkError { kind: SinkErrorKind::Rejected, message: "HTTP 400: bad line".into() });
            }
            Ok(())
        }
        fn target(&self) -> String {
            "picky".into()
        }
    }

    #[test]
    fn drain_keeps_order_isolates_refused_lines_and_stops_on_outage() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        let mut points: Vec<Point> = (1..=20).map(pt).collect();
        points[12] = Point::at_second("bad", 13).float("f", 13.0);
        store.transaction(|tx| enqueue_bounded(tx, 100, &points, 0)).unwrap();
        let sink = Picky { down: true.into(), seen: Default::default() };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let r = rt.block_on(drain(&mut store, &sink, 8)).unwrap();
        assert_eq!((r.sent, r.remaining, r.error.map(|e| e.message)), (0, 20, Some("down".to_string())));
        let st = status(&store).unwrap();
        assert_eq!((st.consecutive_failures, st.last_error.as_deref()), (1, Some("down")));

        sink.down.store(false, std::sync::atomic::Ordering::SeqCst);
        sink.seen.lock().unwrap().clear();
        let r = rt.block_on(drain(&mut store, &sink, 8)).unwrap();
        assert_eq!((r.sent, r.rejected, r.remaining), (19, 1, 0));
        assert!(r.error.is_none());
        // Every good line delivered exactly once, in order.
        let seen = sink.seen.lock().unwrap();
        let delivered: Vec<&String> = seen.iter().filter(|b| !b.iter().any(|l| l.contains("bad"))).flatten().collect();
        let want: Vec<String> = (1..=20).filter(|&i| i != 13).map(|i| format!("m,k=v f={i} {i}000000000")).collect();
        assert_eq!(delivered, want.iter().collect::<Vec<_>>());
        let ranges = &r.sent_ranges;
        assert!(ranges.windows(2).all(|w| w[0].1 < w[1].0), "{ranges:?}");
        let st = status(&store).unwrap();
        assert_eq!((st.depth, st.sent_total, st.rejected, st.consecutive_failures), (0, 19, 1, 0));
        let (line, err): (String, String) = store.outbox_rejected().unwrap().remove(0);
        assert_eq!((line.as_str(), err.as_str()), ("bad f=13 13000000000", "HTTP 400: bad line"));
    }
}
