//! HTTP/1.1 on the wire: request/response heads (httparse) with HaRP's limits and RFC 9112
//! framing rules, the chunked-body scanner, and pre-rendered answers. Knows nothing about
//! ExApps or sockets.

pub mod answers;
pub mod chunked;
pub mod head;

pub use chunked::{ChunkProgress, ChunkedScanner};
pub use head::{
    parse_request, parse_response, BodyFraming, HeadEdits, HeadError, Header, RequestHead,
    ResponseHead, MAX_HEADERS, MAX_HEAD_BYTES,
};
