//! One shutdown signal, handed to every task (after tokio's mini-redis `shutdown.rs`).
//!
//! A stop goes through two phases, in order, on one channel:
//! - **stopping**: take no new work (no new pull, cycle or backfill chunk); what is in flight
//!   finishes — each pull, cycle and chunk is one transaction, so nothing half-written remains;
//! - **draining**: the work is done; delivery tasks make a last pass over their outboxes, the
//!   HTTP server closes, and they return.
//!
//! The owner holds the [`ShutdownSignal`] and moves it through the phases; each task holds a
//! [`Shutdown`] (cheap to clone) and asks or awaits the phase it cares about. A [`child`]
//! signal stops one task early (the indicator writer replaced on reload) and follows its
//! parent otherwise.
//!
//! [`child`]: ShutdownSignal::child

use tokio::sync::watch;

/// Where a stop stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Working.
    Running,
    /// No new work; what is in flight finishes.
    Stopping,
    /// In-flight work is over: last delivery passes, then return.
    Draining,
}

/// The owner's side: moves every [`Shutdown`] through the phases.
#[derive(Debug)]
pub(crate) struct ShutdownSignal {
    tx: watch::Sender<Phase>,
}

/// A task's side of the signal.
#[derive(Debug, Clone)]
pub(crate) struct Shutdown {
    rx: watch::Receiver<Phase>,
}

impl Default for ShutdownSignal {
    fn default() -> Self {
        ShutdownSignal::new()
    }
}

impl ShutdownSignal {
    /// A signal in the running phase.
    pub fn new() -> ShutdownSignal {
        ShutdownSignal { tx: watch::channel(Phase::Running).0 }
    }

    /// A receiver for a task.
    pub(crate) fn subscribe(&self) -> Shutdown {
        Shutdown { rx: self.tx.subscribe() }
    }

    /// Take no new work.
    pub fn stop(&self) {
        self.advance(Phase::Stopping);
    }

    /// In-flight work is over: drain and return (implies stopping).
    pub fn drain(&self) {
        self.advance(Phase::Draining);
    }

    fn advance(&self, to: Phase) {
        self.tx.send_if_modified(|p| {
            let later = to > *p;
            if later {
                *p = to;
            }
            later
        });
    }

    /// A signal that follows `parent` (it stops and drains when the parent does) and can also
    /// be moved on its own. Must be called inside a tokio runtime (a task forwards the phase).
    pub fn child(parent: &Shutdown) -> ShutdownSignal {
        let child = ShutdownSignal::new();
        let tx = child.tx.clone();
        let mut rx = parent.rx.clone();
        tokio::spawn(async move {
            loop {
                let p = *rx.borrow_and_update();
                tx.send_if_modified(|c| {
                    let later = p > *c;
                    if later {
                        *c = p;
                    }
                    later
                });
                if p == Phase::Draining || tx.is_closed() || rx.changed().await.is_err() {
                    return;
                }
            }
        });
        child
    }

    /// Stop on SIGTERM or SIGINT (a task of the current runtime; the signals are installed
    /// before this returns, so none is lost).
    pub(crate) fn stop_on_signals(self: &std::sync::Arc<Self>) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let (mut term, mut int) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
        let me = self.clone();
        tokio::spawn(async move {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            me.stop();
        });
        Ok(())
    }
}

impl Shutdown {
    /// The current phase.
    pub(crate) fn phase(&self) -> Phase {
        *self.rx.borrow()
    }

    /// Whether new work must not start.
    pub(crate) fn is_stopping(&self) -> bool {
        self.phase() >= Phase::Stopping
    }

    /// Resolves once stopping (at once if already).
    pub async fn stopping(&self) {
        self.reached(Phase::Stopping).await
    }

    /// Resolves once draining (at once if already).
    pub(crate) async fn draining(&self) {
        self.reached(Phase::Draining).await
    }

    async fn reached(&self, phase: Phase) {
        let mut rx = self.rx.clone();
        // An owner that went away without draining is a stop too.
        let _ = rx.wait_for(|p| *p >= phase).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn phases_only_move_forward_and_children_follow() {
        let s = ShutdownSignal::new();
        let a = s.subscribe();
        assert_eq!(a.phase(), Phase::Running);
        let child = ShutdownSignal::child(&a);
        let c = child.subscribe();
        s.stop();
        assert!(a.is_stopping());
        c.stopping().await;
        s.drain();
        s.stop();
        assert_eq!(a.phase(), Phase::Draining);
        c.draining().await;
        // A child drained on its own leaves the parent alone.
        let s2 = ShutdownSignal::new();
        let child2 = ShutdownSignal::child(&s2.subscribe());
        child2.drain();
        child2.subscribe().draining().await;
        assert_eq!(s2.subscribe().phase(), Phase::Running);
    }
}
