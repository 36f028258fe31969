//! Identities, trust policies and the TLS 1.3 channel.
//!
//! Every node has an Ed25519 key pair ([`Identity`]); its public key ([`PublicKey`]) is what
//! peers pin. Connections run TLS 1.3 (rustls) with both sides presenting a self-signed
//! certificate for their key: TLS proves possession of the key and encrypts everything after
//! it. No certificate authority is involved: who may use which name is decided after the
//! handshake, when the peer's HELLO names it, by the node's [`TrustPolicy`]. TLS 1.2, session
//! tickets and 0-RTT data are disabled.
//!
//! A session is bound to the key that created it: another key never continues, receives or
//! replaces it. While a connection serves the session, a connection naming the same peer with
//! another key is refused, whatever the policy. Without a connection, the allowlist and known
//! peers keep refusing other keys until the session ends; under the open policy, where a name
//! was never authenticated, a new key ends that session (its unacknowledged messages are handed
//! back, [`LostReason::KeyChanged`](crate::LostReason::KeyChanged)) and starts a fresh one, so a
//! client restarted with a new random key is not locked out.

mod identity;
mod known_peers;
mod tls;
mod trust;

pub use identity::{Identity, PublicKey};
pub use known_peers::{KnownPeers, KnownPeersLimits};
pub(crate) use tls::{Security, TlsConfigs, peer_key};
pub use trust::TrustPolicy;
