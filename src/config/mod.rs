//! The configuration file (TOML): store, centres with their billing rules and sources,
//! allocation files, expected-consumption profiles and reconciliation thresholds, and the
//! sections of the components (`[alerts]`, `[influxdb]`, `[daemon]`, `[http]`).
//!
//! This module is the composition root of the settings: each component keeps the shape of its
//! own section beside its code (sources, sinks, alerts) and this module assembles and validates
//! the whole file; [`allocations`] reads the allocation and adjustment files it names.
//! Every field is documented in `config/allocwatch.example.toml`. Relative paths are resolved
//! against the directory of the configuration file, so a config works from any working
//! directory.

pub mod allocations;
pub mod daemon;

use crate::domain::centre::{BillingRule, Centre, ChargeUnit};
use crate::domain::forecast::ForecastSettings;
use crate::domain::reconcile::{Profile, Thresholds};
use crate::domain::reconciliation::Terms;
use crate::domain::grants::Grants;
use crate::sources::LiveSource;
use jiff::tz::TimeZone;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// A configuration problem: which file, which field, what is wrong. Exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    /// The file at fault.
    pub file: String,
    /// What is wrong and where inside the file.
    pub message: String,
}

/// The whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the configuration was read from (for messages and relative paths).
    pub path: PathBuf,
    /// SQLite ledger file.
    pub store_path: PathBuf,
    /// Centres, by id.
    pub centres: BTreeMap<String, CentreConfig>,
    /// Allocation files (CSV or TOML).
    pub allocation_files: Vec<PathBuf>,
    /// Adjustment files (CSV).
    pub adjustment_files: Vec<PathBuf>,
    /// Named expected-consumption profiles.
    pub profiles: BTreeMap<String, Profile>,
    /// Status thresholds and windows.
    pub thresholds: Thresholds,
    /// How forecasts are made (`[forecast]`; defaults when absent).
    pub forecast: ForecastSettings,
    /// Pinned reconciliation instant (demo data); `None` means "now".
    pub at: Option<jiff::Timestamp>,
    /// Alert rules, routing and channels; `None` when the section is absent (no alerts).
    pub alerts: Option<crate::alerts::settings::AlertSettings>,
    /// The InfluxDB sink (`[influxdb]`); `None` disables it and its outbox.
    pub influxdb: Option<crate::sinks::influxdb::InfluxConfig>,
    /// Schedules and life cycle of `allocwatch run` (`[daemon]`; defaults when absent).
    pub daemon: daemon::DaemonSettings,
    /// The daemon's HTTP listener (`[http]`); `None`: no listener.
    pub http: Option<daemon::HttpSettings>,
    /// Signed project links for researchers (`[links]`); `None`: no link is made or accepted.
    pub links: Option<crate::links::LinkSettings>,
    /// Open OnDemand balance files the daemon rewrites after each cycle (`[ood]`; none when absent).
    pub ood: crate::sinks::ood::OodSettings,
}

/// A centre as configured: the domain's [`Centre`] (zone, clusters, billing rules), where its
/// accounting comes from, and when the daemon pulls it. Derefs to the [`Centre`].
#[derive(Debug, Clone)]
pub struct CentreConfig {
    /// The centre.
    pub centre: Centre,
    /// Accounting sources polled by `check` and `run`.
    pub sources: Vec<SourceConfig>,
    /// When `run` pulls this centre; `None`: `[daemon] schedule`.
    pub schedule: Option<daemon::CronSchedule>,
}

impl std::ops::Deref for CentreConfig {
    type Target = Centre;
    fn deref(&self) -> &Centre {
        &self.centre
    }
}

impl CentreConfig {
    /// Its live sources (sacct, slurmrestd), in configuration order.
    pub(crate) fn live_sources(&self) -> impl Iterator<Item = &dyn LiveSource> {
        self.sources.iter().filter_map(SourceConfig::live)
    }
}

/// A configured accounting source.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    /// Files dropped by the centre: imported when new or changed.
    Files {
        /// Files to import (a directory means every regular file in it).
        paths: Vec<PathBuf>,
        /// Format of the files.
        format: FileKind,
        /// Column list of header-less sacct dumps.
        fields: Option<String>,
    },
    /// The `sacct` command, pulled over a window (`kind = "sacct"`).
    Sacct(crate::sources::sacct_cmd::SacctSource),
    /// slurmrestd's accounting API, pulled over a window (`kind = "slurmrestd"`).
    Slurmrestd(crate::sources::slurmrestd::RestSource),
}

impl SourceConfig {
    /// The live (windowed) source, behind the one trait the pull driver knows; `None` for file
    /// drops.
    pub fn live(&self) -> Option<&dyn LiveSource> {
        match self {
            SourceConfig::Files { .. } => None,
            SourceConfig::Sacct(s) => Some(s),
            SourceConfig::Slurmrestd(s) => Some(s),
        }
    }
}

/// File format names used in configuration and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// sacct `-P` text.
    Sacct,
    /// Standard Workload Format.
    Swf,
}

// ---- raw (serde) shapes --------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    store: RawStore,
    #[serde(default)]
    allocations: RawAllocations,
    #[serde(default)]
    reconcile: RawReconcile,
    #[serde(default)]
    forecast: RawForecast,
    #[serde(default)]
    profiles: BTreeMap<String, RawProfile>,
    #[serde(default, rename = "centre")]
    centres: Vec<RawCentre>,
    #[serde(default)]
    alerts: Option<crate::alerts::settings::RawAlerts>,
    influxdb: Option<crate::sinks::influxdb::RawInfluxConfig>,
    #[serde(default)]
    daemon: Option<daemon::RawDaemon>,
    #[serde(default)]
    http: Option<daemon::RawHttp>,
    #[serde(default)]
    links: Option<crate::links::RawLinks>,
    #[serde(default)]
    ood: Option<crate::sinks::ood::RawOod>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: PathBuf,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAllocations {
    #[serde(default)]
    files: Vec<PathBuf>,
    #[serde(default)]
    adjustments: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawReconcile {
    burn_window_days: u32,
    over_pace_drift_pp: f64,
    under_pace_drift_pp: f64,
    under_pace_min_elapsed_pct: f64,
    exhaustion_warning_days: u32,
    orphan_window_days: u32,
    at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawForecast {
    enabled: bool,
    paths: u32,
    history_days: u32,
    min_history_days: u32,
    block_days: u32,
    regime_blocks: u32,
    plan_days: u32,
    level_sigma: f64,
    seed: u64,
}

impl Default for RawForecast {
    fn default() -> Self {
        let f = ForecastSettings::default();
        RawForecast {
            enabled: f.enabled,
            paths: f.paths,
            history_days: f.history_days,
            min_history_days: f.min_history_days,
            block_days: f.block_days,
            regime_blocks: f.regime_blocks,
            plan_days: f.plan_days,
            level_sigma: f.level_sigma,
            seed: f.seed,
        }
    }
}

impl RawForecast {
    fn validate(self) -> Result<ForecastSettings, String> {
        let RawForecast { enabled, paths, history_days, min_history_days, block_days, regime_blocks, plan_days, level_sigma, seed } = self;
        if !(20..=100_000).contains(&paths) {
            return Err("forecast.paths: must be between 20 and 100000 (quantiles every 5 % need 20 paths at least)".into());
        }
        if history_days == 0 {
            return Err("forecast.history_days: must be at least 1".into());
        }
        if min_history_days == 0 || min_history_days > history_days {
            return Err(format!("forecast.min_history_days: must be between 1 and history_days ({history_days})"));
        }
        if block_days == 0 || block_days > min_history_days {
            return Err(format!("forecast.block_days: must be between 1 and min_history_days ({min_history_days})"));
        }
        if !(level_sigma.is_finite() && (0.0..=5.0).contains(&level_sigma)) {
            return Err("forecast.level_sigma: must be between 0 and 5".into());
        }
        if regime_blocks == 0 {
            return Err("forecast.regime_blocks: must be at least 1".into());
        }
        Ok(ForecastSettings { enabled, paths, history_days, min_history_days, block_days, regime_blocks, plan_days, level_sigma, seed })
    }
}

impl Default for RawReconcile {
    fn default() -> Self {
        let t = Thresholds::default();
        RawReconcile {
            burn_window_days: t.burn_window_days,
            over_pace_drift_pp: t.over_pace_drift_pp,
            under_pace_drift_pp: t.under_pace_drift_pp,
            under_pace_min_elapsed_pct: t.under_pace_min_elapsed_pct,
            exhaustion_warning_days: t.exhaustion_warning_days,
            orphan_window_days: t.orphan_window_days,
            at: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    points: Vec<[f64; 2]>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCentre {
    id: String,
    timezone: String,
    clusters: Vec<String>,
    #[serde(default, rename = "billing")]
    rules: Vec<RawRule>,
    #[serde(default, rename = "source")]
    sources: Vec<RawSource>,
    #[serde(default)]
    schedule: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    resource: String,
    partitions: Vec<String>,
    #[serde(default)]
    cluster: Option<String>,
    unit: ChargeUnit,
    #[serde(default = "one")]
    multiplier: f64,
    #[serde(default)]
    cores_per_node: Option<u64>,
}

fn one() -> f64 {
    1.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
enum RawSource {
    Files {
        paths: Vec<PathBuf>,
        format: FileKind,
        #[serde(default)]
        fields: Option<String>,
    },
    Sacct(crate::sources::sacct_cmd::RawSacctSource),
    Slurmrestd(crate::sources::slurmrestd::RawRestSource),
}

/// A store location as given (`[store] path`, `--store`): a file path. Anything that looks like
/// a URL (`scheme://…`) is refused naming its scheme only (a URL may carry a password), rather
/// than becoming a directory named after the scheme.
pub fn store_location(p: &Path) -> Result<PathBuf, String> {
    let s = p.to_string_lossy();
    if let Some((scheme, _)) = s.split_once("://") {
        if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)) && scheme.starts_with(|c: char| c.is_ascii_alphabetic()) {
            let what = match scheme.to_ascii_lowercase().as_str() {
                "postgres" | "postgresql" => "a PostgreSQL URL: this allocwatch stores its state in an SQLite file only",
                _ => "a URL: the store is an SQLite file",
            };
            return Err(format!("`{scheme}://…` is {what}; give a file path (e.g. /var/lib/allocwatch/allocwatch.sqlite)"));
        }
    }
    Ok(p.to_path_buf())
}

impl Config {
    /// What makes signed project links (`[links]` with `[http] public_url`); `Ok(None)` when
    /// links are not configured. Reads the keys: call it at start and at each reload.
    pub fn link_maker(&self) -> Result<Option<crate::links::LinkMaker>, String> {
        crate::links::LinkMaker::new(self.links.as_ref(), self.http.as_ref().and_then(|h| h.public_url.as_deref()))
    }

    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { file: file.clone(), message: format!("cannot read: {e}") })?;
        Config::parse(&text, path)
    }

    /// Parse and validate configuration text that was read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let fail = |message: String| ConfigError { file: file.clone(), message };
        let raw: RawConfig = toml::from_str(text).map_err(|e| fail(e.to_string().trim_end().to_string()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: &Path| if p.is_absolute() { p.to_path_buf() } else { base.join(p) };

        let mut profiles = BTreeMap::new();
        for (name, p) in raw.profiles {
            let profile = Profile::new(p.points.iter().map(|[x, y]| (*x, *y)).collect())
                .map_err(|e| fail(format!("profiles.{name}.points: {e}")))?;
            profiles.insert(name, profile);
        }
        let r = raw.reconcile;
        let thresholds = Thresholds {
            burn_window_days: r.burn_window_days,
            over_pace_drift_pp: r.over_pace_drift_pp,
            under_pace_drift_pp: r.under_pace_drift_pp,
            under_pace_min_elapsed_pct: r.under_pace_min_elapsed_pct,
            exhaustion_warning_days: r.exhaustion_warning_days,
            orphan_window_days: r.orphan_window_days,
        };
        if thresholds.burn_window_days == 0 {
            return Err(fail("reconcile.burn_window_days: must be at least 1".into()));
        }
        if !(thresholds.over_pace_drift_pp > 0.0) {
            return Err(fail("reconcile.over_pace_drift_pp: must be a positive number of percentage points".into()));
        }
        if !(thresholds.under_pace_drift_pp < 0.0) {
            return Err(fail("reconcile.under_pace_drift_pp: must be a negative number of percentage points (e.g. -20)".into()));
        }
        if !(0.0..=100.0).contains(&thresholds.under_pace_min_elapsed_pct) {
            return Err(fail("reconcile.under_pace_min_elapsed_pct: must be between 0 and 100".into()));
        }
        let forecast = raw.forecast.validate().map_err(&fail)?;
        let at = match r.at {
            None => None,
            Some(s) => Some(crate::domain::time::parse_instant(&s, &TimeZone::UTC).map_err(|e| fail(format!("reconcile.at: {e}")))?),
        };

        let mut centres = BTreeMap::new();
        let mut all_clusters = HashSet::new();
        for (i, c) in raw.centres.into_iter().enumerate() {
            let here = format!("centre[{i}] (id = {:?})", c.id);
            if c.id.is_empty() || !c.id.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_') {
                return Err(fail(format!("{here}.id: use letters, digits, `-` or `_`")));
            }
            let tz = TimeZone::get(&c.timezone)
                .map_err(|e| fail(format!("{here}.timezone: unknown time zone {:?}: {e}", c.timezone)))?;
            if c.clusters.is_empty() {
                return Err(fail(format!("{here}.clusters: list at least one Slurm cluster")));
            }
            for cl in &c.clusters {
                if !all_clusters.insert(cl.clone()) {
                    return Err(fail(format!("{here}.clusters: cluster {cl:?} is listed by two centres")));
                }
            }
            let mut rules = Vec::new();
            let mut seen = HashSet::new();
            for (j, r) in c.rules.into_iter().enumerate() {
                let at = format!("{here}.billing[{j}]");
                if r.resource.is_empty() {
                    return Err(fail(format!("{at}.resource: must not be empty")));
                }
                if !(r.multiplier.is_finite() && r.multiplier >= 0.0) {
                    return Err(fail(format!("{at}.multiplier: must be a finite number ≥ 0")));
                }
                if let Some(cl) = &r.cluster {
                    if !c.clusters.contains(cl) {
                        return Err(fail(format!("{at}.cluster: {cl:?} is not one of this centre's clusters")));
                    }
                }
                let cores_per_node = match (r.unit, r.cores_per_node) {
                    (ChargeUnit::Node, Some(n)) if n > 0 => n,
                    (ChargeUnit::Node, _) => {
                        return Err(fail(format!("{at}.cores_per_node: required (> 0) when unit = \"node\"")))
                    }
                    (_, Some(_)) => return Err(fail(format!("{at}.cores_per_node: only meaningful with unit = \"node\""))),
                    (_, None) => 1,
                };
                for p in &r.partitions {
                    if !seen.insert((r.cluster.clone(), p.clone())) {
                        return Err(fail(format!("{at}.partitions: partition {p:?} is mapped twice")));
                    }
                }
                rules.push(BillingRule {
                    resource: r.resource,
                    partitions: r.partitions,
                    cluster: r.cluster,
                    unit: r.unit,
                    multiplier: r.multiplier,
                    cores_per_node,
                });
            }
            // A resource is charged in one kind of hours: core-hours and GPU-hours never add.
            let mut kinds: HashMap<&str, (usize, ChargeUnit)> = HashMap::new();
            for (j, r) in rules.iter().enumerate() {
                match kinds.get(r.resource.as_str()) {
                    Some(&(k, unit)) if unit.kind() != r.unit.kind() => {
                        return Err(fail(format!(
                            "{here}.billing[{j}].unit: resource {:?} is charged in {} by billing[{k}] (unit = {:?}) and in {} here (unit = {:?}); \
                             one resource is charged in one kind of hours: give the other partitions their own resource",
                            r.resource,
                            unit.kind().as_str(),
                            format!("{unit:?}").to_lowercase(),
                            r.unit.kind().as_str(),
                            format!("{:?}", r.unit).to_lowercase()
                        )))
                    }
                    Some(_) => {}
                    None => {
                        kinds.insert(&r.resource, (j, r.unit));
                    }
                }
            }
            let mut sources = Vec::new();
            let mut names = HashSet::new();
            for (j, s) in c.sources.into_iter().enumerate() {
                let at = format!("{here}.source[{j}]");
                let source = match s {
                    RawSource::Files { paths, format, fields } => SourceConfig::Files {
                        paths: paths.iter().map(|p| resolve(p)).collect(),
                        format,
                        fields,
                    },
                    RawSource::Sacct(raw) => SourceConfig::Sacct(raw.validate(&at).map_err(&fail)?),
                    RawSource::Slurmrestd(raw) => SourceConfig::Slurmrestd(raw.validate(&at, &resolve).map_err(&fail)?),
                };
                if let Some(live) = source.live() {
                    let name = &live.settings().name;
                    if !names.insert(name.clone()) {
                        return Err(fail(format!("{at}.name: two live sources of this centre are named {name:?}; give each a distinct name")));
                    }
                }
                sources.push(source);
            }
            if centres.contains_key(&c.id) {
                return Err(fail(format!("{here}.id: duplicate centre id")));
            }
            let schedule = c
                .schedule
                .as_deref()
                .map(daemon::CronSchedule::parse)
                .transpose()
                .map_err(|e| fail(format!("{here}.schedule: {e}")))?;
            centres.insert(
                c.id.clone(),
                CentreConfig { centre: Centre { id: c.id, tz, tz_name: c.timezone, clusters: c.clusters, rules }, sources, schedule },
            );
        }
        let alerts = raw.alerts.map(|a| a.validate(&base)).transpose().map_err(&fail)?;
        // The digest's schedule is read by the daemon's scheduler: checked by its parser.
        if let Some(d) = alerts.as_ref().and_then(|a| a.digest.as_ref()) {
            daemon::CronSchedule::parse(&d.schedule).map_err(|e| fail(format!("alerts.digest.schedule: {e}")))?;
        }
        let influxdb = raw.influxdb.map(|i| i.validate(resolve)).transpose().map_err(&fail)?;
        let daemon = raw.daemon.unwrap_or_default().validate().map_err(&fail)?;
        let http = raw.http.map(|h| h.validate(resolve)).transpose().map_err(&fail)?;
        let links = raw.links.map(|l| l.validate(resolve)).transpose().map_err(&fail)?;
        if links.is_some() && http.as_ref().and_then(|h| h.public_url.as_ref()).is_none() {
            return Err(fail("links: signed links need the address researchers open them at: set [http] public_url".into()));
        }
        let ood = raw.ood.map(|o| o.validate(resolve)).transpose().map_err(&fail)?.unwrap_or_default();
        Ok(Config {
            alerts,
            path: path.to_path_buf(),
            store_path: resolve(&store_location(&raw.store.path).map_err(|e| fail(format!("store.path: {e}")))?),
            centres,
            allocation_files: raw.allocations.files.iter().map(|p| resolve(p)).collect(),
            adjustment_files: raw.allocations.adjustments.iter().map(|p| resolve(p)).collect(),
            profiles,
            thresholds,
            forecast,
            at,
            influxdb,
            daemon,
            http,
            links,
            ood,
        })
    }

    /// What reconciliations are made from under this configuration and these grants.
    pub(crate) fn terms<'a>(&'a self, grants: &'a Grants) -> Terms<'a> {
        Terms { grants, thresholds: &self.thresholds, profiles: &self.profiles, forecast: &self.forecast }
    }

    /// The centre with this id, or a usage error listing the known ones.
    pub fn centre(&self, id: &str) -> Result<&CentreConfig, ConfigError> {
        self.centres.get(id).ok_or_else(|| ConfigError {
            file: self.path.display().to_string(),
            message: format!(
                "no centre {id:?} (known: {})",
                self.centres.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[store]
path = "state/aw.sqlite"
[[centre]]
id = "idris"
timezone = "Europe/Paris"
clusters = ["jeanzay"]
[[centre.billing]]
resource = "gpu-v100"
partitions = ["gpu_p13"]
unit = "gpu"
[[centre.billing]]
resource = "cpu"
partitions = ["cpu_p1"]
unit = "node"
cores_per_node = 40
multiplier = 0.5
"#;

    #[test]
    fn minimal_config_with_relative_store() {
        let c = Config::parse(MINIMAL, Path::new("/etc/aw/config.toml")).unwrap();
        assert_eq!(c.store_path, Path::new("/etc/aw/state/aw.sqlite"));
        let idris = &c.centres["idris"];
        let r = idris.rule_for("jeanzay", "cpu_p1").unwrap();
        let us = crate::domain::job::UnitSeconds { node: 2 * 3600, ..Default::default() };
        assert_eq!(r.hours(&us), 40.0); // 2 node-hours × 40 cores × 0.5
        assert!(idris.rule_for("jeanzay", "other").is_none());
    }

    #[test]
    fn errors_name_the_field() {
        let bad = MINIMAL.replace("Europe/Paris", "Mars/Olympus");
        let e = Config::parse(&bad, Path::new("c.toml")).unwrap_err().to_string();
        assert!(e.contains("centre[0]") && e.contains("timezone") && e.contains("Mars/Olympus"), "{e}");
        let bad = MINIMAL.replace("cores_per_node = 40\n", "");
        let e = Config::parse(&bad, Path::new("c.toml")).unwrap_err().to_string();
        assert!(e.contains("billing[1].cores_per_node"), "{e}");
        let bad = MINIMAL.replace("unit = \"gpu\"", "unit = \"gpus\"");
        let e = Config::parse(&bad, Path::new("c.toml")).unwrap_err().to_string();
        assert!(e.starts_with("c.toml:") && e.contains("unit"), "{e}");
        let bad = MINIMAL.replace("[store]", "[store]\ntypo = 1");
        let e = Config::parse(&bad, Path::new("c.toml")).unwrap_err().to_string();
        assert!(e.contains("typo"), "{e}");
    }

    #[test]
    fn live_sources_are_validated_with_the_key_named() {
        let with = |src: &str| format!("{MINIMAL}[[centre.source]]\n{src}\n");
        let c = Config::parse(&with("kind = \"sacct\"\ncommand_prefix = [\"ssh\", \"ops@login\"]"), Path::new("/etc/aw/c.toml")).unwrap();
        let SourceConfig::Sacct(s) = &c.centres["idris"].sources[0] else { panic!() };
        assert_eq!((s.settings.name.as_str(), s.settings.overlap_s, s.command_prefix.len()), ("sacct", 48 * 3600, 2));
        let c = Config::parse(&with("kind = \"slurmrestd\"\nsocket = \"rest.sock\""), Path::new("/etc/aw/c.toml")).unwrap();
        assert!(matches!(&c.centres["idris"].sources[0], SourceConfig::Slurmrestd(r) if r.describe() == "unix:/etc/aw/rest.sock"));
        let e = Config::parse(&with("kind = \"sacct\"\ntimeout_seconds = 0"), Path::new("c.toml")).unwrap_err().to_string();
        assert_eq!(e, "c.toml: centre[0] (id = \"idris\").source[0].timeout_seconds: must be at least 1");
        let e = Config::parse(&with("kind = \"slurmrestd\"\nurl = \"http://x\"\ntoken = \"s3cret\""), Path::new("c.toml")).unwrap_err().to_string();
        assert!(e.contains("unknown field `token`") && !e.contains("s3cret"), "{e}");
        let two = format!("{}[[centre.source]]\nkind = \"sacct\"\n", with("kind = \"sacct\""));
        let e = Config::parse(&two, Path::new("c.toml")).unwrap_err().to_string();
        assert!(e.contains("source[1].name: two live sources of this centre are named \"sacct\""), "{e}");
    }
}
