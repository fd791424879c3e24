//! AppAPI's deploy sequence against a real Docker-compatible engine (podman), driven through
//! `handle_exapp` and the passthrough stream exactly as the control dispatcher will:
//! ping, exists=false, create, duplicate create, start, wait_for_start, exists=true,
//! install_certificates, stop, remove with data (H-71, H-76..H-81, H-83).
//!
//! One test in this binary, so the socket count check sees only its own sockets.

mod docker_peer;

use std::time::{Duration, Instant};

use docker_peer::{body_json, frp_certs_dir, open_sockets, passthrough, run, text, Podman, IMAGE};
use lyre::control::reply::ControlReply;
use lyre::docker::{handle_exapp, passthrough_allowed, DockerCtx};
use serde_json::json;

const PORT: Option<&[u8]> = Some(b"24000");
const CA_BUNDLE: &str =
    "# Nextcloud CA bundle\n-----BEGIN CERTIFICATE-----\nMIIBfirst\n-----END CERTIFICATE-----\n\
                         -----BEGIN CERTIFICATE-----\nMIIBsecond\n-----END CERTIFICATE-----\n";

#[test]
fn appapi_deploy_sequence() {
    let podman = Podman::start("deploy");
    let frp = frp_certs_dir("deploy", true);
    let ctx = podman.ctx(&frp);
    let name = podman.app_name("deploy");
    let container = format!("nc_app_{name}");
    let sockets_before = open_sockets();
    let started = Instant::now();
    run(deploy(&podman, &ctx, &name));
    let lyre_time = started.elapsed();
    eprintln!("deploy sequence took {lyre_time:?} (target: < 10 s)");
    // Every engine connection was closed (io_uring closes asynchronously: poll briefly).
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_sockets() > sockets_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        open_sockets(),
        sockets_before,
        "engine connections left open"
    );
    let (status, _) = podman.request("GET", &format!("/containers/{container}/json"), None);
    assert_eq!(status, 404, "container removed");
}

struct App<'a> {
    podman: &'a Podman,
    ctx: &'a DockerCtx,
    name: &'a str,
    /// Container and volume names.
    c: String,
    v: String,
}

impl App<'_> {
    async fn call(&self, action: &str, body: &str) -> ControlReply {
        handle_exapp(action, PORT, body.as_bytes(), self.ctx).await
    }

    fn name_body(&self) -> String {
        json!({ "name": self.name, "instance_id": "" }).to_string()
    }
}

async fn deploy(podman: &Podman, ctx: &DockerCtx, name: &str) {
    let c = format!("nc_app_{name}");
    let v = format!("{c}_data");
    let app = App {
        podman,
        ctx,
        name,
        c,
        v,
    };
    // H-71: AppAPI's "check connection" ping goes through the passthrough.
    assert!(passthrough_allowed(b"GET", b"/v1.44/_ping"));
    assert_eq!(
        passthrough(&podman.engine(), "GET", "/v1.44/_ping").await,
        (200, b"OK".to_vec())
    );
    deploy_create(&app).await;
    deploy_run(&app).await;
    deploy_teardown(&app).await;
}

async fn deploy_create(app: &App<'_>) {
    let (name, c) = (app.name, &app.c);
    // H-76: not there yet.
    let r = app.call("exists", &app.name_body()).await;
    assert_eq!((r.status, body_json(&r)), (200, json!({ "exists": false })));

    // H-77: create with AppAPI's payload (start_container is an ignored extra).
    let create = json!({
        "name": name, "instance_id": "", "image_id": IMAGE, "network_mode": "bridge",
        "environment_variables": ["APP_ID=test", "APP_PORT=23000"], "restart_policy": "unless-stopped",
        "compute_device": "cpu", "mount_points": [], "resource_limits": {}, "start_container": true
    })
    .to_string();
    let r = app.call("create", &create).await;
    assert_eq!(r.status, 201, "{}", text(&r));
    let created = body_json(&r);
    assert_eq!(created["name"], json!(c));
    assert!(
        created["id"].as_str().is_some_and(|id| id.len() >= 12),
        "{created}"
    );
    check_created(app.podman, c, &app.v, name);

    // H-77: duplicate -> 409. Podman 4 says 500 here; the wrapper answers what Docker's 409 gives.
    let r = app.call("create", &create).await;
    assert_eq!(
        (r.status, text(&r)),
        (409, format!("Container with name '{c}' already exists."))
    );
}

async fn deploy_run(app: &App<'_>) {
    let (name, c) = (app.name, &app.c);
    // H-79: start, then start again.
    let r = app.call("start", &app.name_body()).await;
    assert_eq!(r.status, 204, "{}", text(&r));
    let r = app.call("start", &app.name_body()).await;
    assert_eq!(
        (r.status, text(&r).as_str()),
        (200, "Container already started")
    );

    // H-80: running, no health check -> started (podman reports Health.Status "" here,
    // Docker omits Health; both read as null).
    let r = app.call("wait_for_start", &app.name_body()).await;
    assert_eq!(
        (r.status, body_json(&r)),
        (
            200,
            json!({ "started": true, "status": "running", "health": null })
        )
    );

    // H-76: exists with the image reference.
    let r = app.call("exists", &app.name_body()).await;
    assert_eq!(
        (r.status, body_json(&r)),
        (200, json!({ "exists": true, "image_ref": IMAGE }))
    );

    // Health polling and logs through the passthrough (AppAPI's own calls).
    let (status, inspect) = passthrough(
        &app.podman.engine(),
        "GET",
        &format!("/v1.44/containers/{c}/json"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&inspect).contains("\"running\""));

    // H-83: CA bundle + FRP certs into a running container.
    let certs = json!({ "name": name, "instance_id": "", "system_certs_bundle": CA_BUNDLE, "install_frp_certs": true });
    let r = app.call("install_certificates", &certs.to_string()).await;
    assert_eq!(r.status, 204, "{}", text(&r));
    check_certs(app.podman, c);
}

async fn deploy_teardown(app: &App<'_>) {
    let v = &app.v;
    // H-79: stop, then stop again.
    let r = app.call("stop", &app.name_body()).await;
    assert_eq!(r.status, 204, "{}", text(&r));
    let r = app.call("stop", &app.name_body()).await;
    assert_eq!(
        (r.status, text(&r).as_str()),
        (200, "Container already stopped")
    );

    // H-81: remove with data.
    let r = app
        .call(
            "remove",
            &json!({ "name": app.name, "instance_id": "", "remove_data": true }).to_string(),
        )
        .await;
    assert_eq!(r.status, 204, "{}", text(&r));
    let r = app.call("exists", &app.name_body()).await;
    assert_eq!(body_json(&r), json!({ "exists": false }));
    assert_eq!(
        app.podman.request("GET", &format!("/volumes/{v}"), None).0,
        404,
        "volume removed"
    );
}

/// The container config landed in the engine as §4.4 specifies.
fn check_created(podman: &Podman, c: &str, v: &str, name: &str) {
    let doc = podman.container_json(c);
    assert_eq!(doc["Config"]["Hostname"], json!(name));
    let env: Vec<&str> = doc["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(
        env.contains(&"APP_ID=test") && env.contains(&"APP_PORT=23000"),
        "{env:?}"
    );
    assert_eq!(
        doc["HostConfig"]["RestartPolicy"]["Name"],
        json!("unless-stopped")
    );
    let mounts = doc["Mounts"].as_array().unwrap();
    assert!(
        mounts.iter().any(|m| m["Name"] == json!(v)
            && m["Destination"] == json!(format!("/{v}"))
            && m["RW"] == json!(true)),
        "{mounts:?}"
    );
    assert_eq!(
        podman.request("GET", &format!("/volumes/{v}"), None).0,
        200,
        "volume created"
    );
    assert!(
        doc["HostConfig"]["PortBindings"]
            .as_object()
            .is_none_or(|p| p.is_empty()),
        "no port bindings"
    );
}

fn check_certs(podman: &Podman, c: &str) {
    let dir = "/usr/local/share/ca-certificates";
    let first = podman.cli(&["exec", c, "cat", &format!("{dir}/custom_ca_cert_0.crt")]);
    assert_eq!(
        first,
        "-----BEGIN CERTIFICATE-----\nMIIBfirst\n-----END CERTIFICATE-----\n"
    );
    let second = podman.cli(&["exec", c, "cat", &format!("{dir}/custom_ca_cert_1.crt")]);
    assert!(second.contains("MIIBsecond"), "{second}");
    // The image's update-ca-certificates stand-in leaves a marker when it runs.
    assert_eq!(
        podman.cli(&["exec", c, "cat", "/tmp/update-ca-certificates.ran"]),
        "ran\n"
    );
    for f in ["ca.crt", "client.crt", "client.key"] {
        assert_eq!(
            podman.cli(&["exec", c, "cat", &format!("/certs/frp/{f}")]),
            format!("fake {f}\n")
        );
    }
}
