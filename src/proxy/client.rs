//! The client side of a connection: plain TCP (the `HP_EXAPPS_ADDRESS` listener) or TLS
//! (the HTTPS frontend on `HP_EXAPPS_HTTPS_ADDRESS`, harp-compat.md §6.2, H-20).
//!
//! Owns: [`ClientConn`] (what a connection's lifecycle holds, and the calls it reads heads
//! and writes answers with) and the TLS handshake of an accepted HTTPS connection.
//! Everything after the handshake is the same code for both: body forwarding sees the
//! client as a [`Leg`] ([`ClientConn::as_leg`]), so plain TCP keeps the splice fast path
//! (two `Leg::Tcp`s) and a TLS client copies through rustls (`Leg::Tls`; bytes live in
//! rustls buffers, nothing to splice).
//!
//! Why not just [`Leg`] everywhere: the lifecycle's futures are per connection, and sized by
//! their largest I/O future. A client is never an FRP work stream; `ClientConn`'s calls
//! cost a TCP client exactly what `net::io` costs (the TLS future is boxed), and the
//! lifecycle passes `&ClientConn` (one pointer, like the `&TcpStream` it replaced).
//! Not owned: TLS records and buffers (`tls::Transport`), the config (`tls::frontend`).
//!
//! The client IP for X-Forwarded-For and bans is the TCP peer's, TLS or not.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use monoio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

use super::upstream::{tls_read_some, tls_write_all2, Leg};
use crate::net::io as nio;
use crate::tls::Transport;

/// A client connection: its socket, and the status of the last response head written to
/// it (for the access log).
pub struct ClientConn {
    socket: ClientSocket,
    status: Cell<u16>,
}

/// The socket under a [`ClientConn`]. The TLS stream is boxed: its rustls state would
/// otherwise make every plain connection's (per-request) future larger.
pub enum ClientSocket {
    Tcp(TcpStream),
    Tls(Box<Transport>),
}

impl ClientConn {
    pub fn tcp_client(s: TcpStream) -> ClientConn {
        ClientConn::new(ClientSocket::Tcp(s))
    }

    pub fn tls_client(t: Box<Transport>) -> ClientConn {
        ClientConn::new(ClientSocket::Tls(t))
    }

    fn new(socket: ClientSocket) -> ClientConn {
        ClientConn {
            socket,
            status: Cell::new(0),
        }
    }

    pub fn socket(&self) -> &ClientSocket {
        &self.socket
    }

    pub fn into_socket(self) -> ClientSocket {
        self.socket
    }

    /// Remember the status of a response head just written (interim 1xx heads excluded).
    pub fn note_status(&self, status: u16) {
        self.status.set(status);
    }

    /// The status noted since the last call (0: no response head was written).
    pub fn take_status(&self) -> u16 {
        self.status.replace(0)
    }

    /// The same side as a forwarding [`Leg`] (bodies, tunnels).
    pub fn as_leg(&self) -> Leg<'_> {
        match &self.socket {
            ClientSocket::Tcp(s) => Leg::Tcp(s),
            ClientSocket::Tls(t) => Leg::Tls(t),
        }
    }

    /// The TCP socket (under TLS for an HTTPS client).
    pub fn tcp(&self) -> &TcpStream {
        match &self.socket {
            ClientSocket::Tcp(s) => s,
            ClientSocket::Tls(t) => t.tcp(),
        }
    }

    /// [`Leg::read_some`].
    pub fn read_some<'f>(
        &'f self,
        buf: &'f mut Vec<u8>,
        min_spare: usize,
    ) -> ClientIo<'f, impl Future<Output = io::Result<usize>> + 'f> {
        match &self.socket {
            ClientSocket::Tcp(s) => ClientIo::Tcp(nio::read_some(s, buf, min_spare)),
            ClientSocket::Tls(t) => ClientIo::Tls(Box::pin(tls_read_some(t, buf, min_spare))),
        }
    }

    /// [`Leg::read_some_after_wait`].
    pub fn read_some_after_wait<'f>(
        &'f self,
        buf: &'f mut Vec<u8>,
        min_spare: usize,
    ) -> ClientIo<'f, impl Future<Output = io::Result<usize>> + 'f> {
        match &self.socket {
            ClientSocket::Tcp(s) => ClientIo::Tcp(nio::read_some_after_wait(s, buf, min_spare)),
            ClientSocket::Tls(t) => ClientIo::Tls(Box::pin(tls_read_some(t, buf, min_spare))),
        }
    }

    /// [`Leg::write_all`].
    pub fn write_all<'f>(
        &'f self,
        data: &'f [u8],
    ) -> ClientIo<'f, impl Future<Output = io::Result<()>> + 'f> {
        match &self.socket {
            ClientSocket::Tcp(s) => ClientIo::Tcp(nio::write_all(s, data)),
            ClientSocket::Tls(t) => ClientIo::Tls(Box::pin(t.write_all(data))),
        }
    }

    /// [`Leg::write_all2`].
    pub fn write_all2<'f>(
        &'f self,
        first: &'f [u8],
        second: &'f [u8],
    ) -> ClientIo<'f, impl Future<Output = io::Result<()>> + 'f> {
        match &self.socket {
            ClientSocket::Tcp(s) => ClientIo::Tcp(nio::write_all2(s, first, second)),
            ClientSocket::Tls(t) => ClientIo::Tls(Box::pin(tls_write_all2(t, first, second))),
        }
    }
}

/// The future of one [`ClientConn`] I/O call: on TCP it is `net::io`'s own future (no wrapper
/// state: an `async fn` here would store its arguments a second time in every request's
/// future); on TLS a boxed one.
pub enum ClientIo<'f, F: Future> {
    Tcp(F),
    Tls(Pin<Box<dyn Future<Output = F::Output> + 'f>>),
}

impl<F: Future> Future for ClientIo<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: structural pinning of the `Tcp` variant: its future is only ever reached
        // through this pinned reference, never moved out, and `ClientIo` has no `Drop` impl;
        // the `Tls` variant is a `Pin<Box<_>>` and needs no projection.
        match unsafe { self.get_unchecked_mut() } {
            ClientIo::Tcp(f) => unsafe { Pin::new_unchecked(f) }.poll(cx),
            ClientIo::Tls(f) => f.as_mut().poll(cx),
        }
    }
}

/// Run the server handshake on an accepted connection, bounded by `limit`
/// (HP_TIMEOUT_CLIENT). Errors: timeout, EOF, or anything that is not a TLS client this
/// config accepts (plaintext HTTP, garbage, no common protocol/ALPN).
pub async fn accept_tls(
    tcp: TcpStream,
    cfg: &Arc<ServerConfig>,
    limit: Duration,
) -> io::Result<ClientConn> {
    let conn = ServerConnection::new(cfg.clone()).map_err(io::Error::other)?;
    match crate::runtime::time::limit(limit, Transport::accept_tls(tcp, conn, &[])).await {
        Ok(Ok(t)) => Ok(ClientConn::tls_client(Box::new(t))),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no complete TLS handshake within HP_TIMEOUT_CLIENT",
        )),
    }
}
