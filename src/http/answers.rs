//! Pre-rendered answers (sozu style): the hot path writes static bytes.
//! STUB: helper "http" owns this file.
//!
//! - `harp(status)`: HaRP's verdict answers, exact (harp-compat.md §3): 401/403/404/503,
//!   `Content-Type: text/plain`, bodies `401 Unauthorized`, `403 Forbidden`, `404 Not Found`,
//!   `503 Service Unavailable (HaRP)`, correct Content-Length; connection kept.
//! - `proxy_error(status)`: proxy-level errors (400, 408, 413, 431, 500, 502, 503, 504) as
//!   HAProxy renders them (small HTML page), with `Connection: close`.
//! - `CONTINUE_100`: `HTTP/1.1 100 Continue\r\n\r\n`.

pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

pub fn harp(status: u16) -> &'static [u8] {
    let _ = status;
    todo!("helper http")
}

pub fn proxy_error(status: u16) -> &'static [u8] {
    let _ = status;
    todo!("helper http")
}
