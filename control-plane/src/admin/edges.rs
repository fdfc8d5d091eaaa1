//! `/edges`: the catalog's current version, and the edges this replica streams to with the version
//! each holds and its last NACK, so an operator sees at a glance who is behind.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AdminState;
use super::error::ApiError;
use crate::catalog::service::CatalogError;

pub async fn list(State(s): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let version = s
        .catalog
        .store()
        .current_version()
        .await
        .map_err(CatalogError::from)?;
    Ok(Json(
        json!({"catalog_version": version, "edges": s.edges.list()}),
    ))
}
