//! Quotas held across the fleet without a call per request (`EdgeService.LeaseRequests`): an edge
//! takes small leases from a shared counter ahead of need and spends them locally.
//!
//! Three counters: requests per attendee per UTC day (`daily_request_cap`), tokens per attendee
//! per UTC day (`daily_token_cap`) and tokens for the whole event (`token_budget`). A call's tokens
//! are known only when it ends, so an edge admits a model call while it holds tokens, charges what
//! the call really used, and pays any overdraft (`debt`) with its next lease: the debt is added to
//! the counter before the new lease is carved from what is left. A cap of 0 means no cap: the
//! lease is granted whole and nothing is counted.

use crate::catalog::service::{Catalog, CatalogError, CatalogResult};
use crate::usage::{MAX_TOKENS, parse_utc_day, required_id};

/// Which counter a lease is taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseCounter {
    DailyRequests,
    DailyTokens,
    EventTokens,
}

/// The counter period of an event's token budget (its user id is empty).
pub const EVENT_PERIOD: &str = "event";

/// A lease an edge asks for.
#[derive(Debug, Clone)]
pub struct LeaseAsk {
    pub counter: LeaseCounter,
    pub event_id: String,
    /// Ignored for `EventTokens`.
    pub user_id: String,
    /// UTC day, `YYYY-MM-DD`; ignored for `EventTokens`.
    pub day: String,
    pub wanted: u32,
    /// Tokens spent beyond earlier leases (token counters only).
    pub debt: u64,
}

/// Takes a lease; returns how much was granted (0 once the cap is reached) and what is left of
/// the cap (`u64::MAX` when there is none).
pub async fn lease(catalog: &Catalog, ask: &LeaseAsk) -> CatalogResult<(u32, u64)> {
    required_id("event_id", &ask.event_id)?;
    if ask.counter != LeaseCounter::EventTokens {
        required_id("user_id", &ask.user_id)?;
        parse_utc_day("day", &ask.day)?;
    }
    if ask.debt > MAX_TOKENS {
        return Err(CatalogError::invalid(
            "debt",
            format!("at most {MAX_TOKENS}, got {}", ask.debt),
        ));
    }
    let event = catalog.get_event(&ask.event_id).await?;
    let store = catalog.store();
    let granted = match ask.counter {
        LeaseCounter::DailyRequests => {
            if event.daily_request_cap == 0 {
                return Ok((ask.wanted, u64::MAX));
            }
            let wanted = ask.wanted.max(1);
            store
                .lease_requests(
                    &ask.event_id,
                    &ask.user_id,
                    &ask.day,
                    wanted,
                    event.daily_request_cap,
                )
                .await?
        }
        LeaseCounter::DailyTokens | LeaseCounter::EventTokens => {
            let (cap, user_id, period) = match ask.counter {
                LeaseCounter::DailyTokens => (
                    event.daily_token_cap,
                    ask.user_id.as_str(),
                    ask.day.as_str(),
                ),
                _ => (event.token_budget, "", EVENT_PERIOD),
            };
            if cap == 0 {
                return Ok((ask.wanted, u64::MAX));
            }
            store
                .lease_tokens(
                    &ask.event_id,
                    user_id,
                    period,
                    u64::from(ask.wanted),
                    ask.debt,
                    cap,
                )
                .await?
        }
    };
    Ok((
        u32::try_from(granted.granted).unwrap_or(ask.wanted),
        granted.left,
    ))
}
