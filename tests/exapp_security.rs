//! HaRP's defensive behaviour in `lyre serve`, against real peers (fake Nextcloud,
//! nc_py_api ExApp, nginx): silent drops, AppAPI-signed requests, the shared-key check,
//! bans and their window, trusted proxies, response-status brute-force counting.
//! harp-compat.md §3.2-§3.5, §3.9; H-ids in test names.
//!
//! A failure recorded on one worker reaches the other worker over the bus a few
//! microseconds later; the "now banned" checks therefore poll briefly ([`dropped_soon`])
//! with requests that record nothing themselves.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::exapp::*;
use common::{poll_until, Nginx};
use serde_json::{json, Value};

/// How long a ban may take to reach the other worker.
const PROPAGATION: Duration = Duration::from_secs(2);

fn assert_dropped(outcome: Outcome, what: &str) {
    if let Outcome::Answered(r) = outcome {
        panic!(
            "{what}: expected a silent drop, got {} {:?}",
            r.head.status,
            r.body_str()
        );
    }
}

fn status_of(outcome: Outcome, what: &str) -> u16 {
    outcome.answered(what).head.status
}

/// True once `req` (which must not record failures itself) is dropped.
fn dropped_soon(port: u16, req: &[u8]) -> bool {
    poll_until(PROPAGATION, || send_raw(port, req).is_dropped())
}

fn info_request(key: &str, xff: Option<&str>) -> Vec<u8> {
    let mut headers = vec![("harp-shared-key", key)];
    if let Some(x) = xff {
        headers.push(("X-Forwarded-For", x));
    }
    request("GET", "/exapps/app_api/info", &headers)
}

/// The six AppAPI headers (§3.5) for the ExApp at `exapp_port`, `key` as shared key.
fn signed_headers(key: &str, exapp_port: u16, version: &str) -> Vec<(String, String)> {
    vec![
        ("EX-APP-ID".into(), APP_ID.into()),
        ("EX-APP-VERSION".into(), version.into()),
        ("EX-APP-HOST".into(), "127.0.0.1".into()),
        ("EX-APP-PORT".into(), exapp_port.to_string()),
        (
            "AUTHORIZATION-APP-API".into(),
            b64(&format!("admin:{SECRET}")),
        ),
        ("AA-VERSION".into(), "5.0.0".into()),
        ("harp-shared-key".into(), key.into()),
    ]
}

fn get_owned(port: u16, target: &str, headers: &[(String, String)]) -> Outcome {
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    get(port, target, &refs)
}

/// H-22, H-23, H-38: `..` segments in any encoding are dropped without an answer;
/// `...` and `..b` are ordinary names. With the right shared key the drop records nothing.
#[test]
fn h22_h23_parent_segments_dropped() {
    let exapp = NcPyExApp::start();
    let nc = FakeNc::start(&nc_config(exapp.port));
    let mut lyre = lyre_for(&nc, &[]);
    for target in [
        "/exapps/testapp/public/...",
        "/exapps/testapp/public/..b",
        "/exapps/testapp/public/b..",
    ] {
        let r = get(lyre.port, target, &[]).answered(target);
        assert_eq!(r.head.status, 200, "{target}: {}", r.body_str());
        let prefix_len = "/exapps/testapp".len();
        assert_eq!(r.json()["raw_path"], &target[prefix_len..], "{target}");
    }
    let traversals = [
        "/exapps/testapp/../testapp/public/x",
        "/exapps/testapp/public/%2e%2E/x",
        "/exapps/testapp%2F..%2Fpublic",
        "/exapps/testapp/public/..",
        "/exapps/testapp/public/.%2e?q=1",
    ];
    for t in traversals {
        assert_dropped(get(lyre.port, t, &[]), t);
    }
    // Five failures recorded so far (count 10). Keyed traversals: dropped, not recorded.
    for i in 0..12 {
        let t = traversals[i % traversals.len()];
        assert_dropped(get(lyre.port, t, &[("harp-shared-key", KEY)]), t);
    }
    let r = get(lyre.port, "/exapps/testapp/public/x", &[]).answered("after keyed drops");
    assert_eq!(
        r.head.status, 200,
        "H-38: keyed `..` requests recorded failures"
    );
    lyre.assert_alive();
}

/// H-41, H-45: unsigned requests to the ExApp's internal endpoints are dropped (also with
/// only some of the AppAPI headers); each records a failure.
#[test]
fn h41_unsigned_internal_endpoints_dropped() {
    let exapp = NcPyExApp::start();
    let nc = FakeNc::start(&nc_config(exapp.port));
    let lyre = lyre_for(&nc, &[("HP_BLACKLIST_COUNT", "4")]);
    let partial: Vec<(String, String)> = signed_headers(KEY, exapp.port, "1.0.0")
        .into_iter()
        .filter(|(k, _)| k != "EX-APP-HOST")
        .collect();
    assert_dropped(
        get(lyre.port, "/exapps/testapp/heartbeat", &[]),
        "heartbeat",
    );
    assert_dropped(get(lyre.port, "/exapps/testapp/init", &[]), "init");
    assert_dropped(
        get_owned(lyre.port, "/exapps/testapp/enabled?enabled=1", &partial),
        "enabled with five of the six AppAPI headers",
    );
    // Three failures; the fourth bans.
    let r = get(lyre.port, "/exapps/testapp/public/x", &[]).answered("PUBLIC after 3 drops");
    assert_eq!(r.head.status, 200);
    assert_dropped(
        get(lyre.port, "/exapps/testapp/heartbeat", &[]),
        "heartbeat",
    );
    assert!(
        dropped_soon(lyre.port, &request("GET", "/exapps/testapp/public/x", &[])),
        "four internal-endpoint drops did not ban (failures not recorded)"
    );
}

/// H-42, H-44: an AppAPI-signed request with the right key reaches the ExApp's /heartbeat
/// without a user-info call; for a cached app without ANY Nextcloud call (record values
/// win over the headers), for an app Nextcloud does not know via ex-app-host/ex-app-port.
/// H-43: the wrong key drops.
#[test]
fn h42_h43_h44_appapi_signed_requests() {
    let exapp = NcPyExApp::start();
    let mut cfg = nc_config(exapp.port);
    cfg["apps"] = json!({});
    let nc = FakeNc::start(&cfg);
    let mut lyre = lyre_for(&nc, &[]);

    // Unknown to Nextcloud: synthesized record from the ex-app-* headers (§3.5).
    let signed = signed_headers(KEY, exapp.port, "0.9.0");
    let r = get_owned(lyre.port, "/exapps/testapp/heartbeat", &signed).answered("signed");
    assert_eq!(r.head.status, 200, "{}", r.body_str());
    let echo: Value = r.json();
    assert_eq!(echo["status"], "ok");
    assert_eq!(
        echoed_header(&echo, "ex-app-version").as_deref(),
        Some("0.9.0")
    );
    assert_eq!(nc.user_calls(APP_ID), 0, "signed request called user-info");

    // Push the record: now the signed request needs nothing from Nextcloud.
    let body = record(exapp.port, standard_routes()).to_string();
    let push = format!(
        "POST /exapps/app_api/exapp_storage/testapp HTTP/1.1\r\nHost: lyre.test\r\n\
         Connection: close\r\nharp-shared-key: {KEY}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(status_of(send_raw(lyre.port, push.as_bytes()), "push"), 204);
    nc.reset();
    let signed = signed_headers(KEY, 9, "9.9.9");
    for i in 0..4 {
        let r = get_owned(lyre.port, "/exapps/testapp/heartbeat", &signed)
            .answered(&format!("signed heartbeat {i}"));
        assert_eq!(r.head.status, 200, "{}", r.body_str());
        let echo: Value = r.json();
        let h = |n| echoed_header(&echo, n);
        assert_eq!(
            h("ex-app-version").as_deref(),
            Some(APP_VERSION),
            "from record"
        );
        assert_eq!(
            h("authorization-app-api"),
            Some(b64(&format!("admin:{SECRET}"))),
            "AUTHORIZATION-APP-API forwarded unchanged"
        );
        assert_eq!(h("aa-version").as_deref(), Some("32"));
        assert_eq!(h("harp-shared-key"), None, "shared key leaked to the ExApp");
    }
    // Route checks are skipped: a USER route without any session, user from the token.
    let r = get_owned(lyre.port, "/exapps/testapp/user/x?y=1", &signed).answered("signed USER");
    assert_eq!(r.head.status, 200, "{}", r.body_str());
    assert_eq!(r.json()["user"], "admin");
    assert_eq!(
        nc.requests(),
        0,
        "signed requests for a cached app called Nextcloud"
    );

    let wrong = signed_headers("not-the-key", exapp.port, "1.0.0");
    assert_dropped(
        get_owned(lyre.port, "/exapps/testapp/heartbeat", &wrong),
        "signed with the wrong key",
    );
    assert_eq!(nc.requests(), 0);
    lyre.assert_alive();
}

/// H-35, H-36, H-37: wrong key on `app_api` -> `401 Unauthorized`; the 10th failure bans
/// (dropped even with the right key); the ban lifts when the window has passed.
#[test]
fn h35_h36_h37_wrong_key_ban_and_window() {
    let nc = FakeNc::start(&json!({"shared_key": KEY}));
    let lyre = lyre_for(&nc, &[("HP_BLACKLIST_WINDOW", "3")]);
    let good = info_request(KEY, None);
    let r = send_raw(lyre.port, &good).answered("info with the key");
    assert_eq!(r.head.status, 200);
    assert_eq!(r.json()["version"], "0.4.4");

    let mut last_failure = Instant::now();
    for i in 0..10 {
        let r = send_raw(lyre.port, &info_request("wrong", None)).answered("wrong key");
        last_failure = Instant::now();
        assert_eq!(r.head.status, 401, "wrong key {i}");
        assert_eq!(r.body_str(), "401 Unauthorized");
        if i == 8 {
            let r = send_raw(lyre.port, &good).answered("right key after 9 failures");
            assert_eq!(r.head.status, 200, "banned after only 9 failures");
        }
    }
    assert!(
        dropped_soon(lyre.port, &good),
        "10 failures did not ban (right key still answered)"
    );
    assert!(
        last_failure.elapsed() < Duration::from_millis(2500),
        "machine too slow to observe the 3 s ban"
    );
    thread::sleep(Duration::from_millis(3300).saturating_sub(last_failure.elapsed()));
    let r = send_raw(lyre.port, &good).answered("after the window");
    assert_eq!(
        r.head.status, 200,
        "ban did not lift after HP_BLACKLIST_WINDOW"
    );
}

/// H-66: behind a trusted nginx the ban hits the X-Forwarded-For client, not nginx;
/// without trusted proxies X-Forwarded-For is ignored and the peer is banned.
#[test]
fn h66_trusted_proxy_bans_the_forwarded_client() {
    let nc = FakeNc::start(&json!({"shared_key": KEY}));
    let lyre = lyre_for(&nc, &[("HP_TRUSTED_PROXY_IPS", "127.0.0.1")]);
    let nginx = Nginx::start(lyre.port);
    for i in 0..10 {
        let r = send_raw(nginx.port, &info_request("wrong", Some("10.1.1.1")));
        assert_eq!(status_of(r, "wrong key via nginx"), 401, "request {i}");
    }
    // nginx answers 502 when Lyre drops the upstream connection.
    let banned = poll_until(PROPAGATION, || {
        let r = send_raw(nginx.port, &info_request(KEY, Some("10.1.1.1")));
        r.status() == Some(502)
    });
    assert!(banned, "the XFF client 10.1.1.1 was not banned");
    let r = send_raw(nginx.port, &info_request(KEY, Some("10.2.2.2")));
    assert_eq!(
        status_of(r, "other XFF client"),
        200,
        "ban hit another client"
    );
    let r = send_raw(nginx.port, &info_request(KEY, None));
    assert_eq!(status_of(r, "nginx itself"), 200, "ban hit nginx's address");
    assert_dropped(
        send_raw(lyre.port, &info_request(KEY, Some("10.1.1.1, 10.9.9.9"))),
        "trusted peer, leftmost XFF banned",
    );
    drop(nginx);

    let lyre = lyre_for(&nc, &[]);
    for _ in 0..10 {
        let r = send_raw(lyre.port, &info_request("wrong", Some("10.1.1.1")));
        assert_eq!(status_of(r, "wrong key, untrusted XFF"), 401);
    }
    assert!(
        dropped_soon(lyre.port, &info_request(KEY, Some("10.2.2.2"))),
        "untrusted X-Forwarded-For was honoured (peer not banned)"
    );
}

/// H-64, H-65: on a route with `bruteforce_protection: [401]` the ExApp answering 401
/// records failures (the 10th bans); other statuses record nothing.
#[test]
fn h64_h65_response_status_bruteforce() {
    let exapp = NcPyExApp::start();
    let nc = FakeNc::start(&nc_config(exapp.port));
    let lyre = lyre_for(&nc, &[]);
    for i in 0..12 {
        let r = get(lyre.port, "/exapps/testapp/bf/status/403", &[]).answered("bf 403");
        assert_eq!(r.head.status, 403, "request {i}");
        assert_eq!(
            r.body_str(),
            "status 403",
            "ExApp's own answer passes unchanged"
        );
    }
    for i in 0..9 {
        let r = get(lyre.port, "/exapps/testapp/bf/status/401", &[]).answered("bf 401");
        assert_eq!(r.head.status, 401, "request {i}");
        assert_eq!(r.body_str(), "status 401");
    }
    let public = request("GET", "/exapps/testapp/public/x", &[]);
    let r = send_raw(lyre.port, &public).answered("PUBLIC after 9 ExApp 401s");
    assert_eq!(r.head.status, 200, "H-65: 403s or nine 401s already banned");
    let r = get(lyre.port, "/exapps/testapp/bf/status/401", &[]).answered("10th bf 401");
    assert_eq!(r.head.status, 401);
    assert!(
        dropped_soon(lyre.port, &public),
        "H-64: ten ExApp 401s on a brute-force route did not ban"
    );
}

/// H-43 (quirk §8 item 1): behind a trusted proxy, a signed request with the wrong key
/// records its failure against the TCP peer (nginx), not the X-Forwarded-For client.
#[test]
fn h43_signed_wrong_key_blames_the_tcp_peer() {
    let exapp = NcPyExApp::start();
    let nc = FakeNc::start(&nc_config(exapp.port));
    let lyre = lyre_for(&nc, &[("HP_TRUSTED_PROXY_IPS", "127.0.0.1")]);
    let nginx = Nginx::start(lyre.port);
    let mut wrong = signed_headers("not-the-key", exapp.port, "1.0.0");
    wrong.push(("X-Forwarded-For".into(), "10.5.5.5".into()));
    for i in 0..10 {
        let r = get_owned(nginx.port, "/exapps/testapp/heartbeat", &wrong);
        assert_eq!(
            r.status(),
            Some(502),
            "signed wrong key {i}: nginx sees the drop"
        );
    }
    // nginx's own address (the XFF it sends for a client without one) is banned...
    let banned = poll_until(PROPAGATION, || {
        send_raw(nginx.port, &info_request(KEY, None)).status() == Some(502)
    });
    assert!(banned, "failures were not recorded against the TCP peer");
    // ...while the client named in X-Forwarded-For is not.
    let r = send_raw(nginx.port, &info_request(KEY, Some("10.5.5.5")));
    assert_eq!(
        status_of(r, "XFF client"),
        200,
        "failure recorded against XFF"
    );
}
