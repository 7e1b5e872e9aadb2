//! The test harness: a real server on a random port with its own data dir (and, on request,
//! its own bucket on a real S3-compatible server, moto), a local media server for inputs, and
//! ffprobe (a tool we did not write) to check every MP4.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use seedgate::blobs::{AwsEnvironment, Blobs, Location};
use seedgate::config::Config;
use seedgate::ids::AccountId;
use seedgate::store::{KeyMode, KeySpec, Store};
use seedgate::Application;
use serde_json::Value;
use tokio::sync::OnceCell;

/// Where a test server keeps its result files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// A folder in the server's data dir (the default).
    Local,
    /// A fresh bucket on the shared moto server.
    S3,
}

impl Storage {
    pub const BOTH: [Storage; 2] = [Storage::Local, Storage::S3];

    /// Points `config` at this storage.
    pub async fn configure(self, config: &mut Config) {
        if self == Storage::S3 {
            let moto = Moto::shared().await;
            config.assets.url = Some(Location::S3 {
                bucket: moto.new_bucket().await,
                prefix: "results".into(),
            });
            config.assets.aws = moto.environment();
        }
    }
}

/// A moto S3 server (`pip install 'moto[server]'`) shared by the tests of this process. It
/// ends with the process: it exits when its standard input closes.
pub struct Moto {
    pub endpoint: String,
    child: Child,
}

static MOTO: OnceCell<Moto> = OnceCell::const_new();
static BUCKETS: AtomicUsize = AtomicUsize::new(0);

/// Runs moto's server on a port of its choosing, prints the port, and exits when standard
/// input closes.
const MOTO_SERVER: &str = "
import os, sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
os._exit(0)
";

impl Moto {
    pub async fn shared() -> &'static Moto {
        MOTO.get_or_init(Moto::start).await
    }

    /// A moto of one test's own, which it may stop and start without disturbing the others.
    pub async fn dedicated() -> Moto {
        Moto::start().await
    }

    /// Freezes the server (`SIGSTOP`): connections are still accepted by the kernel, but
    /// nothing answers, as when a bucket's endpoint hangs.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Thaws a paused server (`SIGCONT`), its buckets and objects as they were.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("sh")
            .args(["-c", &format!("kill -{name} {}", self.child.id())])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    async fn start() -> Moto {
        let mut child = Command::new("python3")
            .args(["-c", MOTO_SERVER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 must be installed to run moto");
        let stdout = child.stdout.take().unwrap();
        let port = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).ok()?;
            line.trim().parse::<u16>().ok()
        });
        let port = match tokio::time::timeout(Duration::from_secs(60), port).await {
            Ok(Ok(Some(port))) => port,
            Ok(_) => panic!(
                "moto did not start ({:?}): pip install 'moto[server]==5.2.1'",
                child.try_wait()
            ),
            Err(_) => panic!("moto did not start within a minute"),
        };
        let endpoint = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = reqwest::Client::new();
        while client.get(&endpoint).send().await.is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto did not answer within a minute"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The child keeps its stdin pipe open, and so moto alive, while this process lives.
        Moto { endpoint, child }
    }

    /// Creates an empty bucket through moto's S3 API and returns its name.
    pub async fn new_bucket(&self) -> String {
        let name = format!(
            "seedgate-{}-{}",
            std::process::id(),
            BUCKETS.fetch_add(1, Ordering::Relaxed)
        );
        let response = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{response:?}");
        name
    }

    /// The `AWS_*` settings a server is given to reach moto.
    pub fn environment(&self) -> AwsEnvironment {
        AwsEnvironment::from_pairs(
            [
                ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
            ]
            .map(|(name, value)| (name.to_owned(), value.to_owned())),
        )
    }
}

pub struct TestApp {
    pub address: String,
    pub key: String,
    pub account_id: AccountId,
    pub store: Store,
    pub engine: std::sync::Arc<seedgate::engine::Engine>,
    pub notifier: std::sync::Arc<seedgate::notify::Notifier>,
    pub sweeper: std::sync::Arc<seedgate::sweeper::Sweeper>,
    pub client: reqwest::Client,
    /// The server's result files, opened as the server opens them.
    pub blobs: Arc<dyn Blobs>,
    /// Held so the directory lives as long as the server (a second server given it shares
    /// the database and files: read only by the PostgreSQL run's replica tests).
    #[allow(dead_code)]
    pub data_dir: tempfile::TempDir,
}

/// The database a test's server uses: SQLite in its data dir, or, when this binary runs the
/// tests on PostgreSQL, a fresh schema made on first use and remembered in the data dir (so
/// every process a test starts on that dir finds the same one).
pub fn database_url(data_dir: &Path) -> String {
    if !crate::POSTGRES {
        return format!("sqlite://{}", data_dir.join("seedgate.db").display());
    }
    take_a_database_place();
    let remembered = data_dir.join("database-url");
    if let Ok(url) = std::fs::read_to_string(&remembered) {
        return url;
    }
    // Made on a runtime of its own: callers may be inside a test's runtime or not.
    let url = std::thread::spawn(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(seedgate::store::postgres::create_scratch_schema(
                &seedgate::store::postgres::test_server_url(),
            ))
    })
    .join()
    .unwrap()
    .expect("a PostgreSQL server for the API tests");
    std::fs::create_dir_all(data_dir).unwrap();
    std::fs::write(&remembered, &url).unwrap();
    url
}

/// How many tests of the PostgreSQL binary may use the database at once, however many test
/// threads run (`.cargo/config.toml`). The server admits 100 connections (Debian's default)
/// and each server's pool grows to 16 under load: the replica run alone holds about 35.
const DATABASE_TESTS: usize = 5;

/// Tests holding a place, and the signal that one was given back.
static DATABASE_PLACES: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());

/// A test's place, given back when its thread (libtest runs each test on its own) ends.
struct DatabasePlace;

impl Drop for DatabasePlace {
    fn drop(&mut self) {
        let (taken, given_back) = &DATABASE_PLACES;
        *taken.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        given_back.notify_one();
    }
}

thread_local! {
    static DATABASE_PLACE: std::cell::RefCell<Option<DatabasePlace>> =
        const { std::cell::RefCell::new(None) };
}

/// Waits for a place among the tests using the database, unless this test has one. One place
/// per test, whatever number of servers it starts, so no two tests can wait on each other.
fn take_a_database_place() {
    DATABASE_PLACE.with(|place| {
        let mut place = place.borrow_mut();
        if place.is_none() {
            let (taken, given_back) = &DATABASE_PLACES;
            let mut taken = taken.lock().unwrap_or_else(|e| e.into_inner());
            while *taken >= DATABASE_TESTS {
                taken = given_back.wait(taken).unwrap_or_else(|e| e.into_inner());
            }
            *taken += 1;
            *place = Some(DatabasePlace);
        }
    });
}

/// Runs one case of a test on a runtime of its own, so the servers it starts end with it,
/// workers and database connections included. Servers started one after another on the test's
/// own runtime all live until the test ends, and PostgreSQL admits only so many connections.
pub fn run_alone<F: std::future::Future>(case: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(case)
}

/// `SEEDGATE_TEST_LOG=warn` (any filter) prints the servers' logs, which tests otherwise keep
/// quiet: how to see why a test's request met a `500`.
fn log_when_asked() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("SEEDGATE_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.to_owned(),
        database_url: crate::POSTGRES.then(|| database_url(data_dir)),
        ..Config::default()
    };
    // Several servers share the test database (Debian's default: 100 connections).
    config.database_pool_size = 6;
    config.engine.workers = 2;
    config.engine.lease_seconds = 3;
    config.engine.idle_poll_ms = 250;
    // The engine's timing policy on a test's scale: the same rules as in production (a retry
    // back-off that doubles up to a cap, a wait before a lost submission is looked for
    // upstream, polls that back off to a cap, result copies retried), with waits a test can
    // sit out. A test whose meaning rests on a longer wait sets it itself.
    config.engine.retry_backoff_ms = 50;
    config.engine.max_retry_delay_ms = 2_000;
    config.engine.reconcile_delay_ms = 100;
    config.engine.first_poll_ms = 150;
    config.engine.max_poll_interval_ms = 400;
    config.engine.result_copy_backoff_ms = 100;
    config.sandbox.max_concurrent_renders = 2;
    // Most tests bill live keys (the management API's) without an upstream; the refusal a
    // live key meets by default is tested on its own (money.rs).
    config.sandbox.serve_live_keys = true;
    // Test servers (media inputs, the fake upstream) live on loopback.
    config.fetch.allow_private = vec!["127.0.0.1/32".parse().unwrap()];
    config
}

impl TestApp {
    /// A server with running workers and a test key holding $100.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}, true).await
    }

    /// A server whose tasks stay queued until the test drives the engine itself.
    pub async fn spawn_without_workers() -> Self {
        Self::spawn_with(|_| {}, false).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Config), run_workers: bool) -> Self {
        Self::spawn_on(Storage::Local, tweak, run_workers).await
    }

    /// A server keeping its result files in `storage`.
    pub async fn spawn_on(
        storage: Storage,
        tweak: impl FnOnce(&mut Config),
        run_workers: bool,
    ) -> Self {
        Self::try_spawn_on(storage, tweak, run_workers)
            .await
            .unwrap()
    }

    /// [`TestApp::spawn_on`], returning the error of a server that could not start (say, on a
    /// port that was taken).
    pub async fn try_spawn_on(
        storage: Storage,
        tweak: impl FnOnce(&mut Config),
        run_workers: bool,
    ) -> Result<Self, seedgate::StartError> {
        log_when_asked();
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = test_config(data_dir.path());
        storage.configure(&mut config).await;
        tweak(&mut config);
        let blobs = seedgate::blobs::open(&config.assets_location(), &config.assets.aws).unwrap();
        let app = Application::build(config).await?;
        let address = format!("http://{}", app.local_addr().unwrap());
        let dev_key = app.dev_key.as_ref().unwrap();
        let key = dev_key.secret.clone();
        let account_id = dev_key.account.id.clone();
        let store = app.store().clone();
        let engine = app.engine().clone();
        let notifier = app.notifier().clone();
        let sweeper = app.sweeper().clone();
        tokio::spawn(app.run(run_workers, std::future::pending()));
        Ok(Self {
            address,
            key,
            account_id,
            store,
            engine,
            notifier,
            sweeper,
            client: reqwest::Client::new(),
            blobs,
            data_dir,
        })
    }

    /// Another account on the same server.
    pub async fn new_key(&self, balance_usd_micros: i64) -> (String, AccountId) {
        self.new_key_in_mode(KeyMode::Test, balance_usd_micros)
            .await
    }

    pub async fn new_key_in_mode(
        &self,
        mode: KeyMode,
        balance_usd_micros: i64,
    ) -> (String, AccountId) {
        let key = self
            .store
            .create_key(&KeySpec::plain("other", mode, balance_usd_micros))
            .await
            .unwrap();
        (key.secret, key.account.id)
    }

    pub async fn task_with_key(&self, key: &str, id: &str) -> (u16, Value) {
        self.get_path_with_key(key, &format!("/v1/tasks/{id}"))
            .await
    }

    /// The public statuses of `ids`, in alphabetical order.
    pub async fn sorted_statuses(&self, key: &str, ids: &[String]) -> Vec<String> {
        let mut statuses = Vec::new();
        for id in ids {
            let (_, task) = self.task_with_key(key, id).await;
            statuses.push(task["status"].as_str().unwrap().to_owned());
        }
        statuses.sort();
        statuses
    }

    pub async fn cancel_with_key(&self, key: &str, id: &str) -> (u16, Value) {
        let response = self
            .client
            .delete(format!("{}/v1/tasks/{id}", self.address))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        decode(response).await
    }

    pub async fn create_with_key(&self, key: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/v1/videos/generations", self.address))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap();
        decode(response).await
    }

    pub async fn create(&self, body: &Value) -> (u16, Value) {
        self.create_with_key(&self.key, body).await
    }

    pub async fn create_raw(&self, body: &str) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/v1/videos/generations", self.address))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        decode(response).await
    }

    /// Any request with any bearer secret, the body as JSON when given.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(bearer);
        if let Some(body) = body {
            request = request.json(body);
        }
        decode(request.send().await.unwrap()).await
    }

    pub async fn get_path(&self, path: &str) -> (u16, Value) {
        self.get_path_with_key(&self.key, path).await
    }

    pub async fn get_path_with_key(&self, key: &str, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.address))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        decode(response).await
    }

    pub async fn task(&self, id: &str) -> (u16, Value) {
        self.get_path(&format!("/v1/tasks/{id}")).await
    }

    pub async fn cancel(&self, id: &str) -> (u16, Value) {
        let response = self
            .client
            .delete(format!("{}/v1/tasks/{id}", self.address))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        decode(response).await
    }

    pub async fn cancel_by_post(&self, id: &str) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/v1/tasks/{id}/cancel", self.address))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        decode(response).await
    }

    /// Polls the task's `poll_url` until it is `completed` or `failed`.
    pub async fn wait_terminal(&self, id: &str, timeout: Duration) -> Value {
        wait_terminal(&self.client, &self.address, &self.key, id, timeout).await
    }

    pub async fn download(&self, url: &str) -> (u16, Vec<u8>) {
        let response = self.client.get(url).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    }

    /// A download with a `Range` header: status, headers and body.
    pub async fn download_range(
        &self,
        url: &str,
        range: &str,
    ) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let response = self
            .client
            .get(url)
            .header("range", range)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.bytes().await.unwrap().to_vec())
    }

    /// `/metrics` as a scraper reads it.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn balance(&self, account_id: &AccountId) -> i64 {
        self.store
            .account(account_id)
            .await
            .unwrap()
            .unwrap()
            .balance_usd_micros
    }

    /// Proves a rejected request stored and charged nothing.
    pub async fn assert_nothing_written(&self) {
        assert_eq!(self.store.count_tasks(&self.account_id).await.unwrap(), 0);
        // Only the opening top-up.
        assert_eq!(
            self.store
                .ledger_entries_for_account(&self.account_id)
                .await
                .unwrap(),
            1
        );
        assert_eq!(self.balance(&self.account_id).await, 100_000_000);
    }
}

/// A response's status and JSON body, after checking that the body fits the platform's
/// schema for its path (`conformance`).
pub async fn decode(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let url = response.url().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    crate::conformance::check(url.path(), url.query(), status, &body);
    (status, body)
}

pub async fn wait_terminal(
    client: &reqwest::Client,
    address: &str,
    key: &str,
    id: &str,
    timeout: Duration,
) -> Value {
    let started = Instant::now();
    loop {
        let response = client
            .get(format!("{address}/v1/tasks/{id}"))
            .bearer_auth(key)
            .send()
            .await;
        if let Ok(response) = response {
            let (status, body) = decode(response).await;
            assert_eq!(status, 200, "{body}");
            let state = body["status"].as_str().unwrap().to_owned();
            if state == "completed" || state == "failed" {
                return body;
            }
        }
        assert!(
            started.elapsed() < timeout,
            "task {id} did not finish within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `check` holds, looking every 20 ms; fails, naming `what`, once `patience` has
/// passed. For a state that comes about on its own: a test waits for the event, not for a
/// guess at how long it takes.
pub async fn wait_until(what: &str, patience: Duration, mut check: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < patience,
            "{what}: not so after {patience:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// ffprobe's view of a file.
pub struct Probe {
    pub codec: String,
    pub width: u64,
    pub height: u64,
    pub fps: String,
    pub duration: f64,
    pub has_audio: bool,
    /// The `ftyp` major brand: `isom` for our MP4s, `qt  ` for QuickTime.
    pub major_brand: String,
}

pub fn ffprobe(bytes: &[u8]) -> Probe {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("probe.mp4");
    std::fs::write(&path, bytes).unwrap();
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe must be installed (Debian package ffmpeg)");
    assert!(
        output.status.success(),
        "ffprobe rejected the file: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let streams = json["streams"].as_array().unwrap();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("a video stream");
    Probe {
        codec: video["codec_name"].as_str().unwrap().to_owned(),
        width: video["width"].as_u64().unwrap(),
        height: video["height"].as_u64().unwrap(),
        fps: video["r_frame_rate"].as_str().unwrap().to_owned(),
        duration: json["format"]["duration"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        has_audio: streams.iter().any(|s| s["codec_type"] == "audio"),
        major_brand: json["format"]["tags"]["major_brand"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    }
}

/// Media the tests serve as inputs, generated here.
pub struct MediaServer {
    pub base: String,
}

pub fn png_bytes(width: u32, height: u32, tint: u8) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, tint])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

pub fn jpeg_bytes(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([((x + y) % 256) as u8, 128, (y % 256) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// A 2 s 320×240 H.264 clip with moving bars.
pub fn mp4_bytes() -> Vec<u8> {
    seedgate_media::encode_mp4(320, 240, 24, 48, None, &mut |i, rgb| {
        for (n, px) in rgb.chunks_mut(3).enumerate() {
            let x = (n % 320) as u32;
            px[0] = ((x + i * 4) % 256) as u8;
            px[1] = 90;
            px[2] = (i * 5 % 256) as u8;
        }
    })
    .unwrap()
}

/// A 3 s mono 16-bit WAV tone.
pub fn wav_bytes() -> Vec<u8> {
    let rate = 16_000u32;
    let samples: Vec<i16> = (0..rate * 3)
        .map(|n| ((n as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin() * 8000.0) as i16)
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

impl MediaServer {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1").await
    }

    /// Serves on another loopback address (Linux routes all of 127/8 to lo).
    pub async fn start_on(ip: &str) -> Self {
        let start = png_bytes(640, 360, 20);
        let end = png_bytes(640, 360, 220);
        let portrait = jpeg_bytes(400, 720);
        let tiny = png_bytes(100, 100, 60);
        let video = mp4_bytes();
        let audio = wav_bytes();
        let router = axum::Router::new()
            .route("/start.png", get(move || async move { start }))
            .route("/end.png", get(move || async move { end }))
            .route("/portrait.jpg", get(move || async move { portrait }))
            .route("/tiny.png", get(move || async move { tiny }))
            .route("/clip.mp4", get(move || async move { video }))
            .route("/tone.wav", get(move || async move { audio }))
            .route(
                "/redirect",
                get(
                    |axum::extract::Query(q): axum::extract::Query<
                        std::collections::HashMap<String, String>,
                    >| async move { axum::response::Redirect::temporary(&q["to"]) },
                ),
            );
        let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
            .await
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { base }
    }

    pub fn url(&self, file: &str) -> String {
        format!("{}/{file}", self.base)
    }
}

/// A model no build knows, defined by a catalog file alone (the contract's tests use the same
/// file).
pub const DATA_ONLY_MODEL: &str =
    include_str!("../../../seedgate-contract/testdata/data_only_model.toml");

/// The built-in catalog and [`DATA_ONLY_MODEL`], written as a catalog file in `dir`.
pub fn catalog_with_a_data_only_model(dir: &Path) -> PathBuf {
    let path = dir.join("catalog.toml");
    std::fs::write(
        &path,
        format!("{}\n{DATA_ONLY_MODEL}", seedgate_contract::BUILTIN_CATALOG),
    )
    .unwrap();
    path
}
