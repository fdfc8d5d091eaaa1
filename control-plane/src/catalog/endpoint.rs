//! Upstream endpoint rules: `https://` only, unless the operator allowed plain `http://` for local
//! mocks and tests (`AIPROXY_ALLOW_INSECURE_UPSTREAMS`); Foundry agents need their project endpoint.

use axum::http::Uri;

/// Checks an endpoint URL and returns it normalised (no trailing slash), or why it is refused.
pub fn validate_endpoint(raw: &str, allow_insecure: bool) -> Result<String, String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let uri: Uri = trimmed.parse().map_err(|_| {
        "must be an absolute URL such as https://<name>.openai.azure.com".to_string()
    })?;
    let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
    match scheme.as_str() {
        "https" => {}
        "http" if allow_insecure => {}
        "http" => {
            return Err(
                "must use https:// (plain http:// is accepted only when the control plane \
                 runs with AIPROXY_ALLOW_INSECURE_UPSTREAMS=true, for local mocks and tests)"
                    .to_string(),
            );
        }
        _ => {
            return Err(
                "must be an absolute URL such as https://<name>.openai.azure.com".to_string(),
            );
        }
    }
    let host = uri.host().unwrap_or("");
    if host.is_empty() {
        return Err("must name a host, such as https://<name>.openai.azure.com".to_string());
    }
    if uri.query().is_some() || trimmed.contains('#') {
        return Err("must not carry a query string or fragment".to_string());
    }
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
    if authority.contains('@') {
        return Err("must not carry credentials".to_string());
    }
    // Scheme and host are case-insensitive: stored in lower case, so every rule below (and the
    // origin a key is bound to) sees one spelling. The path is kept as given.
    let path = uri.path().trim_end_matches('/');
    Ok(format!(
        "{}://{}{path}",
        scheme.to_ascii_lowercase(),
        authority.to_ascii_lowercase()
    ))
}

/// Where an endpoint sends requests: its scheme and authority (host and port), lower-cased. A stored
/// key belongs to one origin and is never sent to another.
pub fn endpoint_origin(endpoint: &str) -> String {
    match endpoint.trim().parse::<Uri>() {
        Ok(uri) => format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("").to_ascii_lowercase(),
            uri.authority()
                .map(|a| a.as_str().to_ascii_lowercase())
                .unwrap_or_default()
        ),
        Err(_) => endpoint.trim().to_ascii_lowercase(),
    }
}

const FOUNDRY_PROJECT_FORM: &str = "https://<account>.services.ai.azure.com/api/projects/<project>";

/// A Foundry agent resource must point at the project endpoint; anything else answers 404 upstream.
/// With `allow_insecure` (local mocks and tests) a loopback `http://127.0.0.1:<port>/api/projects/<p>`
/// is accepted too. Takes an endpoint `validate_endpoint` already accepted.
pub fn validate_foundry_project_endpoint(
    endpoint: &str,
    allow_insecure: bool,
) -> Result<(), String> {
    let uri: Uri = endpoint
        .parse()
        .map_err(|_| format!("must be the Foundry project endpoint, {FOUNDRY_PROJECT_FORM}"))?;
    let host = uri.host().unwrap_or("");
    let loopback = matches!(host, "127.0.0.1" | "localhost" | "[::1]");
    let host_ok = match uri.scheme_str() {
        Some("https") => host.ends_with(".services.ai.azure.com"),
        Some("http") => allow_insecure && loopback,
        _ => false,
    };
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let path_ok =
        matches!(segments.as_slice(), ["api", "projects", project] if !project.is_empty());
    if host_ok && path_ok {
        return Ok(());
    }
    let why = if host.ends_with(".cognitiveservices.azure.com")
        || host.ends_with(".openai.azure.com")
    {
        format!("'{host}' is the account's Azure OpenAI address, which answers 404 to agent calls")
    } else if !host_ok {
        format!("'{host}' is not a Foundry services host")
    } else {
        "it lacks the /api/projects/<project> path".to_string()
    };
    Err(format!(
        "a Foundry agent resource needs the project endpoint {FOUNDRY_PROJECT_FORM} (Foundry portal → project → Overview); {why}"
    ))
}

#[cfg(test)]
mod tests {
    use super::validate_endpoint;

    #[test]
    fn https_is_accepted_and_normalised() {
        assert_eq!(
            validate_endpoint("https://x.openai.azure.com/", false).unwrap(),
            "https://x.openai.azure.com"
        );
    }

    #[test]
    fn http_needs_the_insecure_switch() {
        let err = validate_endpoint("http://127.0.0.1:9000", false).unwrap_err();
        assert!(err.contains("AIPROXY_ALLOW_INSECURE_UPSTREAMS"));
        assert!(validate_endpoint("http://127.0.0.1:9000", true).is_ok());
    }

    #[test]
    fn foundry_agents_need_the_project_endpoint() {
        use super::validate_foundry_project_endpoint as check;
        assert!(check("https://hub.services.ai.azure.com/api/projects/hack", false).is_ok());
        let err = check("https://hub.cognitiveservices.azure.com", false).unwrap_err();
        assert!(
            err.contains("https://<account>.services.ai.azure.com/api/projects/<project>"),
            "{err}"
        );
        assert!(err.contains("404"), "{err}");
        assert!(
            check("https://hub.services.ai.azure.com", false)
                .unwrap_err()
                .contains("/api/projects/<project>")
        );
        assert!(check("https://hub.services.ai.azure.com/api/projects/a/b", false).is_err());
        assert!(check("http://127.0.0.1:9100/api/projects/p", true).is_ok());
        assert!(check("http://127.0.0.1:9100/api/projects/p", false).is_err());
        assert!(check("http://10.0.0.5/api/projects/p", true).is_err());
    }

    #[test]
    fn the_origin_is_scheme_and_authority_in_lower_case() {
        use super::endpoint_origin;
        assert_eq!(
            endpoint_origin("https://AOAI.openai.azure.com/openai/v1"),
            "https://aoai.openai.azure.com"
        );
        assert_eq!(
            endpoint_origin("http://127.0.0.1:9100/api/projects/p"),
            "http://127.0.0.1:9100"
        );
        assert_ne!(
            endpoint_origin("https://a.openai.azure.com"),
            endpoint_origin("https://a.openai.azure.com.evil.example")
        );
    }

    /// The table the console's tests read too (`admin-web/src/endpoint-cases.json`): both sides
    /// judge every endpoint the same way.
    #[test]
    fn the_shared_endpoint_table() {
        use crate::catalog::model::ModelType;
        let table: serde_json::Value =
            serde_json::from_str(include_str!("../../../admin-web/src/endpoint-cases.json"))
                .unwrap();
        for case in table["cases"].as_array().unwrap() {
            let endpoint = case["endpoint"].as_str().unwrap();
            let model_type = ModelType::parse(case["type"].as_str().unwrap()).unwrap();
            let verdict = validate_endpoint(endpoint, false).and_then(|stored| {
                if model_type == ModelType::FoundryAgent {
                    super::validate_foundry_project_endpoint(&stored, false)?;
                }
                Ok(stored)
            });
            match (case["valid"].as_bool().unwrap(), verdict) {
                (true, Ok(stored)) => {
                    if let Some(expected) = case["stored"].as_str() {
                        assert_eq!(stored, expected, "{case}");
                    }
                }
                (false, Err(why)) => {
                    if let Some(part) = case["error"].as_str() {
                        assert!(why.contains(part), "{case}: {why}");
                    }
                }
                (valid, verdict) => panic!("{case}: expected valid={valid}, got {verdict:?}"),
            }
        }
    }

    #[test]
    fn garbage_and_other_schemes_are_refused() {
        assert!(validate_endpoint("x.openai.azure.com", true).is_err());
        assert!(validate_endpoint("ftp://x", true).is_err());
        assert!(validate_endpoint("https://x/?a=b", true).is_err());
        assert!(validate_endpoint("https://user:pw@x", true).is_err());
    }
}
