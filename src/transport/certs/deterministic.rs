//! **INSECURE, for golden captures only**: a seeded, fully deterministic TLS crypto
//! provider, compiled only with the `deterministic-crypto` cargo feature.
//!
//! A rustls handshake draws randomness in two places a provider controls: its
//! `secure_random` (client and server randoms, session ids, ticket ids and age offsets) and
//! its key-exchange groups (ephemeral key shares; ring's X25519 draws those from the system
//! inside ring, where no provider can seed it). [`provider`] is ring's default provider with
//! both replaced by generators seeded from one `u64`, and with X25519 as its only group.
//! Signatures stay ring's: with an Ed25519 certificate (deterministic signatures) two
//! handshakes from the same seeds and the same peer messages are identical byte for byte.
//!
//! Every key and random value is predictable from the seed: never use this outside tests.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::crypto::{
    ActiveKeyExchange, CryptoProvider, GetRandomFailed, SecureRandom, SharedSecret,
    SupportedKxGroup,
};
use rustls::NamedGroup;

/// The seeded generator shared by a provider's `secure_random` and its X25519 group.
#[derive(Clone)]
struct Seeded(Arc<Mutex<fastrand::Rng>>);

impl Seeded {
    fn new(seed: u64) -> Self {
        Seeded(Arc::new(Mutex::new(fastrand::Rng::with_seed(seed))))
    }

    fn rng(&self) -> MutexGuard<'_, fastrand::Rng> {
        // A panic elsewhere while holding the lock leaves a usable generator.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn fill(&self, buf: &mut [u8]) {
        self.rng().fill(buf);
    }
}

impl fmt::Debug for Seeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Seeded(deterministic, insecure)")
    }
}

/// The provider's `secure_random`: bytes from the seeded generator.
#[derive(Debug)]
struct SeededRandom(Seeded);

impl SecureRandom for SeededRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        self.0.fill(buf);
        Ok(())
    }
}

/// X25519 whose ephemeral secrets come from the seeded generator.
#[derive(Debug)]
struct SeededX25519(Seeded);

impl SupportedKxGroup for SeededX25519 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let mut secret = [0u8; 32];
        self.0.fill(&mut secret);
        let secret = x25519_dalek::StaticSecret::from(secret);
        let public = x25519_dalek::PublicKey::from(&secret);
        Ok(Box::new(X25519Exchange { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// One X25519 exchange in progress.
struct X25519Exchange {
    secret: x25519_dalek::StaticSecret,
    public: x25519_dalek::PublicKey,
}

impl ActiveKeyExchange for X25519Exchange {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, rustls::Error> {
        let peer: [u8; 32] = peer_pub_key
            .try_into()
            .map_err(|_| rustls::PeerMisbehaved::InvalidKeyShare)?;
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer));
        // An all-zero result means a small-order peer key (RFC 7748 §6.1), as ring refuses.
        if !shared.was_contributory() {
            return Err(rustls::PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(SharedSecret::from(&shared.as_bytes()[..]))
    }

    fn pub_key(&self) -> &[u8] {
        self.public.as_bytes()
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// **INSECURE**: ring's default provider with its randomness and X25519 key shares drawn
/// from a generator seeded with `seed` (X25519 is the only key-exchange group). Two
/// providers made from the same seed, driven by the same peer messages, produce the same
/// bytes. Sign with an Ed25519 key so that signatures are deterministic too.
///
/// rustls wants key-exchange groups with a `'static` lifetime, so each call leaks the small
/// seeded group (a few dozen bytes): fine for tests, one more reason to keep this out of
/// normal builds.
pub fn provider(seed: u64) -> Arc<CryptoProvider> {
    let seeded = Seeded::new(seed);
    let group: &'static SeededX25519 = Box::leak(Box::new(SeededX25519(seeded.clone())));
    Arc::new(CryptoProvider {
        kx_groups: vec![group],
        secure_random: Box::leak(Box::new(SeededRandom(seeded))),
        ..rustls::crypto::ring::default_provider()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_and_keys_agree() {
        let (a, b) = (provider(7), provider(7));
        let (mut x, mut y) = ([0u8; 48], [0u8; 48]);
        a.secure_random.fill(&mut x).expect("fill");
        b.secure_random.fill(&mut y).expect("fill");
        assert_eq!(x, y);
        let other = provider(8);
        other.secure_random.fill(&mut y).expect("fill");
        assert_ne!(x, y);

        let client = a.kx_groups[0].start().expect("start");
        let server = b.kx_groups[0].start().expect("start");
        assert_eq!(client.pub_key(), server.pub_key(), "same seed, same share");
        let server2 = other.kx_groups[0].start().expect("start");
        let server_pub = server2.pub_key().to_vec();
        let client_pub = client.pub_key().to_vec();
        let s1 = client.complete(&server_pub).expect("complete");
        let s2 = server2.complete(&client_pub).expect("complete");
        assert_eq!(s1.secret_bytes(), s2.secret_bytes());
    }

    #[test]
    fn bad_peer_keys_are_refused() {
        let p = provider(1);
        let kx = p.kx_groups[0].start().expect("start");
        assert!(kx.complete(&[1, 2, 3]).is_err(), "wrong length");
        let kx = p.kx_groups[0].start().expect("start");
        assert!(kx.complete(&[0u8; 32]).is_err(), "small order");
    }
}
