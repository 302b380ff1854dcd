//! Charging: which allocation the usage of a (cluster, account, partition) on a local day of a
//! centre charges — or why it charges none (an *orphan*: the partition is mapped but no active
//! allocation of that resource lists the account; *unmapped*: no billing rule maps the
//! partition). This is the one place the decision is made: reconciliation, `usage`, the
//! burn-down, the alert drivers and the quality report all call [`Charging`].

use super::centre::{BillingRule, Centre};
use super::grants::Grants;
use super::time::{day_number, DayNumber};
use std::collections::HashMap;

/// Where one day of a (cluster, account, partition)'s usage goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charge {
    /// Charged to allocation `allocation` (index into the grants) under billing rule `rule`
    /// (index into the centre's rules).
    Allocation {
        /// Allocation index.
        allocation: usize,
        /// Billing rule index.
        rule: usize,
    },
    /// A billing rule maps the partition, but no allocation of its resource whose period holds
    /// the day lists the account.
    Orphan {
        /// Billing rule index.
        rule: usize,
    },
    /// No billing rule maps the partition.
    Unmapped,
}

/// Allocations that may take a key's usage: (allocation, first day, day after the last).
type Candidates = Vec<(usize, DayNumber, DayNumber)>;

/// The day-independent part of charging a (cluster, account, partition): its billing rule and
/// the allocations that may take its usage. Cheap to keep per key; [`Placement::charge`] then
/// picks the allocation of a given day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    rule: Option<usize>,
    /// The allocations of the rule's resource that list the account, in file order.
    candidates: Candidates,
}

impl Placement {
    /// The billing rule, if one maps the partition.
    pub fn rule(&self) -> Option<usize> {
        self.rule
    }

    /// Where usage of local day `day` goes.
    pub fn charge(&self, day: DayNumber) -> Charge {
        let Some(rule) = self.rule else { return Charge::Unmapped };
        match self.candidates.iter().find(|(_, from, to)| *from <= day && day < *to) {
            Some(&(allocation, _, _)) => Charge::Allocation { allocation, rule },
            None => Charge::Orphan { rule },
        }
    }
}

/// The charging rules of one centre: its billing rules and its allocations by account.
#[derive(Debug)]
pub(crate) struct Charging<'a> {
    centre: &'a Centre,
    /// (account, resource) → allocations of this centre listing the account, in file order.
    by_account: HashMap<(&'a str, &'a str), Candidates>,
}

impl<'a> Charging<'a> {
    /// The charging rules of `centre` under `grants`.
    pub fn new(centre: &'a Centre, grants: &'a Grants) -> Charging<'a> {
        let mut by_account: HashMap<(&str, &str), Candidates> = HashMap::new();
        for (i, a) in grants.allocations.iter().enumerate().filter(|(_, a)| a.centre == centre.id) {
            let period = (day_number(a.period_start), day_number(a.period_end));
            for acc in &a.accounts {
                by_account.entry((acc.as_str(), a.resource.as_str())).or_default().push((i, period.0, period.1));
            }
        }
        Charging { centre, by_account }
    }

    /// The centre.
    pub fn centre(&self) -> &'a Centre {
        self.centre
    }

    /// The billing rule of a charge's `rule` index.
    pub fn rule(&self, rule: usize) -> &'a BillingRule {
        &self.centre.rules[rule]
    }

    /// Where the usage of a (cluster, account, partition) may go, whatever the day.
    pub fn place(&self, cluster: &str, account: &str, partition: &str) -> Placement {
        let rule = self.centre.rule_index(cluster, partition);
        let candidates = match rule {
            Some(r) => self.by_account.get(&(account, self.centre.rules[r].resource.as_str())).cloned().unwrap_or_default(),
            None => Vec::new(),
        };
        Placement { rule, candidates }
    }

    /// Where the usage of a (cluster, account, partition) on local day `day` goes.
    pub fn charge(&self, cluster: &str, account: &str, partition: &str, day: DayNumber) -> Charge {
        self.place(cluster, account, partition).charge(day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::centre::ChargeUnit;
    use crate::domain::grants::Allocation;
    use jiff::civil::Date;

    fn rule(resource: &str, partitions: &[&str], cluster: Option<&str>) -> BillingRule {
        BillingRule {
            resource: resource.into(),
            partitions: partitions.iter().map(|p| p.to_string()).collect(),
            cluster: cluster.map(str::to_string),
            unit: ChargeUnit::Cpu,
            multiplier: 1.0,
            cores_per_node: 1,
        }
    }

    fn alloc(project: &str, centre: &str, resource: &str, from: Date, to: Date, accounts: &[&str]) -> Allocation {
        Allocation {
            project: project.into(),
            centre: centre.into(),
            resource: resource.into(),
            period_start: from,
            period_end: to,
            granted_hours: 100.0,
            accounts: accounts.iter().map(|a| a.to_string()).collect(),
            pi: String::new(),
            members: Vec::new(),
            committee: String::new(),
            profile: None,
            origin: String::new(),
        }
    }

    #[test]
    fn charges_table() {
        let centre = Centre {
            id: "c".into(),
            tz: jiff::tz::TimeZone::UTC,
            tz_name: "UTC".into(),
            clusters: vec!["k1".into(), "k2".into()],
            rules: vec![rule("cpu", &["p"], None), rule("gpu", &["g"], Some("k2"))],
        };
        let d = Date::constant;
        let grants = Grants {
            allocations: vec![
                alloc("A", "c", "cpu", d(2026, 1, 1), d(2026, 7, 1), &["acc"]),
                alloc("B", "c", "cpu", d(2026, 7, 1), d(2027, 1, 1), &["acc"]),
                alloc("C", "c", "gpu", d(2026, 1, 1), d(2027, 1, 1), &["acc"]),
                alloc("D", "other", "cpu", d(2026, 1, 1), d(2027, 1, 1), &["acc"]),
            ],
            adjustments: Vec::new(),
        };
        let ch = Charging::new(&centre, &grants);
        let day = |y, m, dd| day_number(d(y, m, dd));
        // (case, cluster, account, partition, day, expected)
        let cases = [
            ("first period", "k1", "acc", "p", day(2026, 3, 1), Charge::Allocation { allocation: 0, rule: 0 }),
            ("last day of the first period", "k1", "acc", "p", day(2026, 6, 30), Charge::Allocation { allocation: 0, rule: 0 }),
            ("next period", "k1", "acc", "p", day(2026, 7, 1), Charge::Allocation { allocation: 1, rule: 0 }),
            ("before any period: orphan", "k1", "acc", "p", day(2025, 12, 31), Charge::Orphan { rule: 0 }),
            ("another account: orphan", "k1", "xyz", "p", day(2026, 3, 1), Charge::Orphan { rule: 0 }),
            ("GPU rule of cluster k2", "k2", "acc", "g", day(2026, 3, 1), Charge::Allocation { allocation: 2, rule: 1 }),
            ("GPU partition name on k1: unmapped", "k1", "acc", "g", day(2026, 3, 1), Charge::Unmapped),
            ("unknown partition: unmapped", "k1", "acc", "visu", day(2026, 3, 1), Charge::Unmapped),
        ];
        for (name, cl, acc, part, dd, want) in cases {
            assert_eq!(ch.charge(cl, acc, part, dd), want, "{name}");
        }
    }
}
