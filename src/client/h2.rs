//! An HTTP/2 client connection: `h2::client` over a transport, polled with the connection's
//! waker (no tokio runtime). Requests to one origin become concurrent streams.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::client::{Connection, ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, HOST, TE};
use http::{Request, Response, Uri};
use smoltcp::time::Instant;

use super::{ClientError, ExchangeRef, Scheme, Target};
use crate::conn::body::{request_body, Body, BodyError, BodySender};
use crate::conn::h2body::{receive_body, send_body, Pumped};
use crate::conn::upgrade::ConnectProtocol;
use crate::error::Chain;
use crate::http::h2io::{H2Io, H2Pipes};
use crate::http::CONNECTION_HEADERS;
use crate::runtime::wake::TURNS;
use crate::stack::Stack;
use crate::transport::Transport;

/// How long an extended CONNECT waits for the server's SETTINGS to allow it.
const EXTENDED_CONNECT_WAIT: Duration = Duration::from_secs(2);

/// How an HTTP/1 response starts.
const HTTP1_MARK: &[u8] = b"HTTP/";

/// The error for a server whose first bytes cannot start HTTP/2, which begins with a
/// SETTINGS frame (type 4, RFC 9113 §3.4). h2 itself would say "frame with invalid size"
/// (`HTTP/` read as a frame header is 4.7 MB long), which hides the cause.
fn not_http2(first: &[u8]) -> Option<ClientError> {
    let reason = if first.starts_with(HTTP1_MARK) {
        "the server does not speak HTTP/2: it answered in HTTP/1"
    } else if first.len() == HTTP1_MARK.len() && first[3] != 4 {
        "the server does not speak HTTP/2: its first bytes are not an HTTP/2 SETTINGS frame"
    } else {
        return None;
    };
    Some(ClientError::Protocol(reason.into()))
}

type Handshake =
    Pin<Box<dyn Future<Output = Result<(SendRequest<Bytes>, Connection<H2Io, Bytes>), h2::Error>>>>;

enum State {
    Handshaking(Handshake),
    Open(Box<(SendRequest<Bytes>, Connection<H2Io, Bytes>)>),
    Closed,
}

struct Stream {
    exchange: ExchangeRef,
    /// The head of a request without a body, to send again on another connection if the
    /// server's GOAWAY says it never processed this stream (RFC 9113 §8.1.4).
    retry: Option<http::request::Parts>,
    response: Option<ResponseFuture>,
    upload: Option<(SendStream<Bytes>, Body)>,
    recv: Option<RecvStream>,
    body: Option<BodySender>,
    started: Instant,
    /// The server refused the stream unprocessed (GOAWAY).
    refused: bool,
}

impl Stream {
    fn finished(&self) -> bool {
        self.response.is_none() && self.upload.is_none() && self.recv.is_none()
    }
}

/// One HTTP/2 connection to an origin.
pub(crate) struct H2Client<T: Transport> {
    transport: Option<T>,
    pipes: H2Pipes,
    state: State,
    pending: VecDeque<ExchangeRef>,
    streams: Vec<Stream>,
    scheme: &'static str,
    authority: String,
    idle_since: Option<Instant>,
    /// When the HTTP/2 handshake completed.
    opened: Option<Instant>,
    /// The server sent GOAWAY: no new streams here.
    going_away: bool,
    /// Exchanges the server did not process, to be sent on another connection.
    requeued: Vec<ExchangeRef>,
    /// The server's first bytes (up to 5): `HTTP/` means it answered in HTTP/1.
    first_bytes: Vec<u8>,
}

impl<T: Transport> H2Client<T> {
    pub(crate) fn new(transport: T, target: &Target) -> Self {
        let (pipes, io) = H2Pipes::new();
        let mut builder = h2::client::Builder::new();
        builder
            .initial_window_size(256 * 1024)
            .initial_connection_window_size(1024 * 1024)
            .max_send_buffer_size(64 * 1024)
            .enable_push(false);
        let handshake: Handshake = Box::pin(async move { builder.handshake(io).await });
        H2Client {
            transport: Some(transport),
            pipes,
            state: State::Handshaking(handshake),
            pending: VecDeque::new(),
            streams: Vec::new(),
            scheme: match target.scheme {
                Scheme::Http => "http",
                Scheme::Https => "https",
            },
            authority: target.authority(),
            idle_since: None,
            opened: None,
            going_away: false,
            requeued: Vec::new(),
            first_bytes: Vec::new(),
        }
    }

    /// True while new requests can be sent on this connection.
    pub(crate) fn accepts_streams(&self) -> bool {
        !self.going_away && !matches!(self.state, State::Closed) && self.transport.is_some()
    }

    /// Exchanges to send again elsewhere (refused by the server's GOAWAY, unprocessed).
    pub(crate) fn take_requeued(&mut self) -> Vec<ExchangeRef> {
        std::mem::take(&mut self.requeued)
    }

    /// Queues a request.
    pub(crate) fn push(&mut self, exchange: ExchangeRef) {
        self.idle_since = None;
        self.pending.push_back(exchange);
    }

    /// When the idle timer fires (only without requests).
    pub(crate) fn deadline(&self, _now: Instant, idle: Duration) -> Option<Instant> {
        self.idle_since.map(|since| since + idle.into())
    }

    /// Fails requests that waited longer than `limit` for their response head.
    pub(crate) fn expire(&mut self, now: Instant, limit: Duration) -> bool {
        let mut any = false;
        for stream in &mut self.streams {
            if stream.response.is_some() && now >= stream.started + limit.into() {
                stream.response = None;
                stream.upload = None;
                stream
                    .exchange
                    .borrow_mut()
                    .fail(ClientError::Timeout(limit));
                any = true;
            }
        }
        any
    }

    pub(crate) fn close(&mut self, stack: &mut Stack) {
        self.fail_all(&ClientError::Connection("client shut down".into()));
        if let Some(t) = self.transport.take() {
            t.close(stack);
        }
    }

    fn fail_all(&mut self, error: &ClientError) {
        for ex in self.pending.drain(..) {
            ex.borrow_mut().fail(error.clone());
        }
        for s in self.streams.drain(..) {
            if let Some(body) = &s.body {
                body.fail(BodyError::Incomplete(Chain(error).to_string()));
            }
            s.exchange.borrow_mut().fail(error.clone());
        }
    }

    /// Does the work that is ready. `Ok(false)` when the connection is finished.
    pub(crate) fn drive(
        &mut self,
        stack: &mut Stack,
        cx: &mut Context<'_>,
        now: Instant,
    ) -> Result<bool, ClientError> {
        let mut progress = true;
        for _ in 0..TURNS {
            let Some(transport) = self.transport.as_mut() else {
                return Ok(false);
            };
            progress = false;
            let first = &mut self.first_bytes;
            let moved = self.pipes.fill_from_inspect(transport, stack, &mut |data| {
                let room = HTTP1_MARK.len().saturating_sub(first.len());
                first.extend_from_slice(&data[..room.min(data.len())]);
            });
            match moved {
                Ok(moved) => progress |= moved.any(),
                Err(e) => return self.fail(stack, ClientError::Transport(e)),
            }
            if let Some(error) = not_http2(&self.first_bytes) {
                return self.fail(stack, error);
            }
            match self.poll_h2(cx, now) {
                Ok(p) => progress |= p,
                Err(e) => return self.fail(stack, e),
            }
            let Some(transport) = self.transport.as_mut() else {
                return Ok(false);
            };
            match self.pipes.flush_to(transport, stack) {
                Ok(written) => progress |= written > 0,
                Err(e) => return self.fail(stack, ClientError::Transport(e)),
            }
            if matches!(self.state, State::Closed) {
                // Requests never sent here go to another connection.
                self.going_away = true;
                self.requeued.extend(self.pending.drain(..));
                self.fail_all(&ClientError::Connection(
                    "the server closed the HTTP/2 connection".into(),
                ));
                if let Some(t) = self.transport.take() {
                    t.close(stack);
                }
                return Ok(false);
            }
            if !progress {
                break;
            }
        }
        if progress {
            crate::runtime::wake::out_of_turns(cx);
        }
        if self.streams.is_empty() && self.pending.is_empty() {
            let since = *self.idle_since.get_or_insert(now);
            let _ = since;
        } else {
            self.idle_since = None;
        }
        if let Some(t) = self.transport.as_mut() {
            let write = self.pipes.tx_pending() > 0;
            t.register(stack, cx.waker(), true, write);
        }
        Ok(true)
    }

    /// Closes after an idle period; called when the idle timer fired.
    pub(crate) fn idle_expired(&self, now: Instant, idle: Duration) -> bool {
        self.idle_since
            .is_some_and(|since| now >= since + idle.into())
    }

    fn fail(&mut self, stack: &mut Stack, error: ClientError) -> Result<bool, ClientError> {
        self.fail_all(&error);
        self.state = State::Closed;
        if let Some(t) = self.transport.take() {
            t.abort(stack);
        }
        Err(error)
    }

    fn poll_h2(&mut self, cx: &mut Context<'_>, now: Instant) -> Result<bool, ClientError> {
        let mut progress = false;
        if let State::Handshaking(handshake) = &mut self.state {
            match handshake.as_mut().poll(cx) {
                Poll::Pending => return Ok(false),
                Poll::Ready(Ok((send, conn))) => {
                    self.state = State::Open(Box::new((send, conn)));
                    self.opened = Some(now);
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Err(ClientError::Http2Handshake(Arc::new(e))),
            }
        }
        let State::Open(open) = &mut self.state else {
            return Ok(progress);
        };
        let (send, conn) = &mut **open;
        // The connection future reads and writes frames.
        // When it ends (after a GOAWAY), the streams still learn how they ended below.
        let ended = match Pin::new(&mut *conn).poll(cx) {
            Poll::Ready(Ok(())) => {
                progress = true;
                true
            }
            Poll::Ready(Err(e)) => return Err(ClientError::http2(e)),
            Poll::Pending => false,
        };
        // New requests, as long as the server allows more streams.
        while !ended && !self.pending.is_empty() {
            match send.poll_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(Err(e)) if e.is_go_away() => {
                    // Not sent yet: every pending request goes to another connection.
                    self.going_away = true;
                    self.requeued.extend(self.pending.drain(..));
                    progress = true;
                    break;
                }
                Poll::Ready(Err(e)) => return Err(ClientError::http2(e)),
                Poll::Ready(Ok(())) => {}
            }
            let Some(exchange) = self.pending.front().cloned() else {
                break;
            };
            // An extended CONNECT (RFC 8441) waits until the server's SETTINGS allow it.
            let extended = exchange
                .borrow()
                .request
                .as_ref()
                .is_some_and(|r| r.extensions().get::<ConnectProtocol>().is_some());
            if extended && !send.is_extended_connect_protocol_enabled() {
                let opened = self.opened.unwrap_or(now);
                if now < opened + EXTENDED_CONNECT_WAIT.into() {
                    break;
                }
                self.pending.pop_front();
                exchange.borrow_mut().fail(ClientError::Protocol(
                    "the server does not allow extended CONNECT (RFC 8441)".into(),
                ));
                continue;
            }
            self.pending.pop_front();
            progress = true;
            let request = exchange.borrow_mut().request.take();
            let Some(request) = request else { continue };
            let (mut parts, body) = request.into_parts();
            let protocol = parts.extensions.remove::<ConnectProtocol>();
            let plain_connect = parts.method == http::Method::CONNECT && protocol.is_none();
            if let Some(protocol) = protocol {
                parts
                    .extensions
                    .insert(h2::ext::Protocol::from(protocol.0.as_str()));
            }
            // A plain CONNECT names its target as an authority (RFC 9113 §8.5); everything
            // else goes to this origin.
            if !(plain_connect && parts.uri.authority().is_some()) {
                let path = parts
                    .uri
                    .path_and_query()
                    .map_or_else(|| "/".to_string(), |p| p.to_string());
                let uri = format!("{}://{}{}", self.scheme, self.authority, path);
                match uri.parse::<Uri>() {
                    Ok(uri) => parts.uri = uri,
                    Err(e) => {
                        exchange
                            .borrow_mut()
                            .fail(ClientError::RequestUri(Arc::new(e)));
                        continue;
                    }
                }
            }
            parts.version = http::Version::HTTP_2;
            parts.headers.remove(HOST);
            for name in CONNECTION_HEADERS {
                parts.headers.remove(HeaderName::from_static(name));
            }
            // HTTP/2 carries TE only as `trailers` (RFC 9113 §8.2.2).
            let te_trailers = parts.headers.get_all(TE).iter().any(|v| {
                v.to_str().is_ok_and(|v| {
                    v.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
                })
            });
            if parts.headers.remove(TE).is_some() && te_trailers {
                parts
                    .headers
                    .insert(TE, HeaderValue::from_static("trailers"));
            }
            let len = body.len();
            if let Some(len) = len.filter(|&l| l > 0) {
                parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
            }
            let end = len == Some(0);
            // One copy of the head: to requeue the request if GOAWAY stops it, and to send a
            // bodiless request again if the server leaves it unprocessed.
            let again = parts.clone();
            match send.send_request(Request::from_parts(parts, ()), end) {
                Ok((response, upload)) => self.streams.push(Stream {
                    exchange,
                    retry: end.then_some(again),
                    response: Some(response),
                    upload: (!end).then_some((upload, body)),
                    recv: None,
                    body: None,
                    started: now,
                    refused: false,
                }),
                Err(e) if e.is_go_away() => {
                    // The server is going away: this request was not sent.
                    exchange.borrow_mut().request = Some(Request::from_parts(again, body));
                    self.requeued.push(exchange);
                    self.requeued.extend(self.pending.drain(..));
                    self.going_away = true;
                    break;
                }
                Err(e) => exchange.borrow_mut().fail(ClientError::http2(e)),
            }
        }
        for stream in &mut self.streams {
            progress |= advance(stream, cx);
            let retry = if stream.refused {
                stream.retry.take()
            } else {
                None
            };
            if let Some(parts) = retry {
                stream.exchange.borrow_mut().request =
                    Some(Request::from_parts(parts, Body::empty()));
                self.requeued.push(stream.exchange.clone());
                self.going_away = true;
            }
        }
        self.streams.retain(|s| !s.finished());
        if ended {
            self.state = State::Closed;
            return Ok(true);
        }
        if progress {
            // Push out frames the streams queued.
            if let State::Open(open) = &mut self.state {
                if let Poll::Ready(Err(e)) = Pin::new(&mut open.1).poll(cx) {
                    return Err(ClientError::http2(e));
                }
            }
        }
        Ok(progress)
    }
}

fn advance(stream: &mut Stream, cx: &mut Context<'_>) -> bool {
    let mut progress = false;
    // Upload the request body within the send window.
    if let Some((send, body)) = stream.upload.as_mut() {
        let (pumped, sent) = send_body(send, body, cx, h2::Reason::CANCEL);
        progress |= sent > 0;
        match pumped {
            Pumped::Blocked => {}
            Pumped::Finished | Pumped::PeerGone => {
                progress = true;
                stream.upload = None;
            }
            Pumped::Failed(e) => {
                progress = true;
                stream
                    .exchange
                    .borrow_mut()
                    .fail(ClientError::request_body(e));
                stream.upload = None;
                stream.response = None;
            }
        }
    }
    // The response head.
    if let Some(response) = stream.response.as_mut() {
        match Pin::new(response).poll(cx) {
            Poll::Pending => {}
            Poll::Ready(Err(e))
                if stream.retry.is_some()
                    && ((e.is_go_away() && e.is_remote())
                        || e.reason() == Some(h2::Reason::REFUSED_STREAM)) =>
            {
                // Above the GOAWAY's last stream id: never processed, safe to send again.
                progress = true;
                stream.response = None;
                stream.refused = true;
            }
            Poll::Ready(Err(e)) => {
                progress = true;
                stream.response = None;
                stream.exchange.borrow_mut().fail(ClientError::http2(e));
            }
            Poll::Ready(Ok(response)) => {
                progress = true;
                stream.response = None;
                stream.retry = None;
                let (parts, recv) = response.into_parts();
                let declared = parts
                    .headers
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let ended = recv.is_end_stream();
                let (sender, body) = request_body(if ended { Some(0) } else { declared });
                if ended {
                    sender.finish();
                } else {
                    stream.recv = Some(recv);
                    stream.body = Some(sender);
                }
                stream
                    .exchange
                    .borrow_mut()
                    .respond(Ok(Response::from_parts(parts, body)));
            }
        }
    }
    // The response body, released to the server only as it goes into the bounded pipe.
    if let (Some(recv), Some(sender)) = (stream.recv.as_mut(), stream.body.as_ref()) {
        let (moved, over) = receive_body(recv, sender, cx);
        progress |= moved;
        if over {
            stream.recv = None;
        }
    }
    progress
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_does_not_speak_http2_is_named() {
        let text = |first: &[u8]| not_http2(first).map(|e| e.to_string());
        assert_eq!(
            text(b"HTTP/"),
            Some("protocol error: the server does not speak HTTP/2: it answered in HTTP/1".into())
        );
        assert!(text(b"<!DOC")
            .unwrap()
            .contains("not an HTTP/2 SETTINGS frame"));
        // A SETTINGS frame header (length 18, type 4), and too few bytes to tell.
        assert_eq!(text(&[0, 0, 18, 4, 0]), None);
        assert_eq!(text(b"HT"), None);
    }
}
