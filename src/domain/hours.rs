//! Hours of compute, typed by kind. Core-hours, GPU-hours and billing-weighted hours are
//! different quantities: [`Hours`] of two kinds do not add (it does not compile), an amount
//! whose kind is only known at run time is a [`ResourceHours`] (which has no `+` at all), and a
//! total over several resources is an [`HoursByKind`] — one sum per kind.

use serde::Serialize;
use std::marker::PhantomData;
use std::ops::{Add, AddAssign, Sub, SubAssign};

/// The kinds of hours allocwatch charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum HoursKind {
    /// CPU core-hours (`cpu` rules, and `node` rules: nodes × cores per node).
    #[serde(rename = "core-hours")]
    CoreHours,
    /// GPU-hours (`gpu` rules).
    #[serde(rename = "GPU-hours")]
    GpuHours,
    /// Slurm's billing-weighted hours (`billing` rules: TRESBillingWeights).
    #[serde(rename = "billing-hours")]
    BillingHours,
}

impl HoursKind {
    /// Every kind, in report order.
    pub(crate) const ALL: [HoursKind; 3] = [HoursKind::CoreHours, HoursKind::GpuHours, HoursKind::BillingHours];

    /// The unit as printed (`core-hours`, `GPU-hours`, `billing-hours`).
    pub fn as_str(self) -> &'static str {
        match self {
            HoursKind::CoreHours => "core-hours",
            HoursKind::GpuHours => "GPU-hours",
            HoursKind::BillingHours => "billing-hours",
        }
    }

    /// A short identifier for keys and indicator names (`core`, `gpu`, `billing`).
    pub fn id(self) -> &'static str {
        match self {
            HoursKind::CoreHours => "core",
            HoursKind::GpuHours => "gpu",
            HoursKind::BillingHours => "billing",
        }
    }
}

/// A kind of hours known at compile time.
pub trait Kind: Copy + Default + std::fmt::Debug + PartialEq + PartialOrd + 'static {
    /// Which kind.
    const KIND: HoursKind;
}

/// Marker of core-hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct Core;
/// Marker of GPU-hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct Gpu;
/// Marker of billing-weighted hours.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct Billing;

impl Kind for Core {
    const KIND: HoursKind = HoursKind::CoreHours;
}
impl Kind for Gpu {
    const KIND: HoursKind = HoursKind::GpuHours;
}
impl Kind for Billing {
    const KIND: HoursKind = HoursKind::BillingHours;
}

/// An amount of hours of kind `K`: adds and subtracts only with hours of the same kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct Hours<K: Kind> {
    value: f64,
    kind: PhantomData<K>,
}

impl<K: Kind> Hours<K> {
    /// `value` hours of this kind.
    pub fn new(value: f64) -> Hours<K> {
        Hours { value, kind: PhantomData }
    }
    /// The number of hours.
    pub fn value(self) -> f64 {
        self.value
    }
}

impl<K: Kind> Add for Hours<K> {
    type Output = Hours<K>;
    fn add(self, o: Hours<K>) -> Hours<K> {
        Hours::new(self.value + o.value)
    }
}

impl<K: Kind> Sub for Hours<K> {
    type Output = Hours<K>;
    fn sub(self, o: Hours<K>) -> Hours<K> {
        Hours::new(self.value - o.value)
    }
}

impl<K: Kind> AddAssign for Hours<K> {
    fn add_assign(&mut self, o: Hours<K>) {
        self.value += o.value;
    }
}

impl<K: Kind> SubAssign for Hours<K> {
    fn sub_assign(&mut self, o: Hours<K>) {
        self.value -= o.value;
    }
}

impl<K: Kind> std::iter::Sum for Hours<K> {
    fn sum<I: Iterator<Item = Hours<K>>>(iter: I) -> Hours<K> {
        iter.fold(Hours::default(), |a, b| a + b)
    }
}

/// Hours of a resource, whose kind the billing rules decide at run time. Deliberately without
/// arithmetic: a figure of one allocation is computed in plain hours and wrapped here once;
/// totals over several resources go through [`HoursByKind`]. Serialised as the bare number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResourceHours {
    /// Core-hours.
    Core(Hours<Core>),
    /// GPU-hours.
    Gpu(Hours<Gpu>),
    /// Billing-weighted hours.
    Billing(Hours<Billing>),
}

impl ResourceHours {
    /// `value` hours of `kind`.
    pub fn new(kind: HoursKind, value: f64) -> ResourceHours {
        match kind {
            HoursKind::CoreHours => ResourceHours::Core(Hours::new(value)),
            HoursKind::GpuHours => ResourceHours::Gpu(Hours::new(value)),
            HoursKind::BillingHours => ResourceHours::Billing(Hours::new(value)),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> HoursKind {
        match self {
            ResourceHours::Core(_) => HoursKind::CoreHours,
            ResourceHours::Gpu(_) => HoursKind::GpuHours,
            ResourceHours::Billing(_) => HoursKind::BillingHours,
        }
    }

    /// The number of hours (for display, ratios and comparisons within one resource).
    pub fn value(&self) -> f64 {
        match self {
            ResourceHours::Core(h) => h.value(),
            ResourceHours::Gpu(h) => h.value(),
            ResourceHours::Billing(h) => h.value(),
        }
    }
}

impl Serialize for ResourceHours {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.value())
    }
}

/// A total over resources of possibly different kinds: one sum per kind, never one number.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct HoursByKind {
    /// Core-hours.
    pub core: Hours<Core>,
    /// GPU-hours.
    pub gpu: Hours<Gpu>,
    /// Billing-weighted hours.
    pub billing: Hours<Billing>,
}

impl HoursByKind {
    /// Add hours to the sum of their kind.
    pub fn add(&mut self, h: ResourceHours) {
        match h {
            ResourceHours::Core(x) => self.core += x,
            ResourceHours::Gpu(x) => self.gpu += x,
            ResourceHours::Billing(x) => self.billing += x,
        }
    }

    /// The sum of one kind.
    pub fn of(&self, kind: HoursKind) -> ResourceHours {
        match kind {
            HoursKind::CoreHours => ResourceHours::Core(self.core),
            HoursKind::GpuHours => ResourceHours::Gpu(self.gpu),
            HoursKind::BillingHours => ResourceHours::Billing(self.billing),
        }
    }
}

impl FromIterator<ResourceHours> for HoursByKind {
    fn from_iter<I: IntoIterator<Item = ResourceHours>>(iter: I) -> HoursByKind {
        let mut t = HoursByKind::default();
        for h in iter {
            t.add(h);
        }
        t
    }
}

/// Thousands-separated hours, no decimals above 100, one decimal below: how hours are printed
/// in tables and on the status page.
pub(crate) fn format_hours(h: f64) -> String {
    if !h.is_finite() {
        return "-".into();
    }
    let neg = h < 0.0;
    let a = h.abs();
    let s = if a >= 100.0 { format!("{:.0}", a) } else { format!("{:.1}", a) };
    let (int, frac) = s.split_once('.').map(|(i, f)| (i.to_string(), format!(".{f}"))).unwrap_or((s.clone(), String::new()));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{}{grouped}{frac}", if neg { "-" } else { "" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_kept_per_kind() {
        let t: HoursByKind = [
            ResourceHours::new(HoursKind::CoreHours, 10.0),
            ResourceHours::new(HoursKind::GpuHours, 2.0),
            ResourceHours::new(HoursKind::CoreHours, 5.0),
        ]
        .into_iter()
        .collect();
        assert_eq!(t.core.value(), 15.0);
        assert_eq!(t.gpu.value(), 2.0);
        assert_eq!(t.of(HoursKind::BillingHours).value(), 0.0);
        assert_eq!(Hours::<Gpu>::new(1.5) + Hours::new(2.0), Hours::new(3.5));
        assert_eq!(serde_json::to_string(&ResourceHours::new(HoursKind::GpuHours, 3.25)).unwrap(), "3.25");
    }

    #[test]
    fn hours_format() {
        assert_eq!(format_hours(1234567.4), "1,234,567");
        assert_eq!(format_hours(12.34), "12.3");
        assert_eq!(format_hours(-1500.0), "-1,500");
        assert_eq!(format_hours(100.0), "100");
    }
}
