//! `lyre::nextcloud::NcClient` against a real HTTP server: tests/peers/fake_nc.py (Python
//! stdlib), over http and https (an rcgen CA given as `LYRE_NC_CA_FILE`), plus raw
//! sockets for connection failures. Every scenario runs on each monoio driver the kernel
//! offers (epoll always, io_uring when available).
//!
//! Checklist rows: H-28 (exapp-meta request), H-47 (user-info forwards the request headers
//! minus host/content-length, plus harp-shared-key), H-51 (timeouts), §2.2 (5 s connect /
//! 25 s total, keep-alive pool).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lyre::config::{Config, ConfigError};
use lyre::nextcloud::{NcClient, NcError, NcResponse, NcTarget};
use lyre::runtime::{block_on, Driver};
use serde_json::{json, Value};

/// Request headers as `NcClient::user_info` takes them.
type Headers<'a> = &'a [(&'a [u8], &'a [u8])];

const KEY: &str = "Sh4redKey-for-tests";
const BAD_KEY: &[u8] = br#"{"message":"Harp shared key is not valid"}"#;

fn drivers() -> Vec<Driver> {
    let mut d = vec![Driver::Epoll];
    if monoio::utils::detect_uring() {
        d.push(Driver::IoUring);
    }
    eprintln!(
        "drivers: {:?}",
        d.iter().map(|d| d.name()).collect::<Vec<_>>()
    );
    d
}

fn run<F: std::future::Future>(driver: Driver, fut: F) -> F::Output {
    block_on(driver, fut).expect("build the monoio runtime")
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("lyre-nc-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(url: &str, dir: &Path) -> Config {
    config_with_ca(url, dir, None).expect("valid test config")
}

/// With `LYRE_NC_CA_FILE` set to `ca`, when given.
fn config_with_ca(url: &str, dir: &Path, ca: Option<&Path>) -> Result<Config, ConfigError> {
    let mut vars = vec![
        ("HP_SHARED_KEY", KEY.to_string()),
        ("NC_INSTANCE_URL", url.to_string()),
        ("LYRE_CERTS_DIR", dir.to_string_lossy().into_owned()),
    ];
    if let Some(ca) = ca {
        vars.push(("LYRE_NC_CA_FILE", ca.to_string_lossy().into_owned()));
    }
    Config::from_env(vars.into_iter().map(|(k, v)| (k.to_string(), v))).map(|(c, _)| c)
}

fn record(port: u16) -> Value {
    json!({"exapp_token": "s3cret", "exapp_version": "1.0.0", "host": "127.0.0.1",
           "port": port, "routes": [{"url": ".*", "access_level": 1}]})
}

fn base_config() -> Value {
    json!({
        "shared_key": KEY,
        "apps": {"app": record(9000), "other": record(9001)},
        "users": {"pass-alice": {"user_id": "alice", "access_level": 1},
                  "pass-root": {"user_id": "root", "access_level": 2}},
        "auth": {"Basic Ym9iOnB3": {"user_id": "bob", "access_level": 1}},
    })
}

/// Test TLS material: a CA and a leaf for `localhost` / 127.0.0.1 signed by it.
struct Pki {
    ca_pem: String,
    leaf_pem: String,
    leaf_key_pem: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf_params = CertificateParams::new(vec!["localhost".to_string()]).expect("leaf");
    leaf_params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("leaf cert");
    Pki {
        ca_pem: ca_cert.pem(),
        leaf_pem: leaf.pem(),
        leaf_key_pem: leaf_key.serialize_pem(),
    }
}

/// A running tests/peers/fake_nc.py, killed on drop.
struct FakeNc {
    child: Child,
    port: u16,
    /// Trust for the control client when the fake speaks TLS.
    tls: Option<Arc<rustls::ClientConfig>>,
    _dir: TempDir,
}

impl FakeNc {
    fn start(cfg: &Value, pki: Option<&Pki>) -> FakeNc {
        let dir = TempDir::new();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/fake_nc.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .env("FAKE_NC_CONFIG", cfg.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut tls = None;
        if let Some(p) = pki {
            let (cert, key) = (dir.0.join("leaf.pem"), dir.0.join("leaf.key"));
            std::fs::write(&cert, &p.leaf_pem).expect("write leaf");
            std::fs::write(&key, &p.leaf_key_pem).expect("write key");
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
            let ca = dir.0.join("ca.pem");
            std::fs::write(&ca, &p.ca_pem).expect("write ca");
            let ca = lyre::config::NcCaFile::load(&ca).expect("load ca");
            tls = Some(lyre::nextcloud::client_config(Some(&ca)).expect("control tls"));
        }
        let mut child = cmd
            .spawn()
            .expect("python3 must be installed to run fake_nc.py");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read PORT line");
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("fake_nc.py did not print PORT: {line:?}"));
        FakeNc {
            child,
            port,
            tls,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("https://localhost:{}", self.port),
            None => format!("http://127.0.0.1:{}/", self.port),
        }
    }

    /// One control request on its own connection; returns (status, JSON body).
    fn control(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to fake");
        tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let mut raw = Vec::new();
        match &self.tls {
            None => {
                let mut tcp = tcp;
                tcp.write_all(req.as_bytes()).expect("send control");
                let _ = tcp.read_to_end(&mut raw);
            }
            Some(cfg) => {
                let name = "localhost".try_into().expect("server name");
                let conn = rustls::ClientConnection::new(cfg.clone(), name).expect("tls");
                let mut s = rustls::StreamOwned::new(conn, tcp);
                s.write_all(req.as_bytes()).expect("send control");
                let _ = s.read_to_end(&mut raw);
            }
        }
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").expect("control response");
        let status = head[9..12].parse().expect("status");
        (status, serde_json::from_str(body).expect("control JSON"))
    }

    fn set(&self, cfg: &Value) {
        assert_eq!(self.control("POST", "/_fake/config", cfg).0, 200);
    }

    fn counts(&self) -> Value {
        self.control("GET", "/_fake/counts", &json!({})).1
    }

    fn reset(&self) {
        assert_eq!(self.control("POST", "/_fake/reset", &json!({})).0, 200);
    }
}

impl Drop for FakeNc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(fake: &FakeNc, dir: &Path) -> NcClient {
    NcClient::new(&config(&fake.url(), dir)).expect("client")
}

fn json_body(r: &NcResponse) -> Value {
    serde_json::from_slice(&r.body).expect("JSON body")
}

#[test]
fn h28_exapp_meta_statuses_bodies_and_keep_alive() {
    let fake = FakeNc::start(&base_config(), None);
    let dir = TempDir::new();
    for driver in drivers() {
        for framing in ["length", "chunked"] {
            fake.reset();
            let mut cfg = base_config();
            cfg["framing"] = json!(framing);
            fake.set(&cfg);
            let c = client(&fake, &dir.0);
            run(driver, async {
                let r = c.exapp_meta("app").await.expect("meta");
                assert_eq!(r.status, 200, "{framing}");
                assert_eq!(json_body(&r), record(9000), "{framing}");
                let r = c.exapp_meta("missing").await.expect("meta for unknown app");
                assert_eq!((r.status, r.body.as_slice()), (401, BAD_KEY), "{framing}");
                for _ in 0..3 {
                    assert_eq!(c.exapp_meta("other").await.expect("meta").status, 200);
                }
            });
            let stats = c.stats();
            assert_eq!(
                (stats.connects, stats.reuses),
                (1, 4),
                "{framing} {stats:?}"
            );
            let counts = fake.counts();
            assert_eq!(
                counts["connections"], 1,
                "{framing}: one kept-alive connection"
            );
            assert_eq!(
                counts["exapp-meta"],
                json!({"app": 1, "missing": 1, "other": 3})
            );
        }
    }
}

#[test]
fn wrong_key_is_401_and_close_framing_opens_new_connections() {
    let mut cfg = base_config();
    cfg["framing"] = json!("close");
    let fake = FakeNc::start(&cfg, None);
    let dir = TempDir::new();
    for driver in drivers() {
        fake.reset();
        let good = client(&fake, &dir.0);
        let vars = [
            ("HP_SHARED_KEY", "not-the-key"),
            ("NC_INSTANCE_URL", &fake.url()),
            ("LYRE_CERTS_DIR", &dir.0.to_string_lossy()),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let bad = NcClient::new(&Config::from_env(vars).expect("cfg").0).expect("client");
        run(driver, async {
            let r = bad.exapp_meta("app").await.expect("answer");
            assert_eq!((r.status, r.body.as_slice()), (401, BAD_KEY));
            for _ in 0..2 {
                let r = good.exapp_meta("app").await.expect("until-close body");
                assert_eq!(json_body(&r), record(9000));
            }
        });
        assert_eq!(
            good.stats().connects,
            2,
            "no reuse after an until-close body"
        );
        assert_eq!(good.idle_connections(), 0);
        assert_eq!(fake.counts()["connections"], 3);
    }
}

#[test]
fn h47_user_info_forwards_headers_exactly() {
    let fake = FakeNc::start(&base_config(), None);
    let dir = TempDir::new();
    for driver in drivers() {
        let c = client(&fake, &dir.0);
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b"host", b"public.example.com"),
            (b"user-agent", b"Mozilla/5.0 (X11)"),
            (b"cookie", b"nc_session=1; oc_sessionPassphrase=pass-alice"),
            (b"content-length", b"0"),
            (b"x-forwarded-for", b"203.0.113.9, 10.0.0.1"),
            (b"harp-shared-key", b"forged-by-client"),
            (b"X-Custom-Case", b"Value With Spaces"),
            (b"accept-language", b"de"),
        ];
        let r = run(driver, c.user_info("app", &headers)).expect("user-info");
        assert_eq!(r.status, 200);
        assert_eq!(
            json_body(&r),
            json!({"user_id": "alice", "access_level": 1})
        );
        // A client stays on the runtime that opened its connections (one per worker).
        let c = client(&fake, &dir.0);
        let (status, last) = fake.control("GET", "/_fake/last?endpoint=user-info", &json!({}));
        assert_eq!(status, 200);
        assert_eq!(last["method"], "GET");
        assert_eq!(
            last["target"],
            "/index.php/apps/app_api/harp/user-info?appId=app"
        );
        let want = json!([
            ["host", format!("127.0.0.1:{}", fake.port)],
            ["user-agent", "Mozilla/5.0 (X11)"],
            ["cookie", "nc_session=1; oc_sessionPassphrase=pass-alice"],
            ["x-forwarded-for", "203.0.113.9, 10.0.0.1"],
            ["x-custom-case", "Value With Spaces"],
            ["accept-language", "de"],
            ["accept-encoding", "identity"],
            ["harp-shared-key", KEY],
        ]);
        assert_eq!(last["headers"], want);

        // Authorization only, unknown passphrase, and no credentials at all.
        let rows: [(Headers, Value); 4] = [
            (
                &[(b"authorization", b"Basic Ym9iOnB3")],
                json!({"user_id": "bob", "access_level": 1}),
            ),
            (
                &[(b"cookie", b"oc_sessionPassphrase=pass-root")],
                json!({"user_id": "root", "access_level": 2}),
            ),
            (
                &[(b"cookie", b"oc_sessionPassphrase=nobody")],
                json!({"user_id": "", "access_level": 0}),
            ),
            (&[], json!({"user_id": "", "access_level": 0})),
        ];
        run(driver, async {
            for (headers, want) in rows {
                let r = c.user_info("app", headers).await.expect("user-info");
                assert_eq!((r.status, json_body(&r)), (200, want));
            }
            let r = c.user_info("unknown", &[]).await.expect("user-info");
            assert_eq!((r.status, r.body.as_slice()), (401, BAD_KEY));
        });
    }
}

#[test]
fn status_override_and_body_cap() {
    let mut cfg = base_config();
    cfg["override"] = json!({"exapp-meta:broken": {"status": 500, "body": "oops"},
                             "user-info": {"status": 503, "body": "maintenance"}});
    let fake = FakeNc::start(&cfg, None);
    let dir = TempDir::new();
    for driver in drivers() {
        let mut c = client(&fake, &dir.0);
        c.max_body = 16;
        run(driver, async {
            let r = c.exapp_meta("broken").await.expect("answer");
            assert_eq!((r.status, r.body.as_slice()), (500, b"oops".as_slice()));
            let r = c.user_info("app", &[]).await.expect("answer");
            assert_eq!(
                (r.status, r.body.as_slice()),
                (503, b"maintenance".as_slice())
            );
            let err = c
                .exapp_meta("app")
                .await
                .expect_err("record is over 16 bytes");
            assert!(matches!(err, NcError::BodyTooLarge(16)), "{err}");
        });
    }
}

#[test]
fn pooled_connection_closed_by_server_is_retried_once() {
    let fake = FakeNc::start(&base_config(), None);
    let dir = TempDir::new();
    for driver in drivers() {
        fake.reset();
        let mut cfg = base_config();
        cfg["close_reused"] = json!(1);
        fake.set(&cfg);
        let c = client(&fake, &dir.0);
        run(driver, async {
            assert_eq!(c.exapp_meta("app").await.expect("first").status, 200);
            // The pooled connection's next request is read and dropped by the server.
            let r = c
                .exapp_meta("app")
                .await
                .expect("retried on a fresh connection");
            assert_eq!(json_body(&r), record(9000));
        });
        let s = c.stats();
        assert_eq!((s.connects, s.reuses, s.retries), (2, 1, 1), "{s:?}");
        let counts = fake.counts();
        assert_eq!(counts["connections"], 2);
        assert_eq!(
            counts["exapp-meta"]["app"], 3,
            "the dropped request reached the server"
        );
    }
}

/// A server that accepts, reads the request and closes without answering.
#[test]
fn fresh_connection_closed_without_answer_is_not_retried() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = accepted.clone();
    let server = std::thread::spawn(move || {
        listener.set_nonblocking(false).ok();
        for s in listener.incoming().flatten() {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                let mut buf = [0u8; 4096];
                let mut s = s;
                let _ = s.read(&mut buf);
                let _ = s.shutdown(Shutdown::Both);
            } else {
                return; // the sentinel connection from the test: stop
            }
        }
    });
    let dir = TempDir::new();
    let c = NcClient::new(&config(&format!("http://127.0.0.1:{port}"), &dir.0)).expect("client");
    let err = run(Driver::Epoll, c.exapp_meta("app")).expect_err("no answer");
    assert!(matches!(err, NcError::Closed), "{err}");
    assert!(err.to_string().contains("NC_INSTANCE_URL"), "{err}");
    assert_eq!(c.stats().retries, 0);
    let _ = TcpStream::connect(("127.0.0.1", port));
    server.join().expect("server thread");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "one client connection + the sentinel"
    );
}

#[test]
fn connection_refused_names_nc_instance_url() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dir = TempDir::new();
    let c = NcClient::new(&config(&format!("http://127.0.0.1:{port}"), &dir.0)).expect("client");
    for driver in drivers() {
        let err = run(driver, c.exapp_meta("app")).expect_err("refused");
        assert!(
            matches!(&err, NcError::Connect { source, .. }
                if source.kind() == std::io::ErrorKind::ConnectionRefused),
            "{err:?}"
        );
        assert!(err.to_string().contains("NC_INSTANCE_URL"), "{err}");
        assert_eq!(c.open_connections(), 0, "the slot is released");
    }
}

/// A listener whose accept queue is full: further SYNs are dropped, so connect hangs.
#[test]
fn connect_timeout_on_a_full_accept_queue() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    // SAFETY: listen(2) on a valid listening fd; lowers the backlog to the minimum.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().expect("addr");
    // Fill the queue; once full, connects start timing out (their SYNs are dropped).
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    let dir = TempDir::new();
    let mut c = NcClient::new(&config(&format!("http://{addr}"), &dir.0)).expect("client");
    c.connect_timeout = Duration::from_millis(300);
    for driver in drivers() {
        let err = run(driver, c.exapp_meta("app")).expect_err("blackholed");
        assert!(matches!(err, NcError::ConnectTimeout(_)), "{err:?}");
        assert!(err.to_string().contains("NC_INSTANCE_URL"), "{err}");
        assert_eq!(c.open_connections(), 0);
    }
    drop(fillers);
}

#[test]
fn h51_total_timeout_then_recovery() {
    let mut cfg = base_config();
    cfg["delay"] = json!({"user-info": 3});
    let fake = FakeNc::start(&cfg, None);
    let dir = TempDir::new();
    for driver in drivers() {
        let mut c = client(&fake, &dir.0);
        c.total_timeout = Duration::from_millis(400);
        run(driver, async {
            // Warm a pooled connection first: the timeout must discard it, not reuse it.
            assert_eq!(c.exapp_meta("app").await.expect("meta").status, 200);
            let err = c
                .user_info("app", &[])
                .await
                .expect_err("delayed past total");
            assert!(matches!(err, NcError::Timeout(_)), "{err:?}");
            assert_eq!(
                c.open_connections(),
                0,
                "the timed-out connection is closed"
            );
            let r = c.exapp_meta("app").await.expect("next call works");
            assert_eq!(r.status, 200);
        });
        assert_eq!(c.stats().connects, 2);
    }
}

#[test]
fn concurrent_calls_share_the_pool() {
    let fake = FakeNc::start(&base_config(), None);
    let dir = TempDir::new();
    for driver in drivers() {
        fake.reset();
        let c = Rc::new(client(&fake, &dir.0));
        run(driver, async {
            let tasks: Vec<_> = (0..8)
                .map(|i| {
                    let c = c.clone();
                    monoio::spawn(async move {
                        let id = if i % 2 == 0 { "app" } else { "other" };
                        c.exapp_meta(id).await
                    })
                })
                .collect();
            for t in tasks {
                assert_eq!(t.await.expect("meta").status, 200);
            }
            // All connections went back to the pool; the next 8 sequential calls reuse them.
            let idle = c.idle_connections();
            assert!((1..=8).contains(&idle), "{idle}");
            for _ in 0..8 {
                c.exapp_meta("app").await.expect("meta");
            }
        });
        let s = c.stats();
        assert_eq!(s.connects + s.reuses, 16, "{s:?}");
        assert_eq!(fake.counts()["connections"], s.connects);
    }
}

#[test]
fn connection_cap_makes_callers_wait_for_a_free_connection() {
    let mut cfg = base_config();
    cfg["delay"] = json!({"exapp-meta": 0.2});
    let fake = FakeNc::start(&cfg, None);
    let dir = TempDir::new();
    for driver in drivers() {
        fake.reset();
        let target = NcTarget::from_config(&config(&fake.url(), &dir.0)).expect("target");
        let c = Rc::new(NcClient::with_max_connections(target, 2));
        run(driver, async {
            let tasks: Vec<_> = (0..6)
                .map(|_| {
                    let c = c.clone();
                    monoio::spawn(async move { c.exapp_meta("app").await })
                })
                .collect();
            for t in tasks {
                assert_eq!(t.await.expect("meta").status, 200);
            }
        });
        let s = c.stats();
        assert_eq!((s.connects, s.reuses), (2, 4), "{s:?}");
        assert_eq!(fake.counts()["connections"], 2);
        assert_eq!(fake.counts()["exapp-meta"]["app"], 6);
    }
}

#[test]
fn https_with_extra_ca_file() {
    let pki = pki();
    let mut cfg = base_config();
    cfg["framing"] = json!("chunked");
    let fake = FakeNc::start(&cfg, Some(&pki));
    let dir = TempDir::new();
    let ca = dir.0.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("write ca");
    let nc_cfg = config_with_ca(&fake.url(), &dir.0, Some(&ca)).expect("config with CA");
    let no_ca_cfg = config(&fake.url(), &dir.0);
    for driver in drivers() {
        fake.reset();
        let target = NcTarget::from_config(&nc_cfg).expect("target");
        assert_eq!(target.host_header, format!("localhost:{}", fake.port));
        let c = NcClient::from_target(target);
        run(driver, async {
            let r = c.exapp_meta("app").await.expect("meta over TLS");
            assert_eq!((r.status, json_body(&r)), (200, record(9000)));
            let cookie: &[(&[u8], &[u8])] = &[(b"cookie", b"oc_sessionPassphrase=pass-alice")];
            let r = c
                .user_info("app", cookie)
                .await
                .expect("user-info over TLS");
            assert_eq!(
                json_body(&r),
                json!({"user_id": "alice", "access_level": 1})
            );
            let r = c.exapp_meta("missing").await.expect("meta over TLS");
            assert_eq!((r.status, r.body.as_slice()), (401, BAD_KEY));
        });
        let s = c.stats();
        assert_eq!((s.connects, s.reuses), (1, 2), "TLS keep-alive: {s:?}");
        assert_eq!(fake.counts()["connections"], 1);

        // Without the extra CA the private certificate is rejected, naming the fix.
        let untrusted = NcClient::from_target(NcTarget::from_config(&no_ca_cfg).expect("t"));
        let err = run(driver, untrusted.exapp_meta("app")).expect_err("untrusted");
        assert!(matches!(err, NcError::Tls(_)), "{err:?}");
        assert!(err.to_string().contains("LYRE_NC_CA_FILE"), "{err}");
    }
}

#[test]
fn bad_ca_file_is_a_config_error() {
    let dir = TempDir::new();
    let junk = dir.0.join("junk.pem");
    std::fs::write(&junk, "not a certificate").expect("write");
    for path in [junk, dir.0.join("absent.pem")] {
        let err =
            config_with_ca("https://localhost:1", &dir.0, Some(&path)).expect_err("bad CA file");
        assert_eq!(err.variable, "LYRE_NC_CA_FILE", "{err}");
        assert!(
            err.to_string().starts_with("LYRE_NC_CA_FILE: cannot use "),
            "{err}"
        );
    }
}
