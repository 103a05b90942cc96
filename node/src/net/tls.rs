//! The data plane's TLS: each node presents a certificate made from its node key (the libp2p TLS scheme: a
//! self-signed certificate carrying the node key's signature over the certificate key), and both sides require
//! the other's. So a QUIC connection is between two peer ids, proven by their keys, and the accepting side can
//! check the caller's peer id against its allow-list before it answers anything.

use libp2p_identity::{Keypair, PeerId};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::CertificateDer;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::SignatureScheme;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// ALPN of Ferry's data plane.
const ALPN: &[u8] = b"ferry-data/1";

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
#[error("data plane TLS: {0}")]
pub struct TlsError(String);

fn err(e: impl std::fmt::Display) -> TlsError {
    TlsError(e.to_string())
}

/// Windows and limits sized for bulk transfer: a few batches of several MiB in flight on a path of up to a few
/// hundred ms round trip, and idle detection quick enough that a dead peer's batches move elsewhere in seconds.
fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(64u32.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window((32u32 << 20).into())
        .receive_window((128u32 << 20).into())
        .send_window(128 << 20)
        .keep_alive_interval(Some(Duration::from_secs(2)))
        .max_idle_timeout(Some(
            Duration::from_secs(10)
                .try_into()
                .expect("10 s is a valid idle timeout"),
        ));
    Arc::new(t)
}

/// The UDP socket's buffers (asked for; the kernel caps them at `net.core.rmem_max` / `wmem_max`). The
/// default ~208 KiB holds a few milliseconds at line rate, and datagrams a busy receiver has not read in time
/// are dropped, which QUIC's congestion control takes for a congested path.
const SOCKET_BUFFER: usize = 8 << 20;

/// A quinn endpoint on `addr` accepting with `server` (and calling out with per-connection client configs).
pub fn endpoint(server: quinn::ServerConfig, addr: SocketAddr) -> std::io::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    for (what, r) in [
        (
            "receive",
            state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER),
        ),
        (
            "send",
            state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER),
        ),
    ] {
        if let Err(e) = r {
            tracing::debug!(error = %e, "data plane: the UDP {what} buffer keeps its size");
        }
    }
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// The accepting side: presents `key`'s certificate and requires one from every caller.
pub fn server_config(key: &Keypair) -> Result<quinn::ServerConfig, TlsError> {
    // libp2p-tls makes the certificate (and its resolver); the configuration around it is ours, for the order
    // of cipher suites (see [`provider`]).
    let made = libp2p_tls::make_server_config(key).map_err(err)?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(err)?
        .with_client_cert_verifier(Arc::new(PeerVerifier { expected: None }))
        .with_cert_resolver(made.cert_resolver.clone());
    tls.ignore_client_order = true;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(err)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}

/// The calling side, for a connection to `remote` (the handshake fails if the other end has another key).
pub fn client_config(key: &Keypair, remote: PeerId) -> Result<quinn::ClientConfig, TlsError> {
    let made = libp2p_tls::make_client_config(key, Some(remote)).map_err(err)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(err)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerVerifier {
            expected: Some(remote),
        }))
        .with_client_cert_resolver(made.client_auth_cert_resolver.clone());
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(err)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}

/// ring's provider with the TLS 1.3 suites in the order this data plane wants: AES-GCM first (AES-NI makes it
/// several times cheaper per byte than ChaCha20-Poly1305 on the x86 servers Ferry runs on; libp2p-tls lists
/// ChaCha20 first, which suits CPUs without AES instructions), ChaCha20 kept for a peer that offers only it.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
    ];
    Arc::new(p)
}

/// libp2p-tls's checks of a peer's certificate, in a configuration of our own: exactly one certificate, parsed
/// and verified by [`libp2p_tls::certificate::parse`] (self-signed, in its validity period, carrying the node
/// key's signature over the certificate key), and — when calling — the peer id it proves must be `expected`.
/// Handshake signatures are checked with the certificate's key by libp2p-tls too.
#[derive(Debug)]
struct PeerVerifier {
    expected: Option<PeerId>,
}

impl PeerVerifier {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::General(
                "a peer must present exactly one certificate".into(),
            ));
        }
        let peer = libp2p_tls::certificate::parse(end_entity)?.peer_id();
        match self.expected {
            Some(expected) if expected != peer => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
            _ => Ok(()),
        }
    }

    fn signature(
        cert: &CertificateDer<'_>,
        message: &[u8],
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        libp2p_tls::certificate::parse(cert)?.verify_signature(
            dss.scheme,
            message,
            dss.signature(),
        )?;
        Ok(HandshakeSignatureValid::assertion())
    }

    /// The schemes libp2p-tls can check a handshake signature with (ring has no P-521 or Ed448).
    fn schemes() -> Vec<SignatureScheme> {
        use SignatureScheme as S;
        vec![
            S::ECDSA_NISTP256_SHA256,
            S::ECDSA_NISTP384_SHA384,
            S::ED25519,
            S::RSA_PSS_SHA256,
            S::RSA_PSS_SHA384,
            S::RSA_PSS_SHA512,
            S::RSA_PKCS1_SHA256,
            S::RSA_PKCS1_SHA384,
            S::RSA_PKCS1_SHA512,
        ]
    }
}

/// The handshake-signature methods, the same in both verifier traits: TLS 1.3 only, checked by libp2p-tls.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("TLS 1.2 is not offered".into()))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Self::signature(cert, message, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            Self::schemes()
        }
    };
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures!();
}

/// The peer id proven by the other end of an established connection.
pub fn remote_peer(conn: &quinn::Connection) -> Result<PeerId, TlsError> {
    let identity = conn
        .peer_identity()
        .ok_or_else(|| err("the peer presented no certificate"))?;
    let certs = identity
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .map_err(|_| err("unexpected peer identity type"))?;
    let cert = certs
        .first()
        .ok_or_else(|| err("the peer presented an empty certificate chain"))?;
    let parsed = libp2p_tls::certificate::parse(cert).map_err(err)?;
    Ok(parsed.peer_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server endpoint for `key` on loopback, accepting connections until dropped.
    fn listener(key: &Keypair) -> quinn::Endpoint {
        let server = server_config(key).unwrap();
        endpoint(server, "127.0.0.1:0".parse().unwrap()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_side_proves_its_peer_id_and_a_caller_expecting_another_is_refused() {
        let (a, b, c) = (
            Keypair::generate_ed25519(),
            Keypair::generate_ed25519(),
            Keypair::generate_ed25519(),
        );
        let server = listener(&a);
        let addr = server.local_addr().unwrap();
        // Answer every handshake (the refused one too: an unanswered one would only time out); report the
        // first caller's peer id.
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn({
            let server = server.clone();
            async move {
                let mut tx = Some(tx);
                while let Some(incoming) = server.accept().await {
                    if let Ok(conn) = incoming.await {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(remote_peer(&conn).unwrap());
                        }
                    }
                }
            }
        });
        let caller = listener(&b);
        let conn = caller
            .connect_with(
                client_config(&b, a.public().to_peer_id()).unwrap(),
                addr,
                "ferry",
            )
            .unwrap()
            .await
            .unwrap();
        assert_eq!(remote_peer(&conn).unwrap(), a.public().to_peer_id());
        assert_eq!(rx.await.unwrap(), b.public().to_peer_id());

        // Calling `a`'s address while expecting `c`: the certificate proves `a`, so the handshake fails (at
        // once, not by timing out).
        let started = std::time::Instant::now();
        let wrong = caller
            .connect_with(
                client_config(&b, c.public().to_peer_id()).unwrap(),
                addr,
                "ferry",
            )
            .unwrap()
            .await;
        assert!(
            matches!(wrong, Err(quinn::ConnectionError::TransportError(_))),
            "{wrong:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn aes_gcm_comes_before_chacha20() {
        let suites: Vec<_> = provider().cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(
            suites,
            [
                rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
                rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
                rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
            ]
        );
    }
}
