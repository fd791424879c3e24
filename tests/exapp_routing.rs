//! ExApp routing through `lyre serve` against real peers: the fake Nextcloud
//! (tests/peers/fake_nc.py) and a real nc_py_api ExApp in direct mode
//! (tests/peers/exapp/main.py). harp-compat.md §3.3-§3.8, §4.2; H-ids in test names.
//!
//! Every 200 from the ExApp is also nc_py_api's own verdict on the injected headers: its
//! AppAPIAuthMiddleware answers 401 unless EX-APP-ID and AUTHORIZATION-APP-API are right.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::exapp::*;
use serde_json::{json, Value};

fn echo_of(outcome: Outcome, what: &str) -> Value {
    let r = outcome.answered(what);
    assert_eq!(r.head.status, 200, "{what}: {}", r.body_str());
    r.json()
}

/// AppAPI's push of `rec` for `app` (§4.2), which must answer 204.
fn push_record(port: u16, app: &str, rec: &Value) {
    let body = rec.to_string();
    let push = format!(
        "POST /exapps/app_api/exapp_storage/{app} HTTP/1.1\r\nHost: lyre.test\r\n\
         Connection: close\r\nharp-shared-key: {KEY}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = send_raw(port, push.as_bytes()).answered("push");
    assert_eq!(r.head.status, 204, "push {app}: {}", r.body_str());
}

fn assert_harp_page(outcome: Outcome, status: u16, body: &str, what: &str) {
    let r = outcome.answered(what);
    assert_eq!(r.head.status, status, "{what}: {}", r.body_str());
    assert_eq!(r.body_str(), body, "{what}: body");
    assert!(
        r.head
            .header("content-type")
            .is_some_and(|v| v.starts_with("text/plain")),
        "{what}: content-type {:?}",
        r.head.header("content-type")
    );
}

/// H-46, H-50, H-52, H-63: PUBLIC without cookies and without user-info; USER 403 without
/// a session and 200 with a level-1 one; ADMIN 403 for level 1 (failure recorded: with
/// HP_BLACKLIST_COUNT=2 the second 403 bans), 200 for an admin.
#[test]
fn h46_h52_access_levels_and_failures() {
    let exapp = NcPyExApp::start();
    let nc = FakeNc::start(&nc_config(exapp.port));
    let lyre = lyre_for(&nc, &[("HP_BLACKLIST_COUNT", "2")]);
    let alice = session_cookie(ALICE_COOKIE);
    let root = session_cookie(ROOT_COOKIE);

    let echo = echo_of(get(lyre.port, "/exapps/testapp/public/page", &[]), "PUBLIC");
    assert_eq!(echo["user"], "", "anonymous user id at the ExApp");
    assert_eq!(
        echoed_header(&echo, "authorization-app-api").as_deref(),
        Some(b64(&format!(":{SECRET}")).as_str()),
        "H-63: anonymous token is base64(':<secret>')"
    );
    assert_eq!(
        nc.user_calls(APP_ID),
        0,
        "H-46: PUBLIC route called user-info"
    );

    let echo = echo_of(
        get(lyre.port, "/exapps/testapp/user/x", &[("Cookie", &alice)]),
        "USER with level-1 cookie",
    );
    assert_eq!(echo["user"], "alice");
    let echo = echo_of(
        get(lyre.port, "/exapps/testapp/admin/x", &[("Cookie", &root)]),
        "ADMIN with admin cookie",
    );
    assert_eq!(echo["user"], "root");

    assert_harp_page(
        get(lyre.port, "/exapps/testapp/user/x", &[]),
        403,
        "403 Forbidden",
        "USER without cookie",
    );
    // One failure so far: not banned yet.
    echo_of(
        get(lyre.port, "/exapps/testapp/public/still-ok", &[]),
        "PUBLIC after one failure",
    );
    assert_harp_page(
        get(lyre.port, "/exapps/testapp/admin/x", &[("Cookie", &alice)]),
        403,
        "403 Forbidden",
        "ADMIN with a level-1 cookie",
    );
    // The ADMIN 403 was the second recorded failure: HP_BLACKLIST_COUNT=2 bans now.
    assert!(
        get(lyre.port, "/exapps/testapp/public/page", &[]).is_dropped(),
        "the ADMIN 403 did not record a failure (client not banned after two 403s)"
    );
    assert_eq!(nc.meta_calls(APP_ID), 1, "metadata fetched once and cached");
}

/// H-58, H-59, H-29-ish: nc_py_api accepts the injected headers and sees the user id;
/// client-supplied AppAPI headers are overwritten; the `/exapps/<id>` prefix is stripped
/// and the query string arrives byte-exact; `harp-shared-key` is not forwarded by default.
#[test]
fn h58_h59_injected_headers_path_and_query() {
    let exapp = NcPyExApp::start();
    let nc = FakeNc::start(&nc_config(exapp.port));
    let lyre = lyre_for(&nc, &[]);
    let alice = session_cookie(ALICE_COOKIE);
    let query = "a=1&b=%2F%20x&&c==;d&e=%zz&f=%C3%A9+plus&g";
    let target = format!("/exapps/testapp/user/deep/path%2Fenc?{query}");
    let forged = b64(&format!("mallory:{SECRET}"));
    let echo = echo_of(
        get(
            lyre.port,
            &target,
            &[
                ("Cookie", &alice),
                ("EX-APP-ID", "evil"),
                ("EX-APP-VERSION", "6.6.6"),
                ("AUTHORIZATION-APP-API", &forged),
                ("AA-VERSION", "99"),
                ("harp-shared-key", KEY),
                ("X-Custom", "kept"),
            ],
        ),
        "USER request with forged AppAPI headers",
    );
    assert_eq!(echo["user"], "alice", "nc_py_api decoded user id");
    assert_eq!(echo["raw_path"], "/user/deep/path%2Fenc", "prefix stripped");
    assert_eq!(echo["query"], query, "query string byte-exact");
    let h = |n| echoed_header(&echo, n);
    assert_eq!(h("ex-app-id").as_deref(), Some(APP_ID));
    assert_eq!(h("ex-app-version").as_deref(), Some(APP_VERSION));
    assert_eq!(
        h("authorization-app-api"),
        Some(b64(&format!("alice:{SECRET}")))
    );
    assert_eq!(h("aa-version").as_deref(), Some("32"));
    assert_eq!(h("x-custom").as_deref(), Some("kept"));
    assert_eq!(h("host").as_deref(), Some("lyre.test"), "Host unchanged");
    assert_eq!(
        h("harp-shared-key"),
        None,
        "shared key forwarded to the ExApp"
    );
    let count = |name: &str| {
        echo["headers"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|x| x[0] == name).count())
    };
    for name in [
        "ex-app-id",
        "ex-app-version",
        "authorization-app-api",
        "aa-version",
    ] {
        assert_eq!(count(name), 1, "{name} must be replaced, not duplicated");
    }
}

/// `LYRE_FORWARD_SHARED_KEY=true` restores HaRP's behaviour (§8 item 28).
#[test]
fn forward_shared_key_opt_in() {
    let exapp = NcPyExApp::start();
    let nc = FakeNc::start(&nc_config(exapp.port));
    let lyre = lyre_for(&nc, &[("LYRE_FORWARD_SHARED_KEY", "true")]);
    let echo = echo_of(
        get(
            lyre.port,
            "/exapps/testapp/public/x",
            &[("harp-shared-key", KEY)],
        ),
        "PUBLIC with the shared key",
    );
    assert_eq!(
        echoed_header(&echo, "harp-shared-key").as_deref(),
        Some(KEY)
    );
}

/// H-25, H-26, H-27: unknown app -> 404 and one exapp-meta call for 15 s across many
/// connections (spread over both workers), again after the TTL; exapp-meta 500 -> 404,
/// not cached; concurrent first requests share one call.
#[test]
fn h25_h26_h27_metadata_cache() {
    let exapp = NcPyExApp::start();
    let mut cfg = nc_config(exapp.port);
    cfg["override"] = json!({"exapp-meta:broken": {"status": 500, "body": "oops"}});
    cfg["delay"] = json!({"exapp-meta": 0.3});
    let nc = FakeNc::start(&cfg);
    // Each unknown-app 404 records a failure: keep the ban threshold out of the way.
    let lyre = lyre_for(&nc, &[("HP_BLACKLIST_COUNT", "1000")]);
    let port = lyre.port;

    // H-27: 16 concurrent first requests for a known app, one call.
    let results = concurrently(16, move |_| get(port, "/exapps/testapp/public/c", &[]));
    for (i, r) in results.into_iter().enumerate() {
        echo_of(r, &format!("concurrent first request {i}"));
    }
    assert_eq!(
        nc.meta_calls(APP_ID),
        1,
        "H-27: concurrent misses share one call"
    );

    let first = Instant::now();
    for i in 0..16 {
        assert_harp_page(
            get(lyre.port, "/exapps/nope/x", &[]),
            404,
            "404 Not Found",
            &format!("unknown app, connection {i}"),
        );
    }
    let concurrent = concurrently(8, move |_| get(port, "/exapps/nope/y", &[]));
    for r in concurrent {
        assert_eq!(r.status(), Some(404));
    }
    assert!(
        first.elapsed() < Duration::from_secs(14),
        "too slow to test the TTL"
    );
    assert_eq!(
        nc.meta_calls("nope"),
        1,
        "H-25: unknown app must be negatively cached on every worker"
    );

    for i in 0..3 {
        assert_harp_page(
            get(lyre.port, "/exapps/broken/x", &[]),
            404,
            "404 Not Found",
            &format!("exapp-meta 500, request {i}"),
        );
    }
    assert_eq!(nc.meta_calls("broken"), 3, "H-26: a 500 must not be cached");

    // After the 15 s negative TTL Nextcloud is asked again.
    thread::sleep(Duration::from_millis(15_500).saturating_sub(first.elapsed()));
    assert_eq!(get(lyre.port, "/exapps/nope/x", &[]).status(), Some(404));
    assert_eq!(
        nc.meta_calls("nope"),
        2,
        "negative entry must expire after 15 s"
    );
}

/// H-51: user-info 5xx -> `401 Unauthorized` (not a failure, nothing cached).
#[test]
fn h51_user_info_500_is_401() {
    let exapp = NcPyExApp::start();
    let mut cfg = nc_config(exapp.port);
    cfg["override"] = json!({"user-info": {"status": 500, "body": "boom"}});
    let nc = FakeNc::start(&cfg);
    let lyre = lyre_for(&nc, &[("HP_BLACKLIST_COUNT", "2")]);
    let alice = session_cookie(ALICE_COOKIE);
    for i in 0..3 {
        assert_harp_page(
            get(lyre.port, "/exapps/testapp/user/x", &[("Cookie", &alice)]),
            401,
            "401 Unauthorized",
            &format!("user-info 500, request {i}"),
        );
    }
    assert_eq!(
        nc.user_calls(APP_ID),
        3,
        "a failed user-info must not be cached"
    );
    // Three 401s with HP_BLACKLIST_COUNT=2 and still not banned: no failure recorded.
    echo_of(
        get(lyre.port, "/exapps/testapp/public/x", &[]),
        "PUBLIC after user-info failures",
    );
}

/// H-31, H-34: a pushed record is used without any Nextcloud call; DELETE 204 then 404, and
/// afterwards Nextcloud is asked again.
#[test]
fn h31_h34_exapp_storage_push_and_delete() {
    let exapp = NcPyExApp::start();
    let mut cfg = nc_config(exapp.port);
    cfg["apps"] = json!({});
    let nc = FakeNc::start(&cfg);
    let lyre = lyre_for(&nc, &[]);
    push_record(lyre.port, "TestApp", &record(exapp.port, standard_routes()));

    // PUBLIC routes: a USER route would call user-info, which Nextcloud answers 401 for
    // an app it does not know.
    for i in 0..6 {
        echo_of(
            get(lyre.port, &format!("/exapps/testapp/public/{i}"), &[]),
            &format!("request {i} after push"),
        );
    }
    assert_eq!(
        nc.requests(),
        0,
        "H-31: pushed record must be used, no Nextcloud call"
    );

    let delete = request(
        "DELETE",
        "/exapps/app_api/exapp_storage/testapp",
        &[("harp-shared-key", KEY)],
    );
    let r = send_raw(lyre.port, &delete).answered("delete");
    assert_eq!(r.head.status, 204, "delete: {}", r.body_str());
    let r = send_raw(lyre.port, &delete).answered("second delete");
    assert_eq!(r.head.status, 404, "second delete: {}", r.body_str());

    assert_eq!(
        get(lyre.port, "/exapps/testapp/public/x", &[]).status(),
        Some(404),
        "deleted record must be gone on every worker (Nextcloud does not know the app)"
    );
    assert_eq!(nc.meta_calls(APP_ID), 1, "H-34: next request refetches");
}

/// Control bodies may come chunked (HaRP's aiohttp decodes them; AppAPI sends a length):
/// a record pushed in 37-byte chunks is stored as a sized one is, the request pipelined
/// after it on the same connection is served, and the chunked framing is checked as the
/// proxy checks it (a bad chunk: 400, connection closed) and held to the same 1 MiB (413).
#[test]
fn chunked_control_bodies_are_decoded_like_sized_ones() {
    let exapp = NcPyExApp::start();
    let mut cfg = nc_config(exapp.port);
    cfg["apps"] = json!({});
    let nc = FakeNc::start(&cfg);
    let lyre = lyre_for(&nc, &[]);
    let push = |chunked_body: &[u8]| {
        let mut req = format!(
            "POST /exapps/app_api/exapp_storage/testapp HTTP/1.1\r\nHost: lyre.test\r\n\
             harp-shared-key: {KEY}\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        req.extend_from_slice(chunked_body);
        req
    };
    let chunk = |data: &[u8]| {
        let mut out = Vec::new();
        for piece in data.chunks(37) {
            out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    };
    let record = record(exapp.port, standard_routes()).to_string();
    let mut c = common::http::Conn::connect(lyre.port);
    c.set_timeout(ANSWER_TIMEOUT);
    c.send(&push(&chunk(record.as_bytes())));
    c.send(&request(
        "GET",
        "/exapps/testapp/public/after-chunked-push",
        &[],
    ));
    let r = c.read_response();
    assert_eq!(r.head.status, 204, "chunked push: {}", r.body_str());
    let r = c.read_response();
    assert_eq!(r.head.status, 200, "pipelined request: {}", r.body_str());
    assert_eq!(
        nc.requests(),
        0,
        "the pushed record was used, Nextcloud not asked"
    );

    let r = send_raw(lyre.port, &push(b"5\r\n{}{}{}\r\n0\r\n\r\n")).answered("bad chunk");
    assert_eq!(r.head.status, 400, "{}", r.body_str());
    let mut big = chunk(&vec![b' '; (1 << 20) + 1]);
    big.truncate(big.len() - 5); // the body never ends: the size alone must decide
    let r = send_raw(lyre.port, &push(&big)).answered("chunked body over 1 MiB");
    common::assert_control_body_too_large(&r);
}

/// H-103: a control body over 1 MiB -> 413 (answered from the head, body never read).
#[test]
fn h103_control_body_over_1mib_is_413() {
    let nc = FakeNc::start(&json!({"shared_key": KEY}));
    let lyre = lyre_for(&nc, &[]);
    let head = format!(
        "POST /exapps/app_api/exapp_storage/testapp HTTP/1.1\r\nHost: lyre.test\r\n\
         harp-shared-key: {KEY}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        (1 << 20) + 1
    );
    let r = send_raw(lyre.port, head.as_bytes()).answered("oversized control body");
    assert_eq!(r.head.status, 413, "{}", r.body_str());
    // Exactly 1 MiB is within the limit (an invalid record, so not 413).
    let body = vec![b' '; 1 << 20];
    let mut req = format!(
        "POST /exapps/app_api/exapp_storage/testapp HTTP/1.1\r\nHost: lyre.test\r\n\
         Connection: close\r\nharp-shared-key: {KEY}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let r = send_raw(lyre.port, &req).answered("1 MiB control body");
    assert_ne!(r.head.status, 413, "1 MiB exactly must be accepted");
}

/// H-86: Lyre has no Kubernetes backend, so its wrappers answer as HaRP's do with the
/// backend off: 503 with HaRP's text; `install_certificates` validates and answers 204.
#[test]
fn h86_kubernetes_wrappers_answer_as_with_the_backend_disabled() {
    let nc = FakeNc::start(&json!({"shared_key": KEY}));
    let lyre = lyre_for(&nc, &[]);
    let post = |action: &str, body: &str| {
        let req = format!(
            "POST /exapps/app_api/k8s/exapp/{action} HTTP/1.1\r\nHost: lyre.test\r\n\
             Connection: close\r\nharp-shared-key: {KEY}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        send_raw(lyre.port, req.as_bytes()).answered(action)
    };
    let name = r#"{"name": "testapp", "instance_id": ""}"#;
    for action in [
        "exists",
        "create",
        "start",
        "wait_for_start",
        "remove",
        "expose",
    ] {
        let r = post(action, name);
        assert_eq!(r.head.status, 503, "{action}: {}", r.body_str());
        assert_eq!(
            r.body_str(),
            "Kubernetes backend is disabled in HaRP.",
            "{action}"
        );
    }
    assert_eq!(post("install_certificates", name).head.status, 204);
    let r = post("install_certificates", "not json");
    assert_eq!(r.head.status, 400);
    assert_eq!(r.body_str(), "Invalid JSON body");
}

/// H-56: no route matches -> 404 and a failure (HP_BLACKLIST_COUNT=1: the next request is
/// dropped).
#[test]
fn h56_no_matching_route_404_and_failure() {
    let exapp = NcPyExApp::start();
    let nc = FakeNc::start(&nc_config(exapp.port));
    let lyre = lyre_for(&nc, &[("HP_BLACKLIST_COUNT", "1")]);
    echo_of(get(lyre.port, "/exapps/testapp/public", &[]), "PUBLIC");
    assert_harp_page(
        get(lyre.port, "/exapps/testapp/elsewhere?public", &[]),
        404,
        "404 Not Found",
        "no route matches",
    );
    let public = request("GET", "/exapps/testapp/public", &[]);
    let banned = common::poll_until(Duration::from_secs(2), || {
        send_raw(lyre.port, &public).is_dropped()
    });
    assert!(banned, "no-route 404 did not record a failure");
}

/// H-68: a direct-mode record whose host is a name is resolved (IPv4 first): `localhost`
/// reaches the nc_py_api ExApp on 127.0.0.1 on both workers; a name that does not resolve
/// answers HaRP's 404 page.
#[test]
fn h68_host_names_are_resolved_and_unresolvable_ones_are_404() {
    let exapp = NcPyExApp::start();
    let mut cfg = nc_config(exapp.port);
    cfg["apps"] = json!({});
    let nc = FakeNc::start(&cfg);
    let lyre = lyre_for(&nc, &[]);
    let push = |app: &str, host: &str| {
        let mut rec = record(exapp.port, standard_routes());
        rec["host"] = json!(host);
        push_record(lyre.port, app, &rec);
    };
    push(APP_ID, "localhost");
    for i in 0..6 {
        echo_of(
            get(lyre.port, &format!("/exapps/{APP_ID}/public/{i}"), &[]),
            &format!("via localhost, request {i}"),
        );
    }
    push("ghostapp", "no-such-host.invalid");
    for i in 0..2 {
        assert_harp_page(
            get(lyre.port, "/exapps/ghostapp/public/x", &[]),
            404,
            "404 Not Found",
            &format!("unresolvable host, request {i}"),
        );
    }
    assert_eq!(nc.requests(), 0, "pushed records need no Nextcloud call");
}
