//! Tasks as the domain sees them: the state machine, the public status rule, and the records a
//! store reads and writes. No SQL dialect here; the statements are in `sql/`.

use super::StoreError;
use crate::ids::{AccountId, ChannelId, TaskId};

/// The engine's state machine (docs/tasks-and-errors.md#statuses). Only the engine moves a task forward, and terminal
/// states never change again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    Queued,
    Submitting,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Expired,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Submitting => "submitting",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::Expired => "expired",
        }
    }

    pub(super) fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "queued" => TaskState::Queued,
            "submitting" => TaskState::Submitting,
            "running" => TaskState::Running,
            "succeeded" => TaskState::Succeeded,
            "failed" => TaskState::Failed,
            "cancelled" => TaskState::Cancelled,
            "expired" => TaskState::Expired,
            other => return Err(StoreError::Corrupt(format!("unknown task state {other}"))),
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled | TaskState::Expired
        )
    }

    /// The state `transition` leads to from this one; None when it may not start here (so a
    /// terminal state never changes again).
    pub fn apply(self, transition: Transition) -> Option<TaskState> {
        transition.from().contains(&self).then(|| transition.to())
    }
}

/// States a worker holds under a lease: they count against a key's and a channel's places.
pub const IN_FLIGHT: &[TaskState] = &[TaskState::Submitting, TaskState::Running];

/// A move of the engine's state machine. The store writes each one as a single `UPDATE`
/// guarded by [`Transition::guard`], so of two workers racing, one wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// A worker takes a queued task to submit it.
    Claim,
    /// A local render starts, or an upstream accepted the submission.
    Start,
    /// Back to the queue after a transient failure.
    Requeue,
    /// Finished and charged.
    Succeed,
    /// Ended by the engine without charge: `Failed`, `Cancelled` (upstream) or `Expired`.
    EndUnpaid(Unpaid),
    /// Cancelled by its owner before anything started.
    CancelQueued,
}

/// How a task may end without charge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unpaid {
    Failed,
    Cancelled,
    Expired,
}

impl Transition {
    /// Where it may start.
    pub fn from(self) -> &'static [TaskState] {
        match self {
            Transition::Claim | Transition::CancelQueued => &[TaskState::Queued],
            Transition::Start => &[TaskState::Submitting],
            Transition::Requeue | Transition::Succeed | Transition::EndUnpaid(_) => IN_FLIGHT,
        }
    }

    /// Where it ends.
    pub fn to(self) -> TaskState {
        match self {
            Transition::Claim => TaskState::Submitting,
            Transition::Start => TaskState::Running,
            Transition::Requeue => TaskState::Queued,
            Transition::Succeed => TaskState::Succeeded,
            Transition::EndUnpaid(Unpaid::Failed) => TaskState::Failed,
            Transition::EndUnpaid(Unpaid::Cancelled) | Transition::CancelQueued => {
                TaskState::Cancelled
            }
            Transition::EndUnpaid(Unpaid::Expired) => TaskState::Expired,
        }
    }

    /// The SQL condition that the row is where this transition may start.
    pub fn guard(self) -> String {
        states_sql(self.from())
    }
}

/// `state IN ('…', …)` for a set of states (our own names, so safe to write into SQL).
pub(super) fn states_sql(states: &[TaskState]) -> String {
    let names: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
    format!("state IN ({})", names.join(", "))
}

/// The upstream's own phase of a submitted task, as last seen by a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpstreamPhase {
    /// Waiting at the upstream: it can still be withdrawn there.
    Queued,
    Running,
    /// Finished upstream; its result is being copied here.
    Succeeded,
}

impl UpstreamPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamPhase::Queued => "queued",
            UpstreamPhase::Running => "running",
            UpstreamPhase::Succeeded => "succeeded",
        }
    }

    pub(super) fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "queued" => UpstreamPhase::Queued,
            "running" => UpstreamPhase::Running,
            "succeeded" => UpstreamPhase::Succeeded,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown upstream phase {other}"
                )))
            }
        })
    }
}

/// What clients see of a task, by one rule (docs/tasks-and-errors.md#statuses): `pending` exactly when a cancel now
/// succeeds — queued here with no submission in doubt, or still queued at the upstream — and
/// `processing` when it is being generated (or may be, while a submission is in doubt).
pub fn public_status(
    state: TaskState,
    in_doubt: bool,
    upstream: Option<UpstreamPhase>,
) -> PublicStatus {
    match state {
        TaskState::Queued if !in_doubt => PublicStatus::Pending,
        TaskState::Queued | TaskState::Submitting => PublicStatus::Processing,
        TaskState::Running if upstream == Some(UpstreamPhase::Queued) => PublicStatus::Pending,
        TaskState::Running => PublicStatus::Processing,
        TaskState::Succeeded => PublicStatus::Completed,
        TaskState::Failed | TaskState::Cancelled | TaskState::Expired => PublicStatus::Failed,
    }
}

/// The four statuses clients see (docs/tasks-and-errors.md); a cancelled or expired task is
/// `failed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PublicStatus {
    Pending,
    Processing,
    Completed,
    Failed,
}

impl PublicStatus {
    pub const ALL: [PublicStatus; 4] = [
        PublicStatus::Pending,
        PublicStatus::Processing,
        PublicStatus::Completed,
        PublicStatus::Failed,
    ];

    /// The wire name (the serde name; a store test holds the two together).
    pub fn as_str(self) -> &'static str {
        match self {
            PublicStatus::Pending => "pending",
            PublicStatus::Processing => "processing",
            PublicStatus::Completed => "completed",
            PublicStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// The rows [`public_status`] maps to this status, as SQL (a store test checks that the
    /// two agree on every combination of state, doubt and upstream phase).
    pub(super) fn sql_condition(self) -> &'static str {
        match self {
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
}

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

/// A task row as stored.
#[derive(Clone, Debug)]
pub struct TaskRecord {
    pub id: TaskId,
    pub account_id: AccountId,
    pub model: String,
    pub operation: String,
    pub provider: String,
    pub state: TaskState,
    pub request_json: String,
    pub reserved_usd_micros: i64,
    pub estimated_tokens: i64,
    pub usage_tokens: Option<i64>,
    pub cost_usd_micros: Option<i64>,
    pub cost_cny: Option<String>,
    pub result_json: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub attempts: i64,
    pub channel: Option<ChannelId>,
    pub upstream_id: Option<String>,
    pub polls: i64,
    pub deadline_at_ms: Option<i64>,
    pub submit_started_at_ms: Option<i64>,
    /// A submission whose outcome was never seen: the channel it went to and when it began.
    pub doubt: Option<(ChannelId, i64)>,
    pub upstream_phase: Option<UpstreamPhase>,
    /// When the upstream itself expires the task (what we sent as `execution_expires_after`).
    pub upstream_expires_at_ms: Option<i64>,
    /// The usage the upstream reported, kept even when its result never arrived here.
    pub upstream_usage_tokens: Option<i64>,
    pub result_copy_failures: i64,
    /// When the sweeper deleted the task's files, once their retention had passed.
    pub files_swept_at_ms: Option<i64>,
    /// Set by [`super::TaskStore::claim_task`] (not stored): the claim took the task over from a holder
    /// whose lease ran out, so its last step may have half happened.
    pub reclaimed: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub completed_at_ms: Option<i64>,
    pub request_id: Option<String>,
}

impl TaskRecord {
    pub fn public_status(&self) -> PublicStatus {
        public_status(self.state, self.doubt.is_some(), self.upstream_phase)
    }
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
    pub offset: i64,
    pub limit: i64,
}

/// The outcome of a settlement the engine hands to [`super::TaskStore::finish_succeeded`].
pub struct Settlement<'a> {
    pub result_json: &'a str,
    pub usage_tokens: i64,
    pub cost_usd_micros: i64,
    pub cost_cny: &'a str,
    /// What the upstream itself reported (None for local renders).
    pub upstream_usage_tokens: Option<i64>,
}

/// Why a task ends uncharged, and what the upstream reported if it finished anyway.
pub struct TaskFailure<'a> {
    pub code: &'a str,
    pub message: &'a str,
    pub upstream_usage_tokens: Option<i64>,
}

/// An upstream task that is now this task's, as [`super::TaskStore::record_submission`] records it.
pub struct UpstreamSubmission<'a> {
    pub channel: &'a ChannelId,
    pub upstream_id: &'a str,
    pub next_poll_at_ms: i64,
    pub upstream_expires_at_ms: i64,
}

/// A polled task still under way upstream, and when to look again.
#[derive(Clone, Debug)]
pub struct ScheduledPoll {
    pub id: TaskId,
    pub next_poll_at_ms: i64,
    /// The phase the poll saw, when it differs from the one recorded.
    pub phase: Option<UpstreamPhase>,
}

/// What a poll of an upstream task saw, recorded with its next poll.
#[derive(Default)]
pub struct PollSeen {
    pub phase: Option<UpstreamPhase>,
    pub usage_tokens: Option<i64>,
    /// The upstream finished but its result could not be copied here this time.
    pub result_copy_failed: bool,
}
