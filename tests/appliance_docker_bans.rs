//! Wrong shared keys on AppAPI's Docker control plane are counted (harp-compat.md §3.4,
//! §3.9, §4.3; H-95): after `HP_BLACKLIST_COUNT` failures the client's next request is
//! dropped even with the right key, on wrappers and passthrough alike; the FRP login plugin
//! (`/exapps/app_api/frp_handler`) reads and feeds the same ban store.
//!
//! Client IPs come from `X-Forwarded-For` (Lyre trusts 127.0.0.1 here), so one test can
//! play several AppAPI hosts and frpc clients.

mod common;
mod docker_peer;

use std::io::ErrorKind;
use std::time::Duration;

use common::appapi::{name_body, AppApi, API};
use common::http::Conn;
use common::Lyre;
use docker_peer::Podman;
use serde_json::json;

const COUNT: usize = 3;

fn xff(ip: &str) -> String {
    format!("X-Forwarded-For: {ip}\r\n")
}

/// Sends `bytes` and reads one answer: `Some(status, body)`, or `None` when the connection
/// was dropped without any response byte.
fn exchange(port: u16, bytes: &[u8]) -> Option<(u16, String)> {
    let mut c = Conn::connect(port);
    c.set_timeout(Duration::from_secs(10));
    if c.send_lenient(bytes).is_err() {
        return None;
    }
    match c.try_read_response(false) {
        Ok(r) => Some((r.head.status, r.body_str())),
        Err(e) => {
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
                ),
                "dropped connection should close or reset, got {e}"
            );
            assert!(c.buffered().is_empty(), "partial answer {:?}", c.buffered());
            None
        }
    }
}

fn ping(api: &AppApi, ip: &str) -> Option<(u16, String)> {
    exchange(
        api.port,
        &api.request_bytes("GET", &format!("{API}/_ping"), b"", &xff(ip)),
    )
}

fn exists(api: &AppApi, ip: &str) -> Option<(u16, String)> {
    let body = name_body("nobody").to_string();
    let path = "/exapps/app_api/docker/exapp/exists";
    exchange(
        api.port,
        &api.request_bytes("POST", path, body.as_bytes(), &xff(ip)),
    )
}

/// frps's Login call for `client_address` with `token`, sent by a (trusted) AppAPI-side
/// host `via`.
fn frp_login(api: &AppApi, via: &str, client_address: &str, token: &str) -> (u16, String) {
    let body = json!({
        "version": "0.1.0", "op": "Login",
        "content": {
            "version": "0.65.0", "hostname": "", "os": "linux", "arch": "amd64", "user": "",
            "timestamp": 0, "privilege_key": "", "run_id": "", "pool_count": 1,
            "metas": { "token": token }, "client_address": client_address
        }
    })
    .to_string();
    frp_raw(api, via, body.as_bytes())
}

fn frp_raw(api: &AppApi, via: &str, body: &[u8]) -> (u16, String) {
    // frps's plugin call carries no `docker-engine-port` (it would make this a passthrough).
    let api = api.with_engine_port(None);
    let path = "/exapps/app_api/frp_handler?version=0.1.0&op=Login";
    exchange(api.port, &api.request_bytes("POST", path, body, &xff(via)))
        .expect("frp_handler answered")
}

#[test]
fn wrong_keys_ban_and_frp_handler_shares_the_store() {
    let podman = Podman::start("appl-bans");
    let sock = podman.sock.to_string_lossy().into_owned();
    let count = COUNT.to_string();
    let mut lyre = Lyre::start(
        &[
            ("LYRE_DOCKER_SOCKET", &sock),
            ("HP_BLACKLIST_COUNT", &count),
            ("HP_TRUSTED_PROXY_IPS", "127.0.0.1"),
        ],
        &[],
    );
    let api = AppApi::new(lyre.port, 24000);
    let ok = Some((200, "OK".to_string()));
    let unauthorized = Some((401, "401 Unauthorized".to_string()));

    // A: right key works; COUNT wrong or missing keys -> 401 each; then A is dropped.
    assert_eq!(ping(&api, "10.1.0.1"), ok);
    for i in 0..COUNT {
        let r = if i == 1 {
            let mut no_key =
                api.request_bytes("GET", &format!("{API}/_ping"), b"", &xff("10.1.0.1"));
            no_key = String::from_utf8(no_key)
                .expect("ascii")
                .replace("harp-shared-key: lyre-test-shared-key\r\n", "")
                .into_bytes();
            exchange(api.port, &no_key)
        } else {
            ping(&api.with_key("wrong-key"), "10.1.0.1")
        };
        assert_eq!(r, unauthorized, "wrong key #{i}");
    }
    assert_eq!(ping(&api, "10.1.0.1"), None, "banned: passthrough dropped");
    assert_eq!(exists(&api, "10.1.0.1"), None, "banned: wrapper dropped");
    // Bans are per client IP.
    assert_eq!(ping(&api, "10.1.0.2"), ok);
    assert_eq!(
        exists(&api, "10.1.0.2"),
        Some((200, r#"{"exists":false}"#.to_string()))
    );

    // H-95: the FRP plugin sees the ban made on the HTTP side.
    let key = common::appapi::SHARED_KEY;
    assert_eq!(
        frp_login(&api, "10.1.0.2", "10.1.0.1:40000", key),
        (
            200,
            r#"{"reject":true,"reject_reason":"banned"}"#.to_string()
        )
    );
    assert_eq!(
        frp_login(&api, "10.1.0.2", "10.1.0.3:40001", key),
        (200, r#"{"reject":false,"unchange":true}"#.to_string())
    );
    // ... and its failures ban on the HTTP side.
    for i in 0..COUNT {
        let r = frp_login(&api, "10.1.0.2", "10.1.0.4:40002", "wrong-token");
        assert_eq!(r.0, 400, "wrong token #{i}: {r:?}");
    }
    assert_eq!(ping(&api, "10.1.0.4"), None, "banned by FRP login failures");
    assert_eq!(
        frp_login(&api, "10.1.0.2", "10.1.0.4:40003", key),
        (
            200,
            r#"{"reject":true,"reject_reason":"banned"}"#.to_string()
        )
    );
    frp_handler_shapes(&api);
    // The AppAPI host that relayed all of this is still fine.
    assert_eq!(ping(&api, "10.1.0.2"), ok);
    lyre.assert_alive();
}

/// §4.3 error shapes: not JSON / no `client_address` -> 400, no `metas` -> 500, GET -> 405.
fn frp_handler_shapes(api: &AppApi) {
    assert_eq!(frp_raw(api, "10.1.0.2", b"{nope").0, 400);
    assert_eq!(
        frp_raw(api, "10.1.0.2", br#"{"op":"Login","content":{"metas":{}}}"#).0,
        400
    );
    assert_eq!(
        frp_raw(
            api,
            "10.1.0.2",
            br#"{"op":"Login","content":{"client_address":"10.1.0.5:1"}}"#
        )
        .0,
        500
    );
    let get = exchange(
        api.port,
        &api.with_engine_port(None).request_bytes(
            "GET",
            "/exapps/app_api/frp_handler",
            b"",
            &xff("10.1.0.2"),
        ),
    );
    assert_eq!(get.map(|r| r.0), Some(405));
}
