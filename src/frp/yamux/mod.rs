//! yamux as frpc speaks it (frp-protocol.md §2): the frame header codec and a server-side
//! session. Written here rather than using the `yamux` crate because that crate ACKs a
//! stream lazily on first write, and frpc tears the session down when a pre-opened work
//! stream stays un-ACKed for 75 s (§0 surprise 8).

pub mod frame;
pub mod session;

pub use session::{Drain, Fill, Session, Stream, YamuxError};
