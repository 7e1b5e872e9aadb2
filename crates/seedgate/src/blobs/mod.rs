//! Where result files live: a small byte store behind [`Blobs`] — streaming put, ranged get,
//! size, delete — so the engine, the sandbox and the download route never know whether the
//! bytes sit in a local folder or in an S3-compatible bucket. It stores bytes only: what a key
//! means (`assets`) and who may read it (`signing`) are decided elsewhere.

mod local;
mod s3;

use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

pub use s3::AwsEnvironment;

/// Bytes on their way in or out; an error ends the stream.
pub type ByteStream<'a> = BoxStream<'a, std::io::Result<Bytes>>;

/// A stored object, or the requested part of it.
pub struct Object {
    pub bytes: ByteStream<'static>,
    /// Which bytes `bytes` yields, within `0..size`.
    pub range: Range<u64>,
    /// The whole object's length.
    pub size: u64,
}

/// Why a blob operation failed. Callers act on `NotFound` (a file that is gone) and `Source`
/// (the bytes being stored failed, not the store); the rest are the store's own faults.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no such object")]
    NotFound,
    /// The stream handed to `put` failed; nothing was stored under the key.
    #[error("{0}")]
    Source(std::io::Error),
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    #[error("blob store: {0}")]
    Store(object_store::Error),
    #[error("blob store settings: {0}")]
    Settings(String),
}

fn store_error(e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        other => BlobError::Store(other),
    }
}

/// A byte store. Keys are `/`-separated relative paths (`vtask_…/video.mp4`).
pub trait Blobs: Send + Sync {
    /// Stores everything `bytes` yields under `key`, replacing what was there, and returns
    /// its length. Atomic: until the stream has ended and been stored whole, readers see the
    /// previous object or none, and after a crash or an error no part of it is under `key`.
    /// At most a few parts are held in memory at once, whatever the object's size.
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: ByteStream<'a>,
    ) -> BoxFuture<'a, Result<u64, BlobError>>;

    /// The object's bytes, all of them or `range` (which must start inside the object; an
    /// end past it is cut to the object's length).
    fn get<'a>(
        &'a self,
        key: &'a str,
        range: Option<Range<u64>>,
    ) -> BoxFuture<'a, Result<Object, BlobError>>;

    /// The object's length, or None when there is no such object.
    fn size<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<u64>, BlobError>>;

    /// Removes the object; removing one that is not there succeeds.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BlobError>>;

    /// The whole object in memory, for the consumers that need it so (decoders, data: URIs).
    fn read<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Vec<u8>, BlobError>> {
        Box::pin(async move {
            let object = self.get(key, None).await?;
            let mut out = Vec::with_capacity(usize::try_from(object.size).unwrap_or(0));
            let mut bytes = object.bytes;
            while let Some(chunk) = bytes.next().await {
                out.extend_from_slice(&chunk.map_err(BlobError::Source)?);
            }
            Ok(out)
        })
    }

    /// Stores bytes already in memory (the sandbox's renders).
    fn put_bytes<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
    ) -> BoxFuture<'a, Result<u64, BlobError>> {
        let stream = futures_util::stream::once(async move { Ok(Bytes::from(bytes)) });
        self.put(key, stream.boxed())
    }
}

/// Where the blob store is, as `SEEDGATE_ASSETS_URL` or `assets.url` names it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum Location {
    /// `file:///absolute/path`: a local folder.
    Folder(PathBuf),
    /// `s3://bucket/optional/prefix`: an S3-compatible bucket, reached with the `AWS_*`
    /// settings of the environment.
    S3 { bucket: String, prefix: String },
}

impl FromStr for Location {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "`{url}`: a file URL names an absolute path (file:///srv/seedgate/assets)"
                ));
            }
            return Ok(Location::Folder(PathBuf::from(path)));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("`{url}`: no bucket (s3://bucket/prefix)"));
            }
            let prefix = prefix.trim_matches('/');
            if !prefix.is_empty() && ObjectPath::parse(prefix).is_err() {
                return Err(format!("`{url}`: `{prefix}` is not a valid key prefix"));
            }
            return Ok(Location::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        Err(format!(
            "`{url}`: the assets URL is file:///path or s3://bucket/prefix"
        ))
    }
}

impl TryFrom<String> for Location {
    type Error = String;

    fn try_from(url: String) -> Result<Self, String> {
        url.parse()
    }
}

/// Opens the store at `location`; `aws` is only read for S3.
pub fn open(location: &Location, aws: &AwsEnvironment) -> Result<Arc<dyn Blobs>, BlobError> {
    let store = match location {
        Location::Folder(root) => local::open(root)?,
        Location::S3 { bucket, prefix } => s3::open(bucket, prefix, aws)?,
    };
    Ok(Arc::new(ObjectBlobs { store }))
}

/// Bytes per uploaded part: S3 wants at least 5 MiB for every part but the last.
const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts uploading at once; with the part being filled, this bounds a put's memory.
const PARTS_IN_FLIGHT: usize = 2;

/// Both backends through `object_store`, so streaming, ranges and the atomic finish of an
/// upload are one code path, tested once against each backend.
struct ObjectBlobs {
    store: Arc<dyn ObjectStore>,
}

impl ObjectBlobs {
    fn path(key: &str) -> Result<ObjectPath, BlobError> {
        ObjectPath::parse(key).map_err(|_| BlobError::InvalidKey(key.to_owned()))
    }

    async fn put_stream(&self, key: &str, mut bytes: ByteStream<'_>) -> Result<u64, BlobError> {
        let path = Self::path(key)?;
        let mut size = 0u64;
        // An object smaller than one part goes up in one request.
        let mut first_part = Vec::new();
        let mut buffered = 0;
        while buffered < PART_BYTES {
            let Some(chunk) = bytes.next().await else {
                let payload = PutPayload::from_iter(first_part);
                self.store.put(&path, payload).await.map_err(store_error)?;
                return Ok(size);
            };
            let chunk = chunk.map_err(BlobError::Source)?;
            size += chunk.len() as u64;
            buffered += chunk.len();
            first_part.push(chunk);
        }
        // A multipart upload shows nothing under its key until it completes; an abandoned one
        // leaves a local staging file (`key#n`) or an invisible S3 upload.
        let upload = self.store.put_multipart(&path).await.map_err(store_error)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        for chunk in first_part {
            writer.put(chunk);
        }
        let written = async {
            while let Some(chunk) = bytes.next().await {
                let chunk = chunk.map_err(BlobError::Source)?;
                size += chunk.len() as u64;
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(store_error)?;
                writer.put(chunk);
            }
            Ok(())
        }
        .await;
        match written {
            Ok(()) => {
                writer.finish().await.map_err(store_error)?;
                Ok(size)
            }
            Err(e) => {
                // Best effort: a stale upload is invisible and never completes.
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }

    async fn get_range(&self, key: &str, range: Option<Range<u64>>) -> Result<Object, BlobError> {
        let path = Self::path(key)?;
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&path, options)
            .await
            .map_err(store_error)?;
        let range = result.range.clone();
        let size = result.meta.size;
        let bytes = result
            .into_stream()
            .map_err(|e| std::io::Error::other(store_error(e)))
            .boxed();
        Ok(Object { bytes, range, size })
    }
}

impl Blobs for ObjectBlobs {
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: ByteStream<'a>,
    ) -> BoxFuture<'a, Result<u64, BlobError>> {
        Box::pin(self.put_stream(key, bytes))
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
        range: Option<Range<u64>>,
    ) -> BoxFuture<'a, Result<Object, BlobError>> {
        Box::pin(self.get_range(key, range))
    }

    fn size<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<u64>, BlobError>> {
        Box::pin(async move {
            match self.store.head(&Self::path(key)?).await {
                Ok(meta) => Ok(Some(meta.size)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(store_error(e)),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            match self.store.delete(&Self::path(key)?).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(store_error(e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_from_their_urls() {
        assert_eq!(
            "file:///srv/assets".parse(),
            Ok(Location::Folder(PathBuf::from("/srv/assets")))
        );
        assert_eq!(
            "s3://results/seedgate/prod/".parse(),
            Ok(Location::S3 {
                bucket: "results".into(),
                prefix: "seedgate/prod".into()
            })
        );
        assert_eq!(
            "s3://results".parse(),
            Ok(Location::S3 {
                bucket: "results".into(),
                prefix: String::new()
            })
        );
        for bad in [
            "file://relative/path",
            "s3:///prefix",
            "gs://bucket",
            "/srv/assets",
            "s3://b/a/../c",
        ] {
            assert!(bad.parse::<Location>().is_err(), "{bad}");
        }
    }
}
