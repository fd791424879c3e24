//! First-byte classification of an accepted FRP connection (frp-protocol.md §1.3).

use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

use super::{TlsError, Transport};
use crate::net::io as nio;

/// How long a new connection may stay silent (frps allows 10 s).
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read while sniffing (one read; they all belong to the stream).
pub const SNIFF_READ_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstByte {
    /// `0x16`: a TLS ClientHello record; the byte stays part of the stream.
    Tls,
    /// `0x17`: frp's custom marker; dropped, TLS follows.
    MarkerThenTls,
    /// Anything else: plaintext (yamux `0x00`, Login `o`, NewWorkConn `w`).
    Plain,
}

pub fn classify(b: u8) -> FirstByte {
    match b {
        0x16 => FirstByte::Tls,
        0x17 => FirstByte::MarkerThenTls,
        _ => FirstByte::Plain,
    }
}

/// What the FRP listener accepts.
#[derive(Clone)]
pub enum FrpTls {
    /// HaRP's default: TLS with a client certificate of HaRP's CA; plaintext refused
    /// (frps `transport.tls.force = true` + trustedCaFile).
    Required(Arc<ServerConfig>),
    /// `HP_FRP_DISABLE_TLS=true` (frps `force = false`, no certificate files): plaintext,
    /// and TLS for an frpc that still enables it, with a throw-away certificate
    /// ([`super::config::throwaway_server_config`]) and no client certificate.
    Optional(Arc<ServerConfig>),
}

impl FrpTls {
    /// [`FrpTls::Required`] with `mtls`, else [`FrpTls::Optional`] with a new throw-away
    /// certificate.
    pub fn from_mtls(mtls: Option<Arc<ServerConfig>>) -> Result<FrpTls, TlsError> {
        match mtls {
            Some(cfg) => Ok(FrpTls::Required(cfg)),
            None => super::config::throwaway_server_config().map(FrpTls::Optional),
        }
    }
}

/// Sniff the first byte and run the TLS handshake when the client starts one; plaintext
/// passes only when `tls` is [`FrpTls::Optional`].
pub async fn accept(tcp: TcpStream, tls: &FrpTls) -> Result<Transport, TlsError> {
    let mut buf = Vec::with_capacity(SNIFF_READ_BYTES);
    match crate::runtime::time::limit(
        FIRST_BYTE_TIMEOUT,
        nio::read_some(&tcp, &mut buf, SNIFF_READ_BYTES),
    )
    .await
    {
        Err(_) => return Err(TlsError::FirstByteTimeout),
        Ok(Err(e)) => return Err(TlsError::Handshake(e)),
        Ok(Ok(0)) => {
            return Err(TlsError::Handshake(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        Ok(Ok(_)) => {}
    }
    let skip = match (classify(buf[0]), tls) {
        (FirstByte::Plain, FrpTls::Required(_)) => return Err(TlsError::PlaintextRefused),
        (FirstByte::Plain, FrpTls::Optional(_)) => return Ok(Transport::plain(tcp, buf)),
        (FirstByte::Tls, _) => 0,
        (FirstByte::MarkerThenTls, _) => 1,
    };
    let (FrpTls::Required(cfg) | FrpTls::Optional(cfg)) = tls;
    let conn = ServerConnection::new(cfg.clone()).map_err(|e| TlsError::Config(e.to_string()))?;
    let handshake = Transport::accept_tls(tcp, conn, &buf[skip..]);
    match crate::runtime::time::limit(FIRST_BYTE_TIMEOUT, handshake).await {
        Err(_) => Err(TlsError::FirstByteTimeout),
        Ok(r) => r.map_err(TlsError::Handshake),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_from_the_spec_table() {
        // §1.2: plain yamux, plain non-mux Login, TLS, TLS with 0x17.
        let rows = [
            (0x00, FirstByte::Plain),
            (b'o', FirstByte::Plain),
            (b'w', FirstByte::Plain),
            (0x16, FirstByte::Tls),
            (0x17, FirstByte::MarkerThenTls),
        ];
        for (b, want) in rows {
            assert_eq!(classify(b), want, "byte {b:#x}");
        }
    }
}
