//! The node controller's links made by the real kernel inside network namespaces the tests
//! create: a "node" namespace stands for the node controller's, a "virt" namespace stands
//! for libvirtd's, where a tap appears as QEMU starts (here a persistent tap `ip tuntap`
//! makes, with a `sleep` standing for QEMU).
//!
//! They need root and `ip`; without them they fail, they do not skip. Nothing outside the
//! namespaces they create (and delete, even on panic) is touched.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use network::{Guard, Layout, Links, LinksError, Mac, Netns, NetworkSettings, Nft, Sightings};

/// Namespaces and processes, deleted and killed on drop, panic or not.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new(name: &str) -> Lab {
        Lab {
            prefix: format!("kn-{}-{name}", std::process::id()),
            namespaces: Vec::new(),
            children: Vec::new(),
            dir: tempfile::tempdir().expect("a temporary folder"),
        }
    }

    /// A new namespace `PREFIX-role`.
    fn netns(&mut self, role: &str) -> String {
        let name = format!("{}-{role}", self.prefix);
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("ip (iproute2) is needed");
        assert!(
            out.status.success(),
            "cannot create the network namespace {name} (these tests need root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.namespaces.push(name.clone());
        name
    }

    /// A pid file naming a process that lives in `ns` (what QEMU's is to libvirtd's).
    fn process_in(&mut self, ns: &str) -> PathBuf {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "sleep", "600"])
            .spawn()
            .expect("sleep");
        let path = self.dir.path().join(format!("{ns}.pid"));
        std::fs::write(&path, child.id().to_string()).unwrap();
        self.children.push(child);
        // `ip netns exec` enters the namespace before it execs sleep.
        for _ in 0..100 {
            let ours = Netns::of_pid_file(&path).unwrap();
            if ours.is(&Netns::named(ns).unwrap()) {
                return path;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the process never entered {ns}");
    }

    fn record(&self) -> PathBuf {
        self.dir.path().join("links.json")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `ip -n NS ARGS`, which must succeed; its output.
fn ip(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .expect("ip");
    assert!(
        out.status.success(),
        "{ns}: ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The interfaces of `ns`, by name.
fn interfaces(ns: &str) -> Vec<String> {
    ip(ns, &["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect()
}

/// `ip -d link show NAME` in `ns`.
fn details(ns: &str, name: &str) -> String {
    ip(ns, &["-d", "link", "show", name])
}

fn layout(text: &str) -> Layout {
    toml::from_str::<NetworkSettings>(text)
        .unwrap()
        .layout()
        .unwrap()
}

/// The site's private interface `priv0` in `ns`: one end of a veth pair (this kernel may
/// have no dummy interfaces), up.
fn private_interface(ns: &str) {
    ip(
        ns,
        &[
            "link",
            "add",
            "priv0",
            "type",
            "veth",
            "peer",
            "name",
            "priv0-peer",
        ],
    );
    ip(ns, &["link", "set", "priv0", "up"]);
}

fn tap_in(ns: &str, tap: &str) {
    ip(ns, &["tuntap", "add", "dev", tap, "mode", "tap"]);
}

/// Whether the kernel makes VLAN interfaces (some have no 802.1Q at all), probed in `ns` on
/// `priv0`.
fn vlans_supported(ns: &str) -> bool {
    let made = Command::new("ip")
        .args(["-n", ns, "link", "add", "link", "priv0", "name", "probe"])
        .args(["type", "vlan", "id", "4000"])
        .output()
        .expect("ip")
        .status
        .success();
    if made {
        ip(ns, &["link", "del", "probe"]);
    }
    made
}

/// Plugs `tap` on `vlan`: plugged where the kernel has VLANs; else refused with the reason,
/// after the VLAN's bridge was made (and recorded).
async fn plug_on_vlan(links: &Links, tap: &str, vlan: u16, qemu: &Path, vlans: bool) {
    let plugged = links.plug(tap, Some(vlan), qemu).await;
    if vlans {
        assert_eq!(plugged.unwrap(), format!("kbr-{vlan}"));
        assert!(links.is_plugged(tap, &format!("kbr-{vlan}")).await.unwrap());
    } else {
        assert!(
            matches!(plugged, Err(LinksError::NoVlanSupport { vlan: v }) if v == vlan),
            "{plugged:?}"
        );
    }
}

/// `mode = "managed"` with 802.1Q-tagged VLANs on `priv0`.
const TAGGED: &str =
    "mode = \"managed\"\nprivate_interface = \"priv0\"\nvlan_transport = \"802.1q\"";

#[tokio::test]
async fn managed_makes_a_vlan_bridge_moves_the_tap_in_and_removes_only_its_own() {
    let mut lab = Lab::new("managed");
    let node = lab.netns("node");
    let virt = lab.netns("virt");
    let qemu = lab.process_in(&virt);
    // The site's private interface.
    private_interface(&node);
    let vlans = vlans_supported(&node);
    let layout = layout(TAGGED);
    let links = Links::open(&layout, Netns::named(&node).unwrap(), lab.record())
        .await
        .unwrap();

    tap_in(&virt, "ktap-00000001");
    plug_on_vlan(&links, "ktap-00000001", 10, &qemu, vlans).await;
    assert!(details(&node, "kbr-10").contains(",UP"));
    let record = std::fs::read_to_string(lab.record()).unwrap();
    assert!(
        record.contains("kbr-10") && record.contains("kvl-10"),
        "{record}"
    );
    if vlans {
        assert!(!interfaces(&virt).contains(&"ktap-00000001".to_owned()));
        let tagged = details(&node, "kvl-10");
        assert!(tagged.contains("kvl-10@priv0"), "{tagged}");
        assert!(tagged.contains("vlan protocol 802.1Q id 10"), "{tagged}");
        assert!(tagged.contains("master kbr-10"), "{tagged}");

        // Plugging again (a restarted node) changes nothing; a second guest shares the bridge.
        plug_on_vlan(&links, "ktap-00000001", 10, &qemu, vlans).await;
        tap_in(&virt, "ktap-00000002");
        plug_on_vlan(&links, "ktap-00000002", 10, &qemu, vlans).await;
    }

    assert!(!links.release(10, || true).await.unwrap());
    assert!(interfaces(&node).contains(&"kbr-10".to_owned()));
    assert!(links.release(10, || false).await.unwrap());
    let left = interfaces(&node);
    assert!(!left.contains(&"kbr-10".to_owned()), "{left:?}");
    assert!(!left.contains(&"kvl-10".to_owned()), "{left:?}");
    assert!(left.contains(&"priv0".to_owned()), "{left:?}");
    assert!(links.owned_vlans().await.is_empty());
    let record = std::fs::read_to_string(lab.record()).unwrap();
    assert!(
        !record.contains("kbr-") && !record.contains("kvl-"),
        "{record}"
    );
}

#[tokio::test]
async fn a_restarted_node_sweeps_the_vlans_no_guest_uses() {
    let mut lab = Lab::new("sweep");
    let node = lab.netns("node");
    let virt = lab.netns("virt");
    let qemu = lab.process_in(&virt);
    private_interface(&node);
    let vlans = vlans_supported(&node);
    let layout = layout(TAGGED);
    {
        let links = Links::open(&layout, Netns::named(&node).unwrap(), lab.record())
            .await
            .unwrap();
        for (tap, vlan) in [("ktap-00000001", 10), ("ktap-00000002", 12)] {
            tap_in(&virt, tap);
            plug_on_vlan(&links, tap, vlan, &qemu, vlans).await;
        }
    }
    // The node stops; its guest on VLAN 12 ended meanwhile. Opened again, it removes what
    // only that guest used.
    let links = Links::open(&layout, Netns::named(&node).unwrap(), lab.record())
        .await
        .unwrap();
    assert_eq!(links.owned_vlans().await, [10, 12].into());
    links.sweep(|vlan| vlan == 10).await.unwrap();
    let left = interfaces(&node);
    assert!(left.contains(&"kbr-10".to_owned()), "{left:?}");
    assert_eq!(left.contains(&"kvl-10".to_owned()), vlans, "{left:?}");
    assert!(!left.contains(&"kbr-12".to_owned()) && !left.contains(&"kvl-12".to_owned()));
    assert_eq!(links.owned_vlans().await, [10].into());
}

#[tokio::test]
async fn novlan_plugs_into_the_sites_bridge_and_refuses_what_it_cannot_serve() {
    let mut lab = Lab::new("novlan");
    let node = lab.netns("node");
    let virt = lab.netns("virt");
    let qemu = lab.process_in(&virt);
    let layout = layout("mode = \"managed-novlan\"\nbridge = \"br0\"");
    let refused = Links::open(&layout, Netns::named(&node).unwrap(), lab.record()).await;
    assert!(
        matches!(&refused, Err(LinksError::Missing { what: "bridge", name, .. }) if name == "br0"),
        "{refused:?}"
    );
    ip(
        &node,
        &[
            "link", "add", "br0", "type", "veth", "peer", "name", "br0-peer",
        ],
    );
    let refused = Links::open(&layout, Netns::named(&node).unwrap(), lab.record()).await;
    assert!(
        matches!(refused, Err(LinksError::NotABridge(_))),
        "{refused:?}"
    );
    ip(&node, &["link", "del", "br0"]);
    ip(&node, &["link", "add", "br0", "type", "bridge"]);
    let links = Links::open(&layout, Netns::named(&node).unwrap(), lab.record())
        .await
        .unwrap();

    tap_in(&virt, "ktap-00000001");
    assert_eq!(
        links.plug("ktap-00000001", None, &qemu).await.unwrap(),
        "br0"
    );
    assert!(links.is_plugged("ktap-00000001", "br0").await.unwrap());
    assert!(!interfaces(&virt).contains(&"ktap-00000001".to_owned()));
    let tap = details(&node, "ktap-00000001");
    assert!(tap.contains("master br0") && tap.contains(",UP"), "{tap}");
    let refused = links.plug("ktap-00000001", Some(10), &qemu).await;
    assert!(matches!(
        refused,
        Err(LinksError::UnexpectedVlan { vlan: 10, .. })
    ));
    // A tap that is nowhere.
    let refused = links.plug("ktap-0000000f", None, &qemu).await;
    assert!(
        matches!(refused, Err(LinksError::TapMissing { .. })),
        "{refused:?}"
    );
    // The site's bridge stays whatever is released.
    links.sweep(|_| false).await.unwrap();
    assert!(interfaces(&node).contains(&"br0".to_owned()));
    assert!(!Path::new(&lab.record()).exists());
}

/// `mode = "managed"` with the VLANs carried as VXLAN segments over `priv0` (the default).
const VXLAN: &str = "mode = \"managed\"\nprivate_interface = \"priv0\"";

#[tokio::test]
async fn vxlan_carries_each_vlan_and_a_bridge_two_roles_share_goes_with_the_last() {
    let mut lab = Lab::new("vxlan");
    let node = lab.netns("node");
    let virt = lab.netns("virt");
    let qemu = lab.process_in(&virt);
    private_interface(&node);
    ip(&node, &["addr", "add", "192.168.90.2/24", "dev", "priv0"]);
    let layout = layout(VXLAN);
    let nc = Links::open(&layout, Netns::named(&node).unwrap(), lab.record())
        .await
        .unwrap();
    // A CC on the same host: its own record, the same namespace.
    let cc_record = lab.dir.path().join("cc-links.json");
    let cc = Links::open(&layout, Netns::named(&node).unwrap(), cc_record.clone())
        .await
        .unwrap();
    assert_eq!(nc.vxlan_mtu().await.unwrap(), Some(1450));

    // The node plugs a guest on VLAN 10: the VLAN's bridge, and VNI 10 over priv0 in it.
    tap_in(&virt, "ktap-00000001");
    assert_eq!(
        nc.plug("ktap-00000001", Some(10), &qemu).await.unwrap(),
        "kbr-10"
    );
    let carrier = details(&node, "kvx-10");
    for want in [
        "vxlan id 10 group 239.255.75.1 dev priv0",
        "dstport 4789",
        "master kbr-10",
    ] {
        assert!(carrier.contains(want), "{want}: {carrier}");
    }
    // The CC puts VLAN 10's gateway on the same bridge.
    assert_eq!(cc.gateway_bridge(10).await.unwrap(), "kbr-10");
    let gateway = [("kbr-10".to_owned(), "10.5.0.1".parse().unwrap(), 28)].into();
    cc.set_addresses(&gateway).await.unwrap();

    // The guest ends: the node lets go, and the bridge stays, the CC's gateway on it.
    ip(&node, &["link", "del", "ktap-00000001"]);
    assert!(nc.release(10, || false).await.unwrap());
    assert!(nc.owned_vlans().await.is_empty());
    assert!(ip(&node, &["-4", "addr", "show", "kbr-10"]).contains("10.5.0.1/28"));
    assert!(interfaces(&node).contains(&"kvx-10".to_owned()));

    // The CC's plan no longer has the network: the last user removes bridge and carrier.
    cc.set_addresses(&Default::default()).await.unwrap();
    cc.sweep(|_| false).await.unwrap();
    let left = interfaces(&node);
    assert!(
        !left.contains(&"kbr-10".to_owned()) && !left.contains(&"kvx-10".to_owned()),
        "{left:?}"
    );

    // The other order: the CC's gateway first and gone first; the guest's tap keeps the
    // bridge until the node lets go.
    assert_eq!(cc.gateway_bridge(12).await.unwrap(), "kbr-12");
    tap_in(&virt, "ktap-00000002");
    nc.plug("ktap-00000002", Some(12), &qemu).await.unwrap();
    cc.sweep(|_| false).await.unwrap();
    assert!(nc.is_plugged("ktap-00000002", "kbr-12").await.unwrap());
    assert!(cc.owned_vlans().await.is_empty());
    ip(&node, &["link", "del", "ktap-00000002"]);
    assert!(nc.release(12, || false).await.unwrap());
    let left = interfaces(&node);
    assert!(
        !left.contains(&"kbr-12".to_owned()) && !left.contains(&"kvx-12".to_owned()),
        "{left:?}"
    );
    for record in [lab.record(), cc_record] {
        let text = std::fs::read_to_string(&record).unwrap();
        assert!(!text.contains("kbr-") && !text.contains("kvx-"), "{text}");
    }
}

#[test]
fn system_mode_learns_the_address_each_guest_sends_from() {
    let mut lab = Lab::new("seen");
    let node = lab.netns("node");
    let guest = lab.netns("guest");
    // The site's bridge, a guest's tap on it (a veth whose other end is the guest's NIC), and
    // a port that is not a guest's.
    ip(&node, &["link", "add", "br0", "type", "bridge"]);
    ip(&node, &["link", "set", "br0", "up"]);
    ip(
        &node,
        &[
            "link",
            "add",
            "ktap-0000000a",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &guest,
        ],
    );
    ip(
        &node,
        &["link", "set", "ktap-0000000a", "master", "br0", "up"],
    );
    ip(
        &node,
        &[
            "link", "add", "uplink", "type", "veth", "peer", "name", "site",
        ],
    );
    ip(&node, &["link", "set", "uplink", "master", "br0", "up"]);
    ip(
        &node,
        &["link", "set", "site", "address", "02:00:00:00:00:99", "up"],
    );
    ip(&node, &["addr", "add", "10.60.0.99/24", "dev", "site"]);
    ip(
        &guest,
        &["link", "set", "eth0", "address", "d0:0d:00:00:00:0a", "up"],
    );

    let sightings = Sightings::new(Nft::in_netns(&node));
    sightings.install().unwrap();
    assert!(sightings.read().unwrap().is_empty());
    // A link-local address (as a guest may take before DHCP answers) is not learned; the
    // address the site's DHCP gave it is, once it speaks (an ARP for its gateway first).
    ip(&guest, &["addr", "add", "169.254.7.7/16", "dev", "eth0"]);
    let _ = Command::new("ip")
        .args(["netns", "exec", &guest, "python3", "-c"])
        .arg("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('169.254.7.7', 0)); s.sendto(b'x', ('169.254.1.1', 9))")
        .status();
    ip(&guest, &["addr", "add", "10.60.0.23/24", "dev", "eth0"]);
    let tap = "ktap-0000000a".to_owned();
    let mut seen = Vec::new();
    for _ in 0..50 {
        let _ = Command::new("ip")
            .args(["netns", "exec", &guest, "python3", "-c"])
            .arg("import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('10.60.0.1', 9))")
            .status();
        seen = sightings.read().unwrap();
        if !seen.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(seen, vec![(tap, "10.60.0.23".parse().unwrap())]);
    // Installed again (a restarted node): what was learned is kept, nothing doubled.
    sightings.install().unwrap();
    assert_eq!(sightings.read().unwrap(), seen);
    let rules = Command::new("ip")
        .args([
            "netns", "exec", &node, "nft", "list", "table", "bridge", "koala",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&rules.stdout);
    assert_eq!(text.matches("update @guests_seen").count(), 2, "{text}");
}

/// Whether a UDP datagram `from` sends (from `source`, if given) to `to`:9 reaches a socket
/// in the namespace `to_ns` within a second.
fn delivered(from: &str, source: Option<&str>, to_ns: &str, to: &str) -> bool {
    let listener = Command::new("ip")
        .args(["netns", "exec", to_ns, "python3", "-c"])
        .arg(
            "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             s.bind(('0.0.0.0',9)); s.settimeout(1.5)\n\
             try: s.recvfrom(10); print('got')\nexcept OSError: print('none')",
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let bind = source.map_or(String::new(), |s| format!("s.bind(('{s}', 0))\n"));
    let sent = Command::new("ip")
        .args(["netns", "exec", from, "python3", "-c"])
        .arg(format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n{bind}\
             s.sendto(b'x', ('{to}', 9))"
        ))
        .status()
        .unwrap();
    assert!(sent.success());
    let out = listener.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "got"
}

#[test]
fn the_guard_pins_each_guest_to_itself_and_keeps_networks_apart_on_one_bridge() {
    let mut lab = Lab::new("guard");
    let node = lab.netns("node");
    ip(&node, &["link", "add", "br0", "type", "bridge"]);
    ip(&node, &["link", "set", "br0", "up"]);
    // Guests a and c in 10.0.0.0/28, b in 10.0.0.16/28: one NOVLAN bridge.
    let guests = [
        ("a", "10.0.0.2", 28),
        ("b", "10.0.0.18", 28),
        ("c", "10.0.0.4", 28),
    ];
    let mut nics = Vec::new();
    for (n, (name, addr, prefix)) in guests.iter().enumerate() {
        let ns = lab.netns(name);
        let tap = format!("ktap-{n:08x}");
        ip(
            &node,
            &[
                "link", "add", &tap, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        );
        ip(&node, &["link", "set", &tap, "master", "br0", "up"]);
        let ip_addr: std::net::Ipv4Addr = addr.parse().unwrap();
        let mac = Mac::for_address(ip_addr);
        ip(
            &ns,
            &["link", "set", "eth0", "address", &mac.to_string(), "up"],
        );
        ip(
            &ns,
            &["addr", "add", &format!("{addr}/{prefix}"), "dev", "eth0"],
        );
        // Every guest believes the whole /24 is on its link: it tries layer 2 to all.
        ip(&ns, &["route", "add", "10.0.0.0/24", "dev", "eth0"]);
        let subnet = network::Ipv4Net::containing(ip_addr, *prefix).unwrap();
        nics.push((
            ns,
            network::GuardedNic {
                tap,
                mac,
                ip: ip_addr,
                subnet,
            },
        ));
    }
    let (a, b, c) = (&nics[0].0, &nics[1].0, &nics[2].0);
    // Unguarded, a reaches b of the other network at layer 2.
    assert!(delivered(a, None, b, "10.0.0.18"));

    let guard = Guard::new(Nft::in_netns(&node));
    let guarded: Vec<_> = nics.iter().map(|(_, nic)| nic.clone()).collect();
    guard.apply(&guarded).unwrap();
    assert!(
        !delivered(a, None, b, "10.0.0.18"),
        "another network's guest at layer 2"
    );
    assert!(delivered(a, None, c, "10.0.0.4"), "its own network's guest");
    // a takes c's neighbour's address: what it sends from it goes nowhere.
    ip(a, &["addr", "add", "10.0.0.5/28", "dev", "eth0"]);
    assert!(
        !delivered(a, Some("10.0.0.5"), c, "10.0.0.4"),
        "a spoofed source"
    );
    // a takes another MAC: nothing it sends passes, not even its ARP for c.
    ip(a, &["link", "set", "eth0", "address", "02:00:00:00:00:01"]);
    ip(a, &["neigh", "flush", "dev", "eth0"]);
    assert!(!delivered(a, None, c, "10.0.0.4"), "a spoofed MAC");
    // Applied again without b: b's rules go, the others stay (one transaction each time).
    guard.apply(&guarded[..1]).unwrap();
    let listed = Command::new("ip")
        .args([
            "netns", "exec", &node, "nft", "list", "table", "bridge", "koala",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(text.matches("drop").count(), 8, "{text}");
    assert!(!text.contains("ktap-00000001"), "{text}");
}

#[tokio::test]
async fn the_roles_of_one_namespace_take_turns_with_its_vlan_bridges() {
    let mut lab = Lab::new("turns");
    let node = lab.netns("node");
    private_interface(&node);
    let layout = layout(VXLAN);
    let nc = Links::open(&layout, Netns::named(&node).unwrap(), lab.record())
        .await
        .unwrap();
    let cc_record = lab.dir.path().join("cc-links.json");
    let cc = Links::open(&layout, Netns::named(&node).unwrap(), cc_record)
        .await
        .unwrap();
    // While the node holds the lock, the CC waits; it gets it once the node lets go.
    let held = nc.host_lock().await.unwrap();
    let waiting = tokio::time::timeout(std::time::Duration::from_millis(300), cc.host_lock());
    assert!(
        waiting.await.is_err(),
        "the CC took the lock the node holds"
    );
    drop(held);
    let taken = tokio::time::timeout(std::time::Duration::from_secs(5), cc.host_lock()).await;
    assert!(taken.is_ok_and(|l| l.is_ok()));
    // Another namespace has its own lock.
    let other = lab.netns("other");
    private_interface(&other);
    let elsewhere = Links::open(
        &layout,
        Netns::named(&other).unwrap(),
        lab.dir.path().join("o.json"),
    )
    .await
    .unwrap();
    let _held = nc.host_lock().await.unwrap();
    let apart = tokio::time::timeout(std::time::Duration::from_secs(5), elsewhere.host_lock());
    assert!(apart.await.is_ok_and(|l| l.is_ok()));
}
