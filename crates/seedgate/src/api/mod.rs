//! HTTP routes. No business rule lives here: handlers extract, call a service, render.

mod account;
mod assets;
mod auth;
mod catalog;
mod catalog_view;
mod dialect;
mod error;
mod events;
mod examples;
mod health;
mod management;
mod materials;
mod openapi;
mod openrouter;
mod poll_bodies;
mod query;
mod tasks;
mod telemetry;
pub mod view;
mod volc;
mod web;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, patch, post};
use axum::Router;

pub use catalog::CatalogBodies;
pub use error::HttpError;
pub use poll_bodies::PollBodies;

use crate::service::Services;

/// A refusal of a path no route serves, worded as the surface the path is under speaks:
/// OpenRouter's under `/api/v1/`, Ark's under `/api/v3/`, the platform's elsewhere.
fn in_the_surfaces_words(
    uri: &axum::http::Uri,
    refusal: error::HttpError,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = uri.path();
    if path.starts_with("/api/v1/") {
        openrouter::OpenRouterError::from(refusal).into_response()
    } else if path.starts_with("/api/v3/") {
        volc::ArkError::from(refusal).into_response()
    } else {
        refusal.into_response()
    }
}

/// What every handler can reach. Axum clones the state for every request, and again for each
/// middleware and extractor that takes it: held in one allocation, a clone is one reference
/// count to raise and lower rather than one per field, counts that the two cores' requests
/// otherwise pass back and forth between them.
#[derive(Clone)]
pub struct ApiState(Arc<Reachable>);

pub struct Reachable {
    pub services: Arc<Services>,
    pub catalog: Arc<CatalogBodies>,
    pub polls: Arc<PollBodies>,
}

impl ApiState {
    pub fn new(reachable: Reachable) -> Self {
        Self(Arc::new(reachable))
    }
}

impl std::ops::Deref for ApiState {
    type Target = Reachable;

    fn deref(&self) -> &Reachable {
        &self.0
    }
}

pub fn router(state: ApiState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/v1/videos/generations", post(tasks::create))
        .route("/v1/videos/quote", post(tasks::quote))
        .route("/v1/videos/generations/{id}", get(tasks::get))
        .route("/v1/tasks", get(tasks::list))
        .route("/v1/tasks/events", get(events::tasks_events))
        .route("/v1/tasks/{id}/events", get(events::task_events))
        .route("/v1/tasks/{id}", get(tasks::get).delete(tasks::cancel))
        .route("/v1/tasks/{id}/cancel", post(tasks::cancel))
        .route("/api/v1/videos", post(openrouter::create))
        .route("/api/v1/videos/models", get(openrouter::models))
        .route("/api/v1/videos/{id}", get(openrouter::get))
        .route("/api/v1/videos/{id}/content", get(openrouter::content))
        .route("/v1/models", get(catalog::list_models))
        .route("/v1/models/{model}", get(catalog::get_model))
        .route(
            "/v1/models/{model}/pricing",
            get(catalog::get_model_pricing),
        )
        .route("/v1/pricing", get(catalog::pricing))
        .route("/v1/assets/{task_id}/{file}", get(assets::download))
        .route("/v1/upstream/callback/{id}", post(tasks::upstream_callback))
        .route(
            "/v1/videos/assets",
            get(materials::list_assets).post(materials::create_asset),
        )
        .route(
            "/v1/videos/assets/groups",
            get(materials::list_groups).post(materials::create_group),
        )
        .route(
            "/v1/videos/assets/groups/{group_id}",
            get(materials::get_group)
                .put(materials::update_group)
                .delete(materials::delete_group),
        )
        .route(
            "/v1/videos/assets/{asset_id}",
            get(materials::get_asset)
                .put(materials::update_asset)
                .delete(materials::delete_asset),
        )
        .route("/v1/account", get(account::get))
        .route("/v1/account/usage", get(account::usage))
        .route("/v1/management/balance", get(management::balance))
        .route(
            "/v1/management/api-keys",
            get(management::list_keys).post(management::create_key),
        )
        .route(
            "/v1/management/api-keys/{key_id}",
            patch(management::update_key),
        )
        .route(
            "/v1/management/api-keys/{key_id}/usage",
            get(management::key_usage),
        )
        .route(
            "/v1/management/api-keys/{key_id}/billing",
            get(management::key_billing),
        )
        .route(
            "/api/v3/contents/generations/tasks",
            get(volc::list).post(volc::create),
        )
        .route(
            "/api/v3/contents/generations/tasks/{id}",
            get(volc::get).delete(volc::delete),
        )
        .route("/metrics", get(health::metrics))
        .route("/", get(web::home))
        .route("/console", get(web::console))
        .route("/console/", get(web::console))
        .route("/console/{file}", get(web::file))
        .route("/docs", get(web::docs))
        .fallback(
            |uri: axum::http::Uri| async move { in_the_surfaces_words(&uri, error::not_found()) },
        )
        .method_not_allowed_fallback(|uri: axum::http::Uri| async move {
            in_the_surfaces_words(&uri, error::method_not_allowed())
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            telemetry::track,
        ))
        .with_state(state)
}
