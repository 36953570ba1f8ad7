//! flannel's VXLAN backend between the nodes, programmed the way flanneld programs it
//! (`flannel.1` for IPv4, `flannel-v6.1` for IPv6, VNI 1, UDP 8472, no learning). Per
//! remote node: a route to its pod CIDR via its VTEP address (the CIDR's `.0`, `::`)
//! onlink through the device, a permanent neighbour entry VTEP address -> VTEP MAC, and
//! an FDB entry VTEP MAC -> the remote's underlay address.
//!
//! ```text
//! pod --cni0--> n1 --flannel.1 (10.244.1.0)--UDP 8472 over eth0--> n2 --cni0--> pod
//! ```
//!
//! This module only produces the `ip` and `bridge` commands; `topology.rs` runs them.

use crate::cluster::{host, node_number, NODES};

/// flanneld's VXLAN port (not IANA's 4789).
pub const PORT: u16 = 8472;

/// The VNI flannel uses by default.
pub const VNI: u32 = 1;

/// The pods' MTU under the overlay: the underlay's 1500 minus VXLAN's 50 bytes over
/// IPv4, as flannel writes it into its CNI config (70 over IPv6; probes are small).
pub const POD_MTU: u32 = 1450;

/// One VXLAN device of a node: the family's name, VTEP MAC and addresses.
struct Device {
    name: &'static str,
    v6: bool,
}

const DEVICES: [Device; 2] = [
    Device {
        name: "flannel.1",
        v6: false,
    },
    Device {
        name: "flannel-v6.1",
        v6: true,
    },
];

fn vtep_mac(dev: &Device, n: u8) -> String {
    format!("02:f{}:00:00:00:{n:02x}", if dev.v6 { 6 } else { 4 })
}

/// The VTEP address of node `n`: its pod CIDR's network address, as flanneld assigns.
fn vtep_addr(dev: &Device, n: u8) -> String {
    if dev.v6 {
        format!("fd00:10:244:{n}::")
    } else {
        format!("10.244.{n}.0")
    }
}

fn pod_cidr(dev: &Device, n: u8) -> String {
    if dev.v6 {
        format!("fd00:10:244:{n}::/64")
    } else {
        format!("10.244.{n}.0/24")
    }
}

/// `ip -batch` lines for `node`: both devices and, per remote node, route and
/// neighbour entry. `None` for a name that is not a node.
pub fn ip_commands(node: &str) -> Option<Vec<String>> {
    let n = node_number(node)?;
    let me = host(node)?;
    let mut cmds = Vec::new();
    for dev in &DEVICES {
        let local = if dev.v6 {
            me.v6.to_string()
        } else {
            me.v4.to_string()
        };
        cmds.push(format!(
            "link add {} address {} type vxlan id {VNI} local {local} dev eth0 dstport {PORT} nolearning",
            dev.name,
            vtep_mac(dev, n)
        ));
        let (addr, len) = (vtep_addr(dev, n), if dev.v6 { 128 } else { 32 });
        let nodad = if dev.v6 { " nodad" } else { "" };
        cmds.push(format!("addr add {addr}/{len} dev {}{nodad}", dev.name));
        cmds.push(format!("link set {} up", dev.name));
        for remote in remotes(node) {
            cmds.push(format!(
                "route add {} via {} dev {} onlink",
                pod_cidr(dev, remote),
                vtep_addr(dev, remote),
                dev.name
            ));
            cmds.push(format!(
                "neigh add {} lladdr {} dev {} nud permanent",
                vtep_addr(dev, remote),
                vtep_mac(dev, remote),
                dev.name
            ));
        }
    }
    Some(cmds)
}

/// `bridge -batch` lines for `node`: per remote node and family, the FDB entry that
/// sends frames for the remote VTEP MAC to the remote's underlay address.
pub fn fdb_commands(node: &str) -> Vec<String> {
    let mut cmds = Vec::new();
    for dev in &DEVICES {
        for remote in remotes(node) {
            let Some(h) = NODES
                .iter()
                .find(|r| node_number(r) == Some(remote))
                .and_then(|r| host(r))
            else {
                continue;
            };
            let dst = if dev.v6 {
                h.v6.to_string()
            } else {
                h.v4.to_string()
            };
            cmds.push(format!(
                "fdb add {} dev {} dst {dst}",
                vtep_mac(dev, remote),
                dev.name
            ));
        }
    }
    cmds
}

fn remotes(node: &str) -> impl Iterator<Item = u8> + '_ {
    NODES
        .iter()
        .filter(move |r| **r != node)
        .filter_map(|r| node_number(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n1_reaches_n2_through_its_vtep() {
        let ip = ip_commands("n1").unwrap();
        assert!(ip.contains(&"link add flannel.1 address 02:f4:00:00:00:01 type vxlan id 1 local 192.168.100.1 dev eth0 dstport 8472 nolearning".to_string()));
        assert!(ip.contains(&"addr add 10.244.1.0/32 dev flannel.1".to_string()));
        assert!(
            ip.contains(&"route add 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink".to_string())
        );
        assert!(ip.contains(
            &"neigh add 10.244.2.0 lladdr 02:f4:00:00:00:02 dev flannel.1 nud permanent"
                .to_string()
        ));
        assert!(ip.contains(
            &"route add fd00:10:244:2::/64 via fd00:10:244:2:: dev flannel-v6.1 onlink".to_string()
        ));
        assert!(!ip.iter().any(|c| c.contains("10.244.1.0/24 via")));
        let fdb = fdb_commands("n1");
        assert_eq!(
            fdb,
            vec![
                "fdb add 02:f4:00:00:00:02 dev flannel.1 dst 192.168.100.2".to_string(),
                "fdb add 02:f6:00:00:00:02 dev flannel-v6.1 dst fd00:100::2".to_string(),
            ]
        );
        assert!(ip_commands("ext").is_none());
    }
}
