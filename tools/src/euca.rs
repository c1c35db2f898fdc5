//! The euca2ools 3.4 command family as thin clients of the cloud: each command turns its
//! flags into a Query API call (or S3 requests) and prints the answer as euca2ools does,
//! tab-separated lines, so scripts written for Eucalyptus keep working.
//!
//! This module holds what every command shares: the connection flags and the endpoint and
//! credentials they resolve to (`-U`, `-I`, `-S`, `--region`, else the variables a eucarc
//! sets), the EC2 client, request parameters and `--filter`, the tab-separated printer, and
//! [`main`], which runs a command and reports a failure as `PROG: error (Code): Message`
//! with exit status 1. The commands live in one file per protocol area below it.

pub mod addresses;
pub mod bundles;
pub mod groups;
pub mod images;
pub mod instances;
pub mod keypairs;
pub mod properties;
pub mod tags;
pub mod zones;

use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

use crate::client::{query_call, ClientError, EnvCredentials};
use crate::ec2xml::{self, Element, XmlError};

/// The EC2 API version euca2ools 3.4 sends, and so the one Koala's EC2 API is written to.
pub const EC2_VERSION: &str = "2015-10-01";

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum EucaError {
    /// The service refused, or could not be reached or signed for.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The answer is not XML.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// The answer lacks a field the command needs (euca2ools fails the same way).
    #[error("the response has no {0}")]
    Missing(&'static str),
    /// The flags do not make sense together; reported like a flag parsing error.
    #[error("{0}")]
    Usage(String),
    /// A bundle's manifest could not be read.
    #[error(transparent)]
    Bundle(#[from] bundler::Error),
    /// A local file could not be read or written.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl EucaError {
    /// The failure as euca2ools words it after `PROG: `: `error (Code): Message` for the
    /// service's refusals, `error: what failed: why` for everything else.
    pub fn line(&self) -> String {
        match self {
            EucaError::Client(refusal @ ClientError::Service { .. }) => refusal.to_string(),
            other => format!("error: {}", rpc::error_chain(other)),
        }
    }

    /// An I/O failure while doing `context`.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> EucaError {
        let context = context.into();
        move |source| EucaError::Io { context, source }
    }
}

/// A euca2ools command: its flags (clap) and what it does with them.
pub trait Command: Parser {
    /// Runs the command, printing its result on standard output.
    fn run(self) -> Result<(), EucaError>;

    /// The command line with older euca2ools spellings rewritten to today's, before parsing:
    /// by default euca2ools 1.x's credential flags (see [`one_x_credentials`]); a command
    /// that gives `-a` or `-s` a meaning of its own says otherwise.
    fn spellings(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
        one_x_credentials(args)
    }
}

/// The whole life of a command binary called `prog`: parse the flags (usage errors exit 2,
/// as argparse's do), run, and report a failure on standard error with exit status 1.
pub fn main<C: Command>(prog: &'static str) -> ExitCode {
    let mut command = C::command().name(prog).bin_name(prog);
    let parsed = command
        .try_get_matches_from_mut(C::spellings(std::env::args_os().collect()))
        .and_then(|matches| C::from_arg_matches(&matches));
    let cmd = match parsed {
        Ok(cmd) => cmd,
        Err(err) => err.format(&mut command).exit(),
    };
    match cmd.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(EucaError::Usage(message)) => command.error(ErrorKind::ValueValidation, message).exit(),
        Err(err) => {
            eprintln!("{prog}: {}", err.line());
            ExitCode::FAILURE
        }
    }
}

/// euca2ools 1.x's credential flags, which the Eucalyptus 1.5 guides print
/// (`-a`/`--access-key`, `-s`/`--secret-key`), spelled as today's (`-I`, `-S`): what every
/// command that gives `-a` and `-s` no other meaning reads.
pub fn one_x_credentials(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    args.into_iter()
        .map(|arg| match arg.to_str() {
            Some("-a") | Some("--access-key") => "-I".into(),
            Some("-s") => "-S".into(),
            _ => arg,
        })
        .collect()
}

/// The flags every euca2ools command that talks to a service has.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Connection {
    /// The service's endpoint URL; `REGION::URL` also names the region to sign for
    /// [default: EC2_URL, or S3_URL for the bundle commands].
    #[arg(short = 'U', long = "url", value_name = "URL")]
    pub url: Option<String>,
    /// The region to sign requests for ([USER@]REGION).
    #[arg(long = "region", value_name = "USER@REGION")]
    pub region: Option<String>,
    /// The access key ID [default: AWS_ACCESS_KEY_ID].
    #[arg(short = 'I', long = "access-key-id", value_name = "KEY_ID")]
    pub access_key_id: Option<String>,
    /// The secret key [default: AWS_SECRET_ACCESS_KEY].
    #[arg(short = 'S', long = "secret-key", value_name = "KEY")]
    pub secret_key: Option<String>,
}

/// Where to send requests and who signs them.
pub struct Endpoint {
    /// The service URL, exactly as requests are sent to it.
    pub url: String,
    /// The signer's keys and region.
    pub creds: EnvCredentials,
}

impl Connection {
    /// The endpoint from the flags, else from the environment variable `url_var`
    /// (`EC2_URL`, `S3_URL`). The region to sign for is the URL's `REGION::` if any, then
    /// `--region`, then `AWS_AUTH_REGION`/`AWS_DEFAULT_REGION`.
    pub fn endpoint(&self, url_var: &'static str) -> Result<Endpoint, ClientError> {
        let raw = match &self.url {
            Some(url) => url.clone(),
            None => std::env::var(url_var).map_err(|_| ClientError::MissingEnv(url_var))?,
        };
        let (url_region, url) = split_region(&raw);
        let flag_region = self
            .region
            .as_deref()
            .map(|r| r.rsplit_once('@').map_or(r, |(_, region)| region))
            .filter(|r| !r.is_empty());
        let creds = EnvCredentials::from_env_or(
            self.access_key_id.as_deref(),
            self.secret_key.as_deref(),
            url_region.or(flag_region),
        )?;
        Ok(Endpoint {
            url: url.to_owned(),
            creds,
        })
    }
}

/// Splits euca2ools' `REGION::URL` form; a plain URL has no region.
fn split_region(raw: &str) -> (Option<&str>, &str) {
    match raw.split_once("::") {
        Some((region, url)) if !region.is_empty() && !region.contains('/') => (Some(region), url),
        _ => (None, raw),
    }
}

/// The flags of every EC2 command: the connection and how to print.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Ec2Args {
    /// Where to connect and as whom.
    #[command(flatten)]
    pub connection: Connection,
    /// Show empty fields as "(nil)".
    #[arg(long = "show-empty-fields")]
    pub show_empty_fields: bool,
}

impl Ec2Args {
    /// The EC2 client these flags (or the environment) point at.
    pub fn client(&self) -> Result<Ec2, EucaError> {
        Ok(Ec2 {
            endpoint: self.connection.endpoint("EC2_URL")?,
        })
    }

    /// The printer these flags ask for.
    pub fn table(&self) -> Table {
        Table::new(self.show_empty_fields)
    }
}

/// A client of the EC2 Query API (SigV4, service `ec2`, euca2ools' API version).
pub struct Ec2 {
    endpoint: Endpoint,
}

impl Ec2 {
    /// Calls `action` and returns the response's root element.
    pub fn call(&self, action: &str, params: &Params) -> Result<Element, EucaError> {
        let pairs: Vec<(&str, &str)> = params
            .0
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = query_call(
            &self.endpoint.url,
            "ec2",
            EC2_VERSION,
            action,
            &pairs,
            &self.endpoint.creds,
        )?;
        Ok(ec2xml::parse(&body)?)
    }
}

/// A request's parameters, in the order they were added, with the Query API's list
/// flattening (`Name.1`, `Name.2`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// No parameters.
    pub fn new() -> Params {
        Params::default()
    }

    /// Adds `name=value`.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Params {
        self.0.push((name.into(), value.into()));
        self
    }

    /// Adds `name=value` when there is a value.
    pub fn set_opt(&mut self, name: &str, value: Option<&str>) -> &mut Params {
        if let Some(value) = value {
            self.set(name, value);
        }
        self
    }

    /// Adds `prefix.1=v1`, `prefix.2=v2`, ...
    pub fn list<S: AsRef<str>>(&mut self, prefix: &str, values: &[S]) -> &mut Params {
        for (n, value) in values.iter().enumerate() {
            self.set(format!("{prefix}.{}", n + 1), value.as_ref());
        }
        self
    }

    /// The parameters as name/value pairs.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

/// `--filter NAME=VALUE`, shared by the describe commands.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Filters {
    /// Restrict results to those matching NAME=VALUE (repeatable; values given for one name
    /// are alternatives).
    #[arg(long = "filter", value_name = "NAME=VALUE", value_parser = parse_filter)]
    pub filter: Vec<(String, String)>,
}

impl Filters {
    /// Adds `Filter.N.Name` and `Filter.N.Value.M`, one `N` per name in the order names first
    /// appear, as euca2ools groups them.
    pub fn add_to(&self, params: &mut Params) {
        let mut grouped: Vec<(&str, Vec<&str>)> = Vec::new();
        for (name, value) in &self.filter {
            match grouped.iter_mut().find(|(n, _)| n == name) {
                Some((_, values)) => values.push(value),
                None => grouped.push((name, vec![value])),
            }
        }
        for (n, (name, values)) in grouped.iter().enumerate() {
            params.set(format!("Filter.{}.Name", n + 1), *name);
            params.list(&format!("Filter.{}.Value", n + 1), values);
        }
    }
}

fn parse_filter(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("filter {text:?} must have the form NAME=VALUE")),
    }
}

/// `KEY=VALUE` split at the first `=`; `KEY` alone has no value.
pub fn split_assignment(text: &str) -> (&str, Option<&str>) {
    match text.split_once('=') {
        Some((key, value)) => (key, Some(value)),
        None => (text, None),
    }
}

/// `--progress`/`--no-progress`, shared by the bundle commands.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ProgressArgs {
    /// Show a progress bar even when not on a terminal.
    #[arg(long = "progress", overrides_with = "no_progress")]
    pub progress: bool,
    /// Never show a progress bar.
    #[arg(long = "no-progress")]
    pub no_progress: bool,
}

impl ProgressArgs {
    /// What `bundler::progress::ProgressBar::new` takes: forced on, forced off, or `None`
    /// to show it on a terminal only.
    pub fn force(&self) -> Option<bool> {
        if self.no_progress {
            Some(false)
        } else if self.progress {
            Some(true)
        } else {
            None
        }
    }
}

/// Prints results as euca2ools does: one line per record, fields separated by tabs, an
/// empty field left empty (or `(nil)` with `--show-empty-fields`).
pub struct Table {
    show_empty: bool,
    out: std::io::StdoutLock<'static>,
}

impl Table {
    /// A printer on standard output.
    pub fn new(show_empty: bool) -> Table {
        Table {
            show_empty,
            out: std::io::stdout().lock(),
        }
    }

    /// Prints one record.
    pub fn row(&mut self, fields: &[&str]) -> Result<(), EucaError> {
        let line = tabify(fields, self.show_empty);
        self.line(&line)
    }

    /// Prints a line as it is (key material, messages).
    pub fn line(&mut self, text: &str) -> Result<(), EucaError> {
        writeln!(self.out, "{text}").map_err(EucaError::io("cannot write to standard output"))
    }
}

/// Fields joined by tabs, empty ones as `(nil)` when `show_empty`.
pub fn tabify(fields: &[&str], show_empty: bool) -> String {
    let shown: Vec<&str> = fields
        .iter()
        .map(|f| {
            if f.is_empty() && show_empty {
                "(nil)"
            } else {
                f
            }
        })
        .collect();
    shown.join("\t")
}

/// The resource type euca2ools infers from an ID's prefix, for `TAG` lines.
pub fn resource_type(id: &str) -> &'static str {
    const TYPES: [(&str, &str); 27] = [
        ("eipalloc", "allocation-id"),
        ("bun", "bundle"),
        ("import", "conversion-task"),
        ("cgw", "customer-gateway"),
        ("dopt", "dhcp-options"),
        ("export", "export-task"),
        ("aki", "image"),
        ("ami", "image"),
        ("ari", "image"),
        ("eki", "image"),
        ("emi", "image"),
        ("eri", "image"),
        ("i", "instance"),
        ("igw", "internet-gateway"),
        ("acl", "network-acl"),
        ("eni", "network-interface"),
        ("rtb", "route-table"),
        ("sg", "security-group"),
        ("snap", "snapshot"),
        ("sir", "spot-instances-request"),
        ("subnet", "subnet"),
        ("vol", "volume"),
        ("vpc", "vpc"),
        ("pcx", "vpc-peering-connection"),
        ("vpn", "vpn-connection"),
        ("vgw", "vpn-gateway"),
        ("r", "reservation"),
    ];
    id.split_once('-')
        .and_then(|(prefix, _)| TYPES.iter().find(|(p, _)| *p == prefix))
        .map_or("", |(_, kind)| kind)
}

/// Prints a tag of `resource_id`: `TAG type id key value`.
pub fn print_tag(
    table: &mut Table,
    resource_id: &str,
    key: &str,
    value: &str,
) -> Result<(), EucaError> {
    table.row(&["TAG", resource_type(resource_id), resource_id, key, value])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Parser, Debug)]
    struct Describe {
        #[command(flatten)]
        filters: Filters,
        #[command(flatten)]
        ec2: Ec2Args,
    }

    #[test]
    fn filters_group_values_by_name_in_first_seen_order() {
        let cmd = Describe::try_parse_from([
            "x",
            "--filter",
            "image-type=kernel",
            "--filter",
            "tag:Name=a=b",
            "--filter",
            "image-type=ramdisk",
        ])
        .unwrap();
        let mut params = Params::new();
        cmd.filters.add_to(&mut params);
        let expect = [
            ("Filter.1.Name", "image-type"),
            ("Filter.1.Value.1", "kernel"),
            ("Filter.1.Value.2", "ramdisk"),
            ("Filter.2.Name", "tag:Name"),
            ("Filter.2.Value.1", "a=b"),
        ];
        let got: Vec<(&str, &str)> = params
            .pairs()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, expect);
        assert!(Describe::try_parse_from(["x", "--filter", "novalue"]).is_err());
        assert!(Describe::try_parse_from(["x", "--filter", "=v"]).is_err());
    }

    #[test]
    fn connection_flags_and_region_syntax() {
        let cmd = Describe::try_parse_from([
            "x",
            "-U",
            "west::http://h:8773/services/compute/",
            "-I",
            "AKID",
            "-S",
            "SECRET",
            "--region",
            "admin@east",
        ])
        .unwrap();
        let endpoint = cmd.ec2.connection.endpoint("EC2_URL").unwrap();
        assert_eq!(endpoint.url, "http://h:8773/services/compute/");
        assert_eq!(endpoint.creds.access_key_id, "AKID");
        assert_eq!(endpoint.creds.secret_access_key, "SECRET");
        assert_eq!(
            endpoint.creds.region, "west",
            "the URL's region comes first"
        );

        let cmd = Describe::try_parse_from([
            "x",
            "-U",
            "http://h/",
            "-I",
            "A",
            "-S",
            "S",
            "--region",
            "admin@east",
        ])
        .unwrap();
        let endpoint = cmd.ec2.connection.endpoint("EC2_URL").unwrap();
        assert_eq!(endpoint.creds.region, "east");
        assert_eq!(endpoint.url, "http://h/");

        assert_eq!(
            split_region("http://[::1]:8773/"),
            (None, "http://[::1]:8773/")
        );
        assert_eq!(
            split_region("r::http://[::1]/"),
            (Some("r"), "http://[::1]/")
        );
    }

    #[test]
    fn tabify_like_euca2ools() {
        assert_eq!(
            tabify(&["IMAGE", "emi-1", "", "x"], false),
            "IMAGE\temi-1\t\tx"
        );
        assert_eq!(tabify(&["IMAGE", "emi-1", ""], true), "IMAGE\temi-1\t(nil)");
    }

    #[test]
    fn resource_types_by_prefix() {
        assert_eq!(resource_type("emi-12345678"), "image");
        assert_eq!(resource_type("sg-1a2b3c4d"), "security-group");
        assert_eq!(resource_type("i-00000001"), "instance");
        assert_eq!(resource_type("nothing"), "");
        assert_eq!(resource_type("zzz-1"), "");
    }

    #[test]
    fn params_flatten_lists() {
        let mut params = Params::new();
        params
            .set("Action", "X")
            .list("ImageId", &["emi-1", "emi-2"])
            .set_opt("Skip", None)
            .set_opt("Kept", Some(""));
        let names: Vec<&str> = params.pairs().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["Action", "ImageId.1", "ImageId.2", "Kept"]);
    }
}
