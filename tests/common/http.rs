//! A raw HTTP/1.1 test client: writes request bytes exactly as given and parses responses
//! itself, so tests control every byte on the wire.

use smoltcp::socket::tcp::State;
use smoltcp::time::Instant;
use smoltcp::wire::IpEndpoint;
use tapir::runtime::Application;
use tapir::stack::{Stack, TcpHandle};

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request to send: its bytes, and whether its response has no body (HEAD).
#[derive(Debug, Clone)]
pub struct Req {
    pub bytes: Vec<u8>,
    pub head: bool,
}

impl Req {
    pub fn get(path: &str) -> Req {
        Req {
            bytes: format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes(),
            head: false,
        }
    }

    pub fn raw(bytes: impl Into<Vec<u8>>) -> Req {
        Req {
            bytes: bytes.into(),
            head: false,
        }
    }
}

/// Outcome of parsing the front of a buffer.
enum Parsed {
    Partial,
    Done(Resp, usize),
    Bad(String),
}

fn parse(buf: &[u8], head_only: bool, eof: bool) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(e) => return Parsed::Bad(format!("bad response head: {e}")),
    };
    let status = response.code.unwrap_or(0);
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let rest = &buf[head_len..];
    if (100..200).contains(&status) {
        // Interim response: report it, the caller skips it.
        return Parsed::Done(
            Resp {
                status,
                headers,
                body: Vec::new(),
            },
            head_len,
        );
    }
    if head_only || status == 204 || status == 304 {
        return Parsed::Done(
            Resp {
                status,
                headers,
                body: Vec::new(),
            },
            head_len,
        );
    }
    if let Some(len) = find("content-length") {
        let Ok(len) = len.trim().parse::<usize>() else {
            return Parsed::Bad("bad content-length".into());
        };
        if rest.len() < len {
            return Parsed::Partial;
        }
        return Parsed::Done(
            Resp {
                status,
                headers,
                body: rest[..len].to_vec(),
            },
            head_len + len,
        );
    }
    if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut pos = 0;
        loop {
            let Some(line_end) = rest[pos..].windows(2).position(|w| w == b"\r\n") else {
                return Parsed::Partial;
            };
            let line = String::from_utf8_lossy(&rest[pos..pos + line_end]).into_owned();
            let size_text = line.split(';').next().unwrap_or("").trim();
            let Ok(size) = usize::from_str_radix(size_text, 16) else {
                return Parsed::Bad(format!("bad chunk size line {line:?}"));
            };
            pos += line_end + 2;
            if size == 0 {
                // No trailers from our server: just the final CRLF.
                if rest.len() < pos + 2 {
                    return Parsed::Partial;
                }
                return Parsed::Done(
                    Resp {
                        status,
                        headers,
                        body,
                    },
                    head_len + pos + 2,
                );
            }
            if rest.len() < pos + size + 2 {
                return Parsed::Partial;
            }
            body.extend_from_slice(&rest[pos..pos + size]);
            pos += size + 2;
        }
    }
    // Delimited by close.
    if eof {
        Parsed::Done(
            Resp {
                status,
                headers,
                body: rest.to_vec(),
            },
            buf.len(),
        )
    } else {
        Parsed::Partial
    }
}

/// One connection of the client.
pub struct Flow {
    conn: Option<TcpHandle>,
    requests: Vec<Req>,
    next: usize,
    pipelined: bool,
    out: Vec<u8>,
    input: Vec<u8>,
    pub responses: Vec<Resp>,
    pub interim: usize,
    pub error: Option<String>,
    pub closed_by_server: bool,
    /// Close our side once every response arrived.
    close_when_done: bool,
    done: bool,
}

/// Many raw HTTP connections.
pub struct HttpClient {
    pub flows: Vec<Flow>,
    buf: Vec<u8>,
}

impl HttpClient {
    /// Opens one connection per script. `pipelined` sends all requests of a script at once,
    /// otherwise each after the previous response.
    pub fn connect(
        stack: &mut Stack,
        server: IpEndpoint,
        scripts: Vec<Vec<Req>>,
        pipelined: bool,
    ) -> Self {
        let flows = scripts
            .into_iter()
            .map(|requests| Flow {
                conn: Some(stack.connect(server).expect("connect")),
                requests,
                next: 0,
                pipelined,
                out: Vec::new(),
                input: Vec::new(),
                responses: Vec::new(),
                interim: 0,
                error: None,
                closed_by_server: false,
                close_when_done: true,
                done: false,
            })
            .collect();
        HttpClient {
            flows,
            buf: vec![0; 64 * 1024],
        }
    }

    /// Every flow's error, if any.
    pub fn errors(&self) -> Vec<String> {
        self.flows.iter().filter_map(|f| f.error.clone()).collect()
    }
}

impl Flow {
    fn expected(&self) -> usize {
        self.requests.len()
    }

    fn queue_requests(&mut self) {
        while self.next < self.requests.len()
            && (self.pipelined || self.responses.len() == self.next)
        {
            self.out.extend_from_slice(&self.requests[self.next].bytes);
            self.next += 1;
        }
    }

    fn parse_responses(&mut self, eof: bool) {
        loop {
            let idx = self.responses.len();
            if idx >= self.expected() {
                return;
            }
            let head_only = self.requests[idx].head;
            match parse(&self.input, head_only, eof) {
                Parsed::Partial => return,
                Parsed::Bad(e) => {
                    self.error = Some(e);
                    return;
                }
                Parsed::Done(resp, used) => {
                    self.input.drain(..used);
                    if (100..200).contains(&resp.status) {
                        self.interim += 1;
                    } else {
                        self.responses.push(resp);
                    }
                }
            }
        }
    }
}

impl Application for HttpClient {
    fn poll(&mut self, stack: &mut Stack, _now: Instant) -> bool {
        let mut progressed = false;
        for flow in &mut self.flows {
            let Some(conn) = flow.conn.take() else {
                continue;
            };
            flow.queue_requests();
            let socket = stack.socket(&conn);
            if !flow.out.is_empty() && socket.can_send() {
                let n = socket.send_slice(&flow.out).unwrap_or(0);
                flow.out.drain(..n);
                progressed |= n > 0;
            }
            while socket.can_recv() {
                let n = socket.recv_slice(&mut self.buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                flow.input.extend_from_slice(&self.buf[..n]);
                progressed = true;
            }
            let eof = !socket.may_recv()
                && socket.state() != State::SynSent
                && socket.state() != State::Listen;
            let reset = socket.state() == State::Closed;
            flow.parse_responses(eof);
            if eof || reset {
                flow.closed_by_server = true;
            }
            let all = flow.responses.len() >= flow.expected();
            if flow.error.is_some() || (all && flow.close_when_done) || eof || reset {
                if !all && flow.error.is_none() {
                    flow.error = Some(format!(
                        "connection ended after {} of {} responses",
                        flow.responses.len(),
                        flow.expected()
                    ));
                }
                flow.done = true;
                stack.close(conn);
                progressed = true;
            } else {
                flow.conn = Some(conn);
            }
        }
        progressed
    }

    fn is_finished(&self) -> bool {
        self.flows.iter().all(|f| f.done)
    }
}
