//! Who is calling: the attendee key from `api-key` or `Authorization: <scheme> <key>`, its
//! attendee and event, and whether the event is active and open right now. Each refusal says why.

use std::sync::Arc;

use aiproxy_proto::v1 as pb;
use chrono::{TimeZone, Utc};
use http::HeaderMap;

use super::errors::ProxyError;
use crate::snapshot::{CatalogSnapshot, KeyMemo};
use crate::upstream::headers::API_KEY;

pub struct Caller {
    pub event: Arc<pb::EventInfo>,
    pub user_id: String,
}

pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(key) = headers.get(API_KEY).and_then(|v| v.to_str().ok()) {
        let key = key.trim();
        if !key.is_empty() {
            return Some(key);
        }
    }
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_whitespace().last())
}

/// `keys`: the client connection's memo of its last key's hash, if there is one.
pub fn authenticate(
    snapshot: &CatalogSnapshot,
    headers: &HeaderMap,
    now_ms: i64,
    keys: Option<&KeyMemo>,
) -> Result<Caller, ProxyError> {
    let key = presented_key(headers).ok_or_else(|| {
        ProxyError::unauthorized(
            "Missing API key: send your event key in the 'api-key' header or as 'Authorization: Bearer <key>'.",
        )
    })?;
    let unknown = || {
        ProxyError::unauthorized("Unknown API key: check the key your event organizer gave you.")
    };
    let attendee = snapshot.attendee_for_key(key, keys).ok_or_else(unknown)?;
    let event = snapshot.event(&attendee.event_id).ok_or_else(unknown)?;
    if !attendee.active {
        return Err(ProxyError::unauthorized(
            "This API key has been deactivated by the event organizer.",
        ));
    }
    if !event.active {
        return Err(ProxyError::unauthorized(format!(
            "The event '{}' is not active.",
            event.name
        )));
    }
    if now_ms < event.starts_at_ms {
        return Err(ProxyError::unauthorized(format!(
            "The event '{}' has not started yet: it starts at {}.",
            event.name,
            local_time(event.starts_at_ms, &event.time_zone)
        )));
    }
    if now_ms >= event.ends_at_ms {
        return Err(ProxyError::unauthorized(format!(
            "The event '{}' ended at {}.",
            event.name,
            local_time(event.ends_at_ms, &event.time_zone)
        )));
    }
    Ok(Caller {
        event: event.clone(),
        user_id: attendee.user_id.to_string(),
    })
}

/// `2026-03-29 09:00 (Europe/Paris, 2026-03-29T07:00:00Z)`.
fn local_time(ms: i64, zone: &str) -> String {
    let utc = Utc.timestamp_millis_opt(ms).single().unwrap_or_default();
    match zone.parse::<chrono_tz::Tz>() {
        Ok(tz) if zone != "UTC" => format!(
            "{} ({zone}, {})",
            utc.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
            utc.format("%Y-%m-%dT%H:%M:%SZ")
        ),
        _ => utc.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_comes_from_api_key_or_the_last_authorization_token() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(presented_key(&h), Some("abc"));
        h.insert("api-key", "xyz".parse().unwrap());
        assert_eq!(presented_key(&h), Some("xyz"));
    }
}
