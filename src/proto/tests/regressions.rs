//! Regression tests for defects the simulated pair found in the core.
//!
//! The two `one_sided_expiry_*` tests (and `props::g2_with_one_sided_expiry`): when one side's
//! session ended without a restart (expiry) and the replacement session's handshake completed on
//! that side only, the next connection paired the new session on one side with the old one on
//! the other, and both "resumed", because a SESSION offer named only the peer's incarnation.
//! Fixed by session ids: a session's id comes from both sides' nonces, and resumption needs both
//! offers to name the same id.
//!
//! `a_full_inbox_does_not_block_the_next_handshake`: the inbox-room check applied to every frame,
//! SESSION included. Fixed: it applies once the link is established (only DATA fills the inbox).

use super::{Mode, Pair, Side};
use crate::proto::SessionEvent;

const A: Side = Side::A;
const B: Side = Side::B;

/// The connection breaks and a's session expires; b's timer has not fired yet.
fn expire_a_only(pair: &mut Pair) {
    pair.cut();
    pair.advance(pair.config.session_expiry);
    pair.fire_timers(A).unwrap();
    assert!(matches!(
        pair.take_events(A).last(),
        Some(SessionEvent::Lost { .. })
    ));
}

/// On the next connection only b's SESSION reaches a: a starts a new session and transmits; the
/// connection breaks before a's SESSION reaches b. Then a connection that completes.
fn half_handshake_then_reconnect(pair: &mut Pair) {
    pair.connect();
    pair.half_step(B);
    assert!(pair.session(A).is_established() && !pair.session(B).is_established());
    pair.transmit(A);
    pair.cut();
    pair.connect();
    pair.steps(3);
}

/// b retransmits its old session's unacknowledged message into a's new session, which accepts it
/// as new: a's application reads it twice.
#[test]
fn one_sided_expiry_then_half_handshake_duplicates_messages() {
    let mut pair = Pair::established();
    pair.send(B, 1);
    pair.half_step(B);
    // a reads it; its ACK is lost with the connection.
    assert_eq!(pair.read_all(A), [1]);
    expire_a_only(&mut pair);
    half_handshake_then_reconnect(&mut pair);
    pair.assert_delivery(Mode::G2);
}

/// a already acknowledged 2 messages of the old session and queued 2 in its new one: b's resume
/// point (3) is beyond anything a's new session sent (it sends no DATA before confirmation), so
/// every later handshake fails with BadResumePoint, forever; a's new messages never leave.
#[test]
fn one_sided_expiry_then_half_handshake_wedges() {
    let mut pair = Pair::established();
    pair.send(A, 2);
    pair.steps(3);
    assert_eq!(pair.read_all(B), [1, 2]);
    expire_a_only(&mut pair);
    pair.send(A, 2);
    half_handshake_then_reconnect(&mut pair);
    pair.assert_delivery(Mode::G2);
}

/// b's application stops reading; the connection breaks; on the next one b cannot read a's
/// SESSION because its inbox is full (`process_input` checks room before every frame, SESSION
/// included), so b's handshake times out though both peers are alive, and the link flaps for as
/// long as b's application does not read. b's own messages to a cannot move meanwhile.
#[test]
fn a_full_inbox_does_not_block_the_next_handshake() {
    let mut pair = Pair::established();
    pair.send(A, 4);
    pair.steps(2);
    assert_eq!(pair.session(B).inbox_len(), pair.config.inbox.messages);
    pair.cut();
    pair.send(B, 2);
    pair.connect();
    pair.steps(2);
    pair.tick(pair.config.handshake_timeout);
    pair.steps(2);
    assert_eq!(pair.take_errors(B), [], "b's handshake must not time out");
    assert!(pair.session(B).is_established());
    assert_eq!(
        pair.read_all(A),
        [1, 2],
        "b's messages flow while b's inbox is full"
    );
    pair.assert_delivery(Mode::Strict);
}
