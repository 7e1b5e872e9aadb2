//! Fakes of the other vendors that host Seedance, each speaking its documented wire
//! (docs/vendors.md): fal's queue API, Replicate's predictions API and OpenRouter's video API.
//! Jobs go queued → running → their ending over a configurable time, results are real MP4s
//! (the sandbox renderer, shared with the Ark fake), and each can fail on cue: an error
//! status (429 with `Retry-After`, 5xx), a slow answer past the client's timeout, a reset,
//! garbage, an answer lost after the job was made, moderation and expiry. Every request is
//! checked against the vendor's schema; anything else is recorded as a violation and fails
//! the test that made it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use seedgate::config::ChannelConfig;
use seedgate::ids::ChannelId;
use seedgate_contract::{AspectRatio, Catalog, Resolution};
use serde_json::{json, Value};

use crate::fake_ark::{rendered, Shape};

/// The vendors faked here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    Fal,
    Replicate,
    OpenRouter,
}

impl Wire {
    /// The channel's `provider`.
    pub fn provider(self) -> &'static str {
        match self {
            Wire::Fal => "fal",
            Wire::Replicate => "replicate",
            Wire::OpenRouter => "openrouter",
        }
    }

    /// The variable holding this vendor's key, set by `.cargo/config.toml`.
    pub fn key_env(self) -> &'static str {
        match self {
            Wire::Fal => "SEEDGATE_TEST_FAL_KEY",
            Wire::Replicate => "SEEDGATE_TEST_REPLICATE_KEY",
            Wire::OpenRouter => "SEEDGATE_TEST_OPENROUTER_KEY",
        }
    }

    fn authorization(self) -> String {
        let key = std::env::var(self.key_env())
            .unwrap_or_else(|_| panic!("{} comes from .cargo/config.toml", self.key_env()));
        match self {
            Wire::Fal => format!("Key {key}"),
            Wire::Replicate | Wire::OpenRouter => format!("Bearer {key}"),
        }
    }

    /// Our model id → the vendor's, as a channel maps them.
    fn models(self) -> [(&'static str, &'static str); 2] {
        match self {
            Wire::Fal => [
                ("seedance-2.0", "bytedance/seedance-2.0"),
                ("seedance-2.0-fast", "bytedance/seedance-2.0/fast"),
            ],
            Wire::Replicate => [
                ("seedance-2.0", "bytedance/seedance-2.0"),
                ("seedance-2.0-fast", "bytedance/seedance-2.0-fast"),
            ],
            Wire::OpenRouter => [
                ("seedance-2.0", "bytedance/seedance-2.0"),
                ("seedance-2.0-fast", "bytedance/seedance-2.0-fast"),
            ],
        }
    }
}

/// How a job ends once it has waited out its queue and its run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ending {
    Succeed,
    /// Refused on content grounds, as the vendor words it.
    Moderated,
    /// The vendor gave up on it: its deadline passed.
    Expire,
    Never,
}

/// A scripted misbehaviour for the next matching request. The first four strike before a
/// create makes its job; the `…AfterCreate` ones and `HoldReply` after, so the client cannot
/// know a job exists.
#[derive(Clone, Debug)]
pub enum Fault {
    Status(u16),
    Slow(Duration),
    Reset,
    Garbage,
    HoldReply(Duration),
    ResetAfterCreate,
    StatusAfterCreate(u16),
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Endpoint {
    Create,
    /// Status and result reads.
    Read,
}

struct Job {
    id: String,
    model: String,
    created: Instant,
    created_at: String,
    input: Value,
    ending: Ending,
    cancelled: bool,
    shape: Shape,
}

pub struct VendorState {
    wire: Wire,
    root: Mutex<String>,
    jobs: Mutex<HashMap<String, Job>>,
    faults: Mutex<VecDeque<(Endpoint, Fault)>>,
    violations: Mutex<Vec<String>>,
    timing: Mutex<(Duration, Duration)>,
    ending: Mutex<Ending>,
    files: Mutex<HashMap<String, Bytes>>,
    counter: Mutex<u64>,
    answers_lost: Mutex<usize>,
    lose_answer_every: Mutex<Option<u32>>,
    creates: Mutex<u32>,
}

pub struct FakeVendor {
    pub wire: Wire,
    /// The channel's `base_url`.
    pub base_url: String,
    pub state: Arc<VendorState>,
}

impl FakeVendor {
    pub async fn start(wire: Wire) -> Self {
        let state = Arc::new(VendorState {
            wire,
            root: Mutex::default(),
            jobs: Mutex::default(),
            faults: Mutex::default(),
            violations: Mutex::default(),
            timing: Mutex::new((Duration::from_millis(150), Duration::from_millis(250))),
            ending: Mutex::new(Ending::Succeed),
            files: Mutex::default(),
            counter: Mutex::default(),
            answers_lost: Mutex::default(),
            lose_answer_every: Mutex::default(),
            creates: Mutex::default(),
        });
        let router = Router::new().fallback(dispatch).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let root = format!("http://{}", listener.local_addr().unwrap());
        *state.root.lock().unwrap() = root.clone();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let base_url = match wire {
            Wire::Fal => root,
            Wire::Replicate => format!("{root}/v1"),
            Wire::OpenRouter => format!("{root}/api/v1"),
        };
        Self {
            wire,
            base_url,
            state,
        }
    }

    /// A channel on this fake serving both models at 480p and 720p.
    pub fn channel(&self, id: &str, priority: u32) -> ChannelConfig {
        ChannelConfig {
            id: ChannelId::new(id),
            provider: self.wire.provider().into(),
            base_url: self.base_url.clone(),
            api_key_env: self.wire.key_env().into(),
            models: self
                .wire
                .models()
                .into_iter()
                .map(|(ours, theirs)| (ours.to_owned(), theirs.to_owned()))
                .collect(),
            resolutions: vec![Resolution::P480, Resolution::P720],
            operations: None,
            costs: Default::default(),
            priority,
            weight: 1,
            routing: Default::default(),
            max_concurrent_tasks: 50,
            timeout_seconds: 2,
            polls_per_second: 1000,
            poll_batch: Some(16),
        }
    }

    pub fn fault(&self, endpoint: Endpoint, fault: Fault) {
        self.state
            .faults
            .lock()
            .unwrap()
            .push_back((endpoint, fault));
    }

    pub fn set_ending(&self, ending: Ending) {
        *self.state.ending.lock().unwrap() = ending;
    }

    /// Makes every nth create lose its answer once its job exists: held past a 2 s client
    /// timeout, reset, or answered 502, in turn.
    pub fn lose_answer_every(&self, n: u32) {
        *self.state.lose_answer_every.lock().unwrap() = Some(n);
    }

    /// Creates whose job was made but whose answer was lost.
    pub fn answers_lost(&self) -> usize {
        *self.state.answers_lost.lock().unwrap()
    }

    /// Jobs made, whatever became of their answers.
    pub fn jobs_made(&self) -> usize {
        self.state.jobs.lock().unwrap().len()
    }

    /// Each job's id and the input it was made with.
    pub fn jobs(&self) -> Vec<(String, Value)> {
        self.state
            .jobs
            .lock()
            .unwrap()
            .values()
            .map(|job| (job.id.clone(), job.input.clone()))
            .collect()
    }
}

/// Every test that used a fake fails if any request broke the vendor's contract.
impl Drop for FakeVendor {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let violations = self.state.violations.lock().unwrap();
            assert!(
                violations.is_empty(),
                "requests broke {:?}'s contract: {violations:?}",
                self.wire
            );
        }
    }
}

#[derive(PartialEq)]
enum Phase {
    Queued,
    Running,
    Done(Ending),
    Cancelled,
}

fn phase(job: &Job, timing: (Duration, Duration)) -> Phase {
    let age = job.created.elapsed();
    if job.cancelled {
        Phase::Cancelled
    } else if age < timing.0 {
        Phase::Queued
    } else if age < timing.0 + timing.1 || job.ending == Ending::Never {
        Phase::Running
    } else {
        Phase::Done(job.ending)
    }
}

/// The vendor's error body for `status`.
fn error(wire: Wire, status: StatusCode, message: &str) -> Response {
    let body = match wire {
        Wire::Fal => json!({"detail": message}),
        Wire::Replicate => json!({"title": status.canonical_reason(), "detail": message,
            "status": status.as_u16()}),
        Wire::OpenRouter => json!({"error": {"code": status.as_u16(), "message": message}}),
    };
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert("retry-after", "1".parse().unwrap());
    }
    response
}

fn next_fault(state: &VendorState, endpoint: Endpoint) -> Option<Fault> {
    let mut faults = state.faults.lock().unwrap();
    let index = faults.iter().position(|(e, _)| *e == endpoint)?;
    faults.remove(index).map(|(_, f)| f)
}

/// Unwinding out of the handler makes the server drop the connection without an answer.
fn reset() -> ! {
    std::panic::resume_unwind(Box::new("connection reset by the fake vendor"))
}

async fn dispatch(
    State(state): State<Arc<VendorState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    if let Some(name) = path.strip_prefix("/files/") {
        let id = name.trim_end_matches(".mp4");
        return match state.files.lock().unwrap().get(id) {
            Some(bytes) => bytes.clone().into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    let wire = state.wire;
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(wire.authorization().as_str())
    {
        return error(wire, StatusCode::UNAUTHORIZED, "bad key");
    }
    let route = Route::of(wire, &method, &path);
    let endpoint = match route {
        Route::Create(_) => Endpoint::Create,
        _ => Endpoint::Read,
    };
    let fault = next_fault(&state, endpoint);
    match &fault {
        Some(Fault::Status(code)) => {
            return error(wire, StatusCode::from_u16(*code).unwrap(), "injected fault")
        }
        Some(Fault::Slow(delay)) => tokio::time::sleep(*delay).await,
        Some(Fault::Reset) => reset(),
        Some(Fault::Garbage) => return (StatusCode::OK, "{\"id\": \"").into_response(),
        _ => {}
    }
    match route {
        Route::Create(model) => create(&state, &model, &uri, &body, fault).await,
        Route::Status(id) => status(&state, &id).await,
        Route::Result(id) => result(&state, &id).await,
        Route::Cancel(id) => cancel(&state, &id),
        Route::List => list(&state, &uri),
        Route::Account => {
            Json(json!({"type": "organization", "username": "seedgate"})).into_response()
        }
        Route::Unknown => {
            state
                .violations
                .lock()
                .unwrap()
                .push(format!("{method} {path} is no endpoint"));
            error(wire, StatusCode::NOT_FOUND, "no such endpoint")
        }
    }
}

enum Route {
    Create(String),
    Status(String),
    Result(String),
    Cancel(String),
    List,
    Account,
    Unknown,
}

impl Route {
    fn of(wire: Wire, method: &Method, path: &str) -> Route {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (wire, method.as_str(), parts.as_slice()) {
            (Wire::Fal, "POST", [owner, app, rest @ ..]) if !rest.is_empty() => {
                Route::Create(format!("{owner}/{app}/{}", rest.join("/")))
            }
            (Wire::Fal, "GET", [owner, app, "requests", id, "status"]) => {
                Route::Status(format!("{owner}/{app}/requests/{id}"))
            }
            (Wire::Fal, "GET", [owner, app, "requests", id]) => {
                Route::Result(format!("{owner}/{app}/requests/{id}"))
            }
            (Wire::Fal, "PUT", [owner, app, "requests", id, "cancel"]) => {
                Route::Cancel(format!("{owner}/{app}/requests/{id}"))
            }
            (Wire::Replicate, "POST", ["v1", "models", owner, name, "predictions"]) => {
                Route::Create(format!("{owner}/{name}"))
            }
            (Wire::Replicate, "GET", ["v1", "predictions", id]) => Route::Status(id.to_string()),
            (Wire::Replicate, "POST", ["v1", "predictions", id, "cancel"]) => {
                Route::Cancel(id.to_string())
            }
            (Wire::Replicate, "GET", ["v1", "predictions"]) => Route::List,
            (Wire::Replicate, "GET", ["v1", "account"]) => Route::Account,
            (Wire::OpenRouter, "POST", ["api", "v1", "videos"]) => Route::Create(String::new()),
            (Wire::OpenRouter, "GET", ["api", "v1", "videos", id]) => Route::Status(id.to_string()),
            (Wire::OpenRouter, "GET", ["api", "v1", "key"]) => Route::Account,
            _ => Route::Unknown,
        }
    }
}

/// The fields every fal Seedance app takes besides its own inputs.
const FAL_COMMON: [&str; 7] = [
    "prompt",
    "resolution",
    "duration",
    "aspect_ratio",
    "generate_audio",
    "bitrate_mode",
    "end_user_id",
];
/// The fields a create may carry, the model it names and the shape it asks for; or what is
/// wrong with it.
struct Checked {
    model: String,
    input: Value,
    shape: Shape,
}

fn check_create(wire: Wire, routed_model: &str, body: &[u8]) -> Result<Checked, Vec<String>> {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return Err(vec!["body is not JSON".into()]);
    };
    let mut wrong = Vec::new();
    let (model, input) = match wire {
        Wire::Replicate => {
            for key in body.as_object().into_iter().flat_map(|o| o.keys()) {
                if !["input", "webhook", "webhook_events_filter"].contains(&key.as_str()) {
                    wrong.push(format!("unknown top-level field {key}"));
                }
            }
            (routed_model.to_owned(), body["input"].clone())
        }
        Wire::Fal => (routed_model.to_owned(), body.clone()),
        Wire::OpenRouter => (
            body["model"].as_str().unwrap_or("").to_owned(),
            body.clone(),
        ),
    };
    let Some(fields) = input.as_object() else {
        return Err(vec!["input is not an object".into()]);
    };
    let (allowed, resolutions, ratios): (&[&str], &[&str], &[&str]) = match wire {
        Wire::Replicate => (
            &[
                "prompt",
                "image",
                "last_frame_image",
                "reference_images",
                "reference_videos",
                "reference_audios",
                "duration",
                "resolution",
                "aspect_ratio",
                "generate_audio",
                "seed",
            ],
            if model.ends_with("-fast") {
                &["480p", "720p"]
            } else {
                &["480p", "720p", "1080p"]
            },
            &[
                "16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21", "adaptive",
            ],
        ),
        Wire::Fal => (
            // Each app's own inputs, beside `FAL_COMMON`.
            match model.rsplit('/').next() {
                Some("image-to-video") => &["image_url", "end_image_url"],
                Some("reference-to-video") => &["image_urls", "video_urls", "audio_urls"],
                _ => &[],
            },
            if model.contains("/fast/") {
                &["480p", "720p"]
            } else {
                &["480p", "720p", "1080p", "4k"]
            },
            &["auto", "21:9", "16:9", "4:3", "1:1", "3:4", "9:16"],
        ),
        Wire::OpenRouter => (
            &[
                "model",
                "prompt",
                "resolution",
                "aspect_ratio",
                "duration",
                "generate_audio",
                "seed",
                "frame_images",
                "input_references",
                "callback_url",
                "provider",
                "size",
            ],
            &["480p", "720p", "1080p", "4K"],
            &["16:9", "4:3", "1:1", "3:4", "9:16", "21:9"],
        ),
    };
    let known_model = match wire {
        Wire::Fal => {
            let apps = ["text-to-video", "image-to-video", "reference-to-video"];
            ["bytedance/seedance-2.0/", "bytedance/seedance-2.0/fast/"]
                .iter()
                .any(|root| {
                    model
                        .strip_prefix(root)
                        .is_some_and(|app| apps.contains(&app))
                })
        }
        Wire::Replicate | Wire::OpenRouter => {
            ["bytedance/seedance-2.0", "bytedance/seedance-2.0-fast"].contains(&model.as_str())
        }
    };
    if !known_model {
        wrong.push(format!("model {model}"));
    }
    for key in fields.keys() {
        let common = wire == Wire::Fal && FAL_COMMON.contains(&key.as_str());
        if !common && !allowed.contains(&key.as_str()) {
            wrong.push(format!("unknown input field {key} on {model}"));
        }
    }
    if input["prompt"].as_str().is_none_or(str::is_empty) {
        wrong.push("prompt must be a non-empty string".into());
    }
    let resolution = input["resolution"].as_str().unwrap_or("");
    if !resolutions.contains(&resolution) {
        wrong.push(format!("resolution {resolution} on {model}"));
    }
    let ratio = input
        .get("aspect_ratio")
        .map_or(Some("16:9"), Value::as_str);
    if !ratio.is_some_and(|r| ratios.contains(&r)) {
        wrong.push(format!("aspect_ratio {:?}", input["aspect_ratio"]));
    }
    let seconds = match (wire, &input["duration"]) {
        (Wire::Fal, Value::String(s)) if s == "auto" => Some(5),
        (Wire::Fal, Value::String(s)) => s.parse::<i64>().ok().filter(|s| (4..=15).contains(s)),
        (Wire::Replicate, Value::Number(n)) => n
            .as_i64()
            .filter(|d| *d == -1 || (4..=15).contains(d))
            .map(|d| if d == -1 { 5 } else { d }),
        (Wire::OpenRouter, Value::Null) => Some(5),
        (Wire::OpenRouter, Value::Number(n)) => n.as_i64().filter(|d| (4..=15).contains(d)),
        _ => None,
    };
    if seconds.is_none() {
        wrong.push(format!("duration {:?} on {model}", input["duration"]));
    }
    if input.get("generate_audio").is_some_and(|a| !a.is_boolean()) {
        wrong.push("generate_audio must be a bool".into());
    }
    let count = |field: &str| input[field].as_array().map_or(0, Vec::len);
    match wire {
        Wire::Replicate => {
            if input.get("image").is_some() && count("reference_images") > 0 {
                wrong.push("image with reference_images".into());
            }
            if input.get("last_frame_image").is_some() && input.get("image").is_none() {
                wrong.push("last_frame_image without image".into());
            }
            if count("reference_audios") > 0
                && count("reference_images") + count("reference_videos") == 0
            {
                wrong.push("reference_audios without an image or video reference".into());
            }
            if count("reference_images") > 9 || count("reference_videos") > 3 {
                wrong.push("too many references".into());
            }
        }
        Wire::Fal => {
            if model.ends_with("image-to-video") && input.get("image_url").is_none() {
                wrong.push("image-to-video without image_url".into());
            }
            if count("audio_urls") > 0 && count("image_urls") + count("video_urls") == 0 {
                wrong.push("audio_urls without an image or video reference".into());
            }
        }
        Wire::OpenRouter => {
            for frame in input["frame_images"].as_array().into_iter().flatten() {
                if !["first_frame", "last_frame"]
                    .contains(&frame["frame_type"].as_str().unwrap_or(""))
                    || frame["image_url"]["url"].as_str().is_none()
                {
                    wrong.push(format!("frame image {frame}"));
                }
            }
        }
    }
    if !wrong.is_empty() {
        return Err(wrong);
    }
    let resolution: Resolution = serde_json::from_value(json!(resolution.to_lowercase())).unwrap();
    let ratio = match ratio.unwrap_or("16:9") {
        "auto" | "adaptive" => AspectRatio::W16H9,
        fixed => serde_json::from_value(json!(fixed)).unwrap(),
    };
    let (width, height) = Catalog::builtin().output_size(resolution, ratio).unwrap();
    let audio = input["generate_audio"].as_bool().unwrap_or(true);
    Ok(Checked {
        model,
        input,
        shape: (
            width,
            height,
            seconds.unwrap_or(5) as u32,
            audio,
            seedgate_media::Container::Mp4,
        ),
    })
}

async fn create(
    state: &Arc<VendorState>,
    routed_model: &str,
    uri: &Uri,
    body: &[u8],
    fault: Option<Fault>,
) -> Response {
    let wire = state.wire;
    let checked = match check_create(wire, routed_model, body) {
        Ok(checked) => checked,
        Err(wrong) => {
            let message = wrong.join("; ");
            state.violations.lock().unwrap().extend(wrong);
            return error(wire, StatusCode::UNPROCESSABLE_ENTITY, &message);
        }
    };
    if uri.query().is_some() {
        state
            .violations
            .lock()
            .unwrap()
            .push(format!("a create with a query: {uri}"));
    }
    let id = {
        let mut counter = state.counter.lock().unwrap();
        *counter += 1;
        match wire {
            Wire::Fal => format!("019a{:012x}-fal", *counter),
            Wire::Replicate => format!("rp{:010}q", *counter),
            Wire::OpenRouter => format!("vid-{:08}", *counter),
        }
    };
    // fal's request lives under the app's owner and name.
    let key = match wire {
        Wire::Fal => {
            let owner_and_app: Vec<&str> = checked.model.split('/').take(2).collect();
            format!("{}/requests/{id}", owner_and_app.join("/"))
        }
        _ => id.clone(),
    };
    let job = Job {
        id: key.clone(),
        model: checked.model,
        created: Instant::now(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        input: checked.input,
        ending: *state.ending.lock().unwrap(),
        cancelled: false,
        shape: checked.shape,
    };
    let answer = match wire {
        Wire::Fal => {
            let root = state.root.lock().unwrap().clone();
            (
                StatusCode::OK,
                Json(
                    json!({"request_id": id, "status": "IN_QUEUE", "queue_position": 0,
                    "status_url": format!("{root}/{key}/status"),
                    "response_url": format!("{root}/{key}"),
                    "cancel_url": format!("{root}/{key}/cancel")}),
                ),
            )
                .into_response()
        }
        Wire::Replicate => (StatusCode::CREATED, Json(prediction(state, &job))).into_response(),
        Wire::OpenRouter => (
            StatusCode::ACCEPTED,
            Json(
                json!({"id": id, "polling_url": format!("/api/v1/videos/{id}"),
                "status": "pending"}),
            ),
        )
            .into_response(),
    };
    state.jobs.lock().unwrap().insert(key, job);
    let fault = fault.or_else(|| {
        let mut creates = state.creates.lock().unwrap();
        *creates += 1;
        let every = (*state.lose_answer_every.lock().unwrap())?;
        creates
            .is_multiple_of(every)
            .then(|| match (*creates / every) % 3 {
                0 => Fault::HoldReply(Duration::from_secs(3)),
                1 => Fault::ResetAfterCreate,
                _ => Fault::StatusAfterCreate(502),
            })
    });
    match fault {
        Some(Fault::HoldReply(delay)) => {
            *state.answers_lost.lock().unwrap() += 1;
            tokio::time::sleep(delay).await;
            answer
        }
        Some(Fault::ResetAfterCreate) => {
            *state.answers_lost.lock().unwrap() += 1;
            reset()
        }
        Some(Fault::StatusAfterCreate(code)) => {
            *state.answers_lost.lock().unwrap() += 1;
            error(
                wire,
                StatusCode::from_u16(code).unwrap(),
                "injected fault after the job was made",
            )
        }
        _ => answer,
    }
}

/// The URL a finished job's video is served at, rendering it on first need.
async fn video_url(state: &Arc<VendorState>, id: &str, shape: Shape, prompt: String) -> String {
    let file = id.replace('/', "_");
    if !state.files.lock().unwrap().contains_key(&file) {
        let (video, _) = rendered(shape, prompt).await;
        state.files.lock().unwrap().insert(file.clone(), video);
    }
    format!("{}/files/{file}.mp4", state.root.lock().unwrap())
}

fn prediction(state: &VendorState, job: &Job) -> Value {
    let root = state.root.lock().unwrap().clone();
    let status = match phase(job, *state.timing.lock().unwrap()) {
        Phase::Queued => "starting",
        Phase::Running => "processing",
        Phase::Done(Ending::Succeed) => "succeeded",
        Phase::Done(Ending::Moderated) => "failed",
        Phase::Done(Ending::Expire) => "aborted",
        Phase::Done(Ending::Never) => unreachable!("never ends"),
        Phase::Cancelled => "canceled",
    };
    json!({
        "id": job.id,
        "model": job.model,
        "version": "hidden",
        "input": job.input,
        "logs": "",
        "output": null,
        "error": if status == "failed" {
            json!("The input or output was flagged as sensitive. Please try again with different inputs. (E005) (uIJ6l3ruRD)")
        } else {
            Value::Null
        },
        "status": status,
        "source": "api",
        "created_at": job.created_at,
        "urls": {
            "get": format!("{root}/v1/predictions/{}", job.id),
            "cancel": format!("{root}/v1/predictions/{}/cancel", job.id),
        },
    })
}

/// A job as its vendor's status read shows it.
async fn status(state: &Arc<VendorState>, id: &str) -> Response {
    let wire = state.wire;
    let found = {
        let jobs = state.jobs.lock().unwrap();
        jobs.get(id).map(|job| {
            let phase = phase(job, *state.timing.lock().unwrap());
            let prompt = job.input["prompt"].as_str().unwrap_or("").to_owned();
            (phase, prediction(state, job), job.shape, prompt)
        })
    };
    let Some((phase, mut prediction, shape, prompt)) = found else {
        return error(wire, StatusCode::NOT_FOUND, "not found");
    };
    let root = state.root.lock().unwrap().clone();
    match wire {
        Wire::Replicate => {
            if phase == Phase::Done(Ending::Succeed) {
                prediction["output"] = video_url(state, id, shape, prompt).await.into();
                prediction["metrics"] = json!({"predict_time": 42.5, "total_time": 43.0});
            }
            Json(prediction).into_response()
        }
        Wire::Fal => {
            let (code, status) = match phase {
                Phase::Queued | Phase::Cancelled => (StatusCode::ACCEPTED, "IN_QUEUE"),
                Phase::Running => (StatusCode::ACCEPTED, "IN_PROGRESS"),
                Phase::Done(_) => (StatusCode::OK, "COMPLETED"),
            };
            let mut body = json!({"status": status, "request_id": id.rsplit('/').next(),
                "response_url": format!("{root}/{id}"),
                "status_url": format!("{root}/{id}/status"),
                "cancel_url": format!("{root}/{id}/cancel")});
            if status == "IN_QUEUE" {
                body["queue_position"] = 0.into();
            }
            if status == "COMPLETED" {
                body["metrics"] = json!({"inference_time": 38.2});
            }
            (code, Json(body)).into_response()
        }
        Wire::OpenRouter => {
            let mut body = json!({"id": id, "polling_url": format!("/api/v1/videos/{id}"),
                "generation_id": format!("gen-{id}")});
            let status = match phase {
                Phase::Queued => "pending",
                Phase::Running => "in_progress",
                Phase::Done(Ending::Succeed) => {
                    let url = video_url(state, id, shape, prompt).await;
                    body["unsigned_urls"] =
                        json!([format!("{root}/api/v1/videos/{id}/content?index=0")]);
                    body["urls"] = json!([format!("{url}?sig=fake")]);
                    body["usage"] = json!({"cost": 0.5, "is_byok": false});
                    "completed"
                }
                Phase::Done(Ending::Moderated) => {
                    body["error"] = "The request was blocked by content moderation.".into();
                    "failed"
                }
                Phase::Done(_) => "expired",
                Phase::Cancelled => "cancelled",
            };
            body["status"] = status.into();
            Json(body).into_response()
        }
    }
}

/// fal's result read: the app's own answer once the request is completed.
async fn result(state: &Arc<VendorState>, id: &str) -> Response {
    let found = {
        let jobs = state.jobs.lock().unwrap();
        jobs.get(id).map(|job| {
            let prompt = job.input["prompt"].as_str().unwrap_or("").to_owned();
            (phase(job, *state.timing.lock().unwrap()), job.shape, prompt)
        })
    };
    match found {
        None => error(Wire::Fal, StatusCode::NOT_FOUND, "Request not found"),
        Some((Phase::Done(Ending::Succeed), shape, prompt)) => {
            let url = video_url(state, id, shape, prompt).await;
            Json(json!({"video": {"url": url, "content_type": "video/mp4"}, "seed": 1234}))
                .into_response()
        }
        Some((Phase::Done(Ending::Moderated), ..)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"detail": [{"loc": ["body"], "msg": "The generated video was flagged by the content checker.",
                "type": "content_policy_violation"}]})),
        )
            .into_response(),
        Some((Phase::Done(_), ..)) => (
            StatusCode::GATEWAY_TIMEOUT,
            Json(json!({"detail": "Request timed out", "error_type": "request_timeout"})),
        )
            .into_response(),
        Some(_) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"detail": "Request is still in progress"})),
        )
            .into_response(),
    }
}

fn cancel(state: &Arc<VendorState>, id: &str) -> Response {
    let wire = state.wire;
    let timing = *state.timing.lock().unwrap();
    let mut jobs = state.jobs.lock().unwrap();
    let Some(job) = jobs.get_mut(id) else {
        return error(wire, StatusCode::NOT_FOUND, "not found");
    };
    let queued = phase(job, timing) == Phase::Queued;
    if queued {
        job.cancelled = true;
    }
    match wire {
        Wire::Fal if queued => (
            StatusCode::ACCEPTED,
            Json(json!({"status": "CANCELLATION_REQUESTED"})),
        )
            .into_response(),
        Wire::Fal => (
            StatusCode::BAD_REQUEST,
            Json(json!({"status": "ALREADY_COMPLETED"})),
        )
            .into_response(),
        // Replicate answers with the prediction as it now stands.
        _ => Json(prediction(state, job)).into_response(),
    }
}

/// Replicate's list: newest first, `created_after` inclusive, pages of `PAGE` by cursor.
fn list(state: &Arc<VendorState>, uri: &Uri) -> Response {
    const PAGE: usize = 3;
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let after = query.get("created_after").cloned().unwrap_or_default();
    let since = chrono::DateTime::parse_from_rfc3339(&after).ok();
    if !after.is_empty() && since.is_none() {
        state
            .violations
            .lock()
            .unwrap()
            .push(format!("created_after {after} is not ISO 8601"));
    }
    let jobs = state.jobs.lock().unwrap();
    let mut listed: Vec<&Job> = jobs
        .values()
        .filter(|job| {
            since.is_none_or(|since| {
                chrono::DateTime::parse_from_rfc3339(&job.created_at).unwrap() >= since
            })
        })
        .collect();
    listed.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    let skip: usize = query
        .get("cursor")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let page: Vec<Value> = listed
        .iter()
        .skip(skip)
        .take(PAGE)
        .map(|job| prediction(state, job))
        .collect();
    let root = state.root.lock().unwrap().clone();
    let next = (skip + PAGE < listed.len()).then(|| {
        format!(
            "{root}/v1/predictions?created_after={}&cursor={}",
            form_urlencoded::byte_serialize(after.as_bytes()).collect::<String>(),
            skip + PAGE
        )
    });
    Json(json!({"next": next, "previous": null, "results": page})).into_response()
}
