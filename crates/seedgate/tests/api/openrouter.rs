//! The OpenRouter-compatible surface, `/api/v1/videos`: OpenRouter's official Python SDK,
//! unchanged but for its server URL, submits, polls and downloads jobs
//! (`tests/clients/openrouter_sdk.py`; `pip install openrouter==1.3.84`), and a job made there
//! is the same task, with the same bill, on `/v1` and `/api/v3`.

use std::process::Command;

use seedgate::engine::Outcome;
use serde_json::{json, Value};

use crate::helpers::{ffprobe, TestApp};

fn run_sdk(app: &TestApp, args: &[&str]) -> String {
    let python = std::env::var("SEEDGATE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/openrouter_sdk.py"
    );
    let output = Command::new(&python)
        .arg(script)
        .args(args)
        .env("SEEDGATE_OPENROUTER_URL", format!("{}/api/v1", app.address))
        .env("SEEDGATE_API_KEY", &app.key)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e})"));
    assert!(
        output.status.success(),
        "the OpenRouter SDK failed against the server:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

// The SDK runs as a child process while this runtime serves it: a second thread keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openrouter_sdk_works_unchanged() {
    let app = TestApp::spawn_without_workers().await;
    let submitted = tokio::task::block_in_place(|| run_sdk(&app, &["submit"]));
    let (text, framed) = submitted.split_once(' ').unwrap();
    while app.engine.run_one().await.unwrap() == Outcome::Done {}
    let files = tempfile::tempdir().unwrap();
    for (id, operation) in [(text, "text-to-video"), (framed, "image-to-video")] {
        let out = files.path().join(format!("{id}.mp4"));
        let cost =
            tokio::task::block_in_place(|| run_sdk(&app, &["fetch", id, out.to_str().unwrap()]));
        let (_, task) = app.task(id).await;
        assert_eq!(task["operation"], operation, "{task}");
        assert_eq!(task["status"], "completed", "{task}");
        assert_eq!(
            cost.parse::<f64>().unwrap(),
            task["cost"]["amount"]
                .as_str()
                .unwrap()
                .parse::<f64>()
                .unwrap(),
            "the bill is the same on both surfaces"
        );
        let probe = ffprobe(&std::fs::read(&out).unwrap());
        assert_eq!(probe.codec, "h264", "{id}");
        assert_eq!(json!(probe.height), task["result"]["height"], "{id}");
    }
}

async fn post(app: &TestApp, key: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = app
        .client
        .post(format!("{}/api/v1/videos", app.address))
        .json(body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    crate::helpers::decode(request.send().await.unwrap()).await
}

/// The fields of a refusal: status, OpenRouter's code (the status), and ours.
fn refusal(status: u16, body: &Value) -> (u16, u64, &str) {
    (
        status,
        body["error"]["code"].as_u64().unwrap_or(0),
        body["error"]["metadata"]["seedgate_code"]
            .as_str()
            .unwrap_or(""),
    )
}

#[tokio::test]
async fn a_job_is_the_same_task_on_every_surface() {
    let app = TestApp::spawn_without_workers().await;
    let (status, job) = post(
        &app,
        Some(&app.key),
        &json!({"model": "bytedance/seedance-2.0-fast", "prompt": "a kite", "size": "864x496",
            "duration": 4, "generate_audio": false,
            "provider": {"options": {"byteplus": {"watermark": true, "nonsense": 1}, "openai": {"x": 1}}}}),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap();
    assert_eq!(job["status"], "pending");
    assert_eq!(
        job["polling_url"],
        format!("{}/api/v1/videos/{id}", app.address)
    );
    let (_, task) = app.task(id).await;
    assert_eq!(
        task["request"]["resolution"], "480p",
        "`size` picks the tier"
    );
    assert_eq!(task["request"]["aspect_ratio"], "16:9", "and the ratio");
    assert_eq!(
        task["request"]["watermark"], true,
        "our slug's options apply"
    );
    let (status, ark) = app
        .get_path(&format!(
            "/api/v3/contents/generations/tasks/{}",
            id.replacen("vtask_", "cgt-", 1)
        ))
        .await;
    assert_eq!((status, &ark["status"]), (200, &json!("queued")), "{ark}");

    // Cancelled on /v1, it reads cancelled here, uncharged.
    let (status, _) = app.cancel(id).await;
    assert_eq!(status, 200);
    let (status, cancelled) = app.get_path(&format!("/api/v1/videos/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert!(cancelled["error"].is_string(), "{cancelled}");
    assert!(cancelled.get("usage").is_none(), "{cancelled}");

    // A completed job: its bill and its video, through this surface.
    let (status, done) = post(
        &app,
        Some(&app.key),
        &json!({"model": "seedance-2.0-fast", "prompt": "a kite", "resolution": "480p", "duration": 4}),
    )
    .await;
    assert_eq!(status, 202, "{done}");
    let done_id = done["id"].as_str().unwrap().to_owned();
    while app.engine.run_one().await.unwrap() == Outcome::Done {}
    let (_, polled) = app.get_path(&format!("/api/v1/videos/{done_id}")).await;
    let (_, task) = app.task(&done_id).await;
    assert_eq!(polled["status"], "completed", "{polled}");
    assert_eq!(polled["progress"], 100);
    assert_eq!(
        polled["usage"]["cost"].as_f64(),
        task["cost"]["amount"].as_str().unwrap().parse::<f64>().ok(),
        "the amount, as a number"
    );
    let signed = polled["urls"][0].as_str().unwrap();
    let (status, bytes) = app.download(signed).await;
    assert_eq!(status, 200);
    let response = app
        .client
        .get(polled["unsigned_urls"][0].as_str().unwrap())
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "video/mp4");
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // OpenRouter's spelling of the 4k tier, and empty lists that send nothing.
    let (status, big) = post(
        &app,
        Some(&app.key),
        &json!({"model": "bytedance/seedance-2.0", "prompt": "a kite", "resolution": "4K",
            "duration": 4, "frame_images": [], "input_references": []}),
    )
    .await;
    assert_eq!(status, 202, "{big}");
    let (_, big) = app.task(big["id"].as_str().unwrap()).await;
    assert_eq!(
        (&big["operation"], &big["request"]["resolution"]),
        (&json!("text-to-video"), &json!("4k"))
    );

    // It continues as a video-extension through `previous_job_id`.
    let (status, next) = post(
        &app,
        Some(&app.key),
        &json!({"model": "bytedance/seedance-2.0-fast", "prompt": "and on", "resolution": "480p",
            "duration": 4, "previous_job_id": done_id}),
    )
    .await;
    assert_eq!(status, 202, "{next}");
    let (_, next) = app.task(next["id"].as_str().unwrap()).await;
    assert_eq!(next["operation"], "video-extension", "{next}");
}

#[tokio::test]
async fn refusals_come_in_openrouters_shape_and_change_nothing() {
    let app = TestApp::spawn_without_workers().await;
    let fast = "bytedance/seedance-2.0-fast";
    let png = "data:image/png;base64,iVBORw0KGgo=";
    for (body, expected) in [
        (
            json!({"model": fast, "prompt": "x", "resolution": "4K"}),
            (400, 400, "unsupported_resolution"),
        ),
        (
            json!({"model": fast, "prompt": "x", "colour": "red"}),
            (400, 400, "unsupported_parameter"),
        ),
        (
            json!({"model": fast, "prompt": "x", "upscale_factor": 2}),
            (400, 400, "unsupported_parameter"),
        ),
        (
            json!({"model": fast, "prompt": "x",
                "frame_images": [{"type": "image_url", "image_url": {"url": png}, "frame_type": "first_frame"}],
                "input_references": [{"type": "image_url", "image_url": {"url": png}}]}),
            (400, 400, "conflicting_inputs"),
        ),
        (
            json!({"model": fast, "prompt": "x",
                "frame_images": [{"type": "image_url", "image_url": {"url": png}, "frame_type": "last_frame"}]}),
            (400, 400, "missing_field"),
        ),
        (
            json!({"model": fast, "prompt": "x", "size": "1x1"}),
            (400, 400, "unsupported_resolution"),
        ),
        (
            json!({"model": fast, "prompt": "x", "size": "864x496", "resolution": "720p"}),
            (400, 400, "conflicting_inputs"),
        ),
    ] {
        let (status, refused) = post(&app, Some(&app.key), &body).await;
        assert_eq!(refusal(status, &refused), expected, "{body}: {refused}");
        assert!(refused["error"]["message"].is_string(), "{refused}");
    }
    let (status, refused) = post(&app, None, &json!({"model": fast, "prompt": "x"})).await;
    assert_eq!(
        refusal(status, &refused),
        (401, 401, "invalid_api_key"),
        "{refused}"
    );
    app.assert_nothing_written().await;

    let (status, missing) = app
        .get_path("/api/v1/videos/vtask_01JF3Q7Z8X9Y0A1B2C3D4E5F6G")
        .await;
    assert_eq!(
        refusal(status, &missing),
        (404, 404, "async_task_not_found")
    );
    // A path this surface does not have is refused in its words too.
    let (status, nowhere) = app
        .get_path("/api/v1/videos/vtask_01JF3Q7Z8X9Y0A1B2C3D4E5F6G/thumbnail")
        .await;
    assert_eq!(
        refusal(status, &nowhere),
        (404, 404, "not_found"),
        "{nowhere}"
    );
    let (status, wrong_method) = app
        .call("DELETE", "/api/v1/videos/models", &app.key, None)
        .await;
    assert_eq!(
        refusal(status, &wrong_method),
        (405, 405, "method_not_allowed"),
        "{wrong_method}"
    );
    let (_, job) = post(
        &app,
        Some(&app.key),
        &json!({"model": fast, "prompt": "x", "resolution": "480p"}),
    )
    .await;
    let id = job["id"].as_str().unwrap();
    for (path, expected) in [
        (
            format!("/api/v1/videos/{id}/content"),
            (409, 409, "video_not_ready"),
        ),
        (
            format!("/api/v1/videos/{id}/content?index=1"),
            (400, 400, "invalid_query"),
        ),
    ] {
        let (status, body) = app.get_path(&path).await;
        assert_eq!(refusal(status, &body), expected, "{path}: {body}");
    }

    // The models list needs no key.
    let listed: Value = app
        .client
        .get(format!("{}/api/v1/videos/models", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let model = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == fast)
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(model["supported_resolutions"], json!(["480p", "720p"]));
    let full = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "bytedance/seedance-2.0")
        .unwrap();
    assert!(
        full["supported_resolutions"]
            .as_array()
            .unwrap()
            .contains(&json!("4K")),
        "{full}"
    );
    assert!(model["supported_sizes"]
        .as_array()
        .unwrap()
        .contains(&json!("864x496")));
    assert_eq!(model["upscale_factor"], Value::Null);
    assert!(
        model["pricing_skus"]["per-million-tokens-480p"].is_string(),
        "{model}"
    );
}
