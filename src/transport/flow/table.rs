//! The flow table: the stack's side of every [`Flow`], the bound ports that accept them, the
//! connects that open them, and the tasks that use them — one [`Application`] on the loop.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Buf;
use rustls::pki_types::ServerName;
use smoltcp::socket::tcp::State;
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpEndpoint};

use super::{Flow, FlowError, FlowInfo, Pipe, Shared};
use crate::runtime::local::{LocalTasks, SendSpawner, SpawnError, Spawner};
use crate::runtime::table::ConnTable;
use crate::runtime::wake::{ReadyQueue, TURNS};
use crate::runtime::Application;
use crate::stack::{DnsPoll, DnsQuery, Stack};
use crate::transport::any::AnyStream;
use crate::transport::pump::{pump as pump_bytes, LocalEnd, Pumped};
use crate::transport::tcp::TcpStream;
use crate::transport::tls::{ClientTls, ServerTls};
use crate::transport::{Transport, TransportError};

/// Limits and timeouts of a [`Flows`] table.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    /// Bytes buffered each way per flow.
    pub buffer: usize,
    /// A flow that moves nothing either way for this long is reset.
    pub idle_timeout: Duration,
    /// Time for a connect (resolution, TCP and TLS handshakes), and for the TLS handshake
    /// of an accepted connection.
    pub connect_timeout: Duration,
    /// Connections (open, connecting, in a handshake) at most.
    pub max_flows: usize,
    /// Spawned tasks at most.
    pub max_tasks: usize,
    /// Accepted flows a listener holds for its owner at most; more wait in the stack's
    /// backlog.
    pub accept_queue: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            buffer: 64 * 1024,
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            max_flows: 1024,
            max_tasks: 4096,
            accept_queue: 64,
        }
    }
}

/// How a connect is secured: the rustls client configuration (its ALPN list is offered as
/// it is) and the server name to send and check.
#[derive(Debug, Clone)]
pub struct TlsConnect {
    /// The client configuration.
    pub config: Arc<rustls::ClientConfig>,
    /// The name for SNI and certificate checks.
    pub server_name: ServerName<'static>,
}

/// Where a connect goes.
#[derive(Debug, Clone)]
pub(super) enum Host {
    Addr(IpAddress),
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Addr(a) => write!(f, "{a}"),
            Host::Name(n) => write!(f, "{n}"),
        }
    }
}

/// A connect's result, shared with its future.
#[derive(Debug, Default)]
pub(super) struct ConnectSlot {
    result: Option<Result<Flow, FlowError>>,
    waker: Option<Waker>,
}

type ConnectRef = Arc<Mutex<ConnectSlot>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn deliver(slot: &ConnectRef, result: Result<Flow, FlowError>) {
    let mut s = lock(slot);
    s.result = Some(result);
    let waker = s.waker.take();
    drop(s);
    if let Some(w) = waker {
        w.wake();
    }
}

/// A bound port's queue of accepted flows, shared with its [`FlowListener`].
#[derive(Debug, Default)]
struct ListenerSlot {
    queue: VecDeque<Flow>,
    error: Option<FlowError>,
    waker: Option<Waker>,
    /// The owner closed (or dropped) the listener.
    closed: bool,
}

type ListenerRef = Arc<Mutex<ListenerSlot>>;

fn offer(slot: &ListenerRef, flow: Flow) {
    let mut s = lock(slot);
    if s.closed {
        // Dropping the flow closes it.
        return;
    }
    s.queue.push_back(flow);
    let waker = s.waker.take();
    drop(s);
    if let Some(w) = waker {
        w.wake();
    }
}

struct ConnectRequest {
    host: Host,
    port: u16,
    tls: Option<TlsConnect>,
    reply: ConnectRef,
}

struct BindRequest {
    port: u16,
    tls: Option<Arc<rustls::ServerConfig>>,
    slot: ListenerRef,
}

/// Requests from handles, taken by the table on its next turn.
#[derive(Default)]
pub(super) struct Inbox {
    binds: Mutex<Vec<BindRequest>>,
    connects: Mutex<Vec<ConnectRequest>>,
    pub(super) stopped: AtomicBool,
    /// Connections the table holds, as of its last turn.
    held: AtomicUsize,
    ready: Arc<ReadyQueue>,
}

impl Inbox {
    /// Queues a connect; its future reads the result.
    pub(super) fn connect(&self, host: Host, port: u16, tls: Option<TlsConnect>) -> Connect {
        let reply = ConnectRef::default();
        if self.stopped.load(Ordering::Acquire) {
            lock(&reply).result = Some(Err(FlowError::Stopped));
        } else {
            lock(&self.connects).push(ConnectRequest {
                host,
                port,
                tls,
                reply: reply.clone(),
            });
            self.ready.nudge();
        }
        Connect { slot: reply }
    }
}

/// Opens flows and spawns tasks on a [`Flows`] table; use it on the loop's thread (the
/// [`Connector`](super::Connector) is the `Send` way to open flows).
#[derive(Clone)]
pub struct FlowHandle {
    inbox: Arc<Inbox>,
    spawner: Spawner,
    send_spawner: SendSpawner,
}

impl fmt::Debug for FlowHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowHandle").finish_non_exhaustive()
    }
}

impl FlowHandle {
    /// Runs `future` on the loop (it need not be `Send`).
    pub fn spawn<F>(&self, future: F) -> Result<(), SpawnError>
    where
        F: Future<Output = ()> + 'static,
    {
        self.spawner.spawn(future)
    }

    /// The spawner of any future on the loop (hyper's `Executor` with the `hyper-util`
    /// feature).
    pub fn spawner(&self) -> Spawner {
        self.spawner.clone()
    }

    /// The spawner of `Send` futures, itself `Send + Sync` (for hyper-util's executor).
    pub fn send_spawner(&self) -> SendSpawner {
        self.send_spawner.clone()
    }

    /// Listens on `port` — plain TCP, or TLS with `tls` — from the table's next turn on; the
    /// listener yields flows (after the TLS handshake). A port that cannot be bound shows
    /// as an error on the first accept.
    pub fn bind(&self, port: u16, tls: Option<Arc<rustls::ServerConfig>>) -> FlowListener {
        let slot = ListenerRef::default();
        if self.inbox.stopped.load(Ordering::Acquire) {
            lock(&slot).error = Some(FlowError::Stopped);
        } else {
            lock(&self.inbox.binds).push(BindRequest {
                port,
                tls,
                slot: slot.clone(),
            });
            self.inbox.ready.nudge();
        }
        FlowListener {
            port,
            slot,
            ready: self.inbox.ready.clone(),
        }
    }

    /// Opens a flow to `remote`: plain TCP, or TLS with `tls` (ready after the handshake,
    /// with the ALPN result in its [`FlowInfo`]).
    pub fn connect(&self, remote: IpEndpoint, tls: Option<TlsConnect>) -> Connect {
        self.inbox
            .connect(Host::Addr(remote.addr), remote.port, tls)
    }

    /// Connections (open flows, connects, handshakes) the table held after its last turn;
    /// 0 once every flow was closed and given back to the stack.
    pub fn flows(&self) -> usize {
        self.inbox.held.load(Ordering::Acquire)
    }

    /// A connector (`tower::Service<http::Uri>`) opening flows through this table: TCP for
    /// `http://`, TLS with `tls` for `https://`.
    pub fn connector(&self, tls: Arc<rustls::ClientConfig>) -> super::Connector {
        super::Connector::new(self.inbox.clone(), tls)
    }
}

/// A bound port yielding accepted flows. Dropping (or [`close`](Self::close)) stops
/// listening; flows already accepted stay open.
pub struct FlowListener {
    port: u16,
    slot: ListenerRef,
    ready: Arc<ReadyQueue>,
}

impl fmt::Debug for FlowListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowListener")
            .field("port", &self.port)
            .finish()
    }
}

impl FlowListener {
    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The next accepted flow; an error when the port could not be bound or the table
    /// stopped.
    pub fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<Result<Flow, FlowError>> {
        let mut s = lock(&self.slot);
        if let Some(flow) = s.queue.pop_front() {
            drop(s);
            // Room in the queue: the table may accept more.
            self.ready.nudge();
            return Poll::Ready(Ok(flow));
        }
        if let Some(e) = &s.error {
            return Poll::Ready(Err(e.clone()));
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Waits for the next accepted flow.
    pub fn accept(&mut self) -> Accept<'_> {
        Accept { listener: self }
    }

    /// Stops listening (paf's `close`): the port refuses new connections.
    pub fn close(self) {}
}

impl Drop for FlowListener {
    fn drop(&mut self) {
        let mut s = lock(&self.slot);
        s.closed = true;
        let queued = std::mem::take(&mut s.queue);
        drop(s);
        drop(queued);
        self.ready.nudge();
    }
}

/// The future of [`FlowListener::accept`].
#[derive(Debug)]
pub struct Accept<'a> {
    listener: &'a mut FlowListener,
}

impl Future for Accept<'_> {
    type Output = Result<Flow, FlowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().listener.poll_accept(cx)
    }
}

/// A flow being opened ([`FlowHandle::connect`]). Dropping it before it is ready closes the
/// flow once it opens.
#[derive(Debug)]
pub struct Connect {
    slot: ConnectRef,
}

impl Connect {
    /// A connect that failed before it started.
    pub(super) fn failed(error: FlowError) -> Connect {
        let slot = ConnectRef::default();
        lock(&slot).result = Some(Err(error));
        Connect { slot }
    }
}

impl Future for Connect {
    type Output = Result<Flow, FlowError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = lock(&self.slot);
        match s.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Who waits for a connection that is not a flow yet.
enum Waiter {
    Listener(ListenerRef),
    Connect { reply: ConnectRef, remote: String },
}

enum Phase {
    /// TCP connecting, or the TLS handshake.
    Opening { waiter: Waiter, deadline: Instant },
    /// Handed out.
    Open(Arc<Shared>),
}

struct Entry {
    transport: Option<AnyStream>,
    phase: Phase,
    last_activity: Instant,
}

struct Bound {
    port: u16,
    tls: Option<Arc<rustls::ServerConfig>>,
    slot: ListenerRef,
}

struct Resolving {
    query: DnsQuery,
    request: ConnectRequest,
    deadline: Instant,
}

/// The flow table, an [`Application`]: run it on the stack's loop ([`crate::serve`], or a
/// simulation node). See the [module docs](super).
pub struct Flows {
    config: FlowConfig,
    entries: ConnTable<Entry>,
    listeners: Vec<Bound>,
    resolving: Vec<Resolving>,
    inbox: Arc<Inbox>,
    tasks: LocalTasks,
    stopping: bool,
}

impl fmt::Debug for Flows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flows")
            .field("flows", &self.entries.len())
            .field("listeners", &self.listeners.len())
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

impl Default for Flows {
    fn default() -> Self {
        Flows::new(FlowConfig::default())
    }
}

fn endpoints(stack: &Stack, tcp: &TcpStream) -> (IpEndpoint, IpEndpoint) {
    let socket = stack.socket_ref(tcp.handle());
    let unspecified = IpEndpoint::new(IpAddress::v4(0, 0, 0, 0), 0);
    (
        socket.local_endpoint().unwrap_or(unspecified),
        socket.remote_endpoint().unwrap_or(unspecified),
    )
}

impl Flows {
    /// An empty table.
    pub fn new(config: FlowConfig) -> Self {
        let entries = ConnTable::new();
        let tasks = LocalTasks::new(config.max_tasks);
        Flows {
            config,
            inbox: Arc::new(Inbox {
                // Requests nudge the table's own ready queue (key `usize::MAX`).
                ready: entries.ready_queue().clone(),
                ..Inbox::default()
            }),
            entries,
            listeners: Vec::new(),
            resolving: Vec::new(),
            tasks,
            stopping: false,
        }
    }

    /// A handle to bind, connect and spawn.
    pub fn handle(&self) -> FlowHandle {
        FlowHandle {
            inbox: self.inbox.clone(),
            spawner: self.tasks.spawner(),
            send_spawner: self.tasks.send_spawner(),
        }
    }

    /// Connections held (open, or connecting).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no connection is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Tasks running.
    pub fn tasks(&self) -> usize {
        self.tasks.len()
    }

    fn insert(&mut self, transport: AnyStream, phase: Phase, now: Instant) -> usize {
        self.entries.insert(Entry {
            transport: Some(transport),
            phase,
            last_activity: now,
        })
    }

    fn deadline(&self, now: Instant) -> Instant {
        now + self.config.connect_timeout.into()
    }

    /// Listens on `port` now — plain TCP, or TLS with `tls` — and returns the listener of
    /// its flows (paf's bind; [`FlowHandle::bind`] does the same from a task).
    pub fn bind(
        &mut self,
        stack: &mut Stack,
        port: u16,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<FlowListener, FlowError> {
        let slot = ListenerRef::default();
        self.listen(stack, port, tls, slot.clone())?;
        Ok(FlowListener {
            port,
            slot,
            ready: self.entries.ready_queue().clone(),
        })
    }

    fn listen(
        &mut self,
        stack: &mut Stack,
        port: u16,
        tls: Option<Arc<rustls::ServerConfig>>,
        slot: ListenerRef,
    ) -> Result<(), FlowError> {
        let bind_error = |reason: String| FlowError::Bind { port, reason };
        if self.stopping {
            return Err(FlowError::Stopped);
        }
        if self.listeners.iter().any(|l| l.port == port) {
            return Err(bind_error("already bound by this table".into()));
        }
        stack.listen(port).map_err(|e| bind_error(e.to_string()))?;
        self.listeners.push(Bound { port, tls, slot });
        Ok(())
    }

    /// Takes bind and connect requests.
    fn take_requests(&mut self, stack: &mut Stack, now: Instant) -> bool {
        let binds = std::mem::take(&mut *lock(&self.inbox.binds));
        let connects = std::mem::take(&mut *lock(&self.inbox.connects));
        let progress = !binds.is_empty() || !connects.is_empty();
        for bind in binds {
            if let Err(e) = self.listen(stack, bind.port, bind.tls, bind.slot.clone()) {
                let mut s = lock(&bind.slot);
                s.error = Some(e);
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        }
        for request in connects {
            match request.host.clone() {
                Host::Addr(addr) => self.open(stack, request, addr, now),
                Host::Name(name) => match stack.resolve(&name, &[], false) {
                    Ok(query) => self.resolving.push(Resolving {
                        query,
                        request,
                        deadline: self.deadline(now),
                    }),
                    Err(e) => deliver(
                        &request.reply,
                        Err(FlowError::Resolve {
                            host: name,
                            reason: e.to_string(),
                        }),
                    ),
                },
            }
        }
        progress
    }

    fn poll_resolves(&mut self, stack: &mut Stack, now: Instant) -> bool {
        let mut progress = false;
        for pending in std::mem::take(&mut self.resolving) {
            let host = pending.request.host.to_string();
            match stack.dns_result(pending.query) {
                DnsPoll::Pending(query) if now < pending.deadline => {
                    self.resolving.push(Resolving { query, ..pending })
                }
                DnsPoll::Pending(_) => {
                    progress = true;
                    deliver(&pending.request.reply, Err(FlowError::ConnectTimeout(host)));
                }
                DnsPoll::Done(Ok(addrs)) if !addrs.is_empty() => {
                    progress = true;
                    self.open(stack, pending.request, addrs[0], now);
                }
                DnsPoll::Done(result) => {
                    progress = true;
                    let reason = match result {
                        Err(e) => e.to_string(),
                        Ok(_) => "no address".to_string(),
                    };
                    deliver(
                        &pending.request.reply,
                        Err(FlowError::Resolve { host, reason }),
                    );
                }
            }
        }
        progress
    }

    /// Starts a connection for `request` to `addr`.
    fn open(&mut self, stack: &mut Stack, request: ConnectRequest, addr: IpAddress, now: Instant) {
        let remote = IpEndpoint::new(addr, request.port);
        let name = match &request.host {
            Host::Name(n) => format!("{n} ({remote})"),
            Host::Addr(_) => remote.to_string(),
        };
        let fail = |reason: String| {
            deliver(
                &request.reply,
                Err(FlowError::Connect {
                    remote: name.clone(),
                    reason,
                }),
            )
        };
        if self.stopping {
            return deliver(&request.reply, Err(FlowError::Stopped));
        }
        if self.entries.len() >= self.config.max_flows {
            return fail(format!("{} flows open already", self.config.max_flows));
        }
        let tcp = match stack.connect(remote) {
            Ok(handle) => TcpStream::new(handle),
            Err(e) => return fail(e.to_string()),
        };
        let transport = match request.tls {
            None => AnyStream::from(tcp),
            Some(tls) => match ClientTls::connect(tcp, tls.config, tls.server_name) {
                Ok(s) => AnyStream::from(s),
                Err(e) => {
                    let reason = e.to_string();
                    e.into_tcp().abort(stack);
                    return fail(reason);
                }
            },
        };
        let phase = Phase::Opening {
            waiter: Waiter::Connect {
                reply: request.reply,
                remote: name,
            },
            deadline: self.deadline(now),
        };
        self.insert(transport, phase, now);
    }

    /// Takes established connections on the bound ports, and closes listeners whose owner
    /// let go.
    fn accept(&mut self, stack: &mut Stack, now: Instant) -> bool {
        let mut progress = false;
        let mut index = 0;
        while index < self.listeners.len() {
            let closed = lock(&self.listeners[index].slot).closed;
            if closed || self.stopping {
                let bound = self.listeners.swap_remove(index);
                stack.unlisten(bound.port);
                progress = true;
                continue;
            }
            loop {
                let bound = &self.listeners[index];
                let queued = lock(&bound.slot).queue.len();
                if queued >= self.config.accept_queue || self.entries.len() >= self.config.max_flows
                {
                    break;
                }
                let Some(handle) = stack.accept(bound.port) else {
                    break;
                };
                progress = true;
                let tcp = TcpStream::new(handle);
                let slot = bound.slot.clone();
                match bound.tls.clone() {
                    None => {
                        let key = self.insert(
                            AnyStream::from(tcp),
                            Phase::Opening {
                                waiter: Waiter::Listener(slot),
                                deadline: self.deadline(now),
                            },
                            now,
                        );
                        self.finish_opening(stack, key, now);
                    }
                    Some(config) => match ServerTls::accept(tcp, config) {
                        Ok(tls) => {
                            let phase = Phase::Opening {
                                waiter: Waiter::Listener(slot),
                                deadline: self.deadline(now),
                            };
                            self.insert(AnyStream::from(tls), phase, now);
                        }
                        Err(e) => {
                            tracing::debug!("flow: {e}");
                            e.into_tcp().abort(stack);
                        }
                    },
                }
            }
            index += 1;
        }
        progress
    }

    /// Moves a connection whose handshakes are done to [`Phase::Open`] and hands its flow
    /// to whoever waits.
    fn finish_opening(&mut self, stack: &mut Stack, key: usize, now: Instant) {
        let limit = self.config.buffer;
        let Some(driver) = self.entries.conn_waker(key).cloned() else {
            return;
        };
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        let Some(transport) = entry.transport.as_ref() else {
            return;
        };
        let (tcp, tls) = match transport {
            AnyStream::Tcp(s) => (s, None),
            AnyStream::ServerTls(s) => (s.tcp(), s.info()),
            AnyStream::ClientTls(s) => (s.tcp(), s.info()),
        };
        let (local, peer) = endpoints(stack, tcp);
        let info = FlowInfo {
            id: transport.id(),
            local,
            peer,
            tls,
        };
        let shared = Arc::new(Shared {
            pipe: Mutex::new(Pipe::default()),
            driver: driver.clone(),
            limit,
        });
        let flow = Flow {
            shared: shared.clone(),
            info,
        };
        let phase = std::mem::replace(&mut entry.phase, Phase::Open(shared));
        entry.last_activity = now;
        driver.wake_now();
        match phase {
            Phase::Opening { waiter, .. } => match waiter {
                Waiter::Listener(slot) => offer(&slot, flow),
                Waiter::Connect { reply, .. } => deliver(&reply, Ok(flow)),
            },
            Phase::Open(_) => {}
        }
    }

    /// Fails a connection that is still opening, and frees it.
    fn fail_opening(
        &mut self,
        stack: &mut Stack,
        key: usize,
        error: impl FnOnce(String) -> FlowError,
    ) {
        let Some(entry) = self.entries.remove(key) else {
            return;
        };
        if let Some(t) = entry.transport {
            t.abort(stack);
        }
        if let Phase::Opening {
            waiter: Waiter::Connect { reply, remote },
            ..
        } = entry.phase
        {
            deliver(&reply, Err(error(remote)));
        }
    }

    /// Does the work of connection `key`.
    fn drive(&mut self, stack: &mut Stack, key: usize, now: Instant) {
        let idle_timeout = self.config.idle_timeout;
        let Some(turn) = self.entries.begin(key, now) else {
            return;
        };
        let (entry, waker) = (turn.conn, turn.waker);
        let deadline = match &entry.phase {
            Phase::Opening { deadline, .. } => *deadline,
            Phase::Open(shared) => {
                let shared = shared.clone();
                if pump(entry, &waker, &shared, stack, now, idle_timeout) {
                    self.entries.remove(key);
                } else {
                    // The idle timeout, from the last byte moved.
                    let at = entry.last_activity + idle_timeout.into();
                    self.entries.set_timer(key, Some(at));
                }
                return;
            }
        };
        let Some(transport) = entry.transport.as_mut() else {
            return;
        };
        let tls = !matches!(transport, AnyStream::Tcp(_));
        let outcome = match transport {
            AnyStream::Tcp(s) => match stack.socket_ref(s.handle()).state() {
                State::SynSent | State::SynReceived | State::Listen => Ok(false),
                State::Closed | State::TimeWait => Err(TransportError::Reset),
                _ => Ok(true),
            },
            AnyStream::ServerTls(s) => s.drive_handshake(stack),
            AnyStream::ClientTls(s) => s.drive_handshake(stack),
        };
        match outcome {
            Ok(true) => self.finish_opening(stack, key, now),
            Ok(false) if now >= deadline => {
                self.fail_opening(stack, key, FlowError::ConnectTimeout)
            }
            Ok(false) => {
                transport.register(stack, &waker, true, true);
                self.entries.set_timer(key, Some(deadline));
            }
            Err(e) => {
                tracing::debug!("flow {key}: opening failed: {e}");
                self.fail_opening(stack, key, |remote| match (tls, e) {
                    (true, TransportError::Tls(reason)) => FlowError::Tls { remote, reason },
                    (_, e) => FlowError::Connect {
                        remote,
                        reason: e.to_string(),
                    },
                })
            }
        }
    }
}

/// Wakers to fire after the pipe's lock is released.
#[derive(Default)]
struct Wakes(Vec<Waker>);

impl Wakes {
    fn take(&mut self, waker: &mut Option<Waker>) {
        if let Some(w) = waker.take() {
            self.0.push(w);
        }
    }
}

/// The I/O error a flow's owner reads for a transport failure.
fn error_kind(error: &TransportError) -> io::ErrorKind {
    match error {
        TransportError::Reset => io::ErrorKind::ConnectionReset,
        TransportError::Closed => io::ErrorKind::BrokenPipe,
        TransportError::Tls(_) => io::ErrorKind::InvalidData,
    }
}

/// Fails the flow (every later call of its owner reports `kind`) and resets the
/// connection. Returns true: the entry is done.
fn reset(
    entry: &mut Entry,
    stack: &mut Stack,
    pipe: &mut Pipe,
    wakes: &mut Wakes,
    kind: io::ErrorKind,
    reason: String,
) -> bool {
    pipe.error = Some((kind, reason));
    wakes.take(&mut pipe.reader);
    wakes.take(&mut pipe.writer);
    if let Some(t) = entry.transport.take() {
        t.abort(stack);
    }
    true
}

/// Moves bytes between a connection and its flow. Returns true when the connection was
/// given back to the stack (the entry is done).
fn pump(
    entry: &mut Entry,
    waker: &Waker,
    shared: &Shared,
    stack: &mut Stack,
    now: Instant,
    idle_timeout: Duration,
) -> bool {
    let mut wakes = Wakes::default();
    let done = pump_locked(entry, waker, shared, stack, now, idle_timeout, &mut wakes);
    for w in wakes.0 {
        w.wake();
    }
    done
}

fn pump_locked(
    entry: &mut Entry,
    waker: &Waker,
    shared: &Shared,
    stack: &mut Stack,
    now: Instant,
    idle_timeout: Duration,
    wakes: &mut Wakes,
) -> bool {
    let mut pipe = shared.lock();
    let Some(transport) = entry.transport.as_mut() else {
        return true;
    };
    if pipe.reset {
        let reason = "reset by us".to_string();
        return reset(
            entry,
            stack,
            &mut pipe,
            wakes,
            io::ErrorKind::ConnectionReset,
            reason,
        );
    }
    if now >= entry.last_activity + idle_timeout.into() {
        tracing::debug!("flow {}: idle for {idle_timeout:?}: reset", transport.id());
        let reason = format!("flow idle for {idle_timeout:?}");
        return reset(
            entry,
            stack,
            &mut pipe,
            wakes,
            io::ErrorKind::TimedOut,
            reason,
        );
    }
    let mut end = FlowEnd {
        pipe: &mut pipe,
        limit: shared.limit,
        wakes,
    };
    let mut cx = Context::from_waker(waker);
    match pump_bytes(transport, stack, &mut end, &mut cx) {
        Pumped::Open { moved } => {
            if moved {
                entry.last_activity = now;
            }
            false
        }
        Pumped::Done => {
            // Both directions ended, or the owner is gone with everything written queued
            // (`to_close`): the connection goes back to the stack; the flow keeps what it
            // has not read.
            if let Some(t) = entry.transport.take() {
                t.close(stack);
            }
            true
        }
        Pumped::Failed(e) => {
            let kind = error_kind(&e);
            reset(entry, stack, &mut pipe, wakes, kind, e.to_string())
        }
        // A pipe does not fail on its own.
        Pumped::LocalFailed(reason) => {
            let kind = io::ErrorKind::Other;
            reset(entry, stack, &mut pipe, wakes, kind, reason)
        }
    }
}

/// A flow's pipe as the local end of the byte pump.
struct FlowEnd<'a> {
    pipe: &'a mut Pipe,
    limit: usize,
    wakes: &'a mut Wakes,
}

impl LocalEnd for FlowEnd<'_> {
    fn room(&mut self, _cx: &mut Context<'_>) -> usize {
        if self.pipe.dropped {
            // The owner is gone: drained and discarded.
            usize::MAX
        } else {
            self.limit.saturating_sub(self.pipe.rx.len())
        }
    }

    fn receive(&mut self, data: &[u8]) {
        if !self.pipe.dropped {
            self.pipe.rx.extend_from_slice(data);
        }
        self.wakes.take(&mut self.pipe.reader);
    }

    fn peer_closed(&mut self) {
        self.pipe.rx_eof = true;
        self.wakes.take(&mut self.pipe.reader);
    }

    fn peer_eof(&self) -> bool {
        self.pipe.rx_eof
    }

    fn outgoing(&mut self, _cx: &mut Context<'_>) -> Result<&[u8], String> {
        Ok(&self.pipe.tx)
    }

    fn sent(&mut self, n: usize) {
        self.pipe.tx.advance(n);
    }

    fn has_outgoing(&self) -> bool {
        !self.pipe.tx.is_empty()
    }

    fn done_sending(&self) -> bool {
        self.pipe.shutdown || self.pipe.dropped
    }

    fn close_when_sent(&self) -> bool {
        self.pipe.dropped
    }

    fn write_shut(&mut self) {
        self.pipe.write_closed = true;
    }

    fn write_closed(&self) -> bool {
        self.pipe.write_closed
    }

    fn after_round(&mut self, progress: bool) {
        // Room freed, a flush done, or the shutdown done: the writer goes on.
        let flushed = self.pipe.tx.is_empty() && (progress || self.pipe.write_closed);
        let room = progress && self.limit.saturating_sub(self.pipe.tx.len()) > 0;
        if flushed || room {
            self.wakes.take(&mut self.pipe.writer);
        }
    }

    fn wants_read(&self) -> bool {
        !self.pipe.rx_eof && (self.pipe.dropped || self.pipe.rx.len() < self.limit)
    }
}

impl Application for Flows {
    fn poll(&mut self, stack: &mut Stack, now: Instant) -> bool {
        let mut progress = self.take_requests(stack, now);
        progress |= self.poll_resolves(stack, now);
        progress |= self.accept(stack, now);
        for _ in 0..TURNS {
            let keys = self.entries.ready(now);
            let mut worked = false;
            for key in keys {
                worked = true;
                self.drive(stack, key, now);
            }
            let polls = self.tasks.poll();
            worked |= polls > 0;
            // Tasks may have bound, connected or taken accepted flows.
            worked |= self.take_requests(stack, now);
            worked |= self.accept(stack, now);
            progress |= worked;
            if !worked {
                break;
            }
        }
        self.inbox.held.store(self.entries.len(), Ordering::Release);
        progress
    }

    fn poll_at(&self, now: Instant) -> Option<Instant> {
        if self.tasks.has_work() {
            return Some(now);
        }
        // A DNS answer arrives as a frame (the table polls lookups on every turn); only
        // their deadlines are timers.
        let lookups = self.resolving.iter().map(|r| r.deadline);
        self.entries.poll_at(now).into_iter().chain(lookups).min()
    }

    fn shutdown(&mut self, stack: &mut Stack, now: Instant) {
        self.stopping = true;
        self.inbox.stopped.store(true, Ordering::Release);
        // The tasks go (and the flows they held close, to_close).
        self.tasks.stop();
        for bound in self.listeners.drain(..) {
            stack.unlisten(bound.port);
            let mut s = lock(&bound.slot);
            s.error = Some(FlowError::Stopped);
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
        for pending in self.resolving.drain(..) {
            deliver(&pending.request.reply, Err(FlowError::Stopped));
        }
        for request in std::mem::take(&mut *lock(&self.inbox.connects)) {
            deliver(&request.reply, Err(FlowError::Stopped));
        }
        let opening = self
            .entries
            .keys_where(|e| matches!(e.phase, Phase::Opening { .. }));
        for key in opening {
            self.fail_opening(stack, key, |_| FlowError::Stopped);
        }
        let keys = self.entries.keys_where(|_| true);
        for key in keys {
            self.drive(stack, key, now);
        }
    }

    fn abort(&mut self, stack: &mut Stack) {
        for entry in self.entries.drain() {
            if let Phase::Open(shared) = &entry.phase {
                let mut pipe = shared.lock();
                pipe.error = Some((io::ErrorKind::ConnectionAborted, "stack stopped".into()));
                let wakes = [pipe.reader.take(), pipe.writer.take()];
                drop(pipe);
                wakes.into_iter().flatten().for_each(Waker::wake);
            }
            if let Some(t) = entry.transport {
                t.abort(stack);
            }
        }
    }

    fn is_finished(&self) -> bool {
        self.stopping && self.entries.is_empty()
    }
}

impl Drop for Flows {
    fn drop(&mut self) {
        self.inbox.stopped.store(true, Ordering::Release);
    }
}
