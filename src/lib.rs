//! allocwatch: reconciles compute-hour allocations granted to research projects against the
//! hours their jobs consume on Slurm centres, and tells people when usage drifts.
//!
//! Flow, one direction: [`sources`] → [`pull`] → [`store`] (the ledger) → [`reconcile`] →
//! [`cycle`] → [`sinks`] and [`alerts`]; every decision in between is made by the pure
//! [`domain`] core. See ARCHITECTURE.md (its dependency table is checked by
//! `tests/architecture.rs`).

pub mod alerts;
pub mod cli;
pub mod config;
pub mod cycle;
pub mod daemon;
pub mod domain;
pub mod links;
pub mod pull;
pub mod quality;
pub mod reconcile;
pub mod secret;
pub mod shutdown;
pub mod sinks;
pub mod sources;
pub mod store;
