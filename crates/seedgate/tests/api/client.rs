//! The client commands of the real binary against a live sandbox server: `generate` (to a
//! playable MP4, or the final task as JSON), `quote`, `tasks` and `models`.

use std::process::Output;

use serde_json::Value;

use crate::helpers::{ffprobe, png_bytes, TestApp};

/// Runs `seedgate <args>` as a client of `app`, off the runtime the server runs on.
async fn seedgate(app: &TestApp, args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (url, key) = (app.address.clone(), app.key.clone());
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_seedgate"))
            .args(&args)
            .env("SEEDGATE_URL", url)
            .env("SEEDGATE_API_KEY", key)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test]
async fn generate_saves_a_playable_video_and_prints_its_cost() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("kite.mp4");
    let frame = dir.path().join("first.png");
    std::fs::write(&frame, png_bytes(640, 360, 90)).unwrap();
    let output = seedgate(
        &app,
        &[
            "generate",
            "--model",
            "seedance-2.0-fast",
            "--prompt",
            "the kite lifts",
            "--resolution",
            "480p",
            "--duration",
            "4",
            "--image",
            frame.to_str().unwrap(),
            "-o",
            video.to_str().unwrap(),
        ],
    )
    .await;
    let printed = stdout(&output);
    assert!(
        printed.contains("completed") && printed.contains("cost $"),
        "{printed}"
    );
    assert!(printed.contains(video.to_str().unwrap()), "{printed}");
    let probe = ffprobe(&std::fs::read(&video).unwrap());
    assert_eq!(probe.codec, "h264");
    assert!((probe.duration - 4.0).abs() < 0.2, "{}", probe.duration);

    // --json: the final task object alone, for scripts.
    let output = seedgate(
        &app,
        &[
            "generate",
            "--model",
            "seedance-2.0-fast",
            "--prompt",
            "again",
            "--resolution",
            "480p",
            "--duration",
            "4",
            "--json",
        ],
    )
    .await;
    let task: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(task["status"], "completed");
    assert_eq!(task["operation"], "text-to-video");
    let id = task["id"].as_str().unwrap();

    let listing = stdout(&seedgate(&app, &["tasks", "list"]).await);
    assert!(
        listing.contains(id) && listing.contains("completed"),
        "{listing}"
    );
    let one: Value = serde_json::from_str(&stdout(
        &seedgate(&app, &["tasks", "get", id, "--json"]).await,
    ))
    .unwrap();
    assert_eq!(one["id"], id);
    // A finished task cannot be cancelled: the API's refusal, and a failing exit.
    let refused = seedgate(&app, &["tasks", "cancel", id]).await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("task_not_cancellable"));
}

#[tokio::test]
async fn quote_prices_without_creating_and_models_lists_them() {
    let app = TestApp::spawn_without_workers().await;
    let printed = stdout(
        &seedgate(
            &app,
            &[
                "quote",
                "--model",
                "seedance-2.0",
                "--prompt",
                "p",
                "--resolution",
                "720p",
                "--duration",
                "5",
            ],
        )
        .await,
    );
    assert!(
        printed.contains("tokens") && printed.contains('$') && printed.contains('¥'),
        "{printed}"
    );
    app.assert_nothing_written().await;
    let refused = seedgate(
        &app,
        &[
            "quote",
            "--model",
            "seedance-2.0",
            "--prompt",
            "p",
            "--resolution",
            "8k",
        ],
    )
    .await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("resolution (400)"),
        "{stderr}"
    );

    let models = stdout(&seedgate(&app, &["models"]).await);
    for model in ["seedance-2.0", "seedance-2.0-fast", "seedance-2.0-mini"] {
        assert!(
            models
                .lines()
                .any(|line| line.starts_with(&format!("{model} "))),
            "{models}"
        );
    }
    let no_key = tokio::task::spawn_blocking({
        let url = app.address.clone();
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_seedgate"))
                .args(["models", "--url", &url])
                .env_remove("SEEDGATE_API_KEY")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(!no_key.status.success());
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("api-key"));
}

/// Ctrl-C while a task runs asks whether to cancel it; `y` cancels it.
#[tokio::test]
async fn ctrl_c_offers_to_cancel_the_task() {
    use std::io::Write;
    use std::process::Stdio;

    // No workers: the task stays pending, so a cancel is always possible.
    let app = TestApp::spawn_without_workers().await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_seedgate"))
        .args([
            "generate",
            "--model",
            "seedance-2.0-fast",
            "--prompt",
            "p",
            "--resolution",
            "480p",
        ])
        .env("SEEDGATE_URL", &app.address)
        .env("SEEDGATE_API_KEY", &app.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while app.store.count_tasks(&app.account_id).await.unwrap() == 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "never created"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    child.stdin.take().unwrap().write_all(b"y\n").unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("Cancel vtask_") && stderr.contains("cancelled"),
        "{stderr}"
    );
    let (_, page) = app.get_path("/v1/tasks").await;
    assert_eq!(page["data"][0]["status"], "failed");
    assert_eq!(page["data"][0]["cancelled"], true);
}
