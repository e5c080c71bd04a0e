//! hyper answers a request it cannot parse (a header with control bytes, a head too large)
//! itself, before the app sees it, with a bare status and no body. This wrapper of the client's
//! connection recognises that answer as it is written and sends the JSON error shape every other
//! error has in its place. The app's own 4xx answers always carry a JSON body (the
//! `json_errors` middleware), so a 4xx head with `content-length: 0` and no `content-type` is
//! hyper's alone.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub(crate) struct ShapedErrors<T> {
    inner: T,
    /// A replacement answer, and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T> ShapedErrors<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pending: None,
        }
    }
}

impl<T: AsyncWrite + Unpin> ShapedErrors<T> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }
}

/// The JSON answer in place of hyper's bare one, if `head` is one.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let status_line = text.strip_prefix("HTTP/1.1 4")?.split("\r\n").next()?;
    let bare = text.ends_with("\r\n\r\n")
        && text.contains("\r\ncontent-length: 0\r\n")
        && !text.to_ascii_lowercase().contains("\r\ncontent-type:");
    if !bare {
        return None;
    }
    let status = format!("4{status_line}");
    let why = match &status[..3] {
        "431" => "the request's headers are too large",
        "414" => "the request's URI is too long",
        _ => "the request is not valid HTTP (a malformed request line or header, say)",
    };
    let body = serde_json::json!({
        "errors": [{ "message": why, "extensions": { "code": "BAD_REQUEST" } }]
    })
    .to_string();
    Some(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nconnection: close\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for ShapedErrors<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ShapedErrors<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(answer) = replacement(buf) {
            self.pending = Some((answer, 0));
            // Taken whole: what is left of the replacement goes out on the next flush.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes each answer's head as one buffer, which `replacement`
    // can recognise.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bare_answers_are_replaced() {
        let bare = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let replaced = String::from_utf8(replacement(bare).unwrap()).unwrap();
        assert!(replaced.starts_with("HTTP/1.1 400 Bad Request\r\ncontent-type: application/json"));
        assert!(replaced.contains(r#""code":"BAD_REQUEST""#), "{replaced}");
        let app = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert!(replacement(app).is_none());
        let ok = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
        assert!(replacement(ok).is_none());
        let with_body = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n{}";
        assert!(replacement(with_body).is_none());
    }
}
