//! Every response the API tests receive on the platform's paths is checked against the
//! platform's published response schemas — kept in `tests/schemas/platform.json`, written from
//! the document's facts — by a JSON-schema validator we did not write. `helpers::decode` runs
//! the check, so each test that reads a response also proves its shape.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{json, Value};

static SCHEMAS: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../schemas/platform.json")).expect("the schemas are JSON")
});

static VALIDATORS: LazyLock<HashMap<String, jsonschema::Validator>> = LazyLock::new(|| {
    let defs = &SCHEMAS["$defs"];
    defs.as_object()
        .expect("$defs is an object")
        .keys()
        .map(|name| {
            let schema = json!({"$defs": defs, "$ref": format!("#/$defs/{name}")});
            let validator = jsonschema::validator_for(&schema)
                .unwrap_or_else(|e| panic!("schema {name} does not compile: {e}"));
            (name.clone(), validator)
        })
        .collect()
});

/// The schema a response must fit, for the paths the platform's document describes.
fn schema_for(path: &str, status: u16, body: &Value) -> Option<&'static str> {
    let ok = status < 300;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v1", "videos", "generations"] => Some(if ok { "created_task" } else { "error" }),
        ["v1", "videos", "generations", _] | ["v1", "tasks", _] | ["v1", "tasks", _, "cancel"] => {
            Some(if ok { "task" } else { "error" })
        }
        ["api", "v3", "contents", "generations", "tasks"] if ok => {
            Some(if body.get("items").is_some() {
                "ark_list"
            } else {
                "ark_created"
            })
        }
        // A DELETE answers with an empty body.
        ["api", "v3", "contents", "generations", "tasks", _] if ok => {
            body.is_object().then_some("ark_task")
        }
        ["api", "v3", "contents", "generations", "tasks", ..] => Some("ark_error"),
        _ => None,
    }
}

/// Panics when a response on one of the platform's paths does not fit its schema.
pub fn check(path: &str, status: u16, body: &Value) {
    let Some(name) = schema_for(path, status, body) else {
        return;
    };
    let problems: Vec<String> = VALIDATORS[name]
        .iter_errors(body)
        .map(|e| format!("{e} (at {})", e.instance_path()))
        .collect();
    assert!(
        problems.is_empty(),
        "{path} answered {status} with a body outside the platform's `{name}` schema: {problems:?}\n{body}"
    );
}

#[test]
fn the_check_refuses_what_the_platform_does_not_allow() {
    let fits = |path: &str, status: u16, body: Value| {
        std::panic::catch_unwind(|| check(path, status, &body)).is_ok()
    };
    assert!(fits(
        "/v1/tasks/x",
        200,
        json!({"id": "x", "status": "pending"})
    ));
    assert!(!fits("/v1/tasks/x", 200, json!({"id": "x", "error": null})));
    assert!(!fits(
        "/v1/tasks/x",
        200,
        json!({"id": "x", "status": "queued"})
    ));
    assert!(!fits(
        "/v1/videos/generations",
        400,
        json!({"error": {"message": "m", "type": "invalid_request_error", "param": null}})
    ));
    assert!(!fits(
        "/v1/videos/generations",
        402,
        json!({"error": {"message": "m", "type": "insufficient_balance", "balance_usd": "1.0"}})
    ));
    assert!(!fits(
        "/api/v3/contents/generations/tasks/cgt-1",
        200,
        json!({"id": "cgt-1", "model": "m", "status": "queued"})
    ));
    assert!(!fits(
        "/api/v3/contents/generations/tasks",
        200,
        json!({"id": "cgt-1", "extra": 1})
    ));
    assert!(fits("/v1/models", 200, json!({"anything": true})));
}
