//! One client connection, start to end: read head -> route -> exchange -> keep-alive or
//! close. Each stage is a function returning what happens next; the loop below is the whole
//! lifecycle (docs/ARCHITECTURE.md draws it). The same loop serves plain TCP clients
//! ([`serve_client`]) and HTTPS clients after their handshake ([`serve_tls_client`]): it
//! sees the client as a [`ClientLeg`] (`client.rs`).

use crate::runtime::contain::spawn_conn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;
use rustls::ServerConfig;
use tracing::debug;

use super::access;
use super::bus::BusMsg;
use super::client::{accept_tls, ClientConn, ClientSocket};
use super::dispatch::{pick_upstream, serve_decided};
use super::exchange::{exchange, run_tunnel, Next, Plan, Upstream};
use super::worker::Worker;
use crate::http::{answers, parse_request, HeadError, RequestHead, MAX_HEAD_BYTES};
use crate::net::io::set_nonblocking;
use crate::tls::{TlsSession, Transport};

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
    serve_client(w, client, peer).await;
}

/// How long a closing client may go on sending (the rest of a body answered early) before
/// we close anyway: a gap of [`LINGER_IDLE`] (or `HP_TIMEOUT_CLIENT` if shorter) or
/// [`LINGER_TOTAL`] in all (nginx's `lingering_timeout` / `lingering_time`).
pub const LINGER_IDLE: Duration = Duration::from_secs(5);
pub const LINGER_TOTAL: Duration = Duration::from_secs(30);

/// The end of a connection that ended cleanly (not after a failure mid-answer, a drop or an
/// upgrade): TLS close_notify (OpenSSL 3 clients report a close without it as truncation of
/// an answer framed by the close), FIN, then a lingering close
/// ([`crate::net::io::discard_until_eof`]): without it an early answer to a client still
/// sending a body (413, 403, 400) is reset, and nginx in front turns it into a 502.
async fn close_cleanly(client: ClientConn, idle: Duration) {
    // An operator's shorter HP_TIMEOUT_CLIENT bounds the gaps too.
    let gap = LINGER_IDLE.min(idle);
    match client.into_socket() {
        ClientSocket::Tcp(tcp) => {
            crate::net::io::shutdown_write(&tcp);
            crate::net::io::discard_until_eof(&tcp, gap, LINGER_TOTAL).await;
        }
        ClientSocket::Tls(t) => {
            let _ = crate::runtime::time::limit(idle, t.shutdown_write()).await;
            crate::net::io::discard_until_eof(t.tcp(), gap, LINGER_TOTAL).await;
        }
    }
}

/// Serve requests until the connection ends, then close it (cleanly when it ended
/// cleanly). A plain TCP client (the `HP_EXAPPS_ADDRESS` listener) is spawned straight into
/// this (no wrapper future around it: this future is per connection and its size is
/// per-connection memory; the closing part is boxed for the same reason).
pub async fn serve_client(w: Rc<Worker>, client: ClientConn, peer: SocketAddr) {
    if let ClientSocket::Tcp(tcp) = client.socket() {
        let _ = tcp.set_nodelay(true);
        if let Err(e) = set_nonblocking(tcp) {
            debug!(%peer, "cannot make client socket nonblocking: {e}");
            return;
        }
    }
    let idle = w.cfg.timeout_client;
    let ended = serve_from(w, client, peer, Vec::with_capacity(HEAD_BUF_BYTES), None).await;
    if let Some(client) = ended {
        Box::pin(close_cleanly(client, idle)).await;
    }
}

/// The request loop. `first`: what the first request's exchange already returned (a
/// connection handed over from another worker); `None` starts by reading a head.
async fn serve_from(
    w: Rc<Worker>,
    mut client: ClientConn,
    peer: SocketAddr,
    mut buf: Vec<u8>,
    mut first: Option<Next>,
) -> Option<ClientConn> {
    let mut answered = first.is_some();
    // The access-log line of the request in progress (kept across a failed hand-over).
    let mut log = None;
    loop {
        let next = match first.take() {
            Some(next) => next,
            None => {
                let head = match read_head(&client, &mut buf, w.cfg.timeout_client, answered).await
                {
                    HeadRead::Head(h) => h,
                    HeadRead::Closed => return Some(client),
                    HeadRead::Reject(status) => {
                        debug!(%peer, status, "rejecting request head");
                        access::rejected(peer, status);
                        let _ = answer(&client, answers::proxy_error(status), w.cfg.timeout_client)
                            .await;
                        return Some(client);
                    }
                };
                log = access::start(&head, peer);
                match static_route(&w, &head) {
                    Some(up) => exchange(&w, &client, &mut buf, head, Plan::plain(up)).await,
                    None => serve_decided(&w, &client, &mut buf, head, peer).await,
                }
            }
        };
        if !matches!(next, Next::HandOver(..)) {
            access::finish(log.take(), &client, &next);
        }
        match next {
            Next::KeepAlive => answered = true,
            Next::Close => return Some(client),
            Next::Abort => return None,
            Next::Upgrade(up) => {
                spawn_conn("tunnel", run_tunnel(w, client, up));
                return None;
            }
            Next::HandOver(to, pending) => match hand_over(&w, to, client, peer, buf, pending) {
                Ok(()) => return None,
                // Could not move it: forward here, through the tunnel's loopback listener.
                Err((c, b, pending)) => {
                    (client, buf) = (c, b);
                    let (head, plan) = *pending;
                    first = Some(exchange(&w, &client, &mut buf, head, plan).await);
                }
            },
        }
    }
}

/// A client connection on its way to its tunnel's worker, with the request it sent (not yet
/// forwarded) and any bytes read behind it; an HTTPS client's TLS session travels with it.
#[derive(Debug)]
pub struct HandedClient {
    fd: OwnedFd,
    tls: Option<TlsSession>,
    peer: SocketAddr,
    buf: Vec<u8>,
    pending: Box<(RequestHead, Plan)>,
}

type NotHandedOver = (ClientConn, Vec<u8>, Box<(RequestHead, Plan)>);

/// Send the connection to worker `to`, where its tunnel lives, over the bus. The socket travels as a duplicate
/// fd; this worker's copy closes (and leaves its driver) when `client` drops here. An HTTPS
/// client's rustls session moves with it (between requests nothing is queued in it).
fn hand_over(
    w: &Worker,
    to: usize,
    client: ClientConn,
    peer: SocketAddr,
    buf: Vec<u8>,
    pending: Box<(RequestHead, Plan)>,
) -> Result<(), NotHandedOver> {
    let fd = match crate::net::io::dup_for_handover(client.tcp()) {
        Ok(fd) => fd,
        Err(e) => {
            debug!(%peer, "cannot hand the connection over: {e}");
            return Err((client, buf, pending));
        }
    };
    let tls = match client.into_socket() {
        ClientSocket::Tcp(_) => None,
        ClientSocket::Tls(t) => match t.into_session() {
            Ok((_tcp, session)) => session,
            Err(t) => return Err((ClientConn::tls_client(t), buf, pending)),
        },
    };
    debug!(%peer, from = w.id, to, tls = tls.is_some(), "connection handed over to its tunnel's worker");
    let handed = HandedClient {
        fd,
        tls,
        peer,
        buf,
        pending,
    };
    w.bus.send(to, BusMsg::HandOver(Box::new(handed)));
    Ok(())
}

/// On the tunnel's worker: serve a connection handed over by another worker, starting with the
/// request it already read (now forwarded in-process when its tunnel is still live).
pub async fn adopt_client(w: Rc<Worker>, handed: Box<HandedClient>) {
    let HandedClient {
        fd,
        tls,
        peer,
        mut buf,
        pending,
    } = *handed;
    let tcp = match crate::net::io::adopt_socket(fd) {
        Ok(t) => t,
        Err(e) => {
            debug!(%peer, "cannot adopt a handed-over connection: {e}");
            return;
        }
    };
    let client = match tls {
        None => ClientConn::tcp_client(tcp),
        Some(session) => ClientConn::tls_client(Box::new(Transport::from_session(tcp, session))),
    };
    let (head, mut plan) = *pending;
    if let Upstream::Tcp(addr) = plan.upstream {
        plan.upstream = pick_upstream(&w, addr, peer);
    }
    let log = access::start(&head, peer);
    let first = exchange(&w, &client, &mut buf, head, plan).await;
    access::finish(log, &client, &first);
    let idle = w.cfg.timeout_client;
    if let Some(client) = Box::pin(serve_from(w, client, peer, buf, Some(first))).await {
        Box::pin(close_cleanly(client, idle)).await;
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
        match crate::runtime::time::limit(idle, read).await {
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
    if let Some(status) = crate::http::status_line_code(bytes) {
        client.note_status(status);
    }
    crate::runtime::time::timed(idle, client.write_all(bytes)).await
}
