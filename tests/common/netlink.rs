#![cfg(feature = "netlink")]
//! Shared helpers for the netlink tests (included with `#[path = "common/netlink.rs"]`;
//! files under tests/common/ are no test crates of their own): scratch network namespaces named `nlt-<pid>-<n>`, removed on
//! drop; the builders of ruleset models (sets, maps, chains, rules) the tests share; the
//! comparison of listings.
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use nftpol::ruleset::model::*;

#[path = "root.rs"]
mod needs_root;
// Not every test crate including this file runs the kernel (tests/diff_order.rs takes
// only the model builders).
#[allow(unused_imports)]
pub use needs_root::require_root_and_nft;

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create() -> Self {
        let name = format!(
            "nlt-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("ip netns add");
        assert!(st.success(), "ip netns add {name} failed");
        Netns { name }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// Run `nft ARGS` in the namespace; panics on failure.
    pub fn nft(&self, args: &[&str]) -> String {
        let out = self.nft_raw(args);
        assert!(out.0, "nft {args:?} in {} failed: {}", self.name, out.2);
        out.1
    }

    /// (success, stdout, stderr)
    pub fn nft_raw(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft"])
            .args(args)
            .output()
            .expect("run nft");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Load a script with `nft -f`.
    pub fn load_script(&self, script: &str) -> Result<(), String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rules.nft");
        std::fs::write(&p, script).unwrap();
        let (ok, _, err) = self.nft_raw(&["-f", p.to_str().unwrap()]);
        if ok {
            Ok(())
        } else {
            Err(err)
        }
    }

    /// `nft list table inet NAME`, or "" when the table does not exist.
    pub fn listing(&self, table: &str) -> String {
        let (ok, out, _) = self.nft_raw(&["list", "table", "inet", table]);
        if ok {
            out
        } else {
            String::new()
        }
    }

    /// The listing with its top-level blocks (sets, maps, chains) sorted: nft lists them
    /// in creation order, which an incremental update legitimately changes.
    pub fn canonical_listing(&self, table: &str) -> String {
        let l = self.listing(table);
        let Some(open) = l.find("{\n") else { return l };
        let (head, body) = l.split_at(open + 2);
        let body = body.trim_end().trim_end_matches('}');
        // The table's comment is listed (one tab in) right before the first set, with no
        // blank line: take it out so it does not travel with whichever set came first.
        let comment: Vec<&str> = body
            .lines()
            .filter(|l| l.starts_with("\tcomment "))
            .collect();
        let body: String = body
            .lines()
            .filter(|l| !l.starts_with("\tcomment "))
            .collect::<Vec<_>>()
            .join("\n");
        let mut blocks: Vec<&str> = body.split("\n\n").map(|b| b.trim_end()).collect();
        blocks.sort_unstable();
        format!("{head}{}{}\n}}\n", comment.join("\n"), blocks.join("\n\n"))
    }

    /// The kernel's view of every rule and set element (`nft --debug=netlink list`), with
    /// rule handles and positions removed (they depend on creation order).
    pub fn debug_listing(&self, table: &str) -> String {
        let (_, out, _) = self.nft_raw(&["--debug=netlink", "list", "table", "inet", table]);
        out.lines()
            .map(|l| {
                if l.starts_with("inet ") && !l.contains('@') {
                    // "inet nftpol CHAIN HANDLE [POSITION]" -> "inet nftpol CHAIN"
                    let parts: Vec<&str> = l.split(' ').collect();
                    parts[..3.min(parts.len())].join(" ")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            .split("\ninet ")
            .map(|block| {
                // Hash sets dump in hash order, which is seeded per set: sort the element
                // lines of each set so only content is compared.
                let mut lines: Vec<&str> = block.lines().collect();
                if lines.first().is_some_and(|l| l.contains('@')) {
                    lines[1..].sort_unstable();
                }
                lines.join("\n")
            })
            .collect::<Vec<_>>()
            .join("\ninet ")
    }

    /// Run `f` with a netlink backend inside this namespace.
    pub fn with<T: Send>(&self, f: impl FnOnce(&mut nftpol::netlink::Backend) -> T + Send) -> T {
        nftpol::netlink::in_netns(&self.path(), || {
            let mut b = nftpol::netlink::Backend::open().expect("open netlink socket");
            f(&mut b)
        })
        .expect("enter netns")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

// ---- model builders: the one set the netlink tests build their models with --------------

pub fn v4(a: &str, b: &str) -> Field {
    Field::Ipv4(
        a.parse::<Ipv4Addr>().unwrap(),
        b.parse::<Ipv4Addr>().unwrap(),
    )
}
pub fn v6(a: &str, b: &str) -> Field {
    Field::Ipv6(
        a.parse::<Ipv6Addr>().unwrap(),
        b.parse::<Ipv6Addr>().unwrap(),
    )
}
/// One IPv4 address as a single-point field.
pub fn host4(a: &str) -> Field {
    v4(a, a)
}
pub fn el(key: Vec<Field>) -> Element {
    Element { key: key.into() }
}
/// An (address, protocol, port range) element of a ports set.
pub fn port_el(addr: Field, proto: u8, ports: (u16, u16)) -> Element {
    el(vec![
        addr,
        Field::Proto(proto, proto),
        Field::Port(ports.0, ports.1),
    ])
}

/// The key of an address set of `family`.
pub fn addr_key(family: IpFamily) -> Vec<KeyType> {
    vec![match family {
        IpFamily::V4 => KeyType::Ipv4Addr,
        IpFamily::V6 => KeyType::Ipv6Addr,
    }]
}
/// The key of an (address, protocol, port) set of `family`.
pub fn ports_key(family: IpFamily) -> Vec<KeyType> {
    let mut key = addr_key(family);
    key.extend([KeyType::InetProto, KeyType::InetService]);
    key
}

pub fn set(
    name: &str,
    key: Vec<KeyType>,
    interval: bool,
    comment: Option<&str>,
    mut elements: Vec<Element>,
) -> Set {
    elements.sort();
    Set {
        name: name.into(),
        // The kernel never sees a role; hand-made models are not the builder's.
        role: SetRole::KnownPods,
        key,
        interval,
        comment: comment.map(Into::into),
        elements,
        timeout: None,
        counter: false,
    }
}

pub fn empty_ruleset(name: &str) -> Ruleset {
    Ruleset::new(name, None)
}

/// A verdict map keyed by one field, its elements sorted.
pub fn map(name: &str, key: KeyType, elements: Vec<(Field, Verdict)>) -> Map {
    let mut elements: Vec<MapElement> = elements
        .into_iter()
        .map(|(f, verdict)| MapElement {
            key: [f].into(),
            verdict,
        })
        .collect();
    elements.sort();
    Map {
        name: name.into(),
        key: vec![key],
        comment: None,
        elements,
    }
}

/// A base chain on `hook`.
pub fn base_chain(
    name: &str,
    hook: Hook,
    priority: i32,
    policy: Verdict,
    rules: Vec<Rule>,
) -> Chain {
    Chain {
        name: name.into(),
        base: Some(BaseChain {
            hook,
            priority,
            policy,
        }),
        comment: None,
        rules,
    }
}
/// The forward base chain as nftpol makes it (priority 0, policy accept).
pub fn forward(rules: Vec<Rule>) -> Chain {
    base_chain("forward", Hook::Forward, 0, Verdict::Accept, rules)
}
/// A regular chain.
pub fn chain(name: &str, comment: Option<&str>, rules: Vec<Rule>) -> Chain {
    Chain {
        name: name.into(),
        base: None,
        comment: comment.map(Into::into),
        rules,
    }
}

/// `ip saddr @set verdict` and its kin: an address lookup, or with `ports` an (address,
/// protocol, port) lookup in an interval set.
pub fn lookup(family: IpFamily, addr: Addr, ports: bool, set: &str, verdict: Verdict) -> Rule {
    Rule::new(RuleKind::Lookup {
        family,
        addr,
        key: if ports {
            LookupKey::Ports { ranges: true }
        } else {
            LookupKey::Addr
        },
        set: set.into(),
        verdict,
        log: None,
    })
}
/// `ip daddr vmap @map` and its kin.
pub fn vmap(family: IpFamily, addr: Addr, map: &str) -> Rule {
    Rule::new(RuleKind::DispatchVmap {
        family,
        addr,
        map: map.into(),
    })
}
/// A rule that ends its chain with `verdict`.
pub fn verdict(verdict: Verdict) -> Rule {
    Rule::new(RuleKind::Verdict(verdict))
}

/// Sort elements the way the model promises (the table keeps its lists in order itself).
pub fn normalize(rs: &mut Ruleset) {
    let sets: Vec<String> = rs.sets().iter().map(|s| s.name.clone()).collect();
    for name in sets {
        rs.set_elements_mut(&name).unwrap().sort();
    }
    for (_, elements) in rs.maps_elements_mut() {
        elements.sort();
    }
}

/// Panic with the first differing lines (and context) when two listings differ.
pub fn assert_same(label: &str, what: &str, netlink: &str, script: &str) {
    if netlink == script {
        return;
    }
    let a: Vec<&str> = netlink.lines().collect();
    let b: Vec<&str> = script.lines().collect();
    let i = a
        .iter()
        .zip(&b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let from = i.saturating_sub(5);
    let ctx = |v: &[&str]| v[from.min(v.len())..(i + 6).min(v.len())].join("\n");
    panic!(
        "{label}: {what} differs at line {} ({} vs {} lines)\n--- netlink ---\n{}\n--- nft -f ---\n{}",
        i + 1,
        a.len(),
        b.len(),
        ctx(&a),
        ctx(&b)
    );
}
