//! `/eventinfo` (what the caller's event offers) and `/event/{id}` (public registration
//! information), answered from the snapshot without any upstream call.

use chrono::{TimeZone, Utc};
use http::{Response, StatusCode};
use serde_json::json;

use super::client_auth::Caller;
use super::errors::{ProxyError, json_response};
use crate::body::EdgeBody;
use crate::snapshot::CatalogSnapshot;

fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `POST /eventinfo`: the reference proxy's shape, with the capabilities (model type → names).
pub fn for_caller(snapshot: &CatalogSnapshot, caller: &Caller) -> Response<EdgeBody> {
    let event = &caller.event;
    json_response(
        StatusCode::OK,
        &json!({
            "is_authorized": true,
            "event_id": event.id,
            "event_code": event.name,
            "user_id": caller.user_id,
            "max_token_cap": event.max_token_cap,
            "daily_request_cap": event.daily_request_cap,
            "organizer_name": event.organizer_name,
            "organizer_email": event.organizer_email,
            "starts_at": rfc3339(event.starts_at_ms),
            "ends_at": rfc3339(event.ends_at_ms),
            "time_zone": event.time_zone,
            "capabilities": snapshot.capabilities(&event.id),
        }),
    )
}

/// `GET /event/{id}`: what a registration page shows; inactive or unknown events are not found.
pub fn public(
    snapshot: &CatalogSnapshot,
    event_id: &str,
) -> Result<Response<EdgeBody>, ProxyError> {
    let event = snapshot
        .event(event_id)
        .filter(|e| e.active)
        .ok_or_else(|| ProxyError::not_found(format!("Event '{event_id}' not found")))?;
    let now = Utc::now().timestamp_millis();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "event_id": event.id,
            "event_code": event.name,
            "organizer_name": event.organizer_name,
            "organizer_email": event.organizer_email,
            "starts_at": rfc3339(event.starts_at_ms),
            "ends_at": rfc3339(event.ends_at_ms),
            "time_zone": event.time_zone,
            "is_open": now >= event.starts_at_ms && now < event.ends_at_ms,
        }),
    ))
}
