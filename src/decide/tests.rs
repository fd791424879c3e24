//! Table-driven tests for `decide`, one row (or more) per harp-compat.md §7 H-id.

use std::net::IpAddr;

use ipnet::IpNet;

use super::*;
use crate::exapps::{
    classify_meta_response, parse_push, parse_record, AccessLevel, MetaFetch, State, UserAnswer,
    UserInfo,
};

const KEY: &str = "k3y";
const SECRET: &str = "s3cret";
const NOW: u64 = 1_000_000;
const LIFETIME_MS: u64 = 3_000;
const PEER: &str = "198.51.100.7";

/// Routes of the test app: admin `/admin`, then public `/pub`, user `/user`, a bad regex,
/// public `/later`, user `/bf` with a brute-force list.
const ROUTES: &str = r#"[
    {"url": "^/admin", "access_level": 2},
    {"url": "^/pub", "access_level": 0},
    {"url": "/user", "access_level": "1"},
    {"url": "(", "access_level": 0},
    {"url": "/later", "access_level": 0},
    {"url": "/bf", "access_level": 1, "bruteforce_protection": [401, 403, 70000]},
    {"url": "/api", "access_level": 0}
]"#;

fn record_json(version: &str) -> String {
    format!(
        r#"{{"exapp_token": "{SECRET}", "exapp_version": "{version}", "host": "127.0.0.1",
            "port": "23001", "routes": {ROUTES}, "extra": true}}"#
    )
}

struct World {
    key: Secret,
    trusted: Vec<IpNet>,
    state: State,
    now: u64,
}

impl World {
    fn new() -> World {
        World {
            key: Secret::new(KEY.into()),
            trusted: vec!["10.0.0.0/8".parse().unwrap()],
            state: State::new(LIFETIME_MS, 10, 300_000),
            now: NOW,
        }
    }

    /// A world where app `app` is cached (as after a push).
    fn with_app() -> World {
        let mut w = World::new();
        w.state
            .apply(parse_push("app", record_json("1.2.3").as_bytes()).unwrap());
        w
    }

    fn decide(&self, req: &Req) -> Decision {
        let (path, query) = split_target(req.target.as_bytes());
        let headers: Vec<(&str, &[u8])> = req
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_bytes()))
            .collect();
        let facts = Facts {
            path,
            query,
            headers: headers.as_slice(),
            peer_ip: req.peer.parse().unwrap(),
            pass_cookie: req.cookie.as_bytes(),
        };
        let ctx = Context {
            shared_key: &self.key,
            trusted_proxies: &self.trusted,
            state: &self.state,
            now_ms: self.now,
        };
        decide(&facts, &ctx, &req.resume)
    }

    /// Decide and apply the effects, as the proxy does.
    fn decide_apply(&mut self, req: &Req) -> Verdict {
        let d = self.decide(req);
        for e in d.effects {
            self.state.apply(e.into_update(self.now));
        }
        d.verdict
    }
}

#[derive(Clone)]
struct Req {
    target: String,
    headers: Vec<(&'static str, String)>,
    peer: &'static str,
    cookie: &'static str,
    resume: Resume,
}

fn req(target: &str) -> Req {
    Req {
        target: target.into(),
        headers: vec![],
        peer: PEER,
        cookie: "",
        resume: Resume::default(),
    }
}

impl Req {
    fn h(mut self, name: &'static str, value: &str) -> Req {
        self.headers.push((name, value.into()));
        self
    }
    fn key(self) -> Req {
        self.h("harp-shared-key", KEY)
    }
    fn peer(mut self, peer: &'static str) -> Req {
        self.peer = peer;
        self
    }
    fn cookie(mut self, c: &'static str) -> Req {
        self.cookie = c;
        self
    }
    fn meta(mut self, m: MetaFetch) -> Req {
        self.resume.meta = Some(m);
        self
    }
    fn user(mut self, u: UserAnswer) -> Req {
        self.resume.user = Some(u);
        self
    }
    /// All six AppAPI headers with the given key.
    fn signed(self, key: &str) -> Req {
        self.h("ex-app-version", "9.9.9")
            .h("ex-app-id", "app")
            .h("ex-app-host", "exapp.local")
            .h("ex-app-port", "23050")
            .h("authorization-app-api", "dXNlcjpzZWNyZXQ=")
            .h("harp-shared-key", key)
    }
}

fn user(id: &str, level: AccessLevel) -> UserAnswer {
    UserAnswer::User(UserInfo {
        user_id: id.into(),
        access_level: level,
    })
}

fn fail(ip: &str) -> Vec<Effect> {
    vec![Effect::RecordFailure { ip: ip.into() }]
}

fn forward(v: &Verdict) -> &Forward {
    match v {
        Verdict::ExApp(f) => f,
        other => panic!("expected a forward, got {other:?}"),
    }
}

fn header<'f>(f: &'f Forward, name: &str) -> &'f [u8] {
    &f.set_headers.iter().find(|(n, _)| *n == name).unwrap().1
}

const DROP: Verdict = Verdict::Drop;
const E401: Verdict = Verdict::Deny(DenyStatus::Unauthorized401);
const E403: Verdict = Verdict::Deny(DenyStatus::Forbidden403);
const E404: Verdict = Verdict::Deny(DenyStatus::NotFound404);
const E503: Verdict = Verdict::Deny(DenyStatus::Unavailable503);

/// Rows of (id, world, request, verdict, effects).
fn check_rows(rows: Vec<(&str, &World, Req, Verdict, Vec<Effect>)>) {
    for (id, world, r, verdict, effects) in rows {
        let d = world.decide(&r);
        assert_eq!(d.verdict, verdict, "{id}: {}", r.target);
        assert_eq!(d.effects, effects, "{id}: {}", r.target);
    }
}

#[test]
fn h21_banned_ip_dropped_without_new_failure() {
    let mut w = World::with_app();
    for _ in 0..10 {
        w.state
            .apply(Effect::RecordFailure { ip: PEER.into() }.into_update(NOW));
    }
    check_rows(vec![
        (
            "H-21 public route",
            &w,
            req("/exapps/app/pub"),
            DROP,
            vec![],
        ),
        (
            "H-21 with key",
            &w,
            req("/exapps/app_api/info").key(),
            DROP,
            vec![],
        ),
        (
            "H-21 before the .. check",
            &w,
            req("/exapps/app/../x"),
            DROP,
            vec![],
        ),
    ]);
    assert!(
        matches!(
            w.decide(&req("/exapps/app/pub").peer("198.51.100.8"))
                .verdict,
            Verdict::ExApp(_)
        ),
        "H-21 other ip"
    );
}

#[test]
fn h22_parent_segments_dropped_failure_unless_trusted() {
    let w = World::with_app();
    for path in [
        "/exapps/app/../b",
        "/exapps/app/%2e%2E/b",
        "/exapps/app%2F..%2Fb",
        "/exapps/app/..",
        "/exapps/app/.%2e",
        "/exapps/app/%2E.%2fx",
        "/..",
        "..",
        "/exapps/app/x/../../y?q=1",
    ] {
        check_rows(vec![
            ("H-22 unauthenticated", &w, req(path), DROP, fail(PEER)),
            ("H-22/H-38 trusted", &w, req(path).key(), DROP, vec![]),
        ]);
    }
}

#[test]
fn h23_dots_that_are_not_parent_segments() {
    for path in [
        "/exapps/a/...",
        "/exapps/a/..b",
        "/exapps/a/b..",
        "/exapps/a/%2e%2e%2e",
        "/exapps/a/.x./",
        "/a/%2e",
    ] {
        assert!(!has_parent_segment(path.as_bytes()), "H-23: {path}");
    }
    let w = World::with_app();
    let d = w.decide(&req("/exapps/app/pub/..b"));
    assert_eq!(
        forward(&d.verdict).target_path,
        b"/pub/..b",
        "H-23 forwarded"
    );
}

#[test]
fn h24_no_app_id_is_404() {
    let w = World::with_app();
    for path in [
        "/foo",
        "/",
        "",
        "/exapps/",
        "/exapps//x",
        "/xexapps/app/pub",
        "/EXAPPS/app/pub",
    ] {
        check_rows(vec![
            ("H-24", &w, req(path), E404, fail(PEER)),
            ("H-24/H-38 trusted", &w, req(path).key(), E404, vec![]),
        ]);
    }
}

#[test]
fn app_id_extraction_and_target_path_quirks() {
    let rows: [(&str, Option<&str>, &str); 7] = [
        ("/exapps/app/pub", Some("app"), "/pub"),
        ("/exapps/app", Some("app"), ""),
        ("exapps/app/x", Some("app"), "exapps/app/x"),
        ("/x/exapps/app/y", Some("app"), "/x/exapps/app/y"),
        ("/exapps//exapps/b/y", Some("b"), "/exapps//exapps/b/y"),
        ("/exapps/a%2Fb/c", Some("a%2Fb"), "/c"),
        ("/exapps/appx/y", Some("appx"), "/y"),
    ];
    for (path, id, target) in rows {
        let found = find_app_id(path.as_bytes());
        assert_eq!(found, id.map(str::as_bytes), "app id of {path}");
        assert_eq!(
            target_path(path.as_bytes(), found.unwrap()),
            target.as_bytes(),
            "target of {path}"
        );
    }
}

#[test]
fn h25_unknown_app_404_and_negative_cache() {
    let mut w = World::new();
    let first = w.decide(&req("/exapps/nope/x"));
    assert_eq!(
        first.verdict,
        Verdict::NeedMetadata {
            app_id_lc: "nope".into()
        },
        "H-25 fetch"
    );
    assert!(first.effects.is_empty());
    let fetch = classify_meta_response(401, br#"{"message":"Harp shared key is not valid"}"#);
    assert!(matches!(fetch, MetaFetch::NotFound), "H-25 401 = not found");
    assert!(
        matches!(classify_meta_response(404, b""), MetaFetch::NotFound),
        "H-25 404"
    );
    check_rows(vec![
        (
            "H-25 resumed",
            &w,
            req("/exapps/nope/x").meta(fetch.clone()),
            E404,
            fail(PEER),
        ),
        (
            "H-25/H-38 trusted",
            &w,
            req("/exapps/nope/x").key().meta(fetch.clone()),
            E404,
            vec![],
        ),
    ]);
    w.state.apply(fetch.update("nope", w.now).unwrap());
    check_rows(vec![(
        "H-25 negative hit",
        &w,
        req("/exapps/NOPE/x"),
        E404,
        fail(PEER),
    )]);
    w.now += crate::exapps::NEGATIVE_TTL_MS - 1;
    check_rows(vec![(
        "H-25 still negative",
        &w,
        req("/exapps/nope/x"),
        E404,
        fail(PEER),
    )]);
    w.now += 1;
    check_rows(vec![(
        "H-25 expired after 15 s",
        &w,
        req("/exapps/nope/x"),
        Verdict::NeedMetadata {
            app_id_lc: "nope".into(),
        },
        vec![],
    )]);
}

#[test]
fn h26_metadata_errors_404_not_cached() {
    let w = World::new();
    let rows = [
        ("H-26 500", classify_meta_response(500, b"oops")),
        ("H-26 timeout", MetaFetch::Error("timeout".into())),
        (
            "H-26 invalid body",
            classify_meta_response(200, br#"{"exapp_version": 1}"#),
        ),
        ("H-26 non-json", classify_meta_response(200, b"<html>")),
    ];
    for (id, fetch) in rows {
        assert!(fetch.update("app", NOW).is_none(), "{id}: nothing cached");
        check_rows(vec![(
            id,
            &w,
            req("/exapps/app/pub").meta(fetch),
            E404,
            vec![],
        )]);
    }
    check_rows(vec![(
        "H-26 next request refetches",
        &w,
        req("/exapps/app/pub"),
        Verdict::NeedMetadata {
            app_id_lc: "app".into(),
        },
        vec![],
    )]);
}

#[test]
fn h27_registry_single_flight() {
    use crate::exapps::FetchTicket;
    let mut w = World::new();
    assert_eq!(w.state.registry.begin_fetch("app"), FetchTicket::Leader);
    assert_eq!(w.state.registry.begin_fetch("app"), FetchTicket::Follower);
    assert!(w.state.registry.add_fetch_waiter("app", 7));
    let fetch = classify_meta_response(200, record_json("1").as_bytes());
    w.state.apply(fetch.update("app", w.now).unwrap());
    assert_eq!(w.state.registry.finish_fetch("app"), vec![7]);
    // The follower re-runs with the leader's answer and finds the cached record.
    let d = w.decide(&req("/exapps/app/pub").meta(fetch));
    assert!(
        matches!(d.verdict, Verdict::ExApp(_)),
        "H-27 follower served"
    );
}

#[test]
fn h29_app_id_case() {
    let mut w = World::new();
    let d = w.decide(&req("/exapps/MyApp/pub"));
    assert_eq!(
        d.verdict,
        Verdict::NeedMetadata {
            app_id_lc: "myapp".into()
        },
        "H-29 lookup lower case"
    );
    let fetch = classify_meta_response(200, record_json("1").as_bytes());
    w.state.apply(fetch.update("myapp", w.now).unwrap());
    let d = w.decide(&req("/exapps/MyApp/pub"));
    let f = forward(&d.verdict);
    assert_eq!(
        header(f, "EX-APP-ID"),
        b"MyApp",
        "H-29 EX-APP-ID keeps URL case"
    );
    assert_eq!(f.app_id_lc, "myapp");
    assert_eq!(f.target_path, b"/pub");
}

#[test]
fn h30_positive_cache_never_expires() {
    let mut w = World::with_app();
    w.now += 10 * 365 * 24 * 3600 * 1000;
    assert!(
        matches!(w.decide(&req("/exapps/app/pub")).verdict, Verdict::ExApp(_)),
        "H-30"
    );
}

#[test]
fn h31_h33_h34_push_and_delete() {
    let mut w = World::new();
    w.state
        .apply(MetaFetch::NotFound.update("app", w.now).unwrap());
    check_rows(vec![(
        "H-33 before push",
        &w,
        req("/exapps/app/pub"),
        E404,
        fail(PEER),
    )]);
    let update = parse_push("APP", record_json("2.0").as_bytes()).expect("H-31 valid push -> 204");
    w.state.apply(update);
    let d = w.decide(&req("/exapps/app/pub"));
    assert_eq!(
        header(forward(&d.verdict), "EX-APP-VERSION"),
        b"2.0",
        "H-31/H-33 used without NC"
    );
    assert!(w.state.registry.delete("App"), "H-34 delete cached -> 204");
    assert!(!w.state.registry.delete("app"), "H-34 delete again -> 404");
    check_rows(vec![(
        "H-34 refetch after delete",
        &w,
        req("/exapps/app/pub"),
        Verdict::NeedMetadata {
            app_id_lc: "app".into(),
        },
        vec![],
    )]);
}

#[test]
fn h32_invalid_push_rejected() {
    let rows: [(&str, &str, u16); 6] = [
        (
            "H-32 numeric version",
            r#"{"exapp_token":"t","exapp_version":1,"host":"h","port":1}"#,
            400,
        ),
        (
            "H-32 missing port",
            r#"{"exapp_token":"t","exapp_version":"1","host":"h"}"#,
            400,
        ),
        (
            "H-32 bad access level",
            r#"{"exapp_token":"t","exapp_version":"1","host":"h","port":1,"routes":[{"url":"/","access_level":3}]}"#,
            400,
        ),
        (
            "H-32 port not numeric",
            r#"{"exapp_token":"t","exapp_version":"1","host":"h","port":"x"}"#,
            400,
        ),
        ("H-32 invalid json (quirk 500)", "{", 500),
        ("H-32 empty body (quirk 500)", "", 500),
    ];
    for (id, body, status) in rows {
        let err = parse_push("app", body.as_bytes()).expect_err(id);
        assert_eq!(err.status(), status, "{id}");
    }
}

#[test]
fn h35_app_api_needs_key() {
    let w = World::new();
    check_rows(vec![
        (
            "H-35 no key",
            &w,
            req("/exapps/app_api/info"),
            E401,
            fail(PEER),
        ),
        (
            "H-35 wrong key",
            &w,
            req("/exapps/app_api/info").h("harp-shared-key", "nope"),
            E401,
            fail(PEER),
        ),
        (
            "H-35 right key",
            &w,
            req("/exapps/app_api/exapp_storage/app?x=1").key(),
            Verdict::Control {
                path_and_query: b"/exapp_storage/app?x=1".to_vec(),
            },
            vec![],
        ),
        (
            "H-35 last header wins",
            &w,
            req("/exapps/app_api/info")
                .key()
                .h("Harp-Shared-Key", "nope"),
            E401,
            fail(PEER),
        ),
        (
            "3.4 app_api is case-sensitive",
            &w,
            req("/exapps/App_Api/info"),
            Verdict::NeedMetadata {
                app_id_lc: "app_api".into(),
            },
            vec![],
        ),
    ]);
}

#[test]
fn docker_engine_port_routing() {
    let w = World::new();
    check_rows(vec![
        (
            "H-71 docker port",
            &w,
            req("/exapps/app_api/v1.44/_ping")
                .key()
                .h("docker-engine-port", "24000"),
            Verdict::Docker {
                port: 24000,
                path_and_query: b"/v1.44/_ping".to_vec(),
            },
            vec![],
        ),
        (
            "H-74 /docker/ path goes to control",
            &w,
            req("/exapps/app_api/docker/exapp/create")
                .key()
                .h("docker-engine-port", "24000"),
            Verdict::Control {
                path_and_query: b"/docker/exapp/create".to_vec(),
            },
            vec![],
        ),
        (
            "3.4 non-integer port -> 503",
            &w,
            req("/exapps/app_api/x")
                .key()
                .h("docker-engine-port", "abc"),
            E503,
            vec![],
        ),
        (
            "3.4 empty port header -> control",
            &w,
            req("/exapps/app_api/x").key().h("docker-engine-port", ""),
            Verdict::Control {
                path_and_query: b"/x".to_vec(),
            },
            vec![],
        ),
        (
            "3.4 wrong key before docker",
            &w,
            req("/exapps/app_api/x").h("docker-engine-port", "24000"),
            E401,
            fail(PEER),
        ),
    ]);
}

#[test]
fn h36_ten_failures_ban_even_with_key() {
    let mut w = World::new();
    for i in 0..10 {
        assert_eq!(
            w.decide_apply(&req("/exapps/app_api/info")),
            E401,
            "H-36 failure {i}"
        );
    }
    assert_eq!(
        w.decide_apply(&req("/exapps/app_api/info").key()),
        DROP,
        "H-36 11th dropped"
    );
}

#[test]
fn h37_ban_slides() {
    let mut w = World::new();
    for i in 0..10 {
        w.now = NOW + i * 1000;
        w.decide_apply(&req("/exapps/app_api/info"));
    }
    w.now = NOW + 299_999;
    assert_eq!(
        w.decide(&req("/exapps/app_api/info").key()).verdict,
        DROP,
        "H-37 still banned"
    );
    w.now = NOW + 300_000;
    let d = w.decide(&req("/exapps/app_api/info").key());
    assert!(
        matches!(d.verdict, Verdict::Control { .. }),
        "H-37 lifted when the oldest ages out"
    );
}

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

#[test]
fn h66_h67_client_ip() {
    let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
    let rows: [(&str, &str, &[(&str, &[u8])], &str); 10] = [
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
    let rows: [(&[&[u8]], &[u8]); 5] = [
        (&[b"a=1; oc_sessionPassphrase=abc; b=2"], b"abc"),
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
