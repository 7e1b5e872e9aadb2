//! Group commit of creates: one writer takes every create waiting in its queue, stores them
//! and their reservations in one transaction, and answers each only after that commit. Under
//! load a commit carries many creates for the price of one; alone, a create waits for nobody.
//!
//! A group costs a fixed handful of statements whatever its size: the keys' and organizations'
//! funds read under the write lock (row locks on PostgreSQL, in one order, so groups on
//! several replicas cannot deadlock each other), each create decided in arrival order by
//! [`GroupFunds`] exactly as it would be alone, then the accepted tasks, their ledger entries
//! and the balance debits written as a few multi-row statements (on PostgreSQL, one).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Row};
use tokio::sync::{mpsc, oneshot};

use super::writer::WriteTransaction;
use super::{Dialect, Writer};
use crate::ids::{AccountId, OrgId};
use crate::store::taskcache::{Seen, TaskCache};
use crate::store::{
    now_ms, GroupFunds, KeyFunds, KeyMode, LedgerKind, NewTask, StoreError, TaskRecord, TaskState,
    IDEMPOTENCY_WINDOW_MS,
};

/// Most creates in one transaction; keeps every statement's parameters well under SQLite's
/// limit (32,766) and a group's commit short.
const MAX_GROUP: usize = 128;

/// Creates waiting for the writer; a full queue makes callers wait (backpressure).
const QUEUE: usize = 4096;

/// An idempotency key and the hash of the request that presents it.
pub(super) struct Idempotency {
    pub(super) key: String,
    pub(super) request_hash: Vec<u8>,
}

/// What became of one create of a group.
pub(super) enum Grouped {
    Stored(Box<TaskRecord>),
    /// Its idempotency key is held by an earlier request (committed, or earlier in the group):
    /// the caller answers with that request's task.
    Repeat,
}

pub(super) struct PendingCreate {
    task: NewTask,
    idempotency: Option<Idempotency>,
    seen: Seen,
    reply: oneshot::Sender<Result<Grouped, StoreError>>,
}

/// Where creates are handed to the writer.
pub(super) struct CreateQueue {
    sender: mpsc::Sender<PendingCreate>,
}

impl CreateQueue {
    /// Starts the writer; it stops when the queue is dropped.
    pub(super) fn start(writer: Writer, tasks: Arc<TaskCache>) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(receiver, writer, tasks));
        Self { sender }
    }

    /// Stores `task` with its reservation in the next group commit.
    pub(super) async fn create(
        &self,
        task: NewTask,
        idempotency: Option<Idempotency>,
        seen: Seen,
    ) -> Result<Grouped, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(PendingCreate {
                task,
                idempotency,
                seen,
                reply,
            })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }
}

async fn run(mut receiver: mpsc::Receiver<PendingCreate>, writer: Writer, tasks: Arc<TaskCache>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while receiver.recv_many(&mut group, MAX_GROUP).await > 0 {
        let pending: Vec<PendingCreate> = std::mem::take(&mut group);
        match commit_group(&writer, &pending).await {
            Ok(outcomes) => {
                for (pending, outcome) in pending.into_iter().zip(outcomes) {
                    if let Ok(Grouped::Stored(task)) = &outcome {
                        tasks.fill(Arc::new(TaskRecord::clone(task)), pending.seen);
                    }
                    // A caller that stopped waiting finds its task by listing.
                    let _ = pending.reply.send(outcome);
                }
            }
            Err(error) => {
                tracing::error!(%error, creates = pending.len(), "group commit failed");
                let error = Arc::new(error);
                for pending in pending {
                    let _ = pending
                        .reply
                        .send(Err(StoreError::GroupCommit(error.clone())));
                }
            }
        }
    }
}

/// One transaction for the group; an outcome per create, in order. An error means nothing
/// was stored.
async fn commit_group(
    writer: &Writer,
    group: &[PendingCreate],
) -> Result<Vec<Result<Grouped, StoreError>>, StoreError> {
    let mut tx = writer.begin_group().await?;
    let dialect = writer.dialect();
    if group.iter().any(|create| create.idempotency.is_some()) {
        // Keys are taken before the group's tasks are inserted (see take_idempotency_key).
        sqlx::query(&tx.opening(match dialect {
            Dialect::Sqlite => "PRAGMA defer_foreign_keys = ON",
            Dialect::Postgres => "SET CONSTRAINTS idempotency_keys_task_id_fkey DEFERRED",
        }))
        .execute(&mut *tx)
        .await?;
    }
    let mut funds = read_funds(&mut tx, dialect, group).await?;
    let now = now_ms();
    // Decided in arrival order, so an idempotency key taken by one create is held for the
    // next, and a refused create gives its key back before the next looks at it.
    let mut decisions = Vec::with_capacity(group.len());
    for create in group {
        let task = &create.task;
        if let Some(idempotency) = &create.idempotency {
            if !take_idempotency_key(&mut tx, task, idempotency, now).await? {
                decisions.push(Ok(false));
                continue;
            }
        }
        let decision = funds.reserve(&task.account_id, task.reserved_usd_micros);
        if let (Err(_), Some(idempotency)) = (&decision, &create.idempotency) {
            give_back_idempotency_key(&mut tx, task, idempotency).await?;
        }
        decisions.push(decision.map(|()| true));
    }
    let accepted: Vec<&NewTask> = group
        .iter()
        .zip(&decisions)
        .filter(|(_, decision)| matches!(decision, Ok(true)))
        .map(|(create, _)| &create.task)
        .collect();
    if !accepted.is_empty() {
        match dialect {
            Dialect::Sqlite => store_in_runs(&mut tx, &funds, &accepted, now).await?,
            Dialect::Postgres => store_in_one_statement(&mut tx, &funds, &accepted, now).await?,
        }
    }
    tx.commit().await?;
    Ok(group
        .iter()
        .zip(decisions)
        .map(|(create, decision)| {
            Ok(match decision? {
                false => Grouped::Repeat,
                true => Grouped::Stored(Box::new(create.task.queued(now))),
            })
        })
        .collect())
}

/// On SQLite, where a statement costs a trip to the connection's thread and no more, the rows
/// go in runs of a few fixed sizes, the last with the debits and the commit.
async fn store_in_runs(
    tx: &mut WriteTransaction,
    funds: &GroupFunds,
    accepted: &[&NewTask],
    now: i64,
) -> Result<(), StoreError> {
    let runs = power_of_two_runs(accepted);
    let Some((last, earlier)) = runs.split_last() else {
        return Ok(());
    };
    for run in earlier {
        let sql = Dialect::Sqlite.batch(&run_statements(run.len()));
        bind_run(sqlx::query(&sql), funds, run, now)?
            .execute(&mut **tx)
            .await?;
    }
    let mut statements = run_statements(last.len());
    statements.extend(debit_statements(funds, run_parameters(last.len()) + 1));
    let sql = Dialect::Sqlite.batch(&statements);
    let sql = tx.closing(&sql);
    bind_debits(bind_run(sqlx::query(&sql), funds, last, now)?, funds)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// On PostgreSQL every statement is a trip to the server and a plan of its own: cut into runs,
/// a group of 16–32 creates spent three times as long inserting as committing (BENCHMARKS.md,
/// "PostgreSQL's group in one statement"). So the rows, their reservations and the debits are
/// one statement. The rows are padded to a power of two by repeating the last, which the insert
/// skips as a conflict, so the statement still comes in a few fixed sizes; each ledger entry is
/// made from a row the insert returns, so a repeated row reserves nothing. The count of rows
/// stored is checked: a row skipped for any other reason fails the group.
async fn store_in_one_statement(
    tx: &mut WriteTransaction,
    funds: &GroupFunds,
    accepted: &[&NewTask],
    now: i64,
) -> Result<(), StoreError> {
    let padded = padded_to_power_of_two(accepted);
    // `Dialect::batch` names the first statement `w0`: the insert, which the rest read back.
    let mut statements = vec![
        format!(
            "{} ON CONFLICT (id) DO NOTHING RETURNING id, account_id, reserved_usd_micros",
            task_insert(padded.len())
        ),
        format!(
            "INSERT INTO ledger (created_at, organization_id, account_id, task_id, kind, \
             usd_micros) SELECT $1, k.organization_id, w0.account_id, w0.id, '{}', \
             -w0.reserved_usd_micros FROM w0 JOIN api_keys k ON k.id = w0.account_id",
            LedgerKind::Reserve.as_str()
        ),
    ];
    statements.extend(debit_statements(funds, 2 + padded.len() * TASK_COLUMNS));
    statements.push("SELECT COUNT(*) FROM w0".to_owned());
    let sql = Dialect::Postgres.batch(&statements);
    let query = bind_tasks(sqlx::query(&sql), padded.iter().copied(), now);
    let stored: i64 = bind_debits(query, funds)
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
    if stored != accepted.len() as i64 {
        return Err(StoreError::Corrupt(format!(
            "{stored} of a group's {} new tasks were stored",
            accepted.len()
        )));
    }
    Ok(())
}

/// Takes the key for `task`, unless a live record holds it (another request's, committed or
/// earlier in this group); an expired record makes way. On PostgreSQL a concurrent holder's
/// commit is waited for here. The record names a task not inserted yet: the group defers the
/// foreign key to its commit, by which time the task is in or the record is gone.
async fn take_idempotency_key(
    tx: &mut WriteTransaction,
    task: &NewTask,
    idempotency: &Idempotency,
    now: i64,
) -> Result<bool, StoreError> {
    let taken: Option<String> = sqlx::query_scalar(
        "INSERT INTO idempotency_keys (account_id, key, request_hash, task_id, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, key) DO UPDATE SET \
         request_hash = excluded.request_hash, task_id = excluded.task_id, \
         created_at_ms = excluded.created_at_ms \
         WHERE idempotency_keys.created_at_ms < $6 RETURNING task_id",
    )
    .bind(&task.account_id)
    .bind(&idempotency.key)
    .bind(&idempotency.request_hash)
    .bind(&task.id)
    .bind(now)
    .bind(now - IDEMPOTENCY_WINDOW_MS)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(taken.is_some())
}

/// A refused create stores nothing, its key included: a retry with more funds is a new create.
async fn give_back_idempotency_key(
    tx: &mut WriteTransaction,
    task: &NewTask,
    idempotency: &Idempotency,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2 AND task_id = $3")
        .bind(&task.account_id)
        .bind(&idempotency.key)
        .bind(&task.id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// `items` cut into runs of 64, 32, …, 1 (the binary digits of its length), so multi-row
/// statements come in a few fixed sizes whose prepared forms the connection keeps, instead of
/// one new statement to prepare for every group size.
pub(super) fn power_of_two_runs<T>(mut items: &[T]) -> Vec<&[T]> {
    let mut runs = Vec::new();
    while !items.is_empty() {
        let size = 1 << items.len().ilog2();
        let (run, rest) = items.split_at(size);
        runs.push(run);
        items = rest;
    }
    runs
}

/// `items`, then its last item repeated up to the next power of two: for a statement over a
/// set, which a repeated item leaves unchanged, one statement in a few fixed sizes.
pub(super) fn padded_to_power_of_two<T>(items: &[T]) -> Vec<&T> {
    let size = items.len().next_power_of_two();
    items
        .iter()
        .chain(std::iter::repeat_n(items.last(), size - items.len()).flatten())
        .collect()
}

/// `$first, $first+1, …` for `count` parameters.
pub(super) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The funds of every key in the group and of their organizations, locked until commit. On
/// SQLite, where the transaction already holds the only write lock, one statement reads both;
/// PostgreSQL locks the keys' rows and then the organizations', each in id order, so groups on
/// several replicas cannot deadlock each other.
async fn read_funds(
    tx: &mut WriteTransaction,
    dialect: Dialect,
    group: &[PendingCreate],
) -> Result<GroupFunds, StoreError> {
    let accounts: BTreeSet<&AccountId> =
        group.iter().map(|create| &create.task.account_id).collect();
    let ids = placeholders(1, accounts.len());
    let sql = match dialect {
        Dialect::Sqlite => format!(
            "SELECT k.id, k.organization_id, k.mode, k.limit_usd_micros, k.committed_usd_micros, \
             k.balance_usd_micros, o.balance_usd_micros AS organization_balance_usd_micros \
             FROM api_keys k JOIN organizations o ON o.id = k.organization_id WHERE k.id IN ({ids})"
        ),
        Dialect::Postgres => format!(
            "SELECT id, organization_id, mode, limit_usd_micros, committed_usd_micros, \
             balance_usd_micros FROM api_keys WHERE id IN ({ids}) ORDER BY id FOR UPDATE"
        ),
    };
    let sql = tx.opening(&sql);
    let mut query = sqlx::query(&sql);
    for account in &accounts {
        query = query.bind(*account);
    }
    let mut keys = HashMap::new();
    let mut organizations = BTreeSet::new();
    let mut balances = HashMap::new();
    for row in query.fetch_all(&mut **tx).await? {
        let funds = KeyFunds {
            mode: KeyMode::parse(row.try_get("mode")?)?,
            organization_id: row.try_get("organization_id")?,
            limit_usd_micros: row.try_get("limit_usd_micros")?,
            committed_usd_micros: row.try_get("committed_usd_micros")?,
            balance_usd_micros: row.try_get("balance_usd_micros")?,
        };
        if funds.mode == KeyMode::Live {
            if dialect == Dialect::Sqlite {
                balances.insert(
                    funds.organization_id.clone(),
                    row.try_get("organization_balance_usd_micros")?,
                );
            } else {
                organizations.insert(funds.organization_id.clone());
            }
        }
        keys.insert(row.try_get("id")?, funds);
    }
    if !organizations.is_empty() {
        let sql = format!(
            "SELECT id, balance_usd_micros FROM organizations WHERE id IN ({}) ORDER BY id \
             FOR UPDATE",
            placeholders(1, organizations.len())
        );
        let mut query = sqlx::query_as::<_, (OrgId, i64)>(&sql);
        for organization in &organizations {
            query = query.bind(organization);
        }
        balances.extend(query.fetch_all(&mut **tx).await?);
    }
    Ok(GroupFunds::new(keys, balances))
}

/// Parameters per task row and per ledger row; `$1` is the group's time, shared by every row.
const TASK_COLUMNS: usize = 13;
const LEDGER_COLUMNS: usize = 5;

type GroupQuery<'q> = Query<'q, Any, AnyArguments<'q>>;

/// How many parameters a run of `len` tasks takes.
fn run_parameters(len: usize) -> usize {
    1 + len * (TASK_COLUMNS + LEDGER_COLUMNS)
}

/// A run of `len` accepted tasks and their reservations, bound by [`bind_run`]. Nothing is read
/// back: the answer is the row as [`NewTask::queued`] describes it, which a store test holds
/// equal to the row read from the database.
fn run_statements(len: usize) -> Vec<String> {
    let first_ledger = 2 + len * TASK_COLUMNS;
    let reservations: Vec<String> = (0..len)
        .map(|i| {
            format!(
                "($1, {})",
                placeholders(first_ledger + i * LEDGER_COLUMNS, LEDGER_COLUMNS)
            )
        })
        .collect();
    vec![
        task_insert(len),
        format!(
            "INSERT INTO ledger (created_at, organization_id, account_id, task_id, kind, \
             usd_micros) VALUES {}",
            reservations.join(", ")
        ),
    ]
}

/// The insert of `len` new tasks, bound by [`bind_tasks`] from `$2`; `$1` is the group's time.
fn task_insert(len: usize) -> String {
    let tasks: Vec<String> = (0..len)
        .map(|i| {
            format!(
                "({}, '{}', $1, $1)",
                placeholders(2 + i * TASK_COLUMNS, TASK_COLUMNS),
                TaskState::Queued.as_str()
            )
        })
        .collect();
    format!(
        "INSERT INTO tasks (id, account_id, model, operation, provider, job, request, \
         reserved_usd_micros, estimated_tokens, deadline_at_ms, callback_url, request_id, \
         next_attempt_at_ms, state, created_at_ms, updated_at_ms) VALUES {}",
        tasks.join(", ")
    )
}

fn bind_tasks<'q>(
    query: GroupQuery<'q>,
    tasks: impl IntoIterator<Item = &'q &'q NewTask>,
    now: i64,
) -> GroupQuery<'q> {
    let mut query = query.bind(now);
    for task in tasks {
        query = query
            .bind(&task.id)
            .bind(&task.account_id)
            .bind(&task.model)
            .bind(&task.operation)
            .bind(&task.provider)
            .bind(&task.job_json)
            .bind(&task.request_json)
            .bind(task.reserved_usd_micros)
            .bind(task.estimated_tokens)
            .bind(task.deadline_at_ms)
            .bind(&task.callback_url)
            .bind(&task.request_id)
            .bind(task.not_before_ms.unwrap_or(now));
    }
    query
}

fn bind_run<'q>(
    query: GroupQuery<'q>,
    funds: &'q GroupFunds,
    run: &'q [&NewTask],
    now: i64,
) -> Result<GroupQuery<'q>, StoreError> {
    let mut query = bind_tasks(query, run, now);
    for task in run {
        let organization = funds
            .organization_of(&task.account_id)
            .ok_or_else(|| StoreError::Corrupt(format!("no key {}", task.account_id)))?;
        query = query
            .bind(organization)
            .bind(&task.account_id)
            .bind(&task.id)
            .bind(LedgerKind::Reserve.as_str())
            .bind(-task.reserved_usd_micros);
    }
    Ok(query)
}

/// Every key's and organization's debit for the group, parameters from `$first`, bound by
/// [`bind_debits`].
fn debit_statements(funds: &GroupFunds, first: usize) -> Vec<String> {
    let mut statements = Vec::new();
    let mut next = first;
    for _ in funds.key_debits() {
        statements.push(format!(
            "UPDATE api_keys SET committed_usd_micros = committed_usd_micros + ${amount}, \
             balance_usd_micros = balance_usd_micros - CASE WHEN ${own} THEN ${amount} ELSE 0 \
             END WHERE id = ${id}",
            amount = next,
            own = next + 1,
            id = next + 2
        ));
        next += 3;
    }
    for _ in funds.organization_debits() {
        statements.push(format!(
            "UPDATE organizations SET balance_usd_micros = balance_usd_micros - ${amount} \
             WHERE id = ${id}",
            amount = next,
            id = next + 1
        ));
        next += 2;
    }
    statements
}

fn bind_debits<'q>(mut query: GroupQuery<'q>, funds: &'q GroupFunds) -> GroupQuery<'q> {
    for (account, reserved, own_balance) in funds.key_debits() {
        query = query.bind(reserved).bind(own_balance).bind(account);
    }
    for (organization, reserved) in funds.organization_debits() {
        query = query.bind(reserved).bind(organization);
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_cut_into_a_few_fixed_sizes() {
        let items: Vec<usize> = (0..MAX_GROUP).collect();
        for len in 0..=MAX_GROUP {
            let runs = power_of_two_runs(&items[..len]);
            assert_eq!(runs.iter().map(|run| run.len()).sum::<usize>(), len);
            assert!(runs.iter().all(|run| run.len().is_power_of_two()));
            assert!(runs.windows(2).all(|pair| pair[0].len() > pair[1].len()));
            assert_eq!(runs.concat(), items[..len]);
        }
    }

    #[test]
    fn padding_repeats_the_last_item_up_to_a_power_of_two() {
        let items: Vec<u32> = (1..=100).collect();
        assert!(padded_to_power_of_two::<u32>(&[]).is_empty());
        assert_eq!(padded_to_power_of_two(&items[..1]), [&1]);
        assert_eq!(padded_to_power_of_two(&items[..3]), [&1, &2, &3, &3]);
        let padded = padded_to_power_of_two(&items);
        assert_eq!(padded.len(), 128);
        assert!(padded[..100].iter().copied().eq(items.iter()));
        assert!(padded[100..].iter().all(|item| **item == 100));
    }
}
