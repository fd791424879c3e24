//! Single-thread wake-up primitives for the tasks of one worker (no locks, no atomics).
//!
//! monoio's `sync` feature gives cross-thread channels; the FRP server, the TLS write lock
//! and the Nextcloud pool live on one worker each, so these are plain `Cell`s plus wakers.

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

/// True if both wakers wake the same task. `Waker::will_wake` is not enough: it also
/// compares vtable addresses, and the same monoio vtable can live at several addresses in
/// one binary (one per codegen unit), so a task's waker and its clone compare unequal.
/// Lists deduplicated with `will_wake` alone grew by one entry per poll (measured: 32,768
/// clones of one session's waker within seconds, each pinning the task, and 18% of the
/// FRP worker's CPU scanning them). A monoio waker's data pointer is its task.
pub fn same_task(a: &Waker, b: &Waker) -> bool {
    a.will_wake(b) || a.data() == b.data()
}

/// Wakers of tasks waiting for a shared condition; `wake_all` wakes and forgets them.
#[derive(Default)]
pub struct WakerList(RefCell<Vec<Waker>>);

impl WakerList {
    pub fn register(&self, w: &Waker) {
        let mut list = self.0.borrow_mut();
        if !list.iter().any(|x| same_task(x, w)) {
            list.push(w.clone());
        }
    }

    /// Registered wakers (tests, diagnostics).
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{RawWaker, RawWakerVTable};

    // Two vtables with the same behaviour at different addresses: what one generic vtable
    // instantiated in two codegen units looks like.
    fn noop_clone_a(p: *const ()) -> RawWaker {
        RawWaker::new(p, &VTABLE_A)
    }
    fn noop_clone_b(p: *const ()) -> RawWaker {
        RawWaker::new(p, &VTABLE_B)
    }
    fn noop(_: *const ()) {}
    static VTABLE_A: RawWakerVTable = RawWakerVTable::new(noop_clone_a, noop, noop, noop);
    static VTABLE_B: RawWakerVTable = RawWakerVTable::new(noop_clone_b, noop, noop, noop);

    fn waker(task: &u64, vtable: &'static RawWakerVTable) -> Waker {
        // SAFETY: the vtable functions ignore the data pointer; nothing is dereferenced.
        unsafe { Waker::from_raw(RawWaker::new((task as *const u64).cast(), vtable)) }
    }

    #[test]
    fn one_task_registers_once_even_through_a_duplicated_vtable() {
        let (task, other) = (1u64, 2u64);
        let list = WakerList::default();
        for i in 0..100 {
            let vtable = if i % 2 == 0 { &VTABLE_A } else { &VTABLE_B };
            list.register(&waker(&task, vtable));
        }
        assert_eq!(list.len(), 1, "one entry per task, not per poll");
        list.register(&waker(&other, &VTABLE_A));
        assert_eq!(list.len(), 2);
        list.wake_all();
        assert!(list.is_empty());
    }

    #[test]
    fn same_task_compares_tasks_not_vtable_addresses() {
        let (task, other) = (1u64, 2u64);
        let (a, b) = (waker(&task, &VTABLE_A), waker(&task, &VTABLE_B));
        assert!(!a.will_wake(&b), "the case will_wake misses");
        assert!(same_task(&a, &b));
        assert!(!same_task(&a, &waker(&other, &VTABLE_A)));
    }
}
