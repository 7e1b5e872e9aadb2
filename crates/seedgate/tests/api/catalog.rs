//! Models and Pricing API. Every body is read through `helpers::decode`, so each test here also
//! proves the response fits the platform's schema for its path and view (`conformance`).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::helpers::TestApp;

const IDS: [&str; 4] = [
    "seedance-2.0",
    "seedance-2.0-fast",
    "seedance-2.0-mini",
    "seedance-2.5",
];

fn ids(list: &Value) -> Vec<&str> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect()
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn models_list_the_four_seedance_models() {
    let app = TestApp::spawn_without_workers().await;
    let (status, models) = app.get_path("/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(ids(&models), IDS);
    // `created` is the catalog's release date of the upstream version, midnight UTC.
    let created: Vec<i64> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["created"].as_i64().unwrap())
        .collect();
    assert_eq!(
        created,
        [1_769_558_400, 1_769_558_400, 1_781_481_600, 1_782_604_800]
    );
    let first = &models["data"][0];
    assert_eq!(first["owned_by"], "bytedance");
    let tokenlab = &first["tokenlab"];
    assert_eq!(tokenlab["category"], "video");
    assert_eq!(tokenlab["lifecycle"]["stage"], "active");
    assert_eq!(tokenlab["lifecycle"]["released_at"], "2026-01-28T00:00:00Z");
    assert_eq!(tokenlab["commercial"]["user_charge_policy"], "paid");
    assert_eq!(tokenlab["badges"], json!([]));
    assert_eq!(
        tokenlab["aliases"],
        json!(["doubao-seedance-2-0-260128", "dreamina-seedance-2-0-260128"])
    );
    assert_eq!(
        tokenlab["request_format_summary"]["request_endpoint"],
        "/v1/videos/generations"
    );
    // The largest 4k frame (3326 × 2494) for 15 s, and 15 s of video input at that size.
    assert_eq!(tokenlab["max_output_tokens"], 2_924_327);
    assert_eq!(tokenlab["max_input_tokens"], 2_916_226);
    assert_eq!(tokenlab["pricing"]["rows"].as_array().unwrap().len(), 8);

    let (_, full) = app.get_path("/v1/models?view=full").await;
    assert_eq!(full, models);
}

#[tokio::test]
async fn a_model_carries_its_limits_and_prices_under_tokenlab() {
    let app = TestApp::spawn_without_workers().await;
    let (status, fast) = app.get_path("/v1/models/seedance-2.0-fast").await;
    assert_eq!(status, 200);
    assert_eq!(fast["created"], 1_769_558_400);
    let tokenlab = &fast["tokenlab"];
    assert_eq!(tokenlab["resolutions"], json!(["480p", "720p"]));
    assert_eq!(tokenlab["operations"].as_array().unwrap().len(), 6);
    assert_eq!(
        tokenlab["duration"],
        json!({"min": 4, "max": 15, "default": 5})
    );
    assert_eq!(tokenlab["prices"][0]["cny_per_million"], "37");
    assert_eq!(tokenlab["accepted_request_formats"], json!([]));
    let format = &tokenlab["request_format_summary"];
    assert_eq!(format["resolutions"], json!(["480p", "720p"]));
    assert_eq!(format["durations"].as_array().unwrap().len(), 12);
    assert_eq!(format["durations"][0], "4");
    assert_eq!(format["aspect_ratios"].as_array().unwrap().len(), 7);
    assert_eq!(
        format["request_endpoint_by_operation"]["video-extension"],
        "/v1/videos/generations"
    );
    let (_, latest) = app.get_path("/v1/models/seedance-2.5").await;
    let tokenlab = &latest["tokenlab"];
    assert_eq!(tokenlab["duration"]["max"], 30);
    assert_eq!(
        tokenlab["reference_limits"],
        json!({"images": 30, "videos": 10, "audios": 10})
    );
    assert_eq!(
        tokenlab["input_clips"],
        json!({"min_seconds": 2, "max_seconds": 15, "total_seconds": 15})
    );
    assert_eq!(tokenlab["audio_operations"], json!(["reference-to-video"]));
    assert_eq!(tokenlab["audio_only_references"], true);
    assert_eq!(
        tokenlab["adaptive_only_operations"],
        json!([
            "image-to-video",
            "start-end-to-video",
            "video-to-video",
            "video-extension"
        ])
    );
    assert_eq!(tokenlab["pricing_provenance"]["provisional"], true);
    assert_eq!(fast["tokenlab"]["adaptive_only_operations"], json!([]));
    assert_eq!(fast["tokenlab"]["audio_only_references"], false);
    let (_, mini) = app.get_path("/v1/models/seedance-2.0-mini").await;
    assert_eq!(mini["tokenlab"]["reference_limits"]["images"], 9);
    assert_eq!(
        mini["tokenlab"]["lifecycle"]["released_at"],
        "2026-06-15T00:00:00Z"
    );

    let (status, missing) = app.get_path("/v1/models/seedance-1.0").await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn compact_view_lists_only_selection_fields() {
    let app = TestApp::spawn_without_workers().await;
    let (status, compact) = app.get_path("/v1/models?view=compact").await;
    assert_eq!(status, 200);
    assert_eq!(compact["object"], "list");
    assert_eq!(compact["view"], "compact");
    assert_eq!(compact["count"], 4);
    assert_eq!(ids(&compact), IDS);
    let item = &compact["data"][0];
    let mut keys: Vec<&str> = item
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "capabilities",
            "category",
            "id",
            "latest",
            "max_input_tokens",
            "max_output_tokens",
            "pricing",
            "provider",
            "request_endpoint",
            "status",
            "supported_operations"
        ]
    );
    // seedance-2.0's cheapest rate is 28 CNY (480p/720p with video input), its dearest 51.
    assert_eq!(
        item["pricing"],
        json!({
            "unit": "per_1m_tokens", "currency": "USD", "min_price": "4.117647",
            "max_price": "7.500000", "has_complex_pricing": true
        })
    );
    assert_eq!(item["status"], "active");
    let (_, full) = app.get_path("/v1/models").await;
    assert_eq!(
        item["max_output_tokens"],
        full["data"][0]["tokenlab"]["max_output_tokens"]
    );
}

#[tokio::test]
async fn filters_that_match_no_seedance_model_give_an_empty_list() {
    let app = TestApp::spawn_without_workers().await;
    for query in [
        "provider=openai",
        "provider=ByteDance",
        "category=image",
        "recommended_for=music",
        "tag=text-to-image",
        "category=video&recommended_for=image",
        "provider=bytedance&tag=nope",
    ] {
        let (status, full) = app.get_path(&format!("/v1/models?{query}")).await;
        assert_eq!((status, full["data"].clone()), (200, json!([])), "{query}");
        let (status, compact) = app
            .get_path(&format!("/v1/models?{query}&view=compact"))
            .await;
        assert_eq!(status, 200, "{query}");
        assert_eq!(
            (compact["count"].clone(), compact["data"].clone()),
            (json!(0), json!([]))
        );
    }
    for query in [
        "provider=bytedance",
        "category=video",
        "recommended_for=video",
        "tag=reference-to-video",
        "provider=bytedance&category=video&recommended_for=video&tag=text-to-video&view=full",
    ] {
        let (status, full) = app.get_path(&format!("/v1/models?{query}")).await;
        assert_eq!((status, ids(&full)), (200, IDS.to_vec()), "{query}");
    }
    let (_, compact) = app
        .get_path("/v1/models?view=compact&tag=video-to-video")
        .await;
    assert_eq!(ids(&compact), IDS);
}

#[tokio::test]
async fn invalid_filter_values_are_a_clear_400() {
    let app = TestApp::spawn_without_workers().await;
    for (query, code, param) in [
        ("view=tiny", "invalid_view", "view"),
        ("category=hologram", "invalid_category", "category"),
        ("category=Video", "invalid_category", "category"),
        (
            "recommended_for=chat",
            "invalid_recommended_for",
            "recommended_for",
        ),
    ] {
        let (status, body) = app.get_path(&format!("/v1/models?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(
            (
                body["error"]["code"].as_str(),
                body["error"]["param"].as_str()
            ),
            (Some(code), Some(param))
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("{param} must be one of ")),
            "{message}"
        );
    }
    let (_, body) = app.get_path("/v1/models?view=tiny").await;
    assert_eq!(body["error"]["allowed_values"], json!(["full", "compact"]));
    for path in [
        "/v1/models?limit=3",
        "/v1/models?view=full&view=compact",
        "/v1/pricing?view=compact",
    ] {
        let (status, body) = app.get_path(path).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("invalid_query")),
            "{path}"
        );
    }
}

#[tokio::test]
async fn pricing_converts_cny_at_6_8() {
    let app = TestApp::spawn_without_workers().await;
    let (status, pricing) = app.get_path("/v1/pricing").await;
    assert_eq!(status, 200);
    assert_eq!(pricing["object"], "pricing");
    assert_eq!(pricing["updated_at"], "2026-01-28T00:00:00Z");
    assert_eq!(pricing["currency"], "USD");
    assert_eq!(pricing["cny_per_usd"], "6.8");
    assert_eq!(ids_of_entries(&pricing), IDS);
    let entry = &pricing["data"][0];
    assert_eq!(entry["provider"], "bytedance");
    assert_eq!(entry["is_lock_price"], false);
    assert_eq!(entry["input_per_1m_tokens"], Value::Null);
    assert_eq!(entry["aliases"][0], "doubao-seedance-2-0-260128");
    let rows: Vec<&Value> = pricing["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["pricing_details"]["rows"].as_array().unwrap())
        .collect();
    // 2.0: 4 resolutions, fast and mini: 2 each, 2.5: 3; each with and without video input.
    assert_eq!(rows.len(), 22);
    let row = rows
        .iter()
        .find(|r| {
            r["model"] == "seedance-2.0" && r["resolution"] == "720p" && r["video_input"] == false
        })
        .unwrap();
    assert_eq!(row["cny_per_million_tokens"], "46");
    assert_eq!(row["usd_per_million_tokens"], "6.764706");
    assert_eq!(row["cny_per_usd"], "6.8");
    let k4 = rows
        .iter()
        .find(|r| r["model"] == "seedance-2.0" && r["resolution"] == "4k")
        .unwrap();
    assert_eq!(k4["provisional"], true);
    assert_eq!(entry["pricing_provenance"]["provisional"], true);
    assert_eq!(
        pricing["data"][1]["pricing_provenance"]["provisional"],
        false
    );

    let (_, none) = app.get_path("/v1/pricing?provider=openai").await;
    assert_eq!(none["data"], json!([]));
    let (_, tagged) = app
        .get_path("/v1/pricing?provider=bytedance&tag=video-extension")
        .await;
    assert_eq!(tagged, pricing);
}

fn ids_of_entries(pricing: &Value) -> Vec<&str> {
    pricing["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["model"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_models_pricing_matches_the_pricing_list() {
    let app = TestApp::spawn_without_workers().await;
    let (_, pricing) = app.get_path("/v1/pricing").await;
    for (i, id) in IDS.into_iter().enumerate() {
        let (status, one) = app.get_path(&format!("/v1/models/{id}/pricing")).await;
        assert_eq!(status, 200, "{id}");
        assert_eq!(one, pricing["data"][i], "{id}");
        let (_, model) = app.get_path(&format!("/v1/models/{id}")).await;
        assert_eq!(model["tokenlab"]["pricing"], one["pricing_details"], "{id}");
        assert_eq!(
            model["tokenlab"]["pricing_summary"], one["pricing_summary"],
            "{id}"
        );
    }
    let (status, missing) = app.get_path("/v1/models/seedance-1.0/pricing").await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn a_catalog_without_dates_shows_when_it_was_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.toml");
    let undated: Vec<&str> = seedgate_contract::BUILTIN_CATALOG
        .lines()
        .filter(|l| !l.starts_with("released =") && !l.starts_with("prices_updated ="))
        .collect();
    std::fs::write(&path, undated.join("\n")).unwrap();
    let before = now_s();
    let app = TestApp::spawn_with(|c| c.catalog_file = Some(path.clone()), false).await;
    let after = now_s();
    let (_, models) = app.get_path("/v1/models").await;
    for model in models["data"].as_array().unwrap() {
        let created = model["created"].as_i64().unwrap();
        assert!((before..=after).contains(&created), "{created}");
        assert_eq!(model["tokenlab"]["lifecycle"]["released_at"], Value::Null);
    }
    let (_, pricing) = app.get_path("/v1/pricing").await;
    let updated_at = pricing["updated_at"].as_str().unwrap();
    assert!(
        updated_at.ends_with('Z') && updated_at.len() == 20,
        "{updated_at}"
    );
    assert_ne!(updated_at, "2026-01-28T00:00:00Z");
}

/// Creates a task and waits for it to complete; the finished task.
async fn completed(app: &TestApp, body: &Value) -> Value {
    let (status, created) = app.create(body).await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap();
    let done = app
        .wait_terminal(id, std::time::Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    done
}

#[tokio::test]
async fn a_model_from_a_catalog_file_alone_is_served_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = crate::helpers::catalog_with_a_data_only_model(dir.path());
    let app = TestApp::spawn_with(|c| c.catalog_file = Some(path.clone()), true).await;

    let (status, model) = app.get_path("/v1/models/studio-9").await;
    assert_eq!(status, 200, "{model}");
    let tokenlab = &model["tokenlab"];
    assert_eq!(
        tokenlab["duration"],
        json!({"min": 2, "max": 8, "default": 3})
    );
    assert_eq!(tokenlab["resolutions"], json!(["480p"]));
    assert_eq!(
        tokenlab["input_clips"],
        json!({"min_seconds": 1, "max_seconds": 20, "total_seconds": 40})
    );
    assert_eq!(
        tokenlab["audio_operations"],
        json!(["image-to-video", "reference-to-video"])
    );
    let (_, pricing) = app.get_path("/v1/models/studio-9/pricing").await;
    assert_eq!(
        pricing["pricing_details"]["rows"].as_array().unwrap().len(),
        2,
        "{pricing}"
    );

    // Validation follows the entry.
    for (body, code) in [
        (
            json!({"model": "studio-9", "prompt": "x", "duration": 9}),
            "invalid_duration",
        ),
        (
            json!({"model": "studio-9", "prompt": "x", "resolution": "720p"}),
            "unsupported_resolution",
        ),
        (
            json!({"model": "studio-9", "prompt": "x", "aspect_ratio": "16:9"}),
            "invalid_aspect_ratio",
        ),
        (
            json!({"model": "studio-9", "operation": "video-to-video", "prompt": "x",
                "video_url": "https://e.com/v.mp4"}),
            "unsupported_operation",
        ),
        (
            json!({"model": "studio-9", "operation": "image-to-video", "prompt": "x",
                "image_url": "https://e.com/a.png", "aspect_ratio": "1:1"}),
            "invalid_aspect_ratio",
        ),
    ] {
        let (status, refused) = app.create(&body).await;
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    app.assert_nothing_written().await;

    // The quote, the reservation, the sandbox and the bill follow it: 3 s at 640 × 640.
    let body = json!({"model": "studio-9", "prompt": "a square world", "aspect_ratio": "1:1",
        "generate_audio": false});
    let (status, quote) = app
        .call("POST", "/v1/videos/quote", &app.key, Some(&body))
        .await;
    assert_eq!(status, 200, "{quote}");
    let tokens = 640 * 640 * (24 * 3 + 1) / 1024;
    assert_eq!(quote["tokens"]["billed"], tokens, "{quote}");
    let done = completed(&app, &body).await;
    assert_eq!(done["usage"]["tokens"], tokens);
    assert_eq!(done["cost"]["amount"], quote["cost"]["amount"]);
    let (status, mp4) = app.download(done["video_url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    let probe = crate::helpers::ffprobe(&mp4);
    assert_eq!((probe.width, probe.height), (640, 640));
    assert!((probe.duration - 3.0).abs() <= 0.1, "{}", probe.duration);

    // Reference audio with a first frame, as only this entry allows, changes the soundtrack.
    use base64::Engine as _;
    let encode = |mime: &str, bytes: Vec<u8>| {
        format!(
            "data:{mime};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    };
    let image = encode("image/png", crate::helpers::png_bytes(320, 320, 90));
    let audio = encode("audio/wav", crate::helpers::wav_bytes());
    let mut files = Vec::new();
    for audio_urls in [json!([audio]), json!([])] {
        let body = json!({"model": "studio-9", "operation": "image-to-video", "prompt": "p",
            "image_url": image, "audio_urls": audio_urls, "seed": 5});
        let done = completed(&app, &body).await;
        assert_eq!(done["result"]["has_audio"], true);
        files.push(app.download(done["video_url"].as_str().unwrap()).await.1);
    }
    assert!(files[0] != files[1], "the reference audio is in the file");
}
