//! The origin of an absolute `http://` or `https://` URI: scheme, host and port, which is
//! what a connection to it needs. Shared by the client and the flow connector.

use http::Uri;

/// Where an absolute `http://` or `https://` URI goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `https`: the connection speaks TLS.
    pub tls: bool,
    /// The host as written, IPv6 brackets removed.
    pub host: String,
    /// The port written, or 80 / 443 by the scheme.
    pub port: u16,
}

impl Origin {
    /// Reads the origin of `uri`; the error says what is wrong (no scheme, another scheme,
    /// no host, a port outside 1 to 65535).
    pub fn from_uri(uri: &Uri) -> Result<Origin, String> {
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => return Err(format!("unsupported scheme '{other}'")),
            None => return Err("no scheme (http:// or https://)".to_string()),
        };
        let host = uri
            .host()
            .ok_or_else(|| "no host".to_string())?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        // `Uri` keeps a port it cannot read as u16 (`:99999`) and then reports none at
        // all: read the text, so such a URI is an error rather than a connect to port 80.
        let port = match uri.authority().and_then(|a| port_text(a.as_str())) {
            None if tls => 443,
            None => 80,
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(format!("port {text} is not 1 to 65535")),
            },
        };
        Ok(Origin { tls, host, port })
    }
}

/// The port of an authority (`user@host:port`, `[v6]:port`) as written; `None` without one.
fn port_text(authority: &str) -> Option<&str> {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let after_host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(_, rest)| rest),
        None => host_port.find(':').map_or("", |i| &host_port[i..]),
    };
    after_host.strip_prefix(':').filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(uri: &str) -> Result<Origin, String> {
        Origin::from_uri(&uri.parse::<Uri>().map_err(|e| e.to_string())?)
    }

    #[test]
    fn scheme_host_and_port() {
        let o = |tls, host: &str, port| {
            Ok(Origin {
                tls,
                host: host.to_string(),
                port,
            })
        };
        assert_eq!(origin("http://10.7.0.1/x"), o(false, "10.7.0.1", 80));
        assert_eq!(
            origin("https://example.test/"),
            o(true, "example.test", 443)
        );
        assert_eq!(
            origin("http://[fd00:7::1]:8000/"),
            o(false, "fd00:7::1", 8000)
        );
        assert_eq!(origin("https://user@h:8443"), o(true, "h", 8443));
    }

    #[test]
    fn what_is_wrong_is_said() {
        assert_eq!(
            origin("ftp://h/"),
            Err("unsupported scheme 'ftp'".to_string())
        );
        assert_eq!(
            origin("/just/a/path"),
            Err("no scheme (http:// or https://)".to_string())
        );
        assert_eq!(
            origin("http://h:99999/"),
            Err("port 99999 is not 1 to 65535".to_string())
        );
        assert_eq!(
            origin("http://h:0/"),
            Err("port 0 is not 1 to 65535".to_string())
        );
    }
}
