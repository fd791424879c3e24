//! Forwarding pumps: move bytes between two plain TCP sockets without parsing them.
//!
//! STUB (helper "pump" owns this file): the real module implements readiness + nonblocking
//! `splice(2)` through a pipe grown with F_SETPIPE_SZ, and a big-buffer copy, and documents
//! the measurements that chose each. The API below is the contract `proxy` codes against.

use std::io;
use std::time::Duration;

use monoio::net::TcpStream;

use crate::config::PumpChoice;

/// Per-worker forwarding state (pipe or buffer), reused across connections.
pub struct Pump {
    choice: PumpChoice,
    buf: Vec<u8>,
}

impl Pump {
    pub fn new(choice: PumpChoice) -> io::Result<Pump> {
        Ok(Pump {
            choice,
            buf: vec![0; 256 * 1024],
        })
    }

    pub fn choice(&self) -> PumpChoice {
        self.choice
    }

    /// Move exactly `n` bytes from `from` to `to`. Each wait for readiness is bounded by
    /// `idle`; an early EOF is `UnexpectedEof`.
    pub async fn forward_exact(
        &mut self,
        from: &TcpStream,
        to: &TcpStream,
        mut n: u64,
        idle: Duration,
    ) -> io::Result<()> {
        while n > 0 {
            let want = n.min(self.buf.len() as u64) as usize;
            let got = loop {
                if let Some(k) = super::io::try_recv(from, &mut self.buf[..want])? {
                    break k;
                }
                timed(idle, from.readable(false)).await?;
            };
            if got == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            super::io::write_all(to, &self.buf[..got]).await?;
            n -= got as u64;
        }
        Ok(())
    }

    /// Move bytes until `from` reaches EOF; returns the count. Idle bound as above.
    pub async fn forward_to_eof(
        &mut self,
        from: &TcpStream,
        to: &TcpStream,
        idle: Duration,
    ) -> io::Result<u64> {
        let mut total = 0;
        loop {
            let got = loop {
                if let Some(k) = super::io::try_recv(from, &mut self.buf)? {
                    break k;
                }
                timed(idle, from.readable(false)).await?;
            };
            if got == 0 {
                return Ok(total);
            }
            super::io::write_all(to, &self.buf[..got]).await?;
            total += got as u64;
        }
    }
}

/// Bidirectional tunnel (after a 101 Upgrade): both directions until both sides closed.
/// `idle`: no byte in either direction for this long closes both (HP_TIMEOUT_TUNNEL).
/// `fin`: after one side half-closed, the other gets this long to finish (client-fin 30 s).
/// Holds no kernel worker thread while idle. Returns bytes (a->b, b->a).
pub async fn tunnel(
    a: &TcpStream,
    b: &TcpStream,
    idle: Duration,
    fin: Duration,
) -> io::Result<(u64, u64)> {
    let _ = (a, b, idle, fin);
    Err(io::Error::other("tunnel: not implemented yet"))
}

async fn timed<F: std::future::Future<Output = io::Result<()>>>(
    d: Duration,
    f: F,
) -> io::Result<()> {
    match monoio::time::timeout(d, f).await {
        Ok(r) => r,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}
