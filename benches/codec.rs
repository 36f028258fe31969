//! Payload codec (MessagePack with field names): the cost `Peer::send`/`Peer::read` add on top
//! of the raw-bytes path.
//!
//! Run with `cargo bench --bench codec` (add `-- --quick` for a short run).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use networkio::codec;
use serde::{Deserialize, Serialize};

/// A small application message: a few fields, about 64 bytes encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    user: String,
    quantity: u32,
    price: f64,
    urgent: bool,
}

fn order() -> Order {
    Order {
        id: 0x0123_4567_89ab,
        user: "client-123".to_owned(),
        quantity: 42,
        price: 19.99,
        urgent: true,
    }
}

fn bench_value<T>(c: &mut Criterion, name: &str, value: &T)
where
    T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    let encoded = codec::encode(value).expect("encode");
    assert_eq!(&codec::decode::<T>(&encoded).expect("decode"), value);
    let mut group = c.benchmark_group(format!("codec/{name}"));
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("encode_{}B", encoded.len()), |b| {
        b.iter(|| codec::encode(black_box(value)).expect("encode"));
    });
    group.bench_function(format!("decode_{}B", encoded.len()), |b| {
        b.iter(|| codec::decode::<T>(black_box(&encoded)).expect("decode"));
    });
    group.finish();
}

fn codec_benches(c: &mut Criterion) {
    bench_value(c, "struct", &order());
    bench_value(c, "string64", &"x".repeat(64));
}

criterion_group!(benches, codec_benches);
criterion_main!(benches);
