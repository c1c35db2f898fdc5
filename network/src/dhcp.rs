//! The CC's DHCP server: one dnsmasq, started and supervised by Koala, that gives each guest
//! NIC the address the CLC planned for its MAC, with its group network's netmask and gateway.
//!
//! dnsmasq is a real, well-tried DHCP server; Koala writes its two tables (hosts: MAC →
//! address and network tag; options: per network tag, the router and DNS server) and sends it
//! SIGHUP, on which it reads them again without dropping a lease. Each group network is one
//! `--dhcp-range` (which gives its netmask and broadcast address: dnsmasq sends the range's
//! broadcast whatever the options table says), so a new network restarts it. The
//! process is Koala's alone: started with no system configuration (`--conf-file=/dev/null`),
//! no DNS (`--port=0`), serving only the guest bridges named, its files under the CC's own
//! folder. A CC that restarts finds the previous dnsmasq by its pid file and replaces it.
//!
//! It keeps no lease database (`--leasefile-ro`): each MAC's address is the CLC's plan, fixed
//! (MANAGED's MAC is made of the address, STATIC's table pairs them), the leases are infinite,
//! and an authoritative server acknowledges a guest's renewal of its planned address after a
//! restart; so nothing of an ended guest is left on disk.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use crate::layout::{GroupNetwork, Mac};

/// Why the DHCP server could not be given its tables.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    /// A table could not be written.
    #[error("dhcp: cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// dnsmasq could not be started.
    #[error("dhcp: cannot start dnsmasq (is the dnsmasq-base package installed?)")]
    Start(#[source] std::io::Error),
    /// dnsmasq exited at once; its log says why.
    #[error("dhcp: dnsmasq exited at start ({status}); see {}", log.display())]
    Exited {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its log.
        log: PathBuf,
    },
    /// dnsmasq could not be told to read its tables again.
    #[error("dhcp: cannot signal dnsmasq")]
    Signal(#[source] std::io::Error),
}

/// One guest NIC dnsmasq answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpHost {
    /// Its MAC.
    pub mac: Mac,
    /// The address it gets.
    pub ip: Ipv4Addr,
    /// The index of its group network (its netmask and gateway).
    pub network: u32,
}

/// The supervised dnsmasq of one CC.
pub struct Dhcp {
    dir: PathBuf,
    interfaces: Vec<String>,
    dns: Option<Ipv4Addr>,
    mtu: Option<u32>,
    authoritative: bool,
    netns: Option<String>,
    child: Mutex<Option<Running>>,
}

/// The dnsmasq process and the networks it was started for.
struct Running {
    child: Child,
    networks: Vec<GroupNetwork>,
}

/// Writes `text` to `path` so that a reader sees the old or the new table, never half.
fn replace(path: &Path, text: &str) -> Result<(), DhcpError> {
    let failed = |source| DhcpError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(failed)?;
    f.write_all(text.as_bytes()).map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(failed)
}

/// dnsmasq's hosts table: `MAC,set:TAG,ADDRESS,infinite` per NIC.
fn hosts_table(hosts: &[DhcpHost]) -> String {
    hosts
        .iter()
        .map(|h| format!("{},set:net{},{},infinite\n", h.mac, h.network, h.ip))
        .collect()
}

/// dnsmasq's options table: each network's router, the DNS server and the guests' MTU, by
/// network tag.
fn options_table(networks: &[GroupNetwork], dns: Option<Ipv4Addr>, mtu: Option<u32>) -> String {
    let mut text = String::new();
    for n in networks {
        let tag = format!("tag:net{}", n.index);
        text += &format!("{tag},option:router,{}\n", n.gateway);
        if let Some(dns) = dns {
            text += &format!("{tag},option:dns-server,{dns}\n");
        }
        if let Some(mtu) = mtu {
            text += &format!("{tag},option:mtu,{mtu}\n");
        }
    }
    text
}

impl Dhcp {
    /// A DHCP server for the guest networks, listening on `interfaces` (the guest bridges; a
    /// trailing `*` matches a prefix), its files in `dir`. Nothing starts until
    /// [`Dhcp::update`].
    pub fn new(dir: PathBuf, interfaces: Vec<String>, dns: Option<Ipv4Addr>) -> Dhcp {
        Dhcp {
            dir,
            interfaces,
            dns,
            mtu: None,
            authoritative: true,
            netns: None,
            child: Mutex::new(None),
        }
    }

    /// The same server telling guests to send packets of at most `mtu` bytes (MANAGED's VLANs
    /// carried by VXLAN).
    pub fn with_mtu(self, mtu: Option<u32>) -> Dhcp {
        Dhcp { mtu, ..self }
    }

    /// The same server on a network it shares with hosts that are not Koala's guests (STATIC's
    /// site bridge): not authoritative, so that it never refuses (NAKs) another host's request
    /// for an address it does not know, and only answers the MACs of its table.
    pub fn on_shared_network(self) -> Dhcp {
        Dhcp {
            authoritative: false,
            ..self
        }
    }

    /// The same server run inside the named network namespace (`ip netns exec`), as tests
    /// stand hosts up.
    pub fn in_netns(self, name: impl Into<String>) -> Dhcp {
        Dhcp {
            netns: Some(name.into()),
            ..self
        }
    }

    /// Serves exactly `hosts` on `networks` from now on: the tables replaced, then dnsmasq
    /// started (replacing one a previous CC left) or told to read them again.
    pub fn update(&self, networks: &[GroupNetwork], hosts: &[DhcpHost]) -> Result<(), DhcpError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| DhcpError::Write {
            path: self.dir.clone(),
            source,
        })?;
        replace(&self.dir.join("hosts"), &hosts_table(hosts))?;
        replace(
            &self.dir.join("options"),
            &options_table(networks, self.dns, self.mtu),
        )?;
        let mut running = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = running.as_mut() {
            let alive = r.child.try_wait().ok().flatten().is_none();
            if alive && r.networks == networks {
                let pid = rustix::process::Pid::from_child(&r.child);
                return rustix::process::kill_process(pid, rustix::process::Signal::HUP)
                    .map_err(|e| DhcpError::Signal(e.into()));
            }
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
        *running = None;
        self.end_previous();
        if networks.is_empty() {
            return Ok(());
        }
        let child = self.start(networks)?;
        tracing::info!(
            pid = child.id(),
            networks = networks.len(),
            "started the DHCP server"
        );
        *running = Some(Running {
            child,
            networks: networks.to_vec(),
        });
        Ok(())
    }

    /// Ends the dnsmasq a previous CC process left, found by its pid file, if it is one of
    /// ours (its command line names this folder).
    fn end_previous(&self) {
        let pid_file = self.dir.join("pid");
        let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        else {
            return;
        };
        let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(&*pid_file.to_string_lossy()))
            .unwrap_or(false);
        if let (true, Some(pid)) = (ours, rustix::process::Pid::from_raw(pid)) {
            tracing::info!(
                pid = pid.as_raw_nonzero(),
                "ending the DHCP server a previous cluster controller left"
            );
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            // It frees its sockets as it exits; the new one binds them.
            for _ in 0..50 {
                if !Path::new(&format!("/proc/{}", pid.as_raw_nonzero())).exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }

    fn start(&self, networks: &[GroupNetwork]) -> Result<Child, DhcpError> {
        let file = |name: &str| self.dir.join(name).to_string_lossy().into_owned();
        let log = self.dir.join("dnsmasq.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|source| DhcpError::Write {
                path: log.clone(),
                source,
            })?;
        let err = out.try_clone().map_err(|source| DhcpError::Write {
            path: log.clone(),
            source,
        })?;
        let mut cmd = match &self.netns {
            None => Command::new("dnsmasq"),
            Some(name) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", name, "dnsmasq"]);
                c
            }
        };
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            "--bind-dynamic",
        ])
        .args(["--except-interface=lo", "--log-dhcp"])
        .arg(format!("--log-facility={}", log.display()))
        .arg(format!("--pid-file={}", file("pid")))
        .arg("--leasefile-ro")
        .args(self.authoritative.then_some("--dhcp-authoritative"))
        .arg(format!("--dhcp-hostsfile={}", file("hosts")))
        .arg(format!("--dhcp-optsfile={}", file("options")));
        for n in networks {
            cmd.arg(format!(
                "--dhcp-range=set:net{},{},static,{},infinite",
                n.index,
                n.subnet.network(),
                n.subnet.netmask()
            ));
        }
        for interface in &self.interfaces {
            cmd.arg(format!("--interface={interface}"));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(DhcpError::Start)?;
        // (`ip netns exec` execs dnsmasq in place: the child's pid is dnsmasq's.)
        // A bad option or a taken port ends it at once: say so now, not at the first guest.
        std::thread::sleep(std::time::Duration::from_millis(100));
        if let Ok(Some(status)) = child.try_wait() {
            return Err(DhcpError::Exited { status, log });
        }
        Ok(child)
    }

    /// Stops dnsmasq (the CC is stopping, or no guest network is left).
    pub fn stop(&self) {
        let mut running = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut r) = running.take() {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("pid"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_name_each_nic_and_each_network() {
        let net = GroupNetwork {
            index: 3,
            subnet: "10.1.0.96/27".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 1, 0, 97),
            vlan: None,
        };
        let ip = Ipv4Addr::new(10, 1, 0, 98);
        let hosts = hosts_table(&[DhcpHost {
            mac: Mac::for_address(ip),
            ip,
            network: 3,
        }]);
        assert_eq!(hosts, "d0:0d:0a:01:00:62,set:net3,10.1.0.98,infinite\n");
        let options = options_table(&[net], Some(Ipv4Addr::new(10, 0, 0, 53)), None);
        assert_eq!(
            options,
            "tag:net3,option:router,10.1.0.97\ntag:net3,option:dns-server,10.0.0.53\n"
        );
        let carried = options_table(&[net], None, Some(1450));
        assert_eq!(
            carried,
            "tag:net3,option:router,10.1.0.97\ntag:net3,option:mtu,1450\n"
        );
    }
}
