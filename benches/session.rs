//! Two sans-IO sessions joined in memory: the protocol core's cost per message, without sockets,
//! TLS or tokio.
//!
//! Per iteration the sender queues a batch of messages, writes them out, the receiver decodes
//! them, the application reads them all, the receiver's ack timer fires (the ack delay is zero
//! here) and its ACK goes back to the sender, which releases the batch. Run with `cargo bench --bench session` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use networkio::proto::{Config, Handshake, Session, SessionEvent};

/// Messages per batch.
const BATCH: usize = 1_000;
/// Message sizes benchmarked: 64 B and 1 KiB.
const SIZES: [(usize, &str); 2] = [(64, "64B"), (1024, "1KiB")];

/// A sender and a receiver with an established session, and the bytes in flight between them.
struct Pair {
    now: Instant,
    sender: Session,
    receiver: Session,
    /// Sender to receiver.
    forward: BytesMut,
    /// Receiver to sender.
    back: BytesMut,
}

impl Pair {
    /// Connects two fresh sessions through real HELLOs and runs the SESSION/ACK exchange until
    /// both may send DATA.
    fn connect() -> Pair {
        let now = Instant::now();
        // A batch of 1,000 is acknowledged when the ack delay runs out (a quarter of the inbox
        // would be 4,096); with no delay that is at once, when the round fires the timer.
        let config = Config {
            ack_delay: std::time::Duration::ZERO,
            ..Config::default()
        };
        let names = ["bench-sender", "bench-receiver"];
        let incarnations = [0xa000_0001, 0xb000_0001];
        let mut sessions = incarnations.map(|inc| Session::new(now, inc, config));
        let handshakes = [0, 1].map(|i| Handshake::new(now, names[i], incarnations[i], &config));
        let mut hellos = [BytesMut::new(), BytesMut::new()];
        for (hs, out) in handshakes.iter().zip(&mut hellos) {
            hs.write_hello(out);
        }
        for (i, mut hs) in handshakes.into_iter().enumerate() {
            let peer = hs
                .handle_input(now, &mut hellos[1 - i])
                .expect("valid HELLO")
                .expect("whole HELLO");
            let nonce = 0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(i as u64 + 1) | 1;
            sessions[i].begin_link(now, &peer, hs.deadline(), nonce);
        }
        let [sender, receiver] = sessions;
        let mut pair = Pair {
            now,
            sender,
            receiver,
            forward: BytesMut::new(),
            back: BytesMut::new(),
        };
        // SESSION both ways, then the confirming ACKs both ways.
        for _ in 0..2 {
            pair.sender
                .poll_transmit(now, &mut pair.forward, usize::MAX);
            pair.receiver.poll_transmit(now, &mut pair.back, usize::MAX);
            pair.receiver
                .handle_input(now, &mut pair.forward)
                .expect("receiver input");
            pair.sender
                .handle_input(now, &mut pair.back)
                .expect("sender input");
        }
        pair.drain_events();
        assert!(pair.sender.is_established() && pair.receiver.is_established());
        pair
    }

    fn drain_events(&mut self) {
        while let Some(event) = self.sender.poll_event() {
            assert!(!matches!(event, SessionEvent::Lost { .. }), "{event:?}");
        }
        while let Some(event) = self.receiver.poll_event() {
            assert!(!matches!(event, SessionEvent::Lost { .. }), "{event:?}");
        }
    }

    /// One batch: send, transmit, receive, read, acknowledge. Returns the messages read.
    fn round(&mut self, payload: &Bytes, n: usize) -> Vec<Bytes> {
        for _ in 0..n {
            self.sender.send(payload.clone()).expect("window has room");
        }
        self.sender
            .poll_transmit(self.now, &mut self.forward, usize::MAX);
        self.receiver
            .handle_input(self.now, &mut self.forward)
            .expect("receiver input");
        let read = self.receiver.read(n);
        self.receiver
            .handle_timeout(self.now)
            .expect("receiver timers");
        self.receiver
            .poll_transmit(self.now, &mut self.back, usize::MAX);
        self.sender
            .handle_input(self.now, &mut self.back)
            .expect("sender input");
        self.drain_events();
        read
    }
}

fn session_pair(c: &mut Criterion) {
    let mut group = c.benchmark_group("session/batch_x1000");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (size, label) in SIZES {
        let payload = Bytes::from(vec![0xab_u8; size]);
        let mut pair = Pair::connect();
        // Check once, outside the measurement, that a whole batch goes through and is acked.
        let read = pair.round(&payload, BATCH);
        assert_eq!(read.len(), BATCH);
        assert!(read.iter().all(|m| m == &payload));
        assert_eq!(pair.sender.unacked_len(), 0);
        assert!(pair.forward.is_empty() && pair.back.is_empty());
        group.bench_function(label, |b| {
            b.iter(|| {
                let read = pair.round(black_box(&payload), BATCH);
                debug_assert_eq!(read.len(), BATCH);
                black_box(read)
            });
        });
        assert_eq!(pair.sender.unacked_len(), 0);
    }
    group.finish();
}

criterion_group!(benches, session_pair);
criterion_main!(benches);
