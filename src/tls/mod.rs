//! TLS for the FRP listener: first-byte sniff, rustls server config with mutual TLS, the
//! client-certificate verifier, HaRP-style PKI generation, and a plain-or-TLS stream.
pub mod stream;
pub use stream::Transport;
