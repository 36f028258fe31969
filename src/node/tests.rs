//! The node's glue around the endpoint, driven step by step: connections are attached, carried
//! and ended by calling the driver's own functions in a chosen order, with the peer's session on
//! the other side kept in memory. Orders that real sockets produce only by chance (a link's end
//! reported after its replacement established) are thereby deterministic, and so is time: the
//! tests run on tokio's paused clock.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::attach::{apply_events, attach};
use super::driver::{End, end_link};
use super::peer::PeerInner;
use super::{ConnectionState, Event, Events, Node, clock, watch};
use crate::proto::endpoint::Origin;
use crate::proto::session::{LinkId, LostReason};
use crate::proto::{Config, LinkError, PeerHello, Session};

async fn node(name: &str) -> Node {
    Node::builder(name)
        .insecure_plaintext()
        .start()
        .await
        .unwrap()
}

fn hello(name: &str, incarnation: u64, config: &Config) -> PeerHello {
    PeerHello {
        name: name.to_owned(),
        incarnation,
        version: 1,
        max_message: config.window.max_message,
        idle_timeout: config.idle_timeout,
    }
}

/// The peer "p" as seen from across the wire: its session for our node, in memory.
struct Remote {
    session: Session,
    hello: PeerHello,
    nonce: u64,
}

impl Remote {
    fn new() -> Remote {
        let config = Config::default();
        Remote {
            session: Session::new(clock::now(), 0xbeef, config),
            hello: hello("p", 0xbeef, &config),
            nonce: 100,
        }
    }

    /// A new connection between `node` and the peer: attached on both sides, not yet carried.
    fn connect(&mut self, node: &Node, peer: &Arc<PeerInner>) -> LinkId {
        let shared = &node.shared;
        let now = clock::now();
        let deadline = now + Duration::from_secs(10);
        let (link, _wake) =
            attach(shared, peer, &self.hello, None, Origin::Accepted, deadline).unwrap();
        let ours = hello(&shared.name, shared.incarnation, &shared.config.protocol);
        self.nonce += 1;
        self.session.begin_link(now, &ours, deadline, self.nonce);
        link
    }

    /// Carries frames both ways until neither side has more to say, as the two drivers would.
    fn carry(&mut self, node: &Node, peer: &Arc<PeerInner>) {
        let now = clock::now();
        for _ in 0..16 {
            let mut core = peer.lock();
            let mut out = BytesMut::new();
            core.session.poll_transmit(now, &mut out, usize::MAX);
            let mut back = BytesMut::new();
            self.session.handle_input(now, &mut out).unwrap();
            self.session.poll_transmit(now, &mut back, usize::MAX);
            let quiet = back.is_empty() && out.is_empty();
            core.session.handle_input(now, &mut back).unwrap();
            apply_events(&node.shared, peer, &mut core);
            while self.session.poll_event().is_some() {}
            if quiet {
                return;
            }
        }
    }
}

/// The link fails as a broken connection makes it fail: the session detaches it inside
/// `handle_input`, under the peer's lock, and its driver reports the end afterwards.
fn break_link(peer: &PeerInner) {
    let mut core = peer.lock();
    let mut garbage = BytesMut::from(&[0xff; 8][..]);
    assert!(
        core.session
            .handle_input(clock::now(), &mut garbage)
            .is_err()
    );
}

fn link_error() -> End {
    End::Link(LinkError::IdleTimeout(Duration::from_secs(20)))
}

fn drain(events: &mut Events) -> Vec<Event> {
    std::iter::from_fn(|| events.try_recv()).collect()
}

/// Defect 1 of issue #12: the end of a replaced link, reported after the newer link attached
/// and established, used to set the peer `Disconnected` and queue a stray `Disconnected`.
#[tokio::test(start_paused = true)]
async fn a_replaced_links_late_end_leaves_the_peer_connected() {
    let node = node("n").await;
    let mut events = node.events();
    let peer = node.shared.peer_entry("p").unwrap();
    let handle = node.peer("p").unwrap();
    let mut remote = Remote::new();
    let old = remote.connect(&node, &peer);
    remote.carry(&node, &peer);
    assert_eq!(handle.state(), ConnectionState::Connected);
    assert!(matches!(drain(&mut events)[..], [Event::Connected { .. }]));

    break_link(&peer);
    // Before the old link's driver reports its end, the peer's next connection attaches...
    let new = remote.connect(&node, &peer);
    assert_ne!(new, old);
    end_link(&node.shared, &peer, &mut peer.lock(), old, &link_error());
    assert_eq!(handle.state(), ConnectionState::Connecting);
    // ... and even establishes.
    remote.carry(&node, &peer);
    assert_eq!(handle.state(), ConnectionState::Connected);
    assert!(matches!(
        drain(&mut events)[..],
        [Event::Connected { resumed: true, .. }]
    ));
    end_link(&node.shared, &peer, &mut peer.lock(), old, &link_error());
    assert_eq!(handle.state(), ConnectionState::Connected);
    assert!(drain(&mut events).is_empty(), "no stray Disconnected");
    assert!(handle.stats().last_disconnect.is_none());

    // The current link's end is a disconnection, reported once.
    break_link(&peer);
    end_link(&node.shared, &peer, &mut peer.lock(), new, &link_error());
    assert_eq!(handle.state(), ConnectionState::Disconnected);
    assert!(matches!(
        drain(&mut events)[..],
        [Event::Disconnected { .. }]
    ));
    node.abort().await;
}

/// One clock: the node reads tokio's, so a session's hour-long expiry passes on the paused
/// clock in no real time. (Read from `std`, the watcher would find the session never due.)
#[tokio::test(start_paused = true)]
async fn a_session_without_a_link_expires_on_the_paused_clock() {
    let node = node("n").await;
    let mut events = node.events();
    let peer = node.shared.peer_entry("p").unwrap();
    let handle = node.peer("p").unwrap();
    let mut remote = Remote::new();
    let link = remote.connect(&node, &peer);
    remote.carry(&node, &peer);
    drain(&mut events);
    handle
        .try_send_bytes(Bytes::from_static(b"never acknowledged"))
        .unwrap();
    break_link(&peer);
    end_link(&node.shared, &peer, &mut peer.lock(), link, &link_error());
    assert!(matches!(
        drain(&mut events)[..],
        [Event::Disconnected { .. }]
    ));

    let shared = node.shared.clone();
    let watched = peer.clone();
    tokio::spawn(async move { watch::idle(&shared, &watched, None).await });
    let expiry = node.shared.config.protocol.session_expiry;
    let wall = std::time::Instant::now();
    tokio::time::advance(expiry - Duration::from_secs(1)).await;
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    assert!(drain(&mut events).is_empty(), "expired early");
    tokio::time::advance(Duration::from_secs(1)).await;
    let mut lost = None;
    for _ in 0..64 {
        tokio::task::yield_now().await;
        if let Some(event) = events.try_recv() {
            lost = Some(event);
            break;
        }
    }
    match lost {
        Some(Event::SessionLost {
            unacked, reason, ..
        }) => {
            assert_eq!(reason, LostReason::Expired);
            assert_eq!(unacked, vec![Bytes::from_static(b"never acknowledged")]);
        }
        other => panic!("expected the session's expiry, got {other:?}"),
    }
    assert!(wall.elapsed() < Duration::from_secs(30), "waited real time");
    node.abort().await;
}

/// Liveness is the explicit handle count: a peer entry goes when it holds nothing and no
/// handle is left, whatever the node's own references.
#[tokio::test]
async fn an_entry_is_forgotten_only_without_handles() {
    let node = node("n").await;
    let peer = node.shared.peer_entry("p").unwrap();
    let extra_internal_reference = peer.clone();
    let handle = node.peer("p").unwrap();
    let copy = handle.clone();
    assert_eq!(peer.handles(), 2);
    node.shared.forget_if_unused(&peer);
    assert!(node.peer("p").is_some(), "handles keep it");
    drop(handle);
    drop(copy);
    assert_eq!(peer.handles(), 0);
    node.shared.forget_if_unused(&peer);
    assert!(
        node.peer("p").is_none(),
        "internal references do not keep it"
    );
    drop(extra_internal_reference);
    node.abort().await;
}

/// The driver's timers run on tokio's clock too: a peer that falls silent right after its
/// handshake is declared dead at the idle timeout of the paused clock, over a real socket, in
/// no real time.
#[tokio::test(start_paused = true)]
async fn a_silent_peer_times_out_on_the_paused_clock() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let node = Node::builder("n")
        .insecure_plaintext()
        .listen("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let mut events = node.events();
    let wall = std::time::Instant::now();
    // The peer, by hand: HELLO, then its SESSION offer, then nothing.
    let config = Config::default();
    let mut tcp = tokio::net::TcpStream::connect(node.local_addrs()[0])
        .await
        .unwrap();
    let mut handshake = crate::proto::Handshake::new(clock::now(), "p", 0xbeef, &config);
    let (mut out, mut input) = (BytesMut::new(), BytesMut::new());
    handshake.write_hello(&mut out);
    tcp.write_all_buf(&mut out).await.unwrap();
    let hello = loop {
        if let Some(hello) = handshake.handle_input(clock::now(), &mut input).unwrap() {
            break hello;
        }
        assert_ne!(tcp.read_buf(&mut input).await.unwrap(), 0);
    };
    let mut session = Session::new(clock::now(), 0xbeef, config);
    session.begin_link(clock::now(), &hello, handshake.deadline(), 7);
    session.handle_input(clock::now(), &mut input).unwrap();
    session.poll_transmit(clock::now(), &mut out, usize::MAX);
    tcp.write_all_buf(&mut out).await.unwrap();
    let connected = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
    assert!(matches!(connected, Ok(Some(Event::Connected { .. }))));

    let silent_since = tokio::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(60), events.recv()).await;
    let Ok(Some(Event::Disconnected { reason, .. })) = ended else {
        panic!("expected a disconnection, got {ended:?}");
    };
    let idle = node.shared.config.protocol.idle_timeout;
    assert_eq!(reason, LinkError::IdleTimeout(idle).to_string());
    assert!(silent_since.elapsed() >= idle - Duration::from_secs(1));
    assert!(silent_since.elapsed() <= idle + Duration::from_secs(1));
    assert!(wall.elapsed() < Duration::from_secs(10), "waited real time");
    drop(tcp);
    node.abort().await;
}
