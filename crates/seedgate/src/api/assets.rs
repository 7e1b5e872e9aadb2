//! Downloads of result files through signed URLs: no API key needed, but a tampered or expired
//! signature is `invalid_signature`, and a genuine link to files deleted after their retention
//! `result_expired`. The
//! bytes stream from the blob store through the gateway, whichever the store is, and single
//! byte ranges are served, so players can seek.

use std::ops::Range;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use seedgate_contract::{ApiError, ErrorCode};
use serde::Deserialize;
use tracing::error;
use utoipa::IntoParams;

use super::error::{error_responses, HttpError};
use super::query::Query;
use super::ApiState;
use crate::assets::AssetKind;
use crate::blobs::BlobError;
use crate::ids::TaskId;
use crate::service::DownloadService;
use crate::signing::Signed;
use crate::store::now_ms;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Signature {
    /// Unix seconds after which the link stops working.
    exp: Option<u64>,
    /// The link's signature.
    sig: Option<String>,
}

fn forbidden() -> HttpError {
    HttpError(ApiError::new(
        ErrorCode::InvalidSignature,
        "This download link is invalid or has expired. Fetch the task again for a fresh link.",
    ))
}

fn result_expired() -> HttpError {
    HttpError(ApiError::new(
        ErrorCode::ResultExpired,
        "This task's result files were deleted once their retention period ended. The task itself stays readable.",
    ))
}

fn storage_error(e: BlobError) -> HttpError {
    if matches!(e, BlobError::NotFound) {
        return HttpError(ApiError::new(
            ErrorCode::NotFound,
            "This file is not stored.",
        ));
    }
    error!(error = %e, "reading a result file failed");
    HttpError(ApiError::new(
        ErrorCode::StorageUnavailable,
        "The file could not be read from storage. It is safe to retry.",
    ))
}

/// The answer for a file the store does not have: deleted after its retention (a link handed
/// out just before, or before the retention was shortened), or never there.
async fn missing(downloads: &DownloadService, task_id: &TaskId) -> HttpError {
    match downloads.result_expired(task_id).await {
        Ok(true) => result_expired(),
        Ok(false) => storage_error(BlobError::NotFound),
        Err(e) => HttpError(e),
    }
}

fn unsatisfiable(size: u64) -> Response {
    let mut response = HttpError(ApiError::new(
        ErrorCode::RangeNotSatisfiable,
        format!("The requested range lies outside the file's {size} bytes."),
    ))
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
        response.headers_mut().insert(header::CONTENT_RANGE, value);
    }
    response
}

/// One range of a `Range: bytes=…` header (RFC 9110 §14.1.2), before the file's size is
/// known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ByteRange {
    /// `first-last`, both included.
    Bounded(u64, u64),
    /// `first-`: to the end.
    From(u64),
    /// `-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// None for anything but one well-formed byte range: such a header is ignored and the
    /// whole file served, as the RFC allows (several ranges would need a multipart body).
    fn parse(header: &str) -> Option<Self> {
        let (unit, spec) = header.split_once('=')?;
        if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
            return None;
        }
        let (first, last) = spec.trim().split_once('-')?;
        let number = |s: &str| -> Option<u64> {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        match (first.trim(), last.trim()) {
            ("", n) => number(n).map(ByteRange::Suffix),
            (first, "") => number(first).map(ByteRange::From),
            (first, last) => {
                let (first, last) = (number(first)?, number(last)?);
                (first <= last).then_some(ByteRange::Bounded(first, last))
            }
        }
    }

    /// The bytes to send of a file of `size` bytes; None when none of it is in the file.
    fn resolve(self, size: u64) -> Option<Range<u64>> {
        let range = match self {
            ByteRange::Bounded(first, last) => first..last.saturating_add(1).min(size),
            ByteRange::From(first) => first..size,
            ByteRange::Suffix(n) => size - n.min(size)..size,
        };
        (range.start < range.end).then_some(range)
    }
}

error_responses! {
    /// The refusals of a download.
    struct DownloadErrors(Platform) {
        InvalidSignature: "tampered or expired; read the task again for a fresh link.";
        NotFound: "the file is not stored, or an empty path segment.";
        ResultExpired:
            "the task's files were deleted once their retention ended (`assets.retention_seconds`); the task stays readable, its result marked expired.";
        RangeNotSatisfiable: "the range lies outside the file; `Content-Range: bytes */<size>`.";
        StorageUnavailable: "the file could not be read from storage; retry.";
    }
}

/// Download a result file through the signed URL of a task object (`result.video_url`,
/// `result.last_frame_url`). No API key: the signature is the permission. A single byte range
/// (`Range: bytes=…`) is served as `206`, so players can seek.
#[utoipa::path(
    get,
    path = "/v1/assets/{task_id}/{file}",
    operation_id = "download_asset",
    tag = "tasks",
    params(
        ("task_id" = String, Path, description = "The task id."),
        ("file" = String, Path, description = "`video.mp4` or `last_frame.png`."),
        Signature,
    ),
    responses(
        (status = 200, description = "The file.", content(("video/mp4"), ("image/png"))),
        (status = 206, description = "The requested byte range, with `Content-Range`.", content(("video/mp4"), ("image/png"))),
        DownloadErrors,
    ),
)]
pub async fn download(
    State(state): State<ApiState>,
    Path((task_id, file)): Path<(TaskId, String)>,
    signature: Result<Query<Signature>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    // A malformed query is as good as no signature.
    let Ok(Query(signature)) = signature else {
        return Err(forbidden());
    };
    let (Some(exp), Some(sig)) = (signature.exp, signature.sig) else {
        return Err(forbidden());
    };
    let kind = AssetKind::from_file_name(&file).ok_or_else(forbidden)?;
    let now = (now_ms() / 1000) as u64;
    let downloads = &state.services.downloads;
    match downloads.check_link(&task_id, &file, exp, &sig, now) {
        Signed::Valid => {}
        // No link outlives its files, so an old genuine link may be to files now deleted.
        Signed::Expired if downloads.result_expired(&task_id).await? => {
            return Err(result_expired())
        }
        Signed::Expired | Signed::Invalid => return Err(forbidden()),
    }
    serve_file(&state, &task_id, kind, &headers).await
}

/// A task's stored file as a response body streamed from the blob store, whole or the one
/// byte range `headers` ask for; the caller has checked the right to it.
pub(super) async fn serve_file(
    state: &ApiState,
    task_id: &TaskId,
    kind: AssetKind,
    headers: &HeaderMap,
) -> Result<Response, HttpError> {
    let downloads = &state.services.downloads;
    let requested = headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .and_then(ByteRange::parse);
    let range = match requested {
        None => None,
        Some(requested) => {
            let Some(size) = downloads.size(task_id, kind).await.map_err(storage_error)? else {
                return Err(missing(downloads, task_id).await);
            };
            match requested.resolve(size) {
                Some(range) => Some(range),
                None => return Ok(unsatisfiable(size)),
            }
        }
    };
    let partial = range.is_some();
    let object = match downloads.open(task_id, kind, range).await {
        Ok(object) => object,
        Err(BlobError::NotFound) => return Err(missing(downloads, task_id).await),
        Err(e) => return Err(storage_error(e)),
    };
    let mut response = Body::from_stream(object.bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(kind.content_type()),
    );
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(object.range.end - object.range.start),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if partial {
        let content_range = format!(
            "bytes {}-{}/{}",
            object.range.start,
            object.range.end - 1,
            object.size
        );
        if let Ok(value) = HeaderValue::from_str(&content_range) {
            headers.insert(header::CONTENT_RANGE, value);
        }
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_headers_parse_as_the_rfc_writes_them() {
        assert_eq!(
            ByteRange::parse("bytes=0-499"),
            Some(ByteRange::Bounded(0, 499))
        );
        assert_eq!(ByteRange::parse("bytes=500-"), Some(ByteRange::From(500)));
        assert_eq!(ByteRange::parse("bytes=-500"), Some(ByteRange::Suffix(500)));
        assert_eq!(
            ByteRange::parse("Bytes= 3 - 4 "),
            Some(ByteRange::Bounded(3, 4))
        );
        // Ignored, so the whole file is served: several ranges, other units, nonsense.
        for ignored in [
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=5-4",
            "bytes=-",
            "bytes=a-b",
            "bytes=+1-2",
            "bytes 0-1",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(ByteRange::parse(ignored), None, "{ignored}");
        }
    }

    #[test]
    fn ranges_resolve_against_the_files_size() {
        let size = 1000;
        assert_eq!(ByteRange::Bounded(0, 0).resolve(size), Some(0..1));
        assert_eq!(ByteRange::Bounded(0, 999).resolve(size), Some(0..1000));
        // An end past the file is cut to it.
        assert_eq!(ByteRange::Bounded(990, 5000).resolve(size), Some(990..1000));
        assert_eq!(ByteRange::From(999).resolve(size), Some(999..1000));
        assert_eq!(ByteRange::Suffix(10).resolve(size), Some(990..1000));
        assert_eq!(ByteRange::Suffix(5000).resolve(size), Some(0..1000));
        // Nothing of it in the file: `range_not_satisfiable`.
        assert_eq!(ByteRange::Bounded(1000, 1001).resolve(size), None);
        assert_eq!(ByteRange::From(1000).resolve(size), None);
        assert_eq!(ByteRange::Suffix(0).resolve(size), None);
        assert_eq!(ByteRange::From(0).resolve(0), None);
        assert_eq!(ByteRange::Suffix(5).resolve(0), None);
    }
}
