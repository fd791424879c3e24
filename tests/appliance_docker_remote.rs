//! A remote Docker engine on port 24001 (harp-compat.md §1.4, §4.6: ports 24001-24099 are
//! engines reached through their frpc tunnel on 127.0.0.1:<port>), driven by AppAPI through
//! Lyre's PUBLIC listener. The "tunnel" is a TCP -> unix relay on 127.0.0.1:24001 in front
//! of a private podman service, inside a private network namespace (24001 is fixed).
//!
//! Port 24000 is served from `LYRE_DOCKER_SOCKET` (the same podman) at the same time: the
//! relay counts what arrives on 24001, so the test also shows which port went where, and
//! that every engine connection through the tunnel was closed afterwards.

mod common;
mod docker_peer;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::appapi::{in_netns, name_body, AppApi, UnixRelay};
use common::Lyre;
use docker_peer::{Podman, IMAGE};
use serde_json::json;

const REMOTE_PORT: u16 = 24001;

#[test]
fn remote_engine_on_24001_through_its_tunnel_port() {
    let podman = Podman::start("appl-remote");
    let name = podman.app_name("remote");
    let sock = podman.sock.clone();
    in_netns(move || remote_sequence(sock, name));
}

fn remote_sequence(sock: PathBuf, name: String) {
    let relay = UnixRelay::start(&format!("127.0.0.1:{REMOTE_PORT}"), &sock);
    let sock_text = sock.to_string_lossy().into_owned();
    let lyre = Lyre::start(&[("LYRE_DOCKER_SOCKET", &sock_text)], &[]);
    let api = AppApi::new(lyre.port, REMOTE_PORT);
    let local = AppApi::new(lyre.port, 24000);
    let c = format!("nc_app_{name}");
    let nb = name_body(&name);

    // 24000 goes to the local socket: the tunnel port sees nothing.
    let r = local.engine("GET", "/_ping");
    assert_eq!((r.head.status, r.body_str().as_str()), (200, "OK"));
    assert_eq!(relay.accepted(), 0, "24000 must not use 127.0.0.1:24001");

    let started = Instant::now();
    let r = api.engine("GET", "/_ping");
    assert_eq!((r.head.status, r.body_str().as_str()), (200, "OK"));
    assert_eq!(
        relay.accepted(),
        1,
        "the 24001 ping went through the tunnel"
    );

    let r = api.exapp("exists", &nb);
    assert_eq!(r.json(), json!({ "exists": false }));
    let create = json!({
        "name": name, "instance_id": "", "image_id": IMAGE, "network_mode": "bridge",
        "environment_variables": ["APP_ID=remote"], "restart_policy": "unless-stopped",
        "compute_device": "cpu", "mount_points": [], "resource_limits": {}, "start_container": true
    });
    let r = api.exapp("create", &create);
    assert_eq!(r.head.status, 201, "{}", r.body_str());
    assert_eq!(r.json()["name"], json!(c));
    let r = api.exapp("start", &nb);
    assert_eq!(r.head.status, 204, "{}", r.body_str());
    let r = api.exapp("wait_for_start", &nb);
    assert_eq!(
        r.json(),
        json!({ "started": true, "status": "running", "health": null })
    );
    let r = api.exapp("exists", &nb);
    assert_eq!(r.json(), json!({ "exists": true, "image_ref": IMAGE }));
    // The same container is visible on 24000 (same podman): both ports reach an engine.
    let r = local.exapp("exists", &nb);
    assert_eq!(r.json(), json!({ "exists": true, "image_ref": IMAGE }));

    let r = api.engine("GET", &format!("/containers/{c}/json"));
    assert_eq!(r.head.status, 200, "{}", r.body_str());
    assert_eq!(r.json()["State"]["Running"], json!(true));
    // The image's main process prints nothing: an empty log stream is still a 200.
    let r = api.engine(
        "GET",
        &format!("/containers/{c}/logs?stdout=true&stderr=true&tail=10"),
    );
    assert_eq!((r.head.status, r.body.len()), (200, 0), "{}", r.body_str());

    let r = api.exapp("stop", &nb);
    assert_eq!(r.head.status, 204, "{}", r.body_str());
    let r = api.exapp(
        "remove",
        &json!({ "name": name, "instance_id": "", "remove_data": true }),
    );
    assert_eq!(r.head.status, 204, "{}", r.body_str());
    let r = api.exapp("exists", &nb);
    assert_eq!(r.json(), json!({ "exists": false }));
    eprintln!(
        "remote engine sequence on {REMOTE_PORT}: {:?}, {} tunnel connections",
        started.elapsed(),
        relay.accepted()
    );

    // Each engine call used its own tunnel connection, and none is left open.
    assert!(relay.accepted() >= 12, "accepted {}", relay.accepted());
    let end = Instant::now() + Duration::from_secs(5);
    while relay.open() > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(relay.open(), 0, "tunnel connections left open");
}
