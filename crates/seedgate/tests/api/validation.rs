//! Fail-closed validation over HTTP: status, stable code, param, and nothing stored or charged.

use serde_json::{json, Value};

use crate::helpers::TestApp;

async fn assert_rejected(app: &TestApp, body: Value, status: u16, code: &str, param: Option<&str>) {
    let (got_status, got) = app.create(&body).await;
    assert_eq!(got_status, status, "{got}");
    assert_eq!(got["error"]["code"], code, "{got}");
    if let Some(param) = param {
        assert_eq!(got["error"]["param"], param, "{got}");
    }
    assert!(got["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    assert!(got["error"]["type"].as_str().is_some());
    app.assert_nothing_written().await;
}

fn t2v(model: &str) -> Value {
    json!({"model": model, "operation": "text-to-video", "prompt": "a cat"})
}

#[tokio::test]
async fn fast_and_mini_reject_1080p_and_4k() {
    let app = TestApp::spawn_without_workers().await;
    for model in ["seedance-2.0-fast", "seedance-2.0-mini"] {
        for resolution in ["1080p", "4k"] {
            let mut body = t2v(model);
            body["resolution"] = resolution.into();
            let (status, got) = app.create(&body).await;
            assert_eq!(status, 400);
            assert_eq!(got["error"]["code"], "unsupported_resolution");
            assert_eq!(got["error"]["param"], "resolution");
            assert_eq!(got["error"]["allowed_resolutions"], json!(["480p", "720p"]));
        }
    }
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn ten_reference_images_rejected() {
    let app = TestApp::spawn_without_workers().await;
    let images: Vec<String> = (0..10)
        .map(|i| format!("https://example.com/{i}.png"))
        .collect();
    let body = json!({"model": "seedance-2.0", "operation": "reference-to-video",
        "prompt": "x", "reference_images": images});
    assert_rejected(
        &app,
        body,
        400,
        "too_many_references",
        Some("reference_images"),
    )
    .await;
}

#[tokio::test]
async fn audio_outside_reference_to_video_rejected() {
    let app = TestApp::spawn_without_workers().await;
    let audio = json!(["https://example.com/a.wav"]);
    let bodies = [
        json!({"model": "seedance-2.0", "operation": "text-to-video", "prompt": "x", "audio_urls": audio}),
        json!({"model": "seedance-2.0", "operation": "image-to-video", "prompt": "x",
            "image_url": "https://example.com/i.png", "audio_urls": audio}),
        json!({"model": "seedance-2.0", "operation": "start-end-to-video", "prompt": "x",
            "start_image": "https://example.com/a.png", "end_image": "https://example.com/b.png", "audio_urls": audio}),
        json!({"model": "seedance-2.0", "operation": "video-to-video", "prompt": "x",
            "video_url": "https://example.com/v.mp4", "audio_urls": audio}),
        json!({"model": "seedance-2.0", "operation": "video-extension",
            "video_url": "https://example.com/v.mp4", "audio_urls": audio}),
    ];
    for body in bodies {
        assert_rejected(&app, body, 400, "audio_not_allowed", Some("audio_urls")).await;
    }
}

#[tokio::test]
async fn audio_only_references_rejected() {
    let app = TestApp::spawn_without_workers().await;
    let body = json!({"model": "seedance-2.0", "operation": "reference-to-video",
        "prompt": "x", "audio_urls": ["https://example.com/a.wav"]});
    assert_rejected(&app, body, 400, "audio_requires_visual_reference", None).await;
}

#[tokio::test]
async fn unknown_field_rejected() {
    let app = TestApp::spawn_without_workers().await;
    let mut body = t2v("seedance-2.0");
    body["resolutoin"] = "720p".into();
    assert_rejected(&app, body, 400, "unknown_field", Some("resolutoin")).await;
}

#[tokio::test]
async fn duration_3_and_16_rejected() {
    let app = TestApp::spawn_without_workers().await;
    for duration in [3, 16] {
        let mut body = t2v("seedance-2.0");
        body["duration"] = duration.into();
        assert_rejected(&app, body, 400, "invalid_duration", Some("duration")).await;
    }
}

#[tokio::test]
async fn an_asset_reference_of_no_material_asset_is_refused() {
    let app = TestApp::spawn_without_workers().await;
    let body = json!({"model": "seedance-2.0", "prompt": "p",
        "image_url": "asset://asset-20260101120000-abcde"});
    assert_rejected(&app, body, 400, "asset_not_found", Some("image_url")).await;
}

#[tokio::test]
async fn unknown_model_rejected() {
    let app = TestApp::spawn_without_workers().await;
    assert_rejected(
        &app,
        t2v("seedance-9"),
        400,
        "model_not_found",
        Some("model"),
    )
    .await;
}

#[tokio::test]
async fn malformed_json_rejected() {
    let app = TestApp::spawn_without_workers().await;
    let (status, got) = app.create_raw("{\"model\": ").await;
    assert_eq!(status, 400);
    assert_eq!(got["error"]["code"], "invalid_json");
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn extension_of_a_missing_or_foreign_task_rejected() {
    let app = TestApp::spawn_without_workers().await;
    let body = json!({"model": "seedance-2.0", "operation": "video-extension",
        "task_id": "vtask_01JZZZZZZZZZZZZZZZZZZZZZZZ"});
    assert_rejected(&app, body, 400, "source_task_not_usable", Some("task_id")).await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 4096, false).await;
    let mut body = t2v("seedance-2.0");
    body["prompt"] = "x".repeat(10_000).into();
    assert_rejected(&app, body, 413, "request_too_large", None).await;
}

#[tokio::test]
async fn missing_or_wrong_key_is_401() {
    let app = TestApp::spawn_without_workers().await;
    let response = app
        .client
        .post(format!("{}/v1/videos/generations", app.address))
        .json(&t2v("seedance-2.0"))
        .send()
        .await
        .unwrap();
    let (status, got) = crate::helpers::decode(response).await;
    assert_eq!(status, 401);
    assert_eq!(got["error"]["type"], "invalid_api_key");
    let (status, got) = app
        .create_with_key("sg_test_not_a_real_key", &t2v("seedance-2.0"))
        .await;
    assert_eq!(status, 401);
    assert_eq!(got["error"]["code"], "invalid_api_key");
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn insufficient_balance_is_402_and_stores_nothing() {
    let app = TestApp::spawn_without_workers().await;
    let (poor_key, poor_account) = app.new_key(10_000).await;
    let mut body = t2v("seedance-2.0");
    body["resolution"] = "1080p".into();
    let (status, got) = app.create_with_key(&poor_key, &body).await;
    assert_eq!(status, 402, "{got}");
    assert_eq!(got["error"]["code"], "insufficient_balance");
    assert_eq!(got["error"]["type"], "insufficient_balance");
    // Numbers, as the platform's error schema has them; exact to the micro-dollar.
    assert_eq!(got["error"]["balance_usd"], json!(0.01));
    assert!(got["error"]["estimated_cost_usd"].as_f64().unwrap() > 0.01);
    assert_eq!(app.store.count_tasks(&poor_account).await.unwrap(), 0);
    assert_eq!(app.balance(&poor_account).await, 10_000);
    assert_eq!(app.store.ledger_sum(&poor_account).await.unwrap(), 10_000);
}

#[tokio::test]
async fn a_quote_prices_exactly_as_a_create_reserves_and_stores_nothing() {
    let app = TestApp::spawn_without_workers().await;
    let body = json!({"model": "seedance-2.0", "prompt": "a kite over the sea", "resolution": "720p",
        "duration": 8, "aspect_ratio": "9:16"});
    let (status, quote) = app
        .call("POST", "/v1/videos/quote", &app.key, Some(&body))
        .await;
    assert_eq!(status, 200, "{quote}");
    assert_eq!(
        (quote["object"].as_str(), quote["operation"].as_str()),
        (Some("video.quote"), Some("text-to-video"))
    );
    assert_eq!(
        (quote["width"].as_u64(), quote["output_seconds"].as_u64()),
        (Some(720), Some(8))
    );
    app.assert_nothing_written().await;
    // Refused with the very code a create gets, and still nothing written.
    for bad in [
        json!({"model": "seedance-2.0", "prompt": "x", "resolution": "8k"}),
        json!({"model": "nope", "prompt": "x"}),
    ] {
        let (quoted, refusal) = app
            .call("POST", "/v1/videos/quote", &app.key, Some(&bad))
            .await;
        let (created, error) = app.create(&bad).await;
        assert_eq!(
            (quoted, &refusal["error"]["code"]),
            (created, &error["error"]["code"]),
            "{bad}"
        );
    }
    app.assert_nothing_written().await;
    let (status, task) = app.create(&body).await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["estimated_cost"]["amount"], quote["cost"]["amount"]);
    assert_eq!(task["estimated_cost"]["tokens"], quote["tokens"]["billed"]);
}
