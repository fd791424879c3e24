//! Cross-worker messages: how a ban, a metadata push or a cache fill made on one core
//! reaches every other core, and how a Nextcloud fetch is handed to the worker that owns it.
//!
//! Each worker has an inbox: an `mpsc` queue plus a socketpair used only as a doorbell. A
//! sender queues the message and writes one byte to the doorbell; the worker's bus task waits
//! for the doorbell to be readable (a readiness wait, no thread), drains it, then drains the
//! queue. Nothing here is on the per-request path except `send`, which only happens when
//! state changes. Delivery latency is one wakeup of the receiving worker: microseconds.

use std::io;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::mpsc;
use std::sync::Arc;

use super::conn::HandedClient;
use crate::exapps::{MetaFetch, StateUpdate, UserAnswer};
use crate::frp::HandedFrp;

/// A message between workers.
#[derive(Debug)]
pub enum BusMsg {
    /// Apply this change to your state copy.
    Update(StateUpdate),
    /// You own this app id: fetch its metadata (single flight) and answer `reply_to`.
    FetchMeta { app_id_lc: String, reply_to: usize },
    /// You own this pass cookie: call user-info (single flight) and answer `reply_to`.
    FetchUser {
        app_id_lc: String,
        cookie: Vec<u8>,
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        reply_to: usize,
    },
    /// The outcome of a `FetchMeta` you asked for.
    MetaDone {
        app_id_lc: String,
        result: MetaFetch,
    },
    /// The outcome of a `FetchUser` you asked for.
    UserDone { cookie: Vec<u8>, result: UserAnswer },
    /// The tunnel this client's request is for lives here: take over the connection (see
    /// `conn::hand_over`).
    HandOver(Box<HandedClient>),
    /// An FRP connection placed on this worker by the one that accepted it
    /// (`frp::directory`): continue serving it here.
    FrpConn(Box<HandedFrp>),
}

struct Inbox {
    queue: mpsc::Sender<BusMsg>,
    doorbell: StdUnixStream,
}

/// The sending side, shared by all workers.
pub struct Bus {
    inboxes: Vec<Inbox>,
}

/// One worker's receiving side.
pub struct BusReceiver {
    queue: mpsc::Receiver<BusMsg>,
    doorbell: StdUnixStream,
}

impl Bus {
    /// A bus for `workers` workers; receiver `i` belongs to worker `i`.
    pub fn new(workers: usize) -> io::Result<(Arc<Bus>, Vec<BusReceiver>)> {
        let mut inboxes = Vec::with_capacity(workers);
        let mut receivers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = mpsc::channel();
            let (ring, bell) = StdUnixStream::pair()?;
            ring.set_nonblocking(true)?;
            bell.set_nonblocking(true)?;
            inboxes.push(Inbox {
                queue: tx,
                doorbell: ring,
            });
            receivers.push(BusReceiver {
                queue: rx,
                doorbell: bell,
            });
        }
        Ok((Arc::new(Bus { inboxes }), receivers))
    }

    pub fn workers(&self) -> usize {
        self.inboxes.len()
    }

    /// Queue `msg` for worker `to` and ring its doorbell. A full doorbell (EAGAIN) means the
    /// worker has not drained it yet and will see this message too.
    pub fn send(&self, to: usize, msg: BusMsg) {
        let Some(inbox) = self.inboxes.get(to) else {
            return;
        };
        if inbox.queue.send(msg).is_ok() {
            let _ = (&inbox.doorbell).write(&[1]);
        }
    }

    /// Send `update` to every worker except `from` (which applied it already).
    pub fn broadcast(&self, from: usize, update: &StateUpdate) {
        for to in (0..self.inboxes.len()).filter(|&i| i != from) {
            self.send(to, BusMsg::Update(update.clone()));
        }
    }
}

impl BusReceiver {
    /// Wait until at least one message is queued, then return everything queued.
    pub async fn recv_batch(&mut self, doorbell: &monoio::net::UnixStream) -> Vec<BusMsg> {
        loop {
            let mut sink = [0u8; 256];
            while matches!((&self.doorbell).read(&mut sink), Ok(n) if n > 0) {}
            let batch: Vec<BusMsg> = self.queue.try_iter().collect();
            if !batch.is_empty() {
                return batch;
            }
            if doorbell.readable(false).await.is_err() {
                return Vec::new();
            }
        }
    }

    /// A monoio handle on the doorbell for readiness waits (same socket, duplicated fd).
    pub fn doorbell_stream(&self) -> io::Result<monoio::net::UnixStream> {
        monoio::net::UnixStream::from_std(self.doorbell.try_clone()?)
    }
}
