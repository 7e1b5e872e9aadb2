//! The append-only ledger's entry kinds. `api_keys.balance_usd_micros` is a running total kept
//! in the same transaction as every entry, so a balance check costs one row read;
//! `ledger_sum` is the audit that proves the two agree.

use std::collections::HashMap;

use super::{KeyMode, StoreError};
use crate::ids::{AccountId, OrgId};

/// What an entry records. Signs: top-ups and releases add, reserves and charges subtract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerKind {
    TopUp,
    Reserve,
    Release,
    Charge,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::TopUp => "top_up",
            LedgerKind::Reserve => "reserve",
            LedgerKind::Release => "release",
            LedgerKind::Charge => "charge",
        }
    }
}

/// What a key may still commit, as read under the write lock before a group of creates.
#[derive(Clone, Debug)]
pub struct KeyFunds {
    pub mode: KeyMode,
    pub organization_id: OrgId,
    pub limit_usd_micros: Option<i64>,
    pub committed_usd_micros: i64,
    /// A test key's play money; a live key spends its organization's balance.
    pub balance_usd_micros: i64,
}

/// The funds a group of creates draws on, decided one create at a time in arrival order with
/// the checks and refusals of a create made alone: the key's cap first, then the money it
/// spends. Live keys of one organization share its balance.
#[derive(Debug, Default)]
pub struct GroupFunds {
    keys: HashMap<AccountId, KeyFunds>,
    organizations: HashMap<OrgId, i64>,
    /// What the group reserved, per key and per organization (live keys only).
    reserved_by_key: HashMap<AccountId, i64>,
    reserved_by_organization: HashMap<OrgId, i64>,
}

impl GroupFunds {
    pub fn new(keys: HashMap<AccountId, KeyFunds>, organizations: HashMap<OrgId, i64>) -> Self {
        Self {
            keys,
            organizations,
            ..Self::default()
        }
    }

    /// Reserves `usd_micros` for one create of `account`, or says why not (nothing changes).
    pub fn reserve(&mut self, account: &AccountId, usd_micros: i64) -> Result<(), StoreError> {
        let key = self
            .keys
            .get_mut(account)
            .ok_or_else(|| StoreError::Corrupt(format!("no key {account}")))?;
        if let Some(limit) = key.limit_usd_micros {
            if key.committed_usd_micros + usd_micros > limit {
                return Err(StoreError::KeyLimitExceeded {
                    limit_usd_micros: limit,
                    committed_usd_micros: key.committed_usd_micros,
                    required_usd_micros: usd_micros,
                });
            }
        }
        let balance = match key.mode {
            KeyMode::Test => &mut key.balance_usd_micros,
            KeyMode::Live => self
                .organizations
                .get_mut(&key.organization_id)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("no organization {}", key.organization_id))
                })?,
        };
        if *balance < usd_micros {
            return Err(StoreError::InsufficientBalance {
                balance_usd_micros: *balance,
                required_usd_micros: usd_micros,
            });
        }
        *balance -= usd_micros;
        key.committed_usd_micros += usd_micros;
        *self.reserved_by_key.entry(account.clone()).or_default() += usd_micros;
        if key.mode == KeyMode::Live {
            *self
                .reserved_by_organization
                .entry(key.organization_id.clone())
                .or_default() += usd_micros;
        }
        Ok(())
    }

    /// Per key: what it reserved, and whether that comes off its own balance (a test key).
    pub fn key_debits(&self) -> impl Iterator<Item = (&AccountId, i64, bool)> + '_ {
        self.reserved_by_key.iter().map(|(id, reserved)| {
            let own_balance = self
                .keys
                .get(id)
                .is_some_and(|key| key.mode == KeyMode::Test);
            (id, *reserved, own_balance)
        })
    }

    /// Per organization: what its live keys reserved.
    pub fn organization_debits(&self) -> impl Iterator<Item = (&OrgId, i64)> + '_ {
        self.reserved_by_organization
            .iter()
            .map(|(id, reserved)| (id, *reserved))
    }

    pub fn organization_of(&self, account: &AccountId) -> Option<&OrgId> {
        self.keys.get(account).map(|key| &key.organization_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn funds() -> GroupFunds {
        let key = |mode, organization: &str, limit, balance| KeyFunds {
            mode,
            organization_id: OrgId::new(organization),
            limit_usd_micros: limit,
            committed_usd_micros: 0,
            balance_usd_micros: balance,
        };
        GroupFunds::new(
            HashMap::from([
                (
                    AccountId::new("key_test"),
                    key(KeyMode::Test, "org_a", None, 100),
                ),
                (
                    AccountId::new("key_capped"),
                    key(KeyMode::Live, "org_b", Some(50), 0),
                ),
                (
                    AccountId::new("key_live"),
                    key(KeyMode::Live, "org_b", None, 0),
                ),
            ]),
            HashMap::from([(OrgId::new("org_b"), 120)]),
        )
    }

    #[test]
    fn creates_are_decided_in_order_as_if_alone() {
        let mut funds = funds();
        let test = AccountId::new("key_test");
        assert!(funds.reserve(&test, 60).is_ok());
        // The second would overdraw: refused with the balance left, and nothing taken.
        assert!(matches!(
            funds.reserve(&test, 60),
            Err(StoreError::InsufficientBalance {
                balance_usd_micros: 40,
                required_usd_micros: 60
            })
        ));
        assert!(funds.reserve(&test, 40).is_ok());
        let debits: Vec<_> = funds.key_debits().collect();
        assert_eq!(debits, vec![(&test, 100, true)]);
        assert_eq!(funds.organization_debits().count(), 0);
    }

    #[test]
    fn live_keys_share_their_organization_and_keep_their_caps() {
        let mut funds = funds();
        let capped = AccountId::new("key_capped");
        let live = AccountId::new("key_live");
        assert!(funds.reserve(&capped, 50).is_ok());
        assert!(matches!(
            funds.reserve(&capped, 1),
            Err(StoreError::KeyLimitExceeded {
                limit_usd_micros: 50,
                committed_usd_micros: 50,
                required_usd_micros: 1
            })
        ));
        assert!(funds.reserve(&live, 70).is_ok());
        // The organization has nothing left for either key.
        assert!(matches!(
            funds.reserve(&live, 1),
            Err(StoreError::InsufficientBalance {
                balance_usd_micros: 0,
                required_usd_micros: 1
            })
        ));
        let debits: Vec<_> = funds.organization_debits().collect();
        assert_eq!(debits, vec![(&OrgId::new("org_b"), 120)]);
        assert!(funds.key_debits().all(|(_, _, own_balance)| !own_balance));
        assert!(matches!(
            funds.reserve(&AccountId::new("key_gone"), 1),
            Err(StoreError::Corrupt(_))
        ));
    }
}
