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

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::error::{Error, Result};
use crate::proto::admission::RefusalReason;
use crate::proto::validate_name;

/// Largest TLS record we send. A record is only usable once whole, so on a link that breaks
/// often, smaller records mean more of what was sent survives each break; 4 KiB costs about
/// 0.5% in record overhead against the 16 KiB default.
const TLS_RECORD: usize = 4096;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A node's Ed25519 public key: what peers pin in allowlists and `known_peers` files.
///
/// Written as `ed25519:` followed by the 32 key bytes in unpadded URL-safe base64.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The raw 32 key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn from_spki(spki: &[u8]) -> Option<PublicKey> {
        let key = spki.strip_prefix(&ED25519_SPKI_PREFIX[..])?;
        key.try_into().ok().map(PublicKey)
    }

    fn from_certificate(cert: &CertificateDer<'_>) -> Option<PublicKey> {
        let cert = webpki::EndEntityCert::try_from(cert).ok()?;
        PublicKey::from_spki(cert.subject_public_key_info().as_ref())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidConfig(format!("not a public key (ed25519:BASE64): {s:?}"));
        let encoded = s.strip_prefix("ed25519:").ok_or_else(bad)?;
        let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| bad())?;
        Ok(PublicKey(bytes.try_into().map_err(|_| bad())?))
    }
}

/// A node's key pair, and the self-signed certificate it presents in TLS.
///
/// Cloning gives another handle to the same key. Keep the key file private: whoever holds it
/// can speak as this node to every peer that trusts its public key.
#[derive(Clone)]
pub struct Identity {
    public: PublicKey,
    key_der: Arc<Vec<u8>>,
    key_pem: Arc<String>,
    cert: CertificateDer<'static>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A new random identity.
    pub fn generate() -> Result<Identity> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(config_error)?;
        Identity::from_key_pair(key)
    }

    /// An identity from a PKCS#8 PEM private key (as written by [`Identity::to_pem`]).
    pub fn from_pem(pem: &str) -> Result<Identity> {
        let key = rcgen::KeyPair::from_pem(pem).map_err(config_error)?;
        if !key.is_compatible(&rcgen::PKCS_ED25519) {
            return Err(Error::InvalidConfig("the key is not an Ed25519 key".into()));
        }
        Identity::from_key_pair(key)
    }

    /// Reads an identity from a PEM file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Identity> {
        let path = path.as_ref();
        let pem = std::fs::read_to_string(path).map_err(|e| {
            Error::InvalidConfig(format!("cannot read key file {}: {e}", path.display()))
        })?;
        Identity::from_pem(&pem)
    }

    /// The private key as PKCS#8 PEM.
    pub fn to_pem(&self) -> String {
        self.key_pem.as_str().to_owned()
    }

    /// Writes the private key to a new file readable only by its owner; refuses to overwrite,
    /// and never leaves a partial key file behind (it writes a temporary file, then links it).
    pub fn write_file(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        let path = path.as_ref();
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(format!(".{}.tmp", std::process::id()));
        let temporary = PathBuf::from(temporary);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(&temporary).and_then(|mut file| {
            file.write_all(self.key_pem.as_bytes())?;
            file.sync_all()
        });
        // A hard link fails if `path` exists: no overwrite, and no window with a partial file.
        let linked = written.and_then(|()| std::fs::hard_link(&temporary, path));
        let _ = std::fs::remove_file(&temporary);
        linked
    }

    /// The public key peers pin.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    fn from_key_pair(key: rcgen::KeyPair) -> Result<Identity> {
        let public = <[u8; 32]>::try_from(key.public_key_raw())
            .map(PublicKey)
            .map_err(|_| Error::InvalidConfig("the key is not an Ed25519 key".into()))?;
        // The certificate only carries the key through TLS; its names and dates mean nothing to
        // the peer, which checks the key against its trust policy.
        let params =
            rcgen::CertificateParams::new(vec!["networkio".to_owned()]).map_err(config_error)?;
        let cert = params.self_signed(&key).map_err(config_error)?;
        Ok(Identity {
            public,
            key_der: Arc::new(key.serialize_der()),
            key_pem: Arc::new(key.serialize_pem()),
            cert: cert.der().clone(),
        })
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.as_slice().to_vec().into())
    }
}

fn config_error(e: rcgen::Error) -> Error {
    Error::InvalidConfig(format!("key error: {e}"))
}

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

/// How a node's connections are protected.
#[derive(Debug, Clone)]
pub(crate) enum Security {
    Tls(Arc<TlsConfigs>),
    /// No encryption, no authentication: for trusted networks only.
    InsecurePlaintext,
}

/// The TLS configurations of one node.
#[derive(Debug)]
pub(crate) struct TlsConfigs {
    pub(crate) client: Arc<rustls::ClientConfig>,
    pub(crate) server: Arc<rustls::ServerConfig>,
    pub(crate) trust: TrustPolicy,
}

impl TlsConfigs {
    pub(crate) fn new(identity: &Identity, trust: TrustPolicy) -> Result<TlsConfigs> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(KeyOnlyVerifier {
            algorithms: provider.signature_verification_algorithms,
        });
        let tls_error = |e: rustls::Error| Error::InvalidConfig(format!("TLS setup: {e}"));
        let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_client_auth_cert(vec![identity.cert.clone()], identity.private_key())
            .map_err(tls_error)?;
        client.resumption = rustls::client::Resumption::disabled();
        client.enable_early_data = false;
        client.max_fragment_size = Some(TLS_RECORD);
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_error)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![identity.cert.clone()], identity.private_key())
            .map_err(tls_error)?;
        server.send_tls13_tickets = 0;
        server.max_early_data_size = 0;
        server.max_fragment_size = Some(TLS_RECORD);
        Ok(TlsConfigs {
            client: Arc::new(client),
            server: Arc::new(server),
            trust,
        })
    }
}

/// The peer's key from a finished TLS handshake.
pub(crate) fn peer_key(conn: &rustls::CommonState) -> Option<PublicKey> {
    PublicKey::from_certificate(conn.peer_certificates()?.first()?)
}

/// Accepts any well-formed certificate for an Ed25519 key and checks the handshake signature
/// with it (proof of possession). Whether that key may use the name it claims is decided after
/// the HELLO, by the trust policy.
#[derive(Debug)]
struct KeyOnlyVerifier {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl KeyOnlyVerifier {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        match PublicKey::from_certificate(cert) {
            Some(_) => Ok(()),
            None => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::BadEncoding,
            )),
        }
    }

    fn verify13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

/// The signature checks both verifier traits share: TLS 1.3 with Ed25519 only.
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(no_tls12())
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.verify13(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            vec![SignatureScheme::ED25519]
        }
    };
}

fn no_tls12() -> rustls::Error {
    rustls::Error::General("TLS 1.2 is not supported".into())
}

impl ServerCertVerifier for KeyOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    signature_checks!();
}

impl ClientCertVerifier for KeyOnlyVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    signature_checks!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_pem_and_text() {
        let id = Identity::generate().unwrap();
        let again = Identity::from_pem(&id.to_pem()).unwrap();
        assert_eq!(id.public_key(), again.public_key());
        let text = id.public_key().to_string();
        assert!(text.starts_with("ed25519:"));
        assert_eq!(text.parse::<PublicKey>().unwrap(), id.public_key());
        assert!("ed25519:short".parse::<PublicKey>().is_err());
        assert!("rsa:AAAA".parse::<PublicKey>().is_err());
        assert_eq!(
            PublicKey::from_certificate(&id.cert).unwrap(),
            id.public_key()
        );
    }

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
