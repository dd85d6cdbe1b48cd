//! Showing errors with their causes.
//!
//! tapir's errors keep what caused them as [`source`](std::error::Error::source) (a TLS
//! failure under a lost connection, an `h2` error under a protocol error); their own
//! message names only their part. [`Chain`] prints an error followed by its sources —
//! what anyhow's `{:#}` prints in the binary — for the places that turn an error into text
//! (logs, a proxy's 502 page, a failed job's outcome).

use std::error::Error;
use std::fmt;

/// Displays an error and each of its sources after it: `outer: inner: innermost`.
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn every_source_is_shown_once() {
        let error = Outer(Middle(std::io::Error::other("innermost")));
        assert_eq!(Chain(&error).to_string(), "outer: middle: innermost");
        let alone = std::io::Error::other("alone");
        assert_eq!(Chain(&alone).to_string(), "alone");
    }

    /// tapir's errors keep their causes as sources, and no message repeats its source's.
    #[test]
    fn library_errors_keep_their_sources_once() {
        use crate::client::ClientError;
        use crate::transport::{TlsFailure, TransportError};
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let tls = ClientError::Tls(TlsFailure::Rustls(unknown.clone()));
        assert_eq!(
            Chain(&tls).to_string(),
            "TLS: invalid peer certificate: UnknownIssuer"
        );
        let source = tls.source().and_then(|s| s.downcast_ref::<TlsFailure>());
        assert!(matches!(source, Some(TlsFailure::Rustls(e)) if *e == unknown));
        let lost = ClientError::Transport(TransportError::Tls(TlsFailure::ClosedInHandshake));
        assert_eq!(
            Chain(&lost).to_string(),
            "connection lost: TLS: peer closed the connection during the TLS handshake"
        );
        let io = TransportError::Tls(std::io::Error::other("record overflow").into());
        assert_eq!(Chain(&io).to_string(), "TLS: record overflow");
        let refused = crate::stack::StackError::Connect {
            remote: smoltcp::wire::IpEndpoint::new(smoltcp::wire::IpAddress::v4(10, 7, 0, 1), 80),
            reason: smoltcp::socket::tcp::ConnectError::Unaddressable,
        };
        let connect = ClientError::Connect(refused);
        let text = Chain(&connect).to_string();
        assert!(
            text.starts_with("cannot connect: cannot connect to 10.7.0.1:80: "),
            "{text}"
        );
        for error in [&tls as &dyn Error, &lost, &connect] {
            let mut parts = Vec::new();
            let mut next = Some(error);
            while let Some(e) = next {
                parts.push(e.to_string());
                next = e.source();
            }
            for pair in parts.windows(2) {
                assert!(!pair[0].contains(&pair[1]), "{parts:?}");
            }
        }
    }
}
