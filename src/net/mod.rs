//! Sockets: per-core SO_REUSEPORT listeners, readiness-based nonblocking I/O on monoio
//! streams, and the forwarding pumps.
//!
//! Every data-plane socket is driven the same way on both drivers: await readiness
//! (`readable(false)` / `writable(false)`: a POLL_ADD on io_uring, the epoll state plus a
//! zero-timeout poll on the legacy driver), then issue a nonblocking syscall ourselves. This
//! keeps the hot path free of io-wq punts and lets two futures (request body up, response
//! down) share one `&TcpStream` without monoio's owned-buffer split.

pub mod batch;
pub mod io;
pub mod limits;
pub mod listener;
pub mod pump;
