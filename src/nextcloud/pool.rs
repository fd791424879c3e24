//! The per-worker connection budget and keep-alive pool for the one Nextcloud origin.
//!
//! HaRP's aiohttp session allowed at most 100 connections (in use + idle) and kept idle ones
//! for 15 s (aiohttp's `keepalive_timeout`). Same here, per worker: a request takes an idle
//! connection if a live one exists, else a slot for a new one, else waits (bounded by the
//! caller's connect timeout) until a connection is returned or closed.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use super::conn::Conn;
use crate::runtime::signal::WakerList;

/// Connections (in use + idle) per worker (aiohttp `TCPConnector(limit=100)`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 100;
/// Idle connections older than this are closed, not reused (aiohttp `keepalive_timeout`).
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

struct Budget {
    open: Cell<usize>,
    max: usize,
    /// Tasks waiting for a slot or an idle connection; at most one entry per waiting task.
    waiters: WakerList,
}

impl Budget {
    fn wake_all(&self) {
        self.waiters.wake_all();
    }
}

/// The right to hold one open connection; released (and waiters woken) on drop.
pub struct Slot(Rc<Budget>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.set(self.0.open.get().saturating_sub(1));
        self.0.wake_all();
    }
}

/// An open connection with its slot.
pub struct Pooled {
    pub conn: Conn,
    pub slot: Slot,
}

pub enum Acquired {
    /// A live idle connection (it may still have been closed by the server a moment ago).
    Idle(Pooled),
    /// Room for one new connection.
    Fresh(Slot),
}

pub struct Pool {
    budget: Rc<Budget>,
    idle: RefCell<Vec<(Pooled, Instant)>>,
}

impl Pool {
    pub fn new(max_connections: usize) -> Self {
        Pool {
            budget: Rc::new(Budget {
                open: Cell::new(0),
                max: max_connections.max(1),
                waiters: WakerList::default(),
            }),
            idle: RefCell::new(Vec::new()),
        }
    }

    /// An idle connection or a slot; waits while all `max` connections are busy.
    pub async fn acquire(&self) -> Acquired {
        poll_fn(|cx| {
            if let Some(p) = self.take_idle() {
                return Poll::Ready(Acquired::Idle(p));
            }
            let b = &self.budget;
            if b.open.get() < b.max {
                b.open.set(b.open.get() + 1);
                return Poll::Ready(Acquired::Fresh(Slot(b.clone())));
            }
            b.waiters.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// The most recently used idle connection that is still open and fresh enough.
    fn take_idle(&self) -> Option<Pooled> {
        let mut idle = self.idle.borrow_mut();
        while let Some((p, since)) = idle.pop() {
            if since.elapsed() < DEFAULT_POOL_IDLE_TIMEOUT && p.conn.is_idle_and_open() {
                return Some(p);
            }
        }
        None
    }

    /// Return a connection after a clean exchange.
    pub fn put(&self, p: Pooled) {
        let mut idle = self.idle.borrow_mut();
        // Expired entries at the front (oldest first) are closed now rather than on checkout.
        idle.retain(|(_, since)| since.elapsed() < DEFAULT_POOL_IDLE_TIMEOUT);
        idle.push((p, Instant::now()));
        drop(idle);
        self.budget.wake_all();
    }

    pub fn idle_count(&self) -> usize {
        self.idle.borrow().len()
    }

    pub fn open_count(&self) -> usize {
        self.budget.open.get()
    }
}
