//! Models and Pricing API. The catalog never changes while the server runs, so the bodies are
//! rendered once at start-up.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use seedgate_contract::{ApiError, Catalog, ErrorType, ModelSpec};
use serde_json::{json, Value};

use super::auth::Authed;
use super::error::HttpError;
use super::ApiState;

/// Pre-rendered JSON bodies of the catalog endpoints.
pub struct CatalogBodies {
    models: Bytes,
    model: HashMap<String, Bytes>,
    pricing: Bytes,
}

fn model_object(model: &ModelSpec) -> Value {
    let mut object = serde_json::to_value(model).unwrap_or(Value::Null);
    object["object"] = "model".into();
    object["owned_by"] = "bytedance".into();
    object
}

impl CatalogBodies {
    pub fn render(catalog: &Catalog) -> Arc<Self> {
        let models: Vec<Value> = catalog.models().iter().map(model_object).collect();
        let model = catalog
            .models()
            .iter()
            .map(|m| (m.id.clone(), Bytes::from(model_object(m).to_string())))
            .collect();
        let pricing = json!({
            "object": "list",
            "currency": "USD",
            "cny_per_usd": catalog.cny_per_usd(),
            "token_formula": {
                "output_tokens": "floor(width * height * (24 * seconds + 1) / 1024)",
                "input_tokens": "floor(width * height * 24 * input_video_seconds / 1024), only when video is an input",
                "cost_cny": "tokens * cny_per_million_tokens / 1000000",
                "cost_usd": "cost_cny / cny_per_usd, rounded to 6 decimals",
            },
            "data": catalog.pricing_rows(),
        });
        Arc::new(Self {
            models: Bytes::from(json!({"object": "list", "data": models}).to_string()),
            model,
            pricing: Bytes::from(pricing.to_string()),
        })
    }
}

fn json_body(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

pub async fn list_models(State(state): State<ApiState>, _auth: Authed) -> Response {
    json_body(state.catalog.models.clone())
}

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

pub async fn pricing(State(state): State<ApiState>, _auth: Authed) -> Response {
    json_body(state.catalog.pricing.clone())
}
