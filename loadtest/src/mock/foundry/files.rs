//! Files (multipart upload, metadata, content, lists filtered by `purpose`) and vector stores
//! (created with `file_ids`, files added one by one or in batches). Adding a file to a vector store
//! needs only that the file exists, as upstream: the proxy is what keeps attendees' files apart.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::{Project, deleted, fields_of, list, merge, method_not_allowed};
use crate::mock::path::{Route, query_param};
use crate::mock::{MockBody, MockRequest, error, full, json, not_found};

pub fn files(project: &mut Project, request: &MockRequest, route: &Route) -> Response<MockBody> {
    let id = route.seg(0);
    let missing = || not_found(&format!("No file found with id '{id}'."));
    match (request.method, route.shape().as_slice()) {
        (&Method::POST, []) => json(StatusCode::OK, &upload(project, request)),
        (&Method::GET, []) => {
            let purpose = query_param(request.query, "purpose");
            list(&project.store, "files", request.query, |f| {
                purpose.is_none_or(|p| f["purpose"] == p)
            })
        }
        (&Method::GET, [_]) => match project.store.get("files", id) {
            Some(file) => json(StatusCode::OK, file),
            None => missing(),
        },
        (&Method::DELETE, [_]) => match project.store.remove("files", id) {
            Some(_) => {
                project.contents.remove(id);
                json(
                    StatusCode::OK,
                    &json!({"id": id, "object": "file", "deleted": true}),
                )
            }
            None => missing(),
        },
        (&Method::GET, [_, "content"]) => match project.contents.get(id) {
            Some(content) => {
                let mut response = Response::new(full(content.clone()));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    "application/octet-stream".parse().unwrap(),
                );
                response
            }
            None => missing(),
        },
        (_, [] | [_] | [_, "content"]) => method_not_allowed(),
        _ => not_found(&format!("Resource not found: {}", request.path)),
    }
}

/// Stores an uploaded file. `bytes` is the size of the upload as received (the multipart body).
fn upload(project: &mut Project, request: &MockRequest) -> Value {
    let form = request
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(boundary)
        .map(|b| multipart_parts(request.body, &b))
        .unwrap_or_default();
    let field = |name: &str| form.iter().find(|p| p.name == name);
    let file = field("file");
    let purpose = field("purpose")
        .map(|p| String::from_utf8_lossy(&p.content).into_owned())
        .unwrap_or_else(|| "assistants".into());
    let mut fields = Map::new();
    fields.insert("bytes".into(), json!(request.body.len()));
    fields.insert(
        "filename".into(),
        json!(
            file.and_then(|f| f.filename.clone())
                .unwrap_or_else(|| "upload".into())
        ),
    );
    fields.insert("purpose".into(), json!(purpose));
    fields.insert("status".into(), json!("processed"));
    let object = project.store.create("files", "file-", "file", fields);
    let content = file.map_or_else(|| request.body.clone(), |f| f.content.clone());
    project.contents.insert(
        object["id"].as_str().unwrap_or_default().to_string(),
        content,
    );
    object
}

pub fn vector_stores(
    project: &mut Project,
    request: &MockRequest,
    route: &Route,
) -> Response<MockBody> {
    let body = match request.json() {
        Ok(body) => body,
        Err(response) => return *response,
    };
    let store_id = route.seg(0);
    let shape = route.shape();
    if !shape.is_empty() && !project.store.contains("vector_stores", store_id) {
        return not_found(&format!("No vector store found with id '{store_id}'."));
    }
    if request.method == Method::POST
        && let Err(response) = project.check_references(&body)
    {
        return *response;
    }
    let files = format!("vector_stores/{store_id}/files");
    let batches = format!("vector_stores/{store_id}/file_batches");
    match (request.method, shape.as_slice()) {
        (&Method::POST, []) => {
            let mut fields = Map::new();
            fields.insert("name".into(), body["name"].clone());
            fields.insert("status".into(), json!("completed"));
            fields.insert(
                "metadata".into(),
                body.get("metadata").cloned().unwrap_or(json!({})),
            );
            fields.insert("usage_bytes".into(), json!(0));
            let created = project
                .store
                .create("vector_stores", "vs_", "vector_store", fields);
            let id = created["id"].as_str().unwrap_or_default().to_string();
            for file in string_array(&body["file_ids"]) {
                add_file(project, &id, &file);
            }
            json(StatusCode::OK, &refresh_counts(project, &id))
        }
        (&Method::GET, []) => list(&project.store, "vector_stores", request.query, |_| true),
        (&Method::GET, [_]) => json(StatusCode::OK, &refresh_counts(project, store_id)),
        (&Method::POST, [_]) => {
            let object = project
                .store
                .get_mut("vector_stores", store_id)
                .expect("checked above");
            merge(object, fields_of(&body));
            json(StatusCode::OK, object)
        }
        (&Method::DELETE, [_]) => {
            project.store.remove("vector_stores", store_id);
            deleted(store_id, "vector_store")
        }
        (&Method::GET, [_, "files"]) => list(&project.store, &files, request.query, |_| true),
        (&Method::POST, [_, "files"]) => match body["file_id"].as_str() {
            Some(file) => json(StatusCode::OK, &add_file(project, store_id, file)),
            None => error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "'file_id' is required.",
            ),
        },
        (&Method::GET, [_, "files", _]) => match project.store.get(&files, route.seg(2)) {
            Some(file) => json(StatusCode::OK, file),
            None => not_found(&format!("No file found with id '{}'.", route.seg(2))),
        },
        (&Method::DELETE, [_, "files", _]) => match project.store.remove(&files, route.seg(2)) {
            Some(_) => {
                refresh_counts(project, store_id);
                deleted(route.seg(2), "vector_store.file")
            }
            None => not_found(&format!("No file found with id '{}'.", route.seg(2))),
        },
        (&Method::POST, [_, "file_batches"]) => {
            let file_ids = string_array(&body["file_ids"]);
            let mut fields = Map::new();
            fields.insert("vector_store_id".into(), json!(store_id));
            fields.insert("status".into(), json!("completed"));
            fields.insert(
                "file_counts".into(),
                json!({"in_progress": 0, "completed": file_ids.len(), "failed": 0, "cancelled": 0, "total": file_ids.len()}),
            );
            let batch = project
                .store
                .create(&batches, "vsfb_", "vector_store.files_batch", fields);
            let batch_id = batch["id"].as_str().unwrap_or_default().to_string();
            for file in &file_ids {
                let added = add_file(project, store_id, file);
                let mut fields = added.as_object().cloned().unwrap_or_default();
                fields.remove("id");
                project.store.insert(
                    &format!("{batches}/{batch_id}/files"),
                    file,
                    "vector_store.file",
                    fields,
                );
            }
            json(StatusCode::OK, &batch)
        }
        (&Method::GET, [_, "file_batches", _]) => match project.store.get(&batches, route.seg(2)) {
            Some(batch) => json(StatusCode::OK, batch),
            None => not_found(&format!("No file batch found with id '{}'.", route.seg(2))),
        },
        (&Method::POST, [_, "file_batches", _, "cancel"]) => {
            match project.store.get_mut(&batches, route.seg(2)) {
                Some(batch) => {
                    batch["status"] = json!("cancelled");
                    json(StatusCode::OK, batch)
                }
                None => not_found(&format!("No file batch found with id '{}'.", route.seg(2))),
            }
        }
        (&Method::GET, [_, "file_batches", _, "files"]) => list(
            &project.store,
            &format!("{batches}/{}/files", route.seg(2)),
            request.query,
            |_| true,
        ),
        (_, [] | [_] | [_, "files" | "file_batches"] | [_, "files" | "file_batches", _]) => {
            method_not_allowed()
        }
        _ => not_found(&format!("Resource not found: {}", request.path)),
    }
}

fn string_array(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// Adds an existing file to a vector store (once); returns the vector store file.
fn add_file(project: &mut Project, store_id: &str, file: &str) -> Value {
    let files = format!("vector_stores/{store_id}/files");
    if let Some(existing) = project.store.get(&files, file) {
        return existing.clone();
    }
    let usage = project.contents.get(file).map_or(0, Bytes::len);
    let mut fields = Map::new();
    fields.insert("vector_store_id".into(), json!(store_id));
    fields.insert("status".into(), json!("completed"));
    fields.insert("usage_bytes".into(), json!(usage));
    fields.insert("last_error".into(), Value::Null);
    let added = project
        .store
        .insert(&files, file, "vector_store.file", fields);
    refresh_counts(project, store_id);
    added
}

/// Recomputes a vector store's `file_counts` and `usage_bytes`; returns the store.
fn refresh_counts(project: &mut Project, store_id: &str) -> Value {
    let files: Vec<u64> = project
        .store
        .all(&format!("vector_stores/{store_id}/files"))
        .map(|f| f["usage_bytes"].as_u64().unwrap_or(0))
        .collect();
    let Some(store) = project.store.get_mut("vector_stores", store_id) else {
        return Value::Null;
    };
    store["file_counts"] = json!({"in_progress": 0, "completed": files.len(), "failed": 0,
                                  "cancelled": 0, "total": files.len()});
    store["usage_bytes"] = json!(files.iter().sum::<u64>());
    store.clone()
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, Default, Clone, PartialEq)]
struct FormPart {
    name: String,
    filename: Option<String>,
    content: Bytes,
}

/// The `boundary` parameter of a `multipart/form-data` content type.
fn boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.eq_ignore_ascii_case("boundary")
            .then(|| v.trim_matches('"').to_string())
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The parts of a multipart body (a malformed body yields what could be read).
fn multipart_parts(body: &Bytes, boundary: &str) -> Vec<FormPart> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let Some(mut start) = find(body, delimiter.as_bytes(), 0) else {
        return parts;
    };
    loop {
        let after = start + delimiter.len();
        if body.get(after..after + 2) == Some(b"--") {
            return parts;
        }
        let Some(headers_end) = find(body, b"\r\n\r\n", after) else {
            return parts;
        };
        let content_start = headers_end + 4;
        let Some(next) = find(body, format!("\r\n{delimiter}").as_bytes(), content_start) else {
            return parts;
        };
        let headers = String::from_utf8_lossy(&body[after..headers_end]);
        let disposition = headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .unwrap_or_default();
        let param = |name: &str| {
            disposition.split(';').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k == name).then(|| v.trim_matches('"').to_string())
            })
        };
        parts.push(FormPart {
            name: param("name").unwrap_or_default(),
            filename: param("filename"),
            content: body.slice(content_start..next),
        });
        start = next + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_uploads_are_read_part_by_part() {
        let body = Bytes::from_static(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n\
              --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes.txt\"\r\n\
              Content-Type: text/plain\r\n\r\nline one\r\nline two\r\n--XyZ--\r\n",
        );
        let content_type = "multipart/form-data; boundary=\"XyZ\"";
        let parts = multipart_parts(&body, &boundary(content_type).unwrap());
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "purpose");
        assert_eq!(&parts[0].content[..], b"assistants");
        assert_eq!(parts[1].filename.as_deref(), Some("notes.txt"));
        assert_eq!(&parts[1].content[..], b"line one\r\nline two");
        assert_eq!(boundary("application/json"), None);
        assert!(multipart_parts(&Bytes::from_static(b"garbage"), "XyZ").is_empty());
    }
}
