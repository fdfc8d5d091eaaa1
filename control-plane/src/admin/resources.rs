//! `/resources`: upstream endpoints. Responses never contain the key, only `has_key`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AdminState;
use super::error::ApiError;
use super::fields::Fields;
use crate::catalog::model::{ModelType, Resource};
use crate::catalog::service::{KeyChange, ResourceSpec};

const ACCEPTED: &[&str] = &[
    "friendly_name",
    "deployment_name",
    "model_type",
    "endpoint_url",
    "key",
    "region",
    "use_managed_identity",
    "identity_client_id",
    "active",
];
const READ_ONLY: &[&str] = &["id", "has_key"];

pub fn to_json(r: &Resource) -> Value {
    json!({
        "id": r.id,
        "friendly_name": r.friendly_name,
        "deployment_name": r.deployment_name,
        "model_type": r.model_type.as_str(),
        "endpoint_url": r.endpoint_url,
        "region": r.region,
        "use_managed_identity": r.use_managed_identity,
        "identity_client_id": r.identity_client_id,
        "active": r.active,
        "has_key": r.encrypted_key.is_some(),
    })
}

/// On create a missing key means none; on update it means "keep the stored one" (`null` clears it).
fn parse_spec(body: &Bytes, updating: bool) -> Result<ResourceSpec, ApiError> {
    let f = Fields::parse(body, ACCEPTED, READ_ONLY)?;
    let model_type_raw = f.required_string("model_type")?;
    let model_type = ModelType::parse(&model_type_raw).ok_or_else(|| {
        ApiError::invalid(
            "model_type",
            "must be one of foundry-model, foundry-agent, azure-ai-search, ai-inference, mcp-server \
             (Foundry_Model and Foundry_Agent are accepted too)",
        )
    })?;
    let key = match f.string("key")? {
        Some(k) => KeyChange::Set(k),
        None if updating && !f.is_explicit_null("key") => KeyChange::Keep,
        None => KeyChange::Clear,
    };
    Ok(ResourceSpec {
        friendly_name: f.required_string("friendly_name")?,
        deployment_name: f.required_string("deployment_name")?,
        model_type,
        endpoint_url: f.required_string("endpoint_url")?,
        key,
        region: f.string("region")?.unwrap_or_default(),
        use_managed_identity: f.bool("use_managed_identity")?.unwrap_or(false),
        identity_client_id: f.string("identity_client_id")?,
        active: f.bool("active")?.unwrap_or(true),
    })
}

pub async fn list(State(s): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let all = s
        .catalog
        .store()
        .list_resources()
        .await
        .map_err(crate::catalog::service::CatalogError::from)?;
    Ok(Json(Value::Array(all.iter().map(to_json).collect())))
}

pub async fn create(
    State(s): State<AdminState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let created = s.catalog.create_resource(parse_spec(&body, false)?).await?;
    Ok((StatusCode::CREATED, Json(to_json(&created))))
}

pub async fn get(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(to_json(&s.catalog.get_resource(&id).await?)))
}

pub async fn update(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let updated = s
        .catalog
        .update_resource(&id, parse_spec(&body, true)?)
        .await?;
    Ok(Json(to_json(&updated)))
}

pub async fn delete(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.catalog.delete_resource(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
