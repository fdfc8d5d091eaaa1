//! Everything secret in the control plane: the at-rest cipher for upstream keys, the keyed hash of
//! attendee keys, random token generation, and a wrapper that never prints its contents.

mod cipher;
mod key_hash;

pub use cipher::{CipherError, KeyCipher};
pub use key_hash::KeyHasher;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;

/// A string that must never reach a log line or an error message: `Debug` and `Display` print
/// `***`; only `expose` gives the value, at the one place that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the first difference is.
    pub fn matches(&self, candidate: &str) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(self.0.as_bytes(), candidate.as_bytes())
            .is_ok()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// So that `clap` reads a secret straight from the environment into the wrapper.
impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_string())
    }
}

/// `***` for bytes that are secret or sealed (keys, hashes of keys), in a manual `Debug`.
pub fn redacted_bytes(bytes: &Option<Vec<u8>>) -> &'static str {
    if bytes.is_some() { "Some(***)" } else { "None" }
}

/// `n` bytes from the system CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the system random number generator failed");
    buf
}

/// A fresh 256-bit secret, URL-safe base64 without padding, with a recognisable prefix.
pub fn random_token(prefix: &str) -> String {
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(32));
    format!("{prefix}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let secret = Secret::from("sk-very-secret");
        assert_eq!(format!("{secret:?} {secret}"), "*** ***");
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(***)");
        assert_eq!(secret.expose(), "sk-very-secret");
    }
}
