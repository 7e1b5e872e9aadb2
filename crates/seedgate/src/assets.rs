//! Result files (MP4 and last frame) kept under the data dir, handed out through signed,
//! expiring URLs so a download needs no API key but cannot be guessed or reused forever.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Files of one task; the names are fixed so paths never come from user input.
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
}

/// The local asset directory plus the key that signs its URLs.
#[derive(Clone)]
pub struct AssetStore {
    root: PathBuf,
    signing_key: Vec<u8>,
}

impl AssetStore {
    pub fn new(root: PathBuf, signing_key: Vec<u8>) -> Self {
        Self { root, signing_key }
    }

    /// Where an asset lives; `task_id` must already be a validated task id.
    pub fn path(&self, task_id: &str, kind: AssetKind) -> PathBuf {
        self.root.join(task_id).join(kind.file_name())
    }

    /// Writes an asset atomically (temp file + rename), so a crash never leaves half a video
    /// where a finished one is expected.
    pub async fn put(&self, task_id: &str, kind: AssetKind, bytes: &[u8]) -> std::io::Result<()> {
        let dir = self.root.join(task_id);
        tokio::fs::create_dir_all(&dir).await?;
        let final_path = dir.join(kind.file_name());
        let temp_path = dir.join(format!(".{}.partial", kind.file_name()));
        tokio::fs::write(&temp_path, bytes).await?;
        tokio::fs::rename(&temp_path, &final_path).await
    }

    pub async fn read(&self, task_id: &str, kind: AssetKind) -> std::io::Result<Vec<u8>> {
        tokio::fs::read(self.path(task_id, kind)).await
    }

    /// `/v1/assets/{task}/{file}?exp=…&sig=…` valid until `expires_at` (Unix seconds).
    pub fn signed_path(&self, task_id: &str, kind: AssetKind, expires_at: u64) -> String {
        let sig = self.signature(task_id, kind.file_name(), expires_at);
        format!(
            "/v1/assets/{task_id}/{}?exp={expires_at}&sig={sig}",
            kind.file_name()
        )
    }

    /// Checks a presented signature in constant time; expiry is checked against `now`.
    pub fn verify(&self, task_id: &str, file: &str, expires_at: u64, sig: &str, now: u64) -> bool {
        if expires_at < now {
            return false;
        }
        let Ok(presented) = hex::decode(sig) else {
            return false;
        };
        self.mac(task_id, file, expires_at)
            .verify_slice(&presented)
            .is_ok()
    }

    /// The token that authenticates an upstream's callback about one task.
    pub fn callback_token(&self, task_id: &str) -> String {
        self.signature(task_id, "callback", 0)
    }

    pub fn verify_callback(&self, task_id: &str, token: &str) -> bool {
        self.verify(task_id, "callback", 0, token, 0)
    }

    fn signature(&self, task_id: &str, file: &str, expires_at: u64) -> String {
        hex::encode(self.mac(task_id, file, expires_at).finalize().into_bytes())
    }

    fn mac(&self, task_id: &str, file: &str, expires_at: u64) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail; fall back to an empty-key MAC
        // only to keep the type total.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.signing_key)
            .unwrap_or_else(|_| unreachable_mac());
        mac.update(task_id.as_bytes());
        mac.update(b"/");
        mac.update(file.as_bytes());
        mac.update(b":");
        mac.update(expires_at.to_string().as_bytes());
        mac
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

fn unreachable_mac() -> Hmac<Sha256> {
    panic!("HMAC-SHA256 accepts keys of every length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> AssetStore {
        AssetStore::new(PathBuf::from("/nonexistent"), b"secret".to_vec())
    }

    fn parts(url: &str) -> (u64, String) {
        let query = url.split_once('?').unwrap().1;
        let mut exp = 0;
        let mut sig = String::new();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap();
            match k {
                "exp" => exp = v.parse().unwrap(),
                "sig" => sig = v.to_owned(),
                _ => {}
            }
        }
        (exp, sig)
    }

    #[test]
    fn signed_url_verifies_until_it_expires() {
        let s = store();
        let url = s.signed_path("vtask_1", AssetKind::Video, 1000);
        let (exp, sig) = parts(&url);
        assert!(s.verify("vtask_1", "video.mp4", exp, &sig, 999));
        assert!(s.verify("vtask_1", "video.mp4", exp, &sig, 1000));
        assert!(!s.verify("vtask_1", "video.mp4", exp, &sig, 1001));
    }

    #[test]
    fn tampered_urls_are_refused() {
        let s = store();
        let (exp, sig) = parts(&s.signed_path("vtask_1", AssetKind::Video, 1000));
        assert!(!s.verify("vtask_2", "video.mp4", exp, &sig, 0));
        assert!(!s.verify("vtask_1", "last_frame.png", exp, &sig, 0));
        assert!(!s.verify("vtask_1", "video.mp4", exp + 1, &sig, 0));
        assert!(!s.verify("vtask_1", "video.mp4", exp, "00", 0));
        assert!(!s.verify("vtask_1", "video.mp4", exp, "zz", 0));
        let other = AssetStore::new(PathBuf::new(), b"other".to_vec());
        assert!(!other.verify("vtask_1", "video.mp4", exp, &sig, 0));
    }
}
