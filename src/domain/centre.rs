//! A computing centre as the domain sees it: its zone (local days are booked in it), its Slurm
//! clusters, and its billing rules — which partitions charge which resource, in which unit.

use super::hours::{HoursKind, ResourceHours};
use super::job::UnitSeconds;
use jiff::tz::TimeZone;
use serde::Serialize;

/// How a partition is charged: which allocated unit counts, per hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChargeUnit {
    /// AllocCPUS / `cpu=`: core-hours.
    Cpu,
    /// `gres/gpu`: GPU-hours.
    Gpu,
    /// Slurm's `billing` TRES (TRESBillingWeights).
    Billing,
    /// Whole nodes: AllocNodes × cores per node (core-hours).
    Node,
}

impl ChargeUnit {
    /// The unit-seconds of this unit in an aggregate.
    pub(crate) fn seconds_of(self, us: &UnitSeconds) -> i64 {
        match self {
            ChargeUnit::Cpu => us.cpu,
            ChargeUnit::Gpu => us.gpu,
            ChargeUnit::Billing => us.billing,
            ChargeUnit::Node => us.node,
        }
    }

    /// The kind of hours this unit charges.
    pub fn kind(self) -> HoursKind {
        match self {
            ChargeUnit::Cpu | ChargeUnit::Node => HoursKind::CoreHours,
            ChargeUnit::Gpu => HoursKind::GpuHours,
            ChargeUnit::Billing => HoursKind::BillingHours,
        }
    }
}

/// How usage on some partitions of a centre is charged to a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct BillingRule {
    /// Resource charged (`cpu-skylake`, `gpu-a100`…).
    pub resource: String,
    /// Partitions covered.
    pub partitions: Vec<String>,
    /// Restrict to one cluster of the centre (partition names may repeat across clusters).
    pub cluster: Option<String>,
    /// Unit charged.
    pub unit: ChargeUnit,
    /// Multiplier applied to unit-hours.
    pub multiplier: f64,
    /// Cores per node, for `unit = "node"` (charged hours are core-hours).
    pub cores_per_node: u64,
}

impl BillingRule {
    /// Charged hours for the given unit-seconds, as a number of hours of this rule's kind
    /// (`unit.kind()`).
    pub fn hours(&self, us: &UnitSeconds) -> f64 {
        let secs = self.unit.seconds_of(us) as f64;
        let per = if self.unit == ChargeUnit::Node { self.cores_per_node as f64 } else { 1.0 };
        secs * per * self.multiplier / 3600.0
    }

    /// Charged hours for the given unit-seconds, with their kind.
    pub fn charged(&self, us: &UnitSeconds) -> ResourceHours {
        ResourceHours::new(self.unit.kind(), self.hours(us))
    }
}

/// Core-hours of unit-seconds that no billing rule maps (unmapped partitions are reported in
/// core-hours).
pub fn unmapped_core_hours(us: &UnitSeconds) -> f64 {
    us.cpu as f64 / 3600.0
}

/// A computing centre.
#[derive(Debug, Clone)]
pub struct Centre {
    /// Identifier used everywhere (`idris`, `tgcc`…).
    pub id: String,
    /// Zone of the centre: local days are booked in it and sacct civil times read in it.
    pub tz: TimeZone,
    /// Zone name as configured.
    pub tz_name: String,
    /// Slurm clusters of the centre; the first is the default for data that names none.
    pub clusters: Vec<String>,
    /// Billing rules: which partitions map to which resource and how they are charged.
    pub rules: Vec<BillingRule>,
}

impl Centre {
    /// The index of the billing rule for a partition of a cluster, if any.
    pub(crate) fn rule_index(&self, cluster: &str, partition: &str) -> Option<usize> {
        self.rules.iter().position(|r| {
            r.partitions.iter().any(|p| p == partition) && r.cluster.as_deref().is_none_or(|c| c == cluster)
        })
    }

    /// The billing rule for a partition of a cluster, if any.
    pub fn rule_for(&self, cluster: &str, partition: &str) -> Option<&BillingRule> {
        self.rule_index(cluster, partition).map(|i| &self.rules[i])
    }

    /// The kind of hours a resource of this centre is charged in (every rule of a resource
    /// charges the same kind: the configuration refuses anything else).
    pub(crate) fn kind_of(&self, resource: &str) -> Option<HoursKind> {
        self.rules.iter().find(|r| r.resource == resource).map(|r| r.unit.kind())
    }
}
