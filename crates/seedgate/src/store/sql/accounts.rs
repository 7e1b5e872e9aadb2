//! API keys (the accounts) and the append-only ledger beside their running balances.

use async_trait::async_trait;
use rand::distributions::Alphanumeric;
use rand::{Rng, RngCore};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::SqlStore;
use crate::ids::{AccountId, TaskId};
use crate::store::{hash_key, Account, AccountStore, KeyMode, LedgerKind, NewKey, StoreError};

/// Appends one entry and moves the running balance by `usd_micros` (already signed), in the
/// caller's transaction.
pub(super) async fn append_ledger(
    tx: &mut Transaction<'static, Any>,
    account_id: &AccountId,
    task_id: Option<&TaskId>,
    kind: LedgerKind,
    usd_micros: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE api_keys SET balance_usd_micros = balance_usd_micros + $1 WHERE id = $2")
        .bind(usd_micros)
        .bind(account_id)
        .execute(&mut **tx)
        .await?;
    insert_entry(tx, account_id, task_id, kind, usd_micros).await
}

async fn insert_entry(
    tx: &mut Transaction<'static, Any>,
    account_id: &AccountId,
    task_id: Option<&TaskId>,
    kind: LedgerKind,
    usd_micros: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO ledger (account_id, task_id, kind, usd_micros, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(account_id)
    .bind(task_id)
    .bind(kind.as_str())
    .bind(usd_micros)
    .bind(crate::store::now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Takes `usd_micros` from the balance for a task, only if the balance covers it: the check
/// and the debit are one statement, so concurrent creates can never overspend.
pub(super) async fn reserve_funds(
    tx: &mut Transaction<'static, Any>,
    account_id: &AccountId,
    task_id: &TaskId,
    usd_micros: i64,
) -> Result<(), StoreError> {
    let debited: Option<i64> = sqlx::query_scalar(
        "UPDATE api_keys SET balance_usd_micros = balance_usd_micros - $1 \
         WHERE id = $2 AND balance_usd_micros >= $1 RETURNING balance_usd_micros",
    )
    .bind(usd_micros)
    .bind(account_id)
    .fetch_optional(&mut **tx)
    .await?;
    if debited.is_none() {
        let balance: i64 =
            sqlx::query_scalar("SELECT balance_usd_micros FROM api_keys WHERE id = $1")
                .bind(account_id)
                .fetch_one(&mut **tx)
                .await?;
        return Err(StoreError::InsufficientBalance {
            balance_usd_micros: balance,
            required_usd_micros: usd_micros,
        });
    }
    insert_entry(
        tx,
        account_id,
        Some(task_id),
        LedgerKind::Reserve,
        -usd_micros,
    )
    .await
}

fn account_from_row(row: &AnyRow) -> Result<Account, StoreError> {
    Ok(Account {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        key_prefix: row.try_get("key_prefix")?,
        mode: KeyMode::parse(row.try_get::<&str, _>("mode")?)?,
        balance_usd_micros: row.try_get("balance_usd_micros")?,
        created_at_ms: row.try_get("created_at")?,
        revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
        requests_per_second: limit(row, "requests_per_second")?,
        max_concurrent_tasks: limit(row, "max_concurrent_tasks")?,
    })
}

fn limit(row: &AnyRow, column: &str) -> Result<Option<u32>, StoreError> {
    row.try_get::<Option<i64>, _>(column)?
        .map(|n| u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{column} {n}"))))
        .transpose()
}

const ACCOUNT_COLUMNS: &str = "id, name, key_prefix, mode, balance_usd_micros, created_at, \
    revoked_at, requests_per_second, max_concurrent_tasks";

#[async_trait]
impl AccountStore for SqlStore {
    async fn create_key(
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
        let id = AccountId::mint();
        let key_prefix: String = secret.chars().take(12).collect();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO api_keys (id, name, key_hash, key_prefix, mode, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(name)
        .bind(hash_key(&secret))
        .bind(&key_prefix)
        .bind(mode.as_str())
        .bind(crate::store::now_ms())
        .execute(&mut *tx)
        .await?;
        if opening_balance_usd_micros > 0 {
            append_ledger(
                &mut tx,
                &id,
                None,
                LedgerKind::TopUp,
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

    async fn account_by_secret(&self, secret: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(super::sql!(
            self.dialect,
            format!(
                "SELECT {ACCOUNT_COLUMNS} FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL"
            )
        ))
        .bind(hash_key(secret))
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(super::sql!(
            self.dialect,
            format!("SELECT {ACCOUNT_COLUMNS} FROM api_keys WHERE id = $1")
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn list_keys(&self) -> Result<Vec<Account>, StoreError> {
        let rows = sqlx::query(super::sql!(
            self.dialect,
            format!("SELECT {ACCOUNT_COLUMNS} FROM api_keys ORDER BY created_at, id")
        ))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(account_from_row).collect()
    }

    async fn count_keys(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.reader)
            .await?)
    }

    async fn set_key_limits(
        &self,
        id: &AccountId,
        requests_per_second: Option<u32>,
        max_concurrent_tasks: Option<u32>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET requests_per_second = $1, max_concurrent_tasks = $2 WHERE id = $3",
        )
        .bind(requests_per_second.map(i64::from))
        .bind(max_concurrent_tasks.map(i64::from))
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_key(&self, id: &AccountId) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(crate::store::now_ms())
                .bind(id)
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn top_up(&self, id: &AccountId, usd_micros: i64) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let balance: Option<i64> = sqlx::query_scalar(
            "UPDATE api_keys SET balance_usd_micros = balance_usd_micros + $1 WHERE id = $2 \
             RETURNING balance_usd_micros",
        )
        .bind(usd_micros)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(balance) = balance else {
            return Ok(None);
        };
        insert_entry(&mut tx, id, None, LedgerKind::TopUp, usd_micros).await?;
        tx.commit().await?;
        Ok(Some(balance))
    }

    async fn ledger_sum(&self, account_id: &AccountId) -> Result<i64, StoreError> {
        // SUM of BIGINT is NUMERIC on PostgreSQL; the cast keeps one integer type on both.
        Ok(sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(usd_micros), 0) AS BIGINT) FROM ledger WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_one(&self.reader)
        .await?)
    }

    async fn ledger_entries_for_task(
        &self,
        task_id: &TaskId,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT kind, usd_micros FROM ledger WHERE task_id = $1 ORDER BY id")
                .bind(task_id)
                .fetch_all(&self.reader)
                .await?,
        )
    }

    async fn ledger_entries_for_account(&self, account_id: &AccountId) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM ledger WHERE account_id = $1")
                .bind(account_id)
                .fetch_one(&self.reader)
                .await?,
        )
    }

    async fn webhook_secret(&self, account_id: &AccountId) -> Result<String, StoreError> {
        let mut bytes = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut bytes);
        // The first writer's secret stands; later callers read it back.
        sqlx::query(
            "UPDATE api_keys SET webhook_secret = $1 WHERE id = $2 AND webhook_secret IS NULL",
        )
        .bind(format!("whsec_{}", hex::encode(bytes)))
        .bind(account_id)
        .execute(&self.writer)
        .await?;
        sqlx::query_scalar("SELECT webhook_secret FROM api_keys WHERE id = $1")
            .bind(account_id)
            .fetch_optional(&self.reader)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("no account {account_id}")))
    }

    async fn set_webhook_url(
        &self,
        account_id: &AccountId,
        url: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE api_keys SET webhook_url = $1 WHERE id = $2")
            .bind(url)
            .bind(account_id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
