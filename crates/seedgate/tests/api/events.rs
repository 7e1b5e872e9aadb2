//! Live progress over Server-Sent Events: a task's stream and a key's stream carry every status
//! change with the queue position and an ETA, and a reconnect with `Last-Event-ID` loses
//! nothing.

use std::time::Duration;

use seedgate::engine::Outcome;
use serde_json::{json, Value};

use crate::helpers::TestApp;

/// One event as the stream sent it.
#[derive(Debug)]
pub(crate) struct Sent {
    pub(crate) event: String,
    pub(crate) id: String,
    pub(crate) data: Value,
}

/// An open event stream, read an event at a time.
pub(crate) struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    pub(crate) async fn open(app: &TestApp, path: &str, last_event_id: Option<&str>) -> Self {
        let mut request = app
            .client
            .get(format!("{}{path}", app.address))
            .bearer_auth(&app.key);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event; None once the stream has ended or nothing came within 10 s.
    pub(crate) async fn next(&mut self) -> Option<Sent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut sent = Sent {
                    event: String::new(),
                    id: String::new(),
                    data: Value::Null,
                };
                for line in block.lines() {
                    match line.split_once(':') {
                        Some(("event", value)) => sent.event = value.trim().to_owned(),
                        Some(("id", value)) => sent.id = value.trim().to_owned(),
                        Some(("data", value)) => sent.data = serde_json::from_str(value).unwrap(),
                        // A comment (`:` first) keeps the connection alive.
                        _ => {}
                    }
                }
                if !sent.event.is_empty() {
                    return Some(sent);
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .ok()?
                .unwrap()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

fn task_body() -> Value {
    json!({"model": "seedance-2.0-fast", "prompt": "a paper kite", "resolution": "480p",
        "duration": 4, "generate_audio": false})
}

async fn create(app: &TestApp) -> String {
    let (status, created) = app.create(&task_body()).await;
    assert_eq!(status, 200, "{created}");
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_tasks_stream_carries_each_status_and_a_reconnect_replays_what_was_missed() {
    let app = TestApp::spawn_without_workers().await;
    let first = create(&app).await;
    let id = create(&app).await;
    let mut stream = Stream::open(&app, &format!("/v1/tasks/{id}/events"), None).await;
    let pending = stream.next().await.unwrap();
    assert_eq!(
        (pending.event.as_str(), pending.id.as_str()),
        ("task.pending", "1")
    );
    assert_eq!(pending.data["queue_position"], 1, "the first task is ahead");
    assert_eq!(
        pending.data["eta_seconds"],
        Value::Null,
        "nothing measured yet"
    );
    assert_eq!(pending.data["task"]["request"]["prompt"], "a paper kite");

    while app.engine.run_one().await.unwrap() == Outcome::Done {}
    let mut seen = Vec::new();
    while let Some(event) = stream.next().await {
        seen.push((event.event.clone(), event.id.clone()));
        if event.event == "task.completed" {
            assert!(
                event.data["task"]["video_url"].is_string(),
                "{:?}",
                event.data
            );
        }
    }
    let statuses: Vec<&str> = seen
        .iter()
        .map(|(event, _)| event.as_str())
        .filter(|event| *event != "task.progress")
        .collect();
    assert_eq!(statuses, ["task.processing", "task.completed"], "{seen:?}");

    // Back after the pending event: what followed is replayed, then the stream ends.
    let mut again = Stream::open(&app, &format!("/v1/tasks/{id}/events"), Some("1")).await;
    let replayed = again.next().await.unwrap();
    assert_eq!(
        (replayed.event.as_str(), replayed.id.as_str()),
        ("task.processing", "2")
    );
    let last = again.next().await.unwrap();
    assert_eq!(
        (last.event.as_str(), last.id.as_str()),
        ("task.completed", "3")
    );
    assert!(again.next().await.is_none());
    let mut done = Stream::open(&app, &format!("/v1/tasks/{id}/events"), Some("3")).await;
    assert!(done.next().await.is_none(), "nothing was missed");

    // The tasks measured since give the next one an ETA.
    let (_, first_task) = app.task(&first).await;
    assert_eq!(first_task["status"], "completed");
    let next = create(&app).await;
    let mut stream = Stream::open(&app, &format!("/v1/tasks/{next}/events"), None).await;
    let pending = stream.next().await.unwrap();
    assert_eq!(pending.data["queue_position"], 0);
    assert!(
        pending.data["eta_seconds"].as_u64().is_some_and(|s| s >= 1),
        "{:?}",
        pending.data
    );

    let (status, _) = app
        .get_path("/v1/tasks/vtask_01JF3Q7Z8X9Y0A1B2C3D4E5F6G/events")
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_keys_stream_follows_all_its_tasks_and_resumes_after_its_last_event() {
    let app = TestApp::spawn_without_workers().await;
    let mut stream = Stream::open(&app, "/v1/tasks/events", None).await;
    let ids = [create(&app).await, create(&app).await];
    // Another key's task is not this key's business.
    let (other_key, _) = app.new_key(100_000_000).await;
    let (status, _) = app.create_with_key(&other_key, &task_body()).await;
    assert_eq!(status, 200);

    let mut events = Vec::new();
    for id in &ids {
        let event = stream.next().await.unwrap();
        assert_eq!(
            (event.event.as_str(), &event.data["task_id"]),
            ("task.pending", &json!(id))
        );
        events.push(event);
    }
    while app.engine.run_one().await.unwrap() == Outcome::Done {}
    let mut completed = 0;
    while completed < 2 {
        let event = stream.next().await.expect("every task's end");
        assert!(
            ids.contains(&event.data["task_id"].as_str().unwrap().to_owned()),
            "{event:?}"
        );
        completed += usize::from(event.event == "task.completed");
        events.push(event);
    }
    let stamps: Vec<i64> = events.iter().map(|e| e.id.parse().unwrap()).collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");

    // Resuming after the first event brings every task changed since.
    let mut resumed = Stream::open(&app, "/v1/tasks/events", Some(&events[0].id)).await;
    let mut ended = Vec::new();
    while ended.len() < 2 {
        let event = resumed.next().await.expect("the changes since");
        if event.event == "task.completed" {
            ended.push(event.data["task_id"].as_str().unwrap().to_owned());
        }
    }
    ended.sort();
    let mut expected = ids.to_vec();
    expected.sort();
    assert_eq!(ended, expected);
}

/// A waiting task's stream hears its place move when a task ahead leaves the queue.
#[tokio::test]
async fn a_waiting_tasks_place_moves_as_the_queue_does() {
    let app = TestApp::spawn_with(|config| config.engine.queue_refresh_ms = 100, false).await;
    let ahead = create(&app).await;
    let id = create(&app).await;
    let mut stream = Stream::open(&app, &format!("/v1/tasks/{id}/events"), None).await;
    let pending = stream.next().await.unwrap();
    assert_eq!(pending.data["queue_position"], 1);
    let (status, _) = app.cancel(&ahead).await;
    assert_eq!(status, 200);
    let moved = stream.next().await.unwrap();
    assert_eq!(
        (moved.event.as_str(), moved.id.as_str()),
        ("task.progress", "1")
    );
    assert_eq!(moved.data["queue_position"], 0, "{:?}", moved.data);
    assert!(moved.data.get("task").is_none(), "{:?}", moved.data);
}
