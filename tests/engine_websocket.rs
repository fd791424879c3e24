//! WebSocket through nginx -> Lyre -> aiohttp echo: the upgrade, frames both ways (both
//! drivers, both pumps), idle tunnels outliving HP_TIMEOUT_CLIENT (H-60) and closed after
//! HP_TIMEOUT_TUNNEL.

mod common;

use std::thread;
use std::time::Duration;

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

fn websocket_matrix_case(driver: &str, pump: &str) {
    let up = Upstream::start();
    let lyre = Lyre::routed(
        &[("/exapps/up/", up.port)],
        &[("LYRE_DRIVER", driver), ("LYRE_PUMP", pump)],
    );
    let mut ws = WsClient::connect(lyre.port, "/exapps/up/ws");
    for size in [1usize, 125, 126, 65_535, 65_536, 1_000_000] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 31 % 253) as u8).collect();
        ws.send_binary(&payload);
        let m = ws
            .recv()
            .unwrap_or_else(|e| panic!("{driver}/{pump}: echo of {size} bytes: {e}"));
        assert_eq!(m.opcode, OP_BINARY);
        assert!(
            m.payload == payload,
            "{driver}/{pump}: {size}-byte echo differs"
        );
    }
    ws.close();
}

#[test]
fn websocket_epoll_copy() {
    websocket_matrix_case("epoll", "copy");
}

#[test]
fn websocket_uring_splice() {
    websocket_matrix_case("uring", "splice");
}

#[test]
fn websocket_epoll_splice() {
    websocket_matrix_case("epoll", "splice");
}

#[test]
fn websocket_uring_copy() {
    websocket_matrix_case("uring", "copy");
}
