//! The append-only ledger. `api_keys.balance_usd_micros` is a running total kept in the same
//! transaction as every entry, so a balance check costs one row read; `ledger_sum` is the audit
//! that proves the two agree.

use sqlx::{Sqlite, Transaction};

use super::{now_ms, Store, StoreError};

/// What an entry records. Signs: top-ups and releases add, reserves and charges subtract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerKind {
    TopUp,
    Reserve,
    Release,
    Charge,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::TopUp => "top_up",
            LedgerKind::Reserve => "reserve",
            LedgerKind::Release => "release",
            LedgerKind::Charge => "charge",
        }
    }
}

/// Appends one entry and moves the running balance by `usd_micros` (already signed).
pub(super) async fn append(
    tx: &mut Transaction<'static, Sqlite>,
    account_id: &str,
    task_id: Option<&str>,
    kind: LedgerKind,
    usd_micros: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO ledger (account_id, task_id, kind, usd_micros, created_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(account_id)
    .bind(task_id)
    .bind(kind.as_str())
    .bind(usd_micros)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE api_keys SET balance_usd_micros = balance_usd_micros + ? WHERE id = ?")
        .bind(usd_micros)
        .bind(account_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn balance(
    tx: &mut Transaction<'static, Sqlite>,
    account_id: &str,
) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT balance_usd_micros FROM api_keys WHERE id = ?")
            .bind(account_id)
            .fetch_one(&mut **tx)
            .await?,
    )
}

impl Store {
    /// The sum of every ledger entry of an account: must always equal its stored balance.
    pub async fn ledger_sum(&self, account_id: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(SUM(usd_micros), 0) FROM ledger WHERE account_id = ?",
        )
        .bind(account_id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// A task's ledger entries as (kind, signed amount), oldest first: the audit trail.
    pub async fn ledger_entries_for_task(
        &self,
        task_id: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT kind, usd_micros FROM ledger WHERE task_id = ? ORDER BY id")
                .bind(task_id)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows)
    }

    /// Number of ledger entries touching a task (tests use it to prove nothing was written).
    pub async fn ledger_entries_for_account(&self, account_id: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM ledger WHERE account_id = ?")
                .bind(account_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
