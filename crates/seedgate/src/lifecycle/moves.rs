//! What a decision asks the store to do to a task, and the plans those moves carry.

use super::upstream::VendorUsage;
use crate::ids::{ChannelId, TaskId};

use super::states::{Transition, Unpaid, UpstreamPhase};

/// One guarded write that moves a leased task on. The store applies it only while the worker
/// still holds the task's lease, so of two workers racing, one wins.
#[derive(Clone, Debug, PartialEq)]
pub enum Move {
    /// Back to the queue, to be tried again after `delay_ms`. `counts_attempt` false gives the
    /// attempt back (waiting for capacity is not a failure). `doubt` names the channel and
    /// start of a submission whose outcome was never seen.
    Requeue {
        delay_ms: i64,
        counts_attempt: bool,
        doubt: Option<(ChannelId, i64)>,
        cause: String,
    },
    /// A local render starts.
    Start,
    /// An upstream task is now this task's (accepted, or adopted after a lost answer).
    RecordSubmission {
        channel: ChannelId,
        upstream_id: String,
        /// The vendor holding it, from now on the task's provider.
        vendor: String,
        next_poll_at_ms: i64,
        upstream_expires_at_ms: i64,
    },
    /// Released until its next poll, with what the poll saw.
    SchedulePoll { at_ms: i64, seen: PollSeen },
    /// Succeeded: charge the real cost and release the reservation.
    Succeed {
        result_json: String,
        usage_tokens: i64,
        cost_usd_micros: i64,
        cost_cny: String,
        /// What the vendor reported (nothing for a local render).
        upstream: VendorUsage,
    },
    /// Ended without charge, the whole reservation released.
    EndUnpaid {
        ending: Unpaid,
        code: String,
        message: String,
        upstream_usage_tokens: Option<i64>,
    },
}

impl Move {
    pub fn fail(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::EndUnpaid {
            ending: Unpaid::Failed,
            code: code.into(),
            message: message.into(),
            upstream_usage_tokens: None,
        }
    }

    pub fn expire(message: &str) -> Self {
        Self::EndUnpaid {
            ending: Unpaid::Expired,
            code: "task_expired".into(),
            message: message.into(),
            upstream_usage_tokens: None,
        }
    }

    /// The ending this move makes, if it ends the task.
    pub fn ending(&self) -> Option<Transition> {
        match self {
            Move::Succeed { .. } => Some(Transition::Succeed),
            Move::EndUnpaid { ending, .. } => Some(Transition::EndUnpaid(*ending)),
            _ => None,
        }
    }
}

/// The outcome of a settlement the engine hands to `TaskStore::finish_succeeded`.
pub struct Settlement<'a> {
    pub result_json: &'a str,
    pub usage_tokens: i64,
    pub cost_usd_micros: i64,
    pub cost_cny: &'a str,
    /// What the vendor itself reported (nothing for local renders).
    pub upstream: VendorUsage,
}

/// Why a task ends uncharged, and what the upstream reported if it finished anyway.
pub struct TaskFailure<'a> {
    pub code: &'a str,
    pub message: &'a str,
    pub upstream_usage_tokens: Option<i64>,
}

/// An upstream task that is now this task's, as `TaskStore::record_submission` records it.
pub struct UpstreamSubmission<'a> {
    pub channel: &'a ChannelId,
    pub upstream_id: &'a str,
    pub vendor: &'a str,
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
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PollSeen {
    pub phase: Option<UpstreamPhase>,
    pub usage_tokens: Option<i64>,
    /// The upstream finished but its result could not be copied here this time.
    pub result_copy_failed: bool,
}
