//! Failure behaviour of the whole appliance's FRP path, with the real frpc 0.65:
//! - wrong `metadatas.token`: frpc is refused, and the failures count toward the ban of
//!   127.0.0.1 on the HTTP side too (harp-compat §3.9, §5.5: one ban list);
//! - an ExApp whose remotePort has no live tunnel: 503 within HP_TIMEOUT_CONNECT;
//! - frpc killed mid-transfer: the user's connection is closed (bounded), Lyre keeps
//!   serving, and a restarted frpc resumes the service.

mod appliance_frp_harness;
mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use appliance_frp_harness::*;
use common::http::Conn;
use common::pattern::HashSink;
use common::{poll_until, Pattern};
use serde_json::json;

/// `HP_TIMEOUT_CONNECT` in these tests.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Slack on top of a timeout before a test calls it a hang (scheduling on a busy box).
const SLACK: Duration = Duration::from_secs(5);

/// `GET /exapps/app_api/heartbeat` with the key: 200, or `None` if the connection was
/// closed without any response (HaRP's silent drop of a banned IP).
fn control_heartbeat(port: u16) -> Option<u16> {
    let mut c = Conn::connect(port);
    c.set_timeout(Duration::from_secs(10));
    let req = format!(
        "GET /exapps/app_api/heartbeat HTTP/1.1\r\nHost: lyre\r\nharp-shared-key: {SHARED_KEY}\r\n\
         Connection: close\r\n\r\n"
    );
    if c.send_lenient(req.as_bytes()).is_err() {
        return None;
    }
    c.try_read_response(false).ok().map(|r| r.head.status)
}

#[test]
fn wrong_token_is_refused_and_bans_127_0_0_1_on_http_too() {
    let app = Appliance::start(true, &[("HP_BLACKLIST_COUNT", "3")]);
    assert_eq!(
        control_heartbeat(app.lyre.port),
        Some(200),
        "before any failure"
    );
    let bytes = ByteServer::start();
    let port = pick_remote_port();
    for attempt in 0..3 {
        let mut conf = FrpcConf::harp(&app, port, Local::Unix(bytes.sock.clone()));
        conf.token = format!("wrong-key-{attempt}");
        conf.login_fail_exit = true;
        let mut frpc = Frpc::start(&conf);
        let st = frpc.guard.wait_exit(Duration::from_secs(20));
        let log = frpc.log();
        assert!(
            st.is_some_and(|s| !s.success()),
            "frpc with a wrong token must fail its login and exit; log:\n{log}"
        );
        assert!(log.contains("login to the server failed"), "log:\n{log}");
        assert!(!log.contains("start proxy success"), "log:\n{log}");
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "no listener on {port} for a refused frpc"
        );
    }
    // Failures are published to every worker; the HTTP side drops 127.0.0.1 from now on
    // (within milliseconds; the bound is generous for a loaded box: once seen over 5 s).
    let banned = poll_until(Duration::from_secs(15), || {
        control_heartbeat(app.lyre.port).is_none()
    });
    assert!(
        banned,
        "HTTP from 127.0.0.1 still answered after 3 failed frpc logins"
    );
    for _ in 0..4 {
        assert_eq!(
            control_heartbeat(app.lyre.port),
            None,
            "banned: no response"
        );
    }
    // And the ban applies to FRP logins from 127.0.0.1, even with the right key.
    let mut conf = FrpcConf::harp(&app, port, Local::Unix(bytes.sock.clone()));
    conf.login_fail_exit = true;
    let mut frpc = Frpc::start(&conf);
    let st = frpc.guard.wait_exit(Duration::from_secs(20));
    let log = frpc.log();
    assert!(st.is_some_and(|s| !s.success()), "banned frpc; log:\n{log}");
    assert!(!log.contains("start proxy success"), "log:\n{log}");
}

/// A record whose port has no tunnel: 503 quickly (refused), within HP_TIMEOUT_CONNECT.
#[test]
fn exapp_without_live_tunnel_is_503_within_connect_timeout() {
    let secs = format!("{}s", CONNECT_TIMEOUT.as_secs());
    let app = Appliance::start(true, &[("HP_TIMEOUT_CONNECT", secs.as_str())]);
    let port = pick_remote_port();
    app.push_frp_app(APP_ID, port, json!([{"url": "^/", "access_level": 0}]));
    for _ in 0..3 {
        let t = Instant::now();
        let r = common::http::get(app.lyre.port, &format!("/exapps/{APP_ID}/public"));
        let took = t.elapsed();
        assert_eq!(r.head.status, 503, "no tunnel: {}", r.body_str());
        assert!(
            took < CONNECT_TIMEOUT + SLACK,
            "503 took {took:?} (HP_TIMEOUT_CONNECT {CONNECT_TIMEOUT:?})"
        );
    }
}

/// Reads until EOF/reset; returns (bytes, whether it ended) within `bound`.
fn read_until_closed(c: &mut Conn, bound: Duration) -> (u64, bool) {
    let end = Instant::now() + bound;
    let mut total = c.buffered().len() as u64;
    let mut buf = vec![0u8; 256 * 1024];
    c.stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    while Instant::now() < end {
        match c.stream.read(&mut buf) {
            Ok(0) => return (total, true),
            Ok(n) => total += n as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (total, true),
        }
    }
    (total, false)
}

#[test]
fn frpc_killed_mid_transfer_closes_user_then_restart_resumes() {
    let app = Appliance::start(true, &[("HP_TIMEOUT_CONNECT", "2s")]);
    let bytes = ByteServer::start();
    let port = pick_remote_port();
    let conf = FrpcConf::harp(&app, port, Local::Unix(bytes.sock.clone()));
    let mut frpc = Frpc::start_ready(&conf);
    app.push_frp_app(APP_ID, port, json!([{"url": "^/", "access_level": 0}]));
    let pat = Pattern::new();

    // A paced 1 GiB download (~3 MB/s): still running when frpc dies.
    let total: u64 = 1 << 30;
    let mut c = Conn::connect(app.lyre.port);
    c.send(&exapp_get(APP_ID, &format!("/slow/{total}")));
    let head = c.read_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.content_length(), Some(total));
    let (got, ended) = read_until_closed_or(&mut c, 1 << 20);
    assert!(!ended && got >= 1 << 20, "transfer running before the kill");

    frpc.guard.kill();
    let t = Instant::now();
    let (more, ended) = read_until_closed(&mut c, Duration::from_secs(20));
    assert!(
        ended,
        "user connection still open {:?} after frpc was killed",
        t.elapsed()
    );
    assert!(got + more < total, "a truncated body, not a complete one");

    // Lyre still serves: control answers, the ExApp is 503 (no tunnel) without a hang.
    let mut lyre = app.lyre;
    lyre.assert_alive();
    assert_eq!(control_heartbeat(lyre.port), Some(200));
    let r = common::http::get(lyre.port, &format!("/exapps/{APP_ID}/x"));
    assert_eq!(r.head.status, 503, "{}", r.body_str());

    // frpc restarted (new process, same config): the service resumes.
    let _frpc2 = Frpc::start_ready(&conf);
    let ok = poll_until(Duration::from_secs(10), || {
        common::http::get(lyre.port, &format!("/exapps/{APP_ID}/x"))
            .head
            .status
            == 200
    });
    assert!(ok, "service did not resume after frpc restarted");
    let mut c = Conn::connect(lyre.port);
    for n in [1u64, 100_000, 3_000_001] {
        c.send(&exapp_get(APP_ID, &format!("/bytes/{n}")));
        let head = c.read_head();
        assert_eq!(head.status, 200);
        let mut sink = HashSink::default();
        c.try_read_body(&head, false, &mut |b| sink.update(b))
            .expect("body after restart");
        assert_eq!(sink.hex(), pat.sha256(n));
    }
}

/// Reads until at least `want` bytes arrived (or EOF); returns (bytes, ended).
fn read_until_closed_or(c: &mut Conn, want: u64) -> (u64, bool) {
    let mut total = c.buffered().len() as u64;
    let mut buf = vec![0u8; 64 * 1024];
    c.stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    while total < want {
        match c.stream.read(&mut buf) {
            Ok(0) | Err(_) => return (total, true),
            Ok(n) => total += n as u64,
        }
    }
    (total, false)
}
