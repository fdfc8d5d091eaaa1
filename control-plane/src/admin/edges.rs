//! `/edges`: the edges this replica streams to, the version each holds and its last NACK.

use axum::Json;
use axum::extract::State;

use super::AdminState;
use crate::sync::edges::EdgeStatus;

pub async fn list(State(s): State<AdminState>) -> Json<Vec<EdgeStatus>> {
    Json(s.edges.list())
}
