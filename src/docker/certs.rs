//! `install_certificates` (harp-compat.md §4.4.2, H-83, H-84): put Nextcloud's CA bundle
//! into the ExApp's system trust store and HaRP's FRP client certificates into
//! `/certs/frp/`, starting a stopped container for the duration.
//!
//! Status mapping, quirks kept: container missing 404; inspect/start answering otherwise 503;
//! everything else that fails (engine unreachable, exec API, archive upload, non-zero exit of
//! `cat`/`mkdir`) is 500. A failing trust-store update command is only logged.

use std::time::Duration;

use serde_json::json;

use super::client::EngineRequest;
use super::exapp::{unexpected, Target};
use super::frames::{demux_text, tar_files};
use super::payload::CertsPayload;
use crate::control::reply::ControlReply;

const DEBIAN_CA_DIR: &str = "/usr/local/share/ca-certificates";
const RHEL_CA_DIR: &str = "/etc/pki/ca-trust/source/anchors";
/// Where ExApps' frpc reads its TLS material (harp-compat.md §5.4).
const FRP_CERTS_TARGET: &str = "/certs/frp";
const FRP_CERT_FILES: [&str; 3] = ["ca.crt", "client.crt", "client.key"];
/// Largest FRP certificate file read from disk (they are a few KiB).
const MAX_FRP_CERT_FILE_BYTES: u64 = 256 * 1024;
/// How long to wait for Docker to record an exec's exit code after its stream closed.
const EXEC_EXIT_POLLS: u32 = 40;
const EXEC_EXIT_POLL_INTERVAL: Duration = Duration::from_millis(25);

/// The trust store layout an `/etc/os-release` text implies: directory and update command.
pub fn trust_store_for(os_release: &str) -> Option<(&'static str, &'static [&'static str])> {
    let text = os_release.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if has(&["alpine", "debian", "ubuntu"]) {
        Some((DEBIAN_CA_DIR, &["update-ca-certificates"]))
    } else if has(&["centos", "almalinux", "rhel", "fedora"]) {
        Some((RHEL_CA_DIR, &["update-ca-trust", "extract"]))
    } else {
        None
    }
}

/// Every `-----BEGIN CERTIFICATE-----...-----END CERTIFICATE-----` block, in order.
pub fn pem_certificates(bundle: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = bundle;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        out.push(format!("{}\n", &rest[start..end]));
        rest = &rest[end..];
    }
    out
}

pub async fn install_certificates(t: &Target<'_>, p: &CertsPayload) -> ControlReply {
    let c = p.name.container();
    let was_running = match container_running(t, &c).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if !was_running {
        if let Err(resp) = start_for_install(t, &c).await {
            return resp;
        }
    }
    let result = install_all(t, &c, p).await;
    if !was_running {
        stop_after_install(t, &c).await;
    }
    match result {
        Ok(()) => ControlReply::no_content(),
        Err(msg) => {
            tracing::warn!("install_certificates into '{c}': {msg}");
            ControlReply::text(500, msg)
        }
    }
}

async fn container_running(t: &Target<'_>, c: &str) -> Result<bool, ControlReply> {
    let path = format!("/containers/{c}/json");
    match t
        .call(&EngineRequest::get(&path), t.ctx.timeouts.certificates)
        .await
    {
        Ok(r) if r.status == 200 => Ok(r.json()["State"]["Running"].as_bool().unwrap_or(false)),
        Ok(r) if r.status == 404 => Err(ControlReply::text(
            404,
            format!("Container '{c}' not found."),
        )),
        Ok(r) => Err(unexpected(
            503,
            &format!("Error inspecting container '{c}'"),
            &r,
        )),
        Err(e) => Err(ControlReply::text(
            500,
            format!("Error inspecting container '{c}': {e}"),
        )),
    }
}

async fn start_for_install(t: &Target<'_>, c: &str) -> Result<(), ControlReply> {
    let path = format!("/containers/{c}/start");
    match t
        .call(&EngineRequest::post(&path), t.ctx.timeouts.certificates)
        .await
    {
        Ok(r) if matches!(r.status, 204 | 304) => Ok(()),
        Ok(r) => Err(unexpected(
            503,
            &format!("Error starting container '{c}'"),
            &r,
        )),
        Err(e) => Err(ControlReply::text(
            500,
            format!("Error starting container '{c}': {e}"),
        )),
    }
}

async fn stop_after_install(t: &Target<'_>, c: &str) {
    let path = format!("/containers/{c}/stop");
    match t
        .call(&EngineRequest::post(&path), t.ctx.timeouts.certificates)
        .await
    {
        Ok(r) if matches!(r.status, 204 | 304 | 404) => {}
        Ok(r) => tracing::warn!(
            "stopping '{c}' after install_certificates: engine answered {}",
            r.status
        ),
        Err(e) => tracing::warn!("stopping '{c}' after install_certificates: {e}"),
    }
}

async fn install_all(t: &Target<'_>, c: &str, p: &CertsPayload) -> Result<(), String> {
    let (code, os_release) = exec(t, c, &["cat", "/etc/os-release"]).await?;
    if code != 0 {
        return Err(format!(
            "'cat /etc/os-release' exited with {code}: {os_release}"
        ));
    }
    let bundle = p.system_certs_bundle.as_deref().unwrap_or_default();
    if !bundle.is_empty() {
        match trust_store_for(&os_release) {
            Some((dir, update)) => install_system_certs(t, c, dir, update, bundle).await?,
            None => tracing::info!("'{c}': unknown OS, system CA bundle not installed"),
        }
    }
    if p.install_frp_certs {
        if let Some(files) = read_frp_certs(t) {
            mkdir(t, c, FRP_CERTS_TARGET).await?;
            upload(t, c, files).await?;
        }
    }
    Ok(())
}

async fn install_system_certs(
    t: &Target<'_>,
    c: &str,
    dir: &str,
    update: &[&str],
    bundle: &str,
) -> Result<(), String> {
    let certs = pem_certificates(bundle);
    if certs.is_empty() {
        return Ok(());
    }
    mkdir(t, c, dir).await?;
    let files = certs
        .into_iter()
        .enumerate()
        .map(|(i, pem)| (format!("{dir}/custom_ca_cert_{i}.crt"), pem.into_bytes()))
        .collect::<Vec<_>>();
    upload(t, c, files).await?;
    match exec(t, c, update).await {
        Ok((0, _)) => {}
        Ok((code, out)) => tracing::warn!("'{c}': {update:?} exited with {code}: {out}"),
        Err(e) => tracing::warn!("'{c}': {update:?} failed: {e}"),
    }
    Ok(())
}

/// `$frp_certs_dir/{ca.crt,client.crt,client.key}` as archive members, or `None` if any is
/// missing (TLS disabled: skip silently, H-84).
fn read_frp_certs(t: &Target<'_>) -> Option<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::with_capacity(FRP_CERT_FILES.len());
    for name in FRP_CERT_FILES {
        let path = t.ctx.frp_certs_dir.join(name);
        let too_big = std::fs::metadata(&path).ok()?.len() > MAX_FRP_CERT_FILE_BYTES;
        if too_big {
            tracing::warn!(
                "{} is larger than {MAX_FRP_CERT_FILE_BYTES} bytes; FRP certs not installed",
                path.display()
            );
            return None;
        }
        files.push((
            format!("{FRP_CERTS_TARGET}/{name}"),
            std::fs::read(&path).ok()?,
        ));
    }
    Some(files)
}

async fn mkdir(t: &Target<'_>, c: &str, dir: &str) -> Result<(), String> {
    match exec(t, c, &["mkdir", "-p", dir]).await? {
        (0, _) => Ok(()),
        (code, out) => Err(format!("'mkdir -p {dir}' exited with {code}: {out}")),
    }
}

/// `PUT /containers/<c>/archive?path=/` with relative member names.
async fn upload(t: &Target<'_>, c: &str, files: Vec<(String, Vec<u8>)>) -> Result<(), String> {
    let tar = tar_files(&files).ok_or("certificate path too long for a tar archive")?;
    let path = format!("/containers/{c}/archive?path=/");
    let req = EngineRequest {
        method: "PUT",
        path: &path,
        body: Some(("application/x-tar", &tar)),
    };
    match t.call(&req, t.ctx.timeouts.certificates).await {
        Ok(r) if r.status == 200 => Ok(()),
        Ok(r) => Err(format!(
            "archive upload into '{c}': engine answered {} {}",
            r.status,
            r.message()
        )),
        Err(e) => Err(format!("archive upload into '{c}': {e}")),
    }
}

/// Run `cmd` in `c` through the exec API; its exit code (-1 if unknown) and output text.
async fn exec(t: &Target<'_>, c: &str, cmd: &[&str]) -> Result<(i64, String), String> {
    let timeout = t.ctx.timeouts.certificates;
    let create = json!({ "AttachStdout": true, "AttachStderr": true, "Cmd": cmd }).to_string();
    let path = format!("/containers/{c}/exec");
    let id = match t
        .call(
            &EngineRequest::json("POST", &path, create.as_bytes()),
            timeout,
        )
        .await
    {
        Ok(r) if r.status == 201 => r.json()["Id"].as_str().unwrap_or_default().to_string(),
        Ok(r) => {
            return Err(format!(
                "exec create {cmd:?}: engine answered {} {}",
                r.status,
                r.message()
            ))
        }
        Err(e) => return Err(format!("exec create {cmd:?}: {e}")),
    };
    let start_path = format!("/exec/{id}/start");
    let start = json!({ "Detach": false, "Tty": false }).to_string();
    let output = match t
        .call(
            &EngineRequest::json("POST", &start_path, start.as_bytes()),
            timeout,
        )
        .await
    {
        Ok(r) if r.status == 200 => demux_text(&r.body),
        Ok(r) => {
            return Err(format!(
                "exec start {cmd:?}: engine answered {} {}",
                r.status,
                r.message()
            ))
        }
        Err(e) => return Err(format!("exec start {cmd:?}: {e}")),
    };
    Ok((exit_code(t, &id).await?, output))
}

/// `ExitCode` of a finished exec. Docker may record it a moment after the output stream
/// closed (`Running: true`, `ExitCode: null`); poll briefly instead of reading that as -1.
async fn exit_code(t: &Target<'_>, id: &str) -> Result<i64, String> {
    let path = format!("/exec/{id}/json");
    for _ in 0..EXEC_EXIT_POLLS {
        let doc = match t
            .call(&EngineRequest::get(&path), t.ctx.timeouts.certificates)
            .await
        {
            Ok(r) if r.status == 200 => r.json(),
            Ok(r) => {
                return Err(format!(
                    "exec inspect: engine answered {} {}",
                    r.status,
                    r.message()
                ))
            }
            Err(e) => return Err(format!("exec inspect: {e}")),
        };
        let running = doc["Running"].as_bool().unwrap_or(false);
        match doc["ExitCode"].as_i64() {
            Some(code) if !running => return Ok(code),
            None if !running => return Ok(-1),
            _ => monoio::time::sleep(EXEC_EXIT_POLL_INTERVAL).await,
        }
    }
    Ok(-1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_store_by_os_release() {
        let rows: [(&str, Option<&str>); 7] = [
            ("ID=alpine\nVERSION_ID=3.20", Some(DEBIAN_CA_DIR)),
            ("ID=debian\n", Some(DEBIAN_CA_DIR)),
            ("NAME=\"Ubuntu\"\nID_LIKE=debian", Some(DEBIAN_CA_DIR)),
            (
                "ID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"",
                Some(RHEL_CA_DIR),
            ),
            ("ID=fedora", Some(RHEL_CA_DIR)),
            (
                "ID=\"rocky\"\nID_LIKE=\"RHEL centos fedora\"",
                Some(RHEL_CA_DIR),
            ),
            ("ID=arch", None),
        ];
        for (text, want) in rows {
            assert_eq!(trust_store_for(text).map(|(d, _)| d), want, "{text}");
        }
        assert_eq!(
            trust_store_for("ID=fedora").unwrap().1,
            ["update-ca-trust", "extract"]
        );
    }

    #[test]
    fn pem_blocks_are_extracted_in_order() {
        let bundle = "junk\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n# comment\n\
                      -----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\ntruncated";
        assert_eq!(
            pem_certificates(bundle),
            vec![
                "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n",
                "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n",
            ]
        );
        assert!(pem_certificates("no certs here").is_empty());
    }
}
