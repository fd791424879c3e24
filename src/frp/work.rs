//! Work streams: taking a parked work connection for a user connection, StartWorkConn,
//! the optional per-proxy encryption/compression layers, and the 127.0.0.1:<remotePort>
//! "compatibility path" listeners that relay plain TCP users through them
//! (frp-protocol §5.4, §7).
//!
//! Budget per relayed connection: up to two [`RELAY_BUF_BYTES`] buffers while data flows,
//! none while idle (each direction waits for readiness first); per chunk one socket
//! syscall plus one copy into the yamux queue (TLS legs cannot splice). With no wrappers
//! on a yamux stream, user-bound bytes are sent from the stream's buffer where they lie
//! (no relay buffer that way); otherwise a read goes straight from the channel into the
//! caller's buffer.

use crate::runtime::contain::spawn_conn;
use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use monoio::net::{TcpListener, TcpStream};

use super::channel::Channel;
use super::crypto::{CfbReader, CfbWriter, KEY_BYTES};
use super::msg::{self, MsgType, StartWorkConn};
use super::registry::{Proxy, WorkConn};
use super::snappy::{SnappyReader, SnappyWriter};
use super::yamux::{Drain, Fill, Stream};
use super::{FrpContext, FrpError};
use crate::net::io as nio;

/// Relay buffer per direction per user connection while data flows (a read that fills
/// the idle-size buffer grows it to this).
pub const RELAY_BUF_BYTES: usize = 128 * 1024;
/// Relay buffer per direction while a connection trickles (a read that fills it grows it to
/// [`RELAY_BUF_BYTES`]); while idle each direction waits for readiness holding none.
pub const RELAY_IDLE_BUF_BYTES: usize = 4 * 1024;
/// Pause after a failed accept (EMFILE and friends) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Rx {
    leftover: Vec<u8>,
    dec: Option<CfbReader>,
    unzip: Option<SnappyReader>,
    plain: Vec<u8>,
    pos: usize,
}

#[derive(Default)]
struct Tx {
    enc: Option<CfbWriter>,
    zip: Option<SnappyWriter>,
}

/// One user connection's stream to frpc, StartWorkConn already sent. `read`/`write_all`
/// take `&self` so both relay directions run at once; each direction must have a single
/// caller at a time.
pub struct WorkStream {
    ch: Channel,
    /// The registration this stream was started for: once it is closed (CloseProxy,
    /// session gone) the stream must not be reused, even if another proxy now holds
    /// the same remote port.
    proxy: Rc<Proxy>,
    wrapped: bool,
    rx: RefCell<Rx>,
    tx: RefCell<Tx>,
}

impl WorkStream {
    fn new(wc: WorkConn, proxy: Rc<Proxy>, key: &[u8; KEY_BYTES]) -> WorkStream {
        let mut rx = Rx {
            leftover: wc.leftover,
            ..Default::default()
        };
        let mut tx = Tx::default();
        if proxy.use_encryption {
            rx.dec = Some(CfbReader::new(key));
            tx.enc = Some(CfbWriter::new(key));
        }
        if proxy.use_compression {
            rx.unzip = Some(SnappyReader::default());
            tx.zip = Some(SnappyWriter::default());
        }
        let wrapped = proxy.use_encryption || proxy.use_compression;
        WorkStream {
            ch: wc.ch,
            proxy,
            wrapped,
            rx: RefCell::new(rx),
            tx: RefCell::new(tx),
        }
    }

    /// Read user-bound payload; `Ok(0)` = frpc ended the stream.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_expecting(buf, 0).await
    }

    /// [`WorkStream::read`] for a caller that will read `remaining` more payload bytes
    /// (a body's remaining length, this read included; 0 = unknown): lets the channel batch
    /// its socket waits. Compressed streams pass no hint (wire bytes != payload bytes).
    pub async fn read_expecting(&self, buf: &mut [u8], remaining: u64) -> io::Result<usize> {
        let hint = |rx: &Rx| {
            if rx.unzip.is_some() {
                0
            } else {
                remaining.saturating_sub((rx.plain.len() - rx.pos) as u64)
            }
        };
        loop {
            {
                let mut rx = self.rx.borrow_mut();
                if rx.pos < rx.plain.len() {
                    let n = (rx.plain.len() - rx.pos).min(buf.len());
                    buf[..n].copy_from_slice(&rx.plain[rx.pos..rx.pos + n]);
                    rx.pos += n;
                    return Ok(n);
                }
                rx.plain.clear();
                rx.pos = 0;
                if !rx.leftover.is_empty() {
                    let raw = std::mem::take(&mut rx.leftover);
                    rx.unwrap_into_plain(raw)?;
                    continue;
                }
            }
            let want = hint(&self.rx.borrow());
            if !self.wrapped {
                return self.ch.read_expecting(buf, want).await;
            }
            let mut raw = vec![0u8; buf.len().max(4096)];
            let n = self.ch.read_expecting(&mut raw, want).await?;
            if n == 0 {
                return Ok(0);
            }
            raw.truncate(n);
            self.rx.borrow_mut().unwrap_into_plain(raw)?;
        }
    }

    /// Wait until a read would not block (payload, EOF or an error), without holding a
    /// buffer: an idle tunnel direction waits here and allocates only when bytes arrive.
    pub async fn readable(&self) -> io::Result<()> {
        {
            let rx = self.rx.borrow();
            if rx.pos < rx.plain.len() || !rx.leftover.is_empty() {
                return Ok(());
            }
        }
        self.ch.readable().await
    }

    /// The yamux stream itself when nothing stands between it and the payload (no
    /// encryption or compression layer, nothing left over in them): its buffered bytes can
    /// then be sent on where they lie ([`Stream::drain_to`]).
    pub fn bare_stream(&self) -> Option<&Stream> {
        if self.wrapped {
            return None;
        }
        let rx = self.rx.borrow();
        if rx.pos < rx.plain.len() || !rx.leftover.is_empty() {
            return None;
        }
        self.ch.mux()
    }

    /// The yamux stream itself when frpc-bound payload goes in as it is (no encryption or
    /// compression layer): bytes can then be read straight into its send queue
    /// ([`Stream::fill_from`]).
    pub fn bare_sink(&self) -> Option<&Stream> {
        if self.wrapped {
            return None;
        }
        self.ch.mux()
    }

    /// Write frpc-bound payload (compressed, then encrypted, when the proxy asks).
    pub async fn write_all(&self, data: &[u8]) -> io::Result<()> {
        if !self.wrapped {
            return self.ch.write_all(data).await;
        }
        let wire = {
            let mut tx = self.tx.borrow_mut();
            let mut zipped = Vec::new();
            let plain = match tx.zip.as_mut() {
                Some(z) => {
                    z.encode(data, &mut zipped);
                    &zipped[..]
                }
                None => data,
            };
            let mut wire = Vec::with_capacity(plain.len() + 16);
            match tx.enc.as_mut() {
                Some(e) => e.seal(plain, &mut wire),
                None => wire.extend_from_slice(plain),
            }
            wire
        };
        self.ch.write_all(&wire).await
    }

    /// Reusable for another exchange (the proxy's keep-alive pool): its proxy still
    /// registered, open, nothing unread in any layer, and on a yamux stream (see
    /// `Channel::is_idle_and_open`).
    pub fn is_idle_and_open(&self) -> bool {
        let rx = self.rx.borrow();
        !self.proxy.closed.is_fired()
            && rx.pos >= rx.plain.len()
            && rx.leftover.is_empty()
            && self.ch.is_idle_and_open()
    }

    /// End the stream (FIN / shutdown). frp closes both directions together (§7.6).
    pub fn close(&self) {
        self.ch.close();
    }
}

impl Rx {
    fn unwrap_into_plain(&mut self, mut raw: Vec<u8>) -> io::Result<()> {
        let data: &mut [u8] = match self.dec.as_mut() {
            Some(d) => d.open(&mut raw),
            None => &mut raw,
        };
        match self.unzip.as_mut() {
            Some(z) => z
                .decode(data, &mut self.plain)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            None => {
                self.plain.extend_from_slice(data);
                Ok(())
            }
        }
    }
}

/// Open a stream to the frpc that registered `remote_port`, on behalf of a user at `src`:
/// take a parked work connection (or ask for one and wait up to 10 s), send
/// StartWorkConn, refill the pool. Must run on the worker the port's tunnel lives on.
pub async fn open_work_stream(
    ctx: &Rc<FrpContext>,
    remote_port: u16,
    src: SocketAddr,
) -> Result<WorkStream, FrpError> {
    let proxy = ctx
        .registry
        .borrow()
        .proxy_by_port(remote_port)
        .ok_or(FrpError::NoSuchPort(remote_port))?;
    let control = proxy
        .control
        .upgrade()
        .ok_or(FrpError::NoSuchPort(remote_port))?;
    let start = StartWorkConn {
        proxy_name: proxy.name.clone(),
        src_addr: src.ip().to_string(),
        src_port: src.port(),
        dst_addr: ctx.proxy_bind_ip.to_string(),
        dst_port: remote_port,
        ..Default::default()
    };
    let mut head = Vec::new();
    msg::write_msg(&mut head, MsgType::StartWorkConn, &start);
    // A parked stream may have died with its session: try the next one (frps: pool + 1).
    for _ in 0..=control.pool_cap {
        let wc = control
            .take_work_conn()
            .await
            .ok_or(FrpError::NoWorkConn(remote_port))?;
        if wc.ch.write_all(&head).await.is_ok() {
            wc.ch.claim();
            return Ok(WorkStream::new(wc, proxy, &ctx.key));
        }
    }
    Err(FrpError::NoWorkConn(remote_port))
}

/// Accept users on a proxy's 127.0.0.1:<port> listener until the proxy closes.
pub async fn serve_proxy_listener(ctx: Rc<FrpContext>, proxy: Rc<Proxy>, listener: TcpListener) {
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => Some(r),
            _ = proxy.closed.wait() => None,
        };
        match accepted {
            None => return,
            Some(Ok((tcp, peer))) => {
                spawn_conn(
                    "tunnel port connection",
                    relay_user(ctx.clone(), proxy.port, tcp, peer),
                );
            }
            // `remove_proxy` shut the socket down: accept fails before the latch is seen.
            Some(Err(_)) if proxy.closed.is_fired() => return,
            Some(Err(e)) => {
                tracing::warn!(port = proxy.port, error = %e, "frp proxy accept failed");
                monoio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn relay_user(ctx: Rc<FrpContext>, port: u16, tcp: TcpStream, peer: SocketAddr) {
    match open_work_stream(&ctx, port, peer).await {
        Ok(ws) => relay(&tcp, &ws).await,
        Err(e) => tracing::warn!(port, %peer, error = %e, "frp user connection dropped"),
    }
}

/// Copy both ways until either direction ends, then close both (frp's "join", §7.6).
pub async fn relay(tcp: &TcpStream, ws: &WorkStream) {
    let up = async {
        let mut b = BurstBuf::default();
        loop {
            // Into a bare yamux stream the bytes are read straight into its send queue.
            if let Some(s) = ws.bare_sink() {
                let ok = match s.fill_from(usize::MAX, |slots| nio::try_recv_slots(tcp, slots)) {
                    Ok(Fill::Queued(_)) => true,
                    Ok(Fill::WouldBlock) => tcp.readable(false).await.is_ok(),
                    Ok(Fill::NoRoom) => {
                        s.send_room().await;
                        true
                    }
                    Ok(Fill::End) | Err(_) => false,
                };
                if !ok {
                    return;
                }
                continue;
            }
            let n = match nio::try_recv(tcp, b.get()) {
                Ok(Some(0)) | Err(_) => return,
                Ok(Some(n)) => n,
                Ok(None) => {
                    // Idle: hold no buffer while waiting.
                    b.release();
                    if tcp.readable(false).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            if ws.write_all(&b.buf[..n]).await.is_err() {
                return;
            }
            b.after_read(n);
        }
    };
    let down = async {
        let mut b = BurstBuf::default();
        loop {
            // A bare yamux stream's bytes are sent from its buffer, with no relay buffer.
            if let Some(s) = ws.bare_stream() {
                let sent = s.drain_to(usize::MAX, 0, |bytes| nio::try_send(tcp, bytes));
                let ok = match sent {
                    Ok(Drain::Sent(_)) => true,
                    Ok(Drain::Empty) => {
                        s.readable().await;
                        true
                    }
                    Ok(Drain::Blocked) => tcp.writable(false).await.is_ok(),
                    Ok(Drain::End) | Err(_) => false,
                };
                if !ok {
                    return;
                }
                continue;
            }
            // Idle: hold no buffer while waiting (as the other direction).
            if b.buf.is_empty() && ws.readable().await.is_err() {
                return;
            }
            let n = match ws.read(b.get()).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if nio::write_all(tcp, &b.buf[..n]).await.is_err() {
                return;
            }
            // A short read drained the channel: wait again without a buffer.
            if n < b.buf.len() {
                b.release();
            } else {
                b.after_read(n);
            }
        }
    };
    monoio::select! {
        _ = up => {},
        _ = down => {},
    }
    ws.close();
    nio::shutdown_write(tcp);
}

/// A relay buffer sized by demand: [`RELAY_IDLE_BUF_BYTES`] at first, [`RELAY_BUF_BYTES`]
/// once a read fills it, nothing after [`BurstBuf::release`].
#[derive(Default)]
struct BurstBuf {
    buf: Vec<u8>,
}

impl BurstBuf {
    fn get(&mut self) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = vec![0u8; RELAY_IDLE_BUF_BYTES];
        }
        &mut self.buf
    }

    /// A read that filled the buffer means more is queued: grow for the burst.
    fn after_read(&mut self, n: usize) {
        if n == self.buf.len() && self.buf.len() < RELAY_BUF_BYTES {
            self.buf = vec![0u8; RELAY_BUF_BYTES];
        }
    }

    fn release(&mut self) {
        self.buf = Vec::new();
    }
}
