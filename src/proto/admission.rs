//! Admitting a connection once its HELLO has named a peer: the key-binding rule, and the reasons
//! a node refuses a handshake.
//!
//! The decision is a pure function of the session's state, so every driver (the tokio node
//! today, any other endpoint later) applies the same rule and tests can check it exhaustively.

use super::CloseCode;

/// Why a node refused a connection during its handshake.
///
/// Each reason travels on the wire as its own CLOSE code (see [`RefusalReason::close_code`]),
/// so the refused side learns the real reason; the refusing node reports it in an
/// [`Event::Refused`](crate::Event::Refused). [`RefusalReason::label`] is a stable name for
/// logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The allowlist has no entry for the claimed name with the connection's key.
    NotAllowlisted,
    /// The known-peers file records another key for the claimed name.
    KnownPeerMismatch,
    /// A key seen for the first time could not be recorded in the known-peers file (the
    /// refusing node's own failure: its file is not writable). Not recorded, not trusted.
    KnownPeersUnwritable,
    /// A key seen for the first time under this name cannot be recorded: the known-peers file
    /// holds as many entries as it may, or the key already pins as many names as one key may
    /// ([`KnownPeersLimits`](crate::KnownPeersLimits)). Not recorded, not trusted.
    KnownPeersFull,
    /// Another key holds the claimed name: a live connection serves its session (under the
    /// open policy), or a session bound to another key is alive (under the other policies).
    NameInUse,
    /// The claimed name is new and the node holds as many sessions as it may
    /// ([`NodeConfig::max_sessions`](crate::NodeConfig::max_sessions)).
    SessionLimit,
    /// The node has as many connections as it may
    /// ([`NodeConfig::max_connections`](crate::NodeConfig::max_connections)); refused before
    /// any handshake, so no name is known.
    ConnectionLimit,
    /// A redial reached a node with another name than the peer its dialer serves (the address
    /// now leads elsewhere): that node is not attached, and the dialer keeps trying for its
    /// peer.
    UnexpectedPeer,
}

impl RefusalReason {
    /// Every reason, for code that keeps one counter per reason.
    pub const ALL: [RefusalReason; 8] = [
        RefusalReason::NotAllowlisted,
        RefusalReason::KnownPeerMismatch,
        RefusalReason::KnownPeersUnwritable,
        RefusalReason::KnownPeersFull,
        RefusalReason::NameInUse,
        RefusalReason::SessionLimit,
        RefusalReason::ConnectionLimit,
        RefusalReason::UnexpectedPeer,
    ];

    /// A stable `snake_case` name, for logs and metric labels.
    pub fn label(self) -> &'static str {
        match self {
            RefusalReason::NotAllowlisted => "not_allowlisted",
            RefusalReason::KnownPeerMismatch => "known_peer_mismatch",
            RefusalReason::KnownPeersUnwritable => "known_peers_unwritable",
            RefusalReason::KnownPeersFull => "known_peers_full",
            RefusalReason::NameInUse => "name_in_use",
            RefusalReason::SessionLimit => "session_limit",
            RefusalReason::ConnectionLimit => "connection_limit",
            RefusalReason::UnexpectedPeer => "unexpected_peer",
        }
    }

    /// The CLOSE code that tells the refused side.
    pub fn close_code(self) -> CloseCode {
        match self {
            RefusalReason::NotAllowlisted => CloseCode::Unauthorized,
            RefusalReason::KnownPeerMismatch => CloseCode::KeyMismatch,
            RefusalReason::KnownPeersUnwritable => CloseCode::TrustStoreFailed,
            RefusalReason::KnownPeersFull => CloseCode::TrustStoreFull,
            RefusalReason::NameInUse => CloseCode::NameInUse,
            RefusalReason::SessionLimit | RefusalReason::ConnectionLimit => CloseCode::Busy,
            RefusalReason::UnexpectedPeer => CloseCode::BadHello,
        }
    }

    /// The reason a peer's CLOSE code gives for refusing us, if it names one. `BUSY` names none:
    /// it also covers evicted handshakes, and its reason text tells which limit. Nor does
    /// `BAD_HELLO`, which mostly reports unacceptable HELLOs.
    pub fn from_close_code(code: CloseCode) -> Option<RefusalReason> {
        match code {
            CloseCode::Unauthorized => Some(RefusalReason::NotAllowlisted),
            CloseCode::KeyMismatch => Some(RefusalReason::KnownPeerMismatch),
            CloseCode::TrustStoreFailed => Some(RefusalReason::KnownPeersUnwritable),
            CloseCode::TrustStoreFull => Some(RefusalReason::KnownPeersFull),
            CloseCode::NameInUse => Some(RefusalReason::NameInUse),
            _ => None,
        }
    }
}

impl std::fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RefusalReason::NotAllowlisted => "not on the allowlist with this key",
            RefusalReason::KnownPeerMismatch => "known peers record another key for this name",
            RefusalReason::KnownPeersUnwritable => {
                "the key could not be recorded in the known-peers file"
            }
            RefusalReason::KnownPeersFull => {
                "the known-peers file is full, or this key pins as many names as it may"
            }
            RefusalReason::NameInUse => "the name is in use by another key",
            RefusalReason::SessionLimit => "too many sessions",
            RefusalReason::ConnectionLimit => "connection limit reached",
            RefusalReason::UnexpectedPeer => "dialed for another peer",
        })
    }
}

/// What to do with a connection, by the key it proved and the state of the session its HELLO
/// named (see [`binding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// Attach the connection: the session is bound to no key, or to this one.
    Attach,
    /// End the session (handing back everything unacknowledged, see
    /// [`LostReason::KeyChanged`](super::session::LostReason::KeyChanged)), then attach the
    /// connection to the fresh session.
    EndThenAttach,
    /// Refuse the connection ([`RefusalReason::NameInUse`]) without touching the session.
    Refuse,
}

/// The key-binding rule (PROTOCOL.md §2.5). `bound` is the key the session belongs to (`None`
/// if no session is established, or in plaintext mode), `key` the connection's key, `live`
/// whether a connection currently serves the session (established or still in its handshake),
/// and `names_pinned` whether the trust policy ties each name to one key (allowlist, known
/// peers) rather than letting any key use any name (open).
///
/// Another key never continues, receives or replaces a live connection's session. Where names
/// are pinned, a session outlives its connections bound to its key. Under the open policy a name
/// was never authenticated, so a session without a connection is ended for a new key rather
/// than locking the name until expiry: the new key gets a fresh session, never the old one's
/// messages.
pub fn binding<K: PartialEq>(
    bound: Option<&K>,
    key: Option<&K>,
    live: bool,
    names_pinned: bool,
) -> Binding {
    match bound {
        None => Binding::Attach,
        Some(bound) if Some(bound) == key => Binding::Attach,
        // (A connection without a key never takes a bound session: it could not be told apart.)
        Some(_) if live || names_pinned || key.is_none() => Binding::Refuse,
        Some(_) => Binding::EndThenAttach,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_rule_for_every_state() {
        let (a, b) = (1u8, 2u8);
        for live in [false, true] {
            for pinned in [false, true] {
                // Unbound, or bound to the same key: attach.
                assert_eq!(binding(None, Some(&b), live, pinned), Binding::Attach);
                assert_eq!(binding(Some(&a), Some(&a), live, pinned), Binding::Attach);
                assert_eq!(binding::<u8>(None, None, live, pinned), Binding::Attach);
            }
        }
        // Another key: refused while a connection serves the session, or where names are pinned.
        assert_eq!(binding(Some(&a), Some(&b), true, false), Binding::Refuse);
        assert_eq!(binding(Some(&a), Some(&b), true, true), Binding::Refuse);
        assert_eq!(binding(Some(&a), Some(&b), false, true), Binding::Refuse);
        // Open policy, no connection: the old session ends, the new key gets a fresh one.
        assert_eq!(
            binding(Some(&a), Some(&b), false, false),
            Binding::EndThenAttach
        );
        // A bound session never goes to a connection without a key.
        assert_eq!(binding(Some(&a), None, true, false), Binding::Refuse);
        assert_eq!(binding(Some(&a), None, false, false), Binding::Refuse);
    }

    #[test]
    fn refusal_reasons_travel_as_close_codes() {
        for reason in RefusalReason::ALL {
            let code = reason.close_code();
            let back = CloseCode::from_u16(code.to_u16());
            assert_eq!(back, code);
            match code {
                CloseCode::Busy | CloseCode::BadHello => {
                    assert_eq!(RefusalReason::from_close_code(back), None)
                }
                _ => assert_eq!(RefusalReason::from_close_code(back), Some(reason)),
            }
            assert!(!reason.label().is_empty() && !reason.to_string().is_empty());
        }
        let mut labels: Vec<_> = RefusalReason::ALL.iter().map(|r| r.label()).collect();
        labels.dedup();
        assert_eq!(labels.len(), RefusalReason::ALL.len());
    }
}
