//! SQLite, the embedded default: one file beside the server, in WAL mode.
//!
//! SQLite has one writer at a time. Writes go through one connection that the store holds, so
//! they queue in order on the runtime instead of in SQLite's busy handler, which sleeps in
//! growing steps (hundreds of milliseconds under load); reads use a pool of their own and never
//! wait for writes (WAL). One process owns the file: replicas need PostgreSQL. That is also what makes the
//! task cache exact here: no write can happen that this process's store did not make.

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Connection, Executor};

use super::migrations;
use super::sql::{SqlStore, Writer};
use super::taskcache::TaskCache;
use super::StoreError;

// WAL + NORMAL loses nothing when the process dies (kill -9); only an OS crash can drop the
// last commits. That trade is what makes thousands of creates per second possible.
const PRAGMAS: [&str; 4] = [
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA foreign_keys = ON",
];

/// The writer's page cache: 2 MiB (a negative size is in KiB). Every page a write creates
/// enters it, so it grows with the database up to this bound, and only then is the server's
/// memory level: at 8 MiB that took the first quarter hour of a steady four tasks a second
/// (BENCHMARKS.md, "Soak"), at 2 MiB it is the first few minutes. The pages every write walks
/// (the indexes' upper levels and newest leaves) fit many times over; the rest are a read from
/// the operating system's file cache away.
const WRITER_CACHE: &str = "PRAGMA cache_size = -2048";

/// A reader's page cache: 512 KiB. Every commit empties it (in WAL mode a reader starting after
/// a write drops all it cached), so under steady writes a larger one is filled and freed again
/// and again, and the C allocator's per-thread heaps of the readers' threads fragment: at 2 MiB
/// each they grew with the database while the pages held stayed level (BENCHMARKS.md, "What
/// moved the memory"). Reads mostly walk an index to a few rows, within this bound.
const READER_CACHE: &str = "PRAGMA cache_size = -512";

/// Reads by thread: each reader connection runs on its own thread, with its own cache and heap.
/// Four keep a 2-core machine's cores busy with the task cache serving most polls.
const READERS: u32 = 4;

pub(super) async fn connect(url: &str) -> Result<SqlStore, StoreError> {
    connect_checkpointing(url, CHECKPOINTS).await
}

pub(super) async fn connect_checkpointing(
    url: &str,
    checkpoints: Checkpoints,
) -> Result<SqlStore, StoreError> {
    sqlx::any::install_default_drivers();
    // Create the file when missing, unless the URL says how to open it.
    let url = if url.contains('?') {
        url.to_owned()
    } else {
        format!("{url}?mode=rwc")
    };
    // Only the writer commits, so switching its automatic checkpoints off moves every
    // checkpoint to `checkpoint_regularly`. Its page cache is never invalidated by another
    // connection's write, so a larger one keeps the indexes that every write touches in memory
    // (a reader's is emptied by each commit, so theirs are small).
    let mut writer = AnyConnection::connect(&url).await?;
    for pragma in PRAGMAS
        .iter()
        .chain(&["PRAGMA wal_autocheckpoint = 0", WRITER_CACHE])
    {
        writer.execute(*pragma).await?;
    }
    migrations::SQLITE
        .migrator()
        .await?
        .run(&mut writer)
        .await?;
    let writer = Writer::held(writer);
    let reader = AnyPoolOptions::new()
        .max_connections(READERS)
        .min_connections(1)
        // A connection to a local file does not go stale the way a socket does; the check
        // before every use would cost each read a second trip to the connection's thread.
        .test_before_acquire(false)
        .after_connect(|connection, _| {
            Box::pin(async move {
                for pragma in PRAGMAS.iter().chain(&[READER_CACHE]) {
                    connection.execute(*pragma).await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await?;
    let checkpoints = tokio::spawn(checkpoint_regularly(
        reader.clone(),
        writer.clone(),
        checkpoints,
    ));
    // Exact without expiry: every write to the file goes through this process's store.
    let tasks = Arc::new(TaskCache::new(None));
    Ok(SqlStore::new(reader, writer, None, tasks).with_background(checkpoints.abort_handle()))
}

/// How often the write-ahead log is copied back into the database file, and its length past
/// which it is emptied with the writer waiting.
#[derive(Clone, Copy)]
pub(super) struct Checkpoints {
    pub every: Duration,
    pub bound_pages: i64,
}

/// Twice a second; about 64 MiB of 4 KiB pages.
const CHECKPOINTS: Checkpoints = Checkpoints {
    every: Duration::from_millis(500),
    bound_pages: 16_384,
};

/// Past the bound, further passes from a reader copy what the writes appended during the last
/// one, until one has copied at most this many pages: about as many are left for the step that
/// holds the writer.
const LEFT_FOR_THE_WRITER: i64 = 256;
const CATCH_UP_PASSES: u32 = 4;

/// Copies the write-ahead log into the database file from a reader's connection, so the
/// file's fsync never lands inside a commit that a create is waiting for. PASSIVE never blocks
/// the writer or a reader; what it cannot copy yet, the next round does. Under writes that
/// never pause, PASSIVE copies but the log is never found fully copied when a write begins,
/// so it would grow without end. Past the bound, passes from a reader copy what the writes
/// appended during the pass before, until little is left; then a PASSIVE on the writer's own
/// connection, queued between two transactions, copies the rest with nothing written
/// meanwhile, and the next write begins the log again from its start unless a reader is still
/// reading from it. That step holds the writer 1.6–4 ms, mostly its two fsyncs; a RESTART
/// right after the first pass held it 4–10 ms (it copies all the pass left behind and waits,
/// in SQLite's busy handler, for readers to leave the log), twice a second under one
/// connection's creates with the engine on (BENCHMARKS.md, "The writer's pause at each new
/// log"). RESTART is kept for a log that readers never left and that reached four times its
/// bound. The file keeps its length and is written over: truncating it instead (TRUNCATE)
/// held the writer 18–20 ms while the file system freed 64 MiB, every few seconds under steady
/// creates (BENCHMARKS.md, "The create tail").
async fn checkpoint_regularly(reader: AnyPool, writer: Writer, checkpoints: Checkpoints) {
    let mut every = tokio::time::interval(checkpoints.every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(mut log) = checkpoint(&reader).await else {
            continue;
        };
        if log.pages <= checkpoints.bound_pages {
            continue;
        }
        // A pass copies what the writes appended during the one before it.
        for _ in 0..CATCH_UP_PASSES {
            let Some(again) = checkpoint(&reader).await else {
                break;
            };
            let copied = again.copied - log.copied;
            log = again;
            if copied <= LEFT_FOR_THE_WRITER {
                break;
            }
        }
        let mode = if log.pages > checkpoints.bound_pages * 4 {
            "PRAGMA wal_checkpoint(RESTART)"
        } else {
            "PRAGMA wal_checkpoint(PASSIVE)"
        };
        let emptied = async {
            let mut connection = writer.connection().await?;
            sqlx::query(mode).execute(&mut *connection).await?;
            Ok::<_, StoreError>(())
        };
        if let Err(error) = emptied.await {
            tracing::warn!(%error, "copying the rest of the write-ahead log failed");
        }
    }
}

/// The log's length in pages, and how many of them are in the database file.
struct LogPages {
    pages: i64,
    copied: i64,
}

/// A PASSIVE checkpoint from a reader's connection; None when it failed (logged).
async fn checkpoint(reader: &AnyPool) -> Option<LogPages> {
    match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(reader)
        .await
    {
        Ok((_, pages, copied)) => Some(LogPages { pages, copied }),
        Err(error) => {
            tracing::warn!(%error, "checkpoint failed");
            None
        }
    }
}
