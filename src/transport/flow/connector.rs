//! The connector: `tower::Service<http::Uri>` yielding flows, the Rust form of paf's mimic
//! `resolve` over TCP and TLS endpoints. hyper's `client::conn` handshakes (and anything
//! taking a tower `MakeConnection`) open their connections through it.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use rustls::pki_types::ServerName;
use smoltcp::wire::IpAddress;

use super::table::{Connect, Host, Inbox, TlsConnect};
use super::{Flow, FlowError};
use crate::transport::origin::Origin;

/// What [`Connector::call`](tower_service::Service::call) returns: the flow once open.
pub type Connecting = Connect;

/// Opens a flow for a URI: TCP for `http://`, TLS for `https://` (SNI and certificate
/// checks with the URI's host, ALPN as the TLS configuration offers it: the flow's
/// [`FlowInfo::alpn`](super::FlowInfo::alpn) tells what was agreed). Host names are
/// resolved with the stack's DNS servers. `Send + Sync + Clone`; made by
/// [`FlowHandle::connector`](super::FlowHandle::connector).
#[derive(Clone)]
pub struct Connector {
    inbox: Arc<Inbox>,
    tls: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("alpn", &self.tls.alpn_protocols)
            .finish_non_exhaustive()
    }
}

/// Where a URI goes: host, port, and whether TLS is wanted.
fn parse(uri: &Uri) -> Result<(Host, String, u16, bool), FlowError> {
    let Origin {
        tls,
        host: name,
        port,
    } = Origin::from_uri(uri).map_err(|reason| FlowError::BadUri {
        uri: uri.to_string(),
        reason,
    })?;
    let host = match name.parse::<std::net::IpAddr>() {
        Ok(ip) => Host::Addr(IpAddress::from(ip)),
        Err(_) => Host::Name(name.clone()),
    };
    Ok((host, name, port, tls))
}

impl Connector {
    pub(super) fn new(inbox: Arc<Inbox>, tls: Arc<rustls::ClientConfig>) -> Self {
        Connector { inbox, tls }
    }

    /// Opens a flow for `uri` (the same as the service's `call`).
    pub fn connect(&self, uri: &Uri) -> Connecting {
        let (host, name, port, tls) = match parse(uri) {
            Ok(parts) => parts,
            Err(e) => return Connect::failed(e),
        };
        let tls = if tls {
            match ServerName::try_from(name) {
                Ok(server_name) => Some(TlsConnect {
                    config: self.tls.clone(),
                    server_name,
                }),
                Err(e) => {
                    return Connect::failed(FlowError::BadUri {
                        uri: uri.to_string(),
                        reason: format!("not a TLS server name: {e}"),
                    })
                }
            }
        } else {
            None
        };
        self.inbox.connect(host, port, tls)
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = Flow;
    type Error = FlowError;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), FlowError>> {
        if self.inbox.stopped.load(Ordering::Acquire) {
            Poll::Ready(Err(FlowError::Stopped))
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        self.connect(&uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_give_host_port_and_tls() {
        let (host, _, port, tls) = parse(&"http://10.0.0.2:8080/x".parse().unwrap()).unwrap();
        assert!(matches!(host, Host::Addr(a) if a == IpAddress::v4(10, 0, 0, 2)));
        assert_eq!((port, tls), (8080, false));
        let (host, name, port, tls) = parse(&"https://example.test".parse().unwrap()).unwrap();
        assert!(matches!(host, Host::Name(n) if n == "example.test"));
        assert_eq!((name.as_str(), port, tls), ("example.test", 443, true));
        let (_, _, port, _) = parse(&"https://[fd00::1]:8443/".parse().unwrap()).unwrap();
        assert_eq!(port, 8443);
        let (host, _, port, _) = parse(&"http://[fd00::1]/".parse().unwrap()).unwrap();
        assert!(matches!(host, Host::Addr(IpAddress::Ipv6(_))));
        assert_eq!(port, 80);
        for bad in ["ftp://a/", "/path", "http://a:0/", "http://a:99999/"] {
            let uri: Uri = bad.parse().unwrap();
            assert!(
                matches!(parse(&uri), Err(FlowError::BadUri { .. })),
                "{bad}"
            );
        }
    }
}
