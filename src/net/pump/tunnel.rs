//! The bidirectional tunnel after a 101 Upgrade (WebSocket and friends): both directions on
//! one task, shared idle clock, half-close propagation.
//!
//! Memory: an idle tunnel holds no pipe and no buffer, only its future (a few hundred
//! bytes). A direction leases a pipe (splice) or a buffer (copy) from the per-thread pool
//! (`lease`) when its socket turns readable and gives it back once the pipe is empty and the
//! socket has nothing more.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use monoio::net::TcpStream;
use monoio::time::Instant;

use super::lease::{BufLease, PipeLease};
use super::pipe::Fill;
use crate::config::PumpChoice;
use crate::net::io as nio;

/// Pipe size for tunnel leases: WebSocket traffic is bursty and small, and every pipe's
/// nominal size counts against the user's pipe-user-pages-soft (64 MiB by default).
pub const DEFAULT_TUNNEL_PIPE_BYTES: usize = 256 * 1024;
/// Buffer size for copy-mode tunnel leases.
pub const DEFAULT_TUNNEL_COPY_BUF_BYTES: usize = 64 * 1024;

/// [`tunnel_with`] using the splice pump (the measured default).
pub async fn tunnel(
    a: &TcpStream,
    b: &TcpStream,
    idle: Duration,
    fin: Duration,
) -> io::Result<(u64, u64)> {
    tunnel_with(PumpChoice::Splice, a, b, idle, fin).await
}

/// Bidirectional tunnel: both directions until both sides closed. Returns bytes (a->b, b->a).
///
/// - EOF from one side: its pending bytes are delivered, then `shutdown(SHUT_WR)` on the
///   other side; from then on the inactivity limit is `min(idle, fin)` (HAProxy
///   `timeout client-fin`).
/// - `idle`: no byte in either direction for this long ends the tunnel with `TimedOut`
///   (HP_TIMEOUT_TUNNEL); any byte in either direction restarts the clock.
/// - An error on either side (RST, EPIPE) ends both: the error is returned and the caller
///   drops both sockets. A reset is passed on as a reset (SO_LINGER 0 on the other side).
///
/// Sets O_NONBLOCK on both sockets. Waits are readiness waits only, so an idle tunnel holds
/// no kernel worker thread.
pub async fn tunnel_with(
    choice: PumpChoice,
    a: &TcpStream,
    b: &TcpStream,
    idle: Duration,
    fin: Duration,
) -> io::Result<(u64, u64)> {
    // Enforced here, not trusted: a blocking socket would make splice(2) sleep in the
    // kernel and stall the worker for as long as the tunnel is idle.
    nio::set_nonblocking(a)?;
    nio::set_nonblocking(b)?;
    let last = Cell::new(Instant::now());
    let (ab_bytes, ba_bytes) = (Cell::new(0u64), Cell::new(0u64));
    let ab = pin!(async { end_or_abort(pass(choice, a, b, &last, &ab_bytes).await, b) });
    let ba = pin!(async { end_or_abort(pass(choice, b, a, &last, &ba_bytes).await, a) });
    supervise(ab, ba, &last, idle, fin).await?;
    Ok((ab_bytes.get(), ba_bytes.get()))
}

/// Drive both directions of a tunnel until both ended, on one shared idle clock: `last`
/// is stamped by the directions whenever a byte moves; no byte for `idle` ends the tunnel
/// with `TimedOut`, and after one direction's end the limit becomes `min(idle, fin)`.
/// A direction's error ends both. The directions are pinned by the caller and driven
/// through references, so their state is not stored twice in this future. Shared by
/// every tunnel (TCP pumps here, TLS and FRP legs in `proxy::upstream`).
pub async fn supervise<A, B>(
    mut ab: Pin<&mut A>,
    mut ba: Pin<&mut B>,
    last: &Cell<Instant>,
    idle: Duration,
    fin: Duration,
) -> io::Result<()>
where
    A: Future<Output = io::Result<()>>,
    B: Future<Output = io::Result<()>>,
{
    let (mut ab_open, mut ba_open) = (true, true);
    let mut limit = idle;
    let mut timer = pin!(monoio::time::sleep_until(last.get() + limit));
    while ab_open || ba_open {
        let event = std::future::poll_fn(|cx| {
            if ab_open {
                if let Poll::Ready(r) = ab.as_mut().poll(cx) {
                    return Poll::Ready(Event::Ab(r));
                }
            }
            if ba_open {
                if let Poll::Ready(r) = ba.as_mut().poll(cx) {
                    return Poll::Ready(Event::Ba(r));
                }
            }
            timer.as_mut().poll(cx).map(|()| Event::Timer)
        })
        .await;
        match event {
            Event::Ab(r) => {
                r?;
                ab_open = false;
                limit = limit.min(fin);
            }
            Event::Ba(r) => {
                r?;
                ba_open = false;
                limit = limit.min(fin);
            }
            Event::Timer if Instant::now() >= last.get() + limit => {
                return Err(io::ErrorKind::TimedOut.into());
            }
            Event::Timer => {}
        }
        timer.as_mut().reset(last.get() + limit);
    }
    Ok(())
}

enum Event {
    Ab(io::Result<()>),
    Ba(io::Result<()>),
    Timer,
}

/// A direction ended: pass on a reset as a reset, any error ends the tunnel.
fn end_or_abort(r: io::Result<()>, other: &TcpStream) -> io::Result<()> {
    if let Err(e) = &r {
        if e.kind() == io::ErrorKind::ConnectionReset {
            let _ = nio::set_linger_zero(other);
        }
    }
    r
}

/// One direction until EOF (then FIN to `to`) or error. Holds no pipe/buffer while waiting
/// for `from` to become readable.
async fn pass(
    choice: PumpChoice,
    from: &TcpStream,
    to: &TcpStream,
    last: &Cell<Instant>,
    bytes: &Cell<u64>,
) -> io::Result<()> {
    loop {
        from.readable(false).await?;
        let eof = match choice {
            PumpChoice::Splice => splice_burst(from, to, last, bytes).await?,
            PumpChoice::Copy => copy_burst(from, to, last, bytes).await?,
        };
        if eof {
            nio::shutdown_write(to);
            return Ok(());
        }
    }
}

/// Forward what `from` has now through a leased pipe; `Ok(true)` = EOF reached.
async fn splice_burst(
    from: &TcpStream,
    to: &TcpStream,
    last: &Cell<Instant>,
    bytes: &Cell<u64>,
) -> io::Result<bool> {
    let mut lease = PipeLease::take(DEFAULT_TUNNEL_PIPE_BYTES)?;
    let pipe = lease.pipe();
    loop {
        match pipe.fill(from.as_raw_fd(), pipe.cap())? {
            Fill::Moved(k) => {
                bytes.set(bytes.get() + k as u64);
                last.set(Instant::now());
            }
            Fill::Eof => return Ok(true),
            Fill::WouldBlock => return Ok(false),
        }
        while pipe.held() > 0 {
            match pipe.drain(to.as_raw_fd(), false)? {
                Some(_) => last.set(Instant::now()),
                None => to.writable(false).await?,
            }
        }
    }
}

/// Forward what `from` has now through a leased buffer; `Ok(true)` = EOF reached.
async fn copy_burst(
    from: &TcpStream,
    to: &TcpStream,
    last: &Cell<Instant>,
    bytes: &Cell<u64>,
) -> io::Result<bool> {
    let mut lease = BufLease::take(DEFAULT_TUNNEL_COPY_BUF_BYTES);
    let buf = lease.buf();
    loop {
        let Some(got) = nio::try_recv(from, buf)? else {
            return Ok(false);
        };
        if got == 0 {
            return Ok(true);
        }
        bytes.set(bytes.get() + got as u64);
        last.set(Instant::now());
        let mut data = &buf[..got];
        while !data.is_empty() {
            match nio::try_send(to, data)? {
                Some(0) => return Err(io::ErrorKind::WriteZero.into()),
                Some(n) => {
                    data = &data[n..];
                    last.set(Instant::now());
                }
                None => to.writable(false).await?,
            }
        }
    }
}
