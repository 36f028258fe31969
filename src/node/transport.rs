//! What a connection runs over: plain TCP or TLS 1.3, and the cap on connections still in their
//! handshake.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::driver::Origin;
use crate::security::{self, PublicKey, TlsConfigs};

/// A connection's byte stream.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether written bytes may wait in a buffer until flushed (TLS records do; TCP does not).
    const BUFFERS_WRITES: bool;

    /// The TCP socket underneath.
    fn tcp(&self) -> &TcpStream;
}

impl Transport for TcpStream {
    const BUFFERS_WRITES: bool = false;

    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Transport for tokio_rustls::TlsStream<TcpStream> {
    const BUFFERS_WRITES: bool = true;

    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// Why a TLS handshake failed: the network, or TLS itself (the peer's fault).
#[derive(Debug)]
pub(crate) enum TlsFailure {
    Io(std::io::Error),
    Tls(String),
}

impl From<std::io::Error> for TlsFailure {
    fn from(e: std::io::Error) -> TlsFailure {
        // tokio-rustls reports TLS alerts and bad messages as I/O errors wrapping rustls's.
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => TlsFailure::Tls(format!("TLS handshake failed: {tls}")),
            None => TlsFailure::Io(e),
        }
    }
}

/// Runs the TLS handshake and returns the stream with the peer's (verified) key.
pub(crate) async fn tls_handshake(
    configs: &TlsConfigs,
    tcp: TcpStream,
    origin: Origin,
) -> Result<(tokio_rustls::TlsStream<TcpStream>, PublicKey), TlsFailure> {
    let stream: tokio_rustls::TlsStream<TcpStream> = match origin {
        Origin::Dialed => {
            // The name is not checked (the verifier pins keys, not names); SNI carries nothing.
            let name = rustls::pki_types::ServerName::try_from("networkio")
                .map_err(|e| TlsFailure::Tls(e.to_string()))?;
            tokio_rustls::TlsConnector::from(configs.client.clone())
                .connect(name, tcp)
                .await?
                .into()
        }
        Origin::Accepted => tokio_rustls::TlsAcceptor::from(configs.server.clone())
            .accept(tcp)
            .await?
            .into(),
    };
    let key = security::peer_key(stream.get_ref().1)
        .ok_or_else(|| TlsFailure::Tls("the peer presented no usable key".into()))?;
    Ok((stream, key))
}

/// Caps the accepted connections that have not finished their handshake. When full, the
/// oldest is evicted: a slow or silent socket cannot hold a slot that a real peer needs, and a
/// real peer finishes its handshake in a round trip or two.
#[derive(Debug)]
pub(crate) struct HandshakeSlots {
    max: usize,
    next_id: AtomicU64,
    pending: Mutex<VecDeque<(u64, CancellationToken)>>,
}

/// One accepted connection's place among the pending handshakes; freed on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    id: u64,
    pub(crate) evicted: CancellationToken,
    slots: Arc<HandshakeSlots>,
}

impl HandshakeSlots {
    pub(crate) fn new(max: usize) -> Arc<HandshakeSlots> {
        Arc::new(HandshakeSlots {
            max,
            next_id: AtomicU64::new(0),
            pending: Mutex::new(VecDeque::new()),
        })
    }

    /// Takes a slot, evicting the oldest pending handshake if all are taken.
    pub(crate) fn admit(self: &Arc<Self>) -> Slot {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let evicted = CancellationToken::new();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while pending.len() >= self.max {
            match pending.pop_front() {
                Some((_, oldest)) => oldest.cancel(),
                None => break,
            }
        }
        pending.push_back((id, evicted.clone()));
        Slot {
            id,
            evicted,
            slots: self.clone(),
        }
    }

    /// Connections currently in their handshake.
    pub(crate) fn len(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut pending = self.slots.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = pending.iter().position(|(id, _)| *id == self.id) {
            pending.remove(index);
        }
    }
}
