//! SYN cookies (RFC 4987 section 3.6): a SYN answered without keeping any state, its
//! SYN-ACK's sequence number proving, when the peer's ACK comes back, that the handshake is
//! genuine and what it agreed on.
//!
//! The initial sequence number is `hash(29 bits) | secret parity (1) | MSS class (2)`. The
//! hash is SipHash-1-3 (std's `RandomState`, keyed with 128 random bits from the OS at start)
//! over the secret's generation, the 4-tuple, the peer's ISN, the MSS class and the option
//! bits below. The generation changes every [`PERIOD`]: a cookie is good in its own
//! generation and the next one (64 to 128 s), and one whose secret rotated twice no longer
//! matches. A cookie accepted once is remembered until it expires, so a replayed ACK is
//! refused (Linux accepts replays within the cookie's lifetime).
//!
//! Window scale and SACK-permitted ride in the low 6 bits of the SYN-ACK's TSval, as Linux
//! does (4 bits of shift, 15 = none; 1 bit SACK); the peer echoes them in its ACK's TSecr
//! and they are covered by the hash, so they cannot be forged either. A peer that sends no
//! timestamp option gets neither: its cookie connection runs without window scaling (a
//! window of at most 64 KiB each way) and without SACK, and with one of four MSS values
//! (536, 1220, 1440, 1460) at or below its own.

use std::collections::HashSet;
use std::hash::BuildHasher;

use smoltcp::time::{Duration, Instant};
use smoltcp::wire::IpEndpoint;

/// When the stack answers SYNs with cookies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CookiePolicy {
    /// When the listener's backlog (or the connection cap) is full.
    #[default]
    Overflow,
    /// For every SYN to a listening port.
    Always,
    /// Never: SYNs beyond the backlog are dropped.
    Never,
}

/// How long one secret generation lasts.
pub const PERIOD: Duration = Duration::from_secs(64);
/// The MSS values a cookie can carry (Linux's IPv4 table).
pub const MSS_CLASSES: [u16; 4] = [536, 1220, 1440, 1460];
/// Option bits meaning "no window scale, no SACK" (also used without timestamps).
const NO_OPTIONS: u32 = 0x0f;
/// Accepted cookies remembered per generation, at most; past it new cookies are refused
/// until the generation ends (a replay check that gave up would accept replays).
const MAX_USED: usize = 1 << 17;

/// What a SYN asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syn {
    /// Our endpoint.
    pub local: IpEndpoint,
    /// The peer's endpoint.
    pub remote: IpEndpoint,
    /// The peer's ISN.
    pub isn: u32,
    /// The peer's MSS option.
    pub mss: Option<u16>,
    /// The peer's window scale option.
    pub window_scale: Option<u8>,
    /// The peer offered SACK.
    pub sack_permitted: bool,
    /// The peer's TSval, when it sent a timestamp option.
    pub tsval: Option<u32>,
}

/// The SYN-ACK that answers a [`Syn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynAck {
    /// Our ISN: the cookie.
    pub iss: u32,
    /// The MSS class granted.
    pub mss: u16,
    /// Our TSval, carrying the option bits (when the SYN had a timestamp).
    pub tsval: Option<u32>,
    /// Window scaling and SACK were granted (they need the timestamp).
    pub window_scale: Option<u8>,
    /// SACK granted.
    pub sack_permitted: bool,
}

/// The peer's ACK of a cookie SYN-ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// Our endpoint.
    pub local: IpEndpoint,
    /// The peer's endpoint.
    pub remote: IpEndpoint,
    /// The ACK's sequence number (the peer's ISN + 1).
    pub seq: u32,
    /// The ACK's acknowledgement number (the cookie + 1).
    pub ack: u32,
    /// The ACK's TSecr, when it has a timestamp option.
    pub tsecr: Option<u32>,
}

/// What a valid cookie restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// Our ISN.
    pub iss: u32,
    /// The peer's ISN.
    pub irs: u32,
    /// The MSS class.
    pub mss: u16,
    /// The peer's window scale.
    pub window_scale: Option<u8>,
    /// The peer allows SACK.
    pub sack_permitted: bool,
}

/// Why an ACK's cookie was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The hash does not match: forged, or from a secret that rotated twice since.
    Invalid,
    /// The cookie was accepted before.
    Replayed,
}

/// An accepted cookie: (our endpoint, the peer's, the cookie).
type UsedCookie = (IpEndpoint, IpEndpoint, u32);

/// The cookie secret and the accepted-cookie memory.
pub struct Cookies {
    key: std::collections::hash_map::RandomState,
    /// Accepted cookies of the current and the previous generation, with their generation.
    used: [(u64, HashSet<UsedCookie>); 2],
    /// The last time a cookie was sent (ACKs are checked only while cookies may be out).
    last_sent: Option<Instant>,
}

impl Default for Cookies {
    fn default() -> Self {
        Cookies {
            key: std::collections::hash_map::RandomState::new(),
            used: [(0, HashSet::new()), (1, HashSet::new())],
            last_sent: None,
        }
    }
}

fn generation(now: Instant) -> u64 {
    now.total_millis().max(0) as u64 / PERIOD.total_millis()
}

impl Cookies {
    /// The SYN-ACK answering `syn`; `tsval_now` is our current timestamp clock.
    pub fn make(&mut self, syn: &Syn, now: Instant, tsval_now: u32) -> SynAck {
        self.last_sent = Some(now);
        let class = MSS_CLASSES
            .iter()
            .rposition(|&m| m <= syn.mss.unwrap_or(536))
            .unwrap_or(0);
        let (options, tsval) = match syn.tsval {
            Some(_) => {
                let wscale = syn
                    .window_scale
                    .map_or(NO_OPTIONS, |s| u32::from(s.min(14)));
                let options = wscale | (u32::from(syn.sack_permitted) << 4);
                // Our clock with the option bits in its low 6 bits, never ahead of the clock
                // (the peer must not see later timestamps go backwards).
                let mut tsval = (tsval_now & !0x3f) | options;
                if tsval > tsval_now {
                    tsval = tsval.wrapping_sub(0x40);
                }
                (options, Some(tsval))
            }
            None => (NO_OPTIONS, None),
        };
        let gen = generation(now);
        let hash = self.hash(gen, syn.local, syn.remote, syn.isn, class as u32, options);
        SynAck {
            iss: (hash << 3) | (((gen & 1) as u32) << 2) | class as u32,
            mss: MSS_CLASSES[class],
            tsval,
            window_scale: tsval.and(syn.window_scale),
            sack_permitted: tsval.is_some() && syn.sack_permitted,
        }
    }

    /// True when ACKs should be checked for cookies: one was sent in the last two periods.
    pub fn recently_sent(&self, now: Instant) -> bool {
        self.last_sent.is_some_and(|t| now < t + PERIOD + PERIOD)
    }

    /// Checks the cookie an ACK returns; a valid one is remembered (a replay is refused).
    pub fn check(&mut self, ack: &Ack, now: Instant) -> Result<Granted, Refused> {
        let iss = ack.ack.wrapping_sub(1);
        let irs = ack.seq.wrapping_sub(1);
        let class = iss & 3;
        let now_gen = generation(now);
        let gen = match u64::from((iss >> 2) & 1) {
            parity if parity == now_gen & 1 => now_gen,
            _ => now_gen.checked_sub(1).ok_or(Refused::Invalid)?,
        };
        let options = ack.tsecr.map_or(NO_OPTIONS, |ts| ts & 0x3f);
        let hash = self.hash(gen, ack.local, ack.remote, irs, class, options);
        if hash != iss >> 3 {
            return Err(Refused::Invalid);
        }
        let slot = &mut self.used[(gen & 1) as usize];
        if slot.0 != gen {
            *slot = (gen, HashSet::new());
        }
        if slot.1.len() >= MAX_USED || !slot.1.insert((ack.local, ack.remote, iss)) {
            return Err(Refused::Replayed);
        }
        let shift = options & 0x0f;
        Ok(Granted {
            iss,
            irs,
            mss: MSS_CLASSES[class as usize],
            window_scale: (ack.tsecr.is_some() && shift != NO_OPTIONS).then_some(shift as u8),
            sack_permitted: ack.tsecr.is_some() && options & 0x10 != 0,
        })
    }

    fn hash(
        &self,
        gen: u64,
        local: IpEndpoint,
        remote: IpEndpoint,
        isn: u32,
        class: u32,
        options: u32,
    ) -> u32 {
        (self.key.hash_one((gen, local, remote, isn, class, options)) as u32) >> 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{IpAddress, Ipv4Address};

    fn syn() -> Syn {
        Syn {
            local: IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 2)), 80),
            remote: IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 1)), 40000),
            isn: 12345,
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            tsval: Some(99),
        }
    }

    fn ack_of(syn: &Syn, synack: &SynAck) -> Ack {
        Ack {
            local: syn.local,
            remote: syn.remote,
            seq: syn.isn.wrapping_add(1),
            ack: synack.iss.wrapping_add(1),
            tsecr: synack.tsval,
        }
    }

    #[test]
    fn round_trip_keeps_mss_window_scale_and_sack() {
        let mut jar = Cookies::default();
        let now = Instant::from_secs(1000);
        for (mss, want) in [
            (Some(1460), 1460),
            (Some(1400), 1220),
            (None, 536),
            (Some(9000), 1460),
        ] {
            for (wscale, sack) in [
                (Some(7), true),
                (None, false),
                (Some(0), false),
                (None, true),
            ] {
                let s = Syn {
                    mss,
                    window_scale: wscale,
                    sack_permitted: sack,
                    isn: rand_isn(mss, wscale),
                    ..syn()
                };
                let sa = jar.make(&s, now, 5_000_000);
                assert!(sa.tsval.is_some_and(|t| t <= 5_000_000));
                let got = jar
                    .check(&ack_of(&s, &sa), now + Duration::from_secs(3))
                    .unwrap();
                assert_eq!(got.mss, want);
                assert_eq!(got.window_scale, wscale);
                assert_eq!(got.sack_permitted, sack);
                assert_eq!((got.iss, got.irs), (sa.iss, s.isn));
            }
        }
    }

    fn rand_isn(mss: Option<u16>, wscale: Option<u8>) -> u32 {
        u32::from(mss.unwrap_or(1)) * 7919 + u32::from(wscale.unwrap_or(20)) * 104_729
    }

    #[test]
    fn without_timestamps_options_are_lost_but_the_cookie_holds() {
        let mut jar = Cookies::default();
        let now = Instant::from_secs(10);
        let s = Syn {
            tsval: None,
            ..syn()
        };
        let sa = jar.make(&s, now, 1);
        assert_eq!(
            (sa.tsval, sa.window_scale, sa.sack_permitted),
            (None, None, false)
        );
        let got = jar.check(&ack_of(&s, &sa), now).unwrap();
        assert_eq!(
            (got.mss, got.window_scale, got.sack_permitted),
            (1460, None, false)
        );
    }

    #[test]
    fn a_cookie_survives_one_rotation_not_two() {
        let mut jar = Cookies::default();
        let now = Instant::from_secs(64 * 100 + 1);
        let s = syn();
        let sa = jar.make(&s, now, 1 << 20);
        assert!(jar.check(&ack_of(&s, &sa), now + PERIOD).is_ok());
        let s2 = Syn { isn: 777, ..syn() };
        let sa2 = jar.make(&s2, now, 1 << 20);
        assert_eq!(
            jar.check(&ack_of(&s2, &sa2), now + PERIOD + PERIOD),
            Err(Refused::Invalid)
        );
    }

    #[test]
    fn forged_and_replayed_acks_are_refused() {
        let mut jar = Cookies::default();
        let now = Instant::from_secs(500);
        let s = syn();
        let sa = jar.make(&s, now, 1 << 20);
        let good = ack_of(&s, &sa);
        // Another cookie value, another peer ISN, another port, altered option bits.
        for bad in [
            Ack {
                ack: good.ack ^ 0x100,
                ..good
            },
            Ack {
                seq: good.seq + 1,
                ..good
            },
            Ack {
                remote: IpEndpoint {
                    port: 40001,
                    ..good.remote
                },
                ..good
            },
            Ack {
                tsecr: good.tsecr.map(|t| t ^ 0x10),
                ..good
            },
            Ack {
                tsecr: None,
                ..good
            },
        ] {
            assert_eq!(jar.check(&bad, now), Err(Refused::Invalid), "{bad:?}");
        }
        // Blind guesses: about one in 2^29 would pass.
        let forged = (0..10_000u32)
            .filter(|i| {
                jar.check(
                    &Ack {
                        ack: i.wrapping_mul(2_654_435_761),
                        ..good
                    },
                    now,
                )
                .is_ok()
            })
            .count();
        assert_eq!(forged, 0);
        assert!(jar.check(&good, now).is_ok());
        assert_eq!(jar.check(&good, now), Err(Refused::Replayed));
    }
}
