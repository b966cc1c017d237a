//! How the client decides to trust a server.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::ConnectError;

/// Which server certificates the client accepts. There is deliberately no "accept anything".
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trust {
    /// Trust certificates issued by (or equal to) the certificates in this PEM file; for the
    /// development certificate this is the server's `data/dev-cert.pem`.
    CertificateFile(PathBuf),
    /// As `CertificateFile`, with the PEM text given directly.
    CertificatePem(Vec<u8>),
    /// Trust exactly the certificate with this SHA-256 fingerprint (hex, colons optional), as the
    /// server logs at startup. The TLS handshake signature is still verified.
    Fingerprint(String),
}

impl Trust {
    pub(crate) fn rustls_config(&self) -> Result<rustls::ClientConfig, ConnectError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ConnectError::Config(e.to_string()))?;
        let mut config = match self {
            Self::CertificateFile(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| ConnectError::Config(format!("{}: {e}", path.display())))?;
                builder
                    .with_root_certificates(roots(&pem)?)
                    .with_no_client_auth()
            }
            Self::CertificatePem(pem) => builder
                .with_root_certificates(roots(pem)?)
                .with_no_client_auth(),
            Self::Fingerprint(text) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedCertificate {
                    sha256: parse_fingerprint(text)?,
                    provider,
                }))
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![fluxon_proto::ALPN.to_vec()];
        Ok(config)
    }
}

fn roots(pem: &[u8]) -> Result<rustls::RootCertStore, ConnectError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| ConnectError::Config(format!("bad certificate PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ConnectError::Config(format!("unusable certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ConnectError::Config(
            "no certificate in the PEM data".into(),
        ));
    }
    Ok(roots)
}

/// Parses `AB:CD:...` or `abcd...` (64 hex digits) into 32 bytes.
pub(crate) fn parse_fingerprint(text: &str) -> Result<[u8; 32], ConnectError> {
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    let bad = || {
        ConnectError::Config(format!(
            "`{text}` is not a SHA-256 fingerprint (64 hex digits)"
        ))
    };
    if hex.len() != 64 || !hex.is_ascii() {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// Accepts exactly one certificate, by fingerprint, and verifies handshake signatures with it.
#[derive(Debug)]
struct PinnedCertificate {
    sha256: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let digest = ring::digest::digest(&ring::digest::SHA256, end_entity);
        if digest.as_ref() == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&colons).unwrap(), [0xab; 32]);
        assert_eq!(parse_fingerprint(&"ab".repeat(32)).unwrap(), [0xab; 32]);
        assert!(parse_fingerprint("ab").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn empty_pem_is_refused() {
        let err = Trust::CertificatePem(b"not pem".to_vec())
            .rustls_config()
            .unwrap_err();
        assert!(err.to_string().contains("no certificate"), "{err}");
    }
}
