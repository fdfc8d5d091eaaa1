//! The admin HTTP API, called in-process (`tower::ServiceExt::oneshot`) on an embedded store:
//! auth, validation messages that name the field, write-only keys, 404/409, the OpenAPI document.
//! Usage reports: `admin_usage.rs`.

mod support;

use aiproxy_control_plane::admin::{self, OPENAPI_JSON};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use support::admin::*;
use tower::ServiceExt;

#[tokio::test]
async fn every_route_needs_the_admin_token() {
    let api = api(false).await;
    let (status, body) = api.call("GET", "/resources", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message(&body).contains("Authorization: Bearer"));
    let (status, _) = api.call("GET", "/events", None, Some("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api.call("GET", "/openapi.json", None, Some("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn resources_never_show_their_key() {
    let api = api(false).await;
    let (status, created) = api.send("POST", "/resources", Some(resource())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["model_type"], "foundry-model");
    assert_eq!(
        created["endpoint_url"],
        "https://aoai-sweden.openai.azure.com"
    );
    assert_eq!(created["has_key"], true);
    assert_eq!(
        created["use_managed_identity"], false,
        "managed identity is off by default"
    );
    let id = created["id"].as_str().unwrap();
    let (_, listed) = api.send("GET", "/resources", None).await;
    let (_, got) = api.send("GET", &format!("/resources/{id}"), None).await;
    for v in [&created, &listed, &got] {
        assert!(
            !v.to_string().contains("sk-upstream-secret"),
            "key leaked: {v}"
        );
    }
    // The key is stored encrypted.
    let stored = api.catalog.store().get_resource(id).await.unwrap().unwrap();
    let sealed = stored.encrypted_key.unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains("sk-upstream"));
    assert_eq!(
        api.catalog.cipher().decrypt(&sealed).unwrap(),
        "sk-upstream-secret"
    );

    // PUT without a key keeps it; the GET form can be sent back as is.
    let mut edited = got.clone();
    edited["friendly_name"] = json!("renamed");
    let (status, updated) = api
        .send("PUT", &format!("/resources/{id}"), Some(edited))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["has_key"], true);
    assert_eq!(updated["friendly_name"], "renamed");
}

#[tokio::test]
async fn moving_the_endpoint_to_another_host_needs_the_new_hosts_key() {
    let api = api(false).await;
    let (_, created) = api.send("POST", "/resources", Some(resource())).await;
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/resources/{id}");
    let stored_key = |api: &Api| {
        let id = id.clone();
        let catalog = api.catalog.clone();
        async move {
            let r = catalog.store().get_resource(&id).await.unwrap().unwrap();
            (
                r.endpoint_url,
                r.encrypted_key
                    .map(|k| catalog.cipher().decrypt(&k).unwrap()),
            )
        }
    };

    // Same host (any case), another path: the key stays.
    let mut same_host = created.clone();
    same_host["endpoint_url"] = json!("https://AOAI-SWEDEN.openai.azure.com/openai");
    let (status, updated) = api.send("PUT", &path, Some(same_host)).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["has_key"], true);

    // Another host without a key: refused, nothing changes, the key never follows.
    let mut moved = created.clone();
    moved["endpoint_url"] = json!("https://attacker.example.com");
    let (status, err) = api.send("PUT", &path, Some(moved.clone())).await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("key")),
        "{err}"
    );
    assert!(
        message(&err).contains("https://attacker.example.com"),
        "{err}"
    );
    let (endpoint, key) = stored_key(&api).await;
    assert_eq!(endpoint, "https://aoai-sweden.openai.azure.com/openai");
    assert_eq!(key.as_deref(), Some("sk-upstream-secret"));

    // Another host with its own key: accepted, and that key is the one stored.
    moved["key"] = json!("sk-new-host");
    let (status, updated) = api.send("PUT", &path, Some(moved)).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["has_key"], true);
    assert_eq!(
        stored_key(&api).await,
        (
            "https://attacker.example.com".to_string(),
            Some("sk-new-host".to_string())
        )
    );
}

#[tokio::test]
async fn managed_identity_resources_never_store_a_key() {
    let api = api(false).await;
    let mut with_key = resource();
    with_key["use_managed_identity"] = json!(true);
    let (status, err) = api.send("POST", "/resources", Some(with_key)).await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("key")),
        "{err}"
    );
    assert!(message(&err).contains("use_managed_identity"), "{err}");

    // A key resource switched to managed identity drops its key.
    let (_, created) = api.send("POST", "/resources", Some(resource())).await;
    let id = created["id"].as_str().unwrap();
    let mut switched = created.clone();
    switched["use_managed_identity"] = json!(true);
    let (status, updated) = api
        .send("PUT", &format!("/resources/{id}"), Some(switched.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["has_key"], false);
    let stored = api.catalog.store().get_resource(id).await.unwrap().unwrap();
    assert!(stored.encrypted_key.is_none());
    switched["key"] = json!("sk-again");
    let (status, err) = api
        .send("PUT", &format!("/resources/{id}"), Some(switched))
        .await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("key"))
    );
}

#[tokio::test]
async fn key_is_required_unless_managed_identity() {
    let api = api(false).await;
    let mut body = resource();
    body.as_object_mut().unwrap().remove("key");
    let (status, err) = api.send("POST", "/resources", Some(body.clone())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["field"], "key");
    assert!(message(&err).contains("use_managed_identity"), "{err}");

    body["use_managed_identity"] = json!(true);
    body["identity_client_id"] = json!("not-a-guid");
    let (status, err) = api.send("POST", "/resources", Some(body.clone())).await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("identity_client_id"))
    );
    body["identity_client_id"] = json!("11111111-2222-3333-4444-555555555555");
    let (status, created) = api.send("POST", "/resources", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["has_key"], false);
    assert_eq!(created["use_managed_identity"], true);
    let status = &created["managed_identity"];
    assert_eq!(
        status["scope"],
        "https://cognitiveservices.azure.com/.default"
    );
    assert_eq!(
        status["identity"],
        "user-assigned 11111111-2222-3333-4444-555555555555"
    );
    assert!(status["token_expires_at"].is_null(), "nothing minted yet");

    let mut mcp = resource();
    mcp["model_type"] = json!("mcp-server");
    mcp["use_managed_identity"] = json!(true);
    let (status, err) = api.send("POST", "/resources", Some(mcp)).await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("use_managed_identity"))
    );

    let mut keyed = resource();
    keyed["model_type"] = json!("Foundry_Agent");
    keyed["endpoint_url"] = json!("https://acct.services.ai.azure.com/api/projects/p");
    let (_, created) = api.send("POST", "/resources", Some(keyed)).await;
    assert!(
        created.get("managed_identity").is_none(),
        "key resources have no managed-identity status"
    );
}

#[tokio::test]
async fn invalid_input_names_the_field_and_the_expected_form() {
    let api = api(false).await;
    let cases = [
        (
            json!({"deployment_name": "d", "model_type": "foundry-model", "endpoint_url": "https://x", "key": "k"}),
            "friendly_name",
            "required",
        ),
        (
            json!({"friendly_name": "f", "deployment_name": "d", "model_type": "gpt", "endpoint_url": "https://x", "key": "k"}),
            "model_type",
            "foundry-model, foundry-agent",
        ),
        (
            json!({"friendly_name": "f", "deployment_name": "d", "model_type": "foundry-model", "endpoint_url": "http://x.example", "key": "k"}),
            "endpoint_url",
            "https://",
        ),
        (
            json!({"friendly_name": "f", "deployment_name": "d", "model_type": "foundry-model", "endpoint_url": "https://x", "key": "k", "active": "yes"}),
            "active",
            "true or false",
        ),
        (
            json!({"friendly_name": 3, "deployment_name": "d", "model_type": "foundry-model", "endpoint_url": "https://x", "key": "k"}),
            "friendly_name",
            "string",
        ),
    ];
    for (body, field, hint) in cases {
        let (status, err) = api.send("POST", "/resources", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert_eq!(err["error"]["field"], field, "{err}");
        assert!(message(&err).starts_with(&format!("{field}: ")), "{err}");
        assert!(message(&err).contains(hint), "{err}");
    }
    let (status, err) = api
        .send("POST", "/resources", Some(json!({"frendly_name": "typo"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&err).contains("unknown field 'frendly_name'"),
        "{err}"
    );

    let (status, err) = api
        .send(
            "POST",
            "/events",
            Some(json!({"name": "E", "starts_at": "tomorrow", "ends_at": "2026-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("starts_at"))
    );
    assert!(message(&err).contains("RFC 3339"));
    let (_, err) = api.send("POST", "/events", Some(json!({"name": "E", "starts_at": "2026-01-02T00:00:00Z", "ends_at": "2026-01-01T00:00:00Z"}))).await;
    assert_eq!(err["error"]["field"], "ends_at");
    let (_, err) = api.send("POST", "/events", Some(json!({"name": "E", "starts_at": "2026-01-01T09:00", "ends_at": "2026-01-01T17:00", "time_zone": "Paris"}))).await;
    assert_eq!(err["error"]["field"], "time_zone");
    let (_, err) = api.send("POST", "/events", Some(json!({"name": "E", "starts_at": "2026-01-01T09:00", "ends_at": "2026-01-01T17:00", "resource_ids": ["ghost"]}))).await;
    assert_eq!(err["error"]["field"], "resource_ids");
    assert!(message(&err).contains("ghost"));
    let (_, err) = api.send("POST", "/events", Some(json!({"name": "E", "starts_at": "2026-01-01T09:00", "ends_at": "2026-01-01T17:00", "max_token_cap": -5}))).await;
    assert_eq!(err["error"]["field"], "max_token_cap");
    let (_, events) = api.send("GET", "/events", None).await;
    assert_eq!(events, json!([]), "nothing was half-written");
    let (status, err) = api.send("POST", "/resources", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&err).contains("not valid JSON"));
}

#[tokio::test]
async fn token_caps_and_the_max_completion_tokens_switch_round_trip() {
    let api = api(false).await;
    let mut body = resource();
    body["use_max_completion_tokens"] = json!(true);
    let (status, r) = api.send("POST", "/resources", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    assert_eq!(r["use_max_completion_tokens"], true);
    let rid = r["id"].as_str().unwrap().to_string();
    let (_, r) = api.send("POST", "/resources", Some(resource())).await;
    assert_eq!(r["use_max_completion_tokens"], false, "off by default");

    let event = json!({"name": "E", "starts_at": "2026-01-01T09:00", "ends_at": "2026-01-01T17:00",
                       "daily_token_cap": 50000, "token_budget": 9007199254740991u64});
    let (status, e) = api.send("POST", "/events", Some(event)).await;
    assert_eq!(status, StatusCode::CREATED, "{e}");
    assert_eq!(
        (e["daily_token_cap"].as_u64(), e["token_budget"].as_u64()),
        (Some(50_000), Some(9_007_199_254_740_991))
    );
    let eid = e["id"].as_str().unwrap().to_string();
    let mut edited = e.clone();
    edited["daily_token_cap"] = json!(0);
    let (_, e) = api
        .send("PUT", &format!("/events/{eid}"), Some(edited))
        .await;
    assert_eq!(e["daily_token_cap"], 0);
    let stored = api.catalog.store().get_event(&eid).await.unwrap().unwrap();
    assert_eq!(
        (stored.daily_token_cap, stored.token_budget),
        (0, 9_007_199_254_740_991)
    );
    let (_, got) = api.send("GET", &format!("/resources/{rid}"), None).await;
    assert_eq!(got["use_max_completion_tokens"], true);

    for (field, value) in [
        ("daily_token_cap", json!(-1)),
        ("daily_token_cap", json!(1.5)),
        ("token_budget", json!("1000")),
        ("token_budget", json!(9007199254740992u64)),
    ] {
        let mut event =
            json!({"name": "E", "starts_at": "2026-01-01T09:00", "ends_at": "2026-01-01T17:00"});
        event[field] = value;
        let (status, err) = api.send("POST", "/events", Some(event)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        assert_eq!(err["error"]["field"], field, "{err}");
        assert!(
            message(&err).contains("whole number from 0 to 9007199254740991"),
            "{err}"
        );
    }
    let mut body = resource();
    body["use_max_completion_tokens"] = json!("yes");
    let (_, err) = api.send("POST", "/resources", Some(body)).await;
    assert_eq!(err["error"]["field"], "use_max_completion_tokens", "{err}");
}

#[tokio::test]
async fn http_endpoints_need_the_insecure_switch() {
    let mut body = resource();
    body["endpoint_url"] = json!("http://127.0.0.1:9100");
    let (status, err) = api(false)
        .await
        .send("POST", "/resources", Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&err).contains("AIPROXY_ALLOW_INSECURE_UPSTREAMS"));
    let (status, _) = api(true).await.send("POST", "/resources", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn events_read_local_times_in_their_zone_and_attendee_keys_show_once() {
    let api = api(false).await;
    let (_, r) = api.send("POST", "/resources", Some(resource())).await;
    let rid = r["id"].as_str().unwrap();
    let (status, e) = api
        .send(
            "POST",
            "/events",
            Some(json!({"name": "Spring hack", "starts_at": "2026-03-28T09:00:00", "ends_at": "2026-03-29T17:00:00",
                        "time_zone": "Europe/Paris", "max_token_cap": 4096, "daily_request_cap": 500,
                        "organizer_name": "Ada", "organizer_email": "ada@example.com", "resource_ids": [rid]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{e}");
    // Clocks go forward on 29 March in Paris: +01:00 before, +02:00 after.
    assert_eq!(e["starts_at"], "2026-03-28T09:00:00+01:00");
    assert_eq!(e["ends_at"], "2026-03-29T17:00:00+02:00");
    let eid = e["id"].as_str().unwrap();

    let (status, err) = api.send("DELETE", &format!("/resources/{rid}"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(message(&err).contains("Spring hack"), "{err}");

    let (status, a) = api
        .send(
            "POST",
            &format!("/events/{eid}/attendees"),
            Some(json!({"user_id": "grace@example.com"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let key = a["api_key"].as_str().unwrap();
    assert!(key.starts_with("aip_") && key.len() > 40);
    let (status, _) = api
        .send(
            "POST",
            &format!("/events/{eid}/attendees"),
            Some(json!({"user_id": "grace@example.com"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, list) = api
        .send("GET", &format!("/events/{eid}/attendees"), None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(
        list[0].get("api_key").is_none() && !list.to_string().contains(key),
        "the key is shown only once"
    );
    let (status, a) = api
        .send(
            "PUT",
            &format!("/events/{eid}/attendees/grace@example.com"),
            Some(json!({"active": false})),
        )
        .await;
    assert_eq!(
        (status, a["active"].clone()),
        (StatusCode::OK, json!(false))
    );

    for path in ["/events/nope", "/resources/nope", "/events/nope/attendees"] {
        let (status, _) = api.send("GET", path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = api
        .send(
            "PUT",
            &format!("/events/{eid}/attendees/ghost"),
            Some(json!({"active": true})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.send("DELETE", &format!("/events/{eid}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.send("DELETE", &format!("/resources/{rid}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn openapi_document_describes_every_route() {
    let api = api(false).await;
    let (status, served) = api.send("GET", "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let doc: Value = serde_json::from_str(OPENAPI_JSON).unwrap();
    assert_eq!(served, doc);
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/resources", vec!["get", "post"]),
        ("/resources/{id}", vec!["get", "put", "delete"]),
        ("/events", vec!["get", "post"]),
        ("/events/{id}", vec!["get", "put", "delete"]),
        ("/events/{id}/attendees", vec!["get", "post"]),
        ("/events/{id}/attendees/{user_id}", vec!["put"]),
        ("/edges", vec!["get"]),
        ("/usage", vec!["get"]),
        ("/openapi.json", vec!["get"]),
    ] {
        for m in methods {
            assert!(
                paths.get(path).and_then(|p| p.get(m)).is_some(),
                "{m} {path} missing from openapi.json"
            );
        }
    }
    assert_eq!(
        paths.len(),
        9,
        "openapi.json documents a route the router does not have"
    );
}

#[tokio::test]
async fn foundry_agent_resources_need_the_project_endpoint() {
    let api = api(false).await;
    let mut agent = resource();
    agent["model_type"] = json!("Foundry_Agent");
    agent["use_managed_identity"] = json!(true);
    agent.as_object_mut().unwrap().remove("key");
    for wrong in [
        "https://myhub.cognitiveservices.azure.com/",
        "https://myhub.services.ai.azure.com",
    ] {
        agent["endpoint_url"] = json!(wrong);
        let (status, err) = api.send("POST", "/resources", Some(agent.clone())).await;
        assert_eq!(
            (status, err["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("endpoint_url")),
            "{wrong}"
        );
        assert!(
            message(&err)
                .contains("https://<account>.services.ai.azure.com/api/projects/<project>"),
            "{err}"
        );
    }
    agent["endpoint_url"] = json!("https://myhub.services.ai.azure.com/api/projects/hackathon");
    let (status, created) = api.send("POST", "/resources", Some(agent.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["managed_identity"]["scope"],
        "https://ai.azure.com/.default"
    );

    agent["endpoint_url"] = json!("http://127.0.0.1:9100/api/projects/local");
    let (status, _) = api.send("POST", "/resources", Some(agent.clone())).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "plain http needs the insecure switch"
    );
    let insecure = new_api(true).await;
    let (status, _) = insecure.send("POST", "/resources", Some(agent)).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a loopback project endpoint is fine for local mocks"
    );
}

#[tokio::test]
async fn the_console_is_served_at_the_root_with_client_side_routes() {
    let api = api(false).await;
    let web = api._dir.join("web");
    std::fs::create_dir_all(web.join("assets")).unwrap();
    std::fs::write(web.join("index.html"), "<html>console</html>").unwrap();
    std::fs::write(web.join("assets/app.js"), "console.log(1)").unwrap();
    let state = state(api.catalog.clone());
    let router = admin::router_with_console(state.clone(), &web);
    let get = |path: &'static str| {
        let router = router.clone();
        async move {
            let response = router
                .oneshot(Request::builder().uri(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    assert_eq!(
        get("/").await,
        (StatusCode::OK, "<html>console</html>".into())
    );
    assert_eq!(
        get("/assets/app.js").await,
        (StatusCode::OK, "console.log(1)".into())
    );
    assert_eq!(
        get("/events/some-id").await,
        (StatusCode::OK, "<html>console</html>".into()),
        "client-side route"
    );
    let (status, body) = get("/admin/api/v1/no-such-route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Security headers: the console's CSP admits its own origin only and no framing; the API's
    // JSON admits nothing; both are nosniff and send no referrer.
    let headers_of = |path: &'static str, token: Option<&'static str>| {
        let router = router.clone();
        async move {
            let mut request = Request::builder().uri(path);
            if let Some(token) = token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            router
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap()
                .headers()
                .clone()
        }
    };
    for path in ["/", "/assets/app.js", "/events/some-id"] {
        let headers = headers_of(path, None).await;
        assert_eq!(
            headers["content-security-policy"],
            "default-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'self'",
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
    }
    for (path, token) in [
        ("/admin/api/v1/resources", Some(TOKEN)),
        ("/admin/api/v1/resources", None),
        ("/healthz", None),
    ] {
        let headers = headers_of(path, token).await;
        assert_eq!(
            headers["content-security-policy"], "default-src 'none'; frame-ancestors 'none'",
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
    }
    assert!(
        body.contains("openapi.json"),
        "API paths never fall back to the console: {body}"
    );

    let bare = admin::router_with_console(state, &api._dir.join("missing"));
    let response = bare
        .oneshot(Request::builder().uri("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[test]
fn the_console_page_has_no_inline_script_or_style_the_csp_would_block() {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../admin-web/index.html"
    ))
    .unwrap();
    for tag in page.split("<script").skip(1) {
        let open_tag = &tag[..tag.find('>').unwrap()];
        assert!(
            open_tag.contains("src="),
            "an inline <script> would need 'unsafe-inline': {open_tag}"
        );
    }
    assert!(
        !page.contains("<style"),
        "an inline <style> would need 'unsafe-inline'"
    );
    assert!(
        !page.contains(" style=\""),
        "an inline style attribute would need 'unsafe-inline'"
    );
}
