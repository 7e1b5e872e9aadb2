//! Webhook deliveries: rows enqueued in the transaction that ends a task, then leased and
//! retried by the notifier until delivered or out of attempts.

use rand::RngCore;
use sqlx::{Row, Sqlite, Transaction};

use super::{now_ms, Store, StoreError, TaskState};

/// One delivery to attempt.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: i64,
    pub task_id: String,
    pub account_id: String,
    pub url: String,
    pub event: String,
    pub attempts: i64,
}

/// A delivery as tests and operators inspect it.
#[derive(Clone, Debug)]
pub struct DeliveryRecord {
    pub url: String,
    pub event: String,
    pub state: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

/// The event name of a terminal state (the `Seedgate-Event` header).
pub fn event_for(state: TaskState) -> &'static str {
    match state {
        TaskState::Succeeded => "task.completed",
        TaskState::Cancelled => "task.cancelled",
        TaskState::Expired => "task.expired",
        _ => "task.failed",
    }
}

/// Queues the deliveries of a task that has just ended: its own `callback_url` and its
/// account's endpoint, once each.
pub(super) async fn enqueue(
    tx: &mut Transaction<'static, Sqlite>,
    task_id: &str,
    state: TaskState,
) -> Result<(), StoreError> {
    let now = now_ms();
    sqlx::query(
        "INSERT OR IGNORE INTO webhook_deliveries (task_id, account_id, url, event, next_attempt_at_ms, created_at_ms) \
         SELECT t.id, t.account_id, t.callback_url, ?2, ?3, ?3 FROM tasks t \
           WHERE t.id = ?1 AND t.callback_url IS NOT NULL \
         UNION ALL \
         SELECT t.id, t.account_id, k.webhook_url, ?2, ?3, ?3 FROM tasks t JOIN api_keys k ON k.id = t.account_id \
           WHERE t.id = ?1 AND k.webhook_url IS NOT NULL",
    )
    .bind(task_id)
    .bind(event_for(state))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn delivery_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        id: row.try_get("id")?,
        task_id: row.try_get("task_id")?,
        account_id: row.try_get("account_id")?,
        url: row.try_get("url")?,
        event: row.try_get("event")?,
        attempts: row.try_get("attempts")?,
    })
}

impl Store {
    /// Leases the next due delivery.
    pub async fn claim_delivery(
        &self,
        owner: &str,
        lease_ms: i64,
    ) -> Result<Option<Delivery>, StoreError> {
        let now = now_ms();
        let row = sqlx::query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, lease_owner = ?2, lease_until_ms = ?3 \
             WHERE id = (SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at_ms <= ?1 \
                         AND (lease_until_ms IS NULL OR lease_until_ms < ?1) ORDER BY next_attempt_at_ms LIMIT 1) \
             RETURNING id, task_id, account_id, url, event, attempts",
        )
        .bind(now)
        .bind(owner)
        .bind(now + lease_ms)
        .fetch_optional(&self.writer)
        .await?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    /// Records an attempt: delivered, retried at `retry_at_ms`, or (None) given up.
    pub async fn record_delivery(
        &self,
        id: i64,
        owner: &str,
        delivered: bool,
        status: Option<u16>,
        error: Option<&str>,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let state = match (delivered, retry_at_ms) {
            (true, _) => "delivered",
            (false, Some(_)) => "pending",
            (false, None) => "failed",
        };
        let now = now_ms();
        sqlx::query(
            "UPDATE webhook_deliveries SET state = ?, last_status = ?, last_error = ?, next_attempt_at_ms = ?, \
             delivered_at_ms = CASE WHEN ? THEN ? ELSE NULL END, lease_owner = NULL, lease_until_ms = NULL \
             WHERE id = ? AND lease_owner = ?",
        )
        .bind(state)
        .bind(status.map(i64::from))
        .bind(error)
        .bind(retry_at_ms.unwrap_or(now))
        .bind(delivered)
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// The account's signing secret, created on first use.
    pub async fn webhook_secret(&self, account_id: &str) -> Result<String, StoreError> {
        let mut bytes = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut bytes);
        sqlx::query(
            "UPDATE api_keys SET webhook_secret = ? WHERE id = ? AND webhook_secret IS NULL",
        )
        .bind(format!("whsec_{}", hex::encode(bytes)))
        .bind(account_id)
        .execute(&self.writer)
        .await?;
        sqlx::query_scalar("SELECT webhook_secret FROM api_keys WHERE id = ?")
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("no account {account_id}")))
    }

    /// Sets (or clears) the account-wide endpoint; false for an unknown key.
    pub async fn set_webhook_url(
        &self,
        account_id: &str,
        url: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE api_keys SET webhook_url = ? WHERE id = ?")
            .bind(url)
            .bind(account_id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn deliveries_for_task(
        &self,
        task_id: &str,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT url, event, state, attempts, last_status, last_error FROM webhook_deliveries \
             WHERE task_id = ? ORDER BY id",
        )
        .bind(task_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryRecord {
                    url: r.try_get("url")?,
                    event: r.try_get("event")?,
                    state: r.try_get("state")?,
                    attempts: r.try_get("attempts")?,
                    last_status: r.try_get("last_status")?,
                    last_error: r.try_get("last_error")?,
                })
            })
            .collect()
    }
}
