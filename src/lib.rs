//! tapir: a userspace TCP/IP + TLS + HTTP stack that serves and fetches HTTP on a Linux TAP
//! device.
//!
//! The layers, bottom up, each in its own module:
//! - [`device`]: where frames come from — a TAP interface, an in-memory link, a pcap
//!   recorder wrapping either.
//! - [`stack`]: smoltcp's interface and sockets, with listeners that have a backlog, a
//!   connection cap and sockets freed when they close.
//! - [`runtime`]: the drivers — a mio event loop for live devices, a virtual-clock
//!   simulation for in-memory links — and the [`runtime::Application`] trait that
//!   everything above implements.
//! - [`app`]: applications (TCP echo).
//!
//! Every protocol piece is sans-IO: it takes bytes and time, and gives bytes and events.

#![warn(missing_docs)]
// No unwrap() in the library: a peer or a user must never be able to panic tapir. Unit
// tests may unwrap (clippy.toml: allow-unwrap-in-tests).
#![deny(clippy::unwrap_used)]

pub mod app;
pub mod client;
pub mod conn;
pub mod device;
pub mod error;
pub mod http;
pub mod proxy;
pub mod replay;
pub mod runtime;
pub mod service;
pub mod stack;
pub mod transport;

pub use smoltcp;

use device::FdDevice;
use runtime::event_loop::{self, Ended, LoopOptions, RunError};
use runtime::{Application, StopHandle};
use stack::Stack;

/// Runs `app` (a [`service::Server`], an echo, a client) on `stack` over `device` until it
/// finishes or `stop` fires — from another thread, or by SIGINT/SIGTERM. Like paf's `serve`
/// with its stop switch.
pub fn serve<D: FdDevice, A: Application>(
    device: &mut D,
    stack: &mut Stack,
    app: &mut A,
    stop: &StopHandle,
) -> Result<Ended, RunError> {
    event_loop::run(device, stack, app, stop, &LoopOptions::default())
}

/// The README's examples are compiled as documentation tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
