//! AppAPI's Docker control plane through Lyre's PUBLIC listener (`lyre serve` subprocess):
//! what goes wrong, answered as HaRP answers it (harp-compat.md §3.4, §3.9, §4, §4.3, §4.4,
//! §4.6; H-72, H-74, H-75, H-95, H-103, H-104, H-69-style engine errors).
//!
//! - denied passthrough paths (403, HAProxy's page), allowed ones reach the engine;
//! - bad `docker-engine-port` values (400 on wrappers, 503 on the passthrough);
//! - invalid bodies (400 `Invalid JSON body`, schema 400, > 1 MiB 413, 1 MiB accepted);
//! - engine unreachable (503), engine accepting but silent (504 after HP_TIMEOUT_SERVER on
//!   the passthrough; 504 after the wrapper's 15 s call timeout), engine whose connects
//!   never complete (HAProxy: connect timeout -> 503);
//! - wrong keys counted into bans (`HP_BLACKLIST_COUNT`), the FRP login plugin sharing the
//!   ban store both ways.
//!
//! Tests with fixed ports (24000, 24050) run in a private network namespace.

mod common;
mod docker_peer;

use std::time::{Duration, Instant};

use common::appapi::{
    engine_connections_settled, full_backlog_listener, in_netns, name_body, AppApi, HungEngine, API,
};
use common::http::{Conn, Response};
use common::{Lyre, RawUpstream};
use docker_peer::{Podman, IMAGE};
use serde_json::json;

const FORBIDDEN_TEXT: &str = "Request forbidden by administrative rules.";

fn assert_text(r: &Response, status: u16, body: &str) {
    assert_eq!(
        (r.head.status, r.body_str().as_str()),
        (status, body),
        "{:?}",
        r.head
    );
}

/// HAProxy's built-in error page for `status` (`connection: close`, HTML).
fn assert_proxy_page(r: &Response, status: u16, text: &str) {
    assert_eq!(r.head.status, status, "{:?} {}", r.head, r.body_str());
    assert_eq!(r.head.header("content-type"), Some("text/html"));
    assert_eq!(r.head.header("connection"), Some("close"));
    assert!(r.body_str().contains(text), "{}", r.body_str());
}

/// H-72, H-74: only AppAPI's five engine calls pass; everything else is 403 before any
/// engine connection. Allowed calls reach the engine, whatever it answers.
#[test]
fn passthrough_allow_list() {
    let podman = Podman::start("appl-allow");
    let sock = podman.sock.to_string_lossy().into_owned();
    let lyre = Lyre::start(&[("LYRE_DOCKER_SOCKET", &sock)], &[]);
    let api = AppApi::new(lyre.port, 24000);
    let denied = [
        ("POST", format!("{API}/containers/create")),
        ("GET", "/exapps/app_api/containers/other/json".to_string()),
        ("GET", format!("{API}/containers/other/json")),
        ("DELETE", format!("{API}/images/x")),
        ("POST", format!("{API}/containers/nc_app_x/start")),
        ("POST", format!("{API}/containers/nc_app_x/exec")),
        ("GET", format!("{API}/containers/json?all=true")),
        ("GET", format!("{API}/info")),
    ];
    for (method, path) in &denied {
        let mut c = api.send(method, path, b"");
        let r = c
            .try_read_response(false)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_proxy_page(&r, 403, FORBIDDEN_TEXT);
        assert_eq!(
            c.closed_within(Duration::from_secs(2)),
            Ok(true),
            "{method} {path}: `connection: close` announced but the connection stayed open"
        );
    }
    // §3.3 step 2: a dot segment, even inside an allowed prefix, is dropped before the
    // allow-list (no answer; with the right key no failure is recorded).
    for path in [
        format!("{API}/images/create/..%2F..%2Fcontainers%2Fcreate"),
        format!("{API}/containers/nc_app_x/%2E%2E/other/json"),
    ] {
        let mut c = api.send("POST", &path, b"");
        assert!(c.try_read_response(false).is_err(), "{path}: answered");
        assert!(c.buffered().is_empty(), "{path}: partial answer");
    }
    // Allowed (H-73: case-insensitive, URL-decoded) -> the engine's own answers.
    let r = api.engine("GET", "/containers/nc_app_missing/json");
    assert_eq!(r.head.status, 404, "{}", r.body_str());
    assert!(
        r.body_str().contains("no such container"),
        "{}",
        r.body_str()
    );
    let r = api.call("HEAD", &format!("{API}/_ping"), b"");
    assert_eq!((r.head.status, r.body.len()), (200, 0));
    let r = api.call(
        "GET",
        "/exapps/app_api/V1.44/containers/NC_APP_missing/json",
        b"",
    );
    assert_eq!(r.head.status, 404, "forwarded: {}", r.body_str());
    let r = api.engine("GET", "/images/localhost%2Flyre-busybox:2/json");
    assert_eq!(r.head.status, 200, "{}", r.body_str());
    // H-74: a `/docker/...` path with the header goes to the control API, not the engine.
    let r = api.call("GET", "/exapps/app_api/docker/exapp/exists", b"");
    assert_eq!(r.head.status, 405, "{}", r.body_str());
    assert_eq!(r.head.header("allow"), Some("POST"));
    let left = engine_connections_settled(lyre.pid(), &podman.sock, Duration::from_secs(5));
    assert_eq!(left, 0, "engine connections left open");
}

/// H-75 and §3.4: the header on wrappers (400, HaRP's texts) and on the passthrough (the
/// original agent fails on a non-integer: 503 `(HaRP)`; an empty value is no header).
#[test]
fn bad_engine_port_header() {
    let podman = Podman::start("appl-port");
    let sock = podman.sock.to_string_lossy().into_owned();
    let lyre = Lyre::start(&[("LYRE_DOCKER_SOCKET", &sock)], &[]);
    let api = AppApi::new(lyre.port, 24000);
    let nb = name_body("x");
    let r = api.with_engine_port(None).exapp("exists", &nb);
    assert_text(&r, 400, "Missing 'docker-engine-port' header.");
    for bad in ["abc", "70000", "0", "-1", "24000abc"] {
        let r = api.with_engine_port(Some(bad)).exapp("exists", &nb);
        assert_text(
            &r,
            400,
            &format!("Invalid 'docker-engine-port' header value: {bad}"),
        );
    }
    let r = api.with_engine_port(Some("abc")).engine("GET", "/_ping");
    assert_text(&r, 503, "503 Service Unavailable (HaRP)");
    // Empty value: not a Docker request, so the control API answers (unknown path).
    let r = api.with_engine_port(Some("")).engine("GET", "/_ping");
    assert_text(&r, 404, "404: Not Found");
    // No header at all on an engine path: also the control API.
    let r = api.with_engine_port(None).engine("GET", "/_ping");
    assert_text(&r, 404, "404: Not Found");
}

/// §4: bodies. Nothing reaches the engine for a rejected body.
#[test]
fn invalid_bodies() {
    let podman = Podman::start("appl-bodies");
    let sock = podman.sock.to_string_lossy().into_owned();
    let lyre = Lyre::start(&[("LYRE_DOCKER_SOCKET", &sock)], &[]);
    let api = AppApi::new(lyre.port, 24000);
    let name = podman.app_name("bodies");
    let rows: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("create", b"{not json".to_vec(), 400, "Invalid JSON body"),
        ("create", Vec::new(), 400, "Invalid JSON body"),
        ("create", b"[1,2]".to_vec(), 400, "Payload validation error"),
        (
            "create",
            json!({ "name": name }).to_string().into_bytes(),
            400,
            "Payload validation error: image_id: Field required",
        ),
        (
            "create",
            json!({ "name": name, "image_id": IMAGE, "compute_device": "tpu" })
                .to_string()
                .into_bytes(),
            400,
            "Payload validation error: compute_device",
        ),
        (
            "exists",
            json!({ "instance_id": "" }).to_string().into_bytes(),
            400,
            "Payload validation error: name",
        ),
        (
            "remove",
            json!({ "name": name, "remove_data": "maybe" })
                .to_string()
                .into_bytes(),
            400,
            "Payload validation error: remove_data",
        ),
    ];
    for (action, body, status, prefix) in rows {
        let r = api.exapp_raw(action, &body);
        assert_eq!(r.head.status, status, "{action}: {}", r.body_str());
        assert!(
            r.body_str().starts_with(prefix),
            "{action}: {:?} does not start with {prefix:?}",
            r.body_str()
        );
    }
    // H-104: unknown wrapper 404 (whatever the method: the path matches no route),
    // wrong method on a known one 405.
    let r = api.exapp("explode", &name_body(&name));
    assert_text(&r, 404, "404: Not Found");
    let r = api.call("GET", "/exapps/app_api/docker/exapp/explode", b"");
    assert_text(&r, 404, "404: Not Found");
    let r = api.call("GET", "/exapps/app_api/docker/exapp/exists", b"");
    assert_eq!((r.head.status, r.head.header("allow")), (405, Some("POST")));
    too_large_and_limit(&api, &name);
    let r = api.exapp("exists", &name_body(&name));
    assert_eq!(r.json(), json!({ "exists": false }), "nothing was created");
}

/// H-103: a body over 1 MiB gets 413 (after the head, without reading the body); exactly
/// 1 MiB is served.
fn too_large_and_limit(api: &AppApi, name: &str) {
    const MIB: usize = 1024 * 1024;
    let path = "/exapps/app_api/docker/exapp/install_certificates";
    let big = vec![b' '; MIB + 1];
    let bytes = api.request_bytes("POST", path, &big, "");
    let head_len = bytes.len() - big.len();
    let mut c = Conn::connect(api.port);
    c.send(&bytes[..head_len]);
    let _ = c.send_lenient(&bytes[head_len..head_len + 64 * 1024]);
    let r = c.read_response();
    common::assert_control_body_too_large(&r);
    let mut body = name_body(name).to_string().into_bytes();
    body.resize(MIB, b' ');
    let r = api.exapp_raw("exists", &body);
    assert_eq!((r.head.status, r.json()), (200, json!({ "exists": false })));
}

/// Engines that are not there, do not answer, or never complete a connect (in a private
/// network namespace: port 24050 and 24000 are free there by construction).
#[test]
fn engine_unreachable_silent_or_unconnectable() {
    in_netns(|| {
        let lyre = Lyre::start(
            &[
                ("LYRE_DOCKER_SOCKET", "/nonexistent/lyre-test/docker.sock"),
                ("HP_TIMEOUT_SERVER", "1s"),
                ("HP_TIMEOUT_CONNECT", "1s"),
            ],
            &[],
        );
        let api = AppApi::new(lyre.port, 24050);
        // No listener on 24050: passthrough 503 (HAProxy page), wrapper 503 (HaRP's text).
        let r = api.engine("GET", "/_ping");
        assert_proxy_page(&r, 503, "No server is available");
        let r = api.exapp("exists", &name_body("x"));
        assert_text(&r, 503, "Could not connect to Docker Engine on port 24050");
        // H-97: 24000 without the local socket falls back to 127.0.0.1:24000 (nothing there).
        let r = api.with_engine_port(Some("24000")).engine("GET", "/_ping");
        assert_proxy_page(&r, 503, "No server is available");

        // Accepts, never answers: HAProxy's `timeout server` -> 504.
        let hung = HungEngine::start();
        let api_hung = api.with_engine_port(Some(&hung.port.to_string()));
        let t = Instant::now();
        let r = api_hung.engine("GET", "/_ping");
        let took = t.elapsed();
        eprintln!("silent engine: 504 after {took:?} (HP_TIMEOUT_SERVER=1s)");
        assert_proxy_page(&r, 504, "The server didn't respond in time.");
        assert!(
            took >= Duration::from_millis(900),
            "504 after only {took:?}"
        );
        assert_eq!(hung.accepted(), 1);
        assert!(
            hung.all_closed_by_client(Duration::from_secs(5)),
            "Lyre kept the silent engine's connection open"
        );

        // Connects never complete (accept queue full): HAProxy's connect timeout is a
        // connection failure -> 503 (only `timeout server` gives 504).
        let (listener, _filler) = full_backlog_listener();
        let port = listener.local_addr().expect("addr").port().to_string();
        let t = Instant::now();
        let r = api.with_engine_port(Some(&port)).engine("GET", "/_ping");
        eprintln!(
            "unconnectable engine: {} after {:?}",
            r.head.status,
            t.elapsed()
        );
        assert_proxy_page(&r, 503, "No server is available");
    });
}

/// §4.4: the wrappers' own per-call timeout (15 s for `exists`) -> 504 with HaRP's text.
#[test]
fn wrapper_times_out_on_a_silent_engine() {
    let hung = HungEngine::start();
    let lyre = Lyre::start(&[("HP_TIMEOUT_SERVER", "1s")], &[]);
    let api = AppApi::new(lyre.port, hung.port);
    let t = Instant::now();
    let r = api.exapp("exists", &name_body("x"));
    eprintln!(
        "wrapper exists on a silent engine: {} after {:?}",
        r.head.status,
        t.elapsed()
    );
    assert_text(
        &r,
        504,
        &format!(
            "Timeout while waiting for Docker Engine on port {}",
            hung.port
        ),
    );
    assert!(
        hung.all_closed_by_client(Duration::from_secs(5)),
        "Lyre kept the silent engine's connection open"
    );
}

/// §1.4, §4.6: the engine gets AppAPI's request with only `/exapps/app_api` stripped: query
/// byte-exact, every header kept (HaRP neither checks nor removes the Basic auth or the
/// key), and Lyre's `Connection: close` (one engine connection per call). The engine's
/// answer comes back unchanged.
#[test]
fn passthrough_forwards_appapi_request_as_is() {
    let reply = b"HTTP/1.1 200 OK\r\nApi-Version: 1.44\r\nContent-Type: application/json\r\nX-Engine: fake\r\nContent-Length: 27\r\n\r\n{\"status\":\"Pulling image\"}\n";
    let engine = RawUpstream::start_waiting(reply, Duration::from_secs(5));
    let lyre = Lyre::start(&[], &[]);
    let api = AppApi::new(lyre.port, engine.port);
    let path = "/images/create?fromImage=127.0.0.1%3A5000%2Fnextcloud%2Fx&tag=1.0.0";
    let r = api.call("POST", &format!("{API}{path}"), b"");
    assert_eq!(r.head.status, 200);
    assert_eq!(r.head.header("x-engine"), Some("fake"));
    assert_eq!(r.head.header("api-version"), Some("1.44"));
    assert_eq!(r.body_str(), "{\"status\":\"Pulling image\"}\n");
    let heads = engine.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let head = &heads[0];
    let sent = String::from_utf8(api.request_bytes("POST", &format!("{API}{path}"), b"", ""))
        .expect("ascii");
    assert!(
        head.starts_with(&format!("POST /v1.44{path} HTTP/1.1\r\n")),
        "{head}"
    );
    let lines: Vec<&str> = head.lines().skip(1).filter(|l| !l.is_empty()).collect();
    for want in sent.lines().skip(1).filter(|l| !l.is_empty()) {
        assert!(
            lines.iter().any(|l| l.eq_ignore_ascii_case(want)),
            "header {want:?} not passed to the engine:\n{head}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.eq_ignore_ascii_case("connection: close")),
        "{head}"
    );
}
