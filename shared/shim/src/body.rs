//! Response bodies: whole buffers, or a stream fed from a channel (for
//! response streaming).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body as HttpBody, Frame, Incoming};
use tokio::sync::mpsc;

/// The body type of every response the shim sends.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A whole body.
pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body fed by a channel; an `Err` item aborts the stream.
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, String>>,
}

impl ChannelBody {
    /// Wraps a receiver as a response body.
    pub fn boxed(rx: mpsc::Receiver<Result<Bytes, String>>) -> Body {
        ChannelBody { rx }.boxed_unsync()
    }
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(std::io::Error::other(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Why a request body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Over the limit.
    TooLarge,
    /// The connection failed.
    Broken,
}

/// Reads a whole request body of at most `limit` bytes.
pub async fn read_limited(body: Incoming, limit: usize) -> Result<Bytes, ReadError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ReadError::TooLarge)
            } else {
                Err(ReadError::Broken)
            }
        }
    }
}
