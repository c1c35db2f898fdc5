//! The daemon: opens the roles asked for, writes the admin's credentials on first start, and
//! serves every role on the main port through one front door that sends each request to its
//! role (Query APIs by mount point or `Action`, everything else to Walrus' S3).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use ec2_api::{
    BundleAccess, BundleStore, Cloud, CloudSettings, CloudState, ClusterSet, Pending, QueryApi,
};
use identity::{ComponentKind, Identity, ServiceUrls};
use walrus::{Walrus, WalrusConfig};

use crate::certs;
use crate::config::{Config, CONFIG_FILE, DEFAULT_FILE};
use crate::roles::{self, CcClusters, RoleError};
use crate::serve::{self, Plain, Port};
use ec2_api::networks::Adopted;
use ec2_api::WalrusOverHttp;
use rpc::cluster::ClusterClient;
use rpc::tls::Tls;
use rpc::{ComponentKey, NodeRegistration, RpcClient};
use std::net::SocketAddr;
use walrus::ClcDirectory;

/// Which roles one process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roles {
    /// Every role on one host (`koala up`): Walrus, the cloud controller on the main port, the
    /// cluster controller on the next port and a node controller on the one after.
    All,
    /// Walrus alone (`koala walrus`).
    Walrus,
    /// The cloud controller (`koala cloud`), placing instances through the cluster
    /// controller at `cluster_url`, with Walrus in the same process or at `walrus_url`.
    Cloud {
        /// The URL (`http://host:8774`) of the CC of the configured zone, registered (or
        /// moved) at start; without it, the zone's registration is kept, or on first start
        /// made at the main port + 1 on loopback.
        cluster_url: Option<String>,
        /// The S3 URL of a Walrus running apart (`http://host:8773/services/Walrus`).
        walrus_url: Option<String>,
    },
}

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data dir or a file in it could not be written.
    #[error("cannot write {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The identity store failed to open (or to make the admin's account or credentials).
    #[error("cannot open the identity store")]
    Identity(#[source] identity::IdentityError),
    /// The cloud controller's store (or its registry of clusters) failed to open.
    #[error("cannot open the cloud controller's store")]
    CloudState(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// koala.toml's `[network]` table would strand the addresses of running instances, or
    /// could not be checked against the CLC's state.
    #[error(transparent)]
    Network(#[from] ec2_api::networks::LayoutError),
    /// Walrus failed to open.
    #[error("cannot open Walrus")]
    Walrus(#[source] walrus::WalrusError),
    /// A component of a role could not get its key or certificate, or could not start (the
    /// cluster or node controller).
    #[error(transparent)]
    Role(#[from] RoleError),
    /// The node of `koala up` could not be registered with its cluster.
    #[error("cannot register node {host}")]
    RegisterNode {
        /// The node's host name.
        host: String,
        /// The cluster controller's refusal.
        #[source]
        source: rpc::RpcError,
    },
    /// The cloud's PostgreSQL database could not be reached or led.
    #[error("cannot use the cloud's database")]
    Database(#[source] records::RecordError),
    /// This cloud controller's leadership ended (its database session was lost); another
    /// takes over, and this process stops rather than act beside it.
    #[error("this cloud controller lost the leadership of the cloud; stopping")]
    LostLeadership,
    /// The web console could not start.
    #[error("cannot start the web console")]
    Console(#[source] console::ConsoleError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone)]
struct Front {
    /// Walrus, unless it runs apart (then S3 requests here are answered with where it is).
    walrus: Option<Walrus>,
    /// Where Walrus runs apart.
    walrus_url: Option<String>,
    query: Option<QueryApi>,
    /// The identity store whose keys the CLC's key service hands to remote components.
    keys: Option<Identity>,
}

/// Runs the roles until SIGINT or SIGTERM.
pub async fn run(config: Config, roles: Roles) -> Result<(), ServerError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ServerError::Io { path, source }
    };
    std::fs::create_dir_all(&config.data_dir).map_err(io(&config.data_dir))?;
    let config_file = config.data_dir.join(CONFIG_FILE);
    if !config_file.exists() {
        std::fs::write(&config_file, DEFAULT_FILE).map_err(io(&config_file))?;
    }
    // A CLC sharing the cloud's database waits here until it leads.
    let leads_cloud = matches!(roles, Roles::All | Roles::Cloud { .. });
    let (database, leadership) = match (&config.database, leads_cloud) {
        (Some(url), true) => {
            let (database, leadership) = lead_cloud(&config, url).await?;
            (Some(database), Some(leadership))
        }
        _ => (None, None),
    };
    // A CLC taking over at the address of the one it replaces waits for its ports.
    let patience = match leadership {
        Some(_) => TAKEOVER_PATIENCE,
        None => Duration::ZERO,
    };
    // Nothing is served yet: the blocking work of first start (RSA key generation for the
    // cloud CA and the admin's certificate) holds up no request.
    let keys_dir = config.data_dir.join("keys");
    let (identity, ca_created) = match &database {
        Some(database) => {
            Identity::in_db_with_ca(records::Db::on_postgres(database, "identity"), &keys_dir)
        }
        None => Identity::open_with_ca(&config.data_dir.join("identity"), &keys_dir),
    }
    .map_err(ServerError::Identity)?;
    if ca_created {
        crate::say!(
            "Created the cloud CA in {}",
            config.data_dir.join("keys").display()
        );
    }
    let (admin, created) = identity.ensure_admin().map_err(ServerError::Identity)?;
    let walrus_url = match &roles {
        Roles::Cloud { walrus_url, .. } => walrus_url.clone(),
        _ => None,
    };
    let urls = service_urls(&config, walrus_url.as_deref());
    let admin_dir = config.data_dir.join("credentials/admin");
    write_admin_credentials(&identity, &admin, &urls, &admin_dir)?;
    let eucarc = admin_dir.join(identity::EUCARC);
    if created {
        crate::say!(
            "Created the cloud admin account 'eucalyptus' (user 'admin'); its credentials are in {}",
            eucarc.display()
        );
    }
    crate::say!("Admin credentials: . {}", eucarc.display());

    // The main port's certificate: the CLC's, naming Walrus too when it runs here.
    let main_kinds: &[ComponentKind] = match (&roles, &walrus_url) {
        (Roles::Walrus, _) => &[ComponentKind::Walrus],
        (_, Some(_)) => &[ComponentKind::CloudController],
        (_, None) => &[ComponentKind::CloudController, ComponentKind::Walrus],
    };
    let main_name = match roles {
        Roles::Walrus => "walrus",
        _ => "clc",
    };
    let main_tls = certs::local(
        &identity,
        &config,
        main_name,
        main_kinds,
        &certs::host_names(&config),
    )?;

    let walrus = match &walrus_url {
        Some(_) => None,
        None => Some(open_walrus(&config, Arc::new(identity.clone()))?),
    };
    let query = match &roles {
        Roles::All | Roles::Cloud { .. } => {
            // The CLC's own key, for its calls to cluster controllers and a Walrus apart.
            let clc_key =
                roles::component_key(&identity, &config, ComponentKind::CloudController, "clc")?;
            // The CLC's store first: a [network] table that would strand the addresses of
            // running instances stops the daemon before any CC applies it.
            let state = match &database {
                Some(database) => CloudState::in_db(records::Db::on_postgres(database, "clc")),
                None => CloudState::open(&config.data_dir.join("clc"))
                    .map_err(|e| ServerError::CloudState(e.into()))?,
            };
            adopt_network(&config, &state)?;
            // `koala up`'s own CC is always where it runs; `koala cloud`'s is where it is
            // told, else where it was registered.
            let (cluster_url, moved) = match &roles {
                Roles::Cloud { cluster_url, .. } => match cluster_url {
                    Some(url) => (url.clone(), true),
                    None => (local_url(&config, 1), false),
                },
                _ => (start_compute(&config, &identity, patience).await?, true),
            };
            let clusters =
                open_clusters(&config, &state, &cluster_url, moved, &clc_key, &main_tls)?;
            let bundles: Arc<dyn BundleStore> = match &walrus {
                Some(walrus) => Arc::new(WalrusBundles {
                    walrus: walrus.clone(),
                }),
                None => Arc::new(WalrusOverHttp::new(
                    RpcClient::new(clc_key, &main_tls, ComponentKind::Walrus),
                    walrus_url.as_deref().unwrap_or_default(),
                )),
            };
            let metadata = match config.metadata_listen {
                Some(addr) => Some(bind_within(addr, patience).await?),
                None => None,
            };
            let console = match config.console_listen {
                Some(addr) => Some(bind_within(addr, patience).await?),
                None => None,
            };
            let cloud = Cloud {
                state,
                identity: identity.clone(),
                bundles,
                clusters,
                settings: Arc::new(CloudSettings {
                    region: config.region.clone(),
                    ec2_url: urls.ec2_url.clone().unwrap_or_default(),
                    property_defaults: config.properties.clone(),
                    network: config.network.clone(),
                    metadata: metadata.as_ref().and_then(metadata_target),
                }),
                unwraps: Arc::default(),
                guest_networks: Arc::default(),
            };
            if let Some(walrus) = &walrus {
                walrus.set_quota_source(Arc::new(crate::quotas::CloudQuotas(cloud.clone())));
            }
            spawn_instance_sync(cloud.clone());
            tokio::spawn(ec2_api::networks::Pusher::run(cloud.clone()));
            if let Some(listener) = metadata {
                start_metadata(&config, listener, cloud.clone());
            }
            if let Some(listener) = console {
                start_console(&config, listener, &main_tls, &cloud, &urls)?;
            }
            Some(QueryApi::new(identity.clone(), urls.clone(), cloud))
        }
        Roles::Walrus => None,
    };
    let app = axum::Router::new().fallback(front).with_state(Front {
        walrus,
        walrus_url: walrus_url.clone(),
        keys: query.as_ref().map(|_| identity.clone()),
        query,
    });

    let listener = bind_within(config.listen, patience).await?;
    let base = config.base_url();
    match &walrus_url {
        None => crate::say!("Walrus (S3) is serving at {base}/ and {base}/services/Walrus"),
        Some(url) => crate::say!("Bundles are read from the Walrus at {url}"),
    }
    if roles != Roles::Walrus {
        crate::say!("EC2 is serving at {base}/services/compute/");
        crate::say!("Euare (accounts) is serving at {base}/services/Euare");
    }
    crate::say!(
        "Koala is listening on {} ({}; the cloud's certificate is {})",
        config.listen,
        if config.plain_http {
            "HTTP and HTTPS"
        } else {
            "HTTPS only"
        },
        config
            .data_dir
            .join("keys")
            .join(identity::CLOUD_CERT_FILE)
            .display()
    );
    let port = Port {
        tls: main_tls.server(),
        plain: if config.plain_http {
            Plain::Serve
        } else {
            Plain::Refuse
        },
        limits: config.limits,
    };
    match leadership {
        None => serve::serve(listener, port, app, shutdown_signal()).await,
        Some(leadership) => {
            let (lost_tx, lost_rx) = tokio::sync::oneshot::channel();
            let until = async move {
                tokio::select! {
                    () = shutdown_signal() => {}
                    () = leadership.lost() => { let _ = lost_tx.send(()); }
                }
            };
            serve::serve(listener, port, app, until).await;
            if lost_rx.await.is_ok() {
                return Err(ServerError::LostLeadership);
            }
        }
    }
    Ok(())
}

/// Connects to the cloud's database and waits until this CLC leads the cloud (saying so when
/// another leads): the database, every write of this process fenced by its term, and the
/// leadership, whose loss stops the process.
async fn lead_cloud(
    config: &Config,
    url: &str,
) -> Result<(records::Postgres, records::Leadership), ServerError> {
    let url = url.to_owned();
    let database = tokio::task::spawn_blocking(move || records::Postgres::connect(&url))
        .await
        .map_err(|e| ServerError::Database(records::RecordError::Database(Box::new(e))))?
        .map_err(ServerError::Database)?;
    let holder = format!("{} ({})", crate::config::host_name(), config.listen);
    let name = database.name().to_owned();
    let leadership = database
        .lead(&holder, || {
            crate::say!(
                "Another cloud controller leads the cloud in {name}; this one waits to take over"
            );
        })
        .await
        .map_err(ServerError::Database)?;
    crate::say!(
        "This cloud controller leads the cloud in {} (term {})",
        database.name(),
        leadership.term
    );
    Ok((database, leadership))
}

/// Records the `[network]` layout in force in the CLC's state, or refuses to start under one
/// that plans addresses differently while instances hold addresses planned under the old.
fn adopt_network(config: &Config, state: &CloudState) -> Result<(), ServerError> {
    match ec2_api::networks::adopt_layout(state, config.network.as_ref(), &config.properties)? {
        Adopted::Same | Adopted::First => {}
        Adopted::Replaced { change, forgotten } => {
            let networks = match forgotten {
                1 => "1 security group's network".to_owned(),
                n => format!("{n} security groups' networks"),
            };
            crate::say!(
                "{change}; no instance held an address under the old layout, so the new one \
                 is in force and {networks} will be planned anew"
            );
        }
    }
    Ok(())
}

/// The cloud's clusters: those registered before, and the configured zone's at
/// `cluster_url` when `moved` (or when the zone has none yet). Each is called with the
/// CLC's key.
fn open_clusters(
    config: &Config,
    state: &CloudState,
    cluster_url: &str,
    moved: bool,
    clc_key: &ComponentKey,
    clc_tls: &Tls,
) -> Result<Arc<ClusterSet>, ServerError> {
    let client = RpcClient::new(clc_key.clone(), clc_tls, ComponentKind::ClusterController);
    let connect = move |url: &str| -> Arc<dyn ec2_api::Clusters> {
        Arc::new(CcClusters {
            client: ClusterClient::new(client.clone(), url),
        })
    };
    let clusters = ClusterSet::open(state, Box::new(connect))
        .map_err(|e| ServerError::CloudState(e.into()))?;
    if moved || clusters.of(&config.zone).is_err() {
        clusters
            .register(state, &config.zone, cluster_url)
            .map_err(|e| ServerError::CloudState(e.into()))?;
    }
    for (zone, url, _) in clusters.all() {
        crate::say!("Instances in {zone} are placed by the cluster controller at {url}");
    }
    Ok(Arc::new(clusters))
}

/// Opens Walrus in this process, verifying callers against `directory`.
fn open_walrus(
    config: &Config,
    directory: Arc<dyn walrus::Directory>,
) -> Result<Walrus, ServerError> {
    Walrus::open(
        WalrusConfig {
            data_dir: config.data_dir.clone(),
            virtual_host_domain: config.virtual_host_domain.clone(),
            region: config.region.clone(),
            image_grace: config.walrus.image_grace(),
            object_data: config.walrus.object_data(),
        },
        directory,
    )
    .map_err(ServerError::Walrus)
}

/// Runs Walrus on a host of its own beside a cloud controller (`koala walrus --cloud-url`):
/// users and keys come from the CLC's key service, the cloud's key from
/// `DATA_DIR/keys/cloud-pk.pem` (copied from the CLC's host); its own principal (`walrus`)
/// is made on first start with the admin's eucarc sourced.
pub async fn run_walrus_joined(config: Config, cloud_url: String) -> Result<(), ServerError> {
    let (key, tls) = remote_component(&config, ComponentKind::Walrus, "", &cloud_url).await?;
    let cloud_key = config.data_dir.join("keys").join(identity::CLOUD_KEY_FILE);
    let client = RpcClient::new(key, &tls, ComponentKind::CloudController);
    let quotas = crate::quotas::ClcQuotas::new(client.clone(), &cloud_url);
    let directory =
        ClcDirectory::open(client, &cloud_url, &cloud_key).map_err(ServerError::Walrus)?;
    let walrus = open_walrus(&config, Arc::new(directory))?;
    walrus.set_quota_source(quotas);
    let router = axum::Router::new().fallback(move |req: Request| {
        let walrus = walrus.clone();
        async move { walrus.handle(req).await }
    });
    crate::say!("Walrus verifies users with the cloud controller at {cloud_url}");
    let port = Port {
        tls: tls.server(),
        plain: if config.plain_http {
            Plain::Serve
        } else {
            Plain::Refuse
        },
        limits: config.limits,
    };
    serve_alone(&config, router, port, "Walrus (S3)").await
}

/// The listen address of a role on the main port + `offset`.
fn role_addr(config: &Config, offset: u16) -> SocketAddr {
    SocketAddr::new(
        config.listen.ip(),
        config.listen.port().wrapping_add(offset),
    )
}

/// How the roles of one process reach a port of it (over TLS, as every internal call).
fn local_url(config: &Config, offset: u16) -> String {
    let ip = match config.listen.ip() {
        ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        ip => ip,
    };
    format!(
        "https://{}",
        SocketAddr::new(ip, config.listen.port().wrapping_add(offset))
    )
}

/// Binds a listener.
async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ServerError> {
    bind_within(addr, Duration::ZERO).await
}

/// How long a CLC that has just taken over the cloud waits for the ports of the one it
/// replaces: at the same address, the deposed leader stops serving only once it notices (its
/// heartbeat, then its open requests drained).
const TAKEOVER_PATIENCE: Duration = Duration::from_secs(60);

/// Binds `addr`, asking again while it is in use, for up to `patience`.
async fn bind_within(
    addr: SocketAddr,
    patience: Duration,
) -> Result<tokio::net::TcpListener, ServerError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other.map_err(|source| ServerError::Bind { addr, source }),
        }
    }
}

/// A port of the cluster or node controller: HTTPS only, with the component's certificate.
fn internal_port(config: &Config, tls: &Tls) -> Port {
    Port {
        tls: tls.server(),
        plain: Plain::Refuse,
        limits: config.limits,
    }
}

/// Starts the cluster controller (on the main port plus one) and this host's node controller
/// (plus two), registers the node with the cluster, and returns the CC's URL.
/// A node that cannot start (no libvirt) is reported in one sentence; the rest of the cloud
/// runs without it.
async fn start_compute(
    config: &Config,
    identity: &Identity,
    patience: Duration,
) -> Result<String, ServerError> {
    let zone = &config.zone;
    let hosts = certs::host_names(config);
    let cc_kind = ComponentKind::ClusterController;
    let cc_name = cc_kind.principal_name(zone);
    let cc_key = roles::component_key(identity, config, cc_kind, &cc_name)?;
    let cc_tls = certs::local(identity, config, &cc_name, &[cc_kind], &hosts)?;
    let cluster = roles::open_cluster(config, cc_key, &cc_tls).await?;
    let cc_addr = role_addr(config, 1);
    let cc_listener = bind_within(cc_addr, patience).await?;
    let cc_router = compute::cluster::http::router(cluster.clone(), roles::verifier(identity));
    tokio::spawn(serve::serve(
        cc_listener,
        internal_port(config, &cc_tls),
        cc_router,
        std::future::pending(),
    ));
    crate::say!(
        "The cluster controller ({zone}) is serving at {}",
        local_url(config, 1)
    );

    let host = roles::node_host(config);
    let node_started = async {
        roles::ensure_libvirt().await?;
        let nc_kind = ComponentKind::NodeController;
        let nc_name = nc_kind.principal_name(&host);
        let nc_key = roles::component_key(identity, config, nc_kind, &nc_name)?;
        let nc_tls = certs::local(identity, config, &nc_name, &[nc_kind], &hosts)?;
        let walrus_url = format!("{}/services/Walrus", local_url(config, 0));
        let node = roles::open_node(config, nc_key, &nc_tls, &walrus_url).await?;
        Ok::<_, RoleError>((node, nc_tls))
    }
    .await;
    match node_started {
        Ok((node, nc_tls)) => {
            let nc_addr = role_addr(config, 2);
            let nc_listener = bind_within(nc_addr, patience).await?;
            let nc_router = compute::node::http::router(node, roles::verifier(identity));
            tokio::spawn(serve::serve(
                nc_listener,
                internal_port(config, &nc_tls),
                nc_router,
                std::future::pending(),
            ));
            // The node is registered in the same process, as no principal but an
            // administrator may register nodes over the network.
            let registration = NodeRegistration {
                host: host.clone(),
                url: local_url(config, 2),
            };
            let registered = cluster
                .nodes()
                .iter()
                .any(|n| n.host == host && n.url == registration.url);
            if !registered {
                cluster.register(registration).await.map_err(|source| {
                    ServerError::RegisterNode {
                        host: host.clone(),
                        source,
                    }
                })?;
            }
            crate::say!(
                "The node controller ({host}) is serving at {}",
                local_url(config, 2)
            );
        }
        Err(e) => crate::say!(
            "No node controller runs on this host, so no instance can start: {}",
            rpc::error_chain(&e)
        ),
    }
    Ok(local_url(config, 1))
}

/// Runs a cluster controller alone (`koala cluster`): its nodes' registry and placement,
/// verifying calls with the CLC at `cloud_url`.
pub async fn run_cluster(config: Config, cloud_url: String) -> Result<(), ServerError> {
    let zone = config.zone.clone();
    let (key, tls) =
        remote_component(&config, ComponentKind::ClusterController, &zone, &cloud_url).await?;
    let cluster = roles::open_cluster(&config, key.clone(), &tls).await?;
    let clc = RpcClient::new(key, &tls, ComponentKind::CloudController);
    let verifier = rpc::Verifier::remote(clc, &cloud_url);
    let router = compute::cluster::http::router(cluster, verifier);
    let what = format!("The cluster controller ({zone})");
    serve_alone(&config, router, internal_port(&config, &tls), &what).await
}

/// Runs a node controller alone (`koala node`): instances on this host, images from the
/// Walrus at `walrus_url` (by default the CLC's), calls verified with the CLC at `cloud_url`.
pub async fn run_node(
    config: Config,
    cloud_url: String,
    walrus_url: Option<String>,
) -> Result<(), ServerError> {
    let host = roles::node_host(&config);
    let (key, tls) =
        remote_component(&config, ComponentKind::NodeController, &host, &cloud_url).await?;
    roles::ensure_libvirt().await?;
    let walrus_url = walrus_url
        .unwrap_or_else(|| format!("{}/services/Walrus", cloud_url.trim_end_matches('/')));
    let node = roles::open_node(&config, key.clone(), &tls, &walrus_url).await?;
    let clc = RpcClient::new(key, &tls, ComponentKind::CloudController);
    let verifier = rpc::Verifier::remote(clc, &cloud_url);
    let router = compute::node::http::router(node, verifier);
    let what = format!("The node controller ({host})");
    serve_alone(&config, router, internal_port(&config, &tls), &what).await
}

/// The key and TLS settings of the component of `kind` qualified by `qualifier` (its zone,
/// its host) of a role running apart (registered on first start).
async fn remote_component(
    config: &Config,
    kind: ComponentKind,
    qualifier: &str,
    cloud_url: &str,
) -> Result<(ComponentKey, Tls), ServerError> {
    let name = kind.principal_name(qualifier);
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServerError::Io {
        path: config.data_dir.clone(),
        source,
    })?;
    let (config, cloud_url) = (config.clone(), cloud_url.to_owned());
    tokio::task::spawn_blocking(move || roles::remote_component(&config, kind, &name, &cloud_url))
        .await
        .map_err(RoleError::Task)?
        .map_err(ServerError::Role)
}

/// Serves a role running apart on its listen address until SIGINT or SIGTERM.
async fn serve_alone(
    config: &Config,
    router: axum::Router,
    port: Port,
    what: &str,
) -> Result<(), ServerError> {
    let listener = bind(config.listen).await?;
    let scheme = if port.plain == Plain::Serve {
        "http"
    } else {
        "https"
    };
    crate::say!("{what} is serving at {scheme}://{}", config.listen);
    serve::serve(listener, port, router, shutdown_signal()).await;
    Ok(())
}

/// Serves the instance metadata service on `addr` (`[network] metadata_listen`), where the
/// CC sends guests' requests to 169.254.169.254:80. Plain HTTP, as guests speak it: who is
/// answered is decided by the connection's source address (see [`ec2_api::metadata`]), so
/// TLS would add nothing. The port has the limits of every other.
fn start_metadata(config: &Config, listener: tokio::net::TcpListener, cloud: Cloud) {
    let bound = match listener.local_addr() {
        Ok(addr) => addr.to_string(),
        Err(_) => "its port".to_owned(),
    };
    let router = axum::Router::new().fallback(
        move |ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request| {
            let cloud = cloud.clone();
            async move {
                ec2_api::metadata::serve(cloud, peer.ip(), req.method(), req.uri().path()).await
            }
        },
    );
    let port = Port {
        tls: None,
        plain: Plain::Serve,
        limits: config.limits,
    };
    tokio::spawn(serve::serve(listener, port, router, std::future::pending()));
    crate::say!("The instance metadata service is serving at http://{bound}/latest/meta-data/ (guests ask 169.254.169.254)");
}

/// Serves the web console on `listener` (`[console] listen`, 8443): HTTPS only with the CLC's
/// certificate, asking browsers for no client certificate; plain HTTP is redirected to the
/// same URL over HTTPS. The cloud admin gets the default password on first start.
fn start_console(
    config: &Config,
    listener: tokio::net::TcpListener,
    tls: &Tls,
    cloud: &Cloud,
    urls: &ServiceUrls,
) -> Result<(), ServerError> {
    let default_password = cloud
        .identity
        .ensure_admin_login()
        .map_err(ServerError::Identity)?;
    let bound = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.console_listen.unwrap_or(config.listen),
        source,
    })?;
    let host = match bound.ip() {
        ip if ip.is_unspecified() => crate::config::host_name(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let url = format!("https://{host}:{}/", bound.port());
    let router = console::router(console::ConsoleSetup {
        cloud: cloud.clone(),
        urls: urls.clone(),
        url: match &config.console.public_url {
            Some(public) => format!("{}/", public.trim_end_matches('/')),
            None => url.clone(),
        },
        link_lifetime: std::time::Duration::from_secs(
            config
                .console
                .link_lifetime_secs
                .unwrap_or(7 * 24 * 60 * 60),
        ),
        mail: console::MailSettings {
            smtp: config.mail.smtp.clone(),
            from: config
                .mail
                .from
                .clone()
                .unwrap_or_else(|| format!("Koala <koala@{}>", crate::config::host_name())),
            dir: config.data_dir.join("mail"),
        },
    })
    .map_err(ServerError::Console)?;
    let port = Port {
        tls: tls.web_server(),
        plain: Plain::Redirect,
        limits: config.limits,
    };
    tokio::spawn(serve::serve(listener, port, router, std::future::pending()));
    let first = if default_password {
        " (first sign-in: admin / admin, then choose a password)"
    } else {
        ""
    };
    crate::say!("The web console is at {url}{first}");
    if config.mail.smtp.is_none() {
        crate::say!(
            "The console's mail is written to {} (no [mail] smtp relay is set)",
            config.data_dir.join("mail").display()
        );
    }
    Ok(())
}

/// Where the CCs send guests' metadata requests: the listener's own address, or with an
/// unspecified one (`0.0.0.0`) "this port on the CC's host", which the CC points at one of
/// its gateway addresses (right when the CC runs here; a CLC apart names its address in
/// `metadata_listen`).
fn metadata_target(listener: &tokio::net::TcpListener) -> Option<std::net::SocketAddrV4> {
    match listener.local_addr().ok()? {
        SocketAddr::V4(addr) => Some(addr),
        SocketAddr::V6(addr) if addr.ip().is_unspecified() => Some(std::net::SocketAddrV4::new(
            std::net::Ipv4Addr::UNSPECIFIED,
            addr.port(),
        )),
        SocketAddr::V6(_) => None,
    }
}

/// Keeps the CLC's instance records in step with the nodes, every second.
fn spawn_instance_sync(cloud: Cloud) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = ec2_api::instances::sync(&cloud).await {
                tracing::warn!("cannot sync the instances: {e:?}");
            }
        }
    });
}

/// The cloud controller's view of Walrus on the same host: direct reads of the store with
/// the registering account's rights.
struct WalrusBundles {
    walrus: Walrus,
}

impl BundleStore for WalrusBundles {
    fn size<'a>(
        &'a self,
        account_id: &'a str,
        bucket: &'a str,
        key: &'a str,
    ) -> Pending<'a, Result<u64, BundleAccess>> {
        let walrus = self.walrus.clone();
        let (account_id, bucket, key) = (account_id.to_owned(), bucket.to_owned(), key.to_owned());
        Box::pin(off_reactor(move || {
            walrus
                .object_size_for(&account_id, &bucket, &key)
                .map_err(bundle_access)
        }))
    }

    fn read<'a>(
        &'a self,
        account_id: &'a str,
        bucket: &'a str,
        key: &'a str,
        limit: u64,
    ) -> Pending<'a, Result<Vec<u8>, BundleAccess>> {
        Box::pin(async move {
            self.walrus
                .read_object_for(account_id, bucket, key, limit)
                .await
                .map_err(bundle_access)
        })
    }

    fn retain<'a>(
        &'a self,
        image_id: &'a str,
        location: &'a str,
        manifest_sha256: &'a str,
    ) -> Pending<'a, Result<(), BundleAccess>> {
        let walrus = self.walrus.clone();
        let (image_id, location, sha) = (
            image_id.to_owned(),
            location.to_owned(),
            manifest_sha256.to_owned(),
        );
        Box::pin(off_reactor(move || {
            walrus
                .retain_image(&image_id, &location, &sha)
                .map_err(|e| BundleAccess::Failed(Box::new(e)))
        }))
    }

    fn release<'a>(&'a self, image_id: &'a str) -> Pending<'a, Result<(), BundleAccess>> {
        let walrus = self.walrus.clone();
        let image_id = image_id.to_owned();
        Box::pin(off_reactor(move || {
            walrus
                .release_image(&image_id)
                .map_err(|e| BundleAccess::Failed(Box::new(e)))
        }))
    }

    fn buckets_of<'a>(
        &'a self,
        account_id: &'a str,
    ) -> Pending<'a, Result<Vec<String>, BundleAccess>> {
        let walrus = self.walrus.clone();
        let account_id = account_id.to_owned();
        Box::pin(off_reactor(move || {
            walrus.buckets_of(&account_id).map_err(bundle_access)
        }))
    }
}

/// Runs a store call that blocks (RocksDB, with fsync for writes) on the blocking pool.
async fn off_reactor<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BundleAccess> + Send + 'static,
) -> Result<T, BundleAccess> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BundleAccess::Failed(Box::new(e)))?
}

fn bundle_access(err: walrus::AccessError) -> BundleAccess {
    match err {
        walrus::AccessError::NotFound { .. } => BundleAccess::NotFound,
        walrus::AccessError::Denied { .. } => BundleAccess::Denied,
        walrus::AccessError::TooLarge { .. } => BundleAccess::TooLarge,
        e @ walrus::AccessError::Failed(_) => BundleAccess::Failed(Box::new(e)),
    }
}

/// The service URLs written into credentials (S3 at `walrus_url` when Walrus runs apart).
pub fn service_urls(config: &Config, walrus_url: Option<&str>) -> ServiceUrls {
    let base = config.base_url();
    ServiceUrls {
        s3_url: walrus_url
            .map(|url| url.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("{base}/services/Walrus")),
        ec2_url: Some(format!("{base}/services/compute/")),
        euare_url: Some(format!("{base}/services/Euare")),
        region: config.region.clone(),
    }
}

async fn front(State(front): State<Front>, req: Request) -> Response<Body> {
    if let Some(identity) = &front.keys {
        if req.uri().path().starts_with("/services/Identity/") {
            return roles::key_service(identity.clone(), req).await;
        }
    }
    if let (Some(identity), Some(query)) = (&front.keys, &front.query) {
        if req.uri().path() == crate::quotas::QUOTAS_PATH {
            return crate::quotas::serve(identity.clone(), query.cloud().clone(), req).await;
        }
    }
    match (&front.query, &front.walrus) {
        (Some(query), _) if QueryApi::claims(&req) => query.handle(req).await,
        (_, Some(walrus)) => walrus.handle(req).await,
        (_, None) => {
            // S3's way of naming the endpoint a request belongs at (not followed by clients,
            // whose signature names this host).
            let url = front.walrus_url.as_deref().unwrap_or_default();
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>PermanentRedirect</Code><Message>This is the cloud controller; Walrus (S3) serves at {url}.</Message><Endpoint>{url}</Endpoint></Error>"
            );
            let mut resp = Response::new(Body::from(body));
            *resp.status_mut() = http::StatusCode::MOVED_PERMANENTLY;
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/xml"),
            );
            resp
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

/// Writes the admin's credentials unzipped into `dir`. On first start (or when the folder has
/// no certificate yet) that is a whole new bundle, certificate and key included; on a restart
/// only the eucarc and euca2ools.ini are rewritten (the URLs or the active key may have
/// changed), pointing at the certificate and key already there, which are kept.
fn write_admin_credentials(
    identity: &Identity,
    admin: &identity::Credentials,
    urls: &ServiceUrls,
    dir: &Path,
) -> Result<(), ServerError> {
    let files = match existing_key_files(dir) {
        Some(names) => identity::CredentialBundle::config_files(admin, urls, &names),
        None => {
            identity
                .credential_bundle(&admin.account_id, &admin.user_name, urls)
                .map_err(ServerError::Identity)?
                .files
        }
    };
    // The key and certificates first, the eucarc (which names them) last.
    for file in files.iter().rev() {
        let mode = if file.private { 0o600 } else { 0o644 };
        write_file(&dir.join(&file.name), &file.contents, mode)?;
    }
    Ok(())
}

/// The names of the user certificate, key and cloud cert already in a credentials folder.
fn existing_key_files(dir: &Path) -> Option<identity::KeyFiles> {
    if !dir.join(identity::CLOUD_CERT_FILE).exists() {
        return None;
    }
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("euca2-") && name.ends_with("-cert.pem"))
        .map(|cert| identity::KeyFiles {
            private_key: cert.replace("-cert.pem", "-pk.pem"),
            certificate: cert,
            cloud_certificate: identity::CLOUD_CERT_FILE.to_owned(),
        })
        .find(|names| dir.join(&names.private_key).exists())
}

/// Writes a file atomically (temp name, fsync, rename, fsync the folder) with `mode`, in a
/// folder only its owner may enter (credentials live there).
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), ServerError> {
    let err = |source| ServerError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    identity::write_atomic(path, contents, mode).map_err(err)
}
