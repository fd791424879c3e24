//! `/docker/exapp/*` edge cases against a real engine (podman) and against engines that are
//! absent or hang: H-75, H-79..H-84, bad input, 503/504 mapping, logs via the passthrough.

mod docker_peer;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use docker_peer::{body_json, frp_certs_dir, passthrough, run, run_legacy, text, Podman, IMAGE};
use lyre::docker::{
    decode_frames, handle_exapp, passthrough_allowed, DockerCtx, Engine, MAX_CONTROL_BODY_BYTES,
};
use serde_json::json;

const PORT: Option<&[u8]> = Some(b"24000");

fn name_body(name: &str) -> String {
    json!({ "name": name }).to_string()
}

#[test]
fn missing_container_answers() {
    let podman = Podman::start("missing");
    let frp = frp_certs_dir("missing", true);
    let ctx = podman.ctx(&frp);
    let name = podman.app_name("missing");
    let c = format!("nc_app_{name}");
    let body = name_body(&name);
    run_legacy(async {
        let call = |action| handle_exapp(action, PORT, body.as_bytes(), &ctx);
        let not_found = format!("Container '{c}' not found.");
        let r = call("start").await;
        assert_eq!((r.status, text(&r)), (404, not_found.clone()), "H-79 start");
        let r = call("stop").await;
        assert_eq!((r.status, text(&r)), (404, not_found.clone()), "H-79 stop");
        let r = call("wait_for_start").await;
        assert_eq!(
            (r.status, body_json(&r)),
            (
                200,
                json!({ "started": false, "status": "not_found", "reason": "container not found" })
            ),
            "H-80"
        );
        let r = call("remove").await;
        assert_eq!(
            r.status,
            204,
            "H-81 remove tolerates a missing container: {}",
            text(&r)
        );
        let with_data = json!({ "name": name, "remove_data": "1" }).to_string();
        let r = handle_exapp("remove", PORT, with_data.as_bytes(), &ctx).await;
        assert_eq!(r.status, 204, "H-81 missing volume: {}", text(&r));
        let r = call("install_certificates").await;
        assert_eq!((r.status, text(&r)), (404, not_found), "§4.4.2 step 1");
    });
}

#[test]
fn bad_input_is_rejected_before_the_engine() {
    let podman = Podman::start("badinput");
    let frp = frp_certs_dir("badinput", false);
    let ctx = podman.ctx(&frp);
    let name = podman.app_name("badinput");
    let big = format!(
        r#"{{"name":"{name}","system_certs_bundle":"{}"}}"#,
        "A".repeat(MAX_CONTROL_BODY_BYTES)
    );
    let good_create = json!({ "name": name, "image_id": IMAGE }).to_string();
    // (action, docker-engine-port, body, status, message prefix)
    type Row = (
        &'static str,
        Option<&'static [u8]>,
        String,
        u16,
        &'static str,
    );
    let rows: Vec<Row> = vec![
        ("create", PORT, "{not json".into(), 400, "Invalid JSON body"),
        ("create", PORT, String::new(), 400, "Invalid JSON body"),
        (
            "create",
            PORT,
            json!({ "name": name }).to_string(),
            400,
            "Payload validation error: image_id: Field required",
        ),
        (
            "create",
            PORT,
            json!({ "name": name, "image_id": IMAGE, "compute_device": "tpu" }).to_string(),
            400,
            "Payload validation error: compute_device: Input should be 'cpu', 'rocm' or 'cuda'",
        ),
        (
            "install_certificates",
            PORT,
            big,
            413,
            "Maximum request body size 1048576 exceeded",
        ),
        (
            "create",
            None,
            good_create.clone(),
            400,
            "Missing 'docker-engine-port' header.",
        ),
        (
            "create",
            Some(b"70000"),
            good_create.clone(),
            400,
            "Invalid 'docker-engine-port' header value: 70000",
        ),
        (
            "create",
            Some(b"abc"),
            good_create,
            400,
            "Invalid 'docker-engine-port' header value: abc",
        ),
        (
            "image_remove",
            PORT,
            r#"{"image_ref":""}"#.into(),
            400,
            "Payload validation error: image_ref",
        ),
    ];
    run_legacy(async {
        for (action, port, body, status, message) in rows {
            let r = handle_exapp(action, port, body.as_bytes(), &ctx).await;
            assert_eq!(r.status, status, "{action}: {}", text(&r));
            assert!(text(&r).starts_with(message), "{action}: {}", text(&r));
        }
        let r = handle_exapp("exists", PORT, name_body(&name).as_bytes(), &ctx).await;
        assert_eq!(
            body_json(&r),
            json!({ "exists": false }),
            "nothing was created"
        );
    });
}

/// No engine behind the port: 503 with HaRP's message; an engine that accepts but never
/// answers: 504, `overall timeout` for wait_for_start, 500 for install_certificates.
#[test]
fn unreachable_and_hung_engines() {
    let closed_port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    // Never accepted: the kernel completes handshakes into the backlog, nobody answers.
    let hung = TcpListener::bind("127.0.0.1:0").expect("bind");
    let hung_port = hung.local_addr().expect("addr").port().to_string();
    let mut ctx = DockerCtx::new(None, PathBuf::from("/nonexistent"));
    ctx.timeouts.exists = Duration::from_millis(300);
    ctx.timeouts.wait_inspect = Duration::from_millis(300);
    ctx.timeouts.lifecycle = Duration::from_millis(300);
    ctx.timeouts.certificates = Duration::from_millis(300);
    let body = name_body("x");
    run(async {
        let closed = closed_port.to_string();
        let r = handle_exapp("exists", Some(closed.as_bytes()), body.as_bytes(), &ctx).await;
        assert_eq!(
            (r.status, text(&r)),
            (
                503,
                format!("Could not connect to Docker Engine on port {closed_port}")
            )
        );
        let r = handle_exapp("start", Some(closed.as_bytes()), body.as_bytes(), &ctx).await;
        assert_eq!(r.status, 503);

        let hung = Some(hung_port.as_bytes());
        let r = handle_exapp("exists", hung, body.as_bytes(), &ctx).await;
        assert_eq!(r.status, 504, "{}", text(&r));
        let r = handle_exapp("image_remove", hung, br#"{"image_ref":"a:1"}"#, &ctx).await;
        assert_eq!(r.status, 504, "{}", text(&r));
        let r = handle_exapp("wait_for_start", hung, body.as_bytes(), &ctx).await;
        assert_eq!(
            (r.status, body_json(&r)),
            (
                200,
                json!({ "started": false, "status": "unknown", "health": null, "reason": "overall timeout" })
            )
        );
        let r = handle_exapp("install_certificates", hung, body.as_bytes(), &ctx).await;
        assert_eq!(
            r.status,
            500,
            "§4.4.2: client errors escape as 500: {}",
            text(&r)
        );
    });
    // Port 24000 with a configured but absent local socket falls back to TCP 127.0.0.1:24000.
    let ctx = DockerCtx::new(
        Some(PathBuf::from("/nonexistent/docker.sock")),
        PathBuf::from("/nonexistent"),
    );
    assert!(matches!(ctx.engine(24000), Engine::Tcp(a) if a.port() == 24000));
    drop(hung);
}

#[test]
fn local_socket_serves_port_24000() {
    let podman = Podman::start("local");
    let ctx = DockerCtx::new(Some(podman.sock.clone()), PathBuf::from("/nonexistent"));
    assert_eq!(ctx.engine(24000), podman.engine());
    let r = run(handle_exapp(
        "exists",
        PORT,
        name_body(&podman.app_name("local")).as_bytes(),
        &ctx,
    ));
    assert_eq!((r.status, body_json(&r)), (200, json!({ "exists": false })));
}

#[test]
fn wait_for_start_exited_and_max_tries() {
    let podman = Podman::start("wait");
    let frp = frp_certs_dir("wait", false);
    let mut ctx = podman.ctx(&frp);
    ctx.wait_max_polls = 3;
    ctx.wait_poll_interval = Duration::from_millis(10);
    let exited = podman.app_name("exited");
    let created = podman.app_name("created");
    podman.cli(&[
        "create",
        "--name",
        &format!("nc_app_{exited}"),
        IMAGE,
        "/bin/true",
    ]);
    podman.cli(&["start", &format!("nc_app_{exited}")]);
    podman.cli(&["wait", &format!("nc_app_{exited}")]);
    run(async {
        let r = handle_exapp("wait_for_start", PORT, name_body(&exited).as_bytes(), &ctx).await;
        assert_eq!(
            body_json(&r),
            json!({ "started": false, "status": "exited", "health": null, "reason": "non-recoverable state: exited" })
        );
        let create = json!({ "name": created, "image_id": IMAGE }).to_string();
        assert_eq!(
            handle_exapp("create", PORT, create.as_bytes(), &ctx)
                .await
                .status,
            201
        );
        let r = handle_exapp("wait_for_start", PORT, name_body(&created).as_bytes(), &ctx).await;
        assert_eq!(
            body_json(&r),
            json!({ "started": false, "status": "created", "health": null, "reason": "timeout after max tries" })
        );
    });
}

/// H-81, H-85: roles share one volume; removing data while another role uses it is 409.
#[test]
fn roles_share_the_volume_and_in_use_is_409() {
    let podman = Podman::start("roles");
    let frp = frp_certs_dir("roles", false);
    let ctx = podman.ctx(&frp);
    let name = podman.app_name("roles");
    let (ca, cb) = (format!("nc_app_i1_{name}_a"), format!("nc_app_i1_{name}_b"));
    let v = format!("nc_app_i1_{name}_data");
    for x in [&ca, &cb] {
        podman.forget_container(x);
    }
    podman.forget_volume(&v);
    let role = |r: &str, data: bool| {
        json!({ "name": name, "instance_id": "i1", "role_suffix": r, "image_id": IMAGE, "remove_data": data }).to_string()
    };
    run(async {
        for r in ["a", "b"] {
            let resp = handle_exapp("create", PORT, role(r, false).as_bytes(), &ctx).await;
            assert_eq!(
                (resp.status, body_json(&resp)["name"].clone()),
                (201, json!(format!("nc_app_i1_{name}_{r}")))
            );
        }
        let resp = handle_exapp("remove", PORT, role("a", true).as_bytes(), &ctx).await;
        assert_eq!(
            (resp.status, text(&resp)),
            (
                409,
                format!("Volume '{v}' is in use and could not be removed.")
            )
        );
        assert_eq!(
            podman
                .request("GET", &format!("/containers/{ca}/json"), None)
                .0,
            404,
            "container a removed first"
        );
        let resp = handle_exapp("remove", PORT, role("b", true).as_bytes(), &ctx).await;
        assert_eq!(resp.status, 204, "{}", text(&resp));
        assert_eq!(podman.request("GET", &format!("/volumes/{v}"), None).0, 404);
    });
}

/// H-82 against the engine: untag-only, real delete with bytes, not found, in use.
#[test]
fn image_remove_shapes() {
    let _store = docker_peer::image_store_lock();
    let podman = Podman::start("images");
    let frp = frp_certs_dir("images", false);
    let ctx = podman.ctx(&frp);
    let tag = podman.app_name("images");
    let (alias, committed) = (
        format!("localhost/{tag}-alias:1"),
        format!("localhost/{tag}-commit:1"),
    );
    let user = format!("nc_app_{tag}user");
    podman.forget_image(&alias);
    podman.forget_image(&committed);
    podman.forget_container(&user);
    podman.cli(&["tag", IMAGE, &alias]);
    podman.cli(&["create", "--name", &format!("nc_app_{tag}"), IMAGE]);
    podman.cli(&["commit", "-q", &format!("nc_app_{tag}"), &committed]);
    let size = podman
        .cli(&["image", "inspect", "--format", "{{.Size}}", &committed])
        .trim()
        .parse::<u64>()
        .unwrap();
    let remove = |r: &str| json!({ "image_ref": r }).to_string();
    run(async {
        let r = handle_exapp("image_remove", PORT, remove(&alias).as_bytes(), &ctx).await;
        assert_eq!(
            body_json(&r),
            json!({ "deleted": true, "bytes_freed": 0 }),
            "untag only"
        );
        podman.cli(&["create", "--name", &user, &committed]);
        let r = handle_exapp("image_remove", PORT, remove(&committed).as_bytes(), &ctx).await;
        assert_eq!(
            body_json(&r),
            json!({ "deleted": false, "reason": "in_use" })
        );
        podman.cli(&["rm", "-f", &user]);
        let r = handle_exapp("image_remove", PORT, remove(&committed).as_bytes(), &ctx).await;
        assert_eq!(
            body_json(&r),
            json!({ "deleted": true, "bytes_freed": size })
        );
        let r = handle_exapp("image_remove", PORT, remove(&committed).as_bytes(), &ctx).await;
        assert_eq!(
            body_json(&r),
            json!({ "deleted": true, "bytes_freed": 0, "reason": "not_found" })
        );
    });
}

/// H-83, H-84: a stopped container is started for the install and stopped again; with no
/// FRP certs on the HaRP side the FRP part is skipped silently.
#[test]
fn install_certificates_into_stopped_container_without_frp_certs() {
    let podman = Podman::start("certs");
    let frp = frp_certs_dir("certs", false);
    let ctx = podman.ctx(&frp);
    let name = podman.app_name("certs");
    let c = format!("nc_app_{name}");
    let bundle = "-----BEGIN CERTIFICATE-----\nONLY\n-----END CERTIFICATE-----\n";
    run(async {
        let create = json!({ "name": name, "image_id": IMAGE }).to_string();
        assert_eq!(
            handle_exapp("create", PORT, create.as_bytes(), &ctx)
                .await
                .status,
            201
        );
        let body =
            json!({ "name": name, "system_certs_bundle": bundle, "install_frp_certs": true })
                .to_string();
        let r = handle_exapp("install_certificates", PORT, body.as_bytes(), &ctx).await;
        assert_eq!(r.status, 204, "{}", text(&r));
    });
    let state = &podman.container_json(&c)["State"];
    assert_eq!(state["Running"], json!(false), "stopped again: {state}");
    assert_ne!(state["Status"], json!("created"), "it was started: {state}");
    podman.cli(&["start", &c]);
    let cert = podman.cli(&[
        "exec",
        &c,
        "cat",
        "/usr/local/share/ca-certificates/custom_ca_cert_0.crt",
    ]);
    assert_eq!(cert, bundle);
    let frp_present = Command::new("podman")
        .args(["exec", &c, "test", "-e", "/certs/frp"])
        .status()
        .unwrap();
    assert!(
        !frp_present.success(),
        "H-84: no /certs/frp in the container"
    );
}

/// AppAPI's log fetch through the passthrough: Docker's multiplexed frames, decoded.
#[test]
fn logs_through_passthrough_are_multiplexed() {
    let podman = Podman::start("logs");
    let name = podman.app_name("logs");
    let c = format!("nc_app_{name}");
    let script = "echo out; echo err >&2; trap 'exit 0' TERM; sleep 3600 & wait";
    podman.cli(&["run", "-d", "--name", &c, IMAGE, "/bin/sh", "-c", script]);
    let path = format!("/v1.44/containers/{c}/logs?stdout=true&stderr=true&tail=all");
    assert!(passthrough_allowed(b"GET", path.as_bytes()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let (stdout, stderr) = run(async {
        loop {
            let (status, body) = passthrough(&podman.engine(), "GET", &path).await;
            assert_eq!(status, 200);
            let (frames, used) = decode_frames(&body);
            assert_eq!(used, body.len(), "whole frames only");
            let pick = |s: u8| {
                frames
                    .iter()
                    .filter(|f| f.stream == s)
                    .flat_map(|f| f.payload.to_vec())
                    .collect::<Vec<u8>>()
            };
            let (out, err) = (pick(1), pick(2));
            if (!out.is_empty() && !err.is_empty()) || Instant::now() > deadline {
                return (out, err);
            }
            monoio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert_eq!(
        (stdout.as_slice(), stderr.as_slice()),
        (&b"out\n"[..], &b"err\n"[..])
    );
}

/// AppAPI's image pull and inspect through the passthrough (§4.6): progress arrives as JSON
/// lines with status 200, pull errors as an `error` line with status 200 (Docker semantics).
#[test]
fn image_pull_through_passthrough() {
    let _store = docker_peer::image_store_lock();
    let podman = Podman::start("pull");
    let registry = docker_peer::Registry::start("pull");
    podman.forget_image(&registry.image());
    let encoded = registry.repo().replace('/', "%2F").replace(':', "%3A");
    let pull = format!("/v1.44/images/create?fromImage={encoded}&tag=1.0.0");
    assert!(passthrough_allowed(b"POST", pull.as_bytes()));
    let missing = format!("/v1.44/images/create?fromImage={encoded}&tag=9.9.9");
    let inspect = format!("/v1.44/images/{}/json", registry.image());
    assert!(passthrough_allowed(b"GET", inspect.as_bytes()));
    run(async {
        let engine = podman.engine();
        let (status, body) = passthrough(&engine, "POST", &pull).await;
        assert_eq!(status, 200);
        let lines: Vec<serde_json::Value> = body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("progress line is JSON"))
            .collect();
        assert!(
            !lines.is_empty() && lines.iter().all(|l| l.get("error").is_none()),
            "{lines:?}"
        );
        let (status, doc) = passthrough(&engine, "GET", &inspect).await;
        assert_eq!(
            status,
            200,
            "pulled image inspects: {}",
            String::from_utf8_lossy(&doc)
        );
        let (status, body) = passthrough(&engine, "POST", &missing).await;
        assert_eq!(status, 200, "pull errors come as a 200 stream");
        assert!(
            String::from_utf8_lossy(&body).contains("\"error\""),
            "{}",
            String::from_utf8_lossy(&body)
        );
    });
}
