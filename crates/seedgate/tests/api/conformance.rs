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
            // `format` is asserted too: the platform's timestamps are RFC 3339 date-times.
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .unwrap_or_else(|e| panic!("schema {name} does not compile: {e}"));
            (name.clone(), validator)
        })
        .collect()
});

/// The schema a response must fit, for the paths the platform's document describes. The query
/// tells the two shapes of the models list apart.
fn schema_for(path: &str, query: Option<&str>, status: u16, body: &Value) -> Option<&'static str> {
    let ok = status < 300;
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let compact = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .any(|(key, value)| key == "view" && value == "compact");
    match segments.as_slice() {
        ["v1", "models"] if ok => Some(if compact {
            "models_compact"
        } else {
            "models_list"
        }),
        ["v1", "models", _] if ok => Some("model"),
        ["v1", "models", _, "pricing"] if ok => Some("model_pricing"),
        ["v1", "pricing"] if ok => Some("pricing_list"),
        ["v1", "models", ..] | ["v1", "pricing"] => Some("error"),
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
        ["v1", "management", "balance"] if ok => Some("ManagementBalanceResponse"),
        ["v1", "management", "api-keys"] if ok => Some(if body.get("object").is_some() {
            "ManagementApiKeyListResponse"
        } else {
            "ManagementCreatedApiKey"
        }),
        ["v1", "management", "api-keys", _] if ok => Some("ManagementApiKey"),
        ["v1", "management", "api-keys", _, "usage"] if ok => Some("ManagementUsageResponse"),
        ["v1", "management", "api-keys", _, "billing"] if ok => Some("ManagementBillingResponse"),
        ["v1", "management", ..] => Some("error"),
        ["v1", "videos", "assets", "groups"] if ok => Some(if body.get("groups").is_some() {
            "SeedanceMaterialAssetGroupList"
        } else {
            "SeedanceMaterialAssetGroup"
        }),
        ["v1", "videos", "assets", "groups", _] if ok => Some(if body.get("deleted").is_some() {
            "SeedanceMaterialAssetDeleteResponse"
        } else {
            "SeedanceMaterialAssetGroup"
        }),
        ["v1", "videos", "assets"] if ok => Some(if body.get("assets").is_some() {
            "SeedanceMaterialAssetList"
        } else {
            "SeedanceMaterialAsset"
        }),
        ["v1", "videos", "assets", _] if ok => Some(if body.get("deleted").is_some() {
            "SeedanceMaterialAssetDeleteResponse"
        } else {
            "SeedanceMaterialAsset"
        }),
        ["v1", "videos", "assets", ..] => Some("error"),
        _ => None,
    }
}

/// Panics when a response on one of the platform's paths does not fit its schema.
pub fn check(path: &str, query: Option<&str>, status: u16, body: &Value) {
    let Some(name) = schema_for(path, query, status, body) else {
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
    let fits = |target: &str, status: u16, body: Value| {
        let (path, query) = target
            .split_once('?')
            .map_or((target, None), |(p, q)| (p, Some(q)));
        std::panic::catch_unwind(|| check(path, query, status, &body)).is_ok()
    };
    let mut cases: Vec<(&str, u16, Value, bool)> = Vec::new();
    cases.push((
        "/v1/tasks/x",
        200,
        json!({"id": "x", "status": "pending"}),
        true,
    ));
    cases.push(("/v1/tasks/x", 200, json!({"id": "x", "error": null}), false));
    cases.push((
        "/v1/tasks/x",
        200,
        json!({"id": "x", "status": "queued"}),
        false,
    ));
    cases.push((
        "/v1/videos/generations",
        400,
        json!({"error": {"message": "m", "type": "invalid_request_error", "param": null}}),
        false,
    ));
    cases.push((
        "/v1/videos/generations",
        402,
        json!({"error": {"message": "m", "type": "insufficient_balance", "balance_usd": "1.0"}}),
        false,
    ));
    cases.push((
        "/api/v3/contents/generations/tasks/cgt-1",
        200,
        json!({"id": "cgt-1", "model": "m", "status": "queued"}),
        false,
    ));
    cases.push((
        "/api/v3/contents/generations/tasks",
        200,
        json!({"id": "cgt-1", "extra": 1}),
        false,
    ));

    // The Models and Pricing APIs, from a minimal fitting body each.
    let lifecycle = json!({
        "stage": "active", "reason": null, "replacement_model": null,
        "released_at": "2026-01-28T00:00:00Z", "deprecated_at": null, "retired_at": null,
        "sunset_at": null, "latest": false, "latest_source": "none", "latest_window_days": null
    });
    let commercial = json!({"user_charge_policy": "paid", "free_reason": null, "free_until": null});
    let list_extension = json!({
        "aliases": [], "pricing": {}, "capabilities": ["text-to-video"],
        "max_input_tokens": null, "max_output_tokens": 1, "category": "video",
        "pricing_unit": "per_1m_tokens", "has_complex_pricing": true,
        "lifecycle": lifecycle, "commercial": commercial, "badges": []
    });
    let item = json!({"id": "m", "object": "model", "created": 1, "owned_by": "bytedance", "tokenlab": list_extension});
    let with = |mut value: Value, pointer: &str, field: &str, new: Value| {
        value.pointer_mut(pointer).unwrap()[field] = new;
        value
    };
    let without = |mut value: Value, pointer: &str, field: &str| {
        value
            .pointer_mut(pointer)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(field);
        value
    };
    let list = json!({"object": "list", "data": [item]});
    cases.push(("/v1/models", 200, list.clone(), true));
    cases.push((
        "/v1/models",
        200,
        without(list.clone(), "/data/0", "created"),
        false,
    ));
    cases.push((
        "/v1/models",
        200,
        with(list.clone(), "/data/0", "resolutions", json!([])),
        false,
    ));
    cases.push((
        "/v1/models",
        200,
        with(list.clone(), "/data/0/tokenlab", "name", json!("m")),
        false,
    ));
    cases.push((
        "/v1/models",
        200,
        with(
            list.clone(),
            "/data/0/tokenlab/lifecycle",
            "stage",
            json!("beta"),
        ),
        false,
    ));
    cases.push((
        "/v1/models",
        200,
        with(
            list.clone(),
            "/data/0/tokenlab/lifecycle",
            "released_at",
            json!("2026-01-28"),
        ),
        false,
    ));
    cases.push((
        "/v1/models",
        200,
        with(list, "/data/0/tokenlab", "badges", json!([{"key": "new"}])),
        false,
    ));

    let compact_item = json!({
        "id": "m", "provider": "bytedance", "category": "video", "capabilities": [],
        "max_input_tokens": null, "max_output_tokens": null,
        "pricing": {"unit": "per_1m_tokens", "currency": "USD", "has_complex_pricing": true},
        "status": "active", "latest": false
    });
    let compact = json!({"object": "list", "view": "compact", "count": 1, "data": [compact_item]});
    cases.push(("/v1/models?view=compact", 200, compact.clone(), true));
    // A compact request answered in the full shape, and the other way round.
    cases.push((
        "/v1/models?view=compact",
        200,
        json!({"object": "list", "data": []}),
        false,
    ));
    cases.push(("/v1/models?tag=x&view=full", 200, compact.clone(), false));
    cases.push((
        "/v1/models?view=compact",
        200,
        with(compact.clone(), "/data/0", "name", json!("m")),
        false,
    ));
    cases.push((
        "/v1/models?view=compact",
        200,
        with(compact.clone(), "/data/0/pricing", "currency", json!("CNY")),
        false,
    ));
    cases.push((
        "/v1/models?view=compact",
        200,
        without(compact, "", "count"),
        false,
    ));

    let model = with(
        item.clone(),
        "",
        "tokenlab",
        json!({
            "lifecycle": lifecycle, "commercial": commercial, "badges": [],
            "accepted_request_formats": [], "resolutions": ["720p"]
        }),
    );
    cases.push(("/v1/models/m", 200, model.clone(), true));
    cases.push((
        "/v1/models/m",
        200,
        with(model.clone(), "", "resolutions", json!(["720p"])),
        false,
    ));
    cases.push((
        "/v1/models/m",
        200,
        without(model.clone(), "/tokenlab", "accepted_request_formats"),
        false,
    ));
    cases.push((
        "/v1/models/m",
        200,
        with(
            model,
            "/tokenlab",
            "accepted_request_formats",
            json!(["video"]),
        ),
        false,
    ));
    cases.push((
        "/v1/models/m",
        404,
        json!({"error": {"message": "m", "type": "not_found"}}),
        false,
    ));

    let pricing =
        json!({"model": "m", "has_complex_pricing": true, "pricing_details": {"rows": []}});
    cases.push(("/v1/models/m/pricing", 200, pricing.clone(), true));
    cases.push((
        "/v1/models/m/pricing",
        200,
        with(pricing.clone(), "", "has_complex_pricing", json!("yes")),
        false,
    ));
    cases.push((
        "/v1/models/m/pricing",
        200,
        with(pricing, "", "pricing_summary", json!([])),
        false,
    ));

    let entry = json!({"model": "m", "provider": "bytedance", "is_lock_price": false, "capabilities": [], "aliases": []});
    let table = json!({
        "object": "pricing", "updated_at": "2026-01-28T00:00:00Z", "currency": "USD",
        "data": [entry], "cny_per_usd": "6.8"
    });
    cases.push(("/v1/pricing", 200, table.clone(), true));
    cases.push((
        "/v1/pricing",
        200,
        with(table.clone(), "", "object", json!("list")),
        false,
    ));
    cases.push((
        "/v1/pricing",
        200,
        without(table.clone(), "", "updated_at"),
        false,
    ));
    cases.push((
        "/v1/pricing",
        200,
        with(table.clone(), "", "updated_at", json!("yesterday")),
        false,
    ));
    cases.push((
        "/v1/pricing",
        200,
        without(table.clone(), "/data/0", "aliases"),
        false,
    ));
    cases.push((
        "/v1/pricing",
        200,
        with(table, "/data/0", "input_per_1m_tokens", json!(6.76)),
        false,
    ));
    cases.push(("/healthz", 200, json!({"anything": true}), true));
    for (target, status, body, expected) in cases {
        assert_eq!(
            fits(target, status, body.clone()),
            expected,
            "{target} {status}: {body}"
        );
    }
}
