//! Shared harness for the FRP integration tests: Lyre's FRP server in-process on a monoio
//! thread, the REAL frpc 0.65 as a child process (killed on drop), echo backends, and port
//! picking for the fixed remote ports frpc asks for.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use lyre::config::Secret;
use lyre::frp::{BanHook, FrpContext};

pub const SHARED_KEY: &str = "test-shared-key-123";

/// Where the real frpc lives. Missing binary = FAIL with the fix, never a skip.
pub fn frpc_path() -> PathBuf {
    let p = std::env::var_os("LYRE_FRPC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".peers/frp/frpc"));
    assert!(
        p.is_file(),
        "frpc not found at {} : run tests/peers/install_frp.sh (or set LYRE_FRPC=/path/to/frpc 0.61-0.65)",
        p.display()
    );
    p
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "lyre-frp-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A free port inside HaRP's ExApp range. Distinct per call within this process; checked
/// free by binding (other processes may race, the window is tiny).
pub fn pick_remote_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 23000 + (std::process::id() % 40) as u16 * 20;
    for _ in 0..1000 {
        let off = NEXT.fetch_add(1, Ordering::Relaxed) % 1000;
        let p = 23000 + (base - 23000 + off) % 1000;
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port in 23000-23999");
}

/// Counts failed logins reported through the ban hook.
pub struct CountingBans(pub Arc<AtomicUsize>);

impl BanHook for CountingBans {
    fn is_banned(&self, _ip: IpAddr) -> bool {
        false
    }
    fn record_failure(&self, _ip: IpAddr) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

pub struct Server {
    pub port: u16,
    pub failures: Arc<AtomicUsize>,
    pub pki: Option<lyre::tls::PkiPaths>,
}

/// Start Lyre's FRP server on 127.0.0.1:0 in a monoio thread (lives until the test process
/// exits). `tls` = generate HaRP-style certificates and require mTLS.
pub fn start_server(tls: bool) -> Server {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let pki = tls.then(|| lyre::tls::ensure_frp_pki(&temp_dir("certs"), 30).unwrap());
    let failures = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let f = failures.clone();
    let p = pki.clone();
    std::thread::spawn(move || {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async move {
            let cfg = p.as_ref().map(|p| lyre::tls::server_config(p).unwrap());
            let tls = lyre::tls::FrpTls::from_mtls(cfg).unwrap();
            let ctx = FrpContext::new(Secret::new(SHARED_KEY.into()), tls)
                .with_bans(Box::new(CountingBans(f)));
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            lyre::frp::serve_frp(listener, Rc::new(ctx)).await;
        });
    });
    let port = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("frp server thread started");
    Server {
        port,
        failures,
        pki,
    }
}

pub enum Backend {
    Tcp(u16),
    Unix(PathBuf),
}

pub struct ProxyOpts {
    pub name: String,
    pub remote_port: u16,
    pub backend: Backend,
    pub use_encryption: bool,
    pub use_compression: bool,
}

impl ProxyOpts {
    pub fn tcp(name: &str, remote_port: u16, local_port: u16) -> ProxyOpts {
        ProxyOpts {
            name: name.into(),
            remote_port,
            backend: Backend::Tcp(local_port),
            use_encryption: false,
            use_compression: false,
        }
    }
}

pub struct FrpcOpts {
    pub server_port: u16,
    /// Certificates for mTLS, or None for `transport.tls.enable = false`.
    pub tls: Option<lyre::tls::PkiPaths>,
    /// With `tls: None`: still `transport.tls.enable = true` (frpc's default), with no
    /// certificate and no CA, so frpc verifies nothing (frp-protocol §1.4).
    pub unverified_tls: bool,
    /// `transport.tls.disableCustomTLSFirstByte` (frpc default true).
    pub disable_custom_first_byte: bool,
    pub tcp_mux: bool,
    pub token: String,
    pub login_fail_exit: bool,
    /// Extra top-level TOML lines.
    pub extra: String,
    pub proxies: Vec<ProxyOpts>,
}

impl FrpcOpts {
    pub fn new(server: &Server, proxies: Vec<ProxyOpts>) -> FrpcOpts {
        FrpcOpts {
            server_port: server.port,
            tls: server.pki.clone(),
            unverified_tls: false,
            disable_custom_first_byte: true,
            tcp_mux: true,
            token: SHARED_KEY.into(),
            login_fail_exit: false,
            extra: String::new(),
            proxies,
        }
    }

    pub fn toml(&self, log: &Path) -> String {
        let mut s = format!(
            "serverAddr = \"127.0.0.1\"\nserverPort = {}\nloginFailExit = {}\nmetadatas.token = \"{}\"\n\
             log.to = \"{}\"\nlog.level = \"trace\"\nlog.disablePrintColor = true\ntransport.tcpMux = {}\n",
            self.server_port,
            self.login_fail_exit,
            self.token,
            log.display(),
            self.tcp_mux
        );
        s.push_str(&self.extra);
        match &self.tls {
            None if self.unverified_tls => s.push_str(&format!(
                "transport.tls.enable = true\ntransport.tls.disableCustomTLSFirstByte = {}\n",
                self.disable_custom_first_byte
            )),
            None => s.push_str("transport.tls.enable = false\n"),
            Some(p) => s.push_str(&format!(
                "transport.tls.enable = true\ntransport.tls.certFile = \"{}\"\ntransport.tls.keyFile = \"{}\"\n\
                 transport.tls.trustedCaFile = \"{}\"\ntransport.tls.serverName = \"harp.nc\"\n\
                 transport.tls.disableCustomTLSFirstByte = {}\n",
                p.client_crt.display(),
                p.client_key.display(),
                p.ca_crt.display(),
                self.disable_custom_first_byte
            )),
        }
        for p in &self.proxies {
            s.push_str(&format!(
                "\n[[proxies]]\nname = \"{}\"\ntype = \"tcp\"\nremotePort = {}\n\
                 transport.useEncryption = {}\ntransport.useCompression = {}\n",
                p.name, p.remote_port, p.use_encryption, p.use_compression
            ));
            match &p.backend {
                Backend::Tcp(port) => {
                    s.push_str(&format!("localIP = \"127.0.0.1\"\nlocalPort = {port}\n"))
                }
                Backend::Unix(path) => s.push_str(&format!(
                    "[proxies.plugin]\ntype = \"unix_domain_socket\"\nunixPath = \"{}\"\n",
                    path.display()
                )),
            }
        }
        s
    }
}

/// A running frpc; killed (SIGKILL) and reaped on drop.
pub struct Frpc {
    pub child: Child,
    pub log: PathBuf,
    pub config: PathBuf,
}

impl Frpc {
    pub fn start(opts: &FrpcOpts) -> Frpc {
        let dir = temp_dir("frpc");
        let log = dir.join("frpc.log");
        let config = dir.join("frpc.toml");
        std::fs::write(&config, opts.toml(&log)).unwrap();
        Self::start_with_config(config, log)
    }

    pub fn start_with_config(config: PathBuf, log: PathBuf) -> Frpc {
        let child = Command::new(frpc_path())
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn frpc");
        Frpc { child, log, config }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Poll the log until it contains `needle` (deadline, no fixed sleeps).
    pub fn wait_log(&self, needle: &str, within: Duration) {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if self.log_text().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "frpc log never showed {needle:?} within {within:?}; log:\n{}",
            self.log_text()
        );
    }

    /// Wait until frpc exits; returns its status.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Frpc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// TCP echo backend on 127.0.0.1:0, a thread per connection.
pub fn tcp_echo() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || echo(c));
        }
    });
    port
}

fn echo<S: Read + Write>(mut c: S) {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if c.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Unix-socket echo backend (the ExApp side of HaRP's `unix_domain_socket` plugin).
pub fn unix_echo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || echo(c));
        }
    });
}

/// Connect to the tunnel's compatibility listener, retrying until it is up.
pub fn connect_tunnel(port: u16, within: Duration) -> TcpStream {
    let end = Instant::now() + within;
    loop {
        match TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                return s;
            }
            Err(e) if Instant::now() > end => panic!("tunnel port {port} never accepted: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// One round trip through the tunnel: send `msg`, expect it echoed back.
pub fn echo_once(port: u16, msg: &[u8]) {
    let mut s = connect_tunnel(port, Duration::from_secs(15));
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("echo through tunnel port {port}: {e}"));
    assert_eq!(got, msg);
}

/// Proxy registered and serving: the listener accepts and echoes.
pub fn wait_tunnel_echo(frpc: &Frpc, port: u16) {
    frpc.wait_log("start proxy success", Duration::from_secs(20));
    echo_once(port, b"hello-frp");
}
