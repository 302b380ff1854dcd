//! `allocwatch alerts`: list alerts with their delivery history, acknowledge one, deliver the
//! notification outbox now.

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
}

pub fn run(g: &Globals, command: Command) -> Result<(), Failure> {
    let (config, _) = g.load()?;
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
    }
}

/// The alert evaluation of a configuration, when it has an `[alerts]` section.
pub(super) fn alerting(config: &Config) -> Result<Option<Alerting>, Failure> {
    match &config.alerts {
        Some(s) => Alerting::new(s.clone()).map(Some).map_err(|e| Failure::usage(format!("{}: alerts: {e}", config.path.display()))),
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
