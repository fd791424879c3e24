//! `/docker/exapp/*` wrappers (harp-compat.md §4.4): each turns one AppAPI call into a few
//! Engine API calls and maps the engine's statuses to HaRP's answers, messages included.
//! `install_certificates` lives in `certs.rs`.

use std::time::Duration;

use serde_json::{json, Value};

use super::client::{call, EngineReply, EngineRequest};
use super::container::container_config;
use super::payload::{self, ExAppName, PayloadError};
use super::results::{self, Observed};
use super::{certs, DockerCtx, DockerError, Engine};
use crate::control::reply::ControlReply;

/// The actions `handle_exapp` serves.
pub const ACTIONS: [&str; 8] = [
    "exists",
    "create",
    "start",
    "stop",
    "wait_for_start",
    "remove",
    "image_remove",
    "install_certificates",
];

/// Per Engine API call timeouts, as HaRP's client uses them (§4.4: per call, not per
/// operation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallTimeouts {
    pub exists: Duration,
    pub create: Duration,
    /// start, stop, remove, image_remove.
    pub lifecycle: Duration,
    /// One inspect of `wait_for_start`.
    pub wait_inspect: Duration,
    pub certificates: Duration,
}

impl Default for CallTimeouts {
    fn default() -> Self {
        CallTimeouts {
            exists: Duration::from_secs(15),
            create: Duration::from_secs(60),
            lifecycle: Duration::from_secs(30),
            wait_inspect: Duration::from_secs(105),
            certificates: Duration::from_secs(120),
        }
    }
}

/// The engine one wrapper call talks to.
pub struct Target<'a> {
    pub engine: Engine,
    /// The `docker-engine-port` value, for HaRP's messages.
    pub port: u16,
    pub ctx: &'a DockerCtx,
}

impl Target<'_> {
    pub async fn call(
        &self,
        req: &EngineRequest<'_>,
        timeout: Duration,
    ) -> Result<EngineReply, DockerError> {
        call(&self.engine, req, timeout).await
    }

    /// HaRP's answer when the engine could not be talked to: 503, or 504 on timeout.
    pub fn engine_error(&self, e: &DockerError) -> ControlReply {
        tracing::warn!(port = self.port, "docker wrapper: {e}");
        let port = self.port;
        match e {
            DockerError::Connect { .. } => ControlReply::text(
                503,
                format!("Could not connect to Docker Engine on port {port}"),
            ),
            DockerError::Timeout { .. } => ControlReply::text(
                504,
                format!("Timeout while waiting for Docker Engine on port {port}"),
            ),
            DockerError::Io { .. } | DockerError::BadReply { .. } => ControlReply::text(
                503,
                format!("Error communicating with Docker Engine on port {port}: {e}"),
            ),
        }
    }
}

/// 503 for an engine status the wrapper does not expect (the message names the status).
pub fn unexpected(status: u16, what: &str, reply: &EngineReply) -> ControlReply {
    let msg = format!(
        "{what}: Docker Engine answered {} {}",
        reply.status,
        reply.message()
    );
    tracing::warn!("docker wrapper: {msg}");
    ControlReply::text(status, msg)
}

fn bad_payload(e: PayloadError) -> ControlReply {
    ControlReply::text(400, e.message())
}

pub async fn dispatch(action: &str, t: &Target<'_>, body: &[u8]) -> ControlReply {
    match action {
        "exists" => match payload::parse_name(body) {
            Ok(n) => exists(t, &n).await,
            Err(e) => bad_payload(e),
        },
        "create" => match payload::parse_create(body) {
            Ok(p) => create(t, &p).await,
            Err(e) => bad_payload(e),
        },
        "start" | "stop" => match payload::parse_name(body) {
            Ok(n) => start_stop(t, &n, action).await,
            Err(e) => bad_payload(e),
        },
        "wait_for_start" => match payload::parse_name(body) {
            Ok(n) => wait_for_start(t, &n).await,
            Err(e) => bad_payload(e),
        },
        "remove" => match payload::parse_remove(body) {
            Ok(p) => remove(t, &p.name, p.remove_data).await,
            Err(e) => bad_payload(e),
        },
        "image_remove" => match payload::parse_image_ref(body) {
            Ok(r) => image_remove(t, &r).await,
            Err(e) => bad_payload(e),
        },
        "install_certificates" => match payload::parse_certs(body) {
            Ok(p) => certs::install_certificates(t, &p).await,
            Err(e) => bad_payload(e),
        },
        _ => ControlReply::text(404, "404: Not Found"),
    }
}

/// `exists` (H-76). Quirk kept: an unexpected engine status is 500, not 503.
async fn exists(t: &Target<'_>, n: &ExAppName) -> ControlReply {
    let c = n.container();
    let path = format!("/containers/{c}/json");
    match t
        .call(&EngineRequest::get(&path), t.ctx.timeouts.exists)
        .await
    {
        Ok(r) if r.status == 200 => {
            let doc = r.json();
            let truthy = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
            let image_ref = truthy(&doc["Config"]["Image"])
                .or_else(|| truthy(&doc["Image"]))
                .unwrap_or_default();
            ControlReply::json_value(200, &json!({ "exists": true, "image_ref": image_ref }))
        }
        Ok(r) if r.status == 404 => ControlReply::json_value(200, &json!({ "exists": false })),
        Ok(r) => unexpected(500, &format!("Error checking container '{c}'"), &r),
        Err(e) => t.engine_error(&e),
    }
}

/// `create` (H-77, H-78): ensure the data volume, then create the container.
async fn create(t: &Target<'_>, p: &payload::CreatePayload) -> ControlReply {
    if let Err(resp) = ensure_volume(t, &p.name.volume()).await {
        return resp;
    }
    let c = p.name.container();
    let path = format!("/containers/create?name={c}");
    let body = container_config(p).to_string();
    match t
        .call(
            &EngineRequest::json("POST", &path, body.as_bytes()),
            t.ctx.timeouts.create,
        )
        .await
    {
        Ok(r) if r.status == 201 => {
            let id = r.json()["Id"].as_str().unwrap_or_default().to_string();
            ControlReply::json_value(201, &json!({ "id": id, "name": c }))
        }
        Ok(r) if r.status == 409 || is_podman_name_conflict(&r) => {
            ControlReply::text(409, format!("Container with name '{c}' already exists."))
        }
        Ok(r) => unexpected(503, &format!("Error creating container '{c}'"), &r),
        Err(e) => t.engine_error(&e),
    }
}

async fn ensure_volume(t: &Target<'_>, v: &str) -> Result<(), ControlReply> {
    let timeout = t.ctx.timeouts.create;
    let inspect = format!("/volumes/{v}");
    match t.call(&EngineRequest::get(&inspect), timeout).await {
        Ok(r) if r.status == 200 => return Ok(()),
        Ok(r) if r.status == 404 => {}
        Ok(r) => {
            return Err(unexpected(
                503,
                &format!("Error inspecting volume '{v}'"),
                &r,
            ))
        }
        Err(e) => return Err(t.engine_error(&e)),
    }
    let body = json!({ "Name": v }).to_string();
    match t
        .call(
            &EngineRequest::json("POST", "/volumes/create", body.as_bytes()),
            timeout,
        )
        .await
    {
        Ok(r) if r.status == 201 => Ok(()),
        Ok(r) => Err(unexpected(503, &format!("Error creating volume '{v}'"), &r)),
        Err(e) => Err(t.engine_error(&e)),
    }
}

/// Podman 4 answers a duplicate container name with 500 "... is already in use" where
/// Docker answers 409. Deliberate deviation from HaRP (which would say 503): AppAPI branches
/// on 409, and remote engines may be podman.
fn is_podman_name_conflict(r: &EngineReply) -> bool {
    r.status == 500 && r.message().contains("is already in use")
}

/// `start` / `stop` (H-79): 204, 200 when already in that state, 404 when missing.
async fn start_stop(t: &Target<'_>, n: &ExAppName, action: &str) -> ControlReply {
    let c = n.container();
    let path = format!("/containers/{c}/{action}");
    match t
        .call(&EngineRequest::post(&path), t.ctx.timeouts.lifecycle)
        .await
    {
        Ok(r) if r.status == 204 => ControlReply::no_content(),
        Ok(r) if r.status == 304 => {
            let state = if action == "start" {
                "started"
            } else {
                "stopped"
            };
            ControlReply::text(200, format!("Container already {state}"))
        }
        Ok(r) if r.status == 404 => ControlReply::text(404, format!("Container '{c}' not found.")),
        Ok(r) => unexpected(
            503,
            &format!("Error during {action} of container '{c}'"),
            &r,
        ),
        Err(e) => t.engine_error(&e),
    }
}

/// `wait_for_start` (H-80, §4.4.1): poll the container state.
async fn wait_for_start(t: &Target<'_>, n: &ExAppName) -> ControlReply {
    let c = n.container();
    let path = format!("/containers/{c}/json");
    let mut last = Observed::unknown();
    for poll in 0..t.ctx.wait_max_polls {
        if poll > 0 {
            monoio::time::sleep(t.ctx.wait_poll_interval).await;
        }
        match t
            .call(&EngineRequest::get(&path), t.ctx.timeouts.wait_inspect)
            .await
        {
            Ok(r) if r.status == 200 => {
                last = Observed::from_inspect(&r.json());
                if let Some(answer) = results::wait_verdict(&last) {
                    return ControlReply::json_value(200, &answer);
                }
            }
            Ok(r) if r.status == 404 => {
                return ControlReply::json_value(200, &results::wait_not_found())
            }
            Ok(r) => return unexpected(503, &format!("Error inspecting container '{c}'"), &r),
            Err(DockerError::Timeout { .. }) => {
                return ControlReply::json_value(
                    200,
                    &results::wait_gave_up(&last, results::WAIT_REASON_CALL_TIMEOUT),
                )
            }
            Err(e) => return t.engine_error(&e),
        }
    }
    ControlReply::json_value(
        200,
        &results::wait_gave_up(&last, results::WAIT_REASON_MAX_TRIES),
    )
}

/// `remove` (H-81): force-remove the container, then optionally its data volume.
async fn remove(t: &Target<'_>, n: &ExAppName, remove_data: bool) -> ControlReply {
    let c = n.container();
    let timeout = t.ctx.timeouts.lifecycle;
    let path = format!("/containers/{c}?force=true");
    match t.call(&EngineRequest::delete(&path), timeout).await {
        Ok(r) if matches!(r.status, 204 | 404 | 409) => {}
        Ok(r) => return unexpected(503, &format!("Error removing container '{c}'"), &r),
        Err(e) => return t.engine_error(&e),
    }
    if !remove_data {
        return ControlReply::no_content();
    }
    let v = n.volume();
    let path = format!("/volumes/{v}");
    match t.call(&EngineRequest::delete(&path), timeout).await {
        Ok(r) if matches!(r.status, 204 | 404) => ControlReply::no_content(),
        Ok(r) if r.status == 409 => ControlReply::text(
            409,
            format!("Volume '{v}' is in use and could not be removed."),
        ),
        Ok(r) => unexpected(503, &format!("Error removing volume '{v}'"), &r),
        Err(e) => t.engine_error(&e),
    }
}

/// `image_remove` (H-82): inspect for the size, then delete without force.
async fn image_remove(t: &Target<'_>, image_ref: &str) -> ControlReply {
    let timeout = t.ctx.timeouts.lifecycle;
    let encoded = encode_component(image_ref);
    let inspect = format!("/images/{encoded}/json");
    let size = match t.call(&EngineRequest::get(&inspect), timeout).await {
        Ok(r) if r.status == 200 => r.json()["Size"].as_u64().unwrap_or(0),
        Ok(r) if r.status == 404 => {
            return ControlReply::json_value(200, &results::image_not_found())
        }
        Ok(_) => 0,
        Err(e @ (DockerError::Connect { .. } | DockerError::Timeout { .. })) => {
            return t.engine_error(&e)
        }
        Err(_) => 0,
    };
    let delete = format!("/images/{encoded}");
    match t.call(&EngineRequest::delete(&delete), timeout).await {
        Ok(r) if r.status == 200 => {
            ControlReply::json_value(200, &results::image_deleted(size, &r.json()))
        }
        Ok(r) if r.status == 404 => ControlReply::json_value(200, &results::image_not_found()),
        Ok(r) if r.status == 409 => ControlReply::json_value(200, &results::image_in_use()),
        Ok(r) => unexpected(503, &format!("Error removing image '{image_ref}'"), &r),
        Err(e) => t.engine_error(&e),
    }
}

/// Percent-encode everything but RFC 3986 unreserved characters (Python `quote(s, safe="")`).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs_are_fully_encoded() {
        let rows = [
            (
                "ghcr.io/nextcloud/app:1.0",
                "ghcr.io%2Fnextcloud%2Fapp%3A1.0",
            ),
            ("img@sha256:ab", "img%40sha256%3Aab"),
            ("a b~c", "a%20b~c"),
        ];
        for (raw, want) in rows {
            assert_eq!(encode_component(raw), want);
        }
    }
}
