//! A fake Ark / ModelArk upstream that speaks the wire format of docs/ark.md: `cgt-…` task ids,
//! queued → running → succeeded over a configurable time, real MP4 results (the sandbox
//! renderer), usage by the token formula, list and delete semantics, and scriptable faults. It
//! checks every request against that format and records anything unexpected as a violation.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use seedgate_contract::{pricing, AspectRatio, Catalog, Resolution};
use serde_json::{json, Value};

/// The variable a channel on the fake names as its `api_key_env`. The servers a test starts in
/// this process read it from the process's environment, which `.cargo/config.toml` sets
/// before the tests start (a test setting it while others run would race their reads); the
/// servers started as processes are given it.
pub const FAKE_KEY_ENV: &str = "SEEDGATE_TEST_ARK_KEY";
pub const FAKE_KEY: &str = "ark-test-key-0123456789";

/// What happens to a task once it has waited out its queue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ending {
    Succeed,
    FailReview,
    Never,
}

/// A scripted misbehaviour for the next matching request. The first four strike before a
/// create does anything; the `…AfterCreate` ones and `HoldReply` after it made its task, so
/// the client cannot know a task exists.
#[derive(Clone, Debug)]
pub enum Fault {
    Status(u16, Option<u64>),
    Slow(Duration),
    Reset,
    Garbage,
    /// Makes the task, then keeps the answer back this long (past the client's timeout).
    HoldReply(Duration),
    ResetAfterCreate,
    StatusAfterCreate(u16),
}

/// How a succeeded task's result files are served.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ResultFiles {
    Served,
    /// 404, as after the upstream's 24 h or a storage fault.
    Missing,
    /// 200 with a body that is not a video.
    NotVideo,
    /// 200 in chunks with no `Content-Length`, as a CDN streaming a file may send it.
    Streamed,
}

#[derive(Clone, Copy, PartialEq)]
pub enum Endpoint {
    Create,
    /// Status reads: a task or a list.
    Get,
}

struct FakeTask {
    id: String,
    model: String,
    created: Instant,
    created_unix: i64,
    body: Value,
    ending: Ending,
    cancelled: bool,
    expired: bool,
    /// When a task that would never end succeeds after all (`complete_over_time`).
    finish_at: Option<Instant>,
    callback_url: Option<String>,
}

pub struct Behaviour {
    pub queued: Duration,
    pub running: Duration,
    pub ending: Ending,
    /// Every create answers this status (a channel that is down).
    pub always_fail_create: Option<u16>,
    pub result_files: ResultFiles,
    /// Every nth create loses its answer after making its task (held, reset or 502 in turn).
    pub lose_answer_every: Option<u32>,
}

/// (width, height, seconds, audio, container).
pub type Shape = (u32, u32, u32, bool, seedgate_media::Container);
/// (MP4, last frame PNG), shared by every task of one shape.
pub type Rendered = (bytes::Bytes, bytes::Bytes);

/// Renders by shape, shared by every fake in the process: many tasks, and many tests, share
/// one file, rendered once however many ask at once.
static RENDERED: LazyLock<Mutex<HashMap<Shape, Arc<tokio::sync::OnceCell<Rendered>>>>> =
    LazyLock::new(Mutex::default);

#[derive(Default)]
struct Files {
    video: HashMap<String, bytes::Bytes>,
    frame: HashMap<String, bytes::Bytes>,
}

pub struct FakeState {
    tasks: Mutex<HashMap<String, FakeTask>>,
    /// Task ids in the order they were made (appended under the `tasks` lock).
    made_order: Mutex<Vec<String>>,
    faults: Mutex<VecDeque<(Endpoint, Fault)>>,
    violations: Mutex<Vec<String>>,
    creates: Mutex<Vec<(Instant, Value)>>,
    answers_lost: Mutex<usize>,
    files: Mutex<Files>,
    pub behaviour: Mutex<Behaviour>,
    base: Mutex<String>,
    counter: Mutex<u32>,
    /// When each status read (a task or a list) arrived.
    reads: Mutex<Vec<Instant>>,
    /// Tasks finished by `complete_over_time`: (id, when, whether its callback was sent).
    finished: Mutex<Vec<(String, std::time::SystemTime, bool)>>,
    /// The models it serves, by upstream id.
    models: Mutex<HashMap<String, ModelRules>>,
}

pub struct FakeArk {
    pub base_url: String,
    pub state: Arc<FakeState>,
}

impl FakeArk {
    pub async fn start() -> Self {
        assert_eq!(
            std::env::var(FAKE_KEY_ENV).as_deref(),
            Ok(FAKE_KEY),
            "{FAKE_KEY_ENV} comes from .cargo/config.toml: run the tests through cargo"
        );
        let state = Arc::new(FakeState {
            models: Mutex::new(known_models()),
            tasks: Mutex::default(),
            made_order: Mutex::default(),
            faults: Mutex::default(),
            violations: Mutex::default(),
            creates: Mutex::default(),
            answers_lost: Mutex::default(),
            files: Mutex::default(),
            behaviour: Mutex::new(Behaviour {
                queued: Duration::from_millis(200),
                running: Duration::from_millis(300),
                ending: Ending::Succeed,
                always_fail_create: None,
                result_files: ResultFiles::Served,
                lose_answer_every: None,
            }),
            base: Mutex::default(),
            counter: Mutex::new(0),
            reads: Mutex::default(),
            finished: Mutex::default(),
        });
        let router = Router::new()
            .route("/api/v3/contents/generations/tasks", get(list).post(create))
            .route(
                "/api/v3/contents/generations/tasks/{id}",
                get(fetch).delete(delete),
            )
            .route("/files/{name}", get(file))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let root = format!("http://{}", listener.local_addr().unwrap());
        *state.base.lock().unwrap() = root.clone();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            base_url: format!("{root}/api/v3"),
            state,
        }
    }

    pub fn fault(&self, endpoint: Endpoint, fault: Fault) {
        self.state
            .faults
            .lock()
            .unwrap()
            .push_back((endpoint, fault));
    }

    /// Makes every nth create lose its answer once its task exists: held past a 1 s client
    /// timeout, reset, or answered 502, in turn.
    pub fn lose_answer_every(&self, n: u32) {
        self.state.behaviour.lock().unwrap().lose_answer_every = Some(n);
    }

    /// Creates whose task was made but whose answer was lost.
    pub fn answers_lost(&self) -> usize {
        *self.state.answers_lost.lock().unwrap()
    }

    pub fn set_ending(&self, ending: Ending) {
        self.state.behaviour.lock().unwrap().ending = ending;
    }

    pub fn set_timing(&self, queued: Duration, running: Duration) {
        let mut b = self.state.behaviour.lock().unwrap();
        b.queued = queued;
        b.running = running;
    }

    pub fn set_result_files(&self, files: ResultFiles) {
        self.state.behaviour.lock().unwrap().result_files = files;
    }

    /// Every task not finished yet reaches its `execution_expires_after` now.
    pub fn expire_unfinished(&self) {
        let mut tasks = self.state.tasks.lock().unwrap();
        let behaviour = self.state.behaviour.lock().unwrap();
        for task in tasks.values_mut() {
            if matches!(status(task, &behaviour), "queued" | "running") {
                task.expired = true;
            }
        }
    }

    /// The create body behind an upstream task.
    pub fn body_of(&self, id: &str) -> Option<Value> {
        self.state
            .tasks
            .lock()
            .unwrap()
            .get(id)
            .map(|t| t.body.clone())
    }

    pub fn always_fail_create(&self, status: u16) {
        self.state.behaviour.lock().unwrap().always_fail_create = Some(status);
    }

    /// The create bodies received, in order, with their arrival time.
    pub fn creates(&self) -> Vec<(Instant, Value)> {
        self.state.creates.lock().unwrap().clone()
    }

    pub fn tasks_created(&self) -> usize {
        self.state.tasks.lock().unwrap().len()
    }

    pub fn status_of(&self, id: &str) -> Option<String> {
        let tasks = self.state.tasks.lock().unwrap();
        let behaviour = self.state.behaviour.lock().unwrap();
        tasks.get(id).map(|t| status(t, &behaviour).to_owned())
    }

    pub fn task_ids(&self) -> Vec<String> {
        self.state.tasks.lock().unwrap().keys().cloned().collect()
    }

    /// Upstream result URLs die after 24 h; this makes them die now.
    pub fn delete_files(&self) {
        let mut files = self.state.files.lock().unwrap();
        files.video.clear();
        files.frame.clear();
    }

    /// From now on, tasks that would never end succeed `per_second` at a time, oldest first.
    /// Each one's callback (when it asked for one) is sent as it finishes, except every
    /// `lose_callback_every`th, which is lost as a callback can be.
    pub async fn complete_over_time(&self, per_second: u32, lose_callback_every: usize) {
        // The real upstream has a task's video when it reports success, so each shape is
        // rendered before the first success rather than holding up the first callbacks.
        let mut order: Vec<(i64, String, Option<String>)> = Vec::new();
        let mut shapes: HashMap<String, (String, Value)> = HashMap::new();
        {
            let tasks = self.state.tasks.lock().unwrap();
            for t in tasks.values() {
                if t.ending != Ending::Never || t.finish_at.is_some() {
                    continue;
                }
                order.push((t.created_unix, t.id.clone(), t.callback_url.clone()));
                let body = &t.body;
                let shape = [
                    &body["resolution"],
                    &body["ratio"],
                    &body["duration"],
                    &body["generate_audio"],
                ];
                shapes
                    .entry(json!(shape).to_string())
                    .or_insert_with(|| (t.id.clone(), body.clone()));
            }
        }
        order.sort();
        for (id, body) in shapes.values() {
            ensure_rendered(&self.state, id, body).await;
        }
        let (start, wall_start) = (Instant::now(), std::time::SystemTime::now());
        let spacing = Duration::from_secs(1) / per_second.max(1);
        {
            let mut tasks = self.state.tasks.lock().unwrap();
            for (n, (_, id, _)) in order.iter().enumerate() {
                if let Some(task) = tasks.get_mut(id) {
                    task.finish_at = Some(start + spacing * n as u32);
                }
            }
        }
        let state = self.state.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for (n, (_, id, callback)) in order.into_iter().enumerate() {
                let offset = spacing * n as u32;
                tokio::time::sleep_until((start + offset).into()).await;
                let sent = callback.is_some() && (n + 1) % lose_callback_every.max(1) != 0;
                state
                    .finished
                    .lock()
                    .unwrap()
                    .push((id.clone(), wall_start + offset, sent));
                if let (true, Some(url)) = (sent, callback) {
                    let (state, client) = (state.clone(), client.clone());
                    tokio::spawn(async move {
                        let body = task_json(&state, &id).await;
                        let _ = client.post(url).json(&body).send().await;
                    });
                }
            }
        });
    }

    /// Tasks `complete_over_time` has finished so far: id, when, whether a callback went out.
    pub fn finished(&self) -> Vec<(String, std::time::SystemTime, bool)> {
        self.state.finished.lock().unwrap().clone()
    }

    /// The most status reads (task fetches and lists) that arrived within any one second.
    pub fn most_reads_in_a_second(&self) -> usize {
        let reads = self.state.reads.lock().unwrap();
        let mut most = 0;
        let mut first = 0;
        for (last, at) in reads.iter().enumerate() {
            while at.duration_since(reads[first]) >= Duration::from_secs(1) {
                first += 1;
            }
            most = most.max(last + 1 - first);
        }
        most
    }

    /// Status reads so far.
    pub fn reads(&self) -> usize {
        self.state.reads.lock().unwrap().len()
    }

    /// Serves one more model, as an upstream account given a new model would.
    pub fn serve_model(&self, id: &str, rules: ModelRules) {
        self.state
            .models
            .lock()
            .unwrap()
            .insert(id.to_owned(), rules);
    }

    /// The broken requests so far, forgotten: for a test that breaks the contract on purpose.
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut *self.state.violations.lock().unwrap())
    }

    /// Fails the test on any request that broke the Ark wire format (docs/ark.md).
    pub fn assert_no_violations(&self) {
        let violations = self.state.violations.lock().unwrap();
        assert!(
            violations.is_empty(),
            "requests broke the Ark contract: {violations:?}"
        );
    }
}

/// Every test that used the fake fails if any request broke the contract.
impl Drop for FakeArk {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_no_violations();
        }
    }
}

fn status(task: &FakeTask, behaviour: &Behaviour) -> &'static str {
    if task.cancelled {
        return "cancelled";
    }
    if task.expired {
        return "expired";
    }
    let age = task.created.elapsed();
    if task.finish_at.is_some_and(|at| Instant::now() >= at) {
        "succeeded"
    } else if age < behaviour.queued {
        "queued"
    } else if age < behaviour.queued + behaviour.running || task.ending == Ending::Never {
        "running"
    } else if task.ending == Ending::FailReview {
        "failed"
    } else {
        "succeeded"
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn next_fault(state: &FakeState, endpoint: Endpoint) -> Option<Fault> {
    let mut faults = state.faults.lock().unwrap();
    let index = faults.iter().position(|(e, _)| *e == endpoint)?;
    faults.remove(index).map(|(_, f)| f)
}

/// Applies a fault that strikes before the request is handled, if it is one.
async fn injected(fault: Option<&Fault>) -> Option<Response> {
    match fault?.clone() {
        Fault::Status(code, retry_after) => {
            let status = StatusCode::from_u16(code).unwrap();
            let mut response = error(status, "ServerOverloaded", "injected fault");
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", seconds.to_string().parse().unwrap());
            }
            Some(response)
        }
        Fault::Slow(delay) => {
            tokio::time::sleep(delay).await;
            None
        }
        // Unwinding out of the handler makes the server drop the connection without an
        // answer: the client sees a reset. `resume_unwind` skips the panic hook's noise.
        Fault::Reset => {
            std::panic::resume_unwind(Box::new("connection reset by the fake upstream"))
        }
        Fault::Garbage => Some((StatusCode::OK, "{\"id\": \"cgt-").into_response()),
        Fault::HoldReply(_) | Fault::ResetAfterCreate | Fault::StatusAfterCreate(_) => None,
    }
}

/// Applies a fault that strikes once the create has made its task, if it is one.
async fn after_create(state: &FakeState, fault: Option<Fault>, answer: Response) -> Response {
    if matches!(
        fault,
        Some(Fault::HoldReply(_) | Fault::ResetAfterCreate | Fault::StatusAfterCreate(_))
    ) {
        *state.answers_lost.lock().unwrap() += 1;
    }
    match fault {
        Some(Fault::HoldReply(delay)) => {
            tokio::time::sleep(delay).await;
            answer
        }
        Some(Fault::ResetAfterCreate) => {
            std::panic::resume_unwind(Box::new("connection reset by the fake upstream"))
        }
        Some(Fault::StatusAfterCreate(code)) => error(
            StatusCode::from_u16(code).unwrap(),
            "InternalServiceError",
            "injected fault after the task was made",
        ),
        _ => answer,
    }
}

fn check(violations: &mut Vec<String>, ok: bool, what: impl Into<String>) {
    if !ok {
        violations.push(what.into());
    }
}

/// What the upstream holds one model to (SPEC.md §§7–8).
#[derive(Clone, Debug)]
pub struct ModelRules {
    pub durations: std::ops::RangeInclusive<i64>,
    pub resolutions: Vec<&'static str>,
    /// Most reference images, videos and audios.
    pub references: [usize; 3],
    /// Whether audio may be the only reference.
    pub audio_alone: bool,
    /// Whether a first or last frame needs `ratio: adaptive` (else `TaskTypeConstraint`).
    pub frames_adaptive_only: bool,
    /// The length it picks for `duration: -1`.
    pub chosen_seconds: u32,
    /// Whether it makes QuickTime files (`output_format: mov`) besides MP4.
    pub mov: bool,
    /// Whether it makes drafts (`draft: true`, at 480p).
    pub drafts: bool,
}

impl ModelRules {
    fn seedance_2_0() -> Self {
        ModelRules {
            durations: 4..=15,
            resolutions: vec!["480p", "720p", "1080p", "4k"],
            references: [9, 3, 3],
            audio_alone: false,
            frames_adaptive_only: false,
            chosen_seconds: 5,
            mov: false,
            drafts: false,
        }
    }

    /// Seedance 2.5 (SPEC.md §8): up to 30 s, 30 images, 10 videos and 10 audios, audio as
    /// the only reference, no 4k, frames only in the input's shape, and for `-1` a longer
    /// length than asked for by default (a reseller saw 10 s).
    fn seedance_2_5() -> Self {
        ModelRules {
            durations: 4..=30,
            resolutions: vec!["480p", "720p", "1080p"],
            references: [30, 10, 10],
            audio_alone: true,
            frames_adaptive_only: true,
            chosen_seconds: 10,
            mov: true,
            drafts: true,
        }
    }
}

fn known_models() -> HashMap<String, ModelRules> {
    let two_0 = [
        "doubao-seedance-2-0-260128",
        "doubao-seedance-2-0-fast-260128",
        "dreamina-seedance-2-0-260128",
        "dreamina-seedance-2-0-fast-260128",
        "doubao-seedance-2-0-mini-260615",
    ]
    .map(|id| (id.to_owned(), ModelRules::seedance_2_0()));
    let two_5 = ["doubao-seedance-2-5-260628", "dreamina-seedance-2-5-260628"]
        .map(|id| (id.to_owned(), ModelRules::seedance_2_5()));
    two_0.into_iter().chain(two_5).collect()
}

/// What the real upstream answers a frame at a fixed ratio on a model that makes frames only
/// in the input's shape: a 400 naming `TaskTypeConstraint`. Seedgate refuses such a request
/// at create, so one reaching here is also a violation.
fn task_type_constraint(rules: &ModelRules, body: &Value) -> Option<String> {
    let framed = body["content"].as_array().is_some_and(|items| {
        items
            .iter()
            .any(|i| ["first_frame", "last_frame"].contains(&i["role"].as_str().unwrap_or("")))
    });
    (rules.frames_adaptive_only && framed && body["ratio"] != "adaptive").then(|| {
        format!(
            "TaskTypeConstraint: a first or last frame on {} needs ratio adaptive, got {}",
            body["model"], body["ratio"]
        )
    })
}

/// Checks a create body against docs/ark.md and its model's rules; returns what is wrong.
fn validate_create(rules: Option<&ModelRules>, body: &Value) -> Vec<String> {
    let mut v = Vec::new();
    let Some(object) = body.as_object() else {
        return vec!["body is not an object".into()];
    };
    const FIELDS: [&str; 19] = [
        "model",
        "content",
        "resolution",
        "ratio",
        "duration",
        "generate_audio",
        "watermark",
        "seed",
        "return_last_frame",
        "callback_url",
        "camera_fixed",
        "service_tier",
        "execution_expires_after",
        "priority",
        "frames",
        "draft",
        "tools",
        "output_format",
        "safety_identifier",
    ];
    for key in object.keys() {
        check(
            &mut v,
            FIELDS.contains(&key.as_str()),
            format!("unknown field {key}"),
        );
    }
    let model = body["model"].as_str().unwrap_or("");
    let Some(rules) = rules else {
        v.push(format!("model {}", body["model"]));
        return v;
    };
    check(
        &mut v,
        rules
            .resolutions
            .contains(&body["resolution"].as_str().unwrap_or("")),
        format!("resolution {} on {model}", body["resolution"]),
    );
    check(
        &mut v,
        ["16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive"]
            .contains(&body["ratio"].as_str().unwrap_or("")),
        "ratio",
    );
    check(
        &mut v,
        body["duration"]
            .as_i64()
            .is_some_and(|d| d == -1 || rules.durations.contains(&d)),
        format!("duration {} on {model}", body["duration"]),
    );
    check(
        &mut v,
        match body.get("output_format").and_then(Value::as_str) {
            None | Some("mp4") => body.get("output_format").is_none_or(Value::is_string),
            Some("mov") => rules.mov,
            Some(_) => false,
        },
        format!("output_format {} on {model}", body["output_format"]),
    );
    check(
        &mut v,
        match body.get("draft") {
            None | Some(Value::Bool(false)) => true,
            Some(Value::Bool(true)) => rules.drafts && body["resolution"] == "480p",
            Some(_) => false,
        },
        format!(
            "draft {} at {} on {model}",
            body["draft"], body["resolution"]
        ),
    );
    for flag in ["generate_audio", "watermark", "return_last_frame"] {
        check(
            &mut v,
            body.get(flag).is_none_or(Value::is_boolean),
            format!("{flag} must be a bool"),
        );
    }
    check(
        &mut v,
        body.get("seed").is_none_or(|s| {
            s.as_i64()
                .is_some_and(|s| (-1..=4_294_967_295).contains(&s))
        }),
        "seed",
    );
    check(
        &mut v,
        body.get("execution_expires_after")
            .is_none_or(|s| s.as_i64().is_some_and(|s| (3_600..=259_200).contains(&s))),
        format!(
            "execution_expires_after {}",
            body["execution_expires_after"]
        ),
    );
    let Some(content) = body["content"].as_array() else {
        v.push("content must be an array".into());
        return v;
    };
    check(
        &mut v,
        content.first().is_some_and(|c| c["type"] == "text"),
        "content starts with the text item",
    );
    let count = |role: &str| content.iter().filter(|i| i["role"] == role).count();
    let references = [
        count("reference_image"),
        count("reference_video"),
        count("reference_audio"),
    ];
    check(
        &mut v,
        references
            .iter()
            .zip(rules.references)
            .all(|(n, most)| *n <= most),
        format!(
            "references {references:?} over {:?} on {model}",
            rules.references
        ),
    );
    check(
        &mut v,
        references[2] == 0 || references[0] + references[1] > 0 || rules.audio_alone,
        format!("audio as the only reference on {model}"),
    );
    for item in content {
        let kind = item["type"].as_str().unwrap_or("");
        let role = item["role"].as_str().unwrap_or("");
        match kind {
            "text" => check(
                &mut v,
                item["text"].as_str().is_some_and(|t| !t.is_empty()),
                "text item",
            ),
            "image_url" => check(
                &mut v,
                ["first_frame", "last_frame", "reference_image"].contains(&role)
                    && item["image_url"]["url"]
                        .as_str()
                        .is_some_and(|u| !u.is_empty()),
                format!("image item {item}"),
            ),
            "video_url" => check(
                &mut v,
                role == "reference_video"
                    && item["video_url"]["url"]
                        .as_str()
                        .is_some_and(|u| !u.is_empty()),
                format!("video item {item}"),
            ),
            "audio_url" => check(
                &mut v,
                role == "reference_audio"
                    && item["audio_url"]["url"]
                        .as_str()
                        .is_some_and(|u| !u.is_empty()),
                format!("audio item {item}"),
            ),
            other => v.push(format!("content type {other}")),
        }
    }
    v
}

/// The fields a final sets itself; the rest it takes from its draft.
const FINAL_FIELDS: [&str; 11] = [
    "model",
    "content",
    "resolution",
    "watermark",
    "return_last_frame",
    "callback_url",
    "service_tier",
    "execution_expires_after",
    "priority",
    "safety_identifier",
    "output_format",
];

/// A final (`content: [{"type": "draft_task", "draft_task": {"id": …}}]`, SPEC.md §8): its
/// own fields checked and its draft looked up. The task it makes is the draft's request at
/// the final's resolution and delivery settings, so it echoes the draft's seed, length, ratio
/// and audio; or what is wrong.
fn final_of_draft(
    state: &FakeState,
    rules: Option<&ModelRules>,
    body: &Value,
) -> Result<Value, Vec<String>> {
    let mut v = Vec::new();
    let model = body["model"].as_str().unwrap_or("");
    for key in body.as_object().into_iter().flat_map(|o| o.keys()) {
        check(
            &mut v,
            FINAL_FIELDS.contains(&key.as_str()),
            format!("{key} sent with a final, which takes it from its draft"),
        );
    }
    let content = body["content"].as_array().map_or(&[][..], Vec::as_slice);
    check(
        &mut v,
        content.len() == 1,
        "a final's content is its draft_task item alone",
    );
    let Some(rules) = rules else {
        return Err(vec![format!("model {}", body["model"])]);
    };
    check(
        &mut v,
        rules.drafts,
        format!("a final on {model}, which has no drafts"),
    );
    check(
        &mut v,
        rules
            .resolutions
            .contains(&body["resolution"].as_str().unwrap_or("")),
        format!("final resolution {} on {model}", body["resolution"]),
    );
    let tasks = state.tasks.lock().unwrap();
    let behaviour = state.behaviour.lock().unwrap();
    let draft_id = content
        .first()
        .and_then(|item| item["draft_task"]["id"].as_str());
    let Some(draft) = draft_id.and_then(|id| tasks.get(id)) else {
        v.push(format!("a final of unknown draft {draft_id:?}"));
        return Err(v);
    };
    check(
        &mut v,
        draft.body["draft"] == true,
        "a final of a task that is not a draft",
    );
    check(
        &mut v,
        draft.model == model,
        format!("a final on {model} of a {} draft", draft.model),
    );
    check(
        &mut v,
        status(draft, &behaviour) == "succeeded",
        "a final of a draft that has not succeeded",
    );
    if !v.is_empty() {
        return Err(v);
    }
    let mut made = draft.body.clone();
    let fields = made.as_object_mut().unwrap();
    fields.remove("draft");
    for key in &FINAL_FIELDS[2..] {
        match body.get(*key) {
            Some(value) => fields.insert((*key).to_owned(), value.clone()),
            None => fields.remove(*key),
        };
    }
    Ok(made)
}

fn authorised(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|h| h.to_str().ok())
        == Some(&format!("Bearer {FAKE_KEY}"))
}

async fn create(State(state): State<Arc<FakeState>>, headers: HeaderMap, body: String) -> Response {
    if !authorised(&headers) {
        state
            .violations
            .lock()
            .unwrap()
            .push("create without the channel key".into());
        return error(StatusCode::UNAUTHORIZED, "AuthenticationError", "bad key");
    }
    let fault = next_fault(&state, Endpoint::Create);
    if let Some(response) = injected(fault.as_ref()).await {
        return response;
    }
    if let Some(code) = state.behaviour.lock().unwrap().always_fail_create {
        return error(
            StatusCode::from_u16(code).unwrap(),
            "InternalServiceError",
            "channel is down",
        );
    }
    let Ok(body) = serde_json::from_str::<Value>(&body) else {
        state
            .violations
            .lock()
            .unwrap()
            .push("create body is not JSON".into());
        return error(StatusCode::BAD_REQUEST, "InvalidParameter", "not JSON");
    };
    let rules = state
        .models
        .lock()
        .unwrap()
        .get(body["model"].as_str().unwrap_or(""))
        .cloned();
    let is_final = body["content"]
        .as_array()
        .is_some_and(|items| items.iter().any(|i| i["type"] == "draft_task"));
    let made = if is_final {
        final_of_draft(&state, rules.as_ref(), &body)
    } else {
        let problems = validate_create(rules.as_ref(), &body);
        match rules.and_then(|rules| task_type_constraint(&rules, &body)) {
            Some(message) if problems.is_empty() => {
                state.violations.lock().unwrap().push(message.clone());
                return error(StatusCode::BAD_REQUEST, "InvalidParameter", &message);
            }
            _ if problems.is_empty() => Ok(body.clone()),
            _ => Err(problems),
        }
    };
    let made = match made {
        Ok(made) => made,
        Err(problems) => {
            state.violations.lock().unwrap().extend(problems);
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidParameter",
                "invalid request",
            );
        }
    };
    state
        .creates
        .lock()
        .unwrap()
        .push((Instant::now(), body.clone()));
    let (id, number) = {
        let mut counter = state.counter.lock().unwrap();
        *counter += 1;
        (format!("cgt-20260617212928-{:05}", *counter), *counter)
    };
    let lose_every = state.behaviour.lock().unwrap().lose_answer_every;
    let fault = fault.or_else(|| {
        let n = lose_every.filter(|n| number % n == 0)?;
        Some(match number / n % 3 {
            0 => Fault::HoldReply(Duration::from_millis(1500)),
            1 => Fault::ResetAfterCreate,
            _ => Fault::StatusAfterCreate(502),
        })
    });
    let ending = state.behaviour.lock().unwrap().ending;
    let created_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    {
        let mut tasks = state.tasks.lock().unwrap();
        state.made_order.lock().unwrap().push(id.clone());
        tasks.insert(
            id.clone(),
            FakeTask {
                id: id.clone(),
                model: body["model"].as_str().unwrap_or("").to_owned(),
                created: Instant::now(),
                created_unix,
                ending,
                cancelled: false,
                expired: false,
                finish_at: None,
                callback_url: body["callback_url"].as_str().map(str::to_owned),
                body: made,
            },
        );
    }
    after_create(&state, fault, Json(json!({"id": id})).into_response()).await
}

/// Renders a succeeded task's video once, as the real upstream would have it ready.
/// The MP4 and last frame of one shape, rendered once per process however many fakes and
/// tasks ask for it at once.
pub async fn rendered(shape: Shape, prompt: String) -> Rendered {
    let (width, height, seconds, audio, container) = shape;
    let render = RENDERED.lock().unwrap().entry(shape).or_default().clone();
    // Rendered by a task of its own, so a request that gives up waiting (a client's timeout)
    // still leaves the file ready for the next, as the real upstream's would be.
    tokio::spawn(async move {
        render
            .get_or_init(|| async move {
                let rendered = tokio::task::spawn_blocking(move || {
                    seedgate_media::render(&seedgate_media::RenderRequest {
                        scene: seedgate_media::Scene::Pattern { prompt: &prompt },
                        audios: Vec::new(),
                        container,
                        width,
                        height,
                        fps: 24,
                        frames: 24 * seconds,
                        seed: 1,
                        audio,
                        caption: Vec::new(),
                    })
                    .unwrap()
                })
                .await
                .unwrap();
                (
                    bytes::Bytes::from(rendered.mp4),
                    bytes::Bytes::from(rendered.last_frame_png),
                )
            })
            .await
            .clone()
    })
    .await
    .unwrap()
}

async fn ensure_rendered(state: &Arc<FakeState>, id: &str, body: &Value) -> (u32, u32, u32) {
    let resolution: Resolution = serde_json::from_value(body["resolution"].clone()).unwrap();
    let ratio = match serde_json::from_value::<AspectRatio>(body["ratio"].clone()).unwrap() {
        AspectRatio::Adaptive => AspectRatio::W16H9,
        fixed => fixed,
    };
    let (width, height) = Catalog::builtin().output_size(resolution, ratio).unwrap();
    let seconds = match body["duration"].as_i64().unwrap() {
        -1 => state
            .models
            .lock()
            .unwrap()
            .get(body["model"].as_str().unwrap_or(""))
            .map_or(5, |rules| rules.chosen_seconds),
        s => s as u32,
    };
    if state.files.lock().unwrap().video.contains_key(id) {
        return (width, height, seconds);
    }
    let audio = body["generate_audio"].as_bool().unwrap_or(true);
    let container = if body["output_format"] == "mov" {
        seedgate_media::Container::QuickTime
    } else {
        seedgate_media::Container::Mp4
    };
    let prompt = body["content"][0]["text"].as_str().unwrap_or("").to_owned();
    let (video, frame) = rendered((width, height, seconds, audio, container), prompt).await;
    let mut files = state.files.lock().unwrap();
    files.video.insert(id.to_owned(), video);
    files.frame.insert(id.to_owned(), frame);
    (width, height, seconds)
}

async fn task_json(state: &Arc<FakeState>, id: &str) -> Option<Value> {
    let (status, body, model, created_unix) = {
        let tasks = state.tasks.lock().unwrap();
        let task = tasks.get(id)?;
        let behaviour = state.behaviour.lock().unwrap();
        (
            status(task, &behaviour),
            task.body.clone(),
            task.model.clone(),
            task.created_unix,
        )
    };
    let mut json = json!({
        "id": id, "model": model, "status": status, "created_at": created_unix, "updated_at": created_unix,
        "resolution": body["resolution"], "ratio": body["ratio"], "duration": body["duration"],
        "framespersecond": 24, "generate_audio": body["generate_audio"], "service_tier": "default",
        "execution_expires_after": body.get("execution_expires_after").cloned().unwrap_or(json!(172800)),
        "seed": body.get("seed").cloned().unwrap_or(json!(42)),
    });
    match status {
        "succeeded" => {
            let (w, h, s) = ensure_rendered(state, id, &body).await;
            let root = state.base.lock().unwrap().clone();
            let tokens = pricing::output_tokens(w, h, s);
            json["content"] = json!({"video_url": format!("{root}/files/{id}.mp4"), "last_frame_url": format!("{root}/files/{id}.png")});
            json["usage"] = json!({"completion_tokens": tokens, "total_tokens": tokens});
        }
        "failed" => {
            json["error"] = json!({"code": "OutputVideoSensitiveContentDetected", "message": "The output video may contain sensitive content."});
        }
        _ => {}
    }
    Some(json)
}

async fn fetch(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorised(&headers) {
        state
            .violations
            .lock()
            .unwrap()
            .push("get without the channel key".into());
        return error(StatusCode::UNAUTHORIZED, "AuthenticationError", "bad key");
    }
    state.reads.lock().unwrap().push(Instant::now());
    if let Some(response) = injected(next_fault(&state, Endpoint::Get).as_ref()).await {
        return response;
    }
    match task_json(&state, &id).await {
        Some(json) => Json(json).into_response(),
        None => error(StatusCode::NOT_FOUND, "ResourceNotFound", "no such task"),
    }
}

async fn list(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if !authorised(&headers) {
        return error(StatusCode::UNAUTHORIZED, "AuthenticationError", "bad key");
    }
    state.reads.lock().unwrap().push(Instant::now());
    if let Some(response) = injected(next_fault(&state, Endpoint::Get).as_ref()).await {
        return response;
    }
    // `filter.task_ids` repeats; the other parameters come once.
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let mut query: HashMap<String, String> = HashMap::new();
    let mut asked_ids: Vec<String> = Vec::new();
    for (key, value) in pairs {
        let known = [
            "page_num",
            "page_size",
            "filter.status",
            "filter.task_ids",
            "filter.model",
        ];
        if !known.contains(&key.as_str()) {
            state
                .violations
                .lock()
                .unwrap()
                .push(format!("list parameter {key}"));
        }
        if key == "filter.task_ids" {
            asked_ids.push(value);
        } else if query.insert(key.clone(), value).is_some() {
            state
                .violations
                .lock()
                .unwrap()
                .push(format!("list parameter {key} repeated"));
        }
    }
    let number = |key: &str, default: usize| {
        query.get(key).map_or(Some(default), |v| {
            v.parse::<usize>().ok().filter(|n| (1..=500).contains(n))
        })
    };
    let (Some(page), Some(size)) = (number("page_num", 1), number("page_size", 10)) else {
        state
            .violations
            .lock()
            .unwrap()
            .push("list paging is not integers from 1 to 500".into());
        return error(StatusCode::BAD_REQUEST, "InvalidParameter", "paging");
    };
    let (ids, total) = {
        let tasks = state.tasks.lock().unwrap();
        let behaviour = state.behaviour.lock().unwrap();
        let wanted = |t: &&FakeTask| {
            query.get("filter.model").is_none_or(|m| *m == t.model)
                && query
                    .get("filter.status")
                    .is_none_or(|s| s == status(t, &behaviour))
        };
        let skip = (page - 1) * size;
        if asked_ids.is_empty() {
            // Newest first, as Ark lists. Walking the order tasks were made in from its end
            // reads only as far as the page asked for, so a list costs about the same however
            // many tasks this fake has made (a soak's hour makes tens of thousands; sorting
            // them all for every list made the fake's own CPU time, which it shares with the
            // gateways it serves, grow through the hour).
            let order = state.made_order.lock().unwrap();
            let page: Vec<String> = order
                .iter()
                .rev()
                .filter_map(|id| tasks.get(id))
                .filter(wanted)
                .skip(skip)
                .take(size)
                .map(|t| t.id.clone())
                .collect();
            (page, tasks.values().filter(wanted).count())
        } else {
            let mut matching: Vec<&FakeTask> = asked_ids
                .iter()
                .filter_map(|id| tasks.get(id))
                .filter(wanted)
                .collect();
            matching.sort_by_key(|t| std::cmp::Reverse(t.created));
            let total = matching.len();
            let page = matching.iter().skip(skip).take(size);
            (page.map(|t| t.id.clone()).collect(), total)
        }
    };
    let mut items = Vec::new();
    for id in &ids {
        if let Some(json) = task_json(&state, id).await {
            items.push(json);
        }
    }
    Json(json!({"items": items, "total": total})).into_response()
}

async fn delete(
    State(state): State<Arc<FakeState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !authorised(&headers) {
        return error(StatusCode::UNAUTHORIZED, "AuthenticationError", "bad key");
    }
    let mut tasks = state.tasks.lock().unwrap();
    let behaviour = state.behaviour.lock().unwrap();
    let Some(task) = tasks.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "ResourceNotFound", "no such task");
    };
    match status(task, &behaviour) {
        "queued" => {
            task.cancelled = true;
            Json(json!({})).into_response()
        }
        "running" => error(
            StatusCode::CONFLICT,
            "InvalidAction.TaskRunning",
            "a running task cannot be cancelled",
        ),
        _ => {
            tasks.remove(&id);
            Json(json!({})).into_response()
        }
    }
}

async fn file(State(state): State<Arc<FakeState>>, Path(name): Path<String>) -> Response {
    let how = state.behaviour.lock().unwrap().result_files;
    match how {
        ResultFiles::Served | ResultFiles::Streamed => {}
        ResultFiles::Missing => return StatusCode::NOT_FOUND.into_response(),
        ResultFiles::NotVideo => return "<html>an error page</html>".into_response(),
    }
    let files = state.files.lock().unwrap();
    let found = match name.rsplit_once('.') {
        Some((id, "mp4")) => files.video.get(id).cloned(),
        Some((id, "png")) => files.frame.get(id).cloned(),
        _ => None,
    };
    match found {
        Some(bytes) if how == ResultFiles::Streamed => {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                bytes.chunks(16 * 1024).map(|c| Ok(c.to_vec())).collect();
            axum::body::Body::from_stream(futures_util::stream::iter(chunks)).into_response()
        }
        Some(bytes) => bytes.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
