//! allocwatch: reconciles compute-hour allocations granted to research projects against the
//! hours their jobs consume on Slurm centres, and reports drift.
//!
//! Flow, one direction: [`sources`] → [`ledger`] → [`reconcile`] → output. See ARCHITECTURE.md.

pub mod alerts;
pub mod allocations;
pub mod backfill;
pub mod civil;
pub mod cli_time;
pub mod config;
pub mod cycle;
pub mod daemon;
pub mod engine;
pub mod ledger;
pub mod metrics;
pub mod model;
pub mod pull;
pub mod quality;
pub mod reconcile;
pub mod report;
pub mod secret;
pub mod sinks;
pub mod sources;
pub mod workload;
