//! networkio's side of the benchmarks: two nodes over loopback, acknowledgements, ordering and
//! resumability on, in plaintext or TLS mode.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use networkio::{Event, Node, NodeBuilder, Peer};

/// Which channel the nodes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Insecure plaintext (the protocol alone).
    Plaintext,
    /// TLS 1.3 with pinned keys (the default of the library).
    Tls,
}

pub fn builder(name: &str, mode: Mode) -> NodeBuilder {
    let builder = Node::builder(name);
    match mode {
        Mode::Plaintext => builder.insecure_plaintext(),
        Mode::Tls => builder,
    }
}

/// A connected pair: a sender and a receiver whose application reads everything at once.
pub struct Pair {
    pub sender: Node,
    pub receiver: Node,
    pub peer: Peer,
}

impl Pair {
    pub async fn start(mode: Mode) -> anyhow::Result<Pair> {
        let receiver = builder("bench-rx", mode)
            .listen("127.0.0.1:0")
            .start()
            .await?;
        let sender = builder("bench-tx", mode).start().await?;
        let peer = sender.connect(receiver.local_addrs()[0]).await?;
        Ok(Pair {
            sender,
            receiver,
            peer,
        })
    }

    pub async fn stop(self) {
        self.sender.shutdown().await;
        self.receiver.shutdown().await;
    }
}

/// Sends `count` messages of `size` bytes one way; returns the time until the receiving
/// application has read them all and the sender holds the acknowledgement of the last. With
/// `split`, each node runs on a thread of its own (see `super::side`). `metrics`: whether both
/// nodes keep node-wide totals and record them (`NodeBuilder::metrics`).
pub async fn throughput(
    mode: Mode,
    count: u64,
    size: usize,
    batch: usize,
    split: bool,
    metrics: bool,
) -> anyhow::Result<Duration> {
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let receiver = super::side(split, move || async move {
        let node = builder("bench-rx", mode)
            .listen("127.0.0.1:0")
            .metrics(metrics)
            .start()
            .await?;
        let mut events = node.events();
        let _ = addr_tx.send(node.local_addrs()[0]);
        let mut seen = 0u64;
        while seen < count {
            match events.recv().await {
                Some(Event::Message { peer }) => seen += peer.read_all_bytes().len() as u64,
                Some(_) => {}
                None => anyhow::bail!("receiver stopped after {seen} messages"),
            }
        }
        let read = Instant::now();
        // Up until the sender holds its acknowledgement.
        let _ = done_rx.await;
        node.shutdown().await;
        anyhow::Ok(read)
    });
    let addr = addr_rx.await.context("receiver did not start")?;
    let sender = super::side(split, move || async move {
        let node = builder("bench-tx", mode).metrics(metrics).start().await?;
        let peer = node.connect(addr).await?;
        // One payload for every message, as the raw-TCP baseline writes one prepared batch;
        // static, so that handing it over costs no reference counting (what producing a message
        // costs is the application's, not networkio's).
        let payload: &'static [u8] = Box::leak(vec![0xabu8; size].into_boxed_slice());
        let start = Instant::now();
        let mut last = None;
        if batch <= 1 {
            for _ in 0..count {
                last = Some(peer.send_bytes(Bytes::from_static(payload)).await?);
            }
        } else {
            let mut sent = 0;
            while sent < count {
                let n = (count - sent).min(batch as u64);
                let batch = (0..n).map(|_| Bytes::from_static(payload));
                last = Some(peer.send_bytes_many(batch).await?);
                sent += n;
            }
        }
        if let Some(receipt) = last {
            receipt.delivered().await?;
        }
        let acked = Instant::now();
        node.shutdown().await;
        anyhow::Ok((start, acked))
    });
    let sent = sender.await.context("sender");
    let _ = done_tx.send(());
    let (start, acked) = sent??;
    let read = receiver.await.context("receiver")??;
    Ok(acked.max(read) - start)
}

/// Send-to-Delivered latency of one message at a time.
pub async fn latencies(mode: Mode, samples: usize, size: usize) -> anyhow::Result<Vec<Duration>> {
    let pair = Pair::start(mode).await?;
    let reader = read_everything(&pair.receiver);
    let payload = Bytes::from(vec![0xabu8; size]);
    let times = super::time_rounds(samples, async || {
        let receipt = pair.peer.send_bytes(payload.clone()).await?;
        Ok(receipt.delivered().await?)
    })
    .await?;
    pair.stop().await;
    reader.abort();
    Ok(times)
}

/// A task that reads every message `node` receives as soon as it is notified: the receiving
/// application of the latency benchmarks.
pub fn read_everything(node: &Node) -> tokio::task::JoinHandle<()> {
    let mut events = node.events();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::Message { peer } = event {
                peer.read_all_bytes();
            }
        }
    })
}
