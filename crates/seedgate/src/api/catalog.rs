//! Models and Pricing API. The catalog never changes while the server runs, so the bodies are
//! rendered once at start-up.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use seedgate_contract::{
    ApiError, AspectRatio, Catalog, DurationRange, ErrorBody, ErrorType, ModelSpec, Operation,
    PriceRow, PricingRow, ReferenceLimits, Resolution,
};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::Authed;
use super::error::HttpError;
use super::ApiState;

/// Pre-rendered JSON bodies of the catalog endpoints.
pub struct CatalogBodies {
    models: Bytes,
    model: HashMap<String, Bytes>,
    pricing: Bytes,
}

/// A catalog entry: what a model serves and what it costs. Clients read limits from here
/// rather than hard-coding them.
#[derive(Serialize, ToSchema)]
pub struct ModelObject {
    /// The id to send as `model`.
    id: String,
    /// Always `model`.
    object: &'static str,
    /// Always `bytedance`.
    owned_by: &'static str,
    name: String,
    description: String,
    operations: Vec<Operation>,
    /// Anything else is `unsupported_resolution`.
    resolutions: Vec<Resolution>,
    /// Used when a request names none.
    default_resolution: Resolution,
    /// `adaptive` follows an image or video input.
    aspect_ratios: Vec<AspectRatio>,
    duration: DurationRange,
    /// reference-to-video limits.
    reference_limits: ReferenceLimits,
    /// CNY per million tokens; each resolution is in exactly one row.
    prices: Vec<PriceRow>,
    /// Video-input requests are never billed below this many tokens.
    video_input_min_tokens: u64,
}

impl ModelObject {
    fn new(spec: &ModelSpec) -> Self {
        Self {
            id: spec.id.clone(),
            object: "model",
            owned_by: "bytedance",
            name: spec.name.clone(),
            description: spec.description.clone(),
            operations: spec.operations.clone(),
            resolutions: spec.resolutions.clone(),
            default_resolution: spec.default_resolution,
            aspect_ratios: spec.aspect_ratios.clone(),
            duration: spec.duration,
            reference_limits: spec.reference_limits,
            prices: spec.prices.clone(),
            video_input_min_tokens: spec.video_input_min_tokens,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    object: &'static str,
    data: Vec<ModelObject>,
}

/// How tokens and money are computed from a request.
#[derive(Serialize, ToSchema)]
pub struct TokenFormula {
    output_tokens: &'static str,
    input_tokens: &'static str,
    cost_cny: &'static str,
    cost_usd: &'static str,
}

/// Every billable row, exact decimals as strings.
#[derive(Serialize, ToSchema)]
pub struct PricingList {
    /// Always `list`.
    object: &'static str,
    /// Always `USD`: what the gateway bills in.
    currency: &'static str,
    /// The conversion rate from the official CNY prices.
    #[schema(value_type = String, example = "6.8")]
    cny_per_usd: Decimal,
    token_formula: TokenFormula,
    data: Vec<PricingRow>,
}

fn to_bytes<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

impl CatalogBodies {
    pub fn render(catalog: &Catalog) -> Arc<Self> {
        let models = ModelList {
            object: "list",
            data: catalog.models().iter().map(ModelObject::new).collect(),
        };
        let model = catalog
            .models()
            .iter()
            .map(|m| (m.id.clone(), to_bytes(&ModelObject::new(m))))
            .collect();
        let pricing = PricingList {
            object: "list",
            currency: "USD",
            cny_per_usd: catalog.cny_per_usd(),
            token_formula: TokenFormula {
                output_tokens: "floor(width * height * (24 * seconds + 1) / 1024)",
                input_tokens: "floor(width * height * 24 * input_video_seconds / 1024), only when video is an input",
                cost_cny: "tokens * cny_per_million_tokens / 1000000",
                cost_usd: "cost_cny / cny_per_usd, rounded to 6 decimals",
            },
            data: catalog.pricing_rows(),
        };
        Arc::new(Self {
            models: to_bytes(&models),
            model,
            pricing: to_bytes(&pricing),
        })
    }
}

fn json_body(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The models this gateway serves.
#[utoipa::path(
    get,
    path = "/v1/models",
    operation_id = "list_models",
    tag = "catalog",
    responses((status = 200, description = "Every model.", body = ModelList)),
    security(("api_key" = [])),
)]
pub async fn list_models(State(state): State<ApiState>, _auth: Authed) -> Response {
    json_body(state.catalog.models.clone())
}

/// One model: its operations, resolutions, durations, ratios, reference limits and prices.
#[utoipa::path(
    get,
    path = "/v1/models/{id}",
    operation_id = "get_model",
    tag = "catalog",
    params(("id" = String, Path, description = "A model id, e.g. `seedance-2.0`.")),
    responses(
        (status = 200, description = "The model.", body = ModelObject),
        (status = 404, description = "`model_not_found`.", body = ErrorBody),
    ),
    security(("api_key" = [])),
)]
pub async fn get_model(
    State(state): State<ApiState>,
    _auth: Authed,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    let body = state.catalog.model.get(&id).cloned().ok_or_else(|| {
        HttpError(
            ApiError::new(
                404,
                ErrorType::ModelNotFound,
                "model_not_found",
                format!("The model `{id}` does not exist."),
            )
            .with_param("model"),
        )
    })?;
    Ok(json_body(body))
}

/// Every billable row: model, resolution tier, with or without video input, CNY and USD per
/// million tokens.
#[utoipa::path(
    get,
    path = "/v1/pricing",
    operation_id = "get_pricing",
    tag = "catalog",
    responses((status = 200, description = "The price table.", body = PricingList)),
    security(("api_key" = [])),
)]
pub async fn pricing(State(state): State<ApiState>, _auth: Authed) -> Response {
    json_body(state.catalog.pricing.clone())
}
