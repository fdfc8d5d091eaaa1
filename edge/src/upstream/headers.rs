//! Header hygiene in both directions: hop-by-hop headers (RFC 9110 §7.6.1, plus those named in
//! `Connection`) stop at the edge, and client credentials are never forwarded.

use http::HeaderMap;
use http::header::{self, HeaderName};

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

/// Client request headers as they may go upstream: no hop-by-hop, no client credentials, no Host
/// (the client sets the upstream's), no Content-Length (the body the edge sends may not be the
/// client's: the upstream client sets it from the body it actually sends).
pub fn for_upstream(mut headers: HeaderMap) -> HeaderMap {
    strip_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::AUTHORIZATION);
    headers.remove("api-key");
    headers
}

/// Upstream response headers as they go back to the client.
pub fn for_client(mut headers: HeaderMap) -> HeaderMap {
    strip_hop_by_hop(&mut headers);
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_hop_by_hop_headers_do_not_pass() {
        let mut h = HeaderMap::new();
        h.insert("api-key", "client-key".parse().unwrap());
        h.insert(header::AUTHORIZATION, "Bearer client-key".parse().unwrap());
        h.insert(header::CONNECTION, "keep-alive, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-ms-client-request-id", "abc".parse().unwrap());
        let out = for_upstream(h);
        assert!(out.get("api-key").is_none());
        assert!(out.get(header::AUTHORIZATION).is_none());
        assert!(out.get("x-private").is_none());
        assert!(out.get("keep-alive").is_none());
        assert_eq!(out.get("x-ms-client-request-id").unwrap(), "abc");
    }
}
