//! API throughput and latency, measured by `wrk` (a tool we did not write) against the real
//! real router:
//!
//! - status polls (`GET /v1/tasks/{id}`) against a bare axum server answering the same bytes
//!   from memory, on the same runtime shape and the same machine;
//! - gateway latency at one connection (no queueing): poll and create, p50/p99, each request
//!   timed by the bench's own sequential client;
//! - durable task creations per second, each one committed with its reservation before the
//!   `200`, checked afterwards by counting the rows.
//!
//! - gateway overhead: an Ark client's create and poll through the gateway's Ark-compatible
//!   surface, served by the `ark` provider against the fake upstream of the API tests, against
//!   the same requests sent to that fake upstream directly.
//!
//! Each gateway row is measured on SQLite and on PostgreSQL (a scratch schema on
//! `SEEDGATE_BENCH_POSTGRES_URL`, by default the server the tests use) in the same run.
//!
//! `cargo bench -p seedgate --bench api` (needs `wrk`: `apt-get install wrk`).
//! `SEEDGATE_BENCH_SECONDS` sets each run's length (default 10).

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../tests/api/fake_ark.rs"]
mod fake_ark;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use axum::body::Bytes;
use axum::http::header;
use axum::routing::get;
use axum::Router;
use seedgate::config::{ChannelConfig, Config};
use seedgate::store::{KeyMode, KeySpec};
use seedgate::Application;
use tokio::runtime::Runtime;

const CREATE_BODY: &str = r#"{"model":"seedance-2.0-fast","operation":"text-to-video","prompt":"A lighthouse at dusk, waves rolling in.","resolution":"480p","duration":4}"#;

/// The same request in Ark's wire format, which the gateway and the fake upstream both take.
const ARK_CREATE_BODY: &str = r#"{"model":"doubao-seedance-2-0-fast-260128","content":[{"type":"text","text":"A lighthouse at dusk, waves rolling in."}],"ratio":"16:9","duration":4,"resolution":"480p","generate_audio":false,"watermark":false}"#;

const ARK_TASKS: &str = "/api/v3/contents/generations/tasks";

/// What one `wrk` run reports.
struct Run {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    non_2xx: u64,
}

fn server_runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `wrk` prints latencies as `412.00us`, `1.23ms` or `2.00s`.
fn parse_duration_ms(text: &str) -> f64 {
    let (number, unit) = text
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| text.split_at(i))
        .unwrap();
    let value: f64 = number.parse().unwrap();
    match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        other => panic!("unknown wrk unit {other}"),
    }
}

fn parse_wrk(output: &str) -> Run {
    let field = |prefix: &str| {
        output
            .lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
    };
    let requests = output
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    Run {
        requests_per_second: field("Requests/sec:").unwrap().parse().unwrap(),
        p50_ms: parse_duration_ms(&field("50%").unwrap()),
        p99_ms: parse_duration_ms(&field("99%").unwrap()),
        requests,
        non_2xx: field("Non-2xx or 3xx responses:")
            .map(|n| n.parse().unwrap())
            .unwrap_or(0),
    }
}

fn wrk(url: &str, connections: u32, seconds: u64, script: &Path, threads: u32) -> Run {
    let output = Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("cannot run wrk ({e}); install it: apt-get install wrk"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "wrk failed: {stdout}");
    parse_wrk(&stdout)
}

/// One client, one keep-alive connection, one request after another, each timed on its own:
/// the one-connection rows. `wrk`'s latency figures for POSTs at one connection do not add up
/// on this machine (a mean of 13.9 ms over 41,948 requests in an 8 s run), so latency at one
/// connection is measured here, on a thread and runtime of its own beside the servers'.
fn one_connection(url: &str, seconds: u64, key: &str, post: Option<&'static str>) -> Run {
    let (url, key) = (url.to_owned(), key.to_owned());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let mut latencies = Vec::new();
            let mut non_2xx = 0;
            let started = std::time::Instant::now();
            let until = started + std::time::Duration::from_secs(seconds);
            while std::time::Instant::now() < until {
                let request = match post {
                    Some(body) => client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body),
                    None => client.get(&url),
                };
                let sent = std::time::Instant::now();
                let response = request.bearer_auth(&key).send().await.unwrap();
                let ok = response.status().is_success();
                response.bytes().await.unwrap();
                latencies.push(sent.elapsed());
                non_2xx += u64::from(!ok);
            }
            let elapsed = started.elapsed().as_secs_f64();
            latencies.sort();
            let at = |share: f64| {
                latencies[((latencies.len() as f64 * share) as usize).min(latencies.len() - 1)]
                    .as_secs_f64()
                    * 1000.0
            };
            Run {
                requests_per_second: latencies.len() as f64 / elapsed,
                p50_ms: at(0.50),
                p99_ms: at(0.99),
                requests: latencies.len() as u64,
                non_2xx,
            }
        })
    })
    .join()
    .unwrap()
}

fn lua_script(dir: &Path, name: &str, key: &str, post: Option<&str>) -> std::path::PathBuf {
    let mut text = format!("wrk.headers[\"Authorization\"] = \"Bearer {key}\"\n");
    if let Some(body) = post {
        text.push_str("wrk.method = \"POST\"\n");
        text.push_str("wrk.headers[\"Content-Type\"] = \"application/json\"\n");
        text.push_str(&format!("wrk.body = [[{body}]]\n"));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The gateway on one backend: the real router and store, no workers (creates stay queued,
/// so the figures are the API's own), and a task to poll.
struct Gateway {
    runtime: Runtime,
    address: SocketAddr,
    key: String,
    account: seedgate::ids::AccountId,
    store: seedgate::store::Store,
    task_id: String,
    task_body: Bytes,
}

/// Creates a task by POSTing `body` to `url`; returns its id.
async fn create_task(client: &reqwest::Client, url: &str, key: &str, body: &'static str) -> String {
    let created: serde_json::Value = client
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["id"].as_str().unwrap().to_owned()
}

/// With `upstream`, the gateway's one channel is an `ark` channel there, its engine runs (every
/// create is submitted upstream and polled, as in production), and its key is a live one.
fn start_gateway(
    data_dir: &Path,
    database_url: Option<String>,
    key_cache_ms: u64,
    upstream: Option<&str>,
) -> Gateway {
    let mut config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.to_owned(),
        database_url,
        // Enough play money for every create of the run.
        dev_key_balance_usd: 100_000_000,
        ..Config::default()
    };
    config.limits.requests_per_second = 10_000_000;
    config.limits.burst = 10_000_000;
    config.limits.key_cache_ms = key_cache_ms;
    if let Some(base_url) = upstream {
        config.engine.max_concurrent_tasks_per_key = 1_000_000;
        config.channels.push(ChannelConfig {
            id: seedgate::ids::ChannelId::new("volc"),
            provider: "ark".into(),
            base_url: base_url.into(),
            api_key_env: fake_ark::FAKE_KEY_ENV.into(),
            models: [(
                "seedance-2.0-fast".to_owned(),
                "doubao-seedance-2-0-fast-260128".to_owned(),
            )]
            .into(),
            resolutions: vec![seedgate_contract::Resolution::P480],
            priority: 0,
            weight: 1,
            routing: Default::default(),
            operations: None,
            costs: Default::default(),
            max_concurrent_tasks: 1_000_000,
            timeout_seconds: 30,
            polls_per_second: 1_000_000,
            poll_batch: Some(100),
        });
    }
    let runtime = server_runtime();
    let (address, key, account, store) = runtime.block_on(async {
        let app = Application::build(config).await.unwrap();
        let addr = app.local_addr().unwrap();
        let store = app.store().clone();
        let (key, account) = match upstream {
            Some(_) => {
                let live = store
                    .create_key(&KeySpec::plain("bench", KeyMode::Live, 10_000_000_000_000))
                    .await
                    .unwrap();
                (live.secret, live.account.id)
            }
            None => {
                let dev = app.dev_key.as_ref().unwrap();
                (dev.secret.clone(), dev.account.id.clone())
            }
        };
        tokio::spawn(app.run(upstream.is_some(), std::future::pending()));
        (addr, key, account, store)
    });
    let client = reqwest::Client::new();
    let (task_id, task_body) = runtime.block_on(async {
        let url = format!("http://{address}/v1/videos/generations");
        let id = create_task(&client, &url, &key, CREATE_BODY).await;
        let body = client
            .get(format!("http://{address}/v1/tasks/{id}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        (id, body)
    });
    Gateway {
        runtime,
        address,
        key,
        account,
        store,
        task_id,
        task_body,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let seconds: u64 = std::env::var("SEEDGATE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let postgres_url = std::env::var("SEEDGATE_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| seedgate::store::postgres::test_server_url());
    // The fake upstream on a runtime of its own, like the bare server below.
    let upstream_runtime = server_runtime();
    let fake = upstream_runtime.block_on(fake_ark::FakeArk::start());
    // Tasks stay queued upstream for the whole run: the engine keeps polling them.
    fake.set_timing(
        std::time::Duration::from_secs(3600),
        std::time::Duration::from_secs(3600),
    );
    let postgres_schema = server_runtime()
        .block_on(seedgate::store::postgres::create_scratch_schema(
            &postgres_url,
        ))
        .expect("a PostgreSQL server to measure beside SQLite (SEEDGATE_BENCH_POSTGRES_URL)");
    let key_cache_ms = Config::default().limits.key_cache_ms;
    let backends = [
        (
            "SQLite",
            start_gateway(&dir.path().join("sqlite"), None, key_cache_ms, None),
        ),
        (
            "PostgreSQL",
            start_gateway(
                &dir.path().join("postgres"),
                Some(postgres_schema),
                key_cache_ms,
                None,
            ),
        ),
    ];
    // The same SQLite gateway reading the key on every request: what the key cache saves.
    let uncached = start_gateway(&dir.path().join("sqlite-uncached"), None, 0, None);

    // The baseline: bare axum on the same runtime shape, answering the same task object from
    // memory with no key check and no database.
    let bare = server_runtime();
    let task_body = backends[0].1.task_body.clone();
    let bare_addr = bare.block_on(async {
        let router = Router::new().route(
            "/v1/tasks/{id}",
            get(move || {
                let body = task_body.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    });

    println!(
        "task object: {} bytes; each run {seconds} s; wrk on the same 2 cores",
        backends[0].1.task_body.len()
    );
    println!(
        "| backend | run | connections | req/s | p50 | p99 | requests | non-2xx |\n|---|---|---|---|---|---|---|---|"
    );
    let row = |backend: &str, name: &str, connections: u32, run: &Run| {
        println!(
            "| {backend} | {name} | {connections} | {:.0} | {:.3} ms | {:.3} ms | {} | {} |",
            run.requests_per_second, run.p50_ms, run.p99_ms, run.requests, run.non_2xx
        );
    };
    let bare_script = lua_script(dir.path(), "bare.lua", "none", None);
    let bare_run = wrk(
        &format!("http://{bare_addr}/v1/tasks/{}", backends[0].1.task_id),
        64,
        seconds,
        &bare_script,
        2,
    );
    row("none", "bare axum, same body", 64, &bare_run);
    let uncached_poll = wrk(
        &format!("http://{}/v1/tasks/{}", uncached.address, uncached.task_id),
        64,
        seconds,
        &lua_script(dir.path(), "uncached.lua", &uncached.key, None),
        2,
    );
    row("SQLite", "status poll, no key cache", 64, &uncached_poll);

    let mut summary = Vec::new();
    for (name, gateway) in &backends {
        let poll = lua_script(dir.path(), "poll.lua", &gateway.key, None);
        let create = lua_script(dir.path(), "create.lua", &gateway.key, Some(CREATE_BODY));
        let poll_url = format!("http://{}/v1/tasks/{}", gateway.address, gateway.task_id);
        let create_url = format!("http://{}/v1/videos/generations", gateway.address);
        let poll_run = wrk(&poll_url, 64, seconds, &poll, 2);
        row(name, "status poll", 64, &poll_run);
        let poll_one = one_connection(&poll_url, seconds, &gateway.key, None);
        row(name, "status poll", 1, &poll_one);
        let create_one = one_connection(&create_url, seconds, &gateway.key, Some(CREATE_BODY));
        row(name, "create (durable)", 1, &create_one);
        let create_run = wrk(&create_url, 32, seconds, &create, 2);
        row(name, "create (durable)", 32, &create_run);

        let stored: i64 = gateway
            .runtime
            .block_on(gateway.store.count_tasks(&gateway.account))
            .unwrap();
        let accepted =
            create_one.requests - create_one.non_2xx + create_run.requests - create_run.non_2xx + 1;
        assert!(
            stored as u64 >= accepted,
            "{name}: every answered create must be stored"
        );
        summary.push(format!(
            "{name}: status polls {:.0} % of bare axum (target ≥ 60 %); one-connection p99 poll \
             {:.3} ms, create {:.3} ms (target < 1 ms); durable creations {:.0}/s at 32 \
             connections (rows stored {stored}, creates answered {accepted})",
            100.0 * poll_run.requests_per_second / bare_run.requests_per_second,
            poll_one.p99_ms,
            create_one.p99_ms,
            create_run.requests_per_second
        ));
    }
    summary.push(gateway_overhead(dir.path(), &fake, seconds, &row));

    println!();
    for line in summary {
        println!("{line}");
    }
}

/// An Ark client's create and poll at one connection, sent to the fake upstream directly and
/// through the gateway (SQLite, `ark` channel to the same fake upstream, engine running): what
/// the gateway adds to each.
fn gateway_overhead(
    dir: &Path,
    fake: &fake_ark::FakeArk,
    seconds: u64,
    row: &dyn Fn(&str, &str, u32, &Run),
) -> String {
    let gateway = start_gateway(
        &dir.join("sqlite-ark"),
        None,
        Config::default().limits.key_cache_ms,
        Some(&fake.base_url),
    );
    let client = reqwest::Client::new();
    let root = fake.base_url.trim_end_matches("/api/v3").to_owned();
    let gateway_root = format!("http://{}", gateway.address);
    let (direct_task, gateway_task) = gateway.runtime.block_on(async {
        (
            create_task(
                &client,
                &format!("{root}{ARK_TASKS}"),
                fake_ark::FAKE_KEY,
                ARK_CREATE_BODY,
            )
            .await,
            create_task(
                &client,
                &format!("{gateway_root}{ARK_TASKS}"),
                &gateway.key,
                ARK_CREATE_BODY,
            )
            .await,
        )
    });
    let runs = [
        (
            "fake upstream directly",
            "Ark create",
            one_connection(
                &format!("{root}{ARK_TASKS}"),
                seconds,
                fake_ark::FAKE_KEY,
                Some(ARK_CREATE_BODY),
            ),
        ),
        (
            "gateway, ark channel",
            "Ark create",
            one_connection(
                &format!("{gateway_root}{ARK_TASKS}"),
                seconds,
                &gateway.key,
                Some(ARK_CREATE_BODY),
            ),
        ),
        (
            "fake upstream directly",
            "Ark poll",
            one_connection(
                &format!("{root}{ARK_TASKS}/{direct_task}"),
                seconds,
                fake_ark::FAKE_KEY,
                None,
            ),
        ),
        (
            "gateway, ark channel",
            "Ark poll",
            one_connection(
                &format!("{gateway_root}{ARK_TASKS}/{gateway_task}"),
                seconds,
                &gateway.key,
                None,
            ),
        ),
    ];
    for (backend, name, run) in &runs {
        assert_eq!(run.non_2xx, 0, "{backend}: {name} must succeed");
        row(backend, name, 1, run);
    }
    format!(
        "Gateway overhead at one connection (target: added p99 < 1 ms): create {:.3} ms, \
         poll {:.3} ms",
        runs[1].2.p99_ms - runs[0].2.p99_ms,
        runs[3].2.p99_ms - runs[2].2.p99_ms
    )
}
