//! The access log (harp-compat.md §6.3: HaRP's HAProxy writes one line per request at level
//! info, none at the default `warning`): a forwarded request, a denial, a DROP and a
//! malformed head each get one line with the request line and the status; headers
//! (cookies, keys) never appear; the default level writes none.

mod common;

use std::time::Duration;

use common::exapp::{get, Outcome};
use common::http::Conn;
use common::{poll_until, Lyre, Upstream};

const COOKIE: &str = "oc_sessionPassphrase=cookie-must-not-be-logged";
const KEY: &str = "key-must-not-be-logged";

fn access_lines(lyre: &Lyre) -> Vec<String> {
    lyre.log()
        .lines()
        .filter(|l| l.contains("lyre::access"))
        .map(str::to_string)
        .collect()
}

/// Send one kind of each request; returns the Lyre to read the log of.
fn traffic(level: &str) -> (Lyre, Upstream) {
    let up = Upstream::start();
    let routes = format!("/exapps/st/=127.0.0.1:{}", up.port);
    let lyre = Lyre::start(&[("LYRE_ROUTES", &routes), ("HP_LOG_LEVEL", level)], &[]);
    let page = get(lyre.port, "/exapps/st/page?q=1", &[("Cookie", COOKIE)]);
    assert_eq!(page.answered("static page").head.status, 200);
    let denied = get(
        lyre.port,
        "/exapps/app_api/info",
        &[("harp-shared-key", KEY)],
    );
    assert_eq!(denied.answered("wrong key").head.status, 401);
    // A `..` segment: HaRP drops the connection without an answer.
    let dropped = get(lyre.port, "/exapps/someapp/public/%2e%2E/x", &[]);
    assert!(matches!(dropped, Outcome::Dropped), "traversal not dropped");
    let mut bad = Conn::connect(lyre.port);
    bad.send(b"NOT A REQUEST\r\n\r\n");
    assert_eq!(bad.read_response().head.status, 400);
    (lyre, up)
}

#[test]
fn one_line_per_request_at_info_without_headers() {
    let (lyre, _up) = traffic("info");
    let all_four = poll_until(Duration::from_secs(5), || access_lines(&lyre).len() >= 4);
    let lines = access_lines(&lyre);
    assert!(all_four, "expected 4 access lines, got {lines:#?}");
    let find = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no access line with {needle:?} in {lines:#?}"))
            .clone()
    };
    let page = find("\"GET /exapps/st/page?q=1 HTTP/1.1\" 200 ");
    assert!(page.contains("127.0.0.1:"), "client address: {page}");
    assert!(
        page.ends_with(" close"),
        "Connection: close request: {page}"
    );
    find("\"GET /exapps/app_api/info HTTP/1.1\" 401 ");
    let drop = find("\"GET /exapps/someapp/public/%2e%2E/x HTTP/1.1\" - ");
    assert!(
        drop.ends_with(" abort"),
        "a DROP ends the connection: {drop}"
    );
    find("\"-\" 400 ");
    assert_eq!(lines.len(), 4, "one line per request: {lines:#?}");
    let log = lyre.log();
    assert!(
        !log.contains("cookie-must-not-be-logged"),
        "cookie logged:\n{log}"
    );
    assert!(!log.contains(KEY), "shared key header logged:\n{log}");
}

#[test]
fn no_access_lines_at_the_default_level() {
    let (lyre, _up) = traffic("warning");
    // The requests were answered above; give the writer a moment, then look.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(access_lines(&lyre), Vec::<String>::new());
}

/// The access log goes to stdout and nothing else does (HaRP: HAProxy's request lines on
/// stdout, its agent's diagnostics on stderr), so an operator can collect one apart from
/// the other.
#[test]
fn access_lines_on_stdout_diagnostics_on_stderr() {
    let up = Upstream::start();
    let routes = format!("/exapps/st/=127.0.0.1:{}", up.port);
    let lyre = Lyre::start_split(&[("LYRE_ROUTES", &routes), ("HP_LOG_LEVEL", "info")], &[]);
    let page = get(lyre.port, "/exapps/st/page?q=2", &[]);
    assert_eq!(page.answered("static page").head.status, 200);
    let logged = poll_until(Duration::from_secs(5), || {
        lyre.stdout()
            .contains("\"GET /exapps/st/page?q=2 HTTP/1.1\" 200 ")
    });
    assert!(logged, "no access line on stdout: {:?}", lyre.stdout());
    let stdout = lyre.stdout();
    assert!(
        stdout.lines().all(|l| l.contains("lyre::access")),
        "stdout holds only access lines:\n{stdout}"
    );
    let stderr = lyre.log();
    assert!(
        stderr.contains("lyre ready"),
        "diagnostics on stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("lyre::access"),
        "access line on stderr:\n{stderr}"
    );
}
