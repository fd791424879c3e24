//! H-21..H-38: bans, `..`, app id, metadata cache, push/delete, `app_api` management.

use super::*;

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
            "3.1 header values trimmed",
            &w,
            req("/exapps/app_api/info").h("harp-shared-key", " k3y\t"),
            Verdict::Control {
                path_and_query: b"/info".to_vec(),
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
