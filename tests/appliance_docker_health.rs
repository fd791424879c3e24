//! `wait_for_start` through Lyre's PUBLIC listener for ExApp images with a HEALTHCHECK
//! (harp-compat.md §4.4.1, H-80): it keeps polling while the engine says `starting`, then
//! answers `healthy` (started) or `unhealthy` (started too: HaRP's quirk, with a reason).
//!
//! Podman vs Docker: Docker runs HEALTHCHECK itself; podman 4 drives it with systemd timers,
//! and there is no systemd here, so `State.Health.Status` would stay `starting` forever.
//! The test plays the timer (`podman healthcheck run` in a loop), which gives the states
//! Docker would report on its own.

mod common;
mod docker_peer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::appapi::{name_body, AppApi};
use common::{Lyre, TempDir};
use docker_peer::{podman, Podman, IMAGE};
use serde_json::{json, Value};

/// How long the healthy container stays `starting` before its first check runs.
const STARTING_FOR: Duration = Duration::from_millis(1200);

/// `IMAGE` plus `HEALTHCHECK CMD test -f /tmp/healthy` (docker format: OCI drops it).
fn build_health_image(podman_guard: &Podman) -> String {
    let dir = TempDir::new("health-image");
    let name = format!("localhost/lyre-health-{}:1", std::process::id());
    std::fs::write(
        dir.path().join("Containerfile"),
        format!("FROM {IMAGE}\nHEALTHCHECK --interval=30s --retries=1 CMD test -f /tmp/healthy\n"),
    )
    .expect("write Containerfile");
    let ctx = dir.path().to_string_lossy().into_owned();
    podman(&["build", "-q", "--format", "docker", "-t", &name, &ctx]);
    podman_guard.forget_image(&name);
    name
}

/// Plays systemd's healthcheck timer for `container` until `stop`: waits `delay`, runs
/// `prepare` (a shell line in the container), then `podman healthcheck run` every 200 ms.
fn health_timer(
    container: String,
    delay: Duration,
    prepare: Option<&'static str>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        thread::sleep(delay);
        if let Some(line) = prepare {
            podman(&["exec", &container, "sh", "-c", line]);
        }
        while !stop.load(Ordering::SeqCst) {
            // Exit status is the check's verdict (non-zero when unhealthy): not an error.
            let _ = std::process::Command::new("podman")
                .args(["healthcheck", "run", &container])
                .output();
            thread::sleep(Duration::from_millis(200));
        }
    })
}

fn deploy(api: &AppApi, name: &str, image: &str) {
    let create = json!({
        "name": name, "instance_id": "", "image_id": image, "network_mode": "bridge",
        "environment_variables": [], "restart_policy": "unless-stopped",
        "compute_device": "cpu", "mount_points": [], "resource_limits": {}
    });
    let r = api.exapp("create", &create);
    assert_eq!(r.head.status, 201, "{}", r.body_str());
    let r = api.exapp("start", &name_body(name));
    assert_eq!(r.head.status, 204, "{}", r.body_str());
}

/// `wait_for_start` while the timer runs; returns the answer and how long it took.
fn wait_with_timer(
    api: &AppApi,
    name: &str,
    delay: Duration,
    prepare: Option<&'static str>,
) -> (Value, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let timer = health_timer(format!("nc_app_{name}"), delay, prepare, stop.clone());
    let t = Instant::now();
    let r = api.exapp("wait_for_start", &name_body(name));
    let took = t.elapsed();
    stop.store(true, Ordering::SeqCst);
    let _ = timer.join();
    assert_eq!(r.head.status, 200, "{}", r.body_str());
    (r.json(), took)
}

#[test]
fn wait_for_start_follows_healthchecks() {
    let podman_guard = Podman::start("appl-health");
    let image = build_health_image(&podman_guard);
    let sock = podman_guard.sock.to_string_lossy().into_owned();
    let lyre = Lyre::start(&[("LYRE_DOCKER_SOCKET", &sock)], &[]);
    let api = AppApi::new(lyre.port, 24000);

    let healthy = podman_guard.app_name("healthy");
    deploy(&api, &healthy, &image);
    let (answer, took) = wait_with_timer(&api, &healthy, STARTING_FOR, Some(": > /tmp/healthy"));
    eprintln!("healthy after {took:?} ({answer})");
    assert_eq!(
        answer,
        json!({ "started": true, "status": "running", "health": "healthy" })
    );
    assert!(
        took >= STARTING_FOR,
        "answered after {took:?}, before the first health check ran"
    );

    let sick = podman_guard.app_name("sick");
    deploy(&api, &sick, &image);
    let (answer, took) = wait_with_timer(&api, &sick, Duration::ZERO, None);
    eprintln!("unhealthy after {took:?} ({answer})");
    assert_eq!(
        answer,
        json!({ "started": true, "status": "running", "health": "unhealthy", "reason": "unhealthy" })
    );

    for name in [&healthy, &sick] {
        let r = api.exapp(
            "remove",
            &json!({ "name": name, "instance_id": "", "remove_data": true }),
        );
        assert_eq!(r.head.status, 204, "{}", r.body_str());
    }
}
