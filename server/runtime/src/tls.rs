//! Certificates: production PEM files or a persistent self-signed development certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::ServerError;

/// File names of the development certificate inside the data directory.
pub const DEV_CERT_FILE: &str = "dev-cert.pem";
/// File name of the development certificate's private key inside the data directory.
pub const DEV_KEY_FILE: &str = "dev-key.pem";

/// Where the server's certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsSource {
    /// A self-signed certificate for `localhost`, 127.0.0.1 and ::1 (plus `extra_names`), created
    /// in the data directory on first start and reused afterwards. For development only: clients
    /// must trust it explicitly (load the PEM file or pin its fingerprint).
    Development {
        /// More DNS names or IP addresses to put in the certificate.
        extra_names: Vec<String>,
    },
    /// A certificate chain and private key in PEM files.
    Files {
        /// The certificate chain (leaf first).
        cert: PathBuf,
        /// The private key (PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
    },
}

impl Default for TlsSource {
    fn default() -> Self {
        Self::Development {
            extra_names: Vec::new(),
        }
    }
}

/// A loaded certificate chain and key.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf certificate, as colon-separated hex.
    pub(crate) fingerprint: String,
}

impl Identity {
    pub(crate) fn load(source: &TlsSource, data_dir: &Path) -> Result<Self, ServerError> {
        let (chain, key) = match source {
            TlsSource::Files { cert, key } => (read_chain(cert)?, read_key(key)?),
            TlsSource::Development { extra_names } => dev_certificate(data_dir, extra_names)?,
        };
        let leaf = chain
            .first()
            .ok_or_else(|| ServerError::Tls("the certificate file holds no certificate".into()))?;
        let fingerprint = fingerprint(leaf);
        Ok(Self {
            chain,
            key,
            fingerprint,
        })
    }

    /// A rustls server configuration speaking TLS 1.3 with Fluxon's ALPN.
    pub(crate) fn rustls_config(&self) -> Result<Arc<rustls::ServerConfig>, ServerError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ServerError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![fluxon_proto::ALPN.to_vec()];
        config.max_early_data_size = 0;
        Ok(Arc::new(config))
    }
}

/// SHA-256 of a DER certificate as colon-separated uppercase hex (`AB:CD:...`).
pub fn fingerprint(cert: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert);
    let mut out = String::with_capacity(32 * 3);
    for (i, b) in digest.as_ref().iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02X}"));
    }
    out
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServerError::Tls(format!("{}: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(ServerError::Tls(format!(
            "{}: no certificate found",
            path.display()
        )));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ServerError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", path.display())))
}

fn dev_certificate(
    data_dir: &Path,
    extra_names: &[String],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ServerError> {
    let cert_path = data_dir.join(DEV_CERT_FILE);
    let key_path = data_dir.join(DEV_KEY_FILE);
    if cert_path.exists() && key_path.exists() {
        return Ok((read_chain(&cert_path)?, read_key(&key_path)?));
    }
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    names.extend(extra_names.iter().cloned());
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|e| ServerError::Tls(format!("cannot create a development certificate: {e}")))?;
    let key_der = certified.signing_key.serialize_der();
    crate::key::write_private(&key_path, certified.signing_key.serialize_pem().as_bytes())?;
    crate::key::write_private(&cert_path, certified.cert.pem().as_bytes())?;
    tracing::info!(path = %cert_path.display(), "created a self-signed development certificate");
    Ok((
        vec![certified.cert.der().clone()],
        PrivatePkcs8KeyDer::from(key_der).into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certificate_survives_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load(&TlsSource::default(), dir.path()).unwrap();
        let b = Identity::load(&TlsSource::default(), dir.path()).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        a.rustls_config().unwrap();
    }

    #[test]
    fn missing_files_are_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let source = TlsSource::Files {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("nope.key"),
        };
        let err = Identity::load(&source, dir.path()).unwrap_err().to_string();
        assert!(err.contains("nope.pem"), "{err}");
    }
}
