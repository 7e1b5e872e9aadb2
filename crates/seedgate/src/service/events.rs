//! Live progress: every status change of a task, with its place in the queue and an ETA, as
//! Server-Sent Events. Changes come from the store's change feed (this process's writes, and
//! on PostgreSQL every replica's through the database's notifications), so a stream on one
//! replica follows work done on another. Reconnecting with `Last-Event-ID` loses nothing: a
//! task's stream replays the statuses it passed since, and a key's stream every task changed
//! since.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use seedgate_contract::{ApiError, Catalog};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

use super::internal;
use crate::assets::ResultLinks;
use crate::ids::{AccountId, TaskId};
use crate::store::{
    now_ms, PublicStatus, Store, StoreError, TaskChange, TaskFilter, TaskRecord, TaskState,
};
use crate::task_view::{render_task, TaskObject};
use crate::telemetry::{size_asked, Telemetry};

/// How often a waiting task's place in the queue is looked at again while nothing of its own
/// changes (tasks ahead of it start meanwhile).
const QUEUE_REFRESH: Duration = Duration::from_secs(5);
/// How long one read of the queue serves every stream's positions.
const QUEUE_SNAPSHOT: Duration = Duration::from_secs(1);
/// Most tasks a key's stream replays after a reconnect.
const REPLAY_LIMIT: i64 = 100;

pub struct EventService {
    pub(super) store: Store,
    pub(super) catalog: Arc<Catalog>,
    pub(super) links: ResultLinks,
    pub(super) telemetry: Arc<Telemetry>,
    /// Tasks this server works on at once: a waiting task's ETA counts the queue ahead in
    /// rounds of this many.
    pub(super) workers: u32,
    /// The queue as last read, shared by every stream: one statement a second however many
    /// streams wait.
    pub(super) queue: std::sync::Mutex<Option<(std::time::Instant, Arc<Vec<TaskId>>)>>,
}

/// One event: `event` is its name, `id` what a client sends back as `Last-Event-ID`.
pub struct TaskEvent {
    pub event: &'static str,
    pub id: String,
    pub data: EventData,
}

/// The data of an event.
#[derive(Serialize)]
pub struct EventData {
    pub task_id: String,
    pub status: PublicStatus,
    /// Tasks waiting ahead of this one (all keys'); null unless it waits here.
    pub queue_position: Option<i64>,
    /// Seconds until it should end, from generation times measured on this server for its
    /// provider, model and resolution; null while none has been measured, and once it ended.
    pub eta_seconds: Option<u64>,
    /// The task as `GET /v1/tasks/{id}` shows it now; absent on `task.progress` (only the
    /// place in the queue moved) and on a status replayed after a reconnect, which the task
    /// has since left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<Box<TaskObject>>,
}

/// Where a task stands, as an event says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Standing {
    status: PublicStatus,
    queue_position: Option<i64>,
    eta_seconds: Option<u64>,
}

/// A status's place in a task's life: what a task stream's event ids count.
fn rank(status: PublicStatus) -> u8 {
    match status {
        PublicStatus::Pending => 1,
        PublicStatus::Processing => 2,
        PublicStatus::Completed | PublicStatus::Failed => 3,
    }
}

fn status_event(status: PublicStatus) -> &'static str {
    match status {
        PublicStatus::Pending => "task.pending",
        PublicStatus::Processing => "task.processing",
        PublicStatus::Completed => "task.completed",
        PublicStatus::Failed => "task.failed",
    }
}

fn ended(status: PublicStatus) -> bool {
    rank(status) == 3
}

impl EventService {
    /// Tasks waiting ahead of `id` (itself waiting) in the queue as read within the last
    /// second, or read now when that read predates `id`.
    async fn queue_position(&self, id: &TaskId) -> Result<i64, StoreError> {
        let fresh = self.queue.lock().ok().and_then(|queue| {
            queue
                .as_ref()
                .filter(|(read, ids)| {
                    read.elapsed() < QUEUE_SNAPSHOT && ids.binary_search(id).is_ok()
                })
                .map(|(_, ids)| ids.clone())
        });
        let ids = match fresh {
            Some(ids) => ids,
            None => {
                let ids = Arc::new(self.store.queued_task_ids().await?);
                if let Ok(mut queue) = self.queue.lock() {
                    *queue = Some((std::time::Instant::now(), ids.clone()));
                }
                ids
            }
        };
        Ok(ids.partition_point(|queued| queued < id) as i64)
    }

    async fn standing(&self, task: &TaskRecord) -> Result<Standing, StoreError> {
        let status = task.public_status();
        let queue_position = if task.state == TaskState::Queued && status == PublicStatus::Pending {
            Some(self.queue_position(&task.id).await?)
        } else {
            None
        };
        let expected = size_asked(task).and_then(|(resolution, seconds)| {
            self.telemetry
                .expected_generation(&task.provider, &task.model, &resolution, seconds)
        });
        let eta = match (status, expected) {
            (PublicStatus::Pending, Some(expected)) => {
                let rounds = queue_position.unwrap_or(0) as u32 / self.workers.max(1) + 1;
                Some(expected * rounds)
            }
            (PublicStatus::Processing, Some(expected)) => {
                let started = task.submit_started_at_ms.unwrap_or(task.created_at_ms);
                let elapsed = Duration::from_millis((now_ms() - started).max(0) as u64);
                Some(expected.saturating_sub(elapsed).max(Duration::from_secs(1)))
            }
            _ => None,
        };
        Ok(Standing {
            status,
            queue_position,
            eta_seconds: eta.map(|eta| eta.as_secs_f64().ceil() as u64),
        })
    }

    /// The event of `task` now standing at `standing`: its status's, with the task object;
    /// or, when only its place in the queue moved since `previous`, `task.progress`, light
    /// enough for every waiting stream to get as the queue moves.
    fn event(
        &self,
        task: &TaskRecord,
        standing: Standing,
        previous: Option<Standing>,
        id: String,
        base: &str,
    ) -> TaskEvent {
        let moved_only = previous.is_some_and(|p| p.status == standing.status);
        let object = (!moved_only).then(|| {
            Box::new(render_task(
                task,
                &self.links,
                &self.catalog,
                base,
                (now_ms() / 1000) as u64,
            ))
        });
        TaskEvent {
            event: if moved_only {
                "task.progress"
            } else {
                status_event(standing.status)
            },
            id,
            data: EventData {
                task_id: task.id.to_string(),
                status: standing.status,
                queue_position: standing.queue_position,
                eta_seconds: standing.eta_seconds,
                task: object,
            },
        }
    }

    /// The events of one task of `account`, from where `last_event_id` left off (none: its
    /// current status), until it ends; None for a task the key does not have.
    pub async fn follow_task(
        self: &Arc<Self>,
        account: &AccountId,
        id: &TaskId,
        last_event_id: Option<&str>,
        base: String,
    ) -> Result<impl Stream<Item = TaskEvent> + use<>, ApiError> {
        // Listening starts before the read, so no change falls between the two.
        let changes = self.store.task_changes();
        let task = self
            .store
            .task_for_account(account, id)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                ApiError::new(
                    seedgate_contract::ErrorCode::AsyncTaskNotFound,
                    "Task not found or no longer available.",
                )
            })?;
        let seen = last_event_id
            .and_then(|id| id.parse::<u8>().ok())
            .unwrap_or(0);
        let standing = self.standing(&task).await.map_err(internal)?;
        let mut queue = VecDeque::new();
        // Statuses passed while the client was away, each once, then where it is now.
        for passed in [PublicStatus::Pending, PublicStatus::Processing] {
            let went_through =
                passed == PublicStatus::Pending || task.submit_started_at_ms.is_some();
            if rank(passed) > seen && rank(passed) < rank(standing.status) && went_through {
                queue.push_back(TaskEvent {
                    event: status_event(passed),
                    id: rank(passed).to_string(),
                    data: EventData {
                        task_id: task.id.to_string(),
                        status: passed,
                        queue_position: None,
                        eta_seconds: None,
                        task: None,
                    },
                });
            }
        }
        if rank(standing.status) > seen || seen == 0 {
            queue.push_back(self.event(
                &task,
                standing,
                None,
                rank(standing.status).to_string(),
                &base,
            ));
        }
        let state = TaskFollow {
            service: self.clone(),
            account: account.clone(),
            id: id.clone(),
            base,
            changes,
            sent: Some(standing),
            queue,
            done: ended(standing.status),
        };
        Ok(futures_util::stream::unfold(state, TaskFollow::next))
    }

    /// Every status change of `account`'s tasks from now on, or, with `last_event_id` (the
    /// time of the last event seen), from then.
    pub async fn follow_account(
        self: &Arc<Self>,
        account: &AccountId,
        last_event_id: Option<&str>,
        base: String,
    ) -> Result<impl Stream<Item = TaskEvent> + use<>, ApiError> {
        let changes = self.store.task_changes();
        let mut state = AccountFollow {
            service: self.clone(),
            account: account.clone(),
            base,
            changes,
            cursor_ms: last_event_id.and_then(|id| id.parse::<i64>().ok()),
            sent: HashMap::new(),
            queue: VecDeque::new(),
        };
        if state.cursor_ms.is_some() {
            state.catch_up().await.map_err(internal)?;
        } else {
            state.cursor_ms = Some(now_ms());
        }
        Ok(futures_util::stream::unfold(state, AccountFollow::next))
    }
}

struct TaskFollow {
    service: Arc<EventService>,
    account: AccountId,
    id: TaskId,
    base: String,
    changes: Receiver<TaskChange>,
    sent: Option<Standing>,
    queue: VecDeque<TaskEvent>,
    done: bool,
}

impl TaskFollow {
    async fn next(mut self) -> Option<(TaskEvent, Self)> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some((event, self));
            }
            if self.done {
                return None;
            }
            let waiting = self.sent.is_some_and(|s| s.status == PublicStatus::Pending);
            let heard = tokio::select! {
                change = self.changes.recv() => match change {
                    Ok(TaskChange::Task(id)) => id == self.id,
                    Ok(TaskChange::All) | Err(RecvError::Lagged(_)) => true,
                    Err(RecvError::Closed) => return None,
                },
                _ = tokio::time::sleep(QUEUE_REFRESH), if waiting => true,
            };
            if !heard {
                continue;
            }
            let task = match self
                .service
                .store
                .task_for_account(&self.account, &self.id)
                .await
            {
                Ok(Some(task)) => task,
                Ok(None) => return None,
                // The store may answer again; the next change or refresh reads it again.
                Err(_) => continue,
            };
            let Ok(standing) = self.service.standing(&task).await else {
                continue;
            };
            let previous = self.sent.replace(standing);
            if previous.map(|p| (p.status, p.queue_position))
                == Some((standing.status, standing.queue_position))
            {
                continue;
            }
            let event = self.service.event(
                &task,
                standing,
                previous,
                rank(standing.status).to_string(),
                &self.base,
            );
            self.done = ended(standing.status);
            self.queue.push_back(event);
        }
    }
}

struct AccountFollow {
    service: Arc<EventService>,
    account: AccountId,
    base: String,
    changes: Receiver<TaskChange>,
    /// The time of the newest change sent: events' ids.
    cursor_ms: Option<i64>,
    /// What was last sent of each unfinished task.
    sent: HashMap<TaskId, Standing>,
    queue: VecDeque<TaskEvent>,
}

impl AccountFollow {
    /// Queues every task of the key changed since the cursor, oldest change first.
    async fn catch_up(&mut self) -> Result<(), StoreError> {
        let mut tasks = self
            .service
            .store
            .list_tasks(
                &self.account,
                &TaskFilter {
                    updated_after_ms: self.cursor_ms,
                    limit: REPLAY_LIMIT,
                    ..TaskFilter::default()
                },
            )
            .await?;
        tasks.sort_by_key(|task| task.updated_at_ms);
        for task in tasks {
            self.offer(&task).await?;
        }
        Ok(())
    }

    /// Queues an event for `task` when it stands elsewhere than last sent.
    async fn offer(&mut self, task: &TaskRecord) -> Result<(), StoreError> {
        let standing = self.service.standing(task).await?;
        let previous = self.sent.get(&task.id).copied();
        if previous.map(|p| (p.status, p.queue_position))
            == Some((standing.status, standing.queue_position))
        {
            return Ok(());
        }
        let at = task.updated_at_ms.max(self.cursor_ms.unwrap_or(0));
        self.cursor_ms = Some(at);
        let event = self
            .service
            .event(task, standing, previous, at.to_string(), &self.base);
        if ended(standing.status) {
            self.sent.remove(&task.id);
        } else {
            self.sent.insert(task.id.clone(), standing);
        }
        self.queue.push_back(event);
        Ok(())
    }

    async fn next(mut self) -> Option<(TaskEvent, Self)> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some((event, self));
            }
            let waiting = self
                .sent
                .values()
                .any(|s| s.status == PublicStatus::Pending);
            let change = tokio::select! {
                change = self.changes.recv() => change,
                _ = tokio::time::sleep(QUEUE_REFRESH), if waiting => Ok(TaskChange::All),
            };
            let outcome = match change {
                Ok(TaskChange::Task(id)) => {
                    match self
                        .service
                        .store
                        .task_for_account(&self.account, &id)
                        .await
                    {
                        Ok(Some(task)) => self.offer(&task).await,
                        Ok(None) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
                Ok(TaskChange::All) | Err(RecvError::Lagged(_)) => self.refresh().await,
                Err(RecvError::Closed) => return None,
            };
            // A store that failed is read again at the next change.
            let _ = outcome;
        }
    }

    /// After changes may have been missed: the tasks changed since the cursor, and the
    /// unfinished ones already followed (their place in the queue moves without a change).
    async fn refresh(&mut self) -> Result<(), StoreError> {
        self.catch_up().await?;
        let followed: Vec<TaskId> = self.sent.keys().cloned().collect();
        for id in followed {
            if let Some(task) = self
                .service
                .store
                .task_for_account(&self.account, &id)
                .await?
            {
                self.offer(&task).await?;
            }
        }
        Ok(())
    }
}
