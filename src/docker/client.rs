//! One Docker Engine API call: HTTP/1.1 request, whole response, per-call timeout.
//!
//! Every call opens its own connection and sends `Connection: close`, so no engine
//! connection outlives the call (the deploy sequence leaves nothing open). Paths are
//! unversioned, as HaRP sends them (harp-compat.md §1.4). Responses are read whole, up to
//! [`MAX_ENGINE_REPLY_BYTES`]: the wrappers only read small JSON documents and short exec
//! output; streamed bodies (image pulls, logs) go through the passthrough, never here.
//!
//! Budget per call: one connect, one request write, reads into one growing buffer.

use std::time::Duration;

use super::engine::{connect_engine, Engine, EngineStream};
use super::DockerError;
use crate::http::{parse_response, BodyFraming, ChunkedScanner, MAX_HEAD_BYTES};

/// Largest engine response the wrappers accept (head + body). Container inspect documents
/// are a few KiB; exec output here is `cat /etc/os-release` and `mkdir`.
pub const MAX_ENGINE_REPLY_BYTES: usize = 8 * 1024 * 1024;
/// Read granularity.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// A request to the engine.
pub struct EngineRequest<'a> {
    pub method: &'static str,
    /// Unversioned path with query, e.g. `/containers/nc_app_x/json`.
    pub path: &'a str,
    /// Content type and body.
    pub body: Option<(&'static str, &'a [u8])>,
}

impl<'a> EngineRequest<'a> {
    pub fn get(path: &'a str) -> Self {
        EngineRequest {
            method: "GET",
            path,
            body: None,
        }
    }

    pub fn post(path: &'a str) -> Self {
        EngineRequest {
            method: "POST",
            path,
            body: None,
        }
    }

    pub fn delete(path: &'a str) -> Self {
        EngineRequest {
            method: "DELETE",
            path,
            body: None,
        }
    }

    pub fn json(method: &'static str, path: &'a str, body: &'a [u8]) -> Self {
        EngineRequest {
            method,
            path,
            body: Some(("application/json", body)),
        }
    }
}

/// Status and de-chunked body of an engine response.
#[derive(Debug)]
pub struct EngineReply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl EngineReply {
    /// The body as JSON, `Null` if it is not JSON (callers treat missing fields as absent).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// Docker's error message (`{"message": ...}`), else the raw body, for error texts.
    pub fn message(&self) -> String {
        match self.json().get("message").and_then(|m| m.as_str()) {
            Some(m) => m.to_string(),
            None => String::from_utf8_lossy(&self.body).trim().to_string(),
        }
    }
}

/// Send `req` to `engine` and read the whole response, all within `timeout`.
pub async fn call(
    engine: &Engine,
    req: &EngineRequest<'_>,
    timeout: Duration,
) -> Result<EngineReply, DockerError> {
    match crate::runtime::time::limit(timeout, exchange(engine, req, timeout)).await {
        Ok(r) => r,
        Err(_) => Err(DockerError::Timeout {
            engine: engine.to_string(),
            after: timeout,
        }),
    }
}

async fn exchange(
    engine: &Engine,
    req: &EngineRequest<'_>,
    timeout: Duration,
) -> Result<EngineReply, DockerError> {
    let stream = connect_engine(engine, timeout)
        .await
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::TimedOut => DockerError::Timeout {
                engine: engine.to_string(),
                after: timeout,
            },
            _ => DockerError::Connect {
                engine: engine.to_string(),
                source,
            },
        })?;
    let io_err = |source| DockerError::Io {
        engine: engine.to_string(),
        source,
    };
    stream
        .write_all(&render_request(req))
        .await
        .map_err(io_err)?;
    let (status, body) = read_reply(&stream).await.map_err(|e| match e {
        ReadError::Io(source) => io_err(source),
        ReadError::Bad(why) => DockerError::BadReply {
            engine: engine.to_string(),
            why,
        },
    })?;
    Ok(EngineReply { status, body })
}

/// The request head (and body) bytes.
pub fn render_request(req: &EngineRequest<'_>) -> Vec<u8> {
    let body_len = req.body.map_or(0, |(_, b)| b.len());
    let mut out = Vec::with_capacity(160 + req.path.len() + body_len);
    out.extend_from_slice(req.method.as_bytes());
    out.push(b' ');
    push_request_target(&mut out, req.path);
    // Host is required by Go's HTTP/1.1 server; its value is irrelevant on a unix socket.
    out.extend_from_slice(
        b" HTTP/1.1\r\nHost: docker\r\nUser-Agent: lyre\r\nConnection: close\r\n",
    );
    if let Some((ctype, body)) = req.body {
        out.extend_from_slice(
            format!(
                "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(body);
    } else if matches!(req.method, "POST" | "PUT") {
        out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    } else {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// HaRP inserts names into Docker URLs without encoding (§4.4); its HTTP client still
/// escapes what cannot appear in a request line. Percent-encode whitespace, controls and
/// non-ASCII so a name can never split the request line or inject a header (CWE-93).
fn push_request_target(out: &mut Vec<u8>, path: &str) {
    for &b in path.as_bytes() {
        if b <= b' ' || b >= 0x7f {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

enum ReadError {
    Io(std::io::Error),
    Bad(String),
}

async fn read_reply(s: &EngineStream) -> Result<(u16, Vec<u8>), ReadError> {
    let mut buf = Vec::with_capacity(READ_CHUNK_BYTES);
    let (head, head_len) = loop {
        match parse_response(&buf, false) {
            Ok(Some(parsed)) => break parsed,
            Ok(None) if buf.len() >= MAX_HEAD_BYTES => {
                return Err(ReadError::Bad("head too large".into()))
            }
            Ok(None) => {}
            Err(e) => return Err(ReadError::Bad(e.to_string())),
        }
        if read_more(s, &mut buf).await? == 0 {
            return Err(ReadError::Bad(
                "connection closed before the response head".into(),
            ));
        }
    };
    buf.drain(..head_len);
    let body = match head.framing {
        BodyFraming::None => Vec::new(),
        BodyFraming::ContentLength(n) => read_length(s, buf, n).await?,
        BodyFraming::Chunked => read_chunked(s, buf).await?,
        BodyFraming::UntilClose => read_to_close(s, buf).await?,
    };
    Ok((head.status, body))
}

async fn read_more(s: &EngineStream, buf: &mut Vec<u8>) -> Result<usize, ReadError> {
    if buf.len() >= MAX_ENGINE_REPLY_BYTES {
        return Err(ReadError::Bad(format!(
            "response larger than {MAX_ENGINE_REPLY_BYTES} bytes"
        )));
    }
    s.read_some(buf, READ_CHUNK_BYTES)
        .await
        .map_err(ReadError::Io)
}

async fn read_length(s: &EngineStream, mut buf: Vec<u8>, n: u64) -> Result<Vec<u8>, ReadError> {
    let want = usize::try_from(n).unwrap_or(usize::MAX);
    while buf.len() < want {
        if read_more(s, &mut buf).await? == 0 {
            return Err(ReadError::Bad("connection closed inside the body".into()));
        }
    }
    buf.truncate(want);
    Ok(buf)
}

async fn read_chunked(s: &EngineStream, mut buf: Vec<u8>) -> Result<Vec<u8>, ReadError> {
    let mut scanner = ChunkedScanner::new();
    let mut scanned = 0;
    loop {
        let progress = scanner
            .scan(&buf[scanned..])
            .map_err(|e| ReadError::Bad(e.to_string()))?;
        scanned += progress.consumed;
        if progress.done {
            buf.truncate(scanned);
            return decode_chunked(&buf).ok_or_else(|| ReadError::Bad("bad chunked body".into()));
        }
        if read_more(s, &mut buf).await? == 0 {
            return Err(ReadError::Bad(
                "connection closed inside a chunked body".into(),
            ));
        }
    }
}

async fn read_to_close(s: &EngineStream, mut buf: Vec<u8>) -> Result<Vec<u8>, ReadError> {
    while read_more(s, &mut buf).await? != 0 {}
    Ok(buf)
}

/// Payload of a complete chunked body (framing already validated by `ChunkedScanner`).
/// `None` if the framing is inconsistent.
pub fn decode_chunked(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_field = raw[..line_end]
            .split(|&b| b == b';' || b == b' ' || b == b'\t')
            .next()?;
        let size = usize::from_str_radix(std::str::from_utf8(size_field).ok()?, 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        let chunk = raw.get(..size)?;
        out.extend_from_slice(chunk);
        raw = raw.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies() {
        let rows: [(&[u8], Option<&[u8]>); 5] = [
            (b"0\r\n\r\n", Some(b"")),
            (b"5\r\nhello\r\n0\r\n\r\n", Some(b"hello")),
            (
                b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n",
                Some(b"abcde"),
            ),
            (b"a\r\nshort\r\n0\r\n\r\n", None),
            (b"zz\r\n", None),
        ];
        for (raw, want) in rows {
            assert_eq!(
                decode_chunked(raw).as_deref(),
                want,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn request_rendering() {
        let get = render_request(&EngineRequest::get("/containers/nc_app_a/json"));
        assert_eq!(
            get,
            b"GET /containers/nc_app_a/json HTTP/1.1\r\nHost: docker\r\nUser-Agent: lyre\r\nConnection: close\r\n\r\n"
        );
        let post = render_request(&EngineRequest::post("/containers/x/start"));
        assert!(post.ends_with(b"Connection: close\r\nContent-Length: 0\r\n\r\n"));
        let json = render_request(&EngineRequest::json(
            "POST",
            "/volumes/create",
            b"{\"Name\":\"v\"}",
        ));
        assert!(json.ends_with(
            b"Content-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"Name\":\"v\"}"
        ));
    }

    #[test]
    fn request_target_cannot_split_the_request() {
        let evil = "/containers/nc_app_x HTTP/1.1\r\nHost: d\r\n\r\nDELETE /containers/y/json";
        let out = render_request(&EngineRequest::get(evil));
        let line_end = out.windows(2).position(|w| w == b"\r\n").unwrap();
        assert_eq!(
            &out[..line_end],
            b"GET /containers/nc_app_x%20HTTP/1.1%0D%0AHost:%20d%0D%0A%0D%0ADELETE%20/containers/y/json HTTP/1.1"
        );
        let out = render_request(&EngineRequest::get("/containers/nc_app_\u{e9}/json"));
        assert!(out.starts_with(b"GET /containers/nc_app_%C3%A9/json HTTP/1.1\r\n"));
    }

    #[test]
    fn reply_message_prefers_docker_json() {
        let r = EngineReply {
            status: 500,
            body: br#"{"message":"boom"}"#.to_vec(),
        };
        assert_eq!(r.message(), "boom");
        let r = EngineReply {
            status: 500,
            body: b" plain \n".to_vec(),
        };
        assert_eq!(r.message(), "plain");
    }
}
