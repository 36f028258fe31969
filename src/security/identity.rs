//! A node's key pair and the public key peers pin.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

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

    pub(super) fn from_certificate(cert: &CertificateDer<'_>) -> Option<PublicKey> {
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
    pub(super) cert: CertificateDer<'static>,
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

    pub(super) fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.as_slice().to_vec().into())
    }
}

fn config_error(e: rcgen::Error) -> Error {
    Error::InvalidConfig(format!("key error: {e}"))
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
}
