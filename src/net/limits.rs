//! Process-wide connection limits: HaRP's `maxconn` for client connections, and the
//! descriptor limit that has to hold them.
//!
//! HAProxy (HaRP's front) stops accepting at its global `maxconn` (8192): further clients
//! wait in the kernel's listen backlog until a connection closes, so a flood of idle or
//! slow clients cannot exhaust the process's descriptors and take the FRP listener, the
//! Nextcloud client and the tunnels down with it. [`ConnLimit`] is that counter, shared by
//! every worker: one atomic add when a connection is accepted, one subtract when its task
//! ends; nothing per request.
//!
//! HAProxy also raises its own `RLIMIT_NOFILE` to fit `maxconn`. [`raise_nofile_limit`]
//! does the same within the hard limit (systemd gives services a soft limit of 1024 and a
//! hard one of 524288: without this Lyre would fail at ~500 concurrent proxied connections).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Counts live client connections against a maximum.
pub struct ConnLimit {
    active: AtomicUsize,
    max: usize,
}

/// One counted connection; dropping it frees the place.
pub struct ConnSlot(Arc<ConnLimit>);

impl ConnLimit {
    pub fn new(max: usize) -> Arc<ConnLimit> {
        Arc::new(ConnLimit {
            active: AtomicUsize::new(0),
            max: max.max(1),
        })
    }

    /// A place for a new connection, or `None` at the limit (leave it in the backlog).
    pub fn try_acquire(self: &Arc<Self>) -> Option<ConnSlot> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnSlot(self.clone()))
    }

    /// A place for a connection that was already admitted elsewhere (a client handed over
    /// between workers: its first worker's slot ends with that worker's task).
    pub fn admitted(self: &Arc<Self>) -> ConnSlot {
        self.active.fetch_add(1, Ordering::AcqRel);
        ConnSlot(self.clone())
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What [`raise_nofile_limit`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Descriptors `max_connections` client connections need at most: the client socket and
/// one upstream each (pipes are leased only while data moves), plus room for listeners,
/// tunnels, frpc connections and the Nextcloud pool.
pub fn descriptors_needed(max_connections: usize) -> u64 {
    2 * max_connections as u64 + 1024
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit (as HAProxy and Go's runtime do);
/// never lowers it.
pub fn raise_nofile_limit() -> std::io::Result<NofileLimit> {
    // SAFETY: getrlimit/setrlimit on a stack value.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let soft_before = r.rlim_cur;
        if r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(NofileLimit {
            soft_before,
            soft: r.rlim_cur,
            hard: r.rlim_max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_up_to_the_limit_and_free_on_drop() {
        let limit = ConnLimit::new(2);
        let a = limit.try_acquire().expect("first");
        let b = limit.try_acquire().expect("second");
        assert!(limit.try_acquire().is_none(), "third is over the limit");
        assert_eq!(limit.active(), 2);
        drop(a);
        let c = limit.try_acquire().expect("a place freed");
        // A handed-over connection is counted even at the limit.
        let d = limit.admitted();
        assert_eq!(limit.active(), 3);
        drop((b, c, d));
        assert_eq!(limit.active(), 0);
    }

    #[test]
    fn slots_are_shared_across_threads() {
        let limit = ConnLimit::new(1000);
        let held: Vec<ConnSlot> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let l = limit.clone();
                    s.spawn(move || (0..400).filter_map(|_| l.try_acquire()).collect::<Vec<_>>())
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(held.len(), 1000, "exactly the limit is handed out");
        assert_eq!(limit.active(), 1000);
        drop(held);
        assert_eq!(limit.active(), 0);
    }

    #[test]
    fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
        let l = raise_nofile_limit().expect("getrlimit");
        assert_eq!(l.soft, l.hard);
        assert!(l.soft >= l.soft_before);
    }
}
