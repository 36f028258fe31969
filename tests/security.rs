//! Security on real loopback sockets: trust policies (allowlist, known_peers), sessions bound to
//! the key that created them, replayed handshakes, impostors during a partition, and a plaintext
//! node meeting a TLS node.
#![allow(clippy::unwrap_used)]

mod common;

use common::{eventually, temp_path};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Checker, Msg, wait_event, wait_session_lost, within};
use networkio::proto::LinkError;
use networkio::proto::frame::CloseCode;
use networkio::{
    ConnectionState, Error, Event, Events, Fault, Identity, Node, PublicKey, RefusalReason,
};
use networkio::{LostReason, TrustPolicy};
use networkio_chaos::{ChaosConfig, ChaosProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn allowlist(entries: &[(&str, PublicKey)]) -> TrustPolicy {
    let map: HashMap<String, PublicKey> =
        entries.iter().map(|(n, k)| (n.to_string(), *k)).collect();
    TrustPolicy::Allowlist(Arc::new(map))
}

async fn server_with(trust: TrustPolicy) -> Node {
    Node::builder("server")
        .listen("127.0.0.1:0")
        .trust(trust)
        .start()
        .await
        .unwrap()
}

async fn client_with(name: &str, identity: &Identity) -> Node {
    Node::builder(name)
        .identity(identity.clone())
        .reconnect_backoff(Duration::from_millis(5), Duration::from_millis(50))
        .start()
        .await
        .unwrap()
}

/// Asserts that `result` is the refusal a dialer gets when the listener refuses it: the
/// listener's CLOSE with `code`. Returns the listener's reason text.
fn assert_refused<T: std::fmt::Debug>(result: Result<T, Error>, code: CloseCode) -> String {
    let err = result.expect_err("the connection must be refused");
    assert_eq!(err.fault(), Fault::Peer, "{err}");
    match err {
        Error::Link(LinkError::ClosedByPeer { code: got, reason }) if got == code => reason,
        other => panic!("expected CLOSE {code} from the listener, got {other:?}"),
    }
}

/// [`assert_refused`] for the allowlist's refusal, CLOSE UNAUTHORIZED (10).
fn assert_unauthorized<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    assert_eq!(CloseCode::Unauthorized.to_u16(), 10);
    assert_refused(result, CloseCode::Unauthorized)
}

/// Splits off the `Refused` events: the others, and the refusals' (name, reason).
fn refusals(events: Vec<Event>) -> (Vec<Event>, Vec<(Option<String>, RefusalReason)>) {
    let mut refused = Vec::new();
    let others = events
        .into_iter()
        .filter_map(|e| match e {
            Event::Refused { name, reason, .. } => {
                refused.push((name, reason));
                None
            }
            other => Some(other),
        })
        .collect();
    (others, refused)
}

/// Drains what is queued in `events` without waiting.
fn drain(events: &mut Events) -> Vec<Event> {
    std::iter::from_fn(|| events.try_recv()).collect()
}

fn kinds(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            Event::Message { peer } => format!("Message({})", peer.name()),
            Event::Delivered { peer, up_to } => format!("Delivered({}, {up_to})", peer.name()),
            Event::Connected { peer, resumed } => format!("Connected({}, {resumed})", peer.name()),
            Event::Disconnected { peer, reason } => {
                format!("Disconnected({}, {reason})", peer.name())
            }
            Event::SessionLost { peer, reason, .. } => {
                format!("SessionLost({}, {reason:?})", peer.name())
            }
            _ => "other".into(),
        })
        .collect()
}

/// Sends one message from `client` to the server it reached through `peer` and checks the
/// server's application reads it.
async fn deliver_one(peer: &networkio::Peer, server: &Node, from: &str, text: &str) {
    let receipt = peer.send(&text).await.unwrap();
    within("delivery", receipt.delivered()).await.unwrap();
    let got: Vec<String> = server.peer(from).unwrap().read_all().unwrap();
    assert_eq!(got, [text]);
}

#[tokio::test]
async fn allowlist_refuses_a_known_name_with_the_wrong_key() {
    let (key_a, key_b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let server = server_with(allowlist(&[("client", key_a.public_key())])).await;
    let addr = server.local_addrs()[0];
    let mut server_events = server.events();

    let impostor = client_with("client", &key_b).await;
    let reason = assert_unauthorized(within("refusal", impostor.connect(addr)).await);
    assert!(
        reason.contains("client"),
        "names the refused name: {reason}"
    );
    assert!(server.peer("client").is_none(), "no peer left behind");
    assert!(server.peers().is_empty());
    eventually("the refused connection to close", || {
        server.connection_count() == 0
    })
    .await;
    let (seen, refused) = refusals(drain(&mut server_events));
    assert!(
        seen.is_empty(),
        "nothing reached the application: {:?}",
        kinds(&seen)
    );
    assert_eq!(
        refused,
        [(Some("client".to_owned()), RefusalReason::NotAllowlisted)],
        "the refusal is reported"
    );

    // The listed key under its name is accepted (the refusal was about the key).
    let real = client_with("client", &key_a).await;
    let peer = within("connect", real.connect(addr)).await.unwrap();
    deliver_one(&peer, &server, "client", "hello").await;
    impostor.shutdown().await;
    real.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_dialers_allowlist_refuses_a_server_with_the_wrong_key() {
    // The check runs on both sides: a client pinning the server's key refuses an impostor.
    let real_key = Identity::generate().unwrap();
    let impostor = server_with(TrustPolicy::Open).await;
    let mut impostor_events = impostor.events();
    let client = Node::builder("client")
        .trust(allowlist(&[("server", real_key.public_key())]))
        .start()
        .await
        .unwrap();
    let err = within("refusal", client.connect(impostor.local_addrs()[0]))
        .await
        .expect_err("the client must refuse the impostor");
    assert_eq!(err.fault(), Fault::Peer);
    assert!(
        matches!(&err, Error::Unauthorized(reason) if reason.contains("server")),
        "refused locally: {err:?}"
    );
    eventually("the impostor's connection to end", || {
        impostor.connection_count() == 0
    })
    .await;
    let seen = drain(&mut impostor_events);
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, Event::Connected { .. } | Event::Message { .. })),
        "{:?}",
        kinds(&seen)
    );
    assert!(impostor.peers().iter().all(|p| p.pending() == 0));
    client.shutdown().await;
    impostor.shutdown().await;
}

#[tokio::test]
async fn allowlist_refuses_a_listed_key_presenting_another_listed_name() {
    let (key_a, key_b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let server = server_with(allowlist(&[
        ("client-a", key_a.public_key()),
        ("client-b", key_b.public_key()),
    ]))
    .await;
    let addr = server.local_addrs()[0];
    let mut server_events = server.events();

    // Key A is trusted, but only as client-a.
    let posing = client_with("client-b", &key_a).await;
    let reason = assert_unauthorized(within("refusal", posing.connect(addr)).await);
    assert!(reason.contains("client-b"), "{reason}");
    assert!(server.peer("client-b").is_none());
    assert!(server.peer("client-a").is_none());
    let (seen, refused) = refusals(drain(&mut server_events));
    assert!(seen.is_empty(), "{:?}", kinds(&seen));
    assert_eq!(
        refused,
        [(Some("client-b".to_owned()), RefusalReason::NotAllowlisted)]
    );

    // Each key under its own name is accepted.
    let a = client_with("client-a", &key_a).await;
    let b = client_with("client-b", &key_b).await;
    let to_a = within("connect a", a.connect(addr)).await.unwrap();
    let to_b = within("connect b", b.connect(addr)).await.unwrap();
    deliver_one(&to_a, &server, "client-a", "from a").await;
    deliver_one(&to_b, &server, "client-b", "from b").await;
    for node in [posing, a, b, server] {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn allowlist_refuses_an_unknown_name() {
    let listed = Identity::generate().unwrap();
    let server = server_with(allowlist(&[("client", listed.public_key())])).await;
    let addr = server.local_addrs()[0];
    let mut server_events = server.events();

    for identity in [Identity::generate().unwrap(), listed.clone()] {
        // A stranger, and even a listed key: the name is not on the list.
        let stranger = client_with("stranger", &identity).await;
        let reason = assert_unauthorized(within("refusal", stranger.connect(addr)).await);
        assert!(reason.contains("stranger"), "{reason}");
        stranger.shutdown().await;
    }
    assert!(server.peers().is_empty());
    let (seen, refused) = refusals(drain(&mut server_events));
    assert!(seen.is_empty(), "{:?}", kinds(&seen));
    assert_eq!(refused.len(), 2, "{refused:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn known_peers_trusts_on_first_use_then_pins_across_restarts() {
    let path = temp_path("known-peers");
    let (key_a, key_b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let policy = TrustPolicy::known_peers_file(&path).unwrap();
    let TrustPolicy::KnownPeers(known) = policy.clone() else {
        panic!("known peers expected")
    };
    let server = server_with(policy).await;
    let addr = server.local_addrs()[0];

    // First use: accepted and recorded (by the policy's writer thread).
    let a = client_with("client", &key_a).await;
    let peer = within("first connect", a.connect(addr)).await.unwrap();
    deliver_one(&peer, &server, "client", "first").await;
    within("the entry written", known.flush()).await;
    let recorded = std::fs::read_to_string(&path).unwrap();
    assert_eq!(recorded, format!("client {}\n", key_a.public_key()));
    // End A's session, so only the recorded key (not a live session) can refuse B.
    a.shutdown().await;
    eventually("the server to forget A's session", || {
        server
            .peer("client")
            .is_none_or(|p| p.state() != ConnectionState::Connected)
    })
    .await;

    let b = client_with("client", &key_b).await;
    let reason = assert_refused(
        within("refusal of B", b.connect(addr)).await,
        CloseCode::KeyMismatch,
    );
    assert!(reason.contains("client"), "{reason}");
    b.shutdown().await;
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        recorded,
        "B was not recorded"
    );

    // A new server process reading the same file.
    server.shutdown().await;
    let server = server_with(TrustPolicy::known_peers_file(&path).unwrap()).await;
    let addr = server.local_addrs()[0];
    let b = client_with("client", &key_b).await;
    let reason = assert_refused(
        within("refusal of B after restart", b.connect(addr)).await,
        CloseCode::KeyMismatch,
    );
    assert!(reason.contains("client"), "{reason}");
    assert!(server.peer("client").is_none());
    let a = client_with("client", &key_a).await;
    let peer = within("A after restart", a.connect(addr)).await.unwrap();
    deliver_one(&peer, &server, "client", "again").await;
    assert_eq!(std::fs::read_to_string(&path).unwrap(), recorded);
    for node in [a, b, server] {
        node.shutdown().await;
    }
    std::fs::remove_file(&path).unwrap();
}

/// A one-connection TCP relay that forwards both ways and records what the client sent.
struct RecordingRelay {
    addr: SocketAddr,
    client_to_server: Arc<Mutex<Vec<u8>>>,
    finished: tokio::task::JoinHandle<()>,
}

async fn recording_relay(target: SocketAddr) -> RecordingRelay {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client_to_server = Arc::new(Mutex::new(Vec::new()));
    let record = client_to_server.clone();
    let finished = tokio::spawn(async move {
        // One connection only: the listener closes with this task's first accept.
        let (mut client, _) = listener.accept().await.unwrap();
        drop(listener);
        let mut server = TcpStream::connect(target).await.unwrap();
        let (mut client_rx, mut client_tx) = client.split();
        let (mut server_rx, mut server_tx) = server.split();
        let upstream = async {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match client_rx.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                        if server_tx.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        };
        let downstream = async {
            let _ = tokio::io::copy(&mut server_rx, &mut client_tx).await;
        };
        // Whichever side ends first ends the relayed connection.
        tokio::select! {
            () = upstream => {}
            () = downstream => {}
        }
    });
    RecordingRelay {
        addr,
        client_to_server,
        finished,
    }
}

#[tokio::test]
async fn a_replayed_handshake_is_refused_by_tls_and_delivers_nothing_twice() {
    const N: u64 = 20;
    let server = server_with(TrustPolicy::Open).await;
    let server_addr = server.local_addrs()[0];
    let mut server_events = server.events();
    let relay = recording_relay(server_addr).await;
    let identity = Identity::generate().unwrap();
    let client = client_with("client", &identity).await;
    let peer = within("connect through the relay", client.connect(relay.addr))
        .await
        .unwrap();
    let mut checker = Checker::default();
    let mut last = None;
    for _ in 0..N {
        let msg = checker.next_message("client", "server", 32);
        last = Some(peer.send(&msg).await.unwrap());
    }
    within("delivery", last.unwrap().delivered()).await.unwrap();
    let at_server = server.peer("client").unwrap();
    for msg in at_server.read_all::<Msg>().unwrap() {
        checker.received(&msg);
    }
    checker.assert_exactly_once_in_order();
    assert_eq!(checker.reads(), N);

    // The client dies (no goodbye): the server keeps the session, resumable by the client.
    client.abort().await;
    within("the relay to end", relay.finished).await.unwrap();
    wait_event(&mut server_events, "Disconnected", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    eventually("the server to see no connection", || {
        server.connection_count() == 0
    })
    .await;
    let before = at_server.stats();
    assert_eq!(before.state, ConnectionState::Disconnected);
    drain(&mut server_events);
    let recorded = relay.client_to_server.lock().unwrap().clone();
    assert!(
        recorded.len() > 1000,
        "recorded the TLS handshake and the messages: {} bytes",
        recorded.len()
    );
    assert_eq!(recorded[0], 0x16, "starts with a TLS handshake record");

    // Replay every byte the client sent, on a new connection.
    let mut replay = TcpStream::connect(server_addr).await.unwrap();
    let _ = replay.write_all(&recorded).await; // the server may close before taking it all
    let mut answer = Vec::new();
    let read = within("the server to close the replayed connection", async {
        let mut buf = [0u8; 4096];
        loop {
            match replay.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    eprintln!(
        "replay: {} bytes sent, server answered {} bytes then closed ({read:?})",
        recorded.len(),
        answer.len()
    );
    // Everything the server sent is TLS records (its ServerHello etc., maybe an alert): no
    // protocol frame in clear.
    assert!(
        !answer.windows(4).any(|w| w == b"NWIO"),
        "no HELLO in clear"
    );
    eventually("the replayed connection to be gone", || {
        server.connection_count() == 0
    })
    .await;

    // Not accepted as the client: no new connection of the session, nothing delivered again.
    let after = at_server.stats();
    assert_eq!(after.state, ConnectionState::Disconnected);
    assert_eq!(after.reconnects, before.reconnects, "no new connection");
    assert_eq!(after.generation, before.generation, "same session");
    assert_eq!(at_server.pending(), 0, "nothing delivered a second time");
    let seen = drain(&mut server_events);
    assert!(
        seen.is_empty(),
        "the replay reached the application: {:?}",
        kinds(&seen)
    );
    for msg in at_server.read_all::<Msg>().unwrap() {
        checker.received(&msg);
    }
    checker.assert_exactly_once_in_order();
    assert_eq!(checker.reads(), N, "each message read exactly once");

    // The server is still up: the client's next process (same key) connects and delivers.
    let restarted = client_with("client", &identity).await;
    let peer = within("fresh connection", restarted.connect(server_addr))
        .await
        .unwrap();
    deliver_one(&peer, &server, "client", "after the replay").await;
    restarted.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_live_session_cannot_be_taken_by_another_key_under_an_open_policy() {
    let server = server_with(TrustPolicy::Open).await;
    let addr = server.local_addrs()[0];
    let (key_a, key_b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let a = client_with("client", &key_a).await;
    let mut a_events = a.events();
    let to_server = within("A connects", a.connect(addr)).await.unwrap();
    let at_server = within("the server to know A", async {
        loop {
            if let Some(p) = server.peer("client") {
                return p;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    // Messages both ways.
    deliver_one(&to_server, &server, "client", "a1").await;
    let receipt = at_server.send(&"s1").await.unwrap();
    within("delivery to A", receipt.delivered()).await.unwrap();
    assert_eq!(to_server.read_all::<String>().unwrap(), ["s1"]);
    eventually("one connection at the server", || {
        server.connection_count() == 1
    })
    .await;
    let (server_side, a_side) = (at_server.stats(), to_server.stats());
    assert_eq!(server_side.state, ConnectionState::Connected);
    drain(&mut a_events);

    // Same name, another key, while A is connected.
    let impostor = client_with("client", &key_b).await;
    let reason = assert_refused(
        within("refusal", impostor.connect(addr)).await,
        CloseCode::NameInUse,
    );
    // Open policy: only the key binding refuses, and the impostor is told so.
    assert_eq!(
        reason,
        "client is in use by another key on a live connection"
    );
    impostor.shutdown().await;
    eventually("the impostor's connection to be gone", || {
        server.connection_count() == 1
    })
    .await;

    // A's connection and session were not touched.
    let (server_now, a_now) = (at_server.stats(), to_server.stats());
    assert_eq!(server_now.state, ConnectionState::Connected);
    assert_eq!(a_now.state, ConnectionState::Connected);
    assert_eq!(
        server_now.generation, server_side.generation,
        "same session"
    );
    assert_eq!(a_now.generation, a_side.generation, "same session");
    assert_eq!(
        server_now.reconnects, server_side.reconnects,
        "same connection"
    );
    assert_eq!(a_now.reconnects, a_side.reconnects, "same connection");
    let seen = drain(&mut a_events);
    assert!(
        !seen.iter().any(|e| matches!(
            e,
            Event::Disconnected { .. } | Event::Connected { .. } | Event::SessionLost { .. }
        )),
        "A noticed nothing: {:?}",
        kinds(&seen)
    );
    // It keeps delivering, both ways.
    deliver_one(&to_server, &server, "client", "a2").await;
    let receipt = at_server.send(&"s2").await.unwrap();
    within("delivery to A", receipt.delivered()).await.unwrap();
    assert_eq!(to_server.read_all::<String>().unwrap(), ["s2"]);
    assert_eq!(server.connection_count(), 1);
    a.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_impostor_during_a_partition_gets_nothing_and_the_real_peer_resumes() {
    // Known peers pin the name to A's key, so A's session outlives the partition for A alone.
    // (Under the open policy the impostor would end it instead: see
    // `a_new_key_ends_a_session_without_a_connection_under_the_open_policy`.)
    const QUEUED: u64 = 50;
    let known = temp_path("partition");
    let server = server_with(TrustPolicy::known_peers_file(&known).unwrap()).await;
    let server_addr = server.local_addrs()[0];
    let mut server_events = server.events();
    let proxy = ChaosProxy::start(server_addr, ChaosConfig::default())
        .await
        .unwrap();
    let (key_a, key_b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let a = client_with("client", &key_a).await;
    let mut a_events = a.events();
    let to_server = within("A connects", a.connect(proxy.local_addr()))
        .await
        .unwrap();
    deliver_one(&to_server, &server, "client", "hello").await;
    let at_server = server.peer("client").unwrap();
    let mut checker = Checker::default();
    // One message before the partition, read by A.
    let first = checker.next_message("server", "client", 8);
    let receipt = at_server.send(&first).await.unwrap();
    within("delivery", receipt.delivered()).await.unwrap();
    for m in to_server.read_all::<Msg>().unwrap() {
        checker.received(&m);
    }
    let generation = to_server.stats().generation;

    // Partition: A is cut off and cannot reconnect.
    proxy.pause();
    wait_event(&mut server_events, "the server to see A disconnect", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    assert_eq!(at_server.state(), ConnectionState::Disconnected);
    let mut receipts = Vec::new();
    for _ in 0..QUEUED {
        let msg = checker.next_message("server", "client", 16);
        receipts.push(at_server.send(&msg).await.unwrap());
    }
    assert_eq!(at_server.stats().unacked_len, QUEUED as usize);

    // The impostor claims A's name with another key, directly at the server.
    let impostor = client_with("client", &key_b).await;
    let mut impostor_events = impostor.events();
    let reason = assert_refused(
        within("refusal", impostor.connect(server_addr)).await,
        CloseCode::KeyMismatch,
    );
    assert!(reason.contains("client"), "{reason}");
    // It received no DATA: nothing readable, no Message, no session.
    let seen = drain(&mut impostor_events);
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, Event::Message { .. } | Event::Connected { .. })),
        "{:?}",
        kinds(&seen)
    );
    for p in impostor.peers() {
        let stats = p.stats();
        assert_eq!(stats.inbox_len, 0, "nothing readable from {}", p.name());
        assert_eq!(p.pending(), 0);
        assert_ne!(stats.state, ConnectionState::Connected);
        assert!(p.read_all_bytes().is_empty());
    }
    impostor.shutdown().await;
    // Nothing left the server's queue for it.
    assert_eq!(at_server.stats().unacked_len, QUEUED as usize);
    assert!(receipts.iter().all(|r| !r.is_delivered()));
    assert_eq!(at_server.state(), ConnectionState::Disconnected);

    // The partition heals; A's node redials on its own and resumes its session. (Events are
    // built when received: drop the stale ones, so the next Connected is the reconnection.)
    drain(&mut a_events);
    assert_eq!(
        to_server.pending(),
        0,
        "nothing arrived during the partition"
    );
    proxy.resume();
    let ev = wait_event(&mut a_events, "A to reconnect", |e| {
        matches!(e, Event::Connected { .. })
    })
    .await;
    let Event::Connected { resumed, .. } = ev else {
        unreachable!()
    };
    assert!(resumed, "the session resumes");
    assert_eq!(to_server.stats().generation, generation, "same session");
    within("A to read everything queued", async {
        while !checker.complete() {
            for m in to_server.read_all::<Msg>().unwrap() {
                assert_eq!(m.to, "client");
                checker.received(&m);
            }
            if checker.complete() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    checker.assert_exactly_once_in_order();
    assert_eq!(checker.reads(), QUEUED + 1);
    within("receipts", receipts.last().unwrap().delivered())
        .await
        .unwrap();
    assert!(to_server.read_all::<Msg>().unwrap().is_empty(), "no more");
    a.shutdown().await;
    server.shutdown().await;
    proxy.shutdown();
    std::fs::remove_file(&known).unwrap();
}

#[tokio::test]
async fn a_plaintext_node_and_a_tls_node_fail_cleanly() {
    const HANDSHAKE: Duration = Duration::from_secs(2);
    let node = |name: &str, plaintext: bool, listen: bool| {
        let mut b = Node::builder(name).handshake_timeout(HANDSHAKE);
        if plaintext {
            b = b.insecure_plaintext();
        }
        if listen {
            b = b.listen("127.0.0.1:0");
        }
        b.start()
    };
    for (client_plain, what) in [(true, "plaintext -> TLS"), (false, "TLS -> plaintext")] {
        let server = node("server", !client_plain, true).await.unwrap();
        let client = node("client", client_plain, false).await.unwrap();
        let started = Instant::now();
        let result = within(what, client.connect(server.local_addrs()[0])).await;
        let elapsed = started.elapsed();
        let err = result.expect_err("mismatched security must fail");
        eprintln!("{what}: {err} ({:?}) after {elapsed:?}", err.fault());
        assert!(
            matches!(err.fault(), Fault::Peer | Fault::Io),
            "{what}: {err:?}"
        );
        assert!(
            elapsed < HANDSHAKE + Duration::from_secs(2),
            "{what}: took {elapsed:?}, beyond the handshake timeout"
        );
        assert!(server.peers().is_empty(), "{what}: no peer at the server");
        eventually("the server to drop the connection", || {
            server.connection_count() == 0
        })
        .await;
        // Both nodes are still fine with a peer of their own kind.
        let same = node("other", !client_plain, false).await.unwrap();
        let peer = within("a matching client", same.connect(server.local_addrs()[0]))
            .await
            .unwrap();
        deliver_one(&peer, &server, "other", "ok").await;
        for n in [client, same, server] {
            n.shutdown().await;
        }
    }
}

/// A TCP forwarder whose target can be switched: new connections go to the current target;
/// `cut` drops every forwarded connection.
struct Switch {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    live: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl Switch {
    async fn start(target: SocketAddr) -> Switch {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let live = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accept = tokio::spawn({
            let (target, live, accepted) = (target.clone(), live.clone(), accepted.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let to = *target.lock().unwrap();
                    let task = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(to).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    live.lock().unwrap().push(task.abort_handle());
                }
            }
        });
        Switch {
            addr,
            target,
            live,
            accepted,
            accept,
        }
    }

    fn point_to(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn cut(&self) {
        for task in self.live.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redial_that_reaches_an_impostor_server_is_refused_and_the_session_resumes_later() {
    const QUEUED: u64 = 20;
    // The client pins the server's key (known peers): an impostor answering at the server's
    // address is refused and gets nothing, and the session outlives it. (Under the open policy
    // the session would end instead: see
    // `a_client_whose_server_returns_with_a_new_key_starts_afresh_under_the_open_policy`.)
    let server = server_with(TrustPolicy::Open).await;
    let impostor = server_with(TrustPolicy::Open).await;
    let mut impostor_events = impostor.events();
    let switch = Switch::start(server.local_addrs()[0]).await;
    let known = temp_path("redial");
    let client = Node::builder("client")
        .trust(TrustPolicy::known_peers_file(&known).unwrap())
        .reconnect_backoff(Duration::from_millis(5), Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let mut client_events = client.events();
    let to_server = within("connect", client.connect(switch.addr))
        .await
        .unwrap();
    deliver_one(&to_server, &server, "client", "before").await;
    let at_server = server.peer("client").unwrap();
    let generation = to_server.stats().generation;

    // The address now leads to the impostor, and the connection breaks.
    switch.point_to(impostor.local_addrs()[0]);
    switch.cut();
    eventually("the client to see the break", || {
        to_server.state() != ConnectionState::Connected
    })
    .await;
    let mut checker = Checker::default();
    let mut receipts = Vec::new();
    for _ in 0..QUEUED {
        let msg = checker.next_message("client", "server", 16);
        receipts.push(to_server.send(&msg).await.unwrap());
    }
    // The client redials on its own and reaches the impostor, repeatedly; each time it refuses.
    let before = switch.accepted();
    eventually("three redials to reach the impostor", || {
        switch.accepted() >= before + 3
    })
    .await;
    switch.point_to(SocketAddr::from(([127, 0, 0, 1], 1))); // nowhere, while we look
    eventually("the impostor's connections to end", || {
        impostor.connection_count() == 0
    })
    .await;
    assert_ne!(to_server.state(), ConnectionState::Connected);
    assert_eq!(
        to_server.stats().generation,
        generation,
        "session untouched"
    );
    assert_eq!(to_server.stats().unacked_len, QUEUED as usize);
    let seen = drain(&mut impostor_events);
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, Event::Message { .. } | Event::Connected { .. })),
        "the impostor got something: {:?}",
        kinds(&seen)
    );
    for p in impostor.peers() {
        assert_eq!(p.pending(), 0, "nothing readable at the impostor");
        assert_eq!(p.stats().inbox_len, 0);
    }

    // The address leads to the real server again: the session resumes, nothing lost or doubled.
    drain(&mut client_events);
    switch.point_to(server.local_addrs()[0]);
    let ev = wait_event(&mut client_events, "the client to reconnect", |e| {
        matches!(e, Event::Connected { .. })
    })
    .await;
    assert!(matches!(ev, Event::Connected { resumed: true, .. }));
    within("delivery", receipts.last().unwrap().delivered())
        .await
        .unwrap();
    for m in at_server.read_all::<Msg>().unwrap() {
        checker.received(&m);
    }
    checker.assert_exactly_once_in_order();
    assert_eq!(checker.reads(), QUEUED);
    assert_eq!(to_server.stats().generation, generation);
    for node in [client, impostor, server] {
        node.shutdown().await;
    }
    std::fs::remove_file(&known).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_impostors_leave_nothing_running() {
    // While the real client is away, impostors keep claiming its name. Each is refused (known
    // peers pin the name), and none may leave a task behind (each would otherwise wait for the
    // session's expiry).
    let known = temp_path("impostors");
    let server = server_with(TrustPolicy::known_peers_file(&known).unwrap()).await;
    let addr = server.local_addrs()[0];
    let real = client_with("client", &Identity::generate().unwrap()).await;
    let peer = real.connect(addr).await.unwrap();
    within("delivery", peer.send(&1u8).await.unwrap().delivered())
        .await
        .unwrap();
    real.abort().await;
    eventually("the real client's connection to end", || {
        server.connection_count() == 0
            && server
                .peer("client")
                .is_some_and(|p| p.state() == networkio::ConnectionState::Disconnected)
    })
    .await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    for _ in 0..20 {
        let impostor = client_with("client", &Identity::generate().unwrap()).await;
        assert_refused(
            within("refusal", impostor.connect(addr)).await,
            CloseCode::KeyMismatch,
        );
        impostor.abort().await;
    }
    eventually("the refused connections' tasks to end", || {
        server.connection_count() == 0 && metrics.num_alive_tasks() <= before
    })
    .await;
    server.shutdown().await;
    std::fs::remove_file(&known).unwrap();
}

/// Queues `n` checker messages from the server to `to` (which has no connection) and returns
/// them with their receipts.
async fn queue_for(
    to: &networkio::Peer,
    checker: &mut Checker,
    n: usize,
) -> (Vec<Msg>, Vec<networkio::OwnedReceipt>) {
    let mut sent = Vec::new();
    let mut receipts = Vec::new();
    for _ in 0..n {
        let msg = checker.next_message("server", to.name(), 16);
        receipts.push(to.send(&msg).await.unwrap().into_owned());
        sent.push(msg);
    }
    (sent, receipts)
}

/// Checks a `SessionLost` hands back every message queued, once each and in order, for
/// `KeyChanged`.
fn assert_handed_back(checker: &mut Checker, unacked: &[bytes::Bytes], reason: LostReason) {
    assert_eq!(reason, LostReason::KeyChanged);
    checker.handed_back(unacked);
    let summary = checker.assert_accounted();
    assert_eq!(summary.handed_back, summary.sent, "{summary:?}");
}

#[tokio::test]
async fn a_new_key_ends_a_session_without_a_connection_under_the_open_policy() {
    // A client without a key file has a new random key on every run. When it crashes and runs
    // again, the name's session has no connection: under the open policy the new key ends it
    // and starts afresh, instead of being refused until the session expires (an hour).
    const QUEUED: usize = 30;
    let server = server_with(TrustPolicy::Open).await;
    let addr = server.local_addrs()[0];
    let mut server_events = server.events();
    let first = client_with("client", &Identity::generate().unwrap()).await;
    let peer = within("connect", first.connect(addr)).await.unwrap();
    deliver_one(&peer, &server, "client", "first run").await;
    let at_server = server.peer("client").unwrap();
    let generation = at_server.stats().generation;
    first.abort().await; // a crash: no goodbye, the session stays at the server
    wait_event(&mut server_events, "the server to see the crash", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    let mut checker = Checker::default();
    let (_, receipts) = queue_for(&at_server, &mut checker, QUEUED).await;
    drain(&mut server_events);

    // The client runs again, with another key: accepted at once.
    let second = client_with("client", &Identity::generate().unwrap()).await;
    let to_server = within("the restarted client", second.connect(addr))
        .await
        .expect("a new key for a name without a connection is accepted");

    // The server's application gets the old session back, whole; its receipts fail.
    let (unacked, reason) = wait_session_lost(&mut server_events, "SessionLost").await;
    assert_handed_back(&mut checker, &unacked, reason);
    for receipt in &receipts {
        let result = within("receipt", receipt.delivered()).await;
        assert!(
            matches!(
                result,
                Err(Error::SessionLost {
                    reason: LostReason::KeyChanged
                })
            ),
            "{result:?}"
        );
    }
    assert_eq!(
        at_server.stats().generation,
        generation + 1,
        "a new session"
    );
    // Nothing of the old session reached the new key: after a round trip in the new session its
    // inbox holds only what was sent in it.
    let receipt = at_server.send(&"new session").await.unwrap();
    within("delivery", receipt.delivered()).await.unwrap();
    let got = to_server.read_all_bytes();
    assert_eq!(got.len(), 1, "only the new session's message");
    assert_eq!(
        networkio::codec::decode::<String>(&got[0]).unwrap(),
        "new session"
    );
    deliver_one(&to_server, &server, "client", "second run").await;
    second.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_server_returns_with_a_new_key_starts_afresh_under_the_open_policy() {
    // The dialing side applies the same rule: its session with a server that came back with a
    // new key (no key file) ends, and the redial carries on in a fresh session.
    const QUEUED: usize = 20;
    let server = server_with(TrustPolicy::Open).await;
    let switch = Switch::start(server.local_addrs()[0]).await;
    let client = client_with("client", &Identity::generate().unwrap()).await;
    let mut client_events = client.events();
    let to_server = within("connect", client.connect(switch.addr))
        .await
        .unwrap();
    deliver_one(&to_server, &server, "client", "before").await;

    // The server goes away; the client queues while it cannot reach anything.
    switch.point_to(SocketAddr::from(([127, 0, 0, 1], 1)));
    switch.cut();
    server.abort().await;
    eventually("the client to see the break", || {
        to_server.state() != ConnectionState::Connected
    })
    .await;
    let mut checker = Checker::default();
    let mut receipts = Vec::new();
    for _ in 0..QUEUED {
        let msg = checker.next_message("client", "server", 16);
        receipts.push(to_server.send(&msg).await.unwrap().into_owned());
    }
    drain(&mut client_events);

    // A new server process, with a new key, under the same name and address.
    let again = server_with(TrustPolicy::Open).await;
    switch.point_to(again.local_addrs()[0]);
    let (unacked, reason) = wait_session_lost(&mut client_events, "SessionLost").await;
    assert_eq!(reason, LostReason::KeyChanged);
    for payload in &unacked {
        let msg = networkio::codec::decode::<Msg>(payload).unwrap();
        assert_eq!(msg.to, "server");
        checker.received(&msg);
    }
    checker.assert_exactly_once_in_order();
    wait_event(&mut client_events, "the fresh session", |e| {
        matches!(e, Event::Connected { resumed: false, .. })
    })
    .await;
    // The new server got none of them; what is sent now reaches it.
    deliver_one(&to_server, &again, "client", "after").await;
    client.shutdown().await;
    again.shutdown().await;
}

#[tokio::test]
async fn refusals_reach_the_application_with_their_reason_and_a_flood_stays_bounded() {
    const MAX: usize = 4;
    const TRIES: usize = 10;
    let listed = Identity::generate().unwrap();
    let server = Node::builder("server")
        .listen("127.0.0.1:0")
        .trust(allowlist(&[("client", listed.public_key())]))
        .max_queued_refusals(MAX)
        .start()
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let mut events = server.events();
    let mut keys = Vec::new();
    for _ in 0..=TRIES {
        let identity = Identity::generate().unwrap();
        keys.push(identity.public_key());
        let stranger = client_with("stranger", &identity).await;
        let reason = assert_unauthorized(within("refusal", stranger.connect(addr)).await);
        // The refused side learns which rule refused it, not the listener's details.
        assert_eq!(reason, "stranger: not on the allowlist with this key");
        stranger.shutdown().await;
        if keys.len() == TRIES {
            // The first MAX are queued with their details; the last of them counts the rest.
            let seen = drain(&mut events);
            assert_eq!(seen.len(), MAX, "{:?}", kinds(&seen));
            for (i, event) in seen.iter().enumerate() {
                let Event::Refused {
                    addr: from,
                    name,
                    key,
                    reason,
                    suppressed,
                } = event
                else {
                    panic!("expected Refused, got {event:?}");
                };
                assert_eq!(from.ip(), addr.ip());
                assert_eq!(name.as_deref(), Some("stranger"));
                assert_eq!(*key, Some(keys[i]));
                assert_eq!(*reason, RefusalReason::NotAllowlisted);
                let expected = if i == MAX - 1 { TRIES - MAX } else { 0 };
                assert_eq!(*suppressed, expected as u64);
            }
        }
    }
    // Taking them made room: the next refusal is queued again.
    let seen = drain(&mut events);
    assert!(
        matches!(&seen[..], [Event::Refused { key: Some(k), suppressed: 0, .. }] if *k == keys[TRIES]),
        "{seen:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_refusal_at_the_connection_limit_is_reported_without_a_name() {
    let server = Node::builder("server")
        .listen("127.0.0.1:0")
        .max_connections(1)
        .start()
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let mut events = server.events();
    let client = client_with("client", &Identity::generate().unwrap()).await;
    let _peer = within("connect", client.connect(addr)).await.unwrap();
    // One more socket: refused at once, before any handshake.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let mut sink = Vec::new();
    let _ = within("the refused socket to close", extra.read_to_end(&mut sink)).await;
    let event = wait_event(&mut events, "Refused", |e| {
        matches!(e, Event::Refused { .. })
    })
    .await;
    let Event::Refused {
        addr: from,
        name,
        key,
        reason,
        ..
    } = event
    else {
        unreachable!()
    };
    assert_eq!(from, extra.local_addr().unwrap());
    assert_eq!((name, key), (None, None));
    assert_eq!(reason, RefusalReason::ConnectionLimit);
    client.shutdown().await;
    server.shutdown().await;
}
