//! The FRP path of the whole appliance with real peers: nginx -> `lyre serve` -> FRP tunnel
//! -> the real frpc 0.65 (HaRP's ExApp config, harp-compat.md §5.4) -> a real nc_py_api
//! ExApp on a unix socket. The record is pushed the way AppAPI does (host 127.0.0.1,
//! port = remotePort), so requests go to Lyre's 127.0.0.1:<remotePort> listener and through
//! the tunnel. A 200 from nc_py_api proves its AppAPIAuthMiddleware accepted the headers
//! Lyre injected (harp-compat §3.7).
//!
//! Matrix: TLS (mTLS with the PKI Lyre generated) x tcpMux; Lyre detects both per
//! connection (frp-protocol §1.3, §2.7).

mod appliance_frp_harness;
mod common;

use appliance_frp_harness::*;
use common::exapp::FakeNc;
use common::http::Conn;
use common::ws::{base64, WsClient};
use common::Nginx;
use serde_json::json;

const ALICE_PASS: &str = "pass-alice";

/// The record AppAPI keeps for the ExApp in FRP mode.
fn record(port: u16) -> serde_json::Value {
    json!({
        "exapp_token": APP_SECRET,
        "exapp_version": APP_VERSION,
        "host": "127.0.0.1",
        "port": port,
        "routes": routes(),
    })
}

fn routes() -> serde_json::Value {
    json!([
        {"url": "^/public", "access_level": 0},
        {"url": "^/user", "access_level": 1},
        {"url": "^/ws", "access_level": 0},
    ])
}

/// The stack of one case; fields are kept alive for the test's duration.
struct Stack {
    nginx: Nginx,
    app: Appliance,
    frpc: Frpc,
    exapp: ExApp,
    nc: FakeNc,
}

fn stack(tls: bool, tcp_mux: bool) -> Stack {
    let port = pick_remote_port();
    // fake_nc answers user-info only for apps it knows (Nextcloud: 401 otherwise).
    let nc = FakeNc::start(&json!({
        "shared_key": SHARED_KEY,
        "apps": {APP_ID: record(port)},
        "users": {ALICE_PASS: {"user_id": "alice", "access_level": 1}},
    }));
    let nc_url = format!("http://127.0.0.1:{}", nc.port);
    let app = Appliance::start(tls, &[("NC_INSTANCE_URL", nc_url.as_str())]);
    let exapp = ExApp::start(port);
    let mut conf = FrpcConf::harp(&app, port, Local::Unix(exapp.sock.clone()));
    conf.tcp_mux = tcp_mux;
    let frpc = Frpc::start_ready(&conf);
    app.push_record(APP_ID, &record(port));
    let nginx = Nginx::start(app.lyre.port);
    Stack {
        nginx,
        app,
        frpc,
        exapp,
        nc,
    }
}

/// PUBLIC route, anonymous: nc_py_api answers with the injected headers.
fn public_get(port: u16) {
    let mut c = Conn::connect(port);
    c.send(&exapp_get(APP_ID, "/public/hello?x=1&y=%2F"));
    let r = c.read_response();
    assert_eq!(r.head.status, 200, "public GET: {}", r.body_str());
    let j = r.json();
    assert_eq!(j["raw_path"], "/public/hello", "{j}");
    assert_eq!(j["query"], "x=1&y=%2F", "{j}");
    assert_eq!(j["user"], "", "anonymous user: {j}");
    assert_eq!(echoed_header(&j, "ex-app-id"), Some(APP_ID), "{j}");
    assert_eq!(echoed_header(&j, "ex-app-version"), Some(APP_VERSION));
    assert_eq!(echoed_header(&j, "aa-version"), Some("32"));
    let token = base64(format!(":{APP_SECRET}").as_bytes());
    assert_eq!(
        echoed_header(&j, "authorization-app-api"),
        Some(token.as_str())
    );
    // Keep-alive through nginx, Lyre and the tunnel: more requests on the same connection.
    for i in 0..20 {
        c.send(&exapp_get(APP_ID, &format!("/public/again?i={i}")));
        let r = c.read_response();
        assert_eq!(r.head.status, 200);
        assert_eq!(r.json()["query"], format!("i={i}"));
    }
}

/// USER route: anonymous -> 403 from Lyre; alice's session (user-info on fake_nc) -> the
/// ExApp sees user "alice" decoded from AUTHORIZATION-APP-API by nc_py_api.
fn user_route(port: u16) {
    let r = common::http::get(port, &format!("/exapps/{APP_ID}/user/me"));
    assert_eq!(r.head.status, 403);
    assert_eq!(r.body_str(), "403 Forbidden");
    let mut c = Conn::connect(port);
    c.send(
        format!(
            "GET /exapps/{APP_ID}/user/me HTTP/1.1\r\nHost: lyre.test\r\n\
             Cookie: oc_sessionPassphrase={ALICE_PASS}\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.head.status, 200, "user route: {}", r.body_str());
    let j = r.json();
    assert_eq!(j["user"], "alice", "{j}");
    assert_eq!(j["raw_path"], "/user/me");
}

/// AppAPI's signed /heartbeat (all six headers, harp-compat §3.5) reaches the ExApp.
fn signed_heartbeat(port: u16, remote_port: u16) {
    let mut c = Conn::connect(port);
    let auth = base64(format!("admin:{APP_SECRET}").as_bytes());
    c.send(
        format!(
            "GET /exapps/{APP_ID}/heartbeat HTTP/1.1\r\nHost: lyre.test\r\nAA-VERSION: 5.0.0\r\n\
             EX-APP-ID: {APP_ID}\r\nEX-APP-VERSION: {APP_VERSION}\r\nAUTHORIZATION-APP-API: {auth}\r\n\
             AA-REQUEST-ID: req-42\r\nharp-shared-key: {SHARED_KEY}\r\nex-app-port: {remote_port}\r\n\
             ex-app-host: 127.0.0.1\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.head.status, 200, "signed heartbeat: {}", r.body_str());
    let j = r.json();
    assert_eq!(j["status"], "ok");
    assert_eq!(echoed_header(&j, "aa-version"), Some("32"), "{j}");
    assert_eq!(
        echoed_header(&j, "authorization-app-api"),
        Some(auth.as_str())
    );
    assert_eq!(echoed_header(&j, "aa-request-id"), Some("req-42"));
}

/// A WebSocket through the tunnel: nc_py_api checks the upgrade's auth, then echoes.
fn websocket(port: u16) {
    let mut ws = WsClient::connect(port, &format!("/exapps/{APP_ID}/ws"));
    let first = ws.recv().expect("first ws message");
    assert_eq!(first.payload, b"user:", "anonymous user on the ws");
    for i in 0..5 {
        ws.assert_echo(&format!("through the tunnel #{i}"));
    }
    ws.assert_echo(&"x".repeat(200_000));
    ws.close();
}

fn all_checks(tls: bool, tcp_mux: bool) {
    let mut s = stack(tls, tcp_mux);
    let port = s.nginx.port;
    public_get(port);
    user_route(port);
    signed_heartbeat(port, s.frpc.conf.remote_port);
    websocket(port);
    // The same through Lyre's public listener directly (no nginx).
    public_get(s.app.lyre.port);
    s.app.lyre.assert_alive();
    let log = s.frpc.log();
    assert!(
        !log.contains("window exceeded") && !log.contains("GoAway"),
        "frpc log:\n{log}"
    );
    assert!(s.exapp.guard.exited().is_none());
    let _ = &s.nc;
}

#[test]
fn nginx_lyre_tunnel_nc_py_api_tls_mux() {
    all_checks(true, true);
}

#[test]
fn nginx_lyre_tunnel_nc_py_api_plaintext_mux() {
    all_checks(false, true);
}

#[test]
fn nginx_lyre_tunnel_nc_py_api_plaintext_no_mux() {
    all_checks(false, false);
}

#[test]
fn nginx_lyre_tunnel_nc_py_api_tls_no_mux() {
    all_checks(true, false);
}
