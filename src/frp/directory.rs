//! The tunnel directory, shared by every worker: which worker owns each remote port, proxy
//! name and run_id, and on which worker a new frpc session should live.
//!
//! A tunnel (an frpc session with its proxies and work connections) lives on one worker:
//! its state is `Rc`, driven by that worker's runtime. Worker 0 accepts every FRP
//! connection and, once it has read the first message, places it (`place`): a session
//! whose run_id is already registered goes to that run_id's worker (so a reconnect replaces
//! its old control there, and a non-mux work connection joins its control's pool); a new
//! session goes to the worker with the fewest sessions. A request for a tunnel's port that
//! lands on another worker moves to the owner (`proxy::conn::hand_over`).
//!
//! Names and ports are claimed here so that two sessions on different workers cannot
//! register the same one. Readers of `owner` (every request to a tunnel port) take no
//! lock; the mutexes are taken only on logins, registrations and teardowns.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

const PORTS: usize = u16::MAX as usize + 1;

pub struct Directory {
    /// Per remote port: 0 = free, `w + 1` = registered by a session on worker `w`.
    owners: Box<[AtomicU16]>,
    names: Mutex<HashSet<String>>,
    runs: Mutex<HashMap<String, usize>>,
    /// frpc sessions placed on each worker and not yet ended.
    sessions: Box<[AtomicUsize]>,
}

impl Default for Directory {
    /// One worker: everything is local (the FRP server on its own, as tests run it).
    fn default() -> Self {
        Directory::new(1)
    }
}

/// Lock a directory map; a panic elsewhere while it was held leaves valid contents (each
/// update is one insert or remove), so poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Directory {
    /// A directory for `workers` workers (at most `u16::MAX - 1`).
    pub fn new(workers: usize) -> Directory {
        let workers = workers.clamp(1, u16::MAX as usize - 1);
        Directory {
            owners: (0..PORTS).map(|_| AtomicU16::new(0)).collect(),
            names: Mutex::default(),
            runs: Mutex::default(),
            sessions: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    pub fn workers(&self) -> usize {
        self.sessions.len()
    }

    /// The worker whose session registered `port`, if any.
    pub fn owner(&self, port: u16) -> Option<usize> {
        match self.owners[port as usize].load(Ordering::Acquire) {
            0 => None,
            w => Some(w as usize - 1),
        }
    }

    /// Claim `port` for a session on `worker`; `false` if any session holds it.
    pub fn claim_port(&self, port: u16, worker: usize) -> bool {
        let mark = worker as u16 + 1;
        self.owners[port as usize]
            .compare_exchange(0, mark, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Release `port` if `worker` holds it.
    pub fn release_port(&self, port: u16, worker: usize) {
        let mark = worker as u16 + 1;
        let _ = self.owners[port as usize].compare_exchange(
            mark,
            0,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Claim a proxy name; `false` if a proxy of that name exists on any worker.
    pub fn claim_name(&self, name: &str) -> bool {
        lock(&self.names).insert(name.to_owned())
    }

    pub fn release_name(&self, name: &str) {
        lock(&self.names).remove(name);
    }

    /// The worker whose control serves `run_id`, if one is logged in.
    pub fn run_owner(&self, run_id: &str) -> Option<usize> {
        lock(&self.runs).get(run_id).copied()
    }

    /// A control for `run_id` logged in on `worker`.
    pub fn set_run(&self, run_id: &str, worker: usize) {
        lock(&self.runs).insert(run_id.to_owned(), worker);
    }

    /// The control for `run_id` on `worker` ended (a newer one elsewhere is left alone).
    pub fn clear_run(&self, run_id: &str, worker: usize) {
        let mut runs = lock(&self.runs);
        if runs.get(run_id) == Some(&worker) {
            runs.remove(run_id);
        }
    }

    /// Where a new FRP connection goes, given the first message frpc sent on it (`None`
    /// when it could not be read). A login is counted on its worker until the returned
    /// slot drops.
    pub fn place(self: &Arc<Self>, first: Option<&FirstMsg>, here: usize) -> Placement {
        match first {
            Some(FirstMsg::Login { run_id }) => {
                let worker = (!run_id.is_empty())
                    .then(|| self.run_owner(run_id))
                    .flatten()
                    .unwrap_or_else(|| self.least_loaded());
                Placement {
                    worker,
                    slot: Some(self.session_slot(worker)),
                }
            }
            Some(FirstMsg::WorkConn { run_id }) => Placement {
                worker: self.run_owner(run_id).unwrap_or(here),
                slot: None,
            },
            None => Placement {
                worker: here,
                slot: None,
            },
        }
    }

    /// The worker with the fewest sessions (the lowest id on a tie).
    fn least_loaded(&self) -> usize {
        (0..self.sessions.len())
            .min_by_key(|&w| self.sessions[w].load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Sessions currently placed on `worker`.
    pub fn sessions_on(&self, worker: usize) -> usize {
        self.sessions
            .get(worker)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    fn session_slot(self: &Arc<Self>, worker: usize) -> SessionSlot {
        self.sessions[worker].fetch_add(1, Ordering::Relaxed);
        SessionSlot {
            dir: self.clone(),
            worker,
        }
    }
}

/// The first message on a new FRP connection, as far as placement needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstMsg {
    Login { run_id: String },
    WorkConn { run_id: String },
}

/// Where a connection goes, and its session count while it lives there.
pub struct Placement {
    pub worker: usize,
    pub slot: Option<SessionSlot>,
}

/// One session counted on a worker until dropped (it travels with a handed-over
/// connection).
#[derive(Debug)]
pub struct SessionSlot {
    dir: Arc<Directory>,
    worker: usize,
}

impl SessionSlot {
    /// The session stays on `worker` instead (it could not move where it was placed).
    pub fn rehome(&mut self, worker: usize) {
        self.dir.sessions[self.worker].fetch_sub(1, Ordering::Relaxed);
        self.dir.sessions[worker].fetch_add(1, Ordering::Relaxed);
        self.worker = worker;
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.dir.sessions[self.worker].fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("workers", &self.workers())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(run_id: &str) -> FirstMsg {
        FirstMsg::Login {
            run_id: run_id.into(),
        }
    }

    #[test]
    fn ports_are_claimed_once_and_released_only_by_their_owner() {
        let d = Directory::new(3);
        for p in [0u16, 23000, 24099, u16::MAX] {
            assert_eq!(d.owner(p), None);
            assert!(d.claim_port(p, 2));
            assert!(!d.claim_port(p, 1), "a port has one owner");
            assert_eq!(d.owner(p), Some(2));
            d.release_port(p, 1);
            assert_eq!(d.owner(p), Some(2), "not released by another worker");
            d.release_port(p, 2);
            assert_eq!(d.owner(p), None);
        }
    }

    #[test]
    fn names_are_unique_across_workers() {
        let d = Directory::new(2);
        assert!(d.claim_name("app"));
        assert!(!d.claim_name("app"));
        d.release_name("app");
        assert!(d.claim_name("app"));
    }

    #[test]
    fn new_sessions_spread_and_known_run_ids_go_home() {
        let d = Arc::new(Directory::new(2));
        let a = d.place(Some(&login("")), 0);
        assert_eq!(a.worker, 0, "a tie goes to the lowest id");
        let b = d.place(Some(&login("")), 0);
        assert_eq!(b.worker, 1, "then the emptier worker");
        assert_eq!((d.sessions_on(0), d.sessions_on(1)), (1, 1));
        d.set_run("r1", 1);
        let again = d.place(Some(&login("r1")), 0);
        assert_eq!(again.worker, 1, "a reconnect goes where its run_id lives");
        let work = d.place(
            Some(&FirstMsg::WorkConn {
                run_id: "r1".into(),
            }),
            0,
        );
        assert_eq!((work.worker, work.slot.is_some()), (1, false));
        let stray = d.place(
            Some(&FirstMsg::WorkConn {
                run_id: "gone".into(),
            }),
            0,
        );
        assert_eq!(
            stray.worker, 0,
            "unknown run_id stays where it was accepted"
        );
        drop((b, again));
        assert_eq!((d.sessions_on(0), d.sessions_on(1)), (1, 0));
        d.clear_run("r1", 0);
        assert_eq!(
            d.run_owner("r1"),
            Some(1),
            "only the owner clears its run_id"
        );
        d.clear_run("r1", 1);
        assert_eq!(d.run_owner("r1"), None);
        drop(a);
        assert_eq!(d.sessions_on(0), 0);
    }
}
