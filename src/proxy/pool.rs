//! Per-worker upstream connection pool (keep-alive to upstreams).
//!
//! Keyed by upstream address. A connection enters the pool only after a complete exchange
//! whose response allowed reuse and whose request body was fully sent. On checkout a
//! zero-cost liveness probe (`recv(MSG_PEEK|MSG_DONTWAIT)`) discards connections the
//! upstream closed while idle: it catches the common case (server idle timeout) before a
//! request is written to a dead socket. The remaining race (the upstream closes between the
//! probe and reading our request) is handled by the caller (`exchange`): a write that
//! fails goes to a new connection, and an idempotent request without a body whose reused
//! connection closes before a byte of answer is sent once more on a new connection.
//!
//! The FRP fast path pools work streams the same way, keyed by remote port: a stream whose
//! exchange completed stays open to frpc, which keeps its local connection to the ExApp
//! (what a pooled TCP connection to the `127.0.0.1:<port>` listener gives the loopback
//! path). Only yamux streams are pooled; the probe is `WorkStream::is_idle_and_open`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use crate::frp::WorkStream;
use crate::net::io::is_idle_and_open;

/// Idle connections kept per upstream address.
pub const DEFAULT_MAX_IDLE_PER_UPSTREAM: usize = 64;
/// An idle pooled connection older than this is closed instead of reused (below the usual
/// 60-75 s keep-alive timeouts of upstream servers, so we rarely race their close).
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);

#[derive(Default)]
pub struct Pool {
    idle: HashMap<SocketAddr, Vec<(TcpStream, Instant)>>,
    idle_frp: HashMap<u16, Vec<(Box<WorkStream>, Instant)>>,
}

impl Pool {
    /// A live idle connection to `addr`, most recently used first.
    pub fn checkout(&mut self, addr: SocketAddr) -> Option<TcpStream> {
        let list = self.idle.get_mut(&addr)?;
        while let Some((stream, since)) = list.pop() {
            if since.elapsed() < DEFAULT_POOL_IDLE_TIMEOUT && is_idle_and_open(&stream) {
                return Some(stream);
            }
        }
        None
    }

    /// Return a reusable connection.
    pub fn checkin(&mut self, addr: SocketAddr, stream: TcpStream) {
        let list = self.idle.entry(addr).or_default();
        if list.len() >= DEFAULT_MAX_IDLE_PER_UPSTREAM {
            list.remove(0);
        }
        list.push((stream, Instant::now()));
    }

    pub fn idle_count(&self) -> usize {
        self.idle.values().map(Vec::len).sum::<usize>()
            + self.idle_frp.values().map(Vec::len).sum::<usize>()
    }

    /// A live idle work stream to the tunnel on remote `port`, most recently used first.
    pub fn checkout_frp(&mut self, port: u16) -> Option<Box<WorkStream>> {
        let list = self.idle_frp.get_mut(&port)?;
        while let Some((ws, since)) = list.pop() {
            if since.elapsed() < DEFAULT_POOL_IDLE_TIMEOUT && ws.is_idle_and_open() {
                return Some(ws);
            }
        }
        None
    }

    /// Return a work stream after a complete exchange; dropped (closed) if not reusable.
    pub fn checkin_frp(&mut self, port: u16, ws: Box<WorkStream>) {
        if !ws.is_idle_and_open() {
            return;
        }
        let list = self.idle_frp.entry(port).or_default();
        if list.len() >= DEFAULT_MAX_IDLE_PER_UPSTREAM {
            list.remove(0);
        }
        list.push((ws, Instant::now()));
    }
}
