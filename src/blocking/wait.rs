//! Waiting for one of the node's futures on the caller's thread, with or without a deadline.
//!
//! The futures waited on here only watch the node's shared state (tokio's `Notify` and `watch`,
//! woken by the node's tasks on the background thread); none of them does I/O or needs a
//! runtime, so the caller's thread can poll them itself and sleep in between. That is cheaper
//! than a round trip through the background thread, and it works on any thread, including a
//! thread that is inside a tokio runtime:
//!
//! - Every poll runs [`unconstrained`]: tokio's cooperative budget belongs to the task the
//!   caller may be running in, and when it runs out tokio hands the wake-up to that task's
//!   scheduler, which cannot run while this thread sleeps here. Without this, a blocking call
//!   made from inside an async task would sleep forever after a hundred or so waits.
//! - `tokio::task::yield_now` hands its wake-up to the current scheduler too, and no
//!   `unconstrained` helps there: a future that may yield (the async sending calls) is waited
//!   on only where [`outside_runtime`] holds.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use tokio::task::coop::unconstrained;

/// Wakes the waiting thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    /// Wakes this thread.
    static WAKER: Waker = Waker::from(Arc::new(Unpark(thread::current())));
}

/// Whether this thread is outside any tokio runtime, so that no scheduler can take a wake-up
/// meant for [`block_on`]. (Also false on a runtime's `spawn_blocking` threads, which would be
/// safe: the answer errs on the careful side.)
pub(crate) fn outside_runtime() -> bool {
    tokio::runtime::Handle::try_current().is_err()
}

/// Polls `future` on this thread until it completes.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    match block_on_until(future, None) {
        Some(output) => output,
        // Without a deadline the loop only ends with the output.
        None => unreachable!("no deadline"),
    }
}

/// Polls `future` on this thread until it completes or `deadline` passes (`None`: never); the
/// future is dropped unfinished at the deadline.
pub(crate) fn block_on_until<F: Future>(future: F, deadline: Option<Instant>) -> Option<F::Output> {
    let mut future = pin!(unconstrained(future));
    // One waker per thread, made once: a blocking `send` waits here for every message.
    let waker = WAKER.with(Waker::clone);
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
        // A wake-up between the poll and here leaves the thread's token set, so the park
        // returns at once; a spurious return only costs one more poll.
        match deadline {
            None => thread::park(),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return None;
                }
                thread::park_timeout(left);
            }
        }
    }
}

/// The deadline `timeout` from now; `None` (no deadline) if it is too far to represent.
pub(crate) fn deadline_in(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_with_a_wake_from_another_thread() {
        let notify = Arc::new(tokio::sync::Notify::new());
        let waiter = notify.clone();
        let notified = waiter.notified();
        let wake = thread::spawn(move || notify.notify_waiters());
        block_on(notified);
        wake.join().expect("notifier");
    }

    #[test]
    fn gives_up_at_the_deadline() {
        let never = std::future::pending::<()>();
        let deadline = deadline_in(Duration::from_millis(10));
        assert_eq!(block_on_until(never, deadline), None);
        assert!(deadline.is_some_and(|d| Instant::now() >= d));
    }
}
