//! Bad input, broken peers and impatient clients leave nothing behind: after many rounds of
//! every abuse class the tests know, `lyre serve`'s descriptor table (read from
//! /proc/<pid>/fd: sockets, pipes, timers) is back where good traffic left it, and Lyre
//! still serves. Each class runs [`ROUNDS`] times, so a leak of one descriptor per event
//! shows as dozens; the slack covers upstream keep-alive connections the pool may hold.
//!
//! The clients Lyre must close by itself (slow heads, idle WebSockets, silent FRP openers)
//! are kept open by the test until the end: their descriptors in Lyre must go away through
//! Lyre's own timeouts.

mod appliance_frp_harness;
mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use appliance_frp_harness::*;
use common::http::{get_req, Conn};
use common::tls::make_certs;
use common::ws::WsClient;
use common::{free_port, poll_until, Lyre, TempDir, Upstream};

/// Repetitions of each abuse class.
const ROUNDS: usize = 30;
/// Descriptors the upstream pool (per worker) may legitimately hold beyond the baseline.
const SLACK: usize = 6;

/// Lyre's open descriptors by kind ("socket", "pipe", "anon_inode:[eventfd]", ...).
fn descriptors(pid: u32) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return kinds;
    };
    for e in dir.flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let t = target.to_string_lossy();
        let kind = match t.split_once(":[") {
            Some((k, _)) if k != "anon_inode" => k.to_string(),
            _ => t.into_owned(),
        };
        *kinds.entry(kind).or_default() += 1;
    }
    kinds
}

fn total(kinds: &BTreeMap<String, usize>) -> usize {
    kinds.values().sum()
}

/// Waits up to `within` (past the timeouts in play) for the descriptor count to fall to
/// `baseline + SLACK`; fails with both tables otherwise.
fn assert_back_to(lyre: &Lyre, baseline: &BTreeMap<String, usize>, within: Duration, after: &str) {
    let bound = total(baseline) + SLACK;
    let mut now = BTreeMap::new();
    let settled = poll_until(within, || {
        now = descriptors(lyre.pid());
        total(&now) <= bound
    });
    assert!(
        settled,
        "after {after}: {} descriptors open in lyre, baseline {} (+{SLACK} slack)\n\
         now: {now:?}\nbaseline: {baseline:?}\n--- lyre log ---\n{}",
        total(&now),
        total(baseline),
        lyre.log()
    );
}

/// Closes `s` with a reset (SO_LINGER 0) instead of a FIN.
fn reset(s: TcpStream) {
    lyre::net::io::set_linger_zero(&s).expect("SO_LINGER");
    drop(s);
}

/// Good traffic of every kind the abuse below perturbs: pages, a download, an upload, a
/// WebSocket echo. Run before the baseline (pools, pipes and buffers get made) and after.
fn good_traffic(port: u16) {
    for _ in 0..3 {
        let mut c = Conn::connect(port);
        c.send(&get_req("/exapps/up/page"));
        assert_eq!(c.read_response().head.status, 200);
        c.send(&get_req("/exapps/up/bytes/4194304?cl=1"));
        let r = c.read_response();
        assert_eq!((r.head.status, r.body.len()), (200, 4 << 20));
        let body = vec![7u8; 1 << 20];
        c.send(
            format!(
                "POST /exapps/up/upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        c.send(&body);
        assert_eq!(c.read_response().head.status, 200);
        let mut ws = WsClient::connect(port, "/exapps/up/ws");
        ws.assert_echo("hello");
        ws.close();
    }
}

/// An 8 MiB download over HTTPS, read whole (`None`) or abandoned after `Some(n)` bytes.
fn https_download(port: u16, tls: &Arc<rustls::ClientConfig>, abandon_after: Option<usize>) {
    let mut c = Conn::connect_tls(port, tls);
    c.send(&get_req("/exapps/up/bytes/8388608?cl=1"));
    match abandon_after {
        None => {
            let r = c.read_response();
            assert_eq!(
                (r.head.status, r.body.len()),
                (200, 8 << 20),
                "HTTPS download"
            );
        }
        Some(n) => {
            assert_eq!(c.read_head().status, 200, "HTTPS download");
            let _ = c.try_read_exact(n);
        }
    }
}

/// Sends `bytes` and reads whatever comes back until Lyre closes (or 5 s pass).
fn send_and_drain(port: u16, bytes: &[u8]) {
    let mut c = Conn::connect(port);
    let _ = c.send_lenient(bytes);
    let _ = c.closed_within(Duration::from_secs(5));
}

#[test]
fn engine_abuse_leaves_no_descriptor_behind() {
    let up = Upstream::start();
    let down = free_port();
    let dir = TempDir::new("leak-certs");
    let certs = make_certs(&dir.path().join("certs"));
    let certs_dir = certs.dir.to_string_lossy().into_owned();
    let mut lyre = Lyre::routed(
        &[("/exapps/up/", up.port), ("/exapps/down/", down)],
        &[
            ("HP_TIMEOUT_CLIENT", "1s"),
            ("HP_TIMEOUT_SERVER", "1s"),
            ("HP_TIMEOUT_TUNNEL", "2s"),
            ("LYRE_CERTS_DIR", certs_dir.as_str()),
        ],
    );
    let (port, https_port) = (lyre.port, lyre.https_port);
    let tls = certs.http11_client();
    assert!(
        poll_until(Duration::from_secs(10), || TcpStream::connect((
            "127.0.0.1",
            https_port
        ))
        .is_ok()),
        "HTTPS frontend not listening"
    );
    good_traffic(port);
    https_download(https_port, &tls, None);
    thread::sleep(Duration::from_millis(300));
    let baseline = descriptors(lyre.pid());

    // Held open by the test: Lyre must drop its side through its own timeouts.
    let mut held: Vec<TcpStream> = Vec::new();
    let mut held_ws: Vec<WsClient> = Vec::new();
    let big_head = format!(
        "GET /exapps/up/page HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let cl_te = "POST /exapps/up/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\
                 Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    for i in 0..ROUNDS {
        // Malformed, oversized and smuggling heads: 400/431 and close.
        send_and_drain(port, b"GARBAGE\r\n\r\n");
        send_and_drain(port, big_head.as_bytes());
        send_and_drain(port, cl_te.as_bytes());
        // A body cut short by the client.
        let mut c = Conn::connect(port);
        c.send(b"POST /exapps/up/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10485760\r\n\r\n");
        c.send(&vec![1u8; 256 * 1024]);
        drop(c);
        // A download abandoned after its first bytes, by FIN and by reset.
        let mut c = Conn::connect(port);
        c.send(&get_req("/exapps/up/bytes/67108864"));
        let _ = c.read_head();
        let _ = c.try_read_exact(100 * 1024);
        if i % 2 == 0 {
            drop(c);
        } else {
            reset(c.stream);
        }
        // Pipelined downloads, closed before reading any answer.
        let mut c = Conn::connect(port);
        let one = get_req("/exapps/up/bytes/1048576");
        c.send(&one.repeat(5));
        drop(c);
        // 100-continue, then the client leaves without a body.
        let mut c = Conn::connect(port);
        c.send(
            b"POST /exapps/up/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\
              Expect: 100-continue\r\n\r\n",
        );
        let _ = c.read_head();
        drop(c);
        // Half-close after a complete request: the answer still comes.
        let mut c = Conn::connect(port);
        c.send(&get_req("/exapps/up/page"));
        c.shutdown_write();
        assert_eq!(c.read_response().head.status, 200, "half-closed client");
        // Upstream down: 503.
        let mut c = Conn::connect(port);
        c.send(&get_req("/exapps/down/page"));
        assert_eq!(c.read_response().head.status, 503, "upstream down");
        // A WebSocket dropped mid-conversation.
        let mut ws = WsClient::connect(port, "/exapps/up/ws");
        ws.assert_echo("bye");
        drop(ws);
        // HTTPS: TLS garbage, plaintext on the TLS port, an abandoned download.
        send_and_drain(
            https_port,
            &[vec![0x16, 3, 1, 0, 40], vec![0xee; 40]].concat(),
        );
        send_and_drain(https_port, &get_req("/exapps/up/page"));
        https_download(https_port, &tls, Some(100 * 1024));
        // Half a ClientHello, left there (the handshake deadline must close it).
        let mut s = TcpStream::connect(("127.0.0.1", https_port)).expect("connect");
        s.write_all(&[0x16, 3, 1]).expect("send");
        held.push(s);
        // A slow head (closed by HP_TIMEOUT_CLIENT) and an idle WebSocket (closed by
        // HP_TIMEOUT_TUNNEL), both left open by the client.
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(b"GET /exapps/up/page HTTP/1.1\r\nHo")
            .expect("send");
        held.push(s);
        held_ws.push(WsClient::connect(port, "/exapps/up/ws"));
    }
    // Silent upstream: 504 after HP_TIMEOUT_SERVER, all at once.
    let silent: Vec<_> = (0..ROUNDS)
        .map(|_| {
            thread::spawn(move || {
                let mut c = Conn::connect(port);
                c.send(&get_req("/exapps/up/silent"));
                c.read_response().head.status
            })
        })
        .collect();
    for t in silent {
        assert_eq!(t.join().expect("silent client"), 504, "silent upstream");
    }

    assert_back_to(
        &lyre,
        &baseline,
        Duration::from_secs(20),
        "every abuse class",
    );
    lyre.assert_alive();
    good_traffic(port);
    https_download(https_port, &tls, None);
    for s in &held {
        let _ = s.shutdown(Shutdown::Both);
    }
    drop((held, held_ws));
    assert_back_to(
        &lyre,
        &baseline,
        Duration::from_secs(20),
        "good traffic again",
    );
}

/// A raw yamux frame header (frp-protocol §2).
fn yamux(ty: u8, flags: u16, id: u32, len: u32) -> Vec<u8> {
    let mut h = vec![0, ty];
    h.extend_from_slice(&flags.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h
}

/// Good tunnel traffic: downloads through the in-process fast path (an ExApp request) and
/// through the compatibility listener on 127.0.0.1:<remotePort>.
fn tunnel_traffic(lyre_port: u16, remote_port: u16) {
    for _ in 0..3 {
        let mut c = Conn::connect(lyre_port);
        c.send(&exapp_get(APP_ID, "/bytes/2097152"));
        let r = c.read_response();
        assert_eq!((r.head.status, r.body.len()), (200, 2 << 20), "fast path");
        let mut c = Conn::connect(remote_port);
        c.send(&get_req("/bytes/2097152"));
        let r = c.read_response();
        assert_eq!((r.head.status, r.body.len()), (200, 2 << 20), "tunnel port");
    }
}

/// Starts a paced download through the fast path and reads its first bytes.
fn running_download(lyre_port: u16) -> Conn {
    let mut c = Conn::connect(lyre_port);
    c.send(&exapp_get(APP_ID, "/slow/1073741824"));
    assert_eq!(c.read_head().status, 200, "download through the tunnel");
    let _ = c.try_read_exact(64 * 1024);
    c
}

#[test]
fn frp_abuse_leaves_no_descriptor_behind() {
    // TLS off so raw clients can speak yamux and frp messages; TLS openers still get a
    // handshake (HP_FRP_DISABLE_TLS=true serves TLS frpc too).
    let app = Appliance::start(
        false,
        &[
            ("HP_TIMEOUT_CONNECT", "2s"),
            ("HP_TIMEOUT_CLIENT", "1s"),
            ("HP_TIMEOUT_SERVER", "2s"),
        ],
    );
    let ByteTunnel {
        port,
        conf,
        mut frpc,
        bytes: _bytes,
    } = app.byte_tunnel();
    let (lyre_port, frp_port) = (app.lyre.port, app.lyre.frp_port);
    tunnel_traffic(lyre_port, port);
    thread::sleep(Duration::from_millis(300));
    let baseline = descriptors(app.lyre.pid());

    let frp_openers: Vec<Vec<u8>> = vec![
        b"zzzzzzzzzzzz".to_vec(),
        [vec![0x16, 3, 1, 0, 40], vec![0xee; 40]].concat(),
        [vec![0x17, 0x16, 3, 1, 0, 40], vec![0xee; 40]].concat(),
        [yamux(1, 1, 1, 0), vec![7; 12]].concat(),
        [yamux(1, 1, 1, 0), yamux(0, 0, 1, 8 << 20)].concat(),
        [vec![b'o'], 10241i64.to_be_bytes().to_vec()].concat(),
    ];
    let mut held: Vec<TcpStream> = Vec::new();
    for i in 0..ROUNDS {
        // User connections abandoned mid-download: fast path (FIN / reset), tunnel port.
        let c = running_download(lyre_port);
        if i % 2 == 0 {
            drop(c);
        } else {
            reset(c.stream);
        }
        let mut c = Conn::connect(port);
        c.send(&get_req("/bytes/67108864"));
        let _ = c.read_head();
        let _ = c.try_read_exact(64 * 1024);
        drop(c);
        // Broken frp openers, each closed by Lyre.
        for bytes in &frp_openers {
            send_and_drain(frp_port, bytes);
        }
        // Connect and leave at once.
        drop(TcpStream::connect(("127.0.0.1", frp_port)).expect("connect"));
        // Openers that stall: nothing at all, a yamux SYN without a Login, half a TLS
        // record. Lyre's deadlines (10 s first byte / handshake, then 10 s for the first
        // message) must close them; the test keeps its ends open.
        for opening in [Vec::new(), yamux(1, 1, 1, 0), vec![0x16, 3, 1]] {
            let mut s = TcpStream::connect(("127.0.0.1", frp_port)).expect("connect");
            s.write_all(&opening).expect("send");
            held.push(s);
        }
    }
    // frpc killed under a running download, a request while the tunnel is gone (503),
    // frpc back.
    for _ in 0..3 {
        let c = running_download(lyre_port);
        frpc.guard.kill();
        drop(c);
        let mut c = Conn::connect(lyre_port);
        c.send(&exapp_get(APP_ID, "/x"));
        assert_eq!(c.read_response().head.status, 503, "no tunnel");
        frpc = Frpc::start_ready(&conf);
    }
    tunnel_traffic(lyre_port, port);

    let mut lyre = app.lyre;
    assert_back_to(&lyre, &baseline, Duration::from_secs(40), "frp abuse");
    lyre.assert_alive();
    tunnel_traffic(lyre_port, port);
    drop(held);
    assert_back_to(
        &lyre,
        &baseline,
        Duration::from_secs(20),
        "good tunnel traffic again",
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A client whose receive buffer is 4 KiB (set before connecting, so the TCP window is
/// small): a user who does not read blocks Lyre's writes at once, as a slow or stalled
/// client on a real network does, instead of loopback's MiBs of socket buffers first.
fn small_window_client(port: u16) -> TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: a fresh socket fd, owned by the TcpStream made from it below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket");
    let size: libc::c_int = 4096;
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: valid fd, option and address structs of the sizes passed.
    unsafe {
        let stream = TcpStream::from_raw_fd(fd);
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "SO_RCVBUF");
        let rc = libc::connect(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect 127.0.0.1:{port}");
        stream
    }
}

/// Users who ask for a big download through the tunnel and never read it: each costs Lyre
/// about one yamux window of buffer at most (frps's 6 MiB; a stream's window grows there
/// only while its reader drains faster than data arrives, which loopback's MiBs of socket
/// buffer let it do at first), never the download. Measured here: 4-6.5 MiB of RSS each
/// (5.1-5.2 through the fast path since the receive buffer became a ring capped at its
/// window); 8.6-12 MiB when the claim granted the whole window at once. The unit tests in
/// frp::yamux::session pin the autotuning itself.
#[test]
fn stalled_downloads_through_the_tunnel_cost_one_window_each() {
    const USERS: u64 = 20;
    const MAX_KIB_EACH: u64 = 9 * 1024;
    let app = Appliance::start(false, &[]);
    let tunnel = app.byte_tunnel();
    let port = tunnel.port;
    tunnel_traffic(app.lyre.port, port);
    thread::sleep(Duration::from_millis(300));
    let pid = app.lyre.pid();
    for (way, connect_port, request) in [
        (
            "fast path",
            app.lyre.port,
            exapp_get(APP_ID, "/bytes/268435456"),
        ),
        ("tunnel port", port, get_req("/bytes/268435456")),
    ] {
        let before = rss_kib(pid);
        let stalled: Vec<TcpStream> = (0..USERS)
            .map(|_| {
                let mut c = small_window_client(connect_port);
                c.write_all(&request).expect("send");
                c
            })
            .collect();
        // Until Lyre's share stops growing: frpc fills each granted window, then stops.
        let mut last = 0;
        poll_until(Duration::from_secs(10), || {
            thread::sleep(Duration::from_millis(500));
            let now = rss_kib(pid);
            std::mem::replace(&mut last, now) == now
        });
        let each = last.saturating_sub(before) / USERS;
        assert!(
            each <= MAX_KIB_EACH,
            "{way}: {each} KiB of Lyre RSS per stalled download (at most {MAX_KIB_EACH})"
        );
        eprintln!("{way}: {each} KiB of Lyre RSS per stalled download");
        drop(stalled);
    }
}

/// Shapes what Lyre sends from `ports` (its listeners) to `rate` on this namespace's `lo`,
/// with a 1500-byte MTU: the users' side of a real link, while frpc and the ExApp stay on
/// fast loopback. HTB + u32 (the kernel here has no netem).
fn shape_user_link(ports: &[u16], rate: &str) {
    ip_tool("ip", "link set lo mtu 1500");
    ip_tool("tc", "qdisc add dev lo root handle 1: htb default 10");
    ip_tool(
        "tc",
        "class add dev lo parent 1: classid 1:10 htb rate 40gbit quantum 200000",
    );
    ip_tool(
        "tc",
        &format!("class add dev lo parent 1: classid 1:20 htb rate {rate} quantum 1514"),
    );
    for port in ports {
        let filter = format!(
            "filter add dev lo parent 1: protocol ip u32 match ip sport {port} 0xffff flowid 1:20"
        );
        ip_tool("tc", &filter);
    }
}

/// Undoes [`shape_user_link`].
fn teardown_shaping() {
    ip_tool("tc", "qdisc del dev lo root");
    ip_tool("ip", "link set lo mtu 65536");
}

/// Runs an iproute2 tool (`ip`, `tc`) with `args`, failing the test if it fails.
fn ip_tool(tool: &str, args: &str) {
    let st = std::process::Command::new(tool)
        .args(args.split_whitespace())
        .status()
        .unwrap_or_else(|e| panic!("run `{tool}` (iproute2): {e}"));
    assert!(st.success(), "{tool} {args}");
}

/// Users on a slow link who read their big downloads as fast as the link lets them: each
/// costs Lyre about one stream window of buffer (1 MiB), not frps's 6 MiB: a stream's
/// window grows only while its reader waits for data, and these readers wait for their
/// link. Measured here (fresh Lyre, 20 readers sharing 80 Mbit/s, RSS delta per reader):
/// 1.4-1.5 MiB through the tunnel port, 1.8-2.3 MiB through the fast path (its HTTP
/// buffers on top). Before, 3.8-4.9 MiB: a wait for the first bytes, before the link
/// filled, counted toward growing the window to 2 MiB, and the receive buffer (appended
/// at the back while read from the front) could double past its window. The unit test
/// `a_claimed_stream_drained_into_a_slow_sink_stays_at_one_mib` pins the window itself.
#[test]
fn slow_readers_on_a_shaped_link_hold_about_one_window_each() {
    const USERS: u64 = 20;
    const MAX_KIB_EACH: u64 = 3 * 1024;
    common::appapi::in_netns(|| {
        for fast_path in [true, false] {
            let app = Appliance::start(false, &[]);
            let tunnel = app.byte_tunnel();
            tunnel_traffic(app.lyre.port, tunnel.port);
            shape_user_link(&[app.lyre.port, tunnel.port], "80mbit");
            let (way, port, request) = if fast_path {
                (
                    "fast path",
                    app.lyre.port,
                    exapp_get(APP_ID, "/bytes/268435456"),
                )
            } else {
                ("tunnel port", tunnel.port, get_req("/bytes/268435456"))
            };
            thread::sleep(Duration::from_millis(300));
            let pid = app.lyre.pid();
            let before = rss_kib(pid);
            let readers = SlowReaders::start(USERS, port, &request);
            let mut peak = before;
            for _ in 0..16 {
                thread::sleep(Duration::from_millis(500));
                peak = peak.max(rss_kib(pid));
            }
            let read = readers.stop();
            let each = (peak - before) / USERS;
            eprintln!(
                "{way}: {each} KiB of Lyre RSS per slow reader, {} MiB read",
                read >> 20
            );
            assert!(
                read > USERS * (2 << 20),
                "{way}: the readers got only {read} bytes: the link or the tunnel is broken"
            );
            assert!(
                each <= MAX_KIB_EACH,
                "{way}: {each} KiB of Lyre RSS per slow reader (at most {MAX_KIB_EACH})"
            );
            teardown_shaping();
        }
    });
}

/// Reader threads, one connection each, reading a download as fast as they can.
struct SlowReaders {
    stop: Arc<std::sync::atomic::AtomicBool>,
    read: Arc<std::sync::atomic::AtomicU64>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl SlowReaders {
    fn start(users: u64, port: u16, request: &[u8]) -> SlowReaders {
        use std::io::Read;
        use std::sync::atomic::Ordering;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let read = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let threads = (0..users)
            .map(|_| {
                let (stop, read, request) = (stop.clone(), read.clone(), request.to_vec());
                thread::spawn(move || {
                    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                    c.set_read_timeout(Some(Duration::from_millis(200))).ok();
                    c.write_all(&request).expect("send");
                    let mut buf = vec![0u8; 64 * 1024];
                    while !stop.load(Ordering::Relaxed) {
                        match c.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                read.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            Err(_) => {} // the read timeout: look at `stop` again
                        }
                    }
                })
            })
            .collect();
        SlowReaders {
            stop,
            read,
            threads,
        }
    }

    /// Stops and joins the readers; returns the bytes they read in all.
    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        self.read.load(std::sync::atomic::Ordering::Relaxed)
    }
}
