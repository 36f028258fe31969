//! Statistics: `Peer::stats` and `Node::stats` after a transfer, with and without node-wide
//! accounting, and handshake refusals counted by reason on both sides.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Checker, eventually, listening_node, send_stream, spawn_reader, within};
use networkio::{ConnectionState, Node, TrustPolicy};

const N: u64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_shows_in_peer_and_node_stats_on_both_sides() {
    let server = listening_node("server").await;
    let client = Node::builder("client").start().await.unwrap();
    let checker = Arc::new(Mutex::new(Checker::default()));
    let mut read = spawn_reader(&server, checker.clone());
    let to_server = client.connect(server.local_addrs()[0]).await.unwrap();
    within(
        "the transfer",
        send_stream(to_server.clone(), "client".into(), N, 16, checker.clone()),
    )
    .await;
    within("all read", read.wait_for(|n| *n == N))
        .await
        .unwrap();
    checker.lock().unwrap().assert_exactly_once_in_order();

    let sent = to_server.stats();
    assert_eq!(sent.state, ConnectionState::Connected);
    assert_eq!(sent.counters.messages_sent, N);
    assert_eq!(sent.counters.messages_acked, N);
    assert_eq!(sent.counters.bytes_acked, sent.counters.bytes_sent);
    assert!(sent.counters.messages_transmitted >= N);
    assert_eq!(sent.counters.retransmitted, 0, "no connection broke");
    assert_eq!((sent.unacked_len, sent.in_flight), (0, 0));
    assert!(sent.rtt.is_some(), "a message was timed");
    assert!(sent.bytes_written > sent.counters.bytes_sent);
    assert_eq!(sent.last_disconnect, None);
    assert_ne!(sent.session_id, 0);

    let at_server = server.peer("client").unwrap();
    let received = at_server.stats();
    assert_eq!(
        received.session_id, sent.session_id,
        "both sides name one session"
    );
    assert_eq!(received.counters.messages_received, N);
    assert_eq!(received.counters.bytes_received, sent.counters.bytes_sent);
    assert_eq!(received.counters.duplicates_dropped, 0);
    assert!(received.bytes_read > received.counters.bytes_received);

    let client_stats = client.stats();
    assert_eq!(client_stats.counters, sent.counters);
    assert_eq!(client_stats.connections_established, 1);
    assert_eq!(client_stats.reconnects, 0);
    assert_eq!((client_stats.peers, client_stats.peers_connected), (1, 1));
    assert!(client_stats.bytes_written >= sent.bytes_written);
    let server_stats = server.stats();
    assert_eq!(server_stats.counters.messages_received, N);
    assert_eq!(server_stats.inbox_len, 0, "all read");
    assert_eq!(server_stats.refused.total(), 0);

    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_metrics_the_node_keeps_no_totals_but_peers_count_all_the_same() {
    let server = Node::builder("server")
        .listen("127.0.0.1:0")
        .metrics(false)
        .start()
        .await
        .unwrap();
    let client = Node::builder("client")
        .metrics(false)
        .start()
        .await
        .unwrap();
    let peer = client.connect(server.local_addrs()[0]).await.unwrap();
    let receipt = peer.send(&"one").await.unwrap().into_owned();
    within("delivery", receipt.delivered()).await.unwrap();
    assert_eq!(peer.stats().counters.messages_acked, 1);
    let stats = client.stats();
    assert_eq!(stats.counters.messages_acked, 0);
    assert_eq!(stats.connections_established, 0);
    assert_eq!(stats.peers, 1, "queues are summed all the same");
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_by_reason_on_both_sides() {
    // A session cap of one: the second peer is refused as busy.
    let server = Node::builder("server")
        .listen("127.0.0.1:0")
        .max_sessions(1)
        .start()
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let first = Node::builder("first").start().await.unwrap();
    first.connect(addr).await.unwrap();
    let second = Node::builder("second").start().await.unwrap();
    assert!(within("the refusal", second.connect(addr)).await.is_err());
    // The dialer counts before its `connect` fails; the listener once it has said goodbye.
    assert_eq!(second.stats().refused.by_peer, 1);
    eventually("the listener to count the refusal", || {
        server.stats().refused.session_limit == 1
    })
    .await;

    // An allowlist naming nobody: refused as not allowlisted.
    let path = std::env::temp_dir().join(format!(
        "networkio-observability-{}.trust",
        std::process::id()
    ));
    std::fs::write(&path, "# nobody\n").unwrap();
    let strict = Node::builder("strict")
        .listen("127.0.0.1:0")
        .trust(TrustPolicy::allowlist_file(&path).unwrap())
        .start()
        .await
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    let stranger = Node::builder("stranger")
        .reconnect_backoff(Duration::from_millis(5), Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    assert!(
        within("the refusal", stranger.connect(strict.local_addrs()[0]))
            .await
            .is_err()
    );
    eventually("the listener to count the refusal", || {
        strict.stats().refused.not_allowlisted == 1
    })
    .await;
    let refused = strict.stats().refused;
    assert_eq!(refused.total(), 1);
    assert!(
        refused
            .iter()
            .any(|(reason, n)| reason == "not_allowlisted" && n == 1)
    );
    for node in [server, first, second, strict, stranger] {
        node.shutdown().await;
    }
}
