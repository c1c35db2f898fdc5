//! The instance metadata service: what a guest learns at `http://169.254.169.254/latest/...`
//! about itself (its id, addresses, key, user data), as EC2 and Eucalyptus answered it.
//!
//! The CLC answers it on a port of its own (`[network] metadata_listen`); in the MANAGED
//! modes the CC sends guests' requests to 169.254.169.254:80 there, keeping the guest's
//! private address as their source. That address is the only credential: a request is
//! answered with the data of the one live (not terminated) instance whose NIC holds it, and
//! an address no instance holds gets a 404, never another instance's data. Nothing is
//! answered that EC2 does not give an instance about itself.
//!
//! Paths: `/` lists the API versions; `/VERSION/` (`latest`, or one of [`VERSIONS`], all
//! answered alike) lists `meta-data` and, when the instance has some, `user-data`;
//! `/VERSION/meta-data/...` are the items, a directory's listing one name a line with a
//! trailing `/` on directories, without a final newline, as EC2 writes them.

use std::net::IpAddr;

use axum::body::Body;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{header, HeaderValue, Method, Response, StatusCode};
use rpc::disk_layout::DiskLayout;
use rpc::InstanceState;

use crate::ec2::Cloud;
use crate::images::ImageRecord;
use crate::instances::InstanceRecord;
use crate::properties;
use crate::state::StateError;

/// The API versions answered besides `latest`, as EC2 listed them when Eucalyptus copied the
/// service (up to 2009-04-04, the version cloud-init falls back to); every one is answered
/// with the same items.
pub const VERSIONS: &[&str] = &[
    "1.0",
    "2007-01-19",
    "2007-03-01",
    "2007-08-29",
    "2007-10-10",
    "2007-12-15",
    "2008-02-01",
    "2008-09-01",
    "2009-04-04",
];

/// The name of the newest version, listed last at `/`.
const LATEST: &str = "latest";

/// What the service answers a request with, when it answers with data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The body, as the instance reads it.
    pub body: Vec<u8>,
    /// Its media type: `text/plain`, or `application/octet-stream` for user data (which
    /// may be any bytes).
    pub content_type: &'static str,
}

/// Why a request is not answered with data. Each maps to its status in
/// [`MetadataError::status`]; the body is the message, one line of plain text.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// No live instance of the cloud has the request's source address.
    #[error("No instance of this cloud has the address {0}.")]
    NoInstance(IpAddr),
    /// More than one live instance has the address (the private space was changed under
    /// live instances): none of them is answered, so that none gets another's data.
    #[error("More than one instance has the address {0}; none is answered.")]
    Ambiguous(IpAddr),
    /// The path names no item of this instance (or the item has no value, as public-ipv4
    /// of an instance without a public address).
    #[error("No such metadata item.")]
    NotFound,
    /// A method other than GET and HEAD.
    #[error("The metadata service answers GET and HEAD only.")]
    MethodNotAllowed,
    /// A failure of ours: the instance is told only that, the log gets the cause.
    #[error("An internal error occurred.")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StateError> for MetadataError {
    fn from(err: StateError) -> MetadataError {
        MetadataError::Internal(Box::new(err))
    }
}

impl From<crate::QueryError> for MetadataError {
    fn from(err: crate::QueryError) -> MetadataError {
        MetadataError::Internal(Box::new(err))
    }
}

impl MetadataError {
    /// The HTTP status of each error.
    pub fn status(&self) -> StatusCode {
        match self {
            MetadataError::NoInstance(_)
            | MetadataError::Ambiguous(_)
            | MetadataError::NotFound => StatusCode::NOT_FOUND,
            MetadataError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            MetadataError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error as a response: its status, its message as plain text.
    fn into_response(self) -> Response<Body> {
        match &self {
            MetadataError::Internal(cause) => {
                let detail = rpc::error_chain(cause.as_ref());
                tracing::error!(detail, "internal error in a metadata request");
            }
            MetadataError::Ambiguous(ip) => {
                tracing::error!(%ip, "more than one live instance has this private address; the metadata service answers none of them");
            }
            _ => {}
        }
        let mut resp = plain(self.status(), format!("{self}\n").into_bytes(), TEXT);
        if matches!(self, MetadataError::MethodNotAllowed) {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        resp
    }
}

/// The media type of every answer but user data.
const TEXT: &str = "text/plain";

/// The media type of user data.
const BYTES: &str = "application/octet-stream";

/// Serves one request from `peer` (the TCP source address) for `path`: the service's HTTP
/// face, for the listener the `koala` binary runs. The records are read on the blocking pool.
pub async fn serve(cloud: Cloud, peer: IpAddr, method: &Method, path: &str) -> Response<Body> {
    let answered = if method == Method::GET || method == Method::HEAD {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || answer(&cloud, peer, &path))
            .await
            .unwrap_or_else(|e| Err(MetadataError::Internal(Box::new(e))))
    } else {
        Err(MetadataError::MethodNotAllowed)
    };
    match answered {
        Ok(answer) => plain(StatusCode::OK, answer.body, answer.content_type),
        Err(err) => {
            tracing::debug!(%peer, path, "metadata request not answered: {err}");
            err.into_response()
        }
    }
}

/// A response with `body` of media type `content_type`.
fn plain(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// What the instance at `peer` reads at `path` (the request's path, without its query).
pub fn answer(cloud: &Cloud, peer: IpAddr, path: &str) -> Result<Answer, MetadataError> {
    let instance = instance_at(cloud, peer)?;
    let segments = segments(path).ok_or(MetadataError::NotFound)?;
    let Some((version, rest)) = segments.split_first() else {
        let listing = VERSIONS
            .iter()
            .chain([&LATEST])
            .copied()
            .collect::<Vec<_>>()
            .join("\n");
        return Ok(text(listing));
    };
    if *version != LATEST && !VERSIONS.contains(version) {
        return Err(MetadataError::NotFound);
    }
    let tree = version_tree(cloud, &instance)?;
    let mut node = &tree;
    for name in rest {
        node = node.child(name).ok_or(MetadataError::NotFound)?;
    }
    Ok(node.answer())
}

/// The live instance whose NIC holds `peer`.
fn instance_at(cloud: &Cloud, peer: IpAddr) -> Result<InstanceRecord, MetadataError> {
    // A listener on `[::]` sees IPv4 clients as IPv4-mapped IPv6 addresses.
    let IpAddr::V4(ip) = peer.to_canonical() else {
        return Err(MetadataError::NoInstance(peer));
    };
    let mut holders = cloud
        .state
        .scan::<InstanceRecord>("")?
        .into_iter()
        .map(|(_, i)| i)
        .filter(|i| i.state != InstanceState::Terminated)
        .filter(|i| i.nic.as_ref().is_some_and(|n| n.private_ip == ip));
    match (holders.next(), holders.next()) {
        (Some(instance), None) => Ok(instance),
        (None, _) => Err(MetadataError::NoInstance(ip.into())),
        (Some(_), Some(_)) => Err(MetadataError::Ambiguous(ip.into())),
    }
}

/// The names along `path`: none for `/`; a trailing `/` is optional (EC2 answers a
/// directory either way); an empty name (`//`) or a path not starting with `/` is none.
fn segments(path: &str) -> Option<Vec<&str>> {
    let inner = path.strip_prefix('/')?;
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    if inner.is_empty() {
        return Some(Vec::new());
    }
    let names: Vec<&str> = inner.split('/').collect();
    (!names.iter().any(|n| n.is_empty())).then_some(names)
}

/// One item or directory of the service.
#[derive(Debug)]
enum Node {
    /// A value in plain text.
    Text(String),
    /// Bytes as given (user data).
    Bytes(Vec<u8>),
    /// A directory: its listing as EC2 writes it, and its entries by name.
    Dir {
        listing: String,
        entries: Vec<(String, Node)>,
    },
}

impl Node {
    /// A directory listed as `meta-data/` is: one name a line in EC2's order (by name),
    /// directories with a `/`.
    fn dir(mut entries: Vec<(&str, Node)>) -> Node {
        entries.sort_by_key(|(name, _)| *name);
        let listing = entries
            .iter()
            .map(|(name, node)| match node {
                Node::Dir { .. } => format!("{name}/"),
                _ => (*name).to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        Node::with_listing(listing, entries)
    }

    /// A directory with its own listing (a version's lists names without `/`,
    /// `public-keys/` lists `0=KEYNAME`).
    fn with_listing(listing: String, entries: Vec<(&str, Node)>) -> Node {
        Node::Dir {
            listing,
            entries: entries
                .into_iter()
                .map(|(name, node)| (name.to_owned(), node))
                .collect(),
        }
    }

    fn child(&self, name: &str) -> Option<&Node> {
        match self {
            Node::Dir { entries, .. } => entries.iter().find(|(n, _)| n == name).map(|(_, n)| n),
            _ => None,
        }
    }

    fn answer(&self) -> Answer {
        match self {
            Node::Text(value) => text(value.clone()),
            Node::Bytes(bytes) => Answer {
                body: bytes.clone(),
                content_type: BYTES,
            },
            Node::Dir { listing, .. } => text(listing.clone()),
        }
    }
}

fn text(value: String) -> Answer {
    Answer {
        body: value.into_bytes(),
        content_type: TEXT,
    }
}

/// Everything `/VERSION/` holds for `instance`: `meta-data/` and, when it has some,
/// `user-data`.
fn version_tree(cloud: &Cloud, instance: &InstanceRecord) -> Result<Node, MetadataError> {
    let mut entries = vec![("meta-data", meta_data(cloud, instance)?)];
    if let Some(encoded) = &instance.user_data {
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|e| MetadataError::Internal(Box::new(e)))?;
        entries.push(("user-data", Node::Bytes(bytes)));
    }
    let listing = entries
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Node::with_listing(listing, entries))
}

/// `meta-data/`: the items of EC2's 2009-04-04 version that Koala knows; an item without a
/// value (public-ipv4 without a public address, ramdisk-id without a ramdisk, public-keys/
/// without a key pair) is not listed.
fn meta_data(cloud: &Cloud, instance: &InstanceRecord) -> Result<Node, MetadataError> {
    let t = |value: &str| Node::Text(value.to_owned());
    let image = cloud.state.get::<ImageRecord>(&instance.image_id)?;
    // Koala serves no DNS for guests: the host names are the addresses, as
    // DescribeInstances shows them.
    let private_ip = instance
        .nic
        .as_ref()
        .and_then(|n| n.address())
        .map(|ip| ip.to_string());
    let public_ip = instance
        .nic
        .as_ref()
        .and_then(|n| n.public_ip)
        .map(|ip| ip.to_string());
    let mac = instance.nic.as_ref().map(|n| {
        crate::networks::mac_of(cloud.settings.network.as_ref(), &instance.id, n).to_string()
    });
    let mut entries = vec![
        ("ami-id", t(&instance.image_id)),
        (
            "ami-launch-index",
            Node::Text(instance.launch_index.to_string()),
        ),
        (
            "ami-manifest-path",
            t(image
                .as_ref()
                .map_or("(unknown)", |image| image.location.as_str())),
        ),
        (
            "block-device-mapping",
            block_devices(cloud, instance, image.as_ref())?,
        ),
    ];
    if let Some(ip) = &private_ip {
        entries.push(("hostname", t(ip)));
    }
    entries.extend([
        ("instance-id", t(&instance.id)),
        ("instance-type", t(&instance.instance_type)),
        ("kernel-id", t(&instance.kernel_id)),
    ]);
    if let Some(ip) = &private_ip {
        entries.extend([("local-hostname", t(ip)), ("local-ipv4", t(ip))]);
    }
    if let Some(mac) = &mac {
        entries.push(("mac", t(mac)));
    }
    entries.push((
        "placement",
        Node::dir(vec![("availability-zone", t(&instance.zone))]),
    ));
    if let Some(ip) = &public_ip {
        entries.extend([("public-hostname", t(ip)), ("public-ipv4", t(ip))]);
    }
    if let (Some(name), Some(key)) = (&instance.key_name, &instance.public_key) {
        let key_dir = Node::dir(vec![("openssh-key", t(key))]);
        entries.push((
            "public-keys",
            Node::with_listing(format!("0={name}"), vec![("0", key_dir)]),
        ));
    }
    if let Some(ramdisk) = &instance.ramdisk_id {
        entries.push(("ramdisk-id", t(ramdisk)));
    }
    let groups: Vec<&str> = instance.groups.iter().map(|(_, n)| n.as_str()).collect();
    entries.extend([
        ("reservation-id", t(&instance.reservation_id)),
        ("security-groups", Node::Text(groups.join("\n"))),
    ]);
    Ok(Node::dir(entries))
}

/// `block-device-mapping/`: the guest's disks by EC2's virtual names, as the node attaches
/// them (virtio, in order: the root disk `vda`, then `ephemeral0` and `swap` when the VM
/// type's disk leaves room for them, see [`DiskLayout`]). The blank disks are worked out
/// from the image's size and the type's disk now; an instance whose image was deregistered,
/// or whose type was removed, is told of its root disk only.
fn block_devices(
    cloud: &Cloud,
    instance: &InstanceRecord,
    image: Option<&ImageRecord>,
) -> Result<Node, MetadataError> {
    let mut entries = vec![("ami", Node::Text("vda".into()))];
    let disk_gib = properties::vm_types(cloud)?
        .into_iter()
        .find(|t| t.name == instance.instance_type)
        .map(|t| u64::from(t.disk_gib));
    if let (Some(image), Some(disk_gib)) = (image, disk_gib) {
        if let Ok(layout) = DiskLayout::for_type(image.image_size, disk_gib) {
            for (blank, letter) in layout.blank_disks().into_iter().zip(b'b'..=b'z') {
                entries.push((blank.name, Node::Text(format!("vd{}", char::from(letter)))));
            }
        }
    }
    entries.push(("root", Node::Text("/dev/vda".into())));
    Ok(Node::dir(entries))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    /// A cloud on a temp dir, with no cluster.
    fn cloud() -> (tempfile::TempDir, Cloud) {
        let dir = tempfile::tempdir().unwrap();
        let cloud = cloud_in(dir.path());
        (dir, cloud)
    }

    fn cloud_in(dir: &std::path::Path) -> Cloud {
        crate::testing::cloud_in(dir, crate::testing::settings())
    }

    const ALICE: &str = "111111111111";
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEYIezsJFUhKcoR8HP6WtPFS+i/Z1jc7nJdd5nYASjOw alice-key";

    /// A running instance of Alice's at `10.77.0.{host}`.
    fn instance(id: &str, host: u8) -> InstanceRecord {
        crate::testing::instance(id, InstanceState::Running, Some(host))
    }

    /// An instance with everything set: key, user data, public address, ramdisk, two groups.
    fn full(id: &str, host: u8) -> InstanceRecord {
        let mut i = instance(id, host);
        i.key_name = Some("alice-key".into());
        i.public_key = Some(KEY.into());
        i.user_data = Some(STANDARD.encode(b"#!/bin/sh\necho hi\n\xff"));
        i.ramdisk_id = Some("eri-0000000r".into());
        i.launch_index = 2;
        i.groups.push(("sg-00000002".into(), "web".into()));
        if let Some(nic) = &mut i.nic {
            nic.public_ip = Some(Ipv4Addr::new(192, 0, 2, 7));
        }
        i
    }

    fn put(cloud: &Cloud, i: &InstanceRecord) {
        cloud.state.put(&i.id, i).unwrap();
    }

    fn ip(host: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 77, 0, host))
    }

    /// The text `host` reads at `path`.
    fn read(cloud: &Cloud, host: u8, path: &str) -> String {
        let answer = answer(cloud, ip(host), path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(answer.content_type, TEXT, "{path}");
        String::from_utf8(answer.body).unwrap()
    }

    fn refusal(cloud: &Cloud, peer: IpAddr, path: &str) -> MetadataError {
        match answer(cloud, peer, path) {
            Ok(a) => panic!(
                "{peer} {path}: answered {:?}",
                String::from_utf8_lossy(&a.body)
            ),
            Err(e) => e,
        }
    }

    #[test]
    fn an_instance_reads_its_own_items_and_listings() {
        let (_dir, cloud) = cloud();
        put(&cloud, &full("i-0000000a", 2));
        assert_eq!(
            read(&cloud, 2, "/latest/meta-data/"),
            "ami-id\nami-launch-index\nami-manifest-path\nblock-device-mapping/\nhostname\n\
             instance-id\ninstance-type\nkernel-id\nlocal-hostname\nlocal-ipv4\nmac\nplacement/\n\
             public-hostname\npublic-ipv4\npublic-keys/\nramdisk-id\nreservation-id\nsecurity-groups"
        );
        // Without the trailing slash, and under a dated version, the same.
        assert_eq!(
            read(&cloud, 2, "/latest/meta-data"),
            read(&cloud, 2, "/2009-04-04/meta-data/")
        );
        for (item, want) in [
            ("instance-id", "i-0000000a"),
            ("ami-id", "emi-0000000e"),
            ("ami-launch-index", "2"),
            ("ami-manifest-path", "(unknown)"),
            ("instance-type", "m1.small"),
            ("kernel-id", "eki-0000000k"),
            ("ramdisk-id", "eri-0000000r"),
            ("reservation-id", "r-0000000a"),
            ("local-ipv4", "10.77.0.2"),
            ("local-hostname", "10.77.0.2"),
            ("hostname", "10.77.0.2"),
            ("public-ipv4", "192.0.2.7"),
            ("public-hostname", "192.0.2.7"),
            ("mac", "d0:0d:0a:4d:00:02"),
            ("security-groups", "default\nweb"),
            ("placement/", "availability-zone"),
            ("placement/availability-zone", "cluster01"),
            ("public-keys/", "0=alice-key"),
            ("public-keys/0/", "openssh-key"),
            ("public-keys/0/openssh-key", KEY),
            ("block-device-mapping/", "ami\nroot"),
            ("block-device-mapping/ami", "vda"),
            ("block-device-mapping/root", "/dev/vda"),
        ] {
            assert_eq!(
                read(&cloud, 2, &format!("/latest/meta-data/{item}")),
                want,
                "{item}"
            );
            assert_eq!(
                read(&cloud, 2, &format!("/1.0/meta-data/{item}")),
                want,
                "{item}"
            );
        }
        assert_eq!(read(&cloud, 2, "/latest/"), "meta-data\nuser-data");
        assert_eq!(read(&cloud, 2, "/latest"), "meta-data\nuser-data");
        let versions = read(&cloud, 2, "/");
        assert!(versions.starts_with("1.0\n2007-01-19\n"), "{versions}");
        assert!(versions.ends_with("\n2009-04-04\nlatest"), "{versions}");
        // User data is the bytes given, whatever they are.
        let user_data = answer(&cloud, ip(2), "/latest/user-data").unwrap();
        assert_eq!(user_data.body, b"#!/bin/sh\necho hi\n\xff");
        assert_eq!(user_data.content_type, BYTES);
        assert_eq!(
            answer(&cloud, ip(2), "/2009-04-04/user-data").unwrap(),
            user_data
        );
        for missing in [
            "/latest/meta-data/nothing",
            "/latest/meta-data/instance-id/more",
            "/latest/meta-data/public-keys/1/openssh-key",
            "/latest/meta-data/public-keys/0=alice-key",
            "/latest/meta-data//instance-id",
            "/2010-01-01/meta-data/instance-id",
            "/latest/dynamic/instance-identity/document",
            "latest/meta-data/",
        ] {
            assert!(
                matches!(refusal(&cloud, ip(2), missing), MetadataError::NotFound),
                "{missing}"
            );
        }
    }

    #[test]
    fn items_without_a_value_are_neither_listed_nor_answered() {
        let (_dir, cloud) = cloud();
        put(&cloud, &instance("i-0000000b", 3));
        let listing = read(&cloud, 3, "/latest/meta-data/");
        for absent in [
            "public-ipv4",
            "public-hostname",
            "public-keys/",
            "ramdisk-id",
        ] {
            assert!(
                !listing.lines().any(|l| l == absent),
                "{absent} in {listing}"
            );
            let path = format!("/latest/meta-data/{absent}");
            assert!(
                matches!(refusal(&cloud, ip(3), &path), MetadataError::NotFound),
                "{path}"
            );
        }
        // No user data: not listed, and a 404.
        assert_eq!(read(&cloud, 3, "/latest/"), "meta-data");
        let err = refusal(&cloud, ip(3), "/latest/user-data");
        assert!(matches!(err, MetadataError::NotFound));
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            read(&cloud, 3, "/latest/meta-data/security-groups"),
            "default"
        );
    }

    #[test]
    fn each_address_reads_only_its_own_instance() {
        let (_dir, cloud) = cloud();
        put(&cloud, &full("i-0000000a", 2));
        put(&cloud, &instance("i-0000000b", 3));
        assert_eq!(
            read(&cloud, 2, "/latest/meta-data/instance-id"),
            "i-0000000a"
        );
        assert_eq!(
            read(&cloud, 3, "/latest/meta-data/instance-id"),
            "i-0000000b"
        );
        // b has no key and no user data: it never reads a's.
        assert!(matches!(
            refusal(&cloud, ip(3), "/latest/meta-data/public-keys/0/openssh-key"),
            MetadataError::NotFound
        ));
        assert!(matches!(
            refusal(&cloud, ip(3), "/latest/user-data"),
            MetadataError::NotFound
        ));
        // An address no instance holds reads nothing at all, not even the versions.
        for peer in [
            ip(4),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            for path in [
                "/",
                "/latest/",
                "/latest/meta-data/instance-id",
                "/latest/user-data",
            ] {
                let err = refusal(&cloud, peer, path);
                assert!(
                    matches!(err, MetadataError::NoInstance(_)),
                    "{peer} {path}: {err}"
                );
                assert_eq!(err.status(), StatusCode::NOT_FOUND);
            }
        }
        assert_eq!(
            refusal(&cloud, ip(4), "/").to_string(),
            "No instance of this cloud has the address 10.77.0.4."
        );
        // A listener on [::] sees IPv4 clients as mapped addresses.
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 77, 0, 3).to_ipv6_mapped());
        assert_eq!(
            answer(&cloud, mapped, "/latest/meta-data/instance-id")
                .unwrap()
                .body,
            b"i-0000000b"
        );
    }

    #[test]
    fn a_terminated_instance_is_answered_no_more_and_its_address_goes_to_the_next() {
        let (_dir, cloud) = cloud();
        let mut ended = full("i-0000000a", 2);
        ended.state = InstanceState::Terminated;
        put(&cloud, &ended);
        let err = refusal(&cloud, ip(2), "/latest/meta-data/instance-id");
        assert!(matches!(err, MetadataError::NoInstance(_)), "{err}");
        // Its address given to a new instance: the new one is answered, never the old one.
        put(&cloud, &instance("i-0000000c", 2));
        assert_eq!(
            read(&cloud, 2, "/latest/meta-data/instance-id"),
            "i-0000000c"
        );
        assert!(matches!(
            refusal(&cloud, ip(2), "/latest/user-data"),
            MetadataError::NotFound
        ));
        // Shutting down is not terminated yet: still answered.
        let mut ending = instance("i-0000000d", 5);
        ending.state = InstanceState::ShuttingDown;
        put(&cloud, &ending);
        assert_eq!(
            read(&cloud, 5, "/latest/meta-data/instance-id"),
            "i-0000000d"
        );
    }

    #[test]
    fn an_address_two_live_instances_hold_answers_neither() {
        let (_dir, cloud) = cloud();
        put(&cloud, &full("i-0000000a", 2));
        put(&cloud, &instance("i-0000000b", 2));
        let err = refusal(&cloud, ip(2), "/latest/meta-data/instance-id");
        assert!(matches!(err, MetadataError::Ambiguous(_)), "{err}");
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_disks_follow_the_image_and_the_type() {
        let (_dir, cloud) = cloud();
        let image: ImageRecord = serde_json::from_value(serde_json::json!({
            "id": "emi-0000000e", "owner": ALICE, "location": "guest/disk.img.manifest.xml",
            "name": "guest", "description": null, "kind": "machine", "architecture": "x86_64",
            "kernel_id": null, "ramdisk_id": null, "platform": null,
            "virtualization_type": "paravirtual", "root_device_name": "/dev/sda1",
            "block_devices": [], "public": false, "launch_accounts": [],
            "created": "2026-12-05T07:00:00.000Z", "image_size": 64u64 << 20,
            "image_digest": "00", "parts": []
        }))
        .unwrap();
        cloud.state.put(&image.id, &image).unwrap();
        put(&cloud, &instance("i-0000000a", 2));
        assert_eq!(
            read(&cloud, 2, "/latest/meta-data/ami-manifest-path"),
            "guest/disk.img.manifest.xml"
        );
        // m1.small (5 GiB) holds the 64 MiB image, the 512 MiB swap and ephemeral0.
        assert_eq!(
            read(&cloud, 2, "/latest/meta-data/block-device-mapping/"),
            "ami\nephemeral0\nroot\nswap"
        );
        assert_eq!(
            read(
                &cloud,
                2,
                "/latest/meta-data/block-device-mapping/ephemeral0"
            ),
            "vdb"
        );
        assert_eq!(
            read(&cloud, 2, "/latest/meta-data/block-device-mapping/swap"),
            "vdc"
        );
    }

    /// A record as the CLC wrote it before user data and keys were kept per instance.
    #[test]
    fn records_written_before_user_data_was_kept_still_read() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = rocksdb::DB::open_default(dir.path().join("clc")).unwrap();
            db.put(
                "instance/i-0000000f",
                r#"{"v":1,"record":{"id":"i-0000000f","reservation_id":"r-0000000f","owner":"111111111111","image_id":"emi-0000000e","kernel_id":"eki-0000000k","ramdisk_id":null,"instance_type":"m1.small","key_name":"old-key","groups":[["sg-00000001","default"]],"zone":"cluster01","launch_index":0,"launch_time":"2026-12-05T07:00:00.000Z","launched_ms":0,"state":"running","state_reason":null,"node":"node-1","client_token":null,"start_timeout_secs":600,"ended_ms":null,"missing_since_ms":null,"nic":{"network":0,"private_ip":"10.77.0.9","public_ip":null,"elastic":false}}}"#,
            )
            .unwrap();
        }
        let cloud = cloud_in(dir.path());
        assert_eq!(
            read(&cloud, 9, "/latest/meta-data/instance-id"),
            "i-0000000f"
        );
        // Its key was not recorded: not given (never another key of the same name).
        assert!(matches!(
            refusal(&cloud, ip(9), "/latest/meta-data/public-keys/"),
            MetadataError::NotFound
        ));
        assert!(matches!(
            refusal(&cloud, ip(9), "/latest/user-data"),
            MetadataError::NotFound
        ));
    }

    async fn body(resp: Response<Body>) -> String {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn the_http_face_answers_get_and_head_in_plain_text() {
        let (_dir, cloud) = cloud();
        put(&cloud, &full("i-0000000a", 2));
        let ok = serve(
            cloud.clone(),
            ip(2),
            &Method::GET,
            "/latest/meta-data/instance-id",
        )
        .await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[header::CONTENT_TYPE], "text/plain");
        assert_eq!(body(ok).await, "i-0000000a");
        let head = serve(cloud.clone(), ip(2), &Method::HEAD, "/latest/user-data").await;
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(
            head.headers()[header::CONTENT_TYPE],
            "application/octet-stream"
        );

        let stranger = serve(cloud.clone(), ip(4), &Method::GET, "/latest/meta-data/").await;
        assert_eq!(stranger.status(), StatusCode::NOT_FOUND);
        assert_eq!(stranger.headers()[header::CONTENT_TYPE], "text/plain");
        assert_eq!(
            body(stranger).await,
            "No instance of this cloud has the address 10.77.0.4.\n"
        );
        let missing = serve(cloud.clone(), ip(2), &Method::GET, "/latest/meta-data/x").await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(body(missing).await, "No such metadata item.\n");

        // IMDSv2's token request: refused, so that clients fall back to plain GETs.
        for method in [Method::PUT, Method::POST, Method::DELETE] {
            let refused = serve(cloud.clone(), ip(2), &method, "/latest/api/token").await;
            assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
            assert_eq!(refused.headers()[header::ALLOW], "GET, HEAD");
        }
    }
}
