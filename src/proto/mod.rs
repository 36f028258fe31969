//! The sans-IO protocol core: frames, the handshake, the per-peer session state machine, and the
//! endpoint (the peer table and which connection owns which session).
//!
//! Nothing here performs I/O, spawns tasks or reads the clock: bytes come in through
//! `handle_input`, bytes go out through `poll_transmit`, and time is an argument. The tokio driver
//! in the tokio driver (`src/node`) is one way to run it; the tests in `proto/tests` run two sessions against each
//! other in memory with a virtual clock, and the fuzz targets feed it arbitrary bytes.
//!
//! Most applications never use this module directly: [`crate::Node`] is the API.
//!
//! Everything here handles bytes from the peer, so its non-test code must not be able to panic:
//! no `unwrap`/`expect`/`panic!`, no indexing or slicing that can go out of bounds, and no
//! arithmetic that can overflow (checked, saturating or wrapping forms only). Tests may do all
//! of that; `fuzzing` asserts invariants on purpose and opts out locally.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::arithmetic_side_effects
    )
)]

pub mod admission;
pub mod budget;
pub(crate) mod coalesce;
pub mod endpoint;
pub mod frame;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod handshake;
pub mod inbound;
mod origin;
pub mod outbound;
pub mod redial;
pub mod session;
pub mod stats;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

pub use budget::InboxBudget;
pub use frame::{CloseCode, Frame, FrameError};
pub use handshake::{Handshake, PeerHello};
pub use inbound::InboxLimits;
pub use origin::SessionRef;
pub use outbound::{PushError, WindowLimits};
pub use session::{Session, SessionEvent};
pub use stats::SessionCounters;

/// Longest node name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Limits and timers of the protocol. Every value is explicit; [`Config::default`] documents the
/// defaults.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Largest frame (type byte + body) accepted once the handshake is done.
    pub max_frame_len: usize,
    /// Largest frame accepted before the handshake completes (HELLO, SESSION, CLOSE are small).
    pub handshake_frame_len: usize,
    /// The outbound window.
    pub window: WindowLimits,
    /// The inbox.
    pub inbox: InboxLimits,
    /// Send a PING after this long without sending anything.
    pub heartbeat_interval: Duration,
    /// Longest an acknowledgement of received data waits to be coalesced with later data. Data
    /// arriving a few messages at a time, or followed by no more input
    /// ([`Session::input_drained`](crate::proto::Session::input_drained)), is acknowledged at
    /// once; while it streams in, an ACK goes out per quarter of the inbox received, or this long
    /// after the first unacknowledged message, whichever comes first.
    pub ack_delay: Duration,
    /// Declare the connection dead after this long without receiving anything.
    pub idle_timeout: Duration,
    /// Shortest time an owed answer (an acknowledgement, the answer to a PING) may take before
    /// the link is suspected dead and a dialer races fresh connections against it (see
    /// [`Session::is_suspect`](crate::proto::Session::is_suspect)).
    pub suspect_floor: Duration,
    /// The suspicion bound in smoothed round trips, when that is longer than the floor.
    pub suspect_rtt_factor: u32,
    /// Absolute deadline for the handshake, from the moment the connection exists.
    pub handshake_timeout: Duration,
    /// How long a session outlives its last connection before it is dropped.
    pub session_expiry: Duration,
}

impl Default for Config {
    fn default() -> Self {
        let max_message = 1 << 20;
        Config {
            max_frame_len: frame_len_for(max_message),
            handshake_frame_len: 1024,
            window: WindowLimits {
                messages: 16 * 1024,
                bytes: 8 << 20,
                max_message,
            },
            inbox: InboxLimits {
                messages: 16 * 1024,
                bytes: 8 << 20,
            },
            heartbeat_interval: Duration::from_secs(5),
            ack_delay: Duration::from_millis(1),
            idle_timeout: Duration::from_secs(20),
            suspect_floor: Duration::from_secs(1),
            suspect_rtt_factor: 4,
            handshake_timeout: Duration::from_secs(10),
            session_expiry: Duration::from_secs(3600),
        }
    }
}

impl Config {
    /// Sets the largest message and the frame limit that follows from it.
    pub fn set_max_message(&mut self, max_message: usize) {
        self.window.max_message = max_message;
        self.max_frame_len = frame_len_for(max_message);
    }
}

/// The frame limit (type byte + body) for DATA frames carrying up to `max_message` bytes.
fn frame_len_for(max_message: usize) -> usize {
    max_message
        .saturating_add(frame::DATA_OVERHEAD)
        .saturating_sub(4)
}

/// `t + d`, or the latest representable instant before it when that overflows (a timer set that
/// far out never fires in practice, which is what a huge duration means). Never panics.
pub(crate) fn instant_after(t: Instant, d: Duration) -> Instant {
    let mut d = d;
    loop {
        if let Some(at) = t.checked_add(d) {
            return at;
        }
        // Halving reaches zero, and `t + 0` always succeeds.
        d = d.checked_div(2).unwrap_or_default();
    }
}

/// The peer broke the protocol. Always the peer's fault; the connection is closed with a reason,
/// the session and the node carry on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// Bytes that do not decode as a frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A frame that is valid but not allowed in the current state.
    #[error("unexpected {frame} frame {state}")]
    UnexpectedFrame {
        /// The frame type.
        frame: &'static str,
        /// The state it arrived in.
        state: &'static str,
    },
    /// No protocol version in common.
    #[error(
        "no common protocol version: we speak {ours_min}..={ours_max}, the peer {theirs_min}..={theirs_max}"
    )]
    UnsupportedVersion {
        /// Our oldest version.
        ours_min: u16,
        /// Our newest version.
        ours_max: u16,
        /// The peer's oldest version.
        theirs_min: u16,
        /// The peer's newest version.
        theirs_max: u16,
    },
    /// The peer's name is not acceptable.
    #[error("bad peer name: {0}")]
    BadName(#[from] NameError),
    /// The peer claims our own name.
    #[error("the peer claims our own name")]
    OwnName,
    /// An incarnation of zero (reserved for "none").
    #[error("zero incarnation")]
    ZeroIncarnation,
    /// Limits in the HELLO that cannot work (a zero message size, an idle timeout under 100 ms).
    #[error(
        "unworkable limits in HELLO: max message {max_message}, idle timeout {idle_timeout_ms} ms"
    )]
    BadLimits {
        /// The peer's advertised maximum message size.
        max_message: u32,
        /// The peer's advertised idle timeout.
        idle_timeout_ms: u32,
    },
    /// A DATA frame skipped ahead of the next expected sequence number.
    #[error("sequence gap: expected {expected}, got {got}")]
    SequenceGap {
        /// What we expected.
        expected: u64,
        /// What arrived.
        got: u64,
    },
    /// A DATA frame further behind the next expected sequence number than any window allows.
    #[error("sequence went backwards beyond the window: expected {expected}, got {got}")]
    SequenceBackwards {
        /// What we expected.
        expected: u64,
        /// What arrived.
        got: u64,
    },
    /// An acknowledgement of messages we never sent.
    #[error("ack up to {up_to} but only {sent} were sent")]
    AckOfUnsent {
        /// The acknowledged number.
        up_to: u64,
        /// The highest number we sent.
        sent: u64,
    },
    /// DATA beyond the flow-control window we granted.
    #[error(
        "message {seq} ({bytes} bytes in the session) exceeds the granted window (up to {limit_seq}, {limit_bytes} bytes)"
    )]
    FlowControl {
        /// The message's sequence number.
        seq: u64,
        /// Session payload bytes including it.
        bytes: u64,
        /// The highest sequence number granted.
        limit_seq: u64,
        /// The session payload bytes granted.
        limit_bytes: u64,
    },
    /// A resume point outside what is unacknowledged.
    #[error("resume from {next_expected} is outside {acked}+1..={sent}+1")]
    BadResumePoint {
        /// Where the peer asked to resume.
        next_expected: u64,
        /// What it had acknowledged.
        acked: u64,
        /// The highest number we sent.
        sent: u64,
    },
}

impl ProtocolViolation {
    /// The close code that tells the peer what it did wrong.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolViolation::Frame(e) => e.close_code(),
            ProtocolViolation::UnsupportedVersion { .. } => CloseCode::UnsupportedVersion,
            ProtocolViolation::BadName(_)
            | ProtocolViolation::OwnName
            | ProtocolViolation::ZeroIncarnation
            | ProtocolViolation::BadLimits { .. } => CloseCode::BadHello,
            _ => CloseCode::ProtocolError,
        }
    }
}

/// Why one connection (a link of a session) ended. The session itself survives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The peer broke the protocol; we close with [`ProtocolViolation::close_code`].
    #[error("peer protocol violation: {0}")]
    Violation(#[from] ProtocolViolation),
    /// The peer closed the connection with a CLOSE frame.
    #[error("closed by peer ({code}){}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    ClosedByPeer {
        /// The peer's code.
        code: CloseCode,
        /// The peer's reason text.
        reason: String,
    },
    /// Nothing received for the idle timeout.
    #[error("no data from the peer for {0:?}")]
    IdleTimeout(Duration),
    /// The handshake missed its deadline.
    #[error("handshake not completed within {0:?}")]
    HandshakeTimeout(Duration),
}

impl LinkError {
    /// The CLOSE code to send the peer, if one should be sent.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            LinkError::Violation(v) => Some(v.close_code()),
            LinkError::ClosedByPeer { .. } => None,
            LinkError::IdleTimeout(_) => Some(CloseCode::IdleTimeout),
            LinkError::HandshakeTimeout(_) => Some(CloseCode::HandshakeTimeout),
        }
    }
}

/// Why a node name is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The empty string.
    #[error("name is empty")]
    Empty,
    /// Longer than [`MAX_NAME_LEN`] bytes.
    #[error("name is longer than {MAX_NAME_LEN} bytes")]
    TooLong,
    /// A character outside `A-Z a-z 0-9 - _ . : @`.
    #[error("name contains {0:?}; allowed: ASCII letters, digits and - _ . : @")]
    BadChar(char),
}

/// Checks a node name: 1 to [`MAX_NAME_LEN`] bytes of ASCII letters, digits and `- _ . : @`.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@')))
    {
        Some(c) => Err(NameError::BadChar(c)),
        None => Ok(()),
    }
}
