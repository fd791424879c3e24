//! Readiness + nonblocking syscalls on monoio TCP streams.
//!
//! Budget: one readiness wait and one `recv`/`send` per call; no allocation (but for
//! [`discard_until_eof`], on a closing connection).

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::runtime::time::{limit, timed};

use monoio::net::{TcpStream, UnixStream};

/// A socket whose readiness we can await (strict: `relaxed = false`, so a wait after our own
/// EAGAIN does not return until the socket is really ready on either driver).
pub trait Readiness: AsRawFd {
    fn wait_readable(&self) -> impl Future<Output = io::Result<()>>;
    fn wait_writable(&self) -> impl Future<Output = io::Result<()>>;
}

impl Readiness for TcpStream {
    fn wait_readable(&self) -> impl Future<Output = io::Result<()>> {
        self.readable(false)
    }
    fn wait_writable(&self) -> impl Future<Output = io::Result<()>> {
        self.writable(false)
    }
}

impl Readiness for UnixStream {
    fn wait_readable(&self) -> impl Future<Output = io::Result<()>> {
        self.readable(false)
    }
    fn wait_writable(&self) -> impl Future<Output = io::Result<()>> {
        self.writable(false)
    }
}

/// Put the socket in O_NONBLOCK mode. Needed for `splice(2)`, which honours only the file's
/// flag on the socket side; harmless for our own `recv`/`send` calls (MSG_DONTWAIT anyway).
pub fn set_nonblocking(s: &impl AsRawFd) -> io::Result<()> {
    let fd = s.as_raw_fd();
    // SAFETY: fcntl on a valid, owned fd with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK != 0 {
        return Ok(());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One nonblocking `recv` into `buf`; `Ok(None)` = would block.
pub fn try_recv(s: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    retry_nonblocking(|| {
        // SAFETY: buf is a valid writable slice of buf.len() bytes.
        unsafe {
            libc::recv(
                s.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        }
    })
}

/// One nonblocking `send`; `Ok(None)` = would block. Never raises SIGPIPE.
pub fn try_send(s: &impl AsRawFd, data: &[u8]) -> io::Result<Option<usize>> {
    retry_nonblocking(|| {
        // SAFETY: data is a valid readable slice of data.len() bytes.
        unsafe {
            libc::send(
                s.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        }
    })
}

/// Run a nonblocking syscall returning a byte count: retried on EINTR, `Ok(None)` on
/// EAGAIN, the OS error otherwise. The one place that classifies these results.
#[inline]
pub fn retry_nonblocking(mut call: impl FnMut() -> isize) -> io::Result<Option<usize>> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::WouldBlock => return Ok(None),
            io::ErrorKind::Interrupted => continue,
            _ => return Err(err),
        }
    }
}

/// One nonblocking `recv` appended to `buf`, into its spare capacity (grown to at least
/// `min_spare` first; nothing is zero-filled). `Ok(None)` = would block, `Ok(Some(0))` = EOF.
pub fn try_recv_spare(
    s: &impl AsRawFd,
    buf: &mut Vec<u8>,
    min_spare: usize,
) -> io::Result<Option<usize>> {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let len = buf.len();
    let spare = buf.capacity() - len;
    // SAFETY: recv writes into the uninitialised tail; len grows only by what it wrote.
    let tail = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().add(len), spare) };
    let got = try_recv(s, tail)?;
    if let Some(n) = got {
        // SAFETY: recv initialised n bytes of the tail.
        unsafe { buf.set_len(len + n) };
    }
    Ok(got)
}

/// Most slots [`try_recv_slots`] reads into at once.
const MAX_RECV_SLOTS: usize = 8;

/// One nonblocking scattering `recvmsg` into `slots` (the first [`MAX_RECV_SLOTS`]), filled
/// in order; `Ok(None)` = would block. The slots may be uninitialised: the kernel only
/// writes them, and the count says how many bytes it wrote.
pub fn try_recv_slots(
    s: &impl AsRawFd,
    slots: &mut [&mut [std::mem::MaybeUninit<u8>]],
) -> io::Result<Option<usize>> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_RECV_SLOTS];
    let used = slots.len().min(MAX_RECV_SLOTS);
    for (v, slot) in iov.iter_mut().zip(slots.iter_mut()) {
        v.iov_base = slot.as_mut_ptr().cast();
        v.iov_len = slot.len();
    }
    // SAFETY: a zeroed msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = used;
    retry_nonblocking(|| {
        // SAFETY: the iovecs cover live, writable slots that outlive the call.
        unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) }
    })
}

/// Read at least one byte into the spare capacity of `buf` (grown to `min_spare` if
/// needed). `Ok(0)` = peer closed its write side.
pub async fn read_some<S: Readiness>(
    s: &S,
    buf: &mut Vec<u8>,
    min_spare: usize,
) -> io::Result<usize> {
    loop {
        if let Some(n) = try_recv_spare(s, buf, min_spare)? {
            return Ok(n);
        }
        s.wait_readable().await?;
    }
}

/// Write all of `data`.
pub async fn write_all<S: Readiness>(s: &S, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match try_send(s, data)? {
            Some(0) => return Err(io::ErrorKind::WriteZero.into()),
            Some(n) => data = &data[n..],
            None => s.wait_writable().await?,
        }
    }
    Ok(())
}

/// Write all of `first` then all of `second`, gathered into one `sendmsg` while both have
/// bytes left: a response head and the body bytes read with it leave in one segment (one
/// wakeup of the receiver instead of two).
pub async fn write_all2<S: Readiness>(
    s: &S,
    mut first: &[u8],
    mut second: &[u8],
) -> io::Result<()> {
    while !first.is_empty() && !second.is_empty() {
        match try_send2(s, first, second)? {
            Some(0) => return Err(io::ErrorKind::WriteZero.into()),
            Some(n) if n < first.len() => first = &first[n..],
            Some(n) => {
                second = &second[n - first.len()..];
                first = &[];
            }
            None => s.wait_writable().await?,
        }
    }
    write_all(s, if first.is_empty() { second } else { first }).await
}

/// One nonblocking two-part `sendmsg`; `Ok(None)` = would block. Never raises SIGPIPE.
fn try_send2(s: &impl AsRawFd, first: &[u8], second: &[u8]) -> io::Result<Option<usize>> {
    try_sendv(s, &[io::IoSlice::new(first), io::IoSlice::new(second)])
}

/// Most slices one `sendmsg` takes (Linux UIO_MAXIOV); later ones wait for the next call.
const MAX_IOVECS: usize = 1024;

/// One nonblocking gathered `sendmsg` of `bufs` (the first [`MAX_IOVECS`] of them);
/// `Ok(None)` = would block. Never raises SIGPIPE.
pub fn try_sendv(s: &impl AsRawFd, bufs: &[io::IoSlice<'_>]) -> io::Result<Option<usize>> {
    let bufs = &bufs[..bufs.len().min(MAX_IOVECS)];
    // SAFETY: a zeroed msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is ABI-compatible with iovec on Unix (std guarantees it).
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len();
    retry_nonblocking(|| {
        // SAFETY: msg points at iovecs over live slices; sendmsg only reads them.
        unsafe { libc::sendmsg(s.as_raw_fd(), &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) }
    })
}

/// Like [`read_some`], but waits for readiness before the first `recv`: for reads that
/// almost always find nothing yet (an upstream's answer right after the request went out,
/// a keep-alive client's next request right after its response), saving the EAGAIN call.
pub async fn read_some_after_wait<S: Readiness>(
    s: &S,
    buf: &mut Vec<u8>,
    min_spare: usize,
) -> io::Result<usize> {
    s.wait_readable().await?;
    read_some(s, buf, min_spare).await
}

/// Half-close our write side (FIN to the peer).
pub fn shutdown_write(s: &TcpStream) {
    // SAFETY: shutdown on a valid fd; errors (already closed) are irrelevant here.
    unsafe { libc::shutdown(s.as_raw_fd(), libc::SHUT_WR) };
}

/// After our last write and FIN: read and discard what the peer still sends until its FIN,
/// an error, a gap of `idle`, or `total` in all. Closing with unread bytes makes the kernel
/// answer with RST, which destroys what we sent and the peer has not read yet: a client (or
/// nginx) still sending a body we answered early (413, 403, 400) would see the connection
/// reset instead of our answer. Boxed by callers on per-connection futures: it is rare and
/// holds a buffer.
pub async fn discard_until_eof(s: &TcpStream, idle: Duration, total: Duration) {
    let drain = async {
        let mut buf = vec![0u8; DISCARD_BUF_BYTES];
        loop {
            match try_recv(s, &mut buf) {
                Ok(Some(0)) | Err(_) => return,
                Ok(Some(_)) => {}
                Ok(None) => {
                    if timed(idle, s.readable(false)).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let _ = limit(total, drain).await;
}

/// Read size while discarding a closing peer's bytes.
const DISCARD_BUF_BYTES: usize = 16 * 1024;

/// Close with RST instead of FIN (HAProxy `silent-drop` best effort): SO_LINGER {1, 0}.
/// Any socket (monoio's or std's); callers that only try their best ignore the error.
pub fn set_linger_zero(s: &impl AsRawFd) -> io::Result<()> {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd and a properly sized linger struct.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// True if the peer has neither closed nor sent unsolicited bytes: a one-byte
/// `recv(MSG_PEEK|MSG_DONTWAIT)` that would block. Used before reusing pooled connections.
pub fn is_idle_and_open(s: &impl AsRawFd) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: one-byte peek into a stack buffer on a valid fd.
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

/// A socket leaving this worker for another one: a duplicate of its fd. Dropping this
/// worker's `TcpStream` afterwards closes only its own fd (and leaves this driver).
pub fn dup_for_handover(tcp: &TcpStream) -> io::Result<OwnedFd> {
    // SAFETY: the fd is open for as long as `tcp` lives, which outlasts this borrow.
    let borrowed = unsafe { BorrowedFd::borrow_raw(tcp.as_raw_fd()) };
    borrowed.try_clone_to_owned()
}

/// The receiving side of [`dup_for_handover`]: the socket, registered with this worker's
/// driver.
pub fn adopt_socket(fd: OwnedFd) -> io::Result<TcpStream> {
    TcpStream::from_std(std::net::TcpStream::from(fd))
}
