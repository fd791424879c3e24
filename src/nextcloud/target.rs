//! Where the Nextcloud callbacks go: scheme, host, port, `Host` header and request paths
//! parsed once from `NC_INSTANCE_URL` (via `Config::exapp_meta_url` / `user_info_url`), plus
//! the rustls client config for `https` (system trust roots + optional `LYRE_NC_CA_FILE`).
//!
//! The system store is what `rustls-native-certs` finds (`/etc/ssl/certs` etc.; it also
//! honours `SSL_CERT_FILE` / `SSL_CERT_DIR`, which REPLACE the system store), and
//! `LYRE_NC_CA_FILE` ADDS certificates to it (read and checked by `crate::config` into
//! `Config::nc_ca_file`). The store is only loaded for `https`.
//!
//! Built once per process ([`NcTarget::from_config`]) and shared by every worker's client:
//! loading the system trust store costs milliseconds, so it is not repeated per worker.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};

use super::NcError;
use crate::config::{Config, NcCaFile, Secret};

/// Environment variable: a PEM file of extra CA certificates trusted for `https`
/// `NC_INSTANCE_URL`s, on top of the system store (a self-signed or private-CA Nextcloud).
pub use crate::config::names::LYRE_NC_CA_FILE;
/// Largest `LYRE_NC_CA_FILE` read; the file is read by `crate::config`.
pub use crate::config::MAX_CA_FILE_BYTES;

/// Everything about the Nextcloud endpoint that does not change at run time.
#[derive(Debug)]
pub struct NcTarget {
    /// Host as written in the URL (IPv6 without brackets), for DNS and TLS SNI.
    pub host: String,
    pub port: u16,
    /// `Host` header value: `host`, or `host:port` for a non-default port (like aiohttp).
    pub host_header: String,
    /// `.../index.php/apps/app_api/harp/exapp-meta` path (base path prefix included).
    pub meta_path: String,
    /// `.../index.php/apps/app_api/harp/user-info` path.
    pub user_info_path: String,
    pub shared_key: Secret,
    /// `Some` for `https`.
    pub tls: Option<Tls>,
}

/// TLS settings for an `https` target.
#[derive(Debug, Clone)]
pub struct Tls {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

/// One URL split into its parts (only what Lyre supports: `http(s)://host[:port][/path]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUrl {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub host_header: String,
    pub path: String,
}

fn url_error(url: &str, why: &str) -> NcError {
    NcError::Config(format!(
        "NC_INSTANCE_URL: cannot use '{url}' for Nextcloud callbacks: {why}; \
         set it to e.g. https://cloud.example.com or http://nextcloud:8080/subdir"
    ))
}

/// Parse `http(s)://host[:port][/path]`. No userinfo, query or fragment (they make no sense
/// in a base URL, and credentials there would clash with the forwarded `Authorization`).
pub fn parse_url(url: &str) -> Result<ParsedUrl, NcError> {
    let (https, rest) = if let Some(r) = strip_prefix_ci(url, "https://") {
        (true, r)
    } else if let Some(r) = strip_prefix_ci(url, "http://") {
        (false, r)
    } else {
        return Err(url_error(url, "it must start with http:// or https://"));
    };
    if rest.contains(['?', '#']) {
        return Err(url_error(url, "a query or fragment is not allowed"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(url_error(url, "credentials in the URL are not supported"));
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(url_error(
            url,
            "the path must be visible ASCII (percent-encode it)",
        ));
    }
    let (host, port) = split_authority(authority).ok_or_else(|| url_error(url, "bad host:port"))?;
    let host = host.to_ascii_lowercase();
    let port = port.unwrap_or(if https { 443 } else { 80 });
    let bracketed = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    // Like aiohttp: the port appears in `Host` only when it is not the scheme's default.
    let host_header = if port == if https { 443 } else { 80 } {
        bracketed
    } else {
        format!("{bracketed}:{port}")
    };
    Ok(ParsedUrl {
        https,
        host,
        port,
        host_header,
        path: path.to_string(),
    })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` -> (host without brackets, port).
fn split_authority(a: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &rest[..end];
        host.parse::<std::net::Ipv6Addr>().ok()?;
        match &rest[end + 1..] {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    let valid_host = !host.is_empty()
        && (host.contains(':')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_'));
    if !valid_host {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok().filter(|&n| n != 0)?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

impl NcTarget {
    /// From the config: `NC_INSTANCE_URL`, the shared key and, for https, the extra trust
    /// roots of `LYRE_NC_CA_FILE` (`cfg.nc_ca_file`).
    pub fn from_config(cfg: &Config) -> Result<Arc<NcTarget>, NcError> {
        let meta = parse_url(&cfg.exapp_meta_url())?;
        let user = parse_url(&cfg.user_info_url())?;
        let tls = if meta.https {
            let name = ServerName::try_from(meta.host.clone())
                .map_err(|_| url_error(&cfg.nc_base_url, "the host is not a valid TLS name"))?;
            Some(Tls {
                config: client_config(cfg.nc_ca_file.as_ref())?,
                server_name: name,
            })
        } else {
            None
        };
        Ok(Arc::new(NcTarget {
            host: meta.host,
            port: meta.port,
            host_header: meta.host_header,
            meta_path: meta.path,
            user_info_path: user.path,
            shared_key: cfg.shared_key.clone(),
            tls,
        }))
    }
}

/// rustls client config: Lyre's crypto provider, system roots plus `extra_ca`, default session
/// resumption (in-memory, shared by all connections of the process).
pub fn client_config(extra_ca: Option<&NcCaFile>) -> Result<Arc<ClientConfig>, NcError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    // Unparseable system certificates are skipped: one bad file must not disable TLS.
    let _ = roots.add_parsable_certificates(native.certs);
    if let Some(ca) = extra_ca {
        for cert in ca.certs.iter().cloned() {
            // `NcCaFile::load` checked this at start; still mapped, never unwrapped.
            roots.add(cert).map_err(|e| {
                NcError::Config(format!(
                    "{LYRE_NC_CA_FILE}: a certificate in {} is not a usable CA ({e}); \
                     point it at the PEM of the CA that signed the Nextcloud certificate",
                    ca.path.display()
                ))
            })?;
        }
    }
    if roots.is_empty() {
        return Err(NcError::Config(format!(
            "NC_INSTANCE_URL is https but no trust roots were found: install the system \
             CA bundle (ca-certificates) or set {LYRE_NC_CA_FILE} to a PEM CA file"
        )));
    }
    let provider = crate::tls::crypto_provider();
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NcError::Tls(format!("building the TLS client config failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
