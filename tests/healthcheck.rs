//! `lyre healthcheck` (harp-compat.md §6.4: the container HEALTHCHECK): run with the same
//! environment as a live `lyre serve`, it passes and lists what it probed (the HTTPS
//! listener only when `cert.pem` exists); once Lyre is gone it fails with exit status 1
//! and names the variable whose address did not answer. Also the stop signal's contract
//! (H-102): SIGTERM exits 0, promptly.

mod common;

use std::process::Output;
use std::time::Duration;

use common::tls::make_certs;
use common::{poll_until, Lyre, TempDir};

fn run(cmd: &mut std::process::Command) -> (Output, String, String) {
    let out = cmd.output().expect("run lyre healthcheck");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[test]
fn healthy_while_serving_unhealthy_once_stopped() {
    let lyre = Lyre::start(&[], &[]);
    let mut check = lyre.command("healthcheck");
    let (out, stdout, stderr) = run(&mut check);
    assert!(out.status.success(), "healthcheck failed: {stdout}{stderr}");
    for probed in [
        "heartbeat 127.0.0.1:",
        "HP_FRP_ADDRESS",
        "HP_EXAPPS_ADDRESS",
    ] {
        assert!(stdout.contains(probed), "{probed} not probed: {stdout}");
    }
    assert!(
        !stdout.contains("HP_EXAPPS_HTTPS_ADDRESS"),
        "HTTPS probed without cert.pem: {stdout}"
    );
    drop(lyre);
    let (out, stdout, stderr) = run(&mut check);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("unhealthy: LYRE_CONTROL_ADDRESS 127.0.0.1:"),
        "failure does not name the variable: {stderr}"
    );
}

#[test]
fn the_https_listener_is_probed_when_cert_pem_exists() {
    let dir = TempDir::new("health-certs");
    let certs = make_certs(&dir.path().join("certs"));
    let certs_dir = certs.dir.to_string_lossy().into_owned();
    let lyre = Lyre::start(&[("LYRE_CERTS_DIR", &certs_dir)], &[]);
    // The HTTPS listener binds next to the HTTP one; the check passes once both accept.
    let mut check = lyre.command("healthcheck");
    let passed = poll_until(Duration::from_secs(10), || {
        check.output().is_ok_and(|o| o.status.success())
    });
    let (_, stdout, stderr) = run(&mut check);
    assert!(passed, "healthcheck never passed: {stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "HP_EXAPPS_HTTPS_ADDRESS 127.0.0.1:{}",
            lyre.https_port
        )),
        "HTTPS not probed: {stdout}"
    );
}

fn sigterm(pid: u32) {
    // SAFETY: plain kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
}

/// Whether `pid` has taken over SIGTERM: one of its threads blocks it (`SigBlk` in
/// /proc/<pid>/task/*/status; a thread waiting in `sigwait` shows it unblocked meanwhile).
fn blocks_sigterm(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|t| {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("SigBlk:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|m| m & (1 << (libc::SIGTERM - 1)) != 0)
    })
}

/// H-102: SIGTERM ends `lyre serve` with exit status 0, promptly, both when it serves and
/// while it is still starting (from the moment it has taken over the signal).
#[test]
fn sigterm_exits_zero_promptly_also_during_start() {
    let mut lyre = Lyre::start(&[], &[]);
    sigterm(lyre.pid());
    let status = lyre.wait_exit(Duration::from_secs(5));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{:?}\n{}",
        status,
        lyre.log()
    );

    // Again, at once on the same ports (a restart: the exited Lyre's io_uring rings may
    // hold its listener a moment longer, which the start waits out), and signalled as
    // early as it can take it.
    let mut child = lyre
        .command("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn lyre serve");
    let pid = child.id();
    assert!(
        poll_until(Duration::from_secs(10), || blocks_sigterm(pid)),
        "lyre serve never took over SIGTERM: {:?}",
        child.try_wait()
    );
    sigterm(pid);
    let mut status = None;
    poll_until(Duration::from_secs(5), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
}
