//! API throughput and latency of the shipped binary, measured from outside.
//!
//! `seedgate serve` is started as users start it (its own process, default logging, written to
//! a file), on SQLite and on PostgreSQL, beside a bare axum server in a process of its own (this
//! bench binary again, `bare-server`) that answers the same task object and the same `/healthz`
//! from memory. `wrk` (a tool we did not write) runs against each in alternating rounds, so
//! every ratio compares runs made minutes apart on the same machine:
//!
//! - status polls (`GET /v1/tasks/{id}`) and `/healthz` at 64 connections;
//! - creates at one connection, each timed by the bench's own sequential client (`wrk`'s
//!   one-connection POST latencies do not add up here), and at 32 connections, each one
//!   committed with its reservation before its `200` (counted in the database afterwards);
//!   those servers run no engine workers (`engine.workers = 0`: the API alone);
//! - gateway overhead: an Ark client's create and poll through the gateway's Ark-compatible
//!   surface, served by the `ark` provider against the fake upstream of the API tests (engine
//!   on), against the same requests sent to that fake upstream directly; creates both one
//!   after another and paced at a fixed rate, each timed from when it was due.
//!
//! Each run also reads the measured server's CPU time from `/proc` and reports it per request,
//! in its own code and in the kernel's: `wrk` shares the cores, so a server's requests a second
//! follow what each of its requests costs in all.
//!
//! `cargo bench -p seedgate --bench api` (needs `wrk`: `apt-get install wrk`).
//! `SEEDGATE_BENCH_SECONDS` sets each run's length (default 8), `SEEDGATE_BENCH_ROUNDS` the
//! rounds (default 3); PostgreSQL is a scratch schema on `SEEDGATE_BENCH_POSTGRES_URL` (by
//! default the server the tests use). `SEEDGATE_BENCH_PROFILE=<dir>` adds, after the rounds,
//! one poll run, one `/healthz` run and one run of creates at one connection against the
//! SQLite server, and one Ark create run through the `ark` channel, each with `perf record`
//! attached to the server (needs `linux-perf`), and prints each profile's heaviest functions;
//! the profiles stay in `<dir>` for `perf report`. `SEEDGATE_BENCH_ONLY=ark` runs the gateway
//! overhead rounds alone.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
#[path = "../tests/api/fake_ark.rs"]
mod fake_ark;
#[allow(dead_code)]
#[path = "../tests/api/served.rs"]
mod served;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::header;
use axum::routing::get;
use axum::Router;
use seedgate::store::{KeyMode, KeySpec};
use served::Served;

const CREATE_BODY: &str = r#"{"model":"seedance-2.0-fast","operation":"text-to-video","prompt":"A lighthouse at dusk, waves rolling in.","resolution":"480p","duration":4}"#;

/// The same request in Ark's wire format, which the gateway and the fake upstream both take.
const ARK_CREATE_BODY: &str = r#"{"model":"doubao-seedance-2-0-fast-260128","content":[{"type":"text","text":"A lighthouse at dusk, waves rolling in."}],"ratio":"16:9","duration":4,"resolution":"480p","generate_audio":false,"watermark":false}"#;

const RUNS_TABLE_HEAD: &str = "| round | server | measure | connections | req/s | p50 | p99 | requests | non-2xx | server CPU µs/request, user / kernel |\n|---|---|---|---|---|---|---|---|---|---|";

/// The paced Ark creates' rate: well below what one connection can send through the gateway
/// with the engine submitting each one (about 2,000 a second), so that run tells what the
/// gateway adds to a create rather than how creates queue on two busy cores.
const PACED_CREATES_PER_SECOND: u32 = 200;

const ARK_TASKS: &str = "/api/v3/contents/generations/tasks";

/// Limits out of the benchmark's way (the limiter still runs), and the API alone.
const API_ONLY: &str = "[engine]\nworkers = 0\n\
                        [limits]\nrequests_per_second = 100000000\nburst = 100000000\n";

/// What one run reports.
#[derive(Clone, Copy)]
struct Run {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    non_2xx: u64,
    /// The measured server's CPU time per request, in its own code and in the kernel's
    /// (sockets, scheduling), from `/proc/<pid>/stat`; zero where not read.
    user_us: f64,
    kernel_us: f64,
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
        user_us: 0.0,
        kernel_us: 0.0,
        requests,
        non_2xx: field("Non-2xx or 3xx responses:")
            .map(|n| n.parse().unwrap())
            .unwrap_or(0),
    }
}

fn wrk(url: &str, connections: u32, seconds: u64, script: &Path) -> Run {
    let output = Command::new("wrk")
        .arg("-t2")
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

fn lua_script(dir: &Path, name: &str, key: &str, post: Option<&str>) -> PathBuf {
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

/// One client, one keep-alive connection, one request after another, each timed on its own.
fn one_connection(url: &str, seconds: u64, key: &str, post: Option<&'static str>) -> Run {
    paced_connection(url, seconds, key, post, None)
}

/// As [`one_connection`], with the requests sent at `per_second` when given: the n-th is due
/// n/`per_second` after the start, and one still waiting on a slow one before it when due is
/// timed from then, so it counts that wait too.
fn paced_connection(
    url: &str,
    seconds: u64,
    key: &str,
    post: Option<&'static str>,
    per_second: Option<u32>,
) -> Run {
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
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(seconds) {
            let request = match post {
                Some(body) => client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body),
                None => client.get(url),
            };
            // The timer wakes up to a millisecond late, which is not the server's: a request
            // sent on time is timed from its sending, a late one from when it was due.
            let sent = match per_second {
                Some(rate) => {
                    let due =
                        started + Duration::from_secs_f64(latencies.len() as f64 / f64::from(rate));
                    if Instant::now() < due {
                        tokio::time::sleep_until(due.into()).await;
                        Instant::now()
                    } else {
                        due
                    }
                }
                None => Instant::now(),
            };
            let response = request.bearer_auth(key).send().await.unwrap();
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
            user_us: 0.0,
            kernel_us: 0.0,
        }
    })
}

/// Process `pid`'s CPU time so far, user and kernel, in microseconds.
fn cpu_us(pid: u32) -> (f64, f64) {
    static TICK_US: std::sync::LazyLock<f64> = std::sync::LazyLock::new(|| {
        let output = Command::new("getconf").arg("CLK_TCK").output().unwrap();
        let per_second: f64 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap();
        1e6 / per_second
    });
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields 14 and 15, counted after the command name, which may hold spaces.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |n: usize| fields[n - 3].parse::<f64>().unwrap();
    (ticks(14) * *TICK_US, ticks(15) * *TICK_US)
}

/// `measure`, with the CPU time server process `pid` spent per request during it.
fn with_cpu(pid: u32, measure: impl FnOnce() -> Run) -> Run {
    let (user_before, kernel_before) = cpu_us(pid);
    let mut run = measure();
    let (user_after, kernel_after) = cpu_us(pid);
    run.user_us = (user_after - user_before) / run.requests as f64;
    run.kernel_us = (kernel_after - kernel_before) / run.requests as f64;
    run
}

/// A run of requests, to be made once.
type MeasuredRun<'a> = Box<dyn FnOnce() -> Run + 'a>;

/// Runs `measure` with `perf record` sampling process `pid` on CPU time (these virtual
/// machines have no hardware counters), into `file`.
fn profiled(pid: u32, file: &Path, measure: impl FnOnce() -> Run) -> Run {
    let perf = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", "1999", "-g", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run perf ({e}); install it: apt-get install linux-perf")
        });
    std::thread::sleep(Duration::from_millis(500));
    let run = measure();
    // perf writes its file out when interrupted.
    let interrupted = Command::new("kill")
        .args(["-INT", &perf.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = perf.wait_with_output().unwrap().status;
    assert!(file.exists(), "perf recorded nothing ({status})");
    run
}

/// A profile's functions by their own share of the samples, the heaviest first.
fn top_functions(file: &Path) -> String {
    let output = Command::new("perf")
        .args([
            "report",
            "--no-children",
            "--stdio",
            "-g",
            "none",
            "--percent-limit",
            "0.7",
        ])
        .args(["--sort", "overhead,dso,sym", "-i"])
        .arg(file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| format!("{}\n", line.trim_end()))
        .collect()
}

/// Runs `future` on a runtime of its own (the bench's main thread has none).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// The bare server: answers `body` for any task and `{"status":"ok"}` for `/healthz`, on a
/// port it prints, until killed. Runs as `<this bench> bare-server <body file> <listener>`:
/// `axum` serves with axum's own `serve`, `gateway` with the gateway's listener (its
/// request-head timer and `TCP_NODELAY`), which tells the listener's share of the gap apart.
fn bare_server(body_file: &str, listener_kind: &str) {
    let body = axum::body::Bytes::from(std::fs::read(body_file).unwrap());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let router = Router::new()
            .route(
                "/v1/tasks/{id}",
                get(move || {
                    let body = body.clone();
                    async move { ([(header::CONTENT_TYPE, "application/json")], body) }
                }),
            )
            .route(
                "/healthz",
                get(|| async {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        r#"{"status":"ok"}"#,
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap().port());
        if listener_kind == "gateway" {
            let head_timeout = Duration::from_secs(10);
            seedgate::http_server::serve(listener, router, head_timeout, std::future::pending())
                .await
                .unwrap();
        } else {
            axum::serve(listener, router).await.unwrap();
        }
    });
}

/// The bare server's process, killed when dropped.
struct Bare {
    child: Child,
    address: String,
}

impl Drop for Bare {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bare {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn start(body_file: &Path, listener_kind: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("bare-server")
            .arg(body_file)
            .arg(listener_kind)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut port = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut port)
            .unwrap();
        Bare {
            child,
            address: format!("http://127.0.0.1:{}", port.trim()),
        }
    }
}

/// A gateway measured: its process, a key with money for every create, a task to poll.
struct Gateway {
    name: &'static str,
    served: Served,
    key: String,
    task_id: String,
}

impl Gateway {
    /// A key made in the database before the server starts (as the operator CLI does).
    fn start(
        name: &'static str,
        data_dir: &Path,
        database_url: &str,
        config: &str,
        mode: KeyMode,
    ) -> Self {
        std::fs::create_dir_all(data_dir).unwrap();
        let key = block_on(async {
            let store = seedgate::store::connect(database_url).await.unwrap();
            store
                .create_key(&KeySpec::plain("bench", mode, 10_000_000_000_000))
                .await
                .unwrap()
                .secret
        });
        let served = Served::start(data_dir, database_url, config);
        let task_id = create_task(
            &format!("{}/v1/videos/generations", served.address),
            &key,
            CREATE_BODY,
        );
        Gateway {
            name,
            served,
            key,
            task_id,
        }
    }

    fn poll_url(&self) -> String {
        format!("{}/v1/tasks/{}", self.served.address, self.task_id)
    }

    fn task_body(&self) -> Vec<u8> {
        block_on(async {
            reqwest::Client::new()
                .get(self.poll_url())
                .bearer_auth(&self.key)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec()
        })
    }

    fn tasks_stored(&self) -> i64 {
        block_on(async {
            let store = seedgate::store::connect(&self.served.database_url)
                .await
                .unwrap();
            let mut stored = 0;
            for account in store.list_keys().await.unwrap() {
                stored += store.count_tasks(&account.id).await.unwrap();
            }
            stored
        })
    }
}

/// The runs of one measure, as `min–max`: requests a second whole, ratios and milliseconds to
/// two places.
fn spread(runs: &[Run], of: impl Fn(&Run) -> f64) -> String {
    let values: Vec<f64> = runs.iter().map(of).collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let places = if max >= 100.0 { 0 } else { 2 };
    if (max - min).abs() < f64::EPSILON {
        format!("{min:.places$}")
    } else {
        format!("{min:.places$}–{max:.places$}")
    }
}

fn ratio(runs: &[Run], bare: &[Run]) -> String {
    let ratios: Vec<Run> = runs
        .iter()
        .zip(bare)
        .map(|(run, bare)| Run {
            requests_per_second: run.requests_per_second / bare.requests_per_second,
            p99_ms: run.p99_ms / bare.p99_ms,
            ..*run
        })
        .collect();
    format!(
        "{} of bare's req/s, p99 {}× bare's",
        spread(&ratios, |r| r.requests_per_second),
        spread(&ratios, |r| r.p99_ms)
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("bare-server") {
        return bare_server(&args[2], &args[3]);
    }
    let read = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let seconds = read("SEEDGATE_BENCH_SECONDS", 8);
    let rounds = read("SEEDGATE_BENCH_ROUNDS", 3) as usize;
    let dir = tempfile::tempdir().unwrap();
    let profiles = std::env::var_os("SEEDGATE_BENCH_PROFILE").map(PathBuf::from);
    if let Some(profiles) = &profiles {
        std::fs::create_dir_all(profiles).unwrap();
    }
    let row = |round: usize, server: &str, measure: &str, connections: u32, run: &Run| {
        println!(
            "| {round} | {server} | {measure} | {connections} | {:.0} | {:.3} ms | {:.3} ms | {} | {} | {:.1} / {:.1} |",
            run.requests_per_second,
            run.p50_ms,
            run.p99_ms,
            run.requests,
            run.non_2xx,
            run.user_us,
            run.kernel_us
        );
    };
    if std::env::var("SEEDGATE_BENCH_ONLY").as_deref() == Ok("ark") {
        println!("{RUNS_TABLE_HEAD}");
        let overhead = gateway_overhead(dir.path(), seconds, rounds, profiles.as_deref(), &row);
        println!("\n{overhead}");
        return;
    }
    let postgres_url = std::env::var("SEEDGATE_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| seedgate::store::postgres::test_server_url());
    let schema = || {
        block_on(seedgate::store::postgres::create_scratch_schema(
            &postgres_url,
        ))
        .expect("a PostgreSQL server to measure beside SQLite (SEEDGATE_BENCH_POSTGRES_URL)")
    };
    let sqlite_url = |name: &str| {
        format!(
            "sqlite://{}",
            dir.path().join(name).join("seedgate.db").display()
        )
    };
    let gateways = [
        Gateway::start(
            "SQLite",
            &dir.path().join("sqlite"),
            &sqlite_url("sqlite"),
            API_ONLY,
            KeyMode::Test,
        ),
        Gateway::start(
            "PostgreSQL",
            &dir.path().join("postgres"),
            &schema(),
            API_ONLY,
            KeyMode::Test,
        ),
    ];
    let body_file = dir.path().join("task.json");
    let task_body = gateways[0].task_body();
    std::fs::write(&body_file, &task_body).unwrap();
    let bare = Bare::start(&body_file, "axum");
    let bare_on_ours = Bare::start(&body_file, "gateway");
    let bare_script = lua_script(dir.path(), "bare.lua", "none", None);

    println!(
        "task object: {} bytes; {rounds} rounds of {seconds} s, alternating; wrk -t2 on the same 2 cores",
        task_body.len()
    );
    println!("{RUNS_TABLE_HEAD}");

    // Polls and health checks, the bare servers and each gateway in turn, round after round.
    struct Measured {
        name: &'static str,
        pid: u32,
        poll_url: String,
        healthz_url: String,
        script: PathBuf,
    }
    let bare_measured = |name, server: &Bare| Measured {
        name,
        pid: server.pid(),
        poll_url: format!("{}/v1/tasks/{}", server.address, gateways[0].task_id),
        healthz_url: format!("{}/healthz", server.address),
        script: bare_script.clone(),
    };
    let mut servers = vec![
        bare_measured("bare axum", &bare),
        bare_measured("bare, the gateway's listener", &bare_on_ours),
    ];
    for gateway in &gateways {
        servers.push(Measured {
            name: gateway.name,
            pid: gateway.served.pid(),
            poll_url: gateway.poll_url(),
            healthz_url: format!("{}/healthz", gateway.served.address),
            script: lua_script(
                dir.path(),
                &format!("poll-{}.lua", gateway.name),
                &gateway.key,
                None,
            ),
        });
    }
    let mut polls: Vec<Vec<Run>> = vec![Vec::new(); servers.len()];
    let mut health: Vec<Vec<Run>> = vec![Vec::new(); servers.len()];
    for round in 1..=rounds {
        for (n, server) in servers.iter().enumerate() {
            let poll = with_cpu(server.pid, || {
                wrk(&server.poll_url, 64, seconds, &server.script)
            });
            assert_eq!(poll.non_2xx, 0, "{}: polls must succeed", server.name);
            row(round, server.name, "status poll", 64, &poll);
            polls[n].push(poll);
        }
        for (n, server) in servers.iter().enumerate() {
            let healthz = with_cpu(server.pid, || {
                wrk(&server.healthz_url, 64, seconds, &server.script)
            });
            row(round, server.name, "/healthz", 64, &healthz);
            health[n].push(healthz);
        }
    }

    // Creates: one connection, then 32, per gateway and round; every answered one stored.
    let mut creates_one: Vec<Vec<Run>> = vec![Vec::new(); gateways.len()];
    let mut creates_many: Vec<Vec<Run>> = vec![Vec::new(); gateways.len()];
    for round in 1..=rounds {
        for (n, gateway) in gateways.iter().enumerate() {
            let url = format!("{}/v1/videos/generations", gateway.served.address);
            let one = with_cpu(gateway.served.pid(), || {
                one_connection(&url, seconds, &gateway.key, Some(CREATE_BODY))
            });
            row(round, gateway.name, "create (durable)", 1, &one);
            let script = lua_script(dir.path(), "create.lua", &gateway.key, Some(CREATE_BODY));
            let many = with_cpu(gateway.served.pid(), || wrk(&url, 32, seconds, &script));
            row(round, gateway.name, "create (durable)", 32, &many);
            creates_one[n].push(one);
            creates_many[n].push(many);
        }
    }
    for (n, gateway) in gateways.iter().enumerate() {
        let answered: u64 = creates_one[n]
            .iter()
            .chain(&creates_many[n])
            .map(|run| run.requests - run.non_2xx)
            .sum();
        let stored = gateway.tasks_stored() as u64;
        assert!(
            stored > answered,
            "{}: {stored} stored, {answered} answered",
            gateway.name
        );
    }
    if let Some(profiles) = &profiles {
        let gateway = &gateways[0];
        let script = lua_script(dir.path(), "poll.lua", &gateway.key, None);
        let poll_url = gateway.poll_url();
        let healthz_url = format!("{}/healthz", gateway.served.address);
        let create_url = format!("{}/v1/videos/generations", gateway.served.address);
        let targets: [(&str, u32, MeasuredRun); 3] = [
            (
                "status poll",
                64,
                Box::new(|| wrk(&poll_url, 64, seconds, &script)),
            ),
            (
                "/healthz",
                64,
                Box::new(|| wrk(&healthz_url, 64, seconds, &bare_script)),
            ),
            (
                "create (durable)",
                1,
                Box::new(|| one_connection(&create_url, seconds, &gateway.key, Some(CREATE_BODY))),
            ),
        ];
        for (measure, connections, measure_run) in targets {
            let file = profiles.join(format!(
                "{}.perf.data",
                measure.replace(['/', ' ', '(', ')'], "")
            ));
            let run = profiled(gateway.served.pid(), &file, measure_run);
            row(0, "SQLite, profiled", measure, connections, &run);
            println!(
                "\n{measure}, `perf report -i {}`:\n```\n{}```\n",
                file.display(),
                top_functions(&file)
            );
        }
    }
    let overhead = gateway_overhead(dir.path(), seconds, rounds, profiles.as_deref(), &row);
    drop(gateways);

    println!(
        "\n| measure | {} |\n|---|---|---|---|---|",
        servers
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    throughput_row("status poll, 64 connections: req/s", &polls);
    pair_row(
        "status poll, 64 connections: p50 / p99 ms",
        &polls,
        |r| r.p50_ms,
        |r| r.p99_ms,
    );
    let (user, kernel) = (|r: &Run| r.user_us, |r: &Run| r.kernel_us);
    pair_row(
        "status poll, 64 connections: server CPU µs/request, user / kernel",
        &polls,
        user,
        kernel,
    );
    throughput_row("`/healthz`, 64 connections: req/s", &health);
    pair_row(
        "`/healthz`, 64 connections: server CPU µs/request, user / kernel",
        &health,
        user,
        kernel,
    );
    println!(
        "| create, 1 connection: p50 / p99 ms | — | — | {} / {} | {} / {} |",
        spread(&creates_one[0], |r| r.p50_ms),
        spread(&creates_one[0], |r| r.p99_ms),
        spread(&creates_one[1], |r| r.p50_ms),
        spread(&creates_one[1], |r| r.p99_ms),
    );
    println!(
        "| durable creates, 32 connections, engine off: /s | — | — | {} | {} |",
        spread(&creates_many[0], |r| r.requests_per_second),
        spread(&creates_many[1], |r| r.requests_per_second),
    );
    println!("| {overhead} | | | | |");
}

/// A summary row of two figures of each server's runs, as `first / second`.
fn pair_row(measure: &str, runs: &[Vec<Run>], first: fn(&Run) -> f64, second: fn(&Run) -> f64) {
    let cells: Vec<String> = runs
        .iter()
        .map(|server| format!("{} / {}", spread(server, first), spread(server, second)))
        .collect();
    println!("| {measure} | {} |", cells.join(" | "));
}

/// A summary row of requests a second: the bare server's runs, then each gateway's with its
/// ratios to bare's.
fn throughput_row(measure: &str, runs: &[Vec<Run>]) {
    let gateways: Vec<String> = runs[1..]
        .iter()
        .map(|gateway| {
            format!(
                "{} ({})",
                spread(gateway, |r| r.requests_per_second),
                ratio(gateway, &runs[0])
            )
        })
        .collect();
    println!(
        "| {measure} | {} | {} |",
        spread(&runs[0], |r| r.requests_per_second),
        gateways.join(" | ")
    );
}

/// Creates a task by POSTing `body` to `url` (either surface); returns its id.
fn create_task(url: &str, key: &str, body: &'static str) -> String {
    block_on(async {
        let created: serde_json::Value = reqwest::Client::new()
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
    })
}

/// An Ark client's create and poll at one connection, sent to the fake upstream directly and
/// through a gateway (SQLite, `ark` channel to the same fake upstream, engine running), in
/// alternating rounds: what the gateway adds to each. With `profiles`, one more create run
/// through the gateway with `perf` attached.
fn gateway_overhead(
    dir: &Path,
    seconds: u64,
    rounds: usize,
    profiles: Option<&Path>,
    row: &dyn Fn(usize, &str, &str, u32, &Run),
) -> String {
    // The fake upstream in this process, on a runtime thread of its own.
    let (fake_tx, fake_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let fake = fake_ark::FakeArk::start().await;
            // Tasks stay queued upstream for the whole run: the engine keeps polling them.
            fake.set_timing(Duration::from_secs(3600), Duration::from_secs(3600));
            fake_tx.send(fake.base_url.clone()).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let base_url = fake_rx.recv().unwrap();
    // Every create is submitted upstream (no concurrency limit in the way); the channel reads
    // its tasks' statuses within the default budget, as a user's does. Without one, the
    // engine polled the tens of thousands of tasks the runs leave in flight as fast as the two
    // cores allowed, through every later run, the direct ones included.
    let config = format!(
        "[engine]\nmax_concurrent_tasks_per_key = 1000000\n\
         [limits]\nrequests_per_second = 100000000\nburst = 100000000\n\n\
         [[channels]]\nid = \"volc\"\nprovider = \"ark\"\nbase_url = \"{base_url}\"\n\
         api_key_env = \"{}\"\nresolutions = [\"480p\"]\nmax_concurrent_tasks = 1000000\n\
         models = {{ \"seedance-2.0-fast\" = \"doubao-seedance-2-0-fast-260128\" }}\n",
        fake_ark::FAKE_KEY_ENV
    );
    let data = dir.join("sqlite-ark");
    let url = format!("sqlite://{}", data.join("seedgate.db").display());
    let gateway = Gateway::start("SQLite, ark", &data, &url, &config, KeyMode::Live);
    let root = base_url.trim_end_matches("/api/v3").to_owned();
    let gateway_root = gateway.served.address.clone();
    let ark_task =
        |base: &str, key: &str| create_task(&format!("{base}{ARK_TASKS}"), key, ARK_CREATE_BODY);
    let direct_task = ark_task(&root, fake_ark::FAKE_KEY);
    let gateway_task = ark_task(&gateway_root, &gateway.key);
    let create = |base: &str, key: &str, per_second: Option<u32>| {
        paced_connection(
            &format!("{base}{ARK_TASKS}"),
            seconds,
            key,
            Some(ARK_CREATE_BODY),
            per_second,
        )
    };
    let poll = |base: &str, key: &str, task: &str| {
        one_connection(&format!("{base}{ARK_TASKS}/{task}"), seconds, key, None)
    };
    let pid = gateway.served.pid();
    let paced = Some(PACED_CREATES_PER_SECOND);
    let paced_measure = format!("Ark create, {PACED_CREATES_PER_SECOND}/s");
    let mut added: [Vec<Run>; 3] = Default::default();
    for round in 1..=rounds {
        let runs = [
            (
                "fake upstream directly",
                "Ark create",
                create(&root, fake_ark::FAKE_KEY, None),
            ),
            (
                "gateway, ark channel",
                "Ark create",
                with_cpu(pid, || create(&gateway_root, &gateway.key, None)),
            ),
            (
                "fake upstream directly",
                paced_measure.as_str(),
                create(&root, fake_ark::FAKE_KEY, paced),
            ),
            (
                "gateway, ark channel",
                paced_measure.as_str(),
                with_cpu(pid, || create(&gateway_root, &gateway.key, paced)),
            ),
            (
                "fake upstream directly",
                "Ark poll",
                poll(&root, fake_ark::FAKE_KEY, &direct_task),
            ),
            (
                "gateway, ark channel",
                "Ark poll",
                with_cpu(pid, || poll(&gateway_root, &gateway.key, &gateway_task)),
            ),
        ];
        for (server, measure, run) in &runs {
            assert_eq!(run.non_2xx, 0, "{server}: {measure} must succeed");
            row(round, server, measure, 1, run);
        }
        for (pair, added) in runs.chunks(2).zip(&mut added) {
            let (direct, through) = (&pair[0].2, &pair[1].2);
            added.push(Run {
                p99_ms: through.p99_ms - direct.p99_ms,
                ..*through
            });
        }
    }
    if let Some(profiles) = profiles {
        let file = profiles.join("ark-create.perf.data");
        let run = profiled(pid, &file, || create(&gateway_root, &gateway.key, None));
        row(0, "gateway, ark channel, profiled", "Ark create", 1, &run);
        println!(
            "\nArk create through the gateway, `perf report -i {}`:\n```\n{}```\n",
            file.display(),
            top_functions(&file)
        );
    }
    let [creates, paced_creates, polls] = added.map(|runs| spread(&runs, |r| r.p99_ms));
    format!(
        "gateway overhead through `ark`, added p99 at 1 connection: create {creates} ms \
         ({paced_creates} ms at {PACED_CREATES_PER_SECOND}/s), poll {polls} ms"
    )
}
