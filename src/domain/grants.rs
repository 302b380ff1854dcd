//! What the allocator granted: allocations (hours on one resource of one centre for a period)
//! and their dated adjustments (top-ups, withdrawals, transfers).

use jiff::civil::Date;
use serde::{Deserialize, Serialize};

/// Hours granted to a project on one resource of one centre for a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Allocation {
    /// Allocator's project id (e.g. `A0150612345`).
    pub project: String,
    /// Centre id from the configuration.
    pub centre: String,
    /// Resource, as named by the centre's billing rules.
    pub resource: String,
    /// First day of the period (centre-local).
    pub period_start: Date,
    /// Day after the last day of the period (exclusive).
    pub period_end: Date,
    /// Initial grant, hours.
    pub granted_hours: f64,
    /// Centre-side account names the project runs under (lower-cased).
    pub accounts: Vec<String>,
    /// Principal investigator's e-mail.
    pub pi: String,
    /// Members' e-mails.
    pub members: Vec<String>,
    /// Committee (thematic panel) that granted it.
    pub committee: String,
    /// Named expected-consumption profile (linear when absent).
    pub profile: Option<String>,
    /// Where it was declared (`file:line`).
    pub origin: String,
}

impl Allocation {
    /// The allocation's identity in alerts and reports: `centre/project/resource/period_start`
    /// (a new period of the same project is a new subject: its thresholds re-arm).
    pub fn subject(&self) -> String {
        format!("{}/{}/{}/{}", self.centre, self.project, self.resource, self.period_start)
    }
}

/// Kind of a dated change to a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AdjustmentKind {
    /// Extra hours (positive).
    Topup,
    /// Hours taken back (negative).
    Withdrawal,
    /// Hours moved from or to another allocation (either sign).
    Transfer,
}

impl AdjustmentKind {
    /// Stable name (`topup`, `withdrawal`, `transfer`).
    pub fn as_str(self) -> &'static str {
        match self {
            AdjustmentKind::Topup => "topup",
            AdjustmentKind::Withdrawal => "withdrawal",
            AdjustmentKind::Transfer => "transfer",
        }
    }
}

/// A dated change to an allocation's grant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Adjustment {
    /// Date from which it applies (centre-local midnight).
    pub date: Date,
    /// Project id.
    pub project: String,
    /// Centre id.
    pub centre: String,
    /// Resource.
    pub resource: String,
    /// Signed hours.
    pub hours: f64,
    /// Kind.
    pub kind: AdjustmentKind,
    /// Why (free text, never used as a tag).
    pub reason: String,
    /// Index of the allocation it applies to in [`Grants::allocations`].
    pub allocation: usize,
    /// Where it was declared.
    pub origin: String,
}

/// Allocations and the adjustments that apply to each.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// All allocations.
    pub allocations: Vec<Allocation>,
    /// All adjustments, in file order.
    pub adjustments: Vec<Adjustment>,
}

impl Grants {
    /// Granted hours of allocation `idx` on local date `day` (initial + adjustments dated ≤ day).
    pub(crate) fn granted_on(&self, idx: usize, day: Date) -> f64 {
        let a = &self.allocations[idx];
        a.granted_hours
            + self.adjustments.iter().filter(|x| x.allocation == idx && x.date <= day).map(|x| x.hours).sum::<f64>()
    }
}
