//! Live progress: every status change of a task, with its place in the queue and an ETA, as
//! Server-Sent Events. Changes come from the store's change feed (this process's writes, and
//! on PostgreSQL every replica's through the database's notifications), so a stream on one
//! replica follows work done on another. Reconnecting with `Last-Event-ID` loses nothing: a
//! task's stream replays the statuses it passed since, and a key's stream every task changed
//! since.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use futures_util::Stream;
use seedgate_contract::{ApiError, Catalog};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};

use super::internal;
use crate::assets::ResultLinks;
use crate::ids::{AccountId, TaskId};
use crate::store::{
    now_ms, PublicStatus, Store, StoreError, TaskChange, TaskFilter, TaskRecord, TaskState,
};
use crate::task_view::{render_task, TaskObject};
use crate::telemetry::{size_asked, Telemetry};

/// How long one read of the queue serves a new stream's first place.
const QUEUE_SNAPSHOT: Duration = Duration::from_secs(1);
/// Most tasks a key's stream replays after a reconnect.
const REPLAY_LIMIT: i64 = 100;
/// Signals a stream may have waiting before it is told to read everything again instead.
const SIGNAL_BACKLOG: usize = 16;

pub struct EventService {
    pub(super) store: Store,
    pub(super) catalog: Arc<Catalog>,
    pub(super) links: ResultLinks,
    pub(super) telemetry: Arc<Telemetry>,
    /// Tasks this server works on at once: a waiting task's ETA counts the queue ahead in
    /// rounds of this many.
    pub(super) workers: u32,
    /// How often the queue is read again for the waiting tasks' places (tasks ahead of them
    /// start without any change of their own).
    pub(super) queue_refresh: Duration,
    pub(super) hub: Hub,
}

/// Hands each change to the streams that follow that task or its key, and no others: one
/// read of the changed task however many streams are open, and a change wakes only its own.
/// Also reads the queue for every waiting stream at once.
#[derive(Default)]
pub(super) struct Hub {
    listeners: Mutex<HashMap<Interest, Vec<Listener>>>,
    /// Key streams open: without one, a change nobody follows by id is not read.
    account_listeners: AtomicU64,
    next_listener: AtomicU64,
    dispatching: OnceLock<()>,
    queue: OnceLock<watch::Sender<QueueSnapshot>>,
    queue_read: tokio::sync::Mutex<()>,
}

/// The queue as last read: the waiting tasks' ids in order, and when.
#[derive(Clone, Default)]
struct QueueSnapshot {
    read: Option<Instant>,
    ids: Arc<Vec<TaskId>>,
}

impl QueueSnapshot {
    /// Tasks ahead of `id`; None when it was not waiting at the time of the read.
    fn position(&self, id: &TaskId) -> Option<i64> {
        self.ids.binary_search(id).ok().map(|ahead| ahead as i64)
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Interest {
    Task(TaskId),
    Account(AccountId),
}

/// What the hub tells a stream.
enum Signal {
    /// The task as it stands after a change.
    Changed(Arc<TaskRecord>),
    /// Changes may have been missed: read again.
    Resync,
}

struct Listener {
    id: u64,
    signals: mpsc::Sender<Signal>,
    /// Set when a signal found the stream's backlog full: it reads everything again.
    missed: Arc<AtomicBool>,
}

impl Listener {
    fn tell(&self, signal: Signal) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.signals.try_send(signal) {
            self.missed.store(true, Ordering::SeqCst);
        }
    }
}

/// A stream's line to the hub, withdrawn when the stream is dropped.
struct Subscription {
    service: Arc<EventService>,
    interest: Interest,
    id: u64,
    signals: mpsc::Receiver<Signal>,
    missed: Arc<AtomicBool>,
    queue: watch::Receiver<QueueSnapshot>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let hub = &self.service.hub;
        if let Ok(mut listeners) = hub.listeners.lock() {
            if let Some(list) = listeners.get_mut(&self.interest) {
                list.retain(|listener| listener.id != self.id);
                if list.is_empty() {
                    listeners.remove(&self.interest);
                }
            }
        }
        if matches!(self.interest, Interest::Account(_)) {
            hub.account_listeners.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// What woke a stream.
enum Wake {
    Signal(Signal),
    /// The hub read the queue again.
    Queue(QueueSnapshot),
}

impl Subscription {
    /// The next signal, or, when `waiting`, a new read of the queue; None once the hub is
    /// gone. A signal that found the backlog full was dropped, so the stream reads everything
    /// again instead.
    async fn wake(&mut self, waiting: bool) -> Option<Wake> {
        tokio::select! {
            signal = self.signals.recv() => {
                let signal = signal?;
                Some(Wake::Signal(if self.missed.swap(false, Ordering::SeqCst) {
                    Signal::Resync
                } else {
                    signal
                }))
            }
            Ok(()) = self.queue.changed(), if waiting => {
                Some(Wake::Queue(self.queue.borrow_and_update().clone()))
            }
        }
    }
}

impl Hub {
    fn queue(&self) -> &watch::Sender<QueueSnapshot> {
        self.queue
            .get_or_init(|| watch::channel(QueueSnapshot::default()).0)
    }

    fn tell(&self, interest: &Interest, signal: impl Fn() -> Signal) {
        if let Ok(listeners) = self.listeners.lock() {
            for listener in listeners.get(interest).into_iter().flatten() {
                listener.tell(signal());
            }
        }
    }

    fn tell_everyone_to_resync(&self) {
        if let Ok(listeners) = self.listeners.lock() {
            for listener in listeners.values().flatten() {
                listener.tell(Signal::Resync);
            }
        }
    }

    fn has_listeners(&self, interest: &Interest) -> bool {
        self.listeners
            .lock()
            .is_ok_and(|listeners| listeners.contains_key(interest))
    }
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
    /// second, or read now when that read predates `id`. A read made here serves the next
    /// streams too, but wakes none: the hub's own reads move their places.
    async fn queue_position(&self, id: &TaskId) -> Result<i64, StoreError> {
        let queue = self.hub.queue();
        let known = || {
            let snapshot = queue.borrow();
            snapshot
                .read
                .is_some_and(|read| read.elapsed() < QUEUE_SNAPSHOT)
                .then(|| snapshot.position(id))
                .flatten()
        };
        if let Some(position) = known() {
            return Ok(position);
        }
        // One read at a time: streams opened together wait for it rather than each reading
        // the whole queue.
        let _reading = self.hub.queue_read.lock().await;
        if let Some(position) = known() {
            return Ok(position);
        }
        let ids = Arc::new(self.store.queued_task_ids().await?);
        let position = ids.partition_point(|queued| queued < id) as i64;
        queue.send_if_modified(|snapshot| {
            *snapshot = QueueSnapshot {
                read: Some(Instant::now()),
                ids,
            };
            false
        });
        Ok(position)
    }

    /// Where `task` stands, reading its place in the queue when it waits.
    async fn standing(&self, task: &TaskRecord) -> Result<Standing, StoreError> {
        let position = if waits(task) {
            Some(self.queue_position(&task.id).await?)
        } else {
            None
        };
        Ok(self.standing_at(task, position))
    }

    /// Where `task` stands with `queue_position` tasks ahead of it (None unless it waits).
    fn standing_at(&self, task: &TaskRecord, queue_position: Option<i64>) -> Standing {
        let status = task.public_status();
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
        Standing {
            status,
            queue_position,
            eta_seconds: eta.map(|eta| eta.as_secs_f64().ceil() as u64),
        }
    }

    /// Where `task`, waiting when last seen, stands in the queue the hub read last; None when
    /// that read no longer holds it (it started: its change is on its way).
    fn standing_in_queue(&self, task: &TaskRecord, queue: &QueueSnapshot) -> Option<Standing> {
        queue
            .position(&task.id)
            .map(|position| self.standing_at(task, Some(position)))
    }

    /// Registers a stream with the hub, starting the hub's work on the first.
    fn subscribe(self: &Arc<Self>, interest: Interest) -> Subscription {
        self.hub.dispatching.get_or_init(|| {
            tokio::spawn(dispatch(
                Arc::downgrade(self),
                self.store.task_changes(),
                self.queue_refresh,
            ));
        });
        let (sender, signals) = mpsc::channel(SIGNAL_BACKLOG);
        let missed = Arc::new(AtomicBool::new(false));
        let id = self.hub.next_listener.fetch_add(1, Ordering::SeqCst);
        if matches!(interest, Interest::Account(_)) {
            self.hub.account_listeners.fetch_add(1, Ordering::SeqCst);
        }
        if let Ok(mut listeners) = self.hub.listeners.lock() {
            listeners
                .entry(interest.clone())
                .or_default()
                .push(Listener {
                    id,
                    signals: sender,
                    missed: missed.clone(),
                });
        }
        Subscription {
            service: self.clone(),
            interest,
            id,
            signals,
            missed,
            queue: self.hub.queue().subscribe(),
        }
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
        let subscription = self.subscribe(Interest::Task(id.clone()));
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
            account: account.clone(),
            base,
            subscription,
            task,
            sent: standing,
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
        let subscription = self.subscribe(Interest::Account(account.clone()));
        let mut state = AccountFollow {
            account: account.clone(),
            base,
            subscription,
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

/// Whether `task` waits in this server's queue (rather than at an upstream's).
fn waits(task: &TaskRecord) -> bool {
    task.state == TaskState::Queued && task.public_status() == PublicStatus::Pending
}

/// The hub's work for as long as the service lives: each change read once and handed to the
/// streams following that task or its key; everything read again when changes were missed;
/// the queue read every few seconds while streams are open.
async fn dispatch(
    service: Weak<EventService>,
    mut changes: tokio::sync::broadcast::Receiver<TaskChange>,
    every: Duration,
) {
    let mut queue_refresh = tokio::time::interval(every);
    queue_refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let change = tokio::select! {
            change = changes.recv() => Some(change),
            _ = queue_refresh.tick() => None,
        };
        let Some(service) = service.upgrade() else {
            return;
        };
        let hub = &service.hub;
        match change {
            Some(Ok(TaskChange::Task(id))) => {
                let followed = Interest::Task(id.clone());
                let by_id = hub.has_listeners(&followed);
                if !by_id && hub.account_listeners.load(Ordering::SeqCst) == 0 {
                    continue;
                }
                match service.store.task(&id).await {
                    Ok(Some(task)) => {
                        hub.tell(&followed, || Signal::Changed(task.clone()));
                        let owner = Interest::Account(task.account_id.clone());
                        hub.tell(&owner, || Signal::Changed(task.clone()));
                    }
                    Ok(None) => {}
                    Err(_) => hub.tell(&followed, || Signal::Resync),
                }
            }
            Some(Ok(TaskChange::All) | Err(RecvError::Lagged(_))) => hub.tell_everyone_to_resync(),
            Some(Err(RecvError::Closed)) => return,
            None => {
                let queue = hub.queue();
                if queue.receiver_count() == 0 {
                    continue;
                }
                // A failed read leaves the places as they were until the next.
                if let Ok(ids) = service.store.queued_task_ids().await {
                    queue.send_replace(QueueSnapshot {
                        read: Some(Instant::now()),
                        ids: Arc::new(ids),
                    });
                }
            }
        }
    }
}

struct TaskFollow {
    account: AccountId,
    base: String,
    subscription: Subscription,
    /// The task as last read.
    task: Arc<TaskRecord>,
    sent: Standing,
    queue: VecDeque<TaskEvent>,
    done: bool,
}

impl TaskFollow {
    async fn next(mut self) -> Option<(TaskEvent, Self)> {
        let service = self.subscription.service.clone();
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some((event, self));
            }
            if self.done {
                return None;
            }
            let standing = match self.subscription.wake(waits(&self.task)).await? {
                Wake::Signal(signal) => {
                    let task = match signal {
                        Signal::Changed(task) => task,
                        Signal::Resync => match service
                            .store
                            .task_for_account(&self.account, &self.task.id)
                            .await
                        {
                            Ok(Some(task)) => task,
                            Ok(None) => return None,
                            // The store may answer again; the next signal reads it again.
                            Err(_) => continue,
                        },
                    };
                    self.task = task;
                    match service.standing(&self.task).await {
                        Ok(standing) => standing,
                        Err(_) => continue,
                    }
                }
                Wake::Queue(queue) => match service.standing_in_queue(&self.task, &queue) {
                    Some(standing) => standing,
                    None => continue,
                },
            };
            let previous = std::mem::replace(&mut self.sent, standing);
            if (previous.status, previous.queue_position)
                == (standing.status, standing.queue_position)
            {
                continue;
            }
            let event = service.event(
                &self.task,
                standing,
                Some(previous),
                rank(standing.status).to_string(),
                &self.base,
            );
            self.done = ended(standing.status);
            self.queue.push_back(event);
        }
    }
}

struct AccountFollow {
    account: AccountId,
    base: String,
    subscription: Subscription,
    /// The time of the newest change sent: events' ids.
    cursor_ms: Option<i64>,
    /// What was last sent of each unfinished task, and the task as then read.
    sent: HashMap<TaskId, (Standing, Arc<TaskRecord>)>,
    queue: VecDeque<TaskEvent>,
}

impl AccountFollow {
    fn service(&self) -> Arc<EventService> {
        self.subscription.service.clone()
    }

    /// Queues every task of the key changed since the cursor, oldest change first.
    async fn catch_up(&mut self) -> Result<(), StoreError> {
        let mut tasks = self
            .service()
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
            let standing = self.service().standing(&task).await?;
            self.offer(Arc::new(task), standing);
        }
        Ok(())
    }

    /// Queues an event for `task` when it stands elsewhere than last sent.
    fn offer(&mut self, task: Arc<TaskRecord>, standing: Standing) {
        let previous = self.sent.get(&task.id).map(|(standing, _)| *standing);
        if previous.map(|p| (p.status, p.queue_position))
            == Some((standing.status, standing.queue_position))
        {
            return;
        }
        let at = task.updated_at_ms.max(self.cursor_ms.unwrap_or(0));
        self.cursor_ms = Some(at);
        let event = self
            .service()
            .event(&task, standing, previous, at.to_string(), &self.base);
        if ended(standing.status) {
            self.sent.remove(&task.id);
        } else {
            self.sent.insert(task.id.clone(), (standing, task));
        }
        self.queue.push_back(event);
    }

    async fn next(mut self) -> Option<(TaskEvent, Self)> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some((event, self));
            }
            let waiting = self.sent.values().any(|(_, task)| waits(task));
            match self.subscription.wake(waiting).await? {
                Wake::Signal(Signal::Changed(task)) => {
                    // A store that failed is read again at the next signal.
                    if let Ok(standing) = self.service().standing(&task).await {
                        self.offer(task, standing);
                    }
                }
                Wake::Signal(Signal::Resync) => {
                    let _ = self.refresh().await;
                }
                Wake::Queue(queue) => {
                    let waiting: Vec<Arc<TaskRecord>> = self
                        .sent
                        .values()
                        .filter(|(_, task)| waits(task))
                        .map(|(_, task)| task.clone())
                        .collect();
                    for task in waiting {
                        if let Some(standing) = self.service().standing_in_queue(&task, &queue) {
                            self.offer(task, standing);
                        }
                    }
                }
            }
        }
    }

    /// After changes may have been missed: the tasks changed since the cursor, and the
    /// unfinished ones already followed.
    async fn refresh(&mut self) -> Result<(), StoreError> {
        self.catch_up().await?;
        let followed: Vec<TaskId> = self.sent.keys().cloned().collect();
        for id in followed {
            if let Some(task) = self
                .service()
                .store
                .task_for_account(&self.account, &id)
                .await?
            {
                let standing = self.service().standing(&task).await?;
                self.offer(task, standing);
            }
        }
        Ok(())
    }
}
