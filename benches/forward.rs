//! `cargo bench --bench forward`: forwarding throughput and CPU cost of `net::pump` against
//! a same-run direct loopback baseline, and the memory cost of idle tunnels.
//!
//! Stage 1 (in-process): the forwarder is `net::pump` on its own thread with its own monoio
//! runtime ({io_uring, epoll} x {splice, copy}). Stage 2 ([`stage2`]): the real `lyre serve`
//! binary as a subprocess, measured through /proc/<pid>/stat and /proc/<pid>/status.
//! Loopback only; every transfer and wait is bounded in time, so the bench ends by itself.

#[path = "common/cpu_time.rs"]
mod cpu_time;
#[path = "forward/stage2.rs"]
mod stage2;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use lyre::config::PumpChoice;
use lyre::net::{io as nio, pump};

/// Bytes per download.
pub const TOTAL_BYTES: u64 = 1 << 30;
/// Runs per configuration (LYRE_BENCH_RUNS overrides, 1..=15); the median is reported.
const DEFAULT_RUNS: usize = 3;
/// Upper bound for any single socket wait in the bench.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);
/// Idle tunnels opened for the memory measurement.
pub const IDLE_TUNNELS: usize = 1000;
const CHUNK_BYTES: usize = 256 * 1024;

pub const TARGET_RATIO: f64 = 0.85;
pub const TARGET_CPU_S_PER_GIB: f64 = 0.25;
pub const TARGET_KIB_PER_TUNNEL: f64 = 16.0;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Driver {
    Uring,
    Epoll,
}

/// One download: wall seconds at the client, forwarder CPU seconds (None = direct), and
/// the whole machine's busy CPU seconds during the transfer (source, forwarder, client and
/// the kernel work each one's sockets cause, wherever it was accounted).
#[derive(Clone, Copy)]
pub struct Sample {
    pub secs: f64,
    pub cpu_secs: Option<f64>,
    pub machine_secs: f64,
}

fn main() {
    let source = spawn_source(TOTAL_BYTES, None);
    let runs = std::env::var("LYRE_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
        .map_or(DEFAULT_RUNS, |r| r.clamp(1, 15));
    println!(
        "forward bench: {} MiB per download; each forwarded run is paired with a direct run \
         just before it (ratio = paired), median of {runs}",
        TOTAL_BYTES >> 20
    );
    println!(
        "targets: ratio >= {TARGET_RATIO}, splice <= {TARGET_CPU_S_PER_GIB} CPU-s/GiB, \
         idle tunnel <= {TARGET_KIB_PER_TUNNEL} KiB"
    );
    let mut rows: Vec<Row> = Vec::new();
    for driver in [Driver::Uring, Driver::Epoll] {
        for choice in [PumpChoice::Splice, PumpChoice::Copy] {
            let label = format!("pump {choice:?} / {driver:?} (in-process)");
            rows.push((
                label,
                Box::new(move || forwarded(source, driver, choice, None)),
            ));
        }
    }
    for kib in [64usize, 128, 512, 1024] {
        let label = format!("copy {kib} KiB / Epoll (sweep)");
        let size = Some(kib << 10);
        rows.push((
            label,
            Box::new(move || forwarded(source, Driver::Epoll, PumpChoice::Copy, size)),
        ));
    }
    rows.extend(stage2::rows());
    // LYRE_BENCH_ONLY=<substring>: run only the matching rows (and skip the tunnel parts
    // unless "tunnel" matches), for quick profiling.
    let only = std::env::var("LYRE_BENCH_ONLY").ok();
    if let Some(only) = &only {
        rows.retain(|(label, _)| label.contains(only.as_str()));
    }
    paired_table(source, rows, runs);
    if only.as_deref().is_some_and(|o| !"idle tunnels".contains(o)) {
        return;
    }
    for driver in [Driver::Uring, Driver::Epoll] {
        match idle_tunnels_in_process(driver) {
            Ok((kib, idle)) => println!(
                "idle tunnels, in-process {driver:?}: {kib:.2} KiB each (target <= \
                 {TARGET_KIB_PER_TUNNEL}); {idle}"
            ),
            Err(e) => println!("idle tunnels, in-process {driver:?}: failed: {e}"),
        }
    }
    stage2::idle_tunnels();
}

type Row = (String, Box<dyn FnMut() -> Result<Sample, String>>);

/// Run every row `runs` times, round-robin, each run right after a direct download, so a
/// noisy neighbour skews a row and its baseline alike; print medians.
fn paired_table(source: SocketAddr, mut rows: Vec<Row>, runs: usize) {
    if rows.is_empty() {
        return; // LYRE_BENCH_ONLY matched no row (e.g. "idle tunnels"): no baseline to print
    }
    let mut results: Vec<Vec<(Sample, Sample)>> = vec![Vec::new(); rows.len()];
    for _ in 0..runs {
        for (i, (label, run)) in rows.iter_mut().enumerate() {
            match download(source).and_then(|d| run().map(|s| (d, s))) {
                Ok(pair) => results[i].push(pair),
                Err(e) => println!("  {label}: run failed: {e}"),
            }
        }
    }
    let gib = TOTAL_BYTES as f64 / (1u64 << 30) as f64;
    let direct = || results.iter().flatten().map(|(d, _)| *d);
    println!(
        "{:<36} {:>7.2} Gbit/s  machine {:.3} CPU-s/GiB",
        "direct loopback (median)",
        median(direct().map(|d| gbit(d.secs)).collect()),
        median(direct().map(|d| d.machine_secs / gib).collect())
    );
    for ((label, _), pairs) in rows.iter().zip(&results) {
        if pairs.is_empty() {
            println!("{label:<36} no successful run");
            continue;
        }
        let gbps = median(pairs.iter().map(|(_, s)| gbit(s.secs)).collect());
        let ratio = median(pairs.iter().map(|(d, s)| d.secs / s.secs).collect());
        let cpu = median(
            pairs
                .iter()
                .map(|(_, s)| s.cpu_secs.unwrap_or(f64::NAN))
                .collect(),
        ) / gib;
        let machine = median(pairs.iter().map(|(_, s)| s.machine_secs).collect()) / gib;
        let mark = if ratio >= TARGET_RATIO { "ok" } else { "MISS" };
        println!(
            "{label:<36} {gbps:>7.2} Gbit/s  ratio {ratio:.2} ({mark})  {cpu:.3} CPU-s/GiB  \
             (machine {machine:.3})"
        );
    }
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub fn gbit(secs: f64) -> f64 {
    TOTAL_BYTES as f64 * 8.0 / secs / 1e9
}

/// A std server that writes `bytes` to each accepted connection, after `head` if given
/// (stage 2 sends an HTTP response head first and ignores the request bytes).
pub fn spawn_source(bytes: u64, head: Option<Vec<u8>>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind source");
    let addr = l.local_addr().expect("source addr");
    thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let head = head.clone();
            let _ = thread::Builder::new()
                .name("source".into())
                .spawn(move || serve_source(conn, bytes, head));
        }
    });
    addr
}

fn serve_source(mut c: TcpStream, bytes: u64, head: Option<Vec<u8>>) {
    let _ = c.set_write_timeout(Some(IO_TIMEOUT));
    let _ = c.set_read_timeout(Some(IO_TIMEOUT));
    if let Some(h) = head {
        // Wait for the request head (any bytes ending in CRLFCRLF) before answering.
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        while !req.ends_with(b"\r\n\r\n") {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        if c.write_all(&h).is_err() {
            return;
        }
    }
    let chunk = vec![0x5au8; CHUNK_BYTES];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK_BYTES as u64) as usize;
        if c.write_all(&chunk[..n]).is_err() {
            return;
        }
        left -= n as u64;
    }
}

/// Read from `addr` to EOF; checks the byte count.
pub fn download(addr: SocketAddr) -> Result<Sample, String> {
    let machine = cpu_time::Window::start();
    let start = Instant::now();
    let mut c = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    c.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let got = drain(&mut c)?;
    if got != TOTAL_BYTES {
        return Err(format!("downloaded {got} bytes, expected {TOTAL_BYTES}"));
    }
    Ok(Sample {
        secs: start.elapsed().as_secs_f64(),
        cpu_secs: None,
        machine_secs: machine.end().0,
    })
}

/// Read to EOF, returning the count.
pub fn drain(c: &mut TcpStream) -> Result<u64, String> {
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut got = 0u64;
    loop {
        match c.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got += n as u64,
            Err(e) => return Err(format!("read after {got} bytes: {e}")),
        }
    }
}

/// Download through an in-process forwarder thread running `net::pump`.
fn forwarded(
    source: SocketAddr,
    driver: Driver,
    choice: PumpChoice,
    size: Option<usize>,
) -> Result<Sample, String> {
    let (tx, rx) = mpsc::channel();
    let fwd =
        thread::spawn(move || on_driver(driver, move || forward_one(source, choice, size, tx)));
    let addr = rx
        .recv_timeout(IO_TIMEOUT)
        .map_err(|_| "forwarder did not start".to_string())?;
    let sample = download(addr);
    let cpu = fwd.join().map_err(|_| "forwarder panicked".to_string())??;
    sample.map(|s| Sample {
        cpu_secs: Some(cpu),
        ..s
    })
}

/// Accept one client, connect upstream, `forward_to_eof`; returns the forwarder's CPU
/// seconds (its thread plus any io-wq workers that appeared: there should be none).
async fn forward_one(
    source: SocketAddr,
    choice: PumpChoice,
    size: Option<usize>,
    tx: mpsc::Sender<SocketAddr>,
) -> Result<f64, String> {
    let e = |what: &'static str| move |err: std::io::Error| format!("{what}: {err}");
    let l = monoio::net::TcpListener::bind("127.0.0.1:0").map_err(e("bind"))?;
    tx.send(l.local_addr().map_err(e("addr"))?)
        .map_err(|_| "bench gone")?;
    let (client, _) = l.accept().await.map_err(e("accept"))?;
    let up = monoio::net::TcpStream::connect(source)
        .await
        .map_err(e("connect"))?;
    nio::set_nonblocking(&client).map_err(e("nonblock"))?;
    nio::set_nonblocking(&up).map_err(e("nonblock"))?;
    let mut p = match size {
        Some(b) => pump::Pump::with_size(choice, b),
        None => pump::Pump::new(choice),
    }
    .map_err(e("pump"))?;
    let before = cpu::forwarder_ticks();
    let moved = p
        .forward_to_eof(&up, &client, IO_TIMEOUT)
        .await
        .map_err(e("forward"))?;
    let after = cpu::forwarder_ticks();
    if moved != TOTAL_BYTES {
        return Err(format!("forwarded {moved} bytes"));
    }
    Ok(cpu::delta_secs(&before, &after))
}

/// Run a future on a fresh monoio runtime of the given driver (timer enabled).
pub fn on_driver<F, Fut, T>(driver: Driver, f: F) -> Result<T, String>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    match driver {
        Driver::Uring => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .map_err(|e| format!("io_uring runtime: {e}"))?
            .block_on(f()),
        Driver::Epoll => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .map_err(|e| format!("epoll runtime: {e}"))?
            .block_on(f()),
    }
}

/// 1,000 tunnels through `pump::tunnel` on one runtime, each carrying one ping/pong, then
/// idle; RSS delta of this process / 1000 (includes the upstream sockets' user-space
/// state, so it is an upper bound for the tunnel itself).
fn idle_tunnels_in_process(driver: Driver) -> Result<(f64, cpu::IdleCost), String> {
    let (tx, rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let fwd =
        thread::spawn(move || on_driver(driver, move || tunnels::serve(IDLE_TUNNELS, tx, done_rx)));
    let (addr, before_kib) = rx
        .recv_timeout(IO_TIMEOUT)
        .map_err(|_| "no tunnel server")?;
    let mut clients = Vec::with_capacity(IDLE_TUNNELS);
    for _ in 0..IDLE_TUNNELS {
        let mut c = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        c.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        c.write_all(b"ping").map_err(|e| format!("ping: {e}"))?;
        let mut pong = [0u8; 4];
        c.read_exact(&mut pong).map_err(|e| format!("pong: {e}"))?;
        clients.push(c);
    }
    thread::sleep(Duration::from_millis(200));
    let after_kib = cpu::vm_rss_kib(std::process::id())?;
    let idle = cpu::idle_cost(std::process::id());
    drop(done_tx);
    drop(clients);
    fwd.join().map_err(|_| "tunnel server panicked")??;
    Ok((
        (after_kib as f64 - before_kib as f64) / IDLE_TUNNELS as f64,
        idle?,
    ))
}

mod tunnels {
    use super::*;
    use monoio::net::{TcpListener as MListener, TcpStream as MStream};
    use std::rc::Rc;

    /// Accept `n` clients; for each, connect to an in-runtime echo-once upstream and run a
    /// tunnel. Reports (addr, RSS before) and then waits until `done` is dropped.
    pub async fn serve(
        n: usize,
        tx: mpsc::Sender<(SocketAddr, u64)>,
        done: mpsc::Receiver<()>,
    ) -> Result<(), String> {
        let e = |err: std::io::Error| err.to_string();
        let front = MListener::bind("127.0.0.1:0").map_err(e)?;
        let back = Rc::new(MListener::bind("127.0.0.1:0").map_err(e)?);
        let back_addr = back.local_addr().map_err(e)?;
        let before = cpu::vm_rss_kib(std::process::id())?;
        tx.send((front.local_addr().map_err(e)?, before))
            .map_err(|_| "bench gone")?;
        for _ in 0..n {
            let (a, _) = front.accept().await.map_err(e)?;
            let b = MStream::connect(back_addr).await.map_err(e)?;
            let (up, _) = back.accept().await.map_err(e)?;
            monoio::spawn(upstream_pong(up));
            monoio::spawn(async move {
                let _ = nio::set_nonblocking(&a).and(nio::set_nonblocking(&b));
                let _ = pump::tunnel(&a, &b, Duration::from_secs(60), IO_TIMEOUT).await;
            });
        }
        // Stay alive (and keep the tunnels) until the bench has measured.
        while matches!(done.try_recv(), Err(mpsc::TryRecvError::Empty)) {
            monoio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Answer "ping" with "pong", then hold the socket idle until the peer closes.
    async fn upstream_pong(up: MStream) {
        let _ = nio::set_nonblocking(&up);
        let mut buf = Vec::with_capacity(16);
        while buf.len() < 4 {
            if !matches!(nio::read_some(&up, &mut buf, 16).await, Ok(n) if n > 0) {
                return;
            }
        }
        let _ = nio::write_all(&up, b"pong").await;
        let _ = nio::read_some(&up, &mut buf, 16).await;
    }
}

pub mod cpu {
    use std::collections::HashMap;

    /// utime+stime ticks of the calling thread and of io-wq workers ("iou-wrk*") of this
    /// process, keyed by tid.
    pub fn forwarder_ticks() -> HashMap<String, u64> {
        let mut m = HashMap::new();
        if let Some(t) = stat_ticks("/proc/thread-self/stat") {
            m.insert("self".to_string(), t);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
            for ent in dir.flatten() {
                let p = ent.path();
                let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
                if comm.starts_with("iou-wrk") {
                    if let Some(t) = stat_ticks(&p.join("stat").to_string_lossy()) {
                        m.insert(ent.file_name().to_string_lossy().into_owned(), t);
                    }
                }
            }
        }
        m
    }

    pub fn delta_secs(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> f64 {
        let ticks: u64 = after
            .iter()
            .map(|(k, v)| v.saturating_sub(*before.get(k).unwrap_or(&0)))
            .sum();
        ticks as f64 / clock_ticks()
    }

    pub use crate::cpu_time::{clock_ticks, stat_ticks};

    /// What 1,000 idle tunnels cost while idle: CPU over one second and io_uring worker
    /// threads (there must be none: an idle tunnel holds no kernel thread).
    pub struct IdleCost {
        pub cpu_ms_per_s: f64,
        pub iou_workers: usize,
    }

    impl std::fmt::Display for IdleCost {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "while idle: {:.1} ms CPU/s, {} io-wq threads",
                self.cpu_ms_per_s, self.iou_workers
            )
        }
    }

    pub fn idle_cost(pid: u32) -> Result<IdleCost, String> {
        let stat = format!("/proc/{pid}/stat");
        let before = stat_ticks(&stat).ok_or("no stat")?;
        let t0 = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_secs(1));
        let after = stat_ticks(&stat).ok_or("no stat")?;
        let ms = (after - before) as f64 / clock_ticks() * 1000.0 / t0.elapsed().as_secs_f64();
        let iou_workers = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map_err(|e| e.to_string())?
            .flatten()
            .filter(|t| {
                let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                comm.starts_with("iou-wrk")
            })
            .count();
        Ok(IdleCost {
            cpu_ms_per_s: ms,
            iou_workers,
        })
    }

    pub fn vm_rss_kib(pid: u32) -> Result<u64, String> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| "no VmRSS".to_string())
    }
}
