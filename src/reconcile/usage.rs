//! `usage`: the raw ledger apportioned to a window (the jobs overlapping it, from the store),
//! grouped by [`crate::domain::usage`].

use crate::config::Config;
use crate::domain::usage::{usage_rows, UsageBound, UsageGrouping, UsageRow};
use crate::store::{Store, StoreError};

/// Raw ledger usage apportioned to `[from, to)` (local dates of each centre or instants; open
/// ends allowed).
pub fn usage(
    config: &Config,
    store: &mut Store,
    centre_filter: Option<&str>,
    from: Option<UsageBound>,
    to: Option<UsageBound>,
    grouping: UsageGrouping,
) -> Result<Vec<UsageRow>, StoreError> {
    let mut out = Vec::new();
    for centre in config.centres.values() {
        if centre_filter.is_some_and(|c| c != centre.id) {
            continue;
        }
        let tz = &centre.tz;
        let from_s = from.map(|b| b.epoch_seconds(tz)).unwrap_or(i64::MIN / 4);
        let to_s = to.map(|b| b.epoch_seconds(tz)).unwrap_or(i64::MAX / 4);
        let jobs = store.jobs_overlapping(&centre.id, from_s, to_s)?;
        out.extend(usage_rows(centre, &jobs, from_s, to_s, grouping));
    }
    Ok(out)
}
