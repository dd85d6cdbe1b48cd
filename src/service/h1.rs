//! An HTTP/1.1 connection: the sans-IO engine ([`crate::http::h1`]) joined to a transport and
//! the handler. Requests become handler calls; replies are written in request order, their
//! bodies pulled only as fast as the socket takes them: on plain TCP a body is written
//! straight into the socket's send buffer once its head is out (`/bytes/N` and files are
//! made there, other bodies copied there once); otherwise (TLS, a chunk that does not fit
//! the buffer's free part) through the engine's output buffer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use smoltcp::time::Instant;

use super::dispatch::{self, AnswerFuture, Dispatch};
use super::shared::Shared;
use super::{Body, ConnInfo, Protocol, Reply};
use crate::conn::body::{request_body, BodyError, BodySender, BodyStream, Incoming};
use crate::conn::pump::Pump;
use crate::conn::upgrade::{Tunnel, TunnelTask, TUNNEL_BUFFER};
use crate::conn::Drive;
use crate::http::h1::{BodyFraming, H1Config, InPlaceWrite, RequestId, ServerConn, ServerEvent};
use crate::runtime::wake::TURNS;
use crate::stack::Stack;
use crate::transport::{ReadStatus, Transport, TransportError};

enum Stage {
    /// Waiting for the service to be ready to take the request.
    Queued(Box<(Request<Incoming>, ConnInfo)>),
    /// Waiting for the handler's future.
    Waiting(AnswerFuture),
    /// Sending the body.
    Streaming(Body),
    /// Response complete.
    Done,
}

struct Task {
    id: RequestId,
    method: Method,
    /// For the access log (a clone shares the target's bytes: no formatting per request).
    target: http::Uri,
    protocol: Protocol,
    started: Instant,
    stage: Stage,
    sender: BodySender,
    expect_continue: bool,
    status: StatusCode,
    body_bytes: u64,
}

pub(crate) use crate::http::{engine_time, stack_time};

/// How long an HTTP/1.1 connection waits for its next request with its engine before it is
/// parked ([`H1Conn::park`]). A busy keep-alive connection (the next request within this)
/// keeps its engine, queues and buffers instead of freeing and making them again for every
/// request; one that stays idle longer holds no engine memory. Short next to every
/// measurement of idle memory (they wait at least half a second before they count).
pub(crate) const PARK_AFTER: smoltcp::time::Duration = smoltcp::time::Duration::from_millis(200);

/// An HTTP/1.1 connection between two requests, put aside by [`H1Conn::park`]: the
/// transport and what [`Parked::resume`] needs to make the connection again when the next
/// request comes (the engine, its queues and buffers are gone meanwhile).
pub(crate) struct Parked<T: Transport> {
    transport: T,
    info: ConnInfo,
    h2c_allowed: bool,
    idle_since: Instant,
}

impl<T: Transport> Parked<T> {
    /// The connection again, its idle timer running since it became idle.
    pub(crate) fn resume(self, config: Arc<H1Config>) -> H1Conn<T> {
        let mut conn = H1Conn::new(self.transport, config, self.info, &[], self.idle_since);
        conn.h2c_allowed = self.h2c_allowed;
        conn
    }

    /// Closes the connection gracefully.
    pub(crate) fn close(self, stack: &mut Stack) {
        self.transport.close(stack);
    }

    /// Resets the connection.
    pub(crate) fn abort(self, stack: &mut Stack) {
        self.transport.abort(stack);
    }
}

/// One HTTP/1.1 connection.
pub(crate) struct H1Conn<T: Transport> {
    transport: Option<T>,
    engine: ServerConn,
    info: ConnInfo,
    tasks: VecDeque<Task>,
    body_buffer: usize,
    /// Bytes read before the engine existed (while sniffing for HTTP/2), fed first.
    prefix: Vec<u8>,
    /// The task that takes the connection after a switching response.
    switch_task: Option<TunnelTask>,
    /// After the switch: the connection is a tunnel.
    pump: Option<Pump<T>>,
    /// `Upgrade: h2c` is honoured (cleartext ports that also take HTTP/2).
    h2c_allowed: bool,
    /// The upgraded request as an HTTP/2 HEADERS frame on stream 1, once `101` is queued.
    h2c_frame: Option<Vec<u8>>,
    /// After the `101`: the transport and the bytes read past the request, for HTTP/2.
    h2c_ready: Option<(T, Vec<u8>, Vec<u8>)>,
    /// A body written in place waits for room in the send buffer.
    waits_for_room: bool,
}

impl<T: Transport> H1Conn<T> {
    /// Starts serving `transport`; `prefix` holds bytes already read from it.
    pub(crate) fn new(
        transport: T,
        config: Arc<H1Config>,
        info: ConnInfo,
        prefix: &[u8],
        now: Instant,
    ) -> Self {
        let body_buffer = config.max_body_buffer;
        H1Conn {
            transport: Some(transport),
            engine: ServerConn::new(config, engine_time(now)),
            info,
            tasks: VecDeque::new(),
            body_buffer,
            prefix: prefix.to_vec(),
            switch_task: None,
            pump: None,
            h2c_allowed: false,
            h2c_frame: None,
            h2c_ready: None,
            waits_for_room: false,
        }
    }

    /// Honours `Upgrade: h2c` (RFC 7540 §3.2): `101`, then HTTP/2 with the request as
    /// stream 1.
    pub(crate) fn allow_h2c_upgrade(&mut self) {
        self.h2c_allowed = true;
    }

    /// After an h2c upgrade: the transport, the client bytes already read (its preface,
    /// maybe) and the upgraded request as a HEADERS frame for stream 1.
    pub(crate) fn take_h2c(&mut self) -> Option<(T, Vec<u8>, Vec<u8>, ConnInfo)> {
        let (transport, prefix, frame) = self.h2c_ready.take()?;
        Some((transport, prefix, frame, self.info.clone()))
    }

    /// When the engine's timers (head, idle) next fire.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match &self.pump {
            Some(pump) => pump.deadline(),
            None => self.engine.poll_timeout().map(stack_time),
        }
    }

    /// Feeds the time to the engine's timers.
    pub(crate) fn on_timeout(&mut self, now: Instant, shared: &Shared) {
        self.stamp_responses(shared, now);
        self.engine.handle_timeout(engine_time(now));
    }

    /// Gives the engine the `Date` and `Server` of this instant for every response it
    /// writes, its own error responses (400, 408, 413, ...) included.
    fn stamp_responses(&mut self, shared: &Shared, now: Instant) {
        self.engine.set_default_fields(&shared.h1_fields(now));
    }

    /// Closes an idle connection gracefully (shutdown).
    pub(crate) fn close(&mut self, stack: &mut Stack, shared: &Shared) {
        if let Some(mut pump) = self.pump.take() {
            pump.close(stack, "server shutting down");
            shared.stats.borrow_mut().tunnel_closed();
        }
        if let Some(t) = self.transport.take() {
            t.close(stack);
        }
    }

    /// Resets the connection (the shutdown grace period is over); an open tunnel too.
    pub(crate) fn abort(&mut self, stack: &mut Stack, shared: &Shared) {
        for t in &self.tasks {
            t.sender
                .fail(super::BodyError::Incomplete("server shutting down".into()));
        }
        if let Some(mut pump) = self.pump.take() {
            pump.abort(stack, "server shutting down");
            shared.stats.borrow_mut().tunnel_closed();
        }
        if let Some(t) = self.transport.take() {
            t.abort(stack);
        }
    }

    /// Since when the connection waits for its next request with nothing in progress,
    /// if it does.
    fn quiet_since(&self) -> Option<Instant> {
        let quiet = self.tasks.is_empty()
            && self.prefix.is_empty()
            && self.switch_task.is_none()
            && self.pump.is_none()
            && self.h2c_frame.is_none()
            && self.h2c_ready.is_none();
        self.engine.idle_since().filter(|_| quiet).map(stack_time)
    }

    /// When a connection waiting for its next request will be parked ([`PARK_AFTER`]
    /// after it became idle); `None` while it is busy.
    pub(crate) fn park_at(&self) -> Option<Instant> {
        self.quiet_since().map(|since| since + PARK_AFTER)
    }

    /// Puts the connection aside when it has waited [`PARK_AFTER`] for its next request
    /// with nothing in progress at `now` (see [`Parked`]); gives it back unchanged
    /// otherwise.
    pub(crate) fn park(mut self: Box<Self>, now: Instant) -> Result<Parked<T>, Box<Self>> {
        let Some(since) = self.quiet_since().filter(|&s| now >= s + PARK_AFTER) else {
            return Err(self);
        };
        let Some(transport) = self.transport.take() else {
            return Err(self);
        };
        Ok(Parked {
            transport,
            info: self.info,
            h2c_allowed: self.h2c_allowed,
            idle_since: since,
        })
    }

    /// True when the connection has no request in progress (safe to close on shutdown); a
    /// tunnel counts as idle: it has no end a shutdown could wait for.
    pub(crate) fn is_idle(&self) -> bool {
        self.pump.is_some() || (self.tasks.is_empty() && self.engine.pending_output().is_empty())
    }

    fn body_backpressure(&self) -> bool {
        self.tasks
            .iter()
            .any(|t| t.sender.buffered() >= self.body_buffer)
    }

    /// Does all the work that is ready: reads, calls the handler, writes.
    pub(crate) fn drive(
        &mut self,
        stack: &mut Stack,
        cx: &mut Context<'_>,
        now: Instant,
        service: &mut dyn Dispatch,
        shared: &Shared,
    ) -> Drive {
        if self.pump.is_some() {
            return self.drive_pump_once(stack, cx, now, shared);
        }
        self.stamp_responses(shared, now);
        let t = engine_time(now);
        let mut progress = true;
        for _ in 0..TURNS {
            progress = false;
            // Input, unless the engine or a request body is full.
            let full = self.body_backpressure();
            if full {
                // Whoever reads the full body wakes us when there is room again.
                for task in &self.tasks {
                    task.sender.park(cx.waker());
                }
            }
            let reading = self.engine.wants_input() && !full;
            let Some(transport) = self.transport.as_mut() else {
                return Drive::Closed;
            };
            if reading && !self.prefix.is_empty() {
                let n = self.engine.handle_input(&self.prefix, t);
                self.prefix.drain(..n);
                progress |= n > 0;
            }
            if reading && self.prefix.is_empty() {
                let engine = &mut self.engine;
                let mut taken = 0usize;
                let status = transport.read_with(stack, &mut |data| {
                    let n = engine.handle_input(data, t);
                    taken += n;
                    n
                });
                shared.stats.borrow_mut().bytes_in += taken as u64;
                progress |= taken > 0;
                match status {
                    Ok(ReadStatus::Eof) => {
                        self.engine.handle_eof(t);
                        progress = true;
                    }
                    Ok(_) => {}
                    Err(_) => return self.finish(stack, true),
                }
            }

            progress |= self.handle_events(shared, now);
            progress |= self.call_service(cx, service);
            match self.advance_tasks(cx, stack, shared, now) {
                Ok(any) => progress |= any,
                Err(_) => return self.finish(stack, true),
            }

            // Output.
            let Some(transport) = self.transport.as_mut() else {
                return Drive::Closed;
            };
            match write_output(transport, stack, &mut self.engine, t, shared) {
                Ok(any) => progress |= any,
                Err(_) => return self.finish(stack, true),
            }
            if self.engine.is_closed() && self.engine.pending_output().is_empty() {
                // A stalled connection (its peer stopped reading) is reset: its unsent
                // data would otherwise hold the socket until the close timeout.
                return self.finish(stack, self.engine.is_stalled());
            }
            if self.engine.is_upgraded() {
                return self.switch(stack, cx, now, shared);
            }
            if !progress {
                break;
            }
        }
        if progress {
            crate::runtime::wake::out_of_turns(cx);
        }
        if let Some(transport) = self.transport.as_mut() {
            let read = self.engine.wants_input();
            let write = !self.engine.pending_output().is_empty() || self.waits_for_room;
            transport.register(stack, cx.waker(), read, write);
        }
        Drive::Open
    }

    /// The switching response is out: the connection becomes a tunnel run by the handler's
    /// task (no task: it closes).
    fn switch(
        &mut self,
        stack: &mut Stack,
        cx: &mut Context<'_>,
        now: Instant,
        shared: &Shared,
    ) -> Drive {
        let Some(transport) = self.transport.take() else {
            return Drive::Closed;
        };
        if let Some(frame) = self.h2c_frame.take() {
            // The server turns this connection into an HTTP/2 one (take_h2c).
            let prefix = std::mem::take(&mut self.prefix);
            self.h2c_ready = Some((transport, prefix, frame));
            return Drive::Open;
        }
        let (user, end) = Tunnel::pair(TUNNEL_BUFFER);
        let task = self.switch_task.take().map(|task| task(user));
        let prefix = Bytes::from(std::mem::take(&mut self.prefix));
        shared.stats.borrow_mut().tunnel_opened();
        tracing::debug!("{}: connection switched to a tunnel", self.info.peer_addr());
        self.pump = Some(Pump::new(transport, end, prefix, task, now));
        self.drive_pump_once(stack, cx, now, shared)
    }

    fn drive_pump_once(
        &mut self,
        stack: &mut Stack,
        cx: &mut Context<'_>,
        now: Instant,
        shared: &Shared,
    ) -> Drive {
        let Some(pump) = self.pump.as_mut() else {
            return Drive::Closed;
        };
        let (bytes_in, bytes_out) = pump.bytes();
        let state = pump.drive(stack, cx, now);
        let mut stats = shared.stats.borrow_mut();
        stats.bytes_in += pump.bytes().0 - bytes_in;
        stats.bytes_out += pump.bytes().1 - bytes_out;
        if state == Drive::Closed {
            stats.tunnel_closed();
            self.pump = None;
            return Drive::Closed;
        }
        Drive::Open
    }

    fn finish(&mut self, stack: &mut Stack, reset: bool) -> Drive {
        for task in self.tasks.drain(..) {
            task.sender
                .fail(super::BodyError::Incomplete("connection closed".into()));
        }
        if let Some(t) = self.transport.take() {
            t.end(stack, reset);
        }
        Drive::Closed
    }

    /// Hands the queued requests, in order, to the service as it becomes ready.
    fn call_service(&mut self, cx: &mut Context<'_>, service: &mut dyn Dispatch) -> bool {
        let queued = |task: &Task| matches!(task.stage, Stage::Queued(_));
        dispatch::call_in_order(service, cx, &mut self.tasks, queued, |task, answer| {
            if let Stage::Queued(queued) = std::mem::replace(&mut task.stage, Stage::Done) {
                let (request, info) = *queued;
                task.stage = Stage::Waiting(answer(request, &info));
            }
        })
    }

    fn handle_events(&mut self, shared: &Shared, now: Instant) -> bool {
        let mut any = false;
        while let Some(event) = self.engine.poll_event() {
            any = true;
            match event {
                ServerEvent::Request {
                    id,
                    head,
                    body,
                    expect_continue,
                    upgrade,
                } => {
                    let declared = match body {
                        BodyFraming::None => Some(0),
                        BodyFraming::Length(n) => Some(n),
                        BodyFraming::Chunked => None,
                    };
                    let (sender, request_body) = request_body(declared);
                    let protocol = if head.version() == http::Version::HTTP_10 {
                        Protocol::Http10
                    } else {
                        Protocol::Http11
                    };
                    let (parts, ()) = head.into_parts();
                    let method = parts.method.clone();
                    let target = parts.uri.clone();
                    let mut info = self.info.clone();
                    info.protocol = protocol;
                    let h2c = (self.h2c_allowed
                        && upgrade
                        && self.h2c_frame.is_none()
                        && declared == Some(0)
                        && protocol == Protocol::Http11)
                        .then(|| super::h2c::upgrade_frame(&parts))
                        .flatten();
                    let stage = match h2c {
                        // Answered on stream 1 once the connection speaks HTTP/2.
                        Some(frame) => {
                            self.h2c_frame = Some(frame);
                            sender.finish();
                            Stage::Waiting(Reply::Now(super::h2c::switching()).into_answer())
                        }
                        None => {
                            shared.stats.borrow_mut().note_request(protocol);
                            let request = Request::from_parts(parts, request_body);
                            match shared.answer_itself(&request) {
                                Some(response) => {
                                    Stage::Waiting(Reply::Now(response).into_answer())
                                }
                                None => Stage::Queued(Box::new((request, info))),
                            }
                        }
                    };
                    self.tasks.push_back(Task {
                        id,
                        method,
                        target,
                        protocol,
                        started: now,
                        stage,
                        sender,
                        expect_continue,
                        status: StatusCode::OK,
                        body_bytes: 0,
                    });
                }
                ServerEvent::Body { id, data } => {
                    if let Some(task) = self.tasks.iter().find(|t| t.id == id) {
                        task.sender.push(data);
                    }
                }
                ServerEvent::Trailers { id, trailers } => {
                    // Trailers end the body (the `BodyEnd` after them changes nothing).
                    if let Some(task) = self.tasks.iter().find(|t| t.id == id) {
                        task.sender.finish_with_trailers(trailers);
                    }
                }
                ServerEvent::BodyEnd { id } => {
                    if let Some(task) = self.tasks.iter().find(|t| t.id == id) {
                        task.sender.finish();
                    }
                }
                ServerEvent::Rejected { status, reason } => {
                    shared.stats.borrow_mut().rejected += 1;
                    tracing::info!(
                        target: "tapir::access",
                        "{} - rejected: {status} ({reason})",
                        self.info.peer_addr()
                    );
                    for task in &self.tasks {
                        task.sender
                            .fail(super::BodyError::Incomplete(reason.to_string()));
                    }
                }
                ServerEvent::Aborted { reason } => {
                    tracing::debug!("{}: connection aborted: {reason:?}", self.info.peer_addr());
                    for task in &self.tasks {
                        task.sender
                            .fail(super::BodyError::Incomplete(format!("{reason:?}")));
                    }
                }
            }
        }
        any
    }

    /// Moves the tasks along in request order; later tasks wait so memory stays bounded.
    /// Bodies go straight into the send buffer when the transport allows it (one copy
    /// fewer), else through the engine's output buffer.
    fn advance_tasks(
        &mut self,
        cx: &mut Context<'_>,
        stack: &mut Stack,
        shared: &Shared,
        now: Instant,
    ) -> Result<bool, TransportError> {
        let t = engine_time(now);
        self.waits_for_room = false;
        let mut any = false;
        while let Some(task) = self.tasks.front_mut() {
            if task.expect_continue && task.sender.demanded() {
                self.engine.send_continue(task.id);
                task.expect_continue = false;
                any = true;
            }
            match &mut task.stage {
                Stage::Queued(_) => return Ok(any),
                Stage::Waiting(future) => match future.as_mut().poll(cx) {
                    Poll::Pending => return Ok(any),
                    Poll::Ready(answer) => {
                        any = true;
                        // The engine adds `Date` and `Server` (see `stamp_responses`).
                        let (parts, body) = answer.response.into_parts();
                        task.status = parts.status;
                        let len = body.len();
                        if self.engine.send_response(task.id, parts, len).is_err() {
                            // The connection is closing (rejected or closed by the client):
                            // this response can no longer be sent.
                            task.stage = Stage::Done;
                        } else if self.engine.has_switched() {
                            // The stream is the tunnel's once the response is out.
                            self.switch_task = answer.tunnel;
                            task.stage = Stage::Done;
                        } else if task.method == Method::HEAD || body.is_empty() {
                            let _ = self.engine.finish_response(task.id);
                            task.stage = Stage::Done;
                        } else {
                            task.stage = Stage::Streaming(body);
                        }
                    }
                },
                Stage::Streaming(body) => {
                    let in_place = self.transport.as_mut().filter(|t| t.writes_in_place());
                    if let Some(transport) = in_place {
                        // The head and whatever precedes this body go first, so that the
                        // body follows them in place.
                        any |= write_output(transport, stack, &mut self.engine, t, shared)?;
                        if !self.engine.pending_output().is_empty() {
                            return Ok(any);
                        }
                        let (step, wrote) =
                            write_in_place(transport, stack, &mut self.engine, task.id, body, cx)?;
                        task.body_bytes += wrote.body as u64;
                        shared.stats.borrow_mut().bytes_out += wrote.wire as u64;
                        any |= wrote.wire > 0;
                        match step {
                            InPlaceStep::Wrote => continue,
                            InPlaceStep::NoRoom => {
                                self.engine.output_blocked(t);
                                self.waits_for_room = true;
                                return Ok(any);
                            }
                            InPlaceStep::Pending => return Ok(any),
                            InPlaceStep::End => {
                                any = true;
                                finish_body(&mut self.engine, task.id, body);
                                task.stage = Stage::Done;
                                continue;
                            }
                            InPlaceStep::Failed(e) => {
                                any = true;
                                tracing::warn!(
                                    "{}: response body failed: {e}",
                                    self.info.peer_addr()
                                );
                                self.engine.abort(task.id);
                                task.stage = Stage::Done;
                                continue;
                            }
                            // Through the output buffer this time.
                            InPlaceStep::Buffered => {}
                        }
                    }
                    let room = self.engine.send_capacity();
                    if room == 0 {
                        return Ok(any);
                    }
                    match body.poll_chunk(cx, room) {
                        Poll::Pending => return Ok(any),
                        Poll::Ready(Some(Ok(chunk))) => {
                            any = true;
                            task.body_bytes += chunk.len() as u64;
                            if self.engine.send_body(task.id, &chunk).is_err() {
                                self.engine.abort(task.id);
                                task.stage = Stage::Done;
                            }
                        }
                        Poll::Ready(None) => {
                            any = true;
                            finish_body(&mut self.engine, task.id, body);
                            task.stage = Stage::Done;
                        }
                        Poll::Ready(Some(Err(e))) => {
                            any = true;
                            tracing::warn!("{}: response body failed: {e}", self.info.peer_addr());
                            self.engine.abort(task.id);
                            task.stage = Stage::Done;
                        }
                    }
                }
                Stage::Done => {
                    let task = self.tasks.pop_front();
                    if let Some(task) = task {
                        log_access(&self.info, &task, now);
                    }
                    any = true;
                }
            }
        }
        Ok(any)
    }
}

/// Writes the engine's pending output to the transport until it is empty or the transport
/// is full; true when some was written.
fn write_output<T: Transport>(
    transport: &mut T,
    stack: &mut Stack,
    engine: &mut ServerConn,
    t: std::time::Duration,
    shared: &Shared,
) -> Result<bool, TransportError> {
    let mut any = false;
    while !engine.pending_output().is_empty() {
        match transport.write(stack, engine.pending_output())? {
            0 => {
                engine.output_blocked(t);
                break;
            }
            n => {
                engine.consume_output(n, t);
                shared.stats.borrow_mut().bytes_out += n as u64;
                any = true;
            }
        }
    }
    Ok(any)
}

/// Where writing a body in place stopped.
enum InPlaceStep {
    /// Bytes went out; there may be room for more.
    Wrote,
    /// The send buffer is full.
    NoRoom,
    /// The body has no bytes ready (it wakes the connection when it has).
    Pending,
    /// The body ended.
    End,
    /// The body failed.
    Failed(BodyError),
    /// Not possible now (the free part of the buffer is too small for a chunk, or the
    /// engine refuses): send this part through the output buffer.
    Buffered,
}

/// Writes body bytes of response `id` straight into the transport's send buffer: the body
/// fills the free space, the engine frames and counts it.
fn write_in_place<T: Transport>(
    transport: &mut T,
    stack: &mut Stack,
    engine: &mut ServerConn,
    id: RequestId,
    body: &mut Body,
    cx: &mut Context<'_>,
) -> Result<(InPlaceStep, InPlaceWrite), TransportError> {
    if !engine.can_write_in_place(id) {
        return Ok((InPlaceStep::Buffered, InPlaceWrite::default()));
    }
    let mut step = None;
    let mut total = InPlaceWrite::default();
    let written = transport.write_in_place(stack, &mut |space| {
        let mut fill = |room: &mut [u8]| match body.poll_fill(cx, room) {
            Poll::Ready(Some(Ok(n))) => n,
            Poll::Ready(Some(Err(e))) => {
                step = Some(InPlaceStep::Failed(e));
                0
            }
            Poll::Ready(None) => {
                step = Some(InPlaceStep::End);
                0
            }
            Poll::Pending => {
                step = Some(InPlaceStep::Pending);
                0
            }
        };
        match engine.write_body_in_place(id, space, &mut fill) {
            Ok(wrote) => {
                total.wire += wrote.wire;
                total.body += wrote.body;
                wrote.wire
            }
            Err(_) => 0,
        }
    })?;
    let step = match step {
        Some(step) => step,
        None if written.written > 0 => InPlaceStep::Wrote,
        None if written.room == 0 => InPlaceStep::NoRoom,
        None => InPlaceStep::Buffered,
    };
    Ok((step, total))
}

/// Ends response `id` after its last body byte, with the body's trailers.
fn finish_body(engine: &mut ServerConn, id: RequestId, body: &mut Body) {
    let trailers = body.take_trailers();
    if engine
        .finish_response_with_trailers(id, trailers.as_ref())
        .is_err()
    {
        engine.abort(id);
    }
}

fn log_access(info: &ConnInfo, task: &Task, now: Instant) {
    let micros = (now - task.started).total_micros();
    tracing::info!(
        target: "tapir::access",
        "{} \"{} {} {}\" {} {} {}.{:03}ms",
        info.peer_addr(),
        task.method,
        task.target,
        task.protocol,
        task.status.as_u16(),
        task.body_bytes,
        micros / 1000,
        micros % 1000
    );
}
