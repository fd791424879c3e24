//! Load and volume through the whole appliance's FRP path: 100 concurrent requests and a
//! 1 GiB byte-exact download (sha256), client -> Lyre's public listener -> decision ->
//! 127.0.0.1:<remotePort> -> tunnel -> real frpc 0.65 -> a Rust byte server on the unix
//! socket of frpc's `unix_domain_socket` plugin (HaRP's ExApp config, harp-compat §5.4).

mod appliance_frp_harness;
mod common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use appliance_frp_harness::*;
use common::http::Conn;
use common::pattern::HashSink;
use common::Pattern;
use serde_json::json;

const CONCURRENT: usize = 100;
const GIB: u64 = 1 << 30;

struct Stack {
    app: Appliance,
    frpc: Frpc,
    bytes: ByteServer,
}

fn stack(tls: bool, tcp_mux: bool) -> Stack {
    let app = Appliance::start(tls, &[]);
    let bytes = ByteServer::start();
    let port = pick_remote_port();
    let mut conf = FrpcConf::harp(&app, port, Local::Unix(bytes.sock.clone()));
    conf.tcp_mux = tcp_mux;
    let frpc = Frpc::start_ready(&conf);
    app.push_frp_app(APP_ID, port, json!([{"url": "^/", "access_level": 0}]));
    Stack { app, frpc, bytes }
}

/// `GET /exapps/frpapp/bytes/<n>` on `c`; asserts 200 and the pattern's sha256.
fn get_bytes(c: &mut Conn, n: u64, pat: &Pattern) {
    c.send(&exapp_get(APP_ID, &format!("/bytes/{n}")));
    let head = c.read_head();
    assert_eq!(
        head.status,
        200,
        "GET /bytes/{n}: {}",
        String::from_utf8_lossy(&head.raw)
    );
    let mut sink = HashSink::default();
    c.try_read_body(&head, false, &mut |b| sink.update(b))
        .unwrap_or_else(|e| panic!("body of /bytes/{n}: {e}"));
    assert_eq!(sink.size, n);
    assert_eq!(sink.hex(), pat.sha256(n), "bytes of /bytes/{n}");
}

/// 100 clients start together; each does 3 keep-alive requests of distinct sizes.
fn hundred_concurrent(tls: bool, tcp_mux: bool) {
    let mut s = stack(tls, tcp_mux);
    let port = s.app.lyre.port;
    let gate = Arc::new(Barrier::new(CONCURRENT));
    let workers: Vec<_> = (0..CONCURRENT)
        .map(|i| {
            let gate = gate.clone();
            thread::spawn(move || {
                let pat = Pattern::new();
                let mut c = Conn::connect(port);
                gate.wait();
                for k in 0..3u64 {
                    get_bytes(&mut c, 1 + i as u64 * 7919 + k * 100_003, &pat);
                }
            })
        })
        .collect();
    for (i, w) in workers.into_iter().enumerate() {
        assert!(w.join().is_ok(), "client {i} failed (see its panic above)");
    }
    s.app.lyre.assert_alive();
    assert!(s.bytes.accepted.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    let log = s.frpc.log();
    assert!(!log.contains("window exceeded"), "frpc log:\n{log}");
}

#[test]
fn hundred_concurrent_requests_tls_mux() {
    hundred_concurrent(true, true);
}

#[test]
fn hundred_concurrent_requests_plaintext_no_mux() {
    hundred_concurrent(false, false);
}

#[test]
fn one_gib_byte_exact_through_the_tunnel() {
    let mut s = stack(true, true);
    let pat = Pattern::new();
    let mut c = Conn::connect(s.app.lyre.port);
    c.set_timeout(Duration::from_secs(60));
    get_bytes(&mut c, GIB, &pat);
    // The connection stays usable after the big body.
    get_bytes(&mut c, 12_345, &pat);
    s.app.lyre.assert_alive();
    let log = s.frpc.log();
    assert!(
        !log.contains("window exceeded") && !log.contains("GoAway"),
        "frpc log:\n{log}"
    );
}

#[test]
fn hundred_concurrent_requests_tls_no_mux() {
    hundred_concurrent(true, false);
}

#[test]
fn hundred_concurrent_requests_plaintext_mux() {
    hundred_concurrent(false, true);
}
