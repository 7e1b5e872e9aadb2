//! SQLite, the embedded default: one file beside the server, in WAL mode.
//!
//! SQLite has one writer at a time. Writes go through a pool of one connection, so they queue
//! in order on the runtime instead of in SQLite's busy handler, which sleeps in growing steps
//! (hundreds of milliseconds under load); reads use a pool of their own and never wait for
//! writes (WAL). One process owns the file: replicas need PostgreSQL.

use sqlx::any::AnyPoolOptions;
use sqlx::Executor;

use super::sql::{Dialect, SqlStore};
use super::StoreError;

/// The database's clock in milliseconds (the process's own: one machine holds both).
pub(super) const NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

// WAL + NORMAL loses nothing when the process dies (kill -9); only an OS crash can drop the
// last commits. That trade is what makes thousands of creates per second possible.
const PRAGMAS: [&str; 4] = [
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA foreign_keys = ON",
];

/// The SQLite schema's history, applied in order.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub(super) async fn connect(url: &str) -> Result<SqlStore, StoreError> {
    sqlx::any::install_default_drivers();
    // Create the file when missing, unless the URL says how to open it.
    let url = if url.contains('?') {
        url.to_owned()
    } else {
        format!("{url}?mode=rwc")
    };
    let options = |max: u32| {
        AnyPoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .after_connect(|connection, _| {
                Box::pin(async move {
                    for pragma in PRAGMAS {
                        connection.execute(pragma).await?;
                    }
                    Ok(())
                })
            })
    };
    let writer = options(1).connect(&url).await?;
    MIGRATOR.run(&writer).await?;
    let reader = options(8).connect(&url).await?;
    Ok(SqlStore::new(reader, writer, Dialect::Sqlite, None))
}
