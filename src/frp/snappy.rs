//! The Snappy framing format frp wraps work-connection payload in when a proxy sets
//! `useCompression` (frp-protocol §5.4): stream identifier, then chunks of type 0x00
//! (compressed) or 0x01 (raw), each with a 3-byte little-endian length and a masked
//! CRC-32C of the uncompressed bytes. Incremental on both sides, and the writer emits whole
//! chunks per call (Go's writer does not buffer; interactive traffic must not stall).

use snap::raw::{decompress_len, max_compress_len, Decoder, Encoder};

/// Largest uncompressed chunk the format allows.
pub const MAX_CHUNK_DATA_BYTES: usize = 65536;
const STREAM_ID: &[u8] = b"\xff\x06\x00\x00sNaPpY";
/// Largest chunk body we accept: checksum + the worst-case compressed 64 KiB.
pub fn max_chunk_body_bytes() -> usize {
    4 + max_compress_len(MAX_CHUNK_DATA_BYTES)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnappyError {
    BadStreamId,
    ChunkTooLarge(usize),
    ReservedChunk(u8),
    Corrupt(String),
    BadChecksum,
}

impl std::fmt::Display for SnappyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "frpc sent an invalid snappy stream (useCompression): {self:?}"
        )
    }
}

impl std::error::Error for SnappyError {}

fn crc32c_table() -> &'static [u32; 256] {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    })
}

pub fn crc32c(data: &[u8]) -> u32 {
    let t = crc32c_table();
    !data.iter().fold(!0u32, |c, &b| {
        t[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

pub struct SnappyWriter {
    started: bool,
    enc: Encoder,
    scratch: Vec<u8>,
}

impl Default for SnappyWriter {
    fn default() -> Self {
        SnappyWriter {
            started: false,
            enc: Encoder::new(),
            scratch: Vec::new(),
        }
    }
}

impl SnappyWriter {
    /// Append the framed form of `data` to `out`.
    pub fn encode(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            out.extend_from_slice(STREAM_ID);
        }
        for chunk in data.chunks(MAX_CHUNK_DATA_BYTES) {
            self.scratch.resize(max_compress_len(chunk.len()), 0);
            let compressed = self.enc.compress(chunk, &mut self.scratch).ok();
            // Like Go: keep the raw bytes unless compression saves at least 1/8.
            let (ty, body): (u8, &[u8]) = match compressed {
                Some(n) if n < chunk.len() - chunk.len() / 8 => (0x00, &self.scratch[..n]),
                _ => (0x01, chunk),
            };
            let len = (body.len() + 4) as u32;
            out.push(ty);
            out.extend_from_slice(&len.to_le_bytes()[..3]);
            out.extend_from_slice(&masked_crc(chunk).to_le_bytes());
            out.extend_from_slice(body);
        }
    }
}

pub struct SnappyReader {
    pending: Vec<u8>,
    seen_id: bool,
    dec: Decoder,
    /// The first error, returned again by every later call: a broken stream stays broken
    /// (a retry must not re-emit chunks decoded before the failure).
    failed: Option<SnappyError>,
}

impl Default for SnappyReader {
    fn default() -> Self {
        SnappyReader {
            pending: Vec::new(),
            seen_id: false,
            dec: Decoder::new(),
            failed: None,
        }
    }
}

impl SnappyReader {
    /// Feed wire bytes; append every complete chunk's data to `out`. Buffered input is
    /// bounded by one chunk ([`max_chunk_body_bytes`] + 4).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), SnappyError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self.decode_chunks(input, out);
        if let Err(e) = &result {
            self.failed = Some(e.clone());
            self.pending = Vec::new();
        }
        result
    }

    fn decode_chunks(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), SnappyError> {
        self.pending.extend_from_slice(input);
        let mut pos = 0;
        while self.pending.len() - pos >= 4 {
            let h = &self.pending[pos..pos + 4];
            let (ty, len) = (
                h[0],
                usize::from(h[1]) | usize::from(h[2]) << 8 | usize::from(h[3]) << 16,
            );
            if len > max_chunk_body_bytes() {
                return Err(SnappyError::ChunkTooLarge(len));
            }
            if self.pending.len() - pos - 4 < len {
                break;
            }
            let body = &self.pending[pos + 4..pos + 4 + len];
            let verified = out.len();
            if let Err(e) = chunk(&mut self.seen_id, &mut self.dec, ty, body, out) {
                // Only checksummed data leaves the reader.
                out.truncate(verified);
                return Err(e);
            }
            pos += 4 + len;
        }
        self.pending.drain(..pos);
        Ok(())
    }
}

fn chunk(
    seen_id: &mut bool,
    dec: &mut Decoder,
    ty: u8,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), SnappyError> {
    if ty == 0xff {
        if body != &STREAM_ID[4..] {
            return Err(SnappyError::BadStreamId);
        }
        *seen_id = true;
        return Ok(());
    }
    if !*seen_id {
        return Err(SnappyError::BadStreamId);
    }
    if (0x80..=0xfe).contains(&ty) {
        return Ok(()); // padding / skippable
    }
    if ty > 0x01 || body.len() < 4 {
        return Err(SnappyError::ReservedChunk(ty));
    }
    let crc = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
    let data = &body[4..];
    let start = out.len();
    if ty == 0x01 {
        // The framing format (and frp's Go reader) caps a chunk's data at 64 KiB.
        if data.len() > MAX_CHUNK_DATA_BYTES {
            return Err(SnappyError::ChunkTooLarge(data.len()));
        }
        out.extend_from_slice(data);
    } else {
        let n = decompress_len(data).map_err(|e| SnappyError::Corrupt(e.to_string()))?;
        if n > MAX_CHUNK_DATA_BYTES {
            return Err(SnappyError::ChunkTooLarge(n));
        }
        out.resize(start + n, 0);
        dec.decompress(data, &mut out[start..])
            .map_err(|e| SnappyError::Corrupt(e.to_string()))?;
    }
    if masked_crc(&out[start..]) != crc {
        return Err(SnappyError::BadChecksum);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_vector() {
        // RFC 3720 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn round_trip_any_chunking_and_agrees_with_snap_frame_decoder() {
        let data: Vec<u8> = (0..200_000u32)
            .map(|i| (i % 251) as u8 ^ (i / 7000) as u8)
            .collect();
        let mut w = SnappyWriter::default();
        let mut wire = Vec::new();
        w.encode(&data[..10], &mut wire);
        w.encode(&data[10..], &mut wire);
        assert!(wire.starts_with(STREAM_ID));
        let mut std_out = Vec::new();
        std::io::Read::read_to_end(&mut snap::read::FrameDecoder::new(&wire[..]), &mut std_out)
            .unwrap();
        assert_eq!(std_out, data);
        for step in [1usize, 13, 4096, 1 << 20] {
            let mut r = SnappyReader::default();
            let mut out = Vec::new();
            for piece in wire.chunks(step) {
                r.decode(piece, &mut out).unwrap();
            }
            assert_eq!(out, data, "step {step}");
        }
        let mut enc = Vec::new();
        std::io::Write::write_all(&mut snap::write::FrameEncoder::new(&mut enc), &data).unwrap();
        let mut out = Vec::new();
        SnappyReader::default().decode(&enc, &mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn corrupt_input_is_an_error() {
        let mut wire = Vec::new();
        SnappyWriter::default().encode(b"hello hello hello hello", &mut wire);
        let last = wire.len() - 1;
        wire[last] ^= 0xff;
        assert!(SnappyReader::default()
            .decode(&wire, &mut Vec::new())
            .is_err());
        assert_eq!(
            SnappyReader::default().decode(b"\x00\x05\x00\x00abcde", &mut Vec::new()),
            Err(SnappyError::BadStreamId)
        );
        assert_eq!(
            SnappyReader::default()
                .decode(b"\xff\x06\x00\x00sNaPpY\x00\xff\xff\xff", &mut Vec::new()),
            Err(SnappyError::ChunkTooLarge(0xffffff))
        );
        // An uncompressed chunk of more than 64 KiB of data, with a valid checksum: the
        // format (and frp's reader) refuses it (found by fuzzing against `snap`).
        let data = vec![0x41u8; 70_000];
        let crc = crc32c(&data).rotate_right(15).wrapping_add(0xa282_ead8);
        let mut wire = b"\xff\x06\x00\x00sNaPpY\x01".to_vec();
        wire.extend_from_slice(&((data.len() + 4) as u32).to_le_bytes()[..3]);
        wire.extend_from_slice(&crc.to_le_bytes());
        wire.extend_from_slice(&data);
        assert_eq!(
            SnappyReader::default().decode(&wire, &mut Vec::new()),
            Err(SnappyError::ChunkTooLarge(70_000))
        );
    }

    /// A failing chunk leaves nothing of itself in `out`, and after a failure every call
    /// fails the same way and emits nothing: chunks decoded before the bad one are never
    /// delivered twice.
    #[test]
    fn an_error_is_sticky() {
        let mut wire = Vec::new();
        SnappyWriter::default().encode(b"first chunk", &mut wire);
        let good = wire.len();
        wire.extend_from_slice(b"\x00\x05\x00\x00\x00\x00\x00\x00x"); // checksum mismatch
        let mut r = SnappyReader::default();
        let mut out = Vec::new();
        let err = r.decode(&wire, &mut out).unwrap_err();
        assert_eq!(out, b"first chunk");
        let mut again = Vec::new();
        assert_eq!(r.decode(&wire[good..], &mut again), Err(err.clone()));
        assert_eq!(r.decode(&wire[..good], &mut again), Err(err));
        assert!(again.is_empty());
    }
}
