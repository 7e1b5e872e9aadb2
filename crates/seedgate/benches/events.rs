//! Live progress at scale: 10,000 task event streams (`GET /v1/tasks/{id}/events`) open on one
//! `seedgate serve` process — the shipped binary, started as users start it — and each task's
//! ending delivered to its stream. It reports the server's memory with every stream open and
//! how long each ending took to arrive after the database recorded it.
//!
//! The tasks are a test key's, each asking the sandbox to expire it `EXPIRE_AFTER` seconds
//! after its creation (`Seedgate-Sandbox-Scenario: expire`): every one ends, and none renders,
//! so what is measured is the streams.
//!
//! `cargo bench -p seedgate --bench events` (`SEEDGATE_BENCH_STREAMS` sets the count).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use seedgate::ids::TaskId;
use tokio::sync::Semaphore;

/// Seconds from a task's creation to its expiry: long enough for every stream to open first.
const EXPIRE_AFTER: u64 = 45;

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The server, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A test key with play money for every task, made by the operator CLI, then `seedgate serve`
/// on a free port with `dir` as its data dir: the server, its address and the key.
fn start(dir: &std::path::Path) -> (Server, String, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("seedgate.toml");
    std::fs::write(
        &config,
        "[engine]\nmax_concurrent_tasks_per_key = 1000000\n\
         [limits]\nrequests_per_second = 1000000\nburst = 1000000\n",
    )
    .unwrap();
    let seedgate = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_seedgate"));
        command
            .args(args)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--config")
            .arg(&config);
        command
    };
    let made = seedgate(&[
        "keys",
        "create",
        "--name",
        "bench",
        "--balance-usd",
        "10000000",
        "--test",
    ])
    .output()
    .unwrap();
    assert!(made.status.success(), "{made:?}");
    let key = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    let child = seedgate(&["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the seedgate binary");
    (Server(child), format!("http://127.0.0.1:{port}"), key)
}

/// Reads one task's stream until its ending arrives; when it did (Unix ms).
async fn await_ending(client: reqwest::Client, base: String, key: String, id: String) -> i64 {
    let mut response = client
        .get(format!("{base}/v1/tasks/{id}/events"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut seen = String::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if seen.contains("event: task.failed") || seen.contains("event: task.completed") {
            return unix_ms();
        }
        // Only the tail can still hold the start of the ending's name.
        if seen.len() > 64 {
            seen.drain(..seen.len() - 64);
        }
    }
    panic!("the stream of {id} ended without its ending");
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let streams: usize = std::env::var("SEEDGATE_BENCH_STREAMS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(streams));
}

async fn run(streams: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (server, base, key) = start(dir.path());
    let pid = server.0.id();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let started = Instant::now();
    while client.get(format!("{base}/readyz")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle_rss = rss_mib(pid);

    // The tasks, 64 creates at a time.
    let gate = Arc::new(Semaphore::new(64));
    let mut creates = Vec::with_capacity(streams);
    for _ in 0..streams {
        let (client, base, key, gate) = (client.clone(), base.clone(), key.clone(), gate.clone());
        creates.push(tokio::spawn(async move {
            let _turn = gate.acquire().await.unwrap();
            let created: serde_json::Value = client
                .post(format!("{base}/v1/videos/generations"))
                .bearer_auth(&key)
                .header(
                    "Seedgate-Sandbox-Scenario",
                    format!("expire; after={EXPIRE_AFTER}"),
                )
                .json(
                    &serde_json::json!({"model": "seedance-2.0-fast", "prompt": "a stream",
                    "resolution": "480p", "duration": 4}),
                )
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            created["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{created}"))
                .to_owned()
        }));
    }
    let mut ids = Vec::with_capacity(streams);
    for create in creates {
        ids.push(create.await.unwrap());
    }
    let created_in = started.elapsed();

    // Every stream opened: the client opens a connection for each, as none is ever free.
    let opening = Instant::now();
    let followers: Vec<_> = ids
        .iter()
        .map(|id| {
            tokio::spawn(await_ending(
                client.clone(),
                base.clone(),
                key.clone(),
                id.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let open_rss = rss_mib(pid);
    let mut received = Vec::with_capacity(streams);
    for follower in followers {
        received.push(follower.await.unwrap());
    }
    let all_in = opening.elapsed();
    drop(server);

    // When each ending was recorded, from the database itself.
    let url = format!("sqlite://{}", dir.path().join("data/seedgate.db").display());
    let store = seedgate::store::connect(&url).await.unwrap();
    let mut latencies = Vec::with_capacity(streams);
    for (id, at) in ids.iter().zip(&received) {
        let task = store
            .task(&TaskId::new(id.as_str()))
            .await
            .unwrap()
            .unwrap();
        latencies.push(at - task.updated_at_ms);
    }
    latencies.sort_unstable();
    let within = latencies.iter().filter(|ms| **ms <= 1_000).count();
    println!("| streams | created in | RSS idle | RSS, all streams open | ending → event p50 | p99 | max | within 1 s | all ended after |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {streams} | {:.1} s | {idle_rss:.0} MiB | {open_rss:.0} MiB ({:.1} KiB a stream) | {} ms | {} ms | {} ms | {within}/{streams} | {:.0} s |",
        created_in.as_secs_f64(),
        (open_rss - idle_rss) * 1024.0 / streams as f64,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default(),
        all_in.as_secs_f64(),
    );
}
