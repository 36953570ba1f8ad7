//! Renders a [`Ruleset`] as an `nft -f` script.
//!
//! The script first makes sure the table exists, then deletes it and defines it again:
//! loaded with `nft -f`, that is one transaction that replaces nftpol's table whole and
//! leaves every other table alone. Output is a pure function of the model.

use std::fmt::Write;

use crate::addr::range_text;
use crate::ruleset::model::*;

fn family(f: Family) -> &'static str {
    match f {
        Family::Inet => "inet",
    }
}

fn key_type(k: &[KeyType]) -> String {
    k.iter()
        .map(|t| match t {
            KeyType::Ipv4Addr => "ipv4_addr",
            KeyType::Ipv6Addr => "ipv6_addr",
            KeyType::InetProto => "inet_proto",
            KeyType::InetService => "inet_service",
        })
        .collect::<Vec<_>>()
        .join(" . ")
}

fn proto_text(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

pub fn field_text(f: &Field) -> String {
    match *f {
        Field::Ipv4(a, b) => range_text(false, u32::from(a) as u128, u32::from(b) as u128),
        Field::Ipv6(a, b) => range_text(true, u128::from(a), u128::from(b)),
        Field::Proto(a, b) if a == b => proto_text(a),
        Field::Proto(a, b) => format!("{a}-{b}"),
        Field::Port(a, b) if a == b => a.to_string(),
        Field::Port(a, b) => format!("{a}-{b}"),
    }
}

pub fn key_text(key: &[Field]) -> String {
    key.iter().map(field_text).collect::<Vec<_>>().join(" . ")
}

pub fn verdict_text(v: &Verdict) -> String {
    match v {
        Verdict::Accept => "accept".into(),
        Verdict::Drop => "drop".into(),
        Verdict::Return => "return".into(),
        Verdict::Jump(c) => format!("jump {c}"),
        Verdict::Goto(c) => format!("goto {c}"),
    }
}

fn ip_kw(f: IpFamily) -> &'static str {
    match f {
        IpFamily::V4 => "ip",
        IpFamily::V6 => "ip6",
    }
}

fn addr_kw(a: Addr) -> &'static str {
    match a {
        Addr::Saddr => "saddr",
        Addr::Daddr => "daddr",
    }
}

/// `log prefix "<prefix>" group <group>`, in the order `nft list` prints it. The prefix
/// comes from `names::log_prefix`, which never holds a double quote.
fn log_text(prefix: &str, group: u16) -> String {
    format!("log prefix \"{prefix}\" group {group}")
}

/// The rule as `nft` writes it (without its comment).
pub fn rule_text(kind: &RuleKind) -> String {
    match kind {
        RuleKind::CtEstablishedAccept => "ct state established,related accept".into(),
        RuleKind::Icmpv6NdAccept => "icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, nd-redirect } accept".into(),
        RuleKind::FibSaddrLocalAccept => "fib saddr type local accept".into(),
        RuleKind::Jump(c) => format!("jump {c}"),
        RuleKind::DispatchVmap { family, addr, map } => {
            format!("{} {} vmap @{map}", ip_kw(*family), addr_kw(*addr))
        }
        RuleKind::Lookup { family, addr, key, set, verdict, log } => {
            let tail = if key.has_ports() { " . meta l4proto . th dport" } else { "" };
            let log = log.as_ref().map(|l| format!(" {}", log_text(&l.prefix, l.group))).unwrap_or_default();
            format!("{} {}{tail} @{set}{log} {}", ip_kw(*family), addr_kw(*addr), verdict_text(verdict))
        }
        RuleKind::LookupPair { family, addr, addrs, ports, verdict, log, .. } => {
            let log = log.as_ref().map(|l| format!(" {}", log_text(&l.prefix, l.group))).unwrap_or_default();
            format!("{} {} @{addrs} meta l4proto . th dport @{ports}{log} {}", ip_kw(*family), addr_kw(*addr), verdict_text(verdict))
        }
        RuleKind::LogDenied { prefix, group, rate, burst } => {
            format!("ct state new counter limit rate {rate}/second burst {burst} packets {}", log_text(prefix, *group))
        }
        RuleKind::DropUnknown { family, addr, cidrs, known } => {
            let (f, a) = (ip_kw(*family), addr_kw(*addr));
            format!("{f} {a} @{cidrs} {f} {a} != @{known} drop")
        }
        RuleKind::HeldDrop { family, set } => {
            let f = ip_kw(*family);
            format!("{f} saddr . {f} daddr . meta l4proto . th sport . th dport @{set} drop")
        }
        RuleKind::LearnedLookup { family, key, open, learned, verdict, log } => {
            let f = ip_kw(*family);
            let tail = if key.has_ports() { " . meta l4proto . th dport" } else { "" };
            let log = log.as_ref().map(|l| format!(" {}", log_text(&l.prefix, l.group))).unwrap_or_default();
            format!("{f} daddr{tail} @{open} {f} daddr @{learned}{log} {}", verdict_text(verdict))
        }
        RuleKind::SteerTransparent { mark } => {
            format!("meta l4proto tcp socket transparent 1 meta mark set meta mark | {mark:#010x} accept")
        }
        RuleKind::SteerDns { family, protocol, pods, servers, alive, port, mark } => {
            let (f, p) = (ip_kw(*family), protocol.name());
            let syn = if *protocol == crate::policy::Protocol::Tcp { " tcp flags & (syn | ack) == syn" } else { "" };
            format!("{f} saddr @{pods} {f} daddr @{servers} {p} dport @{alive}{syn} tproxy {f} to :{port} meta mark set meta mark | {mark:#010x} accept")
        }
        RuleKind::MarkedDispatch { family, mark, map } => {
            format!("meta mark & {mark:#010x} == {mark:#010x} {} saddr vmap @{map}", ip_kw(*family))
        }
        RuleKind::Verdict(v) => verdict_text(v),
        RuleKind::Counted(v) => format!("counter {}", verdict_text(v)),
    }
}

fn hook(h: Hook) -> &'static str {
    match h {
        Hook::Forward => "forward",
        Hook::Output => "output",
        Hook::Input => "input",
        Hook::Prerouting => "prerouting",
    }
}

fn priority(p: i32) -> String {
    match p {
        0 => "filter".into(),
        -150 => "mangle".into(),
        p if p > 0 => format!("filter + {p}"),
        p => format!("filter - {}", -p),
    }
}

fn elements<T>(out: &mut String, items: &[T], text: impl Fn(&T) -> String) {
    if items.is_empty() {
        return;
    }
    out.push_str("\t\telements = {\n");
    for (i, e) in items.iter().enumerate() {
        let sep = if i + 1 == items.len() { "" } else { "," };
        let _ = writeln!(out, "\t\t\t{}{sep}", text(e));
    }
    out.push_str("\t\t}\n");
}

/// The model as `nft -f` text. One function because the script's layout (table, sets,
/// maps, chains, in the model's order) is easiest to check against nft's own output when
/// it reads top to bottom; each object's text is in the functions above.
pub fn render(rs: &Ruleset) -> String {
    let mut out = String::new();
    let fam = family(rs.family);
    let _ = writeln!(out, "#!/usr/sbin/nft -f");
    let _ = writeln!(out, "# Generated by nftpol {}. Load with `nft -f`: it replaces table {fam} {} whole and touches nothing else.", env!("CARGO_PKG_VERSION"), rs.name);
    let _ = writeln!(out, "table {fam} {}", rs.name);
    let _ = writeln!(out, "delete table {fam} {}", rs.name);
    let _ = writeln!(out, "table {fam} {} {{", rs.name);
    if let Some(c) = &rs.comment {
        let _ = writeln!(out, "\tcomment \"{c}\"");
    }
    for set in rs.sets() {
        let _ = writeln!(out, "\n\tset {} {{", set.name);
        let _ = writeln!(out, "\t\ttype {}", key_type(&set.key));
        if set.interval {
            out.push_str("\t\tflags interval\n");
        }
        match set.timeout {
            None => {}
            // Each element brings its own timeout.
            Some(0) => out.push_str("\t\tflags timeout\n"),
            Some(t) => {
                let _ = writeln!(out, "\t\tflags timeout\n\t\ttimeout {t}s");
            }
        }
        if set.counter {
            out.push_str("\t\tcounter\n");
        }
        if let Some(c) = &set.comment {
            let _ = writeln!(out, "\t\tcomment \"{c}\"");
        }
        elements(&mut out, &set.elements, |e| key_text(&e.key));
        out.push_str("\t}\n");
    }
    for map in rs.maps() {
        let _ = writeln!(out, "\n\tmap {} {{", map.name);
        let _ = writeln!(out, "\t\ttype {} : verdict", key_type(&map.key));
        if let Some(c) = &map.comment {
            let _ = writeln!(out, "\t\tcomment \"{c}\"");
        }
        elements(&mut out, &map.elements, |e| {
            format!("{} : {}", key_text(&e.key), verdict_text(&e.verdict))
        });
        out.push_str("\t}\n");
    }
    for chain in rs.chains() {
        let _ = writeln!(out, "\n\tchain {} {{", chain.name);
        if let Some(c) = &chain.comment {
            let _ = writeln!(out, "\t\tcomment \"{c}\"");
        }
        if let Some(b) = &chain.base {
            let _ = writeln!(
                out,
                "\t\ttype filter hook {} priority {}; policy {};",
                hook(b.hook),
                priority(b.priority),
                verdict_text(&b.policy)
            );
        }
        for r in &chain.rules {
            let text = rule_text(&r.kind);
            match &r.comment {
                Some(c) => {
                    let _ = writeln!(out, "\t\t{text} comment \"{c}\"");
                }
                None => {
                    let _ = writeln!(out, "\t\t{text}");
                }
            }
        }
        out.push_str("\t}\n");
    }
    out.push_str("}\n");
    out
}
