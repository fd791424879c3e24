//! The rustls server config for the FRP listener: HaRP's server certificate and mandatory
//! client certificates chaining to HaRP's CA (frps `transport.tls.force` + trustedCaFile).
//!
//! Client verification is rustls's WebPKI verifier. HaRP's client certificate has no
//! ExtendedKeyUsage; webpki only enforces clientAuth when the extension is present, so it
//! is accepted as is (tested below with a certificate without EKU).
//! The verifier's CA hints name the CA's DN, which Go needs to present its certificate
//! (frp-protocol §1.4).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::{PkiPaths, TlsError};

fn pem_err(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(path, e))?;
    if certs.is_empty() {
        return Err(pem_err(path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_err(path, e))
}

/// Server config requiring a client certificate signed by `ca.crt`.
pub fn server_config(pki: &PkiPaths) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = super::crypto_provider();
    let mut roots = RootCertStore::empty();
    for ca in load_certs(&pki.ca_crt)? {
        roots.add(ca).map_err(|e| pem_err(&pki.ca_crt, e))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let chain = load_certs(&pki.server_crt)?;
    let key = load_key(&pki.server_key)?;
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    // frpc never resumes; tickets would only be extra bytes after the handshake.
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

/// Server config of `HP_FRP_DISABLE_TLS=true`: frps with `transport.tls.force = false` and
/// no certificate files still completes a TLS handshake for an frpc that asks for one,
/// with a throw-away self-signed certificate and no client certificate (frp-protocol
/// §1.4). frpc without `trustedCaFile` verifies nothing, so it connects.
pub fn throwaway_server_config() -> Result<Arc<ServerConfig>, TlsError> {
    let (cert, key) = super::pki::throwaway_server_cert()?;
    let provider = super::crypto_provider();
    let key = PrivateKeyDer::try_from(key).map_err(|e| TlsError::Config(e.to_string()))?;
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert)], key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::UnixTime;

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("lyre-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn generated_pki_is_reused_and_client_cert_without_eku_verifies() {
        let dir = tempdir("pki");
        let paths = crate::tls::ensure_frp_pki(&dir, 30).unwrap();
        let first = std::fs::read(&paths.ca_crt).unwrap();
        let again = crate::tls::ensure_frp_pki(&dir, 30).unwrap();
        assert_eq!(paths, again);
        assert_eq!(
            std::fs::read(&again.ca_crt).unwrap(),
            first,
            "existing dir must be untouched"
        );
        assert!(server_config(&paths).is_ok());

        let mut roots = RootCertStore::empty();
        roots
            .add(load_certs(&paths.ca_crt).unwrap().remove(0))
            .unwrap();
        let provider = crate::tls::crypto_provider();
        let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        let client = load_certs(&paths.client_crt).unwrap().remove(0);
        assert!(v.verify_client_cert(&client, &[], UnixTime::now()).is_ok());
        // A certificate from another CA is refused.
        let other = crate::tls::pki::generate(30).unwrap();
        let foreign = CertificateDer::from_pem_slice(other.client_crt.as_bytes()).unwrap();
        assert!(v
            .verify_client_cert(&foreign, &[], UnixTime::now())
            .is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
