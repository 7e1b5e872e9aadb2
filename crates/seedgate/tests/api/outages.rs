//! A dependency failing under steady load: the result store (an S3 bucket on a moto of the
//! test's own) frozen for two minutes while sandbox and upstream tasks are created, rendered
//! and copied. The server waits: `/readyz` says which dependency is down, every task accepted
//! completes once the store answers again, none is rendered or made upstream twice, and every
//! balance equals its ledger and its opening amount less exactly what its completed tasks cost.
//!
//! `SEEDGATE_OUTAGE_SECONDS` sets the outage's length (default 120).

use std::time::{Duration, Instant};

use seedgate::blobs::Location;
use seedgate::ids::TaskId;
use seedgate::store::KeyMode;
use serde_json::json;

use crate::fake_ark::FakeArk;
use crate::helpers::{wait_terminal, Moto, Storage, TestApp};
use crate::upstream::{channel, fast_polls};

const OPENING: i64 = 100_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_is_waited_out_and_every_task_rendered_meanwhile_completes() {
    let outage = Duration::from_secs(
        std::env::var("SEEDGATE_OUTAGE_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120),
    );
    let moto = Moto::dedicated().await;
    let bucket = moto.new_bucket().await;
    let fake = FakeArk::start().await;
    let app = TestApp::spawn_on(
        Storage::Local,
        |c| {
            fast_polls(c);
            c.channels = vec![channel("volc", &fake, 1)];
            c.assets.url = Some(Location::S3 {
                bucket,
                prefix: "results".into(),
            });
            c.assets.aws = moto.environment();
        },
        true,
    )
    .await;
    let (live, live_account) = app.new_key_in_mode(KeyMode::Live, OPENING).await;
    let body = json!({"model": "seedance-2.0-fast", "operation": "text-to-video",
        "prompt": "a kite in the rain", "resolution": "480p", "duration": 4,
        "generate_audio": false});

    // One create a second, test and live keys in turn, before, during and after the outage.
    let started = Instant::now();
    let lead = Duration::from_secs(5);
    let mut created: Vec<(String, String)> = Vec::new();
    let mut paused = false;
    let mut resumed_at = None;
    let mut during_outage = 0;
    let mut readyz_during = None;
    while started.elapsed() < lead + outage + lead {
        if !paused && started.elapsed() >= lead {
            moto.pause();
            paused = true;
        }
        if paused && readyz_during.is_none() && started.elapsed() >= lead + outage / 2 {
            let asked = Instant::now();
            readyz_during = Some((app.get_path("/readyz").await, asked.elapsed()));
        }
        let key = if created.len().is_multiple_of(2) {
            app.key.clone()
        } else {
            live.clone()
        };
        let (status, task) = app.create_with_key(&key, &body).await;
        assert_eq!(status, 200, "creates need no result store: {task}");
        created.push((key, task["id"].as_str().unwrap().to_owned()));
        during_outage += usize::from(paused);
        if paused && started.elapsed() >= lead + outage {
            moto.resume();
            paused = false;
            resumed_at = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let ((status, ready), took) = readyz_during.unwrap();
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["reason"], "result store does not answer");
    assert!(took < Duration::from_secs(5), "/readyz took {took:?}");

    // Every task ends, completed: the outage cost time, not work.
    let mut cost = [0i64; 2];
    for (key, id) in &created {
        let done =
            wait_terminal(&app.client, &app.address, key, id, Duration::from_secs(300)).await;
        assert_eq!(done["status"], "completed", "{done}");
        let row = app.store.task(&TaskId::new(id)).await.unwrap().unwrap();
        assert_eq!(row.attempts, 1, "{id} was made more than once");
        cost[usize::from(*key == live)] += row.cost_usd_micros.unwrap();
    }
    let drained = resumed_at.unwrap().elapsed();
    let upstream_tasks = created.iter().filter(|(key, _)| *key == live).count();
    assert_eq!(
        fake.tasks_created(),
        upstream_tasks,
        "an upstream task made twice"
    );
    for (account, spent) in [(&app.account_id, cost[0]), (&live_account, cost[1])] {
        let ledger = app.store.ledger_sum(account).await.unwrap();
        assert_eq!(app.balance(account).await, ledger);
        assert_eq!(ledger, OPENING - spent, "ledger vs completed costs");
    }
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("seedgate_dependency_outages_total{dependency=\"result_store\"} 1"),
        "{metrics}"
    );
    assert_eq!(app.get_path("/readyz").await.0, 200);
    println!(
        "s3 outage of {} s: {} tasks accepted ({} sandbox, {upstream_tasks} upstream; \
         {during_outage} created during the outage), all completed, the last {:.0} s after the \
         store returned, 0 lost, 0 rendered or made twice, 0 µUSD drift",
        outage.as_secs(),
        created.len(),
        created.len() - upstream_tasks,
        drained.as_secs_f64()
    );
}
