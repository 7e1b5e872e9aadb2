//! A task's result files (MP4 and last frame) and where they are kept in the blob store:
//! `<task id>/video.mp4` and `<task id>/last_frame.png`. The names are fixed, so no key is
//! ever built from user input.

/// Files of one task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssetKind {
    Video,
    LastFrame,
}

impl AssetKind {
    pub fn file_name(self) -> &'static str {
        match self {
            AssetKind::Video => "video.mp4",
            AssetKind::LastFrame => "last_frame.png",
        }
    }

    pub fn from_file_name(name: &str) -> Option<Self> {
        match name {
            "video.mp4" => Some(AssetKind::Video),
            "last_frame.png" => Some(AssetKind::LastFrame),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            AssetKind::Video => "video/mp4",
            AssetKind::LastFrame => "image/png",
        }
    }

    /// The blob key of this file of `task_id`, which must already be a task id of ours (or
    /// one a valid signature names).
    pub fn key(self, task_id: &str) -> String {
        format!("{task_id}/{}", self.file_name())
    }
}
