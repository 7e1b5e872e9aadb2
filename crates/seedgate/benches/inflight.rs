//! The server with many upstream tasks in flight: the real `seedgate` binary, a live key,
//! one Ark channel pointing at the fake upstream of the API tests (docs/ark.md). Creates
//! `SEEDGATE_BENCH_INFLIGHT` tasks (default 100,000) through the API and waits until the
//! upstream holds every one of them, polled within the channel's budget. Then the upstream
//! finishes them one after another at `SEEDGATE_BENCH_FINISH_RATE` a second (default 150) for a
//! minute, calling back for every other one (the rest of the callbacks are lost), and the bench
//! measures how long after the upstream's success each task shows `completed`. Memory is read
//! from `/proc`, status reads per second are counted by the fake upstream.
//! `SEEDGATE_BENCH_POLL_INTERVAL_MS` (default 60,000) is the longest wait between two polls of
//! a task: a shorter one puts a million tasks' polling load on fewer tasks.
//! `SEEDGATE_BENCH_POLL_BATCH` (default 100) is the channel's `poll_batch`.
//!
//! `cargo bench -p seedgate --bench inflight`

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../tests/api/fake_ark.rs"]
mod fake_ark;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use fake_ark::{Ending, FakeArk, FAKE_KEY_ENV};
use seedgate::store::{KeyMode, KeySpec};

/// The channel's budget of status reads a second: 100 tasks a read, so a million tasks are all
/// looked at every 40 s within it.
const POLL_BUDGET: u32 = 250;
const FIRST_POLL_MS: u64 = 5_000;

const CREATE_BODY: &str = r#"{"model":"seedance-2.0-fast","operation":"text-to-video","prompt":"A lighthouse at dusk.","resolution":"480p","duration":4}"#;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `VmRSS` and `VmHWM` (peak) of a process, in MiB.
fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |field: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap()
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

fn main() {
    let total: usize = std::env::var("SEEDGATE_BENCH_INFLIGHT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let finish_rate: u32 = std::env::var("SEEDGATE_BENCH_FINISH_RATE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let poll_interval_ms: u64 = std::env::var("SEEDGATE_BENCH_POLL_INTERVAL_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60_000);
    let poll_batch: u32 = std::env::var("SEEDGATE_BENCH_POLL_BATCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fake = runtime.block_on(FakeArk::start());
    fake.set_ending(Ending::Never);
    fake.set_timing(Duration::from_millis(500), Duration::from_secs(3600));

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("seedgate.toml");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("http://127.0.0.1:{port}");
    std::fs::write(
        &config,
        format!(
            "public_url = \"{address}\"\n\
             [engine]\nworkers = 16\nmax_concurrent_tasks_per_key = 10000000\n\
             first_poll_ms = {FIRST_POLL_MS}\nmax_poll_interval_ms = {poll_interval_ms}\n\
             expected_ms_per_output_second = 0\n\
             [limits]\nrequests_per_second = 1000000\nburst = 1000000\n\
             [fetch]\nallow_private = [\"127.0.0.1/32\"]\n\
             [[channels]]\nid = \"volc\"\nprovider = \"ark\"\nbase_url = \"{}\"\n\
             api_key_env = \"{FAKE_KEY_ENV}\"\nresolutions = [\"480p\", \"720p\"]\n\
             max_concurrent_tasks = 10000000\npolls_per_second = {POLL_BUDGET}\npoll_batch = {poll_batch}\n\
             models = {{ \"seedance-2.0-fast\" = \"doubao-seedance-2-0-fast-260128\" }}\n",
            fake.base_url
        ),
    )
    .unwrap();
    // A live key (test keys stay on the sandbox), made before the server opens the database.
    let key = runtime.block_on(async {
        std::fs::create_dir_all(&data).unwrap();
        let url = format!("sqlite://{}", data.join("seedgate.db").display());
        let store = seedgate::store::connect(&url).await.unwrap();
        let key = store
            .create_key(&KeySpec::plain("bench", KeyMode::Live, 10_000_000_000_000))
            .await;
        key.unwrap().secret
    });
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_seedgate"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("SEEDGATE_BENCH_SERVER_LOG").unwrap_or("warn".into()),
            )
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = server.0.id();
    let client = reqwest::Client::new();
    runtime.block_on(async {
        while client
            .get(format!("{address}/readyz"))
            .send()
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let (idle_rss, _) = memory_mib(pid);
    println!("{total} tasks; server (pid {pid}) idle at {idle_rss:.1} MiB resident");

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    runtime.block_on(async {
        let clients: Vec<_> = (0..32)
            .map(|_| {
                let (client, next, address, key) =
                    (client.clone(), next.clone(), address.clone(), key.clone());
                tokio::spawn(async move {
                    while next.fetch_add(1, Ordering::Relaxed) < total {
                        let response = client
                            .post(format!("{address}/v1/videos/generations"))
                            .bearer_auth(&key)
                            .header("content-type", "application/json")
                            .body(CREATE_BODY)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
                    }
                })
            })
            .collect();
        for c in clients {
            c.await.unwrap();
        }
    });
    let created_in = started.elapsed();
    println!(
        "created {total} in {:.0?} ({:.0}/s); {} already upstream",
        created_in,
        total as f64 / created_in.as_secs_f64(),
        fake.tasks_created()
    );

    let mut peak_seen = 0.0f64;
    loop {
        let upstream = fake.tasks_created();
        let (rss, _) = memory_mib(pid);
        peak_seen = peak_seen.max(rss);
        if upstream >= total {
            break;
        }
        println!(
            "  {:>4.0} s: {upstream} upstream, {rss:.1} MiB resident",
            started.elapsed().as_secs_f64()
        );
        std::thread::sleep(Duration::from_secs(10));
    }
    let submitted_in = started.elapsed();
    println!(
        "all {total} in flight upstream after {:.0?} ({:.0} submissions/s overall)",
        submitted_in,
        total as f64 / submitted_in.as_secs_f64()
    );
    // A minute of polling with everything in flight.
    println!("steady minute begins");
    let steady_reads = fake.reads();
    for _ in 0..6 {
        std::thread::sleep(Duration::from_secs(10));
        peak_seen = peak_seen.max(memory_mib(pid).0);
    }
    let (rss, hwm) = memory_mib(pid);
    println!(
        "with {total} in flight: {rss:.1} MiB resident, {hwm:.1} MiB peak so far; \
         {:.0} status reads/s over the last minute",
        (fake.reads() - steady_reads) as f64 / 60.0
    );

    // The upstream finishes tasks one after another; every other callback is lost.
    runtime.block_on(fake.complete_over_time(finish_rate, 2));
    std::thread::sleep(Duration::from_secs(60));
    let window_end = SystemTime::now();
    // Every task finished in the window gets a full poll interval (and a little) to show.
    std::thread::sleep(Duration::from_millis(poll_interval_ms) + Duration::from_secs(15));
    peak_seen = peak_seen.max(memory_mib(pid).0);
    let finished: Vec<(String, SystemTime, bool)> = fake
        .finished()
        .into_iter()
        .filter(|(_, at, _)| *at <= window_end)
        .collect();
    let completed: HashMap<String, i64> = runtime.block_on(async {
        let url = format!("sqlite://{}?mode=ro", data.join("seedgate.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query_as::<_, (String, i64)>(
            "SELECT upstream_id, completed_at_ms FROM tasks WHERE state = 'succeeded'",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
    });
    let unix_ms = |at: SystemTime| {
        at.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    for called_back in [true, false] {
        let mut delays: Vec<i64> = Vec::new();
        let mut missing = 0;
        for (id, at, sent) in &finished {
            if *sent != called_back {
                continue;
            }
            match completed.get(id) {
                Some(done) => delays.push(done - unix_ms(*at)),
                None => missing += 1,
            }
        }
        delays.sort_unstable();
        let quantile = |q: f64| {
            delays
                .get(((delays.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(0)
        };
        println!(
            "{}: {} tasks finished upstream, {} completed here; success → completed p50 {} ms, \
             p99 {} ms, max {} ms{}",
            if called_back {
                "with a callback"
            } else {
                "callback lost, found by polling"
            },
            delays.len() + missing,
            delays.len(),
            quantile(0.5),
            quantile(0.99),
            delays.last().copied().unwrap_or(0),
            if missing > 0 {
                format!("; {missing} not completed within the interval")
            } else {
                String::new()
            },
        );
    }
    println!(
        "most status reads within one second: {} (budget {POLL_BUDGET}); {} reads in all",
        fake.most_reads_in_a_second(),
        fake.reads()
    );
    let (rss, hwm) = memory_mib(pid);
    let database: u64 = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("seedgate.db"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    println!(
        "with {total} in flight: {rss:.1} MiB resident now, {:.1} MiB peak (target < 1,024 MiB); \
         database {:.1} MiB on disk",
        hwm.max(peak_seen),
        database as f64 / 1_048_576.0
    );
    assert!(
        fake.tasks_created() == total,
        "the upstream holds exactly one task per create"
    );
    drop(server);
}
