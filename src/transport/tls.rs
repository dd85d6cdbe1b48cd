//! TLS over a [`TcpStream`], driven sans-IO: rustls keeps the TLS state, and every call moves
//! whatever ciphertext is already in the socket's buffers — nothing blocks, so a slow
//! handshake never holds up other connections.
//!
//! Writes are sized to what the socket can take: when [`Transport::write`] returns `n`, the
//! `n` plaintext bytes are encrypted and queued in the TCP socket, so a [`Transport::close`]
//! right after loses nothing (room for the `close_notify` alert is kept too).

use std::io::{self, BufRead, Write};
use std::ops::DerefMut;
use std::sync::Arc;
use std::task::Waker;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ConnectionCommon, ServerConnection};
use smoltcp::socket::tcp::{self, RecvError, State};

use super::tcp::TcpStream;
use super::{ReadStatus, TlsFailure, Transport, TransportError};
use crate::error::Chain;
use crate::stack::{ConnId, Stack};

/// Most plaintext rustls buffers for sending, and most TLS output it buffers.
const BUFFER_LIMIT: usize = 64 * 1024;
/// Largest plaintext of one TLS record.
const MAX_FRAGMENT: usize = 16 * 1024;
/// Bytes a record adds at most with the provider's suites (header, explicit nonce or
/// content type, AEAD tag: 29 for TLS 1.2 GCM, 22 for TLS 1.3), rounded up.
const RECORD_OVERHEAD: usize = 40;
/// Socket room kept free for the `close_notify` alert (24 to 31 bytes on the wire).
const CLOSE_RESERVE: usize = 64;

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
    impl Sealed for rustls::ServerConnection {}
    impl Sealed for rustls::ClientConnection {}
}

/// One side of a rustls connection (server or client); sealed.
pub trait Side: DerefMut<Target = ConnectionCommon<Self::Data>> + sealed::Sealed {
    /// rustls' per-side state.
    type Data;
    /// The server name the client sent, as far as this side knows it.
    fn received_sni(&self) -> Option<&str>;
}

impl Side for ServerConnection {
    type Data = rustls::server::ServerConnectionData;
    fn received_sni(&self) -> Option<&str> {
        self.server_name()
    }
}

impl Side for ClientConnection {
    type Data = rustls::client::ClientConnectionData;
    fn received_sni(&self) -> Option<&str> {
        None
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

/// A TLS session over a TCP connection, usable as a plaintext [`Transport`].
pub struct TlsStream<C> {
    tcp: TcpStream,
    conn: C,
    /// The server name a client sent (a server learns it from rustls).
    sent_sni: Option<String>,
    /// The peer's FIN was read (rustls knows it too).
    tcp_eof: bool,
    /// The fatal TLS error, once there was one; every later call reports it.
    failed: Option<TlsFailure>,
}

/// A server-side TLS stream.
pub type ServerTls = TlsStream<ServerConnection>;
/// A client-side TLS stream.
pub type ClientTls = TlsStream<ClientConnection>;

impl<C> std::fmt::Debug for TlsStream<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("tcp", &self.tcp)
            .field("tcp_eof", &self.tcp_eof)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Starts the server side of a handshake on an accepted connection.
    pub fn accept(tcp: TcpStream, config: Arc<rustls::ServerConfig>) -> Result<Self, TlsError> {
        match ServerConnection::new(config) {
            Ok(conn) => Ok(TlsStream::wrap(tcp, conn, None)),
            Err(error) => Err(TlsError { error, tcp }),
        }
    }

    /// The server name the client asked for (known once its hello was read).
    pub fn sni(&self) -> Option<&str> {
        self.conn.server_name()
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
        match ClientConnection::new(config, server_name) {
            Ok(conn) => Ok(TlsStream::wrap(tcp, conn, sni)),
            Err(error) => Err(TlsError { error, tcp }),
        }
    }
}

/// Writes into a TCP socket's send buffer; `WouldBlock` when it is full.
struct SocketWriter<'a>(&'a mut tcp::Socket<'static>);

impl SocketWriter<'_> {
    fn refused(&self) -> io::Error {
        match self.0.state() {
            State::Closed => io::ErrorKind::ConnectionReset.into(),
            // Still connecting: the bytes wait in rustls.
            State::SynSent | State::SynReceived | State::Listen => io::ErrorKind::WouldBlock.into(),
            _ => io::ErrorKind::BrokenPipe.into(),
        }
    }
}

impl Write for SocketWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.0.send_slice(buf) {
            Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
            Ok(n) => Ok(n),
            Err(_) => Err(self.refused()),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let mut total = 0;
        for buf in bufs.iter().filter(|b| !b.is_empty()) {
            match self.0.send_slice(buf) {
                Ok(n) => {
                    total += n;
                    if n < buf.len() {
                        break;
                    }
                }
                Err(_) if total > 0 => break,
                Err(_) => return Err(self.refused()),
            }
        }
        if total == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads from a TCP socket's receive buffer: `Ok(0)` at the peer's FIN, `WouldBlock` when
/// empty.
struct SocketReader<'a>(&'a mut tcp::Socket<'static>);

impl io::Read for SocketReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let result = self.0.recv(|data| {
            let n = data.len().min(buf.len());
            buf[..n].copy_from_slice(&data[..n]);
            (n, n)
        });
        match result {
            Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
            Ok(n) => Ok(n),
            Err(RecvError::Finished) => Ok(0),
            Err(RecvError::InvalidState) => match self.0.state() {
                State::Closed => Err(io::ErrorKind::ConnectionReset.into()),
                // Not yet established.
                _ => Err(io::ErrorKind::WouldBlock.into()),
            },
        }
    }
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

impl<C: Side> TlsStream<C> {
    fn wrap(tcp: TcpStream, mut conn: C, sent_sni: Option<String>) -> Self {
        conn.set_buffer_limit(Some(BUFFER_LIMIT));
        TlsStream {
            tcp,
            conn,
            sent_sni,
            tcp_eof: false,
            failed: None,
        }
    }

    /// True until the handshake is complete.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// True while rustls holds TLS bytes that did not fit in the socket yet.
    pub fn has_pending_output(&self) -> bool {
        self.conn.wants_write()
    }

    /// Moves handshake bytes both ways; `Ok(true)` once the handshake is complete. A peer
    /// that closes or fails the handshake gives an error (the caller then frees the stream).
    pub fn drive_handshake(&mut self, stack: &mut Stack) -> Result<bool, TransportError> {
        self.check_failed()?;
        self.flush(stack)?;
        if self.conn.is_handshaking() {
            self.pull(stack, true)?;
            self.flush(stack)?;
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
            sni: self
                .sent_sni
                .clone()
                .or_else(|| self.conn.received_sni().map(str::to_string)),
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

    fn fail(&mut self, stack: &mut Stack, error: impl Into<TlsFailure>) -> TransportError {
        let error = error.into();
        tracing::debug!("TLS {}: {}", self.tcp.handle().id(), Chain(&error));
        // rustls queued an alert for most errors: it goes out before we report.
        let _ = self.flush(stack);
        self.failed = Some(error.clone());
        TransportError::Tls(error)
    }

    /// Moves pending TLS output into the socket, as far as it fits.
    fn flush(&mut self, stack: &mut Stack) -> Result<(), TransportError> {
        if !self.conn.wants_write() {
            // Nothing to send: an idle connection is not given a send buffer.
            return Ok(());
        }
        let socket = stack.socket(self.tcp.handle());
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut SocketWriter(&mut *socket)) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(TransportError::Reset)
                }
                Err(_) => return Err(TransportError::Closed),
            }
        }
        Ok(())
    }

    /// Feeds ciphertext from the socket to rustls and processes it. Returns true if any was
    /// read (or the FIN was seen). With `handshake_only`, stops once the handshake is done.
    fn pull(&mut self, stack: &mut Stack, handshake_only: bool) -> Result<bool, TransportError> {
        let mut any = false;
        while !self.tcp_eof
            && self.conn.wants_read()
            && (!handshake_only || self.conn.is_handshaking())
        {
            let read = {
                let socket = stack.socket_for_reading(self.tcp.handle());
                self.conn.read_tls(&mut SocketReader(socket))
            };
            match read {
                Ok(0) => {
                    self.tcp_eof = true;
                    any = true;
                }
                Ok(_) => any = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(TransportError::Reset)
                }
                Err(e) => return Err(self.fail(stack, e)),
            }
            if let Err(e) = self.conn.process_new_packets() {
                return Err(self.fail(stack, e));
            }
            // Answers (handshake flights, key updates) go out as they are produced, so
            // rustls keeps reading during the handshake.
            self.flush(stack)?;
        }
        Ok(any)
    }

    fn finish_read(
        &mut self,
        stack: &mut Stack,
        status: ReadStatus,
    ) -> Result<ReadStatus, TransportError> {
        match self.flush(stack) {
            Ok(()) | Err(TransportError::Closed) => Ok(status),
            Err(e) if status == ReadStatus::WouldBlock => Err(e),
            Err(_) => Ok(status),
        }
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
        match self.flush(stack) {
            Ok(()) | Err(TransportError::Closed) => {}
            Err(e) => return Err(e),
        }
        let mut offered = false;
        loop {
            // Plaintext rustls already holds comes first, straight from its buffer.
            let mut plain = self.conn.reader();
            let outcome = match plain.fill_buf() {
                Ok([]) => Err(ReadStatus::Eof),
                Ok(chunk) => {
                    let len = chunk.len();
                    let taken = reader(chunk).min(len);
                    plain.consume(taken);
                    Ok(taken == len)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    tracing::debug!(
                        "TLS {}: peer closed TCP without close_notify (truncation)",
                        self.tcp.handle().id()
                    );
                    Err(ReadStatus::Eof)
                }
                Err(e) => return Err(self.fail(stack, e)),
            };
            match outcome {
                // The reader took all of a chunk: offer more.
                Ok(true) => {
                    offered = true;
                    continue;
                }
                // It took only part: the rest waits for the next call.
                Ok(false) if self.conn.wants_read() => {}
                Ok(false) => {
                    // Plaintext left (reader full), or output must leave first.
                    let held = self.conn.reader().fill_buf().is_ok_and(|b| !b.is_empty());
                    if held {
                        return self.finish_read(stack, ReadStatus::Data);
                    }
                }
                Err(eof) => {
                    let status = if offered { ReadStatus::Data } else { eof };
                    return self.finish_read(stack, status);
                }
            }
            if !self.pull(stack, false)? {
                break;
            }
        }
        let status = if offered {
            ReadStatus::Data
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
        self.flush(stack)?;
        if self.conn.wants_write() || data.is_empty() {
            return Ok(0);
        }
        let socket = stack.socket_ref(self.tcp.handle());
        let room = socket.send_capacity() - socket.send_queue();
        let fit = plaintext_fit(room).min(data.len());
        if fit == 0 {
            return Ok(0);
        }
        let written = match self.conn.writer().write(&data[..fit]) {
            Ok(n) => n,
            Err(e) => return Err(self.fail(stack, e)),
        };
        self.flush(stack)?;
        Ok(written)
    }

    fn unsent(&self, stack: &Stack) -> usize {
        let queued = stack.socket_ref(self.tcp.handle()).send_queue();
        // rustls does not tell how much it holds; one byte says "not everything is out".
        queued + usize::from(self.conn.wants_write())
    }

    fn register(&mut self, stack: &mut Stack, waker: &Waker, read: bool, write: bool) {
        // Whatever fits goes now; an error shows on the next read or write.
        let _ = self.flush(stack);
        let handshaking = self.conn.is_handshaking();
        let pending = self.conn.wants_write();
        let socket = stack.socket_for_reading(self.tcp.handle());
        if read || handshaking {
            socket.register_recv_waker(waker);
        }
        if write || pending {
            socket.register_send_waker(waker);
        }
    }

    fn shutdown_write(&mut self, stack: &mut Stack) {
        self.conn.send_close_notify();
        // Room for the alert is always kept free in the socket (CLOSE_RESERVE).
        if self.flush(stack).is_ok() && !self.conn.wants_write() {
            self.tcp.shutdown_write(stack);
        }
    }

    fn close(mut self, stack: &mut Stack) {
        self.conn.send_close_notify();
        if self.flush(stack).is_ok() && self.conn.wants_write() {
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
}
