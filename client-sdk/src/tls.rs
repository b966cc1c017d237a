//! How the client decides to trust a server.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use quinn::crypto::rustls::QuicClientConfig;

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

/// What a trust is built from, read afresh on every connect: a certificate file that was
/// replaced gives a new configuration, not a stale cached one.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Material {
    Pem(Vec<u8>),
    Fingerprint(String),
}

/// TLS configurations built lately, newest last. Connections made with the same trust share
/// one: building it costs time on every connect, and a shared configuration shares rustls'
/// session cache, so a reconnect resumes its TLS session instead of a full handshake.
static CONFIGS: Mutex<Vec<(Material, Arc<QuicClientConfig>)>> = Mutex::new(Vec::new());

/// How many distinct trusts [`CONFIGS`] remembers.
const CONFIGS_KEPT: usize = 4;

impl Trust {
    /// The QUIC TLS configuration for this trust (TLS 1.3, ALPN `fluxon/1`), shared with
    /// earlier connections made with the same trust material.
    pub(crate) fn quic_config(&self) -> Result<Arc<QuicClientConfig>, ConnectError> {
        let material = self.material()?;
        let mut configs = CONFIGS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = configs.iter().position(|(m, _)| *m == material) {
            let entry = configs.remove(i);
            let config = Arc::clone(&entry.1);
            configs.push(entry);
            return Ok(config);
        }
        let config = Arc::new(
            QuicClientConfig::try_from(rustls_config(&material)?)
                .map_err(|e| ConnectError::Config(e.to_string()))?,
        );
        if configs.len() >= CONFIGS_KEPT {
            configs.remove(0);
        }
        configs.push((material, Arc::clone(&config)));
        Ok(config)
    }

    fn material(&self) -> Result<Material, ConnectError> {
        Ok(match self {
            Self::CertificateFile(path) => Material::Pem(
                std::fs::read(path)
                    .map_err(|e| ConnectError::Config(format!("{}: {e}", path.display())))?,
            ),
            Self::CertificatePem(pem) => Material::Pem(pem.clone()),
            Self::Fingerprint(text) => Material::Fingerprint(text.clone()),
        })
    }
}

fn rustls_config(material: &Material) -> Result<rustls::ClientConfig, ConnectError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ConnectError::Config(e.to_string()))?;
    let mut config = match material {
        Material::Pem(pem) => builder
            .with_root_certificates(roots(pem)?)
            .with_no_client_auth(),
        Material::Fingerprint(text) => builder
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
            .quic_config()
            .err()
            .expect("an empty PEM is refused");
        assert!(err.to_string().contains("no certificate"), "{err}");
    }

    fn pem(name: &str) -> Vec<u8> {
        rcgen::generate_simple_self_signed(vec![name.to_owned()])
            .unwrap()
            .cert
            .pem()
            .into_bytes()
    }

    #[test]
    fn the_same_trust_shares_one_configuration_and_a_changed_file_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cert.pem");
        std::fs::write(&path, pem("first.test")).unwrap();
        let trust = Trust::CertificateFile(path.clone());
        let a = trust.quic_config().unwrap();
        let b = trust.quic_config().unwrap();
        assert!(Arc::ptr_eq(&a, &b), "same file, same configuration");
        // The same PEM given directly is the same trust.
        let same = Trust::CertificatePem(std::fs::read(&path).unwrap());
        assert!(Arc::ptr_eq(&a, &same.quic_config().unwrap()));
        // A rotated certificate file is read again and gives a new configuration.
        std::fs::write(&path, pem("second.test")).unwrap();
        let c = trust.quic_config().unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        let fingerprint = Trust::Fingerprint("ab".repeat(32)).quic_config().unwrap();
        assert!(!Arc::ptr_eq(&c, &fingerprint));
    }
}
