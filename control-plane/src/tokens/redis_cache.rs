//! The shared token cache in Redis. Values are AES-256-GCM sealed with the control plane's
//! encryption key (Redis never sees a token in clear), bound to the Redis key they are stored under
//! (associated data: catalog, identity and scope), so a value copied to another key does not open
//! there; and they expire with the token. The mint lock is `SET NX PX` released by a
//! compare-and-delete script. Keys are namespaced by catalog id, so replicas of one catalog share
//! tokens and nothing else does. Every command has a short deadline: a Redis that hangs costs a
//! cache miss, not a stalled refresh.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::cache::{CachedToken, TokenCache};
use crate::identity::TokenKey;
use crate::secrets::KeyCipher;

pub struct RedisTokenCache {
    connection: ConnectionManager,
    cipher: Arc<KeyCipher>,
    prefix: String,
}

/// Longest wait for Redis to connect, or to answer one command.
const REDIS_DEADLINE: Duration = Duration::from_secs(2);

const UNLOCK: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

impl RedisTokenCache {
    pub async fn connect(
        url: &str,
        cipher: Arc<KeyCipher>,
        catalog_id: &str,
    ) -> Result<Self, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("AIPROXY_REDIS_URL is not a valid Redis URL: {e}"))?;
        Self::connect_client(&client, cipher, catalog_id).await
    }

    /// Connects `client` (a URL already checked); fails when Redis does not answer in time.
    pub async fn connect_client(
        client: &redis::Client,
        cipher: Arc<KeyCipher>,
        catalog_id: &str,
    ) -> Result<Self, String> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        // After a lost connection the manager reconnects by itself; a command meanwhile fails fast.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_DEADLINE))
            .set_response_timeout(Some(REDIS_DEADLINE))
            .set_number_of_retries(1)
            .set_max_delay(REDIS_DEADLINE);
        let connection = tokio::time::timeout(
            2 * REDIS_DEADLINE,
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| format!("Redis did not answer within {:?}", 2 * REDIS_DEADLINE))?
        .map_err(|e| format!("could not connect to Redis: {e}"))?;
        Ok(Self {
            connection,
            cipher,
            prefix: format!("aiproxy:{catalog_id}:mi-token"),
        })
    }

    fn key(&self, key: &TokenKey) -> String {
        let identity = key.identity_client_id.as_deref().unwrap_or("default");
        format!("{}:{identity}:{}", self.prefix, key.scope.as_str())
    }
}

fn redis_error(e: redis::RedisError) -> String {
    format!("Redis: {e}")
}

#[async_trait]
impl TokenCache for RedisTokenCache {
    async fn get(&self, key: &TokenKey) -> Result<Option<CachedToken>, String> {
        let mut con = self.connection.clone();
        let stored: Option<String> = redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut con)
            .await
            .map_err(redis_error)?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(stored)
            .map_err(|_| "Redis: a cached token is not base64".to_string())?;
        let json = self
            .cipher
            .open(&sealed, self.key(key).as_bytes())
            .map_err(|e| format!("Redis: cached token: {e}"))?;
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| format!("Redis: cached token: {e}"))
    }

    async fn put(&self, key: &TokenKey, token: &CachedToken) -> Result<(), String> {
        let ttl_ms = token.expires_on_ms - chrono::Utc::now().timestamp_millis();
        if ttl_ms <= 0 {
            return Ok(());
        }
        let json = serde_json::to_string(token).map_err(|e| e.to_string())?;
        let slot = self.key(key);
        let sealed = base64::engine::general_purpose::STANDARD
            .encode(self.cipher.seal(&json, slot.as_bytes()));
        let mut con = self.connection.clone();
        let _: () = redis::cmd("SET")
            .arg(slot)
            .arg(sealed)
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut con)
            .await
            .map_err(redis_error)?;
        Ok(())
    }

    async fn try_lock(&self, key: &TokenKey, ttl: Duration) -> Result<Option<String>, String> {
        let id = uuid::Uuid::new_v4().to_string();
        let mut con = self.connection.clone();
        let acquired: bool = redis::cmd("SET")
            .arg(format!("{}:lock", self.key(key)))
            .arg(&id)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut con)
            .await
            .map_err(redis_error)?;
        Ok(acquired.then_some(id))
    }

    async fn unlock(&self, key: &TokenKey, lock_id: &str) -> Result<(), String> {
        let mut con = self.connection.clone();
        let _: i64 = redis::Script::new(UNLOCK)
            .key(format!("{}:lock", self.key(key)))
            .arg(lock_id)
            .invoke_async(&mut con)
            .await
            .map_err(redis_error)?;
        Ok(())
    }
}
