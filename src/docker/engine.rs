//! Which Docker Engine a `docker-engine-port` names, and a connected stream to it.
//!
//! HaRP numbers engines by port (harp-compat.md §1.4, §4.6): 24000 is the engine whose socket
//! is mounted into HaRP, 24001-24099 are remote engines reached through their frpc. Lyre
//! serves 24000 from the local socket itself when it exists (no bundled frpc); every other
//! port is the loopback TCP listener the FRP server (or a test) opened for it.
//!
//! The stream is driven like every Lyre socket: readiness, then a nonblocking syscall
//! (`recv`/`send` with MSG_DONTWAIT work on unix and TCP sockets alike). Never pooled: each
//! engine call opens one stream and drops it (AppAPI's deploy sequence makes a handful of
//! calls; a pool would only keep idle sockets into remote engines open).
//!
//! Budget: one `connect` per engine call; no allocation besides the caller's buffer.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use monoio::net::{TcpStream, UnixStream};

use crate::net::io::{self as net_io, Readiness};

/// HaRP's port for the engine whose socket is mounted into the container.
pub const LOCAL_ENGINE_PORT: u16 = 24000;
pub use crate::config::defaults::DEFAULT_DOCKER_SOCKET;

/// A Docker Engine endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// The engine's own unix socket (port 24000 with the local socket present).
    Unix(PathBuf),
    /// A loopback TCP listener: an FRP tunnel to a remote engine, or a TCP engine.
    Tcp(SocketAddr),
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Engine::Unix(p) => write!(f, "unix:{}", p.display()),
            Engine::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// The engine for a `docker-engine-port` value. `local_socket` is the configured socket path
/// (`LYRE_DOCKER_SOCKET`, default [`DEFAULT_DOCKER_SOCKET`]); it serves port 24000 only if
/// it exists at call time, so a socket mounted after start is picked up. Everything else is
/// `127.0.0.1:<port>`, where HaRP's frps would listen for that engine's tunnel.
pub fn engine_for_port(port: u16, local_socket: Option<&Path>) -> Engine {
    if port == LOCAL_ENGINE_PORT {
        if let Some(path) = local_socket.filter(|p| p.exists()) {
            return Engine::Unix(path.to_path_buf());
        }
    }
    Engine::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// A connected engine stream (nonblocking).
pub enum EngineStream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// Connect to `engine` within `timeout`. A timeout surfaces as `io::ErrorKind::TimedOut`.
pub async fn connect_engine(engine: &Engine, timeout: Duration) -> io::Result<EngineStream> {
    let connect = async {
        match engine {
            Engine::Unix(path) => UnixStream::connect(path).await.map(EngineStream::Unix),
            Engine::Tcp(addr) => TcpStream::connect_addr(*addr).await.map(EngineStream::Tcp),
        }
    };
    let stream = match crate::runtime::time::limit(timeout, connect).await {
        Ok(r) => r?,
        Err(_) => return Err(io::ErrorKind::TimedOut.into()),
    };
    net_io::set_nonblocking(&stream)?;
    Ok(stream)
}

impl AsRawFd for EngineStream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            EngineStream::Unix(s) => s.as_raw_fd(),
            EngineStream::Tcp(s) => s.as_raw_fd(),
        }
    }
}

impl Readiness for EngineStream {
    async fn wait_readable(&self) -> io::Result<()> {
        match self {
            EngineStream::Unix(s) => s.readable(false).await,
            EngineStream::Tcp(s) => s.readable(false).await,
        }
    }

    async fn wait_writable(&self) -> io::Result<()> {
        match self {
            EngineStream::Unix(s) => s.writable(false).await,
            EngineStream::Tcp(s) => s.writable(false).await,
        }
    }
}

impl EngineStream {
    /// One nonblocking `recv`; `Ok(None)` = would block, `Ok(Some(0))` = peer closed.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        net_io::try_recv(self, buf)
    }

    /// One nonblocking `send`; `Ok(None)` = would block. Never raises SIGPIPE.
    pub fn try_send(&self, data: &[u8]) -> io::Result<Option<usize>> {
        net_io::try_send(self, data)
    }

    /// Read at least one byte into the spare capacity of `buf` (reserving `min_spare`).
    /// `Ok(0)` = the engine closed its write side.
    pub async fn read_some(&self, buf: &mut Vec<u8>, min_spare: usize) -> io::Result<usize> {
        net_io::read_some(self, buf, min_spare).await
    }

    /// Write all of `data`.
    pub async fn write_all(&self, data: &[u8]) -> io::Result<()> {
        net_io::write_all(self, data).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_by_port() {
        let dir = std::env::temp_dir().join(format!("lyre-engine-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("docker.sock");
        std::fs::write(&sock, b"").unwrap();
        let missing = dir.join("missing.sock");
        let tcp = |p: u16| Engine::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, p)));
        let rows: [(u16, Option<&Path>, Engine); 5] = [
            (24000, Some(&sock), Engine::Unix(sock.clone())),
            (24000, Some(&missing), tcp(24000)),
            (24000, None, tcp(24000)),
            (24001, Some(&sock), tcp(24001)),
            (24099, None, tcp(24099)),
        ];
        for (port, local, want) in rows {
            assert_eq!(
                engine_for_port(port, local),
                want,
                "port {port} local {local:?}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
