//! The HTTP request counter and latency histogram, which every request updates.
//!
//! As prometheus-client families, each update took a family's lock to find its series, then
//! the histogram's write lock to count into it: shared cache lines that the runtime's worker
//! threads passed back and forth on every request. Here each thread counts into series of its
//! own, behind a lock that only a scrape also takes, and a scrape adds the threads' series up.
//! The exposition is the one the families gave: `http_requests` (a counter) and
//! `http_request_duration_seconds` (a histogram), by route, method and status.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use thread_local::ThreadLocal;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct HttpLabels {
    /// The route's pattern (`/v1/tasks/{id}`), never the path itself: ids would make a series
    /// per task.
    route: String,
    method: &'static str,
    status: u16,
}

/// One thread's series: by route, then by method and status (a route answers with few).
type ThreadSeries = HashMap<String, Vec<(&'static str, u16, Series)>>;

pub(super) struct HttpMetrics {
    /// Upper bounds of the latency buckets, in seconds, the last one infinite.
    bounds: Vec<f64>,
    threads: ThreadLocal<Mutex<ThreadSeries>>,
}

#[derive(Clone)]
struct Series {
    count: u64,
    seconds: f64,
    /// Observations per bucket (not cumulative), one per bound.
    buckets: Vec<u64>,
}

impl Series {
    fn add(&mut self, other: &Series) {
        self.count += other.count;
        self.seconds += other.seconds;
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
    }
}

impl HttpMetrics {
    /// Latency buckets with `bounds` as upper bounds, in seconds; an infinite one is added.
    pub(super) fn new(bounds: impl IntoIterator<Item = f64>) -> Self {
        Self {
            bounds: bounds.into_iter().chain([f64::MAX]).collect(),
            threads: ThreadLocal::new(),
        }
    }

    pub(super) fn observe(&self, route: &str, method: &'static str, status: u16, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len() - 1);
        let mut series = self
            .threads
            .get_or(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let answers = match series.get_mut(route) {
            Some(answers) => answers,
            None => series.entry(route.to_owned()).or_default(),
        };
        let index = match answers
            .iter()
            .position(|(m, s, _)| *m == method && *s == status)
        {
            Some(index) => index,
            None => {
                answers.push((
                    method,
                    status,
                    Series {
                        count: 0,
                        seconds: 0.0,
                        buckets: vec![0; self.bounds.len()],
                    },
                ));
                answers.len() - 1
            }
        };
        let counted = &mut answers[index].2;
        counted.count += 1;
        counted.seconds += seconds;
        counted.buckets[bucket] += 1;
    }

    /// Every thread's series added up, by label set.
    fn totals(&self) -> BTreeMap<HttpLabels, Series> {
        let mut totals: BTreeMap<HttpLabels, Series> = BTreeMap::new();
        for thread in self.threads.iter() {
            let series = thread.lock().unwrap_or_else(PoisonError::into_inner);
            for (route, answers) in series.iter() {
                for (method, status, counted) in answers {
                    let labels = HttpLabels {
                        route: route.clone(),
                        method,
                        status: *status,
                    };
                    match totals.get_mut(&labels) {
                        Some(total) => total.add(counted),
                        None => {
                            totals.insert(labels, counted.clone());
                        }
                    }
                }
            }
        }
        totals
    }
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetrics").finish_non_exhaustive()
    }
}

impl Collector for HttpMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self.totals();
        // As a registry leaves out a family with no series.
        if totals.is_empty() {
            return Ok(());
        }
        {
            let mut family = encoder.encode_descriptor(
                "http_requests",
                "HTTP requests answered, by route, method and status",
                None,
                MetricType::Counter,
            )?;
            for (labels, series) in &totals {
                family
                    .encode_family(labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&series.count, None)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route, method and status",
            None,
            MetricType::Histogram,
        )?;
        for (labels, series) in &totals {
            let buckets: Vec<(f64, u64)> = self
                .bounds
                .iter()
                .copied()
                .zip(series.buckets.iter().copied())
                .collect();
            family
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(series.seconds, series.count, &buckets, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prometheus_client::registry::Registry;

    use super::*;

    fn exposition(metrics: Arc<HttpMetrics>) -> String {
        let mut registry = Registry::with_prefix("seedgate");
        registry.register_collector(Box::new(metrics));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn a_scrape_adds_up_what_each_thread_counted() {
        let metrics = Arc::new(HttpMetrics::new([0.25, 1.0]));
        std::thread::scope(|scope| {
            for _ in 0..3 {
                scope.spawn(|| {
                    for took_ms in [0, 500, 2000] {
                        metrics.observe(
                            "/v1/tasks/{id}",
                            "GET",
                            200,
                            Duration::from_millis(took_ms),
                        );
                    }
                    metrics.observe("/v1/tasks/{id}", "GET", 404, Duration::from_millis(125));
                });
            }
        });
        let text = exposition(metrics);
        let get = "route=\"/v1/tasks/{id}\",method=\"GET\"";
        for line in [
            "# TYPE seedgate_http_requests counter".to_owned(),
            format!("seedgate_http_requests_total{{{get},status=\"200\"}} 9"),
            format!("seedgate_http_requests_total{{{get},status=\"404\"}} 3"),
            "# TYPE seedgate_http_request_duration_seconds histogram".to_owned(),
            format!("seedgate_http_request_duration_seconds_count{{{get},status=\"200\"}} 9"),
            format!("seedgate_http_request_duration_seconds_sum{{{get},status=\"200\"}} 7.5"),
            format!(
                "seedgate_http_request_duration_seconds_bucket{{le=\"0.25\",{get},status=\"200\"}} 3"
            ),
            format!(
                "seedgate_http_request_duration_seconds_bucket{{le=\"1.0\",{get},status=\"200\"}} 6"
            ),
            format!(
                "seedgate_http_request_duration_seconds_bucket{{le=\"+Inf\",{get},status=\"200\"}} 9"
            ),
            format!(
                "seedgate_http_request_duration_seconds_bucket{{le=\"0.25\",{get},status=\"404\"}} 3"
            ),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
    }

    #[test]
    fn nothing_counted_leaves_the_families_out() {
        let text = exposition(Arc::new(HttpMetrics::new([0.001])));
        assert!(!text.contains("http_request"), "{text}");
    }
}
