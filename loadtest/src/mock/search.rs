//! The Azure AI Search surface of the mock: document search in both URL forms.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::{MockBody, json};

pub fn answer(parts: &http::request::Parts, body: &Bytes) -> Response<MockBody> {
    let path = parts.uri.path();
    let index = if let Some(rest) = path.strip_prefix("/indexes('") {
        rest.split_once("')/docs/search.post.search")
            .map(|(i, _)| i)
    } else {
        path.strip_prefix("/indexes/")
            .and_then(|r| r.strip_suffix("/docs/search"))
    };
    let Some(index) = index.filter(|i| !i.is_empty()) else {
        return json(
            StatusCode::NOT_FOUND,
            &json!({"error": {"code": "NotFound", "message": format!("mock has no {path}")}}),
        );
    };
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    json(
        StatusCode::OK,
        &json!({
            "@odata.context": format!("https://mock.search.windows.net/indexes('{index}')/$metadata#docs(*)"),
            "value": [{"@search.score": 1.0, "id": "1", "index": index, "search": request.get("search").cloned().unwrap_or(Value::Null)}],
        }),
    )
}
