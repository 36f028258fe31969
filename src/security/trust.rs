//! Who may use which name: the trust policies and the `known_peers` file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::PublicKey;
use super::known_peers::{KnownPeers, KnownPeersLimits};
use crate::error::{Error, Result};
use crate::proto::admission::RefusalReason;
use crate::proto::validate_name;

/// Who may connect as which name.
///
/// Whatever the policy, a session stays bound to the key that created it until it ends, and a
/// connection with another key is refused while a connection serves the session. What a new key
/// can do to a session without a connection depends on the policy (see each variant).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TrustPolicy {
    /// Any key may use any name that no connection of another key holds. A new key claiming a
    /// name whose session has no connection ends that session (the application gets
    /// [`Event::SessionLost`](crate::Event::SessionLost) with everything unacknowledged,
    /// [`LostReason::KeyChanged`](crate::LostReason::KeyChanged)) and gets a fresh one: nothing
    /// of the old session reaches it. For development and closed networks: it encrypts, and it
    /// keeps other keys out of live connections and every session's messages, but it does not
    /// keep strangers out, nor authenticate names.
    Open,
    /// Only the listed names, each with its key. A session stays bound to its key until it ends.
    Allowlist(Arc<HashMap<String, PublicKey>>),
    /// Trust on first use, as SSH does: the first key to establish a session under a name is
    /// recorded in a `known_peers` file, and from then on only that key may use the name. A
    /// session stays bound to its key until it ends. Bounded ([`KnownPeersLimits`]); see
    /// [`KnownPeers`].
    KnownPeers(Arc<KnownPeers>),
}

impl TrustPolicy {
    /// An allowlist from a trust file: one `NAME KEY` per line, `#` starts a comment.
    pub fn allowlist_file(path: impl AsRef<Path>) -> Result<TrustPolicy> {
        let entries = read_trust_file(path.as_ref())?;
        Ok(TrustPolicy::Allowlist(Arc::new(entries)))
    }

    /// Trust on first use with the `known_peers` file at `path`, created (empty) if missing,
    /// with the default [`KnownPeersLimits`].
    ///
    /// Fails at once if the file cannot be created or opened for writing, rather than refusing
    /// every new peer later because its key cannot be recorded.
    pub fn known_peers_file(path: impl Into<PathBuf>) -> Result<TrustPolicy> {
        TrustPolicy::known_peers_file_with(path, KnownPeersLimits::default())
    }

    /// [`TrustPolicy::known_peers_file`] with other limits: most entries in the file, most
    /// names one key may pin (each at least 1).
    pub fn known_peers_file_with(
        path: impl Into<PathBuf>,
        limits: KnownPeersLimits,
    ) -> Result<TrustPolicy> {
        let known = KnownPeers::open(path.into(), limits)?;
        Ok(TrustPolicy::KnownPeers(Arc::new(known)))
    }

    /// Whether `key` may use `name`; if not, why, and the details for our own log (paths,
    /// pinned keys), which the peer is not told. Checked after the peer's HELLO; records
    /// nothing (see [`TrustPolicy::record`]) and touches no file.
    pub(crate) fn authorize(&self, name: &str, key: &PublicKey) -> Result<(), Refused> {
        match self {
            TrustPolicy::Open => Ok(()),
            TrustPolicy::Allowlist(entries) => match entries.get(name) {
                Some(expected) if expected == key => Ok(()),
                Some(_) => Err((
                    RefusalReason::NotAllowlisted,
                    format!("{name} is allowlisted with another key"),
                )),
                None => Err((
                    RefusalReason::NotAllowlisted,
                    format!("{name} is not on the allowlist"),
                )),
            },
            TrustPolicy::KnownPeers(known) => known.check(name, key),
        }
    }

    /// Called once a session is established by `key` under `name`: known peers pin the name
    /// to the key (if the limits allow), written to the file off the caller's thread.
    pub(crate) fn record(&self, name: &str, key: &PublicKey) {
        if let TrustPolicy::KnownPeers(known) = self {
            known.record(name, key);
        }
    }

    /// Waits until what was recorded so far is written (known peers; nothing to wait for with
    /// the other policies).
    pub(crate) async fn flush(&self) {
        if let TrustPolicy::KnownPeers(known) = self {
            known.flush().await;
        }
    }

    /// Whether the policy ties each name to one key. Under the open policy it does not, so a
    /// name's session without a connection may be ended for a new key (PROTOCOL.md §2.5).
    pub(crate) fn pins_names(&self) -> bool {
        !matches!(self, TrustPolicy::Open)
    }
}

/// A trust policy's refusal: the reason, and the details for the refusing node's log.
pub(crate) type Refused = (RefusalReason, String);

pub(super) fn read_trust_file(path: &Path) -> Result<HashMap<String, PublicKey>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::InvalidConfig(format!("cannot read trust file {}: {e}", path.display()))
    })?;
    let mut entries = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad =
            |what: &str| Error::InvalidConfig(format!("{}:{}: {what}", path.display(), number + 1));
        let mut fields = line.split_whitespace();
        let (Some(name), Some(key), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(bad("expected `NAME KEY`"));
        };
        validate_name(name).map_err(|e| bad(&e.to_string()))?;
        let key: PublicKey = key.parse().map_err(|e: Error| bad(&e.to_string()))?;
        if entries.insert(name.to_owned(), key).is_some() {
            return Err(bad(&format!("{name} is listed twice")));
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::Identity;

    #[test]
    fn trust_files_parse_strictly() {
        let dir = std::env::temp_dir().join(format!("networkio-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = Identity::generate().unwrap().public_key();
        let good = dir.join("good");
        std::fs::write(
            &good,
            format!("# peers\nserver-001 {key}  # the server\n\n"),
        )
        .unwrap();
        let TrustPolicy::Allowlist(entries) = TrustPolicy::allowlist_file(&good).unwrap() else {
            panic!("allowlist expected")
        };
        assert_eq!(entries.get("server-001"), Some(&key));
        for bad in [
            format!("server {key} extra"),
            "server".to_owned(),
            format!("bad/name {key}"),
            format!("a {key}\na {key}"),
            "a ed25519:xyz".to_owned(),
        ] {
            let path = dir.join("bad");
            std::fs::write(&path, bad).unwrap();
            assert!(TrustPolicy::allowlist_file(&path).is_err());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
