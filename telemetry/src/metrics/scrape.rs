//! `GET /metrics` on its own listener (`AIPROXY_METRICS_ADDR`), apart from the traffic ports so
//! it can stay private to the scraper. Anything else answers 404 (or 405 on `/metrics`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

use super::prometheus::{CONTENT_TYPE, PrometheusReader};

/// A scraper that sends nothing is not waited for long.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The listener's task; stopped by [`ScrapeServer::stop`] (or when the runtime ends).
pub(crate) struct ScrapeServer {
    pub(crate) addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl ScrapeServer {
    /// Binds `addr` now (so a taken port stops the process at start-up) and serves in the
    /// background. Call inside the Tokio runtime.
    pub(crate) fn start(addr: SocketAddr, reader: PrometheusReader) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept(listener, reader));
        Ok(Self { addr, task })
    }

    pub(crate) fn stop(&self) {
        self.task.abort();
    }
}

async fn accept(listener: tokio::net::TcpListener, reader: PrometheusReader) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let reader = reader.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let reply = answer(request.method(), request.uri().path(), &reader);
                async move { Ok::<_, Infallible>(reply) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(method: &Method, path: &str, reader: &PrometheusReader) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (method, path) {
        (&Method::GET, "/metrics") => (StatusCode::OK, CONTENT_TYPE, reader.render()),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "GET only\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "metrics are at /metrics\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}
