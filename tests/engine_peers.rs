//! Sanity of the test peers themselves (no Lyre): the upstream's endpoints answer as the
//! engine tests assume, and nginx built from the template proxies HTTP, bodies and
//! WebSockets to it. If these fail, fix tests/peers/ before reading engine failures.

mod common;

use common::http::{get, get_req, Conn};
use common::pattern::HashSink;
use common::ws::WsClient;
use common::{Nginx, Pattern, Upstream};

#[test]
fn upstream_endpoints_behave_as_documented() {
    let up = Upstream::start();
    let r = get(up.port, "/exapps/up/page");
    assert_eq!(r.head.status, 200);
    assert!(r.body_str().contains("hello from upstream"));

    let r = get(up.port, "/exapps/up/echo-headers?x=1");
    let j = r.json();
    assert_eq!(j["path"], "/exapps/up/echo-headers");
    assert_eq!(j["query"], "x=1");

    let pat = Pattern::new();
    for (path, chunked) in [("/bytes/200003", true), ("/bytes/200003?cl=1", false)] {
        let r = get(up.port, path);
        assert_eq!(r.head.is_chunked(), chunked, "{path} framing");
        assert_eq!(r.body.len(), 200_003);
        assert_eq!(
            common::sha256_hex(&r.body),
            pat.sha256(200_003),
            "{path} pattern"
        );
    }

    let r = get(up.port, "/status/418");
    assert_eq!(r.head.status, 418);

    assert_eq!(up.connections(), 5, "5 proxied-path connections so far");
    assert!(up.saw("/exapps/up/page"));
}

#[test]
fn upstream_counts_keepalive_reuse() {
    let up = Upstream::start();
    let mut c = Conn::connect(up.port);
    for i in 0..5 {
        c.send(&get_req(&format!("/page?i={i}")));
        assert_eq!(c.read_response().head.status, 200);
    }
    assert_eq!(up.connections(), 1);
}

#[test]
fn nginx_proxies_http_bodies_and_websocket_to_upstream() {
    let up = Upstream::start();
    let ngx = Nginx::start(up.port);
    let r = get(ngx.port, "/exapps/up/echo-headers");
    assert_eq!(r.head.status, 200);
    let j = r.json();
    let has_xff = j["headers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h[0] == "X-Forwarded-For");
    assert!(has_xff, "nginx adds X-Forwarded-For: {j}");

    // Chunked upload through nginx (request buffering off).
    let mut c = Conn::connect(ngx.port);
    let pat = Pattern::new();
    let n = 3 * 1024 * 1024 + 5;
    c.send(b"POST /exapps/up/upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    pat.for_each_block(n, |b| {
        c.send(format!("{:x}\r\n", b.len()).as_bytes());
        c.send(b);
        c.send(b"\r\n");
    });
    c.send(b"0\r\n\r\n");
    let j = c.read_response().json();
    assert_eq!(j["size"], n);
    assert_eq!(j["sha256"], pat.sha256(n));

    // Download through nginx.
    c.send(&get_req("/exapps/up/bytes/1000000"));
    let head = c.read_head();
    let mut sink = HashSink::default();
    c.try_read_body(&head, false, &mut |b| sink.update(b))
        .unwrap();
    assert_eq!(sink.size, 1_000_000);
    assert_eq!(sink.hex(), pat.sha256(1_000_000));

    let mut ws = WsClient::connect(ngx.port, "/exapps/up/ws");
    ws.assert_echo("hello through nginx");
    ws.close();
}
