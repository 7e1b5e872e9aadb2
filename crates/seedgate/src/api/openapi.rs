//! The OpenAPI 3.1 document of the public API, generated from the handlers' annotations and the
//! types they serialize, built once and served at `GET /openapi.json`.

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, OpenApi as Document, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi, PartialSchema};

use super::examples::RequestExamples;
use super::{account, assets, catalog, health, management, materials, tasks, volc};

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
    modifiers(&SharedResponses, &Aliases, &RequestExamples),
    tags(
        (name = "tasks", description = "Create, poll, list and cancel video tasks; download results."),
        (name = "catalog", description = "Models and prices."),
        (name = "upstream", description = "Notifications from upstream providers."),
        (name = "ark", description = "The Ark-compatible surface: Ark's wire format for the same tasks, for Ark SDKs and clients."),
        (name = "materials", description = "The material library: reusable reference images (and video, audio) of an organization, used as `asset://<id>`."),
        (name = "account", description = "The calling key: its balance and what it has spent."),
        (name = "management", description = "An organization's balance, API keys and their usage, with its management token."),
        (name = "operations", description = "Health and this document."),
    ),
)]
struct ApiDoc;

/// Adds what every operation shares instead of repeating it in each annotation: the bearer
/// scheme, `401` and `429` wherever a key is required, `400` wherever a query is read, and
/// `500` everywhere.
struct SharedResponses;

fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    )
}

fn integer_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::Integer))
        .description(Some(description))
        .build()
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

        let unauthorized = error_response("`invalid_api_key`: missing, unknown or revoked key.")
            .header(
                "WWW-Authenticate",
                HeaderBuilder::new()
                    .schema(String::schema())
                    .description(Some("`Bearer`"))
                    .build(),
            )
            .build();
        let rate_limited = error_response("`rate_limit_exceeded`: back off for `Retry-After` s.")
            .header("Retry-After", integer_header("Seconds to wait."))
            .header(
                "X-RateLimit-Limit",
                integer_header("Requests per minute allowed."),
            )
            .header(
                "X-RateLimit-Remaining",
                integer_header("Requests left now."),
            )
            .header(
                "X-RateLimit-Reset",
                integer_header("Unix time (seconds) when the limit is whole again."),
            )
            .build();
        let internal = error_response("`internal_error`: our fault; safe to retry.").build();
        let invalid_query =
            error_response("`invalid_query`: a query parameter could not be read.").build();

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
                let responses = &mut operation.responses.responses;
                if operation.security.is_some() {
                    responses
                        .entry("401".to_owned())
                        .or_insert_with(|| unauthorized.clone().into());
                    responses
                        .entry("429".to_owned())
                        .or_insert_with(|| rate_limited.clone().into());
                }
                let takes_query = operation.parameters.iter().flatten().any(|parameter| {
                    parameter.parameter_in == utoipa::openapi::path::ParameterIn::Query
                });
                if takes_query {
                    responses
                        .entry("400".to_owned())
                        .or_insert_with(|| invalid_query.clone().into());
                }
                responses
                    .entry("500".to_owned())
                    .or_insert_with(|| internal.clone().into());
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
