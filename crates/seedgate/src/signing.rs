//! The gateway's own signatures: an HMAC over a task id, a label and an expiry. Expiring
//! download links for result files are built on them (a download needs no API key but cannot
//! be guessed or reused forever), and so are the tokens that authenticate an upstream's
//! callback about a task. One HMAC key, kept in the database, signs both. Webhooks are signed
//! here too, with their account's secret. What is signed, and
//! where a signature is carried, is up to the callers: links are built where their paths are
//! known (`assets`), so this stays below every module that names a route.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::ids::TaskId;

/// What a presented signature is worth.
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

    /// The hex signature of `label` of `task_id`, valid until `expires_at` (Unix seconds).
    pub fn sign(&self, task_id: &TaskId, label: &str, expires_at: u64) -> String {
        hex::encode(self.mac(task_id, label, expires_at).finalize().into_bytes())
    }

    /// Checks a presented signature in constant time, and its expiry against `now`.
    pub fn check(
        &self,
        task_id: &TaskId,
        label: &str,
        expires_at: u64,
        sig: &str,
        now: u64,
    ) -> Signed {
        let authentic = hex::decode(sig).is_ok_and(|presented| {
            self.mac(task_id, label, expires_at)
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
        label: &str,
        expires_at: u64,
        sig: &str,
        now: u64,
    ) -> bool {
        self.check(task_id, label, expires_at, sig, now) == Signed::Valid
    }

    /// The token that authenticates an upstream's callback about one task.
    pub fn callback_token(&self, task_id: &TaskId) -> String {
        self.sign(task_id, "callback", 0)
    }

    pub fn verify_callback(&self, task_id: &TaskId, token: &str) -> bool {
        self.verify(task_id, "callback", 0, token, 0)
    }

    fn mac(&self, task_id: &TaskId, label: &str, expires_at: u64) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail; fall back to an empty-key MAC
        // only to keep the type total.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable_mac());
        mac.update(task_id.as_str().as_bytes());
        mac.update(b"/");
        mac.update(label.as_bytes());
        mac.update(b":");
        mac.update(expires_at.to_string().as_bytes());
        mac
    }
}

fn unreachable_mac() -> Hmac<Sha256> {
    panic!("HMAC-SHA256 accepts keys of every length")
}

/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp><separator><body>")>`: how webhooks
/// are signed, ours with `.` and OpenRouter's with `,`.
pub fn timestamped_signature(secret: &str, timestamp: u64, separator: &str, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| panic!("HMAC-SHA256 accepts keys of every length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(separator.as_bytes());
    mac.update(body.as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> UrlSigner {
        UrlSigner::new(b"secret".to_vec())
    }

    #[test]
    fn signatures_match_known_vectors() {
        // HMAC-SHA256("secret", "<task>/<label>:<expiry>"), computed independently with
        // Python's hmac: links and tokens already handed out must keep verifying.
        assert_eq!(
            signer().sign(&TaskId::new("vtask_1"), "video.mp4", 1000),
            "807d26b45ed5143b4a196f4bf4d3a230bce5419b2be9f4da2fbc8a107e3f4fc2"
        );
        assert_eq!(
            signer().callback_token(&TaskId::new("vtask_1")),
            "20a646051c8b53c777da60c85fe372aa233f58aa52692270ed18b9b317aed769"
        );
    }

    #[test]
    fn a_signature_verifies_until_it_expires() {
        let s = signer();
        let sig = s.sign(&TaskId::new("vtask_1"), "video.mp4", 1000);
        assert!(s.verify(&TaskId::new("vtask_1"), "video.mp4", 1000, &sig, 999));
        assert!(s.verify(&TaskId::new("vtask_1"), "video.mp4", 1000, &sig, 1000));
        assert!(!s.verify(&TaskId::new("vtask_1"), "video.mp4", 1000, &sig, 1001));
        // Still known for ours once expired: a deleted file can then be told apart.
        assert_eq!(
            s.check(&TaskId::new("vtask_1"), "video.mp4", 1000, &sig, 1001),
            Signed::Expired
        );
        assert_eq!(
            s.check(&TaskId::new("vtask_2"), "video.mp4", 1000, &sig, 1001),
            Signed::Invalid
        );
    }

    #[test]
    fn tampered_signatures_are_refused() {
        let s = signer();
        let sig = s.sign(&TaskId::new("vtask_1"), "video.mp4", 1000);
        assert!(!s.verify(&TaskId::new("vtask_2"), "video.mp4", 1000, &sig, 0));
        assert!(!s.verify(&TaskId::new("vtask_1"), "last_frame.png", 1000, &sig, 0));
        assert!(!s.verify(&TaskId::new("vtask_1"), "video.mp4", 1001, &sig, 0));
        assert!(!s.verify(&TaskId::new("vtask_1"), "video.mp4", 1000, "00", 0));
        assert!(!s.verify(&TaskId::new("vtask_1"), "video.mp4", 1000, "zz", 0));
        let other = UrlSigner::new(b"other".to_vec());
        assert!(!other.verify(&TaskId::new("vtask_1"), "video.mp4", 1000, &sig, 0));
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
