//! Header hygiene in both directions: hop-by-hop headers (RFC 9110 §7.6.1, plus those named in
//! `Connection`) stop at the edge, and client credentials are never forwarded.

use http::HeaderMap;
use http::header::{self, HeaderName};

/// Azure's key header: the attendee's key from a client, the resource's key towards upstream.
pub const API_KEY: HeaderName = HeaderName::from_static("api-key");

/// As `HeaderName`s, not strings: every request's and every answer's header names are compared
/// with these (a string would be parsed as a name each time).
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];
/// Client credentials and what the client must not set upstream (`X-Forwarded-*` aside).
static NOT_UPSTREAM: [HeaderName; 7] = [
    header::HOST,
    header::CONTENT_LENGTH,
    header::COOKIE,
    header::FORWARDED,
    HeaderName::from_static("x-real-ip"),
    header::AUTHORIZATION,
    API_KEY,
];

/// Removes the headers `doomed` names, and those the `Connection` header names. Only the names
/// present are removed: one pass over the headers, not a lookup per name that might be there.
fn strip(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    let mut names: Vec<HeaderName> = headers.keys().filter(|n| doomed(n)).cloned().collect();
    names.extend(
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok()),
    );
    for name in names {
        headers.remove(name);
    }
}

fn hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == header::TRANSFER_ENCODING
}

/// Client request headers as they may go upstream: no hop-by-hop, no client credentials or
/// cookies, no Host (the client sets the upstream's), no forwarding headers a client could forge
/// (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`), no Content-Length (the body the edge sends may not
/// be the client's: the upstream client sets it from the body it actually sends).
pub fn for_upstream(mut headers: HeaderMap) -> HeaderMap {
    strip(&mut headers, |name| {
        hop_by_hop(name) || NOT_UPSTREAM.contains(name) || name.as_str().starts_with("x-forwarded-")
    });
    headers
}

/// Upstream response headers as they go back to the client.
pub fn for_client(mut headers: HeaderMap) -> HeaderMap {
    strip(&mut headers, hop_by_hop);
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

    #[test]
    fn forwarding_headers_and_cookies_do_not_pass() {
        let mut h = HeaderMap::new();
        for name in [
            "cookie",
            "forwarded",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-real-ip",
        ] {
            h.insert(HeaderName::from_static(name), "spoofed".parse().unwrap());
        }
        h.insert(header::CONTENT_LENGTH, "10".parse().unwrap());
        assert!(for_upstream(h).is_empty());
    }

    proptest::proptest! {
        /// Whatever headers a client sends, none of its credentials or forwarding claims pass.
        #[test]
        fn no_header_set_leaks_credentials(
            names in proptest::collection::vec("[a-zA-Z-]{1,20}", 0..12),
            connection in "[a-zA-Z, -]{0,40}",
        ) {
            let mut h = HeaderMap::new();
            for name in names.iter().chain(["api-key", "authorization", "cookie"].iter().map(|s| s.to_string()).collect::<Vec<_>>().iter()) {
                if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                    h.append(name, "v".parse().unwrap());
                }
            }
            if let Ok(v) = connection.parse() {
                h.insert(header::CONNECTION, v);
            }
            let out = for_upstream(h);
            for banned in ["api-key", "authorization", "cookie", "connection", "host", "forwarded"] {
                proptest::prop_assert!(out.get(banned).is_none());
            }
            proptest::prop_assert!(!out.keys().any(|k| k.as_str().starts_with("x-forwarded-")));
        }
    }
}
