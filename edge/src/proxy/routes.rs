//! The client routes (`/api/v1/…`, see shared/reference/ROUTES.md) and what each one targets,
//! decided on canonical segments (see `canonical`): literal segments match case-insensitively, as
//! Azure's routing does, and every upstream path is rebuilt from validated segments.

use http::Method;

use super::canonical::{self, CanonicalPath, PathError, is_deployment_name, is_id};
use super::foundry::ObjectKind;

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
    /// `path` is the upstream path after the search service's endpoint.
    Search {
        index: &'a str,
        path: String,
    },
    /// `/api/v1/{chat/completions|embeddings|images/embeddings|info}` (model inference API)
    Inference {
        operation: &'static str,
    },
    /// `/api/v1/mcp/{name}[/{rest}]`; `rest` (re-encoded, with its leading `/`, or empty) follows
    /// the server's endpoint.
    Mcp {
        name: &'a str,
        rest: String,
    },
    /// The Foundry Agent Service (and stored model responses): see `FoundryPath`.
    Foundry(FoundryPath<'a>),
    /// `POST /api/v1/eventinfo`: what the caller's event offers.
    EventInfo,
    /// `GET /api/v1/event/{event_id}`: public registration information.
    EventPublic {
        event_id: &'a str,
    },
    MethodNotAllowed,
    Unknown,
}

/// A Foundry path: the collection names the kind, the next segment (if any) the object, and
/// anything below it stays inside that object (`/threads/{id}/messages`).
#[derive(Debug, PartialEq, Eq)]
pub struct FoundryPath<'a> {
    pub kind: ObjectKind,
    pub id: Option<&'a str>,
    /// What follows the object (or the collection, for `/threads/runs`), canonical case.
    pub below: Vec<&'a str>,
    /// The upstream path after the project endpoint (or the model resource's origin).
    pub path: String,
}

impl FoundryPath<'_> {
    /// `POST /threads/runs`: creates a thread and runs it.
    pub fn creates_thread_and_run(&self) -> bool {
        self.kind == ObjectKind::Thread && self.id.is_none() && self.below == ["runs"]
    }

    /// The collection itself (create, list).
    pub fn is_collection(&self) -> bool {
        self.id.is_none() && self.below.is_empty()
    }
}

/// What a request path means, or why it is refused (400) before anything else looks at it.
pub fn resolve<'a>(method: &Method, path: &'a CanonicalPath<'_>) -> Result<Route<'a>, PathError> {
    let segments: Vec<&str> = path.segments().iter().map(|s| s.as_ref()).collect();
    match segments.as_slice() {
        ["healthz"] => return Ok(Route::Healthz),
        ["readyz"] => return Ok(Route::Readyz),
        _ => {}
    }
    let rest = match segments.as_slice() {
        [api, v1, rest @ ..] if eq(api, "api") && eq(v1, "v1") && !rest.is_empty() => rest,
        _ => return Ok(Route::Unknown),
    };
    let any = [Method::GET, Method::POST, Method::DELETE];
    if let Some(foundry) = foundry(rest)? {
        return Ok(only(method, &any, Route::Foundry(foundry)));
    }
    let post = [Method::POST];
    let route = match rest {
        [openai, deployments, deployment, operation @ ..]
            if eq(openai, "openai") && eq(deployments, "deployments") =>
        {
            if !is_deployment_name(deployment) {
                return Err(invalid("the deployment name"));
            }
            match find_operation(&DEPLOYMENT_OPERATIONS, operation) {
                Some(operation) => only(
                    method,
                    &post,
                    Route::Deployment {
                        deployment,
                        operation,
                    },
                ),
                None => Route::Unknown,
            }
        }
        [openai, v1, operation @ ..] if eq(openai, "openai") && eq(v1, "v1") => {
            match find_operation(&V1_OPERATIONS, operation) {
                Some(operation) => only(method, &post, Route::OpenAiV1 { operation }),
                None => Route::Unknown,
            }
        }
        [indexes, index, docs, search] if eq(indexes, "indexes") => {
            if !(eq(docs, "docs") && eq(search, "search")) {
                return Ok(Route::Unknown);
            }
            if !is_id(index) {
                return Err(invalid("the index name"));
            }
            let path = format!("/indexes/{index}/docs/search");
            only(method, &post, Route::Search { index, path })
        }
        [quoted, docs, search] if starts_with(quoted, "indexes('") => {
            let Some(index) = quoted["indexes('".len()..].strip_suffix("')") else {
                return Ok(Route::Unknown);
            };
            if !(eq(docs, "docs") && eq(search, "search.post.search")) {
                return Ok(Route::Unknown);
            }
            if !is_id(index) {
                return Err(invalid("the index name"));
            }
            let path = format!("/indexes('{index}')/docs/search.post.search");
            only(method, &post, Route::Search { index, path })
        }
        [mcp, name, below @ ..] if eq(mcp, "mcp") => only(
            method,
            &any,
            Route::Mcp {
                name,
                rest: canonical::join(below),
            },
        ),
        [eventinfo] if eq(eventinfo, "eventinfo") => only(method, &post, Route::EventInfo),
        [event, event_id] if eq(event, "event") => {
            if !is_id(event_id) {
                return Err(invalid("the event id"));
            }
            only(method, &[Method::GET], Route::EventPublic { event_id })
        }
        operation => match find_operation(&INFERENCE_OPERATIONS, operation) {
            Some("info") => only(
                method,
                &[Method::GET],
                Route::Inference { operation: "info" },
            ),
            Some(operation) => only(method, &post, Route::Inference { operation }),
            None => Route::Unknown,
        },
    };
    Ok(route)
}

fn eq(segment: &str, literal: &str) -> bool {
    segment.eq_ignore_ascii_case(literal)
}

fn starts_with(segment: &str, prefix: &str) -> bool {
    // `get`: a multi-byte character may straddle the prefix's length.
    segment
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

fn invalid(what: &'static str) -> PathError {
    PathError::not_an_id(what)
}

fn only<'a>(method: &Method, allowed: &[Method], route: Route<'a>) -> Route<'a> {
    if allowed.contains(method) {
        route
    } else {
        Route::MethodNotAllowed
    }
}

/// The operation (`chat/completions`…) whose segments `segments` spell, ignoring case.
fn find_operation(operations: &[&'static str], segments: &[&str]) -> Option<&'static str> {
    operations.iter().copied().find(|op| {
        let mut expected = op.split('/');
        segments
            .iter()
            .all(|s| expected.next().is_some_and(|e| eq(s, e)))
            && expected.next().is_none()
            && !segments.is_empty()
    })
}

/// Foundry collections: the path segments that name them, the kind of object they hold, and the
/// upstream spelling.
const COLLECTIONS: [(&[&str], ObjectKind); 7] = [
    (&["assistants"], ObjectKind::Assistant),
    (&["agents"], ObjectKind::Agent),
    (&["threads"], ObjectKind::Thread),
    (&["files"], ObjectKind::File),
    (&["vector_stores"], ObjectKind::VectorStore),
    (&["openai", "v1", "conversations"], ObjectKind::Conversation),
    (&["openai", "v1", "responses"], ObjectKind::Response),
];

/// Literal segments below an object, in their canonical spelling (matched ignoring case); any
/// other segment there must be an id.
const NESTED_LITERALS: [&str; 14] = [
    "messages",
    "runs",
    "steps",
    "files",
    "file_batches",
    "content",
    "versions",
    "items",
    "cancel",
    "input_items",
    "submit_tool_outputs",
    "search",
    "latest",
    "containers",
];

fn foundry<'a>(rest: &[&'a str]) -> Result<Option<FoundryPath<'a>>, PathError> {
    let Some((collection, kind)) = COLLECTIONS.iter().find(|(c, _)| {
        rest.len() >= c.len() && c.iter().zip(rest).all(|(literal, s)| eq(s, literal))
    }) else {
        return Ok(None);
    };
    let tail = &rest[collection.len()..];
    // `POST /openai/v1/responses` (no id) is the model API unless the body names an agent.
    if *kind == ObjectKind::Response && tail.is_empty() {
        return Ok(None);
    }
    let (id, below) = match tail {
        [] => (None, tail),
        [runs, ..] if *kind == ObjectKind::Thread && eq(runs, "runs") => (None, tail),
        [id, below @ ..] => {
            if !is_id(id) {
                return Err(PathError::not_an_id(kind.label()));
            }
            (Some(*id), below)
        }
    };
    let below = below
        .iter()
        .map(|segment| {
            if let Some(literal) = NESTED_LITERALS.iter().find(|l| eq(segment, l)) {
                Ok(*literal)
            } else if is_id(segment) {
                Ok(*segment)
            } else {
                Err(PathError::not_an_id("a nested object"))
            }
        })
        .collect::<Result<Vec<&str>, _>>()?;
    let mut path = String::new();
    for segment in collection
        .iter()
        .copied()
        .chain(id)
        .chain(below.iter().copied())
    {
        path.push('/');
        path.push_str(segment);
    }
    Ok(Some(FoundryPath {
        kind: *kind,
        id,
        below,
        path,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Method, path: &'static str) -> Route<'static> {
        let canonical = Box::leak(Box::new(CanonicalPath::parse(path).unwrap()));
        resolve(&method, canonical).unwrap()
    }

    fn refused(method: Method, path: &str) -> bool {
        match CanonicalPath::parse(path) {
            Err(_) => true,
            Ok(canonical) => resolve(&method, &canonical).is_err(),
        }
    }

    #[test]
    fn resolves_the_openai_routes() {
        assert_eq!(
            route(
                Method::POST,
                "/api/v1/openai/deployments/gpt-4o/chat/completions"
            ),
            Route::Deployment {
                deployment: "gpt-4o",
                operation: "chat/completions"
            }
        );
        assert_eq!(
            route(
                Method::POST,
                "/API/V1/OpenAI/Deployments/gpt-4o/Chat/Completions/"
            ),
            Route::Deployment {
                deployment: "gpt-4o",
                operation: "chat/completions"
            }
        );
        assert_eq!(
            route(
                Method::POST,
                "/api/v1/openai/deployments/whisper/audio/transcriptions"
            ),
            Route::Deployment {
                deployment: "whisper",
                operation: "audio/transcriptions"
            }
        );
        assert_eq!(
            route(Method::POST, "/api/v1/openai/v1/responses"),
            Route::OpenAiV1 {
                operation: "responses"
            }
        );
        assert_eq!(
            route(
                Method::GET,
                "/api/v1/openai/deployments/gpt/chat/completions"
            ),
            Route::MethodNotAllowed
        );
        assert_eq!(
            route(Method::POST, "/api/v1/openai/deployments/gpt/other"),
            Route::Unknown
        );
        assert!(refused(
            Method::POST,
            "/api/v1/openai/deployments//chat/completions"
        ));
        assert_eq!(route(Method::GET, "/healthz"), Route::Healthz);
    }

    #[test]
    fn resolves_search_inference_mcp_and_event_routes() {
        assert_eq!(
            route(Method::POST, "/api/v1/indexes/products/docs/search"),
            Route::Search {
                index: "products",
                path: "/indexes/products/docs/search".into()
            }
        );
        assert_eq!(
            route(
                Method::POST,
                "/api/v1/indexes('products')/docs/search.post.search"
            ),
            Route::Search {
                index: "products",
                path: "/indexes('products')/docs/search.post.search".into()
            }
        );
        assert_eq!(
            route(Method::POST, "/api/v1/indexes/products/docs"),
            Route::Unknown
        );
        assert_eq!(
            route(Method::POST, "/api/v1/chat/completions"),
            Route::Inference {
                operation: "chat/completions"
            }
        );
        assert_eq!(
            route(Method::GET, "/api/v1/info"),
            Route::Inference { operation: "info" }
        );
        assert_eq!(route(Method::POST, "/api/v1/info"), Route::MethodNotAllowed);
        assert_eq!(
            route(Method::POST, "/api/v1/mcp/docs"),
            Route::Mcp {
                name: "docs",
                rest: String::new()
            }
        );
        assert_eq!(
            route(Method::GET, "/api/v1/mcp/docs/sse"),
            Route::Mcp {
                name: "docs",
                rest: "/sse".into()
            }
        );
        assert!(refused(Method::GET, "/api/v1/mcp/docs/../../x"));
        assert_eq!(
            route(Method::POST, "/api/v1/aaaaaaaa%C3%A9/x/y"),
            Route::Unknown
        );
        assert_eq!(route(Method::POST, "/api/v1/eventinfo"), Route::EventInfo);
        assert_eq!(
            route(Method::GET, "/api/v1/event/e-1"),
            Route::EventPublic { event_id: "e-1" }
        );
        assert_eq!(route(Method::GET, "/api/v1/event"), Route::Unknown);
    }

    fn foundry(
        kind: ObjectKind,
        id: Option<&'static str>,
        below: &[&'static str],
        path: &str,
    ) -> Route<'static> {
        Route::Foundry(FoundryPath {
            kind,
            id,
            below: below.to_vec(),
            path: path.into(),
        })
    }

    #[test]
    fn resolves_the_foundry_agent_routes() {
        assert_eq!(
            route(Method::POST, "/api/v1/assistants"),
            foundry(ObjectKind::Assistant, None, &[], "/assistants")
        );
        assert_eq!(
            route(Method::GET, "/api/v1/Threads/thread_1/Messages/"),
            foundry(
                ObjectKind::Thread,
                Some("thread_1"),
                &["messages"],
                "/threads/thread_1/messages"
            )
        );
        for path in [
            "/api/v1/threads/runs",
            "/api/v1/threads/Runs/",
            "/api/v1/THREADS/runs",
        ] {
            let Route::Foundry(p) = route(Method::POST, path) else {
                panic!("{path}")
            };
            assert!(p.creates_thread_and_run(), "{path}");
            assert_eq!(p.path, "/threads/runs");
        }
        assert_eq!(
            route(Method::DELETE, "/api/v1/files/file-1"),
            foundry(ObjectKind::File, Some("file-1"), &[], "/files/file-1")
        );
        assert_eq!(
            route(Method::GET, "/api/v1/openai/v1/conversations/conv_1/items"),
            foundry(
                ObjectKind::Conversation,
                Some("conv_1"),
                &["items"],
                "/openai/v1/conversations/conv_1/items"
            )
        );
        assert_eq!(
            route(Method::POST, "/api/v1/openai/v1/responses/resp_1/cancel"),
            foundry(
                ObjectKind::Response,
                Some("resp_1"),
                &["cancel"],
                "/openai/v1/responses/resp_1/cancel"
            )
        );
        assert_eq!(
            route(Method::POST, "/api/v1/openai/v1/responses"),
            Route::OpenAiV1 {
                operation: "responses"
            }
        );
        assert_eq!(route(Method::GET, "/api/v1/agentsx"), Route::Unknown);
        for path in [
            "/api/v1/assistants/asst_1/../asst_2",
            "/api/v1/assistants/asst_1/..",
            "/api/v1/threads/runs/../../assistants/asst_2",
            "/api/v1/openai/v1/responses/resp_1/../../deployments/x/chat/completions",
            "/api/v1/assistants/asst.1",
            "/api/v1/threads/thread_1/runs/run%201",
        ] {
            assert!(refused(Method::GET, path), "{path}");
        }
    }

    proptest::proptest! {
        /// Route resolution answers every path (a route or a 400), never panics.
        #[test]
        fn resolution_never_panics(
            path in "(/[a-zA-Z0-9_.%;()'-]{0,12}){0,10}/?",
            method in proptest::sample::select(vec![Method::GET, Method::POST, Method::DELETE, Method::PUT]),
        ) {
            if let Ok(canonical) = CanonicalPath::parse(&path) {
                let _ = resolve(&method, &canonical);
            }
        }
    }
}
