//! A nonblocking pipe used as the kernel-side buffer for `splice(2)`, plus the two splice
//! moves (socket -> pipe, pipe -> socket).
//!
//! The pipe tracks how many bytes sit in it (`held`), so a caller can tell whether dropping
//! or reusing it would lose data. Budget: 2 fds and up to `cap` bytes of page cache while
//! data sits in it (pages are allocated only while bytes are held; the slot array,
//! 40 bytes per 4 KiB of `cap`, is allocated at creation).
//!
//! SIGPIPE: `splice` into a socket whose peer is gone raises SIGPIPE (the kernel does not
//! add MSG_NOSIGNAL). Rust binaries ignore SIGPIPE by default, so it surfaces as `EPIPE`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// What one socket -> pipe splice did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Moved this many (> 0) bytes into the pipe.
    Moved(usize),
    /// The socket reached EOF (peer sent FIN) and nothing was moved.
    Eof,
    /// Nothing to read now (or the pipe has no free slot): wait for readiness.
    WouldBlock,
}

/// A pipe pair in O_NONBLOCK mode, grown with F_SETPIPE_SZ where the system allows it.
#[derive(Debug)]
pub struct Pipe {
    rd: OwnedFd,
    wr: OwnedFd,
    cap: usize,
    held: usize,
}

impl Pipe {
    /// Create a pipe and try to grow it to `want` bytes, capped at /proc/sys/fs/pipe-max-size;
    /// keeps the kernel default (64 KiB) when growing is refused (EPERM above the user's
    /// pipe-user-pages-soft).
    pub fn new(want: usize) -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: fds is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let cap = grow(wr.as_raw_fd(), want)?;
        Ok(Pipe {
            rd,
            wr,
            cap,
            held: 0,
        })
    }

    /// Nominal capacity in bytes (F_GETPIPE_SZ).
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Bytes currently sitting in the pipe.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Free bytes by count (slots may run out earlier: a splice can then move less).
    pub fn space(&self) -> usize {
        self.cap - self.held
    }

    /// Splice up to `max` bytes from socket `from` into the pipe. Never moves more than
    /// `max`: callers rely on this to leave a keep-alive request's successor in the socket.
    pub fn fill(&mut self, from: RawFd, max: usize) -> io::Result<Fill> {
        let max = max.min(self.space());
        if max == 0 {
            return Ok(Fill::WouldBlock);
        }
        let flags = libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE;
        match splice(from, self.wr.as_raw_fd(), max, flags)? {
            Some(0) => Ok(Fill::Eof),
            Some(n) => {
                self.held += n;
                Ok(Fill::Moved(n))
            }
            None => Ok(Fill::WouldBlock),
        }
    }

    /// Splice held bytes into socket `to`; `Ok(None)` = the socket is not writable now.
    /// `more`: more bytes will follow soon (SPLICE_F_MORE, i.e. MSG_MORE on the last page):
    /// pass it only when the source is known to have more ready, or a stalled source would
    /// leave a partial segment corked.
    pub fn drain(&mut self, to: RawFd, more: bool) -> io::Result<Option<usize>> {
        if self.held == 0 {
            return Ok(Some(0));
        }
        let mut flags = libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE;
        if more {
            flags |= libc::SPLICE_F_MORE;
        }
        match splice(self.rd.as_raw_fd(), to, self.held, flags)? {
            Some(0) => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "splice from a non-empty pipe moved 0 bytes",
            )),
            Some(n) => {
                self.held -= n;
                Ok(Some(n))
            }
            None => Ok(None),
        }
    }
}

/// F_SETPIPE_SZ to `want` capped at pipe-max-size (root could exceed it; we do not), else
/// keep the kernel default; returns the resulting size.
fn grow(fd: RawFd, want: usize) -> io::Result<usize> {
    let limit = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(want);
    if let Ok(arg) = libc::c_int::try_from(want.min(limit)) {
        // SAFETY: fcntl on a valid pipe fd with an integer argument. Failure (EPERM above
        // the user's pipe-user-pages-soft) is fine: the pipe keeps its default size.
        unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, arg) };
    }
    // SAFETY: as above.
    let got = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
    if got <= 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(got as usize)
}

/// One `splice(2)` without offsets; `Ok(None)` = EAGAIN.
fn splice(from: RawFd, to: RawFd, len: usize, flags: libc::c_uint) -> io::Result<Option<usize>> {
    crate::net::io::retry_nonblocking(|| {
        // SAFETY: both fds are valid for the call; null offsets mean "use the file position"
        // (required for pipes and sockets).
        unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                flags,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_requested_size_or_falls_back() {
        let p = Pipe::new(1 << 20).unwrap();
        // 1 MiB when pipe-max-size allows it; otherwise at least the 4 KiB minimum.
        assert!(p.cap() >= 4096 && p.cap() <= 1 << 20, "cap {}", p.cap());
        assert_eq!(p.held(), 0);
        let small = Pipe::new(4096).unwrap();
        assert_eq!(small.cap(), 4096);
    }

    #[test]
    fn oversized_request_falls_back_instead_of_failing() {
        // Far above pipe-max-size: must yield a usable pipe no bigger than the limit.
        let limit: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let p = Pipe::new(1 << 30).unwrap();
        assert!(p.cap() >= 4096 && p.cap() <= limit, "cap {}", p.cap());
    }
}
