//! A minimal, strict HTTP/1.1 client over `std::net::TcpStream` (optionally through a
//! rustls client, for the HTTPS frontend) for byte-exact assertions: send raw bytes, read
//! one response head, then its body by its framing (Content-Length, chunked, or to EOF).
//! Strict on purpose: a malformed response from the proxy fails the test.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Socket read/write timeout unless a test sets another: a hung proxy fails, never hangs.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest response head this client accepts.
pub const MAX_HEAD: usize = 1024 * 1024;
const READ_CHUNK: usize = 256 * 1024;

/// A parsed status line + headers (names as received).
#[derive(Debug, Clone)]
pub struct Head {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    /// The head exactly as received, including the final CRLFCRLF.
    pub raw: Vec<u8>,
}

impl Head {
    /// First value of `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of `name` (case-insensitive), in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn is_chunked(&self) -> bool {
        self.headers_named("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .map(|v| v.trim().parse().expect("numeric Content-Length"))
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub head: Head,
    pub body: Vec<u8>,
}

impl Response {
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", self.body_str()))
    }
}

/// One client connection with its own read buffer (bytes past the current message stay
/// buffered for the next one: pipelining).
pub struct Conn {
    pub stream: TcpStream,
    /// Set for HTTPS: every byte then goes through this client session.
    tls: Option<Box<rustls::ClientConnection>>,
    buf: Vec<u8>,
}

impl Conn {
    pub fn connect(port: u16) -> Conn {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        let c = Conn {
            stream,
            tls: None,
            buf: Vec::new(),
        };
        c.set_timeout(DEFAULT_IO_TIMEOUT);
        c
    }

    /// HTTPS to 127.0.0.1:port (server name `localhost`), handshake completed.
    pub fn connect_tls(port: u16, cfg: &Arc<rustls::ClientConfig>) -> Conn {
        Self::try_connect_tls(port, cfg)
            .unwrap_or_else(|e| panic!("TLS handshake with 127.0.0.1:{port}: {e}"))
    }

    /// [`Conn::connect_tls`], returning a failed handshake as an error.
    pub fn try_connect_tls(port: u16, cfg: &Arc<rustls::ClientConfig>) -> io::Result<Conn> {
        let mut c = Conn::connect(port);
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
        let mut tls = rustls::ClientConnection::new(cfg.clone(), name).map_err(io::Error::other)?;
        while tls.is_handshaking() {
            tls.complete_io(&mut c.stream)?;
        }
        c.tls = Some(Box::new(tls));
        Ok(c)
    }

    /// The ALPN protocol the server picked (HTTPS only).
    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.tls
            .as_ref()
            .and_then(|t| t.alpn_protocol().map(<[u8]>::to_vec))
    }

    fn raw_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            Some(t) => rustls::Stream::new(&mut **t, &mut self.stream).read(buf),
            None => self.stream.read(buf),
        }
    }

    fn raw_write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.tls {
            Some(t) => {
                let mut s = rustls::Stream::new(&mut **t, &mut self.stream);
                s.write_all(bytes)?;
                s.flush()
            }
            None => self.stream.write_all(bytes),
        }
    }

    pub fn set_timeout(&self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).expect("read timeout");
        self.stream
            .set_write_timeout(Some(t))
            .expect("write timeout");
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.raw_write_all(bytes)
            .unwrap_or_else(|e| panic!("send {} bytes: {e}", bytes.len()));
    }

    /// Sends, ignoring errors (the peer may answer and close before reading everything).
    pub fn send_lenient(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.raw_write_all(bytes)
    }

    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// HTTPS: TLS close_notify (our end of the stream), then FIN.
    pub fn close_notify(&mut self) {
        if let Some(t) = &mut self.tls {
            t.send_close_notify();
            let _ = t.complete_io(&mut self.stream);
        }
        self.shutdown_write();
    }

    /// Reads more bytes into the buffer; Ok(0) on EOF.
    fn fill(&mut self) -> io::Result<usize> {
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let mut chunk = std::mem::take(&mut self.buf);
        let r = self.raw_read(&mut chunk[old..]);
        self.buf = chunk;
        let n = *r.as_ref().unwrap_or(&0);
        self.buf.truncate(old + n);
        r
    }

    pub fn try_read_head(&mut self) -> io::Result<Head> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 4).collect();
                return parse_head(raw);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(bad(format!("response head over {MAX_HEAD} bytes")));
            }
            if self.fill()? == 0 {
                let got = String::from_utf8_lossy(&self.buf).into_owned();
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("EOF before a full head; got {got:?}"),
                ));
            }
        }
    }

    pub fn read_head(&mut self) -> Head {
        self.try_read_head()
            .unwrap_or_else(|e| panic!("reading response head: {e}"))
    }

    /// Reads a final response (skipping no 1xx: callers that expect 100 read it themselves).
    pub fn try_read_response(&mut self, head_request: bool) -> io::Result<Response> {
        let head = self.try_read_head()?;
        let mut body = Vec::new();
        self.try_read_body(&head, head_request, &mut |b| body.extend_from_slice(b))?;
        Ok(Response { head, body })
    }

    pub fn read_response(&mut self) -> Response {
        self.try_read_response(false)
            .unwrap_or_else(|e| panic!("reading response: {e}"))
    }

    /// Streams the body of `head` into `sink`; returns the body size.
    pub fn try_read_body(
        &mut self,
        head: &Head,
        head_request: bool,
        sink: &mut dyn FnMut(&[u8]),
    ) -> io::Result<u64> {
        let no_body = head_request || head.status < 200 || head.status == 204 || head.status == 304;
        if no_body {
            Ok(0)
        } else if head.is_chunked() {
            self.read_chunked(sink)
        } else if let Some(n) = head.content_length() {
            self.read_exact_into(n, sink)?;
            Ok(n)
        } else {
            self.read_until_eof(sink)
        }
    }

    fn read_exact_into(&mut self, mut n: u64, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        while n > 0 {
            if self.buf.is_empty() && self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("EOF with {n} body bytes missing"),
                ));
            }
            let take = self.buf.len().min(n as usize);
            sink(&self.buf[..take]);
            self.buf.drain(..take);
            n -= take as u64;
        }
        Ok(())
    }

    /// Exactly `n` bytes (buffered first, then from the socket).
    pub fn try_read_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(n);
        self.read_exact_into(n as u64, &mut |b| out.extend_from_slice(b))?;
        Ok(out)
    }

    fn read_until_eof(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            if !self.buf.is_empty() {
                total += self.buf.len() as u64;
                sink(&self.buf);
                self.buf.clear();
            }
            if self.fill()? == 0 {
                return Ok(total);
            }
        }
    }

    fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..end + 2).collect();
                return String::from_utf8(line[..end].to_vec())
                    .map_err(|_| bad("non-UTF-8 chunk line".into()));
            }
            if self.buf.len() > 64 * 1024 {
                return Err(bad("chunk line over 64 KiB".into()));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF inside chunked framing",
                ));
            }
        }
    }

    fn read_chunked(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            let line = self.read_line()?;
            let size_txt = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_txt, 16)
                .map_err(|_| bad(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                // Trailers until the empty line.
                while !self.read_line()?.is_empty() {}
                return Ok(total);
            }
            self.read_exact_into(size, sink)?;
            total += size;
            if !self.read_line()?.is_empty() {
                return Err(bad("chunk data not followed by CRLF".into()));
            }
        }
    }

    /// Waits (up to `within`) for the peer to close: true on EOF or reset, false if it is
    /// still open when the time is up. Bytes that arrive meanwhile are returned in `Err`.
    pub fn closed_within(&mut self, within: Duration) -> Result<bool, Vec<u8>> {
        let end = Instant::now() + within;
        loop {
            if !self.buf.is_empty() {
                return Err(std::mem::take(&mut self.buf));
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.stream.set_read_timeout(Some(left)).expect("timeout");
            match self.fill() {
                Ok(0) => return Ok(true),
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(false)
                }
                Err(_) => return Ok(true),
            }
        }
    }

    /// Bytes received but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(raw: Vec<u8>) -> io::Result<Head> {
    let text = std::str::from_utf8(&raw).map_err(|_| bad("non-UTF-8 response head".into()))?;
    let mut lines = text[..text.len() - 4].split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("").to_string();
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(bad(format!("bad status line {status_line:?}")));
    }
    let status = parts
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status code in {status_line:?}")))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
        if k.is_empty() || k.contains(' ') {
            return Err(bad(format!("bad header name in {line:?}")));
        }
        headers.push((k.to_string(), v.trim().to_string()));
    }
    Ok(Head {
        version,
        status,
        reason,
        headers,
        raw,
    })
}

/// `GET path` on a fresh connection to 127.0.0.1:port; returns the response.
pub fn get(port: u16, path: &str) -> Response {
    let mut c = Conn::connect(port);
    c.send(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    c.read_response()
}

/// A GET request head (keep-alive) for `path`.
pub fn get_req(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: lyre.test\r\n\r\n").into_bytes()
}

/// Odd chunk sizes on purpose: 1-byte chunks, chunk extensions, blocks split mid-way.
pub fn send_chunked_pattern(c: &mut Conn, n: u64) {
    let mut i = 0u64;
    let mut out = Vec::with_capacity(70 * 1024);
    super::Pattern::new().for_each_block(n, |b| {
        out.clear();
        let parts: Vec<&[u8]> = match i % 3 {
            0 => vec![b],
            1 if b.len() > 1 => vec![&b[..1], &b[1..]],
            _ => b.chunks(b.len().div_ceil(4).max(1)).collect(),
        };
        for (k, p) in parts.iter().enumerate() {
            if k == 1 && i % 3 == 2 {
                out.extend_from_slice(format!("{:x};ext=\"v\"\r\n", p.len()).as_bytes());
            } else {
                out.extend_from_slice(format!("{:x}\r\n", p.len()).as_bytes());
            }
            out.extend_from_slice(p);
            out.extend_from_slice(b"\r\n");
        }
        c.send(&out);
        i += 1;
    });
    c.send(b"0\r\n\r\n");
}
