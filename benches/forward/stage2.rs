//! Stage 2: the real `lyre serve` binary as a subprocess. A download of `GET /big` through
//! a static route to an in-bench HTTP server (1 GiB with Content-Length), CPU from
//! /proc/<pid>/stat (all of Lyre's threads, kernel time included), over plain HTTP (splice
//! and copy pumps, both drivers) and over HTTPS with a rustls client (Lyre's memcpy choice
//! against glibc's, `runtime::memcpy`); and 1,000 WebSocket-style upgrades held idle, RSS
//! from /proc/<pid>/status.
//!
//! Skipped with a message when the binary does not serve (the proxy is not merged yet).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::TARGET_KIB_PER_TUNNEL;
use super::{cpu, drain, spawn_source, Row, Sample, IDLE_TUNNELS, IO_TIMEOUT, TOTAL_BYTES};

const LYRE: &str = env!("CARGO_BIN_EXE_lyre");
/// How long Lyre gets to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `lyre serve`; killed on drop.
struct Lyre {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Lyre {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn start_lyre(upstream: SocketAddr, pump: &str, driver: &str) -> Result<Lyre, String> {
    start_lyre_with(upstream, pump, driver, &[])
}

/// [`start_lyre`] with extra environment variables.
fn start_lyre_with(
    upstream: SocketAddr,
    pump: &str,
    driver: &str,
    env: &[(&str, String)],
) -> Result<Lyre, String> {
    let port = free_port()?;
    let child = Command::new(LYRE)
        .args(["serve", "--route", &format!("/={upstream}")])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("HP_SHARED_KEY", "x")
        .env("NC_INSTANCE_URL", "http://127.0.0.1:9")
        .env("HP_FRP_ADDRESS", "127.0.0.1:0")
        .env("HP_EXAPPS_ADDRESS", format!("127.0.0.1:{port}"))
        .env("LYRE_PUMP", pump)
        .env("LYRE_DRIVER", driver)
        .env("LYRE_WORKERS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn {LYRE}: {e}"))?;
    let mut lyre = Lyre {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let end = Instant::now() + START_TIMEOUT;
    while Instant::now() < end {
        if let Ok(Some(status)) = lyre.child.try_wait() {
            return Err(format!("lyre serve exited at start ({status})"));
        }
        if TcpStream::connect(lyre.addr).is_ok() {
            return Ok(lyre);
        }
        thread::sleep(Duration::from_millis(20));
    }
    Err("lyre serve did not listen within 10 s".to_string())
}

fn big_source() -> SocketAddr {
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {TOTAL_BYTES}\r\n\r\n");
    spawn_source(TOTAL_BYTES, Some(head.into_bytes()))
}

/// The stage-2 rows for the paired throughput table, or none (with a note) when the binary
/// does not serve yet.
pub fn rows() -> Vec<Row> {
    let source = big_source();
    if let Err(e) = start_lyre(source, "splice", "epoll") {
        println!("stage 2 (lyre serve subprocess) skipped: {e}");
        return Vec::new();
    }
    let mut rows: Vec<Row> = Vec::new();
    for driver in ["uring", "epoll"] {
        for pump in ["splice", "copy"] {
            let label = format!("lyre serve {pump} / {driver}");
            rows.push((
                label,
                Box::new(move || download_via_lyre(source, pump, driver)),
            ));
        }
    }
    // HTTPS client leg (TLS costs copies, not splices): Lyre's memcpy choice
    // (`runtime::memcpy`) against glibc's own (`LYRE_MEMCPY=glibc`), in the same run. On AMD
    // with glibc < 2.39 they differ (vector loop vs REP MOVSB); elsewhere they are the same.
    for memcpy in ["auto", "glibc"] {
        let label = format!("lyre serve https / memcpy {memcpy}");
        rows.push((label, Box::new(move || download_https(source, memcpy))));
    }
    rows
}

/// `GET /big` over HTTPS (a rustls client) through a fresh Lyre with `LYRE_MEMCPY=memcpy`;
/// CPU = Lyre's whole process during the body.
fn download_https(source: SocketAddr, memcpy: &str) -> Result<Sample, String> {
    let dir = std::env::temp_dir().join(format!("lyre-fwd-https-{}", std::process::id()));
    let pki = lyre::tls::ensure_frp_pki(&dir, 30).map_err(|e| e.to_string())?;
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let pem = [read(&pki.server_crt)?, read(&pki.server_key)?].concat();
    std::fs::write(dir.join("cert.pem"), pem).map_err(|e| e.to_string())?;
    let https = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let env = [
        ("LYRE_CERTS_DIR", dir.display().to_string()),
        ("HP_EXAPPS_HTTPS_ADDRESS", https.to_string()),
        ("LYRE_MEMCPY", memcpy.to_string()),
    ];
    let lyre = start_lyre_with(source, "splice", "uring", &env)?;
    let end = Instant::now() + START_TIMEOUT;
    while TcpStream::connect(https).is_err() {
        if Instant::now() > end {
            return Err("HTTPS listener did not come up".into());
        }
        thread::sleep(Duration::from_millis(20));
    }
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    let ca = rustls::pki_types::CertificateDer::from_pem_file(&pki.ca_crt)
        .map_err(|e| format!("CA: {e}"))?;
    roots.add(ca).map_err(|e| e.to_string())?;
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(lyre::tls::pki::SERVER_NAME)
        .map_err(|e| e.to_string())?;
    let conn =
        rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).map_err(|e| e.to_string())?;

    let pid = lyre.child.id();
    let stat = format!("/proc/{pid}/stat");
    let before = cpu::stat_ticks(&stat).ok_or("no /proc stat for lyre")?;
    let machine = crate::cpu_time::Window::start();
    let start = Instant::now();
    let tcp = TcpStream::connect(https).map_err(|e| format!("connect lyre https: {e}"))?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut c = rustls::StreamOwned::new(conn, tcp);
    c.write_all(b"GET /big HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("request: {e}"))?;
    let (status, rest) = read_head(&mut c)?;
    if status != 200 {
        return Err(format!("GET /big over HTTPS answered {status}"));
    }
    let mut body = rest as u64;
    let mut buf = vec![0u8; 1 << 20];
    while body < TOTAL_BYTES {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => body += n as u64,
            Err(e) => return Err(format!("HTTPS body after {body} bytes: {e}")),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let machine_secs = machine.end();
    let after = cpu::stat_ticks(&stat).ok_or("no /proc stat for lyre")?;
    let _ = std::fs::remove_dir_all(&dir);
    if body != TOTAL_BYTES {
        return Err(format!("HTTPS body {body} bytes, expected {TOTAL_BYTES}"));
    }
    Ok(Sample {
        secs,
        cpu_secs: Some(after.saturating_sub(before) as f64 / cpu::clock_ticks()),
        machine_secs: machine_secs.0,
    })
}

/// `GET /big` through a fresh Lyre; CPU = Lyre's whole process during the body.
fn download_via_lyre(source: SocketAddr, pump: &str, driver: &str) -> Result<Sample, String> {
    let lyre = start_lyre(source, pump, driver)?;
    let pid = lyre.child.id();
    let stat = format!("/proc/{pid}/stat");
    let before = cpu::stat_ticks(&stat).ok_or("no /proc stat for lyre")?;
    let machine = crate::cpu_time::Window::start();
    let start = Instant::now();
    let mut c = TcpStream::connect(lyre.addr).map_err(|e| format!("connect lyre: {e}"))?;
    c.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    c.write_all(b"GET /big HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("request: {e}"))?;
    let (status, rest) = read_head(&mut c)?;
    if status != 200 {
        return Err(format!("GET /big answered {status}"));
    }
    let body = rest as u64 + drain(&mut c)?;
    let secs = start.elapsed().as_secs_f64();
    let machine_secs = machine.end();
    let after = cpu::stat_ticks(&stat).ok_or("no /proc stat for lyre")?;
    if body != TOTAL_BYTES {
        return Err(format!("body {body} bytes, expected {TOTAL_BYTES}"));
    }
    let cpu_secs = after.saturating_sub(before) as f64 / cpu::clock_ticks();
    Ok(Sample {
        secs,
        cpu_secs: Some(cpu_secs),
        machine_secs: machine_secs.0,
    })
}

/// Read a response head; returns the status and how many body bytes came with it.
fn read_head(c: &mut impl Read) -> Result<(u16, usize), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = c
            .read(&mut chunk)
            .map_err(|e| format!("response head: {e}"))?;
        if n == 0 {
            return Err("EOF in response head".to_string());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                return Ok((resp.code.unwrap_or(0), buf.len() - len));
            }
            Ok(httparse::Status::Partial) if buf.len() < 65536 => {}
            _ => return Err("bad response head".to_string()),
        }
    }
}

/// 1,000 upgrades through Lyre to an upstream that answers 101, echoes one ping, then idles.
pub fn idle_tunnels() {
    for driver in ["uring", "epoll"] {
        match idle_tunnels_via_lyre(driver) {
            Ok((kib, idle)) => println!(
                "idle tunnels, lyre serve {driver}: {kib:.2} KiB each (target <= \
                 {TARGET_KIB_PER_TUNNEL}); {idle}"
            ),
            Err(e) => println!("idle tunnels, lyre serve {driver}: skipped: {e}"),
        }
    }
}

fn idle_tunnels_via_lyre(driver: &str) -> Result<(f64, cpu::IdleCost), String> {
    let (tx, rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let up = thread::spawn(move || {
        super::on_driver(super::Driver::Epoll, move || upgrade_upstream(tx, done_rx))
    });
    let upstream = rx
        .recv_timeout(IO_TIMEOUT)
        .map_err(|_| "upstream did not start")?;
    let result = measure_tunnels(upstream, driver);
    drop(done_tx);
    let _ = up.join();
    result
}

fn measure_tunnels(upstream: SocketAddr, driver: &str) -> Result<(f64, cpu::IdleCost), String> {
    let lyre = start_lyre(upstream, "splice", driver)?;
    let pid = lyre.child.id();
    // Warm up: one tunnel first, so one-time allocations are not counted per tunnel.
    let mut clients = vec![open_tunnel(lyre.addr)?];
    thread::sleep(Duration::from_millis(200));
    let before = cpu::vm_rss_kib(pid)?;
    for _ in 0..IDLE_TUNNELS {
        clients.push(open_tunnel(lyre.addr)?);
    }
    thread::sleep(Duration::from_millis(300));
    let after = cpu::vm_rss_kib(pid)?;
    let idle = cpu::idle_cost(pid)?;
    drop(clients);
    Ok(((after as f64 - before as f64) / IDLE_TUNNELS as f64, idle))
}

/// Upgrade one connection, pass one ping/pong through it, leave it open.
fn open_tunnel(addr: SocketAddr) -> Result<TcpStream, String> {
    let mut c = TcpStream::connect(addr).map_err(|e| format!("connect lyre: {e}"))?;
    c.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    c.write_all(
        b"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .map_err(|e| format!("upgrade request: {e}"))?;
    let (status, extra) = read_head(&mut c)?;
    if status != 101 || extra != 0 {
        return Err(format!("upgrade answered {status} (+{extra} bytes)"));
    }
    c.write_all(b"ping").map_err(|e| format!("ping: {e}"))?;
    let mut pong = [0u8; 4];
    c.read_exact(&mut pong).map_err(|e| format!("pong: {e}"))?;
    if &pong != b"pong" {
        return Err("tunnel corrupted the ping/pong".to_string());
    }
    Ok(c)
}

/// Upstream: answer each request head with 101, echo "ping" as "pong", then hold the socket
/// until the peer closes; stops accepting when `done` is dropped.
async fn upgrade_upstream(
    tx: mpsc::Sender<SocketAddr>,
    done: mpsc::Receiver<()>,
) -> Result<(), String> {
    use lyre::net::io as nio;
    let l = monoio::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    tx.send(l.local_addr().map_err(|e| e.to_string())?)
        .map_err(|_| "bench gone")?;
    while matches!(done.try_recv(), Err(mpsc::TryRecvError::Empty)) {
        let accepted = monoio::time::timeout(Duration::from_millis(50), l.accept()).await;
        let Ok(Ok((s, _))) = accepted else { continue };
        monoio::spawn(async move {
            let _ = nio::set_nonblocking(&s);
            let mut buf = Vec::with_capacity(1024);
            while !buf.ends_with(b"\r\n\r\n") {
                if !matches!(nio::read_some(&s, &mut buf, 1024).await, Ok(n) if n > 0) {
                    return;
                }
            }
            let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                         Connection: Upgrade\r\n\r\n";
            if nio::write_all(&s, head).await.is_err() {
                return;
            }
            buf.clear();
            while buf.len() < 4 {
                if !matches!(nio::read_some(&s, &mut buf, 16).await, Ok(n) if n > 0) {
                    return;
                }
            }
            let _ = nio::write_all(&s, b"pong").await;
            let _ = nio::read_some(&s, &mut buf, 16).await;
        });
    }
    Ok(())
}
