//! The token caches: the Redis one (real Redis from `AIPROXY_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`; scripts/test.sh starts it) keeps tokens encrypted with a TTL equal to
//! the lifetime left and hands the mint lock to one holder at a time; the memory one behaves alike.

use std::sync::Arc;
use std::time::Duration;

use aiproxy_control_plane::identity::{Scope, TokenKey};
use aiproxy_control_plane::secrets::{KeyCipher, Secret};
use aiproxy_control_plane::tokens::{CachedToken, MemoryTokenCache, RedisTokenCache, TokenCache};

fn redis_url() -> String {
    std::env::var("AIPROXY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn key() -> TokenKey {
    TokenKey {
        identity_client_id: Some("cid-1".into()),
        scope: Scope::AiAzure,
    }
}

fn token(lifetime_ms: i64) -> CachedToken {
    let now = chrono::Utc::now().timestamp_millis();
    CachedToken {
        token: Secret::new("eyJ.super-secret-token"),
        expires_on_ms: now + lifetime_ms,
        issued_at_ms: now,
        source: "ManagedIdentityCredential".into(),
    }
}

async fn lock_is_exclusive(cache: &dyn TokenCache) {
    let first = cache
        .try_lock(&key(), Duration::from_secs(30))
        .await
        .unwrap()
        .expect("free lock");
    assert!(
        cache
            .try_lock(&key(), Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "held by another"
    );
    cache.unlock(&key(), "not-the-holder").await.unwrap();
    assert!(
        cache
            .try_lock(&key(), Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "only the holder releases"
    );
    cache.unlock(&key(), &first).await.unwrap();
    assert!(
        cache
            .try_lock(&key(), Duration::from_secs(30))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn redis_cache_stores_tokens_encrypted_with_their_lifetime_as_ttl() {
    let catalog = format!("test-{}", uuid::Uuid::new_v4().simple());
    let cipher = Arc::new(KeyCipher::from_raw([5; 32]));
    let cache = RedisTokenCache::connect(&redis_url(), cipher.clone(), &catalog)
        .await
        .unwrap_or_else(|e| {
            panic!("Redis is required for this test (scripts/test.sh starts it): {e}")
        });
    assert!(cache.get(&key()).await.unwrap().is_none());
    cache.put(&key(), &token(120_000)).await.unwrap();
    let back = cache.get(&key()).await.unwrap().unwrap();
    assert_eq!(back.token.expose(), "eyJ.super-secret-token");
    assert_eq!(back.source, "ManagedIdentityCredential");

    let client = redis::Client::open(redis_url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let raw_key = format!("aiproxy:{catalog}:mi-token:cid-1:https://ai.azure.com/.default");
    let raw: String = redis::cmd("GET")
        .arg(&raw_key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        !raw.contains("super-secret"),
        "Redis never holds a token in clear"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&raw_key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        (110_000..=120_000).contains(&ttl),
        "TTL is the lifetime left: {ttl}"
    );

    // Another catalog (another deployment sharing the Redis) sees nothing.
    let other = RedisTokenCache::connect(&redis_url(), cipher, "another-catalog")
        .await
        .unwrap();
    assert!(other.get(&key()).await.unwrap().is_none());

    lock_is_exclusive(&cache).await;
    let _: i64 = redis::cmd("DEL")
        .arg(&raw_key)
        .arg(format!("{raw_key}:lock"))
        .query_async(&mut con)
        .await
        .unwrap();
}

#[tokio::test]
async fn memory_cache_forgets_expired_tokens_and_locks_like_redis() {
    let cache = MemoryTokenCache::default();
    cache.put(&key(), &token(-1)).await.unwrap();
    assert!(
        cache.get(&key()).await.unwrap().is_none(),
        "an expired token is never handed out"
    );
    cache.put(&key(), &token(60_000)).await.unwrap();
    assert!(cache.get(&key()).await.unwrap().is_some());
    lock_is_exclusive(&cache).await;
}

#[tokio::test]
async fn a_cached_token_copied_to_another_slot_does_not_open_there() {
    let catalog = format!("test-{}", uuid::Uuid::new_v4().simple());
    let cipher = Arc::new(KeyCipher::from_raw([6; 32]));
    let cache = RedisTokenCache::connect(&redis_url(), cipher, &catalog)
        .await
        .unwrap_or_else(|e| {
            panic!("Redis is required for this test (scripts/test.sh starts it): {e}")
        });
    cache.put(&key(), &token(120_000)).await.unwrap();
    let other_slot = TokenKey {
        identity_client_id: Some("cid-2".into()),
        scope: Scope::Search,
    };

    let client = redis::Client::open(redis_url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let from = format!("aiproxy:{catalog}:mi-token:cid-1:https://ai.azure.com/.default");
    let to = format!("aiproxy:{catalog}:mi-token:cid-2:https://search.azure.com/.default");
    let blob: String = redis::cmd("GET")
        .arg(&from)
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&to)
        .arg(&blob)
        .arg("PX")
        .arg(60_000)
        .query_async(&mut con)
        .await
        .unwrap();

    let copied = cache.get(&other_slot).await;
    assert!(
        !matches!(&copied, Ok(Some(_))),
        "a token copied to another (identity, scope) was handed out there"
    );
    assert!(
        cache.get(&key()).await.unwrap().is_some(),
        "it still opens in its own slot"
    );
    let _: i64 = redis::cmd("DEL")
        .arg(&from)
        .arg(&to)
        .query_async(&mut con)
        .await
        .unwrap();
}
