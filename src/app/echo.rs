//! TCP echo (RFC 862): every byte received is sent back. The first application, proving the
//! transport before HTTP: backpressure (it reads only what it can send), half-close (the
//! peer's FIN is answered after the last echoed byte), and freeing every socket.

use smoltcp::socket::tcp::State;
use smoltcp::time::Instant;

use crate::runtime::Application;
use crate::stack::{Stack, StackError, TcpHandle};

/// Bytes moved per socket per turn at most (keeps one busy connection from starving others).
const CHUNK: usize = 16 * 1024;

/// An echo server on one port.
pub struct EchoServer {
    port: u16,
    connections: Vec<TcpHandle>,
    buf: Box<[u8]>,
    echoed: u64,
    accepting: bool,
}

impl EchoServer {
    /// Listens on `port` of `stack`.
    pub fn bind(stack: &mut Stack, port: u16) -> Result<Self, StackError> {
        stack.listen(port)?;
        Ok(EchoServer {
            port,
            connections: Vec::new(),
            buf: vec![0; CHUNK].into_boxed_slice(),
            echoed: 0,
            accepting: true,
        })
    }

    /// Bytes echoed so far.
    pub fn echoed(&self) -> u64 {
        self.echoed
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.connections.len()
    }
}

/// What to do with a connection after its turn.
enum Next {
    Keep,
    Close,
}

/// Echoes what `conn` has received, as far as its send buffer allows.
fn serve(stack: &mut Stack, conn: &TcpHandle, buf: &mut [u8], echoed: &mut u64) -> (Next, bool) {
    // Only a connection with data to echo needs buffers to write with: looking at an idle
    // one through `Stack::socket` gave it buffers again on every turn, which the stack took
    // back 200 ms later, and the sweep that takes them kept waking the loop.
    let socket = if stack.socket_ref(conn).can_recv() {
        stack.socket(conn)
    } else {
        stack.socket_for_reading(conn)
    };
    let mut progressed = false;
    loop {
        let room = socket.send_capacity() - socket.send_queue();
        if !socket.can_recv() || room == 0 {
            break;
        }
        let want = room.min(buf.len());
        let Ok(got) = socket.recv_slice(&mut buf[..want]) else {
            break;
        };
        if got == 0 {
            break;
        }
        // `room` bytes are free in the send buffer, so this takes them all.
        let sent = socket.send_slice(&buf[..got]).unwrap_or(0);
        debug_assert_eq!(sent, got);
        *echoed += sent as u64;
        progressed = true;
    }
    let peer_done = !socket.may_recv() && socket.recv_queue() == 0;
    let next = match socket.state() {
        State::Closed | State::TimeWait => Next::Close,
        // The peer closed its side and everything was echoed: close ours.
        _ if peer_done && socket.send_queue() == 0 => Next::Close,
        _ => Next::Keep,
    };
    (next, progressed)
}

impl Application for EchoServer {
    fn poll(&mut self, stack: &mut Stack, _now: Instant) -> bool {
        let mut progressed = false;
        if self.accepting {
            while let Some(conn) = stack.accept(self.port) {
                tracing::debug!(
                    "echo: accepted {} from {:?}",
                    conn.id(),
                    stack.socket_ref(&conn).remote_endpoint()
                );
                self.connections.push(conn);
            }
        }
        let mut i = 0;
        while i < self.connections.len() {
            let (next, moved) = serve(stack, &self.connections[i], &mut self.buf, &mut self.echoed);
            progressed |= moved;
            match next {
                Next::Keep => i += 1,
                Next::Close => {
                    let conn = self.connections.swap_remove(i);
                    stack.close(conn);
                    progressed = true;
                }
            }
        }
        progressed
    }

    fn shutdown(&mut self, stack: &mut Stack, _now: Instant) {
        self.accepting = false;
        stack.unlisten(self.port);
        for conn in self.connections.drain(..) {
            stack.close(conn);
        }
    }

    fn is_finished(&self) -> bool {
        !self.accepting && self.connections.is_empty()
    }
}
