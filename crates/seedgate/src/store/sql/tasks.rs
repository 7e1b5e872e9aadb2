//! Task rows: every transition one guarded `UPDATE`, every settlement one transaction.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};

use super::accounts::append_ledger;
use super::creates::{padded_to_power_of_two, placeholders, Grouped, Idempotency};
use super::guards::{
    guard, leased_update, public_status_condition, states_sql, task_state, transition_update,
    upstream_phase,
};
use super::outbox::enqueue_deliveries;
use super::writer::WriteTransaction;
use super::{sql, Dialect, SqlStore};
use crate::ids::{AccountId, ChannelId, TaskId};
use crate::store::{
    now_ms, Created, IdempotencyKey, LedgerKind, NewTask, PollSeen, ScheduledPoll, Settlement,
    StoreError, TaskChange, TaskFailure, TaskFilter, TaskRecord, TaskState, TaskStore, Transition,
    Unpaid, UpstreamPhase, UpstreamSubmission, IN_FLIGHT,
};

/// How soon a poll schedule whose task's submission is not recorded yet is looked at again.
const UNSUBMITTED_RECHECK_MS: i64 = 1_000;

// The job itself (which may carry data: URIs of many MB) is read only by the engine.
const TASK_COLUMNS: &str = "id, account_id, model, operation, provider, state, request, \
    reserved_usd_micros, estimated_tokens, usage_tokens, cost_usd_micros, cost_cny, result, \
    error_code, error_message, attempts, channel, upstream_id, polls, deadline_at_ms, \
    submit_started_at_ms, doubt_channel, doubt_since_ms, upstream_phase, upstream_expires_at_ms, \
    upstream_usage_tokens, upstream_compute_ms, upstream_cost_usd_micros, result_copy_failures, \
    files_swept_at_ms, created_at_ms, updated_at_ms, completed_at_ms, request_id";

fn task_from_row(row: &AnyRow) -> Result<TaskRecord, StoreError> {
    Ok(TaskRecord {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        model: row.try_get("model")?,
        operation: row.try_get("operation")?,
        provider: row.try_get("provider")?,
        state: task_state(row.try_get::<&str, _>("state")?)?,
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
            .try_get::<Option<ChannelId>, _>("doubt_channel")?
            .zip(row.try_get::<Option<i64>, _>("doubt_since_ms")?),
        upstream_phase: row
            .try_get::<Option<&str>, _>("upstream_phase")?
            .map(upstream_phase)
            .transpose()?,
        upstream_expires_at_ms: row.try_get("upstream_expires_at_ms")?,
        upstream_usage_tokens: row.try_get("upstream_usage_tokens")?,
        upstream_compute_ms: row.try_get("upstream_compute_ms")?,
        upstream_cost_usd_micros: row.try_get("upstream_cost_usd_micros")?,
        result_copy_failures: row.try_get("result_copy_failures")?,
        files_swept_at_ms: row.try_get("files_swept_at_ms")?,
        reclaimed: false,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        completed_at_ms: row.try_get("completed_at_ms")?,
        request_id: row.try_get("request_id")?,
    })
}

/// Releases the reservation of a task an `UPDATE … RETURNING account_id, reserved_usd_micros`
/// has just ended; returns its account.
async fn release_reservation(
    tx: &mut WriteTransaction,
    row: &AnyRow,
    task_id: &TaskId,
) -> Result<AccountId, StoreError> {
    let account_id: AccountId = row.try_get("account_id")?;
    let reserved: i64 = row.try_get("reserved_usd_micros")?;
    append_ledger(
        tx,
        &account_id,
        Some(task_id),
        LedgerKind::Release,
        reserved,
    )
    .await?;
    Ok(account_id)
}

/// PostgreSQL text cannot hold NUL, so no stored id, model or cursor contains one: a lookup by
/// such a value matches nothing, and is answered without asking the database (which would
/// refuse the value rather than find nothing).
fn unmatchable(values: &[&str]) -> bool {
    values.iter().any(|value| value.contains('\0'))
}

/// A value a list filter binds.
enum FilterValue<'a> {
    Text(&'a str),
    Number(i64),
}

/// `WHERE` and the filter's conditions with numbered placeholders, and the values to bind in
/// their order.
fn filter_sql<'a>(
    account_id: &'a AccountId,
    filter: &TaskFilter<'a>,
) -> Option<(String, Vec<FilterValue<'a>>)> {
    let mut values = vec![FilterValue::Text(account_id.as_str())];
    let mut sql = String::from(" WHERE account_id = $1");
    let mut bind = |sql: &mut String, value: FilterValue<'a>| {
        values.push(value);
        sql.push_str(&format!("${}", values.len()));
    };
    if let Some(status) = filter.status {
        sql.push_str(" AND ");
        sql.push_str(public_status_condition(status));
    }
    if let Some(state) = filter.state {
        sql.push_str(" AND state = ");
        bind(&mut sql, FilterValue::Text(state.as_str()));
    }
    if let Some(model) = filter.model {
        sql.push_str(" AND model = ");
        bind(&mut sql, FilterValue::Text(model));
    }
    if !filter.ids.is_empty() {
        sql.push_str(" AND id IN (");
        for (n, id) in filter.ids.iter().enumerate() {
            if n > 0 {
                sql.push_str(", ");
            }
            bind(&mut sql, FilterValue::Text(id.as_str()));
        }
        sql.push(')');
    }
    if let Some(after) = filter.after {
        sql.push_str(" AND id < ");
        bind(&mut sql, FilterValue::Text(after.as_str()));
    }
    if let Some(since) = filter.updated_after_ms {
        sql.push_str(" AND updated_at_ms > ");
        bind(&mut sql, FilterValue::Number(since));
    }
    let texts: Vec<&str> = values
        .iter()
        .filter_map(|value| match value {
            FilterValue::Text(text) => Some(*text),
            FilterValue::Number(_) => None,
        })
        .collect();
    (!unmatchable(&texts)).then_some((sql, values))
}

fn bind_filter<'q>(
    mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    values: Vec<FilterValue<'q>>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    for value in values {
        query = match value {
            FilterValue::Text(text) => query.bind(text),
            FilterValue::Number(n) => query.bind(n),
        };
    }
    query
}

/// `update` of one task (`id_param` its id) and `insert` of rows selected `FROM @updated`, the
/// task's row as the update left it, so the insert happens only when the update did: one
/// statement on PostgreSQL; on SQLite, which has no writes in `WITH`, a list to send between
/// BEGIN and COMMIT, whose insert reads the row back when the update changed it.
fn update_then_insert(dialect: Dialect, update: &str, id_param: &str, insert: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!(
            "{update}; {}",
            insert.replace(
                "@updated",
                &format!("tasks WHERE id = {id_param} AND changes() = 1")
            )
        ),
        Dialect::Postgres => format!(
            "WITH updated AS ({update} RETURNING *) {}",
            insert.replace("@updated", "updated")
        ),
    }
}

/// Records a submission and schedules the task's first poll; returns the task's id when its
/// lease still held.
fn submission_statement(dialect: Dialect) -> String {
    let update = transition_update(
        Transition::Start,
        "channel = $1, upstream_id = $2, next_poll_at_ms = $3, upstream_phase = NULL, \
         upstream_expires_at_ms = $4, doubt_channel = NULL, doubt_since_ms = NULL, \
         lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = $5, provider = $8",
        "$6",
        "$7",
    );
    // A callback that came before this answer was recorded left an earlier poll.
    let schedule = "INSERT INTO upstream_polls (task_id, channel, next_poll_at_ms, polls) \
         SELECT id, channel, next_poll_at_ms, 0 FROM @updated ON CONFLICT (task_id) DO UPDATE SET \
         channel = excluded.channel, polls = 0, next_poll_at_ms = \
           CASE WHEN upstream_polls.next_poll_at_ms < excluded.next_poll_at_ms \
           THEN upstream_polls.next_poll_at_ms ELSE excluded.next_poll_at_ms END \
         RETURNING task_id";
    update_then_insert(dialect, &update, "$6", schedule)
}

/// Counts a poll of a running task and schedules its next; returns the task's id when its
/// lease still held.
fn poll_round_statement(dialect: Dialect) -> String {
    let update = leased_update(
        "polls = polls + 1, upstream_phase = COALESCE($1, upstream_phase), \
         upstream_usage_tokens = COALESCE($2, upstream_usage_tokens), \
         result_copy_failures = result_copy_failures + $3, lease_owner = NULL, \
         lease_until_ms = NULL, updated_at_ms = $4",
        "$5",
        "$6",
        &[TaskState::Running],
    );
    // A callback's flag (0) set meanwhile is kept for the next poll.
    let schedule = "INSERT INTO upstream_polls (task_id, channel, next_poll_at_ms, polls) \
         SELECT id, channel, $7, 1 FROM @updated ON CONFLICT (task_id) DO UPDATE SET \
         next_poll_at_ms = CASE WHEN upstream_polls.next_poll_at_ms = 0 THEN 0 \
           ELSE excluded.next_poll_at_ms END, \
         polls = upstream_polls.polls + 1 \
         RETURNING task_id";
    update_then_insert(dialect, &update, "$5", schedule)
}

/// One way to lease a task: a read that tells whether a task is there to take, and the write
/// that takes it.
pub(in crate::store) struct Claim {
    /// On a reader: any row at all that `lease` would look at. Most claims find nothing (a
    /// worker tries again after each task it takes, and every wake-up tries), and a write that
    /// finds nothing still holds SQLite's one writer, which creates wait for.
    pub probe: &'static str,
    pub lease: &'static str,
}

/// The two claims, in the order they are tried. Each leases one row by one statement; on
/// PostgreSQL the pick skips rows another replica holds locked, and a queued task takes its
/// key's place under the key's row lock, so a key never exceeds its limit however many
/// replicas claim at once.
pub(in crate::store) fn claim_statements(store: &SqlStore) -> [Claim; 2] {
    let set = || {
        format!(
            "UPDATE tasks SET \
               attempts = attempts + CASE WHEN upstream_id IS NULL THEN 1 ELSE 0 END, \
               submit_started_at_ms = CASE WHEN {claimable} THEN @now ELSE submit_started_at_ms END, \
               state = CASE WHEN {claimable} THEN '{to}' ELSE state END, \
               lease_owner = $1, lease_until_ms = @now + $2, updated_at_ms = @now",
            claimable = guard(Transition::Claim),
            to = Transition::Claim.to().as_str(),
        )
    };
    [
        Claim {
            probe: sql!(
                store.dialect,
                format!(
                    "SELECT 1 FROM tasks WHERE {} AND lease_until_ms < @now LIMIT 1",
                    states_sql(IN_FLIGHT)
                )
            ),
            lease: sql!(
                store.dialect,
                format!(
                    "{} WHERE id = (SELECT id FROM tasks WHERE {} AND lease_until_ms < @now \
                     ORDER BY lease_until_ms LIMIT 1@skip_locked) RETURNING {TASK_COLUMNS}, job",
                    set(),
                    states_sql(IN_FLIGHT)
                )
            ),
        },
        Claim {
            probe: sql!(
                store.dialect,
                format!(
                    "SELECT 1 FROM tasks WHERE {} AND next_attempt_at_ms <= @now LIMIT 1",
                    guard(Transition::Claim)
                )
            ),
            lease: sql!(
            store.dialect,
            format!(
                "WITH pick AS (SELECT t.id, t.account_id FROM tasks t WHERE t.{claimable} \
                   AND t.next_attempt_at_ms <= @now \
                   AND (SELECT k.in_flight < COALESCE(k.max_concurrent_tasks, $3) \
                        FROM api_keys k WHERE k.id = t.account_id) \
                   ORDER BY t.next_attempt_at_ms, t.id LIMIT 1@skip_locked), \
                 place AS (SELECT k.id FROM api_keys k WHERE k.id = (SELECT account_id FROM pick) \
                   AND k.in_flight < COALESCE(k.max_concurrent_tasks, $3)@lock) \
                 {set} WHERE id = (SELECT id FROM pick) AND EXISTS (SELECT 1 FROM place) RETURNING {TASK_COLUMNS}, job",
                claimable = guard(Transition::Claim),
                set = set()
            )
        ),
        },
    ]
}

/// A statement over a set of tasks: `template`'s `{ids}` filled with placeholders after the
/// `bound` parameters `query` binds, then `ids` bound to them, padded as
/// [`padded_to_power_of_two`] says (for statements a repeated id leaves unchanged). Each
/// template's few sizes are rendered once and kept, as [`sql!`] keeps its statements.
fn over_ids<'q>(
    template: &'static str,
    bound: usize,
    ids: &'q [TaskId],
    query: impl FnOnce(&'q str) -> Query<'q, Any, AnyArguments<'q>>,
) -> Query<'q, Any, AnyArguments<'q>> {
    static RENDERED: LazyLock<Mutex<HashMap<(&'static str, usize), &'static str>>> =
        LazyLock::new(Mutex::default);
    let padded = padded_to_power_of_two(ids);
    let statement = *RENDERED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry((template, padded.len()))
        .or_insert_with(|| {
            let filled = template.replace("{ids}", &placeholders(bound + 1, padded.len()));
            Box::leak(filled.into_boxed_str())
        });
    let mut query = query(statement);
    for id in padded {
        query = query.bind(id);
    }
    query
}

/// What a poll reads of each task it claimed.
static POLLED_TASKS: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {TASK_COLUMNS}, job, lease_until_ms FROM tasks WHERE id IN ({{ids}})")
});

impl SqlStore {
    /// Leases one task: an abandoned one first when `look_for_abandoned`, else a queued one.
    async fn claim_with(
        &self,
        look_for_abandoned: bool,
        owner: &str,
        lease_ms: i64,
        max_per_key: u32,
    ) -> Result<Option<(TaskRecord, String)>, StoreError> {
        let mut writing = self.tasks.writing(&[]);
        let [abandoned, queued] = claim_statements(self);
        let tries = [(abandoned, true), (queued, false)];
        let tries = if look_for_abandoned {
            &tries[..]
        } else {
            &tries[1..]
        };
        for (claim, reclaiming) in tries {
            if !self.finds_any(sqlx::query(claim.probe)).await? {
                continue;
            }
            // Polls are not attempts: only (re)submissions count towards max_attempts.
            let row = sqlx::query(claim.lease)
                .bind(owner)
                .bind(lease_ms)
                .bind(i64::from(max_per_key))
                .fetch_optional(&mut *self.writer.connection().await?)
                .await?;
            if let Some(row) = row {
                let mut task = task_from_row(&row)?;
                writing.touches(&task.id);
                task.reclaimed = *reclaiming;
                return Ok(Some((task, row.try_get("job")?)));
            }
        }
        Ok(None)
    }

    /// Ends a task without charge and releases its reservation; `owner` or `account_id` (when
    /// given) must match.
    async fn end_unpaid(
        &self,
        id: &TaskId,
        owner: Option<&str>,
        account_id: Option<&AccountId>,
        ending: Unpaid,
        error: &TaskFailure<'_>,
    ) -> Result<bool, StoreError> {
        if unmatchable(&[id.as_str()]) {
            return Ok(false);
        }
        let end = Transition::EndUnpaid(ending);
        let state = end.to();
        let _writing = self.tasks.writing(&[id]);
        let mut tx = self.writer.begin().await?;
        let now = now_ms();
        let row = sqlx::query(sql!(
            self.dialect,
            format!(
                "UPDATE tasks SET state = $1, error_code = $2, error_message = $3, \
                 upstream_usage_tokens = COALESCE($4, upstream_usage_tokens), lease_owner = NULL, \
                 lease_until_ms = NULL, updated_at_ms = $5, completed_at_ms = $5 \
                 WHERE id = $6 AND ($7 IS NULL OR lease_owner = $7) \
                 AND ($8 IS NULL OR account_id = $8) AND {} \
                 RETURNING account_id, reserved_usd_micros",
                // Every unpaid ending starts from the same states; the one taken is bound.
                guard(Transition::EndUnpaid(Unpaid::Failed))
            )
        ))
        .bind(state.as_str())
        .bind(error.code)
        .bind(error.message)
        .bind(error.upstream_usage_tokens)
        .bind(now)
        .bind(id)
        .bind(owner)
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        release_reservation(&mut tx, &row, id).await?;
        enqueue_deliveries(&mut tx, id, state).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn replay(
        &self,
        account_id: &AccountId,
        key: &IdempotencyKey<'_>,
    ) -> Result<Created, StoreError> {
        let previous = sqlx::query(
            "SELECT request_hash, task_id FROM idempotency_keys WHERE account_id = $1 AND key = $2",
        )
        .bind(account_id)
        .bind(key.key)
        .fetch_optional(&mut *self.writer.connection().await?)
        .await?
        .ok_or_else(|| StoreError::Corrupt("idempotency record vanished".into()))?;
        let hash: Vec<u8> = previous.try_get("request_hash")?;
        if hash != key.request_hash {
            return Err(StoreError::IdempotencyConflict);
        }
        let task_id: TaskId = previous.try_get("task_id")?;
        let task = self
            .task(&task_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("idempotent task {task_id} vanished")))?;
        Ok(Created {
            task: Arc::unwrap_or_clone(task),
            replayed: true,
        })
    }
}

#[async_trait]
impl TaskStore for SqlStore {
    async fn create_task(
        &self,
        task: NewTask,
        idempotency: Option<IdempotencyKey<'_>>,
    ) -> Result<Created, StoreError> {
        let seen = self.tasks.seen(&task.id);
        let account_id = task.account_id.clone();
        let owned = idempotency.as_ref().map(|key| Idempotency {
            key: key.key.to_owned(),
            request_hash: key.request_hash.to_vec(),
        });
        match self.creates.create(task, owned, seen).await? {
            Grouped::Stored(task) => {
                self.tasks.created(&task.id);
                Ok(Created {
                    task: *task,
                    replayed: false,
                })
            }
            Grouped::Repeat => match &idempotency {
                Some(key) => self.replay(&account_id, key).await,
                None => Err(StoreError::Corrupt(
                    "a create without a key repeated".into(),
                )),
            },
        }
    }

    async fn task_for_account(
        &self,
        account_id: &AccountId,
        id: &TaskId,
    ) -> Result<Option<Arc<TaskRecord>>, StoreError> {
        Ok(self
            .task(id)
            .await?
            .filter(|task| task.account_id == *account_id))
    }

    fn task_changes(&self) -> tokio::sync::broadcast::Receiver<TaskChange> {
        self.tasks.subscribe()
    }

    async fn queued_task_ids(&self) -> Result<Vec<TaskId>, StoreError> {
        // Sorted here: asked to order by id, SQLite walks every task in id order instead of
        // the partial index of waiting ones, a scan that grows with the history.
        let mut ids: Vec<TaskId> = sqlx::query_scalar(sql!(
            self.dialect,
            format!(
                "SELECT id FROM tasks WHERE state = '{}'",
                TaskState::Queued.as_str()
            )
        ))
        .fetch_all(&self.reader)
        .await?;
        ids.sort_unstable();
        Ok(ids)
    }

    async fn task_job(&self, id: &TaskId) -> Result<Option<String>, StoreError> {
        if unmatchable(&[id.as_str()]) {
            return Ok(None);
        }
        Ok(
            sqlx::query_scalar(sql!(self.dialect, "SELECT job FROM tasks WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    async fn task(&self, id: &TaskId) -> Result<Option<Arc<TaskRecord>>, StoreError> {
        if unmatchable(&[id.as_str()]) {
            return Ok(None);
        }
        if let Some(task) = self.tasks.get(id) {
            return Ok(Some(task));
        }
        let seen = self.tasks.seen(id);
        let row = sqlx::query(sql!(
            self.dialect,
            format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1")
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        let task = row.as_ref().map(task_from_row).transpose()?.map(Arc::new);
        if let Some(task) = &task {
            self.tasks.fill(task.clone(), seen);
        }
        Ok(task)
    }

    async fn list_tasks(
        &self,
        account_id: &AccountId,
        filter: &TaskFilter<'_>,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let Some((conditions, mut values)) = filter_sql(account_id, filter) else {
            return Ok(Vec::new());
        };
        values.push(FilterValue::Number(filter.limit));
        values.push(FilterValue::Number(filter.offset));
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks{conditions} ORDER BY id DESC LIMIT ${} OFFSET ${}",
            values.len() - 1,
            values.len()
        );
        let rows = bind_filter(sqlx::query(&sql), values)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn count_matching(
        &self,
        account_id: &AccountId,
        filter: &TaskFilter<'_>,
    ) -> Result<i64, StoreError> {
        let Some((conditions, values)) = filter_sql(account_id, filter) else {
            return Ok(0);
        };
        let sql = format!("SELECT COUNT(*) FROM tasks{conditions}");
        let row = bind_filter(sqlx::query(&sql), values)
            .fetch_one(&self.reader)
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn cancel_queued_task(
        &self,
        account_id: &AccountId,
        id: &TaskId,
    ) -> Result<Option<(TaskRecord, bool)>, StoreError> {
        if unmatchable(&[account_id.as_str(), id.as_str()]) {
            return Ok(None);
        }
        let _writing = self.tasks.writing(&[id]);
        let mut tx = self.writer.begin().await?;
        let cancel = Transition::CancelQueued;
        let cancelled = sqlx::query(sql!(
            self.dialect,
            format!(
                "UPDATE tasks SET state = '{}', error_code = 'cancelled', \
                 error_message = 'The task was cancelled.', updated_at_ms = $1, completed_at_ms = $1 \
                 WHERE id = $2 AND account_id = $3 AND {} AND doubt_channel IS NULL \
                 RETURNING {TASK_COLUMNS}",
                cancel.to().as_str(),
                guard(cancel)
            )
        ))
        .bind(now_ms())
        .bind(id)
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = cancelled {
            let task = task_from_row(&row)?;
            append_ledger(
                &mut tx,
                account_id,
                Some(id),
                LedgerKind::Release,
                task.reserved_usd_micros,
            )
            .await?;
            enqueue_deliveries(&mut tx, id, TaskState::Cancelled).await?;
            tx.commit().await?;
            return Ok(Some((task, true)));
        }
        tx.rollback().await?;
        Ok(self
            .task_for_account(account_id, id)
            .await?
            .map(|task| (Arc::unwrap_or_clone(task), false)))
    }

    async fn claim_task(
        &self,
        owner: &str,
        lease_ms: i64,
        max_per_key: u32,
    ) -> Result<Option<(TaskRecord, String)>, StoreError> {
        self.claim_with(true, owner, lease_ms, max_per_key).await
    }

    async fn claim_queued_task(
        &self,
        owner: &str,
        lease_ms: i64,
        max_per_key: u32,
    ) -> Result<Option<(TaskRecord, String)>, StoreError> {
        self.claim_with(false, owner, lease_ms, max_per_key).await
    }

    async fn mark_running(&self, id: &TaskId, owner: &str) -> Result<bool, StoreError> {
        let _writing = self.tasks.writing(&[id]);
        let done = sqlx::query(sql!(
            self.dialect,
            transition_update(Transition::Start, "updated_at_ms = $1", "$2", "$3")
        ))
        .bind(now_ms())
        .bind(id)
        .bind(owner)
        .execute(&mut *self.writer.connection().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_submission(
        &self,
        id: &TaskId,
        owner: &str,
        submission: &UpstreamSubmission<'_>,
    ) -> Result<bool, StoreError> {
        let _writing = self.tasks.writing(&[id]);
        let statement = sql!(self.dialect, submission_statement(self.dialect));
        let (mut tx, statement) = self.writer.begin_one_statement(statement).await?;
        let scheduled = sqlx::query(&statement)
            .bind(submission.channel)
            .bind(submission.upstream_id)
            .bind(submission.next_poll_at_ms)
            .bind(submission.upstream_expires_at_ms)
            .bind(now_ms())
            .bind(id)
            .bind(owner)
            .bind(submission.vendor)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(scheduled.len() == 1)
    }

    async fn schedule_poll(
        &self,
        id: &TaskId,
        owner: &str,
        next_poll_at_ms: i64,
        seen: &PollSeen,
    ) -> Result<bool, StoreError> {
        let _writing = self.tasks.writing(&[id]);
        let statement = sql!(self.dialect, poll_round_statement(self.dialect));
        let (mut tx, statement) = self.writer.begin_one_statement(statement).await?;
        let scheduled = sqlx::query(&statement)
            .bind(seen.phase.map(UpstreamPhase::as_str))
            .bind(seen.usage_tokens)
            .bind(i64::from(seen.result_copy_failed))
            .bind(now_ms())
            .bind(id)
            .bind(owner)
            .bind(next_poll_at_ms)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(scheduled.len() == 1)
    }

    async fn claim_polls(
        &self,
        channel: &ChannelId,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<(TaskRecord, String)>, StoreError> {
        // Pollers look several times a second and mostly find nothing due.
        let due = sqlx::query(sql!(
            self.dialect,
            "SELECT 1 FROM upstream_polls WHERE channel = $1 AND next_poll_at_ms <= @now LIMIT 1"
        ))
        .bind(channel);
        if !self.finds_any(due).await? {
            return Ok(Vec::new());
        }
        // Moving the due time forward is the claim: the tasks are nobody's until then, and a
        // poller that dies leaves them to be polled then.
        let claimed: Vec<(TaskId, i64)> = sqlx::query_as(sql!(
            self.dialect,
            "UPDATE upstream_polls SET next_poll_at_ms = @now + $1 \
             WHERE task_id IN (SELECT task_id FROM upstream_polls WHERE channel = $2 \
               AND next_poll_at_ms <= @now ORDER BY next_poll_at_ms LIMIT $3@skip_locked) \
             RETURNING task_id, polls"
        ))
        .bind(lease_ms)
        .bind(channel)
        .bind(limit as i64)
        .fetch_all(&mut *self.writer.connection().await?)
        .await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let mut polls: HashMap<TaskId, i64> = claimed.into_iter().collect();
        let ids: Vec<TaskId> = polls.keys().cloned().collect();
        let mut polled = Vec::with_capacity(ids.len());
        let mut ended = Vec::new();
        let mut unsubmitted = Vec::new();
        let rows = over_ids(POLLED_TASKS.as_str(), 0, &ids, sqlx::query)
            .fetch_all(&self.reader)
            .await?;
        for row in rows {
            let mut task = task_from_row(&row)?;
            let leased = row.try_get::<Option<i64>, _>("lease_until_ms")?.is_some();
            let Some(polls) = polls.remove(&task.id) else {
                continue;
            };
            if task.state.is_terminal() {
                ended.push(task.id);
            } else if task.state != TaskState::Running || task.upstream_id.is_none() {
                // Flagged by a callback before its submission was recorded.
                unsubmitted.push(task.id);
            } else if !leased {
                // A task a worker holds is that worker's to poll.
                task.polls = polls;
                polled.push((task, row.try_get("job")?));
            }
        }
        // Schedules outlive their tasks' endings: they are dropped when next due, as is one
        // whose task is not found at all.
        ended.extend(polls.into_keys());
        if !ended.is_empty() {
            over_ids(
                "DELETE FROM upstream_polls WHERE task_id IN ({ids})",
                0,
                &ended,
                sqlx::query,
            )
            .execute(&mut *self.writer.connection().await?)
            .await?;
        }
        if !unsubmitted.is_empty() {
            over_ids(
                "UPDATE upstream_polls SET next_poll_at_ms = $1 WHERE task_id IN ({ids})",
                1,
                &unsubmitted,
                |statement| sqlx::query(statement).bind(now_ms() + UNSUBMITTED_RECHECK_MS),
            )
            .execute(&mut *self.writer.connection().await?)
            .await?;
        }
        Ok(polled)
    }

    async fn schedule_polls(&self, polls: &[ScheduledPoll]) -> Result<u64, StoreError> {
        if polls.is_empty() {
            return Ok(0);
        }
        // One statement for the whole round: the writer is shared with every submission, and
        // each statement sent to it is a hand-off to its thread. Padding repeats a row whose
        // second join changes nothing.
        let padded = padded_to_power_of_two(polls);
        let seen = (0..padded.len())
            .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        // A callback's flag (0) set while the poll was under way is kept.
        let statement = format!(
            "WITH seen (id, next_at) AS (VALUES {seen}) \
             UPDATE upstream_polls SET \
               next_poll_at_ms = CASE WHEN upstream_polls.next_poll_at_ms = 0 THEN 0 \
                 ELSE seen.next_at END, \
               polls = upstream_polls.polls + 1 \
             FROM seen WHERE upstream_polls.task_id = seen.id"
        );
        let mut query = sqlx::query(&statement);
        for poll in padded {
            query = query.bind(&poll.id).bind(poll.next_poll_at_ms);
        }
        let scheduled = query
            .execute(&mut *self.writer.connection().await?)
            .await?
            .rows_affected();
        // What a client sees changes only when a task leaves the upstream's queue.
        let mut moved: HashMap<UpstreamPhase, Vec<TaskId>> = HashMap::new();
        for poll in polls {
            if let Some(phase) = poll.phase {
                moved.entry(phase).or_default().push(poll.id.clone());
            }
        }
        static NOTE_PHASE: LazyLock<String> = LazyLock::new(|| {
            format!(
                "UPDATE tasks SET upstream_phase = $1, updated_at_ms = $2 \
                 WHERE id IN ({{ids}}) AND {} AND lease_until_ms IS NULL",
                states_sql(&[TaskState::Running])
            )
        });
        for (phase, ids) in moved {
            let _writing = self.tasks.writing(&ids.iter().collect::<Vec<_>>());
            over_ids(NOTE_PHASE.as_str(), 2, &ids, |statement| {
                sqlx::query(statement).bind(phase.as_str()).bind(now_ms())
            })
            .execute(&mut *self.writer.connection().await?)
            .await?;
        }
        Ok(scheduled)
    }

    async fn lease_polled(
        &self,
        id: &TaskId,
        owner: &str,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        let _writing = self.tasks.writing(&[id]);
        let done = sqlx::query(sql!(
            self.dialect,
            format!(
                "UPDATE tasks SET lease_owner = $1, lease_until_ms = @now + $2 \
                 WHERE id = $3 AND {} AND upstream_id IS NOT NULL AND lease_until_ms IS NULL",
                states_sql(&[TaskState::Running])
            )
        ))
        .bind(owner)
        .bind(lease_ms)
        .bind(id)
        .execute(&mut *self.writer.connection().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn note_upstream_running(&self, id: &TaskId) -> Result<(), StoreError> {
        let _writing = self.tasks.writing(&[id]);
        sqlx::query(sql!(
            self.dialect,
            format!(
                "UPDATE tasks SET upstream_phase = '{}' WHERE id = $1 AND {} \
                 AND upstream_phase = '{}'",
                UpstreamPhase::Running.as_str(),
                states_sql(&[TaskState::Running]),
                UpstreamPhase::Queued.as_str()
            )
        ))
        .bind(id)
        .execute(&mut *self.writer.connection().await?)
        .await?;
        Ok(())
    }

    async fn poll_soon(&self, id: &TaskId) -> Result<bool, StoreError> {
        if unmatchable(&[id.as_str()]) {
            return Ok(false);
        }
        // 0 sorts before every due time, and a poll in progress keeps it. A callback may
        // arrive before its task's submission is recorded: the flag waits for it.
        let done = sqlx::query(sql!(
            self.dialect,
            format!(
                "INSERT INTO upstream_polls (task_id, channel, next_poll_at_ms, polls) \
                 SELECT id, channel, 0, 0 FROM tasks WHERE id = $1 AND channel IS NOT NULL \
                   AND {} \
                 ON CONFLICT (task_id) DO UPDATE SET next_poll_at_ms = 0",
                states_sql(&[TaskState::Submitting, TaskState::Running])
            )
        ))
        .bind(id)
        .execute(&mut *self.writer.connection().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn in_flight_by_channel(&self) -> Result<HashMap<ChannelId, i64>, StoreError> {
        let rows: Vec<(ChannelId, i64)> =
            sqlx::query_as("SELECT id, in_flight FROM channel_load WHERE in_flight > 0")
                .fetch_all(&self.reader)
                .await?;
        Ok(rows.into_iter().collect())
    }

    async fn upstream_id_known(
        &self,
        channel: &ChannelId,
        upstream_id: &str,
    ) -> Result<bool, StoreError> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT id FROM tasks WHERE channel = $1 AND upstream_id = $2")
                .bind(channel)
                .bind(upstream_id)
                .fetch_optional(&self.reader)
                .await?;
        Ok(found.is_some())
    }

    async fn reserve_channel(
        &self,
        id: &TaskId,
        owner: &str,
        channel: &ChannelId,
        limit: u32,
    ) -> Result<bool, StoreError> {
        let _writing = self.tasks.writing(&[id]);
        self.ensure_channel_row(channel).await?;
        let done = sqlx::query(sql!(
            self.dialect,
            format!(
                "WITH place AS (SELECT id FROM channel_load WHERE id = $1 AND in_flight < $4@lock) \
                 {} AND (channel = $1 OR EXISTS (SELECT 1 FROM place))",
                leased_update(
                    "channel = $1, doubt_channel = NULL, doubt_since_ms = NULL",
                    "$2",
                    "$3",
                    &[TaskState::Submitting],
                )
            )
        ))
        .bind(channel)
        .bind(id)
        .bind(owner)
        .bind(i64::from(limit))
        .execute(&mut *self.writer.connection().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn extend_lease(
        &self,
        id: &TaskId,
        owner: &str,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(sql!(
            self.dialect,
            leased_update("lease_until_ms = @now + $1", "$2", "$3", IN_FLIGHT)
        ))
        .bind(lease_ms)
        .bind(id)
        .bind(owner)
        .execute(&mut *self.writer.connection().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish_succeeded(
        &self,
        id: &TaskId,
        owner: &str,
        settlement: Settlement<'_>,
    ) -> Result<bool, StoreError> {
        let _writing = self.tasks.writing(&[id]);
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(sql!(
            self.dialect,
            format!(
                "{} RETURNING account_id, reserved_usd_micros",
                transition_update(
                    Transition::Succeed,
                    "result = $1, usage_tokens = $2, cost_usd_micros = $3, cost_cny = $4, \
                     upstream_usage_tokens = COALESCE($5, upstream_usage_tokens), \
                     lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = $6, \
                     completed_at_ms = $6, upstream_compute_ms = $9, \
                     upstream_cost_usd_micros = $10",
                    "$7",
                    "$8",
                )
            )
        ))
        .bind(settlement.result_json)
        .bind(settlement.usage_tokens)
        .bind(settlement.cost_usd_micros)
        .bind(settlement.cost_cny)
        .bind(settlement.upstream.tokens.map(|t| t as i64))
        .bind(now_ms())
        .bind(id)
        .bind(owner)
        .bind(settlement.upstream.compute_ms)
        .bind(settlement.upstream.cost_usd_micros)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        let account_id = release_reservation(&mut tx, &row, id).await?;
        append_ledger(
            &mut tx,
            &account_id,
            Some(id),
            LedgerKind::Charge,
            -settlement.cost_usd_micros,
        )
        .await?;
        enqueue_deliveries(&mut tx, id, TaskState::Succeeded).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn finish_unpaid(
        &self,
        id: &TaskId,
        owner: &str,
        ending: Unpaid,
        error: &TaskFailure<'_>,
    ) -> Result<bool, StoreError> {
        self.end_unpaid(id, Some(owner), None, ending, error).await
    }

    async fn cancel_running_task(
        &self,
        account_id: &AccountId,
        id: &TaskId,
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

    async fn requeue(
        &self,
        id: &TaskId,
        owner: &str,
        delay_ms: i64,
        counts_attempt: bool,
        doubt: Option<(&ChannelId, i64)>,
    ) -> Result<bool, StoreError> {
        let _writing = self.tasks.writing(&[id]);
        let now = now_ms();
        let done = sqlx::query(sql!(
            self.dialect,
            transition_update(
                Transition::Requeue,
                "lease_owner = NULL, lease_until_ms = NULL, channel = NULL, \
                 attempts = attempts - CASE WHEN $1 THEN 0 ELSE 1 END, \
                 doubt_channel = COALESCE($2, doubt_channel), \
                 doubt_since_ms = COALESCE($3, doubt_since_ms), \
                 next_attempt_at_ms = $4, updated_at_ms = $5",
                "$6",
                "$7",
            )
        ))
        .bind(counts_attempt)
        .bind(doubt.map(|(channel, _)| channel))
        .bind(doubt.map(|(_, since)| since))
        .bind(now + delay_ms)
        .bind(now)
        .bind(id)
        .bind(owner)
        .execute(&mut *self.writer.connection().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn claim_files_to_sweep(
        &self,
        ended_before_ms: i64,
        limit: i64,
        lease_ms: i64,
    ) -> Result<Vec<TaskId>, StoreError> {
        Ok(sqlx::query_scalar(sql!(
            self.dialect,
            "UPDATE tasks SET sweep_until_ms = @now + $3 \
             WHERE id IN (SELECT id FROM tasks WHERE files_swept_at_ms IS NULL \
               AND completed_at_ms < $1 AND (sweep_until_ms IS NULL OR sweep_until_ms < @now) \
               ORDER BY completed_at_ms LIMIT $2@skip_locked) \
             RETURNING id"
        ))
        .bind(ended_before_ms)
        .bind(limit)
        .bind(lease_ms)
        .fetch_all(&mut *self.writer.connection().await?)
        .await?)
    }

    async fn mark_files_swept(&self, id: &TaskId) -> Result<bool, StoreError> {
        let _writing = self.tasks.writing(&[id]);
        // An ended task's job is never read again; it goes with the files, since its data:
        // URIs are the client's inputs.
        let done = sqlx::query(
            "UPDATE tasks SET files_swept_at_ms = $1, sweep_until_ms = NULL, job = '' \
             WHERE id = $2 AND files_swept_at_ms IS NULL AND completed_at_ms IS NOT NULL",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&mut *self.writer.connection().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_tasks(&self, account_id: &AccountId) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE account_id = $1")
                .bind(account_id)
                .fetch_one(&self.reader)
                .await?,
        )
    }
}
