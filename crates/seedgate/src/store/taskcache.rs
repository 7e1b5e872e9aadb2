//! Task rows kept in memory so a status poll is answered without a statement.
//!
//! Exact within one process: every write to a task drops its entry once the write is done
//! (committed or not), and a read fills the cache only if no write to that task finished while
//! it was reading. The second rule closes the race where a poll reads a row, a write commits and
//! drops the entry, and the poll then stores the row it read before the write. Each write bumps
//! a generation counter for the task's stripe; a reader notes the stripe's generation before its
//! statement, stores its row, then looks again and takes the row back out if the generation
//! moved. Every interleaving leaves either no entry or one read after the last write.
//!
//! Across processes (replicas on PostgreSQL) another replica's writes arrive as notifications,
//! which go through the same path; entries also expire after a stated time, which bounds how
//! stale a replica can be when a notification is lost (the listener reconnecting).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::ids::TaskId;
use crate::store::TaskRecord;

/// A change to tasks, as listeners (event streams) hear of it: one task, or any of them when
/// changes may have been missed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskChange {
    Task(TaskId),
    All,
}

/// Changes a listener may fall behind by before it hears `Lagged` and reads everything again.
const CHANGE_BACKLOG: usize = 4096;

/// Most task rows held; beyond this the least used are dropped and read again.
const CAPACITY: u64 = 50_000;

/// An entry no one has read for this long is dropped. A task's client polls it until it ends,
/// reads it once more and rarely again: without this the cache would keep every finished task
/// until the capacity is reached, memory growing for hours (at four tasks a second, 50,000
/// tasks is three and a half hours). Polls come seconds apart, so this costs them nothing.
const IDLE: Duration = Duration::from_secs(300);

/// Generation counters; a write makes reads of the other tasks in its stripe skip the cache
/// once, so more stripes mean fewer wasted fills under heavy writes.
const STRIPES: usize = 4096;

pub(crate) struct TaskCache {
    entries: moka::sync::Cache<TaskId, Arc<TaskRecord>>,
    generations: Box<[AtomicU64]>,
    /// Every change this process writes or hears of, for the event streams.
    changes: broadcast::Sender<TaskChange>,
}

/// A generation noted before a read, to hand back to [`TaskCache::fill`].
#[derive(Clone, Copy)]
pub(crate) struct Seen(u64);

impl TaskCache {
    /// `lifetime` bounds how long an entry is trusted without a write being seen; None keeps
    /// entries until a write, [`IDLE`] or the capacity drops them (one process sees every
    /// write).
    pub(crate) fn new(lifetime: Option<Duration>) -> Self {
        Self::with_idle(lifetime, IDLE)
    }

    fn with_idle(lifetime: Option<Duration>, idle: Duration) -> Self {
        let mut builder = moka::sync::Cache::builder()
            .max_capacity(CAPACITY)
            .time_to_idle(idle);
        if let Some(lifetime) = lifetime {
            builder = builder.time_to_live(lifetime);
        }
        Self {
            entries: builder.build(),
            generations: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            changes: broadcast::channel(CHANGE_BACKLOG).0,
        }
    }

    /// Hears of every change from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<TaskChange> {
        self.changes.subscribe()
    }

    fn stripe(&self, id: &TaskId) -> &AtomicU64 {
        let mut hasher = DefaultHasher::new();
        id.as_str().hash(&mut hasher);
        &self.generations[(hasher.finish() as usize) % STRIPES]
    }

    pub(crate) fn get(&self, id: &TaskId) -> Option<Arc<TaskRecord>> {
        self.entries.get(id)
    }

    /// To call before the statement whose row will be offered to [`TaskCache::fill`].
    pub(crate) fn seen(&self, id: &TaskId) -> Seen {
        Seen(self.stripe(id).load(Ordering::SeqCst))
    }

    /// Keeps `record`, read after `seen`, unless a write to its stripe finished since.
    pub(crate) fn fill(&self, record: Arc<TaskRecord>, seen: Seen) {
        let stripe = self.stripe(&record.id);
        if stripe.load(Ordering::SeqCst) != seen.0 {
            return;
        }
        self.entries.insert(record.id.clone(), record.clone());
        if stripe.load(Ordering::SeqCst) != seen.0 {
            self.entries.invalidate(&record.id);
        }
    }

    /// After a write to `id` has finished (whether it committed or not).
    pub(crate) fn changed(&self, id: &TaskId) {
        self.stripe(id).fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate(id);
        // No listener is no error.
        let _ = self.changes.send(TaskChange::Task(id.clone()));
    }

    /// A new task, stored and cached as it is: listeners hear of it; nothing is dropped.
    pub(crate) fn created(&self, id: &TaskId) {
        let _ = self.changes.send(TaskChange::Task(id.clone()));
    }

    /// When writes may have been missed (a notification listener reconnecting).
    pub(crate) fn changed_all(&self) {
        for stripe in self.generations.iter() {
            stripe.fetch_add(1, Ordering::SeqCst);
        }
        self.entries.invalidate_all();
        let _ = self.changes.send(TaskChange::All);
    }

    /// Drops `ids`' entries when dropped: a write holds one from before its statement until
    /// after its commit, so the entry goes even when the write is abandoned half way (a client
    /// hanging up) after the database applied it.
    pub(crate) fn writing<'a>(&'a self, ids: &[&TaskId]) -> Writing<'a> {
        Writing {
            cache: self,
            ids: ids.iter().map(|id| (*id).clone()).collect(),
        }
    }
}

pub(crate) struct Writing<'a> {
    cache: &'a TaskCache,
    ids: Vec<TaskId>,
}

impl Writing<'_> {
    /// A task the write turned out to touch (a claim learns which from the row it took).
    pub(crate) fn touches(&mut self, id: &TaskId) {
        self.ids.push(id.clone());
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        for id in &self.ids {
            self.cache.changed(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sample_task as record;
    use crate::store::TaskState;

    #[test]
    fn a_read_that_raced_a_write_is_not_kept() {
        let cache = TaskCache::new(None);
        let id = TaskId::new("task_1");
        let seen = cache.seen(&id);
        // The write finishes between the reader's statement and its fill.
        cache.changed(&id);
        cache.fill(Arc::new(record("task_1", TaskState::Queued)), seen);
        assert!(cache.get(&id).is_none());
        // A read that started after the write is kept.
        let seen = cache.seen(&id);
        cache.fill(Arc::new(record("task_1", TaskState::Running)), seen);
        assert_eq!(cache.get(&id).map(|r| r.state), Some(TaskState::Running));
    }

    #[test]
    fn a_write_drops_the_entry_even_when_abandoned() {
        let cache = TaskCache::new(None);
        let id = TaskId::new("task_2");
        cache.fill(
            Arc::new(record("task_2", TaskState::Queued)),
            cache.seen(&id),
        );
        assert!(cache.get(&id).is_some());
        {
            let _writing = cache.writing(&[&id]);
        }
        assert!(cache.get(&id).is_none());
        let mut claim = cache.writing(&[]);
        let seen = cache.seen(&id);
        claim.touches(&id);
        drop(claim);
        cache.fill(Arc::new(record("task_2", TaskState::Queued)), seen);
        assert!(cache.get(&id).is_none());
    }

    #[test]
    fn an_entry_no_one_reads_is_dropped() {
        let cache = TaskCache::with_idle(None, Duration::from_millis(300));
        let (read, unread) = (TaskId::new("task_4"), TaskId::new("task_5"));
        for id in [&read, &unread] {
            let record = Arc::new(record(id.as_str(), TaskState::Succeeded));
            cache.fill(record, cache.seen(id));
        }
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(50));
            assert!(cache.get(&read).is_some(), "an entry still read is kept");
        }
        assert!(cache.get(&unread).is_none());
    }

    #[test]
    fn a_missed_notification_drops_everything() {
        let cache = TaskCache::new(None);
        let id = TaskId::new("task_3");
        let seen = cache.seen(&id);
        cache.fill(Arc::new(record("task_3", TaskState::Queued)), seen);
        cache.changed_all();
        assert!(cache.get(&id).is_none());
        cache.fill(Arc::new(record("task_3", TaskState::Queued)), seen);
        assert!(cache.get(&id).is_none());
    }
}
