//! TLS for the HTTPS-frontend tests: a throwaway CA and a server certificate for
//! `localhost` / `127.0.0.1` written as Lyre (and HaRP) expect them, `cert.pem` = chain +
//! private key in one PEM file, and rustls client configs trusting that CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// A certificates directory (`LYRE_CERTS_DIR`) holding `cert.pem`, plus the CA to trust.
pub struct TestCerts {
    /// `LYRE_CERTS_DIR`.
    pub dir: PathBuf,
    /// `dir/cert.pem`: leaf, CA, then the leaf's private key.
    pub cert_pem: PathBuf,
    /// The CA certificate alone (for clients: curl --cacert, nginx proxy_ssl_trusted_certificate).
    pub ca_pem: PathBuf,
    pub ca_text: String,
}

/// Make a CA and a `localhost`/`127.0.0.1` server certificate under `dir`.
pub fn make_certs(dir: &Path) -> TestCerts {
    std::fs::create_dir_all(dir).expect("create certs dir");
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.distinguished_name
        .push(DnType::CommonName, "Lyre test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("self-sign CA");
    let issuer = Issuer::new(ca, &ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf =
        CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).expect("leaf params");
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("sign leaf");
    let cert_pem = dir.join("cert.pem");
    let text = format!(
        "{}{}{}",
        leaf_cert.pem(),
        ca_cert.pem(),
        leaf_key.serialize_pem()
    );
    std::fs::write(&cert_pem, text).expect("write cert.pem");
    let ca_pem = dir.join("ca.pem");
    std::fs::write(&ca_pem, ca_cert.pem()).expect("write ca.pem");
    TestCerts {
        dir: dir.to_path_buf(),
        cert_pem,
        ca_pem,
        ca_text: ca_cert.pem(),
    }
}

impl TestCerts {
    /// A rustls client trusting the test CA, offering `alpn` (empty: no ALPN extension).
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(self.ca_text.as_bytes()).expect("CA PEM");
        roots.add(ca).expect("add CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }

    /// [`TestCerts::client_config`] offering `http/1.1`, as nginx and curl do.
    pub fn http11_client(&self) -> Arc<ClientConfig> {
        self.client_config(&[b"http/1.1"])
    }
}
