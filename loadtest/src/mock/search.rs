//! The Azure AI Search surface of the mock: document search in both URL forms, literals in any
//! case and one trailing slash tolerated.

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::{MockBody, MockRequest, json};

/// The index a search path names: `/indexes/{index}/docs/search` or
/// `/indexes('{index}')/docs/search.post.search`.
fn index_of(path: &str) -> Option<&str> {
    let path = path.strip_suffix('/').unwrap_or(path);
    // ASCII lower-casing keeps byte offsets, so positions found in `lower` apply to `path`.
    let lower = path.to_ascii_lowercase();
    let (start, end) = if lower.starts_with("/indexes('") {
        let end = lower.find("')/docs/search.post.search")?;
        (end + "')/docs/search.post.search".len() == lower.len()).then_some(())?;
        ("/indexes('".len(), end)
    } else {
        let end = lower.strip_suffix("/docs/search")?.len();
        ("/indexes/".len(), end)
    };
    let index = path.get(start..end)?;
    (!index.is_empty() && !index.contains('/')).then_some(index)
}

pub fn answer(request: &MockRequest) -> Response<MockBody> {
    let path = request.path;
    let index = index_of(path);
    let Some(index) = index.filter(|i| !i.is_empty()) else {
        return json(
            StatusCode::NOT_FOUND,
            &json!({"error": {"code": "NotFound", "message": format!("mock has no {path}")}}),
        );
    };
    let request: Value = serde_json::from_slice(request.body).unwrap_or(Value::Null);
    json(
        StatusCode::OK,
        &json!({
            "@odata.context": format!("https://mock.search.windows.net/indexes('{index}')/$metadata#docs(*)"),
            "value": [{"@search.score": 1.0, "id": "1", "index": index, "search": request.get("search").cloned().unwrap_or(Value::Null)}],
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::index_of;

    #[test]
    fn both_url_forms_in_any_case() {
        assert_eq!(index_of("/indexes/products/docs/search"), Some("products"));
        assert_eq!(index_of("/Indexes/Products/Docs/Search/"), Some("Products"));
        assert_eq!(
            index_of("/indexes('products')/docs/search.post.search"),
            Some("products")
        );
        assert_eq!(index_of("/indexes/a/b/docs/search"), None);
        assert_eq!(index_of("/indexes//docs/search"), None);
        assert_eq!(index_of("/indexes/products/docs"), None);
    }
}
