//! `lyre demo`: Lyre in front of an embedded upstream, so the first command of the README
//! needs nothing else. The upstream serves a page, a WebSocket echo and bulk downloads, on
//! its own thread and monoio runtime (epoll: it is a demo peer, not the thing measured).

use std::io;
use std::net::SocketAddr;

use base64::Engine;
use monoio::net::{TcpListener, TcpStream};
use sha1::{Digest, Sha1};

use crate::http::parse_request;
use crate::net::io::{read_some, set_nonblocking, write_all};

/// Largest download the demo serves, in MiB.
pub const MAX_DOWNLOAD_MIB: u64 = 64 * 1024;
/// Largest WebSocket frame payload the echo accepts.
pub const MAX_WS_PAYLOAD: u64 = 1 << 20;

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Lyre demo</title></head>
<body><h1>Lyre demo</h1>
<p>This page came through Lyre from the embedded upstream.</p>
<p>WebSocket echo: <span id="out">pending</span></p>
<p><a href="/download/100">Download 100 MiB</a></p>
<script>
const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
ws.onopen = () => ws.send('hello through Lyre');
ws.onmessage = (e) => { document.getElementById('out').textContent = 'WS-' + e.data; ws.close(); };
ws.onerror = () => { document.getElementById('out').textContent = 'WS-error'; };
</script></body></html>
"#;

/// Start the demo upstream on 127.0.0.1:0; returns its address once it listens.
pub fn start_upstream() -> io::Result<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("lyre-demo-upstream".into())
        .spawn(move || {
            let run = async move {
                let listener = match TcpListener::bind("127.0.0.1:0") {
                    Ok(l) => l,
                    Err(e) => return drop(tx.send(Err(e))),
                };
                let _ = tx.send(listener.local_addr());
                while let Ok((stream, _)) = listener.accept().await {
                    monoio::spawn(serve_demo_conn(stream));
                }
            };
            if let Err(e) = crate::runtime::block_on(crate::runtime::Driver::Epoll, run) {
                eprintln!("lyre: demo upstream runtime: {e}");
            }
        })?;
    rx.recv()
        .map_err(|_| io::Error::other("demo upstream thread died"))?
}

/// The environment `lyre demo` runs Lyre with: HaRP's required variables get demo values,
/// and LYRE_DRIVER / LYRE_PUMP / HP_LOG_LEVEL from the real environment still apply.
pub fn demo_env(
    listen: &str,
    upstream: SocketAddr,
    workers: Option<usize>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "LYRE_DRIVER" | "LYRE_PUMP" | "HP_LOG_LEVEL" | "LYRE_PIN_CPUS"
            )
        })
        .collect();
    let mut set = |k: &str, v: String| env.push((k.into(), v));
    set("HP_SHARED_KEY", format!("demo-{:x}", std::process::id()));
    set("NC_INSTANCE_URL", "http://127.0.0.1:9".into());
    set("HP_EXAPPS_ADDRESS", listen.into());
    set("HP_FRP_ADDRESS", "127.0.0.1:0".into());
    // The demo has no frpc peers; plain FRP avoids writing a PKI under /certs.
    set("HP_FRP_DISABLE_TLS", "true".into());
    set("LYRE_CONTROL_ADDRESS", "127.0.0.1:0".into());
    set("LYRE_ROUTES", format!("/={upstream}"));
    if let Some(n) = workers {
        set("LYRE_WORKERS", n.to_string());
    }
    if !env.iter().any(|(k, _)| k == "HP_LOG_LEVEL") {
        env.push(("HP_LOG_LEVEL".into(), "info".into()));
    }
    env
}

pub fn print_banner(listen: &str) {
    println!("Lyre demo: Lyre on http://{listen}/ in front of an embedded upstream. Try:");
    println!("  open   http://{listen}/                 a page whose script talks WebSocket through Lyre");
    println!("  curl   http://{listen}/hello            a small response");
    println!(
        "  curl -o /dev/null http://{listen}/download/1024   a 1 GiB download (N MiB: /download/N)"
    );
    println!("  lyre bench --url http://{listen}/hello  load test it");
    println!("Ctrl-C stops.");
}

async fn serve_demo_conn(s: TcpStream) {
    if set_nonblocking(&s).is_err() {
        return;
    }
    let _ = s.set_nodelay(true);
    let mut buf = Vec::with_capacity(8192);
    loop {
        let head = loop {
            match parse_request(&buf) {
                Ok(Some((head, len))) => {
                    buf.drain(..len);
                    break head;
                }
                Ok(None) => {}
                Err(_) => return,
            }
            match read_some(&s, &mut buf, 8192).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        if !skip_request_body(&s, &head, &mut buf).await {
            return;
        }
        let path = String::from_utf8_lossy(head.path()).into_owned();
        let ok = if path == "/ws" {
            return serve_ws(&s, &head, buf).await;
        } else if path == "/" {
            respond(&s, "200 OK", "text/html; charset=utf-8", PAGE.as_bytes()).await
        } else if path == "/hello" {
            respond(
                &s,
                "200 OK",
                "text/plain",
                b"hello from the Lyre demo upstream\n",
            )
            .await
        } else if let Some(n) = path
            .strip_prefix("/download/")
            .and_then(|n| n.parse::<u64>().ok())
        {
            download(&s, n.min(MAX_DOWNLOAD_MIB) << 20).await
        } else {
            respond(&s, "404 Not Found", "text/plain", b"not found\n").await
        };
        if !ok || !head.keep_alive {
            return;
        }
    }
}

/// Reads past a Content-Length request body (the demo's pages ignore bodies), so that a
/// POST does not desynchronise the keep-alive connection. Chunked bodies are not read:
/// false ends the connection, as does a peer gone mid-body.
async fn skip_request_body(
    s: &TcpStream,
    head: &crate::http::RequestHead,
    buf: &mut Vec<u8>,
) -> bool {
    let mut left = match head.framing {
        crate::http::BodyFraming::None => return true,
        crate::http::BodyFraming::ContentLength(n) => n,
        _ => return false,
    };
    loop {
        let have = (buf.len() as u64).min(left) as usize;
        buf.drain(..have);
        left -= have as u64;
        if left == 0 {
            return true;
        }
        match read_some(s, buf, 64 * 1024).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

/// Head and body in one write, as fast servers (hyper, Go's net/http, nginx) answer small
/// responses: two small segments would make the reader's kernel ACK at once (TCP's
/// "two pushed segments" rule) and cost every hop an extra packet and wakeup.
async fn respond(s: &TcpStream, status: &str, ctype: &str, body: &[u8]) -> bool {
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    write_all(s, &out).await.is_ok()
}

async fn download(s: &TcpStream, bytes: u64) -> bool {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {bytes}\r\n\r\n"
    );
    if write_all(s, head.as_bytes()).await.is_err() {
        return false;
    }
    let block: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        if write_all(s, &block[..n]).await.is_err() {
            return false;
        }
        left -= n as u64;
    }
    true
}

/// RFC 6455 handshake, then echo every data frame back until a close frame.
async fn serve_ws(s: &TcpStream, head: &crate::http::RequestHead, mut buf: Vec<u8>) {
    let Some(key) = head.header("sec-websocket-key") else {
        let _ = respond(
            s,
            "400 Bad Request",
            "text/plain",
            b"missing Sec-WebSocket-Key\n",
        )
        .await;
        return;
    };
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
    );
    if write_all(s, resp.as_bytes()).await.is_err() {
        return;
    }
    loop {
        let frame = loop {
            match parse_ws_frame(&buf) {
                Ok(Some(f)) => break f,
                Ok(None) => {}
                Err(()) => return,
            }
            match read_some(s, &mut buf, 8192).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let (opcode, payload, used) = frame;
        buf.drain(..used);
        let mut out = vec![0x80 | opcode];
        push_ws_len(&mut out, payload.len() as u64);
        out.extend_from_slice(&payload);
        if write_all(s, &out).await.is_err() || opcode == 0x8 {
            return;
        }
    }
}

/// Parse one client frame: (opcode, unmasked payload, bytes used). Fragmented messages are
/// echoed frame by frame, which is valid for an echo peer.
#[allow(clippy::type_complexity)]
fn parse_ws_frame(b: &[u8]) -> Result<Option<(u8, Vec<u8>, usize)>, ()> {
    if b.len() < 2 {
        return Ok(None);
    }
    let opcode = b[0] & 0x0f;
    let masked = b[1] & 0x80 != 0;
    let (len, mut pos) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as u64, 4),
        127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().map_err(|_| ())?), 10),
        126 | 127 => return Ok(None),
        n => (n as u64, 2),
    };
    if len > MAX_WS_PAYLOAD {
        return Err(());
    }
    let mask = if masked {
        if b.len() < pos + 4 {
            return Ok(None);
        }
        pos += 4;
        Some([b[pos - 4], b[pos - 3], b[pos - 2], b[pos - 1]])
    } else {
        None
    };
    let end = pos + len as usize;
    if b.len() < end {
        return Ok(None);
    }
    let mut payload = b[pos..end].to_vec();
    if let Some(m) = mask {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x ^= m[i % 4]);
    }
    Ok(Some((opcode, payload, end)))
}

fn push_ws_len(out: &mut Vec<u8>, len: u64) {
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as u64 {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&len.to_be_bytes());
    }
}
