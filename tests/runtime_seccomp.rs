//! io_uring forbidden by seccomp, as Docker's default profile does: `lyre serve` must find
//! out by itself, say why, and serve everything on the epoll driver; `LYRE_DRIVER=uring`
//! must refuse to start naming the variable and the fix.
//!
//! The sandbox is a real kernel seccomp filter installed in the child before exec (what
//! Docker's runtime does), answering `io_uring_setup`, `io_uring_enter` and
//! `io_uring_register` with an errno: EPERM as Docker's profile (`defaultErrnoRet: 1`),
//! ENOSYS as a kernel built without io_uring.

mod common;

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::http::{get_req, Conn};
use common::pattern::HashSink;
use common::ws::WsClient;
use common::{Lyre, Pattern, Upstream};

/// `io_uring_setup`, `io_uring_enter`, `io_uring_register`: one number on every
/// architecture (the syscall table was unified before io_uring was added).
const IO_URING_SYSCALLS: [u32; 3] = [425, 426, 427];

/// Bytes downloaded through the sandboxed Lyre (the splice pump on the epoll driver).
const DOWNLOAD: u64 = 64 << 20;

/// Installs, in the child between fork and exec, a seccomp filter answering the io_uring
/// syscalls with `errno` and allowing everything else.
fn forbid_io_uring(cmd: &mut Command, errno: i32) {
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    let [setup, enter, register] = IO_URING_SYSCALLS;
    let filter = [
        // A = seccomp_data.nr (offset 0)
        bpf(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        // setup / enter / register: jump to the errno return (3, 2, 1 ahead)
        bpf(jeq, 3, 0, setup),
        bpf(jeq, 2, 0, enter),
        bpf(jeq, 1, 0, register),
        bpf(ret, 0, 0, libc::SECCOMP_RET_ALLOW),
        bpf(
            ret,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA),
        ),
    ];
    // SAFETY: the closure runs in the forked child before exec; it only reads the filter
    // (moved in, no allocation) and makes two prctl calls, both async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// One classic-BPF instruction.
fn bpf(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The `lyre ready` line (the listener accepts a moment before it is written).
fn ready_line(lyre: &Lyre) -> String {
    let ready = || lyre.log().contains("lyre ready");
    assert!(
        common::poll_until(Duration::from_secs(10), ready),
        "no `lyre ready` line in:\n{}",
        lyre.log()
    );
    let log = lyre.log();
    log.lines()
        .find(|l| l.contains("lyre ready"))
        .unwrap_or_default()
        .to_string()
}

fn route_args(up: &Upstream) -> Vec<String> {
    vec![
        "--route".into(),
        format!("/exapps/up/=127.0.0.1:{}", up.port),
    ]
}

/// A small GET, a byte-exact download and a WebSocket echo through `lyre`.
fn assert_serves(lyre: &Lyre, what: &str) {
    let hello = common::http::get(lyre.port, "/exapps/up/echo-headers?probe=1");
    assert_eq!(hello.head.status, 200, "{what}: GET through Lyre");
    let mut c = Conn::connect(lyre.port);
    c.send(&get_req(&format!("/exapps/up/bytes/{DOWNLOAD}")));
    let head = c.read_head();
    assert_eq!(head.status, 200, "{what}: download head");
    let mut sink = HashSink::default();
    c.try_read_body(&head, false, &mut |b| sink.update(b))
        .unwrap_or_else(|e| panic!("{what}: body broken after {} bytes: {e}", sink.size));
    assert_eq!(sink.size, DOWNLOAD, "{what}: body size");
    assert_eq!(
        sink.hex(),
        Pattern::new().sha256(DOWNLOAD),
        "{what}: body sha256"
    );
    let mut ws = WsClient::connect(lyre.port, "/exapps/up/ws");
    ws.assert_echo(&format!("{what}: echo"));
    ws.close();
}

#[test]
fn with_io_uring_forbidden_by_seccomp_lyre_says_why_and_serves_on_epoll() {
    let up = Upstream::start();
    let args = route_args(&up);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // Control: without the filter this machine runs io_uring, so the cases below are
    // decided by the filter and nothing else.
    let free = Lyre::start(&[], &args);
    let ready = ready_line(&free);
    assert!(
        ready.contains("driver=\"io_uring\""),
        "control run is not on io_uring: {ready}"
    );
    drop(free);

    for (errno, cause) in [
        (libc::EPERM, "forbidden by a seccomp profile"),
        (libc::ENOSYS, "this kernel has no io_uring"),
    ] {
        let lyre = Lyre::start_with(&[], &args, |cmd| forbid_io_uring(cmd, errno));
        let ready = ready_line(&lyre);
        assert!(
            ready.contains("driver=\"epoll\"") && ready.contains("pump=Splice"),
            "errno {errno}: not on epoll with the splice pump: {ready}"
        );
        let log = lyre.log();
        let why = log
            .lines()
            .find(|l| l.contains("io_uring is not available"))
            .unwrap_or_else(|| panic!("errno {errno}: the fallback is not explained:\n{log}"));
        assert!(
            why.contains("io_uring_setup failed") && why.contains(cause),
            "errno {errno}: the reason should name the cause ({cause}): {why}"
        );
        assert_serves(&lyre, &format!("seccomp errno {errno}"));
        assert!(
            !log.contains("panicked") && !lyre.log().contains(" ERROR "),
            "errno {errno}: errors while serving on epoll:\n{}",
            lyre.log()
        );
    }
}

#[test]
fn lyre_driver_uring_under_seccomp_refuses_to_start_naming_the_fix() {
    let (status, log) = Lyre::start_failure_with(&[("LYRE_DRIVER", "uring")], &[], |cmd| {
        forbid_io_uring(cmd, libc::EPERM)
    });
    assert!(!status.success(), "started anyway: {log}");
    assert!(
        log.contains("LYRE_DRIVER=uring")
            && log.contains("forbidden by a seccomp profile")
            && log.contains("LYRE_DRIVER=auto"),
        "the error should name the variable, the cause and the fix:\n{log}"
    );
}
