//! Errors. Each variant says whose fault it is: the caller's ([`Fault::Caller`]), the peer's
//! ([`Fault::Peer`]), the network's ([`Fault::Io`]), or nobody's: the node or session ended
//! ([`Fault::Ended`]).

use crate::proto::{LinkError, NameError, session::LostReason};

/// A boxed error from the payload codec.
pub type CodecError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in networkio's public API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
// A tag of its own, every variant's data after it and aligned: a `Result<T, Error>` then keeps `T`
// at an aligned offset and moves it as whole words. Without it the tag shared a byte with a
// nested enum's, results were copied as unaligned blobs, and store-to-load forwarding stalled:
// a sending loop's `send_bytes(..).await` took 45 ns instead of 36 (BENCHMARKS.md).
#[repr(u64)]
pub enum Error {
    /// `try_send` found the peer's outbound window full (caller: wait, or use `send`).
    #[error("the outbound window to the peer is full")]
    Full,
    /// The message is larger than the configured maximum (caller).
    #[error("message of {len} bytes exceeds the maximum message size of {max} bytes")]
    MessageTooLarge {
        /// Size of the encoded message.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// [`Peer::send_many`](crate::Peer::send_many) or
    /// [`Peer::send_bytes_many`](crate::Peer::send_bytes_many) was given no messages (caller):
    /// there is nothing to return a receipt for.
    #[error("a batch of messages to send was empty")]
    EmptyBatch,
    /// A node name that is not acceptable (caller).
    #[error("invalid node name: {0}")]
    InvalidName(#[from] NameError),
    /// A configuration value out of range (caller).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The value could not be serialised (caller).
    #[error("could not encode the message: {0}")]
    Encode(#[source] CodecError),
    /// A received message does not decode as the requested type (caller asked for the wrong
    /// type, or the peer sent something else). The message stays queued.
    #[error("received message does not decode as {type_name}: {source}")]
    Decode {
        /// The type that was asked for.
        type_name: &'static str,
        /// The codec's error.
        #[source]
        source: CodecError,
    },
    /// The peer misbehaved or refused us during connection setup (peer).
    #[error("connection to peer failed: {0}")]
    Link(#[from] LinkError),
    /// The session with the peer ended before this message was acknowledged; the message was
    /// handed back in an [`Event::SessionLost`](crate::Event::SessionLost).
    #[error("the session with the peer ended ({reason:?}) before the message was acknowledged")]
    SessionLost {
        /// Why the session ended.
        reason: LostReason,
    },
    /// A reply within a session ([`Peer::send_in`](crate::Peer::send_in) and its variants) was
    /// not queued because that session has ended: the peer restarted (a new process under the
    /// same name), shut down or forgot the session, or it expired. Nobody's fault, as with
    /// [`Error::SessionLost`]: the session can end at any moment, so the caller cannot check
    /// first. The message was not queued and is not handed back; whatever the application reads
    /// from the peer next belongs to a later session.
    #[error("the session the message belongs to has ended; nothing was queued")]
    SessionEnded,
    /// The TLS handshake with the peer failed (peer: wrong protocol, bad certificate, ...).
    #[error("TLS: {0}")]
    Tls(String),
    /// The peer's key may not use the name it claims (our trust policy refused it, or the
    /// key binding of a session refused it: another key holds the name).
    #[error("unauthorized peer: {0}")]
    Unauthorized(String),
    /// The node has been shut down.
    #[error("the node is shut down")]
    NodeClosed,
    /// The node's connection limit is reached (see `NodeConfig::max_connections`).
    #[error("connection limit of {max} reached")]
    ConnectionLimit {
        /// The limit.
        max: usize,
    },
    /// An operation did not complete in time.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// A socket error (I/O).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Whose fault an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The caller misused the API or passed bad input.
    Caller,
    /// The remote peer sent bad input or refused us.
    Peer,
    /// The network or the operating system.
    Io,
    /// The node or the session ended.
    Ended,
}

impl Error {
    /// Whose fault this error is.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Full
            | Error::EmptyBatch
            | Error::MessageTooLarge { .. }
            | Error::InvalidName(_)
            | Error::InvalidConfig(_)
            | Error::Encode(_)
            | Error::Decode { .. } => Fault::Caller,
            Error::Link(LinkError::IdleTimeout(_))
            | Error::Io(_)
            | Error::Timeout(_)
            | Error::ConnectionLimit { .. } => Fault::Io,
            Error::Link(_) | Error::Tls(_) | Error::Unauthorized(_) => Fault::Peer,
            Error::SessionLost { .. } | Error::SessionEnded | Error::NodeClosed => Fault::Ended,
        }
    }
}

/// `Result` with networkio's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
