//! FRP certificate material, generated the way HaRP's start script does (harp-compat §5.2):
//! only when `<certs_dir>/frp` does not exist; an existing directory is used untouched.
//!
//! Keys are RSA 2048 with SHA-256 signatures, as HaRP's `openssl` commands make them.
//! Layout and names match HaRP: `ca.crt/ca.key`, `server.crt/server.key` (CN and SAN
//! `harp.nc`), `client.crt/client.key` (CN and SAN `harp.client.nc`, no EKU), SHA-256,
//! leaves with subject and authority key identifiers as OpenSSL writes them, so OpenSSL
//! tools verify them against `ca.crt` too (tests/frp_pki.rs reads them with the CLI).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256,
};
use time::{Duration as TimeDuration, OffsetDateTime};

use super::TlsError;

/// HaRP's names (frp-protocol §1.5).
pub const CA_NAME: &str = "harp.nc";
pub const SERVER_NAME: &str = "harp.nc";
pub const CLIENT_NAME: &str = "harp.client.nc";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiPaths {
    pub dir: PathBuf,
    pub ca_crt: PathBuf,
    pub ca_key: PathBuf,
    pub server_crt: PathBuf,
    pub server_key: PathBuf,
    pub client_crt: PathBuf,
    pub client_key: PathBuf,
}

impl PkiPaths {
    pub fn in_dir(dir: &Path) -> PkiPaths {
        PkiPaths {
            dir: dir.to_path_buf(),
            ca_crt: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_crt: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_crt: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        }
    }
}

/// Make sure `<certs_dir>/frp` holds the CA, server and client material. Generated into a
/// temporary sibling and renamed, so a crash never leaves a half-written directory that
/// would then be "reused untouched".
pub fn ensure_frp_pki(certs_dir: &Path, validity_days: u32) -> Result<PkiPaths, TlsError> {
    let dir = certs_dir.join("frp");
    if dir.exists() {
        return Ok(PkiPaths::in_dir(&dir));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |err| TlsError::Io { path, err }
    };
    fs::create_dir_all(certs_dir).map_err(io(certs_dir))?;
    let tmp = certs_dir.join(format!(".frp.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir(&tmp).map_err(io(&tmp))?;
    let files = generate(validity_days)?;
    let paths = PkiPaths::in_dir(&tmp);
    let rows = [
        (&paths.ca_crt, &files.ca_crt, 0o644),
        (&paths.ca_key, &files.ca_key, 0o600),
        (&paths.server_crt, &files.server_crt, 0o644),
        (&paths.server_key, &files.server_key, 0o600),
        (&paths.client_crt, &files.client_crt, 0o644),
        (&paths.client_key, &files.client_key, 0o600),
    ];
    for (path, pem, mode) in rows {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(io(path))?;
        f.write_all(pem.as_bytes()).map_err(io(path))?;
    }
    fs::rename(&tmp, &dir).map_err(io(&dir))?;
    Ok(PkiPaths::in_dir(&dir))
}

/// A throw-away self-signed server certificate and key (DER), as frps makes at start when
/// it has no certificate files (frp-protocol §1.4): only for TLS that nothing verifies, so
/// an ECDSA key (made in microseconds, where RSA 2048 takes ~150 ms at every start).
pub fn throwaway_server_cert() -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let gen = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(gen)?;
    let cert = params(SERVER_NAME, Some(SERVER_NAME), 3650)?
        .self_signed(&key)
        .map_err(gen)?;
    Ok((cert.der().to_vec(), key.serialize_der()))
}

/// PEM texts of one generated set.
pub struct GeneratedPki {
    pub ca_crt: String,
    pub ca_key: String,
    pub server_crt: String,
    pub server_key: String,
    pub client_crt: String,
    pub client_key: String,
}

fn params(cn: &str, san: Option<&str>, validity_days: u32) -> Result<CertificateParams, TlsError> {
    let sans: Vec<String> = san.map(|s| vec![s.to_string()]).unwrap_or_default();
    let mut p = CertificateParams::new(sans).map_err(|e| TlsError::Generate(e.to_string()))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    p.not_before = now - TimeDuration::minutes(5);
    p.not_after = now + TimeDuration::days(i64::from(validity_days.max(1)));
    let mut serial = crate::frp::crypto::random_bytes::<16>();
    serial[0] &= 0x7f;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(p)
}

pub fn generate(validity_days: u32) -> Result<GeneratedPki, TlsError> {
    let gen = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let key = || KeyPair::generate_for(&PKCS_RSA_SHA256).map_err(gen);
    let ca_key = key()?;
    let mut ca = params(CA_NAME, None, validity_days)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(gen)?;
    let issuer = Issuer::new(ca, &ca_key);
    // The server certificate has the CA's name (HaRP's layout). Without key identifiers
    // (its own and its issuer's), OpenSSL takes it for self-signed and fails to verify it
    // against ca.crt; Go matched by key and did not mind. OpenSSL's `x509 -req`, which
    // HaRP's script uses, writes both. `ExplicitNoCa` is what makes rcgen write the
    // subject key identifier (with `CA:FALSE`).
    let leaf = |cn: &str| {
        params(cn, Some(cn), validity_days).map(|mut p| {
            p.use_authority_key_identifier_extension = true;
            p.is_ca = IsCa::ExplicitNoCa;
            p
        })
    };
    let server_key = key()?;
    let server = leaf(SERVER_NAME)?
        .signed_by(&server_key, &issuer)
        .map_err(gen)?;
    let client_key = key()?;
    let client = leaf(CLIENT_NAME)?
        .signed_by(&client_key, &issuer)
        .map_err(gen)?;
    Ok(GeneratedPki {
        ca_crt: ca_cert.pem(),
        ca_key: ca_key.serialize_pem(),
        server_crt: server.pem(),
        server_key: server_key.serialize_pem(),
        client_crt: client.pem(),
        client_key: client_key.serialize_pem(),
    })
}
