//! The FRP fast path through the whole appliance: `lyre serve` with one worker (so every
//! request lands on the worker that owns the FRP server), the REAL frpc registering a
//! remotePort in front of tests/peers/upstream.py, and an ExApp record pointing at
//! 127.0.0.1:<remotePort>. Requests must be answered through an in-process work stream
//! (Lyre logs "frp fast path" at debug level for each one), byte-exact: a page, a 64 MiB
//! download (sha256), a 64 MiB upload, a WebSocket echo. Once with plaintext FRP
//! (HP_FRP_DISABLE_TLS=true, tcpMux on), once with mTLS (certificates generated here), and
//! once with the client on the HTTPS frontend (TLS client leg <-> work stream: both copy).

mod common;
mod frp_harness;

use std::io;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use common::appapi::{AppApi, SHARED_KEY};
use common::http::{get_req, Conn};
use common::pattern::HashSink;
use common::tls::make_certs;
use common::ws::WsClient;
use common::{Lyre, Pattern, TempDir, Upstream};
use frp_harness::{pick_remote_port, Frpc, FrpcOpts, ProxyOpts, Server};
use serde_json::json;

const BIG: u64 = 64 * 1024 * 1024;
const APP: &str = "fastapp";
const FAST_LINE: &str = "frp fast path";

struct Setup {
    lyre: Lyre,
    _upstream: Upstream,
    frpc: Frpc,
    _certs: TempDir,
    /// Clients connect over HTTPS with this config (else plain HTTP).
    https: Option<Arc<rustls::ClientConfig>>,
}

impl Setup {
    /// A client connection to Lyre's HTTP or (with `https`) HTTPS listener.
    fn conn(&self) -> Conn {
        match &self.https {
            Some(cfg) => Conn::connect_tls(self.lyre.https_port, cfg),
            None => Conn::connect(self.lyre.port),
        }
    }

    fn client_port(&self) -> u16 {
        match self.https {
            Some(_) => self.lyre.https_port,
            None => self.lyre.port,
        }
    }
}

/// Lyre (1 worker, debug log), frpc with one proxy to upstream.py, the ExApp record.
fn setup(tls: bool, tcp_mux: bool) -> Setup {
    setup_with(tls, tcp_mux, false)
}

/// [`setup`]; `https`: a `cert.pem` in the certs dir, clients use the HTTPS frontend.
fn setup_with(tls: bool, tcp_mux: bool, https: bool) -> Setup {
    setup_workers(tls, tcp_mux, https, &[("LYRE_WORKERS", "1")])
}

/// [`setup_with`] with extra Lyre variables (`LYRE_WORKERS` must be among them).
fn setup_workers(tls: bool, tcp_mux: bool, https: bool, extra: &[(&str, &str)]) -> Setup {
    let upstream = Upstream::start();
    let (lyre, frpc, certs, https) = tunnel_to(upstream.port, tls, tcp_mux, https, extra);
    Setup {
        lyre,
        _upstream: upstream,
        frpc,
        _certs: certs,
        https,
    }
}

/// Lyre (debug log, `extra` variables), a real frpc whose proxy forwards to
/// 127.0.0.1:`local_port`, and the ExApp record [`APP`] pointing at its remote port.
/// Returns the certs dir (alive as long as Lyre) and, with `https`, the client config.
fn tunnel_to(
    local_port: u16,
    tls: bool,
    tcp_mux: bool,
    https: bool,
    extra: &[(&str, &str)],
) -> (Lyre, Frpc, TempDir, Option<Arc<rustls::ClientConfig>>) {
    let certs = TempDir::new("fastpath-certs");
    let pki = tls.then(|| lyre::tls::ensure_frp_pki(certs.path(), 30).expect("generate PKI"));
    let https = https.then(|| make_certs(certs.path()).http11_client());
    let certs_dir = certs.path().to_str().expect("utf-8 temp path").to_string();
    let mut env = extra.to_vec();
    env.extend([
        ("HP_LOG_LEVEL", "debug"),
        ("LYRE_CERTS_DIR", certs_dir.as_str()),
    ]);
    if !tls {
        env.push(("HP_FRP_DISABLE_TLS", "true"));
    }
    let lyre = Lyre::start(&env, &[]);
    let remote_port = pick_remote_port();
    let server = Server {
        port: lyre.frp_port,
        failures: Arc::new(AtomicUsize::new(0)),
        pki,
    };
    let proxy = ProxyOpts::tcp("fastapp-proxy", remote_port, local_port);
    let mut opts = FrpcOpts::new(&server, vec![proxy]);
    opts.token = SHARED_KEY.into();
    opts.tcp_mux = tcp_mux;
    let frpc = Frpc::start(&opts);
    frpc.wait_log("start proxy success", Duration::from_secs(20));
    let record = json!({
        "exapp_token": "fast-token", "exapp_version": "1.0.0",
        "host": "127.0.0.1", "port": remote_port,
        "routes": [{"url": ".*", "access_level": 0}],
    });
    let api = AppApi::new(lyre.port, 0).with_engine_port(None);
    let path = format!("/exapps/app_api/exapp_storage/{APP}");
    let r = api.call("POST", &path, record.to_string().as_bytes());
    assert_eq!(r.head.status, 204, "storing the record: {}", r.body_str());
    if https.is_some() {
        let port = lyre.https_port;
        let open = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        assert!(
            common::poll_until(Duration::from_secs(10), open),
            "no HTTPS listener"
        );
    }
    (lyre, frpc, certs, https)
}

fn fast_path_count(lyre: &Lyre) -> usize {
    lyre.log().matches(FAST_LINE).count()
}

/// Waits (deadline, no sleep-assert) until the log shows at least `n` fast-path lines.
fn assert_fast_path_used(s: &Setup, n: usize, what: &str) {
    let ok = common::poll_until(Duration::from_secs(5), || fast_path_count(&s.lyre) >= n);
    assert!(
        ok,
        "{what}: expected >= {n} `{FAST_LINE}` lines, got {}\n--- lyre log ---\n{}\n--- frpc log ---\n{}",
        fast_path_count(&s.lyre),
        s.lyre.log(),
        s.frpc.log_text()
    );
}

fn page(s: &Setup) {
    let before = fast_path_count(&s.lyre);
    let mut c = s.conn();
    c.send(&get_req(&format!("/exapps/{APP}/echo-headers?q=1")));
    let r = c.read_response();
    assert_eq!(r.head.status, 200, "page: {}", r.body_str());
    let j = r.json();
    assert_eq!(j["query"], "q=1", "{j}");
    // The ExApp sees HaRP's injected headers: the request went through the decision.
    let headers = j.to_string().to_ascii_lowercase();
    assert!(headers.contains("ex-app-id"), "{j}");
    assert!(headers.contains("authorization-app-api"), "{j}");
    // Keep-alive to the client survives a fast-path exchange.
    c.send(&get_req(&format!("/exapps/{APP}/echo-headers?q=2")));
    assert_eq!(c.read_response().json()["query"], "q=2");
    assert_fast_path_used(s, before + 2, "page");
}

fn download(s: &Setup, query: &str) {
    let before = fast_path_count(&s.lyre);
    let mut c = s.conn();
    c.set_timeout(Duration::from_secs(60));
    c.send(&get_req(&format!("/exapps/{APP}/bytes/{BIG}{query}")));
    let head = c.read_head();
    assert_eq!(head.status, 200, "{:?}", String::from_utf8_lossy(&head.raw));
    let mut sink = HashSink::default();
    c.try_read_body(&head, false, &mut |b| sink.update(b))
        .unwrap_or_else(|e| panic!("download broken after {} bytes: {e}", sink.size));
    assert_eq!(sink.size, BIG, "download size");
    assert_eq!(sink.hex(), Pattern::new().sha256(BIG), "download sha256");
    assert_fast_path_used(s, before + 1, "download");
}

fn upload(s: &Setup) {
    let before = fast_path_count(&s.lyre);
    let mut c = s.conn();
    c.set_timeout(Duration::from_secs(60));
    let head =
        format!("POST /exapps/{APP}/upload HTTP/1.1\r\nHost: t\r\nContent-Length: {BIG}\r\n\r\n");
    c.send(head.as_bytes());
    Pattern::new().for_each_block(BIG, |b| c.send(b));
    let r = c.read_response();
    assert_eq!(r.head.status, 200, "upload: {}", r.body_str());
    let j = r.json();
    assert_eq!(j["size"], BIG, "upload size seen by the ExApp");
    assert_eq!(j["sha256"], Pattern::new().sha256(BIG), "upload sha256");
    assert_fast_path_used(s, before + 1, "upload");
}

fn websocket(s: &Setup) {
    let before = fast_path_count(&s.lyre);
    let mut ws = WsClient::upgrade(s.conn(), s.client_port(), &format!("/exapps/{APP}/ws"));
    ws.assert_echo("hello over the fast path");
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    ws.send_binary(&blob);
    let m = ws.recv().expect("binary echo");
    assert_eq!(m.payload, blob, "binary echo");
    ws.assert_echo("second");
    ws.close();
    assert_fast_path_used(s, before + 1, "websocket");
}

/// With tcpMux, a work stream whose exchange completed is pooled and reused by the next
/// request (no new work connection, frpc keeps its connection to the ExApp).
fn assert_streams_reused(s: &Setup) {
    let log = s.lyre.log();
    assert!(
        log.contains("frp fast path (pooled stream)"),
        "no pooled work stream was reused\n{log}"
    );
}

#[test]
fn fast_path_plaintext_frp() {
    let s = setup(false, true);
    page(&s);
    assert_streams_reused(&s);
    download(&s, "");
    download(&s, "?cl=1");
    upload(&s);
    websocket(&s);
}

#[test]
fn fast_path_tls_frp() {
    let s = setup(true, true);
    page(&s);
    assert_streams_reused(&s);
    download(&s, "");
    upload(&s);
    websocket(&s);
}

/// H-20 on the fast path: an HTTPS client's requests, bodies and WebSocket go into the
/// in-process work stream (a TLS leg and a work-stream leg: copied both ways).
#[test]
fn fast_path_https_client() {
    let s = setup_with(true, true, true);
    page(&s);
    download(&s, "");
    download(&s, "?cl=1");
    upload(&s);
    websocket(&s);
}

#[test]
fn fast_path_without_tcp_mux() {
    let s = setup(false, false);
    page(&s);
    download(&s, "?cl=1");
    websocket(&s);
}

/// Two workers, one tunnel: a connection accepted by the worker the tunnel does not live on
/// is handed over to the one it lives on. Every request still takes the in-process fast path
/// (none goes through the tunnel's loopback listener, which would log no fast-path line),
/// keep-alive continues on the new worker, and bodies and a WebSocket work after it.
#[test]
fn fast_path_from_every_worker() {
    from_every_worker("io_uring", false);
}

/// The same on the epoll driver: the handed-over fd leaves one worker's epoll set and
/// joins the other's.
#[test]
fn fast_path_from_every_worker_epoll() {
    from_every_worker("epoll", false);
}

/// HTTPS clients too: the rustls session moves with the socket, and the connection's next
/// requests (keep-alive), bodies and a WebSocket run over the moved session.
#[test]
fn fast_path_from_every_worker_https() {
    from_every_worker("io_uring", true);
}

fn from_every_worker(driver: &str, https: bool) {
    let s = setup_workers(
        false,
        true,
        https,
        &[("LYRE_WORKERS", "2"), ("LYRE_DRIVER", driver)],
    );
    let before = fast_path_count(&s.lyre);
    // SO_REUSEPORT spreads new connections by their ports: with 32 of them, the chance that
    // none lands on worker 1 is 2^-32.
    const CONNS: usize = 32;
    for i in 0..CONNS {
        let mut c = s.conn();
        for q in 0..2 {
            c.send(&get_req(&format!("/exapps/{APP}/echo-headers?c={i}&q={q}")));
            let r = c.read_response();
            assert_eq!(
                r.head.status,
                200,
                "connection {i}, request {q}: {}",
                r.body_str()
            );
            assert_eq!(r.json()["query"], format!("c={i}&q={q}"));
        }
    }
    assert_fast_path_used(&s, before + 2 * CONNS, "requests from both workers");
    let handed = s
        .lyre
        .log()
        .lines()
        .filter(|l| l.contains("connection handed over to its tunnel's worker"))
        .filter(|l| l.contains(if https { "tls=true" } else { "tls=false" }))
        .count();
    assert!(
        handed >= 1,
        "no connection was handed over\n{}",
        s.lyre.log()
    );
    for _ in 0..4 {
        download(&s, "?cl=1");
        upload(&s);
        websocket(&s);
    }
}

/// Two workers, two tunnels: worker 0 accepts every frpc connection and places each new
/// session on the worker with fewer, so the second tunnel lives on worker 1. That one runs
/// without tcpMux: each of its work connections is a new TLS connection, accepted by
/// worker 0 and moved to worker 1 by its run_id. Requests to both ExApps, from connections
/// on either worker, all take the in-process fast path (handed over to the tunnel's worker
/// when they land on the other), byte-exact. Ports and proxy names stay unique across
/// workers: a third frpc placed on worker 0 cannot take worker 1's port or name.
#[test]
fn tunnels_live_on_every_worker() {
    let upstream = Upstream::start();
    let certs = TempDir::new("spread-certs");
    let pki = lyre::tls::ensure_frp_pki(certs.path(), 30).expect("generate PKI");
    let certs_dir = certs.path().to_str().expect("utf-8 temp path").to_string();
    let env = [
        ("LYRE_WORKERS", "2"),
        ("HP_LOG_LEVEL", "debug"),
        ("LYRE_CERTS_DIR", certs_dir.as_str()),
    ];
    let lyre = Lyre::start(&env, &[]);
    let server = Server {
        port: lyre.frp_port,
        failures: Arc::new(AtomicUsize::new(0)),
        pki: Some(pki),
    };
    let frpc_for = |name: &str, port: u16, tcp_mux: bool| {
        let mut opts = FrpcOpts::new(&server, vec![ProxyOpts::tcp(name, port, upstream.port)]);
        opts.token = SHARED_KEY.into();
        opts.tcp_mux = tcp_mux;
        Frpc::start(&opts)
    };
    let api = AppApi::new(lyre.port, 0).with_engine_port(None);
    let apps = ["spread0", "spread1"];
    let mut tunnels = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        let port = pick_remote_port();
        let frpc = frpc_for(&format!("{app}-proxy"), port, i == 0);
        frpc.wait_log("start proxy success", Duration::from_secs(20));
        let record = json!({
            "exapp_token": "spread-token", "exapp_version": "1.0.0",
            "host": "127.0.0.1", "port": port,
            "routes": [{"url": ".*", "access_level": 0}],
        });
        let path = format!("/exapps/app_api/exapp_storage/{app}");
        let r = api.call("POST", &path, record.to_string().as_bytes());
        assert_eq!(r.head.status, 204, "storing {app}: {}", r.body_str());
        tunnels.push((port, frpc));
    }
    let logins = |worker: usize| {
        let want = format!("worker={worker}");
        lyre.log()
            .lines()
            .filter(|l| l.contains("frp client logged in") && l.contains(&want))
            .count()
    };
    assert_eq!(
        (logins(0), logins(1)),
        (1, 1),
        "one session per worker\n{}",
        lyre.log()
    );

    let count = || lyre.log().matches(FAST_LINE).count();
    let before = count();
    const CONNS: usize = 16;
    for i in 0..CONNS {
        for app in apps {
            let mut c = Conn::connect(lyre.port);
            for q in 0..2 {
                c.send(&get_req(&format!("/exapps/{app}/echo-headers?c={i}&q={q}")));
                let r = c.read_response();
                assert_eq!(r.head.status, 200, "{app} {i}/{q}: {}", r.body_str());
                assert_eq!(r.json()["query"], format!("c={i}&q={q}"));
            }
        }
    }
    let all = before + 2 * 2 * CONNS;
    let fast = common::poll_until(Duration::from_secs(5), || count() >= all);
    assert!(
        fast,
        "expected >= {all} fast-path lines, got {}\n{}",
        count(),
        lyre.log()
    );
    for app in apps {
        let mut c = Conn::connect(lyre.port);
        c.set_timeout(Duration::from_secs(60));
        c.send(&get_req(&format!("/exapps/{app}/bytes/{BIG}?cl=1")));
        let head = c.read_head();
        assert_eq!(head.status, 200, "{app} download");
        let mut sink = HashSink::default();
        c.try_read_body(&head, false, &mut |b| sink.update(b))
            .unwrap_or_else(|e| panic!("{app}: download broken after {} bytes: {e}", sink.size));
        assert_eq!(
            sink.hex(),
            Pattern::new().sha256(BIG),
            "{app} download sha256"
        );
    }

    // Sessions (1, 1): a third goes to worker 0, and worker 1's port and name are taken.
    let thief = frpc_for("thief", tunnels[1].0, true);
    thief.wait_log(
        "[thief] start error: port already used",
        Duration::from_secs(20),
    );
    drop(thief);
    let ended = || lyre.log().contains("frp client session ended");
    assert!(
        common::poll_until(Duration::from_secs(10), ended),
        "thief's session ended"
    );
    let twin = frpc_for("spread1-proxy", pick_remote_port(), true);
    twin.wait_log(
        "proxy [spread1-proxy] already exists",
        Duration::from_secs(20),
    );
    assert_eq!(
        (logins(0), logins(1)),
        (3, 1),
        "the extra clients were placed on worker 0\n{}",
        lyre.log()
    );
}

/// frpc killed while a body streams up the tunnel (read straight into the yamux send
/// queue): the user's connection ends within the timeouts instead of hanging, Lyre keeps
/// serving, and the ExApp answers 503 until a tunnel is back.
#[test]
fn frpc_killed_mid_upload_ends_the_user_connection() {
    let mut s = setup(true, true);
    let mut c = s.conn();
    c.set_timeout(Duration::from_secs(20));
    let total: u64 = 1 << 30;
    let head =
        format!("POST /exapps/{APP}/upload HTTP/1.1\r\nHost: t\r\nContent-Length: {total}\r\n\r\n");
    c.send(head.as_bytes());
    let block = Pattern::new().block(0);
    for _ in 0..128 {
        c.send(&block); // 8 MiB through the tunnel before the kill
    }
    s.frpc.kill();
    let t = std::time::Instant::now();
    // Keep sending (never the whole body) until Lyre refuses bytes or 20 s pass.
    let mut sent: u64 = 128 * block.len() as u64;
    let mut write_failed = false;
    while t.elapsed() < Duration::from_secs(20) && sent + (block.len() as u64) < total {
        if c.send_lenient(&block).is_err() {
            write_failed = true;
            break;
        }
        sent += block.len() as u64;
    }
    let ended = write_failed
        || match c.try_read_response(false) {
            Ok(r) => {
                assert!(
                    r.head.status >= 500,
                    "answer after frpc died: {}",
                    r.head.status
                );
                true
            }
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        };
    assert!(
        ended,
        "upload connection still open {:?} after frpc died",
        t.elapsed()
    );
    s.lyre.assert_alive();
    assert_503_once_frpc_is_gone(&s);
}

/// Within 10 s of frpc's death, the ExApp answers 503 (as HaRP does for an unreachable one).
fn assert_503_once_frpc_is_gone(s: &Setup) {
    let gone = common::poll_until(Duration::from_secs(10), || {
        let mut c = Conn::connect(s.lyre.port);
        c.send(&get_req(&format!("/exapps/{APP}/echo-headers")));
        c.read_response().head.status == 503
    });
    assert!(gone, "no 503 after frpc died\n{}", s.lyre.log());
}

/// A tunnel that goes away: the record still points at its port, nothing listens there
/// any more, so the request is answered 503 (as HaRP answers an unreachable ExApp).
#[test]
fn tunnel_gone_is_503() {
    let mut s = setup(false, true);
    page(&s);
    s.frpc.kill();
    assert_503_once_frpc_is_gone(&s);
}

/// A pooled work stream belongs to the proxy it was opened for. frpc A registers the
/// remote port and serves a request (its stream is pooled), then drops the proxy with a
/// config reload (CloseProxy, session kept); frpc B registers the same port for another
/// backend. The next request must reach B's backend, never A's through the stale stream.
#[test]
fn pooled_streams_do_not_outlive_their_proxy() {
    let (first_backend, second_backend) = (Upstream::start(), Upstream::start());
    let lyre = Lyre::start(
        &[
            ("LYRE_WORKERS", "1"),
            ("HP_LOG_LEVEL", "debug"),
            ("HP_FRP_DISABLE_TLS", "true"),
        ],
        &[],
    );
    let remote_port = pick_remote_port();
    let server = Server {
        port: lyre.frp_port,
        failures: Arc::new(AtomicUsize::new(0)),
        pki: None,
    };
    let admin_port = common::free_port();
    let proxy = ProxyOpts::tcp("first-proxy", remote_port, first_backend.port);
    let mut opts = FrpcOpts::new(&server, vec![proxy]);
    opts.token = SHARED_KEY.into();
    opts.extra = format!("webServer.addr = \"127.0.0.1\"\nwebServer.port = {admin_port}\n");
    let first = Frpc::start(&opts);
    first.wait_log("start proxy success", Duration::from_secs(20));
    let record = json!({
        "exapp_token": "fast-token", "exapp_version": "1.0.0",
        "host": "127.0.0.1", "port": remote_port,
        "routes": [{"url": ".*", "access_level": 0}],
    });
    let api = AppApi::new(lyre.port, 0).with_engine_port(None);
    let r = api.call(
        "POST",
        &format!("/exapps/app_api/exapp_storage/{APP}"),
        record.to_string().as_bytes(),
    );
    assert_eq!(r.head.status, 204, "storing the record: {}", r.body_str());
    let get = |tag: &str| {
        let mut c = Conn::connect(lyre.port);
        c.send(&get_req(&format!("/exapps/{APP}/echo-headers?{tag}")));
        c.read_response().head.status
    };
    assert_eq!(get("before-reload"), 200);
    assert!(first_backend.saw("before-reload"));

    // frpc A drops its proxy but keeps its session (CloseProxy).
    opts.proxies.clear();
    std::fs::write(&first.config, opts.toml(&first.log)).expect("rewrite frpc config");
    let reload = std::process::Command::new(frp_harness::frpc_path())
        .arg("reload")
        .arg("-c")
        .arg(&first.config)
        .output()
        .expect("frpc reload");
    assert!(reload.status.success(), "frpc reload: {reload:?}");
    let freed = common::poll_until(Duration::from_secs(10), || {
        std::net::TcpListener::bind(("127.0.0.1", remote_port)).is_ok()
    });
    assert!(
        freed,
        "the closed proxy's port stayed taken\n{}",
        lyre.log()
    );

    let proxy = ProxyOpts::tcp("second-proxy", remote_port, second_backend.port);
    let mut second_opts = FrpcOpts::new(&server, vec![proxy]);
    second_opts.token = SHARED_KEY.into();
    let second = Frpc::start(&second_opts);
    second.wait_log("start proxy success", Duration::from_secs(20));
    for i in 0..3 {
        assert_eq!(get(&format!("after-reload-{i}")), 200);
    }
    assert!(
        !first_backend.saw("after-reload"),
        "a request went to the closed proxy's backend through a pooled stream"
    );
    assert!(second_backend.saw("after-reload-0"));
    assert!(first.log_text().contains("first-proxy"), "frpc A stayed up");
}

/// The stale keep-alive race on the fast path: the ExApp closes its connection (frpc then
/// closes the pooled work stream) just as Lyre reuses the stream for the next request. An
/// idempotent request goes again on a new work stream; a POST with a body gets 502 and is
/// never sent twice.
#[test]
fn a_pooled_work_stream_closed_as_it_is_reused_is_retried_for_idempotent_requests() {
    let (up, seen) = common::closes_on_second_request();
    let (lyre, frpc, _certs, _) =
        tunnel_to(up.port(), false, true, false, &[("LYRE_WORKERS", "1")]);
    let mut c = Conn::connect(lyre.port);
    c.send(&get_req(&format!("/exapps/{APP}/one")));
    let first = c.read_response();
    assert_eq!(
        (first.head.status, first.body_str().as_str()),
        (200, "conn 0")
    );
    c.send(&get_req(&format!("/exapps/{APP}/two")));
    let second = c.read_response();
    assert_eq!(
        (second.head.status, second.body_str().as_str()),
        (200, "conn 1"),
        "GET after the pooled work stream closed unanswered\n--- lyre log ---\n{}\n--- frpc log ---\n{}",
        lyre.log(),
        frpc.log_text()
    );
    assert!(
        lyre.log().contains("frp fast path (pooled stream)"),
        "the second request reused the pooled work stream:\n{}",
        lyre.log()
    );
    let post =
        format!("POST /exapps/{APP}/three HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody");
    c.send(post.as_bytes());
    assert_eq!(
        c.read_response().head.status,
        502,
        "POST on a stream closed unanswered"
    );
    let lines = seen.lock().unwrap().clone();
    // The ExApp sees the path without /exapps/<appid> (HaRP's rewrite).
    assert_eq!(
        lines,
        [
            "GET /one HTTP/1.1",
            "GET /two HTTP/1.1",
            "GET /two HTTP/1.1",
            "POST /three HTTP/1.1",
        ],
        "requests as the ExApp saw them"
    );
}
