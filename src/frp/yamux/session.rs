//! Server side of one yamux session (frp-protocol.md §2.2-2.6).
//!
//! Owns: the stream table, the outgoing frame queue, flow control in both directions and
//! keepalive. Three loops run inside [`Session::run`] on the caller's task: the reader
//! (frames in), the writer (queued frames out) and the pinger. Streams are handles that
//! read and write through shared state; they never touch the socket.
//!
//! Rules frpc enforces and this module keeps:
//! - every SYN is ACKed at once (WINDOW_UPDATE+ACK), never lazily (§2.2);
//! - we never send more than the peer's window (Go answers with GO_AWAY(1), §2.3);
//! - we grant window back as the application consumes (else uploads stall at 256 KiB);
//! - pings are answered immediately (frpc drops the session after 10 s without a reply);
//! - the server never opens streams.
//!
//! Caps: per stream at most [`MAX_RECV_WINDOW_BYTES`] buffered, up to
//! [`CLAIMED_RECV_WINDOW_BYTES`] once it carries a user connection whose reader keeps up
//! (the peer may not send more than we granted); the outgoing queue blocks stream writers above
//! [`MAX_SEND_QUEUE_BYTES`]; at most [`MAX_UNCLAIMED_STREAMS`] streams per session that
//! carry no user connection yet (the only ones a peer can open and fill at will), and at
//! most [`MAX_STREAMS`] in all.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use super::frame::*;
use crate::runtime::signal::{Latch, Notify, WakerList};
use crate::tls::Transport;

/// Window every stream starts with in each direction (fixed by the protocol).
pub const INITIAL_WINDOW_BYTES: u32 = 256 * 1024;
/// Receive window we grant a stream that carries no user connection yet (parked work
/// streams, streams still sending their first message): what a peer can make us buffer
/// unasked, per stream.
pub const MAX_RECV_WINDOW_BYTES: u32 = 1024 * 1024;
/// Largest receive window of a stream that carries a user connection ([`Stream::claim`]):
/// frps's 6 MiB (frp-protocol §2.2). One window per round trip is a stream's ceiling: 6 MiB
/// keeps an ExApp or Docker engine behind a 50 ms link at ~120 MB/s per download where
/// 1 MiB would cap it at ~20 MB/s. The window grows there from [`MAX_RECV_WINDOW_BYTES`]
/// only while the reader finds the buffer empty (the window, not the reader, is the
/// bottleneck), doubling per window update: a reader that never keeps up stays at 1 MiB.
/// A user who stops reading a download after the kernel's socket buffers took the first
/// MiBs (loopback, or nginx in front) holds at most one window here, as in frps
/// (tests/no_leaks.rs: ~5 MiB of RSS each, where granting the whole window at the claim
/// cost 12 MiB); a user on a slow link keeps 1 MiB (1.4-2.3 MiB of RSS each). The `wan`
/// part of the frp bench measures the ramp: 32 MB/s against 33-35 with the whole window
/// at once. Growing only over a long PING round trip would hold loopback users to 1 MiB
/// but cost 5-9% of loopback tunnel throughput (frpc sends less per wakeup): not done.
pub const CLAIMED_RECV_WINDOW_BYTES: u32 = 6 * 1024 * 1024;
/// Largest DATA payload we send in one frame.
pub const MAX_DATA_FRAME_BYTES: usize = 64 * 1024;
/// Stream writers wait while this many bytes are queued for the socket.
pub const MAX_SEND_QUEUE_BYTES: usize = 512 * 1024;
/// Replies owed to the peer (PING ACKs, SYN ACKs, RSTs, window updates) also queue; past
/// this the session stops reading the peer's frames until the queue drains, so a peer
/// that sends but never reads cannot grow it without bound.
pub const MAX_READ_BACKLOG_BYTES: usize = 2 * MAX_SEND_QUEUE_BYTES;
/// Most DATA frames one [`Stream::fill_from`] lays out (one socket read of up to 256 KiB).
pub const MAX_FILL_FRAMES: usize = 4;
/// Streams per session once frpc has logged in: frpc pools at most 5, plus one per live
/// user connection. frps has no cap, and one ExApp may hold thousands of idle websockets
/// and pooled keep-alive upstreams, so this only stops a runaway peer; the buffered input
/// that matters is bounded by [`MAX_UNCLAIMED_STREAMS`] (a claimed stream's buffer is
/// drained by its relay at the user's pace, like any proxied connection).
pub const MAX_STREAMS: usize = 65_536;
/// Streams not yet claimed by a user connection ([`Stream::claim`]): parked work streams
/// and streams still sending their first message. Bounds what a peer can make us buffer
/// unasked to MAX_UNCLAIMED_STREAMS x the window.
pub const MAX_UNCLAIMED_STREAMS: usize = 1024;
/// Streams allowed before [`Session::mark_authenticated`]: frpc opens only its control
/// stream before LoginResp, so an unauthenticated peer cannot make us buffer more than
/// this many windows.
pub const PRE_LOGIN_MAX_STREAMS: usize = 2;
/// Accepted streams not yet taken by the application (yamux's AcceptBacklog).
pub const ACCEPT_BACKLOG: usize = 256;
/// Our keepalive ping interval and the time the peer has to answer (frps: 30 s / 10 s).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closed session may take to flush its last frames.
pub const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub enum YamuxError {
    Io(io::Error),
    BadHeader(HeaderError),
    DuplicateStream(u32),
    WindowExceeded { stream: u32, len: u32, window: u32 },
    GoAway(u32),
    KeepaliveTimeout,
}

impl std::fmt::Display for YamuxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            YamuxError::Io(e) => write!(f, "frpc session I/O: {e}"),
            YamuxError::BadHeader(h) => write!(
                f,
                "frpc sent an invalid yamux header ({h:?}); is the client using transport.tcpMux?"
            ),
            YamuxError::DuplicateStream(id) => write!(f, "frpc reopened live yamux stream {id}"),
            YamuxError::WindowExceeded {
                stream,
                len,
                window,
            } => write!(
                f,
                "frpc sent {len} bytes on stream {stream} with only {window} bytes of window"
            ),
            YamuxError::GoAway(code) => write!(f, "frpc sent yamux GO_AWAY({code})"),
            YamuxError::KeepaliveTimeout => {
                write!(
                    f,
                    "frpc did not answer a yamux ping within {KEEPALIVE_TIMEOUT:?}"
                )
            }
        }
    }
}

impl std::error::Error for YamuxError {}

impl From<HeaderError> for YamuxError {
    fn from(e: HeaderError) -> Self {
        YamuxError::BadHeader(e)
    }
}

impl From<io::Error> for YamuxError {
    fn from(e: io::Error) -> Self {
        YamuxError::Io(e)
    }
}

#[derive(Default)]
struct StreamState {
    /// Payload received and not read yet: a ring that grows by doubling up to the window
    /// and never past it, so a stream holds at most one window (a buffer read from the
    /// front while appended to at the back, as `BytesMut`, may double past it).
    recv: VecDeque<u8>,
    /// Bytes the peer may still send us.
    recv_window: u32,
    /// The window we grant in all (what `recv_window` is topped back up to).
    window: u32,
    /// Consumed since our last WINDOW_UPDATE.
    consumed: u32,
    send_window: u32,
    fin_recv: bool,
    fin_sent: bool,
    reset: bool,
    /// Carries a user connection: no longer counted in `Shared::unclaimed`.
    claimed: bool,
    /// Its reader found nothing buffered since our last WINDOW_UPDATE, and its sink has not
    /// blocked it since (window autotuning).
    starved: bool,
    /// Payload bytes its reader announced it will read and that have not arrived yet
    /// (counted in `Shared::expected`), capped by what the window lets the peer send.
    expect: usize,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

impl StreamState {
    /// Buffer a payload the window admitted (so `recv` stays within `window`).
    fn buffer(&mut self, bytes: &[u8]) {
        let need = self.recv.len() + bytes.len();
        if need > self.recv.capacity() {
            let target = (self.recv.capacity() * 2)
                .min(self.window as usize)
                .max(need);
            self.recv.reserve_exact(target - self.recv.len());
        }
        self.recv.extend(bytes);
    }

    /// Copy up to `buf.len()` buffered bytes into `buf` (without consuming them).
    fn copy_out(&self, buf: &mut [u8]) -> usize {
        let (front, back) = self.recv.as_slices();
        let n = self.recv.len().min(buf.len());
        let k = front.len().min(n);
        buf[..k].copy_from_slice(&front[..k]);
        buf[k..n].copy_from_slice(&back[..n - k]);
        n
    }

    /// Receive-window autotuning for a claimed stream, at a window update: doubled (up to
    /// [`CLAIMED_RECV_WINDOW_BYTES`]) if its reader found the buffer empty since the last
    /// update and has not been held up by its own sink since, i.e. it drains faster than
    /// the window lets data in. A stalled reader, or one slower than the tunnel (a user on a
    /// slow link), does not starve, so its window stays put. Returns the growth.
    fn grow_window(&mut self) -> u32 {
        if !std::mem::take(&mut self.starved) || !self.claimed {
            return 0;
        }
        let grown = self.window.saturating_mul(2).min(CLAIMED_RECV_WINDOW_BYTES);
        let growth = grown.saturating_sub(self.window);
        self.window += growth;
        growth
    }

    fn wake(&mut self) {
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }
}

type StreamCell = Rc<RefCell<StreamState>>;

/// The frame being received: its header and, for a stream frame, the stream (`None`: an
/// unknown stream, whose payload is dropped).
struct Inbound {
    h: Header,
    stream: Option<StreamCell>,
}

struct Shared {
    streams: RefCell<HashMap<u32, StreamCell>>,
    out: RefCell<Vec<u8>>,
    writer: Notify,
    space: WakerList,
    accepted: RefCell<VecDeque<(u32, StreamCell)>>,
    accept_wake: WakerList,
    /// Live streams not yet claimed (capped by [`MAX_UNCLAIMED_STREAMS`]).
    unclaimed: Cell<usize>,
    /// Sum of every stream's `expect`: how much the session reader may batch for.
    expected: Cell<usize>,
    closed: Latch,
    ping_seq: Cell<u32>,
    ping_outstanding: Cell<Option<u32>>,
    authenticated: Cell<bool>,
}

impl Shared {
    fn queue(&self, h: Header, payload: &[u8]) {
        let mut out = self.out.borrow_mut();
        out.extend_from_slice(&h.encode());
        out.extend_from_slice(payload);
        drop(out);
        self.writer.notify();
    }

    /// Set what `st`'s reader waits for, keeping [`Shared::expected`] the sum.
    fn set_expect(&self, st: &mut StreamState, bytes: u64) {
        // Not capped at a batch: a stream that just received a batch still expects the
        // rest of its body, so the reader's next wait is batched too.
        let v = usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .min(st.recv_window as usize);
        debug_assert!(self.expected.get() >= st.expect);
        self.expected
            .set(self.expected.get().saturating_sub(st.expect) + v);
        st.expect = v;
    }

    fn close(&self) {
        if self.closed.is_fired() {
            return;
        }
        self.closed.fire();
        for s in self.streams.borrow().values() {
            s.borrow_mut().wake();
        }
        self.writer.notify();
        self.space.wake_all();
        self.accept_wake.wake_all();
    }
}

/// A yamux session; cheap to clone (shared handle).
#[derive(Clone)]
pub struct Session {
    shared: Rc<Shared>,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// Whether `other` is a handle to this same session.
    pub fn same_as(&self, other: &Session) -> bool {
        Rc::ptr_eq(&self.shared, &other.shared)
    }

    pub fn new() -> Session {
        Session {
            shared: Rc::new(Shared {
                streams: RefCell::new(HashMap::new()),
                out: RefCell::new(Vec::new()),
                writer: Notify::default(),
                space: WakerList::default(),
                accepted: RefCell::new(VecDeque::new()),
                accept_wake: WakerList::default(),
                unclaimed: Cell::new(0),
                expected: Cell::new(0),
                closed: Latch::default(),
                ping_seq: Cell::new(0),
                ping_outstanding: Cell::new(None),
                authenticated: Cell::new(false),
            }),
        }
    }

    /// Drive the session until the peer leaves, a protocol error, or [`Session::close`].
    /// `Ok(())` = orderly end (EOF, GO_AWAY(0) or local close).
    /// `initial` = plaintext bytes already read from `t` (the sniffer's look-ahead).
    pub async fn run(&self, t: &Transport, initial: Vec<u8>) -> Result<(), YamuxError> {
        let reader = async {
            let r = monoio::select! {
                r = self.read_loop(t, initial) => r,
                r = self.keepalive_loop() => r,
                _ = self.shared.closed.wait() => Ok(()),
            };
            let protocol_error = matches!(
                r,
                Err(YamuxError::WindowExceeded { .. }
                    | YamuxError::DuplicateStream(_)
                    | YamuxError::BadHeader(_))
            );
            if protocol_error {
                // Tell Go why, as its own session would (§2.3).
                let h = Header::new(FrameType::GoAway, 0, 0, GOAWAY_PROTOCOL_ERROR);
                self.shared.queue(h, &[]);
            }
            self.shared.close();
            r
        };
        // The writer is never cancelled mid-chunk (that would corrupt the stream, e.g. a
        // refused LoginResp): after close it drains the queue, bounded by a deadline.
        let writer = async {
            let give_up = async {
                self.shared.closed.wait().await;
                monoio::time::sleep(CLOSE_FLUSH_TIMEOUT).await;
            };
            let r = monoio::select! {
                r = self.write_loop(t) => r,
                _ = give_up => Ok(()),
            };
            self.shared.close();
            r
        };
        let (read_result, write_result) = monoio::join!(reader, writer);
        self.shared.streams.borrow_mut().clear();
        self.shared.accepted.borrow_mut().clear();
        read_result.and(write_result)
    }

    pub fn close(&self) {
        self.shared.close();
    }

    /// The peer logged in: lift the pre-login stream cap.
    pub fn mark_authenticated(&self) {
        self.shared.authenticated.set(true);
    }

    pub fn is_authenticated(&self) -> bool {
        self.shared.authenticated.get()
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_fired()
    }

    pub async fn closed(&self) {
        self.shared.closed.wait().await
    }

    /// Next stream opened by the peer; `None` once the session is closed.
    pub async fn accept(&self) -> Option<Stream> {
        poll_fn(|cx| {
            if self.shared.closed.is_fired() {
                return Poll::Ready(None);
            }
            if let Some((id, state)) = self.shared.accepted.borrow_mut().pop_front() {
                return Poll::Ready(Some(Stream {
                    id,
                    state,
                    shared: self.shared.clone(),
                }));
            }
            self.shared.accept_wake.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Frames from the transport, decoded where the transport delivers them (a TLS
    /// record's plaintext, one socket read): a DATA payload is copied once, into its
    /// stream's buffer. `initial` = plaintext already read by the sniffer.
    async fn read_loop(&self, t: &Transport, initial: Vec<u8>) -> Result<(), YamuxError> {
        let mut dec = FrameDecoder::default();
        let mut cur: Option<Inbound> = None;
        dec.feed(&initial, |p| self.on_piece(&mut cur, p))?;
        drop(initial);
        let mut scratch = Vec::new();
        loop {
            self.backlog_drained().await;
            let want = self.shared.expected.get();
            let n = t
                .read_chunks(&mut scratch, want, |bytes| {
                    dec.feed(bytes, |p| self.on_piece(&mut cur, p))
                })
                .await?;
            if n == 0 {
                return Ok(());
            }
        }
    }

    /// Wait until the send queue is below [`MAX_READ_BACKLOG_BYTES`] (the writer takes
    /// the whole queue at once and then wakes `space`).
    async fn backlog_drained(&self) {
        poll_fn(|cx| {
            if self.shared.out.borrow().len() < MAX_READ_BACKLOG_BYTES {
                return Poll::Ready(());
            }
            self.shared.space.register(cx.waker());
            Poll::Pending
        })
        .await
    }

    fn on_piece(&self, cur: &mut Option<Inbound>, p: Piece<'_>) -> Result<(), YamuxError> {
        match p {
            Piece::Head(h) => *cur = Some(self.on_head(h)?),
            Piece::Payload(bytes) => {
                if let Some(Inbound {
                    stream: Some(cell), ..
                }) = cur
                {
                    self.on_payload(&mut cell.borrow_mut(), bytes);
                }
            }
            Piece::End => {
                if let Some(frame) = cur.take() {
                    self.on_end(frame)?;
                }
            }
        }
        Ok(())
    }

    /// A header: streams are opened and windows accounted for here, before the payload
    /// (whose whole length the peer must have had window for).
    fn on_head(&self, h: Header) -> Result<Inbound, YamuxError> {
        let stream = match h.ty {
            FrameType::Ping | FrameType::GoAway => None,
            FrameType::Data | FrameType::WindowUpdate => {
                // Checked before anything is buffered: no legal frame is larger than
                // what we ever grant.
                if h.ty == FrameType::Data && h.length > CLAIMED_RECV_WINDOW_BYTES {
                    return Err(YamuxError::WindowExceeded {
                        stream: h.stream_id,
                        len: h.length,
                        window: CLAIMED_RECV_WINDOW_BYTES,
                    });
                }
                if h.has(FLAG_SYN) {
                    self.open_stream(h)?;
                }
                // Unknown stream: its frame is dropped, not fatal (§2.5).
                let cell = self.shared.streams.borrow().get(&h.stream_id).cloned();
                if let Some(cell) = &cell {
                    let mut st = cell.borrow_mut();
                    if h.ty == FrameType::WindowUpdate {
                        st.send_window = st.send_window.saturating_add(h.length);
                    } else if h.length > st.recv_window {
                        return Err(YamuxError::WindowExceeded {
                            stream: h.stream_id,
                            len: h.length,
                            window: st.recv_window,
                        });
                    } else {
                        st.recv_window -= h.length;
                    }
                }
                cell
            }
        };
        Ok(Inbound { h, stream })
    }

    /// Part of a DATA payload: buffered for the stream's reader (unless it has ended).
    fn on_payload(&self, st: &mut StreamState, bytes: &[u8]) {
        if !st.fin_recv && !st.reset {
            st.buffer(bytes);
        }
        let left = st.expect.saturating_sub(bytes.len());
        self.shared.set_expect(st, left as u64);
        if let Some(w) = st.read_waker.take() {
            w.wake();
        }
    }

    /// A frame is complete: its flags take effect (after its payload).
    fn on_end(&self, frame: Inbound) -> Result<(), YamuxError> {
        let h = frame.h;
        match h.ty {
            FrameType::Ping => {
                if h.has(FLAG_SYN) {
                    self.shared
                        .queue(Header::new(FrameType::Ping, FLAG_ACK, 0, h.length), &[]);
                } else if h.has(FLAG_ACK) && self.shared.ping_outstanding.get() == Some(h.length) {
                    self.shared.ping_outstanding.set(None);
                }
            }
            FrameType::GoAway if h.length == GOAWAY_NORMAL => self.shared.close(),
            FrameType::GoAway => return Err(YamuxError::GoAway(h.length)),
            FrameType::Data | FrameType::WindowUpdate => {
                let Some(cell) = frame.stream else {
                    return Ok(());
                };
                let mut st = cell.borrow_mut();
                if h.has(FLAG_FIN) {
                    st.fin_recv = true;
                    self.shared.set_expect(&mut st, 0);
                }
                if h.has(FLAG_RST) {
                    st.reset = true;
                    st.recv.clear();
                    self.shared.set_expect(&mut st, 0);
                }
                st.wake();
            }
        }
        Ok(())
    }

    fn open_stream(&self, h: Header) -> Result<(), YamuxError> {
        let id = h.stream_id;
        if self.shared.streams.borrow().contains_key(&id) {
            return Err(YamuxError::DuplicateStream(id));
        }
        let cap = if self.shared.authenticated.get() {
            MAX_STREAMS
        } else {
            PRE_LOGIN_MAX_STREAMS
        };
        let full = self.shared.streams.borrow().len() >= cap
            || self.shared.unclaimed.get() >= MAX_UNCLAIMED_STREAMS
            || self.shared.accepted.borrow().len() >= ACCEPT_BACKLOG;
        if full || id == 0 {
            self.shared
                .queue(Header::new(FrameType::WindowUpdate, FLAG_RST, id, 0), &[]);
            return Ok(());
        }
        // The SYN frame's own delta is added by `on_head` like any other update.
        let cell = Rc::new(RefCell::new(StreamState {
            recv_window: MAX_RECV_WINDOW_BYTES,
            window: MAX_RECV_WINDOW_BYTES,
            send_window: INITIAL_WINDOW_BYTES,
            ..Default::default()
        }));
        self.shared.streams.borrow_mut().insert(id, cell.clone());
        self.shared.unclaimed.set(self.shared.unclaimed.get() + 1);
        // ACK at once (frpc's 75 s StreamOpenTimeout), granting our full receive window.
        let delta = MAX_RECV_WINDOW_BYTES - INITIAL_WINDOW_BYTES;
        self.shared.queue(
            Header::new(FrameType::WindowUpdate, FLAG_ACK, id, delta),
            &[],
        );
        self.shared.accepted.borrow_mut().push_back((id, cell));
        self.shared.accept_wake.wake_all();
        Ok(())
    }

    async fn write_loop(&self, t: &Transport) -> Result<(), YamuxError> {
        let mut spare = Vec::new();
        loop {
            let chunk = std::mem::replace(&mut *self.shared.out.borrow_mut(), spare);
            if chunk.is_empty() {
                spare = chunk;
                if self.shared.closed.is_fired() {
                    return Ok(());
                }
                self.shared.writer.wait().await;
                continue;
            }
            self.shared.space.wake_all();
            t.write_all(&chunk).await?;
            spare = chunk;
            spare.clear();
            spare.shrink_to(2 * MAX_SEND_QUEUE_BYTES);
        }
    }

    async fn keepalive_loop(&self) -> Result<(), YamuxError> {
        loop {
            monoio::time::sleep(KEEPALIVE_INTERVAL).await;
            let seq = self.shared.ping_seq.get();
            self.shared.ping_seq.set(seq.wrapping_add(1));
            self.shared.ping_outstanding.set(Some(seq));
            self.shared
                .queue(Header::new(FrameType::Ping, FLAG_SYN, 0, seq), &[]);
            monoio::time::sleep(KEEPALIVE_TIMEOUT).await;
            if self.shared.ping_outstanding.get() == Some(seq) {
                return Err(YamuxError::KeepaliveTimeout);
            }
        }
    }
}

/// What [`Stream::fill_from`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// This many bytes were queued for the peer.
    Queued(usize),
    /// The source had nothing yet: wait for it to become readable.
    WouldBlock,
    /// No window or no queue room: wait with [`Stream::send_room`].
    NoRoom,
    /// The source reached its end.
    End,
}

/// What [`Stream::drain_to`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// This many bytes went to the sender.
    Sent(usize),
    /// Nothing buffered yet: wait with [`Stream::readable_expecting`].
    Empty,
    /// The sender could take nothing now (its socket is full).
    Blocked,
    /// FIN received (or the session ended) and everything was taken.
    End,
}

/// One stream opened by frpc. Reads and writes take `&self`, so a relay can run both
/// directions at once. Dropping it sends FIN (if not yet sent) and forgets the stream.
pub struct Stream {
    id: u32,
    state: StreamCell,
    shared: Rc<Shared>,
}

impl Stream {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Read payload; `Ok(0)` = FIN received or session closed.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_expecting(buf, 0).await
    }

    /// [`Stream::read`] for a caller that will read `remaining` more bytes (a body's
    /// remaining length, this read included): the session reader may then wait for a batch
    /// of them instead of waking per frame (`net::batch`).
    pub async fn read_expecting(&self, buf: &mut [u8], remaining: u64) -> io::Result<usize> {
        // A read given up while pending (a timeout) withdraws its announcement: the session
        // must not keep batching for bytes nobody is waiting for.
        let withdraw = Withdraw(self);
        let r = self.poll_read(buf, remaining).await;
        std::mem::forget(withdraw);
        r
    }

    async fn poll_read(&self, buf: &mut [u8], remaining: u64) -> io::Result<usize> {
        poll_fn(|cx| {
            let mut st = self.state.borrow_mut();
            if !st.recv.is_empty() {
                let n = st.copy_out(buf);
                self.consumed(&mut st, n, remaining);
                return Poll::Ready(Ok(n));
            }
            if st.reset {
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            if st.fin_recv || self.shared.closed.is_fired() {
                return Poll::Ready(Ok(0));
            }
            self.shared.set_expect(&mut st, remaining);
            st.starved = true;
            st.read_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// `n` buffered bytes were taken by the reader, which will read `remaining` in all
    /// (them included): window granted back, batching announcement updated.
    fn consumed(&self, st: &mut StreamState, n: usize, remaining: u64) {
        st.recv.drain(..n);
        st.consumed += n as u32;
        if st.consumed >= st.window / 2 && !st.fin_recv {
            let delta = std::mem::take(&mut st.consumed) + st.grow_window();
            st.recv_window += delta;
            self.shared
                .queue(Header::new(FrameType::WindowUpdate, 0, self.id, delta), &[]);
        }
        let still = remaining.saturating_sub((n + st.recv.len()) as u64);
        self.shared.set_expect(st, still);
    }

    /// Give up to `max` buffered bytes to `send` where they lie (a nonblocking socket send:
    /// it returns how many it took, `None` = none now), instead of copying them into a
    /// buffer of the caller's first. Accounting as for a read; never waits.
    pub fn drain_to(
        &self,
        max: usize,
        remaining: u64,
        send: impl FnOnce(&[u8]) -> io::Result<Option<usize>>,
    ) -> io::Result<Drain> {
        let mut st = self.state.borrow_mut();
        if st.recv.is_empty() {
            if st.reset {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            if st.fin_recv || self.shared.closed.is_fired() {
                return Ok(Drain::End);
            }
            st.starved = true;
            return Ok(Drain::Empty);
        }
        // The ring's first contiguous part; a wrapped rest goes on the caller's next call.
        let (front, _) = st.recv.as_slices();
        let n = front.len().min(max);
        match send(&front[..n])? {
            Some(0) => Err(io::ErrorKind::WriteZero.into()),
            Some(sent) => {
                self.consumed(&mut st, sent, remaining);
                Ok(Drain::Sent(sent))
            }
            None => {
                // The reader's sink is the bottleneck now, not the window: a wait for data
                // before this (e.g. before the first byte arrived) says nothing any more.
                st.starved = false;
                Ok(Drain::Blocked)
            }
        }
    }

    /// [`Stream::readable`] for a reader that will read `remaining` bytes: announced to
    /// the session while waiting, so its socket reads are batched as for a read.
    pub async fn readable_expecting(&self, remaining: u64) {
        let withdraw = Withdraw(self);
        poll_fn(|cx| {
            let mut st = self.state.borrow_mut();
            if !st.recv.is_empty() || st.reset || st.fin_recv || self.shared.closed.is_fired() {
                return Poll::Ready(());
            }
            self.shared.set_expect(&mut st, remaining);
            st.starved = true;
            st.read_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        std::mem::forget(withdraw);
    }

    /// Wait until a read would not block (payload, FIN, reset or session end), without
    /// holding a buffer: an idle relay direction waits here.
    pub async fn readable(&self) {
        poll_fn(|cx| {
            let mut st = self.state.borrow_mut();
            if !st.recv.is_empty() || st.reset || st.fin_recv || self.shared.closed.is_fired() {
                return Poll::Ready(());
            }
            st.starved = true;
            st.read_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Write all of `data`, waiting for window and queue space.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = poll_fn(|cx| self.poll_send(cx.waker(), data)).await?;
            data = &data[n..];
        }
        Ok(())
    }

    fn poll_send(&self, waker: &Waker, data: &[u8]) -> Poll<io::Result<usize>> {
        let mut st = self.state.borrow_mut();
        if let Err(e) = self.can_send(&st) {
            return Poll::Ready(Err(e));
        }
        if !self.has_room(&mut st, Some(waker)) {
            return Poll::Pending;
        }
        let n = data
            .len()
            .min(st.send_window as usize)
            .min(MAX_DATA_FRAME_BYTES);
        st.send_window -= n as u32;
        self.shared.queue(
            Header::new(FrameType::Data, 0, self.id, n as u32),
            &data[..n],
        );
        Poll::Ready(Ok(n))
    }

    /// Why nothing can be sent on this stream any more, if so.
    fn can_send(&self, st: &StreamState) -> io::Result<()> {
        if self.shared.closed.is_fired() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if st.reset {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        if st.fin_sent {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        Ok(())
    }

    /// True if the peer's window and our send queue both have room; otherwise `waker`, if
    /// given, is registered for whichever is missing.
    fn has_room(&self, st: &mut StreamState, waker: Option<&Waker>) -> bool {
        if st.send_window == 0 {
            if let Some(w) = waker {
                st.write_waker = Some(w.clone());
            }
            return false;
        }
        if self.shared.out.borrow().len() >= MAX_SEND_QUEUE_BYTES {
            if let Some(w) = waker {
                self.shared.space.register(w);
            }
            return false;
        }
        true
    }

    /// Wait until [`Stream::fill_from`] can queue bytes (window and queue room), or until
    /// the stream can take none any more (`fill_from` then says why).
    pub async fn send_room(&self) {
        poll_fn(|cx| {
            let mut st = self.state.borrow_mut();
            if self.can_send(&st).is_err() || self.has_room(&mut st, Some(cx.waker())) {
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await
    }

    /// Let `read` put up to `max` bytes straight into the session's send queue, as DATA
    /// frames of at most [`MAX_DATA_FRAME_BYTES`]: the slots it gets are the payloads of
    /// up to [`MAX_FILL_FRAMES`] frames laid out back to back with room for their headers,
    /// which are written once `read` says how much it placed. A socket read this way
    /// reaches frpc with one copy fewer than through [`Stream::write_all`]. `read` returns
    /// `Ok(None)` for "would block" and `Ok(Some(0))` for end of input.
    pub fn fill_from<R>(&self, max: usize, read: R) -> io::Result<Fill>
    where
        R: FnOnce(&mut [&mut [MaybeUninit<u8>]]) -> io::Result<Option<usize>>,
    {
        let mut st = self.state.borrow_mut();
        self.can_send(&st)?;
        if !self.has_room(&mut st, None) {
            return Ok(Fill::NoRoom);
        }
        let cap = max
            .min(st.send_window as usize)
            .min(MAX_FILL_FRAMES * MAX_DATA_FRAME_BYTES);
        if cap == 0 {
            return Ok(Fill::Queued(0));
        }
        let frames = cap.div_ceil(MAX_DATA_FRAME_BYTES);
        let mut out = self.shared.out.borrow_mut();
        let base = out.len();
        out.reserve(cap + frames * HEADER_BYTES);
        let mut slots: [&mut [MaybeUninit<u8>]; MAX_FILL_FRAMES] = Default::default();
        let mut rest = &mut out.spare_capacity_mut()[..cap + frames * HEADER_BYTES];
        let mut left = cap;
        for slot in slots.iter_mut().take(frames) {
            let take = left.min(MAX_DATA_FRAME_BYTES);
            let (payload, tail) = std::mem::take(&mut rest)[HEADER_BYTES..].split_at_mut(take);
            *slot = payload;
            rest = tail;
            left -= take;
        }
        let n = match read(&mut slots[..frames])? {
            None => return Ok(Fill::WouldBlock),
            Some(0) => return Ok(Fill::End),
            Some(n) => n.min(cap),
        };
        // Headers for the frames the bytes landed in; only the last one can be short.
        let mut pos = base;
        let mut placed = n;
        while placed > 0 {
            let len = placed.min(MAX_DATA_FRAME_BYTES);
            let header = Header::new(FrameType::Data, 0, self.id, len as u32).encode();
            let spare = out.spare_capacity_mut();
            for (dst, b) in spare[pos - base..pos - base + HEADER_BYTES]
                .iter_mut()
                .zip(header)
            {
                dst.write(b);
            }
            pos += HEADER_BYTES + len;
            placed -= len;
        }
        // SAFETY: every byte of [base, pos) is initialised: the headers just written and
        // the first `n` payload bytes, which `read` reported as placed in slot order.
        unsafe { out.set_len(pos) };
        drop(out);
        st.send_window -= n as u32;
        self.shared.writer.notify();
        Ok(Fill::Queued(n))
    }

    /// The peer has ended or reset this stream, or the session is gone: nothing useful can
    /// come from it any more (used to skip dead parked work streams).
    pub fn is_finished(&self) -> bool {
        let st = self.state.borrow();
        st.fin_recv || st.reset || self.shared.closed.is_fired()
    }

    /// Received bytes not read yet (a stream about to be reused must have none).
    pub fn has_buffered(&self) -> bool {
        !self.state.borrow().recv.is_empty()
    }

    /// This stream now carries a user connection: it stops counting against
    /// [`MAX_UNCLAIMED_STREAMS`], and its window may grow to [`CLAIMED_RECV_WINDOW_BYTES`]
    /// while its reader keeps up. Idempotent.
    pub fn claim(&self) {
        let mut st = self.state.borrow_mut();
        if st.claimed {
            return;
        }
        st.claimed = true;
        self.shared
            .unclaimed
            .set(self.shared.unclaimed.get().saturating_sub(1));
    }

    /// Half-close our side (WINDOW_UPDATE+FIN). frp closes both ways anyway (§7.6).
    pub fn close_write(&self) {
        let mut st = self.state.borrow_mut();
        if st.fin_sent || st.reset || self.shared.closed.is_fired() {
            return;
        }
        st.fin_sent = true;
        self.shared.queue(
            Header::new(FrameType::WindowUpdate, FLAG_FIN, self.id, 0),
            &[],
        );
    }
}

/// Clears a stream's read announcement when dropped (see [`Stream::read_expecting`]).
struct Withdraw<'a>(&'a Stream);

impl Drop for Withdraw<'_> {
    fn drop(&mut self) {
        let s = self.0;
        s.shared.set_expect(&mut s.state.borrow_mut(), 0);
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.close_write();
        self.claim();
        self.shared.set_expect(&mut self.state.borrow_mut(), 0);
        self.shared.streams.borrow_mut().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that floods PINGs and never reads: the session stops reading once the ACKs
    /// it owes pass the backlog cap, so the peer's writes stall and the queue stays small.
    #[test]
    fn a_peer_that_never_reads_cannot_grow_the_reply_queue() {
        use monoio::io::AsyncWriteRentExt;
        let pings: Vec<u8> = (0..65_536u32)
            .flat_map(|i| Header::new(FrameType::Ping, FLAG_SYN, 0, i).encode())
            .collect();
        on_both_drivers(|| {
            let pings = pings.clone();
            async move {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                let mut c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
                let (srv, _) = l.accept().await.unwrap();
                let t = Transport::plain(srv, Vec::new());
                let session = Session::new();
                let flood = async {
                    let mut buf = pings;
                    for round in 0..128 {
                        // 128 x 768 KiB = 96 MiB of PINGs if nothing pushes back.
                        let write = c.write_all(buf);
                        match crate::runtime::time::limit(Duration::from_secs(1), write).await {
                            Ok((r, b)) => {
                                r.unwrap();
                                buf = b;
                            }
                            Err(_) => return round,
                        }
                    }
                    128
                };
                let rounds = monoio::select! {
                    _ = session.run(&t, Vec::new()) => panic!("session ended"),
                    r = flood => r,
                };
                assert!(rounds < 128, "the peer's writes never stalled");
                let queued = session.shared.out.borrow().len();
                assert!(
                    queued <= MAX_READ_BACKLOG_BYTES + crate::net::batch::MAX_BATCH_BYTES,
                    "{queued} bytes of replies queued"
                );
            }
        });
    }
    use crate::net::io as nio;
    use crate::runtime::on_both_drivers;
    use monoio::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    /// A connected pair: (server-side transport, raw client socket).
    async fn pair() -> (Transport, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        (Transport::plain(s, Vec::new()), c)
    }

    fn frame(ty: FrameType, flags: u16, id: u32, len: u32) -> Vec<u8> {
        Header::new(ty, flags, id, len).encode().to_vec()
    }

    /// Read frames from the raw client until `want` DATA bytes arrived; returns the
    /// headers seen (data payloads are counted, not kept).
    async fn read_frames(c: &TcpStream, buf: &mut Vec<u8>, want_data: usize) -> Vec<Header> {
        let mut seen = Vec::new();
        let mut data = 0;
        loop {
            while buf.len() >= HEADER_BYTES {
                let h = Header::parse(buf[..HEADER_BYTES].try_into().unwrap()).unwrap();
                let need = HEADER_BYTES
                    + if h.ty == FrameType::Data {
                        h.length as usize
                    } else {
                        0
                    };
                if buf.len() < need {
                    break;
                }
                if h.ty == FrameType::Data {
                    data += h.length as usize;
                }
                buf.drain(..need);
                seen.push(h);
            }
            if data >= want_data && !seen.is_empty() {
                return seen;
            }
            assert!(
                nio::read_some(c, buf, 64 * 1024).await.unwrap() > 0,
                "server closed"
            );
        }
    }

    #[test]
    fn never_sends_beyond_the_peer_window_and_resumes_on_update() {
        on_both_drivers(|| async {
            let (t, c) = pair().await;
            let session = Session::new();
            let app = async {
                let s = session.accept().await.unwrap();
                s.write_all(&vec![7u8; 1024 * 1024]).await.unwrap();
                std::future::pending::<()>().await;
            };
            let client = async {
                // SYN granting 64 KiB more: the server may send exactly 256 + 64 KiB.
                let syn_delta = 64 * 1024;
                nio::write_all(&c, &frame(FrameType::WindowUpdate, FLAG_SYN, 1, syn_delta))
                    .await
                    .unwrap();
                let mut buf = Vec::new();
                let first =
                    read_frames(&c, &mut buf, (INITIAL_WINDOW_BYTES + syn_delta) as usize).await;
                assert_eq!(
                    first[0],
                    Header::new(
                        FrameType::WindowUpdate,
                        FLAG_ACK,
                        1,
                        MAX_RECV_WINDOW_BYTES - INITIAL_WINDOW_BYTES
                    )
                );
                let data: u32 = first
                    .iter()
                    .filter(|h| h.ty == FrameType::Data)
                    .map(|h| h.length)
                    .sum();
                monoio::time::sleep(Duration::from_millis(100)).await;
                let more = nio::try_recv(&c, &mut [0u8; 1]).unwrap();
                assert!(
                    data == INITIAL_WINDOW_BYTES + syn_delta && buf.is_empty() && more.is_none(),
                    "server overran the window: {data} bytes"
                );
                let rest = 1024 * 1024 - INITIAL_WINDOW_BYTES - syn_delta;
                nio::write_all(&c, &frame(FrameType::WindowUpdate, 0, 1, rest))
                    .await
                    .unwrap();
                read_frames(&c, &mut buf, rest as usize).await;
            };
            monoio::select! {
                _ = session.run(&t, Vec::new()) => panic!("session ended"),
                _ = app => {},
                _ = client => {},
            }
        });
    }

    /// `read_expecting` feeds the session's batching total (what the reader may wait for),
    /// arriving frames and FIN take it back, and a small frame for another stream is still
    /// delivered while a bulk reader expects more.
    #[test]
    fn announced_reads_are_summed_for_batching_and_released() {
        on_both_drivers(|| async {
            let (t, c) = pair().await;
            let session = Session::new();
            let expected = || session.shared.expected.get();
            let checked = Cell::new(false);
            let app = async {
                let bulk = session.accept().await.unwrap();
                let small = session.accept().await.unwrap();
                let mut buf = vec![0u8; 256 * 1024];
                let mut got = 0;
                while got < 48 * 1024 {
                    let n = bulk
                        .read_expecting(&mut buf, 200_000 - got as u64)
                        .await
                        .unwrap();
                    got += n;
                }
                assert_eq!(got, 48 * 1024);
                // Still announced: the rest of the 200,000-byte body. An idle reader waits
                // for readiness without a buffer.
                small.readable().await;
                let n = small.read(&mut buf).await.unwrap();
                assert_eq!(&buf[..n], b"hello");
                assert_eq!(bulk.state.borrow().expect, 200_000 - 48 * 1024);
                assert_eq!(expected(), 200_000 - 48 * 1024);
                // A read given up while pending withdraws its announcement.
                let gave_up = crate::runtime::time::limit(
                    Duration::from_millis(5),
                    bulk.read_expecting(&mut buf, 9),
                )
                .await;
                assert!(gave_up.is_err());
                assert_eq!(expected(), 0);
                checked.set(true);
                // FIN: nothing more can come (and a readiness wait sees it).
                bulk.readable().await;
                assert_eq!(bulk.read_expecting(&mut buf, 1).await.unwrap(), 0);
                assert_eq!(expected(), 0);
                drop(bulk);
                assert_eq!(expected(), 0);
            };
            let client = async {
                for id in [1, 3] {
                    nio::write_all(&c, &frame(FrameType::WindowUpdate, FLAG_SYN, id, 0))
                        .await
                        .unwrap();
                }
                while expected() == 0 {
                    monoio::time::sleep(Duration::from_millis(1)).await;
                }
                assert_eq!(expected(), 200_000, "the pending reader announced its body");
                for _ in 0..3 {
                    let mut f = frame(FrameType::Data, 0, 1, 16 * 1024);
                    f.extend_from_slice(&[9u8; 16 * 1024]);
                    nio::write_all(&c, &f).await.unwrap();
                }
                let mut f = frame(FrameType::Data, 0, 3, 5);
                f.extend_from_slice(b"hello");
                nio::write_all(&c, &f).await.unwrap();
                while !checked.get() {
                    monoio::time::sleep(Duration::from_millis(1)).await;
                }
                nio::write_all(&c, &frame(FrameType::WindowUpdate, FLAG_FIN, 1, 0))
                    .await
                    .unwrap();
                std::future::pending::<()>().await;
            };
            monoio::select! {
                _ = session.run(&t, Vec::new()) => panic!("session ended"),
                _ = app => {},
                _ = client => {},
            }
        });
    }

    #[test]
    fn consumed_data_is_granted_back_and_fin_reads_as_eof() {
        on_both_drivers(|| async {
            let (t, c) = pair().await;
            let session = Session::new();
            let total = 3 * MAX_RECV_WINDOW_BYTES as usize;
            let app = async {
                let s = session.accept().await.unwrap();
                let mut buf = vec![0u8; 100_000];
                let mut got = 0;
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                assert_eq!(got, total);
            };
            let client = async {
                send_within_window(&c, total).await;
                nio::write_all(&c, &frame(FrameType::WindowUpdate, FLAG_FIN, 1, 0))
                    .await
                    .unwrap();
                std::future::pending::<()>().await;
            };
            monoio::select! {
                _ = session.run(&t, Vec::new()) => panic!("session ended"),
                _ = app => {},
                _ = client => {},
            }
        });
    }

    /// The client side of a flowing download: sends `total` bytes on stream 1 as fast as
    /// the granted window allows; returns the largest window it ever had open at once.
    async fn send_within_window(c: &TcpStream, total: usize) -> usize {
        nio::write_all(c, &frame(FrameType::WindowUpdate, FLAG_SYN, 1, 0))
            .await
            .unwrap();
        let (mut window, mut widest, mut sent) = (0usize, 0usize, 0usize);
        let mut buf = Vec::new();
        let chunk = vec![5u8; 64 * 1024];
        while sent < total {
            while window == 0 {
                for h in read_frames(c, &mut buf, 0).await {
                    if h.ty == FrameType::WindowUpdate {
                        // The ACK grants on top of the initial 256 KiB.
                        let base = if h.has(FLAG_ACK) {
                            INITIAL_WINDOW_BYTES
                        } else {
                            0
                        };
                        window += (base + h.length) as usize;
                    }
                }
                widest = widest.max(window);
            }
            let n = chunk.len().min(window).min(total - sent);
            nio::write_all(c, &frame(FrameType::Data, 0, 1, n as u32))
                .await
                .unwrap();
            nio::write_all(c, &chunk[..n]).await.unwrap();
            (window, sent) = (window - n, sent + n);
        }
        widest
    }

    /// A claimed stream whose reader keeps up grows to frps's 6 MiB window (doubling at
    /// each update), so a long link is not held to 1 MiB per round trip.
    #[test]
    fn a_claimed_stream_with_a_fast_reader_grows_to_frps_window() {
        on_both_drivers(|| async {
            let (t, c) = pair().await;
            let session = Session::new();
            let total = 32 << 20;
            let app = async {
                let s = session.accept().await.unwrap();
                s.claim();
                let mut buf = vec![0u8; 256 * 1024];
                let mut got = 0;
                while got < total {
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0, "stream ended after {got} bytes");
                    got += n;
                }
                std::future::pending::<()>().await;
            };
            let widest = monoio::select! {
                r = session.run(&t, Vec::new()) => panic!("session ended: {r:?}"),
                _ = app => unreachable!(),
                w = send_within_window(&c, total) => w,
            };
            assert!(
                widest > 4 << 20 && widest <= CLAIMED_RECV_WINDOW_BYTES as usize,
                "widest window {widest}"
            );
        });
    }

    /// A claimed stream drained into a sink slower than the tunnel (a user on a slow link)
    /// keeps the 1 MiB window although its reader waited for the first bytes: the window is
    /// not what holds it back, so growing it would only buffer more here.
    #[test]
    fn a_claimed_stream_drained_into_a_slow_sink_stays_at_one_mib() {
        on_both_drivers(|| async {
            let (t, c) = pair().await;
            let session = Session::new();
            let total = 4 << 20;
            let checked = Cell::new(false);
            let app = async {
                let s = session.accept().await.unwrap();
                s.claim();
                let mut got = 0;
                // The sink takes one 16 KiB piece, then is full for a millisecond.
                let mut open = true;
                while got < total {
                    let take = |bytes: &[u8]| {
                        Ok(std::mem::take(&mut open).then(|| bytes.len().min(16 * 1024)))
                    };
                    match s.drain_to(usize::MAX, 0, take).unwrap() {
                        Drain::Sent(n) => got += n,
                        Drain::Empty => s.readable().await,
                        Drain::Blocked => {
                            monoio::time::sleep(Duration::from_millis(1)).await;
                            open = true;
                        }
                        Drain::End => panic!("stream ended after {got} bytes"),
                    }
                }
                let held = s.state.borrow().recv.capacity();
                assert!(
                    held <= MAX_RECV_WINDOW_BYTES as usize,
                    "receive buffer of {held} bytes for a 1 MiB window"
                );
                checked.set(true);
                std::future::pending::<()>().await;
            };
            let widest = monoio::select! {
                r = session.run(&t, Vec::new()) => panic!("session ended: {r:?}"),
                _ = app => unreachable!(),
                w = async {
                    let widest = send_within_window(&c, total).await;
                    while !checked.get() {
                        monoio::time::sleep(Duration::from_millis(1)).await;
                    }
                    widest
                } => w,
            };
            assert_eq!(widest, MAX_RECV_WINDOW_BYTES as usize, "widest window");
        });
    }

    /// A claimed stream whose reader stops keeps the 1 MiB window: that is all a stalled
    /// user costs in buffer (frps: 6 MiB).
    #[test]
    fn a_claimed_stream_with_a_stalled_reader_stays_at_one_mib() {
        on_both_drivers(|| async {
            let (t, c) = pair().await;
            let session = Session::new();
            let app = async {
                let s = session.accept().await.unwrap();
                s.claim();
                std::future::pending::<()>().await;
            };
            let client = async {
                nio::write_all(&c, &frame(FrameType::WindowUpdate, FLAG_SYN, 1, 0))
                    .await
                    .unwrap();
                let mut buf = Vec::new();
                let ack = read_frames(&c, &mut buf, 0).await;
                assert_eq!(ack[0].length, MAX_RECV_WINDOW_BYTES - INITIAL_WINDOW_BYTES);
                let chunk = vec![3u8; 64 * 1024];
                for _ in 0..MAX_RECV_WINDOW_BYTES as usize / chunk.len() {
                    nio::write_all(&c, &frame(FrameType::Data, 0, 1, chunk.len() as u32))
                        .await
                        .unwrap();
                    nio::write_all(&c, &chunk).await.unwrap();
                }
                // Nothing read, nothing granted: one more byte is a window violation.
                nio::write_all(&c, &frame(FrameType::Data, 0, 1, 1))
                    .await
                    .unwrap();
                nio::write_all(&c, b"x").await.unwrap();
                std::future::pending::<()>().await;
            };
            let r = monoio::select! {
                r = session.run(&t, Vec::new()) => r,
                _ = app => unreachable!(),
                _ = client => unreachable!(),
            };
            assert!(
                matches!(r, Err(YamuxError::WindowExceeded { window: 0, .. })),
                "{r:?}"
            );
        });
    }

    /// Frames cut anywhere by the transport (inside a header, inside a payload) arrive
    /// intact: the payload byte-exact and in order, the ping answered, the FIN seen.
    #[test]
    fn frames_cut_at_any_byte_arrive_intact() {
        on_both_drivers(|| async {
            let (t, c) = pair().await;
            let session = Session::new();
            let payload: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
            let mut wire = frame(FrameType::WindowUpdate, FLAG_SYN, 1, 0);
            wire.extend_from_slice(&frame(FrameType::Data, 0, 1, payload.len() as u32));
            wire.extend_from_slice(&payload);
            wire.extend_from_slice(&frame(FrameType::Ping, FLAG_SYN, 0, 77));
            wire.extend_from_slice(&frame(FrameType::WindowUpdate, FLAG_FIN, 1, 0));
            let expected = payload.clone();
            let app = async {
                let s = session.accept().await.unwrap();
                let mut got = Vec::new();
                let mut buf = vec![0u8; 7_000];
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                assert!(got == expected, "payload differs ({} bytes)", got.len());
            };
            let client = async {
                // Cuts at 5, 12+3, inside the payload, and across the last two headers;
                // each piece is its own socket read on the session side.
                let cuts = [
                    5,
                    15,
                    16,
                    30,
                    9_000,
                    40_020,
                    40_030,
                    wire.len() - 5,
                    wire.len(),
                ];
                let mut at = 0;
                for end in cuts {
                    nio::write_all(&c, &wire[at..end]).await.unwrap();
                    at = end;
                    monoio::time::sleep(Duration::from_millis(5)).await;
                }
                let mut buf = Vec::new();
                loop {
                    let seen = read_frames(&c, &mut buf, 0).await;
                    if seen.contains(&Header::new(FrameType::Ping, FLAG_ACK, 0, 77)) {
                        break;
                    }
                }
            };
            let app_and_ping = async { monoio::join!(app, client) };
            monoio::select! {
                _ = session.run(&t, Vec::new()) => panic!("session ended"),
                _ = app_and_ping => {},
                _ = monoio::time::sleep(Duration::from_secs(10)) => panic!("timed out"),
            }
        });
    }

    /// `drain_to` sends buffered bytes on where they lie: a full receiver makes it report
    /// `Blocked` (nothing lost), window is granted back as bytes leave, and after the FIN
    /// and the last byte it reports `End`.
    #[test]
    fn drain_to_sends_buffered_bytes_and_waits_for_room() {
        on_both_drivers(|| async {
            let (t, c) = pair().await;
            let (sink_tx, sink_rx) = {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                let tx = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
                let (rx, _) = l.accept().await.unwrap();
                (tx, rx)
            };
            crate::net::io::set_nonblocking(&sink_tx).unwrap();
            // Small socket buffers, so the unread receiver fills up well before 1 MiB.
            for (fd, opt) in [
                (sink_tx.as_raw_fd(), libc::SO_SNDBUF),
                (sink_rx.as_raw_fd(), libc::SO_RCVBUF),
            ] {
                let v: libc::c_int = 16 * 1024;
                // SAFETY: setsockopt on an open socket with a c_int option value.
                let r = unsafe {
                    libc::setsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        opt,
                        (&v as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
                assert_eq!(r, 0);
            }
            let session = Session::new();
            let total = MAX_RECV_WINDOW_BYTES as usize;
            let app = async {
                let s = session.accept().await.unwrap();
                let (mut sent, mut blocked) = (0usize, 0usize);
                loop {
                    let r = s.drain_to(usize::MAX, (total - sent) as u64, |b| {
                        nio::try_send(&sink_tx, b)
                    });
                    match r.unwrap() {
                        Drain::Sent(n) => sent += n,
                        Drain::Empty => s.readable_expecting((total - sent) as u64).await,
                        Drain::Blocked => {
                            blocked += 1;
                            sink_tx.writable(false).await.unwrap();
                        }
                        Drain::End => break,
                    }
                }
                assert_eq!(sent, total);
                assert!(blocked > 0, "the unread receiver never filled up");
                drop(sink_tx);
            };
            let sink = async {
                // Read nothing until the sender has had time to fill the socket.
                monoio::time::sleep(Duration::from_millis(300)).await;
                let mut got = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match nio::try_recv(&sink_rx, &mut buf).unwrap() {
                        Some(0) => break,
                        Some(n) => got.extend_from_slice(&buf[..n]),
                        None => sink_rx.readable(false).await.unwrap(),
                    }
                }
                assert_eq!(got.len(), total);
                assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 253) as u8));
            };
            let client = async {
                nio::write_all(&c, &frame(FrameType::WindowUpdate, FLAG_SYN, 1, 0))
                    .await
                    .unwrap();
                let data: Vec<u8> = (0..total).map(|i| (i % 253) as u8).collect();
                for piece in data.chunks(64 * 1024) {
                    nio::write_all(&c, &frame(FrameType::Data, 0, 1, piece.len() as u32))
                        .await
                        .unwrap();
                    nio::write_all(&c, piece).await.unwrap();
                }
                // The whole window is in flight: drained bytes must be granted back
                // (half the window at a time) before anything more may be sent.
                let mut buf = Vec::new();
                loop {
                    let seen = read_frames(&c, &mut buf, 0).await;
                    if seen
                        .iter()
                        .any(|h| h.ty == FrameType::WindowUpdate && h.flags == 0)
                    {
                        break;
                    }
                }
                nio::write_all(&c, &frame(FrameType::WindowUpdate, FLAG_FIN, 1, 0))
                    .await
                    .unwrap();
            };
            let all = async { monoio::join!(app, sink, client) };
            monoio::select! {
                _ = session.run(&t, Vec::new()) => panic!("session ended"),
                _ = all => {},
                _ = monoio::time::sleep(Duration::from_secs(10)) => panic!("timed out"),
            }
        });
    }

    #[test]
    fn fill_from_frames_what_was_read_and_stays_inside_the_window() {
        on_both_drivers(|| async {
            let (t, c) = pair().await;
            let session = Session::new();
            let window = INITIAL_WINDOW_BYTES as usize;
            let byte = |i: usize| (i % 251) as u8;
            // A reader that places pattern bytes `at..at + n` across the slots, in order.
            let place = |at: usize, n: usize| {
                move |slots: &mut [&mut [MaybeUninit<u8>]]| {
                    let mut i = at;
                    for b in slots.iter_mut().flat_map(|s| s.iter_mut()).take(n) {
                        b.write(byte(i));
                        i += 1;
                    }
                    assert_eq!(i, at + n, "more bytes than the slots hold");
                    Ok(Some(n))
                }
            };
            let app = async {
                let s = session.accept().await.unwrap();
                let mut at = 0;
                // Four slots for 256 KiB; 100,000 bytes land in the first two frames.
                let r = s.fill_from(usize::MAX, |slots| {
                    assert_eq!(slots.len(), MAX_FILL_FRAMES);
                    assert!(slots.iter().all(|s| s.len() == MAX_DATA_FRAME_BYTES));
                    place(at, 100_000)(slots)
                });
                assert_eq!(r.unwrap(), Fill::Queued(100_000));
                at += 100_000;
                assert_eq!(
                    s.fill_from(usize::MAX, |_| Ok(None)).unwrap(),
                    Fill::WouldBlock
                );
                assert_eq!(s.fill_from(usize::MAX, |_| Ok(Some(0))).unwrap(), Fill::End);
                // `max` bounds the slots (a body's Content-Length is never read past).
                let r = s.fill_from(5, |slots| {
                    assert_eq!(slots.iter().map(|s| s.len()).sum::<usize>(), 5);
                    place(at, 5)(slots)
                });
                assert_eq!(r.unwrap(), Fill::Queued(5));
                at += 5;
                // The rest of the window, then no room until frpc grants more.
                let rest = window - 100_005;
                let r = s.fill_from(usize::MAX, |slots| {
                    assert_eq!(slots.iter().map(|s| s.len()).sum::<usize>(), rest);
                    place(at, rest)(slots)
                });
                assert_eq!(r.unwrap(), Fill::Queued(rest));
                assert_eq!(
                    s.fill_from(usize::MAX, |_| unreachable!()).unwrap(),
                    Fill::NoRoom
                );
                s.send_room().await;
                assert_eq!(s.fill_from(1, place(at, 1)).unwrap(), Fill::Queued(1));
                std::future::pending::<()>().await;
            };
            let client = async {
                nio::write_all(&c, &frame(FrameType::WindowUpdate, FLAG_SYN, 1, 0))
                    .await
                    .unwrap();
                let mut buf = Vec::new();
                let (mut lens, mut data) = (Vec::new(), Vec::new());
                while data.len() < window {
                    while buf.len() >= HEADER_BYTES {
                        let h = Header::parse(buf[..HEADER_BYTES].try_into().unwrap()).unwrap();
                        let len = if h.ty == FrameType::Data {
                            h.length as usize
                        } else {
                            0
                        };
                        if buf.len() < HEADER_BYTES + len {
                            break;
                        }
                        if h.ty == FrameType::Data {
                            assert_eq!(h.stream_id, 1);
                            lens.push(len);
                            data.extend_from_slice(&buf[HEADER_BYTES..HEADER_BYTES + len]);
                        }
                        buf.drain(..HEADER_BYTES + len);
                    }
                    if data.len() < window {
                        assert!(nio::read_some(&c, &mut buf, 64 * 1024).await.unwrap() > 0);
                    }
                }
                assert_eq!(data.len(), window, "sent beyond the window");
                assert_eq!(&lens[..3], &[65_536, 100_000 - 65_536, 5]);
                assert!(lens.iter().all(|l| *l <= MAX_DATA_FRAME_BYTES));
                assert!(data.iter().enumerate().all(|(i, b)| *b == byte(i)));
                // Grant more: the writer gets room again and sends one more byte.
                nio::write_all(&c, &frame(FrameType::WindowUpdate, 0, 1, 1))
                    .await
                    .unwrap();
                let seen = read_frames(&c, &mut buf, 1).await;
                assert!(seen
                    .iter()
                    .any(|h| h.ty == FrameType::Data && h.length == 1));
            };
            monoio::select! {
                _ = session.run(&t, Vec::new()) => panic!("session ended"),
                _ = app => unreachable!(),
                _ = client => {},
                _ = monoio::time::sleep(Duration::from_secs(10)) => panic!("timed out"),
            }
        });
    }

    #[test]
    fn duplicate_syn_and_rst_follow_the_protocol() {
        on_both_drivers(|| async {
            let (t, c) = pair().await;
            let session = Session::new();
            let app = async {
                let s = session.accept().await.unwrap();
                let mut b = [0u8; 8];
                assert_eq!(
                    s.read(&mut b).await.unwrap_err().kind(),
                    io::ErrorKind::ConnectionReset
                );
                std::future::pending::<()>().await;
            };
            let client = async {
                nio::write_all(&c, &frame(FrameType::WindowUpdate, FLAG_SYN, 1, 0))
                    .await
                    .unwrap();
                nio::write_all(&c, &frame(FrameType::WindowUpdate, FLAG_RST, 1, 0))
                    .await
                    .unwrap();
                monoio::time::sleep(Duration::from_millis(50)).await;
                nio::write_all(&c, &frame(FrameType::WindowUpdate, FLAG_SYN, 3, 0))
                    .await
                    .unwrap();
                nio::write_all(&c, &frame(FrameType::WindowUpdate, FLAG_SYN, 3, 0))
                    .await
                    .unwrap();
                std::future::pending::<()>().await;
            };
            let r = monoio::select! {
                r = session.run(&t, Vec::new()) => r,
                _ = app => unreachable!(),
                _ = client => unreachable!(),
            };
            assert!(matches!(r, Err(YamuxError::DuplicateStream(3))), "{r:?}");
        });
    }

    #[test]
    fn unclaimed_streams_are_capped_claimed_ones_are_not() {
        on_both_drivers(|| async {
            let (t, c) = pair().await;
            let session = Session::new();
            session.mark_authenticated();
            let claim_now = Rc::new(Cell::new(false));
            let app = async {
                let mut held = Vec::new();
                while held.len() < MAX_UNCLAIMED_STREAMS {
                    held.push(session.accept().await.unwrap());
                }
                while !claim_now.get() {
                    monoio::time::sleep(Duration::from_millis(1)).await;
                }
                held[0].claim();
                let next = session.accept().await.unwrap();
                std::future::pending::<()>().await;
                drop((held, next));
            };
            let syn = |id: u32| frame(FrameType::WindowUpdate, FLAG_SYN, id, 0);
            let client = async {
                let mut buf = Vec::new();
                // In chunks below ACCEPT_BACKLOG, so the app keeps up accepting.
                for chunk in 0..(MAX_UNCLAIMED_STREAMS / 128) {
                    let mut out = Vec::new();
                    for i in 0..128 {
                        out.extend(syn(2 * (chunk * 128 + i) as u32 + 1));
                    }
                    nio::write_all(&c, &out).await.unwrap();
                    let mut acks = 0;
                    while acks < 128 {
                        let hs = read_frames(&c, &mut buf, 0).await;
                        acks += hs.iter().filter(|h| h.has(FLAG_ACK)).count();
                    }
                    monoio::time::sleep(Duration::from_millis(5)).await;
                }
                let over = 2 * MAX_UNCLAIMED_STREAMS as u32 + 1;
                nio::write_all(&c, &syn(over)).await.unwrap();
                let h = read_frames(&c, &mut buf, 0).await;
                assert_eq!(
                    h,
                    vec![Header::new(FrameType::WindowUpdate, FLAG_RST, over, 0)],
                    "stream beyond the unclaimed cap"
                );
                claim_now.set(true);
                monoio::time::sleep(Duration::from_millis(20)).await;
                nio::write_all(&c, &syn(over + 2)).await.unwrap();
                let h = read_frames(&c, &mut buf, 0).await;
                assert!(
                    h[0].stream_id == over + 2 && h[0].has(FLAG_ACK),
                    "a claimed stream must free its unclaimed slot: {h:?}"
                );
            };
            monoio::select! {
                _ = session.run(&t, Vec::new()) => panic!("session ended"),
                _ = app => unreachable!(),
                _ = client => {},
            }
        });
    }
}
