//! The use cases behind the HTTP API, one narrow service per area. Handlers extract, call one
//! service and render; the rules live in `seedgate_contract` and the rule modules, the
//! persistence in `store`, and only the services reach it. Each service holds the ports it
//! uses and nothing else.

mod accounts;
mod catalog;
mod downloads;
pub mod events;
mod management;
mod materials;
mod operations;
mod tasks;

use std::sync::Arc;

use seedgate_contract::{ApiError, Catalog, ErrorCode};
use tokio::sync::Notify;
use tracing::{error, warn};

use crate::assets::ResultLinks;
use crate::blobs::Blobs;
use crate::config::Config;
use crate::fetch::Fetcher;
use crate::keycache::KeyCache;
use crate::limits::RateLimiter;
use crate::materials::Materials;
use crate::providers::Registry;
use crate::store::{Store, StoreError};
use crate::telemetry::Telemetry;

pub use crate::task_view::{usd, usd_number};
pub use accounts::AccountService;
pub use catalog::CatalogService;
pub use downloads::DownloadService;
pub use events::EventService;
pub use management::ManagementService;
pub use materials::MaterialService;
pub use operations::OperationsService;
pub use tasks::{CreateContext, Priced, TaskPage, TaskService};

/// Every service the API calls; shared, immutable after start-up.
pub struct Services {
    pub tasks: TaskService,
    pub events: Arc<EventService>,
    pub accounts: AccountService,
    pub management: ManagementService,
    pub materials: MaterialService,
    pub catalog: CatalogService,
    pub downloads: DownloadService,
    pub operations: OperationsService,
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
            events: Arc::new(EventService {
                store: ports.store.clone(),
                catalog: ports.catalog.clone(),
                links: ports.links.clone(),
                telemetry: ports.telemetry.clone(),
                workers: config.engine.workers as u32,
                queue_refresh: std::time::Duration::from_millis(
                    config.engine.queue_refresh_ms.max(1),
                ),
                hub: Default::default(),
            }),
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
                fetcher: ports.fetcher,
                processor: ports.materials,
            },
            catalog: CatalogService {
                catalog: ports.catalog,
            },
            downloads: DownloadService {
                store: ports.store.clone(),
                blobs: ports.blobs.clone(),
                links: ports.links,
            },
            operations: OperationsService {
                store: ports.store,
                blobs: ports.blobs,
                providers: ports.providers,
                telemetry: ports.telemetry,
            },
        }
    }
}

/// Our own fault: logged in full, shown as a generic `internal_error`.
pub fn internal(e: StoreError) -> ApiError {
    if e.is_unavailable() {
        warn!(error = %e, "the database is unavailable");
        return ApiError::new(
            ErrorCode::StorageUnavailable,
            "The database cannot be reached or written right now; nothing was changed. Retry after the Retry-After seconds.",
        );
    }
    error!(error = %e, "storage failure");
    ApiError::new(
        ErrorCode::InternalError,
        "The server failed to process the request. It is safe to retry.",
    )
}
