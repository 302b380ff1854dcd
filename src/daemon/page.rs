//! The status page for the operations team, rendered on the server: the allocation table
//! (filtered and sorted by query parameters, so it works without JavaScript and the same URL
//! always shows the same thing) and per allocation a burn-down chart in inline SVG. No external
//! resource of any kind: the page works offline.
//!
//! Every name that comes from data (projects, accounts, committees, centres, error messages) is
//! escaped with [`esc`] before it reaches HTML, and with [`path_segment`] before it reaches a URL.

use crate::domain::burndown::{BandPoint, BurnDown};
use crate::domain::hours::{format_hours, HoursKind, ResourceHours};
use crate::domain::reconciliation::{AllocationReport, Reconciliation};
use crate::domain::time::{timestamp, utc_date, LocalInstant};
use crate::store::alerts::AlertRow;
use std::fmt::Write as _;

/// Escape text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode a URL path segment or query value: the one encoder, beside the links.
pub(crate) use crate::links::segment as path_segment;

/// Statuses in the order the page lists them, with their label.
pub const STATUSES: &[(&str, &str)] = &[
    ("exhausted", "Exhausted"),
    ("over_pace", "Over pace"),
    ("under_pace", "Under pace"),
    ("on_track", "On track"),
    ("not_started", "Not started"),
    ("ended", "Ended"),
];

fn status_label(s: &str) -> &'static str {
    STATUSES.iter().find(|(k, _)| *k == s).map(|(_, l)| *l).unwrap_or("Unknown")
}

fn status_rank(s: &str) -> usize {
    STATUSES.iter().position(|(k, _)| *k == s).unwrap_or(STATUSES.len())
}

const CSS: &str = r#"
:root{--ink:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa;--card:#fff;--brand:#0b2545;--accent:#1f6feb;
--on_track:#1a7f37;--over_pace:#bc4c00;--under_pace:#8250df;--exhausted:#cf222e;--not_started:#6e7781;--ended:#424a53}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);background:var(--bg)}
header{background:var(--brand);color:#fff;padding:14px 28px;display:flex;align-items:baseline;gap:18px;flex-wrap:wrap}
header h1{font-size:19px;margin:0;font-weight:650;letter-spacing:.2px}
header h1 a{color:#fff;text-decoration:none}
header .sub{color:#c9d4e3;font-size:13px}
header .meta{margin-left:auto;color:#c9d4e3;font-size:12.5px}
main{padding:20px 20px 40px;max-width:1500px;margin:0 auto}
a{color:var(--accent)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(150px,1fr));gap:12px;margin-bottom:18px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px;text-decoration:none;color:inherit;display:block}
.card .n{font-size:24px;font-weight:650;font-variant-numeric:tabular-nums}
.card .l{color:var(--muted);font-size:12.5px;text-transform:uppercase;letter-spacing:.4px}
.card.status{border-left:4px solid var(--c)}
.card.active{outline:2px solid var(--accent)}
.panel{background:var(--card);border:1px solid var(--line);border-radius:8px;margin-bottom:18px}
.panel h2{font-size:15px;margin:0;padding:12px 16px;border-bottom:1px solid var(--line)}
form.filters{display:flex;gap:12px;align-items:end;flex-wrap:wrap;padding:12px 16px;border-bottom:1px solid var(--line)}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:var(--muted);gap:3px}
form.filters select,form.filters input{font:inherit;padding:5px 8px;border:1px solid var(--line);border-radius:6px;background:#fff;min-width:150px}
form.filters .count{margin-left:auto;color:var(--muted)}
button{font:inherit;padding:5px 12px;border-radius:6px;border:1px solid var(--line);background:#f6f8fa;cursor:pointer}
table{border-collapse:collapse;width:100%}
th,td{padding:7px 6px;border-bottom:1px solid #eaeef2;text-align:left;white-space:nowrap}
table#allocations{font-size:13px}
td.committee{max-width:150px;overflow:hidden;text-overflow:ellipsis}
th{font-size:12px;text-transform:uppercase;letter-spacing:.3px;color:var(--muted);background:#fbfcfd;position:sticky;top:0}
th a{color:inherit;text-decoration:none}
th a:hover{color:var(--accent)}
th[aria-sort] a::after{content:" \25B4"}
th[aria-sort=descending] a::after{content:" \25BE"}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:hover{background:#f6f8fa}
.badge{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;font-weight:600;color:#fff;background:var(--c)}
.bar{position:relative;width:64px;height:10px;background:#eaeef2;border-radius:5px;display:inline-block;vertical-align:middle;margin-right:8px}
.bar .fill{position:absolute;left:0;top:0;bottom:0;border-radius:5px;background:var(--c)}
.bar .exp{position:absolute;top:-3px;bottom:-3px;width:2px;background:var(--ink)}
.muted{color:var(--muted)}
.pos{color:var(--over_pace)}.neg{color:var(--under_pace)}
.feeds td .dot{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:6px;background:var(--c)}
.figs{display:grid;grid-template-columns:repeat(5,1fr);gap:1px;background:var(--line)}
.figs div{background:#fff;padding:10px 16px}
.figs .l{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.3px}
.figs .v{font-size:18px;font-weight:600;font-variant-numeric:tabular-nums}
.figs .span3{grid-column:span 3}.figs .span2{grid-column:span 2}
.chart{padding:10px 16px 4px}
.chart svg{width:100%;height:auto;display:block}
.legend{display:flex;gap:18px;flex-wrap:wrap;padding:4px 16px 14px;color:var(--muted);font-size:12.5px}
.legend i{display:inline-block;width:22px;height:0;border-top:3px solid;vertical-align:middle;margin-right:6px}
svg .grid{stroke:#eaeef2;stroke-width:1}
svg .axis{stroke:#8c959f;stroke-width:1}
svg text{font:11px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;fill:#59636e}
svg .granted{fill:none;stroke:#bc4c00;stroke-width:2}
svg .expected{fill:none;stroke:#59636e;stroke-width:2;stroke-dasharray:6 4}
svg .consumed{fill:none;stroke:#1f6feb;stroke-width:2.5}
svg .consumed-area{fill:#1f6feb;fill-opacity:.12;stroke:none}
svg .projection{fill:none;stroke:#1f6feb;stroke-width:2;stroke-dasharray:2 4}
svg .band{fill:#8250df;fill-opacity:.16;stroke:none}
svg .band-median{fill:none;stroke:#8250df;stroke-width:2;stroke-dasharray:8 4}
svg .now{stroke:#24292f;stroke-width:1;stroke-dasharray:3 3}
svg .exhaustion{fill:#cf222e}
.empty{padding:40px;text-align:center;color:var(--muted)}
footer{color:var(--muted);font-size:12px;padding:0 28px 24px;max-width:1500px;margin:0 auto}
@media (max-width:900px){main{padding:12px}th,td{padding:6px}.figs{grid-template-columns:repeat(2,1fr)}.figs .span3{grid-column:span 2}}
"#;

fn head(title: &str, meta: &str) -> String {
    head_with(title, meta, true)
}

/// The page's head; `home`: the title links to the overview (not for a project's link holders,
/// whom the overview refuses).
fn head_with(title: &str, meta: &str, home: bool) -> String {
    let brand = if home { "<a href=\"/\">allocwatch</a>" } else { "allocwatch" };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><style>{CSS}</style></head><body>\
<header><h1>{brand}</h1><span class=\"sub\">Compute-hour allocations</span><span class=\"meta\">{meta}</span></header><main>",
        esc(title)
    )
}

const FOOT: &str = "</main><footer>allocwatch · figures in each resource's hours (core-hours or GPU-hours) · JSON: <a href=\"/api/v1/allocations\">/api/v1/allocations</a></footer></body></html>\n";

/// An instant as the page shows it (`2026-11-15 12:00 UTC`).
fn instant(s: i64) -> String {
    timestamp(s).strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// Hours as the page shows them (the table's thousands-separated format).
fn hours(h: ResourceHours) -> String {
    format_hours(h.value())
}

fn ago(seconds: i64) -> String {
    match seconds {
        s if s < 0 => "just now".into(),
        s if s < 90 => format!("{s} s ago"),
        s if s < 90 * 60 => format!("{} min ago", s / 60),
        s if s < 48 * 3600 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86400),
    }
}

/// A centre's data feed as the page shows it.
#[derive(Debug, Clone)]
pub struct FeedView {
    /// Centre id.
    pub centre: String,
    /// Its pull schedule.
    pub schedule: String,
    /// Last successful pull (epoch seconds).
    pub last_success: Option<i64>,
    /// Failed pulls since the last success.
    pub consecutive_failures: u32,
    /// The last failure.
    pub last_error: Option<String>,
}

/// Filters and sort order of the table (query parameters `centre`, `committee`, `status`,
/// `q`, `sort`, `dir`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct TableQuery {
    /// Only this centre.
    #[serde(default)]
    pub centre: Option<String>,
    /// Only this committee.
    #[serde(default)]
    pub committee: Option<String>,
    /// Only this status.
    #[serde(default)]
    pub status: Option<String>,
    /// Project, account or resource containing this text.
    #[serde(default)]
    pub q: Option<String>,
    /// Sort column.
    #[serde(default)]
    pub sort: Option<String>,
    /// `asc` or `desc`.
    #[serde(default)]
    pub dir: Option<String>,
}

impl TableQuery {
    fn get<'a>(v: &'a Option<String>) -> Option<&'a str> {
        v.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }

    fn keeps(&self, a: &AllocationReport) -> bool {
        Self::get(&self.centre).is_none_or(|c| a.centre == c)
            && Self::get(&self.committee).is_none_or(|c| a.committee == c)
            && Self::get(&self.status).is_none_or(|s| a.status.as_str() == s)
            && Self::get(&self.q).is_none_or(|q| {
                let q = q.to_lowercase();
                a.project.to_lowercase().contains(&q)
                    || a.resource.to_lowercase().contains(&q)
                    || a.accounts.iter().any(|x| x.to_lowercase().contains(&q))
            })
    }

    /// The query string with one parameter changed (`None` removes it).
    fn with(&self, key: &str, value: Option<&str>) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for (k, v) in [("centre", &self.centre), ("committee", &self.committee), ("status", &self.status), ("q", &self.q), ("sort", &self.sort), ("dir", &self.dir)] {
            let v = if k == key { value.map(str::to_string) } else { Self::get(v).map(str::to_string) };
            if let Some(v) = v.filter(|v| !v.is_empty()) {
                pairs.push((k, v));
            }
        }
        if pairs.is_empty() {
            return "/".into();
        }
        let q: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", path_segment(v))).collect();
        format!("/?{}", q.join("&"))
    }
}

/// Columns of the table: (key, header, numeric).
const COLUMNS: &[(&str, &str, bool)] = &[
    ("status", "Status", false),
    ("project", "Project", false),
    ("centre", "Centre", false),
    ("resource", "Resource", false),
    ("committee", "Committee", false),
    ("period", "Period", false),
    ("granted", "Granted h", true),
    ("consumed", "Consumed h", true),
    ("used", "Used · expected", true),
    ("drift", "Drift", true),
    ("burn", "Burn h/day", true),
    ("exhaustion", "Exhaustion", true),
];

fn sort_rows(rows: &mut [&AllocationReport], key: &str, desc: bool) {
    let num = |v: Option<f64>| v.filter(|x| x.is_finite()).unwrap_or(f64::NEG_INFINITY);
    rows.sort_by(|a, b| {
        let o = match key {
            "project" => a.project.cmp(&b.project),
            "centre" => a.centre.cmp(&b.centre),
            "resource" => a.resource.cmp(&b.resource),
            "committee" => a.committee.cmp(&b.committee),
            "period" => a.period_start.cmp(&b.period_start),
            "granted" => a.granted_hours.value().total_cmp(&b.granted_hours.value()),
            "consumed" => a.consumed_hours.value().total_cmp(&b.consumed_hours.value()),
            "used" => num(a.consumed_pct).total_cmp(&num(b.consumed_pct)),
            "drift" => num(a.drift_pp).total_cmp(&num(b.drift_pp)),
            "burn" => a.burn_rate_hours_per_day.total_cmp(&b.burn_rate_hours_per_day),
            // Soonest exhaustion first; none last.
            "exhaustion" => {
                let f = |x: Option<f64>| x.unwrap_or(f64::INFINITY);
                f(a.projected_exhaustion_days).total_cmp(&f(b.projected_exhaustion_days))
            }
            _ => status_rank(a.status.as_str()).cmp(&status_rank(b.status.as_str())),
        };
        let o = if desc { o.reverse() } else { o };
        o.then_with(|| (&a.centre, &a.project, &a.resource).cmp(&(&b.centre, &b.project, &b.resource)))
    });
}

/// Link to an allocation's page.
pub(crate) fn allocation_href(a: &AllocationReport) -> String {
    format!(
        "/allocations/{}/{}/{}?period_start={}",
        path_segment(&a.centre),
        path_segment(&a.project),
        path_segment(&a.resource),
        path_segment(&a.period_start.to_string())
    )
}

fn used_cell(a: &AllocationReport) -> String {
    let Some(pct) = a.consumed_pct else { return "<span class=\"muted\">-</span>".into() };
    let fill = pct.clamp(0.0, 100.0);
    let (granted, expected) = (a.granted_hours.value(), a.expected_hours.value());
    let exp = if granted > 0.0 { (100.0 * expected / granted).clamp(0.0, 100.0) } else { 0.0 };
    format!(
        "<span class=\"bar\" title=\"consumed {pct:.1} % · expected {exp:.1} %\" style=\"--c:var(--{})\"><span class=\"fill\" style=\"width:{fill:.1}%\"></span><span class=\"exp\" style=\"left:{exp:.1}%\"></span></span>{pct:.1} %",
        a.status.as_str()
    )
}

/// The status page: summary, feeds, and the allocation table.
pub fn index(rec: &Reconciliation, cycle_id: i64, finished_at_s: i64, now_s: i64, feeds: &[FeedView], firing_alerts: usize, q: &TableQuery) -> String {
    let meta = format!(
        "reconciled at <b>{}</b> · cycle #{cycle_id}, {}",
        esc(&instant(rec.at)),
        esc(&ago(now_s - finished_at_s))
    );
    let mut h = head("allocwatch — allocation status", &meta);
    // Status cards: each one filters the table.
    h.push_str("<section class=\"cards\" aria-label=\"Allocations by status\">");
    let _ = write!(
        h,
        "<a class=\"card{}\" href=\"{}\"><div class=\"n\" id=\"count-all\">{}</div><div class=\"l\">Allocations</div></a>",
        if TableQuery::get(&q.status).is_none() { " active" } else { "" },
        esc(&q.with("status", None)),
        rec.allocations.len()
    );
    for (key, label) in STATUSES {
        let n = rec.allocations.iter().filter(|a| a.status.as_str() == *key).count();
        let active = TableQuery::get(&q.status) == Some(*key);
        let _ = write!(
            h,
            "<a class=\"card status{}\" style=\"--c:var(--{key})\" href=\"{}\"><div class=\"n\" id=\"count-{key}\">{n}</div><div class=\"l\">{label}</div></a>",
            if active { " active" } else { "" },
            esc(&q.with("status", Some(key)))
        );
    }
    let _ = write!(
        h,
        "<a class=\"card\" href=\"/api/v1/alerts\"><div class=\"n\" id=\"count-alerts\">{firing_alerts}</div><div class=\"l\">Alerts firing</div></a></section>"
    );

    // The table.
    let mut rows: Vec<&AllocationReport> = rec.allocations.iter().filter(|a| q.keeps(a)).collect();
    let sort = TableQuery::get(&q.sort).filter(|s| COLUMNS.iter().any(|c| c.0 == *s)).unwrap_or("status");
    let desc = TableQuery::get(&q.dir) == Some("desc");
    sort_rows(&mut rows, sort, desc);
    let mut centres: Vec<&str> = rec.allocations.iter().map(|a| a.centre.as_str()).collect();
    centres.sort();
    centres.dedup();
    let mut committees: Vec<&str> = rec.allocations.iter().map(|a| a.committee.as_str()).filter(|c| !c.is_empty()).collect();
    committees.sort();
    committees.dedup();
    let select = |name: &str, label: &str, all: &str, options: &[(&str, &str)], current: Option<&str>| {
        let mut s = format!("<label>{label}<select name=\"{name}\" onchange=\"this.form.submit()\"><option value=\"\">{all}</option>");
        for (v, l) in options {
            let sel = if current == Some(*v) { " selected" } else { "" };
            let _ = write!(s, "<option value=\"{}\"{sel}>{}</option>", esc(v), esc(l));
        }
        s.push_str("</select></label>");
        s
    };
    h.push_str("<section class=\"panel\"><h2>Allocations</h2><form class=\"filters\" method=\"get\" action=\"/\">");
    let c_opts: Vec<(&str, &str)> = centres.iter().map(|c| (*c, *c)).collect();
    let k_opts: Vec<(&str, &str)> = committees.iter().map(|c| (*c, *c)).collect();
    h.push_str(&select("centre", "Centre", "All centres", &c_opts, TableQuery::get(&q.centre)));
    h.push_str(&select("committee", "Committee", "All committees", &k_opts, TableQuery::get(&q.committee)));
    h.push_str(&select("status", "Status", "All statuses", STATUSES, TableQuery::get(&q.status)));
    let _ = write!(
        h,
        "<label>Search<input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"project, account, resource\"></label>",
        esc(TableQuery::get(&q.q).unwrap_or(""))
    );
    for (k, v) in [("sort", &q.sort), ("dir", &q.dir)] {
        if let Some(v) = TableQuery::get(v) {
            let _ = write!(h, "<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(v));
        }
    }
    let _ = write!(
        h,
        "<button type=\"submit\">Apply</button> <a href=\"/\">Reset</a><span class=\"count\" id=\"shown\">{} of {} allocations</span></form>",
        rows.len(),
        rec.allocations.len()
    );
    h.push_str("<div style=\"overflow-x:auto\"><table id=\"allocations\"><thead><tr>");
    for (key, label, numeric) in COLUMNS {
        let next_desc = if *key == sort { !desc } else { *numeric };
        let href = {
            let mut q2 = q.clone();
            q2.sort = Some(key.to_string());
            q2.dir = Some(if next_desc { "desc" } else { "asc" }.into());
            q2.with("sort", Some(key))
        };
        let aria = if *key == sort { format!(" aria-sort=\"{}\"", if desc { "descending" } else { "ascending" }) } else { String::new() };
        let _ = write!(h, "<th{}{aria}><a href=\"{}\">{label}</a></th>", if *numeric { " class=\"num\"" } else { "" }, esc(&href));
    }
    h.push_str("</tr></thead><tbody>");
    for a in &rows {
        let drift = match a.drift_pp {
            // Rounded first, so that -0.04 reads "0.0 pp", not "-0.0 pp".
            Some(d) if (d * 10.0).round() == 0.0 => "0.0 pp".to_string(),
            Some(d) => format!("<span class=\"{}\">{:+.1} pp</span>", if d > 0.0 { "pos" } else { "neg" }, d),
            None => "<span class=\"muted\">-</span>".into(),
        };
        let exhaustion = match &a.projected_exhaustion {
            Some(t) => esc(&t.date().to_string()),
            None => "<span class=\"muted\">-</span>".into(),
        };
        let _ = write!(
            h,
            "<tr data-centre=\"{c}\" data-committee=\"{k}\" data-status=\"{s}\"><td><span class=\"badge\" style=\"--c:var(--{s})\">{sl}</span></td><td><a href=\"{href}\">{p}</a></td><td>{c}</td><td>{r}</td><td class=\"committee\" title=\"{k}\">{k}</td><td>{ps} → {pe}</td>\
<td class=\"num\">{g}</td><td class=\"num\">{u}</td><td class=\"num\">{used}</td><td class=\"num\">{drift}</td><td class=\"num\">{b}</td><td class=\"num\">{exhaustion}</td></tr>",
            c = esc(&a.centre),
            k = esc(&a.committee),
            s = a.status.as_str(),
            href = esc(&allocation_href(a)),
            p = esc(&a.project),
            r = esc(&a.resource),
            ps = esc(&a.period_start.to_string()),
            pe = esc(&a.period_end.to_string()),
            g = hours(a.granted_hours),
            u = hours(a.consumed_hours),
            used = used_cell(a),
            b = format_hours(a.burn_rate_hours_per_day),
            sl = status_label(a.status.as_str()),
        );
    }
    if rows.is_empty() {
        h.push_str("<tr><td colspan=\"12\" class=\"empty\">No allocation matches these filters.</td></tr>");
    }
    h.push_str("</tbody></table></div></section>");

    // Feeds.
    h.push_str("<section class=\"panel feeds\"><h2>Accounting feeds</h2><table id=\"feeds\"><thead><tr><th>Centre</th><th>Schedule (UTC)</th><th>Last data</th><th class=\"num\">Failures since</th><th>Last error</th></tr></thead><tbody>");
    for f in feeds {
        let colour = match (f.last_success, f.consecutive_failures) {
            (None, _) => "not_started",
            (_, n) if n > 0 => "exhausted",
            _ => "on_track",
        };
        let last = f.last_success.map(|t| format!("{} ({})", instant(t), ago(now_s - t))).unwrap_or_else(|| "never".into());
        let _ = write!(
            h,
            "<tr><td><span class=\"dot\" style=\"--c:var(--{colour})\"></span>{}</td><td><code>{}</code></td><td>{}</td><td class=\"num\">{}</td><td class=\"muted\">{}</td></tr>",
            esc(&f.centre),
            esc(&f.schedule),
            esc(&last),
            f.consecutive_failures,
            esc(f.last_error.as_deref().unwrap_or(""))
        );
    }
    h.push_str("</tbody></table></section>");
    h.push_str(FOOT);
    h
}

/// The page shown before the first cycle has committed.
pub fn waiting() -> String {
    let mut h = head("allocwatch — starting", "waiting for the first cycle");
    h.push_str("<section class=\"panel\"><div class=\"empty\">No reconciliation yet: the first pulls are running. This page refreshes in 5 s.</div></section><script>setTimeout(function(){location.reload()},5000)</script>");
    h.push_str(FOOT);
    h
}

/// The login form (the page is protected by the API token).
pub fn login(message: Option<&str>) -> String {
    let mut h = head("allocwatch — sign in", "");
    let _ = write!(
        h,
        "<section class=\"panel\" style=\"max-width:440px;margin:40px auto\"><h2>Sign in</h2><form method=\"post\" action=\"/login\" style=\"padding:16px;display:flex;flex-direction:column;gap:10px\">\
{}<label>API token<br><input type=\"password\" name=\"token\" autocomplete=\"current-password\" style=\"width:100%;padding:6px\" required></label><button type=\"submit\">Sign in</button></form></section>",
        message.map(|m| format!("<div class=\"neg\">{}</div>", esc(m))).unwrap_or_default()
    );
    h.push_str(FOOT);
    h
}

/// The end of an allocation's heading: `committee C · period A → B</span>` and its status
/// badge (the allocation and project pages).
fn terms_and_badge(a: &AllocationReport) -> String {
    format!(
        "committee {} · period {} → {}</span> <span class=\"badge\" style=\"--c:var(--{})\">{}</span>",
        esc(if a.committee.is_empty() { "-" } else { &a.committee }),
        esc(&a.period_start.to_string()),
        esc(&a.period_end.to_string()),
        a.status.as_str(),
        status_label(a.status.as_str())
    )
}

/// An allocation's figures as a grid, each in its resource's own unit (core-hours, GPU-hours,
/// billing-hours), then the forecast's band on a row of its own: the allocation page and the
/// project page show the same.
fn figures(a: &AllocationReport) -> String {
    let unit = a.granted_hours.kind().as_str();
    let pct = |v: Option<f64>, u: &str| v.map(|x| format!("{x:.1} {u}")).unwrap_or_else(|| "-".into());
    let figs: [(&str, String); 10] = [
        ("Granted", format!("{} {unit}", hours(a.granted_hours))),
        ("Consumed", format!("{} {unit}", hours(a.consumed_hours))),
        ("Used", pct(a.consumed_pct, "%")),
        ("Expected by now", format!("{} {unit}", hours(a.expected_hours))),
        ("Drift", a.drift_pp.map(|d| format!("{d:+.1} pp")).unwrap_or_else(|| "-".into())),
        ("Remaining", format!("{} {unit}", hours(a.remaining_hours))),
        ("Burn rate", format!("{} {unit}/day", format_hours(a.burn_rate_hours_per_day))),
        ("Period elapsed", format!("{:.1} %", a.elapsed_pct)),
        ("Projected exhaustion", a.projected_exhaustion.as_ref().map(|t| t.date().to_string()).unwrap_or_else(|| "-".into())),
        ("Projected unused", format!("{} {unit}", hours(a.projected_unused_hours))),
    ];
    let mut h = String::from("<div class=\"figs\">");
    for (l, v) in figs {
        let _ = write!(h, "<div><div class=\"l\">{l}</div><div class=\"v\">{}</div></div>", esc(&v));
    }
    // The forecast's band: a row of its own (P10 – P50 – P90 each).
    let band = a.forecast_band.as_ref();
    let when = |t: &Option<LocalInstant>| t.as_ref().map(|t| t.date().to_string()).unwrap_or_else(|| "not within the period".into());
    let exhaustion = band.map(|f| match (&f.exhaustion_p10, &f.exhaustion_p50, &f.exhaustion_p90) {
        (None, None, None) => "not within the period".to_string(),
        (p10, p50, p90) => format!("{} – {} – {}", when(p10), when(p50), when(p90)),
    });
    let end = band.map(|f| format!("{} – {} – {} {unit}", hours(f.end_consumed_hours_p10), hours(f.end_consumed_hours_p50), hours(f.end_consumed_hours_p90)));
    for (span, l, v) in [("span3", "Forecast exhaustion (P10–P50–P90)", exhaustion), ("span2", "Forecast at period end (P10–P50–P90)", end)] {
        let _ = write!(h, "<div class=\"{span}\"><div class=\"l\">{l}</div><div class=\"v\">{}</div></div>", esc(&v.unwrap_or_else(|| "-".into())));
    }
    h.push_str("</div>");
    h
}

/// One allocation's page: figures, burn-down chart, adjustments and alerts.
pub fn allocation(b: &BurnDown, adjustments: &[(String, f64, String, String)], alerts: &[AlertRow], finished_at_s: i64, now_s: i64) -> String {
    let a = &b.allocation;
    let title = format!("{} · {} · {}", a.project, a.resource, a.centre);
    let meta = format!("reconciled at <b>{}</b> · {}", esc(&instant(b.at_s)), esc(&ago(now_s - finished_at_s)));
    let mut h = head(&format!("allocwatch — {title}"), &meta);
    let _ = write!(
        h,
        "<p><a href=\"/\">← All allocations</a></p><section class=\"panel\"><h2>{} <span class=\"muted\">{} on {} · {}</h2>",
        esc(&a.project),
        esc(&a.resource),
        esc(&a.centre),
        terms_and_badge(a)
    );
    h.push_str(&figures(a));
    h.push_str("</section><section class=\"panel\"><h2>Burn-down over the period</h2><div class=\"chart\">");
    h.push_str(&burndown_svg(b));
    h.push_str(
        "</div><div class=\"legend\"><span><i style=\"border-color:#1f6feb\"></i>Consumed</span><span><i style=\"border-color:#1f6feb;border-top-style:dotted\"></i>Projection at the current burn rate</span>",
    );
    if !b.band.is_empty() {
        h.push_str(
            "<span><i style=\"border-top:0;height:10px;background:#8250df29\"></i>80 % band (P10–P90)</span><span><i style=\"border-color:#8250df;border-top-style:dashed\"></i>Forecast median (P50)</span>",
        );
    }
    h.push_str("<span><i style=\"border-color:#59636e;border-top-style:dashed\"></i>Expected</span><span><i style=\"border-color:#bc4c00\"></i>Granted</span></div></section>");
    if !adjustments.is_empty() {
        h.push_str("<section class=\"panel\"><h2>Adjustments</h2><table><thead><tr><th>Date</th><th class=\"num\">Hours</th><th>Kind</th><th>Reason</th></tr></thead><tbody>");
        for (date, hrs, kind, reason) in adjustments {
            let _ = write!(h, "<tr><td>{}</td><td class=\"num\">{:+}</td><td>{}</td><td>{}</td></tr>", esc(date), hrs, esc(kind), esc(reason));
        }
        h.push_str("</tbody></table></section>");
    }
    h.push_str("<section class=\"panel\"><h2>Alerts</h2>");
    if alerts.is_empty() {
        h.push_str("<div class=\"empty\">No alert on this allocation.</div>");
    } else {
        h.push_str("<table><thead><tr><th>Rule</th><th>State</th><th>Title</th><th>Fired</th><th class=\"num\">Messages sent</th></tr></thead><tbody>");
        for r in alerts {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                esc(&r.rule),
                esc(&r.state),
                esc(&r.title),
                esc(&instant(r.fired_at)),
                r.sent
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section>");
    h.push_str(FOOT);
    h
}

/// One allocation of a project as its page shows it.
pub(crate) struct ProjectAllocation<'a> {
    /// Its burn-down (the allocation's figures included).
    pub burndown: &'a BurnDown,
    /// Its alerts, firing first.
    pub alerts: Vec<&'a AlertRow>,
    /// Top users and partitions over the burn window (user or partition, charged hours).
    pub users: &'a [(String, f64)],
    /// Partitions, the same way.
    pub partitions: &'a [(String, f64)],
}

/// A project's page: every allocation of the project across centres and resources, a summary
/// per kind of hours at the top (core-hours and GPU-hours are never added), each allocation's
/// figures, burn-down, alerts and drivers. `key` is the signed link's token (kept on the page's
/// own links), `None` for the operations team.
pub(crate) fn project(project: &str, totals: &[(HoursKind, ResourceHours, ResourceHours, ResourceHours, usize)], allocations: &[ProjectAllocation<'_>], at_s: i64, finished_at_s: i64, now_s: i64, key: Option<&str>, link_expires_s: Option<i64>) -> String {
    let title = format!("Project {project}");
    let meta = format!("reconciled at <b>{}</b> · {}", esc(&instant(at_s)), esc(&ago(now_s - finished_at_s)));
    let mut h = head_with(&format!("allocwatch — {title}"), &meta, key.is_none());
    if key.is_none() {
        h.push_str("<p><a href=\"/\">← All allocations</a></p>");
    }
    let q = key.map(|k| format!("?key={}", path_segment(k))).unwrap_or_default();
    let base = format!("/projects/{}", path_segment(project));
    let _ = write!(h, "<section class=\"panel\"><h2>Project {} <span class=\"muted\">{} allocation{} · hours in each resource's own unit</span></h2>", esc(project), allocations.len(), if allocations.len() == 1 { "" } else { "s" });
    h.push_str("<table><thead><tr><th>Hours</th><th class=\"num\">Allocations</th><th class=\"num\">Granted</th><th class=\"num\">Consumed</th><th class=\"num\">Remaining</th></tr></thead><tbody>");
    for (kind, granted, consumed, remaining, n) in totals {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"num\">{n}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            kind.as_str(),
            hours(*granted),
            hours(*consumed),
            hours(*remaining)
        );
    }
    h.push_str("</tbody></table>");
    let _ = write!(
        h,
        "<p style=\"padding:0 16px\">Download: <a href=\"{base}/daily.csv{q}\">daily charged hours per allocation (CSV)</a> · <a href=\"/api/v1{base}{q}\">JSON</a>{}</p></section>",
        link_expires_s.map(|e| format!(" · this link is valid until {}", esc(&instant(e)))).unwrap_or_default()
    );
    for pa in allocations {
        let b = pa.burndown;
        let a = &b.allocation;
        let unit = a.granted_hours.kind().as_str();
        let _ = write!(
            h,
            "<section class=\"panel\" id=\"{}-{}\"><h2>{} on {} <span class=\"muted\">{unit} · {}</h2>",
            esc(&a.centre),
            esc(&a.resource),
            esc(&a.resource),
            esc(&a.centre),
            terms_and_badge(a)
        );
        h.push_str(&figures(a));
        h.push_str("<div class=\"chart\">");
        h.push_str(&burndown_svg(b));
        h.push_str("</div>");
        let top = |rows: &[(String, f64)]| {
            if rows.is_empty() {
                "-".to_string()
            } else {
                rows.iter().map(|(n, v)| format!("{} {}", esc(n), format_hours(*v))).collect::<Vec<_>>().join(", ")
            }
        };
        let _ = write!(
            h,
            "<p style=\"padding:0 16px\"><b>Top users</b> (last {} days, {unit}): {}<br><b>Top partitions</b>: {}</p>",
            crate::alerts::DRIVER_WINDOW_DAYS,
            top(pa.users),
            top(pa.partitions)
        );
        if pa.alerts.is_empty() {
            h.push_str("<p style=\"padding:0 16px 12px\" class=\"muted\">No alert on this allocation.</p>");
        } else {
            h.push_str("<table><thead><tr><th>Alert</th><th>State</th><th>Since</th></tr></thead><tbody>");
            for r in &pa.alerts {
                let _ = write!(h, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", esc(&r.title), esc(&r.state), esc(&instant(r.fired_at)));
            }
            h.push_str("</tbody></table>");
        }
        h.push_str("</section>");
    }
    let _ = write!(h, "</main><footer>allocwatch · project {} · figures in each resource's own hours: core-hours and GPU-hours are never added</footer></body></html>\n", esc(project));
    h
}

/// The page a refused link or token gets: what was refused and what to do, no data (`own_page`:
/// the way to the link's own project, when the link is valid but for another page).
pub(crate) fn forbidden(why: &str, own_page: Option<&str>) -> String {
    let mut h = head_with("allocwatch — access refused", "", false);
    let go = own_page.map(|href| format!("<p style=\"padding:0 16px 16px\"><a href=\"{}\">Open your project's page</a></p>", esc(href))).unwrap_or_default();
    let _ = write!(h, "<section class=\"panel\" style=\"max-width:640px;margin:40px auto\"><h2>Access refused</h2><p style=\"padding:0 16px 16px\">{}</p>{go}</section>", esc(why));
    h.push_str("</main><footer>allocwatch</footer></body></html>\n");
    h
}

/// A "nice" step for about `n` intervals over `[0, max]` (1, 2 or 5 × a power of ten).
fn nice_step(max: f64, n: f64) -> f64 {
    if !(max > 0.0) {
        return 1.0;
    }
    let raw = max / n;
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    p * if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    }
}

fn axis_hours(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A polyline of (instant, hours) clipped at `top` hours: a point above is lowered to `top`,
/// and a segment that crosses it gets the crossing as a point of its own, so the clipped shape
/// follows the line exactly up to `top` and runs along it above.
fn clip_at(points: &[(f64, f64)], top: f64) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(points.len() + 2);
    for (i, &(t, v)) in points.iter().enumerate() {
        if let Some(&(pt, pv)) = i.checked_sub(1).map(|j| &points[j]) {
            if (pv > top) != (v > top) {
                out.push((pt + (t - pt) * (top - pv) / (v - pv), top));
            }
        }
        out.push((t, v.min(top)));
    }
    out
}

/// The burn-down chart as inline SVG: granted (step), expected (dashed), consumed (line and
/// area) up to the instant, projection (dotted) to the period end, the forecast's 80 % band
/// (P10–P90, shaded, clipped at the top) and its median (dashed) from the instant to the period
/// end, a marker at the instant and at the projected exhaustion. Paths carry the classes
/// `granted`, `expected`, `consumed`, `projection`, `band`, `band-median`.
pub(crate) fn burndown_svg(b: &BurnDown) -> String {
    let (w, hgt) = (960.0, 380.0);
    let (x0, x1, y0, y1) = (72.0, 940.0, 16.0, 340.0);
    let (t0, t1) = (b.start_s as f64, b.end_s.max(b.start_s + 1) as f64);
    let mut ymax: f64 = 0.0;
    for c in &b.curve {
        ymax = ymax.max(c.granted_hours).max(c.expected_hours);
    }
    if let Some(d) = b.daily.last() {
        ymax = ymax.max(d.cumulative_hours);
    }
    for p in &b.projection {
        ymax = ymax.max(p.hours);
    }
    // The forecast's median is in range; its band is clipped at the top (a P90 of several
    // times the grant would flatten every other line).
    for p in &b.band {
        ymax = ymax.max(p.p50_hours);
    }
    let step = nice_step(ymax.max(1.0) * 1.05, 5.0);
    let top = (ymax.max(1.0) * 1.05 / step).ceil() * step;
    let x = |t: f64| x0 + (t.clamp(t0, t1) - t0) / (t1 - t0) * (x1 - x0);
    let y = |v: f64| y1 - v.max(0.0) / top * (y1 - y0);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg id=\"burndown\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {hgt}\" role=\"img\" aria-label=\"Burn-down of {} on {}: consumed, expected and granted hours over the period\">",
        esc(&b.allocation.project),
        esc(&b.allocation.resource)
    );
    // Horizontal grid and hour labels.
    let mut v = 0.0;
    while v <= top + step / 2.0 {
        let yy = y(v);
        let _ = write!(s, "<line class=\"grid\" x1=\"{x0}\" x2=\"{x1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>", x0 - 8.0, yy + 4.0, axis_hours(v));
        v += step;
    }
    // Month ticks along the period.
    let tz = jiff::tz::TimeZone::UTC;
    if let (Ok(start), Ok(end)) = (jiff::Timestamp::from_second(b.start_s), jiff::Timestamp::from_second(b.end_s)) {
        let first = start.to_zoned(tz.clone()).date().first_of_month();
        let months = (end.to_zoned(tz.clone()).date().year() as i32 - first.year() as i32) * 12
            + end.to_zoned(tz.clone()).date().month() as i32
            - first.month() as i32;
        let every = if months > 24 { 3 } else { 1 };
        let mut m = first;
        let mut i = 0;
        while let Ok(z) = m.to_zoned(tz.clone()) {
            let t = z.timestamp().as_second();
            if t > b.end_s {
                break;
            }
            if t >= b.start_s && i % every == 0 {
                let xx = x(t as f64);
                let label = if m.month() == 1 || i == 0 { m.strftime("%b %Y").to_string() } else { m.strftime("%b").to_string() };
                let _ = write!(s, "<line class=\"grid\" x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{y0}\" y2=\"{y1}\"/><text x=\"{xx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>", y1 + 18.0, esc(&label));
            }
            i += 1;
            match m.checked_add(jiff::Span::new().months(1)) {
                Ok(n) => m = n,
                Err(_) => break,
            }
        }
    }
    let _ = write!(s, "<line class=\"axis\" x1=\"{x0}\" x2=\"{x1}\" y1=\"{y1}\" y2=\"{y1}\"/><line class=\"axis\" x1=\"{x0}\" x2=\"{x0}\" y1=\"{y0}\" y2=\"{y1}\"/>");
    let _ = write!(s, "<text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">hours</text>", (y0 + y1) / 2.0, (y0 + y1) / 2.0);
    // The forecast's band, under the lines: P90 forward, P10 back, clipped at the top.
    if b.band.len() >= 2 {
        let edge = |v: fn(&BandPoint) -> f64| clip_at(&b.band.iter().map(|p| (p.t as f64, v(p))).collect::<Vec<_>>(), top);
        let mut d = String::new();
        for (i, (t, v)) in edge(|p| p.p90_hours).into_iter().chain(edge(|p| p.p10_hours).into_iter().rev()).enumerate() {
            let _ = write!(d, "{}{:.1},{:.1}", if i == 0 { "M" } else { "L" }, x(t), y(v));
        }
        let _ = write!(s, "<path class=\"band\" d=\"{d}Z\"/>");
    }
    // Granted: a step at each adjustment.
    if let Some(first) = b.curve.first() {
        let mut d = format!("M{:.1},{:.1}", x(first.t as f64), y(first.granted_hours));
        for c in &b.curve[1..] {
            let _ = write!(d, "H{:.1}V{:.1}", x(c.t as f64), y(c.granted_hours));
        }
        let _ = write!(s, "<path class=\"granted\" d=\"{d}\"/>");
        let mut e = String::new();
        for (i, c) in b.curve.iter().enumerate() {
            let _ = write!(e, "{}{:.1},{:.1}", if i == 0 { "M" } else { "L" }, x(c.t as f64), y(c.expected_hours));
        }
        let _ = write!(s, "<path class=\"expected\" d=\"{e}\"/>");
    }
    // Consumed: running total at the end of each day, area under it.
    if !b.daily.is_empty() {
        let mut line = format!("M{:.1},{:.1}", x(t0), y(0.0));
        for d in &b.daily {
            let _ = write!(line, "L{:.1},{:.1}", x(d.end_s as f64), y(d.cumulative_hours));
        }
        let last_x = x(b.daily.last().map(|d| d.end_s as f64).unwrap_or(t0));
        let _ = write!(s, "<path class=\"consumed-area\" d=\"{line}L{last_x:.1},{y1:.1}Z\"/><path class=\"consumed\" d=\"{line}\"/>");
    }
    if b.band.len() >= 2 {
        let mut d = String::new();
        for (i, (t, v)) in clip_at(&b.band.iter().map(|p| (p.t as f64, p.p50_hours)).collect::<Vec<_>>(), top).into_iter().enumerate() {
            let _ = write!(d, "{}{:.1},{:.1}", if i == 0 { "M" } else { "L" }, x(t), y(v));
        }
        let _ = write!(s, "<path class=\"band-median\" d=\"{d}\"/>");
    }
    if let [p0, p1] = b.projection.as_slice() {
        let _ = write!(s, "<path class=\"projection\" d=\"M{:.1},{:.1}L{:.1},{:.1}\"/>", x(p0.t as f64), y(p0.hours), x(p1.t as f64), y(p1.hours));
    }
    if (b.start_s..=b.end_s).contains(&b.at_s) {
        let xx = x(b.at_s as f64);
        let label = utc_date(b.at_s).to_string();
        let anchor = if xx > x1 - 60.0 { "end" } else { "start" };
        let _ = write!(s, "<line class=\"now\" x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{y0}\" y2=\"{y1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">now · {label}</text>", if anchor == "end" { xx - 4.0 } else { xx + 4.0 }, y0 + 12.0);
    }
    if let Some(days) = b.allocation.projected_exhaustion_days {
        let t = b.at_s as f64 + days * 86400.0;
        let (xx, yy) = (x(t), y(b.allocation.granted_hours.value()));
        let label = b.allocation.projected_exhaustion.as_ref().map(|t| t.date().to_string()).unwrap_or_default();
        let _ = write!(
            s,
            "<circle class=\"exhaustion\" cx=\"{xx:.1}\" cy=\"{yy:.1}\" r=\"5\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">runs out ≈ {}</text>",
            xx - 8.0,
            yy - 8.0,
            esc(&label)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_html_and_urls() {
        assert_eq!(esc("<script>alert('x') & \"y\"</script>"), "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;");
        assert_eq!(path_segment("CT 5/physique=é"), "CT%205%2Fphysique%3D%C3%A9");
        assert_eq!(path_segment("A0170978492"), "A0170978492");
    }

    #[test]
    fn nice_steps_and_axis_labels() {
        assert_eq!(nice_step(10_500.0, 5.0), 5000.0);
        assert_eq!(nice_step(52_000.0, 5.0), 20_000.0);
        assert_eq!(nice_step(0.0, 5.0), 1.0);
        assert_eq!((axis_hours(2_000_000.0), axis_hours(12_500.0), axis_hours(40.0)), ("2M".into(), "12.5k".into(), "40".into()));
    }

    #[test]
    fn query_links_keep_the_other_filters() {
        let q = TableQuery { centre: Some("idris".into()), status: Some("over_pace".into()), ..Default::default() };
        assert_eq!(q.with("status", None), "/?centre=idris");
        assert_eq!(q.with("committee", Some("CT 5")), "/?centre=idris&committee=CT%205&status=over_pace");
    }

    use crate::domain::burndown::build;
    use crate::domain::forecast::{FanPoint, Forecast, Quantiles, LEVELS};
    use crate::domain::reconcile::{Profile, Status};
    use crate::domain::reconciliation::ForecastBand;
    use crate::domain::time::{day_number, day_start, DayNumber};
    use jiff::tz::TimeZone;
    use std::collections::BTreeMap;

    /// Quantiles rising linearly from `p0` at level 0 %, `p10` at 10 %: P50 = p0 + 5 (p10 − p0).
    fn quantiles(p0: f64, p10: f64) -> Quantiles {
        Quantiles(std::array::from_fn(|l| p0 + (p10 - p0) * l as f64 / 2.0))
    }

    /// 2026-01-01..2026-01-11, 100 h granted, 15 h a day for 4 days (60 h at the 5th, 00:00);
    /// with `fan` (instant offsets in days from the instant, P0, P10 of the consumed hours) a
    /// forecast that runs out at days `exhaustion` (P10, P50, P90; none: not within the period).
    fn burndown(fan: &[(i64, f64, f64)], exhaustion: [Option<f64>; 3]) -> BurnDown {
        let tz = TimeZone::UTC;
        let d = |s: &str| s.parse::<jiff::civil::Date>().unwrap();
        let at = day_start(day_number(d("2026-01-05")), &tz);
        let never = |e: Option<f64>| e.map(|days| (at as f64) + days * 86400.0).unwrap_or(f64::INFINITY);
        let forecast = (!fan.is_empty()).then(|| {
            let fan: Vec<FanPoint> = fan.iter().map(|&(days, p0, p10)| FanPoint { t: at + days * 86400, consumed: quantiles(p0, p10) }).collect();
            let mut ex = [f64::INFINITY; LEVELS];
            for (l, e) in [(2, exhaustion[0]), (10, exhaustion[1]), (18, exhaustion[2])] {
                ex[l] = never(e);
            }
            Forecast { at, history_days: 4, history_weight: 1.0, exhaustion: Quantiles(ex), end_consumed: fan.last().unwrap().consumed, fan }
        });
        let mut report = AllocationReport { burn_rate_hours_per_day: 15.0, ..AllocationReport::example(100.0, 60.0, Status::OverPace) };
        report.forecast_band = forecast.as_ref().map(|f| ForecastBand::of(f, HoursKind::CoreHours, &tz));
        report.forecast = forecast;
        let daily: BTreeMap<DayNumber, f64> = (0..4).map(|i| (day_number(d("2026-01-01")) + i, 15.0)).collect();
        build(&report, |_| 100.0, &Profile::linear(), &tz, &daily, 0.0, at, (d("2026-01-01"), d("2026-01-11")))
    }

    /// The (x, y) points of the path of class `class` in `svg`.
    fn path_points(svg: &str, class: &str) -> Vec<(f64, f64)> {
        let marker = format!("<path class=\"{class}\" d=\"");
        let at = svg.find(&marker).unwrap_or_else(|| panic!("no {class} path in {svg}")) + marker.len();
        let d = &svg[at..at + svg[at..].find('"').unwrap()];
        d.split(['M', 'L', 'Z'])
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    #[test]
    fn clipping_at_the_top_adds_the_crossings() {
        // (polyline, clipped at 10)
        let table: &[(&[(f64, f64)], &[(f64, f64)])] = &[
            (&[(0.0, 0.0), (10.0, 5.0)], &[(0.0, 0.0), (10.0, 5.0)]),
            (&[(0.0, 0.0), (10.0, 20.0)], &[(0.0, 0.0), (5.0, 10.0), (10.0, 10.0)]),
            (&[(0.0, 20.0), (10.0, 0.0)], &[(0.0, 10.0), (5.0, 10.0), (10.0, 0.0)]),
            (&[(0.0, 0.0), (4.0, 40.0), (8.0, 0.0)], &[(0.0, 0.0), (1.0, 10.0), (4.0, 10.0), (7.0, 10.0), (8.0, 0.0)]),
            (&[(0.0, 12.0), (10.0, 30.0)], &[(0.0, 10.0), (10.0, 10.0)]),
        ];
        for (line, want) in table {
            assert_eq!(clip_at(line, 10.0), want.to_vec(), "{line:?}");
        }
    }

    #[test]
    fn the_band_is_shaded_under_the_lines_with_its_median_dashed_and_clipped_at_the_top() {
        // Six days left: at the end P10 95 h, P50 155 h, P90 215 h (over the chart's top).
        let b = burndown(&[(3, 70.0, 75.0), (6, 80.0, 95.0)], [Some(2.0), Some(4.0), None]);
        let svg = burndown_svg(&b);
        let (band, median) = (path_points(&svg, "band"), path_points(&svg, "band-median"));
        // Under every line: drawn first.
        let first_line = ["granted", "expected", "consumed", "projection", "band-median"].iter().map(|c| svg.find(&format!("class=\"{c}\"")).unwrap()).min().unwrap();
        assert!(svg.find("class=\"band\"").unwrap() < first_line);
        // The range holds the projection (150 h) and the median (155 h): × 1.05 in steps of
        // 50, 200 h at y = 16.
        let y = |h: f64| 340.0 - h / 200.0 * 324.0;
        let r1 = |v: f64| (v * 10.0).round() / 10.0;
        let x = |day: f64| 72.0 + day / 10.0 * 868.0;
        assert_eq!(median.first(), Some(&(r1(x(4.0)), r1(y(60.0)))));
        assert_eq!(median.last(), Some(&(r1(x(10.0)), r1(y(155.0)))));
        // P90 forward then P10 back; the P90 rises over 200 h between day 7 and day 10: it runs
        // along the top from the crossing (day 7 + 3 × 85/100) on.
        assert_eq!(band.first(), Some(&(r1(x(4.0)), r1(y(60.0)))));
        assert!(band.contains(&(r1(x(7.0 + 3.0 * 85.0 / 100.0)), 16.0)), "{band:?}");
        assert!(band.contains(&(r1(x(10.0)), r1(y(95.0)))), "{band:?}");
        assert!(band.iter().all(|&(_, yy)| yy >= 16.0), "{band:?}");
        assert_eq!(band.iter().filter(|p| p.1 == 16.0).count(), 2, "the crossing and the end, at the top: {band:?}");
        assert_eq!(band.last(), Some(&(r1(x(4.0)), r1(y(60.0)))));
        assert!(svg.contains("<path class=\"band\" d=\"M") && svg.contains("Z\"/>"));
        // No forecast: neither.
        let svg = burndown_svg(&burndown(&[], [None; 3]));
        assert!(!svg.contains("class=\"band") && svg.contains("class=\"projection\""));
    }

    #[test]
    fn the_figures_and_the_legend_give_the_band() {
        let b = burndown(&[(3, 70.0, 75.0), (6, 80.0, 90.0)], [Some(2.0), Some(4.5), None]);
        let page = allocation(&b, &[], &[], 0, 0);
        assert!(page.contains("<div class=\"l\">Forecast exhaustion (P10–P50–P90)</div><div class=\"v\">2026-01-07 – 2026-01-09 – not within the period</div>"), "{page}");
        assert!(page.contains("<div class=\"l\">Forecast at period end (P10–P50–P90)</div><div class=\"v\">90.0 – 130 – 170 core-hours</div>"), "{page}");
        assert!(page.contains("80 % band (P10–P90)</span>") && page.contains("Forecast median (P50)</span>"));
        // Never within the period, the three at once.
        let page = allocation(&burndown(&[(6, 70.0, 71.0)], [None; 3]), &[], &[], 0, 0);
        assert!(page.contains("(P10–P50–P90)</div><div class=\"v\">not within the period</div>"), "{page}");
        // No forecast: a dash each, no legend entry.
        let page = allocation(&burndown(&[], [None; 3]), &[], &[], 0, 0);
        assert_eq!(page.matches("(P10–P50–P90)</div><div class=\"v\">-</div>").count(), 2, "{page}");
        assert!(!page.contains("80 % band"));
    }
}
