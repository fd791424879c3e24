//! What the client gets when the upstream misbehaves: connect refused -> 503, no response
//! within HP_TIMEOUT_SERVER -> 504, invalid or missing response -> 502; a broken chunked
//! response body must not look complete to the client.

mod common;

use std::time::Duration;

use common::http::{get, get_req, Conn};
use common::{free_port, Lyre, Nginx, RawUpstream, Upstream};

#[test]
fn upstream_down_is_503_direct_and_through_nginx() {
    let dead = free_port(); // nothing listens here
    let lyre = Lyre::routed(&[("/exapps/down/", dead)], &[("HP_TIMEOUT_CONNECT", "2s")]);
    let r = get(lyre.port, "/exapps/down/page");
    assert_eq!(
        r.head.status,
        503,
        "{:?}",
        String::from_utf8_lossy(&r.head.raw)
    );
    let ngx = Nginx::start(lyre.port);
    let r = get(ngx.port, "/exapps/down/page");
    assert_eq!(
        r.head.status,
        503,
        "through nginx: {:?}",
        String::from_utf8_lossy(&r.head.raw)
    );
}

#[test]
fn upstream_silent_is_504_after_server_timeout() {
    let up = Upstream::start();
    let lyre = Lyre::routed(&[("/exapps/up/", up.port)], &[("HP_TIMEOUT_SERVER", "1s")]);
    let mut c = Conn::connect(lyre.port);
    c.set_timeout(Duration::from_secs(20));
    c.send(&get_req("/exapps/up/silent"));
    let r = c.read_response();
    assert_eq!(
        r.head.status,
        504,
        "{:?}",
        String::from_utf8_lossy(&r.head.raw)
    );
    // Control: an answer well inside the timeout is passed through.
    let r = get(lyre.port, "/exapps/up/slow?delay=0.1");
    assert_eq!(r.head.status, 200);
    assert!(r.body_str().starts_with("slow done"));
}

fn expect_502(reply: &[u8], what: &str) {
    let raw = RawUpstream::start(reply);
    let lyre = Lyre::routed(
        &[("/exapps/raw/", raw.port)],
        &[("HP_TIMEOUT_SERVER", "5s")],
    );
    let mut c = Conn::connect(lyre.port);
    c.set_timeout(Duration::from_secs(20));
    c.send(&get_req("/exapps/raw/anything"));
    let r = c
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("{what}: no 502 answer: {e}"));
    assert_eq!(
        r.head.status,
        502,
        "{what}: {:?}",
        String::from_utf8_lossy(&r.head.raw)
    );
    assert!(
        raw.accepted() >= 1,
        "{what}: the raw upstream was never contacted"
    );
}

#[test]
fn garbage_upstream_response_is_502() {
    expect_502(b"garbage garbage\r\n\r\n", "garbage status line");
}

#[test]
fn upstream_closing_without_response_is_502() {
    expect_502(b"", "empty response");
}

#[test]
fn invalid_status_code_is_502() {
    expect_502(
        b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        "4-digit status",
    );
}

#[test]
fn upstream_response_with_cl_and_te_is_502() {
    expect_502(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "response with CL and TE",
    );
}

#[test]
fn broken_chunked_response_body_never_looks_complete() {
    let raw = RawUpstream::start(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n");
    let lyre = Lyre::routed(&[("/exapps/raw/", raw.port)], &[]);
    let mut c = Conn::connect(lyre.port);
    c.set_timeout(Duration::from_secs(20));
    c.send(&get_req("/exapps/raw/x"));
    match c.try_read_response(false) {
        Ok(r) if r.head.status == 502 => {}
        Ok(r) => panic!(
            "a response with an invalid chunk size reached the client as complete: {} {:?}",
            r.head.status,
            r.body_str()
        ),
        Err(_) => {} // head forwarded, then the connection was cut: the client sees a truncated body
    }
}
