//! The in-process admin API the admin test files share: a router on a fresh embedded store,
//! called with `tower::ServiceExt::oneshot` (no ports).

use std::sync::Arc;

use aiproxy_control_plane::admin::{self, AdminState};
use aiproxy_control_plane::catalog::service::Catalog;
use aiproxy_control_plane::catalog::store::open;
use aiproxy_control_plane::identity::{CredentialMode, TokenProvider};
use aiproxy_control_plane::secrets::{KeyCipher, Secret};
use aiproxy_control_plane::sync::ChangeFeed;
use aiproxy_control_plane::sync::edges::EdgeRegistry;
use aiproxy_control_plane::tokens::{BrokerSettings, MemoryTokenCache, TokenBroker};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub const TOKEN: &str = "admin-test-token";

pub struct Api {
    pub router: Router,
    pub catalog: Arc<Catalog>,
    pub _dir: std::path::PathBuf,
}

/// The admin API's state over `catalog`: no edges, no credential, the test token.
pub fn state(catalog: Arc<Catalog>) -> AdminState {
    AdminState {
        catalog,
        edges: EdgeRegistry::default(),
        tokens: TokenBroker::new(
            Arc::new(TokenProvider::new(CredentialMode::None, None)),
            Arc::new(MemoryTokenCache::default()),
            BrokerSettings::default(),
        ),
        admin_token: Secret::new(TOKEN),
    }
}

pub async fn api(allow_insecure: bool) -> Api {
    new_api(allow_insecure).await
}

pub async fn new_api(allow_insecure: bool) -> Api {
    let dir = std::env::temp_dir().join(format!("aiproxy-admin-{}", uuid::Uuid::new_v4().simple()));
    let store = open(&format!("sqlite://{}", dir.join("c.db").display()), 4)
        .await
        .unwrap();
    let cipher = Arc::new(KeyCipher::from_raw([9; 32]));
    let catalog = Arc::new(Catalog::new(
        store,
        cipher,
        allow_insecure,
        ChangeFeed::new(),
    ));
    let router = admin::router(state(catalog.clone()));
    Api {
        router,
        catalog,
        _dir: dir,
    }
}

impl Drop for Api {
    /// The test's store goes with it (the files of an open SQLite database can be removed).
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

impl Api {
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("/admin/api/v1{path}"));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let response = self.router.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, body, Some(TOKEN)).await
    }

    /// A GET with the admin token, answered as text with its headers (CSV downloads).
    pub async fn get_text(&self, path: &str) -> (StatusCode, HeaderMap, String) {
        let request = Request::builder()
            .uri(format!("/admin/api/v1{path}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
    }
}

pub fn resource() -> Value {
    json!({
        "friendly_name": "GPT-4o Sweden",
        "deployment_name": "gpt-4o",
        "model_type": "Foundry_Model",
        "endpoint_url": "https://aoai-sweden.openai.azure.com/",
        "key": "sk-upstream-secret",
        "region": "swedencentral",
    })
}

pub fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}
