//! The gateway's own signatures: expiring download URLs for result files, so a download needs
//! no API key but cannot be guessed or reused forever, and the tokens that authenticate an
//! upstream's callback about a task. One HMAC key, kept in the database, signs both.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::assets::AssetKind;
use crate::ids::TaskId;

/// What a presented download signature is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signed {
    Valid,
    /// Ours and untampered, but past its expiry.
    Expired,
    Invalid,
}

#[derive(Clone)]
pub struct UrlSigner {
    key: Vec<u8>,
}

impl UrlSigner {
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    /// `/v1/assets/{task}/{file}?exp=…&sig=…` valid until `expires_at` (Unix seconds).
    pub fn signed_path(&self, task_id: &TaskId, kind: AssetKind, expires_at: u64) -> String {
        let sig = self.signature(task_id, kind.file_name(), expires_at);
        format!(
            "/v1/assets/{task_id}/{}?exp={expires_at}&sig={sig}",
            kind.file_name()
        )
    }

    /// Checks a presented signature in constant time, and its expiry against `now`.
    pub fn check(
        &self,
        task_id: &TaskId,
        file: &str,
        expires_at: u64,
        sig: &str,
        now: u64,
    ) -> Signed {
        let authentic = hex::decode(sig).is_ok_and(|presented| {
            self.mac(task_id, file, expires_at)
                .verify_slice(&presented)
                .is_ok()
        });
        match (authentic, expires_at < now) {
            (false, _) => Signed::Invalid,
            (true, true) => Signed::Expired,
            (true, false) => Signed::Valid,
        }
    }

    pub fn verify(
        &self,
        task_id: &TaskId,
        file: &str,
        expires_at: u64,
        sig: &str,
        now: u64,
    ) -> bool {
        self.check(task_id, file, expires_at, sig, now) == Signed::Valid
    }

    /// The token that authenticates an upstream's callback about one task.
    pub fn callback_token(&self, task_id: &TaskId) -> String {
        self.signature(task_id, "callback", 0)
    }

    pub fn verify_callback(&self, task_id: &TaskId, token: &str) -> bool {
        self.verify(task_id, "callback", 0, token, 0)
    }

    fn signature(&self, task_id: &TaskId, file: &str, expires_at: u64) -> String {
        hex::encode(self.mac(task_id, file, expires_at).finalize().into_bytes())
    }

    fn mac(&self, task_id: &TaskId, file: &str, expires_at: u64) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail; fall back to an empty-key MAC
        // only to keep the type total.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable_mac());
        mac.update(task_id.as_str().as_bytes());
        mac.update(b"/");
        mac.update(file.as_bytes());
        mac.update(b":");
        mac.update(expires_at.to_string().as_bytes());
        mac
    }
}

fn unreachable_mac() -> Hmac<Sha256> {
    panic!("HMAC-SHA256 accepts keys of every length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> UrlSigner {
        UrlSigner::new(b"secret".to_vec())
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
        let s = signer();
        let url = s.signed_path(&TaskId::new("vtask_1"), AssetKind::Video, 1000);
        let (exp, sig) = parts(&url);
        assert!(s.verify(&TaskId::new("vtask_1"), "video.mp4", exp, &sig, 999));
        assert!(s.verify(&TaskId::new("vtask_1"), "video.mp4", exp, &sig, 1000));
        assert!(!s.verify(&TaskId::new("vtask_1"), "video.mp4", exp, &sig, 1001));
        // Still known for ours once expired: a deleted file can then be told apart.
        assert_eq!(
            s.check(&TaskId::new("vtask_1"), "video.mp4", exp, &sig, 1001),
            Signed::Expired
        );
        assert_eq!(
            s.check(&TaskId::new("vtask_2"), "video.mp4", exp, &sig, 1001),
            Signed::Invalid
        );
    }

    #[test]
    fn tampered_urls_are_refused() {
        let s = signer();
        let (exp, sig) = parts(&s.signed_path(&TaskId::new("vtask_1"), AssetKind::Video, 1000));
        assert!(!s.verify(&TaskId::new("vtask_2"), "video.mp4", exp, &sig, 0));
        assert!(!s.verify(&TaskId::new("vtask_1"), "last_frame.png", exp, &sig, 0));
        assert!(!s.verify(&TaskId::new("vtask_1"), "video.mp4", exp + 1, &sig, 0));
        assert!(!s.verify(&TaskId::new("vtask_1"), "video.mp4", exp, "00", 0));
        assert!(!s.verify(&TaskId::new("vtask_1"), "video.mp4", exp, "zz", 0));
        let other = UrlSigner::new(b"other".to_vec());
        assert!(!other.verify(&TaskId::new("vtask_1"), "video.mp4", exp, &sig, 0));
    }

    #[test]
    fn a_callback_token_names_its_task() {
        let s = signer();
        let token = s.callback_token(&TaskId::new("vtask_1"));
        assert!(s.verify_callback(&TaskId::new("vtask_1"), &token));
        assert!(!s.verify_callback(&TaskId::new("vtask_2"), &token));
        assert!(!UrlSigner::new(b"other".to_vec()).verify_callback(&TaskId::new("vtask_1"), &token));
    }
}
