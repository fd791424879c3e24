//! H-41..H-70: signed requests, sessions, routes, forwarded request, response phase, client IP.

use super::*;

#[test]
fn h41_internal_endpoints_dropped_with_failure() {
    let w = World::with_app();
    for path in [
        "/exapps/app/heartbeat",
        "/exapps/app/init",
        "/exapps/app/enabled?enabled=1",
    ] {
        check_rows(vec![
            ("H-41", &w, req(path), DROP, fail(PEER)),
            (
                "H-41 even with the key",
                &w,
                req(path).key(),
                DROP,
                fail(PEER),
            ),
            (
                "H-45 partial AA headers",
                &w,
                req(path).key().h("ex-app-id", "app"),
                DROP,
                fail(PEER),
            ),
        ]);
    }
    check_rows(vec![(
        "H-41 only exact",
        &w,
        req("/exapps/app/heartbeat/x"),
        E404,
        fail(PEER),
    )]);
}

#[test]
fn h42_signed_request_without_metadata_uses_headers() {
    let w = World::new();
    let need = w.decide(&req("/exapps/new/heartbeat").signed(KEY));
    assert_eq!(
        need.verdict,
        Verdict::NeedMetadata {
            app_id_lc: "new".into()
        },
        "H-42 normal cache path"
    );
    for fetch in [
        MetaFetch::NotFound,
        MetaFetch::Error("500".into()),
        MetaFetch::Invalid("x".into()),
    ] {
        let d = w.decide(&req("/exapps/new/heartbeat").signed(KEY).meta(fetch));
        assert!(d.effects.is_empty(), "H-42 errors swallowed");
        let f = forward(&d.verdict);
        assert_eq!(
            (f.host.as_str(), f.port),
            ("exapp.local", 23050),
            "H-42 ex-app-host/port"
        );
        assert_eq!(f.target_path, b"/heartbeat");
        assert_eq!(header(f, "EX-APP-VERSION"), b"9.9.9");
        assert_eq!(header(f, "AUTHORIZATION-APP-API"), b"dXNlcjpzZWNyZXQ=");
        assert!(f.bruteforce_statuses.is_empty());
    }
    let bad_port = req("/exapps/new/init")
        .signed(KEY)
        .h("ex-app-port", "80x")
        .meta(MetaFetch::NotFound);
    check_rows(vec![(
        "3.5 non-integer ex-app-port -> 503",
        &w,
        bad_port,
        E503,
        vec![],
    )]);
}

#[test]
fn h43_signed_wrong_key_fails_against_peer() {
    let w = World::with_app();
    let r = req("/exapps/app/heartbeat")
        .signed("wrong")
        .peer("10.1.2.3")
        .h("x-forwarded-for", "203.0.113.9");
    check_rows(vec![("H-43", &w, r.clone(), DROP, fail("10.1.2.3"))]);
    assert_eq!(
        w.decide(&r).client_ip,
        "203.0.113.9",
        "H-43 client ip differs from the failure key"
    );
}

#[test]
fn h44_signed_request_with_cached_record() {
    let w = World::with_app();
    let d = w.decide(
        &req("/exapps/app/admin/x?a=1")
            .signed(KEY)
            .h("aa-version", "40"),
    );
    let f = forward(&d.verdict);
    assert_eq!(
        header(f, "AUTHORIZATION-APP-API"),
        b"dXNlcjpzZWNyZXQ=",
        "H-44 token unchanged"
    );
    assert_eq!(
        header(f, "EX-APP-VERSION"),
        b"1.2.3",
        "H-44 version from record"
    );
    assert_eq!(header(f, "AA-VERSION"), b"32", "H-44 AA-VERSION forced");
    assert_eq!(
        (f.host.as_str(), f.port),
        ("127.0.0.1", 23001),
        "H-44 target from record"
    );
    assert_eq!(f.target_path, b"/admin/x?a=1", "H-44 route checks skipped");
}

#[test]
fn h45_partial_signed_headers_is_user_request() {
    let w = World::with_app();
    let r = req("/exapps/app/pub")
        .h("ex-app-version", "1")
        .h("ex-app-id", "app")
        .h("ex-app-host", "h")
        .h("authorization-app-api", "Zm9vOmJhcg==")
        .key();
    let d = w.decide(&r);
    let expected = app_api_token_text("", SECRET);
    assert_eq!(
        header(forward(&d.verdict), "AUTHORIZATION-APP-API"),
        expected.as_bytes(),
        "H-45 overwritten"
    );
    check_rows(vec![(
        "H-45 route checks apply",
        &w,
        req("/exapps/app/admin").key().h("ex-app-id", "app"),
        E403,
        fail(PEER),
    )]);
}

fn app_api_token_text(user: &str, secret: &str) -> String {
    String::from_utf8(checks::app_api_token(user, secret)).unwrap()
}

#[test]
fn h46_to_h48_when_user_info_is_needed() {
    let w = World::with_app();
    let need = |cookie: &[u8]| Verdict::NeedUser {
        app_id_lc: "app".into(),
        pass_cookie: cookie.to_vec(),
    };
    check_rows(vec![
        (
            "H-46 public without cookie: no user-info",
            &w,
            req("/exapps/app/pub"),
            forward_of(&w, "/exapps/app/pub"),
            vec![],
        ),
        (
            "H-47 cookie -> user-info",
            &w,
            req("/exapps/app/pub").cookie("pp"),
            need(b"pp"),
            vec![],
        ),
        (
            "H-48 authorization only",
            &w,
            req("/exapps/app/pub").h("authorization", "Basic eDp5"),
            need(b""),
            vec![],
        ),
        (
            "H-48 empty authorization counts",
            &w,
            req("/exapps/app/user").h("Authorization", ""),
            need(b""),
            vec![],
        ),
    ]);
}

fn forward_of(w: &World, target: &str) -> Verdict {
    let v = w.decide(&req(target)).verdict;
    assert!(matches!(v, Verdict::ExApp(_)));
    v
}

#[test]
fn h48_authorization_only_never_cached() {
    let mut w = World::with_app();
    let r = req("/exapps/app/user").h("authorization", "Bearer t");
    let d = w.decide(&r.clone().user(user("bob", AccessLevel::User)));
    assert!(matches!(d.verdict, Verdict::ExApp(_)));
    w.state.apply(crate::exapps::StateUpdate::SessionFill {
        cookie: vec![],
        user: UserInfo {
            user_id: "bob".into(),
            access_level: AccessLevel::User,
        },
        at_ms: w.now,
    });
    assert!(
        matches!(w.decide(&r).verdict, Verdict::NeedUser { .. }),
        "H-48 next request calls again"
    );
}

#[test]
fn h49_session_cache_lifetime() {
    let mut w = World::with_app();
    let r = req("/exapps/app/user").cookie("pp");
    assert!(matches!(w.decide(&r).verdict, Verdict::NeedUser { .. }));
    let bob = UserInfo {
        user_id: "bob".into(),
        access_level: AccessLevel::User,
    };
    let d = w.decide(&r.clone().user(UserAnswer::User(bob.clone())));
    assert_eq!(
        header(forward(&d.verdict), "AUTHORIZATION-APP-API"),
        app_api_token_text("bob", SECRET).as_bytes()
    );
    w.state.apply(crate::exapps::StateUpdate::SessionFill {
        cookie: b"pp".to_vec(),
        user: bob,
        at_ms: w.now,
    });
    w.now += LIFETIME_MS;
    assert!(
        matches!(w.decide(&r).verdict, Verdict::ExApp(_)),
        "H-49 hit within lifetime"
    );
    assert!(
        matches!(
            w.decide(&req("/exapps/app/user").cookie("other")).verdict,
            Verdict::NeedUser { .. }
        ),
        "H-49 keyed by cookie"
    );
    w.now += 1;
    assert!(
        matches!(w.decide(&r).verdict, Verdict::NeedUser { .. }),
        "H-49 expired -> new call"
    );
}

#[test]
fn h49_lifetime_zero_disables_cache() {
    let mut w = World::with_app();
    w.state = State::new(0, 10, 300_000);
    w.state
        .apply(parse_push("app", record_json("1").as_bytes()).unwrap());
    let bob = UserInfo {
        user_id: "bob".into(),
        access_level: AccessLevel::User,
    };
    w.state.apply(crate::exapps::StateUpdate::SessionFill {
        cookie: b"pp".to_vec(),
        user: bob,
        at_ms: w.now,
    });
    assert!(matches!(
        w.decide(&req("/exapps/app/user").cookie("pp")).verdict,
        Verdict::NeedUser { .. }
    ));
}

#[test]
fn h50_to_h53_access_levels() {
    let w = World::with_app();
    let anon = || UserAnswer::Anonymous;
    check_rows(vec![
        (
            "H-50 4xx anonymous on USER route",
            &w,
            req("/exapps/app/user").cookie("c").user(anon()),
            E403,
            fail(PEER),
        ),
        (
            "H-51 user-info failed -> 401",
            &w,
            req("/exapps/app/pub")
                .cookie("c")
                .user(UserAnswer::Failed("500".into())),
            E401,
            vec![],
        ),
        (
            "H-52 ADMIN with level 1",
            &w,
            req("/exapps/app/admin")
                .cookie("c")
                .user(user("u", AccessLevel::User)),
            E403,
            fail(PEER),
        ),
        (
            "H-52 level-0 NC user on USER route",
            &w,
            req("/exapps/app/user")
                .cookie("c")
                .user(user("", AccessLevel::Public)),
            E403,
            fail(PEER),
        ),
        (
            "H-53 first match decides",
            &w,
            req("/exapps/app/admin/pub")
                .cookie("c")
                .user(user("u", AccessLevel::User)),
            E403,
            fail(PEER),
        ),
        (
            "H-50 anonymous route denial w/o cookie",
            &w,
            req("/exapps/app/user"),
            E403,
            fail(PEER),
        ),
    ]);
    let rows = [
        (
            "H-50 4xx anonymous on PUBLIC route",
            req("/exapps/app/pub").cookie("c").user(anon()),
            "",
        ),
        (
            "H-52 USER route with level 1",
            req("/exapps/app/user")
                .cookie("c")
                .user(user("u1", AccessLevel::User)),
            "u1",
        ),
        (
            "H-52 ADMIN route with level 2",
            req("/exapps/app/admin")
                .cookie("c")
                .user(user("root", AccessLevel::Admin)),
            "root",
        ),
        (
            "H-53 later PUBLIC route after no earlier match",
            req("/exapps/app/later").cookie("c").user(anon()),
            "",
        ),
    ];
    for (id, r, uid) in rows {
        let d = w.decide(&r);
        assert!(d.effects.is_empty(), "{id}");
        let token = app_api_token_text(uid, SECRET);
        assert_eq!(
            header(forward(&d.verdict), "AUTHORIZATION-APP-API"),
            token.as_bytes(),
            "{id}"
        );
    }
}

#[test]
fn h54_to_h56_route_matching() {
    let w = World::with_app();
    for (id, target) in [
        ("H-54 ^/api prefix", "/exapps/app/api/x"),
        ("H-54 /api also matches /apix", "/exapps/app/apix"),
        ("H-54 query not part of the match", "/exapps/app/api?admin"),
        ("H-55 invalid regex skipped", "/exapps/app/later"),
    ] {
        assert!(
            matches!(w.decide(&req(target)).verdict, Verdict::ExApp(_)),
            "{id}"
        );
    }
    check_rows(vec![
        (
            "H-54 anchored at start",
            &w,
            req("/exapps/app/v/api"),
            E404,
            fail(PEER),
        ),
        (
            "H-54 undecoded path",
            &w,
            req("/exapps/app/%61pi"),
            E404,
            fail(PEER),
        ),
        (
            "H-56 no route matches",
            &w,
            req("/exapps/app/nothing"),
            E404,
            fail(PEER),
        ),
        (
            "H-56 empty target",
            &w,
            req("/exapps/app"),
            E404,
            fail(PEER),
        ),
    ]);
}

#[test]
fn h58_h59_forwarded_request() {
    let w = World::with_app();
    let r = req("/exapps/app/pub/a%20b?x=%2F&y=1&&")
        .h("EX-APP-ID", "evil")
        .h("aa-version", "99")
        .h("Host", "cloud.example");
    let d = w.decide(&r);
    let f = forward(&d.verdict);
    assert_eq!(
        f.target_path, b"/pub/a%20b?x=%2F&y=1&&",
        "H-58 prefix removed, query byte-exact"
    );
    let names: Vec<&str> = f.set_headers.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "EX-APP-ID",
            "EX-APP-VERSION",
            "AUTHORIZATION-APP-API",
            "AA-VERSION"
        ],
        "H-58 Host not set"
    );
    assert_eq!(header(f, "EX-APP-ID"), b"app", "H-59 client value replaced");
    assert_eq!(header(f, "EX-APP-VERSION"), b"1.2.3");
    assert_eq!(header(f, "AA-VERSION"), b"32");
    assert_eq!(
        (f.host.as_str(), f.port, f.resolved_host.as_deref()),
        ("127.0.0.1", 23001, None)
    );
    let bare = w.decide(&req("/exapps/app/pub?"));
    assert_eq!(
        forward(&bare.verdict).target_path,
        b"/pub?",
        "H-58 bare ? kept"
    );
}

#[test]
fn h63_anonymous_token() {
    let w = World::with_app();
    let d = w.decide(&req("/exapps/app/pub"));
    assert_eq!(
        header(forward(&d.verdict), "AUTHORIZATION-APP-API"),
        b"OnMzY3JldA==",
        "H-63 base64(':s3cret')"
    );
    assert_eq!(
        checks::app_api_token("admin", "secret"),
        b"YWRtaW46c2VjcmV0"
    );
    assert_eq!(
        checks::app_api_token("üser", "x"),
        b"w7xzZXI6eA==",
        "UTF-8 encoding"
    );
}

#[test]
fn h64_h65_response_phase() {
    let mut w = World::with_app();
    let r = req("/exapps/app/bf")
        .cookie("c")
        .user(user("u", AccessLevel::User));
    let d = w.decide(&r);
    let f = forward(&d.verdict).clone();
    assert_eq!(
        f.bruteforce_statuses,
        vec![401, 403],
        "out-of-range statuses dropped"
    );
    assert!(forward(&w.decide(&req("/exapps/app/pub")).verdict)
        .bruteforce_statuses
        .is_empty());
    assert_eq!(
        response_failure(&f.bruteforce_statuses, 200, &f.client_ip),
        None,
        "H-65 other status"
    );
    assert_eq!(
        response_failure(&[], 401, &f.client_ip),
        None,
        "H-65 no list"
    );
    for _ in 0..10 {
        let e = response_failure(&f.bruteforce_statuses, 401, &f.client_ip).expect("H-64 failure");
        w.state.apply(e.into_update(w.now));
    }
    assert_eq!(w.decide(&r).verdict, DROP, "H-64 banned after 10");
}

/// (id, peer, headers, expected client ip).
type IpRow<'a> = (&'a str, &'a str, &'a [(&'a str, &'a [u8])], &'a str);

#[test]
fn h66_h67_client_ip() {
    let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
    let rows: [IpRow; 10] = [
        (
            "H-66 untrusted peer ignores XFF",
            "198.51.100.7",
            &[("x-forwarded-for", b"1.1.1.1")],
            "198.51.100.7",
        ),
        (
            "H-66 leftmost XFF",
            "10.0.0.1",
            &[("X-Forwarded-For", b" 1.1.1.1 , 2.2.2.2")],
            "1.1.1.1",
        ),
        (
            "H-66 last XFF line wins",
            "10.0.0.1",
            &[
                ("x-forwarded-for", b"1.1.1.1"),
                ("x-forwarded-for", b"3.3.3.3"),
            ],
            "3.3.3.3",
        ),
        (
            "H-66 X-Real-IP fallback",
            "10.0.0.1",
            &[("x-real-ip", b"4.4.4.4")],
            "4.4.4.4",
        ),
        ("H-66 peer fallback", "10.0.0.1", &[], "10.0.0.1"),
        (
            "H-66 IPv6",
            "fd00::1",
            &[("x-forwarded-for", b"2001:db8::1")],
            "2001:db8::1",
        ),
        (
            "H-66 v4-mapped peer",
            "::ffff:10.0.0.1",
            &[("x-forwarded-for", b"5.5.5.5")],
            "5.5.5.5",
        ),
        (
            "H-67 invalid XFF -> X-Real-IP",
            "10.0.0.1",
            &[
                ("x-forwarded-for", b"bogus, 1.1.1.1"),
                ("x-real-ip", b"4.4.4.4"),
            ],
            "4.4.4.4",
        ),
        (
            "H-67 both invalid -> peer",
            "10.0.0.1",
            &[("x-forwarded-for", b"1.1.1.1.1"), ("x-real-ip", b"\xff")],
            "10.0.0.1",
        ),
        (
            "H-67 empty XFF -> peer",
            "10.0.0.1",
            &[("x-forwarded-for", b"")],
            "10.0.0.1",
        ),
    ];
    for (id, peer, headers, expected) in rows {
        let peer: IpAddr = peer.parse().unwrap();
        assert_eq!(
            client_ip(peer, headers, &trusted).to_string(),
            expected,
            "{id}"
        );
    }
    let w = World::with_app();
    let r = req("/foo")
        .peer("10.9.9.9")
        .h("x-forwarded-for", "203.0.113.1");
    check_rows(vec![(
        "H-66 failures keyed by client ip",
        &w,
        r,
        E404,
        fail("203.0.113.1"),
    )]);
}

#[test]
fn h70_unavailable_status() {
    assert_eq!(DenyStatus::Unavailable503.code(), 503, "H-70");
    assert_eq!(
        [
            DenyStatus::Unauthorized401,
            DenyStatus::Forbidden403,
            DenyStatus::NotFound404
        ]
        .map(DenyStatus::code),
        [401, 403, 404]
    );
}

#[test]
fn pass_cookie_and_target_split() {
    // One parser for cookies (`http::cookie`, HAProxy's `req.cook`): `,` separates pairs
    // and quoted values keep their `;` (the decision once used a second, `;`-only parser).
    let rows: [(&[&[u8]], &[u8]); 7] = [
        (&[b"a=1; oc_sessionPassphrase=abc; b=2"], b"abc"),
        (&[b"a=1, oc_sessionPassphrase=x"], b"x"),
        (&[b"oc_sessionPassphrase=\"p;q\""], b"\"p;q\""),
        (
            &[b"oc_sessionPassphrase=one", b"x=1;oc_sessionPassphrase=two"],
            b"two",
        ),
        (&[b"OC_SESSIONPASSPHRASE=x"], b""),
        (&[], b""),
        (&[b"oc_sessionPassphrase="], b""),
    ];
    for (headers, expected) in rows {
        assert_eq!(
            find_pass_cookie(headers.iter().copied()),
            expected,
            "{headers:?}"
        );
    }
    assert_eq!(split_target(b"/a?b?c"), (&b"/a"[..], Some(&b"b?c"[..])));
    assert_eq!(split_target(b"/a"), (&b"/a"[..], None));
}

#[test]
fn resolved_memo_used_and_guarded() {
    let mut w = World::with_app();
    w.state.apply(crate::exapps::StateUpdate::Resolved {
        app_id_lc: "app".into(),
        host: "127.0.0.1".into(),
        resolved_host: "127.0.0.1".into(),
    });
    let d = w.decide(&req("/exapps/app/pub"));
    assert_eq!(
        forward(&d.verdict).resolved_host.as_deref(),
        Some("127.0.0.1")
    );
    let rec = parse_record(record_json("1").replace("127.0.0.1", "app-host").as_bytes()).unwrap();
    w.state.apply(crate::exapps::StateUpdate::Push {
        app_id_lc: "app".into(),
        record: Box::new(rec),
    });
    w.state.apply(crate::exapps::StateUpdate::Resolved {
        app_id_lc: "app".into(),
        host: "127.0.0.1".into(),
        resolved_host: "127.0.0.1".into(),
    });
    let d = w.decide(&req("/exapps/app/pub"));
    assert_eq!(
        forward(&d.verdict).resolved_host,
        None,
        "stale resolution ignored after a push"
    );
}

#[test]
fn facts_from_request_head() {
    use crate::http::{BodyFraming, Header, RequestHead};
    let raw = b"GET /exapps/app/pub?q=1 HTTP/1.1\r\nCookie: oc_sessionPassphrase=one\r\nX-Forwarded-For: 1.2.3.4\r\ncookie: a=b; oc_sessionPassphrase=two\r\n\r\n".to_vec();
    let find = |needle: &[u8]| raw.windows(needle.len()).position(|w| w == needle).unwrap();
    let span = |needle: &[u8]| find(needle)..find(needle) + needle.len();
    let header = |line: &[u8], name_len: usize| {
        let at = find(line);
        Header {
            name: at..at + name_len,
            value: at + name_len + 2..at + line.len(),
        }
    };
    let head = RequestHead {
        method: 0..3,
        target: span(b"/exapps/app/pub?q=1"),
        minor_version: 1,
        headers: vec![
            header(b"Cookie: oc_sessionPassphrase=one", 6),
            header(b"X-Forwarded-For: 1.2.3.4", 15),
            header(b"cookie: a=b; oc_sessionPassphrase=two", 6),
        ],
        framing: BodyFraming::None,
        keep_alive: true,
        upgrade: false,
        expect_continue: false,
        raw: raw.clone(),
    };
    let facts = Facts::from_head(&head, "10.0.0.1".parse().unwrap());
    assert_eq!(facts.path, b"/exapps/app/pub");
    assert_eq!(facts.query, Some(&b"q=1"[..]));
    assert_eq!(facts.pass_cookie, b"two");
    let w = World::with_app();
    let ctx = w.ctx();
    let d = decide(&facts, &ctx, &Resume::default());
    assert_eq!(d.client_ip, "1.2.3.4", "headers read through RequestHead");
    assert_eq!(
        d.verdict,
        Verdict::NeedUser {
            app_id_lc: "app".into(),
            pass_cookie: b"two".to_vec()
        }
    );
}

/// `/exapps/<app>` alone strips to an empty path, which is no valid request-target: the
/// ExApp gets `/` (with the query kept), never `GET  HTTP/1.1` (found by fuzzing).
#[test]
fn the_bare_app_path_is_forwarded_as_slash() {
    let w = World::with_app();
    for (path, want) in [("/exapps/app", "/"), ("/exapps/app?x=1", "/?x=1")] {
        let d = w.decide(&req(path).signed(KEY));
        assert_eq!(forward(&d.verdict).target_path, want.as_bytes(), "{path}");
    }
}

/// An absolute-form target (RFC 9112 §3.2.2; proxies must accept it) is decided on its
/// path, as HaRP's SPOE receives HAProxy's `path`: the same verdict as the origin form, so
/// the anchored PUBLIC route matches and the ExApp gets an origin-form target with the
/// query byte-for-byte, and `..` behind an authority is still dropped.
#[test]
fn absolute_form_targets_are_decided_on_their_path() {
    let w = World::with_app();
    let ctx = w.ctx();
    let verdict = |target: &str| {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: nc.example\r\n\r\n");
        let (head, _) = crate::http::parse_request(raw.as_bytes()).unwrap().unwrap();
        decide(
            &Facts::from_head(&head, PEER.parse().unwrap()),
            &ctx,
            &Resume::default(),
        )
        .verdict
    };
    let pub_x = verdict("http://nc.example/exapps/app/pub/x?a=%2F&b");
    assert_eq!(forward(&pub_x).target_path, b"/pub/x?a=%2F&b");
    assert_eq!(
        forward(&verdict("HTTPS://nc.example:8443/exapps/app/pub")).target_path,
        b"/pub"
    );
    for (absolute, origin) in [
        (
            "http://nc.example/exapps/app/pub/x?a=%2F&b",
            "/exapps/app/pub/x?a=%2F&b",
        ),
        ("http://nc.example/exapps/app/admin", "/exapps/app/admin"),
        ("http://nc.example/exapps/app?x=1", "/exapps/app?x=1"),
        (
            "http://nc.example/exapps/app/pub/../admin",
            "/exapps/app/pub/../admin",
        ),
        (
            "http://nc.example/exapps/app/heartbeat",
            "/exapps/app/heartbeat",
        ),
        ("http://nc.example", "/"),
    ] {
        assert_eq!(verdict(absolute), verdict(origin), "{absolute}");
    }
    assert_eq!(verdict("http://h/exapps/app/pub/../admin"), Verdict::Drop);
}
