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

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Database, TransactionManager};
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
        connection: Arc<Mutex<AnyConnection>>,
        /// Held by a write other than a create group from its turn until it has the
        /// connection.
        turns: Arc<Mutex<()>>,
    },
}

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
                connection: Arc::new(Mutex::new(connection)),
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

    /// A write transaction.
    pub(super) async fn begin(&self) -> Result<WriteTransaction, StoreError> {
        WriteTransaction::begin(self.take(true).await?, self.dialect().begin()).await
    }

    /// A create group's transaction, queued behind at most one other write.
    pub(super) async fn begin_group(&self) -> Result<WriteTransaction, StoreError> {
        WriteTransaction::begin(self.take(false).await?, self.dialect().begin()).await
    }

    async fn take(&self, in_turn: bool) -> Result<WriteConnection, StoreError> {
        match &self.connections {
            Connections::Pooled(pool) => Ok(WriteConnection::Pooled(pool.acquire().await?)),
            Connections::Held { connection, turns } => {
                let _turn = match in_turn {
                    true => Some(turns.lock().await),
                    false => None,
                };
                Ok(WriteConnection::Held(connection.clone().lock_owned().await))
            }
        }
    }
}

/// A writer's connection, for as long as a write needs it.
pub(in crate::store) enum WriteConnection {
    Pooled(PoolConnection<Any>),
    Held(OwnedMutexGuard<AnyConnection>),
}

impl Deref for WriteConnection {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            Self::Pooled(connection) => connection,
            Self::Held(connection) => connection,
        }
    }
}

impl DerefMut for WriteConnection {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Self::Pooled(connection) => connection,
            Self::Held(connection) => connection,
        }
    }
}

/// A transaction on a [`WriteConnection`]: what sqlx's `Transaction` does, over a connection
/// it cannot own. Rolled back when dropped uncommitted, through the same transaction manager.
pub(super) struct WriteTransaction {
    connection: WriteConnection,
    open: bool,
}

type Manager = <Any as Database>::TransactionManager;

impl WriteTransaction {
    async fn begin(
        mut connection: WriteConnection,
        statement: &'static str,
    ) -> Result<Self, StoreError> {
        Manager::begin(&mut connection, Some(statement.into())).await?;
        Ok(Self {
            connection,
            open: true,
        })
    }

    pub(super) async fn commit(mut self) -> Result<(), StoreError> {
        Manager::commit(&mut self.connection).await?;
        self.open = false;
        Ok(())
    }

    pub(super) async fn rollback(mut self) -> Result<(), StoreError> {
        Manager::rollback(&mut self.connection).await?;
        self.open = false;
        Ok(())
    }
}

impl Drop for WriteTransaction {
    fn drop(&mut self) {
        if self.open {
            Manager::start_rollback(&mut self.connection);
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

    #[tokio::test]
    async fn a_transaction_dropped_uncommitted_is_rolled_back_for_the_next_write() {
        let writer = Writer::held(sqlite_in_memory().await);
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
