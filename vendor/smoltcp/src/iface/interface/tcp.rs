use super::*;

use crate::socket::tcp::Socket;

impl InterfaceInner {
    pub(crate) fn process_tcp<'frame>(
        &mut self,
        sockets: &mut SocketSet,
        handled_by_raw_socket: bool,
        ip_repr: IpRepr,
        ip_payload: &'frame [u8],
    ) -> Option<Packet<'frame>> {
        let (src_addr, dst_addr) = (ip_repr.src_addr(), ip_repr.dst_addr());

        // Per RFC 1122 §3.2.1.3, the unspecified address must never appear as a source
        // or destination in any IP datagram. Drop such TCP segments early to avoid
        // creating sockets with unspecified peers (which would later panic on egress).
        // This is not done at the iface level because it might be useful with
        // UDP or raw sockets, but it's definitely not useful for TCP.
        if src_addr.is_unspecified() || dst_addr.is_unspecified() {
            return None;
        }

        let tcp_packet = check!(TcpPacket::new_checked(ip_payload));
        let tcp_repr = check!(TcpRepr::parse(
            &tcp_packet,
            &src_addr,
            &dst_addr,
            &self.caps.checksum
        ));

        // tapir patch: the socket the caller named for this segment first (see
        // `Interface::poll_ingress_single_for`), without a walk of the set.
        if let Some(hint) = self.tcp_socket_hint
            && let Some(tcp_socket) = sockets
                .item_mut(hint)
                .and_then(|i| Socket::downcast_mut(&mut i.socket))
            && tcp_socket.accepts(self, &ip_repr, &tcp_repr)
        {
            return answer(self, tcp_socket, &ip_repr, &tcp_repr);
        }

        // tapir patch: a socket bound to the segment's 4-tuple takes it before any LISTEN
        // socket does. A listener accepts every SYN to its port, so with several listening
        // on one port (an accept pool) a retransmitted SYN, whose first copy a listener
        // already took (now in SYN-RECEIVED), could be taken by another listener earlier in
        // the set: two half-open sockets for one connection, each answering with its own
        // ISN, and the client's ACK to one of them reset by the other.
        let mut listener = None;
        for item in sockets.items_mut() {
            let handle = item.meta.handle;
            let Some(tcp_socket) = Socket::downcast_mut(&mut item.socket) else {
                continue;
            };
            if tcp_socket.accepts(self, &ip_repr, &tcp_repr) {
                if tcp_socket.is_listening() {
                    listener.get_or_insert(handle);
                    continue;
                }
                return answer(self, tcp_socket, &ip_repr, &tcp_repr);
            }
        }
        if let Some(tcp_socket) = listener
            .and_then(|handle| sockets.item_mut(handle))
            .and_then(|item| Socket::downcast_mut(&mut item.socket))
        {
            return answer(self, tcp_socket, &ip_repr, &tcp_repr);
        }

        if tcp_repr.control == TcpControl::Rst
            || ip_repr.dst_addr().is_unspecified()
            || ip_repr.src_addr().is_unspecified()
            || handled_by_raw_socket
        {
            // Never reply to a TCP RST packet with another TCP RST packet.
            // Never send a TCP RST packet with unspecified addresses.
            // Never send a TCP RST when packet has been handled by raw socket.
            None
        } else {
            // The packet wasn't handled by a socket, send a TCP RST packet.
            let (ip, tcp) = tcp::Socket::rst_reply(&ip_repr, &tcp_repr);
            Some(Packet::new(ip, IpPayload::Tcp(tcp)))
        }
    }
}

/// tapir patch: `socket` processes the segment; its reply, if any, as a packet (one place
/// for the hinted socket, the bound one and the listener).
fn answer<'frame>(
    inner: &mut InterfaceInner,
    socket: &mut Socket,
    ip_repr: &IpRepr,
    tcp_repr: &TcpRepr,
) -> Option<Packet<'frame>> {
    socket
        .process(inner, ip_repr, tcp_repr)
        .map(|(ip, tcp)| Packet::new(ip, IpPayload::Tcp(tcp)))
}
