//! The README's first command, `lyre demo`: a real `lyre demo` process (on a free port
//! instead of 8780) serves every URL its banner prints, through Lyre to its embedded
//! upstream: the page, /hello, a download of N MiB, the WebSocket echo, and a POST on a
//! keep-alive connection followed by another request on it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::http::{get_req, Conn};
use common::ws::WsClient;
use common::{free_port, poll_until, Proc, TempDir};

struct Demo {
    port: u16,
    proc: Proc,
    _dir: TempDir,
}

fn start_demo() -> Demo {
    let dir = TempDir::new("demo");
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lyre"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")]);
    let proc = Proc::spawn("lyre demo", cmd, dir.path().join("demo.log"));
    let ready = poll_until(Duration::from_secs(15), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(ready, "lyre demo did not listen:\n{}", proc.log());
    Demo {
        port,
        proc,
        _dir: dir,
    }
}

#[test]
fn the_demo_serves_every_url_its_banner_prints() {
    let demo = start_demo();
    let banner = demo.proc.log();
    for path in ["/hello", "/download/1024", "lyre bench --url"] {
        assert!(banner.contains(path), "banner lacks {path}:\n{banner}");
    }
    assert!(
        banner.contains(&format!("http://127.0.0.1:{}/", demo.port)),
        "banner names the listen address:\n{banner}"
    );

    let mut c = Conn::connect(demo.port);
    c.send(&get_req("/"));
    let page = c.read_response();
    assert_eq!(page.head.status, 200);
    assert!(
        page.body_str().contains("new WebSocket"),
        "the page talks WebSocket"
    );

    c.send(&get_req("/hello"));
    let hello = c.read_response();
    assert_eq!(hello.head.status, 200);
    assert_eq!(hello.body_str(), "hello from the Lyre demo upstream\n");

    // 64 MiB of the upstream's repeating pattern, byte-exact.
    c.send(&get_req("/download/64"));
    let head = c.read_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.content_length(), Some(64 << 20));
    let mut at = 0u64;
    let mut wrong = None;
    c.try_read_body(&head, false, &mut |b| {
        for &x in b {
            if wrong.is_none() && x != ((at % (256 * 1024)) % 251) as u8 {
                wrong = Some(at);
            }
            at += 1;
        }
    })
    .expect("download body");
    assert_eq!(at, 64 << 20, "downloaded bytes");
    assert_eq!(wrong, None, "first wrong byte of the download");

    let mut ws = WsClient::connect(demo.port, "/ws");
    ws.assert_echo("hello through Lyre");
    ws.assert_echo(&"x".repeat(70_000));
    ws.close();
}

#[test]
fn a_post_keeps_the_demo_connection_usable() {
    // The demo's pages ignore request bodies, but must read past them: otherwise the body
    // is taken for the next request head and the keep-alive connection breaks.
    let demo = start_demo();
    let mut c = Conn::connect(demo.port);
    let body = vec![b'p'; 100_000];
    let mut req = format!(
        "POST /hello HTTP/1.1\r\nHost: demo\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    for round in 0..3 {
        c.send(&req);
        let r = c.read_response();
        assert_eq!(r.head.status, 200, "POST {round}");
        assert_eq!(r.body_str(), "hello from the Lyre demo upstream\n");
    }
    c.send(&get_req("/hello"));
    assert_eq!(c.read_response().head.status, 200, "GET after the POSTs");
}
