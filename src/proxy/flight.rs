//! Nextcloud fetches, one per key across the whole process.
//!
//! Every app id and every pass cookie has an owner worker (a hash of the key). A worker
//! that needs `exapp-meta` or `user-info` parks its request on a local [`Slot`] for the key;
//! the first such request sends one `Fetch*` message to the owner. The owner runs the
//! single flight (`Registry`/`SessionCache::begin_fetch`), makes the one Nextcloud call,
//! broadcasts the resulting state update to every worker, and then answers each waiting
//! worker with `*Done`. Bus queues are FIFO per destination, so a requester applies the
//! update before it sees the answer. This is what keeps user-info at one call per cookie per
//! lifetime window even when concurrent requests land on different cores.

use crate::runtime::contain::spawn_conn;
use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::future::poll_fn;
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::task::{Poll, Waker};

use tracing::{debug, warn};

use super::bus::{BusMsg, BusReceiver};
use super::worker::{now_ms, Worker};
use crate::exapps::{
    classify_meta_response, classify_user_info_response, FetchTicket, Lookup, MetaFetch,
    StateUpdate, UserAnswer,
};

/// A value some local requests wait for.
pub struct Slot<T> {
    value: RefCell<Option<T>>,
    wakers: RefCell<Vec<Waker>>,
}

impl<T: Clone> Slot<T> {
    fn new() -> Rc<Self> {
        Rc::new(Slot {
            value: RefCell::new(None),
            wakers: RefCell::new(Vec::new()),
        })
    }

    fn fill(&self, v: T) {
        *self.value.borrow_mut() = Some(v);
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    async fn wait(&self) -> T {
        poll_fn(|cx| match self.value.borrow().as_ref() {
            Some(v) => Poll::Ready(v.clone()),
            None => {
                self.wakers.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

fn owner_of<K: Hash + ?Sized>(key: &K, workers: usize) -> usize {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % workers.max(1) as u64) as usize
}

/// Metadata for `app_id_lc`, fetched once process-wide.
pub async fn fetch_meta(w: &Rc<Worker>, app_id_lc: &str) -> MetaFetch {
    let existing = w.pending_meta.borrow().get(app_id_lc).cloned();
    let slot = match existing {
        Some(s) => s,
        None => {
            let s = Slot::new();
            w.pending_meta
                .borrow_mut()
                .insert(app_id_lc.to_string(), s.clone());
            let owner = owner_of(app_id_lc, w.bus.workers());
            let msg = BusMsg::FetchMeta {
                app_id_lc: app_id_lc.to_string(),
                reply_to: w.id,
            };
            deliver_to(w, owner, msg);
            s
        }
    };
    slot.wait().await
}

/// user-info for a request. With a pass cookie the call is shared process-wide; without
/// one (Authorization header only) every request makes its own call, as in HaRP.
pub async fn fetch_user(
    w: &Rc<Worker>,
    app_id_lc: &str,
    cookie: &[u8],
    headers: Vec<(Vec<u8>, Vec<u8>)>,
) -> UserAnswer {
    if cookie.is_empty() {
        return call_user_info(w, app_id_lc, &headers).await;
    }
    let existing = w.pending_user.borrow().get(cookie).cloned();
    let slot = match existing {
        Some(s) => s,
        None => {
            let s = Slot::new();
            w.pending_user
                .borrow_mut()
                .insert(cookie.to_vec(), s.clone());
            let owner = owner_of(cookie, w.bus.workers());
            let msg = BusMsg::FetchUser {
                app_id_lc: app_id_lc.to_string(),
                cookie: cookie.to_vec(),
                headers,
                reply_to: w.id,
            };
            deliver_to(w, owner, msg);
            s
        }
    };
    slot.wait().await
}

/// Send to `to`, or handle right here when `to` is this worker.
fn deliver_to(w: &Rc<Worker>, to: usize, msg: BusMsg) {
    if to == w.id {
        handle_msg(w, msg);
    } else {
        w.bus.send(to, msg);
    }
}

/// The worker's bus task: apply updates, run owned fetches, complete local waits.
pub async fn run_bus(w: Rc<Worker>, mut rx: BusReceiver) {
    let doorbell = match rx.doorbell_stream() {
        Ok(d) => d,
        Err(e) => {
            warn!(
                worker = w.id,
                "bus doorbell unavailable: {e}; state sync disabled"
            );
            return;
        }
    };
    loop {
        for msg in rx.recv_batch(&doorbell).await {
            handle_msg(&w, msg);
        }
    }
}

fn handle_msg(w: &Rc<Worker>, msg: BusMsg) {
    match msg {
        BusMsg::Update(u) => w.state.borrow_mut().apply(u),
        BusMsg::FetchMeta {
            app_id_lc,
            reply_to,
        } => own_meta_fetch(w, app_id_lc, reply_to),
        BusMsg::FetchUser {
            app_id_lc,
            cookie,
            headers,
            reply_to,
        } => own_user_fetch(w, app_id_lc, cookie, headers, reply_to),
        BusMsg::MetaDone { app_id_lc, result } => {
            if let Some(slot) = w.pending_meta.borrow_mut().remove(&app_id_lc) {
                slot.fill(result);
            }
        }
        BusMsg::UserDone { cookie, result } => {
            if let Some(slot) = w.pending_user.borrow_mut().remove(&cookie) {
                slot.fill(result);
            }
        }
        BusMsg::HandOver(h) => {
            // Admitted by the worker that accepted it; its slot ended with that task.
            let slot = w.conns.admitted();
            let conn = super::conn::adopt_client(w.clone(), h);
            spawn_conn("handed-over client", super::counted(conn, slot));
        }
        BusMsg::FrpConn(h) => {
            let ctx = w.frp.borrow().clone();
            if let Some(ctx) = ctx {
                spawn_conn("frpc connection", crate::frp::adopt(ctx, *h));
            }
        }
    }
}

/// Owner side of a metadata fetch: join or lead the single flight for `app_id_lc`.
fn own_meta_fetch(w: &Rc<Worker>, app_id_lc: String, reply_to: usize) {
    // The requester missed before a fill from this worker reached it (the broadcast was
    // still queued): answer from the cache instead of starting a second call.
    let cached = match w.state.borrow().registry.lookup(&app_id_lc, now_ms()) {
        Lookup::Found(r) => Some(MetaFetch::Found((*r).clone())),
        Lookup::NotFound => Some(MetaFetch::NotFound),
        Lookup::Miss => None,
    };
    if let Some(result) = cached {
        return deliver_to(w, reply_to, BusMsg::MetaDone { app_id_lc, result });
    }
    let ticket = w.state.borrow_mut().registry.begin_fetch(&app_id_lc);
    w.state
        .borrow_mut()
        .registry
        .add_fetch_waiter(&app_id_lc, reply_to as u64);
    if let FetchTicket::Follower = ticket {
        return;
    }
    let w = w.clone();
    monoio::spawn(async move {
        let result = match w.nc.exapp_meta(&app_id_lc).await {
            Ok(r) => classify_meta_response(r.status, &r.body),
            Err(e) => MetaFetch::Error(e.to_string()),
        };
        debug!(app = %app_id_lc, ?result, "exapp-meta fetched");
        if let Some(update) = result.update(&app_id_lc, now_ms()) {
            w.publish(update);
        }
        let waiters = w.state.borrow_mut().registry.finish_fetch(&app_id_lc);
        for to in dedup(waiters) {
            let msg = BusMsg::MetaDone {
                app_id_lc: app_id_lc.clone(),
                result: result.clone(),
            };
            deliver_to(&w, to, msg);
        }
    });
}

/// Owner side of a user-info call for one pass cookie.
fn own_user_fetch(
    w: &Rc<Worker>,
    app_id_lc: String,
    cookie: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    reply_to: usize,
) {
    // Same race as for metadata: the fill is in flight to the requester.
    let cached = w.state.borrow().sessions.peek(&cookie, now_ms()).cloned();
    if let Some(user) = cached {
        let result = UserAnswer::User(user);
        return deliver_to(w, reply_to, BusMsg::UserDone { cookie, result });
    }
    let ticket = w.state.borrow_mut().sessions.begin_fetch(&cookie);
    w.state
        .borrow_mut()
        .sessions
        .add_fetch_waiter(&cookie, reply_to as u64);
    if let FetchTicket::Follower = ticket {
        return;
    }
    let w = w.clone();
    monoio::spawn(async move {
        let result = call_user_info(&w, &app_id_lc, &headers).await;
        if let UserAnswer::User(user) = &result {
            let at_ms = now_ms();
            w.publish(StateUpdate::SessionFill {
                cookie: cookie.clone(),
                user: user.clone(),
                at_ms,
            });
        }
        let waiters = w.state.borrow_mut().sessions.finish_fetch(&cookie);
        for to in dedup(waiters) {
            let msg = BusMsg::UserDone {
                cookie: cookie.clone(),
                result: result.clone(),
            };
            deliver_to(&w, to, msg);
        }
    });
}

async fn call_user_info(
    w: &Rc<Worker>,
    app_id_lc: &str,
    headers: &[(Vec<u8>, Vec<u8>)],
) -> UserAnswer {
    let refs: Vec<(&[u8], &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect();
    match w.nc.user_info(app_id_lc, &refs).await {
        Ok(r) => classify_user_info_response(r.status, &r.body),
        Err(e) => UserAnswer::Failed(e.to_string()),
    }
}

fn dedup(mut ids: Vec<u64>) -> Vec<usize> {
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter().map(|i| i as usize).collect()
}
