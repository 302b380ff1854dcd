//! One reconciliation cycle: reconcile every allocation at an instant, then record the cycle
//! and everything it owes downstream (indicator points, alert notifications) in a single
//! store transaction. Delivery happens later, from those durable outboxes. [`replay`] runs
//! the same rules over past instants without recording anything; [`digest`] queues the
//! researchers' weekly or monthly digests of a reconciliation, once per project and period.

pub(crate) mod digest;
pub(crate) mod replay;

use crate::alerts::{Alerting, EvalSummary};
use crate::config::Config;
use crate::domain::centre::Centre;
use crate::domain::grants::Grants;
use crate::domain::reconciliation::Reconciliation;
use crate::reconcile::Reconciler;
use crate::sinks::CycleRecord;
use crate::store::{Store, StoreError};

/// What a cycle produced.
#[derive(Debug, Clone)]
pub struct CycleOutcome {
    /// Row id of the cycle in the store.
    pub id: i64,
    /// The reconciliation.
    pub reconciliation: Reconciliation,
    /// What the cycle owed the indicator sink, and the feeds' activity it accounted for.
    pub indicators: CycleRecord,
    /// What alert evaluation did, when alerts are configured.
    pub alerts: Option<EvalSummary>,
    /// Wall clock when it was recorded, epoch seconds.
    pub recorded_at: i64,
}

/// Reconcile at `at` (epoch seconds) with `reconciler` (which keeps what it read of the ledger
/// for the next cycle) and record the cycle, with the alerts it raises and the messages they
/// owe. `trigger` says why it ran (`check`, `schedule`…).
pub fn run_cycle(
    reconciler: &mut Reconciler,
    config: &Config,
    grants: &Grants,
    store: &mut Store,
    at: i64,
    trigger: &str,
    alerting: Option<&Alerting>,
) -> Result<CycleOutcome, StoreError> {
    let rec = reconciler.reconcile(config, grants, store, at)?;
    let started = jiff::Timestamp::now().as_second();
    let centres: Vec<&Centre> = config.centres.values().map(|c| &c.centre).collect();
    let (id, indicators, alerts) = store.transaction(|tx| {
        let id = tx.insert_cycle(at, started, rec.allocations.len(), trigger)?;
        // Sinks and notifiers enqueue here, in this same transaction.
        let indicators = crate::sinks::record_cycle(tx, config.influxdb.as_ref(), id, &rec, started)?;
        let alerts = match alerting {
            Some(a) => Some(a.evaluate_in_tx(tx, &centres, grants, &rec, id, started)?),
            None => None,
        };
        Ok::<_, StoreError>((id, indicators, alerts))
    })?;
    Ok(CycleOutcome { id, reconciliation: rec, indicators, alerts, recorded_at: started })
}
