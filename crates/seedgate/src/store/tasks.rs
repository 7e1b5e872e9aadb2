//! Task rows: created with their reservation, leased by the engine, finished with their settlement.

use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::ledger::{self, LedgerKind};
use super::webhooks;
use super::{now_ms, Store, StoreError};

/// The engine's state machine (docs/tasks-and-errors.md#statuses). Only the engine moves a task forward, and terminal
/// states never change again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    Queued,
    Submitting,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    Expired,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Submitting => "submitting",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
            TaskState::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "queued" => TaskState::Queued,
            "submitting" => TaskState::Submitting,
            "running" => TaskState::Running,
            "succeeded" => TaskState::Succeeded,
            "failed" => TaskState::Failed,
            "cancelled" => TaskState::Cancelled,
            "expired" => TaskState::Expired,
            other => return Err(StoreError::Corrupt(format!("unknown task state {other}"))),
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled | TaskState::Expired
        )
    }

    /// The state `transition` leads to from this one; None when it may not start here (so a
    /// terminal state never changes again).
    pub fn apply(self, transition: Transition) -> Option<TaskState> {
        transition.from().contains(&self).then(|| transition.to())
    }
}

/// States a worker holds under a lease: they count against a key's and a channel's places.
pub const IN_FLIGHT: &[TaskState] = &[TaskState::Submitting, TaskState::Running];

/// A move of the engine's state machine. The store writes each one as a single `UPDATE`
/// guarded by [`Transition::guard`], so of two workers racing, one wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// A worker takes a queued task to submit it.
    Claim,
    /// A local render starts, or an upstream accepted the submission.
    Start,
    /// Back to the queue after a transient failure.
    Requeue,
    /// Finished and charged.
    Succeed,
    /// Ended by the engine without charge: `Failed`, `Cancelled` (upstream) or `Expired`.
    EndUnpaid(Unpaid),
    /// Cancelled by its owner before anything started.
    CancelQueued,
}

/// How a task may end without charge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unpaid {
    Failed,
    Cancelled,
    Expired,
}

impl Transition {
    /// Where it may start.
    pub fn from(self) -> &'static [TaskState] {
        match self {
            Transition::Claim | Transition::CancelQueued => &[TaskState::Queued],
            Transition::Start => &[TaskState::Submitting],
            Transition::Requeue | Transition::Succeed | Transition::EndUnpaid(_) => IN_FLIGHT,
        }
    }

    /// Where it ends.
    pub fn to(self) -> TaskState {
        match self {
            Transition::Claim => TaskState::Submitting,
            Transition::Start => TaskState::Running,
            Transition::Requeue => TaskState::Queued,
            Transition::Succeed => TaskState::Succeeded,
            Transition::EndUnpaid(Unpaid::Failed) => TaskState::Failed,
            Transition::EndUnpaid(Unpaid::Cancelled) | Transition::CancelQueued => {
                TaskState::Cancelled
            }
            Transition::EndUnpaid(Unpaid::Expired) => TaskState::Expired,
        }
    }

    /// The SQL condition that the row is where this transition may start.
    pub fn guard(self) -> String {
        states_sql(self.from())
    }
}

/// `state IN ('…', …)` for a set of states (our own names, so safe to write into SQL).
fn states_sql(states: &[TaskState]) -> String {
    let names: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
    format!("state IN ({})", names.join(", "))
}

/// The upstream's own phase of a submitted task, as last seen by a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamPhase {
    /// Waiting at the upstream: it can still be withdrawn there.
    Queued,
    Running,
    /// Finished upstream; its result is being copied here.
    Succeeded,
}

impl UpstreamPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamPhase::Queued => "queued",
            UpstreamPhase::Running => "running",
            UpstreamPhase::Succeeded => "succeeded",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "queued" => UpstreamPhase::Queued,
            "running" => UpstreamPhase::Running,
            "succeeded" => UpstreamPhase::Succeeded,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown upstream phase {other}"
                )))
            }
        })
    }
}

/// What clients see of a task, by one rule (docs/tasks-and-errors.md#statuses): `pending` exactly when a cancel now
/// succeeds — queued here with no submission in doubt, or still queued at the upstream — and
/// `processing` when it is being generated (or may be, while a submission is in doubt).
pub fn public_status(
    state: TaskState,
    in_doubt: bool,
    upstream: Option<UpstreamPhase>,
) -> PublicStatus {
    match state {
        TaskState::Queued if !in_doubt => PublicStatus::Pending,
        TaskState::Queued | TaskState::Submitting => PublicStatus::Processing,
        TaskState::Running if upstream == Some(UpstreamPhase::Queued) => PublicStatus::Pending,
        TaskState::Running => PublicStatus::Processing,
        TaskState::Succeeded => PublicStatus::Completed,
        TaskState::Failed | TaskState::Cancelled | TaskState::Expired => PublicStatus::Failed,
    }
}

/// The four statuses clients see (docs/tasks-and-errors.md); a cancelled or expired task is
/// `failed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PublicStatus {
    Pending,
    Processing,
    Completed,
    Failed,
}

impl PublicStatus {
    pub const ALL: [PublicStatus; 4] = [
        PublicStatus::Pending,
        PublicStatus::Processing,
        PublicStatus::Completed,
        PublicStatus::Failed,
    ];

    /// The wire name (the serde name; a store test holds the two together).
    pub fn as_str(self) -> &'static str {
        match self {
            PublicStatus::Pending => "pending",
            PublicStatus::Processing => "processing",
            PublicStatus::Completed => "completed",
            PublicStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// The rows [`public_status`] maps to this status, as SQL (a store test checks that the
    /// two agree on every combination of state, doubt and upstream phase).
    fn sql_condition(self) -> &'static str {
        match self {
            PublicStatus::Pending => {
                "((state = 'queued' AND doubt_channel IS NULL) \
                 OR (state = 'running' AND upstream_phase IS 'queued'))"
            }
            PublicStatus::Processing => {
                "((state = 'queued' AND doubt_channel IS NOT NULL) OR state = 'submitting' \
                 OR (state = 'running' AND upstream_phase IS NOT 'queued'))"
            }
            PublicStatus::Completed => "state = 'succeeded'",
            PublicStatus::Failed => "state IN ('failed', 'cancelled', 'expired')",
        }
    }
}

/// Everything needed to insert a task and reserve its estimated cost in one transaction.
pub struct NewTask {
    pub id: String,
    pub account_id: String,
    pub model: String,
    pub operation: String,
    pub provider: String,
    pub job_json: String,
    /// The small public echo of the request (`request` in the task object).
    pub request_json: String,
    pub reserved_usd_micros: i64,
    pub estimated_tokens: i64,
    /// After this the task is `expired` (and costs nothing) if it has not finished.
    pub deadline_at_ms: i64,
    /// Where to POST the task when it ends.
    pub callback_url: Option<String>,
}

/// How long an idempotency key holds.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// A client's `Idempotency-Key` and the hash of the request it came with.
pub struct IdempotencyKey<'a> {
    pub key: &'a str,
    pub request_hash: &'a [u8],
}

/// A created task, or the original one when the request was a repeat.
pub struct Created {
    pub task: TaskRecord,
    pub replayed: bool,
}

/// A task row as stored.
#[derive(Clone, Debug)]
pub struct TaskRecord {
    pub id: String,
    pub account_id: String,
    pub model: String,
    pub operation: String,
    pub provider: String,
    pub state: TaskState,
    pub request_json: String,
    pub reserved_usd_micros: i64,
    pub estimated_tokens: i64,
    pub usage_tokens: Option<i64>,
    pub cost_usd_micros: Option<i64>,
    pub cost_cny: Option<String>,
    pub result_json: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub attempts: i64,
    pub channel: Option<String>,
    pub upstream_id: Option<String>,
    pub polls: i64,
    pub deadline_at_ms: Option<i64>,
    pub submit_started_at_ms: Option<i64>,
    /// A submission whose outcome was never seen: the channel it went to and when it began.
    pub doubt: Option<(String, i64)>,
    pub upstream_phase: Option<UpstreamPhase>,
    /// When the upstream itself expires the task (what we sent as `execution_expires_after`).
    pub upstream_expires_at_ms: Option<i64>,
    /// The usage the upstream reported, kept even when its result never arrived here.
    pub upstream_usage_tokens: Option<i64>,
    pub result_copy_failures: i64,
    /// Set by [`Store::claim_task`] (not stored): the claim took the task over from a holder
    /// whose lease ran out, so its last step may have half happened.
    pub reclaimed: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub completed_at_ms: Option<i64>,
}

// The job itself (which may carry data: URIs of many MB) is read only by the engine.
const TASK_COLUMNS: &str = "id, account_id, model, operation, provider, state, request, \
    reserved_usd_micros, estimated_tokens, usage_tokens, cost_usd_micros, cost_cny, result, \
    error_code, error_message, attempts, channel, upstream_id, polls, deadline_at_ms, \
    submit_started_at_ms, doubt_channel, doubt_since_ms, upstream_phase, upstream_expires_at_ms, \
    upstream_usage_tokens, result_copy_failures, created_at_ms, updated_at_ms, completed_at_ms";

fn task_from_row(row: &SqliteRow) -> Result<TaskRecord, StoreError> {
    Ok(TaskRecord {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        model: row.try_get("model")?,
        operation: row.try_get("operation")?,
        provider: row.try_get("provider")?,
        state: TaskState::parse(row.try_get::<&str, _>("state")?)?,
        request_json: row.try_get("request")?,
        reserved_usd_micros: row.try_get("reserved_usd_micros")?,
        estimated_tokens: row.try_get("estimated_tokens")?,
        usage_tokens: row.try_get("usage_tokens")?,
        cost_usd_micros: row.try_get("cost_usd_micros")?,
        cost_cny: row.try_get("cost_cny")?,
        result_json: row.try_get("result")?,
        error_code: row.try_get("error_code")?,
        error_message: row.try_get("error_message")?,
        attempts: row.try_get("attempts")?,
        channel: row.try_get("channel")?,
        upstream_id: row.try_get("upstream_id")?,
        polls: row.try_get("polls")?,
        deadline_at_ms: row.try_get("deadline_at_ms")?,
        submit_started_at_ms: row.try_get("submit_started_at_ms")?,
        doubt: row
            .try_get::<Option<String>, _>("doubt_channel")?
            .zip(row.try_get::<Option<i64>, _>("doubt_since_ms")?),
        upstream_phase: row
            .try_get::<Option<&str>, _>("upstream_phase")?
            .map(UpstreamPhase::parse)
            .transpose()?,
        upstream_expires_at_ms: row.try_get("upstream_expires_at_ms")?,
        upstream_usage_tokens: row.try_get("upstream_usage_tokens")?,
        result_copy_failures: row.try_get("result_copy_failures")?,
        reclaimed: false,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        completed_at_ms: row.try_get("completed_at_ms")?,
    })
}

impl TaskRecord {
    pub fn public_status(&self) -> PublicStatus {
        public_status(self.state, self.doubt.is_some(), self.upstream_phase)
    }
}

/// Releases the reservation of a task an `UPDATE … RETURNING account_id, reserved_usd_micros`
/// has just ended; returns its account.
async fn release_reservation(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    row: &SqliteRow,
    task_id: &str,
) -> Result<String, StoreError> {
    let account_id: String = row.try_get("account_id")?;
    let reserved: i64 = row.try_get("reserved_usd_micros")?;
    ledger::append(
        tx,
        &account_id,
        Some(task_id),
        LedgerKind::Release,
        reserved,
    )
    .await?;
    Ok(account_id)
}

/// Which of an account's tasks a list shows: `/v1` pages by cursor (`after`, the id of the
/// last task of the previous page), the Ark surface by `offset`.
#[derive(Default)]
pub struct TaskFilter<'a> {
    pub status: Option<PublicStatus>,
    pub state: Option<TaskState>,
    pub model: Option<&'a str>,
    /// Only these ids (none: all).
    pub ids: &'a [String],
    pub after: Option<&'a str>,
    pub offset: i64,
    pub limit: i64,
}

/// Adds `WHERE` and the filter's conditions, every value bound.
fn push_filter<'a>(
    builder: &mut sqlx::QueryBuilder<'a, sqlx::Sqlite>,
    account_id: &'a str,
    filter: &TaskFilter<'a>,
) {
    builder.push(" WHERE account_id = ").push_bind(account_id);
    if let Some(status) = filter.status {
        builder.push(" AND ").push(status.sql_condition());
    }
    if let Some(state) = filter.state {
        builder.push(" AND state = ").push_bind(state.as_str());
    }
    if let Some(model) = filter.model {
        builder.push(" AND model = ").push_bind(model);
    }
    if !filter.ids.is_empty() {
        builder.push(" AND id IN (");
        let mut ids = builder.separated(", ");
        for id in filter.ids {
            ids.push_bind(id.as_str());
        }
        builder.push(")");
    }
    if let Some(after) = filter.after {
        builder.push(" AND id < ").push_bind(after);
    }
}

/// The outcome of a settlement the engine hands to [`Store::finish_succeeded`].
pub struct Settlement<'a> {
    pub result_json: &'a str,
    pub usage_tokens: i64,
    pub cost_usd_micros: i64,
    pub cost_cny: &'a str,
    /// What the upstream itself reported (None for local renders).
    pub upstream_usage_tokens: Option<i64>,
}

/// Why a task ends uncharged, and what the upstream reported if it finished anyway.
pub struct TaskFailure<'a> {
    pub code: &'a str,
    pub message: &'a str,
    pub upstream_usage_tokens: Option<i64>,
}

/// An upstream task that is now this task's, as [`Store::record_submission`] records it.
pub struct UpstreamSubmission<'a> {
    pub channel: &'a str,
    pub upstream_id: &'a str,
    pub next_poll_at_ms: i64,
    pub upstream_expires_at_ms: i64,
}

/// What a poll of an upstream task saw, recorded with its next poll.
#[derive(Default)]
pub struct PollSeen {
    pub phase: Option<UpstreamPhase>,
    pub usage_tokens: Option<i64>,
    /// The upstream finished but its result could not be copied here this time.
    pub result_copy_failed: bool,
}

impl Store {
    /// Inserts the task and its reservation atomically, refusing when the balance cannot cover
    /// it. With an idempotency key, a repeat of the same request within 24 h returns the
    /// original task and reserves nothing; the same key with another request is refused. The
    /// check and the insert share one write transaction, so concurrent repeats create one task.
    pub async fn create_task(
        &self,
        task: NewTask,
        idempotency: Option<IdempotencyKey<'_>>,
    ) -> Result<Created, StoreError> {
        let mut tx = self.begin_write().await?;
        if let Some(key) = &idempotency {
            let window_start = now_ms() - IDEMPOTENCY_WINDOW_MS;
            let previous = sqlx::query(
                "SELECT request_hash, task_id FROM idempotency_keys \
                 WHERE account_id = ? AND key = ? AND created_at_ms >= ?",
            )
            .bind(&task.account_id)
            .bind(key.key)
            .bind(window_start)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(previous) = previous {
                let hash: Vec<u8> = previous.try_get("request_hash")?;
                if hash != key.request_hash {
                    return Err(StoreError::IdempotencyConflict);
                }
                let task_id: String = previous.try_get("task_id")?;
                let row = sqlx::query(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?"))
                    .bind(&task_id)
                    .fetch_one(&mut *tx)
                    .await?;
                return Ok(Created {
                    task: task_from_row(&row)?,
                    replayed: true,
                });
            }
        }
        let balance = ledger::balance(&mut tx, &task.account_id).await?;
        if balance < task.reserved_usd_micros {
            return Err(StoreError::InsufficientBalance {
                balance_usd_micros: balance,
                required_usd_micros: task.reserved_usd_micros,
            });
        }
        let now = now_ms();
        let row = sqlx::query(&format!(
            "INSERT INTO tasks (id, account_id, model, operation, provider, state, job, request, \
             reserved_usd_micros, estimated_tokens, deadline_at_ms, callback_url, next_attempt_at_ms, \
             created_at_ms, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             RETURNING {TASK_COLUMNS}"
        ))
        .bind(&task.id)
        .bind(&task.account_id)
        .bind(&task.model)
        .bind(&task.operation)
        .bind(&task.provider)
        .bind(TaskState::Queued.as_str())
        .bind(&task.job_json)
        .bind(&task.request_json)
        .bind(task.reserved_usd_micros)
        .bind(task.estimated_tokens)
        .bind(task.deadline_at_ms)
        .bind(&task.callback_url)
        .bind(now)
        .bind(now)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        ledger::append(
            &mut tx,
            &task.account_id,
            Some(&task.id),
            LedgerKind::Reserve,
            -task.reserved_usd_micros,
        )
        .await?;
        if let Some(key) = idempotency {
            // An expired record for the key makes way for the new one.
            sqlx::query(
                "INSERT INTO idempotency_keys (account_id, key, request_hash, task_id, created_at_ms) \
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (account_id, key) DO UPDATE SET \
                 request_hash = excluded.request_hash, task_id = excluded.task_id, created_at_ms = excluded.created_at_ms",
            )
            .bind(&task.account_id)
            .bind(key.key)
            .bind(key.request_hash)
            .bind(&task.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Created {
            task: task_from_row(&row)?,
            replayed: false,
        })
    }

    /// A task as its owner sees it: another account's id is indistinguishable from a missing one.
    pub async fn task_for_account(
        &self,
        account_id: &str,
        id: &str,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE id = ? AND account_id = ?"
        ))
        .bind(id)
        .bind(account_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(task_from_row).transpose()
    }

    pub async fn task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let row = sqlx::query(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(task_from_row).transpose()
    }

    /// Newest first, one page; the caller asks for `limit + 1` rows to learn whether more exist.
    pub async fn list_tasks<'a>(
        &self,
        account_id: &'a str,
        filter: &TaskFilter<'a>,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let mut query = sqlx::QueryBuilder::new(format!("SELECT {TASK_COLUMNS} FROM tasks"));
        push_filter(&mut query, account_id, filter);
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(filter.limit)
            .push(" OFFSET ")
            .push_bind(filter.offset);
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(task_from_row).collect()
    }

    /// How many tasks the filter matches, whatever the page.
    pub async fn count_matching<'a>(
        &self,
        account_id: &'a str,
        filter: &TaskFilter<'a>,
    ) -> Result<i64, StoreError> {
        let mut query = sqlx::QueryBuilder::new("SELECT COUNT(*) FROM tasks");
        push_filter(&mut query, account_id, filter);
        Ok(query.build_query_scalar().fetch_one(&self.pool).await?)
    }

    /// Cancels a task that no provider has started (and none may have: no submission of it is
    /// in doubt), releasing its reservation in the same transaction. Returns the task as it now stands (cancelled or not), or None when unknown.
    pub async fn cancel_queued_task(
        &self,
        account_id: &str,
        id: &str,
    ) -> Result<Option<(TaskRecord, bool)>, StoreError> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let cancel = Transition::CancelQueued;
        let cancelled = sqlx::query(&format!(
            "UPDATE tasks SET state = ?, error_code = 'cancelled', \
             error_message = 'The task was cancelled.', updated_at_ms = ?, completed_at_ms = ? \
             WHERE id = ? AND account_id = ? AND {} AND doubt_channel IS NULL \
             RETURNING {TASK_COLUMNS}",
            cancel.guard()
        ))
        .bind(cancel.to().as_str())
        .bind(now)
        .bind(now)
        .bind(id)
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = cancelled {
            let task = task_from_row(&row)?;
            ledger::append(
                &mut tx,
                account_id,
                Some(id),
                LedgerKind::Release,
                task.reserved_usd_micros,
            )
            .await?;
            webhooks::enqueue(&mut tx, id, TaskState::Cancelled).await?;
            tx.commit().await?;
            return Ok(Some((task, true)));
        }
        drop(tx);
        Ok(self
            .task_for_account(account_id, id)
            .await?
            .map(|task| (task, false)))
    }

    /// Leases one task for `owner`: first one whose previous holder's lease ran out (it died
    /// mid-work), then the oldest queued one (→ `submitting`), then an upstream task due for a
    /// poll. One UPDATE statement each, so a claim is atomic.
    /// A queued task waits while its key already has `max_per_key` (or the key's own limit)
    /// tasks in flight.
    pub async fn claim_task(
        &self,
        owner: &str,
        lease_ms: i64,
        max_per_key: u32,
    ) -> Result<Option<(TaskRecord, String)>, StoreError> {
        let now = now_ms();
        let abandoned = format!(
            "SELECT id FROM tasks WHERE {} AND lease_until_ms < ?1 ORDER BY lease_until_ms LIMIT 1",
            states_sql(IN_FLIGHT)
        );
        for (index, pick) in [
            abandoned.as_str(),
            "SELECT t.id FROM tasks t WHERE t.state = 'queued' AND t.next_attempt_at_ms <= ?1 \
             AND (SELECT k.in_flight < COALESCE(k.max_concurrent_tasks, ?4) \
                  FROM api_keys k WHERE k.id = t.account_id) \
             ORDER BY t.next_attempt_at_ms, t.id LIMIT 1",
            "SELECT id FROM tasks WHERE state = 'running' AND upstream_id IS NOT NULL \
             AND next_poll_at_ms <= ?1 AND lease_until_ms IS NULL ORDER BY next_poll_at_ms LIMIT 1",
        ]
        .into_iter()
        .enumerate()
        {
            // Polls are not attempts: only (re)submissions count towards max_attempts.
            let row = sqlx::query(&format!(
                "UPDATE tasks SET \
                   attempts = attempts + CASE WHEN upstream_id IS NULL THEN 1 ELSE 0 END, \
                   submit_started_at_ms = CASE WHEN {claimable} THEN ?1 ELSE submit_started_at_ms END, \
                   state = CASE WHEN {claimable} THEN ?5 ELSE state END, \
                   lease_owner = ?2, lease_until_ms = ?3, updated_at_ms = ?1 \
                 WHERE id = ({pick}) RETURNING {TASK_COLUMNS}, job",
                claimable = Transition::Claim.guard(),
            ))
            .bind(now)
            .bind(owner)
            .bind(now + lease_ms)
            .bind(max_per_key)
            .bind(Transition::Claim.to().as_str())
            .fetch_optional(&self.writer)
            .await?;
            if let Some(row) = row {
                let mut task = task_from_row(&row)?;
                task.reclaimed = index == 0;
                return Ok(Some((task, row.try_get("job")?)));
            }
        }
        Ok(None)
    }

    /// `submitting` → `running` for work that is now under way (a local render).
    pub async fn mark_running(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        let start = Transition::Start;
        let done = sqlx::query(&format!(
            "UPDATE tasks SET state = ?, updated_at_ms = ? \
             WHERE id = ? AND lease_owner = ? AND {}",
            start.guard()
        ))
        .bind(start.to().as_str())
        .bind(now_ms())
        .bind(id)
        .bind(owner)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the upstream's id for a submitted task in the same statement that marks it
    /// `running` (no longer in doubt), and hands it to the poller. Its upstream phase is
    /// unknown until the first poll, so until then it shows as processing and a cancel is not
    /// attempted. False when this worker no longer holds the task.
    pub async fn record_submission(
        &self,
        id: &str,
        owner: &str,
        submission: &UpstreamSubmission<'_>,
    ) -> Result<bool, StoreError> {
        let start = Transition::Start;
        let done = sqlx::query(&format!(
            "UPDATE tasks SET state = ?, channel = ?, upstream_id = ?, next_poll_at_ms = ?, \
             upstream_phase = NULL, upstream_expires_at_ms = ?, doubt_channel = NULL, \
             doubt_since_ms = NULL, lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = ? \
             WHERE id = ? AND lease_owner = ? AND {}",
            start.guard()
        ))
        .bind(start.to().as_str())
        .bind(submission.channel)
        .bind(submission.upstream_id)
        .bind(submission.next_poll_at_ms)
        .bind(submission.upstream_expires_at_ms)
        .bind(now_ms())
        .bind(id)
        .bind(owner)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Releases a polled task until its next poll, with what the poll saw.
    pub async fn schedule_poll(
        &self,
        id: &str,
        owner: &str,
        next_poll_at_ms: i64,
        seen: &PollSeen,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET next_poll_at_ms = ?, polls = polls + 1, \
             upstream_phase = COALESCE(?, upstream_phase), \
             upstream_usage_tokens = COALESCE(?, upstream_usage_tokens), \
             result_copy_failures = result_copy_failures + ?, lease_owner = NULL, \
             lease_until_ms = NULL, updated_at_ms = ? WHERE id = ? AND lease_owner = ? AND state = 'running'",
        )
        .bind(next_poll_at_ms)
        .bind(seen.phase.map(UpstreamPhase::as_str))
        .bind(seen.usage_tokens)
        .bind(i64::from(seen.result_copy_failed))
        .bind(now_ms())
        .bind(id)
        .bind(owner)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records that a running task has left the upstream's queue (a cancel found it started).
    pub async fn note_upstream_running(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tasks SET upstream_phase = 'running' \
             WHERE id = ? AND state = 'running' AND upstream_phase IS 'queued'",
        )
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Makes a running upstream task due for a poll now (an upstream callback's hint).
    pub async fn poll_soon(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET next_poll_at_ms = MIN(next_poll_at_ms, ?) \
             WHERE id = ? AND state = 'running' AND upstream_id IS NOT NULL",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Upstream tasks in flight per channel, for concurrency limits.
    pub async fn in_flight_by_channel(
        &self,
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT id AS channel, in_flight AS n FROM channel_load WHERE in_flight > 0",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("channel")?, r.try_get("n")?)))
            .collect()
    }

    /// Whether an upstream task already belongs to one of ours (reconciliation after a crash).
    pub async fn upstream_id_known(
        &self,
        channel: &str,
        upstream_id: &str,
    ) -> Result<bool, StoreError> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT id FROM tasks WHERE channel = ? AND upstream_id = ?")
                .bind(channel)
                .bind(upstream_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    /// Claims a place on `channel` for a task about to be submitted there, if the channel has
    /// fewer than `limit` tasks in flight. One statement, so two workers can never both take
    /// the last place. A doubt left by an earlier attempt ends here: the engine takes a place
    /// only after reconciling it.
    pub async fn reserve_channel(
        &self,
        id: &str,
        owner: &str,
        channel: &str,
        limit: u32,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET channel = ?1, doubt_channel = NULL, doubt_since_ms = NULL \
             WHERE id = ?2 AND lease_owner = ?3 AND state = 'submitting' \
             AND COALESCE((SELECT in_flight FROM channel_load WHERE id = ?1), 0) - (channel IS ?1) < ?4",
        )
        .bind(channel)
        .bind(id)
        .bind(owner)
        .bind(limit)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Keeps a lease alive while work continues; false means the lease was lost.
    pub async fn extend_lease(
        &self,
        id: &str,
        owner: &str,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "UPDATE tasks SET lease_until_ms = ? WHERE id = ? AND lease_owner = ? AND {}",
            states_sql(IN_FLIGHT)
        ))
        .bind(now_ms() + lease_ms)
        .bind(id)
        .bind(owner)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a leased task succeeded and settles it: release the reservation, charge the cost,
    /// all in one transaction. False when this worker no longer holds the task.
    pub async fn finish_succeeded(
        &self,
        id: &str,
        owner: &str,
        settlement: Settlement<'_>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let succeed = Transition::Succeed;
        let row = sqlx::query(&format!(
            "UPDATE tasks SET state = ?, result = ?, usage_tokens = ?, cost_usd_micros = ?, \
             cost_cny = ?, upstream_usage_tokens = COALESCE(?, upstream_usage_tokens), lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = ?, completed_at_ms = ? \
             WHERE id = ? AND lease_owner = ? AND {} \
             RETURNING account_id, reserved_usd_micros",
            succeed.guard()
        ))
        .bind(succeed.to().as_str())
        .bind(settlement.result_json)
        .bind(settlement.usage_tokens)
        .bind(settlement.cost_usd_micros)
        .bind(settlement.cost_cny)
        .bind(settlement.upstream_usage_tokens)
        .bind(now)
        .bind(now)
        .bind(id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        let account_id = release_reservation(&mut tx, &row, id).await?;
        ledger::append(
            &mut tx,
            &account_id,
            Some(id),
            LedgerKind::Charge,
            -settlement.cost_usd_micros,
        )
        .await?;
        webhooks::enqueue(&mut tx, id, TaskState::Succeeded).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Ends a leased task without charge — `failed` or `expired` — releasing its whole
    /// reservation in the same transaction. False when this worker no longer holds the task.
    pub async fn finish_unpaid(
        &self,
        id: &str,
        owner: &str,
        ending: Unpaid,
        error: &TaskFailure<'_>,
    ) -> Result<bool, StoreError> {
        self.end_unpaid(id, Some(owner), None, ending, error).await
    }

    pub async fn finish_failed(
        &self,
        id: &str,
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

    /// Cancels a task its upstream has just cancelled (it was still queued there).
    pub async fn cancel_running_task(
        &self,
        account_id: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        self.end_unpaid(
            id,
            None,
            Some(account_id),
            Unpaid::Cancelled,
            &TaskFailure {
                code: "cancelled",
                message: "The task was cancelled.",
                upstream_usage_tokens: None,
            },
        )
        .await
    }

    async fn end_unpaid(
        &self,
        id: &str,
        owner: Option<&str>,
        account_id: Option<&str>,
        ending: Unpaid,
        error: &TaskFailure<'_>,
    ) -> Result<bool, StoreError> {
        let end = Transition::EndUnpaid(ending);
        let state = end.to();
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let row = sqlx::query(&format!(
            "UPDATE tasks SET state = ?, error_code = ?, error_message = ?, \
             upstream_usage_tokens = COALESCE(?, upstream_usage_tokens), lease_owner = NULL, \
             lease_until_ms = NULL, updated_at_ms = ?, completed_at_ms = ? \
             WHERE id = ? AND (? IS NULL OR lease_owner = ?) AND (? IS NULL OR account_id = ?) \
             AND {} RETURNING account_id, reserved_usd_micros",
            end.guard()
        ))
        .bind(state.as_str())
        .bind(error.code)
        .bind(error.message)
        .bind(error.upstream_usage_tokens)
        .bind(now)
        .bind(now)
        .bind(id)
        .bind(owner)
        .bind(owner)
        .bind(account_id)
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        release_reservation(&mut tx, &row, id).await?;
        webhooks::enqueue(&mut tx, id, state).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Hands a task back to the queue after a transient failure, to be retried after `delay_ms`.
    /// `counts_attempt` false gives the attempt back (waiting for capacity is not a failure).
    /// `doubt` names the channel and start of a submission whose outcome was never seen; an
    /// earlier doubt stays until it is reconciled.
    pub async fn requeue(
        &self,
        id: &str,
        owner: &str,
        delay_ms: i64,
        counts_attempt: bool,
        doubt: Option<(&str, i64)>,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let done = sqlx::query(
            &format!(
                "UPDATE tasks SET state = ?, lease_owner = NULL, lease_until_ms = NULL, channel = NULL, \
                 attempts = attempts - CASE WHEN ? THEN 0 ELSE 1 END, \
                 doubt_channel = COALESCE(?, doubt_channel), doubt_since_ms = COALESCE(?, doubt_since_ms), \
                 next_attempt_at_ms = ?, updated_at_ms = ? \
                 WHERE id = ? AND lease_owner = ? AND {}",
                Transition::Requeue.guard()
            ),
        )
        .bind(Transition::Requeue.to().as_str())
        .bind(counts_attempt)
        .bind(doubt.map(|(channel, _)| channel))
        .bind(doubt.map(|(_, since)| since))
        .bind(now + delay_ms)
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Tasks per account (tests prove rejected requests store nothing).
    pub async fn count_tasks(&self, account_id: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE account_id = ?")
                .bind(account_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
