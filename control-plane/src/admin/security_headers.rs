//! Security headers on every response of the admin server. The console (`index.html` and its
//! assets) gets a Content-Security-Policy that admits scripts, styles, images and API calls from
//! its own origin only and forbids framing (its Vite build has no inline script or style, so no
//! `'unsafe-inline'`); the API's JSON gets one that admits nothing at all. Both get `nosniff` and
//! `Referrer-Policy: no-referrer`.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

pub const CONSOLE_CSP: &str =
    "default-src 'self'; frame-ancestors 'none'; object-src 'none'; base-uri 'self'";
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

pub async fn add_security_headers(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let api = path.starts_with("/admin/api/") || path == "/healthz";
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(if api { API_CSP } else { CONSOLE_CSP }),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
