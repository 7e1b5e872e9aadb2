//! API keys. A key is also the account: it owns a balance, a ledger and tasks.

use sha2::{Digest, Sha256};

use super::StoreError;
use crate::ids::AccountId;

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

/// An account as the rest of the system sees it; never carries the secret.
#[derive(Clone, Debug)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub key_prefix: String,
    pub mode: KeyMode,
    pub balance_usd_micros: i64,
    pub created_at_ms: i64,
    pub revoked: bool,
    /// This key's own limits; None means the server's default.
    pub requests_per_second: Option<u32>,
    pub max_concurrent_tasks: Option<u32>,
}

/// A freshly created key: the only moment the plaintext exists outside the caller's hands.
pub struct NewKey {
    pub account: Account,
    pub secret: String,
}

/// The stored form of a key: SHA-256 is enough because keys carry ≥ 128 random bits.
pub fn hash_key(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}
