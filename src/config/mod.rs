//! Configuration: `HP_*` variables exactly as HaRP reads them (harp-compat.md §2, checklist
//! H-01..H-15), plus Lyre's own `LYRE_*` knobs. Raw `(name, value)` pairs go through
//! [`Config::from_env`] once at start; the result is frozen. Tests pass pairs and never touch
//! the process environment. `from_env` reads only the key file and `LYRE_NC_CA_FILE` (for an
//! https `NC_INSTANCE_URL`), and probes `$LYRE_CERTS_DIR`.
//!
//! Not owned here: logging the warnings (the caller does), certificate generation (it only
//! receives the validated `frp_cert_validity_days`), binding the addresses.
//!
//! Empty values: an unset variable takes its default; a variable set to `""` is validated like
//! any value (HaRP's Dockerfile defaults apply only when unset, so `HP_FRP_ADDRESS=""` fails,
//! H-08). Exceptions, as in HaRP's shell `-n` / `:-` tests: both key variables,
//! `HP_TIMEOUT_TUNNEL`, `HP_VERBOSE_START`, `HP_FRP_CERT_VALIDITY_DAYS` and all `LYRE_*`
//! treat `""` as unset.
//!
//! `HP_FRP_CERT_VALIDITY_DAYS` is validated (fatal) only when HaRP would generate
//! certificates: TLS on and no `$LYRE_CERTS_DIR/frp` directory (H-15, H-16). Otherwise a bad
//! value is only a warning and the default is kept, since nothing reads it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod address;
mod ca_file;
pub mod defaults;
mod duration;
mod key;
mod lyre;
pub mod names;
mod scalars;
mod secret;
#[cfg(test)]
mod tests;
mod trusted;

pub use address::parse_route;
pub use ca_file::{NcCaFile, MAX_CA_FILE_BYTES};
pub use duration::parse_haproxy_duration;
pub use secret::Secret;
pub use trusted::parse_ip_network;

use defaults::*;
use names::*;

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
    /// `frp_address` resolved at start: the address the FRP server binds.
    pub frp_bind_address: SocketAddr,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub log_level: LogLevel,
    /// `HP_VERBOSE_START == 1`: log start-up details (never the shared key).
    pub verbose_start: bool,
    /// HAProxy `timeout connect` / `client` / `server` / `tunnel` (H-12..H-14). A zero value
    /// means "never" in HAProxy and is stored as [`defaults::UNLIMITED_TIMEOUT`] (24 days).
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
    /// Validated only when certificates will be generated (see the module docs).
    pub frp_cert_validity_days: u32,
    /// `LYRE_CERTS_DIR` (default `/certs`): `cert.pem` and `frp/` live under it.
    pub certs_dir: PathBuf,
    /// `LYRE_DOCKER_SOCKET` (default `/var/run/docker.sock`): when it exists, Docker engine
    /// port 24000 is served from it (HaRP's bundled frpc, done in-process).
    pub docker_socket: PathBuf,
    /// `LYRE_WORKERS` (default: number of CPUs).
    pub workers: usize,
    /// `LYRE_PIN_CPUS` (default false): pin worker N to CPU N.
    pub pin_cpus: bool,
    /// `LYRE_MAX_CONNECTIONS` (default 8192, HaRP's `maxconn`): concurrent HTTP and HTTPS
    /// client connections across all workers; more wait in the listen backlog.
    pub max_connections: usize,
    /// `LYRE_FORWARD_SHARED_KEY` (default false): pass the incoming `harp-shared-key` header on
    /// to ExApps as HaRP does. Off by default: ExApps never need the appliance's key.
    pub forward_shared_key: bool,
    pub driver: DriverChoice,
    pub pump: PumpChoice,
    /// `LYRE_CONTROL_ADDRESS` (default `127.0.0.1:8200`): admin-only `/heartbeat`.
    pub control_address: SocketAddr,
    /// `LYRE_ROUTES` / `--route`.
    pub routes: Vec<StaticRoute>,
    /// `LYRE_NC_CA_FILE` (default none), loaded: extra trust roots for an https
    /// `NC_INSTANCE_URL`. Always `None` for http (the file is then not read).
    pub nc_ca_file: Option<NcCaFile>,
}

/// A bad value found at start. `Display` names the variable and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

impl ConfigError {
    pub fn new(variable: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            variable,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The raw pairs; the last pair wins for a repeated name.
struct Vars(HashMap<String, String>);

impl Vars {
    /// The value if the variable is set, even to `""`.
    fn raw(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The value if set to something non-empty (shell `-n`).
    fn non_empty(&self, name: &str) -> Option<&str> {
        self.raw(name).filter(|v| !v.is_empty())
    }
}

/// Run a value parser and name the variable in its error.
fn parse_var<T>(
    variable: &'static str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    parse(value).map_err(|message| ConfigError::new(variable, message))
}

/// HaRP's quote rule for the key, `NC_INSTANCE_URL` and addresses: drop ONE leading and ONE
/// trailing `"`, then ONE leading and ONE trailing `'`, each independently (H-05).
pub(crate) fn strip_quotes(s: &str) -> &str {
    let s = s.strip_prefix('"').unwrap_or(s);
    let s = s.strip_suffix('"').unwrap_or(s);
    let s = s.strip_prefix('\'').unwrap_or(s);
    s.strip_suffix('\'').unwrap_or(s)
}

impl Config {
    /// Parse and validate. Returns the config and the warnings to log (unknown `HP_*` names,
    /// masked host bits, ...). Never logs by itself and never prints the shared key.
    pub fn from_env<I>(vars: I) -> Result<(Config, Vec<String>), ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let vars = Vars(vars.into_iter().collect());
        let mut warnings = unread_name_warnings(vars.0.keys().map(String::as_str));
        let shared_key = key::read_shared_key(&vars)?;
        let nc_base_url = read_nc_base_url(&vars, &mut warnings)?;
        let certs_dir = PathBuf::from(vars.non_empty(LYRE_CERTS_DIR).unwrap_or(DEFAULT_CERTS_DIR));
        let listen = Listeners::read(&vars, &certs_dir, &mut warnings)?;
        let timeouts = Timeouts::read(&vars)?;
        let bans = Bans::read(&vars)?;
        let frp_disable_tls = vars
            .raw(HP_FRP_DISABLE_TLS)
            .is_some_and(scalars::parse_disable_tls);
        let frp_cert_validity_days =
            read_cert_validity_days(&vars, frp_disable_tls, &certs_dir, &mut warnings)?;
        let knobs = Knobs::read(&vars)?;
        let nc_ca_file = ca_file::read_nc_ca_file(&vars, &nc_base_url, &mut warnings)?;
        let cfg = Config {
            shared_key,
            nc_base_url,
            exapps_address: listen.exapps,
            exapps_https_address: listen.exapps_https,
            frp_address: listen.frp,
            frp_bind_address: listen.frp_bind,
            trusted_proxies: trusted::parse_trusted_proxies(
                vars.raw(HP_TRUSTED_PROXY_IPS).unwrap_or(""),
                &mut warnings,
            ),
            log_level: read_log_level(&vars)?,
            verbose_start: read_verbose_start(&vars, &mut warnings),
            timeout_connect: timeouts.connect,
            timeout_client: timeouts.client,
            timeout_server: timeouts.server,
            timeout_tunnel: timeouts.tunnel,
            timeout_client_fin: DEFAULT_TIMEOUT_CLIENT_FIN,
            session_lifetime: bans.session_lifetime,
            blacklist_count: bans.count,
            blacklist_window: bans.window,
            frp_disable_tls,
            frp_cert_validity_days,
            certs_dir,
            docker_socket: PathBuf::from(
                vars.non_empty(LYRE_DOCKER_SOCKET)
                    .unwrap_or(defaults::DEFAULT_DOCKER_SOCKET),
            ),
            workers: knobs.workers,
            pin_cpus: knobs.pin_cpus,
            max_connections: knobs.max_connections,
            forward_shared_key: knobs.forward_shared_key,
            driver: knobs.driver,
            pump: knobs.pump,
            control_address: knobs.control_address,
            routes: knobs.routes,
            nc_ca_file,
        };
        Ok((cfg, warnings))
    }

    /// `<base>/index.php/apps/app_api/harp/exapp-meta` (add `?appId=<id>`; H-28).
    pub fn exapp_meta_url(&self) -> String {
        format!(
            "{}/index.php/apps/app_api/harp/exapp-meta",
            self.nc_base_url
        )
    }

    /// `<base>/index.php/apps/app_api/harp/user-info` (session validation, §3.8).
    pub fn user_info_url(&self) -> String {
        format!("{}/index.php/apps/app_api/harp/user-info", self.nc_base_url)
    }

    /// `$LYRE_CERTS_DIR/frp`: the FRP PKI; generated only if this directory is absent (§5.2).
    pub fn frp_certs_dir(&self) -> PathBuf {
        self.certs_dir.join("frp")
    }

    /// `$LYRE_CERTS_DIR/cert.pem`: enables the HTTPS frontend when present (§6.2).
    pub fn https_cert_path(&self) -> PathBuf {
        self.certs_dir.join("cert.pem")
    }
}

/// Addresses and timeouts tolerate surrounding whitespace and HaRP's quotes: HAProxy's own
/// config tokenizer drops both when the value lands in `haproxy.cfg`.
fn unquote(s: &str) -> &str {
    strip_quotes(s.trim()).trim()
}

/// `NC_INSTANCE_URL` (H-07): required; one trailing `/`, then one trailing `/index.php`, go.
fn read_nc_base_url(vars: &Vars, warnings: &mut Vec<String>) -> Result<String, ConfigError> {
    let url = strip_quotes(vars.raw(NC_INSTANCE_URL).unwrap_or(""));
    if url.is_empty() {
        return Err(ConfigError::new(
            NC_INSTANCE_URL,
            "required: set it to the Nextcloud URL that Lyre can reach, e.g. https://cloud.example.com",
        ));
    }
    let base = url.strip_suffix('/').unwrap_or(url);
    let base = base.strip_suffix("/index.php").unwrap_or(base);
    // Case-insensitive, as the Nextcloud client parses it (`HTTPS://` works there too).
    let has_scheme = ["http://", "https://"].iter().any(|p| {
        base.get(..p.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(p))
    });
    if !has_scheme {
        warnings.push(format!(
            "{NC_INSTANCE_URL}: '{base}' does not start with http:// or https://; Nextcloud callbacks will fail"
        ));
    }
    Ok(base.to_string())
}

struct Listeners {
    exapps: SocketAddr,
    exapps_https: SocketAddr,
    frp: FrpAddress,
    frp_bind: SocketAddr,
}

impl Listeners {
    fn read(
        vars: &Vars,
        certs_dir: &Path,
        warnings: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        let frp_text = unquote(vars.raw(HP_FRP_ADDRESS).unwrap_or(DEFAULT_FRP_ADDRESS));
        let frp = parse_var(HP_FRP_ADDRESS, frp_text, address::parse_frp_address)?;
        let frp_bind =
            address::resolve_frp_address(&frp).map_err(|m| ConfigError::new(HP_FRP_ADDRESS, m))?;
        Ok(Listeners {
            exapps: read_listen(vars, HP_EXAPPS_ADDRESS, DEFAULT_EXAPPS_ADDRESS)?,
            exapps_https: read_https_listen(vars, certs_dir, warnings)?,
            frp,
            frp_bind,
        })
    }
}

fn read_listen(
    vars: &Vars,
    variable: &'static str,
    default: SocketAddr,
) -> Result<SocketAddr, ConfigError> {
    match vars.raw(variable) {
        Some(v) => parse_var(variable, unquote(v), address::parse_listen_address),
        None => Ok(default),
    }
}

/// HaRP renders the HTTPS bind only when `cert.pem` exists, so without it a bad value never
/// stopped HaRP: Lyre then warns and keeps the default.
fn read_https_listen(
    vars: &Vars,
    certs_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<SocketAddr, ConfigError> {
    match read_listen(vars, HP_EXAPPS_HTTPS_ADDRESS, DEFAULT_EXAPPS_HTTPS_ADDRESS) {
        Err(e) if !certs_dir.join("cert.pem").exists() => {
            warnings.push(format!(
                "{e} (ignored: no {}/cert.pem, so HTTPS is off)",
                certs_dir.display()
            ));
            Ok(DEFAULT_EXAPPS_HTTPS_ADDRESS)
        }
        other => other,
    }
}

struct Timeouts {
    connect: Duration,
    client: Duration,
    server: Duration,
    tunnel: Duration,
}

impl Timeouts {
    fn read(vars: &Vars) -> Result<Self, ConfigError> {
        let text = |variable, default| unquote(vars.raw(variable).unwrap_or(default));
        let server_text = text(HP_TIMEOUT_SERVER, DEFAULT_TIMEOUT_SERVER);
        // H-14: an unset (or empty) tunnel timeout takes the server timeout's value.
        let tunnel_text = vars
            .non_empty(HP_TIMEOUT_TUNNEL)
            .map_or(server_text, unquote);
        Ok(Timeouts {
            connect: parse_var(
                HP_TIMEOUT_CONNECT,
                text(HP_TIMEOUT_CONNECT, DEFAULT_TIMEOUT_CONNECT),
                duration::parse_timeout,
            )?,
            client: parse_var(
                HP_TIMEOUT_CLIENT,
                text(HP_TIMEOUT_CLIENT, DEFAULT_TIMEOUT_CLIENT),
                duration::parse_timeout,
            )?,
            server: parse_var(HP_TIMEOUT_SERVER, server_text, duration::parse_timeout)?,
            tunnel: parse_var(HP_TIMEOUT_TUNNEL, tunnel_text, duration::parse_timeout)?,
        })
    }
}

/// `HP_SESSION_LIFETIME`, `HP_BLACKLIST_COUNT`, `HP_BLACKLIST_WINDOW` (H-09, H-10). Set to
/// `""` they fail like the agent's `float("")` / `int("")`.
struct Bans {
    session_lifetime: Duration,
    count: u32,
    window: Duration,
}

impl Bans {
    fn read(vars: &Vars) -> Result<Self, ConfigError> {
        let session_lifetime = match vars.raw(HP_SESSION_LIFETIME) {
            Some(v) => parse_var(HP_SESSION_LIFETIME, v, scalars::parse_session_lifetime)?,
            None => Duration::from_secs_f64(DEFAULT_SESSION_LIFETIME_SECS),
        };
        let count = match vars.raw(HP_BLACKLIST_COUNT) {
            Some(v) => parse_var(HP_BLACKLIST_COUNT, v, |v| {
                scalars::parse_count(v, "failures")
            })?,
            None => DEFAULT_BLACKLIST_COUNT,
        };
        let window_secs = match vars.raw(HP_BLACKLIST_WINDOW) {
            Some(v) => u64::from(parse_var(HP_BLACKLIST_WINDOW, v, |v| {
                scalars::parse_count(v, "seconds")
            })?),
            None => DEFAULT_BLACKLIST_WINDOW_SECS,
        };
        Ok(Bans {
            session_lifetime,
            count,
            window: Duration::from_secs(window_secs),
        })
    }
}

/// The `LYRE_*` knobs; `""` means unset.
struct Knobs {
    workers: usize,
    pin_cpus: bool,
    max_connections: usize,
    forward_shared_key: bool,
    driver: DriverChoice,
    pump: PumpChoice,
    control_address: SocketAddr,
    routes: Vec<StaticRoute>,
}

impl Knobs {
    fn read(vars: &Vars) -> Result<Self, ConfigError> {
        fn knob<T>(
            vars: &Vars,
            variable: &'static str,
            parse: impl FnOnce(&str) -> Result<T, String>,
            default: impl FnOnce() -> T,
        ) -> Result<T, ConfigError> {
            vars.non_empty(variable)
                .map_or_else(|| Ok(default()), |v| parse_var(variable, v, parse))
        }
        Ok(Knobs {
            workers: knob(
                vars,
                LYRE_WORKERS,
                lyre::parse_workers,
                lyre::default_workers,
            )?,
            pin_cpus: knob(vars, LYRE_PIN_CPUS, lyre::parse_flag, || false)?,
            max_connections: knob(
                vars,
                LYRE_MAX_CONNECTIONS,
                lyre::parse_max_connections,
                || defaults::DEFAULT_MAX_CONNECTIONS,
            )?,
            forward_shared_key: knob(vars, LYRE_FORWARD_SHARED_KEY, lyre::parse_flag, || false)?,
            driver: knob(vars, LYRE_DRIVER, lyre::parse_driver, || DriverChoice::Auto)?,
            pump: knob(vars, LYRE_PUMP, lyre::parse_pump, || PumpChoice::Splice)?,
            control_address: lyre::parse_control_address(vars.non_empty(LYRE_CONTROL_ADDRESS))
                .map_err(|m| ConfigError::new(LYRE_CONTROL_ADDRESS, m))?,
            routes: knob(vars, LYRE_ROUTES, lyre::parse_routes, Vec::new)?,
        })
    }
}

/// Unset or empty: `warning`. An unknown level is fatal, as in HaRP (its agent fails to
/// start on one).
fn read_log_level(vars: &Vars) -> Result<LogLevel, ConfigError> {
    match vars.non_empty(HP_LOG_LEVEL) {
        None => Ok(LogLevel::Warning),
        Some(v) => parse_var(HP_LOG_LEVEL, v, scalars::parse_log_level),
    }
}

fn read_verbose_start(vars: &Vars, warnings: &mut Vec<String>) -> bool {
    let default = DEFAULT_VERBOSE_START == 1;
    let Some(v) = vars.non_empty(HP_VERBOSE_START) else {
        return default;
    };
    scalars::parse_verbose_start(v).unwrap_or_else(|e| {
        warnings.push(format!(
            "{HP_VERBOSE_START}: {e}; using {DEFAULT_VERBOSE_START}"
        ));
        default
    })
}

/// H-15: fatal only when certificates will be generated (TLS on, no `frp/` directory).
fn read_cert_validity_days(
    vars: &Vars,
    frp_disable_tls: bool,
    certs_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<u32, ConfigError> {
    let Some(v) = vars.non_empty(HP_FRP_CERT_VALIDITY_DAYS) else {
        return Ok(DEFAULT_FRP_CERT_VALIDITY_DAYS);
    };
    let frp_dir = certs_dir.join("frp");
    let generates = !frp_disable_tls && !frp_dir.is_dir();
    match scalars::parse_cert_validity_days(v) {
        Ok(days) => Ok(days),
        Err(e) if generates => Err(ConfigError::new(HP_FRP_CERT_VALIDITY_DAYS, e)),
        Err(e) => {
            let why = if frp_disable_tls {
                format!("{HP_FRP_DISABLE_TLS}=true")
            } else {
                format!("{} already exists", frp_dir.display())
            };
            warnings.push(format!("{HP_FRP_CERT_VALIDITY_DAYS}: {e} (ignored: no certificates are generated since {why})"));
            Ok(DEFAULT_FRP_CERT_VALIDITY_DAYS)
        }
    }
}
