//! The dependency-fault run: Seedgate's dependencies failing under steady mixed load, one after
//! another, with nothing else disturbed.
//!
//! Two replicas of the real binary share a PostgreSQL server of this test's own (`initdb` into
//! a temporary folder, `pg_ctl` on a free port) and a bucket on a moto of its own. Under a
//! create every half second (sandbox and upstream, every operation, idempotent repeats on the
//! other replica, cancels, polls), PostgreSQL is restarted (`-m fast`), restarted again
//! (`-m immediate`, a crash), stopped for 60 s and started, then moto is frozen for 120 s. A
//! client retries what answered `503` with its idempotency key, as `Retry-After` asks. After
//! each fault every task accepted ends, completed or with an uncharged code; none is unknown to
//! its client, none made upstream twice, and every balance equals its ledger and its opening
//! amount less exactly what its completed tasks cost.
//!
//! On SQLite, a small tmpfs result folder is filled to the last byte while sandbox tasks
//! render, and freed: every task rendered meanwhile completes, rendered once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use seedgate::blobs::Location;
use seedgate::ids::TaskId;
use seedgate::store::{KeyMode, KeySpec};
use serde_json::{json, Value};

use crate::crash::{audit_books, crash_run_seed, engine_config, lossy_upstream, workload};
use crate::helpers::{decode, wait_terminal, MediaServer, Moto, Storage, TestApp};
use crate::restart::{start_with_env, Server};

/// Runs a program as the user PostgreSQL runs as: itself, unless this process is root, which
/// PostgreSQL refuses to run as.
fn as_database_user(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn running_as_root() -> bool {
    let id = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&id.stdout).trim() == "0"
}

/// Where Debian keeps a PostgreSQL program: on the path, or in the newest version's folder.
fn postgres_program(name: &str) -> PathBuf {
    let on_path = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .unwrap();
    if on_path.status.success() {
        return PathBuf::from(String::from_utf8_lossy(&on_path.stdout).trim());
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's programs (Debian package postgresql)")
        .filter_map(|entry| Some(entry.ok()?.path().join("bin").join(name)))
        .filter(|path| path.exists())
        .collect();
    versions.sort_by_key(|path| {
        path.iter()
            .rev()
            .nth(2)
            .and_then(|v| v.to_str()?.parse::<u32>().ok())
    });
    versions
        .pop()
        .expect("initdb and pg_ctl (Debian package postgresql)")
}

/// A PostgreSQL server of one test's own, stopped when dropped.
struct OwnPostgres {
    pg_ctl: PathBuf,
    data: PathBuf,
    port: u16,
    /// The server's options (`pg_ctl start` forgets them; `restart` keeps them).
    options: String,
    _dir: tempfile::TempDir,
}

impl OwnPostgres {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        if running_as_root() {
            let owned = Command::new("chown")
                .args(["postgres:"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(owned.success());
        }
        let data = dir.path().join("data");
        let initdb = as_database_user(&postgres_program("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {}",
            data.display()
        );
        let server = OwnPostgres {
            pg_ctl: postgres_program("pg_ctl"),
            data,
            port,
            options,
            _dir: dir,
        };
        server.start_again();
        server
    }

    fn start_again(&self) {
        self.pg_ctl(&["start", "-o", &self.options]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs `pg_ctl <args>` on this server and waits for it to finish (`-w`).
    fn pg_ctl(&self, args: &[&str]) {
        let log = self.data.with_file_name("postgres.log");
        let out = as_database_user(&self.pg_ctl)
            .args(args)
            .args(["-w", "-t", "60", "-D"])
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = as_database_user(&self.pg_ctl)
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&self.data)
            .output();
    }
}

/// What a fault did to the load, as its clients saw it.
#[derive(Default)]
struct Tally {
    accepted: Vec<(String, String)>,
    /// Answers `503` (with `Retry-After`) and requests that found no server, retried.
    unavailable: usize,
    repeats: usize,
}

/// One client's create: sent to `address`, retried with the same idempotency key while the
/// answer is `503` or none, then, every seventh, repeated on the other replica (the same task
/// must come back), every ninth cancelled, and polled once.
async fn one_client(
    client: reqwest::Client,
    addresses: Arc<Mutex<Vec<String>>>,
    n: usize,
    key: String,
    who: &'static str,
    body: Value,
    tally: Arc<Mutex<Tally>>,
) {
    let address = |shift: usize| {
        let addresses = addresses.lock().unwrap();
        addresses[(n + shift) % addresses.len()].clone()
    };
    let idempotency = format!("dependency-fault-{n}");
    let create = |shift: usize| {
        let (client, key, idempotency, body, tally) = (&client, &key, &idempotency, &body, &tally);
        let started = Instant::now();
        async move {
            loop {
                let sent = client
                    .post(format!("{}/v1/videos/generations", address(shift)))
                    .bearer_auth(key)
                    .header("idempotency-key", idempotency)
                    .json(body)
                    .send()
                    .await;
                let wait = match sent {
                    Ok(response) if response.status() == 503 => {
                        let retry_after = response.headers().get("retry-after").cloned();
                        let (_, error) = decode(response).await;
                        assert!(retry_after.is_some(), "503 without Retry-After: {error}");
                        assert_eq!(error["error"]["code"], "storage_unavailable", "{error}");
                        Duration::from_secs(1)
                    }
                    Ok(response) => break decode(response).await,
                    Err(_) => Duration::from_millis(500),
                };
                tally.lock().unwrap().unavailable += 1;
                assert!(
                    started.elapsed() < Duration::from_secs(300),
                    "a create was refused for five minutes"
                );
                tokio::time::sleep(wait).await;
            }
        }
    };
    let (status, task) = create(0).await;
    match status {
        200 => {}
        402 => return assert_eq!(who, "poor", "{task}"),
        other => panic!("unexpected {other}: {task}"),
    }
    let id = task["id"].as_str().unwrap().to_owned();
    tally
        .lock()
        .unwrap()
        .accepted
        .push((who.to_owned(), id.clone()));
    if n.is_multiple_of(7) {
        let (again, repeat) = create(1).await;
        assert_eq!((again, repeat["id"].as_str()), (200, Some(id.as_str())));
        tally.lock().unwrap().repeats += 1;
    }
    let path = format!("{}/v1/tasks/{id}", address(1));
    if n.is_multiple_of(9) {
        let _ = client.delete(&path).bearer_auth(&key).send().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Ok(response) = client.get(&path).bearer_auth(&key).send().await {
        let status = response.status().as_u16();
        assert!(
            matches!(status, 200 | 503),
            "a poll answered {status} during a fault"
        );
    }
}

/// What `/readyz` of `address` says.
async fn readiness(client: &reqwest::Client, address: &str) -> (u16, Value) {
    match client.get(format!("{address}/readyz")).send().await {
        Ok(response) => decode(response).await,
        Err(e) => (0, json!({ "error": e.to_string() })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarts_and_outages_and_a_frozen_bucket_lose_nothing() {
    let started = Instant::now();
    let (seed, mut rng) = crash_run_seed();
    let postgres = OwnPostgres::start();
    let url = postgres.url();
    let fake = lossy_upstream().await;
    let media = MediaServer::start().await;
    let moto = Moto::dedicated().await;
    let bucket = moto.new_bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("seedgate.toml");
    std::fs::write(&config, engine_config(&fake.base_url)).unwrap();
    let env = [
        ("SEEDGATE_DATABASE_URL", url.clone()),
        ("SEEDGATE_ASSETS_URL", format!("s3://{bucket}/faults")),
        ("AWS_ENDPOINT_URL", moto.endpoint.clone()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
    ]
    .map(|(name, value)| (name.to_owned(), value));

    let store = seedgate::store::connect(&url).await.unwrap();
    let mut keys = HashMap::new();
    for (who, mode, opening) in [
        ("sandbox", KeyMode::Test, 1_000_000_000),
        ("live", KeyMode::Live, 1_000_000_000),
        ("poor", KeyMode::Live, 500_000),
    ] {
        let made = store
            .create_key(&KeySpec::plain(who, mode, opening))
            .await
            .unwrap();
        keys.insert(who, made.secret);
    }
    drop(store);

    let data: Vec<PathBuf> = (0..2)
        .map(|n| dir.path().join(format!("replica-{n}")))
        .collect();
    let mut servers: Vec<Server> = Vec::new();
    for replica in &data {
        servers.push(start_with_env(replica, &config, false, &env).await.0);
    }
    let addresses = Arc::new(Mutex::new(
        servers
            .iter()
            .map(|s| s.address.clone())
            .collect::<Vec<_>>(),
    ));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // The load: one client every half second until told to stop, whatever the faults do.
    let tally = Arc::new(Mutex::new(Tally::default()));
    let (stop_load, mut stopped) = tokio::sync::watch::channel(false);
    let load = {
        let (client, addresses, tally) = (client.clone(), addresses.clone(), tally.clone());
        let keys = keys.clone();
        tokio::spawn(async move {
            let mut clients = tokio::task::JoinSet::new();
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            for n in 0.. {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                let (who, mut body) = workload(&mut rng, &media);
                body["prompt"] = format!("dependency fault {n}").into();
                clients.spawn(one_client(
                    client.clone(),
                    addresses.clone(),
                    n,
                    keys[who].clone(),
                    who,
                    body,
                    tally.clone(),
                ));
            }
            while let Some(done) = clients.join_next().await {
                done.unwrap();
            }
            media
        })
    };

    let steady = Duration::from_secs(15);
    let address0 = addresses.lock().unwrap()[0].clone();
    tokio::time::sleep(steady).await;
    postgres.pg_ctl(&["restart", "-m", "fast"]);
    tokio::time::sleep(steady).await;
    postgres.pg_ctl(&["restart", "-m", "immediate"]);
    tokio::time::sleep(steady).await;

    let database_down = Duration::from_secs(60);
    postgres.pg_ctl(&["stop", "-m", "fast"]);
    tokio::time::sleep(database_down / 2).await;
    let (status, ready) = readiness(&client, &address0).await;
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["reason"].as_str().unwrap().contains("database"),
        "{ready}"
    );
    tokio::time::sleep(database_down / 2).await;
    postgres.start_again();
    tokio::time::sleep(steady).await;

    let bucket_down = Duration::from_secs(
        std::env::var("SEEDGATE_OUTAGE_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120),
    );
    moto.pause();
    tokio::time::sleep(bucket_down / 2).await;
    let (status, ready) = readiness(&client, &address0).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["reason"], "result store does not answer");
    tokio::time::sleep(bucket_down / 2).await;
    moto.resume();
    tokio::time::sleep(steady).await;
    stop_load.send(true).unwrap();
    let _media = match load.await {
        Ok(media) => media,
        Err(failed) => panic!(
            "a client failed: {failed}\nthe replicas' last errors:\n{}",
            last_errors(&dir.path().join("server.log"))
        ),
    };
    let loaded_for = started.elapsed();

    let tally = std::mem::take(&mut *tally.lock().unwrap());
    let addresses = addresses.lock().unwrap().clone();
    crate::crash::wait_until_all_end(
        &client,
        &addresses,
        &keys,
        &tally.accepted,
        Duration::from_secs(300),
    )
    .await;
    // Each replica's task cache was emptied when its change listener subscribed again after
    // each restart: both answer every task as it ended, whichever replica ended it.
    for address in &addresses {
        assert_eq!(readiness(&client, address).await.0, 200);
        for (who, id) in &tally.accepted {
            let response = client
                .get(format!("{address}/v1/tasks/{id}"))
                .bearer_auth(&keys[who.as_str()])
                .send()
                .await
                .unwrap();
            let (status, task) = decode(response).await;
            assert_eq!(status, 200, "{task}");
            assert!(
                matches!(task["status"].as_str(), Some("completed" | "failed")),
                "{address} answers {id} stale: {task}"
            );
        }
    }
    drop(servers);

    let store = seedgate::store::connect(&url).await.unwrap();
    let books = audit_books(&*store, &tally.accepted).await;
    assert_eq!(
        fake.tasks_created(),
        books.upstream_ids.len(),
        "upstream tasks created vs adopted"
    );
    // The only endings besides `completed` are the clients' own cancels: no fault of a
    // dependency ended a task.
    let mut endings: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, id) in &tally.accepted {
        let task = store.task(&TaskId::new(id)).await.unwrap().unwrap();
        let ending = match task.error_code.clone() {
            Some(code) => code,
            None => task.state.as_str().to_owned(),
        };
        *endings.entry(ending).or_default() += 1;
    }
    let failed = tally.accepted.len() - books.completed;
    assert!(
        endings
            .keys()
            .all(|ending| ["succeeded", "cancelled"].contains(&ending.as_str())),
        "{endings:?}"
    );
    println!(
        "dependency faults seed={seed}: 2 replicas, PostgreSQL restarted (fast, immediate) and \
         stopped {} s, the bucket frozen {} s, under {:.0} s of load: {} tasks accepted, {} \
         completed, {failed} cancelled by their clients ({endings:?}), {} answers 503 or none \
         retried, {} idempotent repeats, {} upstream tasks, 0 lost, 0 duplicates, balance drift \
         {} µUSD, {:.0} s",
        database_down.as_secs(),
        bucket_down.as_secs(),
        loaded_for.as_secs_f64(),
        tally.accepted.len(),
        books.completed,
        tally.unavailable,
        tally.repeats,
        books.upstream_ids.len(),
        books.drift,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(books.drift, 0);
}

/// The last error lines of a server log, to say why a request failed.
fn last_errors(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let errors: Vec<&str> = text.lines().filter(|line| line.contains("ERROR")).collect();
    errors[errors.len().saturating_sub(20)..].join("\n")
}

/// A tmpfs mounted on a folder for one test's result files, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results");
        std::fs::create_dir(&path).unwrap();
        let mut mount = privileged("mount");
        mount
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(&path);
        let out = mount.output().unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root or passwordless sudo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { path, _dir: dir }
    }

    /// Writes one file until the disk has no byte left.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![7u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        while file.write_all(&block[..1]).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = privileged("umount").arg(&self.path).output();
    }
}

fn privileged(program: &str) -> Command {
    if running_as_root() {
        Command::new(program)
    } else {
        let mut command = Command::new("sudo");
        command.args(["-n", program]);
        command
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_result_disk_is_waited_out_and_every_task_rendered_meanwhile_completes() {
    let disk = SmallDisk::mount(16);
    let app = TestApp::spawn_on(
        Storage::Local,
        |c| c.assets.url = Some(Location::Folder(disk.path.clone())),
        true,
    )
    .await;
    let body = json!({"model": "seedance-2.0-fast", "operation": "text-to-video",
        "prompt": "a full disk", "resolution": "480p", "duration": 4, "generate_audio": false});

    let opening = app.balance(&app.account_id).await;
    let filler = disk.fill();
    let full_for = Duration::from_secs(30);
    let started = Instant::now();
    let mut created = Vec::new();
    while started.elapsed() < full_for {
        let (status, task) = app.create(&body).await;
        assert_eq!(status, 200, "creates need no room for results: {task}");
        created.push(task["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let (status, ready) = app.get_path("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["reason"], "result store cannot be written");
    let (_, first) = app.task(&created[0]).await;
    assert_eq!(first["status"], "processing", "{first}");

    std::fs::remove_file(filler).unwrap();
    let freed = Instant::now();
    let mut cost = 0;
    for id in &created {
        let done = wait_terminal(
            &app.client,
            &app.address,
            &app.key,
            id,
            Duration::from_secs(120),
        )
        .await;
        assert_eq!(done["status"], "completed", "{done}");
        let row = app.store.task(&TaskId::new(id)).await.unwrap().unwrap();
        assert_eq!(row.attempts, 1, "{id} was rendered more than once");
        cost += row.cost_usd_micros.unwrap();
    }
    let ledger = app.store.ledger_sum(&app.account_id).await.unwrap();
    assert_eq!(app.balance(&app.account_id).await, ledger);
    assert_eq!(ledger, opening - cost, "ledger vs completed costs");
    assert_eq!(app.get_path("/readyz").await.0, 200);
    println!(
        "full result disk for {} s: {} tasks accepted, all completed, the last {:.0} s after \
         the disk was freed, each rendered once, 0 µUSD drift",
        full_for.as_secs(),
        created.len(),
        freed.elapsed().as_secs_f64()
    );
}
