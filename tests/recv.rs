//! Per-peer receive: `Peer::recv`, `Peer::recv_bytes` and the message streams, without the
//! node's event queue.
#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use common::{Checker, Msg, connected_pair, wait_event, within};
use futures_util::StreamExt;
use networkio::{Error, Event, Fault, LostReason, Node, Peer};

/// Polls `future` once, with a waker that does nothing.
fn poll_once<F: Future + ?Sized>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(std::task::Waker::noop()))
}

/// The server's handle to the peer that connected to it.
async fn accepted(server: &Node) -> Peer {
    let mut events = server.events();
    match wait_event(&mut events, "the client connects", |e| {
        matches!(e, Event::Connected { .. })
    })
    .await
    {
        Event::Connected { peer, .. } => peer,
        _ => unreachable!("wait_event returned another event"),
    }
}

/// Sends `n` checker messages from `from` to `peer`.
async fn send_checked(peer: &Peer, from: &str, n: u64, checker: &Mutex<Checker>) {
    for _ in 0..n {
        let msg = checker.lock().unwrap().next_message(from, peer.name(), 8);
        peer.send(&msg).await.unwrap();
    }
}

#[tokio::test]
async fn request_response_with_recv_only() {
    const ROUNDS: u64 = 300;
    let (server, client, to_server) = connected_pair("server", "client").await;
    let to_client = accepted(&server).await;
    let checker = Arc::new(Mutex::new(Checker::default()));

    let answering = {
        let checker = checker.clone();
        tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let request: Msg = to_client.recv().await.unwrap();
                let reply = {
                    let mut c = checker.lock().unwrap();
                    c.received(&request);
                    c.next_message("server", "client", 8)
                };
                to_client.send(&reply).await.unwrap();
            }
        })
    };
    for _ in 0..ROUNDS {
        let request = checker.lock().unwrap().next_message("client", "server", 8);
        to_server.send(&request).await.unwrap();
        let reply: Msg = within("a reply", to_server.recv()).await.unwrap();
        checker.lock().unwrap().received(&reply);
    }
    within("the server's loop", answering).await.unwrap();
    checker.lock().unwrap().assert_exactly_once_in_order();
    assert_eq!(checker.lock().unwrap().reads(), 2 * ROUNDS);
    assert_eq!(to_server.pending(), 0);
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_takes_every_message_once_in_order_and_frees_inbox_credit() {
    const N: u64 = 3_000;
    // An inbox far smaller than the stream: the sender gets through only if taking a message
    // grants the peer credit, as `read` does.
    let server = Node::builder("server")
        .listen("127.0.0.1:0")
        .max_message_size(1024)
        .inbox(16, 4096)
        .start()
        .await
        .unwrap();
    let client = Node::builder("client").start().await.unwrap();
    let to_server = client.connect(server.local_addrs()[0]).await.unwrap();
    let to_client = accepted(&server).await;
    let checker = Arc::new(Mutex::new(Checker::default()));
    let sending = {
        let checker = checker.clone();
        tokio::spawn(async move { send_checked(&to_server, "client", N, &checker).await })
    };
    for _ in 0..N {
        let msg: Msg = within("the next message", to_client.recv()).await.unwrap();
        checker.lock().unwrap().received(&msg);
    }
    within("the sender", sending).await.unwrap();
    checker.lock().unwrap().assert_exactly_once_in_order();
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_receivers_on_clones_each_get_distinct_messages() {
    const N: u64 = 2_000;
    const RECEIVERS: usize = 4;
    let (server, client, to_server) = connected_pair("server", "client").await;
    let to_client = accepted(&server).await;
    let receivers: Vec<_> = (0..RECEIVERS)
        .map(|_| {
            let peer = to_client.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                // Until the node shuts down: every receiver waits at the end, and all must end.
                while let Ok(bytes) = peer.recv_bytes().await {
                    got.push(u64::from_be_bytes(bytes[..].try_into().unwrap()));
                }
                got
            })
        })
        .collect();
    let mut last = None;
    for i in 0..N {
        last = Some(
            to_server
                .send_bytes(i.to_be_bytes().to_vec())
                .await
                .unwrap(),
        );
    }
    within("delivery", last.unwrap().delivered()).await.unwrap();
    // Everything is in the server's inbox or taken; shutting the server down ends every waiting
    // receiver once the inbox is empty. (The client's shutdown would end the session first.)
    server.shutdown().await;
    client.shutdown().await;
    let mut all = Vec::new();
    for receiver in receivers {
        let got = within("a receiver ends", receiver).await.unwrap();
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "each receiver sees its messages in order"
        );
        all.extend(got);
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (0..N).collect::<Vec<_>>(),
        "every message exactly once"
    );
}

#[tokio::test]
async fn recv_wakes_when_data_arrives() {
    let (server, client, to_server) = connected_pair("server", "client").await;
    let to_client = accepted(&server).await;
    let mut recv = pin!(to_client.recv::<String>());
    assert!(poll_once(recv.as_mut()).is_pending(), "nothing sent yet");
    to_server.send(&"hello").await.unwrap();
    assert_eq!(within("the message", recv).await.unwrap(), "hello");
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn dropping_a_recv_future_loses_no_message() {
    let (server, client, to_server) = connected_pair("server", "client").await;
    let to_client = accepted(&server).await;
    let mut events = server.events();

    // A receiver registered, woken by the arrival, then dropped before it looked again.
    let mut recv = Box::pin(to_client.recv::<String>());
    assert!(poll_once(recv.as_mut()).is_pending());
    to_server.send(&"kept").await.unwrap();
    wait_event(&mut events, "the message arrives", |e| {
        matches!(e, Event::Message { .. })
    })
    .await;
    drop(recv);
    assert_eq!(to_client.pending(), 1);
    assert_eq!(to_client.recv::<String>().await.unwrap(), "kept");

    // A stream whose receivers are cancelled again and again while messages arrive.
    const N: u64 = 1_000;
    let checker = Arc::new(Mutex::new(Checker::default()));
    let sending = {
        let checker = checker.clone();
        let to_server = to_server.clone();
        tokio::spawn(async move { send_checked(&to_server, "client", N, &checker).await })
    };
    let mut received = 0;
    while received < N {
        // A receiver that is not done by the time the task is polled again is dropped.
        tokio::select! {
            biased;
            msg = to_client.recv::<Msg>() => {
                checker.lock().unwrap().received(&msg.unwrap());
                received += 1;
            }
            () = tokio::task::yield_now() => {}
        }
    }
    within("the sender", sending).await.unwrap();
    checker.lock().unwrap().assert_exactly_once_in_order();
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn recv_after_shutdown_returns_node_closed_after_what_was_received() {
    let (server, client, to_server) = connected_pair("server", "client").await;
    let to_client = accepted(&server).await;
    let receipt = to_server.send(&"before").await.unwrap();
    within("delivery", receipt.delivered()).await.unwrap();
    // One receiver waits through the shutdown, one comes after it.
    let other = to_client.clone();
    let waiting = tokio::spawn(async move {
        let first: String = other.recv().await.unwrap();
        (first, other.recv::<String>().await)
    });
    // The server's own shutdown: its session with the client does not end, the node does.
    server.shutdown().await;
    let (first, then) = within("the waiting receiver", waiting).await.unwrap();
    assert_eq!(first, "before", "what was received stays readable");
    let then = then.unwrap_err();
    assert!(matches!(then, Error::NodeClosed), "{then:?}");
    assert_eq!(then.fault(), Fault::Ended);
    assert!(matches!(
        to_client.recv_bytes().await,
        Err(Error::NodeClosed)
    ));
    let mut stream = to_client.messages_bytes();
    assert!(within("the stream ends", stream.next()).await.is_none());
    client.shutdown().await;
}

#[tokio::test]
async fn recv_reports_the_end_of_the_session_after_its_messages() {
    let (server, client, to_server) = connected_pair("server", "client").await;
    let to_client = accepted(&server).await;
    // The client waits for a reply that will never come: the server shuts down (its session
    // ends), after sending two messages.
    let waiting = tokio::spawn({
        let to_server = to_server.clone();
        async move {
            let mut got = Vec::new();
            loop {
                match to_server.recv::<String>().await {
                    Ok(text) => got.push(text),
                    Err(e) => return (got, e),
                }
            }
        }
    });
    to_client.send(&"one").await.unwrap();
    to_client.send(&"two").await.unwrap();
    server.shutdown().await;
    let (got, error) = within("the waiting receiver", waiting).await.unwrap();
    assert_eq!(got, ["one", "two"]);
    assert!(
        matches!(
            error,
            Error::SessionLost {
                reason: LostReason::PeerShutdown
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.fault(), Fault::Ended);
    // Reported once: the next receiver waits for a new session (here: until shutdown).
    let mut next = pin!(to_server.recv_bytes());
    assert!(poll_once(next.as_mut()).is_pending());
    client.shutdown().await;
    assert!(matches!(
        within("the receiver ends", next).await,
        Err(Error::NodeClosed)
    ));
}

#[tokio::test]
async fn a_loss_before_recv_is_called_is_reported_too_after_its_messages() {
    let (server, client, to_server) = connected_pair("server", "client").await;
    let to_client = accepted(&server).await;
    let mut events = client.events();
    to_client.send(&"one").await.unwrap();
    to_client.send(&"two").await.unwrap();
    server.shutdown().await;
    wait_event(&mut events, "the session ends", |e| {
        matches!(e, Event::SessionLost { .. })
    })
    .await;
    // The event queue reported it, and recv reports it as well, in its place.
    assert_eq!(to_server.recv::<String>().await.unwrap(), "one");
    assert_eq!(to_server.recv::<String>().await.unwrap(), "two");
    assert!(matches!(
        to_server.recv_bytes().await,
        Err(Error::SessionLost {
            reason: LostReason::PeerShutdown
        })
    ));
    client.shutdown().await;
}

#[tokio::test]
async fn streams_yield_every_message_in_order() {
    const N: u64 = 500;
    let (server, client, to_server) = connected_pair("server", "client").await;
    let to_client = accepted(&server).await;
    let checker = Arc::new(Mutex::new(Checker::default()));
    let sending = {
        let checker = checker.clone();
        let to_server = to_server.clone();
        tokio::spawn(async move { send_checked(&to_server, "client", N, &checker).await })
    };
    let mut messages = to_client.messages::<Msg>();
    assert_eq!(messages.peer().name(), "client");
    for _ in 0..N {
        let msg = within("the next message", messages.next()).await;
        checker.lock().unwrap().received(&msg.unwrap().unwrap());
    }
    within("the sender", sending).await.unwrap();
    checker.lock().unwrap().assert_exactly_once_in_order();

    // Raw, then the end of the session as an item, then the end of the node as the stream's.
    let mut raw = to_client.messages_bytes();
    to_server.send_bytes(&b"raw"[..]).await.unwrap();
    assert_eq!(
        within("a raw message", raw.next()).await.unwrap().unwrap(),
        &b"raw"[..]
    );
    drop(messages);
    client.shutdown().await;
    let lost = within("the session ends", raw.next()).await.unwrap();
    assert!(matches!(lost, Err(Error::SessionLost { .. })), "{lost:?}");
    server.shutdown().await;
    assert!(within("the stream ends", raw.next()).await.is_none());
    assert!(raw.next().await.is_none(), "and stays ended");
}

#[tokio::test]
async fn a_message_that_does_not_decode_stays_queued() {
    let (server, client, to_server) = connected_pair("server", "client").await;
    let to_client = accepted(&server).await;
    to_server.send(&"text").await.unwrap();
    to_server.send(&7u32).await.unwrap();
    let error = within("recv", to_client.recv::<u32>()).await.unwrap_err();
    assert!(matches!(error, Error::Decode { .. }), "{error:?}");
    let mut numbers = to_client.messages::<u32>();
    assert!(matches!(
        numbers.next().await,
        Some(Err(Error::Decode { .. }))
    ));
    assert!(numbers.next().await.is_none(), "the stream ends after it");
    assert_eq!(to_client.recv::<String>().await.unwrap(), "text");
    let number = within("recv", to_client.recv::<u32>()).await.unwrap();
    assert_eq!(number, 7);
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn recv_and_the_event_queue_work_side_by_side() {
    let (server, client, to_server) = connected_pair("server", "client").await;
    let to_client = accepted(&server).await;
    let mut events = server.events();
    let receipt = to_server.send(&"taken by recv").await.unwrap();
    within("delivery", receipt.delivered()).await.unwrap();
    assert_eq!(to_client.recv::<String>().await.unwrap(), "taken by recv");
    // The notification for it is still queued: it only says that data may be there.
    match wait_event(&mut events, "the notification", |e| {
        matches!(e, Event::Message { .. })
    })
    .await
    {
        Event::Message { peer } => assert!(peer.read_all::<String>().unwrap().is_empty()),
        _ => unreachable!("wait_event returned another event"),
    }
    // And read takes what recv would have.
    let receipt = to_server.send(&"taken by read").await.unwrap();
    within("delivery", receipt.delivered()).await.unwrap();
    assert_eq!(to_client.read_all::<String>().unwrap(), ["taken by read"]);
    let mut recv = pin!(to_client.recv_bytes());
    assert!(poll_once(recv.as_mut()).is_pending());
    client.shutdown().await;
    server.shutdown().await;
}
