//! Flood limits the `h2` crate does not enforce itself.
//!
//! `h2` answers every PING and SETTINGS frame, accepts any number of PRIORITY frames and
//! runs a handler for every stream even when the client resets it right away (it only caps
//! resets of streams still waiting in its accept queue). A client can make the server work
//! or write without end with a few bytes each. [`FrameGuard`] reads the frame headers of
//! everything the client sends, before `h2` does, and charges these frames against a token
//! bucket per connection: a burst is allowed, then a steady rate. A client that goes beyond
//! gets GOAWAY with `ENHANCE_YOUR_CALM`.

use smoltcp::time::Instant;

const FRAME_HEADER: usize = 9;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;

/// Token units per frame (the bucket refills in millionths of a frame per microsecond).
const UNIT: u64 = 1_000_000;

/// Counts control frames on one connection and says when the client floods.
#[derive(Debug)]
pub(crate) struct FrameGuard {
    /// Bytes of the client preface still to pass over.
    skip: usize,
    head: [u8; FRAME_HEADER],
    have: usize,
    payload_left: usize,
    /// Tokens (in [`UNIT`]s) left.
    tokens: u64,
    burst: u64,
    per_sec: u64,
    last: Instant,
    flooded: bool,
}

impl FrameGuard {
    /// A guard that allows `burst` control frames at once and `per_sec` per second after
    /// that; `preface_left` bytes of client preface come first.
    pub(crate) fn new(burst: u32, per_sec: u32, preface_left: usize, now: Instant) -> Self {
        let burst = u64::from(burst) * UNIT;
        FrameGuard {
            skip: preface_left,
            head: [0; FRAME_HEADER],
            have: 0,
            payload_left: 0,
            tokens: burst,
            burst,
            per_sec: u64::from(per_sec),
            last: now,
            flooded: false,
        }
    }

    /// Looks at bytes received from the client, in order.
    pub(crate) fn inspect(&mut self, mut data: &[u8], now: Instant) {
        let skip = self.skip.min(data.len());
        self.skip -= skip;
        data = &data[skip..];
        while !data.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(data.len());
                self.payload_left -= n;
                data = &data[n..];
                continue;
            }
            let n = (FRAME_HEADER - self.have).min(data.len());
            self.head[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == FRAME_HEADER {
                self.have = 0;
                let len = u32::from_be_bytes([0, self.head[0], self.head[1], self.head[2]]);
                self.payload_left = len as usize;
                if matches!(self.head[3], PRIORITY | RST_STREAM | SETTINGS | PING) {
                    self.charge(now);
                }
            }
        }
    }

    fn charge(&mut self, now: Instant) {
        let elapsed = if now > self.last {
            (now - self.last).total_micros()
        } else {
            0
        };
        if elapsed > 0 {
            self.last = now;
            self.tokens = self
                .tokens
                .saturating_add(elapsed.saturating_mul(self.per_sec))
                .min(self.burst);
        }
        match self.tokens.checked_sub(UNIT) {
            Some(left) => self.tokens = left,
            None => self.flooded = true,
        }
    }

    /// True once the client sent more control frames than allowed.
    pub(crate) fn flooded(&self) -> bool {
        self.flooded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags, 0, 0, 0, 0]);
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn a_burst_passes_and_a_flood_trips_whatever_the_segmentation() {
        let t0 = Instant::from_secs(100);
        let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        wire.extend(frame(SETTINGS, 0, &[0, 4, 0, 0, 0, 0]));
        // DATA and HEADERS payloads that look like PING headers are not counted.
        wire.extend(frame(0, 0, &frame(PING, 0, &[0; 8]).repeat(50)));
        for _ in 0..9 {
            wire.extend(frame(PING, 0, &[7; 8]));
        }
        for chunk_len in [1, 3, 9, 17, 4096] {
            let mut guard = FrameGuard::new(10, 1, 24, t0);
            for chunk in wire.chunks(chunk_len) {
                guard.inspect(chunk, t0);
            }
            assert!(!guard.flooded(), "10 control frames fit a burst of 10");
            guard.inspect(&frame(PRIORITY, 0, &[0; 5]), t0);
            assert!(guard.flooded(), "the 11th at the same instant does not");
        }
    }

    #[test]
    fn the_bucket_refills_at_the_steady_rate() {
        let t0 = Instant::from_secs(100);
        let mut guard = FrameGuard::new(5, 2, 0, t0);
        let ping = frame(PING, 0, &[0; 8]);
        for i in 0..100 {
            // Two per second forever is fine.
            guard.inspect(&ping, t0 + smoltcp::time::Duration::from_millis(500 * i));
        }
        assert!(!guard.flooded());
        let t1 = t0 + smoltcp::time::Duration::from_secs(60);
        for _ in 0..6 {
            guard.inspect(&ping, t1);
        }
        assert!(guard.flooded(), "a full bucket holds 5, not 6");
    }
}
