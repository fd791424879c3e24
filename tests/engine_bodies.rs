//! Byte-exact bodies: 256 MiB downloads and uploads (sha256 + size), chunked and with
//! Content-Length, through nginx -> Lyre -> upstream and directly, on both drivers
//! (LYRE_DRIVER=uring|epoll) and both pumps (LYRE_PUMP=splice|copy).

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::http::{get_req, send_chunked_pattern, Conn};
use common::pattern::HashSink;
use common::{Lyre, Nginx, Pattern, Upstream};

const BIG: u64 = 256 * 1024 * 1024;

fn big_sha() -> &'static str {
    static SHA: OnceLock<String> = OnceLock::new();
    SHA.get_or_init(|| Pattern::new().sha256(BIG))
}

/// GETs `path` on `port` and checks size + sha256 of the pattern; returns whether the
/// response was chunked.
fn download(port: u16, path: &str, n: u64, want_sha: &str) -> bool {
    let mut c = Conn::connect(port);
    c.send(&get_req(path));
    let head = c.read_head();
    assert_eq!(
        head.status,
        200,
        "GET {path}: {:?}",
        String::from_utf8_lossy(&head.raw)
    );
    let mut sink = HashSink::default();
    c.try_read_body(&head, false, &mut |b| sink.update(b))
        .unwrap_or_else(|e| panic!("GET {path}: body broken after {} bytes: {e}", sink.size));
    assert_eq!(sink.size, n, "GET {path}: body size");
    assert_eq!(sink.hex(), want_sha, "GET {path}: body sha256");
    // The connection must still be usable (framing ended exactly at the body's end).
    c.send(&get_req("/exapps/up/echo-headers?after=download"));
    assert_eq!(
        c.read_response().json()["query"],
        "after=download",
        "request after {path}"
    );
    head.is_chunked()
}

/// The matrix is void unless Lyre really runs the requested driver and pump: its
/// "lyre ready" log line names both (`driver="io_uring"|"epoll"`, `pump=Splice|Copy`).
fn assert_runs_with(lyre: &Lyre, driver: &str, pump: &str) {
    // The listener accepts before the main thread logs "lyre ready": poll for the line.
    let has_ready = || lyre.log().contains("lyre ready");
    let log = if common::poll_until(Duration::from_secs(10), has_ready) {
        lyre.log()
    } else {
        panic!("no `lyre ready` line in:\n{}", lyre.log())
    };
    let ready = log
        .lines()
        .find(|l| l.contains("lyre ready"))
        .unwrap_or_default();
    let want_driver = if driver == "uring" {
        "driver=\"io_uring\""
    } else {
        "driver=\"epoll\""
    };
    let want_pump = if pump == "splice" {
        "pump=Splice"
    } else {
        "pump=Copy"
    };
    assert!(
        ready.contains(want_driver),
        "LYRE_DRIVER={driver} but Lyre says: {ready}"
    );
    assert!(
        ready.contains(want_pump),
        "LYRE_PUMP={pump} but Lyre says: {ready}"
    );
}

fn download_matrix_case(driver: &str, pump: &str) {
    let up = Upstream::start();
    let lyre = Lyre::routed(
        &[("/exapps/up/", up.port)],
        &[("LYRE_DRIVER", driver), ("LYRE_PUMP", pump)],
    );
    assert_runs_with(&lyre, driver, pump);
    let chunked = download(lyre.port, "/exapps/up/bytes/268435456", BIG, big_sha());
    assert!(
        chunked,
        "upstream sent chunked; Lyre should keep that framing"
    );
    let chunked = download(lyre.port, "/exapps/up/bytes/268435456?cl=1", BIG, big_sha());
    assert!(!chunked, "upstream sent Content-Length");
}

#[test]
fn download_256mib_uring_splice() {
    download_matrix_case("uring", "splice");
}

#[test]
fn download_256mib_uring_copy() {
    download_matrix_case("uring", "copy");
}

#[test]
fn download_256mib_epoll_splice() {
    download_matrix_case("epoll", "splice");
}

#[test]
fn download_256mib_epoll_copy() {
    download_matrix_case("epoll", "copy");
}

#[test]
fn download_256mib_through_nginx() {
    let up = Upstream::start();
    let lyre = Lyre::routed(&[("/exapps/up/", up.port)], &[]);
    let ngx = Nginx::start(lyre.port);
    download(ngx.port, "/exapps/up/bytes/268435456", BIG, big_sha());
}

fn assert_upload_result(c: &mut Conn, n: u64, want: &str) {
    let r = c.read_response();
    assert_eq!(r.head.status, 200, "upload: {}", r.body_str());
    let j = r.json();
    assert_eq!(j["size"], n, "upload size seen by upstream");
    assert_eq!(j["sha256"], want, "upload sha256 seen by upstream");
}

#[test]
fn upload_256mib_chunked_through_nginx() {
    let up = Upstream::start();
    let lyre = Lyre::routed(&[("/exapps/up/", up.port)], &[]);
    let ngx = Nginx::start(lyre.port);
    let mut c = Conn::connect(ngx.port);
    c.send(b"POST /exapps/up/upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    send_chunked_pattern(&mut c, BIG);
    assert_upload_result(&mut c, BIG, big_sha());
}

#[test]
fn upload_256mib_chunked_direct() {
    let up = Upstream::start();
    let lyre = Lyre::routed(&[("/exapps/up/", up.port)], &[]);
    let mut c = Conn::connect(lyre.port);
    c.send(b"POST /exapps/up/upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    send_chunked_pattern(&mut c, BIG);
    assert_upload_result(&mut c, BIG, big_sha());
    // Same connection, next request: the chunked body ended exactly at its last chunk.
    c.send(&get_req("/exapps/up/echo-headers?after=upload"));
    assert_eq!(c.read_response().json()["query"], "after=upload");
}

fn upload_content_length(driver: &str, pump: &str) {
    let up = Upstream::start();
    let lyre = Lyre::routed(
        &[("/exapps/up/", up.port)],
        &[("LYRE_DRIVER", driver), ("LYRE_PUMP", pump)],
    );
    assert_runs_with(&lyre, driver, pump);
    let mut c = Conn::connect(lyre.port);
    c.send(
        format!("PUT /exapps/up/upload HTTP/1.1\r\nHost: t\r\nContent-Length: {BIG}\r\n\r\n")
            .as_bytes(),
    );
    Pattern::new().for_each_block(BIG, |b| c.send(b));
    assert_upload_result(&mut c, BIG, big_sha());
    c.send(&get_req("/exapps/up/echo-headers?after=upload"));
    assert_eq!(c.read_response().json()["query"], "after=upload");
}

#[test]
fn upload_256mib_content_length_uring_splice() {
    upload_content_length("uring", "splice");
}

#[test]
fn upload_256mib_content_length_epoll_copy() {
    upload_content_length("epoll", "copy");
}
