//! End to end, with faults: the control plane is killed (SIGKILL) and restarted under a serving
//! edge; the path to it goes silent; an edge stops answering; an edge with the wrong credential
//! is refused.

use std::time::Duration;

use aiproxy_loadtest::mock::MockConfig;
use aiproxy_loadtest::relay::Relay;
use aiproxy_loadtest::stack::{ControlPlane, ControlPlaneOptions, Edge, Scenario, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn chat_body() -> Value {
    json!({"messages": [{"role": "user", "content": "Hi"}]})
}

/// The status of a chat call through `edge` with `key`; `None` when the edge cannot be reached.
async fn chat_answer(edge: &Edge, key: &str) -> Option<StatusCode> {
    edge.try_chat(key, "gpt-4o", &chat_body())
        .await
        .ok()
        .map(|r| r.status())
}

#[tokio::test(flavor = "multi_thread")]
async fn edge_serves_through_a_control_plane_crash_and_resumes_from_its_version() {
    let mut s = Scenario::start(MockConfig::default()).await;
    assert_eq!(
        s.call("gpt-4o", "chat/completions", chat_body())
            .await
            .status(),
        StatusCode::OK
    );
    s.admin.wait_edges_acked(1, Duration::from_secs(5)).await;
    let (_, before) = s.admin.get("/edges").await;
    let held = before["catalog_version"].as_u64().unwrap();

    s.cp.kill().await;
    assert!(
        reqwest::get(format!("http://{}/healthz", s.cp.admin_addr))
            .await
            .is_err(),
        "the control plane is really gone"
    );
    for _ in 0..20 {
        assert_eq!(
            s.call("gpt-4o", "chat/completions", chat_body())
                .await
                .status(),
            StatusCode::OK
        );
    }
    let ready = reqwest::get(format!("{}/readyz", s.edge.url()))
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        StatusCode::OK,
        "the last snapshot keeps the edge ready"
    );

    s.cp.restart().await;
    // A change made after the restart reaches the edge over the re-established stream.
    let key = s.admin.add_attendee(&s.event_id, "after-restart").await;
    eventually(
        "the edge never picked up the change made after the restart",
        Duration::from_secs(20),
        || async { chat_answer(&s.edge, &key).await == Some(StatusCode::OK) },
    )
    .await;
    let (_, after) = s.admin.get("/edges").await;
    let edge = &after["edges"][0];
    assert_eq!(
        edge["hello_version"].as_u64(),
        Some(held),
        "the edge resumed from the version it held: {after}"
    );
    assert_eq!(
        s.call("gpt-4o", "chat/completions", chat_body())
            .await
            .status(),
        StatusCode::OK
    );
}

/// The path to the control plane goes silent (a NAT or load balancer forgets the connection and
/// drops its packets without a reset): the Sync stream's HTTP/2 keepalive notices, the edge
/// connects again and the changes made meanwhile arrive. Without the keepalive the edge would wait
/// on the dead stream for good, serving a catalog that no longer follows the control plane.
#[tokio::test(flavor = "multi_thread")]
async fn an_edge_whose_control_plane_path_goes_silent_connects_again() {
    let s = Scenario::start(MockConfig::default()).await;
    let relay = Relay::start(s.cp.grpc_addr).await.unwrap();
    let through_relay = format!("http://{}", relay.addr());
    let edge = Edge::start_with_env(
        &s.cp,
        "",
        &[("AIPROXY_CONTROL_PLANE_URL", through_relay.as_str())],
    )
    .await;
    s.admin.wait_edges_acked(2, Duration::from_secs(10)).await;
    let connections = relay.accepted();
    assert!(connections >= 1, "the edge syncs through the relay");

    relay.silence_open_connections();
    let silenced = std::time::Instant::now();
    let key = s.admin.add_attendee(&s.event_id, "after-silence").await;
    // The edge connected directly gets the change; the silenced one does not.
    eventually(
        "the directly connected edge never got the new attendee",
        Duration::from_secs(10),
        || async { chat_answer(&s.edge, &key).await == Some(StatusCode::OK) },
    )
    .await;
    assert_ne!(
        chat_answer(&edge, &key).await,
        Some(StatusCode::OK),
        "the silenced path still carried the change"
    );
    eventually(
        "the edge never noticed its silent control-plane connection",
        Duration::from_secs(60),
        || async { chat_answer(&edge, &key).await == Some(StatusCode::OK) },
    )
    .await;
    assert!(
        relay.accepted() > connections,
        "the change came over a new connection"
    );
    println!(
        "[resilience] a silent control-plane path noticed and replaced after {:.1} s",
        silenced.elapsed().as_secs_f64()
    );
}

/// The control plane's side of the keepalive: an edge that stops answering (its process
/// stopped, as a frozen VM or a host gone dark, while its kernel still holds the connection open)
/// is no longer counted as connected once it misses the HTTP/2 pings (20 s, then 10 s to answer),
/// while an edge that answers stays connected. Without the server's keepalive the stream of a
/// stopped edge stays open and the edge listed as connected for as long as TCP keeps it.
#[tokio::test(flavor = "multi_thread")]
async fn the_control_plane_lets_go_of_an_edge_that_stops_answering() {
    let s = Scenario::start(MockConfig::default()).await;
    let stopped_id = "edge-to-be-stopped";
    let edge = Edge::start_with_env(&s.cp, "", &[("AIPROXY_EDGE_ID", stopped_id)]).await;
    s.admin.wait_edges_acked(2, Duration::from_secs(10)).await;
    let connected = |edges: &Value, id: &str| -> Option<bool> {
        edges["edges"]
            .as_array()?
            .iter()
            .find(|e| e["edge_id"] == id)
            .and_then(|e| e["connected"].as_bool())
    };
    let (_, edges) = s.admin.get("/edges").await;
    assert_eq!(connected(&edges, stopped_id), Some(true), "{edges}");

    let pid = edge.pid().expect("the edge runs");
    aiproxy_loadtest::process::signal(pid, "STOP");
    let stopped = std::time::Instant::now();
    eventually(
        "the control plane still counts the stopped edge as connected",
        Duration::from_secs(60),
        || async {
            let (_, edges) = s.admin.get("/edges").await;
            connected(&edges, stopped_id) == Some(false)
        },
    )
    .await;
    let noticed = stopped.elapsed();
    aiproxy_loadtest::process::signal(pid, "CONT");
    let (_, edges) = s.admin.get("/edges").await;
    let others = edges["edges"].as_array().unwrap().iter();
    assert!(
        others
            .filter(|e| e["edge_id"] != stopped_id)
            .all(|e| e["connected"] == true),
        "the edge that answers stays connected: {edges}"
    );
    assert!(
        noticed >= Duration::from_secs(20),
        "let go before a ping could be missed: {noticed:?}"
    );
    println!(
        "[resilience] a stopped edge let go of after {:.1} s",
        noticed.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edge_with_the_wrong_token_gets_no_catalog() {
    let s = Scenario::start(MockConfig::default()).await;
    let intruder = Edge::start_with_token(&s.cp, "", "edg_wrong_token", false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ready = reqwest::get(format!("{}/readyz", intruder.url()))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Readiness says why the stream keeps failing, not only that the edge is not ready.
    let readiness: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(readiness["sync"]["connected"], false, "{readiness}");
    assert!(
        readiness["sync"]["failures_in_a_row"].as_u64() >= Some(1),
        "{readiness}"
    );
    assert!(
        readiness["sync"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid edge token")),
        "{readiness}"
    );
    assert_eq!(
        chat_answer(&intruder, &s.key).await,
        Some(StatusCode::SERVICE_UNAVAILABLE)
    );
    let log = intruder.log();
    assert!(
        log.contains("invalid edge token"),
        "the edge logs why it was refused: {log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edge_restarted_while_the_control_plane_is_down_serves_its_stored_snapshot() {
    let mut s = Scenario::start(MockConfig::default()).await;
    let state = aiproxy_loadtest::stack::ScratchDir::new("edge-state");
    let dir = state.path().to_string_lossy().into_owned();
    let mut first = Edge::start_with_env(&s.cp, "", &[("AIPROXY_EDGE_STATE_DIR", &dir)]).await;
    s.admin.wait_edges_acked(2, Duration::from_secs(5)).await;
    first.kill().await;
    s.cp.kill().await;

    // No control plane: the new edge is ready from its stored snapshot and serves.
    let second = Edge::start_with_env(&s.cp, "", &[("AIPROXY_EDGE_STATE_DIR", &dir)]).await;
    assert_eq!(chat_answer(&second, &s.key).await, Some(StatusCode::OK));
    assert!(
        second.log().contains("last-known-good snapshot from disk"),
        "{}",
        second.log()
    );
    let stored = std::fs::read(state.path().join("snapshot.bin")).unwrap();
    assert!(
        !stored.windows(10).any(|w| w == b"upstream-k"),
        "the stored snapshot is sealed"
    );
}

/// `AIPROXY_IDLE_TIMEOUT_SECS`: a keep-alive connection stays open while requests keep coming
/// (each one restarts the count) and is closed once none has been in flight for the timeout.
/// The header-read timeout is set far above it, so only the idle timer can close it.
#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed_and_busy_ones_are_not() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Scenario::start(MockConfig::default()).await;
    let edge = Edge::start_with_env(
        &s.cp,
        "",
        &[
            ("AIPROXY_IDLE_TIMEOUT_SECS", "1"),
            ("AIPROXY_HEADER_READ_TIMEOUT_MS", "60000"),
        ],
    )
    .await;
    let mut socket = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", edge.addr);
    let started = std::time::Instant::now();
    // Six requests 400 ms apart: 2.4 s in all, longer than the timeout, on the one connection.
    for i in 0..6 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(
            answer[..n].starts_with(b"HTTP/1.1 200"),
            "request {i} on the kept connection: {}",
            String::from_utf8_lossy(&answer[..n])
        );
    }
    assert!(started.elapsed() > Duration::from_secs(2));
    let idle_since = std::time::Instant::now();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut rest))
        .await
        .expect("the idle connection was closed within 5 s")
        .unwrap();
    let took = idle_since.elapsed();
    assert_eq!(n, 0, "{}", String::from_utf8_lossy(&rest));
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "closed {took:?} after the last request (timeout 1 s)"
    );
}

/// The raw request for an embeddings call with `inputs` inputs: its answer is about 75 bytes per
/// input, far more than the socket buffers between the edge and a client that does not read.
fn big_embeddings_request(edge: &Edge, key: &str, inputs: usize) -> Vec<u8> {
    let body = json!({"input": vec!["a"; inputs]}).to_string();
    let mut request = format!(
        "POST /api/v1/openai/deployments/gpt-4o/embeddings?api-version={} HTTP/1.1\r\nHost: {}\r\n\
         api-key: {key}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        aiproxy_loadtest::stack::API_VERSION,
        edge.addr,
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body.as_bytes());
    request
}

/// Reads an HTTP/1.1 answer with a `content-length` from `socket`, pausing `pause` after every
/// `piece` bytes, at most `pauses` times; returns the head, how many body bytes came before the
/// end (all of them, or EOF or a reset first) and the content length.
async fn read_answer(
    socket: &mut tokio::net::TcpStream,
    piece: usize,
    pause: Duration,
    pauses: usize,
) -> (String, usize, usize) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut head: Option<(String, usize, usize)> = None;
    let mut pacing = Pacing::new(piece, pause, pauses);
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(20), socket.read(&mut buffer)).await
        {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => 0,
            Err(_) => panic!("the answer neither came nor ended within 20 s"),
        };
        match &mut head {
            None => {
                got.extend_from_slice(&buffer[..n]);
                if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    let text = String::from_utf8_lossy(&got[..end]).to_string();
                    let length = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .expect("a content-length");
                    head = Some((text, got.len() - end - 4, length));
                } else if n == 0 {
                    return (String::from_utf8_lossy(&got).to_string(), 0, 0);
                }
            }
            Some((_, body, _)) => *body += n,
        }
        if let Some((text, body, length)) = &head
            && (n == 0 || body >= length)
        {
            return (text.clone(), *body, *length);
        }
        pacing.read(n).await;
    }
}

/// A slow reader's pace: a pause of `pause` after every `piece` bytes, at most `pauses` times.
struct Pacing {
    piece: usize,
    pause: Duration,
    pauses: usize,
    since_pause: usize,
}

impl Pacing {
    fn new(piece: usize, pause: Duration, pauses: usize) -> Self {
        Self {
            piece,
            pause,
            pauses,
            since_pause: 0,
        }
    }

    /// `n` more bytes were read: pauses if a piece is complete.
    async fn read(&mut self, n: usize) {
        self.since_pause += n;
        if self.since_pause >= self.piece && self.pauses > 0 {
            self.since_pause = 0;
            self.pauses -= 1;
            tokio::time::sleep(self.pause).await;
        }
    }
}

/// `AIPROXY_CLIENT_SEND_TIMEOUT_SECS`: a client that stops reading its answer is cut off once
/// nothing could be written to it for the timeout; a slow client that keeps reading is not. The
/// cut-off answer is still metered whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stops_reading_its_answer_is_cut_off_and_a_slow_reader_is_not() {
    use tokio::io::AsyncWriteExt;
    let s = Scenario::start(MockConfig::default()).await;
    let edge = Edge::start_with_env(&s.cp, "", &[("AIPROXY_CLIENT_SEND_TIMEOUT_SECS", "1")]).await;
    let request = big_embeddings_request(&edge, &s.key, 400_000);
    let connect = || async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(16 << 10).unwrap();
        socket.connect(edge.addr).await.unwrap()
    };

    // Stops reading after the first piece for 4 s (the timeout is 1 s), then reads on.
    let mut stalled = connect().await;
    stalled.write_all(&request).await.unwrap();
    let (head, body, length) = read_answer(&mut stalled, 64 << 10, Duration::from_secs(4), 1).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(length > 24 << 20, "the answer is {length} bytes");
    assert!(
        body < length,
        "the whole answer ({length} bytes) reached a client that read nothing for 4 s"
    );

    // Reads 1 MiB every 300 ms: about 9 s in all, far longer than the timeout, but never stalled
    // for it.
    let mut slow = connect().await;
    slow.write_all(&request).await.unwrap();
    let (head, body, length) =
        read_answer(&mut slow, 1 << 20, Duration::from_millis(300), usize::MAX).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, length, "a slow reader that kept reading was cut off");

    assert_two_calls_metered_whole(&s).await;
}

/// The answer a stalled client never got whole is still metered: the edge reads the rest of it
/// from the upstream for its usage. Both calls, with exactly the tokens the mock reported.
async fn assert_two_calls_metered_whole(s: &Scenario) {
    let totals = s
        .admin
        .assert_usage_matches(&s.event_id, &[&s.mock], Duration::from_secs(15))
        .await;
    assert_eq!(totals["requests"], 2, "{totals}");
    assert_eq!(s.mock.stats.total(), 2);
}

/// Reads `answer` to its end, pausing `pause` after every `piece` bytes, at most `pauses` times;
/// returns how many body bytes came before the end (all of them, or an error first).
async fn read_http2_answer(
    mut answer: reqwest::Response,
    piece: usize,
    pause: Duration,
    pauses: usize,
) -> usize {
    let mut got = 0;
    let mut pacing = Pacing::new(piece, pause, pauses);
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(20), answer.chunk())
            .await
            .expect("the answer neither came nor ended within 20 s");
        match chunk {
            Ok(Some(bytes)) => {
                got += bytes.len();
                pacing.read(bytes.len()).await;
            }
            Ok(None) | Err(_) => return got,
        }
    }
}

/// The send timeout over HTTP/2: a client that keeps one stream's window shut while its
/// connection stays writable (it answers pings, its connection window is wide open) is cut off
/// once none of its answer went through for the timeout; a slow HTTP/2 reader is not. Both
/// answers are metered whole.
#[tokio::test(flavor = "multi_thread")]
async fn an_http2_client_that_leaves_one_stream_unread_is_cut_off_and_a_slow_reader_is_not() {
    let s = Scenario::start(MockConfig::default()).await;
    let edge = Edge::start_with_env(&s.cp, "", &[("AIPROXY_CLIENT_SEND_TIMEOUT_SECS", "1")]).await;
    let url = format!(
        "http://{}/api/v1/openai/deployments/gpt-4o/embeddings?api-version={}",
        edge.addr,
        aiproxy_loadtest::stack::API_VERSION
    );
    let body = json!({"input": vec!["a"; 100_000]}).to_string();
    // One stream's window is 64 KiB and released only as the body is read; the connection's is
    // 64 MiB, far more than the answer: only the stream can stall.
    let client = || {
        reqwest::Client::builder()
            .http2_prior_knowledge()
            .http2_adaptive_window(false)
            .http2_initial_stream_window_size(65_535)
            .http2_initial_connection_window_size(64 << 20)
            .http2_keep_alive_interval(Duration::from_millis(200))
            .http2_keep_alive_timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let call = |client: reqwest::Client| {
        client
            .post(&url)
            .header("api-key", &s.key)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };

    // Reads the first piece, then nothing for 4 s (the timeout is 1 s), then reads on.
    let answer = call(client()).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    let length = answer.content_length().expect("a content-length") as usize;
    assert!(length > 6 << 20, "the answer is {length} bytes");
    let got = read_http2_answer(answer, 32 << 10, Duration::from_secs(4), 1).await;
    assert!(
        got < length,
        "the whole answer ({length} bytes) reached a client that let none through for 4 s"
    );

    // Reads 512 KiB every 300 ms: about 4 s in all, longer than the timeout, never stalled for it.
    let answer = call(client()).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let length = answer.content_length().expect("a content-length") as usize;
    let got = read_http2_answer(answer, 512 << 10, Duration::from_millis(300), usize::MAX).await;
    assert_eq!(
        got, length,
        "a slow HTTP/2 reader that kept reading was cut off"
    );

    assert_two_calls_metered_whole(&s).await;
}

/// One gRPC call with an empty message over `client` (bearer `token` if given), within `within`;
/// true when it was answered (HTTP 200: the call's own status is in the trailers).
async fn grpc_answered(
    client: &reqwest::Client,
    cp: &ControlPlane,
    path: &str,
    token: Option<&str>,
    within: Duration,
) -> bool {
    let mut call = client
        .post(format!("{}{path}", cp.grpc_url()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(vec![0u8; 5])
        .timeout(within);
    if let Some(token) = token {
        call = call.bearer_auth(token);
    }
    matches!(call.send().await, Ok(a) if a.status() == StatusCode::OK)
}

fn http2_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

/// `AIPROXY_GRPC_MAX_CONNECTIONS` and `AIPROXY_GRPC_FIRST_CALL_TIMEOUT_SECS`: past the cap, a gRPC
/// client is not served until a connection closes; anyone who reaches the port can open one
/// before any credential is checked, so a connection that has made no authenticated call within
/// the first-call timeout is closed, and one that has is kept.
#[tokio::test(flavor = "multi_thread")]
async fn the_control_planes_grpc_connections_are_capped_and_strangers_do_not_keep_them() {
    const HEALTH: &str = "/grpc.health.v1.Health/Check";
    let cp = ControlPlane::start_with(ControlPlaneOptions::with_env(&[
        ("AIPROXY_GRPC_MAX_CONNECTIONS", "1".to_string()),
        ("AIPROXY_GRPC_FIRST_CALL_TIMEOUT_SECS", "1".to_string()),
    ]))
    .await;
    let cp = &cp;
    // A health check (no credential) over a connection of its own, closed afterwards.
    let fresh_health = |within: Duration| async move {
        grpc_answered(&http2_client(), cp, HEALTH, None, within).await
    };
    eventually("the gRPC port serves", Duration::from_secs(10), || {
        fresh_health(Duration::from_secs(1))
    })
    .await;

    // A plain TCP connection that sends nothing takes the only place: no one else is served...
    let held = tokio::net::TcpStream::connect(cp.grpc_addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !fresh_health(Duration::from_millis(300)).await,
        "a second connection was served past a cap of one"
    );
    // ...until the first-call timeout closes it, while this test still holds it open.
    eventually(
        "the silent connection is closed after the first-call timeout",
        Duration::from_secs(10),
        || fresh_health(Duration::from_secs(1)),
    )
    .await;
    drop(held);

    // An edge's connection (a call with the edge token) outlives the first-call timeout.
    let edge = http2_client();
    let lookup = "/aiproxy.v1.EdgeService/LookupObjects";
    let token = Some(cp.edge_token.as_str());
    eventually("an edge call is answered", Duration::from_secs(10), || {
        grpc_answered(&edge, cp, lookup, token, Duration::from_secs(1))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !fresh_health(Duration::from_millis(300)).await,
        "the edge's connection was closed although it had made an authenticated call"
    );
    assert!(grpc_answered(&edge, cp, lookup, token, Duration::from_secs(2)).await);
    drop(edge);
    eventually(
        "the gRPC port serves again once the edge's connection closed",
        Duration::from_secs(10),
        || fresh_health(Duration::from_secs(1)),
    )
    .await;
}

/// The control plane's gRPC server announces a limit on concurrent streams in its HTTP/2
/// SETTINGS (tonic announces none by default), so one connection cannot open streams without end.
#[tokio::test(flavor = "multi_thread")]
async fn the_control_planes_grpc_server_limits_streams_per_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cp = ControlPlane::start().await;
    let mut socket = tokio::net::TcpStream::connect(cp.grpc_addr).await.unwrap();
    // The client preface and an empty SETTINGS frame.
    socket
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    // The server's first frame is its SETTINGS: 9-byte head, then 6 bytes per setting.
    let mut head = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), socket.read_exact(&mut head))
        .await
        .expect("the server's SETTINGS within 5 s")
        .unwrap();
    assert_eq!(head[3], 0x4, "the first frame is SETTINGS");
    let length = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut settings = vec![0u8; length];
    socket.read_exact(&mut settings).await.unwrap();
    let max_streams = settings.chunks(6).find_map(|s| {
        (u16::from_be_bytes([s[0], s[1]]) == 0x3)
            .then(|| u32::from_be_bytes([s[2], s[3], s[4], s[5]]))
    });
    assert_eq!(
        max_streams,
        Some(aiproxy_control_plane::grpc::MAX_STREAMS_PER_CONNECTION)
    );
}
