//! Wakers for connections on the event-loop thread.
//!
//! Each connection of an application gets a [`ConnWaker`]. Whatever can make it ready — its
//! smoltcp socket (data arrived, room to send), a body pipe, a future — wakes it, which
//! queues its key once in a [`ReadyQueue`]. The application drains the queue each turn, so
//! the work per turn follows activity, not the number of open connections. Wakers are
//! `Send + Sync` as `std::task::Waker` requires; a wake from another thread is picked up on
//! the loop's next turn.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

/// Keys of the connections woken since the last drain.
#[derive(Debug, Default)]
pub struct ReadyQueue {
    keys: Mutex<Vec<usize>>,
}

impl ReadyQueue {
    /// A new, shareable queue.
    pub fn new() -> Arc<Self> {
        Arc::new(ReadyQueue::default())
    }

    /// Takes every queued key.
    pub fn drain(&self) -> Vec<usize> {
        std::mem::take(&mut *self.keys.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// True when some connection is waiting for a turn.
    pub fn is_empty(&self) -> bool {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Queues a turn for no connection in particular: something new (a spawned task, a
    /// request) waits for the owner's next poll. The key is never one of a connection.
    pub fn nudge(&self) {
        self.push(usize::MAX);
    }

    fn push(&self, key: usize) {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(key);
    }
}

/// The waker of one connection.
#[derive(Debug)]
pub struct ConnWaker {
    key: usize,
    queued: AtomicBool,
    queue: Arc<ReadyQueue>,
}

impl ConnWaker {
    /// A waker for the connection `key`, queueing into `queue`.
    pub fn new(key: usize, queue: &Arc<ReadyQueue>) -> Arc<Self> {
        Arc::new(ConnWaker {
            key,
            queued: AtomicBool::new(false),
            queue: queue.clone(),
        })
    }

    /// Called when the connection gets its turn: later wakes queue it again.
    pub fn clear(&self) {
        self.queued.store(false, Ordering::Release);
    }

    /// Queues the connection for a turn.
    pub fn wake_now(&self) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.queue.push(self.key);
        }
    }

    /// A `std::task::Waker` for this connection.
    pub fn waker(self: &Arc<Self>) -> Waker {
        Waker::from(self.clone())
    }
}

impl Wake for ConnWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_now();
    }
}

/// Rounds of read/poll/write one connection gets per drive before the others get theirs:
/// every drive loop (byte pump, HTTP engines, flows, tunnels) takes at most this many, then
/// yields with [`out_of_turns`] if it was still making progress.
pub const TURNS: usize = 16;

/// Ends a connection's drive loop whose turns ran out while it was still making progress:
/// wakes it so it gets another turn on the application's next poll. It must not wait for
/// its socket instead: the work left may be in a producer (a response body) with nothing
/// pending for the socket, so no write interest is registered — e.g. a writer that filled
/// the send buffer exactly (16 turns of 64 KiB = a 1 MiB buffer) is never woken again.
pub fn out_of_turns(cx: &Context<'_>) {
    cx.waker().wake_by_ref();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_queued_once_until_its_turn() {
        let queue = ReadyQueue::new();
        let waker = ConnWaker::new(3, &queue);
        waker.waker().wake_by_ref();
        waker.waker().wake();
        assert_eq!(queue.drain(), vec![3]);
        assert!(queue.is_empty());
        waker.waker().wake_by_ref();
        assert!(queue.is_empty(), "not queued again before its turn");
        waker.clear();
        waker.waker().wake_by_ref();
        assert_eq!(queue.drain(), vec![3]);
    }
}
