//! A server-side byte stream that is either plain TCP or rustls over TCP, driven the
//! data-plane way (readiness + nonblocking `recv`/`send`, never monoio's owned buffers).
//!
//! Owns: the handshake, plaintext reads and writes, and the rule that only one task at a
//! time writes to the socket (an async write lock), so that a reader that must flush TLS
//! records (alerts, key updates) never interleaves with a writer's records.
//! Budget per read: one `recv` of up to [`TLS_READ_CHUNK_BYTES`] (a batched read: up to
//! `net::batch::MAX_BATCH_BYTES`) plus rustls's own copy; the read buffer is released while
//! the socket has nothing and nothing is announced (idle connections hold none). Every
//! socket wait goes through the transport's [`ReadBatch`]. [`Transport::read_chunks`] hands
//! plaintext over where it lies (rustls's records), for a parser that needs no copy of its
//! own (the yamux session).
//! Used by the FRP server and by the HTTPS frontend's client leg (`proxy::client`).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::AsRawFd;
use std::task::Poll;

use monoio::net::TcpStream;
use rustls::ServerConnection;

use crate::net::batch::{ReadBatch, MAX_BATCH_BYTES};
use crate::net::io as nio;
use crate::runtime::signal::WakerList;

/// Size of one TLS socket read (several 16 KiB records: fewer syscalls on bulk streams).
pub const TLS_READ_CHUNK_BYTES: usize = 64 * 1024;

pub enum Transport {
    Plain {
        tcp: TcpStream,
        /// Bytes read while sniffing that belong to the stream.
        prefix: RefCell<Vec<u8>>,
        lock: WriteLock,
        batch: ReadBatch,
    },
    Tls {
        tcp: TcpStream,
        conn: RefCell<Box<ServerConnection>>,
        /// Raw TLS bytes read from the socket and not yet accepted by rustls.
        rbuf: RefCell<RawTls>,
        lock: WriteLock,
        batch: ReadBatch,
    },
}

impl Transport {
    pub fn plain(tcp: TcpStream, prefix: Vec<u8>) -> Transport {
        Transport::Plain {
            tcp,
            prefix: RefCell::new(prefix),
            lock: WriteLock::default(),
            batch: ReadBatch::default(),
        }
    }

    /// Run the server handshake; `initial` holds TLS bytes already read by the sniffer.
    pub async fn accept_tls(
        tcp: TcpStream,
        conn: ServerConnection,
        initial: &[u8],
    ) -> io::Result<Transport> {
        let t = Transport::Tls {
            tcp,
            conn: RefCell::new(Box::new(conn)),
            rbuf: RefCell::new(RawTls::default()),
            lock: WriteLock::default(),
            batch: ReadBatch::default(),
        };
        if let Transport::Tls { rbuf, .. } = &t {
            rbuf.borrow_mut().buf.extend_from_slice(initial);
        }
        loop {
            let (handshaking, wants_write) = t.tls_state();
            if wants_write {
                t.flush_tls().await?;
                continue;
            }
            if !handshaking {
                return Ok(t);
            }
            if !t.recv_tls(0).await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF during TLS handshake",
                ));
            }
        }
    }

    /// Take the stream apart into its socket and, over TLS, its session, to move the
    /// connection to another worker. `Err(self)` while TLS records are still queued for the
    /// peer, or while sniffed plaintext is still unread. The socket's read low-water mark is
    /// reset to 1 byte: the next owner starts with a fresh [`ReadBatch`].
    pub fn into_session(
        self: Box<Self>,
    ) -> Result<(TcpStream, Option<TlsSession>), Box<Transport>> {
        let movable = match &*self {
            Transport::Tls { conn, .. } => !conn.borrow().wants_write(),
            Transport::Plain { prefix, .. } => prefix.borrow().is_empty(),
        };
        if !movable {
            return Err(self);
        }
        match *self {
            Transport::Plain { tcp, batch, .. } => {
                batch.reset(&tcp);
                Ok((tcp, None))
            }
            Transport::Tls {
                tcp,
                conn,
                rbuf,
                batch,
                ..
            } => {
                batch.reset(&tcp);
                let RawTls { mut buf, start } = rbuf.into_inner();
                buf.drain(..start);
                let session = TlsSession {
                    conn: conn.into_inner(),
                    raw: buf,
                };
                Ok((tcp, Some(session)))
            }
        }
    }

    /// The TLS stream [`Transport::into_session`] took apart, on `tcp` (the same socket,
    /// now registered with this worker's driver).
    pub fn from_session(tcp: TcpStream, session: TlsSession) -> Transport {
        Transport::Tls {
            tcp,
            conn: RefCell::new(session.conn),
            rbuf: RefCell::new(RawTls {
                buf: session.raw,
                start: 0,
            }),
            lock: WriteLock::default(),
            batch: ReadBatch::default(),
        }
    }

    pub fn tcp(&self) -> &TcpStream {
        match self {
            Transport::Plain { tcp, .. } | Transport::Tls { tcp, .. } => tcp,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls { .. })
    }

    /// Shut the socket both ways: wakes any task blocked in `read`/`write_all` (they then
    /// see EOF / an error). The fd itself is closed when the `Transport` is dropped.
    pub fn shutdown(&self) {
        // SAFETY: shutdown(2) on a valid fd owned by self; errors are irrelevant here.
        unsafe { libc::shutdown(self.tcp().as_raw_fd(), libc::SHUT_RDWR) };
    }

    /// Orderly close after our last write: TLS close_notify, FIN, then read and discard
    /// for up to `linger` so that late peer bytes do not make the kernel answer with RST,
    /// which would destroy our final bytes (a refused LoginResp) still in flight.
    pub async fn close_gracefully(&self, linger: std::time::Duration) {
        self.shutdown_write().await;
        let drain = async {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match nio::try_recv(self.tcp(), &mut buf) {
                    Ok(Some(0)) | Err(_) => return,
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        if self.wait_socket(0).await.is_err() {
                            return;
                        }
                    }
                }
            }
        };
        let _ = crate::runtime::time::limit(linger, drain).await;
    }

    /// End our direction only (a tunnel passing on its peer's EOF): TLS close_notify, then
    /// FIN. Reads stay open.
    pub async fn shutdown_write(&self) {
        if let Transport::Tls { conn, .. } = self {
            conn.borrow_mut().send_close_notify();
            let _ = self.flush_tls().await;
        }
        crate::net::io::shutdown_write(self.tcp());
    }

    fn tls_state(&self) -> (bool, bool) {
        match self {
            Transport::Tls { conn, .. } => {
                let c = conn.borrow();
                (c.is_handshaking(), c.wants_write())
            }
            Transport::Plain { .. } => (false, false),
        }
    }

    /// Read plaintext into `buf`; `Ok(0)` = end of stream.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_expecting(buf, 0).await
    }

    /// [`Transport::read`] for a caller that knows `want` more bytes are coming (a body's
    /// remaining length): the socket wait is batched (`net::batch`), so a bulk stream wakes
    /// this reader once per batch rather than once per peer write.
    pub async fn read_expecting(&self, buf: &mut [u8], want: usize) -> io::Result<usize> {
        match self {
            Transport::Plain { tcp, prefix, .. } => {
                {
                    let mut p = prefix.borrow_mut();
                    if !p.is_empty() {
                        let n = p.len().min(buf.len());
                        buf[..n].copy_from_slice(&p[..n]);
                        p.drain(..n);
                        return Ok(n);
                    }
                }
                loop {
                    if let Some(n) = nio::try_recv(tcp, buf)? {
                        return Ok(n);
                    }
                    self.wait_socket(want.min(buf.len())).await?;
                }
            }
            Transport::Tls { conn, .. } => {
                let mut eof = false;
                loop {
                    match conn.borrow_mut().reader().read(buf) {
                        Ok(n) => return Ok(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock && eof => return Ok(0),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        // TCP EOF without close_notify: Go often does this; treat as EOF.
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                        Err(e) => return Err(e),
                    }
                    eof = !self.recv_tls(want).await?;
                    if self.tls_state().1 {
                        self.flush_tls().await?;
                    }
                }
            }
        }
    }

    /// Hand the next plaintext to `sink` where it lies instead of copying it into a buffer
    /// of the caller's: under TLS the slices are rustls's decrypted records; on plain TCP,
    /// `scratch` after one `recv` (released while the socket is idle, so a parked session
    /// holds no read buffer). `want`: plaintext bytes known to be coming, for batching as in
    /// [`Transport::read_expecting`]. Everything rustls has decrypted is handed over in one
    /// call. Returns the bytes handed over; 0 = end of stream.
    pub async fn read_chunks<E: From<io::Error>>(
        &self,
        scratch: &mut Vec<u8>,
        want: usize,
        mut sink: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<usize, E> {
        match self {
            Transport::Plain { tcp, prefix, .. } => {
                let early = std::mem::take(&mut *prefix.borrow_mut());
                if !early.is_empty() {
                    sink(&early)?;
                    return Ok(early.len());
                }
                loop {
                    scratch.clear();
                    match nio::try_recv_spare(tcp, scratch, MAX_BATCH_BYTES)? {
                        Some(0) => return Ok(0),
                        Some(n) => {
                            sink(&scratch[..n])?;
                            return Ok(n);
                        }
                        // Released while idle; kept while more is expected (as above).
                        None if want == 0 => *scratch = Vec::new(),
                        None => {}
                    }
                    self.wait_socket(want).await?;
                }
            }
            Transport::Tls { .. } => {
                let mut eof = false;
                loop {
                    let (handed, ended) = self.hand_plaintext(&mut sink)?;
                    if ended || eof || handed > 0 {
                        return Ok(handed);
                    }
                    eof = !self.recv_tls(want).await?;
                    if self.tls_state().1 {
                        self.flush_tls().await?;
                    }
                }
            }
        }
    }

    /// Give every plaintext chunk rustls holds to `sink`. Returns the bytes handed and
    /// whether the stream has ended (close_notify, or TCP EOF without one: Go often
    /// closes that way).
    fn hand_plaintext<E: From<io::Error>>(
        &self,
        sink: &mut impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(usize, bool), E> {
        let Transport::Tls { conn, .. } = self else {
            return Ok((0, false));
        };
        let mut c = conn.borrow_mut();
        let mut r = c.reader();
        let mut handed = 0;
        loop {
            match r.fill_buf() {
                Ok([]) => return Ok((handed, true)),
                Ok(chunk) => {
                    let n = chunk.len();
                    sink(chunk)?;
                    r.consume(n);
                    handed += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((handed, false)),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok((handed, true)),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Wait until a [`Transport::read`] has something to return (plaintext, EOF or an
    /// error) or at least new bytes to process, without holding a read buffer: an idle
    /// tunnel waits here (`proxy::upstream::tunnel_legs`).
    pub async fn readable(&self) -> io::Result<()> {
        let pending = match self {
            Transport::Plain { prefix, .. } => !prefix.borrow().is_empty(),
            Transport::Tls { conn, rbuf, .. } => {
                rbuf.borrow().pending()
                    || match conn.borrow_mut().process_new_packets() {
                        Ok(st) => st.plaintext_bytes_to_read() > 0 || st.peer_has_closed(),
                        Err(_) => true, // the next read reports it
                    }
            }
        };
        if !pending {
            if let Transport::Tls { rbuf, .. } = self {
                *rbuf.borrow_mut() = RawTls::default(); // empty: nothing to keep while idle
            }
            self.wait_socket(0).await?;
        }
        Ok(())
    }

    /// Every wait for socket bytes goes through the batch state, so a mark left by a bulk
    /// read never delays an ordinary wait (`want` 0 restores the kernel default first).
    async fn wait_socket(&self, want: usize) -> io::Result<()> {
        match self {
            Transport::Plain { tcp, batch, .. } | Transport::Tls { tcp, batch, .. } => {
                batch.wait_readable(tcp, want).await
            }
        }
    }

    /// Give rustls more TLS bytes: first those left over from an earlier socket read, else
    /// one new socket read (batched when `want` plaintext bytes are known to be coming).
    /// Returns `false` at TCP EOF.
    async fn recv_tls(&self, want: usize) -> io::Result<bool> {
        let Transport::Tls { tcp, rbuf, .. } = self else {
            return Ok(false);
        };
        let want = want.min(MAX_BATCH_BYTES);
        loop {
            {
                let mut raw = rbuf.borrow_mut();
                if raw.start < raw.buf.len() {
                    let used = self.feed_tls(&raw.buf[raw.start..])?;
                    raw.start += used;
                    return Ok(true);
                }
                // Everything was accepted: refill from offset 0 (no bytes to move).
                raw.buf.clear();
                raw.start = 0;
                let spare = want.max(TLS_READ_CHUNK_BYTES);
                match nio::try_recv_spare(tcp, &mut raw.buf, spare)? {
                    Some(0) => {
                        self.feed_tls(&[])?; // empty = EOF for rustls
                        return Ok(false);
                    }
                    Some(_) => {
                        let used = self.feed_tls(&raw.buf)?;
                        raw.start = used;
                        return Ok(true);
                    }
                    // Nothing pending: an idle connection (keep-alive client, WebSocket,
                    // parked frpc) holds no read buffer while it waits. A reader expecting
                    // more (a body in flight) keeps it: the next batch is a moment away,
                    // and a fresh buffer per batch costs page faults.
                    None if want == 0 => *raw = RawTls::default(),
                    None => {}
                }
            }
            self.wait_socket(want).await?;
        }
    }

    /// Hand raw TLS bytes to rustls (empty = TCP EOF) and process them; returns how many
    /// were accepted. Stops as soon as decrypted plaintext is waiting: rustls refuses more
    /// input while its plaintext buffer is over its limit, so the rest waits for later.
    fn feed_tls(&self, pending: &[u8]) -> io::Result<usize> {
        let Transport::Tls { conn, .. } = self else {
            return Ok(0);
        };
        let mut c = conn.borrow_mut();
        let eof = pending.is_empty();
        let mut data: &[u8] = pending;
        loop {
            let n = c.read_tls(&mut data)?;
            let st = c
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if eof || data.is_empty() || n == 0 || st.plaintext_bytes_to_read() > 0 {
                break;
            }
        }
        Ok(pending.len() - data.len())
    }

    /// Write TLS records rustls has queued.
    async fn flush_tls(&self) -> io::Result<()> {
        let Transport::Tls {
            tcp, conn, lock, ..
        } = self
        else {
            return Ok(());
        };
        let _g = lock.lock().await;
        while send_queued(&mut conn.borrow_mut(), tcp)? {
            tcp.writable(false).await?;
        }
        Ok(())
    }

    /// Write all of `data` as plaintext (encrypting under TLS). Under TLS the records leave
    /// from rustls's own buffer (no staging copy), and a call given up while waiting for
    /// room leaves whole, unsent records with rustls for the next write or flush.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        match self {
            Transport::Plain { tcp, lock, .. } => {
                let _g = lock.lock().await;
                nio::write_all(tcp, data).await
            }
            Transport::Tls {
                tcp, conn, lock, ..
            } => {
                let _g = lock.lock().await;
                loop {
                    let queued = {
                        let mut c = conn.borrow_mut();
                        // Room first: rustls takes new plaintext only up to its buffer
                        // limit, so records still queued from a full socket go out first.
                        let queued = send_queued(&mut c, tcp)?;
                        if queued || data.is_empty() {
                            queued
                        } else {
                            let took = c.writer().write(data)?;
                            if took == 0 {
                                // Empty buffer and still nothing taken: the session no
                                // longer accepts data (past close_notify).
                                return Err(io::ErrorKind::WriteZero.into());
                            }
                            data = &data[took..];
                            send_queued(&mut c, tcp)?
                        }
                    };
                    if queued {
                        tcp.writable(false).await?;
                    } else if data.is_empty() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Send what rustls has queued until it has nothing left or the socket is full.
/// `Ok(true)` = records are still queued: wait for room and call again.
fn send_queued(c: &mut ServerConnection, tcp: &TcpStream) -> io::Result<bool> {
    while c.wants_write() {
        match c.write_tls(&mut ToSocket(tcp)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// rustls's encrypted records go to the socket straight from its buffer: everything queued
/// in one gathered nonblocking send; `WouldBlock` when the socket is full (the records
/// stay with rustls).
struct ToSocket<'a>(&'a TcpStream);

impl Write for ToSocket<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(b)])
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        nio::try_sendv(self.0, bufs)?.ok_or_else(|| io::ErrorKind::WouldBlock.into())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Raw TLS bytes from the socket: `buf[start..]` not yet accepted by rustls. Consumed by
/// moving `start`, refilled only when empty, so bytes are never shifted.
#[derive(Default)]
pub struct RawTls {
    buf: Vec<u8>,
    start: usize,
}

impl RawTls {
    /// Bytes read from the socket that rustls has not taken yet.
    fn pending(&self) -> bool {
        self.start < self.buf.len()
    }
}

/// A TLS session without its socket (see [`Transport::into_session`]): rustls's state,
/// which may cross threads, and the raw bytes read but not yet taken by rustls.
pub struct TlsSession {
    conn: Box<ServerConnection>,
    raw: Vec<u8>,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("raw_bytes", &self.raw.len())
            .finish_non_exhaustive()
    }
}

/// Async mutual exclusion for one task-local writer at a time.
#[derive(Default)]
pub struct WriteLock {
    held: Cell<bool>,
    waiters: WakerList,
}

pub struct WriteGuard<'a>(&'a WriteLock);

impl WriteLock {
    pub async fn lock(&self) -> WriteGuard<'_> {
        poll_fn(|cx| {
            if !self.held.get() {
                self.held.set(true);
                return Poll::Ready(WriteGuard(self));
            }
            self.waiters.register(cx.waker());
            Poll::Pending
        })
        .await
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.0.held.set(false);
        self.0.waiters.wake_all();
    }
}
