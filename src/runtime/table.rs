//! The connection table every role keeps: connections in a slab, each with the waker that
//! queues it in a [`ReadyQueue`] and at most one timer in an ordered set.
//!
//! The server, the client and the flow table hold their connections here and only say
//! what a connection is and how to drive it (quinn-proto's split of an endpoint's table
//! from its connections' state machines). A turn of the owner takes the connections whose
//! timers are due and those woken since the last turn ([`ConnTable::ready`]), and drives
//! each: [`ConnTable::begin`] clears its queued mark and its timer, and the drive arms the
//! next one with [`ConnTable::set_timer`]. The work per turn follows activity, not the
//! number of open connections.
//!
//! Roles can share one table: a proxy keeps its server's and its client's connections in
//! one `ConnTable<E>` whose entry `E` is either role's connection ([`Holds`]), so one turn
//! drives every ready or due connection once, whatever its role. Each role sees only its
//! own connections through [`ConnTable::role`]; a role alone keeps a table of its own
//! connections (every `C` [`Holds`] itself).

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::Waker;

use slab::Slab;
use smoltcp::time::Instant;

use super::wake::{ConnWaker, ReadyQueue};

/// One connection in the table.
#[derive(Debug)]
struct Entry<C> {
    conn: C,
    waker: Arc<ConnWaker>,
    /// The armed timer (also in the table's set).
    timer: Option<Instant>,
    /// The timer fired (was taken from the set) and the connection had no turn since.
    due: bool,
}

/// Connections of one owner with their wakers and timers. See the [module docs](self).
#[derive(Debug)]
pub struct ConnTable<C> {
    entries: Slab<Entry<C>>,
    ready: Arc<ReadyQueue>,
    timers: BTreeSet<(Instant, usize)>,
}

impl<C> Default for ConnTable<C> {
    fn default() -> Self {
        ConnTable::new()
    }
}

/// A connection's turn, from [`ConnTable::begin`].
pub struct Turn<'a, C> {
    /// The connection.
    pub conn: &'a mut C,
    /// Its waker (for sockets, bodies and futures that make it ready again).
    pub waker: Waker,
    /// Its timer was due: the drive handles the timeout.
    pub timer_due: bool,
}

impl<C> ConnTable<C> {
    /// An empty table with a ready queue of its own.
    pub fn new() -> Self {
        ConnTable {
            entries: Slab::new(),
            ready: ReadyQueue::new(),
            timers: BTreeSet::new(),
        }
    }

    /// The ready queue, for whoever queues work for the owner's next turn
    /// ([`ReadyQueue::nudge`]).
    pub fn ready_queue(&self) -> &Arc<ReadyQueue> {
        &self.ready
    }

    /// Connections held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no connection is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a connection, queued for its first turn; returns its key.
    pub fn insert(&mut self, conn: C) -> usize {
        let entry = self.entries.vacant_entry();
        let key = entry.key();
        let waker = ConnWaker::new(key, &self.ready);
        waker.wake_now();
        entry.insert(Entry {
            conn,
            waker,
            timer: None,
            due: false,
        });
        key
    }

    /// Removes a connection and its timer.
    pub fn remove(&mut self, key: usize) -> Option<C> {
        let entry = self.entries.try_remove(key)?;
        if let Some(at) = entry.timer {
            self.timers.remove(&(at, key));
        }
        Some(entry.conn)
    }

    /// The connection `key`.
    pub fn get(&self, key: usize) -> Option<&C> {
        self.entries.get(key).map(|e| &e.conn)
    }

    /// The connection `key`, to change.
    pub fn get_mut(&mut self, key: usize) -> Option<&mut C> {
        self.entries.get_mut(key).map(|e| &mut e.conn)
    }

    /// Every connection with its key.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &C)> {
        self.entries.iter().map(|(k, e)| (k, &e.conn))
    }

    /// Every connection with its key, to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut C)> {
        self.entries.iter_mut().map(|(k, e)| (k, &mut e.conn))
    }

    /// The keys of the connections `pick` chooses.
    pub fn keys_where(&self, mut pick: impl FnMut(&C) -> bool) -> Vec<usize> {
        self.entries
            .iter()
            .filter(|(_, e)| pick(&e.conn))
            .map(|(k, _)| k)
            .collect()
    }

    /// Takes every connection out (timers and queued turns dropped).
    pub fn drain(&mut self) -> impl Iterator<Item = C> + '_ {
        self.timers.clear();
        let _ = self.ready.drain();
        self.entries.drain().map(|e| e.conn)
    }

    /// Queues connection `key` for a turn.
    pub fn wake(&self, key: usize) {
        if let Some(e) = self.entries.get(key) {
            e.waker.wake_now();
        }
    }

    /// Queues every connection for a turn.
    pub fn wake_all(&self) {
        self.entries.iter().for_each(|(_, e)| e.waker.wake_now());
    }

    /// The waker of connection `key` as shared state (for a flow that wakes its driver).
    pub fn conn_waker(&self, key: usize) -> Option<&Arc<ConnWaker>> {
        self.entries.get(key).map(|e| &e.waker)
    }

    /// Starts connection `key`'s turn: later wakes queue it again, and its timer is
    /// cleared (the drive arms the next with [`ConnTable::set_timer`]).
    pub fn begin(&mut self, key: usize, now: Instant) -> Option<Turn<'_, C>> {
        let entry = self.entries.get_mut(key)?;
        entry.waker.clear();
        let timer_due = std::mem::take(&mut entry.due) || entry.timer.is_some_and(|at| at <= now);
        if let Some(at) = entry.timer.take() {
            self.timers.remove(&(at, key));
        }
        Some(Turn {
            conn: &mut entry.conn,
            waker: entry.waker.waker(),
            timer_due,
        })
    }

    /// Sets (or with `None` clears) connection `key`'s timer: it is queued for a turn at
    /// `at`.
    pub fn set_timer(&mut self, key: usize, at: Option<Instant>) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        if let Some(old) = entry.timer.take() {
            self.timers.remove(&(old, key));
        }
        if let Some(at) = at {
            entry.timer = Some(at);
            self.timers.insert((at, key));
        }
    }

    /// The connections to drive now, in the order they became ready: those whose timers
    /// are due (woken here) and those woken since the last call. Each key comes once; a
    /// [`ReadyQueue::nudge`] is no connection's and is left out.
    pub fn ready(&mut self, now: Instant) -> Vec<usize> {
        while let Some(&(at, key)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            if let Some(e) = self.entries.get_mut(key) {
                e.timer = None;
                e.due = true;
                e.waker.wake_now();
            }
        }
        let mut keys = self.ready.drain();
        keys.retain(|&k| k != usize::MAX && self.entries.contains(k));
        keys
    }

    /// When the owner wants its next turn: now while connections are queued, else the
    /// earliest timer.
    pub fn poll_at(&self, now: Instant) -> Option<Instant> {
        if !self.ready.is_empty() {
            return Some(now);
        }
        self.timers.first().map(|(at, _)| *at)
    }

    /// True when a connection waits in the ready queue.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }
}

/// A table entry that may be one role's connection `C`: every connection is its own entry
/// in a table of one role; an enum with a variant per role is the entry of a shared table.
pub trait Holds<C>: Sized {
    /// The entry for `conn`.
    fn from_conn(conn: C) -> Self;
    /// The connection, when this entry is one of the role's.
    fn conn(&self) -> Option<&C>;
    /// The connection to change, when this entry is one of the role's.
    fn conn_mut(&mut self) -> Option<&mut C>;
    /// The connection taken out, when this entry is one of the role's.
    fn into_conn(self) -> Option<C>;
}

impl<C> Holds<C> for C {
    fn from_conn(conn: C) -> Self {
        conn
    }
    fn conn(&self) -> Option<&C> {
        Some(self)
    }
    fn conn_mut(&mut self) -> Option<&mut C> {
        Some(self)
    }
    fn into_conn(self) -> Option<C> {
        Some(self)
    }
}

/// Makes an enum with one variant per role the entry of a shared table: implements
/// [`Holds`] for each variant's connection, e.g.
/// `holds!(ProxyConn { Down(ServerConn), Up(ClientConn) })`.
macro_rules! holds {
    ($entry:ident { $($variant:ident($conn:ty)),+ $(,)? }) => {
        $(
            impl $crate::runtime::table::Holds<$conn> for $entry {
                fn from_conn(conn: $conn) -> Self {
                    $entry::$variant(conn)
                }
                fn conn(&self) -> Option<&$conn> {
                    match self {
                        $entry::$variant(c) => Some(c),
                        _ => None,
                    }
                }
                fn conn_mut(&mut self) -> Option<&mut $conn> {
                    match self {
                        $entry::$variant(c) => Some(c),
                        _ => None,
                    }
                }
                fn into_conn(self) -> Option<$conn> {
                    match self {
                        $entry::$variant(c) => Some(c),
                        _ => None,
                    }
                }
            }
        )+
    };
}
pub(crate) use holds;

impl<E> ConnTable<E> {
    /// The connections of the role whose connection is `C`, in a table perhaps shared with
    /// other roles.
    pub fn role<C>(&mut self) -> Role<'_, E, C>
    where
        E: Holds<C>,
    {
        Role {
            table: self,
            role: PhantomData,
        }
    }
}

/// One role's connections in a [`ConnTable`], from [`ConnTable::role`]: the table's
/// operations, seeing only the entries that are `C`. Keys are the table's.
pub struct Role<'t, E, C> {
    table: &'t mut ConnTable<E>,
    role: PhantomData<fn() -> C>,
}

impl<E: Holds<C>, C> Role<'_, E, C> {
    /// Adds a connection, queued for its first turn; returns its key.
    pub fn insert(&mut self, conn: C) -> usize {
        self.table.insert(E::from_conn(conn))
    }

    /// Removes connection `key` (when it is one of the role's) and its timer.
    pub fn remove(&mut self, key: usize) -> Option<C> {
        self.table.get(key)?.conn()?;
        self.table.remove(key)?.into_conn()
    }

    /// Connection `key`, to change.
    pub fn get_mut(&mut self, key: usize) -> Option<&mut C> {
        self.table.get_mut(key)?.conn_mut()
    }

    /// The role's connections with their keys.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &C)> {
        self.table.iter().filter_map(|(k, e)| Some((k, e.conn()?)))
    }

    /// The role's connections with their keys, to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut C)> {
        self.table
            .iter_mut()
            .filter_map(|(k, e)| Some((k, e.conn_mut()?)))
    }

    /// The role's connections held (counted: a table shared by roles holds others too).
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True when the role holds no connection.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Takes the role's connections out, with their timers.
    pub fn drain(&mut self) -> Vec<C> {
        let keys = self.table.keys_where(|e| e.conn().is_some());
        keys.into_iter().filter_map(|k| self.remove(k)).collect()
    }

    /// Queues connection `key` for a turn.
    pub fn wake(&self, key: usize) {
        self.table.wake(key);
    }

    /// Queues every connection of the role for a turn.
    pub fn wake_all(&self) {
        for (key, _) in self.iter() {
            self.table.wake(key);
        }
    }

    /// Starts connection `key`'s turn (see [`ConnTable::begin`]) when it is the role's.
    pub fn begin(&mut self, key: usize, now: Instant) -> Option<Turn<'_, C>> {
        self.table.get(key)?.conn()?;
        let turn = self.table.begin(key, now)?;
        Some(Turn {
            conn: turn.conn.conn_mut()?,
            waker: turn.waker,
            timer_due: turn.timer_due,
        })
    }

    /// Sets (or with `None` clears) connection `key`'s timer.
    pub fn set_timer(&mut self, key: usize, at: Option<Instant>) {
        self.table.set_timer(key, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn a_new_connection_gets_a_turn_then_only_when_woken() {
        let mut table = ConnTable::new();
        let a = table.insert("a");
        let b = table.insert("b");
        assert_eq!(table.ready(at(0)), vec![a, b]);
        assert!(table.ready(at(0)).is_empty(), "nothing woke them");
        let turn = table.begin(b, at(0)).unwrap();
        turn.waker.wake_by_ref();
        turn.waker.wake_by_ref();
        assert_eq!(table.ready(at(0)), vec![b], "queued once");
        table.wake(a);
        assert!(
            table.ready(at(0)).is_empty(),
            "a had no turn since it was queued"
        );
        let _ = table.begin(a, at(0));
        table.wake(a);
        table.ready_queue().nudge();
        assert_eq!(table.ready(at(0)), vec![a], "a nudge is no connection's");
    }

    #[test]
    fn timers_fire_once_when_due_and_are_rearmed_by_the_drive() {
        let mut table = ConnTable::new();
        let a = table.insert(1);
        let b = table.insert(2);
        for key in table.ready(at(0)) {
            assert!(!table.begin(key, at(0)).unwrap().timer_due);
        }
        table.set_timer(a, Some(at(100)));
        table.set_timer(b, Some(at(50)));
        table.set_timer(b, Some(at(200)));
        assert_eq!(table.poll_at(at(0)), Some(at(100)));
        assert!(table.ready(at(99)).is_empty());
        assert_eq!(table.ready(at(100)), vec![a]);
        let turn = table.begin(a, at(100)).unwrap();
        assert!(turn.timer_due);
        assert_eq!(table.poll_at(at(100)), Some(at(200)), "a's timer is spent");
        table.set_timer(a, Some(at(300)));
        assert!(!table.begin(a, at(150)).unwrap().timer_due);
        assert_eq!(
            table.poll_at(at(150)),
            Some(at(200)),
            "a turn clears the timer"
        );
        table.set_timer(a, Some(at(300)));
        assert_eq!(table.remove(b), Some(2));
        assert_eq!(
            table.poll_at(at(150)),
            Some(at(300)),
            "removal drops b's timer"
        );
        table.set_timer(a, None);
        assert_eq!(table.poll_at(at(150)), None);
        assert!(table.ready(at(1_000)).is_empty());
    }

    /// An entry of a table shared by two roles.
    #[derive(Debug, PartialEq)]
    enum Either {
        Down(&'static str),
        Up(u32),
    }

    holds!(Either {
        Down(&'static str),
        Up(u32),
    });

    #[test]
    fn roles_sharing_a_table_see_their_own_connections_and_one_ready_queue() {
        let mut table: ConnTable<Either> = ConnTable::new();
        let down = table.role::<&str>().insert("a");
        let up = table.role::<u32>().insert(7);
        assert_eq!(table.len(), 2);
        assert_eq!(table.role::<&str>().len(), 1);
        assert_eq!(
            table.role::<u32>().iter().collect::<Vec<_>>(),
            vec![(up, &7)]
        );
        assert_eq!(
            table.ready(at(0)),
            vec![down, up],
            "one queue for both roles"
        );
        assert!(
            table.role::<u32>().begin(down, at(0)).is_none(),
            "a role cannot take another's turn"
        );
        assert!(table.role::<u32>().remove(down).is_none());
        assert!(table.role::<&str>().begin(down, at(0)).is_some());
        assert!(table.role::<u32>().begin(up, at(0)).is_some());
        // A timer of each role, both due at one turn.
        table.role::<&str>().set_timer(down, Some(at(100)));
        table.role::<u32>().set_timer(up, Some(at(90)));
        assert_eq!(table.poll_at(at(0)), Some(at(90)));
        assert_eq!(table.ready(at(100)), vec![up, down]);
        assert!(table.role::<&str>().begin(down, at(100)).unwrap().timer_due);
        let mut ups = table.role::<u32>();
        let turn = ups.begin(up, at(100)).unwrap();
        assert!(turn.timer_due);
        *turn.conn += 1;
        assert_eq!(table.role::<u32>().drain(), vec![8]);
        assert_eq!(table.len(), 1, "the other role's connection stays");
        assert_eq!(table.get(down), Some(&Either::Down("a")));
    }
}
