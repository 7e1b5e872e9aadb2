//! The statements both backends share, written once over sqlx's `Any` driver.
//!
//! Placeholders are `$1, $2, …`, which SQLite and PostgreSQL both read. The few places where
//! the engines differ are tokens that [`Dialect::render`] fills in once per statement and
//! backend (the [`sql!`] macro keeps the rendered text in a static, so no request formats SQL):
//! `@now` is the database's clock in milliseconds, `@skip_locked` and `@lock` the row locks a
//! claim and a reservation take on PostgreSQL (SQLite's single writer needs none).

mod accounts;
mod creates;
pub(in crate::store) mod guards;
mod materials;
mod outbox;
pub(in crate::store) mod tasks;
mod usage;
mod writer;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use sqlx::AnyPool;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::taskcache::TaskCache;
use super::{now_ms, Backend, StoreError};
use crate::ids::ChannelId;
use crate::store::{PublicStatus, TaskState};
use crate::telemetry::{MoneyFigure, StoreFigures};
use creates::CreateQueue;
pub(in crate::store) use writer::Writer;

/// SQLite's clock in milliseconds (the process's own: one machine holds both).
const SQLITE_NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

/// PostgreSQL's clock in milliseconds; every replica's leases are measured by it.
const POSTGRES_NOW_MS: &str = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)";

/// Which engine holds the rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn index(self) -> usize {
        match self {
            Dialect::Sqlite => 0,
            Dialect::Postgres => 1,
        }
    }

    /// Fills in the dialect's tokens.
    pub(crate) fn render(self, template: &str) -> String {
        let (now, skip_locked, lock) = match self {
            Dialect::Sqlite => (SQLITE_NOW_MS, "", ""),
            Dialect::Postgres => (POSTGRES_NOW_MS, " FOR UPDATE SKIP LOCKED", " FOR UPDATE"),
        };
        template
            .replace("@now", now)
            .replace("@skip_locked", skip_locked)
            .replace("@lock", lock)
    }

    /// Several writes as one statement, so they cost one trip to the database: SQLite runs a
    /// list of statements; PostgreSQL, which prepares one statement at a time, takes all but
    /// the last as data-modifying `WITH` clauses (each runs once; none sees another's rows,
    /// and foreign keys are checked when the whole statement ends). Parameters are numbered
    /// across the whole batch.
    pub(crate) fn batch(self, statements: &[String]) -> String {
        match (self, statements.split_last()) {
            (Dialect::Postgres, Some((last, clauses))) if !clauses.is_empty() => {
                let clauses: Vec<String> = clauses
                    .iter()
                    .enumerate()
                    .map(|(i, statement)| format!("w{i} AS ({statement})"))
                    .collect();
                format!("WITH {} {last}", clauses.join(", "))
            }
            _ => statements.join("; "),
        }
    }
}

/// A statement rendered for `$dialect` once per process, as `&'static str`.
macro_rules! sql {
    ($dialect:expr, $template:expr) => {{
        static RENDERED: [std::sync::OnceLock<String>; 2] =
            [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
        $crate::store::sql::rendered(&RENDERED, $dialect, || $template.to_string())
    }};
}
pub(crate) use sql;

pub(crate) fn rendered(
    cells: &'static [OnceLock<String>; 2],
    dialect: Dialect,
    template: impl FnOnce() -> String,
) -> &'static str {
    cells[dialect.index()]
        .get_or_init(|| dialect.render(&template()))
        .as_str()
}

/// How a backend hears of work that other processes queue. Only the backend knows (PostgreSQL
/// listens on the channel its triggers notify), so it hands this to the shared store.
#[async_trait]
pub(in crate::store) trait WorkAnnouncements: Send + Sync {
    /// Wakes `wake` for each announcement from now on.
    async fn forward_to(&self, wake: Arc<Notify>) -> Result<(), StoreError>;
}

/// The shared implementation of every store trait.
pub(crate) struct SqlStore {
    /// Reads.
    pub(super) reader: AnyPool,
    /// Every statement that writes (on SQLite one connection, so writes queue on the runtime
    /// instead of in SQLite's busy handler; on PostgreSQL the same pool as reads).
    writer: Writer,
    pub(super) dialect: Dialect,
    /// Where work is announced; None when no other process can queue any (SQLite).
    work_announcements: Option<Box<dyn WorkAnnouncements>>,
    /// Channels whose load row is known to exist (rows are never deleted).
    channels_ready: Mutex<HashSet<ChannelId>>,
    /// Task rows for status polls; every statement that changes a task drops its entry.
    pub(super) tasks: Arc<TaskCache>,
    /// Creates wait here for the next group commit.
    creates: CreateQueue,
    /// Work that lives as long as the store (a notification listener).
    background: Vec<AbortHandle>,
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        for task in &self.background {
            task.abort();
        }
    }
}

impl SqlStore {
    /// Whether `probe` finds a row, read on a reader. Claims ask first: most find nothing, and
    /// a write that finds nothing still holds SQLite's one writer, which creates wait for.
    async fn finds_any<'q>(
        &self,
        probe: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<bool, StoreError> {
        Ok(probe.fetch_optional(&self.reader).await?.is_some())
    }

    pub(super) fn new(
        reader: AnyPool,
        writer: Writer,
        work_announcements: Option<Box<dyn WorkAnnouncements>>,
        tasks: Arc<TaskCache>,
    ) -> Self {
        Self {
            creates: CreateQueue::start(writer.clone(), tasks.clone()),
            reader,
            dialect: writer.dialect(),
            writer,
            work_announcements,
            channels_ready: Mutex::new(HashSet::new()),
            tasks,
            background: Vec::new(),
        }
    }

    pub(super) fn with_background(mut self, task: AbortHandle) -> Self {
        self.background.push(task);
        self
    }

    /// Makes sure `channel` has its load row, so a reservation can lock it.
    async fn ensure_channel_row(&self, channel: &ChannelId) -> Result<(), StoreError> {
        let known = self
            .channels_ready
            .lock()
            .map(|ready| ready.contains(channel))
            .unwrap_or(false);
        if known {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO channel_load (id, in_flight) VALUES ($1, 0) ON CONFLICT (id) DO NOTHING",
        )
        .bind(channel)
        .execute(&mut *self.writer.connection().await?)
        .await?;
        if let Ok(mut ready) = self.channels_ready.lock() {
            ready.insert(channel.clone());
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for SqlStore {
    async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.reader).await.is_ok()
    }

    async fn database_now_ms(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(sql!(self.dialect, "SELECT @now"))
            .fetch_one(&self.reader)
            .await?)
    }

    async fn ping_write(&self) -> bool {
        // A new value each time, so the row is really rewritten.
        let write = async {
            sqlx::query(
                "INSERT INTO settings (name, value) VALUES ('readiness_probe', $1) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )
            .bind(now_ms().to_string())
            .execute(&mut *self.writer.connection().await?)
            .await?;
            Ok::<_, StoreError>(())
        };
        write.await.is_ok()
    }

    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&mut *self.writer.connection().await?)
        .await?;
        self.setting(name)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("setting {name} vanished")))
    }

    async fn figures(&self) -> Result<StoreFigures, StoreError> {
        // Ended tasks are left out: the partial indexes on waiting and leased tasks keep this
        // cheap however many have finished.
        let by_status: Vec<(String, String, i64, i64)> = sqlx::query_as(sql!(
            self.dialect,
            format!(
                "SELECT model, CASE WHEN {} THEN 'pending' ELSE 'processing' END AS status, \
                 COUNT(*), CAST(SUM(CASE WHEN state = '{}' THEN 1 ELSE 0 END) AS BIGINT) \
                 FROM tasks WHERE {} GROUP BY model, status",
                guards::public_status_condition(PublicStatus::Pending),
                TaskState::Queued.as_str(),
                guards::states_sql(crate::lifecycle::OPEN)
            )
        ))
        .fetch_all(&self.reader)
        .await?;
        let queued = by_status.iter().map(|(.., queued)| queued).sum();
        let open_tasks = by_status
            .into_iter()
            .map(|(model, status, count, _)| (model, status, count))
            .collect();
        let webhook_backlog: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'pending'")
                .fetch_one(&self.reader)
                .await?;
        // SUM of BIGINT is NUMERIC on PostgreSQL; the casts keep one integer type on both.
        let (live_balance,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(balance_usd_micros), 0) AS BIGINT) FROM organizations",
        )
        .fetch_one(&self.reader)
        .await?;
        let keys: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT mode, CAST(COALESCE(SUM(balance_usd_micros), 0) AS BIGINT), \
             CAST(COALESCE(SUM(committed_usd_micros - used_usd_micros), 0) AS BIGINT) \
             FROM api_keys GROUP BY mode",
        )
        .fetch_all(&self.reader)
        .await?;
        let mut money = vec![MoneyFigure {
            kind: "balance",
            live: true,
            usd_micros: live_balance,
        }];
        for (mode, balance, reserved) in keys {
            let live = mode == "live";
            if !live {
                money.push(MoneyFigure {
                    kind: "balance",
                    live,
                    usd_micros: balance,
                });
            }
            money.push(MoneyFigure {
                kind: "reserved",
                live,
                usd_micros: reserved,
            });
        }
        Ok(StoreFigures {
            open_tasks,
            queued,
            webhook_backlog,
            money,
        })
    }

    async fn announce_work_to(&self, wake: Arc<Notify>) -> Result<(), StoreError> {
        match &self.work_announcements {
            Some(announcements) => announcements.forward_to(wake).await,
            None => Ok(()),
        }
    }
}
