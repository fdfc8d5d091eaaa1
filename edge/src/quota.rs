//! The event's caps that hold across the fleet — requests per attendee per UTC day
//! (`daily_request_cap`), tokens per attendee per UTC day (`daily_token_cap`) and tokens for the
//! whole event (`token_budget`) — without a call per request: the edge takes leases from the
//! control plane's counters and spends them locally.
//!
//! - Requests are spent when a call is admitted.
//! - Tokens are known only when a call ends, so token caps are *admit, then charge*: a call is
//!   admitted while the edge holds leased tokens; when it ends, what it really used (the
//!   upstream's `total_tokens`) is charged, and anything beyond the lease becomes a debt that the
//!   next lease call pays into the counter first (debt made while a lease call is on its way is
//!   paid from its grant). A cap is therefore exceeded by at most the
//!   tokens of the calls in flight on each edge when it is reached.
//!
//! The next lease is fetched in the background when half of the current one is spent, so a
//! request waits for the control plane only for an attendee's first request of the day on this
//! edge — and then at most the control-call deadline. Leases are sized to the attendee's observed
//! rate on this edge (what it spent since its previous lease, smoothed), to cover about
//! `LEASE_HORIZON` of calls, so a busy attendee costs a lease every second or so whatever its rate
//! (the control plane's counters are written O(edges), not O(requests)). A lease is never smaller
//! than the base size (a twentieth of a daily cap, at most 20 requests; a hundredth of an event
//! budget) and never larger than a quarter of what the control plane says is left of the cap. A
//! lease another edge holds unspent is lost (the counter already counts it): caps are never
//! exceeded through leases, and an attendee may be refused up to one lease per edge early. If the
//! control plane cannot be reached and nothing is leased, the request is let through (the edge
//! keeps serving while the control plane is down), a warning is logged, and the tokens it uses are
//! charged as debt once the control plane is back.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use aiproxy_proto::v1 as pb;
use arc_swap::ArcSwapOption;
use chrono::{DateTime, Duration, Utc};
use tokio::sync::watch;

use crate::maps::FastMap;
use crate::state::EdgeState;

/// After a failed lease call, how long requests stop waiting for the control plane.
const UNREACHABLE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(2);

/// How much time of calls, at the observed rate, one lease covers.
const LEASE_HORIZON_SECS: f64 = 2.0;

/// Runs and stored responses whose tokens were charged lately (a finished run is often read
/// several times).
const RECENT_ONCE_KEYS: usize = 10_000;

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
    /// The UTC day (`2026-12-04`); empty for the event budget.
    day: Arc<str>,
    cap: u64,
}

impl Key {
    /// The smallest lease (and the first one's size, before any rate is known).
    fn base_lease(&self) -> u64 {
        match self.counter {
            Counter::DailyRequests => (self.cap / 20).clamp(1, 20),
            Counter::DailyTokens => (self.cap / 20).max(1),
            Counter::EventTokens => (self.cap / 100).max(1),
        }
    }
}

struct Allowance {
    /// Leased and not yet spent.
    left: u64,
    /// The size of the last lease asked for (the next is fetched when half of it is left).
    lease: u64,
    /// What the control plane said was left of the cap at the last lease.
    left_at_source: u64,
    /// Spent since `window_start` (requests, or tokens charged), for the rate.
    window_start: std::time::Instant,
    window_spent: u64,
    /// Spent per second, smoothed over the last leases.
    rate: f64,
    /// Spent beyond the lease (tokens of calls that ended after it ran out), not yet sent.
    debt: u64,
    /// The control plane granted nothing: the cap is reached.
    dry: bool,
    /// A background lease is on its way.
    refilling: bool,
    /// The last lease call failed: until then, requests with nothing leased are let through at
    /// once (a background lease keeps trying) instead of each waiting for the control plane.
    unreachable_until: Option<std::time::Instant>,
    /// A request with nothing leased is fetching a lease and others wait for it: one lease call,
    /// not one per waiting request (turns `true` when it is in; dropped if that request is).
    leasing: Option<watch::Receiver<bool>>,
}

#[derive(Default)]
pub struct Quotas {
    allowances: Mutex<FastMap<Key, Allowance>>,
    /// Lease calls made (shown in `/readyz`: they should grow with time, not with traffic).
    lease_calls: std::sync::atomic::AtomicU64,
    /// The once-keys charged lately, and their order (the oldest is forgotten first).
    charged_once: Mutex<(HashSet<String>, VecDeque<String>)>,
    /// Today's UTC day (its number, and as spelled in keys): formatted once a day, not per
    /// request, and read without a lock.
    today: ArcSwapOption<(i64, Arc<str>)>,
    /// The day of keys that have none (the event budget).
    no_day: Arc<str>,
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

impl Default for Allowance {
    fn default() -> Self {
        Self {
            left: 0,
            lease: 0,
            left_at_source: u64::MAX,
            window_start: std::time::Instant::now(),
            window_spent: 0,
            rate: 0.0,
            debt: 0,
            dry: false,
            refilling: false,
            unreachable_until: None,
            leasing: None,
        }
    }
}

/// The allowance of `key`, made on first use (the key is cloned only then: this runs per request).
fn allowance_of<'a>(all: &'a mut FastMap<Key, Allowance>, key: &Key) -> &'a mut Allowance {
    if !all.contains_key(key) {
        all.insert(key.clone(), Allowance::default());
    }
    all.get_mut(key).expect("inserted above")
}

/// The size of the next lease: `LEASE_HORIZON_SECS` of calls at `rate`, at least `base`, at most
/// a quarter of what is left of the cap (but never under `base`), and never more than the cap.
fn lease_size(base: u64, rate: f64, left_at_source: u64, cap: u64) -> u64 {
    let by_rate = (rate * LEASE_HORIZON_SECS).ceil() as u64;
    let most = base.max(left_at_source / 4);
    by_rate.clamp(base, most).min(cap).max(1)
}

impl Quotas {
    fn with<R>(&self, f: impl FnOnce(&mut FastMap<Key, Allowance>) -> R) -> R {
        f(&mut self.allowances.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Admits one call against `key`, spending `cost` (1 for requests; 0 for tokens, which are
    /// charged when the call ends).
    fn admit_local(&self, key: &Key, cost: u64) -> Local {
        self.with(|all| {
            let allowance = allowance_of(all, key);
            if allowance.left > 0 && allowance.left >= cost {
                allowance.left -= cost;
                allowance.window_spent += cost;
                let refill = allowance.wants_refill();
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
    fn leased(&self, key: &Key, granted: Result<&pb::Lease, &str>, debt_sent: u64) {
        self.with(|all| {
            let allowance = allowance_of(all, key);
            match granted {
                Ok(lease) => {
                    // Calls that ended while this lease was on its way, beyond what was leased,
                    // are paid from it first: its grant was sized without that debt, so adding
                    // it whole would let this edge overshoot the cap once per lease in flight.
                    let granted = u64::from(lease.granted);
                    let paid = granted.min(allowance.debt);
                    allowance.debt -= paid;
                    allowance.left += granted - paid;
                    allowance.left_at_source = lease.left;
                    allowance.dry |= lease.granted == 0;
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

    /// The terms of the next lease call: its size (from the rate observed since the previous
    /// one) and the debt it pays (taken: it is added back if the call fails).
    fn lease_terms(&self, key: &Key) -> (u64, u64) {
        self.with(|all| {
            let a = allowance_of(all, key);
            let now = std::time::Instant::now();
            let elapsed = (now - a.window_start).as_secs_f64().max(0.05);
            let observed = a.window_spent as f64 / elapsed;
            a.rate = if a.rate == 0.0 {
                observed
            } else {
                (a.rate + observed) / 2.0
            };
            a.window_start = now;
            a.window_spent = 0;
            a.lease = if a.dry {
                // Only the debt is paid: nothing is left to lease.
                0
            } else {
                lease_size(key.base_lease(), a.rate, a.left_at_source, key.cap)
            };
            (a.lease, std::mem::take(&mut a.debt))
        })
    }

    /// Admits a model call under every cap the event sets, or says which cap is reached. Token
    /// caps are checked first, so a refused call spends no request.
    /// `tokens`: the call may generate tokens (search and MCP calls do not: only the request cap
    /// applies to them).
    pub async fn admit(
        &self,
        state: &Arc<EdgeState>,
        event: &pb::EventInfo,
        user_id: &str,
        tokens: bool,
    ) -> Result<Charge, CapReached> {
        let now = Utc::now();
        let day = self.day_of(now);
        let key = |counter, user: &str, day: &Arc<str>, cap| Key {
            counter,
            event_id: event.id.clone(),
            user_id: user.to_string(),
            day: day.clone(),
            cap,
        };
        let mut charge = Charge::default();
        if tokens && event.daily_token_cap > 0 {
            charge.keys.push(key(
                Counter::DailyTokens,
                user_id,
                &day,
                event.daily_token_cap,
            ));
        }
        if tokens && event.token_budget > 0 {
            charge.keys.push(key(
                Counter::EventTokens,
                "",
                &self.no_day,
                event.token_budget,
            ));
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
        // Each round: the allowance admits, refuses, or is empty; then one request leases while
        // the others wait for it. Every round ends with a lease (more admitted, or none granted:
        // the cap is reached) or a failed call (let through), so the loop ends; waiters that a
        // small lease missed simply wait for the next one.
        loop {
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
            match self.lease_turn(key) {
                Turn::Wait(mut done) => {
                    // The sender dropped (that request went away) ends the wait too.
                    let _ = done.wait_for(|in_| *in_).await;
                }
                Turn::Lead(turn) => {
                    // Yesterday's allowances are of no use any more (the event budget has no day).
                    let today = key.day.clone();
                    self.with(|all| all.retain(|k, _| k.day.is_empty() || k.day == today));
                    let (wanted, debt) = self.lease_terms(key);
                    // Boxed: a control call's state is large, and most calls need no lease.
                    let granted = Box::pin(lease(state, key, wanted, debt)).await;
                    self.leased(key, granted.as_ref().map_err(String::as_str), debt);
                    drop(turn);
                    if let Err(e) = granted {
                        tracing::warn!(event = %key.event_id, counter = ?key.counter, error = %e, "cap not checked: the control plane is unreachable");
                        return Ok(());
                    }
                }
            }
        }
    }

    /// `now`'s UTC day, `2026-12-04`.
    fn day_of(&self, now: DateTime<Utc>) -> Arc<str> {
        let number = now.timestamp().div_euclid(86_400);
        if let Some((n, day)) = self.today.load().as_deref()
            && *n == number
        {
            return day.clone();
        }
        let day: Arc<str> = now.format("%Y-%m-%d").to_string().into();
        self.today.store(Some(Arc::new((number, day.clone()))));
        day
    }

    /// Who fetches the lease `key` waits for: this request, or another one already on it.
    fn lease_turn<'a>(&'a self, key: &'a Key) -> Turn<'a> {
        self.with(|all| {
            let allowance = allowance_of(all, key);
            if let Some(done) = allowance
                .leasing
                .as_ref()
                .filter(|d| d.has_changed().is_ok())
            {
                return Turn::Wait(done.clone());
            }
            let (tx, rx) = watch::channel(false);
            allowance.leasing = Some(rx);
            Turn::Lead(LeaseTurn {
                quotas: self,
                key,
                tx,
            })
        })
    }

    /// Whether the tokens of this once-key were charged lately (by a read of its object).
    pub fn charged_once(&self, key: &str) -> bool {
        let recent = self.charged_once.lock().unwrap_or_else(|p| p.into_inner());
        recent.0.contains(key)
    }

    /// Whether this once-key is seen for the first time lately.
    fn first_sight(&self, key: &str) -> bool {
        let mut recent = self.charged_once.lock().unwrap_or_else(|p| p.into_inner());
        if !recent.0.insert(key.to_string()) {
            return false;
        }
        recent.1.push_back(key.to_string());
        if recent.1.len() > RECENT_ONCE_KEYS
            && let Some(old) = recent.1.pop_front()
        {
            recent.0.remove(&old);
        }
        true
    }

    /// Lease calls made since start.
    pub fn lease_calls(&self) -> u64 {
        self.lease_calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Charges the tokens a call used to the counters it was admitted under. A run's or a stored
    /// response's usage shows on every read of it: with its `once_key` (empty for other calls)
    /// its tokens are charged on the first read only (the control plane counts the totals once
    /// the same way). Returns whether they were charged (false: that object's usage was read
    /// before).
    pub fn charge(
        &self,
        state: &Arc<EdgeState>,
        charge: &Charge,
        tokens: u64,
        once_key: &str,
    ) -> bool {
        if !once_key.is_empty() && !self.first_sight(once_key) {
            return false;
        }
        if tokens == 0 {
            return true;
        }
        for key in &charge.keys {
            if self.charge_local(key, tokens) {
                spawn_refill(state, key.clone());
            }
        }
        true
    }

    /// Spends `tokens` from what `key` has leased, the rest as debt; returns whether a lease call
    /// should start (none is on its way, and the lease is half spent or there is a debt to pay).
    fn charge_local(&self, key: &Key, tokens: u64) -> bool {
        self.with(|all| {
            let allowance = allowance_of(all, key);
            let from_lease = allowance.left.min(tokens);
            allowance.left -= from_lease;
            allowance.debt += tokens - from_lease;
            allowance.window_spent += tokens;
            // Past the cap (dry) a debt is still paid: the counter must know what was used,
            // or raising the cap later would let it be exceeded by more than the bound.
            let refill = allowance.wants_refill() || allowance.debt > 0;
            let refill = refill && !allowance.refilling;
            allowance.refilling |= refill;
            refill
        })
    }
}

impl Allowance {
    fn wants_refill(&self) -> bool {
        !self.dry && !self.refilling && self.left <= self.lease / 2
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

enum Turn<'a> {
    Wait(watch::Receiver<bool>),
    Lead(LeaseTurn<'a>),
}

/// The request fetching a lease others wait for; when it ends (lease in, or the request dropped)
/// the waiters look again.
struct LeaseTurn<'a> {
    quotas: &'a Quotas,
    key: &'a Key,
    tx: watch::Sender<bool>,
}

impl Drop for LeaseTurn<'_> {
    fn drop(&mut self) {
        self.quotas.with(|all| {
            if let Some(a) = all.get_mut(self.key) {
                a.leasing = None;
            }
        });
        let _ = self.tx.send(true);
    }
}

/// One lease call for `wanted`, paying `debt` first.
async fn lease(state: &EdgeState, key: &Key, wanted: u64, debt: u64) -> Result<pb::Lease, String> {
    state
        .quota
        .lease_calls
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    state
        .control
        .lease(pb::LeaseRequest {
            event_id: key.event_id.clone(),
            user_id: key.user_id.clone(),
            day: key.day.to_string(),
            wanted: u32::try_from(wanted).unwrap_or(u32::MAX),
            counter: key.counter.proto().into(),
            debt,
        })
        .await
}

/// Leases more in the background, before the current lease runs out (and pays the debt).
fn spawn_refill(state: &Arc<EdgeState>, key: Key) {
    let state = state.clone();
    tokio::spawn(async move {
        let (wanted, debt) = state.quota.lease_terms(&key);
        let granted = lease(&state, &key, wanted, debt).await;
        state.quota.with(|all| {
            if let Some(a) = all.get_mut(&key) {
                a.refilling = false;
            }
        });
        if let Err(e) = &granted {
            tracing::debug!(event = %key.event_id, counter = ?key.counter, error = %e, "could not lease ahead for a cap");
        }
        state
            .quota
            .leased(&key, granted.as_ref().map_err(String::as_str), debt);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_of_the_utc_day_of_the_call() {
        let quotas = Quotas::default();
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let late = quotas.day_of(at("2026-12-04T23:59:59.999+00:00"));
        assert_eq!(&*late, "2026-12-04");
        // Still the 4th in UTC, whatever the offset it was written with.
        assert_eq!(
            &*quotas.day_of(at("2026-12-05T01:00:00+02:00")),
            "2026-12-04"
        );
        assert!(Arc::ptr_eq(
            &late,
            &quotas.day_of(at("2026-12-04T00:00:00Z"))
        ));
        assert_eq!(&*quotas.day_of(at("2026-12-05T00:00:00Z")), "2026-12-05");
        assert_eq!(&*quotas.day_of(at("1969-12-31T23:00:00Z")), "1969-12-31");
    }

    #[test]
    fn a_run_is_charged_once() {
        let quotas = Quotas::default();
        assert!(quotas.first_sight("run:r:1"));
        assert!(!quotas.first_sight("run:r:1"));
        assert!(quotas.first_sight("run:r:2"));
    }

    /// The cap of 1,000 tokens: one edge leases 100 of the last 100 while its three calls in
    /// flight end with 150 tokens beyond its previous lease. The grant pays those first, so
    /// the calls it admits next are the only overshoot left, not a second one on top.
    #[test]
    fn a_grant_first_pays_the_tokens_used_while_it_was_on_its_way() {
        let quotas = Quotas::default();
        let key = Key {
            counter: Counter::DailyTokens,
            event_id: "e".into(),
            user_id: "u".into(),
            day: "2026-12-04".into(),
            cap: 1_000,
        };
        let (_, debt) = quotas.lease_terms(&key);
        assert_eq!(debt, 0, "nothing was owed when the lease was asked for");
        assert!(quotas.charge_local(&key, 150), "a debt asks for a lease");
        let lease = pb::Lease {
            granted: 100,
            left: 0,
        };
        quotas.leased(&key, Ok(&lease), debt);
        let (left, owed) = quotas.with(|all| {
            let a = allowance_of(all, &key);
            (a.left, a.debt)
        });
        assert_eq!(
            (left, owed),
            (0, 50),
            "100 of the 150 are paid from the grant"
        );
        assert!(matches!(quotas.admit_local(&key, 0), Local::Empty { .. }));
        // A grant larger than the debt leaves the rest to spend.
        quotas.leased(
            &key,
            Ok(&pb::Lease {
                granted: 80,
                left: 0,
            }),
            0,
        );
        let left = quotas.with(|all| allowance_of(all, &key).left);
        assert_eq!(left, 30);
    }

    #[test]
    fn leases_follow_the_rate_within_the_base_and_a_quarter_of_what_is_left() {
        // 15,000 requests/s against a daily cap of 1,000,000: two seconds' worth per lease.
        assert_eq!(lease_size(20, 15_000.0, 900_000, 1_000_000), 30_000);
        // Near the end of the cap: a quarter of what is left, but never under the base.
        assert_eq!(lease_size(20, 15_000.0, 40_000, 1_000_000), 10_000);
        assert_eq!(lease_size(20, 15_000.0, 10, 1_000_000), 20);
        // An idle attendee, or the first lease: the base.
        assert_eq!(lease_size(20, 0.0, u64::MAX, 1_000_000), 20);
        // Never more than the cap.
        assert_eq!(lease_size(5, 1e9, u64::MAX, 100), 100);
    }
}
