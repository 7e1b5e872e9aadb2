//! Per-key limits: request rate (429 with Retry-After) and tasks generating at once.

use std::time::{Duration, Instant};

use seedgate::store::KeyMode;
use serde_json::json;

use crate::fake_ark::{Ending, FakeArk};
use crate::helpers::{wait_until, TestApp};
use crate::upstream::{channel, fast_polls};

const WAIT: Duration = Duration::from_secs(60);

/// A server whose keys may make one request a second after a burst of `burst`, shared by
/// `replicas`; the key spends `allowed` requests, and the answer to the next is returned.
async fn spend_the_burst(
    burst: u32,
    replicas: u32,
    allowed: usize,
) -> (TestApp, reqwest::Response) {
    let app = TestApp::spawn_with(
        |c| {
            c.limits.requests_per_second = 1;
            c.limits.burst = burst;
            c.limits.replicas = replicas;
        },
        false,
    )
    .await;
    for _ in 0..allowed {
        assert_eq!(app.get_path("/v1/models").await.0, 200);
    }
    let response = app
        .client
        .get(format!("{}/v1/models", app.address))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    (app, response)
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_retry_after() {
    let (app, response) = spend_the_burst(3, 1, 3).await;
    assert_eq!(response.status().as_u16(), 429);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert!(header("retry-after").parse::<u64>().unwrap() >= 1);
    assert_eq!(header("x-ratelimit-remaining"), "0");
    let (_, body) = crate::helpers::decode(response).await;
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "rate_limit_exceeded");

    // Other keys have their own buckets, and a key may carry its own rate.
    let (other, _) = app.new_key(1_000_000).await;
    assert_eq!(app.get_path_with_key(&other, "/v1/models").await.0, 200);
    let (fast, fast_id) = app.new_key(1_000_000).await;
    app.store
        .set_key_limits(&fast_id, Some(100), None)
        .await
        .unwrap();
    for _ in 0..20 {
        assert_eq!(app.get_path_with_key(&fast, "/v1/models").await.0, 200);
    }
    // The refill lets the first key back in.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get_path("/v1/models").await.0, 200);
}

#[tokio::test]
async fn tasks_beyond_a_keys_concurrency_wait_queued() {
    let fake = FakeArk::start().await;
    // The first task runs upstream from the start until the test lets it finish.
    fake.set_timing(Duration::ZERO, Duration::ZERO);
    fake.set_ending(Ending::Never);
    let app = TestApp::spawn_with(
        |c| {
            fast_polls(c);
            c.channels = vec![channel("volc", &fake, 1)];
        },
        true,
    )
    .await;
    let (key, account) = app.new_key_in_mode(KeyMode::Live, 100_000_000).await;
    app.store
        .set_key_limits(&account, None, Some(1))
        .await
        .unwrap();
    let body = json!({"model": "seedance-2.0-fast", "operation": "text-to-video", "prompt": "one at a time",
        "resolution": "480p", "duration": 4});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, created) = app.create_with_key(&key, &body).await;
        assert_eq!(status, 200, "{created}");
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    wait_until("one task generates", WAIT, async || {
        fake.tasks_created() == 1
            && app.sorted_statuses(&key, &ids).await == ["pending", "processing"]
    })
    .await;
    // While it does, no worker is given the other: it waits, it is not rejected.
    let max_per_key = seedgate::config::EngineConfig::default().max_concurrent_tasks_per_key;
    let handed_out = app
        .store
        .claim_queued_task("test-probe", 60_000, max_per_key)
        .await
        .unwrap();
    assert!(
        handed_out.is_none(),
        "a task over its key's limit was claimable"
    );
    assert_eq!(
        app.sorted_statuses(&key, &ids).await,
        ["pending", "processing"]
    );
    assert_eq!(fake.tasks_created(), 1);

    // The first finishes; only then is the second submitted, and it completes too.
    fake.set_ending(Ending::Succeed);
    let released = Instant::now();
    fake.complete_over_time(1000, usize::MAX).await;
    for id in &ids {
        let done = crate::helpers::wait_terminal(&app.client, &app.address, &key, id, WAIT).await;
        assert_eq!(done["status"], "completed");
    }
    let creates = fake.creates();
    assert_eq!(creates.len(), 2);
    assert!(
        creates[1].0 >= released,
        "the second task was submitted only once the first had finished"
    );
}

/// The platform's document gives `X-RateLimit-Limit` per minute and `X-RateLimit-Reset` as a
/// Unix timestamp; `Retry-After` stays seconds to wait.
#[tokio::test]
async fn rate_limit_headers_give_the_limit_per_minute_and_the_reset_as_a_unix_time() {
    let (_app, response) = spend_the_burst(3, 1, 3).await;
    assert_eq!(response.status().as_u16(), 429);
    let number =
        |name: &str| -> u64 { response.headers()[name].to_str().unwrap().parse().unwrap() };
    assert_eq!(number("x-ratelimit-limit"), 60);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let reset = number("x-ratelimit-reset");
    // Three tokens at one a second: whole again within three seconds from now.
    assert!((now..=now + 4).contains(&reset), "reset {reset}, now {now}");
    let retry_after = number("retry-after");
    assert!((1..=2).contains(&retry_after), "retry-after {retry_after}");
}

/// Behind a balancer each of N replicas lets a key through at its share of the rate.
#[tokio::test]
async fn each_replica_enforces_its_share_of_a_keys_rate() {
    let (_app, response) = spend_the_burst(6, 3, 2).await;
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["x-ratelimit-limit"], "60");
}
