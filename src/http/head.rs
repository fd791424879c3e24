//! Request and response heads: httparse for the syntax, then HaRP's limits and the RFC 9112
//! framing rules a proxy needs so that it and the upstream agree on where each message ends
//! (CWE-444). Owns parsing only; serialisation lives in `write.rs` (re-exported here), chunked
//! bodies in `chunked.rs`. Knows nothing about ExApps or sockets.
//!
//! Contract (the proxy codes against exactly these items):
//! - `parse_request(buf)`: `Ok(None)` while the head is incomplete and `buf.len() <
//!   MAX_HEAD_BYTES`; `Err(TooLarge)` once `buf` holds MAX_HEAD_BYTES without a complete head
//!   (a head of exactly MAX_HEAD_BYTES is accepted); `Err(TooManyHeaders)` past MAX_HEADERS;
//!   `Err(Malformed)` for syntax errors, obsolete line folding, a missing (HTTP/1.1) or
//!   repeated `Host`, and the `CONNECT` method (Lyre is no forward proxy: 400);
//!   `Err(Smuggling)` for CL+TE, differing CL values (also `5, 6`), invalid CL (`+5`, `-1`,
//!   overflow), a TE whose final coding is not `chunked`, `chunked` listed twice, and TE in an
//!   HTTP/1.0 request. On success the head owns a copy of its bytes (`raw`) and `len` says
//!   how many bytes of `buf` it used; body bytes (or a pipelined request) after it stay with
//!   the caller. A request with `Content-Length: 0` has framing `ContentLength(0)`.
//! - `parse_response(buf, request_method_is_head)`: same limits; framing follows RFC 9112
//!   §6.3: HEAD request / 1xx / 204 / 304 -> `None`; TE with final `chunked` -> `Chunked`,
//!   TE with another final coding -> `UntilClose`; CL -> `ContentLength`; else `UntilClose`.
//!   CL+TE, TE in HTTP/1.0, `chunked` twice, and bad/differing CL are errors (-> 502). An
//!   interim 1xx (other than 101) is returned like any response: the caller forwards it and
//!   parses the next one. `keep_alive` is false for `UntilClose` and 101.
//! - `write_request` / `write_response` / `write_response_to`: see `write.rs`.
//!
//! Budget per head: one bounded pass of httparse over at most MAX_HEAD_BYTES, one pass over
//! the parsed headers for framing facts; two allocations (the `raw` copy of the head and the
//! `headers` Vec); httparse's MAX_HEADERS + 1 slots live uninitialised on the stack (~3.2 KiB).
//! A caller that re-parses as bytes trickle in pays O(head) per attempt, bounded by the cap.
//! Bare LF line ends in heads are accepted (RFC 9112 §2.2 allows it) because heads are never
//! forwarded verbatim: `write.rs` re-serialises them with CRLF.

use std::fmt;
use std::mem::MaybeUninit;
use std::ops::Range;

use super::cookie::cookie_value;
use super::fields::FieldFacts;
pub use super::write::{write_request, write_response, write_response_to};

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

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TooLarge => write!(
                f,
                "peer sent an HTTP head larger than {MAX_HEAD_BYTES} bytes (MAX_HEAD_BYTES); \
                 the peer must send smaller headers (cookies are the usual culprit)"
            ),
            HeadError::TooManyHeaders => write!(
                f,
                "peer sent more than {MAX_HEADERS} header lines (MAX_HEADERS); \
                 the peer must send fewer headers"
            ),
            HeadError::Malformed(why) => write!(f, "peer sent a malformed HTTP/1.x message: {why}"),
            HeadError::Smuggling(why) => write!(
                f,
                "peer sent ambiguous HTTP/1.x message framing (request smuggling risk, CWE-444): {why}"
            ),
        }
    }
}

impl std::error::Error for HeadError {}

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
    /// Reason phrase as received (may be empty), for relaying the status line.
    pub reason: Range<usize>,
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
    /// Target without the query string, as HAProxy's `path` fetch (HaRP's `path` input,
    /// harp-compat.md §3.1): for an absolute-form target (`http://host/p?q`, RFC 9112
    /// §3.2.2) the scheme and authority are skipped (`/p`; empty if no path follows).
    pub fn path(&self) -> &[u8] {
        let t = self.origin_form();
        match t.iter().position(|&b| b == b'?') {
            Some(i) => &t[..i],
            None => t,
        }
    }
    /// The target as path and query: an absolute-form target (`http://host/p?q`) without
    /// its scheme and authority (`/p?q`), any other form unchanged.
    pub fn origin_form(&self) -> &[u8] {
        strip_scheme_authority(self.target())
    }
    /// `?` and everything after it in the target, or empty: what a rewritten path needs
    /// appended to keep the query byte-for-byte (harp-compat.md §3.7).
    pub fn query_suffix(&self) -> &[u8] {
        let t = self.target();
        match t.iter().position(|&b| b == b'?') {
            Some(i) => &t[i..],
            None => &[],
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

    /// Value of the LAST occurrence of cookie `name` across all `Cookie` headers (HAProxy
    /// `req.cook`), e.g. `oc_sessionPassphrase`. See [`super::cookie::cookie_value`].
    pub fn cookie(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .rev()
            .filter(|h| self.raw[h.name.clone()].eq_ignore_ascii_case(b"cookie"))
            .find_map(|h| cookie_value(&self.raw[h.value.clone()], name))
    }

    /// Iterate `(name, value)` pairs in message order.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers
            .iter()
            .map(|h| (&self.raw[h.name.clone()], &self.raw[h.value.clone()]))
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

    pub fn reason(&self) -> &[u8] {
        &self.raw[self.reason.clone()]
    }

    /// Iterate `(name, value)` pairs in message order.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers
            .iter()
            .map(|h| (&self.raw[h.name.clone()], &self.raw[h.value.clone()]))
    }
}

/// `scheme://authority` removed from an absolute-form target; origin-form and `*` unchanged.
fn strip_scheme_authority(target: &[u8]) -> &[u8] {
    if !target.first().is_some_and(u8::is_ascii_alphabetic) {
        return target;
    }
    let scheme_len = target
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.'))
        .unwrap_or(target.len());
    let Some(rest) = target[scheme_len..].strip_prefix(b"://") else {
        return target;
    };
    let path_start = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    &rest[path_start..]
}

/// httparse slots: one more than allowed, so "exactly one too many" is seen as a count, and
/// httparse's own TooManyHeaders means "more than MAX_HEADERS + 1".
const HEADER_SLOTS: usize = MAX_HEADERS + 1;

pub fn parse_request(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let window = &buf[..buf.len().min(MAX_HEAD_BYTES)];
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADER_SLOTS];
    let mut req = httparse::Request::new(&mut []);
    let status = req.parse_with_uninit_headers(window, &mut slots);
    let len = match complete_len(status, buf.len())? {
        Some(len) => len,
        None => return Ok(None),
    };
    // invariant: httparse sets method, path and version on a complete parse.
    let (Some(method), Some(target), Some(minor_version)) = (req.method, req.path, req.version)
    else {
        return Err(HeadError::Malformed("incomplete request line"));
    };
    if method == "CONNECT" {
        return Err(HeadError::Malformed("CONNECT is not supported"));
    }
    let headers = header_ranges(buf, req.headers)?;
    let raw = buf[..len].to_vec();
    let mut head = RequestHead {
        method: span(buf, method.as_bytes()),
        target: span(buf, target.as_bytes()),
        minor_version,
        headers,
        raw,
        framing: BodyFraming::None,
        keep_alive: false,
        upgrade: false,
        expect_continue: false,
    };
    let facts = FieldFacts::collect(head.fields());
    head.framing = request_framing(&facts, minor_version)?;
    check_host(&facts, minor_version)?;
    let http11 = minor_version == 1;
    head.keep_alive = keep_alive(&facts, minor_version);
    // RFC 9110 §7.8 / §10.1.1: Upgrade and Expect are HTTP/1.1 features; ignore them in 1.0.
    head.upgrade = http11 && facts.conn_upgrade && facts.upgrade_header;
    head.expect_continue = http11 && facts.expect_continue;
    Ok(Some((head, len)))
}

pub fn parse_response(
    buf: &[u8],
    request_method_is_head: bool,
) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    let window = &buf[..buf.len().min(MAX_HEAD_BYTES)];
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; HEADER_SLOTS];
    let mut res = httparse::Response::new(&mut []);
    let status = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, window, &mut slots);
    let len = match complete_len(status, buf.len())? {
        Some(len) => len,
        None => return Ok(None),
    };
    // invariant: httparse sets version, code and reason on a complete parse.
    let (Some(minor_version), Some(status), Some(reason)) = (res.version, res.code, res.reason)
    else {
        return Err(HeadError::Malformed("incomplete status line"));
    };
    if status < 100 {
        return Err(HeadError::Malformed("status code below 100"));
    }
    let reason = if reason.is_empty() {
        0..0
    } else {
        span(buf, reason.as_bytes())
    };
    let headers = header_ranges(buf, res.headers)?;
    let mut head = ResponseHead {
        raw: buf[..len].to_vec(),
        status,
        minor_version,
        headers,
        framing: BodyFraming::None,
        keep_alive: false,
        reason,
    };
    let facts = FieldFacts::collect(head.fields());
    let bodiless = request_method_is_head || status < 200 || status == 204 || status == 304;
    if !bodiless {
        head.framing = response_framing(&facts, minor_version)?;
    }
    head.keep_alive = keep_alive(&facts, minor_version)
        && head.framing != BodyFraming::UntilClose
        && status != 101;
    Ok(Some((head, len)))
}

/// Map httparse's verdict to "complete at len" / "need more" / error, applying the caps.
fn complete_len(
    status: httparse::Result<usize>,
    buffered: usize,
) -> Result<Option<usize>, HeadError> {
    match status {
        Ok(httparse::Status::Complete(len)) => Ok(Some(len)),
        // The window is capped at MAX_HEAD_BYTES, so "partial with a full window" is too large.
        Ok(httparse::Status::Partial) if buffered >= MAX_HEAD_BYTES => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders),
        Err(e) => Err(HeadError::Malformed(httparse_reason(e))),
    }
}

fn httparse_reason(e: httparse::Error) -> &'static str {
    match e {
        // httparse reports obsolete line folding (a line starting with SP/HTAB) here too.
        httparse::Error::HeaderName => "invalid header name (or obsolete line folding)",
        httparse::Error::HeaderValue => "invalid byte in a header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status line",
        httparse::Error::Token => "invalid method or request target",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "not HTTP/1.0 or HTTP/1.1",
    }
}

/// Byte range of `part` inside `buf`. `part` must be a sub-slice of `buf` (httparse hands
/// out sub-slices of its input), which the debug assertion checks.
fn span(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    debug_assert!(start <= buf.len() && start + part.len() <= buf.len());
    start..start + part.len()
}

fn header_ranges(buf: &[u8], parsed: &[httparse::Header<'_>]) -> Result<Vec<Header>, HeadError> {
    if parsed.len() > MAX_HEADERS {
        return Err(HeadError::TooManyHeaders);
    }
    Ok(parsed
        .iter()
        .map(|h| Header {
            name: span(buf, h.name.as_bytes()),
            value: span(buf, h.value),
        })
        .collect())
}

/// RFC 9112 §6.1-§6.3 for requests: only a final, single `chunked` or one agreed
/// Content-Length delimit a request body; every other combination is rejected because a
/// server behind us might read it differently.
fn request_framing(facts: &FieldFacts, minor_version: u8) -> Result<BodyFraming, HeadError> {
    if facts.te_seen {
        if minor_version == 0 {
            return Err(HeadError::Smuggling(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        check_te(facts)?;
        if !facts.te_final_chunked {
            return Err(HeadError::Smuggling("final transfer coding is not chunked"));
        }
        return Ok(BodyFraming::Chunked);
    }
    content_length_framing(facts, BodyFraming::None)
}

/// RFC 9112 §6.3 for responses that may carry a body.
fn response_framing(facts: &FieldFacts, minor_version: u8) -> Result<BodyFraming, HeadError> {
    if facts.te_seen {
        if minor_version == 0 {
            return Err(HeadError::Smuggling(
                "Transfer-Encoding in an HTTP/1.0 response",
            ));
        }
        check_te(facts)?;
        // §6.3 rule 4: a response whose final coding is not chunked runs until close.
        return Ok(if facts.te_final_chunked {
            BodyFraming::Chunked
        } else {
            BodyFraming::UntilClose
        });
    }
    content_length_framing(facts, BodyFraming::UntilClose)
}

/// TE checks shared by both directions (TE is known to be present).
fn check_te(facts: &FieldFacts) -> Result<(), HeadError> {
    if facts.cl_seen {
        return Err(HeadError::Smuggling(
            "both Transfer-Encoding and Content-Length",
        ));
    }
    if facts.chunked_count > 1 {
        return Err(HeadError::Smuggling("chunked applied more than once"));
    }
    Ok(())
}

fn content_length_framing(
    facts: &FieldFacts,
    absent: BodyFraming,
) -> Result<BodyFraming, HeadError> {
    if let Some(why) = facts.cl_error {
        return Err(HeadError::Smuggling(why));
    }
    Ok(facts
        .content_length
        .map_or(absent, BodyFraming::ContentLength))
}

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one Host; more than one is always 400.
fn check_host(facts: &FieldFacts, minor_version: u8) -> Result<(), HeadError> {
    match facts.host_count {
        0 if minor_version == 1 => Err(HeadError::Malformed("HTTP/1.1 request without Host")),
        0 | 1 => Ok(()),
        _ => Err(HeadError::Malformed("more than one Host header")),
    }
}

/// RFC 9112 §9.3: HTTP/1.1 persists unless `close`; HTTP/1.0 only with `keep-alive`.
fn keep_alive(facts: &FieldFacts, minor_version: u8) -> bool {
    if facts.conn_close {
        return false;
    }
    minor_version == 1 || facts.conn_keep_alive
}

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;

/// The status code of a response head in `bytes` (`HTTP/1.x NNN ...`), if it is one.
pub fn status_line_code(bytes: &[u8]) -> Option<u16> {
    let code = bytes.strip_prefix(b"HTTP/1.")?.get(2..5)?;
    if bytes.get(8) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}
