//! `/metrics` agrees with what was done, and every answer carries its request id.

use std::time::Duration;

use seedgate::store::KeyMode;
use serde_json::json;

use crate::fake_ark::FakeArk;
use crate::helpers::{wait_terminal, TestApp};
use crate::upstream::app_with_channel;

const WAIT: Duration = Duration::from_secs(60);

/// The value of the sample named exactly `series` (name and labels), if the text has it.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

#[tokio::test]
async fn the_metrics_count_what_was_done() {
    let fake = FakeArk::start().await;
    let app = app_with_channel(&fake).await;
    let (live, _) = app.new_key_in_mode(KeyMode::Live, 100_000_000).await;
    let t2v = json!({"model": "seedance-2.0-fast", "prompt": "a red kite", "resolution": "480p",
        "duration": 4});
    let mut charged = 0;
    for key in [&app.key, &app.key, &live] {
        let (status, task) = app.create_with_key(key, &t2v).await;
        assert_eq!(status, 200, "{task}");
        let id = task["id"].as_str().unwrap();
        let done = wait_terminal(&app.client, &app.address, key, id, WAIT).await;
        assert_eq!(done["status"], "completed", "{done}");
        if key == &app.key {
            let cost: rust_decimal::Decimal =
                done["cost"]["amount"].as_str().unwrap().parse().unwrap();
            charged += i64::try_from(cost * rust_decimal::Decimal::from(1_000_000)).unwrap();
        }
    }
    // One content-review refusal, played by the sandbox, for a failure code.
    let refused = app
        .client
        .post(format!("{}/v1/videos/generations", app.address))
        .bearer_auth(&app.key)
        .header("Seedgate-Sandbox-Scenario", "input_moderation")
        .json(&t2v)
        .send()
        .await
        .unwrap();
    let (status, task) = crate::helpers::decode(refused).await;
    assert_eq!(status, 200, "{task}");
    let done = app.wait_terminal(task["id"].as_str().unwrap(), WAIT).await;
    assert_eq!(done["status"], "failed", "{done}");
    let (status, _) = app.create(&json!({"model": "seedance-2.0-fast"})).await;
    assert_eq!(status, 400);
    // A path no route serves is counted under one label, never under the path itself.
    let (status, _) = app.get_path("/v1/no-such-route/vtask_unrouted").await;
    assert_eq!(status, 404);

    let response = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    let create = |status: u16| {
        format!("seedgate_http_requests_total{{route=\"/v1/videos/generations\",method=\"POST\",status=\"{status}\"}}")
    };
    let ended = |provider: &str, status: &str, code: &str| {
        format!("seedgate_tasks_ended_total{{model=\"seedance-2.0-fast\",provider=\"{provider}\",status=\"{status}\",code=\"{code}\"}}")
    };
    let work = |family: &str, provider: &str| {
        format!("seedgate_{family}{{model=\"seedance-2.0-fast\",provider=\"{provider}\"}}")
    };
    for (series, expected) in [
        (create(200), 4.0),
        (create(400), 1.0),
        (
            "seedgate_tasks_created_total{model=\"seedance-2.0-fast\"}".into(),
            4.0,
        ),
        (ended("sandbox", "completed", "none"), 2.0),
        (ended("ark", "completed", "none"), 1.0),
        (
            ended("sandbox", "failed", "InputTextSensitiveContentDetected"),
            1.0,
        ),
        (work("task_queue_wait_seconds_count", "sandbox"), 3.0),
        (work("task_generation_seconds_count", "ark"), 1.0),
        (work("charged_usd_micros_total", "sandbox"), charged as f64),
        ("seedgate_queue_depth".into(), 0.0),
        ("seedgate_webhook_backlog".into(), 0.0),
        (
            "seedgate_ledger_usd_micros{kind=\"reserved\",mode=\"test\"}".into(),
            0.0,
        ),
        (
            "seedgate_channel_breaker_state{channel=\"volc\"}".into(),
            0.0,
        ),
        (
            format!(
                "seedgate_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        ),
    ] {
        assert_eq!(sample(&text, &series), Some(expected), "{series}\n{text}");
    }
    assert!(
        !text.contains("kind=\"charged\""),
        "charges are a counter now"
    );
    let upstream_ok = sample(
        &text,
        "seedgate_upstream_calls_total{channel=\"volc\",outcome=\"ok\"}",
    );
    assert!(
        upstream_ok.is_some_and(|n| n >= 2.0),
        "a create and at least one poll:\n{text}"
    );
    let polls = sample(
        &text,
        "seedgate_http_request_duration_seconds_count{route=\"/v1/tasks/{id}\",method=\"GET\",status=\"200\"}",
    );
    assert!(polls.is_some_and(|n| n >= 3.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "seedgate_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert!(!text.contains("vtask_"), "no series per task");

    // The classic format, for `text/plain`, passes Prometheus's own checker.
    let classic = app
        .client
        .get(format!("{}/metrics", app.address))
        .header("accept", "text/plain")
        .send()
        .await
        .unwrap();
    assert!(classic.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let classic = classic.text().await.unwrap();
    assert!(classic.contains("# TYPE seedgate_http_requests_total counter"));
    assert!(!classic.contains("# EOF"));
    let checked = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut promtool = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool (Debian package prometheus) checks the metrics");
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(classic.as_bytes())
            .unwrap();
        promtool.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty() && checked.stderr.is_empty(),
        "promtool check metrics: {checked:?}"
    );
}

#[tokio::test]
async fn every_answer_carries_its_request_id() {
    let app = TestApp::spawn_without_workers().await;
    let ask = |id: Option<&'static str>| {
        let mut request = app.client.get(format!("{}/v1/models", app.address));
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        request.send()
    };
    let echoed = ask(Some("trace-7f3a")).await.unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-7f3a");
    let minted = ask(None).await.unwrap();
    let id = minted.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(id.starts_with("req_") && id.len() > 10, "{id}");
    let unsafe_id = ask(Some("two words")).await.unwrap();
    assert!(unsafe_id.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    // Unmatched routes and refusals too.
    let missing = app
        .client
        .get(format!("{}/nope", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers().contains_key("x-request-id"));
}

/// `--log-format json` (here `SEEDGATE_LOG_FORMAT=json`): one JSON object per line, each
/// with the fields of its spans, so a request's lines can be found by its id.
#[tokio::test]
async fn json_logs_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("seedgate.toml");
    std::fs::write(&config, "[engine]\nworkers = 1\n").unwrap();
    let data = dir.path().join("data");
    let env = [("SEEDGATE_LOG_FORMAT".to_owned(), "json".to_owned())];
    let (server, key) = crate::restart::start_with_env(&data, &config, true, &env).await;
    let key = key.expect("a development key");
    let address = server.address.clone();
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{address}/v1/videos/generations"))
        .bearer_auth(&key)
        .header("x-request-id", "json-req-42")
        .json(
            &json!({"model": "seedance-2.0-fast", "prompt": "a kite", "resolution": "480p",
            "duration": 4}),
        )
        .send()
        .await
        .unwrap();
    let (status, task) = crate::helpers::decode(response).await;
    assert_eq!(status, 200, "{task}");
    let id = task["id"].as_str().unwrap();
    let done = wait_terminal(&client, &address, &key, id, WAIT).await;
    assert_eq!(done["status"], "completed");
    drop(server);

    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let carries = |line: &serde_json::Value| line.to_string().contains("json-req-42");
    assert!(
        lines
            .iter()
            .any(|l| carries(l) && l["fields"]["message"].as_str() == Some("task succeeded")),
        "the engine's line for the task carries the request id"
    );
    assert!(
        lines
            .iter()
            .any(|l| carries(l) && l["span"]["name"].as_str() == Some("http")),
        "the request's own lines carry it"
    );
}
