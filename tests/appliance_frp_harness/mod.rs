//! Whole-appliance FRP harness: `lyre serve` as a subprocess (common::Lyre) with its FRP
//! listener, the REAL frpc 0.65 configured exactly as HaRP's ExApp images do
//! (harp-compat.md §5.4), a real nc_py_api ExApp on a unix socket
//! (tests/peers/exapp/frp_main.py), fake_nc.py for user-info (common::exapp::FakeNc), and a
//! Rust byte server on a unix socket for bulk/concurrency checks. Records are pushed through
//! Lyre's control API (`POST /exapps/app_api/exapp_storage/<id>`), so no Nextcloud is needed
//! for routing.
//!
//! Every process is killed by its own pid on drop; on a failing test its log is printed.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::common::exapp::nc_py_exapp_command;
use crate::common::http::Conn;
use crate::common::{poll_until, repo_root, Lyre, Pattern, Proc, TempDir};

/// `HP_SHARED_KEY` of common::LyreEnv (the default every Lyre in the tests runs with).
pub const SHARED_KEY: &str = "lyre-test-shared-key";
pub const APP_ID: &str = "frpapp";
pub const APP_VERSION: &str = "1.0.0";
pub const APP_SECRET: &str = "s3cret-frp";
/// How long frpc may take to log in and register its proxy.
pub const TUNNEL_DEADLINE: Duration = Duration::from_secs(20);

/// The frpc binary from tests/peers/install.sh (or `LYRE_FRPC`); missing = FAIL.
pub fn frpc_bin() -> PathBuf {
    let p = std::env::var_os("LYRE_FRPC")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".peers/frp/frpc"));
    assert!(
        p.is_file(),
        "frpc not found at {}: run `bash tests/peers/install.sh`",
        p.display()
    );
    p
}

/// A free port in HaRP's ExApp range 23000-23999, distinct per call in this process.
pub fn pick_remote_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Offset by pid so concurrent test binaries rarely start on the same port.
    let base = (std::process::id() % 50) as u16 * 20 + 7;
    for _ in 0..1000 {
        let p = 23000 + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % 1000;
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port in 23000-23999");
}

/// `lyre serve` with its FRP listener; TLS on unless `tls == false`
/// (`HP_FRP_DISABLE_TLS=true`). `LYRE_CERTS_DIR` is `certs` so the generated PKI is known.
pub struct Appliance {
    pub lyre: Lyre,
    pub certs: TempDir,
    pub tls: bool,
}

impl Appliance {
    pub fn start(tls: bool, env: &[(&str, &str)]) -> Appliance {
        Appliance::start_in(TempDir::new("appl-certs"), tls, env)
    }

    /// Like [`Appliance::start`], over a certificates directory the caller prepared (an
    /// existing `frp/` in it is used as it is).
    pub fn start_in(certs: TempDir, tls: bool, env: &[(&str, &str)]) -> Appliance {
        let dir = certs.path().to_string_lossy().into_owned();
        let mut all: Vec<(&str, &str)> = vec![
            ("LYRE_CERTS_DIR", dir.as_str()),
            ("HP_FRP_DISABLE_TLS", if tls { "false" } else { "true" }),
        ];
        all.extend_from_slice(env);
        let lyre = Lyre::start(&all, &[]);
        if tls {
            let ca = certs.path().join("frp/ca.crt");
            assert!(ca.is_file(), "lyre did not generate {}", ca.display());
        }
        Appliance { lyre, certs, tls }
    }

    /// `$LYRE_CERTS_DIR/frp`, where Lyre generated HaRP's PKI.
    pub fn frp_certs(&self) -> Option<PathBuf> {
        self.tls.then(|| self.certs.path().join("frp"))
    }

    /// Pushes an ExApp record (204 expected), as AppAPI's HarpService does.
    pub fn push_record(&self, app_id: &str, record: &serde_json::Value) {
        let body = record.to_string();
        let mut c = Conn::connect(self.lyre.port);
        c.send(
            format!(
                "POST /exapps/app_api/exapp_storage/{app_id} HTTP/1.1\r\nHost: lyre\r\n\
                 harp-shared-key: {SHARED_KEY}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        let r = c.read_response();
        assert_eq!(r.head.status, 204, "push {app_id}: {}", r.body_str());
    }

    /// The record AppAPI pushes in FRP mode: host 127.0.0.1, port = frpc's remotePort.
    pub fn push_frp_app(&self, app_id: &str, remote_port: u16, routes: serde_json::Value) {
        self.push_record(
            app_id,
            &serde_json::json!({
                "exapp_token": APP_SECRET,
                "exapp_version": APP_VERSION,
                "host": "127.0.0.1",
                "port": remote_port,
                "routes": routes,
            }),
        );
    }
}

/// The usual tunnel of a test: a [`ByteServer`] behind a real frpc (HaRP's ExApp config) on
/// a fresh remote port, registered as [`APP_ID`] with one PUBLIC route.
pub struct ByteTunnel {
    pub bytes: ByteServer,
    pub port: u16,
    pub conf: FrpcConf,
    pub frpc: Frpc,
}

impl Appliance {
    pub fn byte_tunnel(&self) -> ByteTunnel {
        let bytes = ByteServer::start();
        let port = pick_remote_port();
        let conf = FrpcConf::harp(self, port, Local::Unix(bytes.sock.clone()));
        let frpc = Frpc::start_ready(&conf);
        self.push_frp_app(
            APP_ID,
            port,
            serde_json::json!([{"url": "^/", "access_level": 0}]),
        );
        ByteTunnel {
            bytes,
            port,
            conf,
            frpc,
        }
    }
}

/// Where frpc's proxy sends user connections.
#[derive(Clone)]
pub enum Local {
    /// HaRP's `unix_domain_socket` plugin.
    Unix(PathBuf),
    /// `localIP = 127.0.0.1`, `localPort`.
    Tcp(u16),
}

/// The ExApp-side frpc config of HaRP's `exapps_dev/start.sh` (harp-compat §5.4).
#[derive(Clone)]
pub struct FrpcConf {
    pub server_port: u16,
    /// `$LYRE_CERTS_DIR/frp` with client.crt/client.key/ca.crt, or None = TLS off.
    pub certs: Option<PathBuf>,
    pub token: String,
    pub name: String,
    pub remote_port: u16,
    pub local: Local,
    /// `transport.tcpMux = false` when false (start.sh leaves frpc's default: true).
    pub tcp_mux: bool,
    pub login_fail_exit: bool,
}

impl FrpcConf {
    pub fn harp(app: &Appliance, remote_port: u16, local: Local) -> FrpcConf {
        FrpcConf {
            server_port: app.lyre.frp_port,
            certs: app.frp_certs(),
            token: SHARED_KEY.into(),
            name: APP_ID.into(),
            remote_port,
            local,
            tcp_mux: true,
            login_fail_exit: false,
        }
    }

    pub fn toml(&self) -> String {
        let mut s = format!(
            "serverAddr = \"127.0.0.1\"\nserverPort = {}\nloginFailExit = {}\n",
            self.server_port, self.login_fail_exit
        );
        match &self.certs {
            Some(d) => s.push_str(&format!(
                "transport.tls.enable = true\ntransport.tls.certFile = \"{}\"\n\
                 transport.tls.keyFile = \"{}\"\ntransport.tls.trustedCaFile = \"{}\"\n\
                 transport.tls.serverName = \"harp.nc\"\n",
                d.join("client.crt").display(),
                d.join("client.key").display(),
                d.join("ca.crt").display()
            )),
            None => s.push_str("transport.tls.enable = false\n"),
        }
        if !self.tcp_mux {
            s.push_str("transport.tcpMux = false\n");
        }
        // Test-only: plain log lines (the rest is start.sh's config).
        s.push_str("log.disablePrintColor = true\n");
        s.push_str(&format!(
            "metadatas.token = \"{}\"\n\n[[proxies]]\nremotePort = {}\ntype = \"tcp\"\nname = \"{}\"\n",
            self.token, self.remote_port, self.name
        ));
        match &self.local {
            Local::Unix(p) => s.push_str(&format!(
                "[proxies.plugin]\ntype = \"unix_domain_socket\"\nunixPath = \"{}\"\n",
                p.display()
            )),
            Local::Tcp(port) => {
                s.push_str(&format!("localIP = \"127.0.0.1\"\nlocalPort = {port}\n"))
            }
        }
        s
    }
}

/// A running frpc (its dir holds frpc.toml and frpc.log).
pub struct Frpc {
    pub guard: Proc,
    pub conf: FrpcConf,
    _dir: TempDir,
}

impl Frpc {
    pub fn start(conf: &FrpcConf) -> Frpc {
        let dir = TempDir::new("frpc");
        let cfg = dir.path().join("frpc.toml");
        std::fs::write(&cfg, conf.toml()).expect("write frpc.toml");
        let mut cmd = Command::new(frpc_bin());
        cmd.arg("-c").arg(&cfg);
        let guard = Proc::spawn("frpc", cmd, dir.path().join("frpc.log"));
        Frpc {
            guard,
            conf: conf.clone(),
            _dir: dir,
        }
    }

    /// Starts frpc and waits until its proxy is registered.
    pub fn start_ready(conf: &FrpcConf) -> Frpc {
        let mut f = Frpc::start(conf);
        f.wait_proxy();
        f
    }

    pub fn wait_proxy(&mut self) {
        let name = self.conf.name.clone();
        self.guard
            .wait_log(&format!("[{name}] start proxy success"), TUNNEL_DEADLINE);
    }

    pub fn log(&self) -> String {
        self.guard.log()
    }
}

/// The nc_py_api ExApp (tests/peers/exapp/frp_main.py) listening on a unix socket.
pub struct ExApp {
    pub sock: PathBuf,
    pub guard: Proc,
    _dir: TempDir,
}

impl ExApp {
    pub fn start(remote_port: u16) -> ExApp {
        let dir = TempDir::new("exapp");
        let sock = dir.path().join("exapp.sock");
        let mut cmd = nc_py_exapp_command("frp_main.py", APP_ID, APP_SECRET);
        cmd.env("APP_PORT", remote_port.to_string())
            .env("HP_SHARED_KEY", SHARED_KEY)
            .env("HP_EXAPP_SOCK", &sock);
        let mut guard = Proc::spawn("exapp", cmd, dir.path().join("exapp.log"));
        let ok = poll_until(Duration::from_secs(30), || {
            guard.exited().is_none() && UnixStream::connect(&sock).is_ok()
        });
        if !ok {
            guard.kill();
            panic!(
                "nc_py_api ExApp never listened on {}:\n{}",
                sock.display(),
                guard.log()
            );
        }
        ExApp {
            sock,
            guard,
            _dir: dir,
        }
    }
}

/// A Rust HTTP/1.1 byte server on a unix socket (the ExApp side of frpc's plugin), a thread
/// per connection, keep-alive: `GET /bytes/<n>` = the first n bytes of [`Pattern`] with
/// Content-Length; `GET /slow/<n>` = the same, 64 KiB blocks, 20 ms apart (a transfer that
/// is still running when a test kills something); anything else = 200 "ok".
pub struct ByteServer {
    pub sock: PathBuf,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicU64>,
    _dir: TempDir,
}

impl ByteServer {
    pub fn start() -> ByteServer {
        let dir = TempDir::new("bytes");
        let sock = dir.path().join("bytes.sock");
        let l = UnixListener::bind(&sock).expect("bind byte server socket");
        let accepted = Arc::new(AtomicU64::new(0));
        let acc = accepted.clone();
        thread::spawn(move || {
            let pat = Arc::new(Pattern::new());
            for c in l.incoming() {
                let Ok(c) = c else { return };
                acc.fetch_add(1, Ordering::SeqCst);
                let pat = pat.clone();
                thread::spawn(move || serve_bytes(c, &pat));
            }
        });
        ByteServer {
            sock,
            accepted,
            _dir: dir,
        }
    }
}

fn serve_bytes(mut c: UnixStream, pat: &Pattern) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let end = loop {
            if let Some(i) = crate::common::http::find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            match c.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        let ok = if let Some(n) = num_after(&path, "/bytes/") {
            send_pattern(&mut c, pat, n, None)
        } else if let Some(n) = num_after(&path, "/slow/") {
            send_pattern(&mut c, pat, n, Some(Duration::from_millis(20)))
        } else {
            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_ok()
        };
        if !ok {
            return;
        }
    }
}

fn num_after(path: &str, prefix: &str) -> Option<u64> {
    let i = path.find(prefix)?;
    path[i + prefix.len()..]
        .split(['?', '/'])
        .next()?
        .parse()
        .ok()
}

fn send_pattern(c: &mut UnixStream, pat: &Pattern, n: u64, pace: Option<Duration>) -> bool {
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
    if c.write_all(head.as_bytes()).is_err() {
        return false;
    }
    let mut ok = true;
    pat.for_each_block(n, |b| {
        if ok {
            ok = c.write_all(b).is_ok();
            if let Some(p) = pace {
                thread::sleep(p);
            }
        }
    });
    ok
}

/// A request head for ExApp `app`'s path `rest` (anonymous user), keep-alive.
pub fn exapp_get(app: &str, rest: &str) -> Vec<u8> {
    format!("GET /exapps/{app}{rest} HTTP/1.1\r\nHost: lyre.test\r\n\r\n").into_bytes()
}

/// Header `name` (case-insensitive) in nc_py_api's echoed `headers` list.
pub fn echoed_header<'a>(j: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    j["headers"].as_array()?.iter().rev().find_map(|h| {
        let k = h[0].as_str()?;
        k.eq_ignore_ascii_case(name)
            .then(|| h[1].as_str())
            .flatten()
    })
}

/// Keep a path alive for a temp dir path argument.
pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
