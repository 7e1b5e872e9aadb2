//! The `ark` provider against a fake upstream that speaks docs/ark.md and misbehaves on cue.

use std::time::{Duration, Instant};

use seedgate::config::{ChannelConfig, Config};
use seedgate::ids::{AccountId, ChannelId, TaskId};
use seedgate::store::{KeyMode, TaskState};
use seedgate_contract::Resolution;
use serde_json::{json, Value};

use crate::fake_ark::{Ending, Endpoint, FakeArk, Fault, ResultFiles, FAKE_KEY_ENV};
use crate::helpers::{ffprobe, png_bytes, run_alone, wait_until, MediaServer, Storage, TestApp};

const WAIT: Duration = Duration::from_secs(60);

pub fn channel(id: &str, fake: &FakeArk, weight: u32) -> ChannelConfig {
    ChannelConfig {
        id: ChannelId::new(id),
        provider: "ark".into(),
        base_url: fake.base_url.clone(),
        api_key_env: FAKE_KEY_ENV.into(),
        models: [
            ("seedance-2.0", "doubao-seedance-2-0-260128"),
            ("seedance-2.0-fast", "doubao-seedance-2-0-fast-260128"),
            ("seedance-2.5", "doubao-seedance-2-5-260628"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect(),
        resolutions: vec![Resolution::P480, Resolution::P720, Resolution::P1080],
        priority: 0,
        weight,
        routing: Default::default(),
        operations: None,
        costs: Default::default(),
        max_concurrent_tasks: 10,
        timeout_seconds: 2,
        polls_per_second: 1000,
        poll_batch: Some(100),
    }
}

/// Polls on `test_config`'s short intervals from the first (no wait for an expected finish),
/// and a channel taken out of rotation stays out for the rest of the test.
pub fn fast_polls(config: &mut Config) {
    config.engine.expected_ms_per_output_second = 0;
    config.engine.breaker_cooldown_seconds = 60;
}

/// A server whose live keys go to one fake upstream channel, `volc`; test keys to the sandbox.
pub async fn app_with_channel(fake: &FakeArk) -> TestApp {
    TestApp::spawn_on(
        Storage::Local,
        |c| {
            fast_polls(c);
            c.channels = vec![channel("volc", fake, 1)];
        },
        true,
    )
    .await
}

/// A server whose live keys go to the given fake upstreams; returns it with a live key.
pub async fn live_app(
    channels: Vec<ChannelConfig>,
    tweak: impl FnOnce(&mut Config),
) -> (TestApp, String, AccountId) {
    live_app_on(Storage::Local, channels, tweak).await
}

pub async fn live_app_on(
    storage: Storage,
    channels: Vec<ChannelConfig>,
    tweak: impl FnOnce(&mut Config),
) -> (TestApp, String, AccountId) {
    let app = TestApp::spawn_on(
        storage,
        |c| {
            fast_polls(c);
            c.channels = channels;
            tweak(c);
        },
        true,
    )
    .await;
    let (key, account) = app.new_key_in_mode(KeyMode::Live, 100_000_000).await;
    (app, key, account)
}

fn t2v() -> Value {
    json!({"model": "seedance-2.0-fast", "operation": "text-to-video", "prompt": "a red kite",
        "resolution": "480p", "duration": 4, "aspect_ratio": "16:9", "seed": 7})
}

async fn create_ok(app: &TestApp, key: &str, body: &Value) -> String {
    let (status, created) = app.create_with_key(key, body).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["provider"], "ark");
    created["id"].as_str().unwrap().to_owned()
}

/// Checks that a completed task without video input was charged exactly `tokens` at its
/// model's 480p rate in `catalog`, on the task and in the balance (which held $100); returns
/// the charge.
pub async fn assert_charged(
    app: &TestApp,
    account: &AccountId,
    done: &Value,
    catalog: &seedgate_contract::Catalog,
    tokens: u64,
) -> seedgate_contract::Money {
    let model = done["model"].as_str().unwrap();
    let charged =
        seedgate_contract::pricing::price_tokens(catalog, model, Resolution::P480, false, tokens)
            .unwrap();
    assert_eq!(done["cost"]["amount"], charged.usd_string());
    assert_eq!(app.balance(account).await, 100_000_000 - charged.usd_micros);
    charged
}

pub async fn wait_done(app: &TestApp, key: &str, id: &str) -> Value {
    crate::helpers::wait_terminal(&app.client, &app.address, key, id, WAIT).await
}

#[tokio::test]
async fn success_is_copied_probed_and_settled_to_the_micro_dollar() {
    for storage in Storage::BOTH {
        success_is_copied_probed_and_settled_on(storage).await;
    }
}

async fn success_is_copied_probed_and_settled_on(storage: Storage) {
    let fake = FakeArk::start().await;
    let (app, key, account) = live_app_on(storage, vec![channel("volc", &fake, 1)], |_| {}).await;
    let id = create_ok(&app, &key, &t2v()).await;
    let done = wait_done(&app, &key, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    // 864 × 496 × (24 × 4 + 1) / 1024 tokens at 37 CNY per million, ÷ 6.8.
    let tokens = 864 * 496 * 97 / 1024;
    assert_eq!(done["usage"]["tokens"], tokens);
    let expected = assert_charged(
        &app,
        &account,
        &done,
        &seedgate_contract::Catalog::builtin(),
        tokens,
    )
    .await;
    assert_eq!(
        app.store.ledger_sum(&account).await.unwrap(),
        100_000_000 - expected.usd_micros
    );
    assert_eq!(
        (
            done["result"]["width"].as_u64(),
            done["result"]["height"].as_u64()
        ),
        (Some(864), Some(496))
    );
    assert_eq!(done["result"]["has_audio"], true);

    // The upstream's files die; ours live on.
    fake.delete_files();
    let (status, mp4) = app.download(done["video_url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    let probe = ffprobe(&mp4);
    assert_eq!(
        (probe.codec.as_str(), probe.width, probe.height),
        ("h264", 864, 496)
    );
    let (status, _) = app.download(done["last_frame_url"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(fake.tasks_created(), 1);
    // The upstream is told to give up when our six-hour deadline does.
    let sent = fake.creates()[0].1["execution_expires_after"]
        .as_i64()
        .unwrap();
    assert!((21_590..=21_600).contains(&sent), "{sent}");
    let row = app.store.task(&TaskId::new(&id)).await.unwrap().unwrap();
    assert_eq!(row.upstream_usage_tokens, Some(tokens as i64));
    fake.assert_no_violations();
}

#[tokio::test]
async fn seedance_2_5_runs_upstream_with_its_limits_and_is_charged_the_length_it_picks() {
    let fake = FakeArk::start().await;
    let media = MediaServer::start().await;
    let (app, key, account) = live_app(vec![channel("volc", &fake, 1)], |_| {}).await;
    let images: Vec<String> = (0..12)
        .map(|n| media.url(&format!("start.png?{n}")))
        .collect();
    let audios: Vec<String> = (0..2)
        .map(|n| media.url(&format!("tone.wav?{n}")))
        .collect();
    let body = json!({"model": "seedance-2.5", "operation": "reference-to-video",
        "prompt": "twelve looks", "reference_images": images, "audio_urls": audios,
        "resolution": "480p", "duration": -1, "aspect_ratio": "16:9"});
    let (status, created) = app.create_with_key(&key, &body).await;
    assert_eq!(status, 200, "{created}");
    // Reserved for the longest length 2.5 may pick: 30 s.
    assert_eq!(
        created["estimated_cost"]["tokens"],
        864 * 496 * (24 * 30 + 1) / 1024
    );
    let done = wait_done(&app, &key, created["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    let sent = &fake.creates()[0].1;
    assert_eq!(sent["model"], "doubao-seedance-2-5-260628");
    assert_eq!(sent["duration"], -1);
    let roles: Vec<&str> = sent["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item["role"].as_str())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "reference_image").count(),
        12
    );
    assert_eq!(roles.iter().filter(|r| **r == "reference_audio").count(), 2);
    // The upstream picked 10 s: that is what is delivered and charged, to the micro-dollar.
    let (_, mp4) = app.download(done["video_url"].as_str().unwrap()).await;
    assert!((ffprobe(&mp4).duration - 10.0).abs() <= 0.1);
    let tokens = 864 * 496 * (24 * 10 + 1) / 1024;
    assert_eq!(done["usage"]["tokens"], tokens);
    assert_charged(
        &app,
        &account,
        &done,
        &seedgate_contract::Catalog::builtin(),
        tokens,
    )
    .await;

    // A first frame at a fixed ratio is refused here, before the upstream would refuse it
    // (`TaskTypeConstraint`), and audio alone goes up as 2.5 allows.
    let framed = json!({"model": "seedance-2.5", "operation": "image-to-video", "prompt": "p",
        "image_url": media.url("start.png"), "resolution": "480p", "aspect_ratio": "16:9"});
    let (status, refused) = app.create_with_key(&key, &framed).await;
    assert_eq!(status, 400);
    assert_eq!(refused["error"]["code"], "invalid_aspect_ratio");
    let audio_only = json!({"model": "seedance-2.5", "operation": "reference-to-video",
        "prompt": "a song", "audio_urls": [media.url("tone.wav")], "resolution": "480p",
        "duration": 4, "output_format": "mov"});
    let id = create_ok(&app, &key, &audio_only).await;
    let done = wait_done(&app, &key, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(fake.tasks_created(), 2);
    // A draft goes up as the upstream's own draft, at 480p.
    let draft = json!({"model": "seedance-2.5", "prompt": "a preview", "duration": 4,
        "draft": true});
    let id = create_ok(&app, &key, &draft).await;
    let done_draft = wait_done(&app, &key, &id).await;
    assert_eq!(done_draft["status"], "completed", "{done_draft}");
    assert_eq!(done_draft["draft_task_id"], id.as_str());
    let sent = &fake.creates()[2].1;
    assert_eq!(
        (&sent["draft"], &sent["resolution"]),
        (&json!(true), &json!("480p"))
    );
    // Asked for QuickTime, sent the upstream's field, and kept what it made as such.
    assert_eq!(fake.creates()[1].1["output_format"], "mov");
    assert!(fake.creates()[0].1.get("output_format").is_none());
    assert_eq!(done["result"]["container"], "mov");
    let url = done["video_url"].as_str().unwrap();
    assert!(url.contains("/video.mov?"), "{url}");
    let (_, mov) = app.download(url).await;
    assert_eq!(ffprobe(&mov).major_brand, "qt  ");
    fake.assert_no_violations();
}

/// Draft → final upstream: the draft is the upstream's own draft; each final names it by its
/// upstream id on the channel that holds it, and each leg is settled on what the upstream
/// made, to the micro-dollar.
#[tokio::test]
async fn a_draft_and_its_finals_run_upstream_each_settled_exactly() {
    // Two upstream accounts: a final sent to the one without its draft would be refused there.
    let (volc, byteplus) = (FakeArk::start().await, FakeArk::start().await);
    let (app, key, account) = live_app(
        vec![channel("volc", &volc, 1), channel("byteplus", &byteplus, 1)],
        |_| {},
    )
    .await;
    let draft = json!({"model": "seedance-2.5", "prompt": "a night market", "duration": -1,
        "aspect_ratio": "9:16", "draft": true, "generate_audio": false});
    let draft_id = create_ok(&app, &key, &draft).await;
    let made = wait_done(&app, &key, &draft_id).await;
    assert_eq!(made["status"], "completed", "{made}");
    let row = app
        .store
        .task(&TaskId::new(&draft_id))
        .await
        .unwrap()
        .unwrap();
    let (draft_channel, upstream_draft) = (
        row.channel.clone().unwrap(),
        row.upstream_id.clone().unwrap(),
    );

    let v1_final = json!({"model": "seedance-2.5", "draft_task_id": draft_id,
        "resolution": "720p", "watermark": true});
    let (status, quote) = app
        .call("POST", "/v1/videos/quote", &key, Some(&v1_final))
        .await;
    assert_eq!(status, 200, "{quote}");
    assert_eq!(
        quote["output_seconds"], 10,
        "the length the draft was made at"
    );
    let first = create_ok(&app, &key, &v1_final).await;
    let (status, created) = app
        .call(
            "POST",
            "/api/v3/contents/generations/tasks",
            &key,
            Some(
                &json!({"model": "doubao-seedance-2-5-260628", "resolution": "1080p",
                "content": [{"type": "draft_task",
                    "draft_task": {"id": draft_id.replacen("vtask_", "cgt-", 1)}}]}),
            ),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let second = created["id"]
        .as_str()
        .unwrap()
        .replacen("cgt-", "vtask_", 1);

    let catalog = seedgate_contract::Catalog::builtin();
    let price = |resolution, tokens: u64| {
        seedgate_contract::pricing::price_tokens(
            &catalog,
            "seedance-2.5",
            resolution,
            false,
            tokens,
        )
        .unwrap()
    };
    let tokens = |w: u64, h: u64| w * h * (24 * 10 + 1) / 1024;
    let mut spent = price(Resolution::P480, tokens(496, 864)).usd_micros;
    assert_eq!(
        made["cost"]["amount"],
        price(Resolution::P480, tokens(496, 864)).usd_string()
    );
    for (id, resolution, (w, h)) in [
        (&first, Resolution::P720, (720, 1280)),
        (&second, Resolution::P1080, (1080, 1920)),
    ] {
        let done = wait_done(&app, &key, id).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(
            (&done["result"]["width"], &done["result"]["height"]),
            (&json!(w), &json!(h))
        );
        assert_eq!(done["usage"]["tokens"], tokens(w, h));
        let charged = price(resolution, tokens(w, h));
        assert_eq!(done["cost"]["amount"], charged.usd_string());
        spent += charged.usd_micros;
        let row = app.store.task(&TaskId::new(id)).await.unwrap().unwrap();
        assert_eq!(
            row.channel.as_ref(),
            Some(&draft_channel),
            "only that channel has the draft"
        );
    }
    assert_eq!(app.balance(&account).await, 100_000_000 - spent);
    let fake = if draft_channel.as_str() == "volc" {
        &volc
    } else {
        &byteplus
    };
    let creates = fake.creates();
    assert_eq!(
        creates.len(),
        3,
        "one upstream task per leg, all where the draft is"
    );
    for (_, sent) in &creates[1..] {
        assert_eq!(
            sent["content"],
            json!([{"type": "draft_task", "draft_task": {"id": upstream_draft}}])
        );
        assert!(
            sent.get("draft").is_none() && sent.get("seed").is_none(),
            "{sent}"
        );
    }
    // The engine may send the two finals in either order; only the /v1 one asked for a
    // watermark.
    let watermarked = creates[1..]
        .iter()
        .filter(|(_, sent)| sent["watermark"] == true)
        .count();
    assert_eq!(watermarked, 1);
    volc.assert_no_violations();
    byteplus.assert_no_violations();
}

#[tokio::test]
async fn a_model_from_a_catalog_file_alone_runs_upstream_as_its_entry_says() {
    let fake = FakeArk::start().await;
    fake.serve_model(
        "studio-9-261201",
        crate::fake_ark::ModelRules {
            durations: 2..=8,
            resolutions: vec!["480p"],
            references: [2, 1, 4],
            audio_alone: true,
            frames_adaptive_only: true,
            chosen_seconds: 6,
            mov: false,
            drafts: false,
        },
    );
    let media = MediaServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let catalog = crate::helpers::catalog_with_a_data_only_model(dir.path());
    let mut volc = channel("volc", &fake, 1);
    volc.models
        .insert("studio-9".into(), "studio-9-261201".into());
    let (app, key, account) = live_app(vec![volc], |c| c.catalog_file = Some(catalog)).await;
    // Audio with a first frame, as only this entry allows; 3 s by its default, 1:1 by its ratio.
    let body = json!({"model": "studio-9", "operation": "image-to-video", "prompt": "p",
        "image_url": media.url("start.png"), "audio_urls": [media.url("tone.wav")]});
    let id = create_ok(&app, &key, &body).await;
    let done = wait_done(&app, &key, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let sent = &fake.creates()[0].1;
    assert_eq!(sent["model"], "studio-9-261201");
    assert_eq!(
        (sent["duration"].as_i64(), sent["resolution"].as_str()),
        (Some(3), Some("480p"))
    );
    assert_eq!(sent["ratio"], "adaptive");
    let roles: Vec<&str> = sent["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|item| item["role"].as_str())
        .collect();
    assert_eq!(roles, ["first_frame", "reference_audio"]);
    // Charged at its own rate (10 CNY per million) for what the upstream reported.
    let tokens = done["usage"]["tokens"].as_u64().unwrap();
    let catalog = seedgate_contract::Catalog::from_toml(&format!(
        "{}\n{}",
        seedgate_contract::BUILTIN_CATALOG,
        crate::helpers::DATA_ONLY_MODEL
    ))
    .unwrap();
    assert_charged(&app, &account, &done, &catalog, tokens).await;
    fake.assert_no_violations();
}

/// The fake refuses what the real 2.5 refuses, so the test above proves Seedgate never sends it.
#[tokio::test]
async fn the_fake_upstream_refuses_a_2_5_first_frame_at_a_fixed_ratio() {
    let fake = FakeArk::start().await;
    let client = reqwest::Client::new();
    let send = |ratio: &str| {
        client
            .post(format!("{}/contents/generations/tasks", fake.base_url))
            .bearer_auth(crate::fake_ark::FAKE_KEY)
            .json(
                &json!({"model": "doubao-seedance-2-5-260628", "resolution": "480p",
                "ratio": ratio, "duration": 5, "content": [
                    {"type": "text", "text": "p"},
                    {"type": "image_url", "role": "first_frame",
                     "image_url": {"url": "https://e.com/a.png"}}]}),
            )
            .send()
    };
    let refused = send("16:9").await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("TaskTypeConstraint"),
        "{body}"
    );
    let broken = fake.take_violations();
    assert!(broken[0].contains("TaskTypeConstraint"), "{broken:?}");
    assert_eq!(send("adaptive").await.unwrap().status(), 200);
    assert_eq!(fake.tasks_created(), 1);
}

#[tokio::test]
async fn every_operation_sends_the_right_content() {
    let fake = FakeArk::start().await;
    let media = MediaServer::start().await;
    let (app, key, _) = live_app(vec![channel("volc", &fake, 1)], |_| {}).await;
    // Inputs are fetched and checked before the upstream is asked; each URL is made
    // distinct by its query so the test can tell them apart in the create bodies.
    let img = |n: &str| media.url(&format!("start.png?{n}"));
    let clip = |n: &str| media.url(&format!("clip.mp4?{n}"));
    let bodies = [
        json!({"model": "seedance-2.0", "operation": "text-to-video", "prompt": "p0", "resolution": "480p",
            "duration": 5, "aspect_ratio": "9:16", "generate_audio": false, "watermark": true, "seed": 11,
            "service_tier": "default", "priority": 3, "safety_identifier": "user-42",
            "execution_expires_after": 3600}),
        json!({"model": "seedance-2.0", "operation": "image-to-video", "prompt": "p1", "resolution": "480p",
            "image_url": img("first")}),
        json!({"model": "seedance-2.0", "operation": "start-end-to-video", "prompt": "p2", "resolution": "480p",
            "start_image": img("start"), "end_image": img("end")}),
        json!({"model": "seedance-2.0", "operation": "reference-to-video", "prompt": "p3", "resolution": "480p",
            "reference_images": [img("r1"), img("r2")], "video_urls": [clip("v")],
            "audio_urls": [media.url("tone.wav")]}),
        json!({"model": "seedance-2.0", "operation": "video-to-video", "prompt": "p4", "resolution": "480p",
            "video_url": clip("src"), "duration": -1}),
        json!({"model": "seedance-2.0", "operation": "video-extension", "resolution": "480p",
            "video_url": clip("ext")}),
    ];
    let mut ids = Vec::new();
    for body in &bodies {
        ids.push(create_ok(&app, &key, body).await);
    }
    for id in &ids {
        wait_done(&app, &key, id).await;
    }
    fake.assert_no_violations();
    let creates: Vec<Value> = fake.creates().into_iter().map(|(_, b)| b).collect();
    let by_text = |text: &str| {
        creates
            .iter()
            .find(|b| b["content"][0]["text"] == text)
            .unwrap_or_else(|| panic!("no create with text {text}: {creates:?}"))
            .clone()
    };
    let items = |b: &Value| -> Vec<(String, String, String)> {
        b["content"].as_array().unwrap()[1..]
            .iter()
            .map(|i| {
                let kind = i["type"].as_str().unwrap().to_owned();
                let url = i[&kind]["url"].as_str().unwrap().to_owned();
                (kind, i["role"].as_str().unwrap().to_owned(), url)
            })
            .collect()
    };
    let t = by_text("p0");
    assert_eq!(t["model"], "doubao-seedance-2-0-260128");
    assert_eq!(
        (
            t["resolution"].as_str(),
            t["ratio"].as_str(),
            t["duration"].as_i64()
        ),
        (Some("480p"), Some("9:16"), Some(5))
    );
    assert_eq!(
        (
            t["generate_audio"].as_bool(),
            t["watermark"].as_bool(),
            t["seed"].as_i64()
        ),
        (Some(false), Some(true), Some(11))
    );
    assert_eq!(t["return_last_frame"], true);
    // The client's own upstream settings are forwarded; its expiry wins when shorter than ours.
    assert_eq!(
        (
            &t["service_tier"],
            &t["priority"],
            &t["safety_identifier"],
            &t["execution_expires_after"]
        ),
        (
            &json!("default"),
            &json!(3),
            &json!("user-42"),
            &json!(3600)
        )
    );
    assert!(items(&t).is_empty());
    let s = |k: &str, r: &str, u: String| (k.to_owned(), r.to_owned(), u);
    assert_eq!(
        items(&by_text("p1")),
        [s("image_url", "first_frame", img("first"))]
    );
    assert_eq!(by_text("p1")["ratio"], "adaptive");
    assert_eq!(
        items(&by_text("p2")),
        [
            s("image_url", "first_frame", img("start")),
            s("image_url", "last_frame", img("end"))
        ]
    );
    assert_eq!(
        items(&by_text("p3")),
        [
            s("image_url", "reference_image", img("r1")),
            s("image_url", "reference_image", img("r2")),
            s("video_url", "reference_video", clip("v")),
            s("audio_url", "reference_audio", media.url("tone.wav")),
        ]
    );
    let v2v = by_text("p4");
    assert_eq!(
        items(&v2v),
        [s("video_url", "reference_video", clip("src"))]
    );
    assert_eq!(v2v["duration"], -1);
    let ext = creates
        .iter()
        .find(|b| items(b).iter().any(|(_, _, u)| u.ends_with("?ext")))
        .unwrap();
    assert!(ext["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("continue"));
    assert_eq!(items(ext), [s("video_url", "reference_video", clip("ext"))]);
}

#[tokio::test]
async fn extension_of_our_own_task_sends_its_stored_video() {
    for storage in Storage::BOTH {
        extension_of_our_own_task_sends_its_stored_video_on(storage).await;
    }
}

async fn extension_of_our_own_task_sends_its_stored_video_on(storage: Storage) {
    let fake = FakeArk::start().await;
    let (app, key, _) = live_app_on(storage, vec![channel("volc", &fake, 1)], |_| {}).await;
    let first = create_ok(&app, &key, &t2v()).await;
    assert_eq!(wait_done(&app, &key, &first).await["status"], "completed");
    let body = json!({"model": "seedance-2.0-fast", "operation": "video-extension", "task_id": first,
        "prompt": "keep going", "resolution": "480p", "duration": 4});
    let second = create_ok(&app, &key, &body).await;
    assert_eq!(wait_done(&app, &key, &second).await["status"], "completed");
    let creates = fake.creates();
    let ext = &creates.last().unwrap().1;
    assert_eq!(ext["content"][1]["role"], "reference_video");
    let url = ext["content"][1]["video_url"]["url"].as_str().unwrap();
    assert!(
        url.starts_with("data:video/mp4;base64,"),
        "the stored result, not the upstream's dying URL"
    );
    fake.assert_no_violations();
}

#[tokio::test]
async fn failover_from_a_failing_channel_to_a_healthy_one() {
    let broken = FakeArk::start().await;
    broken.always_fail_create(500);
    let healthy = FakeArk::start().await;
    // The broken channel carries almost all the weight, so it is tried first.
    let (app, key, _) = live_app(
        vec![
            channel("broken", &broken, 1000),
            channel("healthy", &healthy, 1),
        ],
        |_| {},
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(create_ok(&app, &key, &t2v()).await);
    }
    for id in &ids {
        assert_eq!(wait_done(&app, &key, id).await["status"], "completed");
    }
    assert_eq!(healthy.tasks_created(), 3);
    assert_eq!(broken.tasks_created(), 0);
    healthy.assert_no_violations();
}

/// Routing in configuration: a channel of a lower priority is tried first whatever the
/// weights, a model can have its own priority on a channel, and a failing first choice fails
/// over to the next.
#[tokio::test]
async fn channels_are_tried_in_their_priority_for_the_model() {
    let first = FakeArk::start().await;
    let backup = FakeArk::start().await;
    let mut preferred = channel("preferred", &first, 1);
    // For seedance-2.0 this channel comes after the backup.
    preferred.routing.insert(
        "seedance-2.0".into(),
        seedgate::config::ModelRouting {
            priority: Some(2),
            weight: None,
        },
    );
    let mut standby = channel("standby", &backup, 1000);
    standby.priority = 1;
    let (app, key, _) = live_app(vec![preferred, standby], |_| {}).await;
    let fast = t2v();
    let mut full = t2v();
    full["model"] = json!("seedance-2.0");
    let mut ids = Vec::new();
    for body in [&fast, &fast, &fast, &full, &full] {
        ids.push(create_ok(&app, &key, body).await);
    }
    for id in &ids {
        assert_eq!(wait_done(&app, &key, id).await["status"], "completed");
    }
    let models = |fake: &FakeArk| -> Vec<String> {
        fake.creates()
            .iter()
            .map(|(_, body)| body["model"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        models(&first),
        vec!["doubao-seedance-2-0-fast-260128"; 3],
        "priority beats a thousandfold weight"
    );
    assert_eq!(
        models(&backup),
        vec!["doubao-seedance-2-0-260128"; 2],
        "the model's own priority on a channel"
    );

    // The first choice failing, its tasks go to the next.
    first.always_fail_create(500);
    let id = create_ok(&app, &key, &fast).await;
    assert_eq!(wait_done(&app, &key, &id).await["status"], "completed");
    assert_eq!(backup.tasks_created(), 3);
    first.assert_no_violations();
    backup.assert_no_violations();
}

#[tokio::test]
async fn rate_limit_backs_off_for_retry_after() {
    let fake = FakeArk::start().await;
    fake.fault(Endpoint::Create, Fault::Status(429, Some(2)));
    let (app, key, _) = live_app(vec![channel("volc", &fake, 1)], |_| {}).await;
    let started = Instant::now();
    let id = create_ok(&app, &key, &t2v()).await;
    assert_eq!(wait_done(&app, &key, &id).await["status"], "completed");
    let creates = fake.creates();
    assert_eq!(creates.len(), 1, "a 429 creates nothing upstream");
    assert!(
        creates[0].0.duration_since(started) >= Duration::from_secs(2),
        "Retry-After was honoured"
    );
}

#[tokio::test]
async fn transient_faults_are_retried_without_duplicates() {
    let fake = FakeArk::start().await;
    for fault in [
        Fault::Garbage,
        Fault::Reset,
        Fault::Status(503, None),
        Fault::Slow(Duration::from_secs(3)),
    ] {
        fake.fault(Endpoint::Create, fault);
    }
    fake.fault(Endpoint::Get, Fault::Status(500, None));
    fake.fault(Endpoint::Get, Fault::Garbage);
    let (app, key, _) = live_app(vec![channel("volc", &fake, 1)], |c| {
        c.engine.max_attempts = 8;
        c.engine.breaker_failures = 10;
        // The slow create makes its task a second after our 2 s timeout gave up on it: the
        // look for it upstream waits longer than that, as production's does.
        c.engine.reconcile_delay_ms = 2_000;
    })
    .await;
    let id = create_ok(&app, &key, &t2v()).await;
    let done = crate::helpers::wait_terminal(
        &app.client,
        &app.address,
        &key,
        &id,
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(done["status"], "completed", "{done}");
    // The slow answer timed out on our side and the fake created that task after all: it was
    // found and adopted, not submitted again.
    assert_eq!(fake.tasks_created(), 1);
    fake.assert_no_violations();
}

/// One of our tasks as stored.
async fn row(app: &TestApp, id: &str) -> std::sync::Arc<seedgate::store::TaskRecord> {
    app.store.task(&TaskId::new(id)).await.unwrap().unwrap()
}

/// The upstream task behind one of ours.
async fn upstream_id(app: &TestApp, id: &str) -> Option<String> {
    row(app, id).await.upstream_id.clone()
}

/// A live server whose next two creates reach the upstream but lose their answers. Each task
/// looks for its upstream task as late as production's does, by which time both were made.
async fn app_losing_two_answers() -> (FakeArk, TestApp, String, AccountId) {
    let fake = FakeArk::start().await;
    let (app, key, account) = live_app(vec![channel("volc", &fake, 1)], |c| {
        c.engine.breaker_failures = 10;
        c.engine.reconcile_delay_ms = 2_000;
    })
    .await;
    for _ in 0..2 {
        fake.fault(Endpoint::Create, Fault::HoldReply(Duration::from_secs(3)));
    }
    (fake, app, key, account)
}

#[tokio::test]
async fn an_ambiguous_create_is_reconciled_before_any_resubmission() {
    let fake = FakeArk::start().await;
    let (app, key, account) = live_app(vec![channel("volc", &fake, 1)], |c| {
        c.engine.breaker_failures = 10;
    })
    .await;
    let mut expected_balance = 100_000_000;
    for (n, fault) in [
        // The upstream makes the task and holds its answer past our 2 s timeout.
        Fault::HoldReply(Duration::from_secs(3)),
        // … or resets the connection once the task is made.
        Fault::ResetAfterCreate,
        // … or answers 5xx after making it.
        Fault::StatusAfterCreate(500),
        Fault::StatusAfterCreate(503),
    ]
    .into_iter()
    .enumerate()
    {
        fake.fault(Endpoint::Create, fault.clone());
        let id = create_ok(&app, &key, &t2v()).await;
        let done = wait_done(&app, &key, &id).await;
        assert_eq!(done["status"], "completed", "{fault:?}: {done}");
        assert_eq!(
            fake.tasks_created(),
            n + 1,
            "{fault:?}: exactly one upstream task per task"
        );
        let adopted = upstream_id(&app, &id).await.unwrap();
        assert!(fake.task_ids().contains(&adopted));
        expected_balance -= row(&app, &id).await.cost_usd_micros.unwrap();
    }
    assert_eq!(app.balance(&account).await, expected_balance);
    fake.assert_no_violations();
}

#[tokio::test]
async fn twin_tasks_whose_answers_were_lost_each_adopt_their_own_upstream_task() {
    // Same model, size, length and audio, no seed, submitted together; both answers are lost.
    let (fake, app, key, _) = app_losing_two_answers().await;
    let mut ids = Vec::new();
    for prompt in ["first twin", "second twin"] {
        let mut body = t2v();
        body.as_object_mut().unwrap().remove("seed");
        body["prompt"] = prompt.into();
        ids.push((create_ok(&app, &key, &body).await, prompt));
    }
    for (id, prompt) in &ids {
        assert_eq!(wait_done(&app, &key, id).await["status"], "completed");
        let adopted = upstream_id(&app, id).await.unwrap();
        assert_eq!(
            fake.body_of(&adopted).unwrap()["content"][0]["text"],
            *prompt,
            "each task adopted the upstream task made from its own request"
        );
    }
    assert_eq!(fake.tasks_created(), 2);
    fake.assert_no_violations();
}

/// RELIABILITY.md's known window, exactly: two tasks alike in every field a candidate is
/// matched on (the client's own seed, model, size, ratio, length, audio), on one channel, both
/// losing their create answers. Neither can tell the two upstream tasks apart, so neither
/// adopts one (that could hand one customer another's video) and neither submits again (that
/// would make a third): both fail uncharged, and the two upstream tasks run for no one here.
#[tokio::test]
async fn the_known_window_fails_both_look_alike_tasks_uncharged_and_submits_no_third() {
    let (fake, app, key, account) = app_losing_two_answers().await;
    let first = create_ok(&app, &key, &t2v()).await;
    let second = create_ok(&app, &key, &t2v()).await;
    for id in [&first, &second] {
        let done = wait_done(&app, &key, id).await;
        assert_eq!(done["status"], "failed", "{done}");
        assert_eq!(done["error"]["code"], "submission_unresolved", "{done}");
        assert_eq!(done["cost"], Value::Null, "{done}");
        let task = row(&app, id).await;
        assert_eq!(task.cost_usd_micros, None);
        assert_eq!(task.upstream_id, None, "neither adopted an upstream task");
    }
    // Each looked after both had been made, and neither claimed one, so the second to look
    // saw the same two as the first.
    let upstream = fake.task_ids();
    assert_eq!(upstream.len(), 2, "nothing was submitted a third time");
    assert_eq!(fake.creates().len(), 2, "two create requests in all");
    assert_eq!(app.balance(&account).await, 100_000_000, "nothing charged");
    // Upstream they run to the end, billed there to no one here.
    let started = Instant::now();
    while upstream
        .iter()
        .any(|id| fake.status_of(id).as_deref() != Some("succeeded"))
    {
        assert!(
            started.elapsed() < WAIT,
            "the upstream tasks did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fake.tasks_created(), 2);
    fake.assert_no_violations();
}

#[tokio::test]
async fn a_task_failing_review_fails_uncharged() {
    let fake = FakeArk::start().await;
    fake.set_ending(Ending::FailReview);
    let (app, key, account) = live_app(vec![channel("volc", &fake, 1)], |_| {}).await;
    let id = create_ok(&app, &key, &t2v()).await;
    let done = wait_done(&app, &key, &id).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["cancelled"], false);
    assert_eq!(done["error"]["code"], "OutputVideoSensitiveContentDetected");
    assert!(done["cost"].is_null());
    assert_eq!(app.balance(&account).await, 100_000_000);
}

#[tokio::test]
async fn a_task_running_upstream_outlives_our_deadline_until_the_upstream_expires_it() {
    let fake = FakeArk::start().await;
    fake.set_ending(Ending::Never);
    let (app, key, account) = live_app(vec![channel("volc", &fake, 1)], |c| {
        c.engine.task_deadline_seconds = 2
    })
    .await;
    let id = create_ok(&app, &key, &t2v()).await;
    // Past our deadline the upstream may still finish and bill it: it is not given up here,
    // however often it is polled after the deadline.
    let deadline = row(&app, &id).await.deadline_at_ms.unwrap();
    let mut reads_at_deadline = None;
    wait_until("two polls after our deadline", WAIT, async || {
        if seedgate::store::now_ms() <= deadline {
            return false;
        }
        let at_deadline = *reads_at_deadline.get_or_insert(fake.reads());
        fake.reads() >= at_deadline + 2
    })
    .await;
    let (_, task) = app.task_with_key(&key, &id).await;
    assert_eq!(task["status"], "processing", "{task}");
    // Ark's shortest expiry: the time our deadline left was less.
    assert_eq!(fake.creates()[0].1["execution_expires_after"], 3600);
    fake.expire_unfinished();
    let done = wait_done(&app, &key, &id).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "task_expired");
    assert_eq!(app.balance(&account).await, 100_000_000);
    assert_eq!(app.store.ledger_sum(&account).await.unwrap(), 100_000_000);
}

#[tokio::test]
async fn a_task_the_upstream_finishes_just_after_our_deadline_is_delivered_and_charged() {
    let fake = FakeArk::start().await;
    fake.set_timing(Duration::ZERO, Duration::from_secs(4));
    let (app, key, account) = live_app(vec![channel("volc", &fake, 1)], |c| {
        c.engine.task_deadline_seconds = 2
    })
    .await;
    let id = create_ok(&app, &key, &t2v()).await;
    let done = wait_done(&app, &key, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let cost = row(&app, &id).await.cost_usd_micros.unwrap();
    assert!(cost > 0);
    assert_eq!(app.balance(&account).await, 100_000_000 - cost);
}

#[test]
fn a_result_that_cannot_be_copied_fails_uncharged_after_a_few_tries() {
    let cases = [
        (Storage::Local, ResultFiles::Missing, None),
        (Storage::Local, ResultFiles::NotVideo, None),
        (Storage::S3, ResultFiles::NotVideo, None),
        // Over the size cap, whether the upstream says the length up front or not.
        (Storage::Local, ResultFiles::Served, Some(20_000)),
        (Storage::Local, ResultFiles::Streamed, Some(20_000)),
        (Storage::S3, ResultFiles::Streamed, Some(20_000)),
    ];
    // Six servers: each case's ends with it, connections and all.
    for (storage, files, cap) in cases {
        run_alone(async move {
            let fake = FakeArk::start().await;
            fake.set_result_files(files);
            // Done upstream at once: the copies are what is tested.
            fake.set_timing(Duration::ZERO, Duration::ZERO);
            let (app, key, account) = live_app_on(storage, vec![channel("volc", &fake, 1)], |c| {
                c.engine.result_copy_attempts = 3;
                if let Some(cap) = cap {
                    c.engine.max_result_bytes = cap;
                }
            })
            .await;
            let case = (storage, files, cap);
            let started = Instant::now();
            let id = create_ok(&app, &key, &t2v()).await;
            let done = wait_done(&app, &key, &id).await;
            assert_eq!(done["status"], "failed", "{case:?}: {done}");
            assert_eq!(done["error"]["code"], "result_unavailable");
            assert!(started.elapsed() < Duration::from_secs(20), "{case:?}");
            // Nothing charged, the reservation released.
            assert_eq!(app.balance(&account).await, 100_000_000);
            let row = row(&app, &id).await;
            let reserved = row.reserved_usd_micros;
            assert_eq!(
                app.store
                    .ledger_entries_for_task(&TaskId::new(&id))
                    .await
                    .unwrap(),
                [
                    ("reserve".to_owned(), -reserved),
                    ("release".to_owned(), reserved)
                ]
            );
            // What the upstream billed stays on the task for the operator.
            assert_eq!(row.result_copy_failures, 2);
            assert!(row.upstream_id.is_some());
            assert_eq!(
                row.upstream_usage_tokens,
                Some(i64::from(864 * 496 * 97 / 1024))
            );
            assert_eq!(fake.tasks_created(), 1);
            // Nothing of it is kept.
            assert_eq!(
                app.blobs.size(&format!("{id}/video.mp4")).await.unwrap(),
                None
            );
        });
    }
}

#[tokio::test]
async fn a_result_sent_without_a_length_streams_into_storage() {
    for storage in Storage::BOTH {
        let fake = FakeArk::start().await;
        fake.set_result_files(ResultFiles::Streamed);
        let (app, key, _) = live_app_on(storage, vec![channel("volc", &fake, 1)], |_| {}).await;
        let id = create_ok(&app, &key, &t2v()).await;
        let done = wait_done(&app, &key, &id).await;
        assert_eq!(done["status"], "completed", "{storage:?}: {done}");
        assert_eq!(done["result"]["duration"], 4.0);
        let (status, mp4) = app.download(done["video_url"].as_str().unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(ffprobe(&mp4).width, 864);
        assert_eq!(
            app.blobs.size(&format!("{id}/video.mp4")).await.unwrap(),
            Some(mp4.len() as u64)
        );
        fake.assert_no_violations();
    }
}

#[tokio::test]
async fn pending_means_a_cancel_succeeds_and_processing_means_it_does_not() {
    let fake = FakeArk::start().await;
    fake.set_timing(Duration::from_secs(60), Duration::from_secs(60));
    let (app, key, account) = live_app(vec![channel("volc", &fake, 1)], |c| {
        c.engine.breaker_failures = 10;
    })
    .await;
    let status_of = |id: String| {
        let (app, key) = (&app, &key);
        async move {
            app.task_with_key(key, &id).await.1["status"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
        let started = Instant::now();
        while !check().await {
            assert!(started.elapsed() < WAIT, "never {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Submitting: the create is on its way upstream (held 1.5 s, within our timeout).
    fake.fault(Endpoint::Create, Fault::Slow(Duration::from_millis(1500)));
    let sending = create_ok(&app, &key, &t2v()).await;
    until("submitting", async || {
        app.store
            .task(&TaskId::new(&sending))
            .await
            .unwrap()
            .unwrap()
            .state
            == TaskState::Submitting
    })
    .await;
    assert_eq!(status_of(sending.clone()).await, "processing");
    let (status, refused) = app.cancel_with_key(&key, &sending).await;
    assert_eq!(status, 409, "{refused}");
    // Accepted and seen queued upstream: pending, and a cancel withdraws it there.
    until("queued upstream", async || {
        status_of(sending.clone()).await == "pending" && upstream_id(&app, &sending).await.is_some()
    })
    .await;
    let (status, cancelled) = app.cancel_with_key(&key, &sending).await;
    assert_eq!(status, 200, "{cancelled}");
    let withdrawn = upstream_id(&app, &sending).await.unwrap();
    assert_eq!(fake.status_of(&withdrawn).as_deref(), Some("cancelled"));

    // In doubt: the answer was lost, the task may exist upstream.
    fake.fault(Endpoint::Create, Fault::HoldReply(Duration::from_secs(3)));
    let doubtful = create_ok(&app, &key, &t2v()).await;
    until("in doubt", async || {
        app.store
            .task(&TaskId::new(&doubtful))
            .await
            .unwrap()
            .unwrap()
            .doubt
            .is_some()
    })
    .await;
    assert_eq!(status_of(doubtful.clone()).await, "processing");
    let (status, refused) = app.cancel_with_key(&key, &doubtful).await;
    assert_eq!(status, 409, "{refused}");
    // Found upstream and adopted, still queued there: pending again, and cancellable.
    until("adopted and queued upstream", async || {
        status_of(doubtful.clone()).await == "pending"
            && upstream_id(&app, &doubtful).await.is_some()
    })
    .await;
    let (status, cancelled) = app.cancel_with_key(&key, &doubtful).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(fake.tasks_created(), 2);
    assert_eq!(app.balance(&account).await, 100_000_000);
}

#[tokio::test]
async fn cancel_withdraws_a_task_queued_upstream_but_not_a_running_one() {
    let fake = FakeArk::start().await;
    fake.set_timing(Duration::from_secs(30), Duration::from_secs(30));
    let (app, key, account) = live_app(vec![channel("volc", &fake, 1)], |_| {}).await;
    let id = create_ok(&app, &key, &t2v()).await;
    // Wait until it is submitted upstream and seen queued there.
    let started = Instant::now();
    while upstream_id(&app, &id).await.is_none()
        || app.task_with_key(&key, &id).await.1["status"] != "pending"
    {
        assert!(started.elapsed() < WAIT);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, cancelled) = app.cancel_with_key(&key, &id).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["cancelled"], true);
    assert_eq!(
        fake.status_of(&fake.task_ids()[0]).as_deref(),
        Some("cancelled")
    );
    assert_eq!(app.balance(&account).await, 100_000_000);

    fake.set_timing(Duration::ZERO, Duration::from_secs(30));
    let running = create_ok(&app, &key, &t2v()).await;
    let started = Instant::now();
    while app.task_with_key(&key, &running).await.1["status"] != "processing" {
        assert!(started.elapsed() < WAIT);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, refused) = app.cancel_with_key(&key, &running).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "task_not_cancellable");
}

#[tokio::test]
async fn a_request_no_channel_serves_is_refused_before_any_charge() {
    let fake = FakeArk::start().await;
    let mut only_fast = channel("volc", &fake, 1);
    only_fast.models.remove("seedance-2.0");
    let (app, key, account) = live_app(vec![only_fast], |_| {}).await;
    let body = json!({"model": "seedance-2.0", "operation": "text-to-video", "prompt": "x"});
    let (status, refused) = app.create_with_key(&key, &body).await;
    assert_eq!(status, 400);
    assert_eq!(refused["error"]["code"], "no_channel_for_request");
    let (status, refused) = app
        .create_with_key(&key, &json!({"model": "seedance-2.0-fast", "operation": "text-to-video", "prompt": "x", "resolution": "480p", "duration": 4}))
        .await;
    assert_eq!(status, 200, "{refused}");
    assert_eq!(app.store.count_tasks(&account).await.unwrap(), 1);
    // Test keys never reach the upstream.
    let (status, sandboxed) = app.create(&t2v()).await;
    assert_eq!(status, 200);
    assert_eq!(sandboxed["provider"], "sandbox");
}

#[tokio::test]
async fn a_refused_request_is_not_retried() {
    let fake = FakeArk::start().await;
    fake.fault(Endpoint::Create, Fault::Status(400, None));
    let (app, key, account) = live_app(vec![channel("volc", &fake, 1)], |_| {}).await;
    let id = create_ok(&app, &key, &t2v()).await;
    let done = wait_done(&app, &key, &id).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(
        done["error"]["code"], "ServerOverloaded",
        "the upstream's own code"
    );
    assert_eq!(fake.tasks_created(), 0);
    assert_eq!(app.balance(&account).await, 100_000_000);
}

#[tokio::test]
async fn tasks_beyond_a_channels_concurrency_wait_queued() {
    let fake = FakeArk::start().await;
    // The first task runs upstream from the start until the test lets it finish.
    fake.set_timing(Duration::ZERO, Duration::ZERO);
    fake.set_ending(Ending::Never);
    let mut narrow = channel("volc", &fake, 1);
    narrow.max_concurrent_tasks = 1;
    let (app, key, _) = live_app(vec![narrow], |_| {}).await;
    let ids = [
        create_ok(&app, &key, &t2v()).await,
        create_ok(&app, &key, &t2v()).await,
    ];
    // Whichever took the place runs; the other was claimed, found the channel full and was
    // put back (a claim stamps the row, so a queued row stamped after its creation was).
    wait_until(
        "one task runs upstream and the other was turned away",
        WAIT,
        async || {
            let mut running = 0;
            let mut turned_away = 0;
            for id in &ids {
                let task = row(&app, id).await;
                if task.upstream_id.is_some() {
                    running += 1;
                } else if task.state == TaskState::Queued && task.updated_at_ms > task.created_at_ms
                {
                    turned_away += 1;
                }
            }
            (running, turned_away) == (1, 1)
        },
    )
    .await;
    assert_eq!(
        app.sorted_statuses(&key, &ids).await,
        ["pending", "processing"]
    );
    assert_eq!(
        fake.tasks_created(),
        1,
        "the second task waits for the first"
    );
    // The first finishes; only then is the second submitted, and it completes too.
    fake.set_ending(Ending::Succeed);
    let released = Instant::now();
    fake.complete_over_time(1000, usize::MAX).await;
    for id in &ids {
        assert_eq!(wait_done(&app, &key, id).await["status"], "completed");
    }
    let creates = fake.creates();
    assert_eq!(creates.len(), 2);
    assert!(
        creates[1].0 >= released,
        "the second task was submitted only once the first had finished"
    );
}

#[tokio::test]
async fn an_interrupted_submission_adopts_its_upstream_task() {
    let fake = FakeArk::start().await;
    let app = TestApp::spawn_with(
        |c| {
            fast_polls(c);
            c.channels = vec![channel("volc", &fake, 1)];
        },
        false,
    )
    .await;
    let (key, _) = app.new_key_in_mode(KeyMode::Live, 100_000_000).await;
    let id = create_ok(&app, &key, &t2v()).await;
    // A worker claims the task, the upstream accepts it, and the worker dies before recording.
    let (claimed, _) = app
        .store
        .claim_task("dead-worker", 0, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id.as_str(), id);
    // It takes its place on the channel, sends the create (with the request's seed) and dies.
    assert!(app
        .store
        .reserve_channel(&claimed.id, "dead-worker", &ChannelId::new("volc"), 10)
        .await
        .unwrap());
    let upstream = reqwest::Client::new()
        .post(format!("{}/contents/generations/tasks", fake.base_url))
        .bearer_auth(crate::fake_ark::FAKE_KEY)
        .json(&json!({"model": "doubao-seedance-2-0-fast-260128", "content": [{"type": "text", "text": "a red kite"}],
            "resolution": "480p", "ratio": "16:9", "duration": 4, "seed": 7}))
        .send()
        .await
        .unwrap();
    assert!(upstream.status().is_success());
    tokio::time::sleep(Duration::from_millis(10)).await;
    let started = Instant::now();
    loop {
        while app.engine.run_one().await.unwrap() == seedgate::engine::Outcome::Done {}
        let (_, task) = app.task_with_key(&key, &id).await;
        if task["status"] == "completed" {
            break;
        }
        assert!(started.elapsed() < WAIT, "{task}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fake.tasks_created(), 1, "adopted, not submitted again");
}

#[tokio::test]
async fn an_upstream_callback_is_a_signed_hint_to_poll() {
    let fake = FakeArk::start().await;
    // Polls would otherwise wait a minute.
    let (app, key, _) = live_app(vec![channel("volc", &fake, 1)], |c| {
        c.engine.first_poll_ms = 60_000;
        c.engine.max_poll_interval_ms = 60_000;
    })
    .await;
    let id = create_ok(&app, &key, &t2v()).await;
    let started = Instant::now();
    // Submitted and recorded here, and finished upstream: the callback says so.
    wait_until("the upstream task finished", WAIT, async || {
        let upstream = upstream_id(&app, &id).await;
        upstream.is_some_and(|u| fake.status_of(&u).as_deref() == Some("succeeded"))
    })
    .await;
    let secret = app
        .store
        .setting("asset_signing_key")
        .await
        .unwrap()
        .unwrap();
    let token =
        seedgate::signing::UrlSigner::new(secret.into_bytes()).callback_token(&TaskId::new(&id));
    let callback = |token: String| {
        let url = format!("{}/v1/upstream/callback/{id}?token={token}", app.address);
        let client = app.client.clone();
        async move {
            client
                .post(url)
                .json(&json!({"status": "succeeded"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        callback("00".repeat(32)).await,
        404,
        "a forged callback is ignored"
    );
    assert_eq!(callback(token).await, 200);
    let done = crate::helpers::wait_terminal(
        &app.client,
        &app.address,
        &key,
        &id,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(done["status"], "completed");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "finished well before the first scheduled poll"
    );
}

#[tokio::test]
async fn a_retried_submission_never_adopts_another_upstream_task() {
    let fake = FakeArk::start().await;
    let (app, key, _) = live_app(vec![channel("volc", &fake, 1)], |_| {}).await;
    // Someone else's task of the same model appears upstream just before ours is submitted.
    let stranger = reqwest::Client::new()
        .post(format!("{}/contents/generations/tasks", fake.base_url))
        .bearer_auth(crate::fake_ark::FAKE_KEY)
        .json(&json!({"model": "doubao-seedance-2-0-fast-260128", "content": [{"type": "text", "text": "not ours"}],
            "resolution": "480p", "ratio": "16:9", "duration": 4}))
        .send()
        .await
        .unwrap();
    assert!(stranger.status().is_success());
    // Our first attempt is refused with a 429, so the second attempt is a retry.
    fake.fault(Endpoint::Create, Fault::Status(429, Some(1)));
    let id = create_ok(&app, &key, &t2v()).await;
    assert_eq!(wait_done(&app, &key, &id).await["status"], "completed");
    assert_eq!(
        fake.tasks_created(),
        2,
        "our task was submitted itself, not matched to the stranger"
    );
    let creates = fake.creates();
    assert_eq!(
        creates.last().unwrap().1["content"][0]["text"],
        "a red kite"
    );
}

#[tokio::test]
async fn bad_inputs_of_an_upstream_task_fail_it_uncharged_before_the_upstream_is_asked() {
    let fake = FakeArk::start().await;
    let media = MediaServer::start().await;
    // Files the media server does not have: a tiny image, text named .png, a 20 s video.
    let tiny = png_bytes(100, 100, 0);
    let long =
        seedgate_media::encode_mp4(64, 64, 24, 24 * 20, None, &mut |_, rgb| rgb.fill(90)).unwrap();
    let odd = axum::Router::new()
        .route("/tiny.png", axum::routing::get(move || async move { tiny }))
        .route(
            "/text.png",
            axum::routing::get(|| async { "not an image at all" }),
        )
        .route("/long.mp4", axum::routing::get(move || async move { long }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let odd_base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, odd).await });

    let (app, key, account) = live_app(vec![channel("volc", &fake, 1)], |_| {}).await;
    let image = |url: String| {
        json!({"model": "seedance-2.0", "operation": "image-to-video", "prompt": "p",
            "resolution": "480p", "image_url": url})
    };
    for (body, code) in [
        (image(media.url("missing.png")), "input_fetch_failed"),
        (
            image(format!("{odd_base}/tiny.png")),
            "invalid_image_dimensions",
        ),
        (
            image(format!("{odd_base}/text.png")),
            "input_image_unreadable",
        ),
        (
            json!({"model": "seedance-2.0", "operation": "video-to-video", "prompt": "p",
                "resolution": "480p", "video_url": format!("{odd_base}/long.mp4")}),
            "invalid_media_duration",
        ),
        (
            json!({"model": "seedance-2.0", "operation": "reference-to-video", "prompt": "p",
                "resolution": "480p", "reference_images": [media.url("start.png")],
                "audio_urls": [media.url("start.png")]}),
            "input_audio_unreadable",
        ),
    ] {
        let id = create_ok(&app, &key, &body).await;
        let done = wait_done(&app, &key, &id).await;
        assert_eq!(done["status"], "failed", "{body}: {done}");
        assert_eq!(done["error"]["code"], code, "{body}: {done}");
    }
    // The metadata address is refused before anything is stored.
    let (status, refused) = app
        .create_with_key(&key, &image("http://169.254.169.254/latest/a.png".into()))
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "input_url_forbidden");
    assert_eq!(fake.tasks_created(), 0, "the upstream was never asked");
    assert_eq!(app.balance(&account).await, 100_000_000);
    assert_eq!(app.store.ledger_sum(&account).await.unwrap(), 100_000_000);
}

#[tokio::test]
async fn polls_ask_about_many_tasks_at_once_within_the_channel_budget() {
    let fake = FakeArk::start().await;
    fake.set_timing(Duration::from_millis(300), Duration::from_millis(1500));
    let budget = 4;
    let mut volc = channel("volc", &fake, 1);
    volc.max_concurrent_tasks = 100;
    volc.polls_per_second = budget;
    volc.poll_batch = Some(20);
    let (app, key, _) = live_app(vec![volc], |c| {
        c.engine.max_concurrent_tasks_per_key = 100;
    })
    .await;
    // All at once, so they wait upstream together however slowly a loaded machine creates.
    let request = t2v();
    let ids =
        futures_util::future::join_all((0..40).map(|_| create_ok(&app, &key, &request))).await;
    for id in &ids {
        assert_eq!(wait_done(&app, &key, id).await["status"], "completed");
    }
    let reads = fake.reads();
    assert!(
        reads < ids.len() / 2,
        "{reads} status reads for {} tasks: polls ask about many at once",
        ids.len()
    );
    let most = fake.most_reads_in_a_second();
    assert!(
        most <= budget as usize,
        "{most} status reads within one second against a budget of {budget}"
    );
}

#[tokio::test]
async fn the_upstream_callback_finishes_a_task_long_before_its_next_poll() {
    let fake = FakeArk::start().await;
    fake.set_ending(Ending::Never);
    // The public URL names the port before the server binds it: a port picked free may be
    // taken by then, so another is tried.
    let mut tries = 0;
    let (app, port) = loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spawned = TestApp::try_spawn_on(
            Storage::Local,
            |c| {
                fast_polls(c);
                c.channels = vec![channel("volc", &fake, 1)];
                c.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                c.public_url = Some(format!("http://127.0.0.1:{port}"));
                c.engine.first_poll_ms = 60_000;
                c.engine.max_poll_interval_ms = 60_000;
            },
            true,
        )
        .await;
        match spawned {
            Ok(app) => break (app, port),
            Err(seedgate::StartError::Io(e)) if e.kind() == std::io::ErrorKind::AddrInUse => {
                tries += 1;
                assert!(tries < 10, "no free port in ten tries: {e}");
            }
            Err(e) => panic!("{e}"),
        }
    };
    let (key, _) = app.new_key_in_mode(KeyMode::Live, 100_000_000).await;
    let ids = [
        create_ok(&app, &key, &t2v()).await,
        create_ok(&app, &key, &t2v()).await,
    ];
    let started = Instant::now();
    while fake.tasks_created() < ids.len() {
        assert!(started.elapsed() < WAIT);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let upstream_ids = fake.task_ids();
    for id in &upstream_ids {
        let body = fake.body_of(id).unwrap();
        assert!(
            body["callback_url"]
                .as_str()
                .unwrap()
                .starts_with(&format!("http://127.0.0.1:{port}/v1/upstream/callback/")),
            "{body}"
        );
    }
    let finishing = Instant::now();
    fake.complete_over_time(10, usize::MAX).await;
    for id in &ids {
        assert_eq!(wait_done(&app, &key, id).await["status"], "completed");
    }
    assert!(
        finishing.elapsed() < Duration::from_secs(20),
        "finished by callbacks, not by the polls a minute away"
    );
    let finished = fake.finished();
    assert_eq!(finished.len(), ids.len());
    assert!(finished.iter().all(|(_, _, sent)| *sent));
}

/// Puts a file where the folder is. A write the server has in flight can make the folder again
/// between its removal and the file's creation (the local store makes missing parents), so the
/// swap is repeated until it holds.
async fn replace_with_a_file(folder: &std::path::Path) {
    for _ in 0..100 {
        let _ = std::fs::remove_dir_all(folder);
        if std::fs::write(folder, b"not a folder").is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} could not be replaced by a file", folder.display());
}

/// A full disk (or a store that is down) is a wait, not a failure: a render is held and
/// written again, an upstream result copied again, for as long as the task's time allows, and
/// `/readyz` answers `503` meanwhile. When the store takes writes again both complete, the
/// render made once. A render whose deadline passes first ends uncharged with
/// `result_store_failed`.
#[tokio::test]
async fn a_result_store_that_refuses_writes_holds_finished_work_until_it_recovers() {
    let fake = FakeArk::start().await;
    let (app, live, live_account) = live_app(vec![channel("volc", &fake, 1)], |c| {
        // One try each: a refusal to store must not be spent as a try.
        c.engine.max_attempts = 1;
        c.engine.result_copy_attempts = 1;
    })
    .await;
    assert_eq!(app.get_path("/readyz").await.0, 200);
    // The local store's folder becomes a file: every write under it fails, as on a full disk.
    let assets = app.data_dir.path().join("assets");
    replace_with_a_file(&assets).await;
    let (status, ready) = app.get_path("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["reason"], "result store cannot be written");
    let text = app.metrics_text().await;
    assert!(
        text.contains("seedgate_dependency_up{dependency=\"result_store\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("seedgate_dependency_up{dependency=\"database\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("seedgate_dependency_outages_total{dependency=\"result_store\"} 1"),
        "{text}"
    );

    let (status, local) = app
        .create(
            &json!({"model": "seedance-2.0-fast", "prompt": "a kite", "resolution": "480p",
            "duration": 4, "generate_audio": false}),
        )
        .await;
    assert_eq!(status, 200, "{local}");
    let local = local["id"].as_str().unwrap().to_owned();
    let upstream = create_ok(&app, &live, &t2v()).await;
    // The upstream finished and its result was refused by our store again and again.
    wait_until(
        "three refused copies of the upstream's result",
        WAIT,
        async || row(&app, &upstream).await.polls >= 4,
    )
    .await;
    for (key, id) in [(&app.key, &local), (&live, &upstream)] {
        let (_, task) = app.task_with_key(key, id).await;
        assert_eq!(task["status"], "processing", "{task}");
    }

    std::fs::remove_file(&assets).unwrap();
    assert_eq!(app.get_path("/readyz").await.0, 200);
    let text = app.metrics_text().await;
    assert!(
        text.contains("seedgate_dependency_up{dependency=\"result_store\"} 1"),
        "{text}"
    );
    for (key, id) in [(&app.key, &local), (&live, &upstream)] {
        let done = wait_done(&app, key, id).await;
        assert_eq!(done["status"], "completed", "{done}");
    }
    assert_eq!(row(&app, &local).await.attempts, 1, "rendered once");
    assert_eq!(fake.tasks_created(), 1);
    assert!(app.balance(&app.account_id).await < 100_000_000);
    assert!(app.balance(&live_account).await < 100_000_000);

    // Out of time while the store is down: the ending says storage, and costs nothing.
    let short = TestApp::spawn_with(|c| c.engine.task_deadline_seconds = 3, true).await;
    replace_with_a_file(&short.data_dir.path().join("assets")).await;
    let (status, created) = short
        .create(
            &json!({"model": "seedance-2.0-fast", "prompt": "a kite", "resolution": "480p",
            "duration": 4, "generate_audio": false}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap();
    let done = short.wait_terminal(id, WAIT).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "result_store_failed", "{done}");
    assert_eq!(row(&short, id).await.attempts, 1, "rendered once");
    assert_eq!(short.balance(&short.account_id).await, 100_000_000);
}

/// Ark's prompt commands never reach the upstream unread: they become the request's fields,
/// priced as such, and the upstream gets the prompt without them.
#[tokio::test]
async fn prompt_commands_reach_the_upstream_as_fields_not_as_prompt_text() {
    let fake = FakeArk::start().await;
    let (app, key, _) = live_app(vec![channel("volc", &fake, 1)], |_| {}).await;
    let body = json!({"model": "seedance-2.0", "prompt": "a red kite --rs 1080p --dur 6 --rt 9:16",
        "seed": 7});
    let plain = json!({"model": "seedance-2.0", "prompt": "a red kite", "resolution": "1080p",
        "duration": 6, "aspect_ratio": "9:16", "seed": 7});
    let (status, quoted) = app
        .call("POST", "/v1/videos/quote", &key, Some(&plain))
        .await;
    assert_eq!(status, 200, "{quoted}");
    let id = create_ok(&app, &key, &body).await;
    let (_, task) = app.task_with_key(&key, &id).await;
    assert_eq!(
        task["estimated_cost"]["amount"], quoted["cost"]["amount"],
        "{quoted}"
    );
    let done = wait_done(&app, &key, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let sent = fake.creates().pop().unwrap().1;
    assert_eq!(sent["content"][0]["text"], "a red kite", "{sent}");
    assert_eq!(sent["resolution"], "1080p");
    assert_eq!(sent["duration"], 6);
    assert_eq!(sent["ratio"], "9:16");
}
