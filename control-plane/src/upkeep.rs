//! The hourly upkeep every replica runs: expired ownership records and old forget invalidations
//! (`ownership`), and usage dedupe ids past their retention (`usage`). Each step is an idempotent
//! delete, so replicas need not take turns; a step that fails is retried at the next tick.

use std::sync::Arc;
use std::time::Duration;

use crate::ownership::ObjectOwnership;
use crate::usage::UsageLedger;

/// How often the upkeep runs.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(3600);

pub fn spawn(
    ownership: Arc<ObjectOwnership>,
    usage: Arc<UsageLedger>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now_ms = chrono::Utc::now().timestamp_millis();
            if let Err(e) = ownership.upkeep(now_ms).await {
                tracing::warn!(error = %e, "could not purge expired ownership records; retrying at the next hour");
            }
            if let Err(e) = usage.upkeep(now_ms).await {
                tracing::warn!(error = %e, "could not purge old usage dedupe ids; retrying at the next hour");
            }
        }
    })
}
