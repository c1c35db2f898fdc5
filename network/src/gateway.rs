//! The CC's side of the MANAGED modes on its host: what it holds for the guest networks the
//! CLC planned, applied whole from one [`Plan`] each time the plan changes, and again at start
//! from the last plan it applied (kept in its folder), so that a restarted CC rebuilds exactly
//! what it owned: the DHCP server's tables, forwarding, and the rules table.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Mutex;

use crate::dhcp::{Dhcp, DhcpError, DhcpHost};
use crate::layout::Mac;
use crate::nft::Nft;
use crate::rules::{Plan, RulesError};

/// Why a plan was not (wholly) applied.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
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
}

/// The guest networks a CC applies on its own host.
pub struct Gateway {
    dir: PathBuf,
    dhcp: Dhcp,
    nft: Nft,
    applied: Mutex<Option<Plan>>,
}

impl Gateway {
    /// The CC's gateway, its files in `dir`, its DHCP server on the guest `bridges` (a
    /// trailing `*` matches a prefix) announcing `dns`. Nothing is applied until
    /// [`Gateway::restore`] or [`Gateway::apply`].
    pub fn new(dir: PathBuf, bridges: Vec<String>, dns: Option<Ipv4Addr>) -> Gateway {
        Gateway {
            dhcp: Dhcp::new(dir.join("dhcp"), bridges, dns),
            dir,
            nft: Nft::here(),
            applied: Mutex::new(None),
        }
    }

    /// Applies the plan the CC applied last, at start; nothing when it never applied one.
    pub fn restore(&self) -> Result<(), GatewayError> {
        let saved = std::fs::read(self.dir.join("plan.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Plan>(&bytes).ok());
        match saved {
            Some(plan) => self.apply(&plan),
            None => Ok(()),
        }
    }

    /// Makes the host hold exactly what `plan` says: kept first (so a restart applies it
    /// again), then the DHCP tables, forwarding and the rules. A plan equal to the one
    /// applied last changes nothing.
    pub fn apply(&self, plan: &Plan) -> Result<(), GatewayError> {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        if applied.as_ref() == Some(plan) {
            return Ok(());
        }
        let given = plan;
        let plan = self.localised(given);
        let write = |path: PathBuf, bytes: &[u8]| {
            std::fs::create_dir_all(&self.dir)
                .and_then(|()| std::fs::write(path.with_extension("tmp"), bytes))
                .and_then(|()| std::fs::rename(path.with_extension("tmp"), &path))
                .map_err(|source| GatewayError::Write { path, source })
        };
        let json = serde_json::to_vec(given).unwrap_or_default();
        write(self.dir.join("plan.json"), &json)?;
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
        *applied = Some(given.clone());
        Ok(())
    }

    /// The plan with a metadata service "on this host" (address 0.0.0.0) pointed at a
    /// gateway address of this host, where the CLC's listener answers: a DNAT to loopback
    /// would need route_localnet, a DNAT to a local address does not.
    fn localised(&self, plan: &Plan) -> Plan {
        let mut plan = plan.clone();
        if let (Some(m), Some(first)) = (plan.metadata, plan.networks.first()) {
            if m.ip().is_unspecified() {
                plan.metadata = Some(SocketAddrV4::new(first.gateway, m.port()));
            }
        }
        plan
    }

    /// Stops the DHCP server (the CC is stopping); the rules stay, guarding the guests.
    pub fn stop(&self) {
        self.dhcp.stop();
    }
}
