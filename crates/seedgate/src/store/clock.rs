//! Whose time a replica keeps: the database's. Leases, claims and due polls are compared in
//! SQL by the database's clock; everything this process stamps or compares itself (deadlines,
//! retry times, the engine's decisions) reads this host's clock corrected by the offset last
//! measured against the database, so a replica whose clock is minutes off neither expires a
//! task early nor puts a retry or a poll off.

use std::sync::atomic::{AtomicI64, Ordering};

use super::{Backend, StoreError};

/// Clocks this close are taken to agree.
const AGREEING_MS: i64 = 1_000;

/// A host clock corrected to the database's.
pub struct DatabaseClock {
    host: fn() -> i64,
    offset_ms: AtomicI64,
}

impl DatabaseClock {
    pub const fn new(host: fn() -> i64) -> Self {
        Self {
            host,
            offset_ms: AtomicI64::new(0),
        }
    }

    /// The database's time as this host now reckons it, in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        (self.host)() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// How far the database's clock runs ahead of the host's, as last measured.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// Reads the database's clock and keeps the difference, taking the host's reading half
    /// way through the round trip. A measure is only as good as its round trip, so clocks
    /// within a second (or the round trip, when longer) of each other are taken to agree: one
    /// machine, or two kept by NTP, and the jitter of measuring never moves a stamp. Returns
    /// the offset kept.
    pub async fn sync(&self, backend: &dyn Backend) -> Result<i64, StoreError> {
        let before = (self.host)();
        let database = backend.database_now_ms().await?;
        let after = (self.host)();
        let measured = database - before.midpoint(after);
        let offset = if measured.abs() <= AGREEING_MS.max(after - before) {
            0
        } else {
            measured
        };
        self.offset_ms.store(offset, Ordering::Relaxed);
        Ok(offset)
    }
}

/// This host's own clock, in Unix milliseconds.
pub fn host_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The process's clock: the host's, corrected to the database's once the store is open.
pub static CLOCK: DatabaseClock = DatabaseClock::new(host_now_ms);
