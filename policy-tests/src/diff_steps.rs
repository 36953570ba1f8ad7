//! `nftpol diff` against the corpus: in every multi-step case, the diff between
//! consecutive steps lists exactly the cells whose expectation changed (issue 28). The
//! expectations are written by hand from the specification, so this checks `diff` against
//! them, not against nftpol itself. A test only: nothing here runs in `policy-tests run`.

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::Path;

    use nftpol::change::{Change, Diff};
    use nftpol::index::Index;

    use crate::case::{self, Expect, Step};
    use crate::proto::Family;

    fn index(step: &Step) -> Index {
        let objects = step
            .nftpol_objects()
            .into_iter()
            .filter_map(|v| nftpol::input::object_from_value(v, "case").expect("object"))
            .collect();
        Index::from_objects(objects).expect("index")
    }

    /// The address a matrix name stands for in a family: a pod's, a node's underlay
    /// address, or `ext`'s.
    fn address(index: &Index, name: &str, family: Family) -> Option<IpAddr> {
        let v6 = family == Family::V6;
        let host = match name {
            "n1" => Some(if v6 { "fd00:100::1" } else { "192.168.100.1" }),
            "n2" => Some(if v6 { "fd00:100::2" } else { "192.168.100.2" }),
            "ext" => Some(if v6 {
                "fd00:100::100"
            } else {
                "192.168.100.100"
            }),
            _ => None,
        };
        if let Some(h) = host {
            return h.parse().ok();
        }
        let (ns, pod) = name.split_once('/')?;
        let pod = index.pod(ns, pod)?;
        pod.ips.iter().copied().find(|ip| ip.is_ipv6() == v6)
    }

    /// Whether a change's list names the endpoint: a pod or node by name, `ext` by a CIDR.
    fn names(list: &[String], name: &str, ip: IpAddr) -> bool {
        if name == "ext" {
            list.iter().any(|c| cidr_holds(c, ip))
        } else {
            list.iter().any(|l| l == name)
        }
    }

    /// Whether `cidr` (`addr/len`) holds `ip`.
    fn cidr_holds(cidr: &str, ip: IpAddr) -> bool {
        let Some((net, len)) = cidr.split_once('/') else {
            return false;
        };
        let (Ok(net), Ok(len)) = (net.parse::<IpAddr>(), len.parse::<u32>()) else {
            return false;
        };
        // IPv4 in the top 32 bits, so a prefix length masks the same bits in both families.
        let value = |a: IpAddr| match a {
            IpAddr::V4(a) => (false, u128::from(u32::from(a)) << 96),
            IpAddr::V6(a) => (true, u128::from(a)),
        };
        let ((f1, n), (f2, v)) = (value(net), value(ip));
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - len)
        };
        f1 == f2 && n & mask == v & mask
    }

    fn covering<'d>(
        d: &'d Diff,
        family: &str,
        proto: &str,
        port: u16,
        (from, from_ip): (&str, IpAddr),
        (to, to_ip): (&str, IpAddr),
    ) -> Vec<&'d Change> {
        d.changes
            .iter()
            .filter(|c| {
                c.families.iter().any(|f| f == family)
                    && c.protocol.eq_ignore_ascii_case(proto)
                    && c.ports.iter().any(|[lo, hi]| (*lo..=*hi).contains(&port))
                    && names(&c.sources, from, from_ip)
                    && names(&c.destinations, to, to_ip)
            })
            .collect()
    }

    /// The cells both steps probe, each checked against the diff; how many changed.
    fn check_pair(name: &str, steps: &[Step], d: &Diff, ib: &Index, ia: &Index) -> usize {
        let mut changed = 0;
        for eb in &steps[0].expect {
            for ea in steps[1].expect.iter().filter(|e| e.family == eb.family) {
                changed += check_groups(name, eb, ea, d, ib, ia);
            }
        }
        changed
    }

    fn check_groups(
        name: &str,
        eb: &Expect,
        ea: &Expect,
        d: &Diff,
        ib: &Index,
        ia: &Index,
    ) -> usize {
        let family = if eb.family == Family::V6 {
            "ipv6"
        } else {
            "ipv4"
        };
        let mut changed = 0;
        for (r, c, was) in eb.matrix.probed() {
            let (from, to) = (&eb.matrix.rows[r], &eb.matrix.cols[c]);
            let Some(ra) = ea.matrix.rows.iter().position(|x| x == from) else {
                continue;
            };
            let Some(ca) = ea.matrix.cols.iter().position(|x| x == to) else {
                continue;
            };
            let Some(is) = ea.matrix.cells[ra][ca].expected() else {
                continue;
            };
            // The same address in both steps, or the cell is not one connection.
            let ends = [from, to].map(|n| {
                let (b, a) = (address(ib, n, eb.family), address(ia, n, eb.family));
                (b == a).then_some(a).flatten()
            });
            let [Some(from_ip), Some(to_ip)] = ends else {
                continue;
            };
            for probe in eb.probes.iter().filter(|p| ea.probes.contains(p)) {
                let (proto, port) = (probe.proto.as_str(), probe.port);
                let hits = covering(d, family, proto, port, (from, from_ip), (to, to_ip));
                let what =
                    format!("{name}: {from} -> {to} {proto}/{port} {family}: {was} then {is}");
                assert!(hits.len() <= 1, "{what}: in {} changes", hits.len());
                if was == is {
                    assert!(hits.is_empty(), "{what}, yet listed: {:?}", hits[0]);
                } else {
                    changed += 1;
                    let c = hits
                        .first()
                        .unwrap_or_else(|| panic!("{what}, not listed:\n{d}"));
                    assert_eq!(c.after == nftpol::change::Verdict::Allowed, is, "{what}");
                }
            }
        }
        changed
    }

    #[test]
    fn diff_between_steps_lists_exactly_the_cells_that_changed() {
        // The corpus, and the shared conformance folders beside the repository when they
        // are there (as `case::tests::every_case_file_parses` reads them).
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut dirs = vec![root.join("cases")];
        for shared in ["examples", "examples-cnp"] {
            let d = root.join("../../shared/conformance").join(shared);
            if d.is_dir() {
                dirs.push(d);
            }
        }
        let files = dirs
            .iter()
            .flat_map(|d| case::case_files(d).expect("the corpus"));
        let mut pairs = 0;
        let mut changed = 0;
        for file in files {
            let case = case::load(&file).unwrap_or_else(|e| panic!("{}: {}", e.name, e.reason));
            for w in case.steps.windows(2) {
                let (ib, ia) = (index(&w[0]), index(&w[1]));
                let d = nftpol::change::diff(&ib, &ia);
                changed += check_pair(&case.name, w, &d, &ib, &ia);
                pairs += 1;
            }
        }
        assert!(pairs > 20, "only {pairs} consecutive steps in the corpus");
        assert!(changed > 0, "no cell changed between steps");
        eprintln!("{pairs} pairs of consecutive steps, {changed} cells changed");
    }
}
