//! The key of a TCP connection in the stack's per-frame tables (the shard index and the
//! RST check's record of what was sent), packed for hashing, and the hasher of those tables.
//!
//! Every received frame is looked up by its 4-tuple, and every sent one recorded: a tuple of
//! `IpAddress`/`IpEndpoint` enums feeds a hasher in eight small writes (discriminants,
//! lengths, bytes, ports); the packed key is one 38-byte write. The tables hash with
//! foldhash, seeded at random per table ([`ConnMap`]): peers choose their addresses and
//! ports, so the hash must not be predictable (collision flooding), but the std hasher
//! (SipHash-1-3) cost about 200 instructions a frame, a quarter of a small request's
//! routing; foldhash is a few dozen, and its random seed keeps blind collisions out (as
//! Linux's keyed hash of the 4-tuple does).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint};

/// A table keyed by connection (or by anything else a frame names), with a fast hasher
/// seeded at random (see the module's documentation).
pub type ConnMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Bytes of a packed key: for each end (local, then remote), its family, address (16)
/// and port (2).
const LEN: usize = 2 * END;
const END: usize = 19;

/// A TCP connection as seen from the stack: local and remote address and port.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ConnKey([u8; LEN]);

impl ConnKey {
    /// The key of the connection between `local` and `remote`.
    pub fn new(local: IpAddress, local_port: u16, remote: IpAddress, remote_port: u16) -> Self {
        let mut bytes = [0u8; LEN];
        put_end(&mut bytes[..END], local, local_port);
        put_end(&mut bytes[END..], remote, remote_port);
        ConnKey(bytes)
    }

    /// The key of the connection between two endpoints.
    pub fn of(local: IpEndpoint, remote: IpEndpoint) -> Self {
        ConnKey::new(local.addr, local.port, remote.addr, remote.port)
    }

    /// The key of `socket`'s connection, once it has both endpoints.
    pub fn of_socket(socket: &tcp::Socket<'_>) -> Option<Self> {
        Some(ConnKey::of(
            socket.local_endpoint()?,
            socket.remote_endpoint()?,
        ))
    }
}

fn put_end(out: &mut [u8], addr: IpAddress, port: u16) {
    match addr {
        IpAddress::Ipv4(a) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&a.octets());
        }
        IpAddress::Ipv6(a) => {
            out[0] = 6;
            out[1..17].copy_from_slice(&a.octets());
        }
    }
    out[17..19].copy_from_slice(&port.to_be_bytes());
}

/// The address and port of one end of a packed key.
fn end(b: &[u8]) -> IpEndpoint {
    let addr = if b[0] == 4 {
        IpAddress::Ipv4(smoltcp::wire::Ipv4Address::new(b[1], b[2], b[3], b[4]))
    } else {
        let mut o = [0u8; 16];
        o.copy_from_slice(&b[1..17]);
        IpAddress::Ipv6(smoltcp::wire::Ipv6Address::from(o))
    };
    IpEndpoint::new(addr, u16::from_be_bytes([b[17], b[18]]))
}

impl Hash for ConnKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.0);
    }
}

impl std::fmt::Debug for ConnKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} - {}", end(&self.0[..END]), end(&self.0[END..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{Ipv4Address, Ipv6Address};

    #[test]
    fn keys_differ_by_every_field_and_family() {
        let v4 = |d| IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, d));
        let base = ConnKey::new(v4(1), 80, v4(2), 5000);
        assert_eq!(base, ConnKey::new(v4(1), 80, v4(2), 5000));
        assert_ne!(base, ConnKey::new(v4(3), 80, v4(2), 5000));
        assert_ne!(base, ConnKey::new(v4(1), 81, v4(2), 5000));
        assert_ne!(base, ConnKey::new(v4(1), 80, v4(3), 5000));
        assert_ne!(base, ConnKey::new(v4(1), 80, v4(2), 5001));
        // Swapped ends are another connection.
        assert_ne!(base, ConnKey::new(v4(2), 5000, v4(1), 80));
        // An IPv6 address whose first bytes equal the IPv4 one is not the same.
        let mut o = [0u8; 16];
        o[..4].copy_from_slice(&[10, 0, 0, 1]);
        let v6 = IpAddress::Ipv6(Ipv6Address::from(o));
        assert_ne!(base, ConnKey::new(v6, 80, v4(2), 5000));
        assert_eq!(format!("{base:?}"), "10.0.0.1:80 - 10.0.0.2:5000");
        let both6 = ConnKey::new(v6, 80, v6, 1);
        assert_eq!(format!("{both6:?}"), "a00:1:::80 - a00:1:::1");
    }
}
