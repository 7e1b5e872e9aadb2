//! What an operator sees of a running server: Prometheus metrics (`GET /metrics`) kept in one
//! registry per server, and the request id that ties a request's log lines to the engine's
//! and the providers' work on its task.
//!
//! Counters and histograms are updated where things happen (requests, upstream calls, task
//! endings). What the database knows — tasks waiting or in flight, the webhook backlog, the
//! money — is read when the metrics are scraped, so every replica reports the same figures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::ids::ChannelId;
use crate::lifecycle::{Move, TaskRecord};

mod http;
mod logs;

use http::HttpMetrics;
pub use logs::LogFilter;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpenLabels {
    model: String,
    /// `pending` or `processing`, as the API says it.
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndedLabels {
    model: String,
    provider: String,
    /// `completed` or `failed`, as the API says it.
    status: &'static str,
    /// The task's failure code (`task_expired`, `OutputVideoSensitiveContentDetected`, …);
    /// `none` for a completed task.
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkLabels {
    model: String,
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    channel: String,
    /// `ok`, or what went wrong: `http_<status>`, `transport`, `not_sent`, `bad_body`.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DependencyLabels {
    dependency: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MoneyLabels {
    /// `balance` (what accounts can still spend) or `reserved` (held for unfinished tasks).
    kind: &'static str,
    mode: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// 0.5 ms to about 16 s: the span of a status poll to a slow upstream call.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0005, 2.0, 16)
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// 0.25 s to about 2.3 h: the span of a task's wait in the queue, or of its generation.
fn task_time_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.25, 2.0, 16))
}

/// The resolution and output seconds a task asked for; None when the model chose the length.
pub fn size_asked(task: &TaskRecord) -> Option<(String, u32)> {
    let echo: seedgate_contract::RequestEcho = serde_json::from_str(&task.request_json).ok()?;
    let seconds = u32::try_from(echo.duration).ok().filter(|s| *s > 0)?;
    Some((echo.resolution.as_str().to_owned(), seconds))
}

/// Generation times measured here, per provider, model and resolution, as seconds taken per
/// second of video: what an event's ETA is drawn from.
#[derive(Default)]
struct Timings {
    rates: Mutex<std::collections::HashMap<(String, String, String), f64>>,
}

impl Timings {
    /// Each new measure counts for a fifth: recent enough to follow a slower upstream, steady
    /// enough that one odd task does not swing it.
    const WEIGHT: f64 = 0.2;

    fn record(&self, key: (String, String, String), per_second: f64) {
        if let Ok(mut rates) = self.rates.lock() {
            rates
                .entry(key)
                .and_modify(|rate| *rate += Self::WEIGHT * (per_second - *rate))
                .or_insert(per_second);
        }
    }

    fn rate(&self, key: &(String, String, String)) -> Option<f64> {
        self.rates.lock().ok()?.get(key).copied()
    }
}

/// A task's ending, as the metrics count it.
pub struct TaskEnding<'a> {
    pub model: &'a str,
    pub provider: &'a str,
    /// `completed` or `failed`.
    pub status: &'static str,
    /// The failure code; `none` for a completed task.
    pub code: &'a str,
    /// From creation to the start of the submission that ended it, once it started.
    pub queue_wait: Option<Duration>,
    /// From that start to the end.
    pub generation: Option<Duration>,
    /// What it was charged; 0 unless completed.
    pub charged_usd_micros: i64,
    /// The resolution and output seconds asked for, when the request says them.
    pub size: Option<(String, u32)>,
}

impl<'a> TaskEnding<'a> {
    /// The ending `step` makes of `task` at `now_ms`; None for a move that ends nothing.
    pub fn of(task: &'a TaskRecord, step: &'a Move, now_ms: i64) -> Option<Self> {
        let (status, code, charged_usd_micros) = match step {
            Move::Succeed {
                cost_usd_micros, ..
            } => ("completed", "none", *cost_usd_micros),
            Move::EndUnpaid { code, .. } => ("failed", code.as_str(), 0),
            _ => return None,
        };
        let started = task.submit_started_at_ms;
        let span = |from: i64, to: i64| Duration::from_millis((to - from).max(0) as u64);
        Some(Self {
            model: &task.model,
            provider: &task.provider,
            status,
            code,
            queue_wait: started.map(|at| span(task.created_at_ms, at)),
            generation: started.map(|at| span(at, now_ms)),
            charged_usd_micros,
            size: size_asked(task),
        })
    }
}

/// A circuit breaker's state, as the `seedgate_channel_breaker_state` gauge reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    /// Past its cooldown: the next request is a probe.
    HalfOpen = 2,
}

/// Figures the database holds, read at each scrape.
#[derive(Debug, Default)]
pub struct StoreFigures {
    /// Tasks not yet ended, as (model, public status, count).
    pub open_tasks: Vec<(String, String, i64)>,
    /// Tasks waiting for a worker here.
    pub queued: i64,
    pub webhook_backlog: i64,
    pub money: Vec<MoneyFigure>,
}

/// One money total in micro-dollars.
#[derive(Debug)]
pub struct MoneyFigure {
    pub kind: &'static str,
    pub live: bool,
    pub usd_micros: i64,
}

pub struct Telemetry {
    registry: Registry,
    http: Arc<HttpMetrics>,
    tasks_created: Family<ModelLabels, Counter>,
    tasks_ended: Family<EndedLabels, Counter>,
    queue_wait: Histograms<WorkLabels>,
    generation: Histograms<WorkLabels>,
    charged: Family<WorkLabels, Counter>,
    open_tasks: Family<OpenLabels, Gauge>,
    queue_depth: Gauge,
    upstream_calls: Family<UpstreamLabels, Counter>,
    upstream_latency: Histograms<UpstreamLabels>,
    breakers: Family<ChannelLabels, Gauge>,
    webhook_backlog: Gauge,
    money: Family<MoneyLabels, Gauge>,
    dependency_up: Family<DependencyLabels, Gauge>,
    dependency_outages: Family<DependencyLabels, Counter>,
    /// When each dependency's current outage began, as this server saw it.
    outages: Mutex<HashMap<&'static str, Instant>>,
    timings: Timings,
    /// One scrape at a time refreshes the read-at-scrape gauges.
    scrape: Mutex<()>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("seedgate");
        let http = Arc::new(HttpMetrics::new(latency_buckets()));
        let tasks_created = Family::<ModelLabels, Counter>::default();
        let tasks_ended = Family::<EndedLabels, Counter>::default();
        let queue_wait = Histograms::<WorkLabels>::new_with_constructor(task_time_histogram);
        let generation = Histograms::<WorkLabels>::new_with_constructor(task_time_histogram);
        let charged = Family::<WorkLabels, Counter>::default();
        let open_tasks = Family::<OpenLabels, Gauge>::default();
        let queue_depth = Gauge::default();
        let upstream_calls = Family::<UpstreamLabels, Counter>::default();
        let upstream_latency =
            Histograms::<UpstreamLabels>::new_with_constructor(latency_histogram);
        let breakers = Family::<ChannelLabels, Gauge>::default();
        let webhook_backlog = Gauge::default();
        let money = Family::<MoneyLabels, Gauge>::default();
        let dependency_up = Family::<DependencyLabels, Gauge>::default();
        let dependency_outages = Family::<DependencyLabels, Counter>::default();
        registry.register(
            "dependency_up",
            "1 while a dependency (database, result_store) takes writes, 0 during an outage, as last probed",
            dependency_up.clone(),
        );
        registry.register(
            "dependency_outages",
            "Outages of a dependency (database, result_store) this server saw begin",
            dependency_outages.clone(),
        );
        registry.register_collector(Box::new(Arc::clone(&http)));
        registry.register(
            "tasks_created",
            "Tasks created by this server, by model (repeats of an idempotent request not counted)",
            tasks_created.clone(),
        );
        registry.register(
            "tasks_ended",
            "Tasks this server's engine ended, by model, provider, status (completed or failed) and failure code",
            tasks_ended.clone(),
        );
        registry.register(
            "task_queue_wait_seconds",
            "From a task's creation to the start of the submission that ended it, by model and provider",
            queue_wait.clone(),
        );
        registry.register(
            "task_generation_seconds",
            "From the start of a task's last submission to its end, by model and provider",
            generation.clone(),
        );
        registry.register(
            "charged_usd_micros",
            "Money charged for completed tasks this server's engine ended, in micro-dollars, by model and provider",
            charged.clone(),
        );
        registry.register(
            "tasks_open",
            "Tasks not yet ended, by model and status (pending or processing; all replicas)",
            open_tasks.clone(),
        );
        registry.register(
            "queue_depth",
            "Tasks queued, waiting for a worker (all replicas)",
            queue_depth.clone(),
        );
        registry.register(
            "upstream_calls",
            "Calls to upstream channels, by channel and outcome",
            upstream_calls.clone(),
        );
        registry.register(
            "upstream_call_duration_seconds",
            "Time an upstream call took, by channel and outcome",
            upstream_latency.clone(),
        );
        registry.register(
            "channel_breaker_state",
            "Circuit breaker per channel: 0 closed, 1 open, 2 half-open (this server's)",
            breakers.clone(),
        );
        registry.register(
            "webhook_backlog",
            "Webhook deliveries waiting to be sent (all replicas)",
            webhook_backlog.clone(),
        );
        registry.register(
            "ledger_usd_micros",
            "Money in micro-dollars: what accounts can spend (balance) and what unfinished tasks hold (reserved), live and test",
            money.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "build_info",
            "The running build: 1, with its version",
            build,
        );
        Self {
            registry,
            http,
            tasks_created,
            tasks_ended,
            queue_wait,
            generation,
            charged,
            open_tasks,
            queue_depth,
            upstream_calls,
            upstream_latency,
            breakers,
            webhook_backlog,
            money,
            dependency_up,
            dependency_outages,
            outages: Mutex::default(),
            timings: Timings::default(),
            scrape: Mutex::new(()),
        }
    }

    /// A request answered: its route's pattern (`/v1/tasks/{id}`, never the path itself, whose
    /// ids would make a series per task), method and status.
    pub fn http_request(&self, route: &str, method: &'static str, status: u16, took: Duration) {
        self.http.observe(route, method, status, took);
    }

    pub fn task_created(&self, model: &str) {
        self.tasks_created
            .get_or_create(&ModelLabels {
                model: model.to_owned(),
            })
            .inc();
    }

    pub fn task_ended(&self, ending: &TaskEnding<'_>) {
        self.tasks_ended
            .get_or_create(&EndedLabels {
                model: ending.model.to_owned(),
                provider: ending.provider.to_owned(),
                status: ending.status,
                code: ending.code.to_owned(),
            })
            .inc();
        let work = WorkLabels {
            model: ending.model.to_owned(),
            provider: ending.provider.to_owned(),
        };
        if let Some(wait) = ending.queue_wait {
            self.queue_wait
                .get_or_create(&work)
                .observe(wait.as_secs_f64());
        }
        if let Some(generation) = ending.generation {
            self.generation
                .get_or_create(&work)
                .observe(generation.as_secs_f64());
            if let (Some((resolution, seconds)), "completed") = (&ending.size, ending.status) {
                self.timings.record(
                    (
                        work.provider.clone(),
                        work.model.clone(),
                        resolution.clone(),
                    ),
                    generation.as_secs_f64() / f64::from(*seconds),
                );
            }
        }
        if ending.charged_usd_micros > 0 {
            self.charged
                .get_or_create(&work)
                .inc_by(ending.charged_usd_micros as u64);
        }
    }

    /// How long a task of `provider`, `model` and `resolution` making `seconds` of video takes
    /// to generate, from the tasks measured here; None before the first is measured.
    pub fn expected_generation(
        &self,
        provider: &str,
        model: &str,
        resolution: &str,
        seconds: u32,
    ) -> Option<Duration> {
        let key = (provider.to_owned(), model.to_owned(), resolution.to_owned());
        let rate = self.timings.rate(&key)?;
        Some(Duration::from_secs_f64(rate * f64::from(seconds)))
    }

    pub fn upstream_call(&self, channel: &ChannelId, outcome: &str, took: Duration) {
        let labels = UpstreamLabels {
            channel: channel.to_string(),
            outcome: outcome.to_owned(),
        };
        self.upstream_latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        self.upstream_calls.get_or_create(&labels).inc();
    }

    /// The text exposition, with the read-at-scrape gauges set from `figures` and `breakers`.
    /// What a probe of `dependency` found. An outage's start and end are logged once each,
    /// its length with the end.
    pub fn dependency(&self, dependency: &'static str, up: bool) {
        self.dependency_up
            .get_or_create(&DependencyLabels { dependency })
            .set(i64::from(up));
        let Ok(mut outages) = self.outages.lock() else {
            return;
        };
        match (up, outages.get(dependency).copied()) {
            (false, None) => {
                outages.insert(dependency, Instant::now());
                self.dependency_outages
                    .get_or_create(&DependencyLabels { dependency })
                    .inc();
                tracing::warn!(dependency, "outage began: it cannot be written");
            }
            (true, Some(began)) => {
                outages.remove(dependency);
                tracing::info!(
                    dependency,
                    seconds = began.elapsed().as_secs_f64(),
                    "outage ended: it takes writes again"
                );
            }
            _ => {}
        }
    }

    pub fn render(&self, figures: &StoreFigures, breakers: &[(ChannelId, BreakerState)]) -> String {
        let _one_at_a_time = self.scrape.lock();
        // Series that no longer exist (a state emptied, a channel removed) must not linger.
        self.open_tasks.clear();
        self.breakers.clear();
        self.money.clear();
        for (model, status, count) in &figures.open_tasks {
            self.open_tasks
                .get_or_create(&OpenLabels {
                    model: model.clone(),
                    status: status.clone(),
                })
                .set(*count);
        }
        self.queue_depth.set(figures.queued);
        self.webhook_backlog.set(figures.webhook_backlog);
        for figure in &figures.money {
            self.money
                .get_or_create(&MoneyLabels {
                    kind: figure.kind,
                    mode: if figure.live { "live" } else { "test" },
                })
                .set(figure.usd_micros);
        }
        for (channel, state) in breakers {
            self.breakers
                .get_or_create(&ChannelLabels {
                    channel: channel.to_string(),
                })
                .set(*state as i64);
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The classic Prometheus text format (0.0.4) of an OpenMetrics exposition, for scrapers and
/// tools that ask for `text/plain`: a counter's family takes its samples' `_total` name, and
/// the OpenMetrics-only lines (`# UNIT`, `# EOF`) go. Every other line reads the same in both.
pub fn classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line.starts_with("# EOF") || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            if let Some(previous) = help.replace(line) {
                out.push_str(previous);
                out.push('\n');
            }
            continue;
        }
        let counter = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.strip_suffix(" counter"));
        if let (Some(name), Some(help)) = (counter, help) {
            let text = help.strip_prefix(&format!("# HELP {name} ")).unwrap_or("");
            out.push_str(&format!("# HELP {name}_total {text}\n"));
        } else if let Some(help) = help {
            out.push_str(help);
            out.push('\n');
        }
        help = None;
        match counter {
            Some(name) => out.push_str(&format!("# TYPE {name}_total counter")),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// A request's id: the client's `X-Request-Id` when it is one we can log safely, else a fresh
/// one. Echoed in the response and carried into the task's engine and provider log lines.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

impl RequestId {
    /// The client's id if it is 1–128 visible ASCII characters, else a new `req_<ulid>`.
    pub fn from_header(value: Option<&str>) -> Self {
        match value {
            Some(id)
                if (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Self(id.to_owned())
            }
            _ => Self(format!("req_{}", ulid::Ulid::new())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_format_names_counters_by_their_samples_and_drops_openmetrics_lines() {
        let openmetrics = "# HELP seedgate_x Things done.\n# TYPE seedgate_x counter\n\
            seedgate_x_total{a=\"b\"} 3\n# HELP seedgate_y A level.\n# TYPE seedgate_y gauge\n\
            # UNIT seedgate_y seconds\nseedgate_y 1\n# EOF\n";
        assert_eq!(
            classic_text(openmetrics),
            "# HELP seedgate_x_total Things done.\n# TYPE seedgate_x_total counter\n\
             seedgate_x_total{a=\"b\"} 3\n# HELP seedgate_y A level.\n# TYPE seedgate_y gauge\n\
             seedgate_y 1\n"
        );
    }

    #[test]
    fn a_request_id_is_the_clients_when_safe_to_log() {
        assert_eq!(RequestId::from_header(Some("abc-123")).0, "abc-123");
        for unsafe_id in [Some(""), Some("two words"), Some("line\nbreak"), None] {
            assert!(RequestId::from_header(unsafe_id).0.starts_with("req_"));
        }
        assert!(RequestId::from_header(Some(&"x".repeat(129)))
            .0
            .starts_with("req_"));
    }

    #[test]
    fn the_exposition_names_every_family_and_drops_stale_series() {
        let telemetry = Telemetry::new();
        telemetry.task_created("seedance-2.0");
        telemetry.http_request("/v1/tasks/{id}", "GET", 200, Duration::from_millis(2));
        let figures = StoreFigures {
            open_tasks: vec![("seedance-2.0".into(), "pending".into(), 3)],
            queued: 3,
            webhook_backlog: 2,
            money: vec![MoneyFigure {
                kind: "reserved",
                live: true,
                usd_micros: 1_500,
            }],
        };
        let text = telemetry.render(&figures, &[(ChannelId::new("volc"), BreakerState::Open)]);
        for line in [
            "seedgate_tasks_created_total{model=\"seedance-2.0\"} 1",
            "seedgate_http_requests_total{route=\"/v1/tasks/{id}\",method=\"GET\",status=\"200\"} 1",
            "seedgate_tasks_open{model=\"seedance-2.0\",status=\"pending\"} 3",
            "seedgate_queue_depth 3",
            "seedgate_webhook_backlog 2",
            "seedgate_ledger_usd_micros{kind=\"reserved\",mode=\"live\"} 1500",
            "seedgate_channel_breaker_state{channel=\"volc\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        let text = telemetry.render(&StoreFigures::default(), &[]);
        assert!(!text.contains("status=\"pending\""), "{text}");
        assert!(text.contains("seedgate_queue_depth 0"));
    }
}
