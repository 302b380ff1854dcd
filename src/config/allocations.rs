//! Allocations granted by the allocator and their dated adjustments, loaded from files.
//!
//! Allocation files are CSV (header row) or TOML (`[[allocation]]` tables) with the columns
//! documented in `config/README.md`; adjustment files are CSV. Every error names the file, the
//! line and the column.

use crate::config::Config;
pub use crate::domain::grants::{Adjustment, Allocation, Grants};
pub use crate::domain::grants::AdjustmentKind;
use jiff::civil::Date;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// An error in an allocation or adjustment file.
#[derive(Debug)]
pub struct GrantError {
    /// File.
    pub file: String,
    /// 1-based line (0 when the whole file is at fault).
    pub line: u64,
    /// `column: ` prefix, or empty.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for GrantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}{}", self.file, self.field, self.message)
        } else {
            write!(f, "{}:{}: {}{}", self.file, self.line, self.field, self.message)
        }
    }
}

impl std::error::Error for GrantError {}

fn gerr(file: &str, line: u64, field: &str, message: impl Into<String>) -> GrantError {
    GrantError {
        file: file.into(),
        line,
        field: if field.is_empty() { String::new() } else { format!("column {field}: ") },
        message: message.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    #[serde(default)]
    allocation: Vec<TomlAllocation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlAllocation {
    project: String,
    centre: String,
    resource: String,
    period_start: String,
    period_end: String,
    granted_hours: f64,
    accounts: Vec<String>,
    #[serde(default)]
    pi: String,
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    committee: String,
    #[serde(default)]
    profile: Option<String>,
}

/// Columns of an allocation CSV file (`accounts` and `members` are `;`-separated lists).
pub(crate) const ALLOCATION_COLUMNS: [&str; 11] = [
    "project", "centre", "resource", "period_start", "period_end", "granted_hours", "accounts", "pi", "members",
    "committee", "profile",
];

/// Columns of an adjustment CSV file.
pub(crate) const ADJUSTMENT_COLUMNS: [&str; 7] = ["date", "project", "centre", "resource", "hours", "kind", "reason"];

fn parse_date(file: &str, line: u64, field: &str, s: &str) -> Result<Date, GrantError> {
    crate::domain::time::parse_date(s).map_err(|m| gerr(file, line, field, m))
}

fn parse_hours(file: &str, line: u64, field: &str, s: &str) -> Result<f64, GrantError> {
    match s.trim().replace('_', "").parse::<f64>() {
        Ok(h) if h.is_finite() => Ok(h),
        _ => Err(gerr(file, line, field, format!("`{s}` is not a number of hours"))),
    }
}

fn list(s: &str) -> Vec<String> {
    s.split(';').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect()
}

/// Read CSV text with a header row, checking the columns; yields (line, record).
fn read_csv(text: &str, file: &str, required: &[&str], optional: &[&str]) -> Result<(Vec<String>, Vec<(u64, csv::StringRecord)>), GrantError> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| gerr(file, 1, "", e.to_string()))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    for r in required {
        if !headers.iter().any(|h| h == r) {
            return Err(gerr(file, 1, "", format!("missing column `{r}` (columns: {})", required.join(","))));
        }
    }
    for h in &headers {
        if !required.contains(&h.as_str()) && !optional.contains(&h.as_str()) {
            return Err(gerr(file, 1, "", format!("unknown column `{h}`")));
        }
    }
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            gerr(file, line, "", e.to_string())
        })?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        rows.push((line, rec));
    }
    Ok((headers, rows))
}

fn read_text(path: &Path) -> Result<String, GrantError> {
    std::fs::read_to_string(path).map_err(|e| gerr(&path.display().to_string(), 0, "", format!("cannot read: {e}")))
}

impl Grants {
    /// Load and validate every allocation and adjustment file named by the configuration.
    pub fn load(config: &Config) -> Result<Grants, GrantError> {
        let mut allocations = Vec::new();
        for path in &config.allocation_files {
            allocations.push((path.display().to_string(), read_text(path)?));
        }
        let mut adjustments = Vec::new();
        for path in &config.adjustment_files {
            adjustments.push((path.display().to_string(), read_text(path)?));
        }
        Grants::parse(config, &allocations, &adjustments)
    }

    /// Validate allocation and adjustment texts, each given as (file name, content); a file
    /// name ending in `.toml` is read as TOML, anything else as CSV.
    pub fn parse(config: &Config, allocations: &[(String, String)], adjustments: &[(String, String)]) -> Result<Grants, GrantError> {
        let mut g = Grants::default();
        for (name, text) in allocations {
            g.load_allocations(name, text, config)?;
        }
        g.check_overlaps()?;
        for (name, text) in adjustments {
            g.load_adjustments(name, text)?;
        }
        Ok(g)
    }

    fn load_allocations(&mut self, file: &str, text: &str, config: &Config) -> Result<(), GrantError> {
        let file = file.to_string();
        let is_toml = file.ends_with(".toml");
        let mut raw: Vec<(u64, TomlAllocation)> = Vec::new();
        if is_toml {
            let parsed: TomlFile = toml::from_str(&text).map_err(|e| {
                let line = e.span().map(|s| text[..s.start].lines().count() as u64).unwrap_or(0);
                gerr(&file, line.max(1), "", e.message().to_string())
            })?;
            // TOML tables have no single line; report the table's ordinal instead.
            raw.extend(parsed.allocation.into_iter().enumerate().map(|(i, a)| (i as u64 + 1, a)));
        } else {
            let (headers, rows) = read_csv(text, &file, &ALLOCATION_COLUMNS[..7], &ALLOCATION_COLUMNS[7..])?;
            let col = |name: &str| headers.iter().position(|h| h == name);
            for (line, rec) in rows {
                let get = |name: &str| col(name).and_then(|i| rec.get(i)).unwrap_or("").to_string();
                let granted = parse_hours(&file, line, "granted_hours", &get("granted_hours"))?;
                raw.push((
                    line,
                    TomlAllocation {
                        project: get("project"),
                        centre: get("centre"),
                        resource: get("resource"),
                        period_start: get("period_start"),
                        period_end: get("period_end"),
                        granted_hours: granted,
                        accounts: list(&get("accounts")),
                        pi: get("pi"),
                        members: list(&get("members")),
                        committee: get("committee"),
                        profile: Some(get("profile")).filter(|p| !p.is_empty()),
                    },
                ));
            }
        }
        for (line, a) in raw {
            let origin = if is_toml { format!("{file}: allocation #{line}") } else { format!("{file}:{line}") };
            let e = |field: &str, msg: String| {
                if is_toml {
                    GrantError { file: file.clone(), line: 0, field: format!("allocation #{line}: {field}: "), message: msg }
                } else {
                    gerr(&file, line, field, msg)
                }
            };
            if a.project.is_empty() {
                return Err(e("project", "must not be empty".into()));
            }
            let Some(centre) = config.centres.get(&a.centre) else {
                return Err(e("centre", format!("unknown centre {:?} (configured: {})", a.centre,
                    config.centres.keys().cloned().collect::<Vec<_>>().join(", "))));
            };
            if !centre.rules.iter().any(|r| r.resource == a.resource) {
                let known: Vec<&str> = centre.rules.iter().map(|r| r.resource.as_str()).collect();
                return Err(e("resource", format!("centre {} has no billing rule for resource {:?} (known: {})", a.centre, a.resource, known.join(", "))));
            }
            let start = parse_date(&file, line, "period_start", &a.period_start).map_err(|x| e("period_start", x.message))?;
            let end = parse_date(&file, line, "period_end", &a.period_end).map_err(|x| e("period_end", x.message))?;
            if end <= start {
                return Err(e("period_end", format!("{end} is not after period_start {start} (period_end is exclusive)")));
            }
            if !(a.granted_hours >= 0.0 && a.granted_hours.is_finite()) {
                return Err(e("granted_hours", format!("{} is not a number of hours ≥ 0", a.granted_hours)));
            }
            if a.accounts.is_empty() {
                return Err(e("accounts", "list at least one centre-side account (`;`-separated)".into()));
            }
            for m in a.members.iter().chain(std::iter::once(&a.pi).filter(|p| !p.is_empty())) {
                if !m.contains('@') || m.contains(char::is_whitespace) {
                    return Err(e(if m == &a.pi { "pi" } else { "members" }, format!("`{m}` is not an e-mail address")));
                }
            }
            if let Some(p) = &a.profile {
                if !config.profiles.contains_key(p) {
                    return Err(e("profile", format!("no profile {p:?} in the configuration's [profiles]")));
                }
            }
            self.allocations.push(Allocation {
                project: a.project,
                centre: a.centre,
                resource: a.resource,
                period_start: start,
                period_end: end,
                granted_hours: a.granted_hours,
                accounts: a.accounts.iter().map(|s| s.to_lowercase()).collect(),
                pi: a.pi,
                members: a.members,
                committee: a.committee,
                profile: a.profile,
                origin,
            });
        }
        Ok(())
    }

    /// Two allocations charging the same account for the same resource at the same time would
    /// count the same hours twice: refuse.
    fn check_overlaps(&self) -> Result<(), GrantError> {
        let mut by_key: HashMap<(&str, &str, &str), Vec<&Allocation>> = HashMap::new();
        for a in &self.allocations {
            for acc in &a.accounts {
                by_key.entry((&a.centre, acc, &a.resource)).or_default().push(a);
            }
        }
        for ((centre, acc, res), list) in by_key {
            for (i, a) in list.iter().enumerate() {
                for b in &list[i + 1..] {
                    if a.period_start < b.period_end && b.period_start < a.period_end {
                        return Err(GrantError {
                            file: b.origin.clone(),
                            line: 0,
                            field: String::new(),
                            message: format!(
                                "allocation {} overlaps {} ({}) on account {acc:?}, {centre}/{res}: the same hours would be charged twice",
                                b.project, a.project, a.origin
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn load_adjustments(&mut self, file: &str, text: &str) -> Result<(), GrantError> {
        let file = file.to_string();
        let (headers, rows) = read_csv(text, &file, &ADJUSTMENT_COLUMNS[..6], &ADJUSTMENT_COLUMNS[6..])?;
        let col = |name: &str| headers.iter().position(|h| h == name);
        for (line, rec) in rows {
            let get = |name: &str| col(name).and_then(|i| rec.get(i)).unwrap_or("").to_string();
            let date = parse_date(&file, line, "date", &get("date"))?;
            let hours = parse_hours(&file, line, "hours", &get("hours"))?;
            let kind = match get("kind").to_ascii_lowercase().as_str() {
                "topup" | "top-up" => AdjustmentKind::Topup,
                "withdrawal" => AdjustmentKind::Withdrawal,
                "transfer" => AdjustmentKind::Transfer,
                other => return Err(gerr(&file, line, "kind", format!("`{other}` is not topup, withdrawal or transfer"))),
            };
            match kind {
                AdjustmentKind::Topup if hours <= 0.0 => return Err(gerr(&file, line, "hours", "a topup adds hours: must be > 0")),
                AdjustmentKind::Withdrawal if hours >= 0.0 => {
                    return Err(gerr(&file, line, "hours", "a withdrawal takes hours back: must be < 0"))
                }
                _ => {}
            }
            let (project, centre, resource) = (get("project"), get("centre"), get("resource"));
            let Some(idx) = self.allocations.iter().position(|a| {
                a.project == project && a.centre == centre && a.resource == resource && a.period_start <= date && date < a.period_end
            }) else {
                return Err(gerr(&file, line, "date", format!(
                    "no allocation of {project} on {centre}/{resource} whose period contains {date}"
                )));
            };
            self.adjustments.push(Adjustment {
                date,
                project,
                centre,
                resource,
                hours,
                kind,
                reason: get("reason"),
                allocation: idx,
                origin: format!("{file}:{line}"),
            });
        }
        Ok(())
    }
}
