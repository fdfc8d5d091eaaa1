//! The admin API while Postgres is down: writes answer a clear 503 and no driver text reaches the
//! client. Postgres (`AIPROXY_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) is reached through a loopback relay that the test
//! stops, so the shared server itself keeps running.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aiproxy_control_plane::admin::{self, AdminState};
use aiproxy_control_plane::catalog::service::Catalog;
use aiproxy_control_plane::catalog::store::open;
use aiproxy_control_plane::identity::{CredentialMode, TokenProvider};
use aiproxy_control_plane::secrets::{KeyCipher, Secret};
use aiproxy_control_plane::sync::ChangeFeed;
use aiproxy_control_plane::sync::edges::EdgeRegistry;
use aiproxy_control_plane::tokens::{BrokerSettings, MemoryTokenCache, TokenBroker};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::net::TcpListener;
use tower::ServiceExt;

const TOKEN: &str = "admin-outage-token";

/// A relay from a loopback port to Postgres that can be cut: the listener closes and every
/// relayed connection drops, as when the server stops.
struct Relay {
    port: u16,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let tasks = tasks.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let target = target.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    tasks.lock().unwrap().push(task);
                }
            }
        });
        Self {
            port,
            tasks,
            accept,
        }
    }

    fn cut(&self) {
        self.accept.abort();
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_writes_answer_a_clear_503_while_postgres_is_down() {
    let admin_url = std::env::var("AIPROXY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let db = format!("aiproxy_outage_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| {
            panic!("Postgres at {admin_url} is required (scripts/test.sh starts it): {e}")
        });
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let (scheme_user, host) = base.rsplit_once('@').unwrap();
    let relay = Relay::start(host.to_string()).await;
    let store = open(&format!("{scheme_user}@127.0.0.1:{}/{db}", relay.port), 10)
        .await
        .expect("open postgres store through the relay");
    let router = admin::router(AdminState {
        catalog: Arc::new(Catalog::new(
            store,
            Arc::new(KeyCipher::from_raw([4; 32])),
            false,
            ChangeFeed::new(),
        )),
        edges: EdgeRegistry::default(),
        tokens: TokenBroker::new(
            Arc::new(TokenProvider::new(CredentialMode::None, None)),
            Arc::new(MemoryTokenCache::default()),
            BrokerSettings::default(),
        ),
        admin_token: Secret::new(TOKEN),
    });
    let post = |router: axum::Router| async move {
        let body = json!({"friendly_name": "f", "deployment_name": "d", "model_type": "foundry-model",
                          "endpoint_url": "https://x.openai.azure.com", "key": "sk-k"});
        let request = Request::post("/admin/api/v1/resources")
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            headers,
            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
        )
    };
    let (status, _, created) = post(router.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");

    relay.cut();
    let started = Instant::now();
    let (status, headers, body) = post(router.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        body["error"]["message"],
        "The catalog database is unavailable; retry shortly."
    );
    assert_eq!(headers["retry-after"], "5");
    let text = body.to_string().to_lowercase();
    for driver_word in [
        "sqlx",
        "pool",
        "connection",
        "refused",
        "postgres",
        "127.0.0.1",
        "timed out",
    ] {
        assert!(
            !text.contains(driver_word),
            "driver text reached the client: {body}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    drop(router);
    let drop_db = format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop_db))
        .execute(&mut conn)
        .await
        .unwrap();
}
