//! Bodies on HTTP/2 streams with flow control, for both roles: sending (the server's
//! responses, the client's requests) and receiving (the server's requests, the client's
//! responses).

use std::task::{Context, Poll};

use bytes::Bytes;
use h2::{Reason, RecvStream, SendStream};

use super::body::{BodyError, BodySender, BodyStream};

/// Received body bytes buffered per stream before its window stays closed.
pub(crate) const STREAM_BODY_BUFFER: usize = 64 * 1024;

/// Moves a received body from `recv` into its pipe (`sender`): data as it comes, releasing
/// flow-control capacity only as bytes go into the pipe (bounded by [`STREAM_BODY_BUFFER`]:
/// above it the writer parks and the peer's window stays closed), then the trailers (the
/// fields a trailer section may carry, [`crate::http::permitted_trailers`]) or the end.
/// Returns whether anything moved and whether the body is over (ended or failed).
pub(crate) fn receive_body(
    recv: &mut RecvStream,
    sender: &BodySender,
    cx: &mut Context<'_>,
) -> (bool, bool) {
    let mut progress = false;
    loop {
        if sender.buffered() >= STREAM_BODY_BUFFER {
            sender.park(cx.waker());
            return (progress, false);
        }
        match recv.poll_data(cx) {
            Poll::Ready(Some(Ok(data))) => {
                progress = true;
                let n = data.len();
                sender.push(data);
                let _ = recv.flow_control().release_capacity(n);
            }
            Poll::Ready(Some(Err(e))) => {
                sender.fail(BodyError::Incomplete(e.to_string()));
                return (true, true);
            }
            Poll::Ready(None) => {
                return match recv.poll_trailers(cx) {
                    Poll::Pending => (progress, false),
                    Poll::Ready(trailers) => {
                        match trailers.map(|t| t.and_then(crate::http::permitted_trailers)) {
                            Ok(Some(trailers)) => sender.finish_with_trailers(trailers),
                            Ok(None) => sender.finish(),
                            Err(e) => sender.fail(BodyError::Incomplete(e.to_string())),
                        }
                        (true, true)
                    }
                };
            }
            Poll::Pending => return (progress, false),
        }
    }
}

/// Send capacity asked for at a time per stream.
const SEND_CHUNK: usize = 64 * 1024;

/// How far [`send_body`] got.
#[derive(Debug)]
pub(crate) enum Pumped {
    /// Waiting for window or for the body; a waker is registered.
    Blocked,
    /// The body was sent, with END_STREAM.
    Finished,
    /// The peer reset the stream or the connection is gone.
    PeerGone,
    /// The body failed; the stream was reset with the given reason.
    Failed(BodyError),
}

/// Sends `body` on `send` as far as the flow-control window allows: reserves capacity in
/// chunks and pulls at most that much from the body, so a peer that does not open its
/// window never makes memory grow. Returns how far it got and the body bytes sent.
///
/// The body is read one chunk ahead while the window has room, so its last chunk carries
/// END_STREAM rather than an empty DATA frame after it: `h2` treats a stream whose data
/// all left its queue as finished and ignores the peer's WINDOW_UPDATEs on it, even when
/// a separate END_STREAM frame still waits behind a full socket — an update that
/// overflows the window (RFC 9113 §6.9.1) would then get the end of the response instead
/// of RST_STREAM FLOW_CONTROL_ERROR.
pub(crate) fn send_body(
    send: &mut SendStream<Bytes>,
    body: &mut dyn BodyStream,
    cx: &mut Context<'_>,
    on_error: Reason,
) -> (Pumped, u64) {
    let mut sent = 0u64;
    // A chunk pulled by looking ahead, not sent yet (it fits the capacity held).
    let mut ahead: Option<Bytes> = None;
    loop {
        let chunk = match ahead.take() {
            Some(chunk) => chunk,
            None => {
                if send.capacity() == 0 {
                    send.reserve_capacity(SEND_CHUNK);
                    match send.poll_capacity(cx) {
                        Poll::Ready(Some(Ok(n))) if n > 0 => {}
                        Poll::Ready(Some(Ok(_))) | Poll::Pending => return (Pumped::Blocked, sent),
                        Poll::Ready(Some(Err(_))) | Poll::Ready(None) => {
                            return (Pumped::PeerGone, sent)
                        }
                    }
                }
                match body.poll_chunk(cx, send.capacity()) {
                    Poll::Pending => return (Pumped::Blocked, sent),
                    Poll::Ready(Some(Ok(chunk))) => chunk,
                    Poll::Ready(None) => {
                        let _ = match body.take_trailers() {
                            Some(trailers) => send.send_trailers(trailers),
                            None => send.send_data(Bytes::new(), true),
                        };
                        return (Pumped::Finished, sent);
                    }
                    Poll::Ready(Some(Err(e))) => {
                        send.send_reset(on_error);
                        return (Pumped::Failed(e), sent);
                    }
                }
            }
        };
        // Is this the last chunk? Look while the capacity has room for more.
        let room = send.capacity().saturating_sub(chunk.len());
        let mut last = false;
        let mut trailers = None;
        if room > 0 {
            match body.poll_chunk(cx, room) {
                Poll::Ready(None) => match body.take_trailers() {
                    Some(t) => trailers = Some(t),
                    None => last = true,
                },
                Poll::Ready(Some(Ok(next))) => ahead = Some(next),
                Poll::Pending => {}
                Poll::Ready(Some(Err(e))) => {
                    send.send_reset(on_error);
                    return (Pumped::Failed(e), sent);
                }
            }
        }
        sent += chunk.len() as u64;
        if send.send_data(chunk, last).is_err() {
            return (Pumped::PeerGone, sent);
        }
        if let Some(trailers) = trailers {
            let _ = send.send_trailers(trailers);
            return (Pumped::Finished, sent);
        }
        if last {
            return (Pumped::Finished, sent);
        }
    }
}
