//! Result files in an S3 bucket, set up as an operator would: the real binary, configured by
//! `SEEDGATE_ASSETS_URL=s3://…` and the usual `AWS_*` variables, against a real S3-compatible
//! server (moto). Downloads still go through the gateway's signed URLs.

use std::process::Command;
use std::time::Duration;

use seedgate::blobs::Location;
use serde_json::json;

use crate::helpers::{decode, ffprobe, wait_terminal, Moto};
use crate::restart::launch;

#[tokio::test]
async fn a_sandbox_task_end_to_end_with_its_files_in_s3() {
    let moto = Moto::shared().await;
    let bucket = moto.new_bucket().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut command = Command::new(env!("CARGO_BIN_EXE_seedgate"));
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&data)
        .env(
            "SEEDGATE_ASSETS_URL",
            format!("s3://{bucket}/seedgate/results"),
        )
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing");
    let (server, key) = launch(command, Some(dir.path().join("server.log")), true).await;
    let key = key.expect("development key printed on first start");
    let address = server.address.clone();
    let client = reqwest::Client::new();

    let body = json!({"model": "seedance-2.0-fast", "operation": "text-to-video",
        "prompt": "a harbour at night", "resolution": "480p", "duration": 4, "aspect_ratio": "16:9"});
    let response = client
        .post(format!("{address}/v1/videos/generations"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, created) = decode(response).await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap();
    let done = wait_terminal(&client, &address, &key, id, Duration::from_secs(120)).await;
    assert_eq!(done["status"], "completed", "{done}");

    // The whole MP4 through the signed URL.
    let url = done["video_url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{address}/v1/assets/{id}/video.mp4?")),
        "{url}"
    );
    let response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "video/mp4");
    let mp4 = response.bytes().await.unwrap().to_vec();
    let probe = ffprobe(&mp4);
    assert_eq!(
        (probe.codec.as_str(), probe.width, probe.height),
        ("h264", 864, 496)
    );
    assert_eq!(probe.fps, "24/1");
    assert!((probe.duration - 4.0).abs() <= 0.1, "{}", probe.duration);
    assert!(probe.has_audio);

    // A range from the middle, as a player seeking.
    let len = mp4.len();
    let (from, to) = (len / 3, len / 3 + 4095);
    let response = client
        .get(url)
        .header("range", format!("bytes={from}-{to}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(
        response.headers()["content-range"],
        format!("bytes {from}-{to}/{len}").as_str()
    );
    assert_eq!(response.bytes().await.unwrap(), mp4[from..=to]);

    // The files are in the bucket under the prefix, not in the data dir.
    let bucket_store = seedgate::blobs::open(
        &Location::S3 {
            bucket,
            prefix: "seedgate/results".into(),
        },
        &moto.environment(),
    )
    .unwrap();
    assert_eq!(
        bucket_store.size(&format!("{id}/video.mp4")).await.unwrap(),
        Some(len as u64)
    );
    assert!(bucket_store
        .size(&format!("{id}/last_frame.png"))
        .await
        .unwrap()
        .is_some());
    assert!(!data.join("assets").exists());
    drop(server);
}
