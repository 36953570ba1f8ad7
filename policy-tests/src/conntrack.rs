//! Flushing a namespace's connection tracking table (what `conntrack -F` does), so that
//! no entry of an earlier case or step lets a probe through as "established". One
//! netfilter netlink message; no conntrack tool needed.

use std::io::Read;

use anyhow::{bail, Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

use crate::netns;

const AF_NETLINK: i32 = 16;
const NETLINK_NETFILTER: i32 = 12;
/// `(NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE`: with no tuple, a flush.
const CT_DELETE: u16 = (1 << 8) | 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const ENOENT: i32 = 2;

/// The flush request: `nlmsghdr` then `nfgenmsg` (family AF_UNSPEC: every family).
fn request() -> Vec<u8> {
    let mut msg = Vec::with_capacity(20);
    msg.extend_from_slice(&20u32.to_ne_bytes());
    msg.extend_from_slice(&CT_DELETE.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: let the kernel pick
    msg.extend_from_slice(&[0, 0, 0, 0]); // family, version, resource id
    msg
}

/// The errno of the kernel's acknowledgement (0: done).
fn ack_errno(reply: &[u8]) -> Result<i32> {
    if reply.len() < 20 || u16::from_ne_bytes([reply[4], reply[5]]) != NLMSG_ERROR {
        bail!("unexpected netlink reply of {} bytes", reply.len());
    }
    Ok(-i32::from_ne_bytes([
        reply[16], reply[17], reply[18], reply[19],
    ]))
}

/// Empties the conntrack table of namespace `ns`.
pub fn flush(ns: &str) -> Result<()> {
    let socket = {
        let _in = netns::enter(ns)?;
        Socket::new(
            Domain::from(AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(NETLINK_NETFILTER)),
        )
        .context("opening a netfilter netlink socket")?
    };
    socket
        .send(&request())
        .context("sending the conntrack flush")?;
    let mut buf = [0u8; 256];
    let n = (&socket)
        .read(&mut buf)
        .context("reading the conntrack flush acknowledgement")?;
    let reply = &buf[..n];
    match ack_errno(reply)? {
        0 | ENOENT => Ok(()),
        e => bail!(
            "flushing conntrack in {ns}: {}",
            std::io::Error::from_raw_os_error(e)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_request_and_ack() {
        let req = request();
        assert_eq!(req.len(), 20);
        assert_eq!(u16::from_ne_bytes([req[4], req[5]]), 0x102);
        let mut ack = vec![0u8; 36];
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ack[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        assert_eq!(ack_errno(&ack).unwrap(), 1);
        assert!(ack_errno(&ack[..10]).is_err());
    }
}
