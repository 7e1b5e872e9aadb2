//! Where every write gets its connection, and in what order.
//!
//! On SQLite writes share one connection, which the pool hands out in the order it was asked
//! for, so a write waits for every write queued before it. A caller waits for its create
//! group's commit; nobody waits on the engine's writes (claims, submissions, poll rounds) in
//! the same way. So on SQLite every write other than a create group goes to the pool in turn,
//! holding the turn until it has the connection: at most one of them is ever queued ahead of a
//! group, and a group queued ahead of a write holds it up for one commit only, so neither side
//! can starve the other. On PostgreSQL writes run on a pool of many connections and take no
//! turns.

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Transaction};
use std::sync::Arc;
use tokio::sync::{Mutex, MutexGuard};

use super::Dialect;
use crate::store::StoreError;

#[derive(Clone)]
pub(super) struct Writer {
    pool: AnyPool,
    dialect: Dialect,
    /// Held by a write other than a create group from its turn until it has the connection.
    turns: Option<Arc<Mutex<()>>>,
}

impl Writer {
    pub(super) fn new(pool: AnyPool, dialect: Dialect) -> Self {
        Self {
            pool,
            dialect,
            turns: (dialect == Dialect::Sqlite).then(|| Arc::new(Mutex::new(()))),
        }
    }

    pub(super) fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// A connection for statements that each commit on their own.
    pub(super) async fn connection(&self) -> Result<PoolConnection<Any>, StoreError> {
        let _turn = self.turn().await;
        Ok(self.pool.acquire().await?)
    }

    /// A write transaction.
    pub(super) async fn begin(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let _turn = self.turn().await;
        Ok(self.pool.begin_with(self.dialect.begin()).await?)
    }

    /// A create group's transaction, queued behind at most one other write.
    pub(super) async fn begin_group(&self) -> Result<Transaction<'static, Any>, StoreError> {
        Ok(self.pool.begin_with(self.dialect.begin()).await?)
    }

    async fn turn(&self) -> Option<MutexGuard<'_, ()>> {
        Some(self.turns.as_deref()?.lock().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn one_connection_sqlite() -> AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap()
    }

    /// Of the writes waiting when a group arrives, only the one already queued for the
    /// connection goes first.
    #[tokio::test]
    async fn a_create_group_waits_for_at_most_one_other_write() {
        let writer = Writer::new(one_connection_sqlite().await, Dialect::Sqlite);
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
        let writer = Writer::new(one_connection_sqlite().await, Dialect::Sqlite);
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
