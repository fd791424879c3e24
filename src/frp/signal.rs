//! Single-thread wake-up primitives for the tasks of one worker (no locks, no atomics).
//!
//! monoio's `sync` feature gives cross-thread channels; everything in `frp` lives on one
//! worker, so these are plain `Cell`s plus wakers.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Level-triggered flag for exactly one waiting task (a writer loop, an accept loop).
#[derive(Default)]
pub struct Notify {
    set: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Notify {
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.replace(false) {
                return Poll::Ready(());
            }
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }
}

/// Wakers of tasks waiting for a shared condition; `wake_all` wakes and forgets them.
#[derive(Default)]
pub struct WakerList(RefCell<Vec<Waker>>);

impl WakerList {
    pub fn register(&self, w: &Waker) {
        let mut list = self.0.borrow_mut();
        if !list.iter().any(|x| x.will_wake(w)) {
            list.push(w.clone());
        }
    }

    pub fn wake_all(&self) {
        let list = std::mem::take(&mut *self.0.borrow_mut());
        for w in list {
            w.wake();
        }
    }
}

/// One-shot broadcast: once fired it stays fired (session closed, proxy closed).
#[derive(Default)]
pub struct Latch {
    fired: Cell<bool>,
    waiters: WakerList,
}

impl Latch {
    pub fn fire(&self) {
        self.fired.set(true);
        self.waiters.wake_all();
    }

    pub fn is_fired(&self) -> bool {
        self.fired.get()
    }

    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.fired.get() {
                return Poll::Ready(());
            }
            self.waiters.register(cx.waker());
            Poll::Pending
        })
        .await
    }
}
