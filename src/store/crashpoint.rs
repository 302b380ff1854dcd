//! Deliberate crashes at the store's commit boundaries, for the crash harness
//! (`tests/crash.rs`): it kills the process exactly where a loss or a double count would hide,
//! just before or just after a commit, as well as at random instants. Off unless
//! `ALLOCWATCH_CRASH_AT` or `ALLOCWATCH_CRASH_TRACE` is set; when off, a commit costs one
//! initialised-once read.
//!
//! - `ALLOCWATCH_CRASH_AT=before:N` (or `after:N`): at this process's Nth commit (1-based),
//!   the process SIGKILLs itself just before (after) it — no destructor, no flush, as
//!   `kill -9` would. A line `crashpoint: SIGKILL before commit N at FILE:LINE` is appended to
//!   the trace file, when one is set, first.
//! - `ALLOCWATCH_CRASH_TRACE=FILE`: every commit appends `N FILE:LINE` (the call site that
//!   committed), so the harness learns how many commits a run makes and where they are.
//!
//! Every write of the store passes through here: [`super::Store::transaction`], an
//! [`super::Ingest`]'s commit, and the single statements that commit on their own (a
//! delivery's `notification_sent` and `notification_failed`, `record_failed_pull`).
//!
//! Hand-rolled (forty lines) rather than the `fail` crate: the harness needs the process to
//! die as under SIGKILL at the Nth commit wherever it is, named by call site, in the binary the
//! integration tests run; `fail`'s actions (panic, return, sleep, pause) would need a closure
//! at every site and its `failpoints` feature compiled into the shipped binary all the same.

use std::io::Write as _;
use std::panic::Location;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

struct Plan {
    /// `(before, n)`: die before (true) or after the nth commit.
    kill: Option<(bool, u64)>,
    trace: Option<PathBuf>,
}

static PLAN: OnceLock<Option<Plan>> = OnceLock::new();
static COMMITS: AtomicU64 = AtomicU64::new(0);

fn plan() -> Option<&'static Plan> {
    PLAN.get_or_init(|| {
        let kill = std::env::var("ALLOCWATCH_CRASH_AT").ok().and_then(|v| {
            let (when, n) = v.split_once(':')?;
            Some((when == "before", n.trim().parse().ok()?))
        });
        let trace = std::env::var_os("ALLOCWATCH_CRASH_TRACE").map(PathBuf::from);
        (kill.is_some() || trace.is_some()).then_some(Plan { kill, trace })
    })
    .as_ref()
}

fn note(plan: &Plan, line: &str) {
    if let Some(path) = &plan.trace {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            // One write(2) per line: threads committing at once (a delivery while a cycle
            // commits) must not interleave their lines.
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}

fn die(plan: &Plan, when: &str, n: u64, site: &Location<'_>) {
    note(plan, &format!("crashpoint: SIGKILL {when} commit {n} at {}:{}", site.file(), site.line()));
    // SAFETY: kill(2) on our own pid; it does not return.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

/// Run `commit` (the statement that commits) at the call site `site`, crashing around it when
/// the plan says so.
pub(crate) fn commit<T>(site: &'static Location<'static>, commit: impl FnOnce() -> T) -> T {
    let Some(plan) = plan() else { return commit() };
    let n = COMMITS.fetch_add(1, Ordering::SeqCst) + 1;
    note(plan, &format!("{n} {}:{}", site.file(), site.line()));
    if plan.kill == Some((true, n)) {
        die(plan, "before", n, site);
    }
    let out = commit();
    if plan.kill == Some((false, n)) {
        die(plan, "after", n, site);
    }
    out
}
