//! The node's peer table: finding or creating a peer's entry under the session cap, and
//! dropping entries that hold nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::NodeShared;
use super::peer::PeerInner;
use crate::proto::Session;

/// Whether a peer entry carries nothing worth keeping: no session, no connection, nothing queued
/// either way, nothing handed back waiting for the application.
pub(crate) fn holds_nothing(peer: &PeerInner) -> bool {
    let core = peer.lock();
    core.session.peer_incarnation() == 0
        && core.session.link_id().is_none()
        && core.session.unacked_len() == 0
        && core.session.inbox_len() == 0
        && core.handed_back.is_empty()
}

impl NodeShared {
    /// Drops a peer entry that a connection created but never used: no session, nothing queued,
    /// no connection, and no handle held outside the node. Failed handshakes leave nothing behind.
    pub(crate) fn forget_if_unused(&self, peer: &Arc<PeerInner>) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        // Two references: the map's and the caller's.
        if Arc::strong_count(peer) <= 2 && holds_nothing(peer) {
            peers.remove(&peer.name);
        }
    }

    /// The peer named `name`, created (with an empty session) if unknown and the session cap
    /// allows.
    pub(crate) fn peer_entry(&self, name: &str) -> Option<Arc<PeerInner>> {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if !peers.contains_key(name) && peers.len() >= self.config.max_sessions {
            // Full: make room from entries whose sessions ended (expired, lost) and that nobody
            // holds a handle to. The scan visits every entry, so strangers knocking at the cap
            // get it at most once a second; the rest are refused.
            let now = Instant::now();
            let mut last = self.last_reclaim.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(1)) {
                return None;
            }
            *last = Some(now);
            drop(last);
            peers.retain(|_, peer| Arc::strong_count(peer) > 1 || !holds_nothing(peer));
            if peers.len() >= self.config.max_sessions {
                return None;
            }
        }
        let peer = peers
            .entry(name.to_owned())
            .or_insert_with(|| {
                let peer = PeerInner::new(
                    name.to_owned(),
                    Session::new(Instant::now(), self.incarnation, self.config.protocol),
                );
                peer.lock().closed = self.closing.is_cancelled();
                peer
            })
            .clone();
        Some(peer)
    }
}
