//! Store invariants that the engine relies on: exclusive claims, lease takeover, settlement
//! at most once, and a balance that always equals the ledger sum. Every one runs on SQLite and
//! on PostgreSQL (a schema of its own on the server `SEEDGATE_TEST_POSTGRES_URL` names, by
//! default the one on 127.0.0.1:5432; the test fails, never skips, when none answers).

use std::collections::HashSet;

use serde_json::json;
use sqlx::AnyPool;

use super::*;

/// A fresh store of one backend, and the way to read its rows behind its back.
struct Db {
    store: Store,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        Self {
            store: connect(&url).await.unwrap(),
            url,
            _dir: Some(dir),
        }
    }

    async fn postgres() -> Self {
        let url = postgres::create_scratch_schema(&postgres::test_server_url())
            .await
            .expect("a PostgreSQL server for the store tests");
        Self {
            store: connect(&url).await.unwrap(),
            url,
            _dir: None,
        }
    }

    async fn raw(&self) -> AnyPool {
        AnyPool::connect(&self.url).await.unwrap()
    }
}

/// One test body, run once per backend as `<name>::sqlite` and `<name>::postgres`.
macro_rules! on_both_backends {
    (async fn $name:ident($db:ident: &Db) $body:block) => {
        mod $name {
            use super::*;

            async fn body($db: &Db) $body

            #[tokio::test]
            async fn sqlite() {
                body(&Db::sqlite().await).await
            }

            #[tokio::test]
            async fn postgres() {
                body(&Db::postgres().await).await
            }
        }
    };
}

fn task_id(n: usize) -> TaskId {
    TaskId::new(format!("vtask_{n:026}"))
}

fn new_task(account_id: &AccountId, n: usize, reserved: i64) -> NewTask {
    NewTask {
        id: task_id(n),
        account_id: account_id.clone(),
        model: "seedance-2.0".into(),
        operation: "text-to-video".into(),
        provider: "sandbox".into(),
        job_json: "{}".into(),
        request_json: "{}".into(),
        reserved_usd_micros: reserved,
        estimated_tokens: 1,
        deadline_at_ms: i64::MAX,
        callback_url: None,
        request_id: None,
        not_before_ms: None,
    }
}

fn settlement(cost: i64) -> Settlement<'static> {
    Settlement {
        result_json: "{}",
        usage_tokens: 1,
        cost_usd_micros: cost,
        cost_cny: "0",
        upstream: Default::default(),
    }
}

on_both_backends! {
    async fn concurrent_claims_never_share_a_task(db: &Db) {
        let store = &db.store;
        let key = store
            .create_key(&KeySpec::plain("k", KeyMode::Test, 1_000_000))
            .await
            .unwrap();
        for n in 0..30 {
            store
                .create_task(new_task(&key.account.id, n, 100), None)
                .await
                .unwrap();
        }
        let mut workers = Vec::new();
        for w in 0..4 {
            let store = store.clone();
            workers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some((task, _)) = store
                    .claim_task(&format!("w{w}"), 60_000, 100)
                    .await
                    .unwrap()
                {
                    mine.push(task.id);
                }
                mine
            }));
        }
        let mut seen = HashSet::new();
        for worker in workers {
            for id in worker.await.unwrap() {
                assert!(seen.insert(id), "a task was claimed twice");
            }
        }
        assert_eq!(seen.len(), 30);
    }
}

on_both_backends! {
    async fn an_expired_lease_moves_to_a_new_owner_and_the_old_one_cannot_settle(db: &Db) {
        let store = &db.store;
        let key = store
            .create_key(&KeySpec::plain("k", KeyMode::Test, 1_000_000))
            .await
            .unwrap();
        let account = key.account.id;
        store
            .create_task(new_task(&account, 1, 5_000), None)
            .await
            .unwrap();
        let (first, _) = store.claim_task("dead", 0, 100).await.unwrap().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let (second, _) = store
            .claim_task("alive", 60_000, 100)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.id, second.id);
        assert_eq!(second.attempts, 2);
        assert!(!first.reclaimed && second.reclaimed);

        assert!(!store.extend_lease(&first.id, "dead", 60_000).await.unwrap());
        assert!(!store
            .finish_succeeded(&first.id, "dead", settlement(4_000))
            .await
            .unwrap());
        assert!(store
            .finish_succeeded(&first.id, "alive", settlement(4_000))
            .await
            .unwrap());
        // A replayed settlement changes nothing.
        assert!(!store
            .finish_succeeded(&first.id, "alive", settlement(4_000))
            .await
            .unwrap());
        assert!(!store
            .finish_failed(&first.id, "alive", "x", "y")
            .await
            .unwrap());

        let balance = store
            .account(&account)
            .await
            .unwrap()
            .unwrap()
            .balance_usd_micros;
        assert_eq!(balance, 1_000_000 - 4_000);
        assert_eq!(store.ledger_sum(&account).await.unwrap(), balance);
    }
}

/// The host clock of a replica ten minutes fast.
fn ten_minutes_fast() -> i64 {
    clock::host_now_ms() + 600_000
}

on_both_backends! {
    async fn a_replica_ten_minutes_fast_neither_expires_tasks_early_nor_steals_a_lease(db: &Db) {
        let store = &db.store;
        let skewed = clock::DatabaseClock::new(ten_minutes_fast);
        // Before it has read the database's clock, it would take a task due in 5 minutes for
        // one 5 minutes late.
        let policy = crate::lifecycle::Policy::new(
            &crate::config::EngineConfig::default(),
            std::sync::Arc::new(seedgate_contract::Catalog::builtin()),
        );
        let deadline = store.database_now_ms().await.unwrap() + 300_000;
        assert!(policy.may_expire(skewed.now_ms(), Some(deadline), None));
        // Once it has, its time is the database's, to within a round trip.
        let offset = skewed.sync(&**store).await.unwrap();
        assert!((offset + 600_000).abs() < 1_000, "offset {offset} ms");
        let database_now = store.database_now_ms().await.unwrap();
        assert!((skewed.now_ms() - database_now).abs() < 1_000);
        assert!(!policy.may_expire(skewed.now_ms(), Some(deadline), None));
        // A host whose clock agrees (one machine here) keeps its own: measuring jitter never
        // moves a stamp.
        let honest = clock::DatabaseClock::new(clock::host_now_ms);
        assert_eq!(honest.sync(&**store).await.unwrap(), 0);

        // Leases are taken and compared on the database's clock alone: a lease another worker
        // holds for a minute stays its own, whatever the claiming replica's clock says.
        let key = store
            .create_key(&KeySpec::plain("k", KeyMode::Test, 1_000_000))
            .await
            .unwrap();
        store
            .create_task(new_task(&key.account.id, 1, 5_000), None)
            .await
            .unwrap();
        let (held, _) = store.claim_task("honest", 60_000, 100).await.unwrap().unwrap();
        assert!(store.claim_task("fast", 60_000, 100).await.unwrap().is_none());
        assert!(store.extend_lease(&held.id, "honest", 60_000).await.unwrap());
        assert!(!store.extend_lease(&held.id, "fast", 60_000).await.unwrap());
    }
}

on_both_backends! {
    async fn reservation_is_refused_beyond_the_balance(db: &Db) {
        let store = &db.store;
        let key = store.create_key(&KeySpec::plain("k", KeyMode::Test, 10_000)).await.unwrap();
        let account = key.account.id;
        store
            .create_task(new_task(&account, 1, 6_000), None)
            .await
            .unwrap();
        let refused = store.create_task(new_task(&account, 2, 6_000), None).await;
        assert!(matches!(
            refused,
            Err(StoreError::InsufficientBalance {
                balance_usd_micros: 4_000,
                required_usd_micros: 6_000
            })
        ));
        assert_eq!(store.count_tasks(&account).await.unwrap(), 1);
        // Failure releases the whole reservation.
        let (task, _) = store.claim_task("w", 60_000, 100).await.unwrap().unwrap();
        assert!(store
            .finish_failed(&task.id, "w", "boom", "failed")
            .await
            .unwrap());
        assert_eq!(
            store
                .account(&account)
                .await
                .unwrap()
                .unwrap()
                .balance_usd_micros,
            10_000
        );
        assert_eq!(store.ledger_sum(&account).await.unwrap(), 10_000);
    }
}

on_both_backends! {
    async fn a_requeued_task_waits_for_its_retry_time(db: &Db) {
        let store = &db.store;
        let key = store.create_key(&KeySpec::plain("k", KeyMode::Test, 10_000)).await.unwrap();
        store
            .create_task(new_task(&key.account.id, 1, 100), None)
            .await
            .unwrap();
        let (task, _) = store.claim_task("w", 60_000, 100).await.unwrap().unwrap();
        assert!(store
            .requeue(&task.id, "w", 60_000, true, None)
            .await
            .unwrap());
        assert!(store.claim_task("w", 60_000, 100).await.unwrap().is_none());
        let (_, cancelled) = store
            .cancel_queued_task(&key.account.id, &task.id)
            .await
            .unwrap()
            .unwrap();
        assert!(cancelled);
    }
}

on_both_backends! {
    async fn a_channel_place_goes_to_one_task_only(db: &Db) {
        let store = &db.store;
        let key = store
            .create_key(&KeySpec::plain("k", KeyMode::Test, 1_000_000))
            .await
            .unwrap();
        for n in 0..2 {
            store
                .create_task(new_task(&key.account.id, n, 100), None)
                .await
                .unwrap();
        }
        let (a, _) = store.claim_task("wa", 60_000, 100).await.unwrap().unwrap();
        let (b, _) = store.claim_task("wb", 60_000, 100).await.unwrap().unwrap();
        assert!(store.reserve_channel(&a.id, "wa", &ChannelId::new("volc"), 1).await.unwrap());
        assert!(!store.reserve_channel(&b.id, "wb", &ChannelId::new("volc"), 1).await.unwrap());
        assert!(store
            .reserve_channel(&b.id, "wb", &ChannelId::new("other"), 1)
            .await
            .unwrap());
        assert!(
            store.reserve_channel(&a.id, "wa", &ChannelId::new("volc"), 1).await.unwrap(),
            "a task's own place"
        );
    }
}

/// The counters behind the key and channel limits always equal the rows they summarise.
async fn assert_counters_match_rows(db: &Db) {
    let store = &db.store;
    let raw = db.raw().await;
    let keys: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT k.id, k.in_flight, (SELECT COUNT(*) FROM tasks t WHERE t.account_id = k.id \
         AND t.state IN ('submitting', 'running')) FROM api_keys k",
    )
    .fetch_all(&raw)
    .await
    .unwrap();
    for (id, counter, rows) in keys {
        assert_eq!(counter, rows, "key {id}");
    }
    let counted: std::collections::HashMap<ChannelId, i64> = sqlx::query_as(
        "SELECT channel, COUNT(*) FROM tasks WHERE channel IS NOT NULL \
         AND state IN ('submitting', 'running') GROUP BY channel",
    )
    .fetch_all(&raw)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let mut kept = store.in_flight_by_channel().await.unwrap();
    kept.retain(|_, n| *n > 0);
    assert_eq!(kept, counted);
}

on_both_backends! {
    async fn in_flight_counters_follow_every_transition(db: &Db) {
        let store = &db.store;
        let key = store
            .create_key(&KeySpec::plain("k", KeyMode::Test, 1_000_000))
            .await
            .unwrap();
        for n in 0..5 {
            store
                .create_task(new_task(&key.account.id, n, 100), None)
                .await
                .unwrap();
        }
        assert_counters_match_rows(db).await;
        let mut claimed = Vec::new();
        for worker in ["w0", "w1", "w2", "w3"] {
            let (task, _) = store
                .claim_task(worker, 60_000, 100)
                .await
                .unwrap()
                .unwrap();
            claimed.push((task.id, worker));
            assert_counters_match_rows(db).await;
        }
        let [(a, wa), (b, wb), (c, wc), (d, wd)] = claimed.try_into().unwrap();
        assert!(store.reserve_channel(&a, wa, &ChannelId::new("volc"), 10).await.unwrap());
        assert!(store.reserve_channel(&a, wa, &ChannelId::new("byte"), 10).await.unwrap());
        assert!(store.reserve_channel(&b, wb, &ChannelId::new("volc"), 10).await.unwrap());
        assert!(store.reserve_channel(&c, wc, &ChannelId::new("volc"), 10).await.unwrap());
        assert_counters_match_rows(db).await;
        assert!(store
            .record_submission(
                &a,
                wa,
                &UpstreamSubmission {
                    channel: &ChannelId::new("byte"),
                    upstream_id: "cgt-a",
                    vendor: "ark",
                    next_poll_at_ms: now_ms() + 3_600_000,
                    upstream_expires_at_ms: now_ms() + 7_200_000,
                },
            )
            .await
            .unwrap());
        assert!(store.mark_running(&d, wd).await.unwrap());
        assert_counters_match_rows(db).await;
        assert!(store.requeue(&b, wb, 0, true, None).await.unwrap());
        assert!(store.finish_failed(&c, wc, "boom", "failed").await.unwrap());
        assert_counters_match_rows(db).await;
        // A key at its limit gets nothing new; freed places are taken again.
        assert!(store.claim_task("w4", 60_000, 2).await.unwrap().is_none());
        assert!(store.claim_task("w4", 60_000, 3).await.unwrap().is_some());
        assert_counters_match_rows(db).await;
    }
}

on_both_backends! {
    async fn the_status_filter_selects_exactly_what_each_task_shows(db: &Db) {
        for status in PublicStatus::ALL {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
            assert_eq!(PublicStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(PublicStatus::parse("cancelled"), None);

        let store = &db.store;
        let key = store
            .create_key(&KeySpec::plain("k", KeyMode::Test, 1_000_000))
            .await
            .unwrap();
        let account = key.account.id;
        let states = [
            TaskState::Queued,
            TaskState::Submitting,
            TaskState::Running,
            TaskState::Succeeded,
            TaskState::Failed,
            TaskState::Cancelled,
            TaskState::Expired,
        ];
        let phases = [
            None,
            Some(UpstreamPhase::Queued),
            Some(UpstreamPhase::Running),
            Some(UpstreamPhase::Succeeded),
        ];
        let raw = db.raw().await;
    let mut expected: std::collections::HashMap<&str, HashSet<TaskId>> = Default::default();
        let mut n = 0;
        for state in states {
            for in_doubt in [false, true] {
                for phase in phases {
                    n += 1;
                    let id = store
                        .create_task(new_task(&account, n, 1), None)
                        .await
                        .unwrap()
                        .task
                        .id;
                    sqlx::query(
                        "UPDATE tasks SET state = $1, doubt_channel = $2, doubt_since_ms = $3, \
                         upstream_phase = $4 WHERE id = $5",
                    )
                    .bind(state.as_str())
                    .bind(in_doubt.then_some("volc"))
                    .bind(in_doubt.then_some(1_i64))
                    .bind(phase.map(UpstreamPhase::as_str))
                    .bind(&id)
                    .execute(&raw)
                    .await
                    .unwrap();
                    // Written behind the store's back, so read past its task cache.
                    let ids = [id.clone()];
                    let filter = TaskFilter {
                        ids: &ids,
                        limit: 1,
                        ..TaskFilter::default()
                    };
                    let task = store.list_tasks(&account, &filter).await.unwrap().remove(0);
                    assert_eq!(task.public_status(), public_status(state, in_doubt, phase));
                    expected
                        .entry(task.public_status().as_str())
                        .or_default()
                        .insert(id);
                }
            }
        }
        for status in PublicStatus::ALL {
            let listed: HashSet<TaskId> = store
                .list_tasks(
                    &account,
                    &TaskFilter {
                        status: Some(status),
                        limit: 1000,
                        ..TaskFilter::default()
                    },
                )
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.id)
                .collect();
            assert_eq!(
                listed,
                expected.remove(status.as_str()).unwrap_or_default(),
                "{status:?}"
            );
        }
    }
}

#[test]
fn a_transition_is_guarded_by_the_states_it_may_start_from() {
    assert_eq!(
        sql::guards::guard(Transition::Requeue),
        "state IN ('submitting', 'running')"
    );
    assert_eq!(sql::guards::guard(Transition::Claim), "state = 'queued'");
}

/// Each claim, and the read before it, finds its task through an index. A claim that scanned `tasks` took longer with
/// every task ever created, and on SQLite held the one writer that creates wait for.
#[tokio::test]
async fn claims_search_an_index_rather_than_scan_the_tasks_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("plans.db").display());
    let store = sqlite::connect(&url).await.unwrap();
    let claims = sql::tasks::claim_statements(&store);
    for statement in claims.iter().flat_map(|claim| [claim.probe, claim.lease]) {
        let plan: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {statement}"))
                .fetch_all(&store.reader)
                .await
                .unwrap();
        let scans: Vec<&str> = plan
            .iter()
            .map(|(.., detail)| detail.as_str())
            .filter(|detail| {
                detail.split(' ').take(2).eq(["SCAN", "t"]) || detail.starts_with("SCAN tasks")
            })
            .collect();
        assert!(
            scans.is_empty(),
            "{statement}\nscans: {scans:?}\nplan: {plan:?}"
        );
    }
}

/// A create group takes idempotency keys before it inserts their tasks (foreign keys
/// deferred), and while such a reference is outstanding SQLite checks each inserted task
/// against every table referencing `tasks`, by that table's index on the reference or else by
/// reading all of it: without one, every keyed create read every row ever stored there, on the
/// writer all creates wait for.
#[tokio::test]
async fn every_reference_to_a_task_is_indexed_on_sqlite() {
    let db = Db::sqlite().await;
    let unindexed: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.name, f.\"from\" FROM sqlite_master m \
         JOIN pragma_foreign_key_list(m.name) f ON f.\"table\" = 'tasks' \
         WHERE m.type = 'table' AND NOT EXISTS (SELECT 1 FROM pragma_index_list(m.name) i \
           JOIN pragma_index_info(i.name) c ON c.seqno = 0 AND c.name = f.\"from\")",
    )
    .fetch_all(&db.raw().await)
    .await
    .unwrap();
    assert!(
        unindexed.is_empty(),
        "references to tasks without an index: {unindexed:?}"
    );
    let referencing: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f \
         ON f.\"table\" = 'tasks' WHERE m.type = 'table'",
    )
    .fetch_one(&db.raw().await)
    .await
    .unwrap();
    assert!(referencing >= 3, "{referencing} tables reference tasks");
}

/// A worker claims after every task it takes and on every wake-up, each channel's poller looks
/// for due polls several times a second, and the notifier for due webhooks: most find nothing. On SQLite such a claim must
/// not take the one writer, which every create waits for; here another connection holds the
/// file's write lock, so a claim that wrote would wait for it.
#[tokio::test]
async fn claims_that_find_nothing_leave_the_sqlite_writer_alone() {
    use sqlx::{Connection, Executor};

    let db = Db::sqlite().await;
    let store = &db.store;
    let account = test_account(store).await;
    let mut holder = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    holder.execute("BEGIN IMMEDIATE").await.unwrap();
    let quickly = std::time::Duration::from_secs(2);
    let claimed = tokio::time::timeout(quickly, store.claim_task("w", 60_000, 10))
        .await
        .expect("an empty claim waited for the writer");
    assert!(claimed.unwrap().is_none());
    let polls = tokio::time::timeout(
        quickly,
        store.claim_polls(&ChannelId::new("ark"), 60_000, 8),
    )
    .await
    .expect("an empty poll claim waited for the writer");
    assert!(polls.unwrap().is_empty());
    let delivery = tokio::time::timeout(quickly, store.claim_delivery("n", 60_000))
        .await
        .expect("an empty delivery claim waited for the writer");
    assert!(delivery.unwrap().is_none());
    holder.execute("ROLLBACK").await.unwrap();

    let id = create_unique(store, &account, 1).await;
    let (task, _) = store
        .claim_queued_task("w", 60_000, 10)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(task.id, id);
}

#[test]
fn pending_is_shown_exactly_where_a_cancel_succeeds() {
    use PublicStatus::*;
    // Queued here with nothing sent: cancelled in the database.
    assert_eq!(public_status(TaskState::Queued, false, None), Pending);
    // A lost submission may have made an upstream task that is already generating.
    assert_eq!(public_status(TaskState::Queued, true, None), Processing);
    // Being sent right now: the upstream may accept it any moment.
    assert_eq!(
        public_status(TaskState::Submitting, false, None),
        Processing
    );
    // Still queued upstream: withdrawn there.
    assert_eq!(
        public_status(TaskState::Running, false, Some(UpstreamPhase::Queued)),
        Pending
    );
    for phase in [
        None,
        Some(UpstreamPhase::Running),
        Some(UpstreamPhase::Succeeded),
    ] {
        assert_eq!(public_status(TaskState::Running, false, phase), Processing);
    }
    assert_eq!(public_status(TaskState::Succeeded, false, None), Completed);
    for ended in [TaskState::Failed, TaskState::Cancelled, TaskState::Expired] {
        assert_eq!(public_status(ended, false, None), Failed);
    }
}

on_both_backends! {
    async fn a_queued_task_whose_submission_is_in_doubt_cannot_be_cancelled(db: &Db) {
        let store = &db.store;
        let key = store.create_key(&KeySpec::plain("k", KeyMode::Test, 10_000)).await.unwrap();
        store
            .create_task(new_task(&key.account.id, 1, 100), None)
            .await
            .unwrap();
        let (task, _) = store.claim_task("w", 60_000, 100).await.unwrap().unwrap();
        assert!(store
            .requeue(&task.id, "w", 0, true, Some((&ChannelId::new("volc"), 5)))
            .await
            .unwrap());
        let (refused, cancelled) = store
            .cancel_queued_task(&key.account.id, &task.id)
            .await
            .unwrap()
            .unwrap();
        assert!(!cancelled);
        assert_eq!(refused.doubt, Some((ChannelId::new("volc"), 5)));
        assert_eq!(refused.public_status(), PublicStatus::Processing);
        // A later requeue keeps the doubt; taking a channel place (after reconciling) ends it.
        let (task, _) = store.claim_task("w", 60_000, 100).await.unwrap().unwrap();
        assert_eq!(task.doubt, Some((ChannelId::new("volc"), 5)));
        assert!(store.requeue(&task.id, "w", 0, false, None).await.unwrap());
        let (task, _) = store.claim_task("w", 60_000, 100).await.unwrap().unwrap();
        assert!(task.doubt.is_some());
        assert!(store
            .reserve_channel(&task.id, "w", &ChannelId::new("byte"), 10)
            .await
            .unwrap());
        assert_eq!(store.task(&task.id).await.unwrap().unwrap().doubt, None);
    }
}

/// Two handles on one database: on PostgreSQL, two replicas.
async fn second_handle(db: &Db) -> Store {
    connect(&db.url).await.unwrap()
}

on_both_backends! {
    async fn a_create_whose_id_is_taken_fails_and_reserves_nothing(db: &Db) {
        let key = db.store.create_key(&KeySpec::plain("k", KeyMode::Test, 1_000)).await.unwrap();
        let account = key.account.id;
        db.store.create_task(new_task(&account, 1, 100), None).await.unwrap();
        // PostgreSQL's group skips a row that conflicts, so only its count of stored rows
        // stands between this create and an answer for a task that was never stored.
        let again = db.store.create_task(new_task(&account, 1, 100), None).await;
        assert!(again.is_err(), "a second task with a taken id was answered as created");
        assert_eq!(db.store.count_tasks(&account).await.unwrap(), 1);
        let entries = db.store.ledger_entries_for_task(&task_id(1)).await.unwrap();
        assert_eq!(entries, vec![("reserve".to_owned(), -100)]);
        let balance = db.store.account(&account).await.unwrap().unwrap().balance_usd_micros;
        assert_eq!(balance, 900);
        assert_eq!(db.store.ledger_sum(&account).await.unwrap(), balance);
    }
}

on_both_backends! {
    async fn creates_committed_together_store_each_task_once_with_one_reservation(db: &Db) {
        let key = db.store.create_key(&KeySpec::plain("k", KeyMode::Test, 100_000)).await.unwrap();
        let account = key.account.id;
        let mut first = 0;
        // Spawned together, a burst's creates are queued before the group writer next runs,
        // so most bursts are one group; none of these sizes is a power of two, so on
        // PostgreSQL each group's rows are padded with repeats.
        for size in [3, 5, 6, 7, 11] {
            let creates: Vec<_> = (first..first + size)
                .map(|n| {
                    let (store, task) = (db.store.clone(), new_task(&account, n, 100));
                    tokio::spawn(async move { store.create_task(task, None).await })
                })
                .collect();
            for create in creates {
                create.await.unwrap().unwrap();
            }
            first += size;
        }
        assert_eq!(db.store.count_tasks(&account).await.unwrap(), first as i64);
        for n in 0..first {
            let entries = db.store.ledger_entries_for_task(&task_id(n)).await.unwrap();
            assert_eq!(entries, vec![("reserve".to_owned(), -100)], "task {n}");
        }
        let balance = db.store.account(&account).await.unwrap().unwrap().balance_usd_micros;
        assert_eq!(balance, 100_000 - 100 * first as i64);
        assert_eq!(db.store.ledger_sum(&account).await.unwrap(), balance);
    }
}

on_both_backends! {
    async fn concurrent_creates_never_overspend(db: &Db) {
        let handles = [db.store.clone(), second_handle(db).await];
        let key = db.store.create_key(&KeySpec::plain("k", KeyMode::Test, 1_000)).await.unwrap();
        let account = key.account.id;
        let mut creates = Vec::new();
        for n in 0..40 {
            let store = handles[n % 2].clone();
            let task = new_task(&account, n, 100);
            creates.push(tokio::spawn(async move { store.create_task(task, None).await }));
        }
        let mut accepted = 0;
        for create in creates {
            match create.await.unwrap() {
                Ok(_) => accepted += 1,
                Err(StoreError::InsufficientBalance { .. }) => {}
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(accepted, 10);
        assert_eq!(db.store.count_tasks(&account).await.unwrap(), 10);
        let balance = db.store.account(&account).await.unwrap().unwrap().balance_usd_micros;
        assert_eq!(balance, 0);
        assert_eq!(db.store.ledger_sum(&account).await.unwrap(), 0);
    }
}

on_both_backends! {
    async fn concurrent_repeats_of_an_idempotency_key_create_one_task(db: &Db) {
        let handles = [db.store.clone(), second_handle(db).await];
        let key = db.store.create_key(&KeySpec::plain("k", KeyMode::Test, 1_000_000)).await.unwrap();
        let account = key.account.id;
        let mut creates = Vec::new();
        for n in 0..20 {
            let store = handles[n % 2].clone();
            let task = new_task(&account, n, 100);
            creates.push(tokio::spawn(async move {
                let idempotency = IdempotencyKey {
                    key: "retry-1",
                    request_hash: b"same body",
                };
                store.create_task(task, Some(idempotency)).await.unwrap()
            }));
        }
        let mut ids = HashSet::new();
        let mut originals = 0;
        for create in creates {
            let created = create.await.unwrap();
            originals += usize::from(!created.replayed);
            ids.insert(created.task.id);
        }
        assert_eq!((originals, ids.len()), (1, 1));
        assert_eq!(db.store.count_tasks(&account).await.unwrap(), 1);
        assert_eq!(db.store.ledger_sum(&account).await.unwrap(), 1_000_000 - 100);
        let other_body = db
            .store
            .create_task(
                new_task(&account, 99, 100),
                Some(IdempotencyKey {
                    key: "retry-1",
                    request_hash: b"another body",
                }),
            )
            .await;
        assert!(matches!(other_body, Err(StoreError::IdempotencyConflict)));
    }
}

on_both_backends! {
    async fn a_key_never_exceeds_its_limit_however_many_claim_at_once(db: &Db) {
        let handles = [db.store.clone(), second_handle(db).await];
        let key = db.store.create_key(&KeySpec::plain("k", KeyMode::Test, 1_000_000)).await.unwrap();
        assert!(db.store.set_key_limits(&key.account.id, None, Some(3)).await.unwrap());
        for n in 0..20 {
            db.store.create_task(new_task(&key.account.id, n, 100), None).await.unwrap();
        }
        let mut claims = Vec::new();
        for worker in 0..10 {
            let store = handles[worker % 2].clone();
            claims.push(tokio::spawn(async move {
                store.claim_task(&format!("w{worker}"), 60_000, 100).await.unwrap()
            }));
        }
        let mut claimed = 0;
        for claim in claims {
            claimed += usize::from(claim.await.unwrap().is_some());
        }
        assert_eq!(claimed, 3);
        assert_counters_match_rows(db).await;
    }
}

on_both_backends! {
    async fn the_last_channel_place_goes_to_one_of_many_racing_workers(db: &Db) {
        let handles = [db.store.clone(), second_handle(db).await];
        let key = db.store.create_key(&KeySpec::plain("k", KeyMode::Test, 1_000_000)).await.unwrap();
        let mut held = Vec::new();
        for n in 0..8 {
            db.store.create_task(new_task(&key.account.id, n, 100), None).await.unwrap();
            let owner = format!("w{n}");
            let (task, _) = db.store.claim_task(&owner, 60_000, 100).await.unwrap().unwrap();
            held.push((task.id, owner));
        }
        let mut reservations = Vec::new();
        for (n, (id, owner)) in held.into_iter().enumerate() {
            let store = handles[n % 2].clone();
            reservations.push(tokio::spawn(async move {
                store.reserve_channel(&id, &owner, &ChannelId::new("volc"), 2).await.unwrap()
            }));
        }
        let mut placed = 0;
        for reservation in reservations {
            placed += usize::from(reservation.await.unwrap());
        }
        assert_eq!(placed, 2);
        assert_counters_match_rows(db).await;
    }
}

/// Creates task `n` and ends it: succeeded, or failed when `fails`. Returns its id.
async fn ended_task(store: &Store, account: &AccountId, n: usize, fails: bool) -> TaskId {
    store
        .create_task(new_task(account, n, 100), None)
        .await
        .unwrap();
    let (task, _) = store.claim_task("w", 60_000, 100).await.unwrap().unwrap();
    let ended = if fails {
        store.finish_failed(&task.id, "w", "x", "y").await.unwrap()
    } else {
        store
            .finish_succeeded(&task.id, "w", settlement(50))
            .await
            .unwrap()
    };
    assert!(ended);
    task.id
}

on_both_backends! {
    async fn files_are_swept_once_after_their_task_has_been_over_long_enough(db: &Db) {
        let store = &db.store;
        let key = store.create_key(&KeySpec::plain("k", KeyMode::Test, 1_000_000)).await.unwrap();
        let account = key.account.id;
        let old_success = ended_task(store, &account, 1, false).await;
        let old_failure = ended_task(store, &account, 2, true).await;
        let cutoff = now_ms() + 1;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let recent = ended_task(store, &account, 3, false).await;
        store.create_task(new_task(&account, 4, 100), None).await.unwrap();

        // Only tasks that ended before the cutoff, whatever their ending; never a running one.
        let mut due = store.claim_files_to_sweep(cutoff, 10, 60_000).await.unwrap();
        due.sort();
        assert_eq!(due, [old_success.clone(), old_failure.clone()]);
        // Leased: no other sweeper takes them.
        assert!(store.claim_files_to_sweep(cutoff, 10, 60_000).await.unwrap().is_empty());

        assert!(store.mark_files_swept(&old_success).await.unwrap());
        assert!(!store.mark_files_swept(&old_success).await.unwrap());
        let swept = store.task(&old_success).await.unwrap().unwrap();
        assert!(swept.files_swept_at_ms.is_some_and(|at| at >= cutoff));
        // The stored job (the inputs as sent) went with the files.
        let job: String = sqlx::query_scalar("SELECT job FROM tasks WHERE id = $1")
            .bind(&old_success)
            .fetch_one(&db.raw().await)
            .await
            .unwrap();
        assert_eq!(job, "");
        assert!(store.task(&recent).await.unwrap().unwrap().files_swept_at_ms.is_none());
        // A task that has not ended is never marked.
        assert!(!store.mark_files_swept(&task_id(4)).await.unwrap());

        // A lease whose sweeper died runs out and the task is taken again; a swept one never.
        let later = now_ms() + 60_000;
        let due = store.claim_files_to_sweep(later, 10, 0).await.unwrap();
        assert_eq!(due, std::slice::from_ref(&recent));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let due = store.claim_files_to_sweep(later, 10, 60_000).await.unwrap();
        assert_eq!(due, std::slice::from_ref(&recent));
    }
}

on_both_backends! {
    async fn sweepers_racing_on_one_database_take_different_tasks(db: &Db) {
        let handles = [db.store.clone(), second_handle(db).await];
        let key = db.store.create_key(&KeySpec::plain("k", KeyMode::Test, 1_000_000)).await.unwrap();
        for n in 0..30 {
            ended_task(&db.store, &key.account.id, n, n % 3 == 0).await;
        }
        let cutoff = now_ms() + 1;
        let mut sweepers = Vec::new();
        for s in 0..6 {
            let store = handles[s % 2].clone();
            sweepers.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim_files_to_sweep(cutoff, 4, 60_000).await.unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch);
                }
            }));
        }
        let mut seen = HashSet::new();
        for sweeper in sweepers {
            for id in sweeper.await.unwrap() {
                assert!(seen.insert(id), "two sweepers took the same task");
            }
        }
        assert_eq!(seen.len(), 30);
    }
}

on_both_backends! {
    async fn client_text_holding_a_nul_names_no_task(db: &Db) {
        let store = &db.store;
        let key = store.create_key(&KeySpec::plain("k", KeyMode::Test, 1_000_000)).await.unwrap();
        let account = key.account.id;
        store.create_task(new_task(&account, 1, 100), None).await.unwrap();
        let nul = "vtask_\0";
        assert!(store.task(&TaskId::new(nul)).await.unwrap().is_none());
        assert!(store.task_for_account(&account, &TaskId::new(nul)).await.unwrap().is_none());
        assert!(store.cancel_queued_task(&account, &TaskId::new(nul)).await.unwrap().is_none());
        assert!(!store.cancel_running_task(&account, &TaskId::new(nul)).await.unwrap());
        assert!(!store.poll_soon(&TaskId::new(nul)).await.unwrap());
        let ids = [TaskId::new(nul)];
        for filter in [
            TaskFilter { model: Some(nul), limit: 10, ..TaskFilter::default() },
            TaskFilter { after: Some(&TaskId::new(nul)), limit: 10, ..TaskFilter::default() },
            TaskFilter { ids: &ids, limit: 10, ..TaskFilter::default() },
        ] {
            assert!(store.list_tasks(&account, &filter).await.unwrap().is_empty());
            assert_eq!(store.count_matching(&account, &filter).await.unwrap(), 0);
        }
    }
}

/// A live key in `organization` with an optional cap.
async fn live_key(store: &Store, organization: &OrgId, cap: Option<i64>) -> AccountId {
    store
        .create_key(&KeySpec {
            organization: Some(organization),
            limit_usd_micros: cap,
            ..KeySpec::plain("k", KeyMode::Live, 0)
        })
        .await
        .unwrap()
        .account
        .id
}

/// Settles a freshly created task as a charge of `cost`.
async fn charge(store: &Store, task: &TaskId, cost: i64) {
    let (claimed, _) = store.claim_task("w", 60_000, 100).await.unwrap().unwrap();
    assert_eq!(&claimed.id, task);
    assert!(store
        .finish_succeeded(task, "w", settlement(cost))
        .await
        .unwrap());
}

on_both_backends! {
    async fn an_organization_pays_for_its_live_keys_and_a_test_key_in_play_money(db: &Db) {
        let store = &db.store;
        let created = store.create_organization("acme", 1_000).await.unwrap();
        let org = created.organization.id.clone();
        assert!(created.management_token.starts_with("sg_mgmt_"));
        assert_eq!(
            store.organization_by_token(&created.management_token).await.unwrap().unwrap().id,
            org
        );
        let (a, b) = (live_key(store, &org, None).await, live_key(store, &org, None).await);
        let test = store
            .create_key(&KeySpec {
                organization: Some(&org),
                ..KeySpec::plain("t", KeyMode::Test, 500)
            })
            .await
            .unwrap()
            .account;
        assert_eq!(test.balance_usd_micros, 500);

        store.create_task(new_task(&a, 1, 300), None).await.unwrap();
        charge(store, &task_id(1), 250).await;
        store.create_task(new_task(&b, 2, 400), None).await.unwrap();
        store.create_task(new_task(&test.id, 3, 200), None).await.unwrap();

        let organization = store.organization(&org).await.unwrap().unwrap();
        // 1000 − 250 charged − 400 held for b's task; the test key's play money is apart.
        assert_eq!(organization.balance_usd_micros, 350);
        assert_eq!(organization.total_recharge_usd_micros, 1_000);
        assert_eq!(organization.total_used_usd_micros, 250);
        assert_eq!(store.organization_ledger_sum(&org).await.unwrap(), 350);
        for key in [&a, &b] {
            assert_eq!(store.account(key).await.unwrap().unwrap().balance_usd_micros, 350);
            assert_eq!(store.ledger_sum(key).await.unwrap(), 350);
        }
        assert_eq!(store.account(&a).await.unwrap().unwrap().used_usd_micros, 250);
        assert_eq!(store.account(&test.id).await.unwrap().unwrap().balance_usd_micros, 300);
        assert_eq!(store.ledger_sum(&test.id).await.unwrap(), 300);

        assert_eq!(store.top_up_organization(&org, 650).await.unwrap(), Some(1_000));
        assert_eq!(store.organization_ledger_sum(&org).await.unwrap(), 1_000);
        assert!(store.top_up_organization(&OrgId::new("org_none"), 1).await.unwrap().is_none());
        let unknown = store
            .create_key(&KeySpec {
                organization: Some(&OrgId::new("org_none")),
                ..KeySpec::plain("k", KeyMode::Live, 0)
            })
            .await;
        assert!(matches!(unknown, Err(StoreError::UnknownOrganization(_))));
    }
}

/// Creates `count` tasks of 100 at once through both handles, round robin over `keys`;
/// returns how many each outcome got: accepted, refused by a cap, refused by the balance.
async fn burst(handles: &[Store; 2], keys: &[AccountId], first: usize, count: usize) -> [i32; 3] {
    let mut creates = Vec::new();
    for n in first..first + count {
        let store = handles[n % 2].clone();
        let task = new_task(&keys[n % keys.len()], n, 100);
        creates.push(tokio::spawn(
            async move { store.create_task(task, None).await },
        ));
    }
    let mut outcomes = [0; 3];
    for create in creates {
        match create.await.unwrap() {
            Ok(_) => outcomes[0] += 1,
            Err(StoreError::KeyLimitExceeded { .. }) => outcomes[1] += 1,
            Err(StoreError::InsufficientBalance { .. }) => outcomes[2] += 1,
            Err(other) => panic!("{other}"),
        }
    }
    outcomes
}

on_both_backends! {
    async fn concurrent_creates_pass_neither_a_key_cap_nor_the_organization_balance(db: &Db) {
        let handles = [db.store.clone(), second_handle(db).await];
        let org = db.store.create_organization("acme", 1_500).await.unwrap().organization.id;
        // The cap holds 5 tasks of 100, however many arrive at once.
        let capped = live_key(&db.store, &org, Some(500)).await;
        assert_eq!(burst(&handles, std::slice::from_ref(&capped), 0, 20).await, [5, 15, 0]);
        // The remaining 1,000 pay for 10 more, whichever of the two keys asks.
        let (a, b) = (live_key(&db.store, &org, None).await, live_key(&db.store, &org, None).await);
        assert_eq!(burst(&handles, &[a, b], 100, 30).await, [10, 0, 20]);
        let organization = db.store.organization(&org).await.unwrap().unwrap();
        assert_eq!(organization.balance_usd_micros, 0);
        assert_eq!(db.store.organization_ledger_sum(&org).await.unwrap(), 0);

        // A released reservation frees its share of the cap; a charge keeps it.
        let held = db
            .store
            .list_tasks(&capped, &TaskFilter { limit: 1, ..TaskFilter::default() })
            .await
            .unwrap();
        assert!(db.store.cancel_queued_task(&capped, &held[0].id).await.unwrap().unwrap().1);
        db.store.top_up_organization(&org, 1_000).await.unwrap();
        db.store.create_task(new_task(&capped, 200, 100), None).await.unwrap();
        assert!(matches!(
            db.store.create_task(new_task(&capped, 201, 1), None).await,
            Err(StoreError::KeyLimitExceeded {
                limit_usd_micros: 500,
                committed_usd_micros: 500,
                ..
            })
        ));
    }
}

on_both_backends! {
    async fn keys_change_only_in_their_organization_and_revoked_is_final(db: &Db) {
        let store = &db.store;
        let org = store.create_organization("acme", 0).await.unwrap().organization.id;
        let other = store.create_organization("other", 0).await.unwrap().organization.id;
        let key = live_key(store, &org, None).await;
        let rename = KeyUpdate { name: Some("renamed".into()), ..KeyUpdate::default() };
        assert!(store.update_key(&other, &key, &rename).await.unwrap().is_none());
        assert!(store.organization_key(&other, &key).await.unwrap().is_none());
        assert!(store.organization_key(&org, &AccountId::new("key_\0")).await.unwrap().is_none());

        let capped = KeyUpdate {
            limit_usd_micros: Some(Some(5_000)),
            models: Some(vec!["seedance-2.0-fast".into()]),
            expires_at_ms: Some(Some(4_000_000_000_000)),
            status: Some(KeyStatus::Inactive),
            ..KeyUpdate::default()
        };
        let updated = store.update_key(&org, &key, &capped).await.unwrap().unwrap().unwrap();
        assert_eq!(updated.limit_usd_micros, Some(5_000));
        assert_eq!(updated.models, ["seedance-2.0-fast"]);
        assert_eq!(updated.expires_at_ms, Some(4_000_000_000_000));
        assert_eq!(updated.status, KeyStatus::Inactive);
        assert!(updated.may_use("seedance-2.0-fast") && !updated.may_use("seedance-2.0"));
        let cleared = KeyUpdate {
            limit_usd_micros: Some(None),
            expires_at_ms: Some(None),
            status: Some(KeyStatus::Revoked),
            ..KeyUpdate::default()
        };
        let revoked = store.update_key(&org, &key, &cleared).await.unwrap().unwrap().unwrap();
        assert_eq!((revoked.limit_usd_micros, revoked.expires_at_ms), (None, None));
        assert_eq!(revoked.status, KeyStatus::Revoked);
        assert_eq!(revoked.name, "k");
        let reactivate = KeyUpdate { status: Some(KeyStatus::Active), ..KeyUpdate::default() };
        assert_eq!(
            store.update_key(&org, &key, &reactivate).await.unwrap().unwrap().unwrap_err(),
            KeyUpdateRefused::Revoked
        );
        let (page, total) = store.organization_keys(&org, 0, 10).await.unwrap();
        assert_eq!((page.len(), total), (1, 1));
        assert!(store.organization_keys(&other, 0, 10).await.unwrap().0.is_empty());
    }
}

on_both_backends! {
    async fn usage_reports_sum_exactly_the_ledger_charges(db: &Db) {
        let store = &db.store;
        let org = store.create_organization("acme", 1_000_000).await.unwrap().organization.id;
        let key = live_key(store, &org, None).await;
        let mut charged = 0;
        for n in 0..7 {
            let mut task = new_task(&key, n, 10_000);
            if n % 2 == 1 {
                task.model = "seedance-2.0-fast".into();
            }
            // Tasks 3 and 4 are a draft and a final: lines of their own.
            let mut echo = json!({"resolution": "480p", "aspect_ratio": "16:9", "duration": 4,
                "generate_audio": false, "watermark": false});
            match n {
                3 => echo["draft"] = true.into(),
                4 => echo["draft_task_id"] = task_id(3).to_string().into(),
                _ => {}
            }
            task.request_json = echo.to_string();
            store.create_task(task, None).await.unwrap();
            let cost = 1_001 * (n as i64 + 1);
            match n % 3 {
                0 | 1 => {
                    charge(store, &task_id(n), cost).await;
                    charged += cost;
                }
                _ => assert!(store.cancel_queued_task(&key, &task_id(n)).await.unwrap().unwrap().1),
            }
        }
        let all = UsageFilter::default();
        let totals = store.charge_totals(&key, &all).await.unwrap();
        assert_eq!(totals.cost_usd_micros(), charged);
        assert_eq!(totals.requests(), 5);
        assert_eq!(totals.by_day().iter().map(|(_, cost)| cost).sum::<i64>(), charged);
        // Every charge was made today: one row per model, the same totals as `by_model`'s
        // lines of that model.
        let per_model: Vec<(&str, i64, i64)> = totals
            .by_day_and_model
            .iter()
            .map(|d| (d.model.as_str(), d.requests, d.cost_usd_micros))
            .collect();
        let mut by_model: Vec<(&str, i64, i64)> = Vec::new();
        for m in &totals.by_model {
            match by_model.last_mut() {
                Some((model, requests, cost)) if *model == m.model => {
                    *requests += m.requests;
                    *cost += m.cost_usd_micros;
                }
                _ => by_model.push((m.model.as_str(), m.requests, m.cost_usd_micros)),
            }
        }
        assert_eq!(per_model, by_model);
        assert_eq!(store.account(&key).await.unwrap().unwrap().used_usd_micros, charged);
        let items = store.charges(&key, &all, 0, 100).await.unwrap();
        assert_eq!(items.iter().map(|i| i.cost_usd_micros).sum::<i64>(), charged);
        assert!(items.windows(2).all(|w| w[0].entry_id > w[1].entry_id));
        let legs: Vec<(&str, Option<&str>, i64)> = totals
            .by_model
            .iter()
            .map(|m| (m.model.as_str(), m.leg.as_deref(), m.requests))
            .collect();
        assert_eq!(
            legs,
            [
                ("seedance-2.0", None, 2),
                ("seedance-2.0", Some("final"), 1),
                ("seedance-2.0-fast", None, 1),
                ("seedance-2.0-fast", Some("draft"), 1),
            ]
        );
        let item_legs: Vec<Option<&str>> = items.iter().map(|i| i.leg.as_deref()).collect();
        assert_eq!(item_legs, [None, Some("final"), Some("draft"), None, None]);
        let fast = UsageFilter { model: Some("seedance-2.0-fast"), ..UsageFilter::default() };
        let fast_totals = store.charge_totals(&key, &fast).await.unwrap();
        assert_eq!(fast_totals.by_model.len(), 2);
        assert_eq!(fast_totals.requests(), 2);
        let page = store.charges(&key, &all, 3, 3).await.unwrap();
        assert_eq!(page.len(), 2);
        let none = UsageFilter { until_ms: Some(1), ..UsageFilter::default() };
        assert_eq!(store.charge_totals(&key, &none).await.unwrap().requests(), 0);
        let nul = UsageFilter { model: Some("\0"), ..UsageFilter::default() };
        assert!(store.charges(&key, &nul, 0, 10).await.unwrap().is_empty());
    }
}

/// Builds a database of the release before organizations (every migration before
/// `first_new`), fills it as that release would have, upgrades it, and checks every row.
async fn upgrade_keeps_every_key_balance_task_and_ledger_entry(
    url: &str,
    migrations: migrations::Folder,
    first_new: i64,
) {
    let old = migrations.before(first_new).migrator().await.unwrap();
    sqlx::any::install_default_drivers();
    let raw = AnyPool::connect(url).await.unwrap();
    old.run(&raw).await.unwrap();

    let ulid = || ulid::Ulid::new().to_string();
    let (live, test, revoked) = (ulid(), ulid(), ulid());
    for (ulid, mode, balance, revoked_at) in [
        (&live, "live", 7_500_000_i64, None),
        (&test, "test", 2_850_000, None),
        (&revoked, "live", 1_000_000, Some(5_i64)),
    ] {
        sqlx::query(
            "INSERT INTO api_keys (id, name, key_hash, key_prefix, mode, balance_usd_micros, \
             created_at, revoked_at, webhook_url) VALUES ($1, $2, $3, 'sg_x', $4, $5, 1, $6, $7)",
        )
        .bind(format!("key_{ulid}"))
        .bind(format!("{mode} key"))
        .bind(hash_key(&format!("secret-{ulid}")))
        .bind(mode)
        .bind(balance)
        .bind(revoked_at)
        .bind("https://hooks.example.com/x")
        .execute(&raw)
        .await
        .unwrap();
    }
    let key = |ulid: &str| AccountId::new(format!("key_{ulid}"));
    for (n, owner, state, reserved, cost) in [
        (1, &live, "succeeded", 500_000_i64, Some(400_000_i64)),
        (2, &live, "queued", 100_000, None),
        (3, &test, "succeeded", 200_000, Some(150_000)),
    ] {
        sqlx::query(
            "INSERT INTO tasks (id, account_id, model, operation, provider, state, job, request, \
             reserved_usd_micros, estimated_tokens, cost_usd_micros, next_attempt_at_ms, \
             created_at_ms, updated_at_ms) \
             VALUES ($1, $2, 'seedance-2.0', 'text-to-video', 'sandbox', $3, '{}', '{}', $4, 9, \
             $5, 0, $6, $6)",
        )
        .bind(task_id(n).as_str())
        .bind(key(owner).as_str())
        .bind(state)
        .bind(reserved)
        .bind(cost)
        .bind(n as i64)
        .execute(&raw)
        .await
        .unwrap();
    }
    for (owner, task, kind, amount) in [
        (&live, None, "top_up", 8_000_000_i64),
        (&live, Some(1), "reserve", -500_000),
        (&live, Some(1), "release", 500_000),
        (&live, Some(1), "charge", -400_000),
        (&live, Some(2), "reserve", -100_000),
        (&test, None, "top_up", 3_000_000),
        (&test, Some(3), "reserve", -200_000),
        (&test, Some(3), "release", 200_000),
        (&test, Some(3), "charge", -150_000),
        (&revoked, None, "top_up", 1_000_000),
    ] {
        sqlx::query(
            "INSERT INTO ledger (account_id, task_id, kind, usd_micros, created_at) \
             VALUES ($1, $2, $3, $4, 7)",
        )
        .bind(key(owner).as_str())
        .bind(task.map(|n| task_id(n).to_string()))
        .bind(kind)
        .bind(amount)
        .execute(&raw)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO idempotency_keys (account_id, key, request_hash, task_id, created_at_ms) \
         VALUES ($1, 'retry-1', $2, $3, $4)",
    )
    .bind(key(&live).as_str())
    .bind(b"body".to_vec())
    .bind(task_id(1).as_str())
    .bind(now_ms())
    .execute(&raw)
    .await
    .unwrap();
    raw.close().await;

    let store = connect(url).await.unwrap();
    let org = |ulid: &str| OrgId::new(format!("org_{ulid}"));
    assert_eq!(store.list_organizations().await.unwrap().len(), 3);
    let account = store.account(&key(&live)).await.unwrap().unwrap();
    assert_eq!(account.organization_id, org(&live));
    assert_eq!(account.balance_usd_micros, 7_500_000);
    assert_eq!(
        (account.used_usd_micros, account.status),
        (400_000, KeyStatus::Active)
    );
    assert_eq!(account.name, "live key");
    assert_eq!(store.ledger_sum(&key(&live)).await.unwrap(), 7_500_000);
    let organization = store.organization(&org(&live)).await.unwrap().unwrap();
    assert_eq!(organization.balance_usd_micros, 7_500_000);
    assert_eq!(organization.total_recharge_usd_micros, 8_000_000);
    assert_eq!(organization.total_used_usd_micros, 400_000);
    assert_eq!(
        store.organization_ledger_sum(&org(&live)).await.unwrap(),
        7_500_000
    );
    assert!(!organization.has_management_token);

    let play = store.account(&key(&test)).await.unwrap().unwrap();
    assert_eq!(
        (play.balance_usd_micros, play.used_usd_micros),
        (2_850_000, 150_000)
    );
    assert_eq!(store.ledger_sum(&key(&test)).await.unwrap(), 2_850_000);
    assert_eq!(
        store
            .organization(&org(&test))
            .await
            .unwrap()
            .unwrap()
            .balance_usd_micros,
        0
    );
    let gone = store.account(&key(&revoked)).await.unwrap().unwrap();
    assert_eq!(
        (gone.status, gone.balance_usd_micros),
        (KeyStatus::Revoked, 1_000_000)
    );
    assert!(store
        .account_by_secret(&format!("secret-{live}"))
        .await
        .unwrap()
        .is_some());

    let task = store
        .task_for_account(&key(&live), &task_id(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (task.state, task.cost_usd_micros),
        (TaskState::Succeeded, Some(400_000))
    );
    let kinds: Vec<String> = store
        .ledger_entries_for_task(&task_id(1))
        .await
        .unwrap()
        .into_iter()
        .map(|(kind, _)| kind)
        .collect();
    assert_eq!(kinds, ["reserve", "release", "charge"]);
    assert_eq!(store.count_tasks(&key(&live)).await.unwrap(), 2);
    let usage = store
        .charge_totals(&key(&live), &UsageFilter::default())
        .await
        .unwrap();
    assert_eq!((usage.requests(), usage.cost_usd_micros()), (1, 400_000));

    // The upgraded books keep working: a repeat replays, the open reservation settles, and
    // a cap set now counts what the key already holds.
    let repeat = IdempotencyKey {
        key: "retry-1",
        request_hash: b"body",
    };
    let replayed = store
        .create_task(new_task(&key(&live), 50, 1), Some(repeat))
        .await
        .unwrap();
    assert!(replayed.replayed && replayed.task.id == task_id(1));
    charge(&store, &task_id(2), 60_000).await;
    assert_eq!(store.ledger_sum(&key(&live)).await.unwrap(), 7_540_000);
    assert_eq!(
        store.organization_ledger_sum(&org(&live)).await.unwrap(),
        7_540_000
    );
    let cap = KeyUpdate {
        limit_usd_micros: Some(Some(460_001)),
        ..KeyUpdate::default()
    };
    store
        .update_key(&org(&live), &key(&live), &cap)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(
        store.create_task(new_task(&key(&live), 51, 2), None).await,
        Err(StoreError::KeyLimitExceeded {
            committed_usd_micros: 460_000,
            ..
        })
    ));
}

#[tokio::test]
async fn upgrade_keeps_every_row_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
    upgrade_keeps_every_key_balance_task_and_ledger_entry(&url, migrations::SQLITE, 9).await;
}

#[tokio::test]
async fn upgrade_keeps_every_row_postgres() {
    let url = postgres::create_scratch_schema(&postgres::test_server_url())
        .await
        .expect("a PostgreSQL server for the store tests");
    upgrade_keeps_every_key_balance_task_and_ledger_entry(&url, migrations::POSTGRES, 3).await;
}

/// The task as the database holds it, past the store's task cache.
async fn stored_task(store: &Store, account: &AccountId, id: &TaskId) -> TaskRecord {
    let ids = [id.clone()];
    let filter = TaskFilter {
        ids: &ids,
        limit: 1,
        ..TaskFilter::default()
    };
    store.list_tasks(account, &filter).await.unwrap().remove(0)
}

on_both_backends! {
    async fn a_read_after_any_write_sees_it_while_others_keep_reading(db: &Db) {
        let store = &db.store;
        let account = test_account(store).await;
        let channel = ChannelId::new("volc");
        for n in 0..25 {
            let id = store
                .create_task(new_task(&account, n, 10), None)
                .await
                .unwrap()
                .task
                .id;
            // Polls from other clients keep filling the cache while the task moves on.
            let readers: Vec<_> = (0..3)
                .map(|_| {
                    let (store, id) = (store.clone(), id.clone());
                    tokio::spawn(async move {
                        for _ in 0..200 {
                            store.task(&id).await.unwrap();
                            tokio::task::yield_now().await;
                        }
                    })
                })
                .collect();
            let check = |step: &'static str| {
                let (store, account, id) = (store.clone(), account.clone(), id.clone());
                async move {
                    let polled = store.task(&id).await.unwrap().unwrap();
                    let stored = stored_task(&store, &account, &id).await;
                    assert_eq!(
                        (polled.state, polled.public_status(), polled.polls, polled.updated_at_ms),
                        (stored.state, stored.public_status(), stored.polls, stored.updated_at_ms),
                        "after {step}"
                    );
                }
            };
            check("create").await;
            let (claimed, _) = store.claim_task("w", 60_000, 100).await.unwrap().unwrap();
            assert_eq!(claimed.id, id);
            check("claim").await;
            assert!(store.reserve_channel(&id, "w", &channel, 100).await.unwrap());
            check("reserve_channel").await;
            let submission = UpstreamSubmission {
                channel: &channel,
                upstream_id: &format!("cgt-{n}"),
                vendor: "ark",
                next_poll_at_ms: 0,
                upstream_expires_at_ms: i64::MAX,
            };
            assert!(store.record_submission(&id, "w", &submission).await.unwrap());
            check("record_submission").await;
            assert_eq!(store.claim_polls(&channel, 60_000, 10).await.unwrap().len(), 1);
            assert!(store.lease_polled(&id, "w", 60_000).await.unwrap());
            check("lease_polled").await;
            let seen = PollSeen {
                phase: Some(UpstreamPhase::Running),
                ..PollSeen::default()
            };
            assert!(store.schedule_poll(&id, "w", 0, &seen).await.unwrap());
            check("schedule_poll").await;
            assert_eq!(store.claim_polls(&channel, 60_000, 10).await.unwrap().len(), 1);
            let next = ScheduledPoll { id: id.clone(), next_poll_at_ms: 0, phase: Some(UpstreamPhase::Queued) };
            assert_eq!(store.schedule_polls(&[next]).await.unwrap(), 1);
            check("schedule_polls").await;
            assert_eq!(store.claim_polls(&channel, 60_000, 10).await.unwrap().len(), 1);
            assert!(store.lease_polled(&id, "w", 60_000).await.unwrap());
            assert!(store.finish_succeeded(&id, "w", settlement(5)).await.unwrap());
            check("finish_succeeded").await;
            for reader in readers {
                reader.await.unwrap();
            }
        }
    }
}

on_both_backends! {
    async fn a_submission_or_poll_round_under_a_lost_lease_changes_nothing(db: &Db) {
        let store = &db.store;
        let account = test_account(store).await;
        let channel = ChannelId::new("volc");
        let id = store.create_task(new_task(&account, 0, 10), None).await.unwrap().task.id;
        store.claim_task("w", 60_000, 100).await.unwrap().unwrap();
        assert!(store.reserve_channel(&id, "w", &channel, 100).await.unwrap());
        let submission = UpstreamSubmission {
            channel: &channel,
            upstream_id: "cgt-0",
            vendor: "ark",
            next_poll_at_ms: 0,
            upstream_expires_at_ms: i64::MAX,
        };
        assert!(!store.record_submission(&id, "other", &submission).await.unwrap());
        let task = stored_task(store, &account, &id).await;
        assert_eq!((task.state, task.upstream_id), (TaskState::Submitting, None));
        assert!(store.claim_polls(&channel, 60_000, 10).await.unwrap().is_empty());

        assert!(store.record_submission(&id, "w", &submission).await.unwrap());
        assert_eq!(store.claim_polls(&channel, 60_000, 10).await.unwrap().len(), 1);
        assert!(store.lease_polled(&id, "w", 60_000).await.unwrap());
        let seen = PollSeen {
            phase: Some(UpstreamPhase::Running),
            ..PollSeen::default()
        };
        assert!(!store.schedule_poll(&id, "other", 0, &seen).await.unwrap());
        let task = stored_task(store, &account, &id).await;
        assert_eq!((task.polls, task.upstream_phase), (0, None));
        assert!(store.claim_polls(&channel, 60_000, 10).await.unwrap().is_empty());

        assert!(store.schedule_poll(&id, "w", 0, &seen).await.unwrap());
        let task = stored_task(store, &account, &id).await;
        assert_eq!((task.polls, task.upstream_phase), (1, Some(UpstreamPhase::Running)));
        assert_eq!(store.claim_polls(&channel, 60_000, 10).await.unwrap().len(), 1);
    }
}

/// Two replicas on one database: what one changes, the other shows within the stated bound,
/// by the change's announcement or, when that is lost, by the cached copy's expiry.
#[tokio::test]
async fn a_replica_never_shows_a_task_older_than_the_stated_bound() {
    use std::time::{Duration, Instant};

    let db = Db::postgres().await;
    let (writer, reader) = (&db.store, connect(&db.url).await.unwrap());
    let account = test_account(writer).await;
    let bound = postgres::TASK_CACHE_BOUND;
    // Polls 2 ms apart; a stale answer later than this after the change breaks the promise.
    let shown_within = |id: TaskId, state: TaskState| {
        let reader = reader.clone();
        async move {
            let changed = Instant::now();
            loop {
                let asked = Instant::now();
                if reader.task(&id).await.unwrap().unwrap().state == state {
                    return changed.elapsed();
                }
                assert!(
                    asked.duration_since(changed) <= bound,
                    "a replica still showed the old state {:?} after the change",
                    asked.duration_since(changed)
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    let mut announced = Vec::new();
    for n in 0..10 {
        let id = create_unique(writer, &account, n).await;
        // The reader caches the queued task, then the writer takes it.
        assert_eq!(
            reader.task(&id).await.unwrap().unwrap().state,
            TaskState::Queued
        );
        writer.claim_task("w", 60_000, 100).await.unwrap().unwrap();
        announced.push(shown_within(id.clone(), TaskState::Submitting).await);
        writer
            .finish_succeeded(&id, "w", settlement(1))
            .await
            .unwrap();
    }
    announced.sort();
    assert!(
        announced[announced.len() / 2] < bound / 4,
        "announced changes should arrive long before the bound: {announced:?}"
    );

    // Announcements lost (of changes and of creations alike): the cached copy still expires
    // within the bound.
    let raw = db.raw().await;
    for trigger in ["tasks_announce_change", "tasks_announce_creation"] {
        sqlx::query(&format!("ALTER TABLE tasks DISABLE TRIGGER {trigger}"))
            .execute(&raw)
            .await
            .unwrap();
    }
    let id = create_unique(writer, &account, 100).await;
    // Read more than once: a read that raced an announcement of another task is not cached.
    for _ in 0..3 {
        assert_eq!(
            reader.task(&id).await.unwrap().unwrap().state,
            TaskState::Queued
        );
    }
    writer.claim_task("w", 60_000, 100).await.unwrap().unwrap();
    let unannounced = shown_within(id, TaskState::Submitting).await;
    assert!(
        unannounced > bound / 4,
        "without its announcement the change is seen only when the copy expires ({unannounced:?})"
    );
}

/// A task whose id no other test's database uses: announcements carry only the id, and every
/// scratch schema of the test server shares the channel.
async fn create_unique(store: &Store, account: &AccountId, n: usize) -> TaskId {
    let mut task = new_task(account, n, 10);
    task.id = TaskId::mint();
    store.create_task(task, None).await.unwrap().task.id
}

on_both_backends! {
    async fn a_create_is_answered_with_the_row_as_stored(db: &Db) {
        let store = &db.store;
        let account = test_account(store).await;
        let mut task = new_task(&account, 1, 25);
        task.callback_url = Some("https://example.com/hook".into());
        task.request_id = Some("req_1".into());
        task.deadline_at_ms = 4_102_444_800_000;
        let key = IdempotencyKey { key: "k1", request_hash: b"h" };
        let plain = store.create_task(new_task(&account, 2, 25), None).await.unwrap().task;
        let keyed = store.create_task(task, Some(key)).await.unwrap().task;
        for created in [plain, keyed] {
            let stored = stored_task(store, &account, &created.id).await;
            assert_eq!(format!("{created:?}"), format!("{stored:?}"));
        }
    }
}

/// A test key with play money to spare.
async fn test_account(store: &Store) -> AccountId {
    store
        .create_key(&KeySpec::plain("k", KeyMode::Test, 1_000_000))
        .await
        .unwrap()
        .account
        .id
}

/// `count` tasks submitted upstream on `channel`, each due for its first poll at `due_at`.
async fn submitted(
    store: &Store,
    account: &AccountId,
    channel: &ChannelId,
    first: usize,
    count: usize,
    due_at: impl Fn(usize) -> i64,
) -> Vec<TaskId> {
    let mut ids = Vec::new();
    for n in first..first + count {
        store
            .create_task(new_task(account, n, 100), None)
            .await
            .unwrap();
        let (task, _) = store
            .claim_task("submitter", 60_000, 1_000)
            .await
            .unwrap()
            .unwrap();
        let submission = UpstreamSubmission {
            channel,
            upstream_id: &format!("cgt-{n}"),
            vendor: "ark",
            next_poll_at_ms: due_at(n),
            upstream_expires_at_ms: i64::MAX,
        };
        assert!(store
            .record_submission(&task.id, "submitter", &submission)
            .await
            .unwrap());
        ids.push(task.id);
    }
    ids
}

on_both_backends! {
    async fn polls_are_claimed_by_channel_most_overdue_first_and_a_callback_jumps_the_line(db: &Db) {
        let store = &db.store;
        let key = store.create_key(&KeySpec::plain("k", KeyMode::Test, 100_000_000)).await.unwrap();
        let account = &key.account.id;
        let (volc, byte) = (ChannelId::new("volc"), ChannelId::new("byte"));
        let now = now_ms();
        // Due 6 s, 5 s, … 1 s ago; one not due for an hour; one due on another channel.
        let due = submitted(store, account, &volc, 0, 6, |n| now - 6_000 + n as i64 * 1_000).await;
        let later = submitted(store, account, &volc, 6, 1, |_| now + 3_600_000).await;
        let other = submitted(store, account, &byte, 7, 1, |_| now - 60_000).await;
        let ids = |claimed: Vec<(TaskRecord, String)>| -> Vec<TaskId> {
            let mut ids: Vec<TaskId> = claimed.into_iter().map(|(task, _)| task.id).collect();
            ids.sort();
            ids
        };

        let first = ids(store.claim_polls(&volc, 60_000, 4).await.unwrap());
        let mut expected = due[..4].to_vec();
        expected.sort();
        assert_eq!(first, expected, "the four most overdue of this channel");
        // Claimed tasks are not due again until their claim runs out; the rest of the due are.
        let second = ids(store.claim_polls(&volc, 60_000, 10).await.unwrap());
        assert_eq!(second.len(), 2);
        assert!(second.iter().all(|id| due[4..].contains(id)));
        assert!(store.claim_polls(&volc, 60_000, 10).await.unwrap().is_empty());

        // A callback arrives for a task while its poll is under way: the flag outlives the
        // poll's schedule, and puts the task ahead of every overdue one.
        assert!(store.poll_soon(&first[0]).await.unwrap());
        let schedule = |id: &TaskId, at: i64| ScheduledPoll {
            id: id.clone(),
            next_poll_at_ms: at,
            phase: Some(UpstreamPhase::Running),
        };
        let polls: Vec<ScheduledPoll> = first.iter().map(|id| schedule(id, now - 1_000)).collect();
        assert_eq!(store.schedule_polls(&polls).await.unwrap(), 4);
        let moved = store.task(&first[1]).await.unwrap().unwrap();
        assert_eq!(moved.upstream_phase, Some(UpstreamPhase::Running));
        let next = store.claim_polls(&volc, 60_000, 1).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].0.id, first[0], "the flagged task first");
        assert_eq!(next[0].0.polls, 1, "one poll so far");
        // Another channel's polls are its own.
        assert_eq!(ids(store.claim_polls(&byte, 60_000, 10).await.unwrap()), other);
        // A task that ended is not polled again, and a task a worker holds is the worker's.
        assert!(store.lease_polled(&first[1], "w", 60_000).await.unwrap());
        assert!(!store.lease_polled(&first[1], "w2", 60_000).await.unwrap(), "held by w");
        assert!(store.finish_failed(&first[1], "w", "boom", "failed").await.unwrap());
        assert!(store.lease_polled(&first[2], "w", 60_000).await.unwrap());
        let rest = ids(store.claim_polls(&volc, 60_000, 10).await.unwrap());
        let mut expected = vec![first[3].clone()];
        expected.sort();
        assert_eq!(rest, expected, "neither the ended task nor the held one");
        assert_eq!(store.task(&later[0]).await.unwrap().unwrap().polls, 0, "not due, not polled");

        // A callback that arrives before its task's submission is recorded is not lost.
        store.create_task(new_task(account, 20, 100), None).await.unwrap();
        let (early, _) = store.claim_task("s", 60_000, 1_000).await.unwrap().unwrap();
        assert!(store.reserve_channel(&early.id, "s", &volc, 1_000).await.unwrap());
        assert!(store.poll_soon(&early.id).await.unwrap());
        assert!(store.claim_polls(&volc, 60_000, 10).await.unwrap().is_empty(), "not submitted yet");
        let submission = UpstreamSubmission {
            channel: &volc,
            upstream_id: "cgt-early",
            vendor: "ark",
            next_poll_at_ms: now_ms() + 3_600_000,
            upstream_expires_at_ms: i64::MAX,
        };
        assert!(store.record_submission(&early.id, "s", &submission).await.unwrap());
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
        let claimed = ids(store.claim_polls(&volc, 60_000, 10).await.unwrap());
        assert_eq!(claimed, vec![early.id], "polled within a second, not in an hour");
    }
}

/// SQLite only: writes that never pause, with readers always at work, keep the log within its
/// bound. Without the RESTART checkpoint this log holds every page written (6.7 GB in the
/// in-flight bench). Here the bound is 1 MiB, checked every 100 ms, against 128 MiB written.
#[tokio::test]
async fn the_write_ahead_log_stays_bounded_under_writes_that_never_pause() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let checkpoints = sqlite::Checkpoints {
        every: std::time::Duration::from_millis(100),
        bound_pages: 256,
    };
    const WRITTEN_AT_LEAST: u64 = 128 << 20;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.db");
    let url = format!("sqlite://{}", path.display());
    let store: Store = Arc::new(
        sqlite::connect_checkpointing(&url, checkpoints)
            .await
            .unwrap(),
    );
    let key = store
        .create_key(&KeySpec::plain("k", KeyMode::Test, i64::MAX / 2))
        .await
        .unwrap();
    let raw = AnyPool::connect(&url).await.unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    // A request as large as a real one with a long prompt.
    let request = format!("{{\"prompt\": \"{}\"}}", "a red kite ".repeat(800));
    let mut work = Vec::new();
    for _ in 0..4 {
        let (store, done, next) = (store.clone(), done.clone(), next.clone());
        let (account, request) = (key.account.id.clone(), request.clone());
        work.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let mut task = new_task(&account, next.fetch_add(1, Ordering::Relaxed), 1);
                task.request_json = request.clone();
                store.create_task(task, None).await.unwrap();
            }
        }));
    }
    for _ in 0..2 {
        let (raw, done) = (raw.clone(), done.clone());
        work.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                sqlx::query("SELECT count(*) FROM tasks")
                    .fetch_one(&raw)
                    .await
                    .unwrap();
            }
        }));
    }
    let log = dir.path().join("test.db-wal");
    let mut largest_log = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        largest_log = largest_log.max(std::fs::metadata(&log).map_or(0, |m| m.len()));
        if (next.load(Ordering::Relaxed) * request.len()) as u64 >= WRITTEN_AT_LEAST {
            break;
        }
    }
    done.store(true, Ordering::Relaxed);
    for w in work {
        w.await.unwrap();
    }
    let database = std::fs::metadata(&path).unwrap().len();
    assert!(
        database >= WRITTEN_AT_LEAST,
        "{database} bytes in the database file"
    );
    // Without the RESTART checkpoint the log would hold every page written, all of it. With
    // it, the log is begun again once past the bound; the file keeps its largest size, which on
    // a machine busy with other tests (four writers and two readers sharing two cores with
    // them) has reached 39 MB when the checkpoint lagged: half of what was written still tells
    // a log begun again from one that never is.
    assert!(
        largest_log < WRITTEN_AT_LEAST / 2,
        "the log reached {largest_log} bytes with a bound of {} pages",
        checkpoints.bound_pages
    );
}

on_both_backends! {
    async fn an_asset_joins_only_a_live_group_of_its_own_organization_and_project(db: &Db) {
        use materials::{AssetType, GroupRefused, LibraryType, NewAsset, NewGroup};

        let store = &db.store;
        let owner = store
            .create_key(&KeySpec::plain("owner", KeyMode::Test, 0))
            .await
            .unwrap()
            .account;
        let stranger = store
            .create_key(&KeySpec::plain("stranger", KeyMode::Test, 0))
            .await
            .unwrap()
            .account;
        let new_group = |project| NewGroup {
            organization_id: &owner.organization_id,
            project_name: project,
            library_type: LibraryType::AigcAvatar,
            group_name: None,
            description: None,
            metadata: None,
        };
        let group = store.create_group(&new_group("default")).await.unwrap();
        let doomed = store.create_group(&new_group("default")).await.unwrap();
        store
            .delete_group(&owner.organization_id, &doomed.id)
            .await
            .unwrap()
            .unwrap();
        let missing = MaterialGroupId::mint();
        let asset = |organization_id, project_name, group_id| NewAsset {
            organization_id,
            project_name,
            group_id: Some(group_id),
            library_type: LibraryType::AigcAvatar,
            asset_name: None,
            asset_type: AssetType::Image,
            source_url: "https://example.com/a.png",
            metadata: None,
            lease_ms: 60_000,
        };
        let assets = || async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM material_assets")
                .fetch_one(&db.raw().await)
                .await
                .unwrap()
        };

        for (refused, why) in [
            // Another organization's group is no group at all to this caller.
            (asset(&stranger.organization_id, "default", &group.id), GroupRefused::Unknown),
            (asset(&owner.organization_id, "default", &missing), GroupRefused::Unknown),
            (asset(&owner.organization_id, "other", &group.id), GroupRefused::Unknown),
            (asset(&owner.organization_id, "default", &doomed.id), GroupRefused::Deleted),
        ] {
            let outcome = store.create_asset_in_group(&refused).await.unwrap();
            assert_eq!(outcome.err(), Some(why));
            assert_eq!(assets().await, 0, "a refused asset left a row");
        }

        let created = store
            .create_asset_in_group(&asset(&owner.organization_id, "default", &group.id))
            .await
            .unwrap()
            .expect("an asset in a live group of its own organization is stored");
        assert_eq!(created.group_id.as_ref(), Some(&group.id));
        assert_eq!(assets().await, 1);
    }
}

on_both_backends! {
    async fn the_waiting_tasks_are_listed_oldest_first_whatever_order_they_came_in(db: &Db) {
        let key = db
            .store
            .create_key(&KeySpec::plain("k", KeyMode::Test, 1_000_000))
            .await
            .unwrap();
        for n in [5, 2, 8, 3] {
            db.store
                .create_task(new_task(&key.account.id, n, 1), None)
                .await
                .unwrap();
        }
        let (claimed, _) = db.store.claim_task("w", 60_000, 100).await.unwrap().unwrap();
        let mut waiting: Vec<TaskId> = [2, 3, 5, 8].map(task_id).into();
        waiting.retain(|id| *id != claimed.id);
        assert_eq!(db.store.queued_task_ids().await.unwrap(), waiting);
    }
}
