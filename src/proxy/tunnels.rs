//! The FRP server inside the appliance: one worker owns the FRP listener and every tunnel
//! (frp state is per-thread), with the HTTP side's ban store behind its login checks.
//! ExApps and Docker engines behind a tunnel are reached at `127.0.0.1:<remotePort>`, the
//! compatibility listeners the FRP server opens on that worker. Requests handled on that
//! worker skip the listener: the worker keeps the FRP context (`Worker::frp`) and the
//! exchange opens a work stream in-process (`proxy::upstream`).

use std::net::IpAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use monoio::net::TcpListener;

use super::worker::{now_ms, Worker};
use crate::exapps::StateUpdate;
use crate::frp::{serve_frp, BanHook, FrpContext};

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

/// Run the FRP server on this worker until the process exits.
pub async fn run_frp(w: Rc<Worker>, listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) {
    let bans = Box::new(WorkerBans(Rc::downgrade(&w)));
    let ctx = Rc::new(
        FrpContext::new(w.cfg.shared_key.clone(), tls)
            .with_bans(bans)
            .with_live_tunnels(w.live_tunnels.clone()),
    );
    w.frp.replace(Some(ctx.clone()));
    serve_frp(listener, ctx).await;
}
