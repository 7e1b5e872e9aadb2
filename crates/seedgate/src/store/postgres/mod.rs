//! PostgreSQL, for any number of replicas on one database.
//!
//! Replicas coordinate only through the database: claims lock the rows they take
//! (`FOR UPDATE SKIP LOCKED`), leases run on the database's clock, in-flight counters are kept
//! by triggers in the statement that moves a task, and a new task is announced with
//! `NOTIFY seedgate_work` so every replica's engine wakes and the first to claim it takes it.
//!
//! Each replica keeps recently polled tasks in memory. A change to a task is announced with
//! `NOTIFY seedgate_task_changed` (a trigger), and every replica drops its copy when the
//! announcement arrives, within milliseconds. An announcement can be lost while the listener
//! reconnects (it then drops everything), and the stated bound holds even if it is never
//! told: no replica trusts a cached task longer than [`TASK_CACHE_BOUND`].

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyPoolOptions;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::migrations;
use super::sql::{SqlStore, WorkAnnouncements, Writer};
use super::taskcache::TaskCache;
use super::StoreError;
use crate::ids::TaskId;

const WORK_CHANNEL: &str = "seedgate_work";

const TASK_CHANGED_CHANNEL: &str = "seedgate_task_changed";

/// The oldest a task a replica answers from memory can be (docs/deploy.md).
pub const TASK_CACHE_BOUND: Duration = Duration::from_secs(1);

pub(super) async fn connect(url: &str, pool_size: u32) -> Result<SqlStore, StoreError> {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(pool_size.max(2))
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await?;
    // Replicas starting together take turns: the migrator holds an advisory lock.
    migrations::POSTGRES.migrator().await?.run(&pool).await?;
    let tasks = Arc::new(TaskCache::new(Some(TASK_CACHE_BOUND)));
    let listener = listen_for_task_changes(url, Arc::downgrade(&tasks)).await?;
    Ok(SqlStore::new(
        pool.clone(),
        Writer::pooled(pool),
        Some(Box::new(WorkChannel {
            url: url.to_owned(),
        })),
        tasks,
    )
    .with_background(listener))
}

/// Drops the cached copy of every task another process (or this one) changes. Runs until the
/// store that owns the cache is dropped.
async fn listen_for_task_changes(
    url: &str,
    tasks: Weak<TaskCache>,
) -> Result<AbortHandle, StoreError> {
    let mut listener = subscribe(url, TASK_CHANGED_CHANNEL).await?;
    let url = url.to_owned();
    let task = tokio::spawn(async move {
        loop {
            let received = listener.try_recv().await;
            let Some(cache) = tasks.upgrade() else { return };
            if let Ok(Some(notification)) = received {
                cache.changed(&TaskId::new(notification.payload()));
                continue;
            }
            // The connection was lost (None, or an error reconnecting): what changes until
            // this listener hears again is unknown. Everything cached is forgotten once it is
            // subscribed again, so a change made between the database's return and the
            // subscription is not missed.
            if let Err(error) = received {
                tracing::warn!(%error, "task change announcements interrupted");
            }
            cache.changed_all();
            drop(cache);
            listener = loop {
                match subscribe(&url, TASK_CHANGED_CHANNEL).await {
                    Ok(listener) => break listener,
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            };
            let Some(cache) = tasks.upgrade() else { return };
            cache.changed_all();
            tracing::info!("task change announcements resumed");
        }
    });
    Ok(task.abort_handle())
}

async fn subscribe(url: &str, channel: &str) -> Result<PgListener, StoreError> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

/// Work announced on [`WORK_CHANNEL`] by the trigger on new tasks.
struct WorkChannel {
    url: String,
}

#[async_trait]
impl WorkAnnouncements for WorkChannel {
    async fn forward_to(&self, wake: Arc<Notify>) -> Result<(), StoreError> {
        listen_for_work(&self.url, wake).await
    }
}

/// Listens for announced work and wakes `wake` for each announcement. A dropped connection is
/// re-established by the listener; anything announced meanwhile is found by the engine's idle
/// poll.
async fn listen_for_work(url: &str, wake: Arc<Notify>) -> Result<(), StoreError> {
    let mut listener = subscribe(url, WORK_CHANNEL).await?;
    tokio::spawn(async move {
        loop {
            match listener.recv().await {
                Ok(_) => wake.notify_one(),
                Err(error) => {
                    tracing::warn!(%error, "work announcements interrupted");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(())
}

/// The PostgreSQL server test suites use: `SEEDGATE_TEST_POSTGRES_URL`, or the local one.
pub fn test_server_url() -> String {
    std::env::var("SEEDGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// How long a scratch schema is kept before a later run sweeps it away.
const SCRATCH_LIFETIME_SECONDS: u64 = 3 * 3600;

/// Creates an empty schema in the database `base_url` names and returns a URL whose
/// connections work in it, so every test gets a database of its own at the cost of a
/// `CREATE SCHEMA`. Schemas left by earlier runs are dropped once they are old.
pub async fn create_scratch_schema(base_url: &str) -> Result<String, StoreError> {
    sqlx::any::install_default_drivers();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let admin = AnyPoolOptions::new()
        .max_connections(1)
        .connect(base_url)
        .await?;
    let existing: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::TEXT FROM pg_namespace WHERE nspname LIKE 'seedgate\\_scratch\\_%'",
    )
    .fetch_all(&admin)
    .await?;
    for schema in existing {
        let created: u64 = schema
            .split('_')
            .nth(2)
            .and_then(|secs| secs.parse().ok())
            .unwrap_or(0);
        if created + SCRATCH_LIFETIME_SECONDS < now {
            // Another run may be dropping it too; either way it is gone.
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&admin)
                .await;
        }
    }
    let schema = format!(
        "seedgate_scratch_{now}_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await?;
    admin.close().await;
    let separator = if base_url.contains('?') { '&' } else { '?' };
    Ok(format!(
        "{base_url}{separator}options=-c%20search_path%3D{schema}"
    ))
}
