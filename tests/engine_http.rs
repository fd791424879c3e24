//! HTTP/1.1 engine behaviour against the real aiohttp upstream (and nginx in front where
//! named): keep-alive reuse of pooled upstream connections, pipelining, Expect:
//! 100-continue, framing of bodiless answers, path/headers forwarded unchanged, routing.

mod common;

use std::time::Duration;

use common::http::{get, get_req, Conn};
use common::{poll_until, Lyre, Nginx, Pattern, RawUpstream, Upstream};

const UP: &str = "/exapps/up/";

fn stack() -> (Upstream, Lyre) {
    let up = Upstream::start();
    let lyre = Lyre::routed(&[(UP, up.port)], &[]);
    (up, lyre)
}

#[test]
fn keepalive_client_connection_reuses_one_upstream_connection() {
    let (up, lyre) = stack();
    let mut c = Conn::connect(lyre.port);
    for i in 0..10 {
        c.send(&get_req(&format!("/exapps/up/page?i={i}")));
        let r = c.read_response();
        assert_eq!(r.head.status, 200, "request {i}");
        assert!(
            r.body_str().contains("hello from upstream"),
            "request {i} body"
        );
    }
    assert_eq!(
        up.connections(),
        1,
        "10 sequential requests on one client connection should ride one pooled upstream connection"
    );
    assert_eq!(up.paths().len(), 10, "every request forwarded once");
}

#[test]
fn separate_client_connections_share_the_worker_pool() {
    let (up, lyre) = stack();
    const N: u64 = 12;
    for i in 0..N {
        let mut c = Conn::connect(lyre.port);
        c.send(&get_req(&format!("/exapps/up/page?conn={i}")));
        assert_eq!(c.read_response().head.status, 200, "connection {i}");
    }
    let used = up.connections();
    // 2 workers, each with its own pool: reuse means far fewer upstream connections than
    // client connections (not exactly 2: a new client may be accepted before the previous
    // exchange has parked its upstream connection).
    assert!(
        used <= N / 2,
        "{N} client connections used {used} upstream connections: no pooling"
    );
}

#[test]
fn keepalive_reuse_through_nginx() {
    let (up, lyre) = stack();
    let ngx = Nginx::start(lyre.port);
    let mut c = Conn::connect(ngx.port);
    for i in 0..10 {
        c.send(&get_req(&format!("/exapps/up/echo-headers?i={i}")));
        let r = c.read_response();
        assert_eq!(r.head.status, 200, "request {i}");
        assert_eq!(r.json()["query"], format!("i={i}"));
    }
    let used = up.connections();
    assert!(
        used <= 2,
        "10 requests via nginx keepalive used {used} upstream connections"
    );
}

#[test]
fn pipelined_requests_answered_in_order() {
    let (_up, lyre) = stack();
    let mut c = Conn::connect(lyre.port);
    // The first answer is the slowest: order must still hold.
    let mut batch = get_req("/exapps/up/slow?delay=0.3&p=1");
    batch.extend(get_req("/exapps/up/bytes/100000?cl=1&p=2"));
    batch.extend(get_req("/exapps/up/echo-headers?p=3"));
    c.send(&batch);
    let r1 = c.read_response();
    assert_eq!(r1.head.status, 200);
    assert!(
        r1.body_str().starts_with("slow done"),
        "first response: {:?}",
        r1.body_str()
    );
    let r2 = c.read_response();
    assert_eq!(r2.head.status, 200);
    assert_eq!(r2.body.len(), 100_000, "second response");
    assert_eq!(common::sha256_hex(&r2.body), Pattern::new().sha256(100_000));
    let r3 = c.read_response();
    assert_eq!(r3.json()["query"], "p=3", "third response");
    assert!(
        c.buffered().is_empty(),
        "stray bytes after 3 responses: {:?}",
        c.buffered()
    );
}

#[test]
fn expect_100_continue_then_body() {
    let (_up, lyre) = stack();
    let pat = Pattern::new();
    let n: u64 = 1_000_000;
    let mut c = Conn::connect(lyre.port);
    c.send(
        format!(
            "POST /exapps/up/upload HTTP/1.1\r\nHost: t\r\nContent-Length: {n}\r\n\
             Expect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    );
    let interim = c.read_head();
    assert_eq!(
        interim.status,
        100,
        "expected `100 Continue` before sending the body, got {:?}",
        String::from_utf8_lossy(&interim.raw)
    );
    pat.for_each_block(n, |b| c.send(b));
    let r = c.read_response();
    assert_eq!(r.head.status, 200, "{}", r.body_str());
    let j = r.json();
    assert_eq!(j["size"], n);
    assert_eq!(j["sha256"], pat.sha256(n));
}

#[test]
fn bodiless_answers_keep_framing() {
    let (_up, lyre) = stack();
    let mut c = Conn::connect(lyre.port);
    c.send(&get_req("/exapps/up/status/204"));
    let r = c.read_response();
    assert_eq!(r.head.status, 204);
    assert!(r.body.is_empty());

    c.send(b"HEAD /exapps/up/page HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.try_read_response(true).expect("HEAD response");
    assert_eq!(r.head.status, 200);

    c.send(&get_req("/exapps/up/status/304"));
    assert_eq!(c.read_response().head.status, 304);

    c.send(&get_req("/exapps/up/status/418"));
    let r = c.read_response();
    assert_eq!(r.head.status, 418);
    assert_eq!(r.body_str(), "status 418\n");

    // The connection is still in sync after all of that.
    c.send(&get_req("/exapps/up/echo-headers?after=1"));
    assert_eq!(c.read_response().json()["query"], "after=1");
}

#[test]
fn path_query_and_headers_forwarded_unchanged() {
    let (up, lyre) = stack();
    let mut c = Conn::connect(lyre.port);
    let target = "/exapps/up/echo-headers/%7Euser/a%20b;p=1?a=1&b=%2F&c&d=%zz";
    c.send(
        format!(
            "GET {target} HTTP/1.1\r\nHost: lyre.test\r\nX-Test-One: first\r\nX-Test-Dup: a\r\n\
             X-Test-Dup: b\r\nUser-Agent: lyre-tests\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(
        r.head.status,
        404,
        "upstream has no such endpoint; got {}",
        r.body_str()
    );
    assert_eq!(
        up.paths(),
        [target],
        "request target must reach the upstream byte for byte"
    );

    c.send(
        b"GET /exapps/up/echo-headers?q=1 HTTP/1.1\r\nHost: lyre.test\r\nX-Test-One: first\r\n\
          X-Test-Dup: a\r\nX-Test-Dup: b\r\n\r\n",
    );
    let j = c.read_response().json();
    assert_eq!(j["raw_path"], "/exapps/up/echo-headers?q=1");
    let hs: Vec<(String, String)> = j["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap_or("").to_string(),
                h[1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let find = |n: &str| {
        hs.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(find("x-test-one"), ["first"], "{hs:?}");
    assert_eq!(
        find("x-test-dup"),
        ["a", "b"],
        "duplicates kept in order: {hs:?}"
    );
    assert_eq!(find("host"), ["lyre.test"], "Host unchanged: {hs:?}");
}

#[test]
fn lyre_routes_env_selects_upstream_by_prefix() {
    let a = Upstream::start();
    let b = Upstream::start();
    let routes = format!(
        "/exapps/a/=127.0.0.1:{},/exapps/b/=127.0.0.1:{}",
        a.port, b.port
    );
    let lyre = Lyre::start(&[("LYRE_ROUTES", &routes)], &[]);
    assert_eq!(get(lyre.port, "/exapps/a/page?to=a").head.status, 200);
    assert_eq!(get(lyre.port, "/exapps/b/page?to=b").head.status, 200);
    let r = get(lyre.port, "/exapps/none/page?to=none");
    assert!(
        r.head.status >= 400,
        "unrouted path answered {}",
        r.head.status
    );
    assert_eq!(a.paths(), ["/exapps/a/page?to=a"]);
    assert_eq!(b.paths(), ["/exapps/b/page?to=b"]);
}

#[test]
fn server_sent_events_stream_through_nginx() {
    let (_up, lyre) = stack();
    let ngx = Nginx::start(lyre.port);
    let r = get(ngx.port, "/exapps/up/sse?gap=0.2&n=3");
    assert_eq!(r.head.status, 200);
    assert_eq!(r.head.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        r.body_str(),
        "id: 0\ndata: event 0\n\nid: 1\ndata: event 1\n\nid: 2\ndata: event 2\n\n"
    );
}

#[test]
fn pooled_connection_closed_by_upstream_is_not_served_as_502() {
    // Keep-alive answers, then the upstream closes the connection (as uvicorn does after
    // its 5 s keep-alive timeout): the next request must get a fresh connection, not the
    // dead pooled one.
    let raw = RawUpstream::start(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let lyre = Lyre::routed(&[("/exapps/raw/", raw.port)], &[]);
    let mut c = Conn::connect(lyre.port);
    for i in 0..6u64 {
        c.send(&get_req(&format!("/exapps/raw/x?i={i}")));
        let r = c.read_response();
        assert_eq!(
            r.head.status,
            200,
            "request {i} after the upstream closed its previous connection: {:?}",
            String::from_utf8_lossy(&r.head.raw)
        );
        assert_eq!(r.body, b"ok");
        // Wait until the upstream has closed this connection (its FIN is on the wire).
        let closed = poll_until(Duration::from_secs(5), || raw.closed() > i);
        assert!(closed, "raw upstream did not close connection {i}");
    }
    assert_eq!(raw.accepted(), 6, "one upstream connection per request");
}

#[test]
fn client_half_close_after_request_still_gets_the_response() {
    let (_up, lyre) = stack();
    let mut c = Conn::connect(lyre.port);
    c.send(&get_req("/exapps/up/slow?delay=0.2"));
    c.shutdown_write(); // FIN right after the request, as some clients (and `nc -N`) do
    let r = c
        .try_read_response(false)
        .expect("response after the client's FIN");
    assert_eq!(r.head.status, 200);
    assert!(r.body_str().starts_with("slow done"));
}

#[test]
fn http_1_0_request_is_answered_and_closed() {
    let (_up, lyre) = stack();
    let mut c = Conn::connect(lyre.port);
    c.send(b"GET /exapps/up/page HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.head.status, 200);
    assert!(r.body_str().contains("hello from upstream"));
    assert_eq!(
        c.closed_within(Duration::from_secs(10)),
        Ok(true),
        "HTTP/1.0 without keep-alive must be closed"
    );
}

#[test]
fn client_abort_mid_download_does_not_poison_the_pool() {
    // One worker: every exchange draws from the same pool.
    let up = Upstream::start();
    let lyre = Lyre::routed(&[(UP, up.port)], &[("LYRE_WORKERS", "1")]);
    for round in 0..3 {
        let mut c = Conn::connect(lyre.port);
        c.send(&get_req("/exapps/up/bytes/67108864"));
        let head = c.read_head();
        assert_eq!(head.status, 200);
        let part = c.try_read_exact(100_000).expect("first 100 kB");
        assert_eq!(part.len(), 100_000);
        drop(c); // abort: the upstream connection now holds ~64 MiB of unread body
                 // A fresh client must get its own, clean answer.
        for i in 0..3 {
            let r = get(
                lyre.port,
                &format!("/exapps/up/echo-headers?round={round}&i={i}"),
            );
            assert_eq!(r.head.status, 200, "round {round} request {i}");
            assert_eq!(
                r.json()["query"],
                format!("round={round}&i={i}"),
                "round {round} request {i} got someone else's bytes"
            );
        }
    }
}

#[test]
fn concurrent_keepalive_clients_each_get_their_own_answers() {
    let (up, lyre) = stack();
    const CLIENTS: usize = 32;
    const REQUESTS: usize = 25;
    let want_bytes = common::sha256_hex(&{
        let mut v = Vec::new();
        Pattern::new().for_each_block(50_000, |b| v.extend_from_slice(b));
        v
    });
    let port = lyre.port;
    let threads: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let want_bytes = want_bytes.clone();
            std::thread::spawn(move || {
                let mut c = Conn::connect(port);
                for i in 0..REQUESTS {
                    match i % 3 {
                        0 => {
                            c.send(&get_req(&format!("/exapps/up/echo-headers?t={t}&i={i}")));
                            let j = c.read_response().json();
                            assert_eq!(
                                j["query"],
                                format!("t={t}&i={i}"),
                                "client {t} request {i}"
                            );
                        }
                        1 => {
                            c.send(&get_req(&format!("/exapps/up/bytes/50000?cl={}", i % 2)));
                            let r = c.read_response();
                            assert_eq!(r.body.len(), 50_000, "client {t} request {i}");
                            assert_eq!(
                                common::sha256_hex(&r.body),
                                want_bytes,
                                "client {t} request {i}"
                            );
                        }
                        _ => {
                            c.send(&get_req("/exapps/up/page"));
                            let r = c.read_response();
                            assert!(
                                r.body_str().contains("hello from upstream"),
                                "client {t} request {i}"
                            );
                        }
                    }
                }
            })
        })
        .collect();
    for (t, h) in threads.into_iter().enumerate() {
        assert!(
            h.join().is_ok(),
            "client thread {t} failed (see its panic above)"
        );
    }
    assert_eq!(
        up.stats()["requests"],
        (CLIENTS * REQUESTS) as u64,
        "every request forwarded exactly once"
    );
}

/// `GLIBC_TUNABLES` entries of a running process.
fn glibc_tunables_of(pid: u32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("read /proc environ");
    environ
        .split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix("GLIBC_TUNABLES=").map(str::to_string))
}

/// On AMD with glibc < 2.39, `lyre serve` restarts itself (same pid) with glibc's vector
/// memcpy and says so; on other hosts, or with `LYRE_MEMCPY=glibc`, it keeps glibc's
/// choice. Either way it serves.
#[test]
fn memcpy_choice_follows_the_host_and_the_opt_out() {
    use lyre::runtime::memcpy;
    let up = Upstream::start();
    let restarts = memcpy::wanted(memcpy::host(), false, false).is_some();
    let lyre = Lyre::routed(&[(UP, up.port)], &[]);
    assert_eq!(
        glibc_tunables_of(lyre.pid()).as_deref(),
        restarts.then_some(memcpy::TUNABLE),
        "host {:?}",
        memcpy::host()
    );
    let line = if restarts {
        "memcpy: vector loop instead of REP MOVSB"
    } else {
        "memcpy: glibc's choice"
    };
    assert!(
        poll_until(Duration::from_secs(5), || lyre.log().contains(line)),
        "no {line:?} in the log:\n{}",
        lyre.log()
    );
    assert_eq!(get(lyre.port, &format!("{UP}page")).head.status, 200);

    let kept = Lyre::routed(&[(UP, up.port)], &[("LYRE_MEMCPY", "glibc")]);
    assert_eq!(glibc_tunables_of(kept.pid()), None);
    assert!(poll_until(Duration::from_secs(5), || kept
        .log()
        .contains("memcpy: glibc's choice")));
    assert_eq!(get(kept.port, &format!("{UP}page")).head.status, 200);
}

/// Data segments `s` has received (TCP_INFO `tcpi_data_segs_in`, Linux 4.6+).
fn data_segments_in(s: &std::net::TcpStream) -> u32 {
    use std::os::fd::AsRawFd;
    // SAFETY: getsockopt writes at most `len` bytes into the zeroed struct.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
        info.tcpi_data_segs_in
    }
}

/// An upstream that reads each connection until `complete(bytes so far)`, then reports
/// what it read and how many data segments that took ([`data_segments_in`]) and answers
/// `reply`.
fn segment_counting_upstream(
    complete: fn(&[u8]) -> bool,
    reply: &'static [u8],
) -> (
    common::AcceptLoop,
    std::sync::mpsc::Receiver<(Vec<u8>, u32)>,
) {
    use std::io::{Read, Write};
    let (tx, rx) = std::sync::mpsc::channel();
    let upstream = common::AcceptLoop::on_free_port("segment-counting upstream", move |mut s| {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !complete(&got) {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let segs = data_segments_in(&s);
        let _ = s.write_all(reply);
        let _ = tx.send((got, segs));
    });
    (upstream, rx)
}

#[test]
fn a_small_post_and_its_answer_cross_each_hop_in_one_segment() {
    // A request head with its small body, and a response head with its small body, leave
    // Lyre in one send each: one segment per hop (two small pushed segments in a row would
    // also make the receiver's kernel ACK at once: an extra packet and softirq per request).
    const BODY: &[u8] = b"{\"app\":\"one-segment\"}";
    const REPLY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nthere";
    let whole = |g: &[u8]| {
        g.windows(4)
            .position(|w| w == b"\r\n\r\n")
            .is_some_and(|end| g.len() >= end + 4 + BODY.len())
    };
    let (upstream, rx) = segment_counting_upstream(whole, REPLY);
    let lyre = Lyre::routed(&[("/exapps/one/", upstream.port())], &[]);
    let mut c = Conn::connect(lyre.port);
    let mut req = format!(
        "POST /exapps/one/x HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        BODY.len()
    )
    .into_bytes();
    req.extend_from_slice(BODY);
    c.send(&req);
    let r = c.read_response();
    assert_eq!(r.head.status, 200);
    assert_eq!(r.body, b"there");
    let (got, upstream_segs) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the upstream got the request");
    assert!(
        got.ends_with(BODY) && got.starts_with(b"POST /exapps/one/x HTTP/1.1\r\n"),
        "upstream received {:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(
        upstream_segs, 1,
        "data segments from Lyre to the upstream for head + body"
    );
    assert_eq!(
        data_segments_in(&c.stream),
        1,
        "data segments from Lyre to the client for the response head + body"
    );
}

#[test]
fn a_second_lyre_on_the_same_address_refuses_to_start() {
    // SO_REUSEPORT would let a second instance bind HP_EXAPPS_ADDRESS next to the first and
    // silently take a share of its connections (with its own, maybe different, routes).
    let raw = RawUpstream::start(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst");
    let mut first = Lyre::routed(&[("/exapps/raw/", raw.port)], &[]);
    let taken = format!("127.0.0.1:{}", first.port);
    let (status, log) = Lyre::start_failure(&[("HP_EXAPPS_ADDRESS", taken.as_str())], &[]);
    assert!(!status.success(), "second lyre started: {log}");
    assert!(
        log.contains("HP_EXAPPS_ADDRESS") && log.contains("another process"),
        "the error names the variable and the cause: {log}"
    );
    first.assert_alive();
    for i in 0..20 {
        let r = get(first.port, &format!("/exapps/raw/after?i={i}"));
        assert_eq!(r.body, b"first", "connection {i} served by the first lyre");
    }
}

/// A restart on the same addresses starts at once (systemd stop + start, a container
/// restart): a just-exited Lyre's io_uring rings hold its listeners for a few ms after the
/// process is gone (4-8 ms measured, in every round), and the start's probe and binds wait
/// that out instead of refusing as for a live second instance. The new process is spawned
/// the moment the old one is reaped, as a supervisor does.
#[test]
fn a_restart_on_the_same_addresses_starts_at_once() {
    let raw = RawUpstream::start(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let mut lyre = Lyre::routed(&[("/exapps/raw/", raw.port)], &[("LYRE_MEMCPY", "glibc")]);
    let route = format!("/exapps/raw/=127.0.0.1:{}", raw.port);
    let mut pid = lyre.pid();
    let mut restarted: Vec<std::process::Child> = Vec::new();
    for round in 0..10 {
        // A keep-alive client still connected when the stop comes.
        let mut c = Conn::connect(lyre.port);
        c.send(&get_req("/exapps/raw/before"));
        assert_eq!(c.read_response().body, b"ok", "round {round}");
        // SAFETY: kill(2) on a child of ours.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let stopped = match restarted.last_mut() {
            Some(child) => child.wait().ok().and_then(|s| s.code()),
            None => lyre
                .wait_exit(Duration::from_secs(5))
                .and_then(|s| s.code()),
        };
        assert_eq!(stopped, Some(0), "round {round}: stop");
        let mut child = lyre
            .command("serve")
            .args(["--route", &route])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn lyre serve");
        pid = child.id();
        let served = poll_until(Duration::from_secs(10), || {
            child.try_wait().ok().flatten().is_none() && answers_ok(lyre.port)
        });
        if !served {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "round {round}: the restarted Lyre did not serve:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        restarted.push(child);
    }
    for mut child in restarted {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Whether a GET on `port` gets the raw upstream's `ok` (false on any failure).
fn answers_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(&get_req("/exapps/raw/after")).is_err() {
        return false;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.ends_with(b"ok") {
            return true;
        }
    }
    false
}

#[test]
fn a_pooled_connection_closed_as_it_is_reused_is_retried_for_idempotent_requests() {
    let (up, seen) = common::closes_on_second_request();
    let lyre = Lyre::routed(&[("/exapps/c/", up.port())], &[("LYRE_WORKERS", "1")]);
    let mut c = Conn::connect(lyre.port);
    c.send(&get_req("/exapps/c/one"));
    let first = c.read_response();
    assert_eq!(
        (first.head.status, first.body_str().as_str()),
        (200, "conn 0")
    );
    // The pooled connection is reused for this GET, and closed by the upstream unanswered:
    // the GET goes again on a new connection.
    c.send(&get_req("/exapps/c/two"));
    let second = c.read_response();
    assert_eq!(
        (second.head.status, second.body_str().as_str()),
        (200, "conn 1"),
        "GET after the pooled connection closed unanswered"
    );
    // A POST with a body is not idempotent: never sent twice, the client gets 502.
    c.send(b"POST /exapps/c/three HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody");
    let third = c.read_response();
    assert_eq!(
        third.head.status, 502,
        "POST on a connection closed unanswered"
    );
    let lines = seen.lock().unwrap().clone();
    assert_eq!(
        lines,
        [
            "GET /exapps/c/one HTTP/1.1",
            "GET /exapps/c/two HTTP/1.1",
            "GET /exapps/c/two HTTP/1.1",
            "POST /exapps/c/three HTTP/1.1",
        ],
        "requests as the upstream saw them"
    );
}

#[test]
fn a_small_chunked_post_reaches_the_upstream_in_one_segment_and_a_bad_one_not_at_all() {
    // The whole chunked body arrived with the head: it leaves with the head, in one send.
    // A chunk size already invalid in those bytes is a 400 before the upstream hears of it.
    const BODY: &[u8] = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let whole = |g: &[u8]| g.ends_with(b"\r\n0\r\n\r\n");
    let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let (upstream, rx) = segment_counting_upstream(whole, reply);
    let lyre = Lyre::routed(&[("/exapps/ch/", upstream.port())], &[]);
    let head = "POST /exapps/ch/x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut c = Conn::connect(lyre.port);
    c.send(&[head.as_bytes(), BODY].concat());
    let r = c.read_response();
    assert_eq!((r.head.status, r.body.as_slice()), (200, &b"ok"[..]));
    let (got, segs) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the upstream got the request");
    assert!(
        got.ends_with(BODY),
        "upstream received {:?}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(
        segs, 1,
        "data segments from Lyre to the upstream for head + chunked body"
    );

    let mut bad = Conn::connect(lyre.port);
    bad.send(&[head.as_bytes(), b"zz\r\nhello\r\n0\r\n\r\n"].concat());
    assert_eq!(bad.read_response().head.status, 400, "invalid chunk size");
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "the upstream heard of the invalid request"
    );
}
