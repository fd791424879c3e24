//! One connection to Nextcloud, plain or TLS, driven the data-plane way: readiness waits plus
//! nonblocking `recv`/`send` (`crate::net::io`) on both monoio drivers. For TLS a
//! `rustls::ClientConnection` is pumped by hand over the same syscalls, so no owned-buffer
//! I/O and no extra TLS crate is involved.
//!
//! Budget: rustls buffers at most its default 64 KiB of outgoing TLS records; reads go
//! through a READ_CHUNK stack buffer into the caller's Vec.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use monoio::net::TcpStream;
use rustls::ClientConnection;

use super::target::Tls;
use super::NcError;
use crate::net::io::{try_recv, try_send, write_all as tcp_write_all};

/// Bytes moved per `recv` of plaintext.
pub const READ_CHUNK: usize = 16 * 1024;

pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsConn>),
}

pub struct TlsConn {
    tcp: TcpStream,
    tls: ClientConnection,
}

/// `io::Read`/`io::Write` over the nonblocking syscalls, for rustls' `read_tls`/`write_tls`.
struct Sock<'a>(&'a TcpStream);

impl Read for Sock<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        try_recv(self.0, buf)?.ok_or_else(|| io::ErrorKind::WouldBlock.into())
    }
}

impl Write for Sock<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        try_send(self.0, data)?.ok_or_else(|| io::ErrorKind::WouldBlock.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Conn {
    /// TCP connect (no timeout here: the caller bounds the whole acquisition) + TLS handshake.
    pub async fn open(addr: SocketAddr, tls: Option<&Tls>) -> Result<Conn, NcError> {
        let tcp = TcpStream::connect_addr(addr)
            .await
            .map_err(|source| NcError::Connect { addr, source })?;
        // Requests are one small write each; Nagle would only delay them.
        let _ = tcp.set_nodelay(true);
        let Some(t) = tls else {
            return Ok(Conn::Plain(tcp));
        };
        let tls = ClientConnection::new(t.config.clone(), t.server_name.clone())
            .map_err(|e| NcError::Tls(e.to_string()))?;
        let mut c = TlsConn { tcp, tls };
        c.handshake()
            .await
            .map_err(|e| NcError::Tls(format!("handshake with {addr}: {e}")))?;
        Ok(Conn::Tls(Box::new(c)))
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(t) => &t.tcp,
        }
    }

    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Conn::Plain(s) => tcp_write_all(s, data).await,
            Conn::Tls(t) => t.write_all(data).await,
        }
    }

    /// Append at least one byte to `buf`; `Ok(0)` = the server closed.
    pub async fn read_some(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => crate::net::io::read_some(s, buf, READ_CHUNK).await,
            Conn::Tls(t) => t.read_some(buf).await,
        }
    }

    /// True if the server has neither closed nor sent anything since the last exchange
    /// (a TLS close_notify or any stray byte also disqualifies the connection).
    pub fn is_idle_and_open(&self) -> bool {
        if let Conn::Tls(t) = self {
            if t.tls.wants_write() {
                return false;
            }
        }
        crate::net::io::is_idle_and_open(self.tcp())
    }
}

impl TlsConn {
    async fn handshake(&mut self) -> io::Result<()> {
        while self.tls.is_handshaking() {
            self.flush().await?;
            if self.tls.wants_read() && self.read_tls().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection during the TLS handshake",
                ));
            }
        }
        self.flush().await
    }

    /// Send every pending TLS record.
    async fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut Sock(&self.tcp)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.tcp.writable(false).await?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Read TLS records from the socket and process them; `Ok(0)` = TCP EOF.
    async fn read_tls(&mut self) -> io::Result<usize> {
        loop {
            match self.tls.read_tls(&mut Sock(&self.tcp)) {
                Ok(n) => {
                    let processed = self.tls.process_new_packets();
                    // Alerts the failure produced still go out (best effort).
                    let _ = self.flush_now();
                    processed.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.tcp.readable(false).await?,
                Err(e) => return Err(e),
            }
        }
    }

    /// One nonblocking attempt to send pending records (alerts after an error).
    fn flush_now(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            self.tls.write_tls(&mut Sock(&self.tcp))?;
        }
        Ok(())
    }

    async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.tls.writer().write(data)?;
            data = &data[n..];
            self.flush().await?;
        }
        Ok(())
    }

    async fn read_some(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let mut chunk = [0u8; READ_CHUNK];
        let mut eof = false;
        loop {
            match self.tls.reader().read(&mut chunk) {
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                // TCP EOF seen and still nothing to read: a close (never spin).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && eof => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // On TCP EOF the next reader() call reports close_notify (Ok(0)) or a
                    // truncation (UnexpectedEof).
                    eof = self.read_tls().await? == 0;
                }
                // EOF without close_notify: reported as a close; a framed body that is cut
                // short is still caught by the caller (Content-Length / chunked framing).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
        }
    }
}
