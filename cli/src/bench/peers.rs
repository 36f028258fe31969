//! `networkio bench-peers` (hidden): the far end of `bench connections`, run as a second process
//! so that the accepting side's memory is measured alone.
//!
//! Starts `--peers` client nodes (`peer-0`, `peer-1`, ...) that connect to `--connect` with at
//! most `--concurrency` connects in flight; each sends one message, waits for its delivery and
//! for the server's reply. With `--raw`, opens as many plain TCP connections instead, each
//! writing `--size` bytes and reading as many back.
//!
//! Progress goes to stdout, one line at a time:
//!
//! ```text
//! connected K        K peers connected so far (repeated as it grows)
//! done N lost L      every peer finished; L replies never arrived
//! error MESSAGE      gave up
//! ```
//!
//! Then the process holds every connection open until its stdin closes, and exits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use networkio::{Event, Node, Peer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::nio::{Mode, builder};

/// How long a peer waits for the server's reply once its own message is delivered.
const REPLY_WAIT: Duration = Duration::from_secs(30);
/// Attempts per connect (a loaded listener may refuse one now and then).
const CONNECT_ATTEMPTS: u32 = 5;

/// Internal: the peers of `networkio bench connections`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address of the accepting node (or raw listener).
    #[arg(long)]
    connect: SocketAddr,
    /// How many peers (connections) to open.
    #[arg(long)]
    peers: usize,
    /// Channel of the networkio peers.
    #[arg(long, value_enum, default_value_t = Mode::Plaintext)]
    mode: Mode,
    /// Plain TCP connections instead of networkio peers.
    #[arg(long)]
    raw: bool,
    /// Payload bytes of each peer's message (and of the reply).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Connects in flight at once.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    match exchange_all(&args).await {
        Ok((held, lost)) => {
            println!("done {} lost {lost}", args.peers);
            // Hold every connection until the parent is done measuring.
            let mut sink = Vec::new();
            let _ = tokio::io::stdin().read_to_end(&mut sink).await;
            drop(held);
            Ok(())
        }
        Err(e) => {
            println!("error {}", format!("{e:#}").replace('\n', " "));
            Err(e)
        }
    }
}

/// What keeps the connections open.
enum Held {
    Nio(#[allow(dead_code)] Vec<(Node, Peer)>),
    Raw(#[allow(dead_code)] Vec<TcpStream>),
}

async fn exchange_all(args: &Args) -> anyhow::Result<(Held, usize)> {
    let connected = Arc::new(AtomicUsize::new(0));
    let printer = tokio::spawn(print_progress(connected.clone()));
    let slots = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let payload = Bytes::from(vec![0x5au8; args.size]);
    let result = if args.raw {
        let mut tasks = JoinSet::new();
        for _ in 0..args.peers {
            let (slots, connected, payload) = (slots.clone(), connected.clone(), payload.clone());
            let addr = args.connect;
            tasks.spawn(async move {
                let permit = slots.acquire_owned().await?;
                let stream = raw_exchange(addr, &payload).await?;
                drop(permit);
                connected.fetch_add(1, Ordering::Relaxed);
                anyhow::Ok(stream)
            });
        }
        let mut held = Vec::with_capacity(args.peers);
        while let Some(joined) = tasks.join_next().await {
            held.push(joined.context("peer task")??);
        }
        Ok((Held::Raw(held), 0))
    } else {
        let mut tasks = JoinSet::new();
        for i in 0..args.peers {
            let (slots, connected, payload) = (slots.clone(), connected.clone(), payload.clone());
            let (addr, mode) = (args.connect, args.mode);
            tasks.spawn(async move {
                let permit = slots.acquire_owned().await?;
                let (node, peer) = nio_connect(i, addr, mode).await?;
                drop(permit);
                connected.fetch_add(1, Ordering::Relaxed);
                let replied = nio_exchange(&node, &peer, payload).await?;
                anyhow::Ok((node, peer, replied))
            });
        }
        let mut held = Vec::with_capacity(args.peers);
        let mut lost = 0;
        while let Some(joined) = tasks.join_next().await {
            let (node, peer, replied) = joined.context("peer task")??;
            lost += usize::from(!replied);
            held.push((node, peer));
        }
        Ok((Held::Nio(held), lost))
    };
    printer.abort();
    println!("connected {}", connected.load(Ordering::Relaxed));
    result
}

async fn print_progress(connected: Arc<AtomicUsize>) {
    let mut last = usize::MAX;
    loop {
        let now = connected.load(Ordering::Relaxed);
        if now != last {
            println!("connected {now}");
            last = now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn nio_connect(i: usize, addr: SocketAddr, mode: Mode) -> anyhow::Result<(Node, Peer)> {
    let node = builder(&format!("peer-{i}"), mode).start().await?;
    let mut attempt = 1;
    loop {
        match node.connect(addr).await {
            Ok(peer) => return Ok((node, peer)),
            Err(e) if attempt < CONNECT_ATTEMPTS => {
                tracing::debug!(error = %e, "peer-{i}: connect attempt {attempt} failed");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e).with_context(|| format!("peer-{i} could not connect")),
        }
    }
}

/// Sends one message, waits for its delivery, then for the server's reply: whether it came.
async fn nio_exchange(node: &Node, peer: &Peer, payload: Bytes) -> anyhow::Result<bool> {
    let mut events = node.events();
    peer.send_bytes(payload).await?.delivered().await?;
    let reply = async {
        while let Some(event) = events.recv().await {
            if let Event::Message { peer } = event {
                if !peer.read_all_bytes().is_empty() {
                    return true;
                }
            }
        }
        false
    };
    Ok(tokio::time::timeout(REPLY_WAIT, reply)
        .await
        .unwrap_or(false))
}

async fn raw_exchange(addr: SocketAddr, payload: &[u8]) -> anyhow::Result<TcpStream> {
    let mut attempt = 1;
    let mut stream = loop {
        match TcpStream::connect(addr).await {
            Ok(stream) => break stream,
            Err(e) if attempt < CONNECT_ATTEMPTS => {
                tracing::debug!(error = %e, "raw connect attempt {attempt} failed");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e).context("raw TCP connect"),
        }
    };
    stream.write_all(payload).await?;
    let mut reply = vec![0u8; payload.len()];
    stream.read_exact(&mut reply).await?;
    Ok(stream)
}
