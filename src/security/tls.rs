//! The TLS 1.3 configurations and the certificate verifier that only checks the key.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use super::{Identity, PublicKey, TrustPolicy};
use crate::error::{Error, Result};

/// Largest TLS record we send. A record is only usable once whole, so on a link that breaks
/// often, smaller records mean more of what was sent survives each break; 4 KiB costs about
/// 0.5% in record overhead against the 16 KiB default.
const TLS_RECORD: usize = 4096;

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
