//! Seedgate: one asynchronous HTTP API for the Seedance 2.0 video models.
//!
//! Data flows one way: request → `api` → `service` (validate with `seedgate_contract`, price,
//! persist task + reservation) → `engine` (lease) → `providers` → result files into `blobs`
//! → settle in `store` → after the retention, `sweeper` deletes the files. Beside it,
//! organizations run their keys through the management API (`management`) and keep reusable
//! reference material (`materials`), which tasks name as `asset://<id>`.

// Every binary built on the library, benches and tests included, allocates through mimalloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod assets;
pub mod blobs;
pub mod client;
pub mod config;
pub mod costs;
pub mod engine;
pub mod fetch;
pub mod http_server;
pub mod ids;
pub mod inputs;
pub mod keycache;
pub mod lifecycle;
pub mod limits;
pub mod management;
pub mod materials;
#[cfg(test)]
mod module_graph_tests;
mod mp4_header;
pub mod notify;
pub mod openrouter_view;
pub mod providers;
pub mod secret;
pub mod service;
pub mod signing;
pub mod store;
pub mod sweeper;
pub mod task_view;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;

use rand::RngCore;
use tokio::net::TcpListener;

use crate::api::{ApiState, CatalogBodies};
use crate::assets::{ResultLinks, Retention};
use crate::config::Config;
use crate::engine::Engine;
use crate::fetch::Fetcher;
use crate::materials::Materials;
use crate::providers::sandbox::Sandbox;
use crate::providers::upstream::{ChannelSetupError, Upstream};
use crate::providers::Registry;
use crate::service::Services;
use crate::signing::UrlSigner;
use crate::store::{KeyMode, KeySpec, NewKey, Store};
use crate::sweeper::Sweeper;

/// Start-up failures, reported to the operator with their cause.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot prepare data directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot build HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Channels(#[from] ChannelSetupError),
    #[error("cannot open the assets store: {0}")]
    Blobs(#[from] blobs::BlobError),
    #[error("cannot start the sandbox's render threads: {0}")]
    RenderThreads(std::io::Error),
}

/// How often assets whose processor died are looked for.
const MATERIAL_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// The whole server, wired once. `main` and every integration test build it the same way.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    engine: Arc<Engine>,
    notifier: Arc<notify::Notifier>,
    sweeper: Arc<Sweeper>,
    materials: Arc<Materials>,
    services: Arc<Services>,
    idle: std::time::Duration,
    sweep_interval: std::time::Duration,
    head_timeout: std::time::Duration,
    store: Store,
    /// The key created on an empty database, for the operator to see once.
    pub dev_key: Option<NewKey>,
    /// Which providers serve live keys and which test keys, for the operator to read at start.
    pub routing: String,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartError> {
        tokio::fs::create_dir_all(&config.data_dir).await?;
        let store = store::connect_with(&config.database_url(), config.database_pool_size).await?;
        let offset = store::clock::CLOCK.sync(&*store).await?;
        if offset.abs() > CLOCK_OFF_WARNING_MS {
            tracing::warn!(
                offset_ms = offset,
                "this host's clock is off the database's; the database's is kept"
            );
        }
        let catalog = Arc::new(config.catalog()?);
        let signing_key = store
            .setting_or_insert("asset_signing_key", &random_hex(32))
            .await?;
        let signer = UrlSigner::new(signing_key.into_bytes());
        let retention = Retention::new(config.assets.retention_seconds);
        let links = ResultLinks {
            signer: signer.clone(),
            url_ttl_seconds: config.assets.url_ttl_seconds,
            retention,
        };
        let blobs = blobs::open(&config.assets_location(), &config.assets.aws)?;
        let sweeper = Arc::new(Sweeper::new(store.clone(), blobs.clone(), retention));
        let telemetry = Arc::new(telemetry::Telemetry::new());
        let fetcher = Fetcher::new(config.fetch.clone())?;
        let fetcher_for_notifier = fetcher.clone();
        let materials = Arc::new(Materials::new(
            store.clone(),
            fetcher.clone(),
            blobs.clone(),
        ));
        let providers = Arc::new(Registry {
            sandbox: Arc::new(
                Sandbox::new(
                    catalog.clone(),
                    fetcher.clone(),
                    blobs.clone(),
                    config.sandbox.max_concurrent_renders,
                )
                .map_err(StartError::RenderThreads)?,
            ),
            upstream: Arc::new(Upstream::new(
                &config.channels,
                config.engine.breaker_failures,
                std::time::Duration::from_secs(config.engine.breaker_cooldown_seconds),
                config.limits.replicas,
                telemetry.clone(),
            )?),
            sandbox_serves_live_keys: config.sandbox.serve_live_keys,
        });
        let routing = providers.routing_summary();
        let engine = Arc::new(Engine::new(
            engine::Ports {
                store: store.clone(),
                providers: providers.clone(),
                blobs: blobs.clone(),
                fetcher,
                materials: materials.clone(),
                telemetry: telemetry.clone(),
                clock: Arc::new(engine::SystemClock),
                signer: signer.clone(),
                public_url: config.public_url.clone(),
            },
            config.engine.clone(),
            catalog.clone(),
        ));
        store.announce_work_to(engine.waker()).await?;
        let dev_key = if store.count_keys().await? == 0 {
            Some(
                store
                    .create_key(&KeySpec::plain(
                        "development",
                        KeyMode::Test,
                        config.dev_key_balance_usd as i64 * 1_000_000,
                    ))
                    .await?,
            )
        } else {
            None
        };
        let services = Arc::new(Services::new(
            service::Ports {
                store: store.clone(),
                catalog: catalog.clone(),
                fetcher: fetcher_for_notifier.clone(),
                blobs,
                links: links.clone(),
                providers,
                materials: materials.clone(),
                telemetry,
                engine_wake: engine.waker(),
                poll_wake: engine.poll_waker(),
            },
            &config,
        ));
        let state = ApiState::new(api::Reachable {
            services: services.clone(),
            catalog: CatalogBodies::render(&catalog, store::now_ms() / 1000),
            polls: Arc::default(),
        });
        let router = api::router(state, config.max_body_bytes);
        let listener = TcpListener::bind(config.listen).await?;
        let base_url = config
            .public_url
            .clone()
            .unwrap_or(format!("http://{}", listener.local_addr()?));
        let notifier = Arc::new(notify::Notifier::new(
            store.clone(),
            links,
            catalog.clone(),
            fetcher_for_notifier,
            base_url,
            config.webhooks.clone(),
        ));
        Ok(Self {
            listener,
            router,
            engine,
            notifier,
            sweeper,
            materials,
            services,
            idle: std::time::Duration::from_millis(config.engine.idle_poll_ms),
            head_timeout: std::time::Duration::from_millis(config.request_head_timeout_ms.get()),
            sweep_interval: std::time::Duration::from_secs(
                config.assets.sweep_interval_seconds.get(),
            ),
            store,
            dev_key,
            routing,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn notifier(&self) -> &Arc<notify::Notifier> {
        &self.notifier
    }

    pub fn sweeper(&self) -> &Arc<Sweeper> {
        &self.sweeper
    }

    pub fn materials(&self) -> &Arc<Materials> {
        &self.materials
    }

    /// Serves HTTP and runs the engine workers, the notifier, the sweeper and the material
    /// processor until `shutdown`
    /// resolves.
    pub async fn run(
        self,
        run_workers: bool,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if run_workers {
            self.engine.spawn_workers();
            self.notifier.clone().spawn(self.idle);
            self.sweeper.clone().spawn(self.sweep_interval);
            self.materials.clone().spawn(MATERIAL_RETRY);
            let (services, store) = (self.services.clone(), self.store.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(DEPENDENCY_PROBE);
                loop {
                    every.tick().await;
                    // The outcome is reported to the telemetry, which marks outages.
                    let _ = services.operations.readiness().await;
                    // A host clock drifts, or is stepped: the offset is measured again.
                    let _ = store::clock::CLOCK.sync(&*store).await;
                }
            });
        }
        http_server::serve(self.listener, self.router, self.head_timeout, shutdown).await
    }
}

/// A host clock further than this off the database's is worth a warning at start.
const CLOCK_OFF_WARNING_MS: i64 = 1_000;

/// How often the database and the result store are probed for writes, so the dependency
/// metrics and the outage log lines hold without anyone calling `/readyz`.
const DEPENDENCY_PROBE: std::time::Duration = std::time::Duration::from_secs(5);

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    hex::encode(buf)
}
