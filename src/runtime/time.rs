//! Time limits on futures, with the timer armed only when the future has to wait.
//!
//! `monoio::time::timeout` builds its timer up front: every bounded future embeds a
//! 512-byte, 128-byte-aligned timer entry and reads the clock when it is created. On the
//! request path most bounded operations finish on their first poll (a write into a socket
//! with room, a read that finds the bytes already there), so a request carried kilobytes
//! of timers that were never armed, copied with every move of its future, plus a clock read
//! per operation. [`limit`] polls the future first and arms a heap-allocated timer the first
//! time it returns `Pending`: the wrapper adds 16 bytes, and the limit counts from that
//! first wait (microseconds after creation, as every caller awaits at once).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use monoio::time::Sleep;

/// The limit passed before the future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

pin_project_lite::pin_project! {
    /// [`limit`]'s future.
    #[must_use = "futures do nothing unless awaited"]
    pub struct Limited<F> {
        #[pin]
        fut: F,
        limit: Duration,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

/// `fut`, or [`Elapsed`] if it is still pending `limit` after it first had to wait.
pub fn limit<F: Future>(limit: Duration, fut: F) -> Limited<F> {
    Limited {
        fut,
        limit,
        timer: None,
    }
}

impl<F: Future> Future for Limited<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        let limit = *this.limit;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(monoio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// An I/O future bounded by `idle`; running out is `io::ErrorKind::TimedOut`.
pub async fn timed<T, F>(idle: Duration, fut: F) -> io::Result<T>
where
    F: Future<Output = io::Result<T>>,
{
    match limit(idle, fut).await {
        Ok(r) => r,
        Err(Elapsed) => Err(io::ErrorKind::TimedOut.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
    }

    #[test]
    fn the_timer_is_armed_only_when_the_future_waits() {
        rt().block_on(async {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let mut ready = std::pin::pin!(limit(Duration::from_millis(1), async { 7 }));
            assert_eq!(ready.as_mut().poll(&mut cx), Poll::Ready(Ok(7)));
            assert!(ready.as_ref().get_ref().timer.is_none());

            let never = std::future::pending::<()>();
            let mut waiting = std::pin::pin!(limit(Duration::from_secs(60), never));
            assert_eq!(waiting.as_mut().poll(&mut cx), Poll::Pending);
            assert!(waiting.as_ref().get_ref().timer.is_some());
        });
    }

    #[test]
    fn a_pending_future_runs_out_after_the_limit() {
        rt().block_on(async {
            let start = std::time::Instant::now();
            let never = std::future::pending::<()>();
            assert_eq!(limit(Duration::from_millis(30), never).await, Err(Elapsed));
            assert!(start.elapsed() >= Duration::from_millis(30));
        });
    }

    #[test]
    fn a_future_that_finishes_inside_the_limit_wins() {
        rt().block_on(async {
            let slow = async {
                monoio::time::sleep(Duration::from_millis(10)).await;
                "done"
            };
            assert_eq!(limit(Duration::from_secs(5), slow).await, Ok("done"));
        });
    }

    #[test]
    fn timed_maps_running_out_to_timed_out() {
        rt().block_on(async {
            let never = std::future::pending::<io::Result<()>>();
            let err = timed(Duration::from_millis(5), never).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        });
    }

    #[test]
    fn the_wrapper_stays_small() {
        let inner = std::future::ready(());
        let wrapped = limit(Duration::from_secs(1), std::future::ready(()));
        assert!(std::mem::size_of_val(&wrapped) <= std::mem::size_of_val(&inner) + 32);
    }
}
