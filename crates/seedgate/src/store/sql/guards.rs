//! The task states as SQL: the one place their names are written into statements.

use crate::lifecycle::{PublicStatus, TaskState, Transition, UpstreamPhase};
use crate::store::StoreError;

/// The condition that the row is where `transition` may start.
pub(in crate::store) fn guard(transition: Transition) -> String {
    states_sql(transition.from())
}

/// `state IN ('…', …)` for a set of states (our own names, so safe to write into SQL); one
/// state is written `state = '…'`, since SQLite uses a partial index only for a condition
/// written as the index's own (`tasks_waiting`'s is `state = 'queued'`): with `IN ('queued')`
/// every claim scanned the whole table, holding the one writer longer as the history grew.
pub(in crate::store) fn states_sql(states: &[TaskState]) -> String {
    match states {
        [state] => format!("state = '{}'", state.as_str()),
        _ => {
            let names: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
            format!("state IN ({})", names.join(", "))
        }
    }
}

/// The rows [`crate::lifecycle::public_status`] maps to `status` (a store test checks that
/// the two agree on every combination of state, doubt and upstream phase).
pub(in crate::store) fn public_status_condition(status: PublicStatus) -> &'static str {
    match status {
        PublicStatus::Pending => {
            "((state = 'queued' AND doubt_channel IS NULL) \
             OR (state = 'running' AND upstream_phase = 'queued'))"
        }
        PublicStatus::Processing => {
            "((state = 'queued' AND doubt_channel IS NOT NULL) OR state = 'submitting' \
             OR (state = 'running' AND (upstream_phase IS NULL OR upstream_phase <> 'queued')))"
        }
        PublicStatus::Completed => "state = 'succeeded'",
        PublicStatus::Failed => "state IN ('failed', 'cancelled', 'expired')",
    }
}

pub(super) fn task_state(name: &str) -> Result<TaskState, StoreError> {
    TaskState::from_name(name)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown task state {name}")))
}

pub(super) fn upstream_phase(name: &str) -> Result<UpstreamPhase, StoreError> {
    UpstreamPhase::from_name(name)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown upstream phase {name}")))
}

/// A write to a task this worker leases: `UPDATE tasks SET {set} WHERE id = {id} AND
/// lease_owner = {owner} AND` the row is in one of `from`. Of two workers racing, only the
/// lease holder's write lands, and never on a task that has moved on.
pub(super) fn leased_update(set: &str, id: &str, owner: &str, from: &[TaskState]) -> String {
    format!(
        "UPDATE tasks SET {set} WHERE id = {id} AND lease_owner = {owner} AND {}",
        states_sql(from)
    )
}

/// [`leased_update`] for a move of the state machine: the row is where `transition` may
/// start, and lands where it ends.
pub(super) fn transition_update(
    transition: Transition,
    set: &str,
    id: &str,
    owner: &str,
) -> String {
    leased_update(
        &format!("state = '{}', {set}", transition.to().as_str()),
        id,
        owner,
        transition.from(),
    )
}
