//! How long the CC takes to apply a large plan: 200 group networks with 10 grants each and
//! 400 instances with elastic addresses, applied inside a network namespace this program
//! creates and deletes (root needed).
//!
//! `cargo run --release -p network --example rules_bench`

use std::error::Error;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Command;
use std::time::{Duration, Instant};

use network::{remove, Grant, Guest, NetworkSettings, Nft, Plan, Protocol, Source};

const NETWORKS: u32 = 200;
const GUESTS_PER_NETWORK: usize = 2;
const ROUNDS: usize = 10;

/// The namespace, deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Ten grants of the kinds a real group has: open ports, a port range from a site, DNS from
/// the private space, ICMP, and two group-to-group grants.
fn grants(to: u32) -> Result<Vec<Grant>, Box<dyn Error>> {
    let cidr = |text: &str| text.parse().map(Source::Cidr);
    let grant = |protocol, from_port, to_port, source| Grant {
        to,
        protocol,
        from_port,
        to_port,
        source,
    };
    let anywhere = cidr("0.0.0.0/0")?;
    Ok(vec![
        grant(Protocol::Tcp, 22, 22, anywhere),
        grant(Protocol::Tcp, 80, 80, anywhere),
        grant(Protocol::Tcp, 443, 443, anywhere),
        grant(Protocol::Tcp, 8000, 8100, cidr("198.51.100.0/24")?),
        grant(Protocol::Udp, 53, 53, cidr("10.0.0.0/8")?),
        grant(
            Protocol::Udp,
            5000,
            6000,
            cidr(&format!("203.0.113.{}/32", to % 256))?,
        ),
        grant(Protocol::Icmp, 8, -1, anywhere),
        grant(Protocol::Icmp, 3, 4, anywhere),
        grant(Protocol::All, -1, -1, Source::Network((to + 1) % NETWORKS)),
        grant(
            Protocol::Tcp,
            3306,
            3306,
            Source::Network((to + NETWORKS - 1) % NETWORKS),
        ),
    ])
}

fn plan() -> Result<Plan, Box<dyn Error>> {
    let settings: NetworkSettings = toml::from_str("mode = \"managed-novlan\"\nbridge = \"br0\"")?;
    let layout = settings.layout()?;
    let mut plan = Plan {
        metadata: Some(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 100), 8773)),
        ..Plan::default()
    };
    let mut public = u32::from(Ipv4Addr::new(100, 64, 0, 1));
    for index in 0..NETWORKS {
        let net = layout.network(index).ok_or("the layout is too small")?;
        plan.networks.push(net);
        plan.grants.extend(grants(index)?);
        for ip in net.hosts().take(GUESTS_PER_NETWORK) {
            plan.guests.push(Guest {
                instance_id: format!("i-{:08x}", plan.guests.len()),
                network: index,
                private_ip: ip,
                public_ip: Some(Ipv4Addr::from(public)),
            });
            public += 1;
        }
    }
    Ok(plan)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() -> Result<(), Box<dyn Error>> {
    let netns = Netns(format!("kt-bench-{}", std::process::id()));
    let status = Command::new("ip")
        .args(["netns", "add", &netns.0])
        .status()?;
    if !status.success() {
        return Err(format!(
            "cannot create the network namespace {} (root needed)",
            netns.0
        )
        .into());
    }
    let nft = Nft::in_netns(&netns.0);
    let plan = plan()?;

    let mut renders = Vec::new();
    let mut batch = serde_json::Value::Null;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        batch = plan.ruleset()?;
        renders.push(started.elapsed());
    }
    let render = median(renders);
    let commands = batch["nftables"].as_array().map_or(0, Vec::len);

    let mut first = Vec::new();
    let mut replace = Vec::new();
    for _ in 0..ROUNDS {
        remove(&nft)?;
        let started = Instant::now();
        plan.apply(&nft)?;
        first.push(started.elapsed());
        let started = Instant::now();
        plan.apply(&nft)?;
        replace.push(started.elapsed());
    }
    remove(&nft)?;

    println!(
        "{} networks, {} grants, {} instances: {commands} nft commands",
        plan.networks.len(),
        plan.grants.len(),
        plan.guests.len()
    );
    println!("render: median {render:?} of {ROUNDS}");
    println!(
        "apply into an empty namespace: median {:?} of {ROUNDS}",
        median(first)
    );
    println!(
        "apply replacing the same table: median {:?} of {ROUNDS}",
        median(replace)
    );
    Ok(())
}
