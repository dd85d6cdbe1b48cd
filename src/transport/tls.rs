//! TLS over a [`TcpStream`], driven sans-IO with rustls's unbuffered API: rustls keeps the
//! TLS state, tapir keeps the bytes. Every call moves whatever ciphertext is already in the
//! socket's buffers — nothing blocks, so a slow handshake never holds up other connections.
//!
//! The stream owns three buffers, each allocated only while it holds bytes: ciphertext read
//! from the socket that does not yet make a whole record, TLS output that did not fit in the
//! socket, and decrypted bytes the reader did not take. An idle keep-alive connection holds
//! none of them (rustls's buffered connection keeps a 4 KiB read buffer for ever), so it
//! costs its TCP socket and rustls's keys and state.
//!
//! Writes are sized to what the socket can take: when [`Transport::write`] returns `n`, the
//! `n` plaintext bytes are encrypted straight into the TCP socket, so a [`Transport::close`]
//! right after loses nothing (room for the `close_notify` alert is kept too).

use std::ops::DerefMut;
use std::sync::Arc;
use std::task::Waker;

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::pki_types::ServerName;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, ReadEarlyData,
    UnbufferedConnectionCommon, UnbufferedStatus, WriteTraffic,
};
use smoltcp::socket::tcp::{self, RecvError, State};

use super::tcp::TcpStream;
use super::{ReadStatus, TlsFailure, Transport, TransportError};
use crate::error::Chain;
use crate::stack::{ConnId, Stack, TcpHandle};

/// Largest plaintext of one TLS record.
const MAX_FRAGMENT: usize = 16 * 1024;
/// Bytes a record adds at most with the provider's suites (header, explicit nonce or
/// content type, AEAD tag: 29 for TLS 1.2 GCM, 22 for TLS 1.3), rounded up.
const RECORD_OVERHEAD: usize = 40;
/// Socket room kept free for the `close_notify` alert (24 to 31 bytes on the wire).
const CLOSE_RESERVE: usize = 64;
/// Most ciphertext held while rustls waits for the rest of a record or handshake message:
/// a 64 KiB handshake message (the limit rustls's buffered connection sets) plus a whole
/// record. A peer that needs more is refused.
const INCOMING_LIMIT: usize = 0xffff + MAX_FRAGMENT + 2048 + 5;

/// Starting a TLS session failed; the TCP connection is given back so it can be closed.
#[derive(Debug, thiserror::Error)]
#[error("cannot start a TLS session")]
pub struct TlsError {
    #[source]
    error: rustls::Error,
    tcp: TcpStream,
}

impl TlsError {
    /// What rustls said.
    pub fn error(&self) -> &rustls::Error {
        &self.error
    }

    /// The TCP connection, to close or abort.
    pub fn into_tcp(self) -> TcpStream {
        self.tcp
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for rustls::server::UnbufferedServerConnection {}
    impl Sealed for rustls::client::UnbufferedClientConnection {}
}

/// One side of an unbuffered rustls connection (server or client); sealed.
pub trait Side: DerefMut<Target = UnbufferedConnectionCommon<Self::Data>> + sealed::Sealed {
    /// rustls' per-side state.
    type Data;
    /// Runs rustls over `incoming` (rustls's `process_tls_records` of this side).
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
    /// Offers the early-data (0-RTT) records of `records` to `each`; returns the bytes to
    /// discard. Only a server that enables early data in its configuration sees any.
    fn early_records(
        records: &mut ReadEarlyData<'_, '_, Self::Data>,
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, rustls::Error>;
}

impl Side for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
    fn early_records(
        records: &mut ReadEarlyData<'_, '_, Self::Data>,
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, rustls::Error> {
        let mut discard = 0;
        while let Some(record) = records.next_record() {
            let record = record?;
            discard += record.discard;
            each(record.payload);
        }
        Ok(discard)
    }
}

impl Side for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
    fn early_records(
        _: &mut ReadEarlyData<'_, '_, Self::Data>,
        _: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, rustls::Error> {
        // rustls gives clients no early-data state.
        Ok(0)
    }
}

/// What TLS negotiated (plain strings so upper layers need no rustls types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `"TLSv1.3"` or `"TLSv1.2"`.
    pub version: String,
    /// The cipher suite, e.g. `"TLS13_AES_128_GCM_SHA256"`.
    pub cipher: String,
    /// The server name (SNI) the client asked for.
    pub sni: Option<String>,
    /// The application protocol agreed by ALPN.
    pub alpn: Option<String>,
}

/// Bytes held at the front of a stream, allocated only while there are some.
#[derive(Debug, Default)]
struct Held {
    bytes: Vec<u8>,
    /// Bytes at the front already taken.
    taken: usize,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.taken == self.bytes.len()
    }

    fn len(&self) -> usize {
        self.bytes.len() - self.taken
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[self.taken..]
    }

    fn push(&mut self, data: &[u8]) {
        if self.is_empty() {
            self.clear();
        }
        self.bytes.extend_from_slice(data);
    }

    /// Takes `n` bytes from the front; the allocation goes once nothing is left.
    fn consume(&mut self, n: usize) {
        self.taken = (self.taken + n).min(self.bytes.len());
        if self.is_empty() {
            self.clear();
        }
    }

    fn clear(&mut self) {
        *self = Held::default();
    }
}

/// A TLS session over a TCP connection, usable as a plaintext [`Transport`].
pub struct TlsStream<C> {
    tcp: TcpStream,
    conn: C,
    /// Ciphertext from the socket that rustls has not consumed yet (part of a record or of
    /// a handshake message); empty, with no allocation, between records.
    incoming: Vec<u8>,
    /// TLS output that did not fit in the socket yet.
    outgoing: Held,
    /// Decrypted bytes the reader did not take yet.
    plaintext: Held,
    /// The server name: the one a client sent, or the one a server read in the hello.
    sni: Option<String>,
    /// A server still has to read the client's hello for its server name.
    hello_pending: bool,
    /// The peer's FIN was read.
    tcp_eof: bool,
    /// The peer's `close_notify` was read: no more data comes.
    peer_closed: bool,
    /// The fatal TLS error, once there was one; every later call reports it.
    failed: Option<TlsFailure>,
}

/// A server-side TLS stream.
pub type ServerTls = TlsStream<UnbufferedServerConnection>;
/// A client-side TLS stream.
pub type ClientTls = TlsStream<UnbufferedClientConnection>;

impl<C> std::fmt::Debug for TlsStream<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("tcp", &self.tcp)
            .field("incoming", &self.incoming.len())
            .field("outgoing", &self.outgoing.len())
            .field("plaintext", &self.plaintext.len())
            .field("tcp_eof", &self.tcp_eof)
            .field("peer_closed", &self.peer_closed)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Starts the server side of a handshake on an accepted connection.
    pub fn accept(tcp: TcpStream, config: Arc<rustls::ServerConfig>) -> Result<Self, TlsError> {
        match UnbufferedServerConnection::new(config) {
            Ok(conn) => Ok(TlsStream::wrap(tcp, conn, None, true)),
            Err(error) => Err(TlsError { error, tcp }),
        }
    }

    /// The server name the client asked for (known once its hello was read).
    pub fn sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }
}

impl ClientTls {
    /// Starts the client side of a handshake on a connection (it may still be connecting:
    /// the hello goes out once TCP is established).
    pub fn connect(
        tcp: TcpStream,
        config: Arc<rustls::ClientConfig>,
        server_name: ServerName<'static>,
    ) -> Result<Self, TlsError> {
        let sni = match &server_name {
            ServerName::DnsName(name) => Some(name.as_ref().to_string()),
            _ => None,
        };
        match UnbufferedClientConnection::new(config, server_name) {
            Ok(conn) => Ok(TlsStream::wrap(tcp, conn, sni, false)),
            Err(error) => Err(TlsError { error, tcp }),
        }
    }
}

/// How far the client's hello at the front of a stream is.
#[derive(Debug, PartialEq, Eq)]
enum Hello {
    /// Read: the server name rustls will see in it, or `None` (none sent, or not a hello
    /// at all: rustls will say why).
    Read(Option<String>),
    /// The first record is not whole yet: rustls may look at it (and refuse a bad header
    /// at once), it joins nothing.
    FirstRecord,
    /// The first record is whole but the hello goes on in the next one: rustls must wait,
    /// as it would join the records in place.
    MoreRecords,
}

/// The server name of a client hello at the front of `stream` (TLS records as received),
/// as rustls reads it: the first `host_name` entry when it is a DNS name, lowercased; an IP
/// address or no extension gives `None`.
fn hello_server_name(stream: &[u8]) -> Hello {
    // The handshake bytes of the first records, up to the whole hello.
    let mut hello = Vec::new();
    let mut rest = stream;
    let mut first = true;
    loop {
        let incomplete = if first {
            Hello::FirstRecord
        } else {
            Hello::MoreRecords
        };
        let Some((header, after)) = rest.split_first_chunk::<5>() else {
            return incomplete;
        };
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if header[0] != 22 || len >= MAX_FRAGMENT + 2048 {
            // Not a handshake record, or too long for one: rustls refuses it, there is
            // no name to report.
            return Hello::Read(None);
        }
        let Some(payload) = after.get(..len) else {
            return incomplete;
        };
        hello.extend_from_slice(payload);
        rest = &after[len..];
        first = false;
        if let Some(head) = hello.get(..4) {
            let body_len =
                usize::from(head[1]) << 16 | usize::from(head[2]) << 8 | usize::from(head[3]);
            if head[0] != 1 || body_len > 0xffff {
                // Not a client hello, or larger than rustls takes.
                return Hello::Read(None);
            }
            if let Some(body) = hello.get(4..4 + body_len) {
                return Hello::Read(parse_hello_sni(body));
            }
        }
    }
}

/// Reads `n` bytes from the front of `data`.
fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, tail) = (data.get(..n)?, data.get(n..)?);
    *data = tail;
    Some(head)
}

/// Reads a big-endian length of `n` bytes, then that many bytes.
fn take_prefixed<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let len = take(data, n)?
        .iter()
        .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
    take(data, len)
}

/// The `server_name` of a ClientHello body (RFC 8446 §4.1.2, RFC 6066 §3).
fn parse_hello_sni(mut body: &[u8]) -> Option<String> {
    let data = &mut body;
    take(data, 2 + 32)?; // legacy_version, random
    take_prefixed(data, 1)?; // legacy_session_id
    take_prefixed(data, 2)?; // cipher_suites
    take_prefixed(data, 1)?; // legacy_compression_methods
    let mut extensions = take_prefixed(data, 2)?;
    while !extensions.is_empty() {
        let kind = take(&mut extensions, 2)?;
        let mut ext = take_prefixed(&mut extensions, 2)?;
        if kind != [0, 0] {
            continue;
        }
        let mut list = take_prefixed(&mut ext, 2)?;
        // The first entry; unknown name types cannot be skipped (RFC 6066): no host name.
        if take(&mut list, 1)? != [0] {
            return None;
        }
        let name = take_prefixed(&mut list, 2)?;
        return match ServerName::try_from(name).ok()? {
            ServerName::DnsName(dns) => Some(dns.to_lowercase_owned().as_ref().to_string()),
            _ => None,
        };
    }
    None
}

/// Plaintext bytes that, encrypted, fit in `room` bytes of socket buffer (keeping the
/// `close_notify` reserve).
fn plaintext_fit(room: usize) -> usize {
    let avail = room.saturating_sub(CLOSE_RESERVE);
    let full = avail / (MAX_FRAGMENT + RECORD_OVERHEAD);
    let rest = avail % (MAX_FRAGMENT + RECORD_OVERHEAD);
    full * MAX_FRAGMENT + rest.saturating_sub(RECORD_OVERHEAD)
}

fn version_name(version: rustls::ProtocolVersion) -> String {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
        other => format!("{other:?}"),
    }
}

/// What to do once rustls may send application data and has nothing else to do.
#[derive(Clone, Copy)]
enum Emit<'a> {
    /// Nothing: wait for the peer.
    Nothing,
    /// Encrypt these bytes (sized to the socket's room) into the socket.
    Data(&'a [u8]),
    /// Encrypt a `close_notify` alert.
    CloseNotify,
}

/// What one turn of rustls's state machine asks for next.
enum Next {
    /// Go on processing.
    Again,
    /// rustls needs more ciphertext from the peer.
    Input,
    /// The send action ran; stop.
    Sent(usize),
    /// The connection is over (both sides sent `close_notify`).
    Done,
    /// A fatal error.
    Fail(TlsFailure),
    /// The socket refused the output.
    Socket(TransportError),
}

/// Writes TLS bytes into a socket, as many as fit; the error maps a socket that cannot
/// take any.
fn send_to_socket(socket: &mut tcp::Socket<'static>, data: &[u8]) -> Result<usize, TransportError> {
    match socket.send_slice(data) {
        Ok(n) => Ok(n),
        Err(_) => match socket.state() {
            State::Closed => Err(TransportError::Reset),
            // Still connecting: the bytes wait.
            State::SynSent | State::SynReceived | State::Listen => Ok(0),
            _ => Err(TransportError::Closed),
        },
    }
}

/// Moves held TLS output into the socket, as far as it fits.
fn push_out(stack: &mut Stack, tcp: &TcpHandle, outgoing: &mut Held) -> Result<(), TransportError> {
    if outgoing.is_empty() {
        // Nothing to send: an idle connection is not given a send buffer.
        return Ok(());
    }
    let sent = send_to_socket(stack.socket(tcp), outgoing.as_slice())?;
    outgoing.consume(sent);
    Ok(())
}

/// Encrypts `data` with `traffic` straight into the socket's free space when it is in one
/// piece, else through `outgoing`.
fn encrypt_into<D>(
    traffic: &mut WriteTraffic<'_, D>,
    stack: &mut Stack,
    tcp: &TcpHandle,
    outgoing: &mut Held,
    data: &[u8],
) -> Result<usize, TlsFailure> {
    let socket = stack.socket(tcp);
    let direct = socket.send(|space| match traffic.encrypt(data, space) {
        Ok(n) => (n, Ok(n)),
        Err(e) => (0, Err(e)),
    });
    let required = match direct {
        Ok(Ok(_)) => return Ok(data.len()),
        Ok(Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size }))) => {
            required_size
        }
        Ok(Err(EncryptError::EncryptExhausted)) => {
            return Err(rustls::Error::EncryptError.into());
        }
        // The socket cannot send (closing): nothing is written; the caller's next look at
        // the socket reports why.
        Err(_) => return Ok(0),
    };
    let mut buffer = vec![0; required];
    match traffic.encrypt(data, &mut buffer) {
        Ok(n) => {
            buffer.truncate(n);
            if outgoing.is_empty() {
                outgoing.bytes = buffer;
                outgoing.taken = 0;
            } else {
                outgoing.push(&buffer);
            }
            Ok(data.len())
        }
        Err(EncryptError::EncryptExhausted) => Err(rustls::Error::EncryptError.into()),
        Err(EncryptError::InsufficientSize(_)) => {
            Err(rustls::Error::General("TLS record larger than rustls said".to_string()).into())
        }
    }
}

impl<C: Side> TlsStream<C> {
    fn wrap(tcp: TcpStream, conn: C, sni: Option<String>, hello_pending: bool) -> Self {
        TlsStream {
            tcp,
            conn,
            incoming: Vec::new(),
            outgoing: Held::default(),
            plaintext: Held::default(),
            sni,
            hello_pending,
            tcp_eof: false,
            peer_closed: false,
            failed: None,
        }
    }

    /// True until the handshake is complete.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// True while TLS bytes wait for room in the socket.
    pub fn has_pending_output(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Moves handshake bytes both ways; `Ok(true)` once the handshake is complete. A peer
    /// that closes or fails the handshake gives an error (the caller then frees the stream).
    pub fn drive_handshake(&mut self, stack: &mut Stack) -> Result<bool, TransportError> {
        self.check_failed()?;
        self.push_out(stack)?;
        if self.conn.is_handshaking() {
            // Application data that arrives with the last flight is kept for the reader.
            self.run(stack, &mut |_| 0, Emit::Nothing)?;
        }
        if !self.conn.is_handshaking() {
            return Ok(true);
        }
        if self.tcp_eof {
            return Err(TransportError::Tls(TlsFailure::ClosedInHandshake));
        }
        if stack.socket_ref(self.tcp.handle()).state() == State::Closed {
            return Err(TransportError::Reset);
        }
        Ok(false)
    }

    /// The application protocol agreed by ALPN.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// What the handshake negotiated (`None` while it is in progress).
    pub fn info(&self) -> Option<TlsInfo> {
        if self.conn.is_handshaking() {
            return None;
        }
        Some(TlsInfo {
            version: self
                .conn
                .protocol_version()
                .map_or_else(String::new, version_name),
            cipher: self
                .conn
                .negotiated_cipher_suite()
                .map_or_else(String::new, |s| format!("{:?}", s.suite())),
            sni: self.sni.clone(),
            alpn: self
                .conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
        })
    }

    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    fn check_failed(&self) -> Result<(), TransportError> {
        match &self.failed {
            Some(e) => Err(TransportError::Tls(e.clone())),
            None => Ok(()),
        }
    }

    fn fail(&mut self, stack: &mut Stack, error: TlsFailure) -> TransportError {
        tracing::debug!("TLS {}: {}", self.tcp.handle().id(), Chain(&error));
        // rustls queued an alert for most errors: it goes out before we report.
        for _ in 0..4 {
            // The held bytes are given again: rustls keeps offsets into them.
            let UnbufferedStatus { state, .. } = self.conn.process(&mut self.incoming);
            match state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    if encode_into(&mut encode, &mut self.outgoing).is_err() {
                        break;
                    }
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                _ => break,
            }
        }
        let _ = self.push_out(stack);
        self.incoming = Vec::new();
        self.plaintext.clear();
        self.failed = Some(error.clone());
        TransportError::Tls(error)
    }

    /// Moves held TLS output into the socket, as far as it fits.
    fn push_out(&mut self, stack: &mut Stack) -> Result<(), TransportError> {
        push_out(stack, self.tcp.handle(), &mut self.outgoing)
    }

    /// Reads ciphertext from the socket after what is held; `Ok(true)` if any came (or the
    /// FIN).
    fn fill(&mut self, stack: &mut Stack) -> Result<bool, TransportError> {
        if self.tcp_eof || self.peer_closed {
            return Ok(false);
        }
        let room = INCOMING_LIMIT - self.incoming.len();
        if room == 0 {
            let error = rustls::Error::InvalidMessage(rustls::InvalidMessage::MessageTooLarge);
            return Err(self.fail(stack, error.into()));
        }
        let socket = stack.socket_for_reading(self.tcp.handle());
        let incoming = &mut self.incoming;
        let mut read = 0;
        // A wrapped receive buffer takes two turns.
        for _ in 0..2 {
            let result = socket.recv(|data| {
                let n = data.len().min(room - read);
                incoming.extend_from_slice(&data[..n]);
                (n, n)
            });
            match result {
                Ok(0) => break,
                Ok(n) => read += n,
                Err(RecvError::Finished) => {
                    self.tcp_eof = true;
                    return Ok(true);
                }
                Err(RecvError::InvalidState) => {
                    if socket.state() == State::Closed {
                        return Err(TransportError::Reset);
                    }
                    // Not yet established.
                    break;
                }
            }
        }
        Ok(read > 0)
    }

    /// Runs rustls over the ciphertext held and what the socket has, until it waits for
    /// the peer: handshake messages are answered, decrypted bytes offered to `deliver`
    /// (what it does not take is kept, and then only `emit` goes on), and `emit` runs
    /// once the connection may send. Returns whether bytes were offered and what `emit`
    /// wrote (`None` if it did not run).
    fn run(
        &mut self,
        stack: &mut Stack,
        deliver: &mut dyn FnMut(&[u8]) -> usize,
        emit: Emit<'_>,
    ) -> Result<(bool, Option<usize>), TransportError> {
        let mut offered = false;
        loop {
            let reading = matches!(emit, Emit::Nothing);
            if reading && !self.plaintext.is_empty() {
                return Ok((offered, None));
            }
            if self.hello_pending {
                // rustls is given a hello that spans records only once it is whole, so
                // the records are still as they came when the server name is read.
                match hello_server_name(&self.incoming) {
                    Hello::Read(name) => {
                        self.sni = name;
                        self.hello_pending = false;
                    }
                    Hello::FirstRecord => {}
                    Hello::MoreRecords => {
                        if !self.fill(stack)? {
                            return Ok((offered, None));
                        }
                        continue;
                    }
                }
            }
            let TlsStream {
                conn,
                incoming,
                outgoing,
                plaintext,
                tcp,
                peer_closed,
                ..
            } = self;
            let UnbufferedStatus { mut discard, state } = conn.process(incoming);
            let next = match state {
                Err(e) => Next::Fail(e.into()),
                Ok(ConnectionState::ReadTraffic(mut records)) => {
                    let mut next = Next::Again;
                    while let Some(record) = records.next_record() {
                        match record {
                            Ok(record) => {
                                discard += record.discard;
                                offered |= offer(deliver, plaintext, record.payload);
                            }
                            Err(e) => {
                                next = Next::Fail(e.into());
                                break;
                            }
                        }
                    }
                    next
                }
                Ok(ConnectionState::ReadEarlyData(mut records)) => {
                    let each = &mut |payload: &[u8]| offered |= offer(deliver, plaintext, payload);
                    match C::early_records(&mut records, each) {
                        Ok(n) => {
                            discard += n;
                            Next::Again
                        }
                        Err(e) => Next::Fail(e.into()),
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    match encode_into(&mut encode, outgoing) {
                        Ok(()) => Next::Again,
                        Err(e) => Next::Fail(e),
                    }
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    match push_out(stack, tcp.handle(), outgoing) {
                        Ok(()) => Next::Again,
                        Err(e) => Next::Socket(e),
                    }
                }
                Ok(ConnectionState::BlockedHandshake) => Next::Input,
                Ok(ConnectionState::PeerClosed) => {
                    *peer_closed = true;
                    Next::Again
                }
                Ok(ConnectionState::Closed) => {
                    *peer_closed = true;
                    Next::Done
                }
                Ok(ConnectionState::WriteTraffic(mut traffic)) => match emit {
                    Emit::Nothing => Next::Input,
                    Emit::Data(data) => {
                        match encrypt_into(&mut traffic, stack, tcp.handle(), outgoing, data) {
                            Ok(n) => Next::Sent(n),
                            Err(e) => Next::Fail(e),
                        }
                    }
                    Emit::CloseNotify => match close_notify_into(&mut traffic, outgoing) {
                        Ok(()) => Next::Sent(0),
                        Err(e) => Next::Fail(e),
                    },
                },
                Ok(_) => Next::Fail(
                    rustls::Error::General("unexpected TLS connection state".to_string()).into(),
                ),
            };
            let discard = discard.min(self.incoming.len());
            self.incoming.drain(..discard);
            if self.incoming.is_empty() {
                // Between records nothing is held.
                self.incoming = Vec::new();
            }
            match next {
                Next::Again => {}
                Next::Input => {
                    if !self.fill(stack)? {
                        return Ok((offered, None));
                    }
                }
                Next::Sent(n) => {
                    self.push_out(stack)?;
                    return Ok((offered, Some(n)));
                }
                Next::Done => return Ok((offered, None)),
                Next::Fail(e) => return Err(self.fail(stack, e)),
                Next::Socket(e) => return Err(e),
            }
        }
    }

    fn finish_read(
        &mut self,
        stack: &mut Stack,
        status: ReadStatus,
    ) -> Result<ReadStatus, TransportError> {
        match self.push_out(stack) {
            Ok(()) | Err(TransportError::Closed) => Ok(status),
            Err(e) if status == ReadStatus::WouldBlock => Err(e),
            Err(_) => Ok(status),
        }
    }

    /// Queues a `close_notify` alert (once the handshake is done) and moves it out.
    fn send_close_notify(&mut self, stack: &mut Stack) -> Result<(), TransportError> {
        if self.failed.is_some() || self.conn.is_handshaking() {
            return Ok(());
        }
        self.run(stack, &mut |_| 0, Emit::CloseNotify)?;
        Ok(())
    }
}

/// Offers a decrypted record to `deliver` unless bytes are held already; what it does not
/// take is held. Returns whether it was offered.
fn offer(deliver: &mut dyn FnMut(&[u8]) -> usize, held: &mut Held, payload: &[u8]) -> bool {
    if payload.is_empty() {
        return false;
    }
    let offered = held.is_empty();
    let taken = if offered {
        deliver(payload).min(payload.len())
    } else {
        0
    };
    if taken < payload.len() {
        held.push(&payload[taken..]);
    }
    offered
}

/// Appends a handshake record rustls produced to `outgoing`.
fn encode_into<D>(
    encode: &mut rustls::unbuffered::EncodeTlsData<'_, D>,
    outgoing: &mut Held,
) -> Result<(), TlsFailure> {
    let mut buffer = Vec::new();
    loop {
        match encode.encode(&mut buffer) {
            Ok(n) => {
                outgoing.push(&buffer[..n]);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size }))
                if buffer.len() < required_size =>
            {
                buffer.resize(required_size, 0);
            }
            Err(e) => return Err(rustls::Error::General(e.to_string()).into()),
        }
    }
}

/// Appends a `close_notify` alert to `outgoing`.
fn close_notify_into<D>(
    traffic: &mut WriteTraffic<'_, D>,
    outgoing: &mut Held,
) -> Result<(), TlsFailure> {
    let mut buffer = [0u8; CLOSE_RESERVE];
    match traffic.queue_close_notify(&mut buffer) {
        Ok(n) => {
            outgoing.push(&buffer[..n]);
            Ok(())
        }
        Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
            let mut buffer = vec![0; required_size];
            let n = traffic
                .queue_close_notify(&mut buffer)
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            outgoing.push(&buffer[..n]);
            Ok(())
        }
        Err(e) => Err(rustls::Error::General(e.to_string()).into()),
    }
}

impl<C: Side> Transport for TlsStream<C> {
    fn id(&self) -> ConnId {
        self.tcp.handle().id()
    }

    fn read_with(
        &mut self,
        stack: &mut Stack,
        reader: &mut dyn FnMut(&[u8]) -> usize,
    ) -> Result<ReadStatus, TransportError> {
        self.check_failed()?;
        match self.push_out(stack) {
            Ok(()) | Err(TransportError::Closed) => {}
            Err(e) => return Err(e),
        }
        let mut offered = false;
        // Plaintext already decrypted comes first.
        if !self.plaintext.is_empty() {
            let len = self.plaintext.len();
            let taken = reader(self.plaintext.as_slice()).min(len);
            self.plaintext.consume(taken);
            offered = true;
            if taken < len {
                return self.finish_read(stack, ReadStatus::Data);
            }
        }
        let (delivered, _) = self.run(stack, reader, Emit::Nothing)?;
        offered |= delivered;
        let status = if offered || !self.plaintext.is_empty() {
            ReadStatus::Data
        } else if self.peer_closed {
            ReadStatus::Eof
        } else if self.tcp_eof {
            if self.conn.is_handshaking() {
                return Err(TransportError::Tls(TlsFailure::ClosedInHandshake));
            }
            tracing::debug!(
                "TLS {}: peer closed TCP without close_notify (truncation)",
                self.tcp.handle().id()
            );
            ReadStatus::Eof
        } else if stack.socket_ref(self.tcp.handle()).state() == State::Closed {
            return Err(TransportError::Reset);
        } else {
            ReadStatus::WouldBlock
        };
        self.finish_read(stack, status)
    }

    fn write(&mut self, stack: &mut Stack, data: &[u8]) -> Result<usize, TransportError> {
        self.check_failed()?;
        {
            let socket = stack.socket_ref(self.tcp.handle());
            match socket.state() {
                State::Closed => return Err(TransportError::Reset),
                State::SynSent | State::SynReceived => return Ok(0),
                _ if !socket.may_send() => return Err(TransportError::Closed),
                _ => {}
            }
        }
        if self.conn.is_handshaking() && !self.drive_handshake(stack)? {
            return Ok(0);
        }
        self.push_out(stack)?;
        if !self.outgoing.is_empty() || data.is_empty() {
            return Ok(0);
        }
        let socket = stack.socket(self.tcp.handle());
        let room = socket.send_capacity() - socket.send_queue();
        let fit = plaintext_fit(room).min(data.len());
        if fit < data.len() {
            // Records are sized to the room, so the socket never sees the bytes that did not
            // fit: tell it, or the send buffer would not grow.
            socket.set_send_buffer_limited();
        }
        if fit == 0 {
            return Ok(0);
        }
        let (_, written) = self.run(stack, &mut |_| 0, Emit::Data(&data[..fit]))?;
        Ok(written.unwrap_or(0))
    }

    fn unsent(&self, stack: &Stack) -> usize {
        stack.socket_ref(self.tcp.handle()).send_queue() + self.outgoing.len()
    }

    fn register(&mut self, stack: &mut Stack, waker: &Waker, read: bool, write: bool) {
        // Whatever fits goes now; an error shows on the next read or write.
        let _ = self.push_out(stack);
        let handshaking = self.conn.is_handshaking();
        let pending = !self.outgoing.is_empty();
        let socket = stack.socket_for_reading(self.tcp.handle());
        if read || handshaking {
            socket.register_recv_waker(waker);
        }
        if write || pending {
            socket.register_send_waker(waker);
        }
    }

    fn shutdown_write(&mut self, stack: &mut Stack) {
        // Room for the alert is always kept free in the socket (CLOSE_RESERVE).
        if self.send_close_notify(stack).is_ok() && self.outgoing.is_empty() {
            self.tcp.shutdown_write(stack);
        }
    }

    fn close(mut self, stack: &mut Stack) {
        if self.send_close_notify(stack).is_ok() && !self.outgoing.is_empty() {
            tracing::debug!(
                "TLS {}: closing with TLS output that did not fit the socket",
                self.tcp.handle().id()
            );
        }
        self.tcp.close(stack);
    }

    fn abort(self, stack: &mut Stack) {
        self.tcp.abort(stack);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use rustls::{ClientConnection, ServerConnection};

    use super::*;
    use crate::transport::certs;

    /// A client and server that completed a handshake in memory.
    fn pair(
        version: &'static rustls::SupportedProtocolVersion,
    ) -> (ClientConnection, ServerConnection) {
        let generated = certs::self_signed(&["localhost".to_string()], &[]).expect("cert");
        let server_config =
            certs::server_config_with_versions(generated.chain, generated.key, &[], &[version])
                .expect("server config");
        let client_config =
            certs::client_config(&certs::Roots::Insecure, &[]).expect("client config");
        let name = ServerName::try_from("localhost").expect("name");
        let mut client = ClientConnection::new(client_config, name).expect("client");
        let mut server = ServerConnection::new(server_config).expect("server");
        for _ in 0..10 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).expect("client out");
            }
            server.read_tls(&mut wire.as_slice()).expect("server in");
            server.process_new_packets().expect("server");
            let mut wire = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut wire).expect("server out");
            }
            client.read_tls(&mut wire.as_slice()).expect("client in");
            client.process_new_packets().expect("client");
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
        (client, server)
    }

    #[test]
    fn sized_writes_fit_the_socket_room_with_the_close_reserve() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let (mut client, _server) = pair(version);
            client.set_buffer_limit(None);
            for room in [
                0, 63, 64, 100, 1000, 16_000, 16_500, 40_000, 65_536, 200_000,
            ] {
                let fit = plaintext_fit(room);
                let data = vec![7u8; fit];
                let taken = client.writer().write(&data).expect("write");
                assert_eq!(taken, fit);
                let mut wire = Vec::new();
                while client.wants_write() {
                    client.write_tls(&mut wire).expect("out");
                }
                assert!(
                    wire.len() + CLOSE_RESERVE <= room.max(CLOSE_RESERVE),
                    "{version:?}: room {room}, plaintext {fit}, wire {}",
                    wire.len()
                );
                // Not wasteful either: at most one record's overhead short per record.
                if room > 10_000 {
                    assert!(
                        fit + (room / MAX_FRAGMENT + 2) * RECORD_OVERHEAD + CLOSE_RESERVE >= room
                    );
                }
            }
            client.send_close_notify();
            let mut wire = Vec::new();
            client.write_tls(&mut wire).expect("out");
            assert!(
                wire.len() <= CLOSE_RESERVE,
                "close_notify is {} bytes",
                wire.len()
            );
        }
    }

    /// The first flight of a rustls client asking for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let config = certs::client_config(&certs::Roots::Insecure, &[]).expect("client config");
        let name = ServerName::try_from(name.to_string()).expect("name");
        let mut client = ClientConnection::new(config, name).expect("client");
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).expect("client out");
        }
        wire
    }

    #[test]
    fn server_name_is_read_from_the_hello_as_rustls_reads_it() {
        let hello = client_hello("Bench.Test");
        assert_eq!(
            hello_server_name(&hello),
            Hello::Read(Some("bench.test".to_string()))
        );
        // An address is not sent as a name.
        assert_eq!(
            hello_server_name(&client_hello("10.7.0.2")),
            Hello::Read(None)
        );
        // Incomplete: wait for more.
        for cut in [0, 3, 5, 9, hello.len() - 1] {
            let read = hello_server_name(&hello[..cut]);
            assert_eq!(read, Hello::FirstRecord, "cut at {cut}");
        }
        // The hello split over two records.
        let body = &hello[5..];
        let mut split = Vec::new();
        for part in [&body[..40], &body[40..]] {
            split.extend_from_slice(&[22, 3, 1]);
            split.extend_from_slice(&(part.len() as u16).to_be_bytes());
            split.extend_from_slice(part);
        }
        assert_eq!(
            hello_server_name(&split),
            Hello::Read(Some("bench.test".to_string()))
        );
        for cut in [45, 50, split.len() - 1] {
            let read = hello_server_name(&split[..cut]);
            assert_eq!(read, Hello::MoreRecords, "cut at {cut}");
        }
        // Not TLS, or not a hello: no name, and rustls will say why.
        assert_eq!(
            hello_server_name(b"GET / HTTP/1.1\r\n\r\n"),
            Hello::Read(None)
        );
        // A record longer than TLS allows is rustls's to refuse, at once.
        let oversized = [22, 3, 1, 0x48, 0x00];
        assert_eq!(hello_server_name(&oversized), Hello::Read(None));
        assert_eq!(
            hello_server_name(&[22, 3, 1, 0, 4, 2, 0, 0, 0]),
            Hello::Read(None)
        );
        // A hello cut short inside its extensions has no name.
        let mut short = hello[..5 + 4 + 40].to_vec();
        short[3..5].copy_from_slice(&44u16.to_be_bytes());
        short[6..9].copy_from_slice(&[0, 0, 40]);
        assert_eq!(hello_server_name(&short), Hello::Read(None));
    }

    #[test]
    fn held_bytes_keep_no_allocation_once_taken() {
        let mut held = Held::default();
        held.push(b"hello world");
        held.consume(6);
        assert_eq!(held.as_slice(), b"world");
        held.push(b"!");
        assert_eq!(held.as_slice(), b"world!");
        held.consume(100);
        assert!(held.is_empty());
        assert_eq!(held.bytes.capacity(), 0);
    }
}
