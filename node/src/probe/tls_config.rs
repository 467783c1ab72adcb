//! TLS client settings shared by every probe that speaks TLS (https, smtps/STARTTLS, imaps,
//! pop3s, the `tls` certificate check). Built once per prober: building them per probe
//! (root store, provider) would cost more than the handshake on loopback.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Verifies the server's chain and name against the bundled web PKI roots.
pub(crate) fn verified() -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    match config {
        Ok(c) => Arc::new(c),
        // The ring provider supports the default versions; this cannot fail at runtime,
        // but if it ever did, an unverified config would be wrong, so stop loudly.
        Err(e) => panic!("building the TLS client configuration failed: {e}"),
    }
}

/// Negotiates real TLS but accepts any certificate (`tls_verify = false`): for self-signed
/// targets, where only reachability and the protocol are judged.
pub(crate) fn unverified() -> Arc<rustls::ClientConfig> {
    let verifier = Arc::new(AcceptAnyCert(provider()));
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        });
    match config {
        Ok(c) => Arc::new(c),
        Err(e) => panic!("building the TLS client configuration failed: {e}"),
    }
}

/// Accepts every certificate but still checks handshake signatures, so the peer must hold
/// the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A person-readable reason for a TLS failure, ending with rustls' own name for it so the
/// message can still be searched for ("... (UnknownIssuer)").
pub(crate) fn describe_tls_error(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    let (what, code) = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => (
                "certificate is not signed by a trusted CA",
                "UnknownIssuer".to_string(),
            ),
            C::NotValidForName | C::NotValidForNameContext { .. } => (
                "certificate does not name this host",
                "NotValidForName".to_string(),
            ),
            C::Expired | C::ExpiredContext { .. } => {
                ("certificate has expired", "Expired".to_string())
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                ("certificate is not valid yet", "NotValidYet".to_string())
            }
            C::BadSignature => (
                "certificate signature does not verify",
                "BadSignature".to_string(),
            ),
            C::Revoked => ("certificate is revoked", "Revoked".to_string()),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => (
                "certificate is not for TLS servers",
                "InvalidPurpose".to_string(),
            ),
            C::Other(other) => {
                let code = format!("{other:?}");
                if code.contains("CaUsedAsEndEntity") {
                    (
                        "self-signed certificate: a CA certificate is used as the server's",
                        code,
                    )
                } else {
                    ("certificate rejected", code)
                }
            }
            other => ("certificate rejected", format!("{other:?}")),
        },
        rustls::Error::NoCertificatesPresented => (
            "the server sent no certificate",
            "NoCertificatesPresented".to_string(),
        ),
        rustls::Error::AlertReceived(alert) => (
            "the server refused the handshake",
            format!("alert {alert:?}"),
        ),
        rustls::Error::InvalidMessage(_)
        | rustls::Error::PeerMisbehaved(_)
        | rustls::Error::PeerIncompatible(_) => {
            ("the TLS exchange broke the protocol", e.to_string())
        }
        other => ("handshake failed", other.to_string()),
    };
    format!("TLS: {what} ({code})")
}

/// [`describe_tls_error`] for the `io::Error` tokio-rustls wraps it in.
pub(crate) fn describe_tls_io_error(e: &std::io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => describe_tls_error(tls),
        None => format!("TLS handshake failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_errors_read_like_sentences() {
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert_eq!(
            describe_tls_error(&unknown),
            "TLS: certificate is not signed by a trusted CA (UnknownIssuer)"
        );
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, unknown);
        assert!(describe_tls_io_error(&io).contains("trusted CA"));
        let expired = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        assert!(describe_tls_error(&expired).contains("expired"));
    }
}
