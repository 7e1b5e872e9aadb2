//! The OpenAPI document: served, complete, and true. `schemathesis` (a tool we did not write)
//! fuzzes every operation of the live binary from the document and fails on any 5xx, any
//! response the document does not describe, or a crash.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::TestApp;
use crate::restart::start;

/// Every route the router serves, as `METHOD path`.
const ROUTES: [&str; 45] = [
    "POST /api/v3/contents/generations/tasks",
    "GET /api/v3/contents/generations/tasks",
    "GET /api/v3/contents/generations/tasks/{id}",
    "DELETE /api/v3/contents/generations/tasks/{id}",
    "POST /v1/videos/generations",
    "POST /v1/videos/quote",
    "GET /v1/videos/generations/{id}",
    "GET /v1/tasks",
    "GET /v1/tasks/events",
    "GET /v1/tasks/{id}",
    "GET /v1/tasks/{id}/events",
    "DELETE /v1/tasks/{id}",
    "POST /v1/tasks/{id}/cancel",
    "GET /v1/models",
    "GET /v1/models/{model}",
    "GET /v1/models/{model}/pricing",
    "GET /v1/pricing",
    "GET /v1/assets/{task_id}/{file}",
    "POST /v1/upstream/callback/{id}",
    "POST /v1/videos/assets",
    "GET /v1/videos/assets",
    "GET /v1/videos/assets/{assetId}",
    "PUT /v1/videos/assets/{assetId}",
    "DELETE /v1/videos/assets/{assetId}",
    "POST /v1/videos/assets/groups",
    "GET /v1/videos/assets/groups",
    "GET /v1/videos/assets/groups/{groupId}",
    "PUT /v1/videos/assets/groups/{groupId}",
    "DELETE /v1/videos/assets/groups/{groupId}",
    "GET /v1/account",
    "GET /v1/account/usage",
    "GET /v1/management/balance",
    "GET /v1/management/api-keys",
    "POST /v1/management/api-keys",
    "PATCH /v1/management/api-keys/{keyId}",
    "GET /v1/management/api-keys/{keyId}/usage",
    "GET /v1/management/api-keys/{keyId}/billing",
    "POST /api/v1/videos",
    "GET /api/v1/videos/{id}",
    "GET /api/v1/videos/{id}/content",
    "GET /api/v1/videos/models",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /openapi.json",
];

#[tokio::test]
async fn the_document_describes_every_route_and_its_errors() {
    let app = TestApp::spawn_without_workers().await;
    let response = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            documented.insert(format!("{} {path}", method.to_uppercase()));
            let responses = operation["responses"].as_object().unwrap();
            assert!(responses.contains_key("500"), "{method} {path}: no 500");
            if operation.get("security").is_some() {
                for status in ["401", "429"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path}: no {status}"
                    );
                }
            }
        }
    }
    let routes: BTreeSet<String> = ROUTES.iter().map(|r| r.to_string()).collect();
    assert_eq!(documented, routes);

    let create = &doc["paths"]["/v1/videos/generations"]["post"];
    assert_eq!(
        create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/CreateVideoRequest"
    );
    assert_eq!(
        create["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/TaskObject"
    );
    // Links let clients (and the fuzzer's stateful phase) follow a created task's id.
    assert_eq!(
        create["responses"]["200"]["links"]["GetTask"]["operationId"],
        "get_task"
    );
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "TaskObject",
        "ErrorBody",
        "Model",
        "ModelList",
        "CompactModelList",
        "ModelPricing",
        "PricingList",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    // `view` picks one of two bodies for the one status.
    let models = &doc["paths"]["/v1/models"]["get"];
    assert_eq!(
        models["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ModelListResponse"
    );
    assert_eq!(
        schemas["ModelListResponse"]["oneOf"],
        serde_json::json!([
            {"$ref": "#/components/schemas/ModelList"},
            {"$ref": "#/components/schemas/CompactModelList"}
        ])
    );
    let view = models["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "view")
        .unwrap();
    assert_eq!(
        view["schema"]["enum"],
        serde_json::json!(["full", "compact"])
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
}

/// The fuzz run: bounded examples per operation against the real binary, with a valid key,
/// egress locked to loopback so no generated URL reaches another host. Longer runs:
/// `SEEDGATE_FUZZ_EXAMPLES=500 SEEDGATE_FUZZ_SEED=… cargo test -p seedgate --test api schemathesis`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_or_undocumented_response() {
    let examples = std::env::var("SEEDGATE_FUZZ_EXAMPLES").unwrap_or_else(|_| "100".into());
    let seed = std::env::var("SEEDGATE_FUZZ_SEED").unwrap_or_else(|_| "20261125".into());
    let schemathesis =
        std::env::var("SEEDGATE_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into());

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("seedgate.toml");
    std::fs::write(
        &config,
        "dev_key_balance_usd = 100000\n\
         [engine]\nworkers = 1\nidle_poll_ms = 100\n\
         [sandbox]\nmax_concurrent_renders = 1\n\
         [limits]\nrequests_per_second = 100000\nburst = 100000\n\
         [fetch]\npublic_internet = false\nallow_private = [\"127.0.0.1/32\"]\n\
         connect_timeout_seconds = 2\ntimeout_seconds = 5\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let (mut server, key) = start(&data, &config, true).await;
    let key = key.expect("the first start prints a development key");
    let address = server.address.clone();

    let started = Instant::now();
    let run = tokio::task::spawn_blocking({
        let address = address.clone();
        let key = key.clone();
        let report = dir.path().join("report");
        let work = dir.path().to_owned();
        move || {
            Command::new(&schemathesis)
                .arg("run")
                .arg(format!("{address}/openapi.json"))
                .args(["--header", &format!("Authorization: Bearer {key}")])
                // Every check but two. A body can fit the schema and still break a rule that
                // spans fields (which inputs an operation takes, aliases that must agree), and
                // fail-closed validation rightly refuses it. And DELETE cancels a task rather
                // than removing it: a cancelled task stays readable, by contract
                // (docs/tasks-and-errors.md).
                .args(["--checks", "all"])
                .args(["--exclude-checks", "positive_data_acceptance,use_after_free"])
                // Event streams do not end while their task runs; tests/api/events.rs has them.
                .args(["--exclude-path-regex", "/events$"])
                .args(["--phases", "examples,coverage,fuzzing,stateful"])
                // One worker: hypothesis on CPython 3.11 is not thread-safe when it parses
                // sources (`SystemError: AST constructor recursion depth mismatch`).
                .args(["--max-examples", &examples, "--seed", &seed, "--workers", "1"])
                .args(["--request-timeout", "20", "--generation-database", "none", "--no-color"])
                .arg("--report-dir")
                .arg(report)
                // Its caches go to the temporary directory, not the work tree.
                .current_dir(&work)
                .output()
                .unwrap_or_else(|e| {
                    panic!("cannot run `{schemathesis}` ({e}); install it with `pip install schemathesis`")
                })
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    eprintln!("{stdout}\nschemathesis ran {:.0?}", started.elapsed());
    assert!(server.is_running(), "the server died during the fuzz run");
    drop(server);
    assert!(
        run.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(!log.contains("panicked"), "a handler panicked:\n{log}");
    assert!(!log.contains(&key), "the API key leaked into the log");
}

/// Every create body the document gives as an example, wherever it gives one (the request's
/// named examples, its `example`, its schema's `example`), with the path it is sent to.
fn request_examples(doc: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for operation in item.as_object().unwrap().values() {
            let media = &operation["requestBody"]["content"]["application/json"];
            let mut add = |name: String, value: &Value| {
                if !value.is_null() {
                    found.push((path.clone(), name, value.clone()));
                }
            };
            add("example".into(), &media["example"]);
            for (name, example) in media["examples"].as_object().into_iter().flatten() {
                add(name.clone(), &example["value"]);
            }
            if let Some(reference) = media["schema"]["$ref"].as_str() {
                let schema = reference.trim_start_matches("#/components/schemas/");
                add(
                    format!("{schema}.example"),
                    &doc["components"]["schemas"][schema]["example"],
                );
            }
        }
    }
    found
}

/// `/docs` shows each example as a curl command to paste: each must be accepted as it stands
/// by a fresh server with a test key and no network, and its task must complete. Prompts are
/// ASCII, so a browser without CJK fonts shows them.
#[tokio::test]
async fn the_docs_examples_work_as_pasted_on_this_host() {
    let app = TestApp::spawn().await;
    let (status, doc) = app.get_path("/openapi.json").await;
    assert_eq!(status, 200);
    let examples = request_examples(&doc);
    let named = |path: &str| {
        examples
            .iter()
            .filter(|(p, name, _)| p == path && !name.contains('.'))
            .count()
    };
    assert!(named("/v1/videos/generations") >= 2, "{examples:?}");
    assert!(named("/v1/videos/quote") >= 2, "{examples:?}");

    let mut created = Vec::new();
    for (path, name, body) in &examples {
        let prompt = body["prompt"].as_str().unwrap_or_default();
        assert!(prompt.is_ascii(), "{path} {name}: {prompt}");
        let (status, answer) = app.call("POST", path, &app.key, Some(body)).await;
        assert_eq!(status, 200, "{path} {name}: {answer}");
        match path.as_str() {
            "/v1/videos/quote" => assert_eq!(answer["object"], "video.quote", "{answer}"),
            "/v1/videos/generations" => {
                assert_eq!(answer["provider"], "sandbox", "{answer}");
                created.push((name, answer["id"].as_str().unwrap().to_owned()));
            }
            other => panic!("{other} has an example this test does not know how to check"),
        }
    }
    for (name, id) in created {
        let done = app.wait_terminal(&id, Duration::from_secs(300)).await;
        assert_eq!(done["status"], "completed", "{name}: {done}");
    }
}
