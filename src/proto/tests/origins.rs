//! Which session each received message came from, and whether a session is still current: what
//! a reply within the session of a message checks (issue #12, defect 6).

use super::{Mode, Pair, Side};

const A: Side = Side::A;
const B: Side = Side::B;

#[test]
fn messages_keep_the_session_they_came_from_across_a_restart() {
    let mut pair = Pair::established();
    let first = pair.session(B).session().unwrap();
    assert!(pair.session(B).is_current(first));
    pair.send(A, 2);
    pair.steps(6);
    assert_eq!(pair.session(B).next_origin(), Some((first, 2)));

    // A's process is replaced by a new one under the same name: a new session, and the old one
    // is over for B even though its messages are still unread.
    pair.restart(A);
    pair.connect();
    pair.steps(6);
    let second = pair.session(B).session().unwrap();
    assert_ne!(second, first);
    assert_eq!(second.generation(), first.generation() + 1);
    assert!(!pair.session(B).is_current(first), "the old session ended");
    assert!(pair.session(B).is_current(second));
    pair.send(A, 2);
    pair.steps(6);
    assert_eq!(pair.session(B).inbox_len(), 4);

    // The old session's messages first, and never more than them in one run.
    assert_eq!(pair.session(B).next_origin(), Some((first, 2)));
    assert_eq!(pair.read(B, 1).len(), 1);
    assert_eq!(pair.session(B).next_origin(), Some((first, 1)));
    assert_eq!(pair.read(B, 1).len(), 1);
    assert_eq!(pair.session(B).next_origin(), Some((second, 2)));
    assert_eq!(pair.read_all(B).len(), 2);
    assert_eq!(pair.session(B).next_origin(), None);
    pair.heal();
    pair.assert_delivery(Mode::G2);
}

#[test]
fn sessions_that_ended_with_nothing_unread_are_not_remembered() {
    let mut pair = Pair::established();
    for _ in 0..3 {
        pair.send(A, 1);
        pair.steps(6);
        assert_eq!(pair.read_all(B).len(), 1);
        pair.restart(A);
        pair.connect();
        pair.steps(6);
    }
    pair.send(A, 1);
    pair.steps(6);
    let current = pair.session(B).session().unwrap();
    assert_eq!(current.generation(), 3);
    assert_eq!(pair.session(B).next_origin(), Some((current, 1)));
    pair.heal();
    pair.assert_delivery(Mode::G2);
}
