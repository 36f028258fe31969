//! What the session counts: retransmissions, duplicates, acknowledgements, hand-backs and the
//! round-trip estimate, over cuts, resumption and a restart.

use std::time::Duration;

use bytes::BytesMut;

use super::{Mode, Pair, Side, test_config};
use crate::proto::frame::{self, Frame};

#[test]
fn a_resumed_transfer_counts_retransmissions_and_duplicates_once() {
    let mut pair = Pair::established();
    let (a, b) = (Side::A, Side::B);
    pair.wire_limit = 1 << 20;
    pair.send(a, 5);
    let frames = pair.transmit(a);
    assert_eq!(frames.len(), 4, "b's 4-message inbox is the window");
    // Two DATA frames and half of the third get through, then the connection breaks.
    let mut encoded = BytesMut::new();
    for f in &frames[..2] {
        frame::encode(f, &mut encoded);
    }
    pair.cut_at([encoded.len() + 7, 0]);
    pair.connect();
    pair.steps(3);
    pair.read_all(b);
    pair.steps(3);
    pair.read_all(b);
    pair.steps(2);

    let sent = pair.session(a).counters();
    assert_eq!(sent.messages_sent, 5);
    assert_eq!(sent.messages_acked, 5);
    assert_eq!(
        sent.retransmitted, 2,
        "3 and 4 were lost with the connection"
    );
    assert_eq!(
        sent.messages_transmitted, 7,
        "1-4, then 3 and 4 again, then 5"
    );
    assert_eq!(sent.bytes_acked, sent.bytes_sent);
    let received = pair.session(b).counters();
    assert_eq!(received.messages_received, 5);
    assert_eq!(received.bytes_received, sent.bytes_sent);
    assert_eq!(received.duplicates_dropped, 0);

    assert_eq!(pair.inject_duplicate(b), Some(Ok(false)));
    let received = pair.session(b).counters();
    assert_eq!(received.duplicates_dropped, 1);
    assert_eq!(
        received.messages_received, 5,
        "a duplicate is not a new message"
    );
    pair.assert_delivery(Mode::Strict);
}

#[test]
fn a_restarted_peer_counts_a_lost_session_and_the_messages_handed_back() {
    let mut pair = Pair::established();
    let (a, b) = (Side::A, Side::B);
    pair.send(a, 3);
    pair.restart(b);
    pair.connect();
    pair.steps(2);
    let counters = pair.session(a).counters();
    assert_eq!(counters.sessions_lost, 1);
    assert_eq!(counters.messages_handed_back, 3);
    assert_eq!(counters.messages_sent, 3);
    assert_eq!(counters.messages_acked, 0);
    assert_eq!(counters.bytes_handed_back, counters.bytes_sent);
    // Counting goes on in the new session.
    pair.send(a, 2);
    pair.steps(2);
    let counters = pair.session(a).counters();
    assert_eq!((counters.messages_sent, counters.messages_acked), (5, 2));
    pair.assert_delivery(Mode::G2);
}

#[test]
fn the_round_trip_is_timed_from_data_to_its_ack() {
    let mut pair = Pair::new(test_config());
    let (a, b) = (Side::A, Side::B);
    pair.connect();
    pair.steps(2);
    assert_eq!(pair.session(a).rtt(), None);
    pair.send(a, 1);
    pair.half_step(a);
    pair.advance(Duration::from_millis(10));
    let acks = pair.transmit(b);
    assert!(matches!(acks.as_slice(), [Frame::Ack { up_to: 1, .. }]));
    let _ = pair.deliver(a);
    assert_eq!(pair.session(a).rtt(), Some(Duration::from_millis(10)));
    // A message transmitted before a cut is timed afresh on the next connection: the 5 s the
    // connection was down are no sample. (Its retransmission is acknowledged at once: 7/8 of
    // 10 ms.)
    pair.send(a, 1);
    pair.transmit(a);
    pair.cut();
    pair.advance(Duration::from_secs(5));
    pair.connect();
    pair.steps(2);
    assert_eq!(pair.session(a).rtt(), Some(Duration::from_micros(8750)));
    pair.read_all(b);
    pair.assert_delivery(Mode::Strict);
}
