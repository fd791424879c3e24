//! The FRP server inside the appliance. Every worker has an FRP context for the tunnels
//! that live on it, with the HTTP side's ban store behind its login checks; worker 0 also
//! runs the FRP listener and places each new frpc connection on a worker
//! (`frp::directory`), moving it there over the bus. ExApps and Docker engines behind a
//! tunnel are reached at `127.0.0.1:<remotePort>`, the compatibility listener the owning
//! worker opens; requests handled on that worker skip the listener (in-process work
//! stream, `proxy::upstream`), requests on another worker move there first.

use std::net::IpAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use super::bus::{Bus, BusMsg};
use super::worker::{now_ms, Worker};
use crate::exapps::StateUpdate;
use crate::frp::{BanHook, FrpContext, HandedFrp, Handoff};

/// Bans seen through the owning worker's state copy; failures published to all workers.
/// Weak: the worker holds the FRP context, which holds this hook (no `Rc` cycle).
struct WorkerBans(Weak<Worker>);

impl BanHook for WorkerBans {
    fn is_banned(&self, ip: IpAddr) -> bool {
        let Some(w) = self.0.upgrade() else {
            return false;
        };
        let key = ip.to_canonical().to_string();
        let banned = w.state.borrow().bans.is_banned(&key, now_ms());
        banned
    }

    fn record_failure(&self, ip: IpAddr) {
        let Some(w) = self.0.upgrade() else {
            return;
        };
        let ip = ip.to_canonical().to_string();
        w.publish(StateUpdate::Failure {
            ip,
            at_ms: now_ms(),
        });
    }
}

/// FRP connections placed on another worker travel over the worker bus.
struct BusHandoff(Arc<Bus>);

impl Handoff for BusHandoff {
    fn send(&self, to: usize, conn: HandedFrp) {
        self.0.send(to, BusMsg::FrpConn(Box::new(conn)));
    }
}

/// Give this worker its FRP context. Call before the worker's bus task starts, so a
/// connection placed here finds it.
pub fn start_frp(w: &Rc<Worker>, tls: crate::tls::FrpTls) -> Rc<FrpContext> {
    let bans = Box::new(WorkerBans(Rc::downgrade(w)));
    let ctx = Rc::new(
        FrpContext::new(w.cfg.shared_key.clone(), tls)
            .with_bans(bans)
            .on_worker(
                w.id,
                w.directory.clone(),
                Box::new(BusHandoff(w.bus.clone())),
            ),
    );
    w.frp.replace(Some(ctx.clone()));
    ctx
}
