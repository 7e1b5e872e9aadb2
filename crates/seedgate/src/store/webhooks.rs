//! Webhook deliveries: rows enqueued in the transaction that ends a task, then leased and
//! retried by the notifier until delivered or out of attempts.

use super::TaskState;
use crate::ids::{AccountId, TaskId};

/// One delivery to attempt.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: i64,
    pub task_id: TaskId,
    pub account_id: AccountId,
    pub url: String,
    pub event: String,
    pub attempts: i64,
}

/// A delivery as tests and operators inspect it.
#[derive(Clone, Debug)]
pub struct DeliveryRecord {
    pub url: String,
    pub event: String,
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

/// The event name of a terminal state (the `Seedgate-Event` header).
pub fn event_for(state: TaskState) -> &'static str {
    match state {
        TaskState::Succeeded => "task.completed",
        TaskState::Cancelled => "task.cancelled",
        TaskState::Expired => "task.expired",
        _ => "task.failed",
    }
}
