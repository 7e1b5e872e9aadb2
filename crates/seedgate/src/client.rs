//! The client commands (`seedgate generate`, `quote`, `tasks`, `models`): the HTTP API from a
//! terminal, with `SEEDGATE_URL` and `SEEDGATE_API_KEY`. Local files become data: URIs; URLs
//! and `asset://` references are sent as they are.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value};

/// Where the server is and who is asking.
pub struct Client {
    base: String,
    key: String,
    http: reqwest::Client,
}

/// What a generation or a quote asks for, as the command line gave it.
#[derive(Debug, Default, clap::Args)]
pub struct Request {
    /// The model: seedance-2.0, seedance-2.0-fast, seedance-2.0-mini or seedance-2.5.
    #[arg(long)]
    pub model: String,
    /// text-to-video, image-to-video, start-end-to-video, reference-to-video, video-to-video
    /// or video-extension; inferred from the inputs when omitted, as by the API.
    #[arg(long)]
    pub operation: Option<String>,
    #[arg(long)]
    pub prompt: Option<String>,
    /// 480p, 720p, 1080p…
    #[arg(long)]
    pub resolution: Option<String>,
    /// Seconds; -1 lets the model choose.
    #[arg(long, allow_hyphen_values = true)]
    pub duration: Option<i64>,
    /// 16:9, 9:16, 1:1, 4:3, 3:4, 21:9 or adaptive.
    #[arg(long)]
    pub aspect_ratio: Option<String>,
    /// An image: a local file, a URL or asset://<id>. Once for the first frame; twice for the
    /// first and last frames (start-end-to-video); more for reference images.
    #[arg(long = "image", value_name = "FILE|URL")]
    pub images: Vec<String>,
    /// A video: the source of video-to-video, or reference videos.
    #[arg(long = "video", value_name = "FILE|URL")]
    pub videos: Vec<String>,
    /// Reference audio (reference-to-video).
    #[arg(long = "audio", value_name = "FILE|URL")]
    pub audios: Vec<String>,
    /// video-extension: the completed task to continue.
    #[arg(long = "extend")]
    pub extend: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub seed: Option<i64>,
    /// No generated audio track.
    #[arg(long)]
    pub no_audio: bool,
    /// A draft: a quick preview at the model's draft resolution (seedance-2.5: 480p).
    #[arg(long)]
    pub draft: bool,
    /// The final of a completed draft of the same model: its prompt, inputs, length, ratio
    /// and audio at --resolution, billed on its own.
    #[arg(long = "final", value_name = "TASK_ID", conflicts_with = "draft")]
    pub final_of: Option<String>,
    /// The file's container: mp4 (the default) or, where the model makes it, mov.
    #[arg(long, value_name = "mp4|mov")]
    pub output_format: Option<String>,
}

/// A local file as a data: URI; anything with a scheme as it is.
fn media_value(value: &str) -> Result<Value, String> {
    let lower = value.to_ascii_lowercase();
    if ["http://", "https://", "data:", "asset://"]
        .iter()
        .any(|scheme| lower.starts_with(scheme))
    {
        return Ok(Value::String(value.to_owned()));
    }
    let path = Path::new(value);
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {value}: {e}"))?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mime = match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "aac" => "audio/aac",
        other => {
            return Err(format!(
                "{value}: cannot tell its type from `.{other}`; use png, jpg, webp, mp4, mov, wav, mp3, m4a or aac"
            ))
        }
    };
    Ok(Value::String(format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )))
}

fn values(items: &[String]) -> Result<Vec<Value>, String> {
    items.iter().map(|item| media_value(item)).collect()
}

impl Request {
    /// The create body. Inputs go to the fields their operation takes; with no operation,
    /// one image is a first frame, several are references, as the API infers them.
    pub fn body(&self) -> Result<Value, String> {
        let mut body = Map::new();
        body.insert("model".into(), self.model.clone().into());
        let text = [
            ("operation", &self.operation),
            ("prompt", &self.prompt),
            ("resolution", &self.resolution),
            ("aspect_ratio", &self.aspect_ratio),
            ("task_id", &self.extend),
            ("draft_task_id", &self.final_of),
            ("output_format", &self.output_format),
        ];
        for (field, value) in text {
            if let Some(value) = value {
                body.insert(field.into(), value.clone().into());
            }
        }
        if let Some(duration) = self.duration {
            body.insert("duration".into(), duration.into());
        }
        if let Some(seed) = self.seed {
            body.insert("seed".into(), seed.into());
        }
        if self.no_audio {
            body.insert("generate_audio".into(), false.into());
        }
        if self.draft {
            body.insert("draft".into(), true.into());
        }
        let mut images = values(&self.images)?;
        let mut videos = values(&self.videos)?;
        let audios = values(&self.audios)?;
        let operation = self.operation.as_deref();
        match (operation, images.len()) {
            (_, 0) => {}
            (Some("start-end-to-video"), _) => {
                let mut frames = images.drain(..);
                body.insert("start_image".into(), frames.next().unwrap_or_default());
                if let Some(end) = frames.next() {
                    body.insert("end_image".into(), end);
                }
                if frames.next().is_some() {
                    return Err("start-end-to-video takes two images, first and last".into());
                }
            }
            (Some("image-to-video"), 1) | (None, 1) if videos.is_empty() && audios.is_empty() => {
                body.insert("image_url".into(), images.remove(0));
            }
            _ => {
                body.insert("reference_images".into(), Value::Array(images));
            }
        }
        let one_source = matches!(operation, Some("video-to-video"))
            || (operation.is_none()
                && videos.len() == 1
                && body.get("reference_images").is_none()
                && audios.is_empty());
        if one_source && videos.len() == 1 {
            body.insert("video_url".into(), videos.remove(0));
        } else if !videos.is_empty() {
            body.insert("video_urls".into(), Value::Array(videos));
        }
        if !audios.is_empty() {
            body.insert("audio_urls".into(), Value::Array(audios));
        }
        Ok(Value::Object(body))
    }
}

/// The API's error, as one line for the terminal.
fn api_error(status: reqwest::StatusCode, body: &Value) -> String {
    let error = &body["error"];
    match (error["code"].as_str(), error["message"].as_str()) {
        (Some(code), Some(message)) => format!("{code} ({}): {message}", status.as_u16()),
        _ => format!("the server answered {status}"),
    }
}

fn out(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
}

impl Client {
    pub fn new(base: &str, key: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("seedgate-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            http,
        })
    }

    /// The answer's status and JSON body, whatever the status.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, Value), String> {
        let response =
            request.bearer_auth(&self.key).send().await.map_err(|e| {
                format!("cannot reach {}: {}", self.base, crate::fetch::describe(e))
            })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, String> {
        let (status, body) = self.exchange(request).await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(api_error(status, &body))
        }
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    /// `seedgate quote`: tokens and cost in USD and CNY, nothing created.
    pub async fn quote(&self, request: &Request, as_json: bool) -> Result<(), String> {
        let quote = self.post("/v1/videos/quote", &request.body()?).await?;
        if as_json {
            out(&quote.to_string());
            return Ok(());
        }
        out(&format!(
            "{} {} {}×{} {} s: {} tokens, ${} (¥{})",
            quote["model"].as_str().unwrap_or_default(),
            quote["operation"].as_str().unwrap_or_default(),
            quote["width"],
            quote["height"],
            quote["output_seconds"],
            quote["tokens"]["billed"],
            quote["cost"]["amount"].as_str().unwrap_or_default(),
            quote["cost"]["cny"].as_str().unwrap_or_default(),
        ));
        Ok(())
    }

    /// `seedgate generate`: creates the task, follows it with a progress bar (Ctrl-C offers to
    /// cancel it), downloads the video and prints its cost and path. With `as_json` the final
    /// task object is all stdout gets, and the video is saved only when `output` names a file.
    pub async fn generate(
        &self,
        request: &Request,
        output: Option<PathBuf>,
        as_json: bool,
        open: bool,
    ) -> Result<(), String> {
        let body = request.body()?;
        // One key per invocation: a retried create after a lost answer makes one task.
        let created = self
            .send(
                self.http
                    .post(format!("{}/v1/videos/generations", self.base))
                    .header("idempotency-key", format!("cli-{}", ulid::Ulid::new()))
                    .json(&body),
            )
            .await?;
        let id = created["id"].as_str().unwrap_or_default().to_owned();
        if open {
            self.open_in_console(&id);
        }
        let task = self.follow(&id, as_json).await?;
        if as_json {
            out(&task.to_string());
            finished(&task)?;
            if let Some(path) = output {
                let size = self.save(&task, &path).await?;
                note(&format!("{id}: saved {} ({size} bytes)", path.display()));
            }
            return Ok(());
        }
        finished(&task)?;
        let extension = task["result"]["container"].as_str().unwrap_or("mp4");
        let path = output.unwrap_or_else(|| PathBuf::from(format!("{id}.{extension}")));
        let size = self.save(&task, &path).await?;
        out(&format!(
            "{id} completed: {} ({size} bytes), cost ${} (¥{})",
            path.display(),
            task["cost"]["amount"].as_str().unwrap_or("0"),
            task["cost"]["cny"].as_str().unwrap_or("0"),
        ));
        Ok(())
    }

    /// Opens the task's console page (`/console#/tasks/<id>`) with the desktop's opener;
    /// prints the address when there is none.
    fn open_in_console(&self, id: &str) {
        let url = format!("{}/console#/tasks/{id}", self.base);
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        let opened = std::process::Command::new(opener)
            .arg(&url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if opened.is_err() {
            note(&format!("open {url} in a browser to follow the task"));
        }
    }

    /// Downloads a completed task's video to `path`; its size in bytes.
    async fn save(&self, task: &Value, path: &Path) -> Result<usize, String> {
        let url = task["result"]["video_url"]
            .as_str()
            .ok_or("the completed task has no video URL")?;
        let bytes = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("cannot download the video: {e}"))?
            .bytes()
            .await
            .map_err(|e| format!("cannot download the video: {e}"))?;
        std::fs::write(path, &bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(bytes.len())
    }

    /// Asks the server to cancel a task: the cancelled task, or `None` when it answers that the
    /// task can no longer be cancelled (it is already generating, or has ended).
    async fn cancel(&self, id: &str) -> Result<Option<Value>, String> {
        let (status, body) = self
            .exchange(self.http.delete(format!("{}/v1/tasks/{id}", self.base)))
            .await?;
        match status {
            s if s.is_success() => Ok(Some(body)),
            reqwest::StatusCode::CONFLICT => Ok(None),
            s => Err(api_error(s, &body)),
        }
    }

    /// Polls until the task ends. The bar shows its status, the time so far and an estimate of
    /// the time left (from the requested length; the server does not report progress).
    ///
    /// Ctrl-C asks whether to cancel. A task already generating cannot be: the video will be
    /// charged whatever happens here, so it is followed to the end and downloaded; a second
    /// Ctrl-C then stops following it.
    async fn follow(&self, id: &str, quiet: bool) -> Result<Value, String> {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new_spinner()
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {msg} · {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(id.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        // Kept across waits: once polled it is registered, so a Ctrl-C that arrives while a
        // read is in flight is still seen at the next wait.
        let mut interrupt = Box::pin(tokio::signal::ctrl_c());
        let mut cancellable = true;
        // The task's event stream, read again from its last event when it drops; a read of
        // the task stands in while it cannot be opened.
        let mut events: Option<EventReader> = None;
        let mut last_event_id: Option<String> = None;
        loop {
            if events.is_none() {
                events = self.open_events(id, last_event_id.as_deref()).await;
            }
            let next = async {
                match events.as_mut() {
                    Some(reader) => reader.next().await,
                    None => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        None
                    }
                }
            };
            tokio::select! {
                event = next => {
                    let task = match event {
                        Some((event_id, data)) => {
                            last_event_id = Some(event_id);
                            bar.set_message(progress_line(&data));
                            data["task"].clone()
                        }
                        None => {
                            events = None;
                            let task = self.get(&format!("/v1/tasks/{id}")).await?;
                            bar.set_message(task["status"].as_str().unwrap_or("unknown").to_owned());
                            task
                        }
                    };
                    if matches!(task["status"].as_str(), Some("completed" | "failed")) {
                        bar.finish_and_clear();
                        return Ok(task);
                    }
                }
                _ = &mut interrupt => {
                    interrupt = Box::pin(tokio::signal::ctrl_c());
                    if !cancellable {
                        bar.finish_and_clear();
                        return Err(format!(
                            "stopped following {id}: it is still generating and will be \
                             charged (`seedgate tasks get {id}` shows it)"
                        ));
                    }
                    if !ask(&bar, format!("Cancel {id}? [y/N] ")).await {
                        continue;
                    }
                    match self.cancel(id).await? {
                        Some(cancelled) => {
                            bar.finish_and_clear();
                            return Err(format!(
                                "{id} cancelled: {}",
                                cancelled["status"].as_str().unwrap_or("?")
                            ));
                        }
                        None => {
                            cancellable = false;
                            bar.suspend(|| {
                                note(&format!(
                                    "{id} can no longer be cancelled: it is already generating \
                                     and will be charged. Waiting to download it (Ctrl-C \
                                     again stops waiting)."
                                ));
                            });
                        }
                    }
                }
            }
        }
    }

    /// The task's event stream, from after `last_event_id`; None when it cannot be opened.
    async fn open_events(&self, id: &str, last_event_id: Option<&str>) -> Option<EventReader> {
        let mut request = self
            .http
            .get(format!("{}/v1/tasks/{id}/events", self.base))
            .bearer_auth(&self.key);
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        let response = request.send().await.ok()?;
        response.status().is_success().then(|| EventReader {
            response,
            buffer: String::new(),
        })
    }

    /// `seedgate tasks list`: the newest tasks, filtered, as a table or as the API's page.
    pub async fn list_tasks(&self, listing: &TaskListing) -> Result<(), String> {
        let mut path = format!("/v1/tasks?limit={}", listing.limit);
        for (name, value) in [("status", &listing.status), ("model", &listing.model)] {
            if let Some(value) = value {
                path.push_str(&format!("&{name}={}", urlencoding(value)));
            }
        }
        let page = self.get(&path).await?;
        if listing.json {
            out(&page.to_string());
            return Ok(());
        }
        let tasks = page["data"].as_array().map_or(&[][..], Vec::as_slice);
        if tasks.is_empty() {
            note("no tasks");
            return Ok(());
        }
        let now = unix_now();
        out(&format!(
            "{:<32} {:<10} {:<17} {:>12} {:>10}  PROMPT",
            "ID", "STATUS", "MODEL", "CREATED", "COST_USD"
        ));
        for task in tasks {
            out(&format!(
                "{:<32} {:<10} {:<17} {:>12} {:>10}  {}",
                task["id"].as_str().unwrap_or_default(),
                task["status"].as_str().unwrap_or_default(),
                task["model"].as_str().unwrap_or_default(),
                ago(now, task["created_at"].as_i64().unwrap_or(now)),
                cost_column(task),
                first_words(task["request"]["prompt"].as_str().unwrap_or(""), 48),
            ));
        }
        if page["has_more"] == true {
            note(&format!(
                "more tasks are older; --limit takes up to 100 (showing {})",
                tasks.len()
            ));
        }
        Ok(())
    }

    /// `seedgate tasks get ID`: the task, readable, or its object with `as_json`.
    pub async fn get_task(&self, id: &str, as_json: bool) -> Result<(), String> {
        let task = self.get(&format!("/v1/tasks/{id}")).await?;
        if as_json {
            out(&serde_json::to_string_pretty(&task).unwrap_or_default());
        } else {
            out(&describe_task(&task, unix_now()));
        }
        Ok(())
    }

    /// `seedgate tasks cancel ID`.
    pub async fn cancel_task(&self, id: &str) -> Result<(), String> {
        let task = self
            .send(self.http.delete(format!("{}/v1/tasks/{id}", self.base)))
            .await?;
        out(&format!("{id}: {}", task["status"].as_str().unwrap_or("?")));
        Ok(())
    }

    /// `seedgate models`: each model's sizes, lengths, reference limits and prices, as a
    /// table or as the Models API's detail objects.
    pub async fn models(&self, as_json: bool) -> Result<(), String> {
        let list = self.get("/v1/models").await?;
        let mut details = Vec::new();
        for model in list["data"].as_array().into_iter().flatten() {
            let id = model["id"].as_str().unwrap_or_default();
            details.push(self.get(&format!("/v1/models/{}", urlencoding(id))).await?);
        }
        if as_json {
            out(&Value::Array(details).to_string());
            return Ok(());
        }
        out(&format!(
            "{:<18} {:<22} {:>8} {:>14}  {:<20} DRAFTS",
            "MODEL", "RESOLUTIONS", "SECONDS", "REFS I/V/A", "USD / 1M TOKENS"
        ));
        for detail in &details {
            out(&model_row(detail));
        }
        Ok(())
    }
}

/// A task's event stream, read an event at a time.
struct EventReader {
    response: reqwest::Response,
    buffer: String,
}

impl EventReader {
    /// The next event's id and data; None once the stream ended or broke.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|line| line.strip_prefix(name))
                        .map(|value| value.trim_start().to_owned())
                };
                // Keep-alive comments carry no data.
                if let Some(data) = field("data:") {
                    let data = serde_json::from_str(&data).ok()?;
                    return Some((field("id:").unwrap_or_default(), data));
                }
                continue;
            }
            let chunk = self.response.chunk().await.ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// What the progress bar says of an event: the status, the place in the queue and the ETA
/// the server measured.
fn progress_line(data: &Value) -> String {
    let mut line = data["status"].as_str().unwrap_or("unknown").to_owned();
    if let Some(ahead) = data["queue_position"].as_i64() {
        line.push_str(&format!(" · {ahead} ahead"));
    }
    if let Some(eta) = data["eta_seconds"].as_u64() {
        line.push_str(&format!(" · ETA ~{eta} s"));
    }
    line
}

/// Which tasks `seedgate tasks list` shows.
#[derive(Debug, clap::Args)]
pub struct TaskListing {
    /// Only tasks with this status: pending, processing, completed or failed.
    #[arg(long)]
    pub status: Option<String>,
    /// Only tasks of this model.
    #[arg(long)]
    pub model: Option<String>,
    /// How many, newest first (1–100).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub limit: u32,
    /// The API's page as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A query value, percent-encoded.
fn urlencoding(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How long ago `then` was, in the largest unit that fits: `just now`, `42 s ago`, `5 min
/// ago`, `3 h ago`, `2 days ago`.
fn ago(now: i64, then: i64) -> String {
    let seconds = (now - then).max(0);
    match seconds {
        0..=9 => "just now".into(),
        10..=59 => format!("{seconds} s ago"),
        60..=3_599 => format!("{} min ago", seconds / 60),
        3_600..=86_399 => format!("{} h ago", seconds / 3_600),
        _ if seconds < 2 * 86_400 => "1 day ago".into(),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

/// At most `chars` characters of `text` on one line, `…` when cut.
fn first_words(text: &str, chars: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= chars {
        return line;
    }
    let cut: String = line.chars().take(chars.saturating_sub(1)).collect();
    format!("{}…", cut.trim_end())
}

/// What a task cost, or at most what it holds while unfinished.
fn cost_column(task: &Value) -> String {
    match (task["cost"]["amount"].as_str(), task["status"].as_str()) {
        (Some(amount), _) => amount.to_owned(),
        (None, Some("completed" | "failed")) => "0".into(),
        _ => format!(
            "≤{}",
            task["estimated_cost"]["amount"].as_str().unwrap_or("?")
        ),
    }
}

/// A task for people: what it is, what was asked, where it stands, and what it cost.
fn describe_task(task: &Value, now: i64) -> String {
    let text = |value: &Value| value.as_str().unwrap_or("-").to_owned();
    let request = &task["request"];
    let mut lines = vec![
        format!("{}  {}", text(&task["id"]), text(&task["status"])),
        format!(
            "  model      {} · {} · {}",
            text(&task["model"]),
            text(&task["operation"]),
            text(&task["provider"])
        ),
        format!(
            "  created    {}",
            ago(now, task["created_at"].as_i64().unwrap_or(now))
        ),
    ];
    if let Some(prompt) = request["prompt"].as_str() {
        lines.push(format!("  prompt     {}", first_words(prompt, 200)));
    }
    if request.is_object() {
        lines.push(format!(
            "  asked      {} · {} · {} s · audio {}{}",
            text(&request["resolution"]),
            text(&request["aspect_ratio"]),
            request["duration"],
            if request["generate_audio"] == true {
                "on"
            } else {
                "off"
            },
            request["seed"]
                .as_i64()
                .map_or_else(String::new, |seed| format!(" · seed {seed}")),
        ));
    }
    for input in request["inputs"].as_array().into_iter().flatten() {
        let source = match input["url"].as_str() {
            Some(url) => url.to_owned(),
            None => format!("inline {} ({} bytes)", text(&input["mime"]), input["bytes"]),
        };
        lines.push(format!(
            "  input      {} {}: {source}",
            text(&input["field"]),
            text(&input["kind"])
        ));
    }
    let result = &task["result"];
    if result.is_object() {
        lines.push(format!(
            "  result     {}×{} · {:.2} s · {}",
            result["width"],
            result["height"],
            result["duration"].as_f64().unwrap_or(0.0),
            result["video_url"].as_str().unwrap_or("files expired"),
        ));
    }
    if let Some(code) = task["error"]["code"].as_str() {
        lines.push(format!(
            "  error      {code}: {}",
            text(&task["error"]["message"])
        ));
    }
    lines.push(format!("  cost       {}", cost_column(task)));
    lines.join("\n")
}

/// One row of `seedgate models`.
fn model_row(detail: &Value) -> String {
    let lab = &detail["tokenlab"];
    let list = |value: &Value| {
        value
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    let limits = &lab["reference_limits"];
    let summary = &lab["pricing_summary"];
    format!(
        "{:<18} {:<22} {:>8} {:>14}  {:<20} {}",
        detail["id"].as_str().unwrap_or_default(),
        list(&lab["resolutions"]),
        format!("{}–{}", lab["duration"]["min"], lab["duration"]["max"]),
        format!(
            "{}/{}/{}",
            limits["images"], limits["videos"], limits["audios"]
        ),
        format!(
            "{}–{}",
            summary["min_price"].as_str().unwrap_or("?"),
            summary["max_price"].as_str().unwrap_or("?")
        ),
        if lab["draft"].is_object() {
            "yes"
        } else {
            "no"
        },
    )
}

/// A failed task is an error of the command, with its code and message.
fn finished(task: &Value) -> Result<(), String> {
    if task["status"] == "completed" {
        return Ok(());
    }
    Err(format!(
        "{} failed: {}: {}",
        task["id"].as_str().unwrap_or_default(),
        task["error"]["code"].as_str().unwrap_or("unknown"),
        task["error"]["message"].as_str().unwrap_or_default()
    ))
}

/// Asks a yes/no question on the terminal while the progress bar is suspended; no answer is no.
async fn ask(bar: &ProgressBar, question: String) -> bool {
    let bar = bar.clone();
    tokio::task::spawn_blocking(move || {
        answer(
            &bar,
            &question,
            &mut std::io::stdin().lock(),
            &mut std::io::stderr(),
        )
    })
    .await
    .unwrap_or(false)
}

/// The question and its answer, with the bar cleared and held for the whole exchange: its
/// ticker redraws the line several times a second and would overwrite the question, and a
/// suspended bar holds its lock, so the ticker waits until the answer is in.
fn answer(
    bar: &ProgressBar,
    question: &str,
    input: &mut dyn BufRead,
    prompt: &mut dyn Write,
) -> bool {
    bar.suspend(|| {
        let _ = write!(prompt, "{question}");
        let _ = prompt.flush();
        let mut reply = String::new();
        input.read_line(&mut reply).is_ok() && matches!(reply.trim(), "y" | "Y" | "yes")
    })
}

/// A message for the person at the terminal, never for a script reading stdout.
fn note(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(images: &[&str], operation: Option<&str>) -> Request {
        Request {
            model: "seedance-2.0".into(),
            operation: operation.map(str::to_owned),
            images: images.iter().map(|s| s.to_string()).collect(),
            ..Request::default()
        }
    }

    #[test]
    fn the_progress_line_says_the_status_the_queue_and_the_measured_eta() {
        let waiting = json!({"status": "pending", "queue_position": 3, "eta_seconds": 12});
        assert_eq!(progress_line(&waiting), "pending · 3 ahead · ETA ~12 s");
        let unmeasured =
            json!({"status": "processing", "queue_position": null, "eta_seconds": null});
        assert_eq!(progress_line(&unmeasured), "processing");
    }

    #[test]
    fn ages_read_in_the_largest_unit_that_fits() {
        let now = 1_000_000;
        for (seconds, expected) in [
            (0, "just now"),
            (42, "42 s ago"),
            (300, "5 min ago"),
            (3 * 3_600 + 5, "3 h ago"),
            (86_400 + 1, "1 day ago"),
            (3 * 86_400, "3 days ago"),
            (-5, "just now"),
        ] {
            assert_eq!(ago(now, now - seconds), expected, "{seconds}");
        }
    }

    #[test]
    fn prompts_are_cut_to_one_line_with_an_ellipsis() {
        assert_eq!(
            first_words("a  kite\nover the sea", 40),
            "a kite over the sea"
        );
        assert_eq!(first_words("a kite over the sea", 8), "a kite…");
        assert_eq!(first_words("", 8), "");
    }

    #[test]
    fn a_task_reads_as_what_was_asked_where_it_stands_and_its_cost() {
        let task = json!({"id": "vtask_1", "status": "failed", "model": "seedance-2.5",
            "operation": "image-to-video", "provider": "sandbox", "created_at": 100,
            "request": {"prompt": "a kite", "resolution": "720p", "aspect_ratio": "adaptive",
                "duration": 5, "generate_audio": false, "seed": 7,
                "inputs": [{"field": "image_url", "kind": "image", "source": "data",
                    "mime": "image/png", "bytes": 1234}]},
            "error": {"code": "task_expired", "message": "too late"},
            "estimated_cost": {"amount": "0.5"}});
        let text = describe_task(&task, 400);
        for expected in [
            "vtask_1  failed",
            "seedance-2.5 · image-to-video · sandbox",
            "5 min ago",
            "prompt     a kite",
            "720p · adaptive · 5 s · audio off · seed 7",
            "image_url image: inline image/png (1234 bytes)",
            "task_expired: too late",
            "cost       0",
        ] {
            assert!(text.contains(expected), "{expected} in\n{text}");
        }
    }

    #[test]
    fn a_draft_and_its_container_are_asked_for_by_their_fields() {
        let plain = request(&[], None).body().unwrap();
        assert!(plain.get("draft").is_none() && plain.get("output_format").is_none());
        let draft = Request {
            draft: true,
            output_format: Some("mov".into()),
            ..request(&[], None)
        }
        .body()
        .unwrap();
        assert_eq!(
            (&draft["draft"], &draft["output_format"]),
            (&json!(true), &json!("mov"))
        );
        let final_of_it = Request {
            final_of: Some("vtask_01JF3Q7Z8X9Y0A1B2C3D4E5F6G".into()),
            resolution: Some("1080p".into()),
            ..request(&[], None)
        }
        .body()
        .unwrap();
        assert_eq!(
            (&final_of_it["draft_task_id"], &final_of_it["resolution"]),
            (&json!("vtask_01JF3Q7Z8X9Y0A1B2C3D4E5F6G"), &json!("1080p"))
        );
        assert!(final_of_it.get("draft").is_none());
    }

    #[test]
    fn inputs_go_to_the_fields_their_operation_takes() {
        let a = "https://e.com/a.png";
        let b = "asset://asset-20260720123456-ab1cd";
        assert_eq!(request(&[a], None).body().unwrap()["image_url"], a);
        let pair = request(&[a, b], Some("start-end-to-video")).body().unwrap();
        assert_eq!(
            (pair["start_image"].as_str(), pair["end_image"].as_str()),
            (Some(a), Some(b))
        );
        let refs = request(&[a, b], None).body().unwrap();
        assert_eq!(refs["reference_images"], json!([a, b]));
        let one_ref = request(&[a], Some("reference-to-video")).body().unwrap();
        assert_eq!(one_ref["reference_images"], json!([a]));
        let v2v = Request {
            videos: vec!["https://e.com/v.mp4".into()],
            ..request(&[], None)
        };
        assert_eq!(v2v.body().unwrap()["video_url"], "https://e.com/v.mp4");
        assert!(request(&[a, a, a], Some("start-end-to-video"))
            .body()
            .is_err());
    }

    #[test]
    fn local_files_travel_as_data_uris() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frame.PNG");
        std::fs::write(&path, b"\x89PNG").unwrap();
        let body = request(&[path.to_str().unwrap()], None).body().unwrap();
        assert_eq!(body["image_url"], "data:image/png;base64,iVBORw==");
        let unknown = dir.path().join("notes.txt");
        std::fs::write(&unknown, b"x").unwrap();
        assert!(request(&[unknown.to_str().unwrap()], None).body().is_err());
        assert!(request(&["/no/such/file.png"], None).body().is_err());
    }

    /// What reached a terminal, in order: the bar's draws and the question's exchange.
    #[derive(Clone, Debug, Default)]
    struct Screen(std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>);

    impl Screen {
        fn log(&self, event: &'static str) {
            self.0.lock().unwrap().push(event);
        }
    }

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            80
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, _: &str) -> std::io::Result<()> {
            self.log("bar");
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            if !s.is_empty() {
                self.log("bar");
            }
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Write for Screen {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.log("question");
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Someone who takes a while to type `y`.
    struct SlowReply(Screen);

    impl std::io::Read for SlowReply {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            unreachable!("read through BufRead")
        }
    }

    impl BufRead for SlowReply {
        fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
            std::thread::sleep(Duration::from_millis(400));
            self.0.log("answered");
            Ok(b"y\n")
        }
        fn consume(&mut self, _: usize) {}
    }

    #[test]
    fn the_cancel_question_is_not_overwritten_by_the_progress_bar() {
        let screen = Screen::default();
        let bar = ProgressBar::with_draw_target(
            None,
            indicatif::ProgressDrawTarget::term_like(Box::new(screen.clone())),
        );
        bar.enable_steady_tick(Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(100));
        let yes = answer(
            &bar,
            "Cancel task? [y/N] ",
            &mut SlowReply(screen.clone()),
            &mut screen.clone(),
        );
        bar.finish_and_clear();
        assert!(yes);
        let events = screen.0.lock().unwrap().clone();
        let asked = events.iter().position(|e| *e == "question").unwrap();
        let answered = events.iter().position(|e| *e == "answered").unwrap();
        assert!(
            events[..asked].contains(&"bar"),
            "the bar was ticking: {events:?}"
        );
        assert!(
            !events[asked..answered].contains(&"bar"),
            "the bar drew over the question: {events:?}"
        );
    }
}
