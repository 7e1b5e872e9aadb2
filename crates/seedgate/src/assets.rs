//! A task's result files (MP4 and last frame), where they are kept in the blob store —
//! `<task id>/video.mp4` and `<task id>/last_frame.png` — how long they are kept, and the
//! signed links readers get to them. The names are fixed, so no key is ever built from user
//! input.

use std::num::NonZeroU64;

use seedgate_contract::OutputFormat;

use crate::ids::TaskId;
use crate::signing::UrlSigner;
use crate::store::{TaskRecord, TaskState};

/// Files of one task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssetKind {
    Video,
    LastFrame,
    /// The video of a task that asked for `output_format: mov`, linked as `video.mov`: the
    /// same stored file as [`AssetKind::Video`], served as QuickTime.
    QuickTime,
}

impl AssetKind {
    pub const ALL: [AssetKind; 2] = [AssetKind::Video, AssetKind::LastFrame];

    pub fn file_name(self) -> &'static str {
        match self {
            AssetKind::Video => "video.mp4",
            AssetKind::LastFrame => "last_frame.png",
            AssetKind::QuickTime => "video.mov",
        }
    }

    pub fn from_file_name(name: &str) -> Option<Self> {
        match name {
            "video.mp4" => Some(AssetKind::Video),
            "last_frame.png" => Some(AssetKind::LastFrame),
            "video.mov" => Some(AssetKind::QuickTime),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            AssetKind::Video => "video/mp4",
            AssetKind::LastFrame => "image/png",
            AssetKind::QuickTime => "video/quicktime",
        }
    }

    /// The blob key of this file of `task_id`, which must already be a task id of ours (or
    /// one a valid signature names).
    pub fn key(self, task_id: &TaskId) -> String {
        let stored = match self {
            AssetKind::QuickTime => AssetKind::Video,
            kind => kind,
        };
        format!("{task_id}/{}", stored.file_name())
    }

    /// The video file of a task that asked for `format`.
    pub fn video(format: OutputFormat) -> AssetKind {
        match format {
            OutputFormat::Mp4 => AssetKind::Video,
            OutputFormat::Mov => AssetKind::QuickTime,
        }
    }
}

/// `/v1/assets/{task}/{file}?exp=…&sig=…`: a download link to `kind` of `task_id`, signed by
/// `signer` and valid until `expires_at` (Unix seconds). The route's file segment is what is
/// signed, so the handler checks exactly what the link names.
pub fn signed_path(
    signer: &UrlSigner,
    task_id: &TaskId,
    kind: AssetKind,
    expires_at: u64,
) -> String {
    let sig = signer.sign(task_id, kind.file_name(), expires_at);
    format!(
        "/v1/assets/{task_id}/{}?exp={expires_at}&sig={sig}",
        kind.file_name()
    )
}

/// How long a task's files are kept once it has ended (`assets.retention_seconds`). One rule
/// decides both what the sweeper deletes and when readers stop being given links, so a link
/// is never handed out to a file that is due to go.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    ms: i64,
}

impl Retention {
    pub fn new(seconds: NonZeroU64) -> Self {
        let seconds = i64::try_from(seconds.get()).unwrap_or(i64::MAX);
        Self {
            ms: seconds.saturating_mul(1000),
        }
    }

    /// Tasks that ended before this (milliseconds) are past their retention.
    pub fn cutoff_ms(self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.ms)
    }

    /// When the task's files expire, in Unix seconds: the retention after the task ended, or
    /// when they were swept if that came first (the retention has been lengthened since).
    /// None while the task runs.
    pub fn files_expire_at(self, task: &TaskRecord) -> Option<u64> {
        let due = task.completed_at_ms?.saturating_add(self.ms);
        let at = task.files_swept_at_ms.map_or(due, |swept| swept.min(due));
        Some(u64::try_from(at / 1000).unwrap_or(0))
    }

    /// Whether the task's files are gone, or due to go, at `now_s` (Unix seconds).
    pub fn files_expired(self, task: &TaskRecord, now_s: u64) -> bool {
        self.files_expire_at(task).is_some_and(|at| at <= now_s)
    }
}

/// How result files are linked from a task: URLs signed by `signer` for `url_ttl_seconds`,
/// none outliving the files, which are kept for `retention`.
#[derive(Clone)]
pub struct ResultLinks {
    pub signer: UrlSigner,
    pub url_ttl_seconds: u64,
    pub retention: Retention,
}

/// A completed task's files as a reader finds them at one moment.
pub struct ResultFiles {
    /// The signed URLs of the MP4 and of its last frame; None once the files have expired.
    pub urls: Option<(String, String)>,
    /// When the URLs stop working (Unix seconds): `url_ttl_seconds` from now, or when the
    /// files expire if that comes first.
    pub expires_at: u64,
    /// When the files are deleted (Unix seconds).
    pub files_expire_at: u64,
}

impl ResultLinks {
    /// The files of a task that has succeeded, its video in `format`, at `now_s`; None for
    /// any other task.
    pub fn files(
        &self,
        task: &TaskRecord,
        format: OutputFormat,
        base_url: &str,
        now_s: u64,
    ) -> Option<ResultFiles> {
        if task.state != TaskState::Succeeded {
            return None;
        }
        let files_expire_at = self.retention.files_expire_at(task)?;
        let expires_at = (now_s + self.url_ttl_seconds).min(files_expire_at);
        let url = |kind| {
            format!(
                "{base_url}{}",
                signed_path(&self.signer, &task.id, kind, expires_at)
            )
        };
        Some(ResultFiles {
            urls: (files_expire_at > now_s)
                .then(|| (url(AssetKind::video(format)), url(AssetKind::LastFrame))),
            expires_at,
            files_expire_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::Signed;

    #[test]
    fn a_signed_path_names_the_file_and_verifies_until_it_expires() {
        let signer = UrlSigner::new(b"secret".to_vec());
        let path = signed_path(&signer, &TaskId::new("vtask_1"), AssetKind::Video, 1000);
        // The signature is the known vector of `signing`'s tests: links already handed out
        // keep working.
        assert_eq!(
            path,
            "/v1/assets/vtask_1/video.mp4?exp=1000\
             &sig=807d26b45ed5143b4a196f4bf4d3a230bce5419b2be9f4da2fbc8a107e3f4fc2"
        );
        let sig = path.rsplit_once("sig=").unwrap().1;
        assert_eq!(
            signer.check(&TaskId::new("vtask_1"), "video.mp4", 1000, sig, 1000),
            Signed::Valid
        );
        assert_eq!(
            signer.check(&TaskId::new("vtask_1"), "last_frame.png", 1000, sig, 1000),
            Signed::Invalid
        );
        let frame = signed_path(&signer, &TaskId::new("vtask_1"), AssetKind::LastFrame, 1000);
        assert!(frame.starts_with("/v1/assets/vtask_1/last_frame.png?exp=1000&sig="));
    }
}
