//! AES-256-GCM encryption of upstream keys at rest and of cached tokens. Stored form: 12-byte random
//! nonce ‖ ciphertext ‖ tag. `seal`/`open` bind a blob to its place (associated data: e.g. the
//! cache key it is stored under), so a blob copied to another place fails to open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;

#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    #[error(
        "AIPROXY_ENCRYPTION_KEY must be 32 bytes encoded as standard base64 (e.g. `openssl rand -base64 32`)"
    )]
    BadKey,
    #[error("stored secret could not be decrypted: wrong AIPROXY_ENCRYPTION_KEY or corrupted data")]
    Decrypt,
}

/// Encrypts and decrypts upstream keys. Also the root from which other control-plane keys derive.
pub struct KeyCipher {
    key: LessSafeKey,
    raw: [u8; 32],
}

impl KeyCipher {
    pub fn from_base64(encoded: &str) -> Result<Self, CipherError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| CipherError::BadKey)?;
        let raw: [u8; 32] = bytes.try_into().map_err(|_| CipherError::BadKey)?;
        Ok(Self::from_raw(raw))
    }

    pub fn from_raw(raw: [u8; 32]) -> Self {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &raw).expect("32-byte AES key"));
        Self { key, raw }
    }

    /// A new random key in the form `from_base64` accepts.
    pub fn generate_base64() -> String {
        base64::engine::general_purpose::STANDARD.encode(super::random_bytes(32))
    }

    pub fn encrypt(&self, plaintext: &str) -> Vec<u8> {
        self.seal(plaintext, b"")
    }

    pub fn decrypt(&self, stored: &[u8]) -> Result<String, CipherError> {
        self.open(stored, b"")
    }

    /// Encrypts `plaintext` bound to `associated` (authenticated, not stored): `open` succeeds
    /// only with the same `associated` bytes.
    pub fn seal(&self, plaintext: &str, associated: &[u8]) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = super::random_bytes(NONCE_LEN)
            .try_into()
            .expect("nonce length");
        let mut in_out = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(associated),
                &mut in_out,
            )
            .expect("AES-GCM sealing cannot fail for in-memory buffers");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&in_out);
        out
    }

    pub fn open(&self, stored: &[u8], associated: &[u8]) -> Result<String, CipherError> {
        if stored.len() < NONCE_LEN {
            return Err(CipherError::Decrypt);
        }
        let (nonce, sealed) = stored.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CipherError::Decrypt)?;
        let mut in_out = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(associated), &mut in_out)
            .map_err(|_| CipherError::Decrypt)?;
        String::from_utf8(plain.to_vec()).map_err(|_| CipherError::Decrypt)
    }

    /// A subkey for another purpose, so one configured secret serves several uses independently.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.raw);
        let tag = aws_lc_rs::hmac::sign(&key, purpose.as_bytes());
        tag.as_ref().try_into().expect("HMAC-SHA-256 is 32 bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_never_stores_plaintext() {
        let cipher = KeyCipher::from_base64(&KeyCipher::generate_base64()).unwrap();
        let sealed = cipher.encrypt("sk-upstream-secret");
        assert!(!sealed.windows(6).any(|w| w == b"upstre"));
        assert_eq!(cipher.decrypt(&sealed).unwrap(), "sk-upstream-secret");
    }

    #[test]
    fn wrong_key_fails_to_decrypt() {
        let a = KeyCipher::from_raw([1; 32]);
        let b = KeyCipher::from_raw([2; 32]);
        assert!(b.decrypt(&a.encrypt("x")).is_err());
    }

    #[test]
    fn a_sealed_blob_opens_only_where_it_was_sealed() {
        let cipher = KeyCipher::from_raw([3; 32]);
        let sealed = cipher.seal("token", b"slot-a");
        assert_eq!(cipher.open(&sealed, b"slot-a").unwrap(), "token");
        assert!(cipher.open(&sealed, b"slot-b").is_err());
        assert!(cipher.decrypt(&sealed).is_err());
    }

    #[test]
    fn rejects_keys_of_the_wrong_length() {
        assert!(KeyCipher::from_base64("c2hvcnQ=").is_err());
        assert!(KeyCipher::from_base64("not base64!").is_err());
    }
}
