//! Balances for Open OnDemand: what each project has left of one kind of hours at a
//! reconciliation's instant, once per Slurm user who ran on the project's accounts — the
//! entries of an OOD balance file (`allocwatch export ood`, and the daemon's files).
//!
//! - Which allocations count: those of the kind asked for (core-hours *or* GPU-hours, never
//!   both; billing-weighted hours are neither) whose period holds the instant, across centres.
//! - Which users: those who ran a job on one of such an allocation's own `accounts`, at its
//!   centre, during its period so far (a job overlapping [period start, instant), as `usage`
//!   counts them). No job-to-allocation decision is made here: the account is the allocation's,
//!   whatever partition the job ran on; [`user_windows`] says what the ledger must be asked.
//! - The value: [`project_value`].

use super::hours::{HoursByKind, HoursKind, ResourceHours};
use super::reconciliation::{AllocationReport, Reconciliation};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// A Slurm user's jobs on one account of a centre, as the ledger answered for a window: enough
/// to tell whether they ran on the account since any instant of the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccountUser {
    /// Centre id.
    pub centre: String,
    /// Slurm account.
    pub account: String,
    /// Slurm user name (what OOD compares with the logged-in user's name).
    pub user: String,
    /// Latest start of those jobs, epoch seconds.
    pub last_start_s: i64,
    /// Latest end of those jobs, epoch seconds.
    pub last_end_s: i64,
}

impl AccountUser {
    /// Whether one of the jobs overlaps [`from`, the window's end): it ended after `from`, or
    /// it is a zero-length job at or after `from` (the window rule of `usage`).
    fn ran_since(&self, from: i64) -> bool {
        self.last_end_s > from || self.last_start_s >= from
    }
}

/// What the ledger must be asked for one centre: the users of its accounts whose jobs started
/// before `to_s` and ended at or after `from_s` (the earliest period start of the allocations
/// of the kinds asked for in effect there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserWindow {
    /// Centre id.
    pub centre: String,
    /// Window start, epoch seconds.
    pub from_s: i64,
    /// Window end (the instant), epoch seconds.
    pub to_s: i64,
}

/// One entry of an OOD balance file: `user` sees `value` hours left on `project`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Balance {
    /// Slurm user name.
    pub user: String,
    /// Project id.
    pub project: String,
    /// Whole hours left (see [`project_value`]).
    pub value: i64,
}

/// The allocations of `kind` whose period holds the reconciliation's instant.
fn in_effect(rec: &Reconciliation, kind: HoursKind) -> impl Iterator<Item = &AllocationReport> {
    rec.allocations.iter().filter(move |a| a.kind == kind && a.is_running())
}

/// Per centre (by id), the window of the ledger the balances of `kinds` need: one read serves
/// every kind, since [`balances`] keeps, per allocation, only the users of its own period.
pub(crate) fn user_windows(rec: &Reconciliation, kinds: &[HoursKind]) -> Vec<UserWindow> {
    let mut from: BTreeMap<&str, i64> = BTreeMap::new();
    for a in kinds.iter().flat_map(|k| in_effect(rec, *k)) {
        let f = from.entry(a.centre.as_str()).or_insert(a.start_s);
        *f = (*f).min(a.start_s);
    }
    from.into_iter().map(|(c, from_s)| UserWindow { centre: c.to_string(), from_s, to_s: rec.at }).collect()
}

/// The value OOD shows for a project: the hours left on each of its allocations `reports`
/// (all of one kind), each counted from zero when overdrawn, summed, rounded down.
///
/// Why not the plain signed sum: OOD's value reads "core-hours balance is N" and is meant as
/// what can still be used; an overdraft on one allocation (one centre) does not take hours away
/// from another centre's allocation, which stays usable, so a signed sum would hide usable hours
/// behind another centre's debt. An allocation that ran out counts 0; a project that has
/// nothing left anywhere shows 0, which OOD's default threshold (0) already reports as
/// insufficient (it warns when value ≤ threshold), and overdrafts are what allocwatch's own
/// `exhausted` status and alerts report. Rounded down so that OOD never shows an hour that is
/// not there.
pub(crate) fn project_value<'a>(reports: impl IntoIterator<Item = &'a AllocationReport>) -> i64 {
    let mut left = HoursByKind::default();
    let mut kind = None;
    for a in reports {
        debug_assert!(kind.is_none_or(|k| k == a.kind), "one kind of hours per value");
        kind = Some(a.kind);
        left.add(ResourceHours::new(a.kind, a.remaining_hours.value().max(0.0)));
    }
    // `as` saturates (and maps NaN to 0): a value always fits OOD's integer.
    kind.map(|k| left.of(k).value().floor() as i64).unwrap_or(0)
}

/// The balances of `kind` at the reconciliation's instant: one per (project, user) for every
/// project with an allocation of that kind in effect and every user of `users` who ran on one
/// of those allocations' accounts during its period; sorted by project, then user.
pub(crate) fn balances(rec: &Reconciliation, kind: HoursKind, users: &[AccountUser]) -> Vec<Balance> {
    let mut by_project: BTreeMap<&str, Vec<&AllocationReport>> = BTreeMap::new();
    for a in in_effect(rec, kind) {
        by_project.entry(a.project.as_str()).or_default().push(a);
    }
    let mut by_account: BTreeMap<(&str, &str), Vec<&AccountUser>> = BTreeMap::new();
    for u in users {
        by_account.entry((u.centre.as_str(), u.account.as_str())).or_default().push(u);
    }
    let mut out = Vec::new();
    for (project, reports) in by_project {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for a in &reports {
            for account in &a.accounts {
                for u in by_account.get(&(a.centre.as_str(), account.as_str())).into_iter().flatten() {
                    if u.ran_since(a.start_s) {
                        seen.insert(u.user.as_str());
                    }
                }
            }
        }
        if seen.is_empty() {
            continue;
        }
        let value = project_value(reports.iter().copied());
        out.extend(seen.into_iter().map(|user| Balance { user: user.to_string(), project: project.to_string(), value }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::reconcile::Status;

    const DAY: i64 = 86_400;

    /// An allocation of `project` at `centre` on `accounts`, of `kind`, starting at day 10,
    /// with `remaining` hours left and `status`.
    fn alloc(project: &str, centre: &str, accounts: &[&str], kind: HoursKind, remaining: f64, status: Status) -> AllocationReport {
        let mut a = AllocationReport::example(1000.0, 1000.0 - remaining, status);
        a.project = project.into();
        a.centre = centre.into();
        a.accounts = accounts.iter().map(|s| s.to_string()).collect();
        a.kind = kind;
        a.remaining_hours = ResourceHours::new(kind, remaining);
        a.start_s = 10 * DAY;
        a.end_s = 100 * DAY;
        a
    }

    fn user(centre: &str, account: &str, user: &str, last_start_day: i64, last_end_day: i64) -> AccountUser {
        AccountUser { centre: centre.into(), account: account.into(), user: user.into(), last_start_s: last_start_day * DAY, last_end_s: last_end_day * DAY }
    }

    fn rec(allocations: Vec<AllocationReport>) -> Reconciliation {
        Reconciliation { at: 50 * DAY, allocations, orphans: Vec::new(), unmapped: Vec::new(), orphan_window_days: 30 }
    }

    fn b(user: &str, project: &str, value: i64) -> Balance {
        Balance { user: user.into(), project: project.into(), value }
    }

    use HoursKind::{BillingHours as Bill, CoreHours as Core, GpuHours as Gpu};
    use Status::{Ended, Exhausted, NotStarted, OnTrack, OverPace};

    #[test]
    fn project_values() {
        // (case, allocations as (kind, remaining), value)
        type Case<'a> = (&'a str, &'a [(HoursKind, f64)], i64);
        let cases: &[Case] = &[
            ("one allocation, rounded down", &[(Core, 1234.99)], 1234),
            ("two centres add", &[(Core, 100.5), (Core, 200.6)], 301),
            ("overdrawn counts zero", &[(Core, -500.0)], 0),
            ("an overdraft does not hide another centre's hours", &[(Core, -500.0), (Core, 1000.25)], 1000),
            ("just under an hour is 0", &[(Gpu, 0.999)], 0),
            ("exactly zero", &[(Gpu, 0.0)], 0),
            ("huge saturates", &[(Core, 1e300)], i64::MAX),
            ("nothing", &[], 0),
        ];
        for (case, allocs, want) in cases {
            let reports: Vec<_> = allocs.iter().map(|(k, r)| alloc("p", "c", &["a"], *k, *r, OnTrack)).collect();
            assert_eq!(project_value(&reports), *want, "{case}");
        }
    }

    #[test]
    fn balances_table() {
        let users = vec![
            user("idris", "acc1", "alice", 40, 41),
            user("idris", "acc1", "bob", 45, 46),
            user("idris", "acc2", "carol", 20, 21),
            user("tgcc", "acc1", "dave", 30, 31),      // same account name, other centre
            user("idris", "acc1", "old", 2, 5),         // last ran before the period started
            user("idris", "acc1", "edge", 9, 10),       // ended exactly at the period start: not in it
            user("idris", "acc1", "zero", 10, 10),      // zero-length job at the period start: in it
            user("idris", "acc1", "across", 5, 12),     // started before, ran into the period
            user("idris", "gpuacc", "gina", 30, 31),
            user("cines", "billacc", "bill", 30, 31),
        ];
        // (case, allocations, kind, expected balances)
        let cases: Vec<(&str, Vec<AllocationReport>, HoursKind, Vec<Balance>)> = vec![
            (
                "users of the allocation's accounts, deduplicated and sorted",
                vec![alloc("P1", "idris", &["acc1", "acc2"], Core, 10.7, OnTrack)],
                Core,
                vec![b("across", "P1", 10), b("alice", "P1", 10), b("bob", "P1", 10), b("carol", "P1", 10), b("zero", "P1", 10)],
            ),
            (
                "the account is the centre's: tgcc's acc1 is another account",
                vec![alloc("P1", "tgcc", &["acc1"], Core, 5.0, OverPace)],
                Core,
                vec![b("dave", "P1", 5)],
            ),
            (
                "across centres: one value per project, every user of either",
                vec![alloc("P1", "idris", &["acc2"], Core, 100.0, OnTrack), alloc("P1", "tgcc", &["acc1"], Core, 50.5, OnTrack)],
                Core,
                vec![b("carol", "P1", 150), b("dave", "P1", 150)],
            ),
            (
                "only the kind asked for: GPU-hours are not added to core-hours",
                vec![alloc("P1", "idris", &["acc2"], Core, 100.0, OnTrack), alloc("P1", "idris", &["gpuacc"], Gpu, 7.0, OnTrack)],
                Gpu,
                vec![b("gina", "P1", 7)],
            ),
            (
                "billing-hours are neither core-hours nor GPU-hours",
                vec![alloc("P2", "cines", &["billacc"], Bill, 100.0, OnTrack)],
                Core,
                vec![],
            ),
            (
                "allocations not in effect are left out, of the value too",
                vec![
                    alloc("P1", "idris", &["acc2"], Core, 100.0, Ended),
                    alloc("P1", "idris", &["acc2"], Core, 30.0, OnTrack),
                    alloc("P3", "idris", &["acc1"], Core, 1000.0, NotStarted),
                ],
                Core,
                vec![b("carol", "P1", 30)],
            ),
            (
                "exhausted: 0, still listed",
                vec![alloc("P1", "idris", &["acc2"], Core, -20.0, Exhausted)],
                Core,
                vec![b("carol", "P1", 0)],
            ),
            (
                "a project nobody ran on is not listed",
                vec![alloc("P4", "idris", &["unused"], Core, 100.0, OnTrack)],
                Core,
                vec![],
            ),
            (
                "two projects sharing an account: both listed, by project",
                vec![alloc("P9", "idris", &["acc2"], Core, 1.0, OnTrack), alloc("P0", "idris", &["acc2"], Core, 2.0, OnTrack)],
                Core,
                vec![b("carol", "P0", 2), b("carol", "P9", 1)],
            ),
        ];
        for (case, allocations, kind, want) in cases {
            assert_eq!(balances(&rec(allocations), kind, &users), want, "{case}");
        }
    }

    #[test]
    fn windows_start_at_the_earliest_period_in_effect() {
        let mut early = alloc("P1", "idris", &["a"], Core, 1.0, OnTrack);
        early.start_s = 3 * DAY;
        let late = alloc("P2", "idris", &["b"], Core, 1.0, OnTrack);
        let mut ended = alloc("P3", "idris", &["c"], Core, 1.0, Ended);
        ended.start_s = 0;
        let gpu = alloc("P4", "tgcc", &["d"], Gpu, 1.0, OnTrack);
        let r = rec(vec![late, early, ended, gpu]);
        let w = |c: &str, from_days| UserWindow { centre: c.into(), from_s: from_days * DAY, to_s: 50 * DAY };
        assert_eq!(user_windows(&r, &[Core]), vec![w("idris", 3)]);
        assert_eq!(user_windows(&r, &[Gpu]), vec![w("tgcc", 10)]);
        assert_eq!(user_windows(&r, &[Core, Gpu]), vec![w("idris", 3), w("tgcc", 10)]);
        assert_eq!(user_windows(&r, &[Bill]), vec![]);
    }
}
