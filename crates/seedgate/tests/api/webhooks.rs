//! Webhooks: signed POSTs of the task object when a task ends, retried until accepted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use seedgate::ids::TaskId;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::{wait_until, TestApp};

#[derive(Default)]
struct Inbox {
    received: Mutex<Vec<(HeaderMap, String)>>,
    /// Statuses to answer, in order; 200 once exhausted.
    script: Mutex<VecDeque<u16>>,
}

async fn receive(State(inbox): State<Arc<Inbox>>, headers: HeaderMap, body: String) -> StatusCode {
    inbox.received.lock().unwrap().push((headers, body));
    let status = inbox.script.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

async fn receiver(script: &[u16]) -> (String, Arc<Inbox>) {
    let inbox = Arc::new(Inbox::default());
    inbox.script.lock().unwrap().extend(script);
    let router = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, inbox)
}

async fn app() -> TestApp {
    TestApp::spawn_with(|c| c.webhooks.retry_base_ms = 100, true).await
}

/// Checks `Seedgate-Signature` the way docs/webhooks.md tells receivers to.
fn verify(secret: &str, headers: &HeaderMap, body: &str) -> bool {
    let header = headers["seedgate-signature"].to_str().unwrap();
    let (mut t, mut v1) = ("", "");
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value,
            Some(("v1", value)) => v1 = value,
            _ => {}
        }
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    mac.verify_slice(&hex::decode(v1).unwrap()).is_ok()
}

async fn wait_for(inbox: &Inbox, count: usize) -> Vec<(HeaderMap, String)> {
    let started = Instant::now();
    loop {
        let received = inbox.received.lock().unwrap().clone();
        if received.len() >= count {
            return received;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {} webhooks arrived",
            received.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn task_body(callback: &str) -> Value {
    json!({"model": "seedance-2.0-fast", "operation": "text-to-video", "prompt": "ping me",
        "resolution": "480p", "duration": 4, "generate_audio": false, "callback_url": callback})
}

#[tokio::test]
async fn a_completed_task_posts_its_signed_object_to_the_callback() {
    let app = app().await;
    let (url, inbox) = receiver(&[]).await;
    let (status, created) = app.create(&task_body(&url)).await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap();
    let received = wait_for(&inbox, 1).await;
    let (headers, body) = &received[0];
    assert_eq!(headers["seedgate-event"], "task.completed");
    let secret = app.store.webhook_secret(&app.account_id).await.unwrap();
    assert!(
        verify(&secret, headers, body),
        "signature verifies with the account's secret"
    );
    assert!(!verify("whsec_wrong", headers, body));
    let object: Value = serde_json::from_str(body).unwrap();
    assert_eq!(object["id"], id);
    assert_eq!(object["status"], "completed");
    assert_eq!(
        object["request"]["prompt"], "ping me",
        "what was asked rides along"
    );
    assert_eq!(object["request"]["callback_url"], url.as_str());
    assert!(object["video_url"]
        .as_str()
        .unwrap()
        .starts_with("http://127.0.0.1:"));
    // The receiver has answered; the notifier records the outcome once it has read the answer.
    let deliveries = settled_deliveries(&app, id).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(
        (deliveries[0].state.as_str(), deliveries[0].attempts),
        ("delivered", 1)
    );
}

/// A task's webhook deliveries, once none is waiting to be sent or retried.
async fn settled_deliveries(app: &TestApp, id: &str) -> Vec<seedgate::store::DeliveryRecord> {
    let mut deliveries = Vec::new();
    wait_until(
        "the deliveries are settled",
        Duration::from_secs(60),
        async || {
            deliveries = app
                .store
                .deliveries_for_task(&TaskId::new(id))
                .await
                .unwrap();
            deliveries
                .iter()
                .all(|d| matches!(d.state.as_str(), "delivered" | "failed"))
        },
    )
    .await;
    deliveries
}

#[tokio::test]
async fn failed_deliveries_are_retried_until_accepted() {
    let app = app().await;
    let (url, inbox) = receiver(&[500, 503, 500]).await;
    let (_, created) = app.create(&task_body(&url)).await;
    let id = created["id"].as_str().unwrap();
    let received = wait_for(&inbox, 4).await;
    let deliveries: Vec<String> = received
        .iter()
        .map(|(h, _)| h["seedgate-delivery"].to_str().unwrap().to_owned())
        .collect();
    assert!(
        deliveries.windows(2).all(|w| w[0] == w[1]),
        "one delivery id across retries"
    );
    let record = &settled_deliveries(&app, id).await[0];
    assert_eq!(
        (record.state.as_str(), record.attempts, record.last_status),
        ("delivered", 4, Some(200))
    );
}

#[tokio::test]
async fn cancels_and_failures_notify_the_account_endpoint_too() {
    let app = TestApp::spawn_with(|c| c.webhooks.retry_base_ms = 100, false).await;
    let (account_url, account_inbox) = receiver(&[]).await;
    let (task_url, task_inbox) = receiver(&[]).await;
    app.store
        .set_webhook_url(&app.account_id, Some(&account_url))
        .await
        .unwrap();
    let (_, created) = app.create(&task_body(&task_url)).await;
    let id = created["id"].as_str().unwrap();
    let (status, _) = app.cancel(id).await;
    assert_eq!(status, 200);
    while app.notifier.deliver_one().await.unwrap() {}
    for inbox in [&account_inbox, &task_inbox] {
        let received = wait_for(inbox, 1).await;
        assert_eq!(received[0].0["seedgate-event"], "task.cancelled");
        let object: Value = serde_json::from_str(&received[0].1).unwrap();
        assert_eq!(
            (object["status"].as_str(), object["cancelled"].as_bool()),
            (Some("failed"), Some(true))
        );
    }
}

#[tokio::test]
async fn a_webhook_the_outbound_policy_refuses_is_dead_lettered_at_once() {
    let app = TestApp::spawn_with(
        |c| {
            c.webhooks.retry_base_ms = 100;
            c.webhooks.max_attempts = 16;
            c.fetch.allow_private = Vec::new();
        },
        false,
    )
    .await;
    let (url, inbox) = receiver(&[]).await;
    // A name passes create; it resolves to loopback only when the webhook is sent.
    let by_name = url.replace("127.0.0.1", "localhost");
    let (status, created) = app.create(&task_body(&by_name)).await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap();
    app.cancel(id).await;
    while app.notifier.deliver_one().await.unwrap() {}
    let record = &app
        .store
        .deliveries_for_task(&TaskId::new(id))
        .await
        .unwrap()[0];
    assert_eq!(record.state, "failed", "{record:?}");
    assert_eq!(
        record.attempts, 1,
        "a refusal that cannot change is not retried"
    );
    let reason = record.last_error.as_deref().unwrap_or("");
    assert!(reason.starts_with("webhook "), "{reason}");
    assert!(!reason.contains("input"), "{reason}");
    assert!(inbox.received.lock().unwrap().is_empty());
}

/// A task made on the OpenRouter surface calls back as OpenRouter does: its
/// `video.generation.*` envelope, `X-OpenRouter-Idempotency-Key: <id>-<status>`, and
/// `X-OpenRouter-Signature` over `"<t>,<body>"` with the account's secret.
#[tokio::test]
async fn an_openrouter_job_calls_back_in_openrouters_shape() {
    let app = app().await;
    let (url, inbox) = receiver(&[]).await;
    let response = app
        .client
        .post(format!("{}/api/v1/videos", app.address))
        .bearer_auth(&app.key)
        .json(
            &json!({"model": "bytedance/seedance-2.0-fast", "prompt": "ping me",
            "resolution": "480p", "duration": 4, "callback_url": url}),
        )
        .send()
        .await
        .unwrap();
    let (status, job) = crate::helpers::decode(response).await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap();
    let received = wait_for(&inbox, 1).await;
    let (headers, body) = &received[0];
    assert_eq!(
        headers["x-openrouter-idempotency-key"],
        format!("{id}-completed").as_str()
    );
    assert!(headers.get("seedgate-signature").is_none());
    let signature = headers["x-openrouter-signature"].to_str().unwrap();
    let (t, v1) = signature
        .split_once(",v1=")
        .map(|(t, v1)| (t.trim_start_matches("t="), v1))
        .unwrap();
    let secret = app.store.webhook_secret(&app.account_id).await.unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t},{body}").as_bytes());
    assert!(
        mac.verify_slice(&hex::decode(v1).unwrap()).is_ok(),
        "signed as OpenRouter signs"
    );
    let event: Value = serde_json::from_str(body).unwrap();
    assert_eq!(event["type"], "video.generation.completed", "{event}");
    assert!(event["created_at"].as_str().unwrap().ends_with('Z'));
    let data = &event["data"];
    assert_eq!(data["id"], id);
    assert_eq!(data["status"], "completed");
    assert_eq!(data["model"], "bytedance/seedance-2.0-fast");
    assert!(data["usage"]["cost"].as_f64().unwrap() > 0.0, "{event}");
    assert!(data.get("error").is_none(), "no null in its place: {event}");
    assert_eq!(
        data["unsigned_urls"][0],
        format!("{}/api/v1/videos/{id}/content?index=0", app.address)
    );
    // The task's /v1 object says which shape its webhooks take.
    let (_, task) = app.task(id).await;
    assert_eq!(task["request"]["webhook_format"], "openrouter");
}
