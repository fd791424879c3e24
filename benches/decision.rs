//! `cargo bench --bench decision`: the cost of HaRP's decision on the hot path. A USER
//! route with a cached Nextcloud session (the same `oc_sessionPassphrase` on every request
//! of a round, HP_SESSION_LIFETIME=10) through the real `lyre serve` binary to a fast
//! upstream, against the same upstream direct, nginx, and a static route of the same Lyre,
//! in one run. Each round runs every row once, alternating, so a noisy neighbour skews all
//! rows alike; each row reports its median round (BENCH_ROUNDS, default 3).
//!
//! Peers, all on loopback: the upstream is `lyre::demo`'s embedded monoio server on a bench
//! thread (`GET /hello`; Rust, so it is not the bottleneck), Nextcloud is
//! tests/peers/fake_nc.py (called once per cookie per window, so Python does not matter),
//! load comes from the built-in generator (`lyre::bench`, 64 keep-alive connections).
//! Reports requests/s both ways, their ratio, Lyre's CPU time per request (utime+stime of
//! the whole lyre process from /proc/<pid>/stat over the measured run, divided by the
//! requests) against the target, and the number of user-info calls (must be one per
//! round: each round uses its own cookie). Every phase is bounded in time; the bench exits
//! non-zero on a correctness failure (non-200 answers, a wrong user-info count), not on a
//! missed performance target.
//!
//! `BENCH_PIN=1`: the proxy under test (Lyre with one worker, and the nginx reference) runs
//! on the last CPU, this process (load generator, upstream) and fake_nc.py on the others,
//! so the proxy's CPU per request is measured without sharing its core. The default run
//! does not pin: everything competes for the same cores, as on a small appliance.

#[path = "common/cpu_time.rs"]
mod cpu_time;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use cpu_time::{clock_ticks, stat_ticks};
use lyre::bench::{run_report, BenchArgs, Report};
use serde_json::{json, Value};

const LYRE: &str = env!("CARGO_BIN_EXE_lyre");
const KEY: &str = "bench-shared-key";
const APP: &str = "benchapp";
/// Pass cookie of round `i` (each round's decision run uses its own).
fn cookie(round: usize) -> String {
    format!("pp-bench-{round}")
}
/// Rounds (BENCH_ROUNDS overrides, 1..=9); every row is the median of its rounds.
const DEFAULT_ROUNDS: usize = 3;
/// Concurrent keep-alive connections of the load generator.
const CONNECTIONS: usize = 64;
/// Load generator threads.
const LOAD_WORKERS: usize = 1;
/// Seconds of warm-up and of each measured run. Warm-up + the decision run stay inside
/// one 10 s session window, so exactly one user-info call is expected.
const WARMUP_SECS: u64 = 1;
const RUN_SECS: u64 = 4;
/// Lyre's session lifetime for the run (HP_SESSION_LIFETIME, seconds).
const SESSION_LIFETIME_SECS: u64 = 10;
const TARGET_CPU_US_PER_REQUEST: f64 = 25.0;
/// Startup bound for Lyre and fake_nc.py.
const START_TIMEOUT: Duration = Duration::from_secs(15);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A child process killed (by pid) on drop.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("decision bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, String> {
    let pin = std::env::var("BENCH_PIN").is_ok_and(|v| v == "1");
    if pin {
        pin_self_away_from_proxy_cpu()?;
    }
    let rounds = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
        .map_or(DEFAULT_ROUNDS, |r| r.clamp(1, 9));
    let upstream = lyre::demo::start_upstream().map_err(|e| format!("upstream: {e}"))?;
    let (nc, nc_port) = start_fake_nc(upstream.port(), rounds)?;
    let default_workers = if pin { "1" } else { "2" };
    let workers = std::env::var("BENCH_LYRE_WORKERS").unwrap_or_else(|_| default_workers.into());
    let dir = scratch_dir()?;
    println!(
        "decision bench: USER route, cached session (HP_SESSION_LIFETIME={SESSION_LIFETIME_SECS}), \
         {CONNECTIONS} connections, {RUN_SECS} s per run, lyre workers {workers}, median of \
         {rounds} rounds (rows alternate within a round){}",
        if pin {
            ", proxies pinned to their own CPU (BENCH_PIN=1)"
        } else {
            ""
        }
    );
    // Reference: nginx as a plain reverse proxy (no decision) to the same upstream,
    // keep-alive both sides: what a mature C proxy costs per request on this machine.
    let nginx = match start_nginx(upstream, &dir, pin) {
        Ok(peer) => Some(peer),
        Err(e) => {
            println!("  (nginx reference skipped: {e})");
            None
        }
    };
    // One Lyre serves both: a static route (no decision at all, the baseline) on /hello and
    // the USER route through HaRP's decision on /exapps/<app>/hello.
    let route = format!("/hello={upstream}");
    let (lyre, port) = start_lyre(nc_port, &workers, &dir, &["--route", &route])?;
    nc_control(nc_port, "POST", "/_fake/reset")?;
    let mut direct = Vec::new();
    let mut reference = Vec::new();
    let mut plain = Vec::new();
    let mut decided = Vec::new();
    for round in 0..rounds {
        direct.push((
            load(&format!("http://{upstream}/hello"), RUN_SECS, round)?,
            0.0,
        ));
        if let Some((peer, nginx_port)) = &nginx {
            let url = format!("http://127.0.0.1:{nginx_port}/hello");
            reference.push(measured(peer, &url, round)?);
        }
        let url = format!("http://127.0.0.1:{port}/hello");
        plain.push(measured(&lyre, &url, round)?);
        // A fresh cookie per round: exactly one user-info call each.
        let url = format!("http://127.0.0.1:{port}/exapps/{APP}/hello");
        decided.push(measured(&lyre, &url, round)?);
    }
    let counts = nc_control(nc_port, "GET", "/_fake/counts")?;
    drop(lyre);
    drop(nginx);
    drop(nc);
    let _ = std::fs::remove_dir_all(&dir);

    let user_info = counts["user-info"][APP].as_u64().unwrap_or(0);
    let all = direct
        .iter()
        .chain(&reference)
        .chain(&plain)
        .chain(&decided);
    let ok_statuses = all.clone().all(|(r, _)| only_200(r));
    print_report(
        median_run(&direct),
        (!reference.is_empty()).then(|| median_run(&reference)),
        median_run(&plain),
        median_run(&decided),
        (user_info, rounds as u64),
    );
    Ok(ok_statuses && user_info == rounds as u64)
}

/// The run with the median CPU per request (direct runs: median requests/s); its numbers
/// are the row's.
fn median_run(runs: &[(Report, f64)]) -> (&Report, f64) {
    let mut v: Vec<&(Report, f64)> = runs.iter().collect();
    v.sort_by(|a, b| {
        a.1.total_cmp(&b.1)
            .then(a.0.requests_per_sec().total_cmp(&b.0.requests_per_sec()))
    });
    let (r, cpu) = v[v.len() / 2];
    (r, *cpu)
}

/// Warm up, then one measured run against `url`; returns it and Lyre's CPU us/request.
fn measured(lyre: &Peer, url: &str, round: usize) -> Result<(Report, f64), String> {
    let warm = load(url, WARMUP_SECS, round)?;
    if !only_200(&warm) {
        return Err(format!("warm-up against {url}: {}", statuses(&warm)));
    }
    let stat = format!("/proc/{}/stat", lyre.0.id());
    let before = stat_ticks(&stat).ok_or("no /proc stat for lyre")?;
    let report = load(url, RUN_SECS, round)?;
    let after = stat_ticks(&stat).ok_or("no /proc stat for lyre")?;
    let cpu_us =
        after.saturating_sub(before) as f64 / clock_ticks() * 1e6 / report.requests().max(1) as f64;
    Ok((report, cpu_us))
}

fn print_report(
    direct: (&Report, f64),
    nginx: Option<(&Report, f64)>,
    plain: (&Report, f64),
    decided: (&Report, f64),
    (user_info, cookies): (u64, u64),
) {
    let direct = direct.0;
    let row = |name: &str, r: &Report, cpu: Option<f64>| {
        let h = &r.tally.latency;
        let cpu = cpu.map_or(String::new(), |c| format!("  proxy CPU {c:.2} us/req"));
        println!(
            "  {name:<28} {:>8.0} req/s  p50 {:.3} ms  p99 {:.3} ms{cpu}  statuses {}",
            r.requests_per_sec(),
            h.quantile_us(0.5) as f64 / 1000.0,
            h.quantile_us(0.99) as f64 / 1000.0,
            statuses(r)
        );
    };
    row("direct upstream", direct, None);
    if let Some((r, cpu)) = nginx {
        row("nginx proxy_pass (reference)", r, Some(cpu));
    }
    row("lyre static route", plain.0, Some(plain.1));
    row("lyre USER route (decision)", decided.0, Some(decided.1));
    let ratio = decided.0.requests_per_sec() / direct.requests_per_sec().max(1e-9);
    println!("  ratio decision/direct        {ratio:.3}");
    let verdict = if decided.1 <= TARGET_CPU_US_PER_REQUEST {
        "met"
    } else {
        "MISSED"
    };
    println!(
        "  lyre CPU per request         {:.2} us (target <= {TARGET_CPU_US_PER_REQUEST} us: {verdict}; \
         decision share ~ {:.2} us over the static route)",
        decided.1,
        decided.1 - plain.1
    );
    if let Some((_, nginx_cpu)) = nginx {
        println!(
            "  lyre CPU vs nginx             {:.2}x (Lyre with HaRP's decision / nginx proxying only)",
            decided.1 / nginx_cpu
        );
    }
    let verdict = if user_info == cookies { "ok" } else { "WRONG" };
    println!(
        "  user-info calls              {user_info} for {cookies} cookies (one per round), each \
         used by {CONNECTIONS} connections inside one {SESSION_LIFETIME_SECS} s window (must be \
         {cookies}: {verdict})"
    );
}

fn statuses(r: &Report) -> String {
    let v: Vec<String> = (r.tally.statuses.iter().enumerate())
        .filter(|(_, n)| **n > 0)
        .map(|(code, n)| format!("{code}x{n}"))
        .chain(r.tally.errors.iter().map(|(k, n)| format!("{k}x{n}")))
        .collect();
    v.join(" ")
}

fn only_200(r: &Report) -> bool {
    let non_200: u64 = (r.tally.statuses.iter().enumerate())
        .filter(|(code, _)| *code != 200)
        .map(|(_, n)| n)
        .sum();
    non_200 == 0 && r.tally.errors.is_empty() && r.requests() > 0
}

fn load(url: &str, secs: u64, round: usize) -> Result<Report, String> {
    run_report(&BenchArgs {
        url: url.to_string(),
        connections: CONNECTIONS,
        workers: LOAD_WORKERS,
        duration_secs: secs,
        timeout_ms: 5000,
        method: "GET".into(),
        headers: vec![format!(
            "Cookie: oc_sessionPassphrase={}; nc_sameSiteCookielax=true",
            cookie(round)
        )],
        body: None,
    })
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("lyre-decision-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// fake_nc.py knowing `benchapp` (USER route `^/hello` at the upstream) and one level-1
/// session; returns it and its port.
fn start_fake_nc(upstream_port: u16, rounds: usize) -> Result<(Peer, u16), String> {
    let users: serde_json::Map<String, Value> = (0..rounds)
        .map(|r| (cookie(r), json!({"user_id": "bench", "access_level": 1})))
        .collect();
    let config = json!({
        "shared_key": KEY,
        "apps": {APP: {
            "exapp_token": "bench-secret",
            "exapp_version": "1.0.0",
            "host": "127.0.0.1",
            "port": upstream_port,
            "routes": [{"url": "^/hello", "access_level": 1}],
        }},
        "users": users,
    });
    let mut child = Command::new("python3")
        .arg("-u")
        .arg(repo_root().join("tests/peers/fake_nc.py"))
        .env("FAKE_NC_CONFIG", config.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn python3 fake_nc.py: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let peer = Peer(child);
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = tx.send(line);
        let _ = r.read_to_end(&mut Vec::new());
    });
    let line = rx
        .recv_timeout(START_TIMEOUT)
        .map_err(|_| "fake_nc.py printed no PORT line")?;
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("fake_nc.py first line {line:?}"))?;
    Ok((peer, port))
}

fn start_lyre(
    nc_port: u16,
    workers: &str,
    dir: &std::path::Path,
    args: &[&str],
) -> Result<(Peer, u16), String> {
    let port = free_port()?;
    let mut cmd = Command::new(LYRE);
    if std::env::var("BENCH_PIN").is_ok_and(|v| v == "1") {
        on_proxy_cpu(&mut cmd);
    }
    let child = cmd
        .arg("serve")
        .args(args)
        .env_clear()
        .env("HP_SHARED_KEY", KEY)
        .env("NC_INSTANCE_URL", format!("http://127.0.0.1:{nc_port}"))
        .env("HP_EXAPPS_ADDRESS", format!("127.0.0.1:{port}"))
        .env(
            "HP_EXAPPS_HTTPS_ADDRESS",
            format!("127.0.0.1:{}", free_port()?),
        )
        .env("HP_FRP_ADDRESS", format!("127.0.0.1:{}", free_port()?))
        .env(
            "LYRE_CONTROL_ADDRESS",
            format!("127.0.0.1:{}", free_port()?),
        )
        .env("LYRE_CERTS_DIR", dir)
        .env("HP_FRP_DISABLE_TLS", "true")
        .env("HP_SESSION_LIFETIME", SESSION_LIFETIME_SECS.to_string())
        .env("HP_LOG_LEVEL", "warning")
        .env("LYRE_WORKERS", workers)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawn {LYRE}: {e}"))?;
    let mut peer = Peer(child);
    wait_listening(&mut peer, port, "lyre serve")?;
    Ok((peer, port))
}

/// Wait until `port` accepts (the child may still be starting); fails if it exits first
/// or takes longer than [`START_TIMEOUT`].
fn wait_listening(peer: &mut Peer, port: u16, what: &str) -> Result<(), String> {
    let end = Instant::now() + START_TIMEOUT;
    while Instant::now() < end {
        if let Ok(Some(status)) = peer.0.try_wait() {
            return Err(format!("{what} exited at start ({status})"));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{what} did not listen in time"))
}

/// nginx (`master_process off`: one process, so its /proc CPU is all of it) proxying to
/// `upstream` with keep-alive on both sides; returns it and its port.
fn start_nginx(
    upstream: SocketAddr,
    dir: &std::path::Path,
    pin: bool,
) -> Result<(Peer, u16), String> {
    let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .ok_or("no nginx binary (apt-get install nginx-light)")?;
    let port = free_port()?;
    let d = dir.join("nginx");
    std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
    let d = d.display();
    // One process: CPU per request does not depend on the worker count, and one process
    // is what /proc can attribute without summing children.
    let conf = format!(
        "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid;
error_log {d}/error.log error;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  upstream up {{ server {upstream}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port};
    keepalive_requests 1000000;
    location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}
  }}
}}
"
    );
    let conf_path = format!("{d}/nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    if pin {
        on_proxy_cpu(&mut cmd);
    }
    let child = cmd
        .args(["-c", &conf_path, "-e", &format!("{d}/error.log")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn {bin}: {e}"))?;
    let mut peer = Peer(child);
    wait_listening(&mut peer, port, "nginx").map_err(|e| format!("{e}, see {d}/error.log"))?;
    Ok((peer, port))
}

/// The CPU the proxies get with `BENCH_PIN=1`: the last one.
fn proxy_cpu() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) - 1
}

/// Keep this process (and what it spawns from now on) off the proxy's CPU.
fn pin_self_away_from_proxy_cpu() -> Result<(), String> {
    let cpu = proxy_cpu();
    if cpu == 0 {
        return Err("BENCH_PIN=1 needs at least two CPUs".into());
    }
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes bits inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in 0..cpu {
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: pid 0 = the calling thread; set is a valid cpu_set_t of the given size.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    if r != 0 {
        return Err(format!(
            "sched_setaffinity: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Run the child on the proxy's CPU only.
fn on_proxy_cpu(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let cpu = proxy_cpu();
    // SAFETY: only async-signal-safe calls (sched_setaffinity) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A fake_nc.py control call; returns its JSON answer.
fn nc_control(port: u16, method: &str, path: &str) -> Result<Value, String> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("fake_nc: {e}"))?;
    c.set_read_timeout(Some(IO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    c.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    c.read_to_end(&mut resp)
        .map_err(|e| format!("fake_nc: {e}"))?;
    let start = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("fake_nc: no response head")?;
    serde_json::from_slice(&resp[start + 4..]).map_err(|e| format!("fake_nc JSON: {e}"))
}
