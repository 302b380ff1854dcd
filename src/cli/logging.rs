//! Logging, set up once per process: on a terminal, coloured human lines; in a file or a pipe,
//! the same without colours; under systemd (stderr is the journal stream), one line per event
//! with the sd-daemon(3) priority prefix (`<3>` error … `<7>` debug) so that journald records
//! the level, no timestamp (journald stamps each entry) and no ANSI; `--log-format json` for
//! log shipping, whoever started us.

use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Log format on stderr (`--log-format`).
#[derive(Clone, Copy, clap::ValueEnum)]
pub(super) enum LogFormat {
    /// Lines for people (journald-ready when systemd started us).
    Human,
    /// One JSON object per event.
    Json,
}

/// Logs on stderr through `tracing`: allocwatch's own at `info` and other crates' at `warn`
/// unless `ALLOCWATCH_LOG` says otherwise (its value is used as it is: `debug` is everything at
/// debug, `allocwatch=debug` only ours).
pub(super) fn init(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("ALLOCWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,allocwatch=info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => b.with_ansi(false).json().init(),
        LogFormat::Human if stderr_is_journal() => b.with_ansi(false).event_format(JournalLines).init(),
        LogFormat::Human => b.with_ansi(std::io::stderr().is_terminal()).with_target(false).init(),
    }
}

/// Whether stderr is connected to the journal: systemd sets `JOURNAL_STREAM=DEVICE:INODE` for
/// the stream it connected, and a child whose stderr was redirected elsewhere inherits the
/// variable, so it is compared with stderr's own device and inode (systemd.exec(5)).
fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = v.split_once(':') else { return false };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else { return false };
    // SAFETY: fstat on fd 2 writes only into the zeroed struct we pass.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    st.st_dev as u64 == dev && st.st_ino as u64 == ino
}

/// The syslog priority of a level, as sd-daemon(3) prefixes it.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// `<6>span{field=value}: message key=value`: what journald stores as one entry at that
/// priority. A multi-line message keeps its priority on every line (journald splits at
/// newlines).
struct JournalLines;

impl<S, N> FormatEvent<S, N> for JournalLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut line = String::new();
        {
            let mut w = Writer::new(&mut line);
            if let Some(scope) = ctx.event_scope() {
                for span in scope.from_root() {
                    write!(w, "{}", span.name())?;
                    if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
                        if !fields.is_empty() {
                            write!(w, "{{{fields}}}")?;
                        }
                    }
                    write!(w, ": ")?;
                }
            }
            ctx.field_format().format_fields(w.by_ref(), event)?;
        }
        let p = priority(event.metadata().level());
        for l in line.lines() {
            writeln!(writer, "<{p}>{l}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::priority;
    use tracing::Level;

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!([Level::ERROR, Level::WARN, Level::INFO, Level::DEBUG, Level::TRACE].map(|l| priority(&l)), [3, 4, 6, 7, 7]);
    }
}
