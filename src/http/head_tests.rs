use super::*;
use crate::http::test_rng::Rng;

type Parsed = Result<Option<(RequestHead, usize)>, HeadError>;

fn req(s: &str) -> Parsed {
    parse_request(s.as_bytes())
}

fn head_of(s: &str) -> RequestHead {
    match req(s) {
        Ok(Some((head, len))) => {
            assert_eq!(len, s.len(), "whole input is the head: {s:?}");
            head
        }
        other => panic!("expected a complete head for {s:?}, got {other:?}"),
    }
}

#[test]
fn simple_get() {
    let head = head_of("GET /exapps/app/x?y=1 HTTP/1.1\r\nHost: nc\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
    assert_eq!(head.method(), b"GET");
    assert_eq!(head.target(), b"/exapps/app/x?y=1");
    assert_eq!(head.path(), b"/exapps/app/x");
    assert_eq!(head.minor_version, 1);
    assert_eq!(head.headers.len(), 3);
    assert_eq!(head.header("host"), Some(&b"nc"[..]));
    assert_eq!(head.header("X-A"), Some(&b"2"[..]), "last occurrence wins");
    assert_eq!(head.framing, BodyFraming::None);
    assert!(head.keep_alive && !head.upgrade && !head.expect_continue && !head.is_head());
}

#[test]
fn header_values_are_trimmed_and_ranges_point_into_raw() {
    let head = head_of("HEAD / HTTP/1.1\r\nHost:   nc  \r\nEmpty:\r\n\r\n");
    assert!(head.is_head());
    assert_eq!(head.header("host"), Some(&b"nc"[..]));
    assert_eq!(head.header("empty"), Some(&b""[..]));
    let names: Vec<&[u8]> = head.fields().map(|(n, _)| n).collect();
    assert_eq!(names, vec![&b"Host"[..], b"Empty"]);
}

#[test]
fn path_and_query_suffix() {
    // (target, path, query_suffix)
    let rows: &[(&str, &str, &str)] = &[
        ("/exapps/a/b", "/exapps/a/b", ""),
        ("/exapps/a/b?x=1&y=%2F", "/exapps/a/b", "?x=1&y=%2F"),
        ("/?", "/", "?"),
        ("/a?b?c", "/a", "?b?c"),
        ("http://nc.example/exapps/a?q", "/exapps/a", "?q"),
        ("HTTPS://nc.example:8443/x", "/x", ""),
        ("http://nc.example", "", ""),
        ("http://nc.example?q=1", "", "?q=1"),
        ("*", "*", ""),
        ("exapps/a", "exapps/a", ""),
    ];
    for (target, path, query) in rows {
        let head = head_of(&format!("OPTIONS {target} HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert_eq!(head.path(), path.as_bytes(), "{target}");
        assert_eq!(head.query_suffix(), query.as_bytes(), "{target}");
    }
}

#[test]
fn leading_empty_lines_are_skipped() {
    let head = head_of("\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(head.method(), b"GET");
    assert_eq!(head.target(), b"/a");
}

#[test]
fn cookie_lookup_spans_all_cookie_headers() {
    let head = head_of(
        "GET / HTTP/1.1\r\nHost: x\r\nCookie: oc_sessionPassphrase=one; a=b\r\n\
         Cookie: c=d\r\ncookie: oc_sessionPassphrase=two\r\n\r\n",
    );
    assert_eq!(head.cookie("oc_sessionPassphrase"), Some(&b"two"[..]));
    assert_eq!(head.cookie("a"), Some(&b"b"[..]));
    assert_eq!(head.cookie("missing"), None);
}

#[test]
fn incomplete_at_every_split_point_then_complete() {
    let text = "POST /exapps/a/upload HTTP/1.1\r\nHost: nc\r\nContent-Length: 5\r\n\
                Connection: keep-alive\r\n\r\nhello";
    let bytes = text.as_bytes();
    let head_len = text.find("\r\n\r\n").unwrap() + 4;
    for cut in 0..head_len {
        assert!(
            matches!(parse_request(&bytes[..cut]), Ok(None)),
            "prefix of {cut} bytes must be incomplete"
        );
    }
    for cut in head_len..=bytes.len() {
        let (head, len) = parse_request(&bytes[..cut]).unwrap().unwrap();
        assert_eq!(len, head_len);
        assert_eq!(head.framing, BodyFraming::ContentLength(5));
        assert_eq!(head.raw, &bytes[..head_len]);
    }
}

#[test]
fn pipelined_requests_report_their_own_length() {
    let first = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
    let second = "GET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
    let both = format!("{first}{second}");
    let (head, len) = parse_request(both.as_bytes()).unwrap().unwrap();
    assert_eq!((head.target(), len), (&b"/1"[..], first.len()));
    let (head, len) = parse_request(&both.as_bytes()[len..]).unwrap().unwrap();
    assert_eq!((head.target(), len), (&b"/2"[..], second.len()));
    assert!(!head.keep_alive);
}

/// One row per framing attack (RFC 9112 §6, CWE-444); `None` = accepted with that framing.
#[test]
fn framing_table() {
    use BodyFraming::*;
    let s = |w: &'static str| Err(HeadError::Smuggling(w));
    let rows: &[(&str, Result<BodyFraming, HeadError>)] = &[
        ("Content-Length: 5", Ok(ContentLength(5))),
        ("Content-Length: 0", Ok(ContentLength(0))),
        ("Content-Length:    5   ", Ok(ContentLength(5))),
        (
            "Content-Length: 5\r\nContent-Length: 5",
            Ok(ContentLength(5)),
        ),
        ("Content-Length: 5, 5", Ok(ContentLength(5))),
        ("Content-Length: 5, 6", s("Content-Length values differ")),
        (
            "Content-Length: 5\r\nContent-Length: 6",
            s("Content-Length values differ"),
        ),
        (
            "Content-Length: +5",
            s("Content-Length is not a decimal number"),
        ),
        (
            "Content-Length: -1",
            s("Content-Length is not a decimal number"),
        ),
        (
            "Content-Length: 0x10",
            s("Content-Length is not a decimal number"),
        ),
        (
            "Content-Length: 5 5",
            s("Content-Length is not a decimal number"),
        ),
        (
            "Content-Length: 5,",
            s("Content-Length is not a decimal number"),
        ),
        (
            "Content-Length:",
            s("Content-Length is not a decimal number"),
        ),
        (
            "Content-Length: 99999999999999999999",
            s("Content-Length is not a decimal number"),
        ),
        (
            "Content-Length: 18446744073709551615",
            Ok(ContentLength(u64::MAX)),
        ),
        ("Transfer-Encoding: chunked", Ok(Chunked)),
        ("Transfer-Encoding: CHUNKED", Ok(Chunked)),
        ("Transfer-Encoding: gzip, chunked", Ok(Chunked)),
        (
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
            Ok(Chunked),
        ),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: 5",
            s("both Transfer-Encoding and Content-Length"),
        ),
        (
            "Content-Length: 5\r\nTransfer-Encoding: chunked",
            s("both Transfer-Encoding and Content-Length"),
        ),
        (
            "Content-Length: x\r\nTransfer-Encoding: chunked",
            s("both Transfer-Encoding and Content-Length"),
        ),
        (
            "Transfer-Encoding: chunked, identity",
            s("final transfer coding is not chunked"),
        ),
        (
            "Transfer-Encoding: xchunked",
            s("final transfer coding is not chunked"),
        ),
        (
            "Transfer-Encoding: chunked;q=1",
            s("final transfer coding is not chunked"),
        ),
        (
            "Transfer-Encoding: identity",
            s("final transfer coding is not chunked"),
        ),
        (
            "Transfer-Encoding:",
            s("final transfer coding is not chunked"),
        ),
        (
            "Transfer-Encoding: chunked, chunked",
            s("chunked applied more than once"),
        ),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            s("chunked applied more than once"),
        ),
    ];
    for (fields, want) in rows {
        let text = format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n\r\n");
        let got = req(&text).map(|parsed| parsed.expect("complete").0.framing);
        assert_eq!(&got, want, "fields {fields:?}");
        if let Err(e) = got {
            assert_eq!(e.status(), 400);
        }
    }
}

#[test]
fn transfer_encoding_in_http10_is_smuggling() {
    let got = req("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert!(matches!(got, Err(HeadError::Smuggling(_))), "{got:?}");
}

#[test]
fn header_syntax_is_malformed() {
    let rows = [
        "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n continued: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",
        "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nHo\x01st: a\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
        "G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\x7c\x03\x03",
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    ];
    for text in rows {
        let got = req(text);
        assert!(
            matches!(got, Err(HeadError::Malformed(_))),
            "{text:?} -> {got:?}"
        );
    }
}

#[test]
fn host_rules() {
    let rows: &[(&str, bool)] = &[
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
        ("GET / HTTP/1.1\r\nHost:\r\n\r\n", true),
        ("GET / HTTP/1.1\r\n\r\n", false),
        ("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", false),
        ("GET / HTTP/1.0\r\n\r\n", true),
        ("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", false),
    ];
    for (text, ok) in rows {
        let got = req(text);
        assert_eq!(got.is_ok(), *ok, "{text:?} -> {got:?}");
        if !ok {
            assert!(matches!(got, Err(HeadError::Malformed(_))));
        }
    }
}

#[test]
fn keep_alive_upgrade_expect_table() {
    // (version, extra fields, keep_alive, upgrade, expect_continue)
    let rows: &[(&str, &str, bool, bool, bool)] = &[
        ("1.1", "", true, false, false),
        ("1.1", "Connection: close\r\n", false, false, false),
        (
            "1.1",
            "Connection: Keep-Alive, CLOSE\r\n",
            false,
            false,
            false,
        ),
        ("1.1", "Connection: keep-alive\r\n", true, false, false),
        ("1.0", "", false, false, false),
        ("1.0", "Connection: keep-alive\r\n", true, false, false),
        ("1.0", "Connection: Keep-Alive\r\n", true, false, false),
        (
            "1.1",
            "Connection: Upgrade\r\nUpgrade: websocket\r\n",
            true,
            true,
            false,
        ),
        (
            "1.1",
            "Connection: keep-alive, upgrade\r\nUpgrade: websocket\r\n",
            true,
            true,
            false,
        ),
        ("1.1", "Upgrade: websocket\r\n", true, false, false),
        ("1.1", "Connection: upgrade\r\n", true, false, false),
        (
            "1.0",
            "Connection: upgrade\r\nUpgrade: websocket\r\n",
            false,
            false,
            false,
        ),
        ("1.1", "Expect: 100-continue\r\n", true, false, true),
        ("1.1", "Expect: 100-Continue\r\n", true, false, true),
        ("1.1", "Expect: something\r\n", true, false, false),
        ("1.0", "Expect: 100-continue\r\n", false, false, false),
    ];
    for (version, fields, keep_alive, upgrade, expect) in rows {
        let head = head_of(&format!("GET / HTTP/{version}\r\nHost: a\r\n{fields}\r\n"));
        assert_eq!(
            head.keep_alive, *keep_alive,
            "{version} {fields:?} keep_alive"
        );
        assert_eq!(head.upgrade, *upgrade, "{version} {fields:?} upgrade");
        assert_eq!(head.expect_continue, *expect, "{version} {fields:?} expect");
    }
}

#[test]
fn any_token_method_is_accepted() {
    for method in ["GET", "PROPFIND", "MKCOL", "PATCH", "X-CUSTOM", "OPTIONS"] {
        let head = head_of(&format!("{method} / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert_eq!(head.method(), method.as_bytes());
    }
}

/// A request whose head is exactly `total` bytes long.
fn padded_request(total: usize) -> Vec<u8> {
    let prefix = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ";
    let mut out = prefix.to_vec();
    out.resize(total - 4, b'p');
    out.extend_from_slice(b"\r\n\r\n");
    out
}

#[test]
fn head_size_limit() {
    let exact = padded_request(MAX_HEAD_BYTES);
    let (_, len) = parse_request(&exact).unwrap().unwrap();
    assert_eq!(len, MAX_HEAD_BYTES);

    // Exactly at the limit, followed by body bytes: still fine.
    let mut with_body = exact.clone();
    with_body.extend_from_slice(b"body");
    assert_eq!(
        parse_request(&with_body).unwrap().unwrap().1,
        MAX_HEAD_BYTES
    );

    let over = padded_request(MAX_HEAD_BYTES + 1);
    assert_eq!(parse_request(&over).unwrap_err(), HeadError::TooLarge);
    assert_eq!(HeadError::TooLarge.status(), 431);

    // Incomplete heads: need more below the cap, too large once the cap is buffered.
    assert!(matches!(
        parse_request(&over[..MAX_HEAD_BYTES - 1]),
        Ok(None)
    ));
    assert_eq!(
        parse_request(&over[..MAX_HEAD_BYTES]).unwrap_err(),
        HeadError::TooLarge
    );
    let endless = vec![b'a'; MAX_HEAD_BYTES * 2];
    let mut endless_req = b"GET / HTTP/1.1\r\nX: ".to_vec();
    endless_req.extend_from_slice(&endless);
    assert_eq!(
        parse_request(&endless_req).unwrap_err(),
        HeadError::TooLarge
    );
}

fn with_headers(count: usize) -> String {
    let mut text = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 1..count {
        text.push_str(&format!("X-{i}: v\r\n"));
    }
    text.push_str("\r\n");
    text
}

#[test]
fn header_count_limit() {
    assert_eq!(
        head_of(&with_headers(MAX_HEADERS)).headers.len(),
        MAX_HEADERS
    );
    for count in [MAX_HEADERS + 1, MAX_HEADERS + 2, 500] {
        assert_eq!(
            req(&with_headers(count)).unwrap_err(),
            HeadError::TooManyHeaders,
            "{count}"
        );
    }
    assert_eq!(HeadError::TooManyHeaders.status(), 431);
}

#[test]
fn errors_explain_themselves() {
    let text = HeadError::Smuggling("both Transfer-Encoding and Content-Length").to_string();
    assert!(
        text.contains("CWE-444") && text.contains("Content-Length"),
        "{text}"
    );
    assert!(HeadError::TooLarge.to_string().contains("65536"));
}

fn resp(text: &str, head_request: bool) -> Result<ResponseHead, HeadError> {
    let (head, len) = parse_response(text.as_bytes(), head_request)?.expect("complete");
    assert_eq!(len, text.find("\r\n\r\n").unwrap() + 4);
    Ok(head)
}

#[test]
fn response_framing_table() {
    use BodyFraming::*;
    // (status line + fields, request was HEAD, framing, keep_alive)
    let rows: &[(&str, bool, BodyFraming, bool)] = &[
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 3",
            false,
            ContentLength(3),
            true,
        ),
        ("HTTP/1.1 200 OK\r\nContent-Length: 3", true, None, true),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
            false,
            Chunked,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
            true,
            None,
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip",
            false,
            UntilClose,
            false,
        ),
        ("HTTP/1.1 200 OK", false, UntilClose, false),
        (
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1",
            false,
            ContentLength(1),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nContent-Length: 1",
            false,
            ContentLength(1),
            false,
        ),
        (
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1",
            false,
            ContentLength(1),
            true,
        ),
        (
            "HTTP/1.0 200 OK\r\nConnection: keep-alive",
            false,
            UntilClose,
            false,
        ),
        (
            "HTTP/1.1 204 No Content\r\nContent-Length: 10",
            false,
            None,
            true,
        ),
        (
            "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked",
            false,
            None,
            true,
        ),
        ("HTTP/1.1 100 Continue", false, None, true),
        ("HTTP/1.1 103 Early Hints\r\nLink: </a>", false, None, true),
        (
            "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket",
            false,
            None,
            false,
        ),
        ("HTTP/1.1 200", false, UntilClose, false),
        (
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0",
            false,
            ContentLength(0),
            true,
        ),
        // Bodiless responses ignore framing headers entirely.
        (
            "HTTP/1.1 304 Not Modified\r\nContent-Length: x",
            false,
            None,
            true,
        ),
    ];
    for (text, head_request, framing, keep_alive) in rows {
        let head = resp(&format!("{text}\r\n\r\n"), *head_request).unwrap();
        assert_eq!(head.framing, *framing, "{text:?} head={head_request}");
        assert_eq!(
            head.keep_alive, *keep_alive,
            "{text:?} head={head_request} keep_alive"
        );
    }
}

#[test]
fn response_errors() {
    let rows = [
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked",
        "HTTP/1.1 200 OK\r\nContent-Length: 1, 2",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2",
        "HTTP/1.1 200 OK\r\nContent-Length: -1",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked",
        "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked",
        "HTTP/1.1 099 Odd",
        "HTTP/1.1 20 OK",
        "HTTP/1.1 2000 OK",
        "HTTP/2 200 OK",
        "HTTP/1.1 200 OK\r\nX: a\r\n b",
        "SSH-2.0-OpenSSH_9.0",
    ];
    for text in rows {
        let got = parse_response(format!("{text}\r\n\r\n").as_bytes(), false);
        assert!(
            matches!(got, Err(HeadError::Smuggling(_) | HeadError::Malformed(_))),
            "{text:?} -> {got:?}"
        );
    }
}

#[test]
fn response_reason_and_limits() {
    let head = resp("HTTP/1.1 418 I'm a teapot\r\nX: y\r\n\r\n", false).unwrap();
    assert_eq!((head.status, head.reason()), (418, &b"I'm a teapot"[..]));
    let head = resp("HTTP/1.1 200 \r\n\r\n", false).unwrap();
    assert_eq!(head.reason(), b"");
    assert!(matches!(
        parse_response(b"HTTP/1.1 200 OK\r\n", false),
        Ok(None)
    ));
    let mut huge = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
    huge.resize(MAX_HEAD_BYTES, b'a');
    assert_eq!(
        parse_response(&huge, false).unwrap_err(),
        HeadError::TooLarge
    );
    let mut many = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..=MAX_HEADERS {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(
        parse_response(many.as_bytes(), false).unwrap_err(),
        HeadError::TooManyHeaders
    );
}

const SEEDS: &[&str] = &[
    "GET /exapps/a/b?c HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nCookie: x=y\r\n\r\nhello",
    "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: upgrade\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
];

/// Fuzz-lite: random bytes and mutated valid heads never panic, and a success always
/// reports a length within the input.
#[test]
fn never_panics_on_random_input() {
    let mut rng = Rng::new(0x5eed_1234);
    let alphabet = b"GET /HTP1.\r\n:;, \tchunkedContent-LgTrsf0123456789\x00\x7f\xff";
    for round in 0..20_000 {
        let input: Vec<u8> = if round % 2 == 0 {
            let len = rng.below(200);
            (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect()
        } else {
            let mut seed = SEEDS[rng.below(SEEDS.len())].as_bytes().to_vec();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(seed.len());
                match rng.below(3) {
                    0 => seed[at] = rng.next() as u8,
                    1 => seed.insert(at, alphabet[rng.below(alphabet.len())]),
                    _ => {
                        seed.remove(at);
                    }
                }
            }
            seed
        };
        if let Ok(Some((head, len))) = parse_request(&input) {
            assert!(len <= input.len());
            let _ = (head.path(), head.cookie("x"), head.header("host"));
        }
        if let Ok(Some((head, len))) = parse_response(&input, round % 3 == 0) {
            assert!(len <= input.len());
            let _ = head.reason();
        }
    }
}

#[test]
fn status_line_code_reads_a_response_head_only() {
    assert_eq!(status_line_code(b"HTTP/1.1 403 Forbidden\r\n"), Some(403));
    assert_eq!(status_line_code(b"HTTP/1.0 200 OK\r\n"), Some(200));
    assert_eq!(status_line_code(b"HTTP/1.1 20"), None);
    assert_eq!(status_line_code(b"HTTP/1.1 2x0 OK"), None);
    assert_eq!(status_line_code(b"HTTP/1.10 200 OK"), None);
    assert_eq!(status_line_code(b"{\"json\": 1}"), None);
}

/// The limits at their edges, with random shapes: heads of 60-70 KiB made of 80-120 header
/// lines of random lengths. A complete head is accepted exactly when it is at most
/// MAX_HEAD_BYTES long and has at most MAX_HEADERS headers; otherwise the error is the
/// limit it broke (431), never a panic or a silent truncation. Fed whole and, for the
/// accepted ones, growing a byte range at a time as a slow client's bytes arrive.
#[test]
fn limits_hold_for_random_heads_around_64_kib_and_100_headers() {
    let mut rng = Rng::new(0x64_0064);
    let (mut accepted, mut too_large, mut too_many) = (0, 0, 0);
    for _ in 0..300 {
        let headers = 80 + rng.below(41);
        let target = 60 * 1024 + rng.below(10 * 1024);
        let mut head = b"GET /exapps/app/x HTTP/1.1\r\nHost: a\r\n".to_vec();
        let line_budget = (target - head.len()) / (headers - 1);
        for i in 1..headers {
            let len = 1 + rng.below(2 * line_budget.max(2));
            let value: Vec<u8> = (0..len).map(|_| b'a' + rng.below(26) as u8).collect();
            head.extend_from_slice(format!("x-h{i}: ").as_bytes());
            head.extend_from_slice(&value);
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let (size, count) = (head.len(), headers);
        match parse_request(&head) {
            Ok(Some((parsed, len))) => {
                assert!(size <= MAX_HEAD_BYTES, "accepted a {size}-byte head");
                assert!(count <= MAX_HEADERS, "accepted {count} headers");
                assert_eq!(len, size);
                assert!(parsed.header("x-h1").is_some_and(|v| !v.is_empty()));
                // The same head trickling in: incomplete until its last byte.
                let cut = 1 + rng.below(size - 1);
                assert!(
                    matches!(parse_request(&head[..cut]), Ok(None)),
                    "prefix of {cut} of a {size}-byte head"
                );
                accepted += 1;
            }
            Ok(None) => panic!("complete {size}-byte head with {count} headers read as incomplete"),
            Err(HeadError::TooLarge) => {
                assert!(size > MAX_HEAD_BYTES, "{size} bytes: TooLarge");
                too_large += 1;
            }
            Err(HeadError::TooManyHeaders) => {
                assert!(count > MAX_HEADERS, "{count} headers: TooManyHeaders");
                too_many += 1;
            }
            Err(e) => panic!("{size} bytes, {count} headers: {e:?}"),
        }
    }
    // The shapes must reach every outcome, or the test proves less than it says.
    assert!(
        accepted >= 20 && too_large >= 20 && too_many >= 20,
        "outcomes: {accepted} accepted, {too_large} too large, {too_many} too many headers"
    );
}
