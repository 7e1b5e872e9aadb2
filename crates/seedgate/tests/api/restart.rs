//! A `kill -9` of the server loses no task: after a restart on the same data dir, every queued
//! and half-rendered task finishes, and money adds up.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::json;

use crate::helpers::{decode, wait_terminal};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    child: Child,
}

impl Server {
    /// False once the process has exited, e.g. by a crash.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs an operator command of the real binary against a data dir and config.
fn operator(
    data: &std::path::Path,
    config: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_seedgate"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
        .env("SEEDGATE_DATABASE_URL", crate::helpers::database_url(data))
        .output()
        .unwrap()
}

/// Starts the real binary, its log appended to `server.log` beside the data dir; on a first
/// start, also reads the development key it prints.
pub fn start(
    data_dir: &std::path::Path,
    config: &std::path::Path,
    port: u16,
    first: bool,
) -> (Server, Option<String>) {
    start_with_env(data_dir, config, port, first, &[])
}

/// [`start`] with more environment for the server (S3 settings, say).
pub fn start_with_env(
    data_dir: &std::path::Path,
    config: &std::path::Path,
    port: u16,
    first: bool,
    env: &[(String, String)],
) -> (Server, Option<String>) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.with_file_name("server.log"))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_seedgate"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--config")
        .arg(config)
        .env(
            "SEEDGATE_DATABASE_URL",
            crate::helpers::database_url(data_dir),
        )
        .stdout(Stdio::piped())
        .stderr(log)
        .env("RUST_LOG", "debug,hyper=info,h2=info,reqwest=debug")
        .envs(env.iter().map(|(name, value)| (name, value)))
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    if !first {
        return (Server { child }, None);
    }
    let key = BufReader::new(stdout)
        .lines()
        .take(4)
        .map_while(Result::ok)
        .find_map(|line| {
            line.trim()
                .starts_with("sg_")
                .then(|| line.trim().to_owned())
        });
    (Server { child }, key)
}

/// The real server on a free port, and a live key its operator made before starting it.
struct LiveServer {
    key: String,
    port: u16,
    address: String,
    client: reqwest::Client,
    server: Server,
}

async fn live_key_and_server(data: &std::path::Path, config: &std::path::Path) -> LiveServer {
    let created = operator(
        data,
        config,
        &["keys", "create", "--name", "live", "--balance-usd", "50"],
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let port = free_port();
    let address = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let (server, _) = start(data, config, port, false);
    wait_ready(&client, &address).await;
    LiveServer {
        key,
        port,
        address,
        client,
        server,
    }
}

pub async fn wait_ready(client: &reqwest::Client, address: &str) {
    let started = Instant::now();
    while client
        .get(format!("{address}/readyz"))
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn kill_9_mid_render_loses_no_task() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("seedgate.toml");
    std::fs::write(
        &config,
        "[engine]\nworkers = 1\nlease_seconds = 2\nidle_poll_ms = 100\n[sandbox]\nmax_concurrent_renders = 1\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let address = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    // A stdout line is printed only once: the key must come back on the first start.
    let (server, key) = start(&data, &config, port, true);
    let key = key.expect("development key printed on first start");
    wait_ready(&client, &address).await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let body = json!({"model": "seedance-2.0", "operation": "text-to-video",
            "prompt": format!("restart {n}"), "resolution": "720p", "duration": 5});
        let response = client
            .post(format!("{address}/v1/videos/generations"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, created) = decode(response).await;
        assert_eq!(status, 200, "{created}");
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    // Let the first render start, then kill the process without warning.
    tokio::time::sleep(Duration::from_millis(700)).await;
    drop(server);

    let (server, _) = start(&data, &config, port, false);
    wait_ready(&client, &address).await;
    let mut charged = Decimal::ZERO;
    for id in &ids {
        let done = wait_terminal(&client, &address, &key, id, Duration::from_secs(180)).await;
        assert_eq!(done["status"], "completed", "{done}");
        charged += done["cost"]["amount"]
            .as_str()
            .unwrap()
            .parse::<Decimal>()
            .unwrap();
    }
    drop(server);

    // Every task was charged exactly once: the balance is the opening amount minus the costs.
    let store = seedgate::store::connect(&crate::helpers::database_url(&data))
        .await
        .unwrap();
    let keys = store.list_keys().await.unwrap();
    assert_eq!(
        keys.len(),
        1,
        "a restart on a non-empty database creates no new key"
    );
    let account = &keys[0];
    let balance = Decimal::new(account.balance_usd_micros, 6);
    assert_eq!(balance, Decimal::from(100) - charged);
    assert_eq!(
        store.ledger_sum(&account.id).await.unwrap(),
        account.balance_usd_micros
    );
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(
        log.contains("task succeeded") && !log.contains(&key),
        "log captured, key absent"
    );
}

/// A restart between the upstream submit and the first poll must not submit the task again.
#[tokio::test]
async fn restart_after_upstream_submit_does_not_submit_twice() {
    let fake = crate::fake_ark::FakeArk::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("seedgate.toml");
    std::fs::write(
        &config,
        format!(
            "[engine]\nworkers = 1\nlease_seconds = 2\nidle_poll_ms = 100\nfirst_poll_ms = 2500\n\
             max_poll_interval_ms = 500\nexpected_ms_per_output_second = 0\n\n\
             [fetch]\nallow_private = [\"127.0.0.1/32\"]\n\n\
             [[channels]]\nid = \"volc\"\nprovider = \"ark\"\nbase_url = \"{}\"\napi_key_env = \"{}\"\n\
             resolutions = [\"480p\", \"720p\"]\nmodels = {{ \"seedance-2.0-fast\" = \"doubao-seedance-2-0-fast-260128\" }}\n",
            fake.base_url,
            crate::fake_ark::FAKE_KEY_ENV
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let LiveServer {
        key,
        port,
        address,
        client,
        server,
    } = live_key_and_server(&data, &config).await;
    let response = client
        .post(format!("{address}/v1/videos/generations"))
        .bearer_auth(&key)
        .header("x-request-id", "restart-req-7")
        .json(
            &json!({"model": "seedance-2.0-fast", "operation": "text-to-video", "prompt": "once",
            "resolution": "480p", "duration": 4}),
        )
        .send()
        .await
        .unwrap();
    let (status, task) = decode(response).await;
    assert_eq!(status, 200, "{task}");
    assert_eq!(task["provider"], "ark");
    let started = Instant::now();
    while fake.tasks_created() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never submitted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(server);

    let (server, _) = start(&data, &config, port, false);
    wait_ready(&client, &address).await;
    let id = task["id"].as_str().unwrap();
    let done = wait_terminal(&client, &address, &key, id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");

    // An organization's management token and the key it makes stay out of the log too.
    let org = operator(
        &data,
        &config,
        &["orgs", "create", "--name", "acme", "--balance-usd", "5"],
    );
    assert!(
        org.status.success(),
        "{}",
        String::from_utf8_lossy(&org.stderr)
    );
    let org = String::from_utf8(org.stdout).unwrap();
    let token = org.lines().nth(1).unwrap().to_owned();
    let response = client
        .post(format!("{address}/v1/management/api-keys"))
        .bearer_auth(&token)
        .json(&json!({"name": "made over HTTP"}))
        .send()
        .await
        .unwrap();
    let (status, made) = decode(response).await;
    assert_eq!(status, 201, "{made}");
    let made = made["key"].as_str().unwrap().to_owned();
    let response = client
        .get(format!("{address}/v1/tasks"))
        .bearer_auth(&made)
        .send()
        .await
        .unwrap();
    assert_eq!(decode(response).await.0, 200);
    drop(server);
    assert_eq!(fake.tasks_created(), 1, "submitted upstream exactly once");
    fake.assert_no_violations();

    // A full run at debug level never writes a key to the log.
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(log.contains("submitted upstream"), "the log was captured");
    // The engine's and the provider's lines for the task carry the id of the request that
    // created it.
    assert!(
        log.lines()
            .any(|l| l.contains("submitted upstream") && l.contains("restart-req-7")),
        "the request id reached the provider's log line"
    );
    for (secret, what) in [
        (&key, "the API key"),
        (&token, "the management token"),
        (&made, "the key made over HTTP"),
    ] {
        assert!(!log.contains(secret.as_str()), "{what} leaked into the log");
    }
    assert!(
        !log.contains(crate::fake_ark::FAKE_KEY),
        "the upstream key leaked into the log"
    );
}

#[tokio::test]
async fn a_task_on_a_channel_removed_from_the_config_ends_uncharged() {
    let fake = crate::fake_ark::FakeArk::start().await;
    fake.set_ending(crate::fake_ark::Ending::Never);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("seedgate.toml");
    let with_channel = |id: &str| {
        format!(
            "[engine]\nworkers = 1\nlease_seconds = 2\nidle_poll_ms = 100\nfirst_poll_ms = 200\n\
             max_poll_interval_ms = 500\nexpected_ms_per_output_second = 0\n\n\
             [[channels]]\nid = \"{id}\"\nprovider = \"ark\"\nbase_url = \"{}\"\napi_key_env = \"{}\"\n\
             resolutions = [\"480p\"]\nmodels = {{ \"seedance-2.0-fast\" = \"doubao-seedance-2-0-fast-260128\" }}\n",
            fake.base_url,
            crate::fake_ark::FAKE_KEY_ENV
        )
    };
    std::fs::write(&config, with_channel("volc")).unwrap();
    let data = dir.path().join("data");
    let LiveServer {
        key,
        port,
        address,
        client,
        server,
    } = live_key_and_server(&data, &config).await;
    let response = client
        .post(format!("{address}/v1/videos/generations"))
        .bearer_auth(&key)
        .json(
            &json!({"model": "seedance-2.0-fast", "operation": "text-to-video", "prompt": "orphan",
            "resolution": "480p", "duration": 4}),
        )
        .send()
        .await
        .unwrap();
    let (status, task) = decode(response).await;
    assert_eq!(status, 200, "{task}");
    let started = Instant::now();
    while fake.reads() == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "never polled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(server);

    // The operator moves the account's key to a channel of another name.
    std::fs::write(&config, with_channel("byte")).unwrap();
    let (_server, _) = start(&data, &config, port, false);
    wait_ready(&client, &address).await;
    let id = task["id"].as_str().unwrap();
    let done = wait_terminal(&client, &address, &key, id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "channel_removed", "{done}");
    assert!(done["cost"].is_null(), "{done}");
}
