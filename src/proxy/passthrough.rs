//! Docker Engine passthrough (harp-compat.md §4.6): allow-listed Engine API calls from
//! AppAPI go to the engine for `docker-engine-port` (the local socket for 24000 when it is
//! mounted, else the tunnel listener on 127.0.0.1:<port>), and the answer streams back
//! unbuffered (image pulls report progress for minutes).
//!
//! One engine connection per request with `Connection: close`: the engine ends the response
//! by closing, so the relay needs no framing, and no engine connection outlives its call.

use std::io;
use std::rc::Rc;

use tracing::debug;

use super::client::ClientConn;
use super::conn::answer;
use super::dispatch::reply_without_upstream;
use super::exchange::Next;
use super::worker::Worker;
use crate::docker::{connect_engine, passthrough_allowed, EngineStream};
use crate::http::{answers, write_request, BodyFraming, HeadEdits, RequestHead};
use crate::runtime::time::timed;

/// Relay read size for engine answers.
pub const RELAY_BYTES: usize = 64 * 1024;

pub async fn serve_passthrough(
    w: &Rc<Worker>,
    client: &ClientConn,
    buf: &mut Vec<u8>,
    head: &RequestHead,
    port: u16,
    path_and_query: &[u8],
) -> Next {
    let path = path_and_query
        .split(|&b| b == b'?')
        .next()
        .unwrap_or_default();
    if !passthrough_allowed(head.method(), path) {
        debug!(port, path = %String::from_utf8_lossy(path), "docker passthrough refused");
        // HAProxy's page says `connection: close`, so close (keeping it would be a lie).
        let _ = reply_without_upstream(w, client, head, answers::proxy_error(403)).await;
        return Next::Close;
    }
    let engine = w.docker.engine(port);
    let stream = match connect_engine(&engine, w.cfg.timeout_connect).await {
        Ok(s) => s,
        Err(e) => {
            debug!(port, "docker engine unreachable: {e}");
            // HAProxy: every connection failure, a connect timeout included, is 503 (`sC`);
            // only `timeout server` (no answer, below) gives 504 (harp-compat.md §3.7).
            let _ = answer(client, answers::proxy_error(503), w.cfg.timeout_client).await;
            return Next::Close;
        }
    };
    if let Err(status) = send_request(w, client, buf, head, path_and_query, &stream).await {
        let _ = answer(client, answers::proxy_error(status), w.cfg.timeout_client).await;
        return Next::Close;
    }
    relay_answer(w, client, &stream).await
}

/// Request head (stripped target, `Connection: close`) and the body as it came: sized, or
/// chunked with its framing kept (checked on the way, as the proxy checks it), as HaRP's
/// HAProxy streams either to the engine.
async fn send_request(
    w: &Worker,
    client: &ClientConn,
    buf: &mut Vec<u8>,
    head: &RequestHead,
    path_and_query: &[u8],
    engine: &EngineStream,
) -> Result<(), u16> {
    let mut out = Vec::with_capacity(head.raw.len() + 64);
    let edits = HeadEdits {
        path: Some(path_and_query),
        set: vec![("connection", b"close".as_slice())],
        remove: vec![],
    };
    write_request(head, &edits, &mut out);
    let idle = w.cfg.timeout_server;
    timed(idle, engine.write_all(&out))
        .await
        .map_err(|_| 502u16)?;
    let mut body = match head.framing {
        BodyFraming::None | BodyFraming::UntilClose | BodyFraming::ContentLength(0) => {
            return Ok(())
        }
        BodyFraming::ContentLength(n) => Body::Sized(n),
        BodyFraming::Chunked => Body::Chunked(crate::http::ChunkedScanner::new()),
    };
    loop {
        if buf.is_empty() {
            let n = timed(w.cfg.timeout_client, client.read_some(buf, RELAY_BYTES))
                .await
                .map_err(|_| 400u16)?;
            if n == 0 {
                return Err(400);
            }
        }
        let (take, done) = match &mut body {
            Body::Sized(left) => {
                let take = (buf.len() as u64).min(*left) as usize;
                *left -= take as u64;
                (take, *left == 0)
            }
            Body::Chunked(scanner) => {
                let p = scanner.scan(buf).map_err(|_| 400u16)?;
                (p.consumed, p.done)
            }
        };
        timed(idle, engine.write_all(&buf[..take]))
            .await
            .map_err(|_| 502u16)?;
        buf.drain(..take);
        if done {
            return Ok(());
        }
    }
}

/// What is left of a request body on its way to the engine.
enum Body {
    Sized(u64),
    Chunked(crate::http::ChunkedScanner),
}

/// Engine -> client until the engine closes, each gap bounded by `HP_TIMEOUT_SERVER`.
/// The close ends the answer, so only the engine's EOF (or an error answered before any
/// byte) is a clean [`Next::Close`].
async fn relay_answer(w: &Worker, client: &ClientConn, engine: &EngineStream) -> Next {
    let mut chunk = Vec::with_capacity(RELAY_BYTES);
    let mut sent_any = false;
    loop {
        chunk.clear();
        match timed(
            w.cfg.timeout_server,
            engine.read_some(&mut chunk, RELAY_BYTES),
        )
        .await
        {
            Ok(0) => return Next::Close,
            Ok(_) => {}
            Err(_) if sent_any => return Next::Abort,
            Err(e) => {
                let status = if e.kind() == io::ErrorKind::TimedOut {
                    504
                } else {
                    502
                };
                let _ = answer(client, answers::proxy_error(status), w.cfg.timeout_client).await;
                return Next::Close;
            }
        }
        if !sent_any {
            if let Some(status) = crate::http::status_line_code(&chunk) {
                client.note_status(status);
            }
        }
        sent_any = true;
        if timed(w.cfg.timeout_client, client.write_all(&chunk))
            .await
            .is_err()
        {
            return Next::Abort;
        }
    }
}
