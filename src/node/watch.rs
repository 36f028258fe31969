//! The expiry watcher: while a peer has no connection, something must fire its session's
//! timers (expiry hands unacknowledged messages back). For peers we dial, the redial loop's
//! backoff waits do it; for the rest, the task of the connection that ended stays on to watch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::attach::apply_events;
use super::peer::PeerInner;
use super::{NodeShared, clock, table};
use crate::proto::endpoint::Watch;

/// Waits while the peer has no connection, firing the session's timers (expiry) on time.
/// Returns when a connection attaches, when `until` passes, or at shutdown.
///
/// With `until` = `None` this is the peer's expiry watcher, run by the task of the connection
/// that just ended: at most one per peer (later ones return at once). It keeps watching while
/// the application may still queue messages (a push wakes it), and stops once the peer holds
/// nothing and no handle to it is left (the endpoint's `Watch` and `Usage` rules).
pub(crate) async fn idle(shared: &NodeShared, peer: &Arc<PeerInner>, until: Option<Instant>) {
    let _watch = match until {
        Some(_) => None,
        None => match WatchGuard::claim(peer) {
            Some(guard) => Some(guard),
            None => return, // another task watches this peer
        },
    };
    loop {
        let (wake, next) = {
            let mut core = peer.lock();
            let core = &mut *core;
            let now = clock::now();
            let watch = core.record.watch(&mut core.session, now);
            apply_events(shared, peer, core);
            let next = match (watch, until) {
                (Watch::Linked, _) => return,
                (Watch::Until(t), Some(u)) => t.min(u),
                (Watch::Until(t), None) => t,
                (Watch::NothingDue, Some(u)) => u,
                (Watch::NothingDue, None) => {
                    // Nobody can queue a message any more: stop, so the entry can be
                    // reclaimed. Otherwise look again now and then (a handle may go).
                    if table::usage(peer, core).unused() {
                        return;
                    }
                    now + WATCH_RECHECK
                }
            };
            if until.is_some_and(|u| u <= now) {
                return;
            }
            (core.wake.clone(), next)
        };
        tokio::select! {
            _ = shared.closing.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => {}
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
