//! Message templates (minijinja): English and French ship in `templates/`, compiled into the
//! binary; a `templates_dir` in the configuration overrides any of them file by file.

use super::settings::Lang;
use crate::domain::hours::format_hours;
use minijinja::{AutoEscape, Environment, Value};
use std::path::Path;

const NAMES: [&str; 8] = [
    "headline.j2", "subject.j2", "message.txt.j2", "message.html.j2", "digest_words.j2", "digest_subject.j2", "digest.txt.j2", "digest.html.j2",
];

fn bundled(lang: Lang, name: &str) -> &'static str {
    match (lang, name) {
        (Lang::En, "headline.j2") => include_str!("../../templates/en/headline.j2"),
        (Lang::En, "subject.j2") => include_str!("../../templates/en/subject.j2"),
        (Lang::En, "message.txt.j2") => include_str!("../../templates/en/message.txt.j2"),
        (Lang::En, "message.html.j2") => include_str!("../../templates/en/message.html.j2"),
        (Lang::Fr, "headline.j2") => include_str!("../../templates/fr/headline.j2"),
        (Lang::Fr, "subject.j2") => include_str!("../../templates/fr/subject.j2"),
        (Lang::Fr, "message.txt.j2") => include_str!("../../templates/fr/message.txt.j2"),
        (Lang::Fr, "message.html.j2") => include_str!("../../templates/fr/message.html.j2"),
        (Lang::En, "digest_words.j2") => include_str!("../../templates/en/digest_words.j2"),
        (Lang::Fr, "digest_words.j2") => include_str!("../../templates/fr/digest_words.j2"),
        (Lang::En, "digest_subject.j2") => include_str!("../../templates/en/digest_subject.j2"),
        (Lang::En, "digest.txt.j2") => include_str!("../../templates/en/digest.txt.j2"),
        (Lang::En, "digest.html.j2") => include_str!("../../templates/en/digest.html.j2"),
        (Lang::Fr, "digest_subject.j2") => include_str!("../../templates/fr/digest_subject.j2"),
        (Lang::Fr, "digest.txt.j2") => include_str!("../../templates/fr/digest.txt.j2"),
        (Lang::Fr, "digest.html.j2") => include_str!("../../templates/fr/digest.html.j2"),
        _ => "",
    }
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rendered {
    /// One-line subject.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

/// Templates of both languages, ready to render.
pub(crate) struct Templates {
    en: Environment<'static>,
    fr: Environment<'static>,
}

/// Hours as [`format_hours`] prints them, with `sep` between thousands (and a decimal comma
/// when `sep` is not a comma).
fn group(n: f64, sep: &str) -> String {
    let en = format_hours(n);
    if sep == "," {
        return en;
    }
    en.chars().map(|c| match c {
        ',' => sep.to_string(),
        '.' => ",".to_string(),
        c => c.to_string(),
    }).collect()
}

fn as_f64(v: &Value) -> Option<f64> {
    if v.is_none() || v.is_undefined() {
        return None;
    }
    f64::try_from(v.clone()).ok()
}

fn env(lang: Lang, dir: Option<&Path>) -> Result<Environment<'static>, String> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|name| if name.contains(".html") { AutoEscape::Html } else { AutoEscape::None });
    env.set_trim_blocks(false);
    env.set_keep_trailing_newline(true);
    let sep = if lang == Lang::En { "," } else { "\u{202f}" };
    env.add_filter("hours", move |v: Value| as_f64(&v).map(|n| group(n, sep)).unwrap_or_else(|| "-".into()));
    let dec = if lang == Lang::En { '.' } else { ',' };
    env.add_filter("pct", move |v: Value| as_f64(&v).map(|n| format!("{n:.1}").replace('.', &dec.to_string())).unwrap_or_else(|| "-".into()));
    env.add_filter("pp", move |v: Value| as_f64(&v).map(|n| format!("{n:+.1}").replace('.', &dec.to_string())).unwrap_or_else(|| "-".into()));
    // A plain number: integers without decimals (50 %), others with one.
    env.add_filter("n", move |v: Value| {
        as_f64(&v)
            .map(|n| if n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { format!("{n:.1}").replace('.', &dec.to_string()) })
            .unwrap_or_else(|| "-".into())
    });
    env.add_filter("date", |v: Value| v.as_str().map(|s| s.chars().take(10).collect::<String>()).unwrap_or_default());
    for name in NAMES {
        let over = dir.map(|d| d.join(lang.code()).join(name)).filter(|p| p.is_file());
        let source = match over {
            Some(p) => std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?,
            None => bundled(lang, name).to_string(),
        };
        env.add_template_owned(name.to_string(), source)
            .map_err(|e| format!("template {}/{name}: {e}", lang.code()))?;
    }
    Ok(env)
}

impl Templates {
    /// Load the bundled templates, overridden by files under `dir/<lang>/` when given.
    /// Each template is rendered once on a sample so a broken override fails at start.
    pub fn load(dir: Option<&Path>) -> Result<Templates, String> {
        let t = Templates { en: env(Lang::En, dir)?, fr: env(Lang::Fr, dir)? };
        for lang in [Lang::En, Lang::Fr] {
            t.render(lang, &sample()).map_err(|e| format!("templates ({}): {e}", lang.code()))?;
            t.render_digest(lang, &digest_sample()).map_err(|e| format!("digest templates ({}): {e}", lang.code()))?;
        }
        Ok(t)
    }

    /// Render a researchers' digest: subject, text and HTML (`digest*.j2`).
    pub fn render_digest(&self, lang: Lang, ctx: &serde_json::Value) -> Result<Rendered, String> {
        self.render_with(lang, ctx, ["digest_subject.j2", "digest.txt.j2", "digest.html.j2"])
    }

    /// Render subject, text and HTML for a message context.
    pub fn render(&self, lang: Lang, ctx: &serde_json::Value) -> Result<Rendered, String> {
        self.render_with(lang, ctx, ["subject.j2", "message.txt.j2", "message.html.j2"])
    }

    /// Render the subject, text and HTML templates named.
    fn render_with(&self, lang: Lang, ctx: &serde_json::Value, [subject, text, html]: [&str; 3]) -> Result<Rendered, String> {
        let env = match lang {
            Lang::En => &self.en,
            Lang::Fr => &self.fr,
        };
        let ctx = Value::from_serialize(ctx);
        let r = |name: &str| -> Result<String, String> {
            env.get_template(name).and_then(|t| t.render(&ctx)).map_err(|e| format!("{name}: {e:#}"))
        };
        Ok(Rendered {
            subject: r(subject)?.lines().map(str::trim).collect::<Vec<_>>().join(" ").trim().to_string(),
            text: tidy(&r(text)?),
            html: r(html)?,
        })
    }
}

/// Collapse runs of blank lines left by template control blocks.
fn tidy(text: &str) -> String {
    let mut out = String::new();
    let mut blank = 0;
    for line in text.lines() {
        let l = line.trim_end();
        if l.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// A context exercising every branch, used to validate templates at load.
fn sample() -> serde_json::Value {
    let mut facts = serde_json::json!({
        "centre": "idris", "project": "A0", "resource": "cpu", "committee": "CT1", "period_start": "2026-01-01",
        "period_end": "2027-01-01", "granted_hours": 1000.0, "consumed_hours": 500.0, "expected_hours": 400.0,
        "remaining_hours": 500.0, "consumed_pct": 50.0, "drift_pp": 10.0, "elapsed_pct": 40.0,
        "burn_rate_hours_per_day": 3.0, "projected_exhaustion": "2026-12-01T00:00:00+01:00", "projected_unused_hours": 0.0,
        "threshold_pct": 50.0, "checkpoint_date": "2026-11-01", "checkpoint_min_consumed_pct": 10.0,
        "checkpoint_takeback_pct": 25.0, "checkpoint_projected_pct": 5.0, "checkpoint_hours_at_stake": 100.0,
        "checkpoint_days_left": 3.0, "account": "x", "partition": "p", "cluster": "c", "jobs": 1, "hours": 2.0,
        "window_days": 30, "last_success_age_hours": 7.0, "consecutive_failures": 3, "last_error": "e",
    });
    let forecast = serde_json::json!({
        "committed_hours": 20.0, "at_risk_hours": 520.0,
        "forecast": { "history_days": 28, "exhaustion_p10": "2026-10-01T00:00:00+02:00", "exhaustion_p50": "2026-11-01T00:00:00+01:00",
            "exhaustion_p90": null, "end_consumed_hours_p10": 900.0, "end_consumed_hours_p50": 1100.0, "end_consumed_hours_p90": 1500.0 },
        "forecast_history_days": 28, "forecast_probability_pct": 85.0, "forecast_days_before_end": 30.0,
        "forecast_required_probability_pct": 80.0, "forecast_horizon": "end", "forecast_horizon_at": "2027-01-01T00:00:00Z",
        "forecast_unused_pct": 10.0, "forecast_unused_hours": 300.0, "forecast_lost_below_hours": 900.0,
        "forecast_takeback_pct": 100.0, "forecast_hours_at_stake": 300.0, "forecast_consumed_hours_p10": 600.0,
        "forecast_consumed_hours_p50": 650.0, "forecast_consumed_hours_p90": 700.0,
    });
    if let (Some(f), Some(more)) = (facts.as_object_mut(), forecast.as_object()) {
        f.extend(more.clone());
    }
    let items: Vec<serde_json::Value> = crate::domain::rules::Rule::ALL
        .iter()
        .flat_map(|r| {
            ["firing", "reminder", "resolved"].map(|k| {
                serde_json::json!({ "kind": k, "rule": r.as_str(), "severity": "warning", "title": "t", "alert_id": 1,
                    "facts": facts, "drivers": { "users": [{"name": "u", "hours": 1.0}], "partitions": [{"name": "p", "hours": 1.0}] } })
            })
        })
        .collect();
    serde_json::json!({ "audience": "operations", "project": "A0", "centre": "idris", "resource": "cpu", "at": "2026-01-01", "items": items })
}

/// A digest context exercising every branch of the digest templates, used to validate them at
/// load (what `super::digest` gives them: reports, totals per kind, the link).
fn digest_sample() -> serde_json::Value {
    let alloc = |resource: &str, kind: &str, status: &str, exhaustion: serde_json::Value| {
        serde_json::json!({
            "centre": "idris", "project": "A0", "resource": resource, "committee": "CT1", "accounts": ["a0"],
            "period_start": "2026-01-01", "period_end": "2027-01-01", "initial_granted_hours": 1000.0,
            "granted_hours": 1000.0, "consumed_hours": 500.0, "expected_hours": 400.0, "remaining_hours": 500.0,
            "consumed_pct": 50.0, "drift_pp": 10.0, "elapsed_pct": 40.0, "burn_rate_hours_per_day": 3.0,
            "projected_exhaustion": exhaustion, "projected_exhaustion_days": 10.0, "projected_unused_hours": 0.0,
            "status": status, "at": "2026-06-01T00:00:00Z", "kind": kind, "chart": "burndown1.x@allocwatch",
        })
    };
    let statuses = ["on_track", "over_pace", "under_pace", "exhausted", "not_started", "ended"];
    let mut allocations: Vec<serde_json::Value> = statuses.iter().map(|s| alloc("cpu", "core", s, serde_json::json!("2026-12-01T00:00:00+01:00"))).collect();
    allocations.push(alloc("gpu", "gpu", "on_track", serde_json::Value::Null));
    allocations.push(alloc("mix", "billing", "on_track", serde_json::Value::Null));
    let total = |kind: &str, pct: serde_json::Value| serde_json::json!({ "kind": kind, "allocations": 1, "granted_hours": 1.0, "consumed_hours": 1.0, "remaining_hours": 0.0, "expected_hours": 1.0, "consumed_pct": pct });
    serde_json::json!({
        "project": "A0", "every": "week", "period": "2026-W23", "at": "2026-06-01T00:00:00Z", "date": "2026-06-01",
        "allocations": allocations,
        "totals": [total("core", serde_json::json!(50.0)), total("gpu", serde_json::Value::Null), total("billing", serde_json::json!(1.0))],
        "link": { "url": "https://allocwatch.example/projects/A0?key=k", "expires": "2026-07-07T00:00:00Z" },
        "chart_width": super::chart::WIDTH, "chart_height": super::chart::HEIGHT,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_the_language() {
        assert_eq!(group(1234567.0, ","), "1,234,567");
        assert_eq!(group(12.34, ","), "12.3");
        assert_eq!(group(1234567.0, "\u{202f}"), "1\u{202f}234\u{202f}567");
        assert_eq!(group(12.34, "\u{202f}"), "12,3");
    }

    #[test]
    fn bundled_templates_render_and_escape_html() {
        let t = Templates::load(None).unwrap();
        let mut ctx = sample();
        ctx["items"][0]["title"] = serde_json::json!("<script>alert(1)</script>");
        ctx["items"][0]["facts"]["account"] = serde_json::json!("<b>x</b>");
        let r = t.render(Lang::En, &ctx).unwrap();
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(r.html.contains("&lt;script&gt;"));
        assert!(r.text.contains("<script>"), "text parts are not HTML");
        let fr = t.render(Lang::Fr, &ctx).unwrap();
        assert!(fr.text.contains("Bonjour"));
        assert!(!r.subject.contains('\n'));
    }

    #[test]
    fn forecast_alerts_explain_the_band_in_both_languages() {
        let t = Templates::load(None).unwrap();
        let mut ctx = sample();
        let items = ctx["items"].as_array().unwrap().iter().filter(|i| i["rule"] == "forecast_exhaustion" && i["kind"] == "firing").cloned().collect();
        ctx["items"] = serde_json::Value::Array(items);
        ctx["audience"] = "researchers".into();
        let en = t.render(Lang::En, &ctx).unwrap();
        assert!(en.subject.contains("forecast to run out 30 days or more before the period end"), "{}", en.subject);
        assert!(en.text.contains("hours run out between 2026-10-01 and after the period end"), "{}", en.text);
        assert!(en.text.contains("85.0 % of the futures simulated from the last 28 days"), "{}", en.text);
        assert!(en.text.contains("may still use 20.0 h to their time limits"), "{}", en.text);
        assert!(en.html.contains("Forecast (80 %)"), "{}", en.html);
        let fr = t.render(Lang::Fr, &ctx).unwrap();
        assert!(fr.subject.contains("épuisement prévu 30 jours ou plus avant la fin de période"), "{}", fr.subject);
        assert!(fr.text.contains("heures épuisées entre le 2026-10-01 et après la fin de période"), "{}", fr.text);
        assert!(fr.text.contains("85,0 % des évolutions simulées"), "{}", fr.text);
        assert!(fr.html.contains("Prévision (80 %)"), "{}", fr.html);
    }

    #[test]
    fn both_languages_render_the_sample_with_figures_per_kind() {
        let t = Templates::load(None).unwrap();
        let en = t.render_digest(Lang::En, &digest_sample()).unwrap();
        assert!(en.subject.starts_with("[allocwatch] A0") && !en.subject.contains('\n'), "{}", en.subject);
        assert!(en.text.contains("core-hours") && en.text.contains("GPU-hours") && en.text.contains("billing-hours"), "{}", en.text);
        assert!(en.html.contains("src=\"cid:burndown1.x@allocwatch\""), "{}", en.html);
        assert!(en.text.contains("https://allocwatch.example/projects/A0?key=k"), "{}", en.text);
        assert!(en.html.contains("href=\"https:&#x2f;&#x2f;allocwatch.example&#x2f;projects&#x2f;A0?key=k\""), "{}", en.html);
        let fr = t.render_digest(Lang::Fr, &digest_sample()).unwrap();
        assert!(fr.text.contains("Bonjour") && fr.text.contains("heures-cœur") && fr.text.contains("heures GPU"), "{}", fr.text);
        assert!(fr.text.contains("1\u{202f}000"), "{}", fr.text);
    }
}
