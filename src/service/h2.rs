//! An HTTP/2 connection: the `h2` crate over a transport, polled with the connection's
//! waker on the event loop thread (no tokio runtime), calling the same handler as HTTP/1.1.
//!
//! Flow control: request data is released to the peer only as it moves into the request
//! body pipe, which is bounded, so a handler that reads slowly holds the client back.
//! Responses reserve send capacity and pull at most that much from the body, so a client
//! that does not open its window never makes memory grow.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::server::{Connection, Handshake, SendResponse};
use h2::{Reason, RecvStream, SendStream};
use http::header::{HeaderName, HeaderValue, CONTENT_LENGTH, HOST};
use http::{Method, Request, Response, StatusCode};
use smoltcp::time::Instant;

use super::dispatch::{self, AnswerFuture, Dispatch};
use super::h2c::Splice;
use super::h2guard::FrameGuard;
use super::shared::Shared;
use super::{Body, BodyError, ConnInfo, Protocol};
use crate::conn::body::{request_body, BodySender, Incoming, IncomingBody};
use crate::conn::h2body::{receive_body, send_body, Pumped, STREAM_BODY_BUFFER};
use crate::conn::upgrade::{ConnectProtocol, Tunnel, TUNNEL_BUFFER};
use crate::conn::Drive;
use crate::http::h2io::{H2Io, H2Pipes};
use crate::http::{CONNECTION_HEADERS, H2_PREFACE};
use crate::runtime::wake::TURNS;
use crate::stack::Stack;
use crate::transport::{ReadStatus, Transport};

/// HTTP/2 settings and timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H2Config {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE (decoded header bytes per request).
    pub max_header_list_size: u32,
    /// Initial flow-control window per stream.
    pub initial_window_size: u32,
    /// Initial flow-control window of the whole connection.
    pub initial_connection_window_size: u32,
    /// Frames buffered per stream for sending at most.
    pub max_send_buffer_size: usize,
    /// Streams reset by the client before we accepted them, at most at once (rapid reset).
    pub max_pending_accept_reset_streams: usize,
    /// Streams we may reset because of client errors before the connection is closed.
    pub max_local_error_reset_streams: usize,
    /// Time for the client preface and SETTINGS exchange.
    pub handshake_timeout: Duration,
    /// A connection with no open stream for this long is closed with GOAWAY.
    pub idle_timeout: Duration,
    /// A connection whose streams wait on the client (for request data, for flow-control
    /// window, or for it to read what was written) with nothing moving for this long is
    /// closed with GOAWAY (`ENHANCE_YOUR_CALM`), and reset if even that cannot be sent
    /// within the same time. A GOAWAY'd connection the client does not finish is reset
    /// after this long too.
    pub stall_timeout: Duration,
    /// PING, SETTINGS, PRIORITY and RST_STREAM frames a client may send in a burst.
    pub max_control_frames: u32,
    /// PING, SETTINGS, PRIORITY and RST_STREAM frames per second a client may send after
    /// its burst; beyond, the connection is closed with GOAWAY (`ENHANCE_YOUR_CALM`).
    pub control_frames_per_sec: u32,
}

impl Default for H2Config {
    fn default() -> Self {
        H2Config {
            max_concurrent_streams: 128,
            max_header_list_size: 64 * 1024,
            initial_window_size: 256 * 1024,
            initial_connection_window_size: 1024 * 1024,
            max_send_buffer_size: 64 * 1024,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(60),
            max_control_frames: 500,
            control_frames_per_sec: 100,
        }
    }
}

impl H2Config {
    fn builder(&self) -> h2::server::Builder {
        let mut b = h2::server::Builder::new();
        b.max_concurrent_streams(self.max_concurrent_streams)
            .max_header_list_size(self.max_header_list_size)
            .initial_window_size(self.initial_window_size)
            .initial_connection_window_size(self.initial_connection_window_size)
            .max_send_buffer_size(self.max_send_buffer_size)
            .max_pending_accept_reset_streams(self.max_pending_accept_reset_streams)
            .max_local_error_reset_streams(Some(self.max_local_error_reset_streams))
            // RFC 8441: CONNECT with a `:protocol` (WebSockets over HTTP/2).
            .enable_connect_protocol();
        b
    }
}

enum Stage {
    /// Waiting for the service to be ready to take the request.
    Queued(Box<Request<Incoming>>),
    Waiting(AnswerFuture),
    Streaming(SendStream<Bytes>, Body),
    Done,
}

struct StreamTask {
    method: Method,
    target: String,
    started: Instant,
    status: StatusCode,
    body_bytes: u64,
    recv: Option<RecvStream>,
    sender: BodySender,
    respond: Option<SendResponse<Bytes>>,
    stage: Stage,
    /// For `CONNECT`: the request body, kept to become the tunnel's incoming side.
    tunnel_rx: Option<IncomingBody>,
    /// The handler's tunnel task, once the stream switched.
    tunnel: Option<Pin<Box<dyn Future<Output = ()>>>>,
    /// The stream carries a tunnel (counted in the stats until it ends).
    tunnelled: bool,
}

enum State {
    Handshaking(Handshake<H2Io, Bytes>),
    Open(Connection<H2Io, Bytes>),
    Closed,
}

/// One HTTP/2 connection.
pub(crate) struct H2Conn<T: Transport> {
    transport: Option<T>,
    pipes: H2Pipes,
    state: State,
    streams: Vec<StreamTask>,
    info: ConnInfo,
    config: H2Config,
    /// When the connection last had an open stream (or was created).
    idle_since: Instant,
    created: Instant,
    going_away: bool,
    /// Counts the client's control frames (PING/SETTINGS floods, rapid reset).
    guard: FrameGuard,
    /// GOAWAY to send as soon as the connection is open (a flood during the handshake).
    pending_abrupt: Option<Reason>,
    /// Since when every open stream waits on the client with nothing moving.
    waiting_since: Option<Instant>,
    /// Since when a GOAWAY'd connection has had no stream left.
    away_since: Option<Instant>,
    /// Reset the connection on the next drive (a GOAWAY'd or stalled peer did not finish).
    kill: bool,
    /// A GOAWAY with an error was queued.
    aborted: bool,
    /// After an h2c upgrade: the upgraded request, to put in after the client's SETTINGS.
    splice: Option<Splice>,
}

impl<T: Transport> H2Conn<T> {
    /// Starts the server side on `transport`; `prefix` holds bytes already read from it
    /// (the preface, when sniffed on a cleartext port).
    pub(crate) fn new(
        transport: T,
        config: &H2Config,
        mut info: ConnInfo,
        prefix: &[u8],
        now: Instant,
    ) -> Self {
        let (pipes, io) = H2Pipes::new();
        pipes.push_rx(prefix);
        info.protocol = Protocol::Http2;
        H2Conn {
            transport: Some(transport),
            pipes,
            state: State::Handshaking(config.builder().handshake(io)),
            streams: Vec::new(),
            info,
            config: config.clone(),
            idle_since: now,
            created: now,
            going_away: false,
            guard: FrameGuard::new(
                config.max_control_frames,
                config.control_frames_per_sec,
                H2_PREFACE.len().saturating_sub(prefix.len()),
                now,
            ),
            pending_abrupt: None,
            waiting_since: None,
            away_since: None,
            kill: false,
            aborted: false,
            splice: None,
        }
    }

    /// Starts HTTP/2 after an h2c upgrade (`101` sent): the client's preface is still to
    /// come (`prefix` holds what was already read of it), and `frame` is the upgraded
    /// request as stream 1 (see `h2c`).
    pub(crate) fn new_upgraded(
        transport: T,
        config: &H2Config,
        info: ConnInfo,
        prefix: &[u8],
        frame: Vec<u8>,
        now: Instant,
    ) -> Self {
        let mut conn = H2Conn::new(transport, config, info, &[], now);
        conn.splice = Some(Splice::new(frame));
        let mut rest = prefix;
        while !rest.is_empty() {
            let n = conn.splice_in(rest, now);
            if n == 0 {
                break;
            }
            rest = &rest[n..];
        }
        conn
    }

    /// Takes client bytes while the upgraded request waits to be put in; returns how many
    /// were taken (after the request is in, all that fit).
    fn splice_in(&mut self, data: &[u8], now: Instant) -> usize {
        let allowed = match &self.splice {
            Some(splice) => splice.allow(data),
            None => data.len(),
        };
        let n = self.pipes.push_rx(&data[..allowed]);
        self.guard.inspect(&data[..n], now);
        if let Some(splice) = self.splice.as_mut() {
            splice.advance(&data[..n]);
            if splice.due() && self.pipes.rx_room() >= splice.frame.len() {
                self.pipes.push_rx(&splice.frame);
                self.splice = None;
            }
        }
        n
    }

    /// When the handshake, idle or stall timer fires.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let stall: smoltcp::time::Duration = self.config.stall_timeout.into();
        let timer = match self.state {
            State::Handshaking(_) => Some(self.created + self.config.handshake_timeout.into()),
            State::Open(_) if self.streams.is_empty() && !self.going_away => {
                Some(self.idle_since + self.config.idle_timeout.into())
            }
            _ => None,
        };
        [
            timer,
            self.waiting_since.map(|t| t + stall),
            self.away_since.map(|t| t + stall),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Acts on expired timers.
    pub(crate) fn on_timeout(&mut self, now: Instant) {
        let stall: smoltcp::time::Duration = self.config.stall_timeout.into();
        if self.away_since.is_some_and(|t| now >= t + stall) {
            tracing::info!(
                "{}: HTTP/2 peer did not finish after GOAWAY, resetting",
                self.info.peer_addr()
            );
            self.kill = true;
            return;
        }
        if self.waiting_since.is_some_and(|t| now >= t + stall) {
            tracing::info!(
                "{}: HTTP/2 connection stalled for {:?} waiting on the client, closing",
                self.info.peer_addr(),
                self.config.stall_timeout
            );
            self.waiting_since = None;
            if self.aborted {
                // Not even the GOAWAY got out.
                self.kill = true;
            } else {
                self.abrupt(Reason::ENHANCE_YOUR_CALM, now);
            }
            return;
        }
        match &mut self.state {
            State::Handshaking(_) if now >= self.created + self.config.handshake_timeout.into() => {
                tracing::debug!("{}: HTTP/2 handshake timed out", self.info.peer_addr());
                self.state = State::Closed;
            }
            State::Open(conn)
                if self.streams.is_empty()
                    && now >= self.idle_since + self.config.idle_timeout.into() =>
            {
                tracing::debug!(
                    "{}: HTTP/2 connection idle, sending GOAWAY",
                    self.info.peer_addr()
                );
                conn.graceful_shutdown();
                self.going_away = true;
                self.away_since.get_or_insert(now);
            }
            _ => {}
        }
    }

    /// Closes the connection with GOAWAY carrying `reason`; streams end at once.
    fn abrupt(&mut self, reason: Reason, now: Instant) {
        self.aborted = true;
        match &mut self.state {
            State::Open(conn) => {
                conn.abrupt_shutdown(reason);
                self.going_away = true;
                self.away_since.get_or_insert(now);
            }
            State::Handshaking(_) => {
                self.pending_abrupt = Some(reason);
                self.away_since.get_or_insert(now);
            }
            State::Closed => {}
        }
    }

    /// True when some stream waits on the client: for request data it has room for, for
    /// flow-control window, or for the client to read what was written.
    fn waiting_on_peer(&self) -> bool {
        self.pipes.tx_pending() > 0
            || self.streams.iter().any(|s| {
                // A quiet tunnel waits on its peer by nature; it is not a stall.
                if s.tunnelled {
                    return false;
                }
                let wants_data = s.recv.is_some() && s.sender.buffered() < STREAM_BODY_BUFFER;
                let wants_window =
                    matches!(&s.stage, Stage::Streaming(send, _) if send.capacity() == 0);
                wants_data || wants_window
            })
    }

    /// Starts a graceful shutdown: GOAWAY, in-flight streams finish.
    pub(crate) fn shutdown(&mut self, now: Instant) {
        match &mut self.state {
            State::Open(conn) => {
                conn.graceful_shutdown();
                self.going_away = true;
                self.away_since.get_or_insert(now);
            }
            State::Handshaking(_) => self.state = State::Closed,
            State::Closed => {}
        }
    }

    /// Closes the connection at once.
    pub(crate) fn abort(&mut self, stack: &mut Stack) {
        for s in &self.streams {
            s.sender
                .fail(BodyError::Incomplete("server shutting down".into()));
        }
        if let Some(t) = self.transport.take() {
            t.abort(stack);
        }
    }

    pub(crate) fn drive(
        &mut self,
        stack: &mut Stack,
        cx: &mut Context<'_>,
        now: Instant,
        service: &mut dyn Dispatch,
        shared: &Shared,
    ) -> Drive {
        if self.kill {
            return self.finish(stack, true);
        }
        let mut moved_streams = false;
        let mut progress = true;
        for _ in 0..TURNS {
            let Some(transport) = self.transport.as_mut() else {
                return Drive::Closed;
            };
            progress = false;
            if let Some(splice) = self.splice.as_ref() {
                if splice.due() && self.pipes.rx_room() >= splice.frame.len() {
                    self.pipes.push_rx(&splice.frame);
                    self.splice = None;
                }
            }
            if self.splice.is_some() {
                // Client bytes up to the upgraded request's place, then the request.
                let (pipes, guard, splice) = (&self.pipes, &mut self.guard, &mut self.splice);
                let mut taken = 0;
                let status = transport.read_with(stack, &mut |data| {
                    let Some(sp) = splice.as_mut() else {
                        return 0;
                    };
                    let n = pipes.push_rx(&data[..sp.allow(data)]);
                    guard.inspect(&data[..n], now);
                    sp.advance(&data[..n]);
                    if sp.due() && pipes.rx_room() >= sp.frame.len() {
                        pipes.push_rx(&sp.frame);
                        *splice = None;
                    }
                    taken += n;
                    n
                });
                shared.stats.borrow_mut().bytes_in += taken as u64;
                progress |= taken > 0;
                match status {
                    Ok(ReadStatus::Eof) => self.pipes.set_rx_eof(),
                    Ok(_) => {}
                    Err(_) => return self.finish(stack, true),
                }
            }
            let Some(transport) = self.transport.as_mut() else {
                return Drive::Closed;
            };
            // Transport → h2, counting the client's control frames on the way (once the
            // upgraded request is in).
            let guard = &mut self.guard;
            let mut inspect = |data: &[u8]| guard.inspect(data, now);
            if self.splice.is_none() {
                match self.pipes.fill_from_inspect(transport, stack, &mut inspect) {
                    Ok(moved) => {
                        shared.stats.borrow_mut().bytes_in += moved.bytes as u64;
                        progress |= moved.any();
                    }
                    Err(_) => return self.finish(stack, true),
                }
            }
            if self.guard.flooded() && !self.going_away && self.pending_abrupt.is_none() {
                tracing::info!(
                    "{}: HTTP/2 control frame flood (PING/SETTINGS/PRIORITY/RST_STREAM), \
                     closing with ENHANCE_YOUR_CALM",
                    self.info.peer_addr()
                );
                self.abrupt(Reason::ENHANCE_YOUR_CALM, now);
            }
            let moved = self.poll_h2(cx, service, shared, now);
            moved_streams |= moved;
            progress |= moved;
            // h2 → transport.
            let Some(transport) = self.transport.as_mut() else {
                return Drive::Closed;
            };
            match self.pipes.flush_to(transport, stack) {
                Ok(written) => {
                    shared.stats.borrow_mut().bytes_out += written as u64;
                    progress |= written > 0;
                }
                Err(_) => return self.finish(stack, true),
            }
            if matches!(self.state, State::Closed) && self.pipes.tx_pending() == 0 {
                return self.finish(stack, false);
            }
            if !progress {
                break;
            }
        }
        if progress {
            crate::runtime::wake::out_of_turns(cx);
        }
        if !self.streams.is_empty() {
            self.idle_since = now;
        }
        // The stall timer runs while streams wait on the client and nothing moves.
        if !self.waiting_on_peer() {
            self.waiting_since = None;
        } else if moved_streams || self.waiting_since.is_none() {
            self.waiting_since = Some(now);
        }
        // After GOAWAY, the reset timer runs once the last stream is gone.
        if self.away_since.is_some() && !self.streams.is_empty() {
            self.away_since = Some(now);
        }
        if let Some(transport) = self.transport.as_mut() {
            let read = !self.pipes.rx_eof();
            let write = self.pipes.tx_pending() > 0;
            transport.register(stack, cx.waker(), read, write);
        }
        Drive::Open
    }

    fn finish(&mut self, stack: &mut Stack, reset: bool) -> Drive {
        for s in self.streams.drain(..) {
            s.sender
                .fail(BodyError::Incomplete("connection closed".into()));
        }
        self.state = State::Closed;
        if let Some(t) = self.transport.take() {
            t.end(stack, reset);
        }
        Drive::Closed
    }

    /// Polls h2: handshake, new streams, stream progress. True when anything moved.
    fn poll_h2(
        &mut self,
        cx: &mut Context<'_>,
        service: &mut dyn Dispatch,
        shared: &Shared,
        now: Instant,
    ) -> bool {
        let mut progress = false;
        if let State::Handshaking(handshake) = &mut self.state {
            match Pin::new(handshake).poll(cx) {
                Poll::Pending => return false,
                Poll::Ready(Ok(mut conn)) => {
                    if let Some(reason) = self.pending_abrupt.take() {
                        conn.abrupt_shutdown(reason);
                        self.going_away = true;
                    }
                    self.state = State::Open(conn);
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    tracing::debug!("{}: HTTP/2 handshake failed: {e}", self.info.peer_addr());
                    self.state = State::Closed;
                    return true;
                }
            }
        }
        let State::Open(conn) = &mut self.state else {
            return progress;
        };
        // Accepting also drives the connection: reads frames, writes queued ones.
        loop {
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok((request, mut respond)))) => {
                    progress = true;
                    if host_differs_from_authority(&request) {
                        // Malformed (RFC 9113 §8.3.1, §8.1.1): a stream error.
                        shared.stats.borrow_mut().rejected += 1;
                        respond.send_reset(Reason::PROTOCOL_ERROR);
                        continue;
                    }
                    let task = start_stream(request, respond, shared, now);
                    self.streams.push(task);
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!("{}: HTTP/2 connection error: {e}", self.info.peer_addr());
                    if e.is_go_away() || e.is_io() || e.reason().is_some() {
                        self.state = State::Closed;
                    }
                    return true;
                }
                Poll::Ready(None) => {
                    self.state = State::Closed;
                    return true;
                }
                Poll::Pending => break,
            }
        }
        let info = &self.info;
        // The service takes the new requests as it becomes ready.
        let queued = |task: &StreamTask| matches!(task.stage, Stage::Queued(_));
        progress |=
            dispatch::call_in_order(service, cx, &mut self.streams, queued, |task, answer| {
                if let Stage::Queued(request) = std::mem::replace(&mut task.stage, Stage::Done) {
                    task.stage = Stage::Waiting(answer(*request, info));
                }
            });
        let mut i = 0;
        while i < self.streams.len() {
            progress |= advance_stream(&mut self.streams[i], cx, shared, now);
            if matches!(self.streams[i].stage, Stage::Done) && self.streams[i].recv.is_none() {
                let task = self.streams.swap_remove(i);
                if task.tunnelled {
                    shared.stats.borrow_mut().tunnel_closed();
                }
                log_access(info, &task, now);
            } else {
                i += 1;
            }
        }
        // Frames queued by the streams go out on the next poll of the connection.
        if progress {
            if let State::Open(conn) = &mut self.state {
                if let Poll::Ready(Some(Ok((request, respond)))) = conn.poll_accept(cx) {
                    let task = start_stream(request, respond, shared, now);
                    self.streams.push(task);
                }
            }
        }
        progress
    }
}

/// True when a request carries both `:authority` and a `Host` naming another origin (the
/// same host with the scheme's default port written out is the same origin).
fn host_differs_from_authority<B>(request: &Request<B>) -> bool {
    let (Some(authority), Some(host)) = (request.uri().authority(), request.headers().get(HOST))
    else {
        return false;
    };
    let default_port = match request.uri().scheme_str() {
        Some("https") => ":443",
        _ => ":80",
    };
    let normal = |s: &str| {
        let s = s.to_ascii_lowercase();
        match s.strip_suffix(default_port) {
            Some(bare) => bare.to_string(),
            None => s,
        }
    };
    match host.to_str() {
        Ok(host) => normal(host) != normal(authority.as_str()),
        Err(_) => true,
    }
}

fn start_stream(
    request: Request<RecvStream>,
    respond: SendResponse<Bytes>,
    shared: &Shared,
    now: Instant,
) -> StreamTask {
    let (mut parts, recv) = request.into_parts();
    if let Some(protocol) = parts.extensions.remove::<h2::ext::Protocol>() {
        parts
            .extensions
            .insert(ConnectProtocol(protocol.as_str().to_string()));
    }
    // Handlers see the same request as over HTTP/1.1: `:authority` becomes Host.
    if !parts.headers.contains_key(HOST) {
        if let Some(value) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(HOST, value);
        }
    }
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let ended = recv.is_end_stream();
    let (sender, body) = request_body(if ended { Some(0) } else { declared });
    if ended {
        sender.finish();
    }
    let method = parts.method.clone();
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.to_string());
    shared.stats.borrow_mut().note_request(Protocol::Http2);
    let tunnel_rx = (method == Method::CONNECT).then(|| body.clone());
    let request = Request::from_parts(parts, body);
    let stage = match shared.answer_itself(&request) {
        Some(response) => Stage::Waiting(super::Reply::Now(response).into_answer()),
        None => Stage::Queued(Box::new(request)),
    };
    StreamTask {
        method,
        target,
        started: now,
        status: StatusCode::OK,
        body_bytes: 0,
        recv: (!ended).then_some(recv),
        sender,
        respond: Some(respond),
        stage,
        tunnel_rx,
        tunnel: None,
        tunnelled: false,
    }
}

/// Moves one stream along: request body in, response out. True when anything moved.
fn advance_stream(
    task: &mut StreamTask,
    cx: &mut Context<'_>,
    shared: &Shared,
    now: Instant,
) -> bool {
    let mut progress = false;
    if let Some(tunnel) = task.tunnel.as_mut() {
        if tunnel.as_mut().poll(cx).is_ready() {
            task.tunnel = None;
            progress = true;
        }
    }
    // Request body → pipe, releasing flow-control capacity as it goes in.
    if let Some(recv) = task.recv.as_mut() {
        let (moved, over) = receive_body(recv, &task.sender, cx);
        progress |= moved;
        if over {
            task.recv = None;
        }
    }
    loop {
        match &mut task.stage {
            Stage::Done | Stage::Queued(_) => return progress,
            Stage::Waiting(future) => match future.as_mut().poll(cx) {
                Poll::Pending => return progress,
                Poll::Ready(answer) => {
                    progress = true;
                    let (mut parts, mut body) = answer.response.into_parts();
                    // A 2xx to CONNECT makes the stream a tunnel (RFC 9113 §8.5): DATA
                    // frames both ways, the response never declares a length.
                    let rx = task.tunnel_rx.take();
                    if let Some(rx) = rx.filter(|_| parts.status.is_success()) {
                        let (tx, outgoing) = request_body(None);
                        let user = Tunnel::from_parts(rx, tx, TUNNEL_BUFFER);
                        task.tunnel = answer.tunnel.map(|start| start(user));
                        body = Body::stream(outgoing);
                        task.tunnelled = true;
                        shared.stats.borrow_mut().tunnel_opened();
                    }
                    shared.stamp(&mut parts.headers, now);
                    for name in CONNECTION_HEADERS {
                        parts.headers.remove(HeaderName::from_static(name));
                    }
                    let len = body.len();
                    let head_only = task.method == Method::HEAD
                        || parts.status == StatusCode::NO_CONTENT
                        || parts.status == StatusCode::NOT_MODIFIED;
                    if let Some(len) = len {
                        if parts.status != StatusCode::NO_CONTENT {
                            parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
                        }
                    }
                    task.status = parts.status;
                    let end = head_only || len == Some(0);
                    let Some(mut respond) = task.respond.take() else {
                        task.stage = Stage::Done;
                        continue;
                    };
                    match respond.send_response(Response::from_parts(parts, ()), end) {
                        Ok(send) if !end => task.stage = Stage::Streaming(send, body),
                        Ok(_) => task.stage = Stage::Done,
                        Err(e) => {
                            tracing::debug!("HTTP/2 response not sent: {e}");
                            task.stage = Stage::Done;
                        }
                    }
                }
            },
            Stage::Streaming(send, body) => {
                let (pumped, sent) = send_body(send, body, cx, Reason::INTERNAL_ERROR);
                task.body_bytes += sent;
                progress |= sent > 0;
                match pumped {
                    Pumped::Blocked => return progress,
                    Pumped::Finished | Pumped::PeerGone => {
                        progress = true;
                        task.stage = Stage::Done;
                    }
                    Pumped::Failed(e) => {
                        progress = true;
                        tracing::warn!("HTTP/2 response body failed: {e}");
                        task.stage = Stage::Done;
                    }
                }
            }
        }
    }
}

fn log_access(info: &ConnInfo, task: &StreamTask, now: Instant) {
    let micros = (now - task.started).total_micros();
    tracing::info!(
        target: "tapir::access",
        "{} \"{} {} HTTP/2\" {} {} {}.{:03}ms",
        info.peer_addr(),
        task.method,
        task.target,
        task.status.as_u16(),
        task.body_bytes,
        micros / 1000,
        micros % 1000
    );
}
