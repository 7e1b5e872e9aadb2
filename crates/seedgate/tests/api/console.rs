//! The web console and the API reference in a real browser: Debian's Chromium, headless,
//! driven through chromedriver. A person signs in with a key, prices and creates a
//! text-to-video task, watches it run and plays the result; the reference renders this
//! server's document with examples for this host. Neither page loads anything from elsewhere.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::helpers::{png_bytes, TestApp};

/// Kills the driver (and with it the browser) however the test ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver on a port it chose itself, and a session of headless Chromium through it. The
/// flags keep Chromium from calling home, which a machine without a network refuses.
async fn browser(profile: &std::path::Path) -> (Driver, Client) {
    let mut driver = Command::new("chromedriver")
        .arg("--port=0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian package chromium-driver) must be installed");
    let stdout = driver.stdout.take().unwrap();
    let driver = Driver(driver);
    // "ChromeDriver was started successfully on port 41235." Its later lines are read and
    // dropped, so a full pipe never stalls it.
    let port = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        let port = lines.by_ref().find_map(|line| {
            line.strip_prefix("ChromeDriver was started successfully on port ")
                .and_then(|rest| rest.trim_end_matches('.').parse::<u16>().ok())
        });
        std::thread::spawn(move || lines.for_each(drop));
        port
    })
    .await
    .unwrap()
    .expect("chromedriver says which port it listens on");
    let url = format!("http://127.0.0.1:{port}");
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1500",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    let capabilities = capabilities.as_object().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => return (driver, client),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no browser session through chromedriver: {e}"),
        }
    }
}

/// Runs `script` until it returns something other than null, or fails after `seconds`.
async fn until(client: &Client, seconds: u64, what: &str, script: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let value = client.execute(script, Vec::new()).await.unwrap();
        if !value.is_null() {
            return value;
        }
        assert!(Instant::now() < deadline, "waited {seconds} s for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn find(client: &Client, css: &str) -> Element {
    client.find(Locator::Css(css)).await.unwrap()
}

/// Picks each select's option by value, in order (a model's change refills the others).
async fn choose(client: &Client, choices: &[(&str, &str)]) {
    for (select, value) in choices {
        find(client, select)
            .await
            .select_by_value(value)
            .await
            .unwrap();
    }
}

/// Waits for the detail pane to play a task other than `before`: its id and the video's
/// duration and height.
async fn next_video(client: &Client, before: &str, what: &str) -> Value {
    until(
        client,
        180,
        what,
        &format!(
            "const id = document.querySelector('#detail code').textContent; \
             const v = document.getElementById('player'); \
             return id !== '{before}' && v && v.readyState >= 1 ? \
               {{id, duration: v.duration, height: v.videoHeight}} : null;"
        ),
    )
    .await
}

/// Every resource the page has loaded that did not come from `origin`.
async fn foreign_resources(client: &Client, origin: &str) -> Vec<String> {
    let script = format!(
        "return performance.getEntriesByType('resource').map(e => e.name)\
         .filter(n => !n.startsWith('{origin}/') && !n.startsWith('data:') && !n.startsWith('blob:'));"
    );
    let value = client.execute(&script, Vec::new()).await.unwrap();
    serde_json::from_value(value).unwrap()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    )
}

#[tokio::test]
async fn a_person_signs_in_creates_a_video_and_plays_it() {
    let app = TestApp::spawn().await;
    let profile = tempfile::tempdir().unwrap();
    let (_driver, client) = browser(profile.path()).await;

    client
        .goto(&format!("{}/console", app.address))
        .await
        .unwrap();
    find(&client, "#key")
        .await
        .send_keys("sg_test_not_a_key")
        .await
        .unwrap();
    find(&client, "#sign-in-button")
        .await
        .click()
        .await
        .unwrap();
    let refused = until(
        &client,
        10,
        "the refusal",
        "const e = document.getElementById('sign-in-error'); return e.hidden ? null : e.textContent;",
    )
    .await;
    assert!(
        refused.as_str().unwrap().contains("invalid_api_key"),
        "{refused}"
    );

    let key = find(&client, "#key").await;
    key.clear().await.unwrap();
    key.send_keys(&app.key).await.unwrap();
    find(&client, "#sign-in-button")
        .await
        .click()
        .await
        .unwrap();
    until(
        &client,
        10,
        "the dashboard",
        "return document.getElementById('model').options.length > 0 ? true : null;",
    )
    .await;
    let balance_before = find(&client, "#balance").await.text().await.unwrap();
    assert!(balance_before.starts_with('$'), "{balance_before}");

    choose(
        &client,
        &[
            ("#model", "seedance-2.0-fast"),
            ("#operation", "text-to-video"),
            ("#resolution", "480p"),
            ("#duration", "4"),
        ],
    )
    .await;
    find(&client, "#prompt")
        .await
        .send_keys("a paper kite over a windy beach")
        .await
        .unwrap();

    // The quote comes first, and it is the server's.
    let body = json!({
        "model": "seedance-2.0-fast", "operation": "text-to-video", "resolution": "480p",
        "duration": 4, "aspect_ratio": "16:9", "generate_audio": true,
        "prompt": "a paper kite over a windy beach",
    });
    let (status, quote) = app
        .call("POST", "/v1/videos/quote", &app.key, Some(&body))
        .await;
    assert_eq!(status, 200, "{quote}");
    let shown = until(
        &client,
        10,
        "the quote",
        "const q = document.getElementById('quote'); \
         return q.className === 'quote' && !document.getElementById('submit').disabled ? q.textContent : null;",
    )
    .await;
    let shown = shown.as_str().unwrap();
    let amount = quote["cost"]["amount"].as_str().unwrap();
    assert!(shown.contains(&format!("${amount}")), "{shown} vs {quote}");
    assert!(
        shown.contains(&format!("{}×{}", quote["width"], quote["height"])),
        "{shown}"
    );

    find(&client, "#submit").await.click().await.unwrap();
    let running = until(
        &client,
        10,
        "the running task",
        "const d = document.getElementById('detail'); \
         return d.querySelector('.running, video') ? d.querySelector('code').textContent : null;",
    )
    .await;
    let task_id = running.as_str().unwrap().to_owned();

    // Live status: the page notices the end by itself and plays the result.
    let metadata = until(
        &client,
        180,
        "the video's metadata",
        "const v = document.getElementById('player'); \
         return v && v.readyState >= 1 ? \
           {duration: v.duration, width: v.videoWidth, height: v.videoHeight, \
            poster: v.poster, src: v.currentSrc, error: v.error && v.error.code} : null;",
    )
    .await;
    let (_, task) = app.get_path(&format!("/v1/tasks/{task_id}")).await;
    assert_eq!(task["status"], "completed", "{task}");
    let result = &task["result"];
    assert_eq!(metadata["error"], Value::Null, "{metadata}");
    assert_eq!(metadata["width"], quote["width"], "{metadata} vs {quote}");
    assert_eq!(metadata["height"], quote["height"], "{metadata} vs {quote}");
    assert_eq!(metadata["width"], result["width"]);
    assert_eq!(metadata["height"], result["height"]);
    let duration = metadata["duration"].as_f64().unwrap();
    assert!((duration - 4.0).abs() < 0.2, "{metadata}");
    let poster = metadata["poster"].as_str().unwrap();
    assert!(
        poster.starts_with(&format!(
            "{}/v1/assets/{task_id}/last_frame.png",
            app.address
        )),
        "{metadata}"
    );
    let played = until(
        &client,
        20,
        "playback",
        "const v = document.getElementById('player'); v.muted = true; \
         if (v.paused) { v.play().catch(() => {}); } return v.currentTime > 0.2 ? v.currentTime : null;",
    )
    .await;
    assert!(played.as_f64().unwrap() > 0.2);
    // The page learnt of the end from the key's event stream, which it holds open.
    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.lines().any(|line| {
            line.starts_with(
            "seedgate_http_requests_total{route=\"/v1/tasks/events\",method=\"GET\",status=\"200\"}"
        )
        }),
        "{metrics}"
    );
    // A sandbox result says so, and names its provider.
    let detail = until(
        &client,
        10,
        "the sandbox banner",
        "return document.getElementById('sandbox-banner') ? \
           document.getElementById('detail').innerText : null;",
    )
    .await;
    assert!(detail.as_str().unwrap().contains("sandbox"), "{detail}");

    // The money moved, and the chart shows where.
    let cost = task["cost"]["amount"].as_str().unwrap().to_owned();
    let row = until(
        &client,
        10,
        "the charge in the task list",
        &format!(
            "const r = document.querySelector('tr[data-task=\"{task_id}\"]'); \
             return r && r.textContent.includes('${cost}') ? r.textContent : null;"
        ),
    )
    .await;
    assert!(row.as_str().unwrap().contains("seedance-2.0-fast"), "{row}");
    until(
        &client,
        10,
        "the day's bar",
        "return document.querySelector('#chart rect[data-model=\"seedance-2.0-fast\"]') ? true : null;",
    )
    .await;
    let legend = find(&client, "#legend").await.text().await.unwrap();
    assert!(legend.contains(&format!("${cost}")), "{legend}");
    assert_ne!(
        find(&client, "#balance").await.text().await.unwrap(),
        balance_before
    );
    assert_eq!(
        foreign_resources(&client, &app.address).await,
        Vec::<String>::new()
    );

    // A local file through the picker: image-to-video from a PNG on disk, sent as a data: URI.
    let files = tempfile::tempdir().unwrap();
    let frame = files.path().join("first-frame.png");
    std::fs::write(&frame, png_bytes(640, 360, 90)).unwrap();
    find(&client, "#operation")
        .await
        .select_by_value("image-to-video")
        .await
        .unwrap();
    find(&client, "#image_url-file")
        .await
        .send_keys(frame.to_str().unwrap())
        .await
        .unwrap();
    until(
        &client,
        10,
        "the image-to-video quote",
        "const q = document.getElementById('quote'); \
         return q.className === 'quote' && !document.getElementById('submit').disabled ? true : null;",
    )
    .await;
    find(&client, "#submit").await.click().await.unwrap();
    let second = next_video(&client, &task_id, "the image-to-video result").await;
    let (_, task) = app
        .get_path(&format!("/v1/tasks/{}", second["id"].as_str().unwrap()))
        .await;
    assert_eq!(task["operation"], "image-to-video", "{task}");
    assert_eq!(task["status"], "completed", "{task}");
    assert!(
        (second["duration"].as_f64().unwrap() - 4.0).abs() < 0.2,
        "{second}"
    );

    // A draft, then its final from the draft's own "Render final" button.
    choose(
        &client,
        &[
            ("#model", "seedance-2.5"),
            ("#operation", "text-to-video"),
            ("#duration", "4"),
        ],
    )
    .await;
    find(&client, "#draft").await.click().await.unwrap();
    until(
        &client,
        10,
        "the draft's quote",
        "const q = document.getElementById('quote'); \
         return q.className === 'quote' && q.textContent.startsWith('864×496') && \
           !document.getElementById('submit').disabled ? true : null;",
    )
    .await;
    find(&client, "#submit").await.click().await.unwrap();
    let draft_id = until(
        &client,
        180,
        "the draft's Render final button",
        "return document.getElementById('render-final') ? \
           document.querySelector('#detail code').textContent : null;",
    )
    .await;
    let draft_id = draft_id.as_str().unwrap().to_owned();
    find(&client, "#final-resolution")
        .await
        .select_by_value("720p")
        .await
        .unwrap();
    find(&client, "#render-final").await.click().await.unwrap();
    let rendered = next_video(&client, &draft_id, "the final's video").await;
    assert_eq!(rendered["height"], 720, "{rendered}");
    let (_, task) = app
        .get_path(&format!("/v1/tasks/{}", rendered["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        task["request"]["draft_task_id"],
        draft_id.as_str(),
        "{task}"
    );

    // Every task has an address: the selected one's is in the location, and an address opens
    // its task (`seedgate generate --open` uses it).
    let hash = client
        .execute("return location.hash;", Vec::new())
        .await
        .unwrap();
    assert_eq!(
        hash,
        format!("#/tasks/{}", rendered["id"].as_str().unwrap())
    );
    client
        .goto(&format!("{}/console#/tasks/{task_id}", app.address))
        .await
        .unwrap();
    until(
        &client,
        20,
        "the task the address names",
        &format!(
            "const c = document.querySelector('#detail code'); \
             return c && c.textContent === '{task_id}' ? true : null;"
        ),
    )
    .await;

    let shot = target_dir().join("console-e2e.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    std::fs::write(&shot, client.screenshot().await.unwrap()).unwrap();

    // The reference: this server's document, rendered here, with curl for this host.
    client.goto(&format!("{}/docs", app.address)).await.unwrap();
    let sample = until(
        &client,
        30,
        "the rendered reference",
        &format!(
            "const text = document.body.innerText; \
             return text.includes('curl -X POST \"{}/v1/videos/generations\"') ? text.length : null;",
            app.address
        ),
    )
    .await;
    assert!(sample.as_u64().unwrap() > 10_000, "{sample}");
    let text = client
        .execute("return document.body.innerText;", Vec::new())
        .await
        .unwrap();
    let text = text.as_str().unwrap();
    for expected in [
        "/v1/videos/quote",
        "/v1/account/usage",
        "insufficient_balance",
        "seedance-2.0-fast",
    ] {
        assert!(text.contains(expected), "the reference lacks {expected}");
    }
    assert_eq!(
        foreign_resources(&client, &app.address).await,
        Vec::<String>::new()
    );
    client.close().await.unwrap();
}

#[tokio::test]
async fn pages_are_served_from_the_binary_and_revalidated() {
    let app = TestApp::spawn_without_workers().await;
    for (path, content_type) in [
        ("/console", "text/html; charset=utf-8"),
        ("/console/console.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
        ("/docs", "text/html; charset=utf-8"),
        (
            "/console/redoc.standalone.js",
            "text/javascript; charset=utf-8",
        ),
    ] {
        let url = format!("{}{path}", app.address);
        let response = app.client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], content_type, "{path}");
        if content_type.starts_with("text/html") {
            let policy = headers["content-security-policy"].to_str().unwrap();
            assert!(policy.contains("default-src 'self'"), "{path}: {policy}");
        }
        let etag = headers["etag"].clone();
        let again = app
            .client
            .get(&url)
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
    let missing = app
        .client
        .get(format!("{}/console/nothing.js", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

/// Whoever opens the server's address in a browser lands on the console.
#[tokio::test]
async fn get_root_leads_to_the_console() {
    let app = TestApp::spawn_without_workers().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .get(format!("{}/", app.address))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(response.headers()["location"], "/console");
    // Followed, it is the console page.
    let page = app
        .client
        .get(format!("{}/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.url().path(), "/console");
    assert!(page.text().await.unwrap().contains("<html"));
}
