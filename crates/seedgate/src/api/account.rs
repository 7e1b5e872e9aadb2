//! The caller's own key (`/v1/account`): what it can spend and what it has spent, day by day.
//! The web console's header and spending chart read these.

use axum::extract::rejection::QueryRejection;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Authed;
use super::error::{error_responses, invalid_query, HttpError};
use super::query::Query;
use super::ApiState;
use crate::management::{rfc3339, DEFAULT_USAGE_DAYS};
use crate::service::{usd, usd_number};

/// The key that made the request.
#[derive(Serialize, ToSchema)]
pub struct AccountObject {
    /// Always `account`.
    object: &'static str,
    /// The key's id.
    id: String,
    name: String,
    /// `live` (spends its organization's balance) or `test` (its own play money, sandbox only).
    mode: &'static str,
    organization_id: String,
    /// What the key can spend now, in USD.
    #[schema(value_type = f64)]
    balance: serde_json::Value,
    /// The balance as an exact decimal string.
    balance_decimal: String,
    /// Always `USD`.
    currency: &'static str,
    /// What the key has been charged.
    used_amount_decimal: String,
    /// The key's spending cap; null is unlimited.
    limit_amount_decimal: Option<String>,
    /// Models the key may use; empty is every model.
    models: Vec<String>,
    expires_at: Option<String>,
    created_at: String,
}

/// The key's balance and limits.
#[utoipa::path(
    get,
    path = "/v1/account",
    operation_id = "get_account",
    tag = "account",
    responses((status = 200, description = "The calling key.", body = AccountObject)),
    security(("api_key" = [])),
)]
pub async fn get(
    State(state): State<ApiState>,
    Authed(key): Authed,
) -> Result<Json<AccountObject>, HttpError> {
    let account = state.services.accounts.current(key).await?;
    Ok(Json(AccountObject {
        object: "account",
        id: account.id.to_string(),
        name: account.name,
        mode: account.mode.as_str(),
        organization_id: account.organization_id.to_string(),
        balance: usd_number(account.balance_usd_micros),
        balance_decimal: usd(account.balance_usd_micros),
        currency: "USD",
        used_amount_decimal: usd(account.used_usd_micros),
        limit_amount_decimal: account.limit_usd_micros.map(usd),
        models: account.models,
        expires_at: account.expires_at_ms.map(rfc3339),
        created_at: rfc3339(account.created_at_ms),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// How many UTC days back, today included: 1–90, default 30.
    #[param(minimum = 1, maximum = 90)]
    days: Option<i64>,
}

/// What one model cost on one day.
#[derive(Serialize, ToSchema)]
pub struct DailySpend {
    /// `YYYY-MM-DD`, UTC.
    date: String,
    model: String,
    /// Completed tasks charged.
    requests: i64,
    #[schema(value_type = f64)]
    cost: serde_json::Value,
    cost_decimal: String,
}

/// What one model cost over the whole window.
#[derive(Serialize, ToSchema)]
pub struct ModelSpend {
    model: String,
    /// `draft` or `final` on the lines of those legs of draft → final, each apart from the
    /// model's other tasks; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    leg: Option<String>,
    requests: i64,
    tokens: i64,
    cost_decimal: String,
}

/// The key's charges over the last days, from the ledger.
#[derive(Serialize, ToSchema)]
pub struct AccountUsage {
    /// Always `account_usage`.
    object: &'static str,
    /// The first day of the window (`YYYY-MM-DD`, UTC); the window ends now.
    start_date: String,
    days: i64,
    /// Always `USD`.
    currency: &'static str,
    total_cost_decimal: String,
    /// Days with charges only, oldest first; models in name order within a day.
    daily: Vec<DailySpend>,
    by_model: Vec<ModelSpend>,
}

fn date(ms: i64) -> String {
    rfc3339(ms)[..10].to_owned()
}

error_responses! {
    /// The refusals of the usage report.
    struct UsageErrors(Platform) {
        InvalidQuery | InvalidDays;
    }
}

/// Spending per day and model: every charge of a completed task in the window. Failed and
/// cancelled tasks cost nothing and do not appear.
#[utoipa::path(
    get,
    path = "/v1/account/usage",
    operation_id = "get_account_usage",
    tag = "account",
    params(UsageQuery),
    responses(
        (status = 200, description = "The key's charges by day and model.", body = AccountUsage),
        UsageErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn usage(
    State(state): State<ApiState>,
    Authed(account): Authed,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<AccountUsage>, HttpError> {
    let Query(query) = query.map_err(invalid_query)?;
    let days = query.days.unwrap_or(DEFAULT_USAGE_DAYS);
    let (totals, first_day_ms) = state.services.accounts.usage(&account, days).await?;
    Ok(Json(AccountUsage {
        object: "account_usage",
        start_date: date(first_day_ms),
        days,
        currency: "USD",
        total_cost_decimal: usd(totals.cost_usd_micros()),
        daily: totals
            .by_day_and_model
            .iter()
            .map(|d| DailySpend {
                date: date(d.day_start_ms),
                model: d.model.clone(),
                requests: d.requests,
                cost: usd_number(d.cost_usd_micros),
                cost_decimal: usd(d.cost_usd_micros),
            })
            .collect(),
        by_model: totals
            .by_model
            .iter()
            .map(|m| ModelSpend {
                model: m.model.clone(),
                leg: m.leg.clone(),
                requests: m.requests,
                tokens: m.tokens,
                cost_decimal: usd(m.cost_usd_micros),
            })
            .collect(),
    }))
}
