//! The HTTP/1.1 server engine: the same client bytes fed whole and split at arbitrary
//! points must give the same events and the same response bytes, the engine must never
//! spin, and after EOF (every request answered) the connection must end closed.

use std::sync::Arc;
use std::time::Duration;

use tapir::http::h1::{BodyFraming, H1Config, ServerConn, ServerEvent};

/// Events with the body bytes of a request joined (how they are cut depends on the split).
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Request {
        id: u64,
        method: String,
        uri: String,
        version: String,
        headers: Vec<(String, Vec<u8>)>,
        body: BodyFraming,
        expect_continue: bool,
    },
    Body {
        id: u64,
        data: Vec<u8>,
    },
    Trailers {
        id: u64,
        fields: Vec<(String, Vec<u8>)>,
    },
    BodyEnd {
        id: u64,
    },
    Rejected {
        status: u16,
        reason: String,
    },
    Aborted {
        reason: String,
    },
}

/// Small limits, so that every limit is within reach of short inputs.
fn config() -> Arc<H1Config> {
    Arc::new(H1Config {
        max_head_size: 1024,
        max_headers: 16,
        max_uri_len: 256,
        max_body_size: 4096,
        head_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_pipelined: 4,
        max_body_buffer: 512,
        max_output_buffer: 1024,
    })
}

struct Run {
    conn: ServerConn,
    pending: Vec<u8>,
    seen: Vec<Seen>,
    output: Vec<u8>,
    answer_early: bool,
    now: Duration,
}

impl Run {
    fn answer(&mut self, id: u64) {
        let head = http::Response::builder()
            .status(200)
            .header("x-id", id)
            .body(())
            .map(|r| r.into_parts().0);
        let Ok(head) = head else { return };
        // Errors are the engine saying no (closed, rejected): fine, it stays consistent.
        if self.conn.send_response(id, head, Some(2)).is_ok() {
            let _ = self.conn.send_body(id, b"ok");
            let _ = self.conn.finish_response(id);
        }
    }

    fn record(&mut self, event: ServerEvent) {
        match event {
            ServerEvent::Request {
                id,
                head,
                body,
                expect_continue,
                ..
            } => {
                let headers = head
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                    .collect();
                self.seen.push(Seen::Request {
                    id,
                    method: head.method().to_string(),
                    uri: head.uri().to_string(),
                    version: format!("{:?}", head.version()),
                    headers,
                    body,
                    expect_continue,
                });
                if expect_continue {
                    self.conn.send_continue(id);
                }
                if self.answer_early {
                    self.answer(id);
                }
            }
            ServerEvent::Body { id, data } => match self.seen.last_mut() {
                Some(Seen::Body {
                    id: last,
                    data: acc,
                }) if *last == id => acc.extend_from_slice(&data),
                _ => self.seen.push(Seen::Body {
                    id,
                    data: data.to_vec(),
                }),
            },
            ServerEvent::Trailers { id, trailers } => {
                let fields = trailers
                    .iter()
                    .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
                    .collect();
                self.seen.push(Seen::Trailers { id, fields });
            }
            ServerEvent::BodyEnd { id } => {
                self.seen.push(Seen::BodyEnd { id });
                if !self.answer_early {
                    self.answer(id);
                }
            }
            ServerEvent::Rejected { status, reason } => self.seen.push(Seen::Rejected {
                status: status.as_u16(),
                reason: reason.to_string(),
            }),
            ServerEvent::Aborted { reason } => self.seen.push(Seen::Aborted {
                reason: reason.to_string(),
            }),
        }
    }

    /// Moves input, events and output until nothing moves.
    fn pump(&mut self) {
        for _ in 0..100_000 {
            let n = self.conn.handle_input(&self.pending, self.now);
            assert!(n <= self.pending.len(), "consumed more than offered");
            self.pending.drain(..n);
            let mut progressed = n > 0;
            while let Some(event) = self.conn.poll_event() {
                progressed = true;
                self.record(event);
            }
            let out = self.conn.pending_output().len();
            if out > 0 {
                progressed = true;
                self.output
                    .extend_from_slice(&self.conn.pending_output()[..out]);
                self.conn.consume_output(out, self.now);
            }
            if !progressed {
                return;
            }
        }
        panic!("the engine keeps reporting progress: livelock");
    }
}

fn drive(input: &[u8], seed: u8, answer_early: bool, expire: bool) -> Run {
    let mut run = Run {
        conn: ServerConn::new(config(), Duration::ZERO),
        pending: Vec::new(),
        seen: Vec::new(),
        output: Vec::new(),
        answer_early,
        now: Duration::ZERO,
    };
    for segment in crate::split(input, seed) {
        run.pending.extend_from_slice(segment);
        run.now += Duration::from_micros(10);
        run.pump();
    }
    if expire {
        // Time passes with the connection still open: head or idle timeout.
        run.now += Duration::from_secs(120);
        run.conn.handle_timeout(run.now);
        run.pump();
    }
    run.conn.handle_eof(run.now);
    run.pump();
    run
}

/// The target: `[split seed] [mode] input...`; mode bit 0 answers each request at its head
/// (before its body), bit 1 lets the timeouts expire before EOF.
pub fn run(data: &[u8]) {
    let [seed, mode, input @ ..] = data else {
        return;
    };
    let early = mode & 1 != 0;
    let expire = mode & 2 != 0;
    let whole = drive(input, 0, early, expire);
    assert!(
        whole.conn.is_closed(),
        "after EOF with every request answered the connection closes: {:?}",
        whole.seen
    );
    if *seed != 0 {
        let split = drive(input, *seed, early, expire);
        // Answering at the head races the body: once an answer has started, a body error
        // cannot get its 400, and once a closing answer (HTTP/1.0) is finished the rest of
        // the body is dropped; how much of the body came first depends on where the input
        // was cut. So in that mode only the request heads must be the same. Answering at
        // the body's end, every event and every response byte must be.
        if early {
            let heads = |seen: &[Seen]| {
                seen.iter()
                    .filter(|e| matches!(e, Seen::Request { .. }))
                    .map(|e| format!("{e:?}"))
                    .collect::<Vec<_>>()
            };
            assert_eq!(heads(&whole.seen), heads(&split.seen), "same heads");
        } else {
            assert_eq!(whole.seen, split.seen, "same events whole and split");
            assert_eq!(
                String::from_utf8_lossy(&whole.output),
                String::from_utf8_lossy(&split.output),
                "same response bytes whole and split"
            );
        }
        assert!(split.conn.is_closed());
    }
}
