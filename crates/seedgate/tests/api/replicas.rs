//! Three replicas of the real binary on one PostgreSQL database and one S3 bucket, behind no
//! balancer but this test's round robin. The crash workload (every operation, sandbox and
//! upstream, cancels, refusals, lost create answers) goes through them with idempotent repeats
//! sent to another replica, while one replica is `kill -9`ed twice and restarted. Afterwards
//! every task has ended exactly once, no upstream task was made twice, every ledger balances
//! to the micro-dollar, and every replica answers for every task and serves its MP4.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;

use crate::crash::{
    audit_books, crash_run_seed, create_key, engine_config, lossy_upstream, wait_until_all_end,
    workload,
};
use crate::helpers::{database_url, decode, ffprobe, test_config, MediaServer, Moto, TestApp};
use crate::restart::{start_with_env, Server};

const REPLICAS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_database_and_bucket_exactly_once() {
    let total = 340;
    let kills = 2;
    let (seed, mut rng) = crash_run_seed();
    let started = Instant::now();

    let fake = lossy_upstream().await;
    let media = MediaServer::start().await;
    let moto = Moto::shared().await;
    let bucket = moto.new_bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("seedgate.toml");
    std::fs::write(&config, engine_config(&fake.base_url)).unwrap();
    let s3 = [
        ("SEEDGATE_ASSETS_URL", format!("s3://{bucket}/replicas")),
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
    ]
    .map(|(name, value)| (name.to_owned(), value));

    // Each replica has a data dir of its own (as on separate machines) and the one database.
    let data: Vec<_> = (0..REPLICAS)
        .map(|n| dir.path().join(format!("replica-{n}")))
        .collect();
    let shared_database = database_url(&data[0]);
    for replica_data in &data[1..] {
        std::fs::create_dir_all(replica_data).unwrap();
        std::fs::write(replica_data.join("database-url"), &shared_database).unwrap();
    }
    let keys: HashMap<&str, String> = [
        (
            "sandbox",
            create_key(&data[0], &config, "sandbox", "1000", true),
        ),
        ("live", create_key(&data[1], &config, "live", "1000", false)),
        ("poor", create_key(&data[2], &config, "poor", "0.5", false)),
    ]
    .into_iter()
    .collect();

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let start_replica = |n: usize| {
        let (data, config, s3) = (&data, &config, &s3);
        async move { start_with_env(&data[n], config, false, s3).await.0 }
    };
    let mut servers: Vec<Server> = Vec::new();
    for n in 0..REPLICAS {
        servers.push(start_replica(n).await);
    }
    // A restarted replica listens on another port: the round robin follows it.
    let mut addresses: Vec<String> = servers.iter().map(|s| s.address.clone()).collect();

    let kill_points: Vec<usize> = (1..=kills).map(|k| k * total / (kills + 1)).collect();
    let mut accepted: Vec<(String, String)> = Vec::new();
    let mut repeats = 0;
    let mut kills_done = 0;
    for n in 0..total {
        if kill_points.contains(&n) {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(50..600))).await;
            drop(servers.remove(1));
            kills_done += 1;
            servers.insert(1, start_replica(1).await);
            addresses[1] = servers[1].address.clone();
        }
        let (who, body) = workload(&mut rng, &media);
        let key = &keys[who];
        let idempotency = format!("replicas-{n}");
        let create = |address: &str| {
            let request = client
                .post(format!("{address}/v1/videos/generations"))
                .bearer_auth(key)
                .header("idempotency-key", &idempotency)
                .json(&body);
            async move {
                loop {
                    match request.try_clone().unwrap().send().await {
                        Ok(response) => break decode(response).await,
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            }
        };
        let (status, task) = create(&addresses[n % REPLICAS]).await;
        match status {
            200 => {
                let id = task["id"].as_str().unwrap().to_owned();
                if n % 7 == 0 {
                    // The client's retry lands on another replica: the same task comes back.
                    let (again, repeat) = create(&addresses[(n + 1) % REPLICAS]).await;
                    assert_eq!((again, repeat["id"].as_str()), (200, Some(id.as_str())));
                    repeats += 1;
                }
                if n % 9 == 0 {
                    let _ = client
                        .delete(format!("{}/v1/tasks/{id}", addresses[(n + 2) % REPLICAS]))
                        .bearer_auth(key)
                        .send()
                        .await;
                }
                accepted.push((who.to_owned(), id));
            }
            402 => assert_eq!(who, "poor", "{task}"),
            other => panic!("unexpected {other}: {task}"),
        }
    }
    wait_until_all_end(
        &client,
        &addresses,
        &keys,
        &accepted,
        Duration::from_secs(240),
    )
    .await;

    // Any replica answers for any task the same way, and serves its MP4 from the bucket.
    let mut completed_ids = Vec::new();
    for (n, (who, id)) in accepted.iter().enumerate() {
        let views: Vec<Value> = futures_util::future::join_all(addresses.iter().map(|address| {
            let request = client
                .get(format!("{address}/v1/tasks/{id}"))
                .bearer_auth(&keys[who.as_str()]);
            async move {
                let (status, task) = decode(request.send().await.unwrap()).await;
                assert_eq!(status, 200, "{task}");
                task
            }
        }))
        .await;
        for view in &views[1..] {
            assert_eq!(view["status"], views[0]["status"], "{id}");
            assert_eq!(view["cost"], views[0]["cost"], "{id}");
        }
        if views[0]["status"] == "completed" {
            let from = &views[(n + 1) % REPLICAS];
            let video = client
                .get(from["video_url"].as_str().unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(video.status().as_u16(), 200, "{id}");
            let bytes = video.bytes().await.unwrap();
            if completed_ids.len() < 3 {
                let probe = ffprobe(&bytes);
                assert!(probe.duration > 0.0, "{id}");
            } else {
                assert!(bytes.starts_with(&[0, 0, 0]) && bytes.len() > 1000, "{id}");
            }
            completed_ids.push(id.clone());
        }
    }
    drop(servers);

    let store = seedgate::store::connect(&shared_database).await.unwrap();
    let books = audit_books(&*store, &accepted).await;
    assert_eq!(books.completed, completed_ids.len());
    assert_eq!(kills_done, kills);
    // The cost report reads every task an upstream completed, once, on PostgreSQL too.
    assert_eq!(
        store.vendor_charges(None, None).await.unwrap().len(),
        books.completed_upstream
    );
    assert_eq!(
        fake.tasks_created(),
        books.upstream_ids.len(),
        "upstream tasks created vs adopted"
    );
    println!(
        "replicas seed={seed}: {REPLICAS} replicas, {} tasks ({} completed), {repeats} \
         idempotent repeats on another replica, {kills_done} kills, {} create answers lost, \
         {} upstream tasks, 0 duplicates, balance drift {} µUSD, {:.0} s",
        accepted.len(),
        books.completed,
        fake.answers_lost(),
        books.upstream_ids.len(),
        books.drift,
        started.elapsed().as_secs_f64()
    );
}

/// A task created through one replica wakes the engine of another at once (`LISTEN/NOTIFY`),
/// though that engine would otherwise look for work only once a minute.
#[tokio::test]
async fn a_task_created_on_one_replica_wakes_the_engine_of_another() {
    let front = TestApp::spawn_with(|config| config.engine.idle_poll_ms = 60_000, false).await;
    let mut config = test_config(front.data_dir.path());
    config.database_url = Some(database_url(front.data_dir.path()));
    config.engine.idle_poll_ms = 60_000;
    let worker = seedgate::Application::build(config).await.unwrap();
    tokio::spawn(worker.run(true, std::future::pending()));
    // Let the worker's engine finish its first look for work and go idle.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let started = Instant::now();
    let (status, task) = front
        .create(
            &serde_json::json!({"model": "seedance-2.0-fast", "operation": "text-to-video",
            "prompt": "wake", "resolution": "480p", "duration": 4, "generate_audio": false}),
        )
        .await;
    assert_eq!(status, 200, "{task}");
    let done = front
        .wait_terminal(task["id"].as_str().unwrap(), Duration::from_secs(30))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// A task's event stream on one replica follows the work another replica's engine does on it,
/// through the database's change notifications.
#[tokio::test]
async fn a_stream_on_one_replica_follows_work_done_on_another() {
    let front = TestApp::spawn_with(|_| {}, false).await;
    let mut config = test_config(front.data_dir.path());
    config.database_url = Some(database_url(front.data_dir.path()));
    let worker = seedgate::Application::build(config).await.unwrap();
    let (status, task) = front
        .create(
            &serde_json::json!({"model": "seedance-2.0-fast", "prompt": "elsewhere",
            "resolution": "480p", "duration": 4, "generate_audio": false}),
        )
        .await;
    assert_eq!(status, 200, "{task}");
    let id = task["id"].as_str().unwrap();
    let mut stream =
        crate::events::Stream::open(&front, &format!("/v1/tasks/{id}/events"), None).await;
    assert_eq!(stream.next().await.unwrap().event, "task.pending");
    // Only now does a replica with workers exist.
    tokio::spawn(worker.run(true, std::future::pending()));
    let mut statuses = Vec::new();
    while let Some(event) = stream.next().await {
        if event.event != "task.progress" {
            statuses.push(event.event);
        }
    }
    assert_eq!(statuses, ["task.processing", "task.completed"]);
}

/// A key's stream on one replica hears of a task made on another as it is made, before any
/// worker touches it.
#[tokio::test]
async fn a_keys_stream_hears_of_tasks_made_on_another_replica() {
    let front = TestApp::spawn_with(|_| {}, false).await;
    let mut config = test_config(front.data_dir.path());
    config.database_url = Some(database_url(front.data_dir.path()));
    let other = seedgate::Application::build(config).await.unwrap();
    let other_address = format!("http://{}", other.local_addr().unwrap());
    tokio::spawn(other.run(false, std::future::pending()));
    let mut stream = crate::events::Stream::open(&front, "/v1/tasks/events", None).await;
    let response = front
        .client
        .post(format!("{other_address}/v1/videos/generations"))
        .bearer_auth(&front.key)
        .json(
            &serde_json::json!({"model": "seedance-2.0-fast", "prompt": "made elsewhere",
            "resolution": "480p", "duration": 4}),
        )
        .send()
        .await
        .unwrap();
    let (status, task) = decode(response).await;
    assert_eq!(status, 200, "{task}");
    let heard = stream.next().await.expect("the new task's event");
    assert_eq!(heard.event, "task.pending");
    assert_eq!(heard.data["task_id"], task["id"]);
    assert_eq!(heard.data["task"]["request"]["prompt"], "made elsewhere");
}
