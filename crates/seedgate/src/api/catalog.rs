//! Models and Pricing API. The catalog never changes while the server runs, so every body a
//! request can get is rendered once at start-up, and a request only picks one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use seedgate_contract::{ApiError, Catalog, ErrorCode};
use serde::Deserialize;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::IntoParams;

use super::auth::Authed;
use super::catalog_view::{
    pricing_updated_at, CompactModelList, Model, ModelFacts, ModelList, ModelListResponse,
    ModelPricing, PricingList, CATEGORY, PROVIDER,
};
use super::error::{error_responses, invalid_query, HttpError};
use super::query::Query;
use super::view::{json_body, to_bytes};
use super::ApiState;

/// The platform's model categories (`?category=`).
const CATEGORIES: [&str; 11] = [
    "chat",
    "embedding",
    "translation",
    "image",
    "video",
    "audio",
    "tts",
    "stt",
    "rerank",
    "3d",
    "music",
];

/// The platform's non-chat task categories (`?recommended_for=`).
const RECOMMENDED_FOR: [&str; 9] = [
    "image",
    "video",
    "music",
    "3d",
    "tts",
    "stt",
    "embedding",
    "rerank",
    "translation",
];

/// The two shapes of the list (`?view=`).
const VIEWS: [&str; 2] = ["full", "compact"];

/// The list bodies of one selection of models.
struct Lists {
    full: Bytes,
    compact: Bytes,
    pricing: Bytes,
}

/// Pre-rendered JSON bodies of the catalog endpoints. Every filter either keeps every model or
/// none (`provider`, `category`, `recommended_for`: all models share them) or keeps a model by
/// its capability tags (`tag`), so `all`, `none` and one selection per tag are every list a
/// request can get.
pub struct CatalogBodies {
    all: Lists,
    none: Lists,
    by_tag: HashMap<String, Lists>,
    model: HashMap<String, Bytes>,
    model_pricing: HashMap<String, Bytes>,
    /// `GET /api/v1/videos/models`.
    video_models: Bytes,
}

impl CatalogBodies {
    /// `loaded_at`: the Unix second the server loaded the catalog, shown for the dates the
    /// catalog leaves out.
    pub fn render(catalog: &Catalog, loaded_at: i64) -> Arc<Self> {
        let updated_at = pricing_updated_at(catalog, loaded_at);
        let facts: Vec<ModelFacts> = catalog
            .models()
            .iter()
            .map(|spec| ModelFacts::new(catalog, spec, &updated_at, loaded_at))
            .collect();
        let lists = |keep: &dyn Fn(&ModelFacts) -> bool| {
            let chosen: Vec<&ModelFacts> = facts.iter().filter(|f| keep(f)).collect();
            Lists {
                full: to_bytes(&ModelList::new(
                    chosen.iter().map(|f| f.list_item()).collect(),
                )),
                compact: to_bytes(&CompactModelList::new(
                    chosen.iter().map(|f| f.compact_item()).collect(),
                )),
                pricing: to_bytes(&PricingList::new(
                    catalog,
                    &updated_at,
                    chosen.iter().map(|f| f.pricing().clone()).collect(),
                )),
            }
        };
        let tags: HashSet<_> = facts
            .iter()
            .flat_map(|f| f.capabilities().iter().copied())
            .collect();
        let by_tag = tags
            .into_iter()
            .map(|tag| {
                let selection = lists(&|f| f.capabilities().contains(&tag));
                (tag.as_str().to_owned(), selection)
            })
            .collect();
        Arc::new(Self {
            all: lists(&|_| true),
            none: lists(&|_| false),
            by_tag,
            model: facts
                .iter()
                .map(|f| (f.id().to_owned(), to_bytes(&f.model())))
                .collect(),
            model_pricing: facts
                .iter()
                .map(|f| (f.id().to_owned(), to_bytes(f.pricing())))
                .collect(),
            video_models: super::openrouter::video_models(catalog, loaded_at),
        })
    }

    /// The OpenRouter-shaped models list.
    pub fn video_models(&self) -> Bytes {
        self.video_models.clone()
    }

    /// The lists of the models of this provider and capability tag.
    fn select(&self, provider: Option<&str>, tag: Option<&str>) -> &Lists {
        if provider.is_some_and(|p| p != PROVIDER) {
            return &self.none;
        }
        match tag {
            None => &self.all,
            Some(tag) => self.by_tag.get(tag).unwrap_or(&self.none),
        }
    }

    /// `GET /v1/models`: checks the enumerated filters, then picks the list.
    fn models(&self, query: &ModelsQuery) -> Result<Bytes, ApiError> {
        let category = one_of(
            "category",
            ErrorCode::InvalidCategory,
            &query.category,
            &CATEGORIES,
        )?;
        let recommended_for = one_of(
            "recommended_for",
            ErrorCode::InvalidRecommendedFor,
            &query.recommended_for,
            &RECOMMENDED_FOR,
        )?;
        let view = one_of("view", ErrorCode::InvalidView, &query.view, &VIEWS)?;
        // Every model is a video model, so another category keeps none. No usage evidence is
        // collected, so `recommended_for` ranks nothing: it keeps its category's models, in
        // catalog order.
        let other_category = [category, recommended_for]
            .into_iter()
            .flatten()
            .any(|c| c != CATEGORY);
        let lists = if other_category {
            &self.none
        } else {
            self.select(query.provider.as_deref(), query.tag.as_deref())
        };
        Ok(if view == Some("compact") {
            lists.compact.clone()
        } else {
            lists.full.clone()
        })
    }

    /// `GET /v1/pricing`.
    fn pricing(&self, query: &PricingQuery) -> Bytes {
        let lists = self.select(query.provider.as_deref(), query.tag.as_deref());
        lists.pricing.clone()
    }
}

/// `value` when it is one of `allowed`; otherwise `code`, naming the parameter and the values.
fn one_of<'q>(
    param: &'static str,
    code: ErrorCode,
    value: &'q Option<String>,
    allowed: &[&str],
) -> Result<Option<&'q str>, ApiError> {
    match value.as_deref() {
        Some(v) if !allowed.contains(&v) => Err(ApiError::new(
            code,
            format!("{param} must be one of {}.", allowed.join(", ")),
        )
        .with_param(param)
        .with_extra("allowed_values", allowed.into())),
        v => Ok(v),
    }
}

/// The schema of an enumerated parameter. It carries the parameter's description: utoipa
/// drops a field's doc comment once `schema_with` gives its schema.
fn enum_schema(description: &str, values: &[&str]) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(values.iter().copied()))
}

fn category_schema() -> Object {
    enum_schema(
        "Only models of this category: every Seedance model is a `video` model.",
        &CATEGORIES,
    )
    .build()
}

fn recommended_for_schema() -> Object {
    enum_schema(
        "Only models for this task category (`video` for every Seedance model), in catalog order.",
        &RECOMMENDED_FOR,
    )
    .build()
}

fn view_schema() -> Object {
    enum_schema(
        "`full`: the platform's model list; `compact`: the fields needed to pick a model.",
        &VIEWS,
    )
    .default(Some("full".into()))
    .build()
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ModelsQuery {
    /// Only models of this provider: every Seedance model is `bytedance`'s.
    provider: Option<String>,
    /// Only models with this capability tag: an operation, e.g. `reference-to-video`.
    tag: Option<String>,
    #[param(schema_with = category_schema)]
    category: Option<String>,
    #[param(schema_with = recommended_for_schema)]
    recommended_for: Option<String>,
    #[param(schema_with = view_schema)]
    view: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PricingQuery {
    /// Only models of this provider: every Seedance model is `bytedance`'s.
    provider: Option<String>,
    /// Only models with this capability tag: an operation, e.g. `reference-to-video`.
    tag: Option<String>,
}

fn model_not_found(id: &str) -> HttpError {
    HttpError(
        ApiError::new(
            ErrorCode::ModelNotFound,
            format!("The model `{id}` does not exist."),
        )
        .with_param("model"),
    )
}

error_responses! {
    /// The refusals of the model list.
    struct ModelListErrors(Platform) {
        InvalidQuery | InvalidCategory | InvalidRecommendedFor | InvalidView;
    }
}

/// The models this gateway serves: the platform's full list, or with `view=compact` the
/// fields needed to pick one. A filter no model matches gives an empty list.
#[utoipa::path(
    get,
    path = "/v1/models",
    operation_id = "list_models",
    tag = "catalog",
    params(ModelsQuery),
    responses(
        (status = 200, description = "The models the filters keep.", body = ModelListResponse),
        ModelListErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn list_models(
    State(state): State<ApiState>,
    _auth: Authed,
    query: Result<Query<ModelsQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    let Query(query) = query.map_err(invalid_query)?;
    Ok(json_body(state.catalog.models(&query)?))
}

error_responses! {
    /// The refusals of a model's read and of its prices.
    struct ModelErrors(Platform) {
        ModelNotFound;
    }
}

/// One model: the platform's fields, and under `tokenlab` its operations, resolutions,
/// durations, ratios, reference limits and prices.
#[utoipa::path(
    get,
    path = "/v1/models/{model}",
    operation_id = "get_model",
    tag = "catalog",
    params(("model" = String, Path, description = "A model id, e.g. `seedance-2.0`.")),
    responses(
        (status = 200, description = "The model.", body = Model),
        ModelErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn get_model(
    State(state): State<ApiState>,
    _auth: Authed,
    Path(model): Path<String>,
) -> Result<Response, HttpError> {
    let body = state.catalog.model.get(&model).cloned();
    Ok(json_body(body.ok_or_else(|| model_not_found(&model))?))
}

/// One model's prices: the same object as its entry in `GET /v1/pricing`.
#[utoipa::path(
    get,
    path = "/v1/models/{model}/pricing",
    operation_id = "get_model_pricing",
    tag = "catalog",
    params(("model" = String, Path, description = "A model id, e.g. `seedance-2.0`.")),
    responses(
        (status = 200, description = "The model's prices.", body = ModelPricing),
        ModelErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn get_model_pricing(
    State(state): State<ApiState>,
    _auth: Authed,
    Path(model): Path<String>,
) -> Result<Response, HttpError> {
    let body = state.catalog.model_pricing.get(&model).cloned();
    Ok(json_body(body.ok_or_else(|| model_not_found(&model))?))
}

error_responses! {
    /// The refusals of the price table.
    struct PricingErrors(Platform) {
        InvalidQuery;
    }
}

/// Every model's prices: one row per resolution and video input, CNY and USD per million
/// tokens, the rate and the token formula. A filter no model matches gives an empty list.
#[utoipa::path(
    get,
    path = "/v1/pricing",
    operation_id = "get_pricing",
    tag = "catalog",
    params(PricingQuery),
    responses(
        (status = 200, description = "The price table.", body = PricingList),
        PricingErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn pricing(
    State(state): State<ApiState>,
    _auth: Authed,
    query: Result<Query<PricingQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    let Query(query) = query.map_err(invalid_query)?;
    Ok(json_body(state.catalog.pricing(&query)))
}
