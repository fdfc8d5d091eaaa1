//! Attendee keys are random 256-bit secrets, so a keyed hash (HMAC-SHA-256) is enough to store them
//! and cheap enough for an edge to compute on every request. The hash key ships to edges in the
//! sync snapshot; the plain attendee key is shown once and never stored.

use aws_lc_rs::hmac;

#[derive(Clone)]
pub struct KeyHasher {
    secret: [u8; 32],
}

impl KeyHasher {
    pub fn new(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    pub fn hash(&self, attendee_key: &str) -> Vec<u8> {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.secret);
        hmac::sign(&key, attendee_key.as_bytes()).as_ref().to_vec()
    }
}
