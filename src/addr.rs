//! Address sets as sorted, disjoint, non-adjacent intervals, one list per family.
//!
//! An ipBlock minus its excepts, a set of pod addresses, "every address": all become an
//! [`AddrSet`]. Plain values: equal sets compare equal, so the policy graph can use one
//! node for every peer that selects the same addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Inclusive ranges, sorted, disjoint and never adjacent (adjacent ranges are merged).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Intervals(Vec<(u128, u128)>);

impl Intervals {
    pub fn new() -> Self {
        Intervals(Vec::new())
    }

    /// Build from any ranges: sorts and merges overlapping or adjacent ones.
    pub fn from_ranges(mut ranges: Vec<(u128, u128)>) -> Self {
        ranges.sort_unstable();
        let mut out: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            debug_assert!(lo <= hi);
            match out.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        Intervals(out)
    }

    pub fn ranges(&self) -> &[(u128, u128)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, v: u128) -> bool {
        match self.0.binary_search_by(|&(lo, _)| lo.cmp(&v)) {
            Ok(_) => true,
            Err(0) => false,
            Err(i) => self.0[i - 1].1 >= v,
        }
    }

    pub fn union(&self, other: &Intervals) -> Intervals {
        let mut all = self.0.clone();
        all.extend_from_slice(&other.0);
        Intervals::from_ranges(all)
    }

    /// `self` minus `other`.
    pub fn subtract(&self, other: &Intervals) -> Intervals {
        let mut out = Vec::new();
        let mut j = 0;
        for &(lo, hi) in &self.0 {
            let mut cur = lo;
            let mut done = false;
            while j < other.0.len() && other.0[j].1 < cur {
                j += 1;
            }
            let mut k = j;
            while k < other.0.len() && other.0[k].0 <= hi {
                let (olo, ohi) = other.0[k];
                if olo > cur {
                    out.push((cur, olo - 1));
                }
                if ohi >= hi {
                    done = true;
                    break;
                }
                cur = ohi + 1;
                k += 1;
            }
            if !done {
                out.push((cur, hi));
            }
        }
        Intervals(out)
    }
}

/// IPv4 and IPv6 addresses as intervals (IPv4 values are below 2^32).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddrSet {
    pub v4: Intervals,
    pub v6: Intervals,
}

pub fn ip_value(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (false, u32::from(a) as u128),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

pub fn v4(v: u128) -> Ipv4Addr {
    Ipv4Addr::from(v as u32)
}

pub fn v6(v: u128) -> Ipv6Addr {
    Ipv6Addr::from(v)
}

pub fn net_range(net: &IpNet) -> (bool, u128, u128) {
    match net {
        IpNet::V4(n) => (
            false,
            u32::from(n.network()) as u128,
            u32::from(n.broadcast()) as u128,
        ),
        IpNet::V6(n) => (true, u128::from(n.network()), u128::from(n.broadcast())),
    }
}

impl AddrSet {
    pub fn everything() -> Self {
        AddrSet {
            v4: Intervals(vec![(0, u32::MAX as u128)]),
            v6: Intervals(vec![(0, u128::MAX)]),
        }
    }

    pub fn from_ips(ips: impl IntoIterator<Item = IpAddr>) -> Self {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for ip in ips {
            match ip_value(ip) {
                (false, v) => a.push((v, v)),
                (true, v) => b.push((v, v)),
            }
        }
        AddrSet {
            v4: Intervals::from_ranges(a),
            v6: Intervals::from_ranges(b),
        }
    }

    /// `cidr` minus every `except`.
    pub fn from_block(cidr: &IpNet, except: &[IpNet]) -> Self {
        let (is6, lo, hi) = net_range(cidr);
        let base = Intervals::from_ranges(vec![(lo, hi)]);
        let holes = Intervals::from_ranges(
            except
                .iter()
                .map(|e| {
                    let (_, l, h) = net_range(e);
                    (l, h)
                })
                .collect(),
        );
        let set = base.subtract(&holes);
        if is6 {
            AddrSet {
                v4: Intervals::new(),
                v6: set,
            }
        } else {
            AddrSet {
                v4: set,
                v6: Intervals::new(),
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip_value(ip) {
            (false, v) => self.v4.contains(v),
            (true, v) => self.v6.contains(v),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub fn union(&self, other: &AddrSet) -> AddrSet {
        AddrSet {
            v4: self.v4.union(&other.v4),
            v6: self.v6.union(&other.v6),
        }
    }

    /// `self` minus `other`.
    pub fn subtract(&self, other: &AddrSet) -> AddrSet {
        AddrSet {
            v4: self.v4.subtract(&other.v4),
            v6: self.v6.subtract(&other.v6),
        }
    }
}

/// Renders a range as nft writes it: a single address, a prefix when the range is one, or
/// `first-last`.
pub fn range_text(is6: bool, lo: u128, hi: u128) -> String {
    let addr = |v: u128| -> String {
        if is6 {
            v6(v).to_string()
        } else {
            v4(v).to_string()
        }
    };
    if lo == hi {
        return addr(lo);
    }
    let bits: u32 = if is6 { 128 } else { 32 };
    let size = hi.wrapping_sub(lo).wrapping_add(1);
    // A prefix: size is a power of two (or the whole space) and lo is aligned to it.
    let whole = lo == 0 && hi == if is6 { u128::MAX } else { u32::MAX as u128 };
    if whole {
        return format!("{}/0", addr(0));
    }
    if size.is_power_of_two() && lo.is_multiple_of(size) {
        let plen = bits - size.trailing_zeros();
        return format!("{}/{}", addr(lo), plen);
    }
    format!("{}-{}", addr(lo), addr(hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(r: &[(u128, u128)]) -> Intervals {
        Intervals::from_ranges(r.to_vec())
    }

    #[test]
    fn merge_and_subtract() {
        assert_eq!(
            iv(&[(5, 9), (1, 4), (20, 30)]).ranges(),
            &[(1, 9), (20, 30)]
        );
        let a = iv(&[(0, 100)]);
        assert_eq!(
            a.subtract(&iv(&[(10, 19), (50, 200)])).ranges(),
            &[(0, 9), (20, 49)]
        );
        assert_eq!(
            a.subtract(&iv(&[(0, 100)])).ranges(),
            &[] as &[(u128, u128)]
        );
        assert_eq!(
            iv(&[(0, 10), (20, 30)]).subtract(&iv(&[(5, 25)])).ranges(),
            &[(0, 4), (26, 30)]
        );
        assert_eq!(
            iv(&[(0, u128::MAX)]).subtract(&iv(&[(0, 0)])).ranges(),
            &[(1, u128::MAX)]
        );
        assert!(iv(&[(3, 7)]).contains(3) && iv(&[(3, 7)]).contains(7));
        assert!(!iv(&[(3, 7)]).contains(8) && !iv(&[(3, 7)]).contains(2));
    }

    #[test]
    fn block_with_except() {
        let s = AddrSet::from_block(
            &"10.244.0.0/16".parse().unwrap(),
            &["10.244.2.0/24".parse().unwrap()],
        );
        assert!(s.contains("10.244.1.11".parse().unwrap()));
        assert!(!s.contains("10.244.2.33".parse().unwrap()));
        assert!(!s.contains("fd00::1".parse().unwrap()));
        assert_eq!(s.v4.ranges().len(), 2);
    }

    #[test]
    fn text() {
        assert_eq!(range_text(false, 0, u32::MAX as u128), "0.0.0.0/0");
        assert_eq!(range_text(true, 0, u128::MAX), "::/0");
        let (_, lo, hi) = net_range(&"10.244.0.0/16".parse().unwrap());
        assert_eq!(range_text(false, lo, hi), "10.244.0.0/16");
        assert_eq!(range_text(false, lo, lo + 2), "10.244.0.0-10.244.0.2");
        assert_eq!(range_text(false, lo + 5, lo + 5), "10.244.0.5");
    }
}
