//! One client connection, start to end: read head -> route -> exchange -> keep-alive or
//! close. Each stage is a function returning what happens next; the loop below is the whole
//! lifecycle (docs/ARCHITECTURE.md draws it). The same loop serves plain TCP clients
//! ([`serve_client`]) and HTTPS clients after their handshake ([`serve_tls_client`]): it
//! sees the client as a [`ClientLeg`] (`client.rs`).

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;
use rustls::ServerConfig;
use tracing::debug;

use super::client::{accept_tls, ClientConn};
use super::dispatch::serve_decided;
use super::exchange::{exchange, run_tunnel, Next, Plan, Upstream};
use super::worker::Worker;
use crate::http::{answers, parse_request, HeadError, RequestHead, MAX_HEAD_BYTES};
use crate::net::io::set_nonblocking;

/// Initial capacity of a connection's head buffer; grows up to MAX_HEAD_BYTES.
pub const HEAD_BUF_BYTES: usize = 8 * 1024;

/// Outcome of waiting for a request head.
enum HeadRead {
    Head(RequestHead),
    /// The client closed (or idled out) between requests: close silently.
    Closed,
    /// Answer with this proxy error and close.
    Reject(u16),
}

/// An HTTPS client (the `HP_EXAPPS_HTTPS_ADDRESS` listener): handshake, then the same
/// lifecycle. A failed handshake (plaintext, garbage, timeout) only closes this connection.
pub async fn serve_tls_client(
    w: Rc<Worker>,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Arc<ServerConfig>,
) {
    let _ = tcp.set_nodelay(true);
    // Boxed: the handshake's state is dead weight once the connection is serving.
    let client = match Box::pin(accept_tls(tcp, &tls, w.cfg.timeout_client)).await {
        Ok(c) => c,
        Err(e) => {
            debug!(%peer, "TLS handshake failed: {e}");
            return;
        }
    };
    drop(tls);
    let idle = w.cfg.timeout_client;
    if let Some(ClientConn::Tls(t)) = serve_client(w, client, peer).await {
        // A clean end: close_notify, so an answer framed by the close is complete (OpenSSL
        // 3 clients report a close without it as truncation).
        let _ = monoio::time::timeout(idle, t.shutdown_write()).await;
    }
}

/// Serve requests until the connection ends; returns the connection when it ended
/// cleanly (not after a failure mid-answer, a drop or an upgrade), for a TLS close. A plain
/// TCP client (the `HP_EXAPPS_ADDRESS` listener) is spawned straight into this (no wrapper
/// future around it: this future is per connection and its size is per-connection memory).
pub async fn serve_client(
    w: Rc<Worker>,
    client: ClientConn,
    peer: SocketAddr,
) -> Option<ClientConn> {
    if let ClientConn::Tcp(tcp) = &client {
        let _ = tcp.set_nodelay(true);
        if let Err(e) = set_nonblocking(tcp) {
            debug!(%peer, "cannot make client socket nonblocking: {e}");
            return None;
        }
    }
    let mut buf = Vec::with_capacity(HEAD_BUF_BYTES);
    let mut answered = false;
    loop {
        let head = match read_head(&client, &mut buf, w.cfg.timeout_client, answered).await {
            HeadRead::Head(h) => h,
            HeadRead::Closed => return Some(client),
            HeadRead::Reject(status) => {
                debug!(%peer, status, "rejecting request head");
                let _ = answer(&client, answers::proxy_error(status), w.cfg.timeout_client).await;
                return Some(client);
            }
        };
        let next = match static_route(&w, &head) {
            Some(up) => exchange(&w, &client, &mut buf, head, Plan::plain(up)).await,
            None => serve_decided(&w, &client, &mut buf, head, peer).await,
        };
        match next {
            Next::KeepAlive => answered = true,
            Next::Close => return Some(client),
            Next::Abort => return None,
            Next::Upgrade(up) => {
                monoio::spawn(run_tunnel(w, client, up));
                return None;
            }
        }
    }
}

/// Operator-configured static routes (`--route`) win; everything else goes through HaRP's
/// decision.
fn static_route(w: &Worker, head: &RequestHead) -> Option<Upstream> {
    let path = head.path();
    w.cfg
        .routes
        .iter()
        .find(|r| path.starts_with(r.prefix.as_bytes()))
        .map(|r| Upstream::Tcp(r.upstream))
}

/// Read until `buf` starts with a complete request head; the head's bytes are removed from
/// `buf`, anything after them (body, pipelined requests) stays. `after_answer`: a response
/// was just written on this connection, so the client's next request is most likely not
/// there yet: wait for readiness before the first `recv`.
async fn read_head(
    client: &ClientConn,
    buf: &mut Vec<u8>,
    idle: Duration,
    after_answer: bool,
) -> HeadRead {
    let mut wait_first = after_answer;
    loop {
        if !buf.is_empty() {
            match parse_request(buf) {
                Ok(Some((head, len))) => {
                    buf.drain(..len);
                    return HeadRead::Head(head);
                }
                Ok(None) => {}
                Err(e) => return HeadRead::Reject(head_error_status(&e)),
            }
        }
        let room = (MAX_HEAD_BYTES + 1).saturating_sub(buf.len()).max(1);
        let spare = room.min(HEAD_BUF_BYTES);
        let read = async {
            if std::mem::take(&mut wait_first) {
                client.read_some_after_wait(buf, spare).await
            } else {
                client.read_some(buf, spare).await
            }
        };
        match monoio::time::timeout(idle, read).await {
            Ok(Ok(0)) if buf.is_empty() => return HeadRead::Closed,
            Ok(Ok(0)) => return HeadRead::Reject(400),
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return HeadRead::Closed,
            Err(_) if buf.is_empty() => return HeadRead::Closed,
            Err(_) => return HeadRead::Reject(408),
        }
    }
}

fn head_error_status(e: &HeadError) -> u16 {
    e.status()
}

/// Write a canned answer, bounded by the client timeout.
pub async fn answer(client: &ClientConn, bytes: &[u8], idle: Duration) -> io::Result<()> {
    match monoio::time::timeout(idle, client.write_all(bytes)).await {
        Ok(r) => r,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}
