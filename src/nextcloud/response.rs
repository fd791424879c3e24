//! Reading one Nextcloud response: the head via `crate::http::parse_response` (interim 1xx
//! skipped), then the body by its framing (Content-Length, chunked de-chunked on top of
//! `crate::http::ChunkedScanner`, or until close), capped at the client's `max_body`.
//!
//! Also says whether the connection may be reused: the server allowed keep-alive, the body
//! ended exactly where the framing said, and nothing else arrived.

use super::conn::Conn;
use super::{NcError, NcResponse};
use crate::http::{parse_response, BodyFraming, ChunkedScanner, HeadError};

/// Why reading failed, and whether anything of the response had arrived: a pooled
/// connection that fails before the first byte is retried once on a fresh connection.
#[derive(Debug)]
pub enum ReadFailure {
    /// Nothing received (EOF or reset before the first response byte).
    NothingReceived(NcError),
    /// Part of a response arrived: never retried.
    Partial(NcError),
}

/// A complete response and whether its connection can go back to the pool.
pub struct Complete {
    pub response: NcResponse,
    pub reusable: bool,
}

fn protocol(why: impl Into<String>) -> NcError {
    NcError::Protocol(why.into())
}

fn head_error(e: HeadError) -> NcError {
    protocol(format!("invalid response head: {e}"))
}

pub async fn read_response(conn: &mut Conn, max_body: usize) -> Result<Complete, ReadFailure> {
    let mut buf = Vec::new();
    let mut received_any = false;
    let (head, len) = loop {
        if !buf.is_empty() {
            match parse_response(&buf, false) {
                Ok(Some((head, len))) if (100..200).contains(&head.status) => {
                    if head.status == 101 {
                        return Err(ReadFailure::Partial(protocol("unexpected 101 upgrade")));
                    }
                    buf.drain(..len);
                    continue;
                }
                Ok(Some(done)) => break done,
                Ok(None) => {}
                Err(e) => return Err(ReadFailure::Partial(head_error(e))),
            }
        }
        match conn.read_some(&mut buf).await {
            Ok(0) if !received_any => return Err(ReadFailure::NothingReceived(NcError::Closed)),
            Ok(0) => {
                return Err(ReadFailure::Partial(protocol(
                    "closed in the response head",
                )))
            }
            Ok(_) => received_any = true,
            Err(e) if !received_any => return Err(ReadFailure::NothingReceived(NcError::Io(e))),
            Err(e) => return Err(ReadFailure::Partial(NcError::Io(e))),
        }
    };
    if let Some(enc) = head.header("content-encoding") {
        if !enc.trim_ascii().eq_ignore_ascii_case(b"identity") {
            return Err(ReadFailure::Partial(protocol(
                "compressed body although Lyre asked for accept-encoding: identity",
            )));
        }
    }
    buf.drain(..len);
    let (body, clean) = read_body(conn, head.framing, buf, max_body)
        .await
        .map_err(ReadFailure::Partial)?;
    Ok(Complete {
        response: NcResponse {
            status: head.status,
            body,
        },
        reusable: clean && head.keep_alive,
    })
}

/// The body and whether it ended exactly at the framing's end (no stray bytes, no EOF).
async fn read_body(
    conn: &mut Conn,
    framing: BodyFraming,
    rest: Vec<u8>,
    max_body: usize,
) -> Result<(Vec<u8>, bool), NcError> {
    match framing {
        BodyFraming::None => Ok((Vec::new(), rest.is_empty())),
        BodyFraming::ContentLength(n) => {
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n <= max_body)
                .ok_or(NcError::BodyTooLarge(max_body))?;
            let mut body = rest;
            while body.len() < n {
                if conn.read_some(&mut body).await.map_err(NcError::Io)? == 0 {
                    return Err(protocol("closed before Content-Length bytes arrived"));
                }
            }
            let clean = body.len() == n;
            body.truncate(n);
            Ok((body, clean))
        }
        BodyFraming::Chunked => read_chunked(conn, rest, max_body).await,
        BodyFraming::UntilClose => {
            let mut body = rest;
            while conn.read_some(&mut body).await.map_err(NcError::Io)? > 0 {
                if body.len() > max_body {
                    return Err(NcError::BodyTooLarge(max_body));
                }
            }
            if body.len() > max_body {
                return Err(NcError::BodyTooLarge(max_body));
            }
            Ok((body, false))
        }
    }
}

async fn read_chunked(
    conn: &mut Conn,
    mut input: Vec<u8>,
    max_body: usize,
) -> Result<(Vec<u8>, bool), NcError> {
    let mut decoder = Dechunker::new(max_body);
    let mut body = Vec::new();
    loop {
        let used = decoder.feed(&input, &mut body)?;
        input.drain(..used);
        if decoder.is_done() {
            return Ok((body, input.is_empty()));
        }
        if conn.read_some(&mut input).await.map_err(NcError::Io)? == 0 {
            return Err(protocol("closed inside a chunked body"));
        }
    }
}

/// Chunked decoding on top of the strict `ChunkedScanner`: framing bytes go through the
/// scanner one at a time (they are few), payload bytes are copied out in bulk.
pub struct Dechunker {
    scanner: ChunkedScanner,
    max_body: usize,
}

impl Dechunker {
    pub fn new(max_body: usize) -> Self {
        Dechunker {
            scanner: ChunkedScanner::new(),
            max_body,
        }
    }

    pub fn is_done(&self) -> bool {
        self.scanner.is_done()
    }

    /// Decode from `data`, appending payload to `out`; returns the bytes of `data` used
    /// (fewer than `data.len()` only once the body is done).
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<usize, NcError> {
        let mut at = 0;
        while at < data.len() && !self.scanner.is_done() {
            let remaining = self.scanner.payload_remaining();
            if remaining > 0 {
                // invariant: the min is at most data.len() - at, a usize.
                let take = remaining.min((data.len() - at) as u64) as usize;
                if out.len() + take > self.max_body {
                    return Err(NcError::BodyTooLarge(self.max_body));
                }
                out.extend_from_slice(&data[at..at + take]);
                self.scanner.skip_payload(take as u64);
                at += take;
            } else {
                let progress = self.scanner.scan(&data[at..at + 1]).map_err(head_error)?;
                if progress.consumed == 0 {
                    break;
                }
                at += progress.consumed;
            }
        }
        Ok(at)
    }
}
