//! frp control messages: the type byte catalogue, the `type | i64 BE length | JSON` framing
//! and the JSON bodies Lyre reads or writes (frp-protocol.md §3).
//!
//! Owns encoding and check-then-parse decoding; knows nothing about sockets, encryption or
//! yamux. Names are the wire names (`Login`, `NewProxy`, `ReqWorkConn`...) so grep finds the
//! same word here and in the spec. Every field is `omitempty` on the wire (§3.1): optional
//! fields are skipped when empty, and unknown incoming fields are ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Type byte + 8-byte big-endian signed length.
pub const HEADER_BYTES: usize = 9;
/// Largest JSON body either side accepts (§3.1: "message length exceed the limit").
pub const MAX_BODY_BYTES: usize = 10240;

macro_rules! msg_types {
    ($($name:ident = $byte:expr),* $(,)?) => {
        /// Every type byte frpc 0.61-0.65 knows (§3.2). Anything else is a fatal framing error.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum MsgType { $($name),* }

        impl MsgType {
            pub fn from_byte(b: u8) -> Option<MsgType> {
                match b { $($byte => Some(MsgType::$name),)* _ => None }
            }
            pub fn byte(self) -> u8 {
                match self { $(MsgType::$name => $byte),* }
            }
        }
    };
}

msg_types! {
    Login = b'o', LoginResp = b'1', NewProxy = b'p', NewProxyResp = b'2', CloseProxy = b'c',
    NewWorkConn = b'w', ReqWorkConn = b'r', StartWorkConn = b's', NewVisitorConn = b'v',
    NewVisitorConnResp = b'3', Ping = b'h', Pong = b'4', UdpPacket = b'u',
    NatHoleVisitor = b'i', NatHoleClient = b'n', NatHoleResp = b'm', NatHoleSid = b'5',
    NatHoleReport = b'6',
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MsgError {
    /// A type byte outside §3.2: the peer is not frpc, or the stream is out of sync
    /// (wrong AES key on the control stream looks exactly like this).
    UnknownType(u8),
    /// Negative or above [`MAX_BODY_BYTES`].
    BadLength(i64),
    /// The body is not the JSON shape §3.3 describes for this type.
    Json { ty: MsgType, reason: String },
}

impl std::fmt::Display for MsgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MsgError::UnknownType(b) => write!(
                f,
                "frpc sent unknown message type byte {b:#04x} (wrong key or not an frp client)"
            ),
            MsgError::BadLength(n) => {
                write!(
                    f,
                    "frpc sent message length {n}, limit is 0..={MAX_BODY_BYTES}"
                )
            }
            MsgError::Json { ty, reason } => {
                write!(f, "frpc sent a malformed {ty:?} body: {reason}")
            }
        }
    }
}

impl std::error::Error for MsgError {}

/// Look for one complete message at the start of `buf`. `Ok(None)` = need more bytes (a
/// state, not an error). The type and length are checked as soon as they arrive, so a bad
/// peer is refused before it can make us buffer anything.
pub fn parse_frame(buf: &[u8]) -> Result<Option<Frame<'_>>, MsgError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let ty = MsgType::from_byte(first).ok_or(MsgError::UnknownType(first))?;
    if buf.len() < HEADER_BYTES {
        return Ok(None);
    }
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&buf[1..HEADER_BYTES]);
    let len = i64::from_be_bytes(len_bytes);
    if !(0..=MAX_BODY_BYTES as i64).contains(&len) {
        return Err(MsgError::BadLength(len));
    }
    let total = HEADER_BYTES + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(Frame {
        ty,
        body: &buf[HEADER_BYTES..total],
        len: total,
    }))
}

/// One complete message found by [`parse_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub ty: MsgType,
    pub body: &'a [u8],
    /// Bytes the whole message takes (header + body).
    pub len: usize,
}

/// Decode a body; an empty body counts as `{}`.
pub fn parse_body<'a, T: Deserialize<'a>>(ty: MsgType, body: &'a [u8]) -> Result<T, MsgError> {
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|e| MsgError::Json {
        ty,
        reason: e.to_string(),
    })
}

/// Append one framed message to `out`.
pub fn write_msg<T: Serialize>(out: &mut Vec<u8>, ty: MsgType, body: &T) {
    let start = out.len();
    out.push(ty.byte());
    out.extend_from_slice(&[0u8; 8]);
    // invariant: our message structs hold only strings, integers, bools and string maps,
    // which serde_json always serialises.
    serde_json::to_writer(&mut *out, body).expect("invariant: frp message serialises");
    let len = (out.len() - start - HEADER_BYTES) as i64;
    out[start + 1..start + HEADER_BYTES].copy_from_slice(&len.to_be_bytes());
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
fn is_zero_u16(v: &u16) -> bool {
    *v == 0
}
fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

/// `o`: the first message of a control stream (§3.3).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Login {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub os: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub arch: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub privilege_key: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub timestamp: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metas: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub pool_count: u32,
}

/// `1`: the only plaintext server message on the control stream.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LoginResp {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// `p`: only the fields a tcp proxy uses; the rest are ignored on decode.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct NewProxy {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_type: String,
    #[serde(skip_serializing_if = "is_false")]
    pub use_encryption: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub use_compression: bool,
    /// `i64` so a hostile value (negative, > 65535) parses and is refused with frps's words.
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub remote_port: i64,
}

/// `2`: exactly one per NewProxy (§6.1).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct NewProxyResp {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub remote_addr: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// `c`
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CloseProxy {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_name: String,
}

/// `w`: first message of every work stream / work connection.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct NewWorkConn {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub privilege_key: String,
    #[serde(skip_serializing_if = "is_zero_i64")]
    pub timestamp: i64,
}

/// `r` and `h`/`4` bodies we send are always `{}` or carry only `error`.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Empty {}

/// `4`
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Pong {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// `s`: addresses are bare IPs (IPv6 without brackets), §7.4.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct StartWorkConn {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub proxy_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub src_addr: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dst_addr: String,
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub src_port: u16,
    #[serde(skip_serializing_if = "is_zero_u16")]
    pub dst_port: u16,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frp::test_hex as hex;

    #[test]
    fn req_work_conn_is_the_spec_example() {
        // §3.1 worked example.
        let mut out = Vec::new();
        write_msg(&mut out, MsgType::ReqWorkConn, &Empty {});
        assert_eq!(out, hex("72 00 00 00 00 00 00 00 02 7b 7d"));
    }

    #[test]
    fn type_bytes_round_trip_and_unknown_rejected() {
        let rows: &[(u8, Option<MsgType>)] = &[
            (b'o', Some(MsgType::Login)),
            (b'1', Some(MsgType::LoginResp)),
            (b'p', Some(MsgType::NewProxy)),
            (b'2', Some(MsgType::NewProxyResp)),
            (b'c', Some(MsgType::CloseProxy)),
            (b'w', Some(MsgType::NewWorkConn)),
            (b'r', Some(MsgType::ReqWorkConn)),
            (b's', Some(MsgType::StartWorkConn)),
            (b'h', Some(MsgType::Ping)),
            (b'4', Some(MsgType::Pong)),
            (0x00, None),
            (b'x', None),
        ];
        for (b, want) in rows {
            assert_eq!(MsgType::from_byte(*b), *want, "byte {b:#x}");
            if let Some(t) = want {
                assert_eq!(t.byte(), *b);
            }
        }
        assert_eq!(parse_frame(b"\x00abc"), Err(MsgError::UnknownType(0)));
    }

    #[test]
    fn lengths_are_capped_and_partial_frames_wait() {
        let mut big = vec![b'o'];
        big.extend_from_slice(&10241i64.to_be_bytes());
        assert_eq!(parse_frame(&big), Err(MsgError::BadLength(10241)));
        let mut neg = vec![b'o'];
        neg.extend_from_slice(&(-1i64).to_be_bytes());
        assert_eq!(parse_frame(&neg), Err(MsgError::BadLength(-1)));
        let full = hex("72 00 00 00 00 00 00 00 02 7b 7d 99");
        for cut in 0..11 {
            assert_eq!(parse_frame(&full[..cut]), Ok(None), "cut {cut}");
        }
        let f = parse_frame(&full).unwrap().unwrap();
        assert_eq!(
            (f.ty, f.body, f.len),
            (MsgType::ReqWorkConn, &b"{}"[..], 11)
        );
    }

    #[test]
    fn login_from_the_capture_parses() {
        // §11.1 body.
        let body = br#"{"version":"0.65.0","os":"linux","arch":"amd64","privilege_key":"c91b5bf262a78d315d31c5ad96a02726","timestamp":1795683251,"metas":{"token":"goodtoken"},"client_spec":{},"pool_count":1}"#;
        let l: Login = parse_body(MsgType::Login, body).unwrap();
        assert_eq!(l.timestamp, 1795683251);
        assert_eq!(l.metas.get("token").map(String::as_str), Some("goodtoken"));
        assert_eq!(l.pool_count, 1);
        assert!(l.run_id.is_empty());
        assert!(parse_body::<Login>(MsgType::Login, b"[1]").is_err());
    }

    #[test]
    fn server_messages_match_captured_bytes() {
        let mut out = Vec::new();
        let resp = LoginResp {
            version: "0.65.0".into(),
            run_id: "cda3dd5f612caea4".into(),
            ..Default::default()
        };
        write_msg(&mut out, MsgType::LoginResp, &resp);
        assert_eq!(&out[..9], &hex("31 00 00 00 00 00 00 00 30")[..]);
        assert_eq!(
            &out[9..],
            br#"{"version":"0.65.0","run_id":"cda3dd5f612caea4"}"#
        );
        out.clear();
        let npr = NewProxyResp {
            proxy_name: "exapp1".into(),
            remote_addr: ":23001".into(),
            ..Default::default()
        };
        write_msg(&mut out, MsgType::NewProxyResp, &npr);
        assert_eq!(
            &out[9..],
            br#"{"proxy_name":"exapp1","remote_addr":":23001"}"#
        );
        assert_eq!(out.len(), 55);
        out.clear();
        let swc = StartWorkConn {
            proxy_name: "exapp1".into(),
            src_addr: "127.0.0.1".into(),
            dst_addr: "127.0.0.1".into(),
            src_port: 58266,
            dst_port: 23001,
            ..Default::default()
        };
        write_msg(&mut out, MsgType::StartWorkConn, &swc);
        assert_eq!(out.len(), 9 + 0x67);
    }
}
