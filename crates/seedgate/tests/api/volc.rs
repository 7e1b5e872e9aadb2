//! The Ark-compatible surface: Ark's wire format for the same tasks as `/v1`, readable,
//! cancellable and billed once through either, with the same idempotency and errors.

use std::time::Duration;

use seedgate::engine::Outcome;
use seedgate::ids::TaskId;
use seedgate::providers::seed_in_force;
use seedgate::store::KeyMode;
use serde_json::{json, Value};

use crate::fake_ark::FakeArk;
use crate::helpers::{decode, ffprobe, wait_terminal, TestApp};
use crate::upstream::app_with_channel;

const TASKS: &str = "/api/v3/contents/generations/tasks";

fn ark_t2v(prompt: &str) -> Value {
    json!({"model": "doubao-seedance-2-0-fast-260128",
        "content": [{"type": "text", "text": prompt}],
        "ratio": "16:9", "duration": 4, "resolution": "480p", "generate_audio": false,
        "watermark": false, "seed": 3, "return_last_frame": true})
}

async fn ark_create(app: &TestApp, body: &Value, idempotency: Option<&str>) -> (u16, Value) {
    ark_create_with_key(app, &app.key, body, idempotency).await
}

async fn ark_create_with_key(
    app: &TestApp,
    key: &str,
    body: &Value,
    idempotency: Option<&str>,
) -> (u16, Value) {
    let mut request = app
        .client
        .post(format!("{}{TASKS}", app.address))
        .bearer_auth(key)
        .json(body);
    if let Some(key) = idempotency {
        request = request.header("idempotency-key", key);
    }
    decode(request.send().await.unwrap()).await
}

async fn ark_delete(app: &TestApp, id: &str) -> (u16, String) {
    let response = app
        .client
        .delete(format!("{}{TASKS}/{id}", app.address))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_task_made_in_arks_format_is_the_same_task_on_v1_and_billed_once() {
    let app = TestApp::spawn_without_workers().await;
    let (status, created) = ark_create(&app, &ark_t2v("a paper boat"), Some("ark-1")).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(
        created.as_object().unwrap().len(),
        1,
        "only the id: {created}"
    );
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("cgt-"), "{id}");
    // A repeat with the same key is the same task.
    let (status, again) = ark_create(&app, &ark_t2v("a paper boat"), Some("ark-1")).await;
    assert_eq!((status, &again["id"]), (200, &created["id"]));

    let (status, queued) = app.get_path(&format!("{TASKS}/{id}")).await;
    assert_eq!(status, 200, "{queued}");
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["model"], "doubao-seedance-2-0-fast-260128");
    assert_eq!(queued["error"], Value::Null);
    assert!(queued.get("content").is_none());
    assert_eq!(
        (
            &queued["ratio"],
            &queued["duration"],
            &queued["resolution"],
            &queued["seed"]
        ),
        (&json!("16:9"), &json!(4), &json!("480p"), &json!(3))
    );
    let v1_id = id.replacen("cgt-", "vtask_", 1);
    let (status, on_v1) = app.task(&v1_id).await;
    assert_eq!((status, &on_v1["status"]), (200, &json!("pending")));
    assert_eq!(on_v1["request"]["resolution"], "480p");

    while app.engine.run_one().await.unwrap() == Outcome::Done {}
    let (_, done) = app.get_path(&format!("{TASKS}/{v1_id}")).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let tokens = i64::from(864 * 496 * 97 / 1024);
    assert_eq!(done["usage"]["completion_tokens"], tokens);
    let (status, mp4) = app
        .download(done["content"]["video_url"].as_str().unwrap())
        .await;
    assert_eq!(status, 200);
    assert_eq!(ffprobe(&mp4).width, 864);
    let kinds: Vec<String> = app
        .store
        .ledger_entries_for_task(&TaskId::new(&v1_id))
        .await
        .unwrap()
        .into_iter()
        .map(|(kind, _)| kind)
        .collect();
    assert_eq!(kinds, ["reserve", "release", "charge"]);
}

#[tokio::test]
async fn arks_list_pages_and_filters_and_delete_cancels_a_queued_task() {
    let app = TestApp::spawn_without_workers().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let (_, created) = ark_create(&app, &ark_t2v(&format!("task {n}")), None).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let (status, page) = app
        .get_path(&format!("{TASKS}?page_num=2&page_size=2"))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["total"], 3);
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], ids[0], "newest first: the oldest is last");

    let (status, body) = ark_delete(&app, &ids[1]).await;
    assert_eq!((status, body.as_str()), (200, ""));
    let (_, cancelled) = app.get_path(&format!("{TASKS}/{}", ids[1])).await;
    assert_eq!(cancelled["status"], "cancelled");
    let (_, on_v1) = app.task(&ids[1].replacen("cgt-", "vtask_", 1)).await;
    assert_eq!(on_v1["cancelled"], true);

    let filtered = |query: String| {
        let app = &app;
        async move { app.get_path(&format!("{TASKS}?{query}")).await.1 }
    };
    assert_eq!(filtered("filter.status=queued".into()).await["total"], 2);
    assert_eq!(filtered("filter.status=cancelled".into()).await["total"], 1);
    let two = filtered(format!("filter.task_ids={},{}", ids[0], ids[2])).await;
    assert_eq!(two["total"], 2);
    assert_eq!(
        filtered("filter.model=doubao-seedance-2-0-fast-260128".into()).await["total"],
        3
    );
    assert_eq!(
        filtered("filter.model=seedance-2.0".into()).await["total"],
        0
    );
    let (status, refused) = app.get_path(&format!("{TASKS}?filter.status=done")).await;
    assert_eq!(
        (status, &refused["error"]["seedgate_code"]),
        (400, &json!("invalid_status"))
    );
}

#[tokio::test]
async fn arks_requests_are_held_to_the_same_rules_in_arks_error_shape() {
    let app = TestApp::spawn_without_workers().await;
    let mut too_big = ark_t2v("x");
    too_big["resolution"] = "1080p".into();
    let mut unknown = ark_t2v("x");
    unknown["negative_promt"] = "blur".into();
    let mut draft = ark_t2v("x");
    draft["draft"] = true.into();
    for (body, code) in [
        (too_big, "unsupported_resolution"),
        (unknown, "unknown_field"),
        (draft, "unsupported_parameter"),
        (
            json!({"model": "seedance-2.0", "content": "a kite"}),
            "missing_field",
        ),
        (
            json!({"model": "seedance-2.0", "content": [{"type": "text", "text": "x"},
                {"type": "image_url", "image_url": {"url": "https://e.com/a.png"}, "role": "last_frame"}]}),
            "invalid_content",
        ),
    ] {
        let (status, refused) = ark_create(&app, &body, None).await;
        assert_eq!(status, 400, "{body}: {refused}");
        assert_eq!(refused["error"]["seedgate_code"], code, "{refused}");
        assert!(refused["error"]["message"].as_str().is_some());
    }
    let (status, missing) = app
        .get_path(&format!("{TASKS}/cgt-01ARZ3NDEKTSV4RRFFQ69G5FAV"))
        .await;
    assert_eq!(
        (status, &missing["error"]["seedgate_code"]),
        (404, &json!("async_task_not_found"))
    );
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn ark_create_takes_the_off_values_as_no_ops_and_refuses_the_on_values() {
    let app = TestApp::spawn_without_workers().await;
    let mut off = ark_t2v("a quiet harbour");
    for (field, value) in [
        ("camera_fixed", json!(false)),
        ("draft", json!(false)),
        ("tools", json!([])),
        ("output_format", json!("mp4")),
        ("frames", Value::Null),
    ] {
        off[field] = value;
    }
    let (status, created) = ark_create(&app, &off, None).await;
    assert_eq!(status, 200, "{created}");
    let (_, task) = app
        .get_path(&format!("{TASKS}/{}", created["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        (&task["status"], &task["duration"]),
        (&json!("queued"), &json!(4))
    );

    for (field, value, code) in [
        ("camera_fixed", json!(true), "unsupported_parameter"),
        ("draft", json!(true), "unsupported_parameter"),
        (
            "tools",
            json!([{"type": "web_search"}]),
            "unsupported_parameter",
        ),
        // This model makes MP4 only; Seedance 2.5 makes QuickTime too (below).
        ("output_format", json!("mov"), "unsupported_output_format"),
        ("frames", json!(97), "unsupported_parameter"),
    ] {
        let mut on = ark_t2v("a quiet harbour");
        on[field] = value;
        let (status, refused) = ark_create(&app, &on, None).await;
        assert_eq!(status, 400, "{field}: {refused}");
        assert_eq!(
            (
                &refused["error"]["seedgate_code"],
                &refused["error"]["param"]
            ),
            (&json!(code), &json!(field)),
            "{refused}"
        );
    }
    assert_eq!(app.store.count_tasks(&app.account_id).await.unwrap(), 1);
    let mut mov = ark_t2v("a quiet harbour");
    mov["model"] = json!("doubao-seedance-2-5-260628");
    mov["output_format"] = json!("mov");
    let (status, created) = ark_create(&app, &mov, None).await;
    assert_eq!(status, 200, "{created}");
}

#[tokio::test]
async fn ark_tasks_show_the_seed_tier_and_expiry_in_force() {
    let app = TestApp::spawn_with(|c| c.engine.task_deadline_seconds = 7200, false).await;
    for seed in [None, Some(-1), Some(3)] {
        let mut body = ark_t2v("a lighthouse at dusk");
        body["seed"] = seed.map_or(Value::Null, Value::from);
        let (_, created) = ark_create(&app, &body, None).await;
        let id = created["id"].as_str().unwrap();
        let (_, task) = app.get_path(&format!("{TASKS}/{id}")).await;
        let drawn = seed_in_force(&TaskId::new(id.replacen("cgt-", "vtask_", 1)), None);
        assert_eq!(
            task["seed"],
            seed.filter(|s| *s >= 0).unwrap_or(drawn),
            "{seed:?}: {task}"
        );
        assert_eq!(task["service_tier"], "default");
        // Queued here, the server's own deadline is what ends it.
        assert_eq!(task["execution_expires_after"], 7200, "{task}");
    }

    // Sent upstream: the seed and the expiry the upstream received.
    let fake = FakeArk::start().await;
    let app = app_with_channel(&fake).await;
    let (key, _) = app.new_key_in_mode(KeyMode::Live, 100_000_000).await;
    let mut body = ark_t2v("a lighthouse at dawn");
    body["seed"] = Value::Null;
    body["execution_expires_after"] = 3600.into();
    let (status, created) = ark_create_with_key(&app, &key, &body, None).await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap();
    let v1_id = id.replacen("cgt-", "vtask_", 1);
    let done = wait_terminal(
        &app.client,
        &app.address,
        &key,
        &v1_id,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done["status"], "completed", "{done}");
    let (_, task) = app.get_path_with_key(&key, &format!("{TASKS}/{id}")).await;
    let sent = &fake.creates()[0].1;
    assert_eq!(task["seed"], sent["seed"], "{task}");
    assert_eq!(sent["execution_expires_after"], 3600);
    // Counted from our creation, so the moments it was queued and sent here are added.
    let expiry = task["execution_expires_after"].as_i64().unwrap();
    assert!((3600..=3605).contains(&expiry), "{task}");
    assert_eq!(task["service_tier"], "default");
}

#[tokio::test]
async fn ark_errors_carry_arks_codes_and_keep_ours_beside_them() {
    // A burst for the refusals below, then one request a second.
    let app = TestApp::spawn_with(
        |c| {
            c.limits.requests_per_second = 1;
            c.limits.burst = 12;
        },
        false,
    )
    .await;
    let mut too_big = ark_t2v("x");
    too_big["resolution"] = "1080p".into();
    let mut unknown_model = ark_t2v("x");
    unknown_model["model"] = "doubao-seedance-9-9-990101".into();
    for (body, status, ark, ours) in [
        (too_big, 400, "InvalidParameter", "unsupported_resolution"),
        (
            json!({"model": "seedance-2.0"}),
            400,
            "MissingParameter",
            "missing_field",
        ),
        (
            unknown_model,
            400,
            "InvalidEndpointOrModel.NotFound",
            "model_not_found",
        ),
    ] {
        let (got, refused) = ark_create(&app, &body, None).await;
        let error = &refused["error"];
        assert_eq!(
            (got, &error["code"], &error["seedgate_code"]),
            (status, &json!(ark), &json!(ours)),
            "{refused}"
        );
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let mut too_big = ark_t2v("x");
    too_big["resolution"] = "1080p".into();
    let (_, refused) = ark_create(&app, &too_big, None).await;
    assert_eq!(
        (&refused["error"]["type"], &refused["error"]["param"]),
        (&json!("BadRequest"), &json!("resolution"))
    );
    assert!(
        refused["error"]["allowed_resolutions"].is_array(),
        "{refused}"
    );

    let (status, missing) = app
        .get_path(&format!("{TASKS}/cgt-01ARZ3NDEKTSV4RRFFQ69G5FAV"))
        .await;
    assert_eq!(
        (status, &missing["error"]["code"], &missing["error"]["type"]),
        (404, &json!("ResourceNotFound"), &json!("NotFound"))
    );

    // Refused before the handler runs: the key, then its rate, keep their headers.
    let response = app
        .client
        .get(format!("{}{TASKS}", app.address))
        .bearer_auth("sg_not_a_key")
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("www-authenticate"));
    let (status, refused) = decode(response).await;
    assert_eq!(
        (
            status,
            &refused["error"]["code"],
            &refused["error"]["seedgate_code"]
        ),
        (
            401,
            &json!("AuthenticationError"),
            &json!("invalid_api_key")
        )
    );

    let (poor, _) = app.new_key(0).await;
    let (status, refused) = ark_create_with_key(&app, &poor, &ark_t2v("x"), None).await;
    assert_eq!(
        (
            status,
            &refused["error"]["code"],
            &refused["error"]["seedgate_code"]
        ),
        (
            402,
            &json!("AccountOverdueError"),
            &json!("insufficient_balance")
        )
    );

    // No refusal of Ark's matches: ours stands in both fields.
    let (_, _) = ark_create(&app, &ark_t2v("first"), Some("same-key")).await;
    let (status, refused) = ark_create(&app, &ark_t2v("second"), Some("same-key")).await;
    assert_eq!(
        (
            status,
            &refused["error"]["code"],
            &refused["error"]["seedgate_code"]
        ),
        (
            409,
            &json!("idempotency_conflict"),
            &json!("idempotency_conflict")
        )
    );

    let limited = loop {
        let response = app
            .client
            .get(format!("{}{TASKS}", app.address))
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            break response;
        }
    };
    assert!(limited.headers().contains_key("retry-after"));
    let (_, refused) = decode(limited).await;
    assert_eq!(
        (
            &refused["error"]["code"],
            &refused["error"]["seedgate_code"]
        ),
        (
            &json!("ModelAccountRpmRateLimitExceeded"),
            &json!("rate_limit_exceeded")
        )
    );
}

/// Draft → final through both surfaces: the draft is a 480p preview; each final renders the
/// draft's own request at the resolution it asks for; each leg is quoted, reserved and billed
/// once, and usage reports them as separate lines.
#[tokio::test]
async fn a_draft_becomes_finals_on_both_surfaces_each_billed_once() {
    let app = TestApp::spawn_without_workers().await;
    let balance_before = app.balance(&app.account_id).await;
    let (status, draft) = app
        .create(
            &json!({"model": "seedance-2.5", "prompt": "a paper boat on a stream",
            "duration": 4, "aspect_ratio": "16:9", "draft": true, "generate_audio": false}),
        )
        .await;
    assert_eq!(status, 200, "{draft}");
    let draft_id = draft["id"].as_str().unwrap().to_owned();
    let ark_draft_id = draft_id.replacen("vtask_", "cgt-", 1);
    let final_at = |resolution: &str| json!({"model": "seedance-2.5", "draft_task_id": draft_id, "resolution": resolution});

    // Not before the draft has been made.
    let (status, refused) = app.create(&final_at("720p")).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "draft_task_not_completed");
    assert_eq!(refused["error"]["draft_status"], "unfinished");
    while app.engine.run_one().await.unwrap() == Outcome::Done {}
    let (_, made) = app.task(&draft_id).await;
    assert_eq!(made["status"], "completed", "{made}");
    assert_eq!(made["draft_task_id"], draft_id.as_str());
    assert_eq!(
        made["draft_expires_at"].as_i64().unwrap(),
        made["completed_at"].as_i64().unwrap() + 7 * 86_400
    );
    let (_, ark_made) = app.get_path(&format!("{TASKS}/{ark_draft_id}")).await;
    assert_eq!(ark_made["draft"], true);
    let draft_seed = ark_made["seed"].clone();

    // A final on /v1, quoted first: the draft's length and ratio at 720p.
    let (status, quote) = app
        .call(
            "POST",
            "/v1/videos/quote",
            &app.key,
            Some(&final_at("720p")),
        )
        .await;
    assert_eq!(status, 200, "{quote}");
    assert_eq!(
        (&quote["resolution"], &quote["output_seconds"]),
        (&json!("720p"), &json!(4))
    );
    let (status, created) = app.create(&final_at("720p")).await;
    assert_eq!(status, 200, "{created}");
    let v1_final = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["estimated_cost"]["amount"], quote["cost"]["amount"]);

    // A final on /api/v3 names the draft in a `draft_task` content item.
    let (status, refused) = ark_create(
        &app,
        &json!({"model": "doubao-seedance-2-5-260628", "resolution": "1080p", "content": [
            {"type": "text", "text": "another prompt"},
            {"type": "draft_task", "draft_task": {"id": ark_draft_id}}]}),
        None,
    )
    .await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (400, &json!("InvalidParameter")),
        "{refused}"
    );
    let (status, created) = ark_create(
        &app,
        &json!({"model": "doubao-seedance-2-5-260628", "resolution": "1080p",
            "content": [{"type": "draft_task", "draft_task": {"id": ark_draft_id}}]}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let ark_final = created["id"]
        .as_str()
        .unwrap()
        .replacen("cgt-", "vtask_", 1);

    while app.engine.run_one().await.unwrap() == Outcome::Done {}
    let mut charged = made["cost"]["amount"]
        .as_str()
        .unwrap()
        .parse::<f64>()
        .unwrap();
    for (id, height) in [(&v1_final, 720), (&ark_final, 1080)] {
        let (_, done) = app.task(id).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["result"]["height"], height);
        assert_eq!(done["result"]["has_audio"], false);
        assert_eq!(done["request"]["draft_task_id"], draft_id.as_str());
        assert_eq!(done["request"]["aspect_ratio"], "16:9");
        assert_eq!(done["request"]["seed"], draft_seed, "the draft's own seed");
        assert!(done["request"].get("draft").is_none() && done.get("draft_task_id").is_none());
        let (_, mp4) = app.download(done["video_url"].as_str().unwrap()).await;
        let probe = ffprobe(&mp4);
        assert_eq!(probe.height, height as u64);
        assert!((probe.duration - 4.0).abs() < 0.1, "{}", probe.duration);
        charged += done["cost"]["amount"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap();
    }
    let (_, v1_done) = app.task(&v1_final).await;
    assert_eq!(v1_done["cost"]["amount"], quote["cost"]["amount"]);
    let spent = balance_before - app.balance(&app.account_id).await;
    assert_eq!(
        spent,
        (charged * 1e6).round() as i64,
        "three legs, each once"
    );

    let (_, usage) = app.get_path("/v1/account/usage").await;
    let legs: Vec<(Value, Value)> = usage["by_model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| (line["leg"].clone(), line["requests"].clone()))
        .collect();
    assert_eq!(
        legs,
        [(json!("draft"), json!(1)), (json!("final"), json!(2))],
        "{usage}"
    );
}

/// A final names a completed draft of its own key and model, or is refused with its code, and
/// nothing is written.
#[tokio::test]
async fn a_final_is_refused_at_create_unless_its_draft_can_make_one() {
    let app = TestApp::spawn_without_workers().await;
    let make = |body: Value| {
        let app = &app;
        async move {
            let (status, created) = app.create(&body).await;
            assert_eq!(status, 200, "{created}");
            created["id"].as_str().unwrap().to_owned()
        }
    };
    let draft = make(
        json!({"model": "seedance-2.5", "prompt": "a kite", "draft": true,
        "duration": 4, "generate_audio": false}),
    )
    .await;
    let plain = make(
        json!({"model": "seedance-2.5", "prompt": "a kite", "resolution": "480p",
        "duration": 4, "generate_audio": false}),
    )
    .await;
    let cancelled = make(
        json!({"model": "seedance-2.5", "prompt": "a kite", "draft": true,
        "duration": 4, "generate_audio": false}),
    )
    .await;
    let (status, _) = app.cancel(&cancelled).await;
    assert_eq!(status, 200);
    while app.engine.run_one().await.unwrap() == Outcome::Done {}
    let balance = app.balance(&app.account_id).await;
    let (other_key, _) = app.new_key(100_000_000).await;

    let refusal = |key: String, body: Value| {
        let app = &app;
        async move {
            let (status, refused) = app.create_with_key(&key, &body).await;
            assert_eq!(status, 400, "{refused}");
            (
                refused["error"]["code"].as_str().unwrap().to_owned(),
                refused["error"]["param"].clone(),
            )
        }
    };
    let final_of = |id: &str| json!({"model": "seedance-2.5", "draft_task_id": id});
    let cases = [
        (
            app.key.clone(),
            final_of("vtask_01JF3Q7Z8X9Y0A1B2C3D4E5F6G"),
            "draft_task_not_found",
        ),
        (other_key, final_of(&draft), "draft_task_not_found"),
        (app.key.clone(), final_of(&plain), "not_a_draft_task"),
        (
            app.key.clone(),
            final_of(&cancelled),
            "draft_task_not_completed",
        ),
        (
            app.key.clone(),
            json!({"model": "seedance-2.0", "draft_task_id": draft}),
            "unsupported_parameter",
        ),
        (
            app.key.clone(),
            json!({"model": "seedance-2.5", "draft_task_id": draft, "prompt": "new"}),
            "conflicting_inputs",
        ),
        (
            app.key.clone(),
            json!({"model": "seedance-2.5", "draft_task_id": draft, "resolution": "4k"}),
            "unsupported_resolution",
        ),
    ];
    for (key, body, code) in cases {
        let (got, param) = refusal(key, body.clone()).await;
        assert_eq!(got, code, "{body}");
        assert!(param.is_string(), "{body}");
    }
    assert_eq!(
        app.balance(&app.account_id).await,
        balance,
        "nothing reserved"
    );
    assert_eq!(app.store.count_tasks(&app.account_id).await.unwrap(), 3);
}
