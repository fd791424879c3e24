//! Hostile and oversize requests: each is answered 400/431, the connection is closed, the
//! upstream never sees the request (nor the request smuggled inside it), and the next
//! connection is served normally (sozu style). One row per case; all rows run and the test
//! reports every failing row at once.

mod common;

use std::time::Duration;

use common::http::{get, get_req, Conn};
use common::{Lyre, Upstream};

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    status: u16,
    /// Whether the outer request may legitimately reach the upstream (the head was valid
    /// and was forwarded before the body turned out invalid).
    outer_may_reach: bool,
}

fn smuggled(tag: &str) -> String {
    format!("GET /exapps/up/page?smuggled={tag} HTTP/1.1\r\nHost: t\r\n\r\n")
}

fn req(tag: &str, headers: &str, body: &str) -> Vec<u8> {
    format!("POST /exapps/up/upload?case={tag} HTTP/1.1\r\nHost: t\r\n{headers}\r\n{body}")
        .into_bytes()
}

fn row(name: &'static str, bytes: Vec<u8>, status: u16) -> Case {
    Case {
        name,
        bytes,
        status,
        outer_may_reach: false,
    }
}

fn cases() -> Vec<Case> {
    let inner = |t: &str| format!("0\r\n\r\n{}", smuggled(t));
    let mut v = vec![
        row(
            "cl-te",
            req(
                "cl-te",
                &format!(
                    "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                    inner("cl-te").len()
                ),
                &inner("cl-te"),
            ),
            400,
        ),
        row(
            "te-cl",
            req(
                "te-cl",
                &format!(
                    "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
                    inner("te-cl").len()
                ),
                &inner("te-cl"),
            ),
            400,
        ),
        row(
            "dup-cl",
            req(
                "dup-cl",
                "Content-Length: 5\r\nContent-Length: 48\r\n",
                &format!("hello{}", smuggled("dup-cl")),
            ),
            400,
        ),
        row(
            "dup-cl-list",
            req(
                "dup-cl-list",
                "Content-Length: 5, 48\r\n",
                &format!("hello{}", smuggled("dup-cl-list")),
            ),
            400,
        ),
        row(
            "negative-cl",
            req(
                "negative-cl",
                "Content-Length: -1\r\n",
                &smuggled("negative-cl"),
            ),
            400,
        ),
        row(
            "te-not-chunked",
            req(
                "te-not-chunked",
                "Transfer-Encoding: gzip\r\n",
                &smuggled("te-not-chunked"),
            ),
            400,
        ),
        row(
            "space-before-colon",
            req(
                "space-before-colon",
                "Content-Length : 5\r\n",
                &format!("hello{}", smuggled("space-before-colon")),
            ),
            400,
        ),
        row(
            "bad-request-line",
            format!(
                "GET /exapps/up/page?case=bad-request-line HTTP/1.1 junk\r\nHost: t\r\n\r\n{}",
                smuggled("bad-request-line")
            )
            .into_bytes(),
            400,
        ),
        row(
            "head-over-64k",
            req(
                "head-over-64k",
                &format!("X-Big: {}\r\n", "a".repeat(70 * 1024)),
                &smuggled("head-over-64k"),
            ),
            431,
        ),
        row(
            "many-lines-over-64k",
            req(
                "many-lines-over-64k",
                &(0..90)
                    .map(|i| format!("X-H-{i}: {}\r\n", "b".repeat(800)))
                    .collect::<String>(),
                "",
            ),
            431,
        ),
        row(
            "101-headers",
            format!(
                "GET /exapps/up/page?case=101-headers HTTP/1.1\r\nHost: t\r\n{}\r\n",
                (0..100)
                    .map(|i| format!("X-H-{i}: v\r\n"))
                    .collect::<String>()
            )
            .into_bytes(),
            431,
        ),
    ];
    // Invalid chunk sizes: the head is valid and may already be forwarded; the smuggled
    // request after the bad chunk must never become a request of its own.
    for (name, size) in [
        ("bad-chunk-size", "zz"),
        ("chunk-size-overflow", "fffffffffffffffffffff"),
        ("chunk-size-negative", "-5"),
    ] {
        let body = format!("{size}\r\nhello\r\n0\r\n\r\n{}", smuggled(name));
        v.push(Case {
            name,
            bytes: req(name, "Transfer-Encoding: chunked\r\n", &body),
            status: 400,
            outer_may_reach: true,
        });
    }
    v
}

/// Runs one case; returns a failure description or None.
fn run_case(lyre: &Lyre, up: &Upstream, case: &Case) -> Option<String> {
    let mut c = Conn::connect(lyre.port);
    c.set_timeout(Duration::from_secs(10));
    // The proxy may answer and stop reading before we finish writing: that is fine.
    let _ = c.send_lenient(&case.bytes);
    let r = match c.try_read_response(false) {
        Ok(r) => r,
        Err(e) => return Some(format!("{}: no {} response ({e})", case.name, case.status)),
    };
    let mut errs = Vec::new();
    if r.head.status != case.status {
        errs.push(format!(
            "status {} (want {}) head {:?}",
            r.head.status,
            case.status,
            String::from_utf8_lossy(&r.head.raw)
        ));
    }
    match c.closed_within(Duration::from_secs(5)) {
        Ok(true) => {}
        Ok(false) => errs.push("connection left open after the error answer".into()),
        Err(extra) => errs.push(format!(
            "bytes after the error answer: {:?}",
            String::from_utf8_lossy(&extra)
        )),
    }
    if up.saw(&format!("smuggled={}", case.name)) {
        errs.push("the SMUGGLED request reached the upstream".into());
    }
    if !case.outer_may_reach && up.saw(&format!("case={}", case.name)) {
        errs.push("the rejected request reached the upstream".into());
    }
    let next = get(lyre.port, &format!("/exapps/up/page?after={}", case.name));
    if next.head.status != 200 {
        errs.push(format!("next connection answered {}", next.head.status));
    }
    (!errs.is_empty()).then(|| format!("{}: {}", case.name, errs.join("; ")))
}

#[test]
fn hostile_requests_rejected_not_forwarded_next_served() {
    let up = Upstream::start();
    let mut lyre = Lyre::routed(&[("/exapps/up/", up.port)], &[]);
    let mut failures = Vec::new();
    for case in cases() {
        if let Some(f) = run_case(&lyre, &up, &case) {
            failures.push(f);
        }
        lyre.assert_alive();
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases().len(),
        failures.join("\n")
    );
}

#[test]
fn exactly_100_headers_are_forwarded() {
    let up = Upstream::start();
    let lyre = Lyre::routed(&[("/exapps/up/", up.port)], &[]);
    let mut c = Conn::connect(lyre.port);
    // Host + 99 others = 100 header lines: at the limit, not over it.
    let extra: String = (0..99).map(|i| format!("X-H-{i}: v\r\n")).collect();
    c.send(
        format!("GET /exapps/up/echo-headers?case=100 HTTP/1.1\r\nHost: t\r\n{extra}\r\n")
            .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(
        r.head.status,
        200,
        "100 headers: {:?}",
        String::from_utf8_lossy(&r.head.raw)
    );
    let n = r.json()["headers"].as_array().map(|a| a.len()).unwrap_or(0);
    assert!(n >= 100, "upstream saw {n} headers");
}

#[test]
fn head_just_under_64k_is_forwarded() {
    let up = Upstream::start();
    let lyre = Lyre::routed(&[("/exapps/up/", up.port)], &[]);
    let mut c = Conn::connect(lyre.port);
    // 60 KiB of headers in 8 lines of 7.5 KiB (aiohttp's own per-field cap is 8190).
    let extra: String = (0..8)
        .map(|i| format!("X-Fill-{i}: {}\r\n", "c".repeat(7680)))
        .collect();
    c.send(
        format!("GET /exapps/up/echo-headers?case=60k HTTP/1.1\r\nHost: t\r\n{extra}\r\n")
            .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(
        r.head.status,
        200,
        "60 KiB head: {:?}",
        String::from_utf8_lossy(&r.head.raw)
    );
    c.send(&get_req("/exapps/up/page"));
    assert_eq!(c.read_response().head.status, 200);
}

/// HaRP's global `maxconn` (harp-compat §2.2), here `LYRE_MAX_CONNECTIONS=2` over two
/// workers: a third client is not served while two connections are open (it waits in the
/// listen backlog, not refused), is served as soon as one closes, and the limit is logged.
#[test]
fn clients_past_max_connections_wait_until_one_closes() {
    let up = Upstream::start();
    let lyre = Lyre::routed(
        &[("/exapps/up/", up.port)],
        &[("LYRE_MAX_CONNECTIONS", "2"), ("LYRE_WORKERS", "2")],
    );
    // The readiness probe's connection may still be counted for a moment.
    std::thread::sleep(Duration::from_millis(300));
    let mut open: Vec<Conn> = (0..2)
        .map(|i| {
            let mut c = Conn::connect(lyre.port);
            c.send(&get_req(&format!("/exapps/up/page?held={i}")));
            assert_eq!(c.read_response().head.status, 200, "connection {i}");
            c
        })
        .collect();
    let mut third = Conn::connect(lyre.port);
    third.send(&get_req("/exapps/up/page?case=third"));
    third.set_timeout(Duration::from_millis(1500));
    assert!(
        third.try_read_head().is_err(),
        "a third connection was served while LYRE_MAX_CONNECTIONS=2 were open"
    );
    assert!(
        !up.saw("case=third"),
        "the third request reached the upstream"
    );
    drop(open.remove(0));
    third.set_timeout(Duration::from_secs(10));
    let head = third
        .try_read_head()
        .expect("served once a connection closed");
    assert_eq!(head.status, 200);
    assert!(
        lyre.log().contains("LYRE_MAX_CONNECTIONS"),
        "the limit was not logged:\n{}",
        lyre.log()
    );
    // Closing everything frees every place: a burst of sequential connections is served.
    drop(open);
    drop(third);
    for i in 0..6 {
        assert_eq!(
            get(lyre.port, &format!("/exapps/up/page?after={i}"))
                .head
                .status,
            200
        );
    }
}

/// POSTs an `n`-byte body to `path` on `port` in one go; returns the status read after
/// sending all of it (`None`: no answer) and whether the whole body could be sent.
fn post_whole_body(port: u16, path: &str, n: usize, extra: &str) -> (Option<u16>, bool) {
    let mut c = Conn::connect(port);
    let head = format!("POST {path} HTTP/1.1\r\nHost: t\r\n{extra}Content-Length: {n}\r\n\r\n");
    let sent = c.send_lenient(head.as_bytes()).is_ok() && c.send_lenient(&vec![b'a'; n]).is_ok();
    (c.try_read_response(false).ok().map(|r| r.head.status), sent)
}

/// An answer given from the head, before the body is read (413 over the control API's
/// 1 MiB, 404 for no ExApp), reaches the client whole while the client is still sending:
/// Lyre closes lingering (FIN, then it reads and discards the rest), as HaRP's HAProxy
/// does. Closing with the body unread made the kernel reset the connection: the client's
/// send failed, and nginx in front answered 502 instead (measured: 4 of 9 such answers to
/// 8 MiB bodies).
#[test]
fn early_answers_survive_a_body_still_being_sent_through_nginx() {
    const BODY: usize = 8 << 20;
    let lyre = Lyre::start(&[], &[]);
    let ngx = common::Nginx::start(lyre.port);
    let key = "harp-shared-key: lyre-test-shared-key\r\n";
    let control = "/exapps/app_api/exapp_storage/someapp";
    for round in 0..8 {
        let (status, sent) = post_whole_body(lyre.port, control, BODY, key);
        assert_eq!(status, Some(413), "round {round}: direct, over 1 MiB");
        assert!(sent, "round {round}: direct, the client's upload was reset");
        let (status, _) = post_whole_body(ngx.port, control, BODY, key);
        assert_eq!(
            status,
            Some(413),
            "round {round}: through nginx, over 1 MiB"
        );
        let (status, _) = post_whole_body(ngx.port, "/exapps/noapp/upload", BODY, "");
        assert_eq!(
            status,
            Some(404),
            "round {round}: through nginx, no such ExApp"
        );
    }
}
