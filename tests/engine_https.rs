//! The HTTPS frontend (harp-compat.md §6.2, H-20): with `$LYRE_CERTS_DIR/cert.pem` (chain +
//! key) Lyre serves the same routing on `HP_EXAPPS_HTTPS_ADDRESS` over TLS (ALPN
//! `http/1.1`); without it nothing listens there; an unusable file stops the start.
//! Real peers: the aiohttp upstream, nginx with `proxy_pass https://`, nc_py_api behind the
//! fake Nextcloud, and rustls clients.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::exapp::{self, FakeNc, NcPyExApp, ALICE_COOKIE, APP_ID, SECRET};
use common::http::{get_req, send_chunked_pattern, Conn, Response};
use common::pattern::HashSink;
use common::tls::{make_certs, TestCerts};
use common::ws::{WsClient, OP_BINARY};
use common::{poll_until, Lyre, Nginx, Pattern, RawUpstream, TempDir, Upstream};

const BIG: u64 = 256 * 1024 * 1024;

/// A test CA and `cert.pem` in a fresh `LYRE_CERTS_DIR`.
fn certs() -> (TempDir, TestCerts) {
    let dir = TempDir::new("https-certs");
    let certs = make_certs(&dir.path().join("certs"));
    (dir, certs)
}

fn certs_env(certs: &TestCerts) -> (&'static str, String) {
    ("LYRE_CERTS_DIR", certs.dir.to_string_lossy().into_owned())
}

fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// `lyre serve --route /exapps/up/=upstream` with HTTPS on (waits for the TLS port).
fn routed_https(up: &Upstream, certs: &TestCerts, extra: &[(&str, &str)]) -> Lyre {
    let (k, v) = certs_env(certs);
    let mut env = vec![(k, v.as_str())];
    env.extend_from_slice(extra);
    let lyre = Lyre::routed(&[("/exapps/up/", up.port)], &env);
    wait_https(&lyre);
    lyre
}

fn wait_https(lyre: &Lyre) {
    assert!(
        poll_until(Duration::from_secs(10), || port_open(lyre.https_port)),
        "nothing listens on the HTTPS port {}\n{}",
        lyre.https_port,
        lyre.log()
    );
}

fn request_on(c: &mut Conn, req: &[u8]) -> Response {
    c.send(req);
    c.read_response()
}

/// H-20: the same static route answers the same over HTTP and HTTPS, several requests on
/// one TLS connection (keep-alive), ALPN `http/1.1`, and the log says HTTPS is on.
#[test]
fn h20_static_route_over_https_matches_http_with_keepalive() {
    let (_d, certs) = certs();
    let up = Upstream::start();
    let lyre = routed_https(&up, &certs, &[]);
    let mut tls = Conn::connect_tls(lyre.https_port, &certs.http11_client());
    assert_eq!(tls.alpn().as_deref(), Some(&b"http/1.1"[..]), "ALPN");
    let mut plain = Conn::connect(lyre.port);
    for i in 0..5 {
        let path = format!("/exapps/up/echo-headers?i={i}");
        let a = request_on(&mut tls, &get_req(&path));
        let b = request_on(&mut plain, &get_req(&path));
        assert_eq!(a.head.status, 200, "HTTPS {path}: {}", a.body_str());
        assert_eq!(a.head.status, b.head.status, "{path}: status");
        assert_eq!(
            a.json()["path"],
            b.json()["path"],
            "{path}: path at upstream"
        );
        assert_eq!(a.json()["query"], format!("i={i}"), "{path}: query");
        assert_eq!(
            a.json()["headers"],
            b.json()["headers"],
            "{path}: headers at upstream"
        );
    }
    // A chunked response and a small pattern body, still on the same TLS connection.
    let r = request_on(&mut tls, &get_req("/exapps/up/bytes/100000"));
    assert_eq!(r.body.len(), 100_000);
    assert_eq!(common::sha256_hex(&r.body), Pattern::new().sha256(100_000));
    // No route: the same HaRP answer on both.
    let a = request_on(&mut tls, &get_req("/nothing-here"));
    let b = request_on(&mut plain, &get_req("/nothing-here"));
    assert_eq!(
        (a.head.status, a.body.clone()),
        (b.head.status, b.body.clone()),
        "unrouted request"
    );
    // A clean close after `Connection: close`: the response is whole, then close_notify.
    tls.send(b"GET /exapps/up/page HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(tls.read_response().head.status, 200);
    assert_eq!(tls.closed_within(Duration::from_secs(10)), Ok(true));
    let log = lyre.log();
    assert!(
        log.contains("HTTPS frontend on") && log.contains("cert.pem"),
        "info line naming the certificate: {log}"
    );
}

/// A response framed by the upstream's close reaches an HTTPS client whole and ends with
/// TLS close_notify: the rustls client reports a bare TCP close as truncation
/// (`UnexpectedEof`), as OpenSSL 3 clients (curl, PHP) do.
#[test]
fn h20_close_delimited_response_ends_with_close_notify() {
    let (_d, certs) = certs();
    let body = "x".repeat(200_000);
    let raw = RawUpstream::start(
        format!("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{body}").as_bytes(),
    );
    let (k, v) = certs_env(&certs);
    let lyre = Lyre::routed(&[("/raw/", raw.port)], &[(k, v.as_str())]);
    wait_https(&lyre);
    let mut c = Conn::connect_tls(lyre.https_port, &certs.http11_client());
    c.send(&get_req("/raw/x"));
    let r = c
        .try_read_response(false)
        .unwrap_or_else(|e| panic!("close-delimited response over TLS: {e}"));
    assert_eq!(r.head.status, 200);
    assert!(
        r.head.content_length().is_none() && !r.head.is_chunked(),
        "{:?}",
        r.head
    );
    assert_eq!(r.body.len(), body.len(), "body framed by the close");
}

/// H-20 with the ExApp path: HaRP's decision (session, level, header injection) works the
/// same behind TLS: nc_py_api accepts the injected AppAPI headers (else 401).
#[test]
fn h20_exapp_route_over_https() {
    let (_d, certs) = certs();
    let app = NcPyExApp::start();
    let nc = FakeNc::start(&exapp::nc_config(app.port));
    let (k, v) = certs_env(&certs);
    let lyre = exapp::lyre_for(&nc, &[(k, v.as_str())]);
    wait_https(&lyre);
    let client = certs.http11_client();
    let alice = exapp::session_cookie(ALICE_COOKIE);
    let over_tls = |target: &str, headers: &[(&str, &str)]| {
        let mut c = Conn::connect_tls(lyre.https_port, &client);
        c.send(&exapp::request("GET", target, headers));
        exapp::read_outcome(&mut c).answered(target)
    };
    let r = over_tls("/exapps/testapp/user/x", &[("Cookie", &alice)]);
    assert_eq!(r.head.status, 200, "USER with a session: {}", r.body_str());
    let echo = r.json();
    assert_eq!(echo["user"], "alice", "user id at the ExApp");
    assert_eq!(
        exapp::echoed_header(&echo, "ex-app-id").as_deref(),
        Some(APP_ID)
    );
    assert_eq!(
        exapp::echoed_header(&echo, "authorization-app-api").as_deref(),
        Some(exapp::b64(&format!("alice:{SECRET}")).as_str())
    );
    // A denial is HaRP's page, byte for byte the same as over HTTP.
    let a = over_tls("/exapps/testapp/admin/x", &[("Cookie", &alice)]);
    let b = exapp::get(lyre.port, "/exapps/testapp/admin/x", &[("Cookie", &alice)])
        .answered("ADMIN over HTTP");
    assert_eq!(a.head.status, 403);
    assert_eq!((a.head.raw, a.body), (b.head.raw, b.body), "403 page");
}

fn download_tls(c: &mut Conn, path: &str, n: u64, want: &str) -> bool {
    c.send(&get_req(path));
    let head = c.read_head();
    assert_eq!(head.status, 200, "GET {path}");
    let mut sink = HashSink::default();
    c.try_read_body(&head, false, &mut |b| sink.update(b))
        .unwrap_or_else(|e| panic!("GET {path}: body broken after {} bytes: {e}", sink.size));
    assert_eq!(sink.size, n, "GET {path}: size");
    assert_eq!(sink.hex(), want, "GET {path}: sha256");
    head.is_chunked()
}

/// Chunked upload with odd chunk sizes (the framing Lyre scans goes through rustls).
fn upload_chunked_tls(c: &mut Conn, n: u64) {
    c.send(b"POST /exapps/up/upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    send_chunked_pattern(c, n);
}

/// 256 MiB both ways over one TLS connection, byte-exact: chunked download, Content-Length
/// download, chunked upload, Content-Length upload; the connection stays usable after each.
#[test]
fn h20_256mib_up_and_down_over_https() {
    let (_d, certs) = certs();
    let up = Upstream::start();
    let lyre = routed_https(&up, &certs, &[]);
    let want = Pattern::new().sha256(BIG);
    let mut c = Conn::connect_tls(lyre.https_port, &certs.http11_client());
    let chunked = download_tls(&mut c, "/exapps/up/bytes/268435456", BIG, &want);
    assert!(chunked, "chunked download keeps its framing");
    let chunked = download_tls(&mut c, "/exapps/up/bytes/268435456?cl=1", BIG, &want);
    assert!(!chunked, "Content-Length download");
    upload_chunked_tls(&mut c, BIG);
    let j = c.read_response().json();
    assert_eq!(
        (j["size"].as_u64(), j["sha256"].as_str()),
        (Some(BIG), Some(want.as_str()))
    );
    c.send(
        format!("PUT /exapps/up/upload HTTP/1.1\r\nHost: t\r\nContent-Length: {BIG}\r\n\r\n")
            .as_bytes(),
    );
    Pattern::new().for_each_block(BIG, |b| c.send(b));
    let j = c.read_response().json();
    assert_eq!(
        (j["size"].as_u64(), j["sha256"].as_str()),
        (Some(BIG), Some(want.as_str()))
    );
    let r = request_on(&mut c, &get_req("/exapps/up/echo-headers?after=bodies"));
    assert_eq!(r.json()["query"], "after=bodies");
}

/// A fast upstream and a slow client (it stalls, then reads at a limited rate): Lyre's TLS
/// writer keeps finding the socket full, waits, and resumes where it stopped, byte-exact.
/// (The forward bench's HTTPS rows once caught a resumed write failing with WriteZero when
/// rustls's buffer was still full at the resume; this exercises that path, though it does
/// not hit that exact timing every run. The aiohttp upstream above is too slow for it.)
#[test]
fn h20_download_resumes_after_the_client_stalls() {
    const N: u64 = 48 * 1024 * 1024;
    let (_d, certs) = certs();
    let mut reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {N}\r\n\r\n").into_bytes();
    Pattern::new().for_each_block(N, |b| reply.extend_from_slice(b));
    let raw = RawUpstream::start(&reply);
    let (k, v) = certs_env(&certs);
    let lyre = Lyre::routed(&[("/exapps/raw/", raw.port)], &[(k, v.as_str())]);
    wait_https(&lyre);
    let mut c = Conn::connect_tls(lyre.https_port, &certs.http11_client());
    c.send(&get_req("/exapps/raw/big"));
    // Stall before the first byte: Lyre's socket and TLS buffer fill.
    std::thread::sleep(Duration::from_millis(500));
    let head = c.read_head();
    assert_eq!(head.status, 200);
    let mut sink = HashSink::default();
    let mut next_pause = 0;
    c.try_read_body(&head, false, &mut |b| {
        sink.update(b);
        // About 100 MB/s: slower than Lyre, so its socket stays full.
        if sink.size >= next_pause {
            next_pause = sink.size + 256 * 1024;
            std::thread::sleep(Duration::from_millis(2));
        }
    })
    .unwrap_or_else(|e| panic!("body broken after {} bytes: {e}\n{}", sink.size, lyre.log()));
    assert_eq!(sink.size, N);
    assert_eq!(sink.hex(), Pattern::new().sha256(N));
}

/// WebSocket over TLS through the upgrade path: text and a 300 kB binary echo, an idle
/// period longer than HP_TIMEOUT_CLIENT (H-60: the tunnel timeout applies), then close.
#[test]
fn h20_websocket_echo_over_https() {
    let (_d, certs) = certs();
    let up = Upstream::start();
    let lyre = routed_https(
        &up,
        &certs,
        &[("HP_TIMEOUT_CLIENT", "1s"), ("HP_TIMEOUT_TUNNEL", "60s")],
    );
    let conn = Conn::connect_tls(lyre.https_port, &certs.http11_client());
    let mut ws = WsClient::upgrade(conn, lyre.https_port, "/exapps/up/ws");
    for i in 0..20 {
        ws.assert_echo(&format!("tls message {i}"));
    }
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    ws.send_binary(&big);
    let m = ws.recv().expect("binary echo");
    assert_eq!(m.opcode, OP_BINARY);
    assert!(m.payload == big, "300 kB binary echo differs");
    std::thread::sleep(Duration::from_secs(3)); // the behaviour under test is idle time
    ws.assert_echo("after 3 s idle (client timeout 1 s)");
    ws.close();
}

/// nginx in front, `proxy_pass https://` verifying Lyre's certificate: a request, a
/// chunked upload, a download and a WebSocket all pass.
#[test]
fn h20_nginx_proxy_pass_https() {
    let (_d, certs) = certs();
    let up = Upstream::start();
    let lyre = routed_https(&up, &certs, &[]);
    let ngx = Nginx::start_tls(lyre.https_port, &certs.ca_pem);
    let mut c = Conn::connect(ngx.port);
    let r = request_on(&mut c, &get_req("/exapps/up/echo-headers?via=nginx"));
    assert_eq!(r.head.status, 200, "{}\n{}", r.body_str(), ngx.error_log());
    assert_eq!(r.json()["query"], "via=nginx");
    let n = 8 * 1024 * 1024;
    let mut up_conn = Conn::connect(ngx.port);
    c = Conn::connect(ngx.port);
    upload_chunked_tls(&mut up_conn, n);
    let j = up_conn.read_response().json();
    assert_eq!(
        j["sha256"].as_str(),
        Some(Pattern::new().sha256(n).as_str())
    );
    download_tls(
        &mut c,
        "/exapps/up/bytes/8388608",
        n,
        &Pattern::new().sha256(n),
    );
    let mut ws = WsClient::connect(ngx.port, "/exapps/up/ws");
    ws.assert_echo("through nginx over TLS");
    ws.close();
    assert!(
        !ngx.error_log().contains("SSL"),
        "nginx TLS errors: {}",
        ngx.error_log()
    );
}

/// H-20: no cert.pem -> nothing listens on the HTTPS address; HTTP works; the log says why.
#[test]
fn h20_no_certificate_no_https_listener() {
    let dir = TempDir::new("https-none");
    let empty = dir.path().join("certs");
    std::fs::create_dir_all(&empty).unwrap();
    let up = Upstream::start();
    let lyre = Lyre::routed(
        &[("/exapps/up/", up.port)],
        &[("LYRE_CERTS_DIR", empty.to_str().unwrap())],
    );
    let r = request_on(&mut Conn::connect(lyre.port), &get_req("/exapps/up/page"));
    assert_eq!(r.head.status, 200);
    assert!(
        poll_until(Duration::from_secs(10), || lyre
            .log()
            .contains("lyre ready")),
        "{}",
        lyre.log()
    );
    assert!(
        !port_open(lyre.https_port),
        "something listens on the HTTPS port"
    );
    assert!(
        lyre.log().contains("HTTPS frontend off"),
        "info line saying HTTPS is off: {}",
        lyre.log()
    );
}

/// Raw bytes to the TLS port; returns what came back before the close (or a timeout).
fn raw_exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(bytes);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("TLS port neither answered nor closed: {e} (got {got:?})"),
        }
    }
}

/// Plaintext HTTP, garbage, a silent client and an h2-only client on the TLS port: each
/// connection ends (never an HTTP answer), and the single worker keeps serving.
#[test]
fn h20_garbage_and_plaintext_on_tls_port_close_only_that_connection() {
    let (_d, certs) = certs();
    let up = Upstream::start();
    let lyre = routed_https(
        &up,
        &certs,
        &[("LYRE_WORKERS", "1"), ("HP_TIMEOUT_CLIENT", "2s")],
    );
    let port = lyre.https_port;
    let plain = raw_exchange(port, b"GET /exapps/up/page HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(
        !plain.starts_with(b"HTTP/"),
        "plaintext got an HTTP answer: {plain:?}"
    );
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 131 % 256) as u8).collect();
    let got = raw_exchange(port, &garbage);
    assert!(!got.starts_with(b"HTTP/"), "garbage got an HTTP answer");
    // A fake ClientHello record header with a huge length, then silence: the handshake
    // deadline (HP_TIMEOUT_CLIENT) ends it.
    raw_exchange(port, &[0x16, 0x03, 0x01, 0x40, 0x00, 0x01]);
    let h2_only = Conn::try_connect_tls(port, &certs.client_config(&[b"h2"]));
    assert!(h2_only.is_err(), "a client offering only h2 was accepted");
    // No ALPN at all: HTTP/1.1.
    let mut c = Conn::connect_tls(port, &certs.client_config(&[]));
    assert_eq!(c.alpn(), None);
    assert_eq!(
        request_on(&mut c, &get_req("/exapps/up/page")).head.status,
        200
    );
    let mut again = Conn::connect_tls(port, &certs.http11_client());
    assert_eq!(
        request_on(&mut again, &get_req("/exapps/up/page"))
            .head
            .status,
        200
    );
    let mut lyre = lyre;
    lyre.assert_alive();
}

/// An unusable cert.pem is a start error naming the file and the fix.
#[test]
fn h20_invalid_cert_pem_stops_the_start() {
    let (_d, certs) = certs();
    let good = std::fs::read_to_string(&certs.cert_pem).unwrap();
    let key_start = good.find("-----BEGIN PRIVATE KEY-----").expect("key block");
    let rows = [
        ("garbage", "this is not a certificate\n".to_string()),
        ("certificate without key", good[..key_start].to_string()),
    ];
    for (what, text) in rows {
        std::fs::write(&certs.cert_pem, text).unwrap();
        let (k, v) = certs_env(&certs);
        let (status, log) = Lyre::start_failure(&[(k, v.as_str())], &[]);
        assert!(!status.success(), "{what}: lyre started: {log}");
        let path = certs.cert_pem.to_string_lossy();
        assert!(
            log.contains(path.as_ref()),
            "{what}: message names {path}: {log}"
        );
        assert!(
            log.contains("private key"),
            "{what}: message says the fix: {log}"
        );
    }
}

/// H-102: SIGHUP reloads `cert.pem` without dropping the process or open connections: new
/// handshakes present the new certificate, a connection made before keeps working, and an
/// unusable file on a later SIGHUP leaves the last good certificate in use.
#[test]
fn h102_sighup_reloads_the_certificate() {
    let (dir, old) = certs();
    let up = Upstream::start();
    let mut lyre = routed_https(&up, &old, &[]);
    let mut before = Conn::connect_tls(lyre.https_port, &old.http11_client());
    let path = "/exapps/up/echo-headers";
    assert_eq!(request_on(&mut before, &get_req(path)).head.status, 200);

    // A new CA and certificate, written over the served cert.pem.
    let new = make_certs(&dir.path().join("new"));
    std::fs::copy(&new.cert_pem, &old.cert_pem).expect("replace cert.pem");
    let hup = |lyre: &Lyre| {
        // SAFETY: kill(2) with a signal number on our own child's pid.
        assert_eq!(unsafe { libc::kill(lyre.pid() as i32, libc::SIGHUP) }, 0);
    };
    hup(&lyre);
    assert!(
        poll_until(Duration::from_secs(10), || {
            Conn::try_connect_tls(lyre.https_port, &new.http11_client()).is_ok()
        }),
        "the new certificate is never presented\n{}",
        lyre.log()
    );
    assert!(
        Conn::try_connect_tls(lyre.https_port, &old.http11_client()).is_err(),
        "a client trusting only the old CA must now fail the handshake"
    );
    let mut after = Conn::connect_tls(lyre.https_port, &new.http11_client());
    assert_eq!(request_on(&mut after, &get_req(path)).head.status, 200);
    assert_eq!(
        request_on(&mut before, &get_req(path)).head.status,
        200,
        "a connection made before the reload keeps working"
    );
    assert!(
        lyre.log().contains("HTTPS certificate reloaded"),
        "{}",
        lyre.log()
    );

    // A broken file: the reload is refused and the last good certificate stays.
    std::fs::write(&old.cert_pem, b"not a certificate\n").expect("break cert.pem");
    hup(&lyre);
    assert!(
        poll_until(Duration::from_secs(10), || lyre
            .log()
            .contains("HTTPS certificate not reloaded")),
        "no warning for the broken file\n{}",
        lyre.log()
    );
    let mut still = Conn::connect_tls(lyre.https_port, &new.http11_client());
    assert_eq!(request_on(&mut still, &get_req(path)).head.status, 200);
    lyre.assert_alive();
}

/// Over HTTPS too, an answer given before the body was read (413 past the control API's
/// 1 MiB) reaches a client still sending it, directly and through nginx's `proxy_pass
/// https://`: close_notify, FIN, then Lyre reads and discards the rest (a close with the
/// body unread is a reset that destroys the answer).
#[test]
fn early_answers_survive_a_body_still_being_sent_over_https() {
    const BODY: usize = 8 << 20;
    let (_dir, certs) = certs();
    let (k, v) = certs_env(&certs);
    let lyre = Lyre::start(&[(k, v.as_str())], &[]);
    wait_https(&lyre);
    let ngx = Nginx::start_tls(lyre.https_port, &certs.ca_pem);
    let head = format!(
        "POST /exapps/app_api/exapp_storage/someapp HTTP/1.1\r\nHost: t\r\n\
         harp-shared-key: lyre-test-shared-key\r\nContent-Length: {BODY}\r\n\r\n"
    );
    let body = vec![b'a'; BODY];
    for round in 0..4 {
        let mut c = Conn::connect_tls(lyre.https_port, &certs.http11_client());
        let sent = c.send_lenient(head.as_bytes()).is_ok() && c.send_lenient(&body).is_ok();
        let r = c.try_read_response(false);
        assert_eq!(
            r.map(|r| r.head.status).ok(),
            Some(413),
            "round {round}: direct"
        );
        assert!(sent, "round {round}: the client's upload was reset");
        let mut c = Conn::connect(ngx.port);
        let _ = c.send_lenient(head.as_bytes());
        let _ = c.send_lenient(&body);
        let r = c.try_read_response(false);
        assert_eq!(
            r.map(|r| r.head.status).ok(),
            Some(413),
            "round {round}: via nginx"
        );
    }
}
