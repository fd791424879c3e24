//! The data plane: accept -> parse head -> decide -> connect -> forward.
//!
//! - `conn`     one client connection's lifecycle (the loop over requests).
//! - `access`   the access log, one line per request at info.
//! - `client`   the client leg: plain TCP or TLS (the HTTPS frontend).
//! - `exchange` one request/response with an upstream, both bodies streamed concurrently.
//! - `body`     body forwarding by framing, through the pump.
//! - `pool`     per-worker keep-alive upstream connections.
//! - `upstream` TCP or in-process FRP work stream (the fast path on the tunnel's worker).

mod access;
mod body;
pub mod bus;
mod client;
mod conn;
mod dispatch;
mod exapp;
mod exchange;
mod flight;
mod passthrough;
pub mod pool;
mod tunnels;
mod upstream;
mod worker;

use crate::runtime::contain::spawn_conn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use crate::tls::frontend::HttpsCert;
use monoio::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

use crate::net::limits::ConnSlot;

pub use access::TARGET as ACCESS_LOG_TARGET;
pub use client::ClientConn;
pub use conn::{serve_client, serve_tls_client};
pub use flight::run_bus;
pub use tunnels::start_frp;
pub use worker::{now_ms, Worker, FRP_WORKER};

/// Accept loop of one worker's public listener.
pub async fn accept_loop(w: Rc<Worker>, listener: TcpListener) {
    accept_each(&w, &listener, |stream, peer, slot| {
        let conn = serve_client(w.clone(), ClientConn::tcp_client(stream), peer);
        spawn_conn("client connection", counted(conn, slot));
    })
    .await
}

/// Accept loop of one worker's HTTPS listener (H-20): same routing after the handshake.
pub async fn accept_loop_https(w: Rc<Worker>, listener: TcpListener, tls: Arc<HttpsCert>) {
    accept_each(&w, &listener, |stream, peer, slot| {
        // The current certificate: a SIGHUP reload applies from the next connection on.
        let conn = serve_tls_client(w.clone(), stream, peer, tls.current());
        spawn_conn("HTTPS client connection", counted(conn, slot));
    })
    .await
}

/// Accept while under `LYRE_MAX_CONNECTIONS`. At the limit a worker holds the one client it
/// just accepted, unserved, and accepts nothing more (the rest wait in the listen backlog,
/// as with HAProxy's `maxconn`) until a connection of any worker ends. A place is taken
/// only once a client is there: a worker idle in `accept` holds none, so a place freed on
/// one worker is never stranded while another has clients waiting.
async fn accept_each(
    w: &Worker,
    listener: &TcpListener,
    mut on: impl FnMut(TcpStream, SocketAddr, ConnSlot),
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let slot = place_for(w).await;
                on(stream, peer, slot)
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                debug!(worker = w.id, "accept failed: {e}");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A place in the connection count, waiting for one at the limit.
async fn place_for(w: &Worker) -> ConnSlot {
    loop {
        if let Some(slot) = w.conns.try_acquire() {
            return slot;
        }
        warn_at_limit(w);
        monoio::time::sleep(AT_LIMIT_RECHECK).await;
    }
}

/// How often a worker at the connection limit looks for a free place.
const AT_LIMIT_RECHECK: Duration = Duration::from_millis(5);
/// At most one "limit reached" warning per worker per this interval.
const AT_LIMIT_WARN_EVERY: Duration = Duration::from_secs(60);

fn warn_at_limit(w: &Worker) {
    let due = w
        .limit_warned
        .get()
        .is_none_or(|t| t.elapsed() >= AT_LIMIT_WARN_EVERY);
    if due {
        w.limit_warned.set(Some(Instant::now()));
        warn!(
            worker = w.id,
            "{} client connections open (LYRE_MAX_CONNECTIONS): new ones wait in the \
             listen backlog until one closes",
            w.conns.max()
        );
    }
}

/// A connection task that holds its place in the connection count until it ends.
async fn counted<T>(conn: impl std::future::Future<Output = T>, slot: ConnSlot) -> T {
    let out = conn.await;
    drop(slot);
    out
}
