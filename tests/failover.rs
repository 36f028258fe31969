//! Dialing after a link failure: a redial that reaches another node (issue #12, defect 3), and a
//! link that goes silent (defect 8). Every wait is on an event or a condition, with a timeout;
//! the only timed thing is the length of the silent hole.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Checker, Msg, listening_node, spawn_reader, wait_event, within};
use networkio::proto::admission::RefusalReason;
use networkio::{Event, Node, NodeConfig, OwnedReceipt, Peer};
use networkio_chaos::{ChaosConfig, ChaosProxy};

/// Queues `n` checker messages from `from` to `peer` (without waiting for their delivery).
/// Returns the last one's receipt.
async fn queue(peer: &Peer, from: &str, n: u64, checker: &Arc<Mutex<Checker>>) -> OwnedReceipt {
    let mut last = None;
    for _ in 0..n {
        let msg: Msg = checker.lock().unwrap().next_message(from, peer.name(), 32);
        last = Some(peer.send(&msg).await.unwrap().into_owned());
    }
    last.unwrap()
}

/// Waits until every message the checker saw sent was read, then checks: none lost,
/// duplicated, reordered or misattributed.
async fn all_delivered(checker: &Arc<Mutex<Checker>>, mut read: tokio::sync::watch::Receiver<u64>) {
    within("every message read", async {
        while !checker.lock().unwrap().complete() {
            read.changed().await.unwrap();
        }
    })
    .await;
    checker.lock().unwrap().assert_exactly_once_in_order();
}

#[tokio::test]
async fn a_redial_refuses_another_node_at_the_address_and_resumes_with_its_peer() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let b = listening_node("b").await;
    let c = listening_node("c").await;
    let proxy = ChaosProxy::start(b.local_addrs()[0], ChaosConfig::default())
        .await
        .unwrap();
    let a = Node::builder("a")
        .reconnect_backoff(Duration::from_millis(5), Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let mut a_events = a.events();
    let mut c_events = c.events();
    let checker = Arc::new(Mutex::new(Checker::default()));
    let read = spawn_reader(&b, checker.clone());
    let peer = a.connect(proxy.local_addr()).await.unwrap();
    assert_eq!(peer.name(), "b");
    let first = queue(&peer, "a", 10, &checker).await;
    within("the first messages", first.delivered())
        .await
        .unwrap();

    // The address now leads to c, and the connection breaks.
    proxy.retarget(c.local_addrs()[0]);
    proxy.cut_all();
    let answered = wait_event(&mut a_events, "a redial reaching c", |e| match e {
        Event::Refused { .. } => true,
        Event::Connected { peer, .. } => peer.name() == "c",
        _ => false,
    })
    .await;
    match answered {
        Event::Refused { name, reason, .. } => {
            assert_eq!(name.as_deref(), Some("c"));
            assert_eq!(reason, RefusalReason::UnexpectedPeer);
        }
        other => panic!("c was attached in place of b: {other:?}"),
    }
    assert!(a.peer("c").is_none(), "a holds no session with c");
    // Queued meanwhile: for b, never for c.
    queue(&peer, "a", 10, &checker).await;
    assert!(a.stats().refused.unexpected_peer >= 1);

    // The address leads back to b: the dialer, still serving b, resumes its session.
    proxy.retarget(b.local_addrs()[0]);
    wait_event(
        &mut a_events,
        "a resuming with b",
        |e| matches!(e, Event::Connected { peer, resumed: true } if peer.name() == "b"),
    )
    .await;
    queue(&peer, "a", 10, &checker).await;
    all_delivered(&checker, read).await;
    assert_eq!(
        c.stats().counters.messages_received,
        0,
        "c received nothing"
    );
    while let Some(event) = c_events.try_recv() {
        assert!(
            !matches!(event, Event::Message { .. } | Event::Connected { .. }),
            "c established nothing with a: {event:?}"
        );
    }
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

/// A node whose links are suspected quickly and declared dead only after far longer than any
/// wait of these tests: recovery within the wait can only come from failing over.
fn patient(name: &str) -> networkio::NodeBuilder {
    let mut config = NodeConfig::default();
    config.protocol.heartbeat_interval = Duration::from_secs(60);
    config.protocol.idle_timeout = Duration::from_secs(300);
    config.protocol.suspect_floor = Duration::from_millis(300);
    config.reconnect_initial = Duration::from_millis(5);
    config.reconnect_max = Duration::from_millis(50);
    Node::builder(name).config(config)
}

/// Sends from `from` to `to` (one of them dials through a proxy), silences the link in the middle
/// of the flow for `hole`, and checks that the flow resumes over a fresh connection with every
/// message arriving once, in order.
async fn silent_hole(dialer_sends: bool) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let b = patient("b").listen("127.0.0.1:0").start().await.unwrap();
    let proxy = ChaosProxy::start(b.local_addrs()[0], ChaosConfig::default())
        .await
        .unwrap();
    let a = patient("a").start().await.unwrap();
    let to_b = a.connect(proxy.local_addr()).await.unwrap();
    let to_a = within("b's peer a", async {
        loop {
            if let Some(p) = b.peer("a") {
                return p;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let (sender, from, receiver) = if dialer_sends {
        (to_b, "a", &b)
    } else {
        (to_a, "b", &a)
    };
    let checker = Arc::new(Mutex::new(Checker::default()));
    let read = spawn_reader(receiver, checker.clone());
    let first = queue(&sender, from, 50, &checker).await;
    within("the first messages", first.delivered())
        .await
        .unwrap();

    proxy.silence();
    // In flight when the link went silent: lost on the old connection.
    queue(&sender, from, 50, &checker).await;
    tokio::time::sleep(Duration::from_secs(1)).await; // the hole
    proxy.resume();
    queue(&sender, from, 50, &checker).await;
    all_delivered(&checker, read).await;
    assert!(proxy.stats().accepted >= 2, "a fresh connection carried it");
    assert!(a.stats().reconnects >= 1 && b.stats().reconnects >= 1);
    assert_eq!(
        a.peer("b").unwrap().stats().generation,
        0,
        "the session resumed"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_silent_link_fails_over_to_a_fresh_connection_when_the_dialer_sends() {
    silent_hole(true).await;
}

#[tokio::test]
async fn a_silent_link_fails_over_to_a_fresh_connection_when_the_acceptor_sends() {
    silent_hole(false).await;
}

/// Failover attempts count against `max_connections` (review of issue #12): a node at its cap
/// whose only link turns suspect opens no socket beyond it while that link lives; only once the
/// idle timeout ends the link may a redial take its place (and that waits for the backoff,
/// far beyond this test).
#[tokio::test]
async fn failover_attempts_stay_within_max_connections() {
    let b = patient("b").listen("127.0.0.1:0").start().await.unwrap();
    let proxy = ChaosProxy::start(b.local_addrs()[0], ChaosConfig::default())
        .await
        .unwrap();
    let mut config = NodeConfig::default();
    config.protocol.heartbeat_interval = Duration::from_secs(1);
    config.protocol.idle_timeout = Duration::from_secs(2);
    config.protocol.suspect_floor = Duration::from_millis(300);
    config.reconnect_initial = Duration::from_secs(60);
    config.reconnect_max = Duration::from_secs(60);
    config.max_connections = 1;
    let a = Node::builder("a").config(config).start().await.unwrap();
    let mut a_events = a.events();
    let to_b = a.connect(proxy.local_addr()).await.unwrap();
    assert_eq!(a.connection_count(), 1);

    proxy.silence();
    // Never acknowledged: the link turns suspect after the floor, and stays suspect (racing
    // fresh connections every 250 ms) until the idle timeout ends it.
    let _unacknowledged = to_b.send(b"into the hole").await.unwrap();
    wait_event(&mut a_events, "the silent link ending", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    let stats = proxy.stats();
    assert_eq!(
        (stats.accepted, stats.refused),
        (1, 0),
        "a dialed beyond its connection cap while its link lived"
    );
    a.shutdown().await;
    b.shutdown().await;
}
