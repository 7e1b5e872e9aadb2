//! The other vendors of Seedance behind the one provider: fal, Replicate and OpenRouter, each
//! against a fake that speaks its wire and fails on cue, and failover between vendors that
//! never bills twice.

use seedgate::ids::AccountId;
use seedgate_contract::{pricing, Catalog, Resolution};
use serde_json::{json, Value};

use crate::fake_ark::FakeArk;
use crate::fake_vendors::{Ending, Endpoint, FakeVendor, Fault, Wire};
use crate::helpers::{ffprobe, MediaServer, TestApp};
use crate::upstream::{channel, live_app, wait_done};

const WIRES: [Wire; 3] = [Wire::Fal, Wire::Replicate, Wire::OpenRouter];

/// The charge of a completed task: its model's price for the tokens of the video it got
/// (the vendors report none, so the formula's for what was delivered), checked against what
/// the task shows.
fn charged(done: &Value, video_input: bool) -> i64 {
    let result = &done["result"];
    let (width, height) = (
        result["width"].as_u64().unwrap(),
        result["height"].as_u64().unwrap(),
    );
    let seconds = result["duration"].as_f64().unwrap().round() as u64;
    let tokens = width * height * (24 * seconds + 1) / 1024;
    assert_eq!(done["usage"]["tokens"], tokens, "{done}");
    let resolution: Resolution =
        serde_json::from_value(done["request"]["resolution"].clone()).unwrap();
    let charge = pricing::price_tokens(
        &Catalog::builtin(),
        done["model"].as_str().unwrap(),
        resolution,
        video_input,
        tokens,
    )
    .unwrap();
    assert_eq!(done["cost"]["amount"], charge.usd_string(), "{done}");
    charge.usd_micros
}

async fn assert_balance(app: &TestApp, account: &AccountId, spent: i64) {
    assert_eq!(app.balance(account).await, 100_000_000 - spent);
    assert_eq!(
        app.store.ledger_sum(account).await.unwrap(),
        100_000_000 - spent
    );
}

async fn create(app: &TestApp, key: &str, body: &Value) -> String {
    let (status, created) = app.create_with_key(key, body).await;
    assert_eq!(status, 200, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

fn t2v() -> Value {
    json!({"model": "seedance-2.0-fast", "operation": "text-to-video", "prompt": "a red kite",
        "resolution": "480p", "duration": 4, "aspect_ratio": "16:9"})
}

#[tokio::test]
async fn each_vendor_completes_every_operation_it_serves_and_settles_exactly() {
    let media = MediaServer::start().await;
    for wire in WIRES {
        every_operation_on(wire, &media).await;
    }
}

async fn every_operation_on(wire: Wire, media: &MediaServer) {
    let fake = FakeVendor::start(wire).await;
    let (app, key, account) = live_app(vec![fake.channel("vendor", 0)], |_| {}).await;
    let img = |n: &str| media.url(&format!("start.png?{n}"));
    let bodies = [
        (t2v(), false),
        (
            json!({"model": "seedance-2.0", "operation": "image-to-video", "prompt": "p1",
                "resolution": "720p", "duration": 5, "image_url": img("first")}),
            false,
        ),
        (
            json!({"model": "seedance-2.0", "operation": "start-end-to-video", "prompt": "p2",
                "resolution": "480p", "duration": 4, "aspect_ratio": "9:16",
                "start_image": img("start"), "end_image": img("end")}),
            false,
        ),
        (
            json!({"model": "seedance-2.0", "operation": "reference-to-video", "prompt": "p3",
                "resolution": "480p", "duration": 4, "aspect_ratio": "1:1",
                "reference_images": [img("r1"), img("r2")],
                "video_urls": [media.url("clip.mp4?v")], "audio_urls": [media.url("tone.wav")]}),
            true,
        ),
    ];
    let mut spent = 0;
    for (body, video_input) in &bodies {
        let id = create(&app, &key, body).await;
        let done = wait_done(&app, &key, &id).await;
        assert_eq!(done["status"], "completed", "{wire:?}: {done}");
        assert_eq!(done["provider"], wire.provider());
        spent += charged(&done, *video_input);
        let (status, mp4) = app.download(done["video_url"].as_str().unwrap()).await;
        assert_eq!(status, 200);
        let probe = ffprobe(&mp4);
        assert_eq!(
            (probe.codec.as_str(), probe.width, probe.height),
            (
                "h264",
                done["result"]["width"].as_u64().unwrap(),
                done["result"]["height"].as_u64().unwrap()
            ),
            "{wire:?}"
        );
        let (status, _) = app.download(done["last_frame_url"].as_str().unwrap()).await;
        assert_eq!(status, 200, "the last frame is taken from the video");
    }
    assert_balance(&app, &account, spent).await;
    assert_eq!(fake.jobs_made(), bodies.len());
    // What each vendor was sent, in its own words.
    let jobs = fake.jobs();
    let sent = |prompt: &str| {
        jobs.iter()
            .find(|(_, input)| input["prompt"] == prompt)
            .map(|(id, input)| (id.clone(), input.clone()))
            .unwrap_or_else(|| panic!("{wire:?}: nothing sent with {prompt}: {jobs:?}"))
    };
    let (i2v_id, i2v) = sent("p1");
    let (_, start_end) = sent("p2");
    let (reference_id, reference) = sent("p3");
    let count = |input: &Value, field: &str| input[field].as_array().map_or(0, Vec::len);
    match wire {
        Wire::Replicate => {
            assert_eq!(i2v["image"], img("first"));
            assert_eq!(
                (&start_end["image"], &start_end["last_frame_image"]),
                (&json!(img("start")), &json!(img("end")))
            );
            assert_eq!(
                [
                    count(&reference, "reference_images"),
                    count(&reference, "reference_videos"),
                    count(&reference, "reference_audios")
                ],
                [2, 1, 1]
            );
            assert_eq!(i2v["duration"], 5);
        }
        Wire::Fal => {
            assert!(
                i2v_id.starts_with("bytedance/seedance-2.0/requests/"),
                "{i2v_id}"
            );
            assert_eq!(i2v["image_url"], img("first"));
            assert_eq!(start_end["end_image_url"], img("end"));
            assert_eq!(
                [
                    count(&reference, "image_urls"),
                    count(&reference, "video_urls"),
                    count(&reference, "audio_urls")
                ],
                [2, 1, 1]
            );
            assert_eq!(i2v["duration"], "5", "fal's durations are strings");
            assert!(reference_id.contains("/requests/"));
        }
        Wire::OpenRouter => {
            assert_eq!(i2v["model"], "bytedance/seedance-2.0");
            assert_eq!(
                start_end["frame_images"],
                json!([
                    {"type": "image_url", "image_url": {"url": img("start")}, "frame_type": "first_frame"},
                    {"type": "image_url", "image_url": {"url": img("end")}, "frame_type": "last_frame"},
                ])
            );
            assert_eq!(count(&reference, "input_references"), 4);
        }
    }
    // What the vendor's wire cannot carry is refused at create, before any charge.
    for body in [
        json!({"model": "seedance-2.0", "operation": "video-to-video", "prompt": "p4",
            "resolution": "480p", "video_url": media.url("clip.mp4?src")}),
        json!({"model": "seedance-2.0-fast", "operation": "text-to-video", "prompt": "p5",
            "resolution": "480p", "duration": 4, "watermark": true}),
        json!({"model": "seedance-2.0", "operation": "text-to-video", "prompt": "p6",
            "resolution": "1080p", "duration": 4}),
    ] {
        let (status, refused) = app.create_with_key(&key, &body).await;
        assert_eq!(status, 400, "{wire:?}: {refused}");
        assert_eq!(refused["error"]["code"], "no_channel_for_request");
    }
    // fal's apps take no seed: a job that asks for one is not sent where it would be ignored.
    let (status, seeded) = app
        .create_with_key(
            &key,
            &json!({"model": "seedance-2.0-fast", "operation": "text-to-video",
            "prompt": "p7", "resolution": "480p", "duration": 4, "seed": 7}),
        )
        .await;
    assert_eq!(
        status,
        if wire == Wire::Fal { 400 } else { 200 },
        "{seeded}"
    );
    if wire != Wire::Fal {
        let done = wait_done(&app, &key, seeded["id"].as_str().unwrap()).await;
        spent += charged(&done, false);
    }
    assert_balance(&app, &account, spent).await;
}

#[tokio::test]
async fn vendor_failures_end_tasks_with_our_codes_and_transient_faults_are_ridden_out() {
    for wire in WIRES {
        failures_on(wire).await;
    }
}

async fn failures_on(wire: Wire) {
    let fake = FakeVendor::start(wire).await;
    let (app, key, account) = live_app(vec![fake.channel("vendor", 0)], |_| {}).await;
    // Moderation: failed with the code our tasks use for it, uncharged.
    fake.set_ending(Ending::Moderated);
    let moderated = create(&app, &key, &t2v()).await;
    let done = wait_done(&app, &key, &moderated).await;
    assert_eq!(done["status"], "failed", "{wire:?}: {done}");
    assert_eq!(
        done["error"]["code"], "OutputVideoSensitiveContentDetected",
        "{wire:?}"
    );
    // The vendor gave up on it: expired, uncharged.
    fake.set_ending(Ending::Expire);
    let expired = create(&app, &key, &t2v()).await;
    let done = wait_done(&app, &key, &expired).await;
    assert_eq!(done["status"], "failed", "{wire:?}: {done}");
    assert_eq!(done["error"]["code"], "task_expired", "{wire:?}");
    assert_balance(&app, &account, 0).await;
    // A throttled create, then 5xx and garbage on reads: waited out, one job, one charge.
    fake.set_ending(Ending::Succeed);
    fake.fault(Endpoint::Create, Fault::Status(429));
    fake.fault(Endpoint::Read, Fault::Status(503));
    fake.fault(Endpoint::Read, Fault::Garbage);
    fake.fault(Endpoint::Read, Fault::Reset);
    // Past the channel's 2 s timeout.
    fake.fault(
        Endpoint::Read,
        Fault::Slow(std::time::Duration::from_secs(3)),
    );
    let made_before = fake.jobs_made();
    let ok = create(&app, &key, &t2v()).await;
    let done = wait_done(&app, &key, &ok).await;
    assert_eq!(done["status"], "completed", "{wire:?}: {done}");
    assert_eq!(fake.jobs_made(), made_before + 1, "{wire:?}");
    let spent = charged(&done, false);
    assert_balance(&app, &account, spent).await;
}

/// A create whose answer is lost may have made a job: Replicate's list finds it and the task
/// adopts it; fal and OpenRouter cannot be searched, so the task fails uncharged rather than
/// make (and pay for) a second job.
#[tokio::test]
async fn a_lost_answer_is_adopted_where_it_can_be_found_and_failed_uncharged_where_not() {
    for wire in WIRES {
        let fake = FakeVendor::start(wire).await;
        let (app, key, account) = live_app(vec![fake.channel("vendor", 0)], |_| {}).await;
        let mut lost = [
            Fault::HoldReply(std::time::Duration::from_secs(3)),
            Fault::ResetAfterCreate,
            Fault::StatusAfterCreate(502),
        ]
        .into_iter();
        for round in 0..3 {
            fake.fault(Endpoint::Create, lost.next().unwrap());
            let id = create(&app, &key, &t2v()).await;
            let done = wait_done(&app, &key, &id).await;
            assert_eq!(fake.jobs_made(), round + 1, "{wire:?}: never a second job");
            if wire == Wire::Replicate {
                assert_eq!(done["status"], "completed", "{done}");
            } else {
                assert_eq!(done["status"], "failed", "{wire:?}: {done}");
                assert_eq!(done["error"]["code"], "submission_unresolved");
                assert_balance(&app, &account, 0).await;
            }
        }
        assert_eq!(fake.answers_lost(), 3);
        if wire == Wire::Replicate {
            let (_, listed) = app.get_path_with_key(&key, "/v1/tasks?limit=10").await;
            let charges: i64 = listed["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|task| charged(task, false))
                .sum();
            assert_balance(&app, &account, charges).await;
        }
    }
}

/// Ark first, then fal, then Replicate: a channel that cannot be reached and one that is
/// throttled refuse for sure, so the task moves on and is made, and billed, once.
#[tokio::test]
async fn ark_fails_over_to_fal_then_replicate_and_bills_once() {
    let ark = FakeArk::start().await;
    ark.always_fail_create(429);
    let fal = FakeVendor::start(Wire::Fal).await;
    let replicate = FakeVendor::start(Wire::Replicate).await;
    let mut ark_channel = channel("ark", &ark, 1);
    ark_channel.priority = 0;
    let mut unreachable = fal.channel("fal-unreachable", 1);
    unreachable.base_url = "http://127.0.0.1:1".into();
    let (app, key, account) = live_app(
        vec![
            ark_channel,
            unreachable,
            fal.channel("fal", 2),
            replicate.channel("replicate", 3),
        ],
        |_| {},
    )
    .await;
    // The next fal create is throttled too: Replicate makes it. The task names Ark, its first
    // choice, until a vendor takes it, then the vendor that did.
    fal.fault(Endpoint::Create, Fault::Status(429));
    let (status, created) = app.create_with_key(&key, &t2v()).await;
    assert_eq!(
        (status, &created["provider"]),
        (200, &json!("ark")),
        "{created}"
    );
    let id = created["id"].as_str().unwrap();
    let done = wait_done(&app, &key, id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["provider"], "replicate");
    assert_eq!(
        (ark.tasks_created(), fal.jobs_made(), replicate.jobs_made()),
        (0, 0, 1)
    );
    let spent = charged(&done, false);
    assert_balance(&app, &account, spent).await;
    // With fal answering again, the next task stops there.
    let id = create(&app, &key, &t2v()).await;
    let done = wait_done(&app, &key, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["provider"], "fal");
    assert_eq!((fal.jobs_made(), replicate.jobs_made()), (1, 1));
    assert_balance(&app, &account, spent + charged(&done, false)).await;
}

/// Each task records the vendor that made it, its id there and what the vendor reported; the
/// operator's report prices each vendor (reported money, or the channel's rate) against what
/// the customers paid, which is the platform's price whichever vendor served them.
#[tokio::test]
async fn what_a_task_cost_us_is_recorded_and_reported_by_model_and_vendor() {
    let mut charges = Vec::new();
    let mut channels = Vec::new();
    let mut catalogs = Vec::new();
    for wire in WIRES {
        let fake = FakeVendor::start(wire).await;
        let mut channel = fake.channel(wire.provider(), 0);
        if wire == Wire::Replicate {
            channel.costs.insert(
                "seedance-2.0-fast".into(),
                toml::from_str("usd_per_second = \"0.0731\"").unwrap(),
            );
        }
        channels.push(channel.clone());
        let (app, key, _) = live_app(vec![channel], |_| {}).await;
        // Prices and capabilities are the platform's, whichever vendor serves.
        let (_, models) = app.get_path_with_key(&key, "/v1/models").await;
        let (_, pricing) = app.get_path_with_key(&key, "/v1/pricing").await;
        catalogs.push((models, pricing));
        let id = create(&app, &key, &t2v()).await;
        let done = wait_done(&app, &key, &id).await;
        assert_eq!(done["status"], "completed", "{done}");
        let row = app
            .store
            .task(&seedgate::ids::TaskId::new(&id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.provider, wire.provider());
        let (made, _) = &fake.jobs()[0];
        assert_eq!(row.upstream_id.as_deref(), Some(made.as_str()));
        let reported = (row.upstream_compute_ms, row.upstream_cost_usd_micros);
        match wire {
            Wire::Fal => assert_eq!(reported, (Some(38_200), None)),
            Wire::Replicate => assert_eq!(reported, (Some(42_500), None)),
            Wire::OpenRouter => assert_eq!(reported, (None, Some(500_000))),
        }
        charges.extend(app.store.vendor_charges(None, None).await.unwrap());
    }
    assert!(catalogs.windows(2).all(|pair| pair[0] == pair[1]));
    let lines = seedgate::costs::vendor_report(&charges, &channels);
    let line = |vendor: &str| lines.iter().find(|l| l.vendor == vendor).unwrap();
    // The customer pays the same for the same video on every vendor.
    let charged = line("fal").charged_usd_micros;
    assert!(lines
        .iter()
        .all(|l| l.charged_usd_micros == charged && l.tasks == 1));
    let openrouter = line("openrouter");
    assert_eq!(
        (
            openrouter.vendor_cost_usd_micros,
            openrouter.margin_usd_micros
        ),
        (500_000, charged - 500_000)
    );
    let seconds = charges
        .iter()
        .find(|c| c.vendor == "replicate")
        .unwrap()
        .video_seconds;
    let replicate_cost: i64 = (rust_decimal::Decimal::new(731, 4)
        * rust_decimal::Decimal::try_from(seconds).unwrap()
        * rust_decimal::Decimal::from(1_000_000))
    .round()
    .try_into()
    .unwrap();
    assert_eq!(line("replicate").vendor_cost_usd_micros, replicate_cost);
    assert_eq!(
        line("replicate").margin_usd_micros,
        charged - replicate_cost
    );
    // fal has no rate configured: its tasks are counted, their cost left unknown.
    assert_eq!((line("fal").priced, line("fal").compute_ms), (0, 38_200));
}
