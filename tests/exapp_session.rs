//! The Nextcloud session cache of `lyre serve` (harp-compat.md §3.8, H-47..H-49): one
//! user-info call per pass cookie per HP_SESSION_LIFETIME window, process-wide, even when
//! 64 connections with the same cookie arrive at once on both workers.

mod common;

use std::time::{Duration, Instant};

use common::exapp::*;
use serde_json::json;

/// Concurrent connections per burst.
const CONNECTIONS: usize = 64;
/// Bursts with a fresh cookie each (the first with a slow user-info, the rest fast).
const BURSTS: usize = 6;

fn cookie(i: usize) -> String {
    format!("pp-burst-{i}")
}

/// One burst: `CONNECTIONS` USER requests with the same cookie on as many connections,
/// released together; every one must be answered 200 for `user`.
fn burst(port: u16, passphrase: &str, user: &str) {
    let c = session_cookie(passphrase);
    let results = concurrently(CONNECTIONS, move |i| {
        get(
            port,
            &format!("/exapps/testapp/user/{i}"),
            &[("Cookie", &c)],
        )
    });
    for (i, r) in results.into_iter().enumerate() {
        let r = r.answered(&format!("burst request {i}"));
        assert_eq!(r.head.status, 200, "burst request {i}: {}", r.body_str());
        assert_eq!(r.json()["user"], user, "burst request {i}");
    }
}

/// H-49 + Lyre's single flight: exactly one user-info call per cookie per lifetime window
/// under 64 concurrent connections; a new call once the window has passed.
#[test]
fn h49_one_user_info_per_cookie_under_64_connections() {
    let exapp = NcPyExApp::start();
    let mut cfg = nc_config(exapp.port);
    for i in 0..BURSTS {
        cfg["users"][cookie(i)] = json!({"user_id": format!("u{i}"), "access_level": 1});
    }
    cfg["delay"] = json!({"user-info": 0.2});
    let nc = FakeNc::start(&cfg);
    let lyre = lyre_for(&nc, &[("HP_SESSION_LIFETIME", "10")]);

    let first = Instant::now();
    burst(lyre.port, &cookie(0), "u0");
    assert_eq!(
        nc.user_calls(APP_ID),
        1,
        "64 concurrent requests with one cookie (slow user-info)"
    );
    nc.merge_config(&json!({"delay": {}}));
    for i in 1..BURSTS {
        burst(lyre.port, &cookie(i), &format!("u{i}"));
        assert_eq!(
            nc.user_calls(APP_ID),
            1 + i as u64,
            "burst {i}: 64 concurrent requests with one fresh cookie (fast user-info)"
        );
    }
    // Cached: more requests with the first cookie, still inside its window.
    burst(lyre.port, &cookie(0), "u0");
    assert!(
        first.elapsed() < Duration::from_secs(9),
        "machine too slow to stay inside the 10 s session window"
    );
    assert_eq!(
        nc.user_calls(APP_ID),
        BURSTS as u64,
        "cached session refetched"
    );

    // The user-info call carried the request's headers and the shared key (H-47).
    let last = nc.last("user-info");
    let names: Vec<String> = last["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter_map(|h| h[0].as_str().map(str::to_ascii_lowercase))
        .collect();
    assert!(
        names.contains(&"cookie".to_string()),
        "cookie not forwarded: {names:?}"
    );
    assert!(names.contains(&"harp-shared-key".to_string()));
    assert_eq!(last["query"], "appId=testapp");

    // After the window a new call is made (the wait is the window, not a timing assert).
    std::thread::sleep(Duration::from_millis(10_600).saturating_sub(first.elapsed()));
    burst(lyre.port, &cookie(0), "u0");
    assert_eq!(
        nc.user_calls(APP_ID),
        BURSTS as u64 + 1,
        "expired session: exactly one new call"
    );
}

/// H-48: a request authenticated only by `Authorization` calls user-info every time.
#[test]
fn h48_authorization_only_is_never_cached() {
    let exapp = NcPyExApp::start();
    let mut cfg = nc_config(exapp.port);
    cfg["auth"] = json!({"Basic Ym9iOnB3": {"user_id": "bob", "access_level": 1}});
    let nc = FakeNc::start(&cfg);
    let lyre = lyre_for(&nc, &[("HP_SESSION_LIFETIME", "10")]);
    for i in 0..3 {
        let r = get(
            lyre.port,
            "/exapps/testapp/user/x",
            &[("Authorization", "Basic Ym9iOnB3")],
        )
        .answered("Authorization-only request");
        assert_eq!(r.head.status, 200, "request {i}: {}", r.body_str());
        assert_eq!(r.json()["user"], "bob");
    }
    assert_eq!(nc.user_calls(APP_ID), 3);
}

/// H-70: a decision that needs longer than 30 s in all gets `503 Service Unavailable
/// (HaRP)`. Each Nextcloud call here stays under its own 25 s limit (20 s for exapp-meta,
/// 20 s for user-info), so only the overall budget can end it, at 30 s; no ExApp is
/// contacted (the record's port is closed).
#[test]
fn h70_decision_over_30_s_answers_503() {
    let mut cfg = nc_config(common::free_port());
    cfg["delay"] = json!({"exapp-meta": 20, "user-info": 20});
    let nc = FakeNc::start(&cfg);
    let lyre = lyre_for(&nc, &[]);
    let mut c = common::http::Conn::connect(lyre.port);
    c.set_timeout(Duration::from_secs(60));
    let started = Instant::now();
    c.send(&request(
        "GET",
        "/exapps/testapp/user/slow",
        &[("Cookie", &session_cookie(ALICE_COOKIE))],
    ));
    let r = match read_outcome(&mut c) {
        Outcome::Answered(r) => r,
        Outcome::Dropped => panic!("H-70: dropped instead of 503"),
    };
    let waited = started.elapsed();
    assert_eq!(r.head.status, 503, "H-70: {}", r.body_str());
    assert_eq!(r.body_str(), "503 Service Unavailable (HaRP)");
    assert!(
        waited >= Duration::from_secs(29),
        "answered after {waited:?}: something other than the 30 s budget ended it"
    );
    assert_eq!(nc.meta_calls(APP_ID), 1);
}
