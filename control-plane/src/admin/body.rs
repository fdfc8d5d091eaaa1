//! Request bodies on the admin server. Every body is read at most `max_bytes` long and within a
//! deadline (`LimitedBody`, which `server` puts around each request), so a client can neither hold
//! a connection open by sending its body slowly nor make the control plane buffer a large one.
//! Handlers take the whole body with the `RequestBody` extractor, which answers the failures as
//! JSON errors: 413 too large, 408 too slow.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::Sleep;

use super::error::ApiError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum BodyLimitError {
    #[error("the request body is larger than {0} bytes (AIPROXY_ADMIN_MAX_BODY_BYTES)")]
    TooLarge(u64),
    #[error(
        "the request body did not arrive within {} s (AIPROXY_BODY_READ_TIMEOUT_SECS)",
        .0.as_secs_f64()
    )]
    TimedOut(Duration),
}

/// A request body cut off at `max_bytes` and at a deadline for the whole of it.
pub struct LimitedBody<B> {
    inner: B,
    read: u64,
    max_bytes: u64,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    failed: bool,
}

impl<B> LimitedBody<B> {
    /// The deadline runs from now: the request head has arrived.
    pub fn new(inner: B, max_bytes: u64, timeout: Duration) -> Self {
        Self {
            inner,
            read: 0,
            max_bytes,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            failed: false,
        }
    }

    fn fail(&mut self, error: BodyLimitError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.failed = true;
        Poll::Ready(Some(Err(Box::new(error))))
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        // A declared length over the limit fails before anything is read.
        if this.inner.size_hint().lower() > this.max_bytes {
            return this.fail(BodyLimitError::TooLarge(this.max_bytes));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read += data.len() as u64;
                    if this.read > this.max_bytes {
                        return this.fail(BodyLimitError::TooLarge(this.max_bytes));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => this.fail(BodyLimitError::TimedOut(this.timeout)),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The whole request body, or a JSON error naming the limit it broke.
pub struct RequestBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RequestBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        match request.into_body().collect().await {
            Ok(collected) => Ok(RequestBody(collected.to_bytes())),
            Err(e) => Err(body_error(&e)),
        }
    }
}

fn body_error(e: &axum::Error) -> ApiError {
    let limit = std::iter::successors(Some(e as &dyn std::error::Error), |e| e.source())
        .find_map(|e| e.downcast_ref::<BodyLimitError>());
    match limit {
        Some(limit @ BodyLimitError::TooLarge(_)) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, limit.to_string())
        }
        Some(limit @ BodyLimitError::TimedOut(_)) => {
            ApiError::new(StatusCode::REQUEST_TIMEOUT, limit.to_string())
        }
        None => ApiError::bad_request("the request body could not be read"),
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{Full, StreamBody};

    use super::*;

    #[tokio::test]
    async fn a_body_over_the_limit_fails_and_one_under_passes() {
        let small = LimitedBody::new(
            Full::new(Bytes::from_static(b"{}")),
            8,
            Duration::from_secs(5),
        );
        assert_eq!(small.collect().await.unwrap().to_bytes(), "{}");
        let large = LimitedBody::new(
            Full::new(Bytes::from(vec![b'x'; 9])),
            8,
            Duration::from_secs(5),
        );
        let err = large.collect().await.unwrap_err();
        assert!(matches!(
            err.downcast_ref::<BodyLimitError>(),
            Some(BodyLimitError::TooLarge(8))
        ));
    }

    #[tokio::test]
    async fn a_body_that_does_not_finish_in_time_fails() {
        let never =
            futures_util::stream::pending::<Result<Frame<Bytes>, std::convert::Infallible>>();
        let slow = LimitedBody::new(StreamBody::new(never), 1024, Duration::from_millis(50));
        let err = tokio::time::timeout(Duration::from_secs(2), slow.collect())
            .await
            .expect("the deadline ends the read")
            .unwrap_err();
        assert!(matches!(
            err.downcast_ref::<BodyLimitError>(),
            Some(BodyLimitError::TimedOut(_))
        ));
    }
}
