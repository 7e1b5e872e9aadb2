//! The sandbox's own render threads.
//!
//! The H.264 encoder allocates through the C library's allocator, which gives each thread that
//! calls it a pool of its own and keeps a render's worth of memory in it after the render.
//! On the runtime's blocking threads, which come and go, more and more of them gained such a
//! pool and a rendering server's memory crept up for an hour (BENCHMARKS.md, "Soak"). A fixed
//! set of long-lived threads holds that memory at one render's worth per thread, and bounds
//! how many renders run at once.
//!
//! A render is background work beside requests that someone is waiting on, so its threads run
//! at a lower scheduling priority: when both want a core, the request handlers get it, and a
//! render shows in the API's tail latency far less (BENCHMARKS.md, "Soak").

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RenderThreadError {
    #[error("the render panicked: {0}")]
    Panicked(String),
    #[error("the render threads have stopped")]
    Stopped,
}

pub struct RenderThreads {
    jobs: mpsc::Sender<Job>,
}

impl RenderThreads {
    /// Starts `count` threads (at least one); they end once this is dropped and their queue
    /// is empty.
    pub fn start(count: usize) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..count.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("seedgate-render-{n}"))
                .spawn(move || {
                    yield_to_requests();
                    loop {
                        // The lock is released before the job runs, so idle threads take the next.
                        let next = queue.lock().map(|queue| queue.recv());
                        match next {
                            Ok(Ok(job)) => job(),
                            _ => return,
                        }
                    }
                })?;
        }
        Ok(Self { jobs })
    }

    /// Runs `work` on a render thread once one is free.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, RenderThreadError> {
        let (done, outcome) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller stopped waiting (its task was cancelled or its lease lost) while the
            // job queued: nothing would read the render.
            if done.is_closed() {
                return;
            }
            let result = catch_unwind(AssertUnwindSafe(work)).map_err(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|text| (*text).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                RenderThreadError::Panicked(message)
            });
            let _ = done.send(result);
        });
        self.jobs
            .send(job)
            .map_err(|_| RenderThreadError::Stopped)?;
        outcome.await.map_err(|_| RenderThreadError::Stopped)?
    }
}

/// How far below the request handlers a render thread runs: at 10 more than theirs the
/// scheduler gives it about a tenth of a contended core's time, and all of an idle one's.
#[cfg(target_os = "linux")]
const RENDER_NICENESS: i32 = 10;

/// Lowers the calling thread's priority: on Linux the nice value belongs to the thread, and the
/// encoder's threads started from it inherit it. Raising one's own nice value needs no
/// privilege; were it refused, the render would only run at the handlers' priority.
#[cfg(target_os = "linux")]
fn yield_to_requests() {
    if let Err(error) = rustix::process::nice(RENDER_NICENESS) {
        tracing::debug!(%error, "a render thread kept the handlers' priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn yield_to_requests() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_a_render_thread_and_a_panic_leaves_the_thread_serving() {
        let threads = RenderThreads::start(1).unwrap();
        let name = threads
            .run(|| std::thread::current().name().map(str::to_owned))
            .await;
        assert_eq!(name, Ok(Some("seedgate-render-0".to_owned())));
        let crashed = threads.run(|| -> u32 { panic!("bad frame") }).await;
        assert_eq!(
            crashed,
            Err(RenderThreadError::Panicked("bad frame".into()))
        );
        assert_eq!(threads.run(|| 2 + 2).await, Ok(4));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn renders_run_below_the_request_handlers_priority() {
        let threads = RenderThreads::start(1).unwrap();
        let niceness = || rustix::process::getpriority_process(None).unwrap();
        let here = niceness();
        assert_eq!(
            threads.run(niceness).await,
            Ok((here + RENDER_NICENESS).min(19))
        );
    }

    #[tokio::test]
    async fn no_more_renders_run_at_once_than_there_are_threads() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let threads = Arc::new(RenderThreads::start(2).unwrap());
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        // Renders meet in pairs, so both threads are busy at once, never a third.
        let pairs = Arc::new(std::sync::Barrier::new(2));
        let renders = (0..6).map(|_| {
            let (threads, running, most, pairs) = (
                threads.clone(),
                running.clone(),
                most.clone(),
                pairs.clone(),
            );
            async move {
                threads
                    .run(move || {
                        most.fetch_max(running.fetch_add(1, SeqCst) + 1, SeqCst);
                        pairs.wait();
                        running.fetch_sub(1, SeqCst);
                    })
                    .await
            }
        });
        let ended = futures_util::future::join_all(renders).await;
        assert!(ended.iter().all(Result::is_ok));
        assert_eq!(most.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn a_render_no_one_waits_for_any_more_is_skipped() {
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        let threads = Arc::new(RenderThreads::start(1).unwrap());
        let (started, on_start) = oneshot::channel();
        let (release, hold) = mpsc::channel::<()>();
        let busy = tokio::spawn({
            let threads = threads.clone();
            async move {
                threads
                    .run(move || {
                        let _ = started.send(());
                        hold.recv().is_ok()
                    })
                    .await
            }
        });
        on_start.await.unwrap();
        // The only thread is busy: this one queues, and its caller gives up on it.
        let ran = Arc::new(AtomicBool::new(false));
        let marked = ran.clone();
        let abandoned = threads.run(move || marked.store(true, SeqCst));
        assert!(futures_util::FutureExt::now_or_never(abandoned).is_none());
        release.send(()).unwrap();
        assert_eq!(busy.await.unwrap(), Ok(true));
        assert_eq!(threads.run(|| ()).await, Ok(()));
        assert!(!ran.load(SeqCst));
    }
}
