//! Known peers on real loopback sockets: a name is pinned only once a session is established
//! with it, a key cycling through names stops at the cap, and what was pinned survives a restart.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{eventually, temp_path, wait_event, within};
use networkio::proto::LinkError;
use networkio::proto::frame::CloseCode;
use networkio::{Error, Event, Identity, KnownPeersLimits, Node, RefusalReason, TrustPolicy};

async fn node(name: &str, identity: &Identity, trust: TrustPolicy, listen: bool) -> Node {
    let mut builder = Node::builder(name).identity(identity.clone()).trust(trust);
    if listen {
        builder = builder.listen("127.0.0.1:0");
    }
    builder.start().await.unwrap()
}

fn closed_with<T: std::fmt::Debug>(result: Result<T, Error>) -> CloseCode {
    match result.expect_err("the connection must be refused") {
        Error::Link(LinkError::ClosedByPeer { code, .. }) => code,
        other => panic!("expected the listener's CLOSE, got {other:?}"),
    }
}

/// The dialer refuses the listener after the HELLOs (its allowlist does not list the
/// listener), so the session is never established: the listener's known-peers file must not
/// pin the dialer's name, and another key may still take it. (It used to be recorded as soon
/// as the HELLO was checked.)
#[tokio::test]
async fn a_handshake_refused_after_hello_pins_nothing() {
    let path = temp_path("refused");
    let (server_key, key_a, key_b) = (
        Identity::generate().unwrap(),
        Identity::generate().unwrap(),
        Identity::generate().unwrap(),
    );
    let server = node(
        "server",
        &server_key,
        TrustPolicy::known_peers_file(&path).unwrap(),
        true,
    )
    .await;
    let addr = server.local_addrs()[0];

    let stranger_only: HashMap<_, _> = [("someone-else".to_owned(), key_b.public_key())].into();
    let picky = node(
        "client",
        &key_a,
        TrustPolicy::Allowlist(Arc::new(stranger_only)),
        false,
    )
    .await;
    let refused = within("the dialer's own refusal", picky.connect(addr)).await;
    assert!(
        matches!(refused, Err(Error::Unauthorized(_))),
        "{refused:?}"
    );
    // The listener has read the dialer's HELLO (and checked its key), and its connection ended.
    eventually("the listener's connection to end", || {
        server.connection_count() == 0
    })
    .await;
    picky.shutdown().await;

    // Another key takes the name: nothing pinned it.
    let mut server_events = server.events();
    let other = node("client", &key_b, TrustPolicy::Open, false).await;
    within("the other key", other.connect(addr)).await.unwrap();
    wait_event(&mut server_events, "the other key's session", |e| {
        matches!(e, Event::Connected { .. })
    })
    .await;
    other.shutdown().await;
    server.shutdown().await;
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("client {}\n", key_b.public_key()),
        "only the established session's key is pinned"
    );
    std::fs::remove_file(&path).unwrap();
}

/// One key establishing sessions under name after name pins at most `max_names_per_key` of
/// them; the next name is refused with its own close code, and the file stops growing.
#[tokio::test]
async fn a_key_cycling_through_names_stops_at_the_cap() {
    let path = temp_path("cycling");
    let (server_key, key) = (Identity::generate().unwrap(), Identity::generate().unwrap());
    let mut limits = KnownPeersLimits::default();
    limits.max_names_per_key = 2;
    let trust = TrustPolicy::known_peers_file_with(&path, limits).unwrap();
    let server = node("server", &server_key, trust, true).await;
    let addr = server.local_addrs()[0];
    let mut server_events = server.events();

    for name in ["name-0", "name-1"] {
        let client = node(name, &key, TrustPolicy::Open, false).await;
        within("connect", client.connect(addr)).await.unwrap();
        // Recorded by the listener as its session is established.
        wait_event(
            &mut server_events,
            "the listener's session",
            |e| matches!(e, Event::Connected { peer, .. } if peer.name() == name),
        )
        .await;
        client.shutdown().await;
    }
    let client = node("name-2", &key, TrustPolicy::Open, false).await;
    let code = closed_with(within("refusal", client.connect(addr)).await);
    assert_eq!(code, CloseCode::TrustStoreFull);
    assert_eq!(code.to_u16(), 14);
    assert_eq!(
        RefusalReason::from_close_code(code),
        Some(RefusalReason::KnownPeersFull)
    );
    let refusal = wait_event(&mut server_events, "the refusal", |e| {
        matches!(e, Event::Refused { .. })
    })
    .await;
    assert!(
        matches!(&refusal, Event::Refused { name: Some(name), reason: RefusalReason::KnownPeersFull, .. } if name == "name-2"),
        "{refusal:?}"
    );
    assert_eq!(server.stats().refused.known_peers_full, 1);
    client.shutdown().await;
    server.shutdown().await;

    // After a restart, the file still holds the two names, and the cap still holds.
    let recorded = std::fs::read_to_string(&path).unwrap();
    assert_eq!(recorded.lines().count(), 2, "{recorded}");
    let trust = TrustPolicy::known_peers_file_with(&path, limits).unwrap();
    let server = node("server", &server_key, trust, true).await;
    let addr = server.local_addrs()[0];
    let client = node("name-3", &key, TrustPolicy::Open, false).await;
    let code = closed_with(within("refusal after restart", client.connect(addr)).await);
    assert_eq!(code, CloseCode::TrustStoreFull);
    let client = node("name-1", &key, TrustPolicy::Open, false).await;
    within("a pinned name", client.connect(addr)).await.unwrap();
    client.shutdown().await;
    server.shutdown().await;
    assert_eq!(std::fs::read_to_string(&path).unwrap(), recorded);
    std::fs::remove_file(&path).unwrap();
}
