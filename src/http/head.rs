//! Request and response heads. STUB: helper "http" owns this file and implements it.
//!
//! Contract (the proxy codes against exactly these items):
//! - `parse_request(buf)`: `Ok(None)` while the head is incomplete and `buf.len() <
//!   MAX_HEAD_BYTES`; `Err(TooLarge)` once `buf` holds MAX_HEAD_BYTES without a complete head;
//!   `Err(TooManyHeaders)` past MAX_HEADERS; `Err(Malformed)` for syntax errors;
//!   `Err(Smuggling)` for CL+TE, differing duplicate CL, TE other than a final `chunked`,
//!   invalid CL. On success the head owns a copy of its bytes (`raw`) and `len` says how many
//!   bytes of `buf` it used; body bytes after it stay with the caller.
//! - `parse_response(buf, request_method_is_head)`: same for responses; framing follows
//!   RFC 9112 §6.3 (HEAD/1xx/204/304 no body; CL; chunked; else until close).
//! - `write_request(head, edits, out)`: serialise for the upstream: request line with
//!   `edits.path` if set, headers minus hop-by-hop (Connection, Keep-Alive, Proxy-Connection,
//!   TE, Upgrade/Connection kept only for upgrades, names listed in Connection), minus
//!   `edits.remove`, then `edits.set` (replacing same-named incoming headers).
//! - `write_response(head, keep_alive, out)`: serialise for the client with hop-by-hop
//!   headers removed and `Connection: close` added when `keep_alive` is false
//!   (`Connection: keep-alive` for HTTP/1.0 clients kept alive); 101 keeps Upgrade/Connection.

use std::ops::Range;

/// HaRP/HAProxy `tune.bufsize`-style cap on a head (issue 2: > 64 KiB -> 431).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// More header lines than this -> 431.
pub const MAX_HEADERS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// 431: head larger than MAX_HEAD_BYTES.
    TooLarge,
    /// 431: more than MAX_HEADERS headers.
    TooManyHeaders,
    /// 400: not HTTP/1.x syntax.
    Malformed(&'static str),
    /// 400: ambiguous framing (CWE-444).
    Smuggling(&'static str),
}

impl HeadError {
    /// The status to answer with (responses from upstream that fail map to 502 instead).
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge | HeadError::TooManyHeaders => 431,
            HeadError::Malformed(_) | HeadError::Smuggling(_) => 400,
        }
    }
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    ContentLength(u64),
    Chunked,
    /// Response only: until the upstream closes.
    UntilClose,
}

/// A header as byte ranges into `raw`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: Range<usize>,
    pub value: Range<usize>,
}

#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The head bytes, request line to the blank line inclusive.
    pub raw: Vec<u8>,
    pub method: Range<usize>,
    /// Request target as sent (path + query), undecoded.
    pub target: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    pub headers: Vec<Header>,
    pub framing: BodyFraming,
    /// Client wants the connection kept after this exchange (version + Connection).
    pub keep_alive: bool,
    /// `Connection: upgrade` with an `Upgrade` header.
    pub upgrade: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub raw: Vec<u8>,
    pub status: u16,
    pub minor_version: u8,
    pub headers: Vec<Header>,
    pub framing: BodyFraming,
    /// Upstream allows reuse of its connection after this response.
    pub keep_alive: bool,
}

/// Changes applied while serialising a request for the upstream.
#[derive(Debug, Clone, Default)]
pub struct HeadEdits<'a> {
    /// Replacement request target (path + query); `None` keeps the original.
    pub path: Option<&'a [u8]>,
    /// Headers to add, replacing any incoming header of the same name (case-insensitive).
    pub set: Vec<(&'a str, &'a [u8])>,
    /// Header names to drop (case-insensitive).
    pub remove: Vec<&'a str>,
}

impl RequestHead {
    pub fn method(&self) -> &[u8] {
        &self.raw[self.method.clone()]
    }
    pub fn target(&self) -> &[u8] {
        &self.raw[self.target.clone()]
    }
    /// Target without the query string.
    pub fn path(&self) -> &[u8] {
        let t = self.target();
        match t.iter().position(|&b| b == b'?') {
            Some(i) => &t[..i],
            None => t,
        }
    }
    /// Value of the LAST header named `name` (case-insensitive), as HaRP reads headers.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .rev()
            .find(|h| self.raw[h.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| &self.raw[h.value.clone()])
    }
    pub fn is_head(&self) -> bool {
        self.method() == b"HEAD"
    }
}

impl ResponseHead {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .rev()
            .find(|h| self.raw[h.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| &self.raw[h.value.clone()])
    }
}

pub fn parse_request(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let _ = buf;
    todo!("helper http")
}

pub fn parse_response(
    buf: &[u8],
    request_method_is_head: bool,
) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let _ = (buf, request_method_is_head);
    todo!("helper http")
}

pub fn write_request(head: &RequestHead, edits: &HeadEdits<'_>, out: &mut Vec<u8>) {
    let _ = (head, edits, out);
    todo!("helper http")
}

pub fn write_response(head: &ResponseHead, keep_alive: bool, out: &mut Vec<u8>) {
    let _ = (head, keep_alive, out);
    todo!("helper http")
}
