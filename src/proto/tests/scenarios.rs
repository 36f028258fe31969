//! Message flow over a healthy or broken connection: exchange, reads, back-pressure, cuts and
//! resumption, and frames injected at the session layer.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Mode, Pair, Side, established, test_config, wide_pair};
use crate::proto::frame::{self, Frame};
use crate::proto::{LinkError, ProtocolViolation, PushError, SessionEvent};

fn count(frames: &[Frame], pred: impl Fn(&Frame) -> bool) -> usize {
    frames.iter().filter(|f| pred(f)).count()
}

fn is_ack(f: &Frame) -> bool {
    matches!(f, Frame::Ack { .. })
}

fn data_seqs(frames: &[Frame]) -> Vec<u64> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Data { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

#[test]
fn exchange_in_both_directions_with_coalesced_acks() {
    let (mut pair, _) = wide_pair();

    assert_eq!(pair.send(Side::A, 200), 200);
    assert_eq!(pair.send(Side::B, 150), 150);
    pair.take_frames(Side::A);
    pair.take_frames(Side::B);
    pair.steps(3);
    // Each side received the other's messages in one input that drained its wire, so one ACK
    // covers them, sent at once: B's went out ahead of its own DATA, A's with its next
    // transmission, no time passing.
    assert_eq!(pair.session(Side::A).acked(), 200);
    assert_eq!(pair.session(Side::B).acked(), 150);
    assert_eq!(pair.read_all(Side::B), (1..=200).collect::<Vec<_>>());
    assert_eq!(pair.read_all(Side::A), (1..=150).collect::<Vec<_>>());
    assert_eq!(pair.session(Side::A).acked(), 200);
    assert_eq!(pair.session(Side::B).acked(), 150);

    // All messages went out in one step, so one cumulative ACK covers them.
    let (a, b) = (pair.take_frames(Side::A), pair.take_frames(Side::B));
    assert_eq!(data_seqs(&a), (1..=200).collect::<Vec<_>>());
    assert_eq!(
        count(&a, is_ack),
        1,
        "{:?}",
        a.iter().filter(|f| is_ack(f)).collect::<Vec<_>>()
    );
    assert_eq!(count(&b, is_ack), 1);
    assert!(b.iter().any(|f| matches!(f, Frame::Ack { up_to: 200, .. })));
    let delivered: Vec<_> = pair
        .take_events(Side::A)
        .into_iter()
        .filter(|e| matches!(e, SessionEvent::Delivered { .. }))
        .collect();
    assert_eq!(delivered, [SessionEvent::Delivered { up_to: 200 }]);
    pair.assert_delivery(Mode::Strict);
}

#[test]
fn reads_take_from_the_front_and_leave_the_rest() {
    let mut config = test_config();
    config.inbox.messages = 100;
    let mut pair = Pair::new(config);
    pair.connect();
    pair.step();
    pair.send(Side::A, 8);
    pair.steps(2);
    let b = Side::B;
    assert_eq!(pair.session(b).inbox_len(), 8);
    assert_eq!(pair.read(b, 0), Vec::<u64>::new());
    assert_eq!(pair.read(b, 1), [1]);
    assert_eq!(pair.read(b, 3), [2, 3, 4]);
    assert_eq!(pair.session(b).inbox_len(), 4);
    let peeked: Vec<Bytes> = pair.session(b).peek(2).cloned().collect();
    assert_eq!(
        peeked,
        [
            super::checker::payload(Side::A, 5),
            super::checker::payload(Side::A, 6)
        ]
    );
    assert_eq!(pair.read(b, 100), [5, 6, 7, 8]);
    assert_eq!(pair.read(b, 100), Vec::<u64>::new());
    assert_eq!(pair.session(b).inbox_bytes(), 0);
    pair.assert_delivery(Mode::Strict);
}

#[test]
fn a_full_inbox_pushes_back_to_the_sender_until_read() {
    let mut pair = Pair::established();
    pair.wire_limit = 128;
    let (a, b) = (Side::A, Side::B);
    let window = pair.config.window.messages;
    assert_eq!(pair.send(a, 100), window);
    assert_eq!(pair.send_one(a), Err(PushError::Full));
    // Enough steps for anything that could move to have moved.
    pair.steps(10);
    assert_eq!(pair.session(b).inbox_len(), pair.config.inbox.messages);
    // b granted no more than its inbox holds: a transmits nothing further, so nothing waits
    // unread on the wire and b keeps reading its socket (ACKs are never stuck behind DATA).
    assert_eq!(pair.wire_len(a), 0, "a respects b's window");
    // The inbox acknowledged what it holds, which freed that much window.
    assert_eq!(pair.session(a).acked(), 4);
    assert_eq!(pair.send(a, 100), 4);
    pair.steps(10);
    assert_eq!(
        pair.send_one(a),
        Err(PushError::Full),
        "the window stays full while b does not read"
    );
    assert_eq!(pair.session(a).unacked_len(), window);

    let mut read = Vec::new();
    while read.len() < 12 {
        read.extend(pair.read(b, 3));
        pair.step();
    }
    assert_eq!(read, (1..=12).collect::<Vec<_>>());
    assert!(pair.send(a, 100) > 0, "the window opened again");
    pair.assert_delivery(Mode::Strict);
}

/// Random traffic, cut at random byte offsets (mostly mid-frame), reconnected: every reconnect
/// resumes the session and nothing is lost or repeated.
#[test]
fn cuts_mid_frame_resume_without_loss_or_duplication() {
    for seed in 0..40 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut pair = Pair::established();
        pair.checker.set_seed(seed);
        pair.take_events(Side::A);
        pair.take_events(Side::B);
        for _ in 0..12 {
            for side in [Side::A, Side::B] {
                pair.send(side, rng.random_range(0..6));
            }
            for _ in 0..rng.random_range(0..3) {
                pair.step();
                let side = if rng.random_bool(0.5) {
                    Side::A
                } else {
                    Side::B
                };
                pair.read(side, rng.random_range(1..4));
            }
            pair.transmit(Side::A);
            pair.transmit(Side::B);
            let keep = [Side::A, Side::B].map(|s| rng.random_range(0..=pair.wire_len(s)));
            pair.cut_at(keep);
            pair.connect();
            pair.step();
            for side in [Side::A, Side::B] {
                let errors = pair.take_errors(side);
                let events = pair.take_events(side);
                assert_eq!(
                    established(&events),
                    [true],
                    "seed {seed}: {events:?} {errors:?}"
                );
            }
        }
        pair.assert_delivery(Mode::Strict);
    }
}

#[test]
fn a_lost_ack_does_not_cause_redelivery() {
    let mut pair = Pair::established();
    let (a, b) = (Side::A, Side::B);
    pair.send(a, 3);
    pair.half_step(a);
    assert_eq!(pair.session(b).inbox_len(), 3);
    pair.cut(); // b's ACK for 1..=3 was never written
    assert_eq!(pair.session(a).acked(), 0);
    pair.take_frames(a);
    pair.connect();
    pair.steps(2);
    assert_eq!(pair.session(a).acked(), 3, "b's SESSION said it expects 4");
    assert_eq!(
        data_seqs(&pair.take_frames(a)),
        Vec::<u64>::new(),
        "nothing replayed"
    );
    assert_eq!(pair.read_all(b), [1, 2, 3]);
    pair.assert_delivery(Mode::Strict);
}

#[test]
fn resume_retransmits_from_the_peers_next_expected() {
    let mut pair = Pair::established();
    let (a, b) = (Side::A, Side::B);
    pair.wire_limit = 1 << 20;
    pair.send(a, 5);
    let frames = pair.transmit(a);
    assert_eq!(
        data_seqs(&frames),
        [1, 2, 3, 4],
        "b's window is its 4-message inbox; the fifth waits"
    );
    // Keep the first two DATA frames and half of the third.
    let mut encoded = bytes::BytesMut::new();
    for f in &frames[..2] {
        frame::encode(f, &mut encoded);
    }
    let keep = encoded.len() + 7;
    pair.cut_at([keep, 0]);
    assert_eq!(pair.session(b).inbox_len(), 2);
    pair.take_frames(a);
    pair.connect();
    pair.steps(3);
    assert_eq!(data_seqs(&pair.take_frames(a)), [3, 4]);
    // The inbox holds 4: the fifth goes once b's reading reopens the window.
    let mut read = pair.read_all(b);
    pair.steps(2); // b's window update, then a's DATA
    read.extend(pair.read_all(b));
    assert_eq!(read, [1, 2, 3, 4, 5]);
    pair.assert_delivery(Mode::Strict);
}

#[test]
fn cuts_during_the_handshake() {
    let mut pair = Pair::new(test_config());
    let (a, b) = (Side::A, Side::B);
    pair.send(a, 3);
    // After the HELLOs, before any SESSION.
    pair.connect();
    pair.cut();
    pair.connect();
    pair.step();
    assert_eq!(established(&pair.take_events(a)), [false]);
    assert_eq!(established(&pair.take_events(b)), [false]);
    pair.steps(2);
    pair.send(b, 2);
    pair.read_all(b);

    // An established session, then a handshake cut before SESSION: still resumable.
    pair.connect();
    pair.cut();
    pair.connect();
    pair.step();
    assert_eq!(established(&pair.take_events(a)), [true]);
    assert_eq!(established(&pair.take_events(b)), [true]);

    // Only a's SESSION gets through: b resumes, a does not know yet; the next link resumes both.
    pair.send(a, 2);
    pair.connect();
    pair.half_step(a);
    pair.transmit(b);
    pair.cut();
    assert_eq!(established(&pair.take_events(a)), Vec::<bool>::new());
    assert_eq!(established(&pair.take_events(b)), [true]);
    pair.connect();
    pair.step();
    assert_eq!(established(&pair.take_events(a)), [true]);
    assert_eq!(established(&pair.take_events(b)), [true]);
    pair.assert_delivery(Mode::Strict);
}

#[test]
fn duplicates_gaps_and_bogus_acks_at_the_session_layer() {
    let mut pair = Pair::established();
    pair.violations_are_bugs = false;
    let (a, b) = (Side::A, Side::B);
    pair.send(a, 3);
    pair.half_step(a);
    let now = pair.now();
    let data = |seq: u64| Frame::Data {
        seq,
        payload: super::checker::payload(Side::A, seq),
    };

    for seq in [1, 2, 3] {
        assert_eq!(pair.session_mut(b).handle_frame(now, data(seq)), Ok(false));
    }
    assert_eq!(pair.inject_duplicate(b), Some(Ok(false)));
    assert_eq!(
        pair.session(b).inbox_len(),
        3,
        "duplicates are dropped silently"
    );
    assert!(pair.session(b).is_established());

    assert_eq!(
        pair.session_mut(b).handle_frame(now, data(5)),
        Err(LinkError::Violation(ProtocolViolation::SequenceGap {
            expected: 4,
            got: 5
        }))
    );
    assert_eq!(
        pair.session_mut(a).handle_frame(
            now,
            Frame::Ack {
                up_to: 4,
                window_messages: 0,
                window_bytes: 0,
            },
        ),
        Err(LinkError::Violation(ProtocolViolation::AckOfUnsent {
            up_to: 4,
            sent: 3
        }))
    );
    assert_eq!(pair.session(a).acked(), 0, "a bogus ACK releases nothing");

    // Through the wire, a gap ends the link with the code that blames the peer.
    let mut wire = bytes::BytesMut::new();
    frame::encode_data(9, b"x", &mut wire);
    let result = pair.session_mut(b).handle_input(now, &mut wire);
    let Err(error) = result else {
        panic!("a gap must be refused: {result:?}");
    };
    assert_eq!(
        error.close_code(),
        Some(crate::proto::CloseCode::ProtocolError)
    );
    assert!(!pair.session(b).is_established(), "the link is detached");
    pair.cut();
    pair.assert_delivery(Mode::Strict);
}

/// A connection that breaks when only a has established a new session: b never knew of it, and
/// a had sent no DATA in it (none goes out before the peer confirms), so it starts again quietly.
#[test]
fn a_cut_first_handshake_starts_again_quietly() {
    let mut pair = Pair::new(test_config());
    pair.send(Side::A, 3);
    pair.connect();
    pair.half_step(Side::B);
    assert!(pair.session(Side::A).is_established() && !pair.session(Side::B).is_established());
    assert_eq!(
        data_seqs(&pair.transmit(Side::A)),
        Vec::<u64>::new(),
        "unconfirmed: no DATA"
    );
    pair.cut();
    pair.connect();
    pair.steps(3);
    assert_eq!(pair.read_all(Side::B), [1, 2, 3]);
    pair.assert_delivery(Mode::Strict);
}

#[test]
fn a_send_asks_to_wake_the_driver_only_when_it_gives_the_link_work() {
    // The driver sleeps once it has transmitted what it could; `send_noting` says when a
    // message needs it awake. Whenever it says no, the driver already had work (or the message
    // cannot go yet), so sleeping loses nothing.
    let mut pair = Pair::established();
    let send = |pair: &mut Pair| {
        let had_work = pair.session(Side::A).wants_transmit();
        let (_, wake) = pair.send_one_noting(Side::A).unwrap();
        assert!(wake || had_work || !pair.session(Side::A).wants_transmit());
        wake
    };
    // Caught up: the first message is work; the second waits behind it.
    assert!(send(&mut pair));
    assert!(!send(&mut pair));
    // Both go out; the next is work again.
    assert_eq!(data_seqs(&pair.transmit(Side::A)), [1, 2]);
    assert!(send(&mut pair));
    // The peer's window (its inbox: 4 messages) is used up: messages queued beyond it are no
    // work until it grants more.
    assert!(!send(&mut pair));
    assert_eq!(data_seqs(&pair.transmit(Side::A)), [3, 4]);
    assert!(!send(&mut pair));
    assert!(!pair.session(Side::A).wants_transmit());
    // The peer reads and grants again: the queued message goes out, and the next is work.
    pair.steps(2);
    assert_eq!(pair.read_all(Side::B), [1, 2, 3, 4]);
    pair.steps(2);
    assert_eq!(pair.read_all(Side::B), [5]);
    assert!(send(&mut pair));
    // No link: every message wakes the driver, which arms the expiry timer.
    pair.cut();
    assert!(send(&mut pair));
    assert!(send(&mut pair));
}
