//! AppAPI's Docker deploy sequence through Lyre's PUBLIC listener (`lyre serve` as a
//! subprocess), engine port 24000 served from `LYRE_DOCKER_SOCKET` = a private podman
//! service (harp-compat.md §1.4, §3.4, §4.4, §4.6; H-71, H-76..H-83, H-97).
//!
//! Every request is sent exactly as AppAPI's `DockerActions` sends it: `harp-shared-key`,
//! `docker-engine-port: 24000`, HTTP Basic `app_api_haproxy_user:<key>`. Sequence: ping
//! (passthrough), image pull from a local registry (passthrough, streamed), image inspect,
//! exists=false, create, start, wait_for_start, exists=true with image_ref,
//! install_certificates, container inspect and logs (passthrough), stop, remove with data.
//!
//! Contract checks: the Lyre calls of the sequence take < 10 s of wall time together, the
//! pull's first progress bytes reach AppAPI while the registry is still holding back the
//! layer (streamed, not buffered), and Lyre holds no engine connection afterwards.
//!
//! Podman vs Docker (noted where asserted): podman answers `Api-Version: 1.41` on any
//! `/v1.xx/` prefix (Docker 25+ would say 1.44+); its pull stream ends with
//! `Download complete` + image id where Docker ends with `Status: Downloaded newer image
//! for <ref>`; it reports `Health.Status: ""` for images without a HEALTHCHECK where Docker
//! omits `Health` (both read as `health: null`); and it runs no healthchecks without
//! systemd (so this image has none).

mod common;
mod docker_peer;

use std::time::{Duration, Instant};

use common::appapi::{
    engine_connections, engine_connections_settled, name_body, AppApi, HeldRelay, API,
};
use common::http::Response;
use common::{Lyre, TempDir};
use docker_peer::{build_talking_image, podman, Podman, Registry};
use serde_json::{json, Value};

/// The bound for the whole sequence (Lyre calls only).
const DEPLOY_BUDGET: Duration = Duration::from_secs(10);
/// Registry bytes per connection let through before the relay holds the layer back: more
/// than the manifest and config blob, much less than the ~1 MB busybox layer.
const HOLD_AFTER: u64 = 64 * 1024;
const CA_BUNDLE: &str = "# Nextcloud CA bundle\n-----BEGIN CERTIFICATE-----\nMIIBfirst\n-----END CERTIFICATE-----\n\
                         junk between\n-----BEGIN CERTIFICATE-----\nMIIBsecond\n-----END CERTIFICATE-----\n";

/// Wall time of the Lyre calls, step by step.
struct Clock {
    steps: Vec<(&'static str, Duration)>,
}

impl Clock {
    fn time<T>(&mut self, step: &'static str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.steps.push((step, t.elapsed()));
        out
    }

    fn total(&self) -> Duration {
        self.steps.iter().map(|(_, d)| *d).sum()
    }

    fn report(&self) -> String {
        let rows: Vec<String> = self
            .steps
            .iter()
            .map(|(s, d)| format!("  {s:<22} {:>8.1} ms", d.as_secs_f64() * 1e3))
            .collect();
        format!(
            "{}\n  {:<22} {:>8.1} ms",
            rows.join("\n"),
            "TOTAL",
            self.total().as_secs_f64() * 1e3
        )
    }
}

struct Deploy<'a> {
    api: AppApi,
    lyre: &'a Lyre,
    podman: &'a Podman,
    name: String,
    container: String,
    image: String,
    certs_dir: std::path::PathBuf,
}

#[test]
fn appapi_deploy_sequence_through_public_listener() {
    deploy_sequence("auto");
}

/// The same on the epoll driver (the fallback when io_uring is unavailable).
#[test]
fn appapi_deploy_sequence_through_public_listener_epoll() {
    deploy_sequence("epoll");
}

/// §4.6: a request body streams to the engine as it came, chunked included (HaRP's HAProxy
/// forwards either): an image import (`images/create?fromSrc=-`, a one-file tar sent in
/// 4 KiB chunks) goes through Lyre into podman, after which the image is there.
#[test]
fn passthrough_streams_a_chunked_body_to_the_engine() {
    let podman = Podman::start("appl-chunked");
    let sock = podman.sock.to_string_lossy().into_owned();
    let lyre = Lyre::start(&[("LYRE_DOCKER_SOCKET", &sock)], &[]);
    let api = AppApi::new(lyre.port, 24000);
    let tmp = TempDir::new("appl-chunked");
    std::fs::write(tmp.path().join("hello.txt"), "imported through Lyre\n").expect("write");
    let tar = std::process::Command::new("tar")
        .arg("-C")
        .arg(tmp.path())
        .args(["-cf", "-", "hello.txt"])
        .output()
        .expect("run tar");
    assert!(tar.status.success(), "tar: {tar:?}");
    let repo = format!("localhost/lyre-chunked-{}", std::process::id());
    let path = format!("{API}/images/create?fromSrc=-&repo={}&tag=1", encode(&repo));
    let head = api.request_bytes("POST", &path, b"", "Transfer-Encoding: chunked\r\n");
    let head = String::from_utf8(head).expect("ascii");
    let mut req = head.replace("Content-Length: 0\r\n", "").into_bytes();
    for piece in tar.stdout.chunks(4096) {
        req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let mut c = common::http::Conn::connect(lyre.port);
    c.send(&req);
    let r = c.read_response();
    assert_eq!(r.head.status, 200, "import: {}", r.body_str());
    // podman answers with the new image's id (and leaves `repo`/`tag` aside).
    let id = progress_lines(&r.body)
        .iter()
        .find_map(|l| l["id"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no image id in the import answer: {}", r.body_str()));
    podman.forget_image(&id);
    let inspect = api.engine("GET", &format!("/images/{id}/json"));
    assert_eq!(
        inspect.head.status,
        200,
        "the imported image is not there: {}",
        inspect.body_str()
    );
    let size = inspect.json()["Size"].as_u64().unwrap_or_default();
    assert!(size > 0, "imported image is empty: {}", inspect.body_str());
}

fn deploy_sequence(driver: &str) {
    let tag = format!("appl-deploy-{driver}");
    let podman = Podman::start(&tag);
    let registry = Registry::start(&tag);
    let tmp = TempDir::new(&tag);
    let image = publish_fresh_image(&podman, &registry, &tmp, driver);
    // Pulls go through the holding relay: podman sees the registry at the relay's port.
    let held = HeldRelay::start(registry.port, HOLD_AFTER);
    let image = image.replace(&format!(":{}/", registry.port), &format!(":{}/", held.port));
    podman.forget_image(&image);
    let certs_dir = tmp.path().join("certs");
    let sock = podman.sock.to_string_lossy().into_owned();
    let certs = certs_dir.to_string_lossy().into_owned();
    let lyre = Lyre::start(
        &[
            ("LYRE_DOCKER_SOCKET", &sock),
            ("LYRE_CERTS_DIR", &certs),
            ("LYRE_DRIVER", driver),
        ],
        &[],
    );
    if driver == "epoll" {
        // The ready line may follow the listener by a moment.
        let on_epoll = common::poll_until(Duration::from_secs(5), || {
            lyre.log().contains("driver=\"epoll\"")
        });
        assert!(on_epoll, "not on epoll: {}", lyre.log());
    }
    let name = podman.app_name(&format!("appl{driver}"));
    let d = Deploy {
        api: AppApi::new(lyre.port, 24000),
        lyre: &lyre,
        podman: &podman,
        container: format!("nc_app_{name}"),
        name,
        image,
        certs_dir,
    };
    let mut clock = Clock { steps: Vec::new() };

    ping(&d, &mut clock);
    pull(&d, &held, &mut clock);
    create_and_start(&d, &mut clock);
    certificates_and_logs(&d, &mut clock);
    teardown(&d, &mut clock);

    eprintln!(
        "AppAPI deploy sequence through lyre serve, driver {driver} (Lyre calls only):\n{}",
        clock.report()
    );
    assert!(
        clock.total() < DEPLOY_BUDGET,
        "deploy sequence took {:?} (budget {DEPLOY_BUDGET:?}):\n{}",
        clock.total(),
        clock.report()
    );
    let left = engine_connections_settled(lyre.pid(), &podman.sock, Duration::from_secs(5));
    assert_eq!(
        left, 0,
        "Lyre still holds {left} connection(s) to the engine"
    );
}

/// A new image (unique layer) in the registry as `127.0.0.1:<registry>/nextcloud/
/// talking-exapp:1.0.0`, removed from podman's storage so the pull must fetch the layer.
fn publish_fresh_image(podman: &Podman, registry: &Registry, tmp: &TempDir, tag: &str) -> String {
    let local = build_talking_image(&format!("{}-{tag}", std::process::id()), tmp.path());
    podman.forget_image(&local);
    let remote = format!(
        "127.0.0.1:{}/nextcloud/talking-exapp-{tag}:1.0.0",
        registry.port
    );
    docker_peer::podman(&["push", "-q", "--tls-verify=false", &local, &remote]);
    docker_peer::podman(&["rmi", "-f", &local]);
    remote
}

/// H-71: AppAPI's "check connection".
fn ping(d: &Deploy, clock: &mut Clock) {
    let r = clock.time("ping", || d.api.engine("GET", "/_ping"));
    assert_eq!((r.head.status, r.body_str().as_str()), (200, "OK"));
    // The engine's own headers come through; podman says 1.41 here, Docker 1.44+.
    let v = r.head.header("api-version").unwrap_or_default().to_string();
    assert!(v.starts_with("1."), "Api-Version {v:?}: {:?}", r.head);
}

/// §4.6: `POST images/create` streams the engine's progress lines. The relay holds the
/// layer until the first progress bytes have reached us through Lyre.
fn pull(d: &Deploy, held: &HeldRelay, clock: &mut Clock) {
    let (repo, tag) = d.image.rsplit_once(':').expect("ref has a tag");
    let path = format!("{API}/images/create?fromImage={}&tag={tag}", encode(repo));
    let pid = d.lyre.pid();
    let mut first: Option<(bool, usize)> = None;
    let mut body = Vec::new();
    clock.time("images/create (pull)", || {
        let mut conn = d.api.send("POST", &path, b"");
        let head = conn.read_head();
        assert_eq!(head.status, 200, "{head:?}");
        conn.try_read_body(&head, false, &mut |bytes| {
            if first.is_none() {
                first = Some((held.released(), engine_connections(pid, &d.podman.sock)));
                held.release();
            }
            body.extend_from_slice(bytes);
        })
        .expect("pull stream");
    });
    let (released_before_first_bytes, conns_mid_pull) = first.expect("pull sent progress");
    assert!(
        !released_before_first_bytes,
        "first progress bytes arrived only after the registry let the layer through"
    );
    assert!(
        held.held_something(),
        "the registry relay never held the layer back"
    );
    assert!(!held.safety_valve_opened(), "relay safety valve opened");
    assert_eq!(
        conns_mid_pull, 1,
        "Lyre holds one engine connection mid-pull"
    );
    let lines = progress_lines(&body);
    let inspect = clock.time("images/<ref>/json", || {
        d.api.engine("GET", &format!("/images/{}/json", d.image))
    });
    assert_eq!(inspect.head.status, 200, "{}", inspect.body_str());
    let id = inspect.json()["Id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_final_pull_status(&lines, &d.image, &id);
}

fn progress_lines(body: &[u8]) -> Vec<Value> {
    let lines: Vec<Value> = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|l| {
            serde_json::from_slice(l)
                .unwrap_or_else(|e| panic!("progress line {:?}: {e}", String::from_utf8_lossy(l)))
        })
        .collect();
    assert!(
        lines.iter().all(|l| l.get("error").is_none()),
        "pull error: {lines:?}"
    );
    lines
}

/// Docker ends a pull with `Status: Downloaded newer image for <ref>`; podman 4 with
/// `Download complete` and the short image id.
fn assert_final_pull_status(lines: &[Value], image: &str, image_id: &str) {
    let last = lines.last().expect("progress lines");
    let status = last["status"].as_str().unwrap_or_default();
    let docker = status == format!("Status: Downloaded newer image for {image}");
    let short = image_id.trim_start_matches("sha256:");
    let podman = status == "Download complete"
        && last["id"]
            .as_str()
            .is_some_and(|id| id.len() >= 12 && short.starts_with(id));
    assert!(
        docker || podman,
        "final pull status {last} (image id {image_id})"
    );
    assert!(
        lines.iter().any(|l| l["status"] == "Pulling fs layer"),
        "no layer was fetched: {lines:?}"
    );
}

fn create_and_start(d: &Deploy, clock: &mut Clock) {
    let nb = name_body(&d.name);
    let r = clock.time("exists (before)", || d.api.exapp("exists", &nb));
    assert_eq!((r.head.status, r.json()), (200, json!({ "exists": false })));

    // AppAPI's create payload (start_container is an extra AppAPI sends; ignored).
    let create = json!({
        "name": d.name, "instance_id": "", "image_id": d.image, "network_mode": "bridge",
        "environment_variables": ["APP_ID=talking", "APP_PORT=23000", "APP_SECRET=s3cret"],
        "restart_policy": "unless-stopped", "compute_device": "cpu", "mount_points": [],
        "resource_limits": {}, "start_container": true
    });
    let r = clock.time("create", || d.api.exapp("create", &create));
    assert_eq!(r.head.status, 201, "{}", r.body_str());
    assert_json_type(&r);
    let created = r.json();
    assert_eq!(created["name"], json!(d.container));
    assert!(
        created["id"].as_str().is_some_and(|id| id.len() >= 12),
        "{created}"
    );
    let doc = d.podman.container_json(&d.container);
    assert_eq!(doc["Config"]["Hostname"], json!(d.name));
    assert_eq!(
        doc["HostConfig"]["RestartPolicy"]["Name"],
        json!("unless-stopped")
    );

    let r = clock.time("start", || d.api.exapp("start", &nb));
    assert_eq!((r.head.status, r.body.len()), (204, 0), "{}", r.body_str());

    // No HEALTHCHECK in the image: podman says Health.Status "", Docker omits Health.
    let r = clock.time("wait_for_start", || d.api.exapp("wait_for_start", &nb));
    assert_eq!(
        (r.head.status, r.json()),
        (
            200,
            json!({ "started": true, "status": "running", "health": null })
        )
    );

    let r = clock.time("exists (after)", || d.api.exapp("exists", &nb));
    assert_eq!(
        (r.head.status, r.json()),
        (200, json!({ "exists": true, "image_ref": d.image }))
    );
}

fn certificates_and_logs(d: &Deploy, clock: &mut Clock) {
    let certs = json!({ "name": d.name, "instance_id": "", "system_certs_bundle": CA_BUNDLE, "install_frp_certs": true });
    let r = clock.time("install_certificates", || {
        d.api.exapp("install_certificates", &certs)
    });
    assert_eq!(r.head.status, 204, "{}", r.body_str());
    check_certificates(d);

    // AppAPI's health polling: container inspect through the passthrough.
    let r = clock.time("containers/<c>/json", || {
        d.api
            .engine("GET", &format!("/containers/{}/json", d.container))
    });
    assert_eq!(r.head.status, 200, "{}", r.body_str());
    assert_eq!(r.json()["State"]["Status"], json!("running"));

    let logs = format!(
        "/containers/{}/logs?stdout=true&stderr=true&tail=10",
        d.container
    );
    let r = clock.time("containers/<c>/logs", || d.api.engine("GET", &logs));
    assert_eq!(r.head.status, 200, "{}", r.body_str());
    let frames = decode_frames(&r.body);
    let text = |stream: u8| -> String {
        frames
            .iter()
            .filter(|(s, _)| *s == stream)
            .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
            .collect()
    };
    assert_eq!(
        (text(1), text(2)),
        (
            "lyre-exapp stdout\n".to_string(),
            "lyre-exapp stderr\n".to_string()
        ),
        "multiplexed log frames {frames:?}"
    );
}

/// H-83: the CA bundle's certificates and Lyre's own FRP client certificates are in the
/// container.
fn check_certificates(d: &Deploy) {
    let c = &d.container;
    let dir = "/usr/local/share/ca-certificates";
    let first = podman(&["exec", c, "cat", &format!("{dir}/custom_ca_cert_0.crt")]);
    assert_eq!(
        first,
        "-----BEGIN CERTIFICATE-----\nMIIBfirst\n-----END CERTIFICATE-----\n"
    );
    let second = podman(&["exec", c, "cat", &format!("{dir}/custom_ca_cert_1.crt")]);
    assert!(second.contains("MIIBsecond"), "{second}");
    assert_eq!(
        podman(&["exec", c, "cat", "/tmp/update-ca-certificates.ran"]),
        "ran\n"
    );
    for f in ["ca.crt", "client.crt", "client.key"] {
        let want = std::fs::read_to_string(d.certs_dir.join("frp").join(f))
            .unwrap_or_else(|e| panic!("Lyre's FRP certificate {f}: {e}"));
        let got = podman(&["exec", c, "cat", &format!("/certs/frp/{f}")]);
        assert_eq!(got, want, "/certs/frp/{f} in the container");
    }
}

fn teardown(d: &Deploy, clock: &mut Clock) {
    let nb = name_body(&d.name);
    let r = clock.time("stop", || d.api.exapp("stop", &nb));
    assert_eq!(r.head.status, 204, "{}", r.body_str());
    let remove = json!({ "name": d.name, "instance_id": "", "remove_data": true });
    let r = clock.time("remove (remove_data)", || d.api.exapp("remove", &remove));
    assert_eq!(r.head.status, 204, "{}", r.body_str());
    let (status, _) = d
        .podman
        .request("GET", &format!("/containers/{}/json", d.container), None);
    assert_eq!(status, 404, "container removed");
    let (status, _) = d
        .podman
        .request("GET", &format!("/volumes/{}_data", d.container), None);
    assert_eq!(status, 404, "volume removed");
}

fn assert_json_type(r: &Response) {
    assert_eq!(
        r.head.header("content-type"),
        Some("application/json; charset=utf-8")
    );
}

/// Docker's multiplexed stream: 8-byte headers `[stream, 0, 0, 0, len (u32 BE)]`.
fn decode_frames(mut raw: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        assert!(raw.len() >= 8, "truncated frame header: {raw:?}");
        let len = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]) as usize;
        assert!(
            matches!(raw[0], 1 | 2) && raw[1..4] == [0, 0, 0],
            "not a frame header: {:?}",
            &raw[..8]
        );
        assert!(raw.len() >= 8 + len, "truncated frame");
        out.push((raw[0], raw[8..8 + len].to_vec()));
        raw = &raw[8 + len..];
    }
    out
}

/// Query-component encoding as AppAPI's `urlencode` does for `/` and `:`.
fn encode(s: &str) -> String {
    s.replace('%', "%25")
        .replace('/', "%2F")
        .replace(':', "%3A")
}
