//! Upstream endpoint rules: `https://` only, unless the operator allowed plain `http://` for local
//! mocks and tests (`AIPROXY_ALLOW_INSECURE_UPSTREAMS`).

/// Checks an endpoint URL and returns it normalised (no trailing slash), or why it is refused.
pub fn validate_endpoint(raw: &str, allow_insecure: bool) -> Result<String, String> {
    let trimmed = raw.trim().trim_end_matches('/');
    let uri: http_uri::Uri = trimmed.parse().map_err(|_| {
        "must be an absolute URL such as https://<name>.openai.azure.com".to_string()
    })?;
    let scheme = uri.scheme_str().unwrap_or("");
    match scheme {
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
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("must not carry credentials".to_string());
    }
    Ok(trimmed.to_string())
}

/// `http::Uri` is all the URL parsing needed here; re-exported under a clear name.
mod http_uri {
    pub use axum::http::Uri;
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
    fn garbage_and_other_schemes_are_refused() {
        assert!(validate_endpoint("x.openai.azure.com", true).is_err());
        assert!(validate_endpoint("ftp://x", true).is_err());
        assert!(validate_endpoint("https://x/?a=b", true).is_err());
        assert!(validate_endpoint("https://user:pw@x", true).is_err());
    }
}
