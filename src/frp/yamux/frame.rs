//! The 12-byte yamux frame header (frp-protocol.md §2.1). Pure code.

pub const HEADER_BYTES: usize = 12;
pub const VERSION: u8 = 0;

pub const FLAG_SYN: u16 = 0x1;
pub const FLAG_ACK: u16 = 0x2;
pub const FLAG_FIN: u16 = 0x4;
pub const FLAG_RST: u16 = 0x8;

/// GO_AWAY reason codes.
pub const GOAWAY_NORMAL: u32 = 0;
pub const GOAWAY_PROTOCOL_ERROR: u32 = 1;
pub const GOAWAY_INTERNAL_ERROR: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// `length` payload bytes follow.
    Data = 0,
    /// `length` is a window delta.
    WindowUpdate = 1,
    /// `length` is an opaque value the peer echoes.
    Ping = 2,
    /// `length` is the reason code.
    GoAway = 3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub ty: FrameType,
    pub flags: u16,
    pub stream_id: u32,
    pub length: u32,
}

/// A header that no yamux peer may send; fatal for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    BadVersion(u8),
    BadType(u8),
}

impl Header {
    pub fn new(ty: FrameType, flags: u16, stream_id: u32, length: u32) -> Header {
        Header {
            ty,
            flags,
            stream_id,
            length,
        }
    }

    pub fn encode(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[0] = VERSION;
        b[1] = self.ty as u8;
        b[2..4].copy_from_slice(&self.flags.to_be_bytes());
        b[4..8].copy_from_slice(&self.stream_id.to_be_bytes());
        b[8..12].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    pub fn parse(b: &[u8; HEADER_BYTES]) -> Result<Header, HeaderError> {
        if b[0] != VERSION {
            return Err(HeaderError::BadVersion(b[0]));
        }
        let ty = match b[1] {
            0 => FrameType::Data,
            1 => FrameType::WindowUpdate,
            2 => FrameType::Ping,
            3 => FrameType::GoAway,
            t => return Err(HeaderError::BadType(t)),
        };
        Ok(Header {
            ty,
            flags: u16::from_be_bytes([b[2], b[3]]),
            stream_id: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            length: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        })
    }

    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }
}

/// One step of a frame as [`FrameDecoder`] cuts it out of the byte stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A complete header. A DATA frame's payload follows as [`Piece::Payload`]s.
    Head(Header),
    /// Payload bytes of the current DATA frame, in order; a frame's payload arrives in as
    /// many pieces as the transport delivered it in.
    Payload(&'a [u8]),
    /// The current frame is complete.
    End,
}

/// Incremental frame splitter: bytes arrive in arbitrary slices (one socket read, one TLS
/// record's plaintext) and leave as [`Piece`]s, so a payload can go straight to its stream
/// without first being gathered into a whole-frame buffer. Holds at most a partial header.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    head: [u8; HEADER_BYTES],
    /// Header bytes gathered so far (0 while inside a payload).
    have: usize,
    /// Payload bytes of the current DATA frame still to come.
    left: u32,
}

impl FrameDecoder {
    /// Cut all of `bytes` into pieces, in order, handing each to `on`; a partial header at
    /// the end is kept for the next call. Stops at the first error (the session ends).
    pub fn feed<E: From<HeaderError>>(
        &mut self,
        mut bytes: &[u8],
        mut on: impl FnMut(Piece<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = bytes.len().min(self.left as usize);
                on(Piece::Payload(&bytes[..n]))?;
                bytes = &bytes[n..];
                // n <= left, which is a u32.
                self.left -= n as u32;
                if self.left == 0 {
                    on(Piece::End)?;
                }
                continue;
            }
            let n = bytes.len().min(HEADER_BYTES - self.have);
            self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < HEADER_BYTES {
                break;
            }
            self.have = 0;
            let h = Header::parse(&self.head)?;
            on(Piece::Head(h))?;
            match h.ty {
                FrameType::Data if h.length > 0 => self.left = h.length,
                _ => on(Piece::End)?,
            }
        }
        Ok(())
    }

    /// Nothing of a frame is pending (between frames).
    pub fn is_idle(&self) -> bool {
        self.have == 0 && self.left == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: [u8; 12]) -> Result<Header, HeaderError> {
        Header::parse(&b)
    }

    #[test]
    fn captured_headers_parse_and_round_trip() {
        // §11.1 rows: (bytes, type, flags, stream, length)
        let rows: [([u8; 12], FrameType, u16, u32, u32); 5] = [
            (
                [0, 1, 0, 1, 0, 0, 0, 1, 0, 0x5c, 0, 0],
                FrameType::WindowUpdate,
                FLAG_SYN,
                1,
                6029312,
            ),
            (
                [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0xc1],
                FrameType::Data,
                0,
                1,
                193,
            ),
            (
                [0, 1, 0, 2, 0, 0, 0, 3, 0, 0x5c, 0, 0],
                FrameType::WindowUpdate,
                FLAG_ACK,
                3,
                6029312,
            ),
            (
                [0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
                FrameType::Ping,
                FLAG_SYN,
                0,
                0,
            ),
            (
                [0, 1, 0, 4, 0, 0, 0, 3, 0, 0, 0, 0],
                FrameType::WindowUpdate,
                FLAG_FIN,
                3,
                0,
            ),
        ];
        for (bytes, ty, flags, id, len) in rows {
            let got = h(bytes).unwrap();
            assert_eq!(got, Header::new(ty, flags, id, len));
            assert_eq!(got.encode(), bytes);
        }
    }

    #[test]
    fn bad_version_and_type_are_errors() {
        assert_eq!(
            h([0x6f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(HeaderError::BadVersion(0x6f))
        );
        assert_eq!(
            h([0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(HeaderError::BadType(4))
        );
    }

    /// Pieces as owned values, for comparing.
    #[derive(Debug, PartialEq, Eq)]
    enum P {
        Head(Header),
        Payload(Vec<u8>),
        End,
    }

    fn decode_in_slices(bytes: &[u8], slice: usize) -> (Vec<P>, bool) {
        let mut d = FrameDecoder::default();
        let mut out = Vec::new();
        for part in bytes.chunks(slice) {
            d.feed::<HeaderError>(part, |p| {
                out.push(match p {
                    Piece::Head(h) => P::Head(h),
                    Piece::Payload(b) => P::Payload(b.to_vec()),
                    Piece::End => P::End,
                });
                Ok(())
            })
            .unwrap();
        }
        (out, d.is_idle())
    }

    /// Payload pieces merged, so runs cut at different places compare equal.
    fn merged(pieces: Vec<P>) -> Vec<P> {
        let mut out: Vec<P> = Vec::new();
        for p in pieces {
            match (out.last_mut(), p) {
                (Some(P::Payload(a)), P::Payload(b)) => a.extend_from_slice(&b),
                (_, p) => out.push(p),
            }
        }
        out
    }

    #[test]
    fn decoder_cuts_the_same_frames_whatever_the_slicing() {
        let ping = Header::new(FrameType::Ping, FLAG_SYN, 0, 7);
        let data = Header::new(FrameType::Data, 0, 3, 5);
        let empty = Header::new(FrameType::Data, FLAG_FIN, 3, 0);
        let wu = Header::new(FrameType::WindowUpdate, FLAG_ACK, 3, 6029312);
        let mut wire = Vec::new();
        wire.extend_from_slice(&ping.encode());
        wire.extend_from_slice(&data.encode());
        wire.extend_from_slice(b"hello");
        wire.extend_from_slice(&empty.encode());
        wire.extend_from_slice(&wu.encode());
        let want = vec![
            P::Head(ping),
            P::End,
            P::Head(data),
            P::Payload(b"hello".to_vec()),
            P::End,
            P::Head(empty),
            P::End,
            P::Head(wu),
            P::End,
        ];
        for slice in [1, 2, 5, 11, 12, 13, 17, wire.len()] {
            let (got, idle) = decode_in_slices(&wire, slice);
            assert_eq!(merged(got), want, "slice {slice}");
            assert!(idle, "slice {slice}");
        }
        // Cut inside the payload: pieces come as they arrive, nothing is gathered.
        let (got, _) = decode_in_slices(&wire, 26);
        assert!(got.contains(&P::Payload(b"he".to_vec())), "{got:?}");
    }

    #[test]
    fn decoder_keeps_a_partial_header_and_reports_bad_ones() {
        let mut d = FrameDecoder::default();
        let mut n = 0;
        let bytes = Header::new(FrameType::Ping, 0, 0, 1).encode();
        d.feed::<HeaderError>(&bytes[..7], |_| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 0);
        assert!(!d.is_idle());
        let mut bad = FrameDecoder::default();
        let err = bad.feed::<HeaderError>(&[0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], |_| Ok(()));
        assert_eq!(err, Err(HeaderError::BadType(9)));
    }
}
