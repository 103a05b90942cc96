//! The data plane's TLS: each node presents a certificate made from its node key (the libp2p TLS scheme: a
//! self-signed certificate carrying the node key's signature over the certificate key), and both sides require
//! the other's. So a QUIC connection is between two peer ids, proven by their keys, and the accepting side can
//! check the caller's peer id against its allow-list before it answers anything.

use libp2p_identity::{Keypair, PeerId};
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

/// The accepting side: presents `key`'s certificate and requires one from every caller.
pub fn server_config(key: &Keypair) -> Result<quinn::ServerConfig, TlsError> {
    let mut tls = libp2p_tls::make_server_config(key).map_err(err)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(err)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}

/// The calling side, for a connection to `remote` (the handshake fails if the other end has another key).
pub fn client_config(key: &Keypair, remote: PeerId) -> Result<quinn::ClientConfig, TlsError> {
    let mut tls = libp2p_tls::make_client_config(key, Some(remote)).map_err(err)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(err)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
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
