//! Durable state: keys (accounts), tasks, the ledger and settings, in SQLite (WAL).
//!
//! Every multi-row change is one `BEGIN IMMEDIATE` transaction, and every task transition is a
//! [`Transition`] of the state machine, written as one `UPDATE … WHERE <its guard>`, so two
//! workers can never both move the same task and a terminal state never changes again.
//!
//! SQLite has one writer at a time. Writes go through a pool of one connection, so they queue
//! in order on the runtime instead of in SQLite's busy handler, which sleeps in growing steps
//! (hundreds of milliseconds under load); reads use a pool of their own and never wait for
//! writes (WAL).

mod keys;
mod ledger;
mod tasks;
mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use keys::{Account, KeyMode, NewKey};
pub use ledger::LedgerKind;
pub use tasks::{
    public_status, Created, IdempotencyKey, NewTask, PollSeen, PublicStatus, Settlement,
    TaskFailure, TaskFilter, TaskRecord, TaskState, Transition, Unpaid, UpstreamPhase,
    UpstreamSubmission, IN_FLIGHT,
};
pub use webhooks::{event_for, Delivery, DeliveryRecord};

/// Failures of the storage layer; the API maps them to 5xx (our fault) except the business outcomes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "insufficient balance: {balance_usd_micros} available, {required_usd_micros} required"
    )]
    InsufficientBalance {
        balance_usd_micros: i64,
        required_usd_micros: i64,
    },
    #[error("idempotency key reused with a different request")]
    IdempotencyConflict,
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// Reads.
    pool: SqlitePool,
    /// Every statement that writes, one at a time.
    writer: SqlitePool,
}

/// Milliseconds since the Unix epoch: the one clock every row uses.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the database at `database_url` and applies pending migrations.
    pub async fn connect(database_url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(database_url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL loses nothing when the process dies (kill -9); only an OS crash can
            // drop the last commits. That trade is what makes thousands of creates per second possible.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations").run(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(options)
            .await?;
        Ok(Self { pool, writer })
    }

    /// Whether the database answers; backs `/readyz`.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Reads a named setting (e.g. the asset-signing secret).
    pub async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Stores `value` under `name` unless one is there already, and returns the stored value, so
    /// concurrent first starts agree on one secret.
    pub async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.writer)
        .await?;
        self.setting(name)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("setting {name} vanished")))
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        // IMMEDIATE takes the write lock up front, so a read-then-write transaction cannot fail
        // half way with SQLITE_BUSY when another writer slips in.
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

#[cfg(test)]
mod tests;
