//! Reconnection, resumption and session loss on real loopback sockets: half-open connections,
//! takeover by a newer connection, crossed dials, peer restart and shutdown (G2), expiry.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::raw::RawPeer;
use common::{listening_node, wait_event, wait_session_lost, within};
use networkio::proto::frame::{CloseCode, Frame, SessionOffer};
use networkio::{ConnectionState, Error, Event, Identity, LostReason, Node};
use networkio_chaos::{ChaosConfig, ChaosProxy};

const FRESH: SessionOffer = SessionOffer {
    session_id: 0,
    nonce: 0x5eed,
    next_expected: 1,
    window_messages: 1000,
    window_bytes: 1 << 20,
};

#[tokio::test]
async fn a_silent_peer_is_detected_by_heartbeats() {
    // The peer completes the handshake, then neither closes nor answers: half-open.
    // The hand-driven peer speaks the protocol without TLS.
    let node = Node::builder("server")
        .listen("127.0.0.1:0")
        .insecure_plaintext()
        .heartbeat(Duration::from_millis(50), Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let mut events = node.events();
    let mut raw = RawPeer::connect(node.local_addrs()[0]).await;
    raw.handshake("silent", 7, FRESH).await;
    // The node heartbeats the idle connection before it gives up on it.
    let mut pings = 0;
    while let Some(frame) = within("frames", raw.recv()).await {
        match frame {
            Frame::Ping => pings += 1,
            Frame::Close { code, .. } => {
                assert_eq!(code, CloseCode::IdleTimeout);
                break;
            }
            _ => {}
        }
    }
    assert!(pings >= 1, "heartbeats were sent");
    let ev = wait_event(&mut events, "Disconnected", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    let Event::Disconnected { reason, .. } = ev else {
        unreachable!()
    };
    assert!(reason.contains("no data"), "{reason}");
    node.shutdown().await;
}

#[tokio::test]
async fn a_newer_connection_takes_over_and_the_old_one_is_closed_with_a_reason() {
    // The hand-driven peer speaks the protocol without TLS.
    let node = Node::builder("server")
        .listen("127.0.0.1:0")
        .insecure_plaintext()
        .start()
        .await
        .unwrap();
    let addr = node.local_addrs()[0];
    let mut first = RawPeer::connect(addr).await;
    let (_, offer) = first.handshake("client", 42, FRESH).await;
    assert_eq!(offer.session_id, 0, "a new session");
    // Both sides derive the new session's id from the two nonces.
    let session_id = offer.nonce ^ FRESH.nonce;
    // Confirm, then deliver one message on the first connection.
    first
        .send(&Frame::Ack {
            up_to: 0,
            window_messages: 1000,
            window_bytes: 1 << 20,
        })
        .await;
    first
        .send(&Frame::Data {
            seq: 1,
            payload: networkio::codec::encode("one").unwrap(),
        })
        .await;
    let peer = within("peer", async {
        loop {
            if let Some(p) = node.peer("client").filter(|p| p.pending() == 1) {
                return p;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    // Same name, same incarnation, new connection: it resumes the session...
    let mut second = RawPeer::connect(addr).await;
    let (_, offer) = second
        .handshake(
            "client",
            42,
            SessionOffer {
                session_id,
                nonce: 0x5eed2,
                next_expected: 1,
                ..FRESH
            },
        )
        .await;
    assert_eq!(offer.session_id, session_id, "the node resumes the session");
    assert_eq!(
        offer.next_expected, 2,
        "and expects the message after the one it has"
    );
    // ...and the old connection is told why it was dropped.
    let close = within("CLOSE on the old connection", async {
        loop {
            match first.recv().await {
                Some(Frame::Close { code, .. }) => return Some(code),
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await;
    assert_eq!(close, Some(CloseCode::Replaced));
    assert_eq!(peer.read::<String>(1).unwrap(), ["one"]);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossed_dials_end_with_exactly_one_connection() {
    for round in 0..10 {
        let a = listening_node("node-a").await;
        let b = listening_node("node-b").await;
        let (ra, rb) = tokio::join!(a.connect(b.local_addrs()[0]), b.connect(a.local_addrs()[0]));
        let (pa, pb) = (ra.unwrap(), rb.unwrap());
        within("one connection each", async {
            loop {
                if a.connection_count() == 1
                    && b.connection_count() == 1
                    && pa.state() == ConnectionState::Connected
                    && pb.state() == ConnectionState::Connected
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        let (x, y) = tokio::join!(pa.send(&round), pb.send(&round));
        within("delivery a->b", x.unwrap().delivered())
            .await
            .unwrap();
        within("delivery b->a", y.unwrap().delivered())
            .await
            .unwrap();
        assert_eq!(
            b.peer("node-a").unwrap().read_all::<i32>().unwrap(),
            [round]
        );
        assert_eq!(
            a.peer("node-b").unwrap().read_all::<i32>().unwrap(),
            [round]
        );
        a.shutdown().await;
        b.shutdown().await;
    }
}

/// A server whose inbox fills after `inbox` messages and is never read: the rest stay
/// unacknowledged at the sender.
async fn stuck_server(name: &str, addr: &str, inbox: usize, identity: Identity) -> Node {
    Node::builder(name)
        .listen(addr)
        .identity(identity)
        .inbox(inbox, 1 << 20)
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_restarted_peer_is_reported_and_unacked_messages_are_handed_back() {
    const INBOX: usize = 10;
    const SENT: u32 = 25;
    // A restarted process keeps its key (from its key file): peers recognise it as the same
    // node in a new incarnation.
    let identity = Identity::generate().unwrap();
    let server = stuck_server("server", "127.0.0.1:0", INBOX, identity.clone()).await;
    let addr = server.local_addrs()[0];
    let client = Node::builder("client")
        .reconnect_backoff(Duration::from_millis(5), Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let mut events = client.events();
    let peer = client.connect(addr).await.unwrap();
    let mut receipts = Vec::new();
    for i in 0..SENT {
        receipts.push(peer.send(&i).await.unwrap());
    }
    wait_event(
        &mut events,
        "the inbox's worth to be acknowledged",
        |e| matches!(e, Event::Delivered { up_to, .. } if *up_to == INBOX as u64),
    )
    .await;
    // The server process "dies" (no goodbye) and a new one takes its place on the same port.
    server.abort().await;
    let restarted = Node::builder("server")
        .listen(addr.to_string())
        .identity(identity)
        .start()
        .await
        .unwrap();
    let (unacked, reason) = wait_session_lost(&mut events, "SessionLost").await;
    assert_eq!(reason, LostReason::PeerRestarted);
    let handed_back: Vec<u32> = unacked
        .iter()
        .map(|b| networkio::codec::decode(b).unwrap())
        .collect();
    assert_eq!(
        handed_back,
        (INBOX as u32..SENT).collect::<Vec<_>>(),
        "exactly the unacked, in order"
    );
    for (i, r) in receipts.iter().enumerate() {
        let result = within("receipt", r.delivered()).await;
        assert_eq!(
            r.seq(),
            i as u64 + 1,
            "a receipt keeps its number after the loss"
        );
        assert_eq!(r.is_delivered(), i < INBOX);
        if i < INBOX {
            result.unwrap();
        } else {
            assert!(matches!(
                result,
                Err(Error::SessionLost {
                    reason: LostReason::PeerRestarted
                })
            ));
        }
    }
    // The application resends them: they reach the new process, once, in order.
    let mut resent = Vec::new();
    for b in unacked {
        resent.push(peer.send_bytes(b).await.unwrap());
    }
    within("resent delivery", resent.last().unwrap().delivered())
        .await
        .unwrap();
    // Numbered afresh in the new session; the old receipts still tell the old story.
    let seqs: Vec<u64> = resent.iter().map(|r| r.seq()).collect();
    assert_eq!(seqs, (1..=(SENT as u64 - INBOX as u64)).collect::<Vec<_>>());
    assert!(resent.iter().all(|r| r.is_delivered()));
    assert!(!receipts[INBOX].is_delivered());
    let got: Vec<u32> = restarted.peer("client").unwrap().read_all().unwrap();
    assert_eq!(got, (INBOX as u32..SENT).collect::<Vec<_>>());
    client.shutdown().await;
    restarted.shutdown().await;
}

#[tokio::test]
async fn a_peer_shutdown_ends_the_session_and_hands_back_what_it_did_not_take() {
    let server = stuck_server("server", "127.0.0.1:0", 4, Identity::generate().unwrap()).await;
    let client = Node::builder("client").start().await.unwrap();
    let mut events = client.events();
    let peer = client.connect(server.local_addrs()[0]).await.unwrap();
    for i in 0..10u32 {
        peer.send(&i).await.unwrap();
    }
    wait_event(&mut events, "the inbox's worth to be acknowledged", |e| {
        matches!(e, Event::Delivered { up_to: 4, .. })
    })
    .await;
    let shutdown = {
        let server = server.clone();
        tokio::spawn(async move { server.shutdown().await })
    };
    let (unacked, reason) = wait_session_lost(&mut events, "SessionLost").await;
    assert_eq!(reason, LostReason::PeerShutdown);
    assert_eq!(unacked.len(), 6);
    within("server shutdown", shutdown).await.unwrap();
    client.shutdown().await;
}

#[tokio::test]
async fn a_session_expires_during_a_partition_and_a_new_one_starts_after() {
    let server = Node::builder("server")
        .listen("127.0.0.1:0")
        .session_expiry(Duration::from_millis(200))
        .start()
        .await
        .unwrap();
    let proxy = ChaosProxy::start(server.local_addrs()[0], ChaosConfig::default())
        .await
        .unwrap();
    let client = Node::builder("client")
        .session_expiry(Duration::from_millis(200))
        .reconnect_backoff(Duration::from_millis(5), Duration::from_millis(20))
        .start()
        .await
        .unwrap();
    let mut client_events = client.events();
    let mut server_events = server.events();
    let peer = client.connect(proxy.local_addr()).await.unwrap();
    within("delivery", peer.send(&1u8).await.unwrap().delivered())
        .await
        .unwrap();
    proxy.pause();
    // Queued during the partition: handed back when the session expires.
    let queued = peer.send(&2u8).await.unwrap();
    let (unacked, reason) = wait_session_lost(&mut client_events, "client SessionLost").await;
    assert_eq!(reason, LostReason::Expired);
    assert_eq!(unacked.len(), 1);
    assert!(matches!(
        within("receipt", queued.delivered()).await,
        Err(Error::SessionLost {
            reason: LostReason::Expired
        })
    ));
    wait_event(&mut server_events, "server SessionLost", |e| {
        matches!(
            e,
            Event::SessionLost {
                reason: LostReason::Expired,
                ..
            }
        )
    })
    .await;
    proxy.resume();
    wait_event(&mut client_events, "reconnection", |e| {
        matches!(e, Event::Connected { resumed: false, .. })
    })
    .await;
    within(
        "delivery in the new session",
        peer.send(&3u8).await.unwrap().delivered(),
    )
    .await
    .unwrap();
    let got: Vec<u8> = server.peer("client").unwrap().read_all().unwrap();
    assert_eq!(got, [1, 3]);
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn messages_queued_after_a_loss_expire_on_the_accepting_side_too() {
    // After the peer shut down, nothing connects any more: what the application queues for it
    // must still expire (SessionLost, failed receipts), not wait forever.
    let server = Node::builder("server")
        .listen("127.0.0.1:0")
        .session_expiry(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let mut events = server.events();
    let client = Node::builder("client").start().await.unwrap();
    client.connect(server.local_addrs()[0]).await.unwrap();
    let Event::Connected { peer, .. } = wait_event(&mut events, "Connected", |e| {
        matches!(e, Event::Connected { .. })
    })
    .await
    else {
        unreachable!()
    };
    client.shutdown().await;
    wait_event(&mut events, "SessionLost (peer shutdown)", |e| {
        matches!(
            e,
            Event::SessionLost {
                reason: LostReason::PeerShutdown,
                ..
            }
        )
    })
    .await;
    let receipt = peer.send(&"to a peer that is gone").await.unwrap();
    assert!(matches!(
        within("the receipt to fail", receipt.delivered()).await,
        Err(Error::SessionLost {
            reason: LostReason::Expired
        })
    ));
    let (unacked, reason) = wait_session_lost(&mut events, "SessionLost (expired)").await;
    assert_eq!(reason, LostReason::Expired);
    assert_eq!(unacked.len(), 1, "the queued message is handed back");
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_and_abort_do_not_wait_for_handshakes_in_progress() {
    for abort in [false, true] {
        let node = Node::builder("server")
            .listen("127.0.0.1:0")
            .handshake_timeout(Duration::from_secs(3600))
            .start()
            .await
            .unwrap();
        // Silent sockets stuck in their handshake, with an hour left on the deadline.
        let mut silent = Vec::new();
        for _ in 0..3 {
            silent.push(
                tokio::net::TcpStream::connect(node.local_addrs()[0])
                    .await
                    .unwrap(),
            );
        }
        common::eventually("the handshakes to start", || node.pending_handshakes() == 3).await;
        if abort {
            within("abort", node.abort()).await;
        } else {
            within("shutdown", node.shutdown()).await;
        }
    }
}

#[tokio::test]
async fn extreme_settings_are_refused_or_handled() {
    assert!(matches!(
        Node::builder("a").max_connections(usize::MAX).start().await,
        Err(Error::InvalidConfig(_))
    ));
    // "Linger as long as it takes" and "back off forever" are representable: no overflow.
    let node = Node::builder("a")
        .shutdown_linger(Duration::MAX)
        .reconnect_backoff(Duration::MAX, Duration::MAX)
        .session_expiry(Duration::MAX)
        .handshake_timeout(Duration::MAX)
        .start()
        .await
        .unwrap();
    within("shutdown", node.shutdown()).await;
}
