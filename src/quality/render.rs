//! The quality report as Markdown (for people and process sheets), CSV and JSON (for
//! spreadsheets), and `--explain` listings. Reproducible: fixed ordering, fixed float format
//! (two decimals, counts as integers), no wall-clock anything.

use crate::domain::quality::{fixed, round2, Evidence, QualityReport, Scope, ScopeKind, Unit, RULES, STANDINGS};
use crate::domain::time::rfc3339 as utc;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Output format of `report quality`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum QualityFormat {
    /// Markdown tables.
    Md,
    /// One row per figure: period, scope, scope_id, indicator, value, unit.
    Csv,
    /// One object with the period and the figures.
    Json,
}

/// A number of days as typed: `7`, `7.5`.
fn days_text(d: f64) -> String {
    if d.fract() == 0.0 && d.abs() < 1e15 {
        format!("{}", d as i64)
    } else {
        format!("{d}")
    }
}

fn value_text(v: Option<f64>, unit: Unit) -> String {
    match (v, unit) {
        (None, _) => String::new(),
        (Some(x), Unit::Count) => format!("{}", x.round() as i64),
        (Some(x), _) => fixed(x),
    }
}

/// Render a report.
pub fn report(r: &QualityReport, format: QualityFormat) -> String {
    match format {
        QualityFormat::Md => markdown(r),
        QualityFormat::Csv => csv(r),
        QualityFormat::Json => json(r),
    }
}

fn csv(r: &QualityReport) -> String {
    let mut w = ::csv::Writer::from_writer(Vec::new());
    w.write_record(["period", "scope", "scope_id", "indicator", "value", "unit"]).expect("write to memory");
    for f in &r.figures {
        w.write_record([
            r.period.label.as_str(),
            f.scope.kind.as_str(),
            f.scope.id.as_str(),
            f.indicator.as_str(),
            value_text(f.value, f.unit).as_str(),
            f.unit.as_str(),
        ])
        .expect("write to memory");
    }
    String::from_utf8(w.into_inner().expect("flush to memory")).expect("utf-8 in, utf-8 out")
}

fn json(r: &QualityReport) -> String {
    use serde_json::{json, Value};
    let figures: Vec<Value> = r
        .figures
        .iter()
        .map(|f| {
            let value = match (f.value, f.unit) {
                (None, _) => Value::Null,
                (Some(x), Unit::Count) => json!(x.round() as i64),
                (Some(x), _) => json!(round2(x)),
            };
            json!({"scope": f.scope.kind.as_str(), "scope_id": f.scope.id, "indicator": f.indicator, "value": value, "unit": f.unit.as_str()})
        })
        .collect();
    let doc = json!({
        "period": r.period.label,
        "start": r.period.start.to_string(),
        "end": r.period.end.to_string(),
        "complete": r.complete,
        "as_of": r.as_of.map(utc),
        "min_lead_days": r.min_lead_days,
        "centre": r.centre_filter,
        "figures": figures,
    });
    serde_json::to_string_pretty(&doc).expect("JSON of plain values") + "\n"
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn md_table(out: &mut String, headers: &[String], rows: &[Vec<String>], first_left: usize) {
    let _ = writeln!(out, "| {} |", headers.iter().map(|h| md_escape(h)).collect::<Vec<_>>().join(" | "));
    let align: Vec<&str> = (0..headers.len()).map(|i| if i < first_left { "---" } else { "---:" }).collect();
    let _ = writeln!(out, "|{}|", align.join("|"));
    for r in rows {
        let _ = writeln!(out, "| {} |", r.iter().map(|c| if c.is_empty() { "-".to_string() } else { md_escape(c) }).collect::<Vec<_>>().join(" | "));
    }
    out.push('\n');
}

fn scope_label(s: &Scope) -> String {
    match s.kind {
        ScopeKind::Overall => "overall".into(),
        ScopeKind::Centre => format!("centre {}", s.id),
        ScopeKind::Committee => format!("committee {}", s.id),
    }
}

fn markdown(r: &QualityReport) -> String {
    let mut by: HashMap<(&Scope, &str), (Option<f64>, Unit)> = HashMap::new();
    for f in &r.figures {
        by.insert((&f.scope, f.indicator.as_str()), (f.value, f.unit));
    }
    let cell = |s: &Scope, ind: &str| by.get(&(s, ind)).map(|(v, u)| value_text(*v, *u)).unwrap_or_default();
    // "n (p %)" for status counts.
    let status_cell = |s: &Scope, status: &str, suffix: &str| {
        let n = cell(s, &format!("status_{status}{suffix}"));
        let p = cell(s, &format!("status_{status}_pct{suffix}"));
        if p.is_empty() {
            n
        } else {
            format!("{n} ({p} %)")
        }
    };
    let all: Vec<&Scope> = r.scopes.iter().collect();
    let feeds: Vec<&Scope> = r.scopes.iter().filter(|s| s.kind != ScopeKind::Committee).collect();
    let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<String>>();

    let mut out = String::new();
    let _ = writeln!(out, "# Quality indicators — {}\n", r.period.label);
    let last = r.period.end.yesterday().expect("period end after 1970");
    let _ = writeln!(out, "- Period: {} to {} (each centre's local days)", r.period.start, last);
    match r.as_of {
        None => {
            let _ = writeln!(out, "- Data: complete (the store's reconciliations reach the period end)");
        }
        Some(t) => {
            let _ = writeln!(out, "- Data: up to {} (the store's latest reconciliation); the period is not over", utc(t));
        }
    }
    let centres: Vec<&str> = r.scopes.iter().filter(|s| s.kind == ScopeKind::Centre).map(|s| s.id.as_str()).collect();
    let _ = writeln!(out, "- Centres: {}", if centres.is_empty() { "none".to_string() } else { centres.join(", ") });
    let _ = writeln!(out, "- Warned ahead: at least {} days before exhaustion", days_text(r.min_lead_days));
    let _ = writeln!(out, "- Definitions: docs/quality-indicators.md; the facts behind a figure: `allocwatch report quality --period {} --explain INDICATOR`\n", r.period.label);

    // One row per scope and kind of hours: core-hours and GPU-hours are never added.
    let _ = writeln!(out, "## Hours granted and consumed\n");
    let mut rows: Vec<Vec<String>> = Vec::new();
    for s in &all {
        let before = rows.len();
        for k in &r.kinds {
            // A kind this scope has no allocation or adjustment of is left out of the table
            // (its zero figures stay in the CSV and JSON).
            let id = k.id();
            if cell(s, &format!("allocations.{id}")) == "0" && cell(s, &format!("adjustments.{id}")) == "0" {
                continue;
            }
            let mut row = vec![scope_label(s), k.as_str().to_string()];
            for ind in ["allocations", "granted_hours", "consumed_hours", "utilisation_pct", "added_hours", "taken_back_hours", "adjustments"] {
                row.push(cell(s, &format!("{ind}.{id}")));
            }
            rows.push(row);
        }
        if rows.len() == before {
            rows.push(vec![scope_label(s), String::new(), cell(s, "allocations"), String::new(), String::new(), String::new(), String::new(), String::new(), cell(s, "adjustments")]);
        }
    }
    md_table(&mut out, &h(&["scope", "hours", "allocations", "granted", "consumed", "utilisation %", "added", "taken back", "adjustments"]), &rows, 2);

    let status_headers = ["on track", "over pace", "under pace", "exhausted", "within ±10 pp %"];
    let status_row = |s: &Scope, suffix: &str| {
        let mut row = Vec::new();
        for st in STANDINGS {
            row.push(status_cell(s, st.as_str(), suffix));
        }
        row.push(cell(s, &format!("within_10pp_pct{suffix}")));
        row
    };
    let _ = writeln!(out, "## Allocations by status at period end\n");
    let rows: Vec<Vec<String>> = all.iter().map(|s| [vec![scope_label(s)], status_row(s, "")].concat()).collect();
    let mut headers = h(&["scope"]);
    headers.extend(h(&status_headers));
    md_table(&mut out, &headers, &rows, 1);

    // A one-month period's month end is its end: the table would repeat the one above.
    if r.period.months().len() > 1 {
        let _ = writeln!(out, "## Allocations by status at each month end\n");
        let mut rows = Vec::new();
        for m in &r.months {
            for s in &all {
                rows.push([vec![m.clone(), scope_label(s)], status_row(s, &format!("@{m}"))].concat());
            }
        }
        let mut headers = h(&["month", "scope"]);
        headers.extend(h(&status_headers));
        md_table(&mut out, &headers, &rows, 2);
    }

    let _ = writeln!(out, "## Alerts fired, by rule\n");
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|s| {
            let mut row = vec![scope_label(s)];
            for rule in RULES {
                row.push(cell(s, &format!("alerts_fired.{rule}")));
            }
            row.push(cell(s, "alerts_fired"));
            row.push(cell(s, "reminders"));
            row
        })
        .collect();
    let mut headers = h(&["scope"]);
    headers.extend(RULES.iter().map(|r| r.replace('_', " ")));
    headers.extend(h(&["total", "reminders"]));
    md_table(&mut out, &headers, &rows, 1);

    let _ = writeln!(out, "## Warning ahead of exhaustion, and deliveries\n");
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|s| {
            let mut row = vec![scope_label(s)];
            for ind in ["exhausted_allocations", "warned_ahead_pct", "lead_time_median_days", "lead_time_p10_days", "notifications", "deliveries_retried", "deliveries_failed"] {
                row.push(cell(s, ind));
            }
            row
        })
        .collect();
    let ahead = format!("warned ≥ {} d ahead %", days_text(r.min_lead_days));
    md_table(
        &mut out,
        &h(&["scope", "exhausted", &ahead, "lead median d", "lead p10 d", "notifications", "retried", "failed"]),
        &rows,
        1,
    );

    let _ = writeln!(out, "## Forecast calibration\n");
    let _ = writeln!(
        out,
        "Month-end forecasts of allocations whose period ended by the period end, made while they had hours left: the share whose P10–P90 band of end-of-period hours held the hours consumed (target 80 %).\n"
    );
    let rows: Vec<Vec<String>> = all.iter().map(|s| vec![scope_label(s), cell(s, "forecasts_scored"), cell(s, "forecast_coverage_pct")]).collect();
    md_table(&mut out, &h(&["scope", "forecasts scored", "P10–P90 coverage %"]), &rows, 1);

    let _ = writeln!(out, "## Data quality\n");
    let rows: Vec<Vec<String>> = feeds
        .iter()
        .map(|s| {
            let mut row = vec![scope_label(s)];
            for ind in [
                "pulls",
                "pulls_ok",
                "pull_success_pct",
                "longest_gap_hours",
                "rejected_lines",
                "consumption_core_hours",
                "orphan_core_hours",
                "orphan_pct",
                "unmapped_core_hours",
                "unmapped_pct",
            ] {
                row.push(cell(s, ind));
            }
            row
        })
        .collect();
    md_table(
        &mut out,
        &h(&["scope", "pulls", "succeeded", "success %", "longest gap h", "rejected lines", "consumption core-h", "orphan core-h", "orphan %", "unmapped core-h", "unmapped %"]),
        &rows,
        1,
    );
    let _ = writeln!(out, "A dash means the figure has no meaning here (a share of nothing, a feed figure for a committee).");
    out
}

/// Render the facts behind a figure.
pub(crate) fn evidence(e: &Evidence, period: &str, format: QualityFormat) -> String {
    match format {
        QualityFormat::Md => {
            let mut out = String::new();
            let _ = writeln!(out, "# {} — {}\n", e.indicator, period);
            let _ = writeln!(out, "Source: {}. {} rows.\n", e.source, e.rows.len());
            md_table(&mut out, &e.headers.iter().map(|h| h.to_string()).collect::<Vec<_>>(), &e.rows, e.headers.len());
            out
        }
        QualityFormat::Csv => {
            let mut w = ::csv::Writer::from_writer(Vec::new());
            w.write_record(&e.headers).expect("write to memory");
            for r in &e.rows {
                w.write_record(r).expect("write to memory");
            }
            String::from_utf8(w.into_inner().expect("flush to memory")).expect("utf-8 in, utf-8 out")
        }
        QualityFormat::Json => {
            let rows: Vec<serde_json::Map<String, serde_json::Value>> = e
                .rows
                .iter()
                .map(|r| e.headers.iter().zip(r).map(|(h, v)| (h.to_string(), serde_json::Value::String(v.clone()))).collect())
                .collect();
            let doc = serde_json::json!({"indicator": e.indicator, "period": period, "source": e.source, "rows": rows});
            serde_json::to_string_pretty(&doc).expect("JSON of plain values") + "\n"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_formatting_is_stable() {
        let cases = [(0.0, "0.00"), (-0.001, "0.00"), (1.005, "1.00"), (2.675, "2.68"), (1234.5678, "1234.57"), (-3.333, "-3.33"), (100.0 / 3.0, "33.33")];
        for (v, want) in cases {
            assert_eq!(fixed(v), want, "{v}");
        }
        assert_eq!(value_text(Some(3.0), Unit::Count), "3");
        assert_eq!(value_text(None, Unit::Percent), "");
    }
}
