//! Serialising heads for the other side of the proxy (RFC 9112 §3, §4, RFC 9110 §7.6.1).
//! Owns the hop-by-hop rules; parsing is in `head.rs`. Bodies are not touched: the proxy
//! forwards body bytes (chunked framing included) unchanged, so `Content-Length` and
//! `Transfer-Encoding` always pass through.
//!
//! - `write_request(head, edits, out)`: `METHOD SP target SP HTTP/1.x` (target = `edits.path`
//!   or the original, version = the client's), then the headers in original order minus
//!   hop-by-hop (`Connection`, `Keep-Alive`, `Proxy-Connection`, `TE`, `Upgrade` unless
//!   `head.upgrade`, every header named in `Connection`), minus `edits.remove`, minus names in
//!   `edits.set`; then `connection: upgrade` for upgrades, then the `edits.set` fields.
//!   `Trailer` is kept (end-to-end, and the chunked body is forwarded as is). Keeping the
//!   client's version matters: an upstream answering an HTTP/1.0 request may not use
//!   chunked (RFC 9112 §6.1), which an HTTP/1.0 client could not decode since the proxy
//!   does not re-frame bodies.
//! - `write_response_to(head, keep_alive, client_minor_version, out)`: the status line as
//!   received, headers minus hop-by-hop (`Upgrade` kept for 101), then `connection: upgrade`
//!   (101), `connection: close` (!keep_alive) or `connection: keep-alive` (kept alive and the
//!   client speaks HTTP/1.0).
//! - `write_response(head, keep_alive, out)`: the contract's form, for callers that do not
//!   track the client's version: like `write_response_to` but emits `connection: keep-alive`
//!   whenever the connection is kept (required by HTTP/1.0 clients, harmless for HTTP/1.1).
//!
//! `Connection` cannot remove `Content-Length`, `Transfer-Encoding` or `Host`: dropping a
//! framing header named there would make the next hop read the body as a new request
//! (hop-by-hop header abuse, CWE-444).
//!
//! Budget: appends to `out` (one `reserve`), no other allocation; O(headers x Connection
//! tokens) name comparisons.

use super::fields::list_items;
use super::head::{HeadEdits, Header, RequestHead, ResponseHead};

/// Always hop-by-hop (RFC 9110 §7.6.1, plus the de-facto `Proxy-Connection`).
const HOP_BY_HOP: [&[u8]; 5] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"upgrade",
];

/// Headers that `Connection` may not remove (see the module doc).
const PROTECTED: [&[u8]; 3] = [b"content-length", b"transfer-encoding", b"host"];

fn is_one_of(name: &[u8], set: &[&[u8]]) -> bool {
    set.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// Decides which incoming headers are hop-by-hop for one message.
struct HopFilter<'a> {
    raw: &'a [u8],
    headers: &'a [Header],
    /// Keep `Upgrade` (and ignore the `upgrade` Connection token) for upgrades / 101.
    keep_upgrade: bool,
}

impl HopFilter<'_> {
    fn drops(&self, name: &[u8]) -> bool {
        if self.keep_upgrade && name.eq_ignore_ascii_case(b"upgrade") {
            return false;
        }
        is_one_of(name, &HOP_BY_HOP) || self.named_by_connection(name)
    }

    fn named_by_connection(&self, name: &[u8]) -> bool {
        if is_one_of(name, &PROTECTED) {
            return false;
        }
        self.headers
            .iter()
            .filter(|h| self.raw[h.name.clone()].eq_ignore_ascii_case(b"connection"))
            .flat_map(|h| list_items(&self.raw[h.value.clone()]))
            .any(|token| token.eq_ignore_ascii_case(name))
    }
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn push_version(out: &mut Vec<u8>, minor_version: u8) {
    out.extend_from_slice(b"HTTP/1.");
    out.push(b'0' + minor_version.min(9));
}

pub fn write_request(head: &RequestHead, edits: &HeadEdits<'_>, out: &mut Vec<u8>) {
    let target = edits.path.unwrap_or_else(|| head.target());
    let set_len: usize = edits.set.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    out.reserve(head.raw.len() + target.len() + set_len + 32);
    out.extend_from_slice(head.method());
    out.push(b' ');
    out.extend_from_slice(target);
    out.push(b' ');
    push_version(out, head.minor_version);
    out.extend_from_slice(b"\r\n");
    let hop = HopFilter {
        raw: &head.raw,
        headers: &head.headers,
        keep_upgrade: head.upgrade,
    };
    for (name, value) in head.fields() {
        let edited = edits
            .remove
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
            || edits
                .set
                .iter()
                .any(|(n, _)| name.eq_ignore_ascii_case(n.as_bytes()));
        if !edited && !hop.drops(name) {
            push_field(out, name, value);
        }
    }
    if head.upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
    for (name, value) in &edits.set {
        // Values come from our own decision code, never raw from a peer without validation.
        debug_assert!(!value.iter().any(|&b| b == b'\r' || b == b'\n'));
        push_field(out, name.as_bytes(), value);
    }
    out.extend_from_slice(b"\r\n");
}

/// See the module doc; use [`write_response_to`] when the client's version is known.
pub fn write_response(head: &ResponseHead, keep_alive: bool, out: &mut Vec<u8>) {
    write_response_to(head, keep_alive, 0, out);
}

pub fn write_response_to(
    head: &ResponseHead,
    keep_alive: bool,
    client_minor_version: u8,
    out: &mut Vec<u8>,
) {
    out.reserve(head.raw.len() + 32);
    push_version(out, head.minor_version);
    out.push(b' ');
    // invariant: status is 100..=999 (httparse reads exactly three digits, head.rs rejects < 100).
    out.extend_from_slice(&[
        b'0' + (head.status / 100 % 10) as u8,
        b'0' + (head.status / 10 % 10) as u8,
        b'0' + (head.status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(head.reason());
    out.extend_from_slice(b"\r\n");
    let switching = head.status == 101;
    let hop = HopFilter {
        raw: &head.raw,
        headers: &head.headers,
        keep_upgrade: switching,
    };
    for (name, value) in head.fields() {
        if !hop.drops(name) {
            push_field(out, name, value);
        }
    }
    if switching {
        out.extend_from_slice(b"connection: upgrade\r\n");
    } else if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    } else if client_minor_version == 0 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
