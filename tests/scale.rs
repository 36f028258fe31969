//! Scale: 2,000 peers on one listening node, messages both ways, exactly once and in order.
//!
//! Not timed: nothing here asserts on durations. Needs about 4,100 open files (each connection
//! has a socket at both ends, in this one process); skipped, with a message, below that limit.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Checker, send_stream, spawn_reader, within};
use networkio::Node;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const PEERS: usize = 2_000;
/// Messages each way per peer.
const EACH_WAY: u64 = 3;
/// Connects in flight at once.
const CONCURRENCY: usize = 100;
/// Open files needed: two sockets per peer plus slack.
const FILES_NEEDED: u64 = 2 * PEERS as u64 + 500;

/// The soft open-files limit of this process, from /proc/self/limits.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_peers_exchange_both_ways() {
    match open_files_limit() {
        Some(limit) if limit >= FILES_NEEDED => {}
        other => {
            eprintln!(
                "skipping: {PEERS} peers in one process need about {FILES_NEEDED} open files, \
                 the soft limit is {other:?}; raise it (ulimit -n) to run this test"
            );
            return;
        }
    }
    let server = Node::builder("server")
        .insecure_plaintext()
        .listen("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let addr = server.local_addrs()[0];
    let checker = Arc::new(Mutex::new(Checker::default()));
    let server_read = spawn_reader(&server, checker.clone());

    // Connect every peer, at most CONCURRENCY at a time.
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let mut connecting = JoinSet::new();
    for i in 0..PEERS {
        let slots = slots.clone();
        connecting.spawn(async move {
            let _slot = slots.acquire_owned().await.unwrap();
            let node = Node::builder(format!("peer-{i}"))
                .insecure_plaintext()
                .start()
                .await
                .unwrap();
            let peer = node.connect(addr).await.unwrap();
            assert_eq!(peer.name(), "server");
            (node, peer)
        });
    }
    let mut clients = Vec::with_capacity(PEERS);
    within("2,000 peers to connect", async {
        while let Some(joined) = connecting.join_next().await {
            clients.push(joined.unwrap());
        }
    })
    .await;
    assert_eq!(clients.len(), PEERS);
    within("the server to count 2,000 connections", async {
        while server.connection_count() < PEERS {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(server.connection_count(), PEERS);
    let client_reads: Vec<_> = clients
        .iter()
        .map(|(node, _)| spawn_reader(node, checker.clone()))
        .collect();

    // Both ways at once: each peer sends EACH_WAY to the server, the server EACH_WAY to each.
    let mut sending = JoinSet::new();
    for (node, peer) in &clients {
        sending.spawn(send_stream(
            peer.clone(),
            node.name().to_owned(),
            EACH_WAY,
            16,
            checker.clone(),
        ));
        let back = server
            .peer(node.name())
            .expect("the server knows every peer");
        sending.spawn(send_stream(
            back,
            "server".to_owned(),
            EACH_WAY,
            16,
            checker.clone(),
        ));
    }
    within("every message to be acknowledged", async {
        while let Some(joined) = sending.join_next().await {
            joined.unwrap();
        }
    })
    .await;
    within("every message to be read", async {
        while !checker.lock().unwrap().complete() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // Counts per peer: the server read EACH_WAY from each peer, each peer EACH_WAY from it.
    assert_eq!(*server_read.borrow(), PEERS as u64 * EACH_WAY);
    for (i, read) in client_reads.iter().enumerate() {
        assert_eq!(*read.borrow(), EACH_WAY, "peer-{i} read");
    }
    {
        let c = checker.lock().unwrap();
        assert_eq!(c.total_sent(), 2 * PEERS as u64 * EACH_WAY);
        assert_eq!(c.reads(), 2 * PEERS as u64 * EACH_WAY);
        c.assert_exactly_once_in_order();
    }

    let mut closing = JoinSet::new();
    for (node, _) in clients {
        closing.spawn(async move { node.shutdown().await });
    }
    within("the peers to shut down", async {
        while let Some(joined) = closing.join_next().await {
            joined.unwrap();
        }
    })
    .await;
    server.shutdown().await;
}
