//! A local folder as the blob store: the default, `assets/` under the data dir.
//!
//! This goes through `object_store`'s `LocalFileSystem` rather than plain `tokio::fs` so the
//! local store and S3 share one implementation of [`super::Blobs`]: the same streaming put,
//! ranged get and error mapping, tested once against each backend. Its guarantees are the ones
//! a local store needs: a put is written to a staging file beside the target (`key#n`) and
//! renamed into place when complete, so a crash never leaves half an object under its name;
//! keys map to paths as before (`<root>/<task>/video.mp4`), so files written by earlier
//! versions stay readable; and a delete also removes the folder it empties.

use std::path::Path;
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::ObjectStore;

use super::BlobError;

pub(super) fn open(root: &Path) -> Result<Arc<dyn ObjectStore>, BlobError> {
    std::fs::create_dir_all(root).map_err(|e| {
        BlobError::Settings(format!(
            "cannot create the assets folder {}: {e}",
            root.display()
        ))
    })?;
    let store = LocalFileSystem::new_with_prefix(root)
        .map_err(BlobError::Store)?
        .with_automatic_cleanup(true);
    Ok(Arc::new(store))
}
