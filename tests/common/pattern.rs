//! The deterministic byte stream that tests/peers/upstream.py serves on `/bytes/<n>`, and
//! sha256 helpers. Stream: 64 KiB blocks; block i = BASE with its first 8 bytes replaced by
//! i (u64 little-endian); BASE = 8192 xorshift64 (13, 7, 17) outputs from seed
//! 0x9E3779B97F4A7C15, little-endian. The per-block counter makes a dropped, repeated or
//! reordered block change the hash, not just a truncated stream.

use sha2::{Digest, Sha256};

pub const BLOCK: usize = 64 * 1024;
const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

pub struct Pattern {
    base: Vec<u8>,
}

impl Default for Pattern {
    fn default() -> Self {
        Self::new()
    }
}

impl Pattern {
    pub fn new() -> Pattern {
        let mut x = SEED;
        let mut base = Vec::with_capacity(BLOCK);
        for _ in 0..BLOCK / 8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            base.extend_from_slice(&x.to_le_bytes());
        }
        Pattern { base }
    }

    /// Block `i` (full 64 KiB).
    pub fn block(&self, i: u64) -> Vec<u8> {
        let mut b = self.base.clone();
        b[..8].copy_from_slice(&i.to_le_bytes());
        b
    }

    /// Calls `f` with the first `n` bytes of the stream, block by block.
    pub fn for_each_block(&self, n: u64, mut f: impl FnMut(&[u8])) {
        let mut b = self.base.clone();
        let (mut i, mut left) = (0u64, n);
        while left > 0 {
            b[..8].copy_from_slice(&i.to_le_bytes());
            let take = left.min(BLOCK as u64) as usize;
            f(&b[..take]);
            left -= take as u64;
            i += 1;
        }
    }

    /// sha256 (hex) of the first `n` bytes of the stream.
    pub fn sha256(&self, n: u64) -> String {
        let mut h = Sha256::new();
        self.for_each_block(n, |b| h.update(b));
        hex(&h.finalize())
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Streaming sha256 + byte count, for bodies too big to hold.
#[derive(Default)]
pub struct HashSink {
    h: Sha256,
    pub size: u64,
}

impl HashSink {
    pub fn update(&mut self, b: &[u8]) {
        self.h.update(b);
        self.size += b.len() as u64;
    }

    pub fn hex(self) -> String {
        hex(&self.h.finalize())
    }
}
