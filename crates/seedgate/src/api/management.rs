//! The management API (`/v1/management/*`), with an organization's management token as bearer:
//! its balance, its API keys (create, list, update) and what each key was charged.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::OrgAuthed;
use super::error::{error_responses, invalid_query, HttpError};
use super::query::Query;
use super::tasks::body_error;
use super::ApiState;
use crate::ids::AccountId;
use crate::management::{page, rfc3339, ReportQuery, MODEL_VENDOR, SCENE};
use crate::service::{usd, usd_number};
use crate::store::usage::{UsageItem, UsageTotals};
use crate::store::Account;

/// A key as its organization sees it; the secret only in the answer that created it.
#[derive(Serialize, ToSchema)]
pub struct ManagementApiKey {
    id: String,
    name: String,
    key_prefix: String,
    /// `active`, `inactive` or `revoked`.
    status: &'static str,
    /// The spending cap in USD; null is unlimited.
    #[schema(value_type = Option<f64>)]
    limit_amount: serde_json::Value,
    /// The cap as an exact decimal string.
    limit_amount_decimal: Option<String>,
    /// What the key has been charged, in USD.
    #[schema(value_type = f64)]
    used_amount: serde_json::Value,
    used_amount_decimal: String,
    models: Vec<String>,
    expires_at: Option<String>,
    last_used_at: Option<String>,
    created_at: String,
    /// The full secret, returned only on creation. Store it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

fn key_view(account: &Account, secret: Option<String>) -> ManagementApiKey {
    ManagementApiKey {
        id: account.id.to_string(),
        name: account.name.clone(),
        key_prefix: account.key_prefix.clone(),
        status: account.status.as_str(),
        limit_amount: account
            .limit_usd_micros
            .map_or(serde_json::Value::Null, usd_number),
        limit_amount_decimal: account.limit_usd_micros.map(usd),
        used_amount: usd_number(account.used_usd_micros),
        used_amount_decimal: usd(account.used_usd_micros),
        models: account.models.clone(),
        expires_at: account.expires_at_ms.map(rfc3339),
        last_used_at: account.last_used_at_ms.map(rfc3339),
        created_at: rfc3339(account.created_at_ms),
        key: secret,
    }
}

#[derive(Serialize, ToSchema)]
pub struct ManagementBalance {
    /// `organization_balance`.
    object: &'static str,
    organization_id: String,
    #[schema(value_type = f64)]
    balance: serde_json::Value,
    balance_decimal: String,
    #[schema(value_type = f64)]
    total_recharge: serde_json::Value,
    total_recharge_decimal: String,
    #[schema(value_type = f64)]
    total_used: serde_json::Value,
    total_used_decimal: String,
}

/// The organization's live balance and what has gone in and out of it.
#[utoipa::path(
    get,
    path = "/v1/management/balance",
    operation_id = "get_management_balance",
    tag = "management",
    responses((status = 200, description = "The organization's balance.", body = ManagementBalance)),
    security(("management_token" = [])),
)]
pub async fn balance(OrgAuthed(organization): OrgAuthed) -> Json<ManagementBalance> {
    Json(ManagementBalance {
        object: "organization_balance",
        organization_id: organization.id.to_string(),
        balance: usd_number(organization.balance_usd_micros),
        balance_decimal: usd(organization.balance_usd_micros),
        total_recharge: usd_number(organization.total_recharge_usd_micros),
        total_recharge_decimal: usd(organization.total_recharge_usd_micros),
        total_used: usd_number(organization.total_used_usd_micros),
        total_used_decimal: usd(organization.total_used_usd_micros),
    })
}

#[derive(Serialize, ToSchema)]
pub struct Pagination {
    page: i64,
    limit: i64,
    total: i64,
    #[serde(rename = "totalPages")]
    total_pages: i64,
}

impl Pagination {
    fn new(page: i64, limit: i64, total: i64) -> Self {
        Self {
            page,
            limit,
            total,
            total_pages: (total + limit - 1) / limit,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ManagementApiKeyList {
    /// `list`.
    object: &'static str,
    data: Vec<ManagementApiKey>,
    pagination: Pagination,
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1-based page; default 1.
    page: Option<i64>,
    /// 1–100; default 50.
    limit: Option<i64>,
}

error_responses! {
    /// The refusals of the key list.
    struct KeyListErrors(Platform) {
        InvalidPage | InvalidLimit;
    }
}

/// The organization's API keys, oldest first.
#[utoipa::path(
    get,
    path = "/v1/management/api-keys",
    operation_id = "list_management_api_keys",
    tag = "management",
    params(PageQuery),
    responses(
        (status = 200, description = "One page of keys.", body = ManagementApiKeyList),
        KeyListErrors,
    ),
    security(("management_token" = [])),
)]
pub async fn list_keys(
    State(state): State<ApiState>,
    OrgAuthed(organization): OrgAuthed,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<ManagementApiKeyList>, HttpError> {
    let Query(query) = query.map_err(invalid_query)?;
    let (page, limit) = page(query.page, query.limit)?;
    let (keys, total) = state
        .services
        .management
        .keys(&organization, page, limit)
        .await?;
    Ok(Json(ManagementApiKeyList {
        object: "list",
        data: keys.iter().map(|k| key_view(k, None)).collect(),
        pagination: Pagination::new(page, limit, total),
    }))
}

error_responses! {
    /// The refusals of a key's creation.
    struct NewKeyErrors(Platform) {
        InvalidName | InvalidLimitAmount | CurrencyRetired | InvalidCurrency | InvalidModels
            | InvalidExpiresAt | InvalidJson;
    }
}

/// Creates a live key of the organization, spending its balance. The secret is in this answer
/// only; the server keeps its hash.
#[utoipa::path(
    post,
    path = "/v1/management/api-keys",
    operation_id = "create_management_api_key",
    tag = "management",
    request_body(content = serde_json::Value, description = "`name` (1–50 characters, default `Default Key`), `limitAmount` (USD 0–1,000,000, null: unlimited), `limitCurrency` (`USD`), `models` (allow-list; empty: all), `expiresAt` (RFC 3339, null: never)."),
    responses(
        (status = 201, description = "The key, with its secret.", body = ManagementApiKey),
        NewKeyErrors,
    ),
    security(("management_token" = [])),
)]
pub async fn create_key(
    State(state): State<ApiState>,
    OrgAuthed(organization): OrgAuthed,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let body = body.map_err(body_error)?;
    let created = state
        .services
        .management
        .create_key(&organization, &body)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(key_view(&created.account, Some(created.secret))),
    )
        .into_response())
}

error_responses! {
    /// The refusals of a key's update.
    struct KeyUpdateErrors(Platform) {
        EmptyUpdate | InvalidName | InvalidStatus | InvalidLimitAmount | CurrencyRetired
            | InvalidCurrency | InvalidModels | InvalidExpiresAt | InvalidJson;
        ApiKeyNotFound: "no such key in this organization.";
        ApiKeyRevoked: "a revoked key stays revoked.";
    }
}

/// Renames a key, changes its cap, allow-list or expiry, or switches it off, on or for good.
#[utoipa::path(
    patch,
    path = "/v1/management/api-keys/{keyId}",
    operation_id = "update_management_api_key",
    tag = "management",
    params(("keyId" = String, Path, description = "The key's `id`.")),
    request_body(content = serde_json::Value, description = "At least one of `name`, `status` (`active`, `inactive`, `revoked`), `limitAmount`, `limitCurrency`, `models`, `expiresAt`; null clears the cap or the expiry."),
    responses(
        (status = 200, description = "The key as it now stands.", body = ManagementApiKey),
        KeyUpdateErrors,
    ),
    security(("management_token" = [])),
)]
pub async fn update_key(
    State(state): State<ApiState>,
    OrgAuthed(organization): OrgAuthed,
    Path(key_id): Path<AccountId>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ManagementApiKey>, HttpError> {
    let body = body.map_err(body_error)?;
    let account = state
        .services
        .management
        .update_key(&organization, &key_id, &body)
        .await?;
    Ok(Json(key_view(&account, None)))
}

#[derive(Serialize, ToSchema)]
pub struct UsageUnitQuantity {
    usage_unit: &'static str,
    #[schema(value_type = f64)]
    usage_quantity: i64,
}

#[derive(Serialize, ToSchema)]
pub struct UsageSummary {
    total_requests: i64,
    #[schema(value_type = f64)]
    total_cost: serde_json::Value,
    total_cost_decimal: String,
    total_prompt_tokens: i64,
    total_completion_tokens: i64,
    total_tokens: i64,
    usage_unit_breakdown: Vec<UsageUnitQuantity>,
}

#[derive(Serialize, ToSchema)]
pub struct VendorBreakdown {
    model_vendor: &'static str,
    requests: i64,
    #[schema(value_type = f64)]
    cost: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct SceneBreakdown {
    scene: &'static str,
    requests: i64,
    #[schema(value_type = f64)]
    cost: serde_json::Value,
    cost_decimal: String,
}

#[derive(Serialize, ToSchema)]
pub struct DailyCost {
    /// The UTC day's start.
    date: String,
    #[schema(value_type = f64)]
    cost: serde_json::Value,
    cost_decimal: String,
}

#[derive(Serialize, ToSchema, Clone)]
pub struct ModelBreakdown {
    model: String,
    logical_model: String,
    model_vendor: &'static str,
    requests: i64,
    #[schema(value_type = f64)]
    cost: serde_json::Value,
    cost_decimal: String,
    /// Tokens.
    #[schema(value_type = f64)]
    usage_quantity: i64,
    usage_quantity_decimal: String,
    /// `draft` or `final` on the lines of those legs of draft → final, each apart from the
    /// model's other tasks; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    leg: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Breakdowns {
    by_model_vendor: Vec<VendorBreakdown>,
    by_scene: Vec<SceneBreakdown>,
    daily_cost: Vec<DailyCost>,
    by_model: Vec<ModelBreakdown>,
    by_logical_model: Vec<ModelBreakdown>,
}

/// One charge: the task it paid for and the ledger entry that recorded it.
#[derive(Serialize, ToSchema)]
pub struct UsageEntry {
    /// The task.
    request_id: String,
    /// The ledger entry of the charge.
    billing_transaction_id: String,
    model: String,
    logical_model: String,
    model_vendor: &'static str,
    scene: &'static str,
    usage_unit: &'static str,
    #[schema(value_type = f64)]
    usage_quantity: i64,
    usage_quantity_decimal: String,
    prompt_tokens: i64,
    completion_tokens: i64,
    total_tokens: i64,
    cache_read_tokens: i64,
    cache_write_tokens: i64,
    cache_write_tokens_5m: i64,
    cache_write_tokens_1h: i64,
    #[schema(value_type = f64)]
    cost: serde_json::Value,
    cost_decimal: String,
    created_at: String,
    /// `draft` or `final` for a leg of draft → final; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    leg: Option<String>,
}

fn usage_entry(item: &UsageItem) -> UsageEntry {
    UsageEntry {
        request_id: item.task_id.to_string(),
        billing_transaction_id: format!("ltx_{}", item.entry_id),
        model: item.model.clone(),
        logical_model: item.model.clone(),
        model_vendor: MODEL_VENDOR,
        scene: SCENE,
        usage_unit: "tokens",
        usage_quantity: item.tokens,
        usage_quantity_decimal: item.tokens.to_string(),
        prompt_tokens: 0,
        completion_tokens: item.tokens,
        total_tokens: item.tokens,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        cache_write_tokens_5m: 0,
        cache_write_tokens_1h: 0,
        cost: usd_number(item.cost_usd_micros),
        cost_decimal: usd(item.cost_usd_micros),
        created_at: rfc3339(item.charged_at_ms),
        leg: item.leg.clone(),
    }
}

fn summary(totals: &UsageTotals) -> UsageSummary {
    let tokens = totals.tokens();
    let cost = totals.cost_usd_micros();
    UsageSummary {
        total_requests: totals.requests(),
        total_cost: usd_number(cost),
        total_cost_decimal: usd(cost),
        total_prompt_tokens: 0,
        total_completion_tokens: tokens,
        total_tokens: tokens,
        usage_unit_breakdown: vec![UsageUnitQuantity {
            usage_unit: "tokens",
            usage_quantity: tokens,
        }],
    }
}

fn breakdowns(totals: &UsageTotals) -> Breakdowns {
    let requests = totals.requests();
    let cost = totals.cost_usd_micros();
    let any = requests > 0;
    let by_model: Vec<ModelBreakdown> = totals
        .by_model
        .iter()
        .map(|m| ModelBreakdown {
            model: m.model.clone(),
            logical_model: m.model.clone(),
            model_vendor: MODEL_VENDOR,
            requests: m.requests,
            cost: usd_number(m.cost_usd_micros),
            cost_decimal: usd(m.cost_usd_micros),
            usage_quantity: m.tokens,
            usage_quantity_decimal: m.tokens.to_string(),
            leg: m.leg.clone(),
        })
        .collect();
    Breakdowns {
        by_model_vendor: any
            .then(|| VendorBreakdown {
                model_vendor: MODEL_VENDOR,
                requests,
                cost: usd_number(cost),
            })
            .into_iter()
            .collect(),
        by_scene: any
            .then(|| SceneBreakdown {
                scene: SCENE,
                requests,
                cost: usd_number(cost),
                cost_decimal: usd(cost),
            })
            .into_iter()
            .collect(),
        daily_cost: totals
            .by_day()
            .into_iter()
            .map(|(day_start_ms, cost_usd_micros)| DailyCost {
                date: rfc3339(day_start_ms),
                cost: usd_number(cost_usd_micros),
                cost_decimal: usd(cost_usd_micros),
            })
            .collect(),
        by_logical_model: by_model.clone(),
        by_model,
    }
}

#[derive(Serialize, ToSchema)]
pub struct ManagementUsage {
    api_key: ManagementApiKey,
    items: Vec<UsageEntry>,
    pagination: Pagination,
    summary: UsageSummary,
    breakdowns: Breakdowns,
}

#[derive(Serialize, ToSchema)]
pub struct ManagementBilling {
    api_key: ManagementApiKey,
    summary: UsageSummary,
    breakdowns: Breakdowns,
}

error_responses! {
    /// The refusals of a key's usage report.
    struct KeyUsageErrors(Platform) {
        InvalidQuery | InvalidDate | InvalidPage | InvalidLimit;
        ApiKeyNotFound;
    }
}

/// A key's charges, newest first, with their totals: every completed task is one item; a
/// failed or cancelled task costs nothing and is not listed.
#[utoipa::path(
    get,
    path = "/v1/management/api-keys/{keyId}/usage",
    operation_id = "get_management_api_key_usage",
    tag = "management",
    params(("keyId" = String, Path, description = "The key's `id`."), ReportQuery),
    responses(
        (status = 200, description = "One page of charges, with the totals of all that match.", body = ManagementUsage),
        KeyUsageErrors,
    ),
    security(("management_token" = [])),
)]
pub async fn key_usage(
    State(state): State<ApiState>,
    OrgAuthed(organization): OrgAuthed,
    Path(key_id): Path<AccountId>,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Json<ManagementUsage>, HttpError> {
    let Query(query) = query.map_err(invalid_query)?;
    let (page, limit) = page(query.page, query.limit)?;
    let (account, totals, items) = state
        .services
        .management
        .charges(&organization, &key_id, &query, page, limit)
        .await?;
    Ok(Json(ManagementUsage {
        api_key: key_view(&account, None),
        items: items.iter().map(usage_entry).collect(),
        pagination: Pagination::new(page, limit, totals.requests()),
        summary: summary(&totals),
        breakdowns: breakdowns(&totals),
    }))
}

error_responses! {
    /// The refusals of a key's billing report.
    struct KeyBillingErrors(Platform) {
        InvalidQuery | InvalidDate;
        ApiKeyNotFound;
    }
}

/// A key's charges summed: by model, by day, by vendor and scene.
#[utoipa::path(
    get,
    path = "/v1/management/api-keys/{keyId}/billing",
    operation_id = "get_management_api_key_billing",
    tag = "management",
    params(("keyId" = String, Path, description = "The key's `id`."), ReportQuery),
    responses(
        (status = 200, description = "The totals of the key's charges the query matches.", body = ManagementBilling),
        KeyBillingErrors,
    ),
    security(("management_token" = [])),
)]
pub async fn key_billing(
    State(state): State<ApiState>,
    OrgAuthed(organization): OrgAuthed,
    Path(key_id): Path<AccountId>,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Json<ManagementBilling>, HttpError> {
    let Query(query) = query.map_err(invalid_query)?;
    let (account, totals) = state
        .services
        .management
        .report(&organization, &key_id, &query)
        .await?;
    Ok(Json(ManagementBilling {
        api_key: key_view(&account, None),
        summary: summary(&totals),
        breakdowns: breakdowns(&totals),
    }))
}
