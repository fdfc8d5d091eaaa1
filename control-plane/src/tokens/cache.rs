//! Where minted tokens live so that every replica uses the same one, and the lock that lets only
//! one replica mint for a (identity, scope) at a time. `MemoryTokenCache` is the embedded mode's
//! (one process); `RedisTokenCache` is shared by replicas.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::identity::TokenKey;
use crate::secrets::Secret;

#[derive(Clone, Serialize, Deserialize)]
pub struct CachedToken {
    #[serde(with = "secret_string")]
    pub token: Secret,
    pub expires_on_ms: i64,
    /// When it was minted: with the expiry, gives the lifetime the refresh schedule needs.
    pub issued_at_ms: i64,
    /// Which credential minted it, for the admin status.
    pub source: String,
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("expires_on_ms", &self.expires_on_ms)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

mod secret_string {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::secrets::Secret;

    pub fn serialize<S: Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(secret.expose())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

#[async_trait]
pub trait TokenCache: Send + Sync {
    async fn get(&self, key: &TokenKey) -> Result<Option<CachedToken>, String>;
    /// Stores `token` until it expires.
    async fn put(&self, key: &TokenKey, token: &CachedToken) -> Result<(), String>;
    /// `Some(lock id)` when this caller may mint now; `None` while someone else holds the lock.
    async fn try_lock(&self, key: &TokenKey, ttl: Duration) -> Result<Option<String>, String>;
    /// Releases the lock if `lock_id` still holds it.
    async fn unlock(&self, key: &TokenKey, lock_id: &str) -> Result<(), String>;
}

/// In-process cache for the embedded mode.
#[derive(Default)]
pub struct MemoryTokenCache {
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
    locks: Mutex<HashMap<TokenKey, (String, Instant)>>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[async_trait]
impl TokenCache for MemoryTokenCache {
    async fn get(&self, key: &TokenKey) -> Result<Option<CachedToken>, String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        Ok(tokens
            .get(key)
            .filter(|t| t.expires_on_ms > now_ms())
            .cloned())
    }

    async fn put(&self, key: &TokenKey, token: &CachedToken) -> Result<(), String> {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), token.clone());
        Ok(())
    }

    async fn try_lock(&self, key: &TokenKey, ttl: Duration) -> Result<Option<String>, String> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if locks.get(key).is_some_and(|(_, until)| *until > now) {
            return Ok(None);
        }
        let id = uuid::Uuid::new_v4().to_string();
        locks.insert(key.clone(), (id.clone(), now + ttl));
        Ok(Some(id))
    }

    async fn unlock(&self, key: &TokenKey, lock_id: &str) -> Result<(), String> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks.get(key).is_some_and(|(id, _)| id == lock_id) {
            locks.remove(key);
        }
        Ok(())
    }
}
