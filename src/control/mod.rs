//! Control API: `api` serves `/exapps/app_api/...` endpoints (pure), `reply` is the one
//! answer type and serializer for them and for the Docker wrappers, and this file the
//! admin-only listener on `LYRE_CONTROL_ADDRESS` (default
//! 127.0.0.1:8200, HaRP's agent port) answering `GET /heartbeat` with `{"status": "ok"}` for
//! container health checks (harp-compat.md §1.1, §6.4). It has no authentication, exactly
//! like HaRP's: keep it on loopback.

pub mod api;
pub mod healthcheck;
pub mod reply;

use crate::runtime::contain::spawn_conn;
use std::rc::Rc;
use std::time::Duration;

use monoio::net::{TcpListener, TcpStream};

use crate::http::{parse_request, RequestHead};
use crate::net::io::{read_some, set_nonblocking, write_all};

/// The admin listener reads at most this long for a request head.
pub const ADMIN_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve the admin listener until the process exits.
pub async fn serve_admin(listener: TcpListener) {
    let listener = Rc::new(listener);
    while let Ok((stream, _)) = listener.accept().await {
        spawn_conn("admin connection", serve_admin_conn(stream));
    }
}

async fn serve_admin_conn(s: TcpStream) {
    if set_nonblocking(&s).is_err() {
        return;
    }
    let read = crate::runtime::time::limit(ADMIN_READ_TIMEOUT, read_admin_head(&s)).await;
    let Ok(Some(head)) = read else { return };
    let _ = write_all(&s, &admin_answer(&head)).await;
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

/// The same answers (and serializer) as `/exapps/app_api/heartbeat` in [`api`].
fn admin_answer(head: &RequestHead) -> Vec<u8> {
    let reply = match (head.method(), head.path()) {
        (b"GET" | b"HEAD", b"/heartbeat") => reply::ControlReply::json(200, api::HEARTBEAT_BODY),
        (_, b"/heartbeat") => reply::ControlReply::method_not_allowed("GET, HEAD"),
        _ => reply::ControlReply::not_found(),
    };
    reply.render(false, head.method() == b"HEAD")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(req: &[u8]) -> String {
        let (head, _) = parse_request(req).unwrap().unwrap();
        String::from_utf8(admin_answer(&head)).unwrap()
    }

    #[test]
    fn heartbeat_answers_aiohttp_json_with_its_exact_length() {
        let get = answer(b"GET /heartbeat HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(get.starts_with("HTTP/1.1 200 OK\r\n"), "{get}");
        assert!(get.ends_with("\r\n\r\n{\"status\": \"ok\"}"), "{get}");
        assert!(get.contains("content-length: 16\r\n"), "{get}");
        let head = answer(b"HEAD /heartbeat HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(head.contains("content-length: 16\r\n") && head.ends_with("\r\n\r\n"));
        let post = answer(b"POST /heartbeat HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 ") && post.contains("allow: GET, HEAD\r\n"));
        let other = answer(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(other.starts_with("HTTP/1.1 404 ") && other.ends_with("404: Not Found"));
    }
}
