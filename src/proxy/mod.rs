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
use tracing::debug;

pub use client::ClientConn;
pub use conn::{serve_client, serve_tls_client};
pub use flight::run_bus;
pub use tunnels::start_frp;
pub use worker::{now_ms, Worker, FRP_WORKER};

/// Accept loop of one worker's public listener.
pub async fn accept_loop(w: Rc<Worker>, listener: TcpListener) {
    accept_each(&w, &listener, |stream, peer| {
        spawn_conn(
            "client connection",
            serve_client(w.clone(), ClientConn::tcp_client(stream), peer),
        );
    })
    .await
}

/// Accept loop of one worker's HTTPS listener (H-20): same routing after the handshake.
pub async fn accept_loop_https(w: Rc<Worker>, listener: TcpListener, tls: Arc<HttpsCert>) {
    accept_each(&w, &listener, |stream, peer| {
        // The current certificate: a SIGHUP reload applies from the next connection on.
        let conn = serve_tls_client(w.clone(), stream, peer, tls.current());
        spawn_conn("HTTPS client connection", conn);
    })
    .await
}

async fn accept_each(
    w: &Worker,
    listener: &TcpListener,
    mut on: impl FnMut(TcpStream, SocketAddr),
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => on(stream, peer),
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                debug!(worker = w.id, "accept failed: {e}");
                monoio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
