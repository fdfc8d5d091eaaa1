//! `/eventinfo` (what the caller's event offers) and `/event/{id}` (public registration
//! information), answered from the snapshot without any upstream call.

use chrono::{TimeZone, Utc};
use http::{Response, StatusCode};
use serde_json::json;

use super::client_auth::Caller;
use super::errors::{ProxyError, json_response};
use crate::body::EdgeBody;
use crate::snapshot::CatalogSnapshot;
use crate::state::EdgeState;
use aiproxy_proto::v1 as pb;

fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `POST /eventinfo`: the reference proxy's shape, with the capabilities (model type → names),
/// the caller's usage today and what is left of each cap. Usage comes from the control plane
/// (the one call this route makes); records reach it within about a second of each call.
pub async fn for_caller(
    state: &EdgeState,
    snapshot: &CatalogSnapshot,
    caller: &Caller,
) -> Response<EdgeBody> {
    let event = &caller.event;
    let now = Utc::now();
    let usage = state
        .control
        .usage(pb::UsageQuery {
            event_id: event.id.clone(),
            user_id: caller.user_id.clone(),
            day: now.format("%Y-%m-%d").to_string(),
        })
        .await;
    let left = |cap: u64, used: u64| (cap > 0).then(|| cap.saturating_sub(used));
    let (usage, remaining) = match usage {
        Ok(u) => (
            json!({
                "day": now.format("%Y-%m-%d").to_string(),
                "requests": u.requests,
                "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens,
                "total_tokens": u.total_tokens,
                "event_total_tokens": u.event_total_tokens,
            }),
            json!({
                "daily_requests": left(u64::from(event.daily_request_cap), u.requests),
                "daily_tokens": left(event.daily_token_cap, u.total_tokens),
                "event_tokens": left(event.token_budget, u.event_total_tokens),
            }),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "usage for /eventinfo unavailable");
            (serde_json::Value::Null, serde_json::Value::Null)
        }
    };
    json_response(
        StatusCode::OK,
        &json!({
            "is_authorized": true,
            "event_id": event.id,
            "event_code": event.name,
            "user_id": caller.user_id,
            "max_token_cap": event.max_token_cap,
            "daily_request_cap": event.daily_request_cap,
            "daily_token_cap": event.daily_token_cap,
            "token_budget": event.token_budget,
            "usage_today": usage,
            "remaining": remaining,
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
