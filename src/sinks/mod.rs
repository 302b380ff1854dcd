//! Indicator sinks: what a cycle owes the time-series database, as points, and the seam a
//! client sits behind.
//!
//! - [`Point`] is the model: a measurement, low-cardinality tags, numeric fields (floats or
//!   integers, never strings), a nanosecond timestamp. [`Point::line_protocol`] renders it as
//!   InfluxDB line protocol, byte for byte (tested below); non-finite fields are dropped there,
//!   because InfluxDB refuses NaN and ±inf.
//! - [`cycle_points`] turns a reconciliation and the feeds' pull activity into the `allocation`,
//!   `orphan_usage` and `centre_feed` points documented in README.md.
//! - [`record_cycle`] is the one call a cycle makes inside its store transaction: it notes the
//!   feeds' activity and appends the points to the durable outbox ([`outbox`]), from which a
//!   writer delivers them through an [`IndicatorSink`] ([`influxdb`] is the only one).
//! - [`ood`] writes Open OnDemand balance files (`[ood]`, `allocwatch export ood`): the
//!   remaining hours per project and user, replaced atomically after each cycle.

pub mod influxdb;
pub mod ood;
pub mod outbox;

use crate::domain::reconciliation::Reconciliation;
pub use crate::store::FeedActivity;
use crate::store::{StoreError, Tx};
use influxdb::InfluxConfig;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;

/// A field value: InfluxDB keeps one type per field, so a field is always a float or always an
/// integer (`status_code` and counts are integers, everything else floats).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue {
    /// 64-bit float, written in the shortest form that reads back to the same value.
    Float(f64),
    /// 64-bit signed integer, written with the `i` suffix.
    Integer(i64),
}

/// One point: measurement, tags (low-cardinality identifiers), numeric fields, timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Measurement name.
    pub measurement: String,
    /// Tags, kept sorted by key (InfluxDB's preferred order, and stable bytes).
    pub tags: Vec<(String, String)>,
    /// Fields, in insertion order.
    pub fields: Vec<(String, FieldValue)>,
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
}

/// A point rendered as one line of line protocol, and the fields dropped on the way.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RenderedPoint {
    /// The line (no trailing newline); `None` when no field was left to write.
    pub line: Option<String>,
    /// Fields dropped because their value was NaN or infinite.
    pub non_finite: Vec<String>,
}

impl Point {
    /// A point of `measurement` at `timestamp_s` (epoch seconds).
    pub fn at_second(measurement: &str, timestamp_s: i64) -> Point {
        Point {
            measurement: measurement.to_string(),
            tags: Vec::new(),
            fields: Vec::new(),
            timestamp_ns: timestamp_s.saturating_mul(1_000_000_000),
        }
    }

    /// Set a tag. An empty value leaves the tag out: line protocol has no empty tag values.
    pub fn tag(mut self, key: &str, value: &str) -> Point {
        self.tags.retain(|(k, _)| k != key);
        if !value.is_empty() {
            let at = self.tags.partition_point(|(k, _)| k.as_str() < key);
            self.tags.insert(at, (key.to_string(), value.to_string()));
        }
        self
    }

    /// Add a float field.
    pub fn float(mut self, key: &str, value: f64) -> Point {
        self.fields.push((key.to_string(), FieldValue::Float(value)));
        self
    }

    /// Add a float field when there is a value (absent fields are simply not written).
    pub(crate) fn float_opt(self, key: &str, value: Option<f64>) -> Point {
        match value {
            Some(v) => self.float(key, v),
            None => self,
        }
    }

    /// Add an integer field.
    pub fn integer(mut self, key: &str, value: i64) -> Point {
        self.fields.push((key.to_string(), FieldValue::Integer(value)));
        self
    }

    /// Render as line protocol (nanosecond precision). Non-finite floats are left out and
    /// named in [`RenderedPoint::non_finite`]; a point left without fields renders to `None`.
    pub(crate) fn line_protocol(&self) -> RenderedPoint {
        let mut non_finite = Vec::new();
        let mut fields = String::new();
        for (k, v) in &self.fields {
            match *v {
                FieldValue::Float(x) if !x.is_finite() => {
                    non_finite.push(k.clone());
                    continue;
                }
                _ => {}
            }
            if !fields.is_empty() {
                fields.push(',');
            }
            escape_into(&mut fields, k, KEY_SPECIALS);
            fields.push('=');
            match *v {
                // Rust's `Display` for f64 is the shortest decimal that reads back to the same
                // value and never uses an exponent: valid line protocol as it stands.
                FieldValue::Float(x) => write!(fields, "{x}").expect("write to String"),
                FieldValue::Integer(i) => write!(fields, "{i}i").expect("write to String"),
            }
        }
        if fields.is_empty() {
            return RenderedPoint { line: None, non_finite };
        }
        let mut line = String::with_capacity(self.measurement.len() + fields.len() + 64);
        escape_into(&mut line, &self.measurement, MEASUREMENT_SPECIALS);
        for (k, v) in &self.tags {
            line.push(',');
            escape_into(&mut line, k, KEY_SPECIALS);
            line.push('=');
            escape_into(&mut line, v, KEY_SPECIALS);
        }
        line.push(' ');
        line.push_str(&fields);
        write!(line, " {}", self.timestamp_ns).expect("write to String");
        RenderedPoint { line: Some(line), non_finite }
    }
}

/// Characters escaped with a backslash in a measurement name.
const MEASUREMENT_SPECIALS: &[char] = &[',', ' '];
/// Characters escaped with a backslash in tag keys, tag values and field keys.
const KEY_SPECIALS: &[char] = &[',', '=', ' '];

/// Append `s` escaped for line protocol. Two characters cannot be written faithfully, so they
/// are replaced: control characters (a newline would end the line) become a space, and a
/// backslash becomes `/` — InfluxDB stores `\\` as two backslashes and refuses a trailing one
/// before a separator, VictoriaMetrics reads `\\` as one: no spelling reads back the same
/// everywhere. Identifiers (projects, accounts, partitions) never contain either in practice.
fn escape_into(out: &mut String, s: &str, specials: &[char]) {
    for c in s.chars() {
        let c = match c {
            '\\' => '/',
            c if c.is_control() => ' ',
            c => c,
        };
        if specials.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// Why a sink could not take a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkErrorKind {
    /// The server or the network failed (timeout, refused, 5xx, 429, 401/403/404): retry the
    /// same batch later, with backoff.
    Transient,
    /// The server refused the content (400, 413, 422): retry smaller batches to isolate the
    /// line at fault.
    Rejected,
}

/// A failed write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    /// Retry policy.
    pub kind: SinkErrorKind,
    /// What happened (never contains a secret).
    pub message: String,
}

/// Where indicator points go. One implementation per client library; the outbox writer only
/// knows this trait, so swapping the client touches one module.
pub trait IndicatorSink: Send + Sync {
    /// Write a batch of line-protocol lines (nanosecond timestamps) in one request; `Ok` only
    /// when the server answered 2xx.
    fn write_lines(&self, lines: &[String]) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// Where it writes, for logs (never a secret).
    fn target(&self) -> String;
}

/// The points one cycle owes: `allocation` per allocation, `orphan_usage` per (centre, account,
/// partition, resource) with usage no allocation covers, `centre_feed` per feed. All are
/// stamped with the reconciliation instant.
pub(crate) fn cycle_points(rec: &Reconciliation, feeds: &[FeedActivity]) -> Vec<Point> {
    let mut out = Vec::with_capacity(rec.allocations.len() + rec.orphans.len() + rec.unmapped.len() + feeds.len());
    for a in &rec.allocations {
        let point = Point::at_second("allocation", rec.at)
                .tag("centre", &a.centre)
                .tag("project", &a.project)
                .tag("resource", &a.resource)
                .tag("committee", &a.committee)
                .tag("period_start", &a.period_start.to_string())
                .float("granted_hours", a.granted_hours.value())
                .float("consumed_hours", a.consumed_hours.value())
                .float("expected_hours", a.expected_hours.value())
                .float("remaining_hours", a.remaining_hours.value())
                .float_opt("consumed_pct", a.consumed_pct)
                .float_opt("drift_pp", a.drift_pp)
                .float("burn_rate_hours_per_day", a.burn_rate_hours_per_day)
                .float_opt("projected_exhaustion_days", a.projected_exhaustion_days)
                .float("projected_unused_hours", a.projected_unused_hours.value())
                .integer("status_code", a.status.code());
        out.push(a.forecast_figures().into_iter().fold(point, |p, (field, v)| p.float_opt(field, v)));
    }
    // Cluster is not a tag: the same account and partition on two clusters of a centre (same
    // resource, since the rule decides it, so the same kind of hours) add up into one series
    // instead of overwriting.
    let mut stray: BTreeMap<(&str, &str, &str, Option<&str>), f64> = BTreeMap::new();
    for o in rec.orphans.iter().chain(&rec.unmapped) {
        *stray.entry((&o.centre, &o.account, &o.partition, o.resource.as_deref())).or_default() += o.hours.value();
    }
    for ((centre, account, partition, resource), hours) in stray {
        out.push(
            Point::at_second("orphan_usage", rec.at)
                .tag("centre", centre)
                .tag("account", account)
                .tag("partition", partition)
                .tag("resource", resource.unwrap_or(""))
                .float("hours", hours),
        );
    }
    for f in feeds {
        out.push(
            Point::at_second("centre_feed", rec.at)
                .tag("centre", &f.centre)
                .tag("source", &f.source)
                .integer("records_ingested", f.records)
                .integer("rejected_lines", f.rejected)
                .integer("pulls", f.pulls)
                .integer("pull_failures", f.failures)
                .float_opt("seconds_since_last_success", f.seconds_since_last_success)
                .float("pull_duration_seconds", f.pull_duration_seconds),
        );
    }
    out
}

/// What [`record_cycle`] did.
#[derive(Debug, Clone, Default)]
pub struct CycleRecord {
    /// Pull activity of each feed since the previous cycle.
    pub feeds: Vec<FeedActivity>,
    /// What went into the outbox (nothing when no sink is configured).
    pub enqueued: outbox::Enqueued,
}

/// Called by a cycle inside its transaction: note which pulls this cycle accounts for, and
/// append the cycle's points to the outbox when a sink is configured. `now` is the wall clock
/// (epoch seconds) that ages the feeds.
pub(crate) fn record_cycle(tx: &Tx<'_>, influx: Option<&InfluxConfig>, cycle_id: i64, rec: &Reconciliation, now: i64) -> Result<CycleRecord, StoreError> {
    let feeds = tx.feed_activity(cycle_id, now)?;
    let enqueued = outbox::enqueue(tx, influx, &cycle_points(rec, &feeds), now)?;
    Ok(CycleRecord { feeds, enqueued })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(p: &Point) -> String {
        p.line_protocol().line.expect("a line")
    }

    #[test]
    fn exact_bytes_with_escaping() {
        let p = Point::at_second("allocation", 1_768_953_600)
            .tag("project", "A0150612345")
            .tag("committee", "CT 5, a=b")
            .tag("centre", "idris")
            .float("granted_hours", 1200.0)
            .float("drift_pp", -9.333333333333334)
            .integer("status_code", 0);
        assert_eq!(
            line(&p),
            "allocation,centre=idris,committee=CT\\ 5\\,\\ a\\=b,project=A0150612345 \
             granted_hours=1200,drift_pp=-9.333333333333334,status_code=0i 1768953600000000000"
        );
        // Measurement: commas and spaces escaped, equals signs not.
        let p = Point::at_second("my meas,x=y", 0).tag("k e,y=", "v").float("f i=eld", 0.5);
        assert_eq!(line(&p), "my\\ meas\\,x=y,k\\ e\\,y\\==v f\\ i\\=eld=0.5 0");
    }

    #[test]
    fn integers_and_floats_are_distinct() {
        let p = Point::at_second("m", 1).float("a", 3.0).integer("b", 3).integer("c", -42).float("d", 1e-7).float("e", 1e21);
        assert_eq!(line(&p), "m a=3,b=3i,c=-42i,d=0.0000001,e=1000000000000000000000 1000000000");
    }

    #[test]
    fn backslashes_and_control_characters() {
        // A trailing backslash must not escape the separator that follows it: it becomes `/`.
        let p = Point::at_second("m", 0).tag("t", "a\\").tag("u", "x\ny\tz").tag("v", "b\\ c").float("f", 1.0);
        assert_eq!(line(&p), "m,t=a/,u=x\\ y\\ z,v=b/\\ c f=1 0");
    }

    #[test]
    fn empty_tags_are_left_out_and_tags_sorted() {
        let p = Point::at_second("m", 0).tag("b", "2").tag("a", "").tag("c", "3").tag("a", "1").tag("c", "").float("f", 1.0);
        assert_eq!(p.tags, vec![("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())]);
        assert_eq!(line(&p), "m,a=1,b=2 f=1 0");
    }

    #[test]
    fn non_finite_fields_are_dropped_never_written() {
        let p = Point::at_second("m", 2).float("nan", f64::NAN).float("ok", 2.5).float("inf", f64::INFINITY).float("ninf", f64::NEG_INFINITY);
        let r = p.line_protocol();
        assert_eq!(r.line.as_deref(), Some("m ok=2.5 2000000000"));
        assert_eq!(r.non_finite, vec!["nan", "inf", "ninf"]);
        let r = Point::at_second("m", 2).float("nan", f64::NAN).line_protocol();
        assert_eq!(r, RenderedPoint { line: None, non_finite: vec!["nan".into()] });
        assert_eq!(Point::at_second("m", 2).line_protocol().line, None);
    }

    #[test]
    fn floats_read_back_exactly() {
        for x in [0.1, 1.0 / 3.0, 123456.789e10, -0.0, f64::MIN_POSITIVE, f64::MAX, 2.0f64.powi(60)] {
            let l = line(&Point::at_second("m", 0).float("f", x));
            let v = l.split_once("f=").unwrap().1.split_once(' ').unwrap().0;
            assert_eq!(v.parse::<f64>().unwrap().to_bits(), x.to_bits(), "{l}");
        }
    }
}
