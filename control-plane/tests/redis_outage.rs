//! Redis is optional at start: with `AIPROXY_REDIS_URL` pointing at a Redis that is down, the
//! control plane starts, caches tokens in memory, and switches to Redis once it answers (the real
//! Redis of `AIPROXY_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`, behind a loopback relay
//! that comes up later on the port the URL names).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aiproxy_control_plane::identity::{Scope, TokenKey};
use aiproxy_control_plane::secrets::{KeyCipher, Secret};
use aiproxy_control_plane::tokens::{CachedToken, RedisOrMemoryCache, TokenCache};
use support::*;
use tokio::net::TcpListener;

fn redis_addr() -> String {
    let url =
        std::env::var("AIPROXY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    url.trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_string()
}

/// A loopback port nothing listens on (for now).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Relays every connection on `listener` to Redis.
fn relay_to_redis(listener: TcpListener) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(redis_addr()).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

fn token() -> CachedToken {
    let now = chrono::Utc::now().timestamp_millis();
    CachedToken {
        token: Secret::new("eyJ.outage-token"),
        expires_on_ms: now + 120_000,
        issued_at_ms: now,
        source: "ManagedIdentityCredential".into(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_down_at_start_means_memory_first_then_redis() {
    let port = closed_port();
    let url = format!("redis://127.0.0.1:{port}");
    let catalog = format!("outage-{}", uuid::Uuid::new_v4().simple());
    let key = TokenKey {
        identity_client_id: None,
        scope: Scope::CognitiveServices,
    };
    let started = Instant::now();
    let cache = RedisOrMemoryCache::start(&url, Arc::new(KeyCipher::from_raw([7; 32])), &catalog)
        .await
        .expect("a Redis that is down does not stop the start");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert!(!cache.uses_redis());
    cache.put(&key, &token()).await.unwrap();
    assert!(
        cache.get(&key).await.unwrap().is_some(),
        "the memory cache serves meanwhile"
    );

    let relay = relay_to_redis(TcpListener::bind(("127.0.0.1", port)).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cache.uses_redis() {
        assert!(
            Instant::now() < deadline,
            "Redis was never used once it answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cache.get(&key).await.unwrap().is_none(),
        "now reading Redis, which has not seen this token"
    );
    cache.put(&key, &token()).await.unwrap();
    let client = redis::Client::open(format!("redis://{}", redis_addr())).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let raw_key =
        format!("aiproxy:{catalog}:mi-token:default:https://cognitiveservices.azure.com/.default");
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&raw_key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(exists, 1, "the token went to Redis");
    let _: i64 = redis::cmd("DEL")
        .arg(&raw_key)
        .query_async(&mut con)
        .await
        .unwrap();
    relay.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_control_plane_starts_while_redis_is_down() {
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let running = start_fresh_with(|c| c.redis_url = Some(url.as_str().into())).await;
    let resources = running.admin_get("/resources").await;
    assert_eq!(resources, serde_json::json!([]));
}
