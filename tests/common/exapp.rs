//! Peers for the ExApp-routing tests (tests/exapp_*.rs): the fake Nextcloud
//! (tests/peers/fake_nc.py, stdlib Python), a real nc_py_api ExApp in direct mode
//! (tests/peers/exapp/main.py from `.peers/venv`), `lyre serve` wired to both, and a raw
//! client that tells an HTTP answer from a silent drop.
//!
//! Conventions shared by the tests: shared key [`KEY`], app id [`APP_ID`] with secret
//! [`SECRET`], the routes of [`standard_routes`], and two Nextcloud sessions:
//! [`ALICE_COOKIE`] (user `alice`, level 1) and [`ROOT_COOKIE`] (user `root`, level 2).

use std::io;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use super::http::{Conn, Response};
use super::{free_port, repo_root, venv_python, Lyre, Proc, TempDir};

/// The appliance's shared key (`HP_SHARED_KEY`), also the fake Nextcloud's daemon key.
pub const KEY: &str = "lyre-test-shared-key";
pub const APP_ID: &str = "testapp";
pub const SECRET: &str = "s3cret";
pub const APP_VERSION: &str = "1.0.0";
/// `oc_sessionPassphrase` of a level-1 user `alice` in the fake Nextcloud.
pub const ALICE_COOKIE: &str = "pp-alice";
/// `oc_sessionPassphrase` of an admin (level 2) `root`.
pub const ROOT_COOKIE: &str = "pp-root";
/// How long a drop/answer may take before the raw client gives up.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// Routes of the test app: PUBLIC `^/public`, USER `^/user`, ADMIN `^/admin`, PUBLIC with
/// brute-force protection on 401 `^/bf`, USER websocket `^/ws`.
pub fn standard_routes() -> Value {
    json!([
        {"url": "^/public", "access_level": 0},
        {"url": "^/user", "access_level": 1},
        {"url": "^/admin", "access_level": 2},
        {"url": "^/bf", "access_level": 0, "bruteforce_protection": [401]},
        {"url": "^/ws", "access_level": 1},
    ])
}

/// The ExApp record AppAPI would return/push for an app on 127.0.0.1:`port`.
pub fn record(port: u16, routes: Value) -> Value {
    json!({
        "exapp_token": SECRET,
        "exapp_version": APP_VERSION,
        "host": "127.0.0.1",
        "port": port,
        "routes": routes,
    })
}

/// Fake Nextcloud config knowing [`APP_ID`] at `exapp_port` and the two sessions.
pub fn nc_config(exapp_port: u16) -> Value {
    json!({
        "shared_key": KEY,
        "apps": {APP_ID: record(exapp_port, standard_routes())},
        "users": {
            ALICE_COOKIE: {"user_id": "alice", "access_level": 1},
            ROOT_COOKIE: {"user_id": "root", "access_level": 2},
        },
    })
}

/// tests/peers/fake_nc.py, killed on drop.
pub struct FakeNc {
    pub port: u16,
    proc: Proc,
    _dir: TempDir,
}

impl FakeNc {
    pub fn start(config: &Value) -> FakeNc {
        let dir = TempDir::new("fake-nc");
        let log = dir.path().join("fake_nc.log");
        let mut cmd = Command::new("python3");
        cmd.arg("-u")
            .arg(repo_root().join("tests/peers/fake_nc.py"))
            .env("FAKE_NC_CONFIG", config.to_string())
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let (proc, port) = Proc::spawn_port_line("fake_nc.py", cmd, log);
        FakeNc {
            port,
            proc,
            _dir: dir,
        }
    }

    /// `NC_INSTANCE_URL` for Lyre.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn control(&self, method: &str, path: &str, body: &str) -> Value {
        let mut c = Conn::connect(self.port);
        c.send(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: fake-nc\r\nConnection: close\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        let r = c.read_response();
        assert_eq!(
            r.head.status,
            200,
            "fake_nc {method} {path}: {}",
            r.body_str()
        );
        r.json()
    }

    /// Replace the whole config.
    pub fn set_config(&self, config: &Value) {
        self.control("POST", "/_fake/config", &config.to_string());
    }

    /// Merge top-level keys into the config.
    pub fn merge_config(&self, config: &Value) {
        self.control("POST", "/_fake/config?merge=1", &config.to_string());
    }

    /// `{"exapp-meta": {app: n}, "user-info": {app: n}, "connections": n, "requests": n}`.
    pub fn counts(&self) -> Value {
        self.control("GET", "/_fake/counts", "")
    }

    pub fn meta_calls(&self, app: &str) -> u64 {
        self.counts()["exapp-meta"][app].as_u64().unwrap_or(0)
    }

    pub fn user_calls(&self, app: &str) -> u64 {
        self.counts()["user-info"][app].as_u64().unwrap_or(0)
    }

    /// Every Nextcloud callback so far (both endpoints, all apps).
    pub fn requests(&self) -> u64 {
        self.counts()["requests"].as_u64().unwrap_or(0)
    }

    /// The last request to `endpoint` (`exapp-meta` or `user-info`): `{"method", "target",
    /// "path", "query", "headers": [[name, value], ...]}`; fails if there was none.
    pub fn last(&self, endpoint: &str) -> Value {
        self.control("GET", &format!("/_fake/last?endpoint={endpoint}"), "")
    }

    pub fn reset(&self) {
        self.control("POST", "/_fake/reset", "");
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }
}

/// `python -u tests/peers/exapp/<script>` from `.peers/venv` with nothing inherited but PATH,
/// and the variables every nc_py_api ExApp needs (`APP_VERSION` is [`APP_VERSION`]). The
/// caller adds where it listens: `APP_HOST`/`APP_PORT`, `HP_SHARED_KEY`, `HP_EXAPP_SOCK`.
pub fn nc_py_exapp_command(script: &str, app_id: &str, secret: &str) -> Command {
    let mut cmd = Command::new(venv_python());
    cmd.arg("-u")
        .arg(repo_root().join("tests/peers/exapp").join(script))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("APP_ID", app_id)
        .env("APP_VERSION", APP_VERSION)
        .env("APP_SECRET", secret)
        // The ExApp never calls Nextcloud in these tests; a closed port makes any
        // accidental call fail loudly in its log.
        .env("NEXTCLOUD_URL", "http://127.0.0.1:9");
    cmd
}

/// tests/peers/exapp/main.py: nc_py_api on TCP 127.0.0.1:`port` (HP_SHARED_KEY empty).
pub struct NcPyExApp {
    pub port: u16,
    proc: Proc,
    _dir: TempDir,
}

impl NcPyExApp {
    pub fn start() -> NcPyExApp {
        let dir = TempDir::new("exapp");
        let port = free_port();
        let mut cmd = nc_py_exapp_command("main.py", APP_ID, SECRET);
        cmd.env("APP_HOST", "127.0.0.1")
            .env("APP_PORT", port.to_string())
            .env("HP_SHARED_KEY", "");
        let mut proc = Proc::spawn("nc_py_api exapp", cmd, dir.path().join("exapp.log"));
        proc.wait_listening(port);
        NcPyExApp {
            port,
            proc,
            _dir: dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }
}

/// `lyre serve` (no static routes: everything goes through HaRP's decision) calling back
/// `nc`, with the caller's extra variables.
pub fn lyre_for(nc: &FakeNc, extra: &[(&str, &str)]) -> Lyre {
    let url = nc.url();
    let mut env: Vec<(&str, &str)> = vec![
        ("HP_SHARED_KEY", KEY),
        ("NC_INSTANCE_URL", url.as_str()),
        ("LYRE_WORKERS", "2"),
    ];
    env.extend_from_slice(extra);
    Lyre::start(&env, &[])
}

/// What became of one request.
#[derive(Debug)]
pub enum Outcome {
    Answered(Response),
    /// Closed (FIN or RST) without a single response byte.
    Dropped,
}

impl Outcome {
    /// The response, or a failure naming `what`.
    pub fn answered(self, what: &str) -> Response {
        match self {
            Outcome::Answered(r) => r,
            Outcome::Dropped => panic!("{what}: connection dropped, expected an answer"),
        }
    }

    pub fn is_dropped(&self) -> bool {
        matches!(self, Outcome::Dropped)
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Answered(r) => Some(r.head.status),
            Outcome::Dropped => None,
        }
    }
}

/// A request head: `Host`, `Connection: close`, then `headers` in order.
pub fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut s = format!("{method} {target} HTTP/1.1\r\nHost: lyre.test\r\nConnection: close\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// Send `bytes` on a fresh connection and read one response or observe a drop.
pub fn send_raw(port: u16, bytes: &[u8]) -> Outcome {
    let mut c = Conn::connect(port);
    c.set_timeout(ANSWER_TIMEOUT);
    if c.send_lenient(bytes).is_err() {
        return Outcome::Dropped;
    }
    read_outcome(&mut c)
}

/// One response on `c`, or `Dropped` if it closes without any byte.
pub fn read_outcome(c: &mut Conn) -> Outcome {
    match c.try_read_response(false) {
        Ok(r) => Outcome::Answered(r),
        Err(e)
            if c.buffered().is_empty()
                && matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                ) =>
        {
            Outcome::Dropped
        }
        Err(e) => panic!("reading a response: {e}"),
    }
}

/// `GET target` with `headers` (Connection: close).
pub fn get(port: u16, target: &str, headers: &[(&str, &str)]) -> Outcome {
    send_raw(port, &request("GET", target, headers))
}

/// A `Cookie` header value carrying `passphrase` as Nextcloud's session cookie.
pub fn session_cookie(passphrase: &str) -> String {
    format!("oc_sessionPassphrase={passphrase}; nc_sameSiteCookielax=true")
}

/// Header `name` in the ExApp echo (`headers` array of [name, value]), last occurrence.
pub fn echoed_header(echo: &Value, name: &str) -> Option<String> {
    echo["headers"]
        .as_array()?
        .iter()
        .rev()
        .find(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .and_then(|h| h[1].as_str().map(str::to_string))
}

/// Standard padded base64 (the AUTHORIZATION-APP-API encoding).
pub fn b64(s: &str) -> String {
    super::ws::base64(s.as_bytes())
}

/// Run `f(i)` on `n` threads released together; results in index order.
pub fn concurrently<T: Send + 'static>(
    n: usize,
    f: impl Fn(usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (f, b) = (f.clone(), barrier.clone());
            thread::spawn(move || {
                b.wait();
                f(i)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("request thread panicked"))
        .collect()
}
