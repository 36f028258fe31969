//! A hand-driven protocol peer over a real socket, for tests that need a peer to misbehave:
//! go silent, replay a handshake, send garbage.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;

use bytes::BytesMut;
use networkio::proto::frame::{self, Frame, Hello, SessionOffer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::within;

pub struct RawPeer {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl RawPeer {
    pub async fn connect(addr: SocketAddr) -> RawPeer {
        RawPeer {
            stream: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, frame: &Frame) {
        let mut out = BytesMut::new();
        frame::encode(frame, &mut out);
        self.stream.write_all(&out).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The next frame, or `None` at EOF / reset.
    pub async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = frame::decode(&mut self.buf, 1 << 24).unwrap() {
                return Some(f);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Completes a handshake as `name`/`incarnation`, offering `offer`; returns the node's
    /// HELLO and SESSION.
    pub async fn handshake(
        &mut self,
        name: &str,
        incarnation: u64,
        offer: SessionOffer,
    ) -> (Hello, SessionOffer) {
        self.send(&hello_frame(name, incarnation)).await;
        let Some(Frame::Hello(hello)) = within("HELLO", self.recv()).await else {
            panic!("expected HELLO")
        };
        // The node sends SESSION once it has read our HELLO; we send ours without waiting.
        self.send(&Frame::Session(offer)).await;
        let Some(Frame::Session(session)) = within("SESSION", self.recv()).await else {
            panic!("expected SESSION")
        };
        (hello, session)
    }
}

/// A valid version-1 HELLO for `name`.
pub fn hello_frame(name: &str, incarnation: u64) -> Frame {
    Frame::Hello(Hello {
        min_version: 1,
        max_version: 1,
        incarnation,
        max_message: 1 << 20,
        idle_timeout_ms: 60_000,
        name: name.into(),
    })
}
