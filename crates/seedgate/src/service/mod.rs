//! The use cases behind the HTTP API, one narrow service per area. Handlers extract, call one
//! service and render; the rules live in `seedgate_contract` and the rule modules, the
//! persistence in `store`, and only the services reach it.

mod accounts;
mod management;
mod materials;
mod tasks;

use std::sync::Arc;

use seedgate_contract::{ApiError, Catalog, ErrorCode};
use tokio::sync::Notify;
use tracing::{error, warn};

use crate::assets::ResultLinks;
use crate::blobs::Blobs;
use crate::config::Config;
use crate::fetch::Fetcher;
use crate::ids::TaskId;
use crate::keycache::KeyCache;
use crate::limits::RateLimiter;
use crate::materials::Materials;
use crate::providers::Registry;
use crate::signing::UrlSigner;
use crate::store::{now_ms, Store, StoreError};
use crate::telemetry::Telemetry;

pub use accounts::AccountService;
pub use management::ManagementService;
pub use materials::MaterialService;
pub use tasks::{task_not_found, Priced, TaskPage, TaskService};

/// Shared, immutable after start-up.
pub struct Services {
    pub tasks: TaskService,
    pub accounts: AccountService,
    pub management: ManagementService,
    pub materials: MaterialService,
    pub store: Store,
    pub catalog: Arc<Catalog>,
    /// Where result files are kept (downloads read them from here).
    pub blobs: Arc<dyn Blobs>,
    /// Checks download signatures.
    pub signer: UrlSigner,
    pub links: ResultLinks,
    pub providers: Arc<Registry>,
    pub telemetry: Arc<Telemetry>,
}

/// What the services are built from. Each service is handed only the ports it uses.
pub struct Ports {
    pub store: Store,
    pub catalog: Arc<Catalog>,
    /// The outbound guard.
    pub fetcher: Fetcher,
    /// Where result files are kept.
    pub blobs: Arc<dyn Blobs>,
    /// Signs result URLs and checks download links and upstream callbacks.
    pub links: ResultLinks,
    pub providers: Arc<Registry>,
    /// Processes material assets.
    pub materials: Arc<Materials>,
    pub telemetry: Arc<Telemetry>,
    /// Wakes the engine.
    pub engine_wake: Arc<Notify>,
    /// Wakes the engine's idle pollers.
    pub poll_wake: Arc<Notify>,
}

impl Services {
    pub fn new(ports: Ports, config: &Config) -> Self {
        let keys = Arc::new(KeyCache::new(std::time::Duration::from_millis(
            config.limits.key_cache_ms,
        )));
        Self {
            tasks: TaskService {
                store: ports.store.clone(),
                catalog: ports.catalog.clone(),
                fetcher: ports.fetcher.clone(),
                links: ports.links.clone(),
                providers: ports.providers.clone(),
                engine_wake: ports.engine_wake,
                poll_wake: ports.poll_wake,
                telemetry: ports.telemetry.clone(),
                task_deadline_ms: config.engine.task_deadline_seconds as i64 * 1000,
                public_url: config.public_url.clone(),
            },
            accounts: AccountService {
                store: ports.store.clone(),
                keys: keys.clone(),
                limiter: RateLimiter::default(),
                limits: config.limits.clone(),
            },
            management: ManagementService {
                store: ports.store.clone(),
                catalog: ports.catalog.clone(),
                keys,
                limiter: RateLimiter::default(),
                limits: config.limits.clone(),
            },
            materials: MaterialService {
                store: ports.store.clone(),
                fetcher: ports.fetcher.clone(),
                processor: ports.materials,
            },
            store: ports.store,
            catalog: ports.catalog,
            blobs: ports.blobs,
            signer: ports.links.signer.clone(),
            links: ports.links,
            providers: ports.providers,
            telemetry: ports.telemetry,
        }
    }
}

/// Where `/readyz` writes to learn whether the result store takes writes.
const READINESS_PROBE_KEY: &str = "probes/readiness";

/// Our own fault: logged in full, shown as a generic `internal_error`.
pub fn internal(e: StoreError) -> ApiError {
    error!(error = %e, "storage failure");
    ApiError::new(
        ErrorCode::InternalError,
        "The server failed to process the request. It is safe to retry.",
    )
}

impl Services {
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
            .render(&figures, &self.providers.ark.breaker_states()))
    }

    /// Whether a task's result files are gone for good (or due to go), so that a link to them
    /// is answered `result_expired` rather than `invalid_signature` or `not_found`. The caller
    /// has checked the link's signature: it names one of our tasks.
    pub async fn result_expired(&self, task_id: &TaskId) -> Result<bool, ApiError> {
        let task = self.store.task(task_id).await.map_err(internal)?;
        let now_s = (now_ms() / 1000) as u64;
        Ok(task.is_some_and(|task| self.links.retention.files_expired(&task, now_s)))
    }
}

/// Micro-dollars as the API shows money: six decimals, exact.
pub fn usd(micros: i64) -> String {
    rust_decimal::Decimal::new(micros, 6).to_string()
}

/// Micro-dollars as a JSON number, where the platform's schema wants one. Below 2^53
/// micro-dollars (billions of dollars) the shortest printing of the double is the exact
/// decimal, so nothing is rounded; the ledger itself stays in integers.
pub fn usd_number(micros: i64) -> serde_json::Value {
    serde_json::Number::from_f64(micros as f64 / 1e6)
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}
