//! Open OnDemand balance files: the balances of one kind of hours (computed by
//! [`crate::domain::balance`]) written in OOD's version-1 format, for `allocwatch export ood`
//! and for the daemon, which rewrites every `[[ood.balance]]` file after each cycle.
//!
//! The format is what OOD's dashboard (`apps/dashboard/app/models/balance.rb`) reads:
//! `{"version": 1, "timestamp": <epoch s>, "config": {"unit", "project_type"},
//! "balances": [{"user", "project", "value"}]}`. A file is replaced atomically (a temporary file
//! in the same directory, fsync, rename, fsync of the directory): a dashboard reading it at any
//! moment sees the old file or the new one, never half of one (OOD drops a file it cannot parse).

use crate::domain::balance::{self, Balance};
use crate::domain::hours::HoursKind;
use crate::domain::reconciliation::Reconciliation;
use crate::store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The kinds of hours a balance file can hold (billing-weighted hours are not core-hours: no
/// file holds them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BalanceUnit {
    /// Core-hours allocations (`cpu` and `node` billing rules).
    #[value(name = "core-hours")]
    CoreHours,
    /// GPU-hours allocations (`gpu` billing rules).
    #[value(name = "gpu-hours")]
    GpuHours,
}

impl BalanceUnit {
    /// The kind of hours.
    pub fn kind(self) -> HoursKind {
        match self {
            BalanceUnit::CoreHours => HoursKind::CoreHours,
            BalanceUnit::GpuHours => HoursKind::GpuHours,
        }
    }

    /// The name in the configuration and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            BalanceUnit::CoreHours => "core-hours",
            BalanceUnit::GpuHours => "gpu-hours",
        }
    }
}

/// `project_type` when the configuration names none (what OOD prints before the project id).
pub const DEFAULT_PROJECT_TYPE: &str = "project";

/// One balance file the daemon keeps up to date (`[[ood.balance]]`).
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceFile {
    /// Which hours it holds.
    pub unit: BalanceUnit,
    /// Where it is written.
    pub file: PathBuf,
    /// OOD's `config.project_type`.
    pub project_type: String,
}

/// `[ood]`: the balance files, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OodSettings {
    /// The files, in configuration order.
    pub balances: Vec<BalanceFile>,
}

/// `[ood]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOod {
    #[serde(default)]
    balance: Vec<RawBalanceFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBalanceFile {
    unit: String,
    file: PathBuf,
    #[serde(default)]
    project_type: Option<String>,
}

impl RawOod {
    /// Validate, resolving relative paths with `resolve`; the error names the key.
    pub(crate) fn validate(self, resolve: impl Fn(&Path) -> PathBuf) -> Result<OodSettings, String> {
        let mut balances = Vec::new();
        let mut files = HashSet::new();
        for (i, raw) in self.balance.into_iter().enumerate() {
            let at = format!("ood.balance[{i}]");
            let unit = match raw.unit.as_str() {
                "core-hours" => BalanceUnit::CoreHours,
                "gpu-hours" => BalanceUnit::GpuHours,
                "billing-hours" => {
                    return Err(format!(
                        "{at}.unit: billing-hours (`billing` rules) are not core-hours and get no balance file; use \"core-hours\" or \"gpu-hours\""
                    ))
                }
                other => return Err(format!("{at}.unit: {other:?} is not a unit; use \"core-hours\" or \"gpu-hours\"")),
            };
            if raw.file.as_os_str().is_empty() || raw.file.file_name().is_none() {
                return Err(format!("{at}.file: name the file to write (e.g. \"/srv/ood/balances/{}.json\")", unit.as_str()));
            }
            let file = resolve(&raw.file);
            if !files.insert(file.clone()) {
                return Err(format!("{at}.file: {} is already written by another [[ood.balance]]", file.display()));
            }
            let project_type = raw.project_type.unwrap_or_else(|| DEFAULT_PROJECT_TYPE.to_string());
            if project_type.chars().any(char::is_control) {
                return Err(format!("{at}.project_type: must not contain control characters"));
            }
            balances.push(BalanceFile { unit, file, project_type });
        }
        Ok(OodSettings { balances })
    }
}

/// The balances of each of `units` at the reconciliation's instant, in that order: the users
/// come from the ledger (one read per centre with allocations of those kinds in effect, shared
/// by all units), everything else from `rec`.
pub(crate) fn balances(store: &mut Store, rec: &Reconciliation, units: &[BalanceUnit]) -> Result<Vec<Vec<Balance>>, StoreError> {
    let kinds: Vec<HoursKind> = units.iter().map(|u| u.kind()).collect();
    let mut users = Vec::new();
    for w in balance::user_windows(rec, &kinds) {
        users.extend(store.account_users(&w.centre, w.from_s, w.to_s)?);
    }
    Ok(kinds.into_iter().map(|k| balance::balances(rec, k, &users)).collect())
}

#[derive(Serialize)]
struct Document<'a> {
    version: u32,
    timestamp: i64,
    config: DocumentConfig<'a>,
    balances: &'a [Balance],
}

#[derive(Serialize)]
struct DocumentConfig<'a> {
    unit: &'static str,
    project_type: &'a str,
}

/// The balance file (OOD version 1) of `balances` in `unit`, stamped with the reconciliation
/// instant `at` (epoch seconds: what OOD prints as "Last update"), newline-terminated.
pub(crate) fn document(unit: BalanceUnit, project_type: &str, at: i64, balances: &[Balance]) -> String {
    let doc = Document { version: 1, timestamp: at, config: DocumentConfig { unit: unit.kind().as_str(), project_type }, balances };
    serde_json::to_string_pretty(&doc).expect("a balance document serialises") + "\n"
}

/// Replace `path` with `bytes` atomically: a temporary file in the same directory (so the
/// rename stays on one file system), written, made readable by everyone (0644: each OOD
/// dashboard runs as the logged-in user, whatever the writer's umask), fsynced, renamed over
/// `path`, then the directory fsynced so that the rename survives a crash.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let tmp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    std::fs::File::open(dir)?.sync_all()
}

/// What happened to one configured file after a cycle.
#[derive(Debug)]
pub(crate) struct FileOutcome {
    /// The file.
    pub file: PathBuf,
    /// Entries written, or why it was not.
    pub result: Result<usize, String>,
}

/// Rewrite every configured balance file from a cycle's reconciliation (the daemon, after each
/// cycle). A failure of one file does not stop the others; each outcome is returned.
pub(crate) fn write_files(settings: &OodSettings, store: &mut Store, rec: &Reconciliation) -> Vec<FileOutcome> {
    let mut units: Vec<BalanceUnit> = settings.balances.iter().map(|f| f.unit).collect();
    units.sort_by_key(|u| u.as_str());
    units.dedup();
    let computed = balances(store, rec, &units).map_err(|e| e.to_string());
    let mut out = Vec::new();
    for f in &settings.balances {
        let result = match &computed {
            Ok(all) => {
                let b = &all[units.iter().position(|u| *u == f.unit).expect("every file's unit is computed")];
                write_atomically(&f.file, document(f.unit, &f.project_type, rec.at, b).as_bytes()).map(|()| b.len()).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.clone()),
        };
        out.push(FileOutcome { file: f.file.clone(), result });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<OodSettings, String> {
        let raw: RawOod = toml::from_str(body).map_err(|e| e.to_string())?;
        raw.validate(|p| Path::new("/etc/aw").join(p))
    }

    #[test]
    fn settings_are_validated_with_the_key_named() {
        let s = parse("[[balance]]\nunit = \"core-hours\"\nfile = \"ood/core.json\"\n[[balance]]\nunit = \"gpu-hours\"\nfile = \"/srv/gpu.json\"\nproject_type = \"allocation\"").unwrap();
        assert_eq!(
            s.balances,
            vec![
                BalanceFile { unit: BalanceUnit::CoreHours, file: "/etc/aw/ood/core.json".into(), project_type: "project".into() },
                BalanceFile { unit: BalanceUnit::GpuHours, file: "/srv/gpu.json".into(), project_type: "allocation".into() },
            ]
        );
        assert_eq!(parse("").unwrap(), OodSettings::default());
        let cases = [
            ("[[balance]]\nunit = \"billing-hours\"\nfile = \"b.json\"", "ood.balance[0].unit: billing-hours"),
            ("[[balance]]\nunit = \"hours\"\nfile = \"b.json\"", "ood.balance[0].unit: \"hours\" is not a unit"),
            ("[[balance]]\nunit = \"core-hours\"\nfile = \"\"", "ood.balance[0].file: name the file"),
            ("[[balance]]\nunit = \"core-hours\"\nfile = \"a.json\"\n[[balance]]\nunit = \"gpu-hours\"\nfile = \"a.json\"", "ood.balance[1].file: /etc/aw/a.json is already written"),
            ("[[balance]]\nunit = \"core-hours\"\nfile = \"a.json\"\nproject_type = \"a\\nb\"", "ood.balance[0].project_type"),
            ("[[balance]]\nunit = \"core-hours\"\nfile = \"a.json\"\nthreshold = 3", "unknown field `threshold`"),
        ];
        for (body, want) in cases {
            let e = parse(body).unwrap_err();
            assert!(e.contains(want), "{body:?}: {e}");
        }
    }

    #[test]
    fn the_document_is_ood_version_1() {
        let b = vec![Balance { user: "alice".into(), project: "P1".into(), value: 12 }];
        let doc: serde_json::Value = serde_json::from_str(&document(BalanceUnit::GpuHours, "project", 1_794_744_000, &b)).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({
                "version": 1,
                "timestamp": 1_794_744_000,
                "config": {"unit": "GPU-hours", "project_type": "project"},
                "balances": [{"user": "alice", "project": "P1", "value": 12}]
            })
        );
        assert!(document(BalanceUnit::CoreHours, "project", 0, &[]).contains("\"balances\": []"));
    }

    #[test]
    fn files_are_replaced_whole_and_readable_by_everyone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("core-hours.json");
        write_atomically(&path, b"old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("core-hours.json")], "no temporary file left");
        let e = write_atomically(&dir.path().join("missing/core-hours.json"), b"x").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn the_example_configuration_section_parses() {
        // config/allocwatch.example.toml documents [ood] commented out: uncommented, it is valid.
        let example = include_str!("../../config/allocwatch.example.toml");
        let block: String = example
            .lines()
            .skip_while(|l| l.trim() != "# [ood]")
            .map_while(|l| l.strip_prefix("# ").filter(|l| l.starts_with('[') || l.contains(" = ")))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(block.contains("[[ood.balance]]"), "no commented [ood] block in the example:\n{block}");
        let raw: toml::Value = toml::from_str(&block).unwrap();
        let ood: RawOod = raw["ood"].clone().try_into().unwrap();
        let s = ood.validate(Path::to_path_buf).unwrap();
        assert_eq!(s.balances.iter().map(|b| b.unit).collect::<Vec<_>>(), vec![BalanceUnit::CoreHours, BalanceUnit::GpuHours]);
    }
}
