//! The admin HTTP server's limits, against the real server on loopback: a request head that does
//! not arrive in time closes the connection, too many or too large headers get 431, a body over the
//! limit 413 and a slow one 408, an idle HTTP/2 connection is closed, and connections beyond the cap
//! wait until one closes.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the peer closes (or `wait` passes); returns what arrived and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> (String, bool) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&received).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&received).into_owned(), true);
            }
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `request` on a new connection and returns the status line of the answer.
async fn status_line(running: &Running, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(running.admin_addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    answer.lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_sent_request_line_is_closed_after_the_header_timeout() {
    let running = start_fresh_with(|c| c.header_read_timeout_ms = 300).await;
    let mut stream = TcpStream::connect(running.admin_addr).await.unwrap();
    stream.write_all(b"GET /healthz HT").await.unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(closed, "the connection stayed open past the header timeout");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed before the timeout: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_or_too_large_headers_get_431() {
    let running = start_fresh_with(|c| {
        c.max_headers = 20;
        c.max_header_bytes = 16 * 1024;
    })
    .await;
    let request = |headers: usize, value_len: usize| {
        let mut r = String::from("GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n");
        for i in 0..headers {
            r.push_str(&format!("x-h{i}: {}\r\n", "v".repeat(value_len)));
        }
        r.push_str("\r\n");
        r.into_bytes()
    };
    assert_eq!(
        status_line(&running, &request(10, 10)).await,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        status_line(&running, &request(30, 10)).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    assert_eq!(
        status_line(&running, &request(2, 20 * 1024)).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_the_limit_get_413_and_slow_ones_408() {
    let running = start_fresh_with(|c| {
        c.admin_max_body_bytes = 1024;
        c.body_read_timeout_secs = 1;
    })
    .await;
    let response = reqwest::Client::new()
        .post(format!("{}/admin/api/v1/resources", running.admin))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(format!("{{\"friendly_name\": \"{}\"}}", "x".repeat(2048)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("AIPROXY_ADMIN_MAX_BODY_BYTES"),
        "{body}"
    );

    let mut stream = TcpStream::connect(running.admin_addr).await.unwrap();
    let head = format!(
        "POST /admin/api/v1/resources HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN_TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"friendly"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("AIPROXY_BODY_READ_TIMEOUT_SECS"),
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_http2_connection_is_closed() {
    let running = start_fresh_with(|c| c.idle_timeout_secs = 1).await;
    let stream = TcpStream::connect(running.admin_addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get(format!("http://{}/healthz", running.admin_addr))
        .body(http_body_util::Empty::<axum::body::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the server closes an idle HTTP/2 connection")
        .unwrap()
        .ok();
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "closed before the idle timeout: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let running = start_fresh_with(|c| c.max_connections = 2).await;
    // Let the start-up health checks' connections close.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = TcpStream::connect(running.admin_addr).await.unwrap();
    let _second = TcpStream::connect(running.admin_addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(running.admin_addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf))
            .await
            .is_err(),
        "a third connection was served while two were open"
    );
    drop(first);
    let (answer, _) = read_until_closed(&mut third, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
