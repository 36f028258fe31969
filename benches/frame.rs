//! Frame encoding and decoding: the per-message cost of the wire format.
//!
//! Run with `cargo bench --bench frame` (add `-- --quick` for a short run).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use networkio::proto::frame::{self, Frame};

/// Frames in one decode batch.
const FRAMES: usize = 1_000;
/// Payload sizes benchmarked: 64 B and 1 KiB.
const SIZES: [(usize, &str); 2] = [(64, "64B"), (1024, "1KiB")];
/// Accept any frame a test produces.
const MAX_LEN: usize = 1 << 20;

fn encode_data(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame/encode_data");
    group.throughput(Throughput::Elements(1));
    for (size, label) in SIZES {
        let payload = vec![0xab_u8; size];
        let mut out = BytesMut::with_capacity(size + frame::DATA_OVERHEAD);
        let mut seq = 0_u64;
        group.bench_function(label, |b| {
            b.iter(|| {
                out.clear();
                seq = seq.wrapping_add(1);
                frame::encode_data(black_box(seq), black_box(&payload), &mut out);
                black_box(&out);
            });
        });
    }
    group.finish();
}

fn decode_data(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame/decode_data_x1000");
    group.throughput(Throughput::Elements(FRAMES as u64));
    for (size, label) in SIZES {
        let payload = vec![0xab_u8; size];
        let mut encoded = BytesMut::new();
        for seq in 1..=FRAMES as u64 {
            frame::encode_data(seq, &payload, &mut encoded);
        }
        let encoded = encoded.freeze();
        group.bench_function(label, |b| {
            b.iter_batched(
                // The copy into a fresh buffer is setup, not measured.
                || BytesMut::from(&encoded[..]),
                |mut buf| {
                    let mut frames = 0;
                    while let Some(frame) = frame::decode(&mut buf, MAX_LEN).expect("valid frame") {
                        black_box(frame);
                        frames += 1;
                    }
                    assert_eq!(frames, FRAMES);
                    buf
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

fn ack_round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame/ack");
    group.throughput(Throughput::Elements(1));
    let ack = Frame::Ack {
        up_to: 123_456,
        window_messages: 16 * 1024,
        window_bytes: 8 << 20,
    };
    let mut buf = BytesMut::with_capacity(64);
    group.bench_function("encode_decode", |b| {
        b.iter(|| {
            buf.clear();
            frame::encode(black_box(&ack), &mut buf);
            let decoded = frame::decode(&mut buf, MAX_LEN).expect("valid frame");
            black_box(decoded)
        });
    });
    group.finish();
}

criterion_group!(benches, encode_data, decode_data, ack_round_trip);
criterion_main!(benches);
