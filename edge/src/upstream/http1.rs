//! The edge's pool of HTTP/1.1 upstream connections, each driven by the call that uses it.
//!
//! hyper_util's pooled client runs every upstream connection as a task of its own: a call hands
//! its request to that task through a channel, is woken when the answer's head arrives, and each
//! piece of the answer's body crosses another channel and another wake-up. Here hyper's HTTP/1
//! codec is polled by whoever waits on it: the call while it waits for the answer's head, then
//! the answer's body as the client's connection reads it. A connection whose answer was read to
//! its end goes back to an idle list for the next call to the same origin; one whose answer was
//! not (the client left, a timeout) is closed, as HTTP/1.1 cannot abandon an answer midway.
//!
//! Upstream calls are HTTP/1.1 (TLS offers no ALPN, so an upstream answers in HTTP/1.1), as
//! nginx's are: one call per connection at a time, connections reused.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tower_service::Service;

use crate::body::{BoxError, EdgeBody};
use crate::maps::FastMap;

type Io = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;

struct Conn {
    sender: http1::SendRequest<EdgeBody>,
    conn: http1::Connection<Io, EdgeBody>,
}

impl Conn {
    /// Drives the connection; false once it has ended (closed by the upstream, or failed).
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        match Pin::new(&mut self.conn).poll_without_shutdown(cx) {
            Poll::Pending => !self.sender.is_closed(),
            Poll::Ready(Ok(())) => false,
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "upstream connection ended");
                false
            }
        }
    }

    /// Whether a connection that sat idle can take a call: one the upstream closed meanwhile
    /// ends when polled.
    fn still_open(&mut self) -> bool {
        self.drive(&mut Context::from_waker(Waker::noop()))
    }
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

#[derive(Default)]
struct IdleLists {
    by_origin: FastMap<Origin, Vec<Idle>>,
    last_sweep: Option<Instant>,
}

/// Where a connection goes. `host` and `host:443` are two origins here, each with its own idle
/// list: harmless, and cheaper than spelling every call's origin out.
type Origin = (Scheme, Authority);

/// Idle connections by origin.
pub struct Http1Pool {
    connector: HttpsConnector<HttpConnector>,
    idle: Mutex<IdleLists>,
    idle_timeout: Duration,
    max_idle_per_origin: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum Http1Error {
    #[error("could not connect: {0}")]
    Connect(BoxError),
    #[error("request failed: {0}")]
    Request(#[source] hyper::Error),
    #[error("the connection closed before the answer")]
    Closed,
}

impl Http1Pool {
    /// `connector` makes plain and TLS connections; a connection idle for longer than
    /// `idle_timeout` is not used again, and at most `max_idle_per_origin` wait per origin.
    pub fn new(
        connector: HttpsConnector<HttpConnector>,
        idle_timeout: Duration,
        max_idle_per_origin: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            connector,
            idle: Mutex::new(IdleLists::default()),
            idle_timeout,
            max_idle_per_origin,
        })
    }

    /// Sends `request` (absolute URI) on an idle connection to its origin, or a new one. A request
    /// that an idle connection could not take (the upstream had closed it) is sent again on
    /// another; one that may have reached the upstream never is.
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<EdgeBody>,
    ) -> Result<Response<PooledBody>, Http1Error> {
        let uri = request.uri().clone();
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(Http1Error::Connect(
                "the upstream address has no host".into(),
            ));
        };
        let origin = (scheme.clone(), authority.clone());
        request
            .headers_mut()
            .insert(http::header::HOST, host_header(scheme, authority)?);
        *request.uri_mut() = match uri.path_and_query() {
            Some(path) => Uri::from(path.clone()),
            None => Uri::from_static("/"),
        };
        loop {
            let (mut conn, reused) = match self.take_idle(&origin) {
                Some(conn) => (conn, true),
                // Boxed: a connection's handshake state is large, and most calls reuse one.
                None => (Box::pin(self.connect(uri.clone())).await?, false),
            };
            let mut sent = std::pin::pin!(conn.sender.try_send_request(request));
            let answer = std::future::poll_fn(|cx| {
                if let Poll::Ready(answer) = sent.as_mut().poll(cx) {
                    return Poll::Ready(Some(answer));
                }
                if conn.drive(cx) {
                    return sent.as_mut().poll(cx).map(Some);
                }
                // A connection that ends hands the call its error; one that would not, fails it.
                match sent.as_mut().poll(cx) {
                    Poll::Ready(answer) => Poll::Ready(Some(answer)),
                    Poll::Pending => Poll::Ready(None),
                }
            })
            .await;
            match answer {
                Some(Ok(response)) => {
                    let (parts, body) = response.into_parts();
                    let body = PooledBody {
                        body,
                        conn: Some(conn),
                        pool: self.clone(),
                        origin: Some(origin),
                        ended: false,
                    };
                    return Ok(Response::from_parts(parts, body));
                }
                Some(Err(mut e)) => match e.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(Http1Error::Request(e.into_error())),
                },
                None => return Err(Http1Error::Closed),
            }
        }
    }

    fn take_idle(&self, origin: &Origin) -> Option<Box<Conn>> {
        loop {
            let Idle { mut conn, since } =
                self.idle.lock().unwrap().by_origin.get_mut(origin)?.pop()?;
            if since.elapsed() <= self.idle_timeout && conn.still_open() {
                return Some(conn);
            }
        }
    }

    fn put_idle(&self, origin: Origin, conn: Box<Conn>) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap();
        // Now and then, connections that idled too long go, those of origins no longer called too.
        if idle
            .last_sweep
            .is_none_or(|at| now.duration_since(at) > self.idle_timeout)
        {
            idle.last_sweep = Some(now);
            idle.by_origin.retain(|_, list| {
                list.retain(|e| now.duration_since(e.since) <= self.idle_timeout);
                !list.is_empty()
            });
        }
        let list = idle.by_origin.entry(origin).or_default();
        if list.len() < self.max_idle_per_origin {
            list.push(Idle { conn, since: now });
        }
    }

    async fn connect(&self, uri: Uri) -> Result<Box<Conn>, Http1Error> {
        let io = self
            .connector
            .clone()
            .call(uri)
            .await
            .map_err(Http1Error::Connect)?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| Http1Error::Connect(e.into()))?;
        Ok(Box::new(Conn { sender, conn }))
    }

    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .unwrap()
            .by_origin
            .values()
            .map(Vec::len)
            .sum()
    }
}

/// The Host header for an upstream: its host, and its port if that is not the scheme's own
/// (never the address's user information).
fn host_header(scheme: &Scheme, authority: &Authority) -> Result<HeaderValue, Http1Error> {
    let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    let host = match authority.port_u16() {
        // `host:port` as the authority spells it, when it has no user information.
        Some(port) if port != default_port => match authority.as_str().rsplit_once('@') {
            None => HeaderValue::from_str(authority.as_str()),
            Some((_, host_and_port)) => HeaderValue::from_str(host_and_port),
        },
        _ => HeaderValue::from_str(authority.host()),
    };
    host.map_err(|_| Http1Error::Connect("the upstream host is not a valid Host header".into()))
}

/// An upstream answer's body. Reading it drives its connection, which goes back to the pool once
/// the body has ended (and is closed if the body is dropped before).
pub struct PooledBody {
    body: Incoming,
    // Boxed: the answer moves through several futures; the connection's buffers need not.
    conn: Option<Box<Conn>>,
    pool: Arc<Http1Pool>,
    origin: Option<Origin>,
    ended: bool,
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        // The body first: the connection hands a frame only to a body that has asked for one.
        let mut frame = Pin::new(&mut this.body).poll_frame(cx);
        if frame.is_pending()
            && let Some(conn) = &mut this.conn
        {
            if !conn.drive(cx) {
                this.conn = None;
            }
            frame = Pin::new(&mut this.body).poll_frame(cx);
        }
        match frame {
            Poll::Ready(None) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => Poll::Ready(Some(frame.map_err(Into::into))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if !(self.ended || self.body.is_end_stream()) {
            return;
        }
        if let Some(mut conn) = self.conn.take() {
            // Polled once more, the connection takes in that the answer is over; it is reused only
            // if it has nothing left to do (a request body still being sent, say).
            if conn.still_open()
                && conn.sender.is_ready()
                && let Some(origin) = self.origin.take()
            {
                self.pool.put_idle(origin, conn);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::body::full;

    fn pool_with(roots: rustls::RootCertStore, idle_timeout: Duration) -> Arc<Http1Pool> {
        let client =
            crate::upstream::UpstreamClient::with_roots(Duration::from_secs(5), roots).unwrap();
        Http1Pool::new(client.pool.connector.clone(), idle_timeout, 8)
    }

    fn pool() -> Arc<Http1Pool> {
        pool_with(rustls::RootCertStore::empty(), Duration::from_secs(90))
    }

    fn post(url: &str, body: &'static str) -> Request<EdgeBody> {
        Request::post(url).body(full(body)).unwrap()
    }

    async fn read(response: Response<PooledBody>) -> (http::StatusCode, Bytes) {
        let status = response.status();
        (
            status,
            response.into_body().collect().await.unwrap().to_bytes(),
        )
    }

    /// An upstream on loopback answering each call with `size` bytes and what it saw of the
    /// call (its Host header); counts the connections it accepted.
    async fn upstream(size: usize) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(TokioIo::new(stream), size));
            }
        });
        (url, accepted)
    }

    async fn serve<I>(io: I, size: usize)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let service = hyper::service::service_fn(move |request: Request<Incoming>| async move {
            let host = request.headers()[http::header::HOST].clone();
            let _ = request.into_body().collect().await;
            let mut body = vec![b'x'; size];
            body[..host.len().min(size)].copy_from_slice(&host.as_bytes()[..host.len().min(size)]);
            Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                Bytes::from(body),
            )))
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .await;
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_answer_was_read_to_the_end() {
        let (url, accepted) = upstream(64).await;
        let pool = pool();
        for _ in 0..3 {
            let (status, body) = read(
                pool.send(post(&format!("{url}/a?b=c"), "{}"))
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(status, 200);
            assert!(
                body.starts_with(url.trim_start_matches("http://").as_bytes()),
                "Host: the upstream's address"
            );
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn an_answer_dropped_before_its_end_closes_its_connection() {
        let (url, accepted) = upstream(4 << 20).await;
        let pool = pool();
        let response = pool.send(post(&url, "{}")).await.unwrap();
        let mut body = response.into_body();
        body.frame().await.unwrap().unwrap();
        drop(body);
        assert_eq!(pool.idle_count(), 0);
        let (status, body) = read(pool.send(post(&url, "{}")).await.unwrap()).await;
        assert_eq!((status, body.len()), (http::StatusCode::OK, 4 << 20));
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(
            pool.idle_count(),
            1,
            "an answer read whole leaves its connection"
        );
    }

    #[tokio::test]
    async fn a_connection_still_sending_its_request_body_is_not_reused() {
        // The upstream answers as soon as it has the head, and never reads the body.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    read_head(&mut stream).await;
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    stream.write_all(answer).await.unwrap();
                    std::future::pending::<()>().await;
                });
            }
        });
        let pool = pool();
        // A request body that has not ended (a client still uploading).
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        tx.send(Ok(Frame::data(Bytes::from_static(b"{"))))
            .await
            .unwrap();
        let body = crate::body::stream(http_body_util::StreamBody::new(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ));
        let request = Request::post(&url).body(body).unwrap();
        let (status, answer) = read(pool.send(request).await.unwrap()).await;
        assert_eq!((status, &answer[..]), (http::StatusCode::OK, &b"ok"[..]));
        assert_eq!(
            pool.idle_count(),
            0,
            "the next call would wait behind the upload"
        );
        drop(tx);
    }

    #[tokio::test]
    async fn no_more_connections_idle_per_origin_than_the_cap() {
        let (url, accepted) = upstream(8).await;
        let pool = pool();
        // Ten calls at once, their answers unread: ten connections.
        let answers =
            futures_util::future::join_all((0..10).map(|_| pool.send(post(&url, "{}")))).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 10);
        for answer in answers {
            read(answer.unwrap()).await;
        }
        assert_eq!(pool.idle_count(), 8, "the cap (8 in these tests)");
    }

    #[tokio::test]
    async fn an_idle_connection_past_the_idle_timeout_is_not_used() {
        let (url, accepted) = upstream(8).await;
        let pool = pool_with(rustls::RootCertStore::empty(), Duration::from_millis(500));
        read(pool.send(post(&url, "{}")).await.unwrap()).await;
        read(pool.send(post(&url, "{}")).await.unwrap()).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "reused within the idle timeout"
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
        read(pool.send(post(&url, "{}")).await.unwrap()).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// An upstream that answers the first call on each connection, then closes it: once the
    /// returned `Notify` is notified, or (`read_second`) once it has read a second call, which it
    /// leaves unanswered. The receiver learns when a connection has been closed.
    async fn closing_upstream(
        read_second: bool,
    ) -> (
        String,
        Arc<AtomicUsize>,
        Arc<tokio::sync::Notify>,
        tokio::sync::mpsc::UnboundedReceiver<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let close = Arc::new(tokio::sync::Notify::new());
        let close_now = close.clone();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let (closed, closed_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let closed = closed.clone();
                let close_now = close_now.clone();
                tokio::spawn(async move {
                    read_head(&mut stream).await;
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await
                        .unwrap();
                    if read_second {
                        read_head(&mut stream).await;
                    } else {
                        close_now.notified().await;
                    }
                    drop(stream);
                    let _ = closed.send(());
                });
            }
        });
        (url, accepted, close, closed_rx)
    }

    async fn read_head(stream: &mut tokio::net::TcpStream) {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the call ended before its head");
            seen.extend_from_slice(&buf[..n]);
        }
        // The call's body ("{}") came with its head or comes next; it is small either way.
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_while_it_idled_is_replaced_without_failing_the_call()
    {
        let (url, accepted, close, mut closed) = closing_upstream(false).await;
        let pool = pool();
        let (status, _) = read(pool.send(post(&url, "{}")).await.unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(pool.idle_count(), 1, "idle before the upstream closes it");
        close.notify_one();
        closed.recv().await.unwrap();
        // Time for the runtime to take in the upstream's FIN.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (status, body) = read(pool.send(post(&url, "{}")).await.unwrap()).await;
        assert_eq!((status, &body[..]), (http::StatusCode::OK, &b"ok"[..]));
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_call_that_may_have_reached_the_upstream_is_never_sent_twice() {
        let (url, accepted, _, mut closed) = closing_upstream(true).await;
        let pool = pool();
        read(pool.send(post(&url, "{}")).await.unwrap()).await;
        let second = pool.send(post(&url, "{}")).await;
        closed.recv().await.unwrap();
        assert!(
            matches!(second, Err(Http1Error::Request(_))),
            "the call failed, not replayed"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "no second connection");
    }

    #[test]
    fn the_host_header_names_the_port_only_when_it_is_not_the_schemes_own_and_never_a_user() {
        let host = |uri: &str| {
            let uri: Uri = uri.parse().unwrap();
            host_header(uri.scheme().unwrap(), uri.authority().unwrap()).unwrap()
        };
        assert_eq!(host("https://aoai.example.com/x"), "aoai.example.com");
        assert_eq!(host("https://aoai.example.com:443/x"), "aoai.example.com");
        assert_eq!(host("http://127.0.0.1:80/x"), "127.0.0.1");
        assert_eq!(host("https://127.0.0.1:8443/x"), "127.0.0.1:8443");
        assert_eq!(host("http://127.0.0.1:443/x"), "127.0.0.1:443");
        assert_eq!(
            host("https://user:secret@aoai.example.com:8443/x"),
            "aoai.example.com:8443"
        );
        assert_eq!(
            host("https://user:secret@aoai.example.com/x"),
            "aoai.example.com"
        );
    }

    #[tokio::test]
    async fn a_tls_upstream_is_called_over_http1_and_its_connection_reused() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let cert = CertificateDer::from_pem_slice(include_bytes!("testdata/loopback.crt")).unwrap();
        let key = PrivateKeyDer::from_pem_slice(include_bytes!("testdata/loopback.key")).unwrap();
        let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
        // Were h2 offered, this server would choose it.
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (alpn_tx, mut alpn) = tokio::sync::mpsc::unbounded_channel();
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let tls = acceptor.accept(stream).await.unwrap();
                alpn_tx
                    .send(tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
                    .unwrap();
                tokio::spawn(serve(TokioIo::new(tls), 64));
            }
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let pool = pool_with(roots, Duration::from_secs(90));
        for _ in 0..2 {
            let (status, body) = read(
                pool.send(post(&format!("https://localhost:{port}/x"), "{}"))
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(status, 200);
            assert!(body.starts_with(format!("localhost:{port}").as_bytes()));
        }
        assert_eq!(
            alpn.recv().await.unwrap(),
            None,
            "no protocol negotiated: HTTP/1.1"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        // A certificate that is not trusted fails the call as a connect error.
        let untrusted = pool_with(rustls::RootCertStore::empty(), Duration::from_secs(90));
        let failed = untrusted
            .send(post(&format!("https://localhost:{port}/x"), "{}"))
            .await;
        assert!(matches!(failed, Err(Http1Error::Connect(_))));
    }
}
