//! Soak: steady mixed load on the real binary (`seedgate serve`, default logging), on SQLite
//! and on PostgreSQL at once, each in its own process.
//!
//! At a fixed rate per backend: creates (one in ten rendered by the sandbox, the rest by the
//! `ark` provider on the fake upstream of the API tests), every tenth repeated with its
//! idempotency key, every twentieth cancelled, every task polled each second until it ends,
//! and every task with a webhook to a receiver in this process. The engine is set to keep up
//! with the load (no per-key cap, polls every 1–2 s), so the tasks open stay level rather than
//! queueing without end. The fake upstream injects a fault every two seconds (429 with
//! `Retry-After`, 500, a slow answer, garbage, a reset) and loses every 25th create's answer
//! after making the task.
//!
//! Every interval it samples each server: resident memory (read every second; the interval's
//! median, since a render in progress holds its frames for a moment, and its peak), open
//! descriptors, the database's size and the p99 of the requests sent in that interval. At the
//! end it waits for every task to end and its webhook to arrive, checks every balance against
//! its ledger, and prints one table per backend with the verdicts: median memory within ±10 %
//! of the first interval after warm-up, p99 drift under 20 %, nothing lost.
//!
//! The hour is `cargo bench -p seedgate --bench soak` (`benches/soak.rs`); the API tests run a
//! three-minute form sampled every 30 s. `SEEDGATE_SOAK_MINUTES`,
//! `SEEDGATE_SOAK_INTERVAL_SECONDS` and `SEEDGATE_SOAK_RATE` (creates a second per backend,
//! default 4) change them, and `SEEDGATE_SOAK_BACKEND` (`sqlite` or `postgres`) loads one
//! backend alone; PostgreSQL is a scratch schema on `SEEDGATE_BENCH_POSTGRES_URL` (by
//! default the server the tests use).

// The soak's tables are its report, printed as it runs.
#![allow(clippy::print_stdout)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fake_ark::{Endpoint, FakeArk, Fault, FAKE_KEY_ENV};
use crate::served::Served;
use axum::routing::post;
use axum::Router;
use seedgate::store::{KeyMode, KeySpec};
use serde_json::{json, Value};

pub struct Settings {
    length: Duration,
    interval: Duration,
    creates_per_second: u32,
    backends: Backends,
}

/// Which backends the soak loads: both at once by default, or one alone, as a user runs it
/// (the two gateways and PostgreSQL otherwise share the machine's cores, and each one's tail
/// carries the others' work).
#[derive(Clone, Copy, PartialEq)]
enum Backends {
    Both,
    Sqlite,
    Postgres,
}

impl Settings {
    /// The hour (sampled every 5 min), or the three-minute form (every 30 s); either changed
    /// by the environment.
    pub fn from_env(hour: bool) -> Self {
        let (minutes, interval) = if hour { (60, 300) } else { (3, 30) };
        let read = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(default)
        };
        Settings {
            length: Duration::from_secs(read("SEEDGATE_SOAK_MINUTES", minutes) * 60),
            interval: Duration::from_secs(read("SEEDGATE_SOAK_INTERVAL_SECONDS", interval)),
            creates_per_second: read("SEEDGATE_SOAK_RATE", 4) as u32,
            backends: match std::env::var("SEEDGATE_SOAK_BACKEND").as_deref() {
                Ok("sqlite") => Backends::Sqlite,
                Ok("postgres") => Backends::Postgres,
                Ok(other) if !other.is_empty() => {
                    panic!("SEEDGATE_SOAK_BACKEND is sqlite or postgres (or unset for both), not {other}")
                }
                _ => Backends::Both,
            },
        }
    }
}

/// The task ids every webhook delivered names (any string in its body).
#[derive(Clone, Default)]
struct Webhooks(Arc<Mutex<HashSet<String>>>);

impl Webhooks {
    async fn serve(&self) -> String {
        let seen = self.clone();
        let router = Router::new().route(
            "/hook",
            post(move |body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    if let Ok(event) = serde_json::from_slice::<Value>(&body) {
                        let mut seen = seen.0.lock().unwrap();
                        strings_in(&event, &mut |s| {
                            seen.insert(s.to_owned());
                        });
                    }
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{address}/hook")
    }

    fn delivered(&self, id: &str) -> bool {
        self.0.lock().unwrap().contains(id)
    }
}

fn strings_in(value: &Value, found: &mut impl FnMut(&str)) {
    match value {
        Value::String(s) => found(s),
        Value::Array(items) => items.iter().for_each(|v| strings_in(v, found)),
        Value::Object(fields) => fields.values().for_each(|v| strings_in(v, found)),
        _ => {}
    }
}

/// One backend's `seedgate serve`, on the fake upstream.
struct Gateway {
    name: &'static str,
    served: Served,
}

impl Gateway {
    fn start(name: &'static str, data_dir: &Path, database_url: String, fake: &FakeArk) -> Self {
        let config = format!(
            "[engine]\nmax_concurrent_tasks_per_key = 1000\nfirst_poll_ms = 1000\n\
             max_poll_interval_ms = 2000\nexpected_ms_per_output_second = 0\n\
             [limits]\nrequests_per_second = 100000\nburst = 100000\n\
             [fetch]\nallow_private = [\"127.0.0.1/32\"]\n\n\
             [[channels]]\nid = \"volc\"\nprovider = \"ark\"\nbase_url = \"{}\"\n\
             api_key_env = \"{FAKE_KEY_ENV}\"\nresolutions = [\"480p\", \"720p\"]\n\
             max_concurrent_tasks = 100000\ntimeout_seconds = 2\n\
             models = {{ \"seedance-2.0-fast\" = \"doubao-seedance-2-0-fast-260128\" }}\n",
            fake.base_url
        );
        Gateway {
            name,
            served: Served::start(data_dir, &database_url, &config),
        }
    }

    async fn database_bytes(&self) -> u64 {
        let served = &self.served;
        if served.database_url.starts_with("sqlite:") {
            return ["seedgate.db", "seedgate.db-wal", "seedgate.db-shm"]
                .iter()
                .filter_map(|file| std::fs::metadata(served.data_dir.join(file)).ok())
                .map(|m| m.len())
                .sum();
        }
        let pool = sqlx::PgPool::connect(&served.database_url).await.unwrap();
        let size: i64 = sqlx::query_scalar(
            "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'm')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        size as u64
    }
}

/// What the load saw on one gateway.
#[derive(Default)]
struct Load {
    /// Latencies (µs) of the requests sent since the last sample, by kind.
    latencies: Vec<(Kind, u64)>,
    accepted: Vec<(String, String)>,
    /// Tasks their clients saw end.
    ended: usize,
    requests: u64,
    /// Answers other than the expected ones (a 5xx, a create refused).
    unexpected: Vec<String>,
}

impl Sample {
    /// The sample as a row of the report's table.
    fn row(&self) -> String {
        format!(
            "| {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            self.minute,
            self.resident as f64 / 1048576.0,
            self.resident_peak as f64 / 1048576.0,
            self.descriptors,
            self.database as f64 / 1048576.0,
            self.p99_ms,
            self.create_p99_ms,
            self.poll_p99_ms,
            self.requests,
            self.accepted,
            self.open
        )
    }
}

/// One sample of a gateway.
struct Sample {
    minute: f64,
    /// The median of the interval's once-a-second readings, and their peak.
    resident: u64,
    resident_peak: u64,
    descriptors: usize,
    database: u64,
    p99_ms: f64,
    /// The same of creates (and their repeats) alone, and of polls alone.
    create_p99_ms: f64,
    poll_p99_ms: f64,
    requests: u64,
    accepted: usize,
    /// Accepted and not yet seen to end.
    open: usize,
}

/// What a client's request was, for the p99 of each.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Create,
    Poll,
    Cancel,
}

async fn timed(
    load: &Mutex<Load>,
    kind: Kind,
    request: reqwest::RequestBuilder,
) -> Result<(u16, Value), reqwest::Error> {
    let sent = Instant::now();
    let response = request.send().await?;
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    let mut load = load.lock().unwrap();
    load.latencies
        .push((kind, sent.elapsed().as_micros() as u64));
    load.requests += 1;
    if status >= 500 {
        load.unexpected.push(format!("{status}: {body}"));
    }
    Ok((status, body))
}

/// The nth client of a gateway: create, maybe repeat and cancel, then poll until it ends.
async fn one_client(
    client: reqwest::Client,
    address: Arc<str>,
    keys: Arc<[String; 2]>,
    hook: Arc<str>,
    n: u64,
    load: Arc<Mutex<Load>>,
) {
    let (who, key) = if n.is_multiple_of(10) {
        ("sandbox", &keys[0])
    } else {
        ("live", &keys[1])
    };
    let body = json!({"model": "seedance-2.0-fast", "operation": "text-to-video",
        "prompt": format!("soak {n}"), "resolution": "480p", "duration": 4,
        "generate_audio": false, "callback_url": &*hook});
    let create = || {
        client
            .post(format!("{address}/v1/videos/generations"))
            .bearer_auth(key)
            .header("idempotency-key", format!("soak-{n}"))
            .json(&body)
    };
    let Ok((200, task)) = timed(&load, Kind::Create, create()).await else {
        load.lock()
            .unwrap()
            .unexpected
            .push(format!("create {n} was not accepted"));
        return;
    };
    let id = task["id"].as_str().unwrap().to_owned();
    load.lock().unwrap().accepted.push((who.into(), id.clone()));
    if n % 10 == 3 {
        let repeat = timed(&load, Kind::Create, create()).await;
        if !matches!(&repeat, Ok((200, again)) if again["id"] == task["id"]) {
            load.lock()
                .unwrap()
                .unexpected
                .push(format!("repeat of {id}: {repeat:?}"));
        }
    }
    let path = format!("{address}/v1/tasks/{id}");
    if n % 20 == 5 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = timed(&load, Kind::Cancel, client.delete(&path).bearer_auth(key)).await;
    }
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok((200, now)) = timed(&load, Kind::Poll, client.get(&path).bearer_auth(key)).await {
            if matches!(now["status"].as_str(), Some("completed" | "failed")) {
                load.lock().unwrap().ended += 1;
                return;
            }
        }
    }
}

/// The p99 of the latencies of `kind` (of all when `None`).
fn p99_ms(latencies: &[(Kind, u64)], kind: Option<Kind>) -> f64 {
    let mut latencies: Vec<u64> = latencies
        .iter()
        .filter(|(k, _)| kind.is_none_or(|kind| *k == kind))
        .map(|(_, micros)| *micros)
        .collect();
    if latencies.is_empty() {
        return 0.0;
    }
    latencies.sort_unstable();
    let at = (latencies.len() * 99).div_ceil(100).max(1) - 1;
    latencies[at] as f64 / 1000.0
}

/// Runs the load on one gateway for the soak's length, sampling it every interval, then waits
/// for every task to end; returns the samples and the audit's findings.
async fn soak(gateway: Gateway, settings: &Settings, hook: Arc<str>) -> (Vec<Sample>, Vec<String>) {
    let store = seedgate::store::connect(&gateway.served.database_url)
        .await
        .unwrap();
    let sandbox = store
        .create_key(&KeySpec::plain("sandbox", KeyMode::Test, 1_000_000_000_000))
        .await
        .unwrap();
    let live = store
        .create_key(&KeySpec::plain("live", KeyMode::Live, 1_000_000_000_000))
        .await
        .unwrap();
    let keys = Arc::new([sandbox.secret, live.secret]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let address: Arc<str> = gateway.served.address.clone().into();
    let load = Arc::new(Mutex::new(Load::default()));

    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / settings.creates_per_second);
    let mut next_sample = settings.interval;
    let mut samples = Vec::new();
    let mut resident = Vec::new();
    let mut resident_read = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < settings.length {
        tick.tick().await;
        if resident_read.elapsed() >= Duration::from_secs(1) {
            resident_read = Instant::now();
            resident.push(gateway.served.resident_bytes());
        }
        clients.spawn(one_client(
            client.clone(),
            address.clone(),
            keys.clone(),
            hook.clone(),
            n,
            load.clone(),
        ));
        n += 1;
        while let Some(done) = clients.try_join_next() {
            done.unwrap();
        }
        if started.elapsed() >= next_sample {
            next_sample += settings.interval;
            let (latencies, requests, accepted, ended) = {
                let mut load = load.lock().unwrap();
                let latencies = std::mem::take(&mut load.latencies);
                (latencies, load.requests, load.accepted.len(), load.ended)
            };
            resident.sort_unstable();
            let sample = Sample {
                minute: started.elapsed().as_secs_f64() / 60.0,
                resident: resident
                    .get(resident.len() / 2)
                    .copied()
                    .unwrap_or_default(),
                resident_peak: resident.last().copied().unwrap_or_default(),
                descriptors: gateway.served.open_descriptors(),
                database: gateway.database_bytes().await,
                p99_ms: p99_ms(&latencies, None),
                create_p99_ms: p99_ms(&latencies, Some(Kind::Create)),
                poll_p99_ms: p99_ms(&latencies, Some(Kind::Poll)),
                requests,
                accepted,
                open: accepted - ended,
            };
            resident.clear();
            println!("{}: {}", gateway.name, sample.row());
            samples.push(sample);
        }
    }

    // Every client polls its task until it ends: a client that never returns is a lost task.
    let mut findings = Vec::new();
    let drained = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(done) = clients.join_next().await {
            done.unwrap();
        }
    })
    .await;
    if drained.is_err() {
        findings.push(format!("{} tasks never ended", clients.len()));
    }
    let load = std::mem::take(&mut *load.lock().unwrap());
    findings.extend(load.unexpected.iter().take(5).cloned());
    // Webhooks go out after the task ends, retried with backoff: give them a minute.
    let hooks = Webhooks::clone(&WEBHOOKS);
    let deadline = Instant::now() + Duration::from_secs(60);
    let missing = loop {
        let missing = load
            .accepted
            .iter()
            .filter(|(_, id)| !hooks.delivered(id))
            .count();
        if missing == 0 || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    if missing > 0 {
        findings.push(format!("{missing} webhooks never arrived"));
    }
    drop(gateway);
    for account in store.list_keys().await.unwrap() {
        let ledger = store.ledger_sum(&account.id).await.unwrap();
        if ledger != account.balance_usd_micros {
            findings.push(format!(
                "{}: balance {} vs ledger {ledger}",
                account.name, account.balance_usd_micros
            ));
        }
    }
    (samples, findings)
}

static WEBHOOKS: std::sync::LazyLock<Webhooks> = std::sync::LazyLock::new(Webhooks::default);

/// The verdicts on a backend's samples: the first is warm-up.
fn verdicts(samples: &[Sample]) -> (f64, f64) {
    let Some((baseline, later)) = samples.get(1..).and_then(|s| s.split_first()) else {
        return (0.0, 0.0);
    };
    let rss_spread = later
        .iter()
        .map(|s| (s.resident as f64 / baseline.resident as f64 - 1.0).abs())
        .fold(0.0, f64::max);
    let p99_drift = later
        .last()
        .map_or(0.0, |last| (last.p99_ms / baseline.p99_ms - 1.0).max(0.0));
    (rss_spread * 100.0, p99_drift * 100.0)
}

/// Runs the soak and prints its tables; true when something was lost.
pub async fn run(settings: Settings) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let postgres_url = std::env::var("SEEDGATE_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| seedgate::store::postgres::test_server_url());
    {
        let fake = Arc::new(FakeArk::start().await);
        fake.set_timing(Duration::from_secs(1), Duration::from_secs(2));
        fake.lose_answer_every(25);
        let faults = {
            let fake = fake.clone();
            tokio::spawn(async move {
                let faults = [
                    (Endpoint::Create, Fault::Status(429, Some(1))),
                    (Endpoint::Get, Fault::Status(500, None)),
                    (Endpoint::Create, Fault::Slow(Duration::from_millis(1500))),
                    (Endpoint::Get, Fault::Garbage),
                    (Endpoint::Create, Fault::Reset),
                ];
                for n in 0.. {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let (endpoint, fault) = faults[n % faults.len()].clone();
                    fake.fault(endpoint, fault);
                }
            })
        };
        let hook: Arc<str> = WEBHOOKS.serve().await.into();
        let mut gateways = Vec::new();
        if settings.backends != Backends::Postgres {
            gateways.push(Gateway::start(
                "SQLite",
                &dir.path().join("sqlite"),
                format!(
                    "sqlite://{}",
                    dir.path().join("sqlite/seedgate.db").display()
                ),
                &fake,
            ));
        }
        if settings.backends != Backends::Sqlite {
            let schema = seedgate::store::postgres::create_scratch_schema(&postgres_url)
                .await
                .expect("a PostgreSQL server (SEEDGATE_BENCH_POSTGRES_URL)");
            gateways.push(Gateway::start(
                "PostgreSQL",
                &dir.path().join("postgres"),
                schema,
                &fake,
            ));
        }
        let names: Vec<&str> = gateways.iter().map(|g| g.name).collect();
        let results = futures_util::future::join_all(
            gateways
                .into_iter()
                .map(|gateway| soak(gateway, &settings, hook.clone())),
        )
        .await;
        faults.abort();

        let mut failed = false;
        println!(
            "\nsoak: {} min at {} creates/s per backend, sampled every {} s (`{}SEEDGATE_SOAK_MINUTES={} SEEDGATE_SOAK_INTERVAL_SECONDS={} cargo bench -p seedgate --bench soak`)",
            settings.length.as_secs() / 60,
            settings.creates_per_second,
            settings.interval.as_secs(),
            match settings.backends {
                Backends::Both => "",
                Backends::Sqlite => "SEEDGATE_SOAK_BACKEND=sqlite ",
                Backends::Postgres => "SEEDGATE_SOAK_BACKEND=postgres ",
            },
            settings.length.as_secs() / 60,
            settings.interval.as_secs(),
        );
        for (name, (samples, findings)) in names.iter().zip(results) {
            println!("\n{name}\n\n| minute | RSS MiB, median | RSS MiB, peak | open fds | database MiB | p99 ms | creates' p99 ms | polls' p99 ms | requests | tasks | open |\n|---|---|---|---|---|---|---|---|---|---|---|");
            for s in &samples {
                println!("{}", s.row());
            }
            let (rss_spread, p99_drift) = verdicts(&samples);
            println!(
                "\n{name}: median RSS within ±{rss_spread:.1} % of the first interval after warm-up (goal ±10 %), \
                 p99 drift {p99_drift:.1} % (goal < 20 %), {}",
                if findings.is_empty() {
                    "0 tasks lost, every webhook delivered, every balance equal to its ledger".to_owned()
                } else {
                    format!("FAILED: {}", findings.join("; "))
                }
            );
            failed |= !findings.is_empty();
        }
        failed
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_minutes_of_steady_mixed_load_lose_nothing_on_either_backend() {
    let lost = run(Settings::from_env(false)).await;
    assert!(
        !lost,
        "the soak lost a task, a webhook or money (its table says which)"
    );
}
