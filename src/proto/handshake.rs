//! The first step of every connection: both sides send HELLO at once, then validate the other's.
//!
//! What follows (the SESSION exchange that decides between resuming and starting afresh) belongs to
//! the [`Session`](super::Session) the HELLO names, so it lives in `session.rs`.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::frame::{self, Frame, Hello};
use super::{Config, LinkError, ProtocolViolation, instant_after, validate_name};

/// What a valid HELLO told us about the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerHello {
    /// The peer's node name (validated).
    pub name: String,
    /// The peer's incarnation (non-zero).
    pub incarnation: u64,
    /// The protocol version both sides will speak.
    pub version: u16,
    /// Largest message payload the peer accepts.
    pub max_message: usize,
    /// The peer declares the connection dead after this long without receiving anything.
    pub idle_timeout: Duration,
}

/// Handshake state of one new connection, before its session is known.
#[derive(Debug)]
pub struct Handshake {
    local_name: String,
    incarnation: u64,
    max_message: u32,
    idle_timeout_ms: u32,
    deadline: Instant,
    timeout: Duration,
    max_frame_len: usize,
}

impl Handshake {
    /// Starts a handshake at `now`; it must finish (SESSION exchange included) by
    /// `now + config.handshake_timeout`.
    pub fn new(now: Instant, local_name: &str, incarnation: u64, config: &Config) -> Self {
        Handshake {
            local_name: local_name.to_owned(),
            incarnation,
            max_message: u32::try_from(config.window.max_message).unwrap_or(u32::MAX),
            idle_timeout_ms: u32::try_from(config.idle_timeout.as_millis()).unwrap_or(u32::MAX),
            deadline: instant_after(now, config.handshake_timeout),
            timeout: config.handshake_timeout,
            max_frame_len: config.handshake_frame_len,
        }
    }

    /// The absolute deadline of the whole handshake; never extended by traffic.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Appends our HELLO to `out`. Sent first by both sides, without waiting for the other's.
    pub fn write_hello(&self, out: &mut BytesMut) {
        frame::encode(
            &Frame::Hello(Hello {
                min_version: frame::VERSION,
                max_version: frame::VERSION,
                incarnation: self.incarnation,
                max_message: self.max_message,
                idle_timeout_ms: self.idle_timeout_ms,
                name: self.local_name.clone(),
            }),
            out,
        );
    }

    /// Consumes the peer's HELLO from `buf` once it is complete. Bytes after it stay in `buf`.
    pub fn handle_input(
        &mut self,
        now: Instant,
        buf: &mut BytesMut,
    ) -> Result<Option<PeerHello>, LinkError> {
        if now >= self.deadline {
            return Err(LinkError::HandshakeTimeout(self.timeout));
        }
        let frame = match frame::decode(buf, self.max_frame_len).map_err(ProtocolViolation::from)? {
            None => return Ok(None),
            Some(frame) => frame,
        };
        let hello = match frame {
            Frame::Hello(hello) => hello,
            Frame::Close { code, reason } => return Err(LinkError::ClosedByPeer { code, reason }),
            other => {
                return Err(ProtocolViolation::UnexpectedFrame {
                    frame: frame_name(&other),
                    state: "before HELLO",
                }
                .into());
            }
        };
        let version = negotiate(hello.min_version, hello.max_version)?;
        validate_name(&hello.name).map_err(ProtocolViolation::from)?;
        if hello.name == self.local_name {
            return Err(ProtocolViolation::OwnName.into());
        }
        if hello.incarnation == 0 {
            return Err(ProtocolViolation::ZeroIncarnation.into());
        }
        if hello.max_message == 0 || hello.idle_timeout_ms < 100 {
            return Err(ProtocolViolation::BadLimits {
                max_message: hello.max_message,
                idle_timeout_ms: hello.idle_timeout_ms,
            }
            .into());
        }
        Ok(Some(PeerHello {
            name: hello.name,
            incarnation: hello.incarnation,
            version,
            max_message: hello.max_message as usize,
            idle_timeout: Duration::from_millis(u64::from(hello.idle_timeout_ms)),
        }))
    }
}

/// Picks the newest version both sides speak.
fn negotiate(theirs_min: u16, theirs_max: u16) -> Result<u16, ProtocolViolation> {
    let (ours_min, ours_max) = (frame::VERSION, frame::VERSION);
    let best = ours_max.min(theirs_max);
    if best < ours_min.max(theirs_min) || theirs_min > theirs_max {
        return Err(ProtocolViolation::UnsupportedVersion {
            ours_min,
            ours_max,
            theirs_min,
            theirs_max,
        });
    }
    Ok(best)
}

/// The frame type's name, for error messages.
pub(crate) fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello(_) => "HELLO",
        Frame::Session(_) => "SESSION",
        Frame::Data { .. } => "DATA",
        Frame::Ack { .. } => "ACK",
        Frame::Ping => "PING",
        Frame::Close { .. } => "CLOSE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello_bytes(name: &str, min: u16, max: u16, incarnation: u64) -> BytesMut {
        let mut buf = BytesMut::new();
        frame::encode(
            &Frame::Hello(Hello {
                min_version: min,
                max_version: max,
                incarnation,
                max_message: 1 << 20,
                idle_timeout_ms: 20_000,
                name: name.into(),
            }),
            &mut buf,
        );
        buf
    }

    fn handshake(now: Instant) -> Handshake {
        Handshake::new(now, "server-001", 5, &Config::default())
    }

    #[test]
    fn accepts_a_valid_hello_and_leaves_what_follows() {
        let now = Instant::now();
        let mut buf = hello_bytes("client-123", 1, 1, 9);
        buf.extend_from_slice(b"next");
        let peer = handshake(now).handle_input(now, &mut buf).unwrap().unwrap();
        assert_eq!(peer.name, "client-123");
        assert_eq!(peer.incarnation, 9);
        assert_eq!(&buf[..], b"next");
    }

    #[test]
    fn rejects_bad_hellos() {
        let now = Instant::now();
        let cases = [
            (hello_bytes("client", 2, 3, 9), "future version only"),
            (hello_bytes("client", 3, 2, 9), "inverted range"),
            (hello_bytes("", 1, 1, 9), "empty name"),
            (hello_bytes("bad name", 1, 1, 9), "space in name"),
            (hello_bytes("server-001", 1, 1, 9), "our own name"),
            (hello_bytes("client", 1, 1, 0), "zero incarnation"),
        ];
        for (mut buf, what) in cases {
            assert!(
                handshake(now).handle_input(now, &mut buf).is_err(),
                "{what} should be rejected"
            );
        }
        let mut data = BytesMut::new();
        frame::encode_data(1, b"x", &mut data);
        assert!(
            handshake(now).handle_input(now, &mut data).is_err(),
            "data before hello"
        );
    }

    #[test]
    fn a_newer_peer_that_also_speaks_v1_is_accepted() {
        let now = Instant::now();
        let mut buf = hello_bytes("client", 1, 7, 9);
        let peer = handshake(now).handle_input(now, &mut buf).unwrap().unwrap();
        assert_eq!(peer.version, 1);
    }

    #[test]
    fn deadline_is_absolute() {
        let now = Instant::now();
        let mut hs = handshake(now);
        let mut partial = BytesMut::from(&hello_bytes("client", 1, 1, 9)[..3]);
        assert_eq!(hs.handle_input(now, &mut partial), Ok(None));
        let late = now + Config::default().handshake_timeout;
        assert!(matches!(
            hs.handle_input(late, &mut partial),
            Err(LinkError::HandshakeTimeout(_))
        ));
    }

    #[test]
    fn oversized_first_frame_is_refused_with_the_tight_limit() {
        let now = Instant::now();
        let mut buf = BytesMut::from(&[0, 0, 0x10, 0, 1][..]); // claims 4 KiB
        assert!(matches!(
            handshake(now).handle_input(now, &mut buf),
            Err(LinkError::Violation(ProtocolViolation::Frame(
                frame::FrameError::TooLarge { .. }
            )))
        ));
    }
}
