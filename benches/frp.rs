//! `cargo bench --bench frp`: the FRP path of the whole appliance against HaRP's, in one
//! run, on loopback.
//!
//! Lyre: client -> `lyre serve` (decision + FRP server) -> frpc 0.65 -> backend.
//! HaRP's way: client -> HAProxy -> frps 0.65's 127.0.0.1:<remotePort> -> frpc 0.65 ->
//! backend (HaRP's Python SPOE agent is left out, which favours the baseline).
//! Same frpc config, same unix-socket backend, same TLS setting and certificates.
//!
//! Reported per TLS setting: throughput of a 1 GiB download (median of [`RUNS`]), CPU
//! seconds per GiB (Lyre alone vs HAProxy + frps together; frpc shown apart), the same for
//! a 1 GiB upload (informational: the targets are for downloads), CPU-us per
//! small keep-alive request under `lyre bench` load, the RSS delta per idle connection
//! through the tunnel (1,000 connections), and 64 MiB downloads with frpc behind a 100 ms
//! round trip (`wan`: shows the yamux receive window each server grants). Ratios are
//! printed next to the targets.
//! Every wait is bounded; every process is killed when its stack drops.

#[path = "common/cpu_time.rs"]
mod cpu_time;
#[path = "frp/measure.rs"]
mod measure;
#[path = "frp/stack.rs"]
mod stack;

use std::path::PathBuf;

use measure::{Download, Idle};
use stack::Stack;

/// Bytes per download.
const TOTAL_BYTES: u64 = 1 << 30;
/// Downloads per stack and TLS setting; the median is reported.
const RUNS: usize = 3;
/// `LYRE_WORKERS` and HAProxy's `nbthread`.
pub const WORKERS: usize = 2;

const TARGET_THROUGHPUT_RATIO: f64 = 2.0;
const TARGET_CPU_RATIO: f64 = 1.0 / 3.0;
const TARGET_IDLE_KIB: f64 = 16.0;

/// A peer binary under `.peers/` (tests/peers/install.sh).
pub fn peer(rel: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(".peers")
        .join(rel);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} missing: run `bash tests/peers/install.sh`",
            p.display()
        ))
    }
}

fn main() {
    raise_nofile_limit();
    println!(
        "frp bench: {} MiB per download, median of {RUNS}; {WORKERS} Lyre workers / HAProxy threads",
        TOTAL_BYTES >> 20
    );
    println!(
        "targets: throughput >= {TARGET_THROUGHPUT_RATIO}x frps, CPU/GiB <= {TARGET_CPU_RATIO:.2}x \
         (HAProxy+frps), idle tunnel stream <= {TARGET_IDLE_KIB} KiB in Lyre"
    );
    // FRP_BENCH_TLS=on|off measures one TLS setting (while tuning).
    let tls_only = std::env::var("FRP_BENCH_TLS").unwrap_or_default();
    for tls in [true, false] {
        if !tls_only.is_empty() && tls_only != on_off(tls) {
            continue;
        }
        if let Err(e) = compare(tls) {
            println!("TLS {}: failed: {e}", on_off(tls));
        }
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// One TLS setting: both stacks up at once (the idle one costs nothing), measured in turns.
fn compare(tls: bool) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("lyre-frp-bench-{}-{tls}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (ldir, hdir, certs) = (dir.join("lyre"), dir.join("harp"), dir.join("certs"));
    for d in [&ldir, &hdir, &certs] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    // The PKI Lyre would generate; frps gets the same files.
    lyre::tls::ensure_frp_pki(&certs, 30).map_err(|e| e.to_string())?;
    let sock = dir.join("backend.sock");
    measure::start_backend(&sock)?;
    let result = (|| {
        let lyre = stack::lyre(&ldir, &certs, tls, &sock, None)?;
        let harp = stack::harp(&hdir, &certs, tls, &sock, (lyre.remote_port, None))?;
        println!("\n== TLS {} ==", on_off(tls));
        // FRP_BENCH_ONLY=throughput|upload|small|idle|wan runs one part (while tuning).
        let only = std::env::var("FRP_BENCH_ONLY").unwrap_or_default();
        let run = |part: &str| only.is_empty() || only == part;
        if run("throughput") {
            throughput(&lyre, &harp)?;
        }
        if run("upload") {
            uploads(&lyre, &harp)?;
        }
        if run("small") {
            small(&lyre, &harp);
        }
        if run("idle") {
            idle(&lyre, &harp);
        }
        drop((lyre, harp));
        if run("wan") {
            let (ldir, hdir) = (dir.join("lyre-wan"), dir.join("harp-wan"));
            for d in [&ldir, &hdir] {
                std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
            }
            let wan = Some(WAN_ONE_WAY);
            let lyre = stack::lyre(&ldir, &certs, tls, &sock, wan)?;
            let harp = stack::harp(&hdir, &certs, tls, &sock, (lyre.remote_port, wan))?;
            long_link(&lyre, &harp)?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One direction of bulk transfer: its measurement and how its rows are labelled.
struct Direction {
    /// "download" / "upload", for messages.
    what: &'static str,
    /// Printed between the stack's label and the numbers.
    tag: &'static str,
    run: fn(&Stack, u64) -> Result<Download, String>,
}

/// One stack's medians over its transfers.
#[derive(Clone, Copy, Default)]
struct Medians {
    gbps: f64,
    /// The proxy under test (Lyre, or HAProxy + frps), CPU-s/GiB.
    cpu: f64,
    /// frpc alone, CPU-s/GiB.
    frpc: f64,
    /// frpc, the backend and the client together (the same programs in both stacks),
    /// CPU-s/GiB.
    peers: f64,
}

/// [`RUNS`] transfers of [`TOTAL_BYTES`] through each stack, alternating; prints each
/// stack's medians (Lyre's per thread too) and returns them.
fn transfers(lyre: &Stack, harp: &Stack, dir: &Direction) -> Result<[Medians; 2], String> {
    let mut runs: [Vec<Download>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..RUNS {
        for (i, s) in [lyre, harp].into_iter().enumerate() {
            match (dir.run)(s, TOTAL_BYTES) {
                Ok(d) => runs[i].push(d),
                Err(e) => println!("  {} {} failed: {e}", s.label, dir.what),
            }
        }
    }
    let gib = TOTAL_BYTES as f64 / (1u64 << 30) as f64;
    let mut rows = [Medians::default(); 2];
    for (i, (s, r)) in [lyre, harp].iter().zip(&runs).enumerate() {
        if r.is_empty() {
            return Err(format!("{}: no successful {}", s.label, dir.what));
        }
        let gbps = median(
            r.iter()
                .map(|d| TOTAL_BYTES as f64 * 8.0 / d.secs / 1e9)
                .collect(),
        );
        let cpu = median(r.iter().map(|d| d.cpu / gib).collect());
        let frpc = median(r.iter().map(|d| d.frpc_cpu / gib).collect());
        let peers = median(r.iter().map(|d| (d.frpc_cpu + d.peers_cpu) / gib).collect());
        let busy = median(r.iter().map(|d| d.box_busy * 100.0).collect());
        println!(
            "{:<14} {}{gbps:>6.2} Gbit/s  {cpu:.3} CPU-s/GiB  (frpc {frpc:.3}, frpc+backend+client \
             {peers:.3} CPU-s/GiB; machine {busy:.0}% busy)",
            s.label, dir.tag
        );
        if s.label == "lyre" {
            let names: Vec<&String> = r[0].threads.keys().collect();
            let parts: Vec<String> = names
                .iter()
                .filter_map(|n| {
                    let v = median(
                        r.iter()
                            .map(|d| d.threads.get(*n).copied().unwrap_or(0.0))
                            .collect(),
                    );
                    (v > 0.0).then(|| format!("{n} {:.3}", v / gib))
                })
                .collect();
            println!("{:<14} per thread CPU-s/GiB: {}", "", parts.join(", "));
        }
        rows[i] = Medians {
            gbps,
            cpu,
            frpc,
            peers,
        };
    }
    Ok(rows)
}

fn throughput(lyre: &Stack, harp: &Stack) -> Result<(), String> {
    let download = Direction {
        what: "download",
        tag: "",
        run: measure::download,
    };
    let rows = transfers(lyre, harp, &download)?;
    let (tr, cr) = (rows[0].gbps / rows[1].gbps, rows[0].cpu / rows[1].cpu);
    println!(
        "throughput ratio lyre/frps {tr:.2}x (target >= {TARGET_THROUGHPUT_RATIO}x: {})",
        mark(tr >= TARGET_THROUGHPUT_RATIO)
    );
    println!(
        "CPU/GiB ratio lyre/(haproxy+frps) {cr:.2} (target <= {TARGET_CPU_RATIO:.2}: {})",
        mark(cr <= TARGET_CPU_RATIO)
    );
    print_ceiling(&rows);
    Ok(())
}

/// What the throughput target asks of the machine: at [`TARGET_THROUGHPUT_RATIO`] x frps's
/// throughput, the programs that are the same in both stacks (frpc, backend, client) would
/// need this many CPUs by themselves, at the CPU per GiB they spent behind Lyre in this run.
fn print_ceiling(rows: &[Medians; 2]) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let target_gib_s = TARGET_THROUGHPUT_RATIO * rows[1].gbps * 1e9 / 8.0 / (1u64 << 30) as f64;
    let need = |cpu_s_per_gib: f64| cpu_s_per_gib * target_gib_s;
    println!(
        "at {TARGET_THROUGHPUT_RATIO}x frps ({:.2} Gbit/s): frpc+backend+client alone would need \
         {:.2} of the {cpus:.0} CPUs (frpc {:.2}), Lyre {:.2} more",
        TARGET_THROUGHPUT_RATIO * rows[1].gbps,
        need(rows[0].peers),
        need(rows[0].frpc),
        need(rows[0].cpu)
    );
}

/// 1 GiB uploads through each stack (user -> frpc; no target, the targets are
/// downloads): throughput and CPU per GiB, medians of [`RUNS`].
fn uploads(lyre: &Stack, harp: &Stack) -> Result<(), String> {
    let upload = Direction {
        what: "upload",
        tag: "upload ",
        run: measure::upload,
    };
    let rows = transfers(lyre, harp, &upload)?;
    println!(
        "upload ratios lyre/frps: throughput {:.2}x, CPU/GiB {:.2}",
        rows[0].gbps / rows[1].gbps,
        rows[0].cpu / rows[1].cpu
    );
    Ok(())
}

/// One-way delay between frpc and the server in the `wan` part (100 ms round trip).
const WAN_ONE_WAY: std::time::Duration = std::time::Duration::from_millis(50);
/// Bytes per download over the long link.
const WAN_BYTES: u64 = 64 << 20;

/// Downloads with frpc behind a 100 ms round trip (a delaying relay on loopback): a yamux
/// stream moves at most one receive window per round trip, so this row shows the window
/// the server grants (frps: 6 MiB), not CPU. Median of [`RUNS`], MB/s.
fn long_link(lyre: &Stack, harp: &Stack) -> Result<(), String> {
    let mut mbps = Vec::new();
    for s in [lyre, harp] {
        let mut rates = Vec::new();
        for _ in 0..RUNS {
            let d = measure::download(s, WAN_BYTES)?;
            rates.push(WAN_BYTES as f64 / d.secs / 1e6);
        }
        let m = median(rates);
        println!(
            "{:<14} {} MiB over a {} ms round trip to frpc: {m:.1} MB/s",
            s.label,
            WAN_BYTES >> 20,
            2 * WAN_ONE_WAY.as_millis()
        );
        mbps.push(m);
    }
    println!("long-link ratio lyre/frps {:.2}x", mbps[0] / mbps[1]);
    Ok(())
}

fn mark(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISS"
    }
}

fn small(lyre: &Stack, harp: &Stack) {
    let mut us = Vec::new();
    for s in [lyre, harp] {
        match measure::small_requests(s) {
            Ok((rps, cpu_us)) => {
                println!(
                    "{:<14} small requests: {rps:>8.0} req/s  {cpu_us:.1} CPU-us/request",
                    s.label
                );
                us.push(cpu_us);
            }
            Err(e) => println!("{:<14} small requests failed: {e}", s.label),
        }
    }
    if let [l, h] = us[..] {
        println!("CPU-us/request ratio lyre/(haproxy+frps) {:.2}", l / h);
    }
}

fn idle(lyre: &Stack, harp: &Stack) {
    // Each phase's connections stay open until every phase is measured: memory freed by an
    // earlier phase would otherwise be reused (or purged) by the next one and make its RSS
    // delta too small, even negative.
    let mut held = Vec::new();
    for how in [Idle::TunnelPort, Idle::Upgrade] {
        for s in [lyre, harp] {
            match measure::idle_kib_per_conn(s, how, &mut held) {
                Ok(kib) => {
                    let t = if s.label == "lyre" {
                        format!(
                            " (target <= {TARGET_IDLE_KIB}: {})",
                            mark(kib <= TARGET_IDLE_KIB)
                        )
                    } else {
                        String::new()
                    };
                    println!(
                        "{:<14} idle {how:?}: {kib:.2} KiB RSS per connection{t}",
                        s.label
                    );
                }
                Err(e) => println!(
                    "{:<14} idle {how:?} failed: {e}\n--- {} log tail ---\n{}",
                    s.label,
                    s.label,
                    s.log_tail()
                ),
            }
        }
    }
}

/// 4 x 1,000 idle connections need ~12,000 descriptors in this process (clients + backend).
fn raise_nofile_limit() {
    // SAFETY: getrlimit/setrlimit on a stack value.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
