//! Tests for records, registry, session cache and bans (harp-compat.md §3.6, §3.8, §3.9, §4.2).

use super::*;

const BASE: &str = r#""exapp_token": "t", "exapp_version": "1.0", "host": "h""#;

fn rec(extra: &str) -> Result<ExAppRecord, ExAppsError> {
    parse_record(format!("{{{BASE}, {extra}}}").as_bytes())
}

#[test]
fn record_fields_lenient_as_pydantic() {
    let r = rec(
        r#""port": " 23000 ", "unknown": [1], "resolved_host": "10.0.0.2",
        "routes": [{"url": "^/a", "access_level": "2", "bruteforce_protection": ["401", 403.0]},
                   {"url": "/b", "access_level": 0, "verb": "GET"}]"#,
    )
    .expect("valid record");
    assert_eq!(r.port, 23000);
    assert_eq!(
        r.resolved_host, "10.0.0.2",
        "resolved_host accepted (quirk)"
    );
    assert_eq!(r.routes.len(), 2);
    assert_eq!(r.routes[0].access_level, AccessLevel::Admin);
    assert_eq!(r.routes[0].bruteforce_protection, vec![401, 403]);
    assert_eq!(r.routes[1].access_level, AccessLevel::Public);
    assert!(r.routes[1].bruteforce_protection.is_empty(), "default []");
    let minimal = rec(r#""port": 1"#).unwrap();
    assert!(
        minimal.routes.is_empty() && minimal.resolved_host.is_empty(),
        "defaults"
    );
}

#[test]
fn h32_record_schema_errors_name_the_field() {
    let rows: [(&str, &str); 13] = [
        (r#""port": 1, "exapp_version": 2"#, "exapp_version"),
        // Sent as EX-APP-VERSION: a CR/LF would inject header lines (found by fuzzing).
        (
            r#""port": 1, "exapp_version": "1.0\r\nX-Injected: 1""#,
            "exapp_version",
        ),
        (r#""port": true"#, "port"),
        (r#""port": 70000"#, "port"),
        (r#""port": "80a""#, "port"),
        (r#""port": 1.5"#, "port"),
        (r#""host": 5, "port": 1"#, "host"),
        (r#""port": 1, "routes": {}"#, "routes"),
        (
            r#""port": 1, "routes": [{"access_level": 0}]"#,
            "routes[0].url",
        ),
        (
            r#""port": 1, "routes": [{"url": "/", "access_level": 3}]"#,
            "routes[0].access_level",
        ),
        (
            r#""port": 1, "routes": [{"url": "/"}]"#,
            "routes[0].access_level",
        ),
        (
            r#""port": 1, "routes": [{"url": "/", "access_level": 0, "bruteforce_protection": ["x"]}]"#,
            "routes[0].bruteforce_protection",
        ),
        (r#""port": 1, "resolved_host": null"#, "resolved_host"),
    ];
    for (extra, field) in rows {
        match rec(extra) {
            Err(ExAppsError::Schema { field: f, .. }) => assert_eq!(f, field, "{extra}"),
            other => panic!("{extra}: expected schema error on {field}, got {other:?}"),
        }
    }
    let missing = parse_record(br#"{"exapp_token": "t", "exapp_version": "1", "port": 1}"#);
    assert!(matches!(missing, Err(ExAppsError::Schema { ref field, .. }) if field == "host"));
    assert!(matches!(
        parse_record(b"[]"),
        Err(ExAppsError::Schema { .. })
    ));
    assert!(matches!(
        parse_record(b"nope"),
        Err(ExAppsError::InvalidJson(_))
    ));
    let msg = rec(r#""port": "x""#).unwrap_err().to_string();
    assert!(msg.contains("`port`") && msg.contains("integer"), "{msg}");
}

#[test]
fn route_regex_is_re_match() {
    let rows: [(&str, &str, bool); 9] = [
        ("^/api", "/api/x", true),
        ("/api", "/apix", true),
        ("/api", "/x/api", false),
        ("api", "/api", false),
        ("/a|/b", "/b/c", true),
        ("/x$", "/x", true),
        ("/x$", "/xy", false),
        (r"/v\d+/", "/v12/a", true),
        ("", "/anything", true),
    ];
    for (url, path, expected) in rows {
        let route = Route {
            url: url.into(),
            access_level: AccessLevel::Public,
            bruteforce_protection: vec![],
            regex: compile_route(url),
        };
        assert_eq!(route.matches(path.as_bytes()), expected, "{url} vs {path}");
    }
    assert!(
        compile_route("(").is_none(),
        "H-55 invalid regex does not compile"
    );
    assert!(
        compile_route("(?=x)").is_none(),
        "Python look-ahead unsupported -> skipped"
    );
}

#[test]
fn python_int_parsing() {
    let rows: [(&str, Option<i64>); 10] = [
        ("8080", Some(8080)),
        (" 42\t", Some(42)),
        ("+7", Some(7)),
        ("-1", Some(-1)),
        ("1_000", Some(1000)),
        ("1__0", None),
        ("_1", None),
        ("", None),
        ("0x10", None),
        ("99999999999999999999", None),
    ];
    for (text, expected) in rows {
        assert_eq!(parse_decimal_int(text.as_bytes()), expected, "{text:?}");
    }
}

#[test]
fn h31_h32_push_outcomes() {
    let ok = parse_push(
        "MyApp",
        format!(r#"{{{BASE}, "port": 5, "resolved_host": "1.2.3.4"}}"#).as_bytes(),
    );
    match ok {
        Ok(StateUpdate::Push { app_id_lc, record }) => {
            assert_eq!(app_id_lc, "myapp", "H-31 key lower-cased");
            assert_eq!(record.resolved_host, "", "push resets resolved_host");
        }
        other => panic!("H-31: {other:?}"),
    }
    assert_eq!(
        parse_push("a", br#"{"port": 1}"#).unwrap_err().status(),
        400,
        "H-32"
    );
    assert_eq!(
        parse_push("a", b"not json").unwrap_err().status(),
        500,
        "H-32 quirk"
    );
}

#[test]
fn h25_h26_h33_h34_registry() {
    let mut reg = Registry::default();
    assert!(matches!(reg.lookup("a", 0), Lookup::Miss));
    reg.insert_negative("a".into(), 15_000);
    assert!(
        matches!(reg.lookup("a", 14_999), Lookup::NotFound),
        "H-25 negative"
    );
    assert!(
        matches!(reg.lookup("a", 15_000), Lookup::Miss),
        "H-25 expires"
    );
    reg.insert_negative("a".into(), 30_000);
    let record = rec(r#""port": 1"#).unwrap();
    reg.insert("a".into(), record.clone());
    assert!(
        matches!(reg.lookup("a", 1), Lookup::Found(_)),
        "H-33 push clears negative"
    );
    assert!(reg.delete("A"), "H-34 204");
    assert!(
        matches!(reg.lookup("a", 1), Lookup::Miss),
        "H-33 negative stayed cleared"
    );
    assert!(!reg.delete("a"), "H-34 404");
    reg.insert_negative("b".into(), 30_000);
    reg.delete("b");
    assert!(
        matches!(reg.lookup("b", 1), Lookup::NotFound),
        "DELETE leaves the negative cache"
    );
    assert!(reg.is_empty());
    let body = format!("{{{BASE}, \"port\": 2}}");
    let rows: [(u16, &[u8], &str); 6] = [
        (200, body.as_bytes(), "found"),
        (204, body.as_bytes(), "found"),
        (401, b"", "notfound"),
        (404, b"{}", "notfound"),
        (500, body.as_bytes(), "error"),
        (200, b"{}", "invalid"),
    ];
    for (status, body, kind) in rows {
        let got = match classify_meta_response(status, body) {
            MetaFetch::Found(_) => "found",
            MetaFetch::NotFound => "notfound",
            MetaFetch::Error(_) => "error",
            MetaFetch::Invalid(_) => "invalid",
        };
        assert_eq!(got, kind, "status {status}");
    }
}

#[test]
fn negative_cache_bounded() {
    let mut reg = Registry::default();
    for i in 0..MAX_NEGATIVE_ENTRIES {
        reg.insert_negative(format!("app{i}"), 15_000);
    }
    // All entries are still live at t=0: overflow clears them rather than growing.
    reg.insert_negative("new".into(), 15_000);
    assert!(matches!(reg.lookup("new", 0), Lookup::NotFound));
    assert!(matches!(reg.lookup("app1", 0), Lookup::Miss));
}

#[test]
fn user_info_parsing() {
    let ok: [(&[u8], &str, AccessLevel); 4] = [
        (
            br#"{"user_id": "bob", "access_level": 1}"#,
            "bob",
            AccessLevel::User,
        ),
        (br#"{"access_level": 0}"#, "", AccessLevel::Public),
        (
            br#"{"user_id": "root", "access_level": "2", "x": 1}"#,
            "root",
            AccessLevel::Admin,
        ),
        (
            br#"{"user_id": "", "access_level": 0.0}"#,
            "",
            AccessLevel::Public,
        ),
    ];
    for (body, id, level) in ok {
        let u = parse_user_info(body).unwrap();
        assert_eq!((u.user_id.as_str(), u.access_level), (id, level));
    }
    for bad in [
        &br#"{"user_id": "b"}"#[..],
        br#"{"user_id": 5, "access_level": 1}"#,
        br#"{"access_level": 7}"#,
        b"[]",
        b"x",
    ] {
        assert!(
            parse_user_info(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let rows: [(u16, &[u8], &str); 6] = [
        (200, br#"{"user_id": "a", "access_level": 1}"#, "user"),
        (200, b"oops", "failed"),
        (401, b"", "anonymous"),
        (403, b"", "anonymous"),
        (500, b"", "failed"),
        (302, b"", "failed"),
    ];
    for (status, body, kind) in rows {
        let got = match classify_user_info_response(status, body) {
            UserAnswer::User(_) => "user",
            UserAnswer::Anonymous => "anonymous",
            UserAnswer::Failed(_) => "failed",
        };
        assert_eq!(got, kind, "H-50/H-51 status {status}");
    }
}

fn bob() -> UserInfo {
    UserInfo {
        user_id: "bob".into(),
        access_level: AccessLevel::User,
    }
}

#[test]
fn h49_session_cache() {
    let mut s = SessionCache::new(3_000);
    assert_eq!(
        s.begin_fetch(b"c"),
        FetchTicket::Leader,
        "H-49 single-flight per cookie"
    );
    assert_eq!(s.begin_fetch(b"c"), FetchTicket::Follower);
    assert!(s.add_fetch_waiter(b"c", 1));
    s.fill(b"c".to_vec(), bob(), 10_000);
    assert_eq!(s.finish_fetch(b"c"), vec![1]);
    assert_eq!(
        s.peek(b"c", 13_000),
        Some(&bob()),
        "valid while now - ts <= lifetime"
    );
    assert_eq!(s.peek(b"c", 13_001), None);
    assert_eq!(s.lookup(b"c", 13_000), Some(bob()));
    assert_eq!(s.lookup(b"c", 13_001), None);
    assert!(s.is_empty(), "expired entry removed on lookup");
    s.fill(Vec::new(), bob(), 10_000);
    assert!(s.is_empty(), "empty cookie never cached");
    assert_eq!(s.peek(b"", 10_000), None);
}

#[test]
fn session_cache_bounded() {
    let mut s = SessionCache::new(3_000);
    for i in 0..MAX_SESSIONS {
        s.fill(format!("c{i}").into_bytes(), bob(), i as u64);
    }
    assert_eq!(s.len(), MAX_SESSIONS);
    s.fill(b"new".to_vec(), bob(), MAX_SESSIONS as u64);
    assert!(s.len() <= MAX_SESSIONS, "cap held");
    assert!(s.peek(b"new", MAX_SESSIONS as u64).is_some());
    let last = format!("c{}", MAX_SESSIONS - 1);
    assert!(
        s.peek(last.as_bytes(), MAX_SESSIONS as u64).is_some(),
        "fresh entries survive"
    );
}

#[test]
fn h36_h37_ban_store() {
    let mut b = BanStore::new(3, 1_000);
    for t in [0, 100, 200] {
        assert!(!b.is_banned("ip", t));
        b.record("ip", t);
    }
    assert!(b.is_banned("ip", 200), "H-36 count reached");
    assert!(!b.is_banned("other", 200));
    assert!(b.is_banned("ip", 999));
    assert!(
        !b.is_banned("ip", 1_000),
        "H-37 oldest left the window (now - ts >= window)"
    );
    b.record("ip", 1_050);
    assert!(b.is_banned("ip", 1_050), "sliding: three inside again");
    b.record("ip", 150); // late broadcast from another worker, out of order
    assert!(b.is_banned("ip", 1_100));
    let mut never = BanStore::new(0, 1_000);
    never.record("ip", 0);
    assert!(!never.is_banned("ip", 0));
}

#[test]
fn ban_store_bounded() {
    let mut b = BanStore::new(2, 1_000_000);
    for t in 0..20 {
        b.record("busy", t);
    }
    assert!(
        b.is_banned("busy", 20),
        "capping per-IP timestamps keeps the ban exact"
    );
    for i in 0..MAX_TRACKED_IPS {
        b.record(&format!("ip{i}"), 100 + i as u64);
    }
    assert!(b.tracked_ips() <= MAX_TRACKED_IPS);
    b.record("late", 1_000_000);
    b.record("late", 1_000_001);
    assert!(b.tracked_ips() <= MAX_TRACKED_IPS, "eviction keeps the cap");
    assert!(b.is_banned("late", 1_000_001));
    assert!(!b.is_banned("busy", 1_000_001), "oldest evicted first");
}

#[test]
fn state_apply_routes_every_update() {
    let mut st = State::new(3_000, 2, 10_000);
    let record = rec(r#""port": 1"#).unwrap();
    st.apply(StateUpdate::MetaFill {
        app_id_lc: "a".into(),
        record: Box::new(record.clone()),
    });
    assert!(matches!(st.registry.lookup("a", 0), Lookup::Found(_)));
    st.apply(StateUpdate::Resolved {
        app_id_lc: "a".into(),
        host: "h".into(),
        resolved_host: "10.1.1.1".into(),
    });
    match st.registry.lookup("a", 0) {
        Lookup::Found(r) => assert_eq!(r.resolved_host, "10.1.1.1"),
        _ => panic!("record gone"),
    }
    st.apply(StateUpdate::Delete {
        app_id_lc: "a".into(),
    });
    assert!(matches!(st.registry.lookup("a", 0), Lookup::Miss));
    st.apply(StateUpdate::NegativeFill {
        app_id_lc: "a".into(),
        expires_at_ms: 5,
    });
    assert!(matches!(st.registry.lookup("a", 0), Lookup::NotFound));
    st.apply(StateUpdate::Push {
        app_id_lc: "a".into(),
        record: Box::new(record),
    });
    assert!(matches!(st.registry.lookup("a", 0), Lookup::Found(_)));
    st.apply(StateUpdate::Failure {
        ip: "x".into(),
        at_ms: 1,
    });
    st.apply(StateUpdate::Failure {
        ip: "x".into(),
        at_ms: 2,
    });
    assert!(st.bans.is_banned("x", 3));
    st.apply(StateUpdate::SessionFill {
        cookie: b"c".to_vec(),
        user: bob(),
        at_ms: 0,
    });
    assert_eq!(st.sessions.peek(b"c", 1), Some(&bob()));
    fn assert_send<T: Send>() {}
    assert_send::<StateUpdate>();
}
