//! Organizations and their API keys. An organization holds the money and a management token;
//! each key (the account that creates and owns tasks) belongs to one. A live key spends its
//! organization's balance, a test key its own play money. A key may carry a spending cap, a
//! model allow-list and an expiry, and is active, inactive or revoked.

use sha2::{Digest, Sha256};

use super::StoreError;
use crate::ids::{AccountId, OrgId};

/// Live keys reach the configured upstream channels; test keys always use the sandbox with play money.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyMode {
    Live,
    Test,
}

impl KeyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyMode::Live => "live",
            KeyMode::Test => "test",
        }
    }

    pub(super) fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "live" => Ok(KeyMode::Live),
            "test" => Ok(KeyMode::Test),
            other => Err(StoreError::Corrupt(format!("unknown key mode {other}"))),
        }
    }
}

/// Whether a key may be used. Revoked is for good; inactive can be switched back on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Inactive,
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Inactive => "inactive",
            KeyStatus::Revoked => "revoked",
        }
    }

    pub(super) fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "active" => Ok(KeyStatus::Active),
            "inactive" => Ok(KeyStatus::Inactive),
            "revoked" => Ok(KeyStatus::Revoked),
            other => Err(StoreError::Corrupt(format!("unknown key status {other}"))),
        }
    }
}

/// A key as the rest of the system sees it; never carries the secret.
#[derive(Clone, Debug)]
pub struct Account {
    pub id: AccountId,
    pub organization_id: OrgId,
    pub name: String,
    pub key_prefix: String,
    pub mode: KeyMode,
    /// What this key can spend: its organization's balance (live) or its play money (test).
    pub balance_usd_micros: i64,
    pub created_at_ms: i64,
    pub status: KeyStatus,
    /// This key's own limits; None means the server's default.
    pub requests_per_second: Option<u32>,
    pub max_concurrent_tasks: Option<u32>,
    /// The spending cap; None is unlimited.
    pub limit_usd_micros: Option<i64>,
    /// What the key has been charged.
    pub used_usd_micros: i64,
    /// Models it may use; empty is every model.
    pub models: Vec<String>,
    pub expires_at_ms: Option<i64>,
    pub last_used_at_ms: Option<i64>,
}

impl Account {
    /// Whether the key has passed its expiry at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }

    /// Whether the allow-list lets this key use `model`.
    pub fn may_use(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|m| m == model)
    }
}

/// An organization with its money: the balance and what has gone in and out of it.
#[derive(Clone, Debug)]
pub struct Organization {
    pub id: OrgId,
    pub name: String,
    pub balance_usd_micros: i64,
    /// Every top-up of the organization (live money).
    pub total_recharge_usd_micros: i64,
    /// Every charge to its live keys.
    pub total_used_usd_micros: i64,
    pub has_management_token: bool,
    pub created_at_ms: i64,
}

/// A freshly created organization: the only moment its management token exists in plain text.
pub struct NewOrganization {
    pub organization: Organization,
    pub management_token: String,
}

/// What a new key is made with.
pub struct KeySpec<'a> {
    pub name: &'a str,
    pub mode: KeyMode,
    /// The organization it joins; None makes a new one named after the key.
    pub organization: Option<&'a OrgId>,
    /// Opening funds: the new organization's balance (live) or the key's play money (test).
    pub opening_balance_usd_micros: i64,
    pub limit_usd_micros: Option<i64>,
    pub models: &'a [String],
    pub expires_at_ms: Option<i64>,
}

impl<'a> KeySpec<'a> {
    /// A key with no cap, allow-list or expiry.
    pub fn plain(name: &'a str, mode: KeyMode, opening_balance_usd_micros: i64) -> Self {
        Self {
            name,
            mode,
            organization: None,
            opening_balance_usd_micros,
            limit_usd_micros: None,
            models: &[],
            expires_at_ms: None,
        }
    }
}

/// A change to a key from its organization; None leaves a field as it is.
#[derive(Debug, Default)]
pub struct KeyUpdate {
    pub name: Option<String>,
    pub status: Option<KeyStatus>,
    pub limit_usd_micros: Option<Option<i64>>,
    pub models: Option<Vec<String>>,
    pub expires_at_ms: Option<Option<i64>>,
}

/// Why a key update was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyUpdateRefused {
    /// A revoked key stays revoked.
    Revoked,
}

/// A freshly created key: the only moment the plaintext exists outside the caller's hands.
pub struct NewKey {
    pub account: Account,
    pub secret: String,
}

/// A new secret: `prefix` and 40 random alphanumerics (≈ 238 bits).
pub fn new_secret(prefix: &str) -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    let random: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    format!("{prefix}{random}")
}

/// The stored form of a key or token: SHA-256 is enough because they carry ≥ 128 random bits.
pub fn hash_key(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}
