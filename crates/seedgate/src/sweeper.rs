//! The sweeper: deletes the result files of tasks that ended more than
//! `assets.retention_seconds` ago, then records it on the task (which drops its stored inputs
//! too). The task stays readable, its result marked expired. Replicas may sweep at once: each
//! leases its own batch, and deleting a file that is already gone succeeds.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::assets::{AssetKind, Retention};
use crate::blobs::{BlobError, Blobs};
use crate::ids::TaskId;
use crate::store::{now_ms, Store, StoreError};

/// Tasks leased per step.
const BATCH: i64 = 100;
/// Ample for a batch's deletes; a sweeper that dies holds its batch this long.
const LEASE_MS: i64 = 10 * 60 * 1000;

pub struct Sweeper {
    store: Store,
    blobs: Arc<dyn Blobs>,
    retention: Retention,
}

impl Sweeper {
    pub fn new(store: Store, blobs: Arc<dyn Blobs>, retention: Retention) -> Self {
        Self {
            store,
            blobs,
            retention,
        }
    }

    /// Sweeps every `interval`, and at once again while whole batches are coming due.
    pub fn spawn(self: Arc<Self>, interval: Duration) {
        tokio::spawn(async move {
            loop {
                match self.sweep_batch().await {
                    Ok(swept) if swept == BATCH as usize => continue,
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, "sweeping expired files failed"),
                }
                tokio::time::sleep(interval).await;
            }
        });
    }

    /// Deletes the files of one batch of tasks past their retention and records each; returns
    /// how many were swept. A task whose files could not be deleted is left to a later sweep.
    pub async fn sweep_batch(&self) -> Result<usize, StoreError> {
        let due = self
            .store
            .claim_files_to_sweep(self.retention.cutoff_ms(now_ms()), BATCH, LEASE_MS)
            .await?;
        let mut swept = 0;
        for task_id in due {
            match self.delete_files(&task_id).await {
                Ok(()) => {
                    self.store.mark_files_swept(&task_id).await?;
                    swept += 1;
                }
                Err(e) => warn!(%task_id, error = %e, "deleting expired files failed; will retry"),
            }
        }
        if swept > 0 {
            info!(swept, "expired result files deleted");
        }
        Ok(swept)
    }

    async fn delete_files(&self, task_id: &TaskId) -> Result<(), BlobError> {
        for kind in AssetKind::ALL {
            self.blobs.delete(&kind.key(task_id)).await?;
        }
        Ok(())
    }
}
