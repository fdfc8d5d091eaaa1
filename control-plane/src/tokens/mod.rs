//! Managed-identity tokens: minted only here, one per (identity, scope), cached where every
//! control-plane replica sees them (`redis_cache`, through `redis_or_memory` so that Redis down
//! at start is not fatal; `cache::MemoryTokenCache` in the embedded mode), refreshed on a schedule
//! (`refresh`) by the `broker`, which also hands them to the Sync streams.

pub mod broker;
pub mod cache;
pub mod redis_cache;
pub mod redis_or_memory;
pub mod refresh;

pub use broker::{BrokerSettings, TokenBroker, TokenSource, TokenStatus};
pub use cache::{CachedToken, MemoryTokenCache, TokenCache};
pub use redis_cache::RedisTokenCache;
pub use redis_or_memory::RedisOrMemoryCache;
