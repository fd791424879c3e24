//! One load-generating connection: send the pre-rendered request, read one response
//! (head by httparse, body by Content-Length, chunked framing, or to EOF), record, repeat;
//! reconnect when the server closes or anything fails.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

use super::histogram::Histogram;
use crate::http::ChunkedScanner;
use crate::net::io as nio;

/// Largest response head accepted (bytes).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Read buffer per connection (bytes); bodies are read through it and discarded.
pub const READ_BUF_BYTES: usize = 64 * 1024;
/// Headers parsed per response.
const MAX_HEADERS: usize = 64;

/// What a worker's connections counted.
#[derive(Default, Clone)]
pub struct Tally {
    pub latency: Histogram,
    /// Count per status code (index = code; 0..=999).
    pub statuses: Vec<u64>,
    pub errors: std::collections::BTreeMap<&'static str, u64>,
    pub connects: u64,
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            statuses: vec![0; 1000],
            ..Tally::default()
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        self.latency.merge(&other.latency);
        for (a, b) in self.statuses.iter_mut().zip(&other.statuses) {
            *a += b;
        }
        for (k, v) in &other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.connects += other.connects;
    }

    fn error(&mut self, kind: &'static str) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

/// How a response ended for the connection.
enum After {
    KeepAlive,
    Close,
}

/// Run requests on one connection slot until `deadline`.
pub async fn drive(
    addr: SocketAddr,
    request: &[u8],
    head_only: bool,
    timeout: Duration,
    deadline: Instant,
    tally: &mut Tally,
) {
    let mut buf = Vec::with_capacity(READ_BUF_BYTES);
    let mut conn: Option<TcpStream> = None;
    while Instant::now() < deadline {
        let s = match conn.take() {
            Some(s) => s,
            None => match connect(addr, timeout).await {
                Ok(s) => {
                    tally.connects += 1;
                    s
                }
                Err(kind) => {
                    tally.error(kind);
                    // Do not hammer a refusing server: a short pause bounds the error rate.
                    monoio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let start = Instant::now();
        let left = deadline.saturating_duration_since(start) + timeout;
        let exchange = exchange(&s, request, head_only, &mut buf);
        match crate::runtime::time::limit(timeout.min(left), exchange).await {
            Ok(Ok((status, after))) => {
                tally.latency.record(start.elapsed().as_micros() as u64);
                tally.statuses[usize::from(status).min(999)] += 1;
                if matches!(after, After::KeepAlive) {
                    conn = Some(s);
                }
            }
            Ok(Err(kind)) => tally.error(kind),
            Err(_) if Instant::now() >= deadline => {} // cut off by the end of the run
            Err(_) => tally.error("timeout"),
        }
        buf.clear();
    }
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, &'static str> {
    match crate::runtime::time::limit(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(_)) => Err("connect"),
        Err(_) => Err("connect timeout"),
    }
}

/// Write the request, read one whole response; returns its status and whether the
/// connection may be reused.
async fn exchange(
    s: &TcpStream,
    request: &[u8],
    head_only: bool,
    buf: &mut Vec<u8>,
) -> Result<(u16, After), &'static str> {
    nio::write_all(s, request).await.map_err(|_| "write")?;
    let (status, framing, close, head_len) = read_head(s, buf, head_only).await?;
    buf.drain(..head_len);
    let after = if close {
        After::Close
    } else {
        After::KeepAlive
    };
    match framing {
        Framing::Length(n) => skip_exact(s, buf, n).await?,
        Framing::Chunked => skip_chunked(s, buf).await?,
        Framing::ToEof => {
            skip_to_eof(s, buf).await?;
            return Ok((status, After::Close));
        }
    }
    if !buf.is_empty() {
        return Err("bytes after response"); // pipelining is not used: a framing error
    }
    Ok((status, after))
}

enum Framing {
    Length(u64),
    Chunked,
    ToEof,
}

async fn read_head(
    s: &TcpStream,
    buf: &mut Vec<u8>,
    head_only: bool,
) -> Result<(u16, Framing, bool, usize), &'static str> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = resp.code.ok_or("bad head")?;
                let (framing, close) = framing_of(&resp, status, head_only)?;
                return Ok((status, framing, close, len));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => {}
            _ => return Err("bad head"),
        }
        if read_more(s, buf).await? == 0 {
            return Err("eof in head");
        }
    }
}

fn framing_of(
    resp: &httparse::Response<'_, '_>,
    status: u16,
    head_only: bool,
) -> Result<(Framing, bool), &'static str> {
    let mut close = resp.version == Some(0);
    let mut framing = Framing::ToEof;
    for h in resp.headers.iter() {
        let v = h.value;
        if h.name.eq_ignore_ascii_case("connection") {
            close = v.eq_ignore_ascii_case(b"close");
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            framing = Framing::Chunked;
        } else if h.name.eq_ignore_ascii_case("content-length")
            && !matches!(framing, Framing::Chunked)
        {
            let n = std::str::from_utf8(v)
                .ok()
                .and_then(|t| t.trim().parse().ok());
            framing = Framing::Length(n.ok_or("bad content-length")?);
        }
    }
    if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
        framing = Framing::Length(0);
    }
    Ok((framing, close))
}

async fn read_more(s: &TcpStream, buf: &mut Vec<u8>) -> Result<usize, &'static str> {
    nio::read_some(s, buf, 4096).await.map_err(io_kind)
}

fn io_kind(e: io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionReset => "reset",
        _ => "read",
    }
}

async fn skip_exact(s: &TcpStream, buf: &mut Vec<u8>, mut n: u64) -> Result<(), &'static str> {
    loop {
        let have = (buf.len() as u64).min(n);
        buf.drain(..have as usize);
        n -= have;
        if n == 0 {
            return Ok(());
        }
        if read_more(s, buf).await? == 0 {
            return Err("eof in body");
        }
    }
}

async fn skip_chunked(s: &TcpStream, buf: &mut Vec<u8>) -> Result<(), &'static str> {
    let mut scanner = ChunkedScanner::new();
    loop {
        let p = scanner.scan(buf).map_err(|_| "bad chunked")?;
        buf.drain(..p.consumed);
        if p.done {
            return Ok(());
        }
        if read_more(s, buf).await? == 0 {
            return Err("eof in body");
        }
    }
}

async fn skip_to_eof(s: &TcpStream, buf: &mut Vec<u8>) -> Result<(), &'static str> {
    loop {
        buf.clear();
        if read_more(s, buf).await? == 0 {
            return Ok(());
        }
    }
}
