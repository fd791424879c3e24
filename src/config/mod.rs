//! Configuration: `HP_*` variables exactly as HaRP reads them (harp-compat.md §2), plus
//! Lyre's own `LYRE_*` knobs. Raw `(name, value)` pairs go through [`Config::from_env`] once
//! at start; the result is frozen. Tests pass pairs and never touch the process environment.
//!
//! STUB: helper "config" replaces the body of `from_env` with the full §2 rules.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod secret;
pub use secret::Secret;

/// A `--route PREFIX=HOST:PORT` / `LYRE_ROUTES` entry: requests whose path starts with
/// `prefix` go to `upstream`, path unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute {
    pub prefix: String,
    pub upstream: SocketAddr,
}

/// Which monoio driver the workers use (`LYRE_DRIVER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverChoice {
    /// io_uring when the kernel allows it, else epoll.
    Auto,
    IoUring,
    Epoll,
}

/// Which forwarding pump moves bodies on plain-TCP legs (`LYRE_PUMP`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpChoice {
    /// readiness + nonblocking splice(2) through a big pipe.
    Splice,
    /// readiness + big-buffer read/write copy.
    Copy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
}

/// `HP_FRP_ADDRESS` split HaRP's way (first `:`; IPv6 unsupported, quirk).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrpAddress {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub shared_key: Secret,
    /// `NC_INSTANCE_URL` with one trailing `/` then one trailing `/index.php` removed.
    pub nc_base_url: String,
    pub exapps_address: SocketAddr,
    pub exapps_https_address: SocketAddr,
    pub frp_address: FrpAddress,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub log_level: LogLevel,
    pub verbose_start: bool,
    pub timeout_connect: Duration,
    pub timeout_client: Duration,
    pub timeout_server: Duration,
    pub timeout_tunnel: Duration,
    /// Fixed by HaRP (client-fin): half-closed connections are reaped after this.
    pub timeout_client_fin: Duration,
    pub session_lifetime: Duration,
    pub blacklist_count: u32,
    pub blacklist_window: Duration,
    pub frp_disable_tls: bool,
    pub frp_cert_validity_days: u32,
    /// `LYRE_CERTS_DIR` (default `/certs`): `cert.pem` and `frp/` live under it.
    pub certs_dir: PathBuf,
    /// `LYRE_WORKERS` (default: number of CPUs).
    pub workers: usize,
    /// `LYRE_PIN_CPUS` (default false): pin worker N to CPU N.
    pub pin_cpus: bool,
    pub driver: DriverChoice,
    pub pump: PumpChoice,
    /// `LYRE_CONTROL_ADDRESS` (default `127.0.0.1:8200`): admin-only `/heartbeat`.
    pub control_address: SocketAddr,
    /// `LYRE_ROUTES` / `--route`.
    pub routes: Vec<StaticRoute>,
}

/// A bad value found at start. `Display` names the variable and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parse and validate. Returns the config and the warnings to log (unknown `HP_*` names,
    /// masked host bits, ...). Never logs by itself and never prints the shared key.
    pub fn from_env<I>(vars: I) -> Result<(Config, Vec<String>), ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let vars: std::collections::HashMap<String, String> = vars.into_iter().collect();
        let get = |k: &str| vars.get(k).cloned();
        let key = get("HP_SHARED_KEY").ok_or(ConfigError {
            variable: "HP_SHARED_KEY",
            message: "required: set HP_SHARED_KEY or HP_SHARED_KEY_FILE".into(),
        })?;
        let addr = |k: &'static str, d: &str| -> Result<SocketAddr, ConfigError> {
            get(k)
                .unwrap_or_else(|| d.to_string())
                .parse()
                .map_err(|_| ConfigError {
                    variable: k,
                    message: "expected host:port".into(),
                })
        };
        let cfg = Config {
            shared_key: Secret::new(key),
            nc_base_url: get("NC_INSTANCE_URL").unwrap_or_default(),
            exapps_address: addr("HP_EXAPPS_ADDRESS", "0.0.0.0:8780")?,
            exapps_https_address: addr("HP_EXAPPS_HTTPS_ADDRESS", "0.0.0.0:8781")?,
            frp_address: FrpAddress {
                host: "0.0.0.0".into(),
                port: 8782,
            },
            trusted_proxies: vec![],
            log_level: LogLevel::Warning,
            verbose_start: true,
            timeout_connect: Duration::from_secs(30),
            timeout_client: Duration::from_secs(30),
            timeout_server: Duration::from_secs(1800),
            timeout_tunnel: Duration::from_secs(1800),
            timeout_client_fin: Duration::from_secs(30),
            session_lifetime: Duration::from_secs(3),
            blacklist_count: 10,
            blacklist_window: Duration::from_secs(300),
            frp_disable_tls: false,
            frp_cert_validity_days: 5000,
            certs_dir: PathBuf::from("/certs"),
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            pin_cpus: false,
            driver: DriverChoice::Auto,
            pump: PumpChoice::Splice,
            control_address: addr("LYRE_CONTROL_ADDRESS", "127.0.0.1:8200")?,
            routes: vec![],
        };
        Ok((cfg, vec![]))
    }
}
