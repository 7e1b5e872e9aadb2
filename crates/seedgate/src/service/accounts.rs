//! API keys as their holders use them: which key a bearer secret is, how fast it may call,
//! what it can spend and what it has spent.

use std::sync::Arc;
use std::time::Instant;

use seedgate_contract::{ApiError, ErrorCode};

use super::internal;
use crate::config::LimitsConfig;
use crate::keycache::KeyCache;
use crate::limits::{Decision, RateLimiter};
use crate::management::recent_days;
use crate::store::usage::UsageTotals;
use crate::store::{now_ms, Account, KeyStatus, Store};

/// How stale a key's `last_used_at` may get: it is written at most this often per key, so
/// busy keys do not turn every request into a write.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

pub struct AccountService {
    pub(super) store: Store,
    /// Keys recently looked up (`[limits] key_cache_ms`). Shared with the management service,
    /// which empties it when it changes a key.
    pub(super) keys: Arc<KeyCache>,
    pub(super) limiter: RateLimiter,
    pub(super) limits: LimitsConfig,
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidApiKey, message)
}

impl AccountService {
    /// The key a bearer secret belongs to, when it may be used now: an unknown, revoked or
    /// switched-off key is `invalid_api_key`, one past its expiry `expired_api_key`.
    pub async fn authenticate(&self, secret: &str) -> Result<Arc<Account>, ApiError> {
        let key = self
            .keys
            .key(&self.store, secret)
            .await
            .map_err(internal)?
            .ok_or_else(|| unauthorized("Invalid or revoked API key."))?;
        let account = &key.account;
        let now = now_ms();
        match account.status {
            KeyStatus::Active => {}
            KeyStatus::Inactive => {
                return Err(unauthorized(
                    "This API key is inactive; its organization can switch it back on.",
                ))
            }
            KeyStatus::Revoked => return Err(unauthorized("Invalid or revoked API key.")),
        }
        if account.expired(now) {
            return Err(ApiError::new(
                ErrorCode::ExpiredApiKey,
                "This API key has expired; its organization can extend it or make a new one.",
            ));
        }
        if key.should_note_use(now, LAST_USED_RESOLUTION_MS) {
            // Off the request path: a lost update only makes `last_used_at` a little older.
            let store = self.store.clone();
            let id = account.id.clone();
            tokio::spawn(async move {
                if let Err(e) = store.note_key_used(&id, now).await {
                    tracing::warn!(error = %e, "recording a key's last use failed");
                }
            });
        }
        Ok(Arc::clone(account))
    }

    /// Counts one request against the key's rate: its own, or the default.
    pub fn admit(&self, account: &Account) -> Decision {
        let limits = &self.limits;
        let (rate, burst) = match account.requests_per_second {
            // A key's own rate comes with a burst of two seconds' worth.
            Some(rate) => limits.share(rate, rate.saturating_mul(2)),
            None => limits.share(limits.requests_per_second, limits.burst),
        };
        self.limiter.check(&account.id, rate, burst, Instant::now())
    }

    /// The key as it stands: the authenticated one may come from the key cache, and money is
    /// read as it is now.
    pub async fn current(&self, key: Arc<Account>) -> Result<Account, ApiError> {
        Ok(match self.store.account(&key.id).await.map_err(internal)? {
            Some(account) => account,
            None => Arc::unwrap_or_clone(key),
        })
    }

    /// What the key was charged over the last `days` UTC days, today included, and when the
    /// first of them began.
    pub async fn usage(
        &self,
        account: &Account,
        days: i64,
    ) -> Result<(UsageTotals, i64), ApiError> {
        let (filter, first_day_ms) = recent_days(days, now_ms())?;
        let totals = self
            .store
            .charge_totals(&account.id, &filter)
            .await
            .map_err(internal)?;
        Ok((totals, first_day_ms))
    }
}
