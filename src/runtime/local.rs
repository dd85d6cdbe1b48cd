//! A task set for futures on the loop's thread: `spawn` without a runtime.
//!
//! Futures need not be `Send`: the loop is single-threaded. Each task gets a
//! [`ConnWaker`]; whatever wakes it (a flow with data, another task) queues it once, and the
//! owner of the set polls only the queued tasks on its next turn. The set is bounded: a
//! spawn beyond [`LocalTasks::new`]'s limit is refused with [`SpawnError::Full`]. Dropping
//! the set (at stop) drops every task.
//!
//! Two handles spawn into a set: [`Spawner`] (any future, loop thread only) and
//! [`SendSpawner`] (`Send` futures, `Send + Sync` itself, for libraries whose executor must
//! be, such as hyper-util's legacy client).

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Context;

use slab::Slab;

use super::wake::{ConnWaker, ReadyQueue};

type LocalFuture = Pin<Box<dyn Future<Output = ()>>>;
type SendFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Polls of queued tasks per [`LocalTasks::poll`] at most, so a task that always wakes
/// itself cannot starve the stack.
const POLL_BUDGET: usize = 1024;

/// A spawn was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpawnError {
    /// The task set holds its limit of tasks.
    #[error("task set full ({0} tasks)")]
    Full(usize),
    /// The task set was dropped (the loop stopped).
    #[error("task set stopped")]
    Stopped,
}

#[derive(Debug)]
struct Count {
    /// Tasks held or waiting in an inbox.
    live: AtomicUsize,
    limit: usize,
    /// Set when the task set is dropped.
    stopped: AtomicUsize,
}

impl Count {
    fn reserve(&self) -> Result<(), SpawnError> {
        if self.stopped.load(Ordering::Acquire) != 0 {
            return Err(SpawnError::Stopped);
        }
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .map(|_| ())
            .map_err(|_| SpawnError::Full(self.limit))
    }

    fn release(&self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Spawns futures (`Send` or not) into a [`LocalTasks`]; use it on the loop's thread.
#[derive(Clone)]
pub struct Spawner {
    inbox: Rc<RefCell<Vec<LocalFuture>>>,
    count: Arc<Count>,
    ready: Arc<ReadyQueue>,
}

impl fmt::Debug for Spawner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spawner")
            .field("tasks", &self.count.live.load(Ordering::Relaxed))
            .finish()
    }
}

impl Spawner {
    /// Queues `future` to run on the loop; it is first polled on the set's next turn.
    pub fn spawn<F>(&self, future: F) -> Result<(), SpawnError>
    where
        F: Future<Output = ()> + 'static,
    {
        self.count.reserve()?;
        self.inbox.borrow_mut().push(Box::pin(future));
        self.ready.nudge();
        Ok(())
    }
}

/// Spawns `Send` futures into a [`LocalTasks`]; itself `Send + Sync`. A future spawned
/// from another thread starts on the loop's next turn.
#[derive(Clone)]
pub struct SendSpawner {
    inbox: Arc<Mutex<Vec<SendFuture>>>,
    count: Arc<Count>,
    ready: Arc<ReadyQueue>,
}

impl fmt::Debug for SendSpawner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendSpawner")
            .field("tasks", &self.count.live.load(Ordering::Relaxed))
            .finish()
    }
}

impl SendSpawner {
    /// Queues `future` to run on the loop.
    pub fn spawn<F>(&self, future: F) -> Result<(), SpawnError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.count.reserve()?;
        self.inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::pin(future));
        self.ready.nudge();
        Ok(())
    }
}

struct Task {
    future: LocalFuture,
    waker: Arc<ConnWaker>,
}

/// The tasks spawned on the loop (see the [module docs](self)).
pub struct LocalTasks {
    tasks: Slab<Task>,
    ready: Arc<ReadyQueue>,
    local_inbox: Rc<RefCell<Vec<LocalFuture>>>,
    send_inbox: Arc<Mutex<Vec<SendFuture>>>,
    count: Arc<Count>,
}

impl fmt::Debug for LocalTasks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalTasks")
            .field("tasks", &self.tasks.len())
            .finish()
    }
}

impl LocalTasks {
    /// An empty set holding at most `limit` tasks.
    pub fn new(limit: usize) -> Self {
        LocalTasks {
            tasks: Slab::new(),
            ready: ReadyQueue::new(),
            local_inbox: Rc::default(),
            send_inbox: Arc::default(),
            count: Arc::new(Count {
                live: AtomicUsize::new(0),
                limit,
                stopped: AtomicUsize::new(0),
            }),
        }
    }

    /// A handle that spawns any future (loop thread only).
    pub fn spawner(&self) -> Spawner {
        Spawner {
            inbox: self.local_inbox.clone(),
            count: self.count.clone(),
            ready: self.ready.clone(),
        }
    }

    /// A `Send + Sync` handle that spawns `Send` futures.
    pub fn send_spawner(&self) -> SendSpawner {
        SendSpawner {
            inbox: self.send_inbox.clone(),
            count: self.count.clone(),
            ready: self.ready.clone(),
        }
    }

    /// Tasks held (running or waiting to start).
    pub fn len(&self) -> usize {
        self.count.live.load(Ordering::Acquire)
    }

    /// True when no task is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when a task was woken or spawned and waits for [`LocalTasks::poll`].
    pub fn has_work(&self) -> bool {
        !self.ready.is_empty()
    }

    fn admit(&mut self, future: LocalFuture) {
        let entry = self.tasks.vacant_entry();
        let waker = ConnWaker::new(entry.key(), &self.ready);
        waker.wake_now();
        entry.insert(Task { future, waker });
    }

    /// Starts newly spawned tasks and polls every woken one. Returns how many polls were
    /// made (0: nothing was ready).
    pub fn poll(&mut self) -> usize {
        let mut polls = 0;
        while polls < POLL_BUDGET {
            let spawned: Vec<LocalFuture> = std::mem::take(&mut *self.local_inbox.borrow_mut());
            let sent: Vec<SendFuture> =
                std::mem::take(&mut *self.send_inbox.lock().unwrap_or_else(|e| e.into_inner()));
            for future in spawned {
                self.admit(future);
            }
            for future in sent {
                self.admit(future);
            }
            let keys = self.ready.drain();
            if keys.is_empty() {
                break;
            }
            for key in keys {
                let Some(task) = self.tasks.get_mut(key) else {
                    // A wake of a task that finished (or the spawn nudge).
                    continue;
                };
                task.waker.clear();
                let waker = task.waker.waker();
                let mut cx = Context::from_waker(&waker);
                polls += 1;
                if task.future.as_mut().poll(&mut cx).is_ready() {
                    self.tasks.remove(key);
                    self.count.release();
                }
            }
        }
        polls
    }
}

impl LocalTasks {
    /// Drops every task and refuses later spawns (the loop is stopping).
    pub fn stop(&mut self) {
        self.count.stopped.store(1, Ordering::Release);
        // Tasks may hold spawners and spawn while being dropped: the stopped flag refuses.
        let tasks = std::mem::take(&mut self.tasks);
        drop(tasks);
        self.local_inbox.borrow_mut().clear();
        self.send_inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.count.live.store(0, Ordering::Release);
    }
}

impl Drop for LocalTasks {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::task::Poll;

    /// Pending until `flag` is set; wakes nobody itself.
    struct WaitFor(Rc<Cell<bool>>, Rc<RefCell<Option<std::task::Waker>>>);

    impl Future for WaitFor {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0.get() {
                Poll::Ready(())
            } else {
                *self.1.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    #[test]
    fn tasks_run_when_woken_and_are_bounded() {
        let mut set = LocalTasks::new(2);
        let spawner = set.spawner();
        let flag = Rc::new(Cell::new(false));
        let waker = Rc::new(RefCell::new(None));
        let ran = Rc::new(Cell::new(0));
        let r = ran.clone();
        spawner
            .spawn(async move {
                r.set(r.get() + 1);
            })
            .unwrap();
        spawner.spawn(WaitFor(flag.clone(), waker.clone())).unwrap();
        assert_eq!(spawner.spawn(async {}), Err(SpawnError::Full(2)));
        assert_eq!(set.poll(), 2);
        assert_eq!(ran.get(), 1);
        assert_eq!(set.len(), 1);
        // Not woken: not polled.
        assert_eq!(set.poll(), 0);
        flag.set(true);
        waker.borrow_mut().take().unwrap().wake();
        assert_eq!(set.poll(), 1);
        assert!(set.is_empty());
        // A task spawned by a task starts in the same turn.
        let s = spawner.clone();
        let r = ran.clone();
        spawner
            .spawn(async move {
                s.spawn(async move { r.set(10) }).unwrap();
            })
            .unwrap();
        assert_eq!(set.poll(), 2);
        assert_eq!(ran.get(), 10);
    }

    #[test]
    fn dropping_the_set_drops_tasks_and_refuses_spawns() {
        let set = LocalTasks::new(8);
        let spawner = set.send_spawner();
        let held = Arc::new(());
        let h = held.clone();
        spawner
            .spawn(async move {
                let _h = h;
                std::future::pending::<()>().await;
            })
            .unwrap();
        assert_eq!(Arc::strong_count(&held), 2);
        drop(set);
        assert_eq!(Arc::strong_count(&held), 1);
        assert_eq!(spawner.spawn(async {}), Err(SpawnError::Stopped));
    }
}
