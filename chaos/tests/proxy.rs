//! Integration tests for `ChaosProxy` against tiny loopback servers.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use networkio_chaos::{ChaosConfig, ChaosProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// Upper bound for waiting on any single event.
const WAIT: Duration = Duration::from_secs(3);

/// An echo server on 127.0.0.1; echoes each connection until EOF, then
/// half-closes. Reports each accepted connection on the returned channel.
async fn echo_server() -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = tx.send(());
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                    let _ = w.shutdown().await;
                }
            });
        }
    });
    (addr, rx)
}

/// How a sink connection ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Eof,
    Error(std::io::ErrorKind),
}

/// A server on 127.0.0.1 that only reads; reports per connection how many
/// bytes it received and how the stream ended.
async fn sink_server() -> (SocketAddr, mpsc::UnboundedReceiver<(usize, End)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut total = 0;
                let end = loop {
                    match stream.read(&mut buf).await {
                        Ok(0) => break End::Eof,
                        Ok(n) => total += n,
                        Err(e) => break End::Error(e.kind()),
                    }
                };
                let _ = tx.send((total, end));
            });
        }
    });
    (addr, rx)
}

/// Reads until the stream ends (EOF or error); returns the bytes read
/// before that. Panics if it does not end within `WAIT`.
async fn read_until_closed(stream: &mut TcpStream) -> usize {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    timeout(WAIT, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .expect("connection should have been closed");
    total
}

/// Sends a message and reads the echo back.
async fn round_trip(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    timeout(WAIT, stream.read_exact(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(back, msg);
}

#[tokio::test]
async fn passes_bytes_through_unchanged_both_ways() {
    let (echo, _) = echo_server().await;
    let proxy = ChaosProxy::start(echo, ChaosConfig::default())
        .await
        .unwrap();
    let stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let (mut r, mut w) = stream.into_split();

    let data: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(31) >> 3) as u8)
        .collect();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        // Half-close: the proxy must pass the FIN on and keep forwarding the
        // echo back.
        w.shutdown().await.unwrap();
        w
    });
    let mut back = Vec::new();
    timeout(WAIT, r.read_to_end(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    assert!(back == data, "echoed data differs");
    let _w = writer.await.unwrap();

    let stats = proxy.stats();
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.refused, 0);
    assert_eq!(stats.cuts, 0);
    assert_eq!(stats.bytes_up, data.len() as u64);
    assert_eq!(stats.bytes_down, data.len() as u64);
}

async fn cut_after_exact_bytes(reset: bool) {
    let (sink, mut ends) = sink_server().await;
    let config = ChaosConfig {
        cut_after_bytes: Some(1000..1001),
        reset,
        ..ChaosConfig::default()
    };
    let proxy = ChaosProxy::start(sink, config).await.unwrap();
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    // One write larger than the budget: the cut lands mid-chunk.
    client.write_all(&[0xAB; 5000]).await.unwrap();

    let (received, end) = timeout(WAIT, ends.recv()).await.unwrap().unwrap();
    assert_eq!(received, 1000);
    if reset {
        assert_eq!(end, End::Error(std::io::ErrorKind::ConnectionReset));
    } else {
        assert_eq!(end, End::Eof);
    }
    // The client side is cut too.
    assert_eq!(read_until_closed(&mut client).await, 0);

    let stats = proxy.stats();
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.cuts, 1);
    assert_eq!(stats.bytes_up, 1000);
    assert_eq!(stats.bytes_down, 0);
}

#[tokio::test]
async fn cuts_after_exact_byte_count_with_reset() {
    cut_after_exact_bytes(true).await;
}

#[tokio::test]
async fn cuts_after_exact_byte_count_with_fin() {
    cut_after_exact_bytes(false).await;
}

#[tokio::test]
async fn byte_budget_counts_both_directions() {
    let (echo, _) = echo_server().await;
    let config = ChaosConfig {
        cut_after_bytes: Some(1000..1001),
        ..ChaosConfig::default()
    };
    let proxy = ChaosProxy::start(echo, config).await.unwrap();
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    // 400 up + 400 down = 800 of the 1000 bytes.
    round_trip(&mut client, &[1; 400]).await;
    // Whatever the interleaving, only 200 more bytes pass in total.
    client.write_all(&[2; 500]).await.unwrap();
    let echoed = read_until_closed(&mut client).await as u64;

    let stats = proxy.stats();
    assert_eq!(stats.cuts, 1);
    assert_eq!(stats.bytes_up + stats.bytes_down, 1000);
    assert_eq!(stats.bytes_down, 400 + echoed);
}

#[tokio::test]
async fn zero_byte_budget_cuts_immediately() {
    let (sink, mut ends) = sink_server().await;
    let config = ChaosConfig {
        cut_after_bytes: Some(0..1),
        ..ChaosConfig::default()
    };
    let proxy = ChaosProxy::start(sink, config).await.unwrap();
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(read_until_closed(&mut client).await, 0);
    let (received, _) = timeout(WAIT, ends.recv()).await.unwrap().unwrap();
    assert_eq!(received, 0);
    assert_eq!(proxy.stats().cuts, 1);
}

#[tokio::test]
async fn cut_points_are_reproducible_from_the_seed() {
    async fn cut_points(seed: u64) -> Vec<usize> {
        let (sink, mut ends) = sink_server().await;
        let config = ChaosConfig {
            seed,
            cut_after_bytes: Some(1..20_000),
            ..ChaosConfig::default()
        };
        let proxy = ChaosProxy::start(sink, config).await.unwrap();
        let mut points = Vec::new();
        for _ in 0..4 {
            let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
            // Ignore errors: the cut may come while we are still writing.
            let _ = client.write_all(&[9; 20_000]).await;
            let (received, _) = timeout(WAIT, ends.recv()).await.unwrap().unwrap();
            points.push(received);
        }
        points
    }
    let a = cut_points(7).await;
    assert_eq!(a, cut_points(7).await);
    assert_ne!(a, cut_points(8).await);
    assert!(a.iter().all(|&n| (1..20_000).contains(&n)), "{a:?}");
}

#[tokio::test]
async fn cuts_after_a_duration() {
    let (echo, _) = echo_server().await;
    let config = ChaosConfig {
        cut_after: Some(Duration::from_millis(50)..Duration::from_millis(60)),
        ..ChaosConfig::default()
    };
    let proxy = ChaosProxy::start(echo, config).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
    client.write_all(b"hello").await.unwrap();
    // The echo may or may not make it back before the cut (on a slow
    // machine), but the cut must not come before 50 ms.
    let echoed = read_until_closed(&mut client).await;
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert!(echoed <= 5);
    let stats = proxy.stats();
    assert_eq!(stats.cuts, 1);
    assert_eq!(stats.bytes_down, echoed as u64);
}

#[tokio::test]
async fn refuses_every_connection_with_probability_one() {
    let (echo, mut connections) = echo_server().await;
    let config = ChaosConfig {
        refuse_probability: 1.0,
        ..ChaosConfig::default()
    };
    let proxy = ChaosProxy::start(echo, config).await.unwrap();
    for _ in 0..3 {
        let mut client = TcpStream::connect(proxy.local_addr()).await.unwrap();
        let _ = client.write_all(b"anyone there?").await;
        assert_eq!(read_until_closed(&mut client).await, 0);
    }
    let stats = proxy.stats();
    assert_eq!(stats.refused, 3);
    assert_eq!(stats.accepted, 0);
    assert_eq!(stats.bytes_up, 0);
    assert!(
        connections.try_recv().is_err(),
        "target must never be reached"
    );
}

#[tokio::test]
async fn pause_partitions_and_resume_heals() {
    let (echo, _) = echo_server().await;
    let proxy = ChaosProxy::start(echo, ChaosConfig::default())
        .await
        .unwrap();
    let mut live = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut live, b"before").await;

    proxy.pause();
    assert!(proxy.is_paused());
    assert_eq!(read_until_closed(&mut live).await, 0);
    let mut during = TcpStream::connect(proxy.local_addr()).await.unwrap();
    assert_eq!(read_until_closed(&mut during).await, 0);
    let stats = proxy.stats();
    assert_eq!(stats.cuts, 1);
    assert_eq!(stats.refused, 1);
    assert_eq!(stats.accepted, 1);

    proxy.resume();
    assert!(!proxy.is_paused());
    let mut after = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut after, b"after").await;
    assert_eq!(proxy.stats().accepted, 2);
}

#[tokio::test]
async fn cut_all_cuts_every_live_connection() {
    let (echo, _) = echo_server().await;
    let proxy = ChaosProxy::start(echo, ChaosConfig::default())
        .await
        .unwrap();
    let mut a = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut b = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut a, b"a").await;
    round_trip(&mut b, b"b").await;

    proxy.cut_all();
    assert_eq!(read_until_closed(&mut a).await, 0);
    assert_eq!(read_until_closed(&mut b).await, 0);
    assert_eq!(proxy.stats().cuts, 2);

    // New connections are unaffected.
    let mut c = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut c, b"c").await;
}

#[tokio::test]
async fn drop_tears_everything_down() {
    let (echo, _) = echo_server().await;
    let proxy = ChaosProxy::start(echo, ChaosConfig::default())
        .await
        .unwrap();
    let mut live = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut live, b"x").await;
    drop(proxy);
    assert_eq!(read_until_closed(&mut live).await, 0);
}

#[tokio::test]
async fn rejects_invalid_config() {
    let (echo, _) = echo_server().await;
    let config = ChaosConfig {
        refuse_probability: 2.0,
        ..ChaosConfig::default()
    };
    let err = ChaosProxy::start(echo, config).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}
