//! `lyre bench` against small std HTTP servers on 127.0.0.1:0.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// Serve every request on a connection with `answer`, for `life` at most.
fn server(answer: &'static [u8], life: Duration) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        let end = Instant::now() + life;
        while Instant::now() < end {
            match l.accept() {
                Ok((c, _)) => {
                    thread::spawn(move || answer_each(c, answer, end));
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    addr
}

fn answer_each(mut c: TcpStream, answer: &[u8], end: Instant) {
    c.set_nonblocking(false).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match c.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(_) => continue, // read timeout: check the deadline
        }
        while let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..i + 4);
            if c.write_all(answer).is_err() {
                return;
            }
            if answer.windows(17).any(|w| w == b"Connection: close") {
                return;
            }
        }
    }
}

fn args(url: String, connections: usize, workers: usize) -> BenchArgs {
    BenchArgs {
        url,
        connections,
        workers,
        duration_secs: 1,
        timeout_ms: 1000,
        method: "GET".into(),
        headers: vec!["X-Test: 1".into()],
        body: None,
    }
}

#[test]
fn keep_alive_load_counts_requests_statuses_and_reuses_connections() {
    let addr = server(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        Duration::from_secs(5),
    );
    let r = run_report(&args(format!("http://{addr}/x"), 4, 2)).unwrap();
    assert!(r.requests() > 10, "requests {}", r.requests());
    assert_eq!(r.tally.statuses[200], r.requests());
    assert!(r.tally.errors.is_empty(), "{:?}", r.tally.errors);
    assert_eq!(r.tally.connects, 4, "keep-alive must reuse each connection");
    let text = render(&args(format!("http://{addr}/x"), 4, 2), &r);
    assert!(text.contains("status: 200 x"), "{text}");
    assert!(text.contains("errors: none"), "{text}");
}

#[test]
fn connection_close_reconnects_and_other_statuses_are_counted() {
    let answer = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let addr = server(answer, Duration::from_secs(5));
    let r = run_report(&args(format!("http://{addr}/"), 2, 1)).unwrap();
    assert!(r.requests() > 0);
    assert_eq!(r.tally.statuses[404], r.requests());
    assert_eq!(r.tally.connects, r.requests(), "one connect per request");
}

#[test]
fn refused_connections_are_errors_not_requests() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = run_report(&args(format!("http://127.0.0.1:{port}/"), 2, 1)).unwrap();
    assert_eq!(r.requests(), 0);
    assert!(
        r.tally.errors.get("connect").copied().unwrap_or(0) > 0,
        "{:?}",
        r.tally.errors
    );
}

#[test]
fn garbage_answers_are_errors() {
    let addr = server(b"NOT HTTP AT ALL\r\n\r\n", Duration::from_secs(5));
    let r = run_report(&args(format!("http://{addr}/"), 1, 1)).unwrap();
    assert_eq!(r.requests(), 0);
    assert!(
        r.tally.errors.get("bad head").copied().unwrap_or(0) > 0,
        "{:?}",
        r.tally.errors
    );
}

#[test]
fn target_parsing() {
    let rows: &[(&str, Option<&[u8]>)] = &[
        (
            "http://127.0.0.1:8080/a?b",
            Some(b"GET /a?b HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"),
        ),
        (
            "http://127.0.0.1:8080",
            Some(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"),
        ),
        ("https://127.0.0.1/", None),
        ("127.0.0.1:80/", None),
    ];
    for (url, want) in rows {
        let mut a = args(url.to_string(), 1, 1);
        a.headers.clear();
        let got = Target::parse(&a);
        match want {
            Some(prefix) => assert!(got.unwrap().request.starts_with(prefix), "{url}"),
            None => assert!(got.is_err(), "{url}"),
        }
    }
    let mut a = args("http://127.0.0.1:1/".into(), 1, 1);
    a.headers = vec!["bad header".into()];
    assert!(Target::parse(&a).is_err());
    a.headers = vec!["A: b".into()];
    a.body = Some("xyz".into());
    a.method = "POST".into();
    let t = Target::parse(&a).unwrap();
    assert!(t.request.ends_with(b"A: b\r\nContent-Length: 3\r\n\r\nxyz"));
}

#[test]
fn command_line_flags() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }
    let cli = Cli::try_parse_from(["lyre-bench", "--url", "http://127.0.0.1:1/x", "-c", "8"]);
    let a = cli.unwrap().args;
    assert_eq!(
        (a.url.as_str(), a.connections, a.workers),
        ("http://127.0.0.1:1/x", 8, 1)
    );
    assert_eq!(
        (a.duration_secs, a.timeout_ms, a.method.as_str()),
        (10, 5000, "GET")
    );
    let a = Cli::try_parse_from(["b", "-u", "http://h/", "-w", "2", "-d", "3", "-H", "A: b"])
        .unwrap()
        .args;
    assert_eq!(
        (a.workers, a.duration_secs, a.headers),
        (2, 3, vec!["A: b".to_string()])
    );
    assert!(Cli::try_parse_from(["b"]).is_err(), "--url is required");
}
