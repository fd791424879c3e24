//! Control API: `api` serves `/exapps/app_api/...` endpoints (pure), `reply` is the one
//! answer type and serializer for them and for the Docker wrappers, and this file the
//! admin-only listener on `LYRE_CONTROL_ADDRESS` (default
//! 127.0.0.1:8200, HaRP's agent port) answering `GET /heartbeat` with `{"status":"ok"}` for
//! container health checks (harp-compat.md §1.1, §6.4). It has no authentication, exactly
//! like HaRP's: keep it on loopback.

pub mod api;
pub mod reply;

use std::rc::Rc;
use std::time::Duration;

use monoio::net::{TcpListener, TcpStream};

use crate::http::{parse_request, RequestHead};
use crate::net::io::{read_some, set_nonblocking, write_all};

/// The admin listener reads at most this long for a request head.
pub const ADMIN_READ_TIMEOUT: Duration = Duration::from_secs(10);

const HEARTBEAT_OK: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: 16\r\nconnection: close\r\n\r\n{\"status\":\"ok\"}";
const NOT_FOUND: &[u8] =
    b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 14\r\nconnection: close\r\n\r\n404: Not Found";
const BAD_METHOD: &[u8] =
    b"HTTP/1.1 405 Method Not Allowed\r\ncontent-type: text/plain\r\ncontent-length: 23\r\nconnection: close\r\n\r\n405: Method Not Allowed";

/// Serve the admin listener until the process exits.
pub async fn serve_admin(listener: TcpListener) {
    let listener = Rc::new(listener);
    while let Ok((stream, _)) = listener.accept().await {
        monoio::spawn(serve_admin_conn(stream));
    }
}

async fn serve_admin_conn(s: TcpStream) {
    if set_nonblocking(&s).is_err() {
        return;
    }
    let read = monoio::time::timeout(ADMIN_READ_TIMEOUT, read_admin_head(&s)).await;
    let Ok(Some(head)) = read else { return };
    let _ = write_all(&s, admin_answer(&head)).await;
}

async fn read_admin_head(s: &TcpStream) -> Option<RequestHead> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        match parse_request(&buf) {
            Ok(Some((head, _))) => return Some(head),
            Ok(None) => {}
            Err(_) => return None,
        }
        match read_some(s, &mut buf, 1024).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

fn admin_answer(head: &RequestHead) -> &'static [u8] {
    match (head.method(), head.path()) {
        (b"GET" | b"HEAD", b"/heartbeat") => HEARTBEAT_OK,
        (_, b"/heartbeat") => BAD_METHOD,
        _ => NOT_FOUND,
    }
}
