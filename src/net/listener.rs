//! Per-core listeners: every worker binds its own SO_REUSEPORT socket on the same address,
//! so the kernel spreads connections and nothing is shared on the accept path.

use std::io;
use std::net::SocketAddr;

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
