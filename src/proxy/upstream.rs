//! The upstream side of an exchange: a plain TCP connection (direct ExApps, static routes,
//! and tunnels reached through their `127.0.0.1:<remotePort>` listener) or, on the worker
//! the tunnel lives on, an in-process FRP work stream (the "fast path").
//!
//! Owns: [`UpstreamConn`] (what an exchange holds), [`Leg`] (a borrowed side that body code
//! reads from / writes to: TCP, FRP work stream, or an HTTPS client's TLS stream), the copy
//! forwarder used whenever a leg is not plain TCP, and the 101 tunnel when a leg is not
//! plain TCP ([`tunnel_legs`]). Not owned: the splice pump (two plain TCP legs keep using
//! `net::pump` unchanged), FRP wire details (`frp::work`), TLS records (`tls::Transport`).
//!
//! # Why the fast path exists only on the tunnel's worker
//! A tunnel (its control connection, yamux session and parked work connections) lives on
//! the one worker it was placed on (`frp::directory`); its state is `Rc` and cannot be
//! touched from another core. A connection accepted by another worker is handed over to
//! the tunnel's worker (`conn::hand_over`) with its first tunnel-bound request; an HTTPS one
//! takes its rustls session along (`tls::Transport::into_session`).
//!
//! # Budget
//! A work stream cannot splice (its bytes live in yamux/TLS buffers): a body from a bare
//! yamux stream to a TCP client is sent from the stream's buffer where it lies, and one
//! from a TCP client into a bare stream is read straight into the session's send queue
//! (`Stream::fill_from`); other bodies copy through a [`FRP_COPY_BUF_BYTES`] buffer
//! allocated on first use per body,
//! framing reads zero-fill at most
//! `FRAMING_READ_BYTES` of spare room per read; TLS legs copy the same way. An idle 101
//! tunnel holds no buffer: each direction waits for readiness of its source (TCP socket,
//! TLS stream or work stream) first, reads into a [`FRP_TUNNEL_IDLE_BUF_BYTES`] buffer, and
//! grows to [`FRP_TUNNEL_BUF_BYTES`] while a burst fills it.

use std::cell::Cell;
use std::io;
use std::pin::pin;
use std::time::Duration;

use monoio::net::TcpStream;
use monoio::time::Instant;

use crate::frp::yamux::{Drain, Fill, Stream};
use crate::frp::WorkStream;
use crate::net::io as nio;
use crate::net::pump::supervise;
use crate::runtime::time::timed;
use crate::tls::Transport;

/// Copy buffer per body forwarded to or from a work stream (the pump's copy size).
pub const FRP_COPY_BUF_BYTES: usize = 256 * 1024;
/// Largest pair of writes a TLS leg gathers into one buffer (one TLS record) before
/// encrypting, so a small response leaves as one record and one segment.
pub const TLS_GATHER_MAX_BYTES: usize = 16 * 1024;
/// Tunnel buffer per direction during a burst (a read filled the idle-size buffer).
pub const FRP_TUNNEL_BUF_BYTES: usize = 64 * 1024;
/// Tunnel buffer while idle or trickling (WebSocket messages are mostly small).
pub const FRP_TUNNEL_IDLE_BUF_BYTES: usize = 4 * 1024;

/// The connection an exchange forwards to. A work stream is boxed: it carries its
/// cipher/compression state inline (~4 KiB), which would bloat every TCP exchange future.
pub enum UpstreamConn {
    Tcp(TcpStream),
    Frp(Box<WorkStream>),
}

impl UpstreamConn {
    pub fn leg(&self) -> Leg<'_> {
        match self {
            UpstreamConn::Tcp(s) => Leg::Tcp(s),
            UpstreamConn::Frp(ws) => Leg::Frp(ws),
        }
    }
}

/// One side of a forwarding step, borrowed. Every variant takes `&self` for reads and
/// writes, so the request and response directions run at once on one task. TLS futures
/// are boxed (one small allocation next to rustls's own work): inline, their state would
/// enlarge every plain TCP request's future too.
#[derive(Clone, Copy)]
pub enum Leg<'a> {
    Tcp(&'a TcpStream),
    Frp(&'a WorkStream),
    /// An HTTPS client (`proxy::client`): plaintext in and out of rustls.
    Tls(&'a Transport),
}

impl Leg<'_> {
    /// Read at least one byte into `buf`'s spare room (at least `min_spare`); `Ok(0)` = EOF.
    pub async fn read_some(self, buf: &mut Vec<u8>, min_spare: usize) -> io::Result<usize> {
        match self {
            Leg::Tcp(s) => nio::read_some(s, buf, min_spare).await,
            Leg::Frp(ws) => {
                // The guard restores the length if this future is dropped mid-read (a
                // timeout), so no zero filler can ever be taken for received bytes.
                let mut g = Extend::new(buf, min_spare);
                let n = ws.read(g.spare()).await?;
                g.commit(n);
                Ok(n)
            }
            Leg::Tls(t) => Box::pin(tls_read_some(t, buf, min_spare)).await,
        }
    }

    /// Read at most `buf.len()` bytes; `Ok(0)` = EOF.
    pub async fn read(self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Leg::Tcp(s) => loop {
                if let Some(n) = nio::try_recv(s, buf)? {
                    return Ok(n);
                }
                s.readable(false).await?;
            },
            Leg::Frp(ws) => ws.read(buf).await,
            Leg::Tls(t) => Box::pin(t.read(buf)).await,
        }
    }

    /// [`Leg::read`] for a body with `remaining` bytes still to come (this read included):
    /// FRP and TLS legs batch their socket waits on it (`net::batch`).
    pub async fn read_expecting(self, buf: &mut [u8], remaining: u64) -> io::Result<usize> {
        match self {
            Leg::Tcp(_) => self.read(buf).await,
            Leg::Frp(ws) => ws.read_expecting(buf, remaining).await,
            Leg::Tls(t) => {
                let want = usize::try_from(remaining).unwrap_or(usize::MAX);
                Box::pin(t.read_expecting(buf, want)).await
            }
        }
    }

    /// Like [`Leg::read_some`], but on TCP waits for readiness before the first `recv`
    /// (see [`nio::read_some_after_wait`]).
    pub async fn read_some_after_wait(
        self,
        buf: &mut Vec<u8>,
        min_spare: usize,
    ) -> io::Result<usize> {
        match self {
            Leg::Tcp(s) => nio::read_some_after_wait(s, buf, min_spare).await,
            Leg::Frp(_) | Leg::Tls(_) => self.read_some(buf, min_spare).await,
        }
    }

    pub async fn write_all(self, data: &[u8]) -> io::Result<()> {
        match self {
            Leg::Tcp(s) => nio::write_all(s, data).await,
            Leg::Frp(ws) => ws.write_all(data).await,
            Leg::Tls(t) => Box::pin(t.write_all(data)).await,
        }
    }

    /// `first` then `second`; on TCP gathered into one `sendmsg` (see [`nio::write_all2`]).
    pub async fn write_all2(self, first: &[u8], second: &[u8]) -> io::Result<()> {
        match self {
            Leg::Tcp(s) => nio::write_all2(s, first, second).await,
            Leg::Frp(ws) => {
                ws.write_all(first).await?;
                ws.write_all(second).await
            }
            Leg::Tls(t) => Box::pin(tls_write_all2(t, first, second)).await,
        }
    }

    /// Pass on an EOF: FIN on TCP, close_notify + FIN on TLS, close on a work stream (frp
    /// closes both ways together; frpc then ends its side).
    pub async fn shutdown_write(self) {
        match self {
            Leg::Tcp(s) => nio::shutdown_write(s),
            Leg::Frp(ws) => ws.close(),
            Leg::Tls(t) => Box::pin(t.shutdown_write()).await,
        }
    }
}

/// [`Leg::read_some`] on TLS (see the `Leg::Frp` arm).
pub(super) async fn tls_read_some(
    t: &Transport,
    buf: &mut Vec<u8>,
    min_spare: usize,
) -> io::Result<usize> {
    let mut g = Extend::new(buf, min_spare);
    let n = t.read(g.spare()).await?;
    g.commit(n);
    Ok(n)
}

/// [`Leg::write_all2`] on TLS: small pairs gathered into one record.
pub(super) async fn tls_write_all2(t: &Transport, first: &[u8], second: &[u8]) -> io::Result<()> {
    if first.len() + second.len() <= TLS_GATHER_MAX_BYTES {
        return t.write_all(&[first, second].concat()).await;
    }
    t.write_all(first).await?;
    t.write_all(second).await
}

/// `buf` grown by `extra` zeroed bytes; truncated back on drop unless committed.
struct Extend<'b> {
    buf: &'b mut Vec<u8>,
    len: usize,
}

impl<'b> Extend<'b> {
    fn new(buf: &'b mut Vec<u8>, extra: usize) -> Extend<'b> {
        let len = buf.len();
        buf.resize(len + extra.max(1), 0);
        Extend { buf, len }
    }

    fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.len..]
    }

    fn commit(&mut self, n: usize) {
        self.len += n;
    }
}

impl Drop for Extend<'_> {
    fn drop(&mut self) {
        self.buf.truncate(self.len);
    }
}

/// Copy `limit` bytes (or until EOF when `None`) from `from` to `to`, each read and write
/// bounded by `idle`. Never reads past `limit`. Early EOF with a limit is `UnexpectedEof`.
/// From a bare yamux stream to a TCP socket the bytes are sent from the stream's buffer
/// where they lie ([`drain_stream`]); otherwise through a buffer allocated on first use.
pub async fn copy_legs(
    from: Leg<'_>,
    to: Leg<'_>,
    limit: Option<u64>,
    idle: Duration,
) -> io::Result<u64> {
    let mut left = limit.unwrap_or(u64::MAX);
    let mut buf = Vec::new();
    let mut moved = 0u64;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX);
        let remaining = if limit.is_some() { left } else { 0 };
        let got = match (from, to) {
            (Leg::Frp(ws), Leg::Tcp(tcp)) if ws.bare_stream().is_some() => {
                let s = ws.bare_stream().expect("checked by the guard");
                drain_stream(s, tcp, want, remaining, idle).await?
            }
            (Leg::Tcp(tcp), Leg::Frp(ws)) if ws.bare_sink().is_some() => {
                let s = ws.bare_sink().expect("checked by the guard");
                fill_stream(tcp, s, want, idle).await?
            }
            _ => {
                if buf.is_empty() {
                    buf = vec![0u8; want.min(FRP_COPY_BUF_BYTES)];
                }
                let want = want.min(buf.len());
                let got = timed(idle, from.read_expecting(&mut buf[..want], remaining)).await?;
                if got > 0 {
                    timed(idle, to.write_all(&buf[..got])).await?;
                }
                got
            }
        };
        if got == 0 {
            return match limit {
                Some(_) => Err(io::ErrorKind::UnexpectedEof.into()),
                None => Ok(moved),
            };
        }
        left -= got as u64;
        moved += got as u64;
    }
    Ok(moved)
}

/// Send up to `max` bytes from a yamux stream's buffer straight to `tcp` (one copy fewer
/// than reading them into a buffer first), waiting for bytes or for room as needed.
/// Returns the bytes sent; 0 = the stream ended.
async fn drain_stream(
    s: &Stream,
    tcp: &TcpStream,
    max: usize,
    remaining: u64,
    idle: Duration,
) -> io::Result<usize> {
    loop {
        match s.drain_to(max, remaining, |bytes| nio::try_send(tcp, bytes))? {
            Drain::Sent(n) => return Ok(n),
            Drain::End => return Ok(0),
            Drain::Empty => {
                timed(idle, async {
                    s.readable_expecting(remaining).await;
                    Ok(())
                })
                .await?
            }
            Drain::Blocked => timed(idle, tcp.writable(false)).await?,
        }
    }
}

/// Read up to `max` bytes from `tcp` straight into a yamux stream's send queue (one copy
/// fewer than through a buffer), waiting for bytes or for window/queue room as needed.
/// Returns the bytes queued; 0 = `tcp` reached EOF.
async fn fill_stream(tcp: &TcpStream, s: &Stream, max: usize, idle: Duration) -> io::Result<usize> {
    loop {
        match s.fill_from(max, |slots| nio::try_recv_slots(tcp, slots))? {
            Fill::Queued(n) => return Ok(n),
            Fill::End => return Ok(0),
            Fill::WouldBlock => timed(idle, tcp.readable(false)).await?,
            Fill::NoRoom => {
                timed(idle, async {
                    s.send_room().await;
                    Ok(())
                })
                .await?
            }
        }
    }
}

/// After a 101 when a leg is not plain TCP (FRP fast path, HTTPS client): tunnel between
/// `client` and `up` until both directions ended. Returns bytes (client->up, up->client).
///
/// Same rules as `net::pump::tunnel`: `idle` without a byte either way ends it
/// (HP_TIMEOUT_TUNNEL); after one side's EOF the limit becomes `min(idle, fin)`. An EOF is
/// passed on with [`Leg::shutdown_write`]. Any error ends both.
pub async fn tunnel_legs(
    client: Leg<'_>,
    up: Leg<'_>,
    idle: Duration,
    fin: Duration,
) -> io::Result<(u64, u64)> {
    let last = Cell::new(Instant::now());
    let (up_bytes, down_bytes) = (Cell::new(0u64), Cell::new(0u64));
    let up_dir = pin!(one_way(client, up, &last, &up_bytes));
    let down_dir = pin!(one_way(up, client, &last, &down_bytes));
    supervise(up_dir, down_dir, &last, idle, fin).await?;
    Ok((up_bytes.get(), down_bytes.get()))
}

/// `from` -> `to` until `from` ends (then `to` is shut for writing). From a plain TCP
/// socket or a TLS stream the buffer exists only while there are bytes (readiness first);
/// from a work stream the read waits inside the stream, holding an idle-size buffer. One
/// flat loop: this state is per idle WebSocket.
async fn one_way(
    from: Leg<'_>,
    to: Leg<'_>,
    last: &Cell<Instant>,
    bytes: &Cell<u64>,
) -> io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let got = match from {
            Leg::Tcp(s) => {
                if buf.is_empty() {
                    s.readable(false).await?;
                    buf = vec![0u8; FRP_TUNNEL_IDLE_BUF_BYTES];
                }
                match nio::try_recv(s, &mut buf)? {
                    Some(n) => n,
                    None => {
                        buf = Vec::new();
                        continue;
                    }
                }
            }
            Leg::Frp(ws) => {
                if buf.is_empty() {
                    // Like TCP: no buffer while the stream is quiet.
                    ws.readable().await?;
                    buf = vec![0u8; FRP_TUNNEL_IDLE_BUF_BYTES];
                }
                ws.read(&mut buf).await?
            }
            Leg::Tls(t) => {
                if buf.is_empty() {
                    // Like TCP: no buffer while the client is quiet.
                    t.readable().await?;
                    buf = vec![0u8; FRP_TUNNEL_IDLE_BUF_BYTES];
                }
                Box::pin(t.read(&mut buf)).await?
            }
        };
        if got == 0 {
            to.shutdown_write().await;
            return Ok(());
        }
        bytes.set(bytes.get() + got as u64);
        last.set(Instant::now());
        // Stamped again after the write: a slow receiver is not idleness. Matched here, not
        // through `Leg::write_all`, to keep this (per idle WebSocket) state flat.
        match to {
            Leg::Tcp(s) => nio::write_all(s, &buf[..got]).await?,
            Leg::Frp(ws) => ws.write_all(&buf[..got]).await?,
            Leg::Tls(t) => Box::pin(t.write_all(&buf[..got])).await?,
        }
        last.set(Instant::now());
        match from {
            // Drained (a short read): wait for the next message without a buffer.
            Leg::Tls(_) | Leg::Frp(_) if got < buf.len() => buf = Vec::new(),
            _ => resize_for(&mut buf, got),
        }
    }
}

/// Demand sizing: a read that filled the buffer means a burst (grow), a short one means the
/// source is drained (back to the idle size before the next wait).
fn resize_for(buf: &mut Vec<u8>, got: usize) {
    let want = if got == buf.len() {
        FRP_TUNNEL_BUF_BYTES
    } else {
        FRP_TUNNEL_IDLE_BUF_BYTES
    };
    if buf.len() != want {
        *buf = vec![0u8; want];
    }
}

#[cfg(test)]
mod tests {
    use super::Extend;

    #[test]
    fn tunnel_buffer_grows_on_full_reads_and_shrinks_on_short_ones() {
        use super::{resize_for, FRP_TUNNEL_BUF_BYTES, FRP_TUNNEL_IDLE_BUF_BYTES};
        let mut buf = vec![0u8; FRP_TUNNEL_IDLE_BUF_BYTES];
        resize_for(&mut buf, 10);
        assert_eq!(buf.len(), FRP_TUNNEL_IDLE_BUF_BYTES);
        resize_for(&mut buf, FRP_TUNNEL_IDLE_BUF_BYTES);
        assert_eq!(buf.len(), FRP_TUNNEL_BUF_BYTES);
        resize_for(&mut buf, FRP_TUNNEL_BUF_BYTES);
        assert_eq!(buf.len(), FRP_TUNNEL_BUF_BYTES);
        resize_for(&mut buf, 1);
        assert_eq!(buf.len(), FRP_TUNNEL_IDLE_BUF_BYTES);
    }

    #[test]
    fn extend_truncates_unless_committed() {
        let mut buf = b"head".to_vec();
        {
            let mut g = Extend::new(&mut buf, 8);
            assert_eq!(g.spare().len(), 8);
        }
        assert_eq!(buf, b"head", "a dropped read leaves no filler");
        {
            let mut g = Extend::new(&mut buf, 8);
            g.spare()[..2].copy_from_slice(b"ab");
            g.commit(2);
        }
        assert_eq!(buf, b"headab");
    }
}
