//! The data plane: accept -> parse head -> decide -> connect -> forward.
//!
//! - `conn`     one client connection's lifecycle (the loop over requests).
//! - `exchange` one request/response with an upstream, both bodies streamed concurrently.
//! - `body`     body forwarding by framing, through the pump.
//! - `pool`     per-worker keep-alive upstream connections.

mod body;
mod conn;
mod exchange;
pub mod pool;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use monoio::net::TcpListener;
use tracing::{debug, warn};

use crate::config::Config;
use crate::net::pump::Pump;

pub use conn::serve_client;

/// Idle pumps kept per worker for reuse (each holds a pipe or a buffer).
pub const DEFAULT_IDLE_PUMPS: usize = 64;

/// Per-core state. Lives in an `Rc` on its worker thread; never shared across threads.
pub struct Worker {
    pub id: usize,
    pub cfg: Arc<Config>,
    pub pool: RefCell<pool::Pool>,
    pumps: RefCell<Vec<Pump>>,
}

impl Worker {
    pub fn new(id: usize, cfg: Arc<Config>) -> Rc<Worker> {
        Rc::new(Worker {
            id,
            cfg,
            pool: RefCell::new(pool::Pool::default()),
            pumps: RefCell::new(Vec::new()),
        })
    }

    /// A pump from the idle list, or a new one. Creating a splice pump can fail when the
    /// process is out of file descriptors: then fall back to a copy pump.
    fn take_pump(&self) -> Pump {
        if let Some(p) = self.pumps.borrow_mut().pop() {
            return p;
        }
        Pump::new(self.cfg.pump).unwrap_or_else(|e| {
            warn!("cannot create a {:?} pump ({e}); using copy", self.cfg.pump);
            // invariant: a copy pump only allocates a buffer and cannot fail.
            Pump::new(crate::config::PumpChoice::Copy).expect("copy pump")
        })
    }

    /// Return a pump after a transfer that completed (so its pipe is empty).
    fn give_pump(&self, p: Pump) {
        let mut idle = self.pumps.borrow_mut();
        if idle.len() < DEFAULT_IDLE_PUMPS {
            idle.push(p);
        }
    }
}

/// Accept loop of one worker's public listener.
pub async fn accept_loop(w: Rc<Worker>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                monoio::spawn(serve_client(w.clone(), stream, peer));
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                debug!(worker = w.id, "accept failed: {e}");
                monoio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
