//! The task's state machine, the public status rule, and the task as the lifecycle reads it.

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
    pub const ALL: [TaskState; 7] = [
        TaskState::Queued,
        TaskState::Submitting,
        TaskState::Running,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Cancelled,
        TaskState::Expired,
    ];

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

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == name)
    }

    pub fn is_terminal(self) -> bool {
        !OPEN.contains(&self)
    }

    /// The state `transition` leads to from this one; None when it may not start here (so a
    /// terminal state never changes again).
    pub fn apply(self, transition: Transition) -> Option<TaskState> {
        transition.from().contains(&self).then(|| transition.to())
    }
}

/// States a task has not ended in.
pub const OPEN: &[TaskState] = &[TaskState::Queued, TaskState::Submitting, TaskState::Running];

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

    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Queued, Self::Running, Self::Succeeded]
            .into_iter()
            .find(|phase| phase.as_str() == name)
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
    /// The compute time the vendor reported billing (fal, Replicate), once it finished.
    pub upstream_compute_ms: Option<i64>,
    /// The money the vendor reported charging (OpenRouter), once it finished.
    pub upstream_cost_usd_micros: Option<i64>,
    pub result_copy_failures: i64,
    /// When the sweeper deleted the task's files, once their retention had passed.
    pub files_swept_at_ms: Option<i64>,
    /// Set by `TaskStore::claim_task` (not stored): the claim took the task over from a holder
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
