//! Where every write gets its connection, and in what order.
//!
//! On SQLite writes share one connection. It is the store's own rather than pooled: sqlx pings
//! a pooled connection each time it goes back, one more trip to the connection's thread during
//! which no write can start. Writes wait for it in the order they asked (a fair mutex), so a
//! write waits for every write queued before it. A caller waits for
//! its create group's commit; nobody waits on the engine's writes (claims, submissions, poll
//! rounds) in the same way. So on SQLite every write other than a create group takes a turn,
//! holding it until it has the connection: at most one of them is ever queued ahead of a
//! group, and a group queued ahead of a write holds it up for one commit only, so neither side
//! can starve the other. On PostgreSQL writes run on a pool of many connections and take no
//! turns.
//!
//! Every statement sent to SQLite is a trip to its connection's thread and back, which costs
//! far more than the statement itself; so SQLite transactions are opened and committed by
//! statements of their own, which can travel with the transaction's first and last
//! statements (see [`WriteTransaction::opening`] and [`WriteTransaction::closing`]), rather
//! than by sqlx's transaction manager (two trips to begin, one to commit).

use std::borrow::Cow;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Database, Executor, TransactionManager};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::Dialect;
use crate::store::StoreError;

#[derive(Clone)]
pub(in crate::store) struct Writer {
    connections: Connections,
}

#[derive(Clone)]
enum Connections {
    /// PostgreSQL.
    Pooled(AnyPool),
    /// SQLite.
    Held {
        connection: Arc<Mutex<HeldConnection>>,
        /// Held by a write other than a create group from its turn until it has the
        /// connection.
        turns: Arc<Mutex<()>>,
    },
}

/// SQLite's write connection, and whether a transaction may have been left open on it.
pub(in crate::store) struct HeldConnection {
    connection: AnyConnection,
    /// Set from a transaction's `BEGIN` until its end is confirmed. A transaction that fails
    /// or is dropped half way leaves it set: a task spawned on the drop rolls it back, or
    /// else the next write does, first.
    maybe_open: bool,
}

impl HeldConnection {
    async fn roll_back_what_was_left_open(&mut self) -> Result<(), StoreError> {
        if !self.maybe_open {
            return Ok(());
        }
        match self.connection.execute("ROLLBACK").await {
            Ok(_) => {}
            // The transaction had ended after all: its COMMIT had travelled with its last
            // statement.
            Err(sqlx::Error::Database(error)) if error.message().contains("no transaction") => {}
            Err(error) => return Err(error.into()),
        }
        self.maybe_open = false;
        Ok(())
    }
}

/// IMMEDIATE takes the write lock up front, so a read-then-write transaction cannot fail half
/// way with SQLITE_BUSY when another process writes to the file.
const SQLITE_BEGIN: &str = "BEGIN IMMEDIATE";

impl Writer {
    /// Writes on connections from a PostgreSQL `pool`, each returned after its write.
    pub(in crate::store) fn pooled(pool: AnyPool) -> Self {
        Self {
            connections: Connections::Pooled(pool),
        }
    }

    /// Writes on a SQLite `connection` alone.
    pub(in crate::store) fn held(connection: AnyConnection) -> Self {
        Self {
            connections: Connections::Held {
                connection: Arc::new(Mutex::new(HeldConnection {
                    connection,
                    maybe_open: false,
                })),
                turns: Arc::new(Mutex::new(())),
            },
        }
    }

    pub(super) fn dialect(&self) -> Dialect {
        match self.connections {
            Connections::Pooled(_) => Dialect::Postgres,
            Connections::Held { .. } => Dialect::Sqlite,
        }
    }

    /// A connection for statements that each commit on their own.
    pub(in crate::store) async fn connection(&self) -> Result<WriteConnection, StoreError> {
        self.take(true).await
    }

    /// A write transaction, open on return.
    pub(super) async fn begin(&self) -> Result<WriteTransaction, StoreError> {
        let mut tx = WriteTransaction::start(self.take(true).await?).await?;
        if tx.stage == Stage::Unopened {
            tx.connection.execute(SQLITE_BEGIN).await?;
            tx.stage = Stage::Open;
        }
        Ok(tx)
    }

    /// A transaction of one statement, returned with `statement` as it must be sent: whole, as
    /// [`WriteTransaction::closing`] says, then [`commit`](WriteTransaction::commit)ted. On SQLite it
    /// carries its BEGIN and COMMIT, so the transaction costs a single trip.
    pub(super) async fn begin_one_statement(
        &self,
        statement: &str,
    ) -> Result<(WriteTransaction, String), StoreError> {
        let mut tx = WriteTransaction::start(self.take(true).await?).await?;
        let whole = tx.closing(statement).into_owned();
        Ok((tx, whole))
    }

    /// A create group's transaction, queued behind at most one other write; its first
    /// statement opens it.
    pub(super) async fn begin_group(&self) -> Result<WriteTransaction, StoreError> {
        WriteTransaction::start(self.take(false).await?).await
    }

    async fn take(&self, in_turn: bool) -> Result<WriteConnection, StoreError> {
        match &self.connections {
            Connections::Pooled(pool) => Ok(WriteConnection::Pooled(pool.acquire().await?)),
            Connections::Held { connection, turns } => {
                let _turn = match in_turn {
                    true => Some(turns.lock().await),
                    false => None,
                };
                let mut held = connection.clone().lock_owned().await;
                held.roll_back_what_was_left_open().await?;
                Ok(WriteConnection::Held(held))
            }
        }
    }
}

/// A writer's connection, for as long as a write needs it.
pub(in crate::store) enum WriteConnection {
    Pooled(PoolConnection<Any>),
    Held(OwnedMutexGuard<HeldConnection>),
}

impl Deref for WriteConnection {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            Self::Pooled(connection) => connection,
            Self::Held(held) => &held.connection,
        }
    }
}

impl DerefMut for WriteConnection {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Self::Pooled(connection) => connection,
            Self::Held(held) => &mut held.connection,
        }
    }
}

/// A transaction on a [`WriteConnection`]. On PostgreSQL sqlx's transaction manager opens it,
/// commits it and rolls it back when dropped uncommitted. On SQLite it is opened by the
/// statement handed to [`opening`](Self::opening) and, when a statement goes through
/// [`closing`](Self::closing), committed by it; one dropped uncommitted is rolled back as
/// soon as the connection is free (see [`HeldConnection`]).
pub(super) struct WriteTransaction {
    connection: WriteConnection,
    stage: Stage,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// SQLite: no statement has opened it yet.
    Unopened,
    /// Open, or opened by the statement [`opening`](WriteTransaction::opening) returned.
    Open,
    /// SQLite: the statement [`closing`](WriteTransaction::closing) returned carries its commit.
    CommitSent,
    /// Committed or rolled back.
    Ended,
}

type Manager = <Any as Database>::TransactionManager;

impl WriteTransaction {
    async fn start(mut connection: WriteConnection) -> Result<Self, StoreError> {
        let stage = match &mut connection {
            WriteConnection::Pooled(pooled) => {
                Manager::begin(pooled, None).await?;
                Stage::Open
            }
            WriteConnection::Held(held) => {
                held.maybe_open = true;
                Stage::Unopened
            }
        };
        Ok(Self { connection, stage })
    }

    /// `first`, the transaction's first statement, with what opens the transaction ahead of it
    /// on SQLite: one trip for both.
    pub(super) fn opening<'s>(&mut self, first: &'s str) -> Cow<'s, str> {
        if self.stage != Stage::Unopened {
            return Cow::Borrowed(first);
        }
        self.stage = Stage::Open;
        Cow::Owned(format!("{SQLITE_BEGIN}; {first}"))
    }

    /// `last`, the transaction's last statement, with the commit after it on SQLite (and the
    /// opening before it, if no statement has opened the transaction): one trip for all;
    /// [`commit`](Self::commit) then only confirms it. It must run whole (`execute` or
    /// `fetch_all`; `fetch_optional` stops at BEGIN's empty result or the first row), and its
    /// `rows_affected` means nothing (sqlx adds SQLite's count of the last change after BEGIN
    /// and COMMIT, which is an earlier statement's).
    pub(super) fn closing<'s>(&mut self, last: &'s str) -> Cow<'s, str> {
        if let WriteConnection::Pooled(_) = self.connection {
            return Cow::Borrowed(last);
        }
        let opened = self.opening(last);
        self.stage = Stage::CommitSent;
        Cow::Owned(format!("{opened}; COMMIT"))
    }

    pub(super) async fn commit(mut self) -> Result<(), StoreError> {
        match &mut self.connection {
            WriteConnection::Pooled(connection) => Manager::commit(connection).await?,
            WriteConnection::Held(held) => {
                // Nothing to commit when no statement opened it, or its last carried the commit.
                if self.stage == Stage::Open {
                    held.connection.execute("COMMIT").await?;
                }
                held.maybe_open = false;
            }
        }
        self.stage = Stage::Ended;
        Ok(())
    }

    pub(super) async fn rollback(mut self) -> Result<(), StoreError> {
        match &mut self.connection {
            WriteConnection::Pooled(connection) => Manager::rollback(connection).await?,
            WriteConnection::Held(held) => {
                if self.stage != Stage::Unopened {
                    held.connection.execute("ROLLBACK").await?;
                }
                held.maybe_open = false;
            }
        }
        self.stage = Stage::Ended;
        Ok(())
    }
}

impl Drop for WriteTransaction {
    fn drop(&mut self) {
        let held = match &mut self.connection {
            WriteConnection::Pooled(pooled) => {
                if self.stage == Stage::Open {
                    Manager::start_rollback(pooled);
                }
                return;
            }
            WriteConnection::Held(held) => held,
        };
        if self.stage == Stage::Unopened {
            // Nothing was sent.
            held.maybe_open = false;
        }
        if !held.maybe_open {
            return;
        }
        // Rolled back now rather than at the next write, so that another process waiting to
        // write to the file is not held up meanwhile; without a runtime, the next write does it.
        let connection = OwnedMutexGuard::mutex(held).clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut held = connection.lock().await;
                if let Err(error) = held.roll_back_what_was_left_open().await {
                    tracing::warn!(%error, "rolling back an abandoned write failed");
                }
            });
        }
    }
}

impl Deref for WriteTransaction {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.connection
    }
}

impl DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        debug_assert!(
            self.stage != Stage::Unopened,
            "a statement ran ahead of the one that opens its transaction"
        );
        &mut self.connection
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;
    use std::time::Duration;

    async fn sqlite_in_memory() -> AnyConnection {
        sqlx::any::install_default_drivers();
        AnyConnection::connect("sqlite::memory:").await.unwrap()
    }

    /// A writer on `connection` whose table `t` is empty, after a transaction that inserted 1
    /// into it was dropped uncommitted.
    async fn with_an_abandoned_write(connection: AnyConnection) -> Writer {
        let writer = Writer::held(connection);
        sqlx::query("CREATE TABLE t (n INTEGER)")
            .execute(&mut *writer.connection().await.unwrap())
            .await
            .unwrap();
        {
            let mut abandoned = writer.begin().await.unwrap();
            sqlx::query("INSERT INTO t VALUES (1)")
                .execute(&mut *abandoned)
                .await
                .unwrap();
        }
        writer
    }

    #[tokio::test]
    async fn a_transaction_dropped_uncommitted_is_rolled_back_for_the_next_write() {
        let writer = with_an_abandoned_write(sqlite_in_memory().await).await;
        // A transaction left open would refuse this one's BEGIN.
        let mut tx = writer.begin().await.unwrap();
        sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let rows: Vec<i64> = sqlx::query_scalar("SELECT n FROM t")
            .fetch_all(&mut *writer.connection().await.unwrap())
            .await
            .unwrap();
        assert_eq!(rows, [2]);
    }

    /// Another process waiting to write to the file gets through without a write of ours
    /// coming first.
    #[tokio::test]
    async fn a_dropped_transaction_lets_go_of_the_file_at_once() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        // Kept open to the end, as a running gateway keeps it.
        let _writer = with_an_abandoned_write(AnyConnection::connect(&url).await.unwrap()).await;
        // sqlx's busy timeout (5 s) is longer than this wait.
        let mut other = AnyConnection::connect(&url).await.unwrap();
        tokio::time::timeout(
            Duration::from_secs(2),
            sqlx::query("INSERT INTO t VALUES (2)").execute(&mut other),
        )
        .await
        .expect("the abandoned transaction still holds the write lock")
        .unwrap();
        let rows: Vec<i64> = sqlx::query_scalar("SELECT n FROM t")
            .fetch_all(&mut other)
            .await
            .unwrap();
        assert_eq!(rows, [2]);
    }

    #[tokio::test]
    async fn a_one_statement_transaction_commits_whole_or_leaves_nothing() {
        let writer = Writer::held(sqlite_in_memory().await);
        sqlx::query("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .execute(&mut *writer.connection().await.unwrap())
            .await
            .unwrap();
        let (mut tx, statement) = writer
            .begin_one_statement("INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        let failed = sqlx::query(&statement).execute(&mut *tx).await;
        assert!(failed.is_err(), "the second insert breaks the key");
        drop(tx);
        let (mut tx, statement) = writer
            .begin_one_statement("INSERT INTO t VALUES (2)")
            .await
            .unwrap();
        sqlx::query(&statement).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        // A transaction left open would refuse this one's BEGIN.
        writer.begin().await.unwrap().rollback().await.unwrap();
        let rows: Vec<i64> = sqlx::query_scalar("SELECT n FROM t")
            .fetch_all(&mut *writer.connection().await.unwrap())
            .await
            .unwrap();
        assert_eq!(rows, [2]);
    }

    /// Of the writes waiting when a group arrives, only the one already queued for the
    /// connection goes first.
    #[tokio::test]
    async fn a_create_group_waits_for_at_most_one_other_write() {
        let writer = Writer::held(sqlite_in_memory().await);
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        // The connection is busy while the others line up.
        let holder = writer.begin().await.unwrap();
        let mut waiting = Vec::new();
        for write in 0..3 {
            let (writer, order) = (writer.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let tx = writer.begin().await.unwrap();
                order.lock().unwrap().push(format!("write {write}"));
                tx.commit().await.unwrap();
            }));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let group = {
            let (writer, order) = (writer.clone(), order.clone());
            tokio::spawn(async move {
                let tx = writer.begin_group().await.unwrap();
                order.lock().unwrap().push("group".to_owned());
                tx.commit().await.unwrap();
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        holder.commit().await.unwrap();
        group.await.unwrap();
        for write in waiting {
            write.await.unwrap();
        }
        // The first write had taken its turn and was already waiting for the connection.
        assert_eq!(
            *order.lock().unwrap(),
            ["write 0", "group", "write 1", "write 2"]
        );
    }

    #[tokio::test]
    async fn writes_get_through_while_groups_never_pause() {
        let writer = Writer::held(sqlite_in_memory().await);
        let groups = {
            let writer = writer.clone();
            tokio::spawn(async move {
                loop {
                    let tx = writer.begin_group().await.unwrap();
                    tokio::task::yield_now().await;
                    tx.commit().await.unwrap();
                }
            })
        };
        for _ in 0..50 {
            let mut connection = tokio::time::timeout(Duration::from_secs(5), writer.connection())
                .await
                .expect("a write waits for one group, not for every group after it")
                .unwrap();
            sqlx::query("SELECT 1")
                .execute(&mut *connection)
                .await
                .unwrap();
        }
        groups.abort();
    }
}
