//! Export through the `metrics` facade: a node's [`NodeStats`] recorded under stable names,
//! labelled by node name only.
//!
//! Nothing on the path of a message calls into the facade: counting is plain fields and
//! relaxed atomics (see `stats`), and a snapshot is recorded here periodically (every
//! [`NodeConfig::metrics_interval`](super::NodeConfig::metrics_interval)), at shutdown, and
//! whenever the application calls [`Node::publish_metrics`](crate::Node::publish_metrics) (an
//! exporter's scrape handler can, to serve exact figures). Counters are recorded as absolute
//! values, so publishing twice counts nothing twice.
//!
//! Per-peer labels are deliberately absent: a node may hold 10,000 peers, and a label per peer
//! would make as many series per metric. Per-peer figures are in [`Peer::stats`](crate::Peer::stats).

use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use super::stats::NodeStats;

/// Counters: name, unit, help, and how to read it from a snapshot.
type CounterDef = (&'static str, Unit, &'static str, fn(&NodeStats) -> u64);

const COUNTERS: &[CounterDef] = &[
    (
        "networkio_messages_sent_total",
        Unit::Count,
        "Messages the application queued",
        |s| s.counters.messages_sent,
    ),
    (
        "networkio_sent_bytes_total",
        Unit::Bytes,
        "Payload bytes the application queued",
        |s| s.counters.bytes_sent,
    ),
    (
        "networkio_messages_transmitted_total",
        Unit::Count,
        "DATA frames written, retransmissions included",
        |s| s.counters.messages_transmitted,
    ),
    (
        "networkio_transmitted_bytes_total",
        Unit::Bytes,
        "Payload bytes of DATA frames written",
        |s| s.counters.bytes_transmitted,
    ),
    (
        "networkio_messages_retransmitted_total",
        Unit::Count,
        "DATA frames written again on a new connection",
        |s| s.counters.retransmitted,
    ),
    (
        "networkio_messages_acked_total",
        Unit::Count,
        "Messages acknowledged by peers",
        |s| s.counters.messages_acked,
    ),
    (
        "networkio_acked_bytes_total",
        Unit::Bytes,
        "Payload bytes acknowledged by peers",
        |s| s.counters.bytes_acked,
    ),
    (
        "networkio_messages_received_total",
        Unit::Count,
        "New messages accepted into inboxes",
        |s| s.counters.messages_received,
    ),
    (
        "networkio_received_bytes_total",
        Unit::Bytes,
        "Payload bytes of new messages accepted",
        |s| s.counters.bytes_received,
    ),
    (
        "networkio_duplicates_dropped_total",
        Unit::Count,
        "DATA frames dropped as already received",
        |s| s.counters.duplicates_dropped,
    ),
    (
        "networkio_messages_handed_back_total",
        Unit::Count,
        "Unacknowledged messages handed back when a session ended",
        |s| s.counters.messages_handed_back,
    ),
    (
        "networkio_sessions_lost_total",
        Unit::Count,
        "Sessions that ended (peer restarted, forgot, shut down, or expiry)",
        |s| s.counters.sessions_lost,
    ),
    (
        "networkio_connections_established_total",
        Unit::Count,
        "Connections that established a session",
        |s| s.connections_established,
    ),
    (
        "networkio_reconnects_total",
        Unit::Count,
        "Connections established for a peer after its first",
        |s| s.reconnects,
    ),
    (
        "networkio_read_bytes_total",
        Unit::Bytes,
        "Bytes of frames read from established connections",
        |s| s.bytes_read,
    ),
    (
        "networkio_written_bytes_total",
        Unit::Bytes,
        "Bytes of frames written to established connections",
        |s| s.bytes_written,
    ),
];

/// Gauges: name, unit, help, and how to read it from a snapshot.
type GaugeDef = (&'static str, Unit, &'static str, fn(&NodeStats) -> f64);

const GAUGES: &[GaugeDef] = &[
    ("networkio_peers", Unit::Count, "Peers held", |s| {
        s.peers as f64
    }),
    (
        "networkio_peers_connected",
        Unit::Count,
        "Peers with an established connection",
        |s| s.peers_connected as f64,
    ),
    (
        "networkio_connections",
        Unit::Count,
        "Live TCP connections",
        |s| s.connections as f64,
    ),
    (
        "networkio_pending_handshakes",
        Unit::Count,
        "Accepted connections still in their handshake",
        |s| s.pending_handshakes as f64,
    ),
    (
        "networkio_inbox_messages",
        Unit::Count,
        "Received messages waiting to be read",
        |s| s.inbox_len as f64,
    ),
    (
        "networkio_inbox_bytes",
        Unit::Bytes,
        "Payload bytes waiting to be read",
        |s| s.inbox_bytes as f64,
    ),
    (
        "networkio_unacked_messages",
        Unit::Count,
        "Sent messages not yet acknowledged (queued or in flight)",
        |s| s.unacked_len as f64,
    ),
    (
        "networkio_unacked_bytes",
        Unit::Bytes,
        "Payload bytes not yet acknowledged",
        |s| s.unacked_bytes as f64,
    ),
    (
        "networkio_in_flight_messages",
        Unit::Count,
        "Messages transmitted on current connections and not yet acknowledged",
        |s| s.in_flight as f64,
    ),
];

/// The counter of handshake refusals, labelled `reason` (see `HandshakeRefusals::iter`).
const REFUSED: &str = "networkio_handshakes_refused_total";

/// Every metric name the node records (the documentation must list each).
#[cfg(test)]
fn names() -> impl Iterator<Item = &'static str> {
    COUNTERS
        .iter()
        .map(|c| c.0)
        .chain(GAUGES.iter().map(|g| g.0))
        .chain([REFUSED])
}

/// Records `stats` of the node called `node` with the installed recorder (a no-op without
/// one).
pub(crate) fn record(node: &str, stats: &NodeStats) {
    for &(name, unit, help, read) in COUNTERS {
        describe_counter!(name, unit, help);
        counter!(name, "node" => node.to_owned()).absolute(read(stats));
    }
    for &(name, unit, help, read) in GAUGES {
        describe_gauge!(name, unit, help);
        gauge!(name, "node" => node.to_owned()).set(read(stats));
    }
    describe_counter!(
        REFUSED,
        Unit::Count,
        "Connections that ended before their session was established, by reason"
    );
    for (reason, n) in stats.refused.iter() {
        counter!(REFUSED, "node" => node.to_owned(), "reason" => reason).absolute(n);
    }
}

/// Default of [`NodeConfig::metrics_interval`](super::NodeConfig::metrics_interval).
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    #[test]
    fn the_readme_and_the_crate_docs_list_every_metric() {
        let readme = include_str!("../../README.md");
        let crate_docs = include_str!("../lib.rs");
        for name in super::names() {
            let quoted = format!("`{name}`");
            assert!(readme.contains(&quoted), "README.md does not list {name}");
            assert!(
                crate_docs.contains(&quoted),
                "the crate docs do not list {name}"
            );
        }
    }
}
