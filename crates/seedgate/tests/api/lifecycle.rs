//! Cancel, read, list and download rules of the task lifecycle.

use std::time::Duration;

use seedgate::engine::Outcome;
use serde_json::{json, Value};

use crate::helpers::{ffprobe, Storage, TestApp};

fn small_task(prompt: &str) -> Value {
    json!({"model": "seedance-2.0-fast", "operation": "text-to-video", "prompt": prompt,
        "resolution": "480p", "duration": 4, "generate_audio": false})
}

async fn drain(app: &TestApp) {
    while app.engine.run_one().await.unwrap() == Outcome::Done {}
}

#[tokio::test]
async fn cancel_of_a_queued_task_releases_the_reservation() {
    let app = TestApp::spawn_without_workers().await;
    let (status, created) = app.create(&small_task("to be cancelled")).await;
    assert_eq!(status, 200);
    // The platform's fields: `created`/`updated` in Unix seconds, no `error` until one.
    assert_eq!(created["created"], created["created_at"]);
    assert!(created["updated"].as_i64().is_some());
    assert!(created.get("error").is_none(), "{created}");
    let id = created["id"].as_str().unwrap();
    let (status, same) = app.get_path(&format!("/v1/videos/generations/{id}")).await;
    assert_eq!((status, &same["id"]), (200, &created["id"]));
    assert!(app.balance(&app.account_id).await < 100_000_000);

    let (status, cancelled) = app.cancel(id).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "failed");
    assert_eq!(cancelled["cancelled"], true);
    assert_eq!(cancelled["cancellation_status"], "cancelled");
    assert_eq!(app.balance(&app.account_id).await, 100_000_000);
    assert_eq!(
        app.store.ledger_sum(&app.account_id).await.unwrap(),
        100_000_000
    );

    // Cancelling again is harmless, and the engine never picks the task up.
    let (status, again) = app.cancel_by_post(id).await;
    assert_eq!(status, 200);
    assert_eq!(again["cancelled"], true);
    assert_eq!(app.engine.run_one().await.unwrap(), Outcome::Empty);
    let (_, read) = app.task(id).await;
    assert_eq!(read["status"], "failed");
    assert_eq!(read["cancelled"], true);
}

#[tokio::test]
async fn cancel_of_a_finished_task_is_409() {
    let app = TestApp::spawn_without_workers().await;
    let (_, created) = app.create(&small_task("finish me")).await;
    let id = created["id"].as_str().unwrap();
    drain(&app).await;
    let (_, done) = app.task(id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let balance = app.balance(&app.account_id).await;

    for (status, body) in [app.cancel(id).await, app.cancel_by_post(id).await] {
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["code"], "task_not_cancellable");
    }
    assert_eq!(app.balance(&app.account_id).await, balance);
}

#[tokio::test]
async fn another_accounts_task_is_404() {
    let app = TestApp::spawn_without_workers().await;
    let (_, created) = app.create(&small_task("mine")).await;
    let id = created["id"].as_str().unwrap();
    let (other_key, _) = app.new_key(1_000_000).await;
    let (status, body) = app
        .get_path_with_key(&other_key, &format!("/v1/tasks/{id}"))
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "async_task_not_found");
    assert_eq!(
        body["error"]["message"],
        "Task not found or no longer available."
    );
    let (status, _) = app.task("vtask_01JZZZZZZZZZZZZZZZZZZZZZZZ").await;
    assert_eq!(status, 404);
    // Nor can the other account cancel it.
    let response = app
        .client
        .delete(format!("{}/v1/tasks/{id}", app.address))
        .bearer_auth(&other_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let (_, mine) = app.task(id).await;
    assert_eq!(mine["status"], "pending");
}

#[tokio::test]
async fn list_pages_newest_first_with_a_cursor() {
    let app = TestApp::spawn_without_workers().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let (_, created) = app.create(&small_task(&format!("task {n}"))).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut path = "/v1/tasks?limit=2".to_owned();
    loop {
        let (status, page) = app.get_path(&path).await;
        assert_eq!(status, 200, "{page}");
        for task in page["data"].as_array().unwrap() {
            seen.push(task["id"].as_str().unwrap().to_owned());
        }
        if page["has_more"] == false {
            assert!(page["next_cursor"].is_null());
            break;
        }
        path = format!(
            "/v1/tasks?limit=2&after={}",
            page["next_cursor"].as_str().unwrap()
        );
    }
    assert_eq!(seen, ids);

    let (_, pending) = app
        .get_path("/v1/tasks?status=pending&model=seedance-2.0-fast")
        .await;
    assert_eq!(pending["data"].as_array().unwrap().len(), 5);
    let (_, completed) = app.get_path("/v1/tasks?status=completed").await;
    assert_eq!(completed["data"].as_array().unwrap().len(), 0);
    let (status, bad) = app.get_path("/v1/tasks?status=done").await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["code"], "invalid_status");
    let (status, bad) = app.get_path("/v1/tasks?limit=0").await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"]["code"], "invalid_limit");
}

/// A finished task of a fresh server keeping its files in `storage`.
async fn finished_on(storage: Storage) -> (TestApp, Value) {
    let app = TestApp::spawn_on(storage, |_| {}, true).await;
    let (_, created) = app.create(&small_task("download me")).await;
    let done = app
        .wait_terminal(created["id"].as_str().unwrap(), Duration::from_secs(120))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    (app, done)
}

#[tokio::test]
async fn tampered_or_unsigned_download_is_403() {
    for storage in Storage::BOTH {
        tampered_or_unsigned_download_is_403_on(storage).await;
    }
}

async fn tampered_or_unsigned_download_is_403_on(storage: Storage) {
    let (app, done) = finished_on(storage).await;
    let url = done["video_url"].as_str().unwrap();
    let (status, _) = app.download(url).await;
    assert_eq!(status, 200);

    let (base, query) = url.split_once('?').unwrap();
    let tampered_sig = format!("{base}?{}", query.replace("sig=", "sig=00"));
    let later_exp = {
        let exp: u64 = query
            .split('&')
            .find_map(|p| p.strip_prefix("exp="))
            .unwrap()
            .parse()
            .unwrap();
        url.replace(&format!("exp={exp}"), &format!("exp={}", exp + 1))
    };
    let other_file = url.replace("video.mp4", "last_frame.png");
    let garbled_exp = format!("{base}?exp=soon&sig=00");
    for bad in [
        tampered_sig,
        later_exp,
        other_file,
        base.to_owned(),
        garbled_exp,
    ] {
        let (status, body) = app.download(&bad).await;
        assert_eq!(status, 403, "{bad}: {}", String::from_utf8_lossy(&body));
        let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(error["error"]["code"], "invalid_signature");
    }
}

#[tokio::test]
async fn downloads_stream_whole_files_and_byte_ranges() {
    for storage in Storage::BOTH {
        downloads_stream_whole_files_and_byte_ranges_on(storage).await;
    }
}

async fn downloads_stream_whole_files_and_byte_ranges_on(storage: Storage) {
    let (app, done) = finished_on(storage).await;
    let url = done["video_url"].as_str().unwrap();
    let response = app.client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let mp4 = response.bytes().await.unwrap().to_vec();
    assert_eq!(headers["content-type"], "video/mp4");
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(headers["content-length"], mp4.len().to_string().as_str());
    assert_eq!(ffprobe(&mp4).codec, "h264");
    let len = mp4.len();

    // Each range: what is asked, which bytes answer it.
    for (range, bytes) in [
        ("bytes=0-99".to_owned(), 0..100),
        ("bytes=0-0".to_owned(), 0..1),
        ("bytes=-100".to_owned(), len - 100..len),
        (format!("bytes={}-", len - 10), len - 10..len),
        (format!("bytes={}-{}", len - 1, len + 1000), len - 1..len),
        (format!("bytes=-{}", len + 5), 0..len),
    ] {
        let (status, headers, body) = app.download_range(url, &range).await;
        assert_eq!(status, 206, "{storage:?} {range}");
        assert_eq!(body, mp4[bytes.clone()], "{storage:?} {range}");
        assert_eq!(
            headers["content-range"],
            format!("bytes {}-{}/{len}", bytes.start, bytes.end - 1).as_str()
        );
        assert_eq!(headers["content-length"], bytes.len().to_string().as_str());
        assert_eq!(headers["content-type"], "video/mp4");
    }
    // A range wholly outside the file is refused, naming the file's length.
    for range in [
        format!("bytes={len}-"),
        format!("bytes={len}-{}", len + 9),
        "bytes=-0".into(),
    ] {
        let (status, headers, body) = app.download_range(url, &range).await;
        assert_eq!(status, 416, "{storage:?} {range}");
        assert_eq!(headers["content-range"], format!("bytes */{len}").as_str());
        let error: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(error["error"]["code"], "range_not_satisfiable");
    }
    // Several ranges, or a malformed one: the whole file.
    for range in ["bytes=0-1,4-5", "bytes=9-3", "pages=1-2"] {
        let (status, _, body) = app.download_range(url, range).await;
        assert_eq!((status, body.len()), (200, len), "{storage:?} {range}");
    }

    let frame_url = done["last_frame_url"].as_str().unwrap();
    let (status, headers, png) = app.download_range(frame_url, "bytes=1-3").await;
    assert_eq!((status, png.as_slice()), (206, b"PNG".as_slice()));
    assert_eq!(headers["content-type"], "image/png");

    // A file missing from the store (removed behind the gateway's back, its task still within
    // its retention) is not found, with or without a range.
    let id = done["id"].as_str().unwrap();
    app.blobs.delete(&format!("{id}/video.mp4")).await.unwrap();
    for range in [None, Some("bytes=0-9")] {
        let mut request = app.client.get(url);
        if let Some(range) = range {
            request = request.header("range", range);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 404, "{storage:?} {range:?}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "not_found");
    }
}

#[tokio::test]
async fn health_and_readiness_need_no_key() {
    let app = TestApp::spawn_without_workers().await;
    for path in ["/healthz", "/readyz"] {
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
    let (status, body) = app.get_path("/v1/nothing-here").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn revoked_key_is_refused() {
    let app = TestApp::spawn_without_workers().await;
    let (key, account) = app.new_key(1_000_000).await;
    assert!(app.store.revoke_key(&account).await.unwrap());
    let (status, body) = app.get_path_with_key(&key, "/v1/tasks").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key");
}

/// A replica trusts a key it has looked up for `[limits] key_cache_ms`: a key revoked
/// elsewhere (another replica, the CLI) is refused here within that time, never later.
#[tokio::test]
async fn a_key_revoked_elsewhere_is_refused_within_the_cache_time() {
    const CACHE_MS: u64 = 1_000;
    let app = TestApp::spawn_with(|c| c.limits.key_cache_ms = CACHE_MS, false).await;
    let (key, account) = app.new_key(1_000_000).await;
    let (status, _) = app.get_path_with_key(&key, "/v1/tasks").await;
    assert_eq!(status, 200);
    let revoked_at = std::time::Instant::now();
    assert!(app.store.revoke_key(&account).await.unwrap());
    loop {
        // The lookup the server trusts was made before the revocation; a request sent this
        // long after it can only have been honoured from the cache. Timed from the send, so a
        // slow answer (a loaded machine) does not count against the server.
        let sent = revoked_at.elapsed();
        let (status, body) = app.get_path_with_key(&key, "/v1/tasks").await;
        if status == 401 {
            assert_eq!(body["error"]["code"], "invalid_api_key");
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            sent <= std::time::Duration::from_millis(CACHE_MS),
            "a revoked key was still honoured in a request sent {sent:?} later"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `docs/ark.md` promises either id spelling on both surfaces: reads, cancels, and the
/// `task_id` of a video-extension.
#[tokio::test]
async fn either_task_id_spelling_works_on_both_surfaces() {
    let app = TestApp::spawn_without_workers().await;
    let (_, source) = app.create(&small_task("the source")).await;
    let source_id = source["id"].as_str().unwrap().to_owned();
    let ark_id = source_id.replace("vtask_", "cgt-");
    drain(&app).await;

    let (status, read) = app.task(&ark_id).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["id"], source_id.as_str());
    let (status, read) = app
        .get_path(&format!("/api/v3/contents/generations/tasks/{source_id}"))
        .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["id"], ark_id.as_str());

    let extension = json!({"model": "seedance-2.0-fast", "operation": "video-extension",
        "task_id": ark_id, "prompt": "and then", "resolution": "480p", "duration": 4});
    let (status, extended) = app.create(&extension).await;
    assert_eq!(status, 200, "{extended}");
    let extended_id = extended["id"].as_str().unwrap().replace("vtask_", "cgt-");
    let (status, cancelled) = app.cancel(&extended_id).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["cancelled"], true);
    let (status, cancelled) = app.cancel_by_post(&extended_id).await;
    assert_eq!((status, &cancelled["cancelled"]), (200, &json!(true)));
}

/// A filter sent empty (`?status=`) is a filter not sent, on both surfaces.
#[tokio::test]
async fn an_empty_query_parameter_is_absent() {
    let app = TestApp::spawn_without_workers().await;
    let (_, created) = app.create(&small_task("listed")).await;
    let (status, list) = app.get_path("/v1/tasks?status=&model=&after=&limit=").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["data"][0]["id"], created["id"]);
    let (status, list) = app
        .get_path("/api/v3/contents/generations/tasks?filter.status=&filter.model=&page_size=")
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 1);
    // An unknown parameter with a value stays an error.
    assert_eq!(app.get_path("/v1/tasks?colour=red").await.0, 400);
}

/// `engine.workers = 0`: a process that serves the API only takes tasks and leaves them to a
/// replica with workers.
#[tokio::test]
async fn a_process_without_workers_takes_tasks_and_leaves_them_to_another() {
    let app = TestApp::spawn_with(|c| c.engine.workers = 0, true).await;
    let (status, task) = app
        .create(
            &json!({"model": "seedance-2.0-fast", "operation": "text-to-video",
            "prompt": "api only", "resolution": "480p", "duration": 4,
            "generate_audio": false}),
        )
        .await;
    assert_eq!(status, 200, "{task}");
    let id = task["id"].as_str().unwrap();
    // Many times the test servers' idle poll: a worker would have claimed it by now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, waiting) = app.task(id).await;
    assert_eq!(waiting["status"], "pending", "{waiting}");
    // Another replica's worker on the same database.
    assert_eq!(app.engine.run_one().await.unwrap(), Outcome::Done);
    let (_, done) = app.task(id).await;
    assert_eq!(done["status"], "completed", "{done}");
}
