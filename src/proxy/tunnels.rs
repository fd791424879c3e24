//! The FRP server inside the appliance: one worker owns the FRP listener and every tunnel
//! (frp state is per-thread), with the HTTP side's ban store behind its login checks.
//! ExApps and Docker engines behind a tunnel are reached at `127.0.0.1:<remotePort>`, the
//! compatibility listeners the FRP server opens on that worker.

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;

use monoio::net::TcpListener;

use super::worker::{now_ms, Worker};
use crate::exapps::StateUpdate;
use crate::frp::{serve_frp, BanHook, FrpContext};

/// Bans seen through the owning worker's state copy; failures published to all workers.
struct WorkerBans(Rc<Worker>);

impl BanHook for WorkerBans {
    fn is_banned(&self, ip: IpAddr) -> bool {
        let key = ip.to_canonical().to_string();
        self.0.state.borrow().bans.is_banned(&key, now_ms())
    }

    fn record_failure(&self, ip: IpAddr) {
        let ip = ip.to_canonical().to_string();
        self.0.publish(StateUpdate::Failure {
            ip,
            at_ms: now_ms(),
        });
    }
}

/// Run the FRP server on this worker until the process exits.
pub async fn run_frp(w: Rc<Worker>, listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) {
    let ctx = FrpContext::new(w.cfg.shared_key.clone(), tls).with_bans(Box::new(WorkerBans(w)));
    serve_frp(listener, Rc::new(ctx)).await;
}
