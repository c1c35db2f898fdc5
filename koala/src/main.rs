//! `koala`: runs the cloud's daemon roles (`up`, `walrus`, `cloud`, `cluster`, `node`) and
//! the admin's commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use euca2ools::client::{euare_url_from_env, query_call, xml_text, ClientError, EnvCredentials};
use euca2ools::ec2xml::{self, Element, XmlError};
use koala::config::{Config, ConfigError, Overrides};
use koala::server::{self, Roles, ServerError};

/// Why a `koala` command failed; `main` prints it with its chain of causes.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// The configuration could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The async runtime could not be built.
    #[error("cannot start the runtime")]
    Runtime(#[source] std::io::Error),
    /// A role of the daemon could not start, or stopped.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// An admin command's call: no credentials, no endpoint, or the service refused.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The answer to an admin command's action is not XML.
    #[error("the answer to {action} is not XML")]
    Xml {
        /// The action called.
        action: String,
        /// What did not parse.
        #[source]
        source: XmlError,
    },
    /// `CreateAccessKey` answered without a key.
    #[error("the response holds no access key")]
    NoAccessKey,
    /// `CreateAccount` answered without a field the eucarc needs.
    #[error("the response has no <{tag}>: {body}")]
    NoField {
        /// The element missing.
        tag: &'static str,
        /// The whole answer.
        body: String,
    },
}

/// Koala, a private cloud: Walrus (S3), the cloud controller, clusters and nodes.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every role on this host with embedded defaults.
    Up(Daemon),
    /// Runs Walrus, the S3 object store: alone with accounts of its own, or with
    /// `--cloud-url` as the cloud's Walrus on a host of its own (first start: the cloud
    /// admin's eucarc sourced, to make its principal).
    Walrus {
        #[command(flatten)]
        daemon: Daemon,
        /// The cloud controller's URL (`http://clc:8773`), whose users and keys Walrus serves.
        #[arg(long)]
        cloud_url: Option<String>,
    },
    /// Runs the cloud controller (EC2, accounts), with Walrus unless `--walrus-url` names
    /// one running apart, placing instances through a cluster controller that runs apart
    /// (`koala cluster`).
    Cloud {
        #[command(flatten)]
        daemon: Daemon,
        /// The URL of the cluster controller of the configured zone [default: the one
        /// registered before, else the main port + 1 on loopback].
        #[arg(long, env = "KOALA_CLUSTER_URL")]
        cluster_url: Option<String>,
        /// The S3 URL of the Walrus running apart (`http://walrus:8773/services/Walrus`)
        /// [default: Walrus in this process].
        #[arg(long, env = "KOALA_WALRUS_URL")]
        walrus_url: Option<String>,
    },
    /// Runs a cluster controller alone [default listen 0.0.0.0:8774]; first start: the cloud
    /// admin's eucarc sourced, to make its principal.
    Cluster {
        #[command(flatten)]
        daemon: Daemon,
        /// The cloud controller's URL (`http://clc:8773`).
        #[arg(long, env = "KOALA_CLOUD_URL")]
        cloud_url: String,
    },
    /// Runs a node controller alone [default listen 0.0.0.0:8775]; first start: the cloud
    /// admin's eucarc sourced, to make its principal. Register it with
    /// `euca_conf --register-nodes`.
    Node {
        #[command(flatten)]
        daemon: Daemon,
        /// The cloud controller's URL (`http://clc:8773`).
        #[arg(long, env = "KOALA_CLOUD_URL")]
        cloud_url: String,
        /// The S3 URL of the Walrus images come from [default: the cloud controller's
        /// `/services/Walrus`].
        #[arg(long, env = "KOALA_WALRUS_URL")]
        walrus_url: Option<String>,
    },
    /// Administers a running cloud with the admin's credentials from the environment.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(clap::Args)]
struct Daemon {
    /// Where all state lives [default: $KOALA_HOME, else ./koala-data].
    #[arg(long, env = "KOALA_HOME", default_value = "koala-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Creates an account (with its admin user and an access key) and prints its eucarc.
    CreateAccount {
        /// The account's name.
        name: String,
        /// The account service's URL [default: EUARE_URL, else derived from S3_URL].
        #[arg(long)]
        url: Option<String>,
    },
    /// Deletes an account with its users, keys, key pairs and security groups (Euare's
    /// `DeleteAccount`, as `euare-accountdel`); refused while it still has images, instances,
    /// elastic IPs or buckets.
    DeleteAccount {
        /// The account's name.
        name: String,
        /// Delete its users too (else an account with users besides `admin` is refused).
        #[arg(short, long)]
        recursive: bool,
        /// The account service's URL [default: EUARE_URL, else derived from S3_URL].
        #[arg(long)]
        url: Option<String>,
    },
    /// Creates a user in an account.
    CreateUser {
        /// The user's name.
        user: String,
        #[command(flatten)]
        target: Target,
    },
    /// Lists the users of an account, one per line.
    ListUsers {
        #[command(flatten)]
        target: Target,
    },
    /// Creates an access key for a user; prints its id and its secret (shown only once).
    CreateAccessKey {
        /// The user [default: admin].
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Lists a user's access keys with their status.
    ListAccessKeys {
        /// The user [default: admin].
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Disables an access key: requests signed with it are refused until it is enabled.
    DisableAccessKey {
        /// The access key id.
        key: String,
        /// The user [default: admin].
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Enables a disabled access key.
    EnableAccessKey {
        /// The access key id.
        key: String,
        /// The user [default: admin].
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Makes a user of the cloud admin account (`eucalyptus`) a cloud administrator.
    GrantAdmin {
        /// The user.
        user: String,
        /// The account service's URL [default: EUARE_URL, else derived from S3_URL].
        #[arg(long)]
        url: Option<String>,
    },
    /// Makes a cloud administrator an ordinary user of the cloud admin account again (the
    /// `admin` user always stays one).
    RevokeAdmin {
        /// The user.
        user: String,
        /// The account service's URL [default: EUARE_URL, else derived from S3_URL].
        #[arg(long)]
        url: Option<String>,
    },
    /// Deletes an access key for good.
    DeleteAccessKey {
        /// The access key id.
        key: String,
        /// The user [default: admin].
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

/// Which account an admin command works on, and where the account service is.
#[derive(clap::Args)]
struct Target {
    /// The account to act in (the cloud admin acting for it) [default: the caller's own].
    #[arg(long)]
    account: Option<String>,
    /// The account service's URL [default: EUARE_URL, else derived from S3_URL].
    #[arg(long)]
    url: Option<String>,
}

impl Target {
    /// Calls a Euare action in the target account; the parsed response.
    fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<Element, CliError> {
        let creds = EnvCredentials::from_env()?;
        let url = match &self.url {
            Some(url) => url.clone(),
            None => euare_url_from_env()?,
        };
        let mut all: Vec<(&str, &str)> = params.to_vec();
        if let Some(account) = &self.account {
            all.push(("DelegateAccount", account));
        }
        let body = query_call(&url, "iam", "2010-05-08", action, &all, &creds)?;
        ec2xml::parse(&body).map_err(|source| CliError::Xml {
            action: action.to_owned(),
            source,
        })
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KOALA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(daemon) => serve(daemon, Roles::All),
        Command::Walrus {
            daemon,
            cloud_url: None,
        } => serve(daemon, Roles::Walrus),
        Command::Walrus {
            daemon,
            cloud_url: Some(cloud_url),
        } => run_role(daemon, "0.0.0.0:8773", |config| {
            server::run_walrus_joined(config, cloud_url)
        }),
        Command::Cloud {
            daemon,
            cluster_url,
            walrus_url,
        } => serve(
            daemon,
            Roles::Cloud {
                cluster_url,
                walrus_url,
            },
        ),
        Command::Cluster { daemon, cloud_url } => run_role(daemon, "0.0.0.0:8774", |config| {
            server::run_cluster(config, cloud_url)
        }),
        Command::Node {
            daemon,
            cloud_url,
            walrus_url,
        } => run_role(daemon, "0.0.0.0:8775", |config| {
            server::run_node(config, cloud_url, walrus_url)
        }),
        Command::Admin { command } => admin(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("koala: {}", rpc::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The daemon's runtime. Its blocking pool is sized for what holds blocking threads for
/// long: Walrus' streamed uploads (capped at [`walrus::store::MAX_UPLOADS`], each holding
/// [`walrus::store::THREADS_PER_UPLOAD`] while its client sends), with as many again for
/// everything else (file reads, RocksDB writes, EC2 actions), so that slow uploads never
/// take the threads other requests need.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    let uploads = walrus::store::MAX_UPLOADS * walrus::store::THREADS_PER_UPLOAD;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(2 * uploads + 128)
        .build()
        .map_err(CliError::Runtime)
}

fn run_role<F: std::future::Future<Output = Result<(), ServerError>>>(
    daemon: Daemon,
    default_listen: &str,
    role: impl FnOnce(Config) -> F,
) -> Result<(), CliError> {
    let config = Config::load_for_role(&daemon.data_dir, &daemon.overrides, default_listen)?;
    Ok(runtime()?.block_on(role(config))?)
}

fn serve(daemon: Daemon, roles: Roles) -> Result<(), CliError> {
    let config = Config::load(&daemon.data_dir, &daemon.overrides)?;
    Ok(runtime()?.block_on(server::run(config, roles))?)
}

fn admin(command: AdminCommand) -> Result<(), CliError> {
    let command_is_grant = matches!(command, AdminCommand::GrantAdmin { .. });
    let user_param = |user: &Option<String>| user.clone().unwrap_or_else(|| "admin".to_owned());
    match command {
        AdminCommand::CreateUser { user, target } => {
            target.call("CreateUser", &[("UserName", &user)])?;
            println!("USER\t{user}");
            Ok(())
        }
        AdminCommand::ListUsers { target } => {
            let response = target.call("ListUsers", &[])?;
            for member in members(&response, "ListUsersResult/Users") {
                println!("{}", member.field("UserName"));
            }
            Ok(())
        }
        AdminCommand::CreateAccessKey { user, target } => {
            let user = user_param(&user);
            let response = target.call("CreateAccessKey", &[("UserName", &user)])?;
            let key = response
                .get("CreateAccessKeyResult/AccessKey")
                .ok_or(CliError::NoAccessKey)?;
            println!("{}", key.field("AccessKeyId"));
            println!("{}", key.field("SecretAccessKey"));
            Ok(())
        }
        AdminCommand::ListAccessKeys { user, target } => {
            let user = user_param(&user);
            let response = target.call("ListAccessKeys", &[("UserName", &user)])?;
            for member in members(&response, "ListAccessKeysResult/AccessKeyMetadata") {
                println!(
                    "{}\t{}",
                    member.field("AccessKeyId"),
                    member.field("Status")
                );
            }
            Ok(())
        }
        AdminCommand::GrantAdmin { user, url } | AdminCommand::RevokeAdmin { user, url } => {
            let action = match command_is_grant {
                true => "GrantCloudAdmin",
                false => "RevokeCloudAdmin",
            };
            let target = Target { account: None, url };
            target.call(action, &[("UserName", &user)])?;
            Ok(())
        }
        AdminCommand::DisableAccessKey { key, user, target } => {
            set_key_status(&target, &user_param(&user), &key, "Inactive")
        }
        AdminCommand::EnableAccessKey { key, user, target } => {
            set_key_status(&target, &user_param(&user), &key, "Active")
        }
        AdminCommand::DeleteAccessKey { key, user, target } => {
            let user = user_param(&user);
            target.call(
                "DeleteAccessKey",
                &[("UserName", &user), ("AccessKeyId", &key)],
            )?;
            Ok(())
        }
        AdminCommand::DeleteAccount {
            name,
            recursive,
            url,
        } => {
            let creds = EnvCredentials::from_env()?;
            let url = match url {
                Some(url) => url,
                None => euare_url_from_env()?,
            };
            let recursive = if recursive { "true" } else { "false" };
            query_call(
                &url,
                "iam",
                "2010-05-08",
                "DeleteAccount",
                &[("AccountName", &name), ("Recursive", recursive)],
                &creds,
            )?;
            Ok(())
        }
        AdminCommand::CreateAccount { name, url } => {
            let creds = EnvCredentials::from_env()?;
            let url = match url {
                Some(url) => url,
                None => euare_url_from_env()?,
            };
            let body = query_call(
                &url,
                "iam",
                "2010-05-08",
                "CreateAccount",
                &[("AccountName", &name)],
                &creds,
            )?;
            let field = |tag| {
                xml_text(&body, tag).ok_or_else(|| CliError::NoField {
                    tag,
                    body: body.clone(),
                })
            };
            let new = identity::Credentials {
                account_id: field("AccountId")?,
                account_name: field("AccountName")?,
                user_name: field("UserName")?,
                access_key_id: field("AccessKeyId")?,
                secret_access_key: field("SecretAccessKey")?,
            };
            let s3_url = std::env::var("S3_URL").unwrap_or_default();
            print!(
                "{}",
                new.eucarc(&identity::ServiceUrls {
                    s3_url,
                    ec2_url: std::env::var("EC2_URL").ok(),
                    euare_url: Some(url),
                    region: creds.region.clone(),
                })
            );
            Ok(())
        }
    }
}

/// The `<member>`s of an IAM list.
fn members<'a>(response: &'a Element, path: &str) -> impl Iterator<Item = &'a Element> + 'a {
    response
        .get(path)
        .into_iter()
        .flat_map(|list| list.children.iter())
        .filter(|c| c.name == "member")
}

fn set_key_status(target: &Target, user: &str, key: &str, status: &str) -> Result<(), CliError> {
    target.call(
        "UpdateAccessKey",
        &[("UserName", user), ("AccessKeyId", key), ("Status", status)],
    )?;
    Ok(())
}
