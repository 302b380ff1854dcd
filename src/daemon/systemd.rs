//! systemd integration (`Type=notify`): readiness, reload and stop notices, status line, and
//! the watchdog. Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op.

use std::time::Duration;

fn send(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!("sd_notify: {e}");
    }
}

/// The daemon serves: the listener is bound and the schedule installed.
pub fn ready(status: &str) {
    send(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(status)]);
}

/// A reload is starting (`ready` follows).
pub(crate) fn reloading() {
    send(&[sd_notify::NotifyState::Reloading]);
}

/// Shutdown has begun.
pub fn stopping() {
    send(&[sd_notify::NotifyState::Stopping, sd_notify::NotifyState::Status("stopping")]);
}

/// A one-line status (`systemctl status`).
pub fn status(s: &str) {
    send(&[sd_notify::NotifyState::Status(s)]);
}

/// The watchdog interval systemd asked for (`WatchdogSec=`), if any.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec))
}

/// Ping the watchdog at half its interval for as long as the runtime schedules this task (a
/// wedged runtime stops the pings and systemd restarts the service), until the shutdown
/// drains.
pub(crate) fn spawn_watchdog(shutdown: crate::shutdown::Shutdown) -> Option<tokio::task::JoinHandle<()>> {
    let interval = watchdog_interval()?;
    tracing::info!(interval_seconds = interval.as_secs_f64(), "systemd watchdog enabled");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval / 2);
        loop {
            tokio::select! {
                _ = tick.tick() => send(&[sd_notify::NotifyState::Watchdog]),
                _ = shutdown.draining() => return,
            }
        }
    }))
}
