//! Node-wide memory bounds (issue #12, defect 4): all inboxes together stay within the node's
//! inbox budget however many peers flood it, and handed-back messages the application has not
//! taken make `send` wait instead of growing.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Checker, Msg, assert_waiting, eventually, wait_session_lost, within};
use networkio::{Error, Node, Peer};

const CLIENTS: usize = 10;
const EACH: u64 = 200;
/// The server's budget: a tenth of what the clients send, a quarter of what their inboxes
/// alone would let in.
const BUDGET: usize = 256 << 10;

async fn server() -> Node {
    Node::builder("server")
        .insecure_plaintext()
        .listen("127.0.0.1:0")
        .max_message_size(16 << 10)
        .inbox(1000, 1 << 20)
        .max_sessions(32)
        .inbox_budget(BUDGET)
        .start()
        .await
        .unwrap()
}

fn assert_within_budget(server: &Node) {
    let held = server.stats().inbox_bytes;
    assert!(
        held <= BUDGET,
        "the inboxes hold {held} bytes, budget {BUDGET}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_flooding_peers_never_exceed_the_node_inbox_budget() {
    let server = server().await;
    let addr = server.local_addrs()[0];
    let checker = Arc::new(Mutex::new(Checker::default()));
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let name = format!("c{i}");
        let node = Node::builder(name.as_str())
            .insecure_plaintext()
            .start()
            .await
            .unwrap();
        let peer = within("connect", node.connect(addr)).await.unwrap();
        for _ in 0..EACH {
            let msg = checker.lock().unwrap().next_message(&name, "server", 1000);
            peer.try_send(&msg).unwrap();
        }
        clients.push((node, peer));
    }
    let peers: Vec<Peer> = (0..CLIENTS)
        .map(|i| server.peer(&format!("c{i}")).unwrap())
        .collect();
    // The application does not read. Every peer gets something through (a flood starves
    // nobody), and every client ends up with nothing in flight: what it was granted arrived and
    // was acknowledged, the rest waits for credit.
    eventually("the flood to settle", || {
        assert_within_budget(&server);
        peers.iter().all(|p| p.pending() > 0)
            && clients.iter().all(|(_, p)| p.stats().in_flight == 0)
    })
    .await;
    assert_within_budget(&server);
    assert!(
        clients.iter().all(|(_, p)| p.stats().unacked_len > 0),
        "the budget holds every client back"
    );
    let read = |peer: &Peer| {
        let msgs: Vec<Msg> = peer.read_all().unwrap();
        checker.lock().unwrap().received_from(peer.name(), &msgs);
        msgs.len() as u64
    };
    // Reading one peer lets that peer deliver everything while the others still wait.
    let mut got = 0;
    eventually("c0 to deliver everything once read", || {
        assert_within_budget(&server);
        got += read(&peers[0]);
        got == EACH
    })
    .await;
    // Reading everyone delivers everything, exactly once and in order.
    eventually("everything to arrive once read", || {
        assert_within_budget(&server);
        for peer in &peers {
            read(peer);
        }
        checker.lock().unwrap().complete()
    })
    .await;
    checker.lock().unwrap().assert_exactly_once_in_order();
    for (node, _) in clients {
        node.shutdown().await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_back_bytes_beyond_the_bound_make_send_wait_until_taken() {
    let server = Node::builder("server")
        .insecure_plaintext()
        .listen("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let client = Node::builder("client")
        .insecure_plaintext()
        .max_handed_back_bytes(4096)
        .session_expiry(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let mut events = client.events();
    let peer = within("connect", client.connect(server.local_addrs()[0]))
        .await
        .unwrap();
    // The server dies: what the client queues now is handed back when the session expires.
    server.abort().await;
    for _ in 0..8 {
        peer.try_send_bytes(vec![7u8; 1024]).unwrap();
    }
    eventually("the session to expire", || {
        client.stats().handed_back_bytes == 8 * 1024
    })
    .await;
    // Over the bound: sending waits until the application takes what was handed back.
    assert!(matches!(
        peer.try_send_bytes(vec![1u8; 10]),
        Err(Error::Full)
    ));
    // Polled once before the loss is taken, so it is waiting (not merely late) when it is: a
    // spawned sender may first run after that, and pass without ever waiting.
    let send = peer.send_bytes(vec![2u8; 10]);
    tokio::pin!(send);
    assert_waiting(
        &mut send,
        "held back while handed-back bytes are over the bound",
    )
    .await;
    let (unacked, _) = wait_session_lost(&mut events, "the session loss").await;
    assert_eq!(unacked.len(), 8);
    assert_eq!(client.stats().handed_back_bytes, 0);
    within("the waiting send", send).await.unwrap();
    client.shutdown().await;
}

/// A reply (`send_in`) held back by handed-back bytes over the bound resumes once the
/// application takes them, like `send` does, even when nothing of its own is in flight (no
/// acknowledgement would wake it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_held_back_by_handed_back_bytes_resumes_once_they_are_taken() {
    let start = |name: &'static str| async move {
        Node::builder(name)
            .insecure_plaintext()
            .listen("127.0.0.1:0")
            .start()
            .await
            .unwrap()
    };
    let (gone, answering) = (start("gone").await, start("answering").await);
    let client = Node::builder("client")
        .insecure_plaintext()
        .max_handed_back_bytes(4096)
        .session_expiry(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let mut events = client.events();
    let lost = within("connect", client.connect(gone.local_addrs()[0]))
        .await
        .unwrap();
    let peer = within("connect", client.connect(answering.local_addrs()[0]))
        .await
        .unwrap();
    let session = peer.session().unwrap();
    gone.abort().await;
    for _ in 0..8 {
        lost.try_send_bytes(vec![7u8; 1024]).unwrap();
    }
    eventually("the session to expire", || {
        client.stats().handed_back_bytes == 8 * 1024
    })
    .await;
    assert!(matches!(
        peer.try_send_bytes_in(&session, vec![1u8; 10]),
        Err(Error::Full)
    ));
    // Polled once before the loss is taken, so it is waiting (not merely late) when it is.
    let reply = peer.send_bytes_in(&session, vec![2u8; 10]);
    tokio::pin!(reply);
    assert_waiting(
        &mut reply,
        "held back while handed-back bytes are over the bound",
    )
    .await;
    let (unacked, _) = wait_session_lost(&mut events, "the session loss").await;
    assert_eq!(unacked.len(), 8);
    assert_eq!(client.stats().handed_back_bytes, 0);
    within("the waiting reply", reply).await.unwrap();
    client.shutdown().await;
    answering.shutdown().await;
}
