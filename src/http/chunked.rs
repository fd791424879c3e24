//! Chunked transfer-coding scanner (RFC 9112 §7.1).
//!
//! Lyre forwards chunked bodies byte-for-byte (framing included); the scanner only finds
//! where the body ends and rejects framing that another parser could read differently
//! (CWE-444). It is strict where lenient parsers disagree:
//! - line ends are exactly CRLF: a bare LF or a CR not followed by LF is an error;
//! - chunk-size is 1 to MAX_CHUNK_SIZE_DIGITS hex digits, at most MAX_CHUNK_SIZE (2^63 - 1);
//!   whitespace after it is allowed only before a `;` extension (BWS);
//! - extensions may hold HTAB, visible ASCII and obs-text, nothing else;
//! - the payload must be followed by exactly CRLF;
//! - trailer lines are `name:value` with a token name, no obsolete folding.
//!
//! Caps: a chunk-size line (extensions and CRLF included) and each trailer line are at most
//! MAX_CHUNK_LINE_BYTES; the trailer section at most MAX_TRAILER_BYTES.
//!
//! Input may arrive in any split, down to one byte at a time. `scan` returns how many bytes
//! belong to this body and stops exactly after the last CRLF, so a pipelined request that
//! follows is left to the caller. Payload bytes need no inspection, so the proxy may splice
//! `payload_remaining()` bytes and report them with `skip_payload`.
//!
//! Budget: no allocation; per byte of chunk-size/trailer lines one state transition; payload
//! bytes are skipped in O(1) per call.

use super::head::HeadError;

/// Longest chunk-size line, extensions and CRLF included.
pub const MAX_CHUNK_LINE_BYTES: usize = 4 * 1024;
/// Longest trailer section (all trailer lines and the final CRLF).
pub const MAX_TRAILER_BYTES: usize = 64 * 1024;
/// Most hex digits in a chunk-size (leading zeros included).
pub const MAX_CHUNK_SIZE_DIGITS: u8 = 16;
/// Largest chunk accepted.
pub const MAX_CHUNK_SIZE: u64 = i64::MAX as u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkProgress {
    /// Bytes of the input that belong to this body (<= input length).
    pub consumed: usize,
    /// The terminating chunk and trailers have been seen: the body ended at `consumed`.
    pub done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Hex digits of a chunk-size line.
    #[default]
    SizeDigits,
    /// Whitespace after the size: only `;` may follow.
    SizeBws,
    /// Chunk extensions, up to CR.
    SizeExt,
    /// CR of the size line seen; LF must follow.
    SizeLf,
    /// Payload bytes (`remaining` > 0).
    Data,
    /// Payload done; CR must follow.
    DataCr,
    /// CR after the payload seen; LF must follow.
    DataLf,
    /// Start of a trailer line or of the final empty line.
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value.
    TrailerValue,
    /// CR of a trailer line seen; LF must follow.
    TrailerLf,
    /// CR of the final empty line seen; LF must follow.
    FinalLf,
    /// The body is complete.
    Done,
}

#[derive(Debug, Clone, Default)]
pub struct ChunkedScanner {
    state: State,
    /// Chunk size being read (SizeDigits/SizeBws/SizeExt/SizeLf).
    size: u64,
    digits: u8,
    /// Bytes of the current size or trailer line so far.
    line_bytes: usize,
    /// Bytes of the trailer section so far.
    trailer_bytes: usize,
    /// Payload bytes of the current chunk not yet seen.
    remaining: u64,
    /// Sticky: once the framing is invalid every later `scan` fails the same way.
    failed: Option<HeadError>,
}

fn smuggling(why: &'static str) -> HeadError {
    HeadError::Smuggling(why)
}

/// RFC 9110 §5.6.2 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// HTAB, SP, VCHAR and obs-text: what extension and trailer values may contain.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

impl ChunkedScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// The terminating chunk and trailer section have been scanned.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Scan the next bytes of the body stream.
    pub fn scan(&mut self, data: &[u8]) -> Result<ChunkProgress, HeadError> {
        self.scan_with(data, |_| {})
    }

    /// [`ChunkedScanner::scan`] that also appends the payload it passes to `out` (the
    /// decoded body): for a consumer of a whole small body (the control API), never the
    /// proxy, which forwards the framing as it came.
    pub fn decode(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<ChunkProgress, HeadError> {
        self.scan_with(data, |payload| out.extend_from_slice(payload))
    }

    fn scan_with(
        &mut self,
        data: &[u8],
        mut on_payload: impl FnMut(&[u8]),
    ) -> Result<ChunkProgress, HeadError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let mut at = 0;
        while at < data.len() && self.state != State::Done {
            if self.state == State::Data {
                let available = (data.len() - at) as u64;
                let take = self.remaining.min(available);
                self.skip_payload(take);
                // invariant: take <= available, which came from a usize.
                on_payload(&data[at..at + take as usize]);
                at += take as usize;
                continue;
            }
            if let Err(e) = self.step(data[at]) {
                self.failed = Some(e.clone());
                return Err(e);
            }
            at += 1;
        }
        Ok(ChunkProgress {
            consumed: at,
            done: self.state == State::Done,
        })
    }

    /// Payload bytes of the current chunk not yet seen (safe to forward blindly).
    pub fn payload_remaining(&self) -> u64 {
        if self.state == State::Data {
            self.remaining
        } else {
            0
        }
    }

    /// Record that `n <= payload_remaining()` payload bytes were forwarded unscanned.
    /// A larger `n` is a caller bug: it is clamped (debug builds assert).
    pub fn skip_payload(&mut self, n: u64) {
        debug_assert!(n <= self.payload_remaining(), "skip_payload past the chunk");
        if self.state != State::Data {
            return;
        }
        self.remaining = self.remaining.saturating_sub(n);
        if self.remaining == 0 {
            self.state = State::DataCr;
        }
    }

    fn step(&mut self, b: u8) -> Result<(), HeadError> {
        match self.state {
            State::SizeDigits | State::SizeBws | State::SizeExt | State::SizeLf => {
                self.count_line_byte(MAX_CHUNK_LINE_BYTES, "chunk-size line too long")?;
                self.step_size_line(b)
            }
            State::DataCr => {
                self.expect(b, b'\r', State::DataLf, "chunk data not followed by CRLF")
            }
            State::DataLf => {
                self.expect(
                    b,
                    b'\n',
                    State::SizeDigits,
                    "chunk data not followed by CRLF",
                )?;
                self.size = 0;
                self.digits = 0;
                self.line_bytes = 0;
                Ok(())
            }
            State::TrailerStart
            | State::TrailerName
            | State::TrailerValue
            | State::TrailerLf
            | State::FinalLf => {
                self.trailer_bytes += 1;
                if self.trailer_bytes > MAX_TRAILER_BYTES {
                    return Err(HeadError::Malformed("trailer section too large"));
                }
                self.count_line_byte(MAX_CHUNK_LINE_BYTES, "trailer line too long")?;
                self.step_trailer(b)
            }
            // invariant: scan handles Data in bulk and stops at Done.
            State::Data | State::Done => Ok(()),
        }
    }

    fn count_line_byte(&mut self, cap: usize, why: &'static str) -> Result<(), HeadError> {
        self.line_bytes += 1;
        if self.line_bytes > cap {
            return Err(HeadError::Malformed(why));
        }
        Ok(())
    }

    fn expect(&mut self, b: u8, want: u8, next: State, why: &'static str) -> Result<(), HeadError> {
        if b != want {
            return Err(smuggling(why));
        }
        self.state = next;
        Ok(())
    }

    fn step_size_line(&mut self, b: u8) -> Result<(), HeadError> {
        match (self.state, b) {
            (State::SizeDigits, _) if b.is_ascii_hexdigit() => self.push_digit(b),
            (State::SizeDigits, b';' | b'\r' | b' ' | b'\t') if self.digits == 0 => {
                Err(smuggling("empty chunk size"))
            }
            (State::SizeDigits, b';') | (State::SizeBws, b';') => {
                self.state = State::SizeExt;
                Ok(())
            }
            (State::SizeDigits | State::SizeBws, b' ' | b'\t') => {
                self.state = State::SizeBws;
                Ok(())
            }
            (State::SizeDigits | State::SizeExt, b'\r') => {
                self.state = State::SizeLf;
                Ok(())
            }
            (State::SizeExt, _) if b != b'\n' && is_field_byte(b) => Ok(()),
            (State::SizeLf, b'\n') => {
                self.end_size_line();
                Ok(())
            }
            (State::SizeLf, _) => Err(smuggling("CR not followed by LF in chunk-size line")),
            (_, b'\n') => Err(smuggling("bare LF in chunk-size line")),
            (State::SizeDigits, _) => Err(smuggling("invalid chunk size")),
            (State::SizeBws, _) => Err(smuggling("whitespace after chunk size without extension")),
            _ => Err(smuggling("invalid byte in chunk extension")),
        }
    }

    fn push_digit(&mut self, b: u8) -> Result<(), HeadError> {
        self.digits += 1;
        if self.digits > MAX_CHUNK_SIZE_DIGITS {
            return Err(smuggling("chunk size has too many digits"));
        }
        // invariant: b is an ASCII hex digit, so to_digit succeeds.
        let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
        self.size = (self.size << 4) | digit;
        if self.size > MAX_CHUNK_SIZE {
            return Err(smuggling("chunk size too large"));
        }
        Ok(())
    }

    fn end_size_line(&mut self) {
        self.line_bytes = 0;
        if self.size == 0 {
            self.state = State::TrailerStart;
        } else {
            self.remaining = self.size;
            self.state = State::Data;
        }
    }

    fn step_trailer(&mut self, b: u8) -> Result<(), HeadError> {
        let malformed = HeadError::Malformed;
        match (self.state, b) {
            (State::TrailerStart, b'\r') => self.state = State::FinalLf,
            (State::TrailerStart, b' ' | b'\t') => {
                return Err(malformed("obsolete line folding in trailer"))
            }
            (State::TrailerStart | State::TrailerName, _) if is_tchar(b) => {
                self.state = State::TrailerName
            }
            (State::TrailerName, b':') => self.state = State::TrailerValue,
            (State::TrailerValue, b'\r') => self.state = State::TrailerLf,
            (State::TrailerValue, _) if is_field_byte(b) => {}
            (State::TrailerLf, b'\n') => {
                self.state = State::TrailerStart;
                self.line_bytes = 0;
            }
            (State::FinalLf, b'\n') => self.state = State::Done,
            (State::TrailerLf | State::FinalLf, _) => {
                return Err(smuggling("CR not followed by LF in trailer section"))
            }
            (_, b'\n') => return Err(smuggling("bare LF in trailer section")),
            _ => return Err(malformed("invalid trailer field")),
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "chunked_tests.rs"]
mod tests;
