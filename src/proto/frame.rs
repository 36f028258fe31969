//! Frames: the unit of the wire protocol (see `docs/PROTOCOL.md`, "Framing").
//!
//! Every frame is `length: u32 BE | type: u8 | body`, where `length` counts the type byte and the
//! body. [`decode`] checks `length` against the caller's limit as soon as the 4-byte header is
//! readable, before it buffers or allocates anything for the body.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Protocol magic carried by every HELLO frame.
pub const MAGIC: [u8; 4] = *b"NWIO";
/// The protocol version this implementation speaks (and the only one it accepts).
pub const VERSION: u16 = 1;
/// Bytes before the body: the length prefix and the type byte.
pub const HEADER_LEN: usize = 5;
/// Overhead of a DATA frame on top of its payload: header plus the sequence number.
pub const DATA_OVERHEAD: usize = HEADER_LEN + 8;
/// HELLO body bytes before the name: magic, versions, incarnation, limits, name length.
const HELLO_FIXED_LEN: usize = 4 + 2 + 2 + 8 + 4 + 4 + 1;
/// Longest reason text a CLOSE frame may carry, in bytes.
pub const MAX_REASON_LEN: usize = 256;

/// Frame type codes.
mod kind {
    pub const HELLO: u8 = 0x01;
    pub const SESSION: u8 = 0x02;
    pub const DATA: u8 = 0x03;
    pub const ACK: u8 = 0x04;
    pub const PING: u8 = 0x05;
    pub const CLOSE: u8 = 0x06;
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// First frame each side sends on a new connection.
    Hello(Hello),
    /// Second frame each side sends: what it knows of the session with the peer.
    Session(SessionOffer),
    /// One application message.
    Data {
        /// Per-session, per-direction sequence number, starting at 1.
        seq: u64,
        /// The message, opaque to the protocol.
        payload: Bytes,
    },
    /// Cumulative acknowledgement: every message with `seq <= up_to` has been received. Also
    /// grants the flow-control window: the sender may transmit messages `up_to + 1 ..=
    /// up_to + window_messages` whose payloads total at most `window_bytes`.
    Ack {
        /// Highest sequence number received in order.
        up_to: u64,
        /// Messages the receiver can still take beyond `up_to`.
        window_messages: u64,
        /// Payload bytes the receiver can still take beyond `up_to`.
        window_bytes: u64,
    },
    /// Keeps an idle connection observably alive.
    Ping,
    /// The sender is closing the connection, and why.
    Close {
        /// Why (see [`CloseCode`]).
        code: CloseCode,
        /// Human-readable detail, at most [`MAX_REASON_LEN`] bytes.
        reason: String,
    },
}

/// Body of a HELLO frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Oldest protocol version the sender speaks.
    pub min_version: u16,
    /// Newest protocol version the sender speaks.
    pub max_version: u16,
    /// Random, non-zero, fixed for the life of the sending process's node.
    pub incarnation: u64,
    /// Largest message payload the sender accepts, in bytes.
    pub max_message: u32,
    /// The sender declares the connection dead after this many milliseconds without receiving
    /// anything; the receiver of this HELLO sends heartbeats often enough to stay within it.
    pub idle_timeout_ms: u32,
    /// The sender's node name (validated by the handshake, not here).
    pub name: String,
}

/// Body of a SESSION frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOffer {
    /// The session the sender holds with the receiver; 0 for none. A session's id is
    /// `nonce_a ^ nonce_b` of the connection that started it (1 if that is 0).
    pub session_id: u64,
    /// Random, non-zero, new for every connection: the input to a new session's id.
    pub nonce: u64,
    /// The sequence number the sender expects next from the receiver (1 when it has no session).
    pub next_expected: u64,
    /// The initial flow-control window: messages the sender can take from the receiver,
    /// counted after `next_expected - 1` (after 0 if the session turns out to be new).
    pub window_messages: u64,
    /// The initial flow-control window in payload bytes, counted the same way.
    pub window_bytes: u64,
}

/// Why a connection is closed; carried by CLOSE frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseCode {
    /// The node is shutting down; its session ends with this connection.
    Shutdown,
    /// The peer broke the protocol.
    ProtocolError,
    /// No protocol version in common.
    UnsupportedVersion,
    /// The HELLO was unacceptable (bad name, our own name, zero incarnation, unworkable limits).
    /// Undecodable HELLOs
    /// (bad magic, truncated) are protocol errors.
    BadHello,
    /// A frame exceeded the receiver's limit.
    FrameTooLarge,
    /// The handshake did not complete in time.
    HandshakeTimeout,
    /// Nothing was received for longer than the idle timeout.
    IdleTimeout,
    /// A newer connection took over this session.
    Replaced,
    /// The node refuses more connections.
    Busy,
    /// The session expired.
    SessionExpired,
    /// The trust policy does not accept the connection's key for the name it claims (an
    /// allowlist has no such entry).
    Unauthorized,
    /// Another key holds the name (key binding): with a live connection under the open policy,
    /// or with a live session under the other policies.
    NameInUse,
    /// The node has recorded another key for the name (known peers).
    KeyMismatch,
    /// The node could not record the key for the name (its known-peers file is not writable):
    /// the refusing node's own failure.
    TrustStoreFailed,
    /// The node will not record the key for the name: its known-peers file holds as many
    /// entries as it may, or the key pins as many names as one key may.
    TrustStoreFull,
    /// A code this implementation does not know (kept so it can be reported).
    Other(u16),
}

impl CloseCode {
    /// The wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            CloseCode::Shutdown => 0,
            CloseCode::ProtocolError => 1,
            CloseCode::UnsupportedVersion => 2,
            CloseCode::BadHello => 3,
            CloseCode::FrameTooLarge => 4,
            CloseCode::HandshakeTimeout => 5,
            CloseCode::IdleTimeout => 6,
            CloseCode::Replaced => 7,
            CloseCode::Busy => 8,
            CloseCode::SessionExpired => 9,
            CloseCode::Unauthorized => 10,
            CloseCode::NameInUse => 11,
            CloseCode::KeyMismatch => 12,
            CloseCode::TrustStoreFailed => 13,
            CloseCode::TrustStoreFull => 14,
            CloseCode::Other(v) => v,
        }
    }

    /// The code for a wire value; unknown values are kept as [`CloseCode::Other`].
    pub fn from_u16(v: u16) -> Self {
        match v {
            0 => CloseCode::Shutdown,
            1 => CloseCode::ProtocolError,
            2 => CloseCode::UnsupportedVersion,
            3 => CloseCode::BadHello,
            4 => CloseCode::FrameTooLarge,
            5 => CloseCode::HandshakeTimeout,
            6 => CloseCode::IdleTimeout,
            7 => CloseCode::Replaced,
            8 => CloseCode::Busy,
            9 => CloseCode::SessionExpired,
            10 => CloseCode::Unauthorized,
            11 => CloseCode::NameInUse,
            12 => CloseCode::KeyMismatch,
            13 => CloseCode::TrustStoreFailed,
            14 => CloseCode::TrustStoreFull,
            other => CloseCode::Other(other),
        }
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            CloseCode::Shutdown => "shutdown",
            CloseCode::ProtocolError => "protocol error",
            CloseCode::UnsupportedVersion => "unsupported version",
            CloseCode::BadHello => "bad hello",
            CloseCode::FrameTooLarge => "frame too large",
            CloseCode::HandshakeTimeout => "handshake timeout",
            CloseCode::IdleTimeout => "idle timeout",
            CloseCode::Replaced => "replaced by a newer connection",
            CloseCode::Busy => "busy",
            CloseCode::SessionExpired => "session expired",
            CloseCode::Unauthorized => "unauthorized",
            CloseCode::NameInUse => "name in use",
            CloseCode::KeyMismatch => "key mismatch",
            CloseCode::TrustStoreFailed => "trust store failed",
            CloseCode::TrustStoreFull => "trust store full",
            CloseCode::Other(v) => return write!(f, "close code {v}"),
        };
        f.write_str(name)
    }
}

/// Why bytes from the peer could not be decoded. Always the peer's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announces more than the receiver accepts.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// The receiver's limit.
        max: usize,
    },
    /// A length prefix of zero (every frame has a type byte).
    #[error("empty frame")]
    Empty,
    /// An unknown frame type.
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    /// A frame whose body does not match its type.
    #[error("malformed {kind} frame: {detail}")]
    Malformed {
        /// Frame type name.
        kind: &'static str,
        /// What is wrong.
        detail: &'static str,
    },
}

impl FrameError {
    /// The close code to send the peer for this error.
    pub fn close_code(&self) -> CloseCode {
        match self {
            FrameError::TooLarge { .. } => CloseCode::FrameTooLarge,
            _ => CloseCode::ProtocolError,
        }
    }
}

/// Decodes one frame from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole frame (nothing is consumed), and
/// `Err(FrameError::TooLarge)` as soon as the header announces more than `max_len` bytes
/// (type + body), before any of the body is buffered. On success the frame's bytes are consumed.
pub fn decode(buf: &mut BytesMut, max_len: usize) -> Result<Option<Frame>, FrameError> {
    let Some(header) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let wire_len = u32::from_be_bytes(*header);
    let too_large = || FrameError::TooLarge {
        len: u64::from(wire_len),
        max: max_len,
    };
    let len = usize::try_from(wire_len).map_err(|_| too_large())?;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > max_len {
        return Err(too_large());
    }
    // Overflows only where usize is 32 bits and the limit is near usize::MAX: too large there.
    let total = len.checked_add(4).ok_or_else(too_large)?;
    let missing = total.saturating_sub(buf.len());
    if missing > 0 {
        // Reserve what is missing so the next read fills the frame without re-growing;
        // bounded by `max_len`, which was checked above.
        buf.reserve(missing);
        return Ok(None);
    }
    buf.advance(4);
    // Copied out rather than split off: a payload kept in an inbox must not pin the whole read
    // buffer it arrived in, so that inbox byte limits are the memory actually held. (`buf` holds
    // at least `len` more bytes: checked just above.)
    let mut body = Bytes::copy_from_slice(buf.get(..len).unwrap_or_default());
    buf.advance(len);
    // `len >= 1` was checked above, so the type byte is there.
    let kind = body.try_get_u8().map_err(|_| FrameError::Empty)?;
    parse_body(kind, body).map(Some)
}

fn parse_body(kind: u8, mut body: Bytes) -> Result<Frame, FrameError> {
    let malformed = |kind, detail| FrameError::Malformed { kind, detail };
    match kind {
        kind::HELLO => {
            if body.remaining() < HELLO_FIXED_LEN {
                return Err(malformed("HELLO", "too short"));
            }
            let mut magic = [0u8; 4];
            body.copy_to_slice(&mut magic);
            if magic != MAGIC {
                return Err(malformed("HELLO", "bad magic"));
            }
            let min_version = body.get_u16();
            let max_version = body.get_u16();
            let incarnation = body.get_u64();
            let max_message = body.get_u32();
            let idle_timeout_ms = body.get_u32();
            let name_len = usize::from(body.get_u8());
            if body.remaining() < name_len {
                return Err(malformed("HELLO", "name truncated"));
            }
            let name = body
                .get(..name_len)
                .ok_or_else(|| malformed("HELLO", "name truncated"))?;
            let name = std::str::from_utf8(name)
                .map_err(|_| malformed("HELLO", "name is not UTF-8"))?
                .to_owned();
            // Bytes after the name are extensions for later versions: ignored.
            Ok(Frame::Hello(Hello {
                min_version,
                max_version,
                incarnation,
                max_message,
                idle_timeout_ms,
                name,
            }))
        }
        kind::SESSION => {
            if body.remaining() < 40 {
                return Err(malformed("SESSION", "too short"));
            }
            Ok(Frame::Session(SessionOffer {
                session_id: body.get_u64(),
                nonce: body.get_u64(),
                next_expected: body.get_u64(),
                window_messages: body.get_u64(),
                window_bytes: body.get_u64(),
            }))
        }
        kind::DATA => {
            if body.remaining() < 8 {
                return Err(malformed("DATA", "too short"));
            }
            let seq = body.get_u64();
            Ok(Frame::Data { seq, payload: body })
        }
        kind::ACK => {
            if body.remaining() != 24 {
                return Err(malformed("ACK", "wrong length"));
            }
            Ok(Frame::Ack {
                up_to: body.get_u64(),
                window_messages: body.get_u64(),
                window_bytes: body.get_u64(),
            })
        }
        kind::PING => {
            if body.has_remaining() {
                return Err(malformed("PING", "unexpected body"));
            }
            Ok(Frame::Ping)
        }
        kind::CLOSE => {
            if body.remaining() < 2 {
                return Err(malformed("CLOSE", "too short"));
            }
            let code = CloseCode::from_u16(body.get_u16());
            if body.remaining() > MAX_REASON_LEN {
                return Err(malformed("CLOSE", "reason too long"));
            }
            let mut reason = String::from_utf8_lossy(&body).into_owned();
            // Each invalid byte becomes U+FFFD, three bytes: keep the text within
            // MAX_REASON_LEN as documented (and as `encode` does), so a decoded frame re-encodes
            // to itself.
            let kept = truncate_utf8(&reason, MAX_REASON_LEN).len();
            reason.truncate(kept);
            Ok(Frame::Close { code, reason })
        }
        other => Err(FrameError::UnknownType(other)),
    }
}

/// Appends the encoding of `frame` to `out`.
///
/// Never panics. A frame larger than `u32::MAX` bytes cannot be represented; callers prevent it
/// by checking message sizes against the configured limit on the way in (see `put_header`).
pub fn encode(frame: &Frame, out: &mut impl BufMut) {
    match frame {
        Frame::Hello(h) => {
            let name = truncate_utf8(&h.name, usize::from(u8::MAX));
            // At most 255 bytes after truncation: the sum cannot overflow.
            put_header(out, kind::HELLO, HELLO_FIXED_LEN.saturating_add(name.len()));
            out.put_slice(&MAGIC);
            out.put_u16(h.min_version);
            out.put_u16(h.max_version);
            out.put_u64(h.incarnation);
            out.put_u32(h.max_message);
            out.put_u32(h.idle_timeout_ms);
            out.put_u8(u8::try_from(name.len()).unwrap_or(u8::MAX));
            out.put_slice(name.as_bytes());
        }
        Frame::Session(s) => {
            put_header(out, kind::SESSION, 40);
            out.put_u64(s.session_id);
            out.put_u64(s.nonce);
            out.put_u64(s.next_expected);
            out.put_u64(s.window_messages);
            out.put_u64(s.window_bytes);
        }
        Frame::Data { seq, payload } => encode_data(*seq, payload, out),
        Frame::Ack {
            up_to,
            window_messages,
            window_bytes,
        } => {
            put_header(out, kind::ACK, 24);
            out.put_u64(*up_to);
            out.put_u64(*window_messages);
            out.put_u64(*window_bytes);
        }
        Frame::Ping => put_header(out, kind::PING, 0),
        Frame::Close { code, reason } => {
            let reason = truncate_utf8(reason, MAX_REASON_LEN);
            put_header(out, kind::CLOSE, reason.len().saturating_add(2));
            out.put_u16(code.to_u16());
            out.put_slice(reason.as_bytes());
        }
    }
}

/// Recognises a complete, well-formed DATA frame at the front of `buf` without consuming it or
/// building a [`Frame`] (the receiving hot path): its sequence number, where its payload lies in
/// `buf`, and its length on the wire. `None` for anything else, including a frame not yet
/// complete or one over `max_len`: [`decode`] is the authority on those.
pub fn peek_data(buf: &[u8], max_len: usize) -> Option<(u64, std::ops::Range<usize>, usize)> {
    let (header, rest) = buf.split_first_chunk::<5>()?;
    let [l0, l1, l2, l3, kind] = *header;
    let len = usize::try_from(u32::from_be_bytes([l0, l1, l2, l3])).ok()?;
    if kind != kind::DATA || len < 9 || len > max_len {
        return None;
    }
    let seq = u64::from_be_bytes(*rest.first_chunk::<8>()?);
    let total = len.checked_add(4)?;
    (buf.len() >= total).then_some((seq, 13..total, total))
}

/// Appends a DATA frame without building a [`Frame`] (the hot path).
pub fn encode_data(seq: u64, payload: &[u8], out: &mut impl BufMut) {
    // The prefix, type and sequence number go in one piece: one capacity check, not three.
    let len = frame_prefix(payload.len().saturating_add(8));
    let mut head = [0_u8; 13];
    head[..4].copy_from_slice(&len.to_be_bytes());
    head[4] = kind::DATA;
    head[5..].copy_from_slice(&seq.to_be_bytes());
    out.put_slice(&head);
    out.put_slice(payload);
}

/// Writes the length prefix and type byte of a frame whose body is `body_len` bytes.
///
/// Invariant (the callers' to keep): `1 + body_len <= u32::MAX`. Payloads are checked against
/// the configured maximum message size before they are queued, and every other frame is a few
/// hundred bytes at most. Should it ever be broken, the prefix saturates at `u32::MAX` instead of
/// panicking (the peer then rejects the frame as too large): a debug build asserts.
fn put_header(out: &mut impl BufMut, kind: u8, body_len: usize) {
    out.put_u32(frame_prefix(body_len));
    out.put_u8(kind);
}

/// The length prefix of a frame whose body is `body_len` bytes (see [`put_header`]).
fn frame_prefix(body_len: usize) -> u32 {
    let len = u32::try_from(body_len.saturating_add(1));
    debug_assert!(
        len.is_ok(),
        "frame body of {body_len} bytes exceeds the u32 length prefix"
    );
    len.unwrap_or(u32::MAX)
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    // Index 0 is always a char boundary, so this finds one at or below `max`.
    let end = (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    s.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn round_trip(frame: Frame) {
        let mut buf = BytesMut::new();
        encode(&frame, &mut buf);
        let encoded_len = buf.len();
        // Every strict prefix is "need more bytes", never an error.
        for cut in 0..encoded_len {
            let mut partial = BytesMut::from(&buf[..cut]);
            assert_eq!(decode(&mut partial, MAX), Ok(None), "prefix of {cut} bytes");
            assert_eq!(partial.len(), cut, "a partial frame must not be consumed");
            assert_eq!(peek_data(&partial, MAX), None, "prefix of {cut} bytes");
        }
        buf.extend_from_slice(b"tail");
        // The receiving fast path agrees with `decode` on DATA and declines everything else.
        match (&frame, peek_data(&buf, MAX)) {
            (Frame::Data { seq, payload }, Some((peeked, range, used))) => {
                assert_eq!(
                    (peeked, &buf[range], used),
                    (*seq, &payload[..], encoded_len)
                );
            }
            (Frame::Data { .. }, None) => panic!("peek_data missed a DATA frame"),
            (_, peeked) => assert_eq!(peeked, None),
        }
        assert_eq!(decode(&mut buf, MAX), Ok(Some(frame)));
        assert_eq!(&buf[..], b"tail", "exactly one frame consumed");
    }

    #[test]
    fn every_frame_round_trips() {
        round_trip(Frame::Hello(Hello {
            min_version: 1,
            max_version: 3,
            incarnation: 0xdead_beef_cafe,
            max_message: 1 << 20,
            idle_timeout_ms: 20_000,
            name: "server-001".into(),
        }));
        round_trip(Frame::Session(SessionOffer {
            session_id: 7,
            nonce: 9,
            next_expected: 42,
            window_messages: 100,
            window_bytes: 1 << 20,
        }));
        round_trip(Frame::Data {
            seq: 1,
            payload: Bytes::from_static(b"hello"),
        });
        round_trip(Frame::Data {
            seq: u64::MAX,
            payload: Bytes::new(),
        });
        round_trip(Frame::Ack {
            up_to: 99,
            window_messages: 5,
            window_bytes: 500,
        });
        round_trip(Frame::Ping);
        round_trip(Frame::Close {
            code: CloseCode::Replaced,
            reason: "newer connection".into(),
        });
        round_trip(Frame::Close {
            code: CloseCode::Other(999),
            reason: String::new(),
        });
    }

    #[test]
    fn close_codes_round_trip() {
        for v in 0..=20u16 {
            assert_eq!(CloseCode::from_u16(v).to_u16(), v);
        }
    }

    #[test]
    fn oversized_length_is_rejected_from_the_header_alone() {
        // A header claiming 4 GiB - 1: rejected with only 4 bytes present, nothing reserved.
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        let before = buf.capacity();
        assert_eq!(
            decode(&mut buf, MAX),
            Err(FrameError::TooLarge {
                len: u64::from(u32::MAX),
                max: MAX
            })
        );
        assert_eq!(buf.capacity(), before, "no allocation of the claimed size");
    }

    #[test]
    fn malformed_frames_are_errors() {
        let cases: &[(&[u8], &str)] = &[
            (&[0, 0, 0, 0], "empty"),
            (&[0, 0, 0, 1, 0x7f], "unknown type"),
            (&[0, 0, 0, 1, 0x00], "type zero"),
            (&[0, 0, 0, 3, kind::DATA, 0, 0], "short data"),
            (&[0, 0, 0, 2, kind::ACK, 1], "short ack"),
            (&[0, 0, 0, 2, kind::PING, 1], "ping with body"),
            (&[0, 0, 0, 2, kind::CLOSE, 1], "short close"),
            (
                &[0, 0, 0, 5, kind::HELLO, b'N', b'W', b'I', b'O'],
                "short hello",
            ),
            (
                &[
                    0,
                    0,
                    0,
                    26,
                    kind::HELLO,
                    b'X',
                    b'W',
                    b'I',
                    b'O',
                    0,
                    1,
                    0,
                    1,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    1,
                    0,
                    0,
                    1,
                    0,
                    0,
                    0,
                    0x4e,
                    0x20,
                    0,
                ],
                "bad magic",
            ),
            (
                &[
                    0,
                    0,
                    0,
                    27,
                    kind::HELLO,
                    b'N',
                    b'W',
                    b'I',
                    b'O',
                    0,
                    1,
                    0,
                    1,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    1,
                    0,
                    0,
                    1,
                    0,
                    0,
                    0,
                    0x4e,
                    0x20,
                    5,
                    b'a',
                ],
                "name truncated",
            ),
            (
                &[
                    0,
                    0,
                    0,
                    27,
                    kind::HELLO,
                    b'N',
                    b'W',
                    b'I',
                    b'O',
                    0,
                    1,
                    0,
                    1,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    1,
                    0,
                    0,
                    1,
                    0,
                    0,
                    0,
                    0x4e,
                    0x20,
                    1,
                    0xff,
                ],
                "name not utf-8",
            ),
        ];
        for (bytes, what) in cases {
            let mut buf = BytesMut::from(*bytes);
            assert!(decode(&mut buf, MAX).is_err(), "{what} should be rejected");
        }
    }

    #[test]
    fn limit_applies_to_type_plus_body() {
        let mut buf = BytesMut::new();
        encode_data(1, &[0u8; 100], &mut buf);
        let frame_len = buf.len() - 4;
        assert!(decode(&mut buf.clone(), frame_len).is_ok());
        assert!(matches!(
            decode(&mut buf, frame_len - 1),
            Err(FrameError::TooLarge { .. })
        ));
    }
}
