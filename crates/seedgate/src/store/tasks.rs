//! What the task store takes besides the lifecycle's own types: new tasks, idempotency keys,
//! list filters, and the lease a move is applied under. No SQL dialect here; the statements
//! are in `sql/`.

use crate::ids::{AccountId, TaskId};
pub use crate::lifecycle::{
    public_status, PollSeen, PublicStatus, ScheduledPoll, Settlement, TaskFailure, TaskRecord,
    TaskState, Transition, Unpaid, UpstreamPhase, UpstreamSubmission, IN_FLIGHT,
};

/// Everything needed to insert a task and reserve its estimated cost in one transaction.
pub struct NewTask {
    pub id: TaskId,
    pub account_id: AccountId,
    pub model: String,
    pub operation: String,
    pub provider: String,
    pub job_json: String,
    /// The small public echo of the request (`request` in the task object).
    pub request_json: String,
    pub reserved_usd_micros: i64,
    pub estimated_tokens: i64,
    /// After this the task is `expired` (and costs nothing) if it has not finished.
    pub deadline_at_ms: i64,
    /// Where to POST the task when it ends.
    pub callback_url: Option<String>,
    /// The request that created it, for the log lines of its work.
    pub request_id: Option<String>,
    /// No worker starts it before this; `None` is at once.
    pub not_before_ms: Option<i64>,
}

/// A queued sandbox task's record with `state`, for tests of what reads records.
#[cfg(test)]
pub(crate) fn sample_task(id: &str, state: TaskState) -> TaskRecord {
    let task = NewTask {
        id: TaskId::new(id),
        account_id: AccountId::new("key_1"),
        model: "seedance-2.0".into(),
        operation: "text-to-video".into(),
        provider: "sandbox".into(),
        job_json: "{}".into(),
        request_json: "{}".into(),
        reserved_usd_micros: 1,
        estimated_tokens: 1,
        deadline_at_ms: i64::MAX,
        callback_url: None,
        request_id: None,
        not_before_ms: None,
    };
    TaskRecord {
        state,
        ..task.queued(0)
    }
}

impl NewTask {
    /// The row this task is stored as, created at `now_ms`: queued, untried, nothing spent.
    pub fn queued(&self, now_ms: i64) -> TaskRecord {
        TaskRecord {
            id: self.id.clone(),
            account_id: self.account_id.clone(),
            model: self.model.clone(),
            operation: self.operation.clone(),
            provider: self.provider.clone(),
            state: TaskState::Queued,
            request_json: self.request_json.clone(),
            reserved_usd_micros: self.reserved_usd_micros,
            estimated_tokens: self.estimated_tokens,
            usage_tokens: None,
            cost_usd_micros: None,
            cost_cny: None,
            result_json: None,
            error_code: None,
            error_message: None,
            attempts: 0,
            channel: None,
            upstream_id: None,
            polls: 0,
            deadline_at_ms: Some(self.deadline_at_ms),
            submit_started_at_ms: None,
            doubt: None,
            upstream_phase: None,
            upstream_expires_at_ms: None,
            upstream_usage_tokens: None,
            upstream_compute_ms: None,
            upstream_cost_usd_micros: None,
            result_copy_failures: 0,
            files_swept_at_ms: None,
            reclaimed: false,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            completed_at_ms: None,
            request_id: self.request_id.clone(),
        }
    }
}

/// How long an idempotency key holds.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// A client's `Idempotency-Key` and the hash of the request it came with.
pub struct IdempotencyKey<'a> {
    pub key: &'a str,
    pub request_hash: &'a [u8],
}

/// A created task, or the original one when the request was a repeat.
pub struct Created {
    pub task: TaskRecord,
    pub replayed: bool,
}

/// Which of an account's tasks a list shows: `/v1` pages by cursor (`after`, the id of the
/// last task of the previous page), the Ark surface by `offset`.
#[derive(Default)]
pub struct TaskFilter<'a> {
    pub status: Option<PublicStatus>,
    pub state: Option<TaskState>,
    pub model: Option<&'a str>,
    /// Only these ids (none: all).
    pub ids: &'a [TaskId],
    pub after: Option<&'a TaskId>,
    /// Only tasks changed after this time (Unix milliseconds).
    pub updated_after_ms: Option<i64>,
    pub offset: i64,
    pub limit: i64,
}

/// The worker holding a task: a move is applied only while its lease is still this one.
#[derive(Clone, Copy)]
pub struct Lease<'a> {
    pub task_id: &'a TaskId,
    pub owner: &'a str,
}
