//! The one body type the edge answers with: upstream bodies stream through it unbuffered, and
//! locally made ones (errors, health) are small in-memory bodies. Bodies from the network (the
//! client's request, upstream's answer) are wrapped in an idle timeout, so a peer that stops
//! sending cannot hold a request open forever.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type EdgeBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> EdgeBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn stream<B>(body: B) -> EdgeBody
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// `body`, failing once no frame has arrived for `idle`.
pub fn with_idle_timeout<B>(body: B, idle: Duration, what: &'static str) -> EdgeBody
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    IdleTimeout {
        inner: body,
        idle,
        sleep: None,
        what,
    }
    .boxed_unsync()
}

#[derive(Debug, thiserror::Error)]
#[error("{what}: nothing received for {idle:?}")]
pub struct IdleTimeoutError {
    what: &'static str,
    idle: Duration,
}

struct IdleTimeout<B> {
    inner: B,
    idle: Duration,
    /// Made when the body first has to wait: most bodies of a call arrive whole with their
    /// head, and never need a timer.
    sleep: Option<Pin<Box<Sleep>>>,
    what: &'static str,
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(sleep) = &mut this.sleep {
                    sleep.as_mut().reset(Instant::now() + this.idle);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(this.idle)))
                .as_mut()
                .poll(cx)
            {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(IdleTimeoutError {
                    what: this.what,
                    idle: this.idle,
                })))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why a whole body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Failed(String),
}

/// Reads a whole body, refusing more than `limit` bytes. The buffer is sized once from the body's
/// declared length, so reading costs the body's size, not a multiple of it.
pub async fn read_to_bytes(mut body: EdgeBody, limit: usize) -> Result<Bytes, ReadError> {
    let declared = body.size_hint().exact().map(|n| n as usize);
    if declared.is_some_and(|n| n > limit) {
        return Err(ReadError::TooLarge(limit));
    }
    let mut buffer = bytes::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ReadError::Failed(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > limit {
                return Err(ReadError::TooLarge(limit));
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_sending_fails_after_its_idle_timeout() {
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let silent =
            http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        let mut body = with_idle_timeout(silent, Duration::from_secs(5), "client body");
        let frame = body.frame().await.expect("an error frame");
        assert!(frame.unwrap_err().to_string().contains("nothing received"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_timeout_counts_from_the_last_frame() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let slow = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        let mut body = with_idle_timeout(slow, Duration::from_secs(5), "upstream body");
        // A frame every 4 s: never 5 s without one, for longer than 5 s in all.
        for _ in 0..3 {
            let tx = tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(4)).await;
                tx.send(Ok(Frame::data(Bytes::from_static(b"a")))).await
            });
            let waited = Instant::now();
            assert!(body.frame().await.expect("a frame").is_ok());
            assert_eq!(waited.elapsed(), Duration::from_secs(4));
        }
        let waited = Instant::now();
        let error = body.frame().await.expect("an error frame").unwrap_err();
        assert!(error.to_string().contains("nothing received"), "{error}");
        assert_eq!(waited.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn reading_refuses_a_declared_or_actual_length_over_the_limit() {
        assert!(matches!(
            read_to_bytes(full(vec![0u8; 10]), 5).await,
            Err(ReadError::TooLarge(5))
        ));
        assert_eq!(read_to_bytes(full("abc"), 5).await.unwrap(), "abc");
    }
}
