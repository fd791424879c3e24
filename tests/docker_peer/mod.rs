//! Test peer: podman's Docker API service on a private socket (test-peers.md §1).
//!
//! Install and configure podman once with `tests/peers/podman/setup.sh` (CI does). Each test
//! starts its own `podman system service --time=0 unix://<tmpdir>/podman.sock` and the guard
//! kills exactly that process and removes the containers/volumes/images the test registered.
//! Containers share the host's podman storage, so names carry the pid and a test tag.

#![allow(dead_code)]

use std::cell::RefCell;
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lyre::control::reply::ControlReply;
use lyre::docker::{connect_engine, DockerCtx, Engine};

/// The registry-free image setup.sh imports (busybox, trap-on-TERM `sh` as PID 1).
pub const IMAGE: &str = "localhost/lyre-busybox:2";
const READY_DEADLINE: Duration = Duration::from_secs(20);

pub struct Podman {
    child: Child,
    dir: PathBuf,
    pub sock: PathBuf,
    containers: RefCell<Vec<String>>,
    volumes: RefCell<Vec<String>>,
    images: RefCell<Vec<String>>,
}

impl Podman {
    /// Start a private podman API service; panics with the fix if podman is not set up.
    pub fn start(tag: &str) -> Podman {
        let dir = std::env::temp_dir().join(format!("lyre-podman-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let sock = dir.join("podman.sock");
        let log = std::fs::File::create(dir.join("service.log")).expect("service log");
        let child = Command::new("podman")
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", sock.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("podman not found: run tests/peers/podman/setup.sh (as root) first");
        let podman = Podman {
            child,
            dir,
            sock,
            containers: RefCell::new(Vec::new()),
            volumes: RefCell::new(Vec::new()),
            images: RefCell::new(Vec::new()),
        };
        podman.wait_ready();
        let image = podman.request(
            "GET",
            &format!("/images/{}/json", IMAGE.replace('/', "%2F")),
            None,
        );
        assert_eq!(
            image.0, 200,
            "image {IMAGE} missing: run tests/peers/podman/setup.sh"
        );
        podman
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if self.sock.exists() && std::os::unix::net::UnixStream::connect(&self.sock).is_ok() {
                let (status, body) = self.request("GET", "/_ping", None);
                if status == 200 && body == b"OK" {
                    return;
                }
            }
            assert!(
                start.elapsed() < READY_DEADLINE,
                "podman service did not come up; see {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn engine(&self) -> Engine {
        Engine::Unix(self.sock.clone())
    }

    /// A context whose every port goes to this podman.
    pub fn ctx(&self, frp_certs_dir: &Path) -> DockerCtx {
        let mut ctx = DockerCtx::new(None, frp_certs_dir.to_path_buf());
        ctx.engine_override = Some(self.engine());
        ctx
    }

    /// A unique ExApp name (the test's containers start with `nc_app_<name>`); registered for
    /// cleanup with its default container and volume.
    pub fn app_name(&self, tag: &str) -> String {
        let name = format!("lyre{}{tag}", std::process::id());
        self.forget_container(&format!("nc_app_{name}"));
        self.forget_volume(&format!("nc_app_{name}_data"));
        name
    }

    pub fn forget_container(&self, c: &str) {
        self.containers.borrow_mut().push(c.to_string());
    }

    pub fn forget_volume(&self, v: &str) {
        self.volumes.borrow_mut().push(v.to_string());
    }

    pub fn forget_image(&self, i: &str) {
        self.images.borrow_mut().push(i.to_string());
    }

    /// A blocking side-channel request (std socket), for setup and checks outside Lyre.
    pub fn request(&self, method: &str, path: &str, json: Option<&str>) -> (u16, Vec<u8>) {
        let mut s = std::os::unix::net::UnixStream::connect(&self.sock).expect("connect podman");
        let body = json.unwrap_or("");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes())
            .and_then(|_| s.write_all(body.as_bytes()))
            .expect("write");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read");
        split_response(&raw)
    }

    /// `podman <args>` CLI, stdout as text; panics on failure (see [`podman`]).
    pub fn cli(&self, args: &[&str]) -> String {
        podman(args)
    }

    pub fn container_json(&self, c: &str) -> serde_json::Value {
        let (status, body) = self.request("GET", &format!("/containers/{c}/json"), None);
        assert_eq!(status, 200, "inspect {c}");
        serde_json::from_slice(&body).expect("inspect json")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for c in self.containers.borrow().iter() {
            let _ = Command::new("podman")
                .args(["rm", "-f", "-t", "0", c])
                .output();
        }
        for v in self.volumes.borrow().iter() {
            let _ = Command::new("podman")
                .args(["volume", "rm", "-f", v])
                .output();
        }
        for i in self.images.borrow().iter() {
            let _ = Command::new("podman").args(["rmi", "-f", i]).output();
        }
        // SAFETY: plain kill(2) of our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Status and body of a whole `Connection: close` response (body not de-chunked unless
/// chunked framing is announced).
pub fn split_response(raw: &[u8]) -> (u16, Vec<u8>) {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head")
        + 4;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status = head[9..12].parse().expect("status code");
    let body = &raw[head_end..];
    if head.contains("transfer-encoding: chunked") {
        return (status, dechunk(body));
    }
    (status, body.to_vec())
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk line");
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..line]).unwrap().trim(), 16).unwrap();
        raw = &raw[line + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// Run `f` on a monoio runtime with timers (io_uring when available, else epoll).
pub fn run<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("monoio runtime")
        .block_on(f)
}

/// Run `f` on the epoll driver.
pub fn run_legacy<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("monoio runtime")
        .block_on(f)
}

/// Held by tests of this binary that change the shared image store (pull, tag, commit,
/// remove): podman serialises those on one storage lock, and a pull racing another test's
/// image changes was seen to finish its stream before its image could be inspected.
pub fn image_store_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forward one request through an engine stream the way the proxy's passthrough does
/// (connect, write the head, read to close) and return status and body.
pub async fn passthrough(engine: &Engine, method: &str, path: &str) -> (u16, Vec<u8>) {
    let stream = connect_engine(engine, Duration::from_secs(5))
        .await
        .expect("connect engine");
    let head = format!("{method} {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("write head");
    let mut raw = Vec::new();
    while stream.read_some(&mut raw, 16 * 1024).await.expect("read") != 0 {}
    split_response(&raw)
}

pub fn body_json(r: &ControlReply) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", text(r)))
}

pub fn text(r: &ControlReply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// Sockets this process holds (for "no engine connection left open").
pub fn open_sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// A temp dir standing in for `$LYRE_CERTS_DIR/frp`, removed on drop.
pub struct FrpDir(PathBuf);

impl std::ops::Deref for FrpDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for FrpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A temp dir with fake FRP client certs (`ca.crt`, `client.crt`, `client.key`), or empty.
pub fn frp_certs_dir(tag: &str, with_files: bool) -> FrpDir {
    let dir = std::env::temp_dir().join(format!("lyre-docker-frp-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("frp dir");
    if with_files {
        for f in ["ca.crt", "client.crt", "client.key"] {
            std::fs::write(dir.join(f), format!("fake {f}\n")).expect("write cert");
        }
    }
    FrpDir(dir)
}

/// Debian's `docker-registry` on a free loopback port, holding [`IMAGE`] as
/// `127.0.0.1:<port>/nextcloud/test-exapp:1.0.0` (setup.sh marks 127.0.0.1 insecure).
pub struct Registry {
    child: Child,
    dir: PathBuf,
    pub port: u16,
}

impl Registry {
    pub fn start(tag: &str) -> Registry {
        let dir = std::env::temp_dir().join(format!("lyre-registry-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("registry dir");
        // The registry cannot take a pre-bound socket: pick a free port and hand it over.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let config = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
            dir.join("data").display()
        );
        std::fs::write(dir.join("reg.yml"), config).expect("registry config");
        let log = std::fs::File::create(dir.join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("reg.yml"))
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("docker-registry not found: run tests/peers/podman/setup.sh");
        let registry = Registry { child, dir, port };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < READY_DEADLINE, "registry did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = Command::new("podman")
            .args(["push", "-q", "--tls-verify=false", IMAGE, &registry.image()])
            .status()
            .expect("podman push");
        assert!(status.success(), "push {IMAGE} to the test registry");
        registry
    }

    /// Repository (without tag) of the pushed image.
    pub fn repo(&self) -> String {
        format!("127.0.0.1:{}/nextcloud/test-exapp", self.port)
    }

    pub fn image(&self) -> String {
        format!("{}:1.0.0", self.repo())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) of our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `podman <args>` CLI (host storage, no service needed), stdout as text; panics with
/// podman's stderr on failure.
pub fn podman(args: &[&str]) -> String {
    let out = Command::new("podman")
        .args(args)
        .output()
        .expect("run podman: run tests/peers/podman/setup.sh (as root) first");
    assert!(
        out.status.success(),
        "podman {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A unique image in podman's storage: busybox with a marker file (so its layer is new to
/// the engine), `/etc/os-release` (Debian-like), an `update-ca-certificates` stand-in, and a
/// main process that prints one line to stdout and one to stderr, then exits on TERM.
/// Returns the local name; the caller removes it.
pub fn build_talking_image(tag: &str, dir: &Path) -> String {
    let name = format!("localhost/lyre-talking-{tag}:1");
    let root = dir.join("rootfs");
    let script = format!(
        r#"set -e
mkdir -p {r}/bin {r}/etc {r}/tmp
cp "$(command -v busybox)" {r}/bin/busybox
for a in sh echo sleep cat ls env mkdir rm true false test tar; do ln -sf busybox {r}/bin/$a; done
printf 'PRETTY_NAME="Lyre test (Debian-like)"\nID=debian\n' > {r}/etc/os-release
printf '#!/bin/sh\necho ran > /tmp/update-ca-certificates.ran\n' > {r}/bin/update-ca-certificates
chmod +x {r}/bin/update-ca-certificates
echo "{tag} $$ $(date +%s%N)" > {r}/marker
tar -C {r} -cf {d}/rootfs.tar .
"#,
        r = root.display(),
        d = dir.display(),
    );
    let st = std::process::Command::new("sh")
        .args(["-c", &script])
        .status()
        .expect("sh");
    assert!(st.success(), "build rootfs for {name}");
    let cmd = r#"CMD ["/bin/sh", "-c", "echo lyre-exapp stdout; echo lyre-exapp stderr >&2; trap \"exit 0\" TERM; sleep 3600 & wait"]"#;
    let tar = dir.join("rootfs.tar");
    podman(&[
        "import",
        "-q",
        "--change",
        cmd,
        &tar.to_string_lossy(),
        &name,
    ]);
    name
}
