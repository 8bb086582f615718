//! TLS for the HTTP port (the shop API's REST/JSON), with ALPN for both HTTP/2 and HTTP/1.1.
//!
//! tonic's own server TLS offers only `h2`, and rustls then refuses every client that offers
//! only `http/1.1` (Python's requests/urllib3, `curl --http1.1`, most REST tools). So the REST
//! port terminates TLS itself: an accept loop hands each connection to a handshake task (bounded
//! in time, so a client that stalls in the handshake holds up nobody else) and yields the
//! finished streams to the HTTP server.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::conn::Guarded;

/// Longest a client may take to complete the TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS connection of the REST port.
pub struct TlsConnection(tokio_rustls::server::TlsStream<Guarded<TcpStream>>);

impl Connected for TlsConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.get_ref().0.connect_info()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// A rustls acceptor for the PEM certificate chain and key, offering `h2` and `http/1.1`.
pub fn acceptor(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsAcceptor, String> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read the certificate chain: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("cannot read the private key: {e}"))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The handshaken connections of `accepted`, and the accept loop's task (abort it to stop
/// accepting).
pub fn incoming(
    accepted: impl Stream<Item = io::Result<Guarded<TcpStream>>> + Send + 'static,
    acceptor: TlsAcceptor,
) -> (
    impl Stream<Item = Result<TlsConnection, io::Error>> + Send + 'static,
    JoinHandle<()>,
) {
    let (tx, mut rx) = mpsc::channel::<TlsConnection>(64);
    let task = tokio::spawn(async move {
        let mut accepted = std::pin::pin!(accepted);
        // The stream waits after failed accepts and yields only connections.
        while let Some(Ok(tcp)) = accepted.next().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let peer = tcp.get_ref().peer_addr().ok();
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(TlsConnection(stream)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(?peer, cause = %e, "REST port: TLS handshake failed")
                    }
                    Err(_) => tracing::debug!(?peer, "REST port: TLS handshake timed out"),
                }
            });
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|c| c.map(Ok)));
    (stream, task)
}
