//! The DNS a case serves (`dns:` in `FORMAT.md`): its records (A, AAAA, CNAME, each with
//! a TTL), the external addresses that answer on the probed ports, and what a name
//! resolves to (the answer the harness's server gives, the first address a probe
//! connects to). Pure: parsing, validation and the answer; the server and the pods'
//! lookups are `dns_server.rs`, the namespaces `topology.rs`.
//!
//! Names compare case-insensitively and without the trailing dot, as DNS names do; an
//! answer keeps the spelling of the question (its first record's owner is the name
//! asked), then follows CNAMEs inside the case's records, each alias once.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;

use crate::proto::Family;

/// The DNS server's address on the underlay (its own namespace, `dns`), the address the
/// pods query and the controllers trust (`--dns-server`).
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 53);
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 0x53);
/// The outside network's underlay address (namespace `out`): the nodes route the
/// external ranges through it.
pub const OUTSIDE_V4: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 200);
pub const OUTSIDE_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 0x200);
/// Where a case's external addresses come from.
pub const EXTERNAL_V4: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 51, 100, 0), 24);
pub const EXTERNAL_V6: (Ipv6Addr, u8) = (Ipv6Addr::new(0x2001, 0xdb8, 0x51, 0, 0, 0, 0, 0), 64);
/// A record's TTL when the case gives none.
pub const DEFAULT_TTL: u32 = 300;

/// A record type a case may serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RecordType {
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
    #[serde(rename = "CNAME")]
    Cname,
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
        })
    }
}

/// `dns:` as a case writes it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    #[serde(default)]
    pub external: Vec<String>,
    #[serde(default)]
    pub records: Vec<RawRecord>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: RecordType,
    pub value: String,
    #[serde(default)]
    pub ttl: Option<u32>,
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Addr(IpAddr),
    /// The canonical name, as written (lower case, no trailing dot).
    Cname(String),
}

/// One validated record; `name` is lower case without the trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub ttl: u32,
    pub data: Data,
}

/// A step's DNS: the records the server holds and the external addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dns {
    pub records: Vec<Record>,
    pub external: BTreeSet<IpAddr>,
}

/// One record of an answer, owned by `name` as the answer spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub name: String,
    pub ttl: u32,
    pub data: Data,
}

/// `name` as DNS compares it: lower case, no trailing dot.
pub fn canonical(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Whether a matrix column names a DNS name rather than a pod or a host: it holds a dot
/// and no slash.
pub fn is_name(column: &str) -> bool {
    column.contains('.') && !column.contains('/')
}

fn in_range(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) >> 8 == u32::from(EXTERNAL_V4.0) >> 8,
        IpAddr::V6(v6) => u128::from(v6) >> 64 == u128::from(EXTERNAL_V6.0) >> 64,
    }
}

/// A name a record may have: two labels or more of letters, digits, `-` and `_`.
fn valid_name(name: &str) -> bool {
    let n = name.strip_suffix('.').unwrap_or(name);
    let labels: Vec<&str> = n.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

impl RawDns {
    /// Validates the section; errors name the field (`dns.records[2].value: ...`).
    pub fn validate(&self) -> Result<Dns, String> {
        let mut external = BTreeSet::new();
        for (i, a) in self.external.iter().enumerate() {
            let f = format!("dns.external[{i}]");
            let ip: IpAddr = a
                .parse()
                .map_err(|_| format!("{f}: {a:?} is not an IP address"))?;
            if !in_range(ip) {
                return Err(format!(
                    "{f}: {ip} is outside the external ranges {}/{} and {}/{}",
                    EXTERNAL_V4.0, EXTERNAL_V4.1, EXTERNAL_V6.0, EXTERNAL_V6.1
                ));
            }
            if !external.insert(ip) {
                return Err(format!("{f}: {ip} listed twice"));
            }
        }
        let mut records = Vec::new();
        for (i, r) in self.records.iter().enumerate() {
            records.push(record(r, &format!("dns.records[{i}]"))?);
        }
        let dns = Dns { records, external };
        dns.check_cnames()?;
        Ok(dns)
    }
}

fn record(r: &RawRecord, f: &str) -> Result<Record, String> {
    if !valid_name(&r.name) {
        return Err(format!("{f}.name: {:?} is not a domain name", r.name));
    }
    let ttl = r.ttl.unwrap_or(DEFAULT_TTL);
    if ttl == 0 || ttl > 86_400 {
        return Err(format!("{f}.ttl: {ttl} is not 1 to 86400 seconds"));
    }
    let bad = |what: &str| format!("{f}.value: {:?} is not {what}", r.value);
    let data = match r.kind {
        RecordType::A => match r.value.parse() {
            Ok(IpAddr::V4(a)) => Data::Addr(IpAddr::V4(a)),
            _ => return Err(bad("an IPv4 address")),
        },
        RecordType::Aaaa => match r.value.parse() {
            Ok(IpAddr::V6(a)) => Data::Addr(IpAddr::V6(a)),
            _ => return Err(bad("an IPv6 address")),
        },
        RecordType::Cname if valid_name(&r.value) => Data::Cname(canonical(&r.value)),
        RecordType::Cname => return Err(bad("a domain name")),
    };
    Ok(Record {
        name: canonical(&r.name),
        ttl,
        data,
    })
}

impl Dns {
    /// A name with a CNAME has no other record, one CNAME only (as DNS requires), and no
    /// chain loops.
    fn check_cnames(&self) -> Result<(), String> {
        for (i, r) in self.records.iter().enumerate() {
            let Data::Cname(target) = &r.data else {
                continue;
            };
            let others = self
                .records
                .iter()
                .enumerate()
                .filter(|(j, o)| *j != i && o.name == r.name)
                .count();
            if others > 0 {
                return Err(format!(
                    "dns.records[{i}]: {} has a CNAME and other records",
                    r.name
                ));
            }
            let mut seen = BTreeSet::from([r.name.clone()]);
            let mut at = target.clone();
            while let Some(next) = self.cname_of(&at) {
                if !seen.insert(at.clone()) || next == r.name {
                    return Err(format!(
                        "dns.records[{i}]: the CNAME chain from {} loops",
                        r.name
                    ));
                }
                at = next.to_string();
            }
        }
        Ok(())
    }

    fn cname_of(&self, name: &str) -> Option<&str> {
        self.records.iter().find_map(|r| match &r.data {
            Data::Cname(t) if r.name == name => Some(t.as_str()),
            _ => None,
        })
    }

    /// Whether the server knows `name` at all (any record type).
    pub fn knows(&self, name: &str) -> bool {
        let n = canonical(name);
        self.records.iter().any(|r| r.name == n)
    }

    /// The answer to a question for `name` (as asked) of the family's address type: the
    /// CNAME chain from `name` (its first owner spelled as asked), then the addresses of
    /// the chain's end, in the order the case lists them. `None`: no such name
    /// (NXDOMAIN); empty: the name exists without an address of that type.
    pub fn answer(&self, name: &str, family: Family) -> Option<Vec<Answer>> {
        if !self.knows(name) {
            return None;
        }
        let mut out = Vec::new();
        let mut owner = name.to_string();
        let mut at = canonical(name);
        // check_cnames rules out loops; the bound is a second guard.
        for _ in 0..=self.records.len() {
            let Some(target) = self.cname_of(&at) else {
                break;
            };
            let ttl = self.ttl_of(&at);
            out.push(Answer {
                name: owner,
                ttl,
                data: Data::Cname(target.to_string()),
            });
            owner = target.to_string();
            at = target.to_string();
        }
        for r in self.records.iter().filter(|r| r.name == at) {
            if let Data::Addr(ip) = r.data {
                if Family::of(ip) == family {
                    out.push(Answer {
                        name: owner.clone(),
                        ttl: r.ttl,
                        data: r.data.clone(),
                    });
                }
            }
        }
        Some(out)
    }

    fn ttl_of(&self, name: &str) -> u32 {
        self.records
            .iter()
            .find(|r| r.name == name)
            .map_or(DEFAULT_TTL, |r| r.ttl)
    }

    /// The address a probe of `name` connects to: the first address of the answer.
    pub fn first_address(&self, name: &str, family: Family) -> Option<IpAddr> {
        self.answer(name, family)?
            .into_iter()
            .find_map(|a| match a.data {
                Data::Addr(ip) => Some(ip),
                Data::Cname(_) => None,
            })
    }

    /// Why a probe of `name` in `family` cannot be made (an error of the case), if so.
    pub fn check_probe(&self, name: &str, family: Family) -> Result<IpAddr, String> {
        if !self.knows(name) {
            return Err(format!("the case's DNS does not know {name}"));
        }
        let rtype = match family {
            Family::V4 => "A",
            Family::V6 => "AAAA",
        };
        let ip = self
            .first_address(name, family)
            .ok_or_else(|| format!("{name} has no {rtype} record (through its CNAMEs)"))?;
        if !self.external.contains(&ip) {
            return Err(format!(
                "{name} resolves to {ip}, which is not in dns.external"
            ));
        }
        Ok(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(yaml: &str) -> Result<Dns, String> {
        let raw: RawDns = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        raw.validate()
    }

    const ZONE: &str = r#"
external: [198.51.100.10, 198.51.100.11, "2001:db8:51::10"]
records:
  - {name: api.example.com, type: A, value: 198.51.100.10, ttl: 60}
  - {name: api.example.com, type: A, value: 198.51.100.11}
  - {name: WWW.example.com., type: CNAME, value: edge.cdn.example}
  - {name: edge.cdn.example, type: AAAA, value: "2001:db8:51::10", ttl: 30}
"#;

    #[test]
    fn answers_follow_cnames_and_keep_the_question() {
        let d = dns(ZONE).unwrap();
        let a = d.answer("API.example.com.", Family::V4).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].name, "API.example.com.");
        assert_eq!(a[0].ttl, 60);
        assert_eq!(a[1].ttl, DEFAULT_TTL);
        let a = d.answer("www.Example.com", Family::V6).unwrap();
        assert_eq!(
            a,
            vec![
                Answer {
                    name: "www.Example.com".into(),
                    ttl: DEFAULT_TTL,
                    data: Data::Cname("edge.cdn.example".into())
                },
                Answer {
                    name: "edge.cdn.example".into(),
                    ttl: 30,
                    data: Data::Addr("2001:db8:51::10".parse().unwrap())
                },
            ]
        );
        assert_eq!(d.answer("www.example.com", Family::V4).unwrap().len(), 1);
        assert_eq!(d.answer("nope.example.com", Family::V4), None);
        assert_eq!(
            d.check_probe("api.example.com", Family::V4),
            Ok("198.51.100.10".parse().unwrap())
        );
        assert!(d
            .check_probe("www.example.com", Family::V4)
            .unwrap_err()
            .contains("no A record"));
        assert!(d
            .check_probe("x.example.com", Family::V4)
            .unwrap_err()
            .contains("does not know"));
    }

    #[test]
    fn bad_sections() {
        for (yaml, want) in [
            ("external: [10.0.0.1]", "dns.external[0]: 10.0.0.1 is outside"),
            ("external: [198.51.100.1, 198.51.100.1]", "listed twice"),
            ("records: [{name: x, type: A, value: 198.51.100.1}]", "records[0].name"),
            ("records: [{name: a.b, type: A, value: \"2001:db8:51::1\"}]", "records[0].value"),
            ("records: [{name: a.b, type: A, value: 198.51.100.1, ttl: 0}]", "records[0].ttl"),
            ("records: [{name: a.b, type: MX, value: c.d}]", "MX"),
            (
                "records: [{name: a.b, type: CNAME, value: c.d}, {name: a.b, type: A, value: 198.51.100.1}]",
                "a CNAME and other records",
            ),
            (
                "records: [{name: a.b, type: CNAME, value: c.d}, {name: c.d, type: CNAME, value: A.b}]",
                "loops",
            ),
        ] {
            let err = dns(yaml).unwrap_err();
            assert!(err.contains(want), "{yaml}: {err}");
        }
        let d =
            dns("external: [198.51.100.1]\nrecords: [{name: a.b, type: A, value: 198.51.100.2}]")
                .unwrap();
        assert!(d
            .check_probe("a.b", Family::V4)
            .unwrap_err()
            .contains("not in dns.external"));
    }

    #[test]
    fn names_and_columns() {
        assert!(is_name("api.example.com") && is_name("API.example.com."));
        assert!(!is_name("x/a") && !is_name("ext") && !is_name("n1"));
        assert_eq!(canonical("API.Example.com."), "api.example.com");
    }
}
