//! `/resources`: upstream endpoints. Responses never contain the key, only `has_key`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AdminState;
use super::body::RequestBody;
use super::error::ApiError;
use super::fields::Fields;
use crate::catalog::model::{ModelType, Resource};
use crate::catalog::service::{KeyChange, ResourceSpec};
use crate::identity::{Scope, TokenKey};
use crate::secrets::Secret;
use crate::tokens::{TokenBroker, TokenStatus};

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
    "use_max_completion_tokens",
];
const READ_ONLY: &[&str] = &["id", "has_key"];

/// A resource as the API shows it: never the key; for managed-identity resources, the token's
/// identity, scope, expiry and last error (never the token).
pub fn to_json(r: &Resource, tokens: &TokenBroker) -> Value {
    let mut out = json!({
        "id": r.id,
        "friendly_name": r.friendly_name,
        "deployment_name": r.deployment_name,
        "model_type": r.model_type.as_str(),
        "endpoint_url": r.endpoint_url,
        "region": r.region,
        "use_managed_identity": r.use_managed_identity,
        "identity_client_id": r.identity_client_id,
        "active": r.active,
        "use_max_completion_tokens": r.use_max_completion_tokens,
        "has_key": r.encrypted_key.is_some(),
    });
    if r.use_managed_identity {
        out["managed_identity"] = managed_identity_status(r, tokens);
    }
    out
}

fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn managed_identity_status(r: &Resource, tokens: &TokenBroker) -> Value {
    let Some(scope) = Scope::for_model_type(r.model_type) else {
        return json!({"scope": null, "last_error": "no Entra ID scope is defined for this resource type"});
    };
    let key = TokenKey {
        identity_client_id: r.identity_client_id.clone(),
        scope,
    };
    let status = tokens.status(&key);
    let get =
        |f: fn(&TokenStatus) -> Option<Value>| status.as_ref().and_then(f).unwrap_or(Value::Null);
    json!({
        "identity": key.identity_label(),
        "scope": scope.as_str(),
        "token_expires_at": get(|s| s.expires_on_ms.and_then(rfc3339).map(Value::from)),
        "credential": get(|s| s.source.clone().map(Value::from)),
        "last_error": get(|s| s.last_error.clone().map(Value::from)),
        "next_attempt_at": get(|s| s.next_attempt_ms.and_then(rfc3339).map(Value::from)),
        "active": r.active,
    })
}

/// On create a missing key means none; on update it means "keep the stored one" (`null` clears it).
/// The catalog decides whether that is allowed (another endpoint host, managed identity).
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
        Some(k) => KeyChange::Set(Secret::new(k)),
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
        use_max_completion_tokens: f.bool("use_max_completion_tokens")?.unwrap_or(false),
    })
}

pub async fn list(State(s): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let all = s
        .catalog
        .store()
        .list_resources()
        .await
        .map_err(crate::catalog::service::CatalogError::from)?;
    Ok(Json(Value::Array(
        all.iter().map(|r| to_json(r, &s.tokens)).collect(),
    )))
}

pub async fn create(
    State(s): State<AdminState>,
    RequestBody(body): RequestBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let created = s.catalog.create_resource(parse_spec(&body, false)?).await?;
    Ok((StatusCode::CREATED, Json(to_json(&created, &s.tokens))))
}

pub async fn get(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(to_json(
        &s.catalog.get_resource(&id).await?,
        &s.tokens,
    )))
}

pub async fn update(
    State(s): State<AdminState>,
    Path(id): Path<String>,
    RequestBody(body): RequestBody,
) -> Result<Json<Value>, ApiError> {
    let updated = s
        .catalog
        .update_resource(&id, parse_spec(&body, true)?)
        .await?;
    Ok(Json(to_json(&updated, &s.tokens)))
}

pub async fn delete(
    State(s): State<AdminState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.catalog.delete_resource(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
