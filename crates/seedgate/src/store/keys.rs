//! API keys. A key is also the account: it owns a balance, a ledger and tasks.

use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{ledger, now_ms, Store, StoreError};

/// Live keys reach the configured upstream channels; test keys always use the sandbox with play money.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyMode {
    Live,
    Test,
}

impl KeyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyMode::Live => "live",
            KeyMode::Test => "test",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "live" => Ok(KeyMode::Live),
            "test" => Ok(KeyMode::Test),
            other => Err(StoreError::Corrupt(format!("unknown key mode {other}"))),
        }
    }
}

/// An account as the rest of the system sees it; never carries the secret.
#[derive(Clone, Debug)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub key_prefix: String,
    pub mode: KeyMode,
    pub balance_usd_micros: i64,
    pub created_at_ms: i64,
    pub revoked: bool,
    /// This key's own limits; None means the server's default.
    pub requests_per_second: Option<u32>,
    pub max_concurrent_tasks: Option<u32>,
}

/// A freshly created key: the only moment the plaintext exists outside the caller's hands.
pub struct NewKey {
    pub account: Account,
    pub secret: String,
}

/// The stored form of a key: SHA-256 is enough because keys carry ≥ 128 random bits.
pub fn hash_key(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

fn account_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Account, StoreError> {
    Ok(Account {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        key_prefix: row.try_get("key_prefix")?,
        mode: KeyMode::parse(row.try_get::<&str, _>("mode")?)?,
        balance_usd_micros: row.try_get("balance_usd_micros")?,
        created_at_ms: row.try_get("created_at")?,
        revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
        requests_per_second: row.try_get("requests_per_second")?,
        max_concurrent_tasks: row.try_get("max_concurrent_tasks")?,
    })
}

const ACCOUNT_COLUMNS: &str = "id, name, key_prefix, mode, balance_usd_micros, created_at, \
    revoked_at, requests_per_second, max_concurrent_tasks";

impl Store {
    /// Creates a key with an opening balance (recorded as a `top_up` ledger entry).
    pub async fn create_key(
        &self,
        name: &str,
        mode: KeyMode,
        opening_balance_usd_micros: i64,
    ) -> Result<NewKey, StoreError> {
        let random: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(40)
            .map(char::from)
            .collect();
        let secret = format!("sg_{}_{random}", mode.as_str());
        let id = format!("key_{}", ulid::Ulid::new());
        let key_prefix: String = secret.chars().take(12).collect();
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO api_keys (id, name, key_hash, key_prefix, mode, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(name)
        .bind(hash_key(&secret))
        .bind(&key_prefix)
        .bind(mode.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if opening_balance_usd_micros > 0 {
            ledger::append(
                &mut tx,
                &id,
                None,
                ledger::LedgerKind::TopUp,
                opening_balance_usd_micros,
            )
            .await?;
        }
        tx.commit().await?;
        let account = self
            .account(&id)
            .await?
            .ok_or_else(|| StoreError::Corrupt("new key vanished".into()))?;
        Ok(NewKey { account, secret })
    }

    /// The active account a presented key belongs to, if any.
    pub async fn account_by_secret(&self, secret: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL"
        ))
        .bind(hash_key(secret))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    pub async fn account(&self, id: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM api_keys WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    pub async fn list_keys(&self) -> Result<Vec<Account>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM api_keys ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(account_from_row).collect()
    }

    pub async fn count_keys(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Sets (or with None clears) a key's own limits; false for an unknown key.
    pub async fn set_key_limits(
        &self,
        id: &str,
        requests_per_second: Option<u32>,
        max_concurrent_tasks: Option<u32>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET requests_per_second = ?, max_concurrent_tasks = ? WHERE id = ?",
        )
        .bind(requests_per_second)
        .bind(max_concurrent_tasks)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Revokes a key; returns false when no such active key exists.
    pub async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(now_ms())
                .bind(id)
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Adds funds; returns the new balance, or None for an unknown key.
    pub async fn top_up(&self, id: &str, usd_micros: i64) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM api_keys WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        ledger::append(&mut tx, id, None, ledger::LedgerKind::TopUp, usd_micros).await?;
        let balance = ledger::balance(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Some(balance))
    }
}
