//! A `kill -9` of the server loses no task: after a restart on the same data dir, every queued
//! and half-rendered task finishes, and money adds up.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::json;

use crate::fake_ark::{FAKE_KEY, FAKE_KEY_ENV};
use crate::helpers::{decode, wait_terminal};

/// A process of the real binary serving on a port it chose itself (`--listen 127.0.0.1:0`): no
/// port is picked, released and bound again later, when another test may have taken it.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`, as the server logged it once bound. A restarted server has
    /// another one.
    pub address: String,
    /// Copies the server's log; done once the process is gone and its last line is written.
    log: Option<std::thread::JoinHandle<()>>,
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
        // A test reads the log once the server is dropped: every line must be in it by then.
        if let Some(log) = self.log.take() {
            let _ = log.join();
        }
    }
}

/// Runs `command` (a `seedgate serve --listen 127.0.0.1:0 …`), its log (standard error) copied
/// to `log` when given, and returns once the server has logged the address it bound and
/// answers there; with the development key it printed, when `read_key` (a first start).
pub async fn launch(
    mut command: Command,
    log: Option<PathBuf>,
    read_key: bool,
) -> (Server, Option<String>) {
    // The address is read from the server's own `seedgate listening` line (info level).
    if !command.get_envs().any(|(name, _)| name == "RUST_LOG") {
        command.env("RUST_LOG", "info,sqlx=warn");
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the seedgate binary starts");
    let stderr = child.stderr.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let mut server = Server {
        child,
        address: String::new(),
        log: Some(std::thread::spawn(move || copy_log(stderr, log, bound_tx))),
    };
    let (key_tx, key_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        // The key is printed before anything else, on a first start only.
        let key = lines.by_ref().take(4).find_map(|line| {
            line.trim()
                .starts_with("sg_")
                .then(|| line.trim().to_owned())
        });
        let _ = key_tx.send(key);
        lines.for_each(drop);
    });
    let bound = match tokio::time::timeout(Duration::from_secs(60), bound_rx).await {
        Ok(Ok(bound)) => bound,
        Ok(Err(_)) => panic!(
            "the server exited before listening ({:?})",
            server.child.wait()
        ),
        Err(_) => panic!("the server did not listen within a minute"),
    };
    server.address = format!("http://{bound}");
    wait_ready(&reqwest::Client::new(), &server.address).await;
    let key = if read_key {
        key_rx.await.ok().flatten()
    } else {
        None
    };
    (server, key)
}

/// Copies a server's log lines to `log` (one write per line, so servers sharing the file do
/// not interleave within a line), sending the address of its `seedgate listening` line.
fn copy_log(
    stderr: std::process::ChildStderr,
    log: Option<PathBuf>,
    bound: tokio::sync::oneshot::Sender<String>,
) {
    let mut file = log.map(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
    });
    let mut bound = Some(bound);
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if line.contains("seedgate listening") {
            if let (Some(address), Some(sender)) = (listening_address(&line), bound.take()) {
                let _ = sender.send(address);
            }
        }
        // Without a log the lines are still read to the end: a full pipe would stall the server.
        if let Some(file) = &mut file {
            let _ = file.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// The address of a `seedgate listening` line, in either log format.
fn listening_address(line: &str) -> Option<String> {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
        return json["fields"]["addr"].as_str().map(str::to_owned);
    }
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("addr="))
        .map(str::to_owned)
}

/// Runs an operator command of the real binary against a data dir and config.
pub(crate) fn operator(data: &Path, config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_seedgate"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
        .env("SEEDGATE_DATABASE_URL", crate::helpers::database_url(data))
        .env(FAKE_KEY_ENV, FAKE_KEY)
        .output()
        .unwrap()
}

/// Starts the real binary, its log appended to `server.log` beside the data dir; on a first
/// start, also reads the development key it prints.
pub async fn start(data_dir: &Path, config: &Path, first: bool) -> (Server, Option<String>) {
    start_with_env(data_dir, config, first, &[]).await
}

/// [`start`] with more environment for the server (S3 settings, say).
pub async fn start_with_env(
    data_dir: &Path,
    config: &Path,
    first: bool,
    env: &[(String, String)],
) -> (Server, Option<String>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_seedgate"));
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--config")
        .arg(config)
        .env(
            "SEEDGATE_DATABASE_URL",
            crate::helpers::database_url(data_dir),
        )
        .env("RUST_LOG", "debug,hyper=info,h2=info,reqwest=debug")
        // The fake upstream's key, for configs whose channels name it.
        .env(FAKE_KEY_ENV, FAKE_KEY)
        .envs(env.iter().map(|(name, value)| (name, value)));
    launch(command, Some(data_dir.with_file_name("server.log")), first).await
}

/// The real server, and a live key its operator made before starting it.
struct LiveServer {
    key: String,
    client: reqwest::Client,
    server: Server,
}

async fn live_key_and_server(data: &Path, config: &Path) -> LiveServer {
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
    let (server, _) = start(data, config, false).await;
    LiveServer {
        key,
        client: reqwest::Client::new(),
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
    let client = reqwest::Client::new();

    // A stdout line is printed only once: the key must come back on the first start.
    let (server, key) = start(&data, &config, true).await;
    let key = key.expect("development key printed on first start");
    let address = server.address.clone();
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
    // Once the first render has started, kill the process without warning.
    let started = Instant::now();
    loop {
        let response = client
            .get(format!("{address}/v1/tasks/{}", ids[0]))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        let (_, task) = decode(response).await;
        if task["status"] == "processing" {
            break;
        }
        assert_eq!(task["status"], "pending", "{task}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the render never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(server);

    let (server, _) = start(&data, &config, false).await;
    let address = server.address.clone();
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
        client,
        server,
    } = live_key_and_server(&data, &config).await;
    let address = server.address.clone();
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
    // Killed once the submission is recorded and logged: the log checks below read that line
    // (a kill between the upstream's answer and the record is the reconciliation tests' case).
    let log_path = dir.path().join("server.log");
    let submitted =
        || std::fs::read_to_string(&log_path).is_ok_and(|log| log.contains("submitted upstream"));
    while fake.tasks_created() == 0 || !submitted() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never submitted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(server);

    let (server, _) = start(&data, &config, false).await;
    let address = server.address.clone();
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
        client,
        server,
    } = live_key_and_server(&data, &config).await;
    let address = server.address.clone();
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
    let (server, _) = start(&data, &config, false).await;
    let address = server.address.clone();
    let id = task["id"].as_str().unwrap();
    let done = wait_terminal(&client, &address, &key, id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "channel_removed", "{done}");
    assert!(done["cost"].is_null(), "{done}");
}
