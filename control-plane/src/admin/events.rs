//! `/events`: windows (RFC 3339, or local date-times in the event's IANA zone), caps (tokens per
//! request, requests and tokens per attendee per day, the event's token budget), organiser, the
//! resources the event exposes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AdminState;
use super::body::RequestBody;
use super::error::ApiError;
use super::fields::Fields;
use crate::catalog::model::Event;
use crate::catalog::service::{CatalogError, EventSpec};
use crate::catalog::window::{format_in_zone, parse_time_zone};

const ACCEPTED: &[&str] = &[
    "name",
    "starts_at",
    "ends_at",
    "time_zone",
    "max_token_cap",
    "daily_request_cap",
    "daily_token_cap",
    "token_budget",
    "organizer_name",
    "organizer_email",
    "active",
    "resource_ids",
];
const READ_ONLY: &[&str] = &["id"];

pub fn to_json(e: &Event) -> Value {
    let zone = parse_time_zone(&e.time_zone).unwrap_or(chrono_tz::UTC);
    json!({
        "id": e.id,
        "name": e.name,
        "starts_at": format_in_zone(e.starts_at_ms, zone),
        "ends_at": format_in_zone(e.ends_at_ms, zone),
        "time_zone": e.time_zone,
        "max_token_cap": e.max_token_cap,
        "daily_request_cap": e.daily_request_cap,
        "daily_token_cap": e.daily_token_cap,
        "token_budget": e.token_budget,
        "organizer_name": e.organizer_name,
        "organizer_email": e.organizer_email,
        "active": e.active,
        "resource_ids": e.resource_ids,
    })
}

fn parse_spec(body: &Bytes) -> Result<EventSpec, ApiError> {
    let f = Fields::parse(body, ACCEPTED, READ_ONLY)?;
    Ok(EventSpec {
        name: f.required_string("name")?,
        starts_at: f.required_string("starts_at")?,
        ends_at: f.required_string("ends_at")?,
        time_zone: f.string("time_zone")?.unwrap_or_else(|| "UTC".to_string()),
        max_token_cap: f.u32("max_token_cap")?.unwrap_or(0),
        daily_request_cap: f.u32("daily_request_cap")?.unwrap_or(0),
        daily_token_cap: f.token_count("daily_token_cap")?.unwrap_or(0),
        token_budget: f.token_count("token_budget")?.unwrap_or(0),
        organizer_name: f.string("organizer_name")?.unwrap_or_default(),
        organizer_email: f.string("organizer_email")?.unwrap_or_default(),
        active: f.bool("active")?.unwrap_or(true),
        resource_ids: f.string_list("resource_ids")?.unwrap_or_default(),
    })
}

pub async fn list(State(s): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let all = s
        .catalog
        .store()
        .list_events()
        .await
        .map_err(CatalogError::from)?;
    Ok(Json(Value::Array(all.iter().map(to_json).collect())))
}

pub async fn create(
    State(s): State<AdminState>,
    RequestBody(body): RequestBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let created = s.catalog.create_event(parse_spec(&body)?).await?;
    Ok((StatusCode::CREATED, Json(to_json(&created))))
}

pub async fn get(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(to_json(&s.catalog.get_event(&id).await?)))
}

pub async fn update(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    RequestBody(body): RequestBody,
) -> Result<Json<Value>, ApiError> {
    let updated = s.catalog.update_event(&id, parse_spec(&body)?).await?;
    Ok(Json(to_json(&updated)))
}

pub async fn delete(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.catalog.delete_event(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
