//! TLS for the FRP listener (frp-protocol.md §1.3-1.5, harp-compat.md §5.1-5.2) and the
//! HTTPS frontend (harp-compat.md §6.2).
//!
//! Owns: the first-byte sniff (0x16 TLS, 0x17 marker + TLS, else plaintext), the rustls
//! server config with mutual TLS against the Lyre/HaRP CA, HaRP-style PKI generation, the
//! HTTPS frontend's config from `cert.pem` (`frontend`), and [`Transport`], the plain-or-TLS
//! stream the FRP server and HTTPS clients are read and written through. Knows nothing
//! about frp messages, yamux or HTTP.

pub mod config;
pub mod frontend;
pub mod pki;
pub mod sniff;
pub mod stream;

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use config::server_config;
pub use frontend::https_config;
pub use pki::{ensure_frp_pki, PkiPaths};
pub use sniff::{accept, FirstByte, FrpTls};
pub use stream::{TlsSession, Transport};

/// The one crypto provider of every rustls config in Lyre (FRP listener, HTTPS frontend,
/// Nextcloud client): ring, whose AES-GCM has a VAES path (see Cargo.toml for the numbers).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[derive(Debug)]
pub enum TlsError {
    /// A file under the certificates directory could not be read or written.
    Io { path: PathBuf, err: std::io::Error },
    /// A PEM file holds no usable certificate / key.
    Pem { path: PathBuf, reason: String },
    /// The HTTPS frontend's `cert.pem` is unusable (no chain, no key, key does not match).
    HttpsCert { path: PathBuf, reason: String },
    /// Certificate generation failed (rcgen).
    Generate(String),
    /// rustls refused the certificate material.
    Config(String),
    /// A peer spoke plaintext while TLS is required (`HP_FRP_DISABLE_TLS` is not `true`).
    PlaintextRefused,
    /// The peer sent nothing within the first-byte deadline.
    FirstByteTimeout,
    /// The TLS handshake failed (bad client certificate, wrong CA, garbage).
    Handshake(std::io::Error),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::Io { path, err } => write!(f, "{}: {err}", path.display()),
            TlsError::Pem { path, reason } => write!(
                f,
                "{}: {reason} (delete the frp certificates directory to regenerate)",
                path.display()
            ),
            TlsError::HttpsCert { path, reason } => write!(
                f,
                "{}: {reason} (the HTTPS frontend needs this file to hold the PEM certificate \
                 chain and its private key; fix it, or remove it to turn HTTPS off)",
                path.display()
            ),
            TlsError::Generate(r) => write!(f, "generating the FRP certificates failed: {r}"),
            TlsError::Config(r) => write!(f, "FRP TLS configuration rejected: {r}"),
            TlsError::PlaintextRefused => write!(
                f,
                "frpc connected without TLS; enable transport.tls in frpc or set HP_FRP_DISABLE_TLS=true"
            ),
            TlsError::FirstByteTimeout => write!(f, "client sent nothing within the first-byte deadline"),
            TlsError::Handshake(e) => write!(
                f,
                "TLS handshake with frpc failed: {e} (client certificate must be signed by the frp CA)"
            ),
        }
    }
}

impl std::error::Error for TlsError {}
