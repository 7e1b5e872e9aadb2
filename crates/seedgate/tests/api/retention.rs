//! Result files are kept for `assets.retention_seconds` after their task ends, then the
//! sweeper deletes them. The task stays readable with its bill, its result marked expired and
//! no URL, and the links handed out before answer `410 result_expired`, on a local folder and
//! in an S3 bucket alike.

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use seedgate::ids::TaskId;
use serde_json::{json, Value};

use crate::helpers::{Storage, TestApp};

const RETENTION_SECONDS: u64 = 3;

async fn app_keeping_files_briefly(storage: Storage) -> TestApp {
    TestApp::spawn_on(
        storage,
        |config| {
            config.assets.retention_seconds = NonZeroU64::new(RETENTION_SECONDS).unwrap();
            config.assets.sweep_interval_seconds = NonZeroU64::MIN;
        },
        true,
    )
    .await
}

async fn wait_until_swept(app: &TestApp, id: &str) {
    let started = Instant::now();
    loop {
        let task = app.store.task(&TaskId::new(id)).await.unwrap().unwrap();
        if task.files_swept_at_ms.is_some() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the files of {id} were not swept"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn swept_results_read_as_expired_with_their_bill_on_local_files() {
    swept_results_read_as_expired_with_their_bill(Storage::Local).await;
}

#[tokio::test]
async fn swept_results_read_as_expired_with_their_bill_in_s3() {
    swept_results_read_as_expired_with_their_bill(Storage::S3).await;
}

async fn swept_results_read_as_expired_with_their_bill(storage: Storage) {
    let app = app_keeping_files_briefly(storage).await;
    let (status, created) = app
        .create(
            &json!({"model": "seedance-2.0-fast", "operation": "text-to-video",
            "prompt": "a lighthouse in fog", "resolution": "480p", "duration": 4}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let done = app.wait_terminal(&id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "completed", "{done}");

    // While kept: links that end when the files do, never later.
    let result = &done["result"];
    assert_eq!(result["expired"], false, "{done}");
    let completed_at = done["completed_at"].as_u64().unwrap();
    assert_eq!(result["files_expire_at"], completed_at + RETENTION_SECONDS);
    assert_eq!(result["expires_at"], result["files_expire_at"]);
    let video_url = done["video_url"].as_str().unwrap().to_owned();
    let frame_url = done["last_frame_url"].as_str().unwrap().to_owned();
    let (status, _) = app.download(&video_url).await;
    assert_eq!(status, 200);
    let balance = app.balance(&app.account_id).await;
    let ledger = app
        .store
        .ledger_entries_for_task(&TaskId::new(&id))
        .await
        .unwrap();

    wait_until_swept(&app, &id).await;
    for file in ["video.mp4", "last_frame.png"] {
        let key = format!("{id}/{file}");
        assert_eq!(
            app.blobs.size(&key).await.unwrap(),
            None,
            "{storage:?} {key}"
        );
    }

    // The task still reads, with everything but the URLs.
    let (status, read) = app.task(&id).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["status"], "completed");
    let result = &read["result"];
    assert_eq!(result["expired"], true, "{read}");
    assert_eq!(result["video_url"], Value::Null);
    assert_eq!(result["last_frame_url"], Value::Null);
    assert_eq!(result["files_expire_at"], done["result"]["files_expire_at"]);
    for field in ["width", "height", "fps", "duration", "has_audio"] {
        assert_eq!(result[field], done["result"][field], "{field}");
    }
    for field in ["video_url", "last_frame_url", "video"] {
        assert!(read.get(field).is_none(), "{field}: {read}");
    }
    assert_eq!(read["cost"], done["cost"]);
    assert_eq!(read["usage"], done["usage"]);
    assert_eq!(read["estimated_cost"], done["estimated_cost"]);
    let (_, listed) = app.get_path("/v1/tasks").await;
    assert_eq!(listed["data"][0]["result"]["expired"], true, "{listed}");

    // The Ark surface says the same in its own shape.
    let ark_id = id.replacen("vtask_", "cgt-", 1);
    let (status, ark) = app
        .get_path(&format!("/api/v3/contents/generations/tasks/{ark_id}"))
        .await;
    assert_eq!(status, 200, "{ark}");
    assert_eq!(ark["status"], "succeeded");
    assert_eq!(ark["content"], json!({"expired": true}));
    assert_eq!(ark["usage"]["total_tokens"], done["usage"]["tokens"]);

    // The links handed out before: gone for good, whole or in part.
    for url in [&video_url, &frame_url] {
        for range in [None, Some("bytes=0-9")] {
            let mut request = app.client.get(url.as_str());
            if let Some(range) = range {
                request = request.header("range", range);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 410, "{storage:?} {url} {range:?}");
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"]["code"], "result_expired");
        }
    }
    // A forged link learns nothing about the task.
    let forged = video_url.replace("sig=", "sig=00");
    let (status, _) = app.download(&forged).await;
    assert_eq!(status, 403);

    // Its video can no longer be extended.
    let (status, refused) = app
        .create(
            &json!({"model": "seedance-2.0", "operation": "video-extension",
            "task_id": id}),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "source_task_not_usable");

    // The bill stands as it was.
    assert_eq!(app.balance(&app.account_id).await, balance);
    assert_eq!(
        app.store
            .ledger_entries_for_task(&TaskId::new(&id))
            .await
            .unwrap(),
        ledger
    );
    assert_eq!(
        app.store.ledger_sum(&app.account_id).await.unwrap(),
        balance
    );
}

#[tokio::test]
async fn files_are_kept_until_their_retention_ends_or_are_swept() {
    let app = TestApp::spawn_with(|_| {}, false).await;
    let (_, created) = app
        .create(
            &json!({"model": "seedance-2.0-fast", "operation": "text-to-video",
            "prompt": "kept", "resolution": "480p", "duration": 4}),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    while app.engine.run_one().await.unwrap() == seedgate::engine::Outcome::Done {}
    assert_eq!(app.sweeper.sweep_batch().await.unwrap(), 0);
    let (_, done) = app.task(id).await;
    assert_eq!(done["result"]["expired"], false, "{done}");
    // Thirty days by default; the URLs' own day comes first.
    let completed_at = done["completed_at"].as_u64().unwrap();
    assert_eq!(
        done["result"]["files_expire_at"],
        completed_at + 30 * 24 * 3600
    );
    assert!(done["result"]["expires_at"].as_u64().unwrap() < completed_at + 2 * 24 * 3600);
    let video_url = done["video_url"].as_str().unwrap();
    let (status, _) = app.download(video_url).await;
    assert_eq!(status, 200);

    // Swept sooner than this server's retention says (by a replica configured shorter): the
    // link in hand finds no file and says why, and the task reads as expired from then on.
    for file in ["video.mp4", "last_frame.png"] {
        app.blobs.delete(&format!("{id}/{file}")).await.unwrap();
    }
    assert!(app.store.mark_files_swept(&TaskId::new(id)).await.unwrap());
    let whole = app.download(video_url).await;
    let (status, _, body) = app.download_range(video_url, "bytes=0-9").await;
    for (status, body) in [whole, (status, body)] {
        assert_eq!(status, 410);
        let error: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(error["error"]["code"], "result_expired");
    }
    let (_, read) = app.task(id).await;
    assert_eq!(read["result"]["expired"], true, "{read}");
    assert!(read["result"]["files_expire_at"].as_u64().unwrap() <= completed_at + 60);
}

/// A draft whose files were swept has lost its request with them: its final is refused as
/// expired, and nothing is reserved.
#[tokio::test]
async fn a_swept_draft_has_no_final() {
    let app = TestApp::spawn_with(|_| {}, false).await;
    let (_, created) = app
        .create(
            &json!({"model": "seedance-2.5", "prompt": "a preview", "duration": 4,
            "draft": true, "generate_audio": false}),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    while app.engine.run_one().await.unwrap() == seedgate::engine::Outcome::Done {}
    let final_body = json!({"model": "seedance-2.5", "draft_task_id": id, "resolution": "720p"});
    let (status, quote) = app
        .call("POST", "/v1/videos/quote", &app.key, Some(&final_body))
        .await;
    assert_eq!(status, 200, "{quote}");
    assert!(app.store.mark_files_swept(&TaskId::new(id)).await.unwrap());
    let balance = app.balance(&app.account_id).await;
    let (status, refused) = app.create(&final_body).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "draft_task_expired");
    assert_eq!(refused["error"]["param"], "draft_task_id");
    assert_eq!(app.balance(&app.account_id).await, balance);
}
