//! The admin HTTP server: accepts connections (HTTP/1.1 and HTTP/2 on one port) and serves the
//! admin router on each, within limits a client cannot outwait (`config::HttpLimits`):
//!
//! - a request head must arrive within the header timeout (hyper enforces it only with a timer),
//!   and is refused with 431 beyond the header size or count;
//! - a body must arrive whole within the body timeout and under the size limit (`body`);
//! - a connection with no request in flight for the idle timeout is closed;
//! - an HTTP/2 peer must answer keepalive pings and may open only so many streams at once;
//! - at most `max_connections` are open: further clients wait in the listen backlog until one closes.
//!
//! On shutdown it stops accepting, asks every connection to finish its requests, and waits for
//! them a bounded time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use super::body::LimitedBody;
use crate::config::HttpLimits;

/// How long a closing connection may take to finish what it has in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/1.1 cannot read a request head with less buffer than this (hyper's minimum).
const MIN_HTTP1_BUFFER: usize = 8192;

pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let builder = Arc::new(connection_builder(&limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let (closing_tx, closing_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit?,
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin server: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            builder.clone(),
            stream,
            router.clone(),
            limits.clone(),
            closing_rx.clone(),
            permit,
        ));
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Every connection holds a slot until it ends: all slots free means all connections closed.
    let all = slots.acquire_many(limits.max_connections);
    if tokio::time::timeout(DRAIN_TIMEOUT + Duration::from_secs(1), all)
        .await
        .is_err()
    {
        tracing::warn!("admin server: some connections were still open after shutdown began");
    }
    Ok(())
}

fn connection_builder(limits: &HttpLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers as usize)
        .max_buf_size((limits.max_header_bytes as usize).max(MIN_HTTP1_BUFFER));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.http2_keepalive)
        .keep_alive_timeout(limits.http2_keepalive)
        .max_concurrent_streams(limits.http2_max_streams)
        .max_header_list_size(limits.max_header_bytes);
    builder
}

async fn serve_connection(
    builder: Arc<auto::Builder<TokioExecutor>>,
    stream: TcpStream,
    router: Router,
    limits: HttpLimits,
    mut closing: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(RequestActivity::new());
    let service = {
        let activity = activity.clone();
        service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = activity.begin();
            let request = request.map(|body| {
                axum::body::Body::new(LimitedBody::new(
                    body,
                    limits.max_body_bytes,
                    limits.body_read_timeout,
                ))
            });
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await;
                drop(in_flight);
                response
            }
        })
    };
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let idle = activity.idle_for(limits.idle_timeout);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
            return;
        }
        _ = closing.wait_for(|closing| *closing) => {}
        _ = idle => tracing::debug!("admin connection idle: closing it"),
    }
    connection.as_mut().graceful_shutdown();
    if tokio::time::timeout(DRAIN_TIMEOUT, connection)
        .await
        .is_err()
    {
        tracing::debug!("admin connection did not finish in time after it was asked to close");
    }
}

/// When a connection last started or finished a request, and how many it has in flight.
struct RequestActivity {
    opened: Instant,
    /// Milliseconds after `opened`.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

/// Counts a request in flight until dropped.
struct InFlight(Arc<RequestActivity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl RequestActivity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::AcqRel);
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(self.clone())
    }

    /// Resolves once no request has been in flight for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            if self.in_flight.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(idle).await;
                continue;
            }
            let last = self.opened + Duration::from_millis(self.last_ms.load(Ordering::Acquire));
            if Instant::now() >= last + idle {
                return;
            }
            tokio::time::sleep_until(last + idle).await;
        }
    }
}
