//! `allocwatch outbox`: the indicator points waiting for InfluxDB — their status, or a flush now.

use super::output::Format;
use super::{open_store, Failure, Globals};
use crate::sinks::outbox;

/// `outbox`'s subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Points waiting, oldest, last attempt, last error.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Send every waiting point now (exit 1 if some remain).
    Flush,
}

pub fn run(g: &Globals, command: Command) -> Result<(), Failure> {
    let (config, _) = g.load()?;
    let mut store = open_store(&config)?;
    match command {
        Command::Status { format } => {
            let st = outbox::status(&store)?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&st).map_err(Failure::runtime)?),
                _ => print!("{st}"),
            }
            Ok(())
        }
        Command::Flush => {
            let Some(r) = outbox::flush_now(config.influxdb.as_ref(), &mut store)? else {
                return Err(Failure::usage(format!("{}: no [influxdb] section: nothing to flush to", config.path.display())));
            };
            println!("sent {} points in {} requests; {} refused (kept in outbox_rejected); {} waiting", r.sent, r.batches, r.rejected, r.remaining);
            match r.error {
                Some(e) => Err(Failure::runtime(format!("{e}; {} points stay queued", r.remaining))),
                None => Ok(()),
            }
        }
    }
}
