//! What an operator sees of a running server: Prometheus metrics (`GET /metrics`) kept in one
//! registry per server, and the request id that ties a request's log lines to the engine's
//! and the providers' work on its task.
//!
//! Counters and histograms are updated where things happen (requests, upstream calls, task
//! endings). What the database knows — tasks waiting or in flight, the webhook backlog, the
//! money — is read when the metrics are scraped, so every replica reports the same figures.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::ids::ChannelId;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route's pattern (`/v1/tasks/{id}`), never the path itself: ids would make a series
    /// per task.
    pub route: String,
    pub method: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    model: String,
    state: String,
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
struct MoneyLabels {
    /// `balance` (what accounts can still spend), `reserved` (held for unfinished tasks),
    /// `charged` (billed for completed ones).
    kind: &'static str,
    mode: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// 0.5 ms to about 16 s: the span of a status poll to a slow upstream call.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
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
    /// Tasks not yet ended, as (model, state, count).
    pub open_tasks: Vec<(String, String, i64)>,
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
    http_requests: Family<HttpLabels, Counter>,
    http_latency: Histograms<HttpLabels>,
    tasks_created: Family<ModelLabels, Counter>,
    tasks_ended: Family<TaskLabels, Counter>,
    open_tasks: Family<TaskLabels, Gauge>,
    queue_depth: Gauge,
    upstream_calls: Family<UpstreamLabels, Counter>,
    upstream_latency: Histograms<UpstreamLabels>,
    breakers: Family<ChannelLabels, Gauge>,
    webhook_backlog: Gauge,
    money: Family<MoneyLabels, Gauge>,
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
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_latency = Histograms::<HttpLabels>::new_with_constructor(latency_histogram);
        let tasks_created = Family::<ModelLabels, Counter>::default();
        let tasks_ended = Family::<TaskLabels, Counter>::default();
        let open_tasks = Family::<TaskLabels, Gauge>::default();
        let queue_depth = Gauge::default();
        let upstream_calls = Family::<UpstreamLabels, Counter>::default();
        let upstream_latency =
            Histograms::<UpstreamLabels>::new_with_constructor(latency_histogram);
        let breakers = Family::<ChannelLabels, Gauge>::default();
        let webhook_backlog = Gauge::default();
        let money = Family::<MoneyLabels, Gauge>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route, method and status",
            http_latency.clone(),
        );
        registry.register(
            "tasks_created",
            "Tasks created by this server, by model (repeats of an idempotent request not counted)",
            tasks_created.clone(),
        );
        registry.register(
            "tasks_ended",
            "Tasks this server's engine ended, by model and final state",
            tasks_ended.clone(),
        );
        registry.register(
            "tasks_open",
            "Tasks not yet ended, by model and state (all replicas)",
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
            "Money in micro-dollars: balance, reserved and charged, live and test",
            money.clone(),
        );
        Self {
            registry,
            http_requests,
            http_latency,
            tasks_created,
            tasks_ended,
            open_tasks,
            queue_depth,
            upstream_calls,
            upstream_latency,
            breakers,
            webhook_backlog,
            money,
            scrape: Mutex::new(()),
        }
    }

    pub fn http_request(&self, labels: HttpLabels, took: Duration) {
        self.http_latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        self.http_requests.get_or_create(&labels).inc();
    }

    pub fn task_created(&self, model: &str) {
        self.tasks_created
            .get_or_create(&ModelLabels {
                model: model.to_owned(),
            })
            .inc();
    }

    pub fn task_ended(&self, model: &str, state: &str) {
        self.tasks_ended
            .get_or_create(&TaskLabels {
                model: model.to_owned(),
                state: state.to_owned(),
            })
            .inc();
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
    pub fn render(&self, figures: &StoreFigures, breakers: &[(ChannelId, BreakerState)]) -> String {
        let _one_at_a_time = self.scrape.lock();
        // Series that no longer exist (a state emptied, a channel removed) must not linger.
        self.open_tasks.clear();
        self.breakers.clear();
        self.money.clear();
        let mut queued = 0;
        for (model, state, count) in &figures.open_tasks {
            if state == crate::lifecycle::TaskState::Queued.as_str() {
                queued += count;
            }
            self.open_tasks
                .get_or_create(&TaskLabels {
                    model: model.clone(),
                    state: state.clone(),
                })
                .set(*count);
        }
        self.queue_depth.set(queued);
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
        telemetry.http_request(
            HttpLabels {
                route: "/v1/tasks/{id}".into(),
                method: "GET".into(),
                status: 200,
            },
            Duration::from_millis(2),
        );
        let figures = StoreFigures {
            open_tasks: vec![("seedance-2.0".into(), "queued".into(), 3)],
            webhook_backlog: 2,
            money: vec![MoneyFigure {
                kind: "charged",
                live: true,
                usd_micros: 1_500,
            }],
        };
        let text = telemetry.render(&figures, &[(ChannelId::new("volc"), BreakerState::Open)]);
        for line in [
            "seedgate_tasks_created_total{model=\"seedance-2.0\"} 1",
            "seedgate_http_requests_total{route=\"/v1/tasks/{id}\",method=\"GET\",status=\"200\"} 1",
            "seedgate_tasks_open{model=\"seedance-2.0\",state=\"queued\"} 3",
            "seedgate_queue_depth 3",
            "seedgate_webhook_backlog 2",
            "seedgate_ledger_usd_micros{kind=\"charged\",mode=\"live\"} 1500",
            "seedgate_channel_breaker_state{channel=\"volc\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        let text = telemetry.render(&StoreFigures::default(), &[]);
        assert!(!text.contains("state=\"queued\""), "{text}");
        assert!(text.contains("seedgate_queue_depth 0"));
    }
}
