//! The access log: one line per request at `info` (target `lyre::access`, on stdout), as HaRP's
//! HAProxy writes one `httplog` line per request at level info (harp-compat.md §6.3): with
//! the default `HP_LOG_LEVEL=warning` there is none, and nothing is computed for it.
//!
//! A line: client address, the request line as received (method, target with its query,
//! version; bytes outside printable ASCII escaped so a request cannot forge log lines),
//! the status of the final response head written to the client (`-` when none was:
//! a DROP or a connection lost before the answer), the time from the complete request
//! head to the end of the answer, and how the connection went on. Headers (cookies, keys)
//! are never logged.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Instant;

use tracing::info;

use super::client::ClientConn;
use super::exchange::Next;
use crate::http::RequestHead;

/// The access log's tracing target: its lines go to stdout, all else to stderr.
pub const TARGET: &str = "lyre::access";

/// A request being served, when the access log is on.
pub struct Pending {
    peer: SocketAddr,
    line: String,
    started: Instant,
}

/// Start a line for `head`; `None` (and no work) when `info` is off for the access log.
pub fn start(head: &RequestHead, peer: SocketAddr) -> Option<Pending> {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return None;
    }
    let mut line = String::with_capacity(head.target.len() + 24);
    escape_into(&mut line, &head.raw[head.method.clone()]);
    line.push(' ');
    escape_into(&mut line, &head.raw[head.target.clone()]);
    let _ = write!(line, " HTTP/1.{}", head.minor_version);
    Some(Pending {
        peer,
        line,
        started: Instant::now(),
    })
}

/// Write the line for a request that ended with `next` (a hand-over is logged by the
/// worker that finishes it, not here).
pub fn finish(pending: Option<Pending>, client: &ClientConn, next: &Next) {
    let Some(p) = pending else {
        return;
    };
    let after = match next {
        Next::KeepAlive => "keep-alive",
        Next::Close => "close",
        Next::Abort => "abort",
        Next::Upgrade(_) => "upgrade",
        Next::HandOver(..) => return,
    };
    let status = match client.take_status() {
        0 => "-".to_string(),
        s => s.to_string(),
    };
    let ms = p.started.elapsed().as_secs_f64() * 1000.0;
    info!(
        target: TARGET,
        "{} \"{}\" {status} {ms:.1}ms {after}",
        p.peer,
        p.line
    );
}

/// A request head refused before it was understood (400, 408, 431): no request line.
pub fn rejected(peer: SocketAddr, status: u16) {
    info!(target: TARGET, "{peer} \"-\" {status} 0.0ms close");
}

/// Printable ASCII as it is; anything else (controls, quotes, backslashes, non-ASCII) as
/// `\xNN`.
fn escape_into(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
            out.push(b as char);
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes_cannot_forge_log_lines() {
        let mut s = String::new();
        escape_into(&mut s, b"/a b\"c\\d\r\n\xff");
        assert_eq!(s, "/a b\\x22c\\x5cd\\x0d\\x0a\\xff");
    }
}
