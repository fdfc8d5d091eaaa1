//! The client routes (`/api/v1/…`, see shared/reference/ROUTES.md) and what each one targets.

use http::Method;

/// Operations under `/openai/deployments/{deployment}/`.
pub const DEPLOYMENT_OPERATIONS: [&str; 7] = [
    "chat/completions",
    "completions",
    "embeddings",
    "images/generations",
    "audio/transcriptions",
    "audio/speech",
    "extensions/chat/completions",
];

/// Operations of the Azure OpenAI v1 API (`/openai/v1/…`), where the body's `model` picks the pool.
pub const V1_OPERATIONS: [&str; 3] = ["chat/completions", "embeddings", "responses"];

/// Operations of the Azure AI model inference API (`/…`), where the body's `model` picks the resource.
pub const INFERENCE_OPERATIONS: [&str; 4] = [
    "chat/completions",
    "embeddings",
    "images/embeddings",
    "info",
];

#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Healthz,
    Readyz,
    /// `/api/v1/openai/deployments/{deployment}/{operation}`
    Deployment {
        deployment: &'a str,
        operation: &'static str,
    },
    /// `/api/v1/openai/v1/{operation}`
    OpenAiV1 {
        operation: &'static str,
    },
    /// `/api/v1/indexes/{index}/docs/search` or `/api/v1/indexes('{index}')/docs/search.post.search`;
    /// `path` is what follows `/api/v1`, sent as is after the search service's endpoint.
    Search {
        index: &'a str,
        path: &'a str,
    },
    /// `/api/v1/{chat/completions|embeddings|images/embeddings|info}` (model inference API)
    Inference {
        operation: &'static str,
    },
    /// `/api/v1/mcp/{name}[/{rest}]`; `rest` (with its leading `/`, or empty) follows the server's endpoint.
    Mcp {
        name: &'a str,
        rest: &'a str,
    },
    /// The Foundry Agent Service through the event's `foundry-agent` resource: `/agents…`,
    /// `/assistants…`, `/threads…`, `/files…`, `/vector_stores…`, `/openai/v1/conversations…`,
    /// `/openai/v1/responses/{id}…`. `kind`/`id` name the object the path addresses (none for a
    /// collection); `path` (after `/api/v1`) is appended to the project endpoint.
    Foundry {
        kind: &'static str,
        id: Option<&'a str>,
        nested: bool,
        path: &'a str,
    },
    /// `POST /api/v1/eventinfo`: what the caller's event offers.
    EventInfo,
    /// `GET /api/v1/event/{event_id}`: public registration information.
    EventPublic {
        event_id: &'a str,
    },
    MethodNotAllowed,
    Unknown,
}

fn only<'a>(method: &Method, allowed: &[Method], route: Route<'a>) -> Route<'a> {
    if allowed.contains(method) {
        route
    } else {
        Route::MethodNotAllowed
    }
}

pub fn resolve<'a>(method: &Method, path: &'a str) -> Route<'a> {
    match path {
        "/healthz" => return Route::Healthz,
        "/readyz" => return Route::Readyz,
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return Route::Unknown;
    };
    let post = [Method::POST];
    if let Some(route) = foundry(rest, &path["/api/v1".len()..]) {
        return only(method, &[Method::GET, Method::POST, Method::DELETE], route);
    }
    if let Some(openai) = rest.strip_prefix("openai/") {
        return resolve_openai(method, openai);
    }
    if let Some(search) = rest.strip_prefix("indexes") {
        return match search_index(search) {
            Some(index) => only(
                method,
                &post,
                Route::Search {
                    index,
                    path: &path["/api/v1".len()..],
                },
            ),
            None => Route::Unknown,
        };
    }
    if let Some(mcp) = rest.strip_prefix("mcp/") {
        let (name, rest) = match mcp.find('/') {
            Some(i) => (&mcp[..i], &mcp[i..]),
            None => (mcp, ""),
        };
        if name.is_empty() {
            return Route::Unknown;
        }
        return only(
            method,
            &[Method::GET, Method::POST, Method::DELETE],
            Route::Mcp { name, rest },
        );
    }
    if rest == "eventinfo" {
        return only(method, &post, Route::EventInfo);
    }
    if let Some(event_id) = rest
        .strip_prefix("event/")
        .filter(|id| !id.is_empty() && !id.contains('/'))
    {
        return only(method, &[Method::GET], Route::EventPublic { event_id });
    }
    match INFERENCE_OPERATIONS.iter().find(|op| **op == rest) {
        Some(&"info") => only(
            method,
            &[Method::GET],
            Route::Inference { operation: "info" },
        ),
        Some(op) => only(method, &post, Route::Inference { operation: op }),
        None => Route::Unknown,
    }
}

fn resolve_openai<'a>(method: &Method, rest: &'a str) -> Route<'a> {
    let post = [Method::POST];
    if let Some(rest) = rest.strip_prefix("deployments/") {
        let Some((deployment, operation)) = rest.split_once('/') else {
            return Route::Unknown;
        };
        if deployment.is_empty() {
            return Route::Unknown;
        }
        return match DEPLOYMENT_OPERATIONS.iter().find(|op| **op == operation) {
            Some(op) => only(
                method,
                &post,
                Route::Deployment {
                    deployment,
                    operation: op,
                },
            ),
            None => Route::Unknown,
        };
    }
    if let Some(operation) = rest.strip_prefix("v1/") {
        return match V1_OPERATIONS.iter().find(|op| **op == operation) {
            Some(op) => only(method, &post, Route::OpenAiV1 { operation: op }),
            None => Route::Unknown,
        };
    }
    Route::Unknown
}

/// Foundry Agent Service paths: the collection names the kind; the next segment (if any) the object.
fn foundry<'a>(rest: &'a str, path: &'a str) -> Option<Route<'a>> {
    const COLLECTIONS: [(&str, &str); 7] = [
        ("agents", "agent"),
        ("assistants", "agent"),
        ("threads", "thread"),
        ("files", "file"),
        ("vector_stores", "vector_store"),
        ("openai/v1/conversations", "conversation"),
        ("openai/v1/responses", "response"),
    ];
    let (collection, kind) = COLLECTIONS
        .iter()
        .find(|(c, _)| rest == *c || rest.strip_prefix(c).is_some_and(|r| r.starts_with('/')))?;
    let tail = &rest[collection.len()..];
    let mut segments = tail.split('/').filter(|s| !s.is_empty());
    let id = segments.next();
    // `POST /openai/v1/responses` (no id) is the model API unless it names an agent: decided on the body.
    if *kind == "response" && id.is_none() {
        return None;
    }
    // `POST /threads/runs` creates a thread and a run: a collection call.
    let id = id.filter(|id| !(*kind == "thread" && *id == "runs"));
    let nested = id.is_some() && segments.next().is_some();
    Some(Route::Foundry {
        kind,
        id,
        nested,
        path,
    })
}

/// The index name of `/{index}/docs/search` or `('{index}')/docs/search.post.search`.
fn search_index(rest: &str) -> Option<&str> {
    if let Some(quoted) = rest.strip_prefix("('") {
        let (index, tail) = quoted.split_once("')")?;
        return (tail == "/docs/search.post.search" && !index.is_empty()).then_some(index);
    }
    let (index, tail) = rest.strip_prefix('/')?.split_once('/')?;
    (tail == "docs/search" && !index.is_empty()).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_the_openai_routes() {
        assert_eq!(
            resolve(
                &Method::POST,
                "/api/v1/openai/deployments/gpt-4o/chat/completions"
            ),
            Route::Deployment {
                deployment: "gpt-4o",
                operation: "chat/completions"
            }
        );
        assert_eq!(
            resolve(
                &Method::POST,
                "/api/v1/openai/deployments/whisper/audio/transcriptions"
            ),
            Route::Deployment {
                deployment: "whisper",
                operation: "audio/transcriptions"
            }
        );
        assert_eq!(
            resolve(&Method::POST, "/api/v1/openai/v1/responses"),
            Route::OpenAiV1 {
                operation: "responses"
            }
        );
        assert_eq!(
            resolve(
                &Method::GET,
                "/api/v1/openai/deployments/gpt/chat/completions"
            ),
            Route::MethodNotAllowed
        );
        assert_eq!(
            resolve(&Method::POST, "/api/v1/openai/deployments/gpt/other"),
            Route::Unknown
        );
        assert_eq!(
            resolve(
                &Method::POST,
                "/api/v1/openai/deployments//chat/completions"
            ),
            Route::Unknown
        );
        assert_eq!(resolve(&Method::GET, "/healthz"), Route::Healthz);
    }

    #[test]
    fn resolves_search_inference_mcp_and_event_routes() {
        assert_eq!(
            resolve(&Method::POST, "/api/v1/indexes/products/docs/search"),
            Route::Search {
                index: "products",
                path: "/indexes/products/docs/search"
            }
        );
        assert_eq!(
            resolve(
                &Method::POST,
                "/api/v1/indexes('products')/docs/search.post.search"
            ),
            Route::Search {
                index: "products",
                path: "/indexes('products')/docs/search.post.search"
            }
        );
        assert_eq!(
            resolve(&Method::POST, "/api/v1/indexes/products/docs"),
            Route::Unknown
        );
        assert_eq!(
            resolve(&Method::POST, "/api/v1/chat/completions"),
            Route::Inference {
                operation: "chat/completions"
            }
        );
        assert_eq!(
            resolve(&Method::GET, "/api/v1/info"),
            Route::Inference { operation: "info" }
        );
        assert_eq!(
            resolve(&Method::POST, "/api/v1/info"),
            Route::MethodNotAllowed
        );
        assert_eq!(
            resolve(&Method::POST, "/api/v1/mcp/docs"),
            Route::Mcp {
                name: "docs",
                rest: ""
            }
        );
        assert_eq!(
            resolve(&Method::GET, "/api/v1/mcp/docs/sse"),
            Route::Mcp {
                name: "docs",
                rest: "/sse"
            }
        );
        assert_eq!(
            resolve(&Method::POST, "/api/v1/eventinfo"),
            Route::EventInfo
        );
        assert_eq!(
            resolve(&Method::GET, "/api/v1/event/e-1"),
            Route::EventPublic { event_id: "e-1" }
        );
        assert_eq!(resolve(&Method::GET, "/api/v1/event/"), Route::Unknown);
    }

    #[test]
    fn resolves_the_foundry_agent_routes() {
        let foundry = |kind, id, nested, path| Route::Foundry {
            kind,
            id,
            nested,
            path,
        };
        assert_eq!(
            resolve(&Method::POST, "/api/v1/assistants"),
            foundry("agent", None, false, "/assistants")
        );
        assert_eq!(
            resolve(&Method::GET, "/api/v1/threads/thread_1/messages"),
            foundry(
                "thread",
                Some("thread_1"),
                true,
                "/threads/thread_1/messages"
            )
        );
        assert_eq!(
            resolve(&Method::POST, "/api/v1/threads/runs"),
            foundry("thread", None, false, "/threads/runs")
        );
        assert_eq!(
            resolve(&Method::DELETE, "/api/v1/files/file-1"),
            foundry("file", Some("file-1"), false, "/files/file-1")
        );
        assert_eq!(
            resolve(&Method::GET, "/api/v1/openai/v1/conversations/conv_1/items"),
            foundry(
                "conversation",
                Some("conv_1"),
                true,
                "/openai/v1/conversations/conv_1/items"
            )
        );
        assert_eq!(
            resolve(&Method::POST, "/api/v1/openai/v1/responses/resp_1/cancel"),
            foundry(
                "response",
                Some("resp_1"),
                true,
                "/openai/v1/responses/resp_1/cancel"
            )
        );
        assert_eq!(
            resolve(&Method::POST, "/api/v1/openai/v1/responses"),
            Route::OpenAiV1 {
                operation: "responses"
            }
        );
        assert_eq!(resolve(&Method::GET, "/api/v1/agentsx"), Route::Unknown);
    }
}
