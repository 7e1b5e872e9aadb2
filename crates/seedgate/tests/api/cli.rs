//! The operator CLI: keys are created, listed, topped up and revoked against a data dir.

use std::process::Command;
use std::time::Duration;

fn seedgate(data_dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_seedgate"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("SEEDGATE_CONFIG")
        .env(
            "SEEDGATE_DATABASE_URL",
            crate::helpers::database_url(data_dir),
        )
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn keys_lifecycle_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = seedgate(
        dir.path(),
        &[
            "keys",
            "create",
            "--name",
            "ci",
            "--balance-usd",
            "12.5",
            "--test",
        ],
    );
    assert!(ok, "{stderr}");
    let secret = stdout.trim();
    assert!(
        secret.starts_with("sg_test_") && !secret.contains(char::is_whitespace),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "the key alone on stdout");

    let (ok, listing, _) = seedgate(dir.path(), &["keys", "list"]);
    assert!(ok);
    assert!(
        listing.contains("ci") && listing.contains("12.500000") && listing.contains("active"),
        "{listing}"
    );
    assert!(!listing.contains(secret), "list never shows secrets");
    let key_id = listing
        .split_whitespace()
        .find(|w| w.starts_with("key_"))
        .unwrap()
        .to_owned();

    let (ok, out, _) = seedgate(dir.path(), &["keys", "top-up", &key_id, "--usd", "0.5"]);
    assert!(ok);
    assert!(out.contains("13.000000"), "{out}");

    let (ok, _, _) = seedgate(dir.path(), &["keys", "top-up", &key_id, "--usd", "-1"]);
    assert!(!ok, "negative top-ups are refused");
    let (ok, _, stderr) = seedgate(dir.path(), &["keys", "revoke", "key_nope"]);
    assert!(!ok && stderr.contains("no active key"), "{stderr}");

    let (ok, _, _) = seedgate(dir.path(), &["keys", "revoke", &key_id]);
    assert!(ok);
    let (_, listing, _) = seedgate(dir.path(), &["keys", "list"]);
    assert!(listing.contains("revoked"), "{listing}");
}

#[test]
fn organizations_and_their_keys_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = seedgate(
        dir.path(),
        &["orgs", "create", "--name", "acme", "--balance-usd", "20"],
    );
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let [org, token] = lines[..] else {
        panic!("the id and the token, alone: {stdout}")
    };
    assert!(
        org.starts_with("org_") && token.starts_with("sg_mgmt_"),
        "{stdout}"
    );

    let (ok, listing, _) = seedgate(dir.path(), &["orgs", "list"]);
    assert!(ok);
    assert!(
        listing.contains(org) && listing.contains("20.000000") && listing.contains("issued"),
        "{listing}"
    );
    assert!(!listing.contains(token), "list never shows tokens");

    let (ok, out, _) = seedgate(dir.path(), &["orgs", "top-up", org, "--usd", "2.5"]);
    assert!(ok && out.contains("22.500000"), "{out}");
    let (ok, _, stderr) = seedgate(dir.path(), &["orgs", "top-up", "org_nope", "--usd", "1"]);
    assert!(!ok && stderr.contains("no organization"), "{stderr}");

    // A key joins the named organization and spends its balance.
    let (ok, secret, stderr) =
        seedgate(dir.path(), &["keys", "create", "--name", "k", "--org", org]);
    assert!(ok, "{stderr}");
    assert!(secret.trim().starts_with("sg_live_"));
    let (_, keys, _) = seedgate(dir.path(), &["keys", "list"]);
    let row = keys.lines().find(|l| l.contains(" k ")).unwrap();
    assert!(row.contains(org) && row.contains("22.500000"), "{keys}");
    let (ok, _, stderr) = seedgate(
        dir.path(),
        &["keys", "create", "--name", "k", "--org", "org_nope"],
    );
    assert!(!ok && stderr.contains("org_nope"), "{stderr}");

    let (ok, rotated, _) = seedgate(dir.path(), &["orgs", "rotate-token", org]);
    assert!(ok && rotated.trim().starts_with("sg_mgmt_") && rotated.trim() != token);
}

#[tokio::test]
async fn channels_check_reports_reachability_and_key_validity() {
    let fake = crate::fake_ark::FakeArk::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("seedgate.toml");
    let channel = |id: &str, env: &str, base: &str| {
        format!(
            "[[channels]]\nid = \"{id}\"\nprovider = \"ark\"\nbase_url = \"{base}\"\napi_key_env = \"{env}\"\n\
             resolutions = [\"720p\"]\nmodels = {{ \"seedance-2.0\" = \"doubao-seedance-2-0-260128\" }}\ntimeout_seconds = 2\n"
        )
    };
    std::fs::write(
        &config,
        [
            channel("good", crate::fake_ark::FAKE_KEY_ENV, &fake.base_url),
            channel("wrong-key", "SEEDGATE_TEST_WRONG_KEY", &fake.base_url),
            channel(
                "down",
                crate::fake_ark::FAKE_KEY_ENV,
                "http://127.0.0.1:9/api/v3",
            ),
        ]
        .join("\n"),
    )
    .unwrap();
    // The fake upstream runs on this test's runtime: wait for the command off it.
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_seedgate"))
            .args(["channels", "check", "--config"])
            .arg(&config)
            .env(crate::fake_ark::FAKE_KEY_ENV, crate::fake_ark::FAKE_KEY)
            .env("SEEDGATE_TEST_WRONG_KEY", "not-the-key")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        !output.status.success(),
        "a failing channel fails the check"
    );
    let line = |id: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{stdout}"))
            .to_owned()
    };
    assert!(
        line("good").contains("yes") && line("good").contains(" ok "),
        "{stdout}"
    );
    assert!(
        line("wrong-key").contains("fail") && line("wrong-key").contains("401"),
        "{stdout}"
    );
    assert!(line("down").contains(" no "), "{stdout}");
    assert!(
        !stdout.contains(crate::fake_ark::FAKE_KEY) && !stdout.contains("not-the-key"),
        "keys never printed"
    );
}

/// `seedgate <args>` as a client of the server at `url`, with `key`.
fn client_command(url: &str, key: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_seedgate"));
    command
        .args(args)
        .env("SEEDGATE_URL", url)
        .env("SEEDGATE_API_KEY", key);
    command
}

/// Runs the client with `args` in `dir`, against `app` as its test key, off the runtime;
/// returns its stdout once it succeeded.
async fn run_client_in(
    app: &crate::helpers::TestApp,
    dir: &std::path::Path,
    args: &[&str],
) -> String {
    let mut command = client_command(&app.address, &app.key, args);
    command.current_dir(dir);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn generate_json_with_output_saves_the_video_and_prints_only_the_task() {
    let app = crate::helpers::TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("x.mp4");
    let mut command = client_command(
        &app.address,
        &app.key,
        &[
            "generate",
            "--model",
            "seedance-2.0-fast",
            "--prompt",
            "a paper boat",
            "--resolution",
            "480p",
            "--duration",
            "4",
            "--json",
            "-o",
            video.to_str().unwrap(),
        ],
    );
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let task: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is the task JSON alone ({e}): {output:?}"));
    assert_eq!(task["status"], "completed");
    let saved = std::fs::read(&video).expect("the video is saved where -o says");
    assert_eq!(crate::helpers::ffprobe(&saved).codec, "h264");
    assert!(
        stderr.contains(video.to_str().unwrap()),
        "where it went is said on stderr: {stderr}"
    );
}

#[tokio::test]
async fn generate_makes_a_quicktime_draft_and_saves_it_as_mov() {
    let app = crate::helpers::TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let stdout = run_client_in(
        &app,
        dir.path(),
        &[
            "generate",
            "--model",
            "seedance-2.5",
            "--prompt",
            "a paper boat, roughly",
            "--duration",
            "4",
            "--draft",
            "--output-format",
            "mov",
        ],
    )
    .await;
    let id = stdout.split_whitespace().next().unwrap();
    let saved = std::fs::read(dir.path().join(format!("{id}.mov")))
        .unwrap_or_else(|e| panic!("saved as <task id>.mov ({e}): {stdout}"));
    let probe = crate::helpers::ffprobe(&saved);
    assert_eq!(probe.major_brand, "qt  ");
    assert_eq!((probe.width, probe.height), (864, 496));
    let (_, task) = app.task(id).await;
    assert_eq!(task["request"]["draft"], true);
    assert_eq!(task["draft_task_id"], id);

    // Its final, at 720p and in MP4, renders the draft's own request as a task of its own.
    let stdout = run_client_in(
        &app,
        dir.path(),
        &[
            "generate",
            "--model",
            "seedance-2.5",
            "--final",
            id,
            "--resolution",
            "720p",
        ],
    )
    .await;
    let final_id = stdout.split_whitespace().next().unwrap();
    assert_ne!(final_id, id);
    let saved = std::fs::read(dir.path().join(format!("{final_id}.mp4")))
        .unwrap_or_else(|e| panic!("saved as <task id>.mp4 ({e}): {stdout}"));
    let probe = crate::helpers::ffprobe(&saved);
    assert_eq!((probe.width, probe.height), (1280, 720));
    assert!((probe.duration - 4.0).abs() < 0.1, "{}", probe.duration);
    let (_, finished) = app.task(final_id).await;
    assert_eq!(finished["request"]["draft_task_id"], id);
    let cost = |task: &serde_json::Value| {
        let amount = task["cost"]["amount"].as_str().unwrap().replace('.', "");
        amount.parse::<i64>().unwrap()
    };
    assert_eq!(
        100_000_000 - app.balance(&app.account_id).await,
        cost(&task) + cost(&finished),
        "each leg billed once"
    );
}

#[tokio::test]
async fn ctrl_c_on_a_task_already_generating_keeps_following_and_downloads_it() {
    use std::time::{Duration, Instant};

    let fake = crate::fake_ark::FakeArk::start().await;
    fake.set_timing(Duration::ZERO, Duration::from_secs(4));
    let app = crate::upstream::app_with_channel(&fake).await;
    let (key, account) = app
        .new_key_in_mode(seedgate::store::KeyMode::Live, 100_000_000)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("charged.mp4");
    let mut child = client_command(
        &app.address,
        &key,
        &[
            "generate",
            "--model",
            "seedance-2.0-fast",
            "--prompt",
            "a red kite",
            "--resolution",
            "480p",
            "--duration",
            "4",
            "-o",
            video.to_str().unwrap(),
        ],
    )
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    // The answer waits in the pipe until the question is asked.
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"y\n").unwrap();

    let started = Instant::now();
    loop {
        let (_, page) = app.get_path_with_key(&key, "/v1/tasks").await;
        if page["data"][0]["status"] == "processing" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never processing: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past the client's first poll, so its Ctrl-C handler is in place.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());

    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Cancel "),
        "the question was asked: {stderr}"
    );
    assert!(
        stderr.contains("can no longer be cancelled"),
        "the refusal is explained: {stderr}"
    );
    assert!(
        output.status.success(),
        "the charged video is not abandoned: {stdout}{stderr}"
    );
    assert!(stdout.contains("completed"), "{stdout}");
    let saved = std::fs::read(&video).expect("the video is downloaded");
    assert_eq!(crate::helpers::ffprobe(&saved).codec, "h264");
    assert!(app.balance(&account).await < 100_000_000, "it was charged");
}

/// `tasks list` filters and reads as a table, `tasks get` reads as text, `models` shows each
/// model's limits and prices, `completions` writes a script, and `generate --open` opens the
/// task's console page with the desktop's opener.
#[tokio::test]
async fn the_client_lists_describes_and_opens_tasks_and_shows_the_models() {
    let app = crate::helpers::TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    // A stand-in for xdg-open that writes down what it was asked to open.
    let opened = dir.path().join("opened.txt");
    let opener = dir.path().join("xdg-open");
    std::fs::write(
        &opener,
        format!("#!/bin/sh\necho \"$1\" > {}\n", opened.display()),
    )
    .unwrap();
    std::fs::set_permissions(&opener, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut command = client_command(
        &app.address,
        &app.key,
        &[
            "generate",
            "--model",
            "seedance-2.0-fast",
            "--prompt",
            "a kite above the dunes at dusk",
            "--resolution",
            "480p",
            "--duration",
            "4",
            "--open",
        ],
    );
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    command.current_dir(dir.path()).env("PATH", path);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let id = stdout.split_whitespace().next().unwrap().to_owned();
    crate::helpers::wait_until("the opener ran", Duration::from_secs(10), async || {
        opened.exists()
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&opened).unwrap().trim(),
        format!("{}/console#/tasks/{id}", app.address)
    );

    // It followed the task's event stream, not by polling.
    let metrics = app.metrics_text().await;
    let count = |route: &str| {
        metrics
            .lines()
            .find(|line| {
                line.starts_with(&format!(
                    "seedgate_http_requests_total{{route=\"{route}\",method=\"GET\""
                ))
            })
            .and_then(|line| line.rsplit_once(' '))
            .map_or(0.0, |(_, n)| n.parse::<f64>().unwrap())
    };
    assert_eq!(count("/v1/tasks/{id}/events"), 1.0, "{metrics}");
    assert_eq!(count("/v1/tasks/{id}"), 0.0, "{metrics}");

    let list = run_client_in(
        &app,
        dir.path(),
        &["tasks", "list", "--status", "completed", "--limit", "5"],
    )
    .await;
    let row = list
        .lines()
        .find(|line| line.starts_with(&id))
        .unwrap_or_else(|| panic!("{list}"));
    for expected in ["completed", "seedance-2.0-fast", "a kite above the dunes"] {
        assert!(row.contains(expected), "{expected} in {row}");
    }
    assert!(row.contains("just now") || row.contains(" s ago"), "{row}");
    let none = run_client_in(&app, dir.path(), &["tasks", "list", "--status", "failed"]).await;
    assert!(!none.contains(&id), "{none}");

    let shown = run_client_in(&app, dir.path(), &["tasks", "get", &id]).await;
    for expected in [
        "completed",
        "prompt     a kite above the dunes at dusk",
        "480p",
        "result     864×496",
    ] {
        assert!(shown.contains(expected), "{expected} in\n{shown}");
    }
    let json = run_client_in(&app, dir.path(), &["tasks", "get", &id, "--json"]).await;
    let task: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(task["id"], id.as_str());

    let models = run_client_in(&app, dir.path(), &["models"]).await;
    let latest = models
        .lines()
        .find(|line| line.starts_with("seedance-2.5 "))
        .unwrap_or_else(|| panic!("{models}"));
    for expected in ["480p,720p,1080p", "4–30", "30/10/10", "yes"] {
        assert!(latest.contains(expected), "{expected} in {latest}");
    }
    let details: serde_json::Value =
        serde_json::from_str(&run_client_in(&app, dir.path(), &["models", "--json"]).await)
            .unwrap();
    assert_eq!(
        details.as_array().unwrap().len(),
        models.lines().count() - 1
    );

    let script = run_client_in(&app, dir.path(), &["completions", "bash"]).await;
    assert!(
        script.contains("_seedgate()") && script.contains("generate"),
        "{script}"
    );
}
