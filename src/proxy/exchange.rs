//! One request/response exchange with an upstream: connect (or reuse), send the head, then
//! forward the request body and the response concurrently on this task.
//!
//! The two directions run at once because HTTP needs it: `Expect: 100-continue` clients wait
//! for the upstream's interim answer before sending a body, and an upstream may answer (413,
//! 401) before it has read the body. Each direction owns one side of each socket (the
//! request future reads the client and writes the upstream, the response future the
//! opposite), so both borrow the streams without a split.
//!
//! The upstream is a TCP connection (pooled) or, on the tunnel's worker, a work stream opened
//! in-process for a live tunnel (`Upstream::Frp`), kept alive in the worker's pool like a
//! TCP connection (frpc keeps its local connection to the ExApp for as long as the stream
//! lives). See `upstream.rs` for why only that worker.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::time::Duration;

use monoio::net::TcpStream;
use tracing::debug;

use super::body::{forward_body, BodyError, Lead, FRAMING_READ_BYTES};
use super::client::ClientConn;
use super::conn::answer;
use super::upstream::{tunnel_legs, Leg, UpstreamConn};
use super::worker::{now_ms, Worker};
use crate::decide::response_failure;
use crate::frp::open_work_stream;
use crate::http::{
    answers, parse_response, write_request, write_response_to, BodyFraming, ChunkProgress,
    ChunkedScanner, HeadEdits, HeadError, RequestHead, ResponseHead,
};
use crate::net::io::{set_nonblocking, write_all};
use crate::net::pump::{tunnel_with, Pump};
use crate::runtime::time::timed;

/// Where a routed request goes.
#[derive(Debug, Clone, Copy)]
pub enum Upstream {
    Tcp(SocketAddr),
    /// The FRP fast path: a work stream to the frpc that registered remote `port`, on
    /// behalf of the client at `src` (only chosen on the worker the tunnel lives on).
    Frp {
        port: u16,
        src: SocketAddr,
    },
}

/// How to forward one request: where, with which head edits, and what to check on the
/// response.
#[derive(Debug)]
pub struct Plan {
    pub upstream: Upstream,
    /// Replacement request target (path + query), if any.
    pub target: Option<Vec<u8>>,
    /// Headers replacing incoming ones of the same name.
    pub set_headers: Vec<(&'static str, Vec<u8>)>,
    /// Incoming headers to drop.
    pub remove_headers: Vec<&'static str>,
    /// Response-phase brute-force check (§3.9): statuses and the client IP to blame.
    pub bruteforce: Option<(Vec<u16>, String)>,
}

impl Plan {
    /// Forward unchanged (static routes).
    pub fn plain(upstream: Upstream) -> Plan {
        Plan {
            upstream,
            target: None,
            set_headers: Vec::new(),
            remove_headers: Vec::new(),
            bruteforce: None,
        }
    }
}

/// What the connection loop does after an exchange.
pub enum Next {
    KeepAlive,
    /// Close after a complete answer (an HTTPS client gets TLS close_notify first, so a
    /// body framed by the close is complete for strict clients such as OpenSSL 3).
    Close,
    /// Close after a failure mid-answer, or a silent drop: no close_notify, so a response
    /// cut short is never mistaken for a complete one. (Plain TCP: same as `Close`.)
    Abort,
    /// A 101 was relayed: the connection becomes a tunnel to this upstream. The loop hands
    /// both sockets to a new, small task ([`run_tunnel`]) and ends, so an idle WebSocket
    /// does not keep the (much larger) request-processing task allocated.
    Upgrade(UpstreamConn),
    /// Not forwarded yet: the request is for a live FRP tunnel that lives on worker `.0`,
    /// not here. The connection moves there (`conn::hand_over`), which forwards this
    /// request in-process and serves the connection from then on.
    HandOver(usize, Box<(RequestHead, Plan)>),
}

/// How the response side ended.
enum ResponseEnd {
    /// Complete; `reuse`: the upstream connection may go back to the pool.
    Done { keep_client: bool, reuse: bool },
    /// 101 written to the client: the connection becomes a tunnel.
    Upgrade,
    /// Failed; an answer was sent if nothing had been written yet.
    Failed,
    /// A reused pooled connection closed without a byte of answer, and the request may be
    /// sent again (`ResponseOpts::stale_retry`): nothing was answered, retry on a new one.
    Stale,
}

/// How `forward_response` treats the answer.
struct ResponseOpts<'a> {
    /// Response-phase brute-force check (§3.9): statuses and the client IP to blame.
    bruteforce: Option<&'a (Vec<u16>, String)>,
    /// The connection came from the pool and the request is retryable ([`is_retryable`]):
    /// if it closes before answering anything, report [`ResponseEnd::Stale`].
    stale_retry: bool,
}

/// Whether a request may be sent again on a new connection when a pooled one closed
/// without answering (the upstream closed it idle just as we reused it, before reading
/// our request): an idempotent method (RFC 9110 §9.2.2) and no body still to come, so
/// the whole request is in hand. Browsers retry stale keep-alive connections the same way.
fn is_retryable(head: &RequestHead, framing: BodyFraming) -> bool {
    let idempotent = matches!(
        head.method(),
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    );
    idempotent && matches!(framing, BodyFraming::None | BodyFraming::ContentLength(0))
}

pub async fn exchange(
    w: &Worker,
    client: &ClientConn,
    buf: &mut Vec<u8>,
    head: RequestHead,
    plan: Plan,
) -> Next {
    let mut out = Vec::with_capacity(head.raw.len() + 256);
    let edits = HeadEdits {
        path: plan.target.as_deref(),
        set: plan
            .set_headers
            .iter()
            .map(|(n, v)| (*n, v.as_slice()))
            .collect(),
        remove: plan.remove_headers.clone(),
    };
    write_request(&head, &edits, &mut out);
    let framing = match take_body_lead(head.framing, buf, &mut out) {
        Ok(framing) => framing,
        Err(e) => {
            debug!("request body framing invalid: {e:?}");
            let _ = answer(client, answers::proxy_error(400), w.cfg.timeout_client).await;
            return Next::Close;
        }
    };
    let retryable = is_retryable(&head, framing);
    let mut pooled_ok = true;
    let started = Cell::new(false);
    let (up, req_done, end) = loop {
        let (up, reused) = match open_upstream(w, plan.upstream, &out, pooled_ok).await {
            Ok(up) => up,
            Err(status) => {
                let _ = answer(client, answers::proxy_error(status), w.cfg.timeout_client).await;
                return Next::Close;
            }
        };
        let mut req_pump = w.pump();
        let mut resp_pump = w.pump();
        let req = forward_body(
            &mut req_pump,
            client.as_leg(),
            up.leg(),
            buf,
            framing,
            w.cfg.timeout_client,
            Lead::NONE,
        );
        let opts = ResponseOpts {
            bruteforce: plan.bruteforce.as_ref(),
            stale_retry: reused && retryable,
        };
        let resp = forward_response(w, &mut resp_pump, client, up.leg(), &head, &started, opts);
        // Pinned here and driven through references: moving them into `run_both` by value
        // would store both state machines twice in this (per-request) future.
        let (req_done, end) = run_both(pin!(req), pin!(resp)).await;
        if matches!(end, ResponseEnd::Stale) {
            debug!("pooled upstream connection closed without answering: retrying on a new one");
            pooled_ok = false;
            continue;
        }
        break (up, req_done, end);
    };
    match (req_done, end) {
        (Ok(()), ResponseEnd::Done { keep_client, reuse }) => {
            match (reuse, plan.upstream, up) {
                (true, Upstream::Tcp(addr), UpstreamConn::Tcp(up)) => {
                    w.pool.borrow_mut().checkin(addr, up)
                }
                (true, Upstream::Frp { port, .. }, UpstreamConn::Frp(ws)) => {
                    w.pool.borrow_mut().checkin_frp(port, ws)
                }
                _ => {}
            }
            if keep_client && head.keep_alive {
                Next::KeepAlive
            } else {
                Next::Close
            }
        }
        (Ok(()), ResponseEnd::Upgrade) => {
            // Client bytes that arrived behind the upgrade request belong to the tunnel.
            let flushed = buf.is_empty()
                || timed(w.cfg.timeout_tunnel, up.leg().write_all(buf))
                    .await
                    .is_ok();
            *buf = Vec::new();
            if flushed {
                Next::Upgrade(up)
            } else {
                Next::Abort
            }
        }
        (Err(e), _) if !started.get() => {
            let status = match e {
                BodyError::Framing(_) => 400,
                BodyError::Timeout => 408,
                BodyError::Truncated | BodyError::Io(_) => return Next::Abort,
            };
            debug!(status, "request body failed: {e}");
            let _ = answer(client, answers::proxy_error(status), w.cfg.timeout_client).await;
            Next::Close
        }
        // The response is complete; the unread request body only forbids keep-alive.
        (Err(_), ResponseEnd::Done { .. }) => Next::Close,
        // Nothing was relayed: forward_response answered 502/503/504 itself.
        (_, ResponseEnd::Failed) if !started.get() => Next::Close,
        _ => Next::Abort,
    }
}

/// Drive the request-body and response futures together. The response may finish first
/// (the upstream answered without reading the whole body): then the request side is
/// abandoned and reported as truncated, so the connection closes.
async fn run_both<A, B>(
    mut req: Pin<&mut A>,
    mut resp: Pin<&mut B>,
) -> (Result<(), BodyError>, ResponseEnd)
where
    A: Future<Output = Result<(), BodyError>>,
    B: Future<Output = ResponseEnd>,
{
    monoio::select! {
        biased;
        r = &mut req => {
            if r.is_err() {
                return (r, ResponseEnd::Failed);
            }
            (r, resp.await)
        }
        end = &mut resp => (Err(BodyError::Truncated), end),
    }
}

/// Moves the request body bytes that arrived with the head from `buf` to the end of `out`
/// (the head about to be written), and returns the framing of what is left: with
/// Content-Length, whatever part of the body is buffered; chunked, the whole body if it is
/// all buffered (else nothing: it streams as it comes). Head and body then leave in one
/// send: a small POST costs the upstream one segment, and its kernel no pure ACK (two
/// small pushed segments in a row are ACKed at once). A chunked body already invalid in
/// what is buffered is an error before anything reaches the upstream.
fn take_body_lead(
    framing: BodyFraming,
    buf: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<BodyFraming, HeadError> {
    let have = match framing {
        BodyFraming::ContentLength(n) => (buf.len() as u64).min(n) as usize,
        BodyFraming::Chunked => match ChunkedScanner::new().scan(buf)? {
            ChunkProgress {
                consumed,
                done: true,
            } => consumed,
            _ => return Ok(framing),
        },
        _ => return Ok(framing),
    };
    out.extend_from_slice(&buf[..have]);
    buf.drain(..have);
    Ok(match framing {
        BodyFraming::ContentLength(n) => BodyFraming::ContentLength(n - have as u64),
        _ => BodyFraming::None,
    })
}

/// Open the upstream and write the request head. Errors are the status to answer (503:
/// no connection / no live tunnel, as HaRP answers an unreachable ExApp).
/// `pooled_ok`: a pooled connection (or work stream) may be used. Also says whether the
/// one returned was reused from the pool.
async fn open_upstream(
    w: &Worker,
    to: Upstream,
    head: &[u8],
    pooled_ok: bool,
) -> Result<(UpstreamConn, bool), u16> {
    match to {
        Upstream::Tcp(addr) => send_head(w, addr, head, pooled_ok)
            .await
            .map(|(up, reused)| (UpstreamConn::Tcp(up), reused)),
        // Boxed: a work stream's write path is a large state machine, and this future is
        // moved on every request.
        Upstream::Frp { port, src } => Box::pin(open_frp(w, port, src, head, pooled_ok)).await,
    }
}

/// A work stream to the tunnel on `port` (pooled if `pooled_ok`, or new) with the request
/// head written; true if it was pooled.
async fn open_frp(
    w: &Worker,
    port: u16,
    src: SocketAddr,
    head: &[u8],
    pooled_ok: bool,
) -> Result<(UpstreamConn, bool), u16> {
    let pooled = pooled_ok
        .then(|| w.pool.borrow_mut().checkout_frp(port))
        .flatten();
    if let Some(ws) = pooled {
        if timed(w.cfg.timeout_server, ws.write_all(head))
            .await
            .is_ok()
        {
            debug!(port, "frp fast path (pooled stream)");
            return Ok((UpstreamConn::Frp(ws), true));
        }
    }
    let ctx = w.frp.borrow().clone().ok_or(503u16)?;
    // open_work_stream bounds its own wait for a work connection (10 s). Boxed: a
    // new stream is the rare case, and its future is large.
    let ws = Box::pin(open_work_stream(&ctx, port, src))
        .await
        .map_err(|e| {
            debug!(port, "frp fast path: no work stream: {e}");
            503u16
        })?;
    debug!(port, %src, "frp fast path");
    timed(w.cfg.timeout_server, ws.write_all(head))
        .await
        .map_err(|_| 503u16)?;
    Ok((UpstreamConn::Frp(Box::new(ws)), false))
}

/// Get a connection (pooled if `pooled_ok`, or new) and write the request head; true if
/// it was pooled. A pooled connection that fails on write is replaced once by a fresh one.
/// Errors are the status to answer.
async fn send_head(
    w: &Worker,
    addr: SocketAddr,
    head: &[u8],
    pooled_ok: bool,
) -> Result<(TcpStream, bool), u16> {
    let pooled = pooled_ok
        .then(|| w.pool.borrow_mut().checkout(addr))
        .flatten();
    if let Some(up) = pooled {
        if timed(w.cfg.timeout_server, write_all(&up, head))
            .await
            .is_ok()
        {
            return Ok((up, true));
        }
    }
    let up = connect(addr, w.cfg.timeout_connect).await.map_err(|e| {
        debug!(%addr, "upstream connect failed: {e}");
        503u16
    })?;
    timed(w.cfg.timeout_server, write_all(&up, head))
        .await
        .map_err(|_| 503u16)?;
    Ok((up, false))
}

async fn connect(addr: SocketAddr, limit: Duration) -> io::Result<TcpStream> {
    let up = timed(limit, TcpStream::connect_addr(addr)).await?;
    let _ = up.set_nodelay(true);
    set_nonblocking(&up)?;
    Ok(up)
}

/// Read the response head (forwarding interim 1xx answers), write it to the client, then
/// forward the body.
async fn forward_response(
    w: &Worker,
    pump: &mut Pump,
    client: &ClientConn,
    up: Leg<'_>,
    req: &RequestHead,
    started: &Cell<bool>,
    opts: ResponseOpts<'_>,
) -> ResponseEnd {
    let mut rbuf = Vec::with_capacity(FRAMING_READ_BYTES);
    let head = match read_final_head(w, client, up, req, &mut rbuf, started).await {
        Ok(h) => h,
        Err(HeadFailure::ClosedUnanswered) if opts.stale_retry => return ResponseEnd::Stale,
        Err(failure) => {
            let status = failure.status();
            if !started.get() {
                let _ = answer(client, answers::proxy_error(status), w.cfg.timeout_client).await;
            }
            return ResponseEnd::Failed;
        }
    };
    started.set(true);
    client.note_status(head.status);
    if let Some((statuses, client_ip)) = opts.bruteforce {
        if let Some(effect) = response_failure(statuses, head.status, client_ip) {
            w.publish(effect.into_update(now_ms()));
        }
    }
    let upgrade = head.status == 101 && req.upgrade;
    let keep_client = req.keep_alive && head.framing != BodyFraming::UntilClose;
    let mut out = Vec::with_capacity(head.raw.len() + 64);
    write_response_to(&head, keep_client || upgrade, req.minor_version, &mut out);
    if upgrade {
        // Bytes the upstream sent right after its 101 belong to the tunnel.
        let sent = timed(w.cfg.timeout_client, client.write_all2(&out, &rbuf)).await;
        return match sent {
            Ok(()) => ResponseEnd::Upgrade,
            Err(_) => ResponseEnd::Failed,
        };
    }
    let idle = w.cfg.timeout_server;
    match forward_body(
        pump,
        up,
        client.as_leg(),
        &mut rbuf,
        head.framing,
        idle,
        Lead(&out),
    )
    .await
    {
        Ok(()) => ResponseEnd::Done {
            keep_client,
            reuse: head.keep_alive && head.framing != BodyFraming::UntilClose && rbuf.is_empty(),
        },
        Err(e) => {
            debug!("response body failed: {e}");
            ResponseEnd::Failed
        }
    }
}

/// Wait for the final (non-1xx) response head. Interim answers (100 Continue, 103) go to the
/// client as they come. Errors: 504 on timeout, 502 on an invalid or missing response.
async fn read_final_head(
    w: &Worker,
    client: &ClientConn,
    up: Leg<'_>,
    req: &RequestHead,
    rbuf: &mut Vec<u8>,
    started: &Cell<bool>,
) -> Result<ResponseHead, HeadFailure> {
    loop {
        if !rbuf.is_empty() {
            match parse_response(rbuf, req.is_head()) {
                Ok(Some((head, len))) => {
                    rbuf.drain(..len);
                    if (100..200).contains(&head.status) && head.status != 101 {
                        started.set(true);
                        timed(w.cfg.timeout_client, client.write_all(&head.raw))
                            .await
                            .map_err(|_| HeadFailure::Status(502))?;
                        continue;
                    }
                    return Ok(head);
                }
                Ok(None) => {}
                Err(_) => return Err(HeadFailure::Status(502)),
            }
        }
        // The request has just gone out: the answer is not there yet, so wait before reading.
        let read = up.read_some_after_wait(rbuf, FRAMING_READ_BYTES);
        let closed = match timed(w.cfg.timeout_server, read).await {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(HeadFailure::Status(504)),
            Err(_) => true,
        };
        if closed {
            return Err(if rbuf.is_empty() && !started.get() {
                HeadFailure::ClosedUnanswered
            } else {
                HeadFailure::Status(502)
            });
        }
    }
}

/// Why no final response head came.
enum HeadFailure {
    /// The status to answer: 502 (invalid or cut-short answer), 504 (none in time).
    Status(u16),
    /// The upstream closed (FIN or reset) before sending a single byte.
    ClosedUnanswered,
}

impl HeadFailure {
    fn status(&self) -> u16 {
        match self {
            HeadFailure::Status(s) => *s,
            HeadFailure::ClosedUnanswered => 502,
        }
    }
}

/// The tunnel after a 101, in its own task: both directions until both sides are done,
/// `HP_TIMEOUT_TUNNEL` idle, 30 s after a half-close. Two plain TCP legs use the pump
/// (splice); any other pair copies ([`tunnel_legs`]).
pub async fn run_tunnel(w: Rc<Worker>, client: ClientConn, up: UpstreamConn) {
    let (idle, fin) = (w.cfg.timeout_tunnel, w.cfg.timeout_client_fin);
    let pump = w.cfg.pump;
    drop(w);
    let r = match (client.as_leg(), up.leg()) {
        (Leg::Tcp(c), Leg::Tcp(u)) => tunnel_with(pump, c, u, idle, fin).await,
        (c, u) => tunnel_legs(c, u, idle, fin).await,
    };
    match r {
        Ok((a, b)) => debug!(up_bytes = a, down_bytes = b, "tunnel closed"),
        Err(e) => debug!("tunnel ended: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_request;

    fn head(raw: &str) -> RequestHead {
        parse_request(raw.as_bytes()).unwrap().unwrap().0
    }

    /// (framing, buffered after the head, taken into the head's send, framing left, kept)
    type LeadRow = (
        BodyFraming,
        &'static [u8],
        &'static [u8],
        BodyFraming,
        &'static [u8],
    );

    #[test]
    fn body_bytes_join_the_head_only_as_far_as_the_framing_allows() {
        let rows: [LeadRow; 6] = [
            (
                BodyFraming::ContentLength(4),
                b"bodyGET /next",
                b"body",
                BodyFraming::ContentLength(0),
                b"GET /next",
            ),
            (
                BodyFraming::ContentLength(10),
                b"part",
                b"part",
                BodyFraming::ContentLength(6),
                b"",
            ),
            (
                BodyFraming::Chunked,
                b"2\r\nhi\r\n0\r\n\r\nGET",
                b"2\r\nhi\r\n0\r\n\r\n",
                BodyFraming::None,
                b"GET",
            ),
            (
                BodyFraming::Chunked,
                b"2\r\nhi\r\n",
                b"",
                BodyFraming::Chunked,
                b"2\r\nhi\r\n",
            ),
            (
                BodyFraming::None,
                b"GET /next",
                b"",
                BodyFraming::None,
                b"GET /next",
            ),
            (
                BodyFraming::UntilClose,
                b"x",
                b"",
                BodyFraming::UntilClose,
                b"x",
            ),
        ];
        for (framing, buffered, taken, left, kept) in rows {
            let mut buf = buffered.to_vec();
            let mut out = b"HEAD|".to_vec();
            let got = take_body_lead(framing, &mut buf, &mut out).unwrap();
            assert_eq!(got, left, "{framing:?} {buffered:?}");
            assert_eq!(&out[5..], taken, "{framing:?} {buffered:?}");
            assert_eq!(buf, kept, "{framing:?} {buffered:?}");
        }
        let mut buf = b"zz\r\nhello\r\n".to_vec();
        let mut out = Vec::new();
        assert!(take_body_lead(BodyFraming::Chunked, &mut buf, &mut out).is_err());
        assert!(out.is_empty(), "nothing of an invalid body joins the head");
    }

    #[test]
    fn only_idempotent_requests_in_hand_are_retried() {
        let rows = [
            ("GET / HTTP/1.1\r\nHost: t\r\n\r\n", BodyFraming::None, true),
            (
                "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n",
                BodyFraming::None,
                true,
            ),
            (
                "DELETE /x HTTP/1.1\r\nHost: t\r\n\r\n",
                BodyFraming::None,
                true,
            ),
            (
                "PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n",
                BodyFraming::ContentLength(0),
                true,
            ),
            (
                "PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n",
                BodyFraming::ContentLength(7),
                false,
            ),
            (
                "POST /x HTTP/1.1\r\nHost: t\r\n\r\n",
                BodyFraming::None,
                false,
            ),
            (
                "PATCH /x HTTP/1.1\r\nHost: t\r\n\r\n",
                BodyFraming::None,
                false,
            ),
            (
                "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
                BodyFraming::Chunked,
                false,
            ),
        ];
        for (raw, framing, want) in rows {
            assert_eq!(
                is_retryable(&head(raw), framing),
                want,
                "{raw:?} {framing:?}"
            );
        }
    }
}
