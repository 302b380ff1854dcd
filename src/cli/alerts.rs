//! `allocwatch alerts`: list alerts with their delivery history, acknowledge one, deliver the
//! notification outbox now, queue the researchers' digests now.

use super::output::{self, Format};
use super::{now, open_store, runtime, Failure, Globals};
use crate::alerts::settings::AlertSettings;
use crate::alerts::Alerting;
use crate::config::Config;
use crate::store::Store;

/// `alerts`' subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Alerts with their state and delivery history (firing only, unless --all).
    List {
        /// Include resolved alerts.
        #[arg(long)]
        all: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Acknowledge a firing alert: no more reminders (resolution is still told).
    Ack {
        /// Alert id (from `alerts list`).
        id: i64,
        /// Who acknowledges (recorded in the audit trail).
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Deliver queued notifications now.
    Deliver {
        /// Also those waiting for their retry time.
        #[arg(long)]
        force: bool,
    },
    /// Queue the researchers' digests ([alerts.digest]) of the period the instant falls in
    /// (ISO week or month, UTC), reconciling the ledger at that instant; a project's digest of
    /// a period is queued once. Then deliver the outbox.
    Digest {
        /// Reconciliation instant (RFC 3339 or YYYY-MM-DD); default: the configured pin, else now.
        #[arg(long)]
        at: Option<String>,
        /// Print the text part of each digest (and to whom it would go) and queue nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn run(g: &Globals, command: Command) -> Result<(), Failure> {
    let (config, grants) = g.load()?;
    let mut store = open_store(&config)?;
    match command {
        Command::List { all, format } => {
            print!("{}", output::alerts(&store.alerts(all)?, format));
            Ok(())
        }
        Command::Ack { id, by } => {
            if !store.alert_exists(id)? {
                return Err(Failure::usage(format!("no alert {id} (see `allocwatch alerts list --all`)")));
            }
            if store.ack_alert(id, &by, now())? {
                println!("alert {id} acknowledged by {by}: no more reminders");
                Ok(())
            } else {
                Err(Failure::usage(format!("alert {id} is not firing")))
            }
        }
        Command::Deliver { force } => {
            let Some(s) = &config.alerts else {
                return Err(Failure::usage(format!("{}: no [alerts] section: nothing to deliver", config.path.display())));
            };
            deliver(&mut store, s, force)
        }
        Command::Digest { at, dry_run } => digest(&config, &grants, &mut store, at.as_deref(), dry_run),
    }
}

/// `alerts digest`: reconcile at the instant (the function every cycle calls, so the figures
/// are `check --at`'s), queue or print the digests, deliver.
fn digest(config: &Config, grants: &crate::domain::grants::Grants, store: &mut Store, at: Option<&str>, dry_run: bool) -> Result<(), Failure> {
    let Some(al) = alerting(config)? else {
        return Err(Failure::usage(format!("{}: no [alerts] section: no digest to send", config.path.display())));
    };
    let at = match at {
        Some(s) => crate::domain::time::parse_instant(s, &jiff::tz::TimeZone::UTC).map_err(|e| Failure::usage(format!("--at: {e}")))?,
        None => config.at.unwrap_or_else(jiff::Timestamp::now),
    };
    let rec = crate::reconcile::reconcile_all(config, grants, store, at.as_second())?;
    let r = crate::cycle::digest::run(config, grants, &al, store, &rec, 0, now(), "cli", dry_run)?;
    if dry_run {
        for m in &r.mails {
            println!("To: {}\nSubject: {}\n\n{}", m.recipient, m.subject, m.text);
        }
        eprintln!("digests of {}: {} would be queued ({} mails), {} already queued; dry run: nothing queued", r.period, r.mails.iter().map(|m| &m.project).collect::<std::collections::BTreeSet<_>>().len(), r.mails.len(), r.already.len());
        return Ok(());
    }
    eprintln!(
        "digests of {}: {} queued ({} mails), {} already queued",
        r.period,
        r.queued.len(),
        r.queued.iter().map(|(_, n)| n).sum::<usize>(),
        r.already.len()
    );
    deliver(store, &al.settings, false)
}

/// The alert evaluation of a configuration, when it has an `[alerts]` section.
pub(super) fn alerting(config: &Config) -> Result<Option<Alerting>, Failure> {
    match &config.alerts {
        Some(s) => {
            let links = config.link_maker().map_err(|e| Failure::usage(format!("{}: {e}", config.path.display())))?;
            Alerting::new(s.clone(), links).map(Some).map_err(|e| Failure::usage(format!("{}: alerts: {e}", config.path.display())))
        }
        None => Ok(None),
    }
}

/// One delivery pass of the notification outbox, reported on stderr. Failures leave the
/// messages queued (exit code 0: nothing is lost; the next run retries).
pub(super) fn deliver(store: &mut Store, s: &AlertSettings, force: bool) -> Result<(), Failure> {
    let r = runtime()?.block_on(crate::alerts::deliver::deliver_pending(store, s, force)).map_err(Failure::runtime)?;
    if r.sent + r.failed > 0 || r.pending > 0 {
        eprintln!("notifications: {} sent, {} failed attempts, {} queued", r.sent, r.failed, r.pending);
    }
    Ok(())
}
