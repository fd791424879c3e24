//! After the head: act on the decision. ExApp requests are forwarded with HaRP's header
//! injection, control requests are served in-process, denials get HaRP's exact pages and a
//! DROP closes with a reset.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

use super::client::ClientConn;
use super::conn::answer;
use super::exapp::{decide_request, Decided};
use super::exchange::{exchange, Next, Plan, Upstream};
use super::passthrough::serve_passthrough;
use super::worker::{now_ms, Worker};
use crate::control::api::{self, ControlCtx, ControlRequest, MAX_CONTROL_BODY_BYTES};
use crate::control::reply::ControlReply;
use crate::decide::Forward;
use crate::docker;
use crate::http::{answers, BodyFraming, RequestHead};
use crate::net::io::set_linger_zero;

pub async fn serve_decided(
    w: &Rc<Worker>,
    client: &ClientConn,
    buf: &mut Vec<u8>,
    head: RequestHead,
    peer: SocketAddr,
) -> Next {
    match decide_request(w, &head, peer.ip()).await {
        Decided::ExApp { fwd, addr } => {
            let plan = exapp_plan(w, fwd, pick_upstream(w, addr, peer));
            if let Some(owner) = tunnel_owner_elsewhere(w, &plan) {
                return Next::HandOver(owner, Box::new((head, plan)));
            }
            exchange(w, client, buf, head, plan).await
        }
        // Control and Docker requests are few and their futures large: boxed, so the
        // forwarding path does not move their state around on every request.
        Decided::Control { path_and_query } => {
            Box::pin(serve_control(w, client, buf, &head, &path_and_query)).await
        }
        Decided::Docker {
            port,
            path_and_query,
        } => {
            Box::pin(serve_passthrough(
                w,
                client,
                buf,
                &head,
                port,
                &path_and_query,
            ))
            .await
        }
        Decided::Deny(status) => {
            reply_without_upstream(w, client, &head, answers::harp(status.code())).await
        }
        Decided::Drop => {
            // HTTPS: the reset is on the TCP socket under TLS, as HAProxy's `silent-drop`.
            let _ = set_linger_zero(client.tcp());
            Next::Abort
        }
    }
}

/// §3.7: target path rewritten, the four AppAPI headers replaced, and (Lyre's default) the
/// appliance's shared key not passed on to the ExApp.
fn exapp_plan(w: &Worker, fwd: Box<Forward>, upstream: Upstream) -> Plan {
    let Forward {
        target_path,
        set_headers,
        bruteforce_statuses,
        client_ip,
        ..
    } = *fwd;
    let remove_headers = if w.cfg.forward_shared_key {
        vec![]
    } else {
        vec!["harp-shared-key"]
    };
    Plan {
        upstream,
        target: Some(target_path),
        set_headers: set_headers.into_iter().collect(),
        remove_headers,
        bruteforce: (!bruteforce_statuses.is_empty()).then_some((bruteforce_statuses, client_ip)),
    }
}

/// A client whose ExApp sits behind a live tunnel that lives on another worker: cheaper to
/// move the connection to that worker (one fd over the bus, plus the rustls session for
/// HTTPS, once per connection) than to relay every byte through the tunnel port's loopback
/// listener (a second TCP connection, crossing cores both ways, for its whole life).
fn tunnel_owner_elsewhere(w: &Worker, plan: &Plan) -> Option<usize> {
    let Upstream::Tcp(addr) = plan.upstream else {
        return None;
    };
    if addr.ip() != IpAddr::V4(Ipv4Addr::LOCALHOST) {
        return None;
    }
    w.directory
        .owner(addr.port())
        .filter(|&owner| owner != w.id)
}

/// FRP fast path: an ExApp at the tunnels' bind address (127.0.0.1) whose port is a tunnel
/// living on this worker is reached through an in-process work stream instead of the
/// loopback listener. Ports without a tunnel go over TCP as before (`upstream.rs` explains
/// why); tunnels on other workers were handed over before this.
pub(super) fn pick_upstream(w: &Worker, addr: SocketAddr, client: SocketAddr) -> Upstream {
    let frp = w.frp.borrow();
    match frp.as_ref() {
        Some(ctx) if addr.ip() == ctx.proxy_bind_ip && ctx.has_port(addr.port()) => Upstream::Frp {
            port: addr.port(),
            src: client,
        },
        _ => Upstream::Tcp(addr),
    }
}

/// Answer a request that is not forwarded. Its body (if any) was not read, so the
/// connection can only be kept when there is none.
pub async fn reply_without_upstream(
    w: &Worker,
    client: &ClientConn,
    head: &RequestHead,
    bytes: &'static [u8],
) -> Next {
    let keep = head.keep_alive && head.framing == BodyFraming::None;
    let bytes = if head.is_head() {
        answers::head_only(bytes)
    } else {
        bytes
    };
    if answer(client, bytes, w.cfg.timeout_client).await.is_err() || !keep {
        return Next::Close;
    }
    Next::KeepAlive
}

/// Read the (small) body, run the endpoint, publish its state changes, answer.
async fn serve_control(
    w: &Rc<Worker>,
    client: &ClientConn,
    buf: &mut Vec<u8>,
    head: &RequestHead,
    path_and_query: &[u8],
) -> Next {
    let body = match read_small_body(w, client, buf, head).await {
        Ok(b) => b,
        Err(reply) => {
            let _ = answer(client, &reply.render(false, false), w.cfg.timeout_client).await;
            return Next::Close;
        }
    };
    let path = path_and_query
        .split(|&b| b == b'?')
        .next()
        .unwrap_or_default();
    let req = ControlRequest {
        method: head.method(),
        path,
        body: &body,
    };
    let outcome = {
        let state = w.state.borrow();
        let ctx = ControlCtx {
            state: &state,
            shared_key: &w.cfg.shared_key,
            now_ms: now_ms(),
        };
        api::handle(&req, &ctx)
    };
    let reply = match outcome {
        Some((reply, updates)) => {
            updates.into_iter().for_each(|u| w.publish(u));
            reply
        }
        None => match path.strip_prefix(b"/docker/exapp/".as_slice()) {
            Some(action) => docker_wrapper(w, head, action, &body).await,
            None => ControlReply::not_found(),
        },
    };
    let bytes = reply.render(head.keep_alive, head.is_head());
    if answer(client, &bytes, w.cfg.timeout_client).await.is_err() || !head.keep_alive {
        return Next::Close;
    }
    Next::KeepAlive
}

/// `/docker/exapp/<action>` (§4.4): an unknown action is 404 whatever the method (aiohttp
/// matches the path first, H-104), a known one POST only; the wrapper answers everything
/// else itself. No idle timeout around it: `wait_for_start` legitimately polls for ~90 s.
async fn docker_wrapper(
    w: &Worker,
    head: &RequestHead,
    action: &[u8],
    body: &[u8],
) -> ControlReply {
    let action = String::from_utf8_lossy(action);
    if !docker::is_exapp_action(&action) {
        return ControlReply::text(404, "404: Not Found");
    }
    if head.method() != b"POST" {
        return ControlReply::method_not_allowed("POST");
    }
    docker::handle_exapp(&action, head.header("docker-engine-port"), body, &w.docker).await
}

/// A control body: Content-Length up to 1 MiB (413 beyond, H-103), or a chunked one decoded
/// up to the same size (HaRP's aiohttp takes both; AppAPI sends a length).
async fn read_small_body(
    w: &Worker,
    client: &ClientConn,
    buf: &mut Vec<u8>,
    head: &RequestHead,
) -> Result<Vec<u8>, ControlReply> {
    let len = match head.framing {
        BodyFraming::None | BodyFraming::UntilClose => return Ok(Vec::new()),
        BodyFraming::Chunked => return read_chunked_body(w, client, buf).await,
        BodyFraming::ContentLength(n) if n > MAX_CONTROL_BODY_BYTES => {
            return Err(body_too_large(n));
        }
        BodyFraming::ContentLength(n) => n as usize,
    };
    while buf.len() < len {
        match super::body::timed_read_leg(w.cfg.timeout_client, client.as_leg(), buf).await {
            Ok(0) | Err(_) => return Err(ControlReply::text(400, "400: Bad Request")),
            Ok(_) => {}
        }
    }
    Ok(buf.drain(..len).collect())
}

/// A chunked control body, decoded; its framing is checked as the proxy checks it (an
/// invalid chunk is a 400 and the connection closes). A pipelined request stays in `buf`.
async fn read_chunked_body(
    w: &Worker,
    client: &ClientConn,
    buf: &mut Vec<u8>,
) -> Result<Vec<u8>, ControlReply> {
    let mut decoder = crate::http::ChunkedScanner::new();
    let mut body = Vec::new();
    loop {
        let progress = decoder
            .decode(buf, &mut body)
            .map_err(|_| ControlReply::text(400, "400: Bad Request"))?;
        buf.drain(..progress.consumed);
        if body.len() as u64 > MAX_CONTROL_BODY_BYTES {
            return Err(body_too_large(body.len() as u64));
        }
        if progress.done {
            return Ok(body);
        }
        match super::body::timed_read_leg(w.cfg.timeout_client, client.as_leg(), buf).await {
            Ok(0) | Err(_) => return Err(ControlReply::text(400, "400: Bad Request")),
            Ok(_) => {}
        }
    }
}

/// aiohttp's answer to a body over its `client_max_size` (H-103).
fn body_too_large(actual: u64) -> ControlReply {
    ControlReply::text(
        413,
        format!("Maximum request body size {MAX_CONTROL_BODY_BYTES} exceeded, actual body size {actual}"),
    )
}
