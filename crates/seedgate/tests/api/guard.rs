//! The outbound guard over HTTP: inputs on internal addresses are refused, also behind a DNS
//! name or a redirect, unless allow-listed: an IP literal is refused at create, a name or a
//! redirect when fetched (the task fails uncharged with `input_url_forbidden`). Webhook targets
//! naming internal addresses are refused at create.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{MediaServer, TestApp};

async fn image_task(app: &TestApp, url: &str) -> serde_json::Value {
    let body = json!({"model": "seedance-2.0-fast", "operation": "image-to-video", "prompt": "x",
        "image_url": url, "resolution": "480p", "duration": 4, "generate_audio": false});
    let (status, created) = app.create(&body).await;
    assert_eq!(status, 200, "{created}");
    app.wait_terminal(created["id"].as_str().unwrap(), Duration::from_secs(60))
        .await
}

async fn app_allowing(allow: &[&str]) -> TestApp {
    let allow: Vec<ipnet::IpNet> = allow.iter().map(|a| a.parse().unwrap()).collect();
    TestApp::spawn_with(|c| c.fetch.allow_private = allow, true).await
}

#[tokio::test]
async fn loopback_inputs_are_refused_unless_allow_listed() {
    let media = MediaServer::start().await;
    let app = app_allowing(&[]).await;
    // An IP literal the guard never reaches is refused at once; nothing is stored.
    let body = json!({"model": "seedance-2.0-fast", "operation": "image-to-video", "prompt": "x",
        "image_url": media.url("start.png"), "resolution": "480p", "duration": 4});
    let (status, refused) = app.create(&body).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "input_url_forbidden");
    assert_eq!(refused["error"]["param"], "image_url");
    app.assert_nothing_written().await;

    let allowed = app_allowing(&["127.0.0.1/32"]).await;
    assert_eq!(
        image_task(&allowed, &media.url("start.png")).await["status"],
        "completed"
    );
}

#[tokio::test]
async fn an_internal_callback_url_is_refused_at_create() {
    let app = app_allowing(&[]).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://10.0.0.7/hook",
    ] {
        let body = json!({"model": "seedance-2.0-fast", "operation": "text-to-video", "prompt": "x",
            "callback_url": url});
        let (status, refused) = app.create(&body).await;
        assert_eq!(status, 400, "{url}: {refused}");
        assert_eq!(refused["error"]["code"], "invalid_callback_url");
        assert_eq!(refused["error"]["param"], "callback_url");
    }
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn a_dns_name_resolving_to_a_refused_address_is_refused() {
    let media = MediaServer::start().await;
    let app = app_allowing(&[]).await;
    let port = media.base.rsplit(':').next().unwrap();
    let done = image_task(&app, &format!("http://localhost:{port}/start.png")).await;
    assert_eq!(done["error"]["code"], "input_url_forbidden", "{done}");
}

#[tokio::test]
async fn a_redirect_to_a_refused_address_is_refused() {
    // The first hop is allowed; the redirect target (127.0.0.1) is not.
    let allowed_host = MediaServer::start_on("127.0.0.2").await;
    let internal = MediaServer::start().await;
    let app = app_allowing(&["127.0.0.2/32"]).await;
    assert_eq!(
        image_task(&app, &allowed_host.url("start.png")).await["status"],
        "completed"
    );
    let hop = format!(
        "{}?to={}",
        allowed_host.url("redirect"),
        internal.url("start.png")
    );
    let done = image_task(&app, &hop).await;
    assert_eq!(done["error"]["code"], "input_url_forbidden", "{done}");
}

#[tokio::test]
async fn more_than_three_redirects_are_refused() {
    let media = MediaServer::start().await;
    let app = app_allowing(&["127.0.0.1/32"]).await;
    let mut url = media.url("start.png");
    for _ in 0..4 {
        url = format!("{}?to={}", media.url("redirect"), urlencode(&url));
    }
    let done = image_task(&app, &url).await;
    assert_eq!(done["error"]["code"], "input_fetch_failed", "{done}");
    let mut ok = media.url("start.png");
    for _ in 0..3 {
        ok = format!("{}?to={}", media.url("redirect"), urlencode(&ok));
    }
    assert_eq!(image_task(&app, &ok).await["status"], "completed");
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
