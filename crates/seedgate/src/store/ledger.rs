//! The append-only ledger's entry kinds. `api_keys.balance_usd_micros` is a running total kept
//! in the same transaction as every entry, so a balance check costs one row read;
//! `ledger_sum` is the audit that proves the two agree.

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
