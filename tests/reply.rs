//! Replies within the session a message came from (issue #12, defect 6): a reply to a message
//! of one process never reaches the next process that takes the same name.
#![allow(clippy::unwrap_used)]

mod common;

use common::{listening_node, wait_session_lost, within};
use networkio::{Error, Fault, Identity, LostReason, Node, Peer, SessionRef};

/// A process named `p` with `identity` (a restarted process keeps its key file), connected to
/// `addr`; returns its node and its handle to the server.
async fn process_p(identity: &Identity, addr: std::net::SocketAddr) -> (Node, Peer) {
    let node = Node::builder("p")
        .identity(identity.clone())
        .start()
        .await
        .unwrap();
    let server = node.connect(addr).await.unwrap();
    (node, server)
}

/// Sends `text` from `to_server` and waits until it is in the server's inbox.
async fn deliver(to_server: &Peer, text: &str) {
    let receipt = to_server.send(&text).await.unwrap();
    within("delivery", receipt.delivered()).await.unwrap();
}

fn assert_session_ended(result: networkio::Result<networkio::Receipt<'_>>) {
    match result {
        Err(error @ Error::SessionEnded) => assert_eq!(error.fault(), Fault::Ended),
        other => panic!("expected Error::SessionEnded, got {other:?}"),
    }
}

#[tokio::test]
async fn a_reply_into_the_session_of_a_replaced_process_fails_and_reaches_nobody() {
    let server = listening_node("srv").await;
    let addr = server.local_addrs()[0];
    let mut events = server.events();
    let identity = Identity::generate().unwrap();

    let (first, to_server) = process_p(&identity, addr).await;
    deliver(&to_server, "p1-1").await;
    let peer = server.peer("p").unwrap();
    let (old, requests) = peer
        .read_with_session::<String>(usize::MAX)
        .unwrap()
        .unwrap();
    assert_eq!(requests, ["p1-1"]);
    assert_eq!(peer.session(), Some(old));

    // p's process is replaced by a new one under the same name (a new incarnation, so a new
    // session) before the server answers.
    first.abort().await;
    let (second, to_server) = process_p(&identity, addr).await;
    let (_, reason) = wait_session_lost(&mut events, "the old session to end").await;
    assert_eq!(reason, LostReason::PeerRestarted);

    // Every way of answering within the old session fails, with nothing queued.
    assert_session_ended(peer.send_in(&old, &"echo p1-1").await);
    assert_session_ended(peer.try_send_in(&old, &"echo p1-1"));
    assert_session_ended(peer.send_bytes_in(&old, &b"echo p1-1"[..]).await);
    assert_session_ended(peer.try_send_bytes_in(&old, &b"echo p1-1"[..]));
    assert_eq!(peer.stats().unacked_len, 0);

    // The new process hears only what was sent to it, and its messages are answered within
    // its own session.
    peer.send(&"hello p2").await.unwrap();
    let first_heard: String = within("the new process's first message", to_server.recv())
        .await
        .unwrap();
    assert_eq!(first_heard, "hello p2");
    deliver(&to_server, "p2-1").await;
    let (new, requests) = peer
        .read_with_session::<String>(usize::MAX)
        .unwrap()
        .unwrap();
    assert_eq!(requests, ["p2-1"]);
    assert_ne!(new, old);
    assert_eq!(new.generation(), old.generation() + 1);
    assert_eq!(new.id(), peer.stats().session_id);
    peer.send_in(&new, &"echo p2-1").await.unwrap();
    let echo: String = within("the echo", to_server.recv()).await.unwrap();
    assert_eq!(echo, "echo p2-1");
    second.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn messages_of_an_ended_session_are_read_with_that_session_before_the_next_ones() {
    let server = listening_node("srv").await;
    let addr = server.local_addrs()[0];
    let mut events = server.events();
    let identity = Identity::generate().unwrap();

    let (first, to_server) = process_p(&identity, addr).await;
    deliver(&to_server, "p1-1").await;
    deliver(&to_server, "p1-2").await;
    first.abort().await;
    let (second, to_server) = process_p(&identity, addr).await;
    wait_session_lost(&mut events, "the old session to end").await;
    deliver(&to_server, "p2-1").await;

    let peer = server.peer("p").unwrap();
    let current = peer.session().unwrap();
    // One session per batch, oldest first, however many were asked for.
    let (old, batch) = peer
        .read_with_session::<String>(usize::MAX)
        .unwrap()
        .unwrap();
    assert_eq!(batch, ["p1-1", "p1-2"]);
    assert_ne!(old, current);
    // As with `recv`, the loss is reported in its place, after the old session's messages.
    let lost = within("recv", peer.recv_with_session::<String>()).await;
    assert!(matches!(lost, Err(Error::SessionLost { .. })), "{lost:?}");
    let (session, message) = within("recv", peer.recv_with_session::<String>())
        .await
        .unwrap();
    assert_eq!((session, message.as_str()), (current, "p2-1"));
    assert!(peer.read_bytes_with_session(usize::MAX).is_none());

    assert_session_ended(peer.send_in(&old, &"echo p1-1").await);
    peer.send_in(&current, &"echo p2-1").await.unwrap();
    let echo: String = within("the echo", to_server.recv()).await.unwrap();
    assert_eq!(echo, "echo p2-1");
    second.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_reply_queued_before_the_session_ends_is_handed_back_not_sent_to_the_next_process() {
    let server = listening_node("srv").await;
    let addr = server.local_addrs()[0];
    let mut events = server.events();
    let identity = Identity::generate().unwrap();

    let (first, to_server) = process_p(&identity, addr).await;
    deliver(&to_server, "p1-1").await;
    let peer = server.peer("p").unwrap();
    let (old, _) = peer.read_bytes_with_session(usize::MAX).unwrap();
    // p dies before the reply is sent; the server does not know yet which process comes next,
    // so the reply is queued in the session it belongs to...
    first.abort().await;
    peer.send_in(&old, &"echo p1-1").await.unwrap();
    // ...and handed back when the next process turns out to be another session.
    let (second, to_server) = process_p(&identity, addr).await;
    let (unacked, _) = wait_session_lost(&mut events, "the old session to end").await;
    let handed_back: Vec<String> = unacked
        .iter()
        .map(|b| networkio::codec::decode(b).unwrap())
        .collect();
    assert_eq!(handed_back, ["echo p1-1"]);
    peer.send(&"hello p2").await.unwrap();
    let first_heard: String = within("the new process's first message", to_server.recv())
        .await
        .unwrap();
    assert_eq!(first_heard, "hello p2");
    second.shutdown().await;
    server.shutdown().await;
}

#[test]
fn the_blocking_api_replies_within_a_session_too() {
    use networkio::blocking;

    let server = Node::builder("srv")
        .listen("127.0.0.1:0")
        .start_blocking()
        .unwrap();
    let addr = server.local_addrs()[0];
    let identity = Identity::generate().unwrap();
    let start_p = || {
        let node = Node::builder("p")
            .identity(identity.clone())
            .start_blocking()
            .unwrap();
        let to_server = node.connect(addr).unwrap();
        (node, to_server)
    };
    let (first, to_server) = start_p();
    to_server.send(&"p1-1").unwrap().delivered().unwrap();
    let peer: blocking::Peer = server.peer("p").unwrap();
    let (old, request) = peer.recv_with_session::<String>().unwrap();
    assert_eq!(request, "p1-1");

    first.abort();
    let (second, to_server) = start_p();
    // The new process's session is established on both sides once its first message is in.
    to_server.send(&"p2-1").unwrap().delivered().unwrap();
    let refused = peer.send_in(&old, &"echo p1-1").unwrap_err();
    assert!(matches!(refused, Error::SessionEnded));
    assert!(matches!(
        peer.try_send_bytes_in(&old, &b"x"[..]),
        Err(Error::SessionEnded)
    ));
    let lost = peer.recv_with_session::<String>();
    assert!(matches!(lost, Err(Error::SessionLost { .. })), "{lost:?}");
    let (new, request): (SessionRef, String) = peer
        .recv_with_session_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    assert_eq!(request, "p2-1");
    peer.send_in(&new, &"echo p2-1").unwrap();
    let echo: String = to_server
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    assert_eq!(echo, "echo p2-1");
    second.shutdown();
    server.shutdown();
}
