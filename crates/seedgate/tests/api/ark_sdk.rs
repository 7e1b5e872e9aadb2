//! ByteDance's official Ark SDK for Python, unchanged but for its base URL, creates, reads,
//! lists and deletes tasks on a live server, and sees refusals as its own error types with
//! Ark's codes, ours beside them (`tests/clients/ark_sdk.py`; `pip install
//! volcengine-python-sdk`).

use std::process::Command;

use seedgate::engine::Outcome;

use crate::helpers::TestApp;

fn run_sdk(app: &TestApp, args: &[&str]) -> String {
    let python = std::env::var("SEEDGATE_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/ark_sdk.py");
    let output = Command::new(&python)
        .arg(script)
        .args(args)
        .env("SEEDGATE_ARK_BASE_URL", format!("{}/api/v3", app.address))
        .env("SEEDGATE_API_KEY", &app.key)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e})"));
    assert!(
        output.status.success(),
        "the Ark SDK failed against the server:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

// The SDK runs as a child process while this runtime serves it: a second thread keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_ark_sdk_works_unchanged() {
    let app = TestApp::spawn_without_workers().await;
    let queued = tokio::task::block_in_place(|| run_sdk(&app, &["queued"]));
    let (kept, draft) = queued.split_once(' ').unwrap();
    while app.engine.run_one().await.unwrap() == Outcome::Done {}
    let final_id = tokio::task::block_in_place(|| run_sdk(&app, &["done", kept, draft]));
    while app.engine.run_one().await.unwrap() == Outcome::Done {}
    let (_, made) = app.task(&final_id.replacen("cgt-", "vtask_", 1)).await;
    assert_eq!(made["status"], "completed", "{made}");
    assert_eq!(made["result"]["height"], 720);
    assert_eq!(
        made["request"]["draft_task_id"],
        draft.replacen("cgt-", "vtask_", 1)
    );
}
