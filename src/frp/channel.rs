//! A byte channel to frpc: a yamux stream (tcpMux on) or a whole connection (tcpMux off,
//! frp-protocol §2.7). Control and work code read and write through this and never care
//! which one it is.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use super::msg::{self, MsgType};
use super::yamux::Stream;
use super::FrpError;
use crate::tls::Transport;

/// Bytes read from a channel per call while parsing messages.
pub const MSG_READ_CHUNK_BYTES: usize = 16 * 1024;
/// frps allows 10 s for the first message on a new stream or connection (§7.3).
pub const FIRST_MSG_TIMEOUT: Duration = Duration::from_secs(10);

pub enum Channel {
    Mux(Stream),
    Raw(Rc<Transport>),
}

impl Channel {
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_expecting(buf, 0).await
    }

    /// Read for a caller that will read `remaining` more bytes (this read included), so
    /// the wait below can be batched (`net::batch`); 0 = unknown.
    pub async fn read_expecting(&self, buf: &mut [u8], remaining: u64) -> io::Result<usize> {
        match self {
            Channel::Mux(s) => s.read_expecting(buf, remaining).await,
            Channel::Raw(t) => {
                let want = usize::try_from(remaining).unwrap_or(usize::MAX);
                t.read_expecting(buf, want).await
            }
        }
    }

    /// The yamux stream under this channel (tcpMux on).
    pub fn mux(&self) -> Option<&Stream> {
        match self {
            Channel::Mux(s) => Some(s),
            Channel::Raw(_) => None,
        }
    }

    /// Wait until a read would not block, without holding a buffer.
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Channel::Mux(s) => {
                s.readable().await;
                Ok(())
            }
            Channel::Raw(t) => t.readable().await,
        }
    }

    pub async fn write_all(&self, data: &[u8]) -> io::Result<()> {
        match self {
            Channel::Mux(s) => s.write_all(data).await,
            Channel::Raw(t) => t.write_all(data).await,
        }
    }

    /// End our side: FIN on a yamux stream, socket shutdown on a raw connection.
    pub fn close(&self) {
        match self {
            Channel::Mux(s) => s.close_write(),
            Channel::Raw(t) => t.shutdown(),
        }
    }

    /// The channel now carries a user connection (yamux: it leaves the unclaimed-stream
    /// cap, see [`super::yamux::session::MAX_UNCLAIMED_STREAMS`]).
    pub fn claim(&self) {
        if let Channel::Mux(s) = self {
            s.claim();
        }
    }

    /// A yamux stream the peer already ended (a raw connection is only found dead on use).
    pub fn is_finished(&self) -> bool {
        match self {
            Channel::Mux(s) => s.is_finished(),
            Channel::Raw(_) => false,
        }
    }

    /// Safe to reuse for another exchange: a yamux stream that is still open both ways and
    /// holds no unread bytes. A raw connection cannot be probed without reading (TLS), so
    /// it never counts as reusable.
    pub fn is_idle_and_open(&self) -> bool {
        match self {
            Channel::Mux(s) => !s.is_finished() && !s.has_buffered(),
            Channel::Raw(_) => false,
        }
    }

    pub fn is_mux(&self) -> bool {
        matches!(self, Channel::Mux(_))
    }
}

/// Read exactly one plaintext message within [`FIRST_MSG_TIMEOUT`]; returns its type, body
/// and any bytes read past it (they belong to the next layer: IV + ciphertext, or payload).
/// `initial` = bytes already read from the channel.
pub async fn read_first_msg(
    ch: &Channel,
    initial: Vec<u8>,
) -> Result<(MsgType, Vec<u8>, Vec<u8>), FrpError> {
    read_first_msg_within(ch, initial, FIRST_MSG_TIMEOUT).await
}

/// [`read_first_msg`] within `limit` (what is left of a deadline that started earlier).
pub async fn read_first_msg_within(
    ch: &Channel,
    initial: Vec<u8>,
    limit: Duration,
) -> Result<(MsgType, Vec<u8>, Vec<u8>), FrpError> {
    let mut buf = initial;
    let read = async {
        loop {
            if let Some(f) = msg::parse_frame(&buf)? {
                return Ok((f.ty, f.body.to_vec(), buf[f.len..].to_vec()));
            }
            let len = buf.len();
            buf.resize(len + MSG_READ_CHUNK_BYTES, 0);
            let n = ch.read(&mut buf[len..]).await?;
            buf.truncate(len + n);
            if n == 0 {
                return Err(FrpError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    };
    match crate::runtime::time::limit(limit, read).await {
        Ok(r) => r,
        Err(_) => Err(FrpError::Timeout("no first message within 10 s")),
    }
}
