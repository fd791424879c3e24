//! The HTTPS frontend's rustls config (harp-compat.md §6.2, H-20): HaRP's `ex_apps_https`
//! bind, enabled when `$LYRE_CERTS_DIR/cert.pem` exists at start. That one PEM file holds
//! the certificate chain (leaf first) and its private key, as HAProxy's `crt` expects.
//!
//! Owns: loading and checking that file, and the server-side TLS settings. Not owned: the
//! listener and the connections (`runtime`, `proxy::client`).
//!
//! ALPN: only `http/1.1` is offered. HAProxy would also offer `h2`; reverse proxies in front
//! of HaRP speak HTTP/1.1 (nginx `proxy_pass https://` never uses h2 upstream), and a client
//! that offers only `h2` is refused during the handshake instead of being answered in a
//! protocol it did not ask for. Clients that send no ALPN get HTTP/1.1.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use super::TlsError;

/// The one application protocol the HTTPS frontend speaks.
pub const HTTPS_ALPN: &[u8] = b"http/1.1";

fn cert_err(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::HttpsCert {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Build the server config from the PEM text of `path` (chain + key in one file).
pub fn https_config_from_pem(path: &Path, pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(path, e))?;
    if chain.is_empty() {
        return Err(cert_err(path, "no CERTIFICATE block"));
    }
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => cert_err(path, "no PRIVATE KEY block"),
        e => cert_err(path, e),
    })?;
    let provider = super::crypto_provider();
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| cert_err(path, e))?
        .with_no_client_auth()
        // Also checks that the key belongs to the first (leaf) certificate.
        .with_single_cert(chain, key)
        .map_err(|e| cert_err(path, e))?;
    cfg.alpn_protocols = vec![HTTPS_ALPN.to_vec()];
    Ok(Arc::new(cfg))
}

/// Read `path` and build the config. A missing file is the caller's business (HTTPS off).
pub fn https_config(path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let pem = std::fs::read(path).map_err(|err| TlsError::Io {
        path: path.to_path_buf(),
        err,
    })?;
    https_config_from_pem(path, &pem)
}

/// The HTTPS server config, replaceable at run time (SIGHUP, H-102): each new TLS
/// connection takes the current one; connections already up keep theirs.
pub struct HttpsCert {
    path: std::path::PathBuf,
    current: std::sync::RwLock<Arc<ServerConfig>>,
}

impl HttpsCert {
    /// Load `path` (chain + key); fails as [`https_config`] does.
    pub fn load(path: &Path) -> Result<HttpsCert, TlsError> {
        Ok(HttpsCert {
            path: path.to_path_buf(),
            current: std::sync::RwLock::new(https_config(path)?),
        })
    }

    /// The config for the next handshake (one uncontended read lock per connection).
    pub fn current(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-read the file. On error the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = https_config(&self.path)?;
        match self.current.write() {
            Ok(mut c) => *c = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> (String, String) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        (ck.cert.pem(), ck.signing_key.serialize_pem())
    }

    #[test]
    fn cert_pem_contents_accepted_or_refused_with_the_reason() {
        let (cert, key) = self_signed();
        let (other_cert, _) = self_signed();
        let path = Path::new("/certs/cert.pem");
        // (what, file contents, Ok or the expected words in the error)
        let rows: Vec<(&str, String, Result<(), &str>)> = vec![
            ("chain then key", format!("{cert}{key}"), Ok(())),
            ("key then chain", format!("{key}{cert}"), Ok(())),
            ("certificate only", cert.clone(), Err("no PRIVATE KEY")),
            ("key only", key.clone(), Err("no CERTIFICATE")),
            ("garbage", "hello\n".into(), Err("no CERTIFICATE")),
            (
                "key of another certificate",
                format!("{other_cert}{key}"),
                Err("cert.pem"),
            ),
            (
                "truncated certificate",
                format!("{}{key}", &cert[..cert.len() / 2]),
                Err("cert.pem"),
            ),
        ];
        for (what, pem, want) in rows {
            let got = https_config_from_pem(path, pem.as_bytes());
            match (got, want) {
                (Ok(cfg), Ok(())) => {
                    assert_eq!(cfg.alpn_protocols, vec![b"http/1.1".to_vec()], "{what}")
                }
                (Err(e), Err(words)) => {
                    let msg = e.to_string();
                    assert!(msg.contains(words), "{what}: {msg}");
                    assert!(
                        msg.contains("/certs/cert.pem"),
                        "{what} names the file: {msg}"
                    );
                    assert!(msg.contains("private key"), "{what} says the fix: {msg}");
                }
                (got, want) => panic!("{what}: got {:?}, want {want:?}", got.map(|_| ())),
            }
        }
    }
}
