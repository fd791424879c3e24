//! `LYRE_NC_CA_FILE`: a PEM file of extra CA certificates trusted for an `https`
//! `NC_INSTANCE_URL` on top of the system store (a self-signed or private-CA Nextcloud).
//! Read and checked once at start, so a bad file stops Lyre with a message naming the
//! variable and the fix; `crate::nextcloud` builds its TLS client config from the result.
//!
//! Like before it moved here, the file is only read when `NC_INSTANCE_URL` is `https`: for
//! plain `http` nothing uses it, so it is ignored with a warning.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::names::{LYRE_NC_CA_FILE, NC_INSTANCE_URL};
use super::{ConfigError, Vars};

/// Largest `LYRE_NC_CA_FILE` read (a CA bundle is a few hundred KiB at most).
pub const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The loaded `LYRE_NC_CA_FILE`: at least one certificate, each usable as a trust anchor.
#[derive(Clone, PartialEq, Eq)]
pub struct NcCaFile {
    pub path: PathBuf,
    pub certs: Vec<CertificateDer<'static>>,
}

/// Path and count only: the DER bytes would flood a `{:?}` of the config.
impl fmt::Debug for NcCaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NcCaFile")
            .field("path", &self.path)
            .field("certs", &self.certs.len())
            .finish()
    }
}

impl NcCaFile {
    /// Read `path` (at most [`MAX_CA_FILE_BYTES`]) and check every certificate in it.
    pub fn load(path: &Path) -> Result<NcCaFile, ConfigError> {
        let bad = |why: String| {
            ConfigError::new(
                LYRE_NC_CA_FILE,
                format!(
                    "cannot use {}: {why}; set it to a readable PEM file of CA certificates \
                     or unset it",
                    path.display()
                ),
            )
        };
        let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        if meta.len() > MAX_CA_FILE_BYTES {
            return Err(bad(format!("larger than {MAX_CA_FILE_BYTES} bytes")));
        }
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("invalid PEM ({e:?})")))?;
        if certs.is_empty() {
            return Err(bad("no CERTIFICATE blocks found".into()));
        }
        // The same check the client config makes later, here so it fails at start.
        let mut probe = rustls::RootCertStore::empty();
        for cert in &certs {
            probe.add(cert.clone()).map_err(|e| {
                ConfigError::new(
                    LYRE_NC_CA_FILE,
                    format!(
                        "a certificate in {} is not a usable CA ({e}); point it at the PEM \
                         of the CA that signed the Nextcloud certificate",
                        path.display()
                    ),
                )
            })?;
        }
        Ok(NcCaFile {
            path: path.to_path_buf(),
            certs,
        })
    }
}

/// `LYRE_NC_CA_FILE` (`""` = unset), loaded only for an `https` base URL.
pub(super) fn read_nc_ca_file(
    vars: &Vars,
    nc_base_url: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<NcCaFile>, ConfigError> {
    let Some(path) = vars.non_empty(LYRE_NC_CA_FILE) else {
        return Ok(None);
    };
    let https = nc_base_url
        .get(.."https://".len())
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    if !https {
        warnings.push(format!(
            "{LYRE_NC_CA_FILE}: ignored, since {NC_INSTANCE_URL} is not https"
        ));
        return Ok(None);
    }
    NcCaFile::load(Path::new(path)).map(Some)
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("lyre-ca-file-test-{}-{tag}", std::process::id()));
            std::fs::create_dir_all(&path).expect("create temp dir");
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).expect("self-signed CA").pem()
    }

    fn load(dir: &Path, url: &str, ca_file: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let pairs = [
            ("HP_SHARED_KEY", "k3y-for-tests"),
            ("NC_INSTANCE_URL", url),
            ("LYRE_CERTS_DIR", &dir.to_string_lossy()),
            ("LYRE_NC_CA_FILE", &ca_file.to_string_lossy()),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        Config::from_env(pairs)
    }

    #[test]
    fn valid_file_is_loaded_into_the_config() {
        let dir = TempDir::new("valid");
        let path = dir.0.join("ca.pem");
        std::fs::write(&path, format!("{}{}", ca_pem(), ca_pem())).expect("write");
        let (cfg, warnings) = load(&dir.0, "https://nc.example", &path).expect("starts");
        let ca = cfg.nc_ca_file.expect("loaded");
        assert_eq!((ca.path, ca.certs.len()), (path, 2));
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn bad_files_fail_at_start_naming_the_variable_and_the_fix() {
        let dir = TempDir::new("bad");
        let junk = dir.0.join("junk.pem");
        std::fs::write(&junk, "not a certificate").expect("write");
        let empty = dir.0.join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        let rows = [
            (dir.0.join("absent.pem"), "No such file"),
            (junk, "no CERTIFICATE blocks found"),
            (empty, "no CERTIFICATE blocks found"),
            (dir.0.clone(), "cannot use"),
        ];
        for (path, why) in rows {
            let e = load(&dir.0, "https://nc.example", &path).expect_err("fails");
            assert_eq!(e.variable, LYRE_NC_CA_FILE, "{e}");
            let text = e.to_string();
            let want = format!("LYRE_NC_CA_FILE: cannot use {}: ", path.display());
            assert!(text.starts_with(&want), "{text}");
            assert!(text.contains(why), "{text} lacks {why}");
            assert!(text.ends_with("set it to a readable PEM file of CA certificates or unset it"));
        }
    }

    #[test]
    fn plain_http_ignores_the_file_with_a_warning() {
        let dir = TempDir::new("http");
        let (cfg, warnings) = load(&dir.0, "http://nc", &dir.0.join("absent.pem")).expect("starts");
        assert!(cfg.nc_ca_file.is_none());
        assert_eq!(
            warnings,
            ["LYRE_NC_CA_FILE: ignored, since NC_INSTANCE_URL is not https"]
        );
    }
}
