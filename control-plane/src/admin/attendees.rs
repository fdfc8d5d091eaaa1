//! `/events/{id}/attendees`: registering an attendee returns their key this one time only.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use super::AdminState;
use super::body::RequestBody;
use super::error::ApiError;
use super::fields::Fields;
use crate::catalog::model::Attendee;

fn to_json(a: &Attendee) -> Value {
    let created = Utc
        .timestamp_millis_opt(a.created_at_ms)
        .single()
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    json!({
        "event_id": a.event_id,
        "user_id": a.user_id,
        "active": a.active,
        "created_at": created,
    })
}

pub async fn list(
    State(s): State<AdminState>,
    Path(event_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let all = s
        .catalog
        .store()
        .list_attendees(&event_id)
        .await
        .map_err(crate::catalog::service::CatalogError::from)?;
    Ok(Json(Value::Array(all.iter().map(to_json).collect())))
}

pub async fn create(
    State(s): State<AdminState>,
    Path(event_id): Path<String>,
    RequestBody(body): RequestBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let f = Fields::parse(&body, &["user_id"], &[])?;
    let user_id = f.required_string("user_id")?;
    let issued = s.catalog.add_attendee(&event_id, &user_id).await?;
    let mut out = to_json(&issued.attendee);
    out["api_key"] = json!(issued.api_key.expose());
    Ok((StatusCode::CREATED, Json(out)))
}

pub async fn set_active(
    State(s): State<AdminState>,
    Path((event_id, user_id)): Path<(String, String)>,
    RequestBody(body): RequestBody,
) -> Result<Json<Value>, ApiError> {
    let f = Fields::parse(&body, &["active"], &["event_id", "user_id", "created_at"])?;
    let active = f
        .bool("active")?
        .ok_or_else(|| ApiError::invalid("active", "required, true or false"))?;
    let attendee = s
        .catalog
        .set_attendee_active(&event_id, &user_id, active)
        .await?;
    Ok(Json(to_json(&attendee)))
}
