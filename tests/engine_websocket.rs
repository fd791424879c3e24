//! WebSocket through nginx -> Lyre -> aiohttp echo: the upgrade, frames both ways, idle
//! tunnels outliving HP_TIMEOUT_CLIENT and closed after HP_TIMEOUT_TUNNEL; idle HTTP
//! keep-alive and half-sent heads closed after HP_TIMEOUT_CLIENT.

mod common;

use std::thread;
use std::time::Duration;

use common::http::{get_req, Conn};
use common::ws::{WsClient, OP_BINARY};
use common::{Lyre, Nginx, Upstream};

#[test]
fn websocket_echo_through_nginx_and_lyre() {
    let up = Upstream::start();
    let lyre = Lyre::routed(&[("/exapps/up/", up.port)], &[]);
    let ngx = Nginx::start(lyre.port);
    let mut ws = WsClient::connect(ngx.port, "/exapps/up/ws");
    for i in 0..20 {
        ws.assert_echo(&format!("message {i}"));
    }
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    ws.send_binary(&big);
    let m = ws.recv().expect("binary echo");
    assert_eq!(m.opcode, OP_BINARY);
    assert!(m.payload == big, "300 kB binary echo differs");
    ws.close();
}

#[test]
fn websocket_echo_direct() {
    let up = Upstream::start();
    let lyre = Lyre::routed(&[("/exapps/up/", up.port)], &[]);
    let mut ws = WsClient::connect(lyre.port, "/exapps/up/ws");
    ws.assert_echo("direct");
    ws.close();
}

#[test]
fn idle_websocket_outlives_client_timeout() {
    let up = Upstream::start();
    let lyre = Lyre::routed(
        &[("/exapps/up/", up.port)],
        &[
            ("HP_TIMEOUT_CLIENT", "2s"),
            ("HP_TIMEOUT_SERVER", "2s"),
            ("HP_TIMEOUT_TUNNEL", "30s"),
        ],
    );
    let ngx = Nginx::start(lyre.port);
    let mut ws = WsClient::connect(ngx.port, "/exapps/up/ws");
    ws.assert_echo("before idle");
    thread::sleep(Duration::from_secs(4)); // the behaviour under test is about idle time
    ws.assert_echo("after 4 s idle (client timeout 2 s)");
    ws.close();
}

#[test]
fn idle_websocket_closed_after_tunnel_timeout() {
    let up = Upstream::start();
    let lyre = Lyre::routed(
        &[("/exapps/up/", up.port)],
        &[("HP_TIMEOUT_CLIENT", "1s"), ("HP_TIMEOUT_TUNNEL", "3s")],
    );
    let mut ws = WsClient::connect(lyre.port, "/exapps/up/ws");
    ws.assert_echo("before idle");
    // Bytes (e.g. a close frame) may come first; the TCP connection must end.
    let mut closed = false;
    for _ in 0..20 {
        match ws.conn.closed_within(Duration::from_secs(15)) {
            Ok(c) => {
                closed = c;
                break;
            }
            Err(_bytes) => continue,
        }
    }
    assert!(
        closed,
        "idle tunnel still open 15 s after a 3 s HP_TIMEOUT_TUNNEL"
    );
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
    let mut closed = false;
    for _ in 0..3 {
        match c.closed_within(Duration::from_secs(15)) {
            Ok(v) => {
                closed = v;
                break;
            }
            Err(bytes) => assert!(
                bytes.starts_with(b"HTTP/1.1 408"),
                "unexpected answer {:?}",
                String::from_utf8_lossy(&bytes)
            ),
        }
    }
    assert!(
        closed,
        "half-sent head kept open 15 s after a 1 s HP_TIMEOUT_CLIENT"
    );
    assert!(
        !up.saw("case=slowloris"),
        "a half-sent head reached the upstream"
    );
}
