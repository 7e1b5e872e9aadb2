//! The OpenAPI 3.1 document of the public API, generated from the handlers' annotations and the
//! types they serialize, built once and served at `GET /openapi.json`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use seedgate_contract::{ErrorBody, ErrorCode};
use serde_json::Value;
use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::response::Response as DocResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi};

use super::error::{documented_errors, Documented, Surface};
use super::examples::RequestExamples;
use super::{
    account, assets, catalog, events, health, management, materials, openrouter, tasks, volc,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Seedgate",
        description = "One asynchronous HTTP API for the Seedance 2.0 video models: create a \
            task, poll it (or receive a webhook), download the MP4, see the cost. Errors share \
            one shape, `{\"error\":{\"message\",\"type\",\"code\",\"param\"}}`, with stable codes.",
        license(name = "Apache-2.0"),
    ),
    paths(
        tasks::create,
        tasks::quote,
        tasks::get,
        tasks::cancel,
        tasks::list,
        events::task_events,
        events::tasks_events,
        catalog::list_models,
        catalog::get_model,
        catalog::get_model_pricing,
        catalog::pricing,
        assets::download,
        tasks::upstream_callback,
        volc::create,
        volc::get,
        volc::delete,
        volc::list,
        openrouter::create,
        openrouter::get,
        openrouter::content,
        openrouter::models,
        materials::create_asset,
        materials::list_assets,
        materials::get_asset,
        materials::update_asset,
        materials::delete_asset,
        materials::create_group,
        materials::list_groups,
        materials::get_group,
        materials::update_group,
        materials::delete_group,
        account::get,
        account::usage,
        management::balance,
        management::list_keys,
        management::create_key,
        management::update_key,
        management::key_usage,
        management::key_billing,
        health::healthz,
        health::readyz,
        health::metrics,
        openapi_json,
    ),
    // Every error response refers to one of the three bodies by name.
    components(schemas(ErrorBody, volc::ArkErrorBody, openrouter::OpenRouterErrorBody)),
    modifiers(&SharedResponses, &Aliases, &RequestExamples),
    tags(
        (name = "tasks", description = "Create, poll, list and cancel video tasks; download results."),
        (name = "catalog", description = "Models and prices."),
        (name = "upstream", description = "Notifications from upstream providers."),
        (name = "ark", description = "The Ark-compatible surface: Ark's wire format for the same tasks, for Ark SDKs and clients."),
        (name = "openrouter", description = "The OpenRouter-compatible video API: OpenRouter's wire format for the same tasks, for OpenRouter's SDKs and multi-vendor video clients."),
        (name = "materials", description = "The material library: reusable reference images (and video, audio) of an organization, used as `asset://<id>`."),
        (name = "account", description = "The calling key: its balance and what it has spent."),
        (name = "management", description = "An organization's balance, API keys and their usage, with its management token."),
        (name = "operations", description = "Health and this document."),
    ),
)]
struct ApiDoc;

/// Adds what every operation shares instead of repeating it in each annotation: the bearer
/// scheme, the refusals of a key wherever one is required, `invalid_query` wherever a query is
/// read, and `internal_error` everywhere. An operation's own answer for a status comes first.
struct SharedResponses;

/// The shared responses, by status.
type Shared = BTreeMap<String, RefOr<DocResponse>>;

fn shared(codes: &'static [ErrorCode], when: &'static str) -> Shared {
    documented_errors(Surface::Platform, &[Documented::new(codes, &[when], &[])])
}

impl Modify for SharedResponses {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`Authorization: Bearer sg_…`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "management_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer sg_mgmt_…`: an organization's management token, \
                         from `seedgate orgs create`. API keys do not open these paths, nor it theirs.",
                    ))
                    .build(),
            ),
        );

        let mut keyed = shared(
            &[ErrorCode::InvalidApiKey, ErrorCode::ExpiredApiKey],
            "missing, unknown, revoked or expired key.",
        );
        keyed.extend(shared(
            &[ErrorCode::RateLimitExceeded],
            "back off for `Retry-After` s.",
        ));
        let query = shared(
            &[ErrorCode::InvalidQuery],
            "a query parameter could not be read.",
        );
        let mut always = shared(&[ErrorCode::InternalError], "our fault; safe to retry.");
        always.extend(shared(
            &[ErrorCode::StorageUnavailable],
            "the database or the result store is down; nothing was changed; retry after `Retry-After` s.",
        ));

        for item in doc.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.delete,
                &mut item.put,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let takes_query = operation.parameters.iter().flatten().any(|parameter| {
                    parameter.parameter_in == utoipa::openapi::path::ParameterIn::Query
                });
                let applying = [
                    (operation.security.is_some(), &keyed),
                    (takes_query, &query),
                    (true, &always),
                ];
                let responses = &mut operation.responses.responses;
                for (status, response) in applying
                    .into_iter()
                    .filter(|(applies, _)| *applies)
                    .flat_map(|(_, shared)| shared)
                {
                    responses
                        .entry(status.clone())
                        .or_insert_with(|| response.clone());
                }
            }
        }
    }
}

/// Every operation of the document, as JSON.
fn operations(document: &mut Value) -> impl Iterator<Item = &mut Value> {
    document
        .get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
}

/// utoipa 5 writes the fields of Link objects in snake case (`operation_id`); OpenAPI spells
/// them in camel case, and clients that follow links (schemathesis' stateful phase among
/// them) ignore the snake-case ones.
fn camel_case_links(document: &mut Value) {
    let links = operations(document)
        .filter_map(|operation| operation.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.get_mut("links")?.as_object_mut())
        .flat_map(|links| links.values_mut())
        .filter_map(Value::as_object_mut);
    for link in links {
        for (snake, camel) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(value) = link.remove(snake) {
                link.insert(camel.to_owned(), value);
            }
        }
    }
}

/// An optional query parameter sent empty (`?status=`) counts as not sent (`api/query.rs`):
/// said in the document with OpenAPI's `allowEmptyValue`, which utoipa 5 does not write.
fn empty_query_values_allowed(document: &mut Value) {
    let parameters = operations(document)
        .filter_map(|operation| operation.get_mut("parameters")?.as_array_mut())
        .flat_map(|parameters| parameters.iter_mut())
        .filter_map(Value::as_object_mut);
    for parameter in parameters {
        let optional_query = parameter.get("in").and_then(Value::as_str) == Some("query")
            && parameter.get("required").and_then(Value::as_bool) != Some(true);
        if optional_query {
            parameter.insert("allowEmptyValue".to_owned(), Value::Bool(true));
        }
    }
}

/// Paths that are another path's handler under a second name: `POST /v1/tasks/{id}/cancel` for
/// clients that cannot send DELETE, and the platform's `GET /v1/videos/generations/{id}`. One
/// handler, so one description, copied.
struct Aliases;

impl Modify for Aliases {
    fn modify(&self, doc: &mut Document) {
        let task = doc.paths.paths.get("/v1/tasks/{id}").cloned();
        let Some(task) = task else { return };
        if let Some(mut cancel) = task.delete {
            cancel.operation_id = Some("cancel_task_by_post".to_owned());
            cancel.description = Some("Alias of `DELETE /v1/tasks/{id}`.".to_owned());
            doc.paths
                .add_path_operation("/v1/tasks/{id}/cancel", vec![HttpMethod::Post], cancel);
        }
        if let Some(mut get) = task.get {
            get.operation_id = Some("get_video_generation".to_owned());
            get.description = Some("Alias of `GET /v1/tasks/{id}`.".to_owned());
            doc.paths
                .add_path_operation("/v1/videos/generations/{id}", vec![HttpMethod::Get], get);
        }
    }
}

static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| {
    let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    camel_case_links(&mut document);
    empty_query_values_allowed(&mut document);
    Bytes::from(serde_json::to_vec_pretty(&document).unwrap_or_default())
});

/// The API's own description: an OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    responses((status = 200, description = "This document.", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.clone(),
    )
        .into_response()
}
