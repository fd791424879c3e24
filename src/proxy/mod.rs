//! The data plane: accept -> parse head -> decide -> connect -> forward.
//!
//! - `conn`     one client connection's lifecycle (the loop over requests).
//! - `exchange` one request/response with an upstream, both bodies streamed concurrently.
//! - `body`     body forwarding by framing, through the pump.
//! - `pool`     per-worker keep-alive upstream connections.
//! - `upstream` TCP or in-process FRP work stream (the fast path on the FRP worker).

mod body;
pub mod bus;
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

use std::rc::Rc;

use monoio::net::TcpListener;
use tracing::debug;

pub use conn::serve_client;
pub use flight::run_bus;
pub use tunnels::run_frp;
pub use worker::{now_ms, Worker};

/// Accept loop of one worker's public listener.
pub async fn accept_loop(w: Rc<Worker>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                monoio::spawn(serve_client(w.clone(), stream, peer));
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                debug!(worker = w.id, "accept failed: {e}");
                monoio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
