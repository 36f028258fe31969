//! The glue between a peer's sans-IO session and endpoint record and the node: attaching a
//! connection (by the endpoint's rules) and turning session events into node events, receipt
//! updates and wake-ups.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;

use super::events::Kind;
use super::peer::{ConnectionState, PeerCore, PeerInner};
use super::receipt::Ended;
use super::stats::NodeCounters;
use super::{NodeShared, clock};
use crate::proto::endpoint::{AttachRefusal, LinkState, NewLink, Origin};
use crate::proto::session::LinkId;
use crate::proto::{PeerHello, SessionEvent};
use crate::security::PublicKey;
use crate::security::Security;

/// Attaches the connection to the peer's session by the endpoint's rules (key binding, crossed
/// connections; see [`Endpoint::attach`](crate::proto::endpoint::Endpoint::attach)), taking the
/// table's lock, then the peer's. Returns the link and the notifier that wakes this
/// connection's driver; the replaced connection's driver is woken to close.
pub(crate) fn attach(
    shared: &NodeShared,
    peer: &Arc<PeerInner>,
    hello: &PeerHello,
    key: Option<PublicKey>,
    origin: Origin,
    deadline: Instant,
) -> Result<(LinkId, Arc<Notify>), AttachRefusal> {
    let table = shared.table();
    let mut core = peer.lock();
    let core = &mut *core;
    let new = NewLink {
        hello,
        key,
        origin,
        deadline,
        nonce: rand::random::<u64>().max(1),
    };
    let attached = table.attach(&mut core.record, &mut core.session, new, clock::now())?;
    drop(table);
    if attached.ended_session {
        tracing::info!(
            node = %shared.name,
            peer = %hello.name,
            "another key claims the name of a session without a connection: ended it"
        );
    }
    let wake = Arc::new(Notify::new());
    let previous = std::mem::replace(&mut core.wake, wake.clone());
    sync_state(core);
    // The replaced connection's driver (or an idle watcher) wakes, sees it lost the link, ends.
    previous.notify_one();
    apply_events(shared, peer, core);
    Ok((attached.link, wake))
}

/// Sets the state the application sees from the endpoint's record of the peer. (Once the node
/// is closing, a peer without a connection is closed; one with a connection still lingers.)
pub(crate) fn sync_state(core: &mut PeerCore) {
    core.state = match core.record.state() {
        LinkState::Connecting => ConnectionState::Connecting,
        LinkState::Connected => ConnectionState::Connected,
        LinkState::Disconnected if core.closed => ConnectionState::Closed,
        LinkState::Disconnected => ConnectionState::Disconnected,
    };
}

/// Turns session events into node events, receipt updates and wake-ups. Called with the peer
/// locked, after every session call. Returns whether the link was established.
pub(crate) fn apply_events(
    shared: &NodeShared,
    peer: &Arc<PeerInner>,
    core: &mut PeerCore,
) -> bool {
    let mut established = false;
    while let Some(event) = core.session.poll_event() {
        match event {
            SessionEvent::Established { resumed } => {
                established = true;
                // The session now belongs to the key of the connection that established it.
                // Only now, with the session established, do known peers pin the name (in
                // memory at once; the file is written by the policy's own thread).
                let bound = core.record.established();
                if let (Some(key), Security::Tls(configs)) = (&bound, &shared.security) {
                    configs.trust.record(&peer.name, key);
                }
                sync_state(core);
                core.resumed = resumed;
                core.established_count += 1;
                if shared.config.metrics {
                    let counters = &shared.counters;
                    NodeCounters::add(&counters.connections_established, 1);
                    NodeCounters::add(&counters.reconnects, u64::from(core.established_count > 1));
                }
                tracing::debug!(
                    session = format_args!("{:016x}", core.session.session_id()),
                    resumed,
                    "session established"
                );
                shared.events.push(peer, Kind::Connected);
            }
            SessionEvent::Received => {
                shared.events.push(peer, Kind::Message);
                core.recv.wake_all();
            }
            SessionEvent::Delivered { .. } => {
                publish_delivery(peer, core);
                shared.events.push(peer, Kind::Delivered);
                peer.space.notify_waiters();
            }
            SessionEvent::Lost {
                unacked,
                reason,
                acked,
                messages_before,
                read_through,
                ..
            } => {
                shared
                    .memory
                    .handed_back(unacked.iter().map(|m| m.len()).sum());
                core.record_ended(
                    Ended {
                        messages_before,
                        acked,
                        reason,
                    },
                    unacked,
                    shared.config.max_ended_sessions,
                );
                core.recv.lost(read_through, reason);
                // The session is over: its key no longer holds the name.
                core.record.session_lost();
                publish_delivery(peer, core);
                shared.events.push(peer, Kind::SessionLost);
                peer.space.notify_waiters();
            }
        }
    }
    if shared.config.metrics {
        // Once per session call (a batch of frames), never per message.
        let now = core.session.counters();
        shared.counters.publish(&mut core.published, now);
    }
    established
}

fn publish_delivery(peer: &PeerInner, core: &PeerCore) {
    let (messages_before, acked) = (core.session.messages_before(), core.session.acked());
    peer.delivery.send_modify(|s| {
        s.messages_before = messages_before;
        s.acked = acked;
    });
}
