//! Chaos: a mixed workload (every operation, sandbox and upstream, cancels, refusals for want
//! of balance) while the server is `kill -9`ed at random moments and restarted. At the end every
//! accepted task has ended, no upstream task was created twice, and every account's balance
//! equals its ledger and its opening amount minus exactly the cost of its completed tasks.
//!
//! Some creates lose their answer after the upstream made the task (held past the timeout,
//! reset, 5xx): each must be reconciled, never submitted twice.
//!
//! CI runs the short form (240 requests, about 215 accepted tasks, 5 kills). `SEEDGATE_CHAOS_LONG=1` runs 1,000 tasks and 15
//! kills; `SEEDGATE_CHAOS_SEED=n` replays a run.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::crash::{
    audit_books, crash_run_seed, create_key, engine_config, lossy_upstream, wait_until_all_end,
    workload,
};
use crate::helpers::{decode, MediaServer};
use crate::restart::start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_and_bills_exactly() {
    let long = std::env::var("SEEDGATE_CHAOS_LONG").is_ok();
    let (total, kills) = if long { (1000, 15) } else { (240, 5) };
    let (seed, mut rng) = crash_run_seed();
    let started = Instant::now();

    let fake = lossy_upstream().await;
    let media = MediaServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("seedgate.toml");
    std::fs::write(&config, engine_config(&fake.base_url)).unwrap();
    let data = dir.path().join("data");
    let keys: HashMap<&str, String> = [
        (
            "sandbox",
            create_key(&data, &config, "sandbox", "1000", true),
        ),
        ("live", create_key(&data, &config, "live", "1000", false)),
        ("poor", create_key(&data, &config, "poor", "0.5", false)),
    ]
    .into_iter()
    .collect();

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (mut server, _) = start(&data, &config, false).await;

    let kill_points: HashSet<usize> = (1..=kills).map(|k| k * total / (kills + 1)).collect();
    let mut accepted: Vec<(String, String)> = Vec::new();
    let mut refused_for_balance = 0;
    let mut cancels = 0;
    let mut kills_done = 0;
    for n in 0..total {
        if kill_points.contains(&n) {
            // Let work get under way, then kill without warning and restart at once.
            tokio::time::sleep(Duration::from_millis(rng.gen_range(50..600))).await;
            drop(server);
            kills_done += 1;
            server = start(&data, &config, false).await.0;
        }
        let address = &server.address;
        let (who, body) = workload(&mut rng, &media);
        let key = &keys[who];
        let idempotency = format!("chaos-{n}");
        // A client retries a create whose answer it never saw, with the same Idempotency-Key.
        let (status, task) = loop {
            let sent = client
                .post(format!("{address}/v1/videos/generations"))
                .bearer_auth(key)
                .header("idempotency-key", &idempotency)
                .json(&body)
                .send()
                .await;
            match sent {
                Ok(response) => break decode(response).await,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        match status {
            200 => {
                let id = task["id"].as_str().unwrap().to_owned();
                if n % 9 == 0 {
                    let cancelled = client
                        .delete(format!("{address}/v1/tasks/{id}"))
                        .bearer_auth(key)
                        .send()
                        .await;
                    if cancelled.is_ok_and(|r| r.status().as_u16() == 200) {
                        cancels += 1;
                    }
                }
                accepted.push((who.to_owned(), id));
            }
            402 => {
                assert_eq!(who, "poor", "{task}");
                refused_for_balance += 1;
            }
            other => panic!("unexpected {other}: {task}"),
        }
    }

    // Every accepted task ends.
    let addresses = [server.address.clone()];
    wait_until_all_end(
        &client,
        &addresses,
        &keys,
        &accepted,
        // The sandbox's tasks run one at a time here, beside every other test on two cores.
        Duration::from_secs(if long { 900 } else { 300 }),
    )
    .await;
    drop(server);

    // The books, read straight from the database.
    let store = seedgate::store::connect(&crate::helpers::database_url(&data))
        .await
        .unwrap();
    let books = audit_books(&*store, &accepted).await;
    assert_eq!(kills_done, kills);
    // Each upstream task belongs to exactly one of ours: none was created twice.
    assert_eq!(
        fake.tasks_created(),
        books.upstream_ids.len(),
        "upstream tasks created vs adopted"
    );
    println!(
        "chaos seed={seed}: {} accepted ({} completed, {cancels} cancelled by request), \
         {refused_for_balance} refused for balance, {kills_done} kills, balance drift {} µUSD, \
         {} create answers lost, 0 lost, {} upstream tasks, 0 duplicates, {:.0} s",
        accepted.len(),
        books.completed,
        books.drift,
        fake.answers_lost(),
        books.upstream_ids.len(),
        started.elapsed().as_secs_f64()
    );
}
