//! What the crash runs share (`chaos`, on SQLite, and `replicas`, on PostgreSQL): the operator
//! command that makes their keys, their mixed workload, the lossy fake upstream and engine
//! settings they run with, the wait for every task to end, and the audit of the books.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use seedgate::store::{TaskFilter, TaskState};
use serde_json::{json, Value};

use crate::fake_ark::{FakeArk, FAKE_KEY_ENV};
use crate::helpers::{decode, MediaServer};

pub(crate) fn create_key(data: &Path, config: &Path, name: &str, usd: &str, test: bool) -> String {
    let mut args = vec!["keys", "create", "--name", name, "--balance-usd", usd];
    if test {
        args.push("--test");
    }
    let out = crate::restart::operator(data, config, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub(crate) fn workload(rng: &mut StdRng, media: &MediaServer) -> (&'static str, Value) {
    let img = media.url("start.png");
    let clip = media.url("clip.mp4");
    let base = |model: &str, op: &str| {
        json!({"model": model, "operation": op, "prompt": "chaos",
        "resolution": "480p", "duration": 4, "generate_audio": false})
    };
    let with = |mut body: Value, key: &str, value: Value| {
        body[key] = value;
        body
    };
    match rng.gen_range(0..10) {
        0 => (
            "sandbox",
            with(
                base("seedance-2.0-fast", "image-to-video"),
                "image_url",
                img.into(),
            ),
        ),
        1 => (
            "sandbox",
            with(
                base("seedance-2.0", "video-to-video"),
                "video_url",
                clip.into(),
            ),
        ),
        2 => {
            let body = with(
                base("seedance-2.0", "start-end-to-video"),
                "start_image",
                img.clone().into(),
            );
            ("sandbox", with(body, "end_image", img.into()))
        }
        3 => (
            "sandbox",
            with(
                base("seedance-2.0-mini", "reference-to-video"),
                "reference_images",
                json!([img]),
            ),
        ),
        4 => ("sandbox", base("seedance-2.0", "text-to-video")),
        5 => (
            "poor",
            with(
                base("seedance-2.0", "text-to-video"),
                "resolution",
                "1080p".into(),
            ),
        ),
        6 => (
            "live",
            with(
                base("seedance-2.0", "video-extension"),
                "video_url",
                clip.into(),
            ),
        ),
        _ => ("live", base("seedance-2.0-fast", "text-to-video")),
    }
}

/// The seed of a crash run (`SEEDGATE_CHAOS_SEED=n` replays one) and its generator.
pub(crate) fn crash_run_seed() -> (u64, StdRng) {
    let seed: u64 = std::env::var("SEEDGATE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    (seed, StdRng::seed_from_u64(seed))
}

/// The fake upstream of a crash run: quick tasks, and every eighth create losing its answer
/// after the upstream made the task (held past the channel's 1 s timeout, reset, or 502).
pub(crate) async fn lossy_upstream() -> FakeArk {
    let fake = FakeArk::start().await;
    fake.set_timing(Duration::from_millis(100), Duration::from_millis(300));
    fake.lose_answer_every(8);
    fake
}

/// The engine settings of a crash run: short leases, polls, retries and reconciliations, one
/// channel on the fake upstream with a 1 s timeout, limits out of the way.
pub(crate) fn engine_config(base_url: &str) -> String {
    format!(
            "[engine]\nworkers = 1\nlease_seconds = 1\nidle_poll_ms = 50\nfirst_poll_ms = 100\nmax_poll_interval_ms = 300\n\
             expected_ms_per_output_second = 0\nmax_concurrent_tasks_per_key = 100\nbreaker_cooldown_seconds = 2\n\
             retry_backoff_ms = 50\nreconcile_delay_ms = 100\n\
             [limits]\nrequests_per_second = 100000\nburst = 100000\n\
             [sandbox]\nmax_concurrent_renders = 1\n\
             [fetch]\nallow_private = [\"127.0.0.1/32\"]\n\n\
             [[channels]]\nid = \"volc\"\nprovider = \"ark\"\nbase_url = \"{}\"\napi_key_env = \"{FAKE_KEY_ENV}\"\n\
             resolutions = [\"480p\", \"720p\", \"1080p\"]\nmax_concurrent_tasks = 1000\ntimeout_seconds = 1\n\
             models = {{ \"seedance-2.0\" = \"doubao-seedance-2-0-260128\", \"seedance-2.0-fast\" = \"doubao-seedance-2-0-fast-260128\" }}\n",
            base_url
        )
}

/// Polls every accepted task (through the addresses in turn) until each is completed or failed.
pub(crate) async fn wait_until_all_end(
    client: &reqwest::Client,
    addresses: &[String],
    keys: &HashMap<&str, String>,
    accepted: &[(String, String)],
    patience: Duration,
) {
    let mut pending: Vec<&(String, String)> = accepted.iter().collect();
    let deadline = Instant::now() + patience;
    let mut round = 0;
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} tasks never ended",
            pending.len()
        );
        let mut still = Vec::new();
        for (n, entry) in pending.into_iter().enumerate() {
            let (who, id) = entry;
            let address = &addresses[(n + round) % addresses.len()];
            let response = client
                .get(format!("{address}/v1/tasks/{id}"))
                .bearer_auth(&keys[who.as_str()])
                .send()
                .await;
            let done = match response {
                Ok(r) => {
                    let (_, task) = decode(r).await;
                    matches!(task["status"].as_str(), Some("completed" | "failed"))
                }
                Err(_) => false,
            };
            if !done {
                still.push(entry);
            }
        }
        pending = still;
        round += 1;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// What the books say after a crash run.
pub(crate) struct Books {
    pub completed: usize,
    /// Of those, the ones an upstream made.
    pub completed_upstream: usize,
    pub upstream_ids: HashSet<String>,
    pub drift: i64,
}

/// Reads the books straight from the database and holds them to the rules: every task was
/// accepted and has ended; a completed one was reserved, released and charged its cost once,
/// any other reserved and released; no two tasks share an upstream task; every balance equals
/// its ledger and its opening amount minus the costs of its completed tasks.
pub(crate) async fn audit_books(
    store: &dyn seedgate::store::Backend,
    accepted: &[(String, String)],
) -> Books {
    let accepted_ids: HashSet<&str> = accepted.iter().map(|(_, id)| id.as_str()).collect();
    let mut completed = 0;
    let mut completed_upstream = 0;
    let mut upstream_ids = HashSet::new();
    let mut drift = 0i64;
    for account in store.list_keys().await.unwrap() {
        let tasks = store
            .list_tasks(
                &account.id,
                &TaskFilter {
                    limit: 1_000_000,
                    ..TaskFilter::default()
                },
            )
            .await
            .unwrap();
        let mut charged = 0;
        for task in &tasks {
            assert!(
                accepted_ids.contains(task.id.as_str()),
                "a task nobody was told about: {}",
                task.id
            );
            assert!(task.state.is_terminal(), "{} is {:?}", task.id, task.state);
            let entries = store.ledger_entries_for_task(&task.id).await.unwrap();
            let kinds: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
            if task.state == TaskState::Succeeded {
                completed += 1;
                completed_upstream += usize::from(task.upstream_id.is_some());
                assert_eq!(kinds, ["reserve", "release", "charge"], "{}", task.id);
                assert_eq!(-entries[2].1, task.cost_usd_micros.unwrap());
                charged += task.cost_usd_micros.unwrap();
            } else {
                assert_eq!(
                    kinds,
                    ["reserve", "release"],
                    "{} ({:?})",
                    task.id,
                    task.state
                );
            }
            if let Some(upstream) = &task.upstream_id {
                assert!(
                    upstream_ids.insert(upstream.clone()),
                    "two tasks share {upstream}"
                );
            }
        }
        let opening = match account.name.as_str() {
            "poor" => 500_000,
            _ => 1_000_000_000,
        };
        let sum = store.ledger_sum(&account.id).await.unwrap();
        drift += (account.balance_usd_micros - sum).abs() + (opening - charged - sum).abs();
        assert_eq!(
            account.balance_usd_micros, sum,
            "{}: balance vs ledger",
            account.name
        );
        assert_eq!(
            sum,
            opening - charged,
            "{}: ledger vs completed costs",
            account.name
        );
    }
    Books {
        completed,
        completed_upstream,
        upstream_ids,
        drift,
    }
}
