use super::*;
use crate::http::head::{parse_request, parse_response, BodyFraming};

fn request(text: &str) -> RequestHead {
    parse_request(text.as_bytes()).unwrap().unwrap().0
}

fn written(text: &str, edits: &HeadEdits<'_>) -> String {
    let mut out = b"prefix|".to_vec();
    write_request(&request(text), edits, &mut out);
    let s = String::from_utf8(out).unwrap();
    s.strip_prefix("prefix|")
        .expect("appends to out")
        .to_string()
}

#[test]
fn request_passes_through_unchanged_without_edits() {
    let text = "POST /exapps/a/x?q=1 HTTP/1.1\r\nHost: nc\r\nCookie: a=b\r\n\
                Content-Length: 5\r\nTrailer: X-Sum\r\n\r\n";
    assert_eq!(written(text, &HeadEdits::default()), text);
}

#[test]
fn request_hop_by_hop_removed() {
    let text = "GET / HTTP/1.1\r\nHost: nc\r\nConnection: keep-alive, X-Secret, Content-Length, \
                Transfer-Encoding, Host\r\nKeep-Alive: 300\r\nProxy-Connection: keep-alive\r\n\
                TE: trailers\r\nUpgrade: h2c\r\nX-Secret: s\r\nx-secret: t\r\nX-Keep: k\r\n\
                Transfer-Encoding: chunked\r\n\r\n";
    assert_eq!(
        written(text, &HeadEdits::default()),
        "GET / HTTP/1.1\r\nHost: nc\r\nX-Keep: k\r\nTransfer-Encoding: chunked\r\n\r\n",
        "Connection cannot remove Host or framing headers"
    );
}

#[test]
fn request_edits_replace_remove_and_rewrite_path() {
    let text = "GET /exapps/MyApp/api?x=1 HTTP/1.1\r\nHost: nc\r\nEX-APP-ID: forged\r\n\
                aa-version: 1\r\nX-Drop: d\r\nAuthorization-App-Api: forged\r\n\r\n";
    let edits = HeadEdits {
        path: Some(b"/api?x=1"),
        set: vec![
            ("EX-APP-ID", b"MyApp"),
            ("EX-APP-VERSION", b"1.0.0"),
            ("AUTHORIZATION-APP-API", b"OnNlY3JldA=="),
            ("AA-VERSION", b"32"),
        ],
        remove: vec!["x-drop"],
    };
    assert_eq!(
        written(text, &edits),
        "GET /api?x=1 HTTP/1.1\r\nHost: nc\r\nEX-APP-ID: MyApp\r\nEX-APP-VERSION: 1.0.0\r\n\
         AUTHORIZATION-APP-API: OnNlY3JldA==\r\nAA-VERSION: 32\r\n\r\n"
    );
}

#[test]
fn request_upgrade_keeps_upgrade_and_says_so() {
    let text = "GET /ws HTTP/1.1\r\nHost: nc\r\nConnection: keep-alive, Upgrade\r\n\
                Upgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n";
    assert_eq!(
        written(text, &HeadEdits::default()),
        "GET /ws HTTP/1.1\r\nHost: nc\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\
         connection: upgrade\r\n\r\n"
    );
}

#[test]
fn request_keeps_client_version_and_reparses() {
    let text = "GET / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n";
    let out = written(text, &HeadEdits::default());
    assert_eq!(out, "GET / HTTP/1.0\r\nContent-Length: 2\r\n\r\n");
    let (again, len) = parse_request(out.as_bytes()).unwrap().unwrap();
    assert_eq!(
        (again.framing, len),
        (BodyFraming::ContentLength(2), out.len())
    );
}

fn response(text: &str) -> ResponseHead {
    parse_response(text.as_bytes(), false).unwrap().unwrap().0
}

fn written_response(text: &str, keep_alive: bool, client_minor: u8) -> String {
    let mut out = Vec::new();
    write_response_to(&response(text), keep_alive, client_minor, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn response_connection_table() {
    let text = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive, X-Hop\r\n\
                Keep-Alive: timeout=5\r\nX-Hop: h\r\nX-End: e\r\n\r\n";
    let base = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-End: e\r\n";
    let rows: &[(bool, u8, &str)] = &[
        (true, 1, ""),
        (true, 0, "connection: keep-alive\r\n"),
        (false, 1, "connection: close\r\n"),
        (false, 0, "connection: close\r\n"),
    ];
    for (keep_alive, minor, extra) in rows {
        let want = format!("{base}{extra}\r\n");
        assert_eq!(
            written_response(text, *keep_alive, *minor),
            want,
            "{keep_alive} {minor}"
        );
    }
    // The contract form assumes nothing about the client: keep-alive is explicit.
    let mut out = Vec::new();
    write_response(&response(text), true, &mut out);
    assert_eq!(
        out,
        format!("{base}connection: keep-alive\r\n\r\n").as_bytes()
    );
}

#[test]
fn response_status_line_as_received() {
    let out = written_response(
        "HTTP/1.0 404 Nope Nope\r\nContent-Length: 0\r\n\r\n",
        false,
        1,
    );
    assert_eq!(
        out,
        "HTTP/1.0 404 Nope Nope\r\nContent-Length: 0\r\nconnection: close\r\n\r\n"
    );
    let out = written_response("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", true, 1);
    assert_eq!(out, "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n");
}

#[test]
fn response_101_keeps_upgrade() {
    let text = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                Sec-WebSocket-Accept: abc\r\n\r\n";
    let out = written_response(text, false, 1);
    assert_eq!(
        out,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: abc\r\n\
         connection: upgrade\r\n\r\n"
    );
}

#[test]
fn response_keeps_framing_even_if_connection_names_it() {
    let text = "HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding, Upgrade\r\n\
                Transfer-Encoding: chunked\r\nUpgrade: h2c\r\n\r\n";
    let out = written_response(text, true, 1);
    assert_eq!(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    let (again, _) = parse_response(out.as_bytes(), false).unwrap().unwrap();
    assert_eq!(again.framing, BodyFraming::Chunked);
}

#[test]
fn bare_lf_heads_are_reserialised_with_crlf() {
    let text = "GET /a HTTP/1.1\nHost: nc\nX-A: 1\n\nNEXT";
    let (head, len) = parse_request(text.as_bytes()).unwrap().unwrap();
    assert_eq!(len, text.len() - "NEXT".len());
    let mut out = Vec::new();
    write_request(&head, &HeadEdits::default(), &mut out);
    assert_eq!(out, b"GET /a HTTP/1.1\r\nHost: nc\r\nX-A: 1\r\n\r\n");
}
