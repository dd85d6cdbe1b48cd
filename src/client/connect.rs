//! Opening a client connection: TCP, then TLS with the ALPN the exchange needs, then the
//! protocol engine (HTTP/1.1, HTTP/2, or a tunnel at once).

use std::sync::Arc;
use std::task::Waker;

use http::Response;
use smoltcp::socket::tcp::State;
use smoltcp::time::Instant;

use super::h1::H1Client;
use super::h2::H2Client;
use super::{ClientConfig, ClientError, ExchangeRef, Mode, Scheme, Target, Version};
use crate::conn::body::ResponseBody;
use crate::conn::pump::Pump;
use crate::conn::upgrade::{Tunnel, TUNNEL_BUFFER};
use crate::stack::Stack;
use crate::transport::any::AnyStream;
use crate::transport::certs;
use crate::transport::tcp::TcpStream;
use crate::transport::tls::ClientTls;
use crate::transport::{TlsFailure, Transport, TransportError};

/// A connection's protocol engine.
pub(super) enum Engine {
    /// TCP handshake in progress.
    Connecting(Option<TcpStream>),
    /// TLS handshake in progress.
    Tls(Option<Box<ClientTls>>),
    H1(Box<H1Client<AnyStream>>),
    H2(Box<H2Client<AnyStream>>),
    /// A bare connection carrying a tunnel.
    Tunnel(Box<Pump<AnyStream>>),
}

/// A client connection: its origin, its engine and, if opened for one exchange alone, that
/// exchange.
pub(crate) struct ClientConn {
    pub(super) target: Target,
    pub(super) engine: Engine,
    /// The exchange this connection was opened for alone ([`Mode::Upgrade`], [`Mode::Raw`]).
    pub(super) dedicated: Option<ExchangeRef>,
    pub(super) since: Instant,
}

/// The client's TLS configurations, one per ALPN offer.
pub(super) struct Handshakes {
    /// The configured trust and ALPN (HTTP exchanges).
    any: Arc<rustls::ClientConfig>,
    /// The same trust with ALPN `http/1.1` only (upgrades).
    h1: Arc<rustls::ClientConfig>,
    /// The same trust with no ALPN (bare tunnels).
    raw: Arc<rustls::ClientConfig>,
}

impl Handshakes {
    /// The configurations for `config`. Fails when the trusted certificates cannot be
    /// loaded (unless `config.tls` is given).
    pub(super) fn new(config: &ClientConfig) -> Result<Self, ClientError> {
        let alpn: Vec<Vec<u8>> = match config.version {
            Version::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Version::Http1 => vec![b"http/1.1".to_vec()],
            Version::Http2 => vec![b"h2".to_vec()],
        };
        let tls = match &config.tls {
            Some(tls) => tls.clone(),
            None => certs::client_config(&config.roots, &alpn)
                .map_err(|e| ClientError::Tls(TlsFailure::Config(Arc::new(e))))?,
        };
        let with_alpn = |alpn: Vec<Vec<u8>>| {
            let mut c = (*tls).clone();
            c.alpn_protocols = alpn;
            Arc::new(c)
        };
        Ok(Handshakes {
            h1: with_alpn(vec![b"http/1.1".to_vec()]),
            raw: with_alpn(Vec::new()),
            any: tls,
        })
    }

    /// Takes `conn` through its TCP and TLS handshakes as far as they go now, and gives it
    /// its protocol engine once they are done. Returns why it failed; `timer` gets the
    /// connect deadline while a handshake waits.
    pub(super) fn open(
        &self,
        config: &ClientConfig,
        stack: &mut Stack,
        conn: &mut ClientConn,
        waker: &Waker,
        now: Instant,
        timer: &mut Option<Instant>,
    ) -> Option<ClientError> {
        let mut failure = None;
        if let Engine::Connecting(stream) = &mut conn.engine {
            let state = stream
                .as_ref()
                .map(|s| stack.socket_ref(s.handle()).state());
            match state {
                Some(State::SynSent) | Some(State::SynReceived) => {
                    if now >= conn.since + config.connect_timeout.into() {
                        failure = Some(ClientError::ConnectTimeout(conn.target.endpoint()));
                    } else if let Some(s) = stream.as_mut() {
                        s.register(stack, waker, true, true);
                        *timer = Some(conn.since + config.connect_timeout.into());
                    }
                }
                Some(State::Closed) | None => {
                    failure = Some(ClientError::Refused(conn.target.endpoint()))
                }
                Some(_) => {
                    // Established: TLS first for https, else pick the protocol.
                    let mode = conn
                        .dedicated
                        .as_ref()
                        .map_or(Mode::Http, |ex| ex.borrow().mode);
                    if let Some(s) = stream.take() {
                        match conn.target.scheme {
                            Scheme::Https => {
                                let tls = match mode {
                                    Mode::Http => self.any.clone(),
                                    Mode::Upgrade => self.h1.clone(),
                                    Mode::Raw => self.raw.clone(),
                                };
                                let name = rustls_pki_types::ServerName::try_from(
                                    conn.target.host.clone(),
                                );
                                match name {
                                    Ok(name) => match ClientTls::connect(s, tls, name) {
                                        Ok(tls) => conn.engine = Engine::Tls(Some(Box::new(tls))),
                                        Err(e) => {
                                            failure =
                                                Some(ClientError::Tls(e.error().clone().into()));
                                            e.into_tcp().abort(stack);
                                        }
                                    },
                                    Err(_) => {
                                        failure = Some(ClientError::Tls(TlsFailure::ServerName(
                                            conn.target.host.clone(),
                                        )));
                                        s.abort(stack);
                                    }
                                }
                            }
                            Scheme::Http if mode != Mode::Http => {
                                conn.engine =
                                    dedicated_engine(AnyStream::from(s), conn, config, mode, now);
                            }
                            Scheme::Http => match config.version {
                                Version::Http2 => {
                                    conn.engine = Engine::H2(Box::new(H2Client::new(
                                        AnyStream::from(s),
                                        &conn.target,
                                    )))
                                }
                                Version::Auto | Version::Http1 => {
                                    conn.engine = Engine::H1(Box::new(H1Client::new(
                                        AnyStream::from(s),
                                        &conn.target,
                                        config,
                                        now,
                                    )))
                                }
                            },
                        }
                    }
                }
            }
        }
        if let Engine::Tls(tls) = &mut conn.engine {
            let result = match tls.as_mut() {
                Some(t) => t.drive_handshake(stack),
                None => Ok(false),
            };
            match result {
                Ok(true) => {
                    let mode = conn
                        .dedicated
                        .as_ref()
                        .map_or(Mode::Http, |ex| ex.borrow().mode);
                    if let Some(t) = tls.take() {
                        let h2 = t.alpn_protocol() == Some(b"h2");
                        if mode != Mode::Http {
                            conn.engine =
                                dedicated_engine(AnyStream::from(*t), conn, config, mode, now);
                        } else if h2 {
                            conn.engine = Engine::H2(Box::new(H2Client::new(
                                AnyStream::from(*t),
                                &conn.target,
                            )));
                        } else if config.version == Version::Http2 {
                            failure = Some(ClientError::Tls(TlsFailure::NoHttp2));
                            t.abort(stack);
                        } else {
                            conn.engine = Engine::H1(Box::new(H1Client::new(
                                AnyStream::from(*t),
                                &conn.target,
                                config,
                                now,
                            )));
                        }
                    }
                }
                Ok(false) if now < conn.since + config.connect_timeout.into() => {
                    if let Some(t) = tls.as_mut() {
                        t.register(stack, waker, true, t.has_pending_output());
                    }
                    *timer = Some(conn.since + config.connect_timeout.into());
                }
                Ok(false) => {
                    failure = Some(ClientError::Tls(TlsFailure::HandshakeTimeout));
                    if let Some(t) = tls.take() {
                        t.abort(stack);
                    }
                }
                Err(e) => {
                    failure = Some(match e {
                        TransportError::Tls(failure) => ClientError::Tls(failure),
                        other => ClientError::Transport(other),
                    });
                    if let Some(t) = tls.take() {
                        t.close(stack);
                    }
                }
            }
        }
        failure
    }
}

/// The engine of a connection opened for one exchange: a tunnel at once ([`Mode::Raw`]) or
/// HTTP/1.1 with the exchange's request sent first ([`Mode::Upgrade`]).
pub(super) fn dedicated_engine(
    stream: AnyStream,
    conn: &mut ClientConn,
    config: &ClientConfig,
    mode: Mode,
    now: Instant,
) -> Engine {
    match mode {
        Mode::Raw => {
            let (user, end) = Tunnel::pair(TUNNEL_BUFFER);
            if let Some(ex) = &conn.dedicated {
                let mut ex = ex.borrow_mut();
                ex.tunnel = Some(user);
                ex.respond(Ok(Response::new(ResponseBody::empty())));
            }
            Engine::Tunnel(Box::new(Pump::new(
                stream,
                end,
                bytes::Bytes::new(),
                None,
                now,
            )))
        }
        Mode::Upgrade | Mode::Http => {
            let mut h1 = H1Client::new(stream, &conn.target, config, now);
            if let Some(ex) = conn.dedicated.clone() {
                h1.assign(ex, now);
            }
            Engine::H1(Box::new(h1))
        }
    }
}
