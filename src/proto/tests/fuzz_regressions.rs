//! Inputs on which a `proto::fuzzing` function once failed, run through the same function.
//!
//! `close_reason_*`: a CLOSE reason is decoded lossily (each invalid UTF-8 byte becomes U+FFFD,
//! three bytes), so 86+ invalid bytes decoded to a reason longer than `MAX_REASON_LEN`, which
//! `encode` truncates: `decode(encode(frame)) != frame`, and a decoded frame broke its own
//! documented bound. Found by the `frame_decode` fuzz target (and the random-input unit test).
//! Fixed: the decoded reason is truncated to `MAX_REASON_LEN` bytes at a char boundary.

use bytes::BytesMut;

use crate::proto::frame::{self, Frame, MAX_REASON_LEN};
use crate::proto::fuzzing;

/// The input libFuzzer reported (`fuzz/artifacts/frame_decode/crash-0e866dcb…`).
const CLOSE_REASON_CRASH: &[u8] = &[
    0, 0, 0, 117, 6, 42, 0, 0, 0, 0, 6, 6, 0, 6, 3, 0, 45, 45, 45, 45, 45, 45, 7, 0, 0, 0, 0, 0,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 45, 45, 45, 45, 7, 0, 0, 3, 45,
    45, 1, 0, 0, 0, 6, 6, 0, 0, 0, 1, 2,
];

/// The smallest form: CLOSE(ProtocolError) whose reason is 86 bytes of 0xff (258 decoded bytes).
fn close_with_invalid_reason(n: usize) -> Vec<u8> {
    let mut data = u32::try_from(3 + n).unwrap().to_be_bytes().to_vec();
    data.extend([0x06, 0, 1]);
    data.extend(std::iter::repeat_n(0xff, n));
    data
}

#[test]
fn close_reason_crash_from_the_fuzzer() {
    fuzzing::frame_decode(CLOSE_REASON_CRASH);
}

#[test]
fn close_reason_of_invalid_utf8_stays_within_the_limit_and_round_trips() {
    for n in [85, 86, 200, MAX_REASON_LEN] {
        let data = close_with_invalid_reason(n);
        fuzzing::frame_decode(&data);
        let decoded = frame::decode(&mut BytesMut::from(&data[..]), 1024);
        let Ok(Some(Frame::Close { reason, .. })) = decoded else {
            panic!("not a CLOSE: {decoded:?}");
        };
        assert!(reason.len() <= MAX_REASON_LEN, "{} bytes", reason.len());
        assert!(reason.chars().all(|c| c == char::REPLACEMENT_CHARACTER));
    }
}

/// Timers are `Instant + Duration`: with durations too large to add (possible in a `Config`,
/// and the peer's idle timeout feeds the heartbeat) that used to panic. Now such a timer lies at
/// the farthest representable instant and simply never fires.
#[test]
fn huge_durations_do_not_overflow_the_clock() {
    use std::time::Duration;

    use crate::proto::{Handshake, Session};

    let mut config = super::test_config();
    config.idle_timeout = Duration::MAX;
    config.session_expiry = Duration::MAX;
    config.handshake_timeout = Duration::MAX;
    config.heartbeat_interval = Duration::MAX;
    let now = std::time::Instant::now();
    let hs = Handshake::new(now, "a", 1, &config);
    assert!(hs.deadline() > now);
    let mut session = Session::new(now, 1, config);
    session.send(bytes::Bytes::from_static(b"x")).unwrap();
    assert!(session.poll_timeout().unwrap() > now);
    session.handle_timeout(now).unwrap();
    assert_eq!(session.unacked_len(), 1, "nothing expired");
}

/// Extreme sequence numbers and windows from the peer are refused or saturate, never overflow.
#[test]
fn extreme_peer_values_are_refused_or_saturate() {
    use super::{Pair, Side};

    let mut pair = Pair::established();
    pair.violations_are_bugs = false;
    let now = pair.now();
    let a = pair.session_mut(Side::A);
    let grant = Frame::Ack {
        up_to: 0,
        window_messages: u64::MAX,
        window_bytes: u64::MAX,
    };
    assert_eq!(a.handle_frame(now, grant), Ok(false));
    for seq in [0, 2, u64::MAX] {
        let data = Frame::Data {
            seq,
            payload: bytes::Bytes::new(),
        };
        assert!(a.handle_frame(now, data).is_err(), "seq {seq}");
    }
    let ack = Frame::Ack {
        up_to: u64::MAX,
        window_messages: u64::MAX,
        window_bytes: u64::MAX,
    };
    assert!(pair.session_mut(Side::A).handle_frame(now, ack).is_err());
}
