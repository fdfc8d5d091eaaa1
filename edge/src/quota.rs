//! Daily request caps (per attendee, per UTC day), held across the fleet without a call per
//! request: the edge takes small leases from the control plane's counter and spends them locally.
//! The next lease is fetched in the background when half of the current one is spent, so a
//! request waits for the control plane only for an attendee's first request of the day on this
//! edge — and then at most the control-call deadline. A lease that another edge holds unspent is
//! lost for the day, so leases stay small (a twentieth of the cap, at most 20): the cap is never
//! exceeded, and an attendee may be refused up to one lease per edge early. If the control plane
//! cannot be reached and nothing is leased, the request is let through (the edge keeps serving
//! while the control plane is down) and a warning is logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aiproxy_proto::v1 as pb;
use chrono::{Duration, Utc};

use crate::state::EdgeState;

/// (event, user, day).
type Key = (String, String, String);

/// After a failed lease call, how long requests stop waiting for the control plane.
const UNREACHABLE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Default)]
struct Allowance {
    /// Requests leased and not yet spent.
    left: u32,
    /// The control plane granted nothing: the day's cap is reached.
    dry: bool,
    /// A background lease is on its way.
    refilling: bool,
    /// The last lease call failed: until then, requests with nothing leased are let through at
    /// once (a background lease keeps trying) instead of each waiting for the control plane.
    unreachable_until: Option<std::time::Instant>,
}

#[derive(Default)]
pub struct RequestQuota {
    allowances: Mutex<HashMap<Key, Allowance>>,
}

/// The cap is reached; retry after this many seconds (UTC midnight).
pub struct CapReached {
    pub cap: u32,
    pub retry_after_secs: i64,
}

/// What the local allowance says about one more request.
enum Local {
    Spent {
        refill: bool,
    },
    Reached,
    /// Nothing leased; `wait` false while the control plane is known to be failing.
    Empty {
        wait: bool,
        refill: bool,
    },
}

impl RequestQuota {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<Key, Allowance>) -> R) -> R {
        f(&mut self.allowances.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn spend(&self, key: &Key, lease: u32) -> Local {
        self.with(|all| {
            let allowance = all.entry(key.clone()).or_default();
            if allowance.left > 0 {
                allowance.left -= 1;
                let refill = !allowance.dry && !allowance.refilling && allowance.left <= lease / 2;
                allowance.refilling |= refill;
                Local::Spent { refill }
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

    /// Adds a lease's grant (0: the cap is reached), or notes that the lease call failed.
    fn leased(&self, key: &Key, granted: Result<u32, &str>) {
        self.with(|all| {
            let allowance = all.entry(key.clone()).or_default();
            match granted {
                Ok(granted) => {
                    allowance.left += granted;
                    allowance.dry |= granted == 0;
                    allowance.unreachable_until = None;
                }
                Err(_) => {
                    allowance.unreachable_until =
                        Some(std::time::Instant::now() + UNREACHABLE_BACKOFF);
                }
            }
        });
    }

    pub async fn take(
        &self,
        state: &Arc<EdgeState>,
        event: &pb::EventInfo,
        user_id: &str,
    ) -> Result<(), CapReached> {
        let cap = event.daily_request_cap;
        if cap == 0 {
            return Ok(());
        }
        let now = Utc::now();
        let day = now.format("%Y-%m-%d").to_string();
        let key = (event.id.clone(), user_id.to_string(), day.clone());
        let lease = (cap / 20).clamp(1, 20);
        let reached = || {
            let midnight = (now + Duration::days(1))
                .date_naive()
                .and_hms_opt(0, 0, 0)
                .unwrap_or_default()
                .and_utc();
            CapReached {
                cap,
                retry_after_secs: (midnight - now).num_seconds().max(1),
            }
        };
        match self.spend(&key, lease) {
            Local::Spent { refill } => {
                if refill {
                    spawn_refill(state, key, lease);
                }
                return Ok(());
            }
            Local::Reached => return Err(reached()),
            Local::Empty {
                wait: false,
                refill,
            } => {
                if refill {
                    spawn_refill(state, key, lease);
                }
                return Ok(());
            }
            Local::Empty { wait: true, .. } => {}
        }
        self.with(|all| all.retain(|(_, _, d), _| *d == day));
        let granted = state
            .control
            .lease_requests(&event.id, user_id, &day, lease)
            .await;
        self.leased(&key, granted.as_ref().map(|g| *g).map_err(String::as_str));
        match granted {
            Ok(_) => match self.spend(&key, lease) {
                Local::Spent { refill } => {
                    if refill {
                        spawn_refill(state, key, lease);
                    }
                    Ok(())
                }
                Local::Reached | Local::Empty { .. } => Err(reached()),
            },
            Err(e) => {
                tracing::warn!(event = %event.id, error = %e, "daily cap not checked: the control plane is unreachable");
                Ok(())
            }
        }
    }
}

/// Leases the next `lease` requests in the background, before the current lease runs out.
fn spawn_refill(state: &Arc<EdgeState>, key: Key, lease: u32) {
    let state = state.clone();
    tokio::spawn(async move {
        let granted = state
            .control
            .lease_requests(&key.0, &key.1, &key.2, lease)
            .await;
        state.quota.with(|all| {
            if let Some(a) = all.get_mut(&key) {
                a.refilling = false;
            }
        });
        if let Err(e) = &granted {
            tracing::debug!(event = %key.0, error = %e, "could not lease ahead for a daily cap");
        }
        state
            .quota
            .leased(&key, granted.as_ref().map(|g| *g).map_err(String::as_str));
    });
}
