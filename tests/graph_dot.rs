//! `nftpol graph --output dot` on the bundled example: it renders with Graphviz's `dot`
//! (Debian's graphviz; `.ci/deps` installs it), its edges are the connections the graph
//! allows, and those agree with `explain`: every edge's connections are allowed, and every
//! connection `explain` allows between two endpoints of the example (ports the policies
//! name, and one they do not) that involves a pod lies on an edge (but a pod and its own
//! node, always allowed, which the picture leaves out).

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use nftpol::explain::{explain_in, Query};
use nftpol::graph::PolicyGraph;
use nftpol::index::Index;

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cluster.yaml")
}

fn index() -> Index {
    let text = std::fs::read(example()).unwrap();
    let objs = nftpol::input::parse_bytes(&text, "example", &Default::default()).unwrap();
    Index::from_objects(objs).unwrap()
}

fn cidr_holds(cidr: &str, ip: IpAddr) -> bool {
    cidr.parse::<ipnet::IpNet>().is_ok_and(|n| n.contains(&ip))
}

#[test]
fn the_example_renders_and_its_edges_agree_with_explain() {
    let index = index();
    let graph = PolicyGraph::build(&index);
    let allowed = nftpol::change::allowed(&index, &graph);
    let dot = allowed.to_dot_allowed();
    // The command prints what the library gives.
    let o = Command::new(env!("CARGO_BIN_EXE_nftpol"))
        .args(["graph", "-o", "dot"])
        .arg(example())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8(o.stdout).unwrap(), dot);
    // dot renders it: one edge per change, a node per list.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g.dot"), &dot).unwrap();
    let plain = Command::new("dot")
        .args(["-Tplain", "g.dot"])
        .current_dir(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("dot (graphviz) is needed: .ci/deps installs it: {e}"));
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let plain = String::from_utf8(plain.stdout).unwrap();
    let edges = plain.lines().filter(|l| l.starts_with("edge ")).count();
    assert_eq!(edges, allowed.changes.len(), "{plain}");
    assert!(edges > 10, "{dot}");

    // Every endpoint of the example: pods, nodes, outside addresses.
    let mut ends: Vec<(String, IpAddr, Option<String>)> = Vec::new();
    for p in graph.pods.values() {
        for ip in &p.ips {
            ends.push((p.id(), *ip, p.node.clone()));
        }
    }
    for ip in [
        "192.168.100.1",
        "192.168.100.2",
        "198.51.100.7",
        "203.0.113.9",
        "8.8.8.8",
        "2001:db8:ba::1",
        "2001:db8::1",
    ] {
        ends.push((ip.to_string(), ip.parse().unwrap(), None));
    }
    let label = |name: &str, ip: IpAddr| -> Option<String> {
        if name.contains('/') {
            return Some(name.to_string());
        }
        index
            .pods()
            .find(|p| p.host_ips.contains(&ip))
            .and_then(|p| p.node.clone())
    };
    let names = |list: &[String], name: &str, ip: IpAddr| match label(name, ip) {
        Some(l) => list.contains(&l),
        None => list.iter().any(|c| cidr_holds(c, ip)),
    };
    let own_node = |a: &(String, IpAddr, Option<String>), b: &(String, IpAddr, Option<String>)| {
        [(a, b), (b, a)].iter().any(|(p, h)| {
            graph
                .pod_by_ip(p.1)
                .is_some_and(|pod| pod.host_ips.contains(&h.1))
        })
    };
    let mut checked = 0;
    for s in &ends {
        for t in &ends {
            if s.1 == t.1 || s.1.is_ipv6() != t.1.is_ipv6() {
                continue;
            }
            let pods = graph.pod_by_ip(s.1).is_some() || graph.pod_by_ip(t.1).is_some();
            for proto in ["tcp", "udp"] {
                for port in [53u16, 80, 443, 5432, 6379, 8000, 8080, 9090, 9100, 12345] {
                    let q = Query::parse(
                        &s.1.to_string(),
                        &t.1.to_string(),
                        &format!("{proto}/{port}"),
                        None,
                    )
                    .unwrap();
                    let e = explain_in(&index, &graph, &q).unwrap();
                    let family = if s.1.is_ipv6() { "ipv6" } else { "ipv4" };
                    let on_edge = allowed.changes.iter().any(|c| {
                        c.families.iter().any(|f| f == family)
                            && c.protocol.eq_ignore_ascii_case(proto)
                            && c.ports.iter().any(|[lo, hi]| (*lo..=*hi).contains(&port))
                            && names(&c.sources, &s.0, s.1)
                            && names(&c.destinations, &t.0, t.1)
                    });
                    let want = e.allowed && pods && !own_node(s, t);
                    assert_eq!(
                        on_edge, want,
                        "{} -> {} {proto}/{port}: explain says {}",
                        s.0, t.0, e.allowed
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 1000);
}
