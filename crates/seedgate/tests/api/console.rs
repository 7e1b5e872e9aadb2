//! The web console and the API reference in a real browser: Debian's Chromium, headless,
//! driven through chromedriver. A person signs in with a key, prices and creates a
//! text-to-video task, watches it run and plays the result; the reference renders this
//! server's document with examples for this host. Neither page loads anything from elsewhere.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
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
                "--disable-dev-shm-usage", "--window-size=1440,900",
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
            "const c = document.querySelector('#detail code'); const id = c && c.textContent; \
             const v = document.getElementById('player'); \
             return id !== '{before}' && v && v.readyState >= 1 ? \
               {{id, duration: v.duration, height: v.videoHeight}} : null;"
        ),
    )
    .await
}

/// Waits for the result pane to show task `id`.
async fn showing(client: &Client, id: &str, what: &str) {
    until(
        client,
        20,
        what,
        &format!(
            "const c = document.querySelector('#detail code'); \
             return c && c.textContent === '{id}' ? true : null;"
        ),
    )
    .await;
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
    let metrics = app.metrics_text().await;
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
        "the charge in the gallery",
        &format!(
            "const r = document.querySelector('#gallery [data-task=\"{task_id}\"]'); \
             return r && r.textContent.includes('${cost}') ? r.textContent : null;"
        ),
    )
    .await;
    assert!(row.as_str().unwrap().contains("seedance-2.0-fast"), "{row}");
    // Spending has a view of its own.
    find(&client, "#nav-usage").await.click().await.unwrap();
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
    find(&client, "#nav-playground")
        .await
        .click()
        .await
        .unwrap();
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
    // A preview with a remove button, under the model's limits read from the Models API.
    let preview = until(
        &client,
        10,
        "the image's preview",
        "const img = document.querySelector('#image_url-picks img'); \
         return img && img.complete && img.naturalWidth > 0 ? \
           {width: img.naturalWidth, text: document.getElementById('image_url-picks').innerText, \
            limits: document.getElementById('image_url-limits').textContent} : null;",
    )
    .await;
    assert_eq!(preview["width"], 640, "{preview}");
    assert!(
        preview["text"]
            .as_str()
            .unwrap()
            .contains("first-frame.png"),
        "{preview}"
    );
    assert_eq!(preview["limits"], "One PNG, JPEG or WebP image.");
    find(&client, "#image_url-picks button")
        .await
        .click()
        .await
        .unwrap();
    until(
        &client,
        10,
        "the removal",
        "return document.querySelectorAll('#image_url-picks li').length === 0 ? true : null;",
    )
    .await;
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
    showing(&client, &task_id, "the task the address names").await;

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

/// Presses and releases `key` wherever the focus is (a WebDriver key code for Tab, Enter…):
/// the keyboard itself, not an element that a redraw may replace meanwhile.
async fn press(client: &Client, key: char) {
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    client.perform_actions(keys).await.unwrap();
}

/// Signs in with `key` and waits for the form to hold the models.
async fn sign_in(client: &Client, key: &str) {
    find(client, "#key").await.send_keys(key).await.unwrap();
    find(client, "#sign-in-button").await.click().await.unwrap();
    until(
        client,
        10,
        "the dashboard",
        "return document.getElementById('model').options.length > 0 ? true : null;",
    )
    .await;
}

/// Waits until Generate is enabled by a fresh quote.
async fn priced(client: &Client, what: &str) {
    until(
        client,
        10,
        what,
        "const q = document.getElementById('quote'); \
         return q.className === 'quote' && !document.getElementById('submit').disabled ? true : null;",
    )
    .await;
}

/// What axe-core (vendored beside the tests) finds against WCAG 2.1 A and AA on the page as it
/// stands: each violated rule with the elements that break it.
async fn accessibility_violations(client: &Client) -> Vec<String> {
    const AXE: &str = include_str!("../vendor/axe.min.js");
    client.execute(AXE, Vec::new()).await.unwrap();
    let found = client
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}) \
               .then(r => done(r.violations.map(v => v.id + ': ' + \
                 v.nodes.map(n => n.target.join(' ') + ' (' + n.failureSummary + ')').join('; '))), \
                     e => done(['axe failed: ' + e]));",
            Vec::new(),
        )
        .await
        .unwrap();
    serde_json::from_value(found).unwrap()
}

/// Checks the page in both themes: `where` names it in the failure.
async fn accessible_in_both_themes(client: &Client, place: &str) {
    for theme in ["light", "dark"] {
        find(client, "#theme")
            .await
            .select_by_value(theme)
            .await
            .unwrap();
        let violations = accessibility_violations(client).await;
        assert!(
            violations.is_empty(),
            "{place}, {theme} theme: {violations:#?}"
        );
    }
}

/// A task's model, operation and request, which two tasks of the same job share.
fn job(task: &Value) -> Value {
    json!({"model": task["model"], "operation": task["operation"], "request": task["request"]})
}

/// Runs a copied shell command with the key in SEEDGATE_API_KEY and returns the task it made.
async fn run_copied(app: &TestApp, command: &str) -> Value {
    let (script, key) = (command.to_owned(), app.key.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("SEEDGATE_API_KEY", key)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        output.status.success(),
        "{command}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let created: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    app.wait_terminal(created["id"].as_str().unwrap(), Duration::from_secs(120))
        .await
}

/// Shows the code for `of` ("form" or "task") and returns it.
async fn copied(client: &Client, of: &str, kind: &str) -> String {
    find(
        client,
        &format!("[data-of=\"{of}\"][data-snippet=\"{kind}\"]"),
    )
    .await
    .click()
    .await
    .unwrap();
    let text = until(
        client,
        10,
        "the code",
        "const d = document.getElementById('snippet-dialog'); \
         return d.open ? document.getElementById('snippet').textContent : null;",
    )
    .await;
    find(client, "#snippet-close").await.click().await.unwrap();
    text.as_str().unwrap().to_owned()
}

/// Creates a task through the API that plays a sandbox scenario.
async fn create_playing(app: &TestApp, scenario: &str) -> String {
    let response = app
        .client
        .post(format!("{}/v1/videos/generations", app.address))
        .bearer_auth(&app.key)
        .header("Seedgate-Sandbox-Scenario", scenario)
        .json(&json!({"model": "seedance-2.0-fast", "prompt": "a queue", "resolution": "480p", "duration": 4}))
        .send()
        .await
        .unwrap();
    let (status, task) = crate::helpers::decode(response).await;
    assert_eq!(status, 200, "{task}");
    task["id"].as_str().unwrap().to_owned()
}

/// The playground: a keyboard-made task is copied as curl and re-run from its settings, each
/// making the same job; the gallery pages, filters and is walked by Tab; Cancel shows only while
/// it can succeed and answers in place; axe-core finds nothing in either theme; a phone gets
/// one column.
#[tokio::test]
async fn the_playground_reruns_copies_and_passes_axe() {
    let app = TestApp::spawn().await;
    let profile = tempfile::tempdir().unwrap();
    let (_driver, client) = browser(profile.path()).await;
    client
        .goto(&format!("{}/console", app.address))
        .await
        .unwrap();
    let violations = accessibility_violations(&client).await;
    assert!(violations.is_empty(), "sign-in: {violations:#?}");
    sign_in(&client, &app.key).await;

    // Made from the keyboard: Ctrl+Enter in the prompt generates once the quote is in.
    choose(
        &client,
        &[
            ("#model", "seedance-2.0-fast"),
            ("#operation", "text-to-video"),
            ("#resolution", "480p"),
            ("#duration", "4"),
            ("#aspect-ratio", "9:16"),
        ],
    )
    .await;
    find(&client, "#seed").await.send_keys("42").await.unwrap();
    let prompt = "it's a \"quoted\" $HOME & `ls` kite";
    let field = find(&client, "#prompt").await;
    field.send_keys(prompt).await.unwrap();
    field.send_keys("\u{E009}\u{E007}\u{E000}").await.unwrap();
    let first = next_video(&client, "", "the keyboard-made task").await;
    let first_id = first["id"].as_str().unwrap().to_owned();
    let (_, original) = app.task(&first_id).await;
    assert_eq!(original["request"]["prompt"], prompt, "{original}");
    assert_eq!(original["request"]["seed"], 42, "{original}");
    assert_eq!(original["request"]["aspect_ratio"], "9:16", "{original}");

    accessible_in_both_themes(&client, "the playground with a result").await;
    find(&client, "#nav-usage").await.click().await.unwrap();
    until(
        &client,
        10,
        "the usage view",
        "return document.querySelector('#chart rect') ? true : null;",
    )
    .await;
    accessible_in_both_themes(&client, "the usage view").await;
    find(&client, "#nav-playground")
        .await
        .click()
        .await
        .unwrap();

    // Copy as curl: the copied command makes the same job.
    let curl = copied(&client, "task", "curl").await;
    assert!(!curl.contains(&app.key), "{curl}");
    let copy = run_copied(&app, &curl).await;
    assert_eq!(copy["status"], "completed", "{copy}");
    assert_eq!(job(&copy), job(&original));
    let cli = copied(&client, "task", "cli").await;
    assert!(
        cli.contains("seedgate generate") && cli.contains("--seed 42"),
        "{cli}"
    );
    let python = copied(&client, "task", "python").await;
    let checked = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", "import ast, sys; ast.parse(sys.argv[1])", &python])
            .status()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(checked.success(), "the Python code does not parse");

    // "Use these settings" refills the form; generating makes the same job again, and so does
    // the form copied as curl.
    find(&client, "#use-settings").await.click().await.unwrap();
    let refilled = client
        .execute(
            "return ['prompt', 'seed', 'resolution', 'duration', 'aspect-ratio'] \
               .map(id => document.getElementById(id).value);",
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(refilled, json!([prompt, "42", "480p", "4", "9:16"]));
    priced(&client, "the refilled form's quote").await;
    let form_curl = copied(&client, "form", "curl").await;
    find(&client, "#submit").await.click().await.unwrap();
    let rerun = next_video(&client, &first_id, "the re-run").await;
    let (_, rerun) = app.task(rerun["id"].as_str().unwrap()).await;
    assert_eq!(job(&rerun), job(&original));
    let from_form = run_copied(&app, &form_curl).await;
    assert_eq!(job(&from_form), job(&original));

    // Cancel is offered while the task waits, and answers in place; a started task has none.
    let queued = create_playing(&app, "slow_queue; wait=600").await;
    client
        .goto(&format!("{}/console#/tasks/{queued}", app.address))
        .await
        .unwrap();
    find(&client, "#cancel").await.click().await.unwrap();
    let note = until(
        &client,
        10,
        "the cancel's answer",
        "const n = document.getElementById('cancel-note'); \
         return n && n.textContent !== 'Cancelling…' ? n.textContent : null;",
    )
    .await;
    assert_eq!(note, "Cancelled. Nothing was charged.");
    let (_, cancelled) = app.task(&queued).await;
    assert_eq!(cancelled["cancelled"], true, "{cancelled}");
    assert!(client.find(Locator::Css("#cancel")).await.is_err());
    let started = create_playing(&app, "cancel_race; wait=60").await;
    client
        .goto(&format!("{}/console#/tasks/{started}", app.address))
        .await
        .unwrap();
    until(
        &client,
        20,
        "the started task",
        &format!(
            "const c = document.querySelector('#detail code'); \
             return c && c.textContent === '{started}' && \
               document.querySelector('#detail .status.processing') ? true : null;"
        ),
    )
    .await;
    assert!(client.find(Locator::Css("#cancel")).await.is_err());

    // The gallery: 25 waiting tasks fill more than a page; the status filter finds them all.
    for _ in 0..25 {
        create_playing(&app, "slow_queue; wait=600").await;
    }
    client.refresh().await.unwrap();
    until(
        &client,
        20,
        "a full first page",
        "return document.querySelectorAll('#gallery [data-task]').length === 24 && \
           !document.getElementById('page-older').disabled ? true : null;",
    )
    .await;
    find(&client, "#page-older").await.click().await.unwrap();
    until(
        &client,
        10,
        "the second page",
        "const n = document.querySelectorAll('#gallery [data-task]').length; \
         return n > 0 && n < 24 && !document.getElementById('page-newer').disabled ? n : null;",
    )
    .await;
    find(&client, "#filter-status")
        .await
        .select_by_value("pending")
        .await
        .unwrap();
    let pending = until(
        &client,
        10,
        "the pending tasks",
        "const tiles = [...document.querySelectorAll('#gallery [data-task]')]; \
         return tiles.length === 24 && tiles.every(t => t.textContent.includes('pending')) && \
           document.getElementById('page-number').textContent === 'Page 1' ? tiles.length : null;",
    )
    .await;
    assert_eq!(pending, 24);
    find(&client, "#filter-model")
        .await
        .select_by_value("seedance-2.5")
        .await
        .unwrap();
    until(
        &client,
        10,
        "an empty filter",
        "const n = document.getElementById('no-tasks'); \
         return !n.hidden && n.textContent.includes('match') ? true : null;",
    )
    .await;
    find(&client, "#filter-model")
        .await
        .select_by_value("")
        .await
        .unwrap();
    find(&client, "#filter-status")
        .await
        .select_by_value("")
        .await
        .unwrap();
    until(
        &client,
        10,
        "the unfiltered gallery",
        "return document.querySelectorAll('#gallery [data-task]').length === 24 ? true : null;",
    )
    .await;

    // Tab reaches every task in order, with a visible focus ring; Enter opens the focused one.
    client
        .execute(
            "document.getElementById('filter-model').focus();",
            Vec::new(),
        )
        .await
        .unwrap();
    let tiles = client
        .execute(
            "return [...document.querySelectorAll('#gallery [data-task]')].map(t => t.dataset.task);",
            Vec::new(),
        )
        .await
        .unwrap();
    let mut walked = Vec::new();
    for _ in tiles.as_array().unwrap() {
        press(&client, '\u{E004}').await;
        let focused = client
            .execute(
                "const e = document.activeElement; const s = getComputedStyle(e); \
                 return {task: e.dataset.task || null, ring: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2};",
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(focused["ring"], true, "{focused}");
        walked.push(focused["task"].clone());
    }
    assert_eq!(Value::Array(walked.clone()), tiles);
    press(&client, '\u{E007}').await;
    let last = walked.last().unwrap().as_str().unwrap().to_owned();
    showing(&client, &last, "the task opened from the keyboard").await;
    accessible_in_both_themes(&client, "the gallery with waiting tasks").await;

    // A phone gets one column: nothing wider than the screen, the result under the form.
    client.set_window_size(390, 844).await.unwrap();
    let layout = until(
        &client,
        10,
        "the phone layout",
        "const form = document.getElementById('create').getBoundingClientRect(); \
         const result = document.getElementById('detail').getBoundingClientRect(); \
         return innerWidth <= 400 ? {wide: document.documentElement.scrollWidth, inner: innerWidth, \
           stacked: result.top >= form.bottom} : null;",
    )
    .await;
    assert!(
        layout["wide"].as_u64() <= layout["inner"].as_u64(),
        "{layout}"
    );
    assert_eq!(layout["stacked"], true, "{layout}");
    let shot = target_dir().join("console-phone.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    std::fs::write(&shot, client.screenshot().await.unwrap()).unwrap();
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
