//! Per-thread pools of pipes and copy buffers, lent out only while bytes flow.
//!
//! A forward or a tunnel burst takes a pipe (or buffer) when it starts moving bytes and gives
//! it back when it is done, so idle connections and idle tunnels hold none. A pipe dropped
//! while it still holds bytes (error, timeout, cancelled future) is closed instead of pooled:
//! its bytes belong to a dead transfer and must never reach another connection.
//!
//! Caps: at most [`MAX_POOLED_PIPES`] idle pipes (2 fds each) and [`MAX_POOLED_BUFS`] idle
//! buffers per thread; beyond that, returned ones are freed.

use std::cell::RefCell;
use std::io;

use super::pipe::Pipe;

/// Idle pipes kept per thread.
pub const MAX_POOLED_PIPES: usize = 8;
/// Idle copy buffers kept per thread.
pub const MAX_POOLED_BUFS: usize = 8;

thread_local! {
    /// (requested size, pipe): keyed by the request, since the kernel may round or refuse it.
    static PIPES: RefCell<Vec<(usize, Pipe)>> = const { RefCell::new(Vec::new()) };
    static BUFS: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A pipe lent by this thread's pool.
pub struct PipeLease {
    want: usize,
    pipe: Option<Pipe>,
}

impl PipeLease {
    /// A pooled pipe created for `want` bytes, or a new one.
    pub fn take(want: usize) -> io::Result<PipeLease> {
        let pooled = PIPES.with(|p| {
            let mut pool = p.borrow_mut();
            let i = pool.iter().position(|(w, _)| *w == want)?;
            Some(pool.swap_remove(i).1)
        });
        let pipe = match pooled {
            Some(pipe) => pipe,
            None => Pipe::new(want)?,
        };
        Ok(PipeLease {
            want,
            pipe: Some(pipe),
        })
    }

    pub fn pipe(&mut self) -> &mut Pipe {
        // invariant: `pipe` is only emptied in Drop.
        self.pipe.as_mut().expect("pipe lease used after drop")
    }
}

impl Drop for PipeLease {
    fn drop(&mut self) {
        let Some(pipe) = self.pipe.take() else { return };
        if pipe.held() > 0 {
            return; // bytes of a dead transfer: close the pipe with them
        }
        // try_with: during thread teardown the pool may be gone; then just close.
        let _ = PIPES.try_with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < MAX_POOLED_PIPES {
                pool.push((self.want, pipe));
            }
        });
    }
}

/// A copy buffer lent by this thread's pool (contents are garbage; always reusable).
pub struct BufLease(Box<[u8]>);

impl BufLease {
    pub fn take(len: usize) -> BufLease {
        let pooled = BUFS.with(|b| {
            let mut pool = b.borrow_mut();
            let i = pool.iter().position(|buf| buf.len() == len)?;
            Some(pool.swap_remove(i))
        });
        BufLease(pooled.unwrap_or_else(|| vec![0; len].into_boxed_slice()))
    }

    pub fn buf(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl Drop for BufLease {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        let _ = BUFS.try_with(|b| {
            let mut pool = b.borrow_mut();
            if pool.len() < MAX_POOLED_BUFS {
                pool.push(buf);
            }
        });
    }
}

/// Idle pipes / buffers in this thread's pools (tests and diagnostics).
pub fn pooled() -> (usize, usize) {
    (
        PIPES.with(|p| p.borrow().len()),
        BUFS.with(|b| b.borrow().len()),
    )
}
