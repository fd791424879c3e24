//! AppAPI's side of the Docker control plane, for tests that drive `lyre serve` through its
//! public listener (harp-compat.md §1.4, §3.4, §4.3, §4.4, §4.6):
//!
//! - [`AppApi`]: requests exactly as AppAPI's `DockerActions` sends them (`harp-shared-key`,
//!   `docker-engine-port`, HTTP Basic `app_api_haproxy_user:<key>`, Nextcloud's user agent).
//! - Engines behind ports: [`UnixRelay`] (TCP -> unix socket, a "remote engine" on
//!   127.0.0.1:<port>), [`HungEngine`] (accepts, never answers), [`full_backlog_listener`]
//!   (connects never complete).
//! - [`HeldRelay`]: a TCP relay in front of a registry that holds back blob bytes until the
//!   test releases it, to show that an image pull streams through Lyre.
//! - [`engine_connections`]: how many unix sockets a process holds to a given socket path.
//! - [`in_netns`]: run a closure in a fresh network namespace (fixed ports such as 24001
//!   without touching the host's).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::http::{Conn, Response};
use super::AcceptLoop;

/// The shared key `common::Lyre` runs with (LyreEnv's default `HP_SHARED_KEY`).
pub const SHARED_KEY: &str = "lyre-test-shared-key";
/// AppAPI's Docker API version prefix (app config `docker_api_version`, default `v1.44`).
pub const API: &str = "/exapps/app_api/v1.44";
/// How long a held relay waits for the test before letting bytes through anyway.
const HOLD_SAFETY: Duration = Duration::from_secs(30);

/// AppAPI talking to the appliance at 127.0.0.1:`port` (one connection per call, as its
/// HTTP client does for these calls).
#[derive(Clone)]
pub struct AppApi {
    pub port: u16,
    pub key: String,
    /// `docker-engine-port` header value; `None` leaves the header out.
    pub engine_port: Option<String>,
}

impl AppApi {
    pub fn new(port: u16, engine_port: u16) -> AppApi {
        AppApi {
            port,
            key: SHARED_KEY.to_string(),
            engine_port: Some(engine_port.to_string()),
        }
    }

    pub fn with_key(&self, key: &str) -> AppApi {
        AppApi {
            key: key.to_string(),
            ..self.clone()
        }
    }

    pub fn with_engine_port(&self, value: Option<&str>) -> AppApi {
        AppApi {
            engine_port: value.map(str::to_string),
            ..self.clone()
        }
    }

    /// The request bytes AppAPI sends for `method path` with an optional JSON body, plus
    /// `extra` header lines (each ending in CRLF).
    pub fn request_bytes(&self, method: &str, path: &str, body: &[u8], extra: &str) -> Vec<u8> {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("app_api_haproxy_user:{}", self.key));
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUser-Agent: Nextcloud Server Crawler\r\n\
             Accept: */*\r\nAuthorization: Basic {basic}\r\nharp-shared-key: {}\r\n",
            self.port, self.key
        );
        if let Some(p) = &self.engine_port {
            head.push_str(&format!("docker-engine-port: {p}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str(extra);
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body);
        out
    }

    /// Opens a connection and sends the request; the caller reads the answer.
    pub fn send(&self, method: &str, path: &str, body: &[u8]) -> Conn {
        let mut c = Conn::connect(self.port);
        c.send(&self.request_bytes(method, path, body, ""));
        c
    }

    /// One whole call on a fresh connection.
    pub fn call(&self, method: &str, path: &str, body: &[u8]) -> Response {
        let mut c = self.send(method, path, body);
        c.try_read_response(method == "HEAD")
            .unwrap_or_else(|e| panic!("{method} {path}: reading the answer: {e}"))
    }

    /// `POST /exapps/app_api/docker/exapp/<action>` with a JSON body.
    pub fn exapp(&self, action: &str, body: &serde_json::Value) -> Response {
        self.exapp_raw(action, body.to_string().as_bytes())
    }

    pub fn exapp_raw(&self, action: &str, body: &[u8]) -> Response {
        self.call(
            "POST",
            &format!("/exapps/app_api/docker/exapp/{action}"),
            body,
        )
    }

    /// A passthrough call: `path` is appended to `/exapps/app_api/v1.44`.
    pub fn engine(&self, method: &str, path: &str) -> Response {
        self.call(method, &format!("{API}{path}"), b"")
    }
}

/// `{"name": name, "instance_id": ""}`: AppAPI's name payload.
pub fn name_body(name: &str) -> serde_json::Value {
    serde_json::json!({ "name": name, "instance_id": "" })
}

/// Unix stream sockets `pid` holds whose peer is bound to `sock` (its connections to the
/// engine listening there). Reads `/proc/<pid>/fd` and `ss -xn` (peer inodes).
pub fn engine_connections(pid: u32, sock: &Path) -> usize {
    let mine: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/<pid>/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|t| {
            let t = t.to_string_lossy().into_owned();
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect();
    let out = std::process::Command::new("ss")
        .args(["-xn"])
        .output()
        .expect("run `ss -xn` (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    // Columns: Netid State Recv-Q Send-Q Local-Address Local-Inode Peer-Address Peer-Inode
    let rows: Vec<(String, u64, u64)> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            Some((f[4].to_string(), f[5].parse().ok()?, f[7].parse().ok()?))
        })
        .collect();
    let sock = sock.to_string_lossy();
    rows.iter()
        .filter(|(_, ino, _)| mine.contains(ino))
        .filter(|(_, _, peer)| {
            rows.iter()
                .any(|(addr, ino, _)| ino == peer && addr.as_str() == sock)
        })
        .count()
}

/// Polls until `pid` holds no connection to `sock` (io_uring closes asynchronously), and
/// returns the count seen last.
pub fn engine_connections_settled(pid: u32, sock: &Path, within: Duration) -> usize {
    let end = Instant::now() + within;
    loop {
        let n = engine_connections(pid, sock);
        if n == 0 || Instant::now() >= end {
            return n;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Copy `from` -> `to` until EOF or error, then half-close `to`.
fn pipe<R: Read, W: Write>(mut from: R, mut to: W, close: impl FnOnce(&W)) {
    let _ = std::io::copy(&mut from, &mut to);
    close(&to);
}

/// A "remote Docker engine": a TCP listener relaying every connection to a unix socket
/// (what frps + frpc do for HaRP's ports 24001-24099). Counts open relayed connections.
pub struct UnixRelay {
    pub addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    open: Arc<AtomicU64>,
    _loop: AcceptLoop,
}

impl UnixRelay {
    /// Listens on `addr` (e.g. `127.0.0.1:24001` inside [`in_netns`]) and relays to `sock`.
    pub fn start(addr: &str, sock: &Path) -> UnixRelay {
        let listener =
            TcpListener::bind(addr).unwrap_or_else(|e| panic!("relay: bind {addr}: {e}"));
        let (accepted, open) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (acc, op, sock) = (accepted.clone(), open.clone(), sock.to_path_buf());
        let accept_loop = AcceptLoop::spawn(listener, move |tcp| {
            acc.fetch_add(1, Ordering::SeqCst);
            let Ok(unix) = UnixStream::connect(&sock) else {
                return;
            };
            op.fetch_add(1, Ordering::SeqCst);
            relay_pair(tcp, unix, op.clone());
        });
        UnixRelay {
            addr: accept_loop.addr,
            accepted,
            open,
            _loop: accept_loop,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Relayed connections not yet closed in both directions.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::SeqCst)
    }
}

fn relay_pair(tcp: TcpStream, unix: UnixStream, open: Arc<AtomicU64>) {
    let (Ok(tcp2), Ok(unix2)) = (tcp.try_clone(), unix.try_clone()) else {
        open.fetch_sub(1, Ordering::SeqCst);
        return;
    };
    let up = thread::spawn(move || {
        pipe(tcp, unix, |u| {
            let _ = u.shutdown(Shutdown::Write);
        })
    });
    thread::spawn(move || {
        pipe(unix2, tcp2, |t| {
            let _ = t.shutdown(Shutdown::Write);
        });
        let _ = up.join();
        open.fetch_sub(1, Ordering::SeqCst);
    });
}

/// An engine that accepts connections and never answers. Keeps them to see whether the
/// client (Lyre) closes its side.
pub struct HungEngine {
    pub port: u16,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    _loop: AcceptLoop,
}

impl HungEngine {
    pub fn start() -> HungEngine {
        let conns = Arc::new(Mutex::new(Vec::new()));
        let cs = conns.clone();
        let accept_loop = AcceptLoop::on_free_port("hung engine", move |s| {
            cs.lock().expect("lock").push(s);
        });
        HungEngine {
            port: accept_loop.port(),
            conns,
            _loop: accept_loop,
        }
    }

    pub fn accepted(&self) -> usize {
        self.conns.lock().expect("lock").len()
    }

    /// True when every accepted connection was closed by the client within `within`
    /// (request bytes are read and discarded).
    pub fn all_closed_by_client(&self, within: Duration) -> bool {
        let end = Instant::now() + within;
        let conns = self.conns.lock().expect("lock");
        conns.iter().all(|s| {
            let mut s = s;
            let mut buf = [0u8; 4096];
            loop {
                let left = end.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                let _ = s.set_read_timeout(Some(left));
                match s.read(&mut buf) {
                    Ok(0) => return true,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                    Err(_) => return false,
                }
            }
        })
    }
}

/// A listener whose accept queue is full: further connects never complete (the kernel
/// drops their SYNs), like an engine host that does not answer. Keep both values alive.
pub fn full_backlog_listener() -> (TcpListener, TcpStream) {
    use std::os::fd::AsRawFd;
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    // SAFETY: listen(2) on our own listening socket, changing its backlog to 0.
    let rc = unsafe { libc::listen(l.as_raw_fd(), 0) };
    assert_eq!(rc, 0, "listen(fd, 0)");
    let addr = l.local_addr().expect("local_addr");
    // Backlog 0 admits one queued connection: take that slot.
    let filler = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("filler connect");
    let probe = TcpStream::connect_timeout(&addr, Duration::from_millis(300));
    assert!(
        probe.is_err(),
        "accept queue is not full: connect completed"
    );
    (l, filler)
}

/// A TCP relay in front of a registry that holds back registry -> podman bytes beyond
/// `hold_after` per connection until [`HeldRelay::release`] (or a 30 s safety valve):
/// an image pull through it cannot finish before the test says so.
pub struct HeldRelay {
    pub port: u16,
    gate: Arc<Gate>,
    _loop: AcceptLoop,
}

#[derive(Default)]
struct Gate {
    released: Mutex<bool>,
    cv: Condvar,
    /// Some bytes were actually held back (the layer was larger than `hold_after`).
    held: AtomicBool,
    /// The safety valve opened the gate (the test never released it).
    timed_out: AtomicBool,
}

impl Gate {
    fn wait(&self) {
        self.held.store(true, Ordering::SeqCst);
        let guard = self.released.lock().expect("lock");
        let (guard, res) = self
            .cv
            .wait_timeout_while(guard, HOLD_SAFETY, |r| !*r)
            .expect("wait");
        if res.timed_out() && !*guard {
            self.timed_out.store(true, Ordering::SeqCst);
        }
    }
}

impl HeldRelay {
    pub fn start(target_port: u16, hold_after: u64) -> HeldRelay {
        let gate = Arc::new(Gate::default());
        let g = gate.clone();
        let accept_loop = AcceptLoop::on_free_port("held relay", move |client| {
            let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                return;
            };
            held_pair(client, server, hold_after, g.clone());
        });
        HeldRelay {
            port: accept_loop.port(),
            gate,
            _loop: accept_loop,
        }
    }

    pub fn release(&self) {
        *self.gate.released.lock().expect("lock") = true;
        self.gate.cv.notify_all();
    }

    pub fn released(&self) -> bool {
        *self.gate.released.lock().expect("lock")
    }

    pub fn held_something(&self) -> bool {
        self.gate.held.load(Ordering::SeqCst)
    }

    pub fn safety_valve_opened(&self) -> bool {
        self.gate.timed_out.load(Ordering::SeqCst)
    }
}

fn held_pair(client: TcpStream, server: TcpStream, hold_after: u64, gate: Arc<Gate>) {
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    thread::spawn(move || {
        pipe(client, server, |s| {
            let _ = s.shutdown(Shutdown::Write);
        })
    });
    thread::spawn(move || {
        let (mut from, mut to) = (server2, client2);
        let mut sent = 0u64;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if sent + n as u64 > hold_after && !*gate.released.lock().expect("lock") {
                gate.wait();
            }
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
            sent += n as u64;
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Drop for HeldRelay {
    /// Opens the gate first, so no relay thread stays parked; `_loop` then stops accepting.
    fn drop(&mut self) {
        self.release();
    }
}

/// Runs `f` on a thread in a new network namespace with `lo` up: fixed loopback ports
/// (24001, 24050) are private to it, and processes spawned from `f` live in it too.
/// Unix sockets are filesystem objects and stay reachable. Needs CAP_SYS_ADMIN (root).
pub fn in_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare(2) of this thread's network namespace only.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "unshare(CLONE_NEWNET): {} (run the tests as root)",
                std::io::Error::last_os_error()
            );
            let st = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .expect("run `ip` (iproute2)");
            assert!(st.success(), "ip link set lo up");
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
