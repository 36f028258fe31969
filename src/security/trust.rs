//! Who may use which name: the trust policies and the `known_peers` file.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::PublicKey;
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
    /// Trust on first use, as SSH does: the first key seen for a name is recorded in a
    /// `known_peers` file, and from then on only that key may use the name. A session stays
    /// bound to its key until it ends.
    KnownPeers(Arc<KnownPeers>),
}

impl TrustPolicy {
    /// An allowlist from a trust file: one `NAME KEY` per line, `#` starts a comment.
    pub fn allowlist_file(path: impl AsRef<Path>) -> Result<TrustPolicy> {
        let entries = read_trust_file(path.as_ref())?;
        Ok(TrustPolicy::Allowlist(Arc::new(entries)))
    }

    /// Trust on first use with the `known_peers` file at `path`, created (empty) if missing.
    ///
    /// Fails at once if the file cannot be created or opened for writing, rather than refusing
    /// every new peer later because its key cannot be recorded.
    pub fn known_peers_file(path: impl Into<PathBuf>) -> Result<TrustPolicy> {
        let path = path.into();
        // Opening for append writes nothing, but proves a first-use key can be recorded.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| {
                Error::InvalidConfig(format!(
                    "cannot create or write known-peers file {}: {e}",
                    path.display()
                ))
            })?;
        let entries = read_trust_file(&path)?;
        Ok(TrustPolicy::KnownPeers(Arc::new(KnownPeers {
            path,
            entries: Mutex::new(entries),
        })))
    }

    /// Whether `key` may use `name`; if not, why, and the details for our own log (paths,
    /// pinned keys), which the peer is not told.
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
            TrustPolicy::KnownPeers(known) => known.check_or_record(name, key),
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

/// The `known_peers` file of [`TrustPolicy::KnownPeers`].
#[derive(Debug)]
pub struct KnownPeers {
    path: PathBuf,
    entries: Mutex<HashMap<String, PublicKey>>,
}

impl KnownPeers {
    fn check_or_record(&self, name: &str, key: &PublicKey) -> Result<(), Refused> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(name) {
            Some(known) if known == key => Ok(()),
            Some(known) => Err((
                RefusalReason::KnownPeerMismatch,
                format!(
                    "{name} presented {key}, but {} records {known}",
                    self.path.display()
                ),
            )),
            None => {
                // A hand-edited file may lack its final newline: never glue two entries.
                let unterminated = std::fs::read(&self.path)
                    .map(|bytes| bytes.last().is_some_and(|&last| last != b'\n'))
                    .unwrap_or(false);
                let line = format!("{}{name} {key}\n", if unterminated { "\n" } else { "" });
                let appended = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .and_then(|mut f| f.write_all(line.as_bytes()));
                if let Err(e) = appended {
                    // Not recorded, not trusted: the next run could not check this key.
                    return Err((
                        RefusalReason::KnownPeersUnwritable,
                        format!("cannot record {name} in {}: {e}", self.path.display()),
                    ));
                }
                tracing::info!(peer = name, %key, "trusting on first use");
                entries.insert(name.to_owned(), *key);
                Ok(())
            }
        }
    }
}

fn read_trust_file(path: &Path) -> Result<HashMap<String, PublicKey>> {
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

    #[test]
    fn known_peers_trust_on_first_use_and_then_pin() {
        let path = std::env::temp_dir().join(format!("networkio-known-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let (a, b) = (
            Identity::generate().unwrap().public_key(),
            Identity::generate().unwrap().public_key(),
        );
        let policy = TrustPolicy::known_peers_file(&path).unwrap();
        assert!(policy.authorize("peer", &a).is_ok(), "first use");
        assert!(policy.authorize("peer", &a).is_ok());
        let refused = policy.authorize("peer", &b).unwrap_err();
        assert_eq!(refused.0, RefusalReason::KnownPeerMismatch, "pinned");
        // A new process reads what the first one recorded.
        let reloaded = TrustPolicy::known_peers_file(&path).unwrap();
        assert!(reloaded.authorize("peer", &b).is_err());
        assert!(reloaded.authorize("peer", &a).is_ok());
        // A file that stops being writable after start (its directory replaced by a file:
        // root may write anywhere, so modes would not do) refuses what it cannot record, and
        // says so.
        let dir = path.with_extension("dir");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let unwritable = TrustPolicy::known_peers_file(dir.join("known")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::write(&dir, "not a directory").unwrap();
        let refused = unwritable.authorize("peer", &a).unwrap_err();
        assert_eq!(refused.0, RefusalReason::KnownPeersUnwritable);
        std::fs::remove_file(&dir).unwrap();
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn known_peers_file_that_cannot_be_written_fails_at_once() {
        let dir = std::env::temp_dir().join(format!("networkio-missing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let error = TrustPolicy::known_peers_file(dir.join("peers.txt")).unwrap_err();
        assert!(matches!(error, Error::InvalidConfig(_)), "{error}");
        assert!(error.to_string().contains("peers.txt"), "{error}");
    }
}
