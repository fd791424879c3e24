//! `Config::from_env` end to end: one row per checklist id H-01..H-15 (harp-compat.md §7),
//! the `LYRE_*` knobs, unread-name warnings, and the rule that the key never leaks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

const KEY: &str = "ZqX7Pk2mWv9Rt4Lb";

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("lyre-config-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn file(&self, name: &str, content: &[u8]) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, content).expect("write temp file");
        path.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A valid minimal environment (certs dir = `certs`, which has no `frp/`) with `set` applied
/// on top and `unset` removed.
fn env(certs: &Path, set: &[(&str, &str)], unset: &[&str]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = vec![
        ("HP_SHARED_KEY".into(), KEY.into()),
        ("NC_INSTANCE_URL".into(), "http://nc".into()),
        (
            "LYRE_CERTS_DIR".into(),
            certs.to_string_lossy().into_owned(),
        ),
    ];
    for (k, v) in set {
        pairs.retain(|(name, _)| name != k);
        pairs.push((k.to_string(), v.to_string()));
    }
    pairs.retain(|(name, _)| !unset.contains(&name.as_str()));
    pairs
}

fn load(
    certs: &Path,
    set: &[(&str, &str)],
    unset: &[&str],
) -> Result<(Config, Vec<String>), ConfigError> {
    Config::from_env(env(certs, set, unset))
}

enum Expect {
    /// Start fails naming this variable, with this text in the message.
    Fails(&'static str, &'static str),
    /// Start succeeds; the check asserts on the result.
    Starts(fn(&Config, &[String])),
}

struct Row {
    id: &'static str,
    set: &'static [(&'static str, &'static str)],
    unset: &'static [&'static str],
    expect: Expect,
}

const fn row(
    id: &'static str,
    set: &'static [(&'static str, &'static str)],
    expect: Expect,
) -> Row {
    Row {
        id,
        set,
        unset: &[],
        expect,
    }
}

fn run(rows: &[Row]) {
    let certs = TempDir::new();
    for r in rows {
        match (&r.expect, load(&certs.0, r.set, r.unset)) {
            (Expect::Fails(var, text), Err(e)) => {
                assert_eq!(e.variable, *var, "{}: {e}", r.id);
                assert!(e.message.contains(text), "{}: '{e}' lacks '{text}'", r.id);
            }
            (Expect::Starts(check), Ok((cfg, warnings))) => check(&cfg, &warnings),
            (Expect::Fails(..), Ok(_)) => panic!("{}: {:?} should fail", r.id, r.set),
            (Expect::Starts(_), Err(e)) => panic!("{}: {:?} should start, got {e}", r.id, r.set),
        }
    }
}

fn key_is(cfg: &Config, want: &str) {
    assert!(
        cfg.shared_key.matches(want.as_bytes()),
        "key should be {want}"
    );
}

#[test]
fn checklist_rows_h01_to_h10() {
    use Expect::{Fails, Starts};
    let rows = [
        Row {
            id: "H-01",
            set: &[],
            unset: &["HP_SHARED_KEY"],
            expect: Fails("HP_SHARED_KEY", "required"),
        },
        row(
            "H-01 empty",
            &[("HP_SHARED_KEY", ""), ("HP_SHARED_KEY_FILE", "")],
            Fails("HP_SHARED_KEY", "required"),
        ),
        row(
            "H-02",
            &[("HP_SHARED_KEY_FILE", "/nonexistent")],
            Fails("HP_SHARED_KEY", "only one of"),
        ),
        row(
            "H-04 tab",
            &[("HP_SHARED_KEY", "ab\tc")],
            Fails("HP_SHARED_KEY", "a tab"),
        ),
        row(
            "H-04 utf8",
            &[("HP_SHARED_KEY", "abé")],
            Fails("HP_SHARED_KEY", "non-ASCII"),
        ),
        row(
            "H-04 newline",
            &[("HP_SHARED_KEY", "abc\n")],
            Fails("HP_SHARED_KEY", "printable ASCII"),
        ),
        row(
            "H-05 double",
            &[("HP_SHARED_KEY", "\"abc\"")],
            Starts(|c, _| key_is(c, "abc")),
        ),
        row(
            "H-05 single",
            &[("HP_SHARED_KEY", "'abc'")],
            Starts(|c, _| key_is(c, "abc")),
        ),
        row(
            "H-05 both",
            &[("HP_SHARED_KEY", "\"'abc'\"")],
            Starts(|c, _| key_is(c, "abc")),
        ),
        row(
            "H-05 unpaired",
            &[("HP_SHARED_KEY", "\"abc")],
            Starts(|c, _| key_is(c, "abc")),
        ),
        row(
            "H-05 only quotes",
            &[("HP_SHARED_KEY", "\"\"")],
            Fails("HP_SHARED_KEY", "empty"),
        ),
        row(
            "H-06 dquote",
            &[("HP_SHARED_KEY", "ab\"c")],
            Fails("HP_SHARED_KEY", "'\"' or '\\'"),
        ),
        row(
            "H-06 backslash",
            &[("HP_SHARED_KEY", "ab\\c")],
            Fails("HP_SHARED_KEY", "'\"' or '\\'"),
        ),
        row(
            "H-06 order",
            &[("HP_SHARED_KEY", "'\"abc\"'")],
            Fails("HP_SHARED_KEY", "'\"' or '\\'"),
        ),
        row(
            "H-06 apostrophe",
            &[("HP_SHARED_KEY", "it's")],
            Starts(|c, _| key_is(c, "it's")),
        ),
        Row {
            id: "H-07 unset",
            set: &[],
            unset: &["NC_INSTANCE_URL"],
            expect: Fails("NC_INSTANCE_URL", "required"),
        },
        row(
            "H-07 empty",
            &[("NC_INSTANCE_URL", "")],
            Fails("NC_INSTANCE_URL", "required"),
        ),
        row(
            "H-07 quotes only",
            &[("NC_INSTANCE_URL", "''")],
            Fails("NC_INSTANCE_URL", "required"),
        ),
        row(
            "H-08 empty",
            &[("HP_FRP_ADDRESS", "")],
            Fails("HP_FRP_ADDRESS", "host:port"),
        ),
        row(
            "H-08 quotes only",
            &[("HP_FRP_ADDRESS", "\"\"")],
            Fails("HP_FRP_ADDRESS", "host:port"),
        ),
        row(
            "H-08 bad port",
            &[("HP_FRP_ADDRESS", "0.0.0.0:x")],
            Fails("HP_FRP_ADDRESS", "port"),
        ),
        row(
            "H-08 quoted",
            &[("HP_FRP_ADDRESS", "\"127.0.0.1:7000\"")],
            Starts(|c, _| {
                assert_eq!(
                    c.frp_address,
                    FrpAddress {
                        host: "127.0.0.1".into(),
                        port: 7000
                    }
                );
                assert_eq!(
                    c.frp_bind_address,
                    "127.0.0.1:7000".parse::<SocketAddr>().expect("literal")
                );
            }),
        ),
        row(
            "H-09 -1",
            &[("HP_SESSION_LIFETIME", "-1")],
            Fails("HP_SESSION_LIFETIME", "between 0 and 10, got '-1'"),
        ),
        row(
            "H-09 11",
            &[("HP_SESSION_LIFETIME", "11")],
            Fails("HP_SESSION_LIFETIME", "between 0 and 10, got '11'"),
        ),
        row(
            "H-09 empty",
            &[("HP_SESSION_LIFETIME", "")],
            Fails("HP_SESSION_LIFETIME", "got ''"),
        ),
        row(
            "H-09 0",
            &[("HP_SESSION_LIFETIME", "0")],
            Starts(|c, _| assert_eq!(c.session_lifetime, Duration::ZERO)),
        ),
        row(
            "H-09 10",
            &[("HP_SESSION_LIFETIME", "10")],
            Starts(|c, _| assert_eq!(c.session_lifetime, Duration::from_secs(10))),
        ),
        row(
            "H-09 float",
            &[("HP_SESSION_LIFETIME", "0.25")],
            Starts(|c, _| assert_eq!(c.session_lifetime, Duration::from_millis(250))),
        ),
        row(
            "H-10 count",
            &[("HP_BLACKLIST_COUNT", "2.5")],
            Fails("HP_BLACKLIST_COUNT", "whole number"),
        ),
        row(
            "H-10 window",
            &[("HP_BLACKLIST_WINDOW", "5m")],
            Fails("HP_BLACKLIST_WINDOW", "whole number of seconds"),
        ),
        row(
            "H-10 ok",
            &[("HP_BLACKLIST_COUNT", "3"), ("HP_BLACKLIST_WINDOW", "60")],
            Starts(|c, _| {
                assert_eq!(
                    (c.blacklist_count, c.blacklist_window),
                    (3, Duration::from_secs(60))
                );
            }),
        ),
    ];
    run(&rows);
}

#[test]
fn checklist_rows_h11_to_h15() {
    use Expect::{Fails, Starts};
    let rows = [
        row(
            "H-11",
            &[(
                "HP_TRUSTED_PROXY_IPS",
                "'10.0.0.0/8', 192.168.1.5/24 ,bogus",
            )],
            Starts(|c, w| {
                let want: Vec<ipnet::IpNet> = vec![
                    "10.0.0.0/8".parse().expect("literal"),
                    "192.168.1.0/24".parse().expect("literal"),
                ];
                assert_eq!(c.trusted_proxies, want);
                assert_eq!(
                    w.iter()
                        .filter(|l| l.starts_with("HP_TRUSTED_PROXY_IPS"))
                        .count(),
                    3,
                    "{w:?}"
                );
            }),
        ),
        row(
            "H-11 none valid",
            &[("HP_TRUSTED_PROXY_IPS", "bogus")],
            Starts(|c, w| {
                assert!(c.trusted_proxies.is_empty());
                assert!(
                    w.iter()
                        .any(|l| l.contains("client IP detection is disabled")),
                    "{w:?}"
                );
            }),
        ),
        row(
            "H-12",
            &[
                ("HP_TIMEOUT_CONNECT", "1800"),
                ("HP_TIMEOUT_CLIENT", "2m"),
                ("HP_TIMEOUT_SERVER", "'1h'"),
            ],
            Starts(|c, _| {
                assert_eq!(c.timeout_connect, Duration::from_millis(1800));
                assert_eq!(c.timeout_client, Duration::from_secs(120));
                assert_eq!(c.timeout_server, Duration::from_secs(3600));
            }),
        ),
        row(
            "H-12 bad",
            &[("HP_TIMEOUT_CLIENT", "30 sec")],
            Fails("HP_TIMEOUT_CLIENT", "unknown unit"),
        ),
        row(
            "H-12 empty",
            &[("HP_TIMEOUT_CONNECT", "")],
            Fails("HP_TIMEOUT_CONNECT", "expected a number"),
        ),
        row(
            "H-12 overflow",
            &[("HP_TIMEOUT_SERVER", "30d")],
            Fails("HP_TIMEOUT_SERVER", "maximum"),
        ),
        row(
            "H-13 0",
            &[("HP_TIMEOUT_TUNNEL", "0")],
            Starts(|c, _| assert_eq!(c.timeout_tunnel, defaults::UNLIMITED_TIMEOUT)),
        ),
        row(
            "H-13 0s",
            &[("HP_TIMEOUT_TUNNEL", "0s")],
            Starts(|c, _| assert_eq!(c.timeout_tunnel, Duration::from_secs(24 * 86_400))),
        ),
        row(
            "H-13 set",
            &[("HP_TIMEOUT_TUNNEL", "1h")],
            Starts(|c, _| assert_eq!(c.timeout_tunnel, Duration::from_secs(3600))),
        ),
        row(
            "H-14",
            &[("HP_TIMEOUT_SERVER", "90s")],
            Starts(|c, _| assert_eq!(c.timeout_tunnel, Duration::from_secs(90))),
        ),
        row(
            "H-14 empty",
            &[("HP_TIMEOUT_SERVER", "90s"), ("HP_TIMEOUT_TUNNEL", "")],
            Starts(|c, _| {
                assert_eq!(c.timeout_tunnel, Duration::from_secs(90));
            }),
        ),
        row(
            "H-14 default",
            &[],
            Starts(|c, _| assert_eq!(c.timeout_tunnel, Duration::from_secs(1800))),
        ),
        row(
            "H-15 0",
            &[("HP_FRP_CERT_VALIDITY_DAYS", "0")],
            Fails("HP_FRP_CERT_VALIDITY_DAYS", "from 1 to"),
        ),
        row(
            "H-15 abc",
            &[("HP_FRP_CERT_VALIDITY_DAYS", "abc")],
            Fails("HP_FRP_CERT_VALIDITY_DAYS", "got 'abc'"),
        ),
        row(
            "H-15 ok",
            &[("HP_FRP_CERT_VALIDITY_DAYS", "365")],
            Starts(|c, _| assert_eq!(c.frp_cert_validity_days, 365)),
        ),
        row(
            "H-15 tls off",
            &[
                ("HP_FRP_CERT_VALIDITY_DAYS", "0"),
                ("HP_FRP_DISABLE_TLS", "true"),
            ],
            Starts(|c, w| {
                assert!(c.frp_disable_tls);
                assert_eq!(c.frp_cert_validity_days, 5000);
                assert!(
                    w.iter().any(|l| l.contains("HP_FRP_DISABLE_TLS=true")),
                    "{w:?}"
                );
            }),
        ),
        row(
            "2.5 tls exact",
            &[("HP_FRP_DISABLE_TLS", "True")],
            Starts(|c, _| assert!(!c.frp_disable_tls)),
        ),
    ];
    run(&rows);
}

#[test]
fn h03_key_file() {
    let dir = TempDir::new();
    let with_file = |path: &str| load(&dir.0, &[("HP_SHARED_KEY_FILE", path)], &["HP_SHARED_KEY"]);

    let ok = dir.file("key", b"\"abc'def\"\n\n");
    let (cfg, _) = with_file(&ok).expect("file key loads");
    key_is(&cfg, "abc'def");

    let missing = dir.0.join("missing").to_string_lossy().into_owned();
    let e = with_file(&missing).expect_err("missing file");
    assert_eq!(e.variable, "HP_SHARED_KEY_FILE");
    assert!(e.message.contains("cannot open"), "{e}");

    let empty = dir.file("empty", b"");
    assert!(with_file(&empty)
        .expect_err("empty file")
        .message
        .contains("is empty"));

    let crlf = dir.file("crlf", b"abc\r\n");
    assert!(with_file(&crlf)
        .expect_err("CR stays")
        .message
        .contains("line break"));

    let only_newline = dir.file("nl", b"\n");
    assert!(with_file(&only_newline)
        .expect_err("empty key")
        .message
        .contains("empty"));

    let big = dir.file("big", &vec![b'a'; 70 * 1024]);
    assert!(with_file(&big)
        .expect_err("too big")
        .message
        .contains("larger than"));
}

#[test]
fn h07_callback_urls_match_for_all_spellings() {
    let dir = TempDir::new();
    for url in [
        "http://nc",
        "http://nc/",
        "http://nc/index.php",
        "http://nc/index.php/",
        "\"http://nc/index.php/\"",
    ] {
        let (cfg, _) = load(&dir.0, &[("NC_INSTANCE_URL", url)], &[]).expect(url);
        assert_eq!(cfg.nc_base_url, "http://nc", "{url}");
        assert_eq!(
            cfg.exapp_meta_url(),
            "http://nc/index.php/apps/app_api/harp/exapp-meta"
        );
        assert_eq!(
            cfg.user_info_url(),
            "http://nc/index.php/apps/app_api/harp/user-info"
        );
    }
    // Only ONE trailing slash and ONE /index.php go.
    let (cfg, _) = load(&dir.0, &[("NC_INSTANCE_URL", "http://nc/sub//")], &[]).expect("valid");
    assert_eq!(cfg.nc_base_url, "http://nc/sub/");
    let (_, w) = load(&dir.0, &[("NC_INSTANCE_URL", "nc.local")], &[]).expect("starts");
    assert!(w.iter().any(|l| l.contains("http://")), "{w:?}");
    let (_, w) = load(&dir.0, &[("NC_INSTANCE_URL", "HTTPS://nc")], &[]).expect("starts");
    assert!(!w.iter().any(|l| l.contains("NC_INSTANCE_URL")), "{w:?}");
}

#[test]
fn h15_existing_frp_dir_means_no_validation() {
    let dir = TempDir::new();
    std::fs::create_dir(dir.0.join("frp")).expect("mkdir frp");
    let (cfg, w) = load(&dir.0, &[("HP_FRP_CERT_VALIDITY_DAYS", "abc")], &[]).expect("starts");
    assert_eq!(cfg.frp_cert_validity_days, 5000);
    assert!(
        w.iter()
            .any(|l| l.starts_with("HP_FRP_CERT_VALIDITY_DAYS") && l.contains("already exists")),
        "{w:?}"
    );
    assert_eq!(cfg.frp_certs_dir(), dir.0.join("frp"));
}

#[test]
fn defaults_of_a_minimal_environment() {
    let dir = TempDir::new();
    let (c, w) = load(&dir.0, &[], &[]).expect("minimal env starts");
    assert!(w.is_empty(), "{w:?}");
    let sa = |s: &str| s.parse::<SocketAddr>().expect("literal");
    assert_eq!(c.exapps_address, sa("0.0.0.0:8780"));
    assert_eq!(c.exapps_https_address, sa("0.0.0.0:8781"));
    assert_eq!(
        c.frp_address,
        FrpAddress {
            host: "0.0.0.0".into(),
            port: 8782
        }
    );
    assert_eq!(c.frp_bind_address, sa("0.0.0.0:8782"));
    assert!(c.trusted_proxies.is_empty());
    assert_eq!(c.log_level, LogLevel::Warning);
    assert!(c.verbose_start);
    let secs = Duration::from_secs;
    assert_eq!(
        [
            c.timeout_connect,
            c.timeout_client,
            c.timeout_server,
            c.timeout_tunnel,
            c.timeout_client_fin
        ],
        [secs(30), secs(30), secs(1800), secs(1800), secs(30)]
    );
    assert_eq!(
        (c.session_lifetime, c.blacklist_count, c.blacklist_window),
        (secs(3), 10, secs(300))
    );
    assert!(!c.frp_disable_tls);
    assert_eq!(c.frp_cert_validity_days, 5000);
    assert_eq!(c.certs_dir, dir.0);
    assert_eq!(c.https_cert_path(), dir.0.join("cert.pem"));
    assert!(c.workers >= 1);
    assert!(!c.pin_cpus);
    assert_eq!((c.driver, c.pump), (DriverChoice::Auto, PumpChoice::Splice));
    assert_eq!(c.control_address, sa("127.0.0.1:8200"));
    assert!(c.routes.is_empty());
}

#[test]
fn listen_addresses_log_level_and_verbosity() {
    use Expect::{Fails, Starts};
    let rows = [
        row(
            "exapps localhost",
            &[("HP_EXAPPS_ADDRESS", "'localhost:9780'")],
            Starts(|c, _| {
                assert_eq!(
                    c.exapps_address,
                    "127.0.0.1:9780".parse::<SocketAddr>().expect("literal")
                );
            }),
        ),
        row(
            "exapps bad",
            &[("HP_EXAPPS_ADDRESS", "8780")],
            Fails("HP_EXAPPS_ADDRESS", "host:port"),
        ),
        row(
            "exapps empty",
            &[("HP_EXAPPS_ADDRESS", "")],
            Fails("HP_EXAPPS_ADDRESS", "host:port"),
        ),
        // No cert.pem in the certs dir: HaRP never rendered the HTTPS bind, so only a warning.
        row(
            "https bad, no cert",
            &[("HP_EXAPPS_HTTPS_ADDRESS", "x")],
            Starts(|c, w| {
                assert_eq!(
                    c.exapps_https_address,
                    defaults::DEFAULT_EXAPPS_HTTPS_ADDRESS
                );
                assert!(w.iter().any(|l| l.starts_with("HP_EXAPPS_HTTPS_ADDRESS") && l.contains("cert.pem")), "{w:?}");
            }),
        ),
        row(
            "https ok",
            &[("HP_EXAPPS_HTTPS_ADDRESS", "127.0.0.1:0")],
            Starts(|c, _| {
                assert_eq!(
                    c.exapps_https_address,
                    "127.0.0.1:0".parse::<SocketAddr>().expect("literal")
                );
            }),
        ),
        row(
            "log debug",
            &[("HP_LOG_LEVEL", "debug")],
            Starts(|c, w| {
                assert_eq!(c.log_level, LogLevel::Debug);
                assert!(w.is_empty());
            }),
        ),
        row(
            "log CRITICAL",
            &[("HP_LOG_LEVEL", "CRITICAL")],
            Starts(|c, _| assert_eq!(c.log_level, LogLevel::Error)),
        ),
        row(
            "log bogus (HaRP's agent fails to start too)",
            &[("HP_LOG_LEVEL", "loud")],
            Fails(
                "HP_LOG_LEVEL",
                "unknown level 'loud'; use debug, info, warning or error",
            ),
        ),
        row(
            "log empty",
            &[("HP_LOG_LEVEL", "")],
            Starts(|c, _| assert_eq!(c.log_level, LogLevel::Warning)),
        ),
        row(
            "verbose 0",
            &[("HP_VERBOSE_START", "0")],
            Starts(|c, _| assert!(!c.verbose_start)),
        ),
        row(
            "verbose junk",
            &[("HP_VERBOSE_START", "yes")],
            Starts(|c, w| {
                assert!(c.verbose_start);
                assert!(w.iter().any(|l| l.starts_with("HP_VERBOSE_START")), "{w:?}");
            }),
        ),
    ];
    run(&rows);
}

#[test]
fn https_bad_with_cert_is_fatal() {
    let dir = TempDir::new();
    dir.file("cert.pem", b"placeholder");
    let e = load(&dir.0, &[("HP_EXAPPS_HTTPS_ADDRESS", "x")], &[]).expect_err("fatal with cert");
    assert_eq!(e.variable, "HP_EXAPPS_HTTPS_ADDRESS");
}

#[test]
fn lyre_knobs() {
    use Expect::{Fails, Starts};
    let rows = [
        row(
            "workers",
            &[("LYRE_WORKERS", "3"), ("LYRE_PIN_CPUS", "true")],
            Starts(|c, _| {
                assert_eq!((c.workers, c.pin_cpus), (3, true));
            }),
        ),
        row(
            "workers 0",
            &[("LYRE_WORKERS", "0")],
            Fails("LYRE_WORKERS", "from 1 to 1024"),
        ),
        row(
            "max connections default (HaRP maxconn)",
            &[],
            Starts(|c, _| assert_eq!(c.max_connections, 8192)),
        ),
        row(
            "max connections",
            &[("LYRE_MAX_CONNECTIONS", "20000")],
            Starts(|c, _| assert_eq!(c.max_connections, 20000)),
        ),
        row(
            "max connections 0",
            &[("LYRE_MAX_CONNECTIONS", "0")],
            Fails("LYRE_MAX_CONNECTIONS", "whole number from 1 to"),
        ),
        row(
            "pin bad",
            &[("LYRE_PIN_CPUS", "maybe")],
            Fails("LYRE_PIN_CPUS", "true, false, 1 or 0"),
        ),
        row(
            "driver",
            &[("LYRE_DRIVER", "epoll"), ("LYRE_PUMP", "copy")],
            Starts(|c, _| {
                assert_eq!((c.driver, c.pump), (DriverChoice::Epoll, PumpChoice::Copy));
            }),
        ),
        row(
            "driver bad",
            &[("LYRE_DRIVER", "kqueue")],
            Fails("LYRE_DRIVER", "auto, uring or epoll"),
        ),
        row(
            "pump bad",
            &[("LYRE_PUMP", "sendfile")],
            Fails("LYRE_PUMP", "splice or copy"),
        ),
        row(
            "control",
            &[("LYRE_CONTROL_ADDRESS", "127.0.0.1:0")],
            Starts(|c, _| {
                assert_eq!(
                    c.control_address,
                    "127.0.0.1:0".parse::<SocketAddr>().expect("literal")
                );
            }),
        ),
        row(
            "control bad",
            &[("LYRE_CONTROL_ADDRESS", "nope")],
            Fails("LYRE_CONTROL_ADDRESS", "host:port"),
        ),
        row(
            "routes",
            &[("LYRE_ROUTES", "/a=127.0.0.1:9001,/b/c=localhost:9002")],
            Starts(|c, _| {
                let r: Vec<(&str, u16)> = c
                    .routes
                    .iter()
                    .map(|r| (r.prefix.as_str(), r.upstream.port()))
                    .collect();
                assert_eq!(r, vec![("/a", 9001), ("/b/c", 9002)]);
            }),
        ),
        row(
            "routes bad",
            &[("LYRE_ROUTES", "a=127.0.0.1:9001")],
            Fails("LYRE_ROUTES", "must start with '/'"),
        ),
        row(
            "certs dir empty = default",
            &[("LYRE_CERTS_DIR", "")],
            Starts(|c, _| {
                assert_eq!(c.certs_dir, PathBuf::from("/certs"));
            }),
        ),
    ];
    run(&rows);
}

#[test]
fn unread_hp_names_warn_by_name() {
    let dir = TempDir::new();
    let set = [
        ("HP_SPOA_ADDRESS", "127.0.0.1:9600"),
        ("HP_TIMEOUT_CLIENTT", "30s"),
        ("LYRE_PUMPS", "copy"),
    ];
    let (_, w) = load(&dir.0, &set, &[]).expect("starts");
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w[0].starts_with("HP_SPOA_ADDRESS: not used by Lyre"));
    assert!(w[1].starts_with("HP_TIMEOUT_CLIENTT: unknown variable"));
    assert!(w[2].starts_with("LYRE_PUMPS: unknown variable"));
}

#[test]
fn shared_key_never_appears_in_errors_warnings_or_debug() {
    let dir = TempDir::new();
    let fragments = |s: &str| {
        KEY.as_bytes()
            .windows(6)
            .any(|w| s.contains(std::str::from_utf8(w).unwrap_or("")))
    };
    // Warnings of every kind, with the key copied into unread variables and a warned value.
    let noisy = [
        ("HP_SHARED_KEYY", KEY),
        ("HP_K8S_BEARER_TOKEN", KEY),
        ("HP_TRUSTED_PROXY_IPS", "'1.2.3.4/8',bogus"),
        ("HP_VERBOSE_START", "x"),
    ];
    let (cfg, warnings) = load(&dir.0, &noisy, &[]).expect("starts");
    assert!(warnings.len() >= 5, "{warnings:?}");
    for line in &warnings {
        assert!(!fragments(line), "warning leaks the key: {line}");
    }
    let debug = format!("{cfg:?}");
    assert!(
        debug.contains("Secret(***)") && !fragments(&debug),
        "Debug leaks the key"
    );
    assert_eq!(cfg.shared_key.expose(), KEY);

    // Every key error, with the key embedded in the bad value.
    let tab = format!("{KEY}\t");
    let utf8 = format!("{KEY}é");
    let quote = format!("{KEY}\"x");
    let key_file = dir.file("k", format!("{KEY}\\\n").as_bytes());
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("HP_SHARED_KEY", &tab)],
        vec![("HP_SHARED_KEY", &utf8)],
        vec![("HP_SHARED_KEY", &quote)],
        vec![("HP_SHARED_KEY_FILE", &key_file)],
        vec![("HP_SHARED_KEY_FILE", "/nonexistent")],
    ];
    for set in cases {
        let e = load(&dir.0, &set, &[]).expect_err("must fail");
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!fragments(&text), "error leaks the key: {text}");
        }
    }
}
