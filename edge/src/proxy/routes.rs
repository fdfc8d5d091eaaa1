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
    MethodNotAllowed,
    Unknown,
}

pub fn resolve<'a>(method: &Method, path: &'a str) -> Route<'a> {
    match path {
        "/healthz" => return Route::Healthz,
        "/readyz" => return Route::Readyz,
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/api/v1/openai/") else {
        return Route::Unknown;
    };
    let post_only = |route: Route<'a>| {
        if method == Method::POST {
            route
        } else {
            Route::MethodNotAllowed
        }
    };
    if let Some(rest) = rest.strip_prefix("deployments/") {
        let Some((deployment, operation)) = rest.split_once('/') else {
            return Route::Unknown;
        };
        if deployment.is_empty() {
            return Route::Unknown;
        }
        return match DEPLOYMENT_OPERATIONS.iter().find(|op| **op == operation) {
            Some(op) => post_only(Route::Deployment {
                deployment,
                operation: op,
            }),
            None => Route::Unknown,
        };
    }
    if let Some(operation) = rest.strip_prefix("v1/") {
        return match V1_OPERATIONS.iter().find(|op| **op == operation) {
            Some(op) => post_only(Route::OpenAiV1 { operation: op }),
            None => Route::Unknown,
        };
    }
    Route::Unknown
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
}
