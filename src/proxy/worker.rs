//! Per-core state: config, upstream pool, idle pumps, the ExApp decision state copy, the
//! Nextcloud client and the bus endpoint. Lives in an `Rc` on its worker thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tracing::warn;

use super::bus::Bus;
use super::flight::Slot;
use super::pool::Pool;
use crate::config::{Config, PumpChoice};
use crate::exapps::{MetaFetch, State, StateUpdate, UserAnswer};
use crate::net::pump::Pump;
use crate::nextcloud::NcClient;

/// Idle pumps kept per worker for reuse (each holds a pipe or a buffer).
pub const DEFAULT_IDLE_PUMPS: usize = 64;

/// Milliseconds on the process-wide monotonic clock every worker stamps state with, so
/// timestamps broadcast between workers compare correctly.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

pub struct Worker {
    pub id: usize,
    pub cfg: Arc<Config>,
    pub pool: RefCell<Pool>,
    pumps: RefCell<Vec<Pump>>,
    pub state: RefCell<State>,
    pub bus: Arc<Bus>,
    pub nc: NcClient,
    /// Local requests waiting for a metadata fetch, by app id (one bus request per key).
    pub pending_meta: RefCell<HashMap<String, Rc<Slot<MetaFetch>>>>,
    /// Local requests waiting for a user-info call, by pass cookie.
    pub pending_user: RefCell<HashMap<Vec<u8>, Rc<Slot<UserAnswer>>>>,
}

impl Worker {
    pub fn new(id: usize, cfg: Arc<Config>, bus: Arc<Bus>, nc: NcClient) -> Rc<Worker> {
        Rc::new(Worker {
            id,
            state: RefCell::new(State::from_config(&cfg)),
            cfg,
            pool: RefCell::new(Pool::default()),
            pumps: RefCell::new(Vec::new()),
            bus,
            nc,
            pending_meta: RefCell::new(HashMap::new()),
            pending_user: RefCell::new(HashMap::new()),
        })
    }

    /// Apply a state change here and send it to every other worker.
    pub fn publish(&self, update: StateUpdate) {
        self.bus.broadcast(self.id, &update);
        self.state.borrow_mut().apply(update);
    }

    /// A pump from the idle list, or a new one. Creating a splice pump can fail when the
    /// process is out of file descriptors: then fall back to a copy pump.
    pub fn take_pump(&self) -> Pump {
        if let Some(p) = self.pumps.borrow_mut().pop() {
            return p;
        }
        Pump::new(self.cfg.pump).unwrap_or_else(|e| {
            warn!("cannot create a {:?} pump ({e}); using copy", self.cfg.pump);
            // invariant: a copy pump only allocates a buffer and cannot fail.
            Pump::new(PumpChoice::Copy).expect("copy pump")
        })
    }

    /// Return a pump after a transfer that completed (so its pipe is empty).
    pub fn give_pump(&self, p: Pump) {
        let mut idle = self.pumps.borrow_mut();
        if idle.len() < DEFAULT_IDLE_PUMPS {
            idle.push(p);
        }
    }
}
