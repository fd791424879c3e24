//! FRP server for unmodified frpc 0.61-0.65 clients (frp-protocol.md).
pub mod crypto;
pub mod msg;
pub mod signal;
pub mod yamux;
