//! Forwarding pumps: move bytes between two plain TCP sockets without parsing them.
//!
//! Owns: [`Pump`] (forward a known length or to EOF), the bidirectional [`tunnel`] used
//! after a 101 Upgrade, the pipe/splice plumbing (`pipe`) and the per-thread pools that lend
//! pipes and buffers only while bytes flow (`lease`). Does not own: framing (the caller says
//! how many bytes, or "until EOF"), TLS legs, FRP/yamux streams (not plain sockets), socket
//! options other than O_NONBLOCK.
//!
//! # Measurements (2 vCPU VM, kernel 6.18, loopback, 1 GiB download)
//!
//! Measured before this module was written (prototypes, quiet machine):
//!
//! | path                                                | Gbit/s | CPU-s/GB (forwarder) |
//! |-----------------------------------------------------|--------|----------------------|
//! | direct loopback (no forwarder)                      | 22-24  | -                    |
//! | monoio IORING_OP_SPLICE (punted to io-wq threads)   | 8      | ~0.8                 |
//! | epoll readiness + nonblocking splice                | 18     | ~0.25                |
//! | epoll readiness + 256 KiB recv/send copy            | 19     | ~0.33                |
//! | io_uring POLL_ADD + nonblocking splice, 1 MiB pipe  | 17.4   | 0.22                 |
//!
//! This module, `cargo bench --bench forward` (forwarder = this code in-process on its own
//! thread and runtime; "lyre" = the `lyre serve` binary, one worker, whole-process CPU).
//! The VM was shared with parallel builds (load 5-12 on 2 vCPUs) during every run, so the
//! absolute Gbit/s and the ratios are depressed and noisy (direct loopback itself fell to
//! 6-9 Gbit/s); the CPU costs are the comparable part. Median of 5, each forwarded run
//! paired with a direct run made just before it; a median-of-3 run gave the same picture
//! (splice 0.32-0.39, copy 0.55-0.60 CPU-s/GiB):
//!
//! | forwarder              | Gbit/s | ratio vs direct | CPU-s/GiB |
//! |------------------------|--------|-----------------|-----------|
//! | splice, io_uring       | 2.9    | 0.54            | 0.36      |
//! | copy, io_uring         | 2.9    | 0.53            | 0.56      |
//! | splice, epoll          | 3.1    | 0.45            | 0.40      |
//! | copy, epoll            | 3.1    | 0.50            | 0.60      |
//! | lyre splice, io_uring  | 3.3    | 0.40            | 0.37      |
//! | lyre copy, io_uring    | 3.1    | 0.55            | 0.53      |
//! | lyre splice, epoll     | 3.7    | 0.55            | 0.34      |
//! | lyre copy, epoll       | 3.4    | 0.59            | 0.56      |
//!
//! Copy buffer sweep (epoll, CPU-s/GiB, the two runs): 64 KiB 0.69/0.69, 128 KiB 0.63/0.63,
//! 256 KiB 0.60/0.60, 512 KiB 0.40/0.48, 1 MiB 0.45/0.50. Idle tunnels (1,000 upgraded
//! connections, one ping/pong each, RSS delta / 1000): 2-3 KiB each through `tunnel` alone;
//! 22.5 (io_uring) / 24.6 (epoll) KiB each through `lyre serve` as merged, of which ~8-10 KiB
//! is the proxy's head buffer kept alive during the tunnel (14.3 KiB with it released before
//! calling `tunnel`). While those 1,000 tunnels sit idle: 0.0 ms CPU per second and no
//! io-wq (`iou-wrk`) threads, on both drivers, in-process and in `lyre serve`.
//!
//! Why splice is the default: it keeps payload pages in the kernel (no copy through user
//! space), so it costs the least CPU per byte: 35-45% less than copy in every run above.
//! Issued by us after a readiness wait, with SPLICE_F_NONBLOCK on O_NONBLOCK sockets, it
//! never blocks a thread, whereas monoio's IORING_OP_SPLICE is punted to io-wq workers
//! (about 3x the CPU, and a kernel thread blocked per idle tunnel). A profile of the splice
//! forwarder shows kernel TCP/loopback work (including the receiver's softirq processing,
//! which loopback runs in the sender's context) and no measurable user-space time, so the
//! remaining cost is the kernel's. The copy pump is the fallback where splice on sockets is
//! unavailable. Its buffer stays at 256 KiB, the prototype's quiet-machine choice (full
//! throughput at 0.33 CPU-s/GB); on the loaded VM 512 KiB cost 20-30% less CPU, so
//! re-measure on a quiet machine before changing [`DEFAULT_COPY_BUF_BYTES`] (each in-flight
//! copy leases one buffer; at most [`MAX_POOLED_BUFS`] idle ones are kept per thread).
//!
//! # Budget per forwarded body
//! No allocation. Splice: per round one `splice` socket->pipe (up to [`DEFAULT_PIPE_BYTES`])
//! and one or more pipe->socket, plus a readiness wait only after EAGAIN. Copy: one `recv` of
//! up to [`DEFAULT_COPY_BUF_BYTES`] and one or more `send`.
//!
//! Every wait is a readiness wait (`readable(false)` / `writable(false)`): a POLL_ADD on
//! io_uring, the epoll state plus a zero-timeout poll on the legacy driver. After our own
//! syscall returned EAGAIN, the wait does not return until the socket is really ready (the
//! legacy driver's poll(0) clears stale readiness), so nothing spins; see the
//! `readiness_wait_does_not_spin` tests. Both sockets must be O_NONBLOCK: `splice` honours
//! only the file flag on the socket side (a blocking socket would put the worker thread to
//! sleep inside the kernel), so the splice paths enforce it with
//! [`super::io::set_nonblocking`] (one F_GETFL per socket per call when already set).

mod lease;
mod pipe;
mod tunnel;

#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use monoio::net::TcpStream;

use crate::config::PumpChoice;
use crate::runtime::time::timed;

pub use lease::{pooled, MAX_POOLED_BUFS, MAX_POOLED_PIPES};
use lease::{BufLease, PipeLease};
pub use pipe::{Fill, Pipe};
pub use tunnel::{
    supervise, tunnel, tunnel_with, DEFAULT_TUNNEL_COPY_BUF_BYTES, DEFAULT_TUNNEL_PIPE_BYTES,
};

/// Pipe size for the per-worker splice pump (F_SETPIPE_SZ; capped by pipe-max-size).
pub const DEFAULT_PIPE_BYTES: usize = 1 << 20;
/// Buffer size for the per-worker copy pump (see the measurements above).
pub const DEFAULT_COPY_BUF_BYTES: usize = 256 * 1024;

/// Forwarding settings for one kind of pump. Cheap (no fd, no buffer): the pipe or buffer
/// is leased from a per-thread pool for the duration of each `forward_*` call and returned
/// empty, so a `Pump` per worker, per connection or per call all cost the same.
///
/// A call that fails, times out or is cancelled with bytes still in its pipe closes that
/// pipe instead of returning it (see `lease`), so no byte reaches another connection.
#[derive(Debug, Clone)]
pub struct Pump {
    choice: PumpChoice,
    bytes: usize,
}

impl Pump {
    /// A pump with the default sizes ([`DEFAULT_PIPE_BYTES`], [`DEFAULT_COPY_BUF_BYTES`]).
    /// Creates (and pools) one pipe so that a system out of fds or without pipes fails here,
    /// at startup, rather than on the first request.
    pub fn new(choice: PumpChoice) -> io::Result<Pump> {
        let bytes = match choice {
            PumpChoice::Splice => DEFAULT_PIPE_BYTES,
            PumpChoice::Copy => DEFAULT_COPY_BUF_BYTES,
        };
        Pump::with_size(choice, bytes)
    }

    /// A pump whose pipe (splice; capped by pipe-max-size) or buffer (copy) is `bytes`
    /// (at least 4 KiB). For the bench's size sweep; the proxy uses [`Pump::new`].
    pub fn with_size(choice: PumpChoice, bytes: usize) -> io::Result<Pump> {
        let bytes = bytes.max(4096);
        if choice == PumpChoice::Splice {
            drop(PipeLease::take(bytes)?);
        }
        Ok(Pump { choice, bytes })
    }

    pub fn choice(&self) -> PumpChoice {
        self.choice
    }

    /// Move exactly `n` bytes from `from` to `to`, never reading more than `n` from `from`
    /// (the next keep-alive request stays in the socket). Each readiness wait is bounded by
    /// `idle` (`TimedOut`); an early EOF is `UnexpectedEof`.
    pub async fn forward_exact(
        &mut self,
        from: &TcpStream,
        to: &TcpStream,
        n: u64,
        idle: Duration,
    ) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.forward(from, to, Some(n), idle).await.map(|_| ())
    }

    /// Move bytes until `from` reaches EOF; returns the count. Idle bound as above.
    pub async fn forward_to_eof(
        &mut self,
        from: &TcpStream,
        to: &TcpStream,
        idle: Duration,
    ) -> io::Result<u64> {
        self.forward(from, to, None, idle).await
    }

    async fn forward(
        &self,
        from: &TcpStream,
        to: &TcpStream,
        limit: Option<u64>,
        idle: Duration,
    ) -> io::Result<u64> {
        match self.choice {
            PumpChoice::Splice => {
                // A blocking socket would make splice(2) sleep in the kernel and stall the
                // whole worker: enforce O_NONBLOCK (one F_GETFL each when already set).
                super::io::set_nonblocking(from)?;
                super::io::set_nonblocking(to)?;
                let mut lease = PipeLease::take(self.bytes)?;
                splice_forward(lease.pipe(), from, to, limit, idle).await
            }
            PumpChoice::Copy => {
                let mut lease = BufLease::take(self.bytes);
                copy_forward(lease.buf(), from, to, limit, idle).await
            }
        }
    }
}

/// Splice `from` -> pipe -> `to` until `limit` bytes (or EOF when `None`). The pipe is only
/// filled when empty, so an EAGAIN on the fill means "socket empty", an EOF or a read error
/// never strands bytes in the pipe, and bytes are in the pipe only while `to` is slow.
async fn splice_forward(
    pipe: &mut Pipe,
    from: &TcpStream,
    to: &TcpStream,
    limit: Option<u64>,
    idle: Duration,
) -> io::Result<u64> {
    let mut left = limit.unwrap_or(u64::MAX);
    let mut moved = 0u64;
    // The last fill stopped at the pipe's size, not at the socket's end: more is queued.
    let mut source_has_more = false;
    loop {
        if pipe.held() > 0 {
            let more = source_has_more && left > 0 && limit.is_some();
            drain_pipe(pipe, to, more, idle).await?;
            continue;
        }
        if left == 0 {
            return Ok(moved);
        }
        let ask = usize::try_from(left).unwrap_or(usize::MAX).min(pipe.cap());
        match pipe.fill(from.as_raw_fd(), ask)? {
            Fill::Moved(k) => {
                left -= k as u64;
                moved += k as u64;
                source_has_more = k == ask;
            }
            Fill::Eof if limit.is_some() => return Err(io::ErrorKind::UnexpectedEof.into()),
            Fill::Eof => return Ok(moved),
            Fill::WouldBlock => timed(idle, from.readable(false)).await?,
        }
    }
}

/// Move everything held in `pipe` to `to`, waiting (at most `idle` each time) for room.
async fn drain_pipe(pipe: &mut Pipe, to: &TcpStream, more: bool, idle: Duration) -> io::Result<()> {
    while pipe.held() > 0 {
        if pipe.drain(to.as_raw_fd(), more)?.is_none() {
            timed(idle, to.writable(false)).await?;
        }
    }
    Ok(())
}

/// The copy pump: readiness + `recv` into `buf`, then `send` all of it.
async fn copy_forward(
    buf: &mut [u8],
    from: &TcpStream,
    to: &TcpStream,
    limit: Option<u64>,
    idle: Duration,
) -> io::Result<u64> {
    let mut left = limit.unwrap_or(u64::MAX);
    let mut moved = 0u64;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let got = loop {
            if let Some(k) = super::io::try_recv(from, &mut buf[..want])? {
                break k;
            }
            timed(idle, from.readable(false)).await?;
        };
        if got == 0 {
            return match limit {
                Some(_) => Err(io::ErrorKind::UnexpectedEof.into()),
                None => Ok(moved),
            };
        }
        write_all_timed(to, &buf[..got], idle).await?;
        left -= got as u64;
        moved += got as u64;
    }
    Ok(moved)
}

/// `net::io::write_all` with each writability wait bounded by `idle`.
async fn write_all_timed(to: &TcpStream, mut data: &[u8], idle: Duration) -> io::Result<()> {
    while !data.is_empty() {
        match super::io::try_send(to, data)? {
            Some(0) => return Err(io::ErrorKind::WriteZero.into()),
            Some(n) => data = &data[n..],
            None => timed(idle, to.writable(false)).await?,
        }
    }
    Ok(())
}
