//! Tracked connections as plain data: a conntrack entry's two tuples ([`Flow`]) and the
//! 5-tuples a cut connection is held by ([`Held`]).
//!
//! ```text
//! netlink::conntrack --dump--> Flow --revoke::judge--> Keep | Cut
//!                                |--held()--> [Held; 2] --netlink hold--> held sets
//! ```
//!
//! Owns: the shape of a flow and which of its packets a hold names. Must not: import the
//! index, the graph or the ruleset (the netlink backend and the judge both read these
//! types; neither may reach the other through them).

use std::net::IpAddr;

/// IP protocol numbers whose conntrack tuples carry ports (`th dport` reads them).
const PORTED_PROTOCOLS: [u8; 4] = [6, 17, 132, 136]; // TCP, UDP, SCTP, UDP-Lite

/// One direction of a conntrack entry, as the kernel's tuple names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// 0 for protocols without ports.
    pub sport: u16,
    pub dport: u16,
}

/// A tracked connection: its original and reply tuples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Flow {
    pub l4proto: u8,
    pub orig: Tuple,
    pub reply: Tuple,
}

impl Flow {
    /// Whether the protocol's tuples carry ports.
    pub fn has_ports(&self) -> bool {
        PORTED_PROTOCOLS.contains(&self.l4proto)
    }

    /// The server's port after destination NAT (the reply tuple's source port), 0 for a
    /// protocol without ports: the port a filter hook's `th dport` read.
    pub fn server_port(&self) -> u16 {
        if self.has_ports() {
            self.reply.sport
        } else {
            0
        }
    }

    /// Both directions of the flow as the forward hook sees its packets, for holding it
    /// once cut (`RuleKind::HeldDrop`): the client's packets go to the real server (DNAT
    /// is done by then, SNAT is not yet), and the server's come back to the client (the
    /// reply's SNAT is undone by then, its DNAT not yet). None for a protocol without
    /// ports, whose packets no held 5-tuple could name.
    pub fn held(&self) -> Option<[Held; 2]> {
        let (client, server) = (self.orig.src, self.reply.src);
        if !self.has_ports() || client.is_ipv4() != server.is_ipv4() {
            return None;
        }
        let (cport, sport) = (self.orig.sport, self.reply.sport);
        let one = |src, dst, sport, dport| Held {
            l4proto: self.l4proto,
            src,
            dst,
            sport,
            dport,
        };
        Some([
            one(client, server, cport, sport),
            one(server, client, sport, cport),
        ])
    }

    /// The two endpoints a filter hook saw: the client and the (real) server.
    pub fn endpoints(&self) -> [IpAddr; 2] {
        [self.orig.src, self.reply.src]
    }
}

/// One direction of a cut connection, as a packet of it reads: the key of a held set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Held {
    pub l4proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}
