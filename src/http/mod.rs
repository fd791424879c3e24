//! HTTP/1.1 on the wire: request/response heads (httparse) with HaRP's limits and RFC 9112
//! framing rules, the chunked-body scanner, head serialisation with the hop-by-hop rules,
//! cookie lookup, and pre-rendered answers. Knows nothing about ExApps or sockets.
//!
//! Layout: `head.rs` parse + types, `fields.rs` header semantics (CL/TE/Connection/Host),
//! `write.rs` serialise, `chunked.rs` chunked scanner, `cookie.rs` `req.cook`, `answers.rs`
//! static answers.

pub mod answers;
pub mod chunked;
pub mod cookie;
mod fields;
pub mod head;
#[cfg(test)]
mod test_rng;
mod write;

pub use chunked::{ChunkProgress, ChunkedScanner};
pub use cookie::cookie_value;
pub use head::{
    parse_request, parse_response, status_line_code, write_request, write_response,
    write_response_to, BodyFraming, HeadEdits, HeadError, Header, RequestHead, ResponseHead,
    MAX_HEADERS, MAX_HEAD_BYTES,
};
