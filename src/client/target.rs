//! Where a request goes: the origin (scheme, host, port) and the address it resolves to,
//! read from a URL.

use std::fmt;

use http::Uri;
use smoltcp::wire::{IpAddress, IpEndpoint};

use super::ClientError;
use crate::transport::origin::Origin;

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// Cleartext.
    Http,
    /// TLS.
    Https,
}

/// Where a request goes: the origin (scheme, host, port) and the address it resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Host name (for Host/`:authority` and TLS SNI).
    pub host: String,
    /// Port.
    pub port: u16,
    /// The address to connect to.
    pub addr: IpAddress,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(f, "{scheme}://{}:{} ({})", self.host, self.port, self.addr)
    }
}

impl Target {
    /// The origin of an absolute URL, connecting to `addr`.
    pub fn from_uri(uri: &Uri, addr: IpAddress) -> Result<Target, ClientError> {
        let origin = Origin::from_uri(uri).map_err(|reason| ClientError::BadUrl {
            url: uri.to_string(),
            reason,
        })?;
        let scheme = if origin.tls {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let (host, port) = (origin.host, origin.port);
        Ok(Target {
            scheme,
            host,
            port,
            addr,
        })
    }

    /// Parses an absolute `http://` or `https://` URL; the error says what is wrong with it
    /// (no scheme, no host, a bad port, ...) rather than the URI parser's "invalid format".
    pub fn parse_url(url: &str) -> Result<Uri, ClientError> {
        let bad = |reason: String| ClientError::BadUrl {
            url: format!("'{url}'"),
            reason,
        };
        if url.is_empty() {
            return Err(bad("empty URL".into()));
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad(format!(
                "no scheme: write http://{url} or https://{url}"
            )));
        };
        if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
            return Err(bad(format!("no host after '{scheme}://'")));
        }
        let uri: Uri = url
            .parse()
            .map_err(|e| bad(format!("not a valid URL ({e})")))?;
        Target::from_uri(&uri, IpAddress::v4(0, 0, 0, 0)).map_err(|e| match e {
            ClientError::BadUrl { reason, .. } => bad(reason),
            other => other,
        })?;
        Ok(uri)
    }

    /// The host as an IP address, when the URL names one directly.
    pub fn literal_addr(uri: &Uri) -> Option<IpAddress> {
        let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
        host.parse::<std::net::IpAddr>().ok().map(IpAddress::from)
    }

    pub(super) fn endpoint(&self) -> IpEndpoint {
        IpEndpoint::new(self.addr, self.port)
    }

    /// The `authority` of requests to this target.
    pub(super) fn authority(&self) -> String {
        let default = match self.scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(url: &str) -> String {
        match Target::parse_url(url) {
            Err(ClientError::BadUrl { reason, .. }) => reason,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn urls_are_parsed_with_reasons() {
        assert_eq!(reason(""), "empty URL");
        assert_eq!(reason("http:///"), "no host after 'http://'");
        assert_eq!(reason("http://"), "no host after 'http://'");
        assert_eq!(
            reason("10.7.0.1:8000/x"),
            "no scheme: write http://10.7.0.1:8000/x or https://10.7.0.1:8000/x"
        );
        assert_eq!(reason("ftp://h/"), "unsupported scheme 'ftp'");
        assert_eq!(
            reason("http://10.7.0.1:99999/"),
            "port 99999 is not 1 to 65535"
        );
        assert_eq!(reason("http://[fd00::1]:0/"), "port 0 is not 1 to 65535");
        let uri = Target::parse_url("http://[fd00:7::1]:8000/x").unwrap();
        let target = Target::from_uri(&uri, IpAddress::v4(0, 0, 0, 0)).unwrap();
        assert_eq!((target.host.as_str(), target.port), ("fd00:7::1", 8000));
        let uri = Target::parse_url("https://u@h:/").unwrap();
        assert_eq!(
            Target::from_uri(&uri, IpAddress::v4(0, 0, 0, 0))
                .unwrap()
                .port,
            443
        );
    }
}
