//! The token cache when `AIPROXY_REDIS_URL` is set. Redis being down when the control plane starts
//! is not fatal: until Redis first answers, tokens live in this replica's memory (as in the
//! embedded mode; other replicas mint their own meanwhile) while a background task keeps trying
//! to connect, backing off to 30 s. From then on Redis is used; its connection manager reconnects
//! by itself after later outages, and the broker keeps serving the tokens it holds.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;

use super::cache::{CachedToken, MemoryTokenCache, TokenCache};
use super::redis_cache::RedisTokenCache;
use crate::identity::TokenKey;
use crate::secrets::KeyCipher;

const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);

pub struct RedisOrMemoryCache {
    redis: OnceLock<RedisTokenCache>,
    memory: MemoryTokenCache,
}

impl RedisOrMemoryCache {
    /// Connects to Redis, or starts without it and reconnects in the background. Fails only for a
    /// URL that is not a Redis URL.
    pub async fn start(
        url: &str,
        cipher: Arc<KeyCipher>,
        catalog_id: &str,
    ) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("AIPROXY_REDIS_URL is not a valid Redis URL: {e}"))?;
        let cache = Arc::new(Self {
            redis: OnceLock::new(),
            memory: MemoryTokenCache::default(),
        });
        match RedisTokenCache::connect_client(&client, cipher.clone(), catalog_id).await {
            Ok(redis) => {
                let _ = cache.redis.set(redis);
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "Redis (AIPROXY_REDIS_URL) is unavailable: tokens are cached in memory until it answers; reconnecting in the background"
                );
                tokio::spawn(reconnect(
                    Arc::downgrade(&cache),
                    client,
                    cipher,
                    catalog_id.to_string(),
                ));
            }
        }
        Ok(cache)
    }

    /// Whether Redis is in use (it has answered once).
    pub fn uses_redis(&self) -> bool {
        self.redis.get().is_some()
    }

    fn current(&self) -> &dyn TokenCache {
        match self.redis.get() {
            Some(redis) => redis,
            None => &self.memory,
        }
    }
}

/// Tries to connect until it succeeds or the cache is gone.
async fn reconnect(
    cache: Weak<RedisOrMemoryCache>,
    client: redis::Client,
    cipher: Arc<KeyCipher>,
    catalog_id: String,
) {
    let mut wait = FIRST_RETRY;
    loop {
        tokio::time::sleep(wait).await;
        if cache.strong_count() == 0 {
            return;
        }
        match RedisTokenCache::connect_client(&client, cipher.clone(), &catalog_id).await {
            Ok(redis) => {
                if let Some(cache) = cache.upgrade() {
                    let _ = cache.redis.set(redis);
                    tracing::info!("Redis answers: the shared token cache is in use");
                }
                return;
            }
            Err(e) => {
                wait = (wait * 2).min(MAX_RETRY);
                tracing::debug!(error = %e, retry_in_s = wait.as_secs(), "Redis still unavailable");
            }
        }
    }
}

#[async_trait]
impl TokenCache for RedisOrMemoryCache {
    async fn get(&self, key: &TokenKey) -> Result<Option<CachedToken>, String> {
        self.current().get(key).await
    }

    async fn put(&self, key: &TokenKey, token: &CachedToken) -> Result<(), String> {
        self.current().put(key, token).await
    }

    async fn try_lock(&self, key: &TokenKey, ttl: Duration) -> Result<Option<String>, String> {
        self.current().try_lock(key, ttl).await
    }

    async fn unlock(&self, key: &TokenKey, lock_id: &str) -> Result<(), String> {
        self.current().unlock(key, lock_id).await
    }
}
