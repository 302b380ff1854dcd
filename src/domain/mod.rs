//! The domain core: pure functions and types, no I/O and no clock (every instant is an
//! argument). Table-tested. Everything allocwatch decides is decided here, once:
//!
//! - [`time`]: local days and instants, read and printed one way ([`civil`]: the fast path);
//! - [`job`]: job records and the exact proration of their unit-seconds over days;
//! - [`hours`]: hours typed by kind (core-hours and GPU-hours never add);
//! - [`centre`]: a centre and its billing rules; [`grants`]: allocations and adjustments;
//! - [`charge`]: which allocation a day of usage charges — the charging rule;
//! - [`reconcile`]: indicators, pace and status of an allocation; [`reconciliation`]: the
//!   typed result of a reconciliation and its assembly from charged buckets;
//! - [`forecast`]: the band of an allocation's exhaustion and end-of-period consumption;
//!   [`calibration`]: how well the bands held, measured on a replay;
//! - [`usage`], [`burndown`]: the other views of charged usage; [`balance`]: what a project
//!   has left of one kind of hours, per user, for Open OnDemand;
//! - [`rules`] and [`lifecycle`]: which alerts hold, fire, remind and resolve;
//! - [`quality`]: the quality indicators of a period; [`retry`]: backoff with jitter;
//!   [`fxhash`]: the deterministic hasher of the hot maps; [`errors`]: how an error is told.

pub mod balance;
pub mod burndown;
pub mod calibration;
pub mod centre;
pub mod charge;
pub mod civil;
pub mod errors;
pub mod forecast;
pub mod fxhash;
pub mod grants;
pub mod hours;
pub mod job;
pub mod lifecycle;
pub mod quality;
pub mod reconcile;
pub mod reconciliation;
pub mod retry;
pub mod rules;
pub mod time;
pub mod usage;
