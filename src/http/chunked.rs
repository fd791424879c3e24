//! Chunked transfer-coding scanner. STUB: helper "http" owns this file.
//!
//! Lyre forwards chunked bodies byte-for-byte (framing included); the scanner only finds
//! where the body ends and rejects invalid framing (CWE-444): bad hex, sizes over 2^63,
//! missing CRLF, oversized chunk-size/trailer lines (> 4 KiB each, trailers > 64 KiB total).
//! Payload bytes need no inspection, so the proxy may splice `payload_remaining()` bytes and
//! report them with `skip_payload`.

use super::head::HeadError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkProgress {
    /// Bytes of the input that belong to this body (<= input length).
    pub consumed: usize,
    /// The terminating chunk and trailers have been seen: the body ended at `consumed`.
    pub done: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ChunkedScanner {
    _state: (),
}

impl ChunkedScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scan the next bytes of the body stream.
    pub fn scan(&mut self, data: &[u8]) -> Result<ChunkProgress, HeadError> {
        let _ = data;
        todo!("helper http")
    }

    /// Payload bytes of the current chunk not yet seen (safe to forward blindly).
    pub fn payload_remaining(&self) -> u64 {
        todo!("helper http")
    }

    /// Record that `n <= payload_remaining()` payload bytes were forwarded unscanned.
    pub fn skip_payload(&mut self, n: u64) {
        let _ = n;
        todo!("helper http")
    }
}
