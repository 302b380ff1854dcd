//! Message templates (minijinja): English and French ship in `templates/`, compiled into the
//! binary; a `templates_dir` in the configuration overrides any of them file by file.

use super::settings::Lang;
use minijinja::{AutoEscape, Environment, Value};
use std::path::Path;

const NAMES: [&str; 4] = ["headline.j2", "subject.j2", "message.txt.j2", "message.html.j2"];

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

fn group(n: f64, sep: &str) -> String {
    if !n.is_finite() {
        return "-".into();
    }
    let s = if n.abs() >= 100.0 { format!("{:.0}", n.abs()) } else { format!("{:.1}", n.abs()) };
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i.to_string(), f.to_string()),
        None => (s.clone(), String::new()),
    };
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push_str(sep);
        }
        out.push(c);
    }
    let dec = if sep == "," { "." } else { "," };
    format!("{}{out}{}", if n < 0.0 { "-" } else { "" }, if frac.is_empty() { String::new() } else { format!("{dec}{frac}") })
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
        }
        Ok(t)
    }

    /// Render subject, text and HTML for a message context.
    pub fn render(&self, lang: Lang, ctx: &serde_json::Value) -> Result<Rendered, String> {
        let env = match lang {
            Lang::En => &self.en,
            Lang::Fr => &self.fr,
        };
        let ctx = Value::from_serialize(ctx);
        let r = |name: &str| -> Result<String, String> {
            env.get_template(name).and_then(|t| t.render(&ctx)).map_err(|e| format!("{name}: {e:#}"))
        };
        Ok(Rendered {
            subject: r("subject.j2")?.lines().map(str::trim).collect::<Vec<_>>().join(" ").trim().to_string(),
            text: tidy(&r("message.txt.j2")?),
            html: r("message.html.j2")?,
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
    let facts = serde_json::json!({
        "centre": "idris", "project": "A0", "resource": "cpu", "committee": "CT1", "period_start": "2026-01-01",
        "period_end": "2027-01-01", "granted_hours": 1000.0, "consumed_hours": 500.0, "expected_hours": 400.0,
        "remaining_hours": 500.0, "consumed_pct": 50.0, "drift_pp": 10.0, "elapsed_pct": 40.0,
        "burn_rate_hours_per_day": 3.0, "projected_exhaustion": "2026-12-01T00:00:00+01:00", "projected_unused_hours": 0.0,
        "threshold_pct": 50.0, "checkpoint_date": "2026-11-01", "checkpoint_min_consumed_pct": 10.0,
        "checkpoint_takeback_pct": 25.0, "checkpoint_projected_pct": 5.0, "checkpoint_hours_at_stake": 100.0,
        "checkpoint_days_left": 3.0, "account": "x", "partition": "p", "cluster": "c", "jobs": 1, "hours": 2.0,
        "window_days": 30, "last_success_age_hours": 7.0, "consecutive_failures": 3, "last_error": "e",
    });
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
}
