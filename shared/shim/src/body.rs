//! Response bodies: whole buffers, or a stream fed from a channel (for
//! response streaming).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
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
#[derive(Debug)]
pub enum ReadError {
    /// Over the limit; the rest of the body, still unread.
    TooLarge(Incoming),
    /// The connection failed.
    Broken,
}

/// Reads a whole request body of at most `limit` bytes. Over the limit, the
/// unread rest is handed back so the caller can [`linger`] on it.
pub async fn read_limited(mut body: Incoming, limit: usize) -> Result<Bytes, ReadError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(ReadError::Broken);
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(ReadError::TooLarge(body));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// How much of a refused body is still read and thrown away.
pub const LINGER_BYTES: u64 = 64 * 1024 * 1024;
/// How long a refused body is still read.
pub const LINGER_TIME: Duration = Duration::from_secs(10);

/// Reads and discards the rest of a refused request body (up to
/// [`LINGER_BYTES`] and [`LINGER_TIME`]) in the background, as nginx's
/// lingering close does. A client that writes its whole body before it
/// reads the answer (Python's urllib, many mobile stacks) otherwise meets a
/// reset on a socket closed with unread data and never sees the 413.
pub fn linger(mut body: Incoming) {
    tokio::spawn(async move {
        let mut read = 0u64;
        let _ = tokio::time::timeout(LINGER_TIME, async {
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(d) = frame.data_ref() {
                    read += d.len() as u64;
                    if read > LINGER_BYTES {
                        break;
                    }
                }
            }
        })
        .await;
    });
}
