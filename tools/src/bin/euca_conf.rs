//! `euca_conf`: Eucalyptus' cloud administration command.
//!
//! - `euca_conf --get-credentials FILE.zip [--cred-account NAME] [--cred-user NAME]` writes the
//!   zip Eucalyptus' "Download credentials" gave (eucarc, euca2ools.ini, the user's
//!   certificate and key, the cloud cert), asked of the running cloud (Euare
//!   `GetCredentials`).
//! - `euca_conf --register-nodes "HOST[:PORT] ..."` registers node controllers with the
//!   cluster controller (`--cluster-url`, else `KOALA_CLUSTER_URL`, else the EC2 URL's host on
//!   port 8774); `--deregister-nodes` removes them and revokes their principals (`nc-NAME`).
//!
//! - `euca_conf --register-cluster --partition ZONE --host HOST [--port PORT]` registers a
//!   cluster controller as the cluster of availability zone ZONE (port 8774 by default);
//!   `--deregister-cluster --partition ZONE` removes it and revokes its principal
//!   (`cc-ZONE`); `--list-clusters` lists them with their state.
//!
//! Eucalyptus' euca_conf read the database on the cloud controller's host; Koala's calls the
//! running cloud with the admin's credentials from the environment, so it works from any host.
//!
//! The Eucalyptus 1.5 guides' single-dash spellings work as well: `-addcluster NAME HOST`,
//! `-delcluster NAME`, `-addnode "HOSTS"`, `-delnode "HOSTS"`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine;
use clap::Parser;
use euca2ools::client::{euare_url_from_env, query_call, xml_text, ClientError, EnvCredentials};
use euca2ools::ec2xml::{self, XmlError};
use identity::ComponentKind;
use rpc::cluster::ClusterClient;
use rpc::tls::{Tls, TlsError};
use rpc::{ComponentKey, NodeRegistration, RpcClient, RpcError};

/// Why `euca_conf` failed; `main` prints it with its chain of causes.
#[derive(Debug, thiserror::Error)]
enum ConfError {
    /// No action flag was given.
    #[error(
        "give --get-credentials FILE, --register-nodes, --deregister-nodes, --register-cluster, \
         --deregister-cluster or --list-clusters"
    )]
    NoAction,
    /// No credentials or endpoint in the environment, or a call to the cloud failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Neither `--cluster-url`, `KOALA_CLUSTER_URL` nor `EC2_URL` names the cluster.
    #[error("give --cluster-url (or source the admin's eucarc)")]
    NoClusterUrl,
    /// `EC2_URL` is not set.
    #[error("source the cloud admin's eucarc (EC2_URL is not set)")]
    NoEc2Url,
    /// `EUCALYPTUS_CERT` is not set.
    #[error("EUCALYPTUS_CERT is not set: source the admin's eucarc")]
    NoCloudCert,
    /// The cloud's certificate could not be read.
    #[error("cannot read {path}")]
    ReadCert {
        /// The file `EUCALYPTUS_CERT` names.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The cloud's certificate cannot be trusted as a CA.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The async runtime could not be built.
    #[error("cannot start the runtime")]
    Runtime(#[source] std::io::Error),
    /// The cluster controller refused or did not answer a node's registration.
    #[error("cannot register {host}")]
    RegisterNode {
        /// The node's `HOST:PORT`.
        host: String,
        /// The cluster controller's error.
        #[source]
        source: RpcError,
    },
    /// The cluster controller refused or did not answer a node's deregistration.
    #[error("cannot deregister {host}")]
    DeregisterNode {
        /// The node's `HOST:PORT`.
        host: String,
        /// The cluster controller's error.
        #[source]
        source: RpcError,
    },
    /// The cluster controller did not list its nodes.
    #[error("cannot list the nodes")]
    ListNodes(#[source] RpcError),
    /// A component principal's keys could not be listed.
    #[error("cannot list the keys of {user}")]
    ListKeys {
        /// The principal.
        user: String,
        /// The account service's error.
        #[source]
        source: ClientError,
    },
    /// A component principal's key could not be deleted.
    #[error("cannot revoke {user}'s key")]
    Revoke {
        /// The principal.
        user: String,
        /// The account service's error.
        #[source]
        source: ClientError,
    },
    /// A cluster could not be registered.
    #[error("cannot register the cluster of {zone}")]
    RegisterCluster {
        /// The cluster's availability zone.
        zone: String,
        /// Why.
        #[source]
        source: Box<ConfError>,
    },
    /// A cluster could not be deregistered.
    #[error("cannot deregister the cluster of {zone}")]
    DeregisterCluster {
        /// The cluster's availability zone.
        zone: String,
        /// Why.
        #[source]
        source: Box<ConfError>,
    },
    /// The answer to an action is not XML.
    #[error("the answer to {action} is not XML")]
    Xml {
        /// The action called.
        action: &'static str,
        /// What did not parse.
        #[source]
        source: XmlError,
    },
    /// `GetCredentials` answered without the credentials.
    #[error("the response has no <Credentials>: {0}")]
    NoCredentials(String),
    /// The credentials answered are not base64.
    #[error("the credentials in the response are not base64")]
    NotBase64(#[source] base64::DecodeError),
    /// The credentials zip could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The zip's path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Administers a Koala cloud (Eucalyptus' euca_conf).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Downloads a user's credentials into FILE (a zip): a fresh certificate and key, and an
    /// active access key.
    #[arg(long = "get-credentials", value_name = "FILE")]
    get_credentials: Option<PathBuf>,
    /// Registers node controllers (`HOST[:PORT]`, port 8775 by default, separated by spaces)
    /// with the cluster controller (Eucalyptus 1.5: `-addnode "HOSTS"`).
    #[arg(long = "register-nodes", value_name = "NODES")]
    register_nodes: Option<String>,
    /// Deregisters node controllers and revokes their keys (1.5: `-delnode "HOSTS"`).
    #[arg(long = "deregister-nodes", value_name = "NODES")]
    deregister_nodes: Option<String>,
    /// Registers the cluster controller at `--host` (and `--port`) as the cluster of
    /// availability zone `--partition` (1.5: `-addcluster NAME HOST`).
    #[arg(long = "register-cluster", requires_all = ["partition", "host"])]
    register_cluster: bool,
    /// Deregisters the cluster of `--partition` and revokes its key (1.5: `-delcluster
    /// NAME`).
    #[arg(long = "deregister-cluster", requires = "partition")]
    deregister_cluster: bool,
    /// Lists the registered clusters.
    #[arg(long = "list-clusters")]
    list_clusters: bool,
    /// The availability zone (Eucalyptus' partition) of a cluster.
    #[arg(long, value_name = "ZONE")]
    partition: Option<String>,
    /// The host of the cluster controller to register.
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// The cluster controller's port.
    #[arg(long, value_name = "PORT", default_value = "8774")]
    port: u16,
    /// The component's name (accepted as Eucalyptus' euca_conf did; Koala names a cluster by
    /// its zone).
    #[arg(long, value_name = "NAME")]
    component: Option<String>,
    /// The cluster controller's URL [default: KOALA_CLUSTER_URL, else EC2_URL's host, port
    /// 8774].
    #[arg(long = "cluster-url", value_name = "URL")]
    cluster_url: Option<String>,
    /// The account whose user's credentials to get.
    #[arg(
        long = "cred-account",
        value_name = "NAME",
        default_value = "eucalyptus"
    )]
    cred_account: String,
    /// The user whose credentials to get.
    #[arg(long = "cred-user", value_name = "NAME", default_value = "admin")]
    cred_user: String,
    /// The account service's URL [default: EUARE_URL, else derived from S3_URL].
    #[arg(long)]
    url: Option<String>,
}

/// The arguments with Eucalyptus 1.5's single-dash actions spelled as today's flags, which
/// they mean: the guides' commands are typed as printed.
fn with_15_spellings(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let flags: &[&str] = match arg.to_str() {
            Some("-addcluster") => &["--register-cluster", "--partition", "--host"],
            Some("-delcluster") => &["--deregister-cluster", "--partition"],
            Some("-addnode") => &["--register-nodes"],
            Some("-delnode") => &["--deregister-nodes"],
            _ => {
                out.push(arg);
                continue;
            }
        };
        // The action, then each value after the flag it is for (a missing value is left to
        // the parser to report).
        out.push(flags[0].into());
        if flags.len() == 1 {
            out.extend(args.next());
        }
        for flag in &flags[1..] {
            out.push((*flag).into());
            out.extend(args.next());
        }
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(with_15_spellings(std::env::args_os()));
    let result = if cli.register_cluster {
        register_cluster(&cli)
    } else if cli.deregister_cluster {
        deregister_cluster(&cli)
    } else if cli.list_clusters {
        list_clusters()
    } else if let Some(nodes) = &cli.register_nodes {
        register_nodes(&cli, nodes)
    } else if let Some(nodes) = &cli.deregister_nodes {
        deregister_nodes(&cli, nodes)
    } else if let Some(file) = &cli.get_credentials {
        get_credentials(&cli, file)
    } else {
        Err(ConfError::NoAction)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("euca_conf: {}", rpc::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// `HOST[:PORT]` as the address the CC registers the node by, and its URL.
fn node_address(spec: &str) -> (String, String) {
    let address = if spec.contains(':') {
        spec.to_owned()
    } else {
        format!("{spec}:8775")
    };
    // Nodes speak HTTPS only.
    let url = format!("https://{address}");
    (address, url)
}

/// The CC's client, signing with the admin's key.
fn cluster(cli: &Cli) -> Result<(ClusterClient, tokio::runtime::Runtime), ConfError> {
    let creds = EnvCredentials::from_env()?;
    let url = match (&cli.cluster_url, std::env::var("KOALA_CLUSTER_URL")) {
        (Some(url), _) => url.clone(),
        (None, Ok(url)) => url,
        (None, Err(_)) => {
            let ec2 = std::env::var("EC2_URL").map_err(|_| ConfError::NoClusterUrl)?;
            let host = ec2
                .split("://")
                .nth(1)
                .and_then(|rest| rest.split(['/', ':']).next())
                .unwrap_or("127.0.0.1");
            format!("https://{host}:8774")
        }
    };
    let key = ComponentKey {
        access_key_id: creds.access_key_id,
        secret_access_key: creds.secret_access_key,
        region: creds.region,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ConfError::Runtime)?;
    // The CC speaks HTTPS only, with a certificate of the cloud's CA, which the admin's
    // eucarc names.
    let ca_file = std::env::var("EUCALYPTUS_CERT").map_err(|_| ConfError::NoCloudCert)?;
    let ca = std::fs::read_to_string(&ca_file).map_err(|source| ConfError::ReadCert {
        path: ca_file.clone(),
        source,
    })?;
    let tls = Tls::new(&ca, None)?;
    let client = runtime.block_on(async {
        ClusterClient::new(
            RpcClient::new(key, &tls, ComponentKind::ClusterController),
            &url,
        )
    });
    Ok((client, runtime))
}

fn register_nodes(cli: &Cli, nodes: &str) -> Result<(), ConfError> {
    let (client, runtime) = cluster(cli)?;
    for spec in nodes.split_whitespace() {
        let (host, url) = node_address(spec);
        let status = runtime
            .block_on(client.register(&NodeRegistration {
                host: host.clone(),
                url,
            }))
            .map_err(|source| ConfError::RegisterNode {
                host: host.clone(),
                source,
            })?;
        match (&status.resources, &status.error) {
            (Some(r), _) => println!(
                "Registered node {host} ({}): {} cores, {} MiB, {} GiB",
                r.host, r.cores, r.memory_mib, r.disk_gib
            ),
            (None, error) => println!(
                "Registered node {host}; it does not answer yet: {}",
                error.as_deref().unwrap_or("no report")
            ),
        }
    }
    Ok(())
}

fn deregister_nodes(cli: &Cli, nodes: &str) -> Result<(), ConfError> {
    let (client, runtime) = cluster(cli)?;
    let known = runtime
        .block_on(client.nodes())
        .map_err(ConfError::ListNodes)?;
    for spec in nodes.split_whitespace() {
        let (host, url) = node_address(spec);
        // Registered by this name, or (a node that registered itself) at this address.
        let name = known
            .iter()
            .find(|n| n.host == host)
            .or_else(|| known.iter().find(|n| n.url == url))
            .and_then(|n| n.resources.as_ref())
            .map(|r| r.host.clone());
        runtime
            .block_on(client.deregister(&host))
            .map_err(|source| ConfError::DeregisterNode {
                host: host.clone(),
                source,
            })?;
        // Its principal goes too: a deregistered node's calls are refused from now on.
        if let Some(name) = name {
            let user = format!("nc-{name}");
            revoke(&user)?;
            println!("Deregistered node {host} and revoked {user}");
        } else {
            println!("Deregistered node {host}");
        }
    }
    Ok(())
}

/// Deletes every access key of component principal `user`, so its calls are refused.
fn revoke(user: &str) -> Result<(), ConfError> {
    let creds = EnvCredentials::from_env()?;
    let euare = euare_url_from_env()?;
    let body = match query_call(
        &euare,
        "iam",
        "2010-05-08",
        "ListAccessKeys",
        &[("UserName", user)],
        &creds,
    ) {
        Ok(body) => body,
        // A component that never started has no principal: nothing to revoke.
        Err(euca2ools::client::ClientError::Service { code, .. }) if code == "NoSuchEntity" => {
            return Ok(())
        }
        Err(source) => {
            return Err(ConfError::ListKeys {
                user: user.to_owned(),
                source,
            })
        }
    };
    for key in body
        .split("<AccessKeyId>")
        .skip(1)
        .filter_map(|rest| rest.split('<').next())
    {
        query_call(
            &euare,
            "iam",
            "2010-05-08",
            "DeleteAccessKey",
            &[("UserName", user), ("AccessKeyId", key)],
            &creds,
        )
        .map_err(|source| ConfError::Revoke {
            user: user.to_owned(),
            source,
        })?;
    }
    Ok(())
}

/// Calls an EC2 action of the cloud (EC2_URL) with the admin's credentials.
fn ec2_call(action: &str, params: &[(&str, &str)]) -> Result<String, ConfError> {
    let creds = EnvCredentials::from_env()?;
    let url = std::env::var("EC2_URL").map_err(|_| ConfError::NoEc2Url)?;
    Ok(query_call(
        &url,
        "ec2",
        "2016-11-15",
        action,
        params,
        &creds,
    )?)
}

fn register_cluster(cli: &Cli) -> Result<(), ConfError> {
    let zone = cli.partition.as_deref().unwrap_or_default();
    let host = cli.host.as_deref().unwrap_or_default();
    let port = cli.port.to_string();
    ec2_call(
        "RegisterCluster",
        &[("Partition", zone), ("Host", host), ("Port", &port)],
    )
    .map_err(|e| ConfError::RegisterCluster {
        zone: zone.to_owned(),
        source: Box::new(e),
    })?;
    println!("Registered cluster {zone} at {host}:{port}");
    Ok(())
}

fn deregister_cluster(cli: &Cli) -> Result<(), ConfError> {
    let zone = cli.partition.as_deref().unwrap_or_default();
    ec2_call("DeregisterCluster", &[("Partition", zone)]).map_err(|e| {
        ConfError::DeregisterCluster {
            zone: zone.to_owned(),
            source: Box::new(e),
        }
    })?;
    let user = format!("cc-{zone}");
    revoke(&user)?;
    println!("Deregistered cluster {zone} and revoked {user}");
    Ok(())
}

fn list_clusters() -> Result<(), ConfError> {
    let body = ec2_call("DescribeClusters", &[])?;
    let root = ec2xml::parse(&body).map_err(|source| ConfError::Xml {
        action: "DescribeClusters",
        source,
    })?;
    for item in root.items("clusterInfo") {
        println!(
            "CLUSTER\t{}\t{}\t{}\t{}",
            item.field("partition"),
            item.field("url"),
            item.field("state"),
            item.field("detail")
        );
    }
    Ok(())
}

fn get_credentials(cli: &Cli, file: &std::path::Path) -> Result<(), ConfError> {
    let creds = EnvCredentials::from_env()?;
    let url = match &cli.url {
        Some(url) => url.clone(),
        None => euare_url_from_env()?,
    };
    let body = query_call(
        &url,
        "iam",
        "2010-05-08",
        "GetCredentials",
        &[
            ("AccountName", &cli.cred_account),
            ("UserName", &cli.cred_user),
        ],
        &creds,
    )?;
    let encoded =
        xml_text(&body, "Credentials").ok_or_else(|| ConfError::NoCredentials(body.clone()))?;
    let zip = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(ConfError::NotBase64)?;
    // Readable by its owner only: the zip holds a secret key.
    identity::write_atomic(file, &zip, 0o600).map_err(|source| ConfError::Write {
        path: file.to_owned(),
        source,
    })?;
    println!(
        "Wrote the credentials of user {} of account {} to {}",
        cli.cred_user,
        cli.cred_account,
        file.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_read_as_before_with_their_causes_after() {
        let err = ConfError::RegisterCluster {
            zone: "cluster02".into(),
            source: Box::new(ConfError::NoEc2Url),
        };
        assert_eq!(
            rpc::error_chain(&err),
            "cannot register the cluster of cluster02: source the cloud admin's eucarc \
             (EC2_URL is not set)"
        );
        let err = ConfError::ReadCert {
            path: "/nowhere/cloud-cert.pem".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(
            rpc::error_chain(&err),
            "cannot read /nowhere/cloud-cert.pem: entity not found"
        );
    }

    fn rewrite(args: &[&str]) -> Vec<String> {
        with_15_spellings(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().expect("utf-8"))
            .collect()
    }

    #[test]
    fn the_15_guides_spellings_mean_todays_flags() {
        assert_eq!(
            rewrite(&["euca_conf", "-addcluster", "cluster1", "10.0.0.2"]),
            [
                "euca_conf",
                "--register-cluster",
                "--partition",
                "cluster1",
                "--host",
                "10.0.0.2"
            ]
        );
        assert_eq!(
            rewrite(&[
                "euca_conf",
                "-addnode",
                "host1 host2 host3",
                "--cluster-url",
                "u"
            ]),
            [
                "euca_conf",
                "--register-nodes",
                "host1 host2 host3",
                "--cluster-url",
                "u"
            ]
        );
        assert_eq!(
            rewrite(&["euca_conf", "-delnode", "host2"]),
            ["euca_conf", "--deregister-nodes", "host2"]
        );
        assert_eq!(
            rewrite(&["euca_conf", "-delcluster", "cluster1"]),
            [
                "euca_conf",
                "--deregister-cluster",
                "--partition",
                "cluster1"
            ]
        );
        assert_eq!(
            rewrite(&["euca_conf", "--list-clusters"]),
            ["euca_conf", "--list-clusters"]
        );
        // Parsed, they are the flags' actions.
        let cli = Cli::parse_from(with_15_spellings(
            [
                "euca_conf",
                "-addcluster",
                "zone-b",
                "127.0.0.1",
                "--port",
                "9000",
            ]
            .iter()
            .map(OsString::from),
        ));
        assert!(cli.register_cluster);
        assert_eq!(cli.partition.as_deref(), Some("zone-b"));
        assert_eq!(cli.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(cli.port, 9000);
        // An action without its values is the parser's error, not a panic.
        assert!(Cli::try_parse_from(with_15_spellings(
            ["euca_conf", "-addcluster", "zone-b"]
                .iter()
                .map(OsString::from)
        ))
        .is_err());
    }
}
