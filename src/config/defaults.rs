//! Every default and cap of the configuration, each citing the HaRP / HAProxy setting it
//! reproduces (harp-compat.md §2; "(D)" = set by HaRP's Dockerfile `ENV`).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

const fn all_ipv4(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
}

/// `HP_EXAPPS_ADDRESS` (D) `0.0.0.0:8780`.
pub const DEFAULT_EXAPPS_ADDRESS: SocketAddr = all_ipv4(8780);
/// `HP_EXAPPS_HTTPS_ADDRESS` (D) `0.0.0.0:8781`.
pub const DEFAULT_EXAPPS_HTTPS_ADDRESS: SocketAddr = all_ipv4(8781);
/// `HP_FRP_ADDRESS` (D) `0.0.0.0:8782`, kept as text because it is split HaRP's way.
pub const DEFAULT_FRP_ADDRESS: &str = "0.0.0.0:8782";
/// `HP_TIMEOUT_CONNECT` (D) -> HAProxy `timeout connect`.
pub const DEFAULT_TIMEOUT_CONNECT: &str = "30s";
/// `HP_TIMEOUT_CLIENT` (D) -> HAProxy `timeout client`.
pub const DEFAULT_TIMEOUT_CLIENT: &str = "30s";
/// `HP_TIMEOUT_SERVER` (D) -> HAProxy `timeout server`; also the `HP_TIMEOUT_TUNNEL` default.
pub const DEFAULT_TIMEOUT_SERVER: &str = "1800s";
/// HaRP's fixed `timeout client-fin 30s`.
pub const DEFAULT_TIMEOUT_CLIENT_FIN: Duration = Duration::from_secs(30);
/// What HaRP's start script writes for a zero tunnel timeout ("unlimited"): `24d`. Lyre maps
/// every zero timeout here, since HAProxy reads a zero timeout as "never".
pub const UNLIMITED_TIMEOUT: Duration = Duration::from_secs(24 * 86_400);
/// HAProxy rejects timeouts above 2^31-1 ms ("timer overflow", ~24.8 days).
pub const MAX_TIMEOUT_MS: u64 = i32::MAX as u64;
/// `HP_SESSION_LIFETIME`: agent default 3 s, accepted range 0..=10 s.
pub const DEFAULT_SESSION_LIFETIME_SECS: f64 = 3.0;
pub const MAX_SESSION_LIFETIME_SECS: f64 = 10.0;
/// `HP_BLACKLIST_COUNT` agent default.
pub const DEFAULT_BLACKLIST_COUNT: u32 = 10;
/// `HP_BLACKLIST_WINDOW` agent default, seconds.
pub const DEFAULT_BLACKLIST_WINDOW_SECS: u64 = 300;
/// `HP_FRP_CERT_VALIDITY_DAYS` start-script default.
pub const DEFAULT_FRP_CERT_VALIDITY_DAYS: u32 = 5000;
/// Lyre cap: keeps `not_after` well inside the X.509 GeneralizedTime range (year 9999).
pub const MAX_FRP_CERT_VALIDITY_DAYS: u32 = 2_500_000;
/// `HP_VERBOSE_START` start-script default (`1` = verbose).
pub const DEFAULT_VERBOSE_START: i64 = 1;
/// `HP_TRUSTED_PROXY_IPS`: individual log lines per category before one summary line.
pub const TRUSTED_PROXY_WARNINGS_PER_CATEGORY: usize = 5;
/// `HP_TRUSTED_PROXY_IPS`: the "nothing valid" error echoes at most this many characters.
pub const MAX_ECHOED_VALUE_CHARS: usize = 200;
/// `HP_SHARED_KEY_FILE`: Lyre cap on the file size read (a key is a short token).
pub const MAX_SHARED_KEY_FILE_BYTES: u64 = 64 * 1024;

/// `LYRE_CERTS_DIR`: where HaRP keeps `cert.pem` and `frp/`.
pub const DEFAULT_CERTS_DIR: &str = "/certs";
/// `LYRE_DOCKER_SOCKET`: the local Docker socket HaRP's bundled frpc exposed as port 24000.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// `LYRE_CONTROL_ADDRESS`: the agent's control API bind in HaRP, `127.0.0.1:8200`.
pub const DEFAULT_CONTROL_ADDRESS: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8200));
/// `LYRE_MAX_CONNECTIONS`: HaRP's HAProxy global `maxconn` (harp-compat §2.2). Past it,
/// new client connections wait in the listen backlog until one closes.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8192;
/// `LYRE_MAX_CONNECTIONS` upper bound (each client connection needs two descriptors).
pub const MAX_MAX_CONNECTIONS: usize = 1 << 20;
/// `LYRE_WORKERS` upper bound (one monoio runtime per worker thread).
pub const MAX_WORKERS: usize = 1024;
