//! What a panic takes down.
//!
//! monoio polls tasks without `catch_unwind` (its harness leaves that out for speed), so a
//! panic in any task unwinds through the runtime and ends the worker thread. Left alone,
//! one bug hit by one request would silently kill a worker and every connection on it,
//! while the process, and its health from the outside, looked alive.
//!
//! - Connection tasks are spawned with [`spawn_conn`]: a panic ends that connection only
//!   (its future is dropped, which closes its sockets) and is logged at error. Their state
//!   is their own; what they share with the worker sits behind `RefCell`s that unwinding
//!   releases.
//! - A panic anywhere else (accept loops, the FRP server, the state bus, cache fills) means
//!   worker state may be half-updated: the process exits with status 1, as HaRP's start
//!   script does when a supervised process dies (harp-compat §6.5), so the container's
//!   restart policy starts a clean one ([`supervise`]).

use std::any::Any;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};

use tracing::error;

/// Spawn one connection's task on the current worker; a panic inside it closes that
/// connection and is logged, the worker goes on. `what` names the task in the log; the
/// task's output, if any, is dropped.
pub fn spawn_conn<F>(what: &'static str, fut: F) -> monoio::task::JoinHandle<()>
where
    F: Future + 'static,
{
    monoio::spawn(Contained { what, fut })
}

/// A future whose panics end it instead of unwinding into the runtime.
struct Contained<F> {
    what: &'static str,
    fut: F,
}

impl<F: Future> Future for Contained<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let what = self.what;
        // SAFETY: `fut` is structurally pinned: it is never moved out of `self`, and
        // `Contained` has no Drop impl or Unpin impl of its own.
        let fut = unsafe { self.map_unchecked_mut(|c| &mut c.fut) };
        match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(poll) => poll.map(drop),
            Err(payload) => {
                // Unwinding already dropped what the task held across the panicking poll;
                // Ready lets monoio drop the rest of it.
                error!(
                    task = what,
                    "a {what} task panicked and was closed; the worker goes on: {}",
                    panic_message(&*payload)
                );
                Poll::Ready(())
            }
        }
    }
}

/// The text a panic was raised with (`panic!("...")` gives `&str` or `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

/// How a worker thread's run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum WorkerEnd {
    /// The worker's future returned (it serves until the process exits, so this is only
    /// a failure to start).
    Returned,
    /// A panic escaped every contained task and unwound through the runtime.
    Panicked(String),
}

/// Run a worker's whole life (`run` builds its runtime and blocks on it), reporting a panic
/// that reached the runtime instead of letting it end the thread silently.
pub fn supervise(run: impl FnOnce()) -> WorkerEnd {
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(()) => WorkerEnd::Returned,
        Err(payload) => WorkerEnd::Panicked(panic_message(&*payload).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    use monoio::io::AsyncReadRent;
    use monoio::net::{TcpListener, TcpStream};

    /// A panicking connection task closes its own socket and nothing else: the peer sees
    /// EOF, a sibling task on the same worker finishes, the runtime keeps running.
    #[test]
    fn a_panicking_connection_closes_only_itself() {
        crate::runtime::on_both_drivers(|| async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let mut peer = TcpStream::connect(addr).await.unwrap();
            let (conn, _) = listener.accept().await.unwrap();
            let sibling_done = Rc::new(Cell::new(false));
            let done = sibling_done.clone();
            let sibling = spawn_conn("sibling", async move {
                monoio::time::sleep(std::time::Duration::from_millis(20)).await;
                done.set(true);
            });
            spawn_conn("test", async move {
                let _held = conn;
                monoio::time::sleep(std::time::Duration::from_millis(5)).await;
                panic!("injected fault");
            });
            let (n, _) = peer.read(vec![0u8; 16]).await;
            assert_eq!(n.unwrap(), 0, "the panicking task's socket was closed");
            sibling.await;
            assert!(sibling_done.get(), "the other task on the worker finished");
        });
    }

    #[test]
    fn a_panic_that_reaches_the_runtime_is_reported() {
        assert_eq!(supervise(|| {}), WorkerEnd::Returned);
        let end = supervise(|| panic!("escaped {}", 42));
        assert_eq!(end, WorkerEnd::Panicked("escaped 42".into()));
    }
}
