//! TLS for the API: rustls with the operator's certificate chain and private key
//! (PEM files), served by axum-server. The certificate can be swapped while the
//! server runs ([`Tls::reload`], called on SIGHUP by `control-plane serve`):
//! connections already open keep the old one, new ones get the new one, and a
//! reload that fails leaves the old one in place.
//!
//! Only TLS 1.2 and 1.3 with rustls's safe defaults (aws-lc-rs), no client
//! certificates: clients authenticate with API tokens and license keys, and
//! appliances authenticate the server by pinning its CA.

use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long a client may take over the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may stay open without a complete first request.
const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests get to finish after a stop signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    #[error("the certificate and key cannot be used together: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where the server's certificate chain (leaf first) and private key live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The server's TLS settings, reloadable from their files.
#[derive(Debug, Clone)]
pub struct Tls {
    files: TlsFiles,
    config: RustlsConfig,
}

impl Tls {
    /// Loads the certificate chain and key; fails if either is unreadable or
    /// the key does not match the certificate.
    pub fn load(files: TlsFiles) -> Result<Tls, TlsError> {
        let config = RustlsConfig::from_config(server_config(&files)?);
        Ok(Tls { files, config })
    }

    /// Reads the files again and, if they are usable, serves new connections
    /// with them. On failure the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.config.reload_from_config(server_config(&self.files)?);
        Ok(())
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }
}

fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let read_error = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Read { path, source }
    };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(read_error(&files.cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error(&files.cert))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(files.cert.clone()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(read_error(&files.key))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // The router speaks HTTP/1.1 only (axum's http1 feature).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `router` (see [`super::router_with`]) over TLS on `listener` until `shutdown` completes, then gives
/// in-flight requests [`DRAIN_TIMEOUT`] to finish.
pub async fn serve_tls(
    listener: std::net::TcpListener,
    router: axum::Router,
    tls: &Tls,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    tokio::spawn({
        let handle = handle.clone();
        async move {
            shutdown.await;
            handle.graceful_shutdown(Some(DRAIN_TIMEOUT));
        }
    });
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls.config.clone())
        .handshake_timeout(HANDSHAKE_TIMEOUT);
    axum_server::from_tcp(listener)?
        .acceptor(acceptor)
        .http1_only()
        .first_request_timeout(FIRST_REQUEST_TIMEOUT)
        .handle(handle)
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await
}
