//! Chaos on real sockets: an in-process proxy cuts the connection at random points (mid-frame,
//! between delivery and acknowledgement, during the handshake) and refuses some reconnections,
//! while both sides send. The checker must find nothing lost, duplicated or out of order.
//!
//! The seed comes from `NETWORKIO_SEED` if set, else at random; it is printed, and included in
//! every failure message. The long soak is `cargo test --release --test chaos -- --ignored`.
#![allow(clippy::unwrap_used)]

mod common;

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Checker, send_stream, spawn_reader, within};
use networkio::Node;
use networkio_chaos::{ChaosConfig, ChaosProxy};

fn seed() -> u64 {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let seed = std::env::var("NETWORKIO_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("chaos seed: {seed} (rerun with NETWORKIO_SEED={seed})");
    seed
}

fn node(name: &str, plaintext: bool) -> networkio::NodeBuilder {
    let builder = Node::builder(name)
        .reconnect_backoff(Duration::from_millis(1), Duration::from_millis(20))
        .heartbeat(Duration::from_millis(200), Duration::from_secs(2));
    if plaintext {
        builder.insecure_plaintext()
    } else {
        builder
    }
}

struct Outcome {
    reconnects: u64,
    cuts: u64,
    refused: u64,
}

/// Both sides send `n` messages through a proxy that cuts after `cut_bytes` and refuses a tenth
/// of the connections; checks exactly-once in-order delivery both ways.
async fn run_chaos(
    seed: u64,
    n: u64,
    body: usize,
    cut_bytes: Range<u64>,
    plaintext: bool,
) -> Outcome {
    let server = node("server", plaintext)
        .listen("127.0.0.1:0")
        .start()
        .await
        .unwrap();
    let proxy = ChaosProxy::start(
        server.local_addrs()[0],
        ChaosConfig {
            seed,
            cut_after_bytes: Some(cut_bytes),
            reset: true,
            refuse_probability: 0.1,
            ..ChaosConfig::default()
        },
    )
    .await
    .unwrap();
    let client = node("client", plaintext).start().await.unwrap();
    let checker = Arc::new(Mutex::new(Checker::with_seed(seed)));
    let mut at_server = spawn_reader(&server, checker.clone());
    let mut at_client = spawn_reader(&client, checker.clone());

    // The first attempt may itself be refused or cut: retry as an application would.
    let to_server = within("first connection", async {
        loop {
            if let Ok(peer) = client.connect(proxy.local_addr()).await {
                return peer;
            }
        }
    })
    .await;
    let to_client = within("server sees the client", async {
        loop {
            if let Some(p) = server.peer("client") {
                return p;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    if std::env::var("CHAOS_DEBUG").is_ok() {
        let (a, b) = (to_server.clone(), to_client.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                eprintln!(
                    "client->server {:?}\nserver->client {:?}",
                    a.stats(),
                    b.stats()
                );
            }
        });
    }
    let up = tokio::spawn(send_stream(
        to_server.clone(),
        "client".into(),
        n,
        body,
        checker.clone(),
    ));
    let down = tokio::spawn(send_stream(
        to_client,
        "server".into(),
        n,
        body,
        checker.clone(),
    ));
    let fail = |what: &str| format!("{what} (seed {seed})");
    within(&fail("senders"), async {
        up.await.unwrap();
        down.await.unwrap();
    })
    .await;
    within(&fail("server inbox"), at_server.wait_for(|c| *c == n))
        .await
        .unwrap();
    within(&fail("client inbox"), at_client.wait_for(|c| *c == n))
        .await
        .unwrap();
    checker.lock().unwrap().assert_exactly_once_in_order();
    let stats = proxy.stats();
    let outcome = Outcome {
        reconnects: to_server.stats().reconnects,
        cuts: stats.cuts,
        refused: stats.refused,
    };
    eprintln!(
        "seed {seed}: {n} messages each way, {} reconnects, {} cuts, {} refused",
        outcome.reconnects, outcome.cuts, outcome.refused
    );
    client.shutdown().await;
    server.shutdown().await;
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_each_way_through_random_cuts() {
    let seed = seed();
    // ~45 bytes a message on the wire: about 9 MB in all, a cut every ~150 kB on average.
    let outcome = run_chaos(seed, 100_000, 16, 1..300_000, false).await;
    assert!(
        outcome.cuts >= 24,
        "too few cuts to mean anything: {} (seed {seed})",
        outcome.cuts
    );
    assert!(outcome.reconnects >= 24, "seed {seed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuts_during_the_handshake_and_right_after() {
    let seed = seed();
    // Budgets of a few hundred bytes: many connections die inside HELLO/SESSION, the rest
    // after a handful of frames, often between a DATA and its ACK.
    let outcome = run_chaos(seed, 400, 8, 1..400, true).await;
    assert!(outcome.cuts >= 20, "seed {seed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuts_during_the_tls_handshake_and_right_after() {
    let seed = seed();
    // A TLS 1.3 handshake with both certificates takes about 1.4 kB in all, and data only
    // counts once its (4 KiB at most) record is whole: budgets up to 12 kB cut many connections
    // inside TLS or HELLO/SESSION and most of the rest within a record or two.
    let outcome = run_chaos(seed, 2_000, 8, 1..12_000, false).await;
    assert!(outcome.cuts >= 20, "seed {seed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long soak: cargo test --release --test chaos -- --ignored"]
async fn soak_two_million_each_way() {
    let seed = seed();
    run_chaos(seed, 2_000_000, 64, 1..2_000_000, false).await;
}
