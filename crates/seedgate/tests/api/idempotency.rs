//! `Idempotency-Key`: a retried create returns the original task and reserves nothing twice.

use serde_json::{json, Value};

use crate::helpers::{decode, TestApp};

fn body(prompt: &str) -> Value {
    json!({"model": "seedance-2.0-fast", "operation": "text-to-video", "prompt": prompt,
        "resolution": "480p", "duration": 4})
}

async fn create(app: &TestApp, key: &str, body: &Value) -> (u16, Value, bool) {
    let response = app
        .client
        .post(format!("{}/v1/videos/generations", app.address))
        .bearer_auth(&app.key)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    let (status, value) = decode(response).await;
    (status, value, replayed)
}

#[tokio::test]
async fn a_repeat_returns_the_original_task_and_reserves_once() {
    let app = TestApp::spawn_without_workers().await;
    let (status, first, replayed) = create(&app, "order-42", &body("once")).await;
    assert_eq!((status, replayed), (200, false));
    let balance = app.balance(&app.account_id).await;
    let (status, again, replayed) = create(&app, "order-42", &body("once")).await;
    assert_eq!((status, replayed), (200, true));
    assert_eq!(again["id"], first["id"]);
    assert_eq!(app.balance(&app.account_id).await, balance);
    assert_eq!(app.store.count_tasks(&app.account_id).await.unwrap(), 1);
    // Another key is another request.
    let (_, other, _) = create(&app, "order-43", &body("once")).await;
    assert_ne!(other["id"], first["id"]);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_409() {
    let app = TestApp::spawn_without_workers().await;
    let (status, _, _) = create(&app, "k1", &body("first")).await;
    assert_eq!(status, 200);
    let balance = app.balance(&app.account_id).await;
    let (status, conflict, _) = create(&app, "k1", &body("second")).await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["error"]["code"], "idempotency_conflict");
    assert_eq!(app.store.count_tasks(&app.account_id).await.unwrap(), 1);
    assert_eq!(app.balance(&app.account_id).await, balance);
}

#[tokio::test]
async fn concurrent_duplicates_create_exactly_one_task() {
    let app = TestApp::spawn_without_workers().await;
    let mut requests = Vec::new();
    for _ in 0..12 {
        let (client, address, key) = (app.client.clone(), app.address.clone(), app.key.clone());
        requests.push(tokio::spawn(async move {
            let response = client
                .post(format!("{address}/v1/videos/generations"))
                .bearer_auth(key)
                .header("idempotency-key", "burst")
                .json(&body("burst"))
                .send()
                .await
                .unwrap();
            decode(response).await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for request in requests {
        let (status, task) = request.await.unwrap();
        assert_eq!(status, 200, "{task}");
        ids.insert(task["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(app.store.count_tasks(&app.account_id).await.unwrap(), 1);
    // One reservation: the opening top-up and one reserve entry.
    assert_eq!(
        app.store
            .ledger_entries_for_account(&app.account_id)
            .await
            .unwrap(),
        2
    );
}

#[tokio::test]
async fn a_rejected_request_does_not_burn_its_key() {
    let app = TestApp::spawn_without_workers().await;
    let mut bad = body("x");
    bad["resolution"] = "4k".into();
    let (status, error, _) = create(&app, "retry-me", &bad).await;
    assert_eq!(status, 400, "{error}");
    app.assert_nothing_written().await;
    let (status, _, replayed) = create(&app, "retry-me", &body("x")).await;
    assert_eq!((status, replayed), (200, false));
}

#[tokio::test]
async fn malformed_keys_are_refused() {
    let app = TestApp::spawn_without_workers().await;
    for key in ["", &"k".repeat(256), "has space"] {
        let (status, error, _) = create(&app, key, &body("x")).await;
        assert_eq!(status, 400, "{key:?}: {error}");
        assert_eq!(error["error"]["code"], "invalid_idempotency_key");
    }
    app.assert_nothing_written().await;
}

/// The same job through `/v1` and then Ark's surface, with the same key, is one task: the job
/// is compared after parsing, not as bytes.
#[tokio::test]
async fn the_same_job_through_both_surfaces_replays() {
    let app = TestApp::spawn_without_workers().await;
    let (status, first, _) = create(&app, "both-doors", &body("a red kite")).await;
    assert_eq!(status, 200, "{first}");
    let balance = app.balance(&app.account_id).await;
    let ark_body = json!({"model": "seedance-2.0-fast",
        "content": [{"type": "text", "text": "a red kite"}],
        "duration": 4, "resolution": "480p"});
    let response = app
        .client
        .post(format!("{}/api/v3/contents/generations/tasks", app.address))
        .bearer_auth(&app.key)
        .header("idempotency-key", "both-doors")
        .json(&ark_body)
        .send()
        .await
        .unwrap();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    let (status, ark) = decode(response).await;
    assert_eq!((status, replayed), (200, true), "{ark}");
    let ulid = first["id"]
        .as_str()
        .unwrap()
        .strip_prefix("vtask_")
        .unwrap();
    assert_eq!(ark["id"], format!("cgt-{ulid}"));
    assert_eq!(app.store.count_tasks(&app.account_id).await.unwrap(), 1);
    assert_eq!(app.balance(&app.account_id).await, balance);

    // Fields in another order and an alias are the same job too; another prompt is not.
    let reordered = json!({"duration": 4, "ratio": "adaptive", "prompt": "a red kite",
        "resolution": "480p", "operation": "text-to-video", "model": "seedance-2.0-fast"});
    let (status, again, replayed) = create(&app, "both-doors", &reordered).await;
    assert_eq!((status, replayed), (200, true), "{again}");
    assert_eq!(again["id"], first["id"]);
    let (status, conflict, _) = create(&app, "both-doors", &body("a blue kite")).await;
    assert_eq!(status, 409, "{conflict}");
}
