//! Integration-test harness: real peer processes (aiohttp upstream, nginx, the built `lyre`
//! binary) behind Drop guards, plus raw clients for byte-exact assertions.
//!
//! Peers come from `tests/peers/install.sh` (nginx from apt, `.peers/venv` with aiohttp).
//! A missing peer makes the test FAIL with a message naming that script: never skip.
//! Every process is killed by its own pid when its guard drops; when the test is panicking
//! the guard prints the tail of the process log (stderr/stdout captured to a file).
//!
//! Submodules: `http` (raw HTTP/1.1 client), `ws` (RFC 6455 client), `pattern` (the
//! deterministic byte stream shared with upstream.py, sha256 helpers), `appapi` (AppAPI's
//! Docker control-plane requests, engine stand-ins, network namespaces), `tls` (test CA and
//! `cert.pem` for the HTTPS frontend, rustls client configs).
#![allow(dead_code)]

pub mod appapi;
pub mod exapp;
pub mod http;
pub mod pattern;
pub mod tls;
pub mod ws;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use http::{Conn, Head, Response};
#[allow(unused_imports)]
pub use pattern::{sha256_hex, Pattern};

/// How long a peer may take to start listening before the test fails.
pub const START_DEADLINE: Duration = Duration::from_secs(20);
/// How many bytes of a process log are printed when a test fails.
const LOG_TAIL_BYTES: u64 = 16 * 1024;

const INSTALL_HINT: &str = "run `bash tests/peers/install.sh` (as root) to install the test peers";

/// The repository root (where Cargo.toml lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `.peers/` under the repository root: venv, frp binaries (made by install.sh).
pub fn peers_dir() -> PathBuf {
    repo_root().join(".peers")
}

/// The venv's python, or a failing test naming install.sh.
pub fn venv_python() -> PathBuf {
    let py = peers_dir().join("venv/bin/python");
    assert!(
        py.exists(),
        "missing {} (python venv with aiohttp): {INSTALL_HINT}",
        py.display()
    );
    py
}

/// The nginx binary, or a failing test naming install.sh.
pub fn nginx_bin() -> PathBuf {
    for cand in ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(cand).exists() {
            return PathBuf::from(cand);
        }
    }
    panic!("nginx not found in /usr/sbin, /usr/local/sbin, /usr/bin: {INSTALL_HINT}");
}

/// A free TCP port on 127.0.0.1 for a test's listener, never one handed out before in this
/// test process: the tests of one binary run in parallel, and a port picked for one test's
/// peer (not yet listening) could otherwise be picked again by another test, whose server
/// then answers in its place. Taken below the kernel's ephemeral range when there is room
/// (and outside HaRP's FRP ports 23000-24099, which the FRP tests pick from): a port from
/// `bind :0` is an ephemeral one, and between our release and the peer's bind any
/// outgoing connection of a parallel test could take it as its source port.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let below = ephemeral_low().saturating_sub(1);
    let range: Vec<u16> = (10_000..below)
        .filter(|p| !(23_000..=24_099).contains(p))
        .collect();
    let mut seen = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    if range.len() >= 1_000 {
        let start = (std::process::id() as usize).wrapping_mul(7919);
        for _ in 0..range.len() {
            let i = NEXT.fetch_add(1, Ordering::Relaxed) as usize;
            let port = range[start.wrapping_add(i) % range.len()];
            if !seen.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
                seen.push(port);
                return port;
            }
        }
    }
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local_addr").port();
        if !seen.contains(&port) {
            seen.push(port);
            return port;
        }
    }
}

/// The first port of the kernel's ephemeral range (net.ipv4.ip_local_port_range).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Polls until `cond` is true or `deadline` passes; returns whether it became true.
pub fn poll_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// A per-test scratch directory under the system temp dir. Removed on drop, except when
/// the test is panicking (its logs are kept for debugging; the path is printed).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "lyre-test-{tag}-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).expect("create temp dir");
        // nginx workers run as `nobody` when the master is root: they must traverse it.
        let _ =
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("[harness] kept {} for debugging", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A child process killed by its pid on drop; output goes to `log`.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout + stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        cmd.stdin(Stdio::null()).stdout(out);
        Self::spawn_with(name, cmd, log, err)
    }

    /// Spawns `cmd` with stdin closed, stdout to `out_log` and stderr to `log`.
    pub fn spawn_split(name: &str, mut cmd: Command, log: PathBuf, out_log: &Path) -> Proc {
        let out = File::create(out_log).expect("create stdout log file");
        let err = File::create(&log).expect("create log file");
        cmd.stdin(Stdio::null()).stdout(out);
        Self::spawn_with(name, cmd, log, err)
    }

    /// For a child whose first stdout line is `PORT <n>` (upstream.py, fake_nc.py): spawns
    /// `cmd` with stdout piped (the rest of it drained) and stderr to `log`, and returns the
    /// port, failing the test with the log if no such line comes within [`START_DEADLINE`].
    pub fn spawn_port_line(name: &str, mut cmd: Command, log: PathBuf) -> (Proc, u16) {
        let err = File::create(&log).expect("create log file");
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        let mut proc = Self::spawn_with(name, cmd, log, err);
        let stdout = proc.child.stdout.take().expect("piped stdout");
        let port = port_from_stdout(stdout, name, &proc);
        (proc, port)
    }

    fn spawn_with(name: &str, mut cmd: Command, log: PathBuf, stderr: File) -> Proc {
        let child = cmd
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The whole log so far (stdout + stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Some(status)` if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `within` for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        poll_until(within, || {
            status = self.exited();
            status.is_some()
        });
        status
    }

    /// Kills (SIGKILL, by pid) and reaps the process now.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Polls the log until it contains `needle`; fails with the log (or on early exit).
    pub fn wait_log(&mut self, needle: &str, within: Duration) {
        self.wait_for(&format!("logged {needle:?}"), within, |p| {
            p.log().contains(needle)
        });
    }

    /// Polls `ready` every 20 ms; fails the test with the log tail if the process exits
    /// first or `within` passes. `what` completes "<name> never ...".
    fn wait_for(&mut self, what: &str, within: Duration, ready: impl Fn(&Proc) -> bool) {
        let end = Instant::now() + within;
        loop {
            if ready(self) {
                return;
            }
            if let Some(st) = self.exited() {
                panic!(
                    "{} exited ({st}) before it {what}\n--- log ---\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < end,
                "{} never {what} within {within:?}\n--- log ---\n{}",
                self.name,
                self.log_tail()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last [`LOG_TAIL_BYTES`] of the log (what failure messages print).
    pub fn log_tail(&self) -> String {
        let Ok(mut f) = File::open(&self.log) else {
            return String::new();
        };
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let start = len.saturating_sub(LOG_TAIL_BYTES);
        let _ = std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(start));
        let mut s = Vec::new();
        let _ = f.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    }

    /// Waits until `port` accepts, failing early (with the log) if the process exits.
    fn wait_listening(&mut self, port: u16) {
        let what = format!("listened on 127.0.0.1:{port}");
        self.wait_for(&what, START_DEADLINE, |_| port_open(port));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Kill exactly our child (SIGKILL by pid), then reap it.
        self.kill();
        if thread::panicking() {
            eprintln!(
                "--- {} (pid {}) log tail: {} ---\n{}",
                self.name,
                self.child.id(),
                self.log.display(),
                self.log_tail()
            );
        }
    }
}

/// The aiohttp upstream (tests/peers/upstream.py).
pub struct Upstream {
    pub port: u16,
    proc: Proc,
    _dir: TempDir,
}

impl Upstream {
    pub fn start() -> Upstream {
        let py = venv_python();
        let script = repo_root().join("tests/peers/upstream.py");
        let dir = TempDir::new("upstream");
        let mut cmd = Command::new(py);
        cmd.arg("-u")
            .arg(&script)
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let log = dir.path().join("upstream.log");
        let (proc, port) = Proc::spawn_port_line("upstream.py", cmd, log);
        Upstream {
            port,
            proc,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Distinct TCP connections that carried at least one non-stats request so far.
    pub fn connections(&self) -> u64 {
        let r = http::get(self.port, "/count");
        assert_eq!(r.head.status, 200, "upstream /count");
        r.body_str()
            .trim()
            .parse()
            .expect("upstream /count is a number")
    }

    /// `/stats` as JSON: {accepted, connections, requests, paths}.
    pub fn stats(&self) -> serde_json::Value {
        let r = http::get(self.port, "/stats");
        assert_eq!(r.head.status, 200, "upstream /stats");
        serde_json::from_slice(&r.body).expect("upstream /stats is JSON")
    }

    /// Request paths (with query) the upstream has seen, oldest first (last 1000).
    pub fn paths(&self) -> Vec<String> {
        let s = self.stats();
        let arr = s["paths"].as_array().expect("paths array");
        arr.iter()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect()
    }

    /// True if any seen request path contains `needle`.
    pub fn saw(&self, needle: &str) -> bool {
        self.paths().iter().any(|p| p.contains(needle))
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }
}

/// A child whose first stdout line is `PORT <n>` (upstream.py, fake_nc.py, ...); the rest of
/// stdout is drained so the child never blocks on (or dies of) a closed pipe.
pub fn port_from_stdout(stdout: std::process::ChildStdout, what: &str, proc: &Proc) -> u16 {
    read_port_line(stdout, START_DEADLINE)
        .unwrap_or_else(|e| panic!("{what} {e}\n{}", proc.log_tail()))
}

/// The `PORT <n>` first line of a child's stdout, within `deadline`; the rest is drained
/// on a thread. Errors say what was (not) printed.
pub fn read_port_line(
    stdout: std::process::ChildStdout,
    deadline: Duration,
) -> Result<u16, String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = tx.send(line);
        let mut sink = Vec::new();
        let _ = r.read_to_end(&mut sink);
    });
    let line = rx
        .recv_timeout(deadline)
        .map_err(|_| "printed no PORT line".to_string())?;
    line.trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("first line {line:?} is not `PORT n`"))
}

/// nginx from tests/peers/nginx.conf.template, proxying `/exapps/` to `backend_port`.
pub struct Nginx {
    pub port: u16,
    proc: Proc,
    dir: TempDir,
}

impl Nginx {
    pub fn start(backend_port: u16) -> Nginx {
        Self::start_with(backend_port, |conf| conf)
    }

    /// nginx proxying `/exapps/` to `https://127.0.0.1:backend_port` (Lyre's HTTPS
    /// frontend), verifying the certificate against `ca_pem` for the name `localhost`.
    pub fn start_tls(backend_port: u16, ca_pem: &Path) -> Nginx {
        let ca = ca_pem.to_str().expect("utf-8 CA path").to_string();
        Self::start_with(backend_port, move |conf| {
            let tls = format!(
                "proxy_pass https://lyre;\n            proxy_ssl_verify on;\n            \
                 proxy_ssl_trusted_certificate {ca};\n            proxy_ssl_name localhost;\n            \
                 proxy_ssl_session_reuse on;"
            );
            assert!(conf.contains("proxy_pass http://lyre;"), "template changed");
            conf.replace("proxy_pass http://lyre;", &tls)
        })
    }

    fn start_with(backend_port: u16, edit: impl FnOnce(String) -> String) -> Nginx {
        let bin = nginx_bin();
        let dir = TempDir::new("nginx");
        let port = free_port();
        let tpl_path = repo_root().join("tests/peers/nginx.conf.template");
        let tpl = std::fs::read_to_string(&tpl_path).expect("read nginx.conf.template");
        let d = dir.path().to_str().expect("utf-8 temp path");
        let conf = tpl
            .replace("@DIR@", d)
            .replace("@LISTEN@", &port.to_string())
            .replace("@BACKEND@", &format!("127.0.0.1:{backend_port}"));
        let conf = edit(conf);
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let mut cmd = Command::new(bin);
        cmd.arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"));
        cmd.arg("-c").arg(&conf_path);
        let mut proc = Proc::spawn("nginx", cmd, dir.path().join("nginx.out"));
        proc.wait_listening(port);
        Nginx { port, proc, dir }
    }

    /// nginx's error log (warnings and up).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- nginx error.log ---\n{}", self.error_log());
        }
        // nginx workers are children of the master; SIGKILL of the master leaves them
        // orphaned, so ask the master (our child, by pid) to quit fast first.
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.proc.pid() as i32, libc::SIGTERM);
        }
        poll_until(Duration::from_secs(5), || self.proc.exited().is_some());
    }
}

/// Default environment for `lyre serve` in tests (HaRP's variables, free ports).
pub struct LyreEnv {
    pub exapps_port: u16,
    pub control_port: u16,
    pub frp_port: u16,
    pub https_port: u16,
    pub pairs: Vec<(String, String)>,
}

impl LyreEnv {
    fn new(dir: &Path) -> LyreEnv {
        let (exapps_port, control_port, frp_port, https_port) =
            (free_port(), free_port(), free_port(), free_port());
        let certs = dir.join("certs");
        let _ = std::fs::create_dir_all(&certs);
        let pairs = [
            ("HP_SHARED_KEY", "lyre-test-shared-key".to_string()),
            ("NC_INSTANCE_URL", "http://127.0.0.1:9".to_string()),
            ("HP_FRP_ADDRESS", format!("127.0.0.1:{frp_port}")),
            ("HP_EXAPPS_ADDRESS", format!("127.0.0.1:{exapps_port}")),
            ("HP_EXAPPS_HTTPS_ADDRESS", format!("127.0.0.1:{https_port}")),
            ("LYRE_CONTROL_ADDRESS", format!("127.0.0.1:{control_port}")),
            ("LYRE_CERTS_DIR", certs.to_string_lossy().into_owned()),
            ("LYRE_WORKERS", "2".to_string()),
            ("HP_TIMEOUT_CONNECT", "5s".to_string()),
            ("HP_TIMEOUT_CLIENT", "30s".to_string()),
            ("HP_TIMEOUT_SERVER", "30s".to_string()),
            ("HP_TIMEOUT_TUNNEL", "60s".to_string()),
            ("HP_LOG_LEVEL", "info".to_string()),
        ];
        let pairs = pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        LyreEnv {
            exapps_port,
            control_port,
            frp_port,
            https_port,
            pairs,
        }
    }

    fn set(&mut self, k: &str, v: &str) {
        self.pairs.retain(|(n, _)| n != k);
        self.pairs.push((k.to_string(), v.to_string()));
    }
}

/// The built `lyre` binary running `lyre serve ARGS` with [`LyreEnv`] defaults overridden
/// by the caller's pairs. `port` is the exapps listener.
pub struct Lyre {
    pub port: u16,
    pub control_port: u16,
    pub frp_port: u16,
    /// `HP_EXAPPS_HTTPS_ADDRESS`'s port (served only when the certs dir has `cert.pem`).
    pub https_port: u16,
    proc: Proc,
    env: LyreEnv,
    /// Where stdout went when it was kept apart from stderr.
    stdout_log: Option<PathBuf>,
    _dir: TempDir,
}

impl Lyre {
    pub fn start(env: &[(&str, &str)], args: &[&str]) -> Lyre {
        Lyre::start_with(env, args, |_| {})
    }

    /// [`Lyre::start`] with `adjust` applied to the command before it is spawned (e.g. a
    /// `pre_exec` sandbox).
    pub fn start_with(
        env: &[(&str, &str)],
        args: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Lyre {
        Lyre::launch(env, args, adjust, false)
    }

    /// [`Lyre::start`] with stdout kept apart: [`Lyre::stdout`] reads it, [`Lyre::log`]
    /// then holds stderr only.
    pub fn start_split(env: &[(&str, &str)], args: &[&str]) -> Lyre {
        Lyre::launch(env, args, |_| {}, true)
    }

    fn launch(
        env: &[(&str, &str)],
        args: &[&str],
        adjust: impl FnOnce(&mut Command),
        split: bool,
    ) -> Lyre {
        let dir = TempDir::new("lyre");
        let mut e = LyreEnv::new(dir.path());
        for (k, v) in env {
            e.set(k, v);
        }
        let exapps: SocketAddr = e
            .pairs
            .iter()
            .find(|(k, _)| k == "HP_EXAPPS_ADDRESS")
            .and_then(|(_, v)| v.parse().ok())
            .expect("HP_EXAPPS_ADDRESS is host:port");
        let https: SocketAddr = e
            .pairs
            .iter()
            .find(|(k, _)| k == "HP_EXAPPS_HTTPS_ADDRESS")
            .and_then(|(_, v)| v.parse().ok())
            .expect("HP_EXAPPS_HTTPS_ADDRESS is host:port");
        let mut cmd = serve_command(&e, args);
        adjust(&mut cmd);
        let log = dir.path().join("lyre.log");
        let stdout_log = split.then(|| dir.path().join("lyre.stdout.log"));
        let mut proc = match &stdout_log {
            Some(out) => Proc::spawn_split("lyre", cmd, log, out),
            None => Proc::spawn("lyre", cmd, log),
        };
        proc.wait_listening(exapps.port());
        Lyre {
            port: exapps.port(),
            control_port: e.control_port,
            frp_port: e.frp_port,
            https_port: https.port(),
            proc,
            env: e,
            stdout_log,
            _dir: dir,
        }
    }

    /// What `lyre serve` wrote on stdout (started with [`Lyre::start_split`]; else empty).
    pub fn stdout(&self) -> String {
        self.stdout_log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// Waits up to `within` for `lyre serve` to exit by itself (after a signal).
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        self.proc.wait_exit(within)
    }

    /// `lyre <subcommand>` with this Lyre's environment (e.g. `healthcheck`).
    pub fn command(&self, subcommand: &str) -> Command {
        lyre_command(&self.env, subcommand, &[])
    }

    /// Runs `lyre serve ARGS` expecting it to refuse to start: returns its exit status and
    /// log once it exits; fails the test if it is still running after [`START_DEADLINE`].
    pub fn start_failure(
        env: &[(&str, &str)],
        args: &[&str],
    ) -> (std::process::ExitStatus, String) {
        Lyre::start_failure_with(env, args, |_| {})
    }

    /// [`Lyre::start_failure`] with `adjust` applied to the command before it is spawned.
    pub fn start_failure_with(
        env: &[(&str, &str)],
        args: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> (std::process::ExitStatus, String) {
        let dir = TempDir::new("lyre-fail");
        let mut e = LyreEnv::new(dir.path());
        for (k, v) in env {
            e.set(k, v);
        }
        let mut cmd = serve_command(&e, args);
        adjust(&mut cmd);
        let mut proc = Proc::spawn("lyre", cmd, dir.path().join("lyre.log"));
        let mut status = None;
        poll_until(START_DEADLINE, || {
            status = proc.exited();
            status.is_some()
        });
        let status = status.unwrap_or_else(|| {
            panic!(
                "lyre is still running after {START_DEADLINE:?}; expected a start failure\n{}",
                proc.log_tail()
            )
        });
        (status, proc.log())
    }

    /// `lyre serve --route PREFIX=127.0.0.1:PORT ...` for each `(prefix, port)`.
    pub fn routed(routes: &[(&str, u16)], env: &[(&str, &str)]) -> Lyre {
        let args: Vec<String> = routes
            .iter()
            .flat_map(|(p, port)| ["--route".to_string(), format!("{p}=127.0.0.1:{port}")])
            .collect();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Lyre::start(env, &refs)
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// The `lyre serve` process id (for /proc inspections).
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Fails the test (with the log) if Lyre has died, e.g. after a hostile request.
    pub fn assert_alive(&mut self) {
        if let Some(st) = self.proc.exited() {
            panic!("lyre exited: {st}\n--- log ---\n{}", self.proc.log_tail());
        }
    }
}

/// `lyre serve ARGS` with exactly the variables of `e` (nothing inherited but PATH).
fn serve_command(e: &LyreEnv, args: &[&str]) -> Command {
    lyre_command(e, "serve", args)
}

/// `lyre <subcommand> ARGS` with exactly `e`'s environment (plus PATH, RUST_BACKTRACE).
fn lyre_command(e: &LyreEnv, subcommand: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lyre"));
    cmd.env_clear().arg(subcommand).args(args);
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_BACKTRACE", "1");
    cmd.envs(e.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    cmd
}

/// aiohttp's 413 for a control body over HaRP's 1 MiB (H-103).
pub fn assert_control_body_too_large(r: &Response) {
    assert_eq!(r.head.status, 413, "{}", r.body_str());
    assert!(
        r.body_str()
            .starts_with("Maximum request body size 1048576 exceeded"),
        "{}",
        r.body_str()
    );
}

/// A listener thread handing every accepted connection to `on_conn`, in order, on that
/// thread. Dropping it stops the loop: it sets the stop flag, wakes the blocked `accept`
/// with one connection to itself, and joins the thread.
pub struct AcceptLoop {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl AcceptLoop {
    pub fn spawn(
        listener: TcpListener,
        mut on_conn: impl FnMut(TcpStream) + Send + 'static,
    ) -> AcceptLoop {
        let addr = listener.local_addr().expect("local_addr");
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(s) = conn {
                    on_conn(s);
                }
            }
        });
        AcceptLoop {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Binds 127.0.0.1:0 (`what` names the listener in the bind failure) and spawns.
    pub fn on_free_port(what: &str, on_conn: impl FnMut(TcpStream) + Send + 'static) -> AcceptLoop {
        let listener =
            TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind {what}: {e}"));
        AcceptLoop::spawn(listener, on_conn)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for AcceptLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads a request head from `s`: up to the first blank line, EOF, an error, or `wait`
/// without new bytes. Returns what arrived (possibly partial).
pub fn read_head(s: &mut TcpStream, wait: Duration) -> Vec<u8> {
    let _ = s.set_read_timeout(Some(wait));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    head
}

/// A tiny raw TCP upstream: for every connection it reads the request head (up to the
/// first blank line, or 2 s), records it, writes `reply` verbatim and closes. For 502
/// tests, for an upstream that closes kept-alive connections (as uvicorn does after 5 s
/// idle), and as a fake Docker engine that records what Lyre forwarded.
pub struct RawUpstream {
    pub port: u16,
    accepted: Arc<AtomicU64>,
    closed: Arc<AtomicU64>,
    heads: Arc<Mutex<Vec<String>>>,
    _loop: AcceptLoop,
}

impl RawUpstream {
    pub fn start(reply: &[u8]) -> RawUpstream {
        Self::start_waiting(reply, Duration::from_secs(2))
    }

    /// As [`RawUpstream::start`], waiting up to `head_wait` for each request head.
    pub fn start_waiting(reply: &[u8], head_wait: Duration) -> RawUpstream {
        let accepted = Arc::new(AtomicU64::new(0));
        let closed = Arc::new(AtomicU64::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (acc, cl, hs) = (accepted.clone(), closed.clone(), heads.clone());
        let reply = reply.to_vec();
        let accept_loop = AcceptLoop::on_free_port("raw upstream", move |mut s| {
            acc.fetch_add(1, Ordering::SeqCst);
            let head = read_head(&mut s, head_wait);
            hs.lock()
                .expect("lock")
                .push(String::from_utf8_lossy(&head).into_owned());
            let _ = s.write_all(&reply);
            let _ = s.shutdown(std::net::Shutdown::Both);
            drop(s);
            cl.fetch_add(1, Ordering::SeqCst);
        });
        RawUpstream {
            port: accept_loop.port(),
            accepted,
            closed,
            heads,
            _loop: accept_loop,
        }
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections this upstream has answered and closed.
    pub fn closed(&self) -> u64 {
        self.closed.load(Ordering::SeqCst)
    }

    /// Request heads received so far, oldest first.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("lock").clone()
    }
}

/// An upstream that answers the first request of each connection (keep-alive) and closes
/// the connection, unanswered, when a second one arrives on it: the race of an upstream's
/// idle timeout firing just as Lyre reuses the pooled connection. Returns the loop and
/// the request lines it saw, in order.
pub fn closes_on_second_request() -> (AcceptLoop, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let conns = std::sync::atomic::AtomicUsize::new(0);
    let accept = AcceptLoop::on_free_port("closing upstream", move |mut s| {
        let n = conns.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = log.clone();
        std::thread::spawn(move || {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            for nth in 0.. {
                let end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let body_len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                while buf.len() < end + body_len {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                buf.drain(..end + body_len);
                let line = head.lines().next().unwrap_or_default().to_string();
                log.lock().unwrap().push(line);
                if nth == 1 {
                    return; // closed without answering
                }
                let body = format!("conn {n}");
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if s.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        });
    });
    (accept, seen)
}
