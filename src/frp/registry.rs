//! Per-worker FRP state: live controls by run_id, proxies by remote port and name, and each
//! control's pool of parked work connections (frp-protocol §4.2, §6.2, §7.2).
//!
//! Owns the bookkeeping only; sockets and listeners belong to `control` and `work`.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use serde::Serialize;

use super::channel::Channel;
use super::crypto::CfbWriter;
use super::directory::Directory;
use super::msg::{self, MsgType};
use super::yamux::Session;
use crate::runtime::signal::{Latch, Notify, WakerList};
use crate::tls::Transport;

/// frps's `transport.maxPoolCount`: ReqWorkConn sent right after login.
pub const MAX_POOL_COUNT: u32 = 5;
/// Parked work connections beyond the pool size that are still kept (frps: pool + 10).
pub const POOL_SLACK: usize = 10;
/// frps's `userConnTimeout`: how long a user connection waits for a work connection.
pub const USER_CONN_TIMEOUT: Duration = Duration::from_secs(10);
/// Encrypted control bytes queued for frpc before the control is considered stuck.
pub const MAX_CONTROL_OUTBOX_BYTES: usize = 1024 * 1024;

/// A parked work connection: the channel plus bytes already read past NewWorkConn.
pub struct WorkConn {
    pub ch: Channel,
    pub leftover: Vec<u8>,
}

/// How to tear a client's connection down.
pub enum Killer {
    Session(Session),
    Transport(Rc<Transport>),
}

/// One logged-in frpc.
pub struct Control {
    pub run_id: String,
    pub peer: SocketAddr,
    pub pool_cap: usize,
    writer: RefCell<CfbWriter>,
    pub(crate) outbox: RefCell<Vec<u8>>,
    pub(crate) outbox_ready: Notify,
    pool: RefCell<VecDeque<WorkConn>>,
    pool_wake: WakerList,
    pub proxies: RefCell<Vec<Rc<Proxy>>>,
    /// Fired when the control must end (teardown starts).
    pub closing: Latch,
    /// Fired when teardown finished and ports/names are free.
    pub done: Latch,
    killer: Killer,
    overflow: Cell<bool>,
    /// User connections currently waiting for a work connection; each asked frpc for one,
    /// so the pool must accept that many beyond its cap.
    waiting: Cell<usize>,
}

impl Control {
    pub fn new(
        run_id: String,
        peer: SocketAddr,
        pool_count: u32,
        writer: CfbWriter,
        killer: Killer,
    ) -> Control {
        Control {
            run_id,
            peer,
            pool_cap: pool_count.min(MAX_POOL_COUNT) as usize + POOL_SLACK,
            writer: RefCell::new(writer),
            outbox: RefCell::new(Vec::new()),
            outbox_ready: Notify::default(),
            pool: RefCell::new(VecDeque::new()),
            pool_wake: WakerList::default(),
            proxies: RefCell::new(Vec::new()),
            closing: Latch::default(),
            done: Latch::default(),
            killer,
            overflow: Cell::new(false),
            waiting: Cell::new(0),
        }
    }

    /// Queue one encrypted control message. Sealing happens here, synchronously, so the
    /// keystream order equals the queue order whatever task sends.
    pub fn send<T: Serialize>(&self, ty: MsgType, body: &T) {
        let mut plain = Vec::with_capacity(64);
        msg::write_msg(&mut plain, ty, body);
        let mut out = self.outbox.borrow_mut();
        self.writer.borrow_mut().seal(&plain, &mut out);
        if out.len() > MAX_CONTROL_OUTBOX_BYTES {
            // frpc stopped reading its control stream; end it rather than buffer forever.
            self.overflow.set(true);
            self.closing.fire();
        }
        drop(out);
        self.outbox_ready.notify();
    }

    pub fn overflowed(&self) -> bool {
        self.overflow.get()
    }

    /// Park a work connection; `false` (and the connection is dropped) when the pool is full.
    /// Whether this control runs on yamux session `s` (frpc opens its mux work streams on
    /// the session that carries its control).
    pub fn is_on_session(&self, s: &Session) -> bool {
        matches!(&self.killer, Killer::Session(k) if k.same_as(s))
    }

    pub fn park(&self, wc: WorkConn) -> bool {
        if self.closing.is_fired() || self.pool.borrow().len() >= self.pool_cap + self.waiting.get()
        {
            return false;
        }
        self.pool.borrow_mut().push_back(wc);
        self.pool_wake.wake_all();
        true
    }

    /// Take a parked work connection, asking frpc for one and waiting up to
    /// [`USER_CONN_TIMEOUT`] when none is parked; then ask for one more to refill the pool.
    pub async fn take_work_conn(&self) -> Option<WorkConn> {
        let mut wc = self.pop_live();
        if wc.is_none() {
            self.send(MsgType::ReqWorkConn, &msg::Empty {});
            // Counted until this waiter ends, however it ends (taken, timed out, or its
            // task dropped): the connection it asked for must still find room in the pool.
            let _waiter = Waiter::new(&self.waiting);
            let wait = poll_fn(|cx| {
                if self.closing.is_fired() {
                    return Poll::Ready(None);
                }
                if let Some(w) = self.pop_live() {
                    return Poll::Ready(Some(w));
                }
                self.pool_wake.register(cx.waker());
                self.closing_waker(cx.waker());
                Poll::Pending
            });
            wc = crate::runtime::time::limit(USER_CONN_TIMEOUT, wait)
                .await
                .ok()
                .flatten();
        }
        // Refill, unless parked connections already fill the pool (avoids asking frpc for
        // streams we would only drop under a burst of user connections).
        if wc.is_some() && self.pool.borrow().len() < self.pool_cap {
            self.send(MsgType::ReqWorkConn, &msg::Empty {});
        }
        wc
    }

    /// User connections waiting for a work connection right now.
    pub fn waiting(&self) -> usize {
        self.waiting.get()
    }

    /// Next parked connection whose stream frpc has not already ended.
    fn pop_live(&self) -> Option<WorkConn> {
        let mut pool = self.pool.borrow_mut();
        while let Some(w) = pool.pop_front() {
            if !w.ch.is_finished() {
                return Some(w);
            }
        }
        None
    }

    fn closing_waker(&self, w: &std::task::Waker) {
        // Teardown wakes the pool waiters too (see `clear_pool`).
        self.pool_wake.register(w);
    }

    pub(crate) fn clear_pool(&self) {
        self.pool.borrow_mut().clear();
        self.pool_wake.wake_all();
    }

    pub fn pooled(&self) -> usize {
        self.pool.borrow().len()
    }

    /// Login succeeded: a yamux session may now carry work streams.
    pub fn mark_authenticated(&self) {
        if let Killer::Session(s) = &self.killer {
            s.mark_authenticated();
        }
    }

    pub fn kill(&self) {
        self.closing.fire();
        match &self.killer {
            Killer::Session(s) => s.close(),
            Killer::Transport(t) => t.shutdown(),
        }
    }
}

/// One user connection waiting in [`Control::take_work_conn`]; the count drops when it
/// ends, including when its task is dropped mid-wait.
struct Waiter<'a>(&'a Cell<usize>);

impl<'a> Waiter<'a> {
    fn new(count: &'a Cell<usize>) -> Waiter<'a> {
        count.set(count.get() + 1);
        Waiter(count)
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// One registered tcp proxy and its 127.0.0.1 listener.
pub struct Proxy {
    pub name: String,
    pub port: u16,
    pub use_encryption: bool,
    pub use_compression: bool,
    pub control: Weak<Control>,
    /// Fired on CloseProxy or control teardown: the listener stops accepting.
    pub closed: Latch,
    /// The 127.0.0.1:<port> listener's fd, owned by the accept task (see `remove_proxy`).
    pub listener_fd: std::os::fd::RawFd,
}

/// This worker's controls and proxies. Names, ports and run_ids are also claimed in the
/// shared [`Directory`], so they stay unique across workers.
#[derive(Default)]
pub struct Registry {
    controls: HashMap<String, Rc<Control>>,
    ports: HashMap<u16, Rc<Proxy>>,
    pub(crate) worker: usize,
    pub(crate) directory: Arc<Directory>,
}

impl Registry {
    pub fn control(&self, run_id: &str) -> Option<Rc<Control>> {
        self.controls.get(run_id).cloned()
    }

    pub fn insert_control(&mut self, c: Rc<Control>) {
        self.directory.set_run(&c.run_id, self.worker);
        self.controls.insert(c.run_id.clone(), c);
    }

    /// Remove `c` if it is still the registered control for its run_id (a newer login with
    /// the same run_id may already have replaced it).
    pub fn remove_control(&mut self, c: &Rc<Control>) {
        if self
            .controls
            .get(&c.run_id)
            .is_some_and(|x| Rc::ptr_eq(x, c))
        {
            self.controls.remove(&c.run_id);
            self.directory.clear_run(&c.run_id, self.worker);
        }
    }

    pub fn proxy_by_port(&self, port: u16) -> Option<Rc<Proxy>> {
        self.ports.get(&port).cloned()
    }

    /// Claim `name` on every worker; `false` if a proxy of that name exists anywhere.
    pub fn claim_name(&self, name: &str) -> bool {
        self.directory.claim_name(name)
    }

    pub fn release_name(&self, name: &str) {
        self.directory.release_name(name);
    }

    /// Claim `port` for this worker; `false` if a session anywhere holds it.
    pub fn claim_port(&self, port: u16) -> bool {
        self.directory.claim_port(port, self.worker)
    }

    pub fn release_port(&self, port: u16) {
        self.directory.release_port(port, self.worker);
    }

    /// Register a proxy whose name and port were claimed.
    pub fn insert_proxy(&mut self, p: Rc<Proxy>) {
        self.ports.insert(p.port, p);
    }

    pub fn remove_proxy(&mut self, p: &Rc<Proxy>) {
        if self.ports.get(&p.port).is_some_and(|x| Rc::ptr_eq(x, p)) {
            self.ports.remove(&p.port);
            self.release_name(&p.name);
            self.release_port(p.port);
        }
        if p.closed.is_fired() {
            return;
        }
        // Take the socket out of LISTEN now, so a re-registration of the same port (a
        // reconnecting frpc) can bind at once, before the accept task has run and dropped
        // the listener. The fd is still open: the task only drops it after `closed` fires.
        // SAFETY: shutdown(2) on a listening fd that the accept task still owns.
        unsafe { libc::shutdown(p.listener_fd, libc::SHUT_RDWR) };
        p.closed.fire();
    }

    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_is_counted_until_it_ends_even_when_dropped_mid_wait() {
        crate::runtime::on_both_drivers(|| async {
            let key = crate::frp::crypto::derive_key(b"");
            let c = Control::new(
                "run".into(),
                "127.0.0.1:1".parse().unwrap(),
                1,
                CfbWriter::new(&key),
                Killer::Session(Session::new()),
            );
            let seen_while_waiting = Cell::new(0);
            monoio::select! {
                _ = c.take_work_conn() => panic!("no work connection was ever parked"),
                _ = async {
                    monoio::time::sleep(Duration::from_millis(20)).await;
                    seen_while_waiting.set(c.waiting());
                } => {},
            }
            // The user connection went away: its waiter is gone, its request stays sent.
            assert_eq!(seen_while_waiting.get(), 1);
            assert_eq!(c.waiting(), 0);
            assert!(
                !c.outbox.borrow().is_empty(),
                "ReqWorkConn was queued for frpc"
            );
        });
    }
}
