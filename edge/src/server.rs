//! The HTTP server: accepts connections (HTTP/1.1 and HTTP/2 on one port) and runs each request
//! through `proxy::handle`, with every limit a server on the public internet needs: a header-read
//! timeout and size/count limits (slow or oversized request heads), an idle timeout (connections
//! with no request in flight), a send timeout (a client that leaves its answer unread, on its
//! socket or on one HTTP/2 stream), HTTP/2 keepalive and stream limits, and a cap on open
//! connections (past it, new connections wait in the listen backlog). Request bodies have their
//! own idle timeout (`body::with_idle_timeout`).
//!
//! Shutdown drains: readiness turns 503 at once, the listener stays open for the shutdown delay
//! (so load balancers notice and stop sending), then closes; open requests and streams get the
//! grace period to finish.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::Limits;
use crate::proxy;
use crate::snapshot::KeyMemo;
use crate::state::EdgeState;

pub async fn serve(
    listener: TcpListener,
    state: Arc<EdgeState>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let limits = state.limits.clone();
    let builder = Arc::new(builder(&limits));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (closing_tx, closing) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    let mut draining = false;
    // Armed when draining begins.
    let drain_deadline = tokio::time::sleep(Duration::from_secs(365 * 86_400));
    tokio::pin!(drain_deadline);
    loop {
        tokio::select! {
            permit = permits.clone().acquire_owned() => {
                let Ok(permit) = permit else { break };
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = &mut drain_deadline, if draining => break,
                    _ = &mut shutdown, if !draining => {
                        draining = begin_drain(&state, drain_deadline.as_mut());
                        continue;
                    }
                };
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                connections.spawn(connection(
                    stream,
                    state.clone(),
                    builder.clone(),
                    closing.clone(),
                    permit,
                ));
            }
            _ = &mut shutdown, if !draining => {
                draining = begin_drain(&state, drain_deadline.as_mut());
            }
            _ = &mut drain_deadline, if draining => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let open = connections.len();
    if open > 0 {
        tracing::info!(open, "listener closed; waiting for open requests to finish");
    }
    let grace_ends = tokio::time::Instant::now() + limits.shutdown_grace;
    let finished = tokio::time::timeout_at(grace_ends, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            open = connections.len(),
            grace = ?limits.shutdown_grace,
            "requests still open when the shutdown grace ran out"
        );
        connections.abort_all();
        // Cancelled connections drop their requests (which leave their usage records) now.
        while connections.join_next().await.is_some() {}
    }
    // Answers whose clients left are still being read for their usage: until the same deadline
    // they may end; past it they stop where they are. Runs and responses followed read their
    // object once more now. Either way their records are made before the last usage flush.
    state.follow_ups.stop();
    state.drains.finish(grace_ends).await;
    Ok(())
}

/// Readiness goes 503 now; the listener closes once the shutdown delay has passed.
fn begin_drain(state: &EdgeState, deadline: std::pin::Pin<&mut tokio::time::Sleep>) -> bool {
    tracing::info!(delay = ?state.limits.shutdown_delay, "shutting down: readiness is now 503");
    state.start_draining();
    deadline.reset(tokio::time::Instant::now() + state.limits.shutdown_delay);
    true
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.http2_keepalive))
        .keep_alive_timeout(limits.http2_keepalive)
        .max_concurrent_streams(limits.http2_max_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// What a connection's requests tell its idle timer: how many are in flight, and when the last
/// one ended. Plain atomics, so a request never wakes the connection task or touches a timer.
struct Activity {
    in_flight: AtomicUsize,
    /// Milliseconds after `since` at which the last request ended.
    last_end_ms: AtomicU64,
    since: tokio::time::Instant,
}

impl Activity {
    fn ended(&self) {
        let ms = self.since.elapsed().as_millis() as u64;
        self.last_end_ms.store(ms, Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// When the connection goes idle if nothing else happens; `None` while a request is open.
    fn idle_at(&self, idle: Duration) -> Option<tokio::time::Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_end_ms.load(Ordering::Acquire));
        Some(self.since + last + idle)
    }
}

/// One client connection, until the client leaves, it idles past the idle timeout with no
/// request in flight, or the server drains (then open requests finish first).
async fn connection(
    stream: tokio::net::TcpStream,
    state: Arc<EdgeState>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut closing: watch::Receiver<bool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        last_end_ms: AtomicU64::new(0),
        since: tokio::time::Instant::now(),
    });
    let idle = state.limits.idle_timeout;
    let send_timeout = state.limits.client_send_timeout;
    // hyper's header timer starts only once it knows the protocol: a client that sends nothing
    // at all is held to the same deadline from the moment it connects.
    let first_request = tokio::time::sleep(state.limits.header_read_timeout);
    tokio::pin!(first_request);
    let mut requested = false;
    let started = Arc::new(AtomicBool::new(false));
    let sends = Arc::new(StreamSends::new());
    // The connection's last key and its hash: a keep-alive client's key is hashed once.
    let keys = Arc::new(KeyMemo::default());
    let service = {
        let activity = activity.clone();
        let started = started.clone();
        let sends = sends.clone();
        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let state = state.clone();
            let activity = activity.clone();
            let keys = keys.clone();
            // Only HTTP/2 answers are watched (HTTP/1's stalls show on the socket).
            let sends = (request.version() == hyper::Version::HTTP_2).then(|| sends.clone());
            started.store(true, Ordering::Release);
            async move {
                activity.in_flight.fetch_add(1, Ordering::AcqRel);
                let mut response = proxy::handle(state, request, &keys).await;
                activity.ended();
                if let Some(sends) = sends {
                    response = response.map(|body| sends.watch(body));
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let io = SendTimeout::new(TokioIo::new(stream), send_timeout);
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    // Fires at the earliest moment the connection could be idle; on waking it checks what the
    // requests recorded meanwhile and sleeps on if there was activity.
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    // Fires when the HTTP/2 answer that has waited longest for its client's window would have
    // waited the send timeout (at most once per timeout while none waits).
    let send_check = tokio::time::sleep(send_timeout);
    tokio::pin!(send_check);
    let mut shutting = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "client connection ended with an error");
                }
                return;
            }
            _ = &mut first_request, if !requested => {
                if !started.load(Ordering::Acquire) {
                    tracing::debug!("closing a connection that sent no request in time");
                    return;
                }
                requested = true;
            }
            _ = closing.changed(), if !shutting => {
                shutting = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = &mut idle_timer, if !shutting => {
                let now = tokio::time::Instant::now();
                match activity.idle_at(idle) {
                    Some(at) if at <= now => {
                        shutting = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    Some(at) => idle_timer.as_mut().reset(at),
                    None => idle_timer.as_mut().reset(now + idle),
                }
            }
            _ = &mut send_check => {
                let now = tokio::time::Instant::now();
                match sends.stalled_at(send_timeout) {
                    Some(at) if at <= now => {
                        // Dropping the connection resets its streams: the stalled answer's
                        // upstream call is read on for its usage, as when a client leaves.
                        tracing::debug!(
                            limit = ?send_timeout,
                            "closing an HTTP/2 connection: its client let none of an answer through for the send timeout"
                        );
                        return;
                    }
                    Some(at) => send_check.as_mut().reset(at),
                    None => send_check.as_mut().reset(now + send_timeout),
                }
            }
        }
    }
}

/// A client connection whose writes fail once none has made progress for `limit`: a client that
/// stops reading its answer (its receive window shut) would otherwise hold the connection, the
/// upstream call behind it and its buffers for as long as it likes (nginx's `send_timeout`). The
/// timer is armed only while a write waits, so the common path costs one branch per write.
/// HTTP/2 streams a client leaves unread without shutting the socket's window are not seen here:
/// `StreamSends` watches those.
struct SendTimeout<T> {
    io: T,
    limit: Duration,
    /// Made on the first wait, reset on later ones.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    waiting: bool,
}

impl<T> SendTimeout<T> {
    fn new(io: T, limit: Duration) -> Self {
        Self {
            io,
            limit,
            timer: None,
            waiting: false,
        }
    }

    /// Passes a write's result on; while it waits, fails it once `limit` has passed without
    /// progress. Only writes are timed: a socket's flush is ready at once even while its buffer
    /// is full, so it says nothing about the client.
    fn check(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<usize>>,
    ) -> Poll<std::io::Result<usize>> {
        if poll.is_ready() {
            self.waiting = false;
            return poll;
        }
        if !self.waiting {
            self.waiting = true;
            let deadline = tokio::time::Instant::now() + self.limit;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let timer = self.timer.as_mut().expect("armed above");
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client read nothing of its answer for {:?}", self.limit),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for SendTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for SendTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.check(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The send timeout of HTTP/2 answers. A client can keep one stream's flow-control window (or
/// the connection's) shut while its socket stays writable: hyper then stops polling that
/// answer's body and sends nothing, and `SendTimeout` sees no stalled write. So each HTTP/2
/// answer's body records when it handed hyper a data frame that hyper has not come back for
/// (hyper holds a frame until the stream's window has room, hands it to h2 and polls for the
/// next; only the unsent part of the last frame escapes); the connection closes once a frame has
/// waited for the send timeout. Time spent waiting for the upstream does not count: the body is
/// being polled then.
struct StreamSends {
    since: tokio::time::Instant,
    /// One per watched answer still open: 0, or 1 + the milliseconds after `since` at which its
    /// last frame was handed over and not yet followed by another poll.
    waiting: std::sync::Mutex<Vec<std::sync::Weak<AtomicU64>>>,
}

impl StreamSends {
    fn new() -> Self {
        Self {
            since: tokio::time::Instant::now(),
            waiting: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn watch(&self, body: crate::body::EdgeBody) -> crate::body::EdgeBody {
        use http_body::Body;
        if body.is_end_stream() {
            return body;
        }
        let waiting = Arc::new(AtomicU64::new(0));
        let mut answers = self.lock();
        // Ended answers are forgotten before the list would grow, so a busy connection's list
        // stays within twice the answers open at once (`stalled_at` also prunes it).
        if answers.len() == answers.capacity() {
            answers.retain(|w| w.strong_count() > 0);
        }
        answers.push(Arc::downgrade(&waiting));
        drop(answers);
        http_body_util::BodyExt::boxed_unsync(WatchedSend {
            inner: body,
            waiting,
            since: self.since,
        })
    }

    /// When the frame that has waited longest will have waited `limit` (past: it has), `None`
    /// when no answer waits for its client. Forgets the answers that ended.
    fn stalled_at(&self, limit: Duration) -> Option<tokio::time::Instant> {
        let mut answers = self.lock();
        answers.retain(|w| w.strong_count() > 0);
        let oldest = answers
            .iter()
            .filter_map(|w| w.upgrade())
            .map(|w| w.load(Ordering::Acquire))
            .filter(|&at| at > 0)
            .min()?;
        Some(self.since + Duration::from_millis(oldest - 1) + limit)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<std::sync::Weak<AtomicU64>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An HTTP/2 answer's body, telling its `StreamSends` while a frame it handed over waits.
struct WatchedSend {
    inner: crate::body::EdgeBody,
    waiting: Arc<AtomicU64>,
    since: tokio::time::Instant,
}

impl http_body::Body for WatchedSend {
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        // hyper came back for more: the last frame went through.
        this.waiting.store(0, Ordering::Release);
        let poll = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &poll
            && frame.is_data()
        {
            let at = this.since.elapsed().as_millis() as u64 + 1;
            this.waiting.store(at, Ordering::Release);
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Write;
    use std::future::poll_fn;

    /// Writes into `io` until a write waits; true if it then failed with `TimedOut`.
    async fn stalls(io: &mut SendTimeout<TokioIo<tokio::io::DuplexStream>>) -> bool {
        loop {
            match poll_fn(|cx| Pin::new(&mut *io).poll_write(cx, &[0u8; 1024])).await {
                Ok(_) => continue,
                Err(e) => return e.kind() == std::io::ErrorKind::TimedOut,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_answer_waits_only_while_a_frame_it_handed_over_is_not_taken_on() {
        use http_body_util::BodyExt;
        let sends = StreamSends::new();
        let limit = Duration::from_secs(60);
        drop(sends.watch(crate::body::full("")));
        assert!(sends.lock().is_empty(), "an empty answer is not watched");

        let mut body = sends.watch(crate::body::full("answer"));
        assert_eq!(sends.stalled_at(limit), None, "nothing handed over yet");
        tokio::time::advance(Duration::from_secs(5)).await;
        let handed = tokio::time::Instant::now();
        assert!(body.frame().await.unwrap().unwrap().is_data());
        assert_eq!(sends.stalled_at(limit), Some(handed + limit));
        // hyper comes back for more (here: the end): the frame went through.
        assert!(body.frame().await.is_none());
        assert_eq!(sends.stalled_at(limit), None);
        drop(body);
        sends.stalled_at(limit);
        assert!(sends.lock().is_empty(), "an answer that ended is forgotten");

        // Many answers, one after the other, between two checks: the list does not grow with them.
        let open = sends.watch(crate::body::full("still open"));
        for _ in 0..1000 {
            drop(sends.watch(crate::body::full("answer")));
        }
        assert!(sends.lock().len() <= 8, "{} entries", sends.lock().len());
        drop(open);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_waits_past_the_limit_fails_and_a_flush_is_no_progress() {
        let (near, mut far) = tokio::io::duplex(4096);
        let mut io = SendTimeout::new(TokioIo::new(near), Duration::from_secs(60));
        // The far end reads nothing: the buffer fills, the write waits, and with time paused the
        // runtime moves the clock to the timer: it fails once, after the limit.
        let started = tokio::time::Instant::now();
        assert!(stalls(&mut io).await);
        assert_eq!(started.elapsed(), Duration::from_secs(60));

        // Progress restarts the count; a flush (ready at once) does not.
        let mut drained = vec![0u8; 4096];
        tokio::io::AsyncReadExt::read(&mut far, &mut drained)
            .await
            .unwrap();
        while poll_fn(|cx| Poll::Ready(Pin::new(&mut io).poll_write(cx, &[0u8; 1024])))
            .await
            .is_ready()
        {}
        let restarted = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(30)).await;
        let flushed = poll_fn(|cx| Poll::Ready(Pin::new(&mut io).poll_flush(cx))).await;
        assert!(matches!(flushed, Poll::Ready(Ok(()))));
        assert!(stalls(&mut io).await);
        assert_eq!(restarted.elapsed(), Duration::from_secs(60));
    }
}
