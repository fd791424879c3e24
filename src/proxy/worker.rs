//! Per-core state: config, upstream pool, idle pumps, the ExApp decision state copy, the
//! Nextcloud client and the bus endpoint. Lives in an `Rc` on its worker thread.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tracing::warn;

use super::bus::Bus;
use super::flight::Slot;
use super::pool::Pool;
use crate::config::{Config, PumpChoice};
use crate::docker::DockerCtx;
use crate::exapps::{MetaFetch, State, StateUpdate, UserAnswer};
use crate::frp::{Directory, FrpContext};
use crate::net::limits::ConnLimit;
use crate::net::pump::Pump;
use crate::nextcloud::NcClient;

/// Milliseconds on the process-wide monotonic clock every worker stamps state with, so
/// timestamps broadcast between workers compare correctly.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// The worker that owns the admin listener and the FRP listener (it accepts every frpc
/// connection and places it on a worker: `frp::directory`).
pub const FRP_WORKER: usize = 0;

pub struct Worker {
    pub id: usize,
    pub cfg: Arc<Config>,
    pub pool: RefCell<Pool>,
    /// Forwarding settings; pipes and buffers are leased per call from a per-thread pool.
    pump: Pump,
    pub state: RefCell<State>,
    pub bus: Arc<Bus>,
    pub nc: NcClient,
    /// Docker engines by port (local socket for 24000 when mounted).
    pub docker: DockerCtx,
    /// Local requests waiting for a metadata fetch, by app id (one bus request per key).
    pub pending_meta: RefCell<HashMap<String, Rc<Slot<MetaFetch>>>>,
    /// Local requests waiting for a user-info call, by pass cookie.
    pub pending_user: RefCell<HashMap<Vec<u8>, Rc<Slot<UserAnswer>>>>,
    /// This worker's FRP state: the tunnels that live here (set at start by
    /// `tunnels::start_frp`). Requests for their ports use it for the in-process fast path.
    pub frp: RefCell<Option<Rc<FrpContext>>>,
    /// Which worker owns each tunnel port (shared by all workers): a request for one that
    /// lives elsewhere hands its connection over (`conn::hand_over`).
    pub directory: Arc<Directory>,
    /// Live client connections of all workers against `LYRE_MAX_CONNECTIONS`.
    pub conns: Arc<ConnLimit>,
    /// When this worker last logged that the connection limit was reached.
    pub limit_warned: Cell<Option<Instant>>,
}

impl Worker {
    pub fn new(
        id: usize,
        cfg: Arc<Config>,
        bus: Arc<Bus>,
        nc: NcClient,
        (directory, conns): (Arc<Directory>, Arc<ConnLimit>),
    ) -> Rc<Worker> {
        Rc::new(Worker {
            id,
            state: RefCell::new(State::from_config(&cfg)),
            pool: RefCell::new(Pool::default()),
            pump: make_pump(&cfg),
            bus,
            nc,
            docker: DockerCtx::new(Some(cfg.docker_socket.clone()), cfg.frp_certs_dir()),
            pending_meta: RefCell::new(HashMap::new()),
            pending_user: RefCell::new(HashMap::new()),
            frp: RefCell::new(None),
            directory,
            conns,
            limit_warned: Cell::new(None),
            cfg,
        })
    }

    /// Apply a state change here and send it to every other worker.
    pub fn publish(&self, update: StateUpdate) {
        self.bus.broadcast(self.id, &update);
        self.state.borrow_mut().apply(update);
    }

    /// The worker's pump (cheap to clone: no fd or buffer of its own).
    pub fn pump(&self) -> Pump {
        self.pump.clone()
    }
}

/// The configured pump; a splice pump needs a pipe, and a process out of file descriptors
/// falls back to copying rather than refusing to start.
fn make_pump(cfg: &Config) -> Pump {
    Pump::new(cfg.pump).unwrap_or_else(|e| {
        warn!("cannot create a {:?} pump ({e}); using copy", cfg.pump);
        // invariant: a copy pump only allocates a buffer and cannot fail.
        Pump::new(PumpChoice::Copy).expect("copy pump")
    })
}
