//! The `seedgate` command: the server and its operator tools (README, "Operating it").

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand};
use rust_decimal::Decimal;
use seedgate::blobs::{AwsEnvironment, Location};
use seedgate::client::{self, Client};
use seedgate::config::Config;
use seedgate::ids::{AccountId, OrgId};
use seedgate::providers::upstream::Upstream;
use seedgate::service::usd;
use seedgate::store::{KeyMode, KeySpec, Store};
use seedgate::telemetry::LogFilter;
use seedgate::Application;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Parser)]
#[command(
    name = "seedgate",
    version,
    about = "One asynchronous HTTP API for the Seedance 2.0 video models"
)]
struct Cli {
    /// Log lines as JSON objects (one per line, for collectors) or for people.
    #[arg(
        long,
        env = "SEEDGATE_LOG_FORMAT",
        global = true,
        default_value = "pretty"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Json,
    Pretty,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and the task engine.
    Serve {
        #[command(flatten)]
        server: ServerArgs,
        /// Address to listen on.
        #[arg(long, env = "SEEDGATE_LISTEN")]
        listen: Option<SocketAddr>,
    },
    /// Create, list and top up organizations, and issue their management tokens.
    Orgs {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        action: OrgsAction,
    },
    /// Create, list, revoke and top up API keys.
    Keys {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Create a video: follows the task with a progress bar, downloads the MP4 and prints its
    /// cost. Ctrl-C offers to cancel the task.
    Generate {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        request: client::Request,
        /// Where to save the video (default: <task id>.mp4, or .mov for a QuickTime result).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Print the final task object alone on stdout instead, for scripts; the video is then
        /// saved only when -o names a file.
        #[arg(long)]
        json: bool,
        /// Open the task's page in the web console as soon as it is created.
        #[arg(long)]
        open: bool,
    },
    /// What a generation would cost: tokens, USD and CNY. Creates nothing.
    Quote {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        request: client::Request,
        #[arg(long)]
        json: bool,
    },
    /// List, show or cancel your tasks.
    Tasks {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        action: TasksAction,
    },
    /// The models the server offers: resolutions, lengths, reference limits and prices.
    Models {
        #[command(flatten)]
        client: ClientArgs,
        /// The Models API's detail objects as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: `seedgate completions bash > /etc/bash_completion.d/seedgate`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Inspect the configured upstream channels.
    Channels {
        #[command(flatten)]
        server: ServerArgs,
        #[command(subcommand)]
        action: ChannelsAction,
    },
}

#[derive(Subcommand)]
enum TasksAction {
    /// Your newest tasks: status, model, age, cost and prompt.
    List {
        #[command(flatten)]
        listing: client::TaskListing,
    },
    /// One task: what was asked, where it stands, its result and cost.
    Get {
        id: String,
        /// The task object as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a pending task.
    Cancel { id: String },
}

/// Where the client commands reach the server, and with which key.
#[derive(Args)]
struct ClientArgs {
    /// The server's base URL.
    #[arg(long, env = "SEEDGATE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Your API key.
    #[arg(long, env = "SEEDGATE_API_KEY", hide_env_values = true)]
    api_key: String,
}

impl ClientArgs {
    fn client(&self) -> Result<Client, String> {
        Client::new(&self.url, &self.api_key)
    }
}

#[derive(Subcommand)]
enum ChannelsAction {
    /// Call each channel's list endpoint with its key: reachable, key accepted, latency.
    Check,
    /// What completed tasks were charged and what their vendors charged, by model and vendor,
    /// with the margin between (docs/vendors.md).
    Report {
        /// First UTC day counted (YYYY-MM-DD); left out, from the beginning.
        #[arg(long, value_parser = utc_day_ms)]
        from: Option<i64>,
        /// First UTC day no longer counted (YYYY-MM-DD); left out, up to now.
        #[arg(long, value_parser = utc_day_ms)]
        until: Option<i64>,
    },
}

/// The start of a UTC day, in Unix milliseconds.
fn utc_day_ms(text: &str) -> Result<i64, String> {
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| format!("{text}: {e} (want YYYY-MM-DD)"))?;
    Ok(day
        .and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp_millis())
}

/// Settings every server-side command shares; each also reads its environment variable.
#[derive(Args)]
struct ServerArgs {
    /// Directory for the SQLite database and result files.
    #[arg(long, env = "SEEDGATE_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL (`sqlite:…`); defaults to `seedgate.db` in the data directory.
    #[arg(long, env = "SEEDGATE_DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// TOML configuration file.
    #[arg(long, env = "SEEDGATE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Where result files are kept: `file:///path`, or `s3://bucket/prefix` reached with the
    /// usual `AWS_*` variables; defaults to `assets/` in the data directory.
    #[arg(long, env = "SEEDGATE_ASSETS_URL", global = true)]
    assets_url: Option<Location>,
}

impl ServerArgs {
    fn load(&self) -> Result<Config, String> {
        let mut config = Config::load(self.config.as_deref()).map_err(|e| e.to_string())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(url) = &self.database_url {
            config.database_url = Some(url.clone());
        }
        if let Some(location) = &self.assets_url {
            config.assets.url = Some(location.clone());
        }
        config.assets.aws = AwsEnvironment::from_env();
        Ok(config)
    }

    async fn store(&self) -> Result<Store, String> {
        let config = self.load()?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| e.to_string())?;
        seedgate::store::connect_with(&config.database_url(), config.database_pool_size)
            .await
            .map_err(|e| e.to_string())
    }
}

#[derive(Subcommand)]
enum OrgsAction {
    /// Create an organization; prints its id, then its management token (shown only once).
    Create {
        #[arg(long)]
        name: String,
        /// Opening balance in USD.
        #[arg(long, default_value = "0")]
        balance_usd: String,
    },
    /// Add funds to an organization.
    TopUp {
        org_id: OrgId,
        #[arg(long)]
        usd: String,
    },
    /// List organizations and their balances (never their tokens).
    List,
    /// Issue a new management token (shown only once); the old one stops working.
    RotateToken { org_id: OrgId },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key and print it (alone, once) on stdout.
    Create {
        #[arg(long)]
        name: String,
        /// The organization the key joins; without it, a new organization named after the key.
        #[arg(long)]
        org: Option<OrgId>,
        /// Opening funds in USD: the new organization's balance, or a test key's play money.
        #[arg(long, default_value = "0")]
        balance_usd: String,
        /// A test key: always served by the sandbox, billed in play money.
        #[arg(long)]
        test: bool,
        /// This key's request rate (default: the server's `limits.requests_per_second`).
        #[arg(long)]
        rps: Option<u32>,
        /// This key's tasks generating at once (default: `engine.max_concurrent_tasks_per_key`).
        #[arg(long)]
        max_concurrent: Option<u32>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke { key_id: AccountId },
    /// Show a key's webhook signing secret, and set or clear its account-wide webhook URL.
    Webhook {
        key_id: AccountId,
        /// Receives every task of this key when it ends (in addition to per-task callback_url).
        #[arg(long, conflicts_with = "clear")]
        url: Option<String>,
        /// Removes the account-wide webhook URL.
        #[arg(long)]
        clear: bool,
    },
    /// Add funds to what a key spends: its organization's balance, or a test key's play money.
    TopUp {
        key_id: AccountId,
        #[arg(long)]
        usd: String,
    },
}

fn usd_to_micros(text: &str) -> Result<i64, String> {
    let amount =
        Decimal::from_str(text).map_err(|_| format!("`{text}` is not an amount in USD"))?;
    if amount.is_sign_negative() || amount.scale() > 6 {
        return Err(format!(
            "`{text}`: use a non-negative amount with at most 6 decimals"
        ));
    }
    (amount * Decimal::from(1_000_000))
        .trunc()
        .to_string()
        .parse()
        .map_err(|_| format!("`{text}` is too large"))
}

/// A top-up amount: positive, in USD.
fn top_up_micros(text: &str) -> Result<i64, String> {
    match usd_to_micros(text)? {
        0 => Err("top-up amount must be positive".into()),
        micros => Ok(micros),
    }
}

fn out(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = LogFilter::new(std::env::var("RUST_LOG").ok().as_deref());
    let logs = tracing_subscriber::registry().with(filter.layer());
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match cli.log_format {
        // Each line carries its spans' fields: the request id, the task id, the provider.
        LogFormat::Json => logs
            .with(lines.json().with_current_span(true).with_span_list(true))
            .init(),
        LogFormat::Pretty => logs
            .with(lines.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())))
            .init(),
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve { server, listen } => {
            let mut config = server.load()?;
            if let Some(listen) = listen {
                config.listen = listen;
            }
            serve(config).await
        }
        Command::Migrate { server } => {
            server.store().await?;
            out("database is up to date");
            Ok(())
        }
        Command::Orgs { server, action } => orgs(server.store().await?, action).await,
        Command::Keys { server, action } => keys(server.store().await?, action).await,
        Command::Channels {
            server,
            action: ChannelsAction::Check,
        } => check_channels(server.load()?).await,
        Command::Channels {
            server,
            action: ChannelsAction::Report { from, until },
        } => {
            let config = server.load()?;
            let store = server.store().await?;
            let charges = store
                .vendor_charges(from, until)
                .await
                .map_err(|e| e.to_string())?;
            report_costs(&seedgate::costs::vendor_report(&charges, &config.channels));
            Ok(())
        }
        Command::Generate {
            client,
            request,
            output,
            json,
            open,
        } => {
            client
                .client()?
                .generate(&request, output, json, open)
                .await
        }
        Command::Quote {
            client,
            request,
            json,
        } => client.client()?.quote(&request, json).await,
        Command::Tasks { client, action } => {
            let client = client.client()?;
            match action {
                TasksAction::List { listing } => client.list_tasks(&listing).await,
                TasksAction::Get { id, json } => client.get_task(&id, json).await,
                TasksAction::Cancel { id } => client.cancel_task(&id).await,
            }
        }
        Command::Models { client, json } => client.client()?.models(json).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "seedgate",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

fn report_costs(lines: &[seedgate::costs::VendorLine]) {
    let usd = seedgate::task_view::usd;
    out("MODEL              VENDOR      TASKS  PRICED       TOKENS   CHARGED_USD  VENDOR_COST_USD    MARGIN_USD  MARGIN_%  COMPUTE_S");
    for line in lines {
        // The margin's share of what the priced tasks were charged.
        let priced_charge = line.margin_usd_micros + line.vendor_cost_usd_micros;
        let share = if priced_charge > 0 {
            (rust_decimal::Decimal::from(line.margin_usd_micros * 100)
                / rust_decimal::Decimal::from(priced_charge))
            .round_dp(1)
            .to_string()
        } else {
            "-".to_owned()
        };
        out(&format!(
            "{:<18} {:<10} {:>6} {:>7} {:>12} {:>13} {:>16} {:>13} {:>9} {:>10.1}",
            line.model,
            line.vendor,
            line.tasks,
            line.priced,
            line.tokens,
            usd(line.charged_usd_micros),
            usd(line.vendor_cost_usd_micros),
            usd(line.margin_usd_micros),
            share,
            line.compute_ms as f64 / 1000.0
        ));
    }
}

async fn check_channels(config: Config) -> Result<(), String> {
    let upstream = Upstream::new(
        &config.channels,
        config.engine.breaker_failures,
        std::time::Duration::from_secs(config.engine.breaker_cooldown_seconds),
        config.limits.replicas,
        std::sync::Arc::default(),
    )
    .map_err(|e| e.to_string())?;
    if !upstream.has_channels() {
        out("no channels configured: test keys are served by the sandbox, live keys by nothing");
        return Ok(());
    }
    out("CHANNEL          REACHABLE  AUTH  LATENCY_MS  DETAIL");
    let mut all_ok = true;
    for check in upstream.check_channels().await {
        all_ok &= check.reachable && check.auth_ok;
        out(&format!(
            "{:<16} {:<10} {:<5} {:>10}  {} ({})",
            check.channel,
            if check.reachable { "yes" } else { "no" },
            if check.auth_ok { "ok" } else { "fail" },
            check.latency.as_millis(),
            check.detail,
            check.base_url
        ));
    }
    if all_ok {
        Ok(())
    } else {
        Err("some channels failed the check".into())
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let app = Application::build(config)
        .await
        .map_err(|e| e.to_string())?;
    let addr = app.local_addr().map_err(|e| e.to_string())?;
    if let Some(key) = &app.dev_key {
        out(&format!(
            "Created a development API key (test mode, {} USD of play money). It is shown only once:\n\n    {}\n",
            Decimal::new(key.account.balance_usd_micros, 6).normalize(),
            key.secret
        ));
    }
    out(&app.routing);
    tracing::info!(%addr, routing = %app.routing, "seedgate listening");
    app.run(true, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

async fn orgs(store: Store, action: OrgsAction) -> Result<(), String> {
    match action {
        OrgsAction::Create { name, balance_usd } => {
            let created = store
                .create_organization(&name, usd_to_micros(&balance_usd)?)
                .await
                .map_err(|e| e.to_string())?;
            out(created.organization.id.as_str());
            out(&created.management_token);
        }
        OrgsAction::TopUp {
            org_id,
            usd: amount,
        } => {
            let balance = store
                .top_up_organization(&org_id, top_up_micros(&amount)?)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no organization with id {org_id}"))?;
            out(&format!("{org_id} balance: {} USD", usd(balance)));
        }
        OrgsAction::List => {
            out("ID                                  NAME                   BALANCE_USD  MANAGEMENT_TOKEN");
            for o in store
                .list_organizations()
                .await
                .map_err(|e| e.to_string())?
            {
                out(&format!(
                    "{:<35} {:<19} {:>14}  {}",
                    o.id,
                    o.name,
                    usd(o.balance_usd_micros),
                    if o.has_management_token {
                        "issued"
                    } else {
                        "none"
                    }
                ));
            }
        }
        OrgsAction::RotateToken { org_id } => {
            let token = store
                .rotate_management_token(&org_id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no organization with id {org_id}"))?;
            out(&token);
        }
    }
    Ok(())
}

async fn keys(store: Store, action: KeysAction) -> Result<(), String> {
    match action {
        KeysAction::Create {
            name,
            org,
            balance_usd,
            test,
            rps,
            max_concurrent,
        } => {
            let mode = if test { KeyMode::Test } else { KeyMode::Live };
            let key = store
                .create_key(&KeySpec {
                    organization: org.as_ref(),
                    ..KeySpec::plain(&name, mode, usd_to_micros(&balance_usd)?)
                })
                .await
                .map_err(|e| e.to_string())?;
            if rps.is_some() || max_concurrent.is_some() {
                store
                    .set_key_limits(&key.account.id, rps, max_concurrent)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            out(&key.secret);
        }
        KeysAction::List => {
            out("ID                                  ORGANIZATION                        NAME                MODE  PREFIX        BALANCE_USD    STATUS");
            for a in store.list_keys().await.map_err(|e| e.to_string())? {
                out(&format!(
                    "{:<35} {:<35} {:<19} {:<5} {:<13} {:>14} {}",
                    a.id,
                    a.organization_id,
                    a.name,
                    a.mode.as_str(),
                    a.key_prefix,
                    usd(a.balance_usd_micros),
                    a.status.as_str()
                ));
            }
        }
        KeysAction::Revoke { key_id } => {
            if !store.revoke_key(&key_id).await.map_err(|e| e.to_string())? {
                return Err(format!("no active key with id {key_id}"));
            }
            out(&format!("revoked {key_id}"));
        }
        KeysAction::Webhook { key_id, url, clear } => {
            if let Some(url) = &url {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err("the webhook URL must be http(s)".into());
                }
            }
            if (url.is_some() || clear)
                && !store
                    .set_webhook_url(&key_id, url.as_deref())
                    .await
                    .map_err(|e| e.to_string())?
            {
                return Err(format!("no key with id {key_id}"));
            }
            if store
                .account(&key_id)
                .await
                .map_err(|e| e.to_string())?
                .is_none()
            {
                return Err(format!("no key with id {key_id}"));
            }
            let secret = store
                .webhook_secret(&key_id)
                .await
                .map_err(|e| e.to_string())?;
            out(&secret);
        }
        KeysAction::TopUp {
            key_id,
            usd: amount,
        } => {
            let balance = store
                .top_up(&key_id, top_up_micros(&amount)?)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no key with id {key_id}"))?;
            out(&format!("{key_id} balance: {} USD", usd(balance)));
        }
    }
    Ok(())
}
