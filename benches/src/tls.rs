//! The TLS setup every raw peer uses: a fresh self-signed certificate for `localhost`, TLS 1.3
//! only, rustls with ring, the client trusting exactly that certificate (as Fluxon's client
//! trusts its server's development certificate).

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

/// Matching server and client configurations for one ALPN protocol.
pub struct TlsPair {
    pub server: rustls::ServerConfig,
    pub client: rustls::ClientConfig,
}

pub fn pair(alpn: &[u8]) -> anyhow::Result<TlsPair> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let cert_der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());

    let mut server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key.into())?;
    server.alpn_protocols = vec![alpn.to_vec()];

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der)?;
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![alpn.to_vec()];
    Ok(TlsPair { server, client })
}
