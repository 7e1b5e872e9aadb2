//! Result files through signed links: the link's signature, whether the files outlived their
//! retention, and the bytes from the blob store.

use std::ops::Range;
use std::sync::Arc;

use seedgate_contract::ApiError;

use super::internal;
use crate::assets::{AssetKind, ResultLinks};
use crate::blobs::{BlobError, Blobs, Object};
use crate::ids::TaskId;
use crate::signing::Signed;
use crate::store::{now_ms, Store};

pub struct DownloadService {
    pub(super) store: Store,
    /// Where result files are kept.
    pub(super) blobs: Arc<dyn Blobs>,
    /// Checks a link's signature; knows how long files are kept.
    pub(super) links: ResultLinks,
}

impl DownloadService {
    /// Whether a link to `file` of a task, good until `expires_at`, carries our signature and
    /// is still good at `now` (Unix seconds).
    pub fn check_link(
        &self,
        task_id: &TaskId,
        file: &str,
        expires_at: u64,
        sig: &str,
        now: u64,
    ) -> Signed {
        self.links.signer.check(task_id, file, expires_at, sig, now)
    }

    /// Whether a task's result files are gone for good (or due to go), so that a link to them
    /// is answered `result_expired` rather than `invalid_signature` or `not_found`. The caller
    /// has checked the link's signature: it names one of our tasks.
    pub async fn result_expired(&self, task_id: &TaskId) -> Result<bool, ApiError> {
        let task = self.store.task(task_id).await.map_err(internal)?;
        let now_s = (now_ms() / 1000) as u64;
        Ok(task.is_some_and(|task| self.links.retention.files_expired(&task, now_s)))
    }

    /// The length of one of a task's files, or None when it is not stored.
    pub async fn size(&self, task_id: &TaskId, kind: AssetKind) -> Result<Option<u64>, BlobError> {
        self.blobs.size(&kind.key(task_id)).await
    }

    /// One of a task's files, whole or `range` of it.
    pub async fn open(
        &self,
        task_id: &TaskId,
        kind: AssetKind,
        range: Option<Range<u64>>,
    ) -> Result<Object, BlobError> {
        self.blobs.get(&kind.key(task_id), range).await
    }
}
