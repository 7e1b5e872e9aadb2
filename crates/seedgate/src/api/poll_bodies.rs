//! The answers to status polls, kept as sent while a task has not completed.
//!
//! A client polls its task every second or so until it ends, and until it completes the answer
//! is a function of the task's record alone (only a completed task's answer carries links,
//! signed for the asking host and the hour). The record comes from the store's task cache, which
//! hands out one shared record until a write replaces it, so an answer kept beside the record
//! it was made from is current exactly as long as the store still hands out that record. The
//! kept record cannot be freed meanwhile, so a new record is never taken for the old one.
//! Building and encoding the task object were 8 % of a poll's CPU time (BENCHMARKS.md, "The
//! poll trimmed").

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use serde::Serialize;

use super::view::to_bytes;
use crate::ids::TaskId;
use crate::store::TaskRecord;
use crate::task_view::renders_from_record_alone;

/// Tasks whose answers are kept; beyond this the least used are encoded again when polled.
const CAPACITY: u64 = 10_000;

/// An answer no one has asked for this long is dropped: polls come seconds apart.
const IDLE: Duration = Duration::from_secs(60);

pub struct PollBodies {
    answers: moka::sync::Cache<TaskId, (Arc<TaskRecord>, Bytes)>,
}

impl Default for PollBodies {
    fn default() -> Self {
        Self {
            answers: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_idle(IDLE)
                .build(),
        }
    }
}

impl PollBodies {
    /// The JSON answer for `task`: the kept one when it was made from this very record,
    /// otherwise `render`'s, kept unless the task has completed.
    pub fn answer<T: Serialize>(
        &self,
        task: &Arc<TaskRecord>,
        render: impl FnOnce() -> T,
    ) -> Bytes {
        if let Some((made_from, body)) = self.answers.get(&task.id) {
            if Arc::ptr_eq(&made_from, task) {
                return body;
            }
        }
        let body = to_bytes(&render());
        if renders_from_record_alone(task) {
            self.answers
                .insert(task.id.clone(), (Arc::clone(task), body.clone()));
        } else {
            self.answers.invalidate(&task.id);
        }
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{sample_task, TaskState};
    use serde_json::json;
    use std::cell::Cell;

    /// Answers `task` through `bodies`, counting the encodings in `encoded`.
    fn poll(bodies: &PollBodies, task: &Arc<TaskRecord>, encoded: &Cell<u32>) -> Bytes {
        bodies.answer(task, || {
            encoded.set(encoded.get() + 1);
            json!({"id": task.id.as_str(), "status": task.state.as_str()})
        })
    }

    #[test]
    fn a_record_is_encoded_once_until_the_store_hands_out_another() {
        let (bodies, encoded) = (PollBodies::default(), Cell::new(0));
        let queued = Arc::new(sample_task("task_1", TaskState::Queued));
        let first = poll(&bodies, &queued, &encoded);
        assert_eq!(poll(&bodies, &queued, &encoded), first);
        assert_eq!(encoded.get(), 1, "the second poll sent the kept answer");

        let running = Arc::new(TaskRecord {
            state: TaskState::Running,
            ..(*queued).clone()
        });
        let after = poll(&bodies, &running, &encoded);
        assert_eq!(encoded.get(), 2, "a new record is encoded again");
        assert_eq!(&after[..], br#"{"id":"task_1","status":"running"}"#);

        // The same content read again (a replica's cache entry expired) is encoded again:
        // only the very record an answer was made from vouches for it.
        poll(&bodies, &Arc::new((*running).clone()), &encoded);
        assert_eq!(encoded.get(), 3);
    }

    #[test]
    fn a_completed_task_is_encoded_at_every_poll() {
        let (bodies, encoded) = (PollBodies::default(), Cell::new(0));
        let done = Arc::new(sample_task("task_1", TaskState::Succeeded));
        for _ in 0..3 {
            poll(&bodies, &done, &encoded);
        }
        assert_eq!(encoded.get(), 3, "its links are signed for each poll");
    }
}
