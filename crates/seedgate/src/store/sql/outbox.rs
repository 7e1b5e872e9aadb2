//! The webhook outbox: deliveries queued in the transaction that ends a task, leased on the
//! database's clock.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::writer::WriteTransaction;
use super::{sql, SqlStore};
use crate::ids::TaskId;
use crate::store::{
    event_for, now_ms, Delivery, DeliveryRecord, StoreError, TaskState, WebhookOutbox,
};

/// Queues the deliveries of a task that has just ended: its own `callback_url` and its
/// account's endpoint, once each.
pub(super) async fn enqueue_deliveries(
    tx: &mut WriteTransaction,
    task_id: &TaskId,
    state: TaskState,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (task_id, account_id, url, event, next_attempt_at_ms, created_at_ms) \
         SELECT t.id, t.account_id, t.callback_url, $2, $3, $3 FROM tasks t \
           WHERE t.id = $1 AND t.callback_url IS NOT NULL \
         UNION ALL \
         SELECT t.id, t.account_id, k.webhook_url, $2, $3, $3 FROM tasks t JOIN api_keys k ON k.id = t.account_id \
           WHERE t.id = $1 AND k.webhook_url IS NOT NULL \
         ON CONFLICT (task_id, url) DO NOTHING",
    )
    .bind(task_id)
    .bind(event_for(state))
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn delivery_from_row(row: &AnyRow) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        id: row.try_get("id")?,
        task_id: row.try_get("task_id")?,
        account_id: row.try_get("account_id")?,
        url: row.try_get("url")?,
        event: row.try_get("event")?,
        attempts: row.try_get("attempts")?,
    })
}

#[async_trait]
impl WebhookOutbox for SqlStore {
    async fn claim_delivery(
        &self,
        owner: &str,
        lease_ms: i64,
    ) -> Result<Option<Delivery>, StoreError> {
        // The notifier looks after every delivery and every idle period, mostly finding
        // nothing due.
        let due = sqlx::query(sql!(
            self.dialect,
            "SELECT 1 FROM webhook_deliveries WHERE state = 'pending' \
             AND next_attempt_at_ms <= @now LIMIT 1"
        ));
        if !self.finds_any(due).await? {
            return Ok(None);
        }
        let row = sqlx::query(sql!(
            self.dialect,
            "UPDATE webhook_deliveries SET attempts = attempts + 1, lease_owner = $1, \
               lease_until_ms = @now + $2 \
             WHERE id = (SELECT id FROM webhook_deliveries WHERE state = 'pending' \
               AND next_attempt_at_ms <= @now \
               AND (lease_until_ms IS NULL OR lease_until_ms < @now) \
               ORDER BY next_attempt_at_ms LIMIT 1@skip_locked) \
             RETURNING id, task_id, account_id, url, event, attempts"
        ))
        .bind(owner)
        .bind(lease_ms)
        .fetch_optional(&mut *self.writer.connection().await?)
        .await?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    async fn record_delivery(
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
            "UPDATE webhook_deliveries SET state = $1, last_status = $2, last_error = $3, \
             next_attempt_at_ms = $4, delivered_at_ms = $5, lease_owner = NULL, \
             lease_until_ms = NULL WHERE id = $6 AND lease_owner = $7",
        )
        .bind(state)
        .bind(status.map(i64::from))
        .bind(error)
        .bind(retry_at_ms.unwrap_or(now))
        .bind(delivered.then_some(now))
        .bind(id)
        .bind(owner)
        .execute(&mut *self.writer.connection().await?)
        .await?;
        Ok(())
    }

    async fn deliveries_for_task(
        &self,
        task_id: &TaskId,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT url, event, state, attempts, last_status, last_error FROM webhook_deliveries \
             WHERE task_id = $1 ORDER BY id",
        )
        .bind(task_id)
        .fetch_all(&self.reader)
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
