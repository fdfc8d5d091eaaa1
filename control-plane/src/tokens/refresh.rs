//! When to refresh a token and how long to wait after a failure.

use std::time::Duration;

const FIVE_MINUTES_MS: i64 = 5 * 60 * 1000;

/// Half-life with ±5 % jitter (`jitter` in [-1, 1]), and never later than 5 minutes before expiry
/// when the lifetime allows it (10 minutes or more: shorter tokens refresh at half-life).
pub fn refresh_at_ms(issued_at_ms: i64, expires_on_ms: i64, jitter: f64) -> i64 {
    let lifetime = (expires_on_ms - issued_at_ms).max(0);
    let at =
        issued_at_ms + lifetime / 2 + (lifetime as f64 * 0.05 * jitter.clamp(-1.0, 1.0)) as i64;
    if lifetime >= 2 * FIVE_MINUTES_MS {
        at.min(expires_on_ms - FIVE_MINUTES_MS)
    } else {
        at
    }
}

/// A random jitter in [-1, 1].
pub fn random_jitter() -> f64 {
    let bytes = crate::secrets::random_bytes(2);
    f64::from(u16::from_le_bytes([bytes[0], bytes[1]])) / f64::from(u16::MAX) * 2.0 - 1.0
}

/// Exponential backoff after failed refreshes: `min`, then doubling up to `max`.
pub fn next_backoff(previous: Duration, min: Duration, max: Duration) -> Duration {
    if previous.is_zero() {
        min
    } else {
        (previous * 2).clamp(min, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60 * 1000;

    #[test]
    fn hour_tokens_refresh_around_half_life() {
        for jitter in [-1.0, 0.0, 1.0] {
            let at = refresh_at_ms(0, 60 * MIN, jitter);
            assert!((27 * MIN..=33 * MIN).contains(&at), "{at}");
        }
    }

    #[test]
    fn refresh_is_never_later_than_five_minutes_before_expiry() {
        for lifetime in [10 * MIN, 11 * MIN, 24 * 60 * MIN] {
            assert!(
                refresh_at_ms(0, lifetime, 1.0) <= lifetime - 5 * MIN,
                "{lifetime}"
            );
        }
    }

    #[test]
    fn short_tokens_refresh_at_half_life() {
        let at = refresh_at_ms(1_000, 61_000, 0.0);
        assert_eq!(at, 31_000);
        assert!(refresh_at_ms(0, 60_000, 1.0) < 60_000);
    }

    #[test]
    fn backoff_is_at_least_thirty_seconds_and_doubles() {
        let (min, max) = (Duration::from_secs(30), Duration::from_secs(600));
        let mut b = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..6 {
            b = next_backoff(b, min, max);
            seen.push(b.as_secs());
        }
        assert_eq!(seen, [30, 60, 120, 240, 480, 600]);
    }
}
