//! The two stacks the FRP bench compares, each a set of child processes killed on drop:
//! - Lyre: `lyre serve` (FRP server + HTTP front) <- frpc 0.65;
//! - HaRP's way: HAProxy (front, `replace-path` like HaRP's ExApp backend) -> frps 0.65's
//!   127.0.0.1:<remotePort> listener <- frpc 0.65.
//!
//! Same frpc config (HaRP's ExApp config, harp-compat §5.4) up to `serverPort`/
//! `remotePort`, same unix-socket backend, same TLS setting and the same certificates
//! (Lyre's generated PKI; frps with `transport.tls.force` and `trustedCaFile` = mTLS).

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const LYRE: &str = env!("CARGO_BIN_EXE_lyre");
pub const SHARED_KEY: &str = "bench-shared-key";
pub const APP_ID: &str = "benchapp";
/// How long any process gets to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A child killed (SIGKILL, by pid) and reaped on drop.
pub struct Proc {
    pub name: &'static str,
    pub child: Child,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command, log: &Path) -> Result<Proc, String> {
        let out = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().map_err(|e| format!("spawn {name}: {e}"))?;
        Ok(Proc { name, child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => Err(format!("{} exited: {st}", self.name)),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// A free port in HaRP's ExApp range.
pub fn free_remote_port(skip: u16) -> Result<u16, String> {
    let base = 23500 + (std::process::id() % 200) as u16;
    (0..500u16)
        .map(|i| 23000 + (base - 23000 + i) % 1000)
        .find(|p| *p != skip && TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .ok_or_else(|| "no free port in 23000-23999".to_string())
}

fn wait_port(proc: &mut Proc, port: u16) -> Result<(), String> {
    let end = Instant::now() + START_TIMEOUT;
    while Instant::now() < end {
        proc.alive()?;
        if TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_ok() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    Err(format!("{} did not listen on {port}", proc.name))
}

fn wait_log(proc: &mut Proc, log: &Path, needle: &str) -> Result<(), String> {
    let end = Instant::now() + START_TIMEOUT;
    while Instant::now() < end {
        proc.alive()
            .map_err(|e| format!("{e}; log: {}", tail(log)))?;
        if std::fs::read_to_string(log).is_ok_and(|s| s.contains(needle)) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "{} never logged {needle:?}; log: {}",
        proc.name,
        tail(log)
    ))
}

fn tail(log: &Path) -> String {
    let s = std::fs::read(log).unwrap_or_default();
    String::from_utf8_lossy(&s[s.len().saturating_sub(2000)..]).into_owned()
}

/// HaRP's ExApp frpc config (start.sh) against `server_port`.
fn frpc_toml(server_port: u16, certs: Option<&Path>, remote_port: u16, sock: &Path) -> String {
    let tls = match certs {
        Some(d) => format!(
            "transport.tls.enable = true\ntransport.tls.certFile = \"{}\"\n\
             transport.tls.keyFile = \"{}\"\ntransport.tls.trustedCaFile = \"{}\"\n\
             transport.tls.serverName = \"harp.nc\"\n",
            d.join("client.crt").display(),
            d.join("client.key").display(),
            d.join("ca.crt").display()
        ),
        None => "transport.tls.enable = false\n".to_string(),
    };
    format!(
        "serverAddr = \"127.0.0.1\"\nserverPort = {server_port}\nloginFailExit = false\n{tls}\
         log.disablePrintColor = true\nmetadatas.token = \"{SHARED_KEY}\"\n\n[[proxies]]\n\
         remotePort = {remote_port}\ntype = \"tcp\"\nname = \"{APP_ID}\"\n[proxies.plugin]\n\
         type = \"unix_domain_socket\"\nunixPath = \"{}\"\n",
        sock.display()
    )
}

/// frpc with HaRP's ExApp config ([`frpc_toml`]) against `server_port`, once its proxy is up.
fn start_frpc(
    dir: &Path,
    server_port: u16,
    certs: Option<&Path>,
    remote_port: u16,
    sock: &Path,
) -> Result<Proc, String> {
    let cfg = dir.join("frpc.toml");
    let toml = frpc_toml(server_port, certs, remote_port, sock);
    std::fs::write(&cfg, toml).map_err(|e| e.to_string())?;
    let log = dir.join("frpc.log");
    let mut cmd = Command::new(super::peer("frp/frpc")?);
    cmd.arg("-c").arg(&cfg);
    let mut p = Proc::spawn("frpc", cmd, &log)?;
    wait_log(&mut p, &log, &format!("[{APP_ID}] start proxy success"))?;
    Ok(p)
}

/// One stack under test: `front` is what clients talk to (HTTP, `/exapps/<app>/...`),
/// `remote_port` the 127.0.0.1 tunnel listener; `measured` the pids whose CPU/RSS count.
pub struct Stack {
    pub label: &'static str,
    pub front: SocketAddr,
    pub remote_port: u16,
    pub measured: Vec<u32>,
    pub frpc_pid: u32,
    /// Log of the first measured process (printed when a measurement fails).
    pub log: PathBuf,
    _procs: Vec<Proc>,
}

impl Stack {
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

/// `lyre serve` + frpc. Lyre generates the PKI under `certs` (`$LYRE_CERTS_DIR/frp`).
/// `wan`: frpc reaches the server through [`delay_relay`] with this one-way delay.
pub fn lyre(
    dir: &Path,
    certs: &Path,
    tls: bool,
    sock: &Path,
    wan: Option<Duration>,
) -> Result<Stack, String> {
    let (front, frp, control) = (free_port()?, free_port()?, free_port()?);
    let remote_port = free_remote_port(0)?;
    let mut cmd = Command::new(LYRE);
    cmd.arg("serve")
        .env_clear()
        .env("HP_SHARED_KEY", SHARED_KEY)
        .env("NC_INSTANCE_URL", "http://127.0.0.1:9")
        .env("HP_EXAPPS_ADDRESS", format!("127.0.0.1:{front}"))
        .env(
            "HP_EXAPPS_HTTPS_ADDRESS",
            format!("127.0.0.1:{}", free_port()?),
        )
        .env("HP_FRP_ADDRESS", format!("127.0.0.1:{frp}"))
        .env("LYRE_CONTROL_ADDRESS", format!("127.0.0.1:{control}"))
        .env("LYRE_CERTS_DIR", certs)
        .env("HP_FRP_DISABLE_TLS", if tls { "false" } else { "true" })
        .env("HP_LOG_LEVEL", "warning")
        .env("LYRE_WORKERS", super::WORKERS.to_string());
    let mut p = Proc::spawn("lyre", cmd, &dir.join("lyre.log"))?;
    wait_port(&mut p, front)?;
    let certs_frp = certs.join("frp");
    let tls_files = tls.then_some(certs_frp.as_path());
    let frpc = start_frpc(dir, through(frp, wan)?, tls_files, remote_port, sock)?;
    push_record(front, remote_port)?;
    Ok(Stack {
        label: "lyre",
        front: SocketAddr::from(([127, 0, 0, 1], front)),
        remote_port,
        measured: vec![p.pid()],
        frpc_pid: frpc.pid(),
        log: dir.join("lyre.log"),
        _procs: vec![frpc, p],
    })
}

/// AppAPI's push of the FRP-mode record (host 127.0.0.1, port = remotePort, public route).
fn push_record(front: u16, remote_port: u16) -> Result<(), String> {
    use std::io::{Read, Write};
    let body = format!(
        "{{\"exapp_token\":\"s3cret\",\"exapp_version\":\"1.0.0\",\"host\":\"127.0.0.1\",\
         \"port\":{remote_port},\"routes\":[{{\"url\":\"^/\",\"access_level\":0}}]}}"
    );
    let mut c = TcpStream::connect(("127.0.0.1", front)).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(START_TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        c,
        "POST /exapps/app_api/exapp_storage/{APP_ID} HTTP/1.1\r\nHost: lyre\r\n\
         harp-shared-key: {SHARED_KEY}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    if !resp.starts_with("HTTP/1.1 204") {
        return Err(format!("record push answered {resp:?}"));
    }
    Ok(())
}

/// HaRP's data path without its Python agent: HAProxy -> frps <- frpc (through
/// [`delay_relay`] when `wan` is set).
pub fn harp(
    dir: &Path,
    certs: &Path,
    tls: bool,
    sock: &Path,
    (skip, wan): (u16, Option<Duration>),
) -> Result<Stack, String> {
    let (front, frp) = (free_port()?, free_port()?);
    let remote_port = free_remote_port(skip)?;
    let certs_frp = certs.join("frp");
    let frps_cfg = dir.join("frps.toml");
    std::fs::write(
        &frps_cfg,
        frps_toml(frp, tls.then_some(certs_frp.as_path())),
    )
    .map_err(|e| e.to_string())?;
    let mut cmd = Command::new(super::peer("frp/frps")?);
    cmd.arg("-c").arg(&frps_cfg);
    let mut frps = Proc::spawn("frps", cmd, &dir.join("frps.log"))?;
    wait_port(&mut frps, frp)?;
    let tls_files = tls.then_some(certs_frp.as_path());
    let frpc = start_frpc(dir, through(frp, wan)?, tls_files, remote_port, sock)?;
    let hcfg = dir.join("haproxy.cfg");
    std::fs::write(&hcfg, haproxy_cfg(front, remote_port)).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(haproxy_bin()?);
    cmd.arg("-db").arg("-f").arg(&hcfg);
    let mut hap = Proc::spawn("haproxy", cmd, &dir.join("haproxy.log"))?;
    wait_port(&mut hap, front)?;
    Ok(Stack {
        label: "haproxy+frps",
        front: SocketAddr::from(([127, 0, 0, 1], front)),
        remote_port,
        measured: vec![hap.pid(), frps.pid()],
        frpc_pid: frpc.pid(),
        log: dir.join("frps.log"),
        _procs: vec![hap, frpc, frps],
    })
}

/// The port frpc dials: the server's, or a delaying relay's in front of it.
fn through(server: u16, wan: Option<Duration>) -> Result<u16, String> {
    match wan {
        None => Ok(server),
        Some(one_way) => delay_relay(server, one_way),
    }
}

/// A TCP relay to 127.0.0.1:`target` that holds every chunk `one_way` before passing it
/// on, in both directions: a long link for frpc on loopback (this kernel has no netem).
/// It buffers without limit, so only the protocols' own windows bound what is in flight.
/// Its threads live until the bench exits.
pub fn delay_relay(target: u16, one_way: Duration) -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = l.local_addr().map_err(|e| e.to_string())?.port();
    thread::spawn(move || {
        for inbound in l.incoming().flatten() {
            let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let (Ok(in2), Ok(out2)) = (inbound.try_clone(), outbound.try_clone()) else {
                continue;
            };
            delayed_pipe(inbound, outbound, one_way);
            delayed_pipe(out2, in2, one_way);
        }
    });
    Ok(port)
}

/// `from` -> `to`, each chunk released `delay` after it was read; EOF passes as a shutdown.
fn delayed_pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    use std::io::{Read, Write};
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = from.read(&mut buf).unwrap_or(0);
            if tx
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
                || n == 0
            {
                return;
            }
        }
    });
    thread::spawn(move || {
        for (due, chunk) in rx {
            thread::sleep(due.saturating_duration_since(Instant::now()));
            if chunk.is_empty() || to.write_all(&chunk).is_err() {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
        }
    });
}

fn haproxy_bin() -> Result<PathBuf, String> {
    [
        "/usr/sbin/haproxy",
        "/usr/local/sbin/haproxy",
        "/usr/bin/haproxy",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .ok_or_else(|| "haproxy not installed (apt-get install -y haproxy)".to_string())
}

/// HaRP's frps.toml (harp-compat §5.1) minus the Login plugin (the agent is not part of
/// the data path being measured).
fn frps_toml(port: u16, certs: Option<&Path>) -> String {
    let tls = match certs {
        Some(d) => format!(
            "transport.tls.force = true\ntransport.tls.certFile = \"{}\"\n\
             transport.tls.keyFile = \"{}\"\ntransport.tls.trustedCaFile = \"{}\"\n",
            d.join("server.crt").display(),
            d.join("server.key").display(),
            d.join("ca.crt").display()
        ),
        None => "transport.tls.force = false\n".to_string(),
    };
    format!(
        "bindAddr = \"127.0.0.1\"\nbindPort = {port}\nproxyBindAddr = \"127.0.0.1\"\n{tls}\
         log.level = \"warn\"\nlog.disablePrintColor = true\nmaxPortsPerClient = 1\n\
         allowPorts = [ {{ start = 23000, end = 23999 }}, {{ start = 24000, end = 24099 }} ]\n"
    )
}

/// A minimal HAProxy in HaRP's shape: HTTP mode, `/exapps/<app>` stripped, server = the
/// frps listener for the app's remotePort, keep-alive both sides, HaRP's long timeouts.
fn haproxy_cfg(front: u16, remote_port: u16) -> String {
    format!(
        "global\n    maxconn 8000\n    nbthread {}\n\
         defaults\n    mode http\n    timeout connect 30s\n    timeout client 30s\n\
         \x20   timeout server 1800s\n    timeout tunnel 1800s\n    timeout client-fin 30s\n\
         frontend ex_apps\n    bind 127.0.0.1:{front}\n    default_backend frp_app\n\
         backend frp_app\n    http-request replace-path /exapps/{APP_ID}(/.*) \\1\n\
         \x20   http-request set-header EX-APP-ID {APP_ID}\n\
         \x20   http-request set-header AA-VERSION 32\n\
         \x20   server app 127.0.0.1:{remote_port}\n",
        super::WORKERS
    )
}
