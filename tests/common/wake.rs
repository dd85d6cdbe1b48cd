//! A waker for test applications (also used by `benches/tcp_link.rs`, which includes
//! `transfer.rs` and this file by path).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Wake;

/// A waker that raises a flag: an application comes back to a connection only when its
/// flag was raised, as the HTTP server does.
pub struct Flag(AtomicBool);

impl Flag {
    /// A flag, raised or not.
    pub fn new(raised: bool) -> Arc<Flag> {
        Arc::new(Flag(AtomicBool::new(raised)))
    }

    /// Whether the flag was raised since the last call; lowers it.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}
