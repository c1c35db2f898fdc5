//! TLS between the cloud's components: every internal call runs over TLS, verified both ways
//! with certificates the cloud's CA issued when the component was registered.
//!
//! A caller checks that the callee's certificate is the cloud's and is one of the kind it
//! calls (`cluster.koala.internal` for a CC...), whatever address it reached it by; a callee
//! reads the caller's principal from its certificate ([`peer_principal`]) and accepts a
//! component's signed call only over that component's own connection. Clients without a
//! certificate of their own (`euca_conf`, with an administrator's key) still verify the
//! server.

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key is not what it should be.
    #[error("{what} cannot be used: {why}")]
    Unusable {
        /// Which file or value.
        what: String,
        /// What is wrong.
        why: String,
    },
}

fn unusable(what: &str, why: impl std::fmt::Display) -> TlsError {
    TlsError::Unusable {
        what: what.to_owned(),
        why: why.to_string(),
    }
}

/// One component's TLS settings: the cloud CA to verify peers with, and its own certificate
/// for its servers and as client certificate. Cheap to clone.
#[derive(Clone)]
pub struct Tls {
    client: Arc<ClientConfig>,
    server: Option<Arc<ServerConfig>>,
    web: Option<Arc<ServerConfig>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server", &self.server.is_some())
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Settings verifying peers against the cloud CA `ca_pem`, presenting `own` (certificate
    /// and private key, PEM) when given.
    pub fn new(ca_pem: &str, own: Option<(&str, &str)>) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| unusable("the cloud certificate", e))?;
            roots
                .add(cert)
                .map_err(|e| unusable("the cloud certificate", e))?;
        }
        if roots.is_empty() {
            return Err(unusable("the cloud certificate", "it holds no certificate"));
        }
        let roots = Arc::new(roots);
        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| unusable("TLS", e))?
            .with_root_certificates(roots.clone());
        let Some((cert_pem, key_pem)) = own else {
            return Ok(Tls {
                client: Arc::new(client.with_no_client_auth()),
                server: None,
                web: None,
            });
        };
        let chain = || -> Result<Vec<CertificateDer<'static>>, TlsError> {
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| unusable("the component's certificate", e))
        };
        let key = || {
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|e| unusable("the component's TLS key", e))
        };
        let client = client
            .with_client_auth_cert(chain()?, key()?)
            .map_err(|e| unusable("the component's certificate", e))?;
        // Client certificates are checked when given, not required: administrators call the
        // cluster controller with their access key alone, and users reach the main port.
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| unusable("the cloud certificate", e))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| unusable("TLS", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain()?, key()?)
            .map_err(|e| unusable("the component's certificate", e))?;
        // Browsers asked for an optional client certificate may prompt their user to pick one:
        // pages are served without asking.
        let web = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| unusable("TLS", e))?
            .with_no_client_auth()
            .with_single_cert(chain()?, key()?)
            .map_err(|e| unusable("the component's certificate", e))?;
        Ok(Tls {
            client: Arc::new(client),
            server: Some(Arc::new(server)),
            web: Some(Arc::new(web)),
        })
    }

    /// The settings of this component's clients.
    pub fn client(&self) -> Arc<ClientConfig> {
        self.client.clone()
    }

    /// The settings of this component's servers, when it has a certificate.
    pub fn server(&self) -> Option<Arc<ServerConfig>> {
        self.server.clone()
    }

    /// The settings of a server for browsers (the web console), with the same certificate
    /// but asking for no client certificate.
    pub fn web_server(&self) -> Option<Arc<ServerConfig>> {
        self.web.clone()
    }
}

/// The principal the client's certificate names, once the handshake verified it against the
/// cloud CA; `None` when the client presented none.
pub fn peer_principal(conn: &rustls::ServerConnection) -> Option<String> {
    let leaf = conn.peer_certificates()?.first()?;
    identity::certificate_principal(leaf.as_ref())
}

/// A cloud CA and a node's certificate made for a test, for callees that speak TLS as nodes
/// do (blocking, on plain threads).
#[cfg(any(test, feature = "testing"))]
#[allow(clippy::unwrap_used, missing_docs)]
pub mod testing {
    use std::sync::Arc;

    use identity::ComponentKind;

    /// The test's CA, a client trusting it, and a node's server settings.
    pub struct TestPki {
        _dir: tempfile::TempDir,
        /// What a CC's client uses.
        pub client: super::Tls,
        server: Arc<rustls::ServerConfig>,
    }

    impl TestPki {
        pub fn with_node() -> TestPki {
            let dir = tempfile::tempdir().unwrap();
            let (ca, _) = identity::CloudCa::open_or_create(dir.path()).unwrap();
            let (key, public) = identity::new_tls_key().unwrap();
            let cert = ca
                .issue_tls_certificate(&public, "nc-test", &[ComponentKind::NodeController], &[])
                .unwrap();
            let node = super::Tls::new(ca.cert_pem(), Some((&cert, &key))).unwrap();
            TestPki {
                _dir: dir,
                client: super::Tls::new(ca.cert_pem(), None).unwrap(),
                server: node.server().unwrap(),
            }
        }

        /// A connection accepted on `tcp`, the handshake done as a node's server does it.
        pub fn accept(
            &self,
            tcp: std::net::TcpStream,
        ) -> rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream> {
            let conn = rustls::ServerConnection::new(self.server.clone()).unwrap();
            let mut stream = rustls::StreamOwned::new(conn, tcp);
            while stream.conn.is_handshaking() {
                if stream.conn.complete_io(&mut stream.sock).is_err() {
                    break;
                }
            }
            stream
        }
    }
}
