//! The expiry watcher: while a peer has no connection, something must fire its session's
//! timers (expiry hands unacknowledged messages back). For peers we dial, the redial loop's
//! backoff waits do it; for the rest, the task of the connection that ended stays on to watch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::NodeShared;
use super::attach::apply_events;
use super::driver::sleep_until;
use super::peer::PeerInner;

/// Waits while the peer has no connection, firing the session's timers (expiry) on time.
/// Returns when a connection attaches, when `until` passes, or at shutdown.
///
/// With `until` = `None` this is the peer's expiry watcher, run by the task of the connection
/// that just ended: at most one per peer (later ones return at once). It keeps watching while
/// the application may still queue messages (a push wakes it), and stops once the peer holds
/// nothing and nobody else refers to it.
pub(crate) async fn idle(shared: &NodeShared, peer: &Arc<PeerInner>, until: Option<Instant>) {
    let _watch = match until {
        Some(_) => None,
        None => match WatchGuard::claim(peer) {
            Some(guard) => Some(guard),
            None => return, // another task watches this peer
        },
    };
    loop {
        let (wake, timeout) = {
            let mut core = peer.lock();
            if core.session.link_id().is_some() {
                return;
            }
            let now = Instant::now();
            if core.session.poll_timeout().is_some_and(|t| t <= now) {
                let _ = core.session.handle_timeout(now);
                apply_events(shared, peer, &mut core);
            }
            (core.wake.clone(), core.session.poll_timeout())
        };
        let next = match (timeout, until) {
            (Some(t), Some(u)) => Some(t.min(u)),
            (None, None) => {
                // Nothing to expire. Once the peer holds nothing and nobody but this watcher
                // and the connection task that runs it (and the peer table) refers to it, no
                // message can be queued any more: stop, so the entry can be reclaimed.
                // Otherwise look again now and then.
                if super::table::holds_nothing(peer) && Arc::strong_count(peer) <= 3 {
                    return;
                }
                Some(Instant::now() + WATCH_RECHECK)
            }
            (t, u) => t.or(u),
        };
        if until.is_some_and(|u| u <= Instant::now()) {
            return;
        }
        tokio::select! {
            _ = shared.closing.cancelled() => return,
            _ = wake.notified() => {}
            _ = sleep_until(next.map(tokio::time::Instant::from_std)) => {}
        }
    }
}

/// How often an expiry watcher with nothing to expire checks whether it is still needed.
const WATCH_RECHECK: Duration = Duration::from_secs(60);

/// The one expiry watcher of a peer; released on drop.
struct WatchGuard(Arc<PeerInner>);

impl WatchGuard {
    fn claim(peer: &Arc<PeerInner>) -> Option<WatchGuard> {
        let mut core = peer.lock();
        if core.watched {
            return None;
        }
        core.watched = true;
        Some(WatchGuard(peer.clone()))
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.lock().watched = false;
    }
}
