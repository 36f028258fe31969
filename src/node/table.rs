//! The node's peer table: the sans-IO [`Endpoint`] behind the table's lock, holding each peer's
//! shared state. The rules (session cap, reclaiming, key binding, crossed connections) are the
//! endpoint's; this is the glue.
//!
//! Lock order: the table, then a peer. Messages take only their peer's lock; the table is
//! taken once or twice per connection (admission, attachment) and by the node's queries.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::peer::PeerInner;
use super::{NodeShared, clock};
use crate::proto::Session;
use crate::proto::endpoint::{Endpoint, EndpointConfig, Entry, Usage};

/// Shortest time between two reclaiming scans of a full table (see
/// [`EndpointConfig::reclaim_interval`]).
const RECLAIM_INTERVAL: Duration = Duration::from_secs(1);

/// The node's table.
pub(crate) type PeerTable = Endpoint<Arc<PeerInner>>;

pub(crate) fn new_table(local_name: &str, max_sessions: usize, names_pinned: bool) -> PeerTable {
    Endpoint::new(EndpointConfig {
        local_name: local_name.to_owned(),
        max_sessions,
        reclaim_interval: RECLAIM_INTERVAL,
        names_pinned,
    })
}

impl Entry for Arc<PeerInner> {
    fn usage(&self) -> Usage {
        usage(self, &self.lock())
    }
}

/// What `peer` holds, read under its lock (`core`). An event waiting in the queue counts as a
/// handle: taking it makes one.
pub(crate) fn usage(peer: &PeerInner, core: &super::peer::PeerCore) -> Usage {
    let queued = peer.pending_events.load(Ordering::Acquire) != 0;
    let handles = peer.handles().saturating_add(usize::from(queued));
    let handed_back = core.losses.as_ref().map_or(0, |l| l.handed_back.len());
    core.record.usage(&core.session, handles, handed_back)
}

impl NodeShared {
    pub(crate) fn table(&self) -> std::sync::MutexGuard<'_, PeerTable> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops a peer entry that a connection created but never used: no session, nothing queued,
    /// no connection, and no handle held outside the node. Failed handshakes leave nothing behind.
    pub(crate) fn forget_if_unused(&self, peer: &PeerInner) {
        self.table().forget_if_unused(&peer.name);
    }

    /// The peer named `name`, created (with an empty session) if unknown and the session cap
    /// allows.
    pub(crate) fn peer_entry(&self, name: &str) -> Option<Arc<PeerInner>> {
        let now = clock::now();
        let mut table = self.table();
        let peer = table.admit(name, now, || {
            let peer = PeerInner::new(
                name.to_owned(),
                Session::new(now, self.incarnation, self.config.protocol)
                    .with_inbox_budget(&self.memory.inbox),
            );
            let mut core = peer.lock();
            core.closed = self.closing.is_cancelled();
            core.memory = Some(self.memory.clone());
            drop(core);
            peer
        });
        peer.ok().cloned()
    }
}
