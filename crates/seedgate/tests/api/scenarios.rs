//! Sandbox scenarios: a test key names an outcome in `Seedgate-Sandbox-Scenario`, and the real
//! engine plays it out with the codes, charges and webhooks of a real task; live keys' requests
//! ignore the header.

use std::time::{Duration, Instant};

use seedgate::ids::TaskId;
use seedgate::store::KeyMode;
use serde_json::{json, Value};

use crate::helpers::{decode, TestApp};

const WAIT: Duration = Duration::from_secs(60);

fn body() -> Value {
    json!({"model": "seedance-2.0-fast", "prompt": "a paper kite", "resolution": "480p",
        "duration": 4, "generate_audio": false})
}

async fn create_playing(app: &TestApp, key: &str, scenario: &str) -> (u16, Value) {
    let response = app
        .client
        .post(format!("{}/v1/videos/generations", app.address))
        .bearer_auth(key)
        .header("Seedgate-Sandbox-Scenario", scenario)
        .json(&body())
        .send()
        .await
        .unwrap();
    decode(response).await
}

/// Creates a task playing `scenario` with the test key and waits for its end.
async fn played(app: &TestApp, scenario: &str) -> Value {
    let (status, created) = create_playing(app, &app.key, scenario).await;
    assert_eq!(status, 200, "{created}");
    app.wait_terminal(created["id"].as_str().unwrap(), WAIT)
        .await
}

fn cost_micros(task: &Value) -> i64 {
    task["cost"]["amount"]
        .as_str()
        .map_or(0, |amount| amount.replace('.', "").parse().unwrap())
}

#[tokio::test]
async fn refusals_and_lost_results_fail_uncharged_with_the_upstreams_codes() {
    let app = TestApp::spawn().await;
    let balance = app.balance(&app.account_id).await;
    for (scenario, code) in [
        ("input_moderation", "InputTextSensitiveContentDetected"),
        ("output_moderation", "OutputVideoSensitiveContentDetected"),
        ("result_unavailable", "result_unavailable"),
        ("expire; after=1", "task_expired"),
    ] {
        let task = played(&app, scenario).await;
        assert_eq!(task["status"], "failed", "{scenario}: {task}");
        assert_eq!(task["error"]["code"], code, "{scenario}: {task}");
        assert!(task.get("cost").is_none_or(Value::is_null), "{task}");
    }
    assert_eq!(
        app.balance(&app.account_id).await,
        balance,
        "nothing charged"
    );
}

#[tokio::test]
async fn a_429_storm_is_retried_and_the_video_charged_once() {
    let app = TestApp::spawn().await;
    let balance = app.balance(&app.account_id).await;
    let task = played(&app, "rate_limited; count=2").await;
    assert_eq!(task["status"], "completed", "{task}");
    let row = app
        .store
        .task(&TaskId::new(task["id"].as_str().unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.attempts, 3,
        "two refused submissions, then the one that made it"
    );
    assert_eq!(
        balance - app.balance(&app.account_id).await,
        cost_micros(&task)
    );
    assert!(cost_micros(&task) > 0);
}

#[tokio::test]
async fn a_slow_queue_holds_the_task_pending_and_cancellable() {
    let app = TestApp::spawn().await;
    let balance = app.balance(&app.account_id).await;
    let started = Instant::now();
    let (_, withdrawn) = create_playing(&app, &app.key, "slow_queue; wait=2").await;
    let (_, kept) = create_playing(&app, &app.key, "slow_queue; wait=2").await;
    let (status, cancelled) = app.cancel(withdrawn["id"].as_str().unwrap()).await;
    assert_eq!(
        (status, &cancelled["cancelled"]),
        (200, &json!(true)),
        "{cancelled}"
    );
    let (_, waiting) = app.task(kept["id"].as_str().unwrap()).await;
    assert_eq!(waiting["status"], "pending");
    let done = app.wait_terminal(kept["id"].as_str().unwrap(), WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "it waited its turn"
    );
    assert_eq!(
        balance - app.balance(&app.account_id).await,
        cost_micros(&done)
    );
}

#[tokio::test]
async fn a_cancel_that_comes_once_generation_began_is_refused_and_the_task_charged() {
    let app = TestApp::spawn().await;
    let balance = app.balance(&app.account_id).await;
    let (_, created) = create_playing(&app, &app.key, "cancel_race; wait=3").await;
    let id = created["id"].as_str().unwrap();
    crate::helpers::wait_until("the task is generating", WAIT, async || {
        app.task(id).await.1["status"] == "processing"
    })
    .await;
    let (status, refused) = app.cancel(id).await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "task_not_cancellable");
    let done = app.wait_terminal(id, WAIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        balance - app.balance(&app.account_id).await,
        cost_micros(&done)
    );
}

#[tokio::test]
async fn live_keys_ignore_the_header_and_a_wrong_one_changes_nothing() {
    let app = TestApp::spawn().await;
    let (status, refused) = create_playing(&app, &app.key, "moderation").await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "invalid_sandbox_scenario");
    assert_eq!(refused["error"]["param"], "seedgate-sandbox-scenario");
    assert!(refused["error"]["allowed_scenarios"]
        .as_array()
        .unwrap()
        .contains(&json!("cancel_race")));
    app.assert_nothing_written().await;

    let (live, _) = app.new_key_in_mode(KeyMode::Live, 100_000_000).await;
    for scenario in ["input_moderation", "not a scenario"] {
        let (status, created) = create_playing(&app, &live, scenario).await;
        assert_eq!(status, 200, "{created}");
        let done = crate::helpers::wait_terminal(
            &app.client,
            &app.address,
            &live,
            created["id"].as_str().unwrap(),
            WAIT,
        )
        .await;
        assert_eq!(done["status"], "completed", "{scenario}: {done}");
    }
}
