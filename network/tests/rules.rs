//! The CC's rules applied by the real nft inside network namespaces the tests create: a
//! "router" namespace stands for the CC, one namespace per group network stands for an
//! instance in it, and an "outside" namespace on the public link stands for a user. The
//! tests assert what users see (pings, TCP connections and the source address their peer
//! sees), not the shape of the ruleset.
//!
//! They need root, `ip`, `nft`, `python3` and `busybox`; without them they fail, they do not
//! skip. Nothing outside the namespaces they create (and delete, even on panic) is touched.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Child, Command, Output, Stdio};

use network::{
    remove, Grant, GroupNetwork, Guest, Layout, NetworkSettings, Nft, NftError, Plan, Protocol,
    RulesError, Source,
};
use serde_json::Value;

/// Answers each connection with the address it came from, then closes it.
const SERVER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(peer[0].encode())
    c.close()
"#;

/// Connects, prints what the server said; exits 1 when nothing answers within a second.
const CLIENT: &str = r#"
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.0)
    print(c.recv(100).decode())
except OSError as e:
    print(e, file=sys.stderr)
    sys.exit(1)
"#;

const PUBLIC_ROUTER: &str = "192.0.2.1";
const OUTSIDE: &str = "192.0.2.100";
/// The elastic address of the guest in network 0.
const PUBLIC_G0: &str = "192.0.2.10";

/// Namespaces and the servers running in them, deleted and killed on drop, panic or not.
struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    servers: Vec<Child>,
}

impl Lab {
    fn new(name: &str) -> Lab {
        Lab {
            prefix: format!("kt-{}-{name}", std::process::id()),
            namespaces: Vec::new(),
            servers: Vec::new(),
        }
    }

    /// A new namespace `PREFIX-role` with its loopback up.
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
        must(&name, &["ip", "link", "set", "lo", "up"]);
        name
    }

    /// Starts the address-echo server on `addr:port` inside `ns`, back when it listens.
    fn serve(&mut self, ns: &str, addr: &str, port: u16) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", SERVER, addr])
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        BufReader::new(stdout).read_line(&mut line).expect("read");
        self.servers.push(child);
        assert_eq!(line.trim(), "ready", "the server in {ns} on {addr}:{port}");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `args` inside `ns`.
fn run(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("ip netns exec")
}

/// Runs `args` inside `ns`, which must succeed.
fn must(ns: &str, args: &[&str]) {
    let out = run(ns, args);
    assert!(
        out.status.success(),
        "{ns}: {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the server at `ip:port` saw as the client's address, connecting from `ns`; `None`
/// when the connection fails or times out.
fn connect(ns: &str, ip: &str, port: u16) -> Option<String> {
    let out = run(ns, &["python3", "-c", CLIENT, ip, &port.to_string()]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether one ping from `ns` to `ip` is answered within a second.
fn ping(ns: &str, ip: &str) -> bool {
    run(ns, &["busybox", "ping", "-c", "1", "-W", "1", ip])
        .status
        .success()
}

/// A veth pair from `a` (named `a_if`, holding `a_addr`) to `b` (`b_if`, `b_addr`), created
/// inside the namespaces, never in the host's.
fn link(a: &str, a_if: &str, a_addr: &str, b: &str, b_if: &str, b_addr: &str) {
    must(
        a,
        &[
            "ip", "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b,
        ],
    );
    must(a, &["ip", "addr", "add", a_addr, "dev", a_if]);
    must(a, &["ip", "link", "set", a_if, "up"]);
    must(b, &["ip", "addr", "add", b_addr, "dev", b_if]);
    must(b, &["ip", "link", "set", b_if, "up"]);
}

/// The layout of a MANAGED-NOVLAN cloud with Eucalyptus' defaults: /27s from 10.128.0.0/16.
fn layout() -> Layout {
    let settings: NetworkSettings =
        toml::from_str("mode = \"managed-novlan\"\nbridge = \"br0\"").expect("settings");
    settings.layout().expect("layout")
}

/// A cloud of four namespaces: the CC (`router`), an instance in each of networks 0 and 1
/// (`g0`, `g1`) and a user on the public link (`outside`), which also routes the private
/// space through the CC (a site whose routers know the cloud's private space).
struct Cloud {
    lab: Lab,
    router: String,
    outside: String,
    g0: String,
    g1: String,
    nets: [GroupNetwork; 2],
}

impl Cloud {
    fn new(name: &str) -> Cloud {
        let mut lab = Lab::new(name);
        let (router, outside) = (lab.netns("r"), lab.netns("o"));
        let (g0, g1) = (lab.netns("g0"), lab.netns("g1"));
        let layout = layout();
        let nets = [0, 1].map(|i| layout.network(i).expect("network"));
        must(&router, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        link(
            &router,
            "pub",
            &format!("{PUBLIC_ROUTER}/24"),
            &outside,
            "eth0",
            &format!("{OUTSIDE}/24"),
        );
        must(
            &router,
            &[
                "ip",
                "addr",
                "add",
                &format!("{PUBLIC_G0}/32"),
                "dev",
                "pub",
            ],
        );
        must(
            &outside,
            &["ip", "route", "add", "10.128.0.0/16", "via", PUBLIC_ROUTER],
        );
        for (net, ns) in nets.iter().zip([&g0, &g1]) {
            let prefix = net.subnet.prefix();
            let ifname = format!("g{}", net.index);
            link(
                &router,
                &ifname,
                &format!("{}/{prefix}", net.gateway),
                ns,
                "eth0",
                &format!("{}/{prefix}", guest_ip(net)),
            );
            must(
                ns,
                &[
                    "ip",
                    "route",
                    "add",
                    "default",
                    "via",
                    &net.gateway.to_string(),
                ],
            );
        }
        Cloud {
            lab,
            router,
            outside,
            g0,
            g1,
            nets,
        }
    }

    fn nft(&self) -> Nft {
        Nft::in_netns(&self.router)
    }

    /// The plan of this cloud: both networks, the instance in network 0 with the elastic
    /// address, the one in network 1 without, and `grants`.
    fn plan(&self, grants: Vec<Grant>, metadata: Option<SocketAddrV4>) -> Plan {
        Plan {
            networks: self.nets.to_vec(),
            guests: vec![
                Guest {
                    instance_id: "i-00000000".into(),
                    network: 0,
                    private_ip: guest_ip(&self.nets[0]),
                    public_ip: Some(PUBLIC_G0.parse().expect("ip")),
                },
                Guest {
                    instance_id: "i-00000001".into(),
                    network: 1,
                    private_ip: guest_ip(&self.nets[1]),
                    public_ip: None,
                },
            ],
            grants,
            metadata,
        }
    }

    fn apply(&self, grants: Vec<Grant>) {
        self.plan(grants, None).apply(&self.nft()).expect("apply");
    }
}

/// The instance's address in `net`: its first host address.
fn guest_ip(net: &GroupNetwork) -> Ipv4Addr {
    net.hosts().next().expect("a host address")
}

fn from_anywhere(to: u32, protocol: Protocol, from_port: i32, to_port: i32) -> Grant {
    Grant {
        to,
        protocol,
        from_port,
        to_port,
        source: Source::Cidr("0.0.0.0/0".parse().expect("cidr")),
    }
}

/// `nft -j list table ip koala` inside `ns`: `None` when there is no such table.
fn koala_table(ns: &str) -> Option<Vec<Value>> {
    let out = run(ns, &["nft", "-j", "list", "table", "ip", "koala"]);
    if !out.status.success() {
        return None;
    }
    let listing: Value = serde_json::from_slice(&out.stdout).expect("nft's JSON");
    Some(listing["nftables"].as_array().expect("a list").clone())
}

/// How many objects of `kind` (`rule`, `chain`, `set`, `map`) the listing has.
fn count(listing: &[Value], kind: &str) -> usize {
    listing.iter().filter(|o| o.get(kind).is_some()).count()
}

/// How many `add rule` commands a batch has.
fn rules_in(batch: &Value) -> usize {
    batch["nftables"]
        .as_array()
        .expect("a batch")
        .iter()
        .filter(|c| c["add"].get("rule").is_some())
        .count()
}

#[test]
fn groups_deny_inbound_until_a_grant_opens_it() {
    let mut cloud = Cloud::new("sg");
    let private_g0 = guest_ip(&cloud.nets[0]).to_string();
    let g0 = cloud.g0.clone();
    cloud.lab.serve(&g0, "0.0.0.0", 22);
    cloud.lab.serve(&g0, "0.0.0.0", 2222);
    let (outside, router) = (cloud.outside.clone(), cloud.router.clone());

    // Without rules, the topology routes: what fails later fails because of them.
    assert_eq!(connect(&outside, &private_g0, 22).as_deref(), Some(OUTSIDE));
    assert!(ping(&outside, &private_g0));

    cloud.apply(vec![]);
    assert!(!ping(&outside, PUBLIC_G0), "ping before any ICMP grant");
    assert_eq!(connect(&outside, PUBLIC_G0, 22), None, "ssh before a grant");
    assert_eq!(
        connect(&outside, &private_g0, 22),
        None,
        "the private address too"
    );

    let mut grants = vec![Grant {
        source: Source::Cidr("203.0.113.0/24".parse().expect("cidr")),
        ..from_anywhere(0, Protocol::Tcp, 22, 22)
    }];
    cloud.apply(grants.clone());
    assert_eq!(
        connect(&outside, PUBLIC_G0, 22),
        None,
        "a grant to other addresses"
    );

    grants.push(from_anywhere(0, Protocol::Icmp, 8, -1));
    cloud.apply(grants.clone());
    assert!(ping(&outside, PUBLIC_G0), "ping with an echo-request grant");
    assert_eq!(connect(&outside, PUBLIC_G0, 22), None);

    grants.push(from_anywhere(0, Protocol::Tcp, 22, 22));
    cloud.apply(grants.clone());
    assert_eq!(
        connect(&outside, PUBLIC_G0, 22).as_deref(),
        Some(OUTSIDE),
        "ssh PUBLIC_IP with a tcp 22 grant; the guest sees the real client"
    );
    assert_eq!(connect(&outside, PUBLIC_G0, 2222), None, "another port");
    assert!(
        connect(&router, PUBLIC_G0, 22).is_some(),
        "the CC's own connection to the public address"
    );

    grants.pop();
    cloud.apply(grants);
    assert_eq!(
        connect(&outside, PUBLIC_G0, 22),
        None,
        "ssh after the revoke"
    );
    assert_eq!(
        connect(&router, PUBLIC_G0, 22),
        None,
        "the CC's own connection after the revoke"
    );
    assert!(ping(&outside, PUBLIC_G0), "the ICMP grant stays");
}

#[test]
fn public_addresses_translate_both_ways_and_metadata_reaches_the_clc() {
    let mut cloud = Cloud::new("nat");
    let outside = cloud.outside.clone();
    cloud.lab.serve(&outside, OUTSIDE, 7000);
    cloud.lab.serve(&outside, OUTSIDE, 8773);
    let clc = SocketAddrV4::new(OUTSIDE.parse().expect("ip"), 8773);
    cloud
        .plan(vec![], Some(clc))
        .apply(&cloud.nft())
        .expect("apply");
    let private = cloud.nets.map(|n| guest_ip(&n).to_string());

    assert_eq!(
        connect(&cloud.g0, OUTSIDE, 7000).as_deref(),
        Some(PUBLIC_G0),
        "outbound from the guest with an elastic address leaves with it"
    );
    assert_eq!(
        connect(&cloud.g1, OUTSIDE, 7000).as_deref(),
        Some(private[1].as_str()),
        "outbound from the guest without one keeps its private address"
    );
    assert!(ping(&cloud.g0, OUTSIDE), "outbound ICMP, and its replies");
    for (ns, ip) in [(&cloud.g0, &private[0]), (&cloud.g1, &private[1])] {
        assert_eq!(
            connect(ns, "169.254.169.254", 80).as_deref(),
            Some(ip.as_str()),
            "metadata reaches the CLC from the private address"
        );
    }
    assert_eq!(
        connect(&outside, "169.254.169.254", 80),
        None,
        "only guests are sent to the CLC"
    );
}

#[test]
fn group_networks_meet_only_through_group_grants() {
    let mut cloud = Cloud::new("grp");
    let (g0, g1) = (cloud.g0.clone(), cloud.g1.clone());
    cloud.lab.serve(&g0, "0.0.0.0", 22);
    cloud.lab.serve(&g1, "0.0.0.0", 22);
    let private = cloud.nets.map(|n| guest_ip(&n).to_string());

    assert_eq!(
        connect(&g1, &private[0], 22).as_deref(),
        Some(private[1].as_str())
    );
    cloud.apply(vec![]);
    assert_eq!(connect(&g1, &private[0], 22), None, "1 → 0 without a grant");
    assert_eq!(connect(&g0, &private[1], 22), None, "0 → 1 without a grant");

    cloud.apply(vec![Grant {
        source: Source::Network(1),
        ..from_anywhere(0, Protocol::Tcp, 22, 22)
    }]);
    assert_eq!(
        connect(&g1, &private[0], 22).as_deref(),
        Some(private[1].as_str()),
        "1 → 0 with network 1 granted"
    );
    assert_eq!(
        connect(&g1, PUBLIC_G0, 22).as_deref(),
        Some(private[1].as_str()),
        "1 → 0's elastic address: the grant sees the private source"
    );
    assert_eq!(connect(&g0, &private[1], 22), None, "grants go one way");
    assert_eq!(
        connect(&cloud.outside, PUBLIC_G0, 22),
        None,
        "a group grant does not open the group to the world"
    );
}

#[test]
fn reapplying_replaces_the_table_whole_and_remove_touches_nothing_else() {
    let mut lab = Lab::new("idem");
    let ns = lab.netns("r");
    let nft = Nft::in_netns(&ns);
    // Someone else's table, which Koala must leave as it is.
    let other = "add table inet other { chain c { type filter hook forward priority 10; policy accept; counter; }; }";
    let out = Command::new("ip")
        .args(["netns", "exec", &ns, "nft", other])
        .output()
        .expect("nft");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list_other = || run(&ns, &["nft", "-j", "list", "table", "inet", "other"]).stdout;
    let before = list_other();

    // Nothing to remove is fine.
    remove(&nft).expect("remove without a table");

    let layout = layout();
    let mut plan = Plan {
        networks: (0..3)
            .map(|i| layout.network(i).expect("network"))
            .collect(),
        grants: vec![
            from_anywhere(0, Protocol::Tcp, 22, 22),
            from_anywhere(1, Protocol::All, -1, -1),
            Grant {
                source: Source::Network(0),
                ..from_anywhere(2, Protocol::Udp, 53, 53)
            },
        ],
        ..Plan::default()
    };
    let want = rules_in(&plan.ruleset().expect("render"));
    for _ in 0..3 {
        plan.apply(&nft).expect("apply");
        let listing = koala_table(&ns).expect("the table");
        assert_eq!(count(&listing, "table"), 1);
        assert_eq!(count(&listing, "rule"), want, "one copy of the rules");
    }

    // What `nft list` prints of the table can be read back, so a host's own save and
    // restore of its ruleset keeps working with Koala's table in it.
    let text = run(&ns, &["nft", "list", "table", "ip", "koala"]).stdout;
    let mut check = Command::new("ip")
        .args(["netns", "exec", &ns, "nft", "-c", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nft");
    check
        .stdin
        .take()
        .expect("piped")
        .write_all(&text)
        .expect("write");
    let out = check.wait_with_output().expect("nft -c");
    assert!(
        out.status.success(),
        "the listed table does not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    plan.grants.truncate(1);
    plan.apply(&nft).expect("apply");
    let fewer = rules_in(&plan.ruleset().expect("render"));
    assert!(fewer < want);
    assert_eq!(count(&koala_table(&ns).expect("the table"), "rule"), fewer);

    // A batch nft refuses halfway leaves the rules that were in force.
    let mut broken = plan.ruleset().expect("render");
    broken["nftables"]
        .as_array_mut()
        .expect("a batch")
        .push(serde_json::json!({"add": {"rule": {"family": "ip", "table": "koala", "chain": "no_such_chain", "expr": [{"accept": null}]}}}));
    let err = nft.run(&broken).expect_err("refused");
    assert!(matches!(err, NftError::Failed { .. }), "{err}");
    assert_eq!(count(&koala_table(&ns).expect("the table"), "rule"), fewer);

    remove(&nft).expect("remove");
    assert!(koala_table(&ns).is_none(), "no koala table after remove");
    remove(&nft).expect("remove twice");
    assert_eq!(list_other(), before, "the other table is untouched");

    let gone = Nft::in_netns(format!("{}-absent", lab.prefix));
    let err = plan.apply(&gone).expect_err("no such namespace");
    assert!(
        matches!(err, RulesError::Nft(NftError::Failed { .. })),
        "{err}"
    );
}
