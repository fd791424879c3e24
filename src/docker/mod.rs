//! Docker Engine client and HaRP's Docker control endpoints (harp-compat.md §1.4, §3.4, §4.4,
//! §4.6; H-71..H-85).
//!
//! Owns: the Engine API client over a unix socket or TCP (`client`, `engine`), the
//! `/docker/exapp/*` wrappers AppAPI deploys ExApps with (`exapp`, `certs`), their bodies and
//! names (`payload`), the container config (`container`), result shapes (`results`), Docker's
//! multiplexed frames and tar (`frames`), and the passthrough allow-list (`passthrough`).
//! Does not own: the listener, the shared-key check, routing `/exapps/app_api/...` or
//! forwarding passthrough bytes; the proxy/control dispatcher does those. The answer type
//! and its bytes are `crate::control::reply::ControlReply`.
//!
//! # API for the control dispatcher
//!
//! Wrappers, `/exapps/app_api/docker/exapp/<action>` (after the shared-key check; POST only,
//! other methods are the dispatcher's 405):
//!
//! ```text
//! let ctx = DockerCtx::new(Some(docker_socket_path), config.frp_certs_dir()); // once per worker
//! let resp = handle_exapp(action, head.header("docker-engine-port"), &body, &ctx).await;
//! // resp: crate::control::reply::ControlReply; the dispatcher writes resp.render(..)
//! ```
//! `action` is the path segment after `/docker/exapp/` (`exists`, `create`, `start`, `stop`,
//! `wait_for_start`, `remove`, `image_remove`, `install_certificates`; others -> 404). Read at
//! most `MAX_CONTROL_BODY_BYTES + 1` body bytes and pass them: `handle_exapp` answers 413,
//! 400 for the header (H-75) and bad bodies, 503/504 for engine trouble. `wait_for_start` may
//! run ~90 s and `install_certificates` several calls of up to 120 s each: do not apply the
//! head/idle timeout of ordinary requests to these.
//!
//! Passthrough (`docker-engine-port` present, path not under `/docker/`, §3.4, §4.6):
//!
//! ```text
//! if !passthrough_allowed(method, stripped_target) { 403 (HAProxy page) }
//! let Some(port) = passthrough_port(header) else { 503 };
//! let engine = ctx.engine(port);               // 24000 + local socket -> Unix, else TCP
//! let stream = connect_engine(&engine, t).await // Err -> 503 (HAProxy: a connect timeout is a connection failure)
//! // write the request (stripped target, original query, all headers), then relay the
//! // response unbuffered: stream.readable()/writable() + try_recv/try_send, read_some,
//! // write_all: the same readiness + nonblocking-syscall pattern as net::io.
//! ```
//!
//! Engine calls never pool: each opens its own connection with `Connection: close`.
//! `LYRE_DOCKER_SOCKET` (default [`DEFAULT_DOCKER_SOCKET`]) is read by the caller (config).

mod certs;
mod client;
mod container;
mod engine;
mod exapp;
mod frames;
mod passthrough;
mod payload;
mod results;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::control::reply::ControlReply;

pub use client::{call, EngineReply, EngineRequest, MAX_ENGINE_REPLY_BYTES};
pub use container::container_config;
pub use engine::{
    connect_engine, engine_for_port, Engine, EngineStream, DEFAULT_DOCKER_SOCKET, LOCAL_ENGINE_PORT,
};
pub use exapp::CallTimeouts;
pub use frames::{decode_frames, demux_text, tar_files, Frame, FRAME_HEADER_BYTES};
pub use passthrough::passthrough_allowed;
pub use payload::{parse_certs, ExAppName, PayloadError};

/// aiohttp's default `client_max_size`: larger control bodies get 413 (§4, big CA bundles).
pub const MAX_CONTROL_BODY_BYTES: usize = 1024 * 1024;
/// `wait_for_start` pause between inspects (§4.4.1).
pub const DEFAULT_WAIT_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// `wait_for_start` inspects at most this many times (§4.4.1).
pub const DEFAULT_WAIT_MAX_POLLS: u32 = 180;

/// What the wrappers need besides the request.
#[derive(Debug, Clone)]
pub struct DockerCtx {
    /// Configured local engine socket (`LYRE_DOCKER_SOCKET`); serves port 24000 when it exists.
    pub local_socket: Option<PathBuf>,
    /// `$LYRE_CERTS_DIR/frp`: `ca.crt`, `client.crt`, `client.key` go into ExApps (§4.4.2).
    pub frp_certs_dir: PathBuf,
    /// Tests: talk to this engine whatever the port says.
    pub engine_override: Option<Engine>,
    /// Per Engine API call timeouts (§4.4).
    pub timeouts: CallTimeouts,
    pub wait_poll_interval: Duration,
    pub wait_max_polls: u32,
}

impl DockerCtx {
    pub fn new(local_socket: Option<PathBuf>, frp_certs_dir: PathBuf) -> Self {
        DockerCtx {
            local_socket,
            frp_certs_dir,
            engine_override: None,
            timeouts: CallTimeouts::default(),
            wait_poll_interval: DEFAULT_WAIT_POLL_INTERVAL,
            wait_max_polls: DEFAULT_WAIT_MAX_POLLS,
        }
    }

    /// The engine behind `port`.
    pub fn engine(&self, port: u16) -> Engine {
        match &self.engine_override {
            Some(e) => e.clone(),
            None => engine_for_port(port, self.local_socket.as_deref()),
        }
    }
}

/// Failure of one engine call.
#[derive(Debug)]
pub enum DockerError {
    /// No connection (refused, no socket, no tunnel on that port).
    Connect { engine: String, source: io::Error },
    /// The call did not finish within its per-call timeout.
    Timeout { engine: String, after: Duration },
    /// The connection broke mid-exchange.
    Io { engine: String, source: io::Error },
    /// The engine's answer was not usable HTTP (or too large).
    BadReply { engine: String, why: String },
}

impl fmt::Display for DockerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerError::Connect { engine, source } => write!(
                f,
                "cannot connect to Docker Engine at {engine}: {source}; check the engine runs \
                 (port 24000: LYRE_DOCKER_SOCKET) or its frpc tunnel is up"
            ),
            DockerError::Timeout { engine, after } => {
                write!(f, "Docker Engine at {engine} did not answer within {after:?}; the engine is overloaded or hung")
            }
            DockerError::Io { engine, source } => {
                write!(f, "connection to Docker Engine at {engine} broke: {source}")
            }
            DockerError::BadReply { engine, why } => {
                write!(
                    f,
                    "Docker Engine at {engine} sent an unusable response: {why}"
                )
            }
        }
    }
}

impl std::error::Error for DockerError {}

/// The port of a passthrough request (§3.4): `None` for anything that is not an integer in
/// 1..=65535, which HaRP answers with 503 on that path (its agent fails; no 400 there).
pub fn passthrough_port(header: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(header).ok()?;
    let p = text.trim().replace('_', "").parse::<i64>().ok()?;
    u16::try_from(p).ok().filter(|p| *p != 0)
}

/// Validate `docker-engine-port` as HaRP's wrappers do (H-75).
pub fn parse_engine_port(header: Option<&[u8]>) -> Result<u16, ControlReply> {
    // An empty value counts as missing (HaRP tests the header's truthiness).
    let Some(raw) = header.filter(|h| !h.is_empty()) else {
        return Err(ControlReply::text(
            400,
            "Missing 'docker-engine-port' header.",
        ));
    };
    let text = String::from_utf8_lossy(raw);
    // Python's int() accepts surrounding whitespace, a sign and `_` separators; HaRP then
    // range-checks 1..65535.
    let cleaned = text.trim().replace('_', "");
    match cleaned.parse::<i64>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(ControlReply::text(
            400,
            format!("Invalid 'docker-engine-port' header value: {text}"),
        )),
    }
}

/// Serve `POST /docker/exapp/<action>`. Unknown actions -> 404 `404: Not Found`.
/// Whether `/docker/exapp/<action>` names one of HaRP's wrappers.
pub fn is_exapp_action(action: &str) -> bool {
    exapp::ACTIONS.contains(&action)
}

pub async fn handle_exapp(
    action: &str,
    engine_port_header: Option<&[u8]>,
    body: &[u8],
    ctx: &DockerCtx,
) -> ControlReply {
    if !is_exapp_action(action) {
        return ControlReply::text(404, "404: Not Found");
    }
    if body.len() > MAX_CONTROL_BODY_BYTES {
        return ControlReply::text(
            413,
            format!(
                "Maximum request body size {MAX_CONTROL_BODY_BYTES} exceeded, actual body size {}",
                body.len()
            ),
        );
    }
    let port = match parse_engine_port(engine_port_header) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let target = exapp::Target {
        engine: ctx.engine(port),
        port,
        ctx,
    };
    exapp::dispatch(action, &target, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// H-75: header validation with HaRP's messages.
    #[test]
    fn h75_engine_port_header() {
        type Row = (Option<&'static [u8]>, Result<u16, (u16, &'static str)>);
        let rows: [Row; 8] = [
            (None, Err((400, "Missing 'docker-engine-port' header."))),
            (Some(b"24000"), Ok(24000)),
            (Some(b" 24001 "), Ok(24001)),
            (Some(b"1"), Ok(1)),
            (
                Some(b"70000"),
                Err((400, "Invalid 'docker-engine-port' header value: 70000")),
            ),
            (
                Some(b"0"),
                Err((400, "Invalid 'docker-engine-port' header value: 0")),
            ),
            (
                Some(b"abc"),
                Err((400, "Invalid 'docker-engine-port' header value: abc")),
            ),
            (
                Some(b""),
                Err((400, "Missing 'docker-engine-port' header.")),
            ),
        ];
        for (header, want) in rows {
            let got = parse_engine_port(header)
                .map_err(|r| (r.status, String::from_utf8(r.body).unwrap()));
            let want = want.map_err(|(s, m)| (s, m.to_string()));
            assert_eq!(got, want, "{:?}", header.map(String::from_utf8_lossy));
        }
    }

    #[test]
    fn passthrough_ports() {
        let rows: [(&[u8], Option<u16>); 6] = [
            (b"24000", Some(24000)),
            (b" 24001", Some(24001)),
            (b"0", None),
            (b"70000", None),
            (b"x", None),
            (b"", None),
        ];
        for (raw, want) in rows {
            assert_eq!(
                passthrough_port(raw),
                want,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("test runtime")
            .block_on(f)
    }

    #[test]
    fn h75_dispatch_checks_before_engine() {
        let ctx = DockerCtx::new(None, PathBuf::from("/nonexistent"));
        let big = vec![b' '; MAX_CONTROL_BODY_BYTES + 1];
        type Row<'a> = (&'static str, Option<&'static [u8]>, &'a [u8], u16);
        let rows: [Row; 5] = [
            ("nope", Some(b"24000"), b"{}", 404),
            ("exists", None, br#"{"name":"a"}"#, 400),
            ("exists", Some(b"abc"), br#"{"name":"a"}"#, 400),
            ("create", Some(b"24000"), &big, 413),
            ("exists", Some(b"24000"), b"{not json", 400),
        ];
        for (action, header, body, want) in rows {
            let got = run(handle_exapp(action, header, body, &ctx));
            assert_eq!(
                got.status,
                want,
                "{action} {:?}",
                String::from_utf8_lossy(&got.body)
            );
        }
    }
}
