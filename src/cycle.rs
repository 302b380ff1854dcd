//! One reconciliation cycle: reconcile every allocation at an instant, then record the cycle
//! and everything it owes downstream (indicator points, alert notifications) in a single
//! store transaction. Delivery happens later, from those durable outboxes.

use crate::alerts::{Alerting, EvalSummary};
use crate::allocations::Grants;
use crate::config::Config;
use crate::engine::{reconcile_all, Reconciliation};
use crate::ledger::{sq, Store, StoreError};
use rusqlite::params;

/// What a cycle produced.
#[derive(Debug, Clone)]
pub struct CycleOutcome {
    /// Row id of the cycle in the store.
    pub id: i64,
    /// The reconciliation.
    pub reconciliation: Reconciliation,
    /// What alert evaluation did, when alerts are configured.
    pub alerts: Option<EvalSummary>,
}

/// Reconcile at `at` (epoch seconds) and record the cycle, with the alerts it raises and the
/// messages they owe. `trigger` says why it ran (`check`, `schedule`…).
pub fn run_cycle(
    config: &Config,
    grants: &Grants,
    store: &mut Store,
    at: i64,
    trigger: &str,
    alerting: Option<&Alerting>,
) -> Result<CycleOutcome, StoreError> {
    let rec = reconcile_all(config, grants, store, at)?;
    let path = store.path().to_path_buf();
    let started = jiff::Timestamp::now().as_second();
    let (id, indicators, alerts) = store.with_transaction(|tx| {
        tx.execute(
            "INSERT INTO cycles (at, started_at, allocations, trigger) VALUES (?1, ?2, ?3, ?4)",
            params![at, started, rec.allocations.len() as i64, trigger],
        )
        .map_err(sq(&path))?;
        let id = tx.last_insert_rowid();
        // Sinks and notifiers enqueue here, in this same transaction.
        let indicators = crate::sinks::record_cycle(tx, config, id, &rec, started)?;
        let alerts = match alerting {
            Some(a) => Some(
                a.evaluate_in_tx(tx, config, grants, &rec, id, started)
                    .map_err(|message| StoreError::Cycle { path: path.display().to_string(), message })?,
            ),
            None => None,
        };
        Ok((id, indicators, alerts))
    })?;
    crate::metrics::observe_cycle(&rec, &indicators, started);
    Ok(CycleOutcome { id, reconciliation: rec, alerts })
}
