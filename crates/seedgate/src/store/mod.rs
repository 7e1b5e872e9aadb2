//! Durable state behind traits split by concern: tasks ([`TaskStore`]), organizations, keys and
//! their ledger ([`AccountStore`]), usage reports ([`UsageReports`]) and the webhook outbox
//! ([`WebhookOutbox`]). The rest of the system
//! holds a [`Store`] and never sees a database type.
//!
//! Two backends implement them: SQLite (`sqlite/`, the embedded default, one process) and
//! PostgreSQL (`postgres/`, any number of replicas). Each has its own migrations, connection
//! setup and the statements where the engines differ (row locks, the clock); the statements
//! they share are written once in `sql/` over sqlx's `Any` driver, so a rule is never kept in
//! two copies that could drift.
//!
//! Correctness never rests on a single writer. Every task transition is one
//! `UPDATE … WHERE <its guard>`; balances, idempotency keys, key and channel places are each
//! taken by one conditional statement or a constraint; claims lock the row they take
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL). Two replicas racing for the same task, place or
//! key therefore leave one winner, whichever backend holds the rows.

pub mod clock;
mod keys;
mod ledger;
pub mod materials;
mod migrations;
pub mod postgres;
mod sql;
pub mod sqlite;
mod taskcache;
mod tasks;
pub mod usage;
mod webhooks;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::ids::{AccountId, ChannelId, MaterialGroupId, MaterialId, OrgId, TaskId};
use crate::lifecycle::Move;
use materials::{
    AssetFilter, AssetUpdate, GroupFilter, GroupRefused, GroupUpdate, MaterialAsset, MaterialGroup,
    NewAsset, NewGroup, Processed,
};
use usage::{UsageFilter, UsageItem, UsageTotals, VendorCharge};

pub use keys::{
    hash_key, Account, KeyMode, KeySpec, KeyStatus, KeyUpdate, KeyUpdateRefused, NewKey,
    NewOrganization, Organization,
};
pub use ledger::{GroupFunds, KeyFunds, LedgerKind};
pub use taskcache::TaskChange;
#[cfg(test)]
pub(crate) use tasks::sample_task;
pub use tasks::{
    public_status, Created, IdempotencyKey, Lease, NewTask, PollSeen, PublicStatus, ScheduledPoll,
    Settlement, TaskFailure, TaskFilter, TaskRecord, TaskState, Transition, Unpaid, UpstreamPhase,
    UpstreamSubmission, IDEMPOTENCY_WINDOW_MS, IN_FLIGHT,
};
pub use webhooks::{event_for, Delivery, DeliveryRecord};

/// Failures of the storage layer; the API maps them to 5xx (our fault) except the business outcomes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(
        "insufficient balance: {balance_usd_micros} available, {required_usd_micros} required"
    )]
    InsufficientBalance {
        balance_usd_micros: i64,
        required_usd_micros: i64,
    },
    #[error(
        "key spending cap reached: {committed_usd_micros} of {limit_usd_micros} committed, \
         {required_usd_micros} more required"
    )]
    KeyLimitExceeded {
        limit_usd_micros: i64,
        committed_usd_micros: i64,
        required_usd_micros: i64,
    },
    #[error("no organization {0}")]
    UnknownOrganization(OrgId),
    #[error("idempotency key reused with a different request")]
    IdempotencyConflict,
    /// The shared transaction of a group of creates failed; none of them was stored. Each
    /// create of the group gets the one error, and with it whether the database was down.
    #[error("group commit failed: {0}")]
    GroupCommit(Arc<StoreError>),
    #[error("the writer of creates has stopped")]
    WriterStopped,
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("unsupported database URL (expected sqlite:… or postgres://…): {0}")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// Whether the database could not be reached or written (down, restarting, failing over,
    /// out of disk or connections, locked past the wait): worth waiting for, and no fault of
    /// the request or the data.
    pub fn is_unavailable(&self) -> bool {
        let e = match self {
            StoreError::Database(e) => e,
            StoreError::GroupCommit(e) => return e.is_unavailable(),
            _ => return false,
        };
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| unavailable_code(&code)),
            _ => false,
        }
    }
}

/// A database error code that means the database, not the statement, is the trouble.
/// PostgreSQL's are five-character SQLSTATEs: connection exceptions (`08…`), insufficient
/// resources such as a full disk or no connections left (`53…`), a server shutting down or
/// starting (`57P01`–`57P03`), a read-only standby (`25006`). SQLite's are numbers whose low
/// byte is the primary code: busy (5), locked (6), read-only (8), I/O error (10), full (13),
/// cannot open (14).
fn unavailable_code(code: &str) -> bool {
    // SQLite's extended codes have at most four digits.
    if code.len() == 5 {
        return code.starts_with("08")
            || code.starts_with("53")
            || ["57P01", "57P02", "57P03", "25006"].contains(&code);
    }
    code.parse::<u32>()
        .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 8 | 10 | 13 | 14))
}

#[cfg(test)]
mod unavailable_tests {
    use std::sync::Arc;

    use super::{unavailable_code, StoreError};

    #[test]
    fn a_failed_group_commit_keeps_whether_the_database_was_down() {
        let down = StoreError::Database(sqlx::Error::PoolTimedOut);
        assert!(StoreError::GroupCommit(Arc::new(down)).is_unavailable());
        let broken = StoreError::Corrupt("a row".into());
        assert!(!StoreError::GroupCommit(Arc::new(broken)).is_unavailable());
        assert!(!StoreError::WriterStopped.is_unavailable());
    }

    #[test]
    fn only_codes_that_mean_the_database_is_down_or_full_are_waited_for() {
        for code in [
            "08006", "57P01", "57P03", "53100", "53300", "25006", "13", "5", "266", "10",
        ] {
            assert!(unavailable_code(code), "{code}");
        }
        // A broken statement, a constraint, a type: the request's or the data's own fault.
        for code in ["23505", "42P01", "22P02", "40001", "19", "2067", "1"] {
            assert!(!unavailable_code(code), "{code}");
        }
    }
}

/// Milliseconds since the Unix epoch, on the database's clock ([`clock`]): the one unit and
/// the one clock every row's times use.
pub fn now_ms() -> i64 {
    clock::CLOCK.now_ms()
}

/// Tasks: created with their reservation, leased by the engine, finished with their settlement.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Inserts the task and its reservation atomically, refusing when the balance cannot cover
    /// it. With an idempotency key, a repeat of the same request within 24 h returns the
    /// original task and reserves nothing; the same key with another request is refused.
    /// Concurrent repeats create one task.
    async fn create_task(
        &self,
        task: NewTask,
        idempotency: Option<IdempotencyKey<'_>>,
    ) -> Result<Created, StoreError>;

    /// A task as its owner sees it: another account's id is indistinguishable from a missing one.
    async fn task_for_account(
        &self,
        account_id: &AccountId,
        id: &TaskId,
    ) -> Result<Option<Arc<TaskRecord>>, StoreError>;

    /// The job a task was made from, as stored at create (JSON); `None` for an unknown task,
    /// and empty once the sweep has deleted the task's files, which takes the job with them.
    async fn task_job(&self, id: &TaskId) -> Result<Option<String>, StoreError>;

    /// Hears of every change to a task from now on: this process's writes, and on PostgreSQL
    /// every replica's.
    fn task_changes(&self) -> tokio::sync::broadcast::Receiver<TaskChange>;

    /// The tasks waiting for a worker, every key's, oldest first.
    async fn queued_task_ids(&self) -> Result<Vec<TaskId>, StoreError>;

    /// Shared rather than copied: a status poll reads it from the task cache.
    async fn task(&self, id: &TaskId) -> Result<Option<Arc<TaskRecord>>, StoreError>;

    /// Newest first, one page; the caller asks for `limit + 1` rows to learn whether more exist.
    async fn list_tasks(
        &self,
        account_id: &AccountId,
        filter: &TaskFilter<'_>,
    ) -> Result<Vec<TaskRecord>, StoreError>;

    /// How many tasks the filter matches, whatever the page.
    async fn count_matching(
        &self,
        account_id: &AccountId,
        filter: &TaskFilter<'_>,
    ) -> Result<i64, StoreError>;

    /// Cancels a task that no provider has started (and none may have: no submission of it is
    /// in doubt), releasing its reservation in the same transaction. Returns the task as it
    /// now stands and whether this call cancelled it, or None when unknown.
    async fn cancel_queued_task(
        &self,
        account_id: &AccountId,
        id: &TaskId,
    ) -> Result<Option<(TaskRecord, bool)>, StoreError>;

    /// Leases one task for `owner`, with its job: first one whose previous holder's lease ran
    /// out (it died mid-work), then the oldest queued one (→ `submitting`). A queued task waits
    /// while its key already has `max_per_key` (or the key's own limit) tasks in flight.
    /// Leases run on the database's clock. Upstream tasks due for a poll are leased many at a
    /// time by [`TaskStore::claim_polls`].
    async fn claim_task(
        &self,
        owner: &str,
        lease_ms: i64,
        max_per_key: u32,
    ) -> Result<Option<(TaskRecord, String)>, StoreError>;

    /// [`TaskStore::claim_task`] without looking for abandoned leases first: for a worker that
    /// has looked for them a moment ago.
    async fn claim_queued_task(
        &self,
        owner: &str,
        lease_ms: i64,
        max_per_key: u32,
    ) -> Result<Option<(TaskRecord, String)>, StoreError>;

    /// `submitting` → `running` for work that is now under way (a local render).
    async fn mark_running(&self, id: &TaskId, owner: &str) -> Result<bool, StoreError>;

    /// Records the upstream's id for a submitted task in the same statement that marks it
    /// `running` (no longer in doubt), and hands it to the poller. Its upstream phase is
    /// unknown until the first poll, so until then it shows as processing and a cancel is not
    /// attempted. False when this worker no longer holds the task.
    async fn record_submission(
        &self,
        id: &TaskId,
        owner: &str,
        submission: &UpstreamSubmission<'_>,
    ) -> Result<bool, StoreError>;

    /// Releases a polled task until its next poll, with what the poll saw.
    async fn schedule_poll(
        &self,
        id: &TaskId,
        owner: &str,
        next_poll_at_ms: i64,
        seen: &PollSeen,
    ) -> Result<bool, StoreError>;

    /// Takes up to `limit` upstream tasks of `channel` due for a poll, with their jobs: those
    /// an upstream callback flagged first, then the most overdue. Taking them moves their next
    /// poll `lease_ms` ahead, so no one else takes them meanwhile and a poller that dies leaves
    /// them due again then; the tasks' own rows are not written. `polls` on each is the
    /// number of polls so far.
    async fn claim_polls(
        &self,
        channel: &ChannelId,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<(TaskRecord, String)>, StoreError>;

    /// Sets the next poll of tasks still under way upstream, and the phase of those that left
    /// the upstream's queue, in a few statements for the lot. A callback's flag set meanwhile
    /// is kept. Returns how many schedules were set.
    async fn schedule_polls(&self, polls: &[ScheduledPoll]) -> Result<u64, StoreError>;

    /// Leases a running upstream task for `owner`, to act on what a poll found (settle it, end
    /// it, read it alone). False when another holds it or it is no longer running.
    async fn lease_polled(
        &self,
        id: &TaskId,
        owner: &str,
        lease_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Records that a running task has left the upstream's queue (a cancel found it started).
    async fn note_upstream_running(&self, id: &TaskId) -> Result<(), StoreError>;

    /// Flags a running upstream task for a poll ahead of all others (an upstream callback's
    /// hint).
    async fn poll_soon(&self, id: &TaskId) -> Result<bool, StoreError>;

    /// Upstream tasks in flight per channel, for concurrency limits.
    async fn in_flight_by_channel(&self) -> Result<HashMap<ChannelId, i64>, StoreError>;

    /// Whether an upstream task already belongs to one of ours (reconciliation after a crash).
    async fn upstream_id_known(
        &self,
        channel: &ChannelId,
        upstream_id: &str,
    ) -> Result<bool, StoreError>;

    /// Claims a place on `channel` for a task about to be submitted there, if the channel has
    /// fewer than `limit` tasks in flight (a task keeps the place it holds). One statement
    /// under the channel's row lock, so two workers can never both take the last place. A
    /// doubt left by an earlier attempt ends here: the engine takes a place only after
    /// reconciling it.
    async fn reserve_channel(
        &self,
        id: &TaskId,
        owner: &str,
        channel: &ChannelId,
        limit: u32,
    ) -> Result<bool, StoreError>;

    /// Keeps a lease alive while work continues; false means the lease was lost.
    async fn extend_lease(
        &self,
        id: &TaskId,
        owner: &str,
        lease_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Marks a leased task succeeded and settles it: release the reservation, charge the cost,
    /// queue its webhooks, all in one transaction. False when this worker no longer holds it.
    async fn finish_succeeded(
        &self,
        id: &TaskId,
        owner: &str,
        settlement: Settlement<'_>,
    ) -> Result<bool, StoreError>;

    /// Ends a leased task without charge (`failed`, `cancelled` upstream or `expired`),
    /// releasing its whole reservation in the same transaction. False when this worker no
    /// longer holds the task.
    async fn finish_unpaid(
        &self,
        id: &TaskId,
        owner: &str,
        ending: Unpaid,
        error: &TaskFailure<'_>,
    ) -> Result<bool, StoreError>;

    async fn finish_failed(
        &self,
        id: &TaskId,
        owner: &str,
        code: &str,
        message: &str,
    ) -> Result<bool, StoreError> {
        let error = TaskFailure {
            code,
            message,
            upstream_usage_tokens: None,
        };
        self.finish_unpaid(id, owner, Unpaid::Failed, &error).await
    }

    /// Applies a move the lifecycle decided for a task `lease` holds; false when the lease
    /// is no longer this one (another worker moved the task first).
    async fn apply(&self, lease: &Lease<'_>, step: &Move) -> Result<bool, StoreError> {
        let (id, owner) = (lease.task_id, lease.owner);
        match step {
            Move::Requeue {
                delay_ms,
                counts_attempt,
                doubt,
                ..
            } => {
                let doubt = doubt.as_ref().map(|(channel, since)| (channel, *since));
                self.requeue(id, owner, *delay_ms, *counts_attempt, doubt)
                    .await
            }
            Move::Start => self.mark_running(id, owner).await,
            Move::RecordSubmission {
                channel,
                upstream_id,
                vendor,
                next_poll_at_ms,
                upstream_expires_at_ms,
            } => {
                let submission = UpstreamSubmission {
                    channel,
                    upstream_id,
                    vendor,
                    next_poll_at_ms: *next_poll_at_ms,
                    upstream_expires_at_ms: *upstream_expires_at_ms,
                };
                self.record_submission(id, owner, &submission).await
            }
            Move::SchedulePoll { at_ms, seen } => self.schedule_poll(id, owner, *at_ms, seen).await,
            Move::Succeed {
                result_json,
                usage_tokens,
                cost_usd_micros,
                cost_cny,
                upstream,
            } => {
                let settlement = Settlement {
                    result_json,
                    usage_tokens: *usage_tokens,
                    cost_usd_micros: *cost_usd_micros,
                    cost_cny,
                    upstream: *upstream,
                };
                self.finish_succeeded(id, owner, settlement).await
            }
            Move::EndUnpaid {
                ending,
                code,
                message,
                upstream_usage_tokens,
            } => {
                let failure = TaskFailure {
                    code,
                    message,
                    upstream_usage_tokens: *upstream_usage_tokens,
                };
                self.finish_unpaid(id, owner, *ending, &failure).await
            }
        }
    }

    /// Cancels a task its upstream has just cancelled (it was still queued there).
    async fn cancel_running_task(
        &self,
        account_id: &AccountId,
        id: &TaskId,
    ) -> Result<bool, StoreError>;

    /// Hands a task back to the queue after a transient failure, to be retried after
    /// `delay_ms`. `counts_attempt` false gives the attempt back (waiting for capacity is not a
    /// failure). `doubt` names the channel and start of a submission whose outcome was never
    /// seen; an earlier doubt stays until it is reconciled.
    async fn requeue(
        &self,
        id: &TaskId,
        owner: &str,
        delay_ms: i64,
        counts_attempt: bool,
        doubt: Option<(&ChannelId, i64)>,
    ) -> Result<bool, StoreError>;

    /// Leases up to `limit` tasks whose files are due for deletion — ended before
    /// `ended_before_ms`, not yet swept — for `lease_ms`, oldest first. A leased task is
    /// skipped by every other sweeper (on PostgreSQL also while the lease is being taken), so
    /// replicas sweeping at once take different tasks, and one whose sweeper died is taken
    /// again once its lease runs out.
    async fn claim_files_to_sweep(
        &self,
        ended_before_ms: i64,
        limit: i64,
        lease_ms: i64,
    ) -> Result<Vec<TaskId>, StoreError>;

    /// Records that an ended task's files are deleted and drops its stored job (which holds
    /// its inputs as sent); false when that was already recorded.
    async fn mark_files_swept(&self, id: &TaskId) -> Result<bool, StoreError>;

    /// Tasks per account (tests prove rejected requests store nothing).
    async fn count_tasks(&self, account_id: &AccountId) -> Result<i64, StoreError>;
}

/// Organizations, their API keys (the accounts) and the append-only ledger.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates an organization with an opening balance (recorded as a `top_up`) and a
    /// management token, returned this once.
    async fn create_organization(
        &self,
        name: &str,
        opening_balance_usd_micros: i64,
    ) -> Result<NewOrganization, StoreError>;

    /// Issues a new management token; the old one stops working. None for an unknown
    /// organization.
    async fn rotate_management_token(&self, id: &OrgId) -> Result<Option<String>, StoreError>;

    /// The organization a presented management token belongs to, if any.
    async fn organization_by_token(&self, token: &str) -> Result<Option<Organization>, StoreError>;

    async fn organization(&self, id: &OrgId) -> Result<Option<Organization>, StoreError>;

    async fn list_organizations(&self) -> Result<Vec<Organization>, StoreError>;

    /// Adds funds; returns the new balance, or None for an unknown organization.
    async fn top_up_organization(
        &self,
        id: &OrgId,
        usd_micros: i64,
    ) -> Result<Option<i64>, StoreError>;

    /// The sum of every ledger entry moving an organization's balance: must always equal it.
    async fn organization_ledger_sum(&self, id: &OrgId) -> Result<i64, StoreError>;

    /// Creates a key, in a new organization unless the spec names one.
    async fn create_key(&self, spec: &KeySpec<'_>) -> Result<NewKey, StoreError>;

    /// One page of an organization's keys, oldest first, and how many it has.
    async fn organization_keys(
        &self,
        organization: &OrgId,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<Account>, i64), StoreError>;

    /// A key of this organization; another organization's key is indistinguishable from a
    /// missing one.
    async fn organization_key(
        &self,
        organization: &OrgId,
        id: &AccountId,
    ) -> Result<Option<Account>, StoreError>;

    /// Applies an organization's change to one of its keys. None for a key it does not have.
    async fn update_key(
        &self,
        organization: &OrgId,
        id: &AccountId,
        update: &KeyUpdate,
    ) -> Result<Option<Result<Account, KeyUpdateRefused>>, StoreError>;

    /// Records that a key was used at `at_ms` (never moving the time back).
    async fn note_key_used(&self, id: &AccountId, at_ms: i64) -> Result<(), StoreError>;

    /// The key a presented secret belongs to, whatever its status.
    async fn account_by_secret(&self, secret: &str) -> Result<Option<Account>, StoreError>;

    async fn account(&self, id: &AccountId) -> Result<Option<Account>, StoreError>;

    async fn list_keys(&self) -> Result<Vec<Account>, StoreError>;

    async fn count_keys(&self) -> Result<i64, StoreError>;

    /// Sets (or with None clears) a key's own limits; false for an unknown key.
    async fn set_key_limits(
        &self,
        id: &AccountId,
        requests_per_second: Option<u32>,
        max_concurrent_tasks: Option<u32>,
    ) -> Result<bool, StoreError>;

    /// Revokes a key for good; returns false when no such unrevoked key exists.
    async fn revoke_key(&self, id: &AccountId) -> Result<bool, StoreError>;

    /// Adds funds to what a key spends (its organization's balance, or a test key's play
    /// money); returns the new balance, or None for an unknown key.
    async fn top_up(&self, id: &AccountId, usd_micros: i64) -> Result<Option<i64>, StoreError>;

    /// The sum of every ledger entry moving the money a key spends: must always equal its
    /// balance.
    async fn ledger_sum(&self, account_id: &AccountId) -> Result<i64, StoreError>;

    /// A task's ledger entries as (kind, signed amount), oldest first: the audit trail.
    async fn ledger_entries_for_task(
        &self,
        task_id: &TaskId,
    ) -> Result<Vec<(String, i64)>, StoreError>;

    /// Number of ledger entries of an account (tests use it to prove nothing was written).
    async fn ledger_entries_for_account(&self, account_id: &AccountId) -> Result<i64, StoreError>;

    /// The account's webhook signing secret, created on first use.
    async fn webhook_secret(&self, account_id: &AccountId) -> Result<String, StoreError>;

    /// Sets (or clears) the account-wide webhook endpoint; false for an unknown key.
    async fn set_webhook_url(
        &self,
        account_id: &AccountId,
        url: Option<&str>,
    ) -> Result<bool, StoreError>;
}

/// Webhook deliveries: rows queued in the transaction that ends a task, then leased and
/// retried by the notifier until delivered or out of attempts.
#[async_trait]
pub trait WebhookOutbox: Send + Sync {
    /// Leases the next due delivery.
    async fn claim_delivery(
        &self,
        owner: &str,
        lease_ms: i64,
    ) -> Result<Option<Delivery>, StoreError>;

    /// Records an attempt: delivered, retried at `retry_at_ms`, or (None) given up.
    async fn record_delivery(
        &self,
        id: i64,
        owner: &str,
        delivered: bool,
        status: Option<u16>,
        error: Option<&str>,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StoreError>;

    async fn deliveries_for_task(
        &self,
        task_id: &TaskId,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
}

/// What keys have been charged, for the management API.
#[async_trait]
pub trait UsageReports: Send + Sync {
    /// One page of a key's charges, newest first.
    async fn charges(
        &self,
        account_id: &AccountId,
        filter: &UsageFilter<'_>,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<UsageItem>, StoreError>;

    /// Every charge of a key the filter matches, summed by model and by day.
    async fn charge_totals(
        &self,
        account_id: &AccountId,
        filter: &UsageFilter<'_>,
    ) -> Result<UsageTotals, StoreError>;

    /// Every task an upstream completed between `from_ms` and `until_ms` (either open), of
    /// every account.
    async fn vendor_charges(
        &self,
        from_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> Result<Vec<VendorCharge>, StoreError>;
}

/// The material library: groups and assets of an organization. Another organization's group
/// or asset is indistinguishable from a missing one.
#[async_trait]
pub trait MaterialStore: Send + Sync {
    async fn create_group(&self, group: &NewGroup<'_>) -> Result<MaterialGroup, StoreError>;

    async fn group(
        &self,
        organization: &OrgId,
        id: &MaterialGroupId,
    ) -> Result<Option<MaterialGroup>, StoreError>;

    /// One page, newest first.
    async fn list_groups(
        &self,
        organization: &OrgId,
        filter: &GroupFilter<'_>,
    ) -> Result<Vec<MaterialGroup>, StoreError>;

    /// None for a group the organization does not have, or one already deleted.
    async fn update_group(
        &self,
        organization: &OrgId,
        id: &MaterialGroupId,
        update: &GroupUpdate,
    ) -> Result<Option<MaterialGroup>, StoreError>;

    /// Marks a group and its assets deleted in one transaction; returns the assets whose files
    /// are to be deleted, or None for a group the organization does not have.
    async fn delete_group(
        &self,
        organization: &OrgId,
        id: &MaterialGroupId,
    ) -> Result<Option<Vec<MaterialId>>, StoreError>;

    /// Stores a new asset, PROCESSING and leased to its creator.
    async fn create_asset(&self, asset: &NewAsset<'_>) -> Result<MaterialAsset, StoreError>;

    /// [`MaterialStore::create_asset`] for an asset that may name a group: the group is checked
    /// (the organization's, in the asset's project, not deleted) in the transaction that
    /// inserts the asset, holding the group's row, so a group deleted meanwhile never ends up
    /// with a live asset. An asset naming no group is stored as it is.
    async fn create_asset_in_group(
        &self,
        asset: &NewAsset<'_>,
    ) -> Result<Result<MaterialAsset, GroupRefused>, StoreError>;

    async fn asset(
        &self,
        organization: &OrgId,
        id: &MaterialId,
    ) -> Result<Option<MaterialAsset>, StoreError>;

    /// An asset whoever owns it: for the engine, whose task was checked against its owner
    /// when it was created.
    async fn material(&self, id: &MaterialId) -> Result<Option<MaterialAsset>, StoreError>;

    /// One page, newest first.
    async fn list_assets(
        &self,
        organization: &OrgId,
        filter: &AssetFilter<'_>,
    ) -> Result<Vec<MaterialAsset>, StoreError>;

    /// None for an asset the organization does not have, or one deleted. A new source or type
    /// makes it PROCESSING again, leased to the updater for `lease_ms`.
    async fn update_asset(
        &self,
        organization: &OrgId,
        id: &MaterialId,
        update: &AssetUpdate,
        lease_ms: i64,
    ) -> Result<Option<MaterialAsset>, StoreError>;

    /// Marks an asset deleted; returns it, or None for an asset the organization does not have.
    async fn delete_asset(
        &self,
        organization: &OrgId,
        id: &MaterialId,
    ) -> Result<Option<MaterialAsset>, StoreError>;

    /// Leases a PROCESSING asset whose processor's lease ran out (it died mid-way).
    async fn claim_unprocessed_asset(
        &self,
        lease_ms: i64,
    ) -> Result<Option<MaterialAsset>, StoreError>;

    /// Records how processing of `source_url` ended; None when the asset is no longer
    /// processing that source (deleted, or given another meanwhile).
    async fn finish_asset(
        &self,
        id: &MaterialId,
        source_url: &str,
        outcome: &Processed,
    ) -> Result<Option<MaterialAsset>, StoreError>;
}

/// A whole backend: the concerns above plus what the server itself keeps.
#[async_trait]
pub trait Backend: TaskStore + AccountStore + UsageReports + MaterialStore + WebhookOutbox {
    /// Whether the database answers; backs `/readyz`.
    async fn ping(&self) -> bool;

    /// The database's own clock, in Unix milliseconds.
    async fn database_now_ms(&self) -> Result<i64, StoreError>;

    /// Whether the database takes a write (a full disk refuses one while reads still work);
    /// backs `/readyz`.
    async fn ping_write(&self) -> bool;

    /// Reads a named setting (e.g. the asset-signing secret).
    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError>;

    /// Stores `value` under `name` unless one is there already, and returns the stored value,
    /// so concurrent first starts (of one replica or many) agree on one secret.
    async fn setting_or_insert(&self, name: &str, value: &str) -> Result<String, StoreError>;

    /// What the metrics report from the database: tasks not yet ended by model and state, the
    /// webhook backlog, and the money totals.
    async fn figures(&self) -> Result<crate::telemetry::StoreFigures, StoreError>;

    /// Wakes `wake` whenever any process sharing this database queues new work. A no-op where
    /// only this process can queue work (SQLite): the service wakes the engine itself.
    async fn announce_work_to(&self, wake: Arc<Notify>) -> Result<(), StoreError>;
}

/// The store the server holds: cheap to clone, whatever the backend.
pub type Store = Arc<dyn Backend>;

/// Opens the database named by `url` (`sqlite:…` or `postgres://…`), creating it if needed,
/// and applies pending migrations.
pub async fn connect(url: &str) -> Result<Store, StoreError> {
    connect_with(url, crate::config::DEFAULT_DATABASE_POOL_SIZE).await
}

/// [`connect`], with at most `pool_size` connections to PostgreSQL (SQLite keeps its own
/// writer and readers); the database's `max_connections` bounds replicas × this.
pub async fn connect_with(url: &str, pool_size: u32) -> Result<Store, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::connect(url, pool_size).await?))
    } else {
        Err(StoreError::UnsupportedUrl(redact_url(url)))
    }
}

/// A database URL fit for an error message or a log: the password is replaced.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((credentials, host)) => {
                let user = credentials.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests;
