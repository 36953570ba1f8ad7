//! `--service`: a ClusterIP Service in front of every pod, selecting only that pod, and
//! on every node the NAT kube-proxy would program for those Services, in either of its
//! shapes:
//!
//! ```text
//! nftables  table ip kube-proxy / ip6 kube-proxy (pkg/proxy/nftables/proxier.go)
//!   nat-prerouting (dstnat), nat-output (-100) -> services:
//!     ip daddr . meta l4proto . th dport vmap @service-ips
//!       -> service-HASH-ns/svc/proto/port   (masquerade off-cluster sources, numgen)
//!       -> endpoint-HASH-...__IP/port       (masquerade hairpin, dnat to the pod)
//!   nat-postrouting (srcnat) -> masquerading (mark 0x4000 -> masquerade fully-random)
//! iptables  nat table through iptables-nft (pkg/proxy/iptables/proxier.go)
//!   PREROUTING, OUTPUT -> KUBE-SERVICES -> KUBE-SVC-HASH -> KUBE-SEP-HASH (DNAT)
//!   POSTROUTING -> KUBE-POSTROUTING (MASQUERADE marked traffic)
//! ```
//!
//! Probes to a pod then go to its Service address; the kernel's answer is still judged by
//! the case's matrix for the pod (the backend). kube-proxy masquerades traffic to a
//! ClusterIP from outside the cluster CIDR (nodes and ext here): the backend would see
//! an address the matrix does not speak about, so those cells are not probed.
//!
//! This module owns Service addresses, the NAT shapes and loading them; it does not
//! build the network nor touch `inet nftpol`.

use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use anyhow::{Context, Result};

use crate::cluster::{Cluster, Endpoint};
use crate::netns;
use crate::proto::{Family, Proto};

/// How probes to pods are addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Straight to the pod's address.
    None,
    /// Through a Service, DNAT by tables shaped like kube-proxy's nftables mode.
    Nftables,
    /// Through a Service, DNAT by kube-proxy's iptables-mode rules (iptables-nft).
    Iptables,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::None => "none",
            Mode::Nftables => "nftables",
            Mode::Iptables => "iptables",
        })
    }
}

/// The cluster CIDRs kube-proxy is given (`--cluster-cidr`): traffic to a Service from
/// outside them is masqueraded.
const CLUSTER_CIDRS: (&str, &str) = ("10.244.0.0/16", "fd00:10:244::/48");

/// First Service address handed out (`.1` is `kubernetes` in a real cluster).
const FIRST: u32 = 10;

/// kube-proxy's masquerade mark (`--masquerade-bit 14`).
const MASQ_MARK: &str = "0x4000";

/// Why some cells are not probed, for the report.
pub const MASQUERADED: &str =
    "kube-proxy masquerades traffic to a ClusterIP from outside the cluster CIDR";

/// Whether kube-proxy would masquerade a connection from `client` to a ClusterIP: its
/// address is outside the cluster CIDR (nodes and ext; pods never).
pub fn masqueraded(client: &Endpoint, family: Family) -> bool {
    match client.addr(family) {
        Some(IpAddr::V4(a)) => a.octets()[..2] != [10, 244],
        Some(IpAddr::V6(a)) => a.segments()[..3] != [0xfd00, 0x10, 0x244],
        None => false,
    }
}

/// One port of a Service: protocol, port (= target port) and name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Port {
    proto: Proto,
    port: u16,
    name: String,
}

/// The Service of one pod: named like the pod, in its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Service {
    namespace: String,
    name: String,
    /// (ClusterIP, backend pod address), one per family the pod has.
    ips: Vec<(IpAddr, IpAddr)>,
    ports: Vec<Port>,
}

/// The Services of a step's cluster: one per pod, addresses in pod-id order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Services {
    by_pod: BTreeMap<String, Service>,
}

impl Services {
    pub fn for_cluster(cluster: &Cluster) -> Services {
        let mut by_pod = BTreeMap::new();
        for (i, (id, pod)) in cluster.pods.iter().enumerate() {
            let k = FIRST + i as u32;
            let v4 = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + k);
            let v6 =
                Ipv6Addr::from(u128::from("fd00:96::".parse::<Ipv6Addr>().unwrap()) + k as u128);
            let ips = pod
                .ips
                .iter()
                .map(|ip| match ip {
                    IpAddr::V4(_) => (IpAddr::V4(v4), *ip),
                    IpAddr::V6(_) => (IpAddr::V6(v6), *ip),
                })
                .collect();
            let ports = pod
                .ports
                .iter()
                .filter_map(|p| {
                    let proto = p.proto()?;
                    let name = p
                        .name
                        .clone()
                        .unwrap_or_else(|| format!("port-{}-{proto}", p.port));
                    Some(Port {
                        proto,
                        port: p.port,
                        name,
                    })
                })
                .collect();
            let svc = Service {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                ips,
                ports,
            };
            by_pod.insert(id.clone(), svc);
        }
        Services { by_pod }
    }

    /// The ClusterIP of pod `id`'s Service in `family`.
    pub fn address(&self, id: &str, family: Family) -> Option<IpAddr> {
        let svc = self.by_pod.get(id)?;
        svc.ips
            .iter()
            .map(|(c, _)| *c)
            .find(|c| Family::of(*c) == family)
    }

    /// Every (Service port, ClusterIP, backend) of one family, in a stable order.
    fn entries(&self, family: Family) -> Vec<Entry<'_>> {
        let mut out = Vec::new();
        for svc in self.by_pod.values() {
            for (cluster_ip, backend) in &svc.ips {
                if Family::of(*cluster_ip) != family {
                    continue;
                }
                for port in &svc.ports {
                    out.push(Entry {
                        svc,
                        port,
                        cluster_ip: *cluster_ip,
                        backend: *backend,
                    });
                }
            }
        }
        out
    }
}

struct Entry<'a> {
    svc: &'a Service,
    port: &'a Port,
    cluster_ip: IpAddr,
    backend: IpAddr,
}

impl Entry<'_> {
    /// kube-proxy's ServicePortName string: `ns/name:port`.
    fn port_name(&self) -> String {
        format!(
            "{}/{}:{}",
            self.svc.namespace, self.svc.name, self.port.name
        )
    }

    /// `ip:port`, bracketed for IPv6, as DNAT targets are written.
    fn endpoint(&self) -> String {
        match self.backend {
            IpAddr::V4(a) => format!("{a}:{}", self.port.port),
            IpAddr::V6(a) => format!("[{a}]:{}", self.port.port),
        }
    }

    /// nftables chain name bases (`HASH-ns/svc/proto/port`, and with `__IP/port` for
    /// the endpoint), as kube-proxy's servicePortChainNameBase builds them.
    fn nft_bases(&self) -> (String, String) {
        let svc = format!(
            "{}/{}/{}/{}",
            self.svc.namespace, self.svc.name, self.port.proto, self.port.name
        );
        let ep = format!(
            "{svc}__{}/{}",
            self.backend.to_string().replace(':', "."),
            self.port.port
        );
        (
            format!("{}-{svc}", &hash32(&svc)[..8]),
            format!("{}-{ep}", &hash32(&ep)[..8]),
        )
    }

    /// iptables chain suffixes (`KUBE-SVC-<16>`, `KUBE-SEP-<16>`).
    fn ipt_chains(&self) -> (String, String) {
        let svc = format!("{}{}", self.port_name(), self.port.proto);
        let ep = format!("{svc}{}", self.endpoint());
        (
            format!("KUBE-SVC-{}", &hash32(&svc)[..16]),
            format!("KUBE-SEP-{}", &hash32(&ep)[..16]),
        )
    }
}

/// A stable base32 digest (25 characters, 125 bits). kube-proxy takes SHA-256 here; only the
/// name's shape and uniqueness matter to the kernel, so two FNV-1a hashes serve.
fn hash32(text: &str) -> String {
    let fnv = |seed: u64| {
        text.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    let bits =
        (u128::from(fnv(0xcbf2_9ce4_8422_2325)) << 64) | u128::from(fnv(0x8422_2325_cbf2_9ce4));
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..25)
        .map(|i| ALPHABET[((bits >> (123 - 5 * i)) & 31) as usize] as char)
        .collect()
}

fn nft_family(family: Family) -> (&'static str, &'static str, &'static str) {
    match family {
        Family::V4 => ("ip", "ipv4_addr", CLUSTER_CIDRS.0),
        Family::V6 => ("ip6", "ipv6_addr", CLUSTER_CIDRS.1),
    }
}

// One function on purpose (about 90 lines): it reads top to bottom as the table
// kube-proxy's nftables mode writes, in its order; split into pieces, the chains and the
// maps they jump through would no longer be read together.
/// The `nft -f` script that replaces `table <ip|ip6> kube-proxy` in one transaction.
pub fn nft_script(services: &Services, family: Family) -> String {
    let (ipx, addr_type, cluster_cidr) = nft_family(family);
    let entries = services.entries(family);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "table {ipx} kube-proxy {{}}\ndelete table {ipx} kube-proxy"
    );
    let _ = writeln!(
        s,
        "table {ipx} kube-proxy {{\n\tcomment \"rules for kube-proxy\""
    );
    // dstnat - 10, as kube-proxy puts them; nft accepts the `dstnat` keyword only on
    // the prerouting and output hooks, so the number is written out.
    for (name, hook, prio) in [
        ("filter-prerouting", "prerouting", "-110"),
        ("filter-input", "input", "-110"),
        ("filter-forward", "forward", "-110"),
        ("filter-output", "output", "-110"),
    ] {
        let jumps = match hook {
            "prerouting" => "ct state new jump firewall-check",
            "output" => "ct state new jump endpoints-check\n\t\tct state new jump firewall-check",
            _ => "ct state new jump endpoints-check",
        };
        let _ = writeln!(
            s,
            "\tchain {name} {{\n\t\ttype filter hook {hook} priority {prio}; policy accept;\n\t\t{jumps}\n\t}}"
        );
    }
    let _ = writeln!(s, "\tchain nat-prerouting {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tjump services\n\t}}");
    let _ = writeln!(s, "\tchain nat-output {{\n\t\ttype nat hook output priority -100; policy accept;\n\t\tjump services\n\t}}");
    let _ = writeln!(s, "\tchain nat-postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tjump masquerading\n\t}}");
    let _ = writeln!(
        s,
        "\tchain mark-for-masquerade {{\n\t\tmark set mark or {MASQ_MARK}\n\t}}"
    );
    let _ = writeln!(s, "\tchain masquerading {{\n\t\tmark and {MASQ_MARK} == 0 return\n\t\tmark set mark xor {MASQ_MARK}\n\t\tmasquerade fully-random\n\t}}");
    for (name, comment) in [
        (
            "no-endpoint-services",
            "vmap to drop or reject packets to services with no endpoints",
        ),
        (
            "firewall-ips",
            "destinations that are subject to LoadBalancerSourceRanges",
        ),
    ] {
        let _ = writeln!(s, "\tmap {name} {{\n\t\ttype {addr_type} . inet_proto . inet_service : verdict\n\t\tcomment \"{comment}\"\n\t}}");
    }
    let _ = writeln!(s, "\tchain reject-chain {{\n\t\treject\n\t}}");
    let _ = writeln!(s, "\tchain endpoints-check {{\n\t\t{ipx} daddr . meta l4proto . th dport vmap @no-endpoint-services\n\t}}");
    let _ = writeln!(s, "\tchain firewall-check {{\n\t\t{ipx} daddr . meta l4proto . th dport vmap @firewall-ips\n\t}}");
    let _ = writeln!(s, "\tmap service-ips {{\n\t\ttype {addr_type} . inet_proto . inet_service : verdict\n\t\tcomment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\"");
    if !entries.is_empty() {
        let elements: Vec<String> = entries
            .iter()
            .map(|e| {
                format!(
                    "{} . {} . {} : goto service-{}",
                    e.cluster_ip,
                    e.port.proto,
                    e.port.port,
                    e.nft_bases().0
                )
            })
            .collect();
        let _ = writeln!(s, "\t\telements = {{ {} }}", elements.join(",\n\t\t\t"));
    }
    let _ = writeln!(s, "\t}}");
    let _ = writeln!(
        s,
        "\tchain services {{\n\t\t{ipx} daddr . meta l4proto . th dport vmap @service-ips\n\t}}"
    );
    for e in &entries {
        let (svc, ep) = e.nft_bases();
        let (proto, port) = (e.port.proto, e.port.port);
        let _ = writeln!(
            s,
            "\tchain service-{svc} {{\n\t\t{ipx} daddr {} {proto} dport {port} {ipx} saddr != {cluster_cidr} jump mark-for-masquerade\n\t\tnumgen random mod 1 vmap {{ 0 : goto endpoint-{ep} }}\n\t}}",
            e.cluster_ip
        );
        let _ = writeln!(
            s,
            "\tchain endpoint-{ep} {{\n\t\t{ipx} saddr {} jump mark-for-masquerade\n\t\tmeta l4proto {proto} dnat to {}\n\t}}",
            e.backend,
            e.endpoint()
        );
    }
    s.push_str("}\n");
    s
}

/// The `iptables-restore` input for the nat table of `family` (replaces that table).
pub fn iptables_restore(services: &Services, family: Family) -> String {
    let (cluster_cidr, host_len) = match family {
        Family::V4 => (CLUSTER_CIDRS.0, 32),
        Family::V6 => (CLUSTER_CIDRS.1, 128),
    };
    let entries = services.entries(family);
    let mut chains = vec![
        ":PREROUTING ACCEPT [0:0]".to_string(),
        ":INPUT ACCEPT [0:0]".into(),
        ":OUTPUT ACCEPT [0:0]".into(),
        ":POSTROUTING ACCEPT [0:0]".into(),
        ":KUBE-SERVICES - [0:0]".into(),
        ":KUBE-POSTROUTING - [0:0]".into(),
        ":KUBE-MARK-MASQ - [0:0]".into(),
    ];
    let mut rules = vec![
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES".to_string(),
        "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES".into(),
        "-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING".into(),
        format!("-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}"),
        format!("-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN"),
        format!("-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}"),
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully".into(),
    ];
    for e in &entries {
        let (svc, sep) = e.ipt_chains();
        let (name, proto, port) = (e.port_name(), e.port.proto, e.port.port);
        let vip = format!("{}/{host_len}", e.cluster_ip);
        chains.push(format!(":{svc} - [0:0]"));
        chains.push(format!(":{sep} - [0:0]"));
        rules.push(format!("-A KUBE-SERVICES -d {vip} -p {proto} -m comment --comment \"{name} cluster IP\" -m {proto} --dport {port} -j {svc}"));
        rules.push(format!("-A {svc} ! -s {cluster_cidr} -d {vip} -p {proto} -m comment --comment \"{name} cluster IP\" -m {proto} --dport {port} -j KUBE-MARK-MASQ"));
        rules.push(format!(
            "-A {svc} -m comment --comment \"{name} -> {}\" -j {sep}",
            e.endpoint()
        ));
        rules.push(format!(
            "-A {sep} -s {}/{host_len} -m comment --comment \"{name}\" -j KUBE-MARK-MASQ",
            e.backend
        ));
        rules.push(format!("-A {sep} -p {proto} -m comment --comment \"{name}\" -m {proto} -j DNAT --to-destination {}", e.endpoint()));
    }
    format!(
        "*nat\n{}\n{}\nCOMMIT\n",
        chains.join("\n"),
        rules.join("\n")
    )
}

/// What is loaded in each node, so a step that changes nothing loads nothing.
#[derive(Default)]
pub struct Nat {
    loaded: BTreeMap<String, String>,
}

impl Nat {
    /// Loads the Services' NAT into node namespace `netns`. `fresh`: the backend may have
    /// flushed the whole ruleset (first step of a case), so load even if unchanged.
    pub fn install(
        &mut self,
        mode: Mode,
        services: &Services,
        netns: &str,
        fresh: bool,
    ) -> Result<()> {
        let texts: Vec<(&str, String)> = match mode {
            Mode::None => return Ok(()),
            Mode::Nftables => [Family::V4, Family::V6]
                .into_iter()
                .map(|f| ("nft", nft_script(services, f)))
                .collect(),
            Mode::Iptables => vec![
                (
                    "iptables-nft-restore",
                    iptables_restore(services, Family::V4),
                ),
                (
                    "ip6tables-nft-restore",
                    iptables_restore(services, Family::V6),
                ),
            ],
        };
        let all: String = texts.iter().map(|(_, t)| t.as_str()).collect();
        if !fresh && self.loaded.get(netns) == Some(&all) {
            return Ok(());
        }
        self.loaded.remove(netns);
        for (program, text) in &texts {
            if *program == "nft" {
                netns::nft(netns, text)
            } else {
                netns::exec(netns, program, text)
            }
            .with_context(|| format!("loading kube-proxy's {mode} NAT"))?;
        }
        self.loaded.insert(netns.to_string(), all);
        Ok(())
    }
}

/// Whether `iptables-nft-restore` runs, for `--service iptables` (exit status 2 if not).
pub fn preflight(mode: Mode) -> std::result::Result<(), String> {
    let tool = match mode {
        Mode::Iptables => "iptables-nft-restore",
        _ => return Ok(()),
    };
    let ok = std::process::Command::new(tool)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{tool} --version` does not run: --service iptables needs Debian's iptables"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::host;

    fn services() -> Services {
        Services::for_cluster(&Cluster::standard())
    }

    #[test]
    fn one_service_per_pod_in_both_families() {
        let s = services();
        assert_eq!(
            s.address("x/a", Family::V4),
            Some("10.96.0.10".parse().unwrap())
        );
        assert_eq!(
            s.address("x/b", Family::V6),
            Some("fd00:96::b".parse().unwrap())
        );
        assert_eq!(
            s.address("z/c", Family::V4),
            Some("10.96.0.18".parse().unwrap())
        );
        assert_eq!(s.address("q/q", Family::V4), None);
        // 9 pods x 6 ports per family
        assert_eq!(s.entries(Family::V4).len(), 54);
    }

    #[test]
    fn nft_shape_is_kube_proxys() {
        let text = nft_script(&services(), Family::V4);
        assert!(text.starts_with("table ip kube-proxy {}\ndelete table ip kube-proxy\n"));
        assert!(text.contains("type nat hook prerouting priority dstnat;"));
        assert!(text.contains("type nat hook output priority -100;"));
        assert!(text.contains("type ipv4_addr . inet_proto . inet_service : verdict"));
        assert!(text.contains("ip daddr . meta l4proto . th dport vmap @service-ips"));
        let e = services();
        let entries = e.entries(Family::V4);
        let xa = entries
            .iter()
            .find(|e| {
                e.svc.name == "a"
                    && e.svc.namespace == "x"
                    && e.port.port == 80
                    && e.port.proto == Proto::Tcp
            })
            .unwrap();
        let (svc, ep) = xa.nft_bases();
        assert!(svc.ends_with("-x/a/tcp/serve-80-tcp"), "{svc}");
        assert!(
            ep.ends_with("-x/a/tcp/serve-80-tcp__10.244.1.11/80"),
            "{ep}"
        );
        assert!(text.contains(&format!("10.96.0.10 . tcp . 80 : goto service-{svc}")));
        assert!(text.contains("meta l4proto tcp dnat to 10.244.1.11:80"));
        assert!(text.contains("ip saddr != 10.244.0.0/16 jump mark-for-masquerade"));
        let v6 = nft_script(&services(), Family::V6);
        assert!(v6.contains("meta l4proto udp dnat to [fd00:10:244:1::11]:81"));
        assert!(v6.contains("__fd00.10.244.1..11/81"));
    }

    #[test]
    fn iptables_shape_is_kube_proxys() {
        let text = iptables_restore(&services(), Family::V4);
        assert!(text.starts_with("*nat\n"));
        assert!(text.ends_with("COMMIT\n"));
        let svc = text
            .lines()
            .find(|l| l.starts_with("-A KUBE-SERVICES -d 10.96.0.10/32 -p sctp"))
            .unwrap();
        let chain = svc.rsplit(' ').next().unwrap();
        assert!(
            chain.starts_with("KUBE-SVC-") && chain.len() == 25,
            "{chain}"
        );
        assert!(text.contains(&format!(
            "-A {chain} ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p sctp"
        )));
        assert!(text.contains("-j DNAT --to-destination 10.244.1.11:80"));
        let v6 = iptables_restore(&services(), Family::V6);
        assert!(v6.contains("--to-destination [fd00:10:244:2::33]:81"));
        assert!(v6.contains("! -s fd00:10:244::/48 -d fd00:96::12/128"));
    }

    #[test]
    fn hosts_are_masqueraded_pods_are_not() {
        let c = Cluster::standard();
        for f in [Family::V4, Family::V6] {
            assert!(!masqueraded(&Endpoint::Pod(&c.pods["x/a"]), f));
            assert!(masqueraded(&Endpoint::Host(host("n1").unwrap()), f));
            assert!(masqueraded(&Endpoint::Host(host("ext").unwrap()), f));
        }
    }

    #[test]
    fn hashes_are_stable_and_distinct() {
        assert_eq!(hash32("x/a:p"), hash32("x/a:p"));
        assert_ne!(hash32("x/a:p"), hash32("x/b:p"));
        assert_eq!(hash32("").len(), 25);
    }
}
