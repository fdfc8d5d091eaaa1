//! The event's caps that hold across the fleet — requests per attendee per UTC day
//! (`daily_request_cap`), tokens per attendee per UTC day (`daily_token_cap`) and tokens for the
//! whole event (`token_budget`) — without a call per request: the edge takes leases from the
//! control plane's counters and spends them locally.
//!
//! - Requests are spent when a call is admitted.
//! - Tokens are known only when a call ends, so token caps are *admit, then charge*: a call is
//!   admitted while the edge holds leased tokens; when it ends, what it really used (the
//!   upstream's `total_tokens`) is charged, and anything beyond the lease becomes a debt that the
//!   next lease call pays into the counter first. A cap is therefore exceeded by at most the
//!   tokens of the calls in flight on each edge when it is reached.
//!
//! The next lease is fetched in the background when half of the current one is spent, so a
//! request waits for the control plane only for an attendee's first request of the day on this
//! edge — and then at most the control-call deadline. A lease another edge holds unspent is lost
//! (the counter already counts it), so leases stay small (a twentieth of the cap; a hundredth of
//! an event budget): caps are never exceeded through leases, and an attendee may be refused up to
//! one lease per edge early. If the control plane cannot be reached and nothing is leased, the
//! request is let through (the edge keeps serving while the control plane is down), a warning is
//! logged, and the tokens it uses are charged as debt once the control plane is back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aiproxy_proto::v1 as pb;
use chrono::{DateTime, Duration, Utc};

use crate::state::EdgeState;

/// After a failed lease call, how long requests stop waiting for the control plane.
const UNREACHABLE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    DailyRequests,
    DailyTokens,
    EventTokens,
}

impl Counter {
    fn proto(self) -> pb::LeaseCounter {
        match self {
            Counter::DailyRequests => pb::LeaseCounter::DailyRequests,
            Counter::DailyTokens => pb::LeaseCounter::DailyTokens,
            Counter::EventTokens => pb::LeaseCounter::EventTokens,
        }
    }
}

/// One counter of one attendee (or event) for one period, under one cap: a changed cap starts a
/// new allowance, so raising a cap mid-day takes effect at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    counter: Counter,
    event_id: String,
    /// Empty for the event budget.
    user_id: String,
    /// The UTC day; empty for the event budget.
    day: String,
    cap: u64,
}

impl Key {
    /// What one lease asks for.
    fn lease(&self) -> u64 {
        match self.counter {
            Counter::DailyRequests => (self.cap / 20).clamp(1, 20),
            Counter::DailyTokens => (self.cap / 20).max(1),
            Counter::EventTokens => (self.cap / 100).max(1),
        }
    }
}

#[derive(Default)]
struct Allowance {
    /// Leased and not yet spent.
    left: u64,
    /// Spent beyond the lease (tokens of calls that ended after it ran out), not yet sent.
    debt: u64,
    /// The control plane granted nothing: the cap is reached.
    dry: bool,
    /// A background lease is on its way.
    refilling: bool,
    /// The last lease call failed: until then, requests with nothing leased are let through at
    /// once (a background lease keeps trying) instead of each waiting for the control plane.
    unreachable_until: Option<std::time::Instant>,
}

#[derive(Default)]
pub struct Quotas {
    allowances: Mutex<HashMap<Key, Allowance>>,
}

/// A cap is reached: the answer is 429 with this message, and `Retry-After` when waiting helps.
#[derive(Debug)]
pub struct CapReached {
    pub message: String,
    pub retry_after_secs: Option<i64>,
}

/// The token counters an admitted call charges when it ends.
#[derive(Debug, Default, Clone)]
pub struct Charge {
    keys: Vec<Key>,
}

/// What the local allowance says about one more call.
enum Local {
    Admitted {
        refill: bool,
    },
    Reached,
    /// Nothing leased; `wait` false while the control plane is known to be failing.
    Empty {
        wait: bool,
        refill: bool,
    },
}

impl Quotas {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<Key, Allowance>) -> R) -> R {
        f(&mut self.allowances.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Admits one call against `key`, spending `cost` (1 for requests; 0 for tokens, which are
    /// charged when the call ends).
    fn admit_local(&self, key: &Key, cost: u64) -> Local {
        self.with(|all| {
            let allowance = all.entry(key.clone()).or_default();
            if allowance.left > 0 && allowance.left >= cost {
                allowance.left -= cost;
                let refill = allowance.wants_refill(key.lease());
                allowance.refilling |= refill;
                Local::Admitted { refill }
            } else if allowance.dry {
                Local::Reached
            } else {
                let failing = allowance
                    .unreachable_until
                    .is_some_and(|until| std::time::Instant::now() < until);
                let refill = failing && !allowance.refilling;
                allowance.refilling |= refill;
                Local::Empty {
                    wait: !failing,
                    refill,
                }
            }
        })
    }

    /// Adds a lease's grant (0: the cap is reached), or notes that the lease call failed and
    /// keeps the debt it carried for the next one.
    fn leased(&self, key: &Key, granted: Result<u64, &str>, debt_sent: u64) {
        self.with(|all| {
            let allowance = all.entry(key.clone()).or_default();
            match granted {
                Ok(granted) => {
                    allowance.left += granted;
                    allowance.dry |= granted == 0;
                    allowance.unreachable_until = None;
                }
                Err(_) => {
                    allowance.debt += debt_sent;
                    allowance.unreachable_until =
                        Some(std::time::Instant::now() + UNREACHABLE_BACKOFF);
                }
            }
        });
    }

    /// The debt to send with a lease call (taken: it is added back if the call fails).
    fn take_debt(&self, key: &Key) -> u64 {
        self.with(|all| all.get_mut(key).map(|a| std::mem::take(&mut a.debt)))
            .unwrap_or(0)
    }

    /// Admits a model call under every cap the event sets, or says which cap is reached. Token
    /// caps are checked first, so a refused call spends no request.
    pub async fn admit(
        &self,
        state: &Arc<EdgeState>,
        event: &pb::EventInfo,
        user_id: &str,
    ) -> Result<Charge, CapReached> {
        let now = Utc::now();
        let day = now.format("%Y-%m-%d").to_string();
        let key = |counter, user: &str, day: &str, cap| Key {
            counter,
            event_id: event.id.clone(),
            user_id: user.to_string(),
            day: day.to_string(),
            cap,
        };
        let mut charge = Charge::default();
        if event.daily_token_cap > 0 {
            charge.keys.push(key(
                Counter::DailyTokens,
                user_id,
                &day,
                event.daily_token_cap,
            ));
        }
        if event.token_budget > 0 {
            charge
                .keys
                .push(key(Counter::EventTokens, "", "", event.token_budget));
        }
        for key in &charge.keys {
            self.admit_one(state, key, 0, now).await?;
        }
        if event.daily_request_cap > 0 {
            let key = key(
                Counter::DailyRequests,
                user_id,
                &day,
                u64::from(event.daily_request_cap),
            );
            self.admit_one(state, &key, 1, now).await?;
        }
        Ok(charge)
    }

    async fn admit_one(
        &self,
        state: &Arc<EdgeState>,
        key: &Key,
        cost: u64,
        now: DateTime<Utc>,
    ) -> Result<(), CapReached> {
        match self.admit_local(key, cost) {
            Local::Admitted { refill }
            | Local::Empty {
                wait: false,
                refill,
            } => {
                if refill {
                    spawn_refill(state, key.clone());
                }
                return Ok(());
            }
            Local::Reached => return Err(reached(key, now)),
            Local::Empty { wait: true, .. } => {}
        }
        // Yesterday's allowances are of no use any more (the event budget has no day).
        let today = key.day.clone();
        self.with(|all| all.retain(|k, _| k.day.is_empty() || k.day == today));
        let debt = self.take_debt(key);
        let granted = lease(state, key, debt).await;
        self.leased(
            key,
            granted.as_ref().map(|g| *g).map_err(String::as_str),
            debt,
        );
        match granted {
            Ok(_) => match self.admit_local(key, cost) {
                Local::Admitted { refill } => {
                    if refill {
                        spawn_refill(state, key.clone());
                    }
                    Ok(())
                }
                Local::Reached | Local::Empty { .. } => Err(reached(key, now)),
            },
            Err(e) => {
                tracing::warn!(event = %key.event_id, counter = ?key.counter, error = %e, "cap not checked: the control plane is unreachable");
                Ok(())
            }
        }
    }

    /// Charges the tokens a call used to the counters it was admitted under.
    pub fn charge(&self, state: &Arc<EdgeState>, charge: &Charge, tokens: u64) {
        if tokens == 0 {
            return;
        }
        for key in &charge.keys {
            let refill = self.with(|all| {
                let allowance = all.entry(key.clone()).or_default();
                let from_lease = allowance.left.min(tokens);
                allowance.left -= from_lease;
                allowance.debt += tokens - from_lease;
                let refill = allowance.wants_refill(key.lease()) || allowance.debt > 0;
                let refill = refill && !allowance.refilling && !allowance.dry;
                allowance.refilling |= refill;
                refill
            });
            if refill {
                spawn_refill(state, key.clone());
            }
        }
    }
}

impl Allowance {
    fn wants_refill(&self, lease: u64) -> bool {
        !self.dry && !self.refilling && self.left <= lease / 2
    }
}

fn reached(key: &Key, now: DateTime<Utc>) -> CapReached {
    let midnight = (now + Duration::days(1))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap_or_default()
        .and_utc();
    let until_midnight = Some((midnight - now).num_seconds().max(1));
    let cap = key.cap;
    match key.counter {
        Counter::DailyRequests => CapReached {
            message: format!(
                "The event daily request rate of {cap} calls has been exceeded. Requests are disabled until UTC midnight."
            ),
            retry_after_secs: until_midnight,
        },
        Counter::DailyTokens => CapReached {
            message: format!(
                "The event daily token cap of {cap} tokens per attendee has been reached. Requests are disabled until UTC midnight."
            ),
            retry_after_secs: until_midnight,
        },
        Counter::EventTokens => CapReached {
            message: format!(
                "The event token budget of {cap} tokens has been used up. Ask the organizer to raise it."
            ),
            retry_after_secs: None,
        },
    }
}

/// One lease call: the lease's size (never more than the cap), paying `debt` first.
async fn lease(state: &EdgeState, key: &Key, debt: u64) -> Result<u64, String> {
    let wanted = u32::try_from(key.lease().min(key.cap)).unwrap_or(u32::MAX);
    state
        .control
        .lease(pb::LeaseRequest {
            event_id: key.event_id.clone(),
            user_id: key.user_id.clone(),
            day: key.day.clone(),
            wanted,
            counter: key.counter.proto().into(),
            debt,
        })
        .await
        .map(u64::from)
}

/// Leases more in the background, before the current lease runs out (and pays the debt).
fn spawn_refill(state: &Arc<EdgeState>, key: Key) {
    let state = state.clone();
    tokio::spawn(async move {
        let debt = state.quota.take_debt(&key);
        let granted = lease(&state, &key, debt).await;
        state.quota.with(|all| {
            if let Some(a) = all.get_mut(&key) {
                a.refilling = false;
            }
        });
        if let Err(e) = &granted {
            tracing::debug!(event = %key.event_id, counter = ?key.counter, error = %e, "could not lease ahead for a cap");
        }
        state.quota.leased(
            &key,
            granted.as_ref().map(|g| *g).map_err(String::as_str),
            debt,
        );
    });
}
