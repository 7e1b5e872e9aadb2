//! The ledger: reserve at create, settle on success, release on failure and cancel.

use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;

use crate::helpers::TestApp;

fn micros(amount: &serde_json::Value) -> i64 {
    let d: Decimal = amount.as_str().unwrap().parse().unwrap();
    (d * Decimal::from(1_000_000))
        .trunc()
        .to_string()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn balance_equals_ledger_sum_after_a_mixed_workload() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let body = json!({"model": "seedance-2.0-fast", "operation": "text-to-video",
            "prompt": format!("scene {n}"), "resolution": "480p", "duration": 4, "generate_audio": n % 2 == 0});
        let (status, created) = app.create(&body).await;
        assert_eq!(status, 200, "{created}");
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    // One that fails at its input: reserved, then fully released.
    let failing = json!({"model": "seedance-2.0", "operation": "image-to-video",
        "prompt": "x", "image_url": "http://127.0.0.1:9/none.png", "resolution": "480p"});
    let (_, created) = app.create(&failing).await;
    ids.push(created["id"].as_str().unwrap().to_owned());
    // Rejections write nothing.
    let (status, _) = app
        .create(&json!({"model": "seedance-2.0-fast", "operation": "text-to-video", "prompt": "x", "resolution": "4k"}))
        .await;
    assert_eq!(status, 400);
    // Cancel whatever is still queued; a task already rendering answers 409.
    let (cancel_status, _) = app.cancel(&ids[3]).await;
    assert!(cancel_status == 200 || cancel_status == 409);

    let mut charged = 0;
    for id in &ids {
        let done = app.wait_terminal(id, Duration::from_secs(120)).await;
        if done["status"] == "completed" {
            let cost = micros(&done["cost"]["amount"]);
            assert!(cost > 0);
            assert!(cost <= micros(&done["estimated_cost"]["amount"]));
            charged += cost;
        } else {
            assert!(done["cost"].is_null());
        }
    }
    let balance = app.balance(&app.account_id).await;
    assert_eq!(
        balance,
        app.store.ledger_sum(&app.account_id).await.unwrap()
    );
    assert_eq!(balance, 100_000_000 - charged);
}

/// A live key pays real money: with no upstream channel it is refused before any charge, not
/// served test patterns by the sandbox, unless the operator allows that for development.
#[tokio::test]
async fn a_live_key_with_no_channel_is_refused_before_any_charge() {
    let body = json!({"model": "seedance-2.0-fast", "operation": "text-to-video",
        "prompt": "a kite", "resolution": "480p", "duration": 4});
    let app = TestApp::spawn_with(|c| c.sandbox.serve_live_keys = false, false).await;
    let (live, account) = app
        .new_key_in_mode(seedgate::store::KeyMode::Live, 5_000_000)
        .await;
    let entries = app
        .store
        .ledger_entries_for_account(&account)
        .await
        .unwrap();
    let (status, refused) = app.create_with_key(&live, &body).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "no_channel_for_request");
    assert_eq!(app.store.count_tasks(&account).await.unwrap(), 0);
    assert_eq!(app.balance(&account).await, 5_000_000);
    assert_eq!(
        app.store
            .ledger_entries_for_account(&account)
            .await
            .unwrap(),
        entries
    );
    // Test keys keep the sandbox.
    assert_eq!(app.create(&body).await.0, 200);

    // The development setting lets the sandbox stand in, and the task says so.
    let app = TestApp::spawn_with(|c| c.sandbox.serve_live_keys = true, false).await;
    let (live, _) = app
        .new_key_in_mode(seedgate::store::KeyMode::Live, 5_000_000)
        .await;
    let (status, created) = app.create_with_key(&live, &body).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["provider"], "sandbox");
}

/// `serve` tells the operator at start who serves live keys and who serves test keys.
#[tokio::test]
async fn serve_says_which_providers_serve_live_and_test_keys() {
    for (allowed, live) in [
        (false, "live keys are served by nothing"),
        (
            true,
            "live keys are served by sandbox (sandbox.serve_live_keys = true",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::helpers::test_config(dir.path());
        config.sandbox.serve_live_keys = allowed;
        let app = seedgate::Application::build(config).await.unwrap();
        assert!(app.routing.starts_with(live), "{}", app.routing);
        assert!(
            app.routing.ends_with("test keys by the sandbox"),
            "{}",
            app.routing
        );
    }
}
