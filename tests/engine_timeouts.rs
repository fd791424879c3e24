//! HaRP's timeout semantics (harp-compat.md §2.2, §6.1): HP_TIMEOUT_CLIENT bounds waiting
//! for request data and keep-alive idle time but never cuts a streaming response;
//! HP_TIMEOUT_SERVER bounds the gaps of a streaming response (H-61). These tests sleep or
//! wait on purpose: the behaviour under test is about time.

mod common;

use std::time::Duration;

use common::http::{get_req, Conn};
use common::{Lyre, Upstream};

/// Waits for the peer to close, tolerating an optional error answer first (`allowed`
/// status prefix, e.g. `HTTP/1.1 408`). Returns whether it closed within `within`.
fn closes_within(c: &mut Conn, within: Duration, allowed: &[u8]) -> bool {
    for _ in 0..3 {
        match c.closed_within(within) {
            Ok(v) => return v,
            Err(bytes) => assert!(
                bytes.starts_with(allowed),
                "unexpected bytes while waiting for the close: {:?}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
    false
}

#[test]
fn idle_keepalive_connection_closed_after_client_timeout() {
    let up = Upstream::start();
    let lyre = Lyre::routed(&[("/exapps/up/", up.port)], &[("HP_TIMEOUT_CLIENT", "1s")]);
    let mut c = Conn::connect(lyre.port);
    c.send(&get_req("/exapps/up/page"));
    assert_eq!(c.read_response().head.status, 200);
    let closed = c.closed_within(Duration::from_secs(15));
    assert_eq!(
        closed,
        Ok(true),
        "idle keep-alive connection not closed 15 s after a 1 s HP_TIMEOUT_CLIENT"
    );
}

#[test]
fn half_sent_head_closed_after_client_timeout() {
    let up = Upstream::start();
    let lyre = Lyre::routed(&[("/exapps/up/", up.port)], &[("HP_TIMEOUT_CLIENT", "1s")]);
    let mut c = Conn::connect(lyre.port);
    c.send(b"GET /exapps/up/page?case=slowloris HTTP/1.1\r\nHost: t\r\n");
    // HaRP (HAProxy) answers 408 here; a bare close is acceptable too.
    let closed = closes_within(&mut c, Duration::from_secs(15), b"HTTP/1.1 408");
    assert!(
        closed,
        "half-sent head kept open 15 s after a 1 s HP_TIMEOUT_CLIENT"
    );
    assert!(
        !up.saw("case=slowloris"),
        "a half-sent head reached the upstream"
    );
}

#[test]
fn stalled_request_body_closed_after_client_timeout() {
    let up = Upstream::start();
    let lyre = Lyre::routed(&[("/exapps/up/", up.port)], &[("HP_TIMEOUT_CLIENT", "1s")]);
    let mut c = Conn::connect(lyre.port);
    c.send(b"POST /exapps/up/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n0123456789");
    assert!(
        closes_within(&mut c, Duration::from_secs(15), b"HTTP/1.1 408"),
        "request body stalled 15 s with a 1 s HP_TIMEOUT_CLIENT, connection still open"
    );
}

#[test]
fn sse_gaps_longer_than_client_timeout_are_not_cut() {
    // H-61: the client timeout must not cut a streaming response; gaps < server timeout.
    let up = Upstream::start();
    let lyre = Lyre::routed(
        &[("/exapps/up/", up.port)],
        &[("HP_TIMEOUT_CLIENT", "1s"), ("HP_TIMEOUT_SERVER", "4s")],
    );
    let mut c = Conn::connect(lyre.port);
    c.send(&get_req("/exapps/up/sse?gap=1.5&n=3"));
    let r = c
        .try_read_response(false)
        .expect("SSE stream with 1.5 s gaps, client timeout 1 s, server timeout 4 s");
    assert_eq!(r.head.status, 200);
    assert_eq!(
        r.body_str(),
        "id: 0\ndata: event 0\n\nid: 1\ndata: event 1\n\nid: 2\ndata: event 2\n\n"
    );
}

#[test]
fn sse_gap_longer_than_server_timeout_cuts_the_stream() {
    let up = Upstream::start();
    let lyre = Lyre::routed(
        &[("/exapps/up/", up.port)],
        &[("HP_TIMEOUT_CLIENT", "30s"), ("HP_TIMEOUT_SERVER", "1s")],
    );
    let mut c = Conn::connect(lyre.port);
    c.set_timeout(Duration::from_secs(20));
    c.send(&get_req("/exapps/up/sse?gap=6&n=2"));
    let head = c.read_head();
    assert_eq!(head.status, 200);
    let mut body = Vec::new();
    let res = c.try_read_body(&head, false, &mut |b| body.extend_from_slice(b));
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(
        res.is_err(),
        "a 6 s gap with HP_TIMEOUT_SERVER=1s must cut the stream; got a complete body {body:?}"
    );
    assert!(
        body.starts_with("id: 0\ndata: event 0\n\n"),
        "first event delivered: {body:?}"
    );
    assert!(
        !body.contains("event 1"),
        "second event came after the cut: {body:?}"
    );
}
