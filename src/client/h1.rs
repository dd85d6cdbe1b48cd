//! An HTTP/1.1 client connection: the sans-IO engine ([`crate::http::h1::ClientConn`]) over
//! a transport. One exchange at a time; the connection is kept for the next request to the
//! same origin while the server allows it (keep-alive). The engine's timers run the
//! connection's timeouts: the response-head timeout (the client's `request_timeout`) and
//! the keep-alive idle timeout.

use http::header::{HeaderValue, HOST, TRAILER};
use http::{Response, Uri};
use smoltcp::time::Instant;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::{ClientConfig, ClientError, ExchangeRef, Mode, Target};
use crate::conn::body::{request_body, Body, BodyError, BodySender, BodyStream, ResponseBody};
use crate::conn::pump::Pump;
use crate::conn::upgrade::{Tunnel, TUNNEL_BUFFER};
use crate::conn::Drive;
use crate::error::Chain;
use crate::http::h1::{
    ClientConfig as H1Config, ClientConn, ClientEvent, ExchangeId, ProtocolError, ResponseFraming,
};
use crate::http::{engine_time, stack_time};
use crate::runtime::wake::TURNS;
use crate::stack::Stack;
use crate::transport::{ReadStatus, Transport, TransportError};

struct Current {
    exchange: ExchangeRef,
    id: ExchangeId,
    upload: Option<Body>,
    body: Option<BodySender>,
}

/// One HTTP/1.1 connection to an origin.
pub(crate) struct H1Client<T: Transport> {
    transport: Option<T>,
    engine: ClientConn,
    current: Option<Current>,
    authority: HeaderValue,
    /// The client's request timeout (the engine's response-head timeout), for its error.
    request_timeout: Option<std::time::Duration>,
    /// After a switching response: the connection's end of the caller's tunnel, until the
    /// pump takes over.
    switched: Option<Tunnel>,
    /// The connection is a tunnel.
    pump: Option<Pump<T>>,
}

impl<T: Transport> H1Client<T> {
    pub(crate) fn new(transport: T, target: &Target, config: &ClientConfig, now: Instant) -> Self {
        let authority = HeaderValue::from_str(&target.authority())
            .unwrap_or_else(|_| HeaderValue::from_static("localhost"));
        let engine = H1Config {
            response_timeout: config.request_timeout,
            idle_timeout: config.idle_timeout,
            ..H1Config::default()
        };
        H1Client {
            transport: Some(transport),
            engine: ClientConn::new(Arc::new(engine), engine_time(now)),
            current: None,
            authority,
            request_timeout: config.request_timeout,
            switched: None,
            pump: None,
        }
    }

    /// True when the connection can take a request now.
    pub(crate) fn is_idle(&self) -> bool {
        self.current.is_none() && self.transport.is_some() && self.engine.is_reusable()
    }

    /// Sends `exchange`'s request on this connection (which must be idle).
    pub(crate) fn assign(&mut self, exchange: ExchangeRef, now: Instant) {
        let request = exchange.borrow_mut().request.take();
        let Some(request) = request else {
            return;
        };
        let (mut parts, body) = request.into_parts();
        if !parts.headers.contains_key(HOST) {
            parts.headers.insert(HOST, self.authority.clone());
        }
        // Origin form: the path and query only.
        if let Some(path) = parts.uri.path_and_query() {
            if let Ok(uri) = path.as_str().parse::<Uri>() {
                parts.uri = uri;
            }
        }
        // Declared trailer fields need the chunked coding's trailer section.
        let len = body.len().filter(|_| !parts.headers.contains_key(TRAILER));
        match self.engine.send_request(parts, len, engine_time(now)) {
            Ok(id) => {
                self.current = Some(Current {
                    exchange,
                    id,
                    upload: Some(body),
                    body: None,
                })
            }
            Err(e) => exchange.borrow_mut().fail(ClientError::Http1Request(e)),
        }
    }

    /// When the engine's next timer (response head, idle) fires, or the tunnel's.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match &self.pump {
            Some(pump) => pump.deadline(),
            None => self.engine.poll_timeout().map(stack_time),
        }
    }

    pub(crate) fn close(&mut self, stack: &mut Stack) {
        if let Some(pump) = self.pump.as_mut() {
            pump.close(stack, "client shut down");
        }
        if let Some(c) = self.current.take() {
            c.exchange
                .borrow_mut()
                .fail(ClientError::Connection("client shut down".into()));
        }
        if let Some(t) = self.transport.take() {
            t.close(stack);
        }
    }

    fn fail(&mut self, stack: &mut Stack, error: ClientError) {
        if let Some(c) = self.current.take() {
            if let Some(body) = &c.body {
                body.fail(BodyError::Incomplete(Chain(&error).to_string()));
            }
            c.exchange.borrow_mut().fail(error);
        }
        if let Some(t) = self.transport.take() {
            t.abort(stack);
        }
    }

    /// Does the work that is ready. `Ok(false)` when the connection is finished (closed by
    /// either side while idle); `Err` when it failed with a request in flight.
    pub(crate) fn drive(
        &mut self,
        stack: &mut Stack,
        cx: &mut Context<'_>,
        now: Instant,
    ) -> Result<bool, ClientError> {
        if let Some(pump) = self.pump.as_mut() {
            return Ok(pump.drive(stack, cx, now) == Drive::Open);
        }
        // Expired timers: a late response head fails the exchange (below, as an engine
        // event); an idle connection closes.
        self.engine.handle_timeout(engine_time(now));
        let mut progress = true;
        for _ in 0..TURNS {
            progress = false;
            // Upload the request body within the engine's output buffer.
            if let Some(current) = self.current.as_mut() {
                while let Some(body) = current.upload.as_mut() {
                    let room = self.engine.send_capacity();
                    if room == 0 {
                        break;
                    }
                    match body.poll_chunk(cx, room) {
                        Poll::Pending => break,
                        Poll::Ready(Some(Ok(chunk))) => {
                            progress = true;
                            if let Err(e) = self.engine.send_body(current.id, &chunk) {
                                let error = ClientError::request_body(e);
                                self.fail(stack, error.clone());
                                return Err(error);
                            }
                        }
                        Poll::Ready(None) => {
                            progress = true;
                            let trailers = body.take_trailers();
                            let _ = self
                                .engine
                                .finish_request_with_trailers(current.id, trailers.as_ref());
                            current.upload = None;
                        }
                        Poll::Ready(Some(Err(e))) => {
                            let error = ClientError::request_body(e);
                            self.fail(stack, error.clone());
                            return Err(error);
                        }
                    }
                }
            }
            let Some(transport) = self.transport.as_mut() else {
                return Ok(false);
            };
            // Output.
            while !self.engine.pending_output().is_empty() {
                match transport.write(stack, self.engine.pending_output()) {
                    Ok(0) => break,
                    Ok(n) => {
                        self.engine.consume_output(n);
                        progress = true;
                    }
                    Err(e) => return self.lost(stack, e),
                }
            }
            // Input, unless the response body pipe is full.
            let full = self
                .current
                .as_ref()
                .and_then(|c| c.body.as_ref())
                .is_some_and(|b| b.buffered() >= 64 * 1024);
            if full {
                if let Some(body) = self.current.as_ref().and_then(|c| c.body.as_ref()) {
                    body.park(cx.waker());
                }
            } else {
                let engine = &mut self.engine;
                let mut taken = 0usize;
                let t = engine_time(now);
                let status = transport.read_with(stack, &mut |data| {
                    let n = engine.handle_input(data, t);
                    taken += n;
                    n
                });
                progress |= taken > 0;
                match status {
                    Ok(ReadStatus::Eof) => {
                        self.engine.handle_eof();
                        progress = true;
                    }
                    Ok(_) => {}
                    Err(e) => return self.lost(stack, e),
                }
            }
            match self.events() {
                Ok(any) => progress |= any,
                Err(error) => {
                    // The engine failed (a broken or late response): reset the connection.
                    if let Some(t) = self.transport.take() {
                        t.abort(stack);
                    }
                    return Err(error);
                }
            }
            if self.engine.is_upgraded() && self.engine.pending_output().is_empty() {
                if let (Some(end), Some(transport)) = (self.switched.take(), self.transport.take())
                {
                    // The rest of the stream, starting with any bytes after the response
                    // head (left unread by the engine), is the tunnel's.
                    let mut pump = Pump::new(transport, end, bytes::Bytes::new(), None, now);
                    let state = pump.drive(stack, cx, now);
                    self.pump = Some(pump);
                    return Ok(state == Drive::Open);
                }
                // Switched without anyone to take the stream: close.
                if let Some(t) = self.transport.take() {
                    t.close(stack);
                }
                return Ok(false);
            }
            if self.engine.is_closed() && self.engine.pending_output().is_empty() {
                if let Some(t) = self.transport.take() {
                    t.close(stack);
                }
                if let Some(c) = self.current.take() {
                    c.exchange.borrow_mut().fail(ClientError::Connection(
                        "the server closed the connection".into(),
                    ));
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
        if let Some(t) = self.transport.as_mut() {
            let write = !self.engine.pending_output().is_empty();
            t.register(stack, cx.waker(), true, write);
        }
        Ok(true)
    }

    /// The transport failed: an error for a request in flight, a quiet end otherwise.
    fn lost(&mut self, stack: &mut Stack, reason: TransportError) -> Result<bool, ClientError> {
        if self.current.is_some() {
            let error = ClientError::Transport(reason);
            self.fail(stack, error.clone());
            Err(error)
        } else {
            if let Some(t) = self.transport.take() {
                t.abort(stack);
            }
            Ok(false)
        }
    }

    fn events(&mut self) -> Result<bool, ClientError> {
        let mut any = false;
        while let Some(event) = self.engine.poll_event() {
            any = true;
            let Some(current) = self.current.as_mut() else {
                // Events with no request in flight: the server spoke out of turn.
                if let ClientEvent::Failed { error, .. } = event {
                    tracing::debug!("idle HTTP/1.1 connection failed: {error}");
                }
                continue;
            };
            match event {
                ClientEvent::Interim { .. } => {}
                ClientEvent::Response { head, .. }
                    if self.engine.is_upgraded()
                        && current.exchange.borrow().mode == Mode::Upgrade =>
                {
                    // 101, or 2xx to CONNECT: the caller gets the stream as a tunnel.
                    let (user, end) = Tunnel::pair(TUNNEL_BUFFER);
                    let (parts, ()) = head.into_parts();
                    let mut ex = current.exchange.borrow_mut();
                    ex.tunnel = Some(user);
                    ex.respond(Ok(Response::from_parts(parts, ResponseBody::empty())));
                    drop(ex);
                    self.switched = Some(end);
                }
                ClientEvent::Response { head, body, .. } => {
                    let declared = match body {
                        ResponseFraming::None => Some(0),
                        ResponseFraming::Length(n) => Some(n),
                        ResponseFraming::Chunked | ResponseFraming::CloseDelimited => None,
                    };
                    let (sender, stream) = request_body(declared);
                    let (parts, ()) = head.into_parts();
                    current
                        .exchange
                        .borrow_mut()
                        .respond(Ok(Response::from_parts(parts, stream)));
                    current.body = Some(sender);
                }
                ClientEvent::Body { data, .. } => {
                    if let Some(body) = &current.body {
                        body.push(data);
                    }
                }
                ClientEvent::Trailers { trailers, .. } => {
                    // Trailers end the body (the `BodyEnd` after them changes nothing).
                    if let Some(body) = &current.body {
                        body.finish_with_trailers(trailers);
                    }
                }
                ClientEvent::BodyEnd { .. } => {
                    if let Some(body) = &current.body {
                        body.finish();
                    }
                    // The exchange is over (a server may answer before the upload ends;
                    // the engine then does not reuse the connection).
                    self.current = None;
                }
                ClientEvent::Failed { error, .. } => {
                    let error = match (error, self.request_timeout) {
                        (ProtocolError::HeadTimeout, Some(limit)) => ClientError::Timeout(limit),
                        (error, _) => ClientError::Http1(error),
                    };
                    if let Some(c) = self.current.take() {
                        if let Some(body) = &c.body {
                            body.fail(BodyError::Incomplete(Chain(&error).to_string()));
                        }
                        c.exchange.borrow_mut().fail(error.clone());
                    }
                    return Err(error);
                }
            }
        }
        Ok(any)
    }
}
