//! The CC's side of guest networking on its host. In STATIC, only the DHCP server, serving
//! koala.toml's MAC→IP table on the site's bridge from start to stop. In the MANAGED modes,
//! what it holds for the guest networks the CLC planned, applied whole from one [`Plan`] each
//! time the plan changes, and again at start from the last plan it applied (kept in its
//! folder), so that a restarted CC rebuilds exactly
//! what it owned: each group network's gateway address on its bridge (in MANAGED, the VLAN's
//! bridge, made for it), the guests' public addresses on the public interface, the DHCP
//! server's tables, forwarding, and the rules table. What a plan no longer names is removed;
//! what Koala did not make is never touched (see [`Links`]).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::NetworkSettings;
use crate::dhcp::{Dhcp, DhcpError, DhcpHost};
use crate::layout::{GroupNetwork, Layout, Mac};
use crate::links::{Links, LinksError, Netns, BRIDGE_PREFIX};
use crate::nft::Nft;
use crate::rules::{Plan, RulesError};

/// Why a plan was not (wholly) applied.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A bridge or an address could not be made or removed.
    #[error("the guest network's interfaces could not be set up")]
    Links(#[from] LinksError),
    /// The DHCP server refused its tables.
    #[error("the guest network's DHCP server failed")]
    Dhcp(#[from] DhcpError),
    /// The rules were refused.
    #[error("the guest network's rules were refused")]
    Rules(#[from] RulesError),
    /// The plan could not be kept for the next start, or forwarding not switched on.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The blocking half of an apply did not finish.
    #[error("applying the guest network stopped: {0}")]
    Stopped(String),
}

/// What runs processes (dnsmasq, nft) and writes /proc: the blocking half of an apply.
struct HostSide {
    dhcp: Dhcp,
    nft: Nft,
}

/// The guest networks a CC applies on its own host.
pub struct Gateway {
    dir: PathBuf,
    links: Links,
    /// MANAGED-NOVLAN's bridge (the site's), where every gateway address goes.
    bridge: Option<String>,
    public_interface: Option<String>,
    /// STATIC's network and table, served as they are (no plan comes in STATIC).
    static_table: Option<(GroupNetwork, Vec<DhcpHost>)>,
    host: Arc<HostSide>,
    applied: tokio::sync::Mutex<Option<Plan>>,
}

impl Gateway {
    /// The CC's gateway for the `[network]` table `settings` (checked into `layout`), its
    /// files in `dir`, working in the CC's own network namespace. The interfaces the table
    /// names must exist. Nothing is applied until [`Gateway::restore`] or [`Gateway::apply`].
    pub async fn open(
        layout: &Layout,
        settings: &NetworkSettings,
        dir: PathBuf,
    ) -> Result<Gateway, GatewayError> {
        let links = Links::open(layout, Netns::current()?, dir.join("links.json")).await?;
        // MANAGED's bridges are one per VLAN, Koala's own; the other mode's is the site's.
        let mtu = links.vxlan_mtu().await?;
        let bridges = match &settings.bridge {
            Some(bridge) if layout.mode() != crate::Mode::Managed => vec![bridge.clone()],
            _ => vec![format!("{BRIDGE_PREFIX}*")],
        };
        Ok(Gateway {
            host: Arc::new(HostSide {
                dhcp: match layout.mode() {
                    crate::Mode::Static => {
                        Dhcp::new(dir.join("dhcp"), bridges, settings.dns_server)
                            .on_shared_network()
                    }
                    _ => Dhcp::new(dir.join("dhcp"), bridges, settings.dns_server).with_mtu(mtu),
                },
                nft: Nft::here(),
            }),
            dir,
            links,
            bridge: settings.bridge.clone(),
            static_table: layout.static_network().map(|net| {
                let hosts = layout
                    .static_hosts()
                    .iter()
                    .map(|h| DhcpHost {
                        mac: h.mac,
                        ip: h.ip,
                        network: net.index,
                    })
                    .collect();
                (net, hosts)
            }),
            public_interface: settings.public_interface.clone(),
            applied: tokio::sync::Mutex::new(None),
        })
    }

    /// Applies the plan the CC applied last, at start; nothing when it never applied one.
    /// In STATIC, starts serving the table.
    pub async fn restore(&self) -> Result<(), GatewayError> {
        if let Some((net, hosts)) = self.static_table.clone() {
            let host = self.host.clone();
            return tokio::task::spawn_blocking(move || host.dhcp.update(&[net], &hosts))
                .await
                .map_err(|e| GatewayError::Stopped(e.to_string()))?
                .map_err(GatewayError::Dhcp);
        }
        let saved = std::fs::read(self.dir.join("plan.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Plan>(&bytes).ok());
        match saved {
            Some(plan) => self.apply(&plan).await,
            None => Ok(()),
        }
    }

    /// Makes the host hold exactly what `plan` says: kept first (so a restart applies it
    /// again), then the addresses and bridges, the DHCP tables, forwarding and the rules. A
    /// plan equal to the one applied last changes nothing.
    pub async fn apply(&self, given: &Plan) -> Result<(), GatewayError> {
        let mut applied = self.applied.lock().await;
        if applied.as_ref() == Some(given) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let path = self.dir.join("plan.json");
        let json = serde_json::to_vec(given).map_err(|e| GatewayError::Stopped(e.to_string()))?;
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(path.with_extension("tmp"), json))
            .and_then(|()| std::fs::rename(path.with_extension("tmp"), &path))
            .map_err(|source| GatewayError::Write { path, source })?;

        // The VLAN bridges are made, given their addresses, and the unused ones removed under
        // the host lock: a node controller of this host decides a bridge unused under it too.
        let host = self.links.host_lock().await?;
        let mut wanted = BTreeSet::new();
        for n in &given.networks {
            let bridge = match (n.vlan, &self.bridge) {
                (Some(vlan), _) => self.links.gateway_bridge(vlan).await?,
                (None, Some(bridge)) => bridge.clone(),
                (None, None) => continue,
            };
            wanted.insert((bridge, n.gateway, n.subnet.prefix()));
        }
        let mut announced = Vec::new();
        if let Some(public) = &self.public_interface {
            let held: BTreeSet<_> = applied
                .iter()
                .flat_map(|p| p.guests.iter().filter_map(|g| g.public_ip))
                .collect();
            for ip in given.guests.iter().filter_map(|g| g.public_ip) {
                wanted.insert((public.clone(), ip, 32));
                if !held.contains(&ip) {
                    announced.push((public.clone(), ip));
                }
            }
        }
        self.links.set_addresses(&wanted).await?;
        let vlans: BTreeSet<u16> = given.networks.iter().filter_map(|n| n.vlan).collect();
        self.links.sweep(|vlan| vlans.contains(&vlan)).await?;
        drop(host);

        let plan = localised(given);
        let host = self.host.clone();
        tokio::task::spawn_blocking(move || host.apply(&plan))
            .await
            .map_err(|e| GatewayError::Stopped(e.to_string()))??;
        *applied = Some(given.clone());
        for (interface, ip) in announced {
            announce(interface, ip);
        }
        tracing::info!(
            networks = given.networks.len(),
            guests = given.guests.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "applied the guest networks"
        );
        Ok(())
    }

    /// Stops the DHCP server (the CC is stopping); the rules stay, guarding the guests.
    pub fn stop(&self) {
        self.host.dhcp.stop();
    }
}

impl HostSide {
    fn apply(&self, plan: &Plan) -> Result<(), GatewayError> {
        let hosts: Vec<DhcpHost> = plan
            .guests
            .iter()
            .map(|g| DhcpHost {
                mac: Mac::for_address(g.private_ip),
                ip: g.private_ip,
                network: g.network,
            })
            .collect();
        self.dhcp.update(&plan.networks, &hosts)?;
        if !plan.networks.is_empty() {
            let forward = PathBuf::from("/proc/sys/net/ipv4/ip_forward");
            std::fs::write(&forward, b"1").map_err(|source| GatewayError::Write {
                path: forward,
                source,
            })?;
        }
        plan.apply(&self.nft)?;
        Ok(())
    }
}

/// Tells the public network that `ip` is now at this host's `interface`: two gratuitous ARPs
/// (`arping -U`, in the background), so that a router or user whose neighbour entry for the
/// address was failing (it moved, or was free a moment ago) sends to it at once instead of at
/// its next ARP retry, a second or more later, as Neutron's L3 agent does. Without arping the
/// address still works, after that retry.
fn announce(interface: String, ip: Ipv4Addr) {
    std::thread::spawn(move || {
        let sent = std::process::Command::new("arping")
            .args(["-q", "-U", "-c", "2", "-I", &interface])
            .arg(ip.to_string())
            .stdin(std::process::Stdio::null())
            .output();
        match sent {
            Ok(out) if out.status.success() => {}
            Ok(out) => tracing::warn!(
                %ip, %interface, status = %out.status,
                stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                "cannot announce a public address"
            ),
            Err(e) => {
                tracing::warn!(%ip, %interface, "cannot run arping (iputils-arping) to announce a public address: {e}")
            }
        }
    });
}

/// The plan with a metadata service "on this host" (address 0.0.0.0) pointed at a gateway
/// address of this host, where the CLC's listener answers: a DNAT to loopback would need
/// route_localnet, a DNAT to a local address does not.
fn localised(plan: &Plan) -> Plan {
    let mut plan = plan.clone();
    if let (Some(m), Some(first)) = (plan.metadata, plan.networks.first()) {
        if m.ip().is_unspecified() {
            plan.metadata = Some(SocketAddrV4::new(first.gateway, m.port()));
        }
    }
    if plan.networks.is_empty() {
        plan.metadata = None;
    }
    plan
}
