//! The management API's use cases: an organization, by its management token, runs its API
//! keys and reads what each was charged. The rules of its requests live in `crate::management`.

use std::sync::Arc;
use std::time::Instant;

use seedgate_contract::{ApiError, Catalog, ErrorCode};

use super::internal;
use crate::config::LimitsConfig;
use crate::ids::{AccountId, OrgId};
use crate::keycache::KeyCache;
use crate::limits::{Decision, RateLimiter};
use crate::management::{parse_key_update, parse_new_key, report_filter, ReportQuery};
use crate::store::usage::{UsageItem, UsageTotals};
use crate::store::{
    now_ms, Account, KeyMode, KeySpec, KeyUpdateRefused, NewKey, Organization, Store,
};

pub struct ManagementService {
    pub(super) store: Store,
    /// What a key's allow-list may name.
    pub(super) catalog: Arc<Catalog>,
    /// The API keys' cache, emptied whenever a key changes here.
    pub(super) keys: Arc<KeyCache>,
    /// Management API requests, per organization.
    pub(super) limiter: RateLimiter<OrgId>,
    pub(super) limits: LimitsConfig,
}

fn key_not_found() -> ApiError {
    ApiError::new(ErrorCode::ApiKeyNotFound, "API key not found.")
}

impl ManagementService {
    /// The organization a management token belongs to; `invalid_api_key` for any other.
    pub async fn authenticate(&self, token: &str) -> Result<Organization, ApiError> {
        self.store
            .organization_by_token(token)
            .await
            .map_err(internal)?
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidApiKey, "Invalid management token."))
    }

    /// Counts one management request against the organization's rate (the default key rate).
    pub fn admit(&self, organization: &Organization) -> Decision {
        let limits = &self.limits;
        let (rate, burst) = limits.share(limits.requests_per_second, limits.burst);
        self.limiter
            .check(&organization.id, rate, burst, Instant::now())
    }

    /// One page of the organization's keys, oldest first, and how many it has.
    pub async fn keys(
        &self,
        organization: &Organization,
        page: i64,
        limit: i64,
    ) -> Result<(Vec<Account>, i64), ApiError> {
        self.store
            .organization_keys(&organization.id, (page - 1) * limit, limit)
            .await
            .map_err(internal)
    }

    /// Creates a live key of the organization from a create request; its secret is in the
    /// answer only.
    pub async fn create_key(
        &self,
        organization: &Organization,
        body: &[u8],
    ) -> Result<NewKey, ApiError> {
        let request = parse_new_key(&self.catalog, body, now_ms())?;
        self.store
            .create_key(&KeySpec {
                name: &request.name,
                mode: KeyMode::Live,
                organization: Some(&organization.id),
                opening_balance_usd_micros: 0,
                limit_usd_micros: request.limit_usd_micros,
                models: &request.models,
                expires_at_ms: request.expires_at_ms,
            })
            .await
            .map_err(internal)
    }

    /// Applies an update request to one of the organization's keys; the key as it now stands.
    pub async fn update_key(
        &self,
        organization: &Organization,
        key_id: &AccountId,
        body: &[u8],
    ) -> Result<Account, ApiError> {
        let update = parse_key_update(&self.catalog, body, now_ms())?;
        let updated = self
            .store
            .update_key(&organization.id, key_id, &update)
            .await
            .map_err(internal)?;
        // Whatever changed (status, cap, models, expiry) holds on this replica from the next
        // request; on the others within `[limits] key_cache_ms`.
        self.keys.forget_all();
        match updated {
            None => Err(key_not_found()),
            Some(Ok(account)) => Ok(account),
            Some(Err(KeyUpdateRefused::Revoked)) => Err(ApiError::new(
                ErrorCode::ApiKeyRevoked,
                "This key is revoked, and a revoked key stays revoked; create a new one.",
            )),
        }
    }

    /// One of the organization's keys, and the totals of its charges the query matches.
    pub async fn report(
        &self,
        organization: &Organization,
        key_id: &AccountId,
        query: &ReportQuery,
    ) -> Result<(Account, UsageTotals), ApiError> {
        let filter = report_filter(query)?;
        let account = self
            .store
            .organization_key(&organization.id, key_id)
            .await
            .map_err(internal)?
            .ok_or_else(key_not_found)?;
        let totals = match &filter {
            Some(filter) => self
                .store
                .charge_totals(&account.id, filter)
                .await
                .map_err(internal)?,
            None => UsageTotals::default(),
        };
        Ok((account, totals))
    }

    /// [`ManagementService::report`] with one page of the charges themselves, newest first.
    pub async fn charges(
        &self,
        organization: &Organization,
        key_id: &AccountId,
        query: &ReportQuery,
        page: i64,
        limit: i64,
    ) -> Result<(Account, UsageTotals, Vec<UsageItem>), ApiError> {
        let (account, totals) = self.report(organization, key_id, query).await?;
        let items = match report_filter(query)? {
            Some(filter) if totals.requests() > 0 => self
                .store
                .charges(&account.id, &filter, (page - 1) * limit, limit)
                .await
                .map_err(internal)?,
            _ => Vec::new(),
        };
        Ok((account, totals, items))
    }
}
