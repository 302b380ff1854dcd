//! Pure computation of the quality indicators: loaded facts in, figures out, and the facts
//! behind any one figure (`--explain`). No clock, no I/O: the same inputs give the same figures,
//! summed in the inputs' order (the loader sorts them), so the printed bytes are stable.
//!
//! Every figure is computed per scope — overall, each centre, each committee — over each
//! centre's window `[period start, min(period end, as of))` in the centre's local time.

use super::hours::{HoursByKind, HoursKind, ResourceHours};
use super::reconcile::{is_exhausted, pace, Pace, Status, Thresholds};
use super::reconciliation::AllocationReport;
use super::rules::Rule;
use super::time::rfc3339;
use jiff::civil::Date;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A reporting period: a calendar month, quarter or year, in each centre's local days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    /// As given and as tagged: `2026-09`, `2026-Q3`, `2026`.
    pub label: String,
    /// First day.
    pub start: Date,
    /// Day after the last day (exclusive).
    pub end: Date,
}

impl Period {
    /// Parse `YYYY`, `YYYY-Qn` or `YYYY-MM`.
    pub fn parse(s: &str) -> Result<Period, String> {
        let s = s.trim();
        let bad = || format!("`{s}` is not a period: use a year (2026), a quarter (2026-Q3) or a month (2026-09)");
        let (y, rest) = match s.split_once('-') {
            Some((y, r)) => (y, Some(r)),
            None => (s, None),
        };
        if y.len() != 4 || !y.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let year: i16 = y.parse().map_err(|_| bad())?;
        if !(1970..=9998).contains(&year) {
            return Err(bad());
        }
        match rest {
            None => Ok(Period { label: format!("{year:04}"), start: Date::constant(year, 1, 1), end: Date::constant(year + 1, 1, 1) }),
            Some(r) if r.len() == 2 && (r.starts_with('Q') || r.starts_with('q')) => {
                let q: i8 = r[1..].parse().map_err(|_| bad())?;
                if !(1..=4).contains(&q) {
                    return Err(bad());
                }
                let start = Date::new(year, 3 * q - 2, 1).map_err(|_| bad())?;
                let end = if q == 4 { Date::new(year + 1, 1, 1) } else { Date::new(year, 3 * q + 1, 1) }.map_err(|_| bad())?;
                Ok(Period { label: format!("{year:04}-Q{q}"), start, end })
            }
            Some(r) if r.len() == 2 && r.bytes().all(|b| b.is_ascii_digit()) => {
                let m: i8 = r.parse().map_err(|_| bad())?;
                if !(1..=12).contains(&m) {
                    return Err(bad());
                }
                Ok(Period::month(year, m))
            }
            Some(_) => Err(bad()),
        }
    }

    /// The calendar month `month` of `year`.
    pub fn month(year: i16, month: i8) -> Period {
        let start = Date::new(year, month, 1).expect("valid month");
        let end = if month == 12 { Date::new(year + 1, 1, 1) } else { Date::new(year, month + 1, 1) }.expect("valid month");
        Period { label: format!("{year:04}-{month:02}"), start, end }
    }

    /// The calendar months of the period, in order.
    pub(crate) fn months(&self) -> Vec<Period> {
        let mut out = Vec::new();
        let mut d = self.start;
        while d < self.end {
            let m = Period::month(d.year(), d.month());
            d = m.end;
            out.push(m);
        }
        out
    }
}

/// Round to two decimals, without a negative zero.
pub(crate) fn round2(v: f64) -> f64 {
    let r = (v * 100.0).round() / 100.0;
    if r == 0.0 {
        0.0
    } else {
        r
    }
}

/// Two decimals, fixed: how every figure of the report is printed.
pub fn fixed(v: f64) -> String {
    format!("{:.2}", round2(v))
}

/// Nearest-rank percentile of `v` (none when empty).
pub(crate) fn percentile(v: &[f64], p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    Some(s[rank.min(s.len()) - 1])
}

/// Committee scope of allocations that name none.
pub(crate) const NO_COMMITTEE: &str = "(none)";
/// `within_10pp_pct`: the band around the expected pace, in percentage points.
pub(crate) const WITHIN_PP: f64 = 10.0;
/// Scope id of the overall scope.
pub(crate) const OVERALL_ID: &str = "all";
/// The four standings an allocation can have while (or once) it runs.
pub(crate) const STANDINGS: [Status; 4] = [Status::OnTrack, Status::OverPace, Status::UnderPace, Status::Exhausted];
/// Rules, in the order reported (alerts by rule).
pub(crate) const RULES: [&str; Rule::ALL.len()] = {
    let mut names = [""; Rule::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = Rule::ALL[i].as_str();
        i += 1;
    }
    names
};

/// What a figure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeKind {
    /// Every centre in the report.
    Overall,
    /// One centre.
    Centre,
    /// One committee (allocations it granted, at every centre).
    Committee,
}

impl ScopeKind {
    /// Tag value.
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeKind::Overall => "overall",
            ScopeKind::Centre => "centre",
            ScopeKind::Committee => "committee",
        }
    }
}

/// A scope: kind and id (`all`, a centre id, a committee name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Scope {
    /// Kind.
    pub kind: ScopeKind,
    /// Id.
    pub id: String,
}

impl Scope {
    fn matches(&self, centre: &str, committee: Option<&str>) -> bool {
        match self.kind {
            ScopeKind::Overall => true,
            ScopeKind::Centre => centre == self.id,
            ScopeKind::Committee => committee == Some(self.id.as_str()),
        }
    }
}

/// Unit of a figure (serialised as printed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count.
    Count,
    /// Hours of wall-clock time.
    Hours,
    /// Compute hours of one kind (core-hours, GPU-hours, billing-hours).
    Compute(HoursKind),
    /// Percent.
    Percent,
    /// Days.
    Days,
}

impl Serialize for Unit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Unit {
    /// As printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "count",
            Unit::Hours => "hours",
            Unit::Compute(k) => k.as_str(),
            Unit::Percent => "%",
            Unit::Days => "days",
        }
    }
}

/// One figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// Scope.
    pub scope: Scope,
    /// Indicator id (`consumed_hours`, `alerts_fired.exhausted`, `status_on_track@2026-07`…).
    pub indicator: String,
    /// Value; none when it has no meaning (a rate of nothing, a rule that is not about a committee).
    pub value: Option<f64>,
    /// Unit.
    pub unit: Unit,
}

/// A report: figures in a stable order (scope, then indicator).
#[derive(Debug, Clone, PartialEq)]
pub struct QualityReport {
    /// The period.
    pub period: Period,
    /// Whether the store's data reaches the period end in every centre.
    pub complete: bool,
    /// The instant the figures stop at when the period is not complete.
    pub as_of: Option<i64>,
    /// Minimum lead, days, for `warned_ahead_pct`.
    pub min_lead_days: f64,
    /// The one centre reported on, if restricted.
    pub centre_filter: Option<String>,
    /// Scopes, in order.
    pub scopes: Vec<Scope>,
    /// Month labels with a month-end standing.
    pub months: Vec<String>,
    /// The kinds of hours reported (each has its own granted and consumed figures).
    pub kinds: Vec<HoursKind>,
    /// Figures.
    pub figures: Vec<Figure>,
}

impl QualityReport {
    /// The figure of an indicator in a scope.
    pub fn value(&self, kind: ScopeKind, id: &str, indicator: &str) -> Option<f64> {
        self.figures.iter().find(|f| f.scope.kind == kind && f.scope.id == id && f.indicator == indicator).and_then(|f| f.value)
    }
}

// ---- inputs --------------------------------------------------------------------------------

/// A centre in the report and its window `[start_s, end_s)`.
#[derive(Debug, Clone, PartialEq)]
pub struct CentreWindow {
    /// Centre id.
    pub centre: String,
    /// Local midnight starting the period.
    pub start_s: i64,
    /// Local midnight ending it, or the as-of instant when earlier.
    pub end_s: i64,
    /// Local midnight ending the period.
    pub period_end_s: i64,
}

/// An allocation whose period overlaps its centre's window.
#[derive(Debug, Clone, PartialEq)]
pub struct AllocationFacts {
    /// Centre.
    pub centre: String,
    /// Project.
    pub project: String,
    /// Resource.
    pub resource: String,
    /// The kind of hours of the resource.
    pub kind: HoursKind,
    /// Committee ([`NO_COMMITTEE`] when none).
    pub committee: String,
    /// Alert subject (`centre/project/resource/period_start`).
    pub subject: String,
    /// Where it is declared (`file:line`).
    pub origin: String,
    /// Allocation period start (local midnight), epoch seconds.
    pub start_s: i64,
    /// Allocation period end (exclusive).
    pub end_s: i64,
    /// Granted hours on the last day of the overlap (initial + adjustments dated ≤ that day).
    pub granted_at_end_hours: f64,
    /// Consumed within its period up to the window start.
    pub consumed_before_hours: f64,
    /// Consumed within its period up to the window end.
    pub consumed_at_end_hours: f64,
    /// Consumed over its whole period, when that period ended by the window end (the outcome
    /// its forecasts are scored against, `forecast_coverage_pct`); none while it still runs.
    pub final_consumed_hours: Option<f64>,
    /// The overlap of its period with the window, epoch seconds.
    pub overlap: (i64, i64),
}

impl AllocationFacts {
    /// Share of its period inside the window.
    pub fn share(&self) -> f64 {
        (self.overlap.1 - self.overlap.0) as f64 / (self.end_s - self.start_s).max(1) as f64
    }
    /// Granted hours attributed to the window: grant × share (pro rata temporis).
    pub fn granted_hours(&self) -> ResourceHours {
        ResourceHours::new(self.kind, self.granted_at_end_hours * self.share())
    }
    /// Hours it consumed inside the window.
    pub fn consumed_hours(&self) -> ResourceHours {
        ResourceHours::new(self.kind, self.consumed_at_end_hours - self.consumed_before_hours)
    }
}

/// Where an allocation stood at an instant (a month end, or the window end).
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    /// `end` (the window end) or a month label `YYYY-MM`.
    pub snapshot: String,
    /// Index into [`Inputs::allocations`].
    pub allocation: usize,
    /// The instant.
    pub at_s: i64,
    /// Status (one of [`STANDINGS`]).
    pub status: Status,
    /// Drift, percentage points (none when nothing is granted).
    pub drift_pp: Option<f64>,
    /// Consumed / granted, %.
    pub consumed_pct: Option<f64>,
    /// The forecast made at the instant: P10 and P90 of the hours consumed by the period end
    /// (none without a forecast: too little history, or the period not running then).
    pub end_consumed_band: Option<(f64, f64)>,
}

/// A dated adjustment of an allocation in the report.
#[derive(Debug, Clone, PartialEq)]
pub struct AdjustmentFacts {
    /// Centre.
    pub centre: String,
    /// Committee of the allocation.
    pub committee: String,
    /// Project.
    pub project: String,
    /// Resource.
    pub resource: String,
    /// The kind of hours of the resource.
    pub hours_kind: HoursKind,
    /// Date (`YYYY-MM-DD`).
    pub date: String,
    /// Local midnight of the date, epoch seconds (when it takes effect).
    pub effective_s: i64,
    /// Signed hours.
    pub hours: f64,
    /// `topup`, `withdrawal`, `transfer`.
    pub kind: String,
    /// Free text.
    pub reason: String,
    /// `file:line`.
    pub origin: String,
}

/// An alert of the store.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertFacts {
    /// Id.
    pub id: i64,
    /// Rule name.
    pub rule: String,
    /// Subject (allocation or centre).
    pub subject: String,
    /// Threshold or checkpoint.
    pub discriminator: String,
    /// Centre.
    pub centre: String,
    /// Committee of its allocation; none for centre alerts or allocations no longer declared.
    pub committee: Option<String>,
    /// When it fired (reconciliation instant).
    pub fired_at: i64,
}

/// A reminder (re-notification) of an alert.
#[derive(Debug, Clone, PartialEq)]
pub struct ReminderFacts {
    /// `alert_events` id.
    pub event_id: i64,
    /// Alert.
    pub alert_id: i64,
    /// Reconciliation instant.
    pub at: i64,
}

/// A notification of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationFacts {
    /// Id.
    pub id: i64,
    /// Reconciliation instant of the cycle that queued it.
    pub at: i64,
    /// Channel.
    pub channel: String,
    /// Audience.
    pub audience: String,
    /// Recipient.
    pub recipient: String,
    /// `pending` or `sent`.
    pub state: String,
    /// Delivery attempts (the successful one included).
    pub attempts: i64,
    /// Delivery passes that held it back because its channel had just failed.
    pub deferrals: i64,
    /// Last error.
    pub last_error: Option<String>,
    /// Alerts it is about.
    pub alert_ids: Vec<i64>,
}

impl NotificationFacts {
    /// Accepted by its receiver, but not at the first try.
    pub fn retried(&self) -> bool {
        self.state == "sent" && (self.attempts > 1 || self.deferrals > 0)
    }
    /// Still not accepted after at least one delivery pass tried or held it.
    pub fn failed(&self) -> bool {
        self.state == "pending" && (self.attempts > 0 || self.deferrals > 0)
    }
}

/// A pull (or import) of a centre's accounting.
#[derive(Debug, Clone, PartialEq)]
pub struct PullFacts {
    /// Id.
    pub id: i64,
    /// Centre.
    pub centre: String,
    /// Source.
    pub source: String,
    /// Started, epoch seconds.
    pub started_at: i64,
    /// Finished.
    pub finished_at: i64,
    /// Succeeded.
    pub ok: bool,
    /// Records read.
    pub records: i64,
    /// Lines rejected.
    pub rejected: i64,
    /// Error of a failed pull.
    pub error: Option<String>,
}

/// How usage is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageClass {
    /// To an allocation.
    Allocated,
    /// Mapped partition, account with no active allocation of that resource.
    Orphan,
    /// Partition no billing rule maps.
    Unmapped,
}

impl UsageClass {
    /// As printed.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageClass::Allocated => "allocated",
            UsageClass::Orphan => "orphan",
            UsageClass::Unmapped => "unmapped",
        }
    }
}

/// CPU usage of one (centre, cluster, account, partition, class) inside the window.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageFacts {
    /// Centre.
    pub centre: String,
    /// Cluster.
    pub cluster: String,
    /// Account.
    pub account: String,
    /// Partition.
    pub partition: String,
    /// Class.
    pub class: UsageClass,
    /// CPU-seconds (exact integers from the ledger).
    pub cpu_seconds: i64,
}

/// Everything the figures are computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    /// Period.
    pub period: Period,
    /// The latest instant the figures may use (period not over), if before some centre's end.
    pub as_of: i64,
    /// Minimum lead, days, for `warned_ahead_pct`.
    pub min_lead_days: f64,
    /// Restricted to one centre (no overall scope then).
    pub centre_filter: Option<String>,
    /// Centres and their windows, by id.
    pub centres: Vec<CentreWindow>,
    /// Months with a standing, in order.
    pub months: Vec<String>,
    /// Allocations overlapping the windows, in a stable order.
    pub allocations: Vec<AllocationFacts>,
    /// Standings at the window end (`end`) and at month ends.
    pub standings: Vec<Standing>,
    /// Adjustments of the centres' allocations (every date; filtered here).
    pub adjustments: Vec<AdjustmentFacts>,
    /// Alerts (all of them: warnings may predate the period).
    pub alerts: Vec<AlertFacts>,
    /// Reminders.
    pub reminders: Vec<ReminderFacts>,
    /// Notifications.
    pub notifications: Vec<NotificationFacts>,
    /// Pulls.
    pub pulls: Vec<PullFacts>,
    /// Usage inside the windows.
    pub usage: Vec<UsageFacts>,
}

impl Inputs {
    fn window(&self, centre: &str) -> Option<(i64, i64)> {
        self.centres.iter().find(|c| c.centre == centre).map(|c| (c.start_s, c.end_s))
    }
    fn in_window(&self, centre: &str, t: i64) -> bool {
        self.window(centre).is_some_and(|(s, e)| s <= t && t < e)
    }
    /// The kinds of hours of the report's allocations and adjustments, in report order.
    pub fn kinds(&self) -> Vec<HoursKind> {
        let present: BTreeSet<HoursKind> = self.allocations.iter().map(|a| a.kind).chain(self.adjustments.iter().map(|a| a.hours_kind)).collect();
        present.into_iter().collect()
    }
    fn complete(&self) -> bool {
        // Every centre's window runs to its period end (the loader cuts it at as_of otherwise).
        self.centres.iter().all(|c| c.end_s >= c.period_end_s)
    }
}

/// An allocation's standing at an instant from its reconciliation there. Once its period has
/// ended it keeps its final standing: exhausted if it consumed its grant, under pace if it left
/// more of it unused than the under-pace drift allows, on track otherwise. `None` before it starts.
pub fn standing(r: &AllocationReport, th: &Thresholds) -> Option<(Status, Option<f64>)> {
    match r.status {
        Status::NotStarted => None,
        Status::Ended => {
            // At the end the profile expects the whole grant: drift = consumed/granted − 100 %.
            let status = if is_exhausted(r.granted_hours.value(), r.consumed_hours.value()) {
                Status::Exhausted
            // The whole period has elapsed and nothing is left to project: the pace rule
            // then says behind exactly when the drift is under the under-pace threshold.
            } else if pace(r.drift_pp, 1.0, None, r.end_s, th) == Pace::Behind {
                Status::UnderPace
            } else {
                Status::OnTrack
            };
            Some((status, r.drift_pp))
        }
        s => Some((s, r.drift_pp)),
    }
}

// ---- selections (shared by the figures and by --explain) -----------------------------------

fn allocations_in<'a>(inp: &'a Inputs, scope: &'a Scope) -> impl Iterator<Item = (usize, &'a AllocationFacts)> + 'a {
    inp.allocations.iter().enumerate().filter(move |(_, a)| scope.matches(&a.centre, Some(&a.committee)))
}

fn adjustments_in<'a>(inp: &'a Inputs, scope: &'a Scope) -> impl Iterator<Item = &'a AdjustmentFacts> + 'a {
    inp.adjustments
        .iter()
        .filter(move |a| scope.matches(&a.centre, Some(&a.committee)) && inp.in_window(&a.centre, a.effective_s))
}

fn standings_in<'a>(inp: &'a Inputs, snapshot: &'a str, scope: &'a Scope) -> impl Iterator<Item = &'a Standing> + 'a {
    inp.standings.iter().filter(move |s| {
        let a = &inp.allocations[s.allocation];
        s.snapshot == snapshot && scope.matches(&a.centre, Some(&a.committee))
    })
}

fn alerts_fired_in<'a>(inp: &'a Inputs, scope: &'a Scope, rule: Option<&'a str>) -> impl Iterator<Item = &'a AlertFacts> + 'a {
    inp.alerts.iter().filter(move |a| {
        rule.map_or(true, |r| a.rule == r) && scope.matches(&a.centre, a.committee.as_deref()) && inp.in_window(&a.centre, a.fired_at)
    })
}

fn reminders_in<'a>(inp: &'a Inputs, scope: &'a Scope, alerts: &'a HashMap<i64, &'a AlertFacts>) -> impl Iterator<Item = (&'a ReminderFacts, &'a AlertFacts)> + 'a {
    inp.reminders.iter().filter_map(move |r| {
        let a = alerts.get(&r.alert_id)?;
        (scope.matches(&a.centre, a.committee.as_deref()) && inp.in_window(&a.centre, r.at)).then_some((r, *a))
    })
}

fn notifications_in<'a>(inp: &'a Inputs, scope: &'a Scope, alerts: &'a HashMap<i64, &'a AlertFacts>) -> impl Iterator<Item = &'a NotificationFacts> + 'a {
    // A message counts in every scope one of its alerts belongs to (a digest may cover several).
    inp.notifications.iter().filter(move |n| {
        n.alert_ids.iter().filter_map(|id| alerts.get(id)).any(|a| scope.matches(&a.centre, a.committee.as_deref()) && inp.in_window(&a.centre, n.at))
    })
}

fn pulls_in<'a>(inp: &'a Inputs, scope: &'a Scope) -> impl Iterator<Item = &'a PullFacts> + 'a {
    inp.pulls.iter().filter(move |p| scope.matches(&p.centre, None) && inp.in_window(&p.centre, p.started_at))
}

fn usage_in<'a>(inp: &'a Inputs, scope: &'a Scope) -> impl Iterator<Item = &'a UsageFacts> + 'a {
    inp.usage.iter().filter(move |u| scope.matches(&u.centre, None))
}

/// An allocation that ran out of hours in the window, and how early it had been warned.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Exhaustion {
    /// Allocation subject.
    pub subject: String,
    /// Centre.
    pub centre: String,
    /// Committee.
    pub committee: Option<String>,
    /// The `exhausted` alert (its first firing for this allocation).
    pub alert_id: i64,
    /// When it fired.
    pub exhausted_at: i64,
    /// First warning (over_pace, checkpoint, threshold ≥ 75 %) fired at or before it: (alert id, rule, fired at).
    pub warning: Option<(i64, String, i64)>,
}

impl Exhaustion {
    /// Days from the first warning to exhaustion (0 when never warned).
    pub fn lead_days(&self) -> f64 {
        self.warning.as_ref().map(|w| (self.exhausted_at - w.2) as f64 / 86400.0).unwrap_or(0.0)
    }
}

/// Whether an alert warns of a coming exhaustion ([`Rule::warns_of_exhaustion`]).
fn warns(a: &AlertFacts) -> bool {
    Rule::parse(&a.rule).is_some_and(|r| r.warns_of_exhaustion(&a.discriminator))
}

/// The first cells of an explained standing: snapshot, instant, and whose allocation it is.
fn standing_cells(s: &Standing, a: &AllocationFacts) -> Vec<String> {
    vec![s.snapshot.clone(), utc(s.at_s), a.centre.clone(), a.committee.clone(), a.project.clone(), a.resource.clone()]
}

fn exhaustions_in(inp: &Inputs, scope: &Scope) -> Vec<Exhaustion> {
    let mut first: BTreeMap<&str, &AlertFacts> = BTreeMap::new();
    for a in inp.alerts.iter().filter(|a| Rule::parse(&a.rule).is_some_and(|r| r.marks_exhaustion(&a.discriminator))) {
        let e = first.entry(a.subject.as_str()).or_insert(a);
        if (a.fired_at, a.id) < (e.fired_at, e.id) {
            *e = a;
        }
    }
    let mut out: Vec<Exhaustion> = first
        .into_values()
        .filter(|a| scope.matches(&a.centre, a.committee.as_deref()) && inp.in_window(&a.centre, a.fired_at))
        .map(|ex| {
            let warning = inp
                .alerts
                .iter()
                .filter(|w| w.subject == ex.subject && warns(w) && w.fired_at <= ex.fired_at)
                .min_by_key(|w| (w.fired_at, w.id))
                .map(|w| (w.id, w.rule.clone(), w.fired_at));
            Exhaustion {
                subject: ex.subject.clone(),
                centre: ex.centre.clone(),
                committee: ex.committee.clone(),
                alert_id: ex.id,
                exhausted_at: ex.fired_at,
                warning,
            }
        })
        .collect();
    out.sort_by(|a, b| (a.exhausted_at, &a.subject).cmp(&(b.exhausted_at, &b.subject)));
    out
}

/// A month-end forecast whose outcome is known: the allocation's period ended by its centre's
/// window end.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScoredForecast<'a> {
    /// The month-end standing the forecast was made at.
    pub standing: &'a Standing,
    /// Its allocation.
    pub allocation: &'a AllocationFacts,
    /// P10 and P90 of the hours consumed by the period end.
    pub band: (f64, f64),
    /// The hours it consumed over its whole period.
    pub actual: f64,
}

impl ScoredForecast<'_> {
    /// Whether the band held the outcome ([`super::forecast::band_holds`]).
    pub fn covered(&self) -> bool {
        super::forecast::band_holds(self.band.0, self.band.1, self.actual)
    }
}

/// The forecasts `forecast_coverage_pct` scores, in the standings' order (month, then
/// allocation): those of the month-end standings of allocations whose period ended by the
/// window end, made while they had not run out — as `allocwatch replay
/// --forecast-calibration` scores only forecasts of running allocations that have hours left.
/// The window-end standing (`end`) is not a forecast instant: at a period's end the
/// allocations it scores have ended and have no forecast.
fn forecasts_scored_in<'a>(inp: &'a Inputs, scope: &'a Scope) -> impl Iterator<Item = ScoredForecast<'a>> + 'a {
    inp.standings.iter().filter_map(move |s| {
        let a = &inp.allocations[s.allocation];
        if !inp.months.contains(&s.snapshot) || !scope.matches(&a.centre, Some(&a.committee)) || s.status == Status::Exhausted {
            return None;
        }
        Some(ScoredForecast { standing: s, allocation: a, band: s.end_consumed_band?, actual: a.final_consumed_hours? })
    })
}

/// A stretch of a centre's window without a successful pull finishing in it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Gap {
    /// Centre.
    pub centre: String,
    /// From (window start or a successful pull's end).
    pub from: i64,
    /// To (a successful pull's end, or the window end).
    pub to: i64,
    /// The pull that ended it, if any.
    pub ended_by: Option<i64>,
}

fn gaps(inp: &Inputs, centre: &str) -> Vec<Gap> {
    let Some((ws, we)) = inp.window(centre) else { return Vec::new() };
    if we <= ws {
        return Vec::new();
    }
    let mut ends: Vec<(i64, i64)> = inp
        .pulls
        .iter()
        .filter(|p| p.centre == centre && p.ok && ws <= p.started_at && p.started_at < we)
        .map(|p| (p.finished_at.clamp(ws, we), p.id))
        .collect();
    ends.sort();
    let mut out = Vec::new();
    let mut from = ws;
    for (t, id) in ends {
        out.push(Gap { centre: centre.to_string(), from, to: t, ended_by: Some(id) });
        from = t;
    }
    out.push(Gap { centre: centre.to_string(), from, to: we, ended_by: None });
    out
}

fn longest_gap_hours(inp: &Inputs, scope: &Scope) -> Option<f64> {
    inp.centres
        .iter()
        .filter(|c| scope.matches(&c.centre, None))
        .flat_map(|c| gaps(inp, &c.centre))
        .map(|g| (g.to - g.from) as f64 / 3600.0)
        .fold(None, |m: Option<f64>, h| Some(m.map_or(h, |m| m.max(h))))
}

// ---- figures --------------------------------------------------------------------------------

fn pct(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| 100.0 * part / whole)
}

fn scopes(inp: &Inputs) -> Vec<Scope> {
    let mut out = Vec::new();
    if inp.centre_filter.is_none() {
        out.push(Scope { kind: ScopeKind::Overall, id: OVERALL_ID.into() });
    }
    for c in &inp.centres {
        out.push(Scope { kind: ScopeKind::Centre, id: c.centre.clone() });
    }
    let committees: BTreeSet<&str> = inp.allocations.iter().map(|a| a.committee.as_str()).collect();
    for c in committees {
        out.push(Scope { kind: ScopeKind::Committee, id: c.to_string() });
    }
    out
}

/// Standing figures of one snapshot: counts and shares by status, and the share within ±10 pp.
fn standing_figures(inp: &Inputs, scope: &Scope, snapshot: &str, suffix: &str, push: &mut impl FnMut(String, Option<f64>, Unit)) {
    let list: Vec<&Standing> = standings_in(inp, snapshot, scope).collect();
    let total = list.len() as f64;
    for s in STANDINGS {
        let n = list.iter().filter(|x| x.status == s).count() as f64;
        push(format!("status_{}{suffix}", s.as_str()), Some(n), Unit::Count);
        push(format!("status_{}_pct{suffix}", s.as_str()), pct(n, total), Unit::Percent);
    }
    let within = list.iter().filter(|x| x.drift_pp.is_some_and(|d| d.abs() <= WITHIN_PP)).count() as f64;
    push(format!("within_10pp_pct{suffix}"), pct(within, total), Unit::Percent);
}

/// Compute every figure of the report.
pub fn compute(inp: &Inputs) -> QualityReport {
    let scopes = scopes(inp);
    let kinds = inp.kinds();
    let alerts: HashMap<i64, &AlertFacts> = inp.alerts.iter().map(|a| (a.id, a)).collect();
    let mut figures = Vec::new();
    for scope in &scopes {
        let mut push = |indicator: String, value: Option<f64>, unit: Unit| {
            figures.push(Figure { scope: scope.clone(), indicator, value, unit });
        };
        // Hours: one sum per kind (core-hours and GPU-hours never add), counts overall and per kind.
        let allocs: Vec<&AllocationFacts> = allocations_in(inp, scope).map(|(_, a)| a).collect();
        let adj: Vec<&AdjustmentFacts> = adjustments_in(inp, scope).collect();
        push("allocations".into(), Some(allocs.len() as f64), Unit::Count);
        let granted: HoursByKind = allocs.iter().map(|a| a.granted_hours()).collect();
        let consumed: HoursByKind = allocs.iter().map(|a| a.consumed_hours()).collect();
        let added: HoursByKind = adj.iter().filter(|a| a.hours > 0.0).map(|a| ResourceHours::new(a.hours_kind, a.hours)).collect();
        let taken: HoursByKind = adj.iter().filter(|a| a.hours < 0.0).map(|a| ResourceHours::new(a.hours_kind, -a.hours)).collect();
        for &k in &kinds {
            let (g, c) = (granted.of(k).value(), consumed.of(k).value());
            let id = k.id();
            push(format!("allocations.{id}"), Some(allocs.iter().filter(|a| a.kind == k).count() as f64), Unit::Count);
            push(format!("granted_hours.{id}"), Some(g), Unit::Compute(k));
            push(format!("consumed_hours.{id}"), Some(c), Unit::Compute(k));
            push(format!("utilisation_pct.{id}"), pct(c, g), Unit::Percent);
            push(format!("added_hours.{id}"), Some(added.of(k).value()), Unit::Compute(k));
            push(format!("taken_back_hours.{id}"), Some(taken.of(k).value()), Unit::Compute(k));
            push(format!("adjustments.{id}"), Some(adj.iter().filter(|a| a.hours_kind == k).count() as f64), Unit::Count);
        }
        push("adjustments".into(), Some(adj.len() as f64), Unit::Count);
        // Standings.
        standing_figures(inp, scope, "end", "", &mut push);
        for m in &inp.months {
            standing_figures(inp, scope, m, &format!("@{m}"), &mut push);
        }
        // Alerts. Centre alerts (orphan usage, stale feed) belong to no committee.
        let committee = scope.kind == ScopeKind::Committee;
        push("alerts_fired".into(), Some(alerts_fired_in(inp, scope, None).count() as f64), Unit::Count);
        for rule in RULES {
            let value = if committee && matches!(rule, "orphan_usage" | "stale_feed") {
                None
            } else {
                Some(alerts_fired_in(inp, scope, Some(rule)).count() as f64)
            };
            push(format!("alerts_fired.{rule}"), value, Unit::Count);
        }
        push("reminders".into(), Some(reminders_in(inp, scope, &alerts).count() as f64), Unit::Count);
        let ex = exhaustions_in(inp, scope);
        let leads: Vec<f64> = ex.iter().map(Exhaustion::lead_days).collect();
        let ahead = ex.iter().filter(|e| e.warning.is_some() && e.lead_days() >= inp.min_lead_days).count() as f64;
        push("exhausted_allocations".into(), Some(ex.len() as f64), Unit::Count);
        push("warned_ahead_pct".into(), pct(ahead, ex.len() as f64), Unit::Percent);
        push("lead_time_median_days".into(), percentile(&leads, 50.0), Unit::Days);
        push("lead_time_p10_days".into(), percentile(&leads, 10.0), Unit::Days);
        // Forecasts: a share of forecasts (a count), so one figure across kinds of hours.
        let scored: Vec<ScoredForecast> = forecasts_scored_in(inp, scope).collect();
        let covered = scored.iter().filter(|f| f.covered()).count() as f64;
        push("forecasts_scored".into(), Some(scored.len() as f64), Unit::Count);
        push("forecast_coverage_pct".into(), pct(covered, scored.len() as f64), Unit::Percent);
        let notes: Vec<&NotificationFacts> = notifications_in(inp, scope, &alerts).collect();
        push("notifications".into(), Some(notes.len() as f64), Unit::Count);
        push("deliveries_retried".into(), Some(notes.iter().filter(|n| n.retried()).count() as f64), Unit::Count);
        push("deliveries_failed".into(), Some(notes.iter().filter(|n| n.failed()).count() as f64), Unit::Count);
        // Data quality: feeds are a centre's, not a committee's.
        if !committee {
            let pulls: Vec<&PullFacts> = pulls_in(inp, scope).collect();
            let ok = pulls.iter().filter(|p| p.ok).count() as f64;
            push("pulls".into(), Some(pulls.len() as f64), Unit::Count);
            push("pulls_ok".into(), Some(ok), Unit::Count);
            push("pull_success_pct".into(), pct(ok, pulls.len() as f64), Unit::Percent);
            push("longest_gap_hours".into(), longest_gap_hours(inp, scope), Unit::Hours);
            push("rejected_lines".into(), Some(pulls.iter().map(|p| p.rejected).sum::<i64>() as f64), Unit::Count);
            let mut by_class: BTreeMap<UsageClass, i64> = BTreeMap::new();
            for u in usage_in(inp, scope) {
                *by_class.entry(u.class).or_default() += u.cpu_seconds;
            }
            let total_s: i64 = by_class.values().sum();
            let ch = |s: i64| s as f64 / 3600.0;
            let orphan = by_class.get(&UsageClass::Orphan).copied().unwrap_or(0);
            let unmapped = by_class.get(&UsageClass::Unmapped).copied().unwrap_or(0);
            let core = Unit::Compute(HoursKind::CoreHours);
            push("consumption_core_hours".into(), Some(ch(total_s)), core);
            push("orphan_core_hours".into(), Some(ch(orphan)), core);
            push("unmapped_core_hours".into(), Some(ch(unmapped)), core);
            push("orphan_pct".into(), pct(orphan as f64, total_s as f64), Unit::Percent);
            push("unmapped_pct".into(), pct(unmapped as f64, total_s as f64), Unit::Percent);
        }
    }
    let complete = inp.complete();
    QualityReport {
        period: inp.period.clone(),
        complete,
        as_of: (!complete).then_some(inp.as_of),
        min_lead_days: inp.min_lead_days,
        centre_filter: inp.centre_filter.clone(),
        scopes,
        months: inp.months.clone(),
        kinds,
        figures,
    }
}

// ---- explain --------------------------------------------------------------------------------

/// The facts behind a figure: one row per allocation, adjustment, standing, forecast, alert,
/// notification, pull or usage line that counts in it (overall scope: every centre of the report).
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// The indicator explained.
    pub indicator: String,
    /// What the rows are (`allocations`, `pulls`…) and where they come from.
    pub source: &'static str,
    /// Column names.
    pub headers: Vec<&'static str>,
    /// Rows.
    pub rows: Vec<Vec<String>>,
}

fn utc(s: i64) -> String {
    rfc3339(s)
}

fn num(v: f64) -> String {
    fixed(v)
}

/// The facts behind `indicator` (any id of the report: `consumed_hours`,
/// `status_exhausted@2026-08`, `alerts_fired.over_pace`…).
pub fn explain(inp: &Inputs, indicator: &str) -> Result<Evidence, String> {
    let overall = Scope { kind: ScopeKind::Overall, id: OVERALL_ID.into() };
    let alerts: HashMap<i64, &AlertFacts> = inp.alerts.iter().map(|a| (a.id, a)).collect();
    let (base, snapshot) = match indicator.split_once('@') {
        Some((b, m)) if inp.months.iter().any(|x| x == m) => (b, m),
        Some((_, m)) => return Err(format!("--explain {indicator}: no month end {m} in period {}", inp.period.label)),
        None => (indicator, "end"),
    };
    let ev = |source: &'static str, headers: Vec<&'static str>, rows: Vec<Vec<String>>| Evidence { indicator: indicator.to_string(), source, headers, rows };
    let is_standing = base.starts_with("status_") || base == "within_10pp_pct";
    // Hours figures carry their kind: `granted_hours.core`, `allocations.gpu`…
    let (hours_base, kind) = match base.rsplit_once('.') {
        Some((b, k)) => match HoursKind::ALL.into_iter().find(|x| x.id() == k) {
            Some(k) => (b, Some(k)),
            None => (base, None),
        },
        None => (base, None),
    };
    if snapshot != "end" && !is_standing {
        return Err(format!("--explain {indicator}: only standings (status_*, within_10pp_pct) have month ends"));
    }
    Ok(match base {
        b if matches!(hours_base, "allocations" | "granted_hours" | "consumed_hours" | "utilisation_pct") && (kind.is_some() || b == "allocations") => ev(
            "allocations (allocation files) overlapping the period; consumption from the ledger (usage_daily)",
            vec!["centre", "committee", "project", "resource", "unit", "period_start", "period_end", "origin", "overlap_from", "overlap_to", "share_pct", "grant_hours", "granted_hours", "consumed_hours"],
            allocations_in(inp, &overall)
                .filter(|(_, a)| kind.is_none_or(|k| a.kind == k))
                .map(|(_, a)| {
                    vec![
                        a.centre.clone(),
                        a.committee.clone(),
                        a.project.clone(),
                        a.resource.clone(),
                        a.kind.as_str().to_string(),
                        utc(a.start_s),
                        utc(a.end_s),
                        a.origin.clone(),
                        utc(a.overlap.0),
                        utc(a.overlap.1),
                        num(100.0 * a.share()),
                        num(a.granted_at_end_hours),
                        num(a.granted_hours().value()),
                        num(a.consumed_hours().value()),
                    ]
                })
                .collect(),
        ),
        b if matches!(hours_base, "added_hours" | "taken_back_hours" | "adjustments") && (kind.is_some() || b == "adjustments") => ev(
            "adjustments (adjustment files) dated in the period",
            vec!["origin", "date", "centre", "committee", "project", "resource", "unit", "kind", "hours", "reason"],
            adjustments_in(inp, &overall)
                .filter(|a| kind.is_none_or(|k| a.hours_kind == k))
                .filter(|a| match hours_base {
                    "added_hours" => a.hours > 0.0,
                    "taken_back_hours" => a.hours < 0.0,
                    _ => true,
                })
                .map(|a| vec![a.origin.clone(), a.date.clone(), a.centre.clone(), a.committee.clone(), a.project.clone(), a.resource.clone(), a.hours_kind.as_str().to_string(), a.kind.clone(), num(a.hours), a.reason.clone()])
                .collect(),
        ),
        b if matches!(b, "granted_hours" | "consumed_hours" | "utilisation_pct" | "added_hours" | "taken_back_hours") => {
            return Err(format!(
                "--explain {indicator}: hours are reported per kind; name one: {}",
                HoursKind::ALL.iter().map(|k| format!("{b}.{}", k.id())).collect::<Vec<_>>().join(", ")
            ))
        }
        b if is_standing && (b == "within_10pp_pct" || STANDINGS.iter().any(|s| b == format!("status_{}", s.as_str()) || b == format!("status_{}_pct", s.as_str()))) => ev(
            "reconciliation of each allocation at the snapshot instant (ledger + allocation files)",
            vec!["snapshot", "at", "centre", "committee", "project", "resource", "status", "drift_pp", "consumed_pct", "within_10pp"],
            standings_in(inp, snapshot, &overall)
                .filter(|s| {
                    let want = b.trim_end_matches("_pct").trim_start_matches("status_");
                    b == "within_10pp_pct" || b.ends_with("_pct") || s.status.as_str() == want
                })
                .map(|s| {
                    let a = &inp.allocations[s.allocation];
                    let mut row = standing_cells(s, a);
                    row.extend([
                        s.status.as_str().to_string(),
                        s.drift_pp.map(num).unwrap_or_default(),
                        s.consumed_pct.map(num).unwrap_or_default(),
                        if s.drift_pp.is_some_and(|d| d.abs() <= WITHIN_PP) { "yes".into() } else { "no".into() },
                    ]);
                    row
                })
                .collect(),
        ),
        b if b == "alerts_fired" || b.strip_prefix("alerts_fired.").is_some_and(|r| RULES.contains(&r)) => {
            let rule = b.strip_prefix("alerts_fired.");
            ev(
                "alerts table: alerts that fired in the period",
                vec!["alert_id", "rule", "centre", "committee", "subject", "discriminator", "fired_at"],
                alerts_fired_in(inp, &overall, rule)
                    .map(|a| vec![a.id.to_string(), a.rule.clone(), a.centre.clone(), a.committee.clone().unwrap_or_default(), a.subject.clone(), a.discriminator.clone(), utc(a.fired_at)])
                    .collect(),
            )
        }
        "reminders" => ev(
            "alert_events table: reminder events in the period",
            vec!["event_id", "alert_id", "rule", "centre", "committee", "subject", "at"],
            reminders_in(inp, &overall, &alerts)
                .map(|(r, a)| vec![r.event_id.to_string(), a.id.to_string(), a.rule.clone(), a.centre.clone(), a.committee.clone().unwrap_or_default(), a.subject.clone(), utc(r.at)])
                .collect(),
        ),
        "exhausted_allocations" | "warned_ahead_pct" | "lead_time_median_days" | "lead_time_p10_days" => ev(
            "alerts table: first `exhausted` alert of each allocation in the period, and its first warning (over_pace, checkpoint, threshold >= 75 %)",
            vec!["subject", "centre", "committee", "exhausted_alert", "exhausted_at", "warning_alert", "warning_rule", "warned_at", "lead_days", "warned_ahead"],
            exhaustions_in(inp, &overall)
                .iter()
                .map(|e| {
                    let w = e.warning.as_ref();
                    vec![
                        e.subject.clone(),
                        e.centre.clone(),
                        e.committee.clone().unwrap_or_default(),
                        e.alert_id.to_string(),
                        utc(e.exhausted_at),
                        w.map(|w| w.0.to_string()).unwrap_or_default(),
                        w.map(|w| w.1.clone()).unwrap_or_default(),
                        w.map(|w| utc(w.2)).unwrap_or_default(),
                        num(e.lead_days()),
                        if w.is_some() && e.lead_days() >= inp.min_lead_days { "yes".into() } else { "no".into() },
                    ]
                })
                .collect(),
        ),
        "forecasts_scored" | "forecast_coverage_pct" => ev(
            "reconciliation of each allocation at each month end (its forecast's P10-P90 of the hours consumed by its period end) and at the window end (the hours it ended its period with), for allocations whose period ended by the window end and that had not run out",
            vec!["snapshot", "at", "centre", "committee", "project", "resource", "unit", "status", "period_end", "p10_end_hours", "p90_end_hours", "end_consumed_hours", "covered"],
            forecasts_scored_in(inp, &overall)
                .map(|f| {
                    let (s, a) = (f.standing, f.allocation);
                    let mut row = standing_cells(s, a);
                    row.extend([
                        a.kind.as_str().to_string(),
                        s.status.as_str().to_string(),
                        utc(a.end_s),
                        num(f.band.0),
                        num(f.band.1),
                        num(f.actual),
                        if f.covered() { "yes".into() } else { "no".into() },
                    ]);
                    row
                })
                .collect(),
        ),
        "notifications" | "deliveries_retried" | "deliveries_failed" => ev(
            "notifications table: messages queued by the period's cycles",
            vec!["notification_id", "at", "channel", "audience", "recipient", "alert_ids", "state", "attempts", "deferrals", "last_error"],
            notifications_in(inp, &overall, &alerts)
                .filter(|n| match base {
                    "deliveries_retried" => n.retried(),
                    "deliveries_failed" => n.failed(),
                    _ => true,
                })
                .map(|n| {
                    vec![
                        n.id.to_string(),
                        utc(n.at),
                        n.channel.clone(),
                        n.audience.clone(),
                        n.recipient.clone(),
                        n.alert_ids.iter().map(i64::to_string).collect::<Vec<_>>().join(" "),
                        n.state.clone(),
                        n.attempts.to_string(),
                        n.deferrals.to_string(),
                        n.last_error.clone().unwrap_or_default(),
                    ]
                })
                .collect(),
        ),
        "pulls" | "pulls_ok" | "pull_success_pct" | "rejected_lines" => ev(
            "pulls table: pulls and imports started in the period (rejected lines themselves: rejections table)",
            vec!["pull_id", "centre", "source", "started_at", "finished_at", "ok", "records", "rejected", "error"],
            pulls_in(inp, &overall)
                .filter(|p| match base {
                    "pulls_ok" => p.ok,
                    "rejected_lines" => p.rejected > 0,
                    _ => true,
                })
                .map(|p| {
                    vec![
                        p.id.to_string(),
                        p.centre.clone(),
                        p.source.clone(),
                        utc(p.started_at),
                        utc(p.finished_at),
                        if p.ok { "yes".into() } else { "no".into() },
                        p.records.to_string(),
                        p.rejected.to_string(),
                        p.error.clone().unwrap_or_default(),
                    ]
                })
                .collect(),
        ),
        "longest_gap_hours" => ev(
            "pulls table: stretches between successful pulls (window start and end as bounds)",
            vec!["centre", "from", "to", "hours", "ended_by_pull"],
            inp.centres
                .iter()
                .flat_map(|c| gaps(inp, &c.centre))
                .map(|g| vec![g.centre.clone(), utc(g.from), utc(g.to), num((g.to - g.from) as f64 / 3600.0), g.ended_by.map(|i| i.to_string()).unwrap_or_default()])
                .collect(),
        ),
        "consumption_core_hours" | "orphan_core_hours" | "unmapped_core_hours" | "orphan_pct" | "unmapped_pct" => ev(
            "usage_daily table (and the jobs of a partial last day): CPU usage in the period by class",
            vec!["centre", "cluster", "account", "partition", "class", "core_hours"],
            usage_in(inp, &overall)
                .filter(|u| match base {
                    "orphan_core_hours" | "orphan_pct" => u.class == UsageClass::Orphan,
                    "unmapped_core_hours" | "unmapped_pct" => u.class == UsageClass::Unmapped,
                    _ => true,
                })
                .map(|u| vec![u.centre.clone(), u.cluster.clone(), u.account.clone(), u.partition.clone(), u.class.as_str().into(), num(u.cpu_seconds as f64 / 3600.0)])
                .collect(),
        ),
        _ => return Err(format!("--explain {indicator}: unknown indicator (see docs/quality-indicators.md, or the indicator column of --format csv)")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86400;
    /// 2026-07-01T00:00:00Z.
    const JUL1: i64 = 1_782_864_000;

    fn period() -> Period {
        Period { label: "2026-Q3".into(), start: Date::constant(2026, 7, 1), end: Date::constant(2026, 10, 1) }
    }

    #[allow(clippy::too_many_arguments)]
    fn alloc(centre: &str, project: &str, committee: &str, start_s: i64, end_s: i64, grant: f64, before: f64, at_end: f64) -> AllocationFacts {
        AllocationFacts {
            centre: centre.into(),
            project: project.into(),
            resource: "cpu".into(),
            kind: HoursKind::CoreHours,
            committee: committee.into(),
            subject: format!("{centre}/{project}/cpu/x"),
            origin: "alloc.csv:2".into(),
            start_s,
            end_s,
            granted_at_end_hours: grant,
            consumed_before_hours: before,
            consumed_at_end_hours: at_end,
            // Its period ended by the window end: what it consumed there is its outcome.
            final_consumed_hours: (end_s <= JUL1 + 92 * DAY).then_some(at_end),
            overlap: (start_s.max(JUL1), end_s.min(JUL1 + 92 * DAY)),
        }
    }

    fn alert(id: i64, rule: &str, disc: &str, subject: &str, centre: &str, committee: Option<&str>, day: i64) -> AlertFacts {
        AlertFacts {
            id,
            rule: rule.into(),
            subject: subject.into(),
            discriminator: disc.into(),
            centre: centre.into(),
            committee: committee.map(str::to_string),
            fired_at: JUL1 + day * DAY,
        }
    }

    fn pull(id: i64, centre: &str, hour: i64, ok: bool, rejected: i64) -> PullFacts {
        PullFacts {
            id,
            centre: centre.into(),
            source: "file:x".into(),
            started_at: JUL1 + hour * 3600,
            finished_at: JUL1 + hour * 3600 + 60,
            ok,
            records: 10,
            rejected,
            error: (!ok).then(|| "missing".to_string()),
        }
    }

    fn note(id: i64, day: i64, state: &str, attempts: i64, deferrals: i64, alert_ids: &[i64]) -> NotificationFacts {
        NotificationFacts {
            id,
            at: JUL1 + day * DAY,
            channel: "email".into(),
            audience: "operations".into(),
            recipient: "ops@x".into(),
            state: state.into(),
            attempts,
            deferrals,
            last_error: None,
            alert_ids: alert_ids.to_vec(),
        }
    }

    fn usage(centre: &str, account: &str, class: UsageClass, hours: i64) -> UsageFacts {
        UsageFacts { centre: centre.into(), cluster: "c".into(), account: account.into(), partition: "p".into(), class, cpu_seconds: hours * 3600 }
    }

    /// Two centres (a, b), two committees; hand-computable figures.
    fn inputs() -> Inputs {
        let end = JUL1 + 92 * DAY;
        let st = |snapshot: &str, allocation: usize, status: Status, drift: f64| Standing {
            snapshot: snapshot.into(),
            allocation,
            at_s: end,
            status,
            drift_pp: Some(drift),
            consumed_pct: None,
            end_consumed_band: None,
        };
        Inputs {
            period: period(),
            as_of: end + DAY,
            min_lead_days: 7.0,
            centre_filter: None,
            centres: vec![
                CentreWindow { centre: "a".into(), start_s: JUL1, end_s: end, period_end_s: end },
                CentreWindow { centre: "b".into(), start_s: JUL1, end_s: end, period_end_s: end },
            ],
            months: vec!["2026-07".into()],
            allocations: vec![
                // Whole quarter: 920 granted, 460 consumed.
                alloc("a", "P1", "CT1", JUL1, end, 920.0, 0.0, 460.0),
                // A year (365 days) from 2026-01-01 (181 days before Jul 1): 92/365 of 3650 = 920.
                alloc("b", "P2", "CT2", JUL1 - 181 * DAY, JUL1 + 184 * DAY, 3650.0, 1000.0, 1230.0),
                // Ended after 31 days of the quarter: 310 of 1220 over 122 days.
                alloc("a", "P3", NO_COMMITTEE, JUL1 - 91 * DAY, JUL1 + 31 * DAY, 1220.0, 455.0, 610.0),
            ],
            standings: vec![
                st("end", 0, Status::OverPace, 12.0),
                st("end", 1, Status::OnTrack, -10.0),
                st("end", 2, Status::UnderPace, -50.0),
                st("2026-07", 0, Status::Exhausted, 40.0),
                st("2026-07", 1, Status::OnTrack, 2.0),
            ],
            adjustments: vec![
                AdjustmentFacts { centre: "b".into(), committee: "CT2".into(), project: "P2".into(), resource: "cpu".into(), hours_kind: HoursKind::CoreHours, date: "2026-08-01".into(), effective_s: JUL1 + 31 * DAY, hours: 365.0, kind: "topup".into(), reason: String::new(), origin: "adj.csv:2".into() },
                AdjustmentFacts { centre: "a".into(), committee: "CT1".into(), project: "P1".into(), resource: "cpu".into(), hours_kind: HoursKind::CoreHours, date: "2026-09-01".into(), effective_s: JUL1 + 62 * DAY, hours: -200.0, kind: "withdrawal".into(), reason: String::new(), origin: "adj.csv:3".into() },
                // Before the period: not counted.
                AdjustmentFacts { centre: "a".into(), committee: "CT1".into(), project: "P1".into(), resource: "cpu".into(), hours_kind: HoursKind::CoreHours, date: "2026-06-01".into(), effective_s: JUL1 - 30 * DAY, hours: 50.0, kind: "topup".into(), reason: String::new(), origin: "adj.csv:4".into() },
            ],
            alerts: vec![
                // P1: warned by over_pace on day 2 (and a 75 % threshold on day 20), exhausted day 30: lead 28 d.
                alert(1, "over_pace", "", "a/P1/cpu/x", "a", Some("CT1"), 2),
                alert(2, "threshold", "75", "a/P1/cpu/x", "a", Some("CT1"), 20),
                alert(3, "exhausted", "", "a/P1/cpu/x", "a", Some("CT1"), 30),
                // P1 again (after a top-up): not a new exhaustion.
                alert(4, "exhausted", "", "a/P1/cpu/x", "a", Some("CT1"), 60),
                // P2: only a 50 % threshold (not a warning), exhausted day 40: lead 0.
                alert(5, "threshold", "50", "b/P2/cpu/x", "b", Some("CT2"), 35),
                alert(6, "exhausted", "", "b/P2/cpu/x", "b", Some("CT2"), 40),
                // P4: warned 3 days ahead, exhausted day 50: warned, but not 7 days ahead.
                alert(7, "threshold", "90", "b/P4/cpu/x", "b", Some("CT2"), 47),
                alert(8, "exhausted", "", "b/P4/cpu/x", "b", Some("CT2"), 50),
                // Centre alerts.
                alert(9, "stale_feed", "", "a", "a", None, 10),
                alert(10, "orphan_usage", "zzz/p", "b", "b", None, 11),
                // Before the period.
                alert(11, "under_pace", "", "a/P3/cpu/x", "a", Some(NO_COMMITTEE), -5),
            ],
            reminders: vec![
                ReminderFacts { event_id: 100, alert_id: 1, at: JUL1 + 9 * DAY },
                ReminderFacts { event_id: 101, alert_id: 1, at: JUL1 + 16 * DAY },
                ReminderFacts { event_id: 102, alert_id: 11, at: JUL1 + 2 * DAY },
            ],
            notifications: vec![
                note(1, 2, "sent", 1, 0, &[1]),
                note(2, 2, "sent", 3, 0, &[1]),
                note(3, 30, "sent", 1, 2, &[3, 9]),
                note(4, 40, "pending", 2, 0, &[6]),
                note(5, 40, "pending", 0, 0, &[6]),
                note(6, 50, "pending", 0, 1, &[8]),
            ],
            pulls: vec![
                pull(1, "a", 6, true, 0),
                pull(2, "a", 30, false, 0),
                pull(3, "a", 54, true, 2),
                pull(4, "b", 6, true, 1),
                pull(5, "b", 7, false, 0),
                pull(6, "b", 92 * 24 - 2, true, 0),
            ],
            usage: vec![
                usage("a", "aaa", UsageClass::Allocated, 90),
                usage("a", "zzz", UsageClass::Orphan, 6),
                usage("a", "aaa", UsageClass::Unmapped, 4),
                usage("b", "bbb", UsageClass::Allocated, 100),
            ],
        }
    }

    fn v(r: &QualityReport, kind: ScopeKind, id: &str, ind: &str) -> Option<f64> {
        let f = r.figures.iter().find(|f| f.scope.kind == kind && f.scope.id == id && f.indicator == ind);
        f.unwrap_or_else(|| panic!("no figure {ind} for {id}")).value
    }

    #[test]
    fn every_indicator_from_hand_computed_inputs() {
        use ScopeKind::*;
        let r = compute(&inputs());
        assert!(r.complete);
        assert_eq!(r.as_of, None);
        let scope_ids: Vec<String> = r.scopes.iter().map(|s| format!("{}:{}", s.kind.as_str(), s.id)).collect();
        assert_eq!(scope_ids, ["overall:all", "centre:a", "centre:b", "committee:(none)", "committee:CT1", "committee:CT2"]);
        // (scope kind, id, indicator, value)
        let table: &[(ScopeKind, &str, &str, Option<f64>)] = &[
            (Overall, "all", "allocations", Some(3.0)),
            (Overall, "all", "granted_hours.core", Some(920.0 + 920.0 + 310.0)),
            (Overall, "all", "consumed_hours.core", Some(460.0 + 230.0 + 155.0)),
            (Overall, "all", "utilisation_pct.core", Some(100.0 * 845.0 / 2150.0)),
            (Centre, "a", "granted_hours.core", Some(1230.0)),
            (Committee, "CT2", "utilisation_pct.core", Some(25.0)),
            (Overall, "all", "added_hours.core", Some(365.0)),
            (Overall, "all", "taken_back_hours.core", Some(200.0)),
            (Overall, "all", "adjustments", Some(2.0)),
            (Centre, "b", "taken_back_hours.core", Some(0.0)),
            (Committee, "CT1", "adjustments", Some(1.0)),
            (Overall, "all", "status_on_track", Some(1.0)),
            (Overall, "all", "status_over_pace", Some(1.0)),
            (Overall, "all", "status_under_pace", Some(1.0)),
            (Overall, "all", "status_exhausted", Some(0.0)),
            (Overall, "all", "status_under_pace_pct", Some(100.0 / 3.0)),
            // |12| > 10, |−10| ≤ 10, |−50| > 10.
            (Overall, "all", "within_10pp_pct", Some(100.0 / 3.0)),
            (Overall, "all", "status_exhausted@2026-07", Some(1.0)),
            (Overall, "all", "within_10pp_pct@2026-07", Some(50.0)),
            (Committee, "(none)", "status_on_track_pct@2026-07", None),
            (Overall, "all", "alerts_fired", Some(10.0)),
            (Overall, "all", "alerts_fired.exhausted", Some(4.0)),
            (Overall, "all", "alerts_fired.under_pace", Some(0.0)),
            (Committee, "CT1", "alerts_fired", Some(4.0)),
            (Committee, "CT1", "alerts_fired.stale_feed", None),
            (Centre, "a", "alerts_fired.stale_feed", Some(1.0)),
            // Alert 11 fired before the period; its reminder on day 2 is in it.
            (Overall, "all", "reminders", Some(3.0)),
            (Overall, "all", "exhausted_allocations", Some(3.0)),
            (Overall, "all", "warned_ahead_pct", Some(100.0 / 3.0)),
            // Leads 28, 0, 3: nearest-rank median 3, 10th percentile 0.
            (Overall, "all", "lead_time_median_days", Some(3.0)),
            (Overall, "all", "lead_time_p10_days", Some(0.0)),
            (Centre, "b", "exhausted_allocations", Some(2.0)),
            (Centre, "b", "warned_ahead_pct", Some(0.0)),
            (Committee, "CT1", "lead_time_median_days", Some(28.0)),
            (Committee, "(none)", "lead_time_median_days", None),
            (Overall, "all", "notifications", Some(6.0)),
            (Overall, "all", "deliveries_retried", Some(2.0)),
            (Overall, "all", "deliveries_failed", Some(2.0)),
            // Notification 3 covers alerts of CT1 (3) and centre a's feed (9): counted once in a.
            (Centre, "a", "notifications", Some(3.0)),
            (Committee, "CT2", "deliveries_failed", Some(2.0)),
            (Overall, "all", "pulls", Some(6.0)),
            (Overall, "all", "pulls_ok", Some(4.0)),
            (Overall, "all", "pull_success_pct", Some(100.0 * 4.0 / 6.0)),
            (Centre, "b", "pull_success_pct", Some(100.0 * 2.0 / 3.0)),
            (Overall, "all", "rejected_lines", Some(3.0)),
            // a: successes end at 6:01 and 54:01, window 92 days: the last stretch is the longest.
            (Centre, "a", "longest_gap_hours", Some(92.0 * 24.0 - 54.0 - 1.0 / 60.0)),
            // b: 6:01, then 2206:01 (92 d − 2 h + 1 min), then the end.
            (Centre, "b", "longest_gap_hours", Some((92.0 * 24.0 - 2.0) - 6.0)),
            (Overall, "all", "longest_gap_hours", Some((92.0 * 24.0 - 2.0) - 6.0)),
            (Overall, "all", "consumption_core_hours", Some(200.0)),
            (Overall, "all", "orphan_core_hours", Some(6.0)),
            (Overall, "all", "orphan_pct", Some(3.0)),
            (Centre, "a", "unmapped_pct", Some(4.0)),
            (Centre, "b", "unmapped_pct", Some(0.0)),
            // P1 and P3 ended by the window end, but no standing carries a forecast.
            (Overall, "all", "forecasts_scored", Some(0.0)),
            (Overall, "all", "forecast_coverage_pct", None),
        ];
        for (kind, id, ind, want) in table {
            let got = v(&r, *kind, id, ind);
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{id} {ind}: got {g}, want {w}"),
                _ => assert_eq!(got, *want, "{id} {ind}"),
            }
        }
        // No feed figures for committees.
        assert!(!r.figures.iter().any(|f| f.scope.kind == Committee && f.indicator == "pulls"));
    }

    #[test]
    fn hours_of_different_kinds_are_totalled_apart() {
        let mut inp = inputs();
        // P2 (centre b) is a GPU allocation: its 920 granted and 230 consumed GPU-hours are no
        // longer added to P1's and P3's core-hours.
        inp.allocations[1].kind = HoursKind::GpuHours;
        inp.adjustments[0].hours_kind = HoursKind::GpuHours;
        let r = compute(&inp);
        assert_eq!(r.kinds, [HoursKind::CoreHours, HoursKind::GpuHours]);
        let all = |ind: &str| v(&r, ScopeKind::Overall, "all", ind);
        let close = |ind: &str, want: f64| {
            let got = all(ind).unwrap_or_else(|| panic!("{ind} has no value"));
            assert!((got - want).abs() < 1e-9, "{ind}: got {got}, want {want}");
        };
        close("granted_hours.core", 920.0 + 310.0);
        close("granted_hours.gpu", 920.0);
        close("consumed_hours.gpu", 230.0);
        close("utilisation_pct.gpu", 25.0);
        close("added_hours.gpu", 365.0);
        close("added_hours.core", 0.0);
        assert_eq!((all("allocations"), all("allocations.core"), all("allocations.gpu")), (Some(3.0), Some(2.0), Some(1.0)));
        let f = r.figures.iter().find(|f| f.indicator == "granted_hours.gpu").unwrap();
        assert_eq!(f.unit.as_str(), "GPU-hours");
        assert!(!r.figures.iter().any(|f| f.indicator == "granted_hours"), "no total across kinds");
        assert!(explain(&inp, "granted_hours").unwrap_err().contains("granted_hours.core"));
        assert_eq!(explain(&inp, "granted_hours.gpu").unwrap().rows.len(), 1);
    }

    #[test]
    fn forecast_coverage_scores_month_end_bands_of_allocations_that_ended() {
        use ScopeKind::*;
        let mut inp = inputs();
        let (jul, aug) = (JUL1 + 31 * DAY, JUL1 + 62 * DAY);
        inp.months = vec!["2026-07".into(), "2026-08".into()];
        // P4 (b, CT2, GPU-hours) and P5 (a, CT1) ran July and August: ended with 500 and 300.
        let mut p4 = alloc("b", "P4", "CT2", JUL1, aug, 600.0, 0.0, 500.0);
        p4.kind = HoursKind::GpuHours;
        inp.allocations.push(p4);
        inp.allocations.push(alloc("a", "P5", "CT1", JUL1, aug, 300.0, 0.0, 300.0));
        let st = |snapshot: &str, allocation: usize, at_s: i64, status: Status, band: Option<(f64, f64)>| Standing {
            snapshot: snapshot.into(),
            allocation,
            at_s,
            status,
            drift_pp: Some(0.0),
            consumed_pct: None,
            end_consumed_band: band,
        };
        inp.standings.retain(|s| s.snapshot == "end");
        // In the loader's order: month, then allocation.
        inp.standings.extend([
            // P1 (a, CT1) ended with 460: 300–500 holds it.
            st("2026-07", 0, jul, Status::OverPace, Some((300.0, 500.0))),
            // P2 runs past the window: its outcome is unknown, not scored.
            st("2026-07", 1, jul, Status::OnTrack, Some((0.0, 10.0))),
            // P3 ended on 1 August: no forecast at its period end.
            st("2026-07", 2, jul, Status::UnderPace, None),
            // P4 ended with 500 GPU-hours: 200–499 misses it.
            st("2026-07", 3, jul, Status::OverPace, Some((200.0, 499.0))),
            // P5 had run out: not scored (as the replay's calibration), though 250–350 holds 300.
            st("2026-07", 4, jul, Status::Exhausted, Some((250.0, 350.0))),
            // P1 again: a P10 above 460 by 1e-8 h (float noise) still holds it.
            st("2026-08", 0, aug, Status::OverPace, Some((460.0 + 1e-8, 800.0))),
            st("2026-08", 1, aug, Status::OnTrack, Some((0.0, 10.0))),
            st("2026-08", 3, aug, Status::OverPace, None),
        ]);
        let r = compute(&inp);
        // (scope kind, id, forecasts scored, coverage %)
        let table: &[(ScopeKind, &str, f64, Option<f64>)] = &[
            (Overall, "all", 3.0, Some(200.0 / 3.0)),
            (Centre, "a", 2.0, Some(100.0)),
            (Centre, "b", 1.0, Some(0.0)),
            (Committee, "CT1", 2.0, Some(100.0)),
            (Committee, "CT2", 1.0, Some(0.0)),
            (Committee, NO_COMMITTEE, 0.0, None),
        ];
        for (kind, id, n, want) in table {
            assert_eq!(v(&r, *kind, id, "forecasts_scored"), Some(*n), "{id}");
            let got = v(&r, *kind, id, "forecast_coverage_pct");
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{id}: got {g}, want {w}"),
                _ => assert_eq!(got, *want, "{id}"),
            }
        }
        // One figure across kinds: no `.core` / `.gpu` variant.
        assert!(!r.figures.iter().any(|f| f.indicator.starts_with("forecast_coverage_pct.")));
        let e = explain(&inp, "forecast_coverage_pct").unwrap();
        let rows: Vec<(&str, &str, &str, &str, &str)> = e.rows.iter().map(|r| (r[0].as_str(), r[4].as_str(), r[6].as_str(), r[11].as_str(), r[12].as_str())).collect();
        assert_eq!(
            rows,
            [
                ("2026-07", "P1", "core-hours", "460.00", "yes"),
                ("2026-07", "P4", "GPU-hours", "500.00", "no"),
                ("2026-08", "P1", "core-hours", "460.00", "yes"),
            ]
        );
        assert!(e.rows.iter().all(|r| r.len() == e.headers.len()));
        assert_eq!(explain(&inp, "forecasts_scored").unwrap().rows, e.rows);
        // The tolerance is relative and tiny: a P10 a thousandth of an hour above is a miss.
        let miss = ScoredForecast { standing: &inp.standings[0], allocation: &inp.allocations[0], band: (460.001, 800.0), actual: 460.0 };
        assert!(!miss.covered());
    }

    #[test]
    fn a_period_not_over_stops_at_as_of_and_says_so() {
        let mut inp = inputs();
        inp.as_of = JUL1 + 50 * DAY;
        for c in &mut inp.centres {
            c.end_s = inp.as_of;
        }
        let r = compute(&inp);
        assert!(!r.complete);
        assert_eq!(r.as_of, Some(JUL1 + 50 * DAY));
        // Only what happened before day 50: P4's exhaustion on day 50 is outside.
        assert_eq!(v(&r, ScopeKind::Overall, "all", "exhausted_allocations"), Some(2.0));
        assert_eq!(v(&r, ScopeKind::Centre, "b", "longest_gap_hours"), Some(50.0 * 24.0 - 6.0 - 1.0 / 60.0));
    }

    #[test]
    fn restricted_to_a_centre_has_no_overall_scope() {
        let mut inp = inputs();
        inp.centre_filter = Some("b".into());
        inp.centres.retain(|c| c.centre == "b");
        inp.allocations.retain(|a| a.centre == "b");
        inp.standings.retain(|s| s.allocation == 1);
        for s in &mut inp.standings {
            s.allocation = 0;
        }
        let r = compute(&inp);
        let ids: Vec<&str> = r.scopes.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["b", "CT2"]);
        assert_eq!(v(&r, ScopeKind::Centre, "b", "allocations"), Some(1.0));
    }

    #[test]
    fn standing_keeps_the_final_status_of_an_ended_allocation() {
        let th = Thresholds::default();
        let ind = |status: Status, granted: f64, consumed: f64| AllocationReport {
            consumed_pct: (granted > 0.0).then(|| 100.0 * consumed / granted),
            drift_pp: (granted > 0.0).then(|| 100.0 * (consumed - granted) / granted),
            elapsed_pct: 100.0,
            ..AllocationReport::example(granted, consumed, status)
        };
        let cases = [
            ("running: as reconciled", ind(Status::OverPace, 100.0, 50.0), Some(Status::OverPace)),
            ("not started: no standing", ind(Status::NotStarted, 100.0, 0.0), None),
            ("ended, all used", ind(Status::Ended, 100.0, 100.0), Some(Status::Exhausted)),
            ("ended, 85 % used", ind(Status::Ended, 100.0, 85.0), Some(Status::OnTrack)),
            ("ended, 80 % used: −20 pp is not under −20", ind(Status::Ended, 100.0, 80.0), Some(Status::OnTrack)),
            ("ended, 50 % used", ind(Status::Ended, 100.0, 50.0), Some(Status::UnderPace)),
            ("ended, nothing granted, some used", ind(Status::Ended, 0.0, 1.0), Some(Status::Exhausted)),
            ("ended, nothing granted or used", ind(Status::Ended, 0.0, 0.0), Some(Status::OnTrack)),
        ];
        for (name, i, want) in cases {
            assert_eq!(standing(&i, &th).map(|s| s.0), want, "{name}");
        }
    }

    #[test]
    fn explain_lists_what_each_figure_counts() {
        let inp = inputs();
        let cases: &[(&str, usize)] = &[
            ("consumed_hours.core", 3),
            ("taken_back_hours.core", 1),
            ("adjustments", 2),
            ("status_over_pace", 1),
            ("status_over_pace_pct", 3),
            ("status_exhausted@2026-07", 1),
            ("alerts_fired.exhausted", 4),
            ("reminders", 3),
            ("warned_ahead_pct", 3),
            ("deliveries_failed", 2),
            ("pulls_ok", 4),
            ("rejected_lines", 2),
            ("longest_gap_hours", 6),
            ("orphan_pct", 1),
            ("forecast_coverage_pct", 0),
        ];
        for (ind, rows) in cases {
            let e = explain(&inp, ind).unwrap();
            assert_eq!(e.rows.len(), *rows, "{ind}: {:#?}", e.rows);
            assert!(e.rows.iter().all(|r| r.len() == e.headers.len()), "{ind}");
        }
        let e = explain(&inp, "warned_ahead_pct").unwrap();
        let p1 = e.rows.iter().find(|r| r[0] == "a/P1/cpu/x").unwrap();
        assert_eq!((p1[3].as_str(), p1[5].as_str(), p1[8].as_str(), p1[9].as_str()), ("3", "1", "28.00", "yes"));
        for bad in ["nonsense", "status_on_track@2026-08", "consumed_hours@2026-07", "alerts_fired.nope"] {
            assert!(explain(&inp, bad).is_err(), "{bad}");
        }
    }
}
