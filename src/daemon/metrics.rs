//! Prometheus metrics of the daemon (`prometheus-client`, OpenMetrics text): the allocation
//! gauges of the last cycle, and the daemon's own health counters. One [`Metrics`] handle lives
//! in the daemon's shared state; its tasks report what they did (a cycle, a delivery pass) and
//! the HTTP server serves [`Metrics::render`] at `/metrics` with [`CONTENT_TYPE`].
//!
//! Counters live in this process (they restart at zero, as Prometheus expects); the outbox's
//! all-time figures are in the store (`allocwatch outbox status`).

use crate::alerts::deliver::DeliveryReport;
use crate::domain::reconciliation::Reconciliation;
use crate::sinks::outbox::{DrainReport, Enqueued};
use crate::sinks::CycleRecord;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

/// Content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;
type FloatGauges = Family<Labels, Gauge<f64, AtomicU64>>;
type Counters = Family<Labels, Counter>;

/// The daemon's metrics.
pub struct Metrics {
    inner: Mutex<Inner>,
}

struct Inner {
    registry: Registry,
    /// Allocation gauges by field name, in registration order.
    allocation: Vec<(&'static str, FloatGauges)>,
    orphan_hours: FloatGauges,
    cycles: Counter,
    last_cycle: Gauge<f64, AtomicU64>,
    pulls: Counters,
    pull_failures: Counters,
    records: Counters,
    rejected_lines: Counters,
    last_success: FloatGauges,
    outbox_depth: Gauge,
    points_sent: Counter,
    points_dropped: Counter,
    points_rejected: Counter,
    send_failures: Counter,
    alerts_sent: Counters,
    job_runs: Counters,
    job_ticks_skipped: Counters,
    job_duration: FloatGauges,
    config_reloads: Counters,
}

/// Allocation gauges: (field, help). Same names as the `allocation` measurement's fields.
const ALLOCATION_FIELDS: &[(&str, &str)] = &[
    ("granted_hours", "Hours granted at the reconciliation instant"),
    ("consumed_hours", "Hours charged within the period so far"),
    ("expected_hours", "Hours the profile expects consumed by now"),
    ("remaining_hours", "Granted minus consumed hours"),
    ("consumed_pct", "Consumed / granted, percent"),
    ("drift_pp", "(consumed - expected) / granted, percentage points"),
    ("burn_rate_hours_per_day", "Charged hours per day over the trailing burn window"),
    ("projected_exhaustion_days", "Days until the grant runs out at the burn rate, when before the period ends"),
    ("projected_unused_hours", "Hours projected unused at the period end"),
    ("status_code", "Status: 0 on_track, 1 over_pace, 2 under_pace, 3 exhausted, 4 not_started, 5 ended"),
    ("committed_hours", "Hours the running jobs may still charge, to their time limits"),
    ("at_risk_hours", "Consumed plus committed hours"),
    ("forecast_exhaustion_p10_days", "Forecast: days until the grant runs out, 10th percentile (absent: not within the period)"),
    ("forecast_exhaustion_p50_days", "Forecast: days until the grant runs out, median"),
    ("forecast_exhaustion_p90_days", "Forecast: days until the grant runs out, 90th percentile"),
    ("forecast_end_consumed_hours_p10", "Forecast: hours consumed by the period end, 10th percentile"),
    ("forecast_end_consumed_hours_p50", "Forecast: hours consumed by the period end, median"),
    ("forecast_end_consumed_hours_p90", "Forecast: hours consumed by the period end, 90th percentile"),
];

impl Inner {
    fn new() -> Inner {
        let mut registry = Registry::with_prefix("allocwatch");
        let mut allocation = Vec::new();
        for (field, help) in ALLOCATION_FIELDS {
            let f = FloatGauges::default();
            registry.register(format!("allocation_{field}"), *help, f.clone());
            allocation.push((*field, f));
        }
        let orphan_hours = FloatGauges::default();
        registry.register("orphan_usage_hours", "Hours no allocation covers over the orphan window (core-hours when unmapped)", orphan_hours.clone());
        let cycles = Counter::default();
        registry.register("cycles", "Reconciliation cycles recorded", cycles.clone());
        let last_cycle = Gauge::<f64, AtomicU64>::default();
        registry.register("last_cycle_timestamp_seconds", "Wall-clock time of the last recorded cycle", last_cycle.clone());
        let pulls = Counters::default();
        registry.register("pulls", "Pulls of a feed (centre, source kind)", pulls.clone());
        let pull_failures = Counters::default();
        registry.register("pull_failures", "Failed pulls of a feed", pull_failures.clone());
        let records = Counters::default();
        registry.register("records_ingested", "Accounting records ingested by successful pulls", records.clone());
        let rejected_lines = Counters::default();
        registry.register("rejected_lines", "Accounting lines rejected by successful pulls", rejected_lines.clone());
        let last_success = FloatGauges::default();
        registry.register("feed_last_success_timestamp_seconds", "Wall-clock time of a feed's last successful pull", last_success.clone());
        let outbox_depth = Gauge::default();
        registry.register("outbox_depth_points", "Indicator points waiting in the outbox", outbox_depth.clone());
        let points_sent = Counter::default();
        registry.register("points_sent", "Indicator points delivered (2xx)", points_sent.clone());
        let points_dropped = Counter::default();
        registry.register("points_dropped", "Indicator points dropped because the outbox was full", points_dropped.clone());
        let points_rejected = Counter::default();
        registry.register("points_rejected", "Indicator points the server refused (kept in outbox_rejected)", points_rejected.clone());
        let send_failures = Counter::default();
        registry.register("outbox_send_failures", "Failed write requests to the indicator sink", send_failures.clone());
        let alerts_sent = Counters::default();
        registry.register("alerts_sent", "Alert notifications delivered, by channel", alerts_sent.clone());
        let job_runs = Counters::default();
        registry.register("job_runs", "Runs of a daemon job (pull:<centre>, reconcile, quality_report) by outcome", job_runs.clone());
        let job_ticks_skipped = Counters::default();
        registry.register("job_ticks_skipped", "Scheduled ticks skipped because the job's previous run was still going", job_ticks_skipped.clone());
        let job_duration = FloatGauges::default();
        registry.register("job_last_duration_seconds", "Duration of a job's last run", job_duration.clone());
        let config_reloads = Counters::default();
        registry.register("config_reloads", "Configuration reloads (SIGHUP) by outcome: applied or rejected", config_reloads.clone());
        Inner {
            job_runs,
            job_ticks_skipped,
            job_duration,
            config_reloads,
            registry,
            allocation,
            orphan_hours,
            cycles,
            last_cycle,
            pulls,
            pull_failures,
            records,
            rejected_lines,
            last_success,
            outbox_depth,
            points_sent,
            points_dropped,
            points_rejected,
            send_failures,
            alerts_sent,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Fresh metrics (counters at zero).
    pub fn new() -> Metrics {
        Metrics { inner: Mutex::new(Inner::new()) }
    }

    fn with<T>(&self, f: impl FnOnce(&Inner) -> T) -> T {
        // A panic elsewhere while holding the lock leaves the metrics usable.
        let m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&m)
    }

    /// The metrics as OpenMetrics text.
    pub fn render(&self) -> String {
        self.with(|m| {
            let mut out = String::new();
            encode(&mut out, &m.registry).expect("writing to a String cannot fail");
            out
        })
    }

    /// After a cycle has committed: replace the allocation and orphan gauges with this cycle's,
    /// and count the feeds' pulls and what went into the outbox.
    pub fn observe_cycle(&self, rec: &Reconciliation, record: &CycleRecord, now: i64) {
        self.with(|m| {
            for (_, g) in &m.allocation {
                g.clear();
            }
            for a in &rec.allocations {
                let labels: Labels = vec![
                    ("centre", a.centre.clone()),
                    ("project", a.project.clone()),
                    ("resource", a.resource.clone()),
                    ("committee", a.committee.clone()),
                    ("period_start", a.period_start.to_string()),
                ];
                let forecast = a.forecast_figures();
                let values = [
                    Some(a.granted_hours.value()),
                    Some(a.consumed_hours.value()),
                    Some(a.expected_hours.value()),
                    Some(a.remaining_hours.value()),
                    a.consumed_pct,
                    a.drift_pp,
                    Some(a.burn_rate_hours_per_day),
                    a.projected_exhaustion_days,
                    Some(a.projected_unused_hours.value()),
                    Some(a.status.code() as f64),
                ]
                .into_iter()
                .chain(forecast.iter().map(|(_, v)| *v));
                for ((_, g), v) in m.allocation.iter().zip(values) {
                    if let Some(v) = v.filter(|v| v.is_finite()) {
                        g.get_or_create(&labels).set(v);
                    }
                }
            }
            m.orphan_hours.clear();
            for o in rec.orphans.iter().chain(&rec.unmapped) {
                let labels: Labels = vec![
                    ("centre", o.centre.clone()),
                    ("account", o.account.clone()),
                    ("partition", o.partition.clone()),
                    ("resource", o.resource.clone().unwrap_or_default()),
                ];
                m.orphan_hours.get_or_create(&labels).inc_by(o.hours.value());
            }
            for f in &record.feeds {
                let labels: Labels = vec![("centre", f.centre.clone()), ("source", f.source.clone())];
                m.pulls.get_or_create(&labels).inc_by(f.pulls as u64);
                m.pull_failures.get_or_create(&labels).inc_by(f.failures as u64);
                m.records.get_or_create(&labels).inc_by(f.records as u64);
                m.rejected_lines.get_or_create(&labels).inc_by(f.rejected as u64);
                if let Some(s) = f.last_success_s {
                    m.last_success.get_or_create(&labels).set(s as f64);
                }
            }
            m.cycles.inc();
            m.last_cycle.set(now as f64);
        });
        self.observe_enqueued(&record.enqueued);
    }

    /// After a transaction that enqueued points has committed: outbox depth and drops.
    pub(crate) fn observe_enqueued(&self, e: &Enqueued) {
        self.with(|m| {
            m.points_dropped.inc_by(e.dropped_oldest);
            if e.queued > 0 || e.dropped_oldest > 0 {
                m.outbox_depth.set(e.depth as i64);
            }
        });
    }

    /// A pass of the indicator writer: points delivered, refused, a failed request, the depth.
    pub(crate) fn observe_drain(&self, r: &DrainReport) {
        self.with(|m| {
            m.points_sent.inc_by(r.sent);
            m.points_rejected.inc_by(r.rejected);
            if r.error.is_some() {
                m.send_failures.inc();
            }
            m.outbox_depth.set(r.remaining as i64);
        });
    }

    /// A delivery pass of the notification outbox: messages delivered, by channel.
    pub fn observe_delivery(&self, r: &DeliveryReport) {
        self.with(|m| {
            for (channel, n) in &r.sent_by_channel {
                m.alerts_sent.get_or_create(&vec![("channel", channel.clone())]).inc_by(*n);
            }
        });
    }

    /// A daemon job ran (`ok` or not) for `seconds`.
    pub(crate) fn record_job_run(&self, job: &str, ok: bool, seconds: f64) {
        self.with(|m| {
            let outcome = if ok { "ok" } else { "failed" };
            m.job_runs.get_or_create(&vec![("job", job.to_string()), ("outcome", outcome.to_string())]).inc();
            m.job_duration.get_or_create(&vec![("job", job.to_string())]).set(seconds);
        });
    }

    /// A scheduled tick of `job` was skipped: its previous run was still going.
    pub(crate) fn record_tick_skipped(&self, job: &str) {
        self.with(|m| m.job_ticks_skipped.get_or_create(&vec![("job", job.to_string())]).inc());
    }

    /// A configuration reload was applied (`true`) or rejected.
    pub(crate) fn record_config_reload(&self, applied: bool) {
        let outcome = if applied { "applied" } else { "rejected" };
        self.with(|m| m.config_reloads.get_or_create(&vec![("outcome", outcome.to_string())]).inc());
    }
}
