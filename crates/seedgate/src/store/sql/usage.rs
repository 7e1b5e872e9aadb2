//! A key's charges for the management API's usage and billing reports, filtered and summed in
//! the database.

use async_trait::async_trait;
use sqlx::Row;

use super::guards::states_sql;
use super::{sql, SqlStore};
use crate::ids::AccountId;
use crate::lifecycle::TaskState;
use crate::store::usage::{
    DayUsage, ModelUsage, UsageFilter, UsageItem, UsageTotals, VendorCharge,
};
use crate::store::{StoreError, UsageReports};

/// The charges of key `$1` that a filter (`$2` model, `$3`..`$4` time) matches.
const CHARGES: &str = "FROM ledger l JOIN tasks t ON t.id = l.task_id \
    WHERE l.account_id = $1 AND l.kind = 'charge' AND ($2 IS NULL OR t.model = $2) \
    AND ($3 IS NULL OR l.created_at >= $3) AND ($4 IS NULL OR l.created_at < $4)";

/// Which leg of draft → final a charged task was: `draft`, `final` or NULL. Read from the
/// task's request echo, which the server writes (compact JSON, with no text a client chose),
/// so the two markers appear exactly when the echo says so, on both backends alike.
const LEG: &str = "CASE WHEN t.request LIKE '%\"draft_task_id\":%' THEN 'final' \
    WHEN t.request LIKE '%\"draft\":true%' THEN 'draft' END";

fn unmatchable(filter: &UsageFilter<'_>) -> bool {
    filter.model.is_some_and(|model| model.contains('\0'))
}

/// The length of a stored result, `duration` in its JSON (0 when unreadable: such a task is
/// not priced by the second).
fn video_seconds(result: Option<&str>) -> f64 {
    result
        .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok())
        .and_then(|result| result["duration"].as_f64())
        .unwrap_or(0.0)
}

#[async_trait]
impl UsageReports for SqlStore {
    async fn vendor_charges(
        &self,
        from_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> Result<Vec<VendorCharge>, StoreError> {
        let rows = sqlx::query(sql!(
            self.dialect,
            format!(
                "SELECT model, provider, channel, COALESCE(usage_tokens, 0) AS tokens, \
                 COALESCE(cost_usd_micros, 0) AS cost, result, upstream_usage_tokens, \
                 upstream_compute_ms, upstream_cost_usd_micros FROM tasks \
                 WHERE {} AND channel IS NOT NULL \
                 AND ($1 IS NULL OR completed_at_ms >= $1) AND ($2 IS NULL OR completed_at_ms < $2) \
                 ORDER BY completed_at_ms",
                states_sql(&[TaskState::Succeeded])
            )
        ))
        .bind(from_ms)
        .bind(until_ms)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(VendorCharge {
                    model: row.try_get("model")?,
                    vendor: row.try_get("provider")?,
                    channel: row.try_get("channel")?,
                    tokens: row.try_get("tokens")?,
                    cost_usd_micros: row.try_get("cost")?,
                    video_seconds: video_seconds(row.try_get("result")?),
                    upstream_tokens: row.try_get("upstream_usage_tokens")?,
                    upstream_compute_ms: row.try_get("upstream_compute_ms")?,
                    upstream_cost_usd_micros: row.try_get("upstream_cost_usd_micros")?,
                })
            })
            .collect()
    }

    async fn charges(
        &self,
        account_id: &AccountId,
        filter: &UsageFilter<'_>,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<UsageItem>, StoreError> {
        if unmatchable(filter) {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sql!(
            self.dialect,
            format!(
                "SELECT l.id, l.task_id, t.model, COALESCE(t.usage_tokens, 0) AS tokens, \
                 l.usd_micros, l.created_at, {LEG} AS leg {CHARGES} ORDER BY l.id DESC LIMIT $5 OFFSET $6"
            )
        ))
        .bind(account_id)
        .bind(filter.model)
        .bind(filter.from_ms)
        .bind(filter.until_ms)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UsageItem {
                    entry_id: row.try_get("id")?,
                    task_id: row.try_get("task_id")?,
                    model: row.try_get("model")?,
                    tokens: row.try_get("tokens")?,
                    cost_usd_micros: -row.try_get::<i64, _>("usd_micros")?,
                    charged_at_ms: row.try_get("created_at")?,
                    leg: row.try_get("leg")?,
                })
            })
            .collect()
    }

    async fn charge_totals(
        &self,
        account_id: &AccountId,
        filter: &UsageFilter<'_>,
    ) -> Result<UsageTotals, StoreError> {
        if unmatchable(filter) {
            return Ok(UsageTotals::default());
        }
        // SUM of BIGINT is NUMERIC on PostgreSQL; the casts keep one integer type on both.
        let mut models: Vec<(String, Option<String>, i64, i64, i64)> = sqlx::query_as(sql!(
            self.dialect,
            format!(
                "SELECT t.model, {LEG} AS leg, COUNT(*), \
                 CAST(SUM(COALESCE(t.usage_tokens, 0)) AS BIGINT), \
                 CAST(-SUM(l.usd_micros) AS BIGINT) {CHARGES} GROUP BY t.model, leg"
            )
        ))
        .bind(account_id)
        .bind(filter.model)
        .bind(filter.from_ms)
        .bind(filter.until_ms)
        .fetch_all(&self.reader)
        .await?;
        // Sorted here: the backends order NULL (a task that is no leg) differently.
        models.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let days: Vec<(i64, String, i64, i64)> = sqlx::query_as(sql!(
            self.dialect,
            format!(
                "SELECT l.created_at / 86400000 AS day, t.model, COUNT(*), \
                 CAST(-SUM(l.usd_micros) AS BIGINT) \
                 {CHARGES} GROUP BY l.created_at / 86400000, t.model ORDER BY day, t.model"
            )
        ))
        .bind(account_id)
        .bind(filter.model)
        .bind(filter.from_ms)
        .bind(filter.until_ms)
        .fetch_all(&self.reader)
        .await?;
        Ok(UsageTotals {
            by_model: models
                .into_iter()
                .map(
                    |(model, leg, requests, tokens, cost_usd_micros)| ModelUsage {
                        model,
                        leg,
                        requests,
                        tokens,
                        cost_usd_micros,
                    },
                )
                .collect(),
            by_day_and_model: days
                .into_iter()
                .map(|(day, model, requests, cost_usd_micros)| DayUsage {
                    day_start_ms: day * crate::store::usage::DAY_MS,
                    model,
                    requests,
                    cost_usd_micros,
                })
                .collect(),
        })
    }
}
