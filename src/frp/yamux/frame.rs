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
}
