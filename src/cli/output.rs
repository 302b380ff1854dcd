//! What the command line prints: reconciliations, usage, alerts and replays as aligned tables,
//! JSON or CSV. Figures are printed as the domain formats them ([`format_hours`], [`rfc3339`]).

use crate::cycle::replay::{LeadTime, ReplayEvent};
use crate::domain::calibration::{CalibrationTable, Leads};
use crate::domain::hours::{format_hours as hours, ResourceHours};
use crate::domain::quality::percentile;
use crate::domain::reconciliation::{AllocationReport, OrphanUsage, Reconciliation};
use crate::domain::time::{rfc3339, utc_date, LocalInstant};
use crate::domain::usage::UsageRow;
use crate::store::alerts::AlertRow;
use std::fmt::Write as _;

/// Output format of `check` and `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON array.
    Json,
    /// CSV with a header row.
    Csv,
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

/// Render rows as aligned columns; numeric columns (by header) are right-aligned.
pub fn table(headers: &[&str], rows: &[Vec<String>], right: &[bool]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            if i > 0 {
                l.push_str("  ");
            }
            if right[i] {
                l.push_str(&" ".repeat(pad));
                l.push_str(c);
            } else {
                l.push_str(c);
                if i + 1 < cells.len() {
                    l.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut out, &headers.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    for r in rows {
        line(&mut out, r);
    }
    out
}

/// The forecast's CSV cells (empty without a forecast).
fn forecast_cells(a: &AllocationReport) -> Vec<String> {
    let Some(f) = &a.forecast_band else { return vec![String::new(); 7] };
    let t = |v: &Option<LocalInstant>| v.as_ref().map(|t| t.to_string()).unwrap_or_default();
    vec![
        f.history_days.to_string(),
        t(&f.exhaustion_p10),
        t(&f.exhaustion_p50),
        t(&f.exhaustion_p90),
        f.end_consumed_hours_p10.value().to_string(),
        f.end_consumed_hours_p50.value().to_string(),
        f.end_consumed_hours_p90.value().to_string(),
    ]
}

/// The forecast's exhaustion band for a table: `P10..P90` dates, `end` for "not within the
/// period", `-` without a forecast.
fn exhaustion_band(a: &AllocationReport) -> String {
    let Some(f) = &a.forecast_band else { return "-".into() };
    let d = |v: &Option<LocalInstant>| v.as_ref().map(|t| t.date().to_string()).unwrap_or_else(|| "end".into());
    match (&f.exhaustion_p10, &f.exhaustion_p90) {
        (None, None) => "not by end".into(),
        (p10, p90) => format!("{}..{}", d(p10), d(p90)),
    }
}

/// `check` output.
pub fn check(r: &Reconciliation, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(&r.allocations).expect("reports serialise") + "\n",
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record([
                "centre", "project", "resource", "committee", "period_start", "period_end", "granted_hours",
                "consumed_hours", "expected_hours", "remaining_hours", "consumed_pct", "drift_pp", "elapsed_pct",
                "burn_rate_hours_per_day", "projected_exhaustion", "projected_unused_hours", "status",
                "committed_hours", "at_risk_hours", "forecast_history_days", "forecast_exhaustion_p10",
                "forecast_exhaustion_p50", "forecast_exhaustion_p90", "forecast_end_consumed_hours_p10",
                "forecast_end_consumed_hours_p50", "forecast_end_consumed_hours_p90",
            ])
            .expect("in-memory csv");
            let o = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
            let h = |v: ResourceHours| v.value().to_string();
            for a in &r.allocations {
                w.write_record([
                    a.centre.clone(), a.project.clone(), a.resource.clone(), a.committee.clone(), a.period_start.to_string(),
                    a.period_end.to_string(), h(a.granted_hours), h(a.consumed_hours),
                    h(a.expected_hours), h(a.remaining_hours), o(a.consumed_pct), o(a.drift_pp),
                    a.elapsed_pct.to_string(), a.burn_rate_hours_per_day.to_string(),
                    a.projected_exhaustion.as_ref().map(|t| t.to_string()).unwrap_or_default(), h(a.projected_unused_hours),
                    a.status.as_str().to_string(), h(a.committed_hours), h(a.at_risk_hours),
                ]
                .into_iter()
                .chain(forecast_cells(a))
                .collect::<Vec<_>>())
                .expect("in-memory csv");
            }
            String::from_utf8(w.into_inner().expect("in-memory csv")).expect("utf-8")
        }
        Format::Table => {
            let headers = [
                "CENTRE", "PROJECT", "RESOURCE", "COMMITTEE", "PERIOD", "GRANTED h", "CONSUMED h", "EXPECTED h", "USED",
                "DRIFT", "BURN h/d", "EXHAUSTION", "FORECAST P10..P90", "UNUSED h", "STATUS",
            ];
            let right = [false, false, false, false, false, true, true, true, true, true, true, false, false, true, false];
            let rows: Vec<Vec<String>> = r
                .allocations
                .iter()
                .map(|a| {
                    vec![
                        a.centre.clone(),
                        a.project.clone(),
                        a.resource.clone(),
                        a.committee.clone(),
                        format!("{}..{}", a.period_start, a.period_end),
                        hours(a.granted_hours.value()),
                        hours(a.consumed_hours.value()),
                        hours(a.expected_hours.value()),
                        opt(a.consumed_pct, |v| format!("{v:.1}%")),
                        opt(a.drift_pp, |v| format!("{v:+.1}pp")),
                        hours(a.burn_rate_hours_per_day),
                        a.projected_exhaustion.as_ref().map(|t| t.date().to_string()).unwrap_or_else(|| "-".into()),
                        exhaustion_band(a),
                        hours(a.projected_unused_hours.value()),
                        a.status.as_str().to_string(),
                    ]
                })
                .collect();
            let mut out = format!("Reconciliation at {} — {} allocations\n\n", rfc3339(r.at), r.allocations.len());
            out.push_str(&table(&headers, &rows, &right));
            let mut counts = std::collections::BTreeMap::new();
            for a in &r.allocations {
                *counts.entry(a.status.as_str()).or_insert(0) += 1;
            }
            let _ = writeln!(
                out,
                "\nBy status: {}",
                counts.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
            );
            stray_section(&mut out, &format!("Orphan usage (no active allocation), last {} days", r.orphan_window_days), &r.orphans, "HOURS");
            stray_section(&mut out, &format!("Unmapped partitions (no billing rule), last {} days", r.orphan_window_days), &r.unmapped, "CORE h");
            out
        }
    }
}

fn stray_section(out: &mut String, title: &str, rows: &[OrphanUsage], unit: &str) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{title}:");
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|o| {
            vec![
                o.centre.clone(),
                o.cluster.clone(),
                o.account.clone(),
                if o.partition.is_empty() { "(none)".into() } else { o.partition.clone() },
                o.resource.clone().unwrap_or_else(|| "-".into()),
                o.jobs.to_string(),
                hours(o.hours.value()),
            ]
        })
        .collect();
    out.push_str(&table(
        &["CENTRE", "CLUSTER", "ACCOUNT", "PARTITION", "RESOURCE", "JOBS", unit],
        &body,
        &[false, false, false, false, false, true, true],
    ));
}

/// `usage` output.
pub fn usage(rows: &[UsageRow], format: Format) -> String {
    let with_user = rows.iter().any(|r| r.user.is_some());
    let with_day = rows.iter().any(|r| r.day.is_some());
    match format {
        Format::Json => serde_json::to_string_pretty(rows).expect("rows serialise") + "\n",
        Format::Csv | Format::Table => {
            let mut headers = vec!["centre", "cluster", "account", "partition"];
            if with_user {
                headers.push("user");
            }
            if with_day {
                headers.push("day");
            }
            headers.extend(["jobs", "cpu_seconds", "gpu_seconds", "billing_seconds", "resource", "charged_hours"]);
            let body: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let mut v = vec![r.centre.clone(), r.cluster.clone(), r.account.clone(), r.partition.clone()];
                    if with_user {
                        v.push(r.user.clone().unwrap_or_default());
                    }
                    if with_day {
                        v.push(r.day.map(|d| d.to_string()).unwrap_or_default());
                    }
                    v.push(r.jobs.to_string());
                    v.push(r.cpu_seconds.to_string());
                    v.push(r.gpu_seconds.to_string());
                    v.push(r.billing_seconds.to_string());
                    v.push(r.resource.clone().unwrap_or_default());
                    v.push(match (format, r.charged_hours.map(|h| h.value())) {
                        (Format::Csv, Some(h)) => h.to_string(),
                        (_, Some(h)) => format!("{h:.2}"),
                        (_, None) => String::new(),
                    });
                    v
                })
                .collect();
            if format == Format::Csv {
                let mut w = csv::Writer::from_writer(Vec::new());
                w.write_record(&headers).expect("in-memory csv");
                for r in &body {
                    w.write_record(r).expect("in-memory csv");
                }
                String::from_utf8(w.into_inner().expect("in-memory csv")).expect("utf-8")
            } else {
                let upper: Vec<String> = headers.iter().map(|h| h.to_uppercase()).collect();
                let right: Vec<bool> = headers
                    .iter()
                    .map(|h| matches!(*h, "jobs" | "cpu_seconds" | "gpu_seconds" | "billing_seconds" | "charged_hours"))
                    .collect();
                table(&upper.iter().map(String::as_str).collect::<Vec<_>>(), &body, &right)
            }
        }
    }
}

/// `alerts list` output.
pub fn alerts(rows: &[AlertRow], format: Format) -> String {
    let ts = rfc3339;
    match format {
        Format::Json => serde_json::to_string_pretty(rows).expect("rows serialise") + "\n",
        Format::Csv | Format::Table => {
            let body: Vec<Vec<String>> = rows
                .iter()
                .map(|a| {
                    vec![
                        a.id.to_string(),
                        a.state.clone(),
                        a.severity.clone(),
                        a.rule.clone(),
                        a.subject.clone(),
                        a.discriminator.clone(),
                        ts(a.fired_at),
                        a.resolved_at.map(ts).unwrap_or_default(),
                        a.acked.as_ref().map(|(_, by)| by.clone()).unwrap_or_default(),
                        a.sent.to_string(),
                        a.pending.to_string(),
                        a.last_error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            let headers = ["ID", "STATE", "SEVERITY", "RULE", "SUBJECT", "KEY", "FIRED", "RESOLVED", "ACKED BY", "SENT", "QUEUED", "LAST ERROR"];
            if format == Format::Csv {
                let mut w = csv::Writer::from_writer(Vec::new());
                w.write_record(headers.iter().map(|h| h.to_lowercase())).expect("in-memory csv");
                for r in &body {
                    w.write_record(r).expect("in-memory csv");
                }
                String::from_utf8(w.into_inner().expect("in-memory csv")).expect("utf-8")
            } else {
                let right = [true, false, false, false, false, false, false, false, false, true, true, false];
                table(&headers, &body, &right)
            }
        }
    }
}

/// `replay` output: the events, then how early exhausted allocations were warned.
/// The forecasts' calibration table (`replay --forecast-calibration`).
pub fn calibration(t: &CalibrationTable, from: i64, to: i64, step: &str, format: Format) -> String {
    let pct = |v: Option<f64>| v.map(|v| format!("{v:.1} %")).unwrap_or_else(|| "-".into());
    let days = |v: Option<f64>| v.map(|v| format!("{v:.1} days")).unwrap_or_else(|| "-".into());
    let lead = |l: &Leads| format!("median {}, 10th percentile {} ({} of {} warned)", days(l.median_days), days(l.p10_days), l.warned, t.exhausted);
    let rows = [
        ("end-of-period hours inside P10-P90", pct(t.end_coverage_pct), "80 % ± 5".to_string(), format!("{} forecasts", t.end_forecasts)),
        ("exhaustion instant inside P10-P90", pct(t.exhaustion_coverage_pct), "80 % ± 5".to_string(), format!("{} forecasts", t.exhaustion_forecasts)),
        ("P50 exhaustion, mean absolute error", days(t.p50_exhaustion_mae_days), format!("point projection {}", days(t.point_exhaustion_mae_days)), "allocations that ran out".to_string()),
        ("lead time, forecast_exhaustion", lead(&t.forecast_exhaustion_lead), String::new(), String::new()),
        ("lead time, the other warnings", lead(&t.other_rules_lead), String::new(), String::new()),
    ];
    match format {
        Format::Json => serde_json::to_string_pretty(&serde_json::json!({ "from": rfc3339(from), "to": rfc3339(to), "step": step, "calibration": t })).expect("serialise") + "\n",
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(["measure", "value", "against", "over"]).expect("in-memory csv");
            for (m, v, a, o) in &rows {
                w.write_record([*m, v, a, o]).expect("in-memory csv");
            }
            String::from_utf8(w.into_inner().expect("in-memory csv")).expect("utf-8")
        }
        Format::Table => {
            let mut out = format!(
                "Forecast calibration, {} to {} (step {step}, forecasts scored weekly): {} allocations, {} ran out, {} ended, {} forecasts\n\n",
                rfc3339(from), rfc3339(to), t.allocations, t.exhausted, t.ended, t.forecasts
            );
            let body: Vec<Vec<String>> = rows.iter().map(|(m, v, a, o)| vec![m.to_string(), v.clone(), a.clone(), o.clone()]).collect();
            out.push_str(&table(&["MEASURE", "VALUE", "AGAINST", "OVER"], &body, &[false; 4]));
            out
        }
    }
}

pub fn replay(events: &[ReplayEvent], leads: &[LeadTime], format: Format) -> String {
    match format {
        Format::Json => {
            serde_json::to_string_pretty(&serde_json::json!({ "events": events, "exhausted": leads })).expect("serialise") + "\n"
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(["at", "kind", "rule", "subject", "key", "recipients", "title"]).expect("in-memory csv");
            for e in events {
                w.write_record([&rfc3339(e.at), &e.kind, &e.rule, &e.subject, &e.discriminator, &e.recipients.join(";"), &e.title])
                    .expect("in-memory csv");
            }
            String::from_utf8(w.into_inner().expect("in-memory csv")).expect("utf-8")
        }
        Format::Table => {
            let body: Vec<Vec<String>> = events
                .iter()
                .map(|e| vec![utc_date(e.at).to_string(), e.kind.clone(), e.rule.clone(), e.subject.clone(), e.discriminator.clone(), e.recipients.join(", ")])
                .collect();
            let mut out = format!("{} alert events would have been notified\n\n", events.len());
            out.push_str(&table(&["DATE", "KIND", "RULE", "SUBJECT", "KEY", "WHO"], &body, &[false; 6]));
            let warned: Vec<f64> = leads.iter().filter_map(|l| l.lead_days).collect();
            let _ = writeln!(
                out,
                "\nExhausted allocations: {}; warned beforehand: {}; lead time (days) median {}, 10th percentile {}",
                leads.len(),
                warned.len(),
                percentile(&warned, 50.0).map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into()),
                percentile(&warned, 10.0).map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into()),
            );
            let body: Vec<Vec<String>> = leads
                .iter()
                .map(|l| {
                    vec![
                        l.subject.clone(),
                        utc_date(l.exhausted_at).to_string(),
                        l.first_warned_at.map(|s| utc_date(s).to_string()).unwrap_or_else(|| "never".into()),
                        l.lead_days.map(|d| format!("{d:.0}")).unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            if !body.is_empty() {
                out.push('\n');
                out.push_str(&table(&["ALLOCATION", "EXHAUSTED", "FIRST WARNED", "LEAD DAYS"], &body, &[false, false, false, true]));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles() {
        assert_eq!(super::percentile(&[5.0, 1.0, 3.0, 2.0, 4.0], 50.0), Some(3.0));
        assert_eq!(super::percentile(&[5.0, 1.0, 3.0, 2.0, 4.0], 10.0), Some(1.0));
        assert_eq!(super::percentile(&[], 10.0), None);
    }
}
