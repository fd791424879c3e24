//! Per-core listeners: every worker binds its own SO_REUSEPORT socket on the same address,
//! so the kernel spreads connections and nothing is shared on the accept path.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use monoio::net::{ListenerOpts, TcpListener};

/// Backlog per worker socket; HAProxy's global maxconn is 8192 (harp-compat §2.2).
pub const DEFAULT_BACKLOG: i32 = 4096;

/// Bind one worker's listener. `reuse_port` lets N workers share the address.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<TcpListener> {
    let opts = ListenerOpts::new()
        .reuse_port(true)
        .reuse_addr(true)
        .backlog(DEFAULT_BACKLOG);
    TcpListener::bind_with_config(addr, &opts)
}

/// Fails with `AddrInUse` if any socket listens on `addr`, SO_REUSEPORT ones included.
/// Called once before the workers bind: SO_REUSEPORT would otherwise let a second Lyre
/// (or any reuseport listener of the same user) bind the same address without an error
/// and silently take a share of the connections. A probe socket without SO_REUSEPORT
/// cannot bind next to a listener; it is closed again at once. Port 0 is not probed.
///
/// A Lyre that has just exited may still listen for a moment: its io_uring rings are torn
/// down by a kernel worker after the process is gone, and a ring's pending accept holds the
/// listening socket until then (4-8 ms measured). So a restart (systemd, a test) retries
/// for up to [`PROBE_PATIENCE`]; a listener still there after that belongs to a live
/// process.
pub fn ensure_unclaimed(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    bind_patiently(addr, std::net::TcpListener::bind).map(drop)
}

/// `bind(addr)`, retried while the address is in use, for up to [`PROBE_PATIENCE`]: for the
/// listeners a just-exited Lyre may still hold (see [`ensure_unclaimed`]).
pub fn bind_patiently<L>(
    addr: SocketAddr,
    bind: impl Fn(SocketAddr) -> io::Result<L>,
) -> io::Result<L> {
    let start = Instant::now();
    loop {
        match bind(addr) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && start.elapsed() < PROBE_PATIENCE => {
                std::thread::sleep(PROBE_RETRY);
            }
            other => return other,
        }
    }
}

/// How long a start waits for a just-exited listener to go away.
pub const PROBE_PATIENCE: Duration = Duration::from_secs(2);
const PROBE_RETRY: Duration = Duration::from_millis(20);
