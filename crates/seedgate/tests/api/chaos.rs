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
use serde_json::Value;

use crate::crash::{
    audit_books, crash_run_seed, create_key, engine_config, lossy_upstream, wait_until_all_end,
    workload,
};
use crate::fake_vendors::{FakeVendor, Wire};
use crate::helpers::{decode, MediaServer};
use crate::restart::start;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_and_bills_exactly() {
    let long = std::env::var("SEEDGATE_CHAOS_LONG").is_ok();
    let (total, kills) = if long { (1000, 15) } else { (240, 5) };
    let fake = lossy_upstream().await;
    let run = chaos_run(total, kills, engine_config(&fake.base_url), long).await;
    // Each upstream task belongs to exactly one of ours: none was created twice.
    assert_eq!(
        fake.tasks_created(),
        run.books.upstream_ids.len(),
        "upstream tasks created vs adopted"
    );
    println!("{}", run.report(fake.answers_lost()));
}

/// The same run with Ark, fal and Replicate behind one server, each losing the answer to
/// every eighth create. Ark and Replicate are searched for a lost answer's task and it is
/// adopted; fal cannot be, so that task fails uncharged. No task of ours has more than one
/// upstream task at any vendor, or across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_across_three_vendors_loses_nothing_and_never_bills_twice() {
    let ark = lossy_upstream().await;
    let fal = FakeVendor::start(Wire::Fal).await;
    let replicate = FakeVendor::start(Wire::Replicate).await;
    for vendor in [&fal, &replicate] {
        vendor.lose_answer_every(8);
    }
    let config = engine_config(&ark.base_url)
        + &vendor_channel(&fal, "fal", "bytedance/seedance-2.0/fast")
        + &vendor_channel(&replicate, "replicate", "bytedance/seedance-2.0-fast");
    let run = chaos_run(160, 4, config, false).await;

    // Every upstream task, whichever vendor made it, by the prompt that names its task.
    let mut made: Vec<(String, String)> = ark
        .creates()
        .into_iter()
        .map(|(_, body)| {
            let id = ark_id_of(&ark, &body);
            (body["content"][0]["text"].as_str().unwrap().to_owned(), id)
        })
        .collect();
    for vendor in [&fal, &replicate] {
        made.extend(
            vendor
                .jobs()
                .into_iter()
                .map(|(id, input)| (input["prompt"].as_str().unwrap().to_owned(), id)),
        );
    }
    let mut per_task: HashMap<&str, usize> = HashMap::new();
    for (prompt, _) in &made {
        *per_task.entry(prompt.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = per_task.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "tasks with more than one upstream task: {twice:?}"
    );
    // What Ark and Replicate made is each some task's own; fal's unadopted tasks are the ones
    // whose answer was lost (or whose server died mid-submission), failed uncharged.
    let adopted = &run.books.upstream_ids;
    let orphans = |ids: Vec<String>| ids.into_iter().filter(|id| !adopted.contains(id)).count();
    assert_eq!(orphans(ark.task_ids()), 0, "Ark tasks no task adopted");
    assert_eq!(
        orphans(replicate.jobs().into_iter().map(|(id, _)| id).collect()),
        0,
        "Replicate predictions no task adopted"
    );
    let fal_orphans = orphans(fal.jobs().into_iter().map(|(id, _)| id).collect());
    assert!(
        fal_orphans <= fal.answers_lost() + run.kills,
        "{fal_orphans} fal requests unadopted, {} answers lost",
        fal.answers_lost()
    );
    assert_eq!(made.len(), adopted.len() + fal_orphans);
    // Each vendor's channel answers the operator's check with its own key.
    let check = crate::restart::operator(
        &run.dir.path().join("data"),
        &run.dir.path().join("seedgate.toml"),
        &["channels", "check"],
    );
    let checked = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{checked}");
    for channel in ["volc", "fal", "replicate"] {
        assert!(
            checked
                .lines()
                .any(|line| line.starts_with(channel) && line.contains(" yes ")),
            "{checked}"
        );
    }
    // The operator's cost report counts every task a vendor completed, under that vendor.
    let report = crate::restart::operator(
        &run.dir.path().join("data"),
        &run.dir.path().join("seedgate.toml"),
        &["channels", "report"],
    );
    assert!(report.status.success(), "{report:?}");
    let report = String::from_utf8(report.stdout).unwrap();
    let mut reported: HashMap<&str, i64> = HashMap::new();
    for line in report.lines().skip(1) {
        let columns: Vec<&str> = line.split_whitespace().collect();
        *reported.entry(columns[1]).or_default() += columns[2].parse::<i64>().unwrap();
    }
    let completed_upstream = reported.values().sum::<i64>();
    assert!(
        reported
            .keys()
            .all(|vendor| ["ark", "fal", "replicate"].contains(vendor)),
        "{report}"
    );
    assert_eq!(
        completed_upstream as usize, run.books.completed_upstream,
        "{report}"
    );
    println!(
        "three vendors: {} upstream tasks (Ark {}, fal {}, Replicate {}), {} answers lost, \
         {fal_orphans} fal requests failed uncharged, at most one upstream task per task",
        made.len(),
        ark.tasks_created(),
        fal.jobs_made(),
        replicate.jobs_made(),
        ark.answers_lost() + fal.answers_lost() + replicate.answers_lost()
    );
    println!(
        "{}",
        run.report(ark.answers_lost() + fal.answers_lost() + replicate.answers_lost())
    );
}

/// The id the Ark fake gave the task made by `body`.
fn ark_id_of(ark: &crate::fake_ark::FakeArk, body: &Value) -> String {
    ark.task_ids()
        .into_iter()
        .find(|id| ark.body_of(id).as_ref() == Some(body))
        .unwrap()
}

fn vendor_channel(vendor: &FakeVendor, id: &str, fast_model: &str) -> String {
    format!(
        "\n[[channels]]\nid = \"{id}\"\nprovider = \"{}\"\nbase_url = \"{}\"\napi_key_env = \"{}\"\n\
         resolutions = [\"480p\", \"720p\"]\nmax_concurrent_tasks = 1000\ntimeout_seconds = 1\n\
         models = {{ \"seedance-2.0-fast\" = \"{fast_model}\" }}\n",
        vendor.wire.provider(),
        vendor.base_url,
        vendor.wire.key_env()
    )
}

/// What a chaos run leaves to check.
struct ChaosRun {
    /// Its data and config, kept for the operator's commands.
    dir: tempfile::TempDir,
    seed: u64,
    accepted: usize,
    cancels: usize,
    refused_for_balance: usize,
    kills: usize,
    books: crate::crash::Books,
    started: Instant,
}

impl ChaosRun {
    fn report(&self, answers_lost: usize) -> String {
        format!(
            "chaos seed={}: {} accepted ({} completed, {} cancelled by request), \
             {} refused for balance, {} kills, balance drift {} µUSD, \
             {answers_lost} create answers lost, 0 lost, {} upstream tasks, 0 duplicates, {:.0} s",
            self.seed,
            self.accepted,
            self.books.completed,
            self.cancels,
            self.refused_for_balance,
            self.kills,
            self.books.drift,
            self.books.upstream_ids.len(),
            self.started.elapsed().as_secs_f64()
        )
    }
}

/// `total` requests of the mixed workload, each with a prompt of its own, against a server
/// on `config` that is killed `kills` times; then every accepted task must end and the books
/// must balance.
async fn chaos_run(total: usize, kills: usize, config_text: String, long: bool) -> ChaosRun {
    let (seed, mut rng) = crash_run_seed();
    let started = Instant::now();
    let media = MediaServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("seedgate.toml");
    std::fs::write(&config, config_text).unwrap();
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
        let (who, mut body) = workload(&mut rng, &media);
        body["prompt"] = format!("chaos {n}").into();
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
    ChaosRun {
        dir,
        seed,
        accepted: accepted.len(),
        cancels,
        refused_for_balance,
        kills: kills_done,
        books,
        started,
    }
}
