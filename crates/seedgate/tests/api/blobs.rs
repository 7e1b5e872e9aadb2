//! The blob store itself, by one table of backends: a local folder and a bucket on a real
//! S3-compatible server (moto). Every rule holds on both.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use seedgate::blobs::{AwsEnvironment, BlobError, Blobs, ByteStream, Location};

use crate::helpers::{Moto, Storage};

const MIB: usize = 1024 * 1024;

struct Backend {
    storage: Storage,
    blobs: Arc<dyn Blobs>,
    /// The local store's folder (held so it lives as long as the store).
    dir: tempfile::TempDir,
}

async fn backends() -> Vec<Backend> {
    let mut backends = Vec::new();
    for storage in Storage::BOTH {
        let dir = tempfile::tempdir().unwrap();
        let (location, aws) = match storage {
            Storage::Local => (
                Location::Folder(dir.path().join("assets")),
                AwsEnvironment::default(),
            ),
            Storage::S3 => {
                let moto = Moto::shared().await;
                let bucket = moto.new_bucket().await;
                (
                    Location::S3 {
                        bucket,
                        prefix: "some/prefix".into(),
                    },
                    moto.environment(),
                )
            }
        };
        let blobs = seedgate::blobs::open(&location, &aws).unwrap();
        backends.push(Backend {
            storage,
            blobs,
            dir,
        });
    }
    backends
}

/// Bytes that differ from their neighbours, so a misplaced range shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// `data` as a stream of `chunk`-byte pieces, as a network body arrives.
fn chunked(data: &[u8], chunk: usize) -> ByteStream<'static> {
    let pieces: Vec<std::io::Result<Bytes>> = data
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures_util::stream::iter(pieces).boxed()
}

/// `good` bytes, then a failure, as a body cut off mid-way.
fn failing_after(good: usize) -> ByteStream<'static> {
    chunked(&pattern(good), 64 * 1024)
        .chain(futures_util::stream::once(async {
            Err(std::io::Error::other("the source broke off"))
        }))
        .boxed()
}

async fn get(
    blobs: &dyn Blobs,
    key: &str,
    range: Option<Range<u64>>,
) -> (Range<u64>, u64, Vec<u8>) {
    let object = blobs.get(key, range).await.unwrap();
    let mut bytes = Vec::new();
    let mut stream = object.bytes;
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    (object.range, object.size, bytes)
}

#[tokio::test]
async fn a_streamed_multi_megabyte_object_reads_back_whole_and_by_range() {
    for backend in backends().await {
        let blobs = backend.blobs.as_ref();
        let name = backend.storage;
        // Three upload parts: 8 MiB, 8 MiB and the rest.
        let data = pattern(20 * MIB + 123);
        let len = data.len() as u64;
        let key = "vtask_big/video.mp4";
        let stored = blobs.put(key, chunked(&data, 64 * 1024)).await.unwrap();
        assert_eq!(stored, len, "{name:?}");
        assert_eq!(blobs.size(key).await.unwrap(), Some(len), "{name:?}");
        assert!(
            blobs.read(key).await.unwrap() == data,
            "{name:?}: whole read"
        );

        let (range, size, bytes) = get(blobs, key, None).await;
        assert_eq!((range, size), (0..len, len), "{name:?}");
        assert!(bytes == data, "{name:?}: whole get");

        let part = 8 * MIB as u64;
        for (asked, expected) in [
            (0..1, 0..1),
            (0..len, 0..len),
            (len - 1..len, len - 1..len),
            // Across the boundary of two uploaded parts.
            (part - 3..part + 3, part - 3..part + 3),
            (
                5 * MIB as u64..15 * MIB as u64,
                5 * MIB as u64..15 * MIB as u64,
            ),
            // An end past the object is cut to it.
            (len - 10..len + 1000, len - 10..len),
        ] {
            let (range, size, bytes) = get(blobs, key, Some(asked.clone())).await;
            assert_eq!(range, expected, "{name:?} {asked:?}");
            assert_eq!(size, len, "{name:?} {asked:?}");
            let expected = expected.start as usize..expected.end as usize;
            assert!(bytes == data[expected], "{name:?} {asked:?}: wrong bytes");
        }
    }
}

#[tokio::test]
async fn small_and_empty_objects_are_stored_and_replaced_whole() {
    for backend in backends().await {
        let blobs = backend.blobs.as_ref();
        let name = backend.storage;
        let key = "vtask_small/last_frame.png";
        assert_eq!(blobs.put_bytes(key, b"first".to_vec()).await.unwrap(), 5);
        assert_eq!(blobs.read(key).await.unwrap(), b"first", "{name:?}");
        blobs.put(key, chunked(b"second version", 3)).await.unwrap();
        assert_eq!(
            blobs.read(key).await.unwrap(),
            b"second version",
            "{name:?}"
        );
        let (range, size, bytes) = get(blobs, key, Some(7..14)).await;
        assert_eq!(
            (range, size, bytes.as_slice()),
            (7..14, 14, b"version".as_slice())
        );

        let empty = "vtask_small/empty";
        assert_eq!(blobs.put_bytes(empty, Vec::new()).await.unwrap(), 0);
        assert_eq!(blobs.size(empty).await.unwrap(), Some(0), "{name:?}");
        assert!(blobs.read(empty).await.unwrap().is_empty(), "{name:?}");
    }
}

#[tokio::test]
async fn a_put_whose_source_fails_leaves_nothing_under_its_key() {
    for backend in backends().await {
        let blobs = backend.blobs.as_ref();
        let name = backend.storage;
        // Cut off within the first part (one request) and after two parts were uploaded.
        for good in [1000, 18 * MIB] {
            let fresh = format!("vtask_cut_{good}/video.mp4");
            let outcome = blobs.put(&fresh, failing_after(good)).await;
            assert!(
                matches!(outcome, Err(BlobError::Source(_))),
                "{name:?} {good}: {outcome:?}"
            );
            assert_eq!(blobs.size(&fresh).await.unwrap(), None, "{name:?} {good}");

            // Over an existing object: the old one stays, whole.
            let existing = format!("vtask_kept_{good}/video.mp4");
            blobs
                .put_bytes(&existing, b"the old video".to_vec())
                .await
                .unwrap();
            assert!(blobs.put(&existing, failing_after(good)).await.is_err());
            assert_eq!(
                blobs.read(&existing).await.unwrap(),
                b"the old video",
                "{name:?}"
            );
        }
        if backend.storage == Storage::Local {
            // The aborted upload's staging file is gone too.
            let folder = backend
                .dir
                .path()
                .join(format!("assets/vtask_cut_{}", 18 * MIB));
            let left: Vec<_> = std::fs::read_dir(&folder)
                .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{left:?}");
        }
    }
}

#[tokio::test]
async fn missing_objects_and_deletes() {
    for backend in backends().await {
        let blobs = backend.blobs.as_ref();
        let name = backend.storage;
        let key = "vtask_gone/video.mp4";
        assert!(
            matches!(blobs.get(key, None).await, Err(BlobError::NotFound)),
            "{name:?}"
        );
        assert!(matches!(
            blobs.get(key, Some(0..10)).await,
            Err(BlobError::NotFound)
        ));
        assert!(matches!(blobs.read(key).await, Err(BlobError::NotFound)));
        assert_eq!(blobs.size(key).await.unwrap(), None);
        blobs.delete(key).await.unwrap();

        blobs.put_bytes(key, pattern(1000)).await.unwrap();
        blobs.delete(key).await.unwrap();
        assert_eq!(blobs.size(key).await.unwrap(), None, "{name:?}");
        assert!(matches!(
            blobs.get(key, None).await,
            Err(BlobError::NotFound)
        ));
        blobs.delete(key).await.unwrap();
    }
}

/// Result files written before the blob store existed (`<data>/assets/<task>/video.mp4`) are
/// where the local store looks, and what it writes lands there too.
#[tokio::test]
async fn the_local_store_keeps_the_folder_layout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("assets");
    std::fs::create_dir_all(root.join("vtask_old")).unwrap();
    std::fs::write(root.join("vtask_old/video.mp4"), b"an old video").unwrap();
    let blobs =
        seedgate::blobs::open(&Location::Folder(root.clone()), &AwsEnvironment::default()).unwrap();
    assert_eq!(
        blobs.read("vtask_old/video.mp4").await.unwrap(),
        b"an old video"
    );
    blobs
        .put_bytes("vtask_new/last_frame.png", b"png".to_vec())
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(root.join("vtask_new/last_frame.png")).unwrap(),
        b"png"
    );
    // A delete also removes the folder it empties.
    blobs.delete("vtask_new/last_frame.png").await.unwrap();
    assert!(!root.join("vtask_new").exists());
}
