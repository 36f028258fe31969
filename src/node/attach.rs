//! The glue between a peer's sans-IO session and the node: attaching a connection (the crossed-
//! connection rule, key binding) and turning session events into node events, receipt updates
//! and wake-ups.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;

use super::NodeShared;
use super::driver::Origin;
use super::events::Kind;
use super::peer::{ConnectionState, PeerCore, PeerInner};
use super::receipt::Ended;
use super::stats::NodeCounters;
use crate::proto::admission::{Binding, binding};
use crate::proto::session::{LinkId, LostReason};
use crate::proto::{PeerHello, SessionEvent};
use crate::security::{PublicKey, Security};

/// Why a connection was not attached to its peer's session.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Crossed connections: the other one is kept.
    Crossed,
    /// Another key holds the name; `live`: by a connection (else by a session that outlives
    /// its connections, where the policy pins names).
    NameInUse { live: bool },
}

/// Attaches the connection to the peer's session, unless the key binding refuses it (see
/// [`binding`]) or the crossed-connection rule keeps the existing connection. Under the open
/// policy, a session bound to another key and without a connection is ended first. Returns the
/// link and the notifier that wakes this connection's driver.
pub(crate) fn attach(
    shared: &NodeShared,
    peer: &Arc<PeerInner>,
    core: &mut PeerCore,
    hello: &PeerHello,
    key: Option<PublicKey>,
    origin: Origin,
    deadline: Instant,
) -> Result<(LinkId, Arc<Notify>), Refusal> {
    // A session id or a name is a selector, never a credential: only the key that created the
    // session may continue it.
    let live = core.session.link_id().is_some();
    let pins_names = match &shared.security {
        Security::Tls(configs) => configs.trust.pins_names(),
        Security::InsecurePlaintext => true,
    };
    match binding(core.peer_key.as_ref(), key.as_ref(), live, pins_names) {
        Binding::Attach => {}
        // The session is not touched.
        Binding::Refuse => return Err(Refusal::NameInUse { live }),
        Binding::EndThenAttach => {
            tracing::info!(
                node = %shared.name,
                peer = %hello.name,
                "another key claims the name of a session without a connection: ending it"
            );
            // Everything unacknowledged is handed back to the application now, before the new
            // key's link exists: none of it can be sent to that key.
            core.session.end(Instant::now(), LostReason::KeyChanged);
            apply_events(shared, peer, core);
        }
    }
    let dialed_by_us = origin == Origin::Dialed;
    if core.session.link_id().is_some() && core.link_dialed_by_us != dialed_by_us {
        // Crossed connections (each side dialed the other): both sides keep the connection
        // dialed by the node with the smaller name, so they agree without talking.
        let keep_ours = shared.name < hello.name;
        if core.link_dialed_by_us == keep_ours {
            return Err(Refusal::Crossed);
        }
    }
    core.pending_key = key;
    let wake = Arc::new(Notify::new());
    let previous = std::mem::replace(&mut core.wake, wake.clone());
    let link = core.session.begin_link(
        Instant::now(),
        hello,
        deadline,
        rand::random::<u64>().max(1),
    );
    core.link_dialed_by_us = dialed_by_us;
    core.state = ConnectionState::Connecting;
    // The replaced connection's driver (or an idle watcher) wakes, sees it lost the link, ends.
    previous.notify_one();
    apply_events(shared, peer, core);
    Ok((link, wake))
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
                core.peer_key = core.pending_key;
                core.state = ConnectionState::Connected;
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
                core.ended.push(Ended {
                    messages_before,
                    acked,
                    reason,
                });
                core.handed_back.extend(unacked);
                core.lost_reason = Some(reason);
                core.recv.lost(read_through, reason);
                // The session is over: its key no longer holds the name.
                core.peer_key = None;
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
