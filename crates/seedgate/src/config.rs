//! Settings as data with defaults, layered: built-in defaults → TOML file → environment/flags.
//! Unknown keys in the file are errors, so a typo never silently changes behaviour.

use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::blobs::{AwsEnvironment, Location};
use crate::ids::ChannelId;

/// Everything the server needs, parsed once at start-up.
/// PostgreSQL connections per replica unless `database_pool_size` says otherwise.
pub const DEFAULT_DATABASE_POOL_SIZE: u32 = 16;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `sqlite:…`; defaults to `seedgate.db` inside `data_dir`.
    pub database_url: Option<String>,
    /// Most connections this replica opens to PostgreSQL; replicas × this must stay under the
    /// database's `max_connections`.
    pub database_pool_size: u32,
    /// Base of the absolute result URLs; defaults to the request's own scheme and Host.
    pub public_url: Option<String>,
    /// Largest request body accepted (data: URIs of video inputs need tens of MB).
    pub max_body_bytes: usize,
    /// How long a connection may take to send a request head, counted from when it is ready
    /// for one (so it also bounds an idle keep-alive connection): then it is closed.
    pub request_head_timeout_ms: NonZeroU64,
    /// Opening balance of the development key created on an empty database.
    pub dev_key_balance_usd: u64,
    /// A catalog TOML that replaces the built-in one (adding a model needs no code change).
    pub catalog_file: Option<PathBuf>,
    pub engine: EngineConfig,
    pub sandbox: SandboxConfig,
    pub fetch: FetchConfig,
    pub assets: AssetsConfig,
    /// Upstream channels; with none, the sandbox is the only channel.
    pub channels: Vec<ChannelConfig>,
    pub limits: LimitsConfig,
    pub webhooks: WebhooksConfig,
}

/// Webhook retries: exponential from `retry_base_ms`, capped at `max_retry_delay_ms`, for
/// `max_attempts` (the defaults span about a day and a half).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    pub retry_base_ms: u64,
    pub max_retry_delay_ms: u64,
    pub max_attempts: i64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            retry_base_ms: 10_000,
            max_retry_delay_ms: 6 * 3600 * 1000,
            max_attempts: 16,
        }
    }
}

/// Default request rate of each key; a key may carry its own (`keys create --rps`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub requests_per_second: u32,
    /// Requests a key may make at once after a quiet spell.
    pub burst: u32,
    /// Replicas serving the API behind one balancer. Request rates are counted in each
    /// process, so each enforces its share of a key's rate (and burst): the limit ÷ replicas,
    /// rounded up. Everything else that must hold across replicas (balances, task and channel
    /// places) is enforced by the database.
    pub replicas: u32,
    /// How long a replica trusts a key it has looked up, in milliseconds: the longest a key
    /// revoked or changed elsewhere is still honoured here. 0 reads the key on every request.
    pub key_cache_ms: u64,
}

impl LimitsConfig {
    /// This replica's share of a key's `(rate, burst)`.
    pub fn share(&self, requests_per_second: u32, burst: u32) -> (u32, u32) {
        let replicas = self.replicas.max(1);
        (
            requests_per_second.div_ceil(replicas).max(1),
            burst.div_ceil(replicas).max(1),
        )
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 50,
            burst: 100,
            replicas: 1,
            key_cache_ms: 5_000,
        }
    }
}

/// One upstream account: a provider, where it lives, its key, which models it serves.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub id: ChannelId,
    /// The vendor whose wire the channel speaks: `ark` (Volcengine Ark and BytePlus
    /// ModelArk), `fal`, `replicate` or `openrouter` (docs/vendors.md).
    pub provider: String,
    /// Where the vendor's API lives; Ark's ends in `/api/v3`. Left out, the vendor's public
    /// address (Ark has two regions, so its channels must say).
    #[serde(default)]
    pub base_url: String,
    /// The environment variable holding the API key (never the key itself).
    pub api_key_env: String,
    /// Our model id → the upstream's model id.
    pub models: std::collections::BTreeMap<String, String>,
    /// Output resolutions this channel serves.
    pub resolutions: Vec<seedgate_contract::Resolution>,
    /// The operations this channel serves; left out, every one its vendor's wire carries.
    #[serde(default)]
    pub operations: Option<Vec<seedgate_contract::Operation>>,
    /// What the vendor charges on this channel, per model (our id), for the cost report
    /// (`seedgate channels report`). A vendor that reports its charge (OpenRouter) needs none;
    /// Ark, without one, is taken to charge the official price the customer pays.
    #[serde(default)]
    pub costs: std::collections::BTreeMap<String, VendorRate>,
    /// Channels are tried lowest priority first; among equals, in a random order by weight.
    #[serde(default)]
    pub priority: u32,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Per model (our id): this channel's own priority and weight for that model's tasks.
    #[serde(default)]
    pub routing: std::collections::BTreeMap<String, ModelRouting>,
    /// Upstream tasks in flight at once; more wait queued.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_tasks: u32,
    #[serde(default = "default_channel_timeout")]
    pub timeout_seconds: u64,
    /// Status reads (polls, lists) this channel may receive per second from all replicas
    /// together; each replica keeps to its share (÷ `limits.replicas`).
    #[serde(default = "default_polls_per_second")]
    pub polls_per_second: u32,
    /// Upstream tasks one poll asks about: Ark lists up to 500 ids in one read (each adds
    /// about 41 bytes to the URL), so its default is 100; the other vendors are read one task
    /// at a time, up to 32 side by side, their default.
    #[serde(default)]
    pub poll_batch: Option<u32>,
}

/// A vendor's price on a channel, in US dollars as decimal strings (`"0.30"`): per second of
/// video made (fal, Replicate) or per million tokens (Ark).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VendorRate {
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub usd_per_second: Option<rust_decimal::Decimal>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    pub usd_per_million_tokens: Option<rust_decimal::Decimal>,
}

/// A channel's place in routing for one model; what it leaves out is the channel's own.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ModelRouting {
    pub priority: Option<u32>,
    pub weight: Option<u32>,
}

fn default_weight() -> u32 {
    1
}

fn default_max_concurrent() -> u32 {
    100
}

fn default_channel_timeout() -> u64 {
    30
}

fn default_polls_per_second() -> u32 {
    50
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Concurrent task workers in this process.
    pub workers: usize,
    /// How long a claimed task stays with its worker without a heartbeat; a dead process's
    /// tasks are picked up again after this.
    pub lease_seconds: u64,
    /// Idle poll interval when no wake-up arrives (other replicas may have queued work).
    pub idle_poll_ms: u64,
    /// Attempts before a task that keeps failing transiently (or crashing its worker) fails.
    pub max_attempts: i64,
    /// A task not finished this long after creation is `expired` and costs nothing.
    pub task_deadline_seconds: u64,
    /// First poll of an upstream task after submission.
    pub first_poll_ms: u64,
    /// Longest wait between two polls once a task is overdue.
    pub max_poll_interval_ms: u64,
    /// Expected upstream time per second of 720p output; polls cluster around it.
    pub expected_ms_per_output_second: u64,
    /// Consecutive failures that take a channel out of rotation, and for how long.
    pub breaker_failures: u32,
    pub breaker_cooldown_seconds: u64,
    /// Largest result file copied from an upstream.
    pub max_result_bytes: u64,
    /// Tries at copying a finished upstream result before the task fails (uncharged) with
    /// `result_unavailable`, the first retry after `result_copy_backoff_ms`, then doubling.
    pub result_copy_attempts: i64,
    pub result_copy_backoff_ms: u64,
    /// The first retry of a submission that failed transiently waits this long, each next one
    /// twice as long (plus up to a quarter, at random), up to `max_retry_delay_ms`.
    pub retry_backoff_ms: u64,
    pub max_retry_delay_ms: u64,
    /// Least wait after a submission whose answer was lost before the upstream is searched
    /// for its task, so that a task the upstream was still creating shows up in its list.
    pub reconcile_delay_ms: u64,
    /// After the upstream's own expiry of a submitted task, how long its last word is awaited
    /// before the task is ended here anyway.
    pub upstream_expiry_grace_ms: u64,
    /// How often the queue is read again for event streams' queue positions.
    pub queue_refresh_ms: u64,
    /// Tasks of one key generating at once; more wait queued (a key may carry its own).
    pub max_concurrent_tasks_per_key: u32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Renders at once; each one is CPU-bound on one core.
    pub max_concurrent_renders: usize,
    /// Whether live keys may be served by the sandbox on a server with no upstream channels.
    /// Off by default: a live key pays real money, and an operator who forgot the channels
    /// must not bill customers for test patterns. For development only.
    pub serve_live_keys: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchConfig {
    pub connect_timeout_seconds: u64,
    pub timeout_seconds: u64,
    pub max_image_bytes: u64,
    pub max_video_bytes: u64,
    pub max_audio_bytes: u64,
    /// Internal networks the gateway may fetch from anyway (e.g. `["10.0.0.0/8"]` for an
    /// in-house media server). Empty: loopback, private and metadata addresses are refused.
    pub allow_private: Vec<ipnet::IpNet>,
    /// False locks egress down to the `allow_private` networks: no input, result copy or
    /// webhook reaches the public internet (isolated deployments, and the API fuzz test).
    pub public_internet: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssetsConfig {
    /// Lifetime of a signed result URL; each task read mints fresh ones, none outliving the
    /// files it points at.
    pub url_ttl_seconds: u64,
    /// How long a task's result files (and its stored inputs) are kept once it has ended;
    /// then the sweeper deletes them and the task reads with its result expired.
    pub retention_seconds: NonZeroU64,
    /// How often the sweeper looks for files past their retention.
    pub sweep_interval_seconds: NonZeroU64,
    /// Where result files are kept: `file:///path` or `s3://bucket/prefix`; absent, the
    /// `assets` folder in `data_dir`. `SEEDGATE_ASSETS_URL` overrides it.
    pub url: Option<Location>,
    /// The environment's `AWS_*` settings, for an S3 store; never read from the file, since
    /// they hold credentials.
    #[serde(skip)]
    pub aws: AwsEnvironment,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_pool_size: DEFAULT_DATABASE_POOL_SIZE,
            public_url: None,
            max_body_bytes: 75 * 1024 * 1024,
            request_head_timeout_ms: NonZeroU64::new(10_000).unwrap_or(NonZeroU64::MIN),
            dev_key_balance_usd: 100,
            catalog_file: None,
            engine: EngineConfig::default(),
            sandbox: SandboxConfig::default(),
            fetch: FetchConfig::default(),
            assets: AssetsConfig::default(),
            channels: Vec::new(),
            limits: LimitsConfig::default(),
            webhooks: WebhooksConfig::default(),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            workers: 4,
            lease_seconds: 30,
            idle_poll_ms: 1000,
            max_attempts: 5,
            task_deadline_seconds: 6 * 3600,
            first_poll_ms: 5_000,
            max_poll_interval_ms: 30_000,
            expected_ms_per_output_second: 12_000,
            breaker_failures: 3,
            breaker_cooldown_seconds: 30,
            max_result_bytes: 1024 * 1024 * 1024,
            // 15 s, 30 s, 1 min, 2 min: about four minutes in all.
            result_copy_attempts: 5,
            result_copy_backoff_ms: 15_000,
            retry_backoff_ms: 1_000,
            max_retry_delay_ms: 60_000,
            reconcile_delay_ms: 2_000,
            upstream_expiry_grace_ms: 10 * 60 * 1000,
            queue_refresh_ms: 5_000,
            max_concurrent_tasks_per_key: 8,
        }
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            max_concurrent_renders: std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(2),
            serve_live_keys: false,
        }
    }
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            connect_timeout_seconds: 10,
            timeout_seconds: 60,
            max_image_bytes: 30 * 1024 * 1024,
            max_video_bytes: 50 * 1024 * 1024,
            max_audio_bytes: 15 * 1024 * 1024,
            allow_private: Vec::new(),
            public_internet: true,
        }
    }
}

impl Default for AssetsConfig {
    fn default() -> Self {
        Self {
            url_ttl_seconds: 24 * 3600,
            retention_seconds: NonZeroU64::new(30 * 24 * 3600).unwrap_or(NonZeroU64::MIN),
            sweep_interval_seconds: NonZeroU64::new(600).unwrap_or(NonZeroU64::MIN),
            url: None,
            aws: AwsEnvironment::default(),
        }
    }
}

/// Configuration errors stop start-up with a message naming the file and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid catalog file {path}: {message}")]
    Catalog { path: PathBuf, message: String },
}

impl Config {
    /// Defaults, overlaid by the file when one is given.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = file else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("seedgate.db").display()))
    }

    /// Where result files are kept.
    pub fn assets_location(&self) -> Location {
        self.assets
            .url
            .clone()
            .unwrap_or_else(|| Location::Folder(self.data_dir.join("assets")))
    }

    /// The model catalog: the built-in one unless `catalog_file` replaces it.
    pub fn catalog(&self) -> Result<seedgate_contract::Catalog, ConfigError> {
        let Some(path) = &self.catalog_file else {
            return Ok(seedgate_contract::Catalog::builtin());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        seedgate_contract::Catalog::from_toml(&text).map_err(|e| ConfigError::Catalog {
            path: path.clone(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_replica_enforces_its_share_of_a_rate_rounded_up() {
        let mut limits = LimitsConfig::default();
        assert_eq!(limits.share(50, 100), (50, 100));
        limits.replicas = 3;
        assert_eq!(limits.share(50, 100), (17, 34));
        assert_eq!(limits.share(1, 2), (1, 1));
        limits.replicas = 0;
        assert_eq!(limits.share(10, 20), (10, 20));
    }

    #[test]
    fn unknown_config_key_is_rejected() {
        let err = toml::from_str::<Config>("listen = \"127.0.0.1:1\"\nlisten_port = 3\n");
        assert!(err.is_err());
    }

    #[test]
    fn documented_channel_configs_parse() {
        let volc: Config = toml::from_str(include_str!("../../../docs/volcengine.toml")).unwrap();
        assert_eq!(volc.channels.len(), 1);
        assert_eq!(
            volc.channels[0].models["seedance-2.0"],
            "doubao-seedance-2-0-260128"
        );
        let byteplus: Config = toml::from_str(include_str!("../../../docs/byteplus.toml")).unwrap();
        assert_eq!(byteplus.channels.len(), 2);
        assert_eq!(byteplus.channels[0].weight, 3);
        assert_eq!(
            byteplus.channels[0].routing["seedance-2.5"],
            ModelRouting {
                priority: Some(1),
                weight: None
            }
        );
    }

    #[test]
    fn the_documented_vendor_failover_parses_in_priority_order() {
        let vendors: Config = toml::from_str(include_str!("../../../docs/vendors.toml")).unwrap();
        let order: Vec<(&str, u32)> = vendors
            .channels
            .iter()
            .map(|c| (c.provider.as_str(), c.priority))
            .collect();
        assert_eq!(order, [("ark", 0), ("fal", 1), ("replicate", 2)]);
        assert_eq!(
            vendors.channels[1].base_url, "",
            "fal's address is its default"
        );
        // The README shows the same failover.
        let readme = include_str!("../../../README.md");
        let shown = readme
            .split("```toml\n")
            .map(|block| block.split("```").next().unwrap_or_default())
            .find(|block| block.contains("provider = \"fal\""))
            .expect("the README shows a failover configuration");
        let shown: Config = toml::from_str(shown).unwrap();
        let shown: Vec<(&str, u32)> = shown
            .channels
            .iter()
            .map(|c| (c.provider.as_str(), c.priority))
            .collect();
        assert_eq!(shown, order);
    }

    #[test]
    fn assets_stay_in_the_data_dir_unless_a_url_moves_them() {
        let config: Config = toml::from_str("data_dir = \"/var/lib/sg\"\n").unwrap();
        assert_eq!(
            config.assets_location(),
            Location::Folder(PathBuf::from("/var/lib/sg/assets"))
        );
        let config: Config = toml::from_str("[assets]\nurl = \"s3://media/results\"\n").unwrap();
        assert_eq!(
            config.assets_location(),
            Location::S3 {
                bucket: "media".into(),
                prefix: "results".into()
            }
        );
        assert!(toml::from_str::<Config>("[assets]\nurl = \"ftp://x\"\n").is_err());
        // Credentials come from the environment only.
        assert!(toml::from_str::<Config>("[assets]\naws = []\n").is_err());
    }

    #[test]
    fn files_are_kept_thirty_days_unless_configured_and_never_zero() {
        let config = Config::default();
        assert_eq!(config.assets.retention_seconds.get(), 2_592_000);
        let config: Config = toml::from_str("[assets]\nretention_seconds = 86400\n").unwrap();
        assert_eq!(config.assets.retention_seconds.get(), 86_400);
        for zero in ["retention_seconds = 0", "sweep_interval_seconds = 0"] {
            let err = toml::from_str::<Config>(&format!("[assets]\n{zero}\n")).unwrap_err();
            assert!(err.to_string().contains("nonzero"), "{err}");
        }
    }

    #[test]
    fn partial_file_keeps_defaults() {
        let config: Config = toml::from_str("[engine]\nworkers = 1\n").unwrap();
        assert_eq!(config.engine.workers, 1);
        assert_eq!(config.engine.lease_seconds, 30);
        assert_eq!(config.listen.port(), 8080);
    }
}
