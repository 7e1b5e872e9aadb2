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
use crate::telemetry::{HttpLabels, Telemetry};

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
    /// store. A full disk leaves reads working, so each is written to. The reason otherwise.
    pub async fn readiness(&self) -> Result<(), &'static str> {
        if !self.store.ping().await {
            return Err("database unreachable");
        }
        if !self.store.ping_write().await {
            return Err("database cannot be written");
        }
        let probe = now_ms().to_string().into_bytes();
        if let Err(e) = self.blobs.put_bytes(READINESS_PROBE_KEY, probe).await {
            warn!(error = %e, "the result store refused the readiness probe");
            return Err("result store cannot be written");
        }
        Ok(())
    }

    /// The metrics text: counters kept here, and the figures of the database and the channels
    /// as they are now.
    pub async fn metrics(&self) -> Result<String, ApiError> {
        let figures = self.store.figures().await.map_err(internal)?;
        Ok(self
            .telemetry
            .render(&figures, &self.providers.upstream.breaker_states()))
    }

    /// Counts and times one answer.
    pub fn http_request(&self, labels: HttpLabels, took: Duration) {
        self.telemetry.http_request(labels, took);
    }
}
