//! The edge side of `EdgeService.Sync`: connect, say Hello with the version held, apply each update
//! into a new snapshot (ACK) or keep the current one (NACK), and reconnect with exponential backoff
//! and jitter when the stream ends. The last snapshot keeps serving meanwhile. Large updates
//! arrive in chunks (`chunks`); ownership invalidations ride on the same stream.

mod chunks;
mod client;

pub use client::{SyncClient, SyncSettings};
