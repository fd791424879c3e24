//! Body forwarding, the same code for both directions: bytes already buffered behind a head
//! are written first, then the rest moves through the worker's pump (splice on plain TCP).
//! Chunked bodies are forwarded byte-for-byte; the scanner only finds where they end, and
//! chunk payloads larger than [`SPLICE_PAYLOAD_MIN`] go through the pump unscanned.
//! Between two plain TCP legs the worker's pump moves the bulk (splice by default); when a
//! leg is an FRP work stream (the fast path) or an HTTPS client (TLS), the bulk is copied
//! (`upstream::copy_legs`).

use std::io;
use std::time::Duration;

use super::upstream::{copy_legs, Leg};
use crate::http::{BodyFraming, ChunkedScanner, HeadError};
use crate::net::pump::Pump;
use crate::runtime::time::timed;

/// Chunk payloads at least this large are handed to the pump; smaller ones are copied with
/// the framing (one syscall pair either way, and the pump's setup would not pay off).
pub const SPLICE_PAYLOAD_MIN: u64 = 16 * 1024;
/// Read granularity for framing bytes (chunk-size lines, trailers, small payloads).
pub const FRAMING_READ_BYTES: usize = 16 * 1024;

/// Why a body could not be forwarded.
#[derive(Debug)]
pub enum BodyError {
    /// The sender's framing is invalid (bad chunk size...): 400 if nothing was answered yet.
    Framing(HeadError),
    /// The sender went quiet longer than the idle limit.
    Timeout,
    /// The sender closed before the body ended.
    Truncated,
    /// Any other socket error (reset, receiver gone).
    Io(io::Error),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Framing(e) => write!(f, "invalid body framing: {e:?}"),
            BodyError::Timeout => f.write_str("sender idle past the timeout"),
            BodyError::Truncated => f.write_str("sender closed before the body ended"),
            BodyError::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

impl From<io::Error> for BodyError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::TimedOut => BodyError::Timeout,
            io::ErrorKind::UnexpectedEof => BodyError::Truncated,
            _ => BodyError::Io(e),
        }
    }
}

/// Bytes still owed to `to` ahead of the body (a response head not yet written). They leave
/// together with the body bytes already buffered, in one send: a small response then costs
/// the client one segment and one wakeup instead of two. Never delayed for body bytes that
/// have not arrived (a streamed response's head goes out at once).
pub struct Lead<'a>(pub &'a [u8]);

impl Lead<'_> {
    pub const NONE: Lead<'static> = Lead(&[]);

    /// Write the lead (if any) followed by `bytes`.
    async fn write_with(&mut self, to: Leg<'_>, bytes: &[u8], idle: Duration) -> io::Result<()> {
        let lead = std::mem::take(&mut self.0);
        match (lead.is_empty(), bytes.is_empty()) {
            (true, true) => Ok(()),
            (true, false) => timed(idle, to.write_all(bytes)).await,
            (false, true) => timed(idle, to.write_all(lead)).await,
            (false, false) => timed(idle, to.write_all2(lead, bytes)).await,
        }
    }
}

/// Forward one body from `from` to `to`, preceded by `lead`. `buf` holds bytes already read
/// from `from` after the head; on return it holds only bytes past the body's end (a
/// pipelined next message). `UntilClose` forwards until `from` closes.
pub async fn forward_body(
    pump: &mut Pump,
    from: Leg<'_>,
    to: Leg<'_>,
    buf: &mut Vec<u8>,
    framing: BodyFraming,
    idle: Duration,
    mut lead: Lead<'_>,
) -> Result<(), BodyError> {
    match framing {
        BodyFraming::None => Ok(lead.write_with(to, &[], idle).await?),
        BodyFraming::ContentLength(n) => forward_sized(pump, from, to, buf, n, idle, lead).await,
        BodyFraming::Chunked => forward_chunked(pump, from, to, buf, idle, lead).await,
        BodyFraming::UntilClose => {
            lead.write_with(to, buf, idle).await?;
            buf.clear();
            match (from, to) {
                (Leg::Tcp(a), Leg::Tcp(b)) => pump.forward_to_eof(a, b, idle).await?,
                _ => copy_legs(from, to, None, idle).await?,
            };
            Ok(())
        }
    }
}

async fn forward_sized(
    pump: &mut Pump,
    from: Leg<'_>,
    to: Leg<'_>,
    buf: &mut Vec<u8>,
    n: u64,
    idle: Duration,
    mut lead: Lead<'_>,
) -> Result<(), BodyError> {
    let have = (buf.len() as u64).min(n) as usize;
    lead.write_with(to, &buf[..have], idle).await?;
    buf.drain(..have);
    let rest = n - have as u64;
    if rest > 0 {
        forward_exact(pump, from, to, rest, idle).await?;
    }
    Ok(())
}

async fn forward_chunked(
    pump: &mut Pump,
    from: Leg<'_>,
    to: Leg<'_>,
    buf: &mut Vec<u8>,
    idle: Duration,
    mut lead: Lead<'_>,
) -> Result<(), BodyError> {
    let mut scanner = ChunkedScanner::new();
    loop {
        if !buf.is_empty() {
            let progress = scanner.scan(buf).map_err(BodyError::Framing)?;
            lead.write_with(to, &buf[..progress.consumed], idle).await?;
            buf.drain(..progress.consumed);
            if progress.done {
                return Ok(());
            }
        }
        // Nothing more buffered: the head must not wait for body bytes still to come.
        lead.write_with(to, &[], idle).await?;
        let payload = scanner.payload_remaining();
        if payload >= SPLICE_PAYLOAD_MIN {
            forward_exact(pump, from, to, payload, idle).await?;
            scanner.skip_payload(payload);
            continue;
        }
        let n = timed_read_leg(idle, from, buf).await?;
        if n == 0 {
            return Err(BodyError::Truncated);
        }
    }
}

/// Exactly `n` bytes: through the pump between two TCP sockets (the measured default path,
/// unchanged), else copied (a work stream or TLS stream cannot splice).
async fn forward_exact(
    pump: &mut Pump,
    from: Leg<'_>,
    to: Leg<'_>,
    n: u64,
    idle: Duration,
) -> io::Result<()> {
    match (from, to) {
        (Leg::Tcp(a), Leg::Tcp(b)) => pump.forward_exact(a, b, n, idle).await,
        _ => copy_legs(from, to, Some(n), idle).await.map(|_| ()),
    }
}

/// [`Leg::read_some`] bounded by `idle`.
pub async fn timed_read_leg(idle: Duration, from: Leg<'_>, buf: &mut Vec<u8>) -> io::Result<usize> {
    timed(idle, from.read_some(buf, FRAMING_READ_BYTES)).await
}
