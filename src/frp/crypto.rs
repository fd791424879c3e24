//! The frp stream cipher and the token proofs (frp-protocol.md §4.1, §5, vectors §11.2-11.4).
//!
//! Owns: the PBKDF2 key derivation (salt `"frp"`, 64 iterations, 16 bytes), the AES-128-CFB
//! (128-bit segments) stream with its "16 raw IV bytes before the first ciphertext" rule, and
//! `privilege_key` = md5(token ++ decimal timestamp). Pure code, no I/O.
//!
//! Budget: encryption is in place on the caller's buffer (no allocation per call beyond the
//! one-time IV prefix); the cipher keeps partial-block state between calls, so message and
//! write boundaries never matter.

use aes::cipher::KeyIvInit;
use aes::Aes128;
use cfb_mode::{BufDecryptor, BufEncryptor};
use md5::{Digest, Md5};

pub const KEY_BYTES: usize = 16;
pub const IV_BYTES: usize = 16;
const SALT: &[u8] = b"frp";
const ITERATIONS: u32 = 64;

/// PBKDF2-HMAC-SHA1(token, "frp", 64, 16). The empty token gives
/// `cdc9dc4c472c37331281df4c232a8407`, HaRP's key (§5.3).
pub fn derive_key(token: &[u8]) -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(token, SALT, ITERATIONS, &mut key);
    key
}

/// Lowercase hex md5 of `token` followed by the decimal `timestamp` (§4.1).
pub fn privilege_key(token: &[u8], timestamp: i64) -> String {
    let mut h = Md5::new();
    h.update(token);
    h.update(timestamp.to_string().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Fresh random bytes from the OS CSPRNG (IVs, run ids).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // invariant: the OS RNG only fails on kernels without getrandom(2); Lyre requires one.
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut out)
        .expect("invariant: OS random generator available");
    out
}

/// One direction's encryptor: the first `seal` emits the IV in clear, then ciphertext.
pub struct CfbWriter {
    cipher: BufEncryptor<Aes128>,
    iv: Option<[u8; IV_BYTES]>,
}

impl CfbWriter {
    pub fn new(key: &[u8; KEY_BYTES]) -> CfbWriter {
        Self::with_iv(key, random_bytes::<IV_BYTES>())
    }

    pub fn with_iv(key: &[u8; KEY_BYTES], iv: [u8; IV_BYTES]) -> CfbWriter {
        CfbWriter {
            cipher: BufEncryptor::new(key.into(), &iv.into()),
            iv: Some(iv),
        }
    }

    /// Append the wire form of `plain` to `out`.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        if let Some(iv) = self.iv.take() {
            out.extend_from_slice(&iv);
        }
        let start = out.len();
        out.extend_from_slice(plain);
        self.cipher.encrypt(&mut out[start..]);
    }
}

/// One direction's decryptor: collects the peer's 16 IV bytes, then decrypts in place.
pub struct CfbReader {
    key: [u8; KEY_BYTES],
    iv: Vec<u8>,
    cipher: Option<BufDecryptor<Aes128>>,
}

impl CfbReader {
    pub fn new(key: &[u8; KEY_BYTES]) -> CfbReader {
        CfbReader {
            key: *key,
            iv: Vec::with_capacity(IV_BYTES),
            cipher: None,
        }
    }

    /// Decrypt `wire` in place; returns the plaintext sub-slice (empty while IV bytes are
    /// still being collected).
    pub fn open<'a>(&mut self, wire: &'a mut [u8]) -> &'a mut [u8] {
        let mut data = wire;
        if self.cipher.is_none() {
            let take = (IV_BYTES - self.iv.len()).min(data.len());
            self.iv.extend_from_slice(&data[..take]);
            data = &mut data[take..];
            if self.iv.len() < IV_BYTES {
                return data;
            }
            let iv: [u8; IV_BYTES] = self.iv[..].try_into().unwrap_or([0; IV_BYTES]);
            self.cipher = Some(BufDecryptor::new((&self.key).into(), &iv.into()));
        }
        if let Some(c) = self.cipher.as_mut() {
            c.decrypt(data);
        }
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frp::test_hex as hex;

    #[test]
    fn key_vectors_11_2() {
        let rows = [
            ("", "cdc9dc4c472c37331281df4c232a8407"),
            ("secret", "8a69215e54aca50e54f738de611a87f9"),
            (
                "some_very_secure_password",
                "6ce79b5287d6c232244a6d7d866c87da",
            ),
        ];
        for (token, key) in rows {
            assert_eq!(
                derive_key(token.as_bytes()).to_vec(),
                hex(key),
                "token {token:?}"
            );
        }
    }

    #[test]
    fn privilege_key_vectors_11_4() {
        assert_eq!(
            privilege_key(b"", 1795683251),
            "c91b5bf262a78d315d31c5ad96a02726"
        );
        assert_eq!(
            privilege_key(b"secret", 1795683373),
            "357977c159ac6b1f3a03396c5a65d7d7"
        );
    }

    const IV: &str = "c94dfd7f4597481ff7dade86009a776f";
    const C1: &str = "35a417d988d561ee8f3ade";
    const C2: &str = "e1bda5ede4e15e87bf5baa1a056923608d9ca756bc5b3effd50898c1a05481c785dc70533eb64a2303d8e4b8afc32d75c2fa41fa0d318a";

    fn plaintexts() -> Vec<u8> {
        let mut p = hex("72 00 00 00 00 00 00 00 02 7b 7d");
        p.extend(hex("32 00 00 00 00 00 00 00 2e"));
        p.extend_from_slice(br#"{"proxy_name":"exapp1","remote_addr":":23001"}"#);
        p
    }

    #[test]
    fn cfb_stream_vector_11_3_any_chunking() {
        let key = derive_key(b"");
        let iv: [u8; 16] = hex(IV).try_into().unwrap();
        let mut want = hex(IV);
        want.extend(hex(C1));
        want.extend(hex(C2));
        let plain = plaintexts();
        for cuts in [vec![11, 66], vec![5, 11, 66], vec![1, 2, 3, 17, 40, 66]] {
            let mut w = CfbWriter::with_iv(&key, iv);
            let mut out = Vec::new();
            let mut from = 0;
            for to in cuts {
                w.seal(&plain[from..to], &mut out);
                from = to;
            }
            assert_eq!(out, want);
        }
    }

    #[test]
    fn cfb_reader_collects_iv_then_decrypts_in_pieces() {
        let key = derive_key(b"");
        let mut wire = hex(IV);
        wire.extend(hex(C1));
        wire.extend(hex(C2));
        for step in [1usize, 7, 16, 33, 200] {
            let mut r = CfbReader::new(&key);
            let mut got = Vec::new();
            for chunk in wire.clone().chunks_mut(step) {
                got.extend_from_slice(r.open(chunk));
            }
            assert_eq!(got, plaintexts(), "step {step}");
        }
    }
}
