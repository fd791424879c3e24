//! `lyre certs` makes HaRP's FRP PKI (harp-compat.md §5.2, H-15..H-17), read back with the
//! openssl CLI (the tool HaRP's start script uses): names, SANs, CA flag, validity,
//! signatures, no EKU on the client certificate, and a second run keeps the files.

mod common;

use std::path::Path;
use std::process::Command;

use common::TempDir;

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl CLI (tests/peers/install.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn x509(cert: &Path, what: &[&str]) -> String {
    let mut args = vec!["x509", "-in", cert.to_str().expect("utf-8 path"), "-noout"];
    args.extend_from_slice(what);
    openssl(&args)
}

fn lyre_certs(dir: &Path, days: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lyre"))
        .env_clear()
        .env("LYRE_CERTS_DIR", dir)
        .env("HP_FRP_CERT_VALIDITY_DAYS", days)
        .arg("certs")
        .output()
        .expect("run lyre certs")
}

/// Whole days between notBefore and notAfter, via `openssl x509 -checkend`.
fn valid_for_days(cert: &Path, days: i64) -> bool {
    let secs = (days * 86_400).to_string();
    let out = Command::new("openssl")
        .args([
            "x509",
            "-in",
            cert.to_str().unwrap(),
            "-noout",
            "-checkend",
            &secs,
        ])
        .output()
        .expect("openssl");
    out.status.success()
}

#[test]
fn lyre_certs_makes_harps_pki() {
    let tmp = TempDir::new("pki");
    let out = lyre_certs(tmp.path(), "42");
    assert!(out.status.success(), "{out:?}");
    let frp = tmp.path().join("frp");
    let ca = frp.join("ca.crt");
    let server = frp.join("server.crt");
    let client = frp.join("client.crt");

    let subject = |c: &Path| x509(c, &["-subject", "-nameopt", "RFC2253"]);
    assert_eq!(subject(&ca).trim(), "subject=CN=harp.nc");
    assert_eq!(subject(&server).trim(), "subject=CN=harp.nc");
    assert_eq!(subject(&client).trim(), "subject=CN=harp.client.nc");
    let issuer = x509(&server, &["-issuer", "-nameopt", "RFC2253"]);
    assert_eq!(issuer.trim(), "issuer=CN=harp.nc");

    let text = |c: &Path| x509(c, &["-text"]);
    assert!(text(&ca).contains("CA:TRUE"), "{}", text(&ca));
    assert!(text(&server).contains("DNS:harp.nc"), "{}", text(&server));
    let client_text = text(&client);
    assert!(client_text.contains("DNS:harp.client.nc"), "{client_text}");
    assert!(
        !client_text.contains("Extended Key Usage"),
        "HaRP's client certificate has no EKU: {client_text}"
    );
    for c in [&ca, &server, &client] {
        let t = text(c);
        assert!(
            t.contains("Signature Algorithm: ecdsa-with-SHA256"),
            "SHA-256: {t}"
        );
        // HP_FRP_CERT_VALIDITY_DAYS=42: valid 41 days from now, expired within 43.
        assert!(valid_for_days(c, 41), "{} expires too early", c.display());
        assert!(!valid_for_days(c, 43), "{} outlives 42 days", c.display());
    }
    let verified = openssl(&[
        "verify",
        "-CAfile",
        ca.to_str().unwrap(),
        server.to_str().unwrap(),
        client.to_str().unwrap(),
    ]);
    assert_eq!(verified.matches(": OK").count(), 2, "{verified}");
    for key in ["ca.key", "server.key", "client.key"] {
        openssl(&["pkey", "-in", frp.join(key).to_str().unwrap(), "-noout"]);
    }

    // H-16: an existing directory is kept as it is, whatever the days now say.
    let before = std::fs::read(&client).unwrap();
    let again = lyre_certs(tmp.path(), "7");
    assert!(again.status.success(), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stdout).contains("kept existing"));
    assert_eq!(std::fs::read(&client).unwrap(), before);
}

/// H-15: a validity of 0 days is refused when certificates would be generated.
#[test]
fn zero_days_is_refused_naming_the_variable() {
    let tmp = TempDir::new("pki0");
    let out = lyre_certs(tmp.path(), "0");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HP_FRP_CERT_VALIDITY_DAYS"), "{err}");
    assert!(!tmp.path().join("frp").exists());
}
