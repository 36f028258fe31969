//! When acknowledgements go out: at once for a few messages and at the end of a burst, coalesced
//! while data streams in, and window updates as soon as a read frees credit.

use super::{Mode, Pair, Side};
use crate::proto::Config;
use crate::proto::frame::Frame;

/// The shared wide pair (windows and inboxes of a thousand messages, a quarter: 250), with the
/// frames of connecting taken as well.
fn wide_pair() -> (Pair, Config) {
    let (mut pair, config) = super::wide_pair();
    pair.take_frames(Side::A);
    pair.take_frames(Side::B);
    (pair, config)
}

/// The `up_to` of every ACK among `frames`.
fn acks(frames: &[Frame]) -> Vec<u64> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Ack { up_to, .. } => Some(*up_to),
            _ => None,
        })
        .collect()
}

#[test]
fn a_burst_is_acknowledged_once_the_input_is_drained_without_the_delay() {
    let (mut pair, _) = wide_pair();
    // A burst of 100: too many to count as a few, too few for a quarter of the inbox. It all
    // arrives in one read that empties the wire, so nothing more is coming to coalesce with:
    // the ACK goes out at once, with no time passing.
    assert_eq!(pair.send(Side::A, 100), 100);
    pair.half_step(Side::A);
    assert_eq!(pair.session(Side::B).inbox_len(), 100);
    assert!(!pair.session(Side::B).ack_held());
    pair.half_step(Side::B);
    assert_eq!(acks(&pair.take_frames(Side::B)), [100]);
    assert_eq!(pair.session(Side::A).acked(), 100);
    // Delivered means in the inbox: the application has not read any of it.
    assert_eq!(pair.session(Side::B).inbox_len(), 100);
    assert_eq!(pair.read_all(Side::B), (1..=100).collect::<Vec<_>>());
    pair.assert_delivery(Mode::Strict);
}

#[test]
fn acks_stay_coalesced_while_reads_come_in_full() {
    let (mut pair, _) = wide_pair();
    // 200 messages on the wire, read about 30 at a time (frames are 22 to 44 bytes): every read
    // but the last is full, so data is streaming and no ACK goes out until the last read
    // drains the wire. Then one ACK covers all 200.
    pair.read_limit = 1000;
    assert_eq!(pair.send(Side::A, 200), 200);
    pair.transmit(Side::A);
    let mut reads = 0;
    while pair.wire_len(Side::A) > 0 {
        pair.deliver(Side::B).unwrap();
        reads += 1;
        if pair.wire_len(Side::A) > 0 {
            assert!(pair.session(Side::B).ack_held());
            pair.transmit(Side::B);
            assert_eq!(acks(&pair.take_frames(Side::B)), [] as [u64; 0]);
        }
    }
    assert!(reads >= 5, "{reads} reads");
    pair.half_step(Side::B);
    assert_eq!(acks(&pair.take_frames(Side::B)), [200]);
    assert_eq!(pair.session(Side::A).acked(), 200);
    pair.assert_delivery(Mode::Strict);
}

#[test]
fn a_stream_is_acknowledged_per_quarter_of_the_inbox_or_after_the_delay() {
    let (mut pair, config) = wide_pair();
    pair.read_limit = 1000;
    // A few messages: acknowledged at once, even from a full read.
    assert_eq!(pair.send(Side::A, 3), 3);
    pair.steps(1);
    assert_eq!(pair.session(Side::A).acked(), 3);
    // A stream read in full reads: the ACK waits for the delay (or the drained input), and no
    // longer.
    assert_eq!(pair.send(Side::A, 200), 200);
    pair.steps(1);
    let first = pair.session(Side::B).inbox_len();
    assert!((16..200).contains(&(first - 3)), "{first}");
    assert_eq!(pair.session(Side::A).acked(), 3);
    pair.tick(config.ack_delay);
    pair.half_step(Side::B);
    assert_eq!(pair.session(Side::A).acked(), first as u64);
    // A quarter of the inbox in full reads: acknowledged without waiting for the delay.
    pair.read_all(Side::B);
    pair.steps(10);
    assert_eq!(pair.session(Side::A).acked(), 203);
    pair.read_all(Side::B);
    assert_eq!(pair.send(Side::A, 400), 400);
    pair.transmit(Side::A);
    while pair.session(Side::B).inbox_len() < 250 {
        pair.deliver(Side::B).unwrap();
    }
    assert!(pair.wire_len(Side::A) > 0);
    pair.transmit(Side::B);
    assert!(pair.session(Side::A).acked() < 203 + 250);
    pair.deliver(Side::A).unwrap();
    assert!(pair.session(Side::A).acked() >= 203 + 250);
    pair.assert_delivery(Mode::Strict);
}

#[test]
fn a_read_that_frees_credit_the_sender_needs_is_granted_at_once() {
    let (mut pair, _) = wide_pair();
    // A burst fills B's inbox: A may send no more until B's application reads.
    assert_eq!(pair.send(Side::A, 1000), 1000);
    pair.steps(2);
    assert_eq!(pair.session(Side::A).acked(), 1000);
    assert_eq!(pair.session(Side::B).inbox_len(), 1000);
    assert_eq!(pair.send(Side::A, 10), 10);
    pair.steps(2);
    assert_eq!(pair.session(Side::B).inbox_len(), 1000);
    pair.take_frames(Side::B);
    // Nothing more arrives at B: only its application's read opens the window, and the grant
    // goes out with the next transmission, no timer involved.
    assert!(!pair.session(Side::B).wants_transmit());
    assert_eq!(pair.read(Side::B, 1), [1]);
    assert!(pair.session(Side::B).wants_transmit());
    pair.half_step(Side::B);
    assert_eq!(acks(&pair.take_frames(Side::B)), [1000]);
    pair.half_step(Side::A);
    assert_eq!(pair.session(Side::B).inbox_len(), 1000);
    pair.assert_delivery(Mode::Strict);
}
