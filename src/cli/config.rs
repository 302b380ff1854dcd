//! `allocwatch config check`: validate the configuration and the files it names, and say what
//! would run (sources, sinks, schedules), naming where each secret comes from, never showing it.

use super::{now, Failure, Globals};

/// `config`'s subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate the configuration and the allocation and adjustment files it names.
    Check,
}

pub fn run(g: &Globals, command: Command) -> Result<(), Failure> {
    let Command::Check = command;
    let (config, grants) = g.load()?;
    println!(
        "{}: OK — {} centres, {} allocations, {} adjustments; store {}",
        config.path.display(),
        config.centres.len(),
        grants.allocations.len(),
        grants.adjustments.len(),
        config.store_path.display()
    );
    if let Some(i) = &config.influxdb {
        i.token.read_as("influxdb", "token").map_err(Failure::usage)?;
        println!("indicators to {} (org {}, bucket {}), token from {}", i.url, i.org, i.bucket, i.token.describe());
    }
    let d = &config.daemon;
    println!(
        "run: pulls on {} (UTC) after up to {} s of jitter; quality report {}",
        d.pull_schedule.as_str(),
        d.jitter.as_secs(),
        d.quality_report.as_ref().map(|q| q.as_str()).unwrap_or("off")
    );
    if let Some(dg) = config.alerts.as_ref().and_then(|a| a.digest.as_ref()) {
        let to = if dg.members { "PIs and members" } else { "PIs" };
        println!("digests: one per project and {} to {to}, on {} (UTC)", dg.every.as_str(), dg.schedule);
    }
    if let Some(h) = &config.http {
        let token = match &h.token {
            Some(t) => t.read_as("http", "token").map(|_| format!("token from {}", t.describe())).map_err(Failure::usage)?,
            None => "no token: the API and the page are closed unless opened".into(),
        };
        println!("HTTP on {}, {token}", h.listen);
    }
    for b in &config.ood.balances {
        println!("OOD balances ({}) to {}, rewritten after each cycle of `run`", b.unit.as_str(), b.file.display());
    }
    // Signed project links: the keys are read (a missing or short one is refused here, as at
    // start), never shown.
    if let Some(maker) = config.link_maker().map_err(|e| Failure::usage(format!("{}: {e}", config.path.display())))? {
        let l = config.links.as_ref().expect("a link maker comes from [links]");
        println!(
            "links: {}/projects/<project>?key=…, signed with key {:?} ({} accepted), valid {} days",
            maker.public_url,
            l.keys[0].id,
            l.keys.iter().map(|k| format!("{} from {}", k.id, k.source.describe())).collect::<Vec<_>>().join(", "),
            l.lifetime_days
        );
    }
    // Live sources, as they will be run (tokens are named by origin, never shown).
    for c in config.centres.values() {
        for l in c.live_sources() {
            let s = l.settings();
            println!(
                "  {}/{}: {}; overlap {} min, {} h on a deep re-scan {}, first pull {} days back, timeout {} s",
                c.id,
                s.name,
                l.plan(now(), &c.tz),
                s.recent_overlap_s / 60,
                s.overlap_s / 3600,
                if s.rescan_s == 0 { "(every pull)".to_string() } else { format!("(every {} h)", s.rescan_s / 3600) },
                s.first_pull_s / 86_400,
                s.timeout.as_secs()
            );
        }
    }
    Ok(())
}
