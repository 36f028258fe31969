//! Loopback end-to-end: two nodes, both directions at once, several peers, reads that leave the
//! rest queued, receipts and Delivered events, decode errors, backpressure.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::{
    Checker, WAIT, connected_pair, listening_node, send_stream, spawn_reader, wait_event, within,
};
use networkio::{ConnectionState, Error, Event, Fault, Node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_directions_at_once_exactly_once_in_order() {
    const N: u64 = 20_000;
    let server = listening_node("server-001").await;
    let client = Node::builder("client-123").start().await.unwrap();
    let checker = Arc::new(Mutex::new(Checker::default()));
    let mut server_got = spawn_reader(&server, checker.clone());
    let mut client_got = spawn_reader(&client, checker.clone());

    let to_server = client.connect(server.local_addrs()[0]).await.unwrap();
    assert_eq!(to_server.name(), "server-001");
    let to_client = within("server to know the client", async {
        loop {
            if let Some(p) = server.peer("client-123") {
                return p;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;

    let a = tokio::spawn(send_stream(
        to_server,
        "client-123".into(),
        N,
        16,
        checker.clone(),
    ));
    let b = tokio::spawn(send_stream(
        to_client,
        "server-001".into(),
        N,
        16,
        checker.clone(),
    ));
    within("both senders", async {
        a.await.unwrap();
        b.await.unwrap();
    })
    .await;
    within("all received", server_got.wait_for(|n| *n == N))
        .await
        .unwrap();
    within("all received", client_got.wait_for(|n| *n == N))
        .await
        .unwrap();
    checker.lock().unwrap().assert_exactly_once_in_order();
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_peers_at_once() {
    const CLIENTS: usize = 8;
    const N: u64 = 2_000;
    let server = listening_node("hub").await;
    let checker = Arc::new(Mutex::new(Checker::default()));
    let mut server_got = spawn_reader(&server, checker.clone());
    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let name = format!("client-{i}");
        let node = Node::builder(name.clone()).start().await.unwrap();
        let peer = node.connect(server.local_addrs()[0]).await.unwrap();
        tasks.push(tokio::spawn(send_stream(
            peer,
            name,
            N,
            16,
            checker.clone(),
        )));
        clients.push(node);
    }
    within("all senders", async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await;
    let total = N * CLIENTS as u64;
    within("all received", server_got.wait_for(|n| *n == total))
        .await
        .unwrap();
    checker.lock().unwrap().assert_exactly_once_in_order();
    assert_eq!(server.peers().len(), CLIENTS);
    for c in clients {
        c.shutdown().await;
    }
    server.shutdown().await;
}

#[tokio::test]
async fn read_one_two_all_leaves_the_rest_queued() {
    let (server, client, peer) = connected_pair("server", "client").await;
    let mut last = None;
    for i in 0..10u32 {
        last = Some(peer.send(&i).await.unwrap());
    }
    within("delivery", last.unwrap().delivered()).await.unwrap();
    let mut events = server.events();
    let Event::Message { peer: from } = wait_event(&mut events, "message", |e| {
        matches!(e, Event::Message { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(from.pending(), 10);
    assert_eq!(from.read::<u32>(1).unwrap(), [0]);
    assert_eq!(from.pending(), 9);
    assert_eq!(from.read::<u32>(2).unwrap(), [1, 2]);
    assert_eq!(from.pending(), 7);
    assert_eq!(from.read_all::<u32>().unwrap(), [3, 4, 5, 6, 7, 8, 9]);
    assert_eq!(from.pending(), 0);
    assert!(from.read::<u32>(5).unwrap().is_empty());
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_message_of_the_wrong_type_is_an_error_and_stays_queued() {
    let (server, client, peer) = connected_pair("server", "client").await;
    peer.send(&"not a number").await.unwrap();
    let r = peer.send(&7u64).await.unwrap();
    within("delivery", r.delivered()).await.unwrap();
    let from = server.peer("client").unwrap();
    assert!(matches!(from.read::<u64>(1), Err(Error::Decode { .. })));
    assert_eq!(from.pending(), 2, "nothing consumed by a failed read");
    assert_eq!(from.read::<String>(1).unwrap(), ["not a number"]);
    assert_eq!(from.read::<u64>(1).unwrap(), [7]);
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn raw_bytes_and_delivered_events() {
    let (server, client, peer) = connected_pair("server", "client").await;
    // The queue keeps what happened before this handle existed: nothing is missed.
    let mut client_events = client.events();
    let mut receipts = Vec::new();
    for i in 0..100u8 {
        receipts.push(peer.send_bytes(vec![i; usize::from(i)]).await.unwrap());
    }
    assert_eq!(
        receipts.iter().map(|r| r.seq()).collect::<Vec<_>>(),
        (1..=100).collect::<Vec<_>>()
    );
    // Delivered is cumulative and coalesced: wait until it covers the last message.
    wait_event(&mut client_events, "Delivered up to 100", |e| {
        matches!(e, Event::Delivered { up_to: 100, .. })
    })
    .await;
    assert!(receipts.iter().all(|r| r.is_delivered()));
    let from = server.peer("client").unwrap();
    let got = from.read_all_bytes();
    assert_eq!(got.len(), 100);
    for (i, b) in got.iter().enumerate() {
        assert_eq!(&b[..], &vec![i as u8; i][..]);
    }
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_send_is_lazy_until_its_future_is_polled() {
    let (server, client, peer) = connected_pair("server", "client").await;
    // Made and dropped unpolled: nothing queued, no number taken.
    drop(peer.send_bytes(vec![0]));
    drop(peer.send(&"never"));
    assert_eq!(peer.stats().unacked_len, 0);
    let receipt = peer.send_bytes(vec![1]).await.unwrap();
    assert_eq!(receipt.seq(), 1);
    receipt.delivered().await.unwrap();
    let got = server.peer("client").unwrap().read_all_bytes();
    assert_eq!(got, [vec![1u8]]);
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owned_receipt_outlives_the_handle_it_was_sent_through() {
    let (server, client, peer) = connected_pair("server", "client").await;
    // Sent through a handle that is gone before the receipts are looked at, from another task.
    let receipts: Vec<_> = {
        let handle = peer.clone();
        let mut receipts = Vec::new();
        for i in 0..10u8 {
            receipts.push(handle.send_bytes(vec![i]).await.unwrap().into_owned());
        }
        receipts
    };
    let waiter = tokio::spawn(async move {
        for receipt in &receipts {
            receipt.delivered().await.unwrap();
        }
        receipts
    });
    let receipts = within("the owned receipts to resolve", waiter)
        .await
        .unwrap();
    assert_eq!(
        receipts.iter().map(|r| r.seq()).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    assert!(receipts.iter().all(|r| r.is_delivered()));
    assert!(receipts.iter().all(|r| r.peer().name() == "server"));
    // A borrowing receipt and its owned copy tell the same.
    let receipt = peer.send_bytes(vec![10]).await.unwrap();
    let owned = receipt.into_owned();
    assert_eq!((receipt.seq(), owned.receipt().seq()), (11, 11));
    owned.delivered().await.unwrap();
    assert!(receipt.is_delivered());
    assert_eq!(server.peer("client").unwrap().read_all_bytes().len(), 11);
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_reader_that_never_reads_blocks_the_sender_with_bounded_memory() {
    const INBOX: usize = 64;
    const WINDOW: usize = 32;
    let server = Node::builder("slow-reader")
        .listen("127.0.0.1:0")
        .inbox(INBOX, 1 << 20)
        .start()
        .await
        .unwrap();
    let client = Node::builder("fast-sender")
        .window(WINDOW, 1 << 20)
        .start()
        .await
        .unwrap();
    let peer = client.connect(server.local_addrs()[0]).await.unwrap();
    let body = "y".repeat(100);
    // Fill the receiver's inbox and the sender's window: what TCP buffers in between is
    // bounded by the window too, since unacknowledged messages count against it.
    let mut sent = 0u64;
    let full = within("the window to fill", async {
        loop {
            match peer.try_send(&body) {
                Ok(_) => sent += 1,
                Err(Error::Full) => {
                    // Full now; wait until the inbox is full and acknowledged: then nothing moves.
                    let stats = peer.stats();
                    if stats.unacked_len == WINDOW && stats.acked == INBOX as u64 {
                        return stats;
                    }
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
    })
    .await;
    assert_eq!(sent as usize, INBOX + WINDOW, "inbox + window, no more");
    assert_eq!(full.unacked_len, WINDOW);
    let receiver = server.peer("fast-sender").unwrap();
    assert!(receiver.stats().inbox_len <= INBOX);
    // A blocking send waits...
    let blocked = tokio::spawn({
        let peer = peer.clone();
        let body = body.clone();
        async move { peer.send(&body).await.unwrap().into_owned() }
    });
    // ...and nothing the sender does changes the bounds.
    for _ in 0..100 {
        tokio::task::yield_now().await;
        assert_eq!(peer.stats().unacked_len, WINDOW);
        assert!(matches!(peer.try_send(&body), Err(Error::Full)));
    }
    assert!(!blocked.is_finished());
    // Reading frees the inbox, the receiver resumes, acknowledgements open the window.
    let mut read = 0;
    let receipt = within("the blocked send to complete", async {
        loop {
            read += receiver.read_all::<String>().unwrap().len();
            if blocked.is_finished() {
                return blocked.await.unwrap();
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    within("delivery", async {
        loop {
            read += receiver.read_all::<String>().unwrap().len();
            if receipt.is_delivered() && read as u64 == sent + 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_messages_and_bad_names_are_caller_errors() {
    assert!(matches!(
        Node::builder("bad name").start().await,
        Err(Error::InvalidName(_))
    ));
    let server = Node::builder("server")
        .listen("127.0.0.1:0")
        .max_message_size(1000)
        .start()
        .await
        .unwrap();
    let client = Node::builder("client").start().await.unwrap();
    let peer = client.connect(server.local_addrs()[0]).await.unwrap();
    // The server's limit (from its HELLO) applies to what the client may send it.
    let err = peer.send_bytes(vec![0u8; 1001]).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::MessageTooLarge {
                len: 1001,
                max: 1000
            }
        ),
        "{err}"
    );
    assert_eq!(err.fault(), networkio::Fault::Caller);
    peer.send_bytes(vec![0u8; 1000]).await.unwrap();
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_the_peer_session_and_fails_pending_receipts() {
    let (server, client, peer) = connected_pair("server", "client").await;
    // The queue keeps what happened before this handle existed: nothing is missed.
    let mut client_events = client.events();
    let r = peer.send(&"before").await.unwrap();
    within("delivery", r.delivered()).await.unwrap();
    server.shutdown().await;
    assert!(matches!(
        server.peer("client").unwrap().send(&"after").await,
        Err(Error::NodeClosed)
    ));
    let ev = wait_event(&mut client_events, "disconnect", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await;
    let Event::Disconnected { reason, .. } = ev else {
        unreachable!()
    };
    assert!(reason.contains("shutdown"), "{reason}");
    assert_ne!(peer.state(), ConnectionState::Connected);
    client.shutdown().await;
    let _ = WAIT;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replying_from_the_event_loop_does_not_deadlock() {
    // The server answers each message before reading the next: its inbox and its window fill
    // at once. Acknowledgements must still reach it (they are never stuck behind unread data),
    // or its `send` would wait forever.
    const N: u64 = 50_000;
    let server = Node::builder("echo")
        .listen("127.0.0.1:0")
        .inbox(256, 1 << 20)
        .window(256, 1 << 20)
        .start()
        .await
        .unwrap();
    let mut server_events = server.events();
    tokio::spawn(async move {
        while let Some(event) = server_events.recv().await {
            if let Event::Message { peer } = event {
                for m in peer.read_all::<u64>().unwrap() {
                    peer.send(&m).await.unwrap();
                }
            }
        }
    });
    let client = Node::builder("client")
        .inbox(256, 1 << 20)
        .window(256, 1 << 20)
        .start()
        .await
        .unwrap();
    let mut client_events = client.events();
    let peer = client.connect(server.local_addrs()[0]).await.unwrap();
    let sender = tokio::spawn({
        let peer = peer.clone();
        async move {
            for i in 0..N {
                peer.send(&i).await.unwrap();
            }
        }
    });
    let mut next = 0u64;
    within("every echo", async {
        while next < N {
            if let Some(Event::Message { peer }) = client_events.recv().await {
                for m in peer.read_all::<u64>().unwrap() {
                    assert_eq!(m, next, "echoes in order, once");
                    next += 1;
                }
            }
        }
    })
    .await;
    sender.await.unwrap();
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_many_queues_in_order_and_checks_sizes_as_it_goes() {
    const N: u64 = 20_000;
    let server = Node::builder("server")
        .listen("127.0.0.1:0")
        .max_message_size(1000)
        .start()
        .await
        .unwrap();
    let client = Node::builder("client").start().await.unwrap();
    let checker = Arc::new(Mutex::new(Checker::default()));
    let mut got = spawn_reader(&server, checker.clone());
    let peer = client.connect(server.local_addrs()[0]).await.unwrap();

    // An empty batch has nothing to return a receipt for.
    let empty = peer.send_bytes_many(Vec::<Vec<u8>>::new()).await;
    assert!(matches!(empty, Err(Error::EmptyBatch)), "{empty:?}");
    assert_eq!(empty.unwrap_err().fault(), Fault::Caller);
    // One message over the server's limit fails the call; nothing after it is queued.
    let probe = checker.lock().unwrap().next_message("client", "server", 16);
    let probe = networkio::codec::encode(&probe).unwrap();
    let batch = [probe, vec![0u8; 1001].into(), vec![0u8; 10].into()];
    assert!(matches!(
        peer.send_bytes_many(batch).await,
        Err(Error::MessageTooLarge { len: 1001, .. })
    ));
    assert_eq!(
        peer.stats().unacked_len as u64 + peer.stats().acked,
        1,
        "the message before the oversized one was queued, none after it"
    );

    // More than a window's worth, so the call waits for acknowledgements partway.
    let messages: Vec<_> = (0..N)
        .map(|_| checker.lock().unwrap().next_message("client", "server", 16))
        .collect();
    let receipt = within("send_many", peer.send_many(&messages))
        .await
        .unwrap();
    assert_eq!(receipt.seq(), N + 1);
    within("delivery", receipt.delivered()).await.unwrap();
    within("all read", got.wait_for(|n| *n == N + 1))
        .await
        .unwrap();
    checker.lock().unwrap().assert_exactly_once_in_order();
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn send_many_takes_its_iterator_a_chunk_at_a_time_outside_the_lock() {
    let (server, client, peer) = connected_pair("server", "client").await;
    // The iterator looks at the peer as it goes (which takes the peer's lock): by its 200th
    // message, earlier ones are queued already; the batch is not collected first.
    let mut queued_at_200 = None;
    let batch = (0..300u32).map(|i| {
        if i == 200 {
            let stats = peer.stats();
            queued_at_200 = Some(stats.unacked_len as u64 + stats.acked);
        }
        i.to_be_bytes().to_vec()
    });
    let receipt = within("send_bytes_many", peer.send_bytes_many(batch))
        .await
        .unwrap();
    assert_eq!(receipt.seq(), 300);
    assert!(
        queued_at_200.is_some_and(|n| n >= 64),
        "queued when the iterator reached the 200th: {queued_at_200:?}"
    );
    within("delivery", receipt.delivered()).await.unwrap();
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_session_cap_refuses_new_names_beyond_it() {
    let server = Node::builder("server")
        .listen("127.0.0.1:0")
        .max_sessions(2)
        .start()
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let mut clients = Vec::new();
    for name in ["one", "two"] {
        let node = Node::builder(name).start().await.unwrap();
        node.connect(addr).await.unwrap();
        clients.push(node);
    }
    let third = Node::builder("three").start().await.unwrap();
    let err = third.connect(addr).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Link(networkio::proto::LinkError::ClosedByPeer {
                code: networkio::proto::CloseCode::Busy,
                ..
            })
        ),
        "{err}"
    );
    assert!(
        server.peer("three").is_none(),
        "nothing kept of the refused name"
    );
    assert_eq!(server.peers().len(), 2);
    for node in clients.into_iter().chain([third]) {
        node.shutdown().await;
    }
    server.shutdown().await;
}

/// Polls `future` once with a waker that does nothing.
fn poll_once<F: std::future::Future + Unpin>(future: &mut F) -> std::task::Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(future).poll(&mut cx)
}

#[tokio::test]
async fn a_sender_far_ahead_of_its_acknowledgements_yields_now_and_then() {
    // The receiver never reads and its inbox takes 16 messages: at most 16 are ever
    // acknowledged. Half the sender's window is 1,024 messages.
    let server = Node::builder("never-reads")
        .insecure_plaintext()
        .listen("127.0.0.1:0")
        .inbox(16, 1 << 20)
        .start()
        .await
        .unwrap();
    let client = Node::builder("runs-ahead")
        .insecure_plaintext()
        .window(2048, 1 << 20)
        .start()
        .await
        .unwrap();
    let peer = client.connect(server.local_addrs()[0]).await.unwrap();
    let send_up_to = |last: u64| {
        while peer.stats().unacked_len as u64 + peer.stats().acked < last {
            peer.try_send_bytes(&b"m"[..]).unwrap();
        }
    };
    // Message 512 with at most 512 unacknowledged: no pause.
    send_up_to(511);
    let mut send = Box::pin(peer.send_bytes(&b"m"[..]));
    match poll_once(&mut send) {
        std::task::Poll::Ready(receipt) => assert_eq!(receipt.unwrap().seq(), 512),
        std::task::Poll::Pending => panic!("paused below half the window"),
    }
    // Message 1,536 with at least 1,520 unacknowledged: one pause, then queued.
    send_up_to(1535);
    let mut send = Box::pin(peer.send_bytes(&b"m"[..]));
    assert!(
        poll_once(&mut send).is_pending(),
        "no pause past half the window"
    );
    assert_eq!(peer.stats().unacked_len as u64 + peer.stats().acked, 1536);
    match poll_once(&mut send) {
        std::task::Poll::Ready(receipt) => assert_eq!(receipt.unwrap().seq(), 1536),
        std::task::Poll::Pending => panic!("paused twice"),
    }
    // Between multiples of 512 nothing pauses, half full or not.
    let mut send = Box::pin(peer.send_bytes(&b"m"[..]));
    assert!(poll_once(&mut send).is_ready());
    // A batch queues everything, then pauses once if it left half the window taken.
    let mut send = Box::pin(peer.send_bytes_many(vec![&b"m"[..]; 10]));
    assert!(poll_once(&mut send).is_pending(), "no pause after a batch");
    assert_eq!(peer.stats().unacked_len as u64 + peer.stats().acked, 1547);
    match poll_once(&mut send) {
        std::task::Poll::Ready(receipt) => assert_eq!(receipt.unwrap().seq(), 1547),
        std::task::Poll::Pending => panic!("paused twice"),
    }
    // (Not `shutdown`: it would wait for acknowledgements that cannot come.)
    client.abort().await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_end_of_a_burst_is_acknowledged_without_waiting_for_the_ack_delay() {
    // Acknowledgements held back to coalesce with more input would wait an hour here: only
    // the rule that a receiver with no more input acknowledges at once resolves the receipts of
    // these bursts (100 messages, too many to be acknowledged as a few) in time.
    for plaintext in [true, false] {
        let builder = |name: &str| {
            let builder = Node::builder(name).ack_delay(std::time::Duration::from_secs(3600));
            if plaintext {
                builder.insecure_plaintext()
            } else {
                builder
            }
        };
        let server = builder("burst-rx")
            .listen("127.0.0.1:0")
            .start()
            .await
            .unwrap();
        let client = builder("burst-tx").start().await.unwrap();
        let peer = client.connect(server.local_addrs()[0]).await.unwrap();
        for burst in 1..=3u64 {
            // Queued in one go (this runtime has one thread), so they go out together.
            let mut last = None;
            for _ in 0..100 {
                last = Some(peer.try_send_bytes(vec![0xab; 64]).unwrap());
            }
            let last = last.unwrap();
            assert_eq!(last.seq(), burst * 100);
            within("the acknowledgement of a burst", last.delivered())
                .await
                .unwrap();
            // Delivered means in the receiving node's inbox: nothing was read yet.
            let from = server.peer("burst-tx").unwrap();
            assert_eq!(from.pending(), 100);
            assert_eq!(from.read_all_bytes().len(), 100);
        }
        client.shutdown().await;
        server.shutdown().await;
    }
}
