//! `allocwatch doctor`: connect to the store and to every configured source, sink and channel
//! with the configured credentials and timeouts, and say, one line each, what works and what
//! does not and why. The checks live beside their components (`Store::probe`,
//! `LiveSource::probe`, `pull::files::probe_files`, `sinks::influxdb::probe`,
//! `alerts::deliver::probe_channels`) and send nothing that counts: no mail, no alert, no
//! indicator point (one point of the probe measurement), nothing stored. This module runs them
//! in configuration order and prints what they said. Exit code 0 only when every check passed.

use super::{now, runtime, Failure, Globals};
use crate::config::SourceConfig;
use crate::store::Store;

/// `doctor`'s options.
#[derive(clap::Args)]
pub struct Args {
    /// Output format: one line per check and a summary, or one JSON array of
    /// `{component, name, ok, detail}`.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// Output format of `doctor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// `ok    COMPONENT NAME: DETAIL` / `FAIL  …`, then `doctor: N ok, M failed`.
    Text,
    /// One JSON array.
    Json,
}

/// One check: what was checked, as configured, and what it said.
struct Check {
    /// `store`, `centre`, `sink` or `channel`.
    component: &'static str,
    /// Which one, as configured (`lab source sacct`, `influxdb http://… bucket b`).
    name: String,
    /// What works, or what does not and why.
    result: Result<String, String>,
}

pub fn run(g: &Globals, a: Args) -> Result<(), Failure> {
    let (config, _grants) = g.load()?;
    let rt = runtime()?;
    let now = now();
    let mut checks = vec![Check { component: "store", name: config.store_path.display().to_string(), result: Store::probe(&config.store_path) }];
    for c in config.centres.values() {
        for (i, source) in c.sources.iter().enumerate() {
            let (name, result) = match (source.live(), source) {
                (Some(live), _) => (format!("{} source {}", c.id, live.settings().name), rt.block_on(crate::pull::probe_source(c, live, now))),
                (None, SourceConfig::Files { paths, .. }) => (format!("{} source files (source[{i}])", c.id), crate::pull::files::probe_files(paths)),
                // Every other kind is live.
                (None, _) => continue,
            };
            checks.push(Check { component: "centre", name, result });
        }
    }
    if let Some(i) = &config.influxdb {
        checks.push(Check {
            component: "sink",
            name: format!("influxdb {} bucket {}", i.url, i.bucket),
            result: rt.block_on(crate::sinks::influxdb::probe(i, now)),
        });
    }
    if let Some(al) = &config.alerts {
        for p in rt.block_on(crate::alerts::deliver::probe_channels(al)) {
            checks.push(Check { component: "channel", name: format!("{} {}", p.channel.as_str(), p.target), result: p.result });
        }
    }
    let failed = checks.iter().filter(|c| c.result.is_err()).count();
    match a.format {
        Format::Text => {
            for c in &checks {
                let (status, detail) = match &c.result {
                    Ok(d) => ("ok", d),
                    Err(d) => ("FAIL", d),
                };
                println!("{status:<5} {} {}: {detail}", c.component, c.name);
            }
            println!("doctor: {} ok, {failed} failed", checks.len() - failed);
        }
        Format::Json => {
            let rows: Vec<serde_json::Value> = checks
                .iter()
                .map(|c| {
                    let (ok, detail) = match &c.result {
                        Ok(d) => (true, d),
                        Err(d) => (false, d),
                    };
                    serde_json::json!({ "component": c.component, "name": c.name, "ok": ok, "detail": detail })
                })
                .collect();
            println!("{}", serde_json::Value::Array(rows));
        }
    }
    if failed > 0 {
        return Err(Failure::runtime(format!("doctor: {failed} of {} checks failed", checks.len())));
    }
    Ok(())
}
