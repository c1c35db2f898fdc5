//! The CC's DHCP server (a real dnsmasq) answering a real DHCP client (busybox udhcpc) inside
//! network namespaces the test creates: a "cc" namespace with a guest bridge, and a "guest"
//! namespace on a veth into it whose NIC carries the MAC the CLC planned. The test asserts
//! what the guest gets: its address, netmask, router and DNS server, and a new address after
//! the table changes. Needs root, `ip`, `dnsmasq` and `busybox`; fails, never skips, without.

use std::net::Ipv4Addr;
use std::process::Command;

use network::{Dhcp, DhcpHost, GroupNetwork, Mac};

/// Namespaces deleted on drop, panic or not.
struct Lab(Vec<String>);

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn run(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("ip (iproute2) runs");
    assert!(
        out.status.success(),
        "{args:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asks for an address once, as a guest's udhcpc does; what the server gave
/// (`ip subnet router dns broadcast`).
fn lease(ns: &str, dir: &std::path::Path) -> String {
    let script = dir.join("udhcpc.sh");
    let out = dir.join("lease");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && echo \"$ip $subnet $router $dns $broadcast\" > {}\nexit 0\n",
            out.display()
        ),
    )
    .expect("write the udhcpc script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the udhcpc script");
    let _ = std::fs::remove_file(&out);
    let script = script.to_string_lossy().into_owned();
    // udhcpc exits 1 when no server answers: the empty lease says so.
    let _ = Command::new("ip")
        .args([
            "netns", "exec", ns, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f",
        ])
        .args(["-t", "3", "-T", "1", "-s", &script])
        .output()
        .expect("busybox runs");
    std::fs::read_to_string(&out)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[test]
fn dnsmasq_gives_each_mac_its_planned_address_and_its_network() {
    let prefix = format!("kd-{}", std::process::id());
    let (cc, guest) = (format!("{prefix}-cc"), format!("{prefix}-g"));
    let mut lab = Lab(Vec::new());
    for ns in [&cc, &guest] {
        let ok = Command::new("ip")
            .args(["netns", "add", ns])
            .status()
            .expect("ip runs");
        assert!(
            ok.success(),
            "cannot create namespace {ns} (the test needs root)"
        );
        lab.0.push(ns.clone());
        run(ns, &["ip", "link", "set", "lo", "up"]);
    }
    let net = GroupNetwork {
        index: 3,
        subnet: "10.1.0.96/27".parse().unwrap(),
        gateway: Ipv4Addr::new(10, 1, 0, 97),
        vlan: None,
    };
    run(&cc, &["ip", "link", "add", "kbr-t", "type", "bridge"]);
    run(&cc, &["ip", "addr", "add", "10.1.0.97/27", "dev", "kbr-t"]);
    run(&cc, &["ip", "link", "set", "kbr-t", "up"]);
    run(
        &cc,
        &[
            "ip", "link", "add", "kv-cc", "type", "veth", "peer", "name", "eth0", "netns", &guest,
        ],
    );
    run(
        &cc,
        &["ip", "link", "set", "kv-cc", "master", "kbr-t", "up"],
    );
    let planned = Ipv4Addr::new(10, 1, 0, 98);
    let mac = Mac::for_address(planned);
    run(
        &guest,
        &[
            "ip",
            "link",
            "set",
            "eth0",
            "address",
            &mac.to_string(),
            "up",
        ],
    );

    let dir = tempfile::tempdir().unwrap();
    let dhcp = Dhcp::new(
        dir.path().join("dhcp"),
        vec!["kbr-*".into()],
        Some(Ipv4Addr::new(10, 1, 0, 53)),
    )
    .in_netns(&cc);
    dhcp.update(
        &[net],
        &[DhcpHost {
            mac,
            ip: planned,
            network: 3,
        }],
    )
    .unwrap();
    let got = lease(&guest, dir.path());
    // Stopped, the next update starts it again.
    dhcp.stop();
    assert_eq!(
        got,
        "10.1.0.98 255.255.255.224 10.1.0.97 10.1.0.53 10.1.0.127"
    );

    // A new table reaches the running server (SIGHUP): the MAC now maps to another address,
    // and an unknown MAC gets nothing.
    dhcp.update(
        &[net],
        &[DhcpHost {
            mac,
            ip: Ipv4Addr::new(10, 1, 0, 99),
            network: 3,
        }],
    )
    .unwrap();
    dhcp.update(
        &[net],
        &[DhcpHost {
            mac,
            ip: Ipv4Addr::new(10, 1, 0, 100),
            network: 3,
        }],
    )
    .unwrap();
    assert!(lease(&guest, dir.path()).starts_with("10.1.0.100 "));
    run(
        &guest,
        &["ip", "link", "set", "eth0", "address", "d0:0d:01:02:03:04"],
    );
    assert_eq!(lease(&guest, dir.path()), "");
    dhcp.stop();
}
