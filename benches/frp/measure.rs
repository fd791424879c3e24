//! What the FRP bench measures on a [`Stack`]: a 1 GiB download (wall time, CPU seconds of
//! the measured processes from /proc/<pid>/stat), keep-alive small requests with the
//! built-in load generator (`lyre::bench`, CPU-us per request), and the RSS cost of 1,000
//! idle connections through the tunnel (/proc/<pid>/status). The backend is a unix-socket
//! HTTP server in the bench process (the ExApp behind frpc's `unix_domain_socket` plugin).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::stack::{Stack, APP_ID};
use crate::cpu_time::{clock_ticks, stat_ticks};

/// Upper bound for any single socket wait.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections opened for the memory measurement.
pub const IDLE_CONNS: usize = 1000;
/// Small-request load: connections and seconds.
const LOAD_CONNS: usize = 32;
const LOAD_SECS: u64 = 5;
/// Stack of each backend connection thread (1,000+ of them exist at once).
const BACKEND_STACK: usize = 128 * 1024;
const BLOCK: usize = 256 * 1024;

/// Starts the backend on `sock`: `/bytes/<n>` (Content-Length n), `/sink` (reads the
/// request's Content-Length body, answers 200 "ok"), `/upgrade` (101, one "ping" -> "pong",
/// then idle until EOF), anything else 200 "ok"; keep-alive.
pub fn start_backend(sock: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(sock);
    let l = UnixListener::bind(sock).map_err(|e| format!("bind {}: {e}", sock.display()))?;
    thread::spawn(move || {
        for c in l.incoming().flatten() {
            let _ = thread::Builder::new()
                .stack_size(BACKEND_STACK)
                .spawn(move || serve(c));
        }
    });
    Ok(())
}

fn serve(mut c: UnixStream) {
    let block = vec![0x5au8; BLOCK];
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match c.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or("/");
        let ok = if let Some(n) = path.rsplit("/bytes/").next().and_then(|n| n.parse().ok()) {
            send_bytes(&mut c, &block, n)
        } else if path.ends_with("/sink") {
            sink_body(&mut c, &mut buf, content_length(&head))
        } else if path.ends_with("/upgrade") {
            upgrade(&mut c);
            return;
        } else {
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_ok()
        };
        if !ok {
            return;
        }
    }
}

fn send_bytes(c: &mut UnixStream, block: &[u8], n: u64) -> bool {
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
    if c.write_all(head.as_bytes()).is_err() {
        return false;
    }
    let mut left = n;
    while left > 0 {
        let take = left.min(block.len() as u64) as usize;
        if c.write_all(&block[..take]).is_err() {
            return false;
        }
        left -= take as u64;
    }
    true
}

/// The Content-Length of a request head (0 when absent).
fn content_length(head: &str) -> u64 {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Read and drop a body of `n` bytes (some may already be in `buf`), then answer 200.
fn sink_body(c: &mut UnixStream, buf: &mut Vec<u8>, n: u64) -> bool {
    let early = (buf.len() as u64).min(n);
    buf.drain(..early as usize);
    let mut left = n - early;
    let mut chunk = vec![0u8; BLOCK];
    while left > 0 {
        let want = left.min(chunk.len() as u64) as usize;
        match c.read(&mut chunk[..want]) {
            Ok(0) | Err(_) => return false,
            Ok(k) => left -= k as u64,
        }
    }
    c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .is_ok()
}

fn upgrade(c: &mut UnixStream) {
    // HAProxy checks Sec-WebSocket-Accept (502 without it): RFC 6455's example pair.
    let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    if c.write_all(head).is_err() {
        return;
    }
    let mut ping = [0u8; 4];
    if c.read_exact(&mut ping).is_err() || c.write_all(b"pong").is_err() {
        return;
    }
    let mut sink = [0u8; 64];
    while matches!(c.read(&mut sink), Ok(n) if n > 0) {}
}

/// utime + stime ticks (fields 14, 15) of /proc/<pid>/stat, all threads.
pub fn cpu_ticks(pid: u32) -> Result<u64, String> {
    stat_ticks(&format!("/proc/{pid}/stat")).ok_or_else(|| format!("/proc/{pid}/stat unreadable"))
}

pub fn cpu_secs(pids: &[u32]) -> Result<f64, String> {
    let mut t = 0;
    for p in pids {
        t += cpu_ticks(*p)?;
    }
    Ok(t as f64 / clock_ticks())
}

pub fn rss_kib(pids: &[u32]) -> Result<u64, String> {
    let mut total = 0;
    for pid in pids {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
        total += s
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or("no VmRSS")?;
    }
    Ok(total)
}

/// One download: wall seconds, CPU seconds of the measured pids and of frpc, and per
/// thread name of the first measured pid (where Lyre spends it).
pub struct Download {
    pub secs: f64,
    pub cpu: f64,
    pub frpc_cpu: f64,
    /// This process: the load generator's client and the ExApp backend (same in both stacks).
    pub peers_cpu: f64,
    /// Share of the machine's CPU time (all cores, from /proc/stat) that was busy.
    pub box_busy: f64,
    pub threads: BTreeMap<String, f64>,
}

/// CPU seconds per thread name (`comm`) of `pid`, threads of the same name summed.
pub fn thread_cpu(pid: u32) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return m;
    };
    for ent in dir.flatten() {
        let comm = std::fs::read_to_string(ent.path().join("comm")).unwrap_or_default();
        let Some(ticks) = stat_ticks(&ent.path().join("stat").to_string_lossy()) else {
            continue;
        };
        *m.entry(comm.trim().to_string()).or_insert(0.0) += ticks as f64 / clock_ticks();
    }
    m
}

pub fn download(s: &Stack, total: u64) -> Result<Download, String> {
    accounted(s, || {
        let mut c = TcpStream::connect(s.front).map_err(|e| format!("connect: {e}"))?;
        c.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let req = format!(
            "GET /exapps/{APP_ID}/bytes/{total} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
        );
        c.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let (status, mut got) = read_head(&mut c)?;
        if status != 200 {
            return Err(format!("download answered {status}"));
        }
        let mut buf = vec![0u8; 1 << 20];
        while got < total {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got += n as u64,
                Err(e) => return Err(format!("download after {got} bytes: {e}")),
            }
        }
        if got != total {
            return Err(format!("download: {got} of {total} bytes"));
        }
        Ok(())
    })
}

/// Run one transfer, timed, with the CPU its stack (and frpc, and Lyre's threads) spent.
fn accounted(s: &Stack, transfer: impl FnOnce() -> Result<(), String>) -> Result<Download, String> {
    let cpu0 = cpu_secs(&s.measured)?;
    let frpc0 = cpu_secs(&[s.frpc_pid])?;
    let peers0 = cpu_secs(&[std::process::id()])?;
    let machine = crate::cpu_time::Window::start();
    let threads0 = thread_cpu(s.measured[0]);
    let start = Instant::now();
    transfer()?;
    let secs = start.elapsed().as_secs_f64();
    Ok(Download {
        secs,
        cpu: cpu_secs(&s.measured)? - cpu0,
        frpc_cpu: cpu_secs(&[s.frpc_pid])? - frpc0,
        peers_cpu: cpu_secs(&[std::process::id()])? - peers0,
        box_busy: machine.end().1,
        threads: thread_cpu(s.measured[0])
            .into_iter()
            .map(|(k, v)| {
                let d = v - threads0.get(&k).copied().unwrap_or(0.0);
                (k, d)
            })
            .collect(),
    })
}

/// One upload of `total` bytes (`POST .../sink`, Content-Length), measured as a download.
pub fn upload(s: &Stack, total: u64) -> Result<Download, String> {
    accounted(s, || {
        let mut c = TcpStream::connect(s.front).map_err(|e| format!("connect: {e}"))?;
        c.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        c.set_write_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let req = format!(
            "POST /exapps/{APP_ID}/sink HTTP/1.1\r\nHost: bench\r\nContent-Length: {total}\r\n\
             Connection: close\r\n\r\n"
        );
        c.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let block = vec![0xa5u8; BLOCK];
        let mut left = total;
        while left > 0 {
            let n = left.min(BLOCK as u64) as usize;
            c.write_all(&block[..n])
                .map_err(|e| format!("upload after {} bytes: {e}", total - left))?;
            left -= n as u64;
        }
        match read_head(&mut c)? {
            (200, _) => Ok(()),
            (status, _) => Err(format!("upload answered {status}")),
        }
    })
}

/// Reads a response head; returns the status and the body bytes that came with it.
fn read_head(c: &mut TcpStream) -> Result<(u16, u64), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = c.read(&mut chunk).map_err(|e| format!("head: {e}"))?;
        if n == 0 {
            return Err("EOF in response head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let line = String::from_utf8_lossy(&buf[..i]).into_owned();
            let status = line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad status line {line:?}"))?;
            return Ok((status, (buf.len() - i - 4) as u64));
        }
        if buf.len() > 65536 {
            return Err("response head over 64 KiB".into());
        }
    }
}

/// Keep-alive small requests: (requests/s, CPU-us per request of the measured pids).
pub fn small_requests(s: &Stack) -> Result<(f64, f64), String> {
    let args = lyre::bench::BenchArgs {
        url: format!("http://{}/exapps/{APP_ID}/small", s.front),
        connections: LOAD_CONNS,
        workers: 1,
        duration_secs: LOAD_SECS,
        timeout_ms: 5000,
        method: "GET".into(),
        headers: Vec::new(),
        body: None,
    };
    let cpu0 = cpu_secs(&s.measured)?;
    let report = lyre::bench::run_report(&args)?;
    let cpu = cpu_secs(&s.measured)? - cpu0;
    let ok = report.tally.statuses.get(200).copied().unwrap_or(0);
    if ok == 0 || ok < report.requests() {
        return Err(format!(
            "{} of {} requests answered 200",
            ok,
            report.requests()
        ));
    }
    Ok((
        report.requests_per_sec(),
        cpu * 1e6 / report.requests() as f64,
    ))
}

/// How idle connections are opened.
#[derive(Clone, Copy, Debug)]
pub enum Idle {
    /// Straight to the 127.0.0.1:<remotePort> listener: one request/response, then idle.
    TunnelPort,
    /// Through the front (`/exapps/<app>/upgrade`): 101, one ping/pong, then idle.
    Upgrade,
}

/// RSS delta (KiB) per idle connection of the measured pids.
/// RSS delta per connection over [`IDLE_CONNS`] idle connections; they are left in `held`
/// (the caller keeps them open while measuring other phases).
pub fn idle_kib_per_conn(s: &Stack, how: Idle, held: &mut Vec<TcpStream>) -> Result<f64, String> {
    for _ in 0..8 {
        held.push(open_idle(s, how)?);
    }
    thread::sleep(Duration::from_millis(300));
    let before = rss_kib(&s.measured)?;
    for _ in 0..IDLE_CONNS {
        held.push(open_idle(s, how)?);
    }
    thread::sleep(Duration::from_millis(500));
    let after = rss_kib(&s.measured)?;
    Ok((after as f64 - before as f64) / IDLE_CONNS as f64)
}

fn open_idle(s: &Stack, how: Idle) -> Result<TcpStream, String> {
    let addr = match how {
        Idle::TunnelPort => SocketAddr::from(([127, 0, 0, 1], s.remote_port)),
        Idle::Upgrade => s.front,
    };
    let mut c = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    c.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    match how {
        Idle::TunnelPort => {
            c.write_all(b"GET /small HTTP/1.1\r\nHost: bench\r\n\r\n")
                .map_err(|e| e.to_string())?;
            let (status, extra) = read_head(&mut c)?;
            let mut rest = vec![0u8; 2 - extra.min(2) as usize];
            c.read_exact(&mut rest).map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("tunnel port answered {status}"));
            }
        }
        Idle::Upgrade => {
            let req = format!(
                "GET /exapps/{APP_ID}/upgrade HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            );
            c.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
            let (status, extra) = read_head(&mut c)?;
            if status != 101 || extra != 0 {
                return Err(format!("upgrade answered {status} (+{extra} bytes)"));
            }
            c.write_all(b"ping").map_err(|e| e.to_string())?;
            let mut pong = [0u8; 4];
            c.read_exact(&mut pong).map_err(|e| format!("pong: {e}"))?;
        }
    }
    Ok(c)
}
