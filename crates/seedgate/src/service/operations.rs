//! What operators and orchestrators ask of the server: whether it can do its work, its
//! metrics, and the count and timing of every HTTP answer.

use std::sync::Arc;
use std::time::Duration;

use seedgate_contract::ApiError;
use tracing::warn;

use super::internal;
use crate::blobs::Blobs;
use crate::providers::Registry;
use crate::store::{now_ms, Store};
use crate::telemetry::Telemetry;

/// How long a readiness probe waits for each dependency: one that hangs (a frozen endpoint,
/// a network partition) is down, and `/readyz` answers in time for a balancer.
const PROBE_PATIENCE: Duration = Duration::from_secs(3);

/// Where `/readyz` writes to learn whether the result store takes writes.
const READINESS_PROBE_KEY: &str = "probes/readiness";

pub struct OperationsService {
    pub(super) store: Store,
    /// The result store, probed for writes.
    pub(super) blobs: Arc<dyn Blobs>,
    /// The channels' circuit breakers, for the metrics.
    pub(super) providers: Arc<Registry>,
    pub(super) telemetry: Arc<Telemetry>,
}

impl OperationsService {
    /// Whether this server can do its work: read and write its database, and write its result
    /// store. A full disk leaves reads working, so each is written to. Otherwise which cannot,
    /// each named. Every probe is reported to the telemetry, which marks outages.
    pub async fn readiness(&self) -> Result<(), String> {
        let database = async {
            if !self.store.ping().await {
                Some("database unreachable")
            } else if !self.store.ping_write().await {
                Some("database cannot be written")
            } else {
                None
            }
        };
        let database = tokio::time::timeout(PROBE_PATIENCE, database)
            .await
            .unwrap_or(Some("database does not answer"));
        let probe = now_ms().to_string().into_bytes();
        let write = self.blobs.put_bytes(READINESS_PROBE_KEY, probe);
        let result_store = match tokio::time::timeout(PROBE_PATIENCE, write).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                warn!(error = %e, "the result store refused the readiness probe");
                Some("result store cannot be written")
            }
            Err(_) => Some("result store does not answer"),
        };
        self.telemetry.dependency("database", database.is_none());
        self.telemetry
            .dependency("result_store", result_store.is_none());
        let reasons: Vec<&str> = [database, result_store].into_iter().flatten().collect();
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
        }
    }

    /// The metrics text: counters kept here, and the figures of the database and the channels
    /// as they are now.
    pub async fn metrics(&self) -> Result<String, ApiError> {
        let figures = self.store.figures().await.map_err(internal)?;
        Ok(self
            .telemetry
            .render(&figures, &self.providers.upstream.breaker_states()))
    }

    /// Counts and times one answer, by its route's pattern, method and status.
    pub fn http_request(&self, route: &str, method: &'static str, status: u16, took: Duration) {
        self.telemetry.http_request(route, method, status, took);
    }
}
