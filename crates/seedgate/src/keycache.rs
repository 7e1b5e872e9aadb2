//! API keys looked up once and then trusted from memory for `[limits] key_cache_ms`, so a
//! status poll does not spend a database read on a key it saw a moment ago.
//!
//! The delay is the price: a key revoked, switched off or changed elsewhere (another replica,
//! the CLI) is still accepted here until its entry expires. A change made through this
//! replica's management API takes effect here at once. Unknown secrets are remembered too,
//! so a client hammering with a bad key does not reach the database on every request. Money is
//! never read from here: reservations and caps are checked by the database when spent.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::store::{Account, Store, StoreError};

/// Most keys held at once; beyond this the least used are dropped and read again.
const CAPACITY: u64 = 100_000;

/// A key as last read, and when this replica last recorded its use.
pub struct CachedKey {
    pub account: Arc<Account>,
    last_noted_ms: AtomicI64,
}

impl CachedKey {
    /// Whether this request should record the key's use: at most once per `resolution_ms`
    /// per replica, whoever else notes it.
    pub fn should_note_use(&self, now_ms: i64, resolution_ms: i64) -> bool {
        let last = self.last_noted_ms.load(Ordering::Relaxed);
        last + resolution_ms <= now_ms
            && self
                .last_noted_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

pub struct KeyCache {
    /// By secret; None is a secret the store does not know.
    entries: Option<moka::sync::Cache<String, Option<Arc<CachedKey>>>>,
}

impl KeyCache {
    /// `ttl` zero turns the cache off: every request reads its key.
    pub fn new(ttl: Duration) -> Self {
        let entries = (!ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl)
                .build()
        });
        Self { entries }
    }

    pub async fn key(
        &self,
        store: &Store,
        secret: &str,
    ) -> Result<Option<Arc<CachedKey>>, StoreError> {
        if let Some(found) = self.entries.as_ref().and_then(|e| e.get(secret)) {
            return Ok(found);
        }
        let key = store.account_by_secret(secret).await?.map(|account| {
            Arc::new(CachedKey {
                last_noted_ms: AtomicI64::new(account.last_used_at_ms.unwrap_or(i64::MIN / 2)),
                account: Arc::new(account),
            })
        });
        if let Some(entries) = &self.entries {
            entries.insert(secret.to_owned(), key.clone());
        }
        Ok(key)
    }

    /// After this replica changed a key: every later request reads keys afresh.
    pub fn forget_all(&self) {
        if let Some(entries) = &self.entries {
            entries.invalidate_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AccountId, OrgId};
    use crate::store::{KeyMode, KeyStatus};

    fn cached(last_used_at_ms: Option<i64>) -> CachedKey {
        CachedKey {
            last_noted_ms: AtomicI64::new(last_used_at_ms.unwrap_or(i64::MIN / 2)),
            account: Arc::new(Account {
                id: AccountId::new("key_1"),
                organization_id: OrgId::new("org_1"),
                name: "k".into(),
                key_prefix: "sg_test_abcd".into(),
                mode: KeyMode::Test,
                balance_usd_micros: 0,
                created_at_ms: 0,
                status: KeyStatus::Active,
                requests_per_second: None,
                max_concurrent_tasks: None,
                limit_usd_micros: None,
                used_usd_micros: 0,
                models: Vec::new(),
                expires_at_ms: None,
                last_used_at_ms,
            }),
        }
    }

    #[test]
    fn use_is_noted_once_per_resolution() {
        let key = cached(None);
        assert!(key.should_note_use(1_000, 60_000));
        assert!(!key.should_note_use(30_000, 60_000));
        assert!(!key.should_note_use(60_999, 60_000));
        assert!(key.should_note_use(61_000, 60_000));
        let recent = cached(Some(50_000));
        assert!(!recent.should_note_use(100_000, 60_000));
        assert!(recent.should_note_use(110_000, 60_000));
    }
}
