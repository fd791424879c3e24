//! A minimal RFC 6455 client over [`Conn`]: handshake (checks 101 + Sec-WebSocket-Accept),
//! masked text/binary frames, reading (reassembling fragments, answering pings), close.

use super::http::{Conn, Head};
use sha1::{Digest, Sha1};
use std::io;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Largest message this client accepts (tests echo small payloads).
pub const MAX_MESSAGE: u64 = 64 * 1024 * 1024;

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

pub struct WsClient {
    pub conn: Conn,
    pub handshake: Head,
    mask_seed: u32,
}

/// A complete message (or control frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn accept_for(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID.as_bytes());
    base64(&h.finalize())
}

impl WsClient {
    /// Opens `path` on 127.0.0.1:port and performs the upgrade; panics unless 101 with the
    /// right Sec-WebSocket-Accept.
    pub fn connect(port: u16, path: &str) -> WsClient {
        Self::upgrade(Conn::connect(port), port, path)
    }

    /// [`WsClient::connect`] over an open connection (e.g. HTTPS, [`Conn::connect_tls`]).
    pub fn upgrade(conn: Conn, port: u16, path: &str) -> WsClient {
        let mut ws = Self::handshake_over(conn, port, path, &[]);
        let h = &ws.handshake;
        assert_eq!(
            h.status,
            101,
            "WebSocket upgrade of {path}: {:?}",
            String::from_utf8_lossy(&h.raw)
        );
        assert!(
            h.header("upgrade")
                .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
            "Upgrade header: {h:?}"
        );
        ws.mask_seed = port as u32;
        ws
    }

    /// Sends the upgrade request and reads the response head, whatever its status.
    pub fn try_connect(port: u16, path: &str) -> WsClient {
        Self::try_connect_with(port, path, &[])
    }

    /// [`WsClient::try_connect`] with extra request headers (e.g. a session cookie).
    pub fn try_connect_with(port: u16, path: &str, extra: &[(&str, &str)]) -> WsClient {
        Self::handshake_over(Conn::connect(port), port, path, extra)
    }

    fn handshake_over(mut conn: Conn, port: u16, path: &str, extra: &[(&str, &str)]) -> WsClient {
        let key = base64(b"lyre-test-nonce!");
        let extra: String = extra.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n{extra}\r\n"
        );
        conn.send(req.as_bytes());
        let handshake = conn.read_head();
        if handshake.status == 101 {
            let want = accept_for(&key);
            assert_eq!(
                handshake.header("sec-websocket-accept"),
                Some(want.as_str()),
                "Sec-WebSocket-Accept"
            );
        }
        WsClient {
            conn,
            handshake,
            mask_seed: 1,
        }
    }

    fn next_mask(&mut self) -> [u8; 4] {
        // xorshift32: masks only need to vary, not be secret, in a test client.
        let mut x = self.mask_seed.max(1);
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_seed = x;
        x.to_le_bytes()
    }

    pub fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut f = vec![0x80 | opcode];
        let n = payload.len();
        if n < 126 {
            f.push(0x80 | n as u8);
        } else if n <= 0xFFFF {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        let mask = self.next_mask();
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.conn.send(&f);
    }

    pub fn send_text(&mut self, s: &str) {
        self.send_frame(OP_TEXT, s.as_bytes());
    }

    pub fn send_binary(&mut self, b: &[u8]) {
        self.send_frame(OP_BINARY, b);
    }

    fn read_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        self.conn.try_read_exact(n)
    }

    /// Reads one frame: (fin, opcode, payload). Server frames must not be masked.
    pub fn read_frame(&mut self) -> io::Result<(bool, u8, Vec<u8>)> {
        let h = self.read_exact(2)?;
        let (fin, opcode, masked) = (h[0] & 0x80 != 0, h[0] & 0x0F, h[1] & 0x80 != 0);
        if h[0] & 0x70 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "RSV bits set in a server frame",
            ));
        }
        let mut len = (h[1] & 0x7F) as u64;
        if len == 126 {
            let b = self.read_exact(2)?;
            len = u16::from_be_bytes([b[0], b[1]]) as u64;
        } else if len == 127 {
            let b = self.read_exact(8)?;
            len = u64::from_be_bytes(b.try_into().expect("8 bytes"));
        }
        if masked {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "server frame is masked",
            ));
        }
        if len > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame of {len} bytes"),
            ));
        }
        let payload = self.read_exact(len as usize)?;
        Ok((fin, opcode, payload))
    }

    /// Reads one message, answering pings and reassembling fragments.
    pub fn recv(&mut self) -> io::Result<Message> {
        let mut msg: Option<Message> = None;
        loop {
            let (fin, opcode, payload) = self.read_frame()?;
            match opcode {
                OP_PING => self.send_frame(OP_PONG, &payload),
                OP_PONG => {}
                OP_CLOSE => return Ok(Message { opcode, payload }),
                OP_CONT => {
                    let m = msg.as_mut().ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidData, "stray continuation")
                    })?;
                    m.payload.extend_from_slice(&payload);
                }
                _ => msg = Some(Message { opcode, payload }),
            }
            if fin && opcode != OP_PING && opcode != OP_PONG {
                if let Some(m) = msg.take() {
                    return Ok(m);
                }
            }
        }
    }

    /// Sends a text message and asserts the same text comes back.
    pub fn assert_echo(&mut self, text: &str) {
        self.send_text(text);
        let m = self
            .recv()
            .unwrap_or_else(|e| panic!("waiting for the echo of {text:?}: {e}"));
        assert_eq!(
            m,
            Message {
                opcode: OP_TEXT,
                payload: text.as_bytes().to_vec()
            },
            "echo of {text:?}"
        );
    }

    /// Sends close (1000) and waits for the peer's close frame.
    pub fn close(&mut self) {
        self.send_frame(OP_CLOSE, &1000u16.to_be_bytes());
        let m = self
            .recv()
            .unwrap_or_else(|e| panic!("waiting for the close reply: {e}"));
        assert_eq!(m.opcode, OP_CLOSE, "close reply");
    }
}
